//! `fieldctl dps …`: enrollment groups and registration states of a Device Provisioning
//! Service, through its service REST API (Microsoft Learn, "Azure IoT Hub Device Provisioning
//! Service REST API": `PUT/GET/DELETE /enrollmentGroups/{id}`, `POST /enrollmentGroups/query`,
//! `GET /registrations/{id}`, `POST /registrations/{groupId}/query`). fieldhub serves the same
//! API on its hub host.
//!
//! The connection string is the service's (`HostName=….azure-devices-provisioning.net;
//! SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…` on Azure), given like a
//! hub's. A site is onboarded from a laptop: create the group here, copy its key file to the
//! gateway; no hub owner key goes to the site.

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::args::parse_assignments;
use super::cli::{DpsCommand, DpsGroupCommand};
use super::context::Ctx;
use super::error::{CtlError, Outcome};
use super::output::{table, Style};
use super::provision::write_key_file;

/// The enrollment group body `group create` sends: a symmetric-key group whose keys the
/// service generates, with the initial twin new devices start with.
pub fn group_body(
    id: &str,
    tags: &Map<String, Value>,
    desired: &Map<String, Value>,
    disabled: bool,
    certificate: Option<&str>,
) -> Value {
    let mut twin = Map::new();
    if !tags.is_empty() {
        twin.insert("tags".into(), Value::Object(tags.clone()));
    }
    if !desired.is_empty() {
        twin.insert("properties".into(), json!({ "desired": desired }));
    }
    let mut g = json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "symmetricKey"},
        "provisioningStatus": if disabled { "disabled" } else { "enabled" },
        "reprovisionPolicy": {"updateHubAssignment": true, "migrateDeviceData": true},
    });
    if !twin.is_empty() {
        g["initialTwin"] = Value::Object(twin);
    }
    if let Some(pem) = certificate {
        g["attestation"] = json!({"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": pem}}}});
    }
    g
}

/// A group as listed: never its keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub enrollment_group_id: String,
    pub attestation: String,
    pub provisioning_status: String,
    pub initial_twin: Value,
}

