//! [`ServiceClient`]: IoT Hub's service REST API over HTTPS (https://learn.microsoft.com/rest/api/iothub/) — registry, twins,
//! direct methods, queries with paging, jobs v2.
//!
//! Every request carries a fresh SAS token and a timeout; 429 answers are retried with
//! bounded exponential backoff and jitter, and each retry is announced through a
//! [`Notifier`] so the operator knows why nothing is happening.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use iothub_proto::{sas, ConnectionString};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::auth::sas_header;
use super::error::{ClientError, ServiceError};
use super::model::{
    CloudToDeviceMethod, Device, DeviceJob, JobRequest, JobResponse, MethodResponse, Twin,
    TwinPatch,
};
use super::retry::retry_after;
use super::retry::{human_delay, Notifier, RetryNotice, RetryPolicy};

/// The IoT Hub service API version every hub request names.
pub const API_VERSION: &str = "2021-04-12";
/// The Device Provisioning Service API version of [`ServiceClient::dps_call`] (Microsoft
/// Learn, DPS service REST API reference).
pub const DPS_API_VERSION: &str = "2021-10-01";
/// Page size asked for on queries (the hub's documented maximum).
pub const PAGE_SIZE: u32 = 100;
/// Guard against a hub that hands out continuation tokens forever.
const MAX_PAGES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Extra trusted CA certificates (PEM), e.g. fieldhub's.
    pub ca_file: Option<PathBuf>,
    /// An HTTP proxy for every request (`CONNECT`); without it reqwest follows the
    /// environment (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), as curl does.
    pub proxy: Option<String>,
    /// Timeout of each request (method calls add their own response/connect timeouts).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_file: None,
            proxy: None,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// A client of one hub's service API. Cheap to clone.
#[derive(Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    conn: Arc<ConnectionString>,
    base: String,
    opts: ClientOptions,
    notifier: Notifier,
}

