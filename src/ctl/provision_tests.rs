//! Provisioning: pure parts, then against a scripted registry.

mod unit {
    use super::super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tags_patch_is_minimal_and_keeps_foreign_tags() {
        let cur = obj(json!({"building":"43","floor":2,"site":{"zone":"A","row":1},"owner":"ops"}));
        let want = obj(json!({"building":"43","floor":3,"site":{"zone":"A","row":2},"new":true}));
        assert_eq!(
            Value::Object(tags_patch(&cur, &want)),
            json!({"floor":3,"site":{"row":2},"new":true})
        );
        assert!(tags_patch(&cur, &obj(json!({"building":"43"}))).is_empty());
        // An object replacing a scalar is sent whole.
        assert_eq!(
            Value::Object(tags_patch(&obj(json!({"a":1})), &obj(json!({"a":{"b":2}})))),
            json!({"a":{"b":2}})
        );
    }

    /// A valid device map with two doors: tags and an inline key on one, a key file still to
    /// be written on the other.
    pub(super) const MAP: &str = r#"
[hub]
hostname = "localhost:8883"
[[bus]]
name = "b"
tcp = "127.0.0.1:502"
[profile.p.methods.lockDoor]
action = "write_coil"
address = 0
value = true
[[door]]
device_id = "door-01"
bus = "b"
unit = 1
profile = "p"
key_file = "keys/door-01.key"
tags = { building = "43", floor = 3, site = { zone = "B" } }
[[door]]
device_id = "door-02"
bus = "b"
unit = 2
profile = "p"
key = "a2V5"
"#;

    #[test]
    fn reads_doors_through_the_gateway_config_loader() {
        let map =
            crate::config::parse_for_provisioning(MAP, "/etc/fieldgate/fieldgate.toml").unwrap();
        assert_eq!(
            items_from_map(map),
            vec![
                ProvisionItem {
                    device_id: "door-01".into(),
                    tags: obj(json!({"building":"43","floor":3,"site":{"zone":"B"}})),
                    key: None,
                    key_file: Some("/etc/fieldgate/keys/door-01.key".into()),
                },
                ProvisionItem {
                    device_id: "door-02".into(),
                    tags: Map::new(),
                    key: Some("a2V5".into()),
                    key_file: None,
                },
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[door]]\nbus = \"a\"\n").unwrap();
        let err = provision_items_from_config(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.toml:"), "names the file and line: {err}");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_idempotent() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(&dir.path().join("keys"), "door-01");
        assert_eq!(
            write_key_file(&path, "a2V5", true).unwrap(),
            KeyChange::Written
        );
        assert!(!path.exists(), "dry run wrote a file");
        assert_eq!(
            write_key_file(&path, "a2V5", false).unwrap(),
            KeyChange::Written
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a2V5");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            write_key_file(&path, "a2V5", false).unwrap(),
            KeyChange::Unchanged
        );
        // Loose permissions are repaired even when the key matches.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            write_key_file(&path, "a2V5", false).unwrap(),
            KeyChange::Written
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            write_key_file(&path, "bmV3", false).unwrap(),
            KeyChange::Written
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bmV3");
    }

    #[test]
    fn render_counts() {
        let r = |id: &str, change, tags: &[&str]| ProvisionResult {
            device_id: id.into(),
            change,
            tags_changed: tags.iter().map(|s| s.to_string()).collect(),
            key_file: None,
            key: None,
            error: None,
        };
        let text = render(
            crate::ctl::output::Style { color: false },
            &[
                r("a", Change::Created, &["building"]),
                r("b", Change::Unchanged, &[]),
            ],
            true,
        );
        assert!(text.contains("a       created    tags: building"), "{text}");
        assert!(text.ends_with(
            "1 created, 0 updated, 1 unchanged, 0 failed (dry run: nothing was changed)"
        ));
    }
}

mod hub {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use clap::Parser as _;
    use serde_json::{json, Value};

    use super::super::*;
    use crate::ctl::cli::Cli;
    use crate::ctl::output::{Console, SharedBuf};
    use crate::service::testhub::{client, mock, Mock, T};