pub fn summary(g: &Value) -> GroupSummary {
    let s = |p: &str| {
        g.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    GroupSummary {
        enrollment_group_id: s("/enrollmentGroupId"),
        attestation: s("/attestation/type"),
        provisioning_status: s("/provisioningStatus"),
        initial_twin: g.get("initialTwin").cloned().unwrap_or(Value::Null),
    }
}

fn seg(s: &str) -> String {
    iothub_proto::sas::encode(s)
}

pub(crate) async fn run(ctx: &mut Ctx<'_>, cmd: DpsCommand) -> Result<Outcome, CtlError> {
    match cmd {
        DpsCommand::Group(g) => group(ctx, g).await,
        DpsCommand::Registration { id } => {
            let r = ctx
                .client
                .dps_call(
                    Method::GET,
                    &format!("/registrations/{}", seg(&id)),
                    None,
                    None,
                )
                .await?;
            ctx.emit(&r, |style| {
                registrations_table(style, std::slice::from_ref(&r))
            })?;
            Ok(Outcome::Success)
        }
        DpsCommand::Registrations { group } => {
            let r = ctx
                .client
                .dps_call(
                    Method::POST,
                    &format!("/registrations/{}/query", seg(&group)),
                    Some(&json!({"query": "*"})),
                    None,
                )
                .await?;
            let list = r.as_array().cloned().unwrap_or_default();
            ctx.emit(&list, |style| registrations_table(style, &list))?;
            Ok(Outcome::Success)
        }
    }
}

fn registrations_table(style: Style, list: &[Value]) -> String {
    let s = |v: &Value, k: &str| {
        v.get(k).map_or(String::new(), |x| match x {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                s(r, "registrationId"),
                s(r, "status"),
                s(r, "assignedHub"),
                s(r, "deviceId"),
                s(r, "lastUpdatedDateTimeUtc"),
                s(r, "errorMessage"),
            ]
        })
        .collect();
    table(
        style,
        &[
            "REGISTRATION",
            "STATUS",
            "HUB",
            "DEVICE",
            "UPDATED",
            "ERROR",
        ],
        &rows,
    )
}

async fn group(ctx: &mut Ctx<'_>, cmd: DpsGroupCommand) -> Result<Outcome, CtlError> {
    match cmd {
        DpsGroupCommand::Create {
            id,
            tag,
            desired,
            key_file,
            certificate,
            disabled,
        } => {
            let tags = parse_assignments("--tag", &tag)?;
            let desired = parse_assignments("--desired", &desired)?;
            let pem = certificate
                .as_ref()
                .map(|p| {
                    std::fs::read_to_string(p).map_err(|e| CtlError::File {
                        what: "certificate",
                        path: p.display().to_string(),
                        detail: e.to_string(),
                    })
                })
                .transpose()?;
            if pem
                .as_ref()
                .is_some_and(|p| !p.contains("-----BEGIN CERTIFICATE-----"))
            {
                return Err(CtlError::usage(
                    "--certificate must be a PEM certificate file",
                ));
            }
            let body = group_body(&id, &tags, &desired, disabled, pem.as_deref());
            let g = ctx
                .client
                .dps_call(
                    Method::PUT,
                    &format!("/enrollmentGroups/{}", seg(&id)),
                    Some(&body),
                    None,
                )
                .await?;
            if let Some(path) = &key_file {
                let key = g
                    .pointer("/attestation/symmetricKey/primaryKey")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        CtlError::usage(
                            "the service did not return the group's primary key; read it from the portal",
                        )
                    })?;
                write_key_file(path, key, false)?;
                ctx.console.line(&format!(
                    "wrote the group key to {} (mode 600): copy it to the gateway and name it in [dps] group_key_file",
                    path.display()
                ));
            }
            print_groups(ctx, &[g])?;
            Ok(Outcome::Success)
        }
        DpsGroupCommand::List => {
            let r = ctx
                .client
                .dps_call(
                    Method::POST,
                    "/enrollmentGroups/query",
                    Some(&json!({"query": "*"})),
                    None,
                )
                .await?;
            print_groups(ctx, r.as_array().map(Vec::as_slice).unwrap_or(&[]))?;
            Ok(Outcome::Success)
        }
        DpsGroupCommand::Show { id } => {
            let g = ctx
                .client
                .dps_call(
                    Method::GET,
                    &format!("/enrollmentGroups/{}", seg(&id)),
                    None,
                    None,
                )
                .await?;
            print_groups(ctx, &[g])?;
            Ok(Outcome::Success)
        }
        DpsGroupCommand::Delete { id } => {
            ctx.client
                .dps_call(
                    Method::DELETE,
                    &format!("/enrollmentGroups/{}", seg(&id)),
                    None,
                    Some("*"),
                )
                .await?;
            ctx.emit(&json!({"deleted": id}), |_| {
                format!("deleted enrollment group {id}\n")
            })?;
            Ok(Outcome::Success)
        }
    }
}

fn print_groups(ctx: &mut Ctx<'_>, groups: &[Value]) -> Result<(), CtlError> {
    let list: Vec<GroupSummary> = groups.iter().map(summary).collect();
    ctx.emit(&list, |style| groups_table(style, &list))
}

fn groups_table(style: Style, list: &[GroupSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|g| {
            vec![
                g.enrollment_group_id.clone(),
                g.attestation.clone(),
                g.provisioning_status.clone(),
                if g.initial_twin.is_null() {
                    String::new()
                } else {
                    g.initial_twin.to_string()
                },
            ]
        })
        .collect();
    table(
        style,
        &["GROUP", "ATTESTATION", "STATUS", "INITIAL TWIN"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_bodies_carry_the_initial_twin_and_no_keys() {
        let tags = parse_assignments("--tag", &["building=\"43\"".into()]).unwrap();
        let body = group_body("site-43", &tags, &Map::new(), false, None);
        assert_eq!(body["initialTwin"], json!({"tags": {"building": "43"}}));
        assert_eq!(body["attestation"], json!({"type": "symmetricKey"}));
        assert_eq!(body["provisioningStatus"], "enabled");
        let x = group_body("g", &Map::new(), &Map::new(), true, Some("PEM"));
        assert_eq!(x["attestation"]["type"], "x509");
        assert_eq!(x["provisioningStatus"], "disabled");
        let s = summary(
            &json!({"enrollmentGroupId": "g", "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "SECRET"}}}),
        );
        assert!(!serde_json::to_string(&s).unwrap().contains("SECRET"));
    }
}
