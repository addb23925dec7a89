//! Issue 14, item 14: what probing the device endpoint found. A token expiring at
//! `u64::MAX`, oversize QoS 1 telemetry, a 60,000-character client id, a username naming
//! another hub, a device-key token for the whole hub and reserved CONNECT flags. Also item 10,
//! the IoT Plug and Play model id a device announces in its CONNECT, and item 11, the QoS of
//! the hub's publishes.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Codec, ConnectReturnCode, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use tokio::io::AsyncWriteExt as _;
use tokio_util::codec::Encoder as _;

use crate::support::*;

fn username(id: &str) -> String {
    format!("localhost/{id}/?api-version=2021-04-12")
}

async fn connack(th: &TestHub, id: &str, user: &str, pw: &str) -> (RawConn, ConnectReturnCode) {
    let mut conn = raw_connect(&th.hub).await;
    match raw_exchange(&mut conn, raw_connect_packet(id, user, pw, 60)).await {
        Some(Packet::ConnAck(a)) => (conn, a.code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// `se=18446744073709551615` used to overflow `Instant` in the connection task, which
/// panicked after the CONNACK and left the device shown as connected.
#[tokio::test]
async fn token_expiring_at_u64_max_connects_and_detaches_cleanly() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let pw = device_token("d", &d.primary_key, u64::MAX);
    assert!(pw.contains("se=18446744073709551615"), "{pw}");
    let (mut conn, code) = connack(&th, "d", &username("d"), &pw).await;
    assert_eq!(code, ConnectReturnCode::Success);
    assert_eq!(
        raw_exchange(&mut conn, Packet::PingReq).await,
        Some(Packet::PingResp),
        "the session outlives its CONNACK"
    );
    drop(conn);
    assert!(th.hub.hub.wait_disconnected("d", T).await);
}

/// IoT Hub's device-to-cloud limit is 256 KB ("IoT Hub quotas and throttling",
/// https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling). A bigger
/// QoS 1 message is refused before its PUBACK (the connection closes without one), so the
/// device never believes a dropped message was delivered.
#[tokio::test]
async fn oversize_qos1_telemetry_is_never_acknowledged() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let pw = device_token("d", &d.primary_key, now() + 600);
    let topic = "devices/d/messages/events/";

    let (mut conn, code) = connack(&th, "d", &username("d"), &pw).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let mut at_limit = Publish::new(topic, QoS::AtLeastOnce, vec![b'x'; 256 * 1024]);
    at_limit.pkid = 1;
    match raw_exchange(&mut conn, Packet::Publish(at_limit)).await {
        Some(Packet::PubAck(a)) => assert_eq!(a.pkid, 1),
        other => panic!("expected PUBACK for 256 KB, got {other:?}"),
    }
    let mut over = Publish::new(topic, QoS::AtLeastOnce, vec![b'x'; 256 * 1024 + 1]);
    over.pkid = 2;
    assert_eq!(
        raw_exchange(&mut conn, Packet::Publish(over)).await,
        None,
        "closed without a PUBACK"
    );
    let kept = th.hub.hub.telemetry("d");
    assert_eq!(kept.len(), 1, "only the message at the limit is kept");
    assert_eq!(kept[0].payload.len(), 256 * 1024);
}

/// Device ids are at most 128 characters ("Device identity properties",
/// https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry): a longer
/// client id is refused as an identifier (the log line is bounded, see `for_log` in
/// mqtt/conn.rs).
#[tokio::test]
async fn oversize_client_id_is_refused_as_identifier() {
    let th = start_hub().await;
    let long = "x".repeat(60_000);
    let (_, code) = connack(&th, &long, &username(&long), "SharedAccessSignature sr=x").await;
    assert_eq!(code, ConnectReturnCode::BadClientId);
}

/// The username is `{iotHub-hostname}/{device-id}/?api-version=…` ("Communicate with an IoT
/// hub using the MQTT protocol", https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub):
/// another hub's name is refused; case and a port do not matter.
#[tokio::test]
async fn username_must_name_this_hub() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let pw = device_token("d", &d.primary_key, now() + 600);
    let (_, code) = connack(
        &th,
        "d",
        "otherhub.azure-devices.net/d/?api-version=2021-04-12",
        &pw,
    )
    .await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    let (_, code) = connack(&th, "d", "LocalHost:8883/d/?api-version=2021-04-12", &pw).await;
    assert_eq!(code, ConnectReturnCode::Success);
}

