//! The REST/JSON surface of the fake API server: path routing, GET/LIST/watch, POST, PUT, PATCH
//! (apply and merge), DELETE, and the service proxy.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::Shared;
use super::store::{Event, Failure, Kind, failure, kind_for, selector_matches};

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Resource plural (`deployments`, `virtualservices`, ...) or `proxy`.
    pub kind: String,
    pub name: Option<String>,
    pub body: Value,
    /// When the request arrived (for make-before-break delay assertions).
    pub at: std::time::Instant,
}

impl Logged {
    /// Whether the request could change state (apply, create, update, patch, delete).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") && self.kind != "proxy"
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

fn fail(f: Failure) -> Response {
    json_response(f.code, &f.body)
}

enum Target {
    Collection {
        kind: Kind,
        ns: String,
    },
    Object {
        kind: Kind,
        ns: String,
        name: String,
    },
    Proxy {
        ns: String,
        service: String,
        port: Option<String>,
        rest: String,
    },
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, "services", svc, "proxy", tail @ ..] if group.is_empty() => {
            let (service, port) = match svc.split_once(':') {
                Some((s, p)) => (s.to_string(), Some(p.to_string())),
                None => (svc.to_string(), None),
            };
            Some(Target::Proxy {
                ns: ns.to_string(),
                service,
                port,
                rest: format!("/{}", tail.join("/")),
            })
        }
        ["namespaces", ns, plural] => Some(Target::Collection {
            kind: kind_for(group, version, plural)?,
            ns: ns.to_string(),
        }),
        ["namespaces", ns, plural, name] => Some(Target::Object {
            kind: kind_for(group, version, plural)?,
            ns: ns.to_string(),
            name: name.to_string(),
        }),
        _ => None,
    }
}

