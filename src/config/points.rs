//! Resolution of a profile (`[profile.NAME]`, possibly with a door's overrides merged in):
//! methods, desired points and reported points, their value specs, and the checks that
//! span points (name collisions, overlapping writes).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeValue;
use toml::Spanned;

use super::de;
use super::error::Errors;
use super::model::{
    DesiredPoint, Method, MethodAction, ReadTable, ReportedPoint, ValueSource, WriteTable,
};
use super::names::{check_method_name, check_twin_key, toml_to_json};
use super::raw::{
    dur, RawAction, RawDesired, RawMethod, RawProfileHead, RawReported, RawSource, RawTarget,
    SpecFields,
};
use crate::codec::{DataType, ValueSpec};

/// Poll interval when a profile does not give one.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Pulse length when the payload does not give one.
/// How long the gateway may take for a direct method, from its arrival: below IoT Hub's
/// smallest `responseTimeoutInSeconds` (5 s), so no caller, whatever timeout it chose, is
/// told "timed out" for a write that happens later. The second left covers the answer's
/// way back to the hub and the caller.
pub const DEFAULT_METHOD_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_PULSE: Duration = Duration::from_secs(5);
/// Longest pulse a payload may ask for unless the method says otherwise.
pub const DEFAULT_PULSE_MAX: Duration = Duration::from_secs(60);

/// Reported property names the bridge itself writes.
const RESERVED_REPORTED: &[&str] = &["connectivity"];

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Maps {
    pub poll_interval: Duration,
    /// The profile's Plug and Play model (DTMI), if it names one.
    pub model_id: Option<String>,
    /// Shared: a door without overrides clones its profile's maps, so a thousand doors of
    /// one model hold one copy (~4 KB a door otherwise).
    pub methods: Arc<BTreeMap<String, Method>>,
    pub desired: Arc<BTreeMap<String, DesiredPoint>>,
    pub reported: Arc<BTreeMap<String, ReportedPoint>>,
}

/// One register range some method or desired property writes, for the overlap check.
struct Writable {
    table: WriteTable,
    start: u32,
    count: u32,
    bit: Option<u8>,
    desired: bool,
    name: String,
    span: Range<usize>,
}

impl Writable {
    fn describe(&self) -> String {
        let what = if self.desired {
            "desired property"
        } else {
            "method"
        };
        let table = match self.table {
            WriteTable::Coil => "coil",
            WriteTable::Holding => "holding register",
        };
        let end = self.start + self.count - 1;
        let bit = self.bit.map(|b| format!(" bit {b}")).unwrap_or_default();
        if self.count == 1 {
            format!("{what} `{}` ({table} {}{bit})", self.name, self.start)
        } else {
            format!("{what} `{}` ({table}s {}-{end})", self.name, self.start)
        }
    }
}

