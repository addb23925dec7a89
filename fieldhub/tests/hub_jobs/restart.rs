//! Jobs survive a fieldhub restart (shutdown + start on the same data dir): a scheduled job
//! still starts at its start time, and a running job resumes on the devices it had not reached
//! without operating again on those it had finished.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fieldhub::jobs::DeviceJobStatus;
use fieldhub::HubConfig;
use serde_json::json;

use super::fleet::*;
use crate::support::*;

async fn restart(th: TestHub, cfg: impl FnOnce(HubConfig) -> HubConfig) -> TestHub {
    let dir = th.dir;
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
    let hub = tokio::time::timeout(T, fieldhub::start(cfg(HubConfig::for_tests(dir.path()))))
        .await
        .unwrap()
        .unwrap();
    TestHub { hub, dir }
}

#[tokio::test]
async fn scheduled_job_survives_restart_and_starts_on_time() {
    let th = start_with(|c| c).await;
    let door = th.hub.hub.create_device("door-01").unwrap();
    let s = Service::new(&th.hub, "iothubowner");
    let start: DateTime<Utc> = Utc::now() + chrono::Duration::seconds(4);
    let mut body = method_job("later", "deviceId = 'door-01'", 60);
    body["startTime"] = json!(start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let (st, _, created) = put_job(&s, "later", &body).await;
    assert_eq!(st, 200, "{created}");
    assert_eq!(
        created["status"], "queued",
        "queued at creation, as the hub does"
    );
    // The engine moves it to `scheduled` on its next pass.
    let deadline = tokio::time::Instant::now() + T;
    while get_job(&s, "later").await["status"] != "scheduled" {
        assert!(tokio::time::Instant::now() < deadline, "never scheduled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let th = restart(th, |c| c).await;
    assert!(
        Utc::now() < start,
        "restart took longer than the test allows"
    );
    let s = Service::new(&th.hub, "iothubowner");
    let job = get_job(&s, "later").await;
    assert_eq!(job["status"], "scheduled", "{job}");
    assert_eq!(
        stats(&job),
        (1, 0, 0, 0, 1),
        "its device record survived: {job}"
    );
    let tls = client_tls(&th.hub);
    let mut dev =
        Responder::connect(th.hub.mqtt_addr.port(), &tls, "door-01", &door.primary_key).await;

    let job = wait_job(&s, "later", Duration::from_secs(20)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(stats(&job), (1, 1, 0, 0, 0));
    let (seen, at) = dev.next_seen().await;
    assert!(matches!(seen, Seen::Method { ref name, .. } if name == "lockDoor"));
    assert!(
        at >= start,
        "method arrived at {at}, before the start time {start}"
    );
    let state = th.hub.jobs.state("later").unwrap();
    assert!(state.devices["door-01"].start_time_utc >= start);
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}

#[tokio::test]
async fn running_job_resumes_on_devices_it_had_not_reached() {
    // Two device operations per second, so the restart lands in the middle of the job.
    let paced = |c: HubConfig| HubConfig {
        job_ops_per_second: Some(2.0),
        ..c
    };
    let th = start_with(paced).await;
    for i in 0..6 {
        th.hub.hub.create_device(&format!("t-{i}")).unwrap();
    }
    let s = Service::new(&th.hub, "iothubowner");
    let (st, _, created) =
        put_job(&s, "floors", &twin_job("floors", "*", json!({"Floor": 3}))).await;
    assert_eq!(st, 200, "{created}");
    let deadline = tokio::time::Instant::now() + T;
    let before = loop {
        let job = th.hub.jobs.state("floors").unwrap();
        if job.statistics().succeeded_count >= 2 {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let done_before: Vec<_> = before
        .devices
        .values()
        .filter(|d| d.status == DeviceJobStatus::Completed)
        .cloned()
        .collect();
    assert!(done_before.len() < 6, "the job finished before the restart");

    let th = restart(th, paced).await;
    let s = Service::new(&th.hub, "iothubowner");
    let job = wait_job(&s, "floors", Duration::from_secs(20)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(stats(&job), (6, 6, 0, 0, 0));
    let after = th.hub.jobs.state("floors").unwrap();
    for d in &done_before {
        assert_eq!(
            &after.devices[&d.device_id], d,
            "finished device was run again"
        );
        let twin = th.hub.hub.get_twin(&d.device_id).unwrap();
        assert_eq!(
            twin["properties"]["desired"]["$version"], 2,
            "one patch only"
        );
    }
    for i in 0..6 {
        let twin = th.hub.hub.get_twin(&format!("t-{i}")).unwrap();
        assert_eq!(twin["properties"]["desired"]["Floor"], 3);
    }
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}
