//! The fields of each action's success answer, and the data of the events actions
//! publish: the RaOS spec's shapes for the domain's values. The envelope (`success`,
//! `request_id`) is [`super::success`]'s and [`super::with_request_id`]'s.

use serde_json::{Value, json};

use crate::services::accounts::{Account, Grant};
use crate::services::assets::Analysis;
use crate::services::catalog::{Game, Version};
use crate::services::progress::{AchievementDef, Rank, Stats};
use crate::services::studio::{AssetRecord, Content, ProjectSummary};

/// An action answered with nothing but success.
pub fn done() -> Value {
    json!({})
}

/// `POST /api/v1/auth/register`: the new account.
pub fn registered(account: &Account) -> Value {
    json!({ "user_profile": super::user_profile(account), "roles": account.roles })
}

/// `refresh_token`: the new pair.
pub fn tokens(grant: &Grant) -> Value {
    json!({
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "expires_in": grant.expires_in,
    })
}

/// `list_games`: each game as the studio lists it (`players` as a range, `rating` out of 5).
pub fn games<'a>(games: impl Iterator<Item = &'a Game>) -> Value {
    let line = |game: &Game| {
        let players = if game.max_players <= 1 {
            "1".to_owned()
        } else {
            format!("1-{}", game.max_players)
        };
        json!({
            "game_id": game.game_id,
            "name": game.name,
            "description": game.description,
            "genre": game.game_type,
            "players": players,
            "rating": game.avg_score().map(|s| format!("{}/5", (s * 10.0).round() / 10.0)),
            "latest_version": game.latest_version(),
        })
    };
    json!({ "games": games.map(line).collect::<Vec<_>>() })
}

/// `launch_game` in stream mode: where the session is played.
pub fn stream_launched(session_id: &str, stream_url: &str) -> Value {
    json!({
        "session_id": session_id,
        "stream_url": stream_url,
        "system_id": session_id,
        "mode": "stream",
    })
}

/// `launch_game` in download mode and `download_game`: the build to fetch.
pub fn download_ready(session_id: &str, download_url: &str, version: &Version) -> Value {
    json!({
        "session_id": session_id,
        "download_url": download_url,
        "version": version.version,
        "size": version.size_bytes,
        "hash": version.sha256,
        "mode": "download",
    })
}

/// The `game_state_change` event: a streamed session `started` or `stopped`.
pub fn game_state_change(session_id: &str, game_id: &str, state: &str, player: &str) -> Value {
    json!({"session_id": session_id, "game_id": game_id, "state": state, "player": player})
}

/// The `achievement_unlocked` event.
pub fn achievement_unlocked(
    user_id: uuid::Uuid,
    username: &str,
    achievement: &AchievementDef,
    unlock_date: &str,
) -> Value {
    json!({
        "user_id": user_id.to_string(),
        "username": username,
        "game_id": achievement.game_id,
        "achievement_id": achievement.achievement_id,
        "name": achievement.name,
        "description": achievement.description,
        "unlock_date": unlock_date,
    })
}

/// The `leaderboard_updated` event.
pub fn leaderboard_updated(game_id: &str, category: &str) -> Value {
    json!({ "game_id": game_id, "category": category })
}

/// `subscribe_events`.
pub fn subscribed(subscription_id: &str, event_types: &[String]) -> Value {
    json!({ "subscription_id": subscription_id, "event_types": event_types })
}

/// `get_player_profile`.
pub fn profile(account: &Account, region: Option<&str>, stats: &Stats) -> Value {
    json!({
        "profile": {
            "user_id": account.user_id.to_string(),
            "username": account.username,
            "display_name": account.display_name,
            "level": stats.level(),
            "experience": stats.experience(),
            "region": region,
            "stats": stats,
        }
    })
}

/// `update_player_profile`.
pub fn region(region: &str) -> Value {
    json!({ "region": region })
}

