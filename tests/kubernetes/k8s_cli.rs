//! `flightdeck plan`, `diff` and `apply` through the real binary against a Kubernetes
//! environment: a kubeconfig points at the fake API server, and the exit codes follow 0/1/2.

use flightdeck_testkit::fake_kube;

use flightdeck_testkit::k8s_cli;

use fake_kube::FakeKube;
use k8s_cli::{code, copy_env, flightdeck, kubeconfig, text};

async fn shipped_environment_rolls_out_with_exit_codes(env: &str) {
    let fake = FakeKube::start().await;
    for d in ["blue", "green"] {
        fake.respond(&format!("scoring-{d}"), 200, r#"{"score": [1.0]}"#);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    let env_dir = copy_env(env, tmp.path());
    let dir = tmp.path();

    let plan = flightdeck(&["plan", env], dir, &kube).await;
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    let apply = flightdeck(&["apply", env], dir, &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
    for cmd in ["plan", "diff"] {
        let again = flightdeck(&[cmd, env], dir, &kube).await;
        assert_eq!(code(&again), 0, "{cmd} after apply: {}", text(&again));
    }
    assert!(
        fake.object("deployments", "models", "scoring-green")
            .is_some()
    );

    let endpoint = env_dir.join("scoring.yml");
    let yaml = std::fs::read_to_string(&endpoint).expect("read");
    std::fs::write(
        &endpoint,
        yaml.replace("blue: 100\n  green: 0", "blue: 90\n  green: 10"),
    )
    .expect("write");
    let flight = flightdeck(&["plan", env, "--output", "json"], dir, &kube).await;
    assert_eq!(code(&flight), 1, "{}", text(&flight));
    let doc: serde_json::Value = serde_json::from_slice(&flight.stdout).expect("json plan");
    let actions: Vec<&str> = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["test_deployment", "set_traffic"], "{doc:#}");
    assert_eq!(code(&flightdeck(&["diff", env], dir, &kube).await), 1);

    std::fs::write(
        env_dir.join("broken.yml"),
        "name: scoring\ntraffic: {blue: 50}\n",
    )
    .expect("write");
    let bad = flightdeck(&["plan", env], dir, &kube).await;
    assert_eq!(code(&bad), 2, "{}", text(&bad));
    assert!(text(&bad).contains("broken.yml:"), "{}", text(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_diff_and_apply_against_istio_exit_0_1_2() {
    shipped_environment_rolls_out_with_exit_codes("aks-istio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_diff_and_apply_against_gateway_api_exit_0_1_2() {
    shipped_environment_rolls_out_with_exit_codes("aks-gateway").await;
}
