//! `fieldctl dps group …`: enrollment groups, whose devices derive their keys from the
//! group's (symmetric key) or present certificates a CA of the group signed (X.509).

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{cell, create, delete, initial_twin, reprovision_policy, seg, twin_cell};
use crate::ctl::args::parse_assignments;
use crate::ctl::cli::DpsGroupCommand;
use crate::ctl::context::Ctx;
use crate::ctl::error::{CtlError, Outcome};
use crate::ctl::output::{table, Style};

/// The enrollment group body `group create` sends: a symmetric-key group whose keys the
/// service generates, with the initial twin new devices start with.
pub fn group_body(
    id: &str,
    tags: &Map<String, Value>,
    desired: &Map<String, Value>,
    disabled: bool,
    certificate: Option<&str>,
) -> Value {
    let mut g = json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "symmetricKey"},
        "provisioningStatus": if disabled { "disabled" } else { "enabled" },
        "reprovisionPolicy": reprovision_policy(),
    });
    if let Some(twin) = initial_twin(tags, desired) {
        g["initialTwin"] = twin;
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
    GroupSummary {
        enrollment_group_id: cell(g, "/enrollmentGroupId"),
        attestation: cell(g, "/attestation/type"),
        provisioning_status: cell(g, "/provisioningStatus"),
        initial_twin: g.get("initialTwin").cloned().unwrap_or(Value::Null),
    }
}

fn path(id: &str) -> String {
    format!("/enrollmentGroups/{}", seg(id))
}

pub(crate) async fn run(ctx: &mut Ctx<'_>, cmd: DpsGroupCommand) -> Result<Outcome, CtlError> {
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
            let g = create(
                ctx,
                &path(&id),
                &body,
                key_file.as_deref(),
                "group",
                "copy it to the gateway and name it in [dps] group_key_file",
            )
            .await?;
            print_groups(ctx, &[g])?;
            Ok(Outcome::Success)
        }
        DpsGroupCommand::List => {
            let list = ctx.client.dps_query("/enrollmentGroups/query", "*").await?;
            print_groups(ctx, &list)?;
            Ok(Outcome::Success)
        }
        DpsGroupCommand::Show { id } => {
            let g = ctx
                .client
                .dps_call(Method::GET, &path(&id), None, None)
                .await?;
            print_groups(ctx, &[g])?;
            Ok(Outcome::Success)
        }
        DpsGroupCommand::Delete { id } => delete(ctx, &path(&id), &id, "enrollment group").await,
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
                twin_cell(&g.initial_twin),
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
