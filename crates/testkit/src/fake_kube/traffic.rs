//! Where a request can land, from the stored objects: a model of kube-proxy (a Service reaches
//! every ready pod its selector matches), of an Istio sidecar or gateway (the first VirtualService
//! rule that matches a request without headers, weights, DestinationRule subsets filtering the
//! endpoints of the destination host's Service: [K8S §1]), and of a Gateway API data plane
//! (HTTPRoute bound to a Gateway, or to the Service for GAMMA mesh clients: [K8S §2]).
//! Pods are modelled by each Deployment's template labels (replicas > 0).

use std::collections::BTreeSet;

use serde_json::Value;

use super::FakeKube;

/// Who sends the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// A pod without a sidecar: kube-proxy load-balances over the Service's endpoints.
    NoSidecar,
    /// A pod with an Istio sidecar, or a GAMMA mesh client on Gateway API.
    Mesh,
    /// A request through the ingress gateway (Istio VS `gateways`, or an HTTPRoute parentRef to
    /// a Gateway).
    Gateway,
}

fn arr(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn subset_of(labels: &Value, of: &Value) -> bool {
    labels
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| of.get(k) == Some(v)))
}

impl FakeKube {
    fn all(&self, plural: &str, ns: &str) -> Vec<Value> {
        self.names(plural, ns)
            .iter()
            .filter_map(|n| self.object(plural, ns, n))
            .collect()
    }

    /// Deployments (by name) whose pods a Service selects, narrowed by extra `labels`.
    fn endpoints(&self, ns: &str, service: &str, labels: Option<&Value>) -> BTreeSet<String> {
        let Some(svc) = self.object("services", ns, service) else {
            return BTreeSet::new();
        };
        let selector = svc
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null);
        self.all("deployments", ns)
            .into_iter()
            .filter(|d| {
                d.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    > 0
            })
            .filter(|d| {
                let pod = d
                    .pointer("/spec/template/metadata/labels")
                    .unwrap_or(&Value::Null);
                subset_of(&selector, pod) && labels.is_none_or(|l| subset_of(l, pod))
            })
            .filter_map(|d| d.pointer("/metadata/name")?.as_str().map(str::to_string))
            .collect()
    }

    fn short(ns: &str, host: &str) -> String {
        host.strip_suffix(&format!(".{ns}.svc.cluster.local"))
            .unwrap_or(host)
            .to_string()
    }

    /// The destinations of the first rule without `match` (a request carrying no pin header).
    fn weighted(rules: &[Value], dests: &str) -> Vec<Value> {
        let Some(rule) = rules
            .iter()
            .find(|r| arr(r, "match").is_empty() && arr(r, "matches").is_empty())
        else {
            return Vec::new();
        };
        let all = arr(rule, dests);
        if all.len() == 1 {
            return all; // a single destination gets everything, whatever its weight
        }
        all.into_iter()
            .filter(|d| d.get("weight").and_then(Value::as_i64).unwrap_or(1) > 0)
            .collect()
    }

    fn through_virtual_service(&self, ns: &str, vs: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for d in Self::weighted(&arr(&vs["spec"], "http"), "route") {
            let host = d
                .pointer("/destination/host")
                .and_then(Value::as_str)
                .unwrap_or("");
            let service = Self::short(ns, host);
            let subset = d.pointer("/destination/subset").and_then(Value::as_str);
            let labels = subset.map(|name| {
                self.all("destinationrules", ns)
                    .into_iter()
                    .filter(|dr| dr.pointer("/spec/host").and_then(Value::as_str) == Some(host))
                    .flat_map(|dr| arr(&dr["spec"], "subsets"))
                    .find(|s| s["name"] == name)
                    .map(|s| s["labels"].clone())
                    // A subset no DestinationRule defines: Envoy answers 503 (NR).
                    .unwrap_or(Value::Null)
            });
            if labels.as_ref().is_some_and(Value::is_null) {
                continue;
            }
            out.extend(self.endpoints(ns, &service, labels.as_ref()));
        }
        out
    }

    fn through_http_route(&self, ns: &str, route: &Value) -> BTreeSet<String> {
        Self::weighted(&arr(&route["spec"], "rules"), "backendRefs")
            .iter()
            .filter_map(|b| b["name"].as_str())
            .flat_map(|svc| self.endpoints(ns, svc, None))
            .collect()
    }

    /// Every Deployment a request to Service `service` (by `client`) can reach.
    pub fn reachable(&self, ns: &str, service: &str, client: Client) -> BTreeSet<String> {
        let fqdn = format!("{service}.{ns}.svc.cluster.local");
        let vss = self.all("virtualservices", ns);
        let routes = self.all("httproutes", ns);
        let gateways = |vs: &Value| -> Vec<String> {
            arr(&vs["spec"], "gateways")
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        };
        let parents = |r: &Value, kind: &str| {
            arr(&r["spec"], "parentRefs").iter().any(|p| {
                p.get("kind").and_then(Value::as_str).unwrap_or("Gateway") == kind
                    && (kind != "Service" || p["name"] == service)
            })
        };
        let serves = |vs: &Value| arr(&vs["spec"], "hosts").iter().any(|h| h == fqdn.as_str());
        match client {
            Client::NoSidecar => self.endpoints(ns, service, None),
            Client::Mesh => {
                let vs = vss.iter().find(|vs| {
                    let g = gateways(vs);
                    serves(vs) && (g.is_empty() || g.iter().any(|g| g == "mesh"))
                });
                let gamma = routes.iter().find(|r| parents(r, "Service"));
                match (vs, gamma) {
                    (Some(vs), _) => self.through_virtual_service(ns, vs),
                    (None, Some(r)) => self.through_http_route(ns, r),
                    (None, None) => self.endpoints(ns, service, None),
                }
            }
            Client::Gateway => {
                let vs = vss
                    .iter()
                    .find(|vs| gateways(vs).iter().any(|g| g != "mesh"));
                match (vs, routes.iter().find(|r| parents(r, "Gateway"))) {
                    (Some(vs), _) => self.through_virtual_service(ns, vs),
                    (None, Some(r)) => self.through_http_route(ns, r),
                    (None, None) => BTreeSet::new(),
                }
            }
        }
    }
}
