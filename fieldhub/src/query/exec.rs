//! Running a parsed query over a set of documents, and paging its result the way the SDKs expect
//! (`x-ms-max-item-count` / `x-ms-continuation`, continuation absent on the last page).

use super::ast::{Aggregate, ArithOp, Item, Path, Projection, Query, Selected, Source};
use super::QueryError;
use serde_json::{Map, Value};

/// Page size when the client sends no `x-ms-max-item-count`.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The `x-ms-item-type` of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    Twin,
    DeviceJob,
    JobResponse,
    Raw,
}

impl ItemType {
    /// The header value (PascalCase, as .NET's `Enum.Parse` needs).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Twin => "Twin",
            ItemType::DeviceJob => "DeviceJob",
            ItemType::JobResponse => "JobResponse",
            ItemType::Raw => "Raw",
        }
    }
}

/// Every item a query selects (before paging).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub items: Vec<Value>,
    pub item_type: ItemType,
}

impl Query {
    /// Runs the query over `docs`: twins for [`Source::Devices`], device-job records for
    /// [`Source::DeviceJobs`] (see [`Query::source`]).
    pub fn execute<'a>(&self, docs: impl Iterator<Item = &'a Value>) -> QueryResult {
        let matching = docs.filter(|d| self.condition.matches(d));
        let limit = self.top.unwrap_or(usize::MAX);
        let items = match &self.projection {
            Projection::All => {
                return QueryResult {
                    items: matching.take(limit).cloned().collect(),
                    item_type: match self.source {
                        Source::Devices => ItemType::Twin,
                        Source::DeviceJobs => ItemType::DeviceJob,
                    },
                }
            }
            Projection::Items(items) => items,
        };
        let rows = if self.group_by.is_none() && !self.projection.aggregates() {
            matching.take(limit).map(|doc| row(items, &[doc])).collect()
        } else {
            // Groups in order of first appearance; documents without the grouped attribute
            // form one group whose row leaves that key out.
            let mut groups: Vec<(Option<&Value>, Vec<&Value>)> = Vec::new();
            for doc in matching {
                let key = self.group_by.as_ref().and_then(|g| g.resolve(doc));
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(doc),
                    None => groups.push((key, vec![doc])),
                }
            }
            if groups.is_empty() && self.group_by.is_none() {
                // Aggregates over nothing still give one row (`COUNT()` is 0).
                groups.push((None, Vec::new()));
            }
            groups
                .into_iter()
                .take(limit)
                .map(|(_, members)| row(items, &members))
                .collect()
        };
        QueryResult {
            items: rows,
            item_type: ItemType::Raw,
        }
    }
}

/// One result row: fields from the group's first document (all members agree on a grouped
/// attribute), aggregates over all members.
fn row(items: &[Item], members: &[&Value]) -> Value {
    let mut obj = Map::new();
    let mut unnamed = 0;
    for item in items {
        match &item.selected {
            Selected::Field(path) => {
                if let Some((key, v)) = members.first().and_then(|d| path.resolve_entry(d)) {
                    let name = item.alias.clone().unwrap_or_else(|| key.to_owned());
                    obj.insert(name, v.clone());
                }
            }
            Selected::Aggregate(function, arg) => {
                unnamed += usize::from(item.alias.is_none());
                let name = item.alias.clone().unwrap_or_else(|| format!("${unnamed}"));
                if let Some(v) = aggregate(*function, arg.as_ref(), members) {
                    obj.insert(name, v);
                }
            }
        }
    }
    Value::Object(obj)
}

