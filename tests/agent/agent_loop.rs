//! The reconcile loop with an injected reconciler: independence of environments, backoff,
//! drift reporting, webhook triggering and clean shutdown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flightdeck::agent::backoff::Backoff;
use flightdeck::agent::config::{AgentConfig, SourceKind};
use flightdeck::agent::{Agent, AgentOptions, Job, Reconcile, ReconcileOutcome};
use flightdeck::apply::ApplyReport;
use flightdeck::backend::BackendError;
use flightdeck::plan::{Action, Plan, Step};
use flightdeck::reconcile::{BackendFailure, Invalid};
use flightdeck::source::{GitAuth, GitRef, Secret};
use flightdeck_testkit::GitRepo;
use tokio_util::sync::CancellationToken;

type Behaviour = dyn Fn(&Job) -> ReconcileOutcome + Send + Sync;

#[derive(Clone, Debug)]
struct Call {
    env: String,
    revision: String,
    revision_changed: bool,
    /// On tokio's clock: under paused time, the exact virtual instant of the call.
    at: tokio::time::Instant,
}

struct Fake {
    calls: Mutex<Vec<Call>>,
    behaviour: Box<Behaviour>,
    /// Environments whose reconcile hangs until cancelled.
    hang: Vec<String>,
    cancelled: Mutex<Vec<String>>,
}

impl Fake {
    fn new(behaviour: impl Fn(&Job) -> ReconcileOutcome + Send + Sync + 'static) -> Arc<Fake> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            behaviour: Box::new(behaviour),
            hang: Vec::new(),
            cancelled: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self, env: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.env == env)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl Reconcile for Fake {
    async fn reconcile(&self, job: Job) -> ReconcileOutcome {
        let env = job.path.display().to_string();
        self.calls.lock().unwrap().push(Call {
            env: env.clone(),
            revision: job.revision.clone(),
            revision_changed: job.revision_changed,
            at: tokio::time::Instant::now(),
        });
        if self.hang.contains(&env) {
            job.cancel.cancelled().await;
            self.cancelled.lock().unwrap().push(env);
            return ReconcileOutcome::Interrupted {
                plan: Plan::default(),
                report: ApplyReport::default(),
            };
        }
        (self.behaviour)(&job)
    }
}

fn plan_of(steps: Vec<Step>) -> Plan {
    Plan {
        steps,
        ..Plan::default()
    }
}

fn traffic_step() -> Step {
    Step::new(
        "scoring".into(),
        Action::SetTraffic {
            traffic: [("blue".to_string(), 100)].into(),
        },
        "restore traffic".into(),
    )
}

fn repo_with(envs: &[&str]) -> GitRepo {
    let repo = GitRepo::new();
    for env in envs {
        repo.write(&format!("{env}/environment.yaml"), "name: x\n");
    }
    repo.commit("initial");
    repo
}

fn config(repo: &Path, cache: &Path, envs: &[&str], interval: Duration) -> AgentConfig {
    AgentConfig {
        source: SourceKind::Git {
            url: repo.display().to_string(),
            reference: GitRef::Branch("main".into()),
            cache_dir: cache.to_path_buf(),
            auth: GitAuth::default(),
        },
        paths: envs.iter().map(PathBuf::from).collect(),
        interval,
        full_resync: flightdeck::agent::scope::DEFAULT_FULL_RESYNC,
        concurrency: 8,
        listen: "127.0.0.1:0".parse().unwrap(),
        webhook_secret: Some(Secret::new("hook-secret")),
        dashboard: Default::default(),
        lease: None,
        verify_keys: vec![],
        backend: Default::default(),
        http: Default::default(),
        promotion: None,
    }
}

fn options(backoff: Duration) -> AgentOptions {
    AgentOptions {
        backoff: Some(Backoff {
            base: backoff,
            max: backoff * 2,
        }),
        ..AgentOptions::default()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// Paused time: ticks, backoff and the calls' instants are on tokio's clock, which moves only
// when every task waits (a fetch runs in `spawn_blocking`, which holds the clock), so the gaps
// below are exact whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn a_failing_environment_backs_off_without_blocking_the_others() {
    let repo = repo_with(&["environments/good", "environments/bad"]);
    let cache = tempfile::tempdir().unwrap();
    let fake = Fake::new(|job| {
        if job.path == Path::new("environments/bad") {
            ReconcileOutcome::BackendFailed(BackendFailure::ReadLive(BackendError::transport(
                "environments/bad",
                "connection refused",
                None,
            )))
        } else {
            ReconcileOutcome::InSync
        }
    });
    let cfg = config(
        repo.dir.path(),
        cache.path(),
        &["environments/good", "environments/bad"],
        Duration::from_millis(40),
    );
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        cfg,
        fake.clone(),
        options(Duration::from_millis(300)),
        cancel.clone(),
    )
    .await
    .unwrap();
    let state = agent.state();

    eventually("three attempts at the failing environment", || {
        fake.calls("environments/bad").len() >= 3
    })
    .await;
    let bad = fake.calls("environments/bad");
    // Ticks every 40 ms (±10%) would retry at the next tick; the backoff is 300 ms, then 600 ms.
    let gaps = [bad[1].at - bad[0].at, bad[2].at - bad[1].at];
    assert!(
        gaps[0] >= Duration::from_millis(300) && gaps[0] < Duration::from_millis(600),
        "first retry after the 300 ms backoff, got {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(600) && gaps[1] < Duration::from_millis(1200),
        "second retry after the doubled backoff, got {gaps:?}"
    );
    let good_meanwhile = fake
        .calls("environments/good")
        .iter()
        .filter(|c| c.at > bad[0].at && c.at < bad[1].at)
        .count();
    // 300 ms of ticks at most 44 ms apart: at least six.
    assert!(
        good_meanwhile >= 6,
        "the healthy environment keeps ticking during the backoff ({good_meanwhile} reconciles)"
    );

    let status = state.env("environments/bad").unwrap();
    assert_eq!(status.last_result.as_deref(), Some("failed"));
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("connection refused")
    );
    assert!(status.consecutive_failures >= 2);
    assert!(status.next_retry_time.is_some());
    assert!(
        state.is_ready(),
        "one healthy environment makes the agent ready"
    );
    let metrics = state.metrics.render();
    assert!(metrics.contains("flightdeck_errors_total{env=\"environments/bad\",kind=\"backend\"}"));

