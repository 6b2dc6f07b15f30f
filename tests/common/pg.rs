//! A PostgreSQL server of a test's own, on a free port, that the test may stop and start
//! again (the shared one on 5432 must stay up for everyone else). Made with Debian's
//! `initdb` and `pg_ctl`; as root they run as the `postgres` user, which PostgreSQL needs.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivatePostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
}

/// Where Debian keeps the server's programs (the newest version installed).
fn bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs (.ci/install-services installs them)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(program)
}

/// `program args…`, as the `postgres` user when this is root.
fn run(program: &str, args: &[&str]) {
    let root = is_root();
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(program));
        c
    } else {
        Command::new(bin(program))
    };
    // Nothing piped: the server `pg_ctl start` leaves running would hold a pipe open.
    let status = command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("a PostgreSQL program runs");
    assert!(status.success(), "{program} {args:?}: {status}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl PrivatePostgres {
    /// A new, running server with a database `ecliptic`, trusting local connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).expect("the data directory");
        if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(chown.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let server = Self {
            _dir: dir,
            data,
            port,
        };
        server.up();
        run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "ecliptic",
            ],
        );
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ecliptic", self.port)
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            path(&self.data)
        );
        let log = self.data.join("server.log");
        run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-o",
                &options,
                "-l",
                path(&log),
                "-w",
                "-s",
                "start",
            ],
        );
    }

    /// Stops it at once, as a crash would (`immediate`: no checkpoint, clients cut off).
    pub fn down(&self) {
        run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-m",
                "immediate",
                "-w",
                "-s",
                "stop",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new(bin("pg_ctl"))
            .args(["-D", path(&self.data), "-m", "immediate", "stop"])
            .output();
        if is_root() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin("pg_ctl"))
                .args(["-D", path(&self.data), "-m", "immediate", "stop"])
                .output();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}