    /// A registry of (primary key, tags) per device, behind the scripted hub.
    type Registry = Arc<Mutex<BTreeMap<String, (String, Value)>>>;

    async fn registry_hub(reg: Registry) -> Mock {
        mock(Arc::new(move |s, _| {
            let mut reg = reg.lock().unwrap();
            let not_found = (
                404,
                vec![("iothub-errorcode", "DeviceNotFound".to_string())],
                json!({"Message":"ErrorCode:DeviceNotFound;not found"}),
            );
            let (kind, id) = s.path[1..].split_once('/').unwrap();
            let body: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
            match (s.method.as_str(), kind) {
                ("GET", "devices") => match reg.get(id) {
                    Some((key, _)) => (200, vec![], json!({"deviceId":id,"etag":"MQ==",
                        "authentication":{"type":"sas","symmetricKey":{"primaryKey":key,"secondaryKey":"c2Vj"}}})),
                    None => not_found,
                },
                ("PUT", "devices") => {
                    let key = body["authentication"]["symmetricKey"]["primaryKey"].as_str().unwrap().to_string();
                    reg.insert(id.to_string(), (key, json!({})));
                    (200, vec![], body)
                }
                ("GET", "twins") => match reg.get(id) {
                    Some((_, tags)) => (200, vec![], json!({"deviceId":id,"tags":tags})),
                    None => not_found,
                },
                ("PATCH", "twins") => match reg.get_mut(id) {
                    Some((_, tags)) => {
                        let mut t = tags.as_object().unwrap().clone();
                        crate::ctl::args::merge(&mut t, body["tags"].as_object().unwrap().clone());
                        *tags = Value::Object(t);
                        (200, vec![], json!({"deviceId":id,"tags":tags}))
                    }
                    None => not_found,
                },
                _ => not_found,
            }
        }))
        .await
    }

    fn items() -> Vec<ProvisionItem> {
        vec![
            ProvisionItem {
                device_id: "door-01".into(),
                tags: json!({"building":"43","floor":3})
                    .as_object()
                    .unwrap()
                    .clone(),
                key: None,
                key_file: None,
            },
            ProvisionItem {
                device_id: "door-02".into(),
                tags: json!({"building":"43"}).as_object().unwrap().clone(),
                key: None,
                key_file: None,
            },
        ]
    }

    fn writes(m: &Mock) -> usize {
        m.seen()
            .iter()
            .filter(|s| s.method == "PUT" || s.method == "PATCH")
            .count()
    }

