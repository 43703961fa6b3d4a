//! The real binary on temp directories: exit codes, located errors, plan/diff/apply/export, and
//! diffing against another Git revision with no credentials.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn flightdeck(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(args)
        .current_dir(cwd)
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .output()
        .expect("run flightdeck")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the shipped `environments/local` in a temp dir, as `<tmp>/env`.
fn local_env() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/local");
    let dst = tmp.path().join("env");
    std::fs::create_dir(&dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read env") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy");
    }
    (tmp, dst)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write");
}

#[test]
fn validate_exits_0_for_the_shipped_environments_and_2_with_every_located_problem() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ok = flightdeck(
        &["validate", "environments/local", "environments/sandbox"],
        root,
    );
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));

    let (tmp, env) = local_env();
    edit(&env.join("endpoint.yml"), "blue: 100", "blue: 90");
    edit(
        &env.join("blue-deployment.yml"),
        "instance_count: 1",
        "instance_cout: 1",
    );
    let bad = flightdeck(&["validate", "env"], tmp.path());
    assert_eq!(code(&bad), 2);
    let err = stderr(&bad);
    assert!(
        err.contains("env/endpoint.yml:7:1: traffic sums to 90, expected 100"),
        "{err}"
    );
    assert!(err.contains("traffic sums to 90, expected 100"), "{err}");
    assert!(
        err.contains("env/blue-deployment.yml:10:1: unknown field `instance_cout`"),
        "{err}"
    );
    assert!(err.contains("did you mean `instance_count`"), "{err}");
}

#[test]
fn plan_apply_and_replan_follow_the_0_1_2_exit_codes() {
    let (tmp, _) = local_env();
    let dir = tmp.path();
    let plan = flightdeck(&["plan", "env"], dir);
    assert_eq!(code(&plan), 1, "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains("route 100% to blue"),
        "{}",
        stdout(&plan)
    );

    let dry = flightdeck(&["apply", "env", "--dry-run"], dir);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert!(
        !dir.join("env/.live.json").exists(),
        "a dry run changes nothing"
    );

    let apply = flightdeck(&["apply", "env"], dir);
    assert_eq!(code(&apply), 0, "{}", stderr(&apply));
    assert!(
        stdout(&apply).contains("4 step(s): 4 done, 0 failed"),
        "{}",
        stdout(&apply)
    );
    assert!(
        stderr(&apply).contains("[4/4] churn-model set_traffic"),
        "{}",
        stderr(&apply)
    );

    for cmd in ["plan", "diff"] {
        let again = flightdeck(&[cmd, "env"], dir);
        assert_eq!(
            code(&again),
            0,
            "{cmd}: {}{}",
            stdout(&again),
            stderr(&again)
        );
    }
}

#[test]
fn invalid_yaml_exits_2_and_applies_nothing() {
    let (tmp, env) = local_env();
    std::fs::write(env.join("broken.yml"), "name: ok-name\ntraffic: [\n").expect("write");
    let out = flightdeck(&["apply", "env"], tmp.path());
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("env/broken.yml:"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was planned or applied"),
        "{}",
        stderr(&out)
    );
    assert!(!env.join(".live.json").exists());
}

#[test]
fn json_plans_name_action_endpoint_deployment_traffic_and_reason() {
    let (tmp, env) = local_env();
    assert_eq!(code(&flightdeck(&["apply", "env"], tmp.path())), 0);
    // Add green at 0%, then flight it 10%.
    std::fs::write(
        env.join("green-deployment.yml"),
        std::fs::read_to_string(env.join("blue-deployment.yml"))
            .expect("read")
            .replace("name: blue", "name: green")
            .replace("churn-model:3", "churn-model:4"),
    )
    .expect("write");
    edit(
        &env.join("endpoint.yml"),
        "blue: 100",
        "blue: 90\n  green: 10",
    );
    let out = flightdeck(&["plan", "env", "--output", "json"], tmp.path());
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["changes"], true);
    let steps = doc["steps"].as_array().expect("steps");
    let actions: Vec<&str> = steps
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["create_deployment", "test_deployment", "set_traffic"]
    );
    assert_eq!(steps[0]["deployment"], "green");
    assert_eq!(
        steps[2]["traffic"],
        serde_json::json!({"blue": 90, "green": 10})
    );
    assert_eq!(steps[2]["reason"], "flight green 10% (was blue 100)");
    assert!(steps.iter().all(|s| s["endpoint"] == "churn-model"));
}

#[test]
fn export_writes_a_snapshot_that_plan_reads_with_live() {
    let (tmp, _) = local_env();
    let dir = tmp.path();
    assert_eq!(code(&flightdeck(&["apply", "env"], dir)), 0);
    let export = flightdeck(&["export", "env", "--file", "snap.json"], dir);
    assert_eq!(code(&export), 0, "{}", stderr(&export));
    let plan = flightdeck(&["plan", "env", "--live", "snap.json"], dir);
    assert_eq!(code(&plan), 0, "{}{}", stdout(&plan), stderr(&plan));
    std::fs::write(dir.join("bad.json"), "{\"version\": 1,").expect("write");
    let bad = flightdeck(&["plan", "env", "--live", "bad.json"], dir);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("bad.json:1:"), "{}", stderr(&bad));
}

