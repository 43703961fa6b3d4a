//! A 401 from ARM drops the cached token and fetches a new one once before the request fails
//! ([AML §4.1]: 401 is an auth answer; §6: tokens come from the Entra token endpoint). The
//! sandbox revokes every issued token through `POST /_sandbox/tokens/revoke`, as a rotated
//! secret or a revoked session does, long before the tokens' 3599 s expire.

use std::time::Duration;

use flightdeck::backend::Backend;
use flightdeck::model::Weights;
use flightdeck::plan::{Action, Step};
use flightdeck_testkit::azureml_sandbox::*;
use serde_json::{Value, json};

fn statuses(log: &[Value]) -> Vec<u64> {
    log.iter().map(|e| e["status"].as_u64().unwrap()).collect()
}

async fn revoke(env: &Env) -> u64 {
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/tokens/revoke", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["revoked"].as_u64().unwrap()
}

#[tokio::test]
async fn a_revoked_token_is_dropped_and_replaced_once_and_the_read_succeeds() {
    let env = Env::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    let desired = load(dir.path());
    let backend = env.backend(&desired);

    backend.read_live().await.expect("first read");
    assert!(revoke(&env).await >= 1, "the backend's token was issued");
    env.clear_log().await;

    let live = backend.read_live().await.expect("read after revocation");
    assert!(live.endpoints.is_empty());
    assert_eq!(
        statuses(&env.log().await),
        [401, 200],
        "the revoked token is refused once, then a fresh one is used"
    );
}

#[tokio::test]
async fn a_second_401_with_a_fresh_token_fails_the_step_with_a_clear_error() {
    let env = Env::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    let backend = env.backend(&load(dir.path()));
    env.fault(json!({
        "match": {"path_contains": "/onlineEndpoints/scoring"},
        "respond": {"status": 401, "code": "InvalidAuthenticationToken", "message": "the access token is invalid"}
    }))
    .await;
    let step = Step::new(
        "scoring".into(),
        Action::SetTraffic {
            traffic: Weights::from([("blue".to_string(), 100)]),
        },
        "test".into(),
    );
    let err = backend.execute(&step).await.unwrap_err().to_string();
    assert!(
        err.starts_with("endpoint scoring: InvalidAuthenticationToken"),
        "{err}"
    );
    assert!(
        err.contains("a freshly fetched token was refused too"),
        "{err}"
    );
    assert!(err.contains("returned 401"), "{err}");
    assert_eq!(
        statuses(&env.log().await),
        [401, 401],
        "one refresh, then the step fails; no retry storm"
    );
}
