//! Pure rendering of the router objects (Istio VirtualService + DestinationRule, or Gateway API
//! HTTPRoute) from the wanted traffic, and reading the weights back from them.
//!
//! Rules that shape the output [K8S §1, §2, §6]:
//! - pin rules (one per known version, header `pin_header` exact `D`) come before the weighted
//!   catch-all, because Istio uses the first matching rule;
//! - the catch-all (named `split`) carries an explicit integer weight on every destination, and the
//!   weights sum to 100 (portable to Istio <= 1.14; never all-zero);
//! - with no traffic the catch-all is not emitted (Istio), or is emitted with no backendRefs when
//!   an HTTPRoute would otherwise have no rule at all (the CRD requires 1..16 rules): the gateway
//!   then answers 500 instead of routing, which is what "no traffic" means.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::crd::{
    BackendRef, DestinationRule, DestinationRuleSpec, HttpHeaderMatch, HttpRoute, HttpRouteFilter,
    HttpRouteMatch, HttpRouteRule, HttpRouteSpec, IstioDestination, IstioHttpRoute, IstioMatch,
    IstioPercent, IstioRouteDestination, IstioStringMatch, ParentRef, RequestMirror, Subset,
    VirtualService, VirtualServiceSpec,
};
use super::objects::{DEPLOYMENT_LABEL, endpoint_labels, pool_name, service_fqdn, version_name};
use flightdeck_core::model::{KubernetesTarget, Weights, weight_sum};

/// The name of the weighted catch-all rule in both routers.
pub const SPLIT_RULE: &str = "split";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("traffic sums to {sum}, expected 100")]
    TrafficSum { sum: u64 },
    #[error("{what} names deployment {deployment}, which does not exist")]
    UnknownDeployment {
        what: &'static str,
        deployment: String,
    },
    #[error("mirror traffic to {deployment} is {percent}%, expected 0..=100")]
    MirrorPercent { deployment: String, percent: u32 },
    #[error("mirror traffic goes to {count} deployments; at most one is supported")]
    TooManyMirrors { count: usize },
    #[error("mirror traffic needs a traffic split to copy requests from")]
    MirrorWithoutTraffic,
    #[error("deployment {deployment} mirrors its own traffic")]
    MirrorOfLive { deployment: String },
    #[error("pin header {header:?} is not a valid HTTP header name")]
    PinHeader { header: String },
}

/// What a router should express for one endpoint.
pub struct RouteInput<'a> {
    pub endpoint: &'a str,
    pub target: &'a KubernetesTarget,
    /// Versions the router may reference, with their Service port. For Istio these are the
    /// DestinationRule subsets ([K8S §1] ISTIO-MBB: never name a subset the DR lacks).
    pub versions: &'a BTreeMap<String, i32>,
    pub traffic: &'a Weights,
    pub mirror: &'a Weights,
}

/// The single mirror destination and its percentage, if any.
fn checked(input: &RouteInput<'_>) -> Result<Option<(String, u32)>, RouteError> {
    if !input.traffic.is_empty() && weight_sum(input.traffic) != 100 {
        return Err(RouteError::TrafficSum {
            sum: weight_sum(input.traffic),
        });
    }
    for (what, weights) in [("traffic", input.traffic), ("mirror traffic", input.mirror)] {
        if let Some(d) = weights.keys().find(|d| !input.versions.contains_key(*d)) {
            return Err(RouteError::UnknownDeployment {
                what,
                deployment: d.clone(),
            });
        }
    }
    if let Some(header) = &input.target.pin_header {
        let valid = !header.is_empty()
            && header
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(RouteError::PinHeader {
                header: header.clone(),
            });
        }
    }
    let mirrors: Vec<(&String, &u32)> = input.mirror.iter().filter(|(_, p)| **p > 0).collect();
    match mirrors.as_slice() {
        [] => Ok(None),
        [(d, p)] => {
            if **p > 100 {
                return Err(RouteError::MirrorPercent {
                    deployment: (*d).clone(),
                    percent: **p,
                });
            }
            if input.traffic.is_empty() {
                return Err(RouteError::MirrorWithoutTraffic);
            }
            if input.traffic.get(*d).copied().unwrap_or(0) > 0 {
                return Err(RouteError::MirrorOfLive {
                    deployment: (*d).clone(),
                });
            }
            Ok(Some(((*d).clone(), **p)))
        }
        many => Err(RouteError::TooManyMirrors { count: many.len() }),
    }
}

fn router_meta(endpoint: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(endpoint.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(endpoint_labels(endpoint)),
        ..Default::default()
    }
}

fn weight(w: u32) -> Option<i32> {
    Some(i32::try_from(w).unwrap_or(i32::MAX))
}

