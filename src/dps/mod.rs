//! Device Provisioning Service registration for the doors (`[dps]`): each door registers with
//! its own (group-derived) key, learns its hub and device id, and connects there.
//!
//! The door's link task calls [`Provisioner::assignment`] before each connection attempt, so
//! a registration is paced and retried with the link's own backoff, never holds back another
//! door, and never delays readiness. Assignments are cached on disk ([`cache`]); a door whose
//! hub refuses the cached identity ([`Provisioner::forget`]) registers again on its next
//! attempt. Registration uses the hub link's transport (MQTT on 8883, or WebSockets on 443
//! through the same proxy) and CA settings.

pub mod cache;
pub mod register;

use std::sync::Arc;

use serde_json::Value;

use crate::config::DpsSettings;
use crate::link::transport::Chosen;
use crate::link::{ConnectPacer, ProxyConfig};
use crate::metrics::Metrics;

pub use cache::AssignmentCache;
pub use register::{Assignment, Credential, DpsError};

/// Registers doors and remembers where they were assigned. One per gateway, shared.
pub struct Provisioner {
    endpoint: register::Endpoint,
    cache: AssignmentCache,
    pacer: ConnectPacer,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("id_scope", &self.endpoint.id_scope)
            .field("endpoint", &self.endpoint.host_name)
            .field("port", &self.endpoint.port)
            .finish_non_exhaustive()
    }
}

/// What the hub link settings contribute to registration.
#[derive(Debug, Clone)]
pub struct LinkParts {
    pub extra_ca_pem: Option<std::sync::Arc<[u8]>>,
    pub websocket_port: u16,
    pub proxy: Option<ProxyConfig>,
    pub operation_timeout: std::time::Duration,
    pub keep_alive: std::time::Duration,
}

impl Provisioner {
    pub fn new(
        settings: &DpsSettings,
        link: LinkParts,
        metrics: Arc<Metrics>,
    ) -> Result<Provisioner, crate::link::LinkError> {
        let (host_name, port) = crate::link::auth::split_host(&settings.global_endpoint);
        let tls = crate::link::tls::client_config(link.extra_ca_pem.as_deref())?;
        let rate = settings.registrations_per_second;
        Ok(Provisioner {
            endpoint: register::Endpoint {
                id_scope: settings.id_scope.clone(),
                host_name: host_name.to_string(),
                port,
                tls,
                websocket_port: link.websocket_port,
                proxy: link.proxy,
                // CONNECT, SUBSCRIBE, the request and a few polls at the service's pace.
                timeout: link.operation_timeout * 2,
                keep_alive: link.keep_alive,
            },
            cache: AssignmentCache::open(&settings.cache),
            pacer: match rate {
                0 => ConnectPacer::unpaced(),
                n => ConnectPacer::new(Some(f64::from(n)), n),
            },
            metrics,
        })
    }

    /// The door's assignment: from the cache, else from a (paced) registration. The
    /// assigned device id must be the door's: the gateway addresses doors by it.
    pub async fn assignment(
        &self,
        registration_id: &str,
        credential: Credential<'_>,
        payload: Option<&Value>,
        transport: Chosen,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Assignment, DpsError> {
        if let Some(a) = self.cache.get(registration_id) {
            return Ok(a);
        }
        self.pacer.acquire().await;
        let r = register::register(
            &self.endpoint,
            transport,
            tls,
            registration_id,
            credential,
            payload,
        )
        .await
            .and_then(|a| {
                if a.device_id == registration_id {
                    Ok(a)
                } else {
                    Err(DpsError::Config(format!(
                        "the service assigned device id '{}' to registration '{registration_id}'; fieldgate needs them equal (a custom allocation must keep the registration id)",
                        a.device_id
                    )))
                }
            });
        let label = match &r {
            Ok(_) => "assigned",
            Err(e) => e.label(),
        };
        self.metrics
            .dps_registrations
            .with_label_values(&[label])
            .inc();
        match &r {
            Ok(a) => {
                tracing::info!(device = %registration_id, hub = %a.assigned_hub, "registered with the provisioning service");
                self.cache.put(registration_id, a.clone());
            }
            Err(e) => {
                tracing::warn!(device = %registration_id, endpoint = %self.endpoint.host_name, error = %e, "registration with the provisioning service failed");
            }
        }
        r
    }

    /// Forgets a door's assignment after its hub refused it: the next attempt registers.
    pub fn forget(&self, registration_id: &str) {
        if self.cache.forget(registration_id) {
            tracing::info!(device = %registration_id, "the hub refused the assigned identity: the door will register again");
        }
    }

    /// The cached assignment of a door, if any.
    pub fn cached(&self, registration_id: &str) -> Option<Assignment> {
        self.cache.get(registration_id)
    }
}
