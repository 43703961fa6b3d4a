//! Smoke tests: the requests sent straight to one deployment (pinned to it by the platform's
//! header or service), before it takes traffic and, as a `smoke` stage gate, at a rollout
//! stage. `tests:` in environment.yaml declares them (docs/environment-format.md, "tests").
//!
//! What an answer must be (`TestSpec::judge`) and the loop over the request files with the
//! retry budget (`run`) are here, once, for every platform; each backend only sends one
//! request (`crates/azureml/src/gate.rs`, `crates/kubernetes/src/gate.rs`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

/// At most this many request files in one test (`request_files`, or the `*.json` of a
/// `request_dir`).
pub const MAX_REQUEST_FILES: usize = 64;
/// At most this many bytes of request bodies in one test, all files together.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// At most this many extra tries per request (`retries`).
pub const MAX_RETRIES: u32 = 10;
/// The pause before another try of a wrong answer.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Longest part of a response body quoted in a failure.
const BODY_EXCERPT: usize = 200;

/// One request file: its path (as shown in plans) and its body, read at load time.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TestRequest {
    /// Relative to the environment directory.
    pub file: String,
    #[serde(default)]
    pub body: String,
}

impl TestRequest {
    pub fn new(file: impl Into<String>, body: impl Into<String>) -> Self {
        TestRequest {
            file: file.into(),
            body: body.into(),
        }
    }

    /// The body's SHA-256, lowercase hex.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `sample-request.json (61 B, sha256:3f2a9c0d1e2f…)`: what plans show instead of the body.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} B, sha256:{}…)",
            self.file,
            self.body.len(),
            &self.sha256()[..12]
        )
    }
}

/// Serialised as `file`, `bytes` and `sha256`, never the body.
impl Serialize for TestRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("TestRequest", 3)?;
        out.serialize_field("file", &self.file)?;
        out.serialize_field("bytes", &self.body.len())?;
        out.serialize_field("sha256", &self.sha256())?;
        out.end()
    }
}

/// `"$.predictions[0]": 1`: an RFC 9535 JSONPath query and the value it must find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonCheck {
    /// Checked at load time (`JsonPath::parse`).
    pub path: String,
    pub expect: Value,
}

impl JsonCheck {
    /// `None`: it holds; `Some(why)`: what was found instead.
    fn miss(&self, answer: &Value) -> Option<String> {
        let path = match JsonPath::parse(&self.path) {
            Ok(p) => p,
            Err(e) => return Some(format!("JSON path {} does not parse: {e}", self.path)),
        };
        let found = path.query(answer).all();
        let observed = match found.as_slice() {
            [] => {
                return Some(format!(
                    "JSON path {} matches nothing in the answer",
                    self.path
                ));
            }
            [one] => (*one).clone(),
            many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
        };
        (!same(&observed, &self.expect)).then(|| {
            format!(
                "JSON path {}: found {}, expected {}",
                self.path,
                excerpt(&observed.to_string()),
                excerpt(&self.expect.to_string())
            )
        })
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A smoke test: requests sent straight to one deployment, and what each answer must be.
///
/// The bodies are kept for the executor but never rendered or serialised (a request may hold
/// customer data or keys): plans show each file, its size and a digest. See docs/plan-json.md.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TestSpec {
    /// In order: one for `request_file`, the list of `request_files`, or the sorted `*.json`
    /// files of `request_dir`.
    pub requests: Vec<TestRequest>,
    /// Expected HTTP status; any 2xx when absent.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// A substring the response body must contain.
    #[serde(default)]
    pub expect_body_contains: Option<String>,
    /// JSONPath checks on the answer, in order.
    #[serde(default)]
    pub expect_json: Vec<JsonCheck>,
    /// The longest one answer may take.
    #[serde(default, with = "humantime_serde")]
    pub latency_budget: Option<Duration>,
    /// Extra tries of a request whose answer is wrong (status, body, JSON or over budget).
    #[serde(default)]
    pub retries: u32,
}

/// One answer to judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// From sending the request to reading the whole answer.
    pub elapsed: Duration,
}

impl TestSpec {
    /// A test of one request file with the default expectations (any 2xx).
    pub fn single(file: impl Into<String>, body: impl Into<String>) -> Self {
        TestSpec {
            requests: vec![TestRequest::new(file, body)],
            ..TestSpec::default()
        }
    }

