//! `flightdeck agent` through the real binary: start-up errors exit 2 with a clear message and
//! never start serving.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `flightdeck agent ARGS`; an agent still running after 30 s is killed and fails the
/// test (a start-up error must end the process, not leave it retrying).
fn agent(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .arg("agent")
        .args(["--listen", "127.0.0.1:0", "--path", "environments/prod"])
        .arg("--cache-dir")
        .arg(cache.path())
        .args(args)
        .env_remove("FLIGHTDECK_REPO")
        .env_remove("FLIGHTDECK_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flightdeck");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("kill");
            let out = child.wait_with_output().expect("output");
            panic!(
                "the agent kept running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_local_repo_path_that_does_not_exist_is_named_at_start_up() {
    let missing = tempfile::tempdir()
        .expect("tempdir")
        .path()
        .join("no/such/path");
    let shown = missing.display().to_string();
    for extra in [&[][..], &["--watch-local"][..]] {
        let mut args = vec!["--repo", shown.as_str()];
        args.extend_from_slice(extra);
        let out = agent(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(&format!("error: no such repository: {shown}")),
            "{extra:?}: {stderr}"
        );
        assert!(!stderr.contains("unsupported URL protocol"), "{stderr}");
        assert!(!stderr.contains("agent listening"), "{stderr}");
    }
    let url = format!("file://{shown}");
    let out = agent(&["--repo", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: no such repository: {url}")),
        "{stderr}"
    );
}

#[test]
fn a_config_file_with_problems_names_each_one_with_its_line_and_column_and_never_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "repo: https://example.com/r.git\nintervall: 30s\ntest-request-timeout: soon\nleader-elect: 3\n",
    )
    .expect("write");
    let out = agent(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = config.display();
    for expected in [
        format!("{shown}:2:1: unknown key `intervall`, did you mean `interval`?"),
        format!(
            "{shown}:3:23: test-request-timeout: expected a duration such as 30s or 5m, found \"soon\""
        ),
        format!("{shown}:4:15: leader-elect: expected true or false, found an integer"),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n---\n{stderr}");
    }
}
