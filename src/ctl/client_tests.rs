//! ServiceClient and whole commands against a scripted HTTP hub on 127.0.0.1 (plain HTTP:
//! TLS is the one thing these tests leave to the fieldhub end-to-end tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser as _;
use iothub_proto::{ConnectionString, SasToken};
use serde_json::{json, Value};

use super::*;
use crate::ctl::cli::Cli;
use crate::ctl::output::{Console, SharedBuf};
use crate::ctl::testhub::{client, conn, fast_opts, header, mock, Mock, Script, KEY, T};

#[tokio::test]
async fn query_follows_continuation_until_absent() {
    let m = mock(Arc::new(|_, n| {
        let next = match n {
            0 => vec![("x-ms-continuation", "c1".to_string())],
            1 => vec![("x-ms-continuation", "c2".to_string())],
            _ => vec![],
        };
        (200, next, json!([{"deviceId": format!("door-{n}")}]))
    }))
    .await;
    let twins: Vec<Twin> = tokio::time::timeout(T, client(&m).query("SELECT * FROM devices"))
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = twins.iter().map(|t| t.device_id.as_str()).collect();
    assert_eq!(ids, ["door-0", "door-1", "door-2"]);
    let seen = m.seen();
    assert_eq!(seen.len(), 3);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            (s.method.as_str(), s.path.as_str()),
            ("POST", "/devices/query")
        );
        assert_eq!(s.query, "api-version=2021-04-12");
        assert_eq!(header(s, "x-ms-max-item-count"), Some("100"));
        assert_eq!(
            header(s, "content-type"),
            Some("application/json; charset=utf-8")
        );
        let body: Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body, json!({"query": "SELECT * FROM devices"}));
        let expected = [None, Some("c1"), Some("c2")][i];
        assert_eq!(header(s, "x-ms-continuation"), expected);
        let tok = SasToken::parse(header(s, "authorization").unwrap()).unwrap();
        assert_eq!(tok.resource, "localhost:8443");
        assert_eq!(tok.policy.as_deref(), Some("iothubowner"));
        assert!(tok.signed_with(KEY));
    }
}