/// The DestinationRule `E`: host = the pool Service's FQDN (every version's pods), one subset per
/// version.
pub fn destination_rule(
    endpoint: &str,
    namespace: &str,
    subsets: &BTreeSet<String>,
) -> DestinationRule {
    DestinationRule {
        api_version: DestinationRule::API_VERSION.to_string(),
        kind: DestinationRule::KIND.to_string(),
        metadata: router_meta(endpoint, namespace),
        spec: DestinationRuleSpec {
            host: service_fqdn(&pool_name(endpoint), namespace),
            subsets: subsets
                .iter()
                .map(|d| Subset {
                    name: d.clone(),
                    labels: BTreeMap::from([(DEPLOYMENT_LABEL.to_string(), d.clone())]),
                })
                .collect(),
        },
    }
}

pub fn subsets_of(dr: &DestinationRule) -> BTreeSet<String> {
    dr.spec.subsets.iter().map(|s| s.name.clone()).collect()
}

/// The VirtualService's hosts: the umbrella FQDN always (mesh clients address it), then any
/// custom `hostnames` (they add to the FQDN, never replace it).
pub fn vs_hosts(endpoint: &str, target: &KubernetesTarget) -> Vec<String> {
    let mut hosts = vec![service_fqdn(endpoint, &target.namespace)];
    for h in &target.hostnames {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    hosts
}

/// The VirtualService's gateways: `gateways` plus `mesh` when any is set.
pub fn vs_gateways(target: &KubernetesTarget) -> Vec<String> {
    let mut gateways = target.gateways.clone();
    if !gateways.is_empty() && !gateways.iter().any(|g| g == "mesh") {
        // [K8S §1]: to cover an ingress gateway and the sidecars, list both.
        gateways.push("mesh".to_string());
    }
    gateways
}

/// The VirtualService `E` ([K8S §1] example shape).
pub fn virtual_service(input: &RouteInput<'_>) -> Result<VirtualService, RouteError> {
    let mirror = checked(input)?;
    let namespace = input.target.namespace.as_str();
    let pool = service_fqdn(&pool_name(input.endpoint), namespace);
    let destination = |d: &str| IstioDestination {
        host: pool.clone(),
        subset: Some(d.to_string()),
    };
    let mut http = Vec::new();
    if let Some(header) = &input.target.pin_header {
        for d in input.versions.keys() {
            http.push(IstioHttpRoute {
                name: Some(format!("pin-{d}")),
                matches: vec![IstioMatch {
                    headers: BTreeMap::from([(
                        header.to_ascii_lowercase(),
                        IstioStringMatch {
                            exact: Some(d.clone()),
                        },
                    )]),
                }],
                route: vec![IstioRouteDestination {
                    destination: destination(d),
                    weight: Some(100),
                }],
                ..Default::default()
            });
        }
    }
    if !input.traffic.is_empty() {
        http.push(IstioHttpRoute {
            name: Some(SPLIT_RULE.to_string()),
            route: input
                .traffic
                .iter()
                .map(|(d, w)| IstioRouteDestination {
                    destination: destination(d),
                    weight: weight(*w),
                })
                .collect(),
            mirror: mirror.as_ref().map(|(d, _)| destination(d)),
            mirror_percentage: mirror.as_ref().map(|(_, p)| IstioPercent {
                value: f64::from(*p),
            }),
            ..Default::default()
        });
    }
    let hosts = vs_hosts(input.endpoint, input.target);
    let gateways = vs_gateways(input.target);
    Ok(VirtualService {
        api_version: VirtualService::API_VERSION.to_string(),
        kind: VirtualService::KIND.to_string(),
        metadata: router_meta(input.endpoint, namespace),
        spec: VirtualServiceSpec {
            hosts,
            gateways,
            http,
        },
    })
}

/// Traffic and mirror weights of the VirtualService's catch-all rule.
pub fn weights_from_virtual_service(vs: &VirtualService) -> (Weights, Weights) {
    let Some(split) = vs
        .spec
        .http
        .iter()
        .find(|r| r.name.as_deref() == Some(SPLIT_RULE))
    else {
        return (Weights::new(), Weights::new());
    };
    let traffic = split
        .route
        .iter()
        .filter_map(|r| {
            let d = r.destination.subset.clone()?;
            Some((d, r.weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(0)))
        })
        .collect();
    let mirror = split
        .mirror
        .as_ref()
        .and_then(|m| m.subset.clone())
        .map(|d| {
            let pct = split.mirror_percentage.as_ref().map_or(100.0, |p| p.value);
            // 0.0..=100.0 after validation, so the cast cannot truncate meaningfully.
            (d, pct.round().clamp(0.0, 100.0) as u32)
        })
        .into_iter()
        .collect();
    (traffic, mirror)
}

/// Every subset the VirtualService names (routes, pins, mirror).
pub fn subsets_referenced(vs: &VirtualService) -> BTreeSet<String> {
    vs.spec
        .http
        .iter()
        .flat_map(|r| {
            r.route
                .iter()
                .map(|d| &d.destination)
                .chain(r.mirror.as_ref())
                .filter_map(|d| d.subset.clone())
        })
        .collect()
}

pub fn parent_refs(endpoint: &str, gateways: &[String]) -> Vec<ParentRef> {
    if gateways.is_empty() {
        // GAMMA (mesh): attach to the endpoint's umbrella Service.
        return vec![ParentRef {
            group: Some(String::new()),
            kind: Some("Service".to_string()),
            namespace: None,
            name: endpoint.to_string(),
        }];
    }
    gateways
        .iter()
        .map(|g| match g.split_once('/') {
            Some((ns, name)) => ParentRef {
                namespace: Some(ns.to_string()),
                name: name.to_string(),
                ..Default::default()
            },
            None => ParentRef {
                name: g.clone(),
                ..Default::default()
            },
        })
        .collect()
}

/// The HTTPRoute `E` [K8S §2].
pub fn http_route(input: &RouteInput<'_>) -> Result<HttpRoute, RouteError> {
    let mirror = checked(input)?;
    let endpoint = input.endpoint;
    let backend = |d: &str, w: Option<i32>| BackendRef {
        name: version_name(endpoint, d),
        port: input.versions.get(d).copied(),
        weight: w,
        ..Default::default()
    };
    let mut rules = Vec::new();
    if let Some(header) = &input.target.pin_header {
        for d in input.versions.keys() {
            rules.push(HttpRouteRule {
                name: Some(format!("pin-{d}")),
                matches: vec![HttpRouteMatch {
                    headers: vec![HttpHeaderMatch {
                        type_: Some("Exact".to_string()),
                        name: header.clone(),
                        value: d.clone(),
                    }],
                }],
                backend_refs: vec![backend(d, Some(1))],
                ..Default::default()
            });
        }
    }
    if !input.traffic.is_empty() || rules.is_empty() {
        let filters = mirror
            .iter()
            .map(|(d, p)| HttpRouteFilter {
                type_: "RequestMirror".to_string(),
                request_mirror: Some(RequestMirror {
                    backend_ref: backend(d, None),
                    percent: weight(*p),
                }),
            })
            .collect();
        rules.push(HttpRouteRule {
            name: Some(SPLIT_RULE.to_string()),
            filters,
            backend_refs: input
                .traffic
                .iter()
                .map(|(d, w)| backend(d, weight(*w)))
                .collect(),
            ..Default::default()
        });
    }
    Ok(HttpRoute {
        api_version: HttpRoute::API_VERSION.to_string(),
        kind: HttpRoute::KIND.to_string(),
        metadata: router_meta(endpoint, &input.target.namespace),
        spec: HttpRouteSpec {
            parent_refs: parent_refs(endpoint, &input.target.gateways),
            hostnames: input.target.hostnames.clone(),
            rules,
        },
    })
}

/// Traffic and mirror weights of the HTTPRoute's catch-all rule.
pub fn weights_from_http_route(route: &HttpRoute, endpoint: &str) -> (Weights, Weights) {
    let prefix = format!("{endpoint}-");
    let version = |b: &BackendRef| b.name.strip_prefix(&prefix).map(str::to_string);
    let Some(split) = route
        .spec
        .rules
        .iter()
        .find(|r| r.name.as_deref() == Some(SPLIT_RULE))
    else {
        return (Weights::new(), Weights::new());
    };
    let traffic = split
        .backend_refs
        .iter()
        .filter_map(|b| {
            // CRD default weight is 1 when unspecified.
            let w = b.weight.map_or(1, |w| u32::try_from(w).unwrap_or(0));
            Some((version(b)?, w))
        })
        .collect();
    let mirror = split
        .filters
        .iter()
        .filter_map(|f| f.request_mirror.as_ref())
        .filter_map(|m| {
            let pct = m.percent.map_or(100, |p| u32::try_from(p).unwrap_or(0));
            Some((version(&m.backend_ref)?, pct))
        })
        .collect();
    (traffic, mirror)
}

/// Every version the HTTPRoute names (rules and mirror filters).
pub fn versions_referenced(route: &HttpRoute, endpoint: &str) -> BTreeSet<String> {
    let prefix = format!("{endpoint}-");
    route
        .spec
        .rules
        .iter()
        .flat_map(|r| {
            r.backend_refs.iter().chain(
                r.filters
                    .iter()
                    .filter_map(|f| f.request_mirror.as_ref().map(|m| &m.backend_ref)),
            )
        })
        .filter_map(|b| b.name.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
