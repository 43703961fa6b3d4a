//! A checker over the sandbox's change history (`GET /_sandbox/history`, docs/sandbox.md): the
//! safety invariants of a staged rollout, whatever crashed or restarted during it.
//!
//! - [`check_routing`]: at no moment does a positive `traffic` or `mirror` weight name a
//!   deployment that is missing or not `Succeeded`, and every traffic map sums to 100 or is empty.
//! - [`check_stages`]: one endpoint's traffic maps visit a policy's stages in order (no stage
//!   skipped; a stage may be written again only as the same map), each stage holds for at least its
//!   bake, and the only other move allowed is one rollback to the baseline, after which nothing
//!   moves.
//!
//! Weights of 0 are not routing: maps are compared without them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A traffic map without its zero weights.
pub type Traffic = BTreeMap<String, u64>;

/// `[("blue", 90), ("green", 10)]` as a [`Traffic`] (zeros dropped).
pub fn traffic_of(pairs: &[(&str, u64)]) -> Traffic {
    pairs
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(k, w)| (k.to_string(), *w))
        .collect()
}

/// One stage of a policy as the endpoint should show it: its traffic and its bake.
#[derive(Clone, Debug)]
pub struct Stage {
    pub traffic: Traffic,
    pub bake: Duration,
}

/// The stages a canary policy routes through from `baseline` to `candidate`, as
/// `stage N/M: routing baseline 100-w / candidate w`, then the declared `candidate 100` (whose
/// bake is not checked: the rollout is over once it is written).
pub fn canary_stages(baseline: &str, candidate: &str, steps: &[(u64, Duration)]) -> Vec<Stage> {
    let mut stages: Vec<Stage> = steps
        .iter()
        .map(|(w, bake)| Stage {
            traffic: traffic_of(&[(baseline, 100 - w), (candidate, *w)]),
            bake: *bake,
        })
        .collect();
    stages.push(Stage {
        traffic: traffic_of(&[(candidate, 100)]),
        bake: Duration::ZERO,
    });
    stages
}

/// How far one endpoint's rollout went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The last stage reached (1-based; 0 = still at the baseline).
    pub reached: usize,
    /// Traffic went back to the baseline after a stage.
    pub rolled_back: bool,
}

fn entries(history: &Value) -> Result<&Vec<Value>, String> {
    if history["dropped"].as_u64() != Some(0) {
        return Err(format!(
            "the history dropped {} entries: it is incomplete",
            history["dropped"]
        ));
    }
    history["entries"]
        .as_array()
        .ok_or_else(|| format!("a history has an `entries` array: {history}"))
}

