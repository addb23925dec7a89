//! One device connection: TLS handshake, CONNECT checks, then a single task that owns the
//! socket and multiplexes incoming packets, the hub's outbox (method requests, desired
//! patches), the keep-alive deadline, the token expiry and the kill switch.
//!
//! Everything after the TLS handshake ([`serve_stream`]) works on any byte stream, so fuzzing and
//! socket-free tests drive the same code over an in-memory pipe.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Protocol, QoS};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

use super::rules::{self, FilterVerdict, PublishVerdict};
use crate::hub::{unix_now, Hub, TelemetryMessage};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// D2C messages are limited to 256 KB; leave room for the topic and property bag.
const MAX_PACKET: usize = 300 * 1024;
const MAX_TELEMETRY: usize = 256 * 1024;
/// The Azure load balancer's idle limit caps the keep-alive timeout (reference §2.2).
const MAX_IDLE: Duration = Duration::from_secs(1767);

type Stream<T> = Framed<T, Codec>;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT received.
    Clean,
    /// Socket error, EOF or keep-alive expiry: the Will is delivered.
    Lost,
    /// Replaced by a newer connection, disabled, `disconnect_all`, or hub shutdown.
    Kicked,
    /// SAS token expired.
    Expired,
    /// Protocol or isolation violation (QoS 2, foreign topic, unknown topic).
    Violation,
}

async fn send<T: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Stream<T>,
    p: Packet,
) -> Result<(), ()> {
    match timeout(WRITE_TIMEOUT, framed.send(p)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The client certificate chain a device presented in the TLS handshake (leaf first).
type ClientChain = Vec<rustls::pki_types::CertificateDer<'static>>;

/// Checks CONNECT fields and credentials: the device id, or the CONNACK refusal code. Without
/// a password, the client certificate is the credential (X.509).
fn check_connect(
    hub: &Hub,
    c: &Connect,
    chain: &ClientChain,
) -> Result<(String, u64), ConnectReturnCode> {
    if c.protocol != Protocol::V4 {
        return Err(ConnectReturnCode::RefusedProtocolVersion);
    }
    let login = c
        .login
        .as_ref()
        .ok_or(ConnectReturnCode::BadUserNamePassword)?;
    let user =
        rules::parse_username(&login.username).ok_or(ConnectReturnCode::BadUserNamePassword)?;
    if c.client_id.is_empty() || user.device_id != c.client_id {
        return Err(ConnectReturnCode::BadClientId);
    }
    if user.module_id.is_some() {
        // fieldhub has no module identities.
        return Err(ConnectReturnCode::NotAuthorized);
    }
    let verdict = if login.password.is_empty() && !chain.is_empty() {
        hub.authorize_device_x509(&c.client_id, chain)
    } else {
        hub.authorize_device(&c.client_id, &login.password)
    };
    match verdict {
        Ok(expiry) => Ok((c.client_id.clone(), expiry)),
        Err(refusal) => {
            tracing::info!(device = %c.client_id, ?refusal, "CONNECT refused");
            Err(ConnectReturnCode::NotAuthorized)
        }
    }
}

/// The CONNECT packet, with a deadline.
async fn read_connect<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> Option<(Stream<T>, Connect)> {
    let mut framed = Framed::new(
        io,
        Codec {
            max_incoming_size: MAX_PACKET,
            max_outgoing_size: MAX_PACKET,
        },
    );
    match timeout(CONNECT_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(Packet::Connect(c)))) => Some((framed, c)),
        _ => None,
    }
}

pub(crate) async fn run(hub: Hub, acceptor: TlsAcceptor, tcp: TcpStream) {
    let shutdown = hub.inner.shutdown.clone();
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            _ => return,
        },
    };
    let chain: ClientChain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    serve_stream_with_chain(hub, tls, chain).await;
}

/// Serves one device connection on an established (already secured) byte stream until it
/// ends: CONNECT and its checks, then the session. Returns when the peer disconnects or
/// closes the stream, breaks the rules, is replaced or kicked, or its token expires.
pub async fn serve_stream<T: AsyncRead + AsyncWrite + Unpin>(hub: Hub, io: T) {
    serve_stream_with_chain(hub, io, Vec::new()).await;
}

