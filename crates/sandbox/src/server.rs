//! The server: shared state, the router, start and shutdown.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::auth::{self, Audience, TokenStore};
use super::clock::Clock;
use super::config::{Resolved, SandboxConfig, SandboxCredentials};
use super::error::{ArmError, SandboxError};
use super::faults::{self, ControlRule};
use super::history;
use super::journal::{self, Journal};
use super::lro::{self, Operation};
use super::metrics::MetricsStore;
use super::net::{ConnHandle, KillableListener};
use super::shapes::{self, RenderCtx};
use super::state::{Store, Target};
use super::throttle::{self, Throttle};
use super::{
    arm_deployments, arm_endpoints, data_plane, holds, monitor, prometheus, tls, workspace,
};

/// api-versions served ([AML §0]: 2025-12-01 and the older stable ones), plus the preview
/// versions that Microsoft's azure-ai-ml SDK (1.x, `MLClient`) pins by default: online endpoints
/// 2022-02-01-preview, online deployments 2023-04-01-preview, workspaces 2024-10-01-preview.
/// Their request and response shapes for the fields the sandbox serves match 2025-12-01.
pub const API_VERSIONS: [&str; 8] = [
    "2025-12-01",
    "2025-09-01",
    "2025-04-01",
    "2024-10-01",
    "2024-04-01",
    "2024-10-01-preview",
    "2023-04-01-preview",
    "2022-02-01-preview",
];

pub(crate) struct Shared {
    pub config: Resolved,
    pub base_url: String,
    /// Every delay, deadline and timestamp reads this (see `clock`).
    pub clock: Clock,
    store: Mutex<Store>,
    tokens: Mutex<TokenStore>,
    rules: Mutex<Vec<ControlRule>>,
    journal: Mutex<Journal>,
    metrics: Mutex<MetricsStore>,
    throttle: Mutex<Throttle>,
}

pub(crate) type AppState = Arc<Shared>;

/// The locked store; on unlock, the changes made under it go into the history. Only a holder
/// that took it mutably can have changed it: a read (every GET) unlocks without the history's
/// walk over every endpoint, which made a full read of a 10,000-endpoint workspace quadratic
/// (10,200 GETs × 10,000 endpoints compared; issue #13).
pub(crate) struct StoreGuard<'a> {
    store: MutexGuard<'a, Store>,
    clock: &'a Clock,
    changed: bool,
}

impl std::ops::Deref for StoreGuard<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.changed = true;
        &mut self.store
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            let now = self.clock.now_utc();
            self.store.observe(now);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The store, with every due operation finished first. Unlocking it records what the
    /// holder changed in the history (`history`).
    pub fn store(&self) -> StoreGuard<'_> {
        let mut store = lock(&self.store);
        store.settle(&self.clock, self.config.startup_delay);
        StoreGuard {
            store,
            clock: &self.clock,
            changed: false,
        }
    }

    pub fn rules(&self) -> MutexGuard<'_, Vec<ControlRule>> {
        lock(&self.rules)
    }

    /// The ARM-like request buckets (see `throttle`).
    pub fn throttle(&self) -> MutexGuard<'_, Throttle> {
        lock(&self.throttle)
    }

    /// The principal a live ARM token was issued to. Both ways to get one (the token endpoint
    /// and IMDS) check the one configured client id, so that is the principal: a refreshed
    /// token keeps its predecessor's buckets.
    pub fn token_principal(&self, token: &str) -> Option<String> {
        match self.token_audience(token)? {
            Audience::Arm => Some(self.config.client_id.clone()),
            _ => None,
        }
    }

    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    /// The data plane's metrics (see `metrics`).
    pub fn metrics(&self) -> MutexGuard<'_, MetricsStore> {
        lock(&self.metrics)
    }

    pub fn issue_token(&self, audience: Audience) -> String {
        lock(&self.tokens).issue(audience, self.clock.now(), auth::TOKEN_LIFETIME)
    }

    pub fn issue_token_for(&self, audience: Audience, lifetime: Duration) -> String {
        lock(&self.tokens).issue(audience, self.clock.now(), lifetime)
    }

    pub fn revoke_tokens(&self) -> usize {
        lock(&self.tokens).revoke_all()
    }

    pub fn token_audience(&self, token: &str) -> Option<Audience> {
        lock(&self.tokens).check(token, self.clock.now()).cloned()
    }

    pub fn render_ctx(&self) -> RenderCtx<'_> {
        RenderCtx {
            base_url: &self.base_url,
            tenant_id: &self.config.tenant_id,
            client_id: &self.config.client_id,
        }
    }

    pub fn current_op(&self, id: &str) -> Result<Operation, ArmError> {
        self.store()
            .ops
            .get(id)
            .cloned()
            .ok_or_else(|| ArmError::not_found(format!("operation {id} was not found")))
    }

    /// The current body of an operation's resource, if it still exists.
    pub fn render_target(&self, target: &Target) -> Option<Value> {
        let store = self.store();
        let ep = store.endpoint(&target.ws, &target.endpoint)?;
        let ctx = self.render_ctx();
        match &target.deployment {
            None => Some(shapes::endpoint(&ctx, ep)),
            Some(d) => ep
                .deployments
                .get(d)
                .map(|dep| shapes::deployment(&ctx, ep, dep)),
        }
    }

    pub fn operation_delay(&self) -> Duration {
        self.config.provisioning_delay
    }
}

