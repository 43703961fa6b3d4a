//! Judging a stage's metric gates from one read of the candidate's and the baseline's metrics.
//! Pure: the read happens at the edge (`MetricsProvider`), the verdicts are data that the apply
//! report, `/status`, the metrics and `rollout status` all show.

use serde::{Deserialize, Serialize};

use super::policy::{Gate, RolloutPolicy, Threshold, format_value};
use crate::metrics::{Readings, Signal, Window};

/// What one gate concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateResult {
    Pass,
    Fail,
    /// The candidate (or, for a relative gate, the baseline) had no value in the window.
    NoData,
}

/// A gate's verdict, with everything needed to check it by hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The gate as written: `error_rate < 2%`, `smoke`.
    pub gate: String,
    /// The metric judged; `None` for the `smoke` gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    /// `None` for the `smoke` gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<super::policy::Comparison>,
    /// The candidate's query as the provider sent it; for the `smoke` gate, the request files.
    pub query: String,
    pub window: Window,
    /// The candidate's value; `None`: no data.
    pub observed: Option<f64>,
    /// The threshold in the signal's unit (a relative gate's factor times the baseline value);
    /// `None` when the baseline had no data.
    pub threshold: Option<f64>,
    pub result: GateResult,
    /// The `smoke` gate's outcome: `200 from green` on a pass, what failed otherwise (the
    /// file, the status or JSON path, observed vs expected, the tries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The candidate's smoke requests as the driver ran them at a stage (the backend's
/// pre-traffic test path): `Ok("200 from green")`, or `Err` with what failed.
pub type SmokeRun = Result<String, String>;

/// The `smoke` gate asks the driver to run `deployment`'s test of `endpoint` again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeRequest {
    pub endpoint: String,
    pub deployment: String,
}

/// The name the `smoke` gate is written with, in verdicts and metrics labels.
pub const SMOKE: &str = "smoke";

impl Verdict {
    /// The `smoke` gate's verdict from one run.
    pub fn smoke(run: &SmokeRun, files: String, window: Window) -> Verdict {
        let (result, detail) = match run {
            Ok(detail) => (GateResult::Pass, detail.clone()),
            Err(failure) => (GateResult::Fail, failure.clone()),
        };
        Verdict {
            gate: SMOKE.to_string(),
            signal: None,
            comparison: None,
            query: files,
            window,
            observed: None,
            threshold: None,
            result,
            detail: Some(detail),
        }
    }

    /// `error_rate`, `p99`, or `smoke`.
    pub fn signal_name(&self) -> &'static str {
        self.signal.map_or(SMOKE, Signal::name)
    }

    /// `error_rate 7.1% >= 2%` (a failed `error_rate < 2%`), `p99 120ms < 180ms (1.5x
    /// baseline)` (a pass), `p99 no data`, `smoke failed: b.json: got status 500, expected a
    /// 2xx status: boom (tried 2 times)`, `smoke passed: 200 from green`.
    pub fn describe(&self) -> String {
        let (Some(signal), Some(comparison)) = (self.signal, self.comparison) else {
            let outcome = match self.result {
                GateResult::Pass => "passed",
                _ => "failed",
            };
            let detail = self.detail.as_deref().unwrap_or("no result");
            return format!("{SMOKE} {outcome}: {detail}");
        };
        let Some(observed) = self.observed else {
            return format!("{signal} no data");
        };
        let shown = format_value(signal, observed);
        let Some(threshold) = self.threshold else {
            return format!("{signal} {shown} (baseline: no data)");
        };
        let op = match self.result {
            GateResult::Pass => comparison.symbol(),
            _ => comparison.negated_symbol(),
        };
        let relative = self
            .gate
            .split_once(' ')
            .and_then(|(_, rest)| rest.split_once(' '))
            .map(|(_, t)| t)
            .filter(|t| t.ends_with("baseline"))
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        format!(
            "{signal} {shown} {op} {}{relative}",
            format_value(signal, threshold)
        )
    }
}

/// The signals a stage's evaluation reads: its gates' signals, and `requests` when the policy
/// needs a minimum of data.
pub fn signals_for(policy: &RolloutPolicy, gates: &[Gate]) -> Vec<Signal> {
    let mut out: Vec<Signal> = gates.iter().map(|g| g.signal).collect();
    if policy.min_requests > 0 {
        out.push(Signal::Requests);
    }
    out.sort();
    out.dedup();
    out
}

