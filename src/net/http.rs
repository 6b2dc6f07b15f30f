//! The HTTP listener: its router (health, metrics, REST under `/api/v1`, and the WebSocket
//! endpoints of the game, comms, GARP and RaOS protocols) and the loop that serves it.
//!
//! Connections are served by hyper directly rather than `axum::serve`, for its header-read
//! timeout: a client must finish each request head, the first and every one after on a
//! kept-alive connection, within `header_read_timeout_secs`, or it is closed. Slow-header
//! and idle connections therefore cannot pile up.

use crate::protocol::ops;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::listener::{Conn, PeerAddr};
use crate::bridge::Command;

/// Serves `router` on the connections an acceptor hands over, until `shutdown`; then each
/// connection finishes the request it is on (briefly) and closes.
pub async fn serve(
    mut conns: tokio::sync::mpsc::Receiver<Conn>,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
    header_read_timeout: std::time::Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => break,
            conn = conns.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
        };
        let peer = axum::extract::ConnectInfo(PeerAddr(conn.peer));
        let budget = conn.budget.clone();
        let service =
            router
                .clone()
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer);
                    request.extensions_mut().insert(budget.clone());
                    request
                });
        let connection = http
            .serve_connection(
                TokioIo::new(conn),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(std::time::Duration::from_secs(3), connection)
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = served {
                tracing::debug!("http connection: {e}");
            }
        });
    }
}

/// The HTTP listener's router: everything, or, when an `--admin` listener is configured,
/// everything but `/metrics`, the console and the operators' REST routes.
pub fn router(state: AppState) -> Router {
    let with_admin = state.config.admin.is_none();
    build(state, with_admin)
}

/// The `--admin` listener's router: everything, the operators' parts included.
pub fn admin_router(state: AppState) -> Router {
    build(state, true)
}

fn build(state: AppState, with_admin: bool) -> Router {
    let mut api = super::rest::routes(with_admin)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::rest_guard::guard,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_rest))
        // The guard has already limited the body, by whether a token came with it.
        .layer(axum::extract::DefaultBodyLimit::max(
            super::rest_guard::authenticated_body_bytes(&state.config.raos),
        ));
    // Outermost, so a browser's preflight is answered before the guard sees it.
    if let Some(cors) = super::web::cors(&state.config.cors_origins) {
        api = api.layer(cors);
    }
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if with_admin {
        router = router.route("/metrics", get(metrics));
    }
    router
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
        .nest("/api/v1", api)
        .merge(super::web::routes(with_admin))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such path\n") })
        // Each request as a span with its method and path, and its answer's status and
        // time, at debug level (`--log info,tower_http=debug` to see them). The path only:
        // a query may carry a token (`?token=` on WebSockets, `?auth_token=` on downloads).
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |request: &axum::http::Request<_>| {
                    tracing::debug_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path()
                    )
                },
            ),
        )
        .with_state(state)
}

/// Liveness: answered by the simulation thread itself, so it proves the loop is turning.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.inbox.ask(|reply| Command::Status { reply }).await {
        Ok(status) => (StatusCode::OK, axum::Json(ops::alive(&status))).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(ops::busy())).into_response(),
    }
}

/// Readiness: the simulation and the store both answer within a second, so a load
/// balancer sends players only to a node that can serve them.
async fn readyz(State(state): State<AppState>) -> Response {
    let within = std::time::Duration::from_secs(1);
    let sim = tokio::time::timeout(within, state.inbox.ask(|reply| Command::Status { reply }))
        .await
        .is_ok_and(|answer| answer.is_ok());
    let store = tokio::time::timeout(
        within,
        state
            .store
            .read(|conn| conn.query_row("SELECT 1", (), |r| r.get::<_, i64>(0))),
    )
    .await
    .is_ok_and(|answer| answer.is_ok());
    let status = if sim && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(ops::readiness(sim, store))).into_response()
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
