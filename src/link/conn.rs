//! One MQTT connection of a door: a fresh rumqttc client and event loop per connect (the
//! password changes every time), the event loop driven by a poller sub-task.
//!
//! The poller exists because `EventLoop::poll` must not be cancelled mid-write by the link's
//! `select!`; it forwards events over a bounded channel (backpressure reaches the socket) and
//! is aborted when the connection is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, TlsConfiguration,
    Transport,
};
use rustls::ClientConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::debug;

use super::transport::Chosen;
use super::{auth, LinkSettings};

/// IoT Hub's limits (128 KB method payloads, 256 KB telemetry) plus MQTT framing.
const MAX_PACKET: usize = 300 * 1024;
/// QoS 1 publishes awaiting their PUBACK. rumqttc keeps a slot per possible in-flight publish
/// for the connection's life (default 100 × 72 bytes); a door has a handful at most (reported
/// patches, telemetry), and more simply wait in the request queue.
const INFLIGHT: u16 = 16;
/// rumqttc's buffer of events decoded but not yet returned by `poll` starts at 100 slots
/// (~15 KB) per connection. Being a ring, it became resident a slot at a time, two per
/// keep-alive ping (PINGREQ, PINGRESP) until its end: RSS grew by ~8 KB per door over the
/// first ~40 pings. A door holds one or two events at a time; a burst (`readb` takes up to 10
/// packets, each possibly with an ack) grows the buffer, and the poller shrinks it back to
/// this once drained.
const EVENT_BUFFER: usize = 4;
/// How long a clean DISCONNECT may take before the socket is just dropped.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// What the poller forwards. Boxed because a channel allocates its first block of 32 slots
/// up front: 32 × 152 bytes unboxed, per door, for events that come a few a minute.
pub(crate) type PolledEvent = Box<Result<Event, ConnectionError>>;

