//! Onboarding through the Device Provisioning Service (issue 15): fieldgate holds only an
//! enrollment group's key; every door registers with fieldhub's DPS, is created in the empty
//! hub with the enrollment's initial twin, connects, and answers a job selected by that twin's
//! tags. A restart reuses the cached assignments; a device deleted in the hub registers again.

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use fieldgate::gateway::Gateway;
use fieldgate::link::LinkState;
use fieldgate::metrics::Metrics;
use fieldhub::doorsim::{self, DoorSim, DoorSimConfig, Listen};
use fieldhub::{HubConfig, RunningHub};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::harness::{bounded, wait_link, Service, PROFILE};

const DOORS: u8 = 3;
const MODEL: &str = "dtmi:fieldgate:door;1";

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

struct Site {
    dir: TempDir,
    hub: RunningHub,
    sim: DoorSim,
    service: Service,
}

impl Site {
    async fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let hub = bounded(
            "hub start",
            fieldhub::start(HubConfig::for_tests(dir.path().join("hub"))),
        )
        .await
        .unwrap();
        let sim = bounded(
            "doorsim start",
            doorsim::start(DoorSimConfig {
                listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
                units: (1..=DOORS).collect(),
                line_baud: None,
            }),
        )
        .await
        .unwrap();
        let service = Service::new(&hub);
        Site {
            dir,
            hub,
            sim,
            service,
        }
    }

    /// `fieldctl` against the hub's service API (fieldhub serves DPS's there too).
    async fn fieldctl(&self, args: &[&str]) -> Output {
        crate::support::process::fieldctl(&self.hub, args).await
    }

    /// Creates the site's enrollment group with fieldctl, as from an installer's laptop: the
    /// service generates the keys and fieldctl writes the primary one to a 0600 file.
    async fn enroll(&self) -> PathBuf {
        let path = self.dir.path().join("group.key");
        let out = self
            .fieldctl(&[
                "dps",
                "group",
                "create",
                "site-43",
                "--tag",
                "building=\"43\"",
                "--key-file",
                path.to_str().unwrap(),
            ])
            .await;
        assert!(out.status.success(), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("site-43"));
        path
    }

    /// A device map with no hub host name and no device keys: only `[dps]` and the group key.
    fn config_text(&self, group_key: &std::path::Path) -> String {
        self.config_with(
            group_key,
            "",
            &format!("localhost:{}", self.hub.mqtt_addr.port()),
        )
    }

    /// The map with extra `[hub]` lines and another DPS endpoint.
    fn config_with(&self, group_key: &std::path::Path, hub_extra: &str, endpoint: &str) -> String {
        let mut t = format!(
            "[hub]\nca_file = \"{}\"\nconnects_per_second = 0\nreconnect_backoff_min = \"100ms\"\nreconnect_backoff_max = \"500ms\"\n{hub_extra}\n\n\
             [dps]\nid_scope = \"{}\"\nglobal_endpoint = \"{endpoint}\"\ngroup_key_file = \"{}\"\nregistrations_per_second = 0\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"{}\"\n\n\
             [[bus]]\nname = \"tcp\"\ntcp = \"{}\"\ntimeout = \"300ms\"\nretries = 1\n\n{}\n",
            self.hub.ca_path.display(),
            self.hub.dps_id_scope,
            group_key.display(),
            self.dir.path().join("state").display(),
            self.sim.local_addr.unwrap(),
            PROFILE.replace("[profile.door]\n", &format!("[profile.door]\nmodel_id = \"{MODEL}\"\n")),
        );
        for unit in 1..=DOORS {
            t.push_str(&format!(
                "[[door]]\ndevice_id = \"door-{unit}\"\nbus = \"tcp\"\nunit = {unit}\nprofile = \"door\"\ngroup_key = true\n\n"
            ));
        }
        t
    }

    async fn gateway(&self, group_key: &std::path::Path) -> Gateway {
        self.gateway_from(&self.config_text(group_key)).await
    }

    /// Starts the gateway on a map and waits until every door is connected.
    async fn gateway_from(&self, text: &str) -> Gateway {
        let path = self.dir.path().join("fieldgate.toml");
        let config = fieldgate::config::parse(text, &path.display().to_string())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let gw = Gateway::start(&config, Arc::new(Metrics::new())).unwrap();
        for unit in 1..=DOORS {
            wait_link(&gw, &format!("door-{unit}")).await;
        }
        gw
    }

    /// Runs a `lockDoor` job on `tags.building = '43'` and waits for it to finish.
    async fn lock_job(&self, id: &str) -> Value {
        let (status, body) = self
            .service
            .send(
                Method::PUT,
                &format!("/jobs/v2/{id}"),
                Some(json!({
                    "jobId": id,
                    "type": "scheduleDeviceMethod",
                    "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {}, "responseTimeoutInSeconds": 20},
                    "queryCondition": "tags.building = '43'",
                    "startTime": chrono::Utc::now().to_rfc3339(),
                    "maxExecutionTimeInSeconds": 60,
                })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        bounded("job finished", async {
            loop {
                let (_, job) = self
                    .service
                    .send(Method::GET, &format!("/jobs/v2/{id}"), None)
                    .await;
                if matches!(job["status"].as_str(), Some("completed" | "failed")) {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_onboards_from_an_empty_hub_through_dps_only() {
    let site = Site::start().await;
    assert!(site.hub.hub.device_ids().is_empty());
    let key = site.enroll().await;

    let gw = site.gateway(&key).await;
    assert_eq!(site.hub.hub.dps_register_calls(), u64::from(DOORS));
    for unit in 1..=DOORS {
        let id = format!("door-{unit}");
        let twin = site.service.twin(&id).await;
        assert_eq!(twin["tags"]["building"], "43", "{twin}");
        // Plug and Play: the model id announced at CONNECT, and sent in the DPS payload.
        assert_eq!(twin["modelId"], MODEL, "{twin}");
        let reg = json_out(&site.fieldctl(&["--json", "dps", "registration", &id]).await);
        assert_eq!(reg["status"], "assigned", "{reg}");
        assert_eq!(reg["deviceId"], id.as_str(), "{reg}");
        assert_eq!(reg["payload"]["modelId"], MODEL, "{reg}");
    }
    let regs = json_out(
        &site
            .fieldctl(&["--json", "dps", "registrations", "site-43"])
            .await,
    );
    assert_eq!(regs.as_array().unwrap().len(), usize::from(DOORS), "{regs}");
    let groups = site.fieldctl(&["--json", "dps", "group", "list"]).await;
    let listed = json_out(&groups);
    assert_eq!(listed[0]["enrollmentGroupId"], "site-43");
    assert_eq!(listed[0]["initialTwin"]["tags"]["building"], "43");
    let key = std::fs::read_to_string(&key).unwrap();
    assert!(!String::from_utf8_lossy(&groups.stdout).contains(key.trim()));
    let key = site.dir.path().join("group.key");
    let job = site.lock_job("onboard-lock").await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        job["deviceJobStatistics"]["succeededCount"],
        u64::from(DOORS),
        "{job}"
    );

    // The assignments are cached privately beside the event store.
    let cache = site.dir.path().join("state").join("dps-assignments.json");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached.as_object().unwrap().len(), usize::from(DOORS));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    bounded("gateway shutdown", gw.shutdown()).await;

    // A restart connects from the cache: no registration.
    let gw = site.gateway(&key).await;
    assert_eq!(site.hub.hub.dps_register_calls(), u64::from(DOORS));

    // A door whose device is deleted is refused by the hub, registers again and comes back.
    let (status, body) = site
        .service
        .send(Method::DELETE, "/devices/door-2", None)
        .await;
    assert!(status == 204 || status == 200, "{status} {body}");
    bounded("door-2 registered again", async {
        loop {
            let back = site.hub.hub.get_device("door-2").is_ok()
                && gw.link("door-2").unwrap().state() == LinkState::Connected;
            if back && site.hub.hub.dps_register_calls() == u64::from(DOORS) + 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let twin = site.service.twin("door-2").await;
    assert_eq!(twin["tags"]["building"], "43", "{twin}");
    bounded("gateway shutdown", gw.shutdown()).await;

    // Deleting the group leaves the devices; an unknown group is one line and exit 2.
    let out = site.fieldctl(&["dps", "group", "delete", "site-43"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        json_out(&site.fieldctl(&["--json", "dps", "group", "list"]).await),
        json!([])
    );
    let out = site.fieldctl(&["dps", "group", "show", "site-43"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out)
    );
    assert_eq!(site.hub.hub.device_ids().len(), usize::from(DOORS));
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_group_key_or_scope_keeps_doors_retrying_and_says_why() {
    let site = Site::start().await;
    site.enroll().await;
    let wrong = site.dir.path().join("wrong.key");
    std::fs::write(&wrong, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = site.dir.path().join("fieldgate.toml");
    let config =
        fieldgate::config::parse(&site.config_text(&wrong), &path.display().to_string()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let gw = Gateway::start(&config, Arc::clone(&metrics)).unwrap();
    let mut w = gw.link("door-1").unwrap().watch_state();
    let state = bounded(
        "door-1 down",
        w.wait_for(|s| matches!(s, LinkState::Disconnected { .. })),
    )
    .await
    .unwrap()
    .clone();
    let LinkState::Disconnected { reason, .. } = state else {
        unreachable!()
    };
    assert!(reason.contains("DPS registration"), "{reason}");
    assert!(reason.contains("id_scope"), "{reason}");
    assert!(
        metrics
            .dps_registrations
            .with_label_values(&["refused"])
            .get()
            >= 1
    );
    assert!(site.hub.hub.device_ids().is_empty());
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_individual_enrollment_takes_precedence_with_its_own_key_and_twin() {
    let site = Site::start().await;
    let key = site.enroll().await;
    const OWN: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=";
    let (status, body) = site
        .service
        .send(
            Method::PUT,
            "/enrollments/door-3",
            Some(json!({
                "registrationId": "door-3",
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": OWN, "secondaryKey": OWN}},
                "initialTwin": {"tags": {"building": "44"}},
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = site.config_text(&key).replace(
        "device_id = \"door-3\"\nbus = \"tcp\"\nunit = 3\nprofile = \"door\"\ngroup_key = true",
        &format!(
            "device_id = \"door-3\"\nbus = \"tcp\"\nunit = 3\nprofile = \"door\"\nkey = \"{OWN}\""
        ),
    );
    let gw = site.gateway_from(&text).await;
    let twin = site.service.twin("door-3").await;
    assert_eq!(twin["tags"]["building"], "44", "{twin}");
    let reg = site.hub.hub.dps_registration("door-3").unwrap();
    assert_eq!(reg.enrollment_group_id, None);
    assert_eq!(site.service.twin("door-1").await["tags"]["building"], "43");
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_wait_for_paced_registrations() {
    let site = Site::start().await;
    let key = site.enroll().await;
    // One registration a second: the third door registers two seconds after the first.
    let text = site.config_text(&key).replace(
        "registrations_per_second = 0",
        "registrations_per_second = 1",
    );
    let path = site.dir.path().join("fieldgate.toml");
    let config = fieldgate::config::parse(&text, &path.display().to_string()).unwrap();
    let gw = Gateway::start(&config, Arc::new(Metrics::new())).unwrap();
    bounded("ready", async {
        while !gw.readiness().ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        site.hub.hub.dps_register_calls() < u64::from(DOORS),
        "ready only after every registration"
    );
    for unit in 1..=DOORS {
        wait_link(&gw, &format!("door-{unit}")).await;
    }
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_registration_waits_the_retry_after_it_is_given() {
    let site = Site::start().await;
    let key = site.enroll().await;
    // One registration a second at the service; the gateway does not pace its own.
    site.hub.hub.set_dps_throttle(Some(Duration::from_secs(1)));
    let gw = site.gateway(&key).await;
    assert_eq!(site.hub.hub.dps_register_calls(), u64::from(DOORS));
    assert!(site.hub.hub.dps_throttled_calls() >= 1);
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_goes_over_websockets_when_the_hub_link_does() {
    let site = Site::start().await;
    let key = site.enroll().await;
    // The endpoint's port is closed: only the WebSocket transport (the hub's HTTPS port, path
    // /$iothub/websocket) can reach the service.
    let text = site.config_with(
        &key,
        &format!(
            "transport = \"websocket\"\nwebsocket_port = {}",
            site.hub.https_addr.port()
        ),
        "localhost:1",
    );
    let gw = site.gateway_from(&text).await;
    assert_eq!(site.hub.hub.dps_register_calls(), u64::from(DOORS));
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_enrollment_is_a_clear_error_and_no_device_is_created() {
    let site = Site::start().await;
    let key = site.enroll().await;
    let (status, body) = site
        .service
        .send(
            Method::PUT,
            "/enrollmentGroups/site-43",
            Some(json!({
                "enrollmentGroupId": "site-43",
                "attestation": {"type": "symmetricKey", "symmetricKey": {
                    "primaryKey": std::fs::read_to_string(&key).unwrap().trim(),
                }},
                "provisioningStatus": "disabled",
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = site.dir.path().join("fieldgate.toml");
    let config =
        fieldgate::config::parse(&site.config_text(&key), &path.display().to_string()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let gw = Gateway::start(&config, Arc::clone(&metrics)).unwrap();
    let mut w = gw.link("door-1").unwrap().watch_state();
    let state = bounded(
        "door-1 down",
        w.wait_for(|s| matches!(s, LinkState::Disconnected { .. })),
    )
    .await
    .unwrap()
    .clone();
    let LinkState::Disconnected { reason, .. } = state else {
        unreachable!()
    };
    assert!(reason.contains("registration disabled"), "{reason}");
    assert!(
        metrics
            .dps_registrations
            .with_label_values(&["failed"])
            .get()
            >= 1
    );
    assert!(site.hub.hub.device_ids().is_empty());
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_that_cannot_register_does_not_hold_back_the_others() {
    let site = Site::start().await;
    let key = site.enroll().await;
    // door-3 signs with a key of its own that no enrollment knows.
    let text = site.config_text(&key).replace(
        "device_id = \"door-3\"\nbus = \"tcp\"\nunit = 3\nprofile = \"door\"\ngroup_key = true",
        "device_id = \"door-3\"\nbus = \"tcp\"\nunit = 3\nprofile = \"door\"\nkey = \"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=\"",
    );
    assert!(text.contains("QUJDREVGR0hJ"));
    let path = site.dir.path().join("fieldgate.toml");
    let config = fieldgate::config::parse(&text, &path.display().to_string()).unwrap();
    let gw = Gateway::start(&config, Arc::new(Metrics::new())).unwrap();
    wait_link(&gw, "door-1").await;
    wait_link(&gw, "door-2").await;
    let mut w = gw.link("door-3").unwrap().watch_state();
    bounded(
        "door-3 refused",
        w.wait_for(|s| matches!(s, LinkState::Disconnected { reason, .. } if reason.contains("DPS registration"))),
    )
    .await
    .unwrap();
    assert_eq!(
        site.hub.hub.device_ids(),
        vec!["door-1".to_string(), "door-2".to_string()]
    );
    bounded("gateway shutdown", gw.shutdown()).await;
    site.hub.shutdown().await;
}

const MAP_TAIL: &str = r#"
[[bus]]
name = "a"
tcp = "127.0.0.1:502"

[profile.p.methods.lockDoor]
action = "write_coil"
address = 0
value = true

[[door]]
device_id = "d1"
bus = "a"
unit = 1
profile = "p"
group_key = true
"#;

fn parse(text: &str) -> Result<fieldgate::config::Config, Vec<fieldgate::config::ConfigError>> {
    fieldgate::config::parse(text, "site.toml").map_err(|e| e.errors)
}

#[test]
fn dps_section_defaults_and_group_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("group.key");
    std::fs::write(&key, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = format!(
        "[hub]\n\n[dps]\nid_scope = \"0ne00123ABC\"\ngroup_key_file = \"{}\"\n\n[events]\ndir = \"/srv/state\"\n{MAP_TAIL}",
        key.display()
    );
    let c = parse(&text).unwrap_or_else(|e| panic!("{e:#?}"));
    let d = c.dps.as_ref().unwrap();
    assert_eq!(d.id_scope, "0ne00123ABC");
    assert_eq!(d.global_endpoint, fieldgate::config::DEFAULT_DPS_ENDPOINT);
    assert_eq!(
        d.cache,
        std::path::Path::new("/srv/state").join(fieldgate::config::DEFAULT_CACHE_FILE)
    );
    assert_eq!(
        d.registrations_per_second,
        fieldgate::config::DEFAULT_REGISTRATIONS_PER_SECOND
    );
    // The door's key is derived from the group key, the DPS way.
    let expected =
        iothub_proto::sas::derive_device_key("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=", "d1")
            .unwrap();
    assert_eq!(c.doors[0].key.expose(), expected);
    // The first hop is the service's endpoint.
    assert_eq!(c.hub.hostname, fieldgate::config::DEFAULT_DPS_ENDPOINT);
}

#[test]
fn dps_errors_name_line_and_key() {
    // No hostname and no [dps].
    let errs = parse(&format!("[hub]\ngroup_key = \"QUJD\"\n{MAP_TAIL}")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.line == 1 && e.message.contains("[dps]")),
        "{errs:#?}"
    );
    // A bad ID scope, a bad endpoint, an unknown key.
    let text = format!(
        "[hub]\nhostname = \"h.example\"\ngroup_key = \"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=\"\n\n[dps]\nid_scope = \"0ne/../x\"\nglobal_endpoint = \"a b\"\n{MAP_TAIL}"
    );
    let errs = parse(&text).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.line == 6 && e.key == "dps.id_scope" && e.message.contains("ID scope")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.line == 7 && e.key == "dps.global_endpoint"),
        "{errs:#?}"
    );
    let errs = parse(&format!(
        "[hub]\nhostname = \"h.example\"\n\n[dps]\nid_scope = \"0ne1\"\nscope = \"x\"\n{MAP_TAIL}"
    ))
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.line == 6 && e.message.contains("scope")),
        "{errs:#?}"
    );
}
