//! The door link against a scripted fake IoT Hub: a real TLS listener on 127.0.0.1 with a
//! test CA, speaking MQTT 3.1.1 through rumqttc's own `v4` codec. Each test drives the hub
//! side step by step, so every expectation about the wire is explicit.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldgate::config::Secret;
use fieldgate::link::{
    self, ConnectPacer, HubLink, LinkEvent, LinkEvents, LinkHandle, LinkSettings, LinkState,
};
use fieldgate::metrics::Metrics;
use futures::{SinkExt, StreamExt};
use iothub_proto::topics::{self, Topic};
use iothub_proto::SasToken;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rumqttc::mqttbytes::v4::{Codec, Connect, Packet};
use rumqttc::{
    ConnAck, ConnectReturnCode, PubAck, Publish, QoS, SubAck, SubscribeReasonCode, UnsubAck,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const DEVICE: &str = "door-1";
/// Bound on every await: generous for a loaded 2-core CI box, small enough to fail fast.
const T: Duration = Duration::from_secs(15);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(T, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A CA and a `localhost` server certificate it signed.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A unique name, so a second CA is an unknown issuer rather than a forged signature.
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("fieldgate test CA {}", uuid::Uuid::new_v4()),
    );
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key_der: leaf_key.serialize_der(),
    }
}

/// The hub's listening side.
struct FakeHub {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ca_pem: String,
}

impl FakeHub {
    async fn start() -> Self {
        let pki = pki();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.chain,
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der)),
        )
        .unwrap();
        FakeHub {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            ca_pem: pki.ca_pem,
        }
    }

    /// `localhost:<port>`: the name the certificate carries, with the ephemeral port.
    fn host(&self) -> String {
        format!("localhost:{}", self.listener.local_addr().unwrap().port())
    }

    fn settings(&self) -> LinkSettings {
        let mut hub = HubLink::with_defaults(self.host());
        hub.extra_ca_pem = Some(self.ca_pem.as_bytes().into());
        hub.connect_timeout = Duration::from_secs(10);
        hub.op_timeout = Duration::from_secs(10);
        hub.backoff.base = Duration::from_millis(200);
        hub.backoff.cap = Duration::from_secs(1);
        LinkSettings::new(Arc::new(hub), DEVICE, Secret::new(KEY))
    }

    /// Accepts TCP + TLS and reads the CONNECT (not yet answered).
    async fn accept(&self) -> (HubConn, Connect) {
        let (tcp, _) = within("TCP connect", self.listener.accept()).await.unwrap();
        let tls = within("TLS handshake", self.acceptor.accept(tcp))
            .await
            .expect("TLS handshake");
        let mut conn = HubConn {
            framed: Framed::new(
                tls,
                Codec {
                    max_incoming_size: 1 << 20,
                    max_outgoing_size: 1 << 20,
                },
            ),
        };
        match conn.next().await {
            Packet::Connect(c) => (conn, c),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }
}

/// One accepted device connection.
struct HubConn {
    framed: Framed<TlsStream<TcpStream>, Codec>,
}

impl HubConn {
    /// The next packet the device sends; keep-alives and QoS 1 acks are handled here.
    async fn next(&mut self) -> Packet {
        loop {
            let p = within("a packet from the device", self.framed.next())
                .await
                .expect("device closed the connection")
                .expect("valid MQTT");
            match p {
                Packet::PingReq => self.send(Packet::PingResp).await,
                Packet::Publish(ref publish) if publish.qos == QoS::AtLeastOnce => {
                    self.send(Packet::PubAck(PubAck::new(publish.pkid))).await;
                    return p;
                }
                p => return p,
            }
        }
    }

    async fn send(&mut self, p: Packet) {
        within("sending to the device", self.framed.send(p))
            .await
            .unwrap();
    }

