//! The durable store: SQLite in the data directory (the default), or PostgreSQL when
//! several nodes share one database.
//!
//! One writer thread owns the write connection and commits in groups: every operation that
//! has queued while the previous transaction ran goes into the next transaction, each
//! inside its own savepoint so one failing operation does not undo the others. An
//! operation's reply is released only after COMMIT returns, so no client ever hears "ok"
//! for something a crash can take back. Reads go through a small pool of connections on
//! the blocking thread pool. Nothing here runs on the simulation thread: the simulation
//! hands operations over with [`Store::submit`], which never blocks.
//!
//! Operations are closures over a [`Connection`], which speaks the SQL both databases
//! understand (see [`sql`]); the same migrations build both schemas.

mod migrations;
mod sql;
pub mod transfer;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::{OpenFlags, TransactionBehavior};
use tokio::sync::{Semaphore, oneshot};

use crate::metrics::Metrics;

pub use sql::{
    ColumnIndex, Connection, FromValue, OptionalExtension, Params, Row, ToValue, Value,
    postgres_text,
};

/// Operations committed in one transaction at most; more wait for the next one.
const MAX_GROUP: usize = 512;
const READERS: usize = 4;
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Held while PostgreSQL migrations run, so nodes starting together apply each once.
const MIGRATION_LOCK: i64 = 0x6563_6c69_7074;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("a query that must return a row returned none")]
    NoRows,
    #[error("a column could not be read: {0}")]
    Conversion(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// An operation found the data in a state that must not happen; rolled back.
    #[error("internal invariant broken: {0}")]
    Invariant(String),
    /// A write on behalf of something another node now owns (a newer epoch holds it);
    /// refused, nothing written.
    #[error("refused: {0} is now owned elsewhere")]
    Fenced(String),
}

impl StoreError {
    /// Whether the database could not be reached (down, restarting, the connection lost),
    /// as opposed to refusing the operation: the caller may try again later, and nobody
    /// should be blamed for it.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Closed | StoreError::CommitFailed(_) => true,
            StoreError::Postgres(e) => {
                e.is_closed()
                    || e.as_db_error().is_none_or(|db| {
                        // Class 08 is connection exceptions, 57P is an operator intervention
                        // (a shutdown or restart in progress).
                        let code = db.code().code();
                        code.starts_with("08") || code.starts_with("57P")
                    })
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
            ),
            _ => false,
        }
    }
}

/// What PostgreSQL said, rather than the client's bare "db error".
fn postgres_message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// Where the store keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// `<data_dir>/ecliptic.db`.
    Sqlite { data_dir: PathBuf },
    /// A `postgres://` URL.
    Postgres { url: String },
}

impl Database {
    /// PostgreSQL when `url` is given, else SQLite in `data_dir`.
    pub fn choose(url: Option<&str>, data_dir: &Path) -> Self {
        match url {
            Some(url) => Self::Postgres {
                url: url.to_owned(),
            },
            None => Self::Sqlite {
                data_dir: data_dir.to_owned(),
            },
        }
    }
}

/// A write operation queued for the writer thread.
trait WriteJob: Send {
    /// Runs inside the group's transaction; `false` means the operation failed and its
    /// savepoint is rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Called once the transaction's fate is known.
    fn finish(self: Box<Self>, committed: bool);
}

struct Op<T, F, D> {
    op: Option<F>,
    result: Option<Result<T, StoreError>>,
    done: D,
}

impl<T, F, D> WriteJob for Op<T, F, D>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
    D: FnOnce(Result<T, StoreError>) + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let result = op(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: bool) {
        let outcome = match (committed, self.result) {
            (_, None) => Err(StoreError::Closed),
            (true, Some(result)) => result,
            (false, Some(Ok(_))) => Err(StoreError::CommitFailed(
                "the transaction was rolled back".into(),
            )),
            (false, Some(Err(e))) => Err(e),
        };
        (self.done)(outcome);
    }
}

