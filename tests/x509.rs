//! X.509 device authentication (issue 15): doors with a certificate and key file (CN = device
//! id) instead of a SAS key, against fieldhub registering one door by a CA
//! (`certificateAuthority`) and one by thumbprint (`selfSigned`). A certificate the hub does not
//! know is refused and the door retried; a certificate for another device is a config error
//! naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fieldgate::gateway::Gateway;
use fieldgate::link::LinkState;
use fieldgate::metrics::Metrics;
use fieldhub::doorsim::{self, DoorSimConfig, Listen};
use fieldhub::x509::AuthType;
use fieldhub::HubConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;

use crate::support::harness::{bounded, wait_link, Service, PROFILE};

struct Pem {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn ca() -> (Pem, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "site CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    let pem = Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    };
    (pem, Issuer::new(p, key))
}

fn device_cert(cn: &str, issuer: Option<&Issuer<'static, KeyPair>>) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = match issuer {
        Some(i) => p.signed_by(&key, i).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn write_pair(dir: &Path, name: &str, pem: &Pem) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (cert, key)
}

fn sha256_hex(der: &[u8]) -> String {
    fieldhub::x509::thumbprints(der).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doors_authenticate_with_certificates_by_ca_and_by_thumbprint() {
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
            units: vec![1, 2, 3],
            line_baud: None,
        }),
    )
    .await
    .unwrap();
    let (ca_pem, issuer) = ca();
    let (rogue_pem, rogue) = ca();
    let _ = (
        &ca_pem.key,
        &rogue_pem.cert,
        rogue_pem.der.len(),
        ca_pem.der.len(),
    );
    hub.hub.add_ca_certificate("site", &ca_pem.cert).unwrap();

    let by_ca = device_cert("door-1", Some(&issuer));
    let self_signed = device_cert("door-2", None);
    let by_rogue = device_cert("door-3", Some(&rogue));
    let register = |id: &str, auth: AuthType| {
        hub.hub
            .upsert_device(
                id,
                fieldhub::hub::DeviceUpdate {
                    auth: Some(auth),
                    ..Default::default()
                },
                None,
            )
            .unwrap();
    };
    register("door-1", AuthType::CertificateAuthority);
    register(
        "door-2",
        AuthType::SelfSigned {
            primary: Some(sha256_hex(&self_signed.der)),
            secondary: None,
        },
    );
    register("door-3", AuthType::CertificateAuthority);

    let mut map = format!(
        "[hub]\nhostname = \"localhost:{}\"\nca_file = \"{}\"\nconnects_per_second = 0\nreconnect_backoff_min = \"100ms\"\nreconnect_backoff_max = \"500ms\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"{}\"\n\n[[bus]]\nname = \"tcp\"\ntcp = \"{}\"\ntimeout = \"300ms\"\n\n{PROFILE}\n",
        hub.mqtt_addr.port(),
        hub.ca_path.display(),
        dir.path().join("state").display(),
        sim.local_addr.unwrap(),
    );
    for (unit, pem) in [(1, &by_ca), (2, &self_signed), (3, &by_rogue)] {
        let (cert, key) = write_pair(dir.path(), &format!("door-{unit}"), pem);
        map.push_str(&format!(
            "[[door]]\ndevice_id = \"door-{unit}\"\nbus = \"tcp\"\nunit = {unit}\nprofile = \"door\"\ncert_file = \"{}\"\ncert_key_file = \"{}\"\n\n",
            cert.display(),
            key.display()
        ));
    }
    let config = fieldgate::config::parse(&map, "site.toml").unwrap_or_else(|e| panic!("{e}"));
    let metrics = Arc::new(Metrics::new());
    let gw = Gateway::start(&config, Arc::clone(&metrics)).unwrap();
    wait_link(&gw, "door-1").await;
    wait_link(&gw, "door-2").await;
    // rcgen's default validity ends in 4096.
    assert!(
        metrics
            .door_certificate_expiry
            .with_label_values(&["door-1"])
            .get()
            > 4_000_000_000
    );
    // door-3's chain ends at a CA the hub does not know: refused at CONNECT, retried.
    let mut w = gw.link("door-3").unwrap().watch_state();
    bounded(
        "door-3 refused",
        w.wait_for(
            |s| matches!(s, LinkState::Disconnected { reason, .. } if reason.contains("refused")),
        ),
    )
    .await
    .unwrap();

    let service = Service::new(&hub);
    for id in ["door-1", "door-2"] {
        let (status, body) = service.invoke(id, "lockDoor", json!({})).await;
        assert_eq!(status, 200, "{id}: {body}");
        let (_, device) = service
            .send(reqwest::Method::GET, &format!("/devices/{id}"), None)
            .await;
        assert_ne!(device["authentication"]["type"], "sas", "{device}");
    }
    bounded("gateway shutdown", gw.shutdown()).await;
    hub.shutdown().await;
}