pub(crate) fn resolve(profile: &Spanned<DeValue<'_>>, errs: &mut Errors<'_>) -> Option<Maps> {
    let mut rest = profile.clone();
    let methods = de::take_table(&mut rest, "methods", errs);
    let desired = de::take_table(&mut rest, "desired", errs);
    let reported = de::take_table(&mut rest, "reported", errs);
    let head: RawProfileHead = de::item(&rest, errs)?;
    let poll_interval = match &head.poll_interval {
        Some(d) if dur(d).is_zero() => {
            errs.at_spanned(d, "poll_interval must be longer than 0");
            DEFAULT_POLL_INTERVAL
        }
        Some(d) => dur(d),
        None => DEFAULT_POLL_INTERVAL,
    };
    let model_id = head.model_id.as_ref().and_then(|m| {
        if crate::dtdl::valid_dtmi(m.get_ref()) {
            Some(m.get_ref().clone())
        } else {
            errs.at_spanned(
                m,
                "model_id must be a DTMI such as \"dtmi:contoso:door;1\" (dtmi:, segments of letters, digits and _ separated by :, then ;version)",
            );
            None
        }
    });
    let mut maps = Maps {
        poll_interval,
        model_id,
        methods: Arc::default(),
        desired: Arc::default(),
        reported: Arc::default(),
    };
    let mut writes = Vec::new();

    for (name, v) in &methods {
        if let Err(e) = check_method_name("method name", name.get_ref()) {
            errs.at_spanned(name, e);
        }
        let Some(raw) = de::item::<RawMethod>(v, errs) else {
            continue;
        };
        if let Some(action) = method(&raw, errs) {
            let (table, address) = action.target();
            let (count, bit) = match &action {
                MethodAction::WriteRegister { spec, .. } => (spec.register_count(), spec.bit),
                _ => (1, None),
            };
            writes.push(Writable {
                table,
                start: address as u32,
                count: count as u32,
                bit,
                desired: false,
                name: name.get_ref().clone(),
                span: raw.address.span(),
            });
            let timeout = raw.timeout.as_ref().map_or(DEFAULT_METHOD_TIMEOUT, dur);
            if let Some(t) = raw.timeout.as_ref().filter(|t| dur(t).is_zero()) {
                errs.at_spanned(t, "timeout must be longer than 0");
            }
            Arc::make_mut(&mut maps.methods)
                .insert(name.get_ref().clone(), Method { action, timeout });
        }
    }

    for (name, v) in &desired {
        if let Err(e) = check_twin_key("desired property name", name.get_ref()) {
            errs.at_spanned(name, e);
        }
        let Some(raw) = de::item::<RawDesired>(v, errs) else {
            continue;
        };
        let table = match raw.target.as_ref().map(|t| *t.get_ref()) {
            Some(RawTarget::Coil) => WriteTable::Coil,
            Some(RawTarget::Holding) | None => WriteTable::Holding,
        };
        let Some(spec) = spec(raw.spec(), table.into(), &raw.address, errs) else {
            continue;
        };
        let Some(address) = address(&raw.address, spec.register_count(), errs) else {
            continue;
        };
        writes.push(Writable {
            table,
            start: address as u32,
            count: spec.register_count() as u32,
            bit: spec.bit,
            desired: true,
            name: name.get_ref().clone(),
            span: raw.address.span(),
        });
        Arc::make_mut(&mut maps.desired).insert(
            name.get_ref().clone(),
            DesiredPoint {
                table,
                address,
                spec,
            },
        );
    }

    for (name, v) in &reported {
        if let Err(e) = check_twin_key("reported property name", name.get_ref()) {
            errs.at_spanned(name, e);
        }
        if RESERVED_REPORTED.contains(&name.get_ref().as_str()) {
            errs.at_spanned(
                name,
                format!(
                    "`{}` is reserved: the gateway reports its own status under it",
                    name.get_ref()
                ),
            );
        }
        if desired.iter().any(|(d, _)| d.get_ref() == name.get_ref()) {
            errs.at_spanned(name, format!(
                "`{}` is also a desired property, whose acknowledgement is reported under the same name; rename one",
                name.get_ref()
            ));
        }
        let Some(raw) = de::item::<RawReported>(v, errs) else {
            continue;
        };
        let table = match *raw.source.get_ref() {
            RawSource::Coil => ReadTable::Coil,
            RawSource::DiscreteInput => ReadTable::DiscreteInput,
            RawSource::Holding => ReadTable::Holding,
            RawSource::Input => ReadTable::Input,
        };
        let Some(spec) = spec(raw.spec(), table, &raw.address, errs) else {
            continue;
        };
        let Some(address) = address(&raw.address, spec.register_count(), errs) else {
            continue;
        };
        let deadband = match &raw.deadband {
            Some(d) if !spec.is_numeric() => {
                errs.at_spanned(d, "deadband applies only to numbers, not to bools or enums");
                0.0
            }
            Some(d) if !(d.get_ref().is_finite() && *d.get_ref() >= 0.0) => {
                errs.at_spanned(d, "deadband must be 0 or more");
                0.0
            }
            Some(d) => *d.get_ref(),
            None => 0.0,
        };
        let telemetry = raw.telemetry.as_ref().is_some_and(|t| *t.get_ref());
        Arc::make_mut(&mut maps.reported).insert(
            name.get_ref().clone(),
            ReportedPoint {
                table,
                address,
                spec,
                deadband,
                telemetry,
            },
        );
    }

    check_overlaps(&writes, errs);
    Some(maps)
}

