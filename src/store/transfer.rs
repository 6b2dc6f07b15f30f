//! Whole-database copies: a consistent snapshot of a live SQLite file (SQLite's online
//! backup API), counts of every table, and the move of a SQLite database into an empty
//! PostgreSQL one. What the copies mean to the server (which files go with them, the
//! ledger) is the backup service's business; this module knows tables and rows only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use postgres::types::ToSql;
use rusqlite::backup::{Backup, StepResult};

use super::sql::{Connection, PgSession, Value};
use super::{StoreError, migrations, off_runtime, open_sqlite};

/// How long a snapshot waits for the live database's lock before it gives up.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(30);

/// Copies the database at `source` (a live server's, in WAL mode) into a new file at
/// `dest`: all pages in one step, so the copy is one transaction's view of the database,
/// and the server's writers are never blocked (WAL lets them go on beside a reader).
pub fn snapshot_sqlite(source: &Path, dest: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        source.is_file(),
        "no database at {}: is this the server's data directory?",
        source.display()
    );
    let from = open_sqlite(source, true, SNAPSHOT_PATIENCE)
        .with_context(|| format!("open {}", source.display()))?;
    let mut to = rusqlite::Connection::open(dest)?;
    let started = std::time::Instant::now();
    {
        let backup = Backup::new(&from, &mut to)?;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                _ if started.elapsed() < SNAPSHOT_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => anyhow::bail!(
                    "the database stayed locked for {}s; try again",
                    SNAPSHOT_PATIENCE.as_secs()
                ),
            }
        }
    }
    // The copy is a plain rollback-journal file: one file, nothing beside it.
    to.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Runs `op` on the SQLite file at `path` (a snapshot or a restored copy), read only.
pub fn with_sqlite_file<T>(
    path: &Path,
    op: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let conn = open_sqlite(path, true, Duration::from_secs(5))
        .with_context(|| format!("open {}", path.display()))?;
    op(&Connection::sqlite(&conn))
}

/// Brings the SQLite file at `path` to this server's schema (a snapshot of an older node).
pub fn migrate_sqlite_file(path: &Path) -> anyhow::Result<()> {
    let mut conn = open_sqlite(path, false, Duration::from_secs(5))?;
    super::migrate_sqlite(&mut conn)
}

/// The schema version a database records (SQLite's `user_version`, PostgreSQL's table).
pub fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    match conn.dialect() {
        "postgres" => conn.query_row("SELECT version FROM schema_version", (), |r| r.get(0)),
        _ => conn.query_row("PRAGMA user_version", (), |r| r.get(0)),
    }
}

/// How many migrations this server has: a database recording more is from a newer one.
pub fn known_schema_version() -> i64 {
    migrations::MIGRATIONS.len() as i64
}

/// The rows of every table, by name; PostgreSQL's `schema_version` bookkeeping aside.
pub fn row_counts(conn: &Connection) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut counts = BTreeMap::new();
    for table in conn.tables()? {
        if table == "schema_version" {
            continue;
        }
        let count = conn.query_row(
            &format!("SELECT COUNT(*) FROM {}", quoted(&table)),
            (),
            |r| r.get(0),
        )?;
        counts.insert(table, count);
    }
    Ok(counts)
}

/// `PRAGMA integrity_check` of a SQLite file: `Ok` when it says "ok".
pub fn integrity_check(conn: &Connection) -> anyhow::Result<()> {
    let problems: Vec<String> = conn.query_map("PRAGMA integrity_check", (), |r| r.get(0))?;
    anyhow::ensure!(
        problems.len() == 1 && problems[0] == "ok",
        "the database is damaged: {}",
        problems.join("; ")
    );
    Ok(())
}

