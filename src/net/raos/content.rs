//! Content: listing, fetching, creating, updating, deleting.

use super::*;

pub(super) async fn perform(
    ctx: &Context<'_>,
    caller: Option<Identity>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::ListContent { content_type } => {
            me()?;
            let list = state
                .store
                .read(move |c| studio::list_content(c, content_type.as_deref(), LIST_LIMIT))
                .await?;
            Ok(answers::content_list(&list))
        }
        Action::FetchContent { asset_id } => {
            me()?;
            let id = asset_id.clone();
            let found = state
                .store
                .read(move |c| studio::fetch_content(c, &id))
                .await?
                .ok_or_else(|| DomainError::NotFound(format!("no content {asset_id:?}")))?;
            Ok(answers::content(&found))
        }
        Action::CreateContent {
            asset_type,
            title,
            content,
            metadata,
        } => {
            let me = me()?;
            let metadata = metadata.unwrap_or_else(|| Value::Object(Default::default()));
            let created = write(state, move |c| {
                studio::create_content(c, me.user_id, &asset_type, &title, &content, &metadata)
            })
            .await?;
            publish(
                state,
                "content_published",
                None,
                answers::content_published(&created),
            );
            Ok(answers::content_created(&created))
        }
        Action::UpdateContent { asset } => {
            let me = me()?;
            let admin = me.has_role(Role::Admin);
            let update = ContentUpdate {
                asset_type: asset.asset_type,
                title: asset.title,
                content: asset.content,
                metadata: asset.metadata,
            };
            let modified = write(state, move |c| {
                studio::update_content(c, me.user_id, admin, &asset.asset_id, update)
            })
            .await?;
            Ok(answers::modified(&raos::rfc3339(modified)))
        }
        Action::DeleteContent { asset_id } => {
            let me = me()?;
            let admin = me.has_role(Role::Admin);
            write(state, move |c| {
                studio::delete_content(c, me.user_id, admin, &asset_id)
            })
            .await?;
            Ok(answers::done())
        }
        other => Err(misrouted(&other)),
    }
}
