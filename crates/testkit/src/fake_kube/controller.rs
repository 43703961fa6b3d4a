//! The fake Deployment controller: after a short delay it "rolls out" each Deployment by writing
//! its status, unless a per-Deployment script holds it, stops it partway, or makes it exceed its
//! progress deadline. Every branch of the [K8S §3] predicate can be reached.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Shared;
use super::store::KINDS;

/// What the controller does with one Deployment (by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Script {
    /// Roll out fully: observedGeneration, updated/available replicas, NewReplicaSetAvailable.
    Complete,
    /// Never observe the new generation (check 1 stays "waiting for spec update").
    Hold,
    /// Observe the generation but stop with these counts (checks 3, 4, 5).
    Partial {
        replicas: i64,
        updated: i64,
        available: i64,
    },
    /// Progressing=False, reason ProgressDeadlineExceeded (check 2).
    DeadlineExceeded,
}

fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason,
           "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

/// The status a script leads to for a Deployment at `generation` wanting `replicas`.
pub fn status_for(script: &Script, generation: i64, replicas: i64) -> Option<Value> {
    // The API server omits zero counts.
    let count = |n: i64| if n == 0 { Value::Null } else { json!(n) };
    let mut status = match script {
        Script::Hold => return None,
        Script::Complete => json!({
            "observedGeneration": generation,
            "replicas": count(replicas), "updatedReplicas": count(replicas),
            "readyReplicas": count(replicas), "availableReplicas": count(replicas),
            "conditions": [condition("Available", "True", "MinimumReplicasAvailable"),
                           condition("Progressing", "True", "NewReplicaSetAvailable")],
        }),
        Script::Partial {
            replicas,
            updated,
            available,
        } => json!({
            "observedGeneration": generation,
            "replicas": count(*replicas), "updatedReplicas": count(*updated),
            "readyReplicas": count(*available), "availableReplicas": count(*available),
            "conditions": [condition("Progressing", "True", "ReplicaSetUpdated")],
        }),
        Script::DeadlineExceeded => json!({
            "observedGeneration": generation,
            "replicas": count(replicas), "unavailableReplicas": count(replicas),
            "conditions": [condition("Available", "False", "MinimumReplicasUnavailable"),
                           condition("Progressing", "False", "ProgressDeadlineExceeded")],
        }),
    };
    if let Some(map) = status.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    Some(status)
}

pub async fn run(shared: Arc<Shared>, delay: Duration) {
    let deployments = KINDS[0];
    // (namespace, name, generation) -> when the controller first saw it.
    let mut seen: BTreeMap<(String, String, i64), Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let scripts = shared.scripts.lock().unwrap().clone();
        let mut store = shared.store.lock().unwrap();
        let pending: Vec<(String, String, i64, i64)> = store
            .objects
            .iter()
            .filter(|((plural, _, _), _)| *plural == deployments.plural)
            .map(|((_, ns, name), s)| {
                let generation = s
                    .object
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let replicas = s
                    .object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                (ns.clone(), name.clone(), generation, replicas)
            })
            .collect();
        for (ns, name, generation, replicas) in pending {
            let first = *seen
                .entry((ns.clone(), name.clone(), generation))
                .or_insert_with(Instant::now);
            if first.elapsed() < delay {
                continue;
            }
            let script = scripts.get(&name).cloned().unwrap_or(Script::Complete);
            if let Some(status) = status_for(&script, generation, replicas) {
                store.set_status(deployments, &ns, &name, status);
            }
        }
    }
}
