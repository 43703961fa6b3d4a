//! `Backend::read_live_endpoints` on Kubernetes (a targeted reconcile's read): for the named
//! endpoints it reports exactly what `read_live` reports for them, nothing about the others,
//! and nothing for a name that is not live, on both routers; past 16 names it lists each kind
//! once instead of once per endpoint.

use std::collections::{BTreeMap, BTreeSet};

use flightdeck::backend::Backend;
use flightdeck::model::{
    Deployment, DesiredState, DriftPolicy, Endpoint, Environment, Router, Target,
};
use flightdeck::plan::{PlanOptions, plan};
use flightdeck_testkit::fake_kube::FakeKube;
use flightdeck_testkit::fake_kube::fixtures::*;

fn endpoint(name: &str, count: u32) -> Endpoint {
    let blue = Deployment {
        name: "blue".into(),
        settings: Box::new(settings("credit:1", count)),
        test: None,
    };
    Endpoint {
        name: name.into(),
        settings: Default::default(),
        traffic: Some(weights(&[("blue", 100)])),
        mirror_traffic: None,
        deployments: BTreeMap::from([("blue".to_string(), blue)]),
    }
}

async fn targeted_read_matches_the_full_read(router: Router) {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(router));
    let desired = DesiredState {
        environment: Environment {
            name: "k8s".into(),
            target: Target::Kubernetes(target(router)),
            drift: DriftPolicy::default(),
            rollout: Default::default(),
            slots: Default::default(),
            promotion: Default::default(),
        },
        endpoints: [("scoring", 1), ("fraud", 2), ("churn", 1)]
            .into_iter()
            .map(|(n, c)| (n.to_string(), endpoint(n, c)))
            .collect(),
    };
    let profile = flightdeck::backend::profile_of(&desired.environment.target);
    let live = backend.read_live().await.unwrap();
    let steps = plan(&desired, &live, &PlanOptions::default(), profile).unwrap();
    for step in &steps.steps {
        backend.execute(step).await.unwrap();
    }
    let full = backend.read_live().await.unwrap();
    assert_eq!(full.endpoints.len(), 3);

    let names: BTreeSet<String> = ["fraud", "not-live"].map(String::from).into();
    fake.clear_log();
    let targeted = backend.read_live_endpoints(&names).await.unwrap();
    // Every list of managed objects is narrowed to one named endpoint's label.
    let selectors: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .filter_map(|r| {
            url::form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "labelSelector")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|s| !s.contains("!="))
        .collect();
    assert!(!selectors.is_empty());
    for selector in &selectors {
        assert!(
            selector.ends_with(",flightdeck.io/endpoint=fraud")
                || selector.ends_with(",flightdeck.io/endpoint=not-live"),
            "a targeted read listed {selector:?}"
        );
    }
    let keys: Vec<&String> = targeted.endpoints.keys().collect();
    assert_eq!(keys, ["fraud"], "only the named, live endpoint");
    assert_eq!(targeted.endpoints["fraud"], full.endpoints["fraud"]);
    assert_eq!(targeted.taken, vec![]);
    let none = backend.read_live_endpoints(&BTreeSet::new()).await.unwrap();
    assert!(none.endpoints.is_empty());

    // Above 16 names, one LIST per kind (as the full read) serves them all.
    let many: BTreeSet<String> = (0..17)
        .map(|i| format!("other-{i}"))
        .chain(["churn".to_string()])
        .collect();
    fake.clear_log();
    let targeted = backend.read_live_endpoints(&many).await.unwrap();
    let keys: Vec<&String> = targeted.endpoints.keys().collect();
    assert_eq!(keys, ["churn"]);
    assert_eq!(targeted.endpoints["churn"], full.endpoints["churn"]);
    let lists = fake.requests().iter().filter(|r| r.method == "GET").count();
    assert!(lists <= 10, "{lists} requests for 18 names");
}

#[tokio::test]
async fn a_targeted_read_reports_the_named_endpoints_as_the_full_read_does_on_istio() {
    targeted_read_matches_the_full_read(Router::Istio).await;
}

#[tokio::test]
async fn a_targeted_read_reports_the_named_endpoints_as_the_full_read_does_on_gateway_api() {
    targeted_read_matches_the_full_read(Router::GatewayApi).await;
}
