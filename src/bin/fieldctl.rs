//! `fieldctl`: schedule and watch IoT Hub jobs, invoke methods, provision devices.
//! Everything happens in `fieldgate::ctl`; this only parses arguments and runs it.

use std::process::ExitCode;

use clap::Parser as _;
use fieldgate::ctl::{self, Cli, Console, Env};

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0 (clap's own codes).
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let env = Env::from_process();
    let mut stdout = std::io::stdout();
    let code = runtime.block_on(ctl::run(
        cli,
        &env,
        &mut stdout,
        Console::new(std::io::stderr()),
    ));
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}
