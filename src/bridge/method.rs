//! Direct methods: the payload is checked against the door's method map before anything
//! touches the bus (400 with a JSON reason otherwise), then the mapped write runs at
//! operator priority and is read back. Status codes: 200 done; 400 bad payload; 404 unknown
//! method; 502 Modbus exception or read-back mismatch; 503 bus unavailable; 504 bus timeout.

use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::bus_ops::{self, WriteFailure};
use super::{DoorIo, PendingRestore};
use crate::codec::ValueSpec;
use crate::config::{Door, MethodAction, ReadTable, ValueSource, WriteTable};
use iothub_proto::Status;

/// The answer to one method request.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodReply {
    pub status: Status,
    pub body: Value,
}

impl MethodReply {
    fn bad_request(reason: impl Into<String>) -> Self {
        MethodReply {
            status: Status::BAD_REQUEST,
            body: json!({"error": reason.into(), "code": "BadPayload"}),
        }
    }

    fn failed(f: WriteFailure) -> Self {
        MethodReply {
            status: f.status,
            body: f.body,
        }
    }
}

/// A method request checked against the map: exactly what will be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    Coil {
        addr: u16,
        value: bool,
    },
    Registers {
        addr: u16,
        words: Vec<u16>,
        spec: ValueSpec,
        value: Value,
    },
    Pulse {
        addr: u16,
        value: bool,
        hold: Duration,
    },
}

/// Parses and validates a payload for `action`. Pure: this is the gate that keeps malformed
/// payloads off the bus.
pub(super) fn plan(action: &MethodAction, payload: &[u8]) -> Result<Planned, String> {
    let payload: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(payload).map_err(|e| format!("payload is not valid JSON: {e}"))?
    };
    match action {
        MethodAction::WriteCoil { address, value } => {
            let v = source_value(value, &payload)?;
            let value = v
                .as_bool()
                .ok_or_else(|| format!("expected true or false, got {v}"))?;
            Ok(Planned::Coil {
                addr: *address,
                value,
            })
        }
        MethodAction::WriteRegister {
            address,
            spec,
            value,
        } => {
            let v = source_value(value, &payload)?;
            let words = spec.encode(&v).map_err(|e| e.to_string())?;
            Ok(Planned::Registers {
                addr: *address,
                words,
                spec: spec.clone(),
                value: v,
            })
        }
        MethodAction::PulseCoil {
            address,
            value,
            seconds_from,
            default,
            max,
        } => {
            let hold = match seconds_from {
                None => *default,
                Some(field) => match field_of(&payload, field)? {
                    None => *default,
                    Some(v) => {
                        let secs = v
                            .as_f64()
                            .filter(|s| s.is_finite() && *s > 0.0)
                            .ok_or_else(|| {
                                format!("'{field}' must be a positive number of seconds, got {v}")
                            })?;
                        // Not `from_secs_f64`: it panics above u64::MAX seconds, and the
                        // payload chooses the number.
                        match Duration::try_from_secs_f64(secs) {
                            Ok(hold) if hold.is_zero() => {
                                return Err(format!(
                                    "'{field}' must be a positive number of seconds, got {v}"
                                ))
                            }
                            Ok(hold) if hold <= *max => hold,
                            _ => {
                                return Err(format!(
                                    "'{field}' is {secs} s; at most {} s is allowed",
                                    max.as_secs_f64()
                                ))
                            }
                        }
                    }
                },
            };
            Ok(Planned::Pulse {
                addr: *address,
                value: *value,
                hold,
            })
        }
    }
}

fn source_value(source: &ValueSource, payload: &Value) -> Result<Value, String> {
    match source {
        ValueSource::Fixed(v) => Ok(v.clone()),
        ValueSource::Payload(field) => {
            field_of(payload, field)?.ok_or_else(|| format!("payload needs a '{field}' member"))
        }
    }
}

/// `payload[field]`; an error when the payload is neither an object nor empty.
fn field_of(payload: &Value, field: &str) -> Result<Option<Value>, String> {
    match payload {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(m.get(field).cloned().filter(|v| !v.is_null())),
        other => Err(format!("payload must be a JSON object, got {other}")),
    }
}

