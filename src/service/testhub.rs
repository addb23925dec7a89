//! A scripted HTTP "hub" on 127.0.0.1 for the client and command tests: each request is
//! recorded and answered by a closure. Plain HTTP; TLS has its own test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use iothub_proto::ConnectionString;
use serde_json::Value;

use super::{ClientOptions, RetryPolicy, ServiceClient};

pub(crate) const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Bound on every await in these tests.
pub(crate) const T: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// (status, headers, body) for the n-th request (0-based).
pub(crate) type Script =
    Arc<dyn Fn(&Seen, usize) -> (u16, Vec<(&'static str, String)>, Value) + Send + Sync>;

pub(crate) struct Mock {
    pub(crate) base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub(crate) async fn mock(script: Script) -> Mock {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let rec = seen.clone();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let rec = rec.clone();
        let script = script.clone();
        async move {
            let s = Seen {
                method: method.to_string(),
                path: uri.path().to_string(),
                query: uri.query().unwrap_or("").to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let n = {
                let mut v = rec.lock().unwrap();
                v.push(s.clone());
                v.len() - 1
            };
            let (status, hdrs, body) = script(&s, n);
            if status == 0 {
                // Never answer: for timeout tests.
                std::future::pending::<()>().await;
            }
            let mut resp: Response = (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json; charset=utf-8")],
                body.to_string(),
            )
                .into_response();
            for (k, v) in hdrs {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Mock { base, seen, task }
}

pub(crate) fn conn() -> ConnectionString {
    ConnectionString::parse(&format!(
        "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    ))
    .unwrap()
}

pub(crate) fn fast_opts() -> ClientOptions {
    ClientOptions {
        ca_file: None,
        proxy: None,
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
    }
}

pub(crate) fn client(m: &Mock) -> ServiceClient {
    ServiceClient::with_base_url(conn(), m.base.clone(), fast_opts()).unwrap()
}

pub(crate) fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
    s.headers.get(name).and_then(|v| v.to_str().ok())
}
