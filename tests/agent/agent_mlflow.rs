//! MLflow promotions through the real agent against the fake MLflow registry
//! (`testkit::fake_mlflow`, built to ../shared/reference/mlflow/CONTRACT.md): a signed
//! `model_version_alias.created` webhook becomes one commit on the tracked branch of a bare
//! origin; bad signatures, stale timestamps and redeliveries are refused; the poll backstop
//! finds an alias moved without any webhook; a version that does not exist or is not READY, and
//! an alias no environment maps, are refused on `/status` and in a metric with nothing committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightdeck::agent::config::promotion::PromotionConfig;
use flightdeck::agent::{Agent, AgentOptions};
use flightdeck::hosting::{Hosting, Provider};
use flightdeck::mlflow::{MlflowAuth, MlflowClient};
use flightdeck::source::{GitAuth, Secret};
use flightdeck_testkit::fake_mlflow::{FakeMlflow, alias_body};
use flightdeck_testkit::git_hosting::FakeHosting;
use flightdeck_testkit::recorder::{Recorder, git_config};
use flightdeck_testkit::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "mlflow-hook-secret";

const ENVIRONMENT: &str = "name: prod\ntarget:\n  state_file:\n    path: .live.json\npromotion:\n  models:\n    - model: churn-model@champion\n      endpoint: churn\n";
const DEPLOYMENT: &str = "name: blue\nendpoint_name: churn\n# the model MLflow promotes\nmodel: azureml:churn-model:3\ninstance_count: 1\n";

/// A bare origin holding `environments/prod` (endpoint churn, deployment blue serving
/// churn-model 3 and mapped to `churn-model@champion`).
fn origin() -> (GitRepo, tempfile::TempDir, PathBuf) {
    origin_with(ENVIRONMENT)
}

fn origin_with(environment: &str) -> (GitRepo, tempfile::TempDir, PathBuf) {
    let work = GitRepo::new();
    work.write("environments/prod/environment.yaml", environment);
    work.write(
        "environments/prod/churn.yml",
        "name: churn\ntraffic:\n  blue: 100\n",
    );
    work.write("environments/prod/blue.yml", DEPLOYMENT);
    work.commit("prod");
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("origin.git");
    let origin = git2::Repository::init_bare(&bare).unwrap();
    origin.set_head("refs/heads/main").unwrap();
    work.repo()
        .remote_anonymous(bare.to_str().unwrap())
        .unwrap()
        .push(&["refs/heads/main:refs/heads/main"], None)
        .unwrap();
    (work, dir, bare)
}

/// `main` of the bare origin: its commit count and blue.yml.
fn main_of(bare: &Path) -> (usize, String) {
    branch_of(bare, "main").unwrap()
}

fn branch_of(bare: &Path, branch: &str) -> Option<(usize, String)> {
    let repo = git2::Repository::open_bare(bare).unwrap();
    let head = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .ok()?
        .peel_to_commit()
        .unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push(head.id()).unwrap();
    let count = walk.count();
    let blob = head
        .tree()
        .unwrap()
        .get_path(Path::new("environments/prod/blue.yml"))
        .unwrap()
        .to_object(&repo)
        .unwrap()
        .peel_to_blob()
        .unwrap();
    Some((count, String::from_utf8(blob.content().to_vec()).unwrap()))
}

struct Running {
    agent: Agent,
    base: String,
    cancel: CancellationToken,
    _cache: tempfile::TempDir,
}