/// Answers one method request that arrived at `received`. A successful pulse also returns
/// the coil to restore and when.
pub(super) async fn handle(
    door: &Door,
    io: &DoorIo,
    name: &str,
    payload: &[u8],
    received: Instant,
) -> (MethodReply, Option<(u16, PendingRestore)>) {
    let Some(method) = door.methods.get(name) else {
        let reply = MethodReply {
            status: Status::NOT_FOUND,
            body: json!({
                "error": format!("unknown method '{name}'"),
                "code": "UnknownMethod",
                "methods": door.methods.keys().collect::<Vec<_>>(),
            }),
        };
        return (reply, None);
    };
    let planned = match plan(&method.action, payload) {
        Ok(p) => p,
        Err(reason) => {
            tracing::info!(device = %door.device_id, method = name, %reason, "method payload refused");
            return (MethodReply::bad_request(reason), None);
        }
    };
    // From arrival, not from now: time spent waiting behind this door's other requests
    // counts, so nothing is written after the caller was told it timed out.
    let deadline = received + method.timeout;
    let mut restore = None;
    let result = match &planned {
        Planned::Coil { addr, value } => {
            bus_ops::write_coil(io, door.unit, *addr, *value, deadline)
                .await
                .map(|got| state(door, WriteTable::Coil, *addr, &Value::Bool(got)))
        }
        Planned::Registers {
            addr, words, value, ..
        } => bus_ops::write_registers(io, door.unit, *addr, words, deadline)
            .await
            .map(|_| state(door, WriteTable::Holding, *addr, value)),
        Planned::Pulse { addr, value, hold } => {
            bus_ops::write_coil(io, door.unit, *addr, *value, deadline)
                .await
                .map(|got| {
                    restore = Some((
                        *addr,
                        PendingRestore {
                            at: Instant::now() + *hold,
                            restore: !*value,
                        },
                    ));
                    let mut s = state(door, WriteTable::Coil, *addr, &Value::Bool(got));
                    s.insert("seconds".into(), json!(hold.as_secs_f64()));
                    s
                })
        }
    };
    let reply = match result {
        Ok(state) => MethodReply {
            status: Status::OK,
            body: json!({"result": "done", "state": state}),
        },
        Err(f) => {
            log_failure(door, name, &f);
            MethodReply::failed(f)
        }
    };
    (reply, restore)
}

/// A failed method in the log: in full for the first door a kind of failure hits, then one
/// line an interval summing up the doors it keeps hitting (a job over a line whose units are
/// off would otherwise write a line per door).
fn log_failure(door: &Door, method: &str, f: &WriteFailure) {
    use crate::lograte::{summary_text, RepeatGate, Verdict};
    static GATE: std::sync::LazyLock<RepeatGate> = std::sync::LazyLock::new(RepeatGate::new);
    let code = f.body["code"].as_str().unwrap_or("");
    let kind = format!("{method} {} {code}", f.status);
    match GATE.note(&kind, &door.device_id) {
        Verdict::First => {
            tracing::warn!(device = %door.device_id, method, status = %f.status, error = %f.body, "method failed")
        }
        Verdict::Repeat => {
            tracing::debug!(device = %door.device_id, method, status = %f.status, error = %f.body, "method failed")
        }
        Verdict::Summary { count, doors } => {
            tracing::warn!(method, status = %f.status, code, repeated = %summary_text(count, &doors), "methods failed")
        }
    }
}

/// The resulting state named as the door reports it: every reported point that reads the
/// written address, else `coil:N` / `holding:N`.
fn state(door: &Door, table: WriteTable, addr: u16, value: &Value) -> Map<String, Value> {
    let read_table = ReadTable::from(table);
    let mut m: Map<String, Value> = door
        .reported
        .iter()
        .filter(|(_, p)| p.table == read_table && p.address == addr)
        .map(|(name, _)| (name.clone(), value.clone()))
        .collect();
    if m.is_empty() {
        let key = match table {
            WriteTable::Coil => format!("coil:{addr}"),
            WriteTable::Holding => format!("holding:{addr}"),
        };
        m.insert(key, value.clone());
    }
    m
}

