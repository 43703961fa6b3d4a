//! The GitHub Actions workflow users copy (ci/github/, docs/ci.md), its shell steps run as a
//! runner runs them (`ci_runner`) with the built binary on PATH, against the fake GitHub API
//! (testkit `git_hosting`: issue comments [GIT G3], commit statuses [GIT G4]) and the sandbox: a pull
//! request gets one sticky comment with the plan, found again on the list's second page and
//! PATCHed by the next run; an invalid pull request fails the job and says why; on push to main
//! `apply` rolls out on the sandbox and the rollout report sets `flightdeck/rollout` and
//! comments on the pull request the commit came from.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flightdeck_testkit::agent::endpoint_yaml;
use flightdeck_testkit::azureml_sandbox::Env;
use flightdeck_testkit::git::GitRepo;
use flightdeck_testkit::git_hosting::FakeHosting;
use serde_json::json;

use super::ci_runner::{JobRun, Runner};

const TOKEN: &str = "ghs-ci-tok-51a7";
const REPO: &str = "acme/ml";
const PR: u64 = 7;
const WORKFLOW: &str = ".github/workflows/flightdeck.yml";
const PLAN_MARKER: &str = "<!-- flightdeck:plan -->";

/// A user's repository on `main` after `cp -r ci/github/. .github/`, with
/// `environments/prod` targeting the sandbox and blue serving model version 1.
fn user_repo(sandbox: &Env) -> GitRepo {
    user_repo_with(sandbox, "")
}

