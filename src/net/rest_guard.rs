//! What every REST request passes before its handler: a rate limit per client address, a
//! small body limit until the caller has shown a valid token, and the raos error shape on
//! every failure (405 and 413 from the router included). Handlers then limit verified
//! callers per account ([`RestLimits::check_account`]).
//!
//! The limits are `governor` keyed limiters: lookups are constant time whatever the number
//! of keys, and keys idle long enough to have refilled are forgotten every minute, so
//! neither a flood of junk tokens nor of addresses grows memory or slows other requests.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use super::AppState;
use super::listener::PeerAddr;
use super::rest::RestReply;
use crate::config::RaosConfig;
use crate::protocol::raos::ErrorCode;

/// The largest body read from a caller that has not shown a valid token.
pub const UNAUTHENTICATED_BODY_BYTES: usize = 64 * 1024;

/// The largest body read from a caller with a valid token: room for the largest asset,
/// which arrives as base64 in a JSON body.
pub fn authenticated_body_bytes(config: &RaosConfig) -> usize {
    config.asset_max_bytes / 3 * 4 + 64 * 1024
}

/// REST rate limits: per address for every request, per account once verified.
pub struct RestLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<Uuid>,
    per_account_rate: f64,
}

fn quota(per_second: f64, burst: f64) -> Quota {
    let period = Duration::from_secs_f64(1.0 / per_second.clamp(0.001, 1_000_000.0));
    let burst =
        NonZeroU32::new(burst.clamp(1.0, f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// IPv6 clients are limited per /64, the block one subscriber usually holds.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

fn too_many(per_second: f64) -> RestReply {
    RestReply::failure(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        &format!("rate limited: at most {per_second} requests per second"),
    )
}

impl RestLimits {
    pub fn new(config: &RaosConfig) -> Self {
        Self {
            by_address: DefaultKeyedRateLimiter::keyed(quota(
                config.address_requests_per_second,
                config.address_request_burst,
            )),
            by_account: DefaultKeyedRateLimiter::keyed(quota(
                config.requests_per_second,
                config.request_burst,
            )),
            per_account_rate: config.requests_per_second,
        }
    }

    /// A request from a verified account.
    pub fn check_account(&self, user_id: Uuid) -> Result<(), RestReply> {
        self.by_account
            .check_key(&user_id)
            .map_err(|_| too_many(self.per_account_rate))
    }

    /// Forgets keys whose limit has refilled; their state is the same as no state.
    pub fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_account.retain_recent();
        self.by_account.shrink_to_fit();
    }

    /// Keys held: what `/metrics` and the tests read to see memory stays bounded.
    pub fn keys(&self) -> usize {
        self.by_address.len() + self.by_account.len()
    }

    /// Forgets idle keys every minute until shutdown.
    pub fn spawn_forgetting(state: AppState) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = every.tick() => state.rest_limits.forget_idle(),
                }
            }
        });
    }
}

/// The token a REST request carries, in the header or as `?auth_token=`.
fn presented_token(request: &Request) -> Option<&str> {
    super::bearer(request.headers()).or_else(|| {
        request.uri().query()?.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == "auth_token" && !value.is_empty()).then_some(value)
        })
    })
}

/// The middleware in front of `/api/v1`.
pub async fn guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    request: Request,
    next: Next,
) -> Response {
    let limits = &state.rest_limits;
    if limits
        .by_address
        .check_key(&address_key(peer.0.ip()))
        .is_err()
    {
        return too_many(state.config.raos.address_requests_per_second).into_response();
    }
    let verified = presented_token(&request).is_some_and(|t| state.accounts.verify(t).is_ok());
    let limit = if verified {
        authenticated_body_bytes(&state.config.raos)
    } else {
        UNAUTHENTICATED_BODY_BYTES
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(verified, limit).into_response();
    }
    // A body without a declared length is cut off at the same size while it is read, and
    // one that stalls is given up on ([`super::rest::RawBody`] answers 408).
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, limit);
    let body =
        tower_http::timeout::TimeoutBody::new(state.config.limits.request_body_timeout(), body);
    let request = Request::from_parts(parts, axum::body::Body::new(body));
    in_raos_shape(next.run(request).await)
}

fn too_large(verified: bool, limit: usize) -> RestReply {
    let without = if verified {
        ""
    } else {
        " without a valid access token"
    };
    RestReply::failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::InvalidRequest,
        &format!("the body is too large: at most {limit} bytes{without}"),
    )
}

/// Gives a failure that is not already JSON (the router's 405, a body limit's 413) the
/// documented error shape.
fn in_raos_shape(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::ServerError,
        _ => ErrorCode::InvalidRequest,
    };
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the body is too large".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_ascii_lowercase(),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut reply = RestReply::failure(status, code, &message).into_response();
    if let Some(allow) = allow {
        reply.headers_mut().insert(header::ALLOW, allow);
    }
    reply
}