/// An aggregate over a group. `COUNT()` counts documents; the others take the numbers the path
/// holds and skip documents where it is missing or not a number. With no number to work on,
/// `SUM` is 0 and `AVG`, `MIN`, `MAX` are undefined (the key is left out). The query language
/// guide names these functions without defining these edge cases.
fn aggregate(function: Aggregate, arg: Option<&Path>, members: &[&Value]) -> Option<Value> {
    if function == Aggregate::Count {
        return Some(Value::from(members.len()));
    }
    let numbers: Vec<&serde_json::Number> = members
        .iter()
        .filter_map(|d| arg.and_then(|p| p.resolve(d)))
        .filter_map(Value::as_number)
        .collect();
    let sum = || {
        numbers
            .iter()
            .try_fold(serde_json::Number::from(0), |acc, n| {
                super::eval::arithmetic(ArithOp::Add, &acc, n)
            })
    };
    let extreme = |want: std::cmp::Ordering| {
        numbers
            .iter()
            .copied()
            .reduce(|a, b| {
                let ord = match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    _ => a
                        .as_f64()
                        .partial_cmp(&b.as_f64())
                        .unwrap_or(std::cmp::Ordering::Equal),
                };
                if ord == want {
                    a
                } else {
                    b
                }
            })
            .cloned()
    };
    let n = match function {
        Aggregate::Count => unreachable!("handled above"),
        Aggregate::Sum => sum()?,
        Aggregate::Avg if numbers.is_empty() => return None,
        Aggregate::Avg => {
            let total = sum()?.as_f64()?;
            serde_json::Number::from_f64(total / numbers.len() as f64)?
        }
        Aggregate::Min => extreme(std::cmp::Ordering::Less)?,
        Aggregate::Max => extreme(std::cmp::Ordering::Greater)?,
    };
    Some(Value::Number(n))
}

const TOKEN_PREFIX: &str = "fh1:";