    /// What plans show instead of the bodies: `a.json (61 B, sha256:…), b.json (…)`.
    pub fn request_summary(&self) -> String {
        self.requests
            .iter()
            .map(TestRequest::summary)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The request files, comma-separated.
    pub fn files(&self) -> String {
        self.requests
            .iter()
            .map(|r| r.file.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `Ok`: the answer is what the test expects; `Err`: what is wrong with it, with an
    /// excerpt of the body.
    pub fn judge(&self, answer: &Answer) -> Result<(), String> {
        let status = answer.status;
        let body = &answer.body;
        let status_ok = match self.expect_status {
            Some(want) => status == want,
            None => (200..300).contains(&status),
        };
        if !status_ok {
            let want = self
                .expect_status
                .map_or("a 2xx status".to_string(), |s| s.to_string());
            return Err(format!(
                "got status {status}, expected {want}: {}",
                excerpt(body)
            ));
        }
        if let Some(needle) = &self.expect_body_contains
            && !body.contains(needle.as_str())
        {
            return Err(format!(
                "response body does not contain {needle:?}: {}",
                excerpt(body)
            ));
        }
        if !self.expect_json.is_empty() {
            let parsed: Value = serde_json::from_str(body).map_err(|e| {
                format!(
                    "the answer is not JSON ({e}), so the JSON paths cannot be checked: {}",
                    excerpt(body)
                )
            })?;
            for check in &self.expect_json {
                if let Some(why) = check.miss(&parsed) {
                    return Err(why);
                }
            }
        }
        if let Some(budget) = self.latency_budget
            && answer.elapsed > budget
        {
            return Err(format!(
                "answered in {}ms, over the latency budget of {}ms",
                answer.elapsed.as_millis(),
                budget.as_millis()
            ));
        }
        Ok(())
    }
}

/// Serialised as the request files (`requests`: file, bytes, digest; with one file also the
/// flat `request_file`, `request_bytes`, `request_sha256`) and the expectations, never a body.
impl Serialize for TestSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = serializer.serialize_map(None)?;
        if let [one] = self.requests.as_slice() {
            out.serialize_entry("request_file", &one.file)?;
            out.serialize_entry("request_bytes", &one.body.len())?;
            out.serialize_entry("request_sha256", &one.sha256())?;
        }
        out.serialize_entry("requests", &self.requests)?;
        if let Some(status) = self.expect_status {
            out.serialize_entry("expect_status", &status)?;
        }
        if let Some(contains) = &self.expect_body_contains {
            out.serialize_entry("expect_body_contains", contains)?;
        }
        if !self.expect_json.is_empty() {
            let map: serde_json::Map<String, Value> = self
                .expect_json
                .iter()
                .map(|c| (c.path.clone(), c.expect.clone()))
                .collect();
            out.serialize_entry("expect_json", &map)?;
        }
        if let Some(budget) = self.latency_budget {
            out.serialize_entry(
                "latency_budget",
                &humantime::format_duration(budget).to_string(),
            )?;
        }
        if self.retries > 0 {
            out.serialize_entry("retries", &self.retries)?;
        }
        out.end()
    }
}

/// Like the plan output: bodies show as their size and digest, even in debug logs.
impl fmt::Debug for TestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestSpec")
            .field("requests", &self.request_summary())
            .field("expect_status", &self.expect_status)
            .field("expect_body_contains", &self.expect_body_contains)
            .field("expect_json", &self.expect_json)
            .field("latency_budget", &self.latency_budget)
            .field("retries", &self.retries)
            .finish()
    }
}

impl fmt::Debug for TestRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Why a smoke test did not pass.
#[derive(Debug)]
pub enum SmokeError<E> {
    /// Sending failed in a way the backend does not retry (a hung server, no route): its error.
    Send(E),
    /// A request's every try got a wrong answer.
    Failed(SmokeFailure),
}

/// The request that failed, how often it was tried, and the last answer's problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeFailure {
    pub file: String,
    pub tries: u32,
    pub reason: String,
    /// Whether the test has more than one request file (the message names the file then).
    pub several: bool,
}

impl fmt::Display for SmokeFailure {
    /// `b.json: got status 500, expected a 2xx status: boom (tried 3 times)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.several {
            write!(f, "{}: ", self.file)?;
        }
        f.write_str(&self.reason)?;
        if self.tries > 1 {
            write!(f, " (tried {} times)", self.tries)?;
        }
        Ok(())
    }
}

