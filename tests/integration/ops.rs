//! What operators run the server with: readiness, and the files that ship with it.

use crate::common::TestServer;
use serde_json::json;

#[tokio::test]
async fn readyz_answers_once_the_store_and_the_sim_do() {
    let server = TestServer::start().await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ready", "sim": "ok", "store": "ok"}));
}
