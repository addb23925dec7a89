//! Helpers for the job tests: hubs with chosen job limits, MQTT devices over TLS that answer
//! direct methods and report what they saw, and REST helpers for jobs and paged queries.

use std::sync::Arc;
use std::time::Duration;

use fieldhub::{HubConfig, RunningHub};
use iothub_proto::topics::{self, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::support::{device_token, now, parts, Service, TestHub, T};

/// Starts a hub in a fresh temp dir with `adjust` applied to the test config.
pub async fn start_with(adjust: impl FnOnce(HubConfig) -> HubConfig) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let cfg = adjust(HubConfig::for_tests(dir.path()));
    let hub = tokio::time::timeout(T, fieldhub::start(cfg))
        .await
        .unwrap()
        .unwrap();
    TestHub { hub, dir }
}

/// What a device was sent by the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Method { name: String, payload: Value },
    Desired(Value),
}

/// A connected device that answers every method with status 200 and
/// `{"device": id, "method": name}`, and forwards what it sees to `seen`.
pub struct Responder {
    pub id: String,
    pub seen: mpsc::UnboundedReceiver<(Seen, chrono::DateTime<chrono::Utc>)>,
    task: JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Responder {
    /// Connects and subscribes to methods and desired patches; returns once both SUBACKs
    /// arrived (the hub records subscriptions before acknowledging them).
    pub async fn connect(
        mqtt_port: u16,
        tls: &Arc<rustls::ClientConfig>,
        id: &str,
        key: &str,
    ) -> Responder {
        let mut o = MqttOptions::new(id, "localhost", mqtt_port);
        let token = device_token(id, key, now() + 3600);
        o.set_credentials(format!("localhost/{id}/?api-version=2021-04-12"), token);
        o.set_clean_session(true);
        o.set_keep_alive(Duration::from_secs(60));
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
        let (client, mut eventloop) = AsyncClient::new(o, 16);
        // Hundreds of TLS handshakes at once on a busy 2-core machine can exceed rumqttc's
        // 5 s default.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(30);
        eventloop.set_network_options(net);
        // Queued in the request channel; sent once connected.
        client
            .subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let device = id.to_owned();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut subacks = 0;
            loop {
                let p = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 2 {
                            if let Some(r) = ready.take() {
                                let _ = r.send(Ok(()));
                            }
                        }
                        continue;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => p,
                    Ok(_) => continue,
                    Err(e) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(e.to_string()));
                        }
                        return;
                    }
                };
                let at = chrono::Utc::now();
                match topics::parse(&p.topic) {
                    Some(Topic::MethodRequest { name, rid }) => {
                        let reply = json!({"device": device, "method": name});
                        // try_: this task drives the event loop, so it must never wait on
                        // the request channel it drains.
                        let _ = client.try_publish(
                            topics::method_response(iothub_proto::Status(200), &rid),
                            QoS::AtMostOnce,
                            false,
                            reply.to_string(),
                        );
                        let payload = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let _ = seen_tx.send((Seen::Method { name, payload }, at));
                    }
                    Some(Topic::DesiredPatch { .. }) => {
                        let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let _ = seen_tx.send((Seen::Desired(body), at));
                    }
                    _ => {}
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("device {id} did not get ready: {other:?}"),
        }
        Responder {
            id: id.to_owned(),
            seen,
            task,
        }
    }

    /// The next thing the device saw, with when it saw it.
    pub async fn next_seen(&mut self) -> (Seen, chrono::DateTime<chrono::Utc>) {
        tokio::time::timeout(T, self.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("device {} saw nothing", self.id))
            .unwrap()
    }
}

pub fn client_tls(hub: &RunningHub) -> Arc<rustls::ClientConfig> {
    Arc::new(fieldhub::tls::client_config(&hub.ca_pem).unwrap())
}

/// A `scheduleDeviceMethod` request for `lockDoor`.
pub fn method_job(id: &str, condition: &str, max_secs: u64) -> Value {
    json!({"jobId": id, "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {"force": true},
            "responseTimeoutInSeconds": 10},
        "queryCondition": condition, "startTime": null, "maxExecutionTimeInSeconds": max_secs})
}

/// A `scheduleUpdateTwin` request setting desired properties.
pub fn twin_job(id: &str, condition: &str, desired: Value) -> Value {
    json!({"jobId": id, "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {}, "properties": {"desired": desired, "reported": {}}},
        "queryCondition": condition, "startTime": null, "maxExecutionTimeInSeconds": 60})
}

pub async fn put_job(s: &Service, id: &str, body: &Value) -> (u16, Option<String>, Value) {
    parts(
        s.req(reqwest::Method::PUT, &format!("/jobs/v2/{id}"))
            .json(body),
    )
    .await
}

pub async fn get_job(s: &Service, id: &str) -> Value {
    let (st, _, body) = parts(s.req(reqwest::Method::GET, &format!("/jobs/v2/{id}"))).await;
    assert_eq!(st, 200, "{body}");
    body
}

/// Polls `GET /jobs/v2/{id}` (as the SDKs do) until the job is terminal, checking at every
/// poll that the statistics add up. Returns the final job.
pub async fn wait_job(s: &Service, id: &str, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let job = get_job(s, id).await;
        let st = &job["deviceJobStatistics"];
        let sum: u64 = [
            "failedCount",
            "succeededCount",
            "runningCount",
            "pendingCount",
        ]
        .iter()
        .map(|k| st[k].as_u64().unwrap())
        .sum();
        assert_eq!(sum, st["deviceCount"].as_u64().unwrap(), "{job}");
        if ["completed", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} not finished: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The statistics as a tuple (deviceCount, succeeded, failed, running, pending).
pub fn stats(job: &Value) -> (u64, u64, u64, u64, u64) {
    let s = &job["deviceJobStatistics"];
    let n = |k: &str| s[k].as_u64().unwrap();
    (
        n("deviceCount"),
        n("succeededCount"),
        n("failedCount"),
        n("runningCount"),
        n("pendingCount"),
    )
}

/// One page of a POST `/devices/query`: status, item type, continuation, body.
pub struct Page {
    pub status: u16,
    pub item_type: Option<String>,
    pub continuation: Option<String>,
    pub body: Value,
}

pub async fn query_page(
    s: &Service,
    query: &str,
    max_items: Option<usize>,
    continuation: Option<&str>,
) -> Page {
    let mut r = s
        .req(reqwest::Method::POST, "/devices/query")
        .json(&json!({ "query": query }));
    if let Some(n) = max_items {
        r = r.header("x-ms-max-item-count", n.to_string());
    }
    if let Some(c) = continuation {
        r = r.header("x-ms-continuation", c);
    }
    page_of(r).await
}

pub async fn page_of(r: reqwest::RequestBuilder) -> Page {
    let resp = tokio::time::timeout(T, r.send()).await.unwrap().unwrap();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (item_type, continuation) = (header("x-ms-item-type"), header("x-ms-continuation"));
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    Page {
        status,
        item_type,
        continuation,
        body,
    }
}

/// Follows continuations to the end; returns every item, the page sizes and the item type.
pub async fn query_all(s: &Service, query: &str, page: usize) -> (Vec<Value>, Vec<usize>, String) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let p = query_page(s, query, Some(page), token.as_deref()).await;
        assert_eq!(p.status, 200, "{}", p.body);
        let batch = p.body.as_array().unwrap().clone();
        sizes.push(batch.len());
        items.extend(batch);
        match p.continuation {
            Some(t) => token = Some(t),
            None => return (items, sizes, p.item_type.unwrap()),
        }
    }
}
