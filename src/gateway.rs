//! The running gateway: one task per bus, and per door a link, a bridge and a poller, all
//! wired from a [`Config`]. [`Gateway::reload`] applies a new config by difference (doors
//! added, removed or changed; the others keep their connections), and [`serve`] is the
//! service's main loop (signals, systemd notify and watchdog, metrics listener).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bridge::{self, DoorIo};
use crate::bus::{self, BusHandle, BusOptions};
use crate::config::{self, Config, Door, HubSettings};
use crate::events::{EventStore, EventStoreTask};
use crate::http::{self, Readiness};
use crate::link::{self, BackoffPolicy, ConnectPacer, LinkHandle, LinkSettings, LinkState};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot read the hub CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
    hub: HubSettings,
    extra_ca: Option<Vec<u8>>,
    buses: BTreeMap<String, BusRuntime>,
    doors: BTreeMap<String, DoorRuntime>,
    /// The durable event store; `None` when it could not be opened (events then go out
    /// live and are counted as dropped, see `crate::events`). Its settings apply at start.
    events: Option<(EventStore, EventStoreTask)>,
    event_pacer: ConnectPacer,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("buses", &self.buses.keys().collect::<Vec<_>>())
            .field("doors", &self.doors.len())
            .finish()
    }
}

fn read_ca(hub: &HubSettings) -> Result<Option<Vec<u8>>, GatewayError> {
    hub.ca_file
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|source| GatewayError::CaFile {
                path: p.clone(),
                source,
            })
        })
        .transpose()
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
        let events = match EventStore::open(&config.events, Arc::clone(&metrics)) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(error = %e, dir = %config.events.dir.display(), "event store unavailable: door events are sent live only, and counted as dropped");
                None
            }
        };
        let rate = config.events.send_rate;
        let mut gw = Gateway {
            events,
            event_pacer: ConnectPacer::new(Some(f64::from(rate)), rate),
            pacer: pacer_for(&config.hub),
            hub: config.hub.clone(),
            extra_ca: read_ca(&config.hub)?,
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
            self.hub.hostname.clone(),
            door.device_id.clone(),
            door.key.expose().to_string(),
        );
        s.extra_ca_pem = self.extra_ca.clone();
        s.methods = Arc::clone(&door.methods);
        s.token_lifetime = self.hub.token_lifetime;
        s.token_renew_margin = self.hub.token_renew_margin;
        s.keepalive = self.hub.keep_alive;
        s.connect_timeout = self.hub.operation_timeout;
        s.op_timeout = self.hub.operation_timeout;
        s.backoff = BackoffPolicy {
            base: self.hub.reconnect_backoff_min,
            cap: self.hub.reconnect_backoff_max,
            ..BackoffPolicy::default()
        };
        s
    }

    fn start_door(&mut self, door: Arc<Door>) {
        let Some(bus) = self.buses.get(&door.bus) else {
            // Config validation guarantees the bus exists; keep the others running if not.
            tracing::error!(device = %door.device_id, bus = %door.bus, "door names an unknown bus");
            return;
        };
        let link_cancel = CancellationToken::new();
        let stored = self.events.as_ref().map(|(e, _)| e.door(&door.device_id));
        let mut settings = self.link_settings(&door);
        settings.events = stored.clone();
        settings.event_pacer = self.event_pacer.clone();
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

    pub fn readiness(&self) -> Readiness {
        let states: Vec<LinkState> = self.doors.values().map(|d| d.link.state()).collect();
        Readiness {
            buses_started: self.buses.values().all(|b| b.handle.is_connected()),
            links_attempted: states
                .iter()
                .all(|s| !matches!(s, LinkState::Connecting { attempt: 1 })),
            doors: states.len(),
            doors_connected: states
                .iter()
                .filter(|s| **s == LinkState::Connected)
                .count(),
        }
    }

    /// Applies a new config: doors whose settings (or bus, or the hub settings) changed are
    /// restarted, new ones started, removed ones stopped; the others are not touched.
    pub async fn reload(&mut self, config: &Config) -> Result<ReloadSummary, GatewayError> {
        let extra_ca = read_ca(&config.hub)?;
        let hub_changed = config.hub != self.hub || extra_ca != self.extra_ca;
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
        self.extra_ca = extra_ca;
        if hub_changed {
            self.pacer = pacer_for(&config.hub);
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

/// The service: loads the config, serves metrics, runs the gateway until SIGTERM/SIGINT,
/// reloads on SIGHUP (an invalid new config is refused and the running one kept), tells
/// systemd when it is ready and feeds its watchdog from this loop.
pub async fn serve(path: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let config = config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", config.metrics.listen))?;
    let metrics_addr = listener.local_addr()?;
    let (ready_tx, ready_rx) = watch::channel(Readiness::default());
    let http = http::HttpServer::spawn(listener, Arc::clone(&metrics), ready_rx);
    let mut gw = Gateway::start(&config, Arc::clone(&metrics))?;
    // The gateway holds its own copy of every door; this one would stay for the process's
    // life (a few KB per door, benchmark workload 3).
    drop(config);
    tracing::info!(metrics = %format!("http://{metrics_addr}/metrics"), config = %path.display(), "fieldgate running");

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let tick_every = if watchdog {
        Duration::from_micros(watchdog_usec / 2).min(Duration::from_secs(1))
    } else {
        Duration::from_secs(1)
    };
    let mut tick = tokio::time::interval(tick_every);
    let mut notified_ready = false;
    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => { let _ = reload_tx.try_send(()); }
            Some(()) = reload_rx.recv() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                match config::load(&path) {
                    Ok(new) => match gw.reload(&new).await {
                        Ok(s) => tracing::info!(added = ?s.added, removed = ?s.removed, restarted = ?s.restarted, unchanged = s.unchanged, "config reloaded"),
                        Err(e) => tracing::error!(error = %e, "config reload refused; the running config is kept"),
                    },
                    Err(e) => tracing::error!(errors = %e, "config reload refused; the running config is kept"),
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
            _ = tick.tick() => {
                let r = gw.readiness();
                if r.ready() && !notified_ready {
                    notified_ready = true;
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                    tracing::info!(doors = r.doors, connected = r.doors_connected, "ready");
                }
                ready_tx.send_replace(r);
                if watchdog {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }
    tracing::info!("stopping");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    gw.shutdown().await;
    http.stop().await;
    tracing::info!("stopped");
    Ok(())
}