fn user_repo_with(sandbox: &Env, environment_extra: &str) -> GitRepo {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/github"),
        &git.dir.path().join(".github"),
    );
    git.write(
        "environments/prod/environment.yaml",
        &sandbox.environment_yaml(environment_extra),
    );
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1)], &[("blue", 100)]),
    );
    git.commit("prod: blue");
    git
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The variables a GitHub-hosted runner sets for `event` (GITHUB_EVENT_PATH holds its
/// payload), plus the built binary first on PATH and `extra` (a self-hosted runner's
/// environment: here the sandbox's ARM endpoint).
fn runner(
    git: &GitRepo,
    temp: &Path,
    hosting: &FakeHosting,
    event_name: &str,
    event: serde_json::Value,
    sha: &str,
    extra: &BTreeMap<String, String>,
) -> Runner {
    let event_path = temp.join("event.json");
    std::fs::write(&event_path, event.to_string()).unwrap();
    let bin_dir = flightdeck_testkit::flightdeck_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut vars: BTreeMap<String, String> = [
        ("CI", "true".to_string()),
        ("GITHUB_ACTIONS", "true".to_string()),
        ("PATH", path),
        ("HOME", temp.display().to_string()),
        ("RUNNER_TEMP", temp.display().to_string()),
        ("GITHUB_WORKSPACE", git.dir.path().display().to_string()),
        ("GITHUB_API_URL", hosting.github_api()),
        ("GITHUB_SERVER_URL", "https://github.com".to_string()),
        ("GITHUB_REPOSITORY", REPO.to_string()),
        ("GITHUB_EVENT_NAME", event_name.to_string()),
        ("GITHUB_EVENT_PATH", event_path.display().to_string()),
        ("GITHUB_SHA", sha.to_string()),
        ("GITHUB_RUN_ID", "4242".to_string()),
        (
            "GITHUB_STEP_SUMMARY",
            temp.join("summary.md").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if event_name == "pull_request" {
        vars.insert("GITHUB_BASE_REF".into(), "main".into());
        vars.insert("GITHUB_HEAD_REF".into(), "model-2".into());
        vars.insert("GITHUB_REF".into(), format!("refs/pull/{PR}/merge"));
    } else {
        vars.insert("GITHUB_REF".into(), "refs/heads/main".into());
    }
    vars.extend(extra.clone());
    let secrets = [("GITHUB_TOKEN".to_string(), TOKEN.to_string())].into();
    Runner {
        workspace: git.dir.path().to_path_buf(),
        vars,
        secrets,
        skipped_uses: vec![
            "actions/checkout@v4".into(),
            "./.github/actions/setup-flightdeck".into(),
        ],
    }
}

fn pr_event(base: &str, head: &str) -> serde_json::Value {
    json!({
        "action": "synchronize",
        "number": PR,
        "pull_request": {
            "number": PR,
            "base": {"ref": "main", "sha": base},
            "head": {"ref": "model-2", "sha": head},
        },
    })
}

async fn run_job(runner: Runner, job: &'static str) -> JobRun {
    tokio::task::spawn_blocking(move || runner.run_job(WORKFLOW, job))
        .await
        .unwrap()
}

fn plan_comment(hosting: &FakeHosting) -> (u64, String) {
    let marked: Vec<_> = hosting
        .comments(REPO, PR)
        .into_iter()
        .filter(|c| c.body.contains(PLAN_MARKER))
        .collect();
    assert_eq!(marked.len(), 1, "one sticky comment: {marked:?}");
    (marked[0].id, marked[0].body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_gets_one_sticky_comment_with_the_plan_and_the_next_push_updates_it() {
    let sandbox = Env::start(Duration::ZERO).await;
    let hosting = FakeHosting::start(TOKEN).await;
    let git = user_repo(&sandbox);
    let base = git.repo().head().unwrap().target().unwrap().to_string();
    // 105 comments by others first: the list has two pages of 100, so the sticky comment of
    // the second run is found only by following `Link: rel="next"`.
    for i in 0..105 {
        hosting.seed_comment(REPO, PR, &format!("looks good {i}"));
    }
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 100)]),
    );
    let head = git.commit("prod: green with model version 2");
    let temp = tempfile::tempdir().unwrap();
    let no_extra = BTreeMap::new();
    let run = |head: &str| {
        runner(
            &git,
            temp.path(),
            &hosting,
            "pull_request",
            pr_event(&base, head),
            head,
            &no_extra,
        )
    };

    let first = run_job(run(&head), "plan").await;
    assert!(first.succeeded(), "{}", first.log());
    let (id, body) = plan_comment(&hosting);
    assert!(body.starts_with(PLAN_MARKER), "{body}");
    assert!(
        body.contains(&format!("plan against `{}`", &base[..12])),
        "{body}"
    );
    assert!(
        body.contains("flightdeck diff: `e2e`: 1 endpoint(s) differ"),
        "{body}"
    );
    assert!(
        body.contains("green"),
        "the plan names the new deployment: {body}"
    );
    assert!(!body.contains("validate"), "valid input: {body}");
    assert_eq!(hosting.comments(REPO, PR).len(), 106);
    let summary = std::fs::read_to_string(temp.path().join("summary.md")).unwrap();
    assert!(summary.contains("flightdeck diff: `e2e`"), "{summary}");

    // The next push to the branch: the same comment, PATCHed with the new plan.
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 3)], &[("blue", 100)]),
    );
    let head = git.commit("prod: green with model version 3");
    let second = run_job(run(&head), "plan").await;
    assert!(second.succeeded(), "{}", second.log());
    let (again, updated) = plan_comment(&hosting);
    assert_eq!(again, id, "the same comment");
    assert_ne!(updated, body, "updated with the new plan");
    assert!(
        updated.contains("version: 3") || updated.contains('3'),
        "{updated}"
    );
    assert_eq!(hosting.comments(REPO, PR).len(), 106, "no second comment");
    let requests = hosting.requests();
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0].path,
        format!("/github/repos/{REPO}/issues/comments/{id}")
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.query.get("page").map(String::as_str) == Some("2")),
        "the second page was read"
    );
    for r in &requests {
        assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
    }
    let log = format!("{}{}", first.log(), second.log());
    assert!(!log.contains(TOKEN), "the token is never printed: {log}");
    println!("{updated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_pull_request_fails_the_job_and_its_comment_says_where() {
    let sandbox = Env::start(Duration::ZERO).await;
    let hosting = FakeHosting::start(TOKEN).await;
    let git = user_repo(&sandbox);
    let base = git.repo().head().unwrap().target().unwrap().to_string();
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1)], &[("blue", 150)]),
    );
    let head = git.commit("prod: too much traffic");
    let temp = tempfile::tempdir().unwrap();
    let r = runner(
        &git,
        temp.path(),
        &hosting,
        "pull_request",
        pr_event(&base, &head),
        &head,
        &BTreeMap::new(),
    );
    let run = run_job(r, "plan").await;
    assert!(!run.succeeded(), "{}", run.log());
    let last = run.steps.last().unwrap();
    assert_eq!(last.code, 1, "{}", run.log());
    assert!(
        last.output.contains("::error::flightdeck: invalid input"),
        "{}",
        run.log()
    );
    let (_, body) = plan_comment(&hosting);
    assert!(
        body.contains("flightdeck validate: `environments/prod`: invalid"),
        "{body}"
    );
    assert!(body.contains("my-endpoint.yml:"), "file:line:col: {body}");
    assert!(!body.contains("flightdeck diff"), "{body}");
}