/// `get_achievements`: each with when it was unlocked (RFC 3339), if it was.
pub fn achievements<'a>(list: impl Iterator<Item = (&'a AchievementDef, Option<String>)>) -> Value {
    let lines: Vec<Value> = list
        .map(|(a, unlocked_at)| {
            json!({
                "achievement_id": a.achievement_id,
                "game_id": a.game_id,
                "name": a.name,
                "description": a.description,
                "unlocked": unlocked_at.is_some(),
                "unlock_date": unlocked_at,
            })
        })
        .collect();
    json!({ "achievements": lines })
}

/// `get_leaderboard`.
pub fn leaderboard(ranks: &[Rank], category: &str) -> Value {
    let lines: Vec<Value> = ranks
        .iter()
        .map(|r| json!({"rank": r.rank, "player_name": r.player_name, "score": r.score}))
        .collect();
    json!({ "leaderboard": lines, "category": category })
}

/// `add_friend`.
pub fn friend_added(username: &str) -> Value {
    json!({ "friend": username })
}

/// `list_content`.
pub fn content_list(list: &[Content]) -> Value {
    let lines: Vec<Value> = list
        .iter()
        .map(|c| {
            json!({"asset_id": c.asset_id, "asset_type": c.asset_type, "title": c.title,
                   "author": c.author, "created_date": c.created_date,
                   "modified_date": c.modified_date})
        })
        .collect();
    json!({ "content_list": lines })
}

/// `fetch_content`.
pub fn content(found: &Content) -> Value {
    json!({ "asset": found })
}

/// `create_content`.
pub fn content_created(created: &Content) -> Value {
    json!({ "asset_id": created.asset_id, "created_date": created.created_date })
}

/// The `content_published` event.
pub fn content_published(created: &Content) -> Value {
    json!({"asset_id": created.asset_id, "asset_type": created.asset_type,
           "title": created.title, "author": created.author})
}

/// `update_content` and `save_game_project`: when it was changed (RFC 3339).
pub fn modified(modified_date: &str) -> Value {
    json!({ "modified_date": modified_date })
}

/// `create_game_project`.
pub fn project_created(project: &ProjectSummary) -> Value {
    json!({ "project_id": project.project_id, "created_date": project.created_date })
}

/// `load_game_project`: the document as the studio saved it.
pub fn project(document: &Value) -> Value {
    json!({ "project": document })
}

/// `list_game_projects`.
pub fn projects(projects: &[ProjectSummary]) -> Value {
    json!({ "projects": projects })
}

/// The `project_modified` event.
pub fn project_modified(project_id: &str, modified_date: &str, modified_by: &str) -> Value {
    json!({"project_id": project_id, "modified_date": modified_date, "modified_by": modified_by})
}

/// `sync_assets`: each asset with the URL it is served at.
pub fn assets<'a>(assets: impl Iterator<Item = (&'a AssetRecord, String)>) -> Value {
    let lines: Vec<Value> = assets
        .map(|(asset, url)| {
            json!({
                "asset_id": asset.asset_id,
                "name": asset.name,
                "type": asset.asset_type,
                "url": url,
                "size": asset.size_bytes,
                "hash": asset.sha256,
            })
        })
        .collect();
    json!({ "assets": lines })
}

/// `add_asset` and `upload_binary_asset`.
pub fn asset_stored(record: &AssetRecord, url: &str) -> Value {
    json!({
        "asset_id": record.asset_id,
        "asset_url": url,
        "size": record.size_bytes,
        "hash": record.sha256,
    })
}

/// The `asset_updated` event.
pub fn asset_updated(record: &AssetRecord, url: &str) -> Value {
    json!({"asset_id": record.asset_id, "name": record.name, "project_id": record.project_id,
           "url": url, "hash": record.sha256})
}

/// `analyze_asset`.
pub fn analysis(analysis: &Analysis) -> Value {
    json!({ "analysis": analysis })
}
