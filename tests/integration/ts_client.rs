//! The TypeScript client of comms-ws.md, unchanged (`tests/node/realtime-client.ts` is the
//! spec's code block as is), subscribes, broadcasts and receives against a real server,
//! under Node with the `ws` package standing in for the browser's WebSocket.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{TestServer, token_for};

fn node_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node"))
}

/// Installs `ws` and `typescript` from the npm registry the first time.
fn ensure_packages() {
    if node_dir().join("node_modules/ws").exists()
        && node_dir().join("node_modules/typescript").exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(node_dir())
        .status()
        .expect("npm runs (Node.js and npm are needed for this test)");
    assert!(status.success(), "npm install failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spec_typescript_client_works_unchanged() {
    ensure_packages();
    let build = tempfile::tempdir().unwrap();
    let client = std::fs::read_to_string(node_dir().join("realtime-client.ts")).unwrap();
    let harness = std::fs::read_to_string(node_dir().join("harness.ts")).unwrap();
    let combined = build.path().join("combined.ts");
    std::fs::write(&combined, format!("{client}{harness}")).unwrap();
    let tsc = node_dir().join("node_modules/typescript/bin/tsc");
    let compiled = Command::new("node")
        .arg(&tsc)
        .args([
            "--target",
            "es2020",
            "--module",
            "commonjs",
            "--lib",
            "es2020,dom",
            "--outDir",
        ])
        .arg(build.path())
        .arg(&combined)
        .output()
        .expect("node runs");
    assert!(
        compiled.status.success(),
        "tsc: {}",
        String::from_utf8_lossy(&compiled.stdout)
    );

    let server = TestServer::start().await;
    let token = token_for(&server, "typescript").await;
    let url = format!("ws://{}/ws", server.handle().http_addr);
    let run = tokio::task::spawn_blocking({
        let script = build.path().join("combined.js");
        move || {
            Command::new("node")
                .arg(script)
                .env("NODE_PATH", node_dir().join("node_modules"))
                .env("COMMS_URL", url)
                .env("COMMS_TOKEN", token)
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("TS_CLIENT_OK"), "{stdout}");
    assert!(stdout.contains("\"recipients\":1"), "{stdout}");
}