/// The runner's variables for a push to main, and the sandbox's credentials as the secrets.
fn push_runner(
    git: &GitRepo,
    temp: &Path,
    hosting: &FakeHosting,
    sandbox: &Env,
    sha: &str,
) -> Runner {
    let extra: BTreeMap<String, String> = sandbox
        .vars
        .iter()
        .filter(|(k, _)| {
            !["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([(
            "FLIGHTDECK_POLL_INTERVAL_MAX".to_string(),
            "20ms".to_string(),
        )])
        .collect();
    let mut r = runner(
        git,
        temp,
        hosting,
        "push",
        json!({"ref": "refs/heads/main", "after": sha}),
        sha,
        &extra,
    );
    for k in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
        r.secrets.insert(k.to_string(), sandbox.vars[k].clone());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_main_apply_rolls_out_and_the_report_sets_the_status_and_comments_on_the_pull_request() {
    let sandbox = Env::start(Duration::ZERO).await;
    let hosting = FakeHosting::start(TOKEN).await;
    let git = user_repo(&sandbox);
    let sha = git.repo().head().unwrap().target().unwrap().to_string();
    hosting.seed_commit_pull(REPO, &sha, PR);
    let temp = tempfile::tempdir().unwrap();
    let r = push_runner(&git, temp.path(), &hosting, &sandbox, &sha);

    let run = run_job(r, "apply").await;
    assert!(run.succeeded(), "{}", run.log());
    assert_eq!(
        sandbox.traffic("my-endpoint").await,
        [("blue".to_string(), 100)].into(),
        "applied on the sandbox"
    );
    let statuses = hosting.statuses(REPO, &sha);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].context, "flightdeck/rollout");
    assert_eq!(statuses[0].state, "success");
    assert_eq!(
        statuses[0].target_url.as_deref(),
        Some("https://github.com/acme/ml/actions/runs/4242")
    );
    let comments = hosting.comments(REPO, PR);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = &comments[0].body;
    assert!(
        body.starts_with(&format!("<!-- flightdeck:rollout={sha} -->")),
        "{body}"
    );
    assert!(body.contains("flightdeck rollout: rolled out"), "{body}");
    assert!(
        body.contains(" 0 failed, 0 skipped"),
        "apply's output: {body}"
    );
    assert!(
        !run.log().contains(&sandbox.vars["AZURE_CLIENT_SECRET"]),
        "{}",
        run.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_main_invalid_input_sets_an_error_status_and_fails_the_job() {
    let sandbox = Env::start(Duration::ZERO).await;
    let hosting = FakeHosting::start(TOKEN).await;
    let git = user_repo(&sandbox);
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1)], &[("blue", 150)]),
    );
    let sha = git.commit("prod: too much traffic");
    let temp = tempfile::tempdir().unwrap();
    let r = push_runner(&git, temp.path(), &hosting, &sandbox, &sha);

    let run = run_job(r, "apply").await;
    assert!(!run.succeeded(), "{}", run.log());
    let statuses = hosting.statuses(REPO, &sha);
    assert_eq!(statuses.len(), 1, "{statuses:?}\n{}", run.log());
    assert_eq!(statuses[0].state, "error");
    assert_eq!(
        statuses[0].description.as_deref(),
        Some("invalid input: nothing applied")
    );
    assert!(
        hosting.comments(REPO, PR).is_empty(),
        "no pull request: status only"
    );
    assert!(
        sandbox
            .arm_get("/onlineEndpoints/my-endpoint")
            .await
            .is_none(),
        "nothing applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_main_a_paused_rollout_is_a_pending_status_and_the_job_passes() {
    let sandbox = Env::start(Duration::ZERO).await;
    let hosting = FakeHosting::start(TOKEN).await;
    let policy = "rollout:
  metrics:
    provider: azure_monitor
    ingestion_delay: 0s
  default:
    steps:
      - weight: 10
        bake: 1s
        pause: true
";
    let git = user_repo_with(&sandbox, policy);
    let out = sandbox
        .command(&["apply", "environments/prod"])
        .current_dir(git.dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "blue lands: {out:?}");
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("green", 100)]),
    );
    let sha = git.commit("prod: green");
    hosting.seed_commit_pull(REPO, &sha, PR);
    let temp = tempfile::tempdir().unwrap();
    let r = push_runner(&git, temp.path(), &hosting, &sandbox, &sha);

    let run = run_job(r, "apply").await;
    assert!(run.succeeded(), "{}", run.log());
    let statuses = hosting.statuses(REPO, &sha);
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].state, "pending");
    assert_eq!(
        statuses[0].description.as_deref(),
        Some("paused: waiting for flightdeck rollout resume")
    );
    let comments = hosting.comments(REPO, PR);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = &comments[0].body;
    assert!(body.contains("apply exit code 4"), "{body}");
    assert!(
        body.contains("my-endpoint: stage 1/2 paused at blue 90 / green 10"),
        "rollout status in the comment: {body}"
    );
    println!("{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_fails_the_job_with_githubs_message_and_the_token_is_not_printed() {
    let sandbox = Env::start(Duration::ZERO).await;
    let hosting = FakeHosting::start(TOKEN).await;
    let git = user_repo(&sandbox);
    let base = git.repo().head().unwrap().target().unwrap().to_string();
    let temp = tempfile::tempdir().unwrap();
    let mut r = runner(
        &git,
        temp.path(),
        &hosting,
        "pull_request",
        pr_event(&base, &base),
        &base,
        &BTreeMap::new(),
    );
    let wrong = "ghs-revoked-token-0c9d";
    r.secrets.insert("GITHUB_TOKEN".into(), wrong.into());
    let run = run_job(r, "plan").await;
    assert!(!run.succeeded(), "{}", run.log());
    assert!(
        run.log().contains(
            "github-api: listing the comments of #7: HTTP 401 (expected 200): Bad credentials"
        ),
        "{}",
        run.log()
    );
    assert!(!run.log().contains(wrong), "{}", run.log());
    assert!(hosting.comments(REPO, PR).is_empty());
}
