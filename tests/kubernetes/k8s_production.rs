//! The production pod settings of a Kubernetes deployment (issue #14), through the real binary
//! against the fake API server (which decodes the Deployment, HPA and PDB bodies strictly against
//! their Kubernetes schema): each is written, read back as live state (no change after apply),
//! found as drift when changed in the cluster, and put back by the next apply.

use serde_json::{Value, json};

use flightdeck_testkit::fake_kube::FakeKube;
use flightdeck_testkit::k8s_cli::{code, copy_env, edit, flightdeck, kubeconfig, text};

const NS: &str = "models";
const ENV: &str = "aks-gateway";
const BLUE: &str = "scoring-blue";

/// The shipped Gateway API environment with `extra` appended to blue's deployment file.
struct Env {
    fake: FakeKube,
    tmp: tempfile::TempDir,
    kube: std::path::PathBuf,
}

impl Env {
    async fn new(extra: &str) -> Env {
        let fake = FakeKube::start().await;
        for d in ["blue", "green"] {
            fake.respond(&format!("scoring-{d}"), 200, r#"{"score": [1.0]}"#);
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let kube = kubeconfig(tmp.path(), &fake.url);
        let dir = copy_env(ENV, tmp.path());
        let blue = dir.join("scoring-blue.yml");
        let mut yaml = std::fs::read_to_string(&blue).expect("read");
        yaml.push_str(extra);
        std::fs::write(&blue, yaml).expect("write");
        Env { fake, tmp, kube }
    }

    async fn run(&self, cmd: &str) -> std::process::Output {
        flightdeck(&[cmd, ENV], self.tmp.path(), &self.kube).await
    }

    fn blue_file(&self) -> std::path::PathBuf {
        self.tmp.path().join(ENV).join("scoring-blue.yml")
    }

    fn object(&self, plural: &str) -> Value {
        self.fake
            .object(plural, NS, BLUE)
            .unwrap_or_else(|| panic!("no {plural} {BLUE}"))
    }

    async fn expect(&self, cmd: &str, exit: i32) -> String {
        let out = self.run(cmd).await;
        assert_eq!(code(&out), exit, "{cmd}: {}", text(&out));
        text(&out)
    }
}

/// Applies `extra`, checks `pointer` of the `plural` object `scoring-blue` is `want`, that a
/// plan is then empty, that `drift` (a change another client makes to the object) is planned as
/// a change of `field`, and that apply puts `want` back.
async fn written_read_back_and_drift_fixed(
    extra: &str,
    plural: &str,
    pointer: &str,
    want: Value,
    drift: impl Fn(&mut Value),
    field: &str,
) {
    let env = Env::new(extra).await;
    env.expect("apply", 0).await;
    assert!(env.fake.invalid().is_empty(), "{:?}", env.fake.invalid());
    assert_eq!(
        env.object(plural).pointer(pointer),
        Some(&want),
        "{:#}",
        env.object(plural)
    );
    env.expect("plan", 0).await;

    let mut changed = env.object(plural);
    drift(&mut changed);
    let patch = json!({ "spec": changed["spec"].clone() });
    env.fake.patch(plural, NS, BLUE, patch, "kubectl-edit");
    assert_ne!(
        env.object(plural).pointer(pointer),
        Some(&want),
        "the drift landed"
    );
    let plan = env.expect("plan", 1).await;
    assert!(
        plan.contains(&format!("update blue: {field}")),
        "plan names {field}: {plan}"
    );
    env.expect("apply", 0).await;
    assert_eq!(env.object(plural).pointer(pointer), Some(&want));
    env.expect("plan", 0).await;
}

const CONTAINER: &str = "/spec/template/spec/containers/0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_writes_an_hpa_that_reads_back_and_its_drift_is_put_back() {
    written_read_back_and_drift_fixed(
        "autoscaling:\n  min_instances: 2\n  max_instances: 6\n  target_cpu_utilization_percentage: 70\n  target_memory_utilization_percentage: 80\n",
        "horizontalpodautoscalers",
        "/spec",
        json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": BLUE},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}},
            ],
        }),
        |hpa| hpa["spec"]["maxReplicas"] = json!(3),
        "autoscaling",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disruption_budget_writes_a_pdb_over_the_versions_pods_and_its_drift_is_put_back() {
    written_read_back_and_drift_fixed(
        "disruption_budget:\n  max_unavailable: 25%\n",
        "poddisruptionbudgets",
        "/spec",
        json!({
            "selector": {"matchLabels": {"flightdeck.io/endpoint": "scoring", "flightdeck.io/deployment": "blue"}},
            "maxUnavailable": "25%",
        }),
        |pdb| pdb["spec"]["maxUnavailable"] = json!(1),
        "disruption_budget",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_across_nodes_and_zones_selects_the_versions_pods_and_its_drift_is_put_back()
 {
    let selector = json!({"matchLabels": {"flightdeck.io/endpoint": "scoring", "flightdeck.io/deployment": "blue"}});
    written_read_back_and_drift_fixed(
        "topology_spread:\n  - across: nodes\n  - across: zones\n    max_skew: 2\n    when_unsatisfiable: ScheduleAnyway\n",
        "deployments",
        "/spec/template/spec/topologySpreadConstraints",
        json!([
            {"topologyKey": "kubernetes.io/hostname", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector},
            {"topologyKey": "topology.kubernetes.io/zone", "maxSkew": 2, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector},
        ]),
        |d| d["spec"]["template"]["spec"]["topologySpreadConstraints"][1]["maxSkew"] = json!(5),
        "topology_spread",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_writes_the_grace_period_and_a_pre_stop_sleep_and_their_drift_is_put_back()
 {
    let extra = "termination_grace_period: 45\npre_stop:\n  sleep: 10\n";
    written_read_back_and_drift_fixed(
        extra,
        "deployments",
        &format!("{CONTAINER}/lifecycle"),
        json!({"preStop": {"sleep": {"seconds": 10}}}),
        |d| {
            d["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] =
                json!({"exec": {"command": ["true"]}});
        },
        "pre_stop",
    )
    .await;
    written_read_back_and_drift_fixed(
        "termination_grace_period: 45\npre_stop:\n  command: [/bin/drain, --wait]\n",
        "deployments",
        "/spec/template/spec/terminationGracePeriodSeconds",
        json!(45),
        |d| d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(30),
        "termination_grace_period",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_context_drops_all_capabilities_forbids_escalation_and_its_drift_is_put_back() {
    written_read_back_and_drift_fixed(
        "security_context:\n  run_as_non_root: true\n  run_as_user: 10001\n  read_only_root_filesystem: true\n",
        "deployments",
        &format!("{CONTAINER}/securityContext"),
        json!({
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        }),
        |d| {
            let sc = &mut d["spec"]["template"]["spec"]["containers"][0]["securityContext"];
            sc["allowPrivilegeEscalation"] = json!(true);
        },
        "security_context",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_and_image_pull_secret_names_are_written_and_their_drift_is_put_back() {
    written_read_back_and_drift_fixed(
        "service_account: scoring-reader\nimage_pull_secrets: [ghcr-pull]\n",
        "deployments",
        "/spec/template/spec/imagePullSecrets",
        json!([{"name": "ghcr-pull"}]),
        |d| d["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": "other"}]),
        "image_pull_secrets",
    )
    .await;
    written_read_back_and_drift_fixed(
        "service_account: scoring-reader\n",
        "deployments",
        "/spec/template/spec/serviceAccountName",
        json!("scoring-reader"),
        |d| d["spec"]["template"]["spec"]["serviceAccountName"] = json!("default"),
        "service_account",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_node_selector_tolerations_and_gpu_limits_are_written_and_their_drift_is_put_back() {
    let extra = "node_selector:\n  nvidia.com/gpu.present: \"true\"\ntolerations:\n  - key: nvidia.com/gpu\n    operator: Exists\n    effect: NoSchedule\n";
    written_read_back_and_drift_fixed(
        extra,
        "deployments",
        "/spec/template/spec/tolerations",
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        |d| d["spec"]["template"]["spec"]["tolerations"] = json!([]),
        "tolerations",
    )
    .await;
    written_read_back_and_drift_fixed(
        extra,
        "deployments",
        "/spec/template/spec/nodeSelector",
        json!({"nvidia.com/gpu.present": "true"}),
        |d| d["spec"]["template"]["spec"]["nodeSelector"] = json!({"pool": "cpu"}),
        "node_selector",
    )
    .await;
}

const AUTOSCALED: &str = "autoscaling:\n  min_instances: 2\n  max_instances: 6\n  target_cpu_utilization_percentage: 70\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_owns_replicas_so_flightdeck_never_writes_them_and_an_hpa_scale_is_no_change() {
    let env = Env::new(AUTOSCALED).await;
    env.expect("apply", 0).await;
    let deployment_writes = || {
        env.fake
            .write_requests()
            .into_iter()
            .filter(|w| w.kind == "deployments" && w.name.as_deref() == Some(BLUE))
            .filter(|w| {
                w.query.contains("fieldManager=flightdeck&")
                    || w.query.ends_with("fieldManager=flightdeck")
            })
            .collect::<Vec<_>>()
    };
    let writes = deployment_writes();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(w.body.pointer("/spec/replicas").is_none(), "{:#}", w.body);
    }
    // The HPA scales the Deployment (the scale subresource, as kube-controller-manager).
    env.fake.patch(
        "deployments",
        NS,
        BLUE,
        json!({"spec": {"replicas": 5}}),
        "kube-controller-manager",
    );
    env.expect("plan", 0).await;
    // A change of the pod template rolls out without touching the HPA's count.
    edit(&env.blue_file(), "WORKERS: 2", "WORKERS: 3");
    env.fake.clear_log();
    env.expect("apply", 0).await;
    assert!(!deployment_writes().is_empty());
    for w in deployment_writes() {
        assert!(w.body.pointer("/spec/replicas").is_none(), "{:#}", w.body);
    }
    assert_eq!(
        env.object("deployments").pointer("/spec/replicas"),
        Some(&json!(5))
    );
    env.expect("plan", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_autoscaling_on_keeps_the_replica_count_until_the_hpa_takes_it() {
    let env = Env::new("").await;
    env.expect("apply", 0).await;
    assert_eq!(
        env.object("deployments").pointer("/spec/replicas"),
        Some(&json!(2))
    );
    let blue = std::fs::read_to_string(env.blue_file()).expect("read");
    std::fs::write(env.blue_file(), format!("{blue}{AUTOSCALED}")).expect("write");
    env.expect("apply", 0).await;
    // flightdeck no longer owns spec.replicas, and the count it had stays (not 1).
    let d = env.object("deployments");
    assert_eq!(d.pointer("/spec/replicas"), Some(&json!(2)), "{d:#}");
    env.expect("plan", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_autoscaling_deletes_the_hpa_and_restores_the_declared_replicas() {
    let env = Env::new(AUTOSCALED).await;
    env.expect("apply", 0).await;
    env.fake.patch(
        "deployments",
        NS,
        BLUE,
        json!({"spec": {"replicas": 5}}),
        "kube-controller-manager",
    );
    edit(&env.blue_file(), AUTOSCALED, "");
    let plan = env.expect("plan", 1).await;
    assert!(plan.contains("autoscaling"), "{plan}");
    env.expect("apply", 0).await;
    assert!(
        env.fake
            .object("horizontalpodautoscalers", NS, BLUE)
            .is_none()
    );
    assert_eq!(
        env.object("deployments").pointer("/spec/replicas"),
        Some(&json!(2))
    );
    env.expect("plan", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_deletes_its_hpa_and_pdb() {
    let env = Env::new(&format!(
        "{AUTOSCALED}disruption_budget:\n  min_available: 1\n"
    ))
    .await;
    env.expect("apply", 0).await;
    assert!(
        env.fake
            .object("horizontalpodautoscalers", NS, BLUE)
            .is_some()
    );
    assert!(env.fake.object("poddisruptionbudgets", NS, BLUE).is_some());
    let dir = env.tmp.path().join(ENV);
    edit(
        &dir.join("scoring.yml"),
        "blue: 100\n  green: 0",
        "green: 100",
    );
    std::fs::remove_file(env.blue_file()).expect("rm blue");
    let out = flightdeck(&["apply", ENV, "--prune"], env.tmp.path(), &env.kube).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    for plural in [
        "deployments",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
    ] {
        assert!(env.fake.object(plural, NS, BLUE).is_none(), "{plural} left");
    }
}

/// A raw write to the fake API server, as any client would send it.
async fn post(fake: &FakeKube, path: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", fake.url))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_fake_api_server_refuses_malformed_hpas_pdbs_and_pod_fields_like_a_strict_api_server() {
    let fake = FakeKube::start().await;
    let hpas = "/apis/autoscaling/v2/namespaces/models/horizontalpodautoscalers";
    let hpa = |spec: Value| {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "a"}, "spec": spec})
    };
    let target = json!({"kind": "Deployment", "name": "a"});
    let (status, body) = post(
        &fake,
        hpas,
        hpa(json!({"scaleTargetRef": target, "maxReplicas": 3, "minReplica": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unknown field \"spec.minReplica\""),
        "{message}"
    );
    let (status, body) = post(
        &fake,
        hpas,
        hpa(json!({"scaleTargetRef": target, "maxReplicas": "3"})),
    )
    .await;
    assert_eq!(status, 400, "a string for an integer: {body}");
    let (status, body) = post(
        &fake,
        hpas,
        hpa(json!({"scaleTargetRef": target, "minReplicas": 4, "maxReplicas": 3})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let pdbs = "/apis/policy/v1/namespaces/models/poddisruptionbudgets";
    let (status, body) = post(
        &fake,
        pdbs,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "a"},
               "spec": {"minAvailable": 1, "maxUnavailable": 1}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "m", "image": "i",
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}, "exec": {"command": ["x"]}}},
                "securityContext": {"dropCapabilities": ["ALL"]}}]}}}});
    let (status, body) = post(
        &fake,
        "/apis/apps/v1/namespaces/models/deployments",
        deployment,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.template.spec.containers[0].securityContext.dropCapabilities"),
        "{message}"
    );
    assert!(fake.names("horizontalpodautoscalers", NS).is_empty());
}

#[tokio::test]
async fn azure_ml_refuses_the_kubernetes_production_settings_with_located_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = copy_env("sandbox", tmp.path());
    let endpoint = dir.join("my-endpoint.yml");
    edit(
        &endpoint,
        "    instance_count: 1\n",
        "    instance_count: 1\n    autoscaling:\n      min_instances: 1\n      max_instances: 3\n      target_cpu_utilization_percentage: 70\n    tolerations:\n      - key: gpu\n        operator: Exists\n",
    );
    let kube = kubeconfig(tmp.path(), "http://127.0.0.1:9");
    let out = flightdeck(&["validate", "sandbox"], tmp.path(), &kube).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("`autoscaling` is only for kubernetes targets (on azureml, autoscaling is `scale_settings`"),
        "{shown}"
    );
    assert!(
        shown.contains("`tolerations` is only for kubernetes targets"),
        "{shown}"
    );
    assert!(shown.contains("my-endpoint.yml:"), "{shown}");
}
