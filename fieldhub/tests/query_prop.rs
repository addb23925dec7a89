//! Property test: parsing + evaluating a rendered condition agrees with a reference evaluation.
//!
//! The reference side is independent of fieldhub's code: conditions are generated as a small
//! AST of their own, twins as plain Rust structs, and the ground truth is computed on those with
//! straightforward three-valued logic. Only the rendered text and the twin's JSON reach fieldhub.

use fieldhub::query::{parse_condition, parse_query};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Obj(BTreeMap<String, V>),
}

impl V {
    fn to_json(&self) -> Value {
        match self {
            V::Null => Value::Null,
            V::Bool(b) => json!(b),
            V::Int(i) => json!(i),
            V::Str(s) => json!(s),
            V::Obj(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
}

#[derive(Debug, Clone)]
struct Twin {
    device_id: String,
    tags: BTreeMap<String, V>,
    reported: BTreeMap<String, V>,
}

impl Twin {
    fn to_json(&self) -> Value {
        let obj = |m: &BTreeMap<String, V>| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            )
        };
        json!({"deviceId": self.device_id, "status": "enabled", "tags": obj(&self.tags),
               "properties": {"desired": {}, "reported": obj(&self.reported)}})
    }
}

/// An attribute reference, with the casing used when rendering system names.
#[derive(Debug, Clone)]
enum Field {
    DeviceId(bool),
    Tag(String, Option<String>, bool),
    Reported(String, bool),
}

#[derive(Debug, Clone)]
enum Operand {
    Field(Field),
    Lit(V),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Ne2,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Cond {
    Cmp(Op, Operand, Operand),
    In(Field, Vec<V>, bool),
    IsDefined(Field),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

const KEYS: &[&str] = &["a", "b", "Zone", "zone"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

fn string_lit() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "x", "y", "43", "", "it's", "q\"d", "b\\s", "ü€", "tab\t",
    ])
    .prop_map(str::to_owned)
}

fn prim() -> impl Strategy<Value = V> {
    prop_oneof![
        Just(V::Null),
        any::<bool>().prop_map(V::Bool),
        (-3i64..4).prop_map(V::Int),
        string_lit().prop_map(V::Str),
    ]
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        4 => prim(),
        1 => prop::collection::btree_map(key(), prim(), 0..3).prop_map(V::Obj),
    ]
}

fn twin() -> impl Strategy<Value = Twin> {
    (
        prop::sample::select(vec!["door-01", "door-02", "x"]),
        prop::collection::btree_map(key(), value(), 0..4),
        prop::collection::btree_map(key(), value(), 0..3),
    )
        .prop_map(|(id, tags, reported)| Twin {
            device_id: id.to_owned(),
            tags,
            reported,
        })
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        any::<bool>().prop_map(Field::DeviceId),
        (key(), prop::option::of(key()), any::<bool>()).prop_map(|(k, s, c)| Field::Tag(k, s, c)),
        (key(), any::<bool>()).prop_map(|(k, c)| Field::Reported(k, c)),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        field().prop_map(Operand::Field),
        prim().prop_map(Operand::Lit),
        prop::sample::select(vec!["door-01", "door-02"])
            .prop_map(|s| Operand::Lit(V::Str(s.into()))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(vec![
        Op::Eq,
        Op::Ne,
        Op::Ne2,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
    ])
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (op(), operand(), operand()).prop_map(|(o, a, b)| Cond::Cmp(o, a, b)),
        (field(), prop::collection::vec(prim(), 0..4), any::<bool>())
            .prop_map(|(f, l, n)| Cond::In(f, l, n)),
        field().prop_map(Cond::IsDefined),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Cond::Not(Box::new(a))),
        ]
    })
}

// ---- rendering ----