#[test]
fn a_create_only_change_on_a_deployment_with_traffic_is_refused_with_exit_2() {
    let (tmp, env) = local_env();
    assert_eq!(code(&flightdeck(&["apply", "env"], tmp.path())), 0);
    edit(
        &env.join("blue-deployment.yml"),
        "Standard_DS3_v2",
        "Standard_F4s_v2",
    );
    let out = flightdeck(&["apply", "env"], tmp.path());
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("refused: endpoint churn-model: deployment blue: instance_type cannot be changed in place"), "{err}");
    assert!(err.contains("new deployment name"), "{err}");
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn diff_against_the_previous_revision_renders_markdown_without_credentials() {
    let (tmp, env) = local_env();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "blue"]);
    edit(
        &env.join("blue-deployment.yml"),
        "instance_count: 1",
        "instance_count: 2",
    );
    git(dir, &["commit", "-qam", "scale blue"]);

    let out = flightdeck(
        &[
            "diff",
            "env",
            "--against-rev",
            "HEAD~1",
            "--output",
            "markdown",
        ],
        dir,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.contains("### flightdeck diff: `local`: 1 endpoint(s) differ"),
        "{md}"
    );
    assert!(
        md.contains("```diff\n--- live/churn-model\n+++ desired/churn-model"),
        "{md}"
    );
    assert!(
        md.contains("-    instance_count: 1\n+    instance_count: 2"),
        "{md}"
    );

    let plan = flightdeck(&["plan", "env", "--against-rev", "HEAD~1"], dir);
    assert_eq!(code(&plan), 1);
    assert!(
        stdout(&plan).contains("scale blue 1 → 2"),
        "{}",
        stdout(&plan)
    );
    let same = flightdeck(&["plan", "env", "--against-rev", "HEAD"], dir);
    assert_eq!(code(&same), 0, "{}", stderr(&same));
    let nothing = flightdeck(&["plan", "env", "--against-rev", "no-such-rev"], dir);
    assert_eq!(code(&nothing), 2);
    assert!(
        stderr(&nothing).contains("cannot resolve revision no-such-rev"),
        "{}",
        stderr(&nothing)
    );
}

#[test]
fn every_subcommand_has_help() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for cmd in ["validate", "plan", "diff", "apply", "export", "sandbox"] {
        let out = flightdeck(&[cmd, "--help"], root);
        assert_eq!(code(&out), 0, "{cmd}");
        assert!(stdout(&out).contains("Usage: flightdeck"), "{cmd}");
    }
}

/// Spawns `flightdeck apply` and waits (generous bound) until it says it waits for the lock.
fn apply_waiting_for_lock(env: &Path) -> (std::process::Child, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["apply", env.to_str().unwrap()])
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn flightdeck");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("apply reports that it waits for the lock");
    assert!(line.starts_with("waiting for another apply"), "{line}");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    (child, reader)
}

#[test]
fn two_applies_on_one_state_file_run_one_after_the_other_and_never_repeat_a_step() {
    let (_tmp, env) = local_env();
    // Hold the environment's apply lock (what a first apply does) while two more start.
    let lock = std::fs::File::create(env.join(".live.json.lock")).unwrap();
    lock.lock().unwrap();
    let (mut a, a_out) = apply_waiting_for_lock(&env);
    let (mut b, b_out) = apply_waiting_for_lock(&env);
    lock.unlock().unwrap();
    let (a_status, b_status) = (a.wait().unwrap(), b.wait().unwrap());
    let (a_out, b_out) = (a_out.join().unwrap(), b_out.join().unwrap());
    assert!(a_status.success(), "{a_out}");
    assert!(b_status.success(), "{b_out}");
    let created: Vec<&String> = [&a_out, &b_out]
        .into_iter()
        .filter(|o| o.contains("create_endpoint") && o.contains("4 done, 0 failed"))
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one apply created:\n{a_out}\n---\n{b_out}"
    );
    assert!(
        [&a_out, &b_out]
            .iter()
            .any(|o| o.contains("local: no changes")),
        "the other found nothing left to do:\n{a_out}\n---\n{b_out}"
    );
}

#[test]
fn an_apply_that_cannot_get_the_lock_in_time_refuses_with_exit_2_and_changes_nothing() {
    let (tmp, env) = local_env();
    let lock = std::fs::File::create(env.join(".live.json.lock")).unwrap();
    lock.lock().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["apply", env.to_str().unwrap()])
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .env("FLIGHTDECK_LOCK_TIMEOUT", "200ms")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another apply on this environment still holds the lock after 200ms"),
        "{}",
        stderr(&out)
    );
    assert!(!env.join(".live.json").exists(), "nothing was applied");
}

