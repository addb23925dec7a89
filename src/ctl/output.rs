//! How results look: aligned tables and short summaries for people, one JSON document for
//! scripts, colour only when allowed. Also [`Console`], the shared stderr that progress,
//! notices and errors are written to, and [`SharedBuf`] for capturing output in tests.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::CtlError;
use crate::service::model::{JobResponse, Twin};

/// Whether to colour, decided once from `--no-color`, `NO_COLOR` and the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    /// Colours a job or device status by what it means.
    pub fn status(&self, s: &str) -> String {
        let code = match s {
            "completed" => "32",
            "failed" => "31",
            "cancelled" | "canceled" => "33",
            "running" => "36",
            _ => "0",
        };
        self.paint(code, s)
    }

    /// A job's status as its outcome: "completed" is green only when no door failed.
    pub fn outcome_status(&self, s: &str, doors_failed: bool) -> String {
        if doors_failed && s == "completed" {
            self.paint("33", s)
        } else {
            self.status(s)
        }
    }
}

/// Stderr shared by the command and the client's retry notices. Writes are best effort: a
/// closed stderr must not turn a finished job into an error. While a live progress bar is
/// shown, lines are printed above it instead of through it.
#[derive(Clone)]
pub struct Console(Arc<Mutex<ConsoleInner>>);

struct ConsoleInner {
    w: Box<dyn Write + Send>,
    bar: Option<indicatif::ProgressBar>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    pub fn new(w: impl Write + Send + 'static) -> Self {
        Console(Arc::new(Mutex::new(ConsoleInner {
            w: Box::new(w),
            bar: None,
        })))
    }

    pub fn line(&self, s: &str) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ConsoleInner { w, bar } = &mut *inner;
        let mut write = || {
            let _ = writeln!(w, "{s}");
            let _ = w.flush();
        };
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }

    /// Routes lines around `bar` while it is drawn; `None` when it is gone.
    pub fn set_bar(&self, bar: Option<indicatif::ProgressBar>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).bar = bar;
    }
}

/// An in-memory writer that can be cloned and read back (for tests and embedding).
#[derive(Debug, Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `v` as the single pretty JSON document on stdout.
pub fn write_json(out: &mut dyn Write, v: &impl Serialize) -> Result<(), CtlError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CtlError::usage(e.to_string()))?;
    write_text(out, &text)
}

pub fn write_text(out: &mut dyn Write, text: &str) -> Result<(), CtlError> {
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        // `fieldctl … | head` closing the pipe early is the reader's choice, not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CtlError::Write {
            path: "stdout".into(),
            detail: e.to_string(),
        }),
        Ok(()) => Ok(()),
    }
}

/// Left-aligned columns separated by two spaces; the header in bold. Widths count
/// characters of the unpainted text, so colour codes must be added by `paint` afterwards.
pub fn table(style: Style, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < last {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![style.bold(&line(headers.iter().map(|h| h.to_string()).collect()))];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Compact JSON of an object without the hub's `$metadata` / `$version` bookkeeping.
pub fn compact(m: &Map<String, Value>) -> String {
    Value::Object(strip_meta(m)).to_string()
}

fn strip_meta(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| {
            let v = match v {
                Value::Object(o) => Value::Object(strip_meta(o)),
                v => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// A twin for people: identity line, then tags, desired and reported without metadata.
pub fn twin_summary(style: Style, t: &Twin) -> String {
    let version = |m: &Map<String, Value>| {
        m.get("$version")
            .map(|v| format!("  (version {v})"))
            .unwrap_or_default()
    };
    let pretty = |m: &Map<String, Value>| {
        serde_json::to_string_pretty(&Value::Object(strip_meta(m))).unwrap_or_default()
    };
    format!(
        "{} {} ({}, {})\n{}\n{}\n{}{}\n{}\n{}{}\n{}",
        style.bold("device"),
        t.device_id,
        t.connection_state
            .as_deref()
            .unwrap_or("connection unknown"),
        t.status.as_deref().unwrap_or("status unknown"),
        style.bold("tags"),
        pretty(&t.tags),
        style.bold("desired"),
        version(&t.properties.desired),
        pretty(&t.properties.desired),
        style.bold("reported"),
        version(&t.properties.reported),
        pretty(&t.properties.reported),
    )
}

/// One row per job for `job list`.
pub fn jobs_table(style: Style, jobs: &[JobResponse]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let s = j.stats();
            vec![
                j.job_id.clone(),
                j.short_type().to_string(),
                j.status.clone(),
                j.start_time.clone().unwrap_or_default(),
                format!(
                    "{}/{}/{}",
                    s.succeeded_count, s.failed_count, s.device_count
                ),
            ]
        })
        .collect();
    table(
        style,
        &["JOB", "TYPE", "STATUS", "START", "OK/FAILED/DEVICES"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Style = Style { color: false };

    #[test]
    fn tables_align() {
        let t = table(
            PLAIN,
            &["DEVICE", "STATUS"],
            &[
                vec!["door-01".into(), "completed".into()],
                vec!["d".into(), "failed".into()],
            ],
        );
        assert_eq!(t, "DEVICE   STATUS\ndoor-01  completed\nd        failed");
        let coloured = Style { color: true }.status("failed");
        assert_eq!(coloured, "\x1b[31mfailed\x1b[0m");
        assert_eq!(PLAIN.status("failed"), "failed");
    }

    #[test]
    fn twin_summary_hides_metadata() {
        let twin: Twin = serde_json::from_value(json!({"deviceId":"door-01","status":"enabled",
            "connectionState":"Connected","tags":{"building":"43"},
            "properties":{"desired":{"openDurationSec":5,"$metadata":{"$lastUpdated":"x"},"$version":5},
                "reported":{"doorState":"closed","$version":12}}}))
        .unwrap();
        let s = twin_summary(PLAIN, &twin);
        assert!(
            s.starts_with("device door-01 (Connected, enabled)\ntags\n{"),
            "{s}"
        );
        assert!(
            s.contains("desired  (version 5)\n{\n  \"openDurationSec\": 5\n}"),
            "{s}"
        );
        assert!(!s.contains("$metadata"));
        assert_eq!(
            compact(&twin.properties.desired),
            r#"{"openDurationSec":5}"#
        );
    }

    #[test]
    fn console_and_shared_buf() {
        let buf = SharedBuf::default();
        let c = Console::new(buf.clone());
        c.line("hello");
        c.clone().line("again");
        assert_eq!(buf.contents(), "hello\nagain\n");
    }
}
