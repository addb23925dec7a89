//! The query and jobs REST surface: paging headers, item types, permissions, syntax errors
//! with their position, the active-job limit (429004), unknown jobs (404002), job queries.

use std::time::Duration;

use serde_json::{json, Value};

use super::fleet::*;
use crate::support::*;

#[tokio::test]
async fn twin_queries_page_and_report_syntax_errors() {
    let th = start_with(|c| c).await;
    let hub = &th.hub.hub;
    for (id, building) in [("a-1", "43"), ("a-2", "43"), ("a-3", "44"), ("a-4", "43")] {
        hub.create_device(id).unwrap();
        hub.update_twin(id, json!({"tags": {"building": building}}), None)
            .unwrap();
    }
    let key = hub.get_device("a-2").unwrap().primary_key;
    let tls = client_tls(&th.hub);
    let _online = Responder::connect(th.hub.mqtt_addr.port(), &tls, "a-2", &key).await;
    let s = Service::new(&th.hub, "iothubowner");
    let q = "SELECT * FROM devices WHERE tags.building = '43'";

    // Two per page: a continuation on the first page only.
    let p1 = query_page(&s, q, Some(2), None).await;
    assert_eq!(p1.status, 200);
    assert_eq!(p1.item_type.as_deref(), Some("Twin"));
    let token = p1.continuation.expect("more pages");
    let p2 = query_page(&s, q, Some(2), Some(&token)).await;
    assert_eq!(p2.continuation, None, "no header on the last page");
    let twins: Vec<Value> = [p1.body, p2.body]
        .into_iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect();
    let ids: Vec<&str> = twins
        .iter()
        .map(|t| t["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-1", "a-2", "a-4"]);
    assert_eq!(twins[1]["connectionState"], "Connected");
    assert_eq!(twins[0]["connectionState"], "Disconnected");
    assert!(
        twins[0]["properties"]["desired"]["$version"].is_u64(),
        "full twins"
    );
    assert!(twins[0].get("jobs").is_none());

    // Without a page size everything comes at once; projections and counts are Raw.
    let all = query_page(&s, q, None, None).await;
    assert_eq!(
        (all.body.as_array().unwrap().len(), all.continuation),
        (3, None)
    );
    let c = query_page(
        &s,
        "SELECT COUNT() AS n FROM devices WHERE tags.building = '43'",
        None,
        None,
    )
    .await;
    assert_eq!(c.item_type.as_deref(), Some("Raw"));
    assert_eq!(c.body, json!([{"n": 3}]));
    let c = query_page(
        &s,
        "select deviceId, tags.building from devices where deviceId in ['a-3']",
        None,
        None,
    )
    .await;
    assert_eq!(c.body, json!([{"deviceId": "a-3", "building": "44"}]));
    let c = query_page(
        &s,
        "SELECT * FROM devices WHERE connectionState = 'Connected'",
        None,
        None,
    )
    .await;
    assert_eq!(c.body.as_array().unwrap().len(), 1);

    // A syntax error: 400 ArgumentInvalid naming the position.
    let bad = "SELECT * FROM devices WHERE tags.building = ";
    let pos = fieldhub::query::parse_query(bad).unwrap_err().position;
    assert_eq!(pos, bad.chars().count());
    let (st, code, body) = parts(
        s.req(reqwest::Method::POST, "/devices/query")
            .json(&json!({ "query": bad })),
    )
    .await;
    assert_eq!((st, code.as_deref()), (400, Some("ArgumentInvalid")));
    let msg = body["Message"].as_str().unwrap();
    assert!(msg.starts_with("ErrorCode:ArgumentInvalid;"), "{msg}");
    assert!(msg.contains(&format!("position {pos}")), "{msg}");
    // A token that is not one of ours, and a body without a query: 400 as well.
    assert_eq!(query_page(&s, q, Some(2), Some("bogus")).await.status, 400);
    let (st, _, _) = parts(
        s.req(reqwest::Method::POST, "/devices/query")
            .json(&json!({})),
    )
    .await;
    assert_eq!(st, 400);

    // RegistryRead may query; a device-only policy may not.
    let rr = Service::new(&th.hub, "registryRead");
    assert_eq!(query_page(&rr, q, None, None).await.status, 200);
    let dev = Service::new(&th.hub, "device");
    let (st, code, _) = parts(
        dev.req(reqwest::Method::POST, "/devices/query")
            .json(&json!({ "query": q })),
    )
    .await;
    assert_eq!(
        (st, code.as_deref()),
        (401, Some("IotHubUnauthorizedAccess"))
    );
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}

fn later(id: &str) -> Value {
    let mut body = method_job(id, "deviceId = 'nobody'", 60);
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    body["startTime"] = json!(start.to_rfc3339());
    body
}

