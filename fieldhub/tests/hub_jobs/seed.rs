//! The seed scenario: a `lockDoor` method job and a twin-update job setting desired
//! `Building`/`Floor`, on a hub with the default (S1) limits, with real MQTT devices.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc::error::TryRecvError;

use super::fleet::*;
use crate::support::*;

#[tokio::test]
async fn seed_lock_door_and_twin_update_jobs_complete() {
    let th = start_with(|c| c).await;
    let hub = &th.hub.hub;
    let tls = client_tls(&th.hub);
    let target = hub.create_device("door-01").unwrap();
    let other = hub.create_device("door-02").unwrap();
    let mut door = Responder::connect(
        th.hub.mqtt_addr.port(),
        &tls,
        "door-01",
        &target.primary_key,
    )
    .await;
    let mut bystander =
        Responder::connect(th.hub.mqtt_addr.port(), &tls, "door-02", &other.primary_key).await;
    let s = Service::new(&th.hub, "iothubowner");

    // 1. lockDoor on deviceId='door-01'.
    let (st, _, created) = put_job(
        &s,
        "lock-1",
        &method_job("lock-1", "deviceId='door-01'", 60),
    )
    .await;
    assert_eq!(st, 200, "{created}");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["type"], "scheduleDeviceMethod");
    let job = wait_job(&s, "lock-1", Duration::from_secs(20)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(stats(&job), (1, 1, 0, 0, 0));
    assert!(job["endTime"].is_string());
    let (seen, _) = door.next_seen().await;
    assert_eq!(
        seen,
        Seen::Method {
            name: "lockDoor".into(),
            payload: json!({"force": true})
        }
    );
    let (records, _, item_type) = query_all(
        &s,
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'lock-1'",
        100,
    )
    .await;
    assert_eq!(item_type, "DeviceJob");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["deviceId"], "door-01");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["jobType"], "scheduleDeviceMethod");
    assert_eq!(
        r["outcome"]["deviceMethodResponse"],
        json!({"status": 200, "payload": {"device": "door-01", "method": "lockDoor"}})
    );
    assert_ne!(r["startTimeUtc"], "0001-01-01T00:00:00Z");
    assert_ne!(r["endTimeUtc"], "0001-01-01T00:00:00Z");

    // 2. desired Building=43, Floor=3 (the first job finished, so the S1 limit allows it).
    let body = twin_job(
        "place-1",
        "deviceId='door-01'",
        json!({"Building": 43, "Floor": 3}),
    );
    let (st, _, created) = put_job(&s, "place-1", &body).await;
    assert_eq!(st, 200, "{created}");
    let job = wait_job(&s, "place-1", Duration::from_secs(20)).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["type"], "scheduleUpdateTwin");
    assert_eq!(stats(&job), (1, 1, 0, 0, 0));
    match door.next_seen().await {
        (Seen::Desired(d), _) => {
            assert_eq!(
                (d["Building"].clone(), d["Floor"].clone()),
                (json!(43), json!(3))
            );
            assert!(d["$version"].is_u64());
        }
        other => panic!("expected a desired patch, got {other:?}"),
    }
    let twin = hub.get_twin("door-01").unwrap();
    assert_eq!(twin["properties"]["desired"]["Building"], 43);
    assert_eq!(twin["properties"]["desired"]["Floor"], 3);

    // The device the conditions did not select saw neither job.
    assert_eq!(bystander.seen.try_recv().unwrap_err(), TryRecvError::Empty);
    assert!(hub.get_twin("door-02").unwrap()["properties"]["desired"]["Floor"].is_null());
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}
