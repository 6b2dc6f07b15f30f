//! `admin restore`: a backup into an empty data directory, checked whole (every file's
//! size and sha256, the database's integrity, its rows per table, the ledger, each build
//! and asset its rows name) before it is renamed into place. A refused restore leaves
//! nothing behind.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;

use super::*;

/// The most `manifest.json` may be: far more than any real one.
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Restores the backup at `archive` into `data_dir`, which must be empty or not exist.
pub fn restore(archive: &Path, data_dir: &Path) -> anyhow::Result<BackupManifest> {
    refuse_unless_empty(data_dir)?;
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a readable backup ({e}): damaged or cut short?",
            archive.display()
        )
    })?;
    let manifest = read_manifest(&mut zip)?;
    check_entries(&zip, &manifest)?;

    let mut work = Scratch::beside(data_dir)?;
    for (name, expected) in &manifest.files {
        let dest = work.path.join(local_path(name)?);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut entry = zip
            .by_name(name)
            .map_err(|e| anyhow::anyhow!("{name} cannot be read from the backup: {e}"))?;
        let mut out = std::fs::File::create(&dest)?;
        let found = copy_hashing(&mut entry, &mut out)
            .map_err(|e| anyhow::anyhow!("{name} is damaged in the backup: {e}"))?;
        out.sync_all()?;
        anyhow::ensure!(
            found == *expected,
            "{name} is damaged in the backup: the manifest says {} bytes with sha256 {}, \
             the archive holds {} bytes with sha256 {}",
            expected.size,
            expected.sha256,
            found.size,
            found.sha256
        );
    }
    check_database(&work.path.join(DATABASE), &manifest)?;

    if data_dir.exists() {
        std::fs::remove_dir(data_dir)
            .with_context(|| format!("replace the empty {}", data_dir.display()))?;
    }
    std::fs::rename(&work.path, data_dir)
        .with_context(|| format!("move the restore into {}", data_dir.display()))?;
    work.keep = true;
    sync_parent(data_dir)?;
    Ok(manifest)
}

fn refuse_unless_empty(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.exists() {
        return Ok(());
    }
    anyhow::ensure!(
        data_dir.is_dir(),
        "{} is not a directory",
        data_dir.display()
    );
    let first = std::fs::read_dir(data_dir)?.next();
    anyhow::ensure!(
        first.is_none(),
        "{} is not empty: a restore goes only into an empty or new directory, so that it \
         cannot mix with (or overwrite) another server's data",
        data_dir.display()
    );
    Ok(())
}

fn read_manifest(zip: &mut zip::ZipArchive<std::fs::File>) -> anyhow::Result<BackupManifest> {
    let entry = zip
        .by_name(MANIFEST)
        .map_err(|_| anyhow::anyhow!("the archive has no {MANIFEST}: not an ecliptic backup"))?;
    let mut text = String::new();
    entry
        .take(MAX_MANIFEST_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("{MANIFEST} is damaged in the backup: {e}"))?;
    let manifest: BackupManifest = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{MANIFEST} is not a backup manifest: {e}"))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "not an ecliptic backup: its manifest says format {:?}",
        manifest.format
    );
    anyhow::ensure!(
        manifest.format_version <= FORMAT_VERSION,
        "the backup's layout (version {}) is newer than this server reads ({FORMAT_VERSION}); \
         restore it with ecliptic {} or newer",
        manifest.format_version,
        manifest.server_version
    );
    let known = transfer::known_schema_version();
    anyhow::ensure!(
        manifest.schema_version <= known,
        "the backup is from a newer schema (version {}, made by ecliptic {}) than this server \
         knows (version {known}); restore it with ecliptic {} or newer",
        manifest.schema_version,
        manifest.server_version,
        manifest.server_version
    );
    anyhow::ensure!(
        manifest.files.contains_key(DATABASE),
        "the backup's manifest lists no {DATABASE}"
    );
    Ok(manifest)
}

