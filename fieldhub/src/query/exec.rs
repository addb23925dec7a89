//! Running a parsed query over a set of documents, and paging its result the way the SDKs expect
//! (`x-ms-max-item-count` / `x-ms-continuation`, continuation absent on the last page).

use super::ast::{Projection, Query, Source};
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
        match &self.projection {
            Projection::All => QueryResult {
                items: matching.take(limit).cloned().collect(),
                item_type: match self.source {
                    Source::Devices => ItemType::Twin,
                    Source::DeviceJobs => ItemType::DeviceJob,
                },
            },
            Projection::Fields(fields) => QueryResult {
                items: matching
                    .take(limit)
                    .map(|doc| {
                        let obj: Map<String, Value> = fields
                            .iter()
                            .filter_map(|(path, alias)| {
                                path.resolve(doc).map(|v| (alias.clone(), v.clone()))
                            })
                            .collect();
                        Value::Object(obj)
                    })
                    .collect(),
                item_type: ItemType::Raw,
            },
            Projection::Count { alias } => {
                let n = matching.count();
                let mut obj = Map::new();
                obj.insert(alias.clone(), Value::from(n));
                QueryResult {
                    items: vec![Value::Object(obj)].into_iter().take(limit).collect(),
                    item_type: ItemType::Raw,
                }
            }
        }
    }
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
