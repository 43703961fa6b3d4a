//! Kubernetes backend: each model version is a Deployment + Service, traffic is split by an Istio
//! VirtualService (+ DestinationRule subsets) or a Gateway API HTTPRoute. The mapping is described
//! in docs/kubernetes.md; the platform facts it relies on are in
//! the reference contract `reference/k8s/CONTRACT.md` (cited as `[K8S §N]` in the code).
//!
//! Layout: `objects` and `routing` are pure renderers, `rollout` is the readiness predicate,
//! `ssa` does the writes, `live` reads state, `exec` runs plan steps, `gate` runs test requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

use flightdeck_core::backend::{Backend, BackendError, StepDetail};
use flightdeck_core::model::{KubernetesTarget, LiveState, Router, Weights};
use flightdeck_core::plan::Step;
use flightdeck_core::rollout::RolloutRecord;

pub use profile::PROFILE;

mod audit;
pub mod crd;
mod discovery;
mod exec;
mod gate;
mod live;
pub mod objects;
mod pod;
pub mod policy;
mod policy_exec;
mod profile;
pub mod progress;
pub mod rollout;
pub mod routing;
mod ssa;

use crd::{DestinationRule, HttpRoute, IstioVersion, VirtualService};

/// Timing knobs for the Kubernetes backend.
#[derive(Clone, Debug)]
pub struct KubernetesOptions {
    /// How long a create, update or scale may take to roll out before the step times out.
    pub rollout_timeout: Duration,
    /// Poll interval while waiting for a rollout.
    pub poll_interval: Duration,
    /// Istio only: wait between adding a DestinationRule subset and the first VirtualService that
    /// names it, and between dropping a subset from the VirtualService and removing it from the
    /// DestinationRule ([K8S §1] ISTIO-MBB: config reaches proxies eventually).
    pub make_before_break_delay: Duration,
    /// Connect, read and write timeout of every Kubernetes API call, so a hung API server
    /// cannot hold a step (`FLIGHTDECK_K8S_API_TIMEOUT`).
    pub api_timeout: Duration,
    /// Longest one pre-traffic test request may go unanswered (`FLIGHTDECK_TEST_REQUEST_TIMEOUT`).
    pub test_request_timeout: Duration,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            rollout_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(2),
            make_before_break_delay: Duration::from_secs(5),
            api_timeout: Duration::from_secs(30),
            test_request_timeout: flightdeck_core::backend::DEFAULT_TEST_REQUEST_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("invalid option: {0}")]
    Option(String),
    #[error("no kubernetes configuration found (kubeconfig or in-cluster): {0}")]
    Config(#[source] kube::Error),
}

/// A client from the local kubeconfig (`KUBECONFIG` or `~/.kube/config`), else the in-cluster
/// service account, as `kube::Client::try_default` does, with `opts.api_timeout` on every call.
pub async fn client_from_kubeconfig(opts: &KubernetesOptions) -> Result<Client, KubernetesError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| KubernetesError::Config(kube::Error::InferConfig(e)))?;
    client_with_timeouts(config, opts)
}

/// A client for `config` whose connect, read and write each give up after `opts.api_timeout`
/// (kube's own defaults leave reads unbounded, 295 s for watches; flightdeck never watches).
///
/// kube's retry layer stays on (`config.default_retry`, kube-client 5 `ClientBuilder`:
/// `RetryLayer::new(RetryPolicy::server_retry())`): it resends only requests answered 429, 503 or
/// 504, which the API server did not process, at most 15 times from 5 ms, honouring
/// `Retry-After`, and never after a connection error or timeout. It sees the HTTP answer below
/// every `kube::Api` call, where `crate::retry` would have to wrap each call site; the executor's
/// step timeout bounds it, and what it gives up on arrives as a transient `BackendError`.
pub fn client_with_timeouts(
    mut config: kube::Config,
    opts: &KubernetesOptions,
) -> Result<Client, KubernetesError> {
    config.connect_timeout = Some(opts.api_timeout);
    config.read_timeout = Some(opts.api_timeout);
    config.write_timeout = Some(opts.api_timeout);
    Client::try_from(config).map_err(KubernetesError::Config)
}

/// The Kubernetes backend for one namespace.
pub struct KubernetesBackend {
    target: KubernetesTarget,
    client: Client,
    opts: KubernetesOptions,
    /// The served Istio API version, discovered on first use.
    istio: tokio::sync::OnceCell<IstioVersion>,
}

