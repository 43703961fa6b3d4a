//! Rollout progress stored in endpoint tags, the one endpoint field a PATCH may change
//! [AML §2.5, R15]. Pure: no I/O.
//!
//! Two tags: [`RECORD_TAG`] holds `RolloutRecord::to_compact()`, [`REASON_TAG`] the reason,
//! shortened to the ARM tag value limit. Reading strips every `flightdeck.rollout*` tag from the
//! endpoint's tags (ARM tag names are case-insensitive, so the prefix is too), so the planner
//! never sees them as drift; every write that sends endpoint tags puts the live ones back
//! ([`with_rollout`]), because tags are replaced as a whole on PUT and on PATCH [AML §2.5].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::AzureMlError;
use flightdeck_core::rollout::RolloutRecord;
use flightdeck_core::rollout::record::shorten;

/// The tag holding the compact record.
pub const RECORD_TAG: &str = "flightdeck.rollout";
/// The tag holding why the rollout paused or failed.
pub const REASON_TAG: &str = "flightdeck.rollout.reason";
/// ARM limits a tag value to 256 characters and a resource to 50 tags ("Tag resources, resource
/// groups, and subscriptions for logical organization", section Limitations:
/// learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations; the
/// reference contract [AML §2.5] gives only the type, `map<string,string>`). Values are
/// counted here in bytes, which is never fewer than characters.
pub const MAX_TAG_VALUE: usize = 256;
pub const MAX_TAGS: usize = 50;

/// A tag flightdeck owns for rollout progress: `flightdeck.rollout*`, any case.
pub fn is_rollout_tag(name: &str) -> bool {
    name.get(..RECORD_TAG.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(RECORD_TAG))
}

/// Removes every rollout tag from an endpoint's live tags and reads the record they hold:
/// `Ok(None)` without a record tag, `Err(why)` when it does not parse.
pub fn take(tags: &mut BTreeMap<String, String>) -> Result<Option<RolloutRecord>, String> {
    let mut record = None;
    let mut reason = None;
    tags.retain(|name, value| {
        if !is_rollout_tag(name) {
            return true;
        }
        if name.eq_ignore_ascii_case(RECORD_TAG) {
            record = Some(std::mem::take(value));
        } else if name.eq_ignore_ascii_case(REASON_TAG) {
            reason = Some(std::mem::take(value));
        }
        false
    });
    match record {
        None => Ok(None),
        Some(text) => RolloutRecord::from_compact(&text, reason)
            .map(Some)
            .map_err(|e| format!("tag {RECORD_TAG} is not a rollout record: {e}")),
    }
}

/// The rollout tags that store `record`; none for `None`. A compact record over the tag value
/// limit is refused (shortening it would corrupt it); the reason is shortened.
pub fn tags_for(record: Option<&RolloutRecord>) -> Result<Map<String, Value>, AzureMlError> {
    let mut tags = Map::new();
    let Some(record) = record else {
        return Ok(tags);
    };
    let compact = record.to_compact();
    if compact.len() > MAX_TAG_VALUE {
        return Err(AzureMlError::Config(format!(
            "rollout record is {} bytes, over the ARM tag value limit of {MAX_TAG_VALUE}; \
             shorten the deployment names",
            compact.len()
        )));
    }
    tags.insert(RECORD_TAG.into(), Value::String(compact));
    if let Some(reason) = &record.reason {
        tags.insert(
            REASON_TAG.into(),
            Value::String(shorten(reason, MAX_TAG_VALUE)),
        );
    }
    Ok(tags)
}

/// The rollout tags in a resource body's `tags`.
pub fn rollout_tags_of(body: &Value) -> Map<String, Value> {
    body.get("tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .filter(|(name, _)| is_rollout_tag(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// `tags` without any rollout tag of its own, plus `rollout`. Refuses a result over the
/// ARM limit of tags per resource rather than send it.
pub fn with_rollout(
    mut tags: Map<String, Value>,
    rollout: Map<String, Value>,
) -> Result<Map<String, Value>, AzureMlError> {
    tags.retain(|name, _| !is_rollout_tag(name));
    tags.extend(rollout);
    if tags.len() > MAX_TAGS {
        return Err(AzureMlError::Config(format!(
            "the endpoint would carry {} tags with flightdeck's rollout tags, over the ARM limit \
             of {MAX_TAGS}",
            tags.len()
        )));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::rollout::RolloutState;

    fn record(reason: Option<String>) -> RolloutRecord {
        RolloutRecord {
            digest: "3f2a9c0d1e2f".into(),
            revision: None,
            candidate: "green".into(),
            stage: 0,
            since: "2026-12-01T10:00:00Z".parse().unwrap(),
            started: "2026-12-01T10:00:00Z".parse().unwrap(),
            state: RolloutState::Progressing,
            baseline: [("blue".to_string(), 100)].into(),
            shifting: false,
            approved: false,
            reason,
            scale: Default::default(),
        }
    }

    #[test]
    fn reading_strips_every_rollout_tag_in_any_case_and_keeps_the_rest() {
        let stored = tags_for(Some(&record(Some("why".into())))).unwrap();
        let mut tags: BTreeMap<String, String> = stored
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v.as_str().unwrap().to_string()))
            .collect();
        tags.insert("team".into(), "search".into());
        tags.insert("flightdeck.rollout.extra".into(), "x".into());
        let read = take(&mut tags).unwrap();
        assert_eq!(read, Some(record(Some("why".into()))));
        assert_eq!(tags, [("team".to_string(), "search".to_string())].into());
    }

    #[test]
    fn a_malformed_record_tag_is_an_error_and_is_still_stripped() {
        let mut tags: BTreeMap<String, String> =
            [(RECORD_TAG.to_string(), "{not json".to_string())].into();
        let err = take(&mut tags).unwrap_err();
        assert!(err.contains(RECORD_TAG), "{err}");
        assert!(tags.is_empty());
    }

    #[test]
    fn a_long_reason_is_shortened_to_the_tag_value_limit() {
        let tags = tags_for(Some(&record(Some("é".repeat(400))))).unwrap();
        let reason = tags[REASON_TAG].as_str().unwrap();
        assert!(
            reason.len() <= MAX_TAG_VALUE && reason.ends_with('…'),
            "{reason}"
        );
    }

    #[test]
    fn a_record_over_the_tag_value_limit_is_refused() {
        let mut r = record(None);
        r.candidate = "c".repeat(300);
        let err = tags_for(Some(&r)).unwrap_err().to_string();
        assert!(err.contains("over the ARM tag value limit of 256"), "{err}");
    }

    #[test]
    fn merging_more_than_fifty_tags_is_refused() {
        let tags: Map<String, Value> = (0..49).map(|i| (format!("t{i}"), "v".into())).collect();
        let rollout = tags_for(Some(&record(Some("why".into())))).unwrap();
        let err = with_rollout(tags, rollout).unwrap_err().to_string();
        assert!(err.contains("51 tags"), "{err}");
    }
}
