//! A NATS server of a test's own: `nats-server` on a free loopback port, stopped when the
//! guard drops. Clusters in tests also get a subject prefix of their own.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    pub url: String,
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self {
            child: Some(run(port).await),
            port,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }

    /// Kills the server (its clients see the connection drop).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (clients reconnect on their own).
    pub async fn up(&mut self) {
        if self.child.is_none() {
            self.child = Some(run(self.port).await);
        }
    }
}

/// `nats-server` on `port`, once it says it is ready.
async fn run(port: u16) -> Child {
    {
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
        child
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.down();
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
