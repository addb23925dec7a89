//! The `fieldgate` binary as a process, for the modules that signal, kill or restart it:
//! [`Service`] runs `fieldgate run` as systemd does (logging to a file, killed when dropped),
//! [`signal`] sends it a signal, [`wait_doors_ready`] waits for the hub to see its doors, and
//! [`with_doors`] trims a device map to some doors. [`fieldctl`] runs the operator CLI against
//! a hub, as from an operator's laptop.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use fieldhub::hub::Sub;
use tokio::process::{Child, Command};

use crate::support::harness::{Env, LIMIT};
use crate::support::reliability::eventually;

/// `fieldctl ARGS` against `hub`'s service API (with the service connection string fieldhub
/// writes beside its CA), colour off and no connection string taken from the environment.
pub async fn fieldctl(hub: &fieldhub::RunningHub, args: &[&str]) -> std::process::Output {
    let hub_file = hub.ca_path.parent().unwrap().join("service.connstr");
    crate::support::harness::bounded(
        "fieldctl",
        Command::new(env!("CARGO_BIN_EXE_fieldctl"))
            .arg("--hub-file")
            .arg(hub_file)
            .arg("--ca-file")
            .arg(&hub.ca_path)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("IOTHUB_CONNECTION_STRING")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
}

pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The `fieldgate run` process, logging at `debug` to a file; killed when dropped.
pub struct Service {
    pub child: Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Service {
    pub async fn start(config: &Path, log: PathBuf) -> Service {
        let child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .args(["--log", "debug", "run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        Service { child, pid, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_log(&self, needle: &str) {
        eventually(&format!("log line {needle:?}"), || {
            self.log_text().contains(needle)
        })
        .await;
    }

    /// The metrics address from the "fieldgate running" line.
    pub async fn metrics_base(&self) -> String {
        self.wait_log("fieldgate running").await;
        let log = self.log_text();
        let at = log.find("http://").expect("metrics URL in the log");
        let url = &log[at..];
        let end = url.find("/metrics").unwrap();
        url[..end].to_string()
    }
}

/// Waits until the hub sees each door connected and subscribed to methods.
pub async fn wait_doors_ready(env: &Env, ids: &[&str]) {
    for id in ids {
        assert!(
            env.hub.hub.wait_ready(id, Some(Sub::Methods), LIMIT).await,
            "{id} ready at the hub"
        );
    }
}

/// The config text with only the `[[door]]` blocks of `keep`.
pub fn with_doors(text: &str, keep: &[&str]) -> String {
    let mut parts = text.split("[[door]]");
    let mut out = parts.next().unwrap().to_string();
    for block in parts {
        let id = block
            .split("device_id = \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        if keep.contains(&id) {
            out.push_str("[[door]]");
            out.push_str(block);
        }
    }
    out
}
