//! Durable write throughput of the store: many clients at once, each waiting for its own
//! COMMIT before the next write, as the server's services do. Each write is a wallet grant
//! (a move, two entries, two balances: the ledger's whole transaction). Runs on SQLite in
//! a temp dir, and on PostgreSQL when `ECLIPTIC_BENCH_POSTGRES=postgres://user@host` is
//! set (a fresh database is made there and dropped after).
//!
//! `ECLIPTIC_BENCH_POSTGRES=postgres://postgres@127.0.0.1 cargo bench --bench store`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecliptic::metrics::Metrics;
use ecliptic::services::wallet;
use ecliptic::store::{Database, Store};

const WRITERS: usize = 64;
const WRITES_PER_WRITER: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = run(
        &runtime,
        &Database::Sqlite {
            data_dir: dir.path().to_owned(),
        },
    );
    report("sqlite", &sqlite);
    if let Ok(server) = std::env::var("ECLIPTIC_BENCH_POSTGRES") {
        let server = server.trim_end_matches('/').to_owned();
        let name = format!("ecliptic_bench_{}", std::process::id());
        admin(&server, &format!("CREATE DATABASE {name}"));
        let postgres = run(
            &runtime,
            &Database::Postgres {
                url: format!("{server}/{name}"),
            },
        );
        admin(&server, &format!("DROP DATABASE {name} WITH (FORCE)"));
        report("postgres", &postgres);
        println!(
            "store/writes: postgres / sqlite = {:.2}",
            postgres.per_sec / sqlite.per_sec
        );
    }
}

struct Measured {
    per_sec: f64,
    latencies: Vec<Duration>,
    commits: u64,
}

fn run(runtime: &tokio::runtime::Runtime, database: &Database) -> Measured {
    let metrics = Arc::new(Metrics::new());
    let store = Store::connect(database, metrics.clone(), Duration::from_secs(5)).expect("store");
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let user = uuid::Uuid::new_v4();
                    let mut latencies = Vec::with_capacity(WRITES_PER_WRITER);
                    for _ in 0..WRITES_PER_WRITER {
                        let asked = Instant::now();
                        wallet::grant(&store, user, 1).await.expect("grant");
                        latencies.push(asked.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for writer in writers {
            all.extend(writer.await.expect("writer"));
        }
        all
    });
    let elapsed = started.elapsed();
    let audit = store.read_now(wallet::audit).expect("audit");
    assert!(audit.holds(), "{:?}", audit.violations);
    assert_eq!(audit.users, (WRITERS * WRITES_PER_WRITER) as i64);
    let commits = metrics.store_commits.get();
    store.close();
    let mut latencies = latencies;
    latencies.sort_unstable();
    Measured {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
        commits,
    }
}

fn report(name: &str, measured: &Measured) {
    let at = |q: f64| {
        let last = measured.latencies.len() - 1;
        measured.latencies[((last as f64) * q) as usize]
    };
    println!(
        "store/writes {name}: {WRITERS} writers x {WRITES_PER_WRITER}: {:.0} writes/s, \
         {:.1} writes per commit, latency p50 {:.2?} p99 {:.2?}",
        measured.per_sec,
        measured.latencies.len() as f64 / measured.commits.max(1) as f64,
        at(0.50),
        at(0.99),
    );
}

fn admin(server: &str, sql: &str) {
    let url = format!("{server}/postgres");
    let sql = sql.to_owned();
    // The blocking client runs a runtime of its own: on a thread of its own.
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client.batch_execute(&sql).expect("admin statement");
    })
    .join()
    .expect("admin thread");
}
