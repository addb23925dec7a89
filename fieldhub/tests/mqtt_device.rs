//! Device endpoint: CONNECT auth, twin GET / reported PATCH / desired notifications, direct
//! methods, telemetry, topic isolation, sessions, one connection per device, token expiry.

use std::time::Duration;

use fieldhub::hub::Sub;
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn twin_methods_and_telemetry_round_trip() {
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let id = hub.create_device("door-1").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "door-1", &id.primary_key, false);
    assert!(!dev.connected().await, "no session on first connect");

    assert_eq!(
        dev.subscribe("$iothub/twin/res/#").await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    dev.subscribe("$iothub/methods/POST/#").await;
    dev.subscribe("$iothub/twin/PATCH/properties/desired/#")
        .await;

    // Twin GET: device shape, no $metadata.
    let (topic, twin) = dev.twin_get("r1").await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=r1");
    assert_eq!(
        twin,
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );

    // Reported PATCH → 204 with the new $version.
    dev.send(
        "$iothub/twin/PATCH/properties/reported/?$rid=r2",
        r#"{"doorState":"closed"}"#,
    )
    .await;
    let p = dev.publish_received().await;
    assert_eq!(p.topic, "$iothub/twin/res/204/?$rid=r2&$version=2");
    assert!(p.payload.is_empty());
    let full = hub.get_twin("door-1").unwrap();
    assert_eq!(full["properties"]["reported"]["doorState"], "closed");
    assert!(full["properties"]["reported"]["$metadata"]["doorState"]["$lastUpdated"].is_string());

    // Malformed reported patch → 400 with an errorCode body, connection stays.
    dev.send("$iothub/twin/PATCH/properties/reported/?$rid=r3", "{nope")
        .await;
    let p = dev.publish_received().await;
    assert_eq!(p.topic, "$iothub/twin/res/400/?$rid=r3");
    let err: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(err["errorCode"], 400006);

    // Desired change from the service → notification with $version in topic and body.
    hub.update_twin(
        "door-1",
        json!({"properties": {"desired": {"openDurationSec": 5}}}),
        Some("*"),
    )
    .unwrap();
    let p = dev.publish_received().await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(body, json!({"openDurationSec": 5, "$version": 2}));

    // Direct method: the hub's request, the device's answer, the caller's result.
    let h = hub.clone();
    let call = tokio::spawn(async move {
        h.invoke_method(
            "door-1",
            "lockDoor",
            json!({"force": true}),
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .await
    });
    let req = dev.publish_received().await;
    let rid = req
        .topic
        .strip_prefix("$iothub/methods/POST/lockDoor/?$rid=")
        .expect("method topic")
        .to_string();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&req.payload).unwrap(),
        json!({"force": true})
    );
    dev.send(
        &format!("$iothub/methods/res/200/?$rid={rid}"),
        r#"{"locked":true}"#,
    )
    .await;
    let resp = tokio::time::timeout(T, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.payload, json!({"locked": true}));

    // Telemetry with a property bag lands in the buffer.
    let mut events = hub.telemetry_events();
    dev.send(
        "devices/door-1/messages/events/%24.ct=application%2Fjson&k=v",
        r#"{"t":1}"#,
    )
    .await;
    let msg = tokio::time::timeout(T, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.device_id, "door-1");
    assert_eq!(
        msg.properties,
        vec![
            ("$.ct".to_string(), "application/json".to_string()),
            ("k".to_string(), "v".to_string())
        ]
    );
    assert_eq!(hub.telemetry("door-1").len(), 1);
}

#[tokio::test]
async fn wrong_key_gets_connack_5_and_unknown_device_too() {
    let th = start_hub().await;
    let id = th.hub.hub.create_device("d1").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "d1", &id.secondary_key, true);
    assert!(!dev.connected().await, "secondary key works");
    let mut bad = TestDevice::with_key(&th.hub, "d1", &fieldhub::auth::generate_key(), true);
    assert_eq!(bad.connack().await.0, ConnectReturnCode::NotAuthorized);
    let mut ghost = TestDevice::with_key(&th.hub, "ghost", &id.primary_key, true);
    assert_eq!(ghost.connack().await.0, ConnectReturnCode::NotAuthorized);
    // A token for d1 presented by client id d2 (with d2 in the username) does not cover d2.
    th.hub.hub.create_device("d2").unwrap();
    let mut stolen = connect(
        &th.hub,
        "d2",
        &device_token("d1", &id.primary_key, now() + 60),
        true,
    );
    assert_eq!(stolen.connack().await.0, ConnectReturnCode::NotAuthorized);
}

