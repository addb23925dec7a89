//! The benchmark's world: one in-process fieldhub, pools of in-process doorsims (Modbus TCP,
//! up to 200 units each, like a site with several controllers), registered doors, the
//! device map text for the gateway, and waiting on the hub for links to come up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldhub::doorsim::{self, DoorSim, DoorSimConfig, Listen};
use fieldhub::{HubConfig, RunningHub};

use crate::floor::modbus::Reads;

/// Units served by one simulated controller.
pub const UNITS_PER_SIM: usize = 200;

/// One presented door: its device id and key in the hub, and where it lives on the bus.
#[derive(Debug, Clone)]
pub struct Door {
    pub device_id: String,
    pub key: String,
    /// Index of the bus (doorsim) in its pool.
    pub sim: usize,
    pub unit: u8,
}

/// The hub and a directory for configs and logs (a temp dir, removed at the end unless kept).
pub struct World {
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub hub: RunningHub,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("dir", &self.dir).finish()
    }
}

impl World {
    /// Starts the hub with its data under `dir`; `keep` leaves the directory (logs, device
    /// maps) in place after the run.
    pub async fn start(hub: impl FnOnce(&Path) -> HubConfig, keep: bool) -> anyhow::Result<World> {
        let temp = tempfile::Builder::new()
            .prefix("fieldgate-bench")
            .tempdir()?;
        let (dir, temp) = if keep {
            (temp.keep(), None)
        } else {
            (temp.path().to_path_buf(), Some(temp))
        };
        tracing::info!(dir = %dir.display(), "configs and logs");
        let hub = fieldhub::start(hub(&dir))
            .await
            .context("starting fieldhub")?;
        Ok(World {
            dir,
            _temp: temp,
            hub,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Registers `n` devices `{prefix}-1…` (or fetches them if they exist) and assigns them
    /// to simulators of [`UNITS_PER_SIM`] units each.
    pub fn doors(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<Door>> {
        (0..n)
            .map(|i| {
                let device_id = format!("{prefix}-{}", i + 1);
                let identity = match self.hub.hub.get_device(&device_id) {
                    Ok(d) => d,
                    Err(_) => self.hub.hub.create_device(&device_id)?,
                };
                Ok(Door {
                    device_id,
                    key: identity.primary_key,
                    sim: i / UNITS_PER_SIM,
                    unit: u8::try_from(i % UNITS_PER_SIM + 1).expect("at most 200 units"),
                })
            })
            .collect()
    }

    /// How many of `ids` the hub sees connected right now.
    pub fn connected(&self, ids: &[String]) -> usize {
        ids.iter()
            .filter(|id| self.hub.hub.is_connected(id))
            .count()
    }

    /// Waits until every one of `ids` is connected at the hub; returns the time it took from
    /// `since`. Polls every 10 ms (the hub has no "all of these" wait).
    pub async fn wait_connected(
        &self,
        ids: &[String],
        since: Instant,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        loop {
            let up = self.connected(ids);
            if up == ids.len() {
                return Ok(since.elapsed());
            }
            if since.elapsed() > limit {
                anyhow::bail!("only {up} of {} links up after {limit:?}", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until none of `ids` is connected (a stopped gateway's links are gone).
    pub async fn wait_disconnected(&self, ids: &[String], limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.connected(ids) > 0 {
            if start.elapsed() > limit {
                anyhow::bail!("{} links still up after {limit:?}", self.connected(ids));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Doorsims serving Modbus TCP on ephemeral ports.
#[derive(Debug)]
pub struct SimPool {
    pub sims: Vec<DoorSim>,
}

impl SimPool {
    /// Enough simulators of [`UNITS_PER_SIM`] units for `doors` doors.
    pub async fn tcp(doors: usize) -> anyhow::Result<SimPool> {
        let mut sims = Vec::new();
        for _ in 0..doors.div_ceil(UNITS_PER_SIM).max(1) {
            sims.push(
                doorsim::start(DoorSimConfig {
                    listen: Listen::Tcp("127.0.0.1:0".parse()?),
                    units: (1..=UNITS_PER_SIM as u8).collect(),
                    line_baud: None,
                })
                .await?,
            );
        }
        Ok(SimPool { sims })
    }

    pub fn addr(&self, i: usize) -> String {
        self.sims[i].local_addr.expect("TCP doorsim").to_string()
    }

    pub fn total_requests(&self) -> u64 {
        self.sims.iter().map(|s| s.handle.total_requests()).sum()
    }

    pub async fn shutdown(self) {
        for s in self.sims {
            s.shutdown().await;
        }
    }
}

/// The door profile of every benchmark: doorsim's register map, `lockDoor` as write coil 0
/// (with the gateway's read-back), desired `Building` (holding 0), and reported points that
/// poll in two reads (coil 0, input registers 0-1) or three (coil 0, discrete input 0, input
/// register 1).
pub fn profile(poll_interval: &str, reads: Reads) -> String {
    let points = match reads {
        Reads::Two => TWO_READS,
        Reads::Three => THREE_READS,
    };
    format!(
        r#"
[profile.door]
poll_interval = "{poll_interval}"

[profile.door.methods.lockDoor]
action = "write_coil"
address = 0
value = true

[profile.door.desired.Building]
address = 0
type = "u16"
min = 1
max = 999

{points}"#
    )
}

const TWO_READS: &str = r#"
[profile.door.reported.locked]
source = "coil"
address = 0

[profile.door.reported.doorState]
source = "input"
address = 0
enum = { 0 = "closed", 1 = "open", 2 = "forced", 3 = "held" }

[profile.door.reported.batteryVoltage]
source = "input"
address = 1
scale = 0.01
deadband = 0.05
"#;

const THREE_READS: &str = r#"
[profile.door.reported.locked]
source = "coil"
address = 0

[profile.door.reported.doorOpen]
source = "discrete_input"
address = 0

[profile.door.reported.batteryVoltage]
source = "input"
address = 1
scale = 0.01
deadband = 0.05
"#;

/// A gateway device map.
#[derive(Debug, Clone)]
pub struct MapSpec<'a> {
    pub hub_host: String,
    pub ca: &'a Path,
    pub metrics_port: u16,
    pub connects_per_second: u32,
    /// `[[bus]]` sections, the i-th named `bus{i}`.
    pub buses: Vec<String>,
    pub poll_interval: &'a str,
    pub doors: &'a [Door],
    pub tuning: HubTuning,
    pub reads: Reads,
}

/// The gateway's `[hub]` timings a benchmark may shorten (`None`: the gateway's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct HubTuning {
    pub keep_alive: Option<Duration>,
    pub token_lifetime: Option<Duration>,
    /// MQTT over WebSockets to this port (the hub's HTTPS listener) instead of 8883.
    pub websocket_port: Option<u16>,
}

impl HubTuning {
    /// The `[hub]` lines of the timings that are set.
    fn render(&self) -> String {
        [
            ("keep_alive", self.keep_alive),
            ("token_lifetime", self.token_lifetime),
        ]
        .into_iter()
        .filter_map(|(key, d)| Some(format!("{key} = \"{}ms\"\n", d?.as_millis())))
        .chain(
            self.websocket_port
                .map(|p| format!("transport = \"websocket\"\nwebsocket_port = {p}\n")),
        )
        .collect()
    }
}

/// A Modbus TCP bus section.
pub fn tcp_bus(i: usize, addr: &str) -> String {
    format!("[[bus]]\nname = \"bus{i}\"\ntcp = \"{addr}\"\ntimeout = \"1s\"\nretries = 1\n")
}

/// An RTU bus section (8E1, no extra inter-frame delay: the line speed is the limit).
pub fn rtu_bus(i: usize, path: &Path, baud: u32) -> String {
    format!(
        "[[bus]]\nname = \"bus{i}\"\nserial = \"{}\"\nbaud = {baud}\nparity = \"even\"\ndata_bits = 8\nstop_bits = 1\ntimeout = \"1s\"\nretries = 1\ninter_request_delay = \"0ms\"\n",
        path.display()
    )
}

impl MapSpec<'_> {
    pub fn render(&self) -> String {
        let mut t = format!(
            "[hub]\nhostname = \"{}\"\nca_file = \"{}\"\nconnects_per_second = {}\n{}reconnect_backoff_min = \"200ms\"\nreconnect_backoff_max = \"5s\"\n\n[metrics]\nlisten = \"127.0.0.1:{}\"\n\n[events]\ndir = \"state\"\n\n",
            self.hub_host,
            self.ca.display(),
            self.connects_per_second,
            self.tuning.render(),
            self.metrics_port
        );
        for b in &self.buses {
            t.push_str(b);
            t.push('\n');
        }
        t.push_str(&profile(self.poll_interval, self.reads));
        for d in self.doors {
            t.push_str(&format!(
                "\n[[door]]\ndevice_id = \"{}\"\nbus = \"bus{}\"\nunit = {}\nprofile = \"door\"\nkey = \"{}\"\n",
                d.device_id, d.sim, d.unit, d.key
            ));
        }
        t
    }
}
