//! Ctrl-C (SIGINT) and SIGTERM sent to the real `flightdeck apply` while a step is in flight
//! against the sandbox: the first signal lets the step finish, skips the rest and exits 130 with
//! "interrupted" in the summary; a second one exits at once with 130.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

/// Generous failure timeout for each wait; the waits end as soon as the line or exit comes.
const PATIENCE: Duration = Duration::from_secs(30);

/// `flightdeck apply` running in the background, its stderr read line by line.
struct Apply {
    child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
    /// Every stderr line read so far.
    seen: String,
}

impl Apply {
    /// Starts `apply` on the first reference flow file (create the endpoint with blue).
    fn start(env: &Env, dir: &std::path::Path) -> Apply {
        env.write_environment(dir, "");
        std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
        let mut child = env
            .command(&["apply", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flightdeck starts");
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Apply {
            child,
            stderr,
            seen: String::new(),
        }
    }

    /// Reads stderr until a line contains `needle`.
    async fn wait_for(&mut self, needle: &str) {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            found == Ok(true),
            "no stderr line with {needle:?}:\n{}",
            self.seen
        );
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} {pid}");
    }

    /// Waits for the process to exit; returns its status, stdout and the whole stderr.
    async fn finish(mut self) -> (ExitStatus, String, String) {
        tokio::time::timeout(PATIENCE, async {
            let mut rest = String::new();
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                rest.push_str(&line);
                rest.push('\n');
            }
            let mut stdout = String::new();
            self.child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .await
                .unwrap();
            let status = self.child.wait().await.unwrap();
            (status, stdout, self.seen + &rest)
        })
        .await
        .expect("flightdeck exited")
    }
}

async fn one_signal_finishes_the_step_in_flight_skips_the_rest_and_exits_130(signal: &str) {
    // The sandbox holds the first step's operation (the endpoint create) in progress until the
    // test releases it, so that step is still in flight when the signal arrives.
    let env = Env::start(Duration::from_millis(20)).await;
    env.hold(serde_json::json!({"endpoint": "my-endpoint", "times": 1}))
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let mut apply = Apply::start(&env, &tmp.path().join("prod"));
    apply.wait_for("[1/").await;
    env.wait_held(1).await;
    apply.signal(signal);
    apply.wait_for(&format!("interrupted (SIG{signal})")).await;
    assert_eq!(env.release().await.len(), 1);
    let (status, stdout, stderr) = apply.finish().await;
    let show = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(status.code(), Some(130), "{show}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("skipped; interrupted: the skipped steps did not run"),
        "{show}"
    );
    assert!(
        stderr.contains("my-endpoint create_endpoint: done"),
        "the step in flight finishes: {show}"
    );
    assert!(
        stderr.contains("skipped: cancelled before this step"),
        "{show}"
    );
    assert_eq!(
        env.traffic("my-endpoint").await.get("blue"),
        None,
        "traffic never moved to blue: {show}"
    );
    assert!(
        env.deployments("my-endpoint").await.is_empty(),
        "the signal came while the first step was in flight: blue was never created: {show}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_ctrl_c_lets_the_step_in_flight_finish_skips_the_rest_and_exits_130() {
    one_signal_finishes_the_step_in_flight_skips_the_rest_and_exits_130("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_interrupts_apply_as_the_first_ctrl_c_does() {
    one_signal_finishes_the_step_in_flight_skips_the_rest_and_exits_130("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_with_130_while_the_step_is_still_in_flight() {
    // The sandbox holds the first step's operation and is never told to release it: the
    // process must exit while it is still in flight.
    let env = Env::start(Duration::from_millis(20)).await;
    env.hold(serde_json::json!({"endpoint": "my-endpoint"}))
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let mut apply = Apply::start(&env, &tmp.path().join("prod"));
    apply.wait_for("[1/").await;
    env.wait_held(1).await;
    apply.signal("INT");
    apply.wait_for("interrupted (SIGINT)").await;
    apply.signal("INT");
    let (status, stdout, stderr) = apply.finish().await;
    let show = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(
        status.code(),
        Some(130),
        "exits with 130, not killed: {show}"
    );
    assert!(
        stderr.contains("interrupted again (SIGINT): aborting at once"),
        "{show}"
    );
    assert!(
        !stdout.contains("step(s):"),
        "no summary: the step never finished: {show}"
    );
    let endpoint = env
        .arm_get("/onlineEndpoints/my-endpoint")
        .await
        .expect("the endpoint is still there");
    assert_ne!(
        endpoint["properties"]["provisioningState"], "Succeeded",
        "the step was still in flight: {show}"
    );
}