impl KubernetesBackend {
    pub fn new(target: &KubernetesTarget, client: Client, opts: KubernetesOptions) -> Self {
        KubernetesBackend {
            target: target.clone(),
            client,
            opts,
            istio: tokio::sync::OnceCell::new(),
        }
    }

    fn ns(&self) -> &str {
        &self.target.namespace
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    async fn istio_version(&self) -> Result<IstioVersion, BackendError> {
        let subject = format!("namespace {}", self.ns());
        self.istio
            .get_or_try_init(|| async {
                let groups = discovery::api_groups(&self.client, &subject).await?;
                discovery::istio_version(&groups, &subject)
            })
            .await
            .copied()
    }

    async fn virtual_services(&self) -> Result<Api<VirtualService>, BackendError> {
        let v = self.istio_version().await?;
        Ok(Api::namespaced_with(self.client.clone(), self.ns(), &v))
    }

    async fn destination_rules(&self) -> Result<Api<DestinationRule>, BackendError> {
        let v = self.istio_version().await?;
        Ok(Api::namespaced_with(self.client.clone(), self.ns(), &v))
    }

    fn http_routes(&self) -> Api<HttpRoute> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    fn is_istio(&self) -> bool {
        self.target.router == Router::Istio
    }
}

/// The router of one endpoint as read from the cluster.
#[derive(Debug, Default)]
struct RouterState {
    /// Whether the router object (VirtualService or HTTPRoute) exists.
    exists: bool,
    traffic: Weights,
    mirror: Weights,
    /// Versions the router names anywhere (weights, pins, mirror).
    referenced: BTreeSet<String>,
    /// Versions it may name, with Service ports: DR subsets (Istio) or per-version Services.
    versions: BTreeMap<String, i32>,
    /// Istio: the DestinationRule's subsets (empty for Gateway API).
    subsets: BTreeSet<String>,
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn read_live(&self) -> Result<LiveState, BackendError> {
        self.read_live_state().await.map_err(|e| self.timed(e))
    }

    async fn read_live_endpoints(
        &self,
        names: &std::collections::BTreeSet<String>,
    ) -> Result<LiveState, BackendError> {
        self.read_endpoints(names).await.map_err(|e| self.timed(e))
    }

    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError> {
        self.execute_step(step).await.map_err(|e| self.timed(e))
    }

    /// Annotations `flightdeck.io/rollout` and `flightdeck.io/rollout-reason` on the endpoint's
    /// VirtualService or HTTPRoute, under their own field manager (see `progress`).
    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&RolloutRecord>,
    ) -> Result<(), BackendError> {
        let subject = format!("endpoint {endpoint}");
        let annotations = progress::annotations_for(record);
        let manager = progress::ROLLOUT_MANAGER;
        let written = if self.is_istio() {
            let api = self.virtual_services().await?;
            ssa::apply_annotations(&api, &subject, endpoint, manager, &annotations).await
        } else {
            let api = self.http_routes();
            ssa::apply_annotations(&api, &subject, endpoint, manager, &annotations).await
        };
        written.map_err(|e| self.timed(e))
    }

    /// A rollout wait gets its rollout budget plus room for the API calls around it.
    fn step_timeout(&self, step: &Step) -> Duration {
        let calls = self.opts.api_timeout * 4;
        match step.action {
            flightdeck_core::plan::Action::TestDeployment { .. } => {
                self.opts.test_request_timeout + calls
            }
            flightdeck_core::plan::Action::SetTraffic { .. }
            | flightdeck_core::plan::Action::SetMirrorTraffic { .. } => {
                self.opts.make_before_break_delay * 2 + calls * 2
            }
            _ => self.opts.rollout_timeout + calls * 2,
        }
    }
}

impl KubernetesBackend {
    /// Names the API timeout in a timed-out call's message (`ssa::kube_error` cannot know it).
    fn timed(&self, err: BackendError) -> BackendError {
        match err {
            BackendError::TimedOut { subject, message } if message.ends_with(ssa::TIMED_OUT) => {
                BackendError::TimedOut {
                    subject,
                    message: format!(
                        "{message} after {}",
                        humantime::format_duration(self.opts.api_timeout)
                    ),
                }
            }
            other => other,
        }
    }
}
