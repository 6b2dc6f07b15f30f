//! A node's data taken whole: backups, restores, and the move to PostgreSQL.
//!
//! A backup is one zip archive holding `manifest.json`, `ecliptic.db` (a snapshot taken
//! with SQLite's online backup API while the server runs) and `files/…`: the uploaded
//! builds and studio assets the snapshot names, the token signing key, and the operator's
//! files (`achievements.json`, `mods/`). The manifest says what a whole restore holds (the
//! schema version, the rows of every table, the size and sha256 of every file, the ledger's
//! totals), and a restore checks all of it before it says done.
//!
//! The database is copied before the files: builds and assets are written (and synced)
//! before the rows that name them commit, and never deleted, so every file the snapshot
//! names is there to copy.

mod move_to;
mod restore;

pub use move_to::{MoveSummary, move_to};
pub use restore::restore;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::services::catalog::{BUILD_FILE, MANIFEST_FILE};
use crate::services::wallet;
use crate::store::transfer;
use crate::store::{Connection, StoreError};

/// What `manifest.json` says it is.
pub const FORMAT: &str = "ecliptic-backup";
/// The archive layout's version (not the schema's): a restore refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "ecliptic.db";
/// Where the data directory's files go inside the archive.
const FILES: &str = "files/";
/// Files of the data directory that are not named by the database but belong to it.
const LOOSE_FILES: &[&str] = &["jwt.key", "achievements.json"];
const LOOSE_DIRS: &[&str] = &["mods"];

/// `manifest.json`: everything a restore checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: String,
    pub format_version: u32,
    /// The server that took it.
    pub server_version: String,
    /// RFC 3339.
    pub created_at: String,
    pub schema_version: i64,
    /// Rows per table.
    pub tables: BTreeMap<String, i64>,
    /// Every other entry of the archive, by its name there.
    pub files: BTreeMap<String, FileEntry>,
    pub ledger: Ledger,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
}

/// The wallet ledger's totals, and whether its check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub minted: i64,
    pub users: i64,
    pub pots: i64,
    pub moves: i64,
    pub balanced: bool,
}

impl Ledger {
    /// The ledger check (see [`wallet::audit`]) of a database.
    pub fn of(conn: &Connection) -> Result<Self, StoreError> {
        let audit = wallet::audit(conn)?;
        Ok(Self {
            minted: audit.total_minted,
            users: audit.users,
            pots: audit.pots,
            moves: audit.moves,
            balanced: audit.holds(),
        })
    }
}

/// What a backup took.
#[derive(Debug)]
pub struct BackupSummary {
    pub manifest: BackupManifest,
    pub bytes: u64,
}

/// Writes a backup of the SQLite data directory `data_dir` to `out` (which must not
/// exist), while the server may be running. The archive appears under its name only once
/// it is whole and synced.
pub fn create(data_dir: &Path, out: &Path) -> anyhow::Result<BackupSummary> {
    anyhow::ensure!(
        !out.exists(),
        "{} already exists: name a new file",
        out.display()
    );
    let work = Scratch::beside(out)?;
    let snapshot = work.path.join(DATABASE);
    transfer::snapshot_sqlite(&data_dir.join(DATABASE), &snapshot)?;
    let (schema_version, tables, ledger, named) = transfer::with_sqlite_file(&snapshot, |conn| {
        Ok((
            transfer::schema_version(conn)?,
            transfer::row_counts(conn)?,
            Ledger::of(conn)?,
            files_named_by(conn)?,
        ))
    })?;
    if !ledger.balanced {
        tracing::warn!("the ledger check fails on this data; the backup records it as it is");
    }
    let mut sources = vec![(DATABASE.to_owned(), snapshot.clone())];
    for relative in named {
        let path = data_dir.join(&relative);
        anyhow::ensure!(
            path.is_file(),
            "{} is named by the database but missing from {}",
            relative,
            data_dir.display()
        );
        sources.push((format!("{FILES}{relative}"), path));
    }
    sources.extend(loose_files(data_dir)?);

    let partial = work.path.join("backup.zip");
    let mut zip = zip::ZipWriter::new(private_file(&partial)?);
    let mut files = BTreeMap::new();
    for (name, path) in &sources {
        let mut source =
            std::fs::File::open(path).with_context(|| format!("read {}", path.display()))?;
        let size = source.metadata()?.len();
        // The database compresses well; builds and images mostly do not.
        let method = if name == DATABASE {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(name.as_str(), options)?;
        let entry = copy_hashing(&mut source, &mut zip)?;
        files.insert(name.clone(), entry);
    }
    let manifest = BackupManifest {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: chrono::Utc::now().to_rfc3339(),
        schema_version,
        tables,
        files,
        ledger,
    };
    zip.start_file(MANIFEST, zip::write::SimpleFileOptions::default())?;
    zip.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    let file = zip.finish()?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    std::fs::rename(&partial, out)
        .with_context(|| format!("move the backup to {}", out.display()))?;
    sync_parent(out)?;
    Ok(BackupSummary { manifest, bytes })
}

/// The data directory's files the database names, relative to it with `/`: each uploaded
/// version's directory, and each asset.
fn files_named_by(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let mut named = Vec::new();
    let versions: Vec<(String, String)> =
        conn.query_map("SELECT game_id, version FROM versions", (), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    for (game_id, version) in versions {
        for file in [BUILD_FILE, MANIFEST_FILE] {
            named.push(format!("uploadedGame/{game_id}/{version}/{file}"));
        }
    }
    let assets: Vec<String> =
        conn.query_map("SELECT DISTINCT sha256 FROM assets", (), |r| r.get(0))?;
    named.extend(assets.into_iter().map(|sha| format!("assets/{sha}")));
    Ok(named)
}

/// The signing key and the operator's files, where the data directory has them.
fn loose_files(data_dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for name in LOOSE_FILES {
        let path = data_dir.join(name);
        if path.is_file() {
            found.push((format!("{FILES}{name}"), path));
        }
    }
    for dir in LOOSE_DIRS {
        let mut pending = vec![PathBuf::from(dir)];
        while let Some(relative) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(data_dir.join(&relative)) else {
                continue;
            };
            for entry in entries {
                let entry = entry?;
                let inner = relative.join(entry.file_name());
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(inner);
                } else if kind.is_file() {
                    found.push((format!("{FILES}{}", slashed(&inner)), entry.path()));
                }
            }
        }
    }
    Ok(found)
}

fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Copies `from` into `to`, returning the size and sha256 of what went through.
fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<FileEntry> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok(FileEntry {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// A new file only its owner may read: a backup holds password hashes and secrets.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).read(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A directory's new entry made durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// A working directory beside a destination (so the result can be renamed into place),
/// removed when dropped unless kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn beside(target: &Path) -> anyhow::Result<Self> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = parent.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("make a working directory {}", path.display()))?;
        // What goes in it (password hashes, the signing key) is for the server's eyes.
        crate::store::make_private(&path, 0o700)?;
        Ok(Self { path, keep: false })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