#[tokio::test]
async fn empty_continuation_header_ends_paging() {
    let m = mock(Arc::new(|_, _| {
        (200, vec![("x-ms-continuation", String::new())], json!([]))
    }))
    .await;
    let jobs = tokio::time::timeout(
        T,
        client(&m).list_jobs(Some("scheduleDeviceMethod"), Some("scheduled")),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(jobs.is_empty());
    let seen = m.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/jobs/v2/query");
    assert_eq!(
        seen[0].query,
        "api-version=2021-04-12&jobType=scheduleDeviceMethod&jobStatus=scheduled"
    );
}

#[tokio::test]
async fn throttled_requests_are_retried_and_announced() {
    let m = mock(Arc::new(|_, n| {
        if n < 2 {
            (
                429,
                vec![(
                    "iothub-errorcode",
                    "ThrottlingMaxActiveJobCountExceeded".into(),
                )],
                json!({"Message":"ErrorCode:ThrottlingMaxActiveJobCountExceeded;Too many jobs"}),
            )
        } else {
            (
                200,
                vec![],
                json!({"jobId":"j1","type":"scheduleDeviceMethod","status":"queued"}),
            )
        }
    }))
    .await;
    let mut c = client(&m);
    let notices: Arc<Mutex<Vec<RetryNotice>>> = Arc::default();
    let sink = notices.clone();
    c.set_notifier(Arc::new(move |n| sink.lock().unwrap().push(n.clone())));
    let job = tokio::time::timeout(T, c.get_job("j1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, "queued");
    assert_eq!(m.seen().len(), 3);
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[0].attempt, 1);
    assert_eq!(
        notices[0].code.as_deref(),
        Some("ThrottlingMaxActiveJobCountExceeded")
    );
    // Each attempt signs afresh: the Authorization header is rebuilt, not reused blindly.
    assert!(m
        .seen()
        .iter()
        .all(|s| header(s, "authorization").is_some()));
}

#[tokio::test]
async fn throttling_gives_up_after_max_attempts() {
    let m = mock(Arc::new(|_, _| {
        (
            429,
            vec![("iothub-errorcode", "ThrottlingException".into())],
            json!({"Message":"ErrorCode:ThrottlingException;slow down"}),
        )
    }))
    .await;
    let e = tokio::time::timeout(T, client(&m).get_job("j1"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "hub answered 429 ThrottlingException: slow down"
    );
    assert_eq!(m.seen().len(), 3);
}

#[test]
fn backoff_doubles_with_jitter_and_cap() {
    let p = RetryPolicy {
        max_attempts: 6,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
    };
    assert_eq!(p.delay(1, 1.0), Duration::from_secs(1));
    assert_eq!(p.delay(2, 1.0), Duration::from_secs(2));
    assert_eq!(p.delay(3, 0.0), Duration::from_secs(2));
    assert_eq!(p.delay(10, 1.0), Duration::from_secs(30));
    assert_eq!(p.delay(60, 0.5), Duration::from_millis(22_500));
    let n = RetryNotice {
        code: Some("ThrottlingMaxActiveJobCountExceeded".into()),
        delay: Duration::from_secs(2),
        attempt: 1,
    };
    assert_eq!(
        n.to_string(),
        "throttled by the hub (ThrottlingMaxActiveJobCountExceeded); retrying in 2s"
    );
    assert_eq!(human_delay(Duration::from_millis(1500)), "1.5s");
    assert_eq!(human_delay(Duration::from_millis(250)), "250ms");
}

#[tokio::test]
async fn patch_sends_if_match_and_errors_decode() {
    let m = mock(Arc::new(|s, _| match (s.method.as_str(), s.path.as_str()) {
        ("PATCH", "/twins/door%2301") => (200, vec![], json!({"deviceId":"door#01","tags":{"a":1}})),
        _ => (
            404,
            vec![("iothub-errorcode", "DeviceNotFound".into())],
            json!({"Message":"ErrorCode:DeviceNotFound;Device door-9 not found.","ExceptionMessage":"Tracking ID:x"}),
        ),
    }))
    .await;
    let c = client(&m);
    let mut patch = TwinPatch::default();
    patch.tags.insert("a".into(), json!(1));
    let twin = tokio::time::timeout(T, c.patch_twin("door#01", &patch))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(twin.tags["a"], 1);
    let seen = m.seen();
    assert_eq!(header(&seen[0], "if-match"), Some("\"*\""));
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].body).unwrap(),
        json!({"tags":{"a":1}})
    );

    let e = tokio::time::timeout(T, c.get_twin("door-9"))
        .await
        .unwrap()
        .unwrap_err();
    let ClientError::Service(s) = e else {
        panic!("{e}")
    };
    assert_eq!(
        s,
        ServiceError {
            status: 404,
            code: Some("DeviceNotFound".into()),
            message: "Device door-9 not found.".into()
        }
    );
}

#[tokio::test]
async fn requests_time_out() {
    let m = mock(Arc::new(|_, _| (0, vec![], Value::Null))).await;
    let opts = ClientOptions {
        request_timeout: Duration::from_millis(200),
        ..fast_opts()
    };
    let c = ServiceClient::with_base_url(conn(), m.base.clone(), opts).unwrap();
    let e = tokio::time::timeout(T, c.get_job("j1"))
        .await
        .unwrap()
        .unwrap_err();
    let ClientError::Transport { url, detail } = e else {
        panic!("{e}")
    };
    assert_eq!(url, format!("{}/jobs/v2/j1", m.base));
    assert_eq!(detail, "no answer within 200ms");
}

#[tokio::test]
async fn unreachable_hub_is_a_transport_error() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = ServiceClient::with_base_url(conn(), format!("http://127.0.0.1:{port}"), fast_opts())
        .unwrap();
    let e = tokio::time::timeout(T, c.get_job("j"))
        .await
        .unwrap()
        .unwrap_err();
    let e = CtlError::from(e);
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .starts_with("cannot reach the hub at http://127.0.0.1:"),
        "{e}"
    );
}

// ---- whole commands through run_with_client ----

struct Outcome3 {
    code: i32,
    out: String,
    err: String,
}

