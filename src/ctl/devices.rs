//! `devices list` (a registry query as a table) and `devices provision` (the hub made to
//! match the gateway's device map; the work is in [`super::provision`]).

use std::path::Path;

use serde_json::Value;

use super::context::Ctx;
use super::error::{query_err, CtlError, Outcome};
use super::output::{compact, table, Style};
use super::provision::{self, Change};

pub(crate) async fn provision(
    ctx: &mut Ctx<'_>,
    config: &Path,
    keys_dir: Option<&Path>,
    dry_run: bool,
) -> Result<Outcome, CtlError> {
    let items = provision::provision_items_from_config(config)?;
    let results = provision::provision(&ctx.client, &items, keys_dir, dry_run).await?;
    let failed = results.iter().any(|r| r.change == Change::Failed);
    ctx.emit(
        &serde_json::json!({ "dryRun": dry_run, "devices": results }),
        |style| provision::render(style, &results, dry_run),
    )?;
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// `--query` may be a bare condition or a whole query.
pub fn devices_query(q: Option<&str>) -> String {
    match q.map(str::trim).filter(|q| !q.is_empty()) {
        None => "SELECT * FROM devices".into(),
        Some(q) if q.len() >= 7 && q[..7].eq_ignore_ascii_case("select ") => q.into(),
        Some(q) => format!("SELECT * FROM devices WHERE {q}"),
    }
}

pub(crate) async fn list(ctx: &mut Ctx<'_>, q: Option<&str>) -> Result<Outcome, CtlError> {
    let query = devices_query(q);
    let rows: Vec<Value> = ctx
        .client
        .query(&query)
        .await
        .map_err(query_err(q.unwrap_or(&query).to_string()))?;
    ctx.emit(&rows, |style| devices_table(style, &rows))?;
    Ok(Outcome::Success)
}

fn devices_table(style: Style, rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no devices".into();
    }
    // Projections and aggregates are not twins: print them as they came.
    if !rows.iter().all(|r| r.get("deviceId").is_some()) {
        let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
        return lines.join("\n");
    }
    let s = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let tags = r
                .get("tags")
                .and_then(Value::as_object)
                .map(compact)
                .unwrap_or_default();
            vec![
                s(r, "deviceId"),
                s(r, "status"),
                s(r, "connectionState"),
                s(r, "lastActivityTime"),
                tags,
            ]
        })
        .collect();
    table(
        style,
        &["DEVICE", "STATUS", "CONNECTION", "LAST ACTIVITY", "TAGS"],
        &table_rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_queries() {
        assert_eq!(devices_query(None), "SELECT * FROM devices");
        assert_eq!(devices_query(Some("  ")), "SELECT * FROM devices");
        assert_eq!(
            devices_query(Some("tags.building = '43'")),
            "SELECT * FROM devices WHERE tags.building = '43'"
        );
        assert_eq!(
            devices_query(Some("select deviceId FROM devices")),
            "select deviceId FROM devices"
        );
    }
}