fn time_of(entry: &Value) -> Result<DateTime<Utc>, String> {
    entry["time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("history entry without an RFC 3339 time: {entry}"))
}

fn weights(map: &Value) -> Result<Traffic, String> {
    let obj = map
        .as_object()
        .ok_or_else(|| format!("a weight map: {map}"))?;
    let mut out = Traffic::new();
    for (k, v) in obj {
        let w = v.as_u64().ok_or_else(|| format!("weight {k}: {v}"))?;
        if w > 0 {
            out.insert(k.clone(), w);
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Live {
    traffic: Traffic,
    mirror: Traffic,
    deployments: BTreeMap<String, String>,
    /// Deployments that reached `Succeeded` since they were created: an update or a scale of
    /// one of these keeps serving its previous version while it runs ([AML §3]; the sandbox's
    /// `serving`), so it may keep or take traffic meanwhile.
    served: BTreeSet<String>,
}

/// Whether traffic may point at a deployment in `state`: one that is `Succeeded`, or one that
/// already served and is being updated or scaled (it answers from its previous version).
fn routable(state: Option<&str>, served: bool) -> bool {
    match state {
        Some("Succeeded") => true,
        Some("Updating" | "Scaling") => served,
        _ => false,
    }
}

/// Replays the whole history and fails at the first moment that routed to a missing or
/// unready deployment (one still being created, failed, deleting or gone; an update or scale
/// of a deployment that already served is not unready), or whose traffic did not sum to 100
/// (or 0).
pub fn check_routing(history: &Value) -> Result<(), String> {
    let mut live: BTreeMap<String, Live> = BTreeMap::new();
    for entry in entries(history)? {
        let endpoint = entry["endpoint"].as_str().unwrap_or_default().to_string();
        let ep = live.entry(endpoint.clone()).or_default();
        if let Some(deps) = entry["deployments"].as_object() {
            for (name, state) in deps {
                match state.as_str() {
                    Some(s) => {
                        match s {
                            "Succeeded" => ep.served.insert(name.clone()),
                            "Creating" | "Failed" | "Deleting" => ep.served.remove(name),
                            _ => false,
                        };
                        ep.deployments.insert(name.clone(), s.to_string())
                    }
                    None => {
                        ep.served.remove(name);
                        ep.deployments.remove(name)
                    }
                };
            }
        }
        if !entry["traffic"].is_null() {
            ep.traffic = weights(&entry["traffic"])?;
        }
        if !entry["mirror"].is_null() {
            ep.mirror = weights(&entry["mirror"])?;
        }
        let sum: u64 = ep.traffic.values().sum();
        if sum != 0 && sum != 100 {
            return Err(format!(
                "endpoint {endpoint}: traffic {:?} sums to {sum} (entry {entry})",
                ep.traffic
            ));
        }
        for (what, map) in [("traffic", &ep.traffic), ("mirror", &ep.mirror)] {
            for name in map.keys() {
                let state = ep.deployments.get(name).map(String::as_str);
                match state {
                    _ if routable(state, ep.served.contains(name)) => {}
                    state => {
                        return Err(format!(
                            "endpoint {endpoint}: {what} {map:?} points at deployment {name} which is {} (entry {entry})",
                            state.unwrap_or("missing")
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Checks that `endpoint`'s traffic starts at `baseline` and then visits `stages` in order, each
/// held for at least its bake; a move back to `baseline` is a rollback, after which nothing moves.
pub fn check_stages(
    history: &Value,
    endpoint: &str,
    baseline: &Traffic,
    stages: &[Stage],
) -> Result<Walk, String> {
    let mut maps: Vec<(DateTime<Utc>, Traffic)> = Vec::new();
    for entry in entries(history)? {
        if entry["endpoint"] != endpoint || entry["traffic"].is_null() {
            continue;
        }
        let t = weights(&entry["traffic"])?;
        if maps.last().is_some_and(|(_, last)| *last == t) {
            continue; // the same map written again: not a move
        }
        maps.push((time_of(entry)?, t));
    }
    let path = || {
        maps.iter()
            .map(|(t, m)| format!("{} {m:?}", t.format("%H:%M:%S%.3f")))
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    let Some((_, first)) = maps.first() else {
        return Err(format!("endpoint {endpoint}: no traffic in the history"));
    };
    if first != baseline {
        return Err(format!(
            "endpoint {endpoint}: starts at {first:?}, not the baseline {baseline:?}:\n  {}",
            path()
        ));
    }
    let mut walk = Walk {
        reached: 0,
        rolled_back: false,
    };
    for (i, (at, map)) in maps.iter().enumerate().skip(1) {
        if walk.rolled_back {
            return Err(format!(
                "endpoint {endpoint}: traffic moved to {map:?} after the rollback:\n  {}",
                path()
            ));
        }
        let next = stages.get(walk.reached);
        if next.is_some_and(|s| s.traffic == *map) {
            walk.reached += 1;
        } else if map == baseline && walk.reached > 0 {
            walk.rolled_back = true;
        } else {
            return Err(format!(
                "endpoint {endpoint}: after stage {} traffic went to {map:?}, expected {:?} (no stage skipped):\n  {}",
                walk.reached,
                next.map(|s| &s.traffic),
                path()
            ));
        }
        // The stage just left (if any) held for at least its bake.
        if i >= 2 {
            let left = if walk.rolled_back {
                walk.reached
            } else {
                walk.reached - 1
            };
            let bake = stages[left - 1].bake;
            let held = (*at - maps[i - 1].0).to_std().unwrap_or_default();
            // A rollback ends a stage early on purpose (a failed gate): only moves forward
            // must honour the bake.
            if !walk.rolled_back && held < bake {
                return Err(format!(
                    "endpoint {endpoint}: stage {left} {:?} held {held:?}, less than its bake {bake:?}:\n  {}",
                    stages[left - 1].traffic,
                    path()
                ));
            }
        }
    }
    Ok(walk)
}
