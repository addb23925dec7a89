//! `fieldctl dps …`: enrollment groups ([`group`]), individual enrollments ([`enrollment`])
//! and registration states of a Device Provisioning Service, through its service REST API
//! (Microsoft Learn, "Azure IoT Hub Device Provisioning Service REST API",
//! https://learn.microsoft.com/rest/api/iot-dps/service/: `PUT/GET/DELETE
//! /enrollmentGroups/{id}` and `/enrollments/{id}`, `POST /enrollmentGroups/query`,
//! `/enrollments/query`, `GET /registrations/{id}`, `POST /registrations/{groupId}/query`).
//! fieldhub serves the same API on its hub host. Every list follows the service's
//! continuation tokens to the last page.
//!
//! The connection string is the service's (`HostName=….azure-devices-provisioning.net;
//! SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…` on Azure), given like a
//! hub's. A site is onboarded from a laptop: create the enrollment here, copy its key file to
//! the gateway; no hub owner key goes to the site.
//!
//! Keys are never printed: the service generates them, and the only way out of fieldctl is
//! `--key-file` (mode 0600), which the operator names.

pub mod enrollment;
pub mod group;

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::cli::DpsCommand;
use super::context::Ctx;
use super::error::{CtlError, Outcome};
use super::output::{table, Style};
use super::provision::write_key_file;

/// The `initialTwin` of an enrollment (group or individual): what a new device's twin starts
/// with; `None` when neither tags nor desired properties are given.
pub fn initial_twin(tags: &Map<String, Value>, desired: &Map<String, Value>) -> Option<Value> {
    let mut twin = Map::new();
    if !tags.is_empty() {
        twin.insert("tags".into(), Value::Object(tags.clone()));
    }
    if !desired.is_empty() {
        twin.insert("properties".into(), json!({ "desired": desired }));
    }
    (!twin.is_empty()).then_some(Value::Object(twin))
}

/// The reprovisioning policy both kinds of enrollment are created with: a device that
/// registers again keeps its hub assignment up to date and takes its twin along.
pub fn reprovision_policy() -> Value {
    json!({"updateHubAssignment": true, "migrateDeviceData": true})
}

pub(crate) fn seg(s: &str) -> String {
    iothub_proto::sas::encode(s)
}

/// Makes sure `--key-file` can be written before anything is created, so a typo in the path
/// fails without leaving an enrollment whose key nobody saved.
fn check_key_file(path: &Path) -> Result<(), CtlError> {
    let err = |detail: String| CtlError::Write {
        path: path.display().to_string(),
        detail,
    };
    if path.is_dir() {
        return Err(err("is a directory".into()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // As write_key_file would; a path through a file fails here ("Not a directory").
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    // The same directory write_key_file renames its temporary file in.
    let probe = dir.join(format!(".fieldctl-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| err(e.to_string()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Saves the primary key the service returned in `enrollment` (0600), for the gateway.
fn save_primary_key(
    ctx: &mut Ctx<'_>,
    enrollment: &Value,
    path: &Path,
    what: &str,
    hint: &str,
) -> Result<(), CtlError> {
    let key = enrollment
        .pointer("/attestation/symmetricKey/primaryKey")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            CtlError::usage(format!(
                "the service did not return the {what}'s primary key; read it from the portal"
            ))
        })?;
    write_key_file(path, key, false)?;
    ctx.console.line(&format!(
        "wrote the {what} key to {} (mode 600): {hint}",
        path.display()
    ));
    Ok(())
}

/// Creates (PUT) the enrollment or group at `path`, the key file checked first and, when
/// given, the primary key the service generated saved to it; returns what the service answered.
pub(crate) async fn create(
    ctx: &mut Ctx<'_>,
    path: &str,
    body: &Value,
    key_file: Option<&Path>,
    what: &str,
    hint: &str,
) -> Result<Value, CtlError> {
    if let Some(p) = key_file {
        check_key_file(p)?;
    }
    let created = ctx
        .client
        .dps_call(Method::PUT, path, Some(body), None)
        .await?;
    if let Some(p) = key_file {
        save_primary_key(ctx, &created, p, what, hint)?;
    }
    Ok(created)
}

/// Deletes the enrollment or group at `path`, whatever its etag, and says so.
pub(crate) async fn delete(
    ctx: &mut Ctx<'_>,
    path: &str,
    id: &str,
    what: &str,
) -> Result<Outcome, CtlError> {
    ctx.client
        .dps_call(Method::DELETE, path, None, Some("*"))
        .await?;
    ctx.emit(&json!({"deleted": id}), |_| {
        format!("deleted {what} {id}\n")
    })?;
    Ok(Outcome::Success)
}

/// An initial twin for a table cell ("" when there is none).
pub(crate) fn twin_cell(twin: &Value) -> String {
    if twin.is_null() {
        String::new()
    } else {
        twin.to_string()
    }
}

/// A JSON string member for a table cell ("" when absent).
pub(crate) fn cell(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub(crate) async fn run(ctx: &mut Ctx<'_>, cmd: DpsCommand) -> Result<Outcome, CtlError> {
    match cmd {
        DpsCommand::Group(g) => group::run(ctx, g).await,
        DpsCommand::Enrollment(e) => enrollment::run(ctx, e).await,
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
            let list = ctx
                .client
                .dps_query(&format!("/registrations/{}/query", seg(&group)), "*")
                .await?;
            ctx.emit(&list, |style| registrations_table(style, &list))?;
            Ok(Outcome::Success)
        }
    }
}

fn registrations_table(style: Style, list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            [
                "/registrationId",
                "/status",
                "/assignedHub",
                "/deviceId",
                "/lastUpdatedDateTimeUtc",
                "/errorMessage",
            ]
            .iter()
            .map(|p| cell(r, p))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_twins_hold_only_what_was_given() {
        assert_eq!(initial_twin(&Map::new(), &Map::new()), None);
        let tags =
            super::super::args::parse_assignments("--tag", &["building=\"43\"".into()]).unwrap();
        assert_eq!(
            initial_twin(&tags, &Map::new()),
            Some(json!({"tags": {"building": "43"}}))
        );
    }

    #[test]
    fn key_files_are_checked_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_key_file(&dir.path().join("door.key")).is_ok());
        assert!(check_key_file(dir.path()).is_err());
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let e = check_key_file(&file.join("door.key")).unwrap_err();
        assert!(e.to_string().contains("plain/door.key"), "{e}");
        // The probe leaves nothing behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