/// Sends every request in order, each up to `1 + retries` times while its answer is wrong,
/// and stops at the first request that never got a right one. `Ok` carries the report:
/// `200 from green` for one request, `3 requests, 200 from green; b.json after 2 tries`.
pub async fn run<E, F, Fut>(
    test: &TestSpec,
    deployment: &str,
    mut send: F,
) -> Result<String, SmokeError<E>>
where
    F: FnMut(&TestRequest) -> Fut,
    Fut: Future<Output = Result<Answer, E>>,
{
    let several = test.requests.len() > 1;
    let mut retried = Vec::new();
    let mut last_status = 0;
    for request in &test.requests {
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = send(request).await.map_err(SmokeError::Send)?;
            tracing::debug!(
                file = %request.file,
                status = answer.status,
                elapsed_ms = answer.elapsed.as_millis() as u64,
                tries,
                "smoke request"
            );
            match test.judge(&answer) {
                Ok(()) => {
                    last_status = answer.status;
                    break;
                }
                Err(reason) if tries > test.retries => {
                    return Err(SmokeError::Failed(SmokeFailure {
                        file: request.file.clone(),
                        tries,
                        reason,
                        several,
                    }));
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
        if tries > 1 {
            retried.push(format!("{} after {tries} tries", request.file));
        }
    }
    let mut detail = format!("{last_status} from {deployment}");
    if several {
        detail = format!("{} requests, {detail}", test.requests.len());
    }
    if !retried.is_empty() {
        detail = format!("{detail}; {}", retried.join(", "));
    }
    Ok(detail)
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(BODY_EXCERPT).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;

    fn answer(status: u16, body: &str, ms: u64) -> Answer {
        Answer {
            status,
            body: body.into(),
            elapsed: Duration::from_millis(ms),
        }
    }

    fn checks(pairs: &[(&str, Value)]) -> Vec<JsonCheck> {
        pairs
            .iter()
            .map(|(p, v)| JsonCheck {
                path: p.to_string(),
                expect: v.clone(),
            })
            .collect()
    }

    #[test]
    fn any_2xx_passes_when_no_status_is_expected() {
        let t = TestSpec::single("a.json", "{}");
        assert!(t.judge(&answer(204, "", 1)).is_ok());
        assert_eq!(
            t.judge(&answer(500, "boom", 1)).unwrap_err(),
            "got status 500, expected a 2xx status: boom"
        );
    }

    #[test]
    fn json_paths_compare_numbers_by_value_and_name_what_they_found() {
        let t = TestSpec {
            expect_json: checks(&[("$.predictions[0]", json!(1)), ("$.model", json!("churn"))]),
            ..TestSpec::single("a.json", "{}")
        };
        let body = r#"{"model": "churn", "predictions": [1.0, 0]}"#;
        assert!(t.judge(&answer(200, body, 1)).is_ok());
        let wrong = r#"{"model": "fraud", "predictions": [1]}"#;
        assert_eq!(
            t.judge(&answer(200, wrong, 1)).unwrap_err(),
            r#"JSON path $.model: found "fraud", expected "churn""#
        );
    }

    #[test]
    fn a_json_path_that_matches_nothing_fails_with_a_clear_message() {
        let t = TestSpec {
            expect_json: checks(&[("$.scores[3]", json!(1))]),
            ..TestSpec::single("a.json", "{}")
        };
        assert_eq!(
            t.judge(&answer(200, r#"{"scores": [1]}"#, 1)).unwrap_err(),
            "JSON path $.scores[3] matches nothing in the answer"
        );
        assert!(
            t.judge(&answer(200, "not json", 1))
                .unwrap_err()
                .starts_with("the answer is not JSON")
        );
    }

    #[test]
    fn an_answer_over_the_latency_budget_fails() {
        let t = TestSpec {
            latency_budget: Some(Duration::from_millis(500)),
            ..TestSpec::single("a.json", "{}")
        };
        assert!(t.judge(&answer(200, "{}", 500)).is_ok());
        assert_eq!(
            t.judge(&answer(200, "{}", 501)).unwrap_err(),
            "answered in 501ms, over the latency budget of 500ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flaky_answer_is_tried_again_within_the_retry_budget_and_the_tries_are_reported() {
        let t = TestSpec {
            requests: vec![
                TestRequest::new("a.json", "{}"),
                TestRequest::new("b.json", "{}"),
            ],
            retries: 2,
            ..TestSpec::default()
        };
        let sent = Cell::new(0);
        let detail = run::<(), _, _>(&t, "green", |r| {
            sent.set(sent.get() + 1);
            let status = if r.file == "b.json" && sent.get() < 4 {
                500
            } else {
                200
            };
            async move { Ok(answer(status, "{}", 1)) }
        })
        .await
        .unwrap();
        assert_eq!(detail, "2 requests, 200 from green; b.json after 3 tries");
        assert_eq!(sent.get(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_exhausts_its_retries_fails_naming_its_file_and_tries() {
        let t = TestSpec {
            requests: vec![
                TestRequest::new("a.json", "{}"),
                TestRequest::new("b.json", "{}"),
            ],
            retries: 1,
            ..TestSpec::default()
        };
        let err = run::<(), _, _>(&t, "green", |r| {
            let status = if r.file == "b.json" { 500 } else { 200 };
            async move { Ok(answer(status, "boom", 1)) }
        })
        .await
        .unwrap_err();
        let SmokeError::Failed(failure) = err else {
            panic!("expected a failure")
        };
        assert_eq!(
            failure.to_string(),
            "b.json: got status 500, expected a 2xx status: boom (tried 2 times)"
        );
    }

    #[test]
    fn plans_serialise_files_sizes_and_digests_never_a_body() {
        let t = TestSpec {
            requests: vec![
                TestRequest::new("a.json", "secret-a"),
                TestRequest::new("b.json", "secret-b"),
            ],
            latency_budget: Some(Duration::from_millis(500)),
            ..TestSpec::default()
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert!(json.contains(r#""file":"a.json","bytes":8"#), "{json}");
        assert!(json.contains(r#""latency_budget":"500ms""#), "{json}");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
