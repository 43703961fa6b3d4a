//! Entra-shaped token issuance [AML §6] and bearer-token checks for ARM (§6) and the
//! data plane (§5). Tokens are random opaque strings that only this sandbox knows; they are
//! never logged.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ArmError;

pub const ARM_RESOURCE: &str = "https://management.azure.com";
pub const ML_RESOURCE: &str = "https://ml.azure.com";
/// §6: tokens live 3599 s.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Who a token is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// ARM: `https://management.azure.com`.
    Arm,
    /// Data plane, AADToken endpoints: `https://ml.azure.com`.
    Ml,
    /// Data plane, AMLToken endpoints: issued by `POST …/token` for one endpoint.
    Endpoint(String),
}

#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: HashMap<String, (Audience, Instant)>,
}

impl TokenStore {
    pub fn issue(&mut self, audience: Audience, now: Instant, lifetime: Duration) -> String {
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, (_, exp)| *exp > now);
        }
        let token = random_secret();
        self.tokens
            .insert(token.clone(), (audience, now + lifetime));
        token
    }

    /// Forgets every issued token (as a credential rotation or a revoked session does); the
    /// number revoked. Holders get 401 until they fetch a new one.
    pub fn revoke_all(&mut self) -> usize {
        let n = self.tokens.len();
        self.tokens.clear();
        n
    }

    /// The audience of a live token.
    pub fn check(&self, token: &str, now: Instant) -> Option<&Audience> {
        self.tokens
            .get(token)
            .filter(|(_, exp)| *exp > now)
            .map(|(aud, _)| aud)
    }
}

/// 32 random bytes, base64url: tokens, keys and generated client secrets.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time string equality for secrets.
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `scope`/`resource` → audience: `https://management.azure.com/.default` (or `/`), or
/// `https://ml.azure.com/.default` for data-plane AAD tokens.
pub fn audience_of(scope: &str) -> Option<Audience> {
    let s = scope.trim();
    let s = s.strip_suffix(".default").unwrap_or(s);
    match s.trim_end_matches('/') {
        ARM_RESOURCE => Some(Audience::Arm),
        ML_RESOURCE => Some(Audience::Ml),
        _ => None,
    }
}

/// A scope or resource naming the sandbox itself (`<base URL>/.default`) is an ARM audience too:
/// a client configured with a custom cloud whose resource manager is the sandbox (the
/// azure-ai-ml SDK's `cloud_metadata`) asks for `<resource manager>/.default`, as it would in a
/// sovereign cloud.
fn audience_for(state: &AppState, scope: &str) -> Option<Audience> {
    audience_of(scope).or_else(|| {
        let s = scope.trim();
        let s = s.strip_suffix(".default").unwrap_or(s);
        (s.trim_end_matches('/') == state.base_url).then_some(Audience::Arm)
    })
}

