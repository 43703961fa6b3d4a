//! Leader election with a coordination.k8s.io/v1 Lease, following client-go's algorithm
//! ([K8S §5], k8s reference): GET; create on 404; respect a foreign holder while
//! `observedTime + leaseDurationSeconds > now` by the *local* clock; otherwise PUT with the read
//! `resourceVersion` (a concurrent writer gets 409 and loses); renew every retry period; give up
//! when no renewal succeeded within the renew deadline; release on shutdown.
//!
//! No two writers: a leader's renewal round runs under its own deadline, `renew_deadline` after
//! the start of the last successful round. When it cannot complete by then, this replica stops
//! acting as leader (which cancels in-flight reconciles) at that instant, whatever the API
//! server or the client's retries are doing. Another replica can only take the lease once it
//! has seen the record unchanged for `lease_duration` > `renew_deadline`, and it can only have
//! seen the record after our last successful round began, so our leadership ends first.
//!
//! The holder also publishes where it takes webhooks (annotation [`WEBHOOK_URL_ANNOTATION`]) so a
//! standby that receives a push can pass it on at once instead of leaving it to the leader's
//! next poll. Only the holder writes the annotation, inside its own resourceVersion-guarded
//! renewals, so it adds no write and no conflict.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// [K8S §5.6]: lease_duration > renew_deadline > retry_period.
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// This replica's webhook URL, published on the lease while it leads.
    pub advertise_url: Option<String>,
}

/// The lease annotation holding the current leader's webhook URL.
pub const WEBHOOK_URL_ANNOTATION: &str = "flightdeck.io/webhook-url";

impl LeaseConfig {
    pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);

    /// client-go's usual timings: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(name: String, namespace: String, identity: String) -> LeaseConfig {
        LeaseConfig {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: LeaseConfig::DEFAULT_RENEW_DEADLINE,
            retry_period: Duration::from_secs(2),
            advertise_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another writer changed the lease since we read it (HTTP 409).
    #[error("lease was modified concurrently")]
    Conflict,
    #[error("lease api: {0}")]
    Api(String),
    #[error("lease call did not complete within {0:?}")]
    Timeout(Duration),
}

/// The three calls the algorithm needs.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    async fn get(&self) -> Result<Option<Lease>, LeaseError>;
    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError>;
    /// PUT carrying `lease.metadata.resource_version`.
    async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError>;
}

/// The Kubernetes API as a lease store.
pub struct KubeLeaseStore {
    api: kube::Api<Lease>,
    name: String,
}

impl KubeLeaseStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> KubeLeaseStore {
        KubeLeaseStore {
            api: kube::Api::namespaced(client, namespace),
            name: name.to_string(),
        }
    }
}

fn kube_error(err: kube::Error) -> LeaseError {
    match err {
        kube::Error::Api(status) if status.code == 409 => LeaseError::Conflict,
        other => LeaseError::Api(other.to_string()),
    }
}

#[async_trait]
impl LeaseStore for KubeLeaseStore {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.api.get_opt(&self.name).await.map_err(kube_error)
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.api
            .create(&PostParams::default(), lease)
            .await
            .map_err(kube_error)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
            .map_err(kube_error)
    }
}

/// The record as this client last saw it change, and when (local monotonic clock).
#[derive(Clone, Debug)]
pub struct Observed {
    pub spec: LeaseSpec,
    pub at: Instant,
}

/// What to do after reading the lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Create(LeaseSpec),
    Update(LeaseSpec),
    /// A valid lease held by someone else.
    Wait {
        holder: String,
    },
}

/// The pure core of one acquire-or-renew round ([K8S §5] steps 1–3).
pub fn decide(
    identity: &str,
    duration: Duration,
    observed: &mut Option<Observed>,
    current: Option<&LeaseSpec>,
    now: Instant,
    wall: Timestamp,
) -> Decision {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1);
    let Some(spec) = current else {
        return Decision::Create(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    // observedTime moves only when the record changes: validity never compares server time.
    if observed.as_ref().is_none_or(|o| o.spec != *spec) {
        *observed = Some(Observed {
            spec: spec.clone(),
            at: now,
        });
    }
    let observed_at = observed.as_ref().map(|o| o.at).unwrap_or(now);
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let record_seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0);
    let valid = observed_at + Duration::from_secs(record_seconds) > now;
    if !holder.is_empty() && holder != identity && valid {
        return Decision::Wait {
            holder: holder.to_string(),
        };
    }
    let mut next = spec.clone();
    next.holder_identity = Some(identity.to_string());
    next.lease_duration_seconds = Some(seconds);
    next.renew_time = Some(MicroTime(wall));
    if holder == identity {
        next.acquire_time = spec.acquire_time.clone().or(Some(MicroTime(wall)));
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0));
    } else {
        next.acquire_time = Some(MicroTime(wall));
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    Decision::Update(next)
}

