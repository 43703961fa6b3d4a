//! The Azure ML endpoint metrics the sandbox emulates [MON R20] and how their time series are
//! built from the metrics store: `$filter` selection, splitting by the filtered dimensions,
//! collapse of the others, and one aggregate per time point [MON R4, R5, §7].

use std::collections::{BTreeMap, BTreeSet};

use super::metrics::{CellKey, EndpointKey, MetricsStore, percentile};
use super::monitor_query::{Aggregation, Clause};

/// How a metric's per-bucket value comes from the recorded requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// `RequestsPerMinute`: one sample per bucket per series, the request count
    /// (so `count` = 1 and `total` = `average` per bucket [MON R22 emu]).
    Requests,
    /// `RequestLatency`: one sample per request (milliseconds).
    Latency,
    /// `RequestLatency_Pxx`: one sample per bucket per series, the nearest-rank percentile
    /// of that bucket's requests.
    Percentile(f64),
}

pub struct MetricDef {
    pub name: &'static str,
    pub display: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub dimensions: &'static [&'static str],
    pub kind: Kind,
}

const LATENCY_DIMS: &[&str] = &["deployment"];

/// [MON R20]: the endpoint-resource metrics of category Traffic.
pub const METRICS: [MetricDef; 6] = [
    MetricDef {
        name: "RequestsPerMinute",
        display: "Requests Per Minute",
        description: "The number of requests sent to the online endpoint within a minute",
        unit: "Count",
        dimensions: &[
            "deployment",
            "statusCode",
            "statusCodeClass",
            "modelStatusCode",
        ],
        kind: Kind::Requests,
    },
    MetricDef {
        name: "RequestLatency",
        display: "Request Latency",
        description: "The average complete interval of time taken for a request to be responded",
        unit: "MilliSeconds",
        dimensions: LATENCY_DIMS,
        kind: Kind::Latency,
    },
    MetricDef {
        name: "RequestLatency_P50",
        display: "Request Latency P50",
        description: "The 50th percentile of the request latency in the minute",
        unit: "MilliSeconds",
        dimensions: LATENCY_DIMS,
        kind: Kind::Percentile(50.0),
    },
    MetricDef {
        name: "RequestLatency_P90",
        display: "Request Latency P90",
        description: "The 90th percentile of the request latency in the minute",
        unit: "MilliSeconds",
        dimensions: LATENCY_DIMS,
        kind: Kind::Percentile(90.0),
    },
    MetricDef {
        name: "RequestLatency_P95",
        display: "Request Latency P95",
        description: "The 95th percentile of the request latency in the minute",
        unit: "MilliSeconds",
        dimensions: LATENCY_DIMS,
        kind: Kind::Percentile(95.0),
    },
    MetricDef {
        name: "RequestLatency_P99",
        display: "Request Latency P99",
        description: "The 99th percentile of the request latency in the minute",
        unit: "MilliSeconds",
        dimensions: LATENCY_DIMS,
        kind: Kind::Percentile(99.0),
    },
];

pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

impl MetricDef {
    /// The canonical spelling of one of this metric's dimensions, matched case-insensitively.
    pub fn dimension(&self, name: &str) -> Option<&'static str> {
        self.dimensions
            .iter()
            .copied()
            .find(|d| d.eq_ignore_ascii_case(name))
    }
}

/// A dimension's value in one cell.
pub fn dim_value(dim: &str, cell: &CellKey) -> String {
    match dim {
        "statusCode" => cell.status.to_string(),
        "statusCodeClass" => format!("{}xx", cell.status / 100),
        "modelStatusCode" => cell.model_status.to_string(),
        _ => cell.deployment.clone(),
    }
}

/// Aggregates of one time point [MON §7]: `count` 0 means "no data".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    pub count: f64,
    pub total: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn one(v: f64) -> Self {
        Stat {
            count: 1.0,
            total: v,
            min: v,
            max: v,
        }
    }

    /// Sums `total` and `count`, min of `minimum`, max of `maximum`.
    pub fn merge(&mut self, o: Stat) {
        if o.count == 0.0 {
            return;
        }
        if self.count == 0.0 {
            *self = o;
            return;
        }
        self.count += o.count;
        self.total += o.total;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn value(&self, agg: Aggregation) -> f64 {
        match agg {
            Aggregation::Average => self.total / self.count,
            Aggregation::Count => self.count,
            Aggregation::Minimum => self.min,
            Aggregation::Maximum => self.max,
            Aggregation::Total => self.total,
        }
    }
}

