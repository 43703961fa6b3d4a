//! Blue/green slots end to end (issue #12 part 2): the real `flightdeck` binary against an
//! in-process sandbox, with `slots:` in environment.yaml and one deployment template whose
//! model version each release bumps. The slots alternate (blue → green → blue), the plan says
//! which slot gets the template and why, and a release goes through a staged rollout policy,
//! or is rolled back, held, and then fixed into the same idle slot.

use std::path::Path;

use flightdeck_testkit::azureml_sandbox::*;
use serde_json::json;

use super::azureml_rollouts::{
    CANARY, GATED_AT_TWO, Load, Ran, line_of, rollout_yaml, run, start, traffic,
};

const EP: &str = "my-endpoint";

/// `slots:` for the endpoint, with `after_swap`.
fn slots_yaml(after_swap: &str) -> String {
    format!(
        "slots:\n  {EP}:\n    names: [blue, green]\n    template: deployments/model.yml\n    after_swap: {after_swap}\n"
    )
}

/// Writes the endpoint file and the template at model version `version`.
pub(super) fn write_release(dir: &Path, version: u32) {
    std::fs::create_dir_all(dir.join("deployments")).unwrap();
    std::fs::write(
        dir.join("my-endpoint.yml"),
        format!("name: {EP}\nauth_mode: key\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("deployments/model.yml"),
        format!(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n\
             name: model\nendpoint_name: {EP}\nmodel: azureml:churn:{version}\n\
             environment: azureml:env-model1:1\ninstance_type: Standard_DS3_v2\ninstance_count: 2\n"
        ),
    )
    .unwrap();
}

/// The live traffic without its 0% entries (the slot at 0% stays in the map).
async fn serving(env: &Env) -> std::collections::BTreeMap<String, i64> {
    let mut t = env.traffic(EP).await;
    t.retain(|_, w| *w > 0);
    t
}

/// The model version a live deployment runs (the number after the last `/` or `:`).
pub(super) async fn model_of(env: &Env, deployment: &str) -> String {
    let d = env
        .arm_get(&format!("/onlineEndpoints/{EP}/deployments/{deployment}"))
        .await
        .unwrap_or_else(|| panic!("deployment {deployment} exists"));
    let id = d["properties"]["model"].as_str().unwrap_or_default();
    id.rsplit(['/', ':']).next().unwrap_or_default().to_string()
}

/// Applies release `version` and checks that `slot` got it, took all traffic, and that a plan
/// afterwards has nothing to do. Returns the apply's run.
async fn release(env: &Env, dir: &Path, version: u32, slot: &str, why: &str) -> Ran {
    write_release(dir, version);
    let d = dir.to_str().unwrap();
    let planned = run(env, &["plan", d]).await;
    assert_eq!(planned.code, 1, "release {version} is a change: {planned}");
    assert!(planned.stdout.contains(why), "plan says {why:?}: {planned}");
    let diff = run(env, &["diff", d]).await;
    assert_eq!(diff.code, 1, "{diff}");
    assert!(diff.stdout.contains(why), "diff says {why:?}: {diff}");
    let out = run(env, &["apply", d]).await;
    assert_eq!(out.code, 0, "release {version}: {out}");
    assert!(
        out.stdout.contains(why),
        "the apply report says {why:?}: {out}"
    );
    assert_eq!(serving(env).await, traffic(&[(slot, 100)]), "{out}");
    assert_eq!(model_of(env, slot).await, version.to_string(), "{out}");
    let after = run(env, &["plan", d]).await;
    assert_eq!(after.code, 0, "in sync after release {version}: {after}");
    assert!(!after.stdout.contains("note: "), "{after}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_alternate_blue_green_blue_over_three_releases_and_keep_the_old_slot() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, &slots_yaml("keep"));

    release(&env, &dir, 1, "blue", "note: my-endpoint: slot blue gets the template (model azureml:churn:1): no slot is live yet").await;
    release(&env, &dir, 2, "green", "slot green (idle, not live) gets the template (model azureml:churn:2); blue keeps serving until the swap").await;
    // Kept at 0% with its release: the next one goes there.
    assert_eq!(model_of(&env, "blue").await, "1");
    release(&env, &dir, 3, "blue", "slot blue (idle, 0% live) gets the template (model azureml:churn:3); green keeps serving until the swap").await;
    let deployments = env.deployments(EP).await;
    assert_eq!(deployments.keys().collect::<Vec<_>>(), ["blue", "green"]);
    assert_eq!(deployments["green"].0, 2, "kept as it was: {deployments:?}");
    assert_eq!(model_of(&env, "green").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_with_after_swap_delete_remove_the_old_slot_once_it_takes_no_traffic() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, &slots_yaml("delete"));

    release(&env, &dir, 1, "blue", "slot blue gets the template").await;
    release(&env, &dir, 2, "green", "slot green (idle, not live) gets the template (model azureml:churn:2); blue keeps serving until the swap; then blue is deleted (after_swap: delete)").await;
    assert_eq!(
        env.deployments(EP).await.keys().collect::<Vec<_>>(),
        ["green"]
    );
    let out = release(&env, &dir, 3, "blue", "slot blue (idle, not live) gets the template (model azureml:churn:3); green keeps serving until the swap; then green is deleted").await;
    assert_eq!(
        env.deployments(EP).await.keys().collect::<Vec<_>>(),
        ["blue"]
    );
    // The planner's order: traffic moves to blue before green is deleted.
    let traffic_at = out
        .stderr
        .find("my-endpoint set_traffic")
        .unwrap_or_else(|| panic!("{out}"));
    let delete_at = out
        .stderr
        .find("my-endpoint/green delete_deployment")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(traffic_at < delete_at, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_release_goes_through_the_staged_policy_with_the_idle_slot_as_candidate() {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    env.write_environment(
        &dir,
        &format!("{}{}", slots_yaml("scale_down"), rollout_yaml(CANARY)),
    );
    release(&env, &dir, 1, "blue", "slot blue gets the template").await;
    let _load = Load::start(&env, 50).await;

    write_release(&dir, 2);
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("slot green (idle, not live) gets the template (model azureml:churn:2); blue keeps serving until the swap"), "{out}");
    let s1 = line_of(&out, "stage 1/3: routing blue 90 / green 10");
    let s2 = line_of(&out, "stage 2/3: routing blue 50 / green 50");
    let s3 = line_of(&out, "stage 3/3: routing the declared green 100");
    assert!(s1 < s2 && s2 < s3, "{out}");
    // Then, with green holding all traffic, after_swap scales blue down (in the same apply).
    assert!(
        out.stdout.contains(
            "slot green took the swap; blue is scaled down to 1 instance (after_swap: scale_down)"
        ),
        "{out}"
    );
    assert_eq!(serving(&env).await, traffic(&[("green", 100)]));
    let deployments = env.deployments(EP).await;
    assert_eq!(deployments["blue"].0, 1, "{deployments:?}");
    assert_eq!(deployments["green"].0, 2, "{deployments:?}");
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "{out}");
}

/// Slot endpoint (`after_swap` as given) at blue 100 running release 1, then release 2 (model version 2) rolled out
/// into green under a policy whose stage-2 gate fails: rolled back, held at blue 100, green
/// kept at 0% with release 2. `written(what)` runs after each release's files are written (a
/// caller keeping them in Git commits there). The load keeps the gate fed while it lives.
pub(super) async fn held_slot_release(
    env: &Env,
    dir: &Path,
    after_swap: &str,
    written: &dyn Fn(&str),
) -> Load {
    env.write_environment(
        dir,
        &format!("{}{}", slots_yaml(after_swap), rollout_yaml(GATED_AT_TWO)),
    );
    release(env, dir, 1, "blue", "slot blue gets the template").await;
    written("release 1");
    env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 0.5}))
        .await;
    let load = Load::start(env, 50).await;
    write_release(dir, 2);
    written("release 2");
    let out = run(env, &["apply", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 3, "held after the rollback: {out}");
    line_of(&out, "rolling back to blue 100");
    assert_eq!(serving(env).await, traffic(&[("blue", 100)]));
    assert_eq!(model_of(env, "green").await, "2", "kept for inspection");
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_slot_release_is_rolled_back_and_held_and_a_fixed_template_goes_into_the_same_idle_slot()
 {
    let env = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let d = dir.to_str().unwrap();
    let _load = held_slot_release(&env, &dir, "keep", &|_| {}).await;

    // Held: plan says so and a second apply writes nothing (the digest is over the resolved
    // endpoint, which resolves the same way with green at 0%).
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("held at blue 100"),
        "{out}"
    );
    env.clear_log().await;
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 3, "{out}");
    let (_, writes) = reads_writes(&env.log().await);
    assert_eq!(writes, 0, "a held apply writes nothing: {out}");

    // The fix (model 3) goes into the same idle slot, green, and through the stages.
    let resp = reqwest::Client::new()
        .delete(format!("{}/_sandbox/faults", env.base))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    write_release(&dir, 3);
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("slot green (idle, 0% live) gets the template (model azureml:churn:3); blue keeps serving until the swap"), "{out}");
    line_of(&out, "stage 1/3: routing blue 90 / green 10");
    assert_eq!(serving(&env).await, traffic(&[("green", 100)]), "{out}");
    assert_eq!(model_of(&env, "green").await, "3");
    assert_eq!(model_of(&env, "blue").await, "1");
}
