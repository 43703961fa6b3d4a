//! Push webhooks from GitHub and GitLab: authentication and the one thing the agent needs from
//! the payload, the pushed ref.
//!
//! GitHub signs the raw body: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! GitLab sends the shared secret verbatim in `X-Gitlab-Token`. Both are compared in constant
//! time.
//!
//! Every delivery names its event in a header of the same provider as its signature: GitHub
//! `X-GitHub-Event` (`push` syncs, `ping` is answered without a sync), GitLab `X-Gitlab-Event`
//! (`Push Hook` and `Tag Push Hook` sync). Any other event, or none, is refused: a signed body
//! without its event header is not a push.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Largest accepted webhook body; larger requests get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing signature: expected X-Hub-Signature-256 or X-Gitlab-Token")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("missing event header: expected {header}")]
    MissingEvent { header: &'static str },
    #[error("unsupported event {header}: {event:?} (expected {expected})")]
    UnsupportedEvent {
        header: &'static str,
        event: String,
        expected: &'static str,
    },
}

/// Who sent (and signed) a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
}

impl Provider {
    /// The header naming the event.
    pub fn event_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-GitHub-Event",
            Provider::GitLab => "X-Gitlab-Event",
        }
    }

    fn expected_events(self) -> &'static str {
        match self {
            Provider::GitHub => "push or ping",
            Provider::GitLab => "Push Hook or Tag Push Hook",
        }
    }
}

/// What a verified webhook asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookAction {
    /// A push to the tracked ref: fetch and reconcile now.
    Sync {
        git_ref: String,
        after: Option<String>,
    },
    /// Authentic but not relevant (a ping, another branch); the reason is returned to the caller.
    Ignore(String),
}

/// Checks `X-Hub-Signature-256` (preferred) or `X-Gitlab-Token` against `secret`; returns
/// the provider whose credential matched.
pub fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<Provider, WebhookError> {
    if let Some(value) = headers.get("x-hub-signature-256") {
        let value = value.to_str().map_err(|_| WebhookError::BadSignature)?;
        return verify_github(secret, body, value).map(|()| Provider::GitHub);
    }
    if let Some(value) = headers.get("x-gitlab-token") {
        return verify_gitlab(secret, value.as_bytes()).map(|()| Provider::GitLab);
    }
    Err(WebhookError::MissingSignature)
}

/// `sha256=<hex>` over the raw body.
pub fn verify_github(secret: &[u8], body: &[u8], header: &str) -> Result<(), WebhookError> {
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::BadSignature)?;
    let expected = decode_hex(hex).ok_or(WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature)
}

pub fn verify_gitlab(secret: &[u8], token: &[u8]) -> Result<(), WebhookError> {
    // ct_eq on slices of different lengths returns false without comparing contents.
    if bool::from(secret.ct_eq(token)) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Signs a body the way GitHub does (for tests and for `curl`-style clients).
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
}

