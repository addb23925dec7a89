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
use crate::hub::{unix_now, Hub, Sub, TelemetryMessage};
use crate::throttle::Operation;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// D2C messages are limited to 256 KB; leave room for the topic and property bag.
const MAX_PACKET: usize = 300 * 1024;
const MAX_TELEMETRY: usize = 256 * 1024;
/// IoT Hub's idle limit: it caps the keep-alive at 1767 s ("Communicate with an IoT hub using
/// the MQTT protocol", <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>) and
/// closes a connection idle that long, keep-alive 0 included.
const MAX_IDLE: Duration = Duration::from_secs(1767);
/// Longest the token-expiry timer waits (100 years, in seconds).
const MAX_TOKEN_WAIT: u64 = 100 * 365 * 24 * 3600;

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

/// Longest device id IoT Hub accepts ("Device identity properties",
/// <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry>): a longer
/// client id is refused before anything is looked up or logged in full.
const MAX_DEVICE_ID: usize = 128;
/// How much of a text that came from an unauthenticated peer goes into a log line.
const LOGGED_CHARS: usize = 64;

/// `s` for a log line: at most [`LOGGED_CHARS`] characters, with the full length when cut, so
/// a peer cannot fill the log with one CONNECT.
pub(crate) fn for_log(s: &str) -> String {
    match s.char_indices().nth(LOGGED_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}… ({} chars)", &s[..cut], s.chars().count()),
    }
}

/// The client certificate chain a device presented in the TLS handshake (leaf first).
type ClientChain = Vec<rustls::pki_types::CertificateDer<'static>>;

/// Checks CONNECT fields and credentials: the device id, token expiry and announced model id,
/// or the CONNACK refusal code. Without a password, the client certificate is the credential
/// (X.509).
fn check_connect(
    hub: &Hub,
    c: &Connect,
    chain: &ClientChain,
) -> Result<(String, u64, Option<String>), ConnectReturnCode> {
    let refused = |code: ConnectReturnCode, why: &str| {
        tracing::info!(client_id = %for_log(&c.client_id), ?code, why, "CONNECT refused");
        code
    };
    if c.protocol != Protocol::V4 {
        return Err(refused(
            ConnectReturnCode::RefusedProtocolVersion,
            "not MQTT 3.1.1",
        ));
    }
    if c.client_id.is_empty() || c.client_id.chars().count() > MAX_DEVICE_ID {
        return Err(refused(ConnectReturnCode::BadClientId, "client id length"));
    }
    let login = c
        .login
        .as_ref()
        .ok_or_else(|| refused(ConnectReturnCode::BadUserNamePassword, "no credentials"))?;
    let user = rules::parse_username(&login.username)
        .ok_or_else(|| refused(ConnectReturnCode::BadUserNamePassword, "username format"))?;
    // The username starts with the hub's host name ("Using the MQTT protocol directly (as a
    // device)", https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub); a port, as
    // some clients append when the hub listens on a non-default one, is allowed.
    let host = user
        .host
        .rsplit_once(':')
        .map_or(user.host.as_str(), |(h, _)| h);
    if !host.eq_ignore_ascii_case(hub.hostname()) {
        return Err(refused(
            ConnectReturnCode::BadUserNamePassword,
            "username names another hub",
        ));
    }
    if user.device_id != c.client_id {
        return Err(refused(
            ConnectReturnCode::BadClientId,
            "username names another device",
        ));
    }
    if user.module_id.is_some() {
        // fieldhub has no module identities.
        return Err(refused(ConnectReturnCode::NotAuthorized, "module identity"));
    }
    // IoT Hub's handling of a malformed model id is not documented; the stricter choice is to
    // refuse it rather than store something no model repository could resolve.
    if user.model_id.as_deref().is_some_and(|m| !rules::is_dtmi(m)) {
        return Err(refused(
            ConnectReturnCode::BadUserNamePassword,
            "model-id is not a DTMI",
        ));
    }
    let verdict = if login.password.is_empty() && !chain.is_empty() {
        hub.authorize_device_x509(&c.client_id, chain)
    } else {
        hub.authorize_device(&c.client_id, &login.password)
    };
    match verdict {
        Ok(expiry) => Ok((c.client_id.clone(), expiry, user.model_id)),
        Err(refusal) => {
            tracing::info!(device = %c.client_id, ?refusal, "CONNECT refused");
            Err(ConnectReturnCode::NotAuthorized)
        }
    }
}

/// rumqttc's codec plus the CONNECT flag rules its parser skips (MQTT 3.1.1 §3.1.2.3, §3.1.2.6,
/// §3.1.2.7, §3.1.2.9, <http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html>): the
/// reserved flag is zero, Will QoS and Will Retain are zero without a Will, and there is no
/// password without a user name. The specification has the server close the connection
/// without a CONNACK [MQTT-3.1.2-3]; IoT Hub implements MQTT 3.1.1 ("Communicate with an IoT
/// hub using the MQTT protocol", <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>)
/// and documents nothing looser.
struct ConnectCodec(Codec);