async fn cmd(m: &Mock, argv: &[&str]) -> Outcome3 {
    let mut full = vec!["fieldctl"];
    full.extend_from_slice(argv);
    let cli = Cli::try_parse_from(full).unwrap();
    let mut out = Vec::new();
    let err = SharedBuf::default();
    let code = tokio::time::timeout(
        T,
        crate::ctl::run_with_client(
            client(m),
            cli.command,
            cli.global.json,
            &mut out,
            Console::new(err.clone()),
        ),
    )
    .await
    .unwrap();
    Outcome3 {
        code,
        out: String::from_utf8(out).unwrap(),
        err: err.contents(),
    }
}

/// A hub with a completed method job `lock-43` on three doors (door-07 offline) and a job
/// `running-1` that never ends.
fn job_hub() -> Script {
    Arc::new(|s, _| {
        let stats = |ok: u64, failed: u64, running: u64| json!({"deviceCount":3,"succeededCount":ok,"failedCount":failed,"runningCount":running,"pendingCount":3-ok-failed-running});
        match (s.method.as_str(), s.path.as_str()) {
            ("POST", "/devices/query") if s.body.contains("devices.jobs") => (
                200,
                vec![],
                json!([
                    {"deviceId":"door-01","jobId":"lock-43","status":"completed",
                     "outcome":{"deviceMethodResponse":{"status":200,"payload":{"locked":true}}}},
                    {"deviceId":"door-02","jobId":"lock-43","status":"completed",
                     "outcome":{"deviceMethodResponse":{"status":200,"payload":{"locked":true}}}},
                    {"deviceId":"door-07","jobId":"lock-43","status":"failed",
                     "error":{"code":"DeviceNotOnline","description":"Timed out waiting for device to connect."}}
                ]),
            ),
            ("POST", "/devices/query") if s.body.contains("((") => (
                400,
                vec![("iothub-errorcode", "ArgumentInvalid".into())],
                json!({"Message":"ErrorCode:ArgumentInvalid;Syntax error at position 29: unexpected '('"}),
            ),
            ("POST", "/devices/query") => (
                200,
                vec![],
                json!([{"deviceId":"door-01","tags":{"building":"43"}}]),
            ),
            ("PUT", "/jobs/v2/lock-43") => (
                200,
                vec![],
                json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"queued"}),
            ),
            ("GET", "/jobs/v2/lock-43") => (
                200,
                vec![],
                json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
                "status":"completed","startTime":"2030-01-01T00:00:00Z","maxExecutionTimeInSeconds":60,
                "deviceJobStatistics": stats(2, 1, 0)}),
            ),
            ("GET", "/jobs/v2/running-1") => (
                200,
                vec![],
                json!({"jobId":"running-1","type":"scheduleDeviceMethod",
                "status":"running","deviceJobStatistics": stats(1, 0, 2)}),
            ),
            _ => (
                404,
                vec![("iothub-errorcode", "JobNotFound".into())],
                json!({"Message":"ErrorCode:JobNotFound;not found"}),
            ),
        }
    })
}

#[tokio::test]
async fn method_job_wait_reports_failed_devices_and_exits_1() {
    let m = mock(job_hub()).await;
    let r = cmd(
        &m,
        &[
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--payload",
            "{}",
            "--id",
            "lock-43",
            "--wait",
            "--poll-interval",
            "50ms",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}", r = (&r.out, &r.err));
    assert_eq!(
        r.out,
        "job lock-43 completed: 3 devices, 2 succeeded, 1 failed\n\
         failed devices:\n\
         DEVICE   ERROR\n\
         door-07  DeviceNotOnline: Timed out waiting for device to connect.\n"
    );
    assert!(
        r.err.contains(
            "job lock-43 completed: 3/3 done (2 succeeded, 1 failed, 0 running, 0 pending)"
        ),
        "{}",
        r.err
    );
    let seen = m.seen();
    // Probe the condition, create, poll, fetch device results.
    let calls: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /devices/query",
            "PUT /jobs/v2/lock-43",
            "GET /jobs/v2/lock-43",
            "POST /devices/query"
        ]
    );
    assert!(seen[0]
        .body
        .contains("SELECT * FROM devices WHERE tags.building = '43'"));
    assert_eq!(header(&seen[0], "x-ms-max-item-count"), Some("1"));
    let put: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(put["type"], "scheduleDeviceMethod");
    assert_eq!(put["cloudToDeviceMethod"]["methodName"], "lockDoor");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[3].body).unwrap()["query"],
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'lock-43'"
    );
}