/// Decides what an event authenticated as `provider` asks for. `tracked` is the ref the agent
/// follows (`refs/heads/main`), or `None` when it follows a tag or commit, where any push may
/// move it.
pub fn classify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    tracked: Option<&str>,
) -> Result<WebhookAction, WebhookError> {
    let header = provider.event_header();
    let event = headers
        .get(header)
        .ok_or(WebhookError::MissingEvent { header })?;
    let event = event.to_str().unwrap_or_default().trim();
    let is_push = match (provider, event) {
        // GitHub sends `ping` once when the hook is created: answer it, sync nothing.
        (Provider::GitHub, "ping") => return Ok(WebhookAction::Ignore("ping".into())),
        (Provider::GitHub, "push") | (Provider::GitLab, "Push Hook" | "Tag Push Hook") => true,
        _ => false,
    };
    if !is_push {
        return Err(WebhookError::UnsupportedEvent {
            header,
            event: event.chars().take(64).collect(),
            expected: provider.expected_events(),
        });
    }
    let payload: PushPayload =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let git_ref = payload
        .git_ref
        .ok_or_else(|| WebhookError::Malformed("push event without `ref`".into()))?;
    match tracked {
        Some(tracked) if tracked != git_ref => Ok(WebhookAction::Ignore(format!(
            "push to {git_ref}, tracking {tracked}"
        ))),
        _ => Ok(WebhookAction::Sync {
            git_ref,
            after: payload.after,
        }),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_signatures_verify_only_for_the_exact_body_and_secret() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign_github(b"secret", body);
        // Known-answer check: HMAC-SHA256("It's a Secret to Everybody", "Hello, World!") from
        // GitHub's webhook documentation.
        assert_eq!(
            sign_github(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(verify_github(b"secret", body, &sig), Ok(()));
        assert_eq!(
            verify_github(b"other", body, &sig),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_github(b"secret", b"{}", &sig),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_github(b"secret", body, "sha1=abc"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_github(b"secret", body, "sha256=zz"),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn gitlab_tokens_must_match_exactly_and_unsigned_requests_fail() {
        let body = b"{}";
        assert_eq!(
            authenticate(&headers(&[("x-gitlab-token", "tok")]), body, b"tok"),
            Ok(Provider::GitLab)
        );
        assert_eq!(
            authenticate(&headers(&[("x-gitlab-token", "to")]), body, b"tok"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            authenticate(&HeaderMap::new(), body, b"tok"),
            Err(WebhookError::MissingSignature)
        );
    }

    #[test]
    fn only_pushes_to_the_tracked_ref_trigger_a_sync() {
        let main = Some("refs/heads/main");
        let push = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let gh = headers(&[("x-github-event", "push")]);
        let classify = |h: &HeaderMap, body: &[u8], tracked| {
            let provider = if h.contains_key("x-gitlab-event") {
                Provider::GitLab
            } else {
                Provider::GitHub
            };
            classify(provider, h, body, tracked)
        };
        assert_eq!(
            classify(&gh, push, main).unwrap(),
            WebhookAction::Sync {
                git_ref: "refs/heads/main".into(),
                after: Some("abc".into())
            }
        );
        let other = br#"{"ref":"refs/heads/dev"}"#;
        assert!(matches!(
            classify(&gh, other, main).unwrap(),
            WebhookAction::Ignore(_)
        ));
        assert!(matches!(
            classify(&gh, other, None).unwrap(),
            WebhookAction::Sync { .. }
        ));
        let ping = headers(&[("x-github-event", "ping")]);
        assert_eq!(
            classify(&ping, b"{}", main).unwrap(),
            WebhookAction::Ignore("ping".into())
        );
        let gl = headers(&[("x-gitlab-event", "Push Hook")]);
        assert!(matches!(
            classify(&gl, push, main).unwrap(),
            WebhookAction::Sync { .. }
        ));
        assert!(matches!(
            classify(&gh, b"not json", main),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn only_the_signing_providers_push_event_syncs_and_a_missing_event_is_refused() {
        let push = br#"{"ref":"refs/heads/main"}"#;
        let main = Some("refs/heads/main");
        let err = classify(Provider::GitHub, &HeaderMap::new(), push, main).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing event header: expected X-GitHub-Event"
        );
        let issues = headers(&[("x-github-event", "issues")]);
        assert_eq!(
            classify(Provider::GitHub, &issues, push, main)
                .unwrap_err()
                .to_string(),
            "unsupported event X-GitHub-Event: \"issues\" (expected push or ping)"
        );
        // A GitHub-signed body carrying only GitLab's header is not a GitHub push.
        let gitlab_header = headers(&[("x-gitlab-event", "Push Hook")]);
        assert!(matches!(
            classify(Provider::GitHub, &gitlab_header, push, main),
            Err(WebhookError::MissingEvent { .. })
        ));
        assert!(matches!(
            classify(Provider::GitLab, &gitlab_header, push, main),
            Ok(WebhookAction::Sync { .. })
        ));
        let tag = headers(&[("x-gitlab-event", "Tag Push Hook")]);
        assert!(matches!(
            classify(Provider::GitLab, &tag, br#"{"ref":"refs/tags/v1"}"#, None),
            Ok(WebhookAction::Sync { .. })
        ));
        let mr = headers(&[("x-gitlab-event", "Merge Request Hook")]);
        assert!(matches!(
            classify(Provider::GitLab, &mr, push, main),
            Err(WebhookError::UnsupportedEvent { .. })
        ));
        let gl_ping = headers(&[("x-gitlab-event", "ping")]);
        assert!(matches!(
            classify(Provider::GitLab, &gl_ping, push, main),
            Err(WebhookError::UnsupportedEvent { .. })
        ));
    }
}