/// A token signed with a device's key must be scoped to that device
/// (`{host}/devices/{deviceId}`, "Use a symmetric key in the identity registry",
/// https://learn.microsoft.com/azure/iot-hub/iot-hub-dev-guide-sas); `sr=localhost` is refused.
#[tokio::test]
async fn device_key_token_for_the_whole_hub_is_refused() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let wide = iothub_proto::sas::generate("localhost", &d.primary_key, None, now() + 600).unwrap();
    let (_, code) = connack(&th, "d", &username("d"), &wide).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
}

/// MQTT 3.1.1 §3.1.2.3 (http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html):
/// the server must check that the reserved CONNECT flag is zero and disconnect otherwise
/// [MQTT-3.1.2-3]; likewise a password without a user name [MQTT-3.1.2-22] and Will QoS
/// without a Will [MQTT-3.1.2-13]. No CONNACK is sent.
#[tokio::test]
async fn reserved_or_inconsistent_connect_flags_close_without_connack() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let pw = device_token("d", &d.primary_key, now() + 600);
    let mut buf = BytesMut::new();
    let mut codec = Codec {
        max_incoming_size: 1 << 20,
        max_outgoing_size: 1 << 20,
    };
    codec
        .encode(raw_connect_packet("d", &username("d"), &pw, 60), &mut buf)
        .unwrap();
    // Fixed header (1 byte + 2-byte remaining length for this size), "MQTT" with its length,
    // the level, then the flags.
    let flags_at = 1 + 2 + 6 + 1;
    assert_eq!(
        buf[flags_at] & 0xC0,
        0xC0,
        "user name and password flags set"
    );
    let good = buf[flags_at];
    for (what, flags) in [
        ("reserved bit", good | 0x01),
        ("will QoS without will", good | 0x08),
        ("password without user name", good & !0x80),
    ] {
        let mut bytes = buf.clone();
        bytes[flags_at] = flags;
        let mut conn = raw_connect(&th.hub).await;
        tokio::time::timeout(T, conn.get_mut().write_all(&bytes))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            raw_next(&mut conn).await,
            None,
            "{what}: closed without CONNACK"
        );
    }
    // The unmodified packet is accepted.
    let mut conn = raw_connect(&th.hub).await;
    conn.get_mut().write_all(&buf).await.unwrap();
    match raw_next(&mut conn).await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Issue 14, item 10: an IoT Plug and Play device announces its model in the MQTT username
