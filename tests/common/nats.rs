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
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (apt-get install nats-server)");
        let server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + super::WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        server
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian puts it in /usr/sbin, which a user's PATH may lack. Installed first when
/// missing, as `.ci/run` does.
fn binary() -> &'static str {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/install-services");
        let ok = Command::new(script).status().is_ok_and(|s| s.success());
        assert!(
            ok,
            "{script} failed: install nats-server for the cluster tests"
        );
    });
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
