//! Uploaded builds on disk: where a version's files live, and adopting a version whose
//! publication a crash cut short.

use std::path::{Path, PathBuf};

use crate::params;
use serde::{Deserialize, Serialize};

use crate::store::Store;

use super::*;

/// `<data>/uploadedGame/<game_id>/<version>`; both parts must be validated first.
pub fn version_dir(data_dir: &Path, game_id: &str, version: &str) -> PathBuf {
    data_dir.join("uploadedGame").join(game_id).join(version)
}

/// The build file inside a version directory.
pub const BUILD_FILE: &str = "build.bin";
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json` of a published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub game_id: String,
    pub version: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// RFC 3339.
    pub uploaded_at: String,
    pub uploader: String,
}

/// Inserts the rows of version directories that are on disk but not in the database.
pub(super) fn adopt_orphan_versions(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    // Half-written uploads never survive a restart.
    let staging = data_dir.join("staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let root = data_dir.join("uploadedGame");
    let Ok(games) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for game_dir in games.flatten() {
        let Ok(versions) = std::fs::read_dir(game_dir.path()) else {
            continue;
        };
        for version_dir in versions.flatten() {
            let manifest_path = version_dir.path().join(MANIFEST_FILE);
            let Ok(text) = std::fs::read_to_string(&manifest_path) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_str::<Manifest>(&text) else {
                tracing::warn!("unreadable manifest {}", manifest_path.display());
                continue;
            };
            let (game_id, version) = (manifest.game_id.clone(), manifest.version.clone());
            let known = store.read_now(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM versions WHERE game_id = ?1 AND version = ?2",
                        params![game_id, version],
                        |_| Ok(()),
                    )
                    .is_ok())
            })?;
            if known {
                continue;
            }
            tracing::info!(
                game = manifest.game_id,
                version = manifest.version,
                "adopting a version published just before a crash"
            );
            let uploaded_at = chrono::DateTime::parse_from_rfc3339(&manifest.uploaded_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| now_ms());
            let version = Version {
                version: manifest.version.clone(),
                size_bytes: manifest.size_bytes,
                sha256: manifest.sha256.clone(),
                uploader: manifest.uploader.clone(),
                uploaded_at,
                room: crate::scripting::package::room_script_in_build(
                    &version_dir.path().join(BUILD_FILE),
                )
                .ok()
                .flatten(),
            };
            let game_id = manifest.game_id.clone();
            block_on_write(store, move |conn| insert_version(conn, &game_id, &version))?;
        }
    }
    Ok(())
}
