//! `fieldgate demo`: the whole system offline, on loopback, without root. It starts fieldhub
//! on free ports in a temp dir, doorsim with door controllers on Modbus TCP and on an RTU line
//! (a socat pty pair when socat is installed, RTU over TCP otherwise), provisions the doors
//! with `fieldctl devices provision`, runs the gateway, and replays the seed scenario through
//! fieldctl: a `lockDoor` method job on `tags.building = '43'` with live progress, then a
//! twin-update job setting `Building`/`Floor`, showing registers and reported properties
//! before and after.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::config;
use crate::ctl::{self, Cli, Console};
use crate::gateway::Gateway;
use crate::http::{self, Readiness};
use crate::link::LinkState;
use crate::metrics::Metrics;
use fieldhub::doorsim::{self, DoorSim, DoorSimConfig, Listen};

pub use crate::demo_args::DemoArgs;

/// How long the demo waits for any one step (links up, a job, reported values).
const STEP: Duration = Duration::from_secs(60);

/// The RTU line: a socat pty pair (gateway end, doorsim end), or RTU framing over TCP.
enum Line {
    Pty { _socat: Child, gateway: String },
    Tcp(std::net::SocketAddr),
}

struct Door {
    id: String,
    building: &'static str,
    bus: &'static str,
    unit: u8,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("fieldgate-demo-")
        .tempdir()?;
    say(&format!("fieldgate demo in {}", dir.path().display()));

    // Ephemeral loopback ports, hostname localhost, and an S1 hub's job pacing (10 device
    // operations per second), so the progress bar has something to show.
    let hub = fieldhub::start(fieldhub::HubConfig::for_tests(dir.path().join("hub")))
        .await
        .context("starting fieldhub")?;
    say(&format!(
        "fieldhub   mqtts://{}  https://{}  (CA {})",
        hub.mqtt_addr,
        hub.https_addr,
        hub.ca_path.display()
    ));

    let tcp_units: Vec<u8> = (1..=args.tcp_doors).collect();
    let rtu_units: Vec<u8> = (1..=args.rtu_doors).collect();
    let tcp_sim = doorsim::start(DoorSimConfig {
        listen: Listen::Tcp("127.0.0.1:0".parse()?),
        units: tcp_units.clone(),
        line_baud: None,
    })
    .await?;
    let (rtu_sim, line) = rtu_line(&rtu_units).await?;
    let tcp_addr = tcp_sim.local_addr.context("doorsim TCP address")?;
    say(&format!(
        "doorsim    {} door(s) on Modbus TCP {tcp_addr}; {} on RTU {}",
        tcp_units.len(),
        rtu_units.len(),
        match &line {
            Line::Pty { gateway, .. } => format!("pty {gateway} (socat pair, 19200 8N1)"),
            Line::Tcp(a) => format!("over TCP {a} (socat not found)"),
        }
    ));

    // Building 43 gets every TCP door and the first RTU door; the rest are in building 44,
    // so the seed query visibly selects a subset.
    let mut doors: Vec<Door> = tcp_units
        .iter()
        .map(|&u| Door {
            id: format!("b43-door-{u}"),
            building: "43",
            bus: "tcp",
            unit: u,
        })
        .collect();
    doors.extend(rtu_units.iter().map(|&u| Door {
        id: format!("b4{}-rtu-{u}", if u == 1 { 3 } else { 4 }),
        building: if u == 1 { "43" } else { "44" },
        bus: "rtu",
        unit: u,
    }));
    for d in &doors {
        sim_for(d, &tcp_sim, &rtu_sim)
            .handle
            .set_coil(d.unit, 0, false);
    }

