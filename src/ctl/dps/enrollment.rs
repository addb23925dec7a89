//! `fieldctl dps enrollment …`: individual enrollments, one device each with a symmetric key
//! of its own (Microsoft Learn, "Individual Enrollment - Create Or Update",
//! https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/create-or-update).
//! For a door that must not share a group's key: it registers with the enrollment's key
//! (`key_file` in the gateway's map) instead of one derived from `[dps] group_key_file`.

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{cell, create, delete, initial_twin, reprovision_policy, seg, twin_cell};
use crate::ctl::args::parse_assignments;
use crate::ctl::cli::DpsEnrollmentCommand;
use crate::ctl::context::Ctx;
use crate::ctl::error::{CtlError, Outcome};
use crate::ctl::output::{table, Style};

/// Registration ids as the service accepts them: lowercase letters, digits, `-`, `.`, `_`
/// and `:`, up to 128 characters (Microsoft Learn, "Terms and concepts in DPS", registration
/// ID). Checked here so a typo is refused before anything is sent.
pub fn check_registration_id(id: &str) -> Result<(), CtlError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b':')
        });
    if ok {
        Ok(())
    } else {
        Err(CtlError::usage(format!(
            "'{id}' is not a valid registration id: up to 128 lowercase letters, digits, '-', '.', '_' or ':'"
        )))
    }
}

/// The individual enrollment `enrollment create` sends: symmetric-key attestation with no
/// keys, so the service generates them, and the initial twin the device starts with.
pub fn enrollment_body(
    registration_id: &str,
    device_id: Option<&str>,
    tags: &Map<String, Value>,
    desired: &Map<String, Value>,
    disabled: bool,
) -> Value {
    let mut e = json!({
        "registrationId": registration_id,
        "attestation": {"type": "symmetricKey"},
        "provisioningStatus": if disabled { "disabled" } else { "enabled" },
        "reprovisionPolicy": reprovision_policy(),
    });
    if let Some(d) = device_id {
        e["deviceId"] = json!(d);
    }
    if let Some(twin) = initial_twin(tags, desired) {
        e["initialTwin"] = twin;
    }
    e
}

/// An enrollment as listed: never its keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentSummary {
    pub registration_id: String,
    /// The device id the hub gets; the registration id when the enrollment names none.
    pub device_id: String,
    pub attestation: String,
    pub provisioning_status: String,
    pub initial_twin: Value,
}

pub fn summary(e: &Value) -> EnrollmentSummary {
    let registration_id = cell(e, "/registrationId");
    let device_id = Some(cell(e, "/deviceId"))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| registration_id.clone());
    EnrollmentSummary {
        registration_id,
        device_id,
        attestation: cell(e, "/attestation/type"),
        provisioning_status: cell(e, "/provisioningStatus"),
        initial_twin: e.get("initialTwin").cloned().unwrap_or(Value::Null),
    }
}

fn path(id: &str) -> String {
    format!("/enrollments/{}", seg(id))
}

pub(crate) async fn run(ctx: &mut Ctx<'_>, cmd: DpsEnrollmentCommand) -> Result<Outcome, CtlError> {
    match cmd {
        DpsEnrollmentCommand::Create {
            id,
            device_id,
            tag,
            desired,
            key_file,
            disabled,
        } => {
            check_registration_id(&id)?;
            let tags = parse_assignments("--tag", &tag)?;
            let desired = parse_assignments("--desired", &desired)?;
            let body = enrollment_body(&id, device_id.as_deref(), &tags, &desired, disabled);
            let e = create(
                ctx,
                &path(&id),
                &body,
                key_file.as_deref(),
                "enrollment",
                "copy it to the gateway and name it in the door's key_file",
            )
            .await?;
            print_enrollments(ctx, &[e])?;
            Ok(Outcome::Success)
        }
        DpsEnrollmentCommand::List => {
            let list = ctx.client.dps_query("/enrollments/query", "*").await?;
            print_enrollments(ctx, &list)?;
            Ok(Outcome::Success)
        }
        DpsEnrollmentCommand::Show { id } => {
            let e = ctx
                .client
                .dps_call(Method::GET, &path(&id), None, None)
                .await?;
            print_enrollments(ctx, &[e])?;
            Ok(Outcome::Success)
        }
        DpsEnrollmentCommand::Delete { id } => delete(ctx, &path(&id), &id, "enrollment").await,
    }
}

fn print_enrollments(ctx: &mut Ctx<'_>, enrollments: &[Value]) -> Result<(), CtlError> {
    let list: Vec<EnrollmentSummary> = enrollments.iter().map(summary).collect();
    ctx.emit(&list, |style| enrollments_table(style, &list))
}

fn enrollments_table(style: Style, list: &[EnrollmentSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.registration_id.clone(),
                e.device_id.clone(),
                e.attestation.clone(),
                e.provisioning_status.clone(),
                twin_cell(&e.initial_twin),
            ]
        })
        .collect();
    table(
        style,
        &[
            "REGISTRATION",
            "DEVICE",
            "ATTESTATION",
            "STATUS",
            "INITIAL TWIN",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_bodies_ask_the_service_for_keys_and_carry_the_twin() {
        let tags = parse_assignments("--tag", &["building=\"43\"".into()]).unwrap();
        let desired = parse_assignments("--desired", &["Floor=3".into()]).unwrap();
        let body = enrollment_body("door-7", Some("lobby-door"), &tags, &desired, true);
        assert_eq!(body["registrationId"], "door-7");
        assert_eq!(body["deviceId"], "lobby-door");
        assert_eq!(body["attestation"], json!({"type": "symmetricKey"}));
        assert_eq!(body["provisioningStatus"], "disabled");
        assert_eq!(
            body["initialTwin"],
            json!({"tags": {"building": "43"}, "properties": {"desired": {"Floor": 3}}})
        );
        let plain = enrollment_body("door-8", None, &Map::new(), &Map::new(), false);
        assert!(plain.get("deviceId").is_none() && plain.get("initialTwin").is_none());
    }

    #[test]
    fn summaries_never_hold_keys_and_default_the_device_id() {
        let s = summary(&json!({
            "registrationId": "door-7",
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "SECRET", "secondaryKey": "SECRET2"}},
            "provisioningStatus": "enabled",
        }));
        assert_eq!(s.device_id, "door-7");
        assert!(!serde_json::to_string(&s).unwrap().contains("SECRET"));
    }

    #[test]
    fn registration_ids() {
        for ok in ["door-7", "a.b_c:d", &"x".repeat(128)] {
            assert!(check_registration_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Door-7", "door 7", "door/7", &"x".repeat(129)] {
            assert!(check_registration_id(bad).is_err(), "{bad}");
        }
    }
}
