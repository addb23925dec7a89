//! Workload 10, churn soak: fieldgate with N doors polling every second and SAS tokens so
//! short-lived that every link renews (disconnects, reconnects with a new token, subscribes,
//! GETs its twin) every ~¾ of a lifetime. Sized in renewal rounds; RSS is read once a round.
//! What it judges is the growth over the second half (a process whose RSS still climbs
//! after ten rounds of a thousand reconnects will climb over days of hourly renewals).

use std::time::{Duration, Instant};

use crate::bridges::{ids, Bridge, Kind, Launch, Site};
use crate::cost::counter_total;
use crate::env::{Door, HubTuning, SimPool, World};
use crate::procstat;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Churn {
    pub doors: usize,
    pub token_lifetime_seconds: f64,
    /// Extra environment of the gateway (the allocator of an A/B), `KEY=VALUE`.
    pub env: Vec<String>,
    pub rounds: usize,
    /// Renewals the gateway counted ÷ doors: the rounds that really happened.
    pub rounds_observed: f64,
    /// RSS at links up, then after each round (KiB).
    pub rss_kb: Vec<u64>,
    /// (RSS at the end − RSS half-way) ÷ RSS half-way, in percent.
    pub growth_second_half_percent: f64,
    /// The same in KB per door.
    pub growth_second_half_kb_per_door: f64,
}

/// How long a round is: with the gateway's default margin (capped to a fifth of a short
/// lifetime) a link renews 0.8 of a lifetime after its token was issued, up to half a margin
/// earlier, and then drains (UNSUBACK and a settle) and reconnects.
pub fn round_length(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.75) + Duration::from_millis(500)
}

pub async fn run(
    world: &World,
    launch: &Launch,
    doors: &[Door],
    pool: &SimPool,
    lifetime: Duration,
    rounds: usize,
    env: &[(String, String)],
) -> anyhow::Result<Churn> {
    let launch = Launch {
        tuning: HubTuning {
            token_lifetime: Some(lifetime),
            ..launch.tuning
        },
        gateway_env: launch.gateway_env.iter().chain(env).cloned().collect(),
        ..launch.clone()
    };
    let site = Site {
        doors,
        pool,
        poll_interval: "1s",
        connects_per_second: 0,
    };
    let started = Instant::now();
    let tag = if env.is_empty() { "churn" } else { "churn-b" };
    let mut b = Bridge::start(Kind::Fieldgate, world, &launch, tag, site)?;
    b.wait_up(world, &ids(doors), started, Duration::from_secs(300))
        .await?;
    let up = Instant::now();
    let mut rss_kb = vec![procstat::rss_kb(b.pid())?];
    let round = round_length(lifetime);
    for k in 1..=rounds {
        tokio::time::sleep_until((up + round * k as u32).into()).await;
        let rss = procstat::rss_kb(b.pid())?;
        tracing::info!(round = k, rss_kb = rss, "churn");
        rss_kb.push(rss);
    }
    let renewals = match b.gateway() {
        Some(g) => counter_total(&g.metrics().await?, "fieldgate_token_renewals_total"),
        None => f64::NAN,
    };
    b.stop().await?;
    world
        .wait_disconnected(&ids(doors), Duration::from_secs(30))
        .await?;
    let mid = rss_kb[rounds / 2] as f64;
    let end = *rss_kb.last().expect("links-up sample") as f64;
    Ok(Churn {
        doors: doors.len(),
        token_lifetime_seconds: lifetime.as_secs_f64(),
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        rounds,
        rounds_observed: renewals / doors.len() as f64,
        rss_kb,
        growth_second_half_percent: 100.0 * (end - mid) / mid,
        growth_second_half_kb_per_door: (end - mid) / doors.len() as f64,
    })
}
