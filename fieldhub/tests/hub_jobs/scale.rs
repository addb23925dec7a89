//! A method job over 1,000 registered devices, 600 of them connected as real MQTT clients over
//! TLS and 400 offline: exact statistics, offline devices failed with `DeviceNotOnline` once
//! the job's time runs out, and `devices.jobs` listing every device's result page by page.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::fleet::*;
use crate::support::*;

const DEVICES: usize = 1000;
/// Devices with `i % 5 < 3` connect (600 of 1000); the others stay offline.
fn online(i: usize) -> bool {
    i % 5 < 3
}
/// The job's time budget: offline devices are retried until it runs out.
const MAX_SECS: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_job_over_1000_devices_with_offline_ones() {
    let started = Instant::now();
    let th = start_with(|c| c.unthrottled()).await;
    let hub = th.hub.hub.clone();
    let tls = client_tls(&th.hub);
    let mut keys = Vec::new();
    for i in 0..DEVICES {
        let id = format!("dev-{i:04}");
        keys.push((id.clone(), hub.create_device(&id).unwrap().primary_key));
    }
    let registered = started.elapsed();

    let mut connecting = JoinSet::new();
    let port = th.hub.mqtt_addr.port();
    // Bounded concurrency: the CPU of TLS handshakes, not the hub, limits how fast they come.
    let slots = Arc::new(Semaphore::new(32));
    for (_, (id, key)) in keys.iter().enumerate().filter(|(i, _)| online(*i)) {
        let (tls, id, key, slots) = (tls.clone(), id.clone(), key.clone(), slots.clone());
        connecting.spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            Responder::connect(port, &tls, &id, &key).await
        });
    }
    let mut devices = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(60), connecting.join_next())
        .await
        .expect("devices did not connect in time")
    {
        devices.push(d.unwrap());
    }
    assert_eq!(devices.len(), 600);
    let connected = started.elapsed();

    let s = Service::new(&th.hub, "iothubowner");
    let job_id = "lock-all";
    let (st, _, body) = put_job(
        &s,
        job_id,
        &method_job(job_id, "status = 'enabled'", MAX_SECS),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let job = wait_job(&s, job_id, Duration::from_secs(MAX_SECS + 20)).await;
    assert_eq!(job["status"], "completed", "{job}");
    let (failed, _, _) = query_all(
        &s,
        &format!(
            "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}' \
             AND devices.jobs.status = 'failed'"
        ),
        1000,
    )
    .await;
    let online_failed: Vec<&Value> = failed
        .iter()
        .filter(|r| online(r["deviceId"].as_str().unwrap()[4..].parse().unwrap()))
        .collect();
    assert!(
        online_failed.is_empty(),
        "{} connected devices failed, e.g. {}",
        online_failed.len(),
        online_failed[0]
    );
    assert_eq!(stats(&job), (1000, 600, 400, 0, 0));

    // Every connected device got lockDoor exactly once.
    for d in &mut devices {
        match d.seen.try_recv() {
            Ok((Seen::Method { name, .. }, _)) => assert_eq!(name, "lockDoor"),
            other => panic!("{} saw {other:?}", d.id),
        }
        assert_eq!(
            d.seen.try_recv().unwrap_err(),
            TryRecvError::Empty,
            "{}",
            d.id
        );
    }

    // devices.jobs lists every device's result, 100 per page.
    let (records, sizes, item_type) = query_all(
        &s,
        &format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'"),
        100,
    )
    .await;
    assert_eq!(item_type, "DeviceJob");
    assert_eq!(sizes, vec![100; 10]);
    let ids: BTreeSet<&str> = records
        .iter()
        .map(|r| r["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), DEVICES);
    for r in &records {
        let i: usize = r["deviceId"].as_str().unwrap()[4..].parse().unwrap();
        assert_eq!(r["jobId"], job_id);
        if online(i) {
            assert_eq!(r["status"], "completed", "{r}");
            assert_eq!(r["outcome"]["deviceMethodResponse"]["status"], 200, "{r}");
            assert_eq!(
                r["outcome"]["deviceMethodResponse"]["payload"]["device"],
                r["deviceId"]
            );
        } else {
            assert_eq!(r["status"], "failed", "{r}");
            assert_eq!(r["error"]["code"], "DeviceNotOnline", "{r}");
            assert!(r.get("outcome").is_none_or(Value::is_null), "{r}");
        }
    }
    let (failed, _, _) = query_all(
        &s,
        &format!(
            "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}' \
             AND devices.jobs.status = 'failed'"
        ),
        1000,
    )
    .await;
    assert_eq!(failed.len(), 400);
    eprintln!(
        "1000 devices registered in {registered:?}, 600 connected at {connected:?}, done at {:?}",
        started.elapsed()
    );
    drop(devices);
    // Bounded by the hub's own grace period; generous here because 600 connections close
    // at once on a shared 2-core machine.
    tokio::time::timeout(Duration::from_secs(30), th.hub.shutdown())
        .await
        .unwrap();
}
