//! The LRO follower polls fast when the platform sends no `Retry-After` and backs off from
//! there: a 1 s operation is followed to its end in four polls, 1.6 s after it started, not
//! after a flat 10 s wait (crates/azureml/src/lro.rs `poll_policy`). The first poll waits for the
//! `Retry-After` of the answer that started the operation, or the first backoff without one. Paused tokio time against
//! the scripted ARM fake: the operation is "done" one virtual second after its PUT, and the
//! fake records when each poll arrived, so the schedule is checked exactly and without waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck::backend::Backend;
use flightdeck::backend::azureml::{AzureMlBackend, AzureMlConfig};
use flightdeck::model::EndpointSettings;
use flightdeck::plan::{Action, FieldChange};
use flightdeck_testkit::arm_fake::*;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn a_one_second_operation_without_retry_after_is_seen_done_within_a_few_polls() {
    let fake = Fake::start().await;
    let e = eps("/polled");
    // The operation starts with the PUT (no Retry-After anywhere) and is done 1 s later.
    let started: Arc<Mutex<Option<tokio::time::Instant>>> = Arc::default();
    let at_put = started.clone();
    fake.on_fn("PUT", &e, move |seen| {
        *at_put.lock().unwrap() = Some(seen.at);
        Canned::json(
            201,
            endpoint_body("polled", "Creating", json!({}), json!({})),
        )
        .header(
            "Azure-AsyncOperation",
            "{base}/ops/1?api-version=2025-12-01",
        )
    });
    let at_poll = started.clone();
    fake.on_fn("GET", "/ops/1", move |seen| {
        let put = at_poll.lock().unwrap().expect("polled after the PUT");
        let done = seen.at.duration_since(put) >= Duration::from_secs(1);
        Canned::json(
            200,
            op_status(if done { "Succeeded" } else { "InProgress" }),
        )
    });
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("polled", "Succeeded", json!({}), json!({})),
        )],
    );
    // The production poll cap (30 s), not the 20 ms the other fake tests use.
    let config = AzureMlConfig {
        max_poll_interval: AzureMlConfig::default().max_poll_interval,
        step_timeout: Duration::from_secs(60),
        ..config(&fake)
    };
    let backend = AzureMlBackend::new(&target(), config, Arc::new(StaticToken)).unwrap();

    let step = step(
        "polled",
        Action::CreateEndpoint {
            settings: EndpointSettings::default(),
        },
    );
    backend
        .execute(&step)
        .await
        .expect("the endpoint is created");

    let log = fake.log();
    let put = started.lock().unwrap().unwrap();
    let polls: Vec<Duration> = log
        .iter()
        .filter(|s| s.line() == "GET /ops/1")
        .map(|s| s.at.duration_since(put))
        .collect();
    // 200, 400, 800, 1600 ms: the first backoff before the first poll, then doubling; the fourth
    // poll is the first after the operation's end. The old flat 10 s wait would poll at 0 and
    // 10 s; a hot loop would poll hundreds of times.
    let ms = Duration::from_millis;
    assert_eq!(polls, [ms(200), ms(400), ms(800), ms(1600)], "{log:#?}");
    let read_back = log.last().unwrap();
    assert_eq!(read_back.line(), format!("GET {e}"));
    assert_eq!(read_back.at.duration_since(put), ms(1600));
    fake.stop().await;
}

/// A PATCH whose `Location` answers 202 with `Retry-After: 0` until the operation is 3 s old,
/// followed under the production poll floor and cap; the times of the `Location` polls.
async fn location_polls_with(
    retry_after: &str,
    tune: impl Fn(AzureMlConfig) -> AzureMlConfig,
) -> Vec<Duration> {
    let fake = Fake::start().await;
    let e = eps("/zero");
    let started: Arc<Mutex<Option<tokio::time::Instant>>> = Arc::default();
    let at_patch = started.clone();
    let header = retry_after.to_string();
    fake.on_fn("PATCH", &e, move |seen| {
        *at_patch.lock().unwrap() = Some(seen.at);
        Canned::empty(202)
            .header("Location", "{base}/ops/zero?api-version=2025-12-01")
            .header("Retry-After", &header)
    });
    let at_poll = started.clone();
    let header = retry_after.to_string();
    fake.on_fn("GET", "/ops/zero", move |seen| {
        let patch = at_poll.lock().unwrap().expect("polled after the PATCH");
        if seen.at.duration_since(patch) >= Duration::from_secs(3) {
            Canned::empty(200)
        } else {
            Canned::empty(202).header("Retry-After", &header)
        }
    });
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("zero", "Succeeded", json!({}), json!({})),
        )],
    );
    let defaults = AzureMlConfig::default();
    let config = tune(AzureMlConfig {
        min_poll_interval: defaults.min_poll_interval,
        max_poll_interval: defaults.max_poll_interval,
        step_timeout: Duration::from_secs(60),
        ..config(&fake)
    });
    let backend = AzureMlBackend::new(&target(), config, Arc::new(StaticToken)).unwrap();
    let step = step(
        "zero",
        Action::UpdateEndpoint {
            settings: EndpointSettings {
                tags: Some([("team".to_string(), "ml".to_string())].into()),
                ..EndpointSettings::default()
            },
            changes: vec![FieldChange {
                field: "tags.team".into(),
                from: None,
                to: "ml".into(),
            }],
        },
    );
    backend
        .execute(&step)
        .await
        .expect("the endpoint's tags are updated");
    let patch = started.lock().unwrap().unwrap();
    let polls = fake
        .log()
        .iter()
        .filter(|s| s.line() == "GET /ops/zero")
        .map(|s| s.at.duration_since(patch))
        .collect();
    fake.stop().await;
    polls
}

