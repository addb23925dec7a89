//! The hub's shared state and its `Clone` handle [`Hub`]: registry, twins, live device links,
//! MQTT sessions, telemetry buffers and pending method calls. REST handlers, MQTT connection
//! tasks, jobs and tests all go through this handle. State sits behind one `std` mutex that
//! is never held across an `.await`; the database is written inside it so that the store and
//! the in-memory view change in the same order.

mod devices;
pub(crate) mod links;
mod methods;
mod sessions;

pub use devices::{if_match_ok, DeviceUpdate};
pub use links::{Sub, TelemetryMessage, TELEMETRY_BYTES};
pub use methods::MethodResponse;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Permission, Policy};
use crate::error::HubError;
use crate::registry::DeviceIdentity;
use crate::store::Store;
use crate::throttle::{Operation, Throttle};
use crate::twin::TwinDoc;

const CA_CERTIFICATES: redb::TableDefinition<'static, &str, &[u8]> =
    redb::TableDefinition::new("ca_certificates");

fn pem_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// What the store keeps per device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub identity: DeviceIdentity,
    pub twin: TwinDoc,
    /// The IoT Plug and Play model the device last announced (twin `modelId`), empty if none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_id: String,
}

#[derive(Debug)]
pub(crate) struct Device {
    pub rec: DeviceRecord,
    pub last_activity: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub devices: BTreeMap<String, Device>,
    pub links: HashMap<String, links::Link>,
    pub sessions: HashMap<String, sessions::MqttSession>,
    pub telemetry: HashMap<String, VecDeque<TelemetryMessage>>,
    /// The device of every kept telemetry message, oldest first (which to drop when full).
    pub telemetry_order: VecDeque<String>,
    pub telemetry_bytes: usize,
    pub pending: HashMap<String, methods::Pending>,
    pub next_id: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub hostname: String,
    pub mqtt_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub store: Store,
    pub policies: Vec<Policy>,
    pub state: Mutex<State>,
    /// Signalled whenever a link or subscription changes (method calls waiting for a device).
    pub link_changes: Notify,
    pub telemetry_tx: broadcast::Sender<TelemetryMessage>,
    pub shutdown: CancellationToken,
    /// The provisioning service's state; its own lock, never taken while `state` is held.
    pub dps: Mutex<crate::dps::DpsState>,
    /// CA certificates (DER) that `certificateAuthority` devices' chains may end at.
    pub cas: Mutex<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// The operation throttles (`None`: unthrottled), shared by the REST and MQTT endpoints:
    /// IoT Hub's twin quotas count device-side and service-side operations alike.
    pub throttle: Option<Arc<Throttle>>,
}

/// Cheap `Clone` handle on the hub state.
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

