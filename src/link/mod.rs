//! One task per door owning its MQTT link to IoT Hub: TLS, SAS renewal, reconnect with
//! backoff, connect pacing, and the reconnection flow IoT Hub's MQTT guide describes
//! (<https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>: subscribe, GET the
//! twin, drop desired patches the twin already contains).
//!
//! The bridge talks to a link through a [`LinkHandle`] (commands with oneshot replies over a
//! bounded queue) and hears from it on a bounded [`LinkEvent`] queue. When that queue is full:
//! a method request is answered `503` by the link at once (never silence); a desired patch is
//! dropped and the twin fetched again, so the bridge gets a fresh full twin (`Connected`) to
//! reconcile instead.
//!
//! Pure parts live in their own modules: [`auth`] (username, SAS password, renewal instant),
//! [`backoff`], [`pacer`], `session` (request ids and the `$version` filter), `outflow` (stored
//! events in flight and their PUBACKs).

pub mod auth;
pub mod backoff;
pub(crate) mod conn;
mod drain;
mod handle;
mod outflow;
pub mod pacer;
mod session;
mod task;
pub mod tls;
pub mod transport;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{HubSettings, Method, Secret};
use crate::events::DoorEvents;
use crate::metrics::Metrics;
use iothub_proto::Status;

pub use backoff::BackoffPolicy;
pub use handle::LinkHandle;
pub use pacer::ConnectPacer;
pub use transport::{ProxyConfig, TransportSelector};

/// What every door link of a gateway shares: the hub, how to reach it, what to trust, and
/// the timing, resolved once from `[hub]` ([`HubSettings`]) and held behind one `Arc` (a
/// thousand doors share one copy of the CA and the host name).
#[derive(Clone)]
pub struct HubLink {
    /// Hub host name, optionally with `:port` (default 8883). SAS `sr` and the MQTT username
    /// use the name without port; TLS verifies the name.
    pub host: String,
    /// PEM CA certificate(s) trusted in addition to the system roots.
    pub extra_ca_pem: Option<Arc<[u8]>>,
    /// Validity of each SAS token.
    pub token_lifetime: Duration,
    /// The link renews its token this long before it expires (zero: at 80 % of the
    /// lifetime). Renewal first stops new method requests (UNSUBSCRIBE), answers the open
    /// ones, then reconnects with a fresh token.
    pub token_renew_margin: Duration,
    /// MQTT keep-alive (whole seconds, ≥ 1 s).
    pub keepalive: Duration,
    /// Deadline for TCP + TLS (+ proxy and WebSocket upgrade) + CONNACK + SUBACKs + the twin
    /// GET (`[hub] dial_timeout`).
    pub connect_timeout: Duration,
    /// Deadline of each handle call (queueing included; `patch_reported` waits for the 204).
    pub op_timeout: Duration,
    pub backoff: BackoffPolicy,
    /// Capacity of the event queue, the command queue and the offline backlog.
    pub queue: usize,
    /// MQTT on 8883 or over WebSockets on 443; shared by every door of a gateway (the
    /// `auto` fallback is decided once for all).
    pub transport: Arc<TransportSelector>,
    /// The WebSocket transport's port (443 on IoT Hub).
    pub websocket_port: u16,
    /// HTTP proxy of the WebSocket transport.
    pub proxy: Option<ProxyConfig>,
    /// Spaces event publishes across every door of the gateway (`[events] send_rate`).
    pub event_pacer: ConnectPacer,
    /// With `[dps]`: the hub comes from the door's registration (`host` is then unused), and
    /// a hub refusing the identity makes the door register again.
    pub dps: Option<Arc<crate::dps::Provisioner>>,
}

/// Queues of a link: a few commands a second per door need no more.
const LINK_QUEUE: usize = 64;

