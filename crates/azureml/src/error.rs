//! The module's one error enum, and how it maps onto `BackendError` with a subject
//! (`endpoint E` / `endpoint E: deployment D`).

use std::time::Duration;

use flightdeck_core::backend::BackendError;

/// Longest platform message kept in an error, so a huge HTML error page does not flood a report.
const MAX_MESSAGE: usize = 600;

#[derive(Debug, thiserror::Error)]
pub enum AzureMlError {
    /// Bad configuration: target fields, environment variables, URLs.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A credential could not produce a token. Never carries the token or the secret.
    #[error("{credential}: could not get a token: {message}")]
    Auth { credential: String, message: String },
    /// The request never got a complete response (connect, reset, timeout, broken body).
    #[error("{method} {path}: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
        #[source]
        source: reqwest::Error,
    },
    /// ARM answered with an error status ([AML §4.1] error body when it has one).
    #[error("{method} {path}: http {status}: {code}: {message}")]
    Http {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
        /// The answer's `Retry-After` ([AML §3]: whole seconds), if any.
        retry_after: Option<Duration>,
    },
    /// A long-running operation ended Failed or Canceled [AML §3].
    #[error("operation {status}: {code}: {message}")]
    OperationFailed {
        status: String,
        code: String,
        message: String,
    },
    /// ARM answered 2xx with a body or headers this client cannot use.
    #[error("{what}: unexpected response: {message}")]
    Unexpected { what: String, message: String },
    /// ARM answered 2xx with a body that is not the object the contract gives that answer.
    #[error("ARM answered {status} with a body that is not {what}: {detail}")]
    Malformed {
        status: u16,
        what: String,
        detail: String,
    },
    /// One request got no answer within its timeout.
    #[error("{0}")]
    RequestTimedOut(String),
    /// The pre-traffic test request failed.
    #[error("{0}")]
    TestFailed(String),
}

impl AzureMlError {
    /// The HTTP status, for ARM error responses.
    pub fn status(&self) -> Option<u16> {
        match self {
            AzureMlError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed, and when (see `retry`).
    pub(crate) fn verdict(&self) -> flightdeck_core::retry::Verdict {
        use flightdeck_core::retry::Verdict;
        match self {
            AzureMlError::Http {
                status,
                code,
                message,
                retry_after,
                ..
            } if super::retry::is_retryable(*status, code, message) => match retry_after {
                Some(d) => Verdict::RetryAfter(*d),
                None => Verdict::Retry,
            },
            AzureMlError::Transport { .. } => Verdict::Retry,
            _ => Verdict::GiveUp,
        }
    }

    /// Maps into the backend error, naming the subject (`endpoint E: deployment D`).
    pub fn into_backend(self, subject: &str) -> BackendError {
        let subject = subject.to_string();
        match self {
            AzureMlError::Http {
                status,
                code,
                message,
                method,
                path,
                ..
            } => BackendError::Platform {
                transient: super::retry::is_retryable(status, &code, &message),
                source: None,
                subject,
                code: if code.is_empty() {
                    format!("http {status}")
                } else {
                    code
                },
                message: format!("{message} ({method} {path} returned {status})"),
            },
            AzureMlError::OperationFailed {
                status,
                code,
                message,
            } => BackendError::Platform {
                transient: false,
                source: None,
                subject,
                code,
                message: format!("operation {status}: {message}"),
            },
            AzureMlError::Unexpected { what, message } => BackendError::Platform {
                transient: false,
                source: None,
                subject,
                code: "UnexpectedResponse".to_string(),
                message: format!("{what}: {message}"),
            },
            err @ AzureMlError::Malformed { .. } => BackendError::Malformed {
                subject,
                message: err.to_string(),
                source: None,
            },
            AzureMlError::Config(message) => BackendError::Platform {
                transient: false,
                source: None,
                subject,
                code: "InvalidConfiguration".to_string(),
                message,
            },
            AzureMlError::TestFailed(message) => BackendError::TestFailed { subject, message },
            AzureMlError::RequestTimedOut(message) => BackendError::TimedOut { subject, message },
            err @ AzureMlError::Auth { .. } => BackendError::Auth {
                subject,
                message: err.to_string(),
            },
            AzureMlError::Transport {
                method,
                path,
                message,
                source,
            } => BackendError::Transport {
                subject,
                message: format!("{method} {path}: {message}"),
                source: Some(Box::new(source)),
            },
        }
    }
}

/// Cuts a platform message to a readable length on a char boundary.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Parses an ARM error body into (code, message): wrapped `{"error": {code, message}}`
/// [AML §4.1], else flat `{code, message}` (the common-types v1 `ErrorResponse` the metrics
/// API declares, [MON R14]); falls back to the raw text.
pub(crate) fn parse_arm_error(body: &[u8]) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Option<Inner>,
        #[serde(flatten)]
        flat: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        let inner = match envelope.error {
            Some(inner) => Some(inner),
            None if envelope.flat.code.is_some() => Some(envelope.flat),
            None => None,
        };
        if let Some(inner) = inner {
            return (
                inner.code.unwrap_or_default(),
                excerpt(&inner.message.unwrap_or_default(), MAX_MESSAGE),
            );
        }
    }
    (
        String::new(),
        excerpt(&String::from_utf8_lossy(body), MAX_MESSAGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_error_bodies_give_code_and_message() {
        let body = br#"{"error":{"code":"BadArgument","message":"traffic must sum to 100"}}"#;
        assert_eq!(
            parse_arm_error(body),
            ("BadArgument".into(), "traffic must sum to 100".into())
        );
        let flat = br#"{"code":"BadRequest","message":"Failed to find metric configuration"}"#;
        assert_eq!(
            parse_arm_error(flat),
            (
                "BadRequest".into(),
                "Failed to find metric configuration".into()
            )
        );
        assert_eq!(
            parse_arm_error(b"gateway down"),
            ("".into(), "gateway down".into())
        );
    }

    #[test]
    fn http_errors_without_a_code_use_the_status() {
        let err = AzureMlError::Http {
            method: "PUT".into(),
            path: "/x".into(),
            status: 502,
            code: String::new(),
            message: "bad gateway".into(),
            retry_after: None,
        };
        match err.into_backend("endpoint e") {
            err @ BackendError::Platform { .. } => {
                assert!(err.is_transient(), "a 502 may pass");
                let BackendError::Platform { code, subject, .. } = err else {
                    unreachable!()
                };
                assert_eq!(code, "http 502");
                assert_eq!(subject, "endpoint e");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        assert_eq!(excerpt("ééé", 3), "é…");
        assert_eq!(excerpt("  short ", 10), "short");
    }
}
