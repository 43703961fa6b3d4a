//! A crashed environment worker is reported and restarted: a panic inside the reconcile shows
//! as `worker: "panicked: <message>"` in `/status`, fails `/readyz` until the worker runs
//! again, and restarts follow exponential backoff (paused tokio time: the delays are virtual).

use std::sync::Arc;
use std::time::Duration;

use flightdeck::agent::backoff::Backoff;
use flightdeck::agent::{Agent, AgentOptions};
use flightdeck_testkit::recorder::{Recorder, git_config};
use flightdeck_testkit::{GitRepo, eventually, metrics, status};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);
const ENV: &str = "environments/prod";

async fn readyz(base: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_panicking_worker_is_reported_fails_readiness_and_restarts_with_backoff() {
    let repo = GitRepo::new();
    repo.write("environments/prod/environment.yaml", "name: prod\n");
    let first = repo.commit("init");
    let cache = tempfile::tempdir().unwrap();
    let config = git_config(
        repo.dir.path(),
        cache.path(),
        &[ENV],
        Duration::from_secs(3600),
        None,
    );
    let recorder = Arc::new(Recorder::default());
    let base_delay = Duration::from_secs(10);
    let options = AgentOptions {
        restart_backoff: Some(Backoff {
            base: base_delay,
            max: Duration::from_secs(80),
        }),
        ..AgentOptions::default()
    };
    let cancel = CancellationToken::new();
    let agent = Agent::start(config, recorder.clone(), options, cancel.clone())
        .await
        .unwrap();
    let base = format!("http://{}", agent.local_addr());
    eventually("the first sync", T, || async {
        recorder.reconciled(&first)
    })
    .await;
    assert_eq!(readyz(&base).await.0, 200);
    assert_eq!(
        status(&base).await["environments"][ENV]["worker"],
        "running"
    );

    recorder.panic_with(Some("injected crash"));
    repo.write("environments/prod/more.yaml", "x: 1\n");
    let second = repo.commit("second");
    let calls_before = recorder.calls().len();
    agent.trigger();
    eventually("the crash is reported and readiness fails", T, || async {
        let s = status(&base).await;
        let (code, text) = readyz(&base).await;
        s["environments"][ENV]["worker"] == "panicked: injected crash"
            && code == 503
            && text == format!("not ready: worker for {ENV} panicked: injected crash\n")
    })
    .await;
    // Let it crash four times: the restarts wait 10 s, 20 s, 40 s of (virtual) time.
    eventually("three restarts", T, || async {
        recorder.calls().len() >= calls_before + 4
    })
    .await;
    let calls = recorder.calls();
    let gaps: Vec<Duration> = calls[calls_before..calls_before + 4]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    for (i, gap) in gaps.iter().enumerate() {
        let expected = base_delay * 2u32.pow(i as u32);
        assert!(*gap >= expected, "restart {}: {gaps:?}", i + 1);
    }
    let s = status(&base).await;
    assert!(
        s["environments"][ENV]["worker_restarts"].as_u64().unwrap() >= 3,
        "{s}"
    );

    recorder.panic_with(None);
    eventually("the restarted worker applies the commit", T, || async {
        recorder.reconciled(&second)
    })
    .await;
    eventually("ready again", T, || async { readyz(&base).await.0 == 200 }).await;
    let s = status(&base).await;
    let env = &s["environments"][ENV];
    assert_eq!(env["worker"], "running", "{s}");
    assert_eq!(env["last_worker_error"], "panicked: injected crash");
    assert_eq!(env["applied_commit"], second.as_str());
    let restarts = env["worker_restarts"].as_u64().unwrap();
    assert!(
        metrics(&base).await.contains(&format!(
            "flightdeck_worker_restarts_total{{env=\"{ENV}\"}} {restarts}\n"
        )),
        "{s}"
    );
    cancel.cancel();
    agent.wait().await;
}
