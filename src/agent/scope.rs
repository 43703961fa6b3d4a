//! Which endpoints a tick reconciles (pure): everything, or only those whose desired state
//! changed since the last reconcile that succeeded, plus those a rollout or a failed step
//! keeps busy. A full resync every `full_resync` (default 10 min) catches drift everywhere
//! else, and the first tick after start is always full (docs/agent.md, "Targeted reconciles").
//!
//! A change is found by comparing fingerprints: a 64-bit digest of each declared endpoint and
//! one of the environment (`environment.yaml`: target, drift, rollout policies, slots, tests).
//! Any environment change makes the tick full, because it may touch every endpoint. The
//! fingerprint costs ~50 bytes per endpoint, where keeping the previous desired state would
//! cost kilobytes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::model::DesiredState;
use crate::reconcile::ReconcileOutcome;

/// The full resync interval when nothing says otherwise.
pub const DEFAULT_FULL_RESYNC: Duration = Duration::from_secs(10 * 60);

/// A targeted tick that would touch more than this share of the endpoints is made full: reading
/// half the endpoints one by one costs about what one workspace-wide list does.
const MOST: f64 = 0.5;

/// Digests of one desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    environment: u64,
    endpoints: BTreeMap<String, u64>,
}

/// Hashes the serde form of a value (the model types are `Serialize`; the environment holds
/// floats, so it is not `Hash`). The hasher is SipHash with fixed keys: stable in a process.
fn digest<T: Serialize>(value: &T) -> u64 {
    struct Write<'a>(&'a mut DefaultHasher);
    impl std::io::Write for Write<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hasher = DefaultHasher::new();
    // Writing to a hasher cannot fail, and the model types always serialise.
    let _ = serde_json::to_writer(Write(&mut hasher), value);
    hasher.finish()
}

impl Fingerprint {
    pub fn of(desired: &DesiredState) -> Fingerprint {
        Fingerprint {
            environment: digest(&desired.environment),
            endpoints: desired
                .endpoints
                .iter()
                .map(|(name, endpoint)| (name.clone(), digest(endpoint)))
                .collect(),
        }
    }

    /// Endpoints added, changed or removed from `self` to `new`.
    fn changed(&self, new: &Fingerprint) -> BTreeSet<String> {
        let changed = new
            .endpoints
            .iter()
            .filter(|(name, digest)| self.endpoints.get(*name) != Some(digest));
        let removed = self
            .endpoints
            .keys()
            .filter(|name| !new.endpoints.contains_key(*name));
        changed
            .map(|(name, _)| name)
            .chain(removed)
            .cloned()
            .collect()
    }
}

/// Why a tick reads everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Nothing reconciled yet since start (or since the last success).
    First,
    /// The full resync interval has passed.
    Resync,
    /// `environment.yaml` changed (a policy, slots, tests or the target).
    Environment,
    /// Most endpoints changed.
    Most,
    /// Targeted reconciles are off (`full-resync-interval: 0s`).
    Always,
}

impl Full {
    pub fn as_str(self) -> &'static str {
        match self {
            Full::First => "first",
            Full::Resync => "resync",
            Full::Environment => "environment",
            Full::Most => "most",
            Full::Always => "always",
        }
    }
}

/// What one tick reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Full(Full),
    /// These endpoints only (maybe none: nothing changed and nothing is in progress).
    Only(BTreeSet<String>),
}

/// One environment's memory between ticks.
#[derive(Debug, Default)]
pub struct Targeting {
    /// The desired state of the last reconcile that ended in sync or fully applied.
    baseline: Option<Fingerprint>,
    /// Endpoints the next tick reconciles whatever changed: a rollout in progress, a step
    /// that failed or was not run, or one the last tick applied (read back once).
    busy: BTreeSet<String>,
    /// When the last full read was planned from.
    last_full: Option<Instant>,
}

impl Targeting {
    /// The scope of a tick about to reconcile `new` at `now`.
    pub fn scope(&self, new: &Fingerprint, now: Instant, full_resync: Duration) -> Scope {
        let Some(baseline) = &self.baseline else {
            return Scope::Full(Full::First);
        };
        if full_resync.is_zero() {
            return Scope::Full(Full::Always);
        }
        match self.last_full {
            Some(at) if now.duration_since(at) < full_resync => {}
            _ => return Scope::Full(Full::Resync),
        }
        if baseline.environment != new.environment {
            return Scope::Full(Full::Environment);
        }
        let mut only = baseline.changed(new);
        only.extend(self.busy.iter().cloned());
        let total = new.endpoints.len().max(baseline.endpoints.len());
        if only.len() > 1 && only.len() as f64 > total as f64 * MOST {
            return Scope::Full(Full::Most);
        }
        Scope::Only(only)
    }

    /// Remembers how a tick of `scope` over `new`, started at `started`, ended.
    pub fn record(
        &mut self,
        scope: &Scope,
        new: Fingerprint,
        outcome: &ReconcileOutcome,
        started: Instant,
    ) {
        let read_everything = matches!(scope, Scope::Full(_))
            && matches!(
                outcome,
                ReconcileOutcome::InSync
                    | ReconcileOutcome::Applied { .. }
                    | ReconcileOutcome::DriftReported { .. }
                    | ReconcileOutcome::Planned { .. }
            );
        if read_everything {
            self.last_full = Some(started);
        }
        let done = matches!(
            outcome,
            ReconcileOutcome::InSync | ReconcileOutcome::Applied { .. }
        );
        // A targeted tick that did not finish keeps what it was asked to do: its changed
        // endpoints stay changed against the old baseline, and its busy ones stay busy.
        let mut busy = match (done, scope) {
            (false, Scope::Only(only)) => only.clone(),
            _ => BTreeSet::new(),
        };
        if let Some(plan) = outcome.plan() {
            busy.extend(plan.rollouts.iter().map(|r| r.endpoint.clone()));
            // A step that did not finish is done again; one that did is read back once by the
            // next tick, so what it wrote is seen (in `/status` and the dashboard) and
            // re-planning it is checked to be empty, without waiting for the full resync.
            if !done || matches!(outcome, ReconcileOutcome::Applied { .. }) {
                busy.extend(plan.steps.iter().map(|s| s.endpoint.clone()));
            }
        }
        self.busy = busy;
        if done {
            self.baseline = Some(new);
        }
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
