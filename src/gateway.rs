//! The running gateway: one task per bus, and per door a link, a bridge and a poller, all
//! wired from a [`Config`]. [`Gateway::reload`] applies a new config by difference (doors
//! added, removed or changed; the others keep their connections), and [`serve`] is the
//! service's main loop (metrics listener, reloads, readiness told to a [`Supervisor`]);
//! signals and systemd belong to the `fieldgate` binary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bridge::{self, DoorIo};
use crate::bus::{self, BusHandle, BusOptions};
use crate::config::{Config, Door, HubSettings, HubTransport};
use crate::events::{EventStore, EventStoreTask};
use crate::http::{self, BusReadiness, Readiness};
use crate::link::{self, ConnectPacer, HubLink, LinkHandle, LinkSettings, LinkState, ProxyConfig};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `HTTPS_PROXY` (or its kin) does not hold a usable proxy URL.
    #[error("the proxy in the environment is not usable: {0}")]
    ProxyEnv(String),
    /// `[dps]` cannot be used (the CA file does not parse).
    #[error("provisioning service settings: {0}")]
    Dps(crate::link::LinkError),
}

struct BusRuntime {
    opts: BusOptions,
    handle: BusHandle,
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

struct DoorRuntime {
    door: Arc<Door>,
    link: LinkHandle,
    /// Bridge and poller; stopped first so pending methods are answered over the link.
    work_cancel: CancellationToken,
    work: Vec<JoinHandle<()>>,
    link_cancel: CancellationToken,
    link_join: JoinHandle<()>,
}

impl DoorRuntime {
    async fn stop(self) {
        self.work_cancel.cancel();
        for j in self.work {
            let _ = j.await;
        }
        self.link_cancel.cancel();
        let _ = self.link_join.await;
    }
}

/// What a reload changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: usize,
}

pub struct Gateway {
    metrics: Arc<Metrics>,
    pacer: ConnectPacer,
    /// `[hub]` as configured (a reload compares it) and what every door link shares.
    hub: HubSettings,
    hub_link: Arc<HubLink>,
    buses: BTreeMap<String, BusRuntime>,
    doors: BTreeMap<String, DoorRuntime>,
    /// The durable event store; `None` when it could not be opened (events then go out
    /// live and are counted as dropped, see `crate::events`). Its settings apply at start.
    events: Option<(EventStore, EventStoreTask)>,
    event_pacer: ConnectPacer,
    /// `[dps]` as configured (a reload compares it).
    dps_settings: Option<crate::config::DpsSettings>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("buses", &self.buses.keys().collect::<Vec<_>>())
            .field("doors", &self.doors.len())
            .finish()
    }
}

/// The proxy of the WebSocket transport: the config's, else the environment's (unless
/// `NO_PROXY` exempts the hub). MQTT on 8883 is always dialled directly: proxies carry
/// CONNECTs to 443.
fn proxy_for(hub: &HubSettings) -> Result<Option<ProxyConfig>, GatewayError> {
    if hub.proxy.is_some() {
        return Ok(hub.proxy.clone());
    }
    let (host, _) = crate::link::auth::split_host(&hub.hostname);
    match ProxyConfig::from_env(host) {
        None => Ok(None),
        Some(Err(e)) => Err(GatewayError::ProxyEnv(e)),
        Some(Ok(p)) if hub.transport == HubTransport::Mqtt => {
            tracing::info!(proxy = %p, "a proxy is set in the environment, but transport = \"mqtt\" dials 8883 directly; set transport = \"websocket\" (or \"auto\") in [hub] to go through it");
            Ok(None)
        }
        Some(Ok(p)) => Ok(Some(p)),
    }
}

