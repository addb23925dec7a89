//! Issue 14, item 6: the opt-in S1 throttle profile answers 429 429001 `ThrottlingException`
//! beyond IoT Hub's S1 quotas ("IoT Hub quotas and throttling",
//! https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling), with IoT
//! Hub's error bodies, on the REST API and to devices' MQTT twin requests; the default hub
//! stays unthrottled.

use fieldhub::throttle::ThrottleProfile;
use fieldhub::HubConfig;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

async fn hub_with(throttle: Option<ThrottleProfile>) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HubConfig {
        throttle,
        ..HubConfig::for_tests(dir.path())
    };
    let hub = tokio::time::timeout(T, fieldhub::start(cfg))
        .await
        .unwrap()
        .unwrap();
    TestHub { hub, dir }
}

fn query(s: &Service) -> reqwest::RequestBuilder {
    s.req(Method::POST, "/devices/query")
        .json(&json!({"query": "SELECT * FROM devices"}))
}

#[tokio::test]
async fn s1_profile_throttles_queries_and_methods_with_iot_hub_bodies() {
    let th = hub_with(Some(ThrottleProfile::s1(1))).await;
    th.hub.hub.create_device("d").unwrap();
    let s = Service::new(&th.hub, "iothubowner");
    // S1: 20 queries per minute per unit, refilling one every 3 s: the 21st query is refused
    // (the 22nd on a machine slow enough to spend 3 s on 21 requests).
    let mut statuses = Vec::new();
    for _ in 0..22 {
        let (st, code, body) = parts(query(&s)).await;
        statuses.push(st);
        if st == 429 {
            assert_eq!(code.as_deref(), Some("ThrottlingException"));
            let msg = body["Message"].as_str().unwrap();
            assert!(msg.starts_with("ErrorCode:ThrottlingException;"), "{body}");
            assert!(body["ExceptionMessage"]
                .as_str()
                .unwrap()
                .starts_with("Tracking ID:"));
            break;
        }
        assert_eq!(st, 200);
    }
    let first_429 = statuses.iter().position(|s| *s == 429);
    assert!(
        matches!(first_429, Some(20) | Some(21)),
        "the 21st query within a minute is refused: {statuses:?}"
    );
    // Each operation group has its own quota: the registry still answers.
    let (st, _, _) = parts(s.req(Method::GET, "/devices/d")).await;
    assert_eq!(st, 200);

    // Direct methods: 160 KB/s per unit in 4 KB chunks. A 100 KB payload is 25 chunks: the
    // first call passes the throttle (and finds the device offline), the second exceeds it
    // and gets the method route's envelope.
    let call = json!({"methodName": "m", "payload": {"x": "y".repeat(100 * 1024)},
        "responseTimeoutInSeconds": 5});
    let (st, code, _) = parts(s.req(Method::POST, "/twins/d/methods").json(&call)).await;
    assert_eq!((st, code.as_deref()), (404, Some("DeviceNotOnline")));
    let (st, code, body) = parts(s.req(Method::POST, "/twins/d/methods").json(&call)).await;
    assert_eq!((st, code.as_deref()), (429, Some("ThrottlingException")));
    let inner: serde_json::Value = serde_json::from_str(body["Message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["errorCode"], 429001, "{body}");
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}

#[tokio::test]
async fn default_hub_is_unthrottled() {
    let th = hub_with(None).await;
    let s = Service::new(&th.hub, "iothubowner");
    for i in 0..30 {
        let (st, _, body) = parts(query(&s)).await;
        assert_eq!(st, 200, "query {i}: {body}");
    }
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}

/// Sends every request (topic, payload) at once over one device connection, QoS 0 and
/// pipelined so that no request waits on a round trip, and returns each response's topic and
/// payload, in order (the hub answers a connection's requests in the order they came).
async fn pipelined(
    hub: &fieldhub::RunningHub,
    id: &str,
    key: &str,
    requests: Vec<(String, Vec<u8>)>,
) -> Vec<(String, bytes::Bytes)> {
    use futures::{SinkExt as _, StreamExt as _};
    use rumqttc::mqttbytes::v4::{Packet, Publish, Subscribe};
    use rumqttc::mqttbytes::QoS;

    let mut conn = raw_connect(hub).await;
    let user = format!("localhost/{id}/?api-version=2021-04-12");
    let pw = device_token(id, key, now() + 600);
    match raw_exchange(&mut conn, raw_connect_packet(id, &user, &pw, 60)).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, rumqttc::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let mut sub = Subscribe::new("$iothub/twin/res/#", QoS::AtMostOnce);
    sub.pkid = 1;
    assert!(matches!(
        raw_exchange(&mut conn, Packet::Subscribe(sub)).await,
        Some(Packet::SubAck(_))
    ));
    let n = requests.len();
    let (mut tx, mut rx) = conn.split();
    // Written while the answers are read: neither side's socket buffer has to hold it all.
    let writer = async move {
        for (topic, body) in requests {
            let p = Publish::new(topic, QoS::AtMostOnce, body);
            tx.feed(Packet::Publish(p)).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    };
    let reader = async {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match rx.next().await {
                Some(Ok(Packet::Publish(p))) => got.push((p.topic, p.payload)),
                Some(Ok(_)) => {}
                other => panic!("connection ended after {} answers: {other:?}", got.len()),
            }
        }
        got
    };
    let (_tx, got) = tokio::time::timeout(T, async { tokio::join!(writer, reader) })
        .await
        .expect("every request answered in time");
    got
}

fn twin_gets(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("$iothub/twin/GET/?$rid=g{i}"), Vec::new()))
        .collect()
}

