//! The device map: the shipped examples validate, and every kind of mistake is reported with
//! its file, line, column and key, all at once.

use std::path::Path;
use std::time::Duration;

use fieldgate::bus::{Parity, Transport};
use fieldgate::codec::{DataType, WordOrder};
use fieldgate::config::{
    self, ConfigError, KeySource, MethodAction, ProvisionKey, ReadTable, Secret, ValueSource,
    WriteTable,
};
use serde_json::json;

const KEY: &str = "c2VjcmV0LWtleS1ub3QtaW4tbG9ncw=="; // "secret-key-not-in-logs"

/// A small valid map; tests add to it or replace a line.
fn base() -> String {
    format!(
        r#"[hub]
hostname = "hub.example"

[[bus]]
name = "a"
tcp = "127.0.0.1:502"

[profile.p.methods.lockDoor]
action = "write_coil"
address = 0
value = true

[profile.p.desired.Building]
address = 0

[profile.p.reported.doorState]
source = "input"
address = 0
enum = {{ 0 = "closed", 1 = "open" }}

[[door]]
device_id = "d1"
bus = "a"
unit = 1
profile = "p"
key = "{KEY}"
"#
    )
}

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match config::parse(text, "site.toml") {
        Ok(_) => panic!("expected errors, the config was accepted:\n{text}"),
        Err(e) => e.errors,
    }
}

/// 1-based line of the first line containing `needle`, and the column where it starts.
fn place(text: &str, needle: &str) -> (usize, usize) {
    for (i, l) in text.lines().enumerate() {
        if let Some(c) = l.find(needle) {
            return (i + 1, c + 1);
        }
    }
    panic!("{needle:?} not in text");
}

/// Exactly one error, at `needle`'s line, with this key and a message containing `msg`.
fn assert_one(text: &str, needle: &str, key: &str, msg: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_at(&errs[0], text, needle, key, msg);
}

fn assert_at(e: &ConfigError, text: &str, needle: &str, key: &str, msg: &str) {
    let (line, _) = place(text, needle);
    assert_eq!(e.file, "site.toml");
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
    assert!(e.message.contains(msg), "{e}");
}

