//! The `fieldctl` binary as operators run it: help, exit statuses and one-line errors for
//! bad input. (Runs against fieldhub live in the end-to-end suite.)

use std::process::Output;
use std::time::Duration;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn fieldctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldctl"));
    cmd.args(args)
        .env_remove("IOTHUB_CONNECTION_STRING")
        .env_remove("NO_COLOR")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("fieldctl did not exit in time")
        .expect("fieldctl did not start")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A service connection string for a local port nobody listens on.
fn dead_hub() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("HostName=127.0.0.1:{port};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}")
}

#[tokio::test]
async fn help_documents_exit_statuses() {
    let o = fieldctl(&["--help"], &[]).await;
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    for needle in [
        "job",
        "invoke",
        "twin",
        "devices",
        "completions",
        "Exit status:",
        "NO_COLOR",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let o = fieldctl(&["job", "method", "--method", "lockDoor"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--query"), "{}", text(&o.stderr));
}

#[tokio::test]
async fn malformed_connection_string_is_one_line_exit_2() {
    let o = fieldctl(
        &["--hub", "HostName=h;SharedAccessKey=x", "job", "list"],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: malformed connection string (from --hub)"),
        "{err}"
    );

    let o = fieldctl(&["job", "list"], &[("IOTHUB_CONNECTION_STRING", "garbage")]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr)
        .starts_with("error: malformed connection string (from IOTHUB_CONNECTION_STRING)"));
}

#[tokio::test]
async fn invalid_payload_fails_before_any_request() {
    // The hub is unreachable: had a request been sent, the error would say so.
    let hub = dead_hub();
    let o = fieldctl(
        &[
            "--hub",
            &hub,
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--payload",
            "{\"seconds\":}",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: --payload is not valid JSON: expected value at line 1 column 12"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_hub_exits_2() {
    let hub = dead_hub();
    let o = fieldctl(&["--hub", &hub, "job", "show", "lock-43"], &[]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot reach the hub at https://127.0.0.1:"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[tokio::test]
async fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let o = fieldctl(&["completions", shell], &[]).await;
        assert_eq!(o.status.code(), Some(0), "{shell}");
        assert!(text(&o.stdout).contains("fieldctl"), "{shell}");
    }
}

/// The completions the .deb ships (completions/) are what the binaries print today
/// (regenerate with scripts/completions).
#[test]
fn shipped_completions_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (bin, exe) in [
        ("fieldgate", env!("CARGO_BIN_EXE_fieldgate")),
        ("fieldctl", env!("CARGO_BIN_EXE_fieldctl")),
    ] {
        for (shell, file) in [
            ("bash", format!("{bin}.bash")),
            ("zsh", format!("_{bin}")),
            ("fish", format!("{bin}.fish")),
        ] {
            let out = std::process::Command::new(exe)
                .args(["completions", shell])
                .output()
                .unwrap();
            assert!(out.status.success(), "{bin} completions {shell}");
            let shipped = std::fs::read(dir.join(&file)).unwrap();
            assert!(
                out.stdout == shipped,
                "completions/{file} is out of date: run scripts/completions"
            );
        }
    }
}