    // A new commit is retried at once, without waiting out the 600 ms backoff.
    let new = repo.commit("fix");
    let asked = tokio::time::Instant::now();
    agent.trigger();
    eventually("the new revision is tried", || {
        fake.calls("environments/bad")
            .iter()
            .any(|c| c.revision == new)
    })
    .await;
    let tried = fake.calls("environments/bad");
    let tried = tried.iter().find(|c| c.revision == new).unwrap();
    assert!(
        tried.at - asked < Duration::from_millis(300),
        "the new commit waited {:?}",
        tried.at - asked
    );

    cancel.cancel();
    agent.wait().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_yaml_is_tried_once_per_commit_and_a_fixing_commit_at_once() {
    let repo = repo_with(&["environments/bad"]);
    let cache = tempfile::tempdir().unwrap();
    let fake = Fake::new(|_| {
        ReconcileOutcome::Invalid(Invalid::Source(
            "environments/bad/e.yaml:3:1: unknown key".into(),
        ))
    });
    // Ticks every 100 ms and a 100 ms backoff: a policy that retried would try ~50 times.
    let cfg = config(
        repo.dir.path(),
        cache.path(),
        &["environments/bad"],
        Duration::from_millis(100),
    );
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        cfg,
        fake.clone(),
        options(Duration::from_millis(100)),
        cancel.clone(),
    )
    .await
    .unwrap();
    let state = agent.state();
    eventually("the first attempt", || {
        !fake.calls("environments/bad").is_empty()
    })
    .await;
    // Ten more fetch rounds, each publishing the same invalid commit: proof that the worker had
    // its chances (and a round every 100 ms would have been retried after the 100 ms backoff).
    let seen = state.snapshot().fetch_rounds;
    eventually("ten more fetch rounds", || {
        state.snapshot().fetch_rounds >= seen + 10
    })
    .await;
    assert_eq!(
        fake.calls("environments/bad").len(),
        1,
        "the same invalid commit is not tried again"
    );
    let status = state.env("environments/bad").unwrap();
    assert_eq!(status.last_result.as_deref(), Some("invalid"));
    assert!(status.last_error.as_deref().unwrap().contains("e.yaml:3:1"));
    assert_eq!(status.next_retry_time, None, "no retry is scheduled");
    let metrics = state.metrics.render();
    assert!(
        metrics.contains(
            "flightdeck_errors_total{env=\"environments/bad\",kind=\"invalid_spec\"} 1\n"
        ),
        "{metrics}"
    );

    let new = repo.commit("fix");
    agent.trigger();
    eventually("the new revision is tried", || {
        fake.calls("environments/bad")
            .iter()
            .any(|c| c.revision == new)
    })
    .await;
    cancel.cancel();
    agent.wait().await;
}

