//! Script packages on disk: server mods in `<data-dir>/mods/<name>/` and room scripts in
//! uploaded builds, read and compiled off the simulation thread.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Compiled;

/// The most script text one package may carry.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;
/// The most script files one package may carry.
pub const MAX_FILES: usize = 256;

/// What a mod may touch, as its `mod.toml` grants it. Reading the world needs no grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Spawn and remove NPC ships, damage and repair ships.
    Ships,
    /// Grant and charge players' credits.
    Credits,
    /// Send messages to players and take client messages of its own types.
    Messages,
    /// Publish on comms topics.
    Comms,
    /// Its durable key-value store.
    Store,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Ships => "ships",
            Permission::Credits => "credits",
            Permission::Messages => "messages",
            Permission::Comms => "comms",
            Permission::Store => "store",
        }
    }
}

/// `mod.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModManifest {
    pub name: String,
    pub version: String,
    /// The script to run, relative to the mod's folder.
    pub entry: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// A mod as read from its folder.
#[derive(Debug, Clone)]
pub struct ModPackage {
    /// The folder's name: how the server and its metrics name the mod.
    pub name: String,
    pub manifest: ModManifest,
    pub compiled: Compiled,
}

/// Reads and compiles the mod in `dir`; the error says what is wrong, and where.
pub fn read_mod(dir: &Path) -> Result<ModPackage, String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the mod's folder has no usable name")?
        .to_owned();
    let text = std::fs::read_to_string(dir.join("mod.toml"))
        .map_err(|e| format!("mod {name}: reading mod.toml: {e}"))?;
    let manifest: ModManifest =
        toml::from_str(&text).map_err(|e| format!("mod {name}: mod.toml: {e}"))?;
    let sources = read_sources(dir).map_err(|e| format!("mod {name}: {e}"))?;
    let compiled =
        super::compile(&manifest.entry, &sources).map_err(|e| format!("mod {name}: {e}"))?;
    Ok(ModPackage {
        name,
        manifest,
        compiled,
    })
}

/// Every `.luau` file under `dir`, by path relative to it (with `/`).
fn read_sources(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut sources = Vec::new();
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("luau") {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            total += text.len() as u64;
            if total > MAX_SOURCE_BYTES || sources.len() >= MAX_FILES {
                return Err(format!(
                    "more than {MAX_FILES} scripts or {MAX_SOURCE_BYTES} bytes of them"
                ));
            }
            let relative = path
                .strip_prefix(dir)
                .map_err(|e| e.to_string())?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            sources.push((relative, text));
        }
    }
    sources.sort();
    Ok(sources)
}

/// A digest of what a mod folder holds, to notice edits.
fn fingerprint(dir: &Path) -> Option<[u8; 32]> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update(std::fs::read(&file).ok()?);
    }
    Some(hash.finalize().into())
}

/// What changed in the mods folder.
#[derive(Debug)]
pub enum ModChange {
    /// A mod is new or was edited (and compiles).
    Load(Box<ModPackage>),
    /// A mod's folder is gone.
    Unload(String),
}

/// Reads `mods_dir` every `every`, and reports each change with `report` (mods present at
/// the first look are reported then). A mod that does not compile is logged and its last
/// good version keeps running. Returns when `report` returns false.
pub async fn watch_mods(
    mods_dir: PathBuf,
    every: Duration,
    report: impl Fn(ModChange) -> bool + Send + 'static,
) {
    let mut seen: HashMap<String, [u8; 32]> = HashMap::new();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let dir = mods_dir.clone();
        let previous = seen.clone();
        let looked = tokio::task::spawn_blocking(move || scan(&dir, &previous)).await;
        let Ok((now, changes)) = looked else {
            continue;
        };
        seen = now;
        for change in changes {
            if !report(change) {
                return;
            }
        }
    }
}

