//! Top-level resolution: splits the document into its sections, resolves `[hub]`,
//! `[metrics]` and `[[bus]]`, then hands profiles and doors to `points` and `doors`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::checks::{check_base64_key, check_host_port, group_key_file, path_in, Mode};
use super::de;
use super::doors::{self, Pending};
use super::error::{ConfigErrors, Errors};
use super::model::{EventsSettings, HubSettings, HubTransport, MetricsSettings, Profile, Secret};
use super::raw::{dur, Dur, RawBus, RawEvents, RawHub, RawMetrics, RawParity, RawTransport};
use super::{points, Config};
use crate::bus::{BusOptions, Parity, Transport};

/// Default `[hub]` settings (documented in `config/demo.toml`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
pub const DEFAULT_TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(300);
pub const DEFAULT_CONNECTS_PER_SECOND: u32 = 10;
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_secs(1);
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(60);
/// A dial's deadline (TCP, TLS, proxy, upgrade, CONNECT, subscriptions, first twin).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// IoT Hub's MQTT-over-WebSockets port.
pub const DEFAULT_WEBSOCKET_PORT: u16 = 443;
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9898";
/// Serial defaults: 9600 baud, 8 data bits, even parity, 1 stop bit (Modbus RTU's 8E1).
pub const DEFAULT_BAUD: u32 = 9600;
/// Default `[events]` settings (documented in `config/demo.toml` and the README). The unit's
/// `StateDirectory=fieldgate` provides the directory.
pub const DEFAULT_EVENTS_DIR: &str = "/var/lib/fieldgate";
/// 32 MiB of events (~200,000 of ~150 bytes): days of a busy site's events, a sliver of a
/// Pi's SD card, and small enough that redb's file (which reuses freed pages) stays well
/// under 100 MB.
pub const DEFAULT_EVENTS_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// A week: an outage over a long weekend is drained on Monday; older events are history.
pub const DEFAULT_EVENTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// At most four durable commits a second while events flow (none while doors are idle); a
/// power cut loses at most the events of this window (see `crate::events`).
pub const DEFAULT_EVENTS_COMMIT_INTERVAL: Duration = Duration::from_millis(250);
/// Half of the smallest IoT Hub's device-to-cloud throttle (S1, one unit: 100 sends/s for
/// the whole hub), leaving the rest to other gateways and to reported patches.
pub const DEFAULT_EVENTS_SEND_RATE: u32 = 50;

const SECTIONS: &str = "hub, dps, metrics, events, bus, profile, door";