    let map = dir.path().join("fieldgate.toml");
    std::fs::write(&map, device_map(&hub, tcp_addr, &line, &doors))?;
    let hub_file = dir.path().join("hub").join("service.connstr");
    let ca = hub.ca_path.clone();
    let fieldctl = |rest: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "fieldctl".into(),
            "--hub-file".into(),
            hub_file.display().to_string(),
            "--ca-file".into(),
            ca.display().to_string(),
        ];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    step("Provision the doors of the device map (identities, tags, key files)");
    let keys = dir.path().join("keys");
    let code = fieldctl_run(fieldctl(&[
        "devices",
        "provision",
        "--config",
        &map.display().to_string(),
        "--keys-dir",
        &keys.display().to_string(),
    ]))
    .await;
    if code != 0 {
        bail!("provisioning failed (exit {code})");
    }

    step("Start the gateway");
    let cfg = config::load(&map).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metrics_url = format!("http://{}/metrics", listener.local_addr()?);
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(Readiness::default());
    let http = http::HttpServer::spawn(listener, Arc::clone(&metrics), ready_rx);
    let gw = Gateway::start(&cfg, Arc::clone(&metrics))?;
    for d in &doors {
        let mut w = gw.link(&d.id).context("door link")?.watch_state();
        tokio::time::timeout(STEP, w.wait_for(|s| *s == LinkState::Connected))
            .await
            .with_context(|| format!("{} did not connect", d.id))??;
    }
    ready_tx.send_replace(gw.readiness());
    say(&format!(
        "{} door links up; metrics on {metrics_url}",
        doors.len()
    ));
    show_doors(&doors, &tcp_sim, &rtu_sim, &hub.hub, "Before the jobs");

    let query = "tags.building = '43'";
    step(&format!("Seed job 1: lockDoor on every door of {query}"));
    let lock = fieldctl_run(fieldctl(&[
        "job", "method", "--query", query, "--method", "lockDoor", "--wait",
    ]))
    .await;

    step(&format!(
        "Seed job 2: desired Building=43, Floor=3 on {query}"
    ));
    let twin = fieldctl_run(fieldctl(&[
        "job",
        "twin",
        "--query",
        query,
        "--desired",
        "Building=43",
        "Floor=3",
        "--wait",
    ]))
    .await;

    let in_43: Vec<&Door> = doors.iter().filter(|d| d.building == "43").collect();
    let acked = tokio::time::timeout(STEP, async {
        loop {
            let all = in_43.iter().all(|d| {
                hub.hub.get_twin(&d.id).is_ok_and(|t| {
                    let r = &t["properties"]["reported"];
                    r["Floor"]["ac"] == 200 && r["locked"] == Value::Bool(true)
                })
            });
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .is_ok();
    show_doors(&doors, &tcp_sim, &rtu_sim, &hub.hub, "After the jobs");

    let changed = in_43
        .iter()
        .filter(|d| {
            let s = &sim_for(d, &tcp_sim, &rtu_sim).handle;
            s.coil(d.unit, 0) && s.holding(d.unit, 0) == 43 && s.holding(d.unit, 1) == 3
        })
        .count();
    let untouched = doors
        .iter()
        .filter(|d| d.building != "43")
        .all(|d| !sim_for(d, &tcp_sim, &rtu_sim).handle.coil(d.unit, 0));
    let ok = lock == 0 && twin == 0 && acked && changed == in_43.len() && untouched;
    println!(
        "\ndemo: lockDoor job exit {lock}, twin job exit {twin}; registers changed on {changed}/{} doors of building 43; other doors untouched: {untouched}; reported acknowledged: {acked}",
        in_43.len()
    );

    if args.exit {
        // Everything below points into the temp dir, which goes with this process.
        println!(
            "\nRun `fieldgate demo` without --exit to keep it up and try fieldctl against it."
        );
    } else {
        print_try_commands(&metrics_url, &hub_file, &ca, query, &doors[0].id);
        println!("\nRunning until Ctrl-C.");
        tokio::signal::ctrl_c().await?;
        println!("stopping the demo…");
    }

    gw.shutdown().await;
    http.stop().await;
    tcp_sim.shutdown().await;
    rtu_sim.shutdown().await;
    hub.shutdown().await;
    drop(line);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The fieldctl to print in the commands to try: the one built beside this binary (what
/// `cargo run -- demo` built; not necessarily on PATH), else `fieldctl` from PATH.
fn fieldctl_command() -> String {
    let beside = std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("fieldctl"))
        .filter(|p| p.is_file());
    match beside {
        Some(p) => shell_words(&[p.display().to_string()]),
        None => "fieldctl".into(),
    }
}

fn print_try_commands(
    metrics_url: &str,
    hub_file: &std::path::Path,
    ca: &std::path::Path,
    query: &str,
    door: &str,
) {
    println!("\nMetrics: {metrics_url}");
    println!("Try fieldctl against this demo (from another terminal, while it runs):");
    let prefix = format!(
        "  {} --hub-file {} --ca-file {}",
        fieldctl_command(),
        shell_words(&[hub_file.display().to_string()]),
        shell_words(&[ca.display().to_string()])
    );
    for cmd in [
        "job list".to_string(),
        format!("job method --query \"{query}\" --method unlockDoor --payload '{{\"seconds\":5}}' --wait"),
        format!("twin show {door}"),
        format!("twin set {door} --desired Floor=4 --wait"),
        format!("invoke {door} lockDoor"),
        "devices list --query \"tags.building = '44'\"".to_string(),
    ] {
        println!("{prefix} {cmd}");
    }
}

fn sim_for<'a>(d: &Door, tcp: &'a DoorSim, rtu: &'a DoorSim) -> &'a DoorSim {
    if d.bus == "tcp" {
        tcp
    } else {
        rtu
    }
}

async fn fieldctl_run(argv: Vec<String>) -> i32 {
    // As the operator would type it: the fieldctl beside this binary, the rest as run.
    println!("\n$ {} {}", fieldctl_command(), shell_words(&argv[1..]));
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let env = ctl::Env::from_process();
    let mut out = std::io::stdout();
    ctl::run(cli, &env, &mut out, Console::new(std::io::stderr())).await
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:+".contains(c))
            {
                a.clone()
            } else {
                format!("\"{}\"", a.replace('"', "\\\""))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn say(s: &str) {
    println!("{s}");
}

fn step(s: &str) {
    println!("\n== {s}");
}

/// A socat pty pair with doorsim on one end, or doorsim speaking RTU over TCP.
async fn rtu_line(units: &[u8]) -> anyhow::Result<(DoorSim, Line)> {
    if let Some((socat, gateway_end, sim_end)) = socat_pair().await {
        let sim = doorsim::start(DoorSimConfig {
            listen: Listen::RtuSerial {
                path: sim_end,
                baud: 19200,
            },
            units: units.to_vec(),
            line_baud: None,
        })
        .await?;
        return Ok((
            sim,
            Line::Pty {
                _socat: socat,
                gateway: gateway_end,
            },
        ));
    }
    let sim = doorsim::start(DoorSimConfig {
        listen: Listen::RtuOverTcp("127.0.0.1:0".parse()?),
        units: units.to_vec(),
        line_baud: None,
    })
    .await?;
    let addr = sim.local_addr.context("doorsim RTU-over-TCP address")?;
    Ok((sim, Line::Tcp(addr)))
}

async fn socat_pair() -> Option<(Child, String, String)> {
    let mut child = Command::new("socat")
        .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
        // Its own process group: Ctrl-C on the demo's terminal must not kill the line
        // before the gateway has stopped using it (that printed a bus warning on the way out).
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stderr.take()?).lines();
    let mut ptys = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, p)) = line.split_once("PTY is ") {
                ptys.push(p.trim().to_string());
            }
            if line.contains("starting data transfer loop") {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) || ptys.len() != 2 {
        return None;
    }
    // socat logs on; keep draining so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let b = ptys.pop()?;
    let a = ptys.pop()?;
    Some((child, a, b))
}

fn device_map(
    hub: &fieldhub::RunningHub,
    tcp: std::net::SocketAddr,
    line: &Line,
    doors: &[Door],
) -> String {
    let rtu_bus = match line {
        Line::Pty { gateway, .. } => format!(
            "serial = \"{gateway}\"\nbaud = 19200\nparity = \"none\"\ntimeout = \"500ms\"\ninter_request_delay = \"2ms\""
        ),
        Line::Tcp(a) => format!("rtu_over_tcp = \"{a}\"\ntimeout = \"500ms\""),
    };
    let profile = include_str!("../config/demo.toml");
    let profile = &profile[profile.find("[profile.door]").unwrap_or(0)..];
    let profile = &profile[..profile.find("[[door]]").unwrap_or(profile.len())];
    let mut t = format!(
        "# Written by `fieldgate demo`: fieldhub and doorsim on loopback.\n[hub]\nhostname = \"localhost:{}\"\nca_file = \"{}\"\nconnects_per_second = 50\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"state\"\n\n[[bus]]\nname = \"tcp\"\ntcp = \"{tcp}\"\ntimeout = \"300ms\"\n\n[[bus]]\nname = \"rtu\"\n{rtu_bus}\n\n{profile}\n",
        hub.mqtt_addr.port(),
        hub.ca_path.display(),
    );
    for d in doors {
        t.push_str(&format!(
            "[[door]]\ndevice_id = \"{}\"\nbus = \"{}\"\nunit = {}\nprofile = \"door\"\nkey_file = \"keys/{}.key\"\ntags = {{ building = \"{}\", bus = \"{}\" }}\n\n",
            d.id, d.bus, d.unit, d.id, d.building, d.bus
        ));
    }
    t
}

fn show_doors(doors: &[Door], tcp: &DoorSim, rtu: &DoorSim, hub: &fieldhub::Hub, title: &str) {
    println!("\n{title}:");
    println!(
        "  {:<14} {:<4} {:>4} | {:<7} {:>8} {:>5} | {:<16} {:<16} {:<16}",
        "door",
        "bus",
        "unit",
        "coil 0",
        "Building",
        "Floor",
        "reported locked",
        "reported Bldg",
        "reported Floor"
    );
    for d in doors {
        let s = &sim_for(d, tcp, rtu).handle;
        let reported = hub
            .get_twin(&d.id)
            .map(|t| t["properties"]["reported"].clone())
            .unwrap_or(Value::Null);
        let ack = |k: &str| match &reported[k] {
            Value::Object(o) => format!(
                "{} (ac {})",
                o.get("value").unwrap_or(&Value::Null),
                o.get("ac").unwrap_or(&Value::Null)
            ),
            _ => "-".into(),
        };
        println!(
            "  {:<14} {:<4} {:>4} | {:<7} {:>8} {:>5} | {:<16} {:<16} {:<16}",
            d.id,
            d.bus,
            d.unit,
            if s.coil(d.unit, 0) { "locked" } else { "open" },
            s.holding(d.unit, 0),
            s.holding(d.unit, 1) as i16,
            reported.get("locked").map_or("-".into(), |v| v.to_string()),
            ack("Building"),
            ack("Floor"),
        );
    }
}