/// One look at the mods folder: each mod's fingerprint, and what changed since `previous`.
fn scan(
    dir: &Path,
    previous: &HashMap<String, [u8; 32]>,
) -> (HashMap<String, [u8; 32]>, Vec<ModChange>) {
    let mut now = HashMap::new();
    let mut changes = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if !path.join("mod.toml").is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let Some(print) = fingerprint(&path) else {
            continue;
        };
        now.insert(name.clone(), print);
        if previous.get(&name) == Some(&print) {
            continue;
        }
        match read_mod(&path) {
            Ok(package) => changes.push(ModChange::Load(Box::new(package))),
            Err(e) => tracing::error!("{e}; the mod's last good version (if any) keeps running"),
        }
    }
    for name in previous.keys() {
        if !now.contains_key(name) {
            changes.push(ModChange::Unload(name.clone()));
        }
    }
    (now, changes)
}

/// The manifest of a developer's room game: `ecliptic-room.toml` in the build's zip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomManifest {
    /// The script to run, relative to the zip's root (`server/main.luau`).
    pub entry: String,
    /// Client message types the room takes as inputs (`"showdown.throw"`).
    #[serde(default)]
    pub messages: Vec<String>,
    /// The star system whose stations and zones the room's world copies; empty space when
    /// absent.
    #[serde(default)]
    pub system: Option<String>,
    /// Passed to the script's `init` as `settings`.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// A room script as the catalog keeps it: the manifest and the sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSource {
    pub manifest: RoomManifest,
    pub sources: Vec<(String, String)>,
}

/// A room script ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomScript {
    pub manifest: RoomManifest,
    pub compiled: Compiled,
    /// What the catalog stores.
    pub source: RoomSource,
}

pub const ROOM_MANIFEST: &str = "ecliptic-room.toml";

/// The namespaces of the messages the server itself takes and sends (`trade.buy`,
/// `world.delta`, …): a script's message types are of its own.
pub const SERVER_NAMESPACES: &[&str] = &[
    "auth", "session", "input", "trade", "ship", "world", "combat", "room", "error",
];

/// Whether `kind` is a message type a script may take or send: namespaced
/// (`"mygame.move"`), at most 64 ASCII characters, not in the server's namespaces.
pub fn is_script_message_type(kind: &str) -> bool {
    let Some((namespace, name)) = kind.split_once('.') else {
        return false;
    };
    !namespace.is_empty()
        && !name.is_empty()
        && kind.len() <= 64
        && kind.is_ascii()
        && !SERVER_NAMESPACES.contains(&namespace)
}

impl RoomSource {
    /// Compiles it; the error names the file and line.
    pub fn compile(self) -> Result<Arc<RoomScript>, String> {
        for kind in &self.manifest.messages {
            if !is_script_message_type(kind) {
                return Err(format!(
                    "{ROOM_MANIFEST}: message type {kind:?} must be namespaced (\"mygame.move\") and not in the server's own namespaces"
                ));
            }
        }
        let compiled = super::compile(&self.manifest.entry, &self.sources)?;
        Ok(Arc::new(RoomScript {
            manifest: self.manifest.clone(),
            compiled,
            source: self,
        }))
    }
}