    #[tokio::test]
    async fn provisioning_creates_updates_and_is_idempotent() {
        let reg: Registry = Arc::default();
        reg.lock().unwrap().insert(
            "door-01".into(),
            (
                "ZXhpc3Rpbmc=".into(),
                json!({"building":"43","owner":"ops"}),
            ),
        );
        let m = registry_hub(reg.clone()).await;
        let c = client(&m);
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");

        let first = tokio::time::timeout(T, provision(&c, &items(), Some(&keys), false))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first[0].change, Change::Updated);
        assert_eq!(first[0].tags_changed, ["floor"]);
        assert_eq!(first[0].key, Some(KeyChange::Written));
        assert_eq!(first[1].change, Change::Created);
        assert_eq!(first[1].tags_changed, ["building"]);
        assert_eq!(
            std::fs::read_to_string(keys.join("door-01.key")).unwrap(),
            "ZXhpc3Rpbmc="
        );
        let created_key = reg.lock().unwrap()["door-02"].0.clone();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&created_key)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            std::fs::read_to_string(keys.join("door-02.key")).unwrap(),
            created_key
        );
        // The operator's own tag survives.
        assert_eq!(
            reg.lock().unwrap()["door-01"].1,
            json!({"building":"43","owner":"ops","floor":3})
        );
        let writes_after_first = writes(&m);
        assert_eq!(writes_after_first, 3, "one create, two tag patches");

        let second = tokio::time::timeout(T, provision(&c, &items(), Some(&keys), false))
            .await
            .unwrap()
            .unwrap();
        for r in &second {
            assert_eq!(r.change, Change::Unchanged, "{r:?}");
            assert_eq!(r.key, Some(KeyChange::Unchanged), "{r:?}");
        }
        assert_eq!(
            writes(&m),
            writes_after_first,
            "second run wrote to the hub"
        );
    }

    #[tokio::test]
    async fn dry_run_changes_nothing() {
        let reg: Registry = Arc::default();
        let m = registry_hub(reg.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let res = tokio::time::timeout(T, provision(&client(&m), &items(), Some(&keys), true))
            .await
            .unwrap()
            .unwrap();
        assert!(res.iter().all(|r| r.change == Change::Created));
        assert!(res.iter().all(|r| r.key == Some(KeyChange::Written)));
        assert_eq!(writes(&m), 0);
        assert!(reg.lock().unwrap().is_empty());
        assert!(!keys.exists());
    }

    #[tokio::test]
    async fn provision_command_reads_the_map_and_prints_json() {
        let reg: Registry = Arc::default();
        let m = registry_hub(reg.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("fieldgate.toml");
        std::fs::write(&map, super::unit::MAP).unwrap();
        let keys = dir.path().join("keys");
        let cli = Cli::try_parse_from([
            "fieldctl",
            "--json",
            "devices",
            "provision",
            "--config",
            map.to_str().unwrap(),
            "--keys-dir",
            keys.to_str().unwrap(),
        ])
        .unwrap();
        let mut out = Vec::new();
        let err = SharedBuf::default();
        let code = tokio::time::timeout(
            T,
            crate::ctl::run_with_client(
                client(&m),
                cli.command,
                true,
                &mut out,
                Console::new(err.clone()),
            ),
        )
        .await
        .unwrap();
        assert_eq!(code, 0, "{}", err.contents());
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["dryRun"], false);
        assert_eq!(doc["devices"][0]["deviceId"], "door-01");
        assert_eq!(doc["devices"][0]["change"], "created");
        assert_eq!(doc["devices"][0]["key"], "written");
        assert_eq!(
            reg.lock().unwrap()["door-01"].1,
            json!({"building":"43","floor":3,"site":{"zone":"B"}})
        );
    }
}

mod keys_from_the_map {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::*;
    use crate::service::testhub::{client, mock, T};

    #[tokio::test]
    async fn map_keys_are_used_and_mismatches_reported() {
        // door-01 exists with another key; door-02 is missing.
        let m = mock(Arc::new(|s, _| match (s.method.as_str(), s.path.as_str()) {
            ("GET", "/devices/door-01") => (200, vec![], json!({"deviceId":"door-01",
                "authentication":{"type":"sas","symmetricKey":{"primaryKey":"b3RoZXI=","secondaryKey":"x"}}})),
            ("GET", "/devices/door-02") => (404, vec![], json!({"Message":"ErrorCode:DeviceNotFound;no"})),
            ("PUT", _) => (200, vec![], serde_json::from_str(&s.body).unwrap()),
            (_, p) if p.starts_with("/twins/") => (200, vec![], json!({"deviceId":"x","tags":{}})),
            _ => (500, vec![], json!({})),
        }))
        .await;
        let items = [
            ProvisionItem {
                device_id: "door-01".into(),
                tags: Map::new(),
                key: Some("a2V5".into()),
                key_file: None,
            },
            ProvisionItem {
                device_id: "door-02".into(),
                tags: Map::new(),
                key: Some("a2V5".into()),
                key_file: None,
            },
        ];
        let res = tokio::time::timeout(T, provision(&client(&m), &items, None, false))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res[0].change, Change::Failed);
        assert!(res[0]
            .error
            .as_deref()
            .unwrap()
            .contains("primary key differs"));
        assert_eq!(res[1].change, Change::Created);
        let put = m.seen().into_iter().find(|s| s.method == "PUT").unwrap();
        let body: Value = serde_json::from_str(&put.body).unwrap();
        assert_eq!(body["authentication"]["symmetricKey"]["primaryKey"], "a2V5");
    }
}