#[tokio::test]
async fn job_show_json_matches_job_devices() {
    let m = mock(job_hub()).await;
    let show = cmd(&m, &["--json", "job", "show", "lock-43"]).await;
    assert_eq!(show.code, 1);
    let doc: Value = serde_json::from_str(&show.out).unwrap();
    assert_eq!(doc["job"]["status"], "completed");
    assert_eq!(
        doc["failedDevices"],
        json!([{"deviceId":"door-07","error":"DeviceNotOnline: Timed out waiting for device to connect."}])
    );
    let devices = cmd(&m, &["--json", "job", "devices", "lock-43"]).await;
    assert_eq!(devices.code, 0);
    let list: Value = serde_json::from_str(&devices.out).unwrap();
    assert_eq!(doc["devices"], list);
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_2() {
    let m = mock(job_hub()).await;
    let r = cmd(&m, &["job", "show", "nope"]).await;
    assert_eq!(
        (r.code, r.err.as_str(), r.out.as_str()),
        (2, "error: job 'nope' not found on the hub\n", "")
    );

    let r = cmd(
        &m,
        &["devices", "list", "--query", "tags.building = '43' AND (("],
    )
    .await;
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err,
        "error: invalid query `tags.building = '43' AND ((`: hub answered 400 ArgumentInvalid: Syntax error at position 29: unexpected '('\n"
    );

    let before = m.seen().len();
    let r = cmd(
        &m,
        &[
            "job",
            "method",
            "--query",
            "q",
            "--method",
            "m",
            "--payload",
            "{nope",
        ],
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(
        r.err.starts_with(
            "error: --payload is not valid JSON: key must be a string at line 1 column 2"
        ),
        "{}",
        r.err
    );
    assert_eq!(r.err.lines().count(), 1);
    assert_eq!(
        m.seen().len(),
        before,
        "a request was sent despite the bad payload"
    );
}

#[tokio::test]
async fn wait_timeout_exits_1() {
    let m = mock(job_hub()).await;
    let r = cmd(
        &m,
        &[
            "job",
            "show",
            "running-1",
            "--watch",
            "--wait-timeout",
            "100ms",
            "--poll-interval",
            "40ms",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(
        r.err.contains("gave up waiting for job running-1"),
        "{}",
        r.err
    );
    // The progress line is printed once even though it was polled several times.
    assert_eq!(
        r.err.matches("job running-1 running: 1/3 done").count(),
        1,
        "{}",
        r.err
    );
}

// ---- TLS: the CA file is trusted, and only with it ----

/// A one-shot-per-connection HTTPS server answering every request with `body`; returns
/// its port and the CA certificate (PEM) that signed its `localhost` certificate.
async fn https_hub(body: &'static str) -> (u16, String, tokio::task::JoinHandle<()>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fieldctl test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake (the untrusted case) just drops the connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, ca.pem(), task)
}

#[tokio::test]
async fn https_with_ca_file_and_port_in_hostname() {
    let (port, ca_pem, task) =
        https_hub(r#"{"jobId":"j1","type":"scheduleUpdateTwin","status":"running"}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let conn = ConnectionString::parse(&format!(
        "HostName=localhost:{port};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    ))
    .unwrap();

    let trusted = ServiceClient::new(
        conn.clone(),
        ClientOptions {
            ca_file: Some(ca_file.clone()),
            ..fast_opts()
        },
    )
    .unwrap();
    let job = tokio::time::timeout(T, trusted.get_job("j1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, "running");

    let untrusted = ServiceClient::new(conn, fast_opts()).unwrap();
    let e = tokio::time::timeout(T, untrusted.get_job("j1"))
        .await
        .unwrap()
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach the hub at https://localhost:{port}/jobs/v2/j1"
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with("invalid peer certificate: UnknownIssuer (pass --ca-file with the hub's CA certificate)"),
        "{msg}"
    );

    std::fs::write(&ca_file, "not a certificate").unwrap();
    let e = ServiceClient::new(
        ConnectionString::parse(&format!(
            "HostName=localhost:{port};SharedAccessKeyName=p;SharedAccessKey={KEY}"
        ))
        .unwrap(),
        ClientOptions {
            ca_file: Some(ca_file.clone()),
            ..fast_opts()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    task.abort();
}