/// The archive holds exactly what its manifest lists.
fn check_entries(
    zip: &zip::ZipArchive<std::fs::File>,
    manifest: &BackupManifest,
) -> anyhow::Result<()> {
    let held: BTreeSet<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .filter(|n| n != MANIFEST)
        .collect();
    let listed: BTreeSet<String> = manifest.files.keys().cloned().collect();
    let missing: Vec<_> = listed.difference(&held).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the backup is missing files its manifest lists: {missing:?}"
    );
    let extra: Vec<_> = held.difference(&listed).collect();
    anyhow::ensure!(
        extra.is_empty(),
        "the backup holds files its manifest does not list: {extra:?}"
    );
    Ok(())
}

/// Where an archive entry goes in the data directory; nothing may climb out of it.
fn local_path(name: &str) -> anyhow::Result<PathBuf> {
    let relative = if name == DATABASE {
        DATABASE
    } else {
        name.strip_prefix(FILES)
            .ok_or_else(|| anyhow::anyhow!("unexpected entry {name:?} in the backup"))?
    };
    let path = PathBuf::from(relative);
    anyhow::ensure!(
        !relative.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_))),
        "unsafe path {name:?} in the backup"
    );
    Ok(path)
}

/// The restored database is the one the manifest describes, and names only files the
/// backup holds, with the contents its rows record.
fn check_database(db: &Path, manifest: &BackupManifest) -> anyhow::Result<()> {
    transfer::with_sqlite_file(db, |conn| {
        transfer::integrity_check(conn)?;
        let version = transfer::schema_version(conn)?;
        anyhow::ensure!(
            version == manifest.schema_version,
            "the database is at schema version {version}, the manifest says {}",
            manifest.schema_version
        );
        let counts = transfer::row_counts(conn)?;
        for (table, expected) in &manifest.tables {
            let found = counts.get(table).copied();
            anyhow::ensure!(
                found == Some(*expected),
                "table {table} has {} rows, the manifest says {expected}",
                found.map_or("no".to_owned(), |n| n.to_string())
            );
        }
        anyhow::ensure!(
            counts.len() == manifest.tables.len(),
            "the database has tables the manifest does not list"
        );
        let ledger = Ledger::of(conn)?;
        anyhow::ensure!(
            ledger == manifest.ledger,
            "the ledger does not match the manifest: found {ledger:?}, expected {:?}",
            manifest.ledger
        );
        check_named_files(conn, manifest)
    })
}

fn check_named_files(conn: &Connection, manifest: &BackupManifest) -> anyhow::Result<()> {
    let held = |relative: &str| manifest.files.get(&format!("{FILES}{relative}"));
    for relative in files_named_by(conn)? {
        anyhow::ensure!(
            held(&relative).is_some(),
            "the database names {relative}, which the backup does not hold"
        );
    }
    let builds: Vec<(String, String, String)> =
        conn.query_map("SELECT game_id, version, sha256 FROM versions", (), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    for (game_id, version, sha256) in builds {
        let relative = format!("uploadedGame/{game_id}/{version}/{BUILD_FILE}");
        anyhow::ensure!(
            held(&relative).is_some_and(|f| f.sha256 == sha256),
            "{relative} is not the build its version records (sha256 {sha256})"
        );
    }
    let assets: Vec<String> =
        conn.query_map("SELECT DISTINCT sha256 FROM assets", (), |r| r.get(0))?;
    for sha256 in assets {
        anyhow::ensure!(
            held(&format!("assets/{sha256}")).is_some_and(|f| f.sha256 == sha256),
            "assets/{sha256} does not hold the bytes its name promises"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry's name can put it only inside the data directory.
    #[test]
    fn entries_stay_inside_the_data_directory() {
        assert_eq!(
            local_path("ecliptic.db").unwrap(),
            PathBuf::from("ecliptic.db")
        );
        assert_eq!(
            local_path("files/assets/abc").unwrap(),
            PathBuf::from("assets/abc")
        );
        for bad in [
            "files/../escape",
            "files//etc/passwd",
            "files/",
            "elsewhere/x",
            "/etc",
        ] {
            assert!(local_path(bad).is_err(), "{bad}");
        }
    }
}
