//! `admin move-to`: a stopped node's SQLite data into an empty PostgreSQL database, and
//! its files into the directory the cluster's nodes share.
//!
//! The files go first (each copied under a temporary name, synced, renamed, and read back
//! against its hash), the database last, in one transaction that is checked before it
//! commits: the rows of every table, the ledger, every account's password hash, and the
//! token signing key, carried so that players' tokens stay valid. A failure anywhere rolls
//! the database back; the target is left empty, and the move can simply be run again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use super::*;
use crate::params;

/// What a move carried.
#[derive(Debug)]
pub struct MoveSummary {
    /// Rows per table, as copied and counted again on PostgreSQL.
    pub tables: BTreeMap<String, i64>,
    pub ledger: Ledger,
    /// Files now in the shared directory.
    pub files: usize,
    /// Whether the signing key went into the database (else tokens are signed anew and
    /// players log in again).
    pub signing_key_carried: bool,
}

/// Moves the data of `data_dir` (its database, snapshotted) into the empty PostgreSQL
/// database at `url`, and its files into `files_to` (which may be `data_dir` itself).
/// `signing_key_file` is where the node kept its key when not in `jwt.key`.
pub fn move_to(
    data_dir: &Path,
    url: &str,
    files_to: &Path,
    signing_key_file: Option<&Path>,
) -> anyhow::Result<MoveSummary> {
    let work = Scratch::beside(&data_dir.join(DATABASE))?;
    let snapshot = work.path.join(DATABASE);
    transfer::snapshot_sqlite(&data_dir.join(DATABASE), &snapshot)?;
    // An older node's data is brought to this server's schema, as the target will be.
    transfer::migrate_sqlite_file(&snapshot)?;
    let (mut tables, ledger, passwords, named) = transfer::with_sqlite_file(&snapshot, |conn| {
        Ok((
            transfer::row_counts(conn)?,
            Ledger::of(conn)?,
            password_hashes(conn)?,
            files_named_by(conn)?,
        ))
    })?;
    let key_path = signing_key_file.map_or_else(|| data_dir.join("jwt.key"), Path::to_owned);
    let key = crate::services::accounts::TokenKeys::read_secret(&key_path)?;
    let carried = key.is_some();
    if carried {
        *tables.entry("server_secrets".to_owned()).or_default() += 1;
    }

    let mut relatives = named;
    for (name, _) in loose_files(data_dir)? {
        if name != format!("{FILES}jwt.key") {
            relatives.push(name.trim_start_matches(FILES).to_owned());
        }
    }
    let files = copy_files(data_dir, files_to, &relatives)?;

    let expected = tables.clone();
    let expected_ledger = ledger.clone();
    transfer::copy_into_postgres(&snapshot, url, move |conn| {
        if let Some(secret) = &key {
            conn.execute(
                "INSERT INTO server_secrets (name, secret, created_at) VALUES ('jwt', ?1, ?2)",
                params![secret.as_slice(), chrono::Utc::now().timestamp_millis()],
            )?;
        }
        let counted = transfer::row_counts(conn)?;
        anyhow::ensure!(
            counted == expected,
            "the copy's rows differ from the source's: copied {counted:?}, expected {expected:?}"
        );
        let moved = Ledger::of(conn)?;
        anyhow::ensure!(
            moved == expected_ledger,
            "the ledger differs after the copy: {moved:?}, expected {expected_ledger:?}"
        );
        anyhow::ensure!(
            password_hashes(conn)? == passwords,
            "an account's password hash differs after the copy"
        );
        Ok(())
    })?;
    Ok(MoveSummary {
        tables,
        ledger,
        files,
        signing_key_carried: carried,
    })
}

/// Every account's password hash, so the move can show each still logs in as before.
fn password_hashes(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    conn.query_map(
        "SELECT user_id, password_hash FROM accounts ORDER BY user_id",
        (),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Copies each file (relative to both directories) from `from` to `to`, verified by
/// reading it back; one already there with the same bytes is kept, one with other bytes
/// refuses the move.
fn copy_files(from: &Path, to: &Path, relatives: &[String]) -> anyhow::Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("make {}", to.display()))?;
    let same = from.canonicalize()? == to.canonicalize()?;
    for relative in relatives {
        let source = from.join(relative);
        let expected = hash_file(&source)
            .with_context(|| format!("{relative} is named by the database but unreadable"))?;
        let dest = to.join(relative);
        if same {
            continue;
        }
        if dest.exists() {
            anyhow::ensure!(
                hash_file(&dest)? == expected,
                "{} already holds a different {relative}; move into an empty directory",
                to.display()
            );
            continue;
        }
        let parent = dest.parent().unwrap_or(to);
        std::fs::create_dir_all(parent)?;
        let partial = parent.join(format!(".{}.part", uuid::Uuid::new_v4().simple()));
        let mut out = std::fs::File::create(&partial)?;
        copy_hashing(&mut std::fs::File::open(&source)?, &mut out)?;
        out.sync_all()?;
        std::fs::rename(&partial, &dest)?;
        sync_parent(&dest)?;
        anyhow::ensure!(
            hash_file(&dest)? == expected,
            "{relative} changed on its way to {}",
            to.display()
        );
    }
    Ok(relatives.len())
}

fn hash_file(path: &Path) -> std::io::Result<FileEntry> {
    copy_hashing(&mut std::fs::File::open(path)?, &mut std::io::sink())
}