/// [`serve_stream`] for a stream whose TLS handshake presented a client certificate chain.
async fn serve_stream_with_chain<T: AsyncRead + AsyncWrite + Unpin>(
    hub: Hub,
    io: T,
    chain: ClientChain,
) {
    // Before attaching, only shutdown can interrupt; afterwards the link's kill token does.
    let shutdown = hub.inner.shutdown.clone();
    let (mut framed, connect) = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = read_connect(io) => match r {
            Some(x) => x,
            None => return,
        },
    };
    // Registration clients share this listener (see `crate::dps`).
    if let Some((scope, reg)) = connect
        .login
        .as_ref()
        .and_then(|l| crate::dps::parse_username(&l.username))
        .map(|(s, r)| (s.to_string(), r.to_string()))
    {
        crate::dps::mqtt::serve(hub, framed, connect, scope, reg, chain).await;
        return;
    }
    let (id, expiry) = match check_connect(&hub, &connect, &chain) {
        Ok(ok) => ok,
        Err(code) => {
            let _ = send(&mut framed, Packet::ConnAck(ConnAck::new(code, false))).await;
            return;
        }
    };
    if let Some(login) = &connect.login {
        hub.set_model_id(&id, &rules::model_id(&login.username).unwrap_or_default());
    }
    let att = hub.attach(&id, connect.clean_session);
    let ack = ConnAck::new(ConnectReturnCode::Success, att.session_present);
    let end = if send(&mut framed, Packet::ConnAck(ack)).await.is_err() {
        End::Lost
    } else {
        let mut session = Session {
            hub: hub.clone(),
            id: id.clone(),
            framed,
        };
        session
            .run(att.rx, att.kill, expiry, connect.keep_alive)
            .await
    };
    hub.detach(&id, att.conn_id, connect.clean_session);
    tracing::debug!(device = %id, ?end, "connection ended");
    if end == End::Lost {
        if let Some(will) = connect.last_will {
            if let PublishVerdict::Telemetry { properties } =
                rules::classify_publish(&will.topic, &id)
            {
                let mut props = rules::parse_property_bag(&properties);
                props.push(("iothub-MessageType".into(), "Will".into()));
                hub.record_telemetry(TelemetryMessage {
                    device_id: id.clone(),
                    properties: props,
                    payload: will.message,
                    received_at: crate::hub::now_iso(),
                });
            }
        }
    }
}

struct Session<T> {
    hub: Hub,
    id: String,
    framed: Stream<T>,
}

