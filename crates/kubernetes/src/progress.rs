//! Rollout progress stored as two annotations on the endpoint's routing object (the
//! VirtualService or HTTPRoute named after the endpoint). Pure: the annotations to write and the
//! record read back; `ssa::apply_annotations` writes them.
//!
//! Preservation: the annotations are applied by their own field manager, [`ROLLOUT_MANAGER`],
//! never by [`super::objects::MANAGER`]. Server-side apply removes a field only when the
//! manager that applied it stops sending it [K8S §4], so the router renders applied by
//! `flightdeck` (weights, pins, mirror) never carry the annotations and never drop them, and
//! `flightdeck-rollout` applying a body without them removes exactly them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use flightdeck_core::rollout::RolloutRecord;
use flightdeck_core::rollout::record::shorten;

/// The compact record (`RolloutRecord::to_compact`).
pub const RECORD_ANNOTATION: &str = "flightdeck.io/rollout";
/// Why it paused or failed.
pub const REASON_ANNOTATION: &str = "flightdeck.io/rollout-reason";
/// The field manager that owns the two annotations, apart from the one that owns the routes.
pub const ROLLOUT_MANAGER: &str = "flightdeck-rollout";
/// Annotations of an object share a 256 KiB budget (apimachinery `ValidateAnnotations`,
/// `TotalAnnotationSizeLimitB`); a reason is a line for people, so it is kept far below.
pub const MAX_REASON: usize = 4096;

/// The annotations that store `record`; none for `None`.
pub fn annotations_for(record: Option<&RolloutRecord>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(record) = record {
        out.insert(RECORD_ANNOTATION.to_string(), record.to_compact());
        if let Some(reason) = &record.reason {
            out.insert(REASON_ANNOTATION.to_string(), shorten(reason, MAX_REASON));
        }
    }
    out
}

/// The record a routing object carries: `Ok(None)` without one, `Err(why)` when it does not
/// parse.
pub fn record_of(meta: &ObjectMeta) -> Result<Option<RolloutRecord>, String> {
    let Some(annotations) = &meta.annotations else {
        return Ok(None);
    };
    let Some(text) = annotations.get(RECORD_ANNOTATION) else {
        return Ok(None);
    };
    let reason = annotations.get(REASON_ANNOTATION).cloned();
    RolloutRecord::from_compact(text, reason)
        .map(Some)
        .map_err(|e| format!("annotation {RECORD_ANNOTATION} is not a rollout record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightdeck_core::rollout::RolloutState;

    fn record() -> RolloutRecord {
        RolloutRecord {
            digest: "3f2a9c0d1e2f".into(),
            revision: None,
            candidate: "green".into(),
            stage: 2,
            since: "2026-12-01T10:00:00Z".parse().unwrap(),
            started: "2026-12-01T10:00:00Z".parse().unwrap(),
            state: RolloutState::Failed,
            baseline: [("blue".to_string(), 100)].into(),
            shifting: false,
            approved: true,
            reason: Some("gate p99 failed".into()),
            scale: Default::default(),
        }
    }

    #[test]
    fn the_annotations_read_back_as_the_record_they_store() {
        let meta = ObjectMeta {
            annotations: Some(annotations_for(Some(&record()))),
            ..Default::default()
        };
        assert_eq!(record_of(&meta), Ok(Some(record())));
        assert!(annotations_for(None).is_empty());
    }

    #[test]
    fn a_malformed_record_annotation_is_an_error_naming_it() {
        let meta = ObjectMeta {
            annotations: Some([(RECORD_ANNOTATION.to_string(), "[]".to_string())].into()),
            ..Default::default()
        };
        let err = record_of(&meta).unwrap_err();
        assert!(err.contains(RECORD_ANNOTATION), "{err}");
    }
}
