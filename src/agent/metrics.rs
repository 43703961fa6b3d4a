//! The agent's metrics, kept and rendered by `prometheus-client` (the official Rust client) in
//! the OpenMetrics text format: counters end in `_total`, the exposition ends with `# EOF`.
//! Families that only some agents have (webhooks, forwards, worker restarts, the lease) appear
//! once they have a value. Only `events` and the HTTP handlers update them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A registry that is rendered once something in it was set.
#[derive(Debug, Default)]
struct Optional {
    registry: Registry,
    used: AtomicBool,
}

impl Optional {
    fn mark(&self) {
        self.used.store(true, Ordering::Relaxed);
    }
}

/// All agent metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counters,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    applied_commit: Family<Labels, Gauge>,
    /// The commit each environment's `applied_commit_info` series carries, to drop the old one.
    applied: Mutex<HashMap<String, String>>,
    drift: Family<Labels, Gauge>,
    steps: Counters,
    errors: Counters,
    fetch: Histogram,
    fetch_errors: Counters,
    webhook_forwards: (Counters, Optional),
    worker_restarts: (Counters, Optional),
    webhooks: (Counters, Optional),
    promotions: (Counters, Optional),
    mlflow_webhooks: (Counters, Optional),
    leader: (Gauge, Optional),
    /// Per endpoint in a staged rollout: its stage (1-based; 0 once it ended).
    rollout_stage: Family<Labels, Gauge>,
    rollout_verdicts: Counters,
    rollbacks: Counters,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            reconciles: Counters::default(),
            durations: Family::new_with_constructor(histogram),
            applied_commit: Family::default(),
            applied: Mutex::new(HashMap::new()),
            drift: Family::default(),
            steps: Counters::default(),
            errors: Counters::default(),
            fetch: histogram(),
            fetch_errors: Counters::default(),
            webhook_forwards: Default::default(),
            worker_restarts: Default::default(),
            webhooks: Default::default(),
            promotions: Default::default(),
            mlflow_webhooks: Default::default(),
            leader: Default::default(),
            rollout_stage: Family::default(),
            rollout_verdicts: Counters::default(),
            rollbacks: Counters::default(),
        };
        let r = &mut m.registry;
        r.register(
            "flightdeck_reconcile",
            "Reconciles by environment and result",
            m.reconciles.clone(),
        );
        r.register(
            "flightdeck_reconcile_duration_seconds",
            "Time to reconcile one environment",
            m.durations.clone(),
        );
        r.register(
            "flightdeck_applied_commit_info",
            "Last commit fully applied per environment",
            m.applied_commit.clone(),
        );
        r.register(
            "flightdeck_drift_detected",
            "1 when live state differs from an unchanged commit",
            m.drift.clone(),
        );
        r.register(
            "flightdeck_steps",
            "Plan steps executed, by action kind and outcome",
            m.steps.clone(),
        );
        r.register(
            "flightdeck_errors",
            "Reconcile errors by environment and kind",
            m.errors.clone(),
        );
        r.register(
            "flightdeck_git_fetch_duration_seconds",
            "Time to fetch the source",
            m.fetch.clone(),
        );
        r.register(
            "flightdeck_source_errors",
            "Failed fetches by kind",
            m.fetch_errors.clone(),
        );
        r.register(
            "flightdeck_rollout_stage",
            "Stage of each staged rollout (1-based, the declared traffic last; 0 when none runs)",
            m.rollout_stage.clone(),
        );
        r.register(
            "flightdeck_rollout_verdicts",
            "Rollout gate verdicts by endpoint, signal and result (pass, fail, no_data)",
            m.rollout_verdicts.clone(),
        );
        r.register(
            "flightdeck_rollout_rollbacks",
            "Staged rollouts rolled back to their baseline (a failed gate, candidate or deadline)",
            m.rollbacks.clone(),
        );
        let (family, o) = &mut m.webhook_forwards;
        o.registry.register(
            "flightdeck_webhook_forwards",
            "Pushes a standby passed on to the leader, by outcome",
            family.clone(),
        );
        let (family, o) = &mut m.worker_restarts;
        o.registry.register(
            "flightdeck_worker_restarts",
            "Environment workers restarted after a panic or an unexpected exit",
            family.clone(),
        );
        let (family, o) = &mut m.webhooks;
        o.registry.register(
            "flightdeck_webhooks",
            "Webhook deliveries by result (sync, ignored, bad_request, unauthorized)",
            family.clone(),
        );
        let (family, o) = &mut m.promotions;
        o.registry.register(
            "flightdeck_promotions",
            "MLflow promotions by result (committed, pull_request, refused, failed)",
            family.clone(),
        );
        let (family, o) = &mut m.mlflow_webhooks;
        o.registry.register(
            "flightdeck_mlflow_webhooks",
            "MLflow webhook deliveries by result (accepted, ignored, redelivered, bad_request, unauthorized, stale)",
            family.clone(),
        );
        let (gauge, o) = &mut m.leader;
        o.registry.register(
            "flightdeck_leader",
            "1 while this replica holds the lease",
            gauge.clone(),
        );
        m
    }
}

