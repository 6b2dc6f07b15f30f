//! One module per wire protocol: serde types, decoding and encoding. Pure: no I/O, no
//! domain rules; those live in `services` and `sim`. No protocol module depends on the
//! simulation (a test checks it): what they encode is domain data from `services`.
//!
//! # The decoding rule
//! Every protocol but store-lobby decodes tolerantly, because its clients are written
//! elsewhere and add fields over time: a field a message does not use is ignored, and a
//! `null` is the same as an absent field. Missing required fields, wrong types and values
//! out of range remain errors in the protocol's own shape. Each protocol applies the rule
//! in its one decoding entry point with [`tolerant`]; store-lobby's spec lists "extra
//! fields" under code 100, so its types refuse unknown fields instead.

use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod close;
pub mod comms;
pub mod game;
pub mod garp;
pub mod ops;
pub mod raos;
pub mod store;

/// A request without fields (`LIST_GAMES`, `POST …/disable`): `{}` on every protocol.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct NoFields {}

/// Drops the `null` members of a message object (they mean "absent"), so that optional
/// fields and fields with defaults read `null` as not sent. Free-form values inside a
/// message (a project document, a payload) are left as they are.
pub fn drop_nulls(value: &mut Value) {
    if let Value::Object(object) = value {
        object.retain(|_, v| !v.is_null());
    }
}

/// Deserializes one message object (or nested message object) under the decoding rule:
/// `null` members are absent; members the type does not name are ignored (serde's
/// default, so no tolerant type may refuse unknown fields).
pub fn tolerant<T: DeserializeOwned>(mut value: Value) -> Result<T, serde_json::Error> {
    drop_nulls(&mut value);
    serde_json::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Example {
        name: String,
        #[serde(default)]
        flag: bool,
        limit: Option<u32>,
    }

    #[test]
    fn unknown_fields_are_ignored_and_null_is_absent() {
        let decoded: Example = tolerant(serde_json::json!({
            "name": "a", "flag": null, "limit": null, "added_later": {"x": 1}
        }))
        .unwrap();
        assert_eq!(
            decoded,
            Example {
                name: "a".into(),
                flag: false,
                limit: None
            }
        );
        // Required fields stay required, and null does not stand in for them.
        assert!(tolerant::<Example>(serde_json::json!({"name": null})).is_err());
        assert!(tolerant::<Example>(serde_json::json!({"name": 3})).is_err());
    }

    /// Every `.rs` file under `dir`.
    fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn no_protocol_module_depends_on_the_simulation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
        for path in rust_files(&dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(&["crate", "::sim"].concat()),
                "{} uses the simulation",
                path.display()
            );
        }
    }

    /// The space game's rules decide outcomes ([`crate::services::play`]); only
    /// `protocol::game` turns them into messages and codes. The one simulation module that
    /// may name the game protocol is `extend`, which decodes plugins' message types.
    #[test]
    fn the_game_rules_build_no_game_messages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim");
        for path in rust_files(&dir) {
            if path.ends_with("extend.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(&["protocol", "::game"].concat()),
                "{} uses the game protocol",
                path.display()
            );
        }
    }

    #[test]
    fn the_bridge_names_no_gameplay_feature() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bridge.rs");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains(&["crate", "::sim"].concat()));
    }
}
