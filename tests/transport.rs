//! Reaching the hub from networks that let nothing out but 443: MQTT over WebSockets to
//! fieldhub's HTTPS listener, the `auto` fallback when the MQTT port cannot be reached, and an
//! HTTP proxy with credentials (tinyproxy, an independent CONNECT proxy) for the gateway and
//! for fieldctl. The MQTT port is a closed one in each test, so a door that comes up can only
//! have come up on 443.
//!
//! tinyproxy comes from Debian (`apt-get install tinyproxy-bin`); without it the proxy tests
//! print why and pass vacuously.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use fieldgate::link::LinkState;

use crate::support::harness::{bounded, Env};

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The environment's map with the hub reached `how` (extra `[hub]` keys) and its MQTT port
/// closed.
fn map_with(env: &Env, how: &str) -> String {
    let host = env.hub_host();
    env.config_text().replacen(
        &format!("hostname = \"{host}\"\n"),
        &format!(
            "hostname = \"localhost:{}\"\nwebsocket_port = {}\n{how}\n",
            closed_port(),
            env.hub.https_addr.port()
        ),
        1,
    )
}

fn parse(env: &Env, text: &str) -> fieldgate::config::Config {
    let path = env.dir.path().join("fieldgate.toml");
    fieldgate::config::parse(text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

async fn lock_and_set_floor(env: &Env) {
    let svc = env.service();
    let (status, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!(200)),
        "{body}"
    );
    svc.set_desired("door-2", json!({"Floor": 9})).await;
    svc.wait_reported("door-2", "Floor acknowledged", |r| {
        r["Floor"]["ac"] == 200 && r["Floor"]["value"] == 9
    })
    .await;
    assert_eq!(env.sim.handle.holding(2, 1), 9);
}

async fn start(env: &Env, text: &str) -> fieldgate::gateway::Gateway {
    let gw = fieldgate::gateway::Gateway::start(&parse(env, text), env.metrics.clone()).unwrap();
    for d in &env.doors {
        crate::support::harness::wait_link(&gw, &d.device_id).await;
    }
    gw
}

fn metric(env: &Env, line_start: &str) -> String {
    env.metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn doors_work_over_mqtt_over_websockets() {
    let env = Env::start(2).await;
    let gw = start(&env, &map_with(&env, "transport = \"websocket\"")).await;
    lock_and_set_floor(&env).await;
    assert_eq!(
        metric(&env, "fieldgate_hub_transport{transport=\"websocket\"}"),
        "fieldgate_hub_transport{transport=\"websocket\"} 1"
    );
    // Cut every connection: the doors come back over 443 on their own. (A link may be back
    // before anyone looks at its state; its reconnect counter says it went through it.)
    let reconnects = |id: &str| env.metrics.link_reconnects.with_label_values(&[id]).get();
    let before: Vec<u64> = env.doors.iter().map(|d| reconnects(&d.device_id)).collect();
    env.hub.hub.disconnect_all();
    for (d, b) in env.doors.iter().zip(before) {
        bounded("link reconnected", async {
            while reconnects(&d.device_id) <= b {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        crate::support::harness::wait_link(&gw, &d.device_id).await;
    }
    lock_and_set_floor(&env).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn auto_moves_to_443_when_the_mqtt_port_cannot_be_reached() {
    let env = Env::start(2).await;
    let gw = start(&env, &map_with(&env, "transport = \"auto\"")).await;
    lock_and_set_floor(&env).await;
    assert_eq!(
        metric(&env, "fieldgate_hub_transport_fallbacks_total"),
        "fieldgate_hub_transport_fallbacks_total 1",
        "one fallback for the whole gateway"
    );
    assert_eq!(
        metric(&env, "fieldgate_hub_transport{transport=\"websocket\"}"),
        "fieldgate_hub_transport{transport=\"websocket\"} 1"
    );
    gw.shutdown().await;
}

fn has_tinyproxy() -> bool {
    let ok = std::process::Command::new("tinyproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: tinyproxy not found (install with: apt-get install -y tinyproxy-bin)");
    }
    ok
}

/// tinyproxy on a free port, asking for basic credentials, allowing CONNECT to `port` only.
struct Proxy {
    _child: Child,
    port: u16,
    log: std::path::PathBuf,
}

async fn tinyproxy(dir: &std::path::Path, connect_port: u16) -> Proxy {
    tinyproxy_on(dir, closed_port(), connect_port).await
}

async fn tinyproxy_on(dir: &std::path::Path, port: u16, connect_port: u16) -> Proxy {
    let log = dir.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 50\nBasicAuth site-ops s3cr.et-pw\nConnectPort {connect_port}\n",
            log.display()
        ),
    )
    .unwrap();
    let child = Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tinyproxy");
    bounded("tinyproxy listening", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Proxy {
        _child: child,
        port,
        log,
    }
}

impl Proxy {
    fn connects(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("CONNECT") && l.contains("localhost"))
            .count()
    }
}

#[tokio::test]
async fn doors_and_fieldctl_go_through_an_http_proxy_with_credentials() {
    if !has_tinyproxy() {
        return;
    }
    let env = Env::start(2).await;
    let proxy = tinyproxy(env.dir.path(), env.hub.https_addr.port()).await;
    // (tinyproxy takes no '@' or ':' in a password; their percent-encoding is unit-tested.)
    let url = format!("http://site-ops:s3cr.et-pw@127.0.0.1:{}", proxy.port);
    let text = map_with(
        &env,
        &format!("transport = \"websocket\"\nproxy = \"{url}\""),
    );
    let config = parse(&env, &text);
    assert!(
        !format!("{config:?}").contains("s3cr.et-pw"),
        "the proxy password shows in the config's Debug"
    );
    let gw = start(&env, &text).await;
    lock_and_set_floor(&env).await;
    assert!(proxy.connects() >= 2, "every door through the proxy");

    // The proxy goes away: the doors notice, back off, and come back once it returns.
    let port = proxy.port;
    drop(proxy);
    for d in &env.doors {
        let mut st = gw.link(&d.device_id).unwrap().watch_state();
        bounded(
            "link lost with the proxy",
            st.wait_for(|s| *s != LinkState::Connected),
        )
        .await
        .unwrap();
    }
    let proxy = tinyproxy_on(env.dir.path(), port, env.hub.https_addr.port()).await;
    for d in &env.doors {
        crate::support::harness::wait_link(&gw, &d.device_id).await;
    }
    let svc = env.service();
    bounded("a method through the returned proxy", async {
        loop {
            let (_, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
            if body["status"] == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    gw.shutdown().await;

    // Wrong credentials: the proxy refuses, the door does not come up, and says why.
    let bad = text.replace("s3cr.et-pw", "bad-pw-123");
    let gw = fieldgate::gateway::Gateway::start(&parse(&env, &bad), env.metrics.clone()).unwrap();
    let mut state = gw.link("door-1").unwrap().watch_state();
    let why = bounded("link refused by the proxy", async {
        loop {
            if let fieldgate::link::LinkState::Disconnected { reason, .. } = &*state.borrow() {
                return reason.clone();
            }
            state.changed().await.unwrap();
        }
    })
    .await;
    // The proxy's refusal, with its status, and where the proxy is.
    let proxy_port = proxy.port.to_string();
    assert!(
        why.contains("refused the tunnel")
            && why.contains(&proxy_port)
            && (why.contains("HTTP 407") || why.contains("HTTP 401"))
            && why.contains("credentials"),
        "{why}"
    );
    assert!(
        !why.contains("s3cr.et-pw") && !why.contains("bad-pw-123"),
        "{why}"
    );
    gw.shutdown().await;

    // fieldctl: the service API through the same proxy, from --proxy and from HTTPS_PROXY.
    let hub_file = env.hub.ca_path.parent().unwrap().join("service.connstr");
    let before = proxy.connects();
    for via_env in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fieldctl"));
        cmd.arg("--hub-file")
            .arg(&hub_file)
            .arg("--ca-file")
            .arg(&env.hub.ca_path)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("NO_COLOR", "1");
        if via_env {
            cmd.env("HTTPS_PROXY", &url);
        } else {
            cmd.args(["--proxy", &url]).env_remove("HTTPS_PROXY");
        }
        let out = bounded("fieldctl via the proxy", cmd.args(["job", "list"]).output())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        proxy.connects() >= before + 2,
        "fieldctl went through the proxy"
    );
}