type Job = Box<dyn WriteJob>;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader_permits: Semaphore,
    metrics: Arc<Metrics>,
}

enum Backend {
    Sqlite {
        path: PathBuf,
        busy_timeout: Duration,
        readers: Mutex<Vec<rusqlite::Connection>>,
    },
    Postgres {
        config: Box<postgres::Config>,
        /// Opened on first use, on the blocking pool.
        readers: Mutex<Vec<RefCell<sql::PgSession>>>,
    },
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing a PostgreSQL client blocks on its own runtime, which cannot happen on a
        // thread driving tokio's (the last handle may well be dropped there).
        if let Backend::Postgres { readers, .. } = &mut self.backend {
            let readers = std::mem::take(readers.get_mut());
            if !readers.is_empty() {
                std::thread::spawn(move || drop(readers));
            }
        }
    }
}

impl Store {
    /// The metrics this store counts into (shared by the server's services).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Opens (creating if needed) `<data_dir>/ecliptic.db`, applies migrations and starts
    /// the writer thread.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Self::open_with(data_dir, metrics, DEFAULT_BUSY_TIMEOUT)
    }

    /// Opens `database`, applies migrations and starts the writer thread. `busy_timeout`
    /// bounds how long a write waits for a lock another connection holds.
    pub fn connect(
        database: &Database,
        metrics: Arc<Metrics>,
        busy_timeout: Duration,
    ) -> anyhow::Result<Self> {
        match database {
            Database::Sqlite { data_dir } => Self::open_with(data_dir, metrics, busy_timeout),
            Database::Postgres { url } => Self::open_postgres(url, metrics, busy_timeout),
        }
    }

    /// [`Store::open`], waiting at most `busy_timeout` for a lock another process holds.
    pub fn open_with(
        data_dir: &Path,
        metrics: Arc<Metrics>,
        busy_timeout: Duration,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        make_private(data_dir, 0o700)?;
        let path = data_dir.join("ecliptic.db");
        let mut writer = open_sqlite(&path, false, busy_timeout)?;
        migrate_sqlite(&mut writer)?;
        // The database holds every game's GARP secret and every password hash. SQLite
        // creates its WAL and shared-memory files with the database file's mode.
        for file in ["ecliptic.db", "ecliptic.db-wal", "ecliptic.db-shm"] {
            let file = data_dir.join(file);
            if file.exists() {
                make_private(&file, 0o600)?;
            }
        }
        let readers = (0..READERS)
            .map(|_| open_sqlite(&path, true, busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let backend = Backend::Sqlite {
            path,
            busy_timeout,
            readers: Mutex::new(readers),
        };
        Self::start(backend, SqliteWriter(writer), metrics)
    }

    fn open_postgres(
        url: &str,
        metrics: Arc<Metrics>,
        busy_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("the database URL is not valid: {e}"))?;
        // A write waits for another node's lock at most this long, as on SQLite.
        let timeout_ms = busy_timeout.as_millis();
        let options = match config.get_options() {
            Some(given) => format!("{given} -c lock_timeout={timeout_ms}"),
            None => format!("-c lock_timeout={timeout_ms}"),
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("ecliptic");
        }
        // The client runs its own small runtime, which must not start inside another: the
        // connection is made, and the schema brought up to date, on a thread of its own.
        let session = off_runtime({
            let config = config.clone();
            move || -> anyhow::Result<sql::PgSession> {
                let client = config
                    .connect(postgres::NoTls)
                    .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
                let mut session = sql::PgSession::new(client);
                migrate_postgres(&mut session)?;
                Ok(session)
            }
        })?;
        let backend = Backend::Postgres {
            config: Box::new(config.clone()),
            readers: Mutex::new(Vec::new()),
        };
        let writer = PgWriter {
            config,
            session: RefCell::new(session),
        };
        Self::start(backend, writer, metrics)
    }

    fn start(
        backend: Backend,
        writer: impl GroupWriter + 'static,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let thread_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("ecliptic-store".into())
            .spawn(move || run_writer(writer, rx, thread_metrics))?;
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                reader_permits: Semaphore::new(READERS),
                metrics,
            }),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn dialect(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// How many of the server's migrations the database has had.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read_now(|conn| match conn.dialect() {
            "postgres" => conn.query_row("SELECT version FROM schema_version", (), |r| r.get(0)),
            _ => conn.query_row("PRAGMA user_version", (), |r| r.get(0)),
        })
    }

    /// Queues a write and calls `done` with its result after the transaction commits (or
    /// fails). Never blocks: the simulation thread uses this.
    pub fn submit<T, F, D>(&self, op: F, done: D)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        D: FnOnce(Result<T, StoreError>) + Send + 'static,
    {
        let job: Job = Box::new(Op {
            op: Some(op),
            result: None,
            done,
        });
        let sender = self.inner.jobs.lock().clone();
        let Some(tx) = sender else {
            job.finish(false);
            return;
        };
        self.inner.metrics.store_queue_depth.inc();
        if let Err(crossbeam_channel::SendError(job)) = tx.send(job) {
            self.inner.metrics.store_queue_depth.dec();
            job.finish(false);
        }
    }

    /// Runs `op` in the next group transaction and waits for COMMIT.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(op, move |result| {
            let _ = tx.send(result);
        });
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Runs a read on a pooled connection on the blocking pool.
    pub async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .inner
            .reader_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || match &inner.backend {
            Backend::Sqlite { readers, .. } => {
                let conn = readers.lock().pop().ok_or(StoreError::Closed)?;
                let result = op(&Connection::sqlite(&conn));
                readers.lock().push(conn);
                result
            }
            Backend::Postgres { config, readers } => with_pg_reader(config, readers, op),
        })
        .await
        .unwrap_or(Err(StoreError::Closed))
    }

    /// Runs a read on a fresh connection and waits for it. For command-line tools and
    /// start-up, never for request handling.
    pub fn read_now<T: Send>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite {
                path, busy_timeout, ..
            } => {
                let conn = open_sqlite(path, true, *busy_timeout)?;
                op(&Connection::sqlite(&conn))
            }
            Backend::Postgres { config, readers } => {
                off_runtime(|| with_pg_reader(config, readers, op))
            }
        }
    }

    /// Applies a plugin's own migrations, in order, each once: `mod_schema` records how
    /// many of `namespace`'s have run. Every table and index a migration creates must be
    /// named `<namespace>_…`, so plugins cannot collide with each other or the server; a
    /// migration that breaks this, or fails, is rolled back and the error returned. Blocks
    /// until committed: for start-up only.
    pub fn migrate_namespace(
        &self,
        namespace: &str,
        migrations: &'static [&'static str],
    ) -> Result<(), StoreError> {
        let valid = namespace.len() <= 32
            && namespace.starts_with(|c: char| c.is_ascii_lowercase())
            && namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Invariant(format!(
                "namespace {namespace:?} must be 1-32 of a-z, 0-9 and _, starting with a letter"
            )));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let name = namespace.to_owned();
        self.submit(
            move |conn| apply_namespace(conn, &name, migrations),
            move |result| {
                let _ = tx.send(result);
            },
        );
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Stops taking writes, commits everything queued, and waits for the writer to finish.
    pub fn close(&self) {
        self.inner.jobs.lock().take();
        if let Some(handle) = self.inner.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Runs a read on a pooled PostgreSQL connection (opened when the pool has none), on the
/// calling thread, which must not be one of tokio's runtime threads.
fn with_pg_reader<T>(
    config: &postgres::Config,
    readers: &Mutex<Vec<RefCell<sql::PgSession>>>,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // A pooled connection that died (a restart of the server) is replaced before it can
    // fail a request.
    let pooled = readers.lock().pop();
    let session = match pooled {
        Some(session) if session.borrow_mut().is_healthy() => session,
        _ => RefCell::new(sql::PgSession::new(config.connect(postgres::NoTls)?)),
    };
    let result = op(&Connection::postgres(&session));
    match &result {
        // A connection that failed for want of the server is not pooled again: kept, and
        // trusted as recently used, it would fail the next request too.
        Err(e) if e.is_unavailable() => return result,
        Ok(_) => session.borrow_mut().last_used = std::time::Instant::now(),
        Err(_) => {}
    }
    if !session.borrow().client.is_closed() {
        readers.lock().push(session);
    }
    result
}

/// Runs `f` on a thread of its own and waits for it: the PostgreSQL client blocks on a
/// runtime of its own, which cannot start on a thread already inside tokio's.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn open_sqlite(
    path: &Path,
    read_only: bool,
    busy_timeout: Duration,
) -> Result<rusqlite::Connection, rusqlite::Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(128);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a COMMIT that returned is on disk, also across power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

