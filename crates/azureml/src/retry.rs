//! Which ARM answers are worth retrying ([AML §4.1]: 429 and 5xx; [AML §3] Concurrency: 409
//! "operation in progress") and the server's `Retry-After`. When and how often is the crate's one
//! policy, [`flightdeck_core::retry`].

use std::time::Duration;

/// Whether an ARM error answer may succeed when sent again.
pub(crate) fn is_retryable(status: u16, code: &str, message: &str) -> bool {
    match status {
        429 => true,
        500..=599 => true,
        // [AML §3]: another operation holds the endpoint. Other 409s (a name taken in the
        // region, [AML R12]) will not change by waiting.
        409 => {
            let text = format!("{code} {message}").to_ascii_lowercase();
            text.contains("in progress") || text.contains("inprogress")
        }
        _ => false,
    }
}

/// Parses `Retry-After` as whole seconds ([AML §3]: an integer number of seconds).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_answers_are_retried() {
        assert!(is_retryable(429, "", ""));
        assert!(is_retryable(502, "", ""));
        assert!(is_retryable(
            409,
            "Conflict",
            "another operation in progress on endpoint e"
        ));
        assert!(!is_retryable(
            409,
            "Conflict",
            "endpoint name must be unique within the region"
        ));
        for s in [400, 401, 403, 404] {
            assert!(!is_retryable(s, "", ""));
        }
    }

    #[test]
    fn retry_after_is_read_as_whole_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