fn env(env: &str) -> Labels {
    vec![("env", env.to_string())]
}

impl Metrics {
    /// One finished reconcile of `env` with `result` (in_sync, applied, drift_reported, ...).
    pub fn reconciled(&self, env_name: &str, result: &str, seconds: f64) {
        let mut labels = env(env_name);
        labels.push(("result", result.to_string()));
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&env(env_name))
            .observe(seconds);
    }

    pub fn applied_commit(&self, env_name: &str, commit: &str) {
        let Ok(mut applied) = self.applied.lock() else {
            return;
        };
        let labels = |commit: &str| {
            let mut labels = env(env_name);
            labels.push(("commit", commit.to_string()));
            labels
        };
        if let Some(old) = applied.insert(env_name.to_string(), commit.to_string())
            && old != commit
        {
            self.applied_commit.remove(&labels(&old));
        }
        self.applied_commit.get_or_create(&labels(commit)).set(1);
    }

    pub fn drift(&self, env_name: &str, detected: bool) {
        self.drift
            .get_or_create(&env(env_name))
            .set(i64::from(detected));
    }

    /// One executed step; `outcome` is `ok` or `error`.
    pub fn step(&self, env_name: &str, kind: &str, outcome: &str) {
        let mut labels = env(env_name);
        labels.push(("kind", kind.to_string()));
        labels.push(("outcome", outcome.to_string()));
        self.steps.get_or_create(&labels).inc();
    }

    /// One endpoint's rollout as of this tick: its stage, the verdicts judged, a rollback.
    pub fn rollout(&self, env_name: &str, view: &crate::rollout::RolloutView) {
        let mut labels = env(env_name);
        labels.push(("endpoint", view.endpoint.clone()));
        let stage = if view.is_failed() {
            0
        } else {
            view.stage.unwrap_or(0)
        };
        self.rollout_stage
            .get_or_create(&labels)
            .set(i64::try_from(stage).unwrap_or(0));
        if view.state == "rolling_back" {
            self.rollbacks.get_or_create(&labels).inc();
        }
        for v in &view.verdicts {
            let mut l = labels.clone();
            l.push(("signal", v.signal_name().to_string()));
            let result = match v.result {
                crate::rollout::GateResult::Pass => "pass",
                crate::rollout::GateResult::Fail => "fail",
                crate::rollout::GateResult::NoData => "no_data",
            };
            l.push(("result", result.to_string()));
            self.rollout_verdicts.get_or_create(&l).inc();
        }
    }

    /// An endpoint's rollout ended (reached the declared traffic): its stage reads 0.
    pub fn rollout_ended(&self, env_name: &str, endpoint: &str) {
        let mut labels = env(env_name);
        labels.push(("endpoint", endpoint.to_string()));
        self.rollout_stage.get_or_create(&labels).set(0);
    }

    pub fn error(&self, env_name: &str, kind: &str) {
        let mut labels = env(env_name);
        labels.push(("kind", kind.to_string()));
        self.errors.get_or_create(&labels).inc();
    }

    pub fn fetched(&self, seconds: f64) {
        self.fetch.observe(seconds);
    }

    pub fn fetch_failed(&self, kind: &str) {
        self.fetch_errors
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    /// A push passed on by this standby to the leader; `outcome` is `ok` or `error`.
    pub fn webhook_forwarded(&self, outcome: &str) {
        let (family, o) = &self.webhook_forwards;
        family
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        o.mark();
    }

    /// One webhook delivery; `result` is `sync`, `ignored`, `bad_request` or `unauthorized`.
    pub fn webhook(&self, result: &str) {
        let (family, o) = &self.webhooks;
        family
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        o.mark();
    }

    /// One MLflow promotion outcome (`agent::promotion`).
    pub fn promotion(&self, result: &str) {
        let (family, o) = &self.promotions;
        family
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        o.mark();
    }

    /// One MLflow webhook delivery.
    pub fn mlflow_webhook(&self, result: &str) {
        let (family, o) = &self.mlflow_webhooks;
        family
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        o.mark();
    }

    /// A crashed environment worker was scheduled for restart.
    pub fn worker_restart(&self, env_name: &str) {
        let (family, o) = &self.worker_restarts;
        family.get_or_create(&env(env_name)).inc();
        o.mark();
    }

    pub fn leader(&self, is_leader: bool) {
        let (gauge, o) = &self.leader;
        gauge.set(i64::from(is_leader));
        o.mark();
    }

    /// The OpenMetrics text exposition of every metric, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode_registry(&mut out, &self.registry);
        for optional in [
            &self.webhook_forwards.1,
            &self.worker_restarts.1,
            &self.webhooks.1,
            &self.promotions.1,
            &self.mlflow_webhooks.1,
            &self.leader.1,
        ] {
            if optional.used.load(Ordering::Relaxed) {
                let _ = encode_registry(&mut out, &optional.registry);
            }
        }
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_as_openmetrics_text_ending_in_eof() {
        let m = Metrics::default();
        m.reconciled("prod", "applied", 0.2);
        m.reconciled("prod", "applied", 3.0);
        m.step("prod", "set_traffic", "ok");
        m.drift("prod", true);
        m.applied_commit("prod", "abc");
        m.error("we\"ird", "invalid_spec");
        let text = m.render();
        assert!(text.contains("flightdeck_reconcile_total{env=\"prod\",result=\"applied\"} 2\n"));
        assert!(text.contains(
            "flightdeck_reconcile_duration_seconds_bucket{le=\"0.25\",env=\"prod\"} 1\n"
        ));
        assert!(text.contains(
            "flightdeck_reconcile_duration_seconds_bucket{le=\"+Inf\",env=\"prod\"} 2\n"
        ));
        assert!(text.contains("flightdeck_reconcile_duration_seconds_count{env=\"prod\"} 2\n"));
        assert!(text.contains(
            "flightdeck_steps_total{env=\"prod\",kind=\"set_traffic\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains("flightdeck_drift_detected{env=\"prod\"} 1\n"));
        assert!(text.contains("flightdeck_applied_commit_info{env=\"prod\",commit=\"abc\"} 1\n"));
        assert!(
            text.contains("flightdeck_errors_total{env=\"we\\\"ird\",kind=\"invalid_spec\"} 1\n")
        );
        assert!(text.contains("flightdeck_git_fetch_duration_seconds_count 0\n"));
        assert!(!text.contains("flightdeck_leader"));
        assert!(text.contains("# TYPE flightdeck_reconcile counter\n"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_rollout_shows_its_stage_verdicts_and_rollbacks_and_its_stage_reads_0_once_ended() {
        use crate::metrics::{Signal, Window};
        use crate::rollout::{Comparison, GateResult, RolloutView, Verdict};
        let window = Window {
            start: chrono::DateTime::UNIX_EPOCH,
            end: chrono::DateTime::UNIX_EPOCH,
        };
        let verdict = |result| Verdict {
            gate: "error_rate < 2%".into(),
            signal: Some(Signal::ErrorRate),
            comparison: Some(Comparison::Below),
            query: String::new(),
            window,
            observed: Some(0.5),
            threshold: Some(0.02),
            result,
            detail: None,
        };
        let view = |state: &str, stage, result| RolloutView {
            endpoint: "fraud".into(),
            state: state.into(),
            stage,
            stages: 3,
            candidate: Some("green".into()),
            declared: Default::default(),
            traffic: Default::default(),
            message: String::new(),
            next_check_seconds: None,
            verdicts: vec![verdict(result)],
        };
        let m = Metrics::default();
        m.rollout("prod", &view("shifting", Some(2), GateResult::Pass));
        let text = m.render();
        assert!(
            text.contains("flightdeck_rollout_stage{env=\"prod\",endpoint=\"fraud\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("flightdeck_rollout_verdicts_total{env=\"prod\",endpoint=\"fraud\",signal=\"error_rate\",result=\"pass\"} 1\n"), "{text}");
        m.rollout("prod", &view("rolling_back", None, GateResult::Fail));
        let text = m.render();
        assert!(
            text.contains(
                "flightdeck_rollout_rollbacks_total{env=\"prod\",endpoint=\"fraud\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("flightdeck_rollout_stage{env=\"prod\",endpoint=\"fraud\"} 0\n"),
            "{text}"
        );
        m.rollout("prod", &view("shifting", Some(1), GateResult::Pass));
        m.rollout_ended("prod", "fraud");
        assert!(
            m.render()
                .contains("flightdeck_rollout_stage{env=\"prod\",endpoint=\"fraud\"} 0\n")
        );
    }

    #[test]
    fn a_new_applied_commit_replaces_the_old_series_and_optional_families_appear_once_set() {
        let m = Metrics::default();
        m.applied_commit("prod", "abc");
        m.applied_commit("prod", "def");
        m.leader(true);
        let text = m.render();
        assert!(!text.contains("commit=\"abc\""), "{text}");
        assert!(text.contains("flightdeck_applied_commit_info{env=\"prod\",commit=\"def\"} 1\n"));
        assert!(text.contains("flightdeck_leader 1\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
