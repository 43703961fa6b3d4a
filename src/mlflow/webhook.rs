//! MLflow registry webhooks, receiver side: the signature checked exactly as MLflow computes it,
//! stale deliveries refused, redeliveries recognised, and the one event a promotion follows.
//!
//! - Signature [MLFLOW B8]: `X-MLflow-Signature: v1,<base64(HMAC-SHA256(secret, "{id}.{ts}.{body}"))>`
//!   with the secret as raw UTF-8, `id` = `X-MLflow-Delivery-Id`, `ts` = `X-MLflow-Timestamp`
//!   (Unix seconds) and the raw body bytes; compared in constant time (`Mac::verify_slice`).
//! - Freshness: `|now - X-MLflow-Timestamp|` at most [`TIMESTAMP_TOLERANCE`] (5 minutes, as
//!   MLflow's docs suggest). The timestamp is signed, so a replay cannot refresh it.
//! - Redelivery [MLFLOW B7, B9]: urllib3's retries resend the same id; [`DeliveryLog`] remembers
//!   the last [`DeliveryLog::CAPACITY`] accepted ids (bounded memory, oldest forgotten first).
//! - Event [MLFLOW B4-B6]: `model_version_alias.created` (also sent when an alias moves) with
//!   `data: {name, alias, version}`. Other authentic events are acknowledged and ignored.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::Sha256;

/// The largest clock difference accepted between MLflow's `X-MLflow-Timestamp` and now.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(300);

pub const DELIVERY_ID_HEADER: &str = "x-mlflow-delivery-id";
pub const TIMESTAMP_HEADER: &str = "x-mlflow-timestamp";
pub const SIGNATURE_HEADER: &str = "x-mlflow-signature";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MlflowWebhookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("signature does not match")]
    BadSignature,
    #[error("X-MLflow-Timestamp {timestamp} is not Unix seconds")]
    BadTimestamp { timestamp: String },
    #[error(
        "stale delivery: X-MLflow-Timestamp is {skew}s away from now (at most {}s accepted)",
        TIMESTAMP_TOLERANCE.as_secs()
    )]
    Stale { skew: u64 },
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// An authentic delivery.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    /// `entity.action`, e.g. `model_version_alias.created`.
    pub event: String,
    /// Set for `model_version_alias.created`.
    pub alias: Option<AliasEvent>,
}

/// An alias set or moved: `name@alias` now points at `version` (a hint: the registry is
/// re-read before anything is promoted [MLFLOW B9]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasEvent {
    pub name: String,
    pub alias: String,
    pub version: String,
}

#[derive(Deserialize)]
struct Envelope {
    entity: String,
    action: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct AliasData {
    name: String,
    alias: String,
    version: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, MlflowWebhookError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(MlflowWebhookError::MissingHeader(name))
}

/// The HMAC over `{id}.{timestamp}.{body}` [MLFLOW B8].
fn mac(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `X-MLflow-Signature` as MLflow computes it (for the fake registry and `curl` clients).
pub fn sign(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let bytes = mac(secret, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(bytes))
}

/// Checks signature and freshness against `secret` and `now` (Unix seconds), then reads the
/// event. Nothing of the body is trusted before the signature matched.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
    now: i64,
) -> Result<Delivery, MlflowWebhookError> {
    let id = header(headers, DELIVERY_ID_HEADER)?;
    let timestamp = header(headers, TIMESTAMP_HEADER)?;
    let signature = header(headers, SIGNATURE_HEADER)?;
    // Space-separated `v1,<sig>` entries (the Standard Webhooks form MLflow follows): any match.
    let matched = signature.split_whitespace().any(|one| {
        one.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|expected| {
                mac(secret, id, timestamp, body)
                    .verify_slice(&expected)
                    .is_ok()
            })
    });
    if !matched {
        return Err(MlflowWebhookError::BadSignature);
    }
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| MlflowWebhookError::BadTimestamp {
            timestamp: timestamp.chars().take(32).collect(),
        })?;
    let skew = now.abs_diff(sent);
    if skew > TIMESTAMP_TOLERANCE.as_secs() {
        return Err(MlflowWebhookError::Stale { skew });
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| MlflowWebhookError::Malformed(e.to_string()))?;
    let event = format!("{}.{}", envelope.entity, envelope.action);
    let alias = if event == "model_version_alias.created" {
        let data: AliasData = serde_json::from_value(envelope.data).map_err(|e| {
            MlflowWebhookError::Malformed(format!("model_version_alias.created data: {e}"))
        })?;
        Some(AliasEvent {
            name: data.name,
            alias: data.alias,
            version: data.version,
        })
    } else {
        None
    };
    Ok(Delivery {
        id: id.chars().take(128).collect(),
        event: event.chars().take(64).collect(),
        alias,
    })
}

