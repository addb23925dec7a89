//! The entry point behind the `fieldctl` binary: resolves the hub, builds the client and
//! dispatches a parsed [`Cli`] to its command, printing results to `out` and progress,
//! notices and the one-line error to the console. Returns the exit status.

use std::io::Write;
use std::sync::Arc;

use clap::CommandFactory as _;

use super::cli::{Cli, Command, DevicesCommand};
use super::context::{styles, Ctx, Env};
use super::error::{exit_code, CtlError, Outcome};
use super::hub::resolve_hub;
use super::output::{Console, Style};
use super::{devices, dps, invoke, jobs, twin};
use crate::service::error::one_line;
use crate::service::{ClientOptions, ServiceClient};

/// Runs one fieldctl command. Never panics on bad input; returns 0, 1 or 2 (see `--help`).
pub async fn run(cli: Cli, env: &Env, out: &mut dyn Write, console: Console) -> i32 {
    let (style_out, style_err) = styles(cli.global.no_color, cli.global.json, env);
    let result = dispatch(cli, env, out, console.clone(), (style_out, style_err)).await;
    if let Err(e) = &result {
        console.line(&format!(
            "{} {}",
            style_err.paint("1;31", "error:"),
            one_line(&e.to_string())
        ));
    }
    exit_code(&result)
}

async fn dispatch(
    cli: Cli,
    env: &Env,
    out: &mut dyn Write,
    console: Console,
    (style_out, style_err): (Style, Style),
) -> Result<Outcome, CtlError> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "fieldctl", out);
        return Ok(Outcome::Success);
    }
    let g = &cli.global;
    let (conn, _) = resolve_hub(
        g.hub.as_deref(),
        g.hub_file.as_deref(),
        env.connection_string.as_deref(),
    )?;
    let opts = ClientOptions {
        ca_file: g.ca_file.clone(),
        proxy: g.proxy.clone(),
        ..ClientOptions::default()
    };
    let mut client = ServiceClient::new(conn, opts)?;
    let notices = console.clone();
    client.set_notifier(Arc::new(move |n| notices.line(&n.to_string())));
    let mut ctx = Ctx {
        client,
        out,
        console,
        json: g.json,
        style_out,
        style_err,
        live_progress: env.stderr_is_terminal,
    };
    execute(&mut ctx, cli.command).await
}

/// Runs a command against a ready client; shared by [`run`] and [`run_with_client`].
async fn execute(ctx: &mut Ctx<'_>, command: Command) -> Result<Outcome, CtlError> {
    match command {
        Command::Job(j) => jobs::run(ctx, j).await,
        Command::Invoke(a) => invoke::run(ctx, a).await,
        Command::Dps(d) => dps::run(ctx, d).await,
        Command::Twin(t) => twin::run(ctx, t).await,
        Command::Devices(DevicesCommand::List { query }) => {
            devices::list(ctx, query.as_deref()).await
        }
        Command::Devices(DevicesCommand::Provision {
            config,
            keys_dir,
            dry_run,
        }) => devices::provision(ctx, &config, keys_dir.as_deref(), dry_run).await,
        Command::Completions { .. } => unreachable!("handled before the hub is resolved"),
    }
}

/// Runs a command with a client built by the caller (e.g. one pointed at a test server
/// with [`ServiceClient::with_base_url`]). Output and exit status as for [`run`].
pub async fn run_with_client(
    client: ServiceClient,
    command: Command,
    json: bool,
    out: &mut dyn Write,
    console: Console,
) -> i32 {
    let plain = Style { color: false };
    let mut ctx = Ctx {
        client,
        out,
        console: console.clone(),
        json,
        style_out: plain,
        style_err: plain,
        live_progress: false,
    };
    let result = execute(&mut ctx, command).await;
    if let Err(e) = &result {
        console.line(&format!("error: {}", one_line(&e.to_string())));
    }
    exit_code(&result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::output::SharedBuf;
    use clap::Parser as _;

    fn env() -> Env {
        Env {
            connection_string: None,
            no_color: false,
            stdout_is_terminal: true,
            stderr_is_terminal: true,
        }
    }

    async fn run_args(argv: &[&str], env: &Env) -> (i32, String, String) {
        let mut full = vec!["fieldctl"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let mut out = Vec::new();
        let err = SharedBuf::default();
        let code = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            run(cli, env, &mut out, Console::new(err.clone())),
        )
        .await
        .unwrap();
        (code, String::from_utf8(out).unwrap(), err.contents())
    }

    #[tokio::test]
    async fn errors_before_any_request() {
        let piped = Env {
            stdout_is_terminal: false,
            stderr_is_terminal: false,
            ..env()
        };
        let (code, out, err) = run_args(&["twin", "show", "d"], &piped).await;
        assert_eq!((code, out.as_str()), (2, ""));
        assert_eq!(
            err,
            "error: no hub given: pass --hub CONNSTR or --hub-file PATH, or set IOTHUB_CONNECTION_STRING\n"
        );
        let (code, _, err) = run_args(
            &["--hub", "HostName=h;SharedAccessKeyName=x", "job", "list"],
            &piped,
        )
        .await;
        assert_eq!(code, 2);
        assert_eq!(
            err,
            "error: malformed connection string (from --hub): connection string lacks SharedAccessKey\n"
        );
        // The environment is used when no flag is given, and its source is named.
        let with_env = Env {
            connection_string: Some("HostName=h".into()),
            ..piped.clone()
        };
        let (code, _, err) = run_args(&["job", "list"], &with_env).await;
        assert_eq!(code, 2);
        assert!(
            err.starts_with("error: malformed connection string (from IOTHUB_CONNECTION_STRING)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn completions_need_no_hub() {
        let (code, out, err) = run_args(&["completions", "bash"], &env()).await;
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.contains("_fieldctl()"), "{out}");
        assert!(out.contains("provision"));
    }
}
