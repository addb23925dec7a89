//! fieldhub's Device Provisioning Service against the official provisioning SDKs, unmodified
//! (issue 15): npm `azure-iot-provisioning-device` with `azure-iot-provisioning-device-mqtt`
//! and `azure-iot-security-symmetric-key`, and PyPI `azure-iot-device`'s
//! `ProvisioningDeviceClient`, each with a symmetric-key enrollment group, driven by
//! `tests/peers/node/dps.js` and `tests/peers/python/dps.py`. The registered device then
//! connects with the same SDK's device client at the assigned hub and reads the desired
//! properties the enrollment's initial twin set.
//!
//! The Node client dials `mqtts://{provisioningHost}`, so it reaches a hub on an ephemeral port
//! (`localhost:PORT`); the Python client dials 8883, so its test binds 127.0.0.1:8883 and
//! 443 like `sdk` (root only; it prints `SKIPPED` otherwise), holding [`support::SDK_PORTS`]
//! meanwhile, and waits while another copy of the test binary holds those ports.
//! `scripts/test` runs this module on its own (`cargo test -p fieldhub --test tests sdk_dps::`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldhub::dps::{Attestation, EnrollmentGroup, ProvisioningStatus, SymmetricKey};
use fieldhub::{HubConfig, RunningHub};
use serde_json::{json, Value};
use tokio::process::Command;

use crate::support;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(30);
const GROUP_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const MODEL: &str = "dtmi:fieldgate:door;1";

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers")
}

fn enroll(hub: &RunningHub) {
    hub.hub
        .dps_put_group(
            "sdk-site",
            EnrollmentGroup {
                enrollment_group_id: "sdk-site".into(),
                attestation: Attestation {
                    kind: "symmetricKey".into(),
                    symmetric_key: Some(SymmetricKey {
                        primary_key: GROUP_KEY.into(),
                        secondary_key: String::new(),
                    }),
                    x509: None,
                },
                provisioning_status: ProvisioningStatus::Enabled,
                initial_twin: Some(json!({
                    "tags": {"building": "43"},
                    "properties": {"desired": {"Building": 43}},
                })),
                etag: String::new(),
                created_date_time_utc: String::new(),
                last_updated_date_time_utc: String::new(),
            },
            None,
        )
        .unwrap();
}

