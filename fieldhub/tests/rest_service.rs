//! Service endpoint: registry, twins with etags, methods, SAS permissions, error bodies.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

/// A method route's envelope carries the error as a JSON string inside `Message`.
fn json_in_message_code(body: &Value) -> i64 {
    let inner: Value = serde_json::from_str(body["Message"].as_str().unwrap()).unwrap();
    inner["errorCode"].as_i64().unwrap()
}

#[tokio::test]
async fn registry_create_get_list_delete() {
    let th = start_hub().await;
    let s = Service::new(&th.hub, "iothubowner");
    let body = json!({"deviceId": "door-01", "status": "enabled",
        "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "", "secondaryKey": ""}},
        "capabilities": {"iotEdge": false}});
    let (st, _, dev) = parts(s.req(Method::PUT, "/devices/door-01").json(&body)).await;
    assert_eq!(st, 200);
    assert_eq!(dev["deviceId"], "door-01");
    assert_eq!(dev["connectionState"], "Disconnected");
    let pk = dev["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(pk.len(), 44, "32 random bytes, base64");

    // Existing device without If-Match → 409; with a stale etag → 412; with "*" → update.
    let (st, code, err) = parts(s.req(Method::PUT, "/devices/door-01").json(&body)).await;
    assert_eq!((st, code.as_deref()), (409, Some("DeviceAlreadyExists")));
    assert!(err["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:DeviceAlreadyExists;"));
    let (st, code, _) = parts(
        s.req(Method::PUT, "/devices/door-01")
            .header("If-Match", "\"bm9wZQ==\"")
            .json(&body),
    )
    .await;
    assert_eq!((st, code.as_deref()), (412, Some("PreconditionFailed")));
    let (st, _, upd) = parts(
        s.req(Method::PUT, "/devices/door-01")
            .header("If-Match", "\"*\"")
            .json(&json!({"deviceId": "door-01", "status": "disabled"})),
    )
    .await;
    assert_eq!((st, upd["status"].as_str()), (200, Some("disabled")));
    assert_eq!(
        upd["authentication"]["symmetricKey"]["primaryKey"], pk,
        "keys kept"
    );

    let (st, _, got) = parts(s.req(Method::GET, "/devices/door-01")).await;
    assert_eq!((st, got["etag"].clone()), (200, upd["etag"].clone()));
    for path in ["/devices", "/devices/"] {
        let (st, _, list) = parts(s.req(Method::GET, path)).await;
        assert_eq!(st, 200);
        assert_eq!(list.as_array().unwrap().len(), 1);
    }

    let resp = s
        .req(Method::DELETE, "/devices/door-01")
        .header("If-Match", "\"*\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (st, code, err) = parts(s.req(Method::GET, "/devices/door-01")).await;
    assert_eq!((st, code.as_deref()), (404, Some("DeviceNotFound")));
    assert!(err["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:DeviceNotFound;"));
}

#[tokio::test]
async fn twin_patch_put_and_etags() {
    let th = start_hub().await;
    th.hub.hub.create_device("d").unwrap();
    let s = Service::new(&th.hub, "service");
    let (st, _, twin) = parts(s.req(Method::GET, "/twins/d")).await;
    assert_eq!(st, 200);
    assert_eq!(twin["properties"]["desired"]["$version"], 1);
    let etag = twin["etag"].as_str().unwrap().to_string();

    let patch = json!({"tags": {"building": "43"}, "properties": {"desired": {"mode": "auto"}}});
    let (st, _, t2) = parts(
        s.req(Method::PATCH, "/twins/d")
            .header("If-Match", format!("\"{etag}\""))
            .json(&patch),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(t2["tags"], json!({"building": "43"}));
    assert_eq!(t2["properties"]["desired"]["mode"], "auto");
    assert_eq!(t2["properties"]["desired"]["$version"], 2);
    assert_eq!(
        t2["properties"]["desired"]["$metadata"]["mode"]["$lastUpdatedVersion"],
        2
    );
    assert_ne!(t2["etag"], twin["etag"]);

    // The old etag no longer matches.
    let (st, code, _) = parts(
        s.req(Method::PATCH, "/twins/d")
            .header("If-Match", format!("\"{etag}\""))
            .json(&patch),
    )
    .await;
    assert_eq!((st, code.as_deref()), (412, Some("PreconditionFailed")));

    // PUT replaces tags and desired; reported from the service is ignored.
    let (st, _, t3) = parts(
        s.req(Method::PUT, "/twins/d")
            .header("If-Match", "*")
            .json(&json!({
                "deviceId": "d", "etag": null,
                "tags": {"floor": "3"},
                "properties": {"desired": {"x": 1, "$version": 99}, "reported": {"evil": 1}}
            })),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(t3["tags"], json!({"floor": "3"}));
    assert_eq!(t3["properties"]["desired"]["x"], 1);
    assert!(t3["properties"]["desired"].get("mode").is_none());
    assert!(t3["properties"]["reported"].get("evil").is_none());

    // Invalid key names → 400 400004.
    let (st, code, _) = parts(
        s.req(Method::PATCH, "/twins/d")
            .json(&json!({"properties": {"desired": {"a.b": 1}}})),
    )
    .await;
    assert_eq!((st, code.as_deref()), (400, Some("ArgumentInvalid")));
}

/// Issue 14, items 3 and 4, by the twin guide ("Understand and use device twins in IoT Hub",
/// https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins): its depth-10
/// example is accepted (one level more is not); sizes count keys and values without JSON
/// punctuation, so 8 KB of tags is more than 8 KB of JSON; integers beyond ±2^52 are refused.
#[tokio::test]
async fn twin_limits_follow_the_twin_guide() {
    let th = start_hub().await;
    th.hub.hub.create_device("d").unwrap();
    let s = Service::new(&th.hub, "iothubowner");
    let patch = |body: serde_json::Value| s.req(Method::PATCH, "/twins/d").json(&body);

    let levels = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    let nest = |names: &[&str]| {
        names
            .iter()
            .rev()
            .fold(json!({"property": "value"}), |v, n| json!({ *n: v }))
    };
    let (st, _, body) = parts(patch(json!({"tags": nest(&levels)}))).await;
    assert_eq!(st, 200, "the guide's depth-10 example: {body}");
    let eleven: Vec<&str> = levels.iter().copied().chain(["eleven"]).collect();
    let (st, code, body) = parts(patch(json!({"tags": nest(&eleven)}))).await;
    assert_eq!((st, code.as_deref()), (400, Some("ArgumentInvalid")));
    assert!(
        body["Message"].as_str().unwrap().contains("deeper"),
        "{body}"
    );

    // 500 tags of 4-character keys and 12-character values: 8,000 by IoT Hub's count
    // (under 8 KB), about 11,000 bytes of JSON.
    let tags: serde_json::Map<String, serde_json::Value> = (0..500)
        .map(|i| (format!("t{i:03}"), json!("v".repeat(12))))
        .collect();
    assert!(serde_json::to_vec(&tags).unwrap().len() > 8 * 1024);
    let (st, _, body) = parts(patch(json!({"tags": null}))).await;
    assert_eq!(st, 200, "{body}");
    let (st, _, body) = parts(patch(json!({"tags": tags}))).await;
    assert_eq!(st, 200, "8,000 by IoT Hub's count: {body}");

    for bad in [
        json!(4_503_599_627_370_496_i64),
        json!(-4_503_599_627_370_497_i64),
    ] {
        let (st, code, body) = parts(patch(json!({"properties": {"desired": {"n": bad}}}))).await;
        assert_eq!(
            (st, code.as_deref()),
            (400, Some("ArgumentInvalid")),
            "{bad}: {body}"
        );
    }
    let (st, _, body) = parts(patch(
        json!({"properties": {"desired": {"n": 4_503_599_627_370_495_i64}}}),
    ))
    .await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test]
async fn malformed_json_and_oversized_twin_are_400() {
    let th = start_hub().await;
    th.hub.hub.create_device("d").unwrap();
    let s = Service::new(&th.hub, "iothubowner");
    let (st, code, err) = parts(
        s.req(Method::PATCH, "/twins/d")
            .header("Content-Type", "application/json; charset=utf-8")
            .body("{\"tags\": "),
    )
    .await;
    assert_eq!((st, code.as_deref()), (400, Some("IotHubFormatError")));
    assert!(err["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:IotHubFormatError;"));

    let mut desired = serde_json::Map::new();
    for i in 0..10 {
        desired.insert(format!("k{i}"), json!("z".repeat(4000)));
    }
    let (st, code, _) = parts(
        s.req(Method::PATCH, "/twins/d")
            .json(&json!({"properties": {"desired": desired}})),
    )
    .await;
    assert_eq!((st, code.as_deref()), (400, Some("ArgumentInvalid")));
    // Nothing was applied, and the hub keeps serving.
    let (st, _, twin) = parts(s.req(Method::GET, "/twins/d")).await;
    assert_eq!(
        (st, twin["properties"]["desired"]["$version"].as_i64()),
        (200, Some(1))
    );
}

#[tokio::test]
async fn permissions_are_checked_per_policy() {
    let th = start_hub().await;
    th.hub.hub.create_device("d").unwrap();
    let ro = Service::new(&th.hub, "registryRead");
    let (st, _, _) = parts(ro.req(Method::GET, "/devices/d")).await;
    assert_eq!(st, 200);
    let call = json!({"methodName": "lockDoor", "payload": null, "responseTimeoutInSeconds": 5});
    let (st, code, _) = parts(ro.req(Method::POST, "/twins/d/methods").json(&call)).await;
    assert_eq!(
        (st, code.as_deref()),
        (401, Some("IotHubUnauthorizedAccess"))
    );
    let (st, code, _) = parts(ro.req(Method::PUT, "/devices/e").json(&json!({}))).await;
    assert_eq!(
        (st, code.as_deref()),
        (401, Some("IotHubUnauthorizedAccess"))
    );

    // The service policy cannot write the registry.
    let svc = Service::new(&th.hub, "service");
    let (st, _, _) = parts(svc.req(Method::PUT, "/devices/e").json(&json!({}))).await;
    assert_eq!(st, 401);

    // No token, a garbage token, an expired token.
    let url = format!("{}/devices/d?api-version=2021-04-12", ro.base);
    let (st, _, _) = parts(ro.http.get(&url)).await;
    assert_eq!(st, 401);
    let (st, _, _) = parts(ro.http.get(&url).header("Authorization", "Bearer x")).await;
    assert_eq!(st, 401);
    let owner = th
        .hub
        .hub
        .policies()
        .iter()
        .find(|p| p.name == "iothubowner")
        .unwrap()
        .clone();
    let expired = iothub_proto::sas::generate(
        &format!("localhost:{}", th.hub.https_addr.port()),
        &owner.primary_key,
        Some("iothubowner"),
        now() - 5,
    )
    .unwrap();
    let (st, _, _) = parts(ro.http.get(&url).header("Authorization", expired)).await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn methods_offline_unknown_timeout_and_success() {
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let d = hub.create_device("d").unwrap();
    let s = Service::new(&th.hub, "service");
    let call = json!({"methodName": "lockDoor", "payload": {"a": 1},
        "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0});
    // Issue 14, item 7: IoT Hub's range is 5 to 300 s (direct methods guide); below is 400.
    let short = json!({"methodName": "lockDoor", "responseTimeoutInSeconds": 4});
    let (st, code, _) = parts(s.req(Method::POST, "/twins/d/methods").json(&short)).await;
    assert_eq!((st, code.as_deref()), (400, Some("ArgumentInvalid")));

    let (st, code, err) = parts(s.req(Method::POST, "/twins/d/methods").json(&call)).await;
    assert_eq!((st, code.as_deref()), (404, Some("DeviceNotOnline")));
    assert_eq!(json_in_message_code(&err), 404103);
    let (st, code, _) = parts(s.req(Method::POST, "/twins/nobody/methods").json(&call)).await;
    assert_eq!((st, code.as_deref()), (404, Some("DeviceNotFound")));

    // Connected and subscribed, but never answering → 504 504101.
    let mut dev = TestDevice::with_key(&th.hub, "d", &d.primary_key, false);
    dev.connected().await;
    dev.subscribe("$iothub/methods/POST/#").await;
    let (st, code, err) = parts(s.req(Method::POST, "/twins/d/methods").json(&call)).await;
    assert_eq!((st, code.as_deref()), (504, Some("GatewayTimeout")));
    assert_eq!(json_in_message_code(&err), 504101);
    let stale = dev.publish_received().await;
    assert!(stale
        .topic
        .starts_with("$iothub/methods/POST/lockDoor/?$rid="));

    // Answering device → 200 {status, payload}.
    let req = s.req(Method::POST, "/twins/d/methods").json(&json!({
        "methodName": "lockDoor", "payload": {"a": 1}, "responseTimeoutInSeconds": 10}));
    let pending = tokio::spawn(parts(req));
    let p = dev.publish_received().await;
    let rid = p.topic.split("$rid=").nth(1).unwrap().to_string();
    dev.send(
        &format!("$iothub/methods/res/500/?$rid={rid}"),
        r#"{"error":"jammed"}"#,
    )
    .await;
    let (st, _, body) = tokio::time::timeout(T, pending).await.unwrap().unwrap();
    assert_eq!(st, 200);
    assert_eq!(body, json!({"status": 500, "payload": {"error": "jammed"}}));
}

#[tokio::test]
async fn connection_strings_name_the_hub_and_gateway_port() {
    let th = start_hub().await;
    let hub = &th.hub.hub;
    let d = hub.create_device("door-9").unwrap();
    let cs =
        iothub_proto::ConnectionString::parse(&hub.device_connection_string("door-9").unwrap())
            .unwrap();
    assert_eq!(cs.host_name, "localhost");
    assert_eq!(cs.device_id.as_deref(), Some("door-9"));
    assert_eq!(cs.key, d.primary_key);
    assert_eq!(
        cs.gateway_host_name,
        Some(format!("localhost:{}", th.hub.mqtt_addr.port()))
    );
    assert_eq!(hub.device_connection_string("nobody"), None);

    let svc = iothub_proto::ConnectionString::parse(&th.hub.service_connection_string).unwrap();
    assert_eq!(
        svc.host_name,
        format!("localhost:{}", th.hub.https_addr.port())
    );
    assert_eq!(svc.key_name.as_deref(), Some("iothubowner"));
    let on_disk = std::fs::read_to_string(th.dir.path().join("service.connstr")).unwrap();
    assert_eq!(on_disk.trim(), th.hub.service_connection_string);
    assert!(th.hub.ca_path.exists());
}

/// Paths and methods the hub does not serve answer 400 400003 `InvalidOperation`, never a
/// 404: the .NET service SDK maps every 404 to `DeviceNotFoundException` whatever its code
/// (Azure/azure-iot-sdk-csharp, common/src/service/ExceptionHandlingHelper.cs), and statuses
/// it does not know (405, 501) to a transient `IotHubException` (HttpClientHelper.cs,
/// `MapToExceptionAsync`). A 400 is `ArgumentException` there and `ArgumentError` in Node
/// (azure-iot-sdk-node, common/transport/http/src/rest_api_client.ts, `translateError`). What
/// IoT Hub answers for a route it lacks is not documented.
#[tokio::test]
async fn unsupported_routes_are_400_invalid_operation_not_device_not_found() {
    let th = start_hub().await;
    th.hub.hub.create_device("d").unwrap();
    let s = Service::new(&th.hub, "iothubowner");
    for (method, path) in [
        (Method::GET, "/configurations"),
        (Method::GET, "/devices/d/modules"),
        (Method::GET, "/statistics/devices"),
        (Method::GET, "/no/such/thing"),
        // A path the hub serves, with a method it does not.
        (Method::DELETE, "/devices/query"),
        (Method::POST, "/twins/d"),
    ] {
        let (st, code, err) = parts(s.req(method.clone(), path)).await;
        assert_eq!(
            (st, code.as_deref()),
            (400, Some("InvalidOperation")),
            "{method} {path}: {err}"
        );
        let message = err["Message"].as_str().unwrap();
        assert!(
            message.starts_with("ErrorCode:InvalidOperation;") && message.contains(path),
            "{message}"
        );
        assert!(err["ExceptionMessage"]
            .as_str()
            .unwrap()
            .starts_with("Tracking ID:"));
    }
    // Known routes still answer as before.
    let (st, code, _) = parts(s.req(Method::GET, "/devices/nobody")).await;
    assert_eq!((st, code.as_deref()), (404, Some("DeviceNotFound")));
}