#[test]
fn base_is_valid() {
    let c = config::parse(&base(), "site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.doors.len(), 1);
    assert_eq!(c.doors[0].poll_interval, config::DEFAULT_POLL_INTERVAL);
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9898");
    assert_eq!(c.hub.token_lifetime, Duration::from_secs(3600));
    assert_eq!(c.hub.connects_per_second, 10);
}

#[test]
fn demo_config_validates() {
    let c = config::load(&examples().join("demo.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.doors.len(), 4);
    assert!(matches!(
        c.bus("sim-tcp").unwrap().transport,
        Transport::Tcp { .. }
    ));
    assert!(matches!(
        c.bus("sim-rtu").unwrap().transport,
        Transport::Rtu {
            baud: 9600,
            parity: Parity::Even,
            data_bits: 8,
            stop_bits: 1,
            ..
        }
    ));
    let d = c.door("door-01").unwrap();
    assert_eq!(d.key_source, KeySource::Group);
    assert_eq!(d.tags["building"], json!("43"));
    assert_eq!(
        d.methods["lockDoor"].action,
        MethodAction::WriteCoil {
            address: 0,
            value: ValueSource::Fixed(json!(true))
        }
    );
    match &d.methods["unlockDoor"].action {
        MethodAction::PulseCoil {
            address: 0,
            value: false,
            seconds_from: Some(f),
            default,
            max,
        } => {
            assert_eq!(f, "seconds");
            assert_eq!(
                (*default, *max),
                (Duration::from_secs(5), Duration::from_secs(60))
            );
        }
        other => panic!("{other:?}"),
    }
    // The register map doorsim implements.
    assert_eq!(
        (d.desired["Building"].table, d.desired["Building"].address),
        (WriteTable::Holding, 0)
    );
    assert_eq!(d.desired["Floor"].spec.data_type, DataType::I16);
    let dur = &d.desired["openDurationSec"];
    assert_eq!(
        (dur.address, dur.spec.data_type, dur.spec.order),
        (2, DataType::U32, WordOrder::ABCD)
    );
    assert_eq!(dur.spec.encode(&json!(5)).unwrap(), [0, 5000]);
    assert_eq!(
        d.desired["mode"].spec.encode(&json!("lockdown")).unwrap(),
        [2]
    );
    let state = &d.reported["doorState"];
    assert_eq!((state.table, state.address), (ReadTable::Input, 0));
    assert_eq!(state.spec.decode(&[2]).unwrap(), json!("forced"));
    assert!(state.telemetry);
    assert_eq!(d.reported["locked"].table, ReadTable::Coil);
    assert_eq!(d.reported["doorOpen"].table, ReadTable::DiscreteInput);
    let batt = &d.reported["batteryVoltage"];
    assert_eq!(batt.spec.decode(&[1234]).unwrap(), json!(12.34));
    assert_eq!(batt.deadband, 0.05);
    assert_eq!(d.reported["eventCount"].spec.register_count(), 2);
    // door-04's override
    assert_eq!(
        c.door("door-04").unwrap().poll_interval,
        Duration::from_secs(2)
    );
    assert_eq!(d.poll_interval, Duration::from_secs(1));
    // keys derive as DPS does, and differ per door
    assert_ne!(c.doors[0].key, c.doors[1].key);
}

/// Copies rs485-site.toml into a temp dir beside generated key files, one of them a
/// connection string, as `fieldctl devices provision` leaves them.
fn rs485_with_keys() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::copy(examples().join("rs485-site.toml"), &path).unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let prov = config::load_for_provisioning(&path).unwrap_or_else(|e| panic!("{e}"));
    for (i, d) in prov.doors.iter().enumerate() {
        let ProvisionKey::MissingFile { path } = &d.key else {
            panic!("{d:?}")
        };
        let key = Secret::new(KEY);
        let text = if i == 0 {
            format!(
                "HostName=contoso-doors.azure-devices.net;DeviceId={};SharedAccessKey={KEY}",
                d.device_id
            )
        } else {
            config::key_file_contents(&key)
        };
        write_key(path, &text);
    }
    (dir, path)
}

/// Writes a key file as `fieldctl devices provision` does: mode 600 (looser modes are refused).
fn write_key(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn rs485_site_config_validates() {
    let (_dir, path) = rs485_with_keys();
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.doors.len(), 8);
    let bus = &c.buses[0];
    assert_eq!(
        bus.transport,
        Transport::Rtu {
            path: "/dev/ttyUSB0".into(),
            baud: 19200,
            parity: Parity::Even,
            data_bits: 8,
            stop_bits: 1
        }
    );
    assert_eq!(
        (bus.timeout, bus.inter_request_delay),
        (Duration::from_millis(300), Duration::from_millis(10))
    );
    let profiles: std::collections::BTreeSet<_> =
        c.doors.iter().map(|d| d.profile.as_str()).collect();
    assert_eq!(profiles.len(), 2);
    for d in &c.doors {
        assert_eq!(d.key.expose(), KEY, "{}", d.device_id);
        assert!(matches!(d.key_source, KeySource::File(_)));
        assert!(d.tags.contains_key("building") && d.tags.contains_key("floor"));
    }
    // overrides merged onto the profile for one door only
    let server = c.door("b43-f3-server").unwrap();
    assert_eq!(server.poll_interval, Duration::from_secs(1));
    assert_eq!(
        server.methods["lockDoor"].action.target(),
        (WriteTable::Coil, 2)
    );
    match &server.methods["unlockDoor"].action {
        MethodAction::PulseCoil {
            address: 2,
            max,
            default,
            ..
        } => {
            assert_eq!(
                (*default, *max),
                (Duration::from_secs(5), Duration::from_secs(10))
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.reported["locked"].address, 2);
    assert_eq!(
        c.door("b43-f1-main").unwrap().methods["lockDoor"]
            .action
            .target(),
        (WriteTable::Coil, 0)
    );
    // Doors of one profile without overrides share one copy of its maps; the overridden
    // door has its own.
    let same_profile: Vec<_> = c
        .doors
        .iter()
        .filter(|d| d.profile == server.profile && d.device_id != server.device_id)
        .collect();
    assert!(
        same_profile.len() >= 2,
        "the example has doors to share with"
    );
    for d in &same_profile[1..] {
        assert!(std::sync::Arc::ptr_eq(&d.methods, &same_profile[0].methods));
        assert!(std::sync::Arc::ptr_eq(
            &d.reported,
            &same_profile[0].reported
        ));
    }
    assert!(!std::sync::Arc::ptr_eq(
        &server.methods,
        &same_profile[0].methods
    ));
    let gate = c.door("gate-north").unwrap();
    assert_eq!(
        gate.reported["tamper"].spec.decode(&[0b1000]).unwrap(),
        json!(true)
    );
    assert_eq!(gate.desired["holdOpenSec"].spec.order, WordOrder::CDAB);
}

#[test]
fn rs485_site_without_key_files_is_ready_for_provisioning() {
    let p = config::load_for_provisioning(&examples().join("rs485-site.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.hub_hostname, "contoso-doors.azure-devices.net");
    assert_eq!(p.doors.len(), 8);
    assert!(p
        .doors
        .iter()
        .all(|d| matches!(d.key, ProvisionKey::MissingFile { .. })));
    assert_eq!(p.doors[0].tags["building"], json!("43"));
    // ...while running needs them, and says how to make them.
    let e = config::load(&examples().join("rs485-site.toml")).unwrap_err();
    assert_eq!(e.len(), 8, "{e}");
    assert!(
        e.errors[0].message.contains("fieldctl devices provision"),
        "{e}"
    );
    assert_eq!(e.errors[0].key, "door[0].key_file");
}

#[test]
fn unknown_key_is_rejected_with_its_name() {
    let text = base().replace(
        "tcp = \"127.0.0.1:502\"",
        "tcp = \"127.0.0.1:502\"\nspeed = 9600",
    );
    assert_one(&text, "speed", "bus[0].speed", "unknown key `speed`");
    let (_, col) = place(&text, "speed");
    assert_eq!(errors(&text)[0].column, col);
}

#[test]
fn unknown_key_in_a_point_and_unknown_section() {
    let text = base().replace(
        "address = 0\n\n[profile.p.reported",
        "address = 0\nscael = 2\n\n[profile.p.reported",
    ) + "\n[hubb]\nx = 1\n";
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_at(
        &errs[0],
        &text,
        "scael",
        "profile.p.desired.Building.scael",
        "unknown key `scael`",
    );
    assert_at(&errs[1], &text, "[hubb]", "hubb", "unknown section `hubb`");
}

#[test]
fn wrong_type_names_line_and_key() {
    let text = base().replace("unit = 1", "unit = \"one\"");
    assert_one(&text, "unit =", "door[0].unit", "invalid type");
}

#[test]
fn bad_duration_names_line_and_key() {
    let text = base().replace(
        "tcp = \"127.0.0.1:502\"",
        "tcp = \"127.0.0.1:502\"\ntimeout = \"5 sekunden\"",
    );
    assert_one(&text, "timeout", "bus[0].timeout", "");
}

#[test]
fn unit_out_of_range() {
    let text = base().replace("unit = 1", "unit = 248");
    assert_one(&text, "unit =", "door[0].unit", "1 to 247");
}

#[test]
fn duplicate_device_ids_and_units() {
    let door2 = format!(
        "\n[[door]]\ndevice_id = \"d1\"\nbus = \"a\"\nunit = 1\nprofile = \"p\"\nkey = \"{KEY}\"\n"
    );
    let text = base() + &door2;
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].key, "door[1].device_id");
    assert!(
        errs[0].message.contains("already used by door[0]"),
        "{}",
        errs[0]
    );
    assert_eq!(errs[1].key, "door[1].unit");
    assert!(
        errs[1]
            .message
            .contains("unit 1 on bus `a` is already door `d1`"),
        "{}",
        errs[1]
    );
    assert_eq!(errs[1].line, text.lines().count() - 2);
}

#[test]
fn references_to_missing_bus_and_profile() {
    let text = base()
        .replace("bus = \"a\"", "bus = \"b\"")
        .replace("profile = \"p\"", "profile = \"q\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_at(
        &errs[0],
        &text,
        "bus = \"b\"",
        "door[0].bus",
        "no [[bus]] is named `b` (buses: a)",
    );
    assert_at(
        &errs[1],
        &text,
        "profile = \"q\"",
        "door[0].profile",
        "no [profile.q] is defined (profiles: p)",
    );
}

#[test]
fn key_must_be_base64_and_exactly_one_source() {
    let text = base().replace(KEY, "not base64!");
    assert_one(&text, "key =", "door[0].key", "not valid base64");
    let text = base().replace(
        "profile = \"p\"\n",
        "profile = \"p\"\nkey_file = \"d1.key\"\n",
    );
    assert_one(
        &text,
        "key_file",
        "door[0].key_file",
        "exactly one of key, key_file or group_key",
    );
    let text = base().replace(&format!("key = \"{KEY}\""), "group_key = true");
    assert_one(
        &text,
        "group_key",
        "door[0].group_key",
        "needs `group_key` or `group_key_file` in [hub]",
    );
}

#[test]
fn key_file_relative_to_config_dir_and_connection_string_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_key(
        &dir.path().join("d1.key"),
        &format!("HostName=h;DeviceId=other;SharedAccessKey={KEY}\n"),
    );
    let text = base().replace(&format!("key = \"{KEY}\""), "key_file = \"d1.key\"");
    let origin = dir.path().join("site.toml").display().to_string();
    let e = config::parse(&text, &origin).unwrap_err();
    assert_eq!(e.len(), 1, "{e}");
    assert!(
        e.errors[0].message.contains("for device `other`, not `d1`"),
        "{e}"
    );
    write_key(&dir.path().join("d1.key"), &format!("{KEY}\n"));
    let c = config::parse(&text, &origin).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.doors[0].key.expose(), KEY);
    assert_eq!(
        c.doors[0].key_source,
        KeySource::File(dir.path().join("d1.key"))
    );
}

#[test]
fn transport_must_be_exactly_one() {
    let text = base().replace(
        "tcp = \"127.0.0.1:502\"",
        "tcp = \"127.0.0.1:502\"\nserial = \"/dev/ttyUSB0\"",
    );
    assert_one(&text, "serial", "bus[0].serial", "more than one transport");
    let text = base().replace("tcp = \"127.0.0.1:502\"", "tcp = \"127.0.0.1\"");
    assert_one(&text, "tcp =", "bus[0].tcp", "needs a port");
    let text = base().replace(
        "tcp = \"127.0.0.1:502\"",
        "tcp = \"127.0.0.1:502\"\nbaud = 9600",
    );
    assert_one(&text, "baud", "bus[0].baud", "only to a serial bus");
}

#[test]
fn overlapping_desired_points_are_refused() {
    let text = base().replace(
        "[profile.p.desired.Building]\naddress = 0\n",
        "[profile.p.desired.Building]\naddress = 0\ntype = \"u32\"\n\n[profile.p.desired.Floor]\naddress = 1\n",
    );
    assert_one(&text, "address = 1", "profile.p.desired.Floor.address", "desired property `Floor` (holding register 1) overlaps desired property `Building` (holding registers 0-1)");
}

#[test]
fn methods_sharing_a_coil_are_fine_but_desired_coil_is_not() {
    let text = base()
        + "\n[profile.p.methods.unlockDoor]\naction = \"pulse_coil\"\naddress = 0\nvalue = false\n";
    config::parse(&text, "site.toml").unwrap_or_else(|e| panic!("{e}"));
    let text = base().replace(
        "[profile.p.reported",
        "[profile.p.desired.locked]\ntarget = \"coil\"\naddress = 0 # here\n\n[profile.p.reported",
    );
    assert_one(
        &text,
        "# here",
        "profile.p.desired.locked.address",
        "overlaps method `lockDoor` (coil 0)",
    );
}

#[test]
fn names_must_be_valid_for_iot_hub() {
    let text = base().replace(
        "[profile.p.methods.lockDoor]",
        "[profile.p.methods.\"lock door\"]",
    );
    assert_one(
        &text,
        "lock door",
        "profile.p.methods.lock door",
        "method name `lock door` contains ' '",
    );
    let text = base().replace(
        "[profile.p.reported.doorState]",
        "[profile.p.reported.\"door$state\"]",
    );
    assert_one(
        &text,
        "door$state",
        "profile.p.reported.door$state",
        "twin names cannot contain",
    );
    let text = base().replace("device_id = \"d1\"", "device_id = \"d1/x\"");
    assert_one(&text, "device_id", "door[0].device_id", "contains '/'");
}

#[test]
fn ranges_must_fit_the_data_type() {
    let text = base().replace(
        "[profile.p.desired.Building]\naddress = 0\n",
        "[profile.p.desired.Building]\naddress = 0\nmax = 70000\n",
    );
    assert_one(
        &text,
        "max = 70000",
        "profile.p.desired.Building.max",
        "outside what the register can hold (u16",
    );
    let text = base().replace(
        "enum = { 0 = \"closed\", 1 = \"open\" }",
        "type = \"i16\"\nenum = { 0 = \"closed\", 40000 = \"open\" }",
    );
    assert_one(&text, "enum", "profile.p.reported.doorState.enum", "40000");
    let text = base().replace("address = 0\nvalue = true", "address = 0\nvalue = 3");
    assert_one(
        &text,
        "value = 3",
        "profile.p.methods.lockDoor.value",
        "expected true or false",
    );
    let text = base().replace(
        "address = 0\n\n[profile.p.reported",
        "address = 65536\n\n[profile.p.reported",
    );
    assert_one(
        &text,
        "65536",
        "profile.p.desired.Building.address",
        "outside Modbus addresses",
    );
}

#[test]
fn poll_interval_must_be_positive() {
    let text = base().replace(
        "[profile.p.methods.lockDoor]",
        "[profile.p]\npoll_interval = \"0s\"\n\n[profile.p.methods.lockDoor]",
    );
    assert_one(
        &text,
        "poll_interval",
        "profile.p.poll_interval",
        "longer than 0",
    );
}

#[test]
fn overrides_must_name_existing_entries_and_point_at_themselves() {
    let text = base() + "[door.overrides.methods.lockDor]\naddress = 5\n";
    assert_one(
        &text,
        "lockDor",
        "door[0].overrides.methods.lockDor",
        "profile `p` has no method entry `lockDor`",
    );
    let text = base() + "[door.overrides.methods.lockDoor]\nadress = 5\n";
    assert_one(
        &text,
        "adress",
        "door[0].overrides.methods.lockDoor.adress",
        "unknown key `adress`",
    );
    let text = base() + "[door.overrides]\nkey = \"x\"\n";
    assert_one(
        &text,
        "key = \"x\"",
        "door[0].overrides.key",
        "`key` cannot be overridden",
    );
    let text = base() + "[door.overrides.methods.lockDoor]\naddress = -1\n";
    assert_one(
        &text,
        "address = -1",
        "door[0].overrides.methods.lockDoor.address",
        "outside Modbus addresses",
    );
    let text = base() + "[door.overrides.methods.lockDoor]\naddress = 5\n";
    let c = config::parse(&text, "site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.doors[0].methods["lockDoor"].action.target(),
        (WriteTable::Coil, 5)
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let text = base().replace("unit = 1", "unit = = 1");
    let errs = errors(&text);
    assert!(!errs.is_empty());
    assert_eq!(errs[0].line, place(&text, "unit =").0, "{errs:#?}");
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let text = base()
        .replace(
            "hostname = \"hub.example\"",
            "hostname = \"hub.example\"\nconnects_per_second = -1",
        )
        .replace(
            "tcp = \"127.0.0.1:502\"",
            "tcp = \"127.0.0.1:502\"\nretries = \"many\"\nqueue_capacity = 0",
        )
        .replace(
            "address = 0\nvalue = true",
            "address = 0\nvalue = true\nscale = 2",
        )
        .replace("unit = 1", "unit = 0")
        .replace(KEY, "***not-base64***");
    let errs = config::parse(&text, "site.toml").unwrap_err();
    let shown = errs.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 6, "{shown}");
    let expect = [
        ("connects_per_second", "hub.connects_per_second"),
        ("retries", "bus[0].retries"),
        ("queue_capacity", "bus[0].queue_capacity"),
        ("scale", "profile.p.methods.lockDoor.scale"),
        ("unit = 0", "door[0].unit"),
        ("key =", "door[0].key"),
    ];
    for (line, (needle, key)) in lines.iter().zip(expect) {
        let (l, _) = place(&text, needle);
        assert!(
            line.starts_with(&format!("site.toml:{l}:")),
            "{line}\n{shown}"
        );
        assert!(line.contains(&format!(": {key}: ")), "{line}\n{shown}");
    }
    // columns point at the offending value
    let (l, _) = place(&text, "unit = 0");
    assert!(
        shown.contains(&format!(
            "site.toml:{l}:8: door[0].unit: unit 0 is not a Modbus unit id (1 to 247)"
        )),
        "{shown}"
    );
}

#[test]
fn keys_never_show_in_debug_or_errors() {
    let c = config::parse(&base(), "site.toml").unwrap();
    assert!(!format!("{c:?}").contains(KEY));
    assert_eq!(format!("{}", c.doors[0].key), "***");
    let text = base().replace("unit = 1", "unit = 999");
    let e = config::parse(&text, "site.toml").unwrap_err();
    assert!(!e.to_string().contains(KEY));
    // a mistyped key is not echoed either, not even the offending character
    let text = base().replace(KEY, "c2VjcmV0LWtleS1ub3Qt%W4tbG9ncw==");
    let e = config::parse(&text, "site.toml").unwrap_err();
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    assert!(!e.to_string().contains('%'), "{e}");
    assert!(
        e.to_string()
            .contains("character 21 is not a base64 character"),
        "{e}"
    );
}

#[test]
fn group_key_derivation_matches_dps() {
    // DPS: base64(HMAC-SHA256(base64decode(groupKey), registrationId)); expected value
    // computed with Python's hmac module.
    let k = config::derive_device_key(&Secret::new(KEY), "d1").unwrap();
    assert_eq!(k.expose(), "8kX60ki/sBapva5ymjcwaJcUymXWmNWY0gI3L9w9gJA=");
}
#[test]
fn missing_keys_and_sections_are_named() {
    let text = base().replace("unit = 1\n", "");
    assert_one(&text, "[[door]]", "door[0]", "missing key `unit`");
    let text = base().replace("[hub]\nhostname = \"hub.example\"\n", "");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        errs[0].to_string(),
        "site.toml: missing section [hub] (at least `hostname = \"…\"`)"
    );
}

#[test]
fn a_bad_value_removed_does_not_hide_the_next_one() {
    // two problems inside one table: both reported, no follow-on "missing key"
    let text = base().replace("unit = 1", "unit = 1\ncolour = \"red\"\nshape = 3");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        (errs[0].key.as_str(), errs[1].key.as_str()),
        ("door[0].colour", "door[0].shape")
    );
    // a broken required value is reported once, not also as missing
    let text = base().replace(
        "address = 0\nvalue = true",
        "address = \"zero\"\nvalue = true",
    );
    assert_one(
        &text,
        "\"zero\"",
        "profile.p.methods.lockDoor.address",
        "invalid type",
    );
}

