//! The single-device and listing commands: `invoke`, `twin show`, `twin set`,
//! `devices list`.

use serde_json::Value;

use super::args::{json_arg, parse_assignments, secs_in_range};
use super::cli::{InvokeArgs, TwinCommand};
use super::client::ClientError;
use super::error::{CtlError, Outcome};
use super::jobs::query_err;
use super::model::{CloudToDeviceMethod, TwinPatch};
use super::output::{compact, table, twin_summary, write_json, write_text};
use super::run::Ctx;

pub(crate) async fn invoke(ctx: &mut Ctx<'_>, a: InvokeArgs) -> Result<Outcome, CtlError> {
    let payload = match &a.payload {
        Some(p) => json_arg("--payload", p)?,
        None => Value::Null,
    };
    let method = CloudToDeviceMethod {
        method_name: a.method.clone(),
        payload,
        response_timeout_in_seconds: secs_in_range("--timeout", a.timeout, 5, 300)?,
        connect_timeout_in_seconds: secs_in_range("--connect-timeout", a.connect_timeout, 0, 300)?,
    };
    let resp = ctx
        .client
        .invoke_method(&a.device, &method)
        .await
        .map_err(|e| method_err(&a.device, e))?;
    if ctx.json {
        write_json(ctx.out, &resp)?;
    } else {
        let payload = serde_json::to_string_pretty(&resp.payload).unwrap_or_default();
        write_text(
            ctx.out,
            &format!("{} {}: {}\n{payload}", a.device, a.method, resp.status),
        )?;
    }
    Ok(if (200..300).contains(&resp.status) {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// Unknown device: usage error (exit 2). Device offline or silent: the device failed (exit 1).
fn method_err(device: &str, e: ClientError) -> CtlError {
    match e {
        ClientError::Service(s)
            if s.status == 404 && s.code.as_deref() != Some("DeviceNotOnline") =>
        {
            CtlError::DeviceNotFound(device.to_string())
        }
        ClientError::Service(s) if s.status == 404 || s.status == 504 => CtlError::DeviceFailed {
            device: device.to_string(),
            detail: s.to_string(),
        },
        other => other.into(),
    }
}

fn device_err(device: &str) -> impl Fn(ClientError) -> CtlError + '_ {
    move |e| match e {
        ClientError::Service(s) if s.status == 404 => CtlError::DeviceNotFound(device.to_string()),
        other => other.into(),
    }
}

pub(crate) async fn twin(ctx: &mut Ctx<'_>, cmd: TwinCommand) -> Result<Outcome, CtlError> {
    let mut wait_for: Option<(Vec<String>, std::time::Duration)> = None;
    let twin = match cmd {
        TwinCommand::Show { device } => ctx
            .client
            .get_twin(&device)
            .await
            .map_err(device_err(&device))?,
        TwinCommand::Set {
            device,
            desired,
            tag,
            wait,
            ack_timeout,
        } => {
            let patch = TwinPatch {
                tags: parse_assignments("--tag", &tag)?,
                desired: parse_assignments("--desired", &desired)?,
            };
            if patch.is_empty() {
                return Err(CtlError::usage("twin set needs --desired or --tag"));
            }
            let props: Vec<String> = patch
                .desired
                .iter()
                // A deleted property gets no acknowledgement.
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone())
                .collect();
            if wait && !props.is_empty() {
                wait_for = Some((props, ack_timeout));
            }
            ctx.client
                .patch_twin(&device, &patch)
                .await
                .map_err(device_err(&device))?
        }
    };
    let Some((props, ack_timeout)) = wait_for else {
        if ctx.json {
            write_json(ctx.out, &twin)?;
        } else {
            write_text(ctx.out, &twin_summary(ctx.style_out, &twin))?;
        }
        return Ok(Outcome::Success);
    };
    let ids = [twin.device_id.clone()];
    let acks = super::acks::follow(
        &ctx.client,
        &ids,
        &props,
        ack_timeout,
        std::time::Duration::from_millis(500),
    )
    .await
    .map_err(device_err(&twin.device_id))?;
    let failure = acks.first().and_then(super::acks::DoorAcks::failure);
    if ctx.json {
        write_json(
            ctx.out,
            &serde_json::json!({"twin": twin, "acknowledgements": acks}),
        )?;
    } else {
        let line = match &failure {
            None => format!(
                "{}: {} acknowledged by the door",
                twin.device_id,
                props.join(", ")
            ),
            Some(why) => format!("{}: not taken: {why}", twin.device_id),
        };
        write_text(ctx.out, &line)?;
    }
    Ok(if failure.is_some() {
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

pub(crate) async fn devices_list(ctx: &mut Ctx<'_>, q: Option<&str>) -> Result<Outcome, CtlError> {
    let query = devices_query(q);
    let rows: Vec<Value> = ctx
        .client
        .query(&query)
        .await
        .map_err(query_err(q.unwrap_or(&query).to_string()))?;
    if ctx.json {
        write_json(ctx.out, &rows)?;
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        write_text(ctx.out, "no devices")?;
        return Ok(Outcome::Success);
    }
    // Projections and aggregates are not twins: print them as they came.
    if !rows.iter().all(|r| r.get("deviceId").is_some()) {
        let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
        write_text(ctx.out, &lines.join("\n"))?;
        return Ok(Outcome::Success);
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
    write_text(
        ctx.out,
        &table(
            ctx.style_out,
            &["DEVICE", "STATUS", "CONNECTION", "LAST ACTIVITY", "TAGS"],
            &table_rows,
        ),
    )?;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::error::ServiceError;

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

    #[test]
    fn method_errors_map_to_exit_codes() {
        let svc = |status, code: &str| {
            ClientError::Service(ServiceError {
                status,
                code: Some(code.into()),
                message: "m".into(),
            })
        };
        let e = method_err("d", svc(404, "DeviceNotFound"));
        assert_eq!(
            (e.to_string().as_str(), e.exit_code()),
            ("device 'd' not found on the hub", 2)
        );
        let e = method_err("d", svc(404, "DeviceNotOnline"));
        assert_eq!(
            (e.to_string().as_str(), e.exit_code()),
            ("device 'd': hub answered 404 DeviceNotOnline: m", 1)
        );
        assert_eq!(method_err("d", svc(504, "GatewayTimeout")).exit_code(), 1);
        assert_eq!(
            method_err("d", svc(401, "IotHubUnauthorizedAccess")).exit_code(),
            2
        );
    }
}
