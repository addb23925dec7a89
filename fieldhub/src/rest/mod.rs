//! The service endpoint: HTTPS REST (reference §3). [`router`] merges one sub-router per
//! area; this module also holds what every handler shares: SAS checks, error bodies
//! (envelopes A and B with `iothub-errorcode`), JSON responses with the charset the Node SDK
//! expects, and the TLS listener that feeds axum.

mod jobs;
mod listener;
mod query;
mod registry;
mod twins;
mod websocket;

pub(crate) use listener::TlsListener;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::auth::Permission;
use crate::error::HubError;
use crate::hub::Hub;
use crate::jobs::HubJobs;

/// The whole REST API.
///
/// Each area is a router in its own module: `Router<Hub>` for the registry, twin and method
/// routes, `Router<Service>` for query and jobs (they need the job engine too). Handlers use
/// [`authorize`], [`json_response`] and [`ApiError`].
pub fn router(hub: Hub, jobs: HubJobs) -> Router {
    let service = Service {
        hub: hub.clone(),
        jobs,
    };
    Router::new()
        .merge(registry::routes())
        .merge(twins::routes())
        .merge(websocket::routes())
        .merge(crate::dps::rest::routes())
        .with_state(hub)
        .merge(query::routes().merge(jobs::routes()).with_state(service))
        .fallback(|| async {
            ApiError::a(HubError::ArgumentInvalid(
                "no such resource or method".to_string(),
            ))
            .with_status(StatusCode::NOT_FOUND)
        })
}

/// State of the routes that need the job engine as well as the hub.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub hub: Hub,
    pub jobs: HubJobs,
}

/// Which error body shape to send (reference §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:…"}`
    A,
    /// `{"Message":"<JSON string with errorCode…>","ExceptionMessage":""}` (methods).
    B,
}

/// A `HubError` on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub err: HubError,
    pub envelope: Envelope,
    status: Option<StatusCode>,
}

impl ApiError {
    pub fn a(err: HubError) -> Self {
        ApiError {
            err,
            envelope: Envelope::A,
            status: None,
        }
    }

    pub fn b(err: HubError) -> Self {
        ApiError {
            err,
            envelope: Envelope::B,
            status: None,
        }
    }

    fn with_status(mut self, s: StatusCode) -> Self {
        self.status = Some(s);
        self
    }
}

impl From<HubError> for ApiError {
    fn from(err: HubError) -> Self {
        ApiError::a(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = &self.err;
        let tracking = uuid::Uuid::new_v4().simple().to_string();
        let ts = crate::hub::now_iso();
        let body = match self.envelope {
            Envelope::A => json!({
                "Message": format!("ErrorCode:{};{}", e.name(), e),
                "ExceptionMessage": format!("Tracking ID:{tracking}-G:0-TimeStamp:{ts}"),
            }),
            Envelope::B => {
                let inner = json!({
                    "errorCode": e.code(),
                    "trackingId": tracking,
                    "message": e.to_string(),
                    "info": {},
                    "timestampUtc": ts,
                });
                json!({"Message": inner.to_string(), "ExceptionMessage": ""})
            }
        };
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let mut resp = json_response(status, &body);
        if let Ok(v) = HeaderValue::from_str(e.name()) {
            resp.headers_mut().insert("iothub-errorcode", v);
        }
        resp
    }
}

/// A JSON response with `Content-Type: application/json; charset=utf-8`.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// Checks the request's SAS token for one of `needed` permissions (401 401002 otherwise).
pub fn authorize(hub: &Hub, headers: &HeaderMap, needed: &[Permission]) -> Result<(), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    hub.authorize_service(auth, needed).map_err(ApiError::a)
}

/// The `If-Match` header, if any.
pub fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Parses a JSON request body (400 400006 IotHubFormatError when it is not JSON).
pub fn parse_json(body: &[u8]) -> Result<Value, HubError> {
    serde_json::from_slice(body).map_err(|e| HubError::FormatError(e.to_string()))
}
