//! Showing a job's progress while it runs and its result when it ends: a live indicatif bar
//! on a terminal, one plain line per change otherwise, then a summary with the failed
//! devices and their errors. Rendering is pure (`progress_line`, `summary`); the sinks only
//! decide where the text goes.
//!
//! Counts are the doors' view: a device whose method answered with a status outside 2xx is
//! a failed door, although IoT Hub counts it succeeded (the device answered). Where the two
//! views differ the summary shows both.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::error::Outcome;
use super::output::{table, Console, Style};
use crate::service::model::{natural_cmp, DeviceJob, DeviceJobStatistics, JobResponse};

/// What the per-device records add to the job's own statistics: doors the hub counts as
/// succeeded that failed, and why pending doors wait. Built from the last records read (the
/// live view may lag them by a poll or two).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceView {
    /// Completed devices whose method answered with an error status.
    pub answered_errors: u64,
    /// Pending devices by the hub's last retryable error code (e.g. `DeviceNotOnline`).
    pub pending_reasons: BTreeMap<String, u64>,
}

impl DeviceView {
    pub fn of(devices: &[DeviceJob]) -> Self {
        let mut v = DeviceView::default();
        for d in devices {
            if d.answered_with_error() {
                v.answered_errors += 1;
            }
            if let Some(r) = d.pending_reason() {
                *v.pending_reasons.entry(r.to_string()).or_default() += 1;
            }
        }
        v
    }
}

/// The job's counts as doors: succeeded means the door did what was asked.
pub fn door_counts(s: &DeviceJobStatistics, view: &DeviceView) -> DeviceJobStatistics {
    let moved = view.answered_errors.min(s.succeeded_count);
    DeviceJobStatistics {
        succeeded_count: s.succeeded_count - moved,
        failed_count: s.failed_count + moved,
        ..*s
    }
}

fn pending_text(pending: u64, view: &DeviceView) -> String {
    if view.pending_reasons.is_empty() || pending == 0 {
        return format!("{pending} pending");
    }
    let why: Vec<String> = view
        .pending_reasons
        .iter()
        .map(|(code, n)| format!("{n} {code}"))
        .collect();
    format!("{pending} pending ({})", why.join(", "))
}

/// Whether the job has not reached its devices yet (nothing to draw a bar of).
fn selecting(job: &JobResponse) -> bool {
    !job.is_terminal()
        && job
            .device_job_statistics
            .is_none_or(|s| s.device_count == 0)
}

/// One line describing where a job stands.
pub fn progress_line(job: &JobResponse, now: DateTime<Utc>, view: &DeviceView) -> String {
    let mut line = format!("job {} {}", job.job_id, job.status);
    if matches!(job.status.as_str(), "queued" | "scheduled") {
        if let Some(start) = job.start().filter(|t| *t > now) {
            let wait = (start - now).to_std().unwrap_or_default();
            let wait = std::time::Duration::from_secs(wait.as_secs());
            line.push_str(&format!(", starts in {}", humantime::format_duration(wait)));
            return line;
        }
    }
    if selecting(job) {
        line.push_str(", selecting devices");
        return line;
    }
    if let Some(s) = job.device_job_statistics {
        let s = door_counts(&s, view);
        line.push_str(&format!(
            ": {}/{} done ({} succeeded, {} failed, {} running, {})",
            s.done(),
            s.device_count,
            s.succeeded_count,
            s.failed_count,
            s.running_count,
            pending_text(s.pending_count, view)
        ));
    }
    line
}

/// The devices that failed, with why: grouped by the kind of failure, each group's devices
/// in natural order (door-2 before door-10).
pub fn failed_devices(devices: &[DeviceJob]) -> Vec<(&str, String)> {
    let mut failed: Vec<(&str, String, String)> = devices
        .iter()
        .filter_map(|d| {
            let why = d.failure()?;
            let kind = d.failure_kind().unwrap_or_default();
            Some((d.device_id.as_str(), kind, why))
        })
        .collect();
    failed.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| natural_cmp(a.0, b.0)));
    failed.into_iter().map(|(d, _, why)| (d, why)).collect()
}

/// Failed devices by kind of failure, for the summary: (kind, devices in natural order).
pub fn failure_groups(devices: &[DeviceJob]) -> Vec<(String, Vec<&str>)> {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for d in devices {
        if let Some(kind) = d.failure_kind() {
            groups.entry(kind).or_default().push(d.device_id.as_str());
        }
    }
    groups
        .into_iter()
        .map(|(k, mut ids)| {
            ids.sort_by(|a, b| natural_cmp(a, b));
            (k, ids)
        })
        .collect()
}

