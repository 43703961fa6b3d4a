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
