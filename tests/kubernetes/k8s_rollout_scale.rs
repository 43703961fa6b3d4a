//! `scale_with_traffic` on Kubernetes, through the real binary against the fake API server on
//! both routers (the setup of `k8s_rollouts`): the Deployments' replicas follow each stage, and
//! replaying flightdeck's writes in order shows every scale up before the shift that needs it
//! and every scale down after the shift that took the traffic away.

use std::collections::BTreeMap;

use flightdeck_testkit::k8s_cli::{code, text};
use serde_json::Value;

use super::k8s_rollouts::{Event, NS, Router, Setup, timeline, weights};

/// `scale_with_traffic`: blue and green both declare 2 replicas; at 10 % green runs 1 and blue
/// 2, at 60 % green 2 and blue 1 (ceil(2 × w / 100), at least 1), and at the end green 2.
const SCALED: &str = "    steps:
      - weight: 10
        bake: 1s
        gates: [\"error_rate < 2%\"]
      - weight: 60
        bake: 1s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
    scale_with_traffic: true
";

/// ceil(full × w / 100), at least 1 while `w > 0`.
fn need(full: u32, w: u32) -> u32 {
    if w == 0 {
        0
    } else {
        (full * w).div_ceil(100).max(1)
    }
}

async fn replicas_follow_the_stage(router: Router) {
    let s = Setup::new(router, SCALED).await;
    let out = s.run("apply").await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let events = timeline(&s.fake, router);

    // Replay the writes: whenever traffic moves, every deployment already has what its new
    // weight needs (scale up before), and a scale down comes only after traffic left.
    let mut replicas: BTreeMap<String, u32> = [("blue".into(), 2), ("green".into(), 2)].into();
    let mut traffic = weights(&[("blue", 100)]);
    for e in &events {
        match e {
            Event::Route(w) => {
                for (d, pct) in w {
                    assert!(
                        replicas[d] >= need(2, *pct),
                        "{d} takes {pct}% with {} replicas: {events:#?}",
                        replicas[d]
                    );
                }
                traffic = w.clone();
            }
            Event::Replicas(d, n) => {
                let pct = traffic.get(d).copied().unwrap_or(0);
                assert!(
                    *n >= need(2, pct),
                    "{d} scaled to {n} while taking {pct}%: {events:#?}"
                );
                replicas.insert(d.clone(), *n);
            }
            Event::Record => {}
        }
    }
    let moves: Vec<Event> = events
        .iter()
        .filter(|e| !matches!(e, Event::Record))
        .cloned()
        .collect();
    let route = |p: &[(&str, u32)]| Event::Route(weights(p));
    let rep = |d: &str, n| Event::Replicas(d.to_string(), n);
    assert_eq!(
        moves,
        [
            route(&[("blue", 90), ("green", 10)]),
            rep("green", 1), // down after green's share is set to 10
            rep("green", 2), // up before 60
            route(&[("blue", 40), ("green", 60)]),
            rep("blue", 1), // down after blue's share fell to 40
            route(&[("green", 100)]),
        ],
        "{events:#?}"
    );
    let green = s.fake.object("deployments", NS, "scoring-green").unwrap();
    assert_eq!(green.pointer("/spec/replicas"), Some(&Value::from(2)));
    assert!(s.fake.object("deployments", NS, "scoring-blue").is_none());
    let plan = s.run("plan").await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_istio_replicas_follow_each_stage_up_before_the_shift_and_down_after_it() {
    replicas_follow_the_stage(Router::Istio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gateway_api_replicas_follow_each_stage_up_before_the_shift_and_down_after_it() {
    replicas_follow_the_stage(Router::Gateway).await;
}
