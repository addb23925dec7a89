//! Desired properties → register writes. Every property of a patch is checked against the
//! door's desired map (type, range, enum) before any write; invalid values are acknowledged
//! with `ac` 400 and never written, unmapped ones with `ac` 404 ("ignored"), and the valid
//! ones are written, read back and acknowledged `{"value", "ac": 200, "av": $version, "ad"}`
//! in one reported patch. Registers that already hold the value are not written again, so
//! the full reconcile on every reconnect is cheap and idempotent.
//!
//! `value` in an acknowledgement is the door's current value, as the IoT Plug and Play
//! convention for writable properties has it
//! (<https://learn.microsoft.com/azure/iot/concepts-convention#writable-properties>): the
//! value written on success; for a refused value, the register as read just now; where no
//! value is known (an unmapped property; a bus that did not answer) `value` is left out and
//! `ad` says why, since a `null` would delete the member from the reported twin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::bus_ops::{self, WriteFailure};
use super::DoorIo;
use crate::config::{DesiredPoint, Door, WriteTable};
use iothub_proto::Status;

/// One writable property's acknowledgement in the reported twin, as the Plug and Play
/// convention writes it: the door's current `value` (left out where none is known), the
/// status `ac`, the desired `$version` it answers `av`, and a description `ad`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub ac: Status,
    pub av: u64,
    pub ad: String,
}

/// The acknowledgements of one patch (or reconcile) and what happened, for metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DesiredOutcome {
    pub acks: BTreeMap<String, DesiredAck>,
    /// Desired values whose write failed on the bus (5xx), to be tried again.
    pub failed_values: serde_json::Map<String, Value>,
    pub applied: u64,
    pub rejected: u64,
    pub ignored: u64,
    pub failed: u64,
}

impl DesiredOutcome {
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        [
            ("applied", self.applied),
            ("rejected", self.rejected),
            ("ignored", self.ignored),
            ("failed", self.failed),
        ]
    }

    /// The acknowledgements as one reported patch.
    pub fn reported_patch(&self) -> Option<Value> {
        (!self.acks.is_empty())
            .then(|| serde_json::to_value(&self.acks).expect("acks serialize to JSON"))
    }

    fn ack(&mut self, name: &str, value: &Value, ac: Status, av: u64, ad: impl Into<String>) {
        self.acks.insert(
            name.to_string(),
            DesiredAck {
                value: Some(value.clone()),
                ac,
                av,
                ad: ad.into(),
            },
        );
    }

    /// An acknowledgement without a current value (none is known).
    fn ack_unknown(&mut self, name: &str, ac: Status, av: u64, ad: impl Into<String>) {
        self.acks.insert(
            name.to_string(),
            DesiredAck {
                value: None,
                ac,
                av,
                ad: ad.into(),
            },
        );
    }
}

/// A property that passed validation: what to write where.
struct Checked<'a> {
    name: &'a str,
    value: &'a Value,
    point: &'a DesiredPoint,
    words: Vec<u16>,
}

/// A desired property that passed validation, as [`check_desired_patch`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredWrite {
    pub name: String,
    pub table: WriteTable,
    pub address: u16,
    /// The encoded value; a `bit` point's word is merged onto the register as read.
    pub words: Vec<u16>,
}

/// The pure half of a desired patch: acknowledges invalid and unmapped properties in `out`
/// and returns the valid ones. Nothing here touches the bus.
fn check<'a>(
    door: &'a Door,
    desired: &'a Value,
    version: u64,
    full: bool,
    out: &mut DesiredOutcome,
) -> Vec<Checked<'a>> {
    let mut checked = Vec::new();
    let Some(props) = desired.as_object() else {
        return checked;
    };
    for (name, value) in props.iter().filter(|(k, _)| !k.starts_with('$')) {
        if value.is_null() {
            // Deleting a desired property leaves the register as it is.
            continue;
        }
        match door.desired.get(name) {
            None => {
                // On a full reconcile, unmapped properties were acknowledged when they arrived.
                if !full {
                    out.ignored += 1;
                    out.ack_unknown(
                        name,
                        Status::NOT_FOUND,
                        version,
                        "not mapped to a register on this door; ignored (no current value)",
                    );
                }
            }
            Some(point) => match point.spec.encode(value) {
                Ok(words) => checked.push(Checked {
                    name,
                    value,
                    point,
                    words,
                }),
                Err(e) => {
                    out.rejected += 1;
                    tracing::info!(device = %door.device_id, property = %name, error = %e, "desired value refused");
                    out.ack(
                        name,
                        value,
                        Status::BAD_REQUEST,
                        version,
                        format!("not written: {e}"),
                    );
                }
            },
        }
    }
    checked
}

