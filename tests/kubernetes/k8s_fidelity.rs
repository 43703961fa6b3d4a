//! Fidelity of the Kubernetes backend to the API server, through the real binary (`flightdeck
//! validate/plan/apply` with a kubeconfig pointing at the fake): names that fit Kubernetes limits,
//! owned objects read back and repaired, foreign objects refused at plan time, quantities compared
//! as quantities, Istio API version discovery.

use flightdeck_testkit::fake_kube;

use flightdeck_testkit::k8s_cli;

use fake_kube::FakeKube;
use fake_kube::traffic::Client;
use k8s_cli::{code, copy_env, edit, flightdeck, kubeconfig, text};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_name_longer_than_63_characters_is_a_located_validate_error() {
    let fake = FakeKube::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    let env = copy_env("aks-gateway", tmp.path());
    // 31 + 1 + 32 = 64 characters: each name is valid alone, the Service name is not.
    let endpoint = "credit-scoring-regression-model";
    let green = "green-candidate-with-a-long-name";
    edit(
        &env.join("scoring.yml"),
        "name: scoring",
        &format!("name: {endpoint}"),
    );
    edit(&env.join("scoring.yml"), "green: 0", &format!("{green}: 0"));
    edit(
        &env.join("environment.yaml"),
        "  scoring:",
        &format!("  {endpoint}:"),
    );
    for d in ["blue", "green"] {
        let file = env.join(format!("scoring-{d}.yml"));
        edit(
            &file,
            "endpoint_name: scoring",
            &format!("endpoint_name: {endpoint}"),
        );
    }
    edit(
        &env.join("scoring-green.yml"),
        "name: green",
        &format!("name: {green}"),
    );

    for cmd in ["validate", "plan", "apply"] {
        let out = flightdeck(&[cmd, "aks-gateway"], tmp.path(), &kube).await;
        assert_eq!(code(&out), 2, "{cmd}: {}", text(&out));
        let expected = format!(
            "aks-gateway/scoring-green.yml:2:7: deployment `{green}` of endpoint `{endpoint}` \
             would be named `{endpoint}-{green}` on kubernetes, 64 characters"
        );
        assert!(text(&out).contains(&expected), "{cmd}: {}", text(&out));
        assert!(!text(&out).contains("scoring-blue.yml"), "{}", text(&out));
    }
    assert!(
        fake.write_requests().is_empty(),
        "{:?}",
        fake.write_requests()
    );
}