/// What a finished (or abandoned) job means for the exit status.
pub fn job_outcome(job: &JobResponse, devices: &[DeviceJob]) -> Outcome {
    let failed_status = matches!(job.status.as_str(), "failed" | "cancelled" | "canceled");
    if failed_status || job.stats().failed_count > 0 || !failed_devices(devices).is_empty() {
        Outcome::Failed
    } else {
        Outcome::Success
    }
}

/// The closing report: status and counts, the job's failure reason, and a table of the
/// failed devices.
pub fn summary(style: Style, job: &JobResponse, devices: &[DeviceJob]) -> String {
    summary_at(style, job, devices, Utc::now())
}

/// Rows of the failed-devices table beyond which the summary lists groups instead (the
/// table of a thousand failed doors helps nobody; `job devices --status failed` has them).
const TABLE_ROWS: usize = 20;

/// [`summary`] at a given time: a job that has not started yet says when it starts.
pub fn summary_at(
    style: Style,
    job: &JobResponse,
    devices: &[DeviceJob],
    now: DateTime<Utc>,
) -> String {
    summary_full(style, job, devices, &[], now)
}

/// The summary, with doors that the hub counts as done but that did not take what they were
/// sent (`refused`: device id and why, e.g. a desired value acknowledged with `ac` 400).
pub fn summary_full(
    style: Style,
    job: &JobResponse,
    devices: &[DeviceJob],
    refused: &[(String, String)],
    now: DateTime<Utc>,
) -> String {
    let mut view = DeviceView::of(devices);
    if selecting(job) {
        return progress_line(job, now, &view);
    }
    view.answered_errors += refused.len() as u64;
    let hub = job.stats();
    let mut failed: Vec<(&str, String)> = failed_devices(devices);
    let mut refused_sorted: Vec<&(String, String)> = refused.iter().collect();
    refused_sorted.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| natural_cmp(&a.0, &b.0)));
    failed.extend(
        refused_sorted
            .iter()
            .map(|(d, why)| (d.as_str(), why.clone())),
    );
    let mut doors = door_counts(&hub, &view);
    // Cancelled devices: the hub counts them failed already.
    doors.failed_count = doors.failed_count.max(failed.len() as u64);
    let any_failed = doors.failed_count > 0;
    let mut out = format!(
        "job {} {}: {} devices, {} succeeded, {} failed",
        job.job_id,
        style.outcome_status(&job.status, any_failed),
        doors.device_count,
        doors.succeeded_count,
        doors.failed_count
    );
    if doors.running_count + doors.pending_count > 0 {
        out.push_str(&format!(
            ", {} running, {}",
            doors.running_count,
            pending_text(doors.pending_count, &view)
        ));
    }
    if view.answered_errors > 0 {
        let why = if refused.is_empty() {
            "it counts a device whose method answered as succeeded whatever the status; fieldctl counts a door whose method answered outside 2xx as failed"
        } else {
            "it counts a device as succeeded once its twin is updated; fieldctl counts a door that refused or did not acknowledge a desired value as failed"
        };
        out.push_str(&format!(
            "\n(IoT Hub counts {} succeeded, {} failed: {why})",
            hub.succeeded_count, hub.failed_count
        ));
    }
    if let Some(r) = job.failure_reason.as_deref().filter(|r| !r.is_empty()) {
        out.push_str(&format!("\nreason: {r}"));
    }
    if failed.is_empty() {
        return out;
    }
    if failed.len() <= TABLE_ROWS {
        let rows: Vec<Vec<String>> = failed
            .iter()
            .map(|(d, why)| vec![d.to_string(), why.clone()])
            .collect();
        out.push_str("\nfailed devices:\n");
        out.push_str(&table(style, &["DEVICE", "ERROR"], &rows));
    } else {
        out.push_str(&format!(
            "\nfailed devices ({}), by error; each door's detail: fieldctl job devices {} --status failed\n",
            failed.len(),
            job.job_id
        ));
        let mut groups = failure_groups(devices);
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (d, why) in &refused_sorted {
            by_reason.entry(why.as_str()).or_default().push(d.as_str());
        }
        groups.extend(by_reason.into_iter().map(|(k, v)| (k.to_string(), v)));
        let rows: Vec<Vec<String>> = groups
            .into_iter()
            .map(|(kind, ids)| {
                let shown: Vec<&str> = ids.iter().take(8).copied().collect();
                let more = ids.len() - shown.len();
                let list = if more > 0 {
                    format!("{} and {more} more", shown.join(", "))
                } else {
                    shown.join(", ")
                };
                vec![kind, ids.len().to_string(), list]
            })
            .collect();
        out.push_str(&table(style, &["ERROR", "DOORS", "DEVICES"], &rows));
    }
    out
}