/// (`&model-id=`, "IoT Plug and Play device developer guide",
/// https://learn.microsoft.com/azure/iot/concepts-developer-guide-device); the hub keeps it in
/// the twin's `modelId`, durably, and `WHERE modelId = '…'` finds the device. A model id that
/// is not a DTMI is refused (IoT Hub's behaviour is not documented; the stricter choice).
#[tokio::test]
async fn announced_model_id_is_kept_in_the_twin_and_queryable() {
    let th = start_hub().await;
    let d = th.hub.hub.create_device("pnp").unwrap();
    th.hub.hub.create_device("plain").unwrap();
    let pw = device_token("pnp", &d.primary_key, now() + 600);
    let user =
        "localhost/pnp/?api-version=2020-09-30&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1";
    let (_, code) = connack(&th, "pnp", user, &pw).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let model = "dtmi:com:example:Thermostat;1";
    assert_eq!(th.hub.hub.get_twin("pnp").unwrap()["modelId"], model);
    assert_eq!(th.hub.hub.get_twin("plain").unwrap()["modelId"], "");

    let s = Service::new(&th.hub, "iothubowner");
    let (st, _, rows) = parts(s.req(reqwest::Method::POST, "/devices/query").json(
        &serde_json::json!({"query": format!("SELECT * FROM devices WHERE modelId = '{model}'")}),
    ))
    .await;
    assert_eq!(st, 200, "{rows}");
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pnp"]);

    let bad = "localhost/pnp/?api-version=2020-09-30&model-id=not-a-model";
    let (_, code) = connack(&th, "pnp", bad, &pw).await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);

    // Kept across a restart.
    let dir = th.dir;
    tokio::time::timeout(T, th.hub.shutdown()).await.unwrap();
    let hub = tokio::time::timeout(
        T,
        fieldhub::start(fieldhub::HubConfig::for_tests(dir.path())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(hub.hub.get_twin("pnp").unwrap()["modelId"], model);
    tokio::time::timeout(T, hub.shutdown()).await.unwrap();
}

/// Issue 14, item 11: the hub publishes to a device at the QoS it granted for the
/// subscription ("IoT Hub grants maximum QoS level 1 in the SUBACK packet. After that, IoT Hub
/// delivers messages to the device using QoS 1", "Communicate with an IoT hub using the MQTT
/// protocol", https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub): QoS 1
/// (with a packet id) for method requests and twin responses subscribed at QoS 1 or 2, QoS 0
/// for desired patches subscribed at QoS 0.
#[tokio::test]
async fn publishes_to_the_device_use_the_granted_qos() {
    use rumqttc::mqttbytes::v4::{PubAck, Subscribe, SubscribeFilter};
    use rumqttc::SubscribeReasonCode;

    let th = start_hub().await;
    let d = th.hub.hub.create_device("d").unwrap();
    let pw = device_token("d", &d.primary_key, now() + 600);
    let (mut conn, code) = connack(&th, "d", &username("d"), &pw).await;
    assert_eq!(code, ConnectReturnCode::Success);
    let sub = Subscribe::new_many([
        SubscribeFilter::new("$iothub/methods/POST/#".into(), QoS::ExactlyOnce),
        SubscribeFilter::new("$iothub/twin/res/#".into(), QoS::AtLeastOnce),
        SubscribeFilter::new(
            "$iothub/twin/PATCH/properties/desired/#".into(),
            QoS::AtMostOnce,
        ),
    ]);
    match raw_exchange(&mut conn, Packet::Subscribe(sub)).await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Success(QoS::AtMostOnce),
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    let hub = th.hub.hub.clone();
    let call = tokio::spawn(async move {
        hub.invoke_method(
            "d",
            "lockDoor",
            serde_json::json!({}),
            std::time::Duration::from_secs(5),
            std::time::Duration::ZERO,
        )
        .await
    });
    let Some(Packet::Publish(req)) = raw_next(&mut conn).await else {
        panic!("no method request");
    };
    assert_eq!(
        (req.qos, req.pkid != 0),
        (QoS::AtLeastOnce, true),
        "{req:?}"
    );
    let rid = req.topic.rsplit("$rid=").next().unwrap().to_owned();
    let mut resp = Publish::new(
        format!("$iothub/methods/res/200/?$rid={rid}"),
        QoS::AtMostOnce,
        "{}",
    );
    resp.pkid = 0;
    use futures::SinkExt as _;
    conn.send(Packet::PubAck(PubAck::new(req.pkid)))
        .await
        .unwrap();
    conn.send(Packet::Publish(resp)).await.unwrap();
    let answer = tokio::time::timeout(T, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 200);

    let get = Publish::new("$iothub/twin/GET/?$rid=7", QoS::AtMostOnce, " ");
    let Some(Packet::Publish(twin)) = raw_exchange(&mut conn, Packet::Publish(get)).await else {
        panic!("no twin response");
    };
    assert!(
        twin.topic.starts_with("$iothub/twin/res/200/"),
        "{}",
        twin.topic
    );
    assert_eq!(twin.qos, QoS::AtLeastOnce);
    assert_ne!(twin.pkid, req.pkid, "a fresh packet id");
    conn.send(Packet::PubAck(PubAck::new(twin.pkid)))
        .await
        .unwrap();

    th.hub
        .hub
        .update_twin(
            "d",
            serde_json::json!({"properties": {"desired": {"a": 1}}}),
            None,
        )
        .unwrap();
    let Some(Packet::Publish(patch)) = raw_next(&mut conn).await else {
        panic!("no desired patch");
    };
    assert!(patch
        .topic
        .starts_with("$iothub/twin/PATCH/properties/desired/"));
    assert_eq!(patch.qos, QoS::AtMostOnce);
}
