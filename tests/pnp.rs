//! Plug and Play models (issue 15): `fieldgate model --profile NAME` writes a DTDL v2
//! interface for a profile, and Microsoft's DTDL parser (npm `@azure/dtdl-parser`, pinned in
//! `tests/peers/node`) accepts the one for `config/demo.toml`. The model id on the wire (CONNECT
//! username, DPS payload) is checked in `dps.rs`.

use std::path::Path;

use serde_json::Value;

use crate::support::harness::bounded;

fn peers() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/node"))
}

#[tokio::test]
async fn the_demo_profile_is_a_valid_dtdl_v2_interface() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("door.json");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let run = bounded(
        "fieldgate model",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .args(["model", "--config", demo, "--profile", "door", "--out"])
            .arg(&out)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let model: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(model["@id"], "dtmi:fieldgate:door;1");
    let contents = model["contents"].as_array().unwrap();
    let find = |name: &str| {
        contents
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {model}"))
    };
    assert_eq!(find("lockDoor")["@type"], "Command");
    assert_eq!(
        find("unlockDoor")["request"]["schema"]["fields"][0]["name"],
        "seconds"
    );
    assert_eq!(find("Building")["writable"], true);
    assert_eq!(find("Building")["description"], "Range 1 to 999.");
    assert_eq!(find("mode")["schema"]["@type"], "Enum");
    assert_eq!(find("doorState")["@type"], "Telemetry");
    assert!(find("batteryVoltage")["@type"] == "Property");

    assert!(
        peers().join("node_modules/@azure/dtdl-parser").is_dir(),
        "the DTDL parser is not installed: run `npm ci` in tests/peers/node (.ci/run does)"
    );
    let check = bounded(
        "dtdl-parser",
        tokio::process::Command::new("node")
            .arg(peers().join("dtdl-validate.js"))
            .arg(&out)
            .current_dir(peers())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        check.status.success(),
        "@azure/dtdl-parser refused the model:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn an_unknown_profile_or_bad_model_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let run = bounded(
        "fieldgate model",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .args(["model", "--config", demo, "--profile", "nope"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("profiles: door"));

    let text = std::fs::read_to_string(demo)
        .unwrap()
        .replace("dtmi:fieldgate:door;1", "dtmi:fieldgate:door");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, &text).unwrap();
    let errs = fieldgate::config::parse(&text, &path.display().to_string()).unwrap_err();
    assert!(
        errs.errors
            .iter()
            .any(|e| e.key == "profile.door.model_id" && e.message.contains("DTMI")),
        "{errs}"
    );
}