impl fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("base", &self.base)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Trusted roots: the system's plus the optional CA file.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are not fatal: a private CA may be all that is needed.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let bad = |d: String| ClientError::Tls(format!("--ca-file {}: {d}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl ServiceClient {
    /// A client for `https://{HostName}` (the port, if any, comes from the HostName).
    pub fn new(conn: ConnectionString, opts: ClientOptions) -> Result<Self, ClientError> {
        let base = format!("https://{}", conn.host_name);
        Self::with_base_url(conn, base, opts)
    }

    /// A client for another base URL (tests use plain `http://127.0.0.1:port`). The SAS
    /// tokens still name the connection string's HostName.
    pub fn with_base_url(
        conn: ConnectionString,
        base: String,
        opts: ClientOptions,
    ) -> Result<Self, ClientError> {
        let tls = tls_config(opts.ca_file.as_deref())?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("fieldctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.request_timeout);
        if let Some(url) = &opts.proxy {
            // The URL may hold credentials: the error names it without them.
            let proxy = reqwest::Proxy::all(url.as_str()).map_err(|e| {
                ClientError::Tls(format!(
                    "--proxy {}: {}",
                    crate::link::transport::redact(url),
                    chain(&e).replace(url.as_str(), &crate::link::transport::redact(url))
                ))
            })?;
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(|e| ClientError::Tls(chain(&e)))?;
        Ok(ServiceClient {
            http,
            conn: Arc::new(conn),
            base: base.trim_end_matches('/').to_string(),
            opts,
            notifier: Arc::new(|_| {}),
        })
    }

    /// Tells `f` about every throttling retry.
    pub fn set_notifier(&mut self, f: Notifier) {
        self.notifier = f;
    }

    pub fn host(&self) -> &str {
        &self.conn.host_name
    }

    // ---- registry ----

    pub async fn get_device(&self, id: &str) -> Result<Device, ClientError> {
        self.json(Req::new(Method::GET, format!("/devices/{}", seg(id))))
            .await
    }

    /// Creates an identity (`PUT` without If-Match: fails with 409 if it exists).
    pub async fn create_device(&self, device: &Device) -> Result<Device, ClientError> {
        let req =
            Req::new(Method::PUT, format!("/devices/{}", seg(&device.device_id))).body(device)?;
        self.json(req).await
    }

    /// The registry listing (`GET /devices?top=N`); queries page better for large hubs.
    pub async fn list_devices(&self, top: u32) -> Result<Vec<Device>, ClientError> {
        self.json(Req::new(Method::GET, "/devices".into()).query("top", top.to_string()))
            .await
    }

    // ---- twins and methods ----

    pub async fn get_twin(&self, id: &str) -> Result<Twin, ClientError> {
        self.json(Req::new(Method::GET, format!("/twins/{}", seg(id))))
            .await
    }

    /// Merges `patch` into the twin unconditionally (`If-Match: "*"`).
    pub async fn patch_twin(&self, id: &str, patch: &TwinPatch) -> Result<Twin, ClientError> {
        let req = Req::new(Method::PATCH, format!("/twins/{}", seg(id)))
            .body(&patch.to_json())?
            .header(IF_MATCH, HeaderValue::from_static("\"*\""));
        self.json(req).await
    }

    /// Invokes a direct method. The HTTP timeout allows for the hub's own response and
    /// connect timeouts plus a margin, so the hub's 504 arrives before ours.
    pub async fn invoke_method(
        &self,
        id: &str,
        method: &CloudToDeviceMethod,
    ) -> Result<MethodResponse, ClientError> {
        let timeout = Duration::from_secs(
            method.response_timeout_in_seconds + method.connect_timeout_in_seconds + 15,
        );
        let req = Req::new(Method::POST, format!("/twins/{}/methods", seg(id)))
            .body(method)?
            .timeout(timeout);
        self.json(req).await
    }

    // ---- queries ----

    /// One page of `POST /devices/query`; returns the items and the continuation token.
    pub async fn query_page(
        &self,
        query: &str,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ClientError> {
        let mut req = Req::new(Method::POST, "/devices/query".into())
            .body(&serde_json::json!({ "query": query }))?
            .header("x-ms-max-item-count", page_size.into());
        if let Some(c) = continuation {
            req = req.header("x-ms-continuation", header_value(c)?);
        }
        self.page(req).await
    }

    /// Every result of a query, following continuation tokens until the hub sends none.
    pub async fn query<T: DeserializeOwned>(&self, query: &str) -> Result<Vec<T>, ClientError> {
        let req = Req::new(Method::POST, "/devices/query".into())
            .body(&serde_json::json!({ "query": query }))?;
        let name = req.name();
        items_as(&name, self.all_pages(req).await?)
    }

    /// Per-device results of a job, optionally only those with `status`.
    pub async fn device_jobs(
        &self,
        job_id: &str,
        status: Option<&str>,
    ) -> Result<Vec<DeviceJob>, ClientError> {
        self.query(&device_jobs_query(job_id, status)).await
    }

    // ---- jobs v2 ----

    pub async fn create_job(&self, job: &JobRequest) -> Result<JobResponse, ClientError> {
        let req = Req::new(Method::PUT, format!("/jobs/v2/{}", seg(&job.job_id))).body(job)?;
        self.json(req).await
    }

    pub async fn get_job(&self, id: &str) -> Result<JobResponse, ClientError> {
        self.json(Req::new(Method::GET, format!("/jobs/v2/{}", seg(id))))
            .await
    }

    pub async fn cancel_job(&self, id: &str) -> Result<JobResponse, ClientError> {
        self.json(Req::new(
            Method::POST,
            format!("/jobs/v2/{}/cancel", seg(id)),
        ))
        .await
    }

    /// `GET /jobs/v2/query`, all pages.
    pub async fn list_jobs(
        &self,
        job_type: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<JobResponse>, ClientError> {
        let mut req = Req::new(Method::GET, "/jobs/v2/query".into());
        if let Some(t) = job_type {
            req = req.query("jobType", t.into());
        }
        if let Some(s) = status {
            req = req.query("jobStatus", s.into());
        }
        let name = req.name();
        items_as(&name, self.all_pages(req).await?)
    }

    /// One call to a provisioning service's REST API (Azure DPS, or fieldhub's, which has
    /// the same shapes), under [`DPS_API_VERSION`]. `Value::Null` for an
    /// empty answer (DELETE's 204).
    pub async fn dps_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut req = Req::new(method, path.to_string());
        req.api_version = DPS_API_VERSION;
        if let Some(b) = body {
            req = req.body(b)?;
        }
        if let Some(tag) = if_match {
            req = req.header(IF_MATCH, header_value(tag)?);
        }
        let name = req.name();
        let (_, bytes) = self.send(req).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| decode_err(&name, e))
    }

    /// Every item of a provisioning service query (`POST /enrollmentGroups/query`,
    /// `/enrollments/query`, `/registrations/{groupId}/query`), all pages: the service pages
    /// these like the hub's queries (Microsoft Learn, "Individual Enrollment - Query",
    /// https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/query).
    pub async fn dps_query(&self, path: &str, query: &str) -> Result<Vec<Value>, ClientError> {
        let mut req = Req::new(Method::POST, path.to_string())
            .body(&serde_json::json!({ "query": query }))?;
        req.api_version = DPS_API_VERSION;
        self.all_pages(req).await
    }

    // ---- plumbing ----

    /// Sends `req` page after page (`x-ms-max-item-count`, then each answer's
    /// `x-ms-continuation`) until an answer carries no token, so a list is never cut at the
    /// first page.
    async fn all_pages(&self, req: Req) -> Result<Vec<Value>, ClientError> {
        let name = req.name();
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_req = req.clone().header("x-ms-max-item-count", PAGE_SIZE.into());
            if let Some(c) = &token {
                page_req = page_req.header("x-ms-continuation", header_value(c)?);
            }
            let (page, next) = self.page(page_req).await?;
            items.extend(page);
            match next {
                Some(n) if Some(&n) == token.as_ref() => {
                    return Err(decode_err(&name, "continuation token repeats"))
                }
                Some(n) => token = Some(n),
                None => return Ok(items),
            }
        }
        Err(decode_err(&name, "too many pages"))
    }

    async fn json<T: DeserializeOwned>(&self, req: Req) -> Result<T, ClientError> {
        let name = req.name();
        let (_, body) = self.send(req).await?;
        serde_json::from_slice(&body).map_err(|e| decode_err(&name, e))
    }

    async fn page(&self, req: Req) -> Result<(Vec<Value>, Option<String>), ClientError> {
        let name = req.name();
        let (headers, body) = self.send(req).await?;
        let items: Vec<Value> = serde_json::from_slice(&body).map_err(|e| decode_err(&name, e))?;
        // Only a present, non-empty header means more pages (an empty one would loop).
        let next = headers
            .get("x-ms-continuation")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok((items, next))
    }

    /// Sends with retries on 429; returns headers and body of a 2xx answer.
    async fn send(&self, req: Req) -> Result<(HeaderMap, bytes::Bytes), ClientError> {
        let url = format!("{}{}", self.base, req.path);
        let timeout = req.timeout.unwrap_or(self.opts.request_timeout);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut b = self
                .http
                .request(req.method.clone(), &url)
                .query(&[("api-version", req.api_version)])
                .query(&req.query)
                .headers(req.headers.clone())
                .header(AUTHORIZATION, sas_header(&self.conn, SystemTime::now())?)
                .header("Request-Id", uuid::Uuid::new_v4().to_string())
                .timeout(timeout);
            if let Some(body) = &req.body {
                b = b
                    .header(CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(body.clone());
            }
            let resp = b.send().await.map_err(|e| transport(&url, &e, timeout))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| transport(&url, &e, timeout))?;
            if status.is_success() {
                return Ok((headers, body));
            }
            let code = headers
                .get("iothub-errorcode")
                .and_then(|v| v.to_str().ok());
            let err =
                ServiceError::from_response(status.as_u16(), code, &String::from_utf8_lossy(&body));
            if status != StatusCode::TOO_MANY_REQUESTS || attempt >= self.opts.retry.max_attempts {
                return Err(err.into());
            }
            let delay = retry_after(&headers)
                .map(|d| d.min(self.opts.retry.cap))
                .unwrap_or_else(|| self.opts.retry.delay(attempt, rand::random::<f64>()));
            (self.notifier)(&RetryNotice {
                code: err.code.clone(),
                delay,
                attempt,
            });
            tokio::time::sleep(delay).await;
        }
    }
}