impl HubLink {
    /// From the resolved `[hub]` settings; the CA's PEM as the config read it.
    pub fn from_settings(hub: &HubSettings) -> Self {
        HubLink {
            host: hub.hostname.clone(),
            extra_ca_pem: hub.ca_pem.clone(),
            token_lifetime: hub.token_lifetime,
            token_renew_margin: hub.token_renew_margin,
            keepalive: hub.keep_alive,
            connect_timeout: hub.dial_timeout,
            op_timeout: hub.operation_timeout,
            backoff: BackoffPolicy {
                base: hub.reconnect_backoff_min,
                cap: hub.reconnect_backoff_max,
                ..BackoffPolicy::default()
            },
            queue: LINK_QUEUE,
            transport: Arc::new(TransportSelector::new(hub.transport)),
            websocket_port: hub.websocket_port,
            proxy: hub.proxy.clone(),
            event_pacer: ConnectPacer::unpaced(),
            dps: None,
        }
    }

    /// `[hub]` with only `hostname` set: every other value is the config's default.
    pub fn with_defaults(host: impl Into<String>) -> Self {
        Self::from_settings(&HubSettings::with_defaults(host))
    }
}

impl fmt::Debug for HubLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubLink")
            .field("host", &self.host)
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(|p| p.len()))
            .field("token_lifetime", &self.token_lifetime)
            .field("token_renew_margin", &self.token_renew_margin)
            .field("keepalive", &self.keepalive)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("backoff", &self.backoff)
            .field("queue", &self.queue)
            .field("transport", &self.transport.mode())
            .field("websocket_port", &self.websocket_port)
            .field("proxy", &self.proxy)
            .field("dps", &self.dps.is_some())
            .finish()
    }
}

/// Everything one door link needs: the gateway's [`HubLink`] and the door's own identity.
/// `key` stays a [`Secret`] up to the SAS signer: `Debug` redacts it and it leaves the task
/// only as an HMAC inside the SAS token.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    pub hub: Arc<HubLink>,
    pub device_id: String,
    pub key: Secret,
    /// The door's methods: a request the link refuses itself (event queue full) is counted
    /// under its name only if mapped, else as "unknown", so callers cannot create unbounded
    /// metric series.
    pub methods: Arc<BTreeMap<String, Method>>,
    /// The door's stored events: sent at QoS 1 in sequence order while connected, removed
    /// from the store on PUBACK, sent again after a reconnect when unacknowledged.
    pub events: Option<DoorEvents>,
    /// Custom data sent with the registration (the door's tags), for custom allocation.
    pub dps_payload: Option<Value>,
    /// The Plug and Play model the door announces (`&model-id=` in the CONNECT username).
    pub model_id: Option<String>,
    /// X.509 authentication: the door presents this certificate and sends no password
    /// (`key` is then unused).
    pub client_cert: Option<tls::ClientCert>,
}

impl LinkSettings {
    /// A door of `hub` with its device id and key; no methods, events or certificate.
    pub fn new(hub: Arc<HubLink>, device_id: impl Into<String>, key: Secret) -> Self {
        LinkSettings {
            hub,
            device_id: device_id.into(),
            key,
            methods: Arc::default(),
            events: None,
            dps_payload: None,
            model_id: None,
            client_cert: None,
        }
    }

    /// Validates what can be checked without the network: the key decodes, the CA file
    /// parses, the durations are usable. `spawn` does the same and stops the link on failure.
    pub fn check(&self) -> Result<(), LinkError> {
        self.check_offline()?;
        tls::client_config(self.hub.extra_ca_pem.as_deref()).map(|_| ())
    }

    /// [`check`](Self::check) without building the TLS configuration.
    fn check_offline(&self) -> Result<(), LinkError> {
        let (name, _) = auth::split_host(&self.hub.host);
        if name.is_empty() || self.device_id.is_empty() {
            return Err(LinkError::Config(
                "hub host and device id must not be empty".into(),
            ));
        }
        auth::password(
            name,
            &self.device_id,
            self.key.expose(),
            0,
            self.hub.token_lifetime,
        )
        .map_err(|_| {
            LinkError::Config(format!(
                "key of device {} is not valid base64",
                self.device_id
            ))
        })?;
        if self.hub.keepalive < Duration::from_secs(1)
            || self.hub.token_lifetime < Duration::from_secs(1)
        {
            return Err(LinkError::Config(
                "keepalive and token lifetime must be at least 1 s".into(),
            ));
        }
        Ok(())
    }
}