/// Current UTC time in the hub's timestamp format.
pub(crate) fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Hub {
    /// Builds the hub over an opened store: loads devices, sessions and policies (creating the
    /// default policies on first start).
    pub(crate) fn open(
        hostname: String,
        mqtt_addr: SocketAddr,
        https_addr: SocketAddr,
        store: Store,
        shutdown: CancellationToken,
        throttle: Option<Arc<Throttle>>,
    ) -> Result<Hub, HubError> {
        let mut policies: Vec<Policy> = store
            .load::<Policy>(crate::store::POLICIES)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if policies.is_empty() {
            policies = auth::default_policies();
            for p in &policies {
                store.put(crate::store::POLICIES, &p.name, Some(p), true)?;
            }
        }
        let mut state = State::default();
        for (id, rec) in store.load::<DeviceRecord>(crate::store::DEVICES)? {
            state.devices.insert(
                id,
                Device {
                    rec,
                    last_activity: None,
                },
            );
        }
        for (id, stored) in store.load::<sessions::StoredSession>(crate::store::SESSIONS)? {
            let session = stored.into_session(&id);
            state.sessions.insert(id, session);
        }
        let (telemetry_tx, _) = broadcast::channel(1024);
        let dps = crate::dps::load(&store)?;
        let mut cas: Vec<_> = store
            .load::<String>(CA_CERTIFICATES)?
            .into_iter()
            .flat_map(|(_, pem)| pem_certs(&pem))
            .collect();
        cas.extend(dps.group_cas());
        let (dps, cas) = (Mutex::new(dps), Mutex::new(cas));
        Ok(Hub {
            inner: Arc::new(Inner {
                hostname,
                mqtt_addr,
                https_addr,
                store,
                policies,
                state: Mutex::new(state),
                link_changes: Notify::new(),
                telemetry_tx,
                shutdown,
                dps,
                cas,
                throttle,
            }),
        })
    }

    /// A hub over the database in `data_dir` with no listeners, for in-process drivers that
    /// feed connections to [`crate::mqtt::serve_stream`] themselves (fuzzing, socket-free
    /// tests). Addresses read as `0.0.0.0:0`.
    pub fn open_offline(data_dir: &std::path::Path, hostname: &str) -> Result<Hub, HubError> {
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        let store = Store::open(data_dir)?;
        Hub::open(
            hostname.to_string(),
            none,
            none,
            store,
            CancellationToken::new(),
            None,
        )
    }

    /// Takes one `op` from the hub's operation throttles; refused with 429001
    /// `ThrottlingException` beyond the quota. Always admitted on an unthrottled hub.
    pub(crate) fn admit(&self, op: Operation) -> Result<(), HubError> {
        match &self.inner.throttle {
            Some(t) => t
                .admit(op, 1.0)
                .map_err(|e| HubError::Throttled(e.to_string())),
            None => Ok(()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for a dev hub.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.inner.mqtt_addr
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.inner.https_addr
    }

    /// The store, for modules that keep their own tables (jobs).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn policies(&self) -> &[Policy] {
        &self.inner.policies
    }

    /// `HostName` for connection strings: the hostname plus `:port` unless the port is 443.
    pub fn service_host(&self) -> String {
        match self.inner.https_addr.port() {
            443 => self.inner.hostname.clone(),
            p => format!("{}:{p}", self.inner.hostname),
        }
    }

    /// Connection string of a shared access policy (e.g. `iothubowner`).
    pub fn policy_connection_string(&self, policy: &str) -> Option<String> {
        let p = self.inner.policies.iter().find(|p| p.name == policy)?;
        Some(format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.service_host(),
            p.name,
            p.primary_key
        ))
    }

    /// Checks a REST `Authorization` header value for one of `needed` permissions.
    pub fn authorize_service(
        &self,
        authorization: Option<&str>,
        needed: &[Permission],
    ) -> Result<(), HubError> {
        let token = authorization
            .ok_or_else(|| HubError::Unauthorized("missing Authorization header".into()))?;
        auth::verify_service_token(
            token,
            &self.inner.hostname,
            needed,
            &self.inner.policies,
            unix_now(),
        )
        .map_err(|e| HubError::Unauthorized(e.to_string()))
    }

    fn persist(&self, id: &str, rec: Option<&DeviceRecord>, durable: bool) -> Result<(), HubError> {
        self.inner
            .store
            .put(crate::store::DEVICES, id, rec, durable)
            .map_err(HubError::from)
    }

    /// Registers a CA (PEM) that `certificateAuthority` devices' certificate chains may end at
    /// (on IoT Hub: a verified CA certificate, uploaded through the portal or ARM).
    pub fn add_ca_certificate(&self, name: &str, pem: &str) -> Result<(), HubError> {
        let certs = pem_certs(pem);
        if certs.is_empty() {
            return Err(HubError::ArgumentInvalid(format!(
                "CA certificate '{name}' holds no PEM certificate"
            )));
        }
        self.inner
            .store
            .put(CA_CERTIFICATES, name, Some(&pem.to_string()), true)?;
        self.inner
            .cas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(certs);
        Ok(())
    }

    /// Trusts `ca` for `certificateAuthority` devices unless it already is (what linking a DPS
    /// X.509 group's CA to the hub amounts to). In memory: the enrollment keeps it.
    pub(crate) fn trust_ca(&self, ca: &rustls::pki_types::CertificateDer<'static>) {
        let mut cas = self.inner.cas.lock().unwrap_or_else(|p| p.into_inner());
        if !cas.contains(ca) {
            cas.push(ca.clone());
        }
    }

    /// Closes the database; later writes fail with a storage error.
    pub(crate) fn close_store(&self) {
        if let Err(e) = self.inner.store.close() {
            tracing::warn!(error = %e, "closing the database");
        }
    }
}
