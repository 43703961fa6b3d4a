//! `plan` after an interrupted apply: while the endpoint is still `Updating` on the platform,
//! the plan reports it as pending and exits 1, never "no changes" (exit 0), even though the
//! endpoint's fields already read as desired. The real binary against the sandbox, whose
//! operations are held in progress (`/_sandbox/operations/hold`) for as long as a test needs
//! them in flight, instead of relying on a provisioning delay being long enough.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use tokio::io::{AsyncBufReadExt, BufReader};

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

/// Waits until the endpoint's provisioningState is terminal (generous failure timeout).
async fn wait_terminal(env: &Env) {
    flightdeck_testkit::eventually("my-endpoint is Succeeded", Duration::from_secs(30), || async {
        env.arm_get("/onlineEndpoints/my-endpoint").await.unwrap()["properties"]
            ["provisioningState"]
            == "Succeeded"
    })
    .await;
}

fn write(dir: &Path, description: &str) {
    std::fs::write(dir.join("my-endpoint.yml"), endpoint_yaml(description)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_after_an_interrupted_apply_reports_the_updating_endpoint_as_pending_with_exit_1() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, "");
    let d = dir.to_str().unwrap();
    write(&dir, "first");
    let out = run(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Change the description, and kill the apply once the sandbox holds its update: the
    // endpoint stays Updating until the test releases it, however slow the machine is.
    write(&dir, "second");
    env.hold(serde_json::json!({"endpoint": "my-endpoint"}))
        .await;
    let mut apply = env.command(&["apply", d]).spawn().unwrap();
    let held = env.wait_held(1).await;
    assert_eq!(held[0]["kind"], "Update", "{held:?}");
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

    // Released, the update ends and the same plan finds nothing to do.
    assert_eq!(env.release().await.len(), 1);
    wait_terminal(&env).await;
    let out = run(&env, &["plan", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
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
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, "");
    let d = dir.to_str().unwrap();
    write(&dir, "first");

    // The first writer's create stays Creating until the test releases it.
    env.hold(serde_json::json!({"endpoint": "my-endpoint"}))
        .await;
    let first = tokio::spawn(env.command(&["apply", d]).output());
    env.wait_held(1).await;

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

    // With the default bound: announces that it waits, and keeps waiting while the hold lasts;
    // once released it re-reads and finds nothing to do.
    let mut patient = env
        .command(&["apply", d])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(patient.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let announced = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if line
                .contains("waiting for another writer: endpoint my-endpoint is Creating (pending)")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(announced, Ok(true), "{stderr}");
    assert_eq!(env.release().await.len(), 1);
    let out = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        patient.wait_with_output().await.unwrap()
    })
    .await
    .expect("flightdeck finished within 30s");
    let show_patient = format!("{}{stderr}", show(&out));
    assert_eq!(out.status.code(), Some(0), "{show_patient}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("e2e: no changes"),
        "{show_patient}"
    );
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    assert_eq!(
        endpoint_puts(&env.log().await),
        1,
        "the create was sent once"
    );
}