#[tokio::test]
async fn expired_token_refused_and_connection_dropped_at_expiry() {
    let th = start_hub().await;
    let id = th.hub.hub.create_device("d1").unwrap();
    let mut old = connect(
        &th.hub,
        "d1",
        &device_token("d1", &id.primary_key, now() - 1),
        true,
    );
    assert_eq!(old.connack().await.0, ConnectReturnCode::NotAuthorized);

    let mut short = connect(
        &th.hub,
        "d1",
        &device_token("d1", &id.primary_key, now() + 2),
        true,
    );
    short.connected().await;
    assert!(th.hub.hub.is_connected("d1"));
    // The hub closes the connection when `se` passes (bounded by T).
    short.closed().await;
    assert!(
        th.hub
            .hub
            .wait_disconnected("d1", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn foreign_topics_disconnect_only_the_offender() {
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let a = hub.create_device("a").unwrap();
    let b = hub.create_device("b").unwrap();
    let mut dev_b = TestDevice::with_key(&th.hub, "b", &b.primary_key, true);
    dev_b.connected().await;
    dev_b.subscribe("$iothub/twin/res/#").await;

    // Publishing as B → A is disconnected.
    let mut dev_a = TestDevice::with_key(&th.hub, "a", &a.primary_key, true);
    dev_a.connected().await;
    dev_a.send("devices/b/messages/events/", "spoof").await;
    dev_a.closed().await;
    assert!(hub.telemetry("b").is_empty());

    // Subscribing to B's C2D topic → disconnected.
    let mut dev_a = TestDevice::with_key(&th.hub, "a", &a.primary_key, true);
    dev_a.connected().await;
    dev_a
        .client
        .subscribe("devices/b/messages/devicebound/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    dev_a.closed().await;

    // An unsupported filter only gets SUBACK 0x80.
    let mut dev_a = TestDevice::with_key(&th.hub, "a", &a.primary_key, true);
    dev_a.connected().await;
    assert_eq!(
        dev_a.subscribe("some/other/topic").await,
        vec![SubscribeReasonCode::Failure]
    );

    // B was never affected.
    assert!(hub.is_connected("b"));
    let (topic, _) = dev_b.twin_get("x").await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=x");
}

#[tokio::test]
async fn qos2_publish_closes_the_connection() {
    let th = start_hub().await;
    let a = th.hub.hub.create_device("a").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "a", &a.primary_key, true);
    dev.connected().await;
    dev.client
        .publish("devices/a/messages/events/", QoS::ExactlyOnce, false, "x")
        .await
        .unwrap();
    dev.closed().await;
    assert!(th.hub.hub.telemetry("a").is_empty());
}

#[tokio::test]
async fn session_subscriptions_survive_reconnect_and_new_connection_replaces_old() {
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let a = hub.create_device("a").unwrap();
    let mut first = TestDevice::with_key(&th.hub, "a", &a.primary_key, false);
    assert!(!first.connected().await);
    first.subscribe("$iothub/methods/POST/#").await;

    // Second connection with the same id: the first one is closed, the session is present.
    let mut second = TestDevice::with_key(&th.hub, "a", &a.primary_key, false);
    assert!(second.connected().await, "session present after reconnect");
    first.closed().await;
    assert!(hub.subscriptions("a").contains(&Sub::Methods));

    // Methods reach the new connection without re-subscribing.
    let h = hub.clone();
    let call = tokio::spawn(async move {
        h.invoke_method("a", "ping", json!(null), T, Duration::from_secs(5))
            .await
    });
    let req = second.publish_received().await;
    let rid = req.topic.split("$rid=").nth(1).unwrap().to_string();
    second
        .send(&format!("$iothub/methods/res/201/?$rid={rid}"), "")
        .await;
    let resp = tokio::time::timeout(T, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((resp.status, resp.payload), (201, serde_json::Value::Null));

    // Clean session 1 drops the stored subscriptions.
    let mut clean = TestDevice::with_key(&th.hub, "a", &a.primary_key, true);
    assert!(!clean.connected().await);
    second.closed().await;
    assert!(hub.subscriptions("a").is_empty());
}

#[tokio::test]
async fn disconnect_all_cuts_devices() {
    let th = start_hub().await;
    let a = th.hub.hub.create_device("a").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "a", &a.primary_key, true);
    dev.connected().await;
    th.hub.hub.disconnect_all();
    dev.closed().await;
    assert!(th.hub.hub.wait_disconnected("a", T).await);
}
