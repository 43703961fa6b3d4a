//! Fidelity of the Kubernetes backend to the API server, through the real binary (`flightdeck
//! validate/plan/apply` with a kubeconfig pointing at the fake): names that fit Kubernetes limits,
//! owned objects read back and repaired, foreign objects refused at plan time, quantities compared
//! as quantities, Istio API version discovery.

#[path = "support/fake_kube/mod.rs"]
mod fake_kube;

#[path = "support/k8s_cli.rs"]
mod k8s_cli;

use fake_kube::FakeKube;
use k8s_cli::{code, copy_env, edit, flightdeck, kubeconfig, text};

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
