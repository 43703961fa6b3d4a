//! Leader election against a tiny fake of the Lease API (GET, POST, PUT with resourceVersion
//! conflicts), with two candidates.

use flightdeck_testkit::fake_kube;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use flightdeck::agent::config::{AgentConfig, LeaseSettings, SourceKind};
use flightdeck::agent::lease::{
    KubeLeaseStore, LeaderElector, LeaseConfig, LeaseError, LeaseStore,
};
use flightdeck::agent::{Agent, AgentOptions, Job, Reconcile, ReconcileOutcome};
use flightdeck::plan::Plan;
use flightdeck::source::{GitAuth, GitRef, Secret};
use flightdeck_testkit::GitRepo;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct FakeLeases {
    lease: Option<Value>,
    version: u64,
    /// (method, holder) of every accepted write.
    writes: Vec<(String, String)>,
    /// GETs served: each elector round reads the lease once, so this counts rounds.
    gets: u64,
}

type Shared = Arc<Mutex<FakeLeases>>;

fn status(code: u16, reason: &str) -> (StatusCode, Json<Value>) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body))
}

fn holder(lease: &Value) -> String {
    lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn get_lease(State(s): State<Shared>) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    s.gets += 1;
    match &s.lease {
        Some(lease) => (StatusCode::OK, Json(lease.clone())),
        None => status(404, "NotFound"),
    }
}

async fn create_lease(
    State(s): State<Shared>,
    Json(mut lease): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    if s.lease.is_some() {
        return status(409, "AlreadyExists");
    }
    s.version += 1;
    lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    s.writes.push(("POST".into(), holder(&lease)));
    s.lease = Some(lease.clone());
    (StatusCode::CREATED, Json(lease))
}

async fn replace_lease(
    State(s): State<Shared>,
    Json(mut lease): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = s.lock().unwrap();
    let current = s.version.to_string();
    if s.lease.is_none() {
        return status(404, "NotFound");
    }
    if lease["metadata"]["resourceVersion"].as_str() != Some(current.as_str()) {
        return status(409, "Conflict");
    }
    s.version += 1;
    lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    s.writes.push(("PUT".into(), holder(&lease)));
    s.lease = Some(lease.clone());
    (StatusCode::OK, Json(lease))
}

async fn fake_api() -> (kube::Client, Shared) {
    let shared: Shared = Arc::default();
    let (client, _) = another_client(&shared).await;
    (client, shared)
}

