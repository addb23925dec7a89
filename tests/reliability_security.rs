//! Security end to end: TLS verification is on by default (the system roots alone
//! do not trust a private hub; another CA or a certificate for another name is refused with a
//! clear reason), key files readable by others are refused, metrics listen on loopback by
//! default, keys and tokens never reach the log, `/metrics` or `/readyz` of the running
//! binary, and fieldhub refuses forged tokens and devices' tokens on its service API.
//! (fieldhub's own suite covers cross-device topics, expired tokens, stolen device tokens and
//! per-policy permissions: fieldhub/tests/suite/{mqtt_device,rest_service}.rs.)

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use fieldgate::config;
use fieldgate::gateway::Gateway;
use fieldgate::link::LinkState;
use fieldhub::HubConfig;
use iothub_proto::sas;

use crate::support::harness::{bounded, Env, LIMIT};
use crate::support::process::{signal, wait_doors_ready, Service};
use crate::support::reliability::{config_text, parse_config, Client};

/// Starts the gateway on `text` and returns the reason door-1's link gives for not connecting.
async fn refused_reason(env: &Env, text: &str) -> String {
    let gw = Gateway::start(&parse_config(env, text), Arc::clone(&env.metrics)).unwrap();
    let mut w = gw.link("door-1").unwrap().watch_state();
    let s = bounded(
        "link refused",
        w.wait_for(|s| matches!(s, LinkState::Disconnected { .. })),
    )
    .await
    .unwrap()
    .clone();
    assert!(
        !env.hub.hub.is_connected("door-1"),
        "never connected to the hub"
    );
    gw.shutdown().await;
    match s {
        LinkState::Disconnected { reason, .. } => reason,
        other => unreachable!("{other:?}"),
    }
}

#[tokio::test]
async fn tls_verification_is_on_by_default_and_refuses_wrong_ca_and_wrong_name() {
    let env = Env::start(1).await;
    let good = config_text(&env, "", "");
    let ca_line = format!("ca_file = \"{}\"\n", env.hub.ca_path.display());
    assert!(good.contains(&ca_line));

    // No extra CA: the system roots do not know fieldhub's private CA.
    let reason = refused_reason(&env, &good.replace(&ca_line, "")).await;
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("UnknownIssuer"),
        "default verification: {reason}"
    );

    // Another hub's CA.
    let other_dir = tempfile::tempdir().unwrap();
    let other = fieldhub::start(HubConfig::for_tests(other_dir.path()))
        .await
        .unwrap();
    let reason = refused_reason(
        &env,
        &good.replace(
            &ca_line,
            &format!("ca_file = \"{}\"\n", other.ca_path.display()),
        ),
    )
    .await;
    // Both CAs carry the same name, so rustls finds "the" issuer and its signature fails.
    assert!(
        reason.contains("invalid peer certificate")
            && (reason.contains("UnknownIssuer") || reason.contains("BadSignature")),
        "wrong CA named: {reason}"
    );
    other.shutdown().await;

    // The right CA, but the hub's certificate is not for the name dialled: a hub on
    // 127.0.0.2 whose certificate names only localhost, 127.0.0.1 and its hostname.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = HubConfig::for_tests(dir.path());
    cfg.mqtt_addr = "127.0.0.2:0".parse().unwrap();
    let misnamed = fieldhub::start(cfg).await.unwrap();
    let id = misnamed.hub.create_device("door-1").unwrap();
    let text = good
        .replace(
            &env.hub_host(),
            &format!("127.0.0.2:{}", misnamed.mqtt_addr.port()),
        )
        .replace(
            &ca_line,
            &format!("ca_file = \"{}\"\n", misnamed.ca_path.display()),
        )
        .replace(&env.doors[0].key, &id.primary_key);
    let reason = refused_reason(&env, &text).await;
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("not valid for name"),
        "wrong name named: {reason}"
    );
    assert!(!misnamed.hub.is_connected("door-1"));
    misnamed.shutdown().await;
}

fn write_mode(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_files_others_can_read_are_refused_without_echoing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "c2VjcmV0LWtleS1vZi1kMQ==";
    let key_path = dir.path().join("d1.key");
    let text = "[hub]\nhostname = \"h.example\"\n\n[[bus]]\nname = \"b\"\ntcp = \"127.0.0.1:502\"\n\n[profile.p.methods.lock]\naction = \"write_coil\"\naddress = 0\nvalue = true\n\n[[door]]\ndevice_id = \"d1\"\nbus = \"b\"\nunit = 1\nprofile = \"p\"\nkey_file = \"d1.key\"\n".to_string();
    let cfg_path = dir.path().join("site.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    for (mode, refused) in [
        (0o600, false),
        (0o400, false),
        (0o640, false), // group-readable (root:fieldgate): accepted, with a warning
        (0o644, true),
        (0o604, true),
        (0o660, true),
        (0o666, true),
    ] {
        write_mode(&key_path, &format!("{key}\n"), mode);
        match config::load(&cfg_path) {
            Ok(c) => {
                assert!(!refused, "mode {mode:o} accepted");
                assert_eq!(c.doors[0].key.expose(), key);
            }
            Err(e) => {
                assert!(refused, "mode {mode:o} refused: {e}");
                let msg = e.to_string();
                assert!(msg.contains("chmod 600"), "{msg}");
                assert!(msg.contains("d1.key"), "{msg}");
                assert!(!msg.contains(key), "the key is not echoed: {msg}");
            }
        }
    }
    // `fieldgate check` says so too, and fails.
    write_mode(&key_path, &format!("{key}\n"), 0o644);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other users can read"), "{err}");
    assert!(!err.contains(key));

    // The group key file is held to the same rule.
    let gk = dir.path().join("group.key");
    write_mode(&gk, &format!("{key}\n"), 0o644);
    let text = text
        .replace("[hub]\n", "[hub]\ngroup_key_file = \"group.key\"\n")
        .replace("key_file = \"d1.key\"", "group_key = true");
    let e = config::parse(&text, &cfg_path.display().to_string()).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    write_mode(&gk, &format!("{key}\n"), 0o600);
    config::parse(&text, &cfg_path.display().to_string()).unwrap();
}

