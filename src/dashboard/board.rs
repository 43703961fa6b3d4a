//! What the dashboard shows, kept up to date by typed updates, and the bounded broadcast that
//! tells open pages to refresh. The agent feeds it from its events (`agent::events`: the same
//! `emit` that updates metrics, logs and `/status`); `flightdeck dashboard` feeds it from its
//! own polls of the platform. Both render the same [`Board`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::model::{DeploymentState, LiveState};
use crate::rollout::RolloutView;
use crate::rollout::gates::GateResult;

/// Recent events kept for the page (newest first).
pub const MAX_EVENTS: usize = 50;
/// Measurements kept per gate: at one reading per tick, a bake of minutes.
pub const MAX_POINTS: usize = 120;
/// Updates an SSE client may fall behind before it is dropped (its page then reloads the
/// fragment when it reconnects): nothing is buffered for a slow client beyond this.
pub const CHANNEL_CAPACITY: usize = 64;
/// The agent reads the scoring share at most this often per environment, and only while a
/// page is open (an event stream is connected).
pub const SCORING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One deployment's bar: live weight, mirror weight, state.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentBar {
    pub name: String,
    pub weight: u32,
    pub mirror: u32,
    /// `ready`, `provisioning`, `failed`.
    pub state: &'static str,
    /// Why it failed, or the platform's phase (`Updating`).
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EndpointPanel {
    pub name: String,
    pub deployments: Vec<DeploymentBar>,
    /// Share of scoring requests per deployment over the last minutes, where metrics exist.
    pub scoring: Vec<(String, f64)>,
}

/// A gate's readings during the current stage.
#[derive(Clone, Debug, PartialEq)]
pub struct GateSeries {
    pub endpoint: String,
    pub gate: String,
    pub stage: Option<usize>,
    pub threshold: Option<f64>,
    pub points: VecDeque<(DateTime<Utc>, f64)>,
    /// `pass`, `fail`, `no data`.
    pub verdict: &'static str,
    /// The verdict as `rollout status` prints it.
    pub describe: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvPanel {
    /// The revision last reconciled (or attempted).
    pub commit: Option<String>,
    pub applied_commit: Option<String>,
    /// `in_sync`, `applied`, `failed`, ... (`/status` `last_result`).
    pub sync: Option<String>,
    pub drift: bool,
    pub last_error: Option<String>,
    pub endpoints: Vec<EndpointPanel>,
    pub rollouts: Vec<RolloutView>,
    pub gates: Vec<GateSeries>,
    pub updated: Option<DateTime<Utc>>,
}

impl EnvPanel {
    /// Held or rolling back after a failure, with the reason.
    pub fn failed(&self) -> Option<&RolloutView> {
        self.rollouts.iter().find(|r| r.is_failed())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventLine {
    pub at: DateTime<Utc>,
    pub env: String,
    /// `step`, `step failed`, `stage`, `verdict`, `rollback`, `held`, `revision`, `error`.
    pub kind: &'static str,
    pub text: String,
    pub commit: Option<String>,
}

/// Everything one page shows.
#[derive(Clone, Debug, Default)]
pub struct Board {
    /// What is watched: the agent's source, or the environment directory.
    pub source: String,
    /// The source's newest revision (agent: last fetch).
    pub revision: Option<String>,
    pub envs: BTreeMap<String, EnvPanel>,
    pub events: VecDeque<EventLine>,
    /// Link template for commits, with `{sha}` (`https://github.com/o/r/commit/{sha}`).
    pub commit_url: Option<String>,
    /// Updates so far; a page shows it so a watcher sees it move.
    pub version: u64,
}

/// What one reconcile of one environment reports to the board.
pub struct Reconciled<'a> {
    pub env: &'a str,
    pub revision: &'a str,
    /// The desired state was fully applied (or already live).
    pub applied: bool,
    pub result: &'a str,
    pub error: Option<&'a str>,
    pub rollouts: &'a [RolloutView],
    /// Steps run this tick: (text, succeeded).
    pub steps: Vec<(String, bool)>,
}

/// Replaces the endpoints `read` says were read with `endpoints`, keeping each one's scoring
/// share until the next metrics read replaces it.
fn merge_live(
    panel: &mut EnvPanel,
    mut endpoints: Vec<EndpointPanel>,
    read: impl Fn(&str) -> bool,
) {
    for e in endpoints.iter_mut().filter(|e| e.scoring.is_empty()) {
        if let Some(old) = panel.endpoints.iter_mut().find(|o| o.name == e.name) {
            e.scoring = std::mem::take(&mut old.scoring);
        }
    }
    panel.endpoints.retain(|e| !read(&e.name));
    panel.endpoints.extend(endpoints);
    panel.endpoints.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The board and the channel that announces its changes.
#[derive(Debug)]
pub struct Hub {
    board: RwLock<Board>,
    tx: broadcast::Sender<String>,
    /// When each environment's scoring share was last read.
    scoring_read: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
    /// Ends every open event stream (the server is stopping).
    closed: CancellationToken,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(String::new(), None)
    }
}

impl Hub {
    pub fn new(source: String, commit_url: Option<String>) -> Hub {
        Hub {
            board: RwLock::new(Board {
                source,
                commit_url,
                ..Board::default()
            }),
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            scoring_read: Default::default(),
            closed: CancellationToken::new(),
        }
    }

