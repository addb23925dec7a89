//! Device endpoint edge cases with a hand-driven client: keep-alive expiry, CONNACK codes for
//! bad usernames and client ids, garbage bytes, the Will, desired notifications only when
//! subscribed, and methods waiting for a device to connect.

use std::time::Duration;

use fieldhub::hub::Sub;
use fieldhub::HubConfig;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::support::*;

fn username(id: &str) -> String {
    format!("localhost/{id}/?api-version=2021-04-12")
}

#[tokio::test]
async fn silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let mut conn = raw_connect(&th.hub).await;
    let pw = device_token("d", &d.primary_key, now() + 600);
    let started = tokio::time::Instant::now();
    match raw_exchange(&mut conn, raw_connect_packet("d", &username("d"), &pw, 1)).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // A ping keeps it alive; then silence ends it after ~1.5 s.
    assert_eq!(
        raw_exchange(&mut conn, Packet::PingReq).await,
        Some(Packet::PingResp)
    );
    assert_eq!(raw_next(&mut conn).await, None);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed too early: {elapsed:?}"
    );
    assert!(th.hub.hub.wait_disconnected("d", T).await);
}

#[tokio::test]
async fn connack_codes_for_bad_usernames_and_client_ids() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let pw = device_token("d", &d.primary_key, now() + 600);
    for (id, user, code) in [
        ("d", "garbage", ConnectReturnCode::BadUserNamePassword),
        (
            "other",
            username("d").as_str(),
            ConnectReturnCode::BadClientId,
        ),
        (
            "d",
            "localhost/d/module1/?api-version=1",
            ConnectReturnCode::NotAuthorized,
        ),
    ] {
        let mut conn = raw_connect(&th.hub).await;
        match raw_exchange(&mut conn, raw_connect_packet(id, user, &pw, 60)).await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, code, "{id} {user}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        assert_eq!(
            raw_next(&mut conn).await,
            None,
            "refused connections are closed"
        );
    }
    // The old username form without '?' is accepted.
    let mut conn = raw_connect(&th.hub).await;
    let old = "localhost/d/api-version=2016-11-14";
    match raw_exchange(&mut conn, raw_connect_packet("d", old, &pw, 60)).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let mut good = TestDevice::with_key(&th.hub, "d", &d.primary_key, true);
    good.connected().await;
    good.subscribe("$iothub/twin/res/#").await;

    let mut conn = raw_connect(&th.hub).await;
    conn.get_mut()
        .write_all(&[0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02])
        .await
        .unwrap();
    assert_eq!(raw_next(&mut conn).await, None);

    let (topic, _) = good.twin_get("still-here").await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=still-here");
}

#[tokio::test]
async fn will_is_delivered_as_telemetry_when_the_connection_is_lost() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let mut conn = raw_connect(&th.hub).await;
    let mut c = rumqttc::mqttbytes::v4::Connect::new("d");
    c.keep_alive = 60;
    c.set_login(
        username("d"),
        device_token("d", &d.primary_key, now() + 600),
    );
    c.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
        "devices/d/messages/events/",
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let mut events = th.hub.hub.telemetry_events();
    assert!(matches!(
        raw_exchange(&mut conn, Packet::Connect(c)).await,
        Some(Packet::ConnAck(_))
    ));
    drop(conn);
    let msg = tokio::time::timeout(T, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"gone");
    assert!(msg
        .properties
        .contains(&("iothub-MessageType".to_string(), "Will".to_string())));
}

#[tokio::test]
async fn desired_patches_only_reach_subscribed_devices() {
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let d = hub.create_device("d").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "d", &d.primary_key, true);
    dev.connected().await;
    dev.subscribe("$iothub/twin/res/#").await;
    hub.update_twin("d", json!({"properties": {"desired": {"a": 1}}}), None)
        .unwrap();
    dev.subscribe("$iothub/twin/PATCH/properties/desired/#")
        .await;
    hub.update_twin("d", json!({"properties": {"desired": {"a": 2}}}), None)
        .unwrap();
    // The first message the device sees is the second patch (version 3), not the first.
    let p = dev.publish_received().await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=3");
    // A tags-only patch notifies nobody: the next message is the twin GET answer.
    hub.update_twin("d", json!({"tags": {"t": 1}}), None)
        .unwrap();
    let (topic, twin) = dev.twin_get("g").await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=g");
    assert_eq!(twin["desired"], json!({"a": 2, "$version": 3}));
}

