//! Azure ML managed online endpoints through the ARM REST API (api-version 2025-12-01), with
//! Entra ID auth. Ground truth: the reference contract `reference/azureml/CONTRACT.md` (cited as `[AML §N]` / `[AML RN]`).
//!
//! `mapping` turns ARM bodies into the model and back (pure), `client` sends requests with
//! retries, `lro` follows long-running operations, `gate` runs the pre-traffic test, `auth` and
//! `loopback` get tokens. This file holds the configuration and the `Backend` implementation.

mod arm_read;
mod auth;
mod client;
mod error;
mod gate;
mod iso;
mod loopback;
mod lro;
mod mapping;
pub mod monitor;
mod pacer;
mod profile;
mod retry;
mod rollout_tags;
mod shape;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use url::Url;

pub use auth::{
    ARM_SCOPE, AzureIdentityFetcher, CachedTokenSource, IssuedToken, ML_SCOPE, Secret,
    TokenFetcher, TokenSource, arm_scope, credential_from_vars,
};
pub use error::AzureMlError;
pub use flightdeck_core::retry::RetryPolicy;
pub use loopback::{LoopbackEntraCredential, LoopbackGrant};
pub use monitor::{AzureMonitorConfig, AzureMonitorProvider};

use flightdeck_core::backend::{Backend, BackendError, StepDetail};
use flightdeck_core::model::{AzureMlTarget, LiveState, Weights};
use flightdeck_core::plan::{Action, Step};
use flightdeck_core::rollout::RolloutRecord;

use client::ArmClient;
use mapping::Workspace;
pub use profile::{CREATE_ONLY, PROFILE};
pub use rollout_tags::{REASON_TAG, RECORD_TAG, take as take_rollout_record};
use shape::Shape;

/// The ARM api-version this client speaks [AML §0].
pub const API_VERSION: &str = "2025-12-01";
/// The default floor of a server-requested wait ([AML §3] Headers: `Retry-After` is whole
/// seconds, 10..600 on real ARM; 1 s keeps a misbehaving 0 or 1 from turning into a hot loop).
pub const DEFAULT_MIN_POLL_INTERVAL: Duration = flightdeck_core::retry::DEFAULT_MIN_RETRY_AFTER;
/// GETs one live read keeps in flight (deployment lists of a full read, endpoint reads of a
/// targeted one). Reads are cheap for ARM and paced by the remaining-reads budget
/// (`pacer`), so this only bounds what waits on the network at once.
pub const READ_CONCURRENCY: usize = 16;
/// The public-cloud ARM endpoint.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

#[derive(Clone, Debug)]
pub struct AzureMlConfig {
    /// ARM base URL; `--arm-endpoint` / `FLIGHTDECK_ARM_ENDPOINT` (the sandbox's base URL).
    /// Built at the edges: see `backend::BackendConfig`.
    pub arm_endpoint: Url,
    pub api_version: String,
    /// Longest one step may take, LRO waits included (enforced by the executor).
    pub step_timeout: Duration,
    /// Longest one pre-traffic test request may go unanswered; `FLIGHTDECK_TEST_REQUEST_TIMEOUT`.
    pub test_request_timeout: Duration,
    /// Floor of any server-requested wait (a non-zero Retry-After while polling or throttled);
    /// `--poll-interval-min`. A `Retry-After: 0` means the client's own backoff instead.
    pub min_poll_interval: Duration,
    /// Cap on any server-requested wait (Retry-After while polling or throttled).
    pub max_poll_interval: Duration,
    pub retry: RetryPolicy,
}

