//! A fake Kubernetes API server (axum on 127.0.0.1:0) for the kinds flightdeck uses: Deployments,
//! Services, Istio VirtualServices and DestinationRules, Gateway API HTTPRoutes. It speaks the
//! REST/JSON protocol (GET/LIST with label selectors and paging, POST, PUT with resourceVersion
//! preconditions, server-side apply with field ownership and conflicts, merge patch, DELETE,
//! watch), validates CRD objects against the reference schemas, runs a scriptable Deployment
//! controller and a scriptable service proxy, and logs every request for order assertions.
//!
//! Use from a test: `use flightdeck_testkit::fake_kube;`.

mod controller;
pub mod fixtures;
mod http;
mod quantity;
mod store;
mod strict;
pub mod traffic;
mod validate;
mod validate_pod;
mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

pub use controller::Script;
pub use http::Logged;
use store::{KINDS, Kind, Store};

/// State shared by the HTTP handlers and the controller.
pub struct Shared {
    store: Mutex<Store>,
    log: Mutex<Vec<Logged>>,
    scripts: Mutex<BTreeMap<String, Script>>,
    responders: Mutex<BTreeMap<String, (u16, String)>>,
    proxied: Mutex<Vec<(String, String, Value)>>,
    invalid: Mutex<Vec<String>>,
    mbb: Mutex<Vec<String>>,
    /// Lease writes (POST/PUT) whose `spec.holderIdentity` is a key wait this long before the
    /// server handles them: a slow API server, as one replica sees it.
    lease_delays: Mutex<BTreeMap<String, Duration>>,
    /// Versions of `networking.istio.io` the fake serves (discovery and paths); empty = Istio
    /// is not installed.
    istio_versions: Mutex<Vec<&'static str>>,
}

impl Shared {
    /// [K8S §1] ISTIO-MBB: after every write, every subset a VirtualService names must be
    /// defined by the DestinationRule for its host. Violations are recorded (Istio would 503).
    fn check_make_before_break(&self) {
        let store = self.store.lock().unwrap();
        let mut defined: BTreeSet<(String, String)> = BTreeSet::new();
        for ((plural, _, _), s) in &store.objects {
            if *plural == "destinationrules" {
                let host = s
                    .object
                    .pointer("/spec/host")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                for sub in s
                    .object
                    .pointer("/spec/subsets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    defined.insert((
                        host.to_string(),
                        sub["name"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        let mut violations = self.mbb.lock().unwrap();
        for ((plural, _, name), s) in &store.objects {
            if *plural != "virtualservices" {
                continue;
            }
            for rule in s
                .object
                .pointer("/spec/http")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let dests = rule["route"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| &r["destination"])
                    .chain(rule.get("mirror"));
                for d in dests {
                    let (Some(host), Some(subset)) = (d["host"].as_str(), d["subset"].as_str())
                    else {
                        continue;
                    };
                    if !defined.contains(&(host.to_string(), subset.to_string())) {
                        let v = format!(
                            "virtualservice {name} names subset {subset} of {host}, which no DestinationRule defines (rv {})",
                            store.rv
                        );
                        violations.push(v);
                    }
                }
            }
        }
    }
}

pub struct FakeKube {
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    controller: JoinHandle<()>,
}

fn kind(plural: &str) -> Kind {
    KINDS
        .iter()
        .copied()
        .find(|k| k.plural == plural)
        .unwrap_or_else(|| panic!("unknown kind {plural}"))
}

impl FakeKube {
    /// Starts with a 20ms rollout delay.
    pub async fn start() -> FakeKube {
        FakeKube::start_with(Duration::from_millis(20)).await
    }

    pub async fn start_with(rollout_delay: Duration) -> FakeKube {
        validate::warm_up();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            log: Mutex::new(Vec::new()),
            scripts: Mutex::new(BTreeMap::new()),
            responders: Mutex::new(BTreeMap::new()),
            proxied: Mutex::new(Vec::new()),
            invalid: Mutex::new(Vec::new()),
            mbb: Mutex::new(Vec::new()),
            lease_delays: Mutex::new(BTreeMap::new()),
            istio_versions: Mutex::new(vec!["v1", "v1beta1", "v1alpha3"]),
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake api server");
        });
        let controller = tokio::spawn(controller::run(shared.clone(), rollout_delay));
        FakeKube {
            url,
            shared,
            server,
            controller,
        }
    }

    /// A kube client for this server: plain http, no auth, no retries.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("url"));
        config.default_retry = false;
        kube::Client::try_from(config).expect("kube client")
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Write requests (POST/PUT/PATCH/DELETE to resources) in order.
    pub fn write_requests(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_write)
            .collect()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Client requests that changed stored state.
    pub fn writes(&self) -> u64 {
        self.shared.store.lock().unwrap().writes
    }

    /// The stored object (without managedFields), if present.
    pub fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.shared
            .store
            .lock()
            .unwrap()
            .get(kind(plural), ns, name)
            .map(|s| s.object.clone())
    }