/// One candidate.
pub struct LeaderElector<S: LeaseStore> {
    store: S,
    config: LeaseConfig,
    observed: Option<Observed>,
    leader_url: watch::Sender<Option<String>>,
}

/// Sets (or, with `None`, removes) our webhook URL annotation.
fn set_advertised(meta: &mut ObjectMeta, url: Option<&str>) {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    match url {
        Some(url) => {
            annotations.insert(WEBHOOK_URL_ANNOTATION.to_string(), url.to_string());
        }
        None => {
            annotations.remove(WEBHOOK_URL_ANNOTATION);
        }
    }
    if annotations.is_empty() {
        meta.annotations = None;
    }
}

impl<S: LeaseStore> LeaderElector<S> {
    pub fn new(store: S, config: LeaseConfig) -> LeaderElector<S> {
        LeaderElector {
            store,
            config,
            observed: None,
            leader_url: watch::Sender::new(None),
        }
    }

    /// The webhook URL the current leader advertises, when another replica leads.
    pub fn leader_url(&self) -> watch::Receiver<Option<String>> {
        self.leader_url.subscribe()
    }

    /// One round: `Ok(true)` when this candidate holds the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let current = self.store.get().await?;
        let decision = decide(
            &self.config.identity,
            self.config.lease_duration,
            &mut self.observed,
            current
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .or(current.as_ref().map(|_| &EMPTY_SPEC)),
            Instant::now(),
            wall_now(),
        );
        let advertise = self.config.advertise_url.as_deref();
        let written = match decision {
            Decision::Wait { holder } => {
                tracing::debug!(holder = %holder, "lease held by another replica");
                let url = current
                    .as_ref()
                    .and_then(|l| l.metadata.annotations.as_ref())
                    .and_then(|a| a.get(WEBHOOK_URL_ANNOTATION))
                    .cloned();
                self.leader_url.send_if_modified(|known| {
                    let changed = *known != url;
                    *known = url;
                    changed
                });
                return Ok(false);
            }
            Decision::Create(spec) => {
                let mut lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                set_advertised(&mut lease.metadata, advertise);
                self.store.create(&lease).await
            }
            Decision::Update(spec) => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                // Replaces what a previous holder advertised.
                set_advertised(&mut lease.metadata, advertise);
                self.store.replace(&lease).await
            }
        };
        match written {
            Ok(lease) => {
                self.leader_url
                    .send_if_modified(|known| known.take().is_some());
                self.observed = lease.spec.map(|spec| Observed {
                    spec,
                    at: Instant::now(),
                });
                Ok(true)
            }
            // Someone else wrote first: they win this round.
            Err(LeaseError::Conflict) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Gives the lease up if this candidate holds it: empty holder, 1 s duration, transitions
    /// kept [K8S §5.5], so a standby takes over at once.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(mut lease) = self.store.get().await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(wall_now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        set_advertised(&mut lease.metadata, None);
        self.store.replace(&lease).await.map(|_| ())
    }

    /// Campaigns until `cancel`, publishing leadership on `leader`; releases on the way out.
    pub async fn run(mut self, leader: watch::Sender<bool>, cancel: CancellationToken) {
        let renew_deadline = self.config.renew_deadline;
        // Start of the last successful round while leading.
        let mut last_renewal: Option<Instant> = None;
        loop {
            let leading = *leader.borrow();
            let deadline = last_renewal.map(|t| t + renew_deadline);
            let now = Instant::now();
            if leading && deadline.is_none_or(|d| now >= d) {
                tracing::warn!(identity = %self.config.identity, "renew deadline passed, stepping down");
                leader.send_replace(false);
                continue;
            }
            // A leader's round must finish by its deadline; a candidate's within one deadline.
            let budget = match deadline {
                Some(d) if leading => d - now,
                _ => renew_deadline,
            };
            let attempt = Instant::now();
            let round = tokio::time::timeout(budget, self.try_acquire_or_renew()).await;
            match round.unwrap_or(Err(LeaseError::Timeout(budget))) {
                Ok(true) => {
                    last_renewal = Some(attempt);
                    if !leading {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
                        leader.send_replace(true);
                    }
                }
                Ok(false) => {
                    if leading {
                        tracing::warn!(identity = %self.config.identity, "lease taken by another replica");
                        leader.send_replace(false);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "lease renewal failed");
                    if leading && deadline.is_none_or(|d| Instant::now() >= d) {
                        tracing::warn!(identity = %self.config.identity, "renew deadline passed, stepping down");
                        leader.send_replace(false);
                    }
                }
            }
            // A leader never sleeps past its deadline: the next round (or the step-down) comes
            // first.
            let mut wait = self.config.retry_period;
            if *leader.borrow()
                && let Some(d) = last_renewal.map(|t| t + renew_deadline)
            {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if *leader.borrow() {
            leader.send_replace(false);
            match tokio::time::timeout(renew_deadline, self.release()).await {
                Ok(Ok(())) => tracing::info!("lease released"),
                Ok(Err(err)) => tracing::warn!(error = %err, "could not release the lease"),
                Err(_) => tracing::warn!("could not release the lease in time"),
            }
        }
    }
}

static EMPTY_SPEC: LeaseSpec = LeaseSpec {
    acquire_time: None,
    holder_identity: None,
    lease_duration_seconds: None,
    lease_transitions: None,
    preferred_holder: None,
    renew_time: None,
    strategy: None,
};

/// The wall-clock now for `renewTime`/`acquireTime`, from the product clock.
fn wall_now() -> Timestamp {
    Timestamp::from_microsecond(crate::clock::now_utc().timestamp_micros())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created_with_us_as_holder() {
        let mut observed = None;
        let d = decide(
            "a",
            D,
            &mut observed,
            None,
            Instant::now(),
            Timestamp::now(),
        );
        let Decision::Create(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn a_valid_foreign_lease_is_respected_until_it_expires_by_the_local_clock() {
        let mut observed = None;
        let t0 = Instant::now();
        // Server renewTime is 1970: ignored, only local observation time counts.
        let spec = held_by("b", 3);
        let d = decide("a", D, &mut observed, Some(&spec), t0, Timestamp::now());
        assert_eq!(d, Decision::Wait { holder: "b".into() });
        let d = decide(
            "a",
            D,
            &mut observed,
            Some(&spec),
            t0 + Duration::from_secs(14),
            Timestamp::now(),
        );
        assert_eq!(d, Decision::Wait { holder: "b".into() });
        let d = decide(
            "a",
            D,
            &mut observed,
            Some(&spec),
            t0 + Duration::from_secs(16),
            Timestamp::now(),
        );
        let Decision::Update(next) = d else {
            panic!("{d:?}")
        };
        assert_eq!(next.holder_identity.as_deref(), Some("a"));
        assert_eq!(
            next.lease_transitions,
            Some(4),
            "taking over counts a transition"
        );
    }

    #[test]
    fn a_renewal_by_the_holder_resets_the_observed_time() {
        let mut observed = None;
        let t0 = Instant::now();
        decide(
            "a",
            D,
            &mut observed,
            Some(&held_by("b", 0)),
            t0,
            Timestamp::now(),
        );
        let mut renewed = held_by("b", 0);
        renewed.renew_time = Some(MicroTime(Timestamp::now()));
        let later = t0 + Duration::from_secs(10);
        decide(
            "a",
            D,
            &mut observed,
            Some(&renewed),
            later,
            Timestamp::now(),
        );
        let d = decide(
            "a",
            D,
            &mut observed,
            Some(&renewed),
            t0 + Duration::from_secs(20),
            Timestamp::now(),
        );
        assert_eq!(
            d,
            Decision::Wait { holder: "b".into() },
            "valid until later + 15s"
        );
    }

    #[test]
    fn renewing_our_own_lease_keeps_acquire_time_and_transitions() {
        let mut observed = None;
        let spec = held_by("a", 7);
        let d = decide(
            "a",
            D,
            &mut observed,
            Some(&spec),
            Instant::now(),
            Timestamp::now(),
        );
        let Decision::Update(next) = d else {
            panic!("{d:?}")
        };
        assert_eq!(next.lease_transitions, Some(7));
        assert_eq!(next.acquire_time, spec.acquire_time);
        assert_ne!(next.renew_time, spec.renew_time);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut observed = None;
        let mut released = held_by("", 2);
        released.lease_duration_seconds = Some(1);
        let d = decide(
            "a",
            D,
            &mut observed,
            Some(&released),
            Instant::now(),
            Timestamp::now(),
        );
        let Decision::Update(next) = d else {
            panic!("{d:?}")
        };
        assert_eq!(next.lease_transitions, Some(3));
    }
}