/// The room script in an uploaded build, if the build is a zip holding
/// `ecliptic-room.toml`: `Ok(None)` for any other build, an error for a room script that is
/// broken (so the upload is refused with the reason).
pub fn room_script_in_build(build: &Path) -> Result<Option<Arc<RoomScript>>, String> {
    let Ok(file) = std::fs::File::open(build) else {
        return Ok(None);
    };
    let Ok(mut archive) = zip::ZipArchive::new(file) else {
        return Ok(None);
    };
    let manifest = match archive.by_name(ROOM_MANIFEST) {
        Ok(mut entry) => {
            let mut text = String::new();
            entry
                .by_ref()
                .take(MAX_SOURCE_BYTES)
                .read_to_string(&mut text)
                .map_err(|e| format!("{ROOM_MANIFEST}: {e}"))?;
            text
        }
        Err(_) => return Ok(None),
    };
    let manifest: RoomManifest =
        toml::from_str(&manifest).map_err(|e| format!("{ROOM_MANIFEST}: {e}"))?;
    let mut sources = Vec::new();
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| e.to_string())?;
        let Some(path) = entry.enclosed_name() else {
            continue;
        };
        let path = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if !path.ends_with(".luau") || !path.starts_with("server/") {
            continue;
        }
        let mut text = String::new();
        entry
            .by_ref()
            .take(MAX_SOURCE_BYTES - total + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{path}: {e}"))?;
        total += text.len() as u64;
        if total > MAX_SOURCE_BYTES || sources.len() >= MAX_FILES {
            return Err(format!(
                "more than {MAX_FILES} scripts or {MAX_SOURCE_BYTES} bytes of them under server/"
            ));
        }
        sources.push((path, text));
    }
    sources.sort();
    RoomSource { manifest, sources }.compile().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &str)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, text) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    #[test]
    fn a_room_build_is_read_and_compiled() {
        let build = zip_of(&[
            (
                ROOM_MANIFEST,
                "entry = \"server/main.luau\"\nmessages = [\"duel.move\"]\n[settings]\nrounds = 3\n",
            ),
            ("server/main.luau", "return {}"),
            ("client/index.html", "<html>"),
        ]);
        let script = room_script_in_build(build.path()).unwrap().unwrap();
        assert_eq!(script.manifest.messages, ["duel.move"]);
        assert_eq!(script.manifest.settings["rounds"], 3);
        assert_eq!(script.source.sources.len(), 1);
    }

    #[test]
    fn other_builds_have_no_room_script_and_broken_ones_are_refused() {
        let plain = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(plain.path(), b"not a zip").unwrap();
        assert_eq!(room_script_in_build(plain.path()).unwrap(), None);
        let no_manifest = zip_of(&[("index.html", "<html>")]);
        assert_eq!(room_script_in_build(no_manifest.path()).unwrap(), None);
        let broken = zip_of(&[
            (ROOM_MANIFEST, "entry = \"server/main.luau\""),
            ("server/main.luau", "return {"),
        ]);
        let e = room_script_in_build(broken.path()).unwrap_err();
        assert!(e.starts_with("server/main.luau:1: "), "{e}");
        let taken = zip_of(&[
            (
                ROOM_MANIFEST,
                "entry = \"server/main.luau\"\nmessages = [\"trade.buy\"]",
            ),
            ("server/main.luau", "return {}"),
        ]);
        assert!(room_script_in_build(taken.path()).is_err());
    }

    #[test]
    fn a_package_over_its_size_is_refused() {
        let big = "-- ".to_owned() + &"x".repeat(MAX_SOURCE_BYTES as usize);
        let build = zip_of(&[
            (ROOM_MANIFEST, "entry = \"server/main.luau\""),
            ("server/main.luau", &big),
        ]);
        let e = room_script_in_build(build.path()).unwrap_err();
        assert!(e.contains("bytes of them under server/"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mod.toml"),
            "name = \"big\"\nversion = \"1\"\nentry = \"main.luau\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("main.luau"), &big).unwrap();
        assert!(read_mod(dir.path()).unwrap_err().contains("bytes of them"));
    }

    #[test]
    fn a_mod_folder_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("ambush");
        std::fs::create_dir_all(folder.join("lib")).unwrap();
        std::fs::write(
            folder.join("mod.toml"),
            "name = \"Ambush\"\nversion = \"1.0.0\"\nentry = \"main.luau\"\npermissions = [\"ships\", \"messages\"]\n",
        )
        .unwrap();
        std::fs::write(folder.join("main.luau"), "require('lib/util')").unwrap();
        std::fs::write(folder.join("lib/util.luau"), "return 1").unwrap();
        let package = read_mod(&folder).unwrap();
        assert_eq!(package.name, "ambush");
        assert_eq!(
            package.manifest.permissions,
            [Permission::Ships, Permission::Messages]
        );
        assert!(package.compiled.modules.contains_key("lib/util"));
        std::fs::write(folder.join("mod.toml"), "name = \"Ambush\"\n").unwrap();
        assert!(read_mod(&folder).unwrap_err().contains("mod.toml"));
    }
}
