//! The catalog's games: listing, launching, downloading, stopping.

use super::*;

pub(super) async fn perform(
    ctx: &Context<'_>,
    caller: Option<Identity>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::ListGames {} => {
            let me = me()?;
            let games = match lobby(state, &me, LobbyOp::ListGames).await? {
                LobbyReply::Games(games) => games,
                _ => Vec::new(),
            };
            let online = games
                .iter()
                .filter(|g| g.status == crate::services::catalog::GameStatus::Online);
            Ok(answers::games(online))
        }
        Action::LaunchGame { game_id, mode } => launch(ctx, me()?, game_id, &mode).await,
        Action::DownloadGame { game_id } => launch(ctx, me()?, game_id, "download").await,
        Action::StopGame { session_id } => {
            let me = me()?;
            let op = LobbyOp::StopStream {
                session_id: session_id.clone(),
            };
            if let LobbyReply::Stopped { game_id } = lobby(state, &me, op).await? {
                publish(
                    state,
                    "game_state_change",
                    None,
                    answers::game_state_change(&session_id, &game_id, "stopped", &me.username),
                );
            }
            Ok(answers::done())
        }
        other => Err(misrouted(&other)),
    }
}
