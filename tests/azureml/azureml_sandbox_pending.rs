//! `plan` after an interrupted apply: while the endpoint is still `Updating` on the platform,
//! the plan reports it as pending and exits 1, never "no changes" (exit 0), even though the
//! endpoint's fields already read as desired. The real binary against the sandbox.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use flightdeck_testkit::azureml_sandbox::*;

fn endpoint_yaml(description: &str) -> String {
    format!("name: my-endpoint\nauth_mode: key\ndescription: {description}\n")
}

async fn run(env: &Env, args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(30), env.command(args).output())
        .await
        .expect("flightdeck finished within 30s")
        .expect("flightdeck runs")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls the sandbox log until a PUT of the endpoint shows up (generous failure timeout).
async fn wait_for_endpoint_put(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = env.log().await;
        if log.iter().any(|e| {
            let (m, p) = method_path(e);
            m == "PUT" && p.ends_with("/onlineEndpoints/my-endpoint")
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no endpoint PUT within 20s: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write(dir: &Path, description: &str) {
    std::fs::write(dir.join("my-endpoint.yml"), endpoint_yaml(description)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_after_an_interrupted_apply_reports_the_updating_endpoint_as_pending_with_exit_1() {
    let env = Env::start(Duration::from_secs(2)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, "");
    let d = dir.to_str().unwrap();
    write(&dir, "first");
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Change the description, and kill the apply as soon as its PUT has landed: the sandbox
    // keeps the endpoint Updating for the provisioning delay.
    write(&dir, "second");
    env.clear_log().await;
    let mut apply = env.command(&["apply", d]).spawn().unwrap();
    wait_for_endpoint_put(&env).await;
    apply.kill().await.unwrap();
    let body = env.arm_get("/onlineEndpoints/my-endpoint").await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Updating");

    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("no changes"), "{}", show(&out));
    assert!(
        stdout.contains("pending: endpoint my-endpoint is Updating (pending)"),
        "{}",
        show(&out)
    );

    let out = run(&env, &["plan", d, "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["changes"], true);
    assert_eq!(
        doc["pending"],
        serde_json::json!([{"endpoint": "my-endpoint", "state": "Updating"}])
    );

    let out = run(&env, &["diff", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

fn endpoint_puts(log: &[serde_json::Value]) -> usize {
    log.iter()
        .filter(|e| {
            let (m, p) = method_path(e);
            m == "PUT" && p.ends_with("/onlineEndpoints/my-endpoint")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_sees_the_first_writer_in_the_endpoint_state_and_waits_or_refuses_clearly() {
    let env = Env::start(Duration::from_secs(2)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, "");
    let d = dir.to_str().unwrap();
    write(&dir, "first");

    let first = env.command(&["apply", d]).output();
    let first = tokio::spawn(first);
    wait_for_endpoint_put(&env).await;

    // With a short bound: refused, named, nothing written.
    let mut impatient = env.command(&["apply", d]);
    impatient.env("FLIGHTDECK_LOCK_TIMEOUT", "50ms");
    let out = tokio::time::timeout(Duration::from_secs(30), impatient.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "endpoint my-endpoint is Creating (pending): another writer is at work on this \
             environment; gave up after 50ms"
        ),
        "{}",
        show(&out)
    );
    assert_eq!(endpoint_puts(&env.log().await), 1);

    // With the default bound: waits for the first writer, re-reads, finds nothing to do.
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("waiting for another writer: endpoint my-endpoint is Creating (pending)"),
        "{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("e2e: no changes"),
        "{}",
        show(&out)
    );
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    assert_eq!(
        endpoint_puts(&env.log().await),
        1,
        "the create was sent once"
    );
}
