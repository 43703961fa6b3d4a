//! A fake Prometheus HTTP query API on 127.0.0.1 that answers with contract-shaped envelopes
//! ([PROM P3] envelope, [PROM P4] `vector` results with string samples, [PROM P5] an empty
//! result for a series that does not exist). Two ways to drive it:
//!
//! - [`FakePrometheus::start`] with a script `(request, n) -> Answer`: any status, `Retry-After`
//!   and body (the provider's own tests, `crates/prometheus/tests/query_api.rs`);
//! - [`FakePrometheus::scenarios`]: a per-deployment [`Scenario`] the test sets and changes at
//!   any time; each instant query is answered from the PromQL it carries (the deployment from
//!   `destination_version="…"`, the signal from the Istio template's shape), so rollout gates
//!   really evaluate the numbers a server holding such a canary would return. A scenario is a
//!   steady server: the same answer for any range and any `time`;
//! - [`FakePrometheus::scrape`] (with `scenarios`): recorded samples of one deployment, each
//!   query answered from the scrapes inside its range `[…]` ending at its `time`, as Prometheus
//!   evaluates `rate`/`increase`/`histogram_quantile` ([`samples`]); a deployment with samples
//!   answers from them, whatever its scenario.
//!
//! Use from a test: `use flightdeck_testkit::fake_prometheus;`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

pub mod samples;
use samples::Series;
pub use samples::Served;

/// One request the fake saw: path, the raw query string, its decoded `query` and `time`, headers.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub raw_query: String,
    pub promql: String,
    pub time: String,
    pub headers: HeaderMap,
}

/// What the fake answers: status, `Retry-After` seconds, body.
pub type Answer = (u16, Option<u64>, String);
type Script = Arc<dyn Fn(&Seen, usize) -> Answer + Send + Sync>;

/// `{"status":"success"}` with one sample `value` (a string, as [PROM P4] says: `"NaN"` and
/// `"+Inf"` are values too).
pub fn vector_one(value: &str) -> String {
    serde_json::json!({
        "status": "success",
        "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1796033100.0, value]}
        ]}
    })
    .to_string()
}

/// A success with no series [PROM P5]: a deployment that has not served yet.
pub fn vector_empty() -> String {
    r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string()
}

/// How one deployment behaves, as the Istio metrics of its pods would show it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scenario {
    /// `requests` requests in any window, `error_rate` the 5xx share (0..1), p95/p99 latency
    /// in ms.
    Serving {
        requests: f64,
        error_rate: f64,
        p95_ms: f64,
        p99_ms: f64,
    },
    /// No series at all (the pods got no request): every signal is an empty result.
    NoData,
}

impl Scenario {
    /// A healthy deployment: 500 requests, no 5xx, p95 20 ms, p99 40 ms.
    pub fn good() -> Scenario {
        Scenario::Serving {
            requests: 500.0,
            error_rate: 0.0,
            p95_ms: 20.0,
            p99_ms: 40.0,
        }
    }

    /// Like `good`, but a `share` (0..1) of the answers are 5xx.
    pub fn errors(share: f64) -> Scenario {
        Scenario::Serving {
            requests: 500.0,
            error_rate: share,
            p95_ms: 20.0,
            p99_ms: 40.0,
        }
    }

    /// Like `good`, but `factor` times slower.
    pub fn slower(factor: f64) -> Scenario {
        Scenario::Serving {
            requests: 500.0,
            error_rate: 0.0,
            p95_ms: 20.0 * factor,
            p99_ms: 40.0 * factor,
        }
    }
}

/// The answer of a server whose deployments behave as `scenarios` say, to `promql` written from
/// the default Istio templates (docs/metrics.md): unknown deployments have no series.
pub fn answer_from(scenarios: &BTreeMap<String, Scenario>, promql: &str) -> Answer {
    let Some(deployment) = deployment_of(promql) else {
        let body = serde_json::json!({
            "status": "error", "errorType": "bad_data",
            "error": "the fake answers only queries naming a destination_version"
        });
        return (400, None, body.to_string());
    };
    let Some(Scenario::Serving {
        requests,
        error_rate,
        p95_ms,
        p99_ms,
    }) = scenarios.get(deployment).copied()
    else {
        return (200, None, vector_empty());
    };
    let value = if promql.starts_with("histogram_quantile(0.99") {
        p99_ms
    } else if promql.starts_with("histogram_quantile(0.95") {
        p95_ms
    } else if promql.contains("response_code") {
        error_rate
    } else if promql.contains("increase(istio_requests_total") {
        requests
    } else {
        let body = serde_json::json!({
            "status": "error", "errorType": "bad_data",
            "error": format!("the fake does not know this query: {promql}")
        });
        return (400, None, body.to_string());
    };
    (200, None, vector_one(&value.to_string()))
}

