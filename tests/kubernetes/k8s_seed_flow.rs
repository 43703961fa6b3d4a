//! The seed flow end to end on both routers: blue 100 → scale blue 1→2 → create green at 0 →
//! 90/10 → 0/100 → delete blue, driving `execute()` against the fake API server.

use flightdeck_testkit::fake_kube;

use fake_kube::fixtures::*;
use fake_kube::{FakeKube, Logged};
use flightdeck::backend::Backend;
use flightdeck::model::{DeploymentState, Router, effective};
use flightdeck::plan::Step;
use serde_json::Value;

async fn run(backend: &impl Backend, steps: &[Step]) {
    for s in steps {
        backend
            .execute(s)
            .await
            .unwrap_or_else(|e| panic!("{} failed: {e}", s.reason));
    }
}

fn assert_clean(fake: &FakeKube) {
    assert!(
        fake.invalid().is_empty(),
        "invalid writes: {:?}",
        fake.invalid()
    );
    assert!(
        fake.mbb_violations().is_empty(),
        "make-before-break: {:?}",
        fake.mbb_violations()
    );
}

/// Index of the first write request matching `pred`.
fn first(writes: &[Logged], what: &str, pred: impl Fn(&Logged) -> bool) -> usize {
    writes
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no write: {what}"))
}

fn names_subset(body: &Value, subset: &str) -> bool {
    body.to_string()
        .contains(&format!("\"subset\":\"{subset}\""))
}

fn router_plural(router: Router) -> &'static str {
    match router {
        Router::Istio => "virtualservices",
        Router::GatewayApi => "httproutes",
    }
}

/// The (name, weight) pairs of the catch-all rule of the stored router.
fn split(fake: &FakeKube, router: Router) -> Vec<(String, i64)> {
    let obj = fake
        .object(router_plural(router), NS, EP)
        .expect("router exists");
    let (rules, refs, key) = match router {
        Router::Istio => ("/spec/http", "route", "/destination/subset"),
        Router::GatewayApi => ("/spec/rules", "backendRefs", "/name"),
    };
    let rule = obj
        .pointer(rules)
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .find(|r| r["name"] == "split")
        .expect("split rule")
        .clone();
    rule[refs]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r.pointer(key).and_then(Value::as_str).unwrap().to_string();
            let weight = r["weight"]
                .as_i64()
                .expect("explicit weight on every destination");
            (name, weight)
        })
        .collect()
}