    pub fn names(&self, plural: &str, ns: &str) -> Vec<String> {
        let store = self.shared.store.lock().unwrap();
        store
            .objects
            .keys()
            .filter(|(p, n, _)| *p == plural && n == ns)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// Creates an object as another client would (`Update` by `manager`).
    pub fn seed(&self, plural: &str, ns: &str, body: Value, manager: &str) -> Value {
        self.shared
            .store
            .lock()
            .unwrap()
            .create(kind(plural), ns, body, manager)
            .expect("seed object")
    }

    /// Applies an object as another field manager would (`Apply` by `manager`).
    pub fn seed_apply(&self, plural: &str, ns: &str, body: Value, manager: &str) -> Value {
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("name")
            .to_string();
        self.shared
            .store
            .lock()
            .unwrap()
            .apply(kind(plural), ns, &name, body, manager, false)
            .expect("seed apply")
    }

    /// Deletes an object as another client would (`kubectl delete`).
    pub fn delete(&self, plural: &str, ns: &str, name: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .delete(kind(plural), ns, name)
            .expect("delete object");
    }

    /// Merge-patches an object as another client would (`kubectl patch --type merge`).
    pub fn patch(&self, plural: &str, ns: &str, name: &str, patch: Value, manager: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .merge_patch(kind(plural), ns, name, patch, manager)
            .expect("merge patch");
    }

    /// Serves only these `networking.istio.io` versions (`[]`: Istio is not installed), as an
    /// older Istio (< 1.22 has no `v1`) or a cluster without Istio would.
    pub fn serve_istio(&self, versions: &[&'static str]) {
        *self.shared.istio_versions.lock().unwrap() = versions.to_vec();
    }

    pub fn script(&self, deployment: &str, script: Script) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .insert(deployment.to_string(), script);
    }

    /// What the service proxy answers for `service`.
    pub fn respond(&self, service: &str, status: u16, body: &str) {
        self.shared
            .responders
            .lock()
            .unwrap()
            .insert(service.to_string(), (status, body.to_string()));
    }

    /// Requests that went through the service proxy: (service, path, body).
    pub fn proxied(&self) -> Vec<(String, String, Value)> {
        self.shared.proxied.lock().unwrap().clone()
    }

    /// Messages of every write the fake refused as 422 Invalid.
    pub fn invalid(&self) -> Vec<String> {
        self.shared.invalid.lock().unwrap().clone()
    }

    pub fn mbb_violations(&self) -> Vec<String> {
        self.shared.mbb.lock().unwrap().clone()
    }

    /// From now on, Lease writes by `holder` are answered only after `delay` (the write is
    /// applied then, if the client still waits; a client that gave up closes the connection and
    /// the write is dropped). `Duration::ZERO` makes them fast again.
    pub fn delay_lease_writes(&self, holder: &str, delay: Duration) {
        let mut delays = self.shared.lease_delays.lock().unwrap();
        if delay.is_zero() {
            delays.remove(holder);
        } else {
            delays.insert(holder.to_string(), delay);
        }
    }

    /// Drops the watch history: older resourceVersions now get 410 Expired.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
        self.controller.abort();
    }
}
