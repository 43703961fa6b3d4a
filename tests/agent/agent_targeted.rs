//! Targeted reconciles against the sandbox, driven tick by tick through the real pipeline
//! (`Pipeline::reconcile`, as the agent's loop calls it): a commit that touches some endpoints
//! reads only those (counted in the sandbox's request log) and applies them, and a full resync
//! afterwards (a fresh pipeline: its first tick is always full) plans nothing, so the targeted
//! tick missed nothing a full one would have found. An `environment.yaml` change reads in full.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flightdeck::agent::pipeline::{Pipeline, default_connector};
use flightdeck::agent::reconcile::{Job, Reconcile};
use flightdeck::reconcile::ReconcileOutcome;
use flightdeck::sandbox::SandboxHandle;
use flightdeck::source::{EnvTree, FileMap};
use flightdeck_testkit::agent::{Arm, WS, sandbox_backend, start_sandbox};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const ENVIRONMENT: &str = "name: sandbox
target:
  azureml:
    subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: flightdeck-demo
    workspace: demo
    location: westus2
";

fn endpoint(name: &str, instances: u32) -> String {
    format!(
        "name: {name}\nauth_mode: key\ntraffic:\n  blue: 100\ndeployments:\n  - name: blue\n    model: azureml:model-1:1\n    environment: azureml:env-1:1\n    code_configuration:\n      code: azureml:code:1\n      scoring_script: score.py\n    instance_type: Standard_DS3_v2\n    instance_count: {instances}\n"
    )
}

/// The environment's files by name (`environment.yaml`, `ep-0.yml`, ...).
struct Tree(BTreeMap<String, String>);

impl Tree {
    fn new(endpoints: usize) -> Tree {
        let mut files = BTreeMap::from([("environment.yaml".to_string(), ENVIRONMENT.to_string())]);
        for i in 0..endpoints {
            files.insert(format!("ep-{i}.yml"), endpoint(&format!("ep-{i}"), 1));
        }
        Tree(files)
    }

    fn set(&mut self, file: &str, content: String) {
        self.0.insert(file.to_string(), content);
    }

    fn job(&self, revision: &str, may_apply: bool) -> Job {
        let files: FileMap = self
            .0
            .iter()
            .map(|(name, content)| {
                (
                    PathBuf::from("environments/sandbox").join(name),
                    content.as_bytes().to_vec(),
                )
            })
            .collect();
        Job {
            path: PathBuf::from("environments/sandbox"),
            revision: revision.to_string(),
            files: Arc::new(EnvTree::from(files)),
            revision_changed: true,
            may_apply,
            cancel: CancellationToken::new(),
            observe: None,
        }
    }
}

/// A commit shape: its name, the files it writes, the endpoints a tick may read for it.
type Shape = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);

fn pipeline(sandbox: &SandboxHandle) -> Pipeline {
    Pipeline::new(default_connector(sandbox_backend(sandbox)), None, 8)
}

/// ARM requests about endpoints (`.../onlineEndpoints...`) logged after `seq`: (method, path
/// after `onlineEndpoints`).
async fn endpoint_requests(arm: &Arm, seq: u64) -> Vec<(String, String)> {
    let prefix = format!("{WS}/onlineEndpoints");
    arm.log()
        .await
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) > seq)
        .filter_map(|e: Value| {
            let rest = e["path"].as_str()?.strip_prefix(&prefix)?.to_string();
            Some((e["method"].as_str()?.to_string(), rest))
        })
        .collect()
}

/// The endpoint a request is about (`None`: the workspace-wide list).
fn about(rest: &str) -> Option<&str> {
    rest.strip_prefix('/')?.split('/').next()
}

/// A full reconcile from a fresh pipeline (an agent restart: its first tick is full) that
/// only plans: it must find nothing to do, and it must have listed the workspace.
async fn full_resync_finds_nothing(sandbox: &SandboxHandle, arm: &Arm, tree: &Tree, rev: &str) {
    let seq = arm.last_seq().await;
    let outcome = pipeline(sandbox).reconcile(tree.job(rev, false)).await;
    assert!(
        matches!(outcome, ReconcileOutcome::InSync),
        "the full resync after {rev} found changes the targeted tick missed: {:?}",
        outcome.plan().map(|p| &p.steps)
    );
    let requests = endpoint_requests(arm, seq).await;
    assert!(
        requests
            .iter()
            .any(|(m, rest)| m == "GET" && rest.is_empty()),
        "a full resync lists every endpoint: {requests:?}"
    );
}

fn assert_applied(outcome: &ReconcileOutcome, what: &str) {
    assert!(
        matches!(outcome, ReconcileOutcome::Applied { .. }),
        "{what}: {:?}",
        outcome.error()
    );
}

