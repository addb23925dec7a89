//! The resolved, validated device map: what the gateway runs on. No `Option` here means
//! "not given, use the default"; an `Option` is a real choice (no extra CA, no payload field).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::BusOptions;
use crate::codec::ValueSpec;

/// A device or group key (base64). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The key itself: only for signing and for writing the key files the operator asked for.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file (or origin name) the config came from, for messages.
    pub origin: String,
    pub hub: HubSettings,
    /// Doors register with the Device Provisioning Service and connect where it assigns them.
    pub dps: Option<super::DpsSettings>,
    pub metrics: MetricsSettings,
    pub events: EventsSettings,
    pub buses: Vec<BusOptions>,
    /// In file order.
    pub doors: Vec<Door>,
    /// Every profile by name, as written (without doors' overrides): what `fieldgate model`
    /// describes.
    pub profiles: BTreeMap<String, Profile>,
}

/// A controller model: its maps and Plug and Play model id.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub model_id: Option<String>,
    pub poll_interval: Duration,
    pub methods: Arc<BTreeMap<String, Method>>,
    pub desired: Arc<BTreeMap<String, DesiredPoint>>,
    pub reported: Arc<BTreeMap<String, ReportedPoint>>,
}

impl Config {
    pub fn bus(&self, name: &str) -> Option<&BusOptions> {
        self.buses.iter().find(|b| b.name == name)
    }

    pub fn door(&self, device_id: &str) -> Option<&Door> {
        self.doors.iter().find(|d| d.device_id == device_id)
    }

    /// One line for `fieldgate check`: what the file describes.
    pub fn summary(&self) -> String {
        let profiles: std::collections::BTreeSet<&str> =
            self.doors.iter().map(|d| d.profile.as_str()).collect();
        let hub = match &self.dps {
            Some(d) => format!("hub via DPS {} at {}", d.id_scope, d.global_endpoint),
            None => format!("hub {}", self.hub.hostname),
        };
        format!(
            "{}: {hub}, {} bus(es), {} door(s) using {} profile(s), metrics on {}",
            self.origin,
            self.buses.len(),
            self.doors.len(),
            profiles.len(),
            self.metrics.listen
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HubSettings {
    /// `host` or `host:port` (fieldhub on a high port).
    pub hostname: String,
    /// Extra CA certificate(s) (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// The content of `ca_file` as read (and checked) when the config was loaded: the
    /// gateway trusts what was validated, and a reload sees a changed certificate.
    pub ca_pem: Option<std::sync::Arc<[u8]>>,
    /// Validity of each SAS token the gateway signs.
    pub token_lifetime: Duration,
    /// A token is renewed this long before it expires.
    pub token_renew_margin: Duration,
    /// Pacing of new MQTT connections across all doors (IoT Hub S1: 100/s per hub).
    /// 0: no pacing.
    pub connects_per_second: u32,
    pub keep_alive: Duration,
    /// Deadline of one hub operation (a twin PATCH, a telemetry send).
    pub operation_timeout: Duration,
    /// Deadline of a whole dial: TCP, TLS, proxy CONNECT, WebSocket upgrade, CONNECT, the
    /// subscriptions and the first twin. Short, so a door whose dial started during an outage
    /// tries again within seconds of the path coming back.
    pub dial_timeout: Duration,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// MQTT on 8883, MQTT over WebSockets on 443, or the first with a fallback to the second.
    pub transport: HubTransport,
    /// Port of the WebSocket transport (443 on IoT Hub; fieldhub's HTTPS port locally).
    pub websocket_port: u16,
    /// HTTP proxy for the WebSocket transport, from the config (the environment's
    /// `HTTPS_PROXY`/`NO_PROXY` are read by the gateway when this is absent).
    pub proxy: Option<crate::link::ProxyConfig>,
}

impl HubSettings {
    /// `[hub]` holding only `hostname`: every other value is its documented default (the
    /// same constants the config resolver uses).
    pub fn with_defaults(hostname: impl Into<String>) -> Self {
        use super::resolve::*;
        HubSettings {
            hostname: hostname.into(),
            ca_file: None,
            ca_pem: None,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            token_renew_margin: DEFAULT_TOKEN_RENEW_MARGIN,
            connects_per_second: DEFAULT_CONNECTS_PER_SECOND,
            keep_alive: DEFAULT_KEEP_ALIVE,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            reconnect_backoff_min: DEFAULT_RECONNECT_MIN,
            reconnect_backoff_max: DEFAULT_RECONNECT_MAX,
            transport: HubTransport::Mqtt,
            websocket_port: DEFAULT_WEBSOCKET_PORT,
            proxy: None,
        }
    }
}

/// How the door links reach the hub (see `link::transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubTransport {
    /// MQTT over TLS, port 8883 (or the hostname's port).
    Mqtt,
    /// MQTT over WebSockets over TLS, `websocket_port` (443).
    WebSocket,
    /// 8883 first; 443 for the whole gateway when 8883 cannot be reached.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

/// `[events]`: the durable store of state-change events (see `crate::events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSettings {
    /// Directory of the store file (`events.redb`); absolute.
    pub dir: PathBuf,
    /// Bound on the events kept (keys and bodies); the oldest are dropped beyond it.
    pub max_bytes: u64,
    /// Events older than this are dropped unsent.
    pub max_age: Duration,
    /// New events are written to disk together, at most this long after the first of a batch.
    pub commit_interval: Duration,
    /// Events published per second by the whole gateway (live and backlog alike).
    pub send_rate: u32,
}

/// Where a door's key came from (for messages and provisioning; the key is in `Door::key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Inline,
    /// Absolute path (resolved against the config file's directory).
    File(PathBuf),
    /// Derived from the hub's group key: HMAC-SHA256(group key, device id), base64.
    Group,
    /// X.509: a certificate (CN = device id) and its private key; `Door::key` is empty.
    Certificate {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// One door controller: a Modbus unit on a bus, presented as one IoT Hub device.
/// The profile's maps with the door's overrides already merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct Door {
    pub device_id: String,
    pub bus: String,
    pub unit: u8,
    pub profile: String,
    pub key: Secret,
    pub key_source: KeySource,
    /// Twin tags (for provisioning and queries such as `tags.building = '43'`).
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub poll_interval: Duration,
    /// The profile's Plug and Play model id, announced at CONNECT and in the DPS payload.
    pub model_id: Option<String>,
    /// A door without overrides shares its profile's maps (a thousand doors of one model
    /// hold one copy: ~4 KB a door otherwise).
    pub methods: Arc<BTreeMap<String, Method>>,
    pub desired: Arc<BTreeMap<String, DesiredPoint>>,
    pub reported: Arc<BTreeMap<String, ReportedPoint>>,
}

/// Where a written value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSource {
    /// Always this value (already checked to encode).
    Fixed(serde_json::Value),
    /// This member of the method's JSON payload (`{"mode": "lockdown"}`).
    Payload(String),
}

/// A direct method of a profile: what it does, and how long the gateway may take for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    pub action: MethodAction,
    /// Counted from the request's arrival at the gateway. A request still waiting at its
    /// deadline is answered 504 unwritten, and a write starts only if it and its read-back fit
    /// before it. Default [`DEFAULT_METHOD_TIMEOUT`](crate::config::DEFAULT_METHOD_TIMEOUT).
    pub timeout: Duration,
}