impl Running {
    async fn status(&self) -> Value {
        reqwest::get(format!("{}/status", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn passes_done(&self) -> bool {
        !self.status().await["promotion"]["last_pass_time"].is_null()
    }

    fn hook(&self) -> String {
        format!("{}/mlflow/webhook", self.base)
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.agent.wait().await;
    }
}

async fn start(bare: &Path, mlflow: &FakeMlflow, secret: Option<&str>, poll: Duration) -> Running {
    start_with(bare, mlflow, secret, poll, None).await
}

async fn start_with(
    bare: &Path,
    mlflow: &FakeMlflow,
    secret: Option<&str>,
    poll: Duration,
    hosting: Option<Hosting>,
) -> Running {
    let cache = tempfile::tempdir().unwrap();
    let mut config = git_config(
        bare,
        cache.path(),
        &["environments/prod"],
        Duration::from_secs(600),
        None,
    );
    config.promotion = Some(PromotionConfig {
        client: MlflowClient::new(
            &mlflow.base,
            MlflowAuth::Bearer(Secret::new("mlflow-token")),
        )
        .unwrap(),
        webhook_secret: secret.map(Secret::new),
        interval: poll,
        hosting,
        work_dir: cache.path().join("promotion"),
        url: bare.display().to_string(),
        branch: "main".into(),
        auth: GitAuth::default(),
    });
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        config,
        Arc::new(Recorder::default()),
        AgentOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", agent.local_addr());
    Running {
        agent,
        base,
        cancel,
        _cache: cache,
    }
}

async fn registry() -> FakeMlflow {
    let mlflow = FakeMlflow::start().await;
    for v in ["3", "4"] {
        mlflow.add_version("churn-model", v, "READY");
    }
    mlflow.add_version("churn-model", "5", "PENDING_REGISTRATION");
    mlflow.set_alias_quietly("churn-model", "champion", "3");
    mlflow
}

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_signed_alias_webhook_becomes_one_commit_on_the_tracked_branch_even_when_sent_twice() {
    let (_work, _dir, bare) = origin();
    let mlflow = registry().await;
    // Polling every hour: every pass after the first is a webhook's.
    let agent = start(&bare, &mlflow, Some(SECRET), Duration::from_secs(3600)).await;
    mlflow.add_webhook(&agent.hook(), SECRET);
    eventually("the first promotion pass", T, || agent.passes_done()).await;
    assert_eq!(main_of(&bare).0, 1, "nothing to promote at 3");

    let sent = mlflow.set_alias("churn-model", "champion", "4").await;
    assert_eq!(sent[0].1, 202, "the receiver queues a verified alias event");
    eventually("the promotion commit on origin main", T, || async {
        main_of(&bare).0 == 2
    })
    .await;
    let (_, blue) = main_of(&bare);
    assert_eq!(
        blue,
        DEPLOYMENT.replace("churn-model:3", "churn-model:4"),
        "one scalar changed, the comment kept"
    );
    let status = agent.status().await;
    let recent = &status["promotion"]["recent"];
    assert_eq!(recent[0]["result"], "committed", "{status}");
    assert_eq!(recent[0]["version"], "4");
    assert_eq!(recent[0]["model"], "churn-model@champion");
    // The registry was read with the configured token [MLFLOW A8].
    assert!(
        mlflow
            .authorization()
            .iter()
            .all(|a| a == "Bearer mlflow-token")
    );

    // The same alias → version again (a new delivery): read, found declared, no second commit.
    let reads = mlflow.reads();
    let again = mlflow.set_alias("churn-model", "champion", "4").await;
    assert_eq!(again[0].1, 202);
    eventually("the second pass read the registry", T, || async {
        mlflow.reads() >= reads + 2
    })
    .await;
    eventually("the second pass finished", T, || async {
        agent.status().await["promotion"]["recent"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
    })
    .await;
    assert_eq!(main_of(&bare).0, 2, "the same version twice is one commit");
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("flightdeck_promotions_total{result=\"committed\"} 1"),
        "{metrics}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_redeliveries_are_refused() {
    let (_work, _dir, bare) = origin();
    let mlflow = registry().await;
    let agent = start(&bare, &mlflow, Some(SECRET), Duration::from_secs(3600)).await;
    eventually("the first promotion pass", T, || agent.passes_done()).await;
    let reads = mlflow.reads();
    // The alias moves; only a verified delivery may make the agent look.
    mlflow.set_alias_quietly("churn-model", "champion", "4");
    let body = alias_body("churn-model", "champion", "4");
    let wrong = mlflow.delivery(&agent.hook(), "another-secret", &body, None);
    assert_eq!(mlflow.send(&wrong).await, 401);
    let now = chrono::Utc::now().timestamp();
    let stale = mlflow.delivery(&agent.hook(), SECRET, &body, Some(now - 301));
    assert_eq!(mlflow.send(&stale).await, 400);
    let future = mlflow.delivery(&agent.hook(), SECRET, &body, Some(now + 400));
    assert_eq!(mlflow.send(&future).await, 400);
    let mut tampered = mlflow.delivery(&agent.hook(), SECRET, &body, None);
    tampered.body = tampered.body.replace("\"4\"", "\"5\"");
    assert_eq!(mlflow.send(&tampered).await, 401);
    assert_eq!(
        mlflow.reads(),
        reads,
        "no refused delivery caused a registry read"
    );
    assert_eq!(main_of(&bare).0, 1);

    let good = mlflow.delivery(&agent.hook(), SECRET, &body, Some(now - 200));
    assert_eq!(
        mlflow.send(&good).await,
        202,
        "within the five-minute window"
    );
    eventually("the promotion commit", T, || async {
        main_of(&bare).0 == 2
    })
    .await;
    // urllib3's retry of the same delivery [MLFLOW B7]: acknowledged, not acted on.
    assert_eq!(mlflow.send(&good).await, 200);
    let metrics = agent.metrics().await;
    for line in [
        "flightdeck_mlflow_webhooks_total{result=\"unauthorized\"} 2",
        "flightdeck_mlflow_webhooks_total{result=\"stale\"} 2",
        "flightdeck_mlflow_webhooks_total{result=\"accepted\"} 1",
        "flightdeck_mlflow_webhooks_total{result=\"redelivered\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }
    assert_eq!(main_of(&bare).0, 2);
    agent.stop().await;
}

#[tokio::test]
async fn the_poll_backstop_promotes_an_alias_moved_without_any_webhook() {
    let (_work, _dir, bare) = origin();
    let mlflow = registry().await;
    // No webhook secret: the receiver is off, only the poll sees changes.
    let agent = start(&bare, &mlflow, None, Duration::from_millis(200)).await;
    eventually("the first promotion pass", T, || agent.passes_done()).await;
    let off = reqwest::Client::new()
        .post(agent.hook())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(off.status().as_u16(), 404);
    mlflow.set_alias_quietly("churn-model", "champion", "4");
    eventually("the poll's promotion commit", T, || async {
        main_of(&bare).0 == 2
    })
    .await;
    assert!(main_of(&bare).1.contains("azureml:churn-model:4"));
    agent.stop().await;
}

#[tokio::test]
async fn versions_missing_or_not_ready_and_unmapped_aliases_are_refused_and_nothing_is_committed() {
    let (_work, _dir, bare) = origin();
    let mlflow = registry().await;
    let agent = start(&bare, &mlflow, Some(SECRET), Duration::from_secs(3600)).await;
    mlflow.add_webhook(&agent.hook(), SECRET);
    eventually("the first promotion pass", T, || agent.passes_done()).await;

    let refusals = |n: usize| {
        let agent = &agent;
        async move {
            agent.status().await["promotion"]["recent"]
                .as_array()
                .is_some_and(|r| r.len() == n)
        }
    };
    assert_eq!(
        mlflow.set_alias("churn-model", "champion", "5").await[0].1,
        202
    );
    eventually("the not-READY refusal", T, || refusals(1)).await;
    assert_eq!(
        mlflow.set_alias("churn-model", "champion", "9").await[0].1,
        202
    );
    eventually("the missing-version refusal", T, || refusals(2)).await;
    assert_eq!(mlflow.set_alias("fraud", "champion", "1").await[0].1, 202);
    eventually("the unmapped-alias refusal", T, || refusals(3)).await;

    let status = agent.status().await;
    let recent = status["promotion"]["recent"].as_array().unwrap().clone();
    let messages: Vec<&str> = recent
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(recent.iter().all(|e| e["result"] == "refused"), "{status}");
    assert!(
        messages[0].contains(
            "version 5 of churn-model is PENDING_REGISTRATION, not READY; nothing committed"
        ),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("churn-model@champion points at version 9 which does not exist"),
        "{messages:?}"
    );
    assert!(
        messages[2].starts_with("fraud@champion (version 1): no environment maps this alias"),
        "{messages:?}"
    );
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("flightdeck_promotions_total{result=\"refused\"} 3"),
        "{metrics}"
    );
    assert_eq!(main_of(&bare).0, 1, "nothing committed");
    agent.stop().await;
}

#[tokio::test]
async fn in_pull_request_mode_the_promotion_is_a_pushed_branch_and_one_pull_request() {
    let (_work, _dir, bare) =
        origin_with(&ENVIRONMENT.replace("promotion:\n", "promotion:\n  mode: pull_request\n"));
    let mlflow = registry().await;
    let hosting = FakeHosting::start("pr-token").await;
    let agent = start_with(
        &bare,
        &mlflow,
        None,
        Duration::from_millis(200),
        Some(Hosting {
            provider: Provider::Github,
            api: hosting.github_api(),
            repo: "acme/ml".into(),
            token: Secret::new("pr-token"),
        }),
    )
    .await;
    eventually("the first promotion pass", T, || agent.passes_done()).await;
    mlflow.set_alias_quietly("churn-model", "champion", "4");
    let branch = "flightdeck/promote-prod-churn-4";
    eventually("the pull request", T, || async {
        hosting.requests().iter().any(|r| r.method == "POST")
    })
    .await;
    let (count, blue) = branch_of(&bare, branch).expect("the branch is pushed");
    assert_eq!(count, 2);
    assert!(blue.contains("azureml:churn-model:4"), "{blue}");
    assert_eq!(main_of(&bare).0, 1, "main is left to the pull request");
    let posts: Vec<_> = hosting
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    let body = posts[0].body.as_ref().unwrap();
    assert_eq!(body["head"], branch);
    assert_eq!(body["base"], "main");
    assert!(
        body["title"]
            .as_str()
            .unwrap()
            .starts_with("promote prod/churn: churn-model 3 → 4")
    );
    eventually("the pull request on /status", T, || async {
        agent.status().await["promotion"]["recent"][0]["result"] == "pull_request"
    })
    .await;
    // Later polls see the branch on the remote: no second branch, no second pull request.
    let reads = mlflow.reads();
    eventually("three more polls", T, || async {
        mlflow.reads() >= reads + 6
    })
    .await;
    let posts = hosting
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1);
    assert_eq!(branch_of(&bare, branch).unwrap().0, 2);
    let status = agent.status().await;
    assert_eq!(
        status["promotion"]["recent"].as_array().unwrap().len(),
        1,
        "no failed second push: {status}"
    );
    agent.stop().await;
}