/// Issue 14, items 1 and 2, through `POST /devices/query` as the service SDKs send it: a
/// projection returns IoT Hub's property names (`deviceId`, `lastActivityTime`) whatever case
/// the query used, and the query language guide's GROUP BY example
/// (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language) returns one
/// row per status with its count.
#[tokio::test]
async fn projections_and_group_by_answer_as_the_query_guide_shows() {
    let th = start_with(|c| c).await;
    let hub = &th.hub.hub;
    for (id, status, floor) in [
        ("g-1", "Success", 1),
        ("g-2", "Pending", 2),
        ("g-3", "Success", 3),
        ("g-4", "Error", 4),
    ] {
        hub.create_device(id).unwrap();
        hub.update_twin(id, json!({"tags": {"floor": floor}}), None)
            .unwrap();
        hub.patch_reported(
            id,
            json!({"telemetryConfig": {"status": status}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    }
    let s = Service::new(&th.hub, "iothubowner");

    let (rows, _, item_type) = query_all(
        &s,
        "SELECT DeviceId, LastActivityTime FROM devices WHERE deviceId = 'g-1'",
        10,
    )
    .await;
    assert_eq!(item_type, "Raw");
    assert_eq!(rows.len(), 1);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["deviceId", "lastActivityTime"], "{}", rows[0]);

    let q = "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS \
             numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status";
    let (rows, _, item_type) = query_all(&s, q, 10).await;
    assert_eq!(item_type, "Raw");
    let mut rows: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["numberOfDevices"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("Error".into(), 1),
            ("Pending".into(), 1),
            ("Success".into(), 2)
        ]
    );

    let (rows, _, _) = query_all(
        &s,
        "SELECT SUM(tags.floor) AS s, AVG(tags.floor) AS a, MIN(tags.floor) AS lo, \
         MAX(tags.floor) AS hi FROM devices WHERE tags.floor * 2 > 2",
        10,
    )
    .await;
    assert_eq!(rows, [json!({"s": 9, "a": 3.0, "lo": 2, "hi": 4})]);

    let p = query_page(&s, "SELECT deviceId, COUNT() FROM devices", None, None).await;
    assert_eq!(p.status, 400, "{}", p.body);
}

#[tokio::test]
async fn job_limits_unknown_jobs_and_job_queries() {
    let th = start_with(|c| c).await;
    let s = Service::new(&th.hub, "service");

    let (st, _, first) = put_job(&s, "first", &later("first")).await;
    assert_eq!((st, first["status"].as_str()), (200, Some("queued")));
    // One active job on an S1 hub: the second is throttled.
    let (st, code, body) = put_job(&s, "second", &later("second")).await;
    assert_eq!(st, 429, "{body}");
    assert_eq!(code.as_deref(), Some("ThrottlingMaxActiveJobCountExceeded"));
    assert!(body["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:ThrottlingMaxActiveJobCountExceeded;"));

    // Unknown ids: 404 JobNotFound for GET and cancel.
    for (method, path) in [
        (reqwest::Method::GET, "/jobs/v2/nope"),
        (reqwest::Method::POST, "/jobs/v2/nope/cancel"),
    ] {
        let (st, code, _) = parts(s.req(method, path)).await;
        assert_eq!((st, code.as_deref()), (404, Some("JobNotFound")));
    }

    // Bad requests: a queryCondition syntax error (with its position), a duplicate id, a
    // jobId differing from the URL.
    let mut bad = later("bad");
    bad["queryCondition"] = json!("deviceId = ");
    let (st, code, body) = put_job(&s, "bad", &bad).await;
    assert_eq!(
        (st, code.as_deref()),
        (400, Some("ArgumentInvalid")),
        "{body}"
    );
    assert!(
        body["Message"].as_str().unwrap().contains("position 11"),
        "{body}"
    );
    // Issue 14, item 5: a twin-update job needs `updateTwin.etag`, and only "*" works on IoT
    // Hub (azure-iot-sdk-java PR #969; MicrosoftDocs/azure-docs issue #29484).
    for etag in [None, Some(json!("AAAAAAAAAAE=")), Some(json!(1))] {
        let mut twin = twin_job("twin-etag", "*", json!({"Floor": 3}));
        match &etag {
            Some(e) => twin["updateTwin"]["etag"] = e.clone(),
            None => {
                twin["updateTwin"].as_object_mut().unwrap().remove("etag");
            }
        }
        let (st, code, body) = put_job(&s, "twin-etag", &twin).await;
        assert_eq!(
            (st, code.as_deref()),
            (400, Some("ArgumentInvalid")),
            "etag {etag:?}: {body}"
        );
        assert!(body["Message"].as_str().unwrap().contains("etag"), "{body}");
    }
    let (st, code, _) = put_job(&s, "first", &later("first")).await;
    assert_eq!((st, code.as_deref()), (400, Some("InvalidOperation")));
    let (st, _, _) = put_job(&s, "other", &later("first")).await;
    assert_eq!(st, 400);

    // The job query sees it as scheduled once the engine has looked at it.
    let deadline = tokio::time::Instant::now() + T;
    while get_job(&s, "first").await["status"] != "scheduled" {
        assert!(tokio::time::Instant::now() < deadline, "never scheduled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = page_of(s.req(
        reqwest::Method::GET,
        "/jobs/v2/query?jobType=scheduleDeviceMethod&jobStatus=scheduled",
    ))
    .await;
    assert_eq!(
        (p.status, p.item_type.as_deref()),
        (200, Some("JobResponse"))
    );
    assert_eq!(p.body.as_array().unwrap().len(), 1);
    assert_eq!(p.body[0]["jobId"], "first");

    // Cancel frees the slot; three cancelled jobs page two at a time.
    let (st, _, c) = parts(s.req(reqwest::Method::POST, "/jobs/v2/first/cancel")).await;
    assert_eq!((st, c["status"].as_str()), (200, Some("cancelled")));
    for id in ["second", "third"] {
        let (st, _, body) = put_job(&s, id, &later(id)).await;
        assert_eq!(st, 200, "{body}");
        let (st, _, _) =
            parts(s.req(reqwest::Method::POST, &format!("/jobs/v2/{id}/cancel"))).await;
        assert_eq!(st, 200);
    }
    let q = "/jobs/v2/query?jobType=scheduleDeviceMethod&jobStatus=cancelled";
    let p1 = page_of(
        s.req(reqwest::Method::GET, q)
            .header("x-ms-max-item-count", "2"),
    )
    .await;
    let token = p1.continuation.expect("a second page");
    let p2 = page_of(
        s.req(reqwest::Method::GET, q)
            .header("x-ms-max-item-count", "2")
            .header("x-ms-continuation", token),
    )
    .await;
    assert_eq!(p2.continuation, None);
    let ids: Vec<Value> = [p1.body, p2.body]
        .into_iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .map(|j| j["jobId"].clone())
        .collect();
    assert_eq!(ids, [json!("first"), json!("second"), json!("third")]);
    let p = page_of(s.req(reqwest::Method::GET, "/jobs/v2/query?jobStatus=running")).await;
    assert_eq!(p.body, json!([]));
    // Issue 14, item 8: the .NET SDK's job query sends `jobType.ToString()` and
    // `jobStatus.ToString()` (Azure/azure-iot-sdk-csharp, iothub/service/src/JobClient/
    // HttpJobClient.cs, `BuildQueryJobUri`): enum names such as `ScheduleDeviceMethod`,
    // `Cancelled`, `Enqueued`, `ExportDevices`. Types the hub never runs match nothing.
    let dotnet = "/jobs/v2/query?jobType=ScheduleDeviceMethod&jobStatus=Cancelled";
    let p = page_of(s.req(reqwest::Method::GET, dotnet)).await;
    assert_eq!((p.status, p.body.as_array().map(Vec::len)), (200, Some(3)));
    for q in [
        "/jobs/v2/query?jobType=export",
        "/jobs/v2/query?jobType=ExportDevices",
        "/jobs/v2/query?jobType=ImportDevices&jobStatus=Enqueued",
        "/jobs/v2/query?jobStatus=Unknown",
        "/jobs/v2/query?jobStatus=Enqueued",
    ] {
        let p = page_of(s.req(reqwest::Method::GET, q)).await;
        assert_eq!((p.status, &p.body), (200, &json!([])), "{q}");
    }
    let p = page_of(s.req(reqwest::Method::GET, "/jobs/v2/query?jobType=Bogus")).await;
    assert_eq!(p.status, 400);

    // Jobs need ServiceConnect.
    let rr = Service::new(&th.hub, "registryRead");
    let (st, _, _) = parts(rr.req(reqwest::Method::GET, "/jobs/v2/first")).await;
    assert_eq!(st, 401);
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}

/// Issue 14, item 8: a .NET `DateTime` of kind Unspecified is serialised without an offset
/// (`"2030-01-01T10:00:00"`); the SDK's `ScheduleDeviceMethodAsync` calls that argument
/// `startTimeUtc` ("Date time in Utc to start the job", Azure/azure-iot-sdk-csharp,
/// iothub/service/src/JobClient/JobClient.cs), so it is taken as UTC instead of refused.
#[tokio::test]
async fn start_time_without_offset_is_utc() {
    let th = start_with(|c| c).await;
    let s = Service::new(&th.hub, "iothubowner");
    let mut body = method_job("dotnet", "*", 60);
    body["startTime"] = json!("2030-01-01T10:00:00");
    let (st, _, job) = put_job(&s, "dotnet", &body).await;
    assert_eq!(st, 200, "{job}");
    let start: chrono::DateTime<chrono::Utc> = job["startTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(start.to_rfc3339(), "2030-01-01T10:00:00+00:00");
    let mut bad = method_job("bad-time", "*", 60);
    bad["startTime"] = json!("next tuesday");
    let (st, code, _) = put_job(&s, "bad-time", &bad).await;
    assert_eq!((st, code.as_deref()), (400, Some("ArgumentInvalid")));
}

/// A job scheduled for later already targets its devices: "the following query returns all
/// jobs (past and scheduled) that affect a single device" ("Queries for IoT Hub jobs",
/// https://learn.microsoft.com/azure/iot-hub/query-jobs), so `devices.jobs` holds a
/// `scheduled` record per selected device, and `GET /jobs/v2/{id}` counts them in
/// `deviceCount` and `pendingCount` ("devices that are pending to run the job",
/// https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs). Neither page says
/// whether the condition is evaluated again at the start; fieldhub keeps the devices chosen
/// at scheduling (see the job engine test `scheduled_job_runs_on_the_devices_chosen_when_it_was_scheduled`).
/// The same page's "Jobs query limitations" are refused with IoT Hub's 400 envelope.
#[tokio::test]
async fn scheduled_job_has_scheduled_device_records_and_devices_jobs_refuses_the_limitations() {
    let th = start_with(|c| c).await;
    let hub = &th.hub.hub;
    for (id, building) in [("s-1", "43"), ("s-2", "43"), ("s-3", "43"), ("s-4", "44")] {
        hub.create_device(id).unwrap();
        hub.update_twin(id, json!({"tags": {"building": building}}), None)
            .unwrap();
    }
    let s = Service::new(&th.hub, "iothubowner");
    let mut body = method_job("sched", "tags.building = '43'", 60);
    body["startTime"] = json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    let (st, _, created) = put_job(&s, "sched", &body).await;
    assert_eq!((st, created["status"].as_str()), (200, Some("queued")));
    let deadline = tokio::time::Instant::now() + T;
    let job = loop {
        let job = get_job(&s, "sched").await;
        if job["status"] == "scheduled" {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "never scheduled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats(&job), (3, 0, 0, 0, 3), "{job}");
    let q = "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'sched'";
    let (records, _, item_type) = query_all(&s, q, 10).await;
    assert_eq!(item_type, "DeviceJob");
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r["deviceId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["s-1", "s-2", "s-3"]);
    for r in &records {
        assert_eq!(
            (r["status"].as_str(), r["jobType"].as_str()),
            (Some("scheduled"), Some("scheduleDeviceMethod")),
            "{r}"
        );
        assert_eq!(
            r["startTimeUtc"], "0001-01-01T00:00:00Z",
            "not started: {r}"
        );
    }
    let (mine, _, _) = query_all(
        &s,
        "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 's-2' \
         AND devices.jobs.status = 'scheduled'",
        10,
    )
    .await;
    assert_eq!(mine.len(), 1);

    // "Currently, queries on devices.jobs don't support: Projections, therefore only
    // SELECT * is possible. Conditions that refer to the device twin in addition to job
    // properties. Aggregations, such as count, avg, and group by."
    for bad in [
        "SELECT devices.jobs.deviceId FROM devices.jobs",
        "SELECT COUNT() AS n FROM devices.jobs",
        "SELECT devices.jobs.status, COUNT() FROM devices.jobs GROUP BY devices.jobs.status",
        "SELECT * FROM devices.jobs GROUP BY devices.jobs.status",
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'sched' AND tags.building = '43'",
    ] {
        let (st, code, err) = parts(
            s.req(reqwest::Method::POST, "/devices/query")
                .json(&json!({ "query": bad })),
        )
        .await;
        assert_eq!(
            (st, code.as_deref()),
            (400, Some("ArgumentInvalid")),
            "{bad}: {err}"
        );
        assert!(
            err["Message"]
                .as_str()
                .unwrap()
                .starts_with("ErrorCode:ArgumentInvalid;"),
            "{err}"
        );
    }

    // Cancelling the scheduled job cancels its device records.
    let (st, _, c) = parts(s.req(reqwest::Method::POST, "/jobs/v2/sched/cancel")).await;
    assert_eq!((st, c["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(stats(&c), (3, 0, 3, 0, 0), "{c}");
    let (records, _, _) = query_all(&s, q, 10).await;
    assert!(
        records.iter().all(|r| r["status"] == "canceled"),
        "{records:?}"
    );
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}
