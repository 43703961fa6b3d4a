//! Recorded samples for the fake Prometheus: one deployment's Istio series (the
//! `istio_requests_total` counters, all and 5xx, and the `istio_request_duration_milliseconds`
//! histogram buckets) as scrapes at given times, and the default Istio gate queries
//! ([PROM P10]) evaluated over them the way Prometheus does:
//!
//! - an instant query is evaluated at its `time` parameter (RFC 3339 or Unix seconds, [PROM P1]);
//! - a range selector `[r]` takes the scrapes in `(time - r, time]` (Prometheus 3 semantics; a
//!   scrape after `time` or at or before `time - r` does not count);
//! - `increase` is the last minus the first counter value of those scrapes and `rate` that over
//!   `r` in seconds; fewer than two scrapes in the range give no series at all [PROM P7], which
//!   reads as an empty result [PROM P5]. (Prometheus also extrapolates to the range's edges;
//!   the fake does not, so a count is exact and a test can state it.)
//! - `a / b` with `b` = 0 is `NaN` [PROM P4]; `histogram_quantile` interpolates linearly inside
//!   the Istio default buckets [PROM P10 notes], and a quantile in the `+Inf` bucket is the
//!   highest finite bound, as Prometheus answers.

use chrono::{DateTime, Utc};

/// Istio's default `istio_request_duration_milliseconds` buckets [PROM P10 notes], then `+Inf`.
pub const ISTIO_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// What a deployment served since the previous scrape: `requests` of which `errors` were 5xx,
/// all taking `latency_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Served {
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: f64,
}

impl Served {
    /// Nothing served: a scrape that only marks the time (the counters' first sample).
    pub const NOTHING: Served = Served {
        requests: 0,
        errors: 0,
        latency_ms: 0.0,
    };
}

/// One scrape: the cumulative counters at `at` (Unix seconds).
#[derive(Clone, Debug)]
struct Scrape {
    at: f64,
    requests: f64,
    errors: f64,
    /// Cumulative count per bucket of [`ISTIO_BUCKETS_MS`], then `+Inf`.
    buckets: Vec<f64>,
}

/// One deployment's series, scraped at increasing times.
#[derive(Clone, Debug, Default)]
pub struct Series {
    scrapes: Vec<Scrape>,
}

impl Series {
    /// A scrape at `at` after the deployment `served` this since the last one. Scrapes must come
    /// in time order (a counter's samples do).
    pub fn scrape(&mut self, at: DateTime<Utc>, served: Served) {
        let at = at.timestamp_millis() as f64 / 1000.0;
        let mut next = self.scrapes.last().cloned().unwrap_or(Scrape {
            at,
            requests: 0.0,
            errors: 0.0,
            buckets: vec![0.0; ISTIO_BUCKETS_MS.len() + 1],
        });
        assert!(
            self.scrapes.last().is_none_or(|last| last.at < at),
            "scrapes come in time order"
        );
        next.at = at;
        next.requests += served.requests as f64;
        next.errors += served.errors as f64;
        let first = ISTIO_BUCKETS_MS
            .iter()
            .position(|le| served.latency_ms <= *le)
            .unwrap_or(ISTIO_BUCKETS_MS.len());
        for bucket in &mut next.buckets[first..] {
            *bucket += served.requests as f64;
        }
        self.scrapes.push(next);
    }

    /// The first and last scrape in `(time - range, time]`, if there are two.
    fn window(&self, time: f64, range: f64) -> Option<(&Scrape, &Scrape)> {
        let mut inside = self
            .scrapes
            .iter()
            .filter(|s| s.at > time - range && s.at <= time);
        let first = inside.next()?;
        let last = inside.next_back()?;
        Some((first, last))
    }
}

/// A PromQL duration (`300s`, `5m`, `1h30m`, `500ms`) in seconds.
pub fn parse_duration(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let seconds = match &rest[..unit] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            "y" => 31536000.0,
            _ => return None,
        };
        total += n * seconds;
        rest = &rest[unit..];
    }
    Some(total)
}

/// An instant query's `time` [PROM P1]: RFC 3339 or Unix seconds (a float); empty is now.
pub fn parse_time(text: &str) -> Option<f64> {
    if text.is_empty() {
        return Some(Utc::now().timestamp_millis() as f64 / 1000.0);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis() as f64 / 1000.0);
    }
    text.parse::<f64>().ok().filter(|t| t.is_finite())
}

/// The one range of a query's range selectors, in seconds: every `[…]` must say the same.
pub fn range_of(promql: &str) -> Result<f64, String> {
    let mut range = None;
    for piece in promql.split('[').skip(1) {
        let text = piece
            .split_once(']')
            .map(|(r, _)| r)
            .ok_or_else(|| format!("an unclosed range selector in {promql}"))?;
        let seconds =
            parse_duration(text).ok_or_else(|| format!("not a PromQL duration: [{text}]"))?;
        if range.is_some_and(|r| r != seconds) {
            return Err(format!("the fake answers one range per query: {promql}"));
        }
        range = Some(seconds);
    }
    range.ok_or_else(|| format!("no range selector in {promql}"))
}

/// `histogram_quantile(q, …)` over the bucket increases `delta` (cumulative, `+Inf` last).
fn quantile(q: f64, delta: &[f64]) -> f64 {
    let total = *delta.last().expect("a +Inf bucket");
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let b = delta
        .iter()
        .position(|c| *c >= rank)
        .unwrap_or(delta.len() - 1);
    if b == ISTIO_BUCKETS_MS.len() {
        // In the +Inf bucket: Prometheus answers the highest finite bound.
        return ISTIO_BUCKETS_MS[b - 1];
    }
    let (start, below) = if b == 0 {
        (0.0, 0.0)
    } else {
        (ISTIO_BUCKETS_MS[b - 1], delta[b - 1])
    };
    let end = ISTIO_BUCKETS_MS[b];
    let count = delta[b] - below;
    start + (end - start) * (rank - below) / count
}

/// The value of one default Istio gate query over `series` at `time`: `Ok(None)` is an empty
/// result, `Err` a query the fake does not know.
pub fn evaluate(series: &Series, promql: &str, time: f64) -> Result<Option<f64>, String> {
    let range = range_of(promql)?;
    let Some((first, last)) = series.window(time, range) else {
        return Ok(None);
    };
    let requests = last.requests - first.requests;
    let value = if let Some(q) = promql
        .strip_prefix("histogram_quantile(")
        .and_then(|rest| rest.split_once(','))
        .map(|(q, _)| q.trim())
    {
        let q: f64 = q.parse().map_err(|_| format!("not a quantile: {q}"))?;
        let delta: Vec<f64> = last
            .buckets
            .iter()
            .zip(&first.buckets)
            .map(|(l, f)| l - f)
            .collect();
        quantile(q, &delta)
    } else if promql.contains("response_code") {
        // rate(5xx) / rate(all): the range cancels out.
        let errors = last.errors - first.errors;
        if requests == 0.0 {
            f64::NAN
        } else {
            errors / requests
        }
    } else if promql.contains("increase(istio_requests_total") {
        requests
    } else if promql.contains("rate(istio_requests_total") {
        requests / range
    } else {
        return Err(format!("the fake does not know this query: {promql}"));
    };
    Ok(Some(value))
}