fn method(raw: &RawMethod, errs: &mut Errors<'_>) -> Option<MethodAction> {
    let action = *raw.action.get_ref();
    let action_name = match action {
        RawAction::WriteCoil => "write_coil",
        RawAction::WriteRegister => "write_register",
        RawAction::PulseCoil => "pulse_coil",
    };
    let mut not_for = |span: Option<Range<usize>>, key: &str| {
        if let Some(s) = span {
            errs.at(s, format!("`{key}` does not apply to action {action_name}"));
        }
    };
    if action != RawAction::PulseCoil {
        not_for(raw.seconds_from.as_ref().map(|s| s.span()), "seconds_from");
        not_for(
            raw.default_duration.as_ref().map(|s| s.span()),
            "default_duration",
        );
        not_for(raw.max_duration.as_ref().map(|s| s.span()), "max_duration");
    }
    if action == RawAction::PulseCoil {
        not_for(raw.from.as_ref().map(|s| s.span()), "from");
    }
    match action {
        RawAction::WriteCoil => {
            let spec = spec(raw.spec(), ReadTable::Coil, &raw.address, errs)?;
            let address = address(&raw.address, 1, errs)?;
            let value = source(raw, &spec, errs)?;
            Some(MethodAction::WriteCoil { address, value })
        }
        RawAction::WriteRegister => {
            let spec = spec(raw.spec(), ReadTable::Holding, &raw.address, errs)?;
            let address = address(&raw.address, spec.register_count(), errs)?;
            let value = source(raw, &spec, errs)?;
            Some(MethodAction::WriteRegister {
                address,
                spec,
                value,
            })
        }
        RawAction::PulseCoil => {
            spec(raw.spec(), ReadTable::Coil, &raw.address, errs)?;
            let address = address(&raw.address, 1, errs)?;
            let value = match &raw.value {
                Some(v) => {
                    let b = v.get_ref().as_bool();
                    if b.is_none() {
                        errs.at_spanned(v, "a pulse writes true or false to the coil");
                    }
                    b
                }
                None => {
                    errs.at_spanned(&raw.action, "pulse_coil needs `value`: the coil state held during the pulse (it is restored to the opposite afterwards)");
                    None
                }
            };
            let max = raw.max_duration.as_ref().map_or(DEFAULT_PULSE_MAX, dur);
            if let Some(m) = raw.max_duration.as_ref().filter(|m| dur(m).is_zero()) {
                errs.at_spanned(m, "max_duration must be longer than 0");
            }
            // Without a default, a short max caps the default pulse too.
            let default = raw
                .default_duration
                .as_ref()
                .map_or(DEFAULT_PULSE.min(max), dur);
            if let Some(d) = &raw.default_duration {
                if dur(d).is_zero() {
                    errs.at_spanned(d, "default_duration must be longer than 0");
                } else if dur(d) > max {
                    errs.at_spanned(
                        d,
                        format!(
                            "default_duration {} is longer than max_duration {}",
                            humantime::format_duration(default),
                            humantime::format_duration(max)
                        ),
                    );
                }
            }
            if let Some(s) = &raw.seconds_from {
                if let Err(e) = check_method_name("payload field name", s.get_ref()) {
                    errs.at_spanned(s, e);
                }
            }
            Some(MethodAction::PulseCoil {
                address,
                value: value?,
                seconds_from: raw.seconds_from.as_ref().map(|s| s.get_ref().clone()),
                default,
                max,
            })
        }
    }
}

/// Exactly one of `value` (fixed, checked to encode) and `from` (payload field).
fn source(raw: &RawMethod, spec: &ValueSpec, errs: &mut Errors<'_>) -> Option<ValueSource> {
    match (&raw.value, &raw.from) {
        (Some(v), None) => {
            let json = toml_to_json(v.get_ref());
            match spec.encode(&json) {
                Ok(_) => Some(ValueSource::Fixed(json)),
                Err(e) => {
                    errs.at_spanned(v, format!("value cannot be written: {e}"));
                    None
                }
            }
        }
        (None, Some(f)) => {
            if let Err(e) = check_method_name("payload field name", f.get_ref()) {
                errs.at_spanned(f, e);
            }
            Some(ValueSource::Payload(f.get_ref().clone()))
        }
        (Some(_), Some(f)) => {
            errs.at_spanned(
                f,
                "give either `value` (always written) or `from` (taken from the payload), not both",
            );
            None
        }
        (None, None) => {
            errs.at_spanned(
                &raw.action,
                "this action needs `value` (always written) or `from` (the payload field to write)",
            );
            None
        }
    }
}

/// Address within 0..=65535 with room for `count` registers.
fn address(a: &Spanned<i64>, count: u16, errs: &mut Errors<'_>) -> Option<u16> {
    let v = *a.get_ref();
    let last = v + count as i64 - 1;
    if !(0..=65535).contains(&v) || last > 65535 {
        let msg = if count > 1 {
            format!("address {v} with {count} registers does not fit Modbus addresses 0 to 65535")
        } else {
            format!("address {v} is outside Modbus addresses 0 to 65535")
        };
        errs.at_spanned(a, msg);
        return None;
    }
    Some(v as u16)
}

