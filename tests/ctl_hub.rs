//! The seed workflow through the `fieldctl` binary alone, against fieldhub with the gateway
//! and doorsim behind it: provision from the TOML map, a `lockDoor` method job and a
//! `Building`/`Floor` twin job on `tags.building = '43'` with `--wait`, a job where a door is
//! offline (exit 1, failed devices listed, `--json` matching `job devices`), a future job that
//! is listed as scheduled, cancelled and never runs, and bad input (one line, exit 2).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use fieldgate::config;
use fieldgate::gateway::Gateway;
use fieldgate::metrics::Metrics;
use fieldhub::doorsim::{self, DoorSim, DoorSimConfig, Listen, Table};
use fieldhub::{HubConfig, RunningHub};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::harness::{bounded, wait_link, Service, PROFILE};

struct Site {
    dir: TempDir,
    hub: RunningHub,
    sim: DoorSim,
    map: PathBuf,
}

/// Doors 1-3 in building 43 (run by the gateway), door 4 in building 43 but never connected
/// (its controller is "offline"), door 5 in building 44.
const DOORS: &[(&str, u8, &str)] = &[
    ("b43-1", 1, "43"),
    ("b43-2", 2, "43"),
    ("b43-3", 3, "43"),
    ("b43-offline", 4, "43"),
    ("b44-1", 5, "44"),
];

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let hub = bounded(
        "hub",
        fieldhub::start(HubConfig::for_tests(dir.path().join("hub"))),
    )
    .await
    .unwrap();
    let sim = bounded(
        "doorsim",
        doorsim::start(DoorSimConfig {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            units: (1..=5).collect(),
            line_baud: None,
        }),
    )
    .await
    .unwrap();
    for u in 1..=5 {
        sim.handle.set_coil(u, 0, false);
    }
    let mut map = format!(
        "[hub]\nhostname = \"localhost:{}\"\nca_file = \"{}\"\nconnects_per_second = 0\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"state\"\n\n[[bus]]\nname = \"tcp\"\ntcp = \"{}\"\ntimeout = \"300ms\"\n{PROFILE}\n",
        hub.mqtt_addr.port(),
        hub.ca_path.display(),
        sim.local_addr.unwrap()
    );
    for (id, unit, building) in DOORS {
        map.push_str(&format!(
            "[[door]]\ndevice_id = \"{id}\"\nbus = \"tcp\"\nunit = {unit}\nprofile = \"door\"\nkey_file = \"keys/{id}.key\"\ntags = {{ building = \"{building}\" }}\n\n"
        ));
    }
    let path = dir.path().join("fieldgate.toml");
    std::fs::write(&path, map).unwrap();
    Site {
        dir,
        hub,
        sim,
        map: path,
    }
}

impl Site {
    async fn fieldctl(&self, args: &[&str]) -> Output {
        crate::support::process::fieldctl(&self.hub, args).await
    }

