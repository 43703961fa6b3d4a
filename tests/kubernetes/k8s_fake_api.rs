//! The fake API server itself speaks the protocol the backend relies on ([K8S §2]–§4), so
//! the backend tests that use it mean something.

use flightdeck_testkit::fake_kube;

use fake_kube::FakeKube;
use serde_json::{Value, json};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ml/deployments";

fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "m", "image": image}]}}}})
}

async fn send(
    method: reqwest::Method,
    url: String,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let res = reqwest::Client::new()
        .request(method, url)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn apply(fake: &FakeKube, path: &str, query: &str, body: Value) -> (u16, Value) {
    send(
        reqwest::Method::PATCH,
        format!("{}{path}?{query}", fake.url),
        "application/apply-patch+yaml",
        body,
    )
    .await
}

async fn get(fake: &FakeKube, path: &str) -> (u16, Value) {
    send(
        reqwest::Method::GET,
        format!("{}{path}", fake.url),
        "application/json",
        Value::Null,
    )
    .await
}

#[tokio::test]
async fn apply_conflicts_carry_the_other_manager_verbatim_and_force_takes_over() {
    let fake = FakeKube::start().await;
    let path = format!("{DEPLOYMENTS}/web");
    let (code, _) = apply(&fake, &path, "fieldManager=helm", deployment("web", 1, "a")).await;
    assert_eq!(code, 200);
    let (code, _) = apply(&fake, &path, "", deployment("web", 2, "a")).await;
    assert_eq!(code, 400, "fieldManager is required for apply");

    let (code, body) = apply(
        &fake,
        &path,
        "fieldManager=flightdeck",
        deployment("web", 2, "a"),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Apply failed with 1 conflict: conflict with \"helm\" using apps/v1: .spec.replicas",
               "reason": "Conflict",
               "details": {"causes": [{"reason": "FieldManagerConflict",
                                       "message": "conflict with \"helm\" using apps/v1",
                                       "field": ".spec.replicas"}]},
               "code": 409})
    );
    // Same values are shared, not a conflict; force takes the field over.
    let (code, body) = apply(
        &fake,
        &path,
        "&force=true&fieldManager=flightdeck",
        deployment("web", 2, "a"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["spec"]["replicas"], 2);
    let managers: Vec<&str> = body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"flightdeck"));
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_and_identical_applies_are_not_writes() {
    let fake = FakeKube::start().await;
    // Keep the controller's status writes out of the resourceVersion comparison.
    fake.script("web", fake_kube::Script::Hold);
    let path = format!("{DEPLOYMENTS}/web");
    let (_, first) = apply(&fake, &path, "fieldManager=m", deployment("web", 1, "a")).await;
    assert_eq!(first["metadata"]["generation"], 1);
    let writes = fake.writes();
    let (_, same) = apply(&fake, &path, "fieldManager=m", deployment("web", 1, "a")).await;
    assert_eq!(
        same["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    assert_eq!(fake.writes(), writes);
    let (_, changed) = apply(&fake, &path, "fieldManager=m", deployment("web", 1, "b")).await;
    assert_eq!(changed["metadata"]["generation"], 2);
    assert_ne!(
        changed["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    // Labels only: no generation bump.
    let mut relabelled = deployment("web", 1, "b");
    relabelled["metadata"]["labels"]["tier"] = json!("x");
    let (_, relabelled) = apply(&fake, &path, "fieldManager=m", relabelled).await;
    assert_eq!(relabelled["metadata"]["generation"], 2);
}

#[tokio::test]
async fn put_with_a_stale_resource_version_is_a_conflict() {
    let fake = FakeKube::start().await;
    fake.script("web", fake_kube::Script::Hold);
    let (code, created) = send(
        reqwest::Method::POST,
        format!("{}{DEPLOYMENTS}", fake.url),
        "application/json",
        deployment("web", 1, "a"),
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = send(
        reqwest::Method::POST,
        format!("{}{DEPLOYMENTS}", fake.url),
        "application/json",
        deployment("web", 1, "a"),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let mut update = deployment("web", 3, "a");
    update["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let url = format!("{}{DEPLOYMENTS}/web", fake.url);
    let (code, _) = send(
        reqwest::Method::PUT,
        url.clone(),
        "application/json",
        update.clone(),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = send(reqwest::Method::PUT, url, "application/json", update).await;
    assert_eq!(code, 409);
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn lists_filter_by_label_and_page_with_continue_tokens_that_expire() {
    let fake = FakeKube::start().await;
    for (i, app) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let mut d = deployment(&format!("web-{i}"), 1, "x");
        d["metadata"]["labels"]["tier"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        d["metadata"]["labels"]["letter"] = json!(app);
        fake.seed("deployments", "ml", d, "kubectl");
    }
    let (_, page) = get(
        &fake,
        &format!("{DEPLOYMENTS}?labelSelector=tier%3Deven&limit=2"),
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, rest) = get(
        &fake,
        &format!("{DEPLOYMENTS}?labelSelector=tier%3Deven&limit=2&continue={token}"),
    )
    .await;
    let names: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-4"]);
    assert!(rest["metadata"].get("continue").is_none());
    let (_, both) = get(
        &fake,
        &format!("{DEPLOYMENTS}?labelSelector=tier%3Dodd,letter%3Db"),
    )
    .await;
    assert_eq!(both["items"].as_array().unwrap().len(), 1);

    fake.seed("deployments", "ml", deployment("late", 1, "x"), "kubectl");
    fake.compact();
    let (code, body) = get(&fake, &format!("{DEPLOYMENTS}?limit=2&continue={token}")).await;
    assert_eq!((code, body["reason"].as_str()), (410, Some("Expired")));
}

#[tokio::test]
async fn watches_stream_added_modified_deleted_and_expire_old_versions() {
    let fake = FakeKube::start().await;
    let (_, list) = get(&fake, DEPLOYMENTS).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("{DEPLOYMENTS}/web");
    apply(&fake, &path, "fieldManager=m", deployment("web", 1, "a")).await;
    apply(&fake, &path, "fieldManager=m", deployment("web", 1, "b")).await;
    send(
        reqwest::Method::DELETE,
        format!("{}{path}", fake.url),
        "application/json",
        Value::Null,
    )
    .await;
    let (code, stream) = get(
        &fake,
        &format!("{DEPLOYMENTS}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
    )
    .await;
    assert_eq!(code, 200);
    let text = stream.as_str().unwrap_or_else(|| panic!("{stream}"));
    let types: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap_or_else(|| panic!("{l}"))
                .to_string()
        })
        .collect();
    // The controller may add status MODIFIED events between ours.
    assert_eq!(types.first().map(String::as_str), Some("ADDED"));
    assert!(types.iter().any(|t| t == "MODIFIED"));
    assert_eq!(types.last().map(String::as_str), Some("DELETED"));

    fake.compact();
    // A single-line stream: `send` already parsed it.
    let (_, event) = get(
        &fake,
        &format!("{DEPLOYMENTS}?watch=true&resourceVersion={rv}"),
    )
    .await;
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
}

#[tokio::test]
async fn crd_objects_are_validated_against_the_schema_and_cel_rules() {
    let fake = FakeKube::start().await;
    let routes = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/r";
    let route = |backend: Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "r"}, "spec": {"rules": [{"backendRefs": [backend]}]}})
    };
    let (code, body) = apply(
        &fake,
        routes,
        "fieldManager=t",
        route(json!({"name": "svc", "weight": 1})),
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Must have port for Service reference")
    );
    let (code, _) = apply(
        &fake,
        routes,
        "fieldManager=t",
        route(json!({"name": "svc", "port": 80, "weight": 2_000_000})),
    )
    .await;
    assert_eq!(code, 422, "weight above 1,000,000 (schema maximum)");
    let (code, _) = apply(
        &fake,
        routes,
        "fieldManager=t",
        route(json!({"name": "svc", "port": 80, "weight": 0})),
    )
    .await;
    assert_eq!(code, 422, "all-zero weights");
    let (code, _) = apply(
        &fake,
        routes,
        "fieldManager=t",
        route(json!({"name": "svc", "port": 80, "weight": 1})),
    )
    .await;
    assert_eq!(code, 200);

    let vs_path = "/apis/networking.istio.io/v1/namespaces/ml/virtualservices/v";
    let vs = |weight: Value| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v"},
               "spec": {"hosts": ["h"], "http": [{"route": [
                   {"destination": {"host": "h", "subset": "a"}, "weight": weight},
                   {"destination": {"host": "h", "subset": "b"}, "weight": 50}]}]}})
    };
    let (code, _) = apply(&fake, vs_path, "fieldManager=t", vs(json!("fifty"))).await;
    assert_eq!(code, 422, "weight must be an integer (schema)");
    let (code, _) = apply(&fake, vs_path, "fieldManager=t", vs(json!(-50))).await;
    assert_eq!(code, 422, "negative weight");
    let (code, _) = apply(&fake, vs_path, "fieldManager=t", vs(json!(50))).await;
    assert_eq!(code, 200);
    assert_eq!(fake.invalid().len(), 5);
    // The VS names subsets no DestinationRule defines: recorded as a make-before-break violation.
    assert_eq!(fake.mbb_violations().len(), 2);
}
