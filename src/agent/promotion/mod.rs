//! MLflow promotions in the agent: when a registry alias an environment maps (`promotion:` in
//! environment.yaml) points at a new version, write the change to Git with the promote library
//! (`crate::promote`: edit one line, validate, plan, commit) and push it: onto the tracked
//! branch (`mode: commit`) or as a branch with a pull request (`mode: pull_request`). The
//! normal GitOps loop then rolls it out.
//!
//! Two triggers, one pass: a verified `model_version_alias.created` webhook (`http.rs`, a hint
//! for one alias) and a poll of every mapped alias every `--promotion-interval` (the backstop:
//! MLflow delivers at most a few times and never again [MLFLOW B9]). Either way the registry is
//! re-read before anything is written: the alias's version now, and that version's status
//! (READY only [MLFLOW A3]). Refusals (no such version, not READY, an alias no environment maps,
//! a promotion the loader or planner refuses) are logged, shown on `/status` and counted in
//! `flightdeck_promotions{result="refused"}`; nothing is committed. A version already declared
//! is no change, so the same alias → version twice makes one commit.
//!
//! Only the leader promotes (with `--leader-elect`); a standby's webhook hints are dropped and
//! the leader's poll finds the change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::status::{AgentState, PromotionEvent};
use crate::hosting::{Hosting, NewPullRequest};
use crate::mlflow::{AliasEvent, MlflowClient, MlflowError};
use crate::promote::PromoteRequest;
use crate::promotion::{PromotionMode, PromotionRule, Selector};
use crate::spec::promote::Artifact;

pub mod worktree;
mod write;

pub use worktree::{Worktree, WorktreeError};

/// Hints queued at most; more are dropped (the poll finds them).
pub const HINT_QUEUE: usize = 64;

/// Outcomes remembered to report each once; past this the memory starts over.
const MAX_REMEMBERED: usize = 1024;

/// Everything the promotion loop needs.
pub struct Promoter {
    pub client: MlflowClient,
    pub worktree: Arc<Worktree>,
    /// The environment directories, as `--path` gives them.
    pub paths: Vec<PathBuf>,
    pub interval: Duration,
    /// Where pull requests are opened (`mode: pull_request`).
    pub hosting: Option<Hosting>,
    pub state: Arc<AgentState>,
    /// Wakes the fetch loop after a commit onto the followed branch, so the rollout starts now
    /// rather than at the next poll.
    pub trigger: Option<Arc<super::trigger::SyncTrigger>>,
    /// The last outcome per mapping, so a refusal is reported once, not every poll.
    last: HashMap<String, String>,
}

/// One mapping found in an environment of the work tree.
#[derive(Clone, Debug)]
struct Mapping {
    path: PathBuf,
    environment: String,
    mode: PromotionMode,
    rule: PromotionRule,
}

impl Mapping {
    fn key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.path.display(),
            self.rule.model,
            self.rule.endpoint,
            self.rule.deployment.as_deref().unwrap_or("")
        )
    }
}

pub(super) enum Outcome {
    Unchanged,
    Committed {
        commit: String,
        branch: String,
        title: String,
        message: String,
    },
    /// `mode: pull_request`: the branch of this promotion is already on the remote.
    AlreadyProposed(String),
}