    /// The gateway for every door except the offline one.
    async fn gateway(&self) -> Gateway {
        let mut cfg = config::load(&self.map).unwrap_or_else(|e| panic!("{e}"));
        cfg.doors.retain(|d| d.device_id != "b43-offline");
        let gw = Gateway::start(&cfg, Arc::new(Metrics::new())).unwrap();
        for d in &cfg.doors {
            wait_link(&gw, &d.device_id).await;
        }
        gw
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// `fieldctl devices provision` of the whole map, which must succeed.
    async fn provision(&self) {
        let keys = self.keys();
        let out = self
            .fieldctl(&[
                "devices",
                "provision",
                "--config",
                path(&self.map),
                "--keys-dir",
                path(&keys),
            ])
            .await;
        assert!(out.status.success(), "{}", text(&out));
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn seed_workflow_through_fieldctl_alone() {
    let s = site().await;
    let keys = s.keys();
    let out = s
        .fieldctl(&[
            "devices",
            "provision",
            "--config",
            path(&s.map),
            "--keys-dir",
            path(&keys),
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 created"),
        "{}",
        text(&out)
    );
    let again = s
        .fieldctl(&[
            "--json",
            "devices",
            "provision",
            "--config",
            path(&s.map),
            "--keys-dir",
            path(&keys),
        ])
        .await;
    let doc = json_out(&again);
    assert!(
        doc["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["change"] == "unchanged"),
        "idempotent: {doc}"
    );
    let tags = s.hub.hub.get_twin("b44-1").unwrap()["tags"].clone();
    assert_eq!(tags, json!({"building": "44"}));

    let gw = s.gateway().await;
    let query = "tags.building = '43' AND deviceId != 'b43-offline'";
    let out = s
        .fieldctl(&[
            "job",
            "method",
            "--query",
            query,
            "--method",
            "lockDoor",
            "--wait",
            "--poll-interval",
            "100ms",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 succeeded, 0 failed"),
        "{}",
        text(&out)
    );
    for u in 1..=3 {
        assert!(s.sim.handle.coil(u, 0), "unit {u} locked");
    }
    assert!(!s.sim.handle.coil(5, 0), "building 44 untouched");

    let out = s
        .fieldctl(&[
            "job",
            "twin",
            "--query",
            query,
            "--desired",
            "Building=43",
            "Floor=3",
            "--wait",
            "--poll-interval",
            "100ms",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let svc = Service::new(&s.hub);
    for (id, unit, _) in &DOORS[..3] {
        svc.wait_reported(id, "reported follows the twin job", |r| {
            r["Building"]["value"] == 43 && r["Floor"]["ac"] == 200 && r["locked"] == true
        })
        .await;
        assert_eq!(
            (
                s.sim.handle.holding(*unit, 0),
                s.sim.handle.holding(*unit, 1)
            ),
            (43, 3)
        );
    }
    let writes = s.sim.handle.write_log();
    assert!(
        writes.iter().all(|w| w.unit <= 3),
        "only the selected doors were written: {writes:?}"
    );
    assert_eq!(writes.iter().filter(|w| w.table == Table::Coil).count(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn offline_door_fails_the_job_with_exit_1_and_json_matches_job_devices() {
    let s = site().await;
    s.provision().await;
    let gw = s.gateway().await;
    let out = s
        .fieldctl(&[
            "--json",
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--id",
            "with-offline",
            "--max-time",
            "3s",
            "--wait",
            "--poll-interval",
            "100ms",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json_out(&out);
    assert_eq!(
        report["job"]["deviceJobStatistics"]["succeededCount"], 3,
        "{report}"
    );
    assert_eq!(
        report["job"]["deviceJobStatistics"]["failedCount"], 1,
        "{report}"
    );
    let failed = report["failedDevices"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["deviceId"], "b43-offline");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("DeviceNotOnline"),
        "{report}"
    );

    let devices = s
        .fieldctl(&["--json", "job", "devices", "with-offline"])
        .await;
    assert!(devices.status.success(), "{}", text(&devices));
    let mut listed: Vec<(String, String)> = json_out(&devices)
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deviceId"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut reported: Vec<(String, String)> = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deviceId"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    reported.sort();
    assert_eq!(listed, reported);
    let failed_only = s
        .fieldctl(&[
            "--json",
            "job",
            "devices",
            "with-offline",
            "--status",
            "failed",
        ])
        .await;
    assert_eq!(json_out(&failed_only).as_array().unwrap().len(), 1);

    // The human form names the failed device and its error too.
    let show = s.fieldctl(&["job", "show", "with-offline"]).await;
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("b43-offline") && shown.contains("DeviceNotOnline"),
        "{}",
        text(&show)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn future_job_is_listed_as_scheduled_cancelled_and_never_runs() {
    let s = site().await;
    let out = s
        .fieldctl(&[
            "devices",
            "provision",
            "--config",
            path(&s.map),
            "--keys-dir",
            path(&s.keys()),
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let gw = s.gateway().await;
    let out = s
        .fieldctl(&[
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--start",
            "+1h",
            "--id",
            "later",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let list = json_out(
        &s.fieldctl(&["--json", "job", "list", "--status", "scheduled"])
            .await,
    );
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["later"], "{list}");

    let out = s.fieldctl(&["--json", "job", "cancel", "later"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_out(&out)["status"], "cancelled");
    let job = json_out(&s.fieldctl(&["--json", "job", "show", "later"]).await);
    assert_eq!(job["job"]["status"], "cancelled", "{job}");
    assert_eq!(
        job["job"]["deviceJobStatistics"]["succeededCount"]
            .as_u64()
            .unwrap_or(0),
        0
    );
    assert!(
        s.sim.handle.write_log().is_empty(),
        "the cancelled job never wrote"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_2() {
    let s = site().await;
    let check = |o: &Output, needle: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {}", text(o));
        assert!(
            err.contains(needle),
            "names the problem ({needle}): {}",
            text(o)
        );
    };
    let out = bounded(
        "fieldctl",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldctl"))
            .args(["--hub", "HostName=localhost;SharedAccessKey", "job", "list"])
            .output(),
    )
    .await
    .unwrap();
    check(&out, "connection string");
    check(
        &s.fieldctl(&["job", "show", "no-such-job"]).await,
        "no-such-job",
    );
    check(
        &s.fieldctl(&[
            "job",
            "method",
            "--query",
            "tags.building = = '43'",
            "--method",
            "lockDoor",
        ])
        .await,
        "position",
    );
    check(
        &s.fieldctl(&[
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--payload",
            "{oops",
        ])
        .await,
        "payload",
    );
}

/// A door whose controller stopped answering: the hub counts its device as succeeded (its
/// method answered, with 504), fieldctl counts it failed everywhere — summary, exit status,
/// `--json`, and `job devices --status failed`.
#[tokio::test]
async fn a_door_answering_504_is_a_failed_door_everywhere() {
    let s = site().await;
    s.provision().await;
    let gw = s.gateway().await;
    s.sim.handle.set_fault(2, fieldhub::doorsim::Fault::NoReply);
    let query = "deviceId IN ['b43-1', 'b43-2', 'b43-3']";
    let out = s
        .fieldctl(&[
            "job",
            "method",
            "--query",
            query,
            "--method",
            "lockDoor",
            "--id",
            "mute-2",
            "--wait",
            "--poll-interval",
            "100ms",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 devices, 2 succeeded, 1 failed"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("IoT Hub counts 3 succeeded, 0 failed"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("b43-2") && stdout.contains("504"),
        "{}",
        text(&out)
    );

    let json = json_out(&s.fieldctl(&["--json", "job", "show", "mute-2"]).await);
    assert_eq!(json["doors"]["failedCount"], 1, "{json}");
    assert_eq!(json["doors"]["succeededCount"], 2, "{json}");
    assert_eq!(
        json["job"]["deviceJobStatistics"]["succeededCount"], 3,
        "{json}"
    );
    assert_eq!(json["failedDevices"][0]["deviceId"], "b43-2", "{json}");

    let failed = s
        .fieldctl(&["job", "devices", "mute-2", "--status", "failed"])
        .await;
    assert!(failed.status.success(), "{}", text(&failed));
    let listed = String::from_utf8_lossy(&failed.stdout);
    assert!(listed.contains("b43-2"), "{}", text(&failed));
    assert!(
        !listed.contains("b43-1") && !listed.contains("b43-3"),
        "{listed}"
    );
    let done = json_out(
        &s.fieldctl(&[
            "--json",
            "job",
            "devices",
            "mute-2",
            "--status",
            "completed",
        ])
        .await,
    );
    let ids: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["b43-1", "b43-3"]);

    // Cancelling a finished job says so and changes nothing.
    let out = s.fieldctl(&["job", "cancel", "mute-2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing was cancelled"),
        "{}",
        text(&out)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_start_time_in_the_past_is_refused_and_condition_errors_point_into_the_condition() {
    let s = site().await;
    let out = s
        .fieldctl(&[
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "unlockDoor",
            "--start",
            "2020-01-01T08:00:00Z",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in the past"), "{}", text(&out));
    assert!(s.hub.jobs.list(None, None).is_empty(), "no job was created");

    // `tags.building = = '43'`: the error is at column 16 of what the operator typed.
    let out = s
        .fieldctl(&[
            "job",
            "method",
            "--query",
            "tags.building = = '43'",
            "--method",
            "lockDoor",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("position 16"), "{}", text(&out));
    assert!(
        err.contains("(here: tags.building = ^= '43')"),
        "{}",
        text(&out)
    );
}

/// Desired-property jobs and `twin set` with `--wait` follow the doors' acknowledgements: an
/// out-of-range value the hub happily stores is refused by every door, and fieldctl says so
/// (exit 1, each door's `ad`) where the hub counts every device succeeded.
#[tokio::test]
async fn twin_updates_wait_for_the_doors_acknowledgements() {
    let s = site().await;
    s.provision().await;
    let gw = s.gateway().await;
    let query = "tags.building = '43' AND deviceId != 'b43-offline'";
    let out = s
        .fieldctl(&[
            "job",
            "twin",
            "--query",
            query,
            "--desired",
            "Floor=999",
            "--wait",
            "--poll-interval",
            "100ms",
            "--id",
            "floor-999",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 devices, 0 succeeded, 3 failed"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("IoT Hub counts 3 succeeded"),
        "{}",
        text(&out)
    );
    for id in ["b43-1", "b43-2", "b43-3"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{}", text(&out)));
        assert!(
            line.contains("Floor: ac 400: not written: 999 is above the maximum 120"),
            "{line}"
        );
    }
    for u in 1..=3 {
        assert_ne!(s.sim.handle.holding(u, 1), 999, "nothing written");
    }
    // The same as JSON: the acknowledgements, the doors' counts and the failed doors.
    let json = json_out(
        &s.fieldctl(&[
            "--json",
            "job",
            "twin",
            "--query",
            query,
            "--desired",
            "Floor=998",
            "--wait",
            "--poll-interval",
            "100ms",
        ])
        .await,
    );
    assert_eq!(json["doors"]["failedCount"], 3, "{json}");
    assert_eq!(json["failedDevices"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(
        json["acknowledgements"][0]["properties"][0][1]["ac"], 400,
        "{json}"
    );

    let ok = s
        .fieldctl(&["twin", "set", "b43-1", "--desired", "Floor=7", "--wait"])
        .await;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("Floor acknowledged by the door"),
        "{}",
        text(&ok)
    );
    assert_eq!(s.sim.handle.holding(1, 1), 7);
    let refused = s
        .fieldctl(&["twin", "set", "b43-1", "--desired", "Floor=-9", "--wait"])
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("not taken: Floor: ac 400"),
        "{}",
        text(&refused)
    );
    // No gateway behind a door: no acknowledgement, and fieldctl does not claim one.
    let silent = s
        .fieldctl(&[
            "twin",
            "set",
            "b43-offline",
            "--desired",
            "Floor=2",
            "--wait",
            "--ack-timeout",
            "1s",
        ])
        .await;
    assert_eq!(silent.status.code(), Some(1), "{}", text(&silent));
    assert!(
        String::from_utf8_lossy(&silent.stdout).contains("Floor: no acknowledgement"),
        "{}",
        text(&silent)
    );
    gw.shutdown().await;
}
