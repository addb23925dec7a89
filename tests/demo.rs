//! The README's first command: `fieldgate demo --exit` runs the seed scenario end to end
//! (fieldhub, doorsim on TCP and RTU, provisioning, the gateway, both jobs through fieldctl)
//! and exits 0 only when both jobs succeeded and the registers changed.

use crate::support::harness::bounded;

#[tokio::test]
async fn demo_runs_the_seed_jobs_and_changes_the_registers() {
    let out = bounded(
        "demo --exit",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .args(["demo", "--exit"])
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("6 created, 0 updated"),
        "provisioned the map:\n{stdout}"
    );
    assert!(
        stdout.contains("lockDoor job exit 0, twin job exit 0; registers changed on 5/5 doors of building 43; other doors untouched: true; reported acknowledged: true"),
        "{stdout}"
    );
    assert!(
        stdout.contains("completed: 5 devices, 5 succeeded, 0 failed"),
        "{stdout}"
    );
    let after = stdout
        .split("\ndemo: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        !after.contains("--hub-file") && !after.contains("/tmp/"),
        "--exit ends with nothing pointing into the temp dir it deleted:\n{after}"
    );
}

/// The demo left running prints fieldctl commands to try: each works exactly as printed
/// (through a shell), and Ctrl-C ends the demo cleanly, without a warning.
#[tokio::test]
async fn the_commands_the_demo_prints_work_as_printed_and_ctrl_c_ends_it_quietly() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .arg("demo")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut all = String::new();
        let mut l = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = l.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let commands = bounded("the demo's commands", async {
        let mut commands = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("  ") && line.contains("--hub-file") {
                commands.push(line.trim().to_string());
            }
            if line.contains("Running until Ctrl-C") {
                return commands;
            }
        }
        panic!("the demo ended before it was up");
    })
    .await;
    assert!(commands.len() >= 5, "{commands:?}");
    for cmd in &commands {
        let out = bounded(
            "a printed command",
            tokio::process::Command::new("sh")
                .args(["-c", cmd])
                .env("NO_COLOR", "1")
                .output(),
        )
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "`{cmd}` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pid = child.id().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = bounded("demo exit after Ctrl-C", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let stderr = bounded("demo stderr", stderr_task).await.unwrap();
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "Ctrl-C printed warnings:\n{stderr}"
    );
}
