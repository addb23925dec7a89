//! ServiceClient against a scripted HTTP hub on 127.0.0.1 (plain HTTP:
//! TLS is the one thing these tests leave to the fieldhub end-to-end tests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iothub_proto::{ConnectionString, SasToken};
use serde_json::{json, Value};

use super::*;
use crate::service::testhub::{client, conn, fast_opts, header, mock, KEY, T};

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
async fn dps_queries_follow_continuation_under_the_dps_api_version() {
    let m = mock(Arc::new(|_, n| {
        let next = match n {
            0 => vec![("x-ms-continuation", "p1".to_string())],
            _ => vec![],
        };
        (200, next, json!([{"registrationId": format!("door-{n}")}]))
    }))
    .await;
    let all = tokio::time::timeout(T, client(&m).dps_query("/registrations/site-43/query", "*"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        all,
        [
            json!({"registrationId": "door-0"}),
            json!({"registrationId": "door-1"})
        ]
    );
    let seen = m.seen();
    assert_eq!(seen.len(), 2);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            (s.method.as_str(), s.path.as_str()),
            ("POST", "/registrations/site-43/query")
        );
        assert_eq!(s.query, format!("api-version={DPS_API_VERSION}"));
        assert_eq!(header(s, "x-ms-max-item-count"), Some("100"));
        assert_eq!(header(s, "x-ms-continuation"), [None, Some("p1")][i]);
        assert_eq!(
            serde_json::from_str::<Value>(&s.body).unwrap(),
            json!({"query": "*"})
        );
    }
}

#[tokio::test]
async fn a_repeated_continuation_token_is_an_error_not_a_loop() {
    let m = mock(Arc::new(|_, _| {
        (
            200,
            vec![("x-ms-continuation", "same".to_string())],
            json!([]),
        )
    }))
    .await;
    let e = tokio::time::timeout(T, client(&m).dps_query("/enrollments/query", "*"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("continuation token repeats"), "{e}");
    assert_eq!(m.seen().len(), 2);
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
    assert!(matches!(e, ClientError::Transport { .. }) && e.is_transient());
    assert!(
        e.to_string()
            .starts_with("cannot reach the hub at http://127.0.0.1:"),
        "{e}"
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