/// Request extension: the validated api-version of an ARM request.
#[derive(Clone, Debug)]
pub struct ApiVersion(pub String);

/// [AML §7.1]: unknown api-version → 400 InvalidApiVersionParameter.
async fn check_api_version(mut req: Request, next: Next) -> Response {
    let version = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
    });
    match version {
        None => ArmError::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "the api-version query parameter is required",
        )
        .into_response(),
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "the api-version '{v}' is invalid; supported versions are {}",
                API_VERSIONS.join(", ")
            ),
        )
        .into_response(),
        Some(v) => {
            req.extensions_mut().insert(ApiVersion(v));
            next.run(req).await
        }
    }
}

async fn arm_not_found() -> Response {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "NoRegisteredProviderFound",
        "no route matches this path and method on the sandbox",
    )
    .into_response()
}

fn router(state: AppState) -> Router {
    const WS: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}";
    let ep = format!("{WS}/onlineEndpoints/{{ep}}");
    let dep = format!("{ep}/deployments/{{dep}}");
    const OPS: &str =
        "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}";

    let arm_routes = Router::new()
        .route(WS, get(workspace::get_workspace))
        .route(
            &format!("{WS}/onlineEndpoints"),
            get(arm_endpoints::list_endpoints),
        )
        .route(
            &ep,
            get(arm_endpoints::get_endpoint)
                .put(arm_endpoints::put_endpoint)
                .patch(arm_endpoints::patch_endpoint)
                .delete(arm_endpoints::delete_endpoint),
        )
        .route(&format!("{ep}/listKeys"), post(arm_endpoints::list_keys))
        .route(
            &format!("{ep}/regenerateKeys"),
            post(arm_endpoints::regenerate_keys),
        )
        .route(&format!("{ep}/token"), post(arm_endpoints::get_token))
        .route(
            &format!("{ep}/deployments"),
            get(arm_deployments::list_deployments),
        )
        .route(
            &dep,
            get(arm_deployments::get_deployment)
                .put(arm_deployments::put_deployment)
                .patch(arm_deployments::patch_deployment)
                .delete(arm_deployments::delete_deployment),
        )
        .route(&format!("{dep}/getLogs"), post(arm_deployments::get_logs))
        .route(&format!("{dep}/skus"), get(arm_deployments::list_skus))
        .route(
            &format!("{OPS}/mfeOperationsStatus/{{op}}"),
            get(lro::operation_status),
        )
        .route(
            &format!("{OPS}/mfeOperationResults/{{op}}"),
            get(lro::operation_result),
        )
        .fallback(arm_not_found)
        .layer(middleware::from_fn(check_api_version))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            throttle::limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_arm_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults::apply_rules,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            journal::record_requests,
        ));

    // [MON R1, R2]: Azure Monitor on the endpoint resource, with its own api-version
    // (2023-10-01, checked by the handlers) and the same ARM bearer token.
    let mut monitor_routes = Router::new();
    for provider in ["Microsoft.Insights", "microsoft.insights"] {
        monitor_routes = monitor_routes
            .route(
                &format!("{ep}/providers/{provider}/metrics"),
                get(monitor::metrics),
            )
            .route(
                &format!("{ep}/providers/{provider}/metricDefinitions"),
                get(monitor::metric_definitions),
            );
    }
    let monitor_routes = monitor_routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            throttle::limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_arm_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults::apply_rules,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            journal::record_requests,
        ));

    let public = Router::new()
        .route("/metrics", get(prometheus::get_metrics))
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token_endpoint))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(auth::openid_configuration),
        )
        .route("/metadata/identity/oauth2/token", get(auth::imds))
        .route(
            "/inference/{sub}/{rg}/{ws}/{ep}/score",
            post(data_plane::score),
        )
        .route(
            "/inference/{sub}/{rg}/{ws}/{ep}/swagger.json",
            get(data_plane::swagger),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults::apply_rules,
        ));

    let introspection = Router::new()
        .route(
            "/_sandbox/log",
            get(journal::get_log).delete(journal::clear_log),
        )
        .route("/_sandbox/stats", get(journal::get_stats))
        .route(
            "/_sandbox/history",
            get(history::get_history).delete(history::clear_history),
        )
        .route("/_sandbox/metrics", get(monitor::sandbox_metrics_info))
        .route(
            "/_sandbox/faults",
            get(faults::get_faults)
                .post(faults::post_faults)
                .delete(faults::clear_faults),
        )
        .route("/_sandbox/operations", get(holds::get_operations))
        .route("/_sandbox/operations/hold", post(holds::post_hold))
        .route("/_sandbox/operations/release", post(holds::post_release))
        .route("/_sandbox/tokens/revoke", post(auth::revoke_tokens))
        .route("/_sandbox/health", get(|| async { "ok" }));

    Router::new()
        .merge(introspection)
        .merge(public)
        .merge(monitor_routes)
        .merge(arm_routes)
        .with_state(state)
}