// Paused time: a `Retry-After: 0` used to be waited out as zero, so the follower resent the
// poll back to back until the step timeout (the sandbox at `--retry-after 0` saw ~17 ARM
// requests per write). Now zero means the client's own backoff: the first poll after the first
// backoff (as without Retry-After), then 200, 400, 800, 1600 ms apart.
#[tokio::test(start_paused = true)]
async fn a_retry_after_of_zero_is_followed_by_the_own_backoff_not_a_tight_loop() {
    let polls = location_polls_with("0", |c| c).await;
    let ms = Duration::from_millis;
    assert_eq!(
        polls,
        [ms(200), ms(400), ms(800), ms(1600), ms(3200)].to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_under_the_configured_floor_is_raised_to_the_floor() {
    let polls = location_polls_with("1", |c| AzureMlConfig {
        min_poll_interval: Duration::from_secs(2),
        ..c
    })
    .await;
    let s = Duration::from_secs;
    // Asked for 1 s each time (the PATCH's 202 too), waited the 2 s floor: polls at 2 and 4 s
    // (done after 3 s), none at once.
    assert_eq!(polls, [s(2), s(4)].to_vec());
}

// The sandbox's shape under a throttle: a 500 ms operation whose PUT says `Retry-After: 1`. The
// first poll goes when the platform asked, and sees it done: one status read per write, not a
// poll at once that can only say "InProgress" and a second one after the wait.
#[tokio::test(start_paused = true)]
async fn the_first_poll_waits_for_the_retry_after_of_the_answer_that_started_the_operation() {
    let fake = Fake::start().await;
    let e = eps("/asked");
    let started: Arc<Mutex<Option<tokio::time::Instant>>> = Arc::default();
    let at_put = started.clone();
    fake.on_fn("PUT", &e, move |seen| {
        *at_put.lock().unwrap() = Some(seen.at);
        Canned::json(
            201,
            endpoint_body("asked", "Creating", json!({}), json!({})),
        )
        .header(
            "Azure-AsyncOperation",
            "{base}/ops/2?api-version=2025-12-01",
        )
        .header("Retry-After", "1")
    });
    let at_poll = started.clone();
    fake.on_fn("GET", "/ops/2", move |seen| {
        let put = at_poll.lock().unwrap().expect("polled after the PUT");
        let done = seen.at.duration_since(put) >= Duration::from_millis(500);
        Canned::json(
            200,
            op_status(if done { "Succeeded" } else { "InProgress" }),
        )
        .header("Retry-After", "1")
    });
    fake.on(
        "GET",
        &e,
        vec![Canned::json(
            200,
            endpoint_body("asked", "Succeeded", json!({}), json!({})),
        )],
    );
    let defaults = AzureMlConfig::default();
    let config = AzureMlConfig {
        min_poll_interval: defaults.min_poll_interval,
        max_poll_interval: defaults.max_poll_interval,
        step_timeout: Duration::from_secs(60),
        ..config(&fake)
    };
    let backend = AzureMlBackend::new(&target(), config, Arc::new(StaticToken)).unwrap();
    let step = step(
        "asked",
        Action::CreateEndpoint {
            settings: EndpointSettings::default(),
        },
    );
    backend
        .execute(&step)
        .await
        .expect("the endpoint is created");
    let put = started.lock().unwrap().unwrap();
    let polls: Vec<Duration> = fake
        .log()
        .iter()
        .filter(|s| s.line() == "GET /ops/2")
        .map(|s| s.at.duration_since(put))
        .collect();
    assert_eq!(polls, [Duration::from_secs(1)]);
    fake.stop().await;
}
