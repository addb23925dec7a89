//! Showing a job's progress while it runs and its result when it ends: a live indicatif bar
//! on a terminal, one plain line per change otherwise, then a summary with the failed
//! devices and their errors. Rendering is pure (`progress_line`, `summary`); the sinks only
//! decide where the text goes.

use chrono::{DateTime, Utc};

use super::error::Outcome;
use super::model::{DeviceJob, JobResponse};
use super::output::{table, Console, Style};

/// One line describing where a job stands.
pub fn progress_line(job: &JobResponse, now: DateTime<Utc>) -> String {
    let s = job.stats();
    let mut line = format!("job {} {}", job.job_id, job.status);
    if matches!(job.status.as_str(), "queued" | "scheduled") {
        if let Some(start) = job.start().filter(|t| *t > now) {
            let wait = (start - now).to_std().unwrap_or_default();
            let wait = std::time::Duration::from_secs(wait.as_secs());
            line.push_str(&format!(", starts in {}", humantime::format_duration(wait)));
        }
    }
    if job.device_job_statistics.is_some() {
        line.push_str(&format!(
            ": {}/{} done ({} succeeded, {} failed, {} running, {} pending)",
            s.done(),
            s.device_count,
            s.succeeded_count,
            s.failed_count,
            s.running_count,
            s.pending_count
        ));
    }
    line
}

