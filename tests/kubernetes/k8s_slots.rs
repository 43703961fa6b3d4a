//! Blue/green slots on the Kubernetes backend: the real binary against the fake API server
//! (Istio), two releases of one template (an image bump) alternating blue → green, the old slot
//! deleted once green holds all traffic (`after_swap: delete`).

use flightdeck_testkit::fake_kube::FakeKube;
use flightdeck_testkit::k8s_cli::{code, copy_env, flightdeck, kubeconfig, text};

const TEMPLATE: &str = "name: model\nendpoint_name: scoring\nimage: ghcr.io/example/scoring-server:IMAGE\nport: 8080\ninstance_count: 1\nreadiness_probe:\n  path: /ready\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_alternate_on_kubernetes_and_the_old_slot_is_deleted_after_the_swap() {
    let fake = FakeKube::start().await;
    for d in ["blue", "green"] {
        fake.respond(&format!("scoring-{d}"), 200, r#"{"score": [1.0]}"#);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let kube = kubeconfig(tmp.path(), &fake.url);
    let env_dir = copy_env("aks-istio", tmp.path());
    let dir = tmp.path();
    for f in ["scoring-blue.yml", "scoring-green.yml"] {
        std::fs::remove_file(env_dir.join(f)).unwrap();
    }
    std::fs::write(env_dir.join("scoring.yml"), "name: scoring\n").unwrap();
    let env_yaml = std::fs::read_to_string(env_dir.join("environment.yaml")).unwrap();
    std::fs::write(
        env_dir.join("environment.yaml"),
        format!("{env_yaml}slots:\n  scoring:\n    names: [blue, green]\n    template: scoring-model.yml\n    after_swap: delete\n"),
    )
    .unwrap();
    let release = |image: &str| {
        std::fs::write(
            env_dir.join("scoring-model.yml"),
            TEMPLATE.replace("IMAGE", image),
        )
        .unwrap()
    };
    let image_of = |slot: &str| {
        fake.object("deployments", "models", &format!("scoring-{slot}"))
            .map(|d| d["spec"]["template"]["spec"]["containers"][0]["image"].clone())
    };

    release("1.5.0");
    let apply = flightdeck(&["apply", "aks-istio"], dir, &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("note: scoring: slot blue gets the template"),
        "{}",
        text(&apply)
    );
    assert_eq!(
        image_of("blue").unwrap(),
        "ghcr.io/example/scoring-server:1.5.0"
    );

    release("1.6.0");
    let plan = flightdeck(&["plan", "aks-istio"], dir, &kube).await;
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan).contains("slot green (idle, not live) gets the template; blue keeps serving until the swap; then blue is deleted (after_swap: delete)"),
        "{}",
        text(&plan)
    );
    let apply = flightdeck(&["apply", "aks-istio"], dir, &kube).await;
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(
        image_of("green").unwrap(),
        "ghcr.io/example/scoring-server:1.6.0"
    );
    assert!(image_of("blue").is_none(), "blue deleted after the swap");
    assert!(fake.invalid().is_empty(), "{:?}", fake.invalid());
    for cmd in ["plan", "diff"] {
        let again = flightdeck(&[cmd, "aks-istio"], dir, &kube).await;
        assert_eq!(code(&again), 0, "{cmd} after the swap: {}", text(&again));
    }
}
