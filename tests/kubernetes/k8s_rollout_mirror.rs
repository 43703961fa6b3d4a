//! The mirror stage on Kubernetes end to end, on Istio and Gateway API: the real binary against
//! the fake API server, gates read from the test kit's fake Prometheus. At the mirror stage the
//! router's split rule keeps live traffic at the baseline and mirrors a percent of it to the
//! candidate (Istio `mirror` + `mirrorPercentage` [K8S §1], Gateway API `RequestMirror` filter
//! [K8S §2]); the write that gives the candidate its first live weight drops the mirror.

use serde_json::Value;

use super::k8s_rollouts::{
    Router, Setup, Weights, router_object, router_writes, rules, split, weights,
};
use flightdeck_testkit::k8s_cli::{code, text};

/// The split rule's mirror: (deployment, percent), if any.
fn mirror(router: Router, obj: &Value) -> Option<(String, f64)> {
    let rules = rules(router, obj);
    let split = rules.iter().find(|r| r["name"] == "split")?;
    match router {
        Router::Istio => {
            let d = split["mirror"]["subset"].as_str()?.to_string();
            // [K8S §1]: an absent mirrorPercentage mirrors 100%.
            let p = split["mirrorPercentage"]["value"].as_f64().unwrap_or(100.0);
            Some((d, p))
        }
        Router::Gateway => {
            let filters = split["filters"].as_array()?;
            let m = filters.iter().find(|f| f["type"] == "RequestMirror")?;
            let name = m["requestMirror"]["backendRef"]["name"].as_str()?;
            let d = name.strip_prefix("scoring-").unwrap_or(name).to_string();
            // [K8S §2]: neither `percent` nor `fraction`: 100%.
            let p = m["requestMirror"]["percent"].as_f64().unwrap_or(100.0);
            Some((d, p))
        }
    }
}

const MIRROR_THEN_CANARY: &str = "    mirror:
      percent: 20
      bake: 1s
      gates: [\"error_rate < 2%\"]
    steps:
      - weight: 10
        bake: 1s
        gates: [\"error_rate < 2%\"]
    max_bake: 8s
";

async fn the_mirror_stage_mirrors_to_the_candidate_then_drops_it_in_the_write_that_gives_it_weight(
    router: Router,
) {
    let s = Setup::new(router, MIRROR_THEN_CANARY).await;
    let out = s.run("apply").await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let all = text(&out);
    for line in [
        "stage 1/3: routing blue 100, mirroring green 20 (desired green 100)",
        "stage 2/3: routing blue 90 / green 10",
        "stage 3/3: routing the declared green 100",
    ] {
        assert!(all.contains(line), "{line:?} in:\n{all}");
    }
    // Every router write in order, as (live split, mirror): the mirror stage, then the first
    // live weight with the mirror gone in that same write, then the declared traffic.
    let writes: Vec<(Weights, Option<(String, f64)>)> = router_writes(&s.fake, router)
        .iter()
        .map(|w| (split(router, w), mirror(router, w)))
        .collect();
    let mut distinct = writes.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            (weights(&[("blue", 100)]), Some(("green".to_string(), 20.0))),
            (weights(&[("blue", 90), ("green", 10)]), None),
            (weights(&[("green", 100)]), None),
        ],
        "{writes:#?}\n{all}"
    );
    // No write ever gives green live weight while mirroring to it, nor drops the mirror
    // without giving green weight (one write moves from the mirror stage to stage 2).
    let mirrored = writes.iter().rposition(|(_, m)| m.is_some()).unwrap();
    let (next_split, next_mirror) = &writes[mirrored + 1];
    assert_eq!(
        (next_split, next_mirror),
        (&weights(&[("blue", 90), ("green", 10)]), &None),
        "the write after the mirror stage: {writes:#?}"
    );
    let stored = router_object(&s.fake, router);
    assert_eq!(mirror(router, &stored), None, "{stored:#}");
    assert_eq!(split(router, &stored), weights(&[("green", 100)]));
    // The plan says so: one shift step that also stops the mirror, no separate stop before it.
    assert!(
        all.contains("set_traffic: flight green 10% (was blue 100); in the same write: stop mirroring (was green 20)"),
        "{all}"
    );
    assert!(!all.contains("set_mirror_traffic: stop mirroring"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_the_mirror_stage_mirrors_to_the_candidate_then_drops_it_in_the_write_that_gives_it_weight()
 {
    the_mirror_stage_mirrors_to_the_candidate_then_drops_it_in_the_write_that_gives_it_weight(
        Router::Istio,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_the_mirror_stage_mirrors_to_the_candidate_then_drops_it_in_the_write_that_gives_it_weight()
 {
    the_mirror_stage_mirrors_to_the_candidate_then_drops_it_in_the_write_that_gives_it_weight(
        Router::Gateway,
    )
    .await;
}
