//! The options of `fieldgate demo`, defined in every build (also the Pi package's, which has
//! no demo) so the command line and its shell completions are the same everywhere.

/// Options of `fieldgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run the seed jobs once, print the outcome and exit (0 when both jobs succeeded on every
    /// door): for tests and CI.
    #[arg(long)]
    pub exit: bool,
    /// Door controllers on the Modbus TCP bus.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub tcp_doors: u8,
    /// Door controllers on the RTU line.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub rtu_doors: u8,
}
