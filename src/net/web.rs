//! The server's own web pages, from the top-level `assets/` folder: the game client at
//! `/`, the operator console at `/console`, and their scripts and styles under `/web/`.
//!
//! Release builds carry the folder inside the binary, so a deployed server needs nothing
//! beside it; debug builds read it from disk at each request, so an edit shows on reload.
//! The pages speak only the public protocols and the documented admin endpoints.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// Pages may load scripts, styles and images from this server only, and connect only to
/// it (REST and WebSockets): nothing is fetched from elsewhere at run time.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The pages; the console only `with_console` (not on the public listener when there is
/// an admin one).
pub fn routes(with_console: bool) -> Router<AppState> {
    let mut router = Router::new();
    if with_console {
        router = router.route(
            "/console",
            get(|headers: HeaderMap| async move { file("console.html", &headers) }),
        );
    }
    router
        .route(
            "/",
            get(|headers: HeaderMap| async move { file("index.html", &headers) }),
        )
        .route(
            "/web/{*path}",
            get(
                |Path(path): Path<String>, headers: HeaderMap| async move { file(&path, &headers) },
            ),
        )
}

/// One file of `assets/`, revalidated by its hash on every load (pages are small, and a
/// new server version must not be mixed with a cached older script).
fn file(path: &str, headers: &HeaderMap) -> Response {
    let inside = !path.starts_with('/') && path.split(['/', '\\']).all(|part| part != "..");
    let Some(asset) = Assets::get(path).filter(|_| inside) else {
        return (StatusCode::NOT_FOUND, "no such path\n").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(asset.metadata.sha256_hash()));
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, asset.metadata.mimetype().to_owned())],
            asset.data,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// CORS for `/api/v1`: off (same origin only) unless `cors_origins` names origins.
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(tower_http::cors::AllowMethods::mirror_request())
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
