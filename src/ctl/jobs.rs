//! The `job` commands: schedule method and twin jobs, follow a job to its end (`--wait`,
//! `show --watch`), list, cancel, and per-device results.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::args::{check_job_id, json_arg, merge, new_job_id, parse_assignments, secs_in_range};
use super::cli::{JobCommand, MethodJobArgs, ScheduleArgs, TwinJobArgs, WaitArgs};
use super::context::Ctx;
use super::error::{condition_err, job_create_err, job_err, query_err, CtlError, Outcome};
use super::output::{jobs_table, table, Style};
use super::progress::{
    door_counts, failed_devices, job_outcome, progress_line, summary_full, BarProgress, DeviceView,
    PlainProgress, ProgressSink,
};
use crate::service::acks;
use crate::service::client::device_jobs_query;
use crate::service::human_delay;
use crate::service::model::{
    natural_cmp, CloudToDeviceMethod, DeviceJob, DeviceJobStatistics, JobRequest, JobResponse,
    TwinPatch,
};

/// Grace added to a job's own time limit before `--wait` gives up on it.
const WAIT_GRACE: Duration = Duration::from_secs(60);
/// Consecutive failed polls (hub unreachable or 5xx) after which watching stops.
const MAX_POLL_FAILURES: u32 = 5;

pub(crate) async fn run(ctx: &mut Ctx<'_>, cmd: JobCommand) -> Result<Outcome, CtlError> {
    match cmd {
        JobCommand::Method(a) => create_method(ctx, a).await,
        JobCommand::Twin(a) => create_twin(ctx, a).await,
        JobCommand::Show { id, watch, wait } => show(ctx, &id, watch, wait).await,
        JobCommand::List { job_type, status } => {
            let jobs = ctx
                .client
                .list_jobs(job_type.map(|t| t.wire()), status.map(|s| s.wire()))
                .await?;
            ctx.emit(&jobs, |style| {
                if jobs.is_empty() {
                    "no jobs".into()
                } else {
                    jobs_table(style, &jobs)
                }
            })?;
            Ok(Outcome::Success)
        }
        JobCommand::Cancel { id } => {
            check_job_id(&id)?;
            // IoT Hub answers a cancel of a finished job with the job as it is: say so
            // rather than print a status that reads like the cancel's result.
            let before = ctx.client.get_job(&id).await.map_err(job_err(&id))?;
            if before.is_terminal() {
                ctx.emit(&before, |style| {
                    format!(
                        "job {id} had already {}; nothing was cancelled",
                        style.status(&before.status)
                    )
                })?;
                return Ok(Outcome::Success);
            }
            let job = ctx.client.cancel_job(&id).await.map_err(job_err(&id))?;
            ctx.emit(&job, |style| {
                format!("job {id} {}", style.status(&job.status))
            })?;
            Ok(Outcome::Success)
        }
        JobCommand::Devices { id, status } => {
            check_job_id(&id)?;
            // Ask for the job first: an unknown id must be an error, not an empty list.
            ctx.client.get_job(&id).await.map_err(job_err(&id))?;
            // `failed` means failed doors: the hub lists a device whose method answered an
            // error as completed, so that one filter is applied here, on every record.
            let wire = status.map(|s| s.wire());
            let server_filter = wire.filter(|w| *w != "failed" && *w != "completed");
            let mut devices = ctx
                .client
                .device_jobs(&id, server_filter)
                .await
                .map_err(query_err(device_jobs_query(&id, None)))?;
            match wire {
                Some("failed") => devices.retain(|d| d.failure().is_some()),
                Some("completed") => {
                    devices.retain(|d| d.status == "completed" && d.failure().is_none())
                }
                _ => {}
            }
            devices.sort_by(|a, b| natural_cmp(&a.device_id, &b.device_id));
            ctx.emit(&devices, |style| devices_table(style, &devices))?;
            Ok(Outcome::Success)
        }
    }
}

/// The validated scheduling part of a job request.
struct Schedule {
    id: String,
    query: String,
    start: chrono::DateTime<Utc>,
    max_secs: u64,
}