/// AADSTS-like error JSON (what login.microsoftonline.com returns).
fn aad_error(
    state: &AppState,
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": state.clock.now_utc().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/token` (§6): client credentials with a secret, or with a
/// federated assertion (workload identity: any non-empty assertion for the configured client).
pub async fn token_endpoint(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let cfg = &state.config;
    if tenant != cfg.tenant_id {
        return aad_error(
            &state,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("tenant '{tenant}' not found"),
        );
    }
    if form.grant_type.as_deref() != Some("client_credentials") {
        return aad_error(
            &state,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "the app requested an unsupported grant type; use client_credentials",
        );
    }
    let client_id = form.client_id.unwrap_or_default();
    if client_id != cfg.client_id {
        return aad_error(
            &state,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("application with identifier '{client_id}' was not found in the directory"),
        );
    }
    let authenticated = match (
        &form.client_secret,
        &form.client_assertion_type,
        &form.client_assertion,
    ) {
        (Some(secret), _, _) => secret_eq(secret, &cfg.client_secret),
        (None, Some(kind), Some(assertion)) => kind == JWT_BEARER && !assertion.trim().is_empty(),
        _ => false,
    };
    if !authenticated {
        return aad_error(
            &state,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "invalid client secret or assertion provided",
        );
    }
    let Some(audience) = form.scope.as_deref().and_then(|s| audience_for(&state, s)) else {
        return aad_error(
            &state,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "the provided scope is not valid; use https://management.azure.com/.default or https://ml.azure.com/.default",
        );
    };
    let token = state.issue_token(audience);
    let secs = TOKEN_LIFETIME.as_secs();
    Json(json!({ "token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token }))
        .into_response()
}

#[derive(Deserialize)]
pub struct ImdsQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    resource: Option<String>,
    client_id: Option<String>,
}

/// `GET /metadata/identity/oauth2/token` (§6 IMDS): needs `Metadata: true`; numbers are strings.
pub async fn imds(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ImdsQuery>,
) -> Response {
    let bad = |msg: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": msg})),
        )
            .into_response()
    };
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return bad("Required metadata header not specified");
    }
    if q.api_version.is_none() {
        return bad("Required query variable 'api-version' is missing");
    }
    if q.client_id
        .as_deref()
        .is_some_and(|c| c != state.config.client_id)
    {
        return bad("Identity not found");
    }
    let Some(resource) = q.resource else {
        return bad("Required query variable 'resource' is missing");
    };
    let Some(audience) = audience_for(&state, &resource) else {
        return bad("resource is not a known audience");
    };
    let token = state.issue_token(audience);
    let now = state.clock.now_utc().timestamp();
    let secs = TOKEN_LIFETIME.as_secs();
    Json(json!({
        "access_token": token,
        "client_id": state.config.client_id,
        "expires_in": secs.to_string(),
        "expires_on": (now + secs as i64).to_string(),
        "ext_expires_in": secs.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Response {
    let base = &state.base_url;
    Json(json!({
        "issuer": format!("{base}/{tenant}/v2.0"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "grant_types_supported": ["client_credentials"],
        "tenant_region_scope": "NA",
    }))
    .into_response()
}

/// `POST /_sandbox/tokens/revoke` (no auth, like every `/_sandbox` route): every token issued
/// so far stops working at once, long before it expires.
pub async fn revoke_tokens(State(state): State<AppState>) -> Response {
    let revoked = state.revoke_tokens();
    tracing::debug!(revoked, "sandbox: tokens revoked");
    Json(json!({ "revoked": revoked })).into_response()
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware for every ARM route: a live ARM-audience token issued here, else 401 (§6).
pub async fn require_arm_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "authentication failed: the 'Authorization' header is missing or is not a bearer token",
        )
        .into_response();
    };
    match state.token_audience(token) {
        Some(Audience::Arm) => next.run(req).await,
        Some(_) => ArmError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience",
            "the access token has an invalid audience; expected https://management.azure.com/",
        )
        .into_response(),
        None => ArmError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "the access token is invalid or expired",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_map_to_audiences() {
        assert_eq!(
            audience_of("https://management.azure.com/.default"),
            Some(Audience::Arm)
        );
        assert_eq!(
            audience_of("https://management.azure.com//.default"),
            Some(Audience::Arm)
        );
        assert_eq!(
            audience_of("https://management.azure.com/"),
            Some(Audience::Arm)
        );
        assert_eq!(
            audience_of("https://ml.azure.com/.default"),
            Some(Audience::Ml)
        );
        assert_eq!(audience_of("https://graph.microsoft.com/.default"), None);
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let t = store.issue(Audience::Arm, now, Duration::from_secs(1));
        assert_eq!(store.check(&t, now), Some(&Audience::Arm));
        assert_eq!(store.check(&t, now + Duration::from_secs(2)), None);
        assert_eq!(store.check("made-up", now), None);
    }

    #[test]
    fn bearer_parsing_accepts_any_scheme_case() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