    async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.send(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            payload,
        )))
        .await;
    }

    async fn next_publish(&mut self) -> Publish {
        match self.next().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// CONNACK, three SUBACKs, the twin GET answered with `twin`.
    async fn handshake(&mut self, twin: &Value) {
        self.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await;
        let mut filters = Vec::new();
        while filters.len() < 3 {
            match self.next().await {
                Packet::Subscribe(s) => {
                    let codes = s
                        .filters
                        .iter()
                        .map(|f| SubscribeReasonCode::Success(f.qos))
                        .collect();
                    filters.extend(s.filters.into_iter().map(|f| f.path));
                    self.send(Packet::SubAck(SubAck::new(s.pkid, codes))).await;
                }
                other => panic!("expected SUBSCRIBE, got {other:?}"),
            }
        }
        filters.sort();
        assert_eq!(
            filters,
            [
                topics::METHODS_FILTER,
                topics::DESIRED_FILTER,
                topics::TWIN_RES_FILTER
            ]
        );
        let get = self.next_publish().await;
        let Some(Topic::TwinGet { rid }) = topics::parse(&get.topic) else {
            panic!("expected twin GET, got {}", get.topic)
        };
        self.publish(
            &topics::twin_response(iothub_proto::Status(200), &rid, None),
            twin.to_string(),
        )
        .await;
    }

    /// Reads a reported patch; returns its rid and body.
    async fn reported_patch(&mut self) -> (String, Value) {
        let p = self.next_publish().await;
        let Some(Topic::TwinReportedPatch { rid }) = topics::parse(&p.topic) else {
            panic!("expected reported patch, got {}", p.topic)
        };
        (rid, serde_json::from_slice(&p.payload).unwrap())
    }

    async fn expect_closed(&mut self) {
        loop {
            match within("the device to disconnect", self.framed.next()).await {
                None | Some(Err(_)) | Some(Ok(Packet::Disconnect)) => return,
                Some(Ok(Packet::PingReq)) => {}
                // A token renewal first unsubscribes from methods (none lost on close).
                Some(Ok(Packet::Unsubscribe(u))) => {
                    assert_eq!(u.topics, [topics::METHODS_FILTER]);
                    self.send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await;
                }
                Some(Ok(other)) => panic!("expected DISCONNECT, got {other:?}"),
            }
        }
    }
}

struct Door {
    handle: LinkHandle,
    events: LinkEvents,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

fn start(settings: LinkSettings) -> Door {
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let (handle, events, task) = link::spawn(
        settings,
        ConnectPacer::unpaced(),
        metrics.clone(),
        shutdown.clone(),
    );
    Door {
        handle,
        events,
        task,
        shutdown,
        metrics,
    }
}

impl Door {
    async fn event(&mut self) -> LinkEvent {
        within("a link event", self.events.recv())
            .await
            .expect("link task ended")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("the link task to end", self.task).await.unwrap();
    }