async fn seed_flow(router: Router) {
    let fake = FakeKube::start().await;
    let t = target(router);
    let backend = backend(&fake, &t);
    fake.respond("scoring-blue", 200, r#"{"score": 0.1}"#);
    fake.respond("scoring-green", 200, r#"{"score": 0.2}"#);
    let (blue_name, green_name) = match router {
        Router::Istio => ("blue", "green"),
        Router::GatewayApi => ("scoring-blue", "scoring-green"),
    };

    // 1. blue at 100%.
    run(
        &backend,
        &[
            create_endpoint(),
            create("blue", settings("credit:1", 1)),
            test_gate("blue"),
            traffic(&[("blue", 100)]),
        ],
    )
    .await;
    assert_clean(&fake);
    assert_eq!(split(&fake, router), [(blue_name.to_string(), 100)]);
    let proxied = fake.proxied();
    assert_eq!(proxied.len(), 1);
    assert_eq!(proxied[0].0, "scoring-blue");
    assert_eq!(proxied[0].1, "/score");
    let dep = fake.object("deployments", NS, "scoring-blue").unwrap();
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(
        dep["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "flightdeck"
    );
    assert_eq!(
        dep["metadata"]["annotations"]["flightdeck.io/model"],
        "azureml:credit:1"
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "credit:1"
    );
    assert!(
        fake.object("services", NS, "scoring").is_some(),
        "umbrella service"
    );
    assert!(
        fake.object("services", NS, "scoring-blue").is_some(),
        "version service"
    );

    // 2. scale blue 1 → 2: waits for the new generation's rollout.
    fake.clear_log();
    run(&backend, &[scale("blue", 1, 2)]).await;
    let dep = fake.object("deployments", NS, "scoring-blue").unwrap();
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["status"]["observedGeneration"],
        dep["metadata"]["generation"]
    );
    assert_eq!(dep["status"]["availableReplicas"], 2);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"], "credit:1",
        "scale keeps the template"
    );

    // 3. green at 0%, with a mirror in and out while it takes no traffic.
    fake.clear_log();
    run(
        &backend,
        &[
            create("green", settings("credit:2", 1)),
            test_gate("green"),
            traffic(&[("blue", 100), ("green", 0)]),
            mirror(&[("green", 20)]),
        ],
    )
    .await;
    assert_clean(&fake);
    let writes = fake.write_requests();
    let green_ready = first(&writes, "green deployment", |w| {
        w.kind == "deployments" && w.name.as_deref() == Some("scoring-green")
    });
    let router_names_green = first(&writes, "router names green", |w| {
        w.kind == router_plural(router) && w.body.to_string().contains(green_name)
    });
    assert!(green_ready < router_names_green);
    if router == Router::Istio {
        let dr_adds_green = first(&writes, "DR subset green", |w| {
            w.kind == "destinationrules" && w.body.to_string().contains("\"name\":\"green\"")
        });
        assert!(
            dr_adds_green < router_names_green,
            "DR subset before the VS names it"
        );
        let vs = fake.object("virtualservices", NS, EP).unwrap();
        assert_eq!(vs["spec"]["http"][2]["mirror"]["subset"], "green");
        assert_eq!(vs["spec"]["http"][2]["mirrorPercentage"]["value"], 20.0);
        assert_eq!(
            vs["spec"]["gateways"],
            serde_json::json!(["infra/public", "mesh"])
        );
        assert_eq!(
            vs["spec"]["http"][1]["match"][0]["headers"]["x-model-deployment"]["exact"],
            "green"
        );
    } else {
        let route = fake.object("httproutes", NS, EP).unwrap();
        let filter = &route["spec"]["rules"][2]["filters"][0];
        assert_eq!(filter["type"], "RequestMirror");
        assert_eq!(
            filter["requestMirror"]["backendRef"]["name"],
            "scoring-green"
        );
        assert_eq!(filter["requestMirror"]["backendRef"]["port"], 8080);
        assert_eq!(filter["requestMirror"]["percent"], 20);
        assert_eq!(route["spec"]["parentRefs"][0]["namespace"], "infra");
        assert_eq!(
            route["spec"]["rules"][1]["matches"][0]["headers"][0]["value"],
            "green"
        );
    }
    let live = backend.read_live().await.unwrap();
    assert_eq!(live.endpoints[EP].mirror_traffic, weights(&[("green", 20)]));
    run(&backend, &[mirror(&[])]).await;

    // 4. 90/10, then 5. 0/100.
    run(&backend, &[traffic(&[("blue", 90), ("green", 10)])]).await;
    assert_eq!(
        split(&fake, router),
        [(blue_name.to_string(), 90), (green_name.to_string(), 10)]
    );
    run(&backend, &[traffic(&[("blue", 0), ("green", 100)])]).await;
    assert_eq!(
        split(&fake, router),
        [(blue_name.to_string(), 0), (green_name.to_string(), 100)]
    );
    assert_clean(&fake);

    // 6. delete blue: router drops every reference, then (Istio) the DR subset, then the objects.
    fake.clear_log();
    run(&backend, &[delete("blue")]).await;
    assert_clean(&fake);
    let writes = fake.write_requests();
    let router_drops = first(&writes, "router without blue", |w| {
        w.kind == router_plural(router) && !w.body.to_string().contains(blue_name)
    });
    let delete_dep = first(&writes, "delete blue deployment", |w| {
        w.method == "DELETE" && w.kind == "deployments" && w.name.as_deref() == Some("scoring-blue")
    });
    let delete_svc = first(&writes, "delete blue service", |w| {
        w.method == "DELETE" && w.kind == "services" && w.name.as_deref() == Some("scoring-blue")
    });
    assert!(router_drops < delete_dep && delete_dep < delete_svc);
    if router == Router::Istio {
        let dr_drops = first(&writes, "DR without blue", |w| {
            w.kind == "destinationrules" && !w.body.to_string().contains("\"name\":\"blue\"")
        });
        assert!(
            router_drops < dr_drops && dr_drops < delete_dep,
            "VS drops blue before the DR does"
        );
        assert!(!names_subset(
            &fake.object("virtualservices", NS, EP).unwrap(),
            "blue"
        ));
    }
    assert!(fake.object("deployments", NS, "scoring-blue").is_none());
    assert!(fake.object("services", NS, "scoring-blue").is_none());

    // Live state reads back what was applied.
    let live = backend.read_live().await.unwrap();
    let ep = &live.endpoints[EP];
    assert_eq!(effective(&ep.traffic), weights(&[("green", 100)]));
    assert!(ep.mirror_traffic.is_empty());
    assert_eq!(ep.deployments.keys().collect::<Vec<_>>(), ["green"]);
    assert_eq!(ep.deployments["green"].state, DeploymentState::Ready);
    // Every declared setting reads back (undeclared ones, like the probe port, may be filled in).
    assert_declared(&settings("credit:2", 1), &ep.deployments["green"].settings);

    // Steady state: re-applying what live already says changes nothing.
    let writes_before = fake.writes();
    let green = &ep.deployments["green"];
    run(
        &backend,
        &[
            create_endpoint(),
            flightdeck_update("green", (*green.settings).clone()),
            scale("green", 1, 1),
            traffic(&[("green", 100)]),
            mirror(&[]),
        ],
    )
    .await;
    assert_eq!(
        fake.writes(),
        writes_before,
        "re-applying live state made writes"
    );
    assert_clean(&fake);
}

/// Every field `desired` declares has the same value in `live` (the planner's comparison rule).
fn assert_declared(desired: &impl serde::Serialize, live: &impl serde::Serialize) {
    fn subset(d: &Value, l: &Value, at: &str) {
        match (d, l) {
            (Value::Object(d), Value::Object(l)) => {
                for (k, v) in d {
                    subset(v, l.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(d, l, "live differs at {at}"),
        }
    }
    subset(
        &serde_json::to_value(desired).unwrap(),
        &serde_json::to_value(live).unwrap(),
        "",
    );
}

fn flightdeck_update(d: &str, settings: flightdeck::model::DeploymentSettings) -> Step {
    step(flightdeck::plan::Action::UpdateDeployment {
        deployment: d.into(),
        settings: Box::new(settings),
        changes: vec![],
    })
}

#[tokio::test]
async fn the_seed_flow_runs_end_to_end_on_istio() {
    seed_flow(Router::Istio).await;
}

#[tokio::test]
async fn the_seed_flow_runs_end_to_end_on_gateway_api() {
    seed_flow(Router::GatewayApi).await;
}
