//! The agent's HTTP server: `/healthz`, `/readyz`, `/metrics`, `/status` and `POST /webhook`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::watch;

use super::status::AgentState;
use super::trigger::SyncTrigger;
use super::webhook::{self, MAX_BODY_BYTES, WebhookAction, WebhookError};
use crate::source::Secret;

/// Webhook settings: the shared secret and the ref pushes must touch (`None`: any push).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub secret: Secret,
    pub tracked_ref: Option<String>,
}

#[derive(Clone)]
pub struct HttpContext {
    pub state: Arc<AgentState>,
    pub webhook: Option<WebhookConfig>,
    /// Wakes the fetch loop (and counts the request for `/status`).
    pub trigger: Arc<SyncTrigger>,
    /// A webhook body must arrive completely within this time (408 otherwise).
    pub body_timeout: Duration,
    /// With leader election: how a standby passes a push on to the leader.
    pub forward: Option<Forward>,
    /// MLflow registry webhooks (`--mlflow-webhook-secret-file`), `POST /mlflow/webhook`.
    pub mlflow: Option<super::mlflow_hook::MlflowHook>,
}

/// A standby's way to the leader: it passes on each authenticated push, with the sender's
/// signature headers, so the leader (which checks them again) fetches now instead of at its
/// next poll.
#[derive(Clone)]
pub struct Forward {
    /// Whether this replica leads (then nothing is forwarded).
    pub leading: watch::Receiver<bool>,
    /// The leader's advertised base URL, from the Lease.
    pub leader_url: watch::Receiver<Option<String>>,
    pub client: reqwest::Client,
}

/// Marks a forwarded push, so it is never forwarded twice (e.g. during a leader change).
pub const FORWARDED_HEADER: &str = "x-flightdeck-forwarded";

/// Headers the leader needs to authenticate and classify a push.
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "x-github-event",
    "x-github-delivery",
    "x-hub-signature-256",
    "x-gitlab-event",
    "x-gitlab-token",
];

/// The client standbys forward with: a push must not hold the sender for long.
pub fn forward_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap_or_default()
}

pub fn router(ctx: HttpContext) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/webhook", post(webhook_handler))
        .route("/mlflow/webhook", post(mlflow_handler))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

async fn readyz(State(ctx): State<HttpContext>) -> Response {
    match ctx.state.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(ctx): State<HttpContext>) -> Response {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        ctx.state.metrics.render(),
    )
        .into_response()
}

async fn status(State(ctx): State<HttpContext>) -> Json<super::status::AgentStatus> {
    Json(ctx.state.snapshot())
}

/// Reads the whole body within `ctx.body_timeout`: a client dripping its body is answered 408
/// and its connection closed, instead of holding a connection slot indefinitely.
async fn read_body(ctx: &HttpContext, request: Request) -> Result<Bytes, Response> {
    match tokio::time::timeout(ctx.body_timeout, Bytes::from_request(request, ctx)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(rejection)) => Err(rejection.into_response()),
        Err(_) => {
            tracing::warn!(timeout = ?ctx.body_timeout, "webhook body not received in time");
            Err((
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                Json(json!({"error": format!(
                    "request body not received within {}",
                    humantime::format_duration(ctx.body_timeout)
                )})),
            )
                .into_response())
        }
    }
}

async fn mlflow_handler(State(ctx): State<HttpContext>, request: Request) -> Response {
    let headers = request.headers().clone();
    let body = match read_body(&ctx, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match &ctx.mlflow {
        Some(hook) => super::mlflow_hook::handle(&ctx.state, hook, &headers, &body),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "MLflow webhook disabled: set --mlflow-uri and --mlflow-webhook-secret-file"})),
        )
            .into_response(),
    }
}

async fn webhook_handler(State(ctx): State<HttpContext>, request: Request) -> Response {
    let headers = request.headers().clone();
    let body = match read_body(&ctx, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(config) = &ctx.webhook else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "webhook disabled: set --webhook-secret-file"})),
        )
            .into_response();
    };
    let provider = match webhook::authenticate(&headers, &body, config.secret.expose().as_bytes()) {
        Ok(provider) => provider,
        Err(err) => {
            tracing::warn!(error = %err, "webhook rejected");
            ctx.state.metrics.webhook("unauthorized");
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": err.to_string()})),
            )
                .into_response();
        }
    };
    match webhook::classify(provider, &headers, &body, config.tracked_ref.as_deref()) {
        Ok(WebhookAction::Sync { git_ref, after }) => {
            tracing::info!(git_ref = %git_ref, after = after.as_deref().unwrap_or(""), "webhook push, syncing");
            ctx.state.metrics.webhook("sync");
            ctx.trigger.request();
            let mut answer = json!({"status": "sync triggered", "ref": git_ref});
            match forward_to_leader(&ctx, &headers, &body).await {
                Some(Ok(url)) => answer["forwarded_to"] = json!(url),
                Some(Err(err)) => answer["forward_error"] = json!(err),
                None => {}
            }
            (StatusCode::ACCEPTED, Json(answer)).into_response()
        }
        Ok(WebhookAction::Ignore(reason)) => {
            tracing::debug!(reason = %reason, "webhook ignored");
            ctx.state.metrics.webhook("ignored");
            (
                StatusCode::OK,
                Json(json!({"status": "ignored", "reason": reason})),
            )
                .into_response()
        }
        Err(
            err @ (WebhookError::Malformed(_)
            | WebhookError::MissingEvent { .. }
            | WebhookError::UnsupportedEvent { .. }),
        ) => {
            tracing::warn!(error = %err, "webhook refused");
            ctx.state.metrics.webhook("bad_request");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": err.to_string()})),
            )
                .into_response()
        }
        Err(err) => {
            ctx.state.metrics.webhook("unauthorized");
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": err.to_string()})),
            )
                .into_response()
        }
    }
}

