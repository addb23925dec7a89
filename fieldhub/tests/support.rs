//! Shared test helpers: a hub in a temp dir, an MQTT device over TLS, a REST client, and the
//! fixed ports the official SDKs dial.

use std::sync::Arc;
use std::time::Duration;

use fieldhub::{HubConfig, RunningHub};
use iothub_proto::sas;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;

/// Bound for every await in these tests.
pub const T: Duration = Duration::from_secs(10);

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub struct TestHub {
    pub hub: RunningHub,
    pub dir: tempfile::TempDir,
}

pub async fn start_hub() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let hub = tokio::time::timeout(T, fieldhub::start(HubConfig::for_tests(dir.path())))
        .await
        .unwrap()
        .unwrap();
    TestHub { hub, dir }
}

pub fn device_token(id: &str, key: &str, expiry: u64) -> String {
    sas::generate(&sas::device_resource("localhost", id), key, None, expiry).unwrap()
}

/// A device connection: the event loop runs in a task and stops at the first error (no
/// reconnects), forwarding events (or the error text) to `events`.
pub struct TestDevice {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Result<Event, rumqttc::ConnectionError>>,
}

pub fn connect(hub: &RunningHub, id: &str, password: &str, clean: bool) -> TestDevice {
    let mut o = MqttOptions::new(id, "localhost", hub.mqtt_addr.port());
    o.set_credentials(format!("localhost/{id}/?api-version=2021-04-12"), password);
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(30));
    let tls = fieldhub::tls::client_config(&hub.ca_pem).unwrap();
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut eventloop) = AsyncClient::new(o, 16);
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let ev = eventloop.poll().await;
            let stop = ev.is_err();
            if tx.send(ev).is_err() || stop {
                break;
            }
        }
    });
    TestDevice { client, events }
}

impl TestDevice {
    /// Connects with the device's primary key, token valid for an hour.
    pub fn with_key(hub: &RunningHub, id: &str, key: &str, clean: bool) -> TestDevice {
        connect(hub, id, &device_token(id, key, now() + 3600), clean)
    }

    async fn next(&mut self) -> Result<Event, rumqttc::ConnectionError> {
        tokio::time::timeout(T, self.events.recv())
            .await
            .expect("timed out waiting for an MQTT event")
            .expect("event loop task ended")
    }

    /// The CONNACK (success or refusal code) and session-present flag.
    pub async fn connack(&mut self) -> (ConnectReturnCode, bool) {
        loop {
            match self.next().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return (a.code, a.session_present),
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return (code, false),
                Err(e) => panic!("connection failed before CONNACK: {e}"),
            }
        }
    }

    pub async fn connected(&mut self) -> bool {
        let (code, present) = self.connack().await;
        assert_eq!(code, ConnectReturnCode::Success);
        present
    }

    pub async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Event::Incoming(Packet::SubAck(a)) = self.next().await.unwrap() {
                return a.return_codes;
            }
        }
    }

    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).await.unwrap();
        loop {
            if let Event::Incoming(Packet::UnsubAck(_)) = self.next().await.unwrap() {
                return;
            }
        }
    }

    /// Next publish from the hub.
    pub async fn publish_received(&mut self) -> Publish {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = self.next().await.unwrap() {
                return p;
            }
        }
    }

    /// Waits until the hub closes the connection (skipping anything received meanwhile).
    pub async fn closed(&mut self) {
        loop {
            if self.next().await.is_err() {
                return;
            }
        }
    }

    pub async fn send(&self, topic: &str, body: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.into())
            .await
            .unwrap();
    }

    /// Publishes a twin GET and returns the response (status, body).
    pub async fn twin_get(&mut self, rid: &str) -> (String, serde_json::Value) {
        self.send(&format!("$iothub/twin/GET/?$rid={rid}"), " ")
            .await;
        let p = self.publish_received().await;
        (p.topic, serde_json::from_slice(&p.payload).unwrap())
    }
}

/// A REST client trusting the hub's CA, signing with a policy.
pub struct Service {
    pub http: reqwest::Client,
    pub base: String,
    host: String,
    policy: String,
    key: String,
}

impl Service {
    pub fn new(hub: &RunningHub, policy: &str) -> Service {
        let ps = hub.hub.policies();
        let p = ps.iter().find(|p| p.name == policy).unwrap();
        let host = format!("localhost:{}", hub.https_addr.port());
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(hub.ca_pem.as_bytes()).unwrap())
            .resolve("localhost", hub.https_addr)
            .timeout(T)
            .build()
            .unwrap();
        Service {
            http,
            base: format!("https://{host}"),
            host,
            policy: policy.into(),
            key: p.primary_key.clone(),
        }
    }

    pub fn token(&self) -> String {
        sas::generate(&self.host, &self.key, Some(&self.policy), now() + 3600).unwrap()
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.http
            .request(
                method,
                format!("{}{path}{sep}api-version=2021-04-12", self.base),
            )
            .header("Authorization", self.token())
    }
}

