//! Starting and stopping a hub: on-disk setup in `DATA_DIR` (CA, policies, database,
//! `service.connstr`), both listeners, the job engine, and an orderly shutdown that waits for
//! every task before the database is closed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::jobs::{HubJobs, HubOps, JobEngine, JobLimits, RedbJobStore};
use crate::store::Store;
use crate::throttle::{Throttle, ThrottleProfile};

/// How long shutdown waits for connections and handlers to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub data_dir: PathBuf,
    /// Name in SAS `sr`, MQTT usernames and the server certificate.
    pub hostname: String,
    pub mqtt_addr: SocketAddr,
    pub https_addr: SocketAddr,
    /// Job device operations (method calls, twin updates) per second across all jobs;
    /// `None` = unthrottled. Default 10 (an S1 unit).
    pub job_ops_per_second: Option<f64>,
    /// Jobs that may be queued, scheduled or running at once; one more is refused with 429
    /// 429004. Default 1 (S1).
    pub max_active_jobs: usize,
    /// How long finished jobs are kept. Default 30 days, as the hub does.
    pub job_retention: Duration,
    /// Operation throttles (429 ThrottlingException beyond a quota); `None`, the default,
    /// leaves the hub unthrottled.
    pub throttle: Option<ThrottleProfile>,
}

impl HubConfig {
    /// Ephemeral ports on 127.0.0.1, hostname `localhost`, S1 job limits.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let limits = JobLimits::default();
        HubConfig {
            data_dir: data_dir.into(),
            hostname: "localhost".to_string(),
            mqtt_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            https_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            job_ops_per_second: limits.device_ops_per_second,
            max_active_jobs: limits.max_active_jobs,
            job_retention: limits.retention,
            throttle: None,
        }
    }

    /// Lifts the pacing of job device operations (benchmarks, large tests).
    pub fn unthrottled(mut self) -> Self {
        self.job_ops_per_second = None;
        self
    }

    /// The job engine's limits; a rate of 0 (or not finite) means unthrottled.
    pub fn job_limits(&self) -> JobLimits {
        JobLimits {
            device_ops_per_second: self
                .job_ops_per_second
                .filter(|r| r.is_finite() && *r > 0.0),
            max_active_jobs: self.max_active_jobs,
            retention: self.job_retention,
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
    /// The provisioning service's ID scope (also written to `DATA_DIR/dps.idscope`); its
    /// devices register on the MQTT listener (see [`crate::dps`]).
    pub dps_id_scope: String,
    pub hub: Hub,
    /// The jobs v2 engine (what `/jobs/v2/...` and `devices.jobs` queries use).
    pub jobs: HubJobs,
    shutdown: CancellationToken,
    /// Stops the job engine first, while devices are still connected, so operations in
    /// flight finish and their outcomes are recorded (rather than found unknown after a
    /// restart).
    jobs_stop: CancellationToken,
    jobs_task: tokio::task::JoinHandle<()>,
    tracker: TaskTracker,
}

/// Sets up `DATA_DIR`, binds both listeners and starts serving. Returns once both accept.
pub async fn start(cfg: HubConfig) -> anyhow::Result<RunningHub> {
    crate::files::create_private_dir(&cfg.data_dir)
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
    let throttle = cfg.throttle.map(|p| Arc::new(Throttle::new(p)));
    let hub = Hub::open(
        cfg.hostname.clone(),
        mqtt_addr,
        https_addr,
        store,
        shutdown.clone(),
        throttle.clone(),
    )?;
    let service_connection_string = hub
        .policy_connection_string("iothubowner")
        .context("policy iothubowner is missing from the database")?;
    let connstr_path = cfg.data_dir.join("service.connstr");
    crate::files::write_private(
        &connstr_path,
        format!("{service_connection_string}\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", connstr_path.display()))?;

    let dps_id_scope = hub.dps_id_scope();
    let scope_path = cfg.data_dir.join("dps.idscope");
    std::fs::write(&scope_path, format!("{dps_id_scope}\n"))
        .with_context(|| format!("writing {}", scope_path.display()))?;

    let tracker = TaskTracker::new();
    let job_store = RedbJobStore::open(hub.clone())?;
    let jobs = JobEngine::new(
        Arc::new(HubOps::new(hub.clone())),
        job_store,
        cfg.job_limits(),
    );
    let resumed = jobs.resume().context("loading stored jobs")?;
    // The engine has its own stop token: shutdown stops it (and lets its operations in flight
    // finish) before the device connections close, then waits for it before the database
    // closes, so its last writes land.
    let engine = jobs.clone();
    let jobs_stop = shutdown.child_token();
    let stop = jobs_stop.clone();
    let jobs_task = tokio::spawn(async move { engine.run(stop).await });
    tracker.spawn(crate::mqtt::serve(
        mqtt,
        TlsAcceptor::from(tls.mqtt_config.clone()),
        hub.clone(),
        throttle.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    let listener = crate::rest::TlsListener::spawn(
        https,
        TlsAcceptor::from(tls.https_config.clone()),
        shutdown.clone(),
    )?;
    let app = crate::rest::router_with(hub.clone(), jobs.clone(), throttle);
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTPS server failed");
        }
    });
    tracing::info!(%mqtt_addr, %https_addr, hostname = %cfg.hostname, jobs = resumed, dps_id_scope = %dps_id_scope, "fieldhub listening");
    Ok(RunningHub {
        mqtt_addr,
        https_addr,
        hostname: cfg.hostname,
        ca_pem: tls.ca_pem,
        ca_path: cfg.data_dir.join("ca.pem"),
        service_connection_string,
        dps_id_scope,
        hub,
        jobs,
        shutdown,
        jobs_stop,
        jobs_task,
        tracker,
    })
}

impl RunningHub {
    /// Stops accepting, closes every device connection, waits (bounded) for the tasks, and
    /// closes the database so the data directory can be opened again.
    pub async fn shutdown(self) {
        self.jobs_stop.cancel();
        let mut jobs_task = self.jobs_task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut jobs_task)
            .await
            .is_err()
        {
            // Stopped mid-operation, those devices stay `running` in the store; a restart
            // fails them as outcome unknown rather than calling them a second time.
            jobs_task.abort();
            let _ = jobs_task.await;
            tracing::warn!(
                "job operations still in flight at shutdown: their outcomes will show as unknown"
            );
        }
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