pub(crate) fn resolve(
    text: &str,
    origin: &str,
    base: &Path,
    mode: Mode,
) -> Result<(Config, Vec<Pending>), ConfigErrors> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let doc = doc.into_inner();
    let mut errs = Errors::new(origin, text, &doc);
    for e in &syntax {
        errs.at(e.span().unwrap_or(0..0), e.message().to_string());
    }
    if !syntax.is_empty() {
        // A broken document yields mostly follow-on errors; the syntax ones are what to fix.
        return Err(errs.finish());
    }

    let mut hub_v = None;
    let mut metrics_v = None;
    let mut events_v = None;
    let mut dps_v = None;
    let mut bus_v = Vec::new();
    let mut profile_v = Vec::new();
    let mut door_v = Vec::new();
    for (k, v) in doc.iter() {
        match k.get_ref().as_ref() {
            "hub" => hub_v = Some(v),
            "metrics" => metrics_v = Some(v),
            "events" => events_v = Some(v),
            "dps" => dps_v = Some(v),
            "bus" => bus_v = array(k, v, &mut errs),
            "door" => door_v = array(k, v, &mut errs),
            "profile" => {
                profile_v = de::entries(k, v.clone(), &mut errs);
            }
            other => errs.at(
                k.span(),
                format!("unknown section `{other}` (known sections: {SECTIONS})"),
            ),
        }
    }

    let metrics = metrics(metrics_v, &mut errs);
    let events = events(events_v, base, &mut errs);
    let (dps, dps_group_key) = match dps_v {
        Some(v) => super::dps::resolve(v, base, &events, &mut errs),
        None => (None, None),
    };
    let (hub, group_key) = match hub_v {
        Some(v) => hub(
            v,
            base,
            dps.as_ref().map(|d| d.global_endpoint.as_str()),
            &mut errs,
        ),
        None => {
            errs.whole("missing section [hub] (at least `hostname = \"…\"`)");
            (None, None)
        }
    };
    let group_key = match (group_key, dps_group_key) {
        (Some(_), Some(_)) => {
            errs.whole("the group key is given twice: keep group_key_file in [dps] and remove group_key/group_key_file from [hub]");
            None
        }
        (a, b) => a.or(b),
    };

    let mut buses: Vec<BusOptions> = Vec::new();
    let mut broken_buses = Vec::new();
    let mut unnamed_broken_bus = false;
    for v in &bus_v {
        match de::item::<RawBus>(v, &mut errs).and_then(|raw| bus(&raw, &buses, &mut errs)) {
            Some(b) => buses.push(b),
            None => match name_of(v) {
                Some(n) => broken_buses.push(n),
                None => unnamed_broken_bus = true,
            },
        }
    }

    let mut profiles = std::collections::BTreeMap::new();
    let mut broken_profiles = Vec::new();
    for (name, v) in &profile_v {
        match points::resolve(v, &mut errs) {
            Some(m) => {
                profiles.insert(name.get_ref().clone(), (v.clone(), m));
            }
            None => broken_profiles.push(name.get_ref().clone()),
        }
    }

    let ctx = doors::Context {
        buses: &buses,
        broken_buses: &broken_buses,
        unnamed_broken_bus,
        profiles: &profiles,
        broken_profiles: &broken_profiles,
        group_key: group_key.as_ref(),
        base,
        mode,
    };
    let (doors, pending) = doors::resolve_all(&door_v, &ctx, &mut errs);

    match (hub, errs.is_empty()) {
        (Some(hub), true) => Ok((
            Config {
                origin: origin.to_string(),
                hub,
                dps,
                metrics,
                events,
                buses,
                doors,
                profiles: profiles
                    .into_iter()
                    .map(|(name, (_, m))| {
                        (
                            name,
                            Profile {
                                model_id: m.model_id,
                                poll_interval: m.poll_interval,
                                methods: m.methods,
                                desired: m.desired,
                                reported: m.reported,
                            },
                        )
                    })
                    .collect(),
            },
            pending,
        )),
        _ => Err(errs.finish()),
    }
}