/// A copy of the shipped environment `name`, applied to the fake; returns the environment dir.
async fn applied(fake: &FakeKube, tmp: &std::path::Path, name: &str) -> std::path::PathBuf {
    for d in ["blue", "green"] {
        fake.respond(&format!("scoring-{d}"), 200, r#"{"score": [1.0]}"#);
    }
    let kube = kubeconfig(tmp, &fake.url);
    let env = copy_env(name, tmp);
    let apply = flightdeck(&["apply", name], tmp, &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_the_api_server_rewrites_are_not_a_change() {
    let fake = FakeKube::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    let env = copy_env("aks-gateway", tmp.path());
    for d in ["blue", "green"] {
        let file = env.join(format!("scoring-{d}.yml"));
        edit(&file, "cpu: \"1\"", "cpu: 1000m");
        edit(&file, "memory: 1Gi", "memory: 1024Mi");
    }
    for d in ["blue", "green"] {
        fake.respond(&format!("scoring-{d}"), 200, "{}");
    }
    let apply = flightdeck(&["apply", "aks-gateway"], tmp.path(), &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let stored = fake
        .object("deployments", "models", "scoring-blue")
        .expect("blue");
    let limits = &stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(
        limits["cpu"], "1",
        "the API server rewrites 1000m: {limits}"
    );
    assert_eq!(
        limits["memory"], "1Gi",
        "the API server rewrites 1024Mi: {limits}"
    );

    let writes = fake.writes();
    for cmd in ["plan", "diff", "apply"] {
        let again = flightdeck(&[cmd, "aks-gateway"], tmp.path(), &kube).await;
        assert_eq!(code(&again), 0, "{cmd} after apply: {}", text(&again));
    }
    assert_eq!(
        fake.writes(),
        writes,
        "nothing to write after the first apply"
    );

    // A real change of amount is still a change.
    edit(&env.join("scoring-green.yml"), "cpu: 1000m", "cpu: 1500m");
    let plan = flightdeck(&["plan", "aks-gateway"], tmp.path(), &kube).await;
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan).contains("update green: resources.limits"),
        "{}",
        text(&plan)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_removals_wait_the_propagation_delay_before_deleting() {
    let fake = FakeKube::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = applied(&fake, tmp.path(), "aks-gateway").await;
    let kube = tmp.path().join("kubeconfig");
    std::fs::remove_file(env.join("scoring-green.yml")).expect("rm green");
    edit(&env.join("scoring.yml"), "  green: 0\n", "");
    fake.clear_log();
    let apply = flightdeck(&["apply", "aks-gateway"], tmp.path(), &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let writes = fake.write_requests();
    let route = writes
        .iter()
        .position(|w| w.kind == "httproutes")
        .unwrap_or_else(|| panic!("no route write: {writes:?}"));
    let delete = writes
        .iter()
        .position(|w| w.method == "DELETE" && w.kind == "deployments")
        .unwrap_or_else(|| panic!("no delete: {writes:?}"));
    assert!(route < delete, "route drops green before it is deleted");
    let routed = &writes[route].body["spec"]["rules"];
    assert!(!routed.to_string().contains("scoring-green"), "{routed}");
    // FLIGHTDECK_K8S_MAKE_BEFORE_BREAK=30ms in k8s_cli::flightdeck: a lower bound, never flaky.
    let gap = writes[delete].at - writes[route].at;
    assert!(
        gap >= std::time::Duration::from_millis(30),
        "waited only {gap:?}"
    );
    assert!(fake.object("services", "models", "scoring-green").is_none());
}

fn steps(plan: &std::process::Output) -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json plan");
    doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (field("action"), field("reason"))
        })
        .collect()
}

async fn a_deleted_or_changed_owned_object_is_planned_and_repaired(env: &str) {
    let fake = FakeKube::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    applied(&fake, tmp.path(), env).await;
    let kube = tmp.path().join("kubeconfig");
    let dir = tmp.path();
    // Another client deletes blue's Service (the router still names it) and widens the
    // umbrella Service's selector to every version.
    fake.delete("services", "models", "scoring-blue");
    fake.patch(
        "services",
        "models",
        "scoring",
        json!({"spec": {"selector": {"flightdeck.io/deployment": null}}}),
        "kubectl-patch",
    );
    if env == "aks-istio" {
        fake.patch(
            "destinationrules",
            "models",
            "scoring",
            json!({"spec": {"subsets": [{"name": "green", "labels": {"flightdeck.io/deployment": "green"}}]}}),
            "kubectl-patch",
        );
    }
    let plan = flightdeck(&["plan", env, "--output", "json"], dir, &kube).await;
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    let steps = steps(&plan);
    assert_eq!(steps.len(), 1, "{steps:?}");
    let (action, reason) = &steps[0];
    assert_eq!(action, "repair_endpoint");
    assert!(
        reason.contains("Service scoring-blue is missing"),
        "{reason}"
    );
    assert!(
        reason.contains(
            "Service scoring selects {flightdeck.io/endpoint=scoring}, expected \
             {flightdeck.io/deployment=blue,flightdeck.io/endpoint=scoring}"
        ),
        "{reason}"
    );
    if env == "aks-istio" {
        assert!(
            reason.contains("DestinationRule scoring has no subset blue"),
            "{reason}"
        );
    }

    fake.clear_log();
    let apply = flightdeck(&["apply", env], dir, &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let writes = fake.write_requests();
    let at = |kind: &str, name: &str| {
        writes
            .iter()
            .position(|w| w.kind == kind && w.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no write of {kind} {name}: {writes:?}"))
    };
    let router = if env == "aks-istio" {
        "virtualservices"
    } else {
        "httproutes"
    };
    assert!(
        at("services", "scoring-blue") < at(router, "scoring"),
        "{writes:?}"
    );
    if env == "aks-istio" {
        assert!(
            at("destinationrules", "scoring") < at(router, "scoring"),
            "{writes:?}"
        );
    }
    assert!(fake.object("services", "models", "scoring-blue").is_some());
    if env == "aks-istio" {
        // (The make-before-break checker saw the injected drift itself, so it is not asked.)
        let dr = fake
            .object("destinationrules", "models", "scoring")
            .expect("dr");
        assert!(
            dr["spec"]["subsets"].to_string().contains("\"blue\""),
            "{dr}"
        );
    }
    assert_eq!(
        reach(&fake, Client::NoSidecar),
        ["scoring-blue"],
        "the umbrella selects blue again"
    );
    for cmd in ["plan", "diff"] {
        let again = flightdeck(&[cmd, env], dir, &kube).await;
        assert_eq!(code(&again), 0, "{cmd} after repair: {}", text(&again));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_changed_owned_object_is_repaired_before_routing_on_gateway_api() {
    a_deleted_or_changed_owned_object_is_planned_and_repaired("aks-gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_changed_owned_object_is_repaired_before_routing_on_istio() {
    a_deleted_or_changed_owned_object_is_planned_and_repaired("aks-istio").await;
}

async fn a_foreign_router_object_is_refused_at_plan_time(env: &str, plural: &str, body: Value) {
    let fake = FakeKube::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    copy_env(env, tmp.path());
    fake.seed(plural, "models", body, "helm");
    fake.clear_log();
    for cmd in ["plan", "apply"] {
        let out = flightdeck(&[cmd, env], tmp.path(), &kube).await;
        assert_eq!(code(&out), 2, "{cmd}: {}", text(&out));
        let kind = if plural == "httproutes" {
            "HTTPRoute"
        } else {
            "VirtualService"
        };
        assert!(
            text(&out).contains(&format!(
                "refused: endpoint scoring: {kind} scoring exists without the label \
                 app.kubernetes.io/managed-by=flightdeck"
            )),
            "{cmd}: {}",
            text(&out)
        );
    }
    assert!(
        fake.write_requests().is_empty(),
        "{:?}",
        fake.write_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_virtual_service_is_refused_before_any_write() {
    let body = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "scoring"},
        "spec": {"hosts": ["scoring"], "http": [{"route": [{"destination": {"host": "other"}}]}]}});
    a_foreign_router_object_is_refused_at_plan_time("aks-istio", "virtualservices", body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_http_route_is_refused_before_any_write() {
    let body = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "scoring", "labels": {"app.kubernetes.io/managed-by": "helm"}},
        "spec": {"parentRefs": [{"name": "public-gw"}],
                 "rules": [{"backendRefs": [{"name": "other", "port": 80}]}]}});
    a_foreign_router_object_is_refused_at_plan_time("aks-gateway", "httproutes", body).await;
}

/// What each kind of client reaches through the umbrella Service `scoring`.
fn reach(fake: &FakeKube, client: Client) -> Vec<String> {
    fake.reachable("models", "scoring", client)
        .into_iter()
        .collect()
}

async fn no_client_reaches_a_version_at_zero_percent(env: &str) {
    let fake = FakeKube::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let env_dir = applied(&fake, tmp.path(), env).await;
    let kube = tmp.path().join("kubeconfig");
    let clients: &[Client] = if env == "aks-gateway" {
        &[Client::NoSidecar, Client::Mesh, Client::Gateway]
    } else {
        &[Client::NoSidecar, Client::Mesh]
    };
    let blue = vec!["scoring-blue".to_string()];
    let both = vec!["scoring-blue".to_string(), "scoring-green".to_string()];
    let green = vec!["scoring-green".to_string()];
    // Each stage: the split, then what a client that honours weights and one that cannot reach.
    let stages = [
        ("blue: 100\n  green: 0", &blue, &blue),
        ("blue: 90\n  green: 10", &both, &blue),
        ("blue: 10\n  green: 90", &both, &green),
        ("blue: 0\n  green: 100", &green, &green),
    ];
    let mut current = "blue: 100\n  green: 0";
    for (split, weighted, plain) in stages {
        edit(&env_dir.join("scoring.yml"), current, split);
        current = split;
        let apply = flightdeck(&["apply", env], tmp.path(), &kube).await;
        assert_eq!(code(&apply), 0, "{split}: {}", text(&apply));
        for client in clients {
            let want = if *client == Client::NoSidecar {
                plain
            } else {
                weighted
            };
            // Gateway API with a Gateway parent: mesh clients have no GAMMA route and go
            // through kube-proxy, like a client without a sidecar.
            let want = if env == "aks-gateway" && *client == Client::Mesh {
                plain
            } else {
                want
            };
            assert_eq!(&reach(&fake, *client), want, "{env} {split:?} {client:?}");
        }
        assert!(
            fake.mbb_violations().is_empty(),
            "{:?}",
            fake.mbb_violations()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_reaches_a_version_at_zero_percent_on_gateway_api() {
    no_client_reaches_a_version_at_zero_percent("aks-gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_reaches_a_version_at_zero_percent_on_istio() {
    no_client_reaches_a_version_at_zero_percent("aks-istio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istio_without_v1_is_driven_through_v1beta1() {
    let fake = FakeKube::start().await;
    fake.serve_istio(&["v1beta1", "v1alpha3"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    applied(&fake, tmp.path(), "aks-istio").await;
    let vs = fake
        .object("virtualservices", "models", "scoring")
        .expect("vs");
    assert_eq!(vs["apiVersion"], "networking.istio.io/v1beta1");
    let istio: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("networking.istio.io/"))
        .map(|r| r.path)
        .collect();
    assert!(!istio.is_empty());
    assert!(
        istio
            .iter()
            .all(|p| p.starts_with("/apis/networking.istio.io/v1beta1/")),
        "{istio:?}"
    );
    let kube = tmp.path().join("kubeconfig");
    let again = flightdeck(&["plan", "aks-istio"], tmp.path(), &kube).await;
    assert_eq!(code(&again), 0, "{}", text(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_istio_is_named_in_the_error() {
    let fake = FakeKube::start().await;
    fake.serve_istio(&[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    copy_env("aks-istio", tmp.path());
    for cmd in ["plan", "apply"] {
        let out = flightdeck(&[cmd, "aks-istio"], tmp.path(), &kube).await;
        assert_eq!(code(&out), 2, "{cmd}: {}", text(&out));
        assert!(
            text(&out).contains(
                "VirtualService is not served by this cluster: install Istio or use router: \
                 gateway-api"
            ),
            "{cmd}: {}",
            text(&out)
        );
    }
    assert!(
        fake.write_requests().is_empty(),
        "{:?}",
        fake.write_requests()
    );
}
