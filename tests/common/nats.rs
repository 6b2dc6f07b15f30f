//! A NATS server of a test's own: `nats-server` on a free loopback port, stopped when the
//! guard drops. Clusters in tests also get a subject prefix of their own.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

pub struct NatsServer {
    child: Child,
    pub url: String,
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server starts (apt-get install nats-server)");
        // Ready when it says so on stderr; the rest of its log is drained so it never
        // waits on the pipe.
        let stderr = child.stderr.take().expect("stderr");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut ready = Some(ready_tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("Server is ready")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        tokio::time::timeout(super::WAIT, ready_rx)
            .await
            .expect("nats-server ready within the wait")
            .expect("nats-server said it is ready before exiting");
        Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs and starts what the cluster tests need (nats-server, PostgreSQL) when it is
/// missing, once per test binary, as `.ci/run` does.
pub fn ensure_services() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/install-services");
        let ok = Command::new(script).status().is_ok_and(|s| s.success());
        assert!(
            ok,
            "{script} failed: install nats-server and PostgreSQL for the cluster tests"
        );
    });
}

/// Debian puts it in /usr/sbin, which a user's PATH may lack.
fn binary() -> &'static str {
    ensure_services();
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

/// A subject prefix no other test uses.
pub fn prefix() -> String {
    format!("test{}", uuid::Uuid::new_v4().simple())
}
