//! The gateway under test as a separate process (`fieldgate run --config <generated>`), its
//! `/metrics` scraped over HTTP, and the Prometheus histogram arithmetic the latency
//! workload needs (its own share of a method's round trip).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::child::{free_port, Proc, SpawnOptions};
use crate::env::{MapSpec, World};

/// Which `fieldgate` binary to run.
pub fn resolve_binary(explicit: Option<PathBuf>, quick: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.exists(), "--gateway-bin {} does not exist", p.display());
        return Ok(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    // Full runs measure the release build; --quick only checks that everything completes.
    let order: &[&str] = if quick {
        &["debug", "release"]
    } else {
        &["release"]
    };
    for profile in order {
        let p = target.join(profile).join("fieldgate");
        if p.exists() {
            return Ok(p);
        }
    }
    anyhow::bail!(
        "no fieldgate binary under {}: run `cargo build --release -p fieldgate` first{}",
        target.display(),
        if quick { " (or a debug build)" } else { "" }
    )
}

/// A running gateway process.
#[derive(Debug)]
pub struct GatewayProc {
    pub proc: Proc,
    pub metrics_url: String,
    http: reqwest::Client,
}

impl GatewayProc {
    /// Writes the device map from `spec` (its metrics port is chosen here) and starts the
    /// gateway on it. `tag` names the config and log files.
    pub fn start(
        world: &World,
        bin: &Path,
        tag: &str,
        mut spec: MapSpec<'_>,
        env: &[(String, String)],
    ) -> anyhow::Result<GatewayProc> {
        spec.metrics_port = free_port()?;
        let config = world.path(&format!("{tag}.toml"));
        std::fs::write(&config, spec.render())
            .with_context(|| format!("writing {}", config.display()))?;
        let config_arg = config.display().to_string();
        let proc = Proc::spawn_with(
            &format!("fieldgate ({tag})"),
            bin,
            &["--log", "warn", "run", "--config", &config_arg],
            world.path(&format!("{tag}.log")),
            &SpawnOptions {
                env: env.to_vec(),
                stdin_pipe: false,
            },
        )?;
        Ok(GatewayProc {
            proc,
            metrics_url: format!("http://127.0.0.1:{}/metrics", spec.metrics_port),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let res = self
            .http
            .get(&self.metrics_url)
            .send()
            .await
            .with_context(|| format!("scraping {}", self.metrics_url))?;
        Ok(res.error_for_status()?.text().await?)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.proc.stop().await
    }
}

/// Sum and count of every series of histogram `name` (all label sets together).
pub fn histogram_totals(text: &str, name: &str) -> (f64, f64) {
    let (sum_p, count_p) = (format!("{name}_sum{{"), format!("{name}_count{{"));
    let mut totals = (0.0, 0.0);
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        if series.starts_with(&sum_p) {
            totals.0 += v;
        } else if series.starts_with(&count_p) {
            totals.1 += v;
        }
    }
    totals
}

/// One histogram series (cumulative buckets) read from the Prometheus text format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound, cumulative count), ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// Reads `name` with the label `label="value"` from `text`.
    pub fn parse(text: &str, name: &str, label: &str) -> Histogram {
        let mut h = Histogram::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if !series.contains(label) {
                continue;
            }
            if series == format!("{name}_sum{{{label}}}") {
                h.sum = v;
            } else if series == format!("{name}_count{{{label}}}") {
                h.count = v;
            } else if let Some(rest) = series.strip_prefix(&format!("{name}_bucket{{")) {
                let le = rest
                    .split("le=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                h.buckets.push((bound, v));
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        h
    }

    /// `self − earlier`: the observations made between two scrapes.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(b, c)| {
                    let before = earlier
                        .buckets
                        .iter()
                        .find(|e| e.0 == b)
                        .map_or(0.0, |e| e.1);
                    (b, c - before)
                })
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The upper bound of the bucket holding the `q` quantile: "p99 ≤ this", exact where an
    /// interpolated value would invent precision the buckets do not have.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|&&(_, cum)| cum >= q * self.count)
            .map(|&(bound, _)| bound)
    }

    /// The `q` quantile by linear interpolation inside its bucket (what PromQL's
    /// `histogram_quantile` does); only as fine as the buckets.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut prev = (0.0, 0.0);
        for &(bound, cum) in &self.buckets {
            if cum >= rank {
                if bound.is_infinite() {
                    return Some(prev.0);
                }
                let in_bucket = cum - prev.1;
                let frac = if in_bucket > 0.0 {
                    (rank - prev.1) / in_bucket
                } else {
                    0.0
                };
                return Some(prev.0 + (bound - prev.0) * frac);
            }
            prev = (bound, cum);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP fieldgate_method_duration_seconds Time
# TYPE fieldgate_method_duration_seconds histogram
fieldgate_method_duration_seconds_bucket{method="lockDoor",le="0.001"} 10
fieldgate_method_duration_seconds_bucket{method="lockDoor",le="0.0025"} 90
fieldgate_method_duration_seconds_bucket{method="lockDoor",le="0.005"} 100
fieldgate_method_duration_seconds_bucket{method="lockDoor",le="+Inf"} 100
fieldgate_method_duration_seconds_sum{method="lockDoor"} 0.15
fieldgate_method_duration_seconds_count{method="lockDoor"} 100
fieldgate_method_duration_seconds_count{method="other"} 7
"#;

    #[test]
    fn parses_and_interpolates() {
        let h = Histogram::parse(
            TEXT,
            "fieldgate_method_duration_seconds",
            "method=\"lockDoor\"",
        );
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 4);
        assert!((h.mean().unwrap() - 0.0015).abs() < 1e-12);
        // Rank 50 lies half-way through the (1 ms, 2.5 ms] bucket (10 → 90).
        assert!((h.quantile(0.5).unwrap() - 0.001_75).abs() < 1e-9);
        assert!((h.quantile(0.99).unwrap() - 0.004_75).abs() < 1e-9);
        assert_eq!(h.quantile_bound(0.5), Some(0.0025));
        assert_eq!(h.quantile_bound(0.05), Some(0.001));
    }

    #[test]
    fn totals_over_label_sets() {
        let (sum, count) = histogram_totals(TEXT, "fieldgate_method_duration_seconds");
        assert!((sum - 0.15).abs() < 1e-12);
        assert_eq!(count, 107.0);
    }

    #[test]
    fn difference_between_scrapes() {
        let later = Histogram::parse(
            TEXT,
            "fieldgate_method_duration_seconds",
            "method=\"lockDoor\"",
        );
        let d = later.since(&later);
        assert_eq!(d.count, 0.0);
        assert_eq!(d.quantile(0.5), None);
    }
}
