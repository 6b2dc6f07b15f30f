//! A player's profile, achievements, leaderboards and friends.

use super::*;

pub(super) async fn perform(
    ctx: &Context<'_>,
    caller: Option<Identity>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::GetPlayerProfile {} => {
            let me = me()?;
            let account = state
                .accounts
                .find_by_username(&me.username)
                .await?
                .ok_or_else(|| DomainError::NotFound("no such account".into()))?;
            let user_id = me.user_id;
            let (record, region) = state
                .store
                .read(move |c| Ok((progress::load(c, user_id)?, progress::region(c, user_id)?)))
                .await?;
            Ok(answers::profile(&account, region.as_deref(), &record.stats))
        }
        Action::UpdatePlayerProfile { region } => {
            let me = me()?;
            progress::validate_region(&region)?;
            let stored = region.clone();
            state
                .store
                .write(move |c| progress::set_region(c, me.user_id, &stored))
                .await?;
            Ok(answers::region(&region))
        }
        Action::GetAchievements { game_id } => {
            let me = me()?;
            let user_id = me.user_id;
            let unlocked = state
                .store
                .read(move |c| progress::unlocked_at(c, user_id))
                .await?;
            let list = state
                .achievements
                .achievements
                .iter()
                .filter(|a| game_id.as_ref().is_none_or(|g| *g == a.game_id))
                .map(|a| {
                    let at = unlocked
                        .iter()
                        .find(|(id, _)| *id == a.achievement_id)
                        .map(|(_, at)| raos::rfc3339(*at));
                    (a, at)
                });
            Ok(answers::achievements(list))
        }
        Action::GetLeaderboard { game_id, category } => {
            let me = me()?;
            let board = match category.as_str() {
                "global" => Board::Global,
                "friends" => Board::Friends,
                "regional" => Board::Regional,
                other => {
                    return Err(DomainError::InvalidInput(format!(
                        "category {other:?}: it is global, friends or regional"
                    )));
                }
            };
            let op = LobbyOp::GameDetail {
                game_id: game_id.clone(),
            };
            lobby(state, &me, op).await?;
            let ranks = read(state, move |c| {
                progress::leaderboard(c, &game_id, board, me.user_id, LIST_LIMIT)
            })
            .await?;
            Ok(answers::leaderboard(&ranks, &category))
        }
        Action::AddFriend { username } => {
            let me = me()?;
            let name = username.clone();
            write(state, move |c| progress::add_friend(c, me.user_id, &name)).await?;
            Ok(answers::friend_added(&username))
        }
        Action::RemoveFriend { username } => {
            let me = me()?;
            write(state, move |c| {
                progress::remove_friend(c, me.user_id, &username)
            })
            .await?;
            Ok(answers::done())
        }
        other => Err(misrouted(&other)),
    }
}
