//! ARM-like throttling (crates/sandbox/src/throttle.rs, docs/sandbox.md "Throttling"): a token
//! bucket per principal for reads and for writes, 429 with `Retry-After` once a bucket is spent
//! [AML §4.1], and the remaining budget on every answer [MON R15]. Paused time: the buckets
//! refill on the sandbox's tokio clock, so the test advances it instead of waiting.

use std::time::Duration;

use flightdeck::sandbox::{BucketSpec, SandboxConfig, ThrottleSpec};
use flightdeck_testkit::sandbox::*;
use reqwest::StatusCode;
use serde_json::json;

const READS: &str = "x-ms-ratelimit-remaining-subscription-reads";
const WRITES: &str = "x-ms-ratelimit-remaining-subscription-writes";

fn remaining(r: &reqwest::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

#[tokio::test(start_paused = true)]
async fn a_spent_read_bucket_answers_429_with_retry_after_until_it_refills_and_writes_keep_their_own()
 {
    let env = Env::start().await;
    let off = env.get(&env.eps_url()).await;
    assert_eq!(off.status(), StatusCode::OK);
    assert_eq!(remaining(&off, READS), None, "no budget headers while off");

    env.add_fault(json!({"throttle": {
        "reads": {"capacity": 3, "per_second": 0.5},
        "writes": {"capacity": 2, "per_second": 0.5}
    }}))
    .await;
    let mut left = Vec::new();
    for _ in 0..3 {
        let r = env.get(&env.eps_url()).await;
        assert_eq!(r.status(), StatusCode::OK);
        left.push(remaining(&r, READS).unwrap());
    }
    assert_eq!(left, [2, 1, 0]);
    let refused = env.get(&env.eps_url()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // One token back takes 2 s at 0.5 per second.
    assert_eq!(refused.headers()["retry-after"], "2");
    assert_eq!(remaining(&refused, READS), Some(0));
    let (_, code, _) = error_code(refused).await;
    assert_eq!(code, "TooManyRequests");

    // A write draws from its own bucket and says how many writes are left.
    let put = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(remaining(&put, WRITES), Some(1));
    assert_eq!(remaining(&put, READS), None);

    tokio::time::advance(Duration::from_secs(2)).await;
    let again = env.get(&env.eps_url()).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(remaining(&again, READS), Some(0));

    // The fault listing shows it; DELETE switches it off with the rest.
    let faults = env.sandbox_json("/_sandbox/faults").await;
    assert_eq!(faults["throttle"]["reads"]["capacity"], 3.0);
    env.http
        .delete(format!("{}/_sandbox/faults", env.base))
        .send()
        .await
        .unwrap();
    for _ in 0..5 {
        let r = env.get(&env.eps_url()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(remaining(&r, READS), None);
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_write_changes_nothing() {
    let env = Env::start_with(SandboxConfig {
        throttle: Some(ThrottleSpec {
            reads: BucketSpec {
                capacity: 100.0,
                per_second: 1.0,
            },
            writes: BucketSpec {
                capacity: 1.0,
                per_second: 0.1,
            },
        }),
        ..SandboxConfig::default()
    })
    .await;
    let first = env
        .put(&env.ep_url("e1"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = env
        .put(&env.ep_url("e2"), &endpoint_body("Key", json!({})))
        .await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers()["retry-after"], "10");
    assert_eq!(
        env.get(&env.ep_url("e2")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_bad_throttle_spec_is_refused_and_changes_nothing() {
    let env = Env::start().await;
    let r = env
        .http
        .post(format!("{}/_sandbox/faults", env.base))
        .json(&json!({"throttle": {"reads": {"capacity": 0, "per_second": 1}, "writes": {"capacity": 1, "per_second": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("reads.capacity"),
        "{body}"
    );
    let faults = env.sandbox_json("/_sandbox/faults").await;
    assert_eq!(faults["throttle"], json!(null));
}

#[test]
fn the_throttle_flag_refuses_a_bucket_that_never_refills_before_starting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--throttle",
            "reads=10/0,writes=5/1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("throttle reads.per_second must be above 0, got 0"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing started");
}
