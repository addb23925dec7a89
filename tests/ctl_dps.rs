//! `fieldctl dps` against fieldhub over TLS: an individual enrollment created with fieldctl
//! provisions its door (own key from `--key-file`, initial twin from `--tag`/`--desired`);
//! every list (`dps group list`, `dps enrollment list`, `devices list`, `job list`) reads past
//! the first page; bad input is one line, exit 2, and changes nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use fieldgate::gateway::Gateway;
use fieldgate::metrics::Metrics;
use fieldhub::doorsim::{self, DoorSimConfig, Listen};
use fieldhub::dps::{Attestation, EnrollmentGroup, IndividualEnrollment};
use fieldhub::{HubConfig, RunningHub};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::harness::{bounded, wait_link, Service, PROFILE};

/// One more than a page (fieldctl asks for 100 items a page, fieldhub serves what it asks).
const MORE_THAN_A_PAGE: usize = 101 + 4;

struct Site {
    dir: TempDir,
    hub: RunningHub,
}

impl Site {
    async fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = HubConfig::for_tests(dir.path().join("hub"));
        // Enough scheduled jobs at once for more than a page of them.
        cfg.max_active_jobs = 2 * MORE_THAN_A_PAGE;
        let hub = bounded("hub start", fieldhub::start(cfg)).await.unwrap();
        Site { dir, hub }
    }

    async fn fieldctl(&self, args: &[&str]) -> Output {
        crate::support::process::fieldctl(&self.hub, args).await
    }

    /// `fieldctl --json ARGS`, which must succeed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let o = self.fieldctl(&all).await;
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
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

/// The `field` of every item of a JSON list, as a set.
fn ids(list: &Value, field: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i[field].as_str().unwrap().to_string())
        .collect()
}