fn migrate_sqlite(conn: &mut rusqlite::Connection) -> anyhow::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    anyhow::ensure!(
        current <= migrations::MIGRATIONS.len(),
        "the database schema (version {current}) is newer than this server knows"
    );
    for (index, sql) in migrations::MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}

/// The same migrations on PostgreSQL, in one transaction under an advisory lock; the
/// version is kept in `schema_version`.
fn migrate_postgres(session: &mut sql::PgSession) -> anyhow::Result<()> {
    let client = &mut session.client;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let current: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|row| row.get(0))
        .unwrap_or(0);
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    anyhow::ensure!(
        current <= migrations::MIGRATIONS.len(),
        "the database schema (version {current}) is newer than this server knows"
    );
    for (index, sql) in migrations::MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(&migrations::postgres_schema(sql))?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    let version = migrations::MIGRATIONS.len() as i64;
    tx.execute("DELETE FROM schema_version", &[])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&version],
    )?;
    tx.commit()?;
    Ok(())
}

fn apply_namespace(
    conn: &Connection,
    namespace: &str,
    migrations: &[&str],
) -> Result<(), StoreError> {
    // Nodes starting together take turns, as with the server's own migrations.
    if conn.dialect() == "postgres" {
        conn.query_row(
            "SELECT CAST(pg_advisory_xact_lock(?1) AS TEXT)",
            [MIGRATION_LOCK],
            |_| Ok(()),
        )?;
    }
    let done: i64 = conn
        .query_row(
            "SELECT version FROM mod_schema WHERE namespace = ?1",
            [namespace],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let done = usize::try_from(done).unwrap_or(usize::MAX);
    if done > migrations.len() {
        return Err(StoreError::Invariant(format!(
            "{namespace}'s tables are at version {done}; this server knows {}",
            migrations.len()
        )));
    }
    let prefix = format!("{namespace}_");
    for (index, sql) in migrations.iter().enumerate().skip(done) {
        let before = conn.schema_names()?;
        if conn.dialect() == "postgres" {
            conn.execute_batch(&migrations::postgres_schema(sql))?;
        } else {
            conn.execute_batch(sql)?;
        }
        let after = conn.schema_names()?;
        let created = after.iter().filter(|n| !before.contains(n));
        let dropped = before.iter().filter(|n| !after.contains(n));
        if let Some(stray) = created.chain(dropped).find(|n| !n.starts_with(&prefix)) {
            return Err(StoreError::Invariant(format!(
                "{namespace}'s migration {} creates or drops {stray:?}; it may only touch names starting with {prefix:?}",
                index + 1
            )));
        }
        tracing::info!(
            namespace,
            version = index + 1,
            "applied a plugin's migration"
        );
    }
    conn.execute(
        "INSERT INTO mod_schema (namespace, version) VALUES (?1, ?2)
         ON CONFLICT (namespace) DO UPDATE SET version = excluded.version",
        crate::params![namespace, migrations.len() as i64],
    )?;
    Ok(())
}

/// The writer thread's connection: runs one group of jobs in one transaction.
trait GroupWriter: Send {
    /// Runs `group`, each job in its own savepoint; returns whether it committed.
    fn commit_group(&mut self, group: &mut [Job]) -> bool;
    /// Called once, after the last group.
    fn close(&mut self) {}
}

fn run_writer(mut writer: impl GroupWriter, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    // Blocks until a job arrives or every sender is gone; queued jobs are still delivered
    // after the last sender drops, so a shutdown commits everything that was accepted.
    while let Ok(first) = jobs.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        metrics.store_queue_depth.sub(group.len() as i64);
        let committed = writer.commit_group(&mut group);
        if committed {
            metrics.store_commits.inc();
            metrics.store_ops.inc_by(group.len() as u64);
        }
        for job in group.drain(..) {
            job.finish(committed);
        }
    }
    writer.close();
}

