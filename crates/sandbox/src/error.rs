//! ARM error responses [AML §4.1] and the sandbox's own start-up errors.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Errors starting or running the sandbox server itself.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    #[error("sandbox server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// An ARM error: an HTTP status plus the `{"error": {code, message, target}}` body of
/// [AML §4.1] (common-types v3 ErrorResponse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
            target: None,
        }
    }

    /// 400 BadArgument: the code the ML RP uses for validation failures (§4.1).
    pub fn bad_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadArgument", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The `error` object alone, as used inside operation-status bodies (§3).
    pub fn error_object(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message, "details": [] });
        if let Some(target) = &self.target {
            error["target"] = json!(target);
        }
        error
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.error_object() })
    }
}

impl std::fmt::Display for ArmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static(
                    "Bearer authorization_uri=\"/common/oauth2/authorize\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_arm_shape() {
        let e = ArmError::bad_argument("traffic must sum to 100").with_target("traffic");
        let body = e.body();
        assert_eq!(body["error"]["code"], "BadArgument");
        assert_eq!(body["error"]["message"], "traffic must sum to 100");
        assert_eq!(body["error"]["target"], "traffic");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
