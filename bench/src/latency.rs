//! Workload 2, method latency: `lockDoor` round trips timed at the hub (fieldhub → bridge →
//! Modbus TCP doorsim → back), one call at a time, plus fieldgate's own share read from the
//! `fieldgate_method_duration_seconds` histogram it exports.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldhub::hub::Sub;
use serde_json::json;

use crate::env::World;
use crate::gateway::{GatewayProc, Histogram};

/// Calls made before measuring (TLS sessions, allocator and caches warm up).
const WARM_UP: usize = 50;
const METHOD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub calls: usize,
    pub failures: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// From the gateway's histogram — fieldgate only. The mean is exact (sum / count); the
    /// quantiles are the upper bounds of their buckets (1 ms, 2.5 ms, 5 ms, …).
    pub gateway_mean_ms: Option<f64>,
    pub gateway_p50_ms: Option<f64>,
    pub gateway_p99_ms: Option<f64>,
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

const HIST: &str = "fieldgate_method_duration_seconds";
const LABEL: &str = "method=\"lockDoor\"";

/// Waits until every door subscribed to methods, then makes `calls` sequential `lockDoor`
/// calls round-robin over `ids`.
pub async fn measure(
    world: &World,
    ids: &[String],
    calls: usize,
    gateway: Option<&GatewayProc>,
) -> anyhow::Result<Latency> {
    let hub = &world.hub.hub;
    for id in ids {
        anyhow::ensure!(
            hub.wait_ready(id, Some(Sub::Methods), Duration::from_secs(60))
                .await,
            "{id} did not subscribe to methods"
        );
    }
    let call = |i: usize| {
        let id = &ids[i % ids.len()];
        async move {
            let started = Instant::now();
            let res = hub
                .invoke_method(id, "lockDoor", json!({}), METHOD_TIMEOUT, METHOD_TIMEOUT)
                .await;
            (started.elapsed(), res)
        }
    };
    for i in 0..WARM_UP {
        let (_, res) = call(i).await;
        res.with_context(|| format!("warm-up call {i}"))?;
    }
    let before = match gateway {
        Some(g) => Some(Histogram::parse(&g.metrics().await?, HIST, LABEL)),
        None => None,
    };
    let mut samples = Vec::with_capacity(calls);
    let mut failures = 0;
    for i in 0..calls {
        let (took, res) = call(i).await;
        match res {
            Ok(r) if r.status == 200 => samples.push(took),
            Ok(r) => {
                failures += 1;
                tracing::warn!(status = r.status, payload = %r.payload, "lockDoor failed");
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "lockDoor failed");
            }
        }
    }
    let own = match (gateway, before) {
        (Some(g), Some(before)) => {
            Some(Histogram::parse(&g.metrics().await?, HIST, LABEL).since(&before))
        }
        _ => None,
    };
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e3 / samples.len().max(1) as f64;
    Ok(Latency {
        calls,
        failures,
        p50_ms: ms(quantile(&samples, 0.5)),
        p99_ms: ms(quantile(&samples, 0.99)),
        mean_ms: mean,
        gateway_mean_ms: own.as_ref().and_then(Histogram::mean).map(|s| s * 1e3),
        gateway_p50_ms: own
            .as_ref()
            .and_then(|h| h.quantile_bound(0.5))
            .map(|s| s * 1e3),
        gateway_p99_ms: own
            .as_ref()
            .and_then(|h| h.quantile_bound(0.99))
            .map(|s| s * 1e3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
