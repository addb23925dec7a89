//! Starting and stopping a hub: on-disk setup in `DATA_DIR` (CA, policies, database,
//! `service.connstr`), both listeners, and an orderly shutdown that waits for every task.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::store::Store;

/// How long shutdown waits for connections and handlers to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub data_dir: PathBuf,
    /// Name in SAS `sr`, MQTT usernames and the server certificate.
    pub hostname: String,
    pub mqtt_addr: SocketAddr,
    pub https_addr: SocketAddr,
}

impl HubConfig {
    /// Ephemeral ports on 127.0.0.1, hostname `localhost`.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        HubConfig {
            data_dir: data_dir.into(),
            hostname: "localhost".to_string(),
            mqtt_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            https_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A started hub. Drop without [`RunningHub::shutdown`] leaves its tasks running until the
/// runtime ends.
#[derive(Debug)]
pub struct RunningHub {
    pub mqtt_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub hostname: String,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    /// `iothubowner` connection string (also written to `DATA_DIR/service.connstr`).
    pub service_connection_string: String,
    pub hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Sets up `DATA_DIR`, binds both listeners and starts serving. Returns once both accept.
pub async fn start(cfg: HubConfig) -> anyhow::Result<RunningHub> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let tls = crate::tls::load_or_create(&cfg.data_dir, &cfg.hostname)
        .context("setting up the hub's certificates")?;
    let store = Store::open(&cfg.data_dir)?;
    let mqtt = TcpListener::bind(cfg.mqtt_addr)
        .await
        .with_context(|| format!("binding MQTT listener {}", cfg.mqtt_addr))?;
    let https = TcpListener::bind(cfg.https_addr)
        .await
        .with_context(|| format!("binding HTTPS listener {}", cfg.https_addr))?;
    let (mqtt_addr, https_addr) = (mqtt.local_addr()?, https.local_addr()?);

    let shutdown = CancellationToken::new();
    let hub = Hub::open(
        cfg.hostname.clone(),
        mqtt_addr,
        https_addr,
        store,
        shutdown.clone(),
    )?;
    let service_connection_string = hub
        .policy_connection_string("iothubowner")
        .context("policy iothubowner is missing from the database")?;
    let connstr_path = cfg.data_dir.join("service.connstr");
    std::fs::write(&connstr_path, format!("{service_connection_string}\n"))
        .with_context(|| format!("writing {}", connstr_path.display()))?;

    let tracker = TaskTracker::new();
    tracker.spawn(crate::mqtt::serve(
        mqtt,
        TlsAcceptor::from(tls.mqtt_config.clone()),
        hub.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    let listener = crate::rest::TlsListener::spawn(
        https,
        TlsAcceptor::from(tls.https_config.clone()),
        shutdown.clone(),
    )?;
    let app = crate::rest::router(hub.clone());
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTPS server failed");
        }
    });
    tracing::info!(%mqtt_addr, %https_addr, hostname = %cfg.hostname, "fieldhub listening");
    Ok(RunningHub {
        mqtt_addr,
        https_addr,
        hostname: cfg.hostname,
        ca_pem: tls.ca_pem,
        ca_path: cfg.data_dir.join("ca.pem"),
        service_connection_string,
        hub,
        shutdown,
        tracker,
    })
}

impl RunningHub {
    /// Stops accepting, closes every device connection, waits (bounded) for the tasks, and
    /// closes the database so the data directory can be opened again.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the shutdown grace period");
        }
        self.hub.close_store();
    }

    /// A token that is cancelled when the hub shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