/// Copies every table of the SQLite file at `source` into the empty PostgreSQL database at
/// `url`, in one transaction: the schema is made by the server's migrations (a plugin's
/// tables from their SQLite definitions), rows go in with `COPY`, and identity columns
/// continue after the largest id copied. `check` runs inside the transaction, after the
/// copy; an error from it (or anywhere) rolls everything back, so the target is left as
/// empty as it was found.
pub fn copy_into_postgres(
    source: &Path,
    url: &str,
    check: impl FnOnce(&Connection) -> anyhow::Result<()> + Send,
) -> anyhow::Result<()> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("the database URL is not valid: {e}"))?;
    off_runtime(move || {
        let client = config
            .connect(postgres::NoTls)
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
        let mut session = PgSession::new(client);
        refuse_unless_empty(&mut session.client)?;
        super::migrate_postgres(&mut session)?;
        let sqlite = open_sqlite(source, true, Duration::from_secs(5))?;
        let session = std::cell::RefCell::new(session);
        session.borrow_mut().client.batch_execute("BEGIN")?;
        let copied = copy_tables(&sqlite, &session).and_then(|()| {
            let target = Connection::postgres(&session);
            check(&target)
        });
        let mut session = session.into_inner();
        match copied {
            Ok(()) => {
                session.client.batch_execute("COMMIT")?;
                Ok(())
            }
            Err(e) => {
                let _ = session.client.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    })
}

/// A target with rows in it (or tables of something else) is refused before anything is
/// written: a move into a used database would mix two servers' data.
fn refuse_unless_empty(client: &mut postgres::Client) -> anyhow::Result<()> {
    let tables: Vec<String> = client
        .query(
            "SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE schemaname = current_schema()
             ORDER BY tablename",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    anyhow::ensure!(
        tables.iter().any(|t| t == "schema_version"),
        "the target database is not empty: it holds tables that are not this server's ({}); \
         move into a new database (CREATE DATABASE …)",
        tables.join(", ")
    );
    for table in tables.iter().filter(|t| *t != "schema_version") {
        // The migrations' own row (the ledger's mint, at zero) is part of an empty schema.
        let filter = if table == "wallet_accounts" {
            " WHERE NOT (account_id = 'mint' AND balance = 0)"
        } else {
            ""
        };
        let rows: i64 = client
            .query_one(
                &format!("SELECT COUNT(*) FROM {}{filter}", quoted(table)),
                &[],
            )?
            .get(0);
        anyhow::ensure!(
            rows == 0,
            "the target database is not empty: table {table} holds {rows} row(s); move into \
             a new database (CREATE DATABASE …), or one no server has run on"
        );
    }
    Ok(())
}

fn copy_tables(
    sqlite: &rusqlite::Connection,
    session: &std::cell::RefCell<PgSession>,
) -> anyhow::Result<()> {
    let target_tables: BTreeSet<String> = Connection::postgres(session)
        .tables()?
        .into_iter()
        .collect();
    let client = &mut session.borrow_mut().client;
    // The migrations' seed row comes over with the rest of its table.
    client.batch_execute("DELETE FROM wallet_accounts")?;
    for table in tables_in_dependency_order(sqlite)? {
        if !target_tables.contains(&table) {
            create_like(sqlite, client, &table)?;
        }
        copy_table(sqlite, client, &table).with_context(|| format!("copying table {table}"))?;
    }
    continue_identities(client)
}

/// Every table, each after the tables its foreign keys name.
fn tables_in_dependency_order(sqlite: &rusqlite::Connection) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = sqlite
        .prepare(
            "SELECT name FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &names {
        let parents: BTreeSet<String> = sqlite
            .prepare(&format!("PRAGMA foreign_key_list({})", quoted(name)))?
            .query_map([], |r| r.get::<_, String>(2))?
            .collect::<Result<_, _>>()?;
        needs.insert(
            name.clone(),
            parents.into_iter().filter(|p| p != name).collect(),
        );
    }
    let mut ordered = Vec::with_capacity(names.len());
    while !needs.is_empty() {
        let ready: Vec<String> = needs
            .iter()
            .filter(|(_, parents)| parents.iter().all(|p| !needs.contains_key(p)))
            .map(|(name, _)| name.clone())
            .collect();
        anyhow::ensure!(
            !ready.is_empty(),
            "the tables' foreign keys form a cycle: {:?}",
            needs.keys().collect::<Vec<_>>()
        );
        for name in ready {
            needs.remove(&name);
            ordered.push(name);
        }
    }
    Ok(ordered)
}

/// A plugin's table (and its indexes) made on PostgreSQL from its SQLite definition, as
/// the plugin's own migration would have made it there.
fn create_like(
    sqlite: &rusqlite::Connection,
    client: &mut postgres::Client,
    table: &str,
) -> anyhow::Result<()> {
    let definitions: Vec<String> = sqlite
        .prepare(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL
             ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, name",
        )?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for definition in definitions {
        client
            .batch_execute(&migrations::postgres_schema(&definition))
            .with_context(|| format!("creating {table} on PostgreSQL"))?;
    }
    Ok(())
}

fn copy_table(
    sqlite: &rusqlite::Connection,
    client: &mut postgres::Client,
    table: &str,
) -> anyhow::Result<()> {
    let columns: Vec<String> = sqlite
        .prepare(&format!("PRAGMA table_info({})", quoted(table)))?
        .query_map([], |r| r.get(1))?
        .collect::<Result<_, _>>()?;
    let list = columns
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let types: Vec<postgres::types::Type> = client
        .prepare(&format!("SELECT {list} FROM {}", quoted(table)))?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let sink = client.copy_in(&format!(
        "COPY {} ({list}) FROM STDIN BINARY",
        quoted(table)
    ))?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
    let mut statement = sqlite.prepare(&format!("SELECT {list} FROM {}", quoted(table)))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let values: Vec<Value> = (0..columns.len())
            .map(|i| row.get_ref(i).map(super::sql::sqlite_value))
            .collect::<Result<_, _>>()?;
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        writer.write(&params)?;
    }
    writer.finish()?;
    Ok(())
}

/// Identity columns go on after the largest id copied, so the next insert does not
/// collide with a copied row.
fn continue_identities(client: &mut postgres::Client) -> anyhow::Result<()> {
    let identities: Vec<(String, String)> = client
        .query(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (table, column) in identities {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({c}), 0) + 1, false) \
             FROM {t}",
            c = quoted(&column),
            t = quoted(&table)
        );
        client.query_one(&sql, &[&table, &column])?;
    }
    Ok(())
}

/// An identifier in double quotes, as both databases take it.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
