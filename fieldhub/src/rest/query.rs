//! `POST /devices/query` (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-query-language): twin queries over the hub's twins and
//! `devices.jobs` queries over the job engine's device records; and the paging every query-like
//! response shares (`x-ms-max-item-count` / `x-ms-continuation` in, a bare JSON array,
//! `x-ms-item-type` and — only when more pages exist — `x-ms-continuation` out).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::{authorize, json_response, parse_json, ApiError, Service};
use crate::auth::Permission;
use crate::error::HubError;
use crate::query::{self, ItemType, Source};

pub(crate) fn routes() -> Router<Service> {
    Router::new().route("/devices/query", post(run_query))
}

type Result<T> = std::result::Result<T, ApiError>;

const MAX_ITEM_COUNT: &str = "x-ms-max-item-count";
const CONTINUATION: &str = "x-ms-continuation";
const ITEM_TYPE: &str = "x-ms-item-type";

/// One page of `items` as the request's paging headers ask for it.
pub(super) fn paged(
    headers: &HeaderMap,
    items: Vec<Value>,
    item_type: ItemType,
) -> Result<Response> {
    paged_as(headers, items, item_type.as_str())
}

/// [`paged`] with any `x-ms-item-type`: the provisioning service's queries page the same way
/// but name their items `enrollment`, `enrollmentGroup` or `deviceRegistration`.
pub(crate) fn paged_as(
    headers: &HeaderMap,
    items: Vec<Value>,
    item_type: &'static str,
) -> Result<Response> {
    let header = |name: &str| -> std::result::Result<Option<&str>, HubError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| HubError::ArgumentInvalid(format!("header {name} is not text")))
            })
            .transpose()
    };
    let max = header(MAX_ITEM_COUNT)?
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                HubError::ArgumentInvalid(format!("{MAX_ITEM_COUNT} '{v}' is not a count"))
            })
        })
        .transpose()?;
    // Node sends no header on the first page; treat an empty one the same way.
    let token = header(CONTINUATION)?.filter(|t| !t.is_empty());
    let (page, next) =
        query::page(items, max, token).map_err(|e| HubError::ArgumentInvalid(e.message))?;
    let mut resp = json_response(StatusCode::OK, &Value::Array(page));
    let h = resp.headers_mut();
    h.insert(ITEM_TYPE, HeaderValue::from_static(item_type));
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        h.insert(CONTINUATION, next);
    }
    Ok(resp)
}

async fn run_query(State(s): State<Service>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    authorize(
        &s.hub,
        &headers,
        &[Permission::ServiceConnect, Permission::RegistryRead],
    )?;
    let body = parse_json(&body)?;
    let text = body.get("query").and_then(Value::as_str).ok_or_else(|| {
        HubError::ArgumentInvalid("body must be {\"query\": \"SELECT …\"}".into())
    })?;
    // The message carries the position: "query error at position N: …".
    let q = query::parse_query(text).map_err(|e| HubError::ArgumentInvalid(e.to_string()))?;
    let docs = match q.source {
        Source::Devices => s.hub.twins(),
        Source::DeviceJobs => s.jobs.device_jobs(),
    };
    let result = q.execute(docs.iter());
    paged(&headers, result.items, result.item_type)
}