impl Default for AzureMlConfig {
    fn default() -> Self {
        AzureMlConfig {
            arm_endpoint: Url::parse(DEFAULT_ARM_ENDPOINT).expect("constant URL"),
            api_version: API_VERSION.to_string(),
            step_timeout: Duration::from_secs(30 * 60),
            test_request_timeout: flightdeck_core::backend::DEFAULT_TEST_REQUEST_TIMEOUT,
            min_poll_interval: DEFAULT_MIN_POLL_INTERVAL,
            max_poll_interval: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$` [AML §1], checked before a name goes in a URL.
fn check_name(kind: &str, name: &str) -> Result<(), AzureMlError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AzureMlError::Config(format!(
            "{kind} name {name:?} must match ^[a-zA-Z0-9][a-zA-Z0-9-_]{{0,254}}$"
        )))
    }
}

/// The target's fields go into ARM paths; the ARM endpoint must be http(s).
fn check_target(target: &AzureMlTarget, arm_endpoint: &Url) -> Result<(), AzureMlError> {
    for (field, value) in [
        ("subscription_id", &target.subscription_id),
        ("resource_group", &target.resource_group),
        ("workspace", &target.workspace),
        ("location", &target.location),
    ] {
        if value.trim().is_empty() || value.contains(['/', '?', '#']) {
            return Err(AzureMlError::Config(format!(
                "azureml target {field} {value:?} must be non-empty without '/', '?' or '#'"
            )));
        }
    }
    if !matches!(arm_endpoint.scheme(), "http" | "https") {
        return Err(AzureMlError::Config(format!(
            "ARM endpoint {arm_endpoint} must be an http(s) URL"
        )));
    }
    Ok(())
}

pub struct AzureMlBackend {
    client: ArmClient,
    target: AzureMlTarget,
    workspace: Workspace,
    step_timeout: Duration,
    test_request_timeout: Duration,
    /// Each endpoint's scoring URI and auth mode as last seen (see `gate::Scoring`): replaced
    /// by every live read, updated by this backend's own endpoint writes.
    scoring: std::sync::Mutex<std::collections::HashMap<String, gate::Scoring>>,
}

impl AzureMlBackend {
    pub fn new(
        target: &AzureMlTarget,
        config: AzureMlConfig,
        credential: Arc<dyn TokenSource>,
    ) -> Result<Self, AzureMlError> {
        check_target(target, &config.arm_endpoint)?;
        let scope = arm_scope(&config.arm_endpoint);
        let client = ArmClient::new(
            config.arm_endpoint,
            config.api_version,
            credential,
            scope,
            config.retry,
            config.min_poll_interval,
            config.max_poll_interval,
        )?;
        let workspace = Workspace {
            id: format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
                target.subscription_id, target.resource_group, target.workspace
            ),
        };
        Ok(AzureMlBackend {
            client,
            target: target.clone(),
            workspace,
            step_timeout: config.step_timeout,
            test_request_timeout: config.test_request_timeout,
            scoring: Default::default(),
        })
    }

    fn scoring_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, gate::Scoring>> {
        self.scoring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers what an endpoint body says about scoring (or forgets a stale entry).
    fn remember(&self, endpoint: &str, body: &serde_json::Value) {
        match gate::Scoring::of_body(body) {
            Some(s) => self.scoring_map().insert(endpoint.to_string(), s),
            None => self.scoring_map().remove(endpoint),
        };
    }

    fn endpoints_url(&self, more: &[&str]) -> Url {
        let t = &self.target;
        let mut segments = vec![
            "subscriptions",
            &t.subscription_id,
            "resourceGroups",
            &t.resource_group,
            "providers",
            "Microsoft.MachineLearningServices",
            "workspaces",
            &t.workspace,
            "onlineEndpoints",
        ];
        segments.extend_from_slice(more);
        self.client.url(&segments)
    }

    fn endpoint_url(&self, endpoint: &str) -> Url {
        self.endpoints_url(&[endpoint])
    }

    fn deployment_url(&self, endpoint: &str, deployment: &str) -> Url {
        self.endpoints_url(&[endpoint, "deployments", deployment])
    }

    /// Every endpoint with its deployments. An error carries the subject it is about: the
    /// workspace for the endpoint list, `endpoint E` for one endpoint's deployments.
    ///
    /// The deployment lists of a page's endpoints start as soon as that page arrives, while
    /// the next page is fetched, and [`READ_CONCURRENCY`] of them run at once: a 10,000-endpoint
    /// workspace is 10,200 GETs, and their round trips overlap instead of adding up.
    async fn read_live_inner(&self) -> Result<LiveState, (String, AzureMlError)> {
        let workspace = format!("workspace {}", self.target.workspace);
        let url = self.endpoints_url(&[]);
        let listed = self
            .client
            .pages::<arm_read::ArmEndpoint>(&url, "endpoint list", Shape::Endpoint)
            .map_err(|e| (workspace.clone(), e))
            .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
            .try_flatten();
        let endpoints: std::collections::BTreeMap<String, flightdeck_core::model::LiveEndpoint> =
            listed
                .map_ok(|body| async move {
                    let mut endpoint = mapping::endpoint_from_arm(body);
                    check_name("endpoint", &endpoint.name)
                        .map_err(|e| (format!("workspace {}", self.target.workspace), e))?;
                    let subject = format!("endpoint {}", endpoint.name);
                    self.add_deployments(&mut endpoint, &subject).await?;
                    Ok::<_, (String, AzureMlError)>((endpoint.name.clone(), endpoint))
                })
                .try_buffer_unordered(READ_CONCURRENCY)
                .try_collect()
                .await?;
        *self.scoring_map() = endpoints
            .values()
            .filter_map(|e| gate::Scoring::of_live(e).map(|s| (e.name.clone(), s)))
            .collect();
        Ok(LiveState {
            endpoints,
            taken: Vec::new(),
        })
    }

    /// Lists `endpoint`'s deployments [AML §1] into it; errors name `subject`.
    async fn add_deployments(
        &self,
        endpoint: &mut flightdeck_core::model::LiveEndpoint,
        subject: &str,
    ) -> Result<(), (String, AzureMlError)> {
        let url = self.endpoints_url(&[&endpoint.name, "deployments"]);
        let deployments: Vec<arm_read::ArmDeployment> = self
            .client
            .list(&url, "deployment list", Shape::Deployment)
            .await
            .map_err(|e| (subject.to_string(), e))?;
        for d in deployments {
            let d = mapping::deployment_from_arm(&self.workspace, d);
            endpoint.deployments.insert(d.name.clone(), d);
        }
        Ok(())
    }

    /// The endpoints named in `names`, each with a GET of the endpoint (404: not live, left
    /// out) and a list of its deployments [AML §1] — 2 requests per endpoint instead of the
    /// workspace-wide list plus one deployment list per live endpoint.
    async fn read_endpoints_inner(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<LiveState, (String, AzureMlError)> {
        let names: Vec<String> = names.iter().cloned().collect();
        let endpoints = futures::stream::iter(names.into_iter().map(|name| async move {
            let subject = format!("endpoint {name}");
            check_name("endpoint", &name).map_err(|e| (subject.clone(), e))?;
            let Some(body) = self
                .client
                .get_opt(&self.endpoint_url(&name))
                .await
                .map_err(|e| (subject.clone(), e))?
            else {
                return Ok(None);
            };
            let mut endpoint =
                mapping::endpoint_from_value(&body).map_err(|e| (subject.clone(), e))?;
            drop(body);
            self.add_deployments(&mut endpoint, &subject).await?;
            Ok::<_, (String, AzureMlError)>(Some((endpoint.name.clone(), endpoint)))
        }))
        .buffer_unordered(READ_CONCURRENCY)
        .try_filter_map(|found| async move { Ok(found) })
        .try_collect()
        .await?;
        Ok(LiveState {
            endpoints,
            taken: Vec::new(),
        })
    }

    async fn execute_inner(&self, step: &Step) -> Result<String, AzureMlError> {
        let e = step.endpoint.as_str();
        check_name("endpoint", e)?;
        if let Some(d) = step.action.deployment() {
            check_name("deployment", d)?;
        }
        let location = self.target.location.as_str();
        match &step.action {
            Action::CreateEndpoint { settings } => {
                let body = mapping::endpoint_create_body(settings, location)?;
                let created = self
                    .client
                    .put_and_wait(&self.endpoint_url(e), &body, true)
                    .await?;
                self.remember(e, &created);
                Ok("endpoint created".into())
            }
            Action::UpdateEndpoint { settings, changes } => {
                let url = self.endpoint_url(e);
                // §1 "Where an update goes": PATCH can change tags only; the rest needs a PUT.
                let tags_only = !changes.is_empty()
                    && changes
                        .iter()
                        .all(|c| c.field == "tags" || c.field.starts_with("tags."));
                match (&settings.tags, tags_only) {
                    (Some(tags), true) => {
                        // Tags are replaced as a whole [AML §2.5]: send the live rollout tags
                        // back with the declared ones.
                        let live = self.client.get_resource(&url).await?;
                        let declared = tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        let tags = rollout_tags::with_rollout(
                            declared,
                            rollout_tags::rollout_tags_of(&live),
                        )?;
                        let updated = self
                            .client
                            .patch_and_wait(&url, &json!({ "tags": tags }))
                            .await?;
                        self.remember(e, &updated);
                    }
                    _ => {
                        let mut body = self.client.get_resource(&url).await?;
                        mapping::strip_read_only(&mut body);
                        mapping::overlay_endpoint(&mut body, settings)?;
                        let updated = self.client.put_and_wait(&url, &body, false).await?;
                        self.remember(e, &updated);
                    }
                }
                Ok("endpoint updated".into())
            }
            // read_live never reports object problems on Azure ML (ARM owns the objects).
            Action::RepairEndpoint { .. } => Err(AzureMlError::Unexpected {
                what: "repair_endpoint".into(),
                message: "the azureml backend reports no object problems to repair".into(),
            }),
            Action::CreateDeployment {
                deployment,
                settings,
            } => {
                let body = mapping::deployment_body(&self.workspace, location, None, settings);
                let started = Instant::now();
                self.client
                    .put_and_wait(&self.deployment_url(e, deployment), &body, true)
                    .await?;
                Ok(format!(
                    "provisioned in {:.1}s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::UpdateDeployment {
                deployment,
                settings,
                ..
            } => {
                // GET + overlay keeps create-only and undeclared fields as they are (R8, R13).
                let url = self.deployment_url(e, deployment);
                let mut live = self.client.get_resource(&url).await?;
                mapping::strip_read_only(&mut live);
                let body =
                    mapping::deployment_body(&self.workspace, location, Some(live), settings);
                let started = Instant::now();
                self.client.put_and_wait(&url, &body, false).await?;
                Ok(format!(
                    "updated in {:.1}s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::ScaleDeployment { deployment, to, .. } => {
                // §1: deployment PATCH carries tags and sku only; capacity is the instance count.
                let body = json!({ "sku": { "capacity": to } });
                self.client
                    .patch_and_wait(&self.deployment_url(e, deployment), &body)
                    .await?;
                Ok(format!("scaled to {to}"))
            }
            Action::WaitReady { deployment } => {
                let started = Instant::now();
                self.client
                    .wait_resource(&self.deployment_url(e, deployment))
                    .await?;
                Ok(format!(
                    "ready after {:.1}s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Action::TestDeployment { deployment, test } => {
                let known = self.scoring_map().get(e).cloned();
                gate::run(
                    &self.client,
                    &self.endpoint_url(e),
                    known,
                    deployment,
                    test,
                    self.test_request_timeout,
                )
                .await
            }
            Action::SetTraffic { traffic } => {
                self.set_weights(e, Some(traffic), None).await?;
                Ok(format!(
                    "traffic {}",
                    flightdeck_core::model::weights_display(traffic)
                ))
            }
            Action::SetMirrorTraffic { mirror_traffic } => {
                self.set_weights(e, None, Some(mirror_traffic)).await?;
                Ok(format!(
                    "mirror traffic {}",
                    flightdeck_core::model::weights_display(mirror_traffic)
                ))
            }
            Action::DeleteDeployment { deployment } => {
                self.client
                    .delete_and_wait(&self.deployment_url(e, deployment))
                    .await?;
                Ok("deleted".into())
            }
            Action::DeleteEndpoint => {
                self.scoring_map().remove(e);
                self.client.delete_and_wait(&self.endpoint_url(e)).await?;
                Ok("deleted with its deployments".into())
            }
        }
    }

    /// GET the endpoint, replace its rollout tags, PATCH the tags whole [AML §2.5, R15].
    async fn write_rollout_inner(
        &self,
        endpoint: &str,
        record: Option<&RolloutRecord>,
    ) -> Result<(), AzureMlError> {
        check_name("endpoint", endpoint)?;
        let rollout = rollout_tags::tags_for(record);
        let url = self.endpoint_url(endpoint);
        let live = self.client.get_resource(&url).await?;
        let tags = live
            .get("tags")
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default();
        let tags = rollout_tags::with_rollout(tags, rollout)?;
        self.client
            .patch_and_wait(&url, &json!({ "tags": tags }))
            .await?;
        Ok(())
    }

    /// GET the endpoint, replace traffic and/or mirror traffic, PUT it whole. Both maps are
    /// always sent: PUT is a full replace and an omitted map is cleared (R8).
    async fn set_weights(
        &self,
        endpoint: &str,
        traffic: Option<&Weights>,
        mirror: Option<&Weights>,
    ) -> Result<(), AzureMlError> {
        let url = self.endpoint_url(endpoint);
        let mut body = self.client.get_resource(&url).await?;
        let live = mapping::endpoint_from_value(&body)?;
        mapping::strip_read_only(&mut body);
        mapping::set_weights(
            &mut body,
            traffic.unwrap_or(&live.traffic),
            mirror.unwrap_or(&live.mirror_traffic),
        );
        let updated = self.client.put_and_wait(&url, &body, false).await?;
        self.remember(endpoint, &updated);
        Ok(())
    }
}

fn subject(step: &Step) -> String {
    match step.action.deployment() {
        Some(d) => format!("endpoint {}: deployment {d}", step.endpoint),
        None => format!("endpoint {}", step.endpoint),
    }
}

#[async_trait]
impl Backend for AzureMlBackend {
    fn name(&self) -> &'static str {
        "azureml"
    }

    async fn read_live(&self) -> Result<LiveState, BackendError> {
        self.read_live_inner()
            .await
            .map_err(|(subject, e)| e.into_backend(&subject))
    }

    async fn read_live_endpoints(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<LiveState, BackendError> {
        self.read_endpoints_inner(names)
            .await
            .map_err(|(subject, e)| e.into_backend(&subject))
    }

    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError> {
        match self.execute_inner(step).await {
            Ok(detail) => Ok(StepDetail { detail }),
            Err(e) => Err(e.into_backend(&subject(step))),
        }
    }

    /// Endpoint tags `flightdeck.rollout` (split over `flightdeck.rollout.1`, … when long) and
    /// `flightdeck.rollout.reason` (see `rollout_tags`).
    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&RolloutRecord>,
    ) -> Result<(), BackendError> {
        self.write_rollout_inner(endpoint, record)
            .await
            .map_err(|e| e.into_backend(&format!("endpoint {endpoint}")))
    }

    /// 429s and low remaining budgets since the last look (see `pacer`).
    fn pressure(&self) -> flightdeck_core::backend::Pressure {
        self.client.take_pressure()
    }

    /// `step_timeout` (default 30 min) for every step; the executor enforces it.
    fn step_timeout(&self, _step: &Step) -> Duration {
        self.step_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_url_are_refused() {
        assert!(check_name("endpoint", "scoring-1_a").is_ok());
        for bad in ["", "-x", "a/b", "a?b", "..", "é"] {
            assert!(check_name("endpoint", bad).is_err(), "{bad}");
        }
    }
}
