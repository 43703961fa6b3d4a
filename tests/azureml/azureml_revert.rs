//! `flightdeck revert` end to end: the real binary, the sandbox, a real Git repository. A gate
//! fails, the endpoint is held at blue 100 while Git declares green 100; `revert` writes a
//! commit on a new branch that changes only the traffic lines, leaves the checked-out branch,
//! index and work tree alone, and with that branch checked out `plan` is in sync. Each refusal
//! writes nothing. A release that deleted the baseline's file gets that file back from history
//! (slot endpoints: `azureml_revert_slots.rs`).

use std::path::{Path, PathBuf};

use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::git::GitRepo;
use serde_json::json;

use super::azureml_rollouts::{GATED_AT_TWO, Load, Ran, rollout_yaml, run, start, traffic};

const EP: &str = "my-endpoint";

/// Every ref and where it points, plus HEAD: what "nothing was written" compares.
fn refs(repo: &git2::Repository) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = repo
        .references()
        .unwrap()
        .flatten()
        .map(|r| {
            (
                r.name().unwrap_or_default().to_string(),
                r.target().map(|t| t.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let head = repo.head().unwrap();
    out.push(("HEAD".into(), head.name().unwrap_or_default().to_string()));
    out.sort();
    out
}

/// The work tree's files below `dir`, with their contents.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

pub(super) fn value_after<'a>(out: &'a Ran, prefix: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{out}"))
}

/// A repository whose `environments/prod` is at blue 100 live and declares flow file 5
/// (blue 0, green 100, both declared), committed on `main`, after a rollout whose stage-2 gate
/// failed: held at blue 100, green kept at 0%.
async fn held_repo(env: &Env) -> (GitRepo, PathBuf, Load) {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    let dir = git.dir.path().join("environments/prod");
    env.write_environment(&dir, &rollout_yaml(GATED_AT_TWO));
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    git.commit("prod: blue");
    let d = dir.to_str().unwrap().to_string();
    let out = run(env, &["apply", &d]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    std::fs::copy(flow_file(4), dir.join("my-endpoint.yml")).unwrap();
    git.commit("prod: green 100");
    env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 0.5}))
        .await;
    let load = Load::start(env, 50).await;
    let out = run(env, &["apply", &d]).await;
    assert_eq!(out.code, 3, "held after the rollback: {out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
    (git, dir, load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_writes_a_branch_whose_commit_changes_only_the_traffic_lines_and_plans_in_sync() {
    let env = start().await;
    let (git, dir, _load) = held_repo(&env).await;
    let d = dir.to_str().unwrap();
    let before_refs = refs(git.repo());
    let before_files = files(&dir);

    let out = run(&env, &["revert", d]).await;
    assert_eq!(out.code, 0, "{out}");
    let branch = value_after(&out, "branch ").to_string();
    let id = value_after(&out, "commit ").to_string();
    let head = git
        .repo()
        .refname_to_id("refs/heads/main")
        .unwrap()
        .to_string();
    assert_eq!(
        branch,
        format!("flightdeck/revert-e2e-{}", &head[..7]),
        "{out}"
    );
    assert!(
        out.stdout.contains("-  blue: 0"),
        "the diff is shown: {out}"
    );

    // The checked-out branch, the index and the work tree are untouched.
    let mut after_refs = refs(git.repo());
    after_refs.retain(|(name, _)| name != &format!("refs/heads/{branch}"));
    assert_eq!(after_refs, before_refs);
    assert_eq!(files(&dir), before_files);
    let statuses = git.repo().statuses(None).unwrap();
    assert!(statuses.is_empty(), "the work tree stays clean");
    assert_eq!(
        git.repo()
            .refname_to_id(&format!("refs/heads/{branch}"))
            .unwrap()
            .to_string(),
        id
    );

    // The commit: the endpoint file's traffic lines, and nothing else.
    let (lines, paths) = git.commit_diff(&id);
    assert_eq!(paths, ["environments/prod/my-endpoint.yml"]);
    assert_eq!(
        lines,
        ["-  blue: 0", "-  green: 100", "+  blue: 100", "+  green: 0"],
        "{out}"
    );
    let commit = git
        .repo()
        .find_commit(git2::Oid::from_str(&id).unwrap())
        .unwrap();
    let message = commit.message().unwrap();
    assert!(message.starts_with("revert e2e: my-endpoint back to what is live"));
    assert!(
        message.contains("live serves blue 100 / green 0"),
        "{message}"
    );
    assert!(message.contains("gate failed at stage 2"), "{message}");
    assert!(
        message.contains("Git declared blue 0 / green 100"),
        "{message}"
    );
    assert_eq!(commit.author().name().ok(), Some("flightdeck"));

    // With the branch checked out, Git agrees with the platform: in sync, the hold is gone.
    git.repo()
        .set_head(&format!("refs/heads/{branch}"))
        .unwrap();
    git.repo()
        .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "in sync after the revert: {out}");
    assert!(!out.stdout.contains("held"), "{out}");

    // Nothing is held any more: a second revert refuses and writes nothing.
    let before = refs(git.repo());
    let out = run(&env, &["revert", d]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("nothing to revert"), "{out}");
    assert_eq!(refs(git.repo()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_refuses_an_existing_branch_a_dirty_directory_and_a_directory_outside_git() {
    let env = start().await;
    let (git, dir, _load) = held_repo(&env).await;
    let d = dir.to_str().unwrap();
    let before_refs = refs(git.repo());
    let before_files = files(&dir);

    // The branch exists.
    git.repo()
        .branch(
            "taken",
            &git.repo().head().unwrap().peel_to_commit().unwrap(),
            false,
        )
        .unwrap();
    let with_taken = refs(git.repo());
    let out = run(&env, &["revert", d, "--branch", "taken"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("branch taken already exists"), "{out}");
    assert!(out.stderr.contains("nothing was written"), "{out}");
    assert_eq!(refs(git.repo()), with_taken);

    // The environment's directory has an uncommitted change.
    let extra = dir.join("notes.yml");
    std::fs::write(&extra, "# scratch\n").unwrap();
    let out = run(&env, &["revert", d]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("uncommitted changes"), "{out}");
    assert!(out.stderr.contains("notes.yml"), "{out}");
    assert_eq!(refs(git.repo()), with_taken);
    std::fs::remove_file(&extra).unwrap();

    // The same environment outside any Git repository.
    let plain = tempfile::tempdir().unwrap();
    let copy = plain.path().join("prod");
    std::fs::create_dir_all(&copy).unwrap();
    for (path, bytes) in &before_files {
        std::fs::write(copy.join(path.file_name().unwrap()), bytes).unwrap();
    }
    let out = run(&env, &["revert", copy.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("is not inside a Git repository"),
        "{out}"
    );
    assert_eq!(files(&copy).len(), before_files.len());

    // An endpoint that is not declared.
    let out = run(&env, &["revert", d, "no-such-endpoint"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("not declared"), "{out}");

    git.repo()
        .find_branch("taken", git2::BranchType::Local)
        .unwrap()
        .delete()
        .unwrap();
    assert_eq!(refs(git.repo()), before_refs);
    assert_eq!(files(&dir), before_files);
}

/// A deployment file of `my-endpoint` (separate-file form) at model version `version`.
fn deployment_file(name: &str, version: u32) -> String {
    format!(
        "# {name}: the release at model {version}\nname: {name}\nendpoint_name: {EP}\nmodel: azureml:churn:{version}\nenvironment: azureml:env-model1:1\ninstance_type: Standard_DS3_v2\ninstance_count: 1\n"
    )
}

/// The endpoint file with `traffic` (YAML lines, indented).
fn endpoint_file(traffic: &str) -> String {
    format!("name: {EP}\nauth_mode: key\ntraffic:\n{traffic}")
}

/// A repository whose release commit deleted `blue.yml` and declared `green.yml` at 100, after
/// a rollout whose stage-2 gate failed: held at blue 100, green kept at 0%. Returns the id of
/// the commit that last declared blue.
async fn held_after_deleting_blue(env: &Env) -> (GitRepo, PathBuf, Load, String) {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    let dir = git.dir.path().join("environments/prod");
    env.write_environment(&dir, &rollout_yaml(GATED_AT_TWO));
    std::fs::write(dir.join("my-endpoint.yml"), endpoint_file("  blue: 100\n")).unwrap();
    std::fs::write(dir.join("blue.yml"), deployment_file("blue", 1)).unwrap();
    let blue_commit = git.commit("prod: blue at model 1");
    let d = dir.to_str().unwrap().to_string();
    let out = run(env, &["apply", &d]).await;
    assert_eq!(out.code, 0, "blue lands: {out}");
    std::fs::remove_file(dir.join("blue.yml")).unwrap();
    std::fs::write(dir.join("green.yml"), deployment_file("green", 2)).unwrap();
    std::fs::write(dir.join("my-endpoint.yml"), endpoint_file("  green: 100\n")).unwrap();
    git.commit("prod: green replaces blue");
    env.fault(json!({"endpoint": EP, "deployment": "green", "error_rate": 0.5}))
        .await;
    let load = Load::start(env, 50).await;
    let out = run(env, &["apply", &d]).await;
    assert_eq!(out.code, 3, "held after the rollback: {out}");
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
    assert!(env.deployments(EP).await.contains_key("green"), "kept");
    (git, dir, load, blue_commit)
}

/// The requests of the sandbox's log that are not GETs, as (method, path).
pub(super) async fn writes(env: &Env) -> Vec<(String, String)> {
    env.log()
        .await
        .iter()
        .filter(|e| e["method"] != "GET")
        .map(method_path)
        .collect()
}

/// `apply` after the revert is merged: its only write is the endpoint PATCH that clears the
/// failed rollout's record (the hold is over, `rollout::engine`); no deployment or traffic
/// changes, and the next apply writes nothing at all.
pub(super) async fn apply_changes_nothing(env: &Env, d: &str) {
    let endpoint = |w: &[(String, String)]| {
        w.iter()
            .all(|(m, p)| m == "PATCH" && p.ends_with(&format!("/onlineEndpoints/{EP}")))
    };
    let traffic_before = env.traffic(EP).await;
    let deployments_before = env.deployments(EP).await;
    env.clear_log().await;
    let out = run(env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("no changes"), "{out}");
    let first = writes(env).await;
    assert!(first.len() <= 1 && endpoint(&first), "{first:?}\n{out}");
    assert_eq!(env.traffic(EP).await, traffic_before, "{out}");
    assert_eq!(env.deployments(EP).await, deployments_before, "{out}");
    env.clear_log().await;
    let out = run(env, &["apply", d]).await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(writes(env).await, Vec::<(String, String)>::new(), "{out}");
}

/// The file at `path` in the tree of commit `id`.
fn file_at(repo: &git2::Repository, id: &str, path: &str) -> Vec<u8> {
    let commit = repo.find_commit(git2::Oid::from_str(id).unwrap()).unwrap();
    let entry = commit.tree().unwrap().get_path(Path::new(path)).unwrap();
    repo.find_blob(entry.id()).unwrap().content().to_vec()
}

/// Checks out `branch` (HEAD, index and work tree), as merging the pull request would.
pub(super) fn check_out(git: &GitRepo, branch: &str) {
    git.repo()
        .set_head(&format!("refs/heads/{branch}"))
        .unwrap();
    git.repo()
        .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_restores_a_deployment_file_the_release_deleted_from_history_byte_for_byte() {
    let env = start().await;
    let (git, dir, _load, blue_commit) = held_after_deleting_blue(&env).await;
    let d = dir.to_str().unwrap();

    let out = run(&env, &["revert", d]).await;
    assert_eq!(out.code, 0, "{out}");
    let branch = value_after(&out, "branch ").to_string();
    let id = value_after(&out, "commit ").to_string();
    assert!(out.stdout.contains("--- /dev/null"), "{out}");
    assert!(
        out.stdout.contains("+++ b/environments/prod/blue.yml"),
        "{out}"
    );

    // blue.yml comes back byte for byte, the traffic goes back to live's, green stays at 0%.
    assert_eq!(
        file_at(git.repo(), &id, "environments/prod/blue.yml"),
        file_at(git.repo(), &blue_commit, "environments/prod/blue.yml")
    );
    let (lines, mut paths) = git.commit_diff(&id);
    paths.sort();
    assert_eq!(
        paths,
        [
            "environments/prod/blue.yml",
            "environments/prod/my-endpoint.yml"
        ]
    );
    assert!(lines.contains(&"-  green: 100".to_string()), "{lines:?}");
    assert!(lines.contains(&"+  green: 0".to_string()), "{lines:?}");
    assert!(lines.contains(&"+  blue: 100".to_string()), "{lines:?}");
    let message = git
        .repo()
        .find_commit(git2::Oid::from_str(&id).unwrap())
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!(
            "Deployment blue is declared again: blue.yml restored from {} (prod: blue at model 1).",
            &blue_commit[..7]
        )),
        "{message}"
    );
    assert!(
        out.stdout.contains("e2e: no changes"),
        "the branch's plan is empty: {out}"
    );

    // Merged: plan is in sync and apply writes nothing.
    check_out(&git, &branch);
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.code, 0, "in sync after the revert: {out}");
    apply_changes_nothing(&env, d).await;
    assert_eq!(env.traffic(EP).await, traffic(&[("blue", 100)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_refuses_a_restored_file_that_differs_from_live_naming_the_field_and_writes_nothing()
{
    let env = start().await;
    let (git, dir, _load, _) = held_after_deleting_blue(&env).await;
    // Someone scales blue by hand: Git's last blue.yml (1 instance) no longer says what runs.
    let status = env
        .arm_patch(
            &format!("/onlineEndpoints/{EP}/deployments/blue"),
            &json!({"sku": {"name": "Default", "capacity": 2}}),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    flightdeck_testkit::eventually::eventually(
        "blue runs 2 instances",
        std::time::Duration::from_secs(10),
        || async { env.deployments(EP).await["blue"].0 == 2 },
    )
    .await;
    let before = refs(git.repo());
    let before_files = files(&dir);

    let out = run(&env, &["revert", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("deployment blue as declared in blue.yml at"),
        "{out}"
    );
    assert!(
        out.stderr.contains("instance_count 1 in Git, 2 live"),
        "the differing field is named: {out}"
    );
    assert!(out.stderr.contains("nothing was written"), "{out}");
    assert_eq!(refs(git.repo()), before, "no branch");
    assert_eq!(files(&dir), before_files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_looks_back_1000_commits_for_a_deleted_file_and_says_so_when_it_is_not_there() {
    let env = start().await;
    let (git, dir, _load, _) = held_after_deleting_blue(&env).await;
    // 1,000 commits on top that leave the environment as it is (still held): blue.yml was
    // last declared 1,002 commits back from HEAD, beyond the walk.
    let repo = git.repo();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    for i in 0..1000 {
        let parent = repo.head().unwrap().peel_to_commit().unwrap();
        let tree = parent.tree().unwrap();
        repo.commit(
            Some("HEAD"),
            &sig,
            &sig,
            &format!("unrelated {i}"),
            &tree,
            &[&parent],
        )
        .unwrap();
    }
    let before = refs(repo);

    let out = run(&env, &["revert", dir.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("live sends traffic to deployment blue, which HEAD no longer declares, and no deployment file declaring it is in the environment in the last 1000 commits"),
        "{out}"
    );
    assert!(out.stderr.contains("nothing was written"), "{out}");
    assert_eq!(refs(repo), before);
}