#[tokio::test]
async fn a_commit_touching_some_endpoints_reads_and_applies_only_those_and_a_full_resync_then_plans_nothing()
 {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let agent = pipeline(&sandbox);
    let mut tree = Tree::new(6);
    let first = agent.reconcile(tree.job("r1", true)).await;
    assert_applied(&first, "the first tick creates every endpoint");
    // The next tick reads back what the first one created, and finds it done.
    let settled = agent.reconcile(tree.job("r1", true)).await;
    assert!(matches!(settled, ReconcileOutcome::InSync), "{settled:?}");

    // Each commit shape: which files change, and which endpoints the tick may read.
    let shapes: Vec<Shape> = vec![
        (
            "one endpoint scaled",
            vec![("ep-2.yml", endpoint("ep-2", 2))],
            vec!["ep-2"],
        ),
        (
            "two endpoints changed in one commit",
            vec![
                ("ep-0.yml", endpoint("ep-0", 2)),
                ("ep-5.yml", endpoint("ep-5", 3)),
            ],
            vec!["ep-0", "ep-5"],
        ),
        (
            "an endpoint added",
            vec![("ep-6.yml", endpoint("ep-6", 1))],
            vec!["ep-6"],
        ),
    ];
    // The tick after an apply also reads back what the last one wrote (once).
    let mut written_before: Vec<&str> = Vec::new();
    for (i, (shape, edits, touched)) in shapes.into_iter().enumerate() {
        let rev = format!("r{}", i + 2);
        for (file, content) in edits {
            tree.set(file, content);
        }
        let seq = arm.last_seq().await;
        let outcome = agent.reconcile(tree.job(&rev, true)).await;
        assert_applied(&outcome, shape);
        let requests = endpoint_requests(&arm, seq).await;
        let gets: Vec<&(String, String)> = requests.iter().filter(|(m, _)| m == "GET").collect();
        assert!(!gets.is_empty(), "{shape}: the tick read nothing");
        for (_, rest) in &gets {
            let endpoint = about(rest);
            assert!(
                endpoint.is_some_and(|e| touched.contains(&e) || written_before.contains(&e)),
                "{shape}: read {rest:?}, only {touched:?} changed and {written_before:?} were \
                 written by the last tick; all reads: {gets:?}"
            );
        }
        let written: Vec<&str> = requests
            .iter()
            .filter(|(m, _)| m != "GET")
            .filter_map(|(_, rest)| about(rest))
            .collect();
        for endpoint in &touched {
            assert!(
                written.contains(endpoint),
                "{shape}: {endpoint} was not written: {requests:?}"
            );
        }
        full_resync_finds_nothing(&sandbox, &arm, &tree, &rev).await;
        written_before = touched;
    }

    // The tick after the last apply reads back only what that apply wrote, and finds it done.
    let seq = arm.last_seq().await;
    let outcome = agent.reconcile(tree.job("r4", true)).await;
    assert!(matches!(outcome, ReconcileOutcome::InSync), "{outcome:?}");
    let requests = endpoint_requests(&arm, seq).await;
    assert!(!requests.is_empty(), "the applied endpoint is read back");
    for (method, rest) in &requests {
        assert_eq!(method, "GET", "{requests:?}");
        assert_eq!(about(rest), Some("ep-6"), "{requests:?}");
    }

    // A commit that changes nothing reads nothing.
    let seq = arm.last_seq().await;
    let outcome = agent.reconcile(tree.job("r5", true)).await;
    assert!(matches!(outcome, ReconcileOutcome::InSync), "{outcome:?}");
    assert_eq!(endpoint_requests(&arm, seq).await, vec![]);

    // environment.yaml may change every endpoint's plan: the tick reads everything.
    tree.set(
        "environment.yaml",
        format!("{ENVIRONMENT}drift:\n  ignore: [instance_count]\n"),
    );
    let seq = arm.last_seq().await;
    let outcome = agent.reconcile(tree.job("r6", true)).await;
    assert!(matches!(outcome, ReconcileOutcome::InSync), "{outcome:?}");
    let requests = endpoint_requests(&arm, seq).await;
    assert!(
        requests
            .iter()
            .any(|(m, rest)| m == "GET" && rest.is_empty()),
        "an environment change lists every endpoint: {requests:?}"
    );
    full_resync_finds_nothing(&sandbox, &arm, &tree, "r6").await;
    sandbox.shutdown().await;
}

#[tokio::test]
async fn drift_on_an_untouched_endpoint_waits_for_the_full_resync_which_corrects_it() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let mut agent = pipeline(&sandbox);
    let mut tree = Tree::new(3);
    assert_applied(&agent.reconcile(tree.job("r1", true)).await, "first tick");
    // The next tick reads back what the first one created, and finds it done.
    let settled = agent.reconcile(tree.job("r1", true)).await;
    assert!(matches!(settled, ReconcileOutcome::InSync), "{settled:?}");
    // Behind the agent's back: ep-1 loses its traffic.
    arm.put_traffic("ep-1", serde_json::json!({})).await;
    tree.set("ep-0.yml", endpoint("ep-0", 2));
    let outcome = agent.reconcile(tree.job("r2", true)).await;
    assert_applied(&outcome, "the targeted tick");
    let touched: Vec<&str> = outcome
        .plan()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.endpoint.as_str())
        .collect();
    assert!(
        touched.iter().all(|e| *e == "ep-0"),
        "a targeted tick plans only the changed endpoint: {touched:?}"
    );
    assert_eq!(arm.traffic("ep-1").await.unwrap(), serde_json::json!({}));
    // The same pipeline with a full resync on every tick (`--full-resync-interval 0s`), at
    // the same commit: the drift is found and corrected.
    agent.full_resync = std::time::Duration::ZERO;
    let resync = agent.reconcile(tree.job("r2", true)).await;
    assert_applied(&resync, "the full resync");
    let corrected: Vec<&str> = resync
        .plan()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.endpoint.as_str())
        .collect();
    assert_eq!(corrected, vec!["ep-1"]);
    assert_eq!(
        arm.traffic("ep-1").await.unwrap(),
        serde_json::json!({"blue": 100})
    );
    sandbox.shutdown().await;
}