fn render_str(s: &str, double: bool) -> String {
    let q = if double { '"' } else { '\'' };
    let mut out = String::from(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '€' => out.push_str("\\u20AC"),
            c if c == q => {
                out.push('\\');
                out.push(c)
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

fn render_v(v: &V, alt: bool) -> String {
    match v {
        V::Null => if alt { "NULL" } else { "null" }.into(),
        V::Bool(b) => {
            if alt {
                b.to_string().to_uppercase()
            } else {
                b.to_string()
            }
        }
        V::Int(i) if alt && *i >= 0 => format!("0x{i:X}"),
        V::Int(i) => i.to_string(),
        V::Str(s) => render_str(s, alt),
        V::Obj(_) => unreachable!("objects are never literals"),
    }
}

fn render_field(f: &Field) -> String {
    match f {
        Field::DeviceId(c) => if *c { "DeviceId" } else { "deviceId" }.into(),
        Field::Tag(k, sub, c) => {
            let t = if *c { "Tags" } else { "tags" };
            match sub {
                Some(s) => format!("{t}.{k}.{s}"),
                None => format!("{t}.{k}"),
            }
        }
        Field::Reported(k, c) => {
            let p = if *c {
                "Properties.Reported"
            } else {
                "properties.reported"
            };
            format!("{p}.{k}")
        }
    }
}

fn render_operand(o: &Operand, alt: bool) -> String {
    match o {
        Operand::Field(f) => render_field(f),
        Operand::Lit(v) => render_v(v, alt),
    }
}

fn render(c: &Cond, depth: usize) -> String {
    let alt = depth % 2 == 1;
    match c {
        Cond::Cmp(op, a, b) => {
            let o = match op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Ne2 => "<>",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
            };
            format!("{} {o} {}", render_operand(a, alt), render_operand(b, !alt))
        }
        Cond::In(f, list, neg) => {
            let items: Vec<String> = list.iter().map(|v| render_v(v, alt)).collect();
            let kw = match (neg, alt) {
                (false, _) => "IN",
                (true, false) => "NIN",
                (true, true) => "not in",
            };
            let (open, close) = if alt { ("(", ")") } else { ("[", "]") };
            if items.is_empty() && alt {
                format!("{} {kw} []", render_field(f))
            } else {
                format!("{} {kw} {open}{}{close}", render_field(f), items.join(", "))
            }
        }
        Cond::IsDefined(f) => format!("IS_DEFINED({})", render_field(f)),
        Cond::And(a, b) => format!("({}) AND ({})", render(a, depth + 1), render(b, depth + 1)),
        Cond::Or(a, b) => format!("({}) or ({})", render(a, depth + 1), render(b, depth + 1)),
        Cond::Not(a) => format!("NOT ({})", render(a, depth + 1)),
    }
}

// ---- reference evaluation ----

fn lookup(t: &Twin, f: &Field) -> Option<V> {
    match f {
        Field::DeviceId(_) => Some(V::Str(t.device_id.clone())),
        Field::Tag(k, None, _) => t.tags.get(k).cloned(),
        Field::Tag(k, Some(s), _) => match t.tags.get(k) {
            Some(V::Obj(m)) => m.get(s).cloned(),
            _ => None,
        },
        Field::Reported(k, _) => t.reported.get(k).cloned(),
    }
}

fn value_of(t: &Twin, o: &Operand) -> Option<V> {
    match o {
        Operand::Field(f) => lookup(t, f),
        Operand::Lit(v) => Some(v.clone()),
    }
}

fn cmp(op: Op, a: &V, b: &V) -> Option<bool> {
    use std::cmp::Ordering::*;
    let ord = match (a, b) {
        (V::Null, V::Null) => {
            return match op {
                Op::Eq => Some(true),
                Op::Ne | Op::Ne2 => Some(false),
                _ => None,
            }
        }
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::Str(x), V::Str(y)) => x.cmp(y),
        _ => return None,
    };
    Some(match op {
        Op::Eq => ord == Equal,
        Op::Ne | Op::Ne2 => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
    })
}

fn reference(t: &Twin, c: &Cond) -> Option<bool> {
    match c {
        Cond::Cmp(op, a, b) => cmp(*op, &value_of(t, a)?, &value_of(t, b)?),
        Cond::In(f, list, neg) => {
            let v = lookup(t, f)?;
            if matches!(v, V::Obj(_)) {
                return None;
            }
            let found = list.iter().any(|x| cmp(Op::Eq, &v, x) == Some(true));
            Some(found != *neg)
        }
        Cond::IsDefined(f) => Some(lookup(t, f).is_some()),
        Cond::And(a, b) => match (reference(t, a), reference(t, b)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Cond::Or(a, b) => match (reference(t, a), reference(t, b)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Cond::Not(a) => reference(t, a).map(|b| !b),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsed_condition_agrees_with_reference(c in cond(), twins in prop::collection::vec(twin(), 1..6)) {
        let text = render(&c, 0);
        let parsed = parse_condition(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        for t in &twins {
            let expected = reference(t, &c) == Some(true);
            prop_assert_eq!(parsed.matches(&t.to_json()), expected, "{} on {:?}", text, t);
        }
        // The same condition inside a full query selects exactly the reference's twins.
        let q = parse_query(&format!("SELECT * FROM devices WHERE {text}")).unwrap();
        let docs: Vec<Value> = twins.iter().map(Twin::to_json).collect();
        let got = q.execute(docs.iter()).items;
        let want: Vec<Value> = twins.iter().filter(|t| reference(t, &c) == Some(true)).map(Twin::to_json).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn garbage_never_panics_and_errors_point_inside_the_text(s in "[a-zA-Z0-9 '\"=<>!()\\[\\],.*_-]{0,40}") {
        if let Err(e) = parse_condition(&s) {
            prop_assert!(e.position <= s.chars().count());
        }
        if let Err(e) = parse_query(&format!("SELECT * FROM devices WHERE {s}")) {
            prop_assert!(e.position <= s.chars().count() + 28);
        }
    }
}