    fn metric(&self, name: &str) -> String {
        self.metrics
            .render()
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    }
}

async fn wait_state(
    rx: &mut watch::Receiver<LinkState>,
    what: &str,
    pred: impl FnMut(&LinkState) -> bool,
) -> LinkState {
    within(what, rx.wait_for(pred)).await.unwrap().clone()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn twin(desired_version: u64) -> Value {
    json!({
        "desired": {"mode": "auto", "$version": desired_version},
        "reported": {"door": "closed", "$version": 1}
    })
}

fn check_connect(c: &Connect) -> SasToken {
    assert_eq!(c.client_id, DEVICE);
    assert!(!c.clean_session, "IoT Hub sessions are persistent");
    assert_eq!(c.keep_alive, 60);
    let login = c.login.as_ref().expect("credentials");
    assert_eq!(
        login.username,
        format!(
            "localhost/{DEVICE}/?api-version=2021-04-12&DeviceClientType=fieldgate%2F{}",
            env!("CARGO_PKG_VERSION")
        ),
        "username carries the host without port"
    );
    let token = SasToken::parse(&login.password).expect("SAS token");
    assert!(token.signed_with(KEY), "token signed with the device key");
    assert!(token.covers(&format!("localhost/devices/{DEVICE}")));
    token
}

#[tokio::test]
async fn connect_twin_and_method_round_trip() {
    let hub = FakeHub::start().await;
    let mut door = start(hub.settings());
    let mut state = door.handle.watch_state();

    let (mut conn, connect) = hub.accept().await;
    let token = check_connect(&connect);
    assert!(token.expiry > unix_now() + 3000, "1 h token by default");
    conn.handshake(&twin(4)).await;
    assert_eq!(door.event().await, LinkEvent::Connected { twin: twin(4) });
    wait_state(&mut state, "Connected", |s| *s == LinkState::Connected).await;
    assert_eq!(
        door.metric("fieldgate_link_up{"),
        "fieldgate_link_up{device=\"door-1\"} 1"
    );

    // Method request → bridge → response on the matching rid.
    conn.publish(&topics::method_request("lockDoor", "m1"), r#"{"x":1}"#)
        .await;
    let sent = tokio::time::Instant::now();
    match door.event().await {
        LinkEvent::MethodRequest {
            name,
            rid,
            payload,
            received,
        } => {
            assert_eq!(
                (name.as_str(), rid.as_str(), payload.as_slice()),
                ("lockDoor", "m1", &br#"{"x":1}"#[..])
            );
            // Stamped when the link took it in: the method's deadline counts from there.
            assert!(received >= sent && received <= tokio::time::Instant::now());
        }
        other => panic!("{other:?}"),
    }
    within(
        "respond",
        door.handle
            .respond_method("m1", iothub_proto::Status(200), json!({"locked": true})),
    )
    .await
    .unwrap();
    let res = conn.next_publish().await;
    assert_eq!(
        res.topic,
        topics::method_response(iothub_proto::Status(200), "m1")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&res.payload).unwrap(),
        json!({"locked": true})
    );
    let again = within(
        "second respond",
        door.handle
            .respond_method("m1", iothub_proto::Status(200), json!({})),
    )
    .await;
    assert!(
        matches!(again, Err(link::LinkError::MethodLost { .. })),
        "a rid is answered once: {again:?}"
    );

    // Reported patch: the caller gets the new reported $version from the 204.
    let h = door.handle.clone();
    let patch = tokio::spawn(async move { h.patch_reported(json!({"door": "locked"})).await });
    let (rid, body) = conn.reported_patch().await;
    assert_eq!(body, json!({"door": "locked"}));
    conn.publish(
        &topics::twin_response(iothub_proto::Status(204), &rid, Some(7)),
        "",
    )
    .await;
    assert_eq!(within("patch result", patch).await.unwrap().unwrap(), 7);

    // Telemetry goes out QoS 1 on the device's events topic.
    within(
        "telemetry",
        door.handle.send_telemetry(json!({"event": "opened"})),
    )
    .await
    .unwrap();
    let t = conn.next_publish().await;
    assert_eq!(t.topic, topics::telemetry(DEVICE));
    assert_eq!(t.qos, QoS::AtLeastOnce);

    door.stop().await;
    conn.expect_closed().await;
}

#[tokio::test]
async fn desired_patch_not_newer_than_twin_is_dropped() {
    let hub = FakeHub::start().await;
    let mut door = start(hub.settings());
    let (mut conn, _) = hub.accept().await;
    conn.handshake(&twin(5)).await;
    assert!(matches!(door.event().await, LinkEvent::Connected { .. }));
    for v in [4u64, 5, 6] {
        conn.publish(
            &topics::desired_patch(v),
            json!({"mode": format!("v{v}"), "$version": v}).to_string(),
        )
        .await;
    }
    // The queue is FIFO: had 4 or 5 passed, they would arrive before 6.
    assert_eq!(
        door.event().await,
        LinkEvent::DesiredPatch {
            version: 6,
            patch: json!({"mode": "v6", "$version": 6})
        }
    );
    door.stop().await;
}

#[tokio::test]
async fn reconnects_after_peer_drops_and_refetches_twin() {
    let hub = FakeHub::start().await;
    let mut door = start(hub.settings());
    let (mut conn, _) = hub.accept().await;
    conn.handshake(&twin(1)).await;
    assert_eq!(door.event().await, LinkEvent::Connected { twin: twin(1) });

    // In flight when the connection dies: a method request and an unacknowledged patch.
    conn.publish(&topics::method_request("lockDoor", "old"), "{}")
        .await;
    assert!(matches!(
        door.event().await,
        LinkEvent::MethodRequest { .. }
    ));
    let h = door.handle.clone();
    let patch = tokio::spawn(async move { h.patch_reported(json!({"door": "open"})).await });
    let (_, body) = conn.reported_patch().await;
    assert_eq!(body, json!({"door": "open"}));
    drop(conn);

    assert!(matches!(door.event().await, LinkEvent::Disconnected { .. }));
    let lost = within(
        "late respond",
        door.handle
            .respond_method("old", iothub_proto::Status(200), json!({})),
    )
    .await;
    assert!(
        matches!(lost, Err(link::LinkError::MethodLost { .. })),
        "{lost:?}"
    );
    assert!(door
        .metric("fieldgate_link_method_responses_lost_total{")
        .ends_with(" 1"));

    // The link comes back on its own, fetches the (changed) twin and re-sends the patch.
    let (mut conn, connect) = hub.accept().await;
    check_connect(&connect);
    conn.handshake(&twin(2)).await;
    assert_eq!(door.event().await, LinkEvent::Connected { twin: twin(2) });
    let (rid, body) = conn.reported_patch().await;
    assert_eq!(
        body,
        json!({"door": "open"}),
        "unacknowledged patch re-sent"
    );
    conn.publish(
        &topics::twin_response(iothub_proto::Status(204), &rid, Some(3)),
        "",
    )
    .await;
    assert_eq!(within("patch result", patch).await.unwrap().unwrap(), 3);
    assert!(door
        .metric("fieldgate_link_reconnects_total{")
        .ends_with(" 1"));
    door.stop().await;
}

#[tokio::test]
async fn token_renewal_reconnects_with_fresh_token() {
    let hub = FakeHub::start().await;
    let mut settings = hub.settings();
    Arc::make_mut(&mut settings.hub).token_lifetime = Duration::from_secs(2);
    let mut door = start(settings);

    let (mut first, connect) = hub.accept().await;
    let t1 = check_connect(&connect);
    let se1 = t1.expiry;
    assert!(se1 <= unix_now() + 2, "token lives token_lifetime");
    first.handshake(&twin(1)).await;
    assert!(matches!(door.event().await, LinkEvent::Connected { .. }));

    // At 80 % of the lifetime the link says goodbye and dials again with a new token.
    first.expect_closed().await;
    let (mut second, connect) = hub.accept().await;
    let t2 = check_connect(&connect);
    assert!(t2.expiry > se1, "a fresh token, not the old one");
    assert!(
        matches!(door.event().await, LinkEvent::Disconnected { reason } if reason.contains("renewal"))
    );
    second.handshake(&twin(1)).await;
    assert!(matches!(door.event().await, LinkEvent::Connected { .. }));
    assert!(door
        .metric("fieldgate_token_renewals_total{")
        .ends_with(" 1"));
    assert!(
        !door
            .metric("fieldgate_link_reconnects_total{")
            .ends_with(" 1"),
        "a renewal is not a failure"
    );
    door.stop().await;
}

#[tokio::test]
async fn tls_with_wrong_ca_is_refused_with_clear_error() {
    let hub = FakeHub::start().await;
    let mut settings = hub.settings();
    Arc::make_mut(&mut settings.hub).extra_ca_pem = Some(pki().ca_pem.as_bytes().into()); // some other CA
    let mut door = start(settings);
    let mut state = door.handle.watch_state();
    // The hub side sees the client abort the handshake.
    let (tcp, _) = within("TCP connect", hub.listener.accept()).await.unwrap();
    assert!(within("TLS handshake", hub.acceptor.accept(tcp))
        .await
        .is_err());
    let s = wait_state(&mut state, "a refused connection", |s| {
        matches!(s, LinkState::Disconnected { .. })
    })
    .await;
    let LinkState::Disconnected { reason, .. } = s else {
        unreachable!()
    };
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("UnknownIssuer"),
        "reason names the TLS problem: {reason}"
    );
    assert!(door.events.try_recv().is_err(), "never connected");
    door.stop().await;
}

#[tokio::test]
async fn bad_key_stops_the_link_with_a_reason() {
    let hub = FakeHub::start().await;
    let mut settings = hub.settings();
    settings.key = Secret::new("not base64!");
    assert!(settings.check().is_err());
    let door = start(settings);
    let mut state = door.handle.watch_state();
    let s = wait_state(&mut state, "Stopped", |s| {
        matches!(s, LinkState::Stopped { .. })
    })
    .await;
    assert!(matches!(s, LinkState::Stopped { reason: Some(r) } if r.contains("base64")));
    within("task end", door.task).await.unwrap();
}

/// A `MakeWriter` collecting every formatted log line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// current_thread runtime: the scoped subscriber sees the link task and its poller too.
#[tokio::test(flavor = "current_thread")]
async fn key_and_token_never_logged() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let hub = FakeHub::start().await;
    let settings = hub.settings();
    assert!(!format!("{settings:?}").contains(KEY));
    let mut door = start(settings);
    let (mut conn, connect) = hub.accept().await;
    let password = connect.login.unwrap().password;
    conn.handshake(&twin(1)).await;
    assert!(matches!(door.event().await, LinkEvent::Connected { .. }));
    // A failure path too: drop, then refuse the next CONNECT as a real hub does on bad auth.
    drop(conn);
    let (mut conn, _) = hub.accept().await;
    conn.send(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::NotAuthorized,
        false,
    )))
    .await;
    let mut state = door.handle.watch_state();
    let s = wait_state(
        &mut state,
        "the refusal",
        |s| matches!(s, LinkState::Disconnected { reason, .. } if reason.contains("NotAuthorized")),
    )
    .await;
    assert!(matches!(s, LinkState::Disconnected { .. }));
    door.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains(DEVICE), "logs were captured: {text}");
    assert!(!text.contains(KEY), "key leaked into logs");
    assert!(
        !text.contains("SharedAccessSignature"),
        "token leaked into logs"
    );
    let sig = password
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert!(!text.contains(sig), "signature leaked into logs");
}