struct SqliteWriter(rusqlite::Connection);

impl GroupWriter for SqliteWriter {
    fn commit_group(&mut self, group: &mut [Job]) -> bool {
        let mut tx = match self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!("store: cannot begin a transaction: {e}");
                return false;
            }
        };
        for job in group.iter_mut() {
            let mut sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    tracing::error!("store: savepoint failed: {e}");
                    return false;
                }
            };
            if job.run(&Connection::sqlite(&sp)) {
                if let Err(e) = sp.commit() {
                    tracing::error!("store: savepoint release failed: {e}");
                    return false;
                }
            } else if let Err(e) = sp.rollback() {
                tracing::error!("store: savepoint rollback failed: {e}");
                return false;
            }
        }
        match tx.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("store: commit failed: {e}");
                false
            }
        }
    }

    fn close(&mut self) {
        if let Err(e) = self.0.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::debug!("final checkpoint skipped: {e}");
        }
    }
}

struct PgWriter {
    config: postgres::Config,
    session: RefCell<sql::PgSession>,
}

impl PgWriter {
    /// Replaces the connection with a new one; false (logged) if none can be opened.
    fn reconnect(&mut self) -> bool {
        match self.config.connect(postgres::NoTls) {
            Ok(client) => {
                *self.session.borrow_mut() = sql::PgSession::new(client);
                true
            }
            Err(e) => {
                tracing::error!("store: cannot reconnect to PostgreSQL: {e}");
                false
            }
        }
    }

