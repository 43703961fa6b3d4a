//! The data plane's metrics store: every scoring request the data plane answers (and every
//! mirrored copy) is recorded per (endpoint, deployment, HTTP status) with its latency as the
//! sandbox clock measured it. Two views read it: the Azure Monitor metrics API (`monitor`, per
//! time bucket) and Prometheus `/metrics` (`prometheus`, cumulative Istio-shaped series).
//!
//! Memory is bounded: per bucket and endpoint, one aggregate cell per (deployment, status,
//! model status) and one latency sample of at most `SAMPLE_CAP` values per deployment
//! (reservoir sampling: exact percentiles up to that many requests per bucket). Buckets older
//! than the retention are dropped on every record and read, and so are Prometheus series idle
//! for longer than the retention.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::MetricsConfig;
use super::prometheus::Istio;
use super::state::WorkspaceKey;

/// Latency values kept per bucket and deployment for the percentiles.
pub const SAMPLE_CAP: usize = 256;

/// An endpoint, as its ARM id names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub ws: WorkspaceKey,
    pub endpoint: String,
}

/// The dimensions one cell of a bucket is kept under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub deployment: String,
    /// What the endpoint answered.
    pub status: u16,
    /// What the model container answered; 0 when no container answered (not ready).
    pub model_status: u16,
}

/// Request count and latency aggregates (milliseconds) of one cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub count: u64,
    pub latency_sum: f64,
    pub latency_min: f64,
    pub latency_max: f64,
}

impl Cell {
    fn add(&mut self, ms: f64) {
        if self.count == 0 {
            self.latency_min = ms;
            self.latency_max = ms;
        } else {
            self.latency_min = self.latency_min.min(ms);
            self.latency_max = self.latency_max.max(ms);
        }
        self.count += 1;
        self.latency_sum += ms;
    }
}

/// A bounded, uniform sample of latencies (Algorithm R with a deterministic generator).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    seen: u64,
    values: Vec<f64>,
}