/// Builds and checks the value spec of a point in `table`.
fn spec(
    f: SpecFields<'_>,
    table: ReadTable,
    anchor: &Spanned<i64>,
    errs: &mut Errors<'_>,
) -> Option<ValueSpec> {
    if matches!(table, ReadTable::Coil | ReadTable::DiscreteInput) {
        let mut ok = true;
        let mut reject = |span: Option<Range<usize>>, key: &str| {
            if let Some(s) = span {
                errs.at(
                    s,
                    format!("`{key}` does not apply to a {table}: it holds a bool"),
                );
                ok = false;
            }
        };
        if let Some(t) = f.data_type {
            if *t.get_ref() != DataType::Bool {
                reject(Some(t.span()), "type");
            }
        }
        reject(f.order.as_ref().map(|s| s.span()), "order");
        reject(f.scale.as_ref().map(|s| s.span()), "scale");
        reject(f.offset.as_ref().map(|s| s.span()), "offset");
        reject(f.min.as_ref().map(|s| s.span()), "min");
        reject(f.max.as_ref().map(|s| s.span()), "max");
        reject(f.enum_map.as_ref().map(|s| s.span()), "enum");
        reject(f.bit.as_ref().map(|s| s.span()), "bit");
        return ok.then(ValueSpec::bool);
    }
    let default_type = if f.bit.is_some() {
        DataType::Bool
    } else {
        DataType::U16
    };
    let mut spec = ValueSpec::new(f.data_type.as_ref().map_or(default_type, |t| *t.get_ref()));
    if let Some(o) = f.order {
        spec.order = *o.get_ref();
    }
    spec.scale = f.scale.as_ref().map_or(1.0, |s| *s.get_ref());
    spec.offset = f.offset.as_ref().map_or(0.0, |s| *s.get_ref());
    spec.min = f.min.as_ref().map(|s| *s.get_ref());
    spec.max = f.max.as_ref().map(|s| *s.get_ref());
    spec.bit = f.bit.as_ref().map(|s| *s.get_ref());
    let mut ok = true;
    if let Some(m) = f.enum_map {
        for (k, name) in m.get_ref() {
            match k.trim().parse::<i64>() {
                Ok(raw) => {
                    spec.enum_map.insert(raw, name.get_ref().clone());
                }
                Err(_) => {
                    errs.at_spanned(
                        name,
                        format!("enum key `{k}` is not an integer: write `0 = \"closed\"`"),
                    );
                    ok = false;
                }
            }
        }
    }
    for msg in spec.validate() {
        let span = if msg.starts_with("min") {
            f.min.as_ref().map(|s| s.span())
        } else if msg.starts_with("max") {
            f.max.as_ref().map(|s| s.span())
        } else if msg.starts_with("enum") || msg.starts_with("an enum") {
            f.enum_map.as_ref().map(|s| s.span())
        } else if msg.starts_with("bit") || msg.starts_with("a bit") {
            f.bit.as_ref().map(|s| s.span())
        } else if msg.starts_with("scale") || msg.starts_with("offset") {
            f.scale.as_ref().or(f.offset.as_ref()).map(|s| s.span())
        } else {
            None
        };
        let span = span
            .or_else(|| f.data_type.as_ref().map(|s| s.span()))
            .unwrap_or_else(|| anchor.span());
        errs.at(span, msg);
        ok = false;
    }
    ok.then_some(spec)
}

/// Desired points must not share registers with any other write (the device would not
/// converge to the desired state); methods may share a point only exactly.
fn check_overlaps(writes: &[Writable], errs: &mut Errors<'_>) {
    for (i, b) in writes.iter().enumerate() {
        for a in &writes[..i] {
            if a.table != b.table {
                continue;
            }
            let overlap = a.start < b.start + b.count && b.start < a.start + a.count;
            if !overlap {
                continue;
            }
            if let (Some(x), Some(y)) = (a.bit, b.bit) {
                if x != y {
                    continue;
                }
            }
            let same_shape = a.start == b.start && a.count == b.count && a.bit == b.bit;
            if !a.desired && !b.desired && same_shape {
                continue;
            }
            errs.at(
                b.span.clone(),
                format!("{} overlaps {}", b.describe(), a.describe()),
            );
        }
    }
}