enum Step {
    Continue,
    Stop(End),
}

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    async fn run(
        &mut self,
        mut outbox: tokio::sync::mpsc::Receiver<crate::hub::links::Outbound>,
        kill: tokio_util::sync::CancellationToken,
        expiry: u64,
        keep_alive: u16,
    ) -> End {
        let expires_at = Instant::now() + Duration::from_secs(expiry.saturating_sub(unix_now()));
        let idle_limit = (keep_alive > 0)
            .then(|| (Duration::from_secs(u64::from(keep_alive)) * 3 / 2).min(MAX_IDLE));
        let mut last_rx = Instant::now();
        loop {
            let idle = async {
                match idle_limit {
                    Some(d) => sleep_until(last_rx + d).await,
                    None => std::future::pending().await,
                }
            };
            // Every branch is cancel-safe: Framed keeps partial frames buffered.
            tokio::select! {
                _ = kill.cancelled() => return End::Kicked,
                _ = sleep_until(expires_at) => {
                    tracing::info!(device = %self.id, "SAS token expired; closing");
                    return End::Expired;
                }
                _ = idle => {
                    tracing::info!(device = %self.id, "keep-alive expired; closing");
                    return End::Lost;
                }
                out = outbox.recv() => match out {
                    Some(o) => {
                        let p = Publish::from_bytes(o.topic, QoS::AtMostOnce, o.payload);
                        if send(&mut self.framed, Packet::Publish(p)).await.is_err() {
                            return End::Lost;
                        }
                    }
                    None => return End::Kicked,
                },
                pkt = self.framed.next() => match pkt {
                    Some(Ok(p)) => {
                        last_rx = Instant::now();
                        match self.handle(p).await {
                            Step::Continue => {}
                            Step::Stop(end) => return end,
                        }
                    }
                    Some(Err(rumqttc::mqttbytes::Error::Io(_))) => return End::Lost,
                    Some(Err(e)) => {
                        tracing::info!(device = %self.id, error = %e, "bad MQTT packet; closing");
                        return End::Violation;
                    }
                    None => return End::Lost,
                },
            }
        }
    }

    async fn reply(&mut self, p: Packet) -> Step {
        match send(&mut self.framed, p).await {
            Ok(()) => Step::Continue,
            Err(()) => Step::Stop(End::Lost),
        }
    }

    fn violation(&self, what: &str) -> Step {
        tracing::warn!(device = %self.id, what, "device broke the topic rules; closing");
        Step::Stop(End::Violation)
    }

    async fn handle(&mut self, p: Packet) -> Step {
        match p {
            Packet::Publish(p) => self.publish(p).await,
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in &s.filters {
                    match rules::classify_filter(&f.path, &self.id) {
                        FilterVerdict::Allowed(sub) => {
                            self.hub.set_subscription(&self.id, sub, true);
                            // QoS 2 subscriptions are granted QoS 1 (reference §2.3).
                            let q = if f.qos == QoS::AtMostOnce {
                                QoS::AtMostOnce
                            } else {
                                QoS::AtLeastOnce
                            };
                            codes.push(SubscribeReasonCode::Success(q));
                        }
                        FilterVerdict::Unsupported => codes.push(SubscribeReasonCode::Failure),
                        FilterVerdict::Foreign => return self.violation(&f.path),
                    }
                }
                self.reply(Packet::SubAck(SubAck::new(s.pkid, codes))).await
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    if let FilterVerdict::Allowed(sub) = rules::classify_filter(t, &self.id) {
                        self.hub.set_subscription(&self.id, sub, false);
                    }
                }
                self.reply(Packet::UnsubAck(UnsubAck::new(u.pkid))).await
            }
            Packet::PingReq => self.reply(Packet::PingResp).await,
            Packet::Disconnect => Step::Stop(End::Clean),
            Packet::Connect(_) => self.violation("second CONNECT"),
            // Acks for our QoS 0 publishes never come; anything else is ignored.
            _ => Step::Continue,
        }
    }

    async fn twin_reply(
        &mut self,
        status: u16,
        rid: &str,
        version: Option<u64>,
        body: Bytes,
    ) -> Step {
        let topic = iothub_proto::topics::twin_response(status, rid, version);
        let p = Publish::from_bytes(topic, QoS::AtMostOnce, body);
        self.reply(Packet::Publish(p)).await
    }

    async fn publish(&mut self, p: Publish) -> Step {
        if p.qos == QoS::ExactlyOnce {
            return self.violation("QoS 2 publish");
        }
        let verdict = rules::classify_publish(&p.topic, &self.id);
        if verdict == PublishVerdict::Violation {
            return self.violation(&p.topic);
        }
        if let PublishVerdict::Telemetry { properties } = &verdict {
            if p.payload.len() > MAX_TELEMETRY {
                return self.violation("telemetry over 256 KB");
            }
            let mut props = rules::parse_property_bag(properties);
            if p.retain {
                props.push(("mqtt-retain".into(), "true".into()));
            }
            // Kept before it is acknowledged, as IoT Hub does: a PUBACK means the message is
            // the hub's, even if the hub stops right after sending it.
            self.hub.record_telemetry(TelemetryMessage {
                device_id: self.id.clone(),
                properties: props,
                payload: p.payload.clone(),
                received_at: crate::hub::now_iso(),
            });
        }
        if p.qos == QoS::AtLeastOnce {
            if let Step::Stop(e) = self.reply(Packet::PubAck(PubAck::new(p.pkid))).await {
                return Step::Stop(e);
            }
        }
        match verdict {
            PublishVerdict::Telemetry { .. } => Step::Continue,
            PublishVerdict::TwinGet { rid } => match self.hub.device_twin(&self.id) {
                Ok(t) => {
                    self.twin_reply(200, &rid, None, Bytes::from(t.to_string()))
                        .await
                }
                Err(e) => self.twin_error(&rid, &e).await,
            },
            PublishVerdict::ReportedPatch { rid } => {
                match self.hub.patch_reported(&self.id, &p.payload) {
                    Ok(v) => self.twin_reply(204, &rid, Some(v), Bytes::new()).await,
                    Err(e) => self.twin_error(&rid, &e).await,
                }
            }
            PublishVerdict::MethodResponse { status, rid } => {
                self.hub.complete_method(&self.id, &rid, status, &p.payload);
                Step::Continue
            }
            PublishVerdict::Violation => Step::Continue,
        }
    }

    /// Twin errors: status in the topic and `{"errorCode","message"}` in the body, because
    /// Node ignores the status and Python ignores the body (reference §2.8).
    async fn twin_error(&mut self, rid: &str, e: &crate::error::HubError) -> Step {
        let body = json!({"errorCode": e.code(), "message": e.to_string()});
        self.twin_reply(e.status(), rid, None, Bytes::from(body.to_string()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_util::codec::{Decoder as _, Encoder as _};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn codec() -> Codec {
        Codec {
            max_incoming_size: MAX_PACKET,
            max_outgoing_size: MAX_PACKET,
        }
    }

    /// Sends `packets` then `tail` and closes; returns what the hub answered.
    async fn exchange(hub: &Hub, packets: Vec<Packet>, tail: &[u8]) -> Vec<Packet> {
        let mut input = BytesMut::new();
        for p in packets {
            codec().encode(p, &mut input).unwrap();
        }
        input.extend_from_slice(tail);
        let (mut device, server) = tokio::io::duplex(1 << 16);
        let serve = serve_stream(hub.clone(), server);
        let client = async {
            device.write_all(&input).await.unwrap();
            device.shutdown().await.unwrap();
            let mut out = Vec::new();
            device.read_to_end(&mut out).await.unwrap();
            out
        };
        let (out, ()) = timeout(Duration::from_secs(10), async {
            tokio::join!(client, serve)
        })
        .await
        .expect("the session ends when the device closes");
        let mut buf = BytesMut::from(&out[..]);
        let mut got = Vec::new();
        while let Some(p) = codec().decode(&mut buf).unwrap() {
            got.push(p);
        }
        assert!(buf.is_empty());
        got
    }

    fn connect() -> Packet {
        let token = iothub_proto::sas::generate(
            &iothub_proto::sas::device_resource("h", "d1"),
            KEY,
            None,
            unix_now() + 600,
        )
        .unwrap();
        let mut c = Connect::new("d1");
        c.set_login("h/d1/?api-version=2021-04-12", token);
        Packet::Connect(c)
    }

    #[tokio::test]
    async fn serves_a_session_over_any_stream_and_ends_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open_offline(dir.path(), "h").unwrap();
        let keys = crate::hub::DeviceUpdate {
            primary_key: Some(KEY.into()),
            secondary_key: Some(KEY.into()),
            ..Default::default()
        };
        hub.upsert_device("d1", keys, None).unwrap();

        let got = exchange(&hub, vec![connect(), Packet::PingReq], b"").await;
        assert_eq!(
            got,
            [
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
                Packet::PingResp
            ]
        );
        // A malformed packet after CONNECT closes the session; nothing after it is answered.
        let got = exchange(&hub, vec![connect()], b"\x30\x01\x00\xc0\x00").await;
        assert_eq!(got.len(), 1);
        assert!(!hub.is_connected("d1"));
        // Not even a CONNECT: closed without an answer.
        assert!(exchange(&hub, vec![], b"\xff\xff\xff").await.is_empty());
    }
}