/// Cuts one page out of `items`. `continuation` is the token from the previous page; the returned
/// token is `None` on the last page (SDKs loop forever on an empty header). `max_item_count`
/// of `None` or 0 means [`DEFAULT_PAGE_SIZE`].
pub fn page(
    items: Vec<Value>,
    max_item_count: Option<usize>,
    continuation: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), QueryError> {
    let size = max_item_count
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE);
    let offset = match continuation {
        None => 0,
        Some(token) => token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| QueryError::new(0, format!("invalid continuation token '{token}'")))?,
    };
    let end = offset.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| format!("{TOKEN_PREFIX}{end}"));
    let page = items.into_iter().skip(offset).take(end - offset).collect();
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_query;
    use serde_json::json;

    fn twins() -> Vec<Value> {
        (0..10)
            .map(|i| json!({"deviceId": format!("d{i}"), "tags": {"even": i % 2 == 0, "i": i}}))
            .collect()
    }

    #[test]
    fn select_count_projection_top() {
        let t = twins();
        let r = parse_query("SELECT * FROM devices WHERE tags.even = true")
            .unwrap()
            .execute(t.iter());
        assert_eq!(r.items.len(), 5);
        assert_eq!(r.item_type, ItemType::Twin);
        let r = parse_query("SELECT COUNT() AS n FROM devices WHERE tags.i >= 7")
            .unwrap()
            .execute(t.iter());
        assert_eq!(r.items, vec![json!({"n": 3})]);
        assert_eq!(r.item_type, ItemType::Raw);
        let r = parse_query("SELECT TOP 2 deviceId, tags.i AS num, tags.nope FROM devices")
            .unwrap()
            .execute(t.iter());
        assert_eq!(
            r.items,
            vec![
                json!({"deviceId":"d0","num":0}),
                json!({"deviceId":"d1","num":1})
            ]
        );
        let r = parse_query("SELECT * FROM devices.jobs")
            .unwrap()
            .execute(t.iter());
        assert_eq!(r.item_type, ItemType::DeviceJob);
    }

    /// Issue 14, item 1: a projected property is keyed by its name as IoT Hub spells it, not as
    /// the query typed it (system properties match case-insensitively).
    #[test]
    fn projections_use_the_documents_property_names() {
        let t = [
            json!({"deviceId": "d0", "lastActivityTime": "2026-01-01T00:00:00Z",
            "properties": {"reported": {"fw": "1.2"}}}),
        ];
        let r = parse_query("SELECT DeviceId, LastActivityTime, Properties.Reported FROM devices")
            .unwrap()
            .execute(t.iter());
        assert_eq!(
            r.items,
            vec![
                json!({"deviceId": "d0", "lastActivityTime": "2026-01-01T00:00:00Z",
                "reported": {"fw": "1.2"}})
            ]
        );
        let r = parse_query("SELECT DeviceId AS Id FROM devices")
            .unwrap()
            .execute(t.iter());
        assert_eq!(
            r.items,
            vec![json!({"Id": "d0"})],
            "an alias is kept as written"
        );
    }

    /// Issue 14, item 2: the query guide's GROUP BY example and the other aggregates.
    #[test]
    fn group_by_and_aggregates() {
        let t: Vec<Value> = ["Success", "Pending", "Success", "Error", "Success"]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"deviceId": format!("d{i}"), "tags": {"n": i, "f": i as f64 / 2.0},
                "properties": {"reported": {"telemetryConfig": {"status": s}}}})
            })
            .chain([json!({"deviceId": "nostatus", "tags": {"n": "x"}})])
            .collect();
        let q = "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS \
                 numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status";
        let r = parse_query(q).unwrap().execute(t.iter());
        assert_eq!(r.item_type, ItemType::Raw);
        assert_eq!(
            r.items,
            vec![
                json!({"status": "Success", "numberOfDevices": 3}),
                json!({"status": "Pending", "numberOfDevices": 1}),
                json!({"status": "Error", "numberOfDevices": 1}),
                json!({"numberOfDevices": 1}),
            ]
        );
        let r = parse_query(
            "SELECT COUNT(), SUM(tags.n), AVG(tags.n) AS avg, MIN(tags.f), MAX(tags.n) FROM devices",
        )
        .unwrap()
        .execute(t.iter());
        assert_eq!(
            r.items,
            vec![json!({"$1": 6, "$2": 10, "avg": 2.0, "$3": 0.0, "$4": 4})]
        );
        let r = parse_query("SELECT COUNT() AS n, AVG(tags.n) AS a FROM devices WHERE tags.n > 99")
            .unwrap()
            .execute(t.iter());
        assert_eq!(r.items, vec![json!({"n": 0})], "no rows still count 0");
        let r = parse_query(
            "SELECT COUNT() AS n FROM devices WHERE tags.n * 2 + 1 >= 7 AND tags.n % 2 = 1",
        )
        .unwrap()
        .execute(t.iter());
        assert_eq!(r.items, vec![json!({"n": 1})], "only n = 3");
    }

    #[test]
    fn grouping_errors() {
        for (q, at) in [
            ("SELECT deviceId, COUNT() FROM devices", 7),
            ("SELECT tags.a, COUNT() FROM devices GROUP BY tags.b", 7),
            ("SELECT * FROM devices GROUP BY tags.b", 7),
            (
                "SELECT COUNT() FROM devices.jobs GROUP BY devices.jobs.status",
                7,
            ),
            ("SELECT MEDIAN(tags.a) FROM devices", 7),
        ] {
            let e = parse_query(q).unwrap_err();
            assert_eq!(e.position, at, "{q}: {e}");
        }
        assert!(parse_query("SELECT Tags.a FROM devices GROUP BY tags.a").is_ok());
    }

    #[test]
    fn paging_walks_all_items_and_ends_without_token() {
        let items: Vec<Value> = (0..7).map(Value::from).collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let (p, next) = page(items.clone(), Some(3), token.as_deref()).unwrap();
            seen.extend(p);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, items);
        let (p, next) = page(items.clone(), None, None).unwrap();
        assert_eq!((p.len(), next), (7, None));
        let (p, next) = page(items.clone(), Some(7), None).unwrap();
        assert_eq!((p.len(), next), (7, None));
        assert!(page(items, Some(3), Some("garbage")).is_err());
    }
}
