//! Evaluation of conditions against a JSON document (a twin or a device-job record).
//!
//! Values are three-state: a JSON value, or *undefined* (`None`). Only a boolean `true` result
//! makes a condition match.

use super::ast::{ArithOp, CompareOp, Condition, Expr, Path, PathRoot};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

type Val<'a> = Option<Cow<'a, Value>>;

impl Condition {
    /// The top-level document fields the condition reads (first path segments, lowercased:
    /// they match case-insensitively), so a caller can build only those parts of a document.
    pub fn document_fields(&self) -> BTreeSet<String> {
        fn walk(e: &Expr, out: &mut BTreeSet<String>) {
            let mut path = |p: &Path| {
                if p.root == PathRoot::Document {
                    if let Some(first) = p.segments.first() {
                        out.insert(first.to_ascii_lowercase());
                    }
                }
            };
            match e {
                Expr::Literal(_) => {}
                Expr::Path(p) | Expr::IsDefined(p) => path(p),
                Expr::Compare(_, a, b)
                | Expr::Arith(_, a, b)
                | Expr::And(a, b)
                | Expr::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Not(a) => walk(a, out),
                Expr::In { expr, list, .. } => {
                    walk(expr, out);
                    list.iter().for_each(|x| walk(x, out));
                }
            }
        }
        let mut out = BTreeSet::new();
        if let Condition::Expr(e) = self {
            walk(e, &mut out);
        }
        out
    }

    /// Whether `doc` satisfies the condition (evaluates to exactly `true`).
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Condition::All => true,
            Condition::Expr(e) => e.matches(doc),
        }
    }
}

impl Expr {
    /// Whether this expression evaluates to boolean `true` on `doc`.
    pub fn matches(&self, doc: &Value) -> bool {
        matches!(eval(self, doc).as_deref(), Some(Value::Bool(true)))
    }

    /// Evaluates the expression; `None` is *undefined*.
    pub fn evaluate(&self, doc: &Value) -> Option<Value> {
        eval(self, doc).map(Cow::into_owned)
    }
}

impl Path {
    /// Looks the path up in `doc`. The first segment (a system property, `tags` or `properties`)
    /// and the `desired`/`reported` level match case-insensitively; keys below are exact.
    pub fn resolve<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.resolve_entry(doc).map(|(_, v)| v)
    }

    /// Like [`Path::resolve`], with the last key as the document spells it: what a projection
    /// is keyed by, so `SELECT DeviceId` returns `deviceId` as IoT Hub does.
    pub fn resolve_entry<'a>(&self, doc: &'a Value) -> Option<(&'a str, &'a Value)> {
        let mut cur = doc;
        let mut key = "";
        for (i, seg) in self.segments.iter().enumerate() {
            let obj = cur.as_object()?;
            let (k, v) = match obj.get_key_value(seg.as_str()) {
                Some(kv) => kv,
                None if self.is_loose(i) => {
                    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(seg))?
                }
                None => return None,
            };
            key = k.as_str();
            cur = v;
        }
        Some((key, cur))
    }
}

fn boolean<'a>(b: Option<bool>) -> Val<'a> {
    b.map(|b| Cow::Owned(Value::Bool(b)))
}

fn as_bool(v: &Val<'_>) -> Option<bool> {
    match v.as_deref() {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn eval<'a>(expr: &'a Expr, doc: &'a Value) -> Val<'a> {
    match expr {
        Expr::Literal(v) => v.as_ref().map(Cow::Borrowed),
        Expr::Path(p) => p.resolve(doc).map(Cow::Borrowed),
        Expr::IsDefined(p) => boolean(Some(p.resolve(doc).is_some())),
        Expr::Not(e) => boolean(as_bool(&eval(e, doc)).map(|b| !b)),
        Expr::And(a, b) => {
            let (a, b) = (as_bool(&eval(a, doc)), as_bool(&eval(b, doc)));
            boolean(match (a, b) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            })
        }
        Expr::Or(a, b) => {
            let (a, b) = (as_bool(&eval(a, doc)), as_bool(&eval(b, doc)));
            boolean(match (a, b) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            })
        }
        Expr::Arith(op, a, b) => {
            let (a, b) = (eval(a, doc), eval(b, doc));
            match (a.as_deref(), b.as_deref()) {
                (Some(Value::Number(a)), Some(Value::Number(b))) => {
                    arithmetic(*op, a, b).map(|n| Cow::Owned(Value::Number(n)))
                }
                _ => None,
            }
        }
        Expr::Compare(op, a, b) => {
            let (a, b) = (eval(a, doc), eval(b, doc));
            boolean(match (a.as_deref(), b.as_deref()) {
                (Some(a), Some(b)) => compare(*op, a, b),
                _ => None,
            })
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, doc);
            let v = v.as_deref()?;
            if v.is_object() || v.is_array() {
                return None;
            }
            let found = list.iter().any(|item| {
                eval(item, doc)
                    .as_deref()
                    .is_some_and(|item| compare(CompareOp::Eq, v, item) == Some(true))
            });
            boolean(Some(found != *negated))
        }
    }
}

