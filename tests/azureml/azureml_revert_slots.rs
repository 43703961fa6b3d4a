//! `flightdeck revert` of a blue/green slot endpoint end to end: the real binary, the sandbox,
//! a real Git repository. Release 2 of the template fails its gate and is held at blue 100;
//! `revert` sets the template back to what blue runs (its model line only), so that with the
//! branch checked out nothing is released again.

use std::path::PathBuf;

use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::git::GitRepo;

use super::azureml_revert::{apply_changes_nothing, check_out, value_after};
use super::azureml_rollouts::{Load, Ran, run, start, traffic};
use super::azureml_slots::{held_slot_release, model_of};

const EP: &str = "my-endpoint";

/// A slot endpoint held after release 2 failed, in Git (one commit per release); `revert`
/// succeeds and its commit changes the template's model line and nothing else. Returns the
/// repository, the environment directory, the run of `revert`, the commit id and the load.
async fn reverted_slot_release(
    env: &Env,
    after_swap: &str,
) -> (GitRepo, PathBuf, Ran, String, Load) {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    let dir = git.dir.path().join("environments/prod");
    let commits = std::sync::Mutex::new(Vec::new());
    let load = held_slot_release(env, &dir, after_swap, &|what| {
        commits.lock().unwrap().push(git.commit(what));
    })
    .await;
    let release_1 = commits.lock().unwrap()[0].clone();
    let out = run(env, &["revert", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out}");
    let id = value_after(&out, "commit ").to_string();
    let (lines, paths) = git.commit_diff(&id);
    assert_eq!(paths, ["environments/prod/deployments/model.yml"]);
    assert_eq!(
        lines,
        ["-model: azureml:churn:2", "+model: azureml:churn:1"],
        "{out}"
    );
    let message = git
        .repo()
        .find_commit(git2::Oid::from_str(&id).unwrap())
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(message.contains("slot blue serves live"), "{message}");
    assert!(
        message.contains("model: azureml:churn:2 -> azureml:churn:1."),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "That is the template as of {} (release 1).",
            &release_1[..7]
        )),
        "{message}"
    );
    (git, dir, out, id, load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_sets_a_slot_template_back_to_the_serving_slots_model_version_and_only_that_line() {
    let env = start().await;
    let (git, dir, out, _, _load) = reverted_slot_release(&env, "keep").await;
    let d = dir.to_str().unwrap();
    assert!(
        out.stdout.contains("e2e: no changes"),
        "the branch's plan is empty: {out}"
    );

    // Merged: in sync, no release planned, the held state is gone; apply writes nothing.
    check_out(&git, value_after(&out, "branch "));
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "in sync after the revert: {out}");
    assert!(!out.stdout.contains("gets the template"), "{out}");
    apply_changes_nothing(&env, d).await;
    assert_eq!(model_of(&env, "blue").await, "1");
    assert_eq!(
        model_of(&env, "green").await,
        "2",
        "the failed slot is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_revert_accepts_after_swap_scaling_down_the_failed_slot_and_shows_it_in_the_plan() {
    let env = start().await;
    let (git, dir, out, _, _load) = reverted_slot_release(&env, "scale_down").await;
    let d = dir.to_str().unwrap();
    let plan = out.stdout.split("against live:").nth(1).unwrap_or_default();
    assert!(plan.contains("green"), "the scale-down is shown: {out}");
    assert!(!plan.contains("no changes"), "{out}");

    check_out(&git, value_after(&out, "branch "));
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.deployments(EP).await["green"].0, 1, "{out}");
    assert_eq!(model_of(&env, "blue").await, "1");
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "in sync: {out}");
}