/// The devices that failed, with why.
pub fn failed_devices(devices: &[DeviceJob]) -> Vec<(&str, String)> {
    devices
        .iter()
        .filter_map(|d| d.failure().map(|why| (d.device_id.as_str(), why)))
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

/// [`summary`] at a given time: a job that has not started yet says when it starts.
pub fn summary_at(
    style: Style,
    job: &JobResponse,
    devices: &[DeviceJob],
    now: DateTime<Utc>,
) -> String {
    let s = job.stats();
    let failed = failed_devices(devices);
    if job.device_job_statistics.is_none() && !job.is_terminal() {
        return progress_line(job, now);
    }
    let mut out = format!(
        "job {} {}: {} devices, {} succeeded, {} failed",
        job.job_id,
        style.status(&job.status),
        s.device_count,
        s.succeeded_count,
        // Devices whose method answered an error count as failed here although the hub
        // counts them succeeded.
        s.failed_count.max(failed.len() as u64)
    );
    if s.running_count + s.pending_count > 0 {
        out.push_str(&format!(
            ", {} running, {} pending",
            s.running_count, s.pending_count
        ));
    }
    if let Some(r) = job.failure_reason.as_deref().filter(|r| !r.is_empty()) {
        out.push_str(&format!("\nreason: {r}"));
    }
    if !failed.is_empty() {
        let rows: Vec<Vec<String>> = failed
            .iter()
            .map(|(d, why)| vec![d.to_string(), why.clone()])
            .collect();
        out.push_str("\nfailed devices:\n");
        out.push_str(&table(style, &["DEVICE", "ERROR"], &rows));
    }
    out
}

/// Where progress goes while a job is followed.
pub trait ProgressSink {
    fn update(&mut self, job: &JobResponse, now: DateTime<Utc>);
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
    fn update(&mut self, job: &JobResponse, now: DateTime<Utc>) {
        let mut line = progress_line(job, now);
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

/// A live bar on the terminal (stderr): a spinner until the hub reports device statistics,
/// then done/total with the breakdown, trimmed to the terminal's width.
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

impl BarProgress {
    pub fn new(style: Style, job_id: &str, console: Console) -> Self {
        let (spin, bar) = if style.color {
            ("{spinner:.cyan}", "{bar:24.green/white}")
        } else {
            ("{spinner}", "{bar:24}")
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
        pb.set_prefix(job_id.to_string());
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

/// The bar's message: status and the breakdown the bar itself does not show.
pub fn bar_message(job: &JobResponse, now: DateTime<Utc>) -> String {
    let Some(s) = job.device_job_statistics else {
        // "job ID scheduled, starts in 9m" → "scheduled, starts in 9m"
        let line = progress_line(job, now);
        return line
            .strip_prefix(&format!("job {} ", job.job_id))
            .unwrap_or(&line)
            .to_string();
    };
    let counts = format!(
        "{} ok · {} failed · {} running · {} pending",
        s.succeeded_count, s.failed_count, s.running_count, s.pending_count
    );
    // "running" is what a moving bar already says; other statuses are news.
    if job.status == "running" {
        counts
    } else {
        format!("{} · {counts}", job.status)
    }
}

impl ProgressSink for BarProgress {
    fn update(&mut self, job: &JobResponse, now: DateTime<Utc>) {
        if let Some(s) = job.device_job_statistics {
            if !self.has_stats {
                self.bar.set_style(self.counting.clone());
                self.has_stats = true;
            }
            self.bar.set_length(s.device_count);
            self.bar.set_position(s.done());
        } else if self.has_stats {
            self.bar.set_style(self.waiting.clone());
            self.has_stats = false;
        }
        self.bar.set_message(bar_message(job, now));
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

    fn running(done_ok: u64, failed: u64, running: u64, pending: u64) -> JobResponse {
        job(
            json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"running",
            "deviceJobStatistics":{"deviceCount":done_ok+failed+running+pending,"succeededCount":done_ok,
                "failedCount":failed,"runningCount":running,"pendingCount":pending}}),
        )
    }

    #[test]
    fn plain_progress_prints_one_line_per_change() {
        let buf = SharedBuf::default();
        let mut p = PlainProgress::new(Console::new(buf.clone()));
        let scheduled = job(json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
            "status":"scheduled","startTime":"2030-01-01T00:10:00Z"}));
        p.update(&scheduled, now());
        // The countdown alone is not a change.
        p.update(&scheduled, now() + chrono::Duration::seconds(5));
        p.update(&running(0, 0, 2, 2), now());
        p.update(&running(0, 0, 2, 2), now());
        p.update(&running(3, 1, 0, 0), now());
        p.finish();
        assert_eq!(
            buf.contents(),
            "job lock-43 scheduled, starts in 10m\n\
             job lock-43 running: 0/4 done (0 succeeded, 0 failed, 2 running, 2 pending)\n\
             job lock-43 running: 4/4 done (3 succeeded, 1 failed, 0 running, 0 pending)\n"
        );
    }

    #[test]
    fn bar_messages() {
        assert_eq!(
            bar_message(&running(3, 1, 2, 4), now()),
            "3 ok · 1 failed · 2 running · 4 pending"
        );
        let done = JobResponse {
            status: "completed".into(),
            ..running(3, 1, 0, 0)
        };
        assert_eq!(
            bar_message(&done, now()),
            "completed · 3 ok · 1 failed · 0 running · 0 pending"
        );
        let scheduled = job(json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
            "status":"scheduled","startTime":"2030-01-01T00:10:00Z"}));
        assert_eq!(bar_message(&scheduled, now()), "scheduled, starts in 10m");
        // Drawing to a stderr that is not a terminal is a no-op, not a failure.
        let buf = SharedBuf::default();
        let console = Console::new(buf.clone());
        let mut bar = BarProgress::new(PLAIN, "lock-43", console.clone());
        bar.update(&scheduled, now());
        console.line("a notice while the bar is shown");
        bar.update(&running(3, 1, 2, 4), now());
        bar.finish();
        console.line("after");
        assert_eq!(buf.contents(), "a notice while the bar is shown\nafter\n");
    }

    #[test]
    fn summary_lists_failed_devices_and_sets_outcome() {
        let done = job(
            json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"completed",
            "deviceJobStatistics":{"deviceCount":3,"succeededCount":2,"failedCount":1,"runningCount":0,"pendingCount":0}}),
        );
        let devices: Vec<DeviceJob> = serde_json::from_value(json!([
            {"deviceId":"door-01","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":200,"payload":{"locked":true}}}},
            {"deviceId":"door-02","jobId":"lock-43","status":"completed",
             "outcome":{"deviceMethodResponse":{"status":200,"payload":null}}},
            {"deviceId":"door-07","jobId":"lock-43","status":"failed",
             "error":{"code":"DeviceNotOnline","description":"Timed out waiting for device to connect."}}
        ]))
        .unwrap();
        assert_eq!(
            summary(PLAIN, &done, &devices),
            "job lock-43 completed: 3 devices, 2 succeeded, 1 failed\n\
             failed devices:\n\
             DEVICE   ERROR\n\
             door-07  DeviceNotOnline: Timed out waiting for device to connect."
        );
        assert_eq!(job_outcome(&done, &devices), Outcome::Failed);
        assert_eq!(
            job_outcome(&done, &devices[..2]),
            Outcome::Failed,
            "failedCount > 0"
        );

        let clean = running(2, 0, 0, 0);
        let clean = JobResponse {
            status: "completed".into(),
            ..clean
        };
        assert_eq!(job_outcome(&clean, &devices[..2]), Outcome::Success);
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