/// `a op b` on numbers: exact on integers while the result fits, otherwise in floating point
/// (so `7 / 2` is 3.5); dividing by zero, or a result that is not finite, is undefined.
pub(crate) fn arithmetic(op: ArithOp, a: &Number, b: &Number) -> Option<Number> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let exact = match op {
            ArithOp::Add => x.checked_add(y),
            ArithOp::Sub => x.checked_sub(y),
            ArithOp::Mul => x.checked_mul(y),
            ArithOp::Div => (y != 0 && x % y == 0).then(|| x.checked_div(y)).flatten(),
            ArithOp::Rem => x.checked_rem(y),
        };
        if let Some(n) = exact {
            return Some(Number::from(n));
        }
        if y == 0 && matches!(op, ArithOp::Div | ArithOp::Rem) {
            return None;
        }
    }
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div if y != 0.0 => x / y,
        ArithOp::Rem if y != 0.0 => x % y,
        ArithOp::Div | ArithOp::Rem => return None,
    };
    Number::from_f64(r)
}

/// Compares two primitives of the same kind; anything else is undefined (`None`).
/// `null` equals `null` but has no order.
pub(crate) fn compare(op: CompareOp, a: &Value, b: &Value) -> Option<bool> {
    let ord = match (a, b) {
        (Value::Null, Value::Null) => {
            return match op {
                CompareOp::Eq => Some(true),
                CompareOp::Ne => Some(false),
                _ => None,
            }
        }
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?)?,
        },
        _ => return None,
    };
    Some(match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use crate::query::parse_condition;
    use serde_json::json;

    fn twin() -> serde_json::Value {
        json!({"deviceId":"door-01","status":"enabled","connectionState":"Connected",
               "tags":{"building":"43","floor":3,"Zone":"B","flag":true,"n":null},
               "properties":{"desired":{"openDurationSec":7},"reported":{"locked":false,"fw":"1.2"}}})
    }

    fn m(cond: &str) -> bool {
        parse_condition(cond).unwrap().matches(&twin())
    }

    #[test]
    fn document_fields_are_the_lowercased_roots() {
        let f = |c: &str| parse_condition(c).unwrap().document_fields();
        assert!(f("*").is_empty());
        assert_eq!(
            f("DeviceId IN ['a'] AND (Tags.b = 1 OR NOT IS_DEFINED(properties.reported.x))"),
            ["deviceid", "properties", "tags"].map(String::from).into()
        );
        assert_eq!(
            f("tags.x = status"),
            ["status", "tags"].map(String::from).into()
        );
    }

    #[test]
    fn system_properties_are_case_insensitive_but_keys_are_not() {
        assert!(m("DeviceId = 'door-01'"));
        assert!(m("Tags.building = '43'"));
        assert!(m("properties.Reported.locked = false"));
        assert!(m("tags.Zone = 'B'"));
        assert!(!m("tags.zone = 'B'"));
        assert!(m("NOT IS_DEFINED(tags.zone)"));
    }

    #[test]
    fn comparisons_need_same_kind() {
        assert!(!m("tags.building = 43"));
        assert!(!m("NOT (tags.building = 43)"));
        assert!(m(
            "tags.floor = 3.0 AND tags.floor >= 0x3 AND tags.floor < 4"
        ));
        assert!(m("tags.floor != 2"));
        assert!(m("tags.n = null AND IS_DEFINED(tags.n)"));
        assert!(!m("tags.missing = null"));
        assert!(!m("tags.missing != 'x'"));
        assert!(m("tags.flag"));
        assert!(!m("tags.building"));
        assert!(!m("tags = tags"));
        assert!(m("true OR tags.missing = 1"));
        assert!(!m("NOT (false OR tags.missing = 1)"));
    }

    #[test]
    fn device_job_fields() {
        let rec = json!({"deviceId":"door-01","jobId":"job01","jobType":"scheduleDeviceMethod",
            "status":"failed","createdDateTimeUtc":"2026-01-02T03:04:05Z"});
        let c = |q: &str| parse_condition(q).unwrap().matches(&rec);
        assert!(c(
            "devices.jobs.jobId = 'job01' AND devices.jobs.Status = 'failed'"
        ));
        assert!(c("devices.jobs.createdTimeUtc > '2026-01-01T00:00:00Z'"));
        assert!(c("devices.jobs.createdDateTimeUtc < '2026-02-01'"));
        assert!(!c("devices.jobs.jobId = 'job02'"));
    }

    /// Issue 14, item 2: the query guide's arithmetic operators (numbers in, a number out;
    /// otherwise undefined).
    #[test]
    fn arithmetic() {
        assert!(m(
            "tags.floor + 1 = 4 AND tags.floor - 4 = -1 AND tags.floor * 2 = 6"
        ));
        assert!(m(
            "tags.floor / 2 = 1.5 AND tags.floor % 2 = 1 AND 1 + 2 * 3 = 7"
        ));
        assert!(m("(1 + 2) * 3 = 9 AND 10 - 2 - 3 = 5 AND 12 / 2 / 3 = 2"));
        assert!(m("properties.desired.openDurationSec * 1000 > 6999"));
        assert!(!m("tags.building + 1 = 44"), "a string is not a number");
        assert!(!m("NOT (tags.building + 1 = 44)"), "undefined, not false");
        assert!(!m("tags.floor / 0 = 0") && !m("NOT (tags.floor % 0 = 0)"));
        assert!(
            m("9223372036854775807 * 2 > 9223372036854775807"),
            "overflow goes to f64"
        );
    }

    #[test]
    fn in_and_nin() {
        assert!(m("deviceId IN ['door-02', 'door-01']"));
        assert!(m("deviceId NIN ['door-02']"));
        assert!(!m("tags.missing NIN ['door-02']"));
        assert!(!m("tags.floor IN ['3']"));
        assert!(m("tags.floor NOT IN ('3')"));
    }
}
