//! `flightdeck promote --push` to a bare repository behind the smart-HTTP test server (token
//! as the agent sends it), and `--open-pr` against the fake GitHub, GitLab and Azure DevOps
//! APIs (testkit `git_hosting`, built to the git-hosting contract): the exact request bodies,
//! the required headers, "already exists" answered with the open pull request, and the token
//! never in the output.

use std::path::Path;

use flightdeck_testkit::git_hosting::{FakeHosting, Recorded};
use flightdeck_testkit::git_http::GitHttp;

use super::promote::{flow_repo, refs, show, stdout, value_after};

const GIT_TOKEN: &str = "git-tok-6c1f0e";
const PR_TOKEN: &str = "pr-tok-93ab51";

/// Runs the binary on a tokio blocking thread (the test servers run on this runtime).
async fn run(
    args: Vec<String>,
    cwd: &Path,
    envs: Vec<(&'static str, String)>,
) -> std::process::Output {
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .args(&args)
            .current_dir(cwd)
            .env_remove("FLIGHTDECK_ARM_ENDPOINT")
            .env_remove("FLIGHTDECK_GIT_TOKEN_FILE")
            .env_remove("FLIGHTDECK_PR_TOKEN_FILE")
            .env_remove("FLIGHTDECK_GIT_TOKEN")
            .env_remove("FLIGHTDECK_PR_TOKEN")
            .envs(envs)
            .output()
            .expect("run flightdeck")
    })
    .await
    .unwrap()
}