/// Starts sandboxes.
pub struct Sandbox;

impl Sandbox {
    /// Binds `config.listen` (127.0.0.1:0 by default) and serves until the handle is shut down
    /// or dropped.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<SandboxHandle> {
        let resolved = Resolved::new(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(SandboxError::Serve)?;
        let identity = match &config.tls_cert {
            Some(path) => Some(tls::self_signed(addr.ip(), path)?),
            None => None,
        };
        let scheme = if identity.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}");
        let credentials = SandboxCredentials::from_resolved(&resolved);
        let clock = Clock::new();
        let resolved_metrics = resolved.metrics;
        let resolved_throttle = resolved.throttle;
        let shared = Arc::new(Shared {
            config: resolved,
            base_url: base_url.clone(),
            clock,
            store: Mutex::new(Store::default()),
            tokens: Mutex::new(TokenStore::default()),
            rules: Mutex::new(Vec::new()),
            journal: Mutex::new(Journal::default()),
            metrics: Mutex::new(MetricsStore::new(resolved_metrics)),
            throttle: Mutex::new(Throttle::new(resolved_throttle)),
        });
        let app = router(shared).into_make_service_with_connect_info::<ConnHandle>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let listener = match identity {
            Some(identity) => KillableListener::tls(listener, identity.acceptor),
            None => KillableListener::new(listener),
        }
        .map_err(SandboxError::Serve)?;
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            // A dropped handle stops the server too.
            let _ = stop_rx.await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "sandbox server stopped with an error");
            }
        });
        Ok(SandboxHandle {
            base_url,
            credentials,
            tls_cert: config.tls_cert.clone(),
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running sandbox.
pub struct SandboxHandle {
    base_url: String,
    credentials: SandboxCredentials,
    tls_cert: Option<std::path::PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl SandboxHandle {
    /// e.g. `http://127.0.0.1:41234`: the ARM base URL and the authority host.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn credentials(&self) -> SandboxCredentials {
        self.credentials.clone()
    }

    /// `KEY=value` lines for a client's environment (fake, sandbox-local credentials).
    /// With TLS, two more lines follow the usual six: the certificate path for Python clients
    /// (`REQUESTS_CA_BUNDLE`) and the managed-identity endpoint azure-identity uses
    /// (`AZURE_POD_IDENTITY_AUTHORITY_HOST`, served by the sandbox's IMDS route).
    pub fn env_lines(&self) -> Vec<String> {
        let c = &self.credentials;
        let mut lines = vec![
            format!("FLIGHTDECK_ARM_ENDPOINT={}", self.base_url),
            format!("AZURE_AUTHORITY_HOST={}/", self.base_url),
            format!("AZURE_TENANT_ID={}", c.tenant_id),
            format!("AZURE_CLIENT_ID={}", c.client_id),
            format!("AZURE_CLIENT_SECRET={}", c.client_secret),
            format!("AZURE_SUBSCRIPTION_ID={}", c.subscription_id),
        ];
        if let Some(cert) = &self.tls_cert {
            lines.push(format!("REQUESTS_CA_BUNDLE={}", cert.display()));
            lines.push(format!(
                "AZURE_POD_IDENTITY_AUTHORITY_HOST={}",
                self.base_url
            ));
        }
        lines
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlocking_the_store_walks_the_history_only_after_a_change() {
        let store = Mutex::new(Store::default());
        let clock = Clock::new();
        let guard = || StoreGuard {
            store: lock(&store),
            clock: &clock,
            changed: false,
        };
        {
            let read = guard();
            assert!(read.workspaces.is_empty());
        }
        assert_eq!(lock(&store).history.walks(), 0, "a read changes nothing");
        {
            let mut write = guard();
            write.workspaces.clear();
        }
        assert_eq!(lock(&store).history.walks(), 1, "a write is recorded");
    }
}
