//! Project saves from a shared base: the second conflicts, nothing is lost.

use crate::common;

use common::TestServer;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn two_saves_from_one_base_the_second_conflicts_and_nothing_is_lost() {
    let server = TestServer::start().await;
    let mut alice = Raos::connect(&server).await;
    let token = alice.sign_in(&server, "editor").await;
    let mut second = Raos::connect(&server).await;
    let created = alice
        .ok(
            "create_game_project",
            json!({"auth_token": token, "name": "Shared"}),
        )
        .await;
    let project_id = created["project_id"].as_str().unwrap().to_owned();
    let load = json!({"auth_token": token, "project_id": project_id});
    let first_copy = alice.ok("load_game_project", load.clone()).await;
    let second_copy = second.ok("load_game_project", load.clone()).await;
    let base = first_copy["project"]["modified_date"].clone();
    assert_eq!(base, second_copy["project"]["modified_date"]);

    let saved = alice
        .ok(
            "save_game_project",
            json!({"auth_token": token, "expected_modified_date": base,
                   "project": {"project_id": project_id, "scenes": [{"name": "from alice"}]}}),
        )
        .await;
    let message = second
        .fail(
            "save_game_project",
            json!({"auth_token": token, "expected_modified_date": base,
                   "project": {"project_id": project_id, "scenes": [{"name": "from bob"}]}}),
            1000,
        )
        .await;
    assert!(message.contains("modified"), "{message}");

    let now = second.ok("load_game_project", load).await;
    assert_eq!(now["project"]["scenes"], json!([{"name": "from alice"}]));
    assert_eq!(now["project"]["modified_date"], saved["modified_date"]);
}
