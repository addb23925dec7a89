//! `invoke`: one direct method on one device, its status and payload printed.

use serde_json::Value;

use super::args::{json_arg, secs_in_range};
use super::cli::InvokeArgs;
use super::context::Ctx;
use super::error::{method_err, CtlError, Outcome};
use crate::service::model::CloudToDeviceMethod;

pub(crate) async fn run(ctx: &mut Ctx<'_>, a: InvokeArgs) -> Result<Outcome, CtlError> {
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
    ctx.emit(&resp, |_| {
        let payload = serde_json::to_string_pretty(&resp.payload).unwrap_or_default();
        format!("{} {}: {}\n{payload}", a.device, a.method, resp.status)
    })?;
    Ok(if (200..300).contains(&resp.status) {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
