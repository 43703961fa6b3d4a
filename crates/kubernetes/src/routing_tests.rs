use super::*;
use flightdeck_core::model::Router;

fn target(router: Router) -> KubernetesTarget {
    KubernetesTarget {
        namespace: "ml".into(),
        router,
        gateways: vec!["infra/public".into()],
        hostnames: vec!["scoring.example.com".into()],
        pin_header: Some("X-Model-Deployment".into()),
        test_base_url: None,
    }
}

fn weights(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn versions() -> BTreeMap<String, i32> {
    BTreeMap::from([("blue".to_string(), 8080), ("green".to_string(), 8080)])
}

#[test]
fn the_virtual_service_pins_before_the_weighted_split_with_explicit_weights() {
    let t = target(Router::Istio);
    let v = versions();
    let traffic = weights(&[("blue", 90), ("green", 10)]);
    let mirror = weights(&[]);
    let input = RouteInput {
        endpoint: "scoring",
        target: &t,
        versions: &v,
        traffic: &traffic,
        mirror: &mirror,
    };
    let vs = virtual_service(&input).unwrap();
    let names: Vec<_> = vs
        .spec
        .http
        .iter()
        .map(|r| r.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["pin-blue", "pin-green", "split"]);
    assert!(
        vs.spec.http[0].matches[0]
            .headers
            .contains_key("x-model-deployment")
    );
    assert_eq!(vs.spec.gateways, ["infra/public", "mesh"]);
    // Custom hostnames add to the Service FQDN that mesh clients address; they never replace it.
    assert_eq!(
        vs.spec.hosts,
        [
            format!("scoring.{}.svc.cluster.local", t.namespace),
            "scoring.example.com".to_string()
        ]
    );
    let split = &vs.spec.http[2];
    assert!(split.route.iter().all(|r| r.weight.is_some()));
    assert_eq!(weights_from_virtual_service(&vs), (traffic, mirror));
}

#[test]
fn mirror_traffic_round_trips_through_both_routers() {
    let v = versions();
    let traffic = weights(&[("blue", 100), ("green", 0)]);
    let mirror = weights(&[("green", 25)]);
    for router in [Router::Istio, Router::GatewayApi] {
        let t = target(router);
        let input = RouteInput {
            endpoint: "scoring",
            target: &t,
            versions: &v,
            traffic: &traffic,
            mirror: &mirror,
        };
        let read = match router {
            Router::Istio => weights_from_virtual_service(&virtual_service(&input).unwrap()),
            Router::GatewayApi => weights_from_http_route(&http_route(&input).unwrap(), "scoring"),
        };
        assert_eq!(read, (traffic.clone(), mirror.clone()), "{router:?}");
    }
}

#[test]
fn an_empty_http_route_keeps_one_rule_without_backends() {
    let mut t = target(Router::GatewayApi);
    t.pin_header = None;
    t.gateways.clear();
    let v = versions();
    let none = weights(&[]);
    let input = RouteInput {
        endpoint: "scoring",
        target: &t,
        versions: &v,
        traffic: &none,
        mirror: &none,
    };
    let route = http_route(&input).unwrap();
    assert_eq!(route.spec.rules.len(), 1);
    assert!(route.spec.rules[0].backend_refs.is_empty());
    assert_eq!(route.spec.parent_refs[0].kind.as_deref(), Some("Service"));
}

#[test]
fn bad_traffic_is_refused_with_a_reason() {
    let t = target(Router::Istio);
    let v = versions();
    let none = weights(&[]);
    let cases = [
        (
            weights(&[("blue", 90)]),
            none.clone(),
            "traffic sums to 90, expected 100",
        ),
        (
            weights(&[("red", 100)]),
            none.clone(),
            "traffic names deployment red, which does not exist",
        ),
        (
            weights(&[("blue", 100)]),
            weights(&[("green", 101)]),
            "mirror traffic to green is 101%, expected 0..=100",
        ),
        (
            weights(&[("blue", 100)]),
            weights(&[("blue", 10)]),
            "deployment blue mirrors its own traffic",
        ),
    ];
    for (traffic, mirror, message) in cases {
        let input = RouteInput {
            endpoint: "scoring",
            target: &t,
            versions: &v,
            traffic: &traffic,
            mirror: &mirror,
        };
        assert_eq!(virtual_service(&input).unwrap_err().to_string(), message);
    }
}

#[test]
fn references_name_every_subset_in_use() {
    let t = target(Router::GatewayApi);
    let v = versions();
    let traffic = weights(&[("blue", 100)]);
    let none = weights(&[]);
    let input = RouteInput {
        endpoint: "scoring",
        target: &t,
        versions: &v,
        traffic: &traffic,
        mirror: &none,
    };
    let route = http_route(&input).unwrap();
    assert_eq!(
        versions_referenced(&route, "scoring"),
        BTreeSet::from(["blue".to_string(), "green".to_string()])
    );
    let vs = virtual_service(&input).unwrap();
    assert_eq!(subsets_referenced(&vs).len(), 2);
}
