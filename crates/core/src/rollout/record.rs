//! Rollout progress as the platform stores it (Azure ML endpoint tags, Kubernetes annotations,
//! the state file): which desired state it serves, the stage, since when live traffic is at that
//! stage, the last good traffic and how it ended. A restart, a standby agent or a second `apply`
//! reads it back and resumes at the right stage; a failed desired state stays failed until Git
//! changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Weights;

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Moving through the stages.
    Progressing,
    /// Waiting for a person (`flightdeck rollout resume` or `abort`).
    Paused,
    /// Rolled back (or aborted): this desired state is not tried again until Git changes.
    Failed,
    /// The declared traffic was reached.
    Succeeded,
}

impl RolloutState {
    pub fn name(self) -> &'static str {
        match self {
            RolloutState::Progressing => "progressing",
            RolloutState::Paused => "paused",
            RolloutState::Failed => "failed",
            RolloutState::Succeeded => "succeeded",
        }
    }
}

/// One endpoint's rollout progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Digest of the desired endpoint this rollout serves (`rollout::digest`).
    pub digest: String,
    /// The Git commit it serves, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The candidate deployment.
    pub candidate: String,
    /// Index of the current stage; the number of policy steps means the declared traffic.
    pub stage: usize,
    /// When live traffic reached this stage (the bake counts from here). Stored as Unix
    /// seconds (platform tags are short); writers round it up, so a bake is never shortened.
    #[serde(with = "chrono::serde::ts_seconds")]
    pub since: DateTime<Utc>,
    /// When the rollout's first stage began (the deadline counts from here).
    #[serde(with = "chrono::serde::ts_seconds")]
    pub started: DateTime<Utc>,
    pub state: RolloutState,
    /// The traffic before the rollout: where a rollback returns.
    pub baseline: Weights,
    /// Written before the shift to `stage`: live traffic may not be there yet, and the bake
    /// has not started. The record written after the shift clears it and stamps `since`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shifting: bool,
    /// A person resumed this stage's pause (or overrode its failed gate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
    /// Why it paused or failed: "gate error_rate failed at stage 2 (7.1% > 2%)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Under `scale_with_traffic`: the instance count each baseline deployment had when the
    /// rollout began (its count at its baseline weight; a rollback restores it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scale: std::collections::BTreeMap<String, u32>,
}

impl RolloutRecord {
    /// The record as one compact JSON text, without `reason` (platforms that cap value sizes,
    /// like ARM tags at 256 characters, store the reason apart and may shorten it).
    pub fn to_compact(&self) -> String {
        let mut core = self.clone();
        core.reason = None;
        serde_json::to_string(&core).expect("a rollout record serialises")
    }

    /// Reads `to_compact`'s text back, with the reason stored apart.
    pub fn from_compact(text: &str, reason: Option<String>) -> Result<Self, serde_json::Error> {
        let mut record: RolloutRecord = serde_json::from_str(text)?;
        record.reason = reason;
        Ok(record)
    }

    /// `stage 2/3 progressing since 10:02:11Z`-style one-liner for status output.
    pub fn summary(&self, stages: usize) -> String {
        let mut out = format!(
            "{} at stage {}/{} (candidate {}, since {})",
            self.state.name(),
            (self.stage + 1).min(stages + 1),
            stages + 1,
            self.candidate,
            self.since.format("%Y-%m-%dT%H:%M:%SZ")
        );
        if let Some(reason) = &self.reason {
            out.push_str(": ");
            out.push_str(reason);
        }
        out
    }
}

/// `at` rounded up to the whole second, as records store it.
pub fn ceil_second(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    let floor = at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at);
    if floor == at {
        at
    } else {
        floor + TimeDelta::seconds(1)
    }
}

/// Shortens `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RolloutRecord {
        RolloutRecord {
            digest: "3f2a9c0d1e2f".into(),
            revision: Some("1a2b3c4d".into()),
            candidate: "green".into(),
            stage: 1,
            since: "2026-12-01T10:00:00Z".parse().unwrap(),
            started: "2026-12-01T09:50:00Z".parse().unwrap(),
            state: RolloutState::Progressing,
            baseline: [("blue".to_string(), 100)].into(),
            shifting: false,
            approved: false,
            reason: Some("gate p99 failed".into()),
            scale: Default::default(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_compact_text_with_the_reason_apart() {
        let r = record();
        let text = r.to_compact();
        assert!(!text.contains("gate p99"), "{text}");
        assert!(text.len() < 256, "{} bytes: {text}", text.len());
        assert_eq!(
            RolloutRecord::from_compact(&text, r.reason.clone()).unwrap(),
            r
        );
    }

    #[test]
    fn shortening_keeps_a_character_boundary_and_marks_the_cut() {
        assert_eq!(shorten("abc", 10), "abc");
        let s = shorten("ééééé", 6);
        assert!(s.len() <= 6 && s.ends_with('…'), "{s}");
    }
}
