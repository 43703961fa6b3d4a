//! Staged rollouts on Kubernetes end to end (issue #12 §6), mirroring
//! `tests/azureml/azureml_rollouts.rs`: the real `flightdeck` binary against the fake API server
//! (the shipped `aks-istio` / `aks-gateway` environments), with gates read by the Prometheus
//! provider (default Istio templates) from the test kit's fake Prometheus, where each
//! deployment's scenario (good, 5xx, 2× slower) decides what its PromQL answers say.
//!
//! Each stage's weights are read from the router objects flightdeck applied (in request order),
//! so a skipped or repeated stage shows; the record annotations and the pin rules are checked on
//! the stored object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flightdeck::backend::kubernetes::progress::{REASON_ANNOTATION, RECORD_ANNOTATION};
use flightdeck_core::rollout::{RolloutRecord, RolloutState};
use flightdeck_testkit::fake_kube::FakeKube;
use flightdeck_testkit::fake_prometheus::{FakePrometheus, Scenario};
use flightdeck_testkit::k8s_cli::{code, copy_env, edit, flightdeck, kubeconfig, text};
use serde_json::Value;

pub(super) const NS: &str = "models";
const EP: &str = "scoring";
const PIN: &str = "x-model-deployment";

#[derive(Clone, Copy, Debug)]
pub(super) enum Router {
    Istio,
    Gateway,
}

impl Router {
    pub(super) fn env(self) -> &'static str {
        match self {
            Router::Istio => "aks-istio",
            Router::Gateway => "aks-gateway",
        }
    }

    pub(super) fn plural(self) -> &'static str {
        match self {
            Router::Istio => "virtualservices",
            Router::Gateway => "httproutes",
        }
    }
}

pub(super) type Weights = BTreeMap<String, u32>;