#[test]
fn a_certificate_for_another_device_or_without_its_key_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let other = device_cert("door-9", None);
    let (cert, key) = write_pair(dir.path(), "door-1", &other);
    let base = format!(
        "[hub]\nhostname = \"h.example\"\n\n[[bus]]\nname = \"a\"\ntcp = \"127.0.0.1:502\"\n\n[profile.p.methods.lockDoor]\naction = \"write_coil\"\naddress = 0\nvalue = true\n\n[[door]]\ndevice_id = \"door-1\"\nbus = \"a\"\nunit = 1\nprofile = \"p\"\ncert_file = \"{}\"\n",
        cert.display()
    );
    let text = format!("{base}cert_key_file = \"{}\"\n", key.display());
    let errs = fieldgate::config::parse(&text, "site.toml").unwrap_err();
    assert!(
        errs.errors.iter().any(|e| e.key == "door[0].cert_file"
            && e.line == 18
            && e.message.contains("`door-9`")),
        "{errs}"
    );
    let errs = fieldgate::config::parse(&base, "site.toml").unwrap_err();
    assert!(
        errs.errors
            .iter()
            .any(|e| e.message.contains("cert_file needs cert_key_file")),
        "{errs}"
    );
    // The key never shows in errors.
    let garbled = format!("{base}cert_key_file = \"{}\"\n", cert.display());
    let errs = fieldgate::config::parse(&garbled, "site.toml").unwrap_err();
    assert!(!errs.to_string().contains("PRIVATE KEY"), "{errs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doors_register_through_an_x509_enrollment_group() {
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
            units: vec![1, 2],
            line_baud: None,
        }),
    )
    .await
    .unwrap();
    let (ca_pem, issuer) = ca();
    let service = Service::new(&hub);
    // The group is created with fieldctl, from the CA certificate alone.
    let ca_file = dir.path().join("site-ca.pem");
    std::fs::write(&ca_file, &ca_pem.cert).unwrap();
    let ca_arg = ca_file.display().to_string();
    let out = crate::support::process::fieldctl(
        &hub,
        &[
            "--json",
            "dps",
            "group",
            "create",
            "site-x509",
            "--tag",
            "building=\"43\"",
            "--certificate",
            &ca_arg,
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["attestation"], "x509", "{listed}");

    let mut map = format!(
        "[hub]\nca_file = \"{}\"\nconnects_per_second = 0\nreconnect_backoff_min = \"100ms\"\nreconnect_backoff_max = \"500ms\"\n\n[dps]\nid_scope = \"{}\"\nglobal_endpoint = \"localhost:{}\"\nregistrations_per_second = 0\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"{}\"\n\n[[bus]]\nname = \"tcp\"\ntcp = \"{}\"\ntimeout = \"300ms\"\n\n{PROFILE}\n",
        hub.ca_path.display(),
        hub.dps_id_scope,
        hub.mqtt_addr.port(),
        dir.path().join("state").display(),
        sim.local_addr.unwrap(),
    );
    for unit in 1..=2 {
        let pem = device_cert(&format!("door-{unit}"), Some(&issuer));
        let (cert, key) = write_pair(dir.path(), &format!("door-{unit}"), &pem);
        map.push_str(&format!(
            "[[door]]\ndevice_id = \"door-{unit}\"\nbus = \"tcp\"\nunit = {unit}\nprofile = \"door\"\ncert_file = \"{}\"\ncert_key_file = \"{}\"\n\n",
            cert.display(),
            key.display()
        ));
    }
    let config = fieldgate::config::parse(&map, "site.toml").unwrap_or_else(|e| panic!("{e}"));
    let gw = Gateway::start(&config, Arc::new(Metrics::new())).unwrap();
    wait_link(&gw, "door-1").await;
    wait_link(&gw, "door-2").await;
    assert_eq!(hub.hub.dps_register_calls(), 2);
    for id in ["door-1", "door-2"] {
        let twin = service.twin(id).await;
        assert_eq!(twin["tags"]["building"], "43", "{twin}");
        let (_, device) = service
            .send(reqwest::Method::GET, &format!("/devices/{id}"), None)
            .await;
        assert_eq!(
            device["authentication"]["type"], "certificateAuthority",
            "{device}"
        );
    }
    bounded("gateway shutdown", gw.shutdown()).await;
    hub.shutdown().await;
}
