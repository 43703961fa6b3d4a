//! `scale_with_traffic` with autoscaled deployments, through the real binary against the fake
//! API server: the HPA owns the replica count, so each stage scales the HPAs' bounds instead
//! (`ceil(bound × w / W)`, at least 1): raised before the shift that needs them, lowered after
//! the shift that took the traffic, and no Deployment write carries replicas.

use serde_json::Value;

use super::k8s_rollouts::{NS, Router, split, weights};
use flightdeck_testkit::fake_kube::FakeKube;
use flightdeck_testkit::fake_prometheus::{FakePrometheus, Scenario};
use flightdeck_testkit::k8s_cli::{code, copy_env, edit, flightdeck, kubeconfig, text};

const AUTOSCALED: &str = "autoscaling:\n  min_instances: 2\n  max_instances: 6\n  target_cpu_utilization_percentage: 70\n";

const POLICY: &str = "    steps:
      - weight: 50
        bake: 1s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
    scale_with_traffic: true
";

#[derive(Debug, PartialEq)]
enum Event {
    Route(super::k8s_rollouts::Weights),
    Bounds(String, i64, i64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_scales_the_hpa_bounds_with_the_weights_instead_of_replicas() {
    let router = Router::Gateway;
    let fake = FakeKube::start().await;
    for d in ["blue", "green"] {
        fake.respond(&format!("scoring-{d}"), 200, r#"{"score": [1.0]}"#);
    }
    let prom = FakePrometheus::scenarios().await;
    prom.set("blue", Scenario::good());
    prom.set("green", Scenario::good());
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    let dir = copy_env(router.env(), tmp.path());
    for d in ["blue", "green"] {
        let file = dir.join(format!("scoring-{d}.yml"));
        let yaml = std::fs::read_to_string(&file).expect("read");
        std::fs::write(&file, format!("{yaml}{AUTOSCALED}")).expect("write");
    }
    let env_file = dir.join("environment.yaml");
    let mut env_yaml = std::fs::read_to_string(&env_file).expect("read");
    env_yaml.push_str(&format!(
        "rollout:\n  metrics:\n    provider: prometheus\n    url: {}\n  default:\n{POLICY}",
        prom.url
    ));
    std::fs::write(&env_file, env_yaml).expect("write");
    let (path, kube) = (tmp.path().to_path_buf(), kube.clone());
    let run = move |cmd: &'static str| {
        let (path, kube) = (path.clone(), kube.clone());
        async move { flightdeck(&[cmd, router.env()], &path, &kube).await }
    };

    let out = run("apply").await;
    assert_eq!(code(&out), 0, "blue lands: {}", text(&out));
    edit(
        &dir.join("scoring.yml"),
        "blue: 100\n  green: 0",
        "green: 100",
    );
    std::fs::remove_file(dir.join("scoring-blue.yml")).expect("rm blue");
    fake.clear_log();
    let out = run("apply").await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let mut events = Vec::new();
    for w in fake.write_requests() {
        if w.method == "DELETE" {
            continue;
        }
        if w.kind == router.plural() && w.body.pointer("/spec").is_some() {
            let s = split(router, &w.body);
            if events.iter().rev().find(|e| matches!(e, Event::Route(_)))
                != Some(&Event::Route(s.clone()))
            {
                events.push(Event::Route(s));
            }
        } else if w.kind == "horizontalpodautoscalers" {
            let name = w.name.clone().unwrap_or_default();
            let d = name.strip_prefix("scoring-").unwrap_or(&name).to_string();
            let bound = |p: &str| w.body.pointer(p).and_then(Value::as_i64).unwrap_or(-1);
            events.push(Event::Bounds(
                d,
                bound("/spec/minReplicas"),
                bound("/spec/maxReplicas"),
            ));
        } else if w.kind == "deployments" {
            assert!(w.body.pointer("/spec/replicas").is_none(), "{:#}", w.body);
        }
    }
    let route = |p: &[(&str, u32)]| Event::Route(weights(p));
    let bounds = |d: &str, min, max| Event::Bounds(d.to_string(), min, max);
    assert_eq!(
        events,
        [
            route(&[("blue", 50), ("green", 50)]),
            // green at 50 of 100: its bounds halve (a lowering: after the shift). Blue is no
            // longer in Git, so its bounds stay; its HPA follows its falling load.
            bounds("green", 1, 3),
            bounds("green", 2, 6), // up before green takes everything
            route(&[("green", 100)]),
        ],
        "{events:#?}"
    );
    assert!(
        fake.object("horizontalpodautoscalers", NS, "scoring-blue")
            .is_none()
    );
    let plan = run("plan").await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
}
