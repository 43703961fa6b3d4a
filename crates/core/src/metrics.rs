//! The one trait every metric source implements for rollout gates: Azure Monitor (the metrics
//! REST API on the endpoint resource, `flightdeck-azureml`), Prometheus (the HTTP query API,
//! `flightdeck-prometheus`) and, through those two, the sandbox's data plane.
//!
//! A gate asks once per evaluation for every signal of every deployment it compares (candidate
//! and baseline) over one window: one [`MetricsProvider::read`] per gated endpoint per tick,
//! however many HTTP requests the provider needs for it.
//!
//! "No data" is a value of its own (`Reading::value == None`): an empty series, a NaN, a metric
//! the platform reported as failed. It is never 0 and never "healthy" ([MON R12], [MON R13],
//! [PROM P4], [PROM P5]); the gate decides what too little data means (`min_requests`).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::BackendError;

/// What a gate measures of one deployment over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Requests served in the window (a count).
    Requests,
    /// Share of requests answered 5xx, as a fraction 0..=1.
    ErrorRate,
    /// 95th percentile latency, milliseconds.
    LatencyP95,
    /// 99th percentile latency, milliseconds.
    LatencyP99,
}

impl Signal {
    pub const ALL: [Signal; 4] = [
        Signal::Requests,
        Signal::ErrorRate,
        Signal::LatencyP95,
        Signal::LatencyP99,
    ];

    /// The name used in policies and reports (`error_rate`, `p99`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Requests => "requests",
            Signal::ErrorRate => "error_rate",
            Signal::LatencyP95 => "p95",
            Signal::LatencyP99 => "p99",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A closed time window, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One read: these signals, for these deployments of one endpoint, over one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsRequest {
    pub endpoint: String,
    pub deployments: Vec<String>,
    pub signals: Vec<Signal>,
    pub window: Window,
}

/// One observed value and how it was obtained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// `None`: no data (empty series, NaN, a metric the platform failed).
    pub value: Option<f64>,
    /// The query as sent, for the verdict: PromQL, or the metrics API path and query string.
    /// Never a credential.
    pub query: String,
    /// The window the value really covers (a provider may trim buckets that are not yet
    /// complete, [MON R18]).
    pub window: Window,
}

/// Readings by deployment, then by signal. A signal the provider could not read for a
/// deployment is present with `value: None`.
pub type Readings = BTreeMap<String, BTreeMap<Signal, Reading>>;

/// A source of per-deployment request metrics.
#[async_trait]
pub trait MetricsProvider: Send + Sync {
    /// Short name for reports (`azure_monitor`, `prometheus`).
    fn name(&self) -> &'static str;

    /// Reads every requested signal of every requested deployment. Errors are typed like a
    /// backend's: `is_transient` says whether the next tick may try again.
    async fn read(&self, request: &MetricsRequest) -> Result<Readings, BackendError>;
}
