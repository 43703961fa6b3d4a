//! Operation holds (`/_sandbox/operations`, documented in docs/sandbox.md): a test asks the
//! sandbox to keep matching operations in their non-terminal state (`Creating`, `Updating`,
//! `Scaling`, `Deleting`; the LRO answering `InProgress` [AML §3]) until it calls
//! `POST /_sandbox/operations/release`. A hold replaces "the provisioning delay is long enough"
//! in tests that must observe an operation in flight, whatever the machine's load.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::state::Target;

/// Which operations to hold. Every field is optional: `{}` holds every operation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperationHold {
    /// Only operations on this endpoint or one of its deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Only operations on a deployment of this name (not the endpoint's own operations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// How many operations the hold catches; absent = every matching one until the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

impl OperationHold {
    /// Parses and checks a `POST /_sandbox/operations/hold` body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let text = String::from_utf8_lossy(body);
        let hold: OperationHold = if text.trim().is_empty() {
            OperationHold::default()
        } else {
            serde_json::from_str(&text).map_err(|e| format!("invalid hold: {e}"))?
        };
        if hold.times == Some(0) {
            return Err("times must be at least 1 (absent holds every matching operation)".into());
        }
        if hold.endpoint.as_deref() == Some("") || hold.deployment.as_deref() == Some("") {
            return Err("endpoint and deployment must not be empty".into());
        }
        Ok(hold)
    }

    fn matches(&self, target: &Target) -> bool {
        self.endpoint.as_ref().is_none_or(|e| *e == target.endpoint)
            && self
                .deployment
                .as_ref()
                .is_none_or(|d| target.deployment.as_ref() == Some(d))
    }
}

/// The holds in force and the operations they hold, in the order they were caught.
#[derive(Debug, Default)]
pub struct Holds {
    rules: Vec<OperationHold>,
    held: Vec<String>,
}

impl Holds {
    pub fn add(&mut self, hold: OperationHold) {
        self.rules.push(hold);
    }

    /// True when a hold catches the new operation `id` on `target` (the first matching hold
    /// counts one use; a used-up hold is removed). The caller must not schedule it then.
    pub fn catch(&mut self, target: &Target, id: &str) -> bool {
        let Some(i) = self.rules.iter().position(|h| h.matches(target)) else {
            return false;
        };
        if let Some(t) = self.rules[i].times.as_mut() {
            *t -= 1;
            if *t == 0 {
                self.rules.remove(i);
            }
        }
        self.held.push(id.to_string());
        true
    }

    /// Removes every hold and hands back the held operations' ids, oldest first.
    pub fn release(&mut self) -> Vec<String> {
        self.rules.clear();
        std::mem::take(&mut self.held)
    }

    pub fn held(&self) -> &[String] {
        &self.held
    }

    pub fn rules(&self) -> &[OperationHold] {
        &self.rules
    }
}

fn describe(state: &AppState, ids: &[String]) -> Vec<Value> {
    let store = state.store();
    ids.iter()
        .filter_map(|id| store.ops.get(id))
        .map(|op| {
            json!({
                "id": op.id,
                "endpoint": op.target.endpoint,
                "deployment": op.target.deployment,
                "kind": format!("{:?}", op.kind),
                "status": op.status.as_str(),
            })
        })
        .collect()
}

fn listing(state: &AppState) -> Value {
    let (rules, held) = {
        let store = state.store();
        (store.holds.rules().to_vec(), store.holds.held().to_vec())
    };
    json!({ "holds": rules, "held": describe(state, &held) })
}

/// `POST /_sandbox/operations/hold`: adds a hold; answers the listing.
pub async fn post_hold(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    match OperationHold::parse(&body) {
        Ok(hold) => {
            state.store().holds.add(hold);
            Json(listing(&state)).into_response()
        }
        Err(message) => (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response(),
    }
}

/// `GET /_sandbox/operations`: the holds in force and the operations they hold.
pub async fn get_operations(State(state): State<AppState>) -> Response {
    Json(listing(&state)).into_response()
}

/// `POST /_sandbox/operations/release`: removes every hold; each held operation then runs out
/// the rest of its provisioning delay (counted from its start) and ends as it would have.
pub async fn post_release(State(state): State<AppState>) -> Response {
    let released = {
        let mut store = state.store();
        let now = state.clock.now();
        store.release_held(now)
    };
    tracing::debug!(count = released.len(), "sandbox: released held operations");
    Json(json!({ "released": describe(&state, &released) })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::WorkspaceKey;

    fn target(endpoint: &str, deployment: Option<&str>) -> Target {
        Target {
            ws: WorkspaceKey {
                subscription: "s".into(),
                resource_group: "rg".into(),
                workspace: "ws".into(),
            },
            endpoint: endpoint.into(),
            deployment: deployment.map(Into::into),
        }
    }

    #[test]
    fn a_hold_matches_its_endpoint_and_deployment_only() {
        let ep = OperationHold::parse(br#"{"endpoint": "e1"}"#).unwrap();
        assert!(ep.matches(&target("e1", None)));
        assert!(ep.matches(&target("e1", Some("blue"))));
        assert!(!ep.matches(&target("e2", None)));
        let dep = OperationHold::parse(br#"{"endpoint": "e1", "deployment": "blue"}"#).unwrap();
        assert!(dep.matches(&target("e1", Some("blue"))));
        assert!(!dep.matches(&target("e1", None)));
        assert!(!dep.matches(&target("e1", Some("green"))));
        assert!(
            OperationHold::parse(b"")
                .unwrap()
                .matches(&target("x", None))
        );
    }

    #[test]
    fn a_hold_with_times_catches_that_many_operations_then_goes_away() {
        let mut holds = Holds::default();
        holds.add(OperationHold::parse(br#"{"times": 2}"#).unwrap());
        assert!(holds.catch(&target("e1", None), "op1"));
        assert!(holds.catch(&target("e2", None), "op2"));
        assert!(!holds.catch(&target("e1", None), "op3"));
        assert!(holds.rules().is_empty());
        assert_eq!(holds.release(), ["op1", "op2"]);
        assert!(holds.held().is_empty());
    }

    #[test]
    fn bad_hold_bodies_are_refused_with_a_reason() {
        let err = OperationHold::parse(br#"{"times": 0}"#).unwrap_err();
        assert!(err.contains("times must be at least 1"), "{err}");
        let err = OperationHold::parse(br#"{"endpoint": "e1", "typo": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `typo`"), "{err}");
        assert!(OperationHold::parse(br#"{"endpoint": ""}"#).is_err());
        assert!(OperationHold::parse(b"[1]").is_err());
    }
}