#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl Promoter {
    pub fn new(
        client: MlflowClient,
        worktree: Worktree,
        paths: Vec<PathBuf>,
        interval: Duration,
        hosting: Option<Hosting>,
        state: Arc<AgentState>,
    ) -> Promoter {
        Promoter {
            client,
            worktree: Arc::new(worktree),
            paths,
            interval,
            hosting,
            state,
            trigger: None,
            last: HashMap::new(),
        }
    }

    /// Passes until `cancel`: one at start, one per hint, one every `interval`.
    pub async fn run(
        mut self,
        mut hints: mpsc::Receiver<AliasEvent>,
        leader: watch::Receiver<bool>,
        cancel: CancellationToken,
    ) {
        let mut next = tokio::time::Instant::now();
        loop {
            let hint = tokio::select! {
                _ = cancel.cancelled() => break,
                Some(hint) = hints.recv() => Some(hint),
                _ = tokio::time::sleep_until(next) => None,
            };
            if hint.is_none() {
                next = tokio::time::Instant::now() + self.interval;
            }
            if !*leader.borrow() {
                continue;
            }
            self.pass(hint).await;
        }
    }

    /// One pass: sync the work tree, read every environment's mappings, promote what moved.
    async fn pass(&mut self, hint: Option<AliasEvent>) {
        let wt = self.worktree.clone();
        let synced = tokio::task::spawn_blocking(move || wt.sync()).await;
        let tip = match synced {
            Ok(Ok(tip)) => tip,
            Ok(Err(e)) => return self.pass_failed(format!("{e}")),
            Err(e) => return self.pass_failed(format!("promotion pass panicked: {e}")),
        };
        let mut mappings = Vec::new();
        for path in &self.paths {
            // An environment that does not load is the worker's to report; nothing maps there.
            if let Ok(desired) = crate::spec::load_environment(
                &self.worktree.env_dir(path),
                crate::backend::profile_of,
            ) {
                let p = desired.environment.promotion;
                mappings.extend(p.models.into_iter().map(|rule| Mapping {
                    path: path.clone(),
                    environment: desired.environment.name.clone(),
                    mode: p.mode,
                    rule,
                }));
            }
        }
        let targets: Vec<Mapping> = match &hint {
            None => mappings,
            Some(h) => {
                let selector = Selector::Alias(h.alias.clone());
                let matched: Vec<Mapping> = mappings
                    .into_iter()
                    .filter(|m| m.rule.model.name == h.name && m.rule.model.selector == selector)
                    .collect();
                if matched.is_empty() {
                    let message = format!(
                        "{}@{} (version {}): no environment maps this alias (promotion.models at {}); nothing promoted",
                        h.name,
                        h.alias,
                        h.version,
                        &tip[..tip.len().min(12)]
                    );
                    self.record(None, "refused", message, None);
                    return;
                }
                matched
            }
        };
        for mapping in targets {
            self.promote(mapping).await;
        }
        self.state.update(|s| {
            let p = s.promotion.get_or_insert_with(Default::default);
            p.last_pass_time = Some(chrono::Utc::now());
            p.last_error = None;
        });
    }

    fn pass_failed(&self, message: String) {
        tracing::warn!(error = %message, "promotion pass failed");
        self.state.metrics.promotion("failed");
        self.state.update(|s| {
            let p = s.promotion.get_or_insert_with(Default::default);
            p.last_pass_time = Some(chrono::Utc::now());
            p.last_error = Some(message);
        });
    }

    /// Logs, counts and shows an outcome once per distinct message and mapping.
    fn record(
        &mut self,
        mapping: Option<&Mapping>,
        result: &str,
        message: String,
        event: Option<PromotionEvent>,
    ) {
        let key = mapping.map_or_else(|| format!("unmapped:{message}"), Mapping::key);
        if self.last.get(&key) == Some(&message) {
            return;
        }
        // Unmapped aliases add a key each: bound the memory (forgetting only repeats a log line).
        if self.last.len() >= MAX_REMEMBERED {
            self.last.clear();
        }
        self.last.insert(key, message.clone());
        match result {
            "committed" | "pull_request" => tracing::info!(result, "{message}"),
            _ => tracing::warn!(result, "{message}"),
        }
        self.state.metrics.promotion(result);
        let event = event.unwrap_or_else(|| PromotionEvent {
            time: chrono::Utc::now(),
            result: result.to_string(),
            message: message.clone(),
            model: mapping.map(|m| m.rule.model.to_string()),
            version: None,
            environment: mapping.map(|m| m.environment.clone()),
            endpoint: mapping.map(|m| m.rule.endpoint.clone()),
            commit: None,
            pull_request: None,
        });
        self.state
            .update(|s| s.promotion.get_or_insert_with(Default::default).push(event));
    }

    async fn promote(&mut self, mapping: Mapping) {
        let model = &mapping.rule.model;
        let what = format!(
            "{}: {model} → endpoint {}{}",
            mapping.environment,
            mapping.rule.endpoint,
            mapping
                .rule
                .deployment
                .as_ref()
                .map(|d| format!(" deployment {d}"))
                .unwrap_or_default()
        );
        let version = match self.check_version(&mapping).await {
            Ok(v) => v,
            Err(Failure::Refused(why)) => {
                return self.record(
                    Some(&mapping),
                    "refused",
                    format!("{what}: {why}; nothing committed"),
                    None,
                );
            }
            Err(Failure::Failed(why)) => {
                return self.record(Some(&mapping), "failed", format!("{what}: {why}"), None);
            }
        };
        if mapping.mode == PromotionMode::PullRequest && self.hosting.is_none() {
            let why = "mode: pull_request needs --pr-provider (and --pr-repo, a token) on the agent; nothing committed";
            return self.record(Some(&mapping), "refused", format!("{what}: {why}"), None);
        }
        let request = PromoteRequest {
            env_dir: self.worktree.env_dir(&mapping.path),
            endpoint: mapping.rule.endpoint.clone(),
            deployment: mapping.rule.deployment.clone(),
            artifact: Artifact::Model {
                name: model.name.clone(),
                version: version.clone(),
            },
            branch: None,
        };
        let wt = self.worktree.clone();
        let mode = mapping.mode;
        let handle = tokio::runtime::Handle::current();
        let written =
            tokio::task::spawn_blocking(move || write::write(&wt, &request, mode, &handle)).await;
        let outcome = match written {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(Failure::Refused(why))) => {
                return self.record(
                    Some(&mapping),
                    "refused",
                    format!("{what}: version {version}: {why}"),
                    None,
                );
            }
            Ok(Err(Failure::Failed(why))) => {
                return self.record(
                    Some(&mapping),
                    "failed",
                    format!("{what}: version {version}: {why}"),
                    None,
                );
            }
            Err(e) => {
                return self.record(
                    Some(&mapping),
                    "failed",
                    format!("{what}: panicked: {e}"),
                    None,
                );
            }
        };
        match outcome {
            Outcome::Unchanged => {
                tracing::debug!("{what}: version {version} is already declared");
                self.last
                    .insert(mapping.key(), format!("unchanged {version}"));
            }
            Outcome::AlreadyProposed(branch) => {
                tracing::debug!("{what}: branch {branch} is already pushed");
                self.last
                    .insert(mapping.key(), format!("proposed {version}"));
            }
            Outcome::Committed {
                commit,
                branch,
                title,
                message,
            } => {
                let mut pull_request = None;
                let mut result = "committed";
                let mut line = format!("{what}: version {version} committed {}", &commit[..12]);
                if mode == PromotionMode::PullRequest {
                    result = "pull_request";
                    let hosting = self.hosting.as_ref().expect("checked above");
                    let pr = NewPullRequest {
                        title,
                        body: format!(
                            "{message}\n\nOpened by the flightdeck agent for {model} (MLflow)."
                        ),
                        head: branch.clone(),
                        base: self.worktree.branch().to_string(),
                    };
                    match hosting.open_or_get(&pr).await {
                        Ok(opened) => {
                            line = format!(
                                "{line} on {branch}: pull request #{} {}",
                                opened.number, opened.url
                            );
                            pull_request = Some(opened.url);
                        }
                        Err(e) => {
                            let message = format!(
                                "{what}: version {version} pushed as {branch}, but the pull request failed: {e}"
                            );
                            return self.record(Some(&mapping), "failed", message, None);
                        }
                    }
                } else {
                    line = format!("{line} onto {}", self.worktree.branch());
                    if let Some(trigger) = &self.trigger {
                        trigger.request();
                    }
                }
                let event = PromotionEvent {
                    time: chrono::Utc::now(),
                    result: result.into(),
                    message: line.clone(),
                    model: Some(model.to_string()),
                    version: Some(version.clone()),
                    environment: Some(mapping.environment.clone()),
                    endpoint: Some(mapping.rule.endpoint.clone()),
                    commit: Some(commit),
                    pull_request,
                };
                self.record(Some(&mapping), result, line, Some(event));
            }
        }
    }

    /// The version the mapping's alias (or stage) points at, re-read from the registry and
    /// READY [MLFLOW A2, A3].
    async fn check_version(&self, mapping: &Mapping) -> Result<String, Failure> {
        let model = &mapping.rule.model;
        let found = self.client.resolve(model).await.map_err(|e| match e {
            MlflowError::NotFound { .. } => {
                Failure::Refused(format!("{model} does not exist in the registry ({e})"))
            }
            e => Failure::Failed(e.to_string()),
        })?;
        let version = self
            .client
            .version(&model.name, &found.version)
            .await
            .map_err(|e| match e {
                MlflowError::NotFound { .. } => Failure::Refused(format!(
                    "{model} points at version {} which does not exist ({e})",
                    found.version
                )),
                e => Failure::Failed(e.to_string()),
            })?;
        if !version.is_ready() {
            let status = version.status.as_deref().unwrap_or("no status");
            let why = version
                .status_message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(Failure::Refused(format!(
                "version {} of {} is {status}{why}, not READY",
                found.version, model.name
            )));
        }
        Ok(found.version)
    }
}
