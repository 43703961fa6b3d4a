//! Prometheus metrics, rendered by hand in the text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if value <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    reconciles: BTreeMap<(String, String), u64>,
    durations: BTreeMap<String, Histogram>,
    applied_commit: BTreeMap<String, String>,
    drift: BTreeMap<String, bool>,
    steps: BTreeMap<(String, String, String), u64>,
    errors: BTreeMap<(String, String), u64>,
    fetch: Histogram,
    fetch_errors: BTreeMap<String, u64>,
    webhook_forwards: BTreeMap<String, u64>,
    webhooks: BTreeMap<String, u64>,
    worker_restarts: BTreeMap<String, u64>,
    leader: Option<bool>,
}

/// All agent metrics. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    /// One finished reconcile of `env` with `result` (in_sync, applied, drift_reported, ...).
    pub fn reconciled(&self, env: &str, result: &str, seconds: f64) {
        self.with(|m| {
            *m.reconciles.entry((env.into(), result.into())).or_default() += 1;
            m.durations.entry(env.into()).or_default().observe(seconds);
        });
    }

    pub fn applied_commit(&self, env: &str, commit: &str) {
        self.with(|m| {
            m.applied_commit.insert(env.into(), commit.into());
        });
    }

    pub fn drift(&self, env: &str, detected: bool) {
        self.with(|m| {
            m.drift.insert(env.into(), detected);
        });
    }

    /// One executed step; `outcome` is `ok` or `error`.
    pub fn step(&self, env: &str, kind: &str, outcome: &str) {
        self.with(|m| {
            *m.steps
                .entry((env.into(), kind.into(), outcome.into()))
                .or_default() += 1
        });
    }

    pub fn error(&self, env: &str, kind: &str) {
        self.with(|m| *m.errors.entry((env.into(), kind.into())).or_default() += 1);
    }

    pub fn fetched(&self, seconds: f64) {
        self.with(|m| m.fetch.observe(seconds));
    }

    pub fn fetch_failed(&self, kind: &str) {
        self.with(|m| *m.fetch_errors.entry(kind.into()).or_default() += 1);
    }

    /// A push passed on by this standby to the leader; `outcome` is `ok` or `error`.
    pub fn webhook_forwarded(&self, outcome: &str) {
        self.with(|m| *m.webhook_forwards.entry(outcome.into()).or_default() += 1);
    }

    /// One webhook delivery; `result` is `sync`, `ignored`, `bad_request` or `unauthorized`.
    pub fn webhook(&self, result: &str) {
        self.with(|m| *m.webhooks.entry(result.into()).or_default() += 1);
    }

    /// A crashed environment worker was scheduled for restart.
    pub fn worker_restart(&self, env: &str) {
        self.with(|m| *m.worker_restarts.entry(env.into()).or_default() += 1);
    }

    pub fn leader(&self, is_leader: bool) {
        self.with(|m| m.leader = Some(is_leader));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        header(
            &mut out,
            "flightdeck_reconcile_total",
            "counter",
            "Reconciles by environment and result.",
        );
        for ((env, result), n) in &m.reconciles {
            let _ = writeln!(
                out,
                "flightdeck_reconcile_total{{env=\"{}\",result=\"{}\"}} {n}",
                esc(env),
                esc(result)
            );
        }
        header(
            &mut out,
            "flightdeck_reconcile_duration_seconds",
            "histogram",
            "Time to reconcile one environment.",
        );
        for (env, h) in &m.durations {
            h.render(
                &mut out,
                "flightdeck_reconcile_duration_seconds",
                &format!("env=\"{}\"", esc(env)),
            );
        }
        header(
            &mut out,
            "flightdeck_applied_commit_info",
            "gauge",
            "Last commit fully applied per environment.",
        );
        for (env, commit) in &m.applied_commit {
            let _ = writeln!(
                out,
                "flightdeck_applied_commit_info{{env=\"{}\",commit=\"{}\"}} 1",
                esc(env),
                esc(commit)
            );
        }
        header(
            &mut out,
            "flightdeck_drift_detected",
            "gauge",
            "1 when live state differs from an unchanged commit.",
        );
        for (env, drift) in &m.drift {
            let _ = writeln!(
                out,
                "flightdeck_drift_detected{{env=\"{}\"}} {}",
                esc(env),
                u8::from(*drift)
            );
        }
        header(
            &mut out,
            "flightdeck_steps_total",
            "counter",
            "Plan steps executed, by action kind and outcome.",
        );
        for ((env, kind, outcome), n) in &m.steps {
            let _ = writeln!(
                out,
                "flightdeck_steps_total{{env=\"{}\",kind=\"{}\",outcome=\"{}\"}} {n}",
                esc(env),
                esc(kind),
                esc(outcome)
            );
        }
        header(
            &mut out,
            "flightdeck_errors_total",
            "counter",
            "Reconcile errors by environment and kind.",
        );
        for ((env, kind), n) in &m.errors {
            let _ = writeln!(
                out,
                "flightdeck_errors_total{{env=\"{}\",kind=\"{}\"}} {n}",
                esc(env),
                esc(kind)
            );
        }
        header(
            &mut out,
            "flightdeck_git_fetch_duration_seconds",
            "histogram",
            "Time to fetch the source.",
        );
        m.fetch
            .render(&mut out, "flightdeck_git_fetch_duration_seconds", "");
        header(
            &mut out,
            "flightdeck_source_errors_total",
            "counter",
            "Failed fetches by kind.",
        );
        for (kind, n) in &m.fetch_errors {
            let _ = writeln!(
                out,
                "flightdeck_source_errors_total{{kind=\"{}\"}} {n}",
                esc(kind)
            );
        }
        if !m.webhook_forwards.is_empty() {
            header(
                &mut out,
                "flightdeck_webhook_forwards_total",
                "counter",
                "Pushes a standby passed on to the leader, by outcome.",
            );
            for (outcome, n) in &m.webhook_forwards {
                let _ = writeln!(
                    out,
                    "flightdeck_webhook_forwards_total{{outcome=\"{}\"}} {n}",
                    esc(outcome)
                );
            }
        }
        if !m.worker_restarts.is_empty() {
            header(
                &mut out,
                "flightdeck_worker_restarts_total",
                "counter",
                "Environment workers restarted after a panic or an unexpected exit.",
            );
            for (env, n) in &m.worker_restarts {
                let _ = writeln!(
                    out,
                    "flightdeck_worker_restarts_total{{env=\"{}\"}} {n}",
                    esc(env)
                );
            }
        }
        if !m.webhooks.is_empty() {
            header(
                &mut out,
                "flightdeck_webhooks_total",
                "counter",
                "Webhook deliveries by result (sync, ignored, bad_request, unauthorized).",
            );
            for (result, n) in &m.webhooks {
                let _ = writeln!(
                    out,
                    "flightdeck_webhooks_total{{result=\"{}\"}} {n}",
                    esc(result)
                );
            }
        }
        if let Some(leader) = m.leader {
            header(
                &mut out,
                "flightdeck_leader",
                "gauge",
                "1 while this replica holds the lease.",
            );
            let _ = writeln!(out, "flightdeck_leader {}", u8::from(leader));
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label value escaping: backslash, double quote and newline.
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_as_prometheus_text() {
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
            "flightdeck_reconcile_duration_seconds_bucket{env=\"prod\",le=\"0.25\"} 1\n"
        ));
        assert!(text.contains(
            "flightdeck_reconcile_duration_seconds_bucket{env=\"prod\",le=\"+Inf\"} 2\n"
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
    }
}
