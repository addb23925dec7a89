//! `fieldhub serve` job flags reach the engine: `--max-active-jobs 2` admits a second active job
//! and refuses a third; a negative `--job-ops-per-second` is refused at startup.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use iothub_proto::sas;
use serde_json::json;

use crate::support::{now, T};

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_flags_set_the_job_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_fieldhub"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args([
                "--max-active-jobs",
                "2",
                "--unthrottled",
                "--job-retention",
                "1h",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        }),
    )
    .await
    .expect("no ready line")
    .unwrap();
    let https: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("https="))
        .unwrap_or_else(|| panic!("ready line: {line}"))
        .parse()
        .unwrap();
    let connstr = std::fs::read_to_string(dir.path().join("service.connstr")).unwrap();
    let cs = iothub_proto::ConnectionString::parse(connstr.trim()).unwrap();
    let key = cs.key.clone();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", https)
        .timeout(T)
        .build()
        .unwrap();
    let token = sas::generate(&cs.host_name, &key, Some("iothubowner"), now() + 3600).unwrap();
    let start = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut statuses = Vec::new();
    for id in ["one", "two", "three"] {
        let body = json!({"jobId": id, "type": "scheduleUpdateTwin",
            "updateTwin": {"etag": "*", "tags": {"a": 1}}, "queryCondition": "*", "startTime": start});
        let resp = http
            .put(format!(
                "https://{}/jobs/v2/{id}?api-version=2021-04-12",
                cs.host_name
            ))
            .header("Authorization", &token)
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[test]
fn negative_job_rate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fieldhub"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .arg("--job-ops-per-second=-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--job-ops-per-second"), "{err}");
}