impl ConnectCodec {
    /// The CONNECT flags byte of a buffered packet, once enough of it has arrived; only for
    /// CONNECT packets with the MQTT 3.1.1 protocol name (others are left to rumqttc).
    fn flags(src: &[u8]) -> Option<u8> {
        if src.first() != Some(&0x10) {
            return None;
        }
        // Remaining length: 1 to 4 bytes, high bit = more.
        let len_bytes = src[1..].iter().take(4).position(|b| b & 0x80 == 0)? + 1;
        let rest = src.get(1 + len_bytes..)?;
        // Protocol name "MQTT" (2-byte length + 4), protocol level, then the flags.
        if rest.get(..6)? != b"\x00\x04MQTT" {
            return None;
        }
        rest.get(7).copied()
    }
}

impl tokio_util::codec::Decoder for ConnectCodec {
    type Item = Packet;
    type Error = rumqttc::mqttbytes::Error;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Packet>, Self::Error> {
        if let Some(flags) = Self::flags(src) {
            let reserved = flags & 0x01 != 0;
            let will = flags & 0x04 != 0;
            let will_qos_or_retain = flags & 0x38 != 0;
            let (user, password) = (flags & 0x80 != 0, flags & 0x40 != 0);
            if reserved || (!will && will_qos_or_retain) || (password && !user) {
                return Err(rumqttc::mqttbytes::Error::IncorrectPacketFormat);
            }
        }
        self.0.decode(src)
    }
}

/// The CONNECT packet, with a deadline. A first packet that is not a valid CONNECT closes the
/// connection without an answer.
async fn read_connect<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> Option<(Stream<T>, Connect)> {
    let mut framed = Framed::new(
        io,
        ConnectCodec(Codec {
            max_incoming_size: MAX_PACKET,
            max_outgoing_size: MAX_PACKET,
        }),
    );
    match timeout(CONNECT_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(Packet::Connect(c)))) => Some((framed.map_codec(|c| c.0), c)),
        Ok(Some(Err(e))) => {
            tracing::info!(error = %e, "malformed CONNECT; closing");
            None
        }
        _ => None,
    }
}

/// Serves one TCP connection. One over the new-connection throttle (`admitted` false) gets
/// CONNACK 3 "server unavailable" to its CONNECT: IoT Hub does not document how it refuses a
/// throttled connection, and that is the MQTT 3.1.1 refusal (§3.2.2.3) the device SDKs treat
/// as retryable.
pub(crate) async fn run(hub: Hub, acceptor: TlsAcceptor, tcp: TcpStream, admitted: bool) {
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
    if admitted {
        serve_stream_with_chain(hub, tls, chain).await;
    } else if let Some((mut framed, _)) = read_connect(tls).await {
        tracing::info!("new-connection throttle: CONNECT refused (server unavailable)");
        let refusal = ConnAck::new(ConnectReturnCode::ServiceUnavailable, false);
        let _ = send(&mut framed, Packet::ConnAck(refusal)).await;
    }
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
    let (id, expiry, model_id) = match check_connect(&hub, &connect, &chain) {
        Ok(ok) => ok,
        Err(code) => {
            let _ = send(&mut framed, Packet::ConnAck(ConnAck::new(code, false))).await;
            return;
        }
    };
    if let Some(model) = &model_id {
        if let Err(e) = hub.announce_model(&id, model) {
            tracing::warn!(device = %id, error = %e, "recording the announced model id failed");
            let refusal = ConnAck::new(ConnectReturnCode::ServiceUnavailable, false);
            let _ = send(&mut framed, Packet::ConnAck(refusal)).await;
            return;
        }
    }
    let att = hub.attach(&id, connect.clean_session);
    // Detaches however the session ends, a panic in it included: a device must never stay
    // shown as connected with no task behind it.
    let attached = Detach {
        hub: &hub,
        id: &id,
        conn_id: att.conn_id,
        clean_session: connect.clean_session,
    };
    let ack = ConnAck::new(ConnectReturnCode::Success, att.session_present);
    let end = if send(&mut framed, Packet::ConnAck(ack)).await.is_err() {
        End::Lost
    } else {
        let mut session = Session {
            hub: hub.clone(),
            id: id.clone(),
            framed,
            granted: std::collections::BTreeMap::new(),
            filters: att.filters,
            last_pkid: 0,
        };
        session
            .run(att.rx, att.kill, expiry, connect.keep_alive)
            .await
    };
    drop(attached);
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

/// Detaches a connection from the hub when dropped.
struct Detach<'a> {
    hub: &'a Hub,
    id: &'a str,
    conn_id: u64,
    clean_session: bool,
}

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.hub.detach(self.id, self.conn_id, self.clean_session);
    }
}