/// Where progress goes while a job is followed.
pub trait ProgressSink {
    fn update(&mut self, job: &JobResponse, now: DateTime<Utc>, view: &DeviceView);
    /// Removes any live display before the summary is printed.
    fn finish(&mut self);
}

/// Plain lines on stderr, one per change, for logs and pipes.
#[derive(Debug)]
pub struct PlainProgress {
    console: Console,
    last: Option<String>,
}

impl PlainProgress {
    pub fn new(console: Console) -> Self {
        PlainProgress {
            console,
            last: None,
        }
    }
}

impl ProgressSink for PlainProgress {
    fn update(&mut self, job: &JobResponse, now: DateTime<Utc>, view: &DeviceView) {
        let mut line = progress_line(job, now, view);
        // A countdown would change every poll; compare without it.
        let key = line
            .split(", starts in")
            .next()
            .unwrap_or(&line)
            .to_string();
        if self.last.as_deref() != Some(key.as_str()) {
            self.console.line(&std::mem::take(&mut line));
            self.last = Some(key);
        }
    }

    fn finish(&mut self) {}
}

/// A live bar on the terminal (stderr): a spinner until the job has devices, then
/// done/total with the breakdown, trimmed to the terminal's width.
pub struct BarProgress {
    bar: indicatif::ProgressBar,
    console: Console,
    waiting: indicatif::ProgressStyle,
    counting: indicatif::ProgressStyle,
    has_stats: bool,
}

impl std::fmt::Debug for BarProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarProgress")
            .field("bar", &self.bar)
            .finish_non_exhaustive()
    }
}