fn query_map(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Failure> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let yaml = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("yaml"));
    let parsed = if yaml {
        // YAML (kube sends JSON, which is YAML too), read with the product's located loader.
        std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|text| match flightdeck::spec::yaml::parse(text) {
                (root, errors) if errors.is_empty() => Ok(root
                    .map(|r| flightdeck::spec::yaml::to_json(&r))
                    .unwrap_or(Value::Null)),
                (_, errors) => Err(format!("{errors:?}")),
            })
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| failure(400, "BadRequest", format!("cannot parse body: {e}")))
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let q = query_map(&uri);
    let target = parse_path(&path);
    let parsed = parse_body(&headers, &body);
    let (kind, name) = match &target {
        Some(Target::Collection { kind, .. }) => (kind.plural.to_string(), None),
        Some(Target::Object { kind, name, .. }) => (kind.plural.to_string(), Some(name.clone())),
        Some(Target::Proxy { service, .. }) => ("proxy".to_string(), Some(service.clone())),
        None => ("unknown".to_string(), None),
    };
    shared.log.lock().unwrap().push(Logged {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        kind,
        name,
        body: match &parsed {
            Ok(v) => v.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        },
        at: std::time::Instant::now(),
    });
    if method == Method::GET
        && let Some(doc) = discovery(&shared, &path)
    {
        return doc;
    }
    let istio = shared.istio_versions.lock().unwrap().clone();
    let served = |k: &Kind| k.group != super::store::ISTIO_GROUP || istio.contains(&k.version);
    let target = target.filter(|t| match t {
        Target::Collection { kind, .. } | Target::Object { kind, .. } => served(kind),
        Target::Proxy { .. } => true,
    });
    let Some(target) = target else {
        return fail(failure(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        ));
    };
    let body = match parsed {
        Ok(b) => b,
        Err(f) => return fail(f),
    };
    if matches!(&target, Target::Collection { kind, .. } | Target::Object { kind, .. } if kind.plural == "leases")
        && matches!(method, Method::POST | Method::PUT)
    {
        let holder = body
            .pointer("/spec/holderIdentity")
            .and_then(Value::as_str)
            .unwrap_or("");
        let delay = shared.lease_delays.lock().unwrap().get(holder).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
    let manager = param(&q, "fieldManager").unwrap_or("unknown").to_string();
    let result = match (&method, target) {
        (
            _,
            Target::Proxy {
                ns,
                service,
                port,
                rest,
            },
        ) => return proxy(&shared, &ns, &service, port, &rest, body),
        (&Method::GET, Target::Collection { kind, ns }) => {
            if matches!(param(&q, "watch"), Some("true" | "1")) {
                return watch(&shared, kind, &ns, &q);
            }
            list(&shared, kind, &ns, &q)
        }
        (&Method::GET, Target::Object { kind, ns, name }) => {
            let store = shared.store.lock().unwrap();
            match store.get(kind, &ns, &name) {
                Some(s) => Ok(store.render(s)),
                None => Err(failure(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", kind.qualified()),
                )),
            }
        }
        (&Method::POST, Target::Collection { kind, ns }) => shared
            .store
            .lock()
            .unwrap()
            .create(kind, &ns, body, &manager),
        (&Method::PUT, Target::Object { kind, ns, name }) => shared
            .store
            .lock()
            .unwrap()
            .replace(kind, &ns, &name, body, &manager),
        (&Method::PATCH, Target::Object { kind, ns, name }) => {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match content_type {
                "application/apply-patch+yaml" => match param(&q, "fieldManager") {
                    // [K8S §4]: fieldManager is required for apply.
                    None => Err(failure(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into())),
                    Some(m) => {
                        let force = param(&q, "force") == Some("true");
                        shared.store.lock().unwrap().apply(kind, &ns, &name, body, m, force)
                    }
                },
                "application/merge-patch+json" => shared.store.lock().unwrap().merge_patch(kind, &ns, &name, body, &manager),
                other => Err(failure(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml, application/merge-patch+json (got {other})"))),
            }
        }
        (&Method::DELETE, Target::Object { kind, ns, name }) => {
            shared.store.lock().unwrap().delete(kind, &ns, &name)
        }
        (m, _) => Err(failure(
            405,
            "MethodNotAllowed",
            format!("method {m} not allowed on {path}"),
        )),
    };
    match result {
        Ok(v) => {
            if matches!(
                method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ) {
                shared.check_make_before_break();
            }
            let code = if method == Method::POST { 201 } else { 200 };
            json_response(code, &v)
        }
        Err(f) => {
            if f.code == 422 {
                shared
                    .invalid
                    .lock()
                    .unwrap()
                    .push(f.body["message"].as_str().unwrap_or_default().to_string());
            }
            fail(f)
        }
    }
}

/// API discovery: `GET /apis` (APIGroupList) and `GET /apis/GROUP` (APIGroup), listing the
/// served versions, the first preferred.
fn discovery(shared: &Shared, path: &str) -> Option<Response> {
    let istio = shared.istio_versions.lock().unwrap().clone();
    let mut groups = vec![
        ("apps", vec!["v1"]),
        ("gateway.networking.k8s.io", vec!["v1", "v1beta1"]),
    ];
    if !istio.is_empty() {
        groups.push((super::store::ISTIO_GROUP, istio));
    }
    let group = |(name, versions): &(&str, Vec<&str>)| {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": name,
               "versions": versions, "preferredVersion": versions[0]})
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed == "/apis" {
        let all: Vec<Value> = groups.iter().map(group).collect();
        return Some(json_response(
            200,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": all}),
        ));
    }
    let name = trimmed.strip_prefix("/apis/")?;
    if name.contains('/') {
        return None;
    }
    Some(match groups.iter().find(|(g, _)| *g == name) {
        Some(g) => json_response(200, &group(g)),
        None => fail(failure(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )),
    })
}

fn list(shared: &Shared, kind: Kind, ns: &str, q: &[(String, String)]) -> Result<Value, Failure> {
    let store = shared.store.lock().unwrap();
    let selector = param(q, "labelSelector").unwrap_or("");
    let matching: Vec<Value> = store
        .objects
        .iter()
        .filter(|((plural, n, _), s)| {
            *plural == kind.plural && n == ns && selector_matches(selector, &s.object)
        })
        .map(|(_, s)| store.render(s))
        .collect();
    let start = match param(q, "continue") {
        None | Some("") => 0,
        Some(token) => {
            let (rv, offset) = token
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)))
                .ok_or_else(|| failure(400, "BadRequest", "invalid continue token".into()))?;
            if rv < store.floor {
                return Err(failure(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into()));
            }
            offset
        }
    };
    let limit = param(q, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let end = limit.map_or(matching.len(), |l| (start + l).min(matching.len()));
    let items: Vec<Value> = matching.get(start..end).unwrap_or(&[]).to_vec();
    let mut metadata = json!({"resourceVersion": store.rv.to_string()});
    if end < matching.len() {
        metadata["continue"] = json!(format!("{}:{end}", store.rv));
        metadata["remainingItemCount"] = json!(matching.len() - end);
    }
    Ok(
        json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
              "metadata": metadata, "items": items}),
    )
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    Bytes::from(format!(
        "{}\n",
        json!({"type": event_type, "object": object})
    ))
}

