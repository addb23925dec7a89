//! The gateway's HTTP listener: `/metrics` (Prometheus text), `/healthz` (process alive) and
//! `/readyz` (running and serving what it can: every bus and every door link attempted,
//! with what is down, and the door event backlog). Bound to loopback unless the config says
//! otherwise; nothing here ever includes a key or token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::IntoFuture as _;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What `/readyz` reports; published by the gateway's main loop.
///
/// Ready means running and serving what can be served: a bus that is down (an unplugged
/// adapter, an unreachable Modbus TCP server) or a door the hub refuses never holds the
/// rest back; they make the gateway `degraded`, named here, in the metrics and in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// Every bus task has made its first connection attempt, whatever came of it.
    pub buses_started: bool,
    /// Every door link has made its first connection attempt.
    pub links_attempted: bool,
    /// Something is down: a bus, or a door's link.
    pub degraded: bool,
    pub buses: Vec<BusReadiness>,
    pub doors: usize,
    pub doors_connected: usize,
    /// Doors whose link is not up (the first [`Readiness::LISTED`]).
    pub doors_down: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BusReadiness {
    pub name: String,
    /// `tcp host:port`, `serial /dev/ttyUSB0 19200 8E1`, …
    pub transport: String,
    /// "up", "down" or "starting".
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The doors on this bus.
    pub doors: usize,
}

impl Readiness {
    /// Doors listed by id in `doors_down`; a thousand would make the answer unreadable.
    pub const LISTED: usize = 50;

    pub fn ready(&self) -> bool {
        self.buses_started && self.links_attempted
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: watch::Receiver<Readiness>,
}

pub fn app(metrics: Arc<Metrics>, readiness: watch::Receiver<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// `/readyz` body: the readiness plus the door event backlog, which is shown but never makes
/// the gateway unready (a backlog after an outage is normal; it drains at the paced rate).
#[derive(serde::Serialize)]
struct ReadyBody {
    #[serde(flatten)]
    readiness: Readiness,
    events_pending: i64,
    events_oldest_age_seconds: f64,
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let r = s.readiness.borrow().clone();
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyBody {
        readiness: r,
        events_pending: s.metrics.events_pending.get(),
        events_oldest_age_seconds: s.metrics.events_oldest_age.get(),
    };
    (status, axum::Json(body))
}

/// The listener serving [`app`], stopped by [`HttpServer::stop`].
#[derive(Debug)]
pub struct HttpServer {
    stop: tokio_util::sync::CancellationToken,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until stopped.
    pub fn spawn(
        listener: tokio::net::TcpListener,
        metrics: Arc<Metrics>,
        readiness: watch::Receiver<Readiness>,
    ) -> HttpServer {
        let stop = tokio_util::sync::CancellationToken::new();
        let app = app(metrics, readiness);
        let join = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        HttpServer { stop, join }
    }

    /// Stops accepting, lets requests in progress finish, and waits for the listener task.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get_body(app: Router, path: &str) -> (StatusCode, String) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_follows_readiness() {
        let (tx, rx) = watch::channel(Readiness::default());
        let app = app(Arc::new(Metrics::new()), rx);
        assert_eq!(
            get_body(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tx.send_modify(|r| {
            r.buses_started = true;
            r.links_attempted = true;
            r.degraded = true;
        });
        let (status, body) = get_body(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"links_attempted\":true"));
        assert!(
            body.contains("\"degraded\":true"),
            "degraded is still ready: {body}"
        );
        assert!(body.contains("\"events_pending\":0"), "{body}");
        assert_eq!(
            get_body(app, "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
    }

    #[tokio::test]
    async fn an_event_backlog_shows_in_readyz_without_making_it_unready() {
        let ready = Readiness {
            buses_started: true,
            links_attempted: true,
            ..Readiness::default()
        };
        let (_tx, rx) = watch::channel(ready);
        let m = Arc::new(Metrics::new());
        m.events_pending.set(1234);
        m.events_oldest_age.set(600.5);
        let (status, body) = get_body(app(m, rx), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"events_pending\":1234"), "{body}");
        assert!(
            body.contains("\"events_oldest_age_seconds\":600.5"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn metrics_are_served() {
        let (_tx, rx) = watch::channel(Readiness::default());
        let m = Arc::new(Metrics::new());
        m.desired.with_label_values(&["applied"]).inc();
        let (status, body) = get_body(app(m, rx), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("fieldgate_desired_properties_total{result=\"applied\"} 1"));
    }
}
