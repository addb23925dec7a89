//! Jobs v2 routes (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs): `PUT/GET /jobs/v2/{id}`, `POST /jobs/v2/{id}/cancel` and
//! `GET /jobs/v2/query?jobType=&jobStatus=`. Every route needs ServiceConnect; every success
//! is 200, as the jobs REST reference gives (https://learn.microsoft.com/rest/api/iothub/service/jobs)
//! and the service SDKs expect.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::query::paged;
use super::{authorize, json_response, parse_json, ApiError, Service};
use crate::auth::Permission;
use crate::error::HubError;
use crate::jobs::{JobRequest, JobResponse, JobStatus, JobType};
use crate::query::ItemType;

pub(crate) fn routes() -> Router<Service> {
    // The static `query` segment wins over `{id}` in axum's router, so a GET of
    // `/jobs/v2/query` is the job query, never a job named "query".
    Router::new()
        .route("/jobs/v2/query", get(query_jobs))
        .route("/jobs/v2/{id}", get(get_job).put(put_job))
        .route("/jobs/v2/{id}/cancel", post(cancel_job))
}

type Result<T> = std::result::Result<T, ApiError>;

fn respond(job: &JobResponse) -> Result<Response> {
    let body = serde_json::to_value(job).map_err(|e| HubError::Internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &body))
}

/// Reads a JobRequest body; an empty `jobId` is taken from the path, a different one is refused.
fn job_request(id: &str, body: &[u8]) -> std::result::Result<JobRequest, HubError> {
    let value = parse_json(body)?;
    let mut req: JobRequest = serde_json::from_value(value)
        .map_err(|e| HubError::ArgumentInvalid(format!("job request: {e}")))?;
    if req.job_id.is_empty() {
        req.job_id = id.to_owned();
    } else if req.job_id != id {
        return Err(HubError::ArgumentInvalid(format!(
            "jobId '{}' in the body differs from '{id}' in the URL",
            req.job_id
        )));
    }
    Ok(req)
}

async fn put_job(
    State(s): State<Service>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    authorize(&s.hub, &headers, &[Permission::ServiceConnect])?;
    let req = job_request(&id, &body)?;
    let job = s.jobs.create(req).await.map_err(HubError::from)?;
    respond(&job)
}

async fn get_job(
    State(s): State<Service>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&s.hub, &headers, &[Permission::ServiceConnect])?;
    respond(&s.jobs.get(&id).map_err(HubError::from)?)
}

async fn cancel_job(
    State(s): State<Service>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&s.hub, &headers, &[Permission::ServiceConnect])?;
    respond(&s.jobs.cancel(&id).map_err(HubError::from)?)
}

/// A filter parameter: absent or empty means no filter; an unknown value is a 400.
fn filter<T>(
    params: &HashMap<String, String>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> std::result::Result<Option<T>, HubError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| HubError::ArgumentInvalid(format!("{name} '{v}' is not known"))),
    }
}

async fn query_jobs(
    State(s): State<Service>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response> {
    authorize(&s.hub, &headers, &[Permission::ServiceConnect])?;
    // `None` inside: a filter no job can match (a type the hub never runs, status `unknown`).
    let job_type = filter(&params, "jobType", |v| match JobType::parse(v) {
        Some(t) => Some(Some(t)),
        None => JobType::is_never_run(v).then_some(None),
    })?;
    let status = filter(&params, "jobStatus", |v| match JobStatus::parse(v) {
        Some(st) => Some(Some(st)),
        None => v.eq_ignore_ascii_case("unknown").then_some(None),
    })?;
    let matchable = !matches!(job_type, Some(None)) && !matches!(status, Some(None));
    let jobs = if matchable {
        s.jobs.list(job_type.flatten(), status.flatten())
    } else {
        Vec::new()
    };
    let items = jobs
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<Vec<Value>, _>>()
        .map_err(|e| HubError::Internal(e.to_string()))?;
    paged(&headers, items, ItemType::JobResponse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_comes_from_the_path_when_the_body_has_none() {
        let body = br#"{"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m"},"queryCondition":"*"}"#;
        assert_eq!(job_request("j1", body).unwrap().job_id, "j1");
        let body = br#"{"jobId":"j2","type":"scheduleDeviceMethod","queryCondition":"*"}"#;
        assert!(matches!(
            job_request("j1", body),
            Err(HubError::ArgumentInvalid(_))
        ));
        assert!(matches!(
            job_request("j1", b"{nope"),
            Err(HubError::FormatError(_))
        ));
        assert!(matches!(
            job_request("j1", br#"{"jobId":"j1"}"#),
            Err(HubError::ArgumentInvalid(_))
        ));
    }
}
