//! The seed flow driven by the real planner: for each desired state, read live from the fake API
//! server, plan, execute every step; afterwards live state plans to nothing and re-planning makes
//! zero writes (steady state).

use flightdeck_testkit::fake_kube;

use std::collections::BTreeMap;

use fake_kube::FakeKube;
use fake_kube::fixtures::*;
use flightdeck::backend::Backend;
use flightdeck::model::{
    Deployment, DesiredState, DriftPolicy, Endpoint, EndpointSettings, Environment, Router, Target,
    TestSpec,
};
use flightdeck::plan::{PlanOptions, plan};

fn desired(router: Router, versions: &[(&str, &str, u32)], split: &[(&str, u32)]) -> DesiredState {
    let deployments: BTreeMap<String, Deployment> = versions
        .iter()
        .map(|(name, image, count)| {
            let d = Deployment {
                name: name.to_string(),
                settings: Box::new(settings(image, *count)),
                test: Some(TestSpec {
                    requests: vec![flightdeck::model::TestRequest::new(
                        "sample.json",
                        r#"{"data": [[1, 2]]}"#,
                    )],
                    expect_status: Some(200),
                    expect_body_contains: Some("score".into()),
                    ..Default::default()
                }),
            };
            (name.to_string(), d)
        })
        .collect();
    let endpoint = Endpoint {
        name: EP.into(),
        settings: EndpointSettings {
            description: Some("credit scoring".into()),
            ..Default::default()
        },
        traffic: Some(weights(split)),
        mirror_traffic: None,
        deployments,
    };
    DesiredState {
        environment: Environment {
            name: "k8s".into(),
            target: Target::Kubernetes(target(router)),
            drift: DriftPolicy::default(),
            rollout: Default::default(),
            slots: Default::default(),
            promotion: Default::default(),
        },
        endpoints: BTreeMap::from([(EP.to_string(), endpoint)]),
    }
}

async fn planned_seed_flow(router: Router) {
    let fake = FakeKube::start().await;
    let backend = backend(&fake, &target(router));
    fake.respond("scoring-blue", 200, r#"{"score": 0.1}"#);
    fake.respond("scoring-green", 200, r#"{"score": 0.2}"#);
    let states = [
        desired(router, &[("blue", "credit:1", 1)], &[("blue", 100)]),
        desired(router, &[("blue", "credit:1", 2)], &[("blue", 100)]),
        desired(
            router,
            &[("blue", "credit:1", 2), ("green", "credit:2", 1)],
            &[("blue", 100), ("green", 0)],
        ),
        desired(
            router,
            &[("blue", "credit:1", 2), ("green", "credit:2", 1)],
            &[("blue", 90), ("green", 10)],
        ),
        desired(
            router,
            &[("blue", "credit:1", 2), ("green", "credit:2", 1)],
            &[("blue", 0), ("green", 100)],
        ),
        desired(router, &[("green", "credit:2", 1)], &[("green", 100)]),
    ];
    let opts = PlanOptions::default();
    for (i, state) in states.iter().enumerate() {
        let live = backend.read_live().await.unwrap();
        let steps = plan(
            state,
            &live,
            &opts,
            flightdeck::backend::profile_of(&state.environment.target),
        )
        .unwrap_or_else(|r| panic!("state {i}: refused {r:?}"));
        assert!(!steps.is_empty(), "state {i}: nothing planned");
        for step in &steps.steps {
            backend
                .execute(step)
                .await
                .unwrap_or_else(|e| panic!("state {i}: {} failed: {e}", step.reason));
        }
        assert!(fake.invalid().is_empty(), "state {i}: {:?}", fake.invalid());
        assert!(
            fake.mbb_violations().is_empty(),
            "state {i}: {:?}",
            fake.mbb_violations()
        );

        // Steady state: live now plans to nothing, so a reconcile tick writes nothing.
        let writes = fake.writes();
        let live = backend.read_live().await.unwrap();
        let again = plan(
            state,
            &live,
            &opts,
            flightdeck::backend::profile_of(&state.environment.target),
        )
        .unwrap();
        assert!(
            again.is_empty(),
            "state {i}: not converged: {:?}",
            again.steps
        );
        assert_eq!(fake.writes(), writes);
    }
    assert_eq!(fake.names("deployments", NS), ["scoring-green"]);
    // Istio adds the pool Service `scoring--pool`, the DestinationRule's host (every version).
    let services: &[&str] = match router {
        Router::Istio => &["scoring", "scoring--pool", "scoring-green"],
        Router::GatewayApi => &["scoring", "scoring-green"],
    };
    assert_eq!(fake.names("services", NS), services);
    // The tests ran through the service proxy, once per new version.
    let tested: Vec<String> = fake.proxied().into_iter().map(|(svc, _, _)| svc).collect();
    assert_eq!(tested, ["scoring-blue", "scoring-green"]);
}

#[tokio::test]
async fn the_planner_drives_the_seed_flow_to_a_steady_state_on_istio() {
    planned_seed_flow(Router::Istio).await;
}

#[tokio::test]
async fn the_planner_drives_the_seed_flow_to_a_steady_state_on_gateway_api() {
    planned_seed_flow(Router::GatewayApi).await;
}