/// The provisioning client of `[dps]`, registering over the hub link's transport settings.
fn provisioner_for(
    config: &Config,
    extra_ca: Option<Arc<[u8]>>,
    proxy: Option<ProxyConfig>,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<crate::dps::Provisioner>>, GatewayError> {
    let Some(d) = &config.dps else {
        return Ok(None);
    };
    let p = crate::dps::Provisioner::new(
        d,
        crate::dps::LinkParts {
            extra_ca_pem: extra_ca,
            websocket_port: config.hub.websocket_port,
            proxy,
            operation_timeout: config.hub.operation_timeout,
            keep_alive: config.hub.keep_alive,
        },
        Arc::clone(metrics),
    )
    .map_err(GatewayError::Dps)?;
    Ok(Some(Arc::new(p)))
}

/// What every door link of `config` shares: `[hub]` resolved once, with the environment's
/// proxy and the provisioning client added.
fn hub_link_for(
    config: &Config,
    event_pacer: ConnectPacer,
    metrics: &Arc<Metrics>,
) -> Result<Arc<HubLink>, GatewayError> {
    let mut link = HubLink::from_settings(&config.hub);
    link.proxy = proxy_for(&config.hub)?;
    link.event_pacer = event_pacer;
    link.dps = provisioner_for(
        config,
        link.extra_ca_pem.clone(),
        link.proxy.clone(),
        metrics,
    )?;
    Ok(Arc::new(link))
}

fn pacer_for(hub: &HubSettings) -> ConnectPacer {
    match hub.connects_per_second {
        0 => ConnectPacer::unpaced(),
        n => ConnectPacer::new(Some(f64::from(n)), n.max(1)),
    }
}

/// Time one bus transaction may take with its retries, plus the line's pause.
fn op_budget(opts: &BusOptions) -> Duration {
    opts.timeout * (opts.retries + 1) + opts.inter_request_delay * 2 + Duration::from_millis(50)
}

impl Gateway {
    /// Starts every bus and door of `config`. Returns at once; links connect in the
    /// background, paced.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Gateway, GatewayError> {
        let rate = config.events.send_rate;
        let event_pacer = ConnectPacer::new(Some(f64::from(rate)), rate);
        let hub_link = hub_link_for(config, event_pacer.clone(), &metrics)?;
        if let Some(p) = &hub_link.proxy {
            tracing::info!(proxy = %p, "the WebSocket transport goes through an HTTP proxy");
        }
        let events = match EventStore::open(&config.events, Arc::clone(&metrics)) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(error = %e, dir = %config.events.dir.display(), "event store unavailable: door events are sent live only, and counted as dropped");
                None
            }
        };
        let mut gw = Gateway {
            dps_settings: config.dps.clone(),
            events,
            event_pacer,
            pacer: pacer_for(&config.hub),
            hub: config.hub.clone(),
            hub_link,
            metrics,
            buses: BTreeMap::new(),
            doors: BTreeMap::new(),
        };
        for opts in &config.buses {
            gw.start_bus(opts.clone());
        }
        for door in &config.doors {
            gw.start_door(Arc::new(door.clone()));
        }
        tracing::info!(
            buses = gw.buses.len(),
            doors = gw.doors.len(),
            "gateway started"
        );
        Ok(gw)
    }

    fn start_bus(&mut self, opts: BusOptions) {
        let cancel = CancellationToken::new();
        let (handle, join) = bus::spawn(opts.clone(), Arc::clone(&self.metrics), cancel.clone());
        self.buses.insert(
            opts.name.clone(),
            BusRuntime {
                opts,
                handle,
                cancel,
                join,
            },
        );
    }

    fn link_settings(&self, door: &Door) -> LinkSettings {
        let mut s = LinkSettings::new(
            Arc::clone(&self.hub_link),
            door.device_id.clone(),
            door.key.clone(),
        );
        s.methods = Arc::clone(&door.methods);
        s.model_id = door.model_id.clone();
        if let crate::config::KeySource::Certificate { cert, key } = &door.key_source {
            // Checked when the config was loaded; a file changed since shows here and at the hub.
            match crate::link::tls::ClientCert::load(cert, key) {
                Ok(c) => {
                    if let Some(end) = iothub_proto::x509::not_after(&c.chain[0]) {
                        self.metrics
                            .door_certificate_expiry
                            .with_label_values(&[&door.device_id])
                            .set(end);
                    }
                    s.client_cert = Some(c);
                }
                Err(e) => {
                    tracing::error!(device = %door.device_id, error = %e, "door certificate unusable")
                }
            }
        }
        if self.hub_link.dps.is_some() {
            // Custom data for a custom allocation policy (Microsoft Learn, "How to transfer a
            // payload between a device and DPS"); `modelId` is the Plug and Play convention.
            let mut payload = serde_json::Map::new();
            if let Some(m) = &door.model_id {
                payload.insert("modelId".into(), m.clone().into());
            }
            if !door.tags.is_empty() {
                payload.insert("tags".into(), door.tags.clone().into());
            }
            s.dps_payload = (!payload.is_empty()).then_some(serde_json::Value::Object(payload));
        }
        s
    }

    fn start_door(&mut self, door: Arc<Door>) {
        let Some(bus) = self.buses.get(&door.bus) else {
            // Config validation guarantees the bus exists; keep the others running if not.
            tracing::error!(device = %door.device_id, bus = %door.bus, "door names an unknown bus");
            return;
        };
        bus.handle.doors().add(door.unit, &door.device_id);
        let link_cancel = CancellationToken::new();
        let stored = self.events.as_ref().map(|(e, _)| e.door(&door.device_id));
        let mut settings = self.link_settings(&door);
        settings.events = stored.clone();
        let (link, events, link_join) = link::spawn(
            settings,
            self.pacer.clone(),
            Arc::clone(&self.metrics),
            link_cancel.clone(),
        );
        let io = DoorIo {
            bus: bus.handle.clone(),
            link: link.clone(),
            metrics: Arc::clone(&self.metrics),
            op_budget: op_budget(&bus.opts),
        };
        let work_cancel = CancellationToken::new();
        let work = vec![
            tokio::spawn(bridge::run(
                Arc::clone(&door),
                io.clone(),
                events,
                work_cancel.clone(),
            )),
            tokio::spawn(bridge::poll::run(
                Arc::clone(&door),
                io,
                bus.opts.read_gap,
                stored,
                work_cancel.clone(),
            )),
        ];
        self.doors.insert(
            door.device_id.clone(),
            DoorRuntime {
                door,
                link,
                work_cancel,
                work,
                link_cancel,
                link_join,
            },
        );
    }

    /// The link of a door, for tests and health output.
    pub fn link(&self, device_id: &str) -> Option<&LinkHandle> {
        self.doors.get(device_id).map(|d| &d.link)
    }

    /// Door links that have made their first connection attempt.
    pub fn links_attempted(&self) -> usize {
        self.doors
            .values()
            .filter(|d| !matches!(d.link.state(), LinkState::Connecting { attempt: 1 }))
            .count()
    }

    pub fn readiness(&self) -> Readiness {
        // Asked every second over every door: one pass that copies nothing for a connected
        // door (the usual case) — collecting and cloning every door's state each second was
        // 2 % of the gateway's CPU at 1,000 doors (benchmark workload 8). Doors per bus come
        // from each bus's own list, not from comparing every door's bus name.
        let mut down: Vec<&str> = Vec::new();
        let mut links_attempted = true;
        for (id, d) in &self.doors {
            if d.link.is_connected() {
                continue;
            }
            down.push(id.as_str());
            if matches!(d.link.state(), LinkState::Connecting { attempt: 1 }) {
                links_attempted = false;
            }
        }
        let buses: Vec<BusReadiness> = self
            .buses
            .iter()
            .map(|(name, b)| {
                let s = b.handle.status();
                BusReadiness {
                    name: name.clone(),
                    transport: b.opts.transport.to_string(),
                    state: match (s.attempted, s.up) {
                        (_, true) => "up",
                        (true, false) => "down",
                        (false, false) => "starting",
                    },
                    error: (!s.up).then_some(s.error).flatten(),
                    doors: b.handle.doors().count(),
                }
            })
            .collect();
        Readiness {
            buses_started: buses.iter().all(|b| b.state != "starting"),
            links_attempted,
            degraded: !down.is_empty() || buses.iter().any(|b| b.state != "up"),
            doors: self.doors.len(),
            doors_connected: self.doors.len() - down.len(),
            doors_down: down
                .iter()
                .take(Readiness::LISTED)
                .map(|s| s.to_string())
                .collect(),
            buses,
        }
    }

    /// Applies a new config: doors whose settings (or bus, or the hub settings) changed are
    /// restarted, new ones started, removed ones stopped; the others are not touched.
    pub async fn reload(&mut self, config: &Config) -> Result<ReloadSummary, GatewayError> {
        // Registration settings change where every door connects: like the hub's, they
        // restart every door (which re-reads the assignment cache). Built before anything
        // stops, so a config that cannot be applied leaves every door running.
        let hub_changed = config.hub != self.hub || config.dps != self.dps_settings;
        let new_link = if hub_changed {
            Some(hub_link_for(
                config,
                self.event_pacer.clone(),
                &self.metrics,
            )?)
        } else {
            None
        };
        let mut summary = ReloadSummary::default();
        let new_buses: BTreeMap<&str, &BusOptions> =
            config.buses.iter().map(|b| (b.name.as_str(), b)).collect();
        let changed_buses: Vec<String> = self
            .buses
            .iter()
            .filter(|(name, b)| new_buses.get(name.as_str()) != Some(&&b.opts))
            .map(|(name, _)| name.clone())
            .collect();
        let new_doors: BTreeMap<&str, &Door> = config
            .doors
            .iter()
            .map(|d| (d.device_id.as_str(), d))
            .collect();
        // Stop doors that are gone, changed, or on a bus that changes.
        let to_stop: Vec<String> = self
            .doors
            .iter()
            .filter(|(id, rt)| {
                hub_changed
                    || changed_buses.contains(&rt.door.bus)
                    || new_doors.get(id.as_str()) != Some(&rt.door.as_ref())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &to_stop {
            if let Some(rt) = self.doors.remove(id) {
                if let Some(b) = self.buses.get(&rt.door.bus) {
                    b.handle.doors().remove(rt.door.unit, &rt.door.device_id);
                }
                rt.stop().await;
            }
            if new_doors.contains_key(id.as_str()) {
                summary.restarted.push(id.clone());
            } else {
                summary.removed.push(id.clone());
            }
        }
        for name in &changed_buses {
            if let Some(b) = self.buses.remove(name) {
                b.cancel.cancel();
                let _ = b.join.await;
            }
        }
        self.hub = config.hub.clone();
        if let Some(link) = new_link {
            self.pacer = pacer_for(&config.hub);
            self.hub_link = link;
            self.dps_settings = config.dps.clone();
        }
        for opts in &config.buses {
            if !self.buses.contains_key(&opts.name) {
                self.start_bus(opts.clone());
            }
        }
        for door in &config.doors {
            if !self.doors.contains_key(&door.device_id) {
                if !summary.restarted.contains(&door.device_id) {
                    summary.added.push(door.device_id.clone());
                }
                self.start_door(Arc::new(door.clone()));
            } else {
                summary.unchanged += 1;
            }
        }
        Ok(summary)
    }

    /// Stops everything: bridges first (pending methods answered, pulses restored), then
    /// links (clean DISCONNECT), then buses (after the transaction in flight).
    pub async fn shutdown(mut self) {
        let doors = std::mem::take(&mut self.doors);
        futures::future::join_all(doors.into_values().map(DoorRuntime::stop)).await;
        for (_, b) in std::mem::take(&mut self.buses) {
            b.cancel.cancel();
            let _ = b.join.await;
        }
        // Last: the pollers' final events are committed before the file closes.
        if let Some((_, task)) = self.events.take() {
            task.stop().await;
        }
    }

    /// The event store, when it is open (tests and tools).
    pub fn event_store(&self) -> Option<&EventStore> {
        self.events.as_ref().map(|(e, _)| e)
    }
}

/// How much more start time each step of progress asks systemd for (`EXTEND_TIMEOUT_USEC`).
const START_EXTENSION: Duration = Duration::from_secs(30);

/// One line naming what is down, for the log when it changes; `None` when nothing is.
fn degraded_summary(r: &Readiness) -> Option<String> {
    let mut parts: Vec<String> = r
        .buses
        .iter()
        .filter(|b| b.state == "down")
        .map(|b| {
            format!(
                "bus {} ({}) down{}; its {} door(s) answer 503",
                b.name,
                b.transport,
                b.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                b.doors
            )
        })
        .collect();
    let links_down = r.doors - r.doors_connected;
    if links_down > 0 && r.links_attempted {
        let listed = r.doors_down.iter().take(5).cloned().collect::<Vec<_>>();
        let more = links_down.saturating_sub(listed.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        parts.push(format!(
            "{links_down} door link(s) not connected: {}{more}",
            listed.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// What the service tells the process that supervises it: systemd's notify protocol in the
/// `fieldgate` binary, a list in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Every bus started and every door's link attempted (see [`Readiness::ready`]).
    Ready,
    /// Still starting, and progressing: links are being attempted at the configured pace.
    ExtendStart(Duration),
    /// A new config was applied or refused; the service is serving again either way.
    Reloaded,
    /// The service loop is alive (a watchdog's keep-alive).
    Alive,
    /// Shutting down: doors are being stopped.
    Stopping,
}

/// Who hears the [`Notice`]s.
pub trait Supervisor: Send + Sync {
    fn notify(&self, notice: Notice);
    /// How often the supervisor must hear [`Notice::Alive`]; `None` when it does not watch.
    fn watchdog(&self) -> Option<Duration> {
        None
    }
}

/// A reload the service is asked to apply: a config already loaded and validated by the
/// caller (the binary reads the file on SIGHUP and reports its errors itself).
pub type ReloadRequests = mpsc::Receiver<Config>;

/// The service's main loop: runs the gateway of `config` and serves metrics and health on
/// `listener` until `shutdown` completes, applies each config from `reloads` by difference
/// (a config the gateway cannot apply is refused and the running one kept), and tells
/// `supervisor` when it is ready, alive, reloaded and stopping.
///
/// Everything the process owns comes in from outside — the loaded config, the bound
/// socket (systemd may hand one over), signals (as `shutdown` and `reloads`) and the
/// supervisor protocol — so a test can run the whole service in-process.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut reloads: ReloadRequests,
    shutdown: impl std::future::Future<Output = ()>,
    supervisor: &dyn Supervisor,
) -> Result<(), GatewayError> {
    let metrics_addr = listener.local_addr().ok();
    let metrics_listen = config.metrics.listen;
    let (ready_tx, ready_rx) = watch::channel(Readiness::default());
    let http = http::HttpServer::spawn(listener, Arc::clone(&metrics), ready_rx);
    let mut gw = Gateway::start(&config, Arc::clone(&metrics))?;
    // The gateway holds its own copy of every door; this one would stay for the process's
    // life (a few KB per door).
    drop(config);
    if let Some(addr) = metrics_addr {
        tracing::info!(metrics = %format!("http://{addr}/metrics"), "fieldgate running");
    }

    let tick_every = supervisor.watchdog().map_or(Duration::from_secs(1), |w| {
        (w / 2).min(Duration::from_secs(1))
    });
    let mut tick = tokio::time::interval(tick_every);
    let mut notified_ready = false;
    let mut degraded_seen: Option<String> = None;
    let mut attempted_before = 0usize;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(new) = reloads.recv() => {
                match gw.reload(&new).await {
                    Ok(s) => {
                        if new.metrics.listen != metrics_listen {
                            // The listener belongs to the process (systemd may hand it over):
                            // a new address takes a restart; say so instead of ignoring it.
                            tracing::warn!(configured = %new.metrics.listen, serving = %metrics_listen, "[metrics] listen changed: it takes effect at the next restart (systemctl restart fieldgate); metrics stay on the old address until then");
                        }
                        tracing::info!(added = ?s.added, removed = ?s.removed, restarted = ?s.restarted, unchanged = s.unchanged, "config reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "config reload refused; the running config is kept"),
                }
                supervisor.notify(Notice::Reloaded);
            }
            _ = tick.tick() => {
                let r = gw.readiness();
                if r.ready() && !notified_ready {
                    notified_ready = true;
                    supervisor.notify(Notice::Ready);
                    tracing::info!(doors = r.doors, connected = r.doors_connected, degraded = r.degraded, "ready");
                } else if !notified_ready {
                    // A thousand doors paced at 10 connections/s take 100 s to attempt: while
                    // links keep being attempted, ask for more start time.
                    let attempted = gw.links_attempted();
                    if attempted > attempted_before {
                        attempted_before = attempted;
                        supervisor.notify(Notice::ExtendStart(START_EXTENSION));
                    }
                }
                let what = degraded_summary(&r);
                if what != degraded_seen {
                    match &what {
                        Some(w) => tracing::warn!(what = %w, "degraded: serving the rest"),
                        None if degraded_seen.is_some() => tracing::info!("no longer degraded"),
                        None => {}
                    }
                    degraded_seen = what;
                }
                metrics.ready.with_label_values(&[] as &[&str]).set(i64::from(r.ready()));
                metrics.degraded.with_label_values(&[] as &[&str]).set(i64::from(r.degraded));
                ready_tx.send_replace(r);
                supervisor.notify(Notice::Alive);
            }
        }
    }
    tracing::info!("stopping");
    supervisor.notify(Notice::Stopping);
    gw.shutdown().await;
    http.stop().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Notice>>);

    impl Supervisor for Recorder {
        fn notify(&self, notice: Notice) {
            if notice != Notice::Alive {
                self.0.lock().unwrap().push(notice);
            }
        }
    }

    impl Recorder {
        fn seen(&self) -> Vec<Notice> {
            self.0.lock().unwrap().clone()
        }
    }

    async fn readyz(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn until(what: &str, mut pred: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !pred() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"));
    }

    /// The library seam: the whole service in-process, with its socket, reloads, shutdown
    /// and supervisor handed in — no signals, no systemd.
    #[tokio::test]
    async fn serve_runs_reloads_and_stops_on_what_it_is_handed() {
        let dir = tempfile::tempdir().unwrap();
        let base = format!(
            "[hub]\nhostname = \"hub.invalid\"\nconnects_per_second = 0\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"{}\"\n",
            dir.path().join("state").display()
        );
        let config = crate::config::parse(&base, "first.toml").unwrap();
        let with_door = format!(
            "{base}\n[[bus]]\nname = \"b\"\ntcp = \"127.0.0.1:9\"\n\n[profile.p.methods.lockDoor]\naction = \"write_coil\"\naddress = 0\nvalue = true\n\n[[door]]\ndevice_id = \"d1\"\nbus = \"b\"\nunit = 1\nprofile = \"p\"\nkey = \"a2V5\"\n"
        );
        let reloaded = crate::config::parse(&with_door, "second.toml").unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reload_tx, reload_rx) = mpsc::channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let supervisor = Arc::new(Recorder::default());
        let sup = Arc::clone(&supervisor);
        let service = tokio::spawn(async move {
            serve(
                config,
                listener,
                Arc::new(Metrics::new()),
                reload_rx,
                async {
                    let _ = stop_rx.await;
                },
                &*sup,
            )
            .await
        });

        until("ready", || supervisor.seen().contains(&Notice::Ready)).await;
        let body = readyz(addr).await;
        assert!(body.starts_with("HTTP/1.0 200"), "{body}");
        assert!(body.contains("\"doors\":0"), "{body}");

        reload_tx.send(reloaded).await.unwrap();
        until("reloaded", || supervisor.seen().contains(&Notice::Reloaded)).await;
        tokio::time::timeout(Duration::from_secs(20), async {
            while !readyz(addr).await.contains("\"doors\":1") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the reloaded config's door shows in /readyz");

        stop_tx.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(20), service)
            .await
            .expect("serve returns once shutdown completes")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            supervisor.seen(),
            vec![Notice::Ready, Notice::Reloaded, Notice::Stopping]
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the metrics socket is closed with the service"
        );
    }
}