fn symmetric() -> Attestation {
    Attestation {
        kind: "symmetricKey".into(),
        symmetric_key: None,
        x509: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_made_with_fieldctl_provisions_its_door_with_its_own_key() {
    let site = Site::start().await;
    let key_file = site.path("door-7.key");
    let out = site
        .fieldctl(&[
            "dps",
            "enrollment",
            "create",
            "door-7",
            "--tag",
            "building=\"44\"",
            "--desired",
            "Floor=3",
            "--key-file",
            &key_file,
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let key = std::fs::read_to_string(&key_file).unwrap();
    let stored = site.hub.hub.dps_enrollment("door-7").unwrap();
    assert_eq!(
        key.trim(),
        stored.attestation.symmetric_key.unwrap().primary_key
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!text(&out).contains(key.trim()), "the key was printed");
    let shown = site.json(&["dps", "enrollment", "show", "door-7"]).await;
    assert_eq!(
        shown,
        json!([{
            "registrationId": "door-7",
            "deviceId": "door-7",
            "attestation": "symmetricKey",
            "provisioningStatus": "enabled",
            "initialTwin": {"tags": {"building": "44"}, "properties": {"desired": {"Floor": 3}}},
        }])
    );
    let listed = site.fieldctl(&["dps", "enrollment", "list"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("door-7"));
    assert!(!text(&listed).contains(key.trim()), "the key was listed");

    // The door registers with the enrollment's key (its key_file), not a group's.
    let sim = bounded(
        "doorsim start",
        doorsim::start(DoorSimConfig {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            units: vec![7],
            line_baud: None,
        }),
    )
    .await
    .unwrap();
    let map = format!(
        "[hub]\nca_file = \"{}\"\nconnects_per_second = 0\n\n\
         [dps]\nid_scope = \"{}\"\nglobal_endpoint = \"localhost:{}\"\nregistrations_per_second = 0\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"{}\"\n\n\
         [[bus]]\nname = \"tcp\"\ntcp = \"{}\"\ntimeout = \"300ms\"\n\n{PROFILE}\n\
         [[door]]\ndevice_id = \"door-7\"\nbus = \"tcp\"\nunit = 7\nprofile = \"door\"\nkey_file = \"{key_file}\"\n",
        site.hub.ca_path.display(),
        site.hub.dps_id_scope,
        site.hub.mqtt_addr.port(),
        site.path("state"),
        sim.local_addr.unwrap(),
    );
    let config = fieldgate::config::parse(&map, &site.path("fieldgate.toml"))
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    let gw = Gateway::start(&config, Arc::new(Metrics::new())).unwrap();
    wait_link(&gw, "door-7").await;
    let twin = Service::new(&site.hub).twin("door-7").await;
    assert_eq!(twin["tags"]["building"], "44", "{twin}");
    assert_eq!(twin["properties"]["desired"]["Floor"], 3, "{twin}");
    let reg = site.json(&["dps", "registration", "door-7"]).await;
    assert_eq!(reg["status"], "assigned", "{reg}");
    assert_eq!(reg["deviceId"], "door-7", "{reg}");
    assert!(reg.get("enrollmentGroupId").is_none(), "{reg}");
    bounded("gateway shutdown", gw.shutdown()).await;

    // Deleting the enrollment leaves the device in the hub.
    let out = site
        .fieldctl(&["dps", "enrollment", "delete", "door-7"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(site.json(&["dps", "enrollment", "list"]).await, json!([]));
    assert!(site.hub.hub.get_device("door-7").is_ok());
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_reads_past_the_first_page() {
    let site = Site::start().await;
    let hub = &site.hub.hub;
    let mut want_enrollments = BTreeSet::new();
    let mut want_groups = BTreeSet::new();
    let mut want_devices = BTreeSet::new();
    for i in 0..MORE_THAN_A_PAGE {
        let id = format!("door-{i:03}");
        hub.dps_put_enrollment(
            &id,
            IndividualEnrollment {
                registration_id: id.clone(),
                device_id: None,
                attestation: symmetric(),
                provisioning_status: Default::default(),
                initial_twin: None,
                etag: String::new(),
                created_date_time_utc: String::new(),
                last_updated_date_time_utc: String::new(),
            },
            None,
        )
        .unwrap();
        want_enrollments.insert(id.clone());
        let group = format!("site-{i:03}");
        hub.dps_put_group(
            &group,
            EnrollmentGroup {
                enrollment_group_id: group.clone(),
                attestation: symmetric(),
                provisioning_status: Default::default(),
                initial_twin: None,
                etag: String::new(),
                created_date_time_utc: String::new(),
                last_updated_date_time_utc: String::new(),
            },
            None,
        )
        .unwrap();
        want_groups.insert(group);
        hub.create_device(&id).unwrap();
        want_devices.insert(id);
    }
    // The service pages these (a client reading one page would see 100).
    let (status, first) = Service::new(&site.hub)
        .send(
            Method::POST,
            "/enrollments/query",
            Some(json!({"query": "*"})),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first.as_array().unwrap().len(), 100);

    let enrollments = site.json(&["dps", "enrollment", "list"]).await;
    assert_eq!(ids(&enrollments, "registrationId"), want_enrollments);
    let groups = site.json(&["dps", "group", "list"]).await;
    assert_eq!(ids(&groups, "enrollmentGroupId"), want_groups);
    let devices = site.json(&["devices", "list"]).await;
    assert_eq!(ids(&devices, "deviceId"), want_devices);

    // Scheduled jobs, far enough ahead never to start during the test.
    let service = Service::new(&site.hub);
    let start = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let mut want_jobs = BTreeSet::new();
    for i in 0..MORE_THAN_A_PAGE {
        let id = format!("later-{i:03}");
        let (status, body) = service
            .send(
                Method::PUT,
                &format!("/jobs/v2/{id}"),
                Some(json!({
                    "jobId": id,
                    "type": "scheduleDeviceMethod",
                    "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {}, "responseTimeoutInSeconds": 20},
                    "queryCondition": "deviceId = 'nobody'",
                    "startTime": start,
                    "maxExecutionTimeInSeconds": 60,
                })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        want_jobs.insert(id);
    }
    let jobs = site.json(&["job", "list", "--status", "scheduled"]).await;
    assert_eq!(ids(&jobs, "jobId"), want_jobs);
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_enrollment_input_is_one_line_exit_2_and_changes_nothing() {
    let site = Site::start().await;
    let out = site
        .fieldctl(&["dps", "enrollment", "create", "door-1"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let before = site.json(&["dps", "enrollment", "list"]).await;
    let plain = site.path("plain");
    std::fs::write(&plain, "not a directory").unwrap();
    let through_a_file = format!("{plain}/door-9.key");
    let cases: &[(&[&str], &str)] = &[
        (
            &["dps", "enrollment", "create", "Door 9"],
            "not a valid registration id",
        ),
        (
            &["dps", "enrollment", "create", "door-9", "--tag", "building"],
            "is not KEY=VALUE",
        ),
        (
            &["dps", "enrollment", "create", "door-9", "--tag", "a..b=1"],
            "empty part",
        ),
        (
            &[
                "dps",
                "enrollment",
                "create",
                "door-9",
                "--key-file",
                &through_a_file,
            ],
            "cannot write",
        ),
        // Refused by the service: the device id is checked there.
        (
            &[
                "dps",
                "enrollment",
                "create",
                "door-9",
                "--device-id",
                "door 9",
            ],
            "door 9",
        ),
        (&["dps", "enrollment", "show", "door-404"], "door-404"),
        (&["dps", "enrollment", "delete", "door-404"], "door-404"),
    ];
    for (args, says) in cases {
        let out = site.fieldctl(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {}", text(&out));
        // One line, except clap's own usage errors, which add a "try --help" hint.
        if !stderr.contains("--help") {
            assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {}", text(&out));
        }
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
    }
    assert_eq!(site.json(&["dps", "enrollment", "list"]).await, before);
    assert_eq!(site.hub.hub.dps_enrollments().len(), 1);
    assert!(!Path::new(&through_a_file).exists());
    site.hub.shutdown().await;
}