/// `?watch=true`: replays history newer than `resourceVersion`, then streams live events until
/// `timeoutSeconds`. Too old a resourceVersion gets the in-stream 410 Expired ERROR event
/// ([K8S §4] Watch).
fn watch(shared: &Shared, kind: Kind, ns: &str, q: &[(String, String)]) -> Response {
    let selector = param(q, "labelSelector").unwrap_or("").to_string();
    let timeout = Duration::from_secs(
        param(q, "timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(290),
    );
    let store = shared.store.lock().unwrap();
    let ns = ns.to_string();
    let wanted = {
        let (ns, selector) = (ns.clone(), selector.clone());
        move |e: &Event| {
            e.kind == kind && e.namespace == ns && selector_matches(&selector, &e.object)
        }
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let since = match param(q, "resourceVersion") {
        None | Some("") | Some("0") => {
            // No RV: synthetic ADDED for what exists now, then changes.
            for ((plural, n, _), s) in &store.objects {
                if *plural == kind.plural && *n == ns && selector_matches(&selector, &s.object) {
                    initial.push(event_line("ADDED", &store.render(s)));
                }
            }
            store.rv
        }
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) if rv < store.floor => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {rv} ({})", store.floor),
                    "reason": "Expired", "code": 410});
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::from(event_line("ERROR", &status)))
                    .expect("valid response");
            }
            Ok(rv) => {
                for e in store.history.iter().filter(|e| e.rv > rv && wanted(e)) {
                    initial.push(event_line(e.event_type, &e.object));
                }
                store.rv
            }
            Err(_) => {
                return fail(failure(
                    400,
                    "BadRequest",
                    format!("invalid resourceVersion {rv:?}"),
                ));
            }
        },
    };
    let rx = store.events.subscribe();
    drop(store);
    let deadline = tokio::time::Instant::now() + timeout;
    let live = futures::stream::unfold((rx, wanted), move |(mut rx, wanted)| async move {
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(e)) if e.rv > since && wanted(&e) => {
                    return Some((
                        Ok::<Bytes, Infallible>(event_line(e.event_type, &e.object)),
                        (rx, wanted),
                    ));
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    continue;
                }
                _ => return None,
            }
        }
    });
    let stream = futures::StreamExt::chain(
        futures::stream::iter(initial.into_iter().map(Ok::<Bytes, Infallible>)),
        live,
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

fn proxy(
    shared: &Shared,
    ns: &str,
    service: &str,
    port: Option<String>,
    rest: &str,
    body: Value,
) -> Response {
    let services = super::store::KINDS[1];
    {
        let store = shared.store.lock().unwrap();
        let Some(svc) = store.get(services, ns, service) else {
            return fail(failure(
                404,
                "NotFound",
                format!("services \"{service}\" not found"),
            ));
        };
        let ports: Vec<&Value> = svc
            .object
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if let Some(p) = &port
            && !ports.iter().any(|sp| {
                sp["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(p.as_str())
                    || sp["name"].as_str() == Some(p.as_str())
            })
        {
            return fail(failure(
                503,
                "ServiceUnavailable",
                format!("no endpoints available for service \"{service}:{p}\""),
            ));
        }
    }
    shared
        .proxied
        .lock()
        .unwrap()
        .push((service.to_string(), rest.to_string(), body));
    match shared.responders.lock().unwrap().get(service) {
        Some((code, text)) => Response::builder()
            .status(*code)
            .header("content-type", "application/json")
            .body(Body::from(text.clone()))
            .expect("valid response"),
        None => fail(failure(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service \"{service}\""),
        )),
    }
}
