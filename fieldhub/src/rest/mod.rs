//! The service endpoint: HTTPS REST (https://learn.microsoft.com/rest/api/iothub/). [`router`] merges one sub-router per
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
pub(crate) use query::paged_as;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::auth::Permission;
use crate::error::HubError;
use crate::hub::Hub;
use crate::jobs::HubJobs;
use crate::throttle::{Operation, Throttle};

/// The whole REST API.
///
/// Each area is a router in its own module: `Router<Hub>` for the registry, twin and method
/// routes, `Router<Service>` for query and jobs (they need the job engine too). Handlers use
/// [`authorize`], [`json_response`] and [`ApiError`].
pub fn router(hub: Hub, jobs: HubJobs) -> Router {
    router_with(hub, jobs, None)
}

/// [`router`] behind the operation throttles of `throttle` (none: unthrottled).
pub fn router_with(hub: Hub, jobs: HubJobs, throttle: Option<Arc<Throttle>>) -> Router {
    let service = Service {
        hub: hub.clone(),
        jobs,
    };
    let routes = Router::new()
        .merge(registry::routes())
        .merge(twins::routes())
        .merge(websocket::routes())
        .merge(crate::dps::rest::routes())
        .with_state(hub)
        .merge(query::routes().merge(jobs::routes()).with_state(service))
        .fallback(unsupported_route)
        .method_not_allowed_fallback(unsupported_route);
    match throttle {
        Some(t) => routes.layer(axum::middleware::from_fn_with_state(t, throttled)),
        None => routes,
    }
}

/// The answer to a path or method this hub does not serve: 400 400003 `InvalidOperation`.
///
/// Not a 404: the .NET service SDK turns every 404 into `DeviceNotFoundException` whatever the
/// error code (Azure/azure-iot-sdk-csharp, common/src/service/ExceptionHandlingHelper.cs,
/// `s_mappings`), so code probing an operation fieldhub lacks would be told a device is
/// missing. Not a 405 or 501 either: .NET maps statuses it does not know to an
/// `IotHubException` marked transient (common/src/service/HttpClientHelper.cs,
/// `MapToExceptionAsync`), inviting retries that cannot succeed. A 400 is an
/// `ArgumentException` in .NET and an `ArgumentError` in Node
/// (Azure/azure-iot-sdk-node, common/transport/http/src/rest_api_client.ts, `translateError`),
/// and `InvalidOperation` is the code .NET documents for an invalid API call
/// (iothub/service/src/Common/Exceptions/ErrorCode.cs). What IoT Hub itself answers for a
/// route it lacks is not documented.
async fn unsupported_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(HubError::InvalidOperation(format!(
        "{method} {} is not an operation this hub supports",
        uri.path()
    )))
}

/// Which throttle a request counts against, and its cost.
fn operation(method: &Method, path: &str, headers: &HeaderMap) -> Option<(Operation, f64)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let op = match segments.as_slice() {
        ["devices", "query"] => Operation::Query,
        ["devices"] | ["devices", _] => Operation::Registry,
        ["twins", _, "methods"] => {
            let bytes = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            return Some((Operation::Method, Throttle::method_cost(bytes)));
        }
        ["twins", _] if method == Method::GET => Operation::TwinRead,
        ["twins", _] => Operation::TwinUpdate,
        ["jobs", "v2", ..] => Operation::Job,
        _ => return None,
    };
    Some((op, 1.0))
}

/// Answers 429 429001 `ThrottlingException` (the code IoT Hub documents for exceeded operation
/// throttles, "Understand and resolve Azure IoT Hub errors",
/// <https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes>) when a throttle refuses
/// the request; the method route keeps its own error envelope.
async fn throttled(
    State(throttle): State<Arc<Throttle>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some((op, cost)) = operation(req.method(), req.uri().path(), req.headers()) {
        if let Err(e) = throttle.admit(op, cost) {
            let err = HubError::Throttled(e.to_string());
            return match op {
                Operation::Method => ApiError::method(err),
                _ => ApiError::new(err),
            }
            .into_response();
        }
    }
    next.run(req).await
}

/// State of the routes that need the job engine as well as the hub.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub hub: Hub,
    pub jobs: HubJobs,
}

/// Which error body shape to send (https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:…"}`
    ErrorCodeText,
    /// `{"Message":"<JSON string with errorCode…>","ExceptionMessage":""}` (methods).
    JsonInMessage,
}

/// A `HubError` on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub err: HubError,
    pub envelope: Envelope,
}

impl ApiError {
    /// An error in the envelope of most routes ([`Envelope::ErrorCodeText`]).
    pub fn new(err: HubError) -> Self {
        ApiError {
            err,
            envelope: Envelope::ErrorCodeText,
        }
    }

    /// An error of a direct-method route, in its own envelope ([`Envelope::JsonInMessage`]).
    pub fn method(err: HubError) -> Self {
        ApiError {
            err,
            envelope: Envelope::JsonInMessage,
        }
    }
}

impl From<HubError> for ApiError {
    fn from(err: HubError) -> Self {
        ApiError::new(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = &self.err;
        let tracking = uuid::Uuid::new_v4().simple().to_string();
        let ts = crate::hub::now_iso();
        let body = match self.envelope {
            Envelope::ErrorCodeText => json!({
                "Message": format!("ErrorCode:{};{}", e.name(), e),
                "ExceptionMessage": format!("Tracking ID:{tracking}-G:0-TimeStamp:{ts}"),
            }),
            Envelope::JsonInMessage => {
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
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
    hub.authorize_service(auth, needed).map_err(ApiError::new)
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