/// What a direct method does on the bus. Every write is read back by the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodAction {
    WriteCoil {
        address: u16,
        value: ValueSource,
    },
    WriteRegister {
        address: u16,
        spec: ValueSpec,
        value: ValueSource,
    },
    /// Write `value` to the coil, hold it, then write `!value` back (e.g. unlock for 5 s).
    PulseCoil {
        address: u16,
        value: bool,
        /// Payload member with the duration in seconds; without it, always `default`.
        seconds_from: Option<String>,
        default: Duration,
        /// Longest duration a payload may ask for.
        max: Duration,
    },
}

/// Writable Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WriteTable {
    Coil,
    Holding,
}

/// Readable Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadTable {
    Coil,
    DiscreteInput,
    Holding,
    Input,
}

impl fmt::Display for ReadTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadTable::Coil => "coil",
            ReadTable::DiscreteInput => "discrete input",
            ReadTable::Holding => "holding register",
            ReadTable::Input => "input register",
        })
    }
}

impl From<WriteTable> for ReadTable {
    fn from(t: WriteTable) -> Self {
        match t {
            WriteTable::Coil => ReadTable::Coil,
            WriteTable::Holding => ReadTable::Holding,
        }
    }
}

/// A desired property written to the device. Coils carry `ValueSpec::bool()`.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPoint {
    pub table: WriteTable,
    pub address: u16,
    pub spec: ValueSpec,
}

/// A reported property polled from the device.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedPoint {
    pub table: ReadTable,
    pub address: u16,
    pub spec: ValueSpec,
    /// Numbers are reported again only after moving by more than this (0: any change).
    pub deadband: f64,
    /// Changes are also sent as a telemetry event.
    pub telemetry: bool,
}

impl MethodAction {
    /// How the written value is encoded (coils: `ValueSpec::bool()`).
    pub fn spec(&self) -> ValueSpec {
        match self {
            MethodAction::WriteRegister { spec, .. } => spec.clone(),
            MethodAction::WriteCoil { .. } | MethodAction::PulseCoil { .. } => ValueSpec::bool(),
        }
    }

    /// The table and first address this action writes.
    pub fn target(&self) -> (WriteTable, u16) {
        match self {
            MethodAction::WriteCoil { address, .. } | MethodAction::PulseCoil { address, .. } => {
                (WriteTable::Coil, *address)
            }
            MethodAction::WriteRegister { address, .. } => (WriteTable::Holding, *address),
        }
    }
}