fn bad_data(error: String) -> Answer {
    let body = serde_json::json!({"status": "error", "errorType": "bad_data", "error": error});
    (400, None, body.to_string())
}

/// The deployment a default Istio query names (`destination_version="…"`).
fn deployment_of(promql: &str) -> Option<&str> {
    promql
        .split_once("destination_version=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(d, _)| d)
}

/// Like [`answer_from`], but a deployment with recorded samples answers from those inside the
/// query's range ending at `time` ([`samples::evaluate`]).
pub fn answer_at(
    scenarios: &BTreeMap<String, Scenario>,
    recorded: &BTreeMap<String, Series>,
    seen: &Seen,
) -> Answer {
    let Some(series) = deployment_of(&seen.promql).and_then(|d| recorded.get(d)) else {
        return answer_from(scenarios, &seen.promql);
    };
    let Some(time) = samples::parse_time(&seen.time) else {
        return bad_data(format!("invalid parameter \"time\": {:?}", seen.time));
    };
    match samples::evaluate(series, &seen.promql, time) {
        Ok(Some(value)) => (200, None, vector_one(&prom_float(value))),
        Ok(None) => (200, None, vector_empty()),
        Err(e) => bad_data(e),
    }
}

/// A sample value as Prometheus writes it [PROM P4]: `NaN`, `+Inf`, `-Inf` or a number.
fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// The fake server. Its base URL has a path prefix (`/prom/`), as a Prometheus behind a proxy
/// would; it stops when dropped.
pub struct FakePrometheus {
    pub url: url::Url,
    seen: Arc<Mutex<Vec<Seen>>>,
    scenarios: Arc<Mutex<BTreeMap<String, Scenario>>>,
    recorded: Arc<Mutex<BTreeMap<String, Series>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakePrometheus {
    /// `script(request, n)` answers the n-th request (0-based).
    pub async fn start(
        script: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static,
    ) -> FakePrometheus {
        Self::serve(Arc::new(script), Arc::default(), Arc::default()).await
    }

    /// Answers from the per-deployment scenarios set with [`FakePrometheus::set`] (none at
    /// first: every query is an empty result).
    pub async fn scenarios() -> FakePrometheus {
        let scenarios: Arc<Mutex<BTreeMap<String, Scenario>>> = Arc::default();
        let recorded: Arc<Mutex<BTreeMap<String, Series>>> = Arc::default();
        let (s, r) = (scenarios.clone(), recorded.clone());
        let script: Script =
            Arc::new(move |seen: &Seen, _| answer_at(&s.lock().unwrap(), &r.lock().unwrap(), seen));
        Self::serve(script, scenarios, recorded).await
    }

    async fn serve(
        script: Script,
        scenarios: Arc<Mutex<BTreeMap<String, Scenario>>>,
        recorded: Arc<Mutex<BTreeMap<String, Series>>>,
    ) -> FakePrometheus {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state: (Arc<Mutex<Vec<Seen>>>, Script) = (seen.clone(), script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = url::Url::parse(&format!(
            "http://{}/prom/",
            listener.local_addr().expect("local addr")
        ))
        .expect("url");
        let app = axum::Router::new().fallback(handle).with_state(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("fake prometheus");
        });
        FakePrometheus {
            url,
            seen,
            scenarios,
            recorded,
            stop: Some(stop),
        }
    }

    /// From now on `deployment` behaves as `scenario` (only for [`FakePrometheus::scenarios`]).
    pub fn set(&self, deployment: &str, scenario: Scenario) {
        self.scenarios
            .lock()
            .unwrap()
            .insert(deployment.to_string(), scenario);
    }

    /// A scrape of `deployment`'s series at `at`, after it `served` this since its last scrape
    /// (only for [`FakePrometheus::scenarios`]). Scrapes of one deployment come in time order;
    /// from its first one on, the deployment answers from its samples.
    pub fn scrape(&self, deployment: &str, at: DateTime<Utc>, served: Served) {
        self.recorded
            .lock()
            .unwrap()
            .entry(deployment.to_string())
            .or_default()
            .scrape(at, served);
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(
    State((seen, script)): State<(Arc<Mutex<Vec<Seen>>>, Script)>,
    req: Request,
) -> Response {
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        url::form_urlencoded::parse(raw_query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let request = Seen {
        path: req.uri().path().to_string(),
        promql: param("query"),
        time: param("time"),
        raw_query: raw_query.clone(),
        headers: req.headers().clone(),
    };
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        seen.len() - 1
    };
    let (status, retry_after, body) = script(&request, n);
    let mut response = (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json")],
        body,
    )
        .into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert(
            "retry-after",
            secs.to_string().parse().expect("retry-after"),
        );
    }
    response
}
