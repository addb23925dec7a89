//! The result of a run: one row per figure, each with the ratio it is judged by and the
//! target (if the issue sets one), printed as a table and written as JSON.

use serde::Serialize;

use crate::procstat::Machine;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Workload number (docs/BENCHMARKS.md, 1-7).
    pub workload: u8,
    pub figure: String,
    pub value: f64,
    pub unit: String,
    /// What the ratio divides, e.g. "wall / physical" or "fieldgate / reference".
    pub ratio_of: String,
    pub ratio: Option<f64>,
    /// The target, e.g. "≤ 1.15"; `None` where the issue sets none.
    pub target: Option<String>,
    pub meets_target: Option<bool>,
}

impl Row {
    pub fn new(workload: u8, figure: impl Into<String>, value: f64, unit: &str) -> Row {
        Row {
            workload,
            figure: figure.into(),
            value,
            unit: unit.to_string(),
            ratio_of: String::new(),
            ratio: None,
            target: None,
            meets_target: None,
        }
    }

    pub fn ratio(mut self, of: &str, ratio: f64) -> Row {
        self.ratio_of = of.to_string();
        self.ratio = Some(ratio).filter(|r| r.is_finite());
        self
    }

    /// A target the ratio (or, with no ratio, the value) must stay at or under.
    pub fn at_most(mut self, limit: f64, text: &str) -> Row {
        let judged = self.ratio.unwrap_or(self.value);
        self.target = Some(text.to_string());
        self.meets_target = Some(judged <= limit);
        self
    }

    /// Fails the target whatever the figure (the figure means nothing, e.g. when the doors it
    /// times did not all succeed).
    pub fn fail_unless(mut self, ok: bool) -> Row {
        if !ok {
            self.meets_target = Some(false);
        }
        self
    }

    /// A target on the value itself (when the ratio is a comparison, not the judge).
    pub fn value_at_most(mut self, limit: f64, text: &str) -> Row {
        self.target = Some(text.to_string());
        self.meets_target = Some(self.value <= limit);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub started: String,
    pub duration_seconds: f64,
    pub machine: Machine,
    pub gateway_binary: String,
    pub rows: Vec<Row>,
    /// What limited a figure, skipped parts, load seen during the run.
    pub notes: Vec<String>,
    /// Every workload's full measurement (RSS series, job spans, gateway transaction times).
    pub details: serde_json::Map<String, serde_json::Value>,
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    /// The table as Markdown (readable on a terminal, pasteable into docs/BENCHMARKS.md).
    pub fn table(&self) -> String {
        let mut t = String::from(
            "| # | figure | value | ratio | target | ok |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let ratio = match r.ratio {
                Some(x) => format!("{} ({})", fmt_num(x), r.ratio_of),
                None => "-".into(),
            };
            t.push_str(&format!(
                "| {} | {} | {} {} | {} | {} | {} |\n",
                r.workload,
                r.figure,
                fmt_num(r.value),
                r.unit,
                ratio,
                r.target.as_deref().unwrap_or("-"),
                match r.meets_target {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "",
                }
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_judges_the_ratio_when_there_is_one() {
        let r = Row::new(1, "job", 2.0, "s")
            .ratio("wall / physical", 1.1)
            .at_most(1.15, "≤ 1.15");
        assert_eq!(r.meets_target, Some(true));
        let r = Row::new(3, "KB/door", 70.0, "KB").at_most(64.0, "≤ 64");
        assert_eq!(r.meets_target, Some(false));
        let r = Row::new(2, "p50", 1.0, "ms").ratio("x", f64::NAN);
        assert_eq!(r.ratio, None);
    }
}