/// Topic filters a device may hold at once: "A device can only subscribe to five topics at a
/// time" ("Communicate with an IoT hub using the MQTT protocol", Receiving cloud-to-device
/// messages, <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>). The guide
/// does not say how the hub refuses a sixth; MQTT 3.1.1's per-filter refusal (SUBACK 0x80) is
/// used, so the filters already held keep working. Filters restored with a saved session
/// (clean session 0) are held as much as those subscribed on this connection, and count.
const MAX_SUBSCRIPTIONS: usize = 5;

struct Session<T> {
    hub: Hub,
    id: String,
    framed: Stream<T>,
    /// QoS granted per subscription on this connection. IoT Hub delivers at the QoS it
    /// granted: "If a device app subscribes to a topic with QoS 2, IoT Hub grants maximum QoS
    /// level 1 in the SUBACK packet. After that, IoT Hub delivers messages to the device using
    /// QoS 1" ("Communicate with an IoT hub using the MQTT protocol",
    /// <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>). Subscriptions
    /// restored from a persistent session without a SUBSCRIBE on this connection are served
    /// at QoS 0 (the granted QoS is not stored).
    granted: std::collections::BTreeMap<Sub, QoS>,
    /// The topic filters this connection holds, restored ones included, and what each
    /// subscribes to (several per-method filters all mean [`Sub::Methods`]). At most
    /// [`MAX_SUBSCRIPTIONS`]; the hub's copy is the saved session.
    filters: std::collections::BTreeMap<String, Sub>,
    /// Packet id of the last QoS 1 publish (1..=65535, wrapping).
    last_pkid: u16,
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
        // `se` is any u64 the device chose: far-future expiries wait "forever" (a century)
        // rather than overflow `Instant`.
        let valid_for = Duration::from_secs(expiry.saturating_sub(unix_now()).min(MAX_TOKEN_WAIT));
        let expires_at = Instant::now() + valid_for;
        // Keep-alive 0 turns MQTT's own timeout off, but not IoT Hub's: a connection idle for
        // [`MAX_IDLE`] is closed whatever the device asked for.
        let idle_limit = if keep_alive > 0 {
            (Duration::from_secs(u64::from(keep_alive)) * 3 / 2).min(MAX_IDLE)
        } else {
            MAX_IDLE
        };
        let mut last_rx = Instant::now();
        loop {
            let idle = sleep_until(last_rx + idle_limit);
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
                        let p = self.publish_to_device(o.sub, o.topic, o.payload);
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

    /// A publish to the device at the QoS granted for `sub`. QoS 1 publishes are sent once:
    /// the device's PUBACK is accepted but nothing is retransmitted (method requests and twin
    /// responses have their own timeouts; a lost desired patch is recovered by a twin GET).
    fn publish_to_device(&mut self, sub: Sub, topic: String, payload: Bytes) -> Publish {
        let qos = self.granted.get(&sub).copied().unwrap_or(QoS::AtMostOnce);
        let mut p = Publish::from_bytes(topic, qos, payload);
        if qos == QoS::AtLeastOnce {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            p.pkid = self.last_pkid;
        }
        p
    }

    async fn reply(&mut self, p: Packet) -> Step {
        match send(&mut self.framed, p).await {
            Ok(()) => Step::Continue,
            Err(()) => Step::Stop(End::Lost),
        }
    }

    fn violation(&self, what: &str) -> Step {
        tracing::warn!(device = %self.id, what = %for_log(what), "device broke the topic rules; closing");
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
                            if !self.filters.contains_key(&f.path)
                                && self.filters.len() >= MAX_SUBSCRIPTIONS
                            {
                                tracing::debug!(device = %self.id, filter = %for_log(&f.path), "subscription limit reached");
                                codes.push(SubscribeReasonCode::Failure);
                                continue;
                            }
                            self.filters.insert(f.path.clone(), sub);
                            self.hub.set_filter(&self.id, &f.path, Some(sub));
                            // QoS 2 subscriptions are granted QoS 1 (MQTT guide, as above).
                            let q = if f.qos == QoS::AtMostOnce {
                                QoS::AtMostOnce
                            } else {
                                QoS::AtLeastOnce
                            };
                            self.granted.insert(sub, q);
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
                        self.filters.remove(t);
                        self.hub.set_filter(&self.id, t, None);
                        // Another per-method filter may still hold the methods subscription.
                        if !self.filters.values().any(|held| *held == sub) {
                            self.granted.remove(&sub);
                        }
                    }
                }
                self.reply(Packet::UnsubAck(UnsubAck::new(u.pkid))).await
            }
            Packet::PingReq => self.reply(Packet::PingResp).await,
            Packet::Disconnect => Step::Stop(End::Clean),
            Packet::Connect(_) => self.violation("second CONNECT"),
            // PUBACKs of our QoS 1 publishes need nothing (they are not retransmitted);
            // anything else is ignored.
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
        let topic = iothub_proto::topics::twin_response(
            iothub_proto::Status(i32::from(status)),
            rid,
            version,
        );
        let p = self.publish_to_device(Sub::TwinResponses, topic, body);
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
        // Checked before the PUBACK: a QoS 1 message acknowledged and then dropped would be
        // lost without the device knowing. IoT Hub's device-to-cloud limit is 256 KB
        // ("IoT Hub quotas and throttling",
        // https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling).
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
            // A throttled request is answered 429 on its response topic and not carried out:
            // the device's twin reads and updates count against the hub's twin quotas (see
            // `crate::throttle`), as the service's do.
            PublishVerdict::TwinGet { rid } => {
                let twin = self
                    .hub
                    .admit(Operation::TwinRead)
                    .and_then(|()| self.hub.device_twin(&self.id));
                match twin {
                    Ok(t) => {
                        self.twin_reply(200, &rid, None, Bytes::from(t.to_string()))
                            .await
                    }
                    Err(e) => self.twin_error(&rid, &e).await,
                }
            }
            PublishVerdict::ReportedPatch { rid } => {
                let patched = self
                    .hub
                    .admit(Operation::TwinUpdate)
                    .and_then(|()| self.hub.patch_reported(&self.id, &p.payload));
                match patched {
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
    /// Node ignores the status and Python ignores the body (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub).
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

    /// A log writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 14, item 14: a refused CONNECT with a 60,000-character client id used to put
    /// the whole id in the log twice; what an unauthenticated peer sent is cut to
    /// [`LOGGED_CHARS`] characters.
    #[tokio::test]
    async fn refused_connect_logs_a_bounded_client_id() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open_offline(dir.path(), "h").unwrap();
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let long = "x".repeat(60_000);
        let mut c = Connect::new(long.clone());
        c.set_login(
            format!("h/{long}/?api-version=2021-04-12"),
            "SharedAccessSignature sr=x",
        );
        let got = exchange(&hub, vec![Packet::Connect(c)], b"").await;
        assert_eq!(
            got,
            [Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::BadClientId,
                false
            ))]
        );
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("CONNECT refused"), "{text}");
        assert!(text.contains("(60000 chars)"), "{text}");
        assert!(text.len() < 1000, "{} bytes logged", text.len());
    }

    #[test]
    fn for_log_cuts_on_characters() {
        assert_eq!(for_log("short"), "short");
        let cut = for_log(&"é".repeat(100));
        assert_eq!(cut, format!("{}… (100 chars)", "é".repeat(LOGGED_CHARS)));
    }

    /// Issue 14, item 11: keep-alive 0 does not keep an idle connection forever; it is closed
    /// after IoT Hub's idle limit (1767 s, "Communicate with an IoT hub using the MQTT
    /// protocol", <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub:> the
    /// keep-alive is capped at 1767 seconds).
    #[tokio::test(start_paused = true)]
    async fn keep_alive_zero_still_ends_at_the_idle_limit() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open_offline(dir.path(), "h").unwrap();
        let keys = crate::hub::DeviceUpdate {
            primary_key: Some(KEY.into()),
            secondary_key: Some(KEY.into()),
            ..Default::default()
        };
        hub.upsert_device("d1", keys, None).unwrap();
        let token = iothub_proto::sas::generate(
            &iothub_proto::sas::device_resource("h", "d1"),
            KEY,
            None,
            unix_now() + 10 * 365 * 24 * 3600,
        )
        .unwrap();
        let mut c = Connect::new("d1");
        c.keep_alive = 0;
        c.set_login("h/d1/?api-version=2021-04-12", token);
        let mut input = BytesMut::new();
        codec().encode(Packet::Connect(c), &mut input).unwrap();
        let (mut device, server) = tokio::io::duplex(1 << 16);
        let serve = tokio::spawn(serve_stream(hub.clone(), server));
        device.write_all(&input).await.unwrap();
        let started = Instant::now();
        // The hub answers the CONNECT, then closes the silent connection: read to EOF.
        let mut out = Vec::new();
        device.read_to_end(&mut out).await.unwrap();
        let idle = started.elapsed();
        assert!(!out.is_empty(), "CONNACK first");
        assert!(
            idle >= MAX_IDLE && idle < MAX_IDLE + Duration::from_secs(5),
            "closed after {idle:?}"
        );
        serve.await.unwrap();
        assert!(!hub.is_connected("d1"));
    }
}
