//! The change history of every endpoint's routing: each change of its `traffic` and
//! `mirrorTraffic` maps and of each deployment's existence and provisioning state, stamped with
//! the sandbox clock, in order, served at `GET /_sandbox/history` (no auth) and cleared by
//! `DELETE`. A test replays it to prove that no moment routed traffic to a missing or unready
//! deployment (docs/sandbox.md, "Change history").
//!
//! The store is diffed against the last snapshot whenever it is unlocked and after each
//! operation that settles, so a change is seen however it was made (a PUT, a PATCH, an operation
//! finishing, an endpoint deleted with its deployments). One entry holds what changed for one
//! endpoint at one moment: the changes in one entry happened together (under one lock).

use std::collections::{BTreeMap, HashMap, VecDeque};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::state::Store;

/// How many entries are kept; older ones are dropped (and counted in `dropped`).
pub const MAX_HISTORY: usize = 100_000;

/// What changed for one endpoint at one moment. A field is present only when it changed.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    pub seq: u64,
    /// RFC 3339 with microseconds, on the sandbox clock.
    pub time: String,
    pub endpoint: String,
    /// The whole new traffic map (`{}` when empty or when the endpoint is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<BTreeMap<String, u32>>,
    /// The whole new mirror map (`{}` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<BTreeMap<String, u32>>,
    /// Deployments whose state changed: the new provisioning state, or `null` once it is gone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, Option<&'static str>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    traffic: BTreeMap<String, u32>,
    mirror: BTreeMap<String, u32>,
    deployments: BTreeMap<String, &'static str>,
}

static NO_MIRROR: BTreeMap<String, u32> = BTreeMap::new();

#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    seq: u64,
    dropped: u64,
    last: HashMap<String, Snapshot>,
    /// Walks over the store since start (each compares every endpoint with its last snapshot).
    walks: u64,
}

impl History {
    /// Walks over the store so far (see [`observe`]); read by the store guard's test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn walks(&self) -> u64 {
        self.walks
    }

    fn push(&mut self, mut entry: HistoryEntry) {
        self.seq += 1;
        entry.seq = self.seq;
        if self.entries.len() == MAX_HISTORY {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(entry);
    }

    /// Clears the entries, then records every endpoint's whole current state, so a reader
    /// starting from here knows where it starts.
    fn restart(&mut self, store: &Store, now: DateTime<Utc>) {
        self.entries.clear();
        self.dropped = 0;
        self.last.clear();
        observe(self, store, now);
    }
}

fn snapshot_differs(snap: &Snapshot, ep: &super::state::Endpoint) -> bool {
    snap.traffic != ep.traffic
        || &snap.mirror != ep.mirror.as_ref().unwrap_or(&NO_MIRROR)
        || snap.deployments.len() != ep.deployments.len()
        || snap
            .deployments
            .iter()
            .zip(ep.deployments.iter())
            .any(|((a, sa), (b, d))| a != b || *sa != d.state.as_str())
}

/// Records what changed in `store` since the last call.
pub fn observe(history: &mut History, store: &Store, now: DateTime<Utc>) {
    history.walks += 1;
    let mut seen = 0usize;
    for ep in store.workspaces.values().flat_map(|eps| eps.values()) {
        seen += 1;
        let differs = match history.last.get(&ep.name) {
            Some(snap) => snapshot_differs(snap, ep),
            None => true,
        };
        if differs {
            let snap = Snapshot {
                traffic: ep.traffic.clone(),
                mirror: ep.mirror.clone().unwrap_or_default(),
                deployments: ep
                    .deployments
                    .iter()
                    .map(|(n, d)| (n.clone(), d.state.as_str()))
                    .collect(),
            };
            record(history, ep.name.clone(), Some(snap), now);
        }
    }
    if seen < history.last.len() {
        let gone: Vec<String> = history
            .last
            .keys()
            .filter(|name| {
                !store
                    .workspaces
                    .values()
                    .any(|eps| eps.contains_key(name.as_str()))
            })
            .cloned()
            .collect();
        for name in gone {
            record(history, name, None, now);
        }
    }
}

/// `new` is `None` once the endpoint is gone.
fn record(history: &mut History, endpoint: String, new: Option<Snapshot>, now: DateTime<Utc>) {
    let exists = new.is_some();
    let new = new.unwrap_or_default();
    let old = history.last.remove(&endpoint).unwrap_or_default();
    let mut deployments: BTreeMap<String, Option<&'static str>> = BTreeMap::new();
    for (name, state) in &new.deployments {
        if old.deployments.get(name) != Some(state) {
            deployments.insert(name.clone(), Some(state));
        }
    }
    for name in old.deployments.keys() {
        if !new.deployments.contains_key(name) {
            deployments.insert(name.clone(), None);
        }
    }
    let entry = HistoryEntry {
        seq: 0,
        time: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        endpoint: endpoint.clone(),
        traffic: (old.traffic != new.traffic).then(|| new.traffic.clone()),
        mirror: (old.mirror != new.mirror).then(|| new.mirror.clone()),
        deployments,
    };
    if entry.traffic.is_some() || entry.mirror.is_some() || !entry.deployments.is_empty() {
        history.push(entry);
    }
    if exists {
        history.last.insert(endpoint, new);
    }
}

/// `GET /_sandbox/history`: `{"dropped": N, "entries": [...]}`.
pub async fn get_history(State(state): State<AppState>) -> Response {
    let store = state.store();
    let body = serde_json::json!({
        "dropped": store.history.dropped,
        "entries": store.history.entries,
    });
    drop(store);
    Json(body).into_response()
}

/// `DELETE /_sandbox/history`: clears it and records every endpoint's current state.
pub async fn clear_history(State(state): State<AppState>) -> Response {
    let mut store = state.store();
    let now = state.clock.now_utc();
    let mut history = std::mem::take(&mut store.history);
    history.restart(&store, now);
    store.history = history;
    drop(store);
    StatusCode::NO_CONTENT.into_response()
}
