//! The provisioning service API in the shape of Azure DPS's service REST API (Microsoft Learn,
//! "Device Provisioning Service REST API": Enrollment Group, Individual Enrollment, Device
//! Registration State): `PUT/GET/DELETE /enrollmentGroups/{id}`, `POST
//! /enrollmentGroups/query`, the same for `/enrollments`, `GET/DELETE /registrations/{id}` and
//! `POST /registrations/{groupId}/query`.
//!
//! The three queries page as the service's do (Microsoft Learn, "Enrollment Group - Query",
//! "Individual Enrollment - Query", "Device Registration State - Query",
//! https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/query):
//! `x-ms-max-item-count` and `x-ms-continuation` in, a JSON array with `x-ms-item-type` and,
//! while more remain, `x-ms-continuation` out. The query text itself is not evaluated (`*`).
//!
//! Authorization: a SAS token of one of the hub's shared access policies (`sr` = the hub's
//! host name), as for the registry: read needs `RegistryRead`, changes `RegistryWrite`. On
//! Azure the same token shape is signed with a DPS policy (`provisioningserviceowner`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Permission;
use crate::error::HubError;
use crate::hub::Hub;
use crate::rest::{authorize, if_match, json_response, paged_as, ApiError};

type Result<T> = std::result::Result<T, ApiError>;

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/enrollmentGroups/query", post(list_groups))
        .route(
            "/enrollmentGroups/{id}",
            get(get_group).put(put_group).delete(delete_group),
        )
        .route("/enrollments/query", post(list_enrollments))
        .route(
            "/enrollments/{id}",
            get(get_enrollment)
                .put(put_enrollment)
                .delete(delete_enrollment),
        )
        .route(
            "/registrations/{id}",
            get(get_registration).delete(delete_registration),
        )
        .route("/registrations/{id}/query", post(list_registrations))
}

fn ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => ApiError::new(HubError::Internal(e.to_string())).into_response(),
    }
}

fn body<T: DeserializeOwned>(b: &[u8]) -> std::result::Result<T, HubError> {
    serde_json::from_slice(b).map_err(|e| HubError::FormatError(e.to_string()))
}

const READ: &[Permission] = &[Permission::RegistryRead];
const WRITE: &[Permission] = &[Permission::RegistryWrite];

/// Every item as JSON, for [`paged_as`].
fn values<T: Serialize>(items: Vec<T>) -> std::result::Result<Vec<serde_json::Value>, HubError> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).map_err(|e| HubError::Internal(e.to_string())))
        .collect()
}

async fn list_groups(State(hub): State<Hub>, headers: HeaderMap) -> Result<Response> {
    authorize(&hub, &headers, READ)?;
    paged_as(&headers, values(hub.dps_groups())?, "enrollmentGroup")
}

async fn get_group(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, READ)?;
    Ok(ok(&hub.dps_group(&id)?))
}

async fn put_group(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response> {
    authorize(&hub, &headers, WRITE)?;
    let g = hub.dps_put_group(&id, body(&b)?, if_match(&headers).as_deref())?;
    Ok(ok(&g))
}

async fn delete_group(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, WRITE)?;
    hub.dps_delete_group(&id, if_match(&headers).as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_enrollments(State(hub): State<Hub>, headers: HeaderMap) -> Result<Response> {
    authorize(&hub, &headers, READ)?;
    paged_as(&headers, values(hub.dps_enrollments())?, "enrollment")
}

async fn get_enrollment(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, READ)?;
    Ok(ok(&hub.dps_enrollment(&id)?))
}

async fn put_enrollment(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Response> {
    authorize(&hub, &headers, WRITE)?;
    let e = hub.dps_put_enrollment(&id, body(&b)?, if_match(&headers).as_deref())?;
    Ok(ok(&e))
}

async fn delete_enrollment(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, WRITE)?;
    hub.dps_delete_enrollment(&id, if_match(&headers).as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_registration(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, READ)?;
    Ok(ok(&hub.dps_registration(&id)?))
}

async fn delete_registration(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, WRITE)?;
    hub.dps_delete_registration(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_registrations(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, READ)?;
    hub.dps_group(&group)?;
    paged_as(
        &headers,
        values(hub.dps_registrations(Some(&group)))?,
        "deviceRegistration",
    )
}