#[tokio::test]
async fn a_plan_on_an_unchanged_revision_is_reported_as_drift() {
    let repo = repo_with(&["environments/prod"]);
    let cache = tempfile::tempdir().unwrap();
    // First reconcile applies; later ones find the live state changed behind our back.
    let fake = Fake::new(|job| {
        if job.revision_changed {
            ReconcileOutcome::Applied {
                plan: plan_of(vec![traffic_step()]),
                report: ApplyReport::default(),
            }
        } else {
            ReconcileOutcome::DriftReported {
                plan: plan_of(vec![traffic_step()]),
            }
        }
    });
    let cfg = config(
        repo.dir.path(),
        cache.path(),
        &["environments/prod"],
        Duration::from_millis(30),
    );
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        cfg,
        fake.clone(),
        options(Duration::from_millis(100)),
        cancel.clone(),
    )
    .await
    .unwrap();
    let state = agent.state();
    eventually("drift is detected", || {
        state.env("environments/prod").is_some_and(|s| s.drift)
    })
    .await;
    let calls = fake.calls("environments/prod");
    assert!(
        calls[0].revision_changed,
        "a fresh agent treats the revision as new"
    );
    assert!(
        !calls[1].revision_changed,
        "after applying, the same revision is unchanged"
    );
    let status = state.env("environments/prod").unwrap();
    assert_eq!(status.last_result.as_deref(), Some("drift_reported"));
    assert_eq!(status.pending_plan.len(), 1);
    assert_eq!(status.applied_commit, Some(calls[0].revision.clone()));
    let metrics = state.metrics.render();
    assert!(metrics.contains("flightdeck_drift_detected{env=\"environments/prod\"} 1"));
    assert!(metrics.contains(&format!(
        "flightdeck_applied_commit_info{{env=\"environments/prod\",commit=\"{}\"}} 1",
        calls[0].revision
    )));
    cancel.cancel();
    agent.wait().await;
}

#[tokio::test]
async fn a_signed_webhook_push_reconciles_a_new_commit_before_the_next_poll() {
    let repo = repo_with(&["environments/prod"]);
    let cache = tempfile::tempdir().unwrap();
    let fake = Fake::new(|_| ReconcileOutcome::InSync);
    // A long interval: only the webhook can explain a quick reconcile.
    let cfg = config(
        repo.dir.path(),
        cache.path(),
        &["environments/prod"],
        Duration::from_secs(600),
    );
    let cancel = CancellationToken::new();
    let agent = Agent::start(cfg, fake.clone(), AgentOptions::default(), cancel.clone())
        .await
        .unwrap();
    let base = format!("http://{}", agent.local_addr());
    eventually("the first reconcile", || {
        fake.calls("environments/prod").len() == 1
    })
    .await;

    let new = repo.commit("traffic change");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let client = reqwest::Client::new();
    let unsigned = client
        .post(format!("{base}/webhook"))
        .header("x-github-event", "push")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // A sync request is counted before the webhook is answered: none means no fetch will come.
    assert_eq!(
        agent.state().snapshot().sync_requests,
        0,
        "a rejected webhook triggers nothing"
    );
    assert_eq!(fake.calls("environments/prod").len(), 1);

    let signature = flightdeck::agent::webhook::sign_github(b"hook-secret", body.as_bytes());
    let r = client
        .post(format!("{base}/webhook"))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(agent.state().snapshot().sync_requests, 1);
    eventually("the pushed revision is reconciled", || {
        fake.calls("environments/prod")
            .iter()
            .any(|c| c.revision == new)
    })
    .await;
    let status: serde_json::Value = client
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["revision"], new.as_str());
    assert_eq!(
        status["sync_requests"], 1,
        "/status reports the one request"
    );
    cancel.cancel();
    agent.wait().await;
}

#[tokio::test]
async fn shutdown_cancels_an_in_flight_rollout_and_stops_every_task() {
    let repo = repo_with(&["environments/slow", "environments/fast"]);
    let cache = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake {
        calls: Mutex::new(Vec::new()),
        behaviour: Box::new(|_| ReconcileOutcome::InSync),
        hang: vec!["environments/slow".into()],
        cancelled: Mutex::new(Vec::new()),
    });
    let cfg = config(
        repo.dir.path(),
        cache.path(),
        &["environments/slow", "environments/fast"],
        Duration::from_millis(50),
    );
    let cancel = CancellationToken::new();
    let agent = Agent::start(cfg, fake.clone(), AgentOptions::default(), cancel.clone())
        .await
        .unwrap();
    let addr = agent.local_addr();
    eventually("both environments started", || {
        !fake.calls("environments/slow").is_empty() && fake.calls("environments/fast").len() >= 2
    })
    .await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), agent.wait())
        .await
        .expect("agent stops");
    assert_eq!(*fake.cancelled.lock().unwrap(), ["environments/slow"]);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the server is stopped"
    );
}