/// What a link tells its bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// A connection is up and subscribed; `twin` is the full twin from the GET made on it
    /// (`{"desired":{…,"$version":n},"reported":{…}}`). Also sent after a resync (a desired
    /// patch could not be queued): reconcile everything in it.
    Connected { twin: Value },
    /// The connection ended (failure, token renewal, shutdown). Method requests received on
    /// it can no longer be answered. Best effort (dropped when the queue is full): the state
    /// from [`LinkHandle::watch_state`] is authoritative.
    Disconnected { reason: String },
    /// Answer with [`LinkHandle::respond_method`] and this `rid`. `received` is when the
    /// link took it off the connection: the method's deadline counts from there.
    MethodRequest {
        name: String,
        rid: String,
        payload: Vec<u8>,
        received: Instant,
    },
    /// A desired patch newer than everything delivered before (body includes `$version`).
    DesiredPatch { version: u64, patch: Value },
}

/// The bridge's end of a link's event queue. Events travel boxed: a channel allocates its
/// first block of 32 slots up front, 32 × 72 bytes per door unboxed, for events that come a
/// few an hour.
#[derive(Debug)]
pub struct LinkEvents(mpsc::Receiver<Box<LinkEvent>>);

impl LinkEvents {
    /// The next event; `None` once the link task has ended and the queue is drained.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.0.recv().await.map(|e| *e)
    }

    /// An event already queued, without waiting.
    pub fn try_recv(&mut self) -> Result<LinkEvent, mpsc::error::TryRecvError> {
        self.0.try_recv().map(|e| *e)
    }

    /// Refuses further events; the queued ones can still be received.
    pub fn close(&mut self) {
        self.0.close();
    }
}

/// Where a link is, for health output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Dialling (TCP, TLS, CONNECT, subscribe, twin GET); `attempt` counts since the last
    /// stable connection, starting at 1.
    Connecting {
        attempt: u32,
    },
    Connected,
    /// Registering with the Device Provisioning Service (or waiting for its turn to), then
    /// dialling the hub it assigned: the link counts as attempted for readiness (registrations
    /// of a large site take minutes under DPS quotas), though not connected.
    Registering,
    /// Waiting `retry_in` before the next attempt because of `reason`.
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
    /// The task has ended; `reason` is set for a permanent error (bad key, unusable CA file).
    Stopped {
        reason: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid link settings: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("link queue is full; the hub connection is congested")]
    Busy,
    #[error("{op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    #[error("the link has stopped")]
    Stopped,
    #[error("the connection that carried method request {rid} is gone; the hub has already failed that call")]
    MethodLost { rid: String },
    #[error("hub answered {status}: {body}")]
    Rejected { status: Status, body: String },
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Starts the link task of one door. It runs until `shutdown` is cancelled (then disconnects
/// cleanly and fails queued work with [`LinkError::Stopped`]) or a permanent settings error.
pub fn spawn(
    settings: LinkSettings,
    pacer: ConnectPacer,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (LinkHandle, LinkEvents, JoinHandle<()>) {
    let queue = settings.hub.queue.max(1);
    let (cmd_tx, cmd_rx) = mpsc::channel(queue);
    let (event_tx, event_rx) = mpsc::channel(queue);
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting { attempt: 1 });
    let handle = LinkHandle::new(
        settings.device_id.clone(),
        cmd_tx,
        state_rx,
        settings.hub.op_timeout,
    );
    let task = task::Link::new(
        settings, pacer, metrics, shutdown, cmd_rx, event_tx, state_tx,
    );
    (handle, LinkEvents(event_rx), tokio::spawn(task.run()))
}
