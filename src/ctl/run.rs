//! The entry point behind the `fieldctl` binary: resolves the hub, builds the client and
//! dispatches a parsed [`Cli`] to its command, printing results to `out` and progress,
//! notices and the one-line error to the console. Returns the exit status.

use std::io::{IsTerminal as _, Write};
use std::sync::Arc;

use clap::CommandFactory as _;

use super::auth::{resolve_hub, HUB_ENV};
use super::cli::{Cli, Command, DevicesCommand};
use super::client::{ClientOptions, ServiceClient};
use super::error::{exit_code, CtlError, Outcome};
use super::output::{write_json, write_text, Console, Style};
use super::{commands, dps, jobs, provision};

/// What fieldctl takes from its surroundings rather than its arguments.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `IOTHUB_CONNECTION_STRING`.
    pub connection_string: Option<String>,
    /// `NO_COLOR` is set (to anything but the empty string).
    pub no_color: bool,
    pub stdout_is_terminal: bool,
    pub stderr_is_terminal: bool,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            connection_string: std::env::var(HUB_ENV).ok(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }
}

/// What a command needs: the client, where to print, and how.
pub(crate) struct Ctx<'a> {
    pub(crate) client: ServiceClient,
    pub(crate) out: &'a mut dyn Write,
    pub(crate) console: Console,
    pub(crate) json: bool,
    pub(crate) style_out: Style,
    pub(crate) style_err: Style,
    /// Draw an indicatif bar (stderr is a terminal) instead of plain progress lines.
    pub(crate) live_progress: bool,
}

/// Colour for (stdout, stderr): never with `--no-color` or `NO_COLOR`, never into a pipe or
/// file, and never in JSON on stdout.
pub fn styles(no_color_flag: bool, json: bool, env: &Env) -> (Style, Style) {
    let allowed = !no_color_flag && !env.no_color;
    (
        Style {
            color: allowed && env.stdout_is_terminal && !json,
        },
        Style {
            color: allowed && env.stderr_is_terminal,
        },
    )
}

/// Runs one fieldctl command. Never panics on bad input; returns 0, 1 or 2 (see `--help`).
pub async fn run(cli: Cli, env: &Env, out: &mut dyn Write, console: Console) -> i32 {
    let (style_out, style_err) = styles(cli.global.no_color, cli.global.json, env);
    let result = dispatch(cli, env, out, console.clone(), (style_out, style_err)).await;
    if let Err(e) = &result {
        console.line(&format!(
            "{} {}",
            style_err.paint("1;31", "error:"),
            super::error::one_line(&e.to_string())
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
        Command::Invoke(a) => commands::invoke(ctx, a).await,
        Command::Dps(d) => dps::run(ctx, d).await,
        Command::Twin(t) => commands::twin(ctx, t).await,
        Command::Devices(DevicesCommand::List { query }) => {
            commands::devices_list(ctx, query.as_deref()).await
        }
        Command::Devices(DevicesCommand::Provision {
            config,
            keys_dir,
            dry_run,
        }) => {
            let items = provision::provision_items_from_config(&config)?;
            let results =
                provision::provision(&ctx.client, &items, keys_dir.as_deref(), dry_run).await?;
            let failed = results
                .iter()
                .any(|r| r.change == provision::Change::Failed);
            if ctx.json {
                write_json(
                    ctx.out,
                    &serde_json::json!({ "dryRun": dry_run, "devices": results }),
                )?;
            } else {
                write_text(
                    ctx.out,
                    &provision::render(ctx.style_out, &results, dry_run),
                )?;
            }
            Ok(if failed {
                Outcome::Failed
            } else {
                Outcome::Success
            })
        }
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
        console.line(&format!(
            "error: {}",
            super::error::one_line(&e.to_string())
        ));
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

    #[test]
    fn colour_rules() {
        let (o, e) = styles(false, false, &env());
        assert!(o.color && e.color);
        let no_color_env = Env {
            no_color: true,
            ..env()
        };
        assert_eq!(
            styles(false, false, &no_color_env),
            (Style { color: false }, Style { color: false })
        );
        assert_eq!(
            styles(true, false, &env()),
            (Style { color: false }, Style { color: false })
        );
        let (o, e) = styles(false, true, &env());
        assert!(!o.color && e.color, "JSON is never coloured");
        let piped = Env {
            stdout_is_terminal: false,
            stderr_is_terminal: false,
            ..env()
        };
        assert_eq!(
            styles(false, false, &piped),
            (Style { color: false }, Style { color: false })
        );
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