/// The candidate's request count in the read, if it was read.
pub fn candidate_requests(readings: &Readings, candidate: &str) -> Option<f64> {
    readings
        .get(candidate)
        .and_then(|by| by.get(&Signal::Requests))
        .and_then(|r| r.value)
}

/// Judges every gate. `baseline` is the deployment a relative gate compares with.
pub fn evaluate(
    gates: &[Gate],
    readings: &Readings,
    candidate: &str,
    baseline: Option<&str>,
    window: Window,
) -> Vec<Verdict> {
    gates
        .iter()
        .map(|gate| {
            let reading = readings.get(candidate).and_then(|by| by.get(&gate.signal));
            let observed = reading.and_then(|r| r.value).filter(|v| v.is_finite());
            let threshold = match gate.threshold {
                Threshold::Absolute(v) => Some(v),
                Threshold::RelativeToBaseline(factor) => baseline
                    .and_then(|b| readings.get(b))
                    .and_then(|by| by.get(&gate.signal))
                    .and_then(|r| r.value)
                    .filter(|v| v.is_finite())
                    .map(|v| v * factor),
            };
            let result = match (observed, threshold) {
                (Some(o), Some(t)) if gate.comparison.holds(o, t) => GateResult::Pass,
                (Some(_), Some(_)) => GateResult::Fail,
                _ => GateResult::NoData,
            };
            Verdict {
                gate: gate.to_string(),
                signal: Some(gate.signal),
                comparison: Some(gate.comparison),
                query: reading.map(|r| r.query.clone()).unwrap_or_default(),
                window: reading.map_or(window, |r| r.window),
                observed,
                threshold,
                result,
                detail: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metrics::Reading;
    use crate::rollout::policy::Comparison;

    fn window() -> Window {
        Window {
            start: "2026-12-01T10:00:00Z".parse().unwrap(),
            end: "2026-12-01T10:05:00Z".parse().unwrap(),
        }
    }

    fn readings(values: &[(&str, Signal, Option<f64>)]) -> Readings {
        let mut out: Readings = BTreeMap::new();
        for (d, s, v) in values {
            out.entry(d.to_string()).or_default().insert(
                *s,
                Reading {
                    value: *v,
                    query: format!("{s} of {d}"),
                    window: window(),
                },
            );
        }
        out
    }

    fn gate(signal: Signal, threshold: Threshold) -> Gate {
        Gate {
            signal,
            comparison: Comparison::Below,
            threshold,
        }
    }

    #[test]
    fn an_absolute_gate_fails_above_its_threshold_and_says_by_how_much() {
        let r = readings(&[("green", Signal::ErrorRate, Some(0.071))]);
        let v = evaluate(
            &[gate(Signal::ErrorRate, Threshold::Absolute(0.02))],
            &r,
            "green",
            Some("blue"),
            window(),
        );
        assert_eq!(v[0].result, GateResult::Fail);
        assert_eq!(v[0].query, "error_rate of green");
        assert_eq!(v[0].describe(), "error_rate 7.1% >= 2%");
    }

    #[test]
    fn a_relative_gate_compares_with_the_baseline_over_the_same_window() {
        let g = [gate(Signal::LatencyP99, Threshold::RelativeToBaseline(1.2))];
        let slow = readings(&[
            ("green", Signal::LatencyP99, Some(200.0)),
            ("blue", Signal::LatencyP99, Some(100.0)),
        ]);
        assert_eq!(
            evaluate(&g, &slow, "green", Some("blue"), window())[0].result,
            GateResult::Fail
        );
        let fine = readings(&[
            ("green", Signal::LatencyP99, Some(110.0)),
            ("blue", Signal::LatencyP99, Some(100.0)),
        ]);
        let v = evaluate(&g, &fine, "green", Some("blue"), window());
        assert_eq!(v[0].result, GateResult::Pass);
        assert_eq!(v[0].threshold, Some(120.0));
    }

    #[test]
    fn missing_or_nan_values_are_no_data_never_a_pass() {
        let g = [
            gate(Signal::ErrorRate, Threshold::Absolute(0.02)),
            gate(Signal::LatencyP99, Threshold::RelativeToBaseline(1.2)),
        ];
        let r = readings(&[
            ("green", Signal::ErrorRate, Some(f64::NAN)),
            ("green", Signal::LatencyP99, Some(90.0)),
            ("blue", Signal::LatencyP99, None),
        ]);
        let v = evaluate(&g, &r, "green", Some("blue"), window());
        assert_eq!(v[0].result, GateResult::NoData);
        assert_eq!(v[1].result, GateResult::NoData);
    }
}
