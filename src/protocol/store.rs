//! store-lobby-tcp.md: newline-delimited JSON over TCP for the developer and lobby servers.
//!
//! Requests are `{type, token?, payload}`; responses `{status, code, message, payload}`.
//! Decoding failures become code 100 here, in one place.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::services::DomainError;

/// The status codes of store-lobby-tcp.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidRequest = 100,
    Unauthorized = 101,
    Forbidden = 102,
    NotFound = 103,
    Conflict = 104,
    BadState = 105,
    ChunkOutOfOrder = 120,
    ChecksumMismatch = 121,
    ServerError = 199,
}

/// The spec's code for a domain error: the whole table in one match.
pub fn code_for(e: &DomainError) -> Code {
    match e {
        DomainError::InvalidInput(_) => Code::InvalidRequest,
        DomainError::InvalidCredentials
        | DomainError::InvalidToken
        | DomainError::ExpiredToken
        | DomainError::RefreshReused => Code::Unauthorized,
        DomainError::SessionReplaced => Code::BadState,
        DomainError::Forbidden(_) => Code::Forbidden,
        DomainError::NotFound(_) => Code::NotFound,
        DomainError::Conflict(_) => Code::Conflict,
        DomainError::RateLimited { .. } | DomainError::Busy => Code::BadState,
        DomainError::Internal(_) => Code::ServerError,
    }
}

/// One request line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub payload: Value,
}

/// One response line.
#[derive(Debug, Serialize)]
pub struct Response {
    pub status: &'static str,
    pub code: u16,
    pub message: String,
    pub payload: Value,
}

impl Response {
    pub fn ok(payload: Value) -> Self {
        Self {
            status: "ok",
            code: Code::Ok as u16,
            message: "ok".into(),
            payload: if payload.is_null() {
                Value::Object(Map::new())
            } else {
                payload
            },
        }
    }

    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: "error",
            code: code as u16,
            message: message.into(),
            payload: Value::Object(Map::new()),
        }
    }

    pub fn from_domain(e: &DomainError) -> Self {
        Self::error(code_for(e), e.to_string())
    }

    /// The encoded line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"status":"error","code":199,"message":"encoding failed","payload":{}}"#.to_vec()
        });
        line.push(b'\n');
        line
    }
}

/// Parses one line into a request, or the code-100 response that explains why not.
pub fn decode(line: &str) -> Result<Request, Response> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Response::error(Code::InvalidRequest, format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Response::error(
            Code::InvalidRequest,
            "a request must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Response::error(Code::InvalidRequest, format!("invalid request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_are_code_100() {
        for bad in [
            "{",
            "[]",
            "42",
            r#"{"token":"x"}"#,
            r#"{"type":"A","extra":1}"#,
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err.code, 100, "{bad}");
            assert_eq!(err.status, "error");
        }
        let ok = decode(r#"{"type":"LIST_GAMES","payload":{}}"#).unwrap();
        assert_eq!(ok.kind, "LIST_GAMES");
    }
}