/// One request's parts, rebuilt into a fresh reqwest request on every attempt.
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    api_version: &'static str,
}

impl Req {
    fn new(method: Method, path: String) -> Self {
        Req {
            method,
            path,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            api_version: API_VERSION,
        }
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn body<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| decode_err(&self.name(), e))?;
        self.body = Some(bytes);
        Ok(self)
    }

    fn header(mut self, name: impl reqwest::header::IntoHeaderName, v: HeaderValue) -> Self {
        self.headers.insert(name, v);
        self
    }

    fn query(mut self, k: &'static str, v: String) -> Self {
        self.query.push((k, v));
        self
    }

    fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// The `devices.jobs` query for one job. Job ids are letters, digits and `-`, and statuses
/// come from a fixed list, but quotes are escaped anyway.
pub fn device_jobs_query(job_id: &str, status: Option<&str>) -> String {
    let mut q = format!(
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{}'",
        job_id.replace('\'', "\\'")
    );
    if let Some(s) = status {
        q.push_str(&format!(
            " AND devices.jobs.status = '{}'",
            s.replace('\'', "\\'")
        ));
    }
    q
}

/// Percent-encodes one path segment (device and job ids may hold `#`, `?`, `%`…).
fn seg(s: &str) -> String {
    sas::encode(s)
}

fn header_value(s: &str) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_str(s).map_err(|e| decode_err("continuation token", e))
}

fn decode_err(request: &str, e: impl fmt::Display) -> ClientError {
    ClientError::Decode {
        request: request.to_string(),
        detail: e.to_string(),
    }
}

fn items_as<T: DeserializeOwned>(request: &str, items: Vec<Value>) -> Result<Vec<T>, ClientError> {
    items
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| decode_err(request, e)))
        .collect()
}

fn transport(url: &str, e: &reqwest::Error, timeout: Duration) -> ClientError {
    let mut detail = if e.is_timeout() {
        format!("no answer within {}", human_delay(timeout))
    } else {
        chain(e)
    };
    if detail.contains("UnknownIssuer") {
        detail.push_str(" (pass --ca-file with the hub's CA certificate)");
    }
    ClientError::Transport {
        url: url.split('?').next().unwrap_or(url).to_string(),
        detail,
    }
}

/// The error and its causes on one line, skipping causes that repeat their parent's text
/// and the HTTP stack's generic wrappers ("error sending request for url (…)", "client
/// error (Connect)") that only hide the cause that matters.
fn chain(e: &dyn std::error::Error) -> String {
    let noise = |s: &str| s.starts_with("error sending request") || s.starts_with("client error (");
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !noise(&s) && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    super::error::one_line(&parts.join(": "))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