#[tokio::test]
async fn method_waits_for_connect_timeout() {
    let th = start_hub().await;
    let hub = th.hub.hub.clone();
    let d = hub.create_device("d").unwrap();
    let h = hub.clone();
    let call = tokio::spawn(async move {
        h.invoke_method("d", "m", json!(1), T, Duration::from_secs(10))
            .await
    });
    let mut dev = TestDevice::with_key(&th.hub, "d", &d.primary_key, false);
    dev.connected().await;
    dev.subscribe("$iothub/methods/POST/#").await;
    assert!(hub.wait_ready("d", Some(Sub::Methods), T).await);
    let req = dev.publish_received().await;
    let rid = req.topic.split("$rid=").nth(1).unwrap().to_string();
    dev.send(&format!("$iothub/methods/res/200/?$rid={rid}"), "\"ok\"")
        .await;
    let resp = tokio::time::timeout(T, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((resp.status, resp.payload), (200, json!("ok")));
}

/// "A device can only subscribe to five topics at a time" ("Communicate with an IoT hub using
/// the MQTT protocol", <https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>).
/// The guide does not say how a sixth is refused; it gets SUBACK 0x80 and the five held keep
/// working. Renewing a held filter does not count twice, and unsubscribing frees a place.
#[tokio::test]
async fn a_sixth_topic_filter_is_refused_and_the_five_held_keep_working() {
    use rumqttc::SubscribeReasonCode::{Failure, Success};
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let d = hub.create_device("d").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "d", &d.primary_key, true);
    dev.connected().await;
    for f in [
        "$iothub/twin/res/#",
        "$iothub/methods/POST/lock/#",
        "$iothub/methods/POST/unlock/#",
        "$iothub/methods/POST/pulse/#",
        "devices/d/messages/devicebound/#",
    ] {
        assert!(matches!(dev.subscribe(f).await[..], [Success(_)]), "{f}");
    }
    assert_eq!(
        dev.subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await,
        vec![Failure],
        "a sixth filter"
    );
    assert!(!hub.subscriptions("d").contains(&Sub::DesiredPatches));
    assert!(matches!(
        dev.subscribe("$iothub/twin/res/#").await[..],
        [Success(_)]
    ));
    let (topic, _) = dev.twin_get("held").await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=held");

    // One per-method filter goes: the methods subscription stays (two more hold it), and
    // the desired-patch filter now fits.
    dev.unsubscribe("$iothub/methods/POST/pulse/#").await;
    assert!(hub.subscriptions("d").contains(&Sub::Methods));
    assert!(matches!(
        dev.subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await[..],
        [Success(_)]
    ));
    assert!(hub.subscriptions("d").contains(&Sub::DesiredPatches));
}

/// The five-topic limit holds for a saved session too: the filters a device subscribed with
/// clean session 0 are still held when it reconnects (MQTT 3.1.1 §3.1.2.4, session present)
/// and after a hub restart, so they count, and a sixth new one is refused as on the first
/// connection. Renewing a restored filter does not count twice; unsubscribing one frees a
/// place.
#[tokio::test]
async fn filters_restored_with_a_saved_session_count_toward_the_five() {
    use rumqttc::SubscribeReasonCode::{Failure, Success};
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let mut dev = TestDevice::with_key(&th.hub, "d", &d.primary_key, false);
    assert!(!dev.connected().await, "no saved session yet");
    for f in [
        "$iothub/twin/res/#",
        "$iothub/methods/POST/lock/#",
        "$iothub/methods/POST/unlock/#",
        "$iothub/methods/POST/pulse/#",
        "devices/d/messages/devicebound/#",
    ] {
        assert!(matches!(dev.subscribe(f).await[..], [Success(_)]), "{f}");
    }
    dev.client.disconnect().await.unwrap();
    assert!(th.hub.hub.wait_disconnected("d", T).await);

    let mut dev = TestDevice::with_key(&th.hub, "d", &d.primary_key, false);
    assert!(dev.connected().await, "session present");
    assert_eq!(
        dev.subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await,
        vec![Failure],
        "a sixth filter next to five restored ones"
    );
    assert!(!th.hub.hub.subscriptions("d").contains(&Sub::DesiredPatches));
    assert!(matches!(
        dev.subscribe("$iothub/twin/res/#").await[..],
        [Success(_)]
    ));
    let (topic, _) = dev.twin_get("restored").await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=restored");
    dev.unsubscribe("$iothub/methods/POST/pulse/#").await;
    assert!(matches!(
        dev.subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await[..],
        [Success(_)]
    ));
    dev.client.disconnect().await.unwrap();
    assert!(th.hub.hub.wait_disconnected("d", T).await);

    // The same five, restored from the database by a restarted hub.
    let TestHub { hub, dir } = th;
    tokio::time::timeout(T, hub.shutdown()).await.unwrap();
    let hub = tokio::time::timeout(T, fieldhub::start(HubConfig::for_tests(dir.path())))
        .await
        .unwrap()
        .unwrap();
    let mut dev = TestDevice::with_key(&hub, "d", &d.primary_key, false);
    assert!(dev.connected().await, "session present after the restart");
    assert_eq!(
        dev.subscribe("$iothub/methods/POST/pulse/#").await,
        vec![Failure],
        "five restored from the database"
    );
    assert!(matches!(
        dev.subscribe("$iothub/methods/POST/lock/#").await[..],
        [Success(_)]
    ));
    dev.client.disconnect().await.unwrap();
    assert!(hub.hub.wait_disconnected("d", T).await);

    // A clean session discards them, and what it subscribes to ends with it, in the
    // database too.
    let mut dev = TestDevice::with_key(&hub, "d", &d.primary_key, true);
    assert!(!dev.connected().await);
    assert!(matches!(
        dev.subscribe("$iothub/twin/res/#").await[..],
        [Success(_)]
    ));
    dev.client.disconnect().await.unwrap();
    assert!(hub.hub.wait_disconnected("d", T).await);
    tokio::time::timeout(T, hub.shutdown()).await.unwrap();
    let hub = tokio::time::timeout(T, fieldhub::start(HubConfig::for_tests(dir.path())))
        .await
        .unwrap()
        .unwrap();
    assert!(hub.hub.subscriptions("d").is_empty());
    let mut dev = TestDevice::with_key(&hub, "d", &d.primary_key, false);
    assert!(!dev.connected().await, "no saved session after a clean one");
    assert!(matches!(
        dev.subscribe("$iothub/methods/POST/pulse/#").await[..],
        [Success(_)]
    ));
    tokio::time::timeout(T, hub.shutdown()).await.unwrap();
}
