//! Issue 14, item 6: the opt-in S1 throttle profile answers 429 429001 `ThrottlingException`
//! beyond IoT Hub's S1 quotas ("IoT Hub quotas and throttling",
//! https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling), with IoT
//! Hub's error bodies; the default hub stays unthrottled.

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
