//! `fieldgate demo`: the whole system offline (placeholder until the demo lands).

/// Options of `fieldgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run the seed jobs once, print the outcome and exit (for tests and CI).
    #[arg(long)]
    pub exit: bool,
}

pub async fn run(_args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("the demo is not built yet")
}
