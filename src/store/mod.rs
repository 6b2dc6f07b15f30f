//! SQLite, the one durable store.
//!
//! One writer thread owns the write connection and commits in groups: every operation that
//! has queued while the previous transaction ran goes into the next `BEGIN IMMEDIATE …
//! COMMIT`, each inside its own savepoint so one failing operation does not undo the others.
//! An operation's reply is released only after COMMIT returns, so no client ever hears "ok"
//! for something a crash can take back. Reads go through a small pool of read-only
//! connections on the blocking thread pool. Nothing here runs on the simulation thread:
//! the simulation hands operations over with [`Store::submit`], which never blocks.

mod migrations;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{Semaphore, oneshot};

use crate::metrics::Metrics;

pub use rusqlite;

/// Operations committed in one transaction at most; more wait for the next one.
const MAX_GROUP: usize = 512;
const READERS: usize = 4;
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is shutting down")]
    Closed,
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// An operation found the data in a state that must not happen; rolled back.
    #[error("internal invariant broken: {0}")]
    Invariant(String),
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
    path: PathBuf,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    metrics: Arc<Metrics>,
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

    /// [`Store::open`], waiting at most `busy_timeout` for a lock another process holds.
    pub fn open_with(
        data_dir: &Path,
        metrics: Arc<Metrics>,
        busy_timeout: Duration,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        make_private(data_dir, 0o700)?;
        let path = data_dir.join("ecliptic.db");
        let mut writer = open_connection(&path, false, busy_timeout)?;
        migrate(&mut writer)?;
        // The database holds every game's GARP secret and every password hash. SQLite
        // creates its WAL and shared-memory files with the database file's mode.
        for file in ["ecliptic.db", "ecliptic.db-wal", "ecliptic.db-shm"] {
            let file = data_dir.join(file);
            if file.exists() {
                make_private(&file, 0o600)?;
            }
        }
        let readers = (0..READERS)
            .map(|_| open_connection(&path, true, busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let thread_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("ecliptic-store".into())
            .spawn(move || run_writer(writer, rx, thread_metrics))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                readers: Mutex::new(readers),
                reader_permits: Semaphore::new(READERS),
                metrics,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
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

    /// Runs a read on a pooled read-only connection on the blocking pool.
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
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.lock().pop().ok_or(StoreError::Closed)?;
            let result = op(&conn);
            inner.readers.lock().push(conn);
            result
        })
        .await
        .unwrap_or(Err(StoreError::Closed))
    }

    /// Runs a read on the calling thread with a fresh connection. For command-line tools
    /// and start-up, never for request handling.
    pub fn read_now<T>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = open_connection(&self.inner.path, true, DEFAULT_BUSY_TIMEOUT)?;
        op(&conn)
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

fn open_connection(
    path: &Path,
    read_only: bool,
    busy_timeout: Duration,
) -> Result<Connection, rusqlite::Error> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a COMMIT that returned is on disk, also across power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
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

fn apply_namespace(
    conn: &Connection,
    namespace: &str,
    migrations: &[&str],
) -> Result<(), StoreError> {
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
    let names = |conn: &Connection| -> Result<Vec<String>, StoreError> {
        let mut stmt =
            conn.prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let prefix = format!("{namespace}_");
    for (index, sql) in migrations.iter().enumerate().skip(done) {
        let before = names(conn)?;
        conn.execute_batch(sql)?;
        let after = names(conn)?;
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
        rusqlite::params![namespace, migrations.len() as i64],
    )?;
    Ok(())
}

fn run_writer(mut conn: Connection, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
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
        let committed = commit_group(&mut conn, &mut group);
        if committed {
            metrics.store_commits.inc();
            metrics.store_ops.inc_by(group.len() as u64);
        }
        for job in group.drain(..) {
            job.finish(committed);
        }
    }
    if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::debug!("final checkpoint skipped: {e}");
    }
}

/// Runs one group in one transaction, each job in its own savepoint. Returns whether the
/// transaction committed.
fn commit_group(conn: &mut Connection, group: &mut [Job]) -> bool {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
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
        if job.run(&sp) {
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
