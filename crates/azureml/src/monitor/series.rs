//! The pure half of the Azure Monitor provider: the metrics response as the contract shapes it
//! ([MON R9], [MON R10], [MON R5]), and how its buckets become one deployment's values. No I/O,
//! no clock: the caller passes the cutoff ([MON R18]).

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A `Metrics_List` 200 body [MON R9]. Only what the provider reads.
#[derive(Debug, Deserialize)]
pub(crate) struct MetricsResponse {
    /// The grain the buckets really have; may differ from the one asked for [MON R9].
    #[serde(default)]
    pub interval: Option<String>,
    pub value: Vec<Metric>,
}

/// One metric of the response [MON R10].
#[derive(Debug, Deserialize)]
pub(crate) struct Metric {
    pub name: LocalizableString,
    /// `Success`, or the reason this metric failed while the others did not [MON R12].
    #[serde(rename = "errorCode", default)]
    pub error_code: Option<String>,
    #[serde(rename = "errorMessage", default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LocalizableString {
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TimeSeries {
    #[serde(default)]
    pub metadatavalues: Vec<MetadataValue>,
    #[serde(default)]
    pub data: Vec<Bucket>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MetadataValue {
    pub name: LocalizableString,
    #[serde(default)]
    pub value: Option<String>,
}

/// One time bucket. A bucket without data carries `timeStamp` only [MON R5]: every
/// aggregation is optional and a missing one is "no data", never 0.
#[derive(Debug, Deserialize)]
pub(crate) struct Bucket {
    #[serde(rename = "timeStamp")]
    pub time_stamp: DateTime<Utc>,
    #[serde(default)]
    pub total: Option<f64>,
    #[serde(default)]
    pub average: Option<f64>,
}

impl Metric {
    /// Whether the platform produced this metric. An absent `errorCode` is success (the
    /// field is optional); anything but `Success` is no data, never healthy [MON R12].
    pub fn succeeded(&self) -> bool {
        self.error_code
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case("success"))
    }

    /// The series of one deployment. Dimension names come back lowercased, so they are
    /// matched case-insensitively [MON R10]; ARM names are case-insensitive too.
    pub fn series_of<'a>(&'a self, deployment: &'a str) -> impl Iterator<Item = &'a TimeSeries> {
        self.timeseries.iter().filter(move |s| {
            s.dimension("deployment")
                .is_some_and(|v| v.eq_ignore_ascii_case(deployment))
        })
    }
}

impl TimeSeries {
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.metadatavalues
            .iter()
            .find(|m| m.name.value.eq_ignore_ascii_case(name))
            .and_then(|m| m.value.as_deref())
    }
}

/// Which buckets count: inside the window and complete, that is ending no later than
/// `cutoff` (now − ingestion delay, [MON R18]) nor than the window's end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Evaluated {
    pub start: DateTime<Utc>,
    /// `min(window end, now − ingestion delay)`.
    pub end: DateTime<Utc>,
    pub grain: chrono::Duration,
}

impl Evaluated {
    fn counts(&self, bucket: &Bucket) -> bool {
        bucket.time_stamp >= self.start && bucket.time_stamp + self.grain <= self.end
    }
}

/// Requests in the window and the share answered 5xx, from `RequestsPerMinute` split by
/// `statusCodeClass` [MON §5]. A bucket's count is `total`, else `average` [MON R22].
/// Requests is `None` when no evaluated bucket has a value; the error rate is `None` too when
/// the requests sum to 0 (0/0 is no data, not 0 %).
pub(crate) fn requests_and_error_rate(
    metric: &Metric,
    deployment: &str,
    evaluated: Evaluated,
) -> (Option<f64>, Option<f64>) {
    if !metric.succeeded() {
        return (None, None);
    }
    let (mut all, mut errors, mut seen) = (0.0, 0.0, false);
    for series in metric.series_of(deployment) {
        let is_5xx = series
            .dimension("statusCodeClass")
            .is_some_and(|c| c.trim().starts_with('5'));
        for bucket in series.data.iter().filter(|b| evaluated.counts(b)) {
            let Some(n) = bucket.total.or(bucket.average) else {
                continue;
            };
            seen = true;
            all += n;
            if is_5xx {
                errors += n;
            }
        }
    }
    if !seen {
        return (None, None);
    }
    let rate = (all > 0.0).then(|| errors / all);
    (Some(all), rate)
}