/// The status of a twin response topic `$iothub/twin/res/{status}/?$rid={rid}...`, checking
/// the `$rid`.
fn status_of(topic: &str, rid: &str) -> u16 {
    let rest = topic.strip_prefix("$iothub/twin/res/").unwrap();
    let (status, query) = rest.split_once("/?").unwrap();
    assert!(
        query.split('&').any(|kv| kv == format!("$rid={rid}")),
        "{topic} answers {rid}"
    );
    status.parse().unwrap()
}

/// A refused twin request: 429 on its response topic with the body every other twin error
/// has, carrying 429001 `ThrottlingException` as the REST 429s do.
fn assert_throttled_body(body: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["errorCode"], 429001, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("Throttling limit exceeded"), "{v}");
}

/// Issue 14, device side of item 6: under the S1 profile a device's MQTT twin GETs and
/// reported-properties PATCHes count against IoT Hub's S1 twin quotas, 100 reads and 50
/// updates per second ("IoT Hub quotas and throttling",
/// https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling). Beyond the
/// burst the hub answers `$iothub/twin/res/429/?$rid=…` and a refused patch is not applied.
#[tokio::test]
async fn s1_profile_throttles_device_twin_reads_and_reported_patches() {
    let th = hub_with(Some(ThrottleProfile::s1(1))).await;
    let d = th.hub.hub.create_device("d").unwrap();

    // Reads: a full second's worth (100) passes, then the bucket refills at 100/s, far
    // slower than pipelined requests are answered.
    let n = 300;
    let started = tokio::time::Instant::now();
    let answers = pipelined(&th.hub, "d", &d.primary_key, twin_gets(n)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let statuses: Vec<u16> = answers
        .iter()
        .enumerate()
        .map(|(i, (topic, _))| status_of(topic, &format!("g{i}")))
        .collect();
    assert!(
        statuses[..100].iter().all(|s| *s == 200),
        "the first 100 reads pass: {statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok < n, "some reads are refused: {statuses:?}");
    assert!(
        ok as f64 <= 100.0 + 100.0 * elapsed + 1.0,
        "{ok} reads passed in {elapsed} s"
    );
    for ((_, body), status) in answers.iter().zip(&statuses) {
        assert!(matches!(status, 200 | 429), "{statuses:?}");
        if *status == 429 {
            assert_throttled_body(body);
        }
    }

    // Updates: 50 pass, then 50/s; each refused patch leaves the twin as it was.
    let before = th.hub.hub.get_twin("d").unwrap()["properties"]["reported"]["$version"]
        .as_u64()
        .unwrap();
    let patches: Vec<_> = (0..n)
        .map(|i| {
            let topic = format!("$iothub/twin/PATCH/properties/reported/?$rid=p{i}");
            (topic, json!({ "n": i }).to_string().into_bytes())
        })
        .collect();
    let answers = pipelined(&th.hub, "d", &d.primary_key, patches).await;
    let statuses: Vec<u16> = answers
        .iter()
        .enumerate()
        .map(|(i, (topic, _))| status_of(topic, &format!("p{i}")))
        .collect();
    assert!(
        statuses[..50].iter().all(|s| *s == 204),
        "the first 50 patches pass: {statuses:?}"
    );
    let applied: Vec<usize> = (0..n).filter(|i| statuses[*i] == 204).collect();
    assert!(applied.len() < n, "some patches are refused: {statuses:?}");
    for ((_, body), status) in answers.iter().zip(&statuses) {
        assert!(matches!(status, 204 | 429), "{statuses:?}");
        if *status == 429 {
            assert_throttled_body(body);
        }
    }
    let reported = &th.hub.hub.get_twin("d").unwrap()["properties"]["reported"];
    assert_eq!(
        reported["$version"].as_u64().unwrap(),
        before + applied.len() as u64,
        "only the accepted patches changed the twin: {reported}"
    );
    assert_eq!(reported["n"], *applied.last().unwrap(), "{reported}");
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}

#[tokio::test]
async fn default_hub_does_not_throttle_device_twins() {
    let th = hub_with(None).await;
    let d = th.hub.hub.create_device("d").unwrap();
    let answers = pipelined(&th.hub, "d", &d.primary_key, twin_gets(300)).await;
    for (i, (topic, _)) in answers.iter().enumerate() {
        assert_eq!(status_of(topic, &format!("g{i}")), 200, "read {i}");
    }
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
}