pub(crate) struct Conn {
    pub(crate) client: AsyncClient,
    pub(crate) events: mpsc::Receiver<PolledEvent>,
    /// The transport this connection dialled.
    pub(crate) transport: Chosen,
    poller: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Conn {
    /// Builds a client with a token valid from now and starts dialling. The first item on
    /// `events` is the CONNACK or the error that prevented it.
    pub(crate) fn open(
        s: &LinkSettings,
        host_name: &str,
        port: u16,
        tls: &Arc<ClientConfig>,
        transport: Chosen,
    ) -> Result<Conn, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // X.509: the certificate in the handshake is the credential, CONNECT has no password.
        let password = match &s.client_cert {
            Some(_) => String::new(),
            None => auth::password(
                host_name,
                &s.device_id,
                s.key.expose(),
                now,
                s.hub.token_lifetime,
            )
            .map_err(|e| e.to_string())?,
        };
        let mut opts = mqtt_options(
            &s.device_id,
            host_name,
            port,
            tls,
            transport,
            s.hub.websocket_port,
            s.hub.proxy.as_ref(),
        );
        let mut username = auth::username(host_name, &s.device_id);
        if let Some(m) = &s.model_id {
            username.push_str("&model-id=");
            username.push_str(&iothub_proto::sas::encode(m));
        }
        opts.set_credentials(username, password)
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(s.hub.keepalive.as_secs().max(1)))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(INFLIGHT);
        // Room for everything the link can have in flight at once: a flushed backlog plus
        // a command queue's worth.
        let cap = s.hub.queue.max(1) * 4;
        let (client, mut eventloop) = AsyncClient::new(opts, cap);
        eventloop.state.events = VecDeque::with_capacity(EVENT_BUFFER);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(s.hub.connect_timeout.as_secs().max(1));
        // A method answer is one small packet: Nagle would hold it until the hub acknowledges
        // whatever went before (a reported patch), up to its delayed-ACK timer (~40 ms).
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let (tx, events) = mpsc::channel(cap);
        let poller = tokio::spawn(poll(eventloop, tx));
        Ok(Conn {
            client,
            events,
            transport,
            poller,
        })
    }

    /// Sends DISCONNECT and gives the poller a moment to write it.
    pub(crate) async fn disconnect(&mut self, device_id: &str, why: &str) {
        debug!(device = %device_id, reason = why, "disconnecting");
        if self.client.try_disconnect().is_err() {
            return;
        }
        let _ = timeout(DISCONNECT_GRACE, async {
            while let Some(ev) = self.events.recv().await {
                let Ok(ev) = *ev else { break };
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Client options for `host_name:port` over the chosen transport (MQTT over TLS, or MQTT over
/// WebSockets on `websocket_port`, through `proxy` if any). Shared by the door links and the
/// provisioning client, which must reach their services the same way.
pub(crate) fn mqtt_options(
    client_id: &str,
    host_name: &str,
    port: u16,
    tls: &Arc<ClientConfig>,
    transport: Chosen,
    websocket_port: u16,
    proxy: Option<&super::ProxyConfig>,
) -> MqttOptions {
    let tls_config = TlsConfiguration::Rustls(tls.clone());
    match transport {
        Chosen::Mqtt => {
            let mut o = MqttOptions::new(client_id.to_string(), host_name, port);
            o.set_transport(Transport::tls_with_config(tls_config));
            o
        }
        Chosen::WebSocket => {
            // rumqttc takes the host and port from the URL; the port argument is unused.
            let url = format!("wss://{host_name}:{}/$iothub/websocket", websocket_port);
            let mut o = MqttOptions::new(client_id.to_string(), url, websocket_port);
            o.set_transport(Transport::Wss(tls_config));
            if let Some(p) = proxy {
                o.set_proxy(rumqttc::Proxy {
                    ty: rumqttc::ProxyType::Http,
                    auth: match &p.user {
                        Some((user, password)) => rumqttc::ProxyAuth::Basic {
                            username: user.clone(),
                            password: password.expose().to_string(),
                        },
                        None => rumqttc::ProxyAuth::None,
                    },
                    addr: p.host.clone(),
                    port: p.port,
                });
            }
            o
        }
    }
}

/// Drives the event loop until its first error, which it forwards as the last item.
async fn poll(mut eventloop: EventLoop, tx: mpsc::Sender<PolledEvent>) {
    loop {
        let r = eventloop.poll().await;
        let events = &mut eventloop.state.events;
        if events.is_empty() && events.capacity() > EVENT_BUFFER {
            events.shrink_to(EVENT_BUFFER);
        }
        let failed = r.is_err();
        if tx.send(Box::new(r)).await.is_err() || failed {
            return;
        }
    }
}

/// Whether `e` says the hub's address could not be reached at all (what a fallback to
/// another port can fix), rather than that it answered badly.
pub(crate) fn unreachable(e: &ConnectionError) -> bool {
    use std::io::ErrorKind::*;
    match e {
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => true,
        ConnectionError::Io(io) => matches!(
            io.kind(),
            ConnectionRefused
                | TimedOut
                | HostUnreachable
                | NetworkUnreachable
                | ConnectionReset
                | ConnectionAborted
                | UnexpectedEof
        ),
        _ => false,
    }
}

/// A proxy's refusal as an operator reads it: which proxy (without its password), which
/// tunnel, the HTTP status and what it usually means. `None` for other errors.
pub(crate) fn describe_proxy(e: &ConnectionError, s: &LinkSettings, host: &str) -> Option<String> {
    let ConnectionError::Proxy(inner) = e else {
        return None;
    };
    let proxy = s
        .hub
        .proxy
        .as_ref()
        .map_or_else(|| "the proxy".to_string(), |p| format!("proxy {p}"));
    let text = inner.to_string();
    // async-http-proxy says "The HTTP code is not equal 200: 407".
    let status: Option<u16> = text
        .rsplit(':')
        .next()
        .and_then(|t| t.trim().trim_end_matches('.').parse().ok());
    let hint = match status {
        Some(401 | 407) => " (wrong or missing proxy credentials)",
        Some(403) => " (the proxy does not allow CONNECT to this host or port)",
        Some(_) => "",
        None => " (is the proxy reachable?)",
    };
    let what = match status {
        Some(code) => format!("answered HTTP {code}"),
        None => text,
    };
    Some(format!(
        "{proxy} refused the tunnel to {host}:{}: {what}{hint}",
        s.hub.websocket_port
    ))
}

/// Whether the hub turned the device's credentials down at CONNECT (unknown or deleted
/// device, wrong key), as opposed to failing to answer: with DPS, the cue to register again.
pub(crate) fn identity_refused(e: &ConnectionError) -> bool {
    use rumqttc::ConnectReturnCode::*;
    matches!(
        e,
        ConnectionError::ConnectionRefused(NotAuthorized | BadUserNamePassword | BadClientId)
    )
}

/// A connection error as an operator reads it: TLS errors keep rustls' wording ("invalid
/// peer certificate: UnknownIssuer"), refusals name the CONNACK code.
pub(crate) fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("hub refused the connection: {code:?} (check the device key and id)")
        }
        other => other.to_string(),
    }
}