fn array<'i>(
    k: &Spanned<toml::de::DeString<'i>>,
    v: &Spanned<DeValue<'i>>,
    errs: &mut Errors<'_>,
) -> Vec<Spanned<DeValue<'i>>> {
    match v.get_ref() {
        DeValue::Array(a) => a.iter().cloned().collect(),
        other => {
            errs.at(
                k.span(),
                format!(
                    "`{}` must be written [[{}]] (a list of tables), not {}",
                    k.get_ref(),
                    k.get_ref(),
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

fn name_of(v: &Spanned<DeValue<'_>>) -> Option<String> {
    v.get_ref()
        .as_table()?
        .get("name")?
        .get_ref()
        .as_str()
        .map(str::to_string)
}

fn positive(d: &Option<Dur>, default: Duration, key: &str, errs: &mut Errors<'_>) -> Duration {
    match d {
        Some(d) if dur(d).is_zero() => {
            errs.at_spanned(d, format!("{key} must be longer than 0"));
            default
        }
        Some(d) => dur(d),
        None => default,
    }
}

fn hub(
    v: &Spanned<DeValue<'_>>,
    base: &Path,
    dps_endpoint: Option<&str>,
    errs: &mut Errors<'_>,
) -> (Option<HubSettings>, Option<Secret>) {
    let Some(raw) = de::item::<RawHub>(v, errs) else {
        return (None, None);
    };
    let host = match (&raw.hostname, dps_endpoint) {
        (Some(h), _) => {
            if let Err(e) = check_host_port(h.get_ref(), false) {
                errs.at_spanned(h, format!("hostname {e}"));
            }
            h.get_ref().clone()
        }
        // Each door learns its hub from the provisioning service; until then the first hop is
        // the service's endpoint (what proxy exemptions are checked against).
        (None, Some(endpoint)) => endpoint.to_string(),
        (None, None) => {
            errs.at(
                v.span(),
                "[hub] needs `hostname = \"…\"` (or a [dps] section, from which each door learns its hub)",
            );
            String::new()
        }
    };
    let mut ca_pem = None;
    let ca_file = raw.ca_file.as_ref().map(|f| {
        let path = path_in(base, f.get_ref());
        match std::fs::read(&path) {
            Ok(pem) => {
                let certs = rustls_pemfile::certs(&mut pem.as_slice())
                    .filter(Result::is_ok)
                    .count();
                if certs == 0 {
                    errs.at_spanned(f, format!("{} holds no PEM certificate", path.display()));
                }
                ca_pem = Some(std::sync::Arc::from(pem));
            }
            Err(e) => errs.at_spanned(f, format!("cannot read {}: {e}", path.display())),
        }
        path
    });
    let token_lifetime = positive(
        &raw.token_lifetime,
        DEFAULT_TOKEN_LIFETIME,
        "token_lifetime",
        errs,
    );
    let mut token_renew_margin = raw
        .token_renew_margin
        .as_ref()
        .map_or(DEFAULT_TOKEN_RENEW_MARGIN, dur);
    match &raw.token_renew_margin {
        Some(m) if dur(m) >= token_lifetime => errs.at_spanned(
            m,
            "token_renew_margin must be shorter than token_lifetime (tokens are renewed this long before they expire)",
        ),
        None if token_renew_margin >= token_lifetime => token_renew_margin = token_lifetime / 5,
        _ => {}
    }
    // 0 turns pacing off (benchmarks, a private hub); Azure hubs throttle new connections.
    let connects_per_second = raw
        .connects_per_second
        .as_ref()
        .map_or(DEFAULT_CONNECTS_PER_SECOND, |c| *c.get_ref());
    let reconnect_backoff_min = positive(
        &raw.reconnect_backoff_min,
        DEFAULT_RECONNECT_MIN,
        "reconnect_backoff_min",
        errs,
    );
    let reconnect_backoff_max = positive(
        &raw.reconnect_backoff_max,
        DEFAULT_RECONNECT_MAX,
        "reconnect_backoff_max",
        errs,
    );
    if reconnect_backoff_min > reconnect_backoff_max {
        if let Some(m) = raw
            .reconnect_backoff_max
            .as_ref()
            .or(raw.reconnect_backoff_min.as_ref())
        {
            errs.at_spanned(
                m,
                "reconnect_backoff_max is shorter than reconnect_backoff_min",
            );
        }
    }
    let group_key = match (&raw.group_key, &raw.group_key_file) {
        (Some(k), None) => {
            if let Err(e) = check_base64_key("group_key", k.get_ref()) {
                errs.at_spanned(k, e);
            }
            Some(Secret::new(k.get_ref().trim()))
        }
        (None, Some(f)) => group_key_file(f, base, errs),
        (Some(_), Some(f)) => {
            errs.at_spanned(f, "give either group_key or group_key_file, not both");
            None
        }
        (None, None) => None,
    };
    let settings = HubSettings {
        hostname: host,
        ca_file,
        ca_pem,
        token_lifetime,
        token_renew_margin,
        connects_per_second,
        keep_alive: positive(&raw.keep_alive, DEFAULT_KEEP_ALIVE, "keep_alive", errs),
        dial_timeout: positive(
            &raw.dial_timeout,
            DEFAULT_DIAL_TIMEOUT,
            "dial_timeout",
            errs,
        ),
        operation_timeout: positive(
            &raw.operation_timeout,
            DEFAULT_OPERATION_TIMEOUT,
            "operation_timeout",
            errs,
        ),
        reconnect_backoff_min,
        reconnect_backoff_max,
        transport: match raw.transport.as_ref().map(|t| *t.get_ref()) {
            None | Some(RawTransport::Mqtt) => HubTransport::Mqtt,
            Some(RawTransport::Websocket) => HubTransport::WebSocket,
            Some(RawTransport::Auto) => HubTransport::Auto,
        },
        websocket_port: match &raw.websocket_port {
            Some(p) if *p.get_ref() == 0 => {
                errs.at_spanned(p, "websocket_port must be a port number (1-65535)");
                DEFAULT_WEBSOCKET_PORT
            }
            Some(p) => *p.get_ref(),
            None => DEFAULT_WEBSOCKET_PORT,
        },
        proxy: raw.proxy.as_ref().and_then(|p| {
            match crate::link::ProxyConfig::parse(p.get_ref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    errs.at_spanned(p, e);
                    None
                }
            }
        }),
    };
    if let (Some(p), Some(RawTransport::Mqtt)) =
        (&raw.proxy, raw.transport.as_ref().map(|t| *t.get_ref()))
    {
        errs.at_spanned(
            p,
            "a proxy carries the WebSocket transport (HTTP CONNECT to 443): set transport = \"websocket\" or \"auto\"",
        );
    }
    (Some(settings), group_key)
}

fn metrics(v: Option<&Spanned<DeValue<'_>>>, errs: &mut Errors<'_>) -> MetricsSettings {
    let default: SocketAddr = DEFAULT_METRICS_LISTEN.parse().expect("valid default");
    let raw = match v {
        Some(v) => de::item::<RawMetrics>(v, errs).unwrap_or_default(),
        None => RawMetrics::default(),
    };
    let listen = match &raw.listen {
        Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
            errs.at_spanned(
                l,
                format!(
                    "`{}` is not an address:port such as 127.0.0.1:9898",
                    l.get_ref()
                ),
            );
            default
        }),
        None => default,
    };
    MetricsSettings { listen }
}

fn events(v: Option<&Spanned<DeValue<'_>>>, base: &Path, errs: &mut Errors<'_>) -> EventsSettings {
    let raw = match v {
        Some(v) => de::item::<RawEvents>(v, errs).unwrap_or_default(),
        None => RawEvents::default(),
    };
    let dir = match &raw.dir {
        Some(d) if d.get_ref().is_empty() => {
            errs.at_spanned(d, "dir is empty");
            PathBuf::from(DEFAULT_EVENTS_DIR)
        }
        Some(d) => path_in(base, d.get_ref()),
        None => PathBuf::from(DEFAULT_EVENTS_DIR),
    };
    let max_bytes = match &raw.max_bytes {
        // An event is a point's decoded value plus ~80 bytes: this keeps a few dozen.
        Some(b) if *b.get_ref() < 4096 => {
            errs.at_spanned(b, "max_bytes must be at least 4096");
            DEFAULT_EVENTS_MAX_BYTES
        }
        Some(b) => *b.get_ref(),
        None => DEFAULT_EVENTS_MAX_BYTES,
    };
    let commit_interval = raw
        .commit_interval
        .as_ref()
        .map_or(DEFAULT_EVENTS_COMMIT_INTERVAL, dur);
    if let Some(c) = &raw.commit_interval {
        if dur(c) > Duration::from_secs(10) {
            errs.at_spanned(
                c,
                "commit_interval must be at most 10s (events wait that long before they are sent)",
            );
        }
    }
    let send_rate = match &raw.send_rate {
        Some(r) if *r.get_ref() == 0 => {
            errs.at_spanned(r, "send_rate must be at least 1 (events per second)");
            DEFAULT_EVENTS_SEND_RATE
        }
        Some(r) => *r.get_ref(),
        None => DEFAULT_EVENTS_SEND_RATE,
    };
    EventsSettings {
        dir,
        max_bytes,
        max_age: positive(&raw.max_age, DEFAULT_EVENTS_MAX_AGE, "max_age", errs),
        commit_interval,
        send_rate,
    }
}

fn bus(raw: &RawBus, known: &[BusOptions], errs: &mut Errors<'_>) -> Option<BusOptions> {
    let name = raw.name.get_ref();
    if name.is_empty() {
        errs.at_spanned(&raw.name, "bus name is empty");
    }
    if known.iter().any(|b| &b.name == name) {
        errs.at_spanned(&raw.name, format!("bus name `{name}` is used twice"));
    }
    let chosen: Vec<_> = [
        ("tcp", &raw.tcp),
        ("serial", &raw.serial),
        ("rtu_over_tcp", &raw.rtu_over_tcp),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let transport = match chosen.as_slice() {
        [] => {
            errs.at_spanned(&raw.name, format!("bus `{name}` needs one of `tcp = \"host:502\"`, `serial = \"/dev/ttyUSB0\"` or `rtu_over_tcp = \"host:4001\"`"));
            return None;
        }
        [(kind, addr)] => {
            let a = addr.get_ref().clone();
            if *kind != "serial" {
                if let Err(e) = check_host_port(&a, true) {
                    errs.at_spanned(addr, format!("{kind} address {e}"));
                }
                for (k, span) in [
                    ("baud", raw.baud.as_ref().map(|s| s.span())),
                    ("parity", raw.parity.as_ref().map(|s| s.span())),
                    ("data_bits", raw.data_bits.as_ref().map(|s| s.span())),
                    ("stop_bits", raw.stop_bits.as_ref().map(|s| s.span())),
                ] {
                    if let Some(s) = span {
                        errs.at(s, format!("`{k}` applies only to a serial bus; the device server sets the line speed"));
                    }
                }
            } else if a.is_empty() {
                errs.at_spanned(addr, "serial path is empty");
            }
            match *kind {
                "tcp" => Transport::Tcp { addr: a },
                "rtu_over_tcp" => Transport::RtuOverTcp { addr: a },
                _ => serial(raw, a, errs),
            }
        }
        [_, (_, second), ..] => {
            errs.at_spanned(*second, format!(
                "bus `{name}` names more than one transport; keep exactly one of tcp, serial, rtu_over_tcp"
            ));
            return None;
        }
    };
    let mut b = BusOptions::new(name.clone(), transport);
    b.timeout = positive(&raw.timeout, b.timeout, "timeout", errs);
    if let Some(r) = &raw.retries {
        b.retries = *r.get_ref();
        if b.retries > 10 {
            errs.at_spanned(
                r,
                "more than 10 retries would hold the line for too long; use 0 to 10",
            );
        }
    }
    if let Some(d) = &raw.inter_request_delay {
        b.inter_request_delay = dur(d);
    }
    if let Some(q) = &raw.queue_capacity {
        if *q.get_ref() == 0 {
            errs.at_spanned(q, "queue_capacity must be at least 1");
        } else {
            b.queue_capacity = *q.get_ref();
        }
    }
    if let Some(g) = &raw.read_gap {
        if *g.get_ref() > 124 {
            errs.at_spanned(
                g,
                "read_gap must be at most 124 (a block read holds 125 registers)",
            );
        } else {
            b.read_gap = *g.get_ref();
        }
    }
    b.dead_unit_backoff_max = positive(
        &raw.dead_unit_backoff_max,
        b.dead_unit_backoff_max,
        "dead_unit_backoff_max",
        errs,
    );
    b.reconnect_backoff_max = positive(
        &raw.reconnect_backoff_max,
        b.reconnect_backoff_max,
        "reconnect_backoff_max",
        errs,
    );
    Some(b)
}

fn serial(raw: &RawBus, path: String, errs: &mut Errors<'_>) -> Transport {
    let baud = raw.baud.as_ref().map_or(DEFAULT_BAUD, |b| *b.get_ref());
    if let Some(b) = &raw.baud {
        if !(300..=4_000_000).contains(b.get_ref()) {
            errs.at_spanned(b, format!("baud {} is outside 300 to 4000000", b.get_ref()));
        }
    }
    let data_bits = raw.data_bits.as_ref().map_or(8, |b| *b.get_ref());
    if let Some(b) = &raw.data_bits {
        if !(5..=8).contains(b.get_ref()) {
            errs.at_spanned(b, "data_bits must be 5, 6, 7 or 8 (Modbus RTU uses 8)");
        }
    }
    let stop_bits = raw.stop_bits.as_ref().map_or(1, |b| *b.get_ref());
    if let Some(b) = &raw.stop_bits {
        if !(1..=2).contains(b.get_ref()) {
            errs.at_spanned(b, "stop_bits must be 1 or 2");
        }
    }
    let parity = match raw.parity.as_ref().map(|p| *p.get_ref()) {
        None | Some(RawParity::Even) => Parity::Even,
        Some(RawParity::Odd) => Parity::Odd,
        Some(RawParity::None) => Parity::None,
    };
    Transport::Rtu {
        path,
        baud,
        parity,
        data_bits,
        stop_bits,
    }
}
