//! Auditing what `read_live` listed against what flightdeck would have written: every object an
//! endpoint owns (umbrella Service, Istio pool Service and DestinationRule, per-version Services,
//! the router) is checked, and each one missing or changed becomes a problem that the planner
//! turns into a `repair_endpoint` step. Also: names held by objects flightdeck does not own.
//! Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

use super::crd::{DestinationRule, HttpRoute, VirtualService};
use super::objects::{
    DEPLOYMENT_LABEL, MANAGED_SELECTOR, pool_name, port_of, primary, service_fqdn, service_port,
    service_selector, umbrella_selector, version_name, version_selector,
};
use super::routing::{parent_refs, subsets_of, vs_gateways, vs_hosts};
use flightdeck_core::model::{KubernetesTarget, LiveEndpoint, NameTaken, Router};

/// What `read_live` found for one endpoint, by object.
pub(super) struct Found<'a> {
    /// Every flightdeck Service of the namespace, by name.
    pub services: &'a BTreeMap<String, Service>,
    pub destination_rule: Option<&'a DestinationRule>,
    pub virtual_service: Option<&'a VirtualService>,
    pub http_route: Option<&'a HttpRoute>,
}

fn selector_text(s: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = s.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(","))
}

/// One problem per owned object that is missing or differs from what flightdeck writes.
pub(super) fn endpoint_problems(
    target: &KubernetesTarget,
    live: &LiveEndpoint,
    found: &Found<'_>,
) -> Vec<String> {
    let e = live.name.as_str();
    let ns = target.namespace.as_str();
    let mut problems = Vec::new();
    let mut service =
        |name: &str, selector: BTreeMap<String, String>, port: Option<i32>| match found
            .services
            .get(name)
        {
            None => problems.push(format!("Service {name} is missing")),
            Some(svc) => {
                let have = service_selector(svc);
                if have != selector {
                    problems.push(format!(
                        "Service {name} selects {}, expected {}",
                        selector_text(&have),
                        selector_text(&selector)
                    ));
                }
                if let Some(p) = port.filter(|p| service_port(svc) != Some(*p)) {
                    problems.push(format!(
                        "Service {name} has port {}, expected {p}",
                        service_port(svc).map_or("none".to_string(), |p| p.to_string())
                    ));
                }
            }
        };
    service(e, umbrella_selector(e, primary(&live.traffic)), None);
    let istio = target.router == Router::Istio;
    if istio {
        let all = BTreeMap::from([(super::objects::ENDPOINT_LABEL.to_string(), e.to_string())]);
        service(&pool_name(e), all, None);
    }
    for (d, dep) in &live.deployments {
        let port = i32::from(port_of(&dep.settings));
        service(&version_name(e, d), version_selector(e, d), Some(port));
    }
    if istio && !live.deployments.is_empty() {
        match found.destination_rule {
            None => problems.push(format!("DestinationRule {e} is missing")),
            Some(dr) => {
                let host = service_fqdn(&pool_name(e), ns);
                if dr.spec.host != host {
                    problems.push(format!(
                        "DestinationRule {e} has host {}, expected {host}",
                        dr.spec.host
                    ));
                }
                let subsets = subsets_of(dr);
                for (d, dep) in &live.deployments {
                    let labels = BTreeMap::from([(DEPLOYMENT_LABEL.to_string(), d.clone())]);
                    let right = dr
                        .spec
                        .subsets
                        .iter()
                        .any(|s| &s.name == d && s.labels == labels);
                    if dep.state.is_ready() && !right {
                        let what = if subsets.contains(d) {
                            "a changed subset"
                        } else {
                            "no subset"
                        };
                        problems.push(format!("DestinationRule {e} has {what} {d}"));
                    }
                }
            }
        }
    }
    if let Some(vs) = found.virtual_service {
        let (hosts, gateways) = (vs_hosts(e, target), vs_gateways(target));
        if vs.spec.hosts != hosts || vs.spec.gateways != gateways {
            problems.push(format!(
                "VirtualService {e} serves hosts {:?} through gateways {:?}, expected {hosts:?} \
                 through {gateways:?}",
                vs.spec.hosts, vs.spec.gateways
            ));
        }
    }
    if let Some(route) = found.http_route {
        let parents = parent_refs(e, &target.gateways);
        if route.spec.parent_refs != parents || route.spec.hostnames != target.hostnames {
            problems.push(format!(
                "HTTPRoute {e} has changed parentRefs or hostnames (expected parents {:?}, \
                 hostnames {:?})",
                parents.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                target.hostnames
            ));
        }
    }
    problems
}

/// The endpoint and deployment names an object named `name` of `kind` would collide with, when
/// flightdeck does not own it. Router objects and Services named `E` take endpoint `E`; a
/// Deployment or Service named `A-B` takes deployment `B` of endpoint `A` (for every `-`);
/// a Service `E--pool` takes endpoint `E` on Istio.
pub(super) fn names_taken(kind: &str, name: &str, router: Router) -> Vec<NameTaken> {
    let message = format!(
        "{kind} {name} exists without the label {MANAGED_SELECTOR}; flightdeck never modifies \
         objects it did not create: delete it, label it, or choose another name"
    );
    let mut out = Vec::new();
    let take = |endpoint: &str, deployment: Option<&str>| NameTaken {
        endpoint: endpoint.to_string(),
        deployment: deployment.map(str::to_string),
        message: message.clone(),
    };
    if kind != "Deployment" {
        out.push(take(name, None));
    }
    if kind == "Service"
        && router == Router::Istio
        && let Some(e) = name.strip_suffix("--pool")
    {
        out.push(take(e, None));
    }
    if matches!(kind, "Deployment" | "Service") {
        for (i, _) in name.match_indices('-') {
            let (e, d) = (&name[..i], &name[i + 1..]);
            if !e.is_empty() && !d.is_empty() {
                out.push(take(e, Some(d)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_service_takes_the_endpoint_and_every_split_deployment_name() {
        let taken = names_taken("Service", "credit-scoring-blue", Router::GatewayApi);
        let pairs: Vec<(&str, Option<&str>)> = taken
            .iter()
            .map(|t| (t.endpoint.as_str(), t.deployment.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("credit-scoring-blue", None),
                ("credit", Some("scoring-blue")),
                ("credit-scoring", Some("blue")),
            ]
        );
        let vs = names_taken("VirtualService", "scoring", Router::Istio);
        assert_eq!(vs.len(), 1);
        assert!(
            vs[0]
                .message
                .starts_with("VirtualService scoring exists without the label")
        );
    }
}