/// The job id as the bar's prefix: long generated ids are cut so the counts (the failed
/// one above all) still fit an 80-column terminal.
pub fn bar_prefix(job_id: &str) -> String {
    const MAX: usize = 14;
    if job_id.chars().count() <= MAX {
        job_id.to_string()
    } else {
        let head: String = job_id.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

impl BarProgress {
    pub fn new(style: Style, job_id: &str, console: Console) -> Self {
        let (spin, bar) = if style.color {
            ("{spinner:.cyan}", "{bar:20.green/white}")
        } else {
            ("{spinner}", "{bar:20}")
        };
        let make = |t: String| {
            indicatif::ProgressStyle::with_template(&t)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
                .progress_chars("=> ")
        };
        let waiting = make(format!("{spin} {{prefix}} {{wide_msg}}"));
        let counting = make(format!(
            "{spin} {{prefix}} [{bar}] {{pos}}/{{len}} {{wide_msg}}"
        ));
        let pb =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        pb.set_style(waiting.clone());
        pb.set_prefix(bar_prefix(job_id));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        console.set_bar(Some(pb.clone()));
        BarProgress {
            bar: pb,
            console,
            waiting,
            counting,
            has_stats: false,
        }
    }
}

/// The bar's message: status and the breakdown the bar itself does not show, failed first
/// so it survives the terminal's width.
pub fn bar_message(job: &JobResponse, now: DateTime<Utc>, view: &DeviceView) -> String {
    let Some(s) = job.device_job_statistics.filter(|_| !selecting(job)) else {
        // "job ID scheduled, starts in 9m" → "scheduled, starts in 9m"
        let line = progress_line(job, now, view);
        return line
            .strip_prefix(&format!("job {} ", job.job_id))
            .unwrap_or(&line)
            .to_string();
    };
    let s = door_counts(&s, view);
    let counts = format!(
        "{} failed · {} ok · {} running · {}",
        s.failed_count,
        s.succeeded_count,
        s.running_count,
        pending_text(s.pending_count, view)
    );
    // "running" is what a moving bar already says; other statuses are news.
    if job.status == "running" {
        counts
    } else {
        format!("{} · {counts}", job.status)
    }
}

impl ProgressSink for BarProgress {
    fn update(&mut self, job: &JobResponse, now: DateTime<Utc>, view: &DeviceView) {
        match job.device_job_statistics.filter(|_| !selecting(job)) {
            Some(s) => {
                if !self.has_stats {
                    self.bar.set_style(self.counting.clone());
                    self.has_stats = true;
                }
                self.bar.set_length(s.device_count);
                self.bar.set_position(s.done());
            }
            None if self.has_stats => {
                self.bar.set_style(self.waiting.clone());
                self.has_stats = false;
            }
            None => {}
        }
        self.bar.set_message(bar_message(job, now, view));
    }

    fn finish(&mut self) {
        self.console.set_bar(None);
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::output::SharedBuf;
    use serde_json::json;

    const PLAIN: Style = Style { color: false };

    fn job(v: serde_json::Value) -> JobResponse {
        serde_json::from_value(v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn none() -> DeviceView {
        DeviceView::default()
    }

    fn running(done_ok: u64, failed: u64, running: u64, pending: u64) -> JobResponse {
        job(
            json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"running",
            "deviceJobStatistics":{"deviceCount":done_ok+failed+running+pending,"succeededCount":done_ok,
                "failedCount":failed,"runningCount":running,"pendingCount":pending}}),
        )
    }

    fn devices(v: serde_json::Value) -> Vec<DeviceJob> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn plain_progress_prints_one_line_per_change() {
        let buf = SharedBuf::default();
        let mut p = PlainProgress::new(Console::new(buf.clone()));
        let scheduled = job(json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
            "status":"scheduled","startTime":"2030-01-01T00:10:00Z"}));
        p.update(&scheduled, now(), &none());
        // The countdown alone is not a change.
        p.update(&scheduled, now() + chrono::Duration::seconds(5), &none());
        p.update(&running(0, 0, 2, 2), now(), &none());
        p.update(&running(0, 0, 2, 2), now(), &none());
        p.update(&running(3, 1, 0, 0), now(), &none());
        p.finish();
        assert_eq!(
            buf.contents(),
            "job lock-43 scheduled, starts in 10m\n\
             job lock-43 running: 0/4 done (0 succeeded, 0 failed, 2 running, 2 pending)\n\
             job lock-43 running: 4/4 done (3 succeeded, 1 failed, 0 running, 0 pending)\n"
        );
    }

    #[test]
    fn a_job_without_devices_yet_is_not_drawn_as_a_full_bar() {
        let queued = job(
            json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"queued",
            "deviceJobStatistics":{"deviceCount":0,"succeededCount":0,"failedCount":0,"runningCount":0,"pendingCount":0}}),
        );
        assert_eq!(
            bar_message(&queued, now(), &none()),
            "queued, selecting devices"
        );
        assert_eq!(
            progress_line(&queued, now(), &none()),
            "job lock-43 queued, selecting devices"
        );
        assert_eq!(bar_prefix("lock-43"), "lock-43");
        assert_eq!(bar_prefix("job-20261207-025501-ab12"), "job-20261207-…");
    }

    #[test]
    fn bar_messages_count_doors_and_say_why_doors_wait() {
        assert_eq!(
            bar_message(&running(3, 1, 2, 4), now(), &none()),
            "1 failed · 3 ok · 2 running · 4 pending"
        );
        // One of the three the hub counts succeeded answered 504; two pending doors are offline.
        let view = DeviceView {
            answered_errors: 1,
            pending_reasons: [("DeviceNotOnline".to_string(), 2)].into(),
        };
        assert_eq!(
            bar_message(&running(3, 1, 2, 4), now(), &view),
            "2 failed · 2 ok · 2 running · 4 pending (2 DeviceNotOnline)"
        );
        let done = JobResponse {
            status: "completed".into(),
            ..running(3, 1, 0, 0)
        };
        assert_eq!(
            bar_message(&done, now(), &none()),
            "completed · 1 failed · 3 ok · 0 running · 0 pending"
        );
        let scheduled = job(json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
            "status":"scheduled","startTime":"2030-01-01T00:10:00Z"}));
        assert_eq!(
            bar_message(&scheduled, now(), &none()),
            "scheduled, starts in 10m"
        );
        // Drawing to a stderr that is not a terminal is a no-op, not a failure.
        let buf = SharedBuf::default();
        let console = Console::new(buf.clone());
        let mut bar = BarProgress::new(PLAIN, "lock-43", console.clone());
        bar.update(&scheduled, now(), &none());
        console.line("a notice while the bar is shown");
        bar.update(&running(3, 1, 2, 4), now(), &none());
        bar.finish();
        console.line("after");
        assert_eq!(buf.contents(), "a notice while the bar is shown\nafter\n");
    }

    #[test]
    fn a_method_answered_with_an_error_is_a_failed_door_and_both_views_are_shown() {
        // What the demo showed: the hub counts the 504 door succeeded *and* fieldctl failed.
        let done = job(
            json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"completed",
            "deviceJobStatistics":{"deviceCount":3,"succeededCount":3,"failedCount":0,"runningCount":0,"pendingCount":0}}),
        );
        let devs = devices(json!([
            {"deviceId":"door-10","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":200,"payload":{"result":"done"}}}},
            {"deviceId":"door-2","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":504,"payload":{"code":"BusTimeout","written":"unknown"}}}},
            {"deviceId":"door-1","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":200,"payload":null}}}
        ]));
        let text = summary(PLAIN, &done, &devs);
        assert!(
            text.starts_with("job lock-43 completed: 3 devices, 2 succeeded, 1 failed\n"),
            "{text}"
        );
        assert!(
            text.contains("IoT Hub counts 3 succeeded, 0 failed"),
            "{text}"
        );
        assert!(text.contains("door-2  method answered 504"), "{text}");
        assert_eq!(job_outcome(&done, &devs), Outcome::Failed);
        let counts = door_counts(&done.stats(), &DeviceView::of(&devs));
        assert_eq!((counts.succeeded_count, counts.failed_count), (2, 1));
    }

    #[test]
    fn failed_devices_are_grouped_by_error_in_natural_order() {
        let devs = devices(json!([
            {"deviceId":"door-10","status":"failed","error":{"code":"DeviceNotOnline","description":"offline"}},
            {"deviceId":"door-9","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":504,"payload":{"code":"BusTimeout"}}}},
            {"deviceId":"door-2","status":"failed","error":{"code":"DeviceNotOnline","description":"offline"}},
            {"deviceId":"door-1","status":"canceled"}
        ]));
        let order: Vec<&str> = failed_devices(&devs).into_iter().map(|(d, _)| d).collect();
        assert_eq!(order, vec!["door-2", "door-10", "door-1", "door-9"]);
        let groups = failure_groups(&devs);
        assert_eq!(
            groups,
            vec![
                ("DeviceNotOnline".to_string(), vec!["door-2", "door-10"]),
                ("cancelled".to_string(), vec!["door-1"]),
                ("method answered 504 BusTimeout".to_string(), vec!["door-9"]),
            ]
        );
    }

    #[test]
    fn summary_lists_failed_devices_and_sets_outcome() {
        let done = job(
            json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"completed",
            "deviceJobStatistics":{"deviceCount":3,"succeededCount":2,"failedCount":1,"runningCount":0,"pendingCount":0}}),
        );
        let devs = devices(json!([
            {"deviceId":"door-01","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":200,"payload":{"locked":true}}}},
            {"deviceId":"door-02","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":200,"payload":null}}},
            {"deviceId":"door-07","jobId":"lock-43","status":"failed",
             "error":{"code":"DeviceNotOnline","description":"Timed out waiting for device to connect."}}
        ]));
        assert_eq!(
            summary(PLAIN, &done, &devs),
            "job lock-43 completed: 3 devices, 2 succeeded, 1 failed\n\
             failed devices:\n\
             DEVICE   ERROR\n\
             door-07  DeviceNotOnline: Timed out waiting for device to connect."
        );
        assert_eq!(job_outcome(&done, &devs), Outcome::Failed);
        assert_eq!(
            job_outcome(&done, &devs[..2]),
            Outcome::Failed,
            "failedCount > 0"
        );

        let clean = running(2, 0, 0, 0);
        let clean = JobResponse {
            status: "completed".into(),
            ..clean
        };
        assert_eq!(job_outcome(&clean, &devs[..2]), Outcome::Success);
        let cancelled = JobResponse {
            status: "cancelled".into(),
            ..clean.clone()
        };
        assert_eq!(job_outcome(&cancelled, &[]), Outcome::Failed);
        let failed = job(
            json!({"jobId":"j","type":"scheduleUpdateTwin","status":"failed",
            "failureReason":"query condition invalid"}),
        );
        assert_eq!(
            summary(PLAIN, &failed, &[]),
            "job j failed: 0 devices, 0 succeeded, 0 failed\nreason: query condition invalid"
        );
    }
}