fn schedule(a: &ScheduleArgs) -> Result<Schedule, CtlError> {
    let id = match &a.id {
        Some(id) => {
            check_job_id(id)?;
            id.clone()
        }
        None => new_job_id(),
    };
    if a.query.trim().is_empty() {
        return Err(CtlError::usage("--query is empty"));
    }
    let now = Utc::now();
    let start = a.start.resolve(now);
    // A start in the past runs at once: for an unlockDoor job a mistyped year would open
    // the doors now. A minute of slack covers clocks and typing.
    if start < now - chrono::Duration::minutes(1) {
        return Err(CtlError::usage(format!(
            "--start {} is in the past; use --start now to run the job now",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(Schedule {
        id,
        query: a.query.trim().to_string(),
        start,
        max_secs: secs_in_range("--max-time", a.max_time, 1, u64::MAX)?,
    })
}

/// Builds the body of a method job from the arguments (no I/O but reading `@file`).
pub(crate) fn method_job_request(a: &MethodJobArgs) -> Result<JobRequest, CtlError> {
    let payload = match &a.payload {
        Some(p) => json_arg("--payload", p)?,
        None => Value::Null,
    };
    let method = CloudToDeviceMethod {
        method_name: a.method.clone(),
        payload,
        response_timeout_in_seconds: secs_in_range(
            "--response-timeout",
            a.response_timeout,
            5,
            300,
        )?,
        connect_timeout_in_seconds: secs_in_range("--connect-timeout", a.connect_timeout, 0, 300)?,
    };
    let s = schedule(&a.schedule)?;
    Ok(JobRequest::method(
        s.id, s.query, method, s.start, s.max_secs,
    ))
}

/// Builds the body of a twin job: `--patch` first, then `--tag`/`--desired` on top.
pub(crate) fn twin_job_request(a: &TwinJobArgs) -> Result<JobRequest, CtlError> {
    let mut patch = TwinPatch::default();
    if let Some(p) = &a.patch {
        patch = twin_patch_of(json_arg("--patch", p)?)?;
    }
    merge(&mut patch.tags, parse_assignments("--tag", &a.tag)?);
    merge(
        &mut patch.desired,
        parse_assignments("--desired", &a.desired)?,
    );
    if patch.is_empty() {
        return Err(CtlError::usage(
            "a twin job needs something to set: --desired, --tag or --patch",
        ));
    }
    let s = schedule(&a.schedule)?;
    Ok(JobRequest::twin(s.id, s.query, &patch, s.start, s.max_secs))
}

/// Reads `{"tags":{…},"properties":{"desired":{…}}}`; anything else in it is refused so a
/// typo cannot silently do nothing.
fn twin_patch_of(v: Value) -> Result<TwinPatch, CtlError> {
    let bad = |why: &str| CtlError::usage(format!("--patch {why}"));
    let Value::Object(mut top) = v else {
        return Err(bad(
            "must be a JSON object like {\"tags\":{…},\"properties\":{\"desired\":{…}}}",
        ));
    };
    let mut patch = TwinPatch::default();
    match top.remove("tags") {
        Some(Value::Object(t)) => patch.tags = t,
        Some(_) => return Err(bad("\"tags\" must be an object")),
        None => {}
    }
    match top.remove("properties") {
        Some(Value::Object(mut p)) => {
            match p.remove("desired") {
                Some(Value::Object(d)) => patch.desired = d,
                Some(_) => return Err(bad("\"properties.desired\" must be an object")),
                None => {}
            }
            if let Some(k) = p.keys().next() {
                return Err(bad(&format!(
                    "may only set properties.desired, not properties.{k}"
                )));
            }
        }
        Some(_) => return Err(bad("\"properties\" must be an object")),
        None => {}
    }
    // The etag is always "*" for jobs; accept it so a patch copied from a job still works.
    top.remove("etag");
    if let Some(k) = top.keys().next() {
        return Err(bad(&format!(
            "may only hold tags and properties.desired, not \"{k}\""
        )));
    }
    Ok(patch)
}

async fn create_method(ctx: &mut Ctx<'_>, a: MethodJobArgs) -> Result<Outcome, CtlError> {
    let req = method_job_request(&a)?;
    create(ctx, req, a.schedule.wait, a.schedule.wait_args).await
}

async fn create_twin(ctx: &mut Ctx<'_>, a: TwinJobArgs) -> Result<Outcome, CtlError> {
    let req = twin_job_request(&a)?;
    create(ctx, req, a.schedule.wait, a.schedule.wait_args).await
}

async fn create(
    ctx: &mut Ctx<'_>,
    req: JobRequest,
    wait: bool,
    wait_args: WaitArgs,
) -> Result<Outcome, CtlError> {
    // Ask the hub to parse the condition now: a typo fails here, with the hub's position,
    // instead of as a job that fails later.
    let prefix = "SELECT * FROM devices WHERE ";
    let probe = format!("{prefix}{}", req.query_condition);
    let (matching, _) = ctx
        .client
        .query_page(&probe, 1, None)
        .await
        .map_err(condition_err(&req.query_condition, prefix.chars().count()))?;
    if matching.is_empty() {
        ctx.console.line(&format!(
            "note: no device matches `{}` right now; the hub evaluates it again when the job starts",
            req.query_condition
        ));
    }

    let created = ctx
        .client
        .create_job(&req)
        .await
        .map_err(job_create_err(&req.job_id))?;
    if !wait {
        ctx.emit(&created, |style| {
            format!(
                "job {} {} (starts {}); follow it with: fieldctl job show {} --watch",
                created.job_id,
                style.status(&created.status),
                req.start_time,
                created.job_id
            )
        })?;
        return Ok(Outcome::Success);
    }
    let start = crate::service::model::parse_time(&req.start_time).unwrap_or_else(Utc::now);
    let default_limit = (start - Utc::now()).to_std().unwrap_or_default()
        + Duration::from_secs(req.max_execution_time_in_seconds)
        + WAIT_GRACE;
    follow(ctx, created, wait_args, default_limit).await
}

async fn show(
    ctx: &mut Ctx<'_>,
    id: &str,
    watch: bool,
    wait: WaitArgs,
) -> Result<Outcome, CtlError> {
    check_job_id(id)?;
    let job = ctx.client.get_job(id).await.map_err(job_err(id))?;
    if watch {
        let limit = default_limit(&job);
        return follow(ctx, job, wait, limit).await;
    }
    let devices = fetch_devices(ctx, id).await?;
    report(ctx, &job, &devices, None, &[], false)?;
    Ok(if job.is_terminal() {
        job_outcome(&job, &devices)
    } else {
        Outcome::Success
    })
}

/// How long to follow a job already on the hub: until its start plus its time limit, plus
/// a grace period.
fn default_limit(job: &JobResponse) -> Duration {
    let now = Utc::now();
    let start = job.start().unwrap_or(now);
    let until_start = (start - now).to_std().unwrap_or_default();
    until_start
        + Duration::from_secs(job.max_execution_time_in_seconds.unwrap_or(3600))
        + WAIT_GRACE
}

/// Polls the job until it ends or the wait limit passes, drawing progress, then reports.
async fn follow(
    ctx: &mut Ctx<'_>,
    mut job: JobResponse,
    wait: WaitArgs,
    default_limit: Duration,
) -> Result<Outcome, CtlError> {
    let limit = wait.wait_timeout.unwrap_or(default_limit);
    let deadline = tokio::time::Instant::now() + limit;
    let interval = wait.poll_interval.max(Duration::from_millis(50));
    let mut sink: Box<dyn ProgressSink> = if ctx.live_progress {
        Box::new(BarProgress::new(
            ctx.style_err,
            &job.job_id,
            ctx.console.clone(),
        ))
    } else {
        Box::new(PlainProgress::new(ctx.console.clone()))
    };
    let id = job.job_id.clone();
    let mut failures = 0;
    let mut view = DeviceView::default();
    // The job's own statistics count a door whose method answered an error as succeeded,
    // and do not say why doors are pending; the device records do. Read them now and then
    // (one query each time, well inside the hub's query quota).
    let records_every = (interval * 5).max(Duration::from_secs(2));
    let mut records_at = tokio::time::Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let timed_out = loop {
        let stats = job.device_job_statistics;
        let worth_reading = stats.is_some_and(|s| s.succeeded_count > 0 || s.pending_count > 0);
        if worth_reading && !job.is_terminal() && tokio::time::Instant::now() >= records_at {
            records_at = tokio::time::Instant::now() + records_every;
            if let Ok(devices) = ctx.client.device_jobs(&id, None).await {
                view = DeviceView::of(&devices);
            }
        }
        sink.update(&job, Utc::now(), &view);
        if job.is_terminal() {
            break false;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break true;
        }
        tokio::select! {
            () = tokio::time::sleep(interval.min(deadline - now)) => {}
            _ = &mut ctrl_c => {
                sink.finish();
                ctx.console.line(&format!(
                    "stopped watching; job {id} keeps running on the hub. Watch it again with: fieldctl job show {id} --watch"
                ));
                return Ok(Outcome::Failed);
            }
        }
        match ctx.client.get_job(&id).await {
            Ok(j) => {
                job = j;
                failures = 0;
            }
            // A blip in a long watch should not throw away the operator's view of the job.
            Err(e) if e.is_transient() && failures + 1 < MAX_POLL_FAILURES => {
                failures += 1;
                ctx.console
                    .line(&format!("lost contact with the hub ({e}); trying again"));
            }
            Err(e) => {
                sink.finish();
                return Err(job_err(&id)(e));
            }
        }
    };
    sink.finish();
    if timed_out {
        ctx.console.line(&format!(
            "gave up waiting for job {id} after {}; it is {}",
            human_delay(limit),
            progress_line(&job, Utc::now(), &view).trim_start_matches(&format!("job {id} "))
        ));
    }
    let devices = fetch_devices(ctx, &id).await?;
    let props = job.desired_set();
    let acks = if !timed_out && job.is_terminal() && !props.is_empty() {
        let updated: Vec<String> = devices
            .iter()
            .filter(|d| d.status == "completed")
            .map(|d| d.device_id.clone())
            .collect();
        if updated.is_empty() {
            None
        } else {
            ctx.console.line(&format!(
                "waiting up to {} for {} door(s) to acknowledge {}",
                human_delay(wait.ack_timeout),
                updated.len(),
                props.join(", ")
            ));
            Some(
                acks::follow(
                    &ctx.client,
                    &updated,
                    &props,
                    wait.ack_timeout,
                    interval.max(Duration::from_millis(500)),
                )
                .await
                .map_err(job_err(&id))?,
            )
        }
    } else {
        None
    };
    let refused: Vec<(String, String)> = acks
        .iter()
        .flatten()
        .filter_map(|a| a.failure().map(|why| (a.device_id.clone(), why)))
        .collect();
    report(ctx, &job, &devices, acks.as_deref(), &refused, timed_out)?;
    Ok(if timed_out || !refused.is_empty() {
        Outcome::Failed
    } else {
        job_outcome(&job, &devices)
    })
}

async fn fetch_devices(ctx: &mut Ctx<'_>, id: &str) -> Result<Vec<DeviceJob>, CtlError> {
    ctx.client
        .device_jobs(id, None)
        .await
        .map_err(query_err(device_jobs_query(id, None)))
}

/// `job show` / `--wait` output: the job, every device's result, and which failed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport<'a> {
    pub job: &'a JobResponse,
    pub devices: &'a [DeviceJob],
    pub failed_devices: Vec<FailedDevice<'a>>,
    /// After a twin job with `--wait`: each updated door's acknowledgement of every desired
    /// property the job set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledgements: Option<&'a [acks::DoorAcks]>,
    /// The job's counts as doors (a method answered outside 2xx is a failed door); the
    /// hub's own counts are `job.deviceJobStatistics`.
    pub doors: Option<DeviceJobStatistics>,
    pub timed_out: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedDevice<'a> {
    pub device_id: &'a str,
    pub error: String,
}

fn report(
    ctx: &mut Ctx<'_>,
    job: &JobResponse,
    devices: &[DeviceJob],
    acks: Option<&[acks::DoorAcks]>,
    refused: &[(String, String)],
    timed_out: bool,
) -> Result<(), CtlError> {
    let failed_devices = failed_devices(devices)
        .into_iter()
        .chain(refused.iter().map(|(d, why)| (d.as_str(), why.clone())))
        .map(|(device_id, error)| FailedDevice { device_id, error })
        .collect();
    let mut view = DeviceView::of(devices);
    view.answered_errors += refused.len() as u64;
    let json = JobReport {
        job,
        devices,
        failed_devices,
        acknowledgements: acks,
        doors: job.device_job_statistics.map(|s| door_counts(&s, &view)),
        timed_out,
    };
    ctx.emit(&json, |style| {
        summary_full(style, job, devices, refused, Utc::now())
    })
}

fn devices_table(style: Style, devices: &[DeviceJob]) -> String {
    if devices.is_empty() {
        return "no device results".into();
    }
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            let result = match (d.failure(), d.method_status()) {
                (Some(why), _) => why,
                (None, Some(s)) => format!("method answered {s}"),
                (None, None) => String::new(),
            };
            vec![d.device_id.clone(), d.status.clone(), result]
        })
        .collect();
    table(style, &["DEVICE", "STATUS", "RESULT"], &rows)
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