    /// Reads the board (rendering holds the lock for the render only).
    pub fn read<T>(&self, f: impl FnOnce(&Board) -> T) -> T {
        match self.board.read() {
            Ok(board) => f(&board),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }

    /// True (and noted) when a page is open and `env`'s scoring share was last read longer
    /// than `every` ago.
    pub fn scoring_due(&self, env: &str, every: std::time::Duration) -> bool {
        if self.tx.receiver_count() == 0 {
            return false;
        }
        let Ok(mut read) = self.scoring_read.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if read
            .get(env)
            .is_some_and(|at| now.duration_since(*at) < every)
        {
            return false;
        }
        read.insert(env.to_string(), now);
        true
    }

    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Ends every open event stream, so a graceful shutdown does not wait for browsers.
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn set_source(&self, source: &str, commit_url: Option<String>) {
        self.update("source", |b| {
            b.source = source.to_string();
            b.commit_url = commit_url;
        });
    }

    fn update(&self, kind: &str, f: impl FnOnce(&mut Board)) {
        self.update_with(kind, serde_json::Value::Null, f);
    }

    /// Applies `f`, then announces `{"kind", "version"}` (and `detail` when not null) to every
    /// open event stream.
    fn update_with(&self, kind: &str, detail: serde_json::Value, f: impl FnOnce(&mut Board)) {
        let version = match self.board.write() {
            Ok(mut board) => {
                f(&mut board);
                board.version += 1;
                board.version
            }
            Err(_) => return,
        };
        let mut message = serde_json::json!({"kind": kind, "version": version});
        if !detail.is_null() {
            message["detail"] = detail;
        }
        // No receiver (no page open) is fine; a lagging one is dropped by its stream.
        let _ = self.tx.send(message.to_string());
    }

    /// The source was fetched at `revision`.
    pub fn fetched(&self, revision: &str, new_revision: bool) {
        if !new_revision {
            return;
        }
        self.update("revision", |b| {
            b.revision = Some(revision.to_string());
            push_event(
                b,
                "",
                "revision",
                "new revision fetched".into(),
                Some(revision),
            );
        });
    }

    /// The platform's endpoints as read for one environment.
    pub fn observed(&self, env: &str, endpoints: Vec<EndpointPanel>) {
        self.update("live", |b| {
            let panel = b.envs.entry(env.to_string()).or_default();
            merge_live(panel, endpoints, |_| true);
        });
    }

    /// Some of the platform's endpoints, as a targeted reconcile read them: `names` were read
    /// (one of them with no panel is gone), every other endpoint keeps its last reading.
    pub fn observed_some(
        &self,
        env: &str,
        endpoints: Vec<EndpointPanel>,
        names: &std::collections::BTreeSet<String>,
    ) {
        if names.is_empty() {
            return;
        }
        self.update("live", |b| {
            let panel = b.envs.entry(env.to_string()).or_default();
            merge_live(panel, endpoints, |name| names.contains(name));
        });
    }

    /// The scoring share per deployment of one endpoint.
    pub fn scoring(&self, env: &str, endpoint: &str, shares: Vec<(String, f64)>) {
        self.update("scoring", |b| {
            let panel = b.envs.entry(env.to_string()).or_default();
            if let Some(e) = panel.endpoints.iter_mut().find(|e| e.name == endpoint) {
                e.scoring = shares;
            }
        });
    }

    /// One reconcile's outcome: sync state, the rollouts' stages and verdicts, the steps run.
    pub fn reconciled(&self, r: Reconciled<'_>) {
        let kind = if r.rollouts.is_empty() {
            "sync"
        } else {
            "rollout"
        };
        // The stream says what moved, so a client that does not render (a test, a script)
        // can follow the stages: `{"env", "result", "rollouts": [{"endpoint", "state", "stage",
        // "traffic"}]}`.
        let detail = serde_json::json!({
            "env": r.env,
            "result": r.result,
            "rollouts": r.rollouts.iter().map(|v| serde_json::json!({
                "endpoint": v.endpoint,
                "state": v.state,
                "stage": v.stage,
                "stages": v.stages,
                "traffic": v.traffic,
            })).collect::<Vec<_>>(),
        });
        self.update_with(kind, detail, |b| {
            let now = crate::clock::now_utc();
            let commit = Some(r.revision);
            let before = b.envs.get(r.env).cloned().unwrap_or_default();
            for (text, ok) in &r.steps {
                let kind = if *ok { "step" } else { "step failed" };
                push_event(b, r.env, kind, text.clone(), commit);
            }
            for view in r.rollouts {
                let old = before.rollouts.iter().find(|o| o.endpoint == view.endpoint);
                if old.map(|o| (o.state.as_str(), o.stage))
                    != Some((view.state.as_str(), view.stage))
                {
                    let kind = match view.state.as_str() {
                        "rolling_back" => "rollback",
                        "held" => "held",
                        _ => "stage",
                    };
                    push_event(
                        b,
                        r.env,
                        kind,
                        format!("{}: {}", view.endpoint, view.message),
                        commit,
                    );
                }
                for v in &view.verdicts {
                    let text = format!("{}: gate {}: {}", view.endpoint, v.gate, v.describe());
                    push_event(b, r.env, "verdict", text, commit);
                }
            }
            for old in &before.rollouts {
                if !r.rollouts.iter().any(|v| v.endpoint == old.endpoint) {
                    let text = format!("{}: rollout ended", old.endpoint);
                    push_event(b, r.env, "stage", text, commit);
                }
            }
            if let Some(error) = r.error
                && before.last_error.as_deref() != Some(error)
            {
                push_event(b, r.env, "error", error.to_string(), commit);
            }
            let panel = b.envs.entry(r.env.to_string()).or_default();
            panel.commit = Some(r.revision.to_string());
            if r.applied {
                panel.applied_commit = Some(r.revision.to_string());
            }
            panel.sync = Some(r.result.to_string());
            panel.last_error = r.error.map(str::to_string);
            panel.updated = Some(now);
            record_gates(panel, r.rollouts, now);
            // What this tick routed: the rolling endpoints' bars move with their stage.
            if r.error.is_none() {
                for view in r.rollouts {
                    if let Some(e) = panel.endpoints.iter_mut().find(|e| e.name == view.endpoint) {
                        for d in &mut e.deployments {
                            d.weight = view.traffic.get(&d.name).copied().unwrap_or(0);
                        }
                        // A candidate this tick created (and provisioned: the steps succeeded).
                        for (name, weight) in &view.traffic {
                            if !e.deployments.iter().any(|d| &d.name == name) {
                                e.deployments.push(DeploymentBar {
                                    name: name.clone(),
                                    weight: *weight,
                                    mirror: 0,
                                    state: "ready",
                                    detail: None,
                                });
                            }
                        }
                        e.deployments.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                }
            }
            panel.rollouts = r.rollouts.to_vec();
        });
    }

    /// The commit the platform last applied, as read back from it (local mode).
    pub fn applied(&self, env: &str, revision: &str) {
        self.update("sync", |b| {
            b.envs.entry(env.to_string()).or_default().applied_commit = Some(revision.to_string());
        });
    }

    /// The environment could not be read at all (local mode: loading or connecting failed).
    pub fn failed(&self, env: &str, error: &str) {
        self.update("error", |b| {
            let changed = b.envs.get(env).and_then(|p| p.last_error.as_deref()) != Some(error);
            if changed {
                push_event(b, env, "error", error.to_string(), None);
            }
            let panel = b.envs.entry(env.to_string()).or_default();
            panel.sync = Some("failed".into());
            panel.last_error = Some(error.to_string());
            panel.updated = Some(crate::clock::now_utc());
        });
    }
}

fn push_event(b: &mut Board, env: &str, kind: &'static str, text: String, commit: Option<&str>) {
    b.events.push_front(EventLine {
        at: crate::clock::now_utc(),
        env: env.to_string(),
        kind,
        text,
        commit: commit.map(str::to_string),
    });
    b.events.truncate(MAX_EVENTS);
}

/// Appends this tick's readings; a gate's series starts again when its stage changes.
fn record_gates(panel: &mut EnvPanel, rollouts: &[RolloutView], now: DateTime<Utc>) {
    let mut kept = Vec::new();
    for view in rollouts {
        for old in panel.gates.iter().filter(|g| g.endpoint == view.endpoint) {
            if old.stage == view.stage || view.verdicts.is_empty() {
                kept.push(old.clone());
            }
        }
        for v in &view.verdicts {
            let at = kept
                .iter()
                .position(|g| g.endpoint == view.endpoint && g.gate == v.gate);
            let series = match at {
                Some(i) => &mut kept[i],
                None => {
                    kept.push(GateSeries {
                        endpoint: view.endpoint.clone(),
                        gate: v.gate.clone(),
                        stage: view.stage,
                        threshold: None,
                        points: VecDeque::new(),
                        verdict: "no data",
                        describe: String::new(),
                    });
                    kept.last_mut().expect("just pushed")
                }
            };
            series.threshold = v.threshold;
            series.verdict = match v.result {
                GateResult::Pass => "pass",
                GateResult::Fail => "fail",
                GateResult::NoData => "no data",
            };
            series.describe = v.describe();
            if let Some(observed) = v.observed.filter(|o| o.is_finite()) {
                series.points.push_back((now, observed));
                while series.points.len() > MAX_POINTS {
                    series.points.pop_front();
                }
            }
        }
    }
    panel.gates = kept;
}

/// The bars of every endpoint in `live`.
pub fn panels_of(live: &LiveState) -> Vec<EndpointPanel> {
    live.endpoints
        .values()
        .map(|e| {
            let mut names: Vec<&String> = e.deployments.keys().collect();
            for n in e.traffic.keys().chain(e.mirror_traffic.keys()) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            names.sort();
            let deployments = names
                .into_iter()
                .map(|name| {
                    let (state, detail) = match e.deployments.get(name) {
                        Some(d) => match &d.state {
                            DeploymentState::Ready => ("ready", None),
                            DeploymentState::Provisioning => ("provisioning", d.phase.clone()),
                            DeploymentState::Failed { message } => {
                                ("failed", Some(message.clone()))
                            }
                        },
                        None => ("missing", None),
                    };
                    DeploymentBar {
                        name: name.clone(),
                        weight: e.traffic.get(name).copied().unwrap_or(0),
                        mirror: e.mirror_traffic.get(name).copied().unwrap_or(0),
                        state,
                        detail,
                    }
                })
                .collect();
            EndpointPanel {
                name: e.name.clone(),
                deployments,
                scoring: Vec::new(),
            }
        })
        .collect()
}
