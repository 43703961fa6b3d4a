//! The crate's one error enum, and how it maps onto `BackendError` with a subject
//! (`endpoint E: deployment D: p99`).

use std::time::Duration;

use flightdeck_core::backend::BackendError;

/// Longest server message kept in an error.
const MAX_MESSAGE: usize = 600;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// Bad configuration: URL, templates, names.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The request never got a complete answer.
    #[error("GET {path}: {message}")]
    Transport {
        path: String,
        message: String,
        #[source]
        source: reqwest::Error,
    },
    /// An error answer: an error envelope [PROM P3] or a non-2xx status. `error_type` is an
    /// open string (`bad_data`, `timeout`, ... or whatever a newer server sends).
    #[error("http {status}: {error_type}: {message}")]
    Api {
        status: u16,
        error_type: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not the envelope of [PROM P3] / [PROM P4].
    #[error("http {status}: not a Prometheus query response: {detail}")]
    Malformed { status: u16, detail: String },
    /// A well-formed answer a gate cannot use: several series, a range vector, a string.
    #[error("query {query:?}: {message}")]
    Unusable { query: String, message: String },
}

impl PrometheusError {
    /// 429 and 5xx may pass on a later try (503 is "timeout or abort", [PROM P3]); so may a
    /// lost connection. 400 and 422 will not.
    pub(crate) fn verdict(&self) -> flightdeck_core::retry::Verdict {
        use flightdeck_core::retry::Verdict;
        match self {
            PrometheusError::Api {
                status,
                retry_after,
                ..
            } if transient(*status) => match retry_after {
                Some(d) => Verdict::RetryAfter(*d),
                None => Verdict::Retry,
            },
            PrometheusError::Transport { .. } => Verdict::Retry,
            _ => Verdict::GiveUp,
        }
    }

    pub fn into_backend(self, subject: &str) -> BackendError {
        let subject = subject.to_string();
        match self {
            PrometheusError::Api {
                status,
                error_type,
                message,
                ..
            } => BackendError::Platform {
                transient: transient(status),
                source: None,
                subject,
                code: if error_type.is_empty() {
                    format!("http {status}")
                } else {
                    error_type
                },
                message: format!("{message} (prometheus answered {status})"),
            },
            PrometheusError::Config(message) => BackendError::Platform {
                transient: false,
                source: None,
                subject,
                code: "InvalidConfiguration".into(),
                message,
            },
            err @ (PrometheusError::Malformed { .. } | PrometheusError::Unusable { .. }) => {
                BackendError::Malformed {
                    subject,
                    message: err.to_string(),
                    source: None,
                }
            }
            PrometheusError::Transport {
                path,
                message,
                source,
            } => BackendError::Transport {
                subject,
                message: format!("GET {path}: {message}"),
                source: Some(Box::new(source)),
            },
        }
    }
}

fn transient(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// Cuts a server message to a readable length on a char boundary.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_MESSAGE {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
