//! The gateway's config loader: random text into `fieldgate::config::parse` (and the
//! provisioning variant `fieldctl` uses).
//!
//! Checks: no panic; every error has a message and a line within the text (or 0); an accepted
//! config is self-consistent: every door's bus exists, device ids are unique, every value spec
//! validates, and every fixed method value encodes with its spec.
#![no_main]

use fieldgate::config::{self, MethodAction, ValueSource};
use libfuzzer_sys::fuzz_target;

// Relative key files resolve below a directory that does not exist.
const ORIGIN: &str = "/nonexistent/fieldgate-fuzz/fieldgate.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count() + 1;
    match config::parse(text, ORIGIN) {
        Err(errs) => {
            assert!(!errs.errors.is_empty(), "an error without any problem");
            for e in &errs.errors {
                assert!(!e.message.is_empty());
                assert!(e.line <= lines, "line {} beyond the text: {e}", e.line);
            }
            let _ = errs.to_string();
        }
        Ok(c) => {
            let mut ids = std::collections::BTreeSet::new();
            for d in &c.doors {
                assert!(
                    c.bus(&d.bus).is_some(),
                    "door {} on unknown bus {}",
                    d.device_id,
                    d.bus
                );
                assert!(
                    ids.insert(d.device_id.clone()),
                    "duplicate door {}",
                    d.device_id
                );
                for (name, p) in &d.desired {
                    assert!(
                        p.spec.validate().is_empty(),
                        "desired {name}: {:?}",
                        p.spec.validate()
                    );
                }
                for (name, p) in &d.reported {
                    assert!(
                        p.spec.validate().is_empty(),
                        "reported {name}: {:?}",
                        p.spec.validate()
                    );
                }
                for (name, a) in &d.methods {
                    assert!(a.spec().validate().is_empty(), "method {name}");
                    if let MethodAction::WriteCoil {
                        value: ValueSource::Fixed(v),
                        ..
                    }
                    | MethodAction::WriteRegister {
                        value: ValueSource::Fixed(v),
                        ..
                    } = a
                    {
                        a.spec().encode(v).unwrap_or_else(|e| {
                            panic!("method {name}: fixed {v} does not encode: {e}")
                        });
                    }
                    if let MethodAction::PulseCoil { default, max, .. } = a {
                        assert!(default <= max, "method {name}: default pulse above max");
                    }
                }
            }
            let _ = c.summary();
        }
    }
    let _ = config::parse_for_provisioning(text, ORIGIN);
});
