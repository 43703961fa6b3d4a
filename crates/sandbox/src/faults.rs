//! Fault injection (`/_sandbox/faults`, documented in docs/sandbox.md): per-deployment data-plane
//! and provisioning faults, and control-plane rules that answer a matching request with an
//! error, drop its connection, or make its LRO fail.

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ArmError;
use super::net::ConnHandle;
use super::throttle::ThrottleSpec;

/// Faults of one deployment (data plane and provisioning).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFault {
    pub endpoint: String,
    pub deployment: String,
    /// 0..1; deterministic: every round(1/error_rate)-th scoring request answers 500.
    #[serde(default)]
    pub error_rate: f64,
    /// The first N scoring requests after the fault is set answer 500 (a deterministic flaky
    /// start: counted with `error_rate`'s counter, so `error_rate` applies after them).
    #[serde(default)]
    pub fail_first: u64,
    /// Added before each scoring answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// The next PUT of this deployment ends Failed.
    #[serde(default)]
    pub fail_provisioning: bool,
    /// The deployment provisions but its containers never answer (503).
    #[serde(default)]
    pub never_ready: bool,
    #[serde(skip)]
    pub scored: u64,
}

impl DeploymentFault {
    /// Counts one scoring request; true when this one must fail.
    pub fn next_fails(&mut self) -> bool {
        self.scored += 1;
        if self.scored <= self.fail_first {
            return true;
        }
        if self.error_rate <= 0.0 {
            return false;
        }
        let every = (1.0 / self.error_rate).round().max(1.0) as u64;
        self.scored.is_multiple_of(every)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// HTTP method, any case; absent matches every method.
    pub method: Option<String>,
    /// Substring of the path; absent matches every path.
    pub path_contains: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleResponse {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// A control-plane rule: the first matching rule with `times` left fires.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlRule {
    #[serde(rename = "match", default)]
    pub matcher: RuleMatch,
    pub respond: Option<RuleResponse>,
    #[serde(default)]
    pub drop_connection: bool,
    #[serde(default)]
    pub lro_fail: bool,
    /// With `drop_connection`: handle the request first (its effect happens), then drop the
    /// connection, so the client loses the response (a lost-response fault).
    #[serde(default)]
    pub after_handling: bool,
    /// How many times the rule fires; absent = every time.
    pub times: Option<u32>,
}

impl ControlRule {
    fn validate(&self) -> Result<(), String> {
        let actions = usize::from(self.respond.is_some())
            + usize::from(self.drop_connection)
            + usize::from(self.lro_fail);
        if actions != 1 {
            return Err(
                "a rule needs exactly one of respond, drop_connection: true, lro_fail: true".into(),
            );
        }
        if self.after_handling && !self.drop_connection {
            return Err("after_handling only applies to drop_connection: true".into());
        }
        if let Some(r) = &self.respond
            && !(400..=599).contains(&r.status)
        {
            return Err(format!("respond.status must be 400..599, got {}", r.status));
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.matcher
            .method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .matcher
                .path_contains
                .as_ref()
                .is_none_or(|p| path.contains(p.as_str()))
    }
}

/// Marks a response produced by a fault rule (read by the request log).
#[derive(Clone, Copy, Debug)]
pub struct FaultMark {
    pub dropped: bool,
}

/// Request extension: the LRO started by this request must end Failed.
#[derive(Clone, Copy, Debug)]
pub struct LroFail;

/// Parses a POST body: one fault or rule object, an array of them, or
/// `{"deployments": [...], "rules": [...]}`.
pub fn parse_faults(body: &Value) -> Result<(Vec<DeploymentFault>, Vec<ControlRule>), String> {
    let mut faults = Vec::new();
    let mut rules = Vec::new();
    let mut add = |v: &Value| -> Result<(), String> {
        if v.get("match").is_some()
            || v.get("respond").is_some()
            || v.get("drop_connection").is_some()
            || v.get("lro_fail").is_some()
        {
            let rule: ControlRule =
                serde_json::from_value(v.clone()).map_err(|e| format!("invalid rule: {e}"))?;
            rule.validate()?;
            rules.push(rule);
        } else {
            let fault: DeploymentFault = serde_json::from_value(v.clone())
                .map_err(|e| format!("invalid deployment fault: {e}"))?;
            if !(0.0..=1.0).contains(&fault.error_rate) {
                return Err(format!(
                    "error_rate must be within 0..1, got {}",
                    fault.error_rate
                ));
            }
            faults.push(fault);
        }
        Ok(())
    };
    match body {
        Value::Array(items) => items.iter().try_for_each(&mut add)?,
        Value::Object(obj) if obj.contains_key("deployments") || obj.contains_key("rules") => {
            for key in ["deployments", "rules"] {
                if let Some(items) = obj.get(key) {
                    items
                        .as_array()
                        .ok_or(format!("{key} must be an array"))?
                        .iter()
                        .try_for_each(&mut add)?;
                }
            }
        }
        Value::Object(_) => add(body)?,
        _ => return Err("expected a fault object, an array, or {deployments, rules}".into()),
    }
    Ok((faults, rules))
}

fn listing(state: &AppState) -> Value {
    let mut deployments: Vec<DeploymentFault> = state.store().faults.values().cloned().collect();
    deployments.sort_by(|a, b| (&a.endpoint, &a.deployment).cmp(&(&b.endpoint, &b.deployment)));
    let throttle = state.throttle().spec();
    json!({ "deployments": deployments, "rules": state.rules().clone(), "throttle": throttle })
}

/// A `throttle` key of a POST body: `Some(None)` switches throttling off (`null`).
type ThrottleChange = Option<Option<ThrottleSpec>>;

/// Takes `{"throttle": spec | null, ...}` out of an object body (see `throttle`).
fn take_throttle(body: &mut Value) -> Result<ThrottleChange, String> {
    let Some(raw) = body.as_object_mut().and_then(|o| o.remove("throttle")) else {
        return Ok(None);
    };
    if raw.is_null() {
        return Ok(Some(None));
    }
    let spec: ThrottleSpec =
        serde_json::from_value(raw).map_err(|e| format!("invalid throttle: {e}"))?;
    spec.validate()?;
    Ok(Some(Some(spec)))
}

/// `POST /_sandbox/faults`: adds rules; a deployment fault replaces that deployment's previous
/// one; a `throttle` key switches ARM-like throttling on (a spec) or off (`null`).
pub async fn post_faults(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|mut v| {
            let throttle = take_throttle(&mut v)?;
            let empty = v.as_object().is_some_and(|o| o.is_empty());
            let (faults, rules) = if throttle.is_some() && empty {
                (Vec::new(), Vec::new())
            } else {
                parse_faults(&v)?
            };
            Ok((faults, rules, throttle))
        });
    let (faults, rules, throttle) = match parsed {
        Ok(p) => p,
        Err(message) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response();
        }
    };
    if let Some(spec) = throttle {
        state.throttle().set(spec);
    }
    {
        let mut store = state.store();
        for f in faults {
            store
                .faults
                .insert((f.endpoint.clone(), f.deployment.clone()), f);
        }
    }
    state.rules().extend(rules);
    Json(listing(&state)).into_response()
}

pub async fn get_faults(State(state): State<AppState>) -> Response {
    Json(listing(&state)).into_response()
}

/// `DELETE /_sandbox/faults`: clears every fault and rule, and switches throttling off.
pub async fn clear_faults(State(state): State<AppState>) -> Response {
    state.store().faults.clear();
    state.rules().clear();
    state.throttle().set(None);
    StatusCode::NO_CONTENT.into_response()
}

enum Action {
    Respond(RuleResponse),
    Drop { after_handling: bool },
    LroFail,
}

/// Middleware: applies the first matching control-plane rule.
pub async fn apply_rules(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let action = {
        let mut rules = state.rules();
        let method = req.method().as_str();
        let path = req.uri().path();
        let hit = rules
            .iter()
            .position(|r| r.matches(method, path) && r.times != Some(0));
        hit.map(|i| {
            let rule = &mut rules[i];
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            let action = match (&rule.respond, rule.drop_connection) {
                (Some(r), _) => Action::Respond(r.clone()),
                (None, true) => Action::Drop {
                    after_handling: rule.after_handling,
                },
                (None, false) => Action::LroFail,
            };
            if rule.times == Some(0) {
                rules.remove(i);
            }
            action
        })
    };
    match action {
        None => next.run(req).await,
        Some(Action::LroFail) => {
            req.extensions_mut().insert(LroFail);
            next.run(req).await
        }
        Some(Action::Drop { after_handling }) => {
            let conn = req
                .extensions()
                .get::<ConnectInfo<ConnHandle>>()
                .map(|c| c.0.clone());
            let remote = conn
                .as_ref()
                .map(|c| c.remote.to_string())
                .unwrap_or_default();
            tracing::debug!(%remote, path = %req.uri().path(), after_handling, "sandbox fault: dropping connection");
            let mut response = if after_handling {
                next.run(req).await
            } else {
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            };
            if let Some(conn) = conn {
                conn.kill();
            }
            response
                .extensions_mut()
                .insert(FaultMark { dropped: true });
            response
        }
        Some(Action::Respond(r)) => {
            let status =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = r
                .code
                .clone()
                .unwrap_or_else(|| default_code(status).to_string());
            let message = r.message.clone().unwrap_or_else(|| {
                format!("injected by a sandbox fault rule ({})", status.as_u16())
            });
            let mut response = ArmError::new(status, &code, message).into_response();
            if let Some(secs) = r.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            response
                .extensions_mut()
                .insert(FaultMark { dropped: false });
            response
        }
    }
}

fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        400 => "BadArgument",
        401 => "AuthenticationFailed",
        404 => "ResourceNotFound",
        s if s >= 500 => "InternalServerError",
        _ => "UserError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rate_fails_every_nth_request() {
        let mut f = DeploymentFault {
            error_rate: 0.25,
            ..Default::default()
        };
        let fails: Vec<bool> = (0..8).map(|_| f.next_fails()).collect();
        assert_eq!(
            fails,
            [false, false, false, true, false, false, false, true]
        );
        let mut never = DeploymentFault::default();
        assert!(!(0..100).any(|_| never.next_fails()));
    }

    #[test]
    fn fail_first_fails_exactly_the_first_requests_then_follows_error_rate() {
        let mut f = DeploymentFault {
            fail_first: 2,
            ..Default::default()
        };
        let fails: Vec<bool> = (0..5).map(|_| f.next_fails()).collect();
        assert_eq!(fails, [true, true, false, false, false]);
    }

    #[test]
    fn bodies_parse_as_faults_or_rules() {
        let (f, r) = parse_faults(&json!([
            {"endpoint": "e", "deployment": "d", "never_ready": true},
            {"match": {"method": "PUT"}, "respond": {"status": 429, "retry_after": 1}, "times": 2}
        ]))
        .unwrap();
        assert_eq!(f.len(), 1);
        assert!(f[0].never_ready);
        assert_eq!(r[0].times, Some(2));
        assert!(
            parse_faults(
                &json!({"match": {}, "respond": {"status": 500}, "drop_connection": true})
            )
            .is_err()
        );
        assert!(
            parse_faults(&json!({"endpoint": "e", "deployment": "d", "error_rate": 2.0})).is_err()
        );
        assert!(parse_faults(&json!({"endpoint": "e", "deployment": "d", "typo": 1})).is_err());
    }

    #[test]
    fn rules_match_method_and_path() {
        let rule = ControlRule {
            matcher: RuleMatch {
                method: Some("put".into()),
                path_contains: Some("/deployments/".into()),
            },
            respond: None,
            drop_connection: true,
            lro_fail: false,
            after_handling: false,
            times: None,
        };
        assert!(rule.matches("PUT", "/x/deployments/blue"));
        assert!(!rule.matches("GET", "/x/deployments/blue"));
        assert!(!rule.matches("PUT", "/x/onlineEndpoints/e"));
    }
}
