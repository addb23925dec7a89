//! Soak: many doors, thousands of direct methods and desired patches through the
//! `fieldgate` binary as a separate process. Zero unanswered methods, zero lost or misapplied
//! writes (each call's distinct value checked against doorsim's write log), desired state
//! converged, and the gateway's resident memory flat after warm-up.
//!
//! CI mode: 20 doors, 500 methods, 100 desired patches, as fast as they go.
//! `FIELDGATE_SOAK=1`: 200 doors on 4 buses, 10,000 methods and 2,000 desired patches paced
//! over about 10 minutes; RSS growth after warm-up must stay under 5 %. Counts are printed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::harness::{bounded, Env};
use crate::support::process::{signal, wait_doors_ready, Service};
use crate::support::reliability::{
    config_text, converged, long_mode, tag, Client, Tally, TAGGED_METHOD,
};

/// Resident set size of a process, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Spreads the doors over `buses` connections to the same doorsim (distinct units each).
fn spread_over_buses(text: &str, buses: u8) -> String {
    let bus = text
        .split("[[bus]]")
        .nth(1)
        .and_then(|r| r.split("\n\n").next())
        .unwrap()
        .to_string();
    let mut extra = String::new();
    for b in 1..buses {
        extra.push_str(&format!(
            "[[bus]]{}\n\n",
            bus.replace("name = \"tcp\"", &format!("name = \"tcp{b}\""))
        ));
    }
    let mut parts = text.split("[[door]]");
    let mut out = parts
        .next()
        .unwrap()
        .replacen("[[bus]]", &format!("{extra}[[bus]]"), 1);
    for block in parts {
        let unit: u8 = block
            .split("unit = ")
            .nth(1)
            .and_then(|r| r.split('\n').next())
            .unwrap()
            .parse()
            .unwrap();
        let b = unit % buses;
        let name = if b == 0 {
            "tcp".to_string()
        } else {
            format!("tcp{b}")
        };
        out.push_str("[[door]]");
        out.push_str(&block.replacen("bus = \"tcp\"", &format!("bus = \"{name}\""), 1));
    }
    out
}

#[tokio::test]
async fn soak_many_doors_methods_and_desired_patches() {
    let long = long_mode();
    let (doors, methods, patches, run, buses) = if long {
        (200u8, 10_000u32, 2_000u32, Duration::from_secs(600), 4u8)
    } else {
        (20, 500, 100, Duration::ZERO, 1)
    };
    let env = Env::start(doors).await;
    let poll = if long { "5s" } else { "1s" };
    let text = config_text(&env, "", TAGGED_METHOD).replace(
        "poll_interval = \"200ms\"",
        &format!("poll_interval = \"{poll}\""),
    );
    let text = spread_over_buses(&text, buses);
    let path = env.dir.path().join("fieldgate.toml");
    std::fs::write(&path, &text).unwrap();
    let svc = Service::start(&path, env.dir.path().join("fieldgate.log")).await;
    let ids: Vec<String> = env.doors.iter().map(|d| d.device_id.clone()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_doors_ready(&env, &id_refs).await;
    let client = Client::new(&env.hub);

    let per_door = methods / u32::from(doors);
    let patches_per_door = patches / u32::from(doors);
    let desired_every = per_door / patches_per_door;
    // Long mode paces each door's calls evenly over the run.
    let step = run / per_door;
    let started = Instant::now();
    let tasks: Vec<_> = env
        .doors
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let client = client.clone();
            let (id, unit) = (d.device_id.clone(), d.unit);
            // Stagger the doors across one step so load is even.
            let offset = step * k as u32 / u32::from(doors);
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut worst = Duration::ZERO;
                for i in 0..per_door {
                    if !step.is_zero() {
                        tokio::time::sleep_until((started + offset + step * i).into()).await;
                    }
                    let tg = tag(unit, i);
                    let t0 = Instant::now();
                    let out = client
                        .invoke(&id, "setHold", json!({"ms": tg}), 30, 0)
                        .await;
                    worst = worst.max(t0.elapsed());
                    t.record(unit, tg, &out);
                    if i % desired_every == 0 {
                        t.desired_sent += 1;
                        let v = json!({"Building": 1 + (i % 999), "Floor": (i % 100) as i64 - 5});
                        if client.set_desired(&id, v).await.is_err() {
                            t.desired_refused_by_hub += 1;
                        }
                    }
                }
                (t, worst)
            })
        })
        .collect();

    // RSS samples of the gateway process: after warm-up, then through the run.
    let pid = svc.pid;
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let samples = std::sync::Arc::clone(&samples);
        async move {
            loop {
                samples.lock().unwrap().push((Instant::now(), rss_kb(pid)));
                tokio::time::sleep(Duration::from_millis(if long { 5000 } else { 250 })).await;
            }
        }
    });

    let mut tally = Tally::default();
    let mut worst = Duration::ZERO;
    let limit = run + Duration::from_secs(if long { 300 } else { 120 });
    for t in tasks {
        let (one, w) = tokio::time::timeout(limit, t)
            .await
            .expect("soak finished in time")
            .unwrap();
        tally.merge(one);
        worst = worst.max(w);
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kb(pid);
    sampler.abort();
    let samples = samples.lock().unwrap().clone();

    converged(&env, &client).await;
    let units: Vec<u8> = env.doors.iter().map(|d| d.unit).collect();
    let written_but_failed = tally.check_write_log(&env.sim.handle, &units);
    let unanswered = tally.by_status.get("hub unreachable").copied().unwrap_or(0);
    let writes = env.sim.handle.write_log().len();

    // Warm-up: the first 20 % of the run (connections, TLS sessions, allocator pools).
    let warm = started + elapsed / 5;
    let after_warmup: Vec<u64> = samples
        .iter()
        .filter(|(at, _)| *at >= warm)
        .map(|(_, kb)| *kb)
        .collect();
    let rss_warm = after_warmup.first().copied().unwrap_or(rss_end);
    let growth = (rss_end as f64 - rss_warm as f64) / rss_warm as f64 * 100.0;
    println!(
        "soak: {doors} doors on {buses} bus(es), {} methods in {elapsed:?} by status {:?}, slowest {worst:?}; unanswered {unanswered}; {} desired patches ({} refused by the hub); {writes} writes in doorsim's log, every succeeded method exactly once, {written_but_failed} failed-but-written; RSS after warm-up {rss_warm} kB, at end {rss_end} kB ({growth:+.1} %), max {} kB",
        tally.methods(),
        tally.by_status,
        tally.desired_sent,
        tally.desired_refused_by_hub,
        samples.iter().map(|(_, kb)| *kb).max().unwrap_or(0),
    );
    assert_eq!(tally.methods(), u64::from(per_door) * u64::from(doors));
    assert_eq!(unanswered, 0);
    assert_eq!(
        tally.by_status.keys().collect::<Vec<_>>(),
        vec!["200"],
        "every method succeeded: {:?}",
        tally.by_status
    );
    assert_eq!(tally.desired_refused_by_hub, 0);
    if long {
        assert!(growth < 5.0, "RSS grew {growth:.1} % after warm-up");
    }
    signal(svc.pid, "-TERM");
    let mut child = svc.child;
    assert!(bounded("exit", child.wait()).await.unwrap().success());
}