/// Runs a script and returns its steps by name, asserting each of `expected` (and `done`)
/// is there and ok.
async fn run(mut cmd: Command, what: &str, expected: &[&str]) -> Vec<Value> {
    cmd.kill_on_drop(true).current_dir(peers_dir());
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: no exit within {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("step").is_some())
        .collect();
    let ok = |name: &str| steps.iter().any(|s| s["step"] == name && s["ok"] == true);
    let missing: Vec<&&str> = expected
        .iter()
        .chain(&["done"])
        .filter(|e| !ok(e))
        .collect();
    if !out.status.success() || !missing.is_empty() {
        panic!(
            "{what} failed ({}); missing {missing:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
    }
    steps
}

fn script_env(cmd: &mut Command, hub: &RunningHub, host: &str, registration: &str) {
    let ca = hub.ca_path.display().to_string();
    cmd.env("PROVISIONING_HOST", host)
        .env("ID_SCOPE", &hub.dps_id_scope)
        .env("GROUP_KEY", GROUP_KEY)
        .env("REGISTRATION_ID", registration)
        .env("CA_FILE", &ca)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("MODEL_ID", MODEL)
        .env("EXPECT_DESIRED", r#"{"Building": 43}"#)
        .env("PYTHONUNBUFFERED", "1");
}

/// What the hub recorded for a registration made by an SDK.
fn check_hub_side(hub: &RunningHub, registration: &str) {
    let reg = hub.hub.dps_registration(registration).unwrap();
    let reg = serde_json::to_value(&reg).unwrap();
    assert_eq!(reg["status"], "assigned", "{reg}");
    assert_eq!(reg["enrollmentGroupId"], "sdk-site", "{reg}");
    assert_eq!(reg["payload"]["modelId"], MODEL, "{reg}");
    let twin = hub.hub.get_twin(registration).unwrap();
    assert_eq!(twin["tags"]["building"], "43", "{twin}");
}

#[tokio::test]
async fn node_provisioning_sdk_registers_with_a_group_key() {
    let modules = peers_dir().join("node/node_modules/azure-iot-provisioning-device-mqtt");
    assert!(
        modules.is_dir(),
        "the Node SDKs are not installed: run `npm ci` in tests/peers/node (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let hub = tokio::time::timeout(T, fieldhub::start(HubConfig::for_tests(dir.path())))
        .await
        .unwrap()
        .unwrap();
    enroll(&hub);
    let mut cmd = Command::new("node");
    cmd.arg(peers_dir().join("node/dps.js"));
    let host = format!("localhost:{}", hub.mqtt_addr.port());
    script_env(&mut cmd, &hub, &host, "node-door-1");
    run(
        cmd,
        "node dps.js",
        &[
            "provisioning.register",
            "provisioning.register.wrong-key-refused",
            "device.open+getTwin",
        ],
    )
    .await;
    check_hub_side(&hub, "node-door-1");
    // The wrong key was turned away at CONNECT: one registration only.
    assert_eq!(hub.hub.dps_register_calls(), 1);
    hub.shutdown().await;
}

/// Starts a hub on 127.0.0.1:8883 and :443. `None` when this process may not bind them.
async fn start_on_sdk_ports(data_dir: &Path) -> Option<RunningHub> {
    support::start_on_sdk_ports(data_dir, "the Python provisioning SDK tests").await
}

#[tokio::test]
async fn python_provisioning_sdk_registers_with_a_group_key_on_8883() {
    let _ports = support::SDK_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(hub) = start_on_sdk_ports(dir.path()).await else {
        return;
    };
    enroll(&hub);
    let mut cmd = Command::new("python3");
    cmd.arg(peers_dir().join("python/dps.py"));
    script_env(&mut cmd, &hub, "localhost", "py-door-1");
    let steps = run(
        cmd,
        "python dps.py",
        &["provisioning.register", "device.connect+get_twin"],
    )
    .await;
    let reg = steps
        .iter()
        .find(|s| s["step"] == "provisioning.register")
        .unwrap();
    assert_eq!(reg["assignedHub"], "localhost", "{reg}");
    check_hub_side(&hub, "py-door-1");
    hub.shutdown().await;
}

#[tokio::test]
async fn python_provisioning_sdk_registers_with_an_x509_certificate_on_8883() {
    use fieldhub::dps::{X509Attestation, X509Certificate, X509Certificates};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let _ports = support::SDK_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(hub) = start_on_sdk_ports(&dir.path().join("hub")).await else {
        return;
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "sdk site CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "py-x509-door");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.path().join("door.pem"), dir.path().join("door.key"));
    std::fs::write(&cert_file, leaf_cert.pem()).unwrap();
    std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
    hub.hub
        .dps_put_group(
            "sdk-x509",
            EnrollmentGroup {
                enrollment_group_id: "sdk-x509".into(),
                attestation: Attestation {
                    kind: "x509".into(),
                    symmetric_key: None,
                    x509: Some(X509Attestation {
                        signing_certificates: Some(X509Certificates {
                            primary: Some(X509Certificate {
                                certificate: Some(ca_cert.pem()),
                            }),
                            secondary: None,
                        }),
                    }),
                },
                provisioning_status: ProvisioningStatus::Enabled,
                initial_twin: Some(json!({"properties": {"desired": {"Building": 43}}})),
                etag: String::new(),
                created_date_time_utc: String::new(),
                last_updated_date_time_utc: String::new(),
            },
            None,
        )
        .unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(peers_dir().join("python/dps.py"));
    script_env(&mut cmd, &hub, "localhost", "py-x509-door");
    cmd.env_remove("GROUP_KEY")
        .env("CERT_FILE", &cert_file)
        .env("KEY_FILE", &key_file);
    run(
        cmd,
        "python dps.py (x509)",
        &["provisioning.register", "device.connect+get_twin"],
    )
    .await;
    let device = hub.hub.device_json("py-x509-door").unwrap();
    assert_eq!(
        device["authentication"]["type"], "certificateAuthority",
        "{device}"
    );
    hub.shutdown().await;
}