/// The ids of the last [`Self::CAPACITY`] accepted deliveries.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl DeliveryLog {
    /// 4096 ids of at most 128 bytes: well under 1 MiB.
    pub const CAPACITY: usize = 4096;

    /// Records `id`; false when it was already recorded (a redelivery).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(DELIVERY_ID_HEADER, HeaderValue::from_str(id).unwrap());
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(ts).unwrap());
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
        h
    }

    const BODY: &[u8] = br#"{"entity": "model_version_alias", "action": "created", "timestamp": "2026-11-05T10:00:00.123456+00:00", "data": {"name": "fraud", "alias": "champion", "version": "7"}}"#;

    #[test]
    fn the_signature_is_mlflows_hmac_over_id_timestamp_and_body() {
        // Known answer, computed with Python's hmac/base64 exactly as mlflow/webhooks/delivery.py
        // does: base64(HMAC_SHA256(b"s3cret", b"abc.1700000000.hello")).
        assert_eq!(
            sign(b"s3cret", "abc", "1700000000", b"hello"),
            "v1,Wz32fKF10mBAa8xDhwUJFJHWuj/TNROHJLrFBWU3wXw="
        );
        let sig = sign(b"s3cret", "d-1", "1000", BODY);
        let ok = verify(&headers("d-1", "1000", &sig), BODY, b"s3cret", 1010).unwrap();
        assert_eq!(ok.event, "model_version_alias.created");
        assert_eq!(
            ok.alias,
            Some(AliasEvent {
                name: "fraud".into(),
                alias: "champion".into(),
                version: "7".into()
            })
        );
        for (h, secret) in [
            (headers("d-1", "1000", &sig), &b"other"[..]),
            (headers("d-2", "1000", &sig), b"s3cret"),
            (headers("d-1", "1001", &sig), b"s3cret"),
            (headers("d-1", "1000", "v1,AAAA"), b"s3cret"),
            (
                headers("d-1", "1000", &sig.replace("v1,", "v2,")),
                b"s3cret",
            ),
        ] {
            assert_eq!(
                verify(&h, BODY, secret, 1000),
                Err(MlflowWebhookError::BadSignature)
            );
        }
        let tampered = String::from_utf8_lossy(BODY).replace("\"7\"", "\"8\"");
        assert_eq!(
            verify(
                &headers("d-1", "1000", &sig),
                tampered.as_bytes(),
                b"s3cret",
                1000
            ),
            Err(MlflowWebhookError::BadSignature)
        );
        assert_eq!(
            verify(&HeaderMap::new(), BODY, b"s3cret", 1000),
            Err(MlflowWebhookError::MissingHeader(DELIVERY_ID_HEADER))
        );
    }

    #[test]
    fn deliveries_older_or_newer_than_five_minutes_are_stale() {
        let sig = sign(b"k", "d", "1000", BODY);
        let h = headers("d", "1000", &sig);
        assert!(verify(&h, BODY, b"k", 1300).is_ok());
        assert!(verify(&h, BODY, b"k", 700).is_ok());
        assert_eq!(
            verify(&h, BODY, b"k", 1301),
            Err(MlflowWebhookError::Stale { skew: 301 })
        );
        assert_eq!(
            verify(&h, BODY, b"k", 699),
            Err(MlflowWebhookError::Stale { skew: 301 })
        );
    }

    #[test]
    fn other_authentic_events_carry_no_alias_and_the_delivery_log_is_bounded() {
        let body = br#"{"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}"#;
        let sig = sign(b"k", "d", "5", body);
        let d = verify(&headers("d", "5", &sig), body, b"k", 5).unwrap();
        assert_eq!((d.event.as_str(), d.alias), ("model_version.created", None));

        let mut log = DeliveryLog::default();
        assert!(log.first_time("a"));
        assert!(!log.first_time("a"));
        for i in 0..DeliveryLog::CAPACITY {
            assert!(log.first_time(&format!("id-{i}")));
        }
        assert_eq!(log.len(), DeliveryLog::CAPACITY);
        // `a` was the oldest and is forgotten; the newest is still known.
        assert!(log.first_time("a"));
        assert!(!log.first_time(&format!("id-{}", DeliveryLog::CAPACITY - 1)));
    }
}
