//! Game projects and their assets.

use super::*;

pub(super) async fn perform(
    ctx: &Context<'_>,
    caller: Option<Identity>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::CreateGameProject { name, description } => {
            let me = me()?;
            let project = write(state, move |c| {
                studio::create_project(c, me.user_id, &name, &description)
            })
            .await?;
            Ok(answers::project_created(&project))
        }
        Action::LoadGameProject { project_id } => {
            let me = me()?;
            let project = read(state, move |c| {
                studio::load_project(c, me.user_id, &project_id)
            })
            .await?;
            Ok(answers::project(&project))
        }
        Action::SaveGameProject {
            project,
            expected_modified_date,
        } => {
            let me = me()?;
            let expected = expected_modified_date
                .map(|d| parse_date("expected_modified_date", &d))
                .transpose()?;
            let project_id = project
                .get("project_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let max = state.config.raos.project_max_bytes;
            let modified = write(state, move |c| {
                studio::save_project(c, me.user_id, project, expected, max)
            })
            .await?;
            let modified_date = raos::rfc3339(modified);
            publish(
                state,
                "project_modified",
                Some(me.user_id),
                answers::project_modified(&project_id, &modified_date, &me.username),
            );
            Ok(answers::modified(&modified_date))
        }
        Action::ListGameProjects {} => {
            let me = me()?;
            let projects = state
                .store
                .read(move |c| studio::list_projects(c, me.user_id))
                .await?;
            Ok(answers::projects(&projects))
        }
        action @ (Action::SyncAssets { .. }
        | Action::AddAsset { .. }
        | Action::UploadBinaryAsset { .. }
        | Action::AnalyzeAsset { .. }) => perform_on_assets(ctx, caller, action).await,
        other => Err(misrouted(&other)),
    }
}

/// The actions on assets: a project's, an upload, an analysis.
async fn perform_on_assets(
    ctx: &Context<'_>,
    caller: Option<Identity>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::SyncAssets { project_id } => {
            let me = me()?;
            let assets = read(state, move |c| {
                Ok(studio::check_owner(c, me.user_id, &project_id)?
                    .and_then(|()| Ok(studio::project_assets(c, &project_id)?)))
            })
            .await?;
            Ok(answers::assets(
                assets.iter().map(|a| (a, asset_url(ctx, a))),
            ))
        }
        Action::AddAsset {
            project_id,
            asset_name,
            asset_type,
            asset_data,
            compressed,
        } => {
            let me = me()?;
            let owner_check = project_id.clone();
            read(state, move |c| {
                studio::check_owner(c, me.user_id, &owner_check)
            })
            .await?;
            let record = store_asset(
                ctx,
                &me,
                Some(project_id),
                asset_name,
                asset_type,
                None,
                asset_data,
                compressed,
            )
            .await?;
            Ok(answers::asset_stored(&record, &asset_url(ctx, &record)))
        }
        Action::UploadBinaryAsset {
            asset_type,
            filename,
            file_data,
            compressed,
            format,
        } => {
            let me = me()?;
            let record = store_asset(
                ctx, &me, None, filename, asset_type, format, file_data, compressed,
            )
            .await?;
            Ok(answers::asset_stored(&record, &asset_url(ctx, &record)))
        }
        Action::AnalyzeAsset { asset_id } => {
            me()?;
            let record = find_asset(state, &asset_id).await?;
            let path = state.assets.path(&record.sha256);
            let analysis = tokio::task::spawn_blocking(move || {
                let bytes = std::fs::read(&path)
                    .map_err(|e| DomainError::Internal(format!("reading the asset: {e}")))?;
                assets::analyze(&bytes)
            })
            .await
            .map_err(|e| DomainError::Internal(format!("analysis task: {e}")))??;
            Ok(answers::analysis(&analysis))
        }
        other => Err(misrouted(&other)),
    }
}