/// On a standby that knows the leader, passes an authenticated push on to it; `None` when
/// there is nothing to forward (leading, no election, a forwarded push, leader unknown).
async fn forward_to_leader(
    ctx: &HttpContext,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Result<String, String>> {
    let forward = ctx.forward.as_ref()?;
    if *forward.leading.borrow() || headers.contains_key(FORWARDED_HEADER) {
        return None;
    }
    let url = forward.leader_url.borrow().clone()?;
    let mut request = forward
        .client
        .post(format!("{url}/webhook"))
        .header(FORWARDED_HEADER, "1")
        .body(body.clone());
    for name in FORWARDED_HEADERS {
        if let Some(value) = headers.get(*name) {
            request = request.header(*name, value);
        }
    }
    let result = match request.send().await {
        Ok(response) if response.status().is_success() => Ok(url),
        Ok(response) => Err(format!("leader {url} answered {}", response.status())),
        Err(err) => Err(format!("leader {url} unreachable: {}", err.without_url())),
    };
    match &result {
        Ok(url) => {
            tracing::info!(leader = %url, "webhook push passed on to the leader");
            ctx.state.metrics.webhook_forwarded("ok");
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not pass the webhook push on; the leader will see it at its next poll");
            ctx.state.metrics.webhook_forwarded("error");
        }
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn serve(ctx: HttpContext) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(ctx)).await });
        format!("http://{addr}")
    }

    fn context(secret: Option<&str>) -> HttpContext {
        let trigger = Arc::new(SyncTrigger::default());
        HttpContext {
            state: Arc::new(AgentState::new(
                "repo".into(),
                "standalone",
                ["environments/a".to_string()],
                trigger.clone(),
            )),
            mlflow: None,
            webhook: secret.map(|s| WebhookConfig {
                secret: Secret::new(s),
                tracked_ref: Some("refs/heads/main".into()),
            }),
            trigger,
            body_timeout: Duration::from_secs(30),
            forward: None,
        }
    }

    /// Requests made so far: the handler counts one before it answers, so a check right after
    /// the response is exact (no grace period).
    fn requests(ctx: &HttpContext) -> u64 {
        ctx.trigger.requests()
    }

    #[tokio::test]
    async fn webhooks_need_a_valid_signature_and_a_tracked_push_to_trigger() {
        let ctx = context(Some("s3cret"));
        let base = serve(ctx.clone()).await;
        let client = reqwest::Client::new();
        let body = r#"{"ref":"refs/heads/main","after":"abc"}"#;
        let post = |sig: Option<String>, body: &'static str| {
            let mut req = client
                .post(format!("{base}/webhook"))
                .header("x-github-event", "push")
                .body(body);
            if let Some(sig) = sig {
                req = req.header("x-hub-signature-256", sig);
            }
            req.send()
        };
        let r = post(None, r#"{"ref":"refs/heads/main","after":"abc"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let wrong = webhook::sign_github(b"guess", body.as_bytes());
        assert_eq!(
            post(Some(wrong), r#"{"ref":"refs/heads/main","after":"abc"}"#)
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(requests(&ctx), 0, "rejected webhooks trigger nothing");

        let other = r#"{"ref":"refs/heads/dev"}"#;
        let r = post(
            Some(webhook::sign_github(b"s3cret", other.as_bytes())),
            r#"{"ref":"refs/heads/dev"}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(requests(&ctx), 0, "pushes to other branches are ignored");

        let good = webhook::sign_github(b"s3cret", body.as_bytes());
        let r = post(Some(good), r#"{"ref":"refs/heads/main","after":"abc"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(requests(&ctx), 1);
        assert_eq!(ctx.state.snapshot().sync_requests, 1, "/status shows it");
    }

    #[tokio::test]
    async fn oversized_bodies_get_413_and_a_disabled_webhook_404() {
        let base = serve(context(Some("s"))).await;
        let client = reqwest::Client::new();
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        let r = client
            .post(format!("{base}/webhook"))
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let base = serve(context(None)).await;
        let r = client
            .post(format!("{base}/webhook"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    #[tokio::test]
    async fn readiness_follows_the_first_successful_sync() {
        let ctx = context(None);
        let state = ctx.state.clone();
        let base = serve(ctx).await;
        let get = |path: &'static str| reqwest::get(format!("{base}{path}"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        state.update_env("environments/a", |e| {
            e.last_sync_time = Some(crate::clock::now_utc());
            e.last_result = Some("in_sync".into());
        });
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let status: serde_json::Value = get("/status").await.unwrap().json().await.unwrap();
        assert_eq!(
            status["environments"]["environments/a"]["last_result"],
            "in_sync"
        );
        assert_eq!(status["ready"], true);
        let metrics = get("/metrics").await.unwrap();
        assert!(
            metrics.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
    }
}
