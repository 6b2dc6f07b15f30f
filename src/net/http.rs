//! The HTTP listener's router: health, metrics, REST under `/api/v1`, and the WebSocket
//! endpoints of the game, comms, GARP and RaOS protocols.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use crate::bridge::Command;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/game", get(super::game_ws::upgrade))
        .route("/ws", get(super::comms_ws::upgrade))
        .route(
            "/ws/{gametoken}/{protocolid}",
            get(super::garp_ws::redirect),
        )
        .route("/fs/{gametoken}/{protocolid}", get(super::garp_ws::session))
        .route("/raos", get(super::raos::upgrade))
        .route("/assets/{asset_id}", get(super::rest::serve_asset))
        .route(
            "/downloads/{game_id}/{version}",
            get(super::rest::serve_download),
        )
        .nest(
            "/api/v1",
            super::rest::routes()
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    super::rest_guard::guard,
                ))
                .layer(middleware::from_fn_with_state(state.clone(), count_rest))
                // The guard has already limited the body, by whether a token came with it.
                .layer(axum::extract::DefaultBodyLimit::max(
                    super::rest_guard::authenticated_body_bytes(&state.config.raos),
                )),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such path\n") })
        .with_state(state)
}

/// Liveness: answered by the simulation thread itself, so it proves the loop is turning.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.inbox.ask(|reply| Command::Status { reply }).await {
        Ok(status) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "ok",
                "tick": status.tick,
                "tick_hz": status.tick_hz,
                "tick_p50_us": status.tick_p50_us,
                "tick_p99_us": status.tick_p99_us,
                "tick_max_us": status.tick_max_us,
                "overruns": status.overruns,
            })),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "busy"})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts REST requests and responses, and their declared sizes.
async fn count_rest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    let size_in = request.body().size_hint().exact().unwrap_or(0) as usize;
    state.metrics.received("rest", size_in);
    let response = next.run(request).await;
    let size_out = response.body().size_hint().exact().unwrap_or(0) as usize;
    state.metrics.sent("rest", size_out);
    response
}