/// A client on its own listener over the same leases, and how many GETs came through it: one
/// candidate's rounds, told apart from the other's.
async fn another_client(shared: &Shared) -> (kube::Client, Arc<AtomicU64>) {
    let base = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
    let gets = Arc::new(AtomicU64::new(0));
    let counted = gets.clone();
    let app = axum::Router::new()
        .route(&format!("{base}/agent"), get(get_lease).put(replace_lease))
        .route(base, post(create_lease))
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                if request.method() == axum::http::Method::GET {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (kube::Client::try_from(config).unwrap(), gets)
}

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "agent".into(),
        namespace: "ops".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(50),
        advertise_url: None,
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// Paused time: the lease clock moves only when the test advances it.
#[tokio::test(start_paused = true)]
async fn the_first_candidate_creates_the_lease_and_the_second_waits() {
    let (client, shared) = fake_api().await;
    let mut a = LeaderElector::new(
        KubeLeaseStore::new(client.clone(), "ops", "agent"),
        lease_config("a"),
    );
    let mut b = LeaderElector::new(
        KubeLeaseStore::new(client.clone(), "ops", "agent"),
        lease_config("b"),
    );
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "a valid lease held by a is respected"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    // a stops renewing. b first sees the renewed record now and must wait a full lease
    // duration from this local observation, whatever the server's renewTime says.
    assert!(!b.try_acquire_or_renew().await.unwrap());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "still valid just before a full lease duration after b saw it change"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "b takes over an expired lease"
    );
    let s = shared.lock().unwrap();
    let lease = s.lease.as_ref().unwrap();
    assert_eq!(holder(lease), "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    let methods: Vec<&str> = s.writes.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["POST", "PUT", "PUT"]);
}

#[tokio::test]
async fn a_concurrent_writer_gets_a_conflict_and_loses() {
    let (client, _shared) = fake_api().await;
    let store = KubeLeaseStore::new(client.clone(), "ops", "agent");
    let mut a = LeaderElector::new(
        KubeLeaseStore::new(client, "ops", "agent"),
        lease_config("a"),
    );
    assert!(a.try_acquire_or_renew().await.unwrap());
    // Two writers that read the same resourceVersion: only the first PUT lands.
    let read = store.get().await.unwrap().unwrap();
    assert!(store.replace(&read).await.is_ok());
    assert!(matches!(
        store.replace(&read).await,
        Err(LeaseError::Conflict)
    ));
}

// Counted in b's rounds (its GETs), not in time: a round-based bound holds on any machine.
#[tokio::test(start_paused = true)]
async fn releasing_on_shutdown_hands_the_lease_over_at_once() {
    let (client, shared) = fake_api().await;
    let (client_b, b_gets) = another_client(&shared).await;
    let a = LeaderElector::new(
        KubeLeaseStore::new(client, "ops", "agent"),
        lease_config("a"),
    );
    let b = LeaderElector::new(
        KubeLeaseStore::new(client_b, "ops", "agent"),
        lease_config("b"),
    );
    let (a_tx, a_rx) = watch::channel(false);
    let (b_tx, b_rx) = watch::channel(false);
    let cancel_a = CancellationToken::new();
    let cancel_b = CancellationToken::new();
    let task_a = tokio::spawn(a.run(a_tx, cancel_a.clone()));
    eventually("a leads", || *a_rx.borrow()).await;
    let task_b = tokio::spawn(b.run(b_tx, cancel_b.clone()));
    // b retries every 50 ms against a valid lease: three of its rounds, then it still waits.
    eventually("b reads the lease three times", || {
        b_gets.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(!*b_rx.borrow(), "only one leader");

    cancel_a.cancel();
    task_a.await.unwrap();
    assert!(!*a_rx.borrow());
    let released = b_gets.load(Ordering::SeqCst);
    eventually("b leads", || *b_rx.borrow()).await;
    // Without the release b would wait out the 1 s lease (20 rounds of 50 ms); with it, the
    // round in flight at the release, or the next one, wins.
    let rounds = b_gets.load(Ordering::SeqCst) - released;
    assert!(rounds <= 2, "b took {rounds} rounds after the release");
    {
        let s = shared.lock().unwrap();
        assert!(
            s.writes.iter().any(|(m, h)| m == "PUT" && h.is_empty()),
            "a wrote an empty holder"
        );
        assert_eq!(holder(s.lease.as_ref().unwrap()), "b");
    }
    cancel_b.cancel();
    task_b.await.unwrap();
}

/// (may_apply, revision) of every reconcile.
struct Recorder(Mutex<Vec<(bool, String)>>);

impl Recorder {
    fn may_apply(&self) -> Vec<bool> {
        self.0.lock().unwrap().iter().map(|(m, _)| *m).collect()
    }

    fn applied(&self, revision: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|(m, r)| *m && r == revision)
    }
}

#[async_trait]
impl Reconcile for Recorder {
    async fn reconcile(&self, job: Job) -> ReconcileOutcome {
        self.0
            .lock()
            .unwrap()
            .push((job.may_apply, job.revision.clone()));
        if job.may_apply {
            ReconcileOutcome::InSync
        } else {
            ReconcileOutcome::Planned {
                plan: Plan::default(),
            }
        }
    }
}

fn repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("environments/prod/environment.yaml", "name: prod\n");
    repo.commit("init");
    repo
}

/// Webhook settings for an agent: the secret, and a port to listen on and advertise.
struct Hook {
    secret: &'static str,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_agent(
    repo: &Path,
    client: kube::Client,
    identity: &str,
    interval: Duration,
    hook: Option<Hook>,
) -> (Agent, Arc<Recorder>, CancellationToken) {
    let cache =
        std::env::temp_dir().join(format!("flightdeck-lease-test-{}", uuid::Uuid::new_v4()));
    let port = hook.as_ref().map_or(0, |h| h.port);
    let config = AgentConfig {
        source: SourceKind::Git {
            url: repo.display().to_string(),
            reference: GitRef::Branch("main".into()),
            cache_dir: cache,
            auth: GitAuth::default(),
        },
        paths: vec![PathBuf::from("environments/prod")],
        interval,
        full_resync: flightdeck::agent::scope::DEFAULT_FULL_RESYNC,
        concurrency: 8,
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        webhook_secret: hook.as_ref().map(|h| Secret::new(h.secret)),
        dashboard: Default::default(),
        lease: Some(LeaseSettings {
            name: "agent".into(),
            namespace: "ops".into(),
            advertise_url: hook.map(|h| format!("http://127.0.0.1:{}", h.port)),
        }),
        verify_keys: vec![],
        backend: Default::default(),
        http: Default::default(),
        promotion: None,
    };
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let options = AgentOptions {
        kube_client: Some(client),
        lease_timing: Some((
            Duration::from_secs(1),
            Duration::from_millis(600),
            Duration::from_millis(50),
        )),
        identity: Some(identity.into()),
        ..AgentOptions::default()
    };
    let cancel = CancellationToken::new();
    let agent = Agent::start(config, recorder.clone(), options, cancel.clone())
        .await
        .unwrap();
    (agent, recorder, cancel)
}

#[tokio::test]
async fn only_the_leader_applies_and_followers_still_serve_status() {
    let (client, _shared) = fake_api().await;
    let repo = repo();
    let fast = Duration::from_millis(50);
    let (a, a_calls, cancel_a) =
        start_agent(repo.dir.path(), client.clone(), "a", fast, None).await;
    let a_state = a.state();
    eventually("a leads", || a_state.snapshot().role == "leader").await;
    let (b, b_calls, cancel_b) = start_agent(repo.dir.path(), client, "b", fast, None).await;
    let b_state = b.state();
    eventually("b reconciles as a follower", || {
        b_calls.may_apply().len() >= 3
    })
    .await;
    assert!(
        b_calls.may_apply().iter().all(|may_apply| !may_apply),
        "the follower never applies"
    );
    assert!(a_calls.may_apply().iter().any(|may_apply| *may_apply));

    let status: Value = reqwest::get(format!("http://{}/status", b.local_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["role"], "follower");
    assert_eq!(
        status["environments"]["environments/prod"]["last_result"],
        "planned"
    );
    let health = reqwest::get(format!("http://{}/healthz", b.local_addr()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(b_state.metrics.render().contains("flightdeck_leader 0"));

    cancel_a.cancel();
    a.wait().await;
    eventually("b takes over and applies", || {
        b_calls.may_apply().last() == Some(&true)
    })
    .await;
    assert_eq!(b_state.snapshot().role, "leader");
    cancel_b.cancel();
    b.wait().await;
}

#[tokio::test]
async fn a_push_to_a_standby_is_passed_on_to_the_leader_at_once() {
    let (client, shared) = fake_api().await;
    let repo = repo();
    let slow = Duration::from_secs(600);
    let secret = "hook-secret";
    let a_port = free_port();
    let (a, a_calls, cancel_a) = start_agent(
        repo.dir.path(),
        client.clone(),
        "a",
        slow,
        Some(Hook {
            secret,
            port: a_port,
        }),
    )
    .await;
    eventually("a leads", || a.state().snapshot().role == "leader").await;
    let advertised = shared.lock().unwrap().lease.as_ref().unwrap()["metadata"]["annotations"]
        ["flightdeck.io/webhook-url"]
        .clone();
    assert_eq!(advertised, json!(format!("http://127.0.0.1:{a_port}")));
    let (b, b_calls, cancel_b) = start_agent(
        repo.dir.path(),
        client,
        "b",
        slow,
        Some(Hook {
            secret,
            port: free_port(),
        }),
    )
    .await;
    eventually("b's first sync", || !b_calls.may_apply().is_empty()).await;
    // b reads the lease (and the leader's URL) every 50 ms: wait until it has, a few times.
    let gets = shared.lock().unwrap().gets;
    eventually("b reads the lease", || {
        shared.lock().unwrap().gets >= gets + 4
    })
    .await;

    let new = repo.commit("traffic change");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let http = reqwest::Client::new();
    let push = |signature: String| {
        http.post(format!("http://{}/webhook", b.local_addr()))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
    };
    let forged = push(flightdeck::agent::webhook::sign_github(
        b"wrong",
        body.as_bytes(),
    ))
    .await
    .unwrap();
    assert_eq!(forged.status(), 401);
    // b forwards before it answers and a counts a sync request before it answers b, so right
    // after the 401 no request on either side means nothing was, or will be, passed on.
    assert_eq!(
        a.state().snapshot().sync_requests,
        0,
        "a forged push is not passed on"
    );
    assert_eq!(b.state().snapshot().sync_requests, 0);
    assert!(!a_calls.applied(&new));

    let answer = push(flightdeck::agent::webhook::sign_github(
        secret.as_bytes(),
        body.as_bytes(),
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 202);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(
        answer["forwarded_to"],
        json!(format!("http://127.0.0.1:{a_port}"))
    );
    eventually("the leader applies the pushed commit", || {
        a_calls.applied(&new)
    })
    .await;
    assert!(
        b.state()
            .metrics
            .render()
            .contains("flightdeck_webhook_forwards_total{outcome=\"ok\"} 1")
    );
    assert!(!b_calls.may_apply().iter().any(|m| *m), "b never applies");

    // The leader itself does not forward.
    let direct: Value = reqwest::Client::new()
        .post(format!("http://{}/webhook", a.local_addr()))
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            flightdeck::agent::webhook::sign_github(secret.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(direct["status"], "sync triggered");
    assert!(direct.get("forwarded_to").is_none(), "{direct}");

    cancel_b.cancel();
    b.wait().await;
    cancel_a.cancel();
    a.wait().await;
    let lease = shared.lock().unwrap().lease.clone().unwrap();
    assert!(
        lease["metadata"]["annotations"]
            .get("flightdeck.io/webhook-url")
            .is_none(),
        "the released lease advertises nobody: {lease}"
    );
}

/// Every (instant, leading) change of a replica's leadership flag, as it happens.
fn record_leadership(mut rx: watch::Receiver<bool>) -> Arc<Mutex<Vec<(Instant, bool)>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let out = log.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let leading = *rx.borrow_and_update();
            out.lock().unwrap().push((Instant::now(), leading));
        }
    });
    log
}

/// The [start, end) intervals in which a replica acted as leader (`end` = None: still leads).
fn intervals(log: &[(Instant, bool)]) -> Vec<(Instant, Option<Instant>)> {
    let mut out: Vec<(Instant, Option<Instant>)> = Vec::new();
    for (at, leading) in log {
        match (leading, out.last_mut()) {
            (true, Some((_, None))) => {}
            (true, _) => out.push((*at, None)),
            (false, Some(last @ (_, None))) => last.1 = Some(*at),
            (false, _) => {}
        }
    }
    out
}

// Paused time: the lease's 1 s, the renew deadline and the API server's 30 s hang are tokio time,
// so the order of events is decided by the electors' own clocks, not by the machine's load.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_hang_steps_down_before_another_replica_takes_the_lease() {
    let fake = fake_kube::FakeKube::start().await;
    let a = LeaderElector::new(
        KubeLeaseStore::new(fake.client(), "ops", "agent"),
        lease_config("a"),
    );
    let b = LeaderElector::new(
        KubeLeaseStore::new(fake.client(), "ops", "agent"),
        lease_config("b"),
    );
    let (a_tx, a_rx) = watch::channel(false);
    let (b_tx, b_rx) = watch::channel(false);
    let a_log = record_leadership(a_rx.clone());
    let b_log = record_leadership(b_rx.clone());
    let cancel = CancellationToken::new();
    let task_a = tokio::spawn(a.run(a_tx, cancel.clone()));
    eventually("a leads", || *a_rx.borrow()).await;

    // The API server now takes 30 s to answer a's renewals (far past the 1 s lease).
    fake.delay_lease_writes("a", Duration::from_secs(30));
    let task_b = tokio::spawn(b.run(b_tx, cancel.clone()));
    eventually("b takes the lease once it expires", || *b_rx.borrow()).await;

    let a_intervals = intervals(&a_log.lock().unwrap());
    let b_intervals = intervals(&b_log.lock().unwrap());
    assert_eq!(b_intervals.len(), 1, "{b_intervals:?}");
    let b_start = b_intervals[0].0;
    for (start, end) in &a_intervals {
        let end = end.expect("a stopped acting as leader");
        assert!(start < &end);
        assert!(
            end < b_start,
            "a led until {:?} after b took over",
            end - b_start
        );
    }
    assert!(
        !*a_rx.borrow(),
        "a does not lead again while its writes hang"
    );
    let lease = fake.object("leases", "ops", "agent").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    cancel.cancel();
    task_b.await.unwrap();
    // a's last call may still be inside its (bounded) round; it ends within the deadline.
    task_a.await.unwrap();
}