/// The worst per-bucket percentile over the window: `RequestLatency_Pxx` is a per-minute value,
/// and averaging minutes' P99s is not the P99 of the window [MON R22], so the gate sees the
/// **max** of the evaluated buckets' `average`. `None` without a single value.
pub(crate) fn max_percentile(
    metric: &Metric,
    deployment: &str,
    evaluated: Evaluated,
) -> Option<f64> {
    if !metric.succeeded() {
        return None;
    }
    metric
        .series_of(deployment)
        .flat_map(|s| s.data.iter())
        .filter(|b| evaluated.counts(b))
        .filter_map(|b| b.average)
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(min: u32) -> DateTime<Utc> {
        format!("2026-01-01T10:{min:02}:00Z").parse().unwrap()
    }

    fn window(end_min: u32) -> Evaluated {
        Evaluated {
            start: at(0),
            end: at(end_min),
            grain: chrono::Duration::minutes(1),
        }
    }

    fn metric(body: serde_json::Value) -> Metric {
        serde_json::from_value(body).unwrap()
    }

    fn series(deployment: &str, class: &str, points: &[(u32, f64)]) -> serde_json::Value {
        let data: Vec<_> = points
            .iter()
            .map(|(m, v)| json!({"timeStamp": at(*m), "total": v, "count": 1.0, "average": v}))
            .collect();
        json!({
            "metadatavalues": [
                {"name": {"value": "deployment"}, "value": deployment},
                {"name": {"value": "statuscodeclass"}, "value": class}
            ],
            "data": data
        })
    }

    #[test]
    fn the_error_rate_is_the_5xx_share_of_every_status_class_of_that_deployment() {
        let m = metric(json!({
            "name": {"value": "RequestsPerMinute"}, "errorCode": "Success",
            "timeseries": [
                series("green", "2xx", &[(0, 90.0), (1, 80.0)]),
                series("green", "5xx", &[(0, 10.0), (1, 20.0)]),
                series("blue", "2xx", &[(0, 500.0)]),
            ]
        }));
        assert_eq!(
            requests_and_error_rate(&m, "green", window(10)),
            (Some(200.0), Some(0.15))
        );
        assert_eq!(
            requests_and_error_rate(&m, "BLUE", window(10)),
            (Some(500.0), Some(0.0))
        );
    }

    #[test]
    fn buckets_ending_after_the_cutoff_do_not_count() {
        let m = metric(json!({
            "name": {"value": "RequestsPerMinute"},
            "timeseries": [series("green", "5xx", &[(0, 1.0), (1, 1.0), (2, 7.0)])]
        }));
        // The bucket at :02 ends at :03, after the cutoff at :02.
        assert_eq!(requests_and_error_rate(&m, "green", window(2)).0, Some(2.0));
    }

    #[test]
    fn empty_buckets_and_missing_series_are_no_data_and_never_zero() {
        let m = metric(json!({
            "name": {"value": "RequestsPerMinute"}, "errorCode": "Success",
            "timeseries": [{
                "metadatavalues": [{"name": {"value": "deployment"}, "value": "green"}],
                "data": [{"timeStamp": at(0)}, {"timeStamp": at(1)}]
            }]
        }));
        assert_eq!(
            requests_and_error_rate(&m, "green", window(10)),
            (None, None)
        );
        assert_eq!(
            requests_and_error_rate(&m, "blue", window(10)),
            (None, None)
        );
    }

    #[test]
    fn a_failed_metric_is_no_data_even_with_series() {
        let m = metric(json!({
            "name": {"value": "RequestLatency_P99"}, "errorCode": "InvalidSamplingType",
            "timeseries": [series("green", "2xx", &[(0, 5.0)])]
        }));
        assert_eq!(max_percentile(&m, "green", window(10)), None);
    }

    #[test]
    fn a_percentile_is_the_worst_minute_not_the_mean_of_minutes() {
        let m = metric(json!({
            "name": {"value": "RequestLatency_P99"},
            "timeseries": [{
                "metadatavalues": [{"name": {"value": "deployment"}, "value": "green"}],
                "data": [
                    {"timeStamp": at(0), "average": 100.0},
                    {"timeStamp": at(1), "average": 400.0},
                    {"timeStamp": at(2)},
                    {"timeStamp": at(3), "average": 120.0}
                ]
            }]
        }));
        assert_eq!(max_percentile(&m, "green", window(10)), Some(400.0));
    }
}