/// A series' key: the split dimensions (canonical names) and their values.
pub type SeriesKey = Vec<(&'static str, String)>;

/// The filter, resolved against one metric: canonical dimension and clause.
pub type Selection<'a> = Vec<(&'static str, &'a Clause)>;

fn key_of(sel: &Selection<'_>, cell: &CellKey) -> Option<SeriesKey> {
    sel.iter()
        .map(|(dim, clause)| {
            let v = dim_value(dim, cell);
            clause.matches(&v).then_some((*dim, v))
        })
        .collect()
}

/// Every value `dim` took on `endpoint` in the retained buckets.
pub fn seen_values(store: &MetricsStore, endpoint: &EndpointKey, dim: &str) -> BTreeSet<String> {
    store
        .seen(endpoint)
        .iter()
        .map(|c| dim_value(dim, c))
        .collect()
}

/// Per series, the per-bucket stats of `def` for the buckets starting in `from..to` that are
/// published (ended at least the lag before now: `bucket start < published_before`).
pub fn collect(
    def: &MetricDef,
    store: &MetricsStore,
    endpoint: &EndpointKey,
    sel: &Selection<'_>,
    (from, to): (i64, i64),
    published_before: i64,
) -> BTreeMap<SeriesKey, BTreeMap<i64, Stat>> {
    let mut out: BTreeMap<SeriesKey, BTreeMap<i64, Stat>> = BTreeMap::new();
    for (start, bucket) in store.buckets(endpoint, from, to.min(published_before)) {
        match def.kind {
            Kind::Requests | Kind::Latency => {
                let mut per: BTreeMap<SeriesKey, Stat> = BTreeMap::new();
                for (cell_key, cell) in &bucket.cells {
                    let Some(key) = key_of(sel, cell_key) else {
                        continue;
                    };
                    let stat = Stat {
                        count: cell.count as f64,
                        total: cell.latency_sum,
                        min: cell.latency_min,
                        max: cell.latency_max,
                    };
                    let entry = per.entry(key).or_default();
                    match def.kind {
                        Kind::Requests => *entry = Stat::one(entry.total + cell.count as f64),
                        _ => entry.merge(stat),
                    }
                }
                for (key, stat) in per {
                    out.entry(key).or_default().insert(start, stat);
                }
            }
            Kind::Percentile(p) => {
                let mut per: BTreeMap<SeriesKey, Vec<f64>> = BTreeMap::new();
                for (deployment, sample) in &bucket.samples {
                    let pseudo = CellKey {
                        deployment: deployment.clone(),
                        status: 0,
                        model_status: 0,
                    };
                    if let Some(key) = key_of(sel, &pseudo) {
                        per.entry(key).or_default().extend(sample.values());
                    }
                }
                for (key, mut values) in per {
                    if let Some(v) = percentile(&mut values, p) {
                        out.entry(key).or_default().insert(start, Stat::one(v));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetricsConfig;
    use crate::metrics::Observation;
    use crate::state::WorkspaceKey;
    use chrono::DateTime;
    use std::time::Duration;

    #[test]
    fn percentiles_are_per_bucket_nearest_rank_values_of_the_selected_deployments() {
        let endpoint = EndpointKey {
            ws: WorkspaceKey {
                subscription: "s".into(),
                resource_group: "rg".into(),
                workspace: "ws".into(),
            },
            endpoint: "e1".into(),
        };
        let mut store = MetricsStore::new(MetricsConfig::default());
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap(); // a minute boundary
        let mut add = |deployment: &str, ms: u64| {
            store.record(&Observation {
                endpoint: &endpoint,
                deployment,
                status: 200,
                model_status: 200,
                latency: Duration::from_millis(ms),
                at,
            })
        };
        for _ in 0..19 {
            add("green", 250);
        }
        add("green", 1000);
        add("blue", 5);
        let star = Clause {
            dimension: "deployment".into(),
            values: None,
        };
        let per = |name: &str, sel: &Selection<'_>| {
            collect(
                lookup(name).unwrap(),
                &store,
                &endpoint,
                sel,
                (0, i64::MAX),
                i64::MAX,
            )
        };
        let split: Selection<'_> = vec![("deployment", &star)];
        let green = |name: &str| {
            let s = per(name, &split);
            s[&vec![("deployment", "green".to_string())]]
                .values()
                .next()
                .unwrap()
                .total
        };
        assert_eq!(green("RequestLatency_P50"), 250.0);
        assert_eq!(green("RequestLatency_P95"), 250.0, "the 19th of 20");
        assert_eq!(green("RequestLatency_P99"), 1000.0, "the 20th of 20");
        // Unsplit: the percentile of both deployments' requests together (21 values).
        let all = per("RequestLatency_P99", &Vec::new());
        assert_eq!(all[&Vec::new()].values().next().unwrap().total, 1000.0);
        let avg = per("RequestLatency", &Vec::new());
        let stat = avg[&Vec::new()].values().next().unwrap();
        assert_eq!(
            (stat.count, stat.total, stat.min, stat.max),
            (21.0, 5755.0, 5.0, 1000.0)
        );
    }
}
