//! Rollout progress stored in endpoint tags, the one endpoint field a PATCH may change
//! [AML §2.5, R15]. Pure: no I/O.
//!
//! [`RECORD_TAG`] holds `RolloutRecord::to_compact()`, split over numbered tags
//! (`flightdeck.rollout`, `flightdeck.rollout.1`, `flightdeck.rollout.2`, …) when it is longer
//! than the ARM tag value limit, and joined back in order on read; [`REASON_TAG`] holds the
//! reason, shortened to that limit. All of them are written and removed in the one `PATCH {tags}`
//! that writes the record, so a reader never sees half of a record. Reading strips every `flightdeck.rollout*` tag from the
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

/// The name of the `i`-th piece of a record: [`RECORD_TAG`] itself for the first, then
/// `flightdeck.rollout.1`, `flightdeck.rollout.2`, …
pub fn piece_tag(i: usize) -> String {
    if i == 0 {
        RECORD_TAG.to_string()
    } else {
        format!("{RECORD_TAG}.{i}")
    }
}

/// The piece number of a record tag (`flightdeck.rollout` → 0, `flightdeck.rollout.3` → 3, any
/// case); `None` for any other tag, the reason included.
fn piece_index(name: &str) -> Option<usize> {
    if !is_rollout_tag(name) {
        return None;
    }
    let rest = &name[RECORD_TAG.len()..];
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix('.')?;
    // `.1`, `.2`, …: no sign, no leading zero (so one number has one name).
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `text` cut into pieces of at most [`MAX_TAG_VALUE`] bytes, on character boundaries; one
/// (possibly empty) piece at least.
pub fn split(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    loop {
        if rest.len() <= MAX_TAG_VALUE {
            pieces.push(rest);
            return pieces;
        }
        let mut cut = MAX_TAG_VALUE;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
}

/// The record's text from its pieces, keyed by piece number: they must be `0..n` with none
/// missing (a gap means the tags were edited by hand, and a joined text would be wrong).
fn join(pieces: BTreeMap<usize, String>) -> Result<Option<String>, String> {
    if pieces.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for (want, (i, piece)) in pieces.into_iter().enumerate() {
        if i != want {
            return Err(format!(
                "tag {} is missing: the rollout record's pieces must be numbered without gaps",
                piece_tag(want)
            ));
        }
        text.push_str(&piece);
    }
    Ok(Some(text))
}

/// A tag flightdeck owns for rollout progress: `flightdeck.rollout*`, any case.
pub fn is_rollout_tag(name: &str) -> bool {
    name.get(..RECORD_TAG.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(RECORD_TAG))
}

/// Removes every rollout tag from an endpoint's live tags and reads the record they hold:
/// `Ok(None)` without a record tag, `Err(why)` when it does not parse.
pub fn take(tags: &mut BTreeMap<String, String>) -> Result<Option<RolloutRecord>, String> {
    let mut pieces = BTreeMap::new();
    let mut reason = None;
    tags.retain(|name, value| {
        if !is_rollout_tag(name) {
            return true;
        }
        if let Some(i) = piece_index(name) {
            pieces.insert(i, std::mem::take(value));
        } else if name.eq_ignore_ascii_case(REASON_TAG) {
            reason = Some(std::mem::take(value));
        }
        false
    });
    match join(pieces)? {
        None => Ok(None),
        Some(text) => RolloutRecord::from_compact(&text, reason)
            .map(Some)
            .map_err(|e| format!("tag {RECORD_TAG} is not a rollout record: {e}")),
    }
}

/// The rollout tags that store `record`; none for `None`. A compact record over the tag value
/// limit is split over numbered tags ([`piece_tag`]); the reason is shortened. Whether they fit
/// beside the endpoint's own tags is [`with_rollout`]'s check.
pub fn tags_for(record: Option<&RolloutRecord>) -> Map<String, Value> {
    let mut tags = Map::new();
    let Some(record) = record else {
        return tags;
    };
    let compact = record.to_compact();
    for (i, piece) in split(&compact).into_iter().enumerate() {
        tags.insert(piece_tag(i), Value::String(piece.to_string()));
    }
    if let Some(reason) = &record.reason {
        tags.insert(
            REASON_TAG.into(),
            Value::String(shorten(reason, MAX_TAG_VALUE)),
        );
    }
    tags
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
    let own = tags.len();
    let ours = rollout.len();
    tags.extend(rollout);
    if tags.len() > MAX_TAGS {
        return Err(AzureMlError::Config(format!(
            "the endpoint would carry {} tags ({own} of its own + {ours} for flightdeck's rollout \
             record), over the ARM limit of {MAX_TAGS}; remove some of the endpoint's tags",
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
        let stored = tags_for(Some(&record(Some("why".into()))));
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
        let tags = tags_for(Some(&record(Some("é".repeat(400)))));
        let reason = tags[REASON_TAG].as_str().unwrap();
        assert!(
            reason.len() <= MAX_TAG_VALUE && reason.ends_with('…'),
            "{reason}"
        );
    }

    /// A record whose compact text is `len` bytes or more (a long candidate name).
    fn long_record(len: usize) -> RolloutRecord {
        let mut r = record(Some("why".into()));
        r.candidate = "c".repeat(len);
        r
    }

    #[test]
    fn a_record_within_the_tag_value_limit_is_one_tag() {
        let tags = tags_for(Some(&record(None)));
        assert_eq!(tags.keys().collect::<Vec<_>>(), vec![RECORD_TAG]);
    }

    #[test]
    fn a_record_over_the_tag_value_limit_is_split_over_numbered_tags_and_read_back_whole() {
        let r = long_record(600);
        let stored = tags_for(Some(&r));
        let names: Vec<&str> = stored.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "flightdeck.rollout",
                "flightdeck.rollout.1",
                "flightdeck.rollout.2",
                "flightdeck.rollout.reason"
            ]
        );
        for (name, value) in &stored {
            let len = value.as_str().unwrap().len();
            assert!(len <= MAX_TAG_VALUE, "{name}: {len} bytes");
        }
        let mut tags: BTreeMap<String, String> = stored
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
            .collect();
        tags.insert("team".into(), "search".into());
        assert_eq!(take(&mut tags).unwrap(), Some(r));
        assert_eq!(tags, [("team".to_string(), "search".to_string())].into());
    }

    #[test]
    fn pieces_are_joined_by_number_not_by_name_order() {
        // By name, `flightdeck.rollout.10` sorts before `flightdeck.rollout.2`.
        let r = long_record(256 * 11);
        let stored = tags_for(Some(&r));
        assert!(stored.contains_key("flightdeck.rollout.10"), "{stored:?}");
        let mut tags: BTreeMap<String, String> = stored
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(take(&mut tags).unwrap(), Some(r));
    }

    #[test]
    fn splitting_cuts_on_character_boundaries_and_joins_to_the_same_text() {
        let text = format!("a{}", "é".repeat(300));
        let pieces = split(&text);
        assert!(pieces.len() == 3, "{pieces:?}");
        assert!(pieces.iter().all(|p| p.len() <= MAX_TAG_VALUE));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split(""), vec![""]);
        assert_eq!(split(&"x".repeat(256)).len(), 1);
        assert_eq!(split(&"x".repeat(257)).len(), 2);
    }

    #[test]
    fn a_missing_piece_is_an_error_and_every_piece_is_still_stripped() {
        let stored = tags_for(Some(&long_record(600)));
        let mut tags: BTreeMap<String, String> = stored
            .into_iter()
            .filter(|(k, _)| k != "flightdeck.rollout.1")
            .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
            .collect();
        let err = take(&mut tags).unwrap_err();
        assert!(err.contains("tag flightdeck.rollout.1 is missing"), "{err}");
        assert!(tags.is_empty(), "{tags:?}");
    }

    #[test]
    fn only_plain_numbers_name_pieces() {
        assert_eq!(piece_index("flightdeck.rollout"), Some(0));
        assert_eq!(piece_index("FLIGHTDECK.ROLLOUT.7"), Some(7));
        assert_eq!(piece_index("flightdeck.rollout.reason"), None);
        assert_eq!(piece_index("flightdeck.rollout.01"), None);
        assert_eq!(piece_index("flightdeck.rollout.+1"), None);
        assert_eq!(piece_index("flightdeck.rollout."), None);
        assert_eq!(piece_index("flightdeck.rollouts"), None);
        assert_eq!(piece_index("team"), None);
    }

    #[test]
    fn a_split_record_that_does_not_fit_beside_the_endpoint_tags_is_refused() {
        // 3 pieces + the reason: 4 rollout tags; 46 of the user's fit, 47 do not.
        let rollout = tags_for(Some(&long_record(600)));
        assert_eq!(rollout.len(), 4);
        let user = |n: usize| -> Map<String, Value> {
            (0..n).map(|i| (format!("t{i}"), "v".into())).collect()
        };
        assert_eq!(with_rollout(user(46), rollout.clone()).unwrap().len(), 50);
        let err = with_rollout(user(47), rollout).unwrap_err().to_string();
        assert!(
            err.contains("51 tags (47 of its own + 4 for flightdeck's rollout record)")
                && err.contains("ARM limit of 50"),
            "{err}"
        );
    }

    #[test]
    fn merging_more_than_fifty_tags_is_refused() {
        let tags: Map<String, Value> = (0..49).map(|i| (format!("t{i}"), "v".into())).collect();
        let rollout = tags_for(Some(&record(Some("why".into()))));
        let err = with_rollout(tags, rollout).unwrap_err().to_string();
        assert!(err.contains("51 tags"), "{err}");
    }
}