/// Writes a pulsed coil back; false when it could not be written (the caller tries again).
pub(super) async fn restore(door: &Door, io: &DoorIo, addr: u16, value: bool) -> bool {
    let deadline = Instant::now() + io.op_budget * 2;
    match bus_ops::write_coil(io, door.unit, addr, value, deadline).await {
        Ok(_) => true,
        Err(f) => {
            tracing::error!(device = %door.device_id, coil = addr, error = %f.body, "pulse restore failed; the coil keeps its pulsed value until a retry succeeds");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulse() -> MethodAction {
        MethodAction::PulseCoil {
            address: 0,
            value: false,
            seconds_from: Some("seconds".into()),
            default: Duration::from_secs(5),
            max: Duration::from_secs(30),
        }
    }

    #[test]
    fn coil_from_fixed_value_ignores_payload() {
        let a = MethodAction::WriteCoil {
            address: 3,
            value: ValueSource::Fixed(json!(true)),
        };
        assert_eq!(
            plan(&a, b""),
            Ok(Planned::Coil {
                addr: 3,
                value: true
            })
        );
        assert_eq!(
            plan(&a, b" {\"x\":1} "),
            Ok(Planned::Coil {
                addr: 3,
                value: true
            })
        );
    }

    #[test]
    fn malformed_payloads_are_refused_before_the_bus() {
        let a = MethodAction::WriteCoil {
            address: 0,
            value: ValueSource::Payload("on".into()),
        };
        assert!(plan(&a, b"{not json")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(plan(&a, b"{}").unwrap_err().contains("needs a 'on' member"));
        assert!(plan(&a, b"{\"on\": 3}")
            .unwrap_err()
            .contains("true or false"));
        assert!(plan(&a, b"[1]").unwrap_err().contains("JSON object"));
        assert_eq!(
            plan(&a, b"{\"on\": false}"),
            Ok(Planned::Coil {
                addr: 0,
                value: false
            })
        );
    }

    #[test]
    fn pulse_duration_from_payload_is_bounded() {
        assert_eq!(
            plan(&pulse(), b"{\"seconds\": 2.5}"),
            Ok(Planned::Pulse {
                addr: 0,
                value: false,
                hold: Duration::from_millis(2500)
            })
        );
        assert_eq!(
            plan(&pulse(), b""),
            Ok(Planned::Pulse {
                addr: 0,
                value: false,
                hold: Duration::from_secs(5)
            })
        );
        assert!(plan(&pulse(), b"{\"seconds\": 31}")
            .unwrap_err()
            .contains("at most 30"));
        assert!(plan(&pulse(), b"{\"seconds\": -1}")
            .unwrap_err()
            .contains("positive"));
        assert!(plan(&pulse(), b"{\"seconds\": \"5\"}")
            .unwrap_err()
            .contains("positive"));
    }

    /// Crashed the `method_payload` fuzz target: a duration beyond `u64::MAX` seconds
    /// panicked in `Duration::from_secs_f64`, killing the door's bridge task so the method
    /// was never answered.
    #[test]
    fn huge_or_vanishing_pulse_durations_are_refused_not_panicked_on() {
        for payload in [
            &b"{\"seconds\": 1e300}"[..],
            b"{\"seconds\": 1.8446744073709552e19}",
        ] {
            assert!(plan(&pulse(), payload).unwrap_err().contains("at most 30"));
        }
        assert!(plan(&pulse(), b"{\"seconds\": 1e-300}")
            .unwrap_err()
            .contains("positive"));
    }

    #[test]
    fn register_values_are_encoded_and_range_checked() {
        let spec = ValueSpec::new(crate::codec::DataType::U16).with_range(Some(0.0), Some(2.0));
        let a = MethodAction::WriteRegister {
            address: 10,
            spec,
            value: ValueSource::Payload("mode".into()),
        };
        match plan(&a, b"{\"mode\": 2}").unwrap() {
            Planned::Registers { addr, words, .. } => assert_eq!((addr, words), (10, vec![2])),
            other => panic!("{other:?}"),
        }
        assert!(plan(&a, b"{\"mode\": 7}")
            .unwrap_err()
            .contains("above the maximum"));
    }
}