/// Validates a desired patch (or full desired document when `full`) against the door's map
/// without writing: the acknowledgements of refused and unmapped properties, and the writes
/// the valid ones would cause. [`run`](super::run) writes exactly these.
pub fn check_desired_patch(
    door: &Door,
    desired: &Value,
    version: u64,
    full: bool,
) -> (DesiredOutcome, Vec<DesiredWrite>) {
    let mut out = DesiredOutcome::default();
    let writes = check(door, desired, version, full, &mut out)
        .into_iter()
        .map(|c| DesiredWrite {
            name: c.name.to_string(),
            table: c.point.table,
            address: c.point.address,
            words: c.words,
        })
        .collect();
    (out, writes)
}

/// Validates every property of `desired` first, then writes the valid ones.
pub(super) async fn apply(
    door: &Door,
    io: &DoorIo,
    desired: &Value,
    version: u64,
    full: bool,
) -> DesiredOutcome {
    let mut out = DesiredOutcome::default();
    let checked = check(door, desired, version, full, &mut out);
    current_values_of_refused(door, io, &mut out).await;
    for c in checked {
        match write(door, io, &c).await {
            Ok(true) => {
                out.applied += 1;
                out.ack(c.name, c.value, Status::OK, version, "applied");
            }
            Ok(false) => {
                out.applied += 1;
                out.ack(c.name, c.value, Status::OK, version, "already applied");
            }
            Err(f) => {
                out.failed += 1;
                let reason = f
                    .body
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("bus error")
                    .to_string();
                tracing::warn!(device = %door.device_id, property = %c.name, status = %f.status, %reason, "desired value not applied");
                out.failed_values
                    .insert(c.name.to_string(), c.value.clone());
                out.ack_unknown(c.name, f.status, version, format!("not applied: {reason}"));
            }
        }
    }
    out
}

/// Puts the door's current value into each refused (400) acknowledgement: the register as
/// read now, decoded like the property. Where it cannot be read the value is left out and
/// `ad` says so.
async fn current_values_of_refused(door: &Door, io: &DoorIo, out: &mut DesiredOutcome) {
    let refused: Vec<String> = out
        .acks
        .iter()
        .filter(|(_, a)| a.ac == Status::BAD_REQUEST)
        .map(|(k, _)| k.clone())
        .collect();
    for name in refused {
        let Some(p) = door.desired.get(&name) else {
            continue;
        };
        let deadline = Instant::now() + io.op_budget;
        let count = p.spec.register_count().max(1);
        let read =
            bus_ops::read_words(io, door.unit, p.table.into(), p.address, count, deadline).await;
        let Some(ack) = out.acks.get_mut(&name) else {
            continue;
        };
        match read.map(|w| p.spec.decode(&w)) {
            Ok(Ok(v)) => ack.value = Some(v),
            Ok(Err(e)) => {
                ack.value = None;
                ack.ad = format!("{}; current value undecodable: {e}", ack.ad);
            }
            Err(f) => {
                ack.value = None;
                let why = f.body["error"].as_str().unwrap_or("bus error");
                ack.ad = format!("{}; current value unknown: {why}", ack.ad);
            }
        }
    }
}

/// Reads the target; writes (and reads back) only when it differs. `Ok(true)` = written.
async fn write(door: &Door, io: &DoorIo, c: &Checked<'_>) -> Result<bool, WriteFailure> {
    let deadline = Instant::now() + io.op_budget * 3;
    let p = c.point;
    let count = p.spec.register_count().max(1);
    let current =
        bus_ops::read_words(io, door.unit, p.table.into(), p.address, count, deadline).await?;
    let words = if p.spec.needs_read_modify_write() {
        p.spec
            .encode_onto(c.value, &current)
            .map_err(|e| WriteFailure {
                status: Status::BAD_REQUEST,
                body: json!({"error": e.to_string()}),
            })?
    } else {
        c.words.clone()
    };
    let wanted: Vec<u16> = match p.table {
        WriteTable::Coil => vec![u16::from(words.first().is_some_and(|w| *w != 0))],
        WriteTable::Holding => words.clone(),
    };
    let have: Vec<u16> = match p.table {
        WriteTable::Coil => current.iter().map(|w| u16::from(*w != 0)).collect(),
        WriteTable::Holding => current,
    };
    if have == wanted {
        return Ok(false);
    }
    match p.table {
        WriteTable::Coil => {
            bus_ops::write_coil(io, door.unit, p.address, wanted[0] != 0, deadline).await?
        }
        WriteTable::Holding => {
            bus_ops::write_registers(io, door.unit, p.address, &words, deadline).await?;
            true
        }
    };
    Ok(true)
}
