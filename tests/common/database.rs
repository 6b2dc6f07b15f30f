//! The database the suite runs on. By default every data directory holds its own SQLite
//! file. With `ECLIPTIC_TEST_POSTGRES=postgres://user@host:port` set, every data directory
//! gets a PostgreSQL database of its own instead, named after the directory and made on
//! first use, so servers restarted (or started side by side) on one data directory share
//! it as they would share the file.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use ecliptic::metrics::Metrics;
use ecliptic::store::{Database, Store};

/// Where the suite's PostgreSQL server is, when the suite runs on PostgreSQL.
pub fn postgres_server() -> Option<String> {
    std::env::var("ECLIPTIC_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// Every database made by this test binary: names start with this prefix, so a run can
/// drop what an earlier one left.
pub const PREFIX: &str = "ecliptic_t_";

/// The `--database` URL for a server on `data_dir`: `None` on SQLite.
pub fn url_for(data_dir: &Path) -> Option<String> {
    let server = postgres_server()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let name = format!("{PREFIX}{:016x}", hasher.finish());
    static MADE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let mut made = made.lock().expect("the set of databases");
    if !made.contains(&name) {
        create_database(&server, &name);
        made.insert(name.clone());
    }
    Some(format!("{server}/{name}"))
}

/// The store of `data_dir`, as the server opens it, for a test to look at what is durable.
pub fn open_store(data_dir: &Path) -> Store {
    let url = url_for(data_dir);
    Store::connect(
        &Database::choose(url.as_deref(), data_dir),
        Arc::new(Metrics::new()),
        std::time::Duration::from_secs(20),
    )
    .expect("open the store")
}

/// `ecliptic` with the database of `data_dir` (for its command-line tools).
pub fn ecliptic_command(data_dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ecliptic"));
    if let Some(url) = url_for(data_dir) {
        command.env("ECLIPTIC_DATABASE", url);
    }
    command
}

/// Runs `op` in a write transaction of `store` and waits for its COMMIT (from any thread,
/// a test's runtime included: the store's writer is a thread of its own).
pub fn write_now<T: Send + 'static>(
    store: &Store,
    op: impl FnOnce(&ecliptic::store::Connection) -> Result<T, ecliptic::store::StoreError>
    + Send
    + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit(op, move |result| {
        let _ = tx.send(result);
    });
    rx.recv()
        .expect("the store answers")
        .expect("the write commits")
}

/// Another connection's write transaction holding every table of `data_dir`'s database,
/// so the server's writes wait for it and, past their lock timeout, fail.
pub enum DbLock {
    Sqlite(rusqlite::Connection),
    Postgres {
        release: std::sync::mpsc::Sender<()>,
        holder: std::thread::JoinHandle<()>,
    },
}

impl DbLock {
    /// Takes the lock, waiting for the server's writer to finish its transaction.
    pub fn take(data_dir: &Path) -> Self {
        match url_for(data_dir) {
            None => {
                let conn = rusqlite::Connection::open(data_dir.join("ecliptic.db"))
                    .expect("open the database");
                conn.busy_timeout(std::time::Duration::from_secs(20))
                    .expect("timeout");
                conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
                Self::Sqlite(conn)
            }
            Some(url) => {
                let (locked_tx, locked) = std::sync::mpsc::channel();
                let (release, released) = std::sync::mpsc::channel::<()>();
                let holder = std::thread::spawn(move || {
                    let mut client =
                        postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                    let mut tx = client.transaction().expect("begin");
                    let tables: Vec<String> = tx
                        .query(
                            "SELECT CAST(tablename AS TEXT) FROM pg_tables
                             WHERE schemaname = current_schema()",
                            &[],
                        )
                        .expect("tables")
                        .iter()
                        .map(|row| row.get(0))
                        .collect();
                    tx.batch_execute(&format!(
                        "LOCK TABLE {} IN EXCLUSIVE MODE",
                        tables.join(", ")
                    ))
                    .expect("lock");
                    locked_tx.send(()).expect("the test waits");
                    let _ = released.recv();
                    tx.rollback().expect("unlock");
                });
                locked.recv().expect("the tables are locked");
                Self::Postgres { release, holder }
            }
        }
    }

    pub fn release(self) {
        match self {
            Self::Sqlite(conn) => conn.execute_batch("ROLLBACK").expect("unlock"),
            Self::Postgres { release, holder } => {
                let _ = release.send(());
                holder.join().expect("the lock's holder");
            }
        }
    }
}

/// The suite's PostgreSQL server (`ECLIPTIC_TEST_POSTGRES`, or the one `.ci/install-services`
/// starts), for tests that always need one: the cluster's nodes share a database.
pub fn postgres_server_or_local() -> String {
    postgres_server().unwrap_or_else(|| "postgres://postgres:postgres@127.0.0.1:5432".into())
}

/// A new, empty PostgreSQL database; its URL.
pub fn fresh_postgres() -> String {
    let server = postgres_server_or_local();
    let name = format!("{PREFIX}{}", uuid::Uuid::new_v4().simple());
    create_database(&server, &name);
    format!("{server}/{name}")
}

/// Creates `name` on `server` unless it is there.
fn create_database(server: &str, name: &str) {
    // The local server is started when missing; one named by the variable is the
    // caller's to run.
    if postgres_server().is_none() {
        super::nats::ensure_services();
    }
    let admin = format!("{server}/postgres");
    let create = format!("CREATE DATABASE {name}");
    // The client blocks on a runtime of its own: not on a test's runtime thread.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                    .expect("connect to the suite's PostgreSQL server");
                match client.batch_execute(&create) {
                    Ok(()) => {}
                    Err(e) if e.code() == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                    Err(e) => panic!("{create}: {e}"),
                }
            })
            .join()
            .expect("create the database");
    });
}

/// The store `server` runs on (its data directory's, or the database its config names).
pub fn open_server_store(server: &super::TestServer) -> Store {
    Store::connect(
        &server.config.store.database(&server.config.data_dir),
        Arc::new(Metrics::new()),
        std::time::Duration::from_secs(20),
    )
    .expect("open the store")
}