#[test]
fn unreadable_file_is_one_error_without_a_place() {
    let e = config::load(Path::new("/nonexistent/fieldgate.toml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/fieldgate.toml: cannot read:"),
        "{e}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Damaged files never panic the loader, and every error has a place in the file.
    #[test]
    fn damaged_demo_config_never_panics(start in 0usize..10_000, len in 0usize..40, insert in "[ =\\[\\]\"a-z0-9.{}\n]{0,6}") {
        let demo = std::fs::read_to_string(examples().join("demo.toml")).unwrap();
        let start = start % demo.len();
        let end = (start + len).min(demo.len());
        if demo.is_char_boundary(start) && demo.is_char_boundary(end) {
            let text = format!("{}{}{}", &demo[..start], insert, &demo[end..]);
            if let Err(e) = config::parse(&text, "demo.toml") {
                for err in &e.errors {
                    proptest::prop_assert!(err.line >= 1 || err.message.starts_with("missing section"), "{err}");
                    proptest::prop_assert!(!err.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn method_timeouts_default_below_iot_hubs_smallest_and_must_leave_room_for_a_write() {
    let c = config::parse(&base(), "site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.doors[0].methods["lockDoor"].timeout,
        config::DEFAULT_METHOD_TIMEOUT
    );
    assert!(config::DEFAULT_METHOD_TIMEOUT < Duration::from_secs(5));
    let text = base().replace("value = true\n", "value = true\ntimeout = \"20s\"\n");
    let c = config::parse(&text, "site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.doors[0].methods["lockDoor"].timeout,
        Duration::from_secs(20)
    );
    // A bus whose transaction timeout alone exceeds the method's: no write could ever start.
    let text = base().replace(
        "tcp = \"127.0.0.1:502\"\n",
        "tcp = \"127.0.0.1:502\"\ntimeout = \"5s\"\n",
    );
    assert_one(
        &text,
        "bus = \"a\"",
        "door[0].bus",
        "could never be written",
    );
    let text = base().replace("value = true\n", "value = true\ntimeout = \"0s\"\n");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.message.contains("longer than 0")),
        "{errs:#?}"
    );
}

#[test]
fn hub_transport_and_proxy_are_checked_and_the_proxy_password_stays_secret() {
    let c = config::parse(&base(), "site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.hub.transport, config::HubTransport::Mqtt);
    assert_eq!(c.hub.websocket_port, 443);
    let text = base().replace(
        "hostname = \"hub.example\"\n",
        "hostname = \"hub.example\"\ntransport = \"auto\"\nproxy = \"http://ops:hunter2@proxy.site:3128\"\n",
    );
    let c = config::parse(&text, "site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.hub.transport, config::HubTransport::Auto);
    let p = c.hub.proxy.clone().unwrap();
    assert_eq!((p.host.as_str(), p.port), ("proxy.site", 3128));
    assert!(!format!("{c:?}").contains("hunter2"));
    // A proxy only carries the WebSocket transport.
    let text = base().replace(
        "hostname = \"hub.example\"\n",
        "hostname = \"hub.example\"\ntransport = \"mqtt\"\nproxy = \"http://proxy.site:3128\"\n",
    );
    assert_one(&text, "proxy = ", "hub.proxy", "WebSocket transport");
    let text = base().replace(
        "hostname = \"hub.example\"\n",
        "hostname = \"hub.example\"\ntransport = \"websocket\"\nproxy = \"socks5://u:pw@p:1080\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("http://"), "{}", errs[0]);
    assert!(!errs[0].to_string().contains("pw@"), "{}", errs[0]);
    let text = base().replace(
        "hostname = \"hub.example\"\n",
        "hostname = \"hub.example\"\ntransport = \"carrier-pigeon\"\n",
    );
    assert_eq!(errors(&text)[0].key, "hub.transport");
}

#[test]
fn events_section_defaults_relative_dir_and_refusals() {
    let c = config::parse(&base(), "/etc/fieldgate/site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.events.dir, Path::new(config::DEFAULT_EVENTS_DIR));
    assert_eq!(c.events.max_bytes, config::DEFAULT_EVENTS_MAX_BYTES);
    assert_eq!(c.events.max_age, config::DEFAULT_EVENTS_MAX_AGE);
    assert_eq!(
        c.events.commit_interval,
        config::DEFAULT_EVENTS_COMMIT_INTERVAL
    );
    assert_eq!(c.events.send_rate, config::DEFAULT_EVENTS_SEND_RATE);

    let text = base().replacen(
        "[[bus]]",
        "[events]\ndir = \"state\"\nmax_bytes = 1048576\nmax_age = \"1h\"\ncommit_interval = \"1s\"\nsend_rate = 10\n\n[[bus]]",
        1,
    );
    let c = config::parse(&text, "/etc/fieldgate/site.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.events.dir, Path::new("/etc/fieldgate/state"));
    assert_eq!(
        (
            c.events.max_bytes,
            c.events.max_age,
            c.events.commit_interval,
            c.events.send_rate
        ),
        (
            1_048_576,
            Duration::from_secs(3600),
            Duration::from_secs(1),
            10
        )
    );

    let bad = |line: &str| base().replacen("[[bus]]", &format!("[events]\n{line}\n\n[[bus]]"), 1);
    let t = bad("max_bytes = 100");
    assert_one(&t, "max_bytes", "events.max_bytes", "at least 4096");
    let t = bad("commit_interval = \"1m\"");
    assert_one(
        &t,
        "commit_interval",
        "events.commit_interval",
        "at most 10s",
    );
    let t = bad("send_rate = 0");
    assert_one(&t, "send_rate", "events.send_rate", "at least 1");
    let t = bad("max_age = \"0s\"");
    assert_one(&t, "max_age", "events.max_age", "longer than 0");
    let t = bad("dri = \"x\"");
    assert_eq!(errors(&t).len(), 1, "unknown keys are refused");
}
