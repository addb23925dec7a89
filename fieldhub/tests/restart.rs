//! Persistence: a hub restarted on the same data dir keeps devices, keys, twins, policies,
//! the CA and MQTT session subscriptions.

use fieldhub::hub::Sub;
use fieldhub::HubConfig;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn restart_keeps_devices_keys_twins_and_sessions() {
    let th = start_hub().await;
    let hub = th.hub.hub.clone();
    let d = hub.create_device("door-7").unwrap();
    hub.update_twin(
        "door-7",
        json!({"tags": {"site": "north"}, "properties": {"desired": {"mode": "auto"}}}),
        None,
    )
    .unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "door-7", &d.primary_key, false);
    dev.connected().await;
    dev.subscribe("$iothub/twin/res/#").await;
    dev.send(
        "$iothub/twin/PATCH/properties/reported/?$rid=1",
        r#"{"door":"open"}"#,
    )
    .await;
    assert!(dev
        .publish_received()
        .await
        .topic
        .starts_with("$iothub/twin/res/204/"));
    let twin_before = hub.get_twin("door-7").unwrap();
    let connstr_before = th.hub.service_connection_string.clone();
    let ca_before = th.hub.ca_pem.clone();

    let dir = th.dir;
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
    dev.closed().await;

    let again = tokio::time::timeout(T, fieldhub::start(HubConfig::for_tests(dir.path())))
        .await
        .unwrap()
        .unwrap();
    let hub2 = &again.hub;
    assert_eq!(hub2.get_device("door-7").unwrap(), d);
    let twin_after = hub2.get_twin("door-7").unwrap();
    assert_eq!(twin_after["tags"], twin_before["tags"]);
    assert_eq!(twin_after["properties"], twin_before["properties"]);
    assert_eq!(twin_after["etag"], twin_before["etag"]);
    assert_eq!(again.ca_pem, ca_before);
    // Same key; only the port (ephemeral) may differ.
    let key = |c: &str| c.split("SharedAccessKey=").nth(1).unwrap().to_string();
    assert_eq!(key(&again.service_connection_string), key(&connstr_before));
    assert!(hub2.subscriptions("door-7").contains(&Sub::TwinResponses));

    // The device reconnects with its old key, finds its session, and reads its twin.
    let mut dev = TestDevice::with_key(&again, "door-7", &d.primary_key, false);
    assert!(dev.connected().await, "session present after hub restart");
    let (_, twin) = dev.twin_get("2").await;
    assert_eq!(twin["reported"]["door"], "open");
    assert_eq!(twin["desired"]["mode"], "auto");
    // And the REST side answers with the same policy keys.
    let s = Service::new(&again, "iothubowner");
    let (st, _, _) = parts(s.req(reqwest::Method::GET, "/devices/door-7")).await;
    assert_eq!(st, 200);
    tokio::time::timeout(T, again.shutdown()).await.unwrap();
}
