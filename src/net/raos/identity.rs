//! Signing in, refreshing and logging out.

use super::*;

pub(super) async fn perform(
    ctx: &Context<'_>,
    auth_token: Option<&str>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    match action {
        Action::Authenticate {
            username,
            password_hash,
            password,
        } => {
            let credential = credential(password, password_hash)?;
            let ip = ctx.peer.map(|p| p.ip());
            let grant = state
                .accounts
                .login(&username, credential, ip, Scope::Web)
                .await?;
            Ok(raos::grant_fields(&grant))
        }
        Action::RefreshToken { refresh_token } => {
            let grant = state.accounts.refresh(&refresh_token).await?;
            Ok(answers::tokens(&grant))
        }
        Action::Logout { access_token } => {
            let token = access_token
                .as_deref()
                .or(auth_token)
                .ok_or(DomainError::InvalidToken)?;
            let identity = state.accounts.verify(token)?;
            state.accounts.logout(&identity).await?;
            Ok(answers::done())
        }
        other => Err(misrouted(&other)),
    }
}
