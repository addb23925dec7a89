//! The two bridges a workload can run against the same hub and simulators: fieldgate (a
//! separate `fieldgate run` process) and the reference bridge (Node.js, one official Azure
//! device client per door, `tests/peers/node/reference-bridge.js`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::child::Proc;
use crate::env::{tcp_bus, Door, HubTuning, MapSpec, SimPool, World};
use crate::floor::modbus::Reads;
use crate::gateway::GatewayProc;

/// How to start each bridge.
#[derive(Debug, Clone)]
pub struct Launch {
    pub gateway_bin: PathBuf,
    /// `node` and the reference script, when the reference is part of the run.
    pub reference: Option<(PathBuf, PathBuf)>,
    /// fieldgate's hub timings, where not its defaults.
    pub tuning: HubTuning,
    /// Extra environment of the gateway process (an allocator A/B: `LD_PRELOAD`).
    pub gateway_env: Vec<(String, String)>,
}

impl Launch {
    /// The reference script and whether it can run (node found, `npm ci` done).
    pub fn find_reference(node: &Path) -> Result<PathBuf, String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/node");
        let script = dir.join("reference-bridge.js");
        if !dir.join("node_modules/azure-iot-device-mqtt").exists()
            || !dir.join("node_modules/modbus-serial").exists()
        {
            return Err(format!(
                "reference bridge skipped: run `npm ci` in {}",
                dir.display()
            ));
        }
        let ok = std::process::Command::new(node)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!(
                "reference bridge skipped: {} not runnable",
                node.display()
            ));
        }
        Ok(script)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    Fieldgate,
    Reference,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fieldgate => "fieldgate",
            Kind::Reference => "reference",
        }
    }
}

/// A running bridge process.
#[derive(Debug)]
pub enum Bridge {
    Fieldgate(GatewayProc),
    Reference(Proc),
}

/// What a bridge serves: doors on a pool of Modbus TCP simulators.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub doors: &'a [Door],
    pub pool: &'a SimPool,
    pub poll_interval: &'a str,
    pub connects_per_second: u32,
}

impl Bridge {
    pub fn start(
        kind: Kind,
        world: &World,
        launch: &Launch,
        tag: &str,
        site: Site<'_>,
    ) -> anyhow::Result<Bridge> {
        match kind {
            Kind::Fieldgate => {
                let sims = site.doors.iter().map(|d| d.sim).max().map_or(0, |m| m + 1);
                let spec = MapSpec {
                    hub_host: format!("localhost:{}", world.hub.mqtt_addr.port()),
                    ca: &world.hub.ca_path,
                    metrics_port: 0,
                    connects_per_second: site.connects_per_second,
                    buses: (0..sims).map(|i| tcp_bus(i, &site.pool.addr(i))).collect(),
                    poll_interval: site.poll_interval,
                    doors: site.doors,
                    tuning: launch.tuning,
                    reads: Reads::Two,
                };
                Ok(Bridge::Fieldgate(GatewayProc::start(
                    world,
                    &launch.gateway_bin,
                    tag,
                    spec,
                    &launch.gateway_env,
                )?))
            }
            Kind::Reference => {
                let (node, script) = launch
                    .reference
                    .as_ref()
                    .context("the reference bridge is not part of this run")?;
                let poll_ms = humantime_ms(site.poll_interval)?;
                let doors: Vec<_> = site
                    .doors
                    .iter()
                    .map(|d| {
                        let addr = site.pool.addr(d.sim);
                        let (host, port) = addr.rsplit_once(':').expect("host:port");
                        json!({"id": d.device_id, "key": d.key, "host": host, "port": port.parse::<u16>().unwrap_or(0), "unit": d.unit})
                    })
                    .collect();
                let cfg = json!({
                    "hostName": world.hub.hostname,
                    "gatewayHostName": format!("localhost:{}", world.hub.mqtt_addr.port()),
                    "caFile": world.hub.ca_path,
                    "pollMs": poll_ms,
                    "doors": doors,
                });
                let path = world.path(&format!("{tag}.json"));
                std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
                let path_arg = path.display().to_string();
                let script_arg = script.display().to_string();
                Ok(Bridge::Reference(Proc::spawn(
                    &format!("reference ({tag})"),
                    node,
                    &[&script_arg, &path_arg],
                    world.path(&format!("{tag}.log")),
                )?))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Bridge::Fieldgate(g) => g.pid(),
            Bridge::Reference(p) => p.pid,
        }
    }

    pub fn gateway(&self) -> Option<&GatewayProc> {
        match self {
            Bridge::Fieldgate(g) => Some(g),
            Bridge::Reference(_) => None,
        }
    }

    fn proc_mut(&mut self) -> &mut Proc {
        match self {
            Bridge::Fieldgate(g) => &mut g.proc,
            Bridge::Reference(p) => p,
        }
    }

    /// Waits until every door of `ids` is connected at the hub, failing early (with the
    /// bridge's log) if the process dies.
    pub async fn wait_up(
        &mut self,
        world: &World,
        ids: &[String],
        since: Instant,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let mut checked = Instant::now();
        loop {
            let up = world.connected(ids);
            if up == ids.len() {
                return Ok(since.elapsed());
            }
            if checked.elapsed() > Duration::from_millis(500) {
                self.proc_mut().check_alive()?;
                checked = Instant::now();
            }
            if since.elapsed() > limit {
                anyhow::bail!(
                    "{up} of {} links up after {limit:?}; log tail:\n{}",
                    ids.len(),
                    self.proc_mut().log_tail(15)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Bridge::Fieldgate(g) => g.stop().await,
            Bridge::Reference(p) => p.stop().await,
        }
    }
}

fn humantime_ms(s: &str) -> anyhow::Result<u64> {
    let ms = if let Some(n) = s.strip_suffix("ms") {
        n.trim().parse::<u64>()?
    } else if let Some(n) = s.strip_suffix('s') {
        n.trim().parse::<u64>()? * 1000
    } else if let Some(n) = s.strip_suffix('h') {
        n.trim().parse::<u64>()? * 3_600_000
    } else {
        anyhow::bail!("poll interval {s:?}: write it as 500ms, 1s or 1h")
    };
    Ok(ms)
}

pub fn ids(doors: &[Door]) -> Vec<String> {
    doors.iter().map(|d| d.device_id.clone()).collect()
}
