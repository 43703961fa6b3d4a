//! `plan` with no credentials, or against a stopped or restarted `flightdeck sandbox`, says what
//! to do; the sandbox keeps its credentials across restarts on the same `--state-dir`. The real
//! binary for both the CLI and the sandbox (a child process, so that it can be stopped and
//! started again on the same port).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

fn sandbox_env_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/sandbox")
}

/// `flightdeck plan environments/sandbox` with only these variables (and PATH) set.
async fn plan(vars: &[(String, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("plan")
        .arg(sandbox_env_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)));
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("plan finished within 60s")
        .expect("plan runs")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `flightdeck sandbox` child and the `KEY=value` lines it printed.
struct SandboxProcess {
    child: Child,
    vars: Vec<(String, String)>,
}

impl SandboxProcess {
    async fn start(port: u16, state_dir: Option<&Path>) -> SandboxProcess {
        let mut cmd = Command::new(BIN);
        cmd.args(["sandbox", "--provisioning-delay", "0s", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = state_dir {
            cmd.arg("--state-dir").arg(dir);
        }
        let mut child = cmd.spawn().expect("start the sandbox");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut vars = Vec::new();
        while vars.len() < 6 {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("the sandbox prints its variables within 30s")
                .expect("read")
                .expect("the sandbox prints six lines");
            let (k, v) = line.split_once('=').expect("KEY=value");
            vars.push((k.to_string(), v.to_string()));
        }
        SandboxProcess { child, vars }
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("stop the sandbox");
    }
}

/// A free loopback port, so the sandbox can be restarted where its clients point.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn plan_without_any_credentials_says_to_set_azure_variables_or_run_the_sandbox() {
    let out = plan(&[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Azure credentials found: set AZURE_TENANT_ID"),
        "{}",
        show(&out)
    );
    assert!(err.contains("run `flightdeck sandbox`"), "{}", show(&out));
}

#[tokio::test]
async fn plan_against_the_sandbox_without_its_variables_says_to_export_them() {
    let vars = [(
        "FLIGHTDECK_ARM_ENDPOINT".to_string(),
        "http://127.0.0.1:9/".to_string(),
    )];
    let out = plan(&vars).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "no Azure credentials found for the sandbox at http://127.0.0.1:9/: export the lines `flightdeck sandbox` prints"
        ),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_against_a_stopped_sandbox_asks_whether_it_is_running() {
    let sandbox = SandboxProcess::start(free_port(), None).await;
    let vars = sandbox.vars.clone();
    assert_eq!(
        plan(&vars).await.status.code(),
        Some(1),
        "the sandbox answers"
    );
    sandbox.stop().await;
    let out = plan(&vars).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is `flightdeck sandbox` running?"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_restarted_on_its_state_dir_keeps_the_credentials_and_without_it_the_error_says_they_changed()
 {
    let state = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let first = SandboxProcess::start(port, Some(state.path())).await;
    let vars = first.vars.clone();
    first.stop().await;

    let again = SandboxProcess::start(port, Some(state.path())).await;
    assert_eq!(
        again.vars, vars,
        "the same lines after a restart on the same state dir"
    );
    let out = plan(&vars).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    again.stop().await;

    let fresh = SandboxProcess::start(port, None).await;
    assert_ne!(fresh.vars, vars);
    let out = plan(&vars).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the credentials changed"),
        "{}",
        show(&out)
    );
    fresh.stop().await;
}