/// Status, `iothub-errorcode` header and JSON body of a response.
pub async fn parts(r: reqwest::RequestBuilder) -> (u16, Option<String>, serde_json::Value) {
    let resp = tokio::time::timeout(T, r.send()).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("iothub-errorcode")
        .map(|v| v.to_str().unwrap().to_string());
    if status != 204 {
        assert_eq!(
            resp.headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/json; charset=utf-8")
        );
    }
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, code, body)
}

/// A hand-driven MQTT client (no automatic pings), for keep-alive and protocol-abuse tests.
pub type RawConn = tokio_util::codec::Framed<
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    rumqttc::mqttbytes::v4::Codec,
>;

pub async fn raw_connect(hub: &RunningHub) -> RawConn {
    let tls = fieldhub::tls::client_config(&hub.ca_pem).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::time::timeout(T, tokio::net::TcpStream::connect(hub.mqtt_addr))
        .await
        .unwrap()
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(T, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tokio_util::codec::Framed::new(
        stream,
        rumqttc::mqttbytes::v4::Codec {
            max_incoming_size: 1 << 20,
            max_outgoing_size: 1 << 20,
        },
    )
}

/// Sends a packet and returns the next one from the hub (`None` when the hub closed).
pub async fn raw_exchange(
    conn: &mut RawConn,
    p: rumqttc::mqttbytes::v4::Packet,
) -> Option<rumqttc::mqttbytes::v4::Packet> {
    use futures::SinkExt as _;
    tokio::time::timeout(T, conn.send(p)).await.unwrap().ok()?;
    raw_next(conn).await
}

pub async fn raw_next(conn: &mut RawConn) -> Option<rumqttc::mqttbytes::v4::Packet> {
    use futures::StreamExt as _;
    match tokio::time::timeout(T, conn.next()).await.unwrap() {
        Some(Ok(p)) => Some(p),
        _ => None,
    }
}

pub fn raw_connect_packet(
    id: &str,
    username: &str,
    password: &str,
    keep_alive: u16,
) -> rumqttc::mqttbytes::v4::Packet {
    let mut c = rumqttc::mqttbytes::v4::Connect::new(id);
    c.keep_alive = keep_alive;
    c.clean_session = false;
    c.set_login(username, password);
    rumqttc::mqttbytes::v4::Packet::Connect(c)
}

/// Held by every test that binds the official SDKs' fixed ports, for its whole run: they admit
/// one hub at a time.
pub static SDK_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long to wait for another copy of these tests (another checkout) to free the SDK ports.
const SDK_PORTS_BUSY_WAIT: Duration = Duration::from_secs(300);
/// Bound for starting a hub on the SDK ports.
const SDK_HUB_START: Duration = Duration::from_secs(30);

/// Starts a hub (hostname `localhost`, the default S1 job limits) on 127.0.0.1:8883 and :443,
/// the ports the SDKs dial; hold [`SDK_PORTS`] first. `None` when this process may not bind
/// them (not root): the test prints `SKIPPED` (naming `who` needs root) and passes.
pub async fn start_on_sdk_ports(data_dir: &std::path::Path, who: &str) -> Option<RunningHub> {
    let cfg = HubConfig {
        mqtt_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 8883)),
        https_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        ..HubConfig::for_tests(data_dir)
    };
    let deadline = tokio::time::Instant::now() + SDK_PORTS_BUSY_WAIT;
    loop {
        let err = match tokio::time::timeout(SDK_HUB_START, fieldhub::start(cfg.clone())).await {
            Ok(Ok(hub)) => return Some(hub),
            Ok(Err(e)) => e,
            Err(_) => panic!("fieldhub::start took longer than {SDK_HUB_START:?}"),
        };
        let kind = err
            .chain()
            .find_map(|c| c.downcast_ref::<std::io::Error>())
            .map(|io| io.kind());
        match kind {
            Some(std::io::ErrorKind::PermissionDenied) => {
                println!("SKIPPED: cannot bind 127.0.0.1:8883/443 ({err:#}); {who} need root");
                return None;
            }
            Some(std::io::ErrorKind::AddrInUse) if tokio::time::Instant::now() < deadline => {
                // Another checkout running these tests holds the ports; its run is bounded.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => panic!("starting fieldhub on 8883/443: {err:#}"),
        }
    }
}
