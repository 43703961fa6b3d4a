//! The one error every backend returns, typed end to end: its [`ErrorKind`] labels metrics,
//! status and the apply report, [`BackendError::is_transient`] tells the executor and the agent
//! whether trying again may help, and the underlying error (reqwest, kube, io, serde_json) stays
//! reachable through `source()`.

use serde::Serialize;

/// An underlying error kept as a `#[source]`.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from a backend. Messages name the endpoint (and deployment) and carry the platform's
/// error code and message; they never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The platform refused or failed the operation (ARM error, Kubernetes Status, ...).
    /// `transient`: the platform said "try later" (429, 5xx, an operation in progress).
    #[error("{subject}: {code}: {message}")]
    Platform {
        subject: String,
        code: String,
        message: String,
        transient: bool,
        #[source]
        source: Option<Source>,
    },
    /// The platform answered success with a body that is not what its contract says.
    #[error("{subject}: {message}")]
    Malformed {
        subject: String,
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// A pre-traffic test failed: the rollout stops and traffic stays where it was.
    #[error("{subject}: test failed: {message}")]
    TestFailed { subject: String, message: String },
    /// A step outlived its budget (`Backend::step_timeout`, enforced by `apply`), or a wait
    /// inside it ran out.
    #[error("{subject}: timed out after {seconds}s waiting for {what}")]
    Timeout {
        subject: String,
        what: String,
        seconds: u64,
    },
    /// One request got no answer in time (a hung API server or model server).
    #[error("{subject}: {message}")]
    TimedOut { subject: String, message: String },
    /// Could not reach the platform: connect, reset, broken body.
    #[error("{subject}: {message}")]
    Transport {
        subject: String,
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// No credential could be had, or the platform refused it.
    #[error("{subject}: {message}")]
    Auth { subject: String, message: String },
    /// A local file the backend keeps (the state file) could not be read or written.
    #[error("{subject}: {message}")]
    Io {
        subject: String,
        message: String,
        #[source]
        source: Option<Source>,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What failed, as a label for metrics, `/status` and the apply report (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Platform,
    Malformed,
    TestFailed,
    Timeout,
    Transport,
    Auth,
    Io,
    Internal,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Platform => "platform",
            ErrorKind::Malformed => "malformed",
            ErrorKind::TestFailed => "test_failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Auth => "auth",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BackendError {
    /// A platform refusal that waiting will not change (validation, not found, conflict).
    pub fn platform(
        subject: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> BackendError {
        BackendError::Platform {
            subject: subject.into(),
            code: code.into(),
            message: message.into(),
            transient: false,
            source: None,
        }
    }

    /// Could not reach the platform; keeps `source` as the cause.
    pub fn transport(
        subject: impl Into<String>,
        message: impl Into<String>,
        source: Option<Source>,
    ) -> BackendError {
        BackendError::Transport {
            subject: subject.into(),
            message: message.into(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::Platform { .. } => ErrorKind::Platform,
            BackendError::Malformed { .. } => ErrorKind::Malformed,
            BackendError::TestFailed { .. } => ErrorKind::TestFailed,
            BackendError::Timeout { .. } | BackendError::TimedOut { .. } => ErrorKind::Timeout,
            BackendError::Transport { .. } => ErrorKind::Transport,
            BackendError::Auth { .. } => ErrorKind::Auth,
            BackendError::Io { .. } => ErrorKind::Io,
            BackendError::Other(_) => ErrorKind::Internal,
        }
    }

    /// Whether the same operation may succeed later, unchanged: throttling, 5xx, an operation in
    /// progress, timeouts and lost connections are; refusals, failed tests, malformed answers,
    /// bad credentials and local file errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Platform { transient, .. } => *transient,
            BackendError::Timeout { .. }
            | BackendError::TimedOut { .. }
            | BackendError::Transport { .. } => true,
            BackendError::Malformed { .. }
            | BackendError::TestFailed { .. }
            | BackendError::Auth { .. }
            | BackendError::Io { .. }
            | BackendError::Other(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_lost_connections_are_transient_and_refusals_and_failed_tests_are_not() {
        let throttled = BackendError::Platform {
            subject: "endpoint e".into(),
            code: "TooManyRequests".into(),
            message: "slow down".into(),
            transient: true,
            source: None,
        };
        let cases = [
            (throttled, ErrorKind::Platform, true),
            (
                BackendError::platform("endpoint e", "BadArgument", "no"),
                ErrorKind::Platform,
                false,
            ),
            (
                BackendError::transport("endpoint e", "connection reset", None),
                ErrorKind::Transport,
                true,
            ),
            (
                BackendError::TestFailed {
                    subject: "endpoint e: deployment d".into(),
                    message: "answered 500".into(),
                },
                ErrorKind::TestFailed,
                false,
            ),
            (
                BackendError::Timeout {
                    subject: "endpoint e".into(),
                    what: "create endpoint".into(),
                    seconds: 3,
                },
                ErrorKind::Timeout,
                true,
            ),
            (
                BackendError::Malformed {
                    subject: "endpoint e".into(),
                    message: "not an endpoint".into(),
                    source: None,
                },
                ErrorKind::Malformed,
                false,
            ),
        ];
        for (err, kind, transient) in cases {
            assert_eq!((err.kind(), err.is_transient()), (kind, transient), "{err}");
        }
    }

    #[test]
    fn the_underlying_error_stays_reachable_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = BackendError::transport("endpoint e", "GET /x: reset by peer", Some(io.into()));
        let source = std::error::Error::source(&err).expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