/// A bare clone of the flow repository under `root/prod.git`, served over HTTP with
/// `GIT_TOKEN`, set as the flow repo's `origin`.
async fn served_origin(repo: &git2::Repository, root: &Path) -> (GitHttp, String) {
    let bare = root.join("prod.git");
    let origin = git2::Repository::init_bare(&bare).unwrap();
    drop(origin);
    let mut remote = repo.remote_anonymous(bare.to_str().unwrap()).unwrap();
    remote
        .push(&["refs/heads/main:refs/heads/main"], None)
        .unwrap();
    let server = GitHttp::start(root, GIT_TOKEN).await;
    let url = format!("{}/prod.git", server.base);
    repo.remote("origin", &url).unwrap();
    (server, url)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn promote_args(extra: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "promote",
        "environments/prod",
        "my-endpoint",
        "--deployment",
        "green",
        "--model",
        "model-2:2",
        "--offline",
    ]);
    a.extend(args(extra));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_sends_the_new_branch_to_the_remote_with_the_git_token() {
    let (git, _env) = flow_repo();
    let served = tempfile::tempdir().unwrap();
    let (server, _url) = served_origin(git.repo(), served.path()).await;
    let out = run(
        promote_args(&["--push"]),
        git.dir.path(),
        vec![("FLIGHTDECK_GIT_TOKEN", GIT_TOKEN.into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    let commit = value_after(&text, "commit ").to_string();
    assert_eq!(
        value_after(&text, "pushed "),
        format!(
            "flightdeck/promote-prod-my-endpoint-2 to {}/prod.git",
            server.base
        )
    );
    let bare = git2::Repository::open_bare(served.path().join("prod.git")).unwrap();
    let pushed = bare
        .refname_to_id("refs/heads/flightdeck/promote-prod-my-endpoint-2")
        .unwrap();
    assert_eq!(pushed.to_string(), commit);
    // main on the remote did not move.
    assert_eq!(
        bare.refname_to_id("refs/heads/main").unwrap(),
        git.repo().refname_to_id("refs/heads/main").unwrap()
    );
    assert!(
        server
            .served()
            .iter()
            .any(|s| s.query.contains("git-receive-pack") && s.status == 200)
    );
    let all = format!("{}{}", text, String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(GIT_TOKEN), "{all}");

    // A wrong token: the commit is kept locally, exit 1, the remote unchanged, no token shown.
    let before = refs(&bare);
    let out = run(
        promote_args(&["--push", "--branch", "promote/again"]),
        git.dir.path(),
        vec![("FLIGHTDECK_GIT_TOKEN", "wrong-token-4411".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the commit is on local branch promote/again"),
        "{}",
        show(&out)
    );
    assert!(!err.contains("wrong-token-4411"), "{err}");
    assert!(
        git.repo()
            .find_branch("promote/again", git2::BranchType::Local)
            .is_ok()
    );
    assert_eq!(refs(&bare), before);
}

fn posts<'r>(requests: &'r [Recorded], path_end: &str) -> Vec<&'r Recorded> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(path_end))
        .collect()
}

/// Pushes and opens a pull request through `provider`; returns the output and the requests.
async fn open_pr(
    provider: &str,
    api: String,
    repo: &str,
    fake: &FakeHosting,
    branch: &str,
) -> (std::process::Output, Vec<Recorded>, String) {
    let (git, _env) = flow_repo();
    let served = tempfile::tempdir().unwrap();
    let (_server, _url) = served_origin(git.repo(), served.path()).await;
    let token_file = served.path().join("pr-token");
    std::fs::write(&token_file, format!("{PR_TOKEN}\n")).unwrap();
    let out = run(
        promote_args(&[
            "--branch",
            branch,
            "--push",
            "--open-pr",
            provider,
            "--pr-repo",
            repo,
            "--pr-api",
            &api,
            "--pr-token-file",
            token_file.to_str().unwrap(),
        ]),
        git.dir.path(),
        vec![("FLIGHTDECK_GIT_TOKEN", GIT_TOKEN.into())],
    )
    .await;
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(PR_TOKEN), "{all}");
    assert!(!all.contains(GIT_TOKEN), "{all}");
    let body = git
        .repo()
        .find_branch(branch, git2::BranchType::Local)
        .map(|b| b.get().peel_to_commit().unwrap().id().to_string())
        .unwrap_or_default();
    (out, fake.requests(), body)
}

/// The body every provider gets: the change, then the plan in markdown.
fn expected_body(commit: &str) -> String {
    format!(
        "Promotes model `model-2` version 1 → 2 in endpoint `my-endpoint` (deployment green), `environments/prod/my-endpoint.yml:38`.\n\n\
         ### flightdeck plan: `prod`: 1 step\n\n\
         | # | endpoint | action | deployment | reason | detail |\n\
         |---|---|---|---|---|---|\n\
         | 1 | `my-endpoint` | `update_deployment` | `green` | update green: model azureml:model-2:1 → azureml:model-2:2 |  |\n\n\
         > **Note** `my-endpoint/blue`: relies on local files (code ../../model-1/onlinescoring/); flightdeck does not upload assets: register them (az ml model/environment/code create) and reference azureml:NAME:VERSION\n\n\
         > **Note** `my-endpoint/green`: relies on local files (code ../../model-2/onlinescoring/); flightdeck does not upload assets: register them (az ml model/environment/code create) and reference azureml:NAME:VERSION\n\n\
         Plan against HEAD (offline), written by `flightdeck promote` ({}).\n",
        &commit[..7]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_pr_on_github_sends_the_contract_headers_and_body_and_reuses_an_open_one() {
    let fake = FakeHosting::start(PR_TOKEN).await;
    let (out, requests, commit) =
        open_pr("github", fake.github_api(), "acme/ml", &fake, "promote/gh").await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        value_after(&stdout(&out), "opened pull request "),
        "#1: https://github.com/acme/ml/pull/1"
    );
    let post = posts(&requests, "/github/repos/acme/ml/pulls");
    assert_eq!(post.len(), 1, "{requests:#?}");
    let h = &post[0].headers;
    assert_eq!(h["authorization"], format!("Bearer {PR_TOKEN}"));
    assert_eq!(h["accept"], "application/vnd.github+json");
    assert_eq!(h["x-github-api-version"], "2022-11-28");
    assert!(h["user-agent"].starts_with("flightdeck/"), "{h:?}");
    assert_eq!(
        post[0].body.as_ref().unwrap(),
        &serde_json::json!({
            "title": "promote prod/my-endpoint: model-2 1 → 2",
            "head": "promote/gh",
            "base": "main",
            "body": expected_body(&commit),
        })
    );

    // Already open for that head (422): the open one is looked up and reported.
    let number = fake.seed_open("github", "acme/ml", "promote/gh2", "main");
    let (out, requests, _) =
        open_pr("github", fake.github_api(), "acme/ml", &fake, "promote/gh2").await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        value_after(&stdout(&out), "pull request "),
        format!(
            "#{number} is already open for promote/gh2: https://github.com/acme/ml/pull/{number}"
        )
    );
    let get = requests
        .iter()
        .rfind(|r| r.method == "GET")
        .expect("the lookup after the 422");
    assert_eq!(get.query["head"], "acme:promote/gh2");
    assert_eq!(get.query["state"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_pr_on_gitlab_encodes_the_project_path_and_reuses_an_open_merge_request() {
    let fake = FakeHosting::start(PR_TOKEN).await;
    let (out, requests, commit) = open_pr(
        "gitlab",
        fake.gitlab_api(),
        "acme/ml/serving",
        &fake,
        "promote/gl",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        value_after(&stdout(&out), "opened pull request "),
        "#1: https://gitlab.com/acme/ml/serving/-/merge_requests/1"
    );
    let post = posts(&requests, "/merge_requests");
    assert_eq!(post.len(), 1, "{requests:#?}");
    assert_eq!(
        post[0].path,
        "/gitlab/api/v4/projects/acme%2Fml%2Fserving/merge_requests"
    );
    assert_eq!(post[0].headers["private-token"], PR_TOKEN);
    assert_eq!(
        post[0].body.as_ref().unwrap(),
        &serde_json::json!({
            "source_branch": "promote/gl",
            "target_branch": "main",
            "title": "promote prod/my-endpoint: model-2 1 → 2",
            "description": expected_body(&commit),
        })
    );

    let number = fake.seed_open("gitlab", "acme/ml/serving", "promote/gl2", "main");
    let (out, requests, _) = open_pr(
        "gitlab",
        fake.gitlab_api(),
        "acme/ml/serving",
        &fake,
        "promote/gl2",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!(
            "pull request #{number} is already open for promote/gl2"
        )),
        "{}",
        show(&out)
    );
    let get = requests.iter().rfind(|r| r.method == "GET").unwrap();
    assert_eq!(get.query["source_branch"], "promote/gl2");
    assert_eq!(get.query["state"], "opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_pr_on_azure_devops_uses_full_refs_basic_auth_and_api_version() {
    let fake = FakeHosting::start(PR_TOKEN).await;
    let (out, requests, commit) = open_pr(
        "azure-devops",
        fake.azure_devops_api(),
        "acme/ml/models",
        &fake,
        "promote/ado",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        value_after(&stdout(&out), "opened pull request "),
        format!(
            "#1: {}/acme/ml/_git/models/pullrequest/1",
            fake.azure_devops_api()
        )
    );
    let post = posts(&requests, "/pullrequests");
    assert_eq!(post.len(), 1, "{requests:#?}");
    assert_eq!(
        post[0].path,
        "/ado/acme/ml/_apis/git/repositories/models/pullrequests"
    );
    assert_eq!(post[0].query["api-version"], "7.1");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{PR_TOKEN}"));
    assert_eq!(post[0].headers["authorization"], format!("Basic {basic}"));
    assert_eq!(
        post[0].body.as_ref().unwrap(),
        &serde_json::json!({
            "sourceRefName": "refs/heads/promote/ado",
            "targetRefName": "refs/heads/main",
            "title": "promote prod/my-endpoint: model-2 1 → 2",
            "description": expected_body(&commit),
        })
    );

    // 409 TF401179: the active one is found with the search criteria.
    let number = fake.seed_open("azure-devops", "acme/ml/models", "promote/ado2", "main");
    let (out, requests, _) = open_pr(
        "azure-devops",
        fake.azure_devops_api(),
        "acme/ml/models",
        &fake,
        "promote/ado2",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("pull request #{number} is already open")),
        "{}",
        show(&out)
    );
    let get = requests.iter().rfind(|r| r.method == "GET").unwrap();
    assert_eq!(
        get.query["searchCriteria.sourceRefName"],
        "refs/heads/promote/ado2"
    );
    assert_eq!(get.query["searchCriteria.status"], "active");
    assert_eq!(get.query["api-version"], "7.1");

    // A refused PAT (a 203 sign-in page): exit 1, said plainly, the token never shown.
    let bad = FakeHosting::start("another-token").await;
    let (out, _, _) = open_pr(
        "azure-devops",
        bad.azure_devops_api(),
        "acme/ml/models",
        &bad,
        "promote/ado3",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 401: the token was refused"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_pr_without_a_token_or_without_push_is_refused_before_anything_is_written() {
    let (git, _env) = flow_repo();
    let before = refs(git.repo());
    let out = run(
        promote_args(&["--push", "--open-pr", "github", "--pr-repo", "acme/ml"]),
        git.dir.path(),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "--open-pr needs the provider's API token: --pr-token-file FILE or FLIGHTDECK_PR_TOKEN; nothing was written"
        ),
        "{}",
        show(&out)
    );
    // No remote to tell the repository from: said, with the form --pr-repo takes.
    let out = run(
        promote_args(&["--push", "--open-pr", "gitlab"]),
        git.dir.path(),
        vec![("FLIGHTDECK_PR_TOKEN", PR_TOKEN.into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "--open-pr: the repository cannot be told from remote origin; pass --pr-repo GROUP/PROJECT"
        ),
        "{}",
        show(&out)
    );
    let out = run(
        promote_args(&["--open-pr", "github"]),
        git.dir.path(),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(refs(git.repo()), before);
}