#[test]
fn metrics_listen_on_loopback_unless_configured() {
    let text = "[hub]\nhostname = \"h.example\"\n\n[[bus]]\nname = \"b\"\ntcp = \"127.0.0.1:502\"\n\n[profile.p.methods.lock]\naction = \"write_coil\"\naddress = 0\nvalue = true\n\n[[door]]\ndevice_id = \"d1\"\nbus = \"b\"\nunit = 1\nprofile = \"p\"\nkey = \"a2V5\"\n";
    let c = config::parse(text, "site.toml").unwrap();
    assert!(c.metrics.listen.ip().is_loopback(), "{}", c.metrics.listen);
    let d: std::net::SocketAddr = config::DEFAULT_METRICS_LISTEN.parse().unwrap();
    assert!(d.ip().is_loopback());
}

#[tokio::test]
async fn keys_and_tokens_never_reach_logs_metrics_or_readyz() {
    let env = Env::start(3).await;
    // door-3 presents a wrong key: the refusal path is logged too. Short tokens: renewals
    // are logged as well.
    let text = config_text(
        &env,
        "token_lifetime = \"3s\"\ntoken_renew_margin = \"1s\"",
        "",
    );
    let wrong = fieldhub::auth::generate_key();
    let text = text.replace(&env.doors[2].key, &wrong);
    let path = env.dir.path().join("fieldgate.toml");
    std::fs::write(&path, &text).unwrap();
    let log = env.dir.path().join("fieldgate.log");
    // Trace level: everything the gateway and its libraries log.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["--log", "trace", "run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let svc = Service {
        pid: child.id().unwrap(),
        child,
        log,
    };
    wait_doors_ready(&env, &["door-1", "door-2"]).await;
    let client = Client::new(&env.hub);
    assert!(client
        .invoke("door-1", "lockDoor", serde_json::json!(null), 10, 5)
        .await
        .succeeded());
    // Past at least one renewal of every connected door.
    svc.wait_log("renewing SAS token").await;
    svc.wait_log("hub refused the connection").await;

    let base = svc.metrics_base().await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
    let mut bodies = Vec::new();
    for p in ["/metrics", "/readyz", "/healthz"] {
        let r = http.get(format!("{base}{p}")).send().await.unwrap();
        bodies.push((p, r.text().await.unwrap()));
    }
    assert!(bodies[0].1.contains("fieldgate_token_renewals_total"));
    signal(svc.pid, "-TERM");
    let mut child = svc.child;
    assert!(bounded("exit", child.wait()).await.unwrap().success());
    bodies.push(("log", std::fs::read_to_string(&svc.log).unwrap()));

    let mut secrets: Vec<String> = env.doors.iter().map(|d| d.key.clone()).collect();
    secrets.push(wrong);
    for (what, body) in &bodies {
        for s in &secrets {
            assert!(!body.contains(s.as_str()), "a key in {what}");
        }
        assert!(!body.contains("SharedAccessSignature"), "a token in {what}");
        assert!(!body.contains("sig="), "a signature in {what}");
    }
}

#[tokio::test]
async fn fieldhub_refuses_forged_service_tokens_and_device_tokens_on_the_service_api() {
    let env = Env::start(1).await;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(env.hub.ca_pem.as_bytes()).unwrap())
        .timeout(LIMIT)
        .build()
        .unwrap();
    let host = format!("localhost:{}", env.hub.https_addr.port());
    let url = format!(
        "https://localhost:{}/twins/door-1?api-version=2021-04-12",
        env.hub.https_addr.port()
    );
    let expiry = chrono::Utc::now().timestamp() as u64 + 600;
    let get = |token: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(url)
                .header("Authorization", token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Control: the real owner policy works.
    let cs = iothub_proto::ConnectionString::parse(&env.hub.service_connection_string).unwrap();
    let real = sas::generate(&cs.host_name, &cs.key, Some("iothubowner"), expiry).unwrap();
    assert_eq!(get(real).await, 200);
    // The policy name with a key of our own.
    let forged = sas::generate(
        &host,
        &fieldhub::auth::generate_key(),
        Some("iothubowner"),
        expiry,
    )
    .unwrap();
    assert_eq!(get(forged).await, 401);
    // A real signature with its expiry pushed out (tampered `se`).
    let tampered = sas::generate(&cs.host_name, &cs.key, Some("iothubowner"), expiry)
        .unwrap()
        .replace(&format!("se={expiry}"), &format!("se={}", expiry + 86_400));
    assert_eq!(get(tampered).await, 401);
    // A device's own token is no service credential.
    let device = sas::generate(
        &sas::device_resource(&host, "door-1"),
        &env.doors[0].key,
        None,
        expiry,
    )
    .unwrap();
    assert_eq!(get(device).await, 401);
    // The right key under a policy name that does not exist.
    let unnamed = sas::generate(&cs.host_name, &cs.key, Some("root"), expiry).unwrap();
    assert_eq!(get(unnamed).await, 401);
}