impl Sample {
    fn add(&mut self, ms: f64) {
        self.seen += 1;
        if self.values.len() < SAMPLE_CAP {
            self.values.push(ms);
            return;
        }
        let j = splitmix(self.seen) % self.seen;
        if let Some(slot) = self.values.get_mut(j as usize) {
            *slot = ms;
        }
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The nearest-rank percentile `p` (0..=100) of `values`; `None` when there are none.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// One endpoint's requests within one bucket.
#[derive(Clone, Debug, Default)]
pub struct EndpointBucket {
    pub cells: BTreeMap<CellKey, Cell>,
    pub samples: BTreeMap<String, Sample>,
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub endpoint: &'a EndpointKey,
    pub deployment: &'a str,
    pub status: u16,
    pub model_status: u16,
    pub latency: Duration,
    /// When the request completed: it counts in the bucket holding this time.
    pub at: DateTime<Utc>,
}

/// The store: buckets by start (Unix milliseconds), then by endpoint.
#[derive(Debug)]
pub struct MetricsStore {
    config: MetricsConfig,
    buckets: BTreeMap<i64, BTreeMap<EndpointKey, EndpointBucket>>,
    istio: Istio,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl MetricsStore {
    pub fn new(config: MetricsConfig) -> Self {
        MetricsStore {
            config,
            buckets: BTreeMap::new(),
            istio: Istio::new(),
        }
    }

    pub fn grain_ms(&self) -> i64 {
        millis(self.config.grain)
    }

    /// The start of the bucket holding `t` (Unix milliseconds).
    pub fn bucket_of(&self, t: DateTime<Utc>) -> i64 {
        t.timestamp_millis().div_euclid(self.grain_ms()) * self.grain_ms()
    }

    pub fn record(&mut self, o: &Observation<'_>) {
        let ms = o.latency.as_secs_f64() * 1000.0;
        let start = self.bucket_of(o.at);
        let bucket = self
            .buckets
            .entry(start)
            .or_default()
            .entry(o.endpoint.clone())
            .or_default();
        bucket
            .cells
            .entry(CellKey {
                deployment: o.deployment.to_string(),
                status: o.status,
                model_status: o.model_status,
            })
            .or_insert(Cell {
                count: 0,
                latency_sum: 0.0,
                latency_min: 0.0,
                latency_max: 0.0,
            })
            .add(ms);
        bucket
            .samples
            .entry(o.deployment.to_string())
            .or_default()
            .add(ms);
        self.istio
            .observe(o.endpoint, o.deployment, o.status, ms, o.at);
        self.prune(o.at);
    }

    /// Drops the buckets that ended more than the retention before `now`, and the Prometheus
    /// series idle that long.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let oldest = now.timestamp_millis() - millis(self.config.retention) - self.grain_ms();
        self.buckets = self.buckets.split_off(&(oldest + 1));
        let idle_since =
            now - chrono::Duration::from_std(self.config.retention).unwrap_or_default();
        self.istio.prune(idle_since);
    }

    /// `endpoint`'s buckets starting in `from..to` (Unix milliseconds), oldest first.
    pub fn buckets(
        &self,
        endpoint: &EndpointKey,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (i64, &EndpointBucket)> {
        self.buckets
            .range(from..to.max(from))
            .filter_map(move |(start, eps)| eps.get(endpoint).map(|b| (*start, b)))
    }

    /// Every cell key `endpoint` has in the retained buckets (for ValidateDimensions).
    pub fn seen(&self, endpoint: &EndpointKey) -> BTreeSet<CellKey> {
        self.buckets
            .values()
            .filter_map(|eps| eps.get(endpoint))
            .flat_map(|b| b.cells.keys().cloned())
            .collect()
    }

    /// How many buckets are kept (all endpoints).
    #[cfg(test)]
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// The OpenMetrics text of the cumulative Istio series.
    pub fn render_prometheus(&self) -> String {
        self.istio.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EndpointKey {
        EndpointKey {
            ws: WorkspaceKey {
                subscription: "s".into(),
                resource_group: "rg".into(),
                workspace: "ws".into(),
            },
            endpoint: "e1".into(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn observe(store: &mut MetricsStore, secs: i64, status: u16, ms: u64) {
        let k = key();
        store.record(&Observation {
            endpoint: &k,
            deployment: "blue",
            status,
            model_status: status,
            latency: Duration::from_millis(ms),
            at: at(secs),
        });
    }

    #[test]
    fn requests_aggregate_per_bucket_and_status() {
        let mut store = MetricsStore::new(MetricsConfig::default());
        let base = 1_700_000_000 % 60;
        for ms in [10, 20, 30] {
            observe(&mut store, 60 - base, 200, ms);
        }
        observe(&mut store, 61 - base, 500, 5);
        observe(&mut store, 120 - base, 200, 1);
        let b: Vec<_> = store.buckets(&key(), 0, i64::MAX).collect();
        assert_eq!(b.len(), 2);
        let ok = &b[0].1.cells[&CellKey {
            deployment: "blue".into(),
            status: 200,
            model_status: 200,
        }];
        assert_eq!((ok.count, ok.latency_sum), (3, 60.0));
        assert_eq!((ok.latency_min, ok.latency_max), (10.0, 30.0));
        assert_eq!(b[0].1.cells.len(), 2);
        assert_eq!(b[0].1.samples["blue"].values().len(), 4);
    }

    #[test]
    fn the_sample_stays_bounded_and_percentiles_use_nearest_rank() {
        let mut sample = Sample::default();
        for i in 0..10_000 {
            sample.add(f64::from(i));
        }
        assert_eq!(sample.values().len(), SAMPLE_CAP);
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 95.0), Some(95.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn buckets_older_than_the_retention_are_dropped() {
        let mut store = MetricsStore::new(MetricsConfig {
            grain: Duration::from_secs(60),
            lag: Duration::ZERO,
            retention: Duration::from_secs(600),
        });
        for minute in 0..60 {
            observe(&mut store, minute * 60, 200, 1);
        }
        // Retention 10 min of 1-min buckets: the current one and ten (or eleven) before it.
        assert!(store.bucket_count() <= 12, "{}", store.bucket_count());
        assert!(store.bucket_count() >= 10);
    }
}
