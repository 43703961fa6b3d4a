//! A reconciler that records every job and answers in sync, for agent tests that exercise the
//! loop, the HTTP surface or supervision rather than a backend; and a Git-source agent config
//! for it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use flightdeck::agent::config::{AgentConfig, HttpLimits, SourceKind};
use flightdeck::agent::{Job, Reconcile, ReconcileOutcome};
use flightdeck::plan::Plan;
use flightdeck::source::{GitAuth, GitRef, Secret};

/// Records (environment, revision, may_apply) of every reconcile; panics with `panic_with`
/// while it is set (an injected worker crash).
#[derive(Default)]
pub struct Recorder {
    jobs: Mutex<Vec<(PathBuf, String, bool)>>,
    panic_with: Mutex<Option<String>>,
    /// `tokio::time::Instant` of every call (virtual time under a paused clock).
    calls: Mutex<Vec<tokio::time::Instant>>,
}

impl Recorder {
    pub fn revisions(&self) -> Vec<String> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r, _)| r.clone())
            .collect()
    }

    pub fn reconciled(&self, revision: &str) -> bool {
        self.revisions().iter().any(|r| r == revision)
    }

    pub fn calls(&self) -> Vec<tokio::time::Instant> {
        self.calls.lock().unwrap().clone()
    }

    /// From now on every reconcile panics with `message` (`None`: stops panicking).
    pub fn panic_with(&self, message: Option<&str>) {
        *self.panic_with.lock().unwrap() = message.map(str::to_string);
    }
}

#[async_trait]
impl Reconcile for Recorder {
    async fn reconcile(&self, job: Job) -> ReconcileOutcome {
        self.calls.lock().unwrap().push(tokio::time::Instant::now());
        let panic = self.panic_with.lock().unwrap().clone();
        if let Some(message) = panic {
            panic!("{message}");
        }
        self.jobs
            .lock()
            .unwrap()
            .push((job.path.clone(), job.revision.clone(), job.may_apply));
        if job.may_apply {
            ReconcileOutcome::InSync
        } else {
            ReconcileOutcome::Planned {
                plan: Plan::default(),
            }
        }
    }
}

/// An agent on the local Git repository `repo` following `main`, with its cache in `cache`,
/// listening on 127.0.0.1:0.
pub fn git_config(
    repo: &Path,
    cache: &Path,
    envs: &[&str],
    interval: Duration,
    secret: Option<&str>,
) -> AgentConfig {
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
        webhook_secret: secret.map(Secret::new),
        dashboard: Default::default(),
        lease: None,
        verify_keys: vec![],
        backend: Default::default(),
        promotion: None,
        http: HttpLimits::default(),
    }
}
