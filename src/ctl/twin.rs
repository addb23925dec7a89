//! `twin show` and `twin set`: one device's twin, and a patch of its tags or desired
//! properties, optionally followed until the door acknowledges every property set.

use std::time::Duration;

use super::args::parse_assignments;
use super::cli::TwinCommand;
use super::context::Ctx;
use super::error::{device_err, CtlError, Outcome};
use super::output::twin_summary;
use crate::service::acks::{self, DoorAcks};
use crate::service::model::TwinPatch;

pub(crate) async fn run(ctx: &mut Ctx<'_>, cmd: TwinCommand) -> Result<Outcome, CtlError> {
    let mut wait_for: Option<(Vec<String>, Duration)> = None;
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
        ctx.emit(&twin, |style| twin_summary(style, &twin))?;
        return Ok(Outcome::Success);
    };
    let ids = [twin.device_id.clone()];
    let acks = acks::follow(
        &ctx.client,
        &ids,
        &props,
        ack_timeout,
        Duration::from_millis(500),
    )
    .await
    .map_err(device_err(&twin.device_id))?;
    let failure = acks.first().and_then(DoorAcks::failure);
    ctx.emit(
        &serde_json::json!({"twin": twin, "acknowledgements": acks}),
        |_| match &failure {
            None => format!(
                "{}: {} acknowledged by the door",
                twin.device_id,
                props.join(", ")
            ),
            Some(why) => format!("{}: not taken: {why}", twin.device_id),
        },
    )?;
    Ok(if failure.is_some() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
