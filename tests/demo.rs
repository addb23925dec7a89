//! The README's first command: `fieldgate demo --exit` runs the seed scenario end to end
//! (fieldhub, doorsim on TCP and RTU, provisioning, the gateway, both jobs through fieldctl)
//! and exits 0 only when both jobs succeeded and the registers changed.

use crate::harness::bounded;

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
    assert!(stdout.contains("/metrics"), "prints the metrics URL");
}