    fn batch(&self, sql: &str) -> Result<(), postgres::Error> {
        self.session.borrow_mut().client.batch_execute(sql)
    }
}

impl GroupWriter for PgWriter {
    fn commit_group(&mut self, group: &mut [Job]) -> bool {
        // A connection the server closed (a restart, a failover) is opened again.
        if !self.session.borrow_mut().is_healthy() && !self.reconnect() {
            return false;
        }
        if let Err(e) = self.batch("BEGIN") {
            // A connection trusted as recently used can still have died with the server
            // (a restart within the trust window). Nothing has run yet: open another and
            // begin again rather than fail the group.
            tracing::warn!("store: cannot begin a transaction ({e}); reconnecting");
            if !self.reconnect() {
                return false;
            }
            if let Err(e) = self.batch("BEGIN") {
                tracing::error!("store: cannot begin a transaction: {e}");
                return false;
            }
        }
        for job in group.iter_mut() {
            if let Err(e) = self.batch("SAVEPOINT job") {
                tracing::error!("store: savepoint failed: {e}");
                let _ = self.batch("ROLLBACK");
                return false;
            }
            let ok = job.run(&Connection::postgres(&self.session));
            let end = if ok {
                "RELEASE SAVEPOINT job"
            } else {
                "ROLLBACK TO SAVEPOINT job"
            };
            if let Err(e) = self.batch(end) {
                tracing::error!("store: {end} failed: {e}");
                let _ = self.batch("ROLLBACK");
                return false;
            }
        }
        self.session.borrow_mut().last_used = std::time::Instant::now();
        match self.batch("COMMIT") {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("store: commit failed: {e}");
                false
            }
        }
    }
}

/// Sets `path`'s permission bits to `mode` (owner only), whatever the umask was when it
/// was made, and whatever an older version left.
pub fn make_private(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