#[test]
fn plan_and_diff_agree_when_only_an_ignored_field_differs_and_both_note_the_git_change() {
    let (tmp, env) = local_env();
    let dir = tmp.path();
    let environment = env.join("environment.yaml");
    let yaml = std::fs::read_to_string(&environment).expect("read");
    std::fs::write(
        &environment,
        format!("{yaml}drift:\n  ignore: [instance_count]\n"),
    )
    .expect("write");
    assert_eq!(code(&flightdeck(&["apply", "env"], dir)), 0);
    edit(
        &env.join("blue-deployment.yml"),
        "instance_count: 1",
        "instance_count: 2",
    );
    let note = "note: churn-model/blue: instance_count 1 → 2 in Git is ignored (drift.ignore)";
    let plan = flightdeck(&["plan", "env"], dir);
    assert_eq!(code(&plan), 0, "{}{}", stdout(&plan), stderr(&plan));
    assert!(stdout(&plan).contains(note), "{}", stdout(&plan));
    let diff = flightdeck(&["diff", "env"], dir);
    assert_eq!(code(&diff), 0, "{}{}", stdout(&diff), stderr(&diff));
    assert_eq!(stdout(&diff), format!("no differences\n{note}\n"));
    let json = flightdeck(&["plan", "env", "--output", "json"], dir);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(doc["changes"], false);
    assert_eq!(doc["notes"][0]["deployment"], "blue");

    // A field that is not ignored still differs in both, with the note beside it.
    edit(
        &env.join("endpoint.yml"),
        "team: data-science",
        "team: risk",
    );
    assert_eq!(code(&flightdeck(&["plan", "env"], dir)), 1);
    let diff = flightdeck(&["diff", "env"], dir);
    assert_eq!(code(&diff), 1);
    assert!(stdout(&diff).contains("+  team: risk"), "{}", stdout(&diff));
    assert!(stdout(&diff).contains(note), "{}", stdout(&diff));
}

#[test]
fn a_live_endpoint_that_is_not_declared_is_a_difference_for_plan_and_diff_only_with_prune() {
    let (tmp, env) = local_env();
    let dir = tmp.path();
    assert_eq!(code(&flightdeck(&["apply", "env"], dir)), 0);
    let state = env.join(".live.json");
    let mut live: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("read")).expect("json");
    let endpoints = live["endpoints"].as_object_mut().expect("endpoints");
    let mut old = endpoints["churn-model"].clone();
    old["name"] = "old-model".into();
    endpoints.insert("old-model".into(), old);
    std::fs::write(&state, serde_json::to_vec(&live).expect("json")).expect("write");

    for cmd in ["plan", "diff"] {
        let out = flightdeck(&[cmd, "env"], dir);
        assert_eq!(code(&out), 0, "{cmd}: {}{}", stdout(&out), stderr(&out));
        assert!(
            stdout(&out).contains("note: old-model: live but not declared; left alone"),
            "{cmd}: {}",
            stdout(&out)
        );
        let pruned = flightdeck(&[cmd, "env", "--prune"], dir);
        assert_eq!(code(&pruned), 1, "{cmd} --prune: {}", stdout(&pruned));
    }
}

#[test]
fn a_file_that_does_not_parse_reports_only_its_own_errors_not_what_it_would_have_declared() {
    let (tmp, env) = local_env();
    // The endpoint file is broken: the deployment file that names its endpoint and a test key
    // for it must not add "not declared" errors about it.
    edit(&env.join("environment.yaml"), "\"*\":", "churn-model:");
    edit(
        &env.join("endpoint.yml"),
        "auth_mode: key",
        "auth_mode: key\n  oops: [",
    );
    let out = flightdeck(&["validate", "env"], tmp.path());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let all = stderr(&out);
    let problems: Vec<&str> = all.lines().filter(|l| !l.starts_with("error:")).collect();
    assert_eq!(
        problems.len(),
        1,
        "only the broken file's error:\n{}",
        stderr(&out)
    );
    assert!(
        problems[0].starts_with("env/endpoint.yml:4:"),
        "{}",
        stderr(&out)
    );
    // Once the file parses, a key that names no endpoint is reported again.
    edit(&env.join("endpoint.yml"), "\n  oops: [", "");
    edit(
        &env.join("environment.yaml"),
        "churn-model:",
        "churn-modle:",
    );
    let out = flightdeck(&["validate", "env"], tmp.path());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tests: endpoint `churn-modle` is not declared"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_tab_error_points_at_the_line_of_the_tab() {
    let (tmp, env) = local_env();
    edit(
        &env.join("blue-deployment.yml"),
        "instance_count: 1",
        "\tinstance_count: 1",
    );
    let out = flightdeck(&["validate", "env"], tmp.path());
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let line = std::fs::read_to_string(env.join("blue-deployment.yml"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with('\t'))
        .unwrap()
        + 1;
    assert!(
        stderr(&out).contains(&format!("env/blue-deployment.yml:{line}:1: invalid YAML")),
        "{}",
        stderr(&out)
    );
}