#[tokio::test]
async fn method_on_full_event_queue_is_answered_503_at_once() {
    let hub = FakeHub::start().await;
    let mut settings = hub.settings();
    Arc::make_mut(&mut settings.hub).queue = 1;
    let lock = fieldgate::config::Method {
        action: fieldgate::config::MethodAction::WriteCoil {
            address: 0,
            value: fieldgate::config::ValueSource::Fixed(json!(true)),
        },
        timeout: Duration::from_secs(4),
    };
    settings.methods = std::sync::Arc::new([("lockDoor".to_string(), lock)].into());
    let mut door = start(settings);
    let (mut conn, _) = hub.accept().await;
    conn.handshake(&twin(1)).await;
    assert!(matches!(door.event().await, LinkEvent::Connected { .. }));
    // The bridge is stuck: "a" fills the queue, "b" finds it full.
    conn.publish(&topics::method_request("lockDoor", "a"), "{}")
        .await;
    conn.publish(&topics::method_request("lockDoor", "b"), "{}")
        .await;
    let res = conn.next_publish().await;
    assert_eq!(
        res.topic,
        topics::method_response(iothub_proto::Status(503), "b")
    );
    assert!(door
        .metric("fieldgate_methods_total{method=\"lockDoor\",status=\"503\"}")
        .ends_with(" 1"));
    // A name the door does not map is counted as "unknown": callers cannot create series.
    conn.publish(&topics::method_request("x-1234", "c"), "{}")
        .await;
    let res = conn.next_publish().await;
    assert_eq!(
        res.topic,
        topics::method_response(iothub_proto::Status(503), "c")
    );
    assert!(door
        .metric("fieldgate_methods_total{method=\"unknown\",status=\"503\"}")
        .ends_with(" 1"));
    assert!(!door.metrics.render().contains("x-1234"));
    // "a" is still delivered and answerable.
    assert!(matches!(door.event().await, LinkEvent::MethodRequest { rid, .. } if rid == "a"));
    within(
        "respond a",
        door.handle
            .respond_method("a", iothub_proto::Status(200), json!({})),
    )
    .await
    .unwrap();
    assert_eq!(
        conn.next_publish().await.topic,
        topics::method_response(iothub_proto::Status(200), "a")
    );
    door.stop().await;
}