pub(super) fn weights(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The rules (Istio `http`, Gateway API `rules`) of a router object.
pub(super) fn rules(router: Router, obj: &Value) -> Vec<Value> {
    let key = match router {
        Router::Istio => "/spec/http",
        Router::Gateway => "/spec/rules",
    };
    obj.pointer(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The non-zero weights of the catch-all `split` rule of a router object.
pub(super) fn split(router: Router, obj: &Value) -> Weights {
    let mut out = Weights::new();
    for rule in rules(router, obj).iter().filter(|r| r["name"] == "split") {
        let dests = match router {
            Router::Istio => rule["route"].as_array().cloned().unwrap_or_default(),
            Router::Gateway => rule["backendRefs"].as_array().cloned().unwrap_or_default(),
        };
        for d in dests {
            let name = match router {
                Router::Istio => d["destination"]["subset"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                Router::Gateway => {
                    let svc = d["name"].as_str().unwrap_or("");
                    svc.strip_prefix("scoring-").unwrap_or(svc).to_string()
                }
            };
            let w = d["weight"].as_u64().unwrap_or(0) as u32;
            if w > 0 {
                out.insert(name, w);
            }
        }
    }
    out
}

/// Whether the router object routes `PIN: deployment` to `deployment` alone.
fn pins(router: Router, obj: &Value, deployment: &str) -> bool {
    rules(router, obj).iter().any(|r| match router {
        Router::Istio => {
            r["match"][0]["headers"][PIN]["exact"] == deployment
                && r["route"].as_array().map(Vec::len) == Some(1)
                && r["route"][0]["destination"]["subset"] == deployment
        }
        Router::Gateway => {
            r["matches"][0]["headers"][0]["name"] == PIN
                && r["matches"][0]["headers"][0]["value"] == deployment
                && r["backendRefs"].as_array().map(Vec::len) == Some(1)
                && r["backendRefs"][0]["name"] == format!("scoring-{deployment}")
        }
    })
}

/// One thing flightdeck changed, in request order.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Event {
    /// The router's split (an apply of the router's spec under the `flightdeck` manager).
    Route(Weights),
    /// A Deployment's replicas.
    Replicas(String, u32),
    /// The rollout record (an apply of the annotations under `flightdeck-rollout`).
    Record,
}

/// What flightdeck wrote since the log was cleared, router splits deduplicated.
pub(super) fn timeline(fake: &FakeKube, router: Router) -> Vec<Event> {
    let mut out = Vec::new();
    for w in fake.write_requests() {
        if w.method == "DELETE" {
            continue;
        }
        if w.kind == router.plural() && w.body.pointer("/spec").is_some() {
            let s = split(router, &w.body);
            if out.iter().rev().find(|e| matches!(e, Event::Route(_)))
                != Some(&Event::Route(s.clone()))
            {
                out.push(Event::Route(s));
            }
        } else if w.kind == router.plural() && w.query.contains("fieldManager=flightdeck-rollout") {
            out.push(Event::Record);
        } else if w.kind == "deployments"
            && let Some(n) = w.body.pointer("/spec/replicas").and_then(Value::as_u64)
        {
            let name = w.name.clone().unwrap_or_default();
            let d = name.strip_prefix("scoring-").unwrap_or(&name).to_string();
            out.push(Event::Replicas(d, n as u32));
        }
    }
    out
}

fn routes(events: &[Event]) -> Vec<Weights> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Route(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// Router writes (spec applies) since the log was cleared: the stored bodies, in order.
pub(super) fn router_writes(fake: &FakeKube, router: Router) -> Vec<Value> {
    fake.write_requests()
        .into_iter()
        .filter(|w| w.kind == router.plural() && w.body.pointer("/spec").is_some())
        .map(|w| w.body)
        .collect()
}

pub(super) fn router_object(fake: &FakeKube, router: Router) -> Value {
    fake.object(router.plural(), NS, EP)
        .expect("the router exists")
}

fn stored_record(fake: &FakeKube, router: Router) -> RolloutRecord {
    let obj = router_object(fake, router);
    let annotations = obj.pointer("/metadata/annotations");
    let text = annotations
        .and_then(|a| a.get(RECORD_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no record annotation: {obj:#}"));
    let reason = annotations
        .and_then(|a| a.get(REASON_ANNOTATION))
        .and_then(Value::as_str)
        .map(str::to_string);
    RolloutRecord::from_compact(text, reason).expect("a record")
}

/// A copy of the shipped environment with a Prometheus-gated `policy`, applied at blue 100 /
/// green 0 (green exists), then declaring green 100 with blue removed from Git.
pub(super) struct Setup {
    pub(super) fake: FakeKube,
    prom: FakePrometheus,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    kube: PathBuf,
    env: &'static str,
    router: Router,
}

impl Setup {
    pub(super) async fn new(router: Router, policy: &str) -> Setup {
        let fake = FakeKube::start().await;
        for d in ["blue", "green"] {
            fake.respond(&format!("scoring-{d}"), 200, r#"{"score": [1.0]}"#);
        }
        let prom = FakePrometheus::scenarios().await;
        prom.set("blue", Scenario::good());
        prom.set("green", Scenario::good());
        let tmp = tempfile::tempdir().expect("tempdir");
        let kube = kubeconfig(tmp.path(), &fake.url);
        let env_dir = copy_env(router.env(), tmp.path());
        let yaml = env_dir.join("environment.yaml");
        let mut env_yaml = std::fs::read_to_string(&yaml).expect("read");
        env_yaml.push_str(&format!(
            "rollout:\n  metrics:\n    provider: prometheus\n    url: {}\n  default:\n{policy}",
            prom.url
        ));
        std::fs::write(&yaml, env_yaml).expect("write");
        let setup = Setup {
            fake,
            prom,
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
            kube,
            env: router.env(),
            router,
        };
        let out = setup.run("apply").await;
        assert_eq!(code(&out), 0, "blue lands: {}", text(&out));
        assert_eq!(
            split(router, &router_object(&setup.fake, router)),
            weights(&[("blue", 100)])
        );
        // Git now says green 100; blue's file goes.
        edit(
            &env_dir.join("scoring.yml"),
            "blue: 100\n  green: 0",
            "green: 100",
        );
        std::fs::remove_file(env_dir.join("scoring-blue.yml")).expect("rm blue");
        setup.fake.clear_log();
        setup
    }

    fn env_dir(&self) -> PathBuf {
        self.dir.join(self.env)
    }

    pub(super) async fn run(&self, cmd: &str) -> std::process::Output {
        flightdeck(&[cmd, self.env], &self.dir, &self.kube).await
    }

    fn object(&self) -> Value {
        router_object(&self.fake, self.router)
    }
}

fn dir_has(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

const CANARY: &str = "    steps:
      - weight: 10
        bake: 1s
        gates: [\"error_rate < 2%\"]
      - weight: 50
        bake: 1s
        gates: [\"error_rate < 2%\", \"p99 < 1.2x baseline\"]
    max_bake: 8s
";

async fn a_passing_three_stage_canary(router: Router) {
    let s = Setup::new(router, CANARY).await;
    let out = s.run("apply").await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let all = text(&out);
    for line in [
        "stage 1/3: routing blue 90 / green 10",
        "stage 2/3: routing blue 50 / green 50",
        "stage 3/3: routing the declared green 100",
        "gate error_rate < 2%: error_rate 0% < 2% [pass]",
        "gate p99 < 1.2x baseline: p99 40ms < 48ms (1.2x baseline) [pass]",
    ] {
        assert!(all.contains(line), "{line:?} in:\n{all}");
    }

    // Each stage once, in order, ending at the declared traffic.
    let events = timeline(&s.fake, router);
    assert_eq!(
        routes(&events),
        [
            weights(&[("blue", 90), ("green", 10)]),
            weights(&[("blue", 50), ("green", 50)]),
            weights(&[("green", 100)]),
        ],
        "{events:#?}"
    );
    assert_eq!(split(router, &s.object()), weights(&[("green", 100)]));
    assert!(s.fake.object("deployments", NS, "scoring-blue").is_none());

    // The record (own field manager) was written between the router's applies and survived
    // them: the stored object still holds it, succeeded.
    let first_record = events
        .iter()
        .position(|e| *e == Event::Record)
        .expect("a record write");
    let last_route = events
        .iter()
        .rposition(|e| matches!(e, Event::Route(_)))
        .unwrap();
    assert!(first_record < last_route, "{events:#?}");
    let record = stored_record(&s.fake, router);
    assert_eq!(record.state, RolloutState::Succeeded, "{record:?}");
    assert_eq!(record.candidate, "green");
    assert_eq!(record.baseline, weights(&[("blue", 100)]));

    // Pinning to the candidate kept working at every stage.
    let writes = router_writes(&s.fake, router);
    assert!(!writes.is_empty());
    // The router's own applies never carry the record: it survives them because it belongs
    // to the `flightdeck-rollout` manager.
    for w in &writes {
        let annotations = w.pointer("/metadata/annotations");
        assert!(
            annotations.and_then(|a| a.get(RECORD_ANNOTATION)).is_none(),
            "{w:#}"
        );
    }
    for w in &writes {
        assert!(pins(router, w, "green"), "no pin rule for green in {w:#}");
    }
    assert!(pins(router, &s.object(), "green"));

    // Every gate query went to the fake Prometheus, for green and for blue.
    let seen = s.prom.seen();
    assert!(
        seen.iter()
            .any(|q| q.promql.contains(r#"destination_version="green""#))
    );
    assert!(
        seen.iter()
            .any(|q| q.promql.contains(r#"destination_version="blue""#))
    );
    assert!(s.fake.invalid().is_empty(), "{:?}", s.fake.invalid());
    assert!(
        s.fake.mbb_violations().is_empty(),
        "{:?}",
        s.fake.mbb_violations()
    );

    let plan = s.run("plan").await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_three_stage_canary_on_istio_moves_the_virtual_service_stage_by_stage() {
    a_passing_three_stage_canary(Router::Istio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_three_stage_canary_on_gateway_api_moves_the_http_route_stage_by_stage() {
    a_passing_three_stage_canary(Router::Gateway).await;
}

/// Stage 1 ungated, stage 2 gated on the error rate.
const GATED_AT_TWO: &str = "    steps:
      - weight: 10
        bake: 1s
      - weight: 50
        bake: 1s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
";

async fn a_gate_failing_at_stage_two(router: Router) {
    let s = Setup::new(router, GATED_AT_TWO).await;
    s.prom.set("green", Scenario::errors(0.071));
    let out = s.run("apply").await;
    assert_eq!(code(&out), 3, "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("gate error_rate < 2%: error_rate 7.1% >= 2% [FAIL]"),
        "{all}"
    );
    assert!(all.contains("rolling back to blue 100"), "{all}");

    // Straight from stage 2 back to blue, in one write.
    let events = timeline(&s.fake, router);
    assert_eq!(
        routes(&events),
        [
            weights(&[("blue", 90), ("green", 10)]),
            weights(&[("blue", 50), ("green", 50)]),
            weights(&[("blue", 100)]),
        ],
        "{events:#?}"
    );
    assert_eq!(split(router, &s.object()), weights(&[("blue", 100)]));
    // Green is kept for inspection, still pinned.
    assert!(s.fake.object("deployments", NS, "scoring-green").is_some());
    assert!(pins(router, &s.object(), "green"));
    let record = stored_record(&s.fake, router);
    assert_eq!(record.state, RolloutState::Failed);
    assert!(
        record
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("gate failed at stage 2"),
        "{record:?}"
    );

    // Held: plan says so with exit 3, a second apply writes nothing.
    let plan = s.run("plan").await;
    assert_eq!(code(&plan), 3, "{}", text(&plan));
    assert!(text(&plan).contains("held at blue 100"), "{}", text(&plan));
    s.fake.clear_log();
    let again = s.run("apply").await;
    assert_eq!(code(&again), 3, "{}", text(&again));
    assert!(
        text(&again).contains("held at blue 100"),
        "{}",
        text(&again)
    );
    let writes = s.fake.write_requests();
    assert!(
        writes.is_empty(),
        "a held apply writes nothing: {writes:#?}"
    );

    // Git changes (a new green image) and green is fixed: a new rollout goes all the way.
    assert!(dir_has(&s.env_dir(), "scoring-green.yml"));
    edit(
        &s.env_dir().join("scoring-green.yml"),
        "scoring-server:1.5.0",
        "scoring-server:1.5.1",
    );
    s.prom.set("green", Scenario::good());
    let fixed = s.run("apply").await;
    assert_eq!(code(&fixed), 0, "{}", text(&fixed));
    assert!(text(&fixed).contains("stage 1/3: routing blue 90 / green 10"));
    assert_eq!(split(router, &s.object()), weights(&[("green", 100)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_istio_a_gate_failing_at_stage_two_rolls_back_in_one_step_and_holds_until_git_changes() {
    a_gate_failing_at_stage_two(Router::Istio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gateway_api_a_gate_failing_at_stage_two_rolls_back_in_one_step_and_holds_until_git_changes()
 {
    a_gate_failing_at_stage_two(Router::Gateway).await;
}

async fn a_relative_latency_gate(router: Router) {
    let policy = "    steps:
      - weight: 50
        bake: 1s
        gates: [\"p99 < 1.2x baseline\"]
    max_bake: 8s
";
    let s = Setup::new(router, policy).await;
    s.prom.set("green", Scenario::slower(2.0));
    let out = s.run("apply").await;
    assert_eq!(code(&out), 3, "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("gate p99 < 1.2x baseline: p99 80ms >= 48ms (1.2x baseline) [FAIL]"),
        "{all}"
    );
    assert_eq!(
        routes(&timeline(&s.fake, router)),
        [
            weights(&[("blue", 50), ("green", 50)]),
            weights(&[("blue", 100)])
        ]
    );
    assert_eq!(stored_record(&s.fake, router).state, RolloutState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_istio_a_relative_latency_gate_catches_a_candidate_twice_as_slow_as_blue() {
    a_relative_latency_gate(Router::Istio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gateway_api_a_relative_latency_gate_catches_a_candidate_twice_as_slow_as_blue() {
    a_relative_latency_gate(Router::Gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_istio_a_candidate_without_metrics_is_not_failed_but_waits_to_max_bake_then_rolls_back_as_too_little_data()
 {
    let policy = "    steps:
      - weight: 10
        bake: 1s
        gates: [\"error_rate < 2%\"]
    max_bake: 2s
";
    let s = Setup::new(Router::Istio, policy).await;
    s.prom.set("green", Scenario::NoData);
    let out = s.run("apply").await;
    assert_eq!(code(&out), 3, "{}", text(&out));
    let all = text(&out);
    // No data is never a verdict: the stage waits up to max_bake (whether an extended look
    // shows depends on how soon after the bake the first look came), then on_no_data applies.
    assert!(
        all.contains("gate error_rate < 2%: error_rate no data [no data]"),
        "{all}"
    );
    assert!(all.contains("too little data at stage 1 after 2s"), "{all}");
    assert!(!all.contains("[FAIL]"), "{all}");
    assert_eq!(
        routes(&timeline(&s.fake, Router::Istio)),
        [
            weights(&[("blue", 90), ("green", 10)]),
            weights(&[("blue", 100)])
        ]
    );
}