#[tokio::test]
async fn desired_patch_on_full_event_queue_resyncs_twin() {
    let hub = FakeHub::start().await;
    let mut settings = hub.settings();
    Arc::make_mut(&mut settings.hub).queue = 1;
    let mut door = start(settings);
    let (mut conn, _) = hub.accept().await;
    conn.handshake(&twin(1)).await;
    // `Connected` still sits in the queue, so the patch cannot be queued: the link must not
    // lose it silently but fetch the whole twin again.
    conn.publish(
        &topics::desired_patch(2),
        json!({"mode": "manual", "$version": 2}).to_string(),
    )
    .await;
    let get = conn.next_publish().await;
    let Some(Topic::TwinGet { rid }) = topics::parse(&get.topic) else {
        panic!("expected a twin GET, got {}", get.topic)
    };
    let fresh = json!({"desired": {"mode": "manual", "$version": 2}, "reported": {"$version": 1}});
    conn.publish(
        &topics::twin_response(iothub_proto::Status(200), &rid, None),
        fresh.to_string(),
    )
    .await;
    assert_eq!(door.event().await, LinkEvent::Connected { twin: twin(1) });
    assert_eq!(door.event().await, LinkEvent::Connected { twin: fresh });
    door.stop().await;
}

#[tokio::test]
async fn connects_are_paced_across_links() {
    let hub = FakeHub::start().await;
    // One connect per 5 s, no burst: the second link must still be waiting 2 s after the
    // first connected (an absence check, so machine load cannot make it pass or fail).
    let pacer = ConnectPacer::new(Some(0.2), 1);
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for id in ["door-a", "door-b"] {
        let mut s = hub.settings();
        s.device_id = id.into();
        let (_h, _ev, task) = link::spawn(s, pacer.clone(), metrics.clone(), shutdown.clone());
        tasks.push((_h, _ev, task));
    }
    let (_c1, _first) = hub.accept().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(2), hub.accept())
            .await
            .is_err(),
        "the second link connected before the pacer allowed it"
    );
    shutdown.cancel();
    for (_, _, task) in tasks {
        within("link task end", task).await.unwrap();
    }
}
