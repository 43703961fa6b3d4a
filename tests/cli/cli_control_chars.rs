//! Control characters in YAML names, values and keys never reach the terminal or a log as they
//! are: the real binary prints them escaped in `validate`, `plan` and `diff` (text, markdown,
//! JSON), `apply` progress, summary and report, and in log lines (text and JSON).

use std::path::Path;
use std::process::{Command, Output};

/// ESC [2J (clear screen), CR, CSI as one C1 character, a bidi override, and an LF that would
/// start a forged line.
const EVIL: &str = r#"x\e[2J\r\x9b\u202e\nFAKE: all good"#;

/// The raw characters that must never be printed.
const RAW: [char; 4] = ['\x1b', '\r', '\u{9b}', '\u{202e}'];

fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(args)
        .current_dir(dir)
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied())
        .output()
        .expect("run flightdeck")
}

/// Both streams of one run, lossless enough to look for the raw characters.
fn streams(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// No raw control character, no forged line, and the escaped form present.
fn assert_escaped(what: &str, out: &Output, escaped: &str) {
    let text = streams(out);
    for c in RAW {
        assert!(
            !text.contains(c),
            "{what}: raw {:?} printed:\n{text}",
            c.escape_debug().to_string()
        );
    }
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("FAKE")),
        "{what}: a value started a line of its own:\n{text}"
    );
    assert!(
        text.contains(escaped),
        "{what}: no {escaped:?} in the output:\n{text}"
    );
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// A state-file environment with one endpoint and one deployment; `description` and `model`
/// are YAML double-quoted scalars (so `\e`, `\r`, `\x9b`, ... are the characters themselves).
fn environment(dir: &Path, state_file: &str, description: &str, model: &str) {
    std::fs::create_dir_all(dir).unwrap();
    write(
        dir,
        "environment.yaml",
        &format!("name: local\ntarget:\n  state_file:\n    path: \"{state_file}\"\n"),
    );
    write(
        dir,
        "endpoint.yml",
        &format!(
            "name: churn-model\nauth_mode: key\ndescription: \"{description}\"\ntraffic:\n  blue: 100\n"
        ),
    );
    write(
        dir,
        "blue.yml",
        &format!(
            "name: blue\nendpoint_name: churn-model\nmodel: \"azureml:{model}:1\"\n\
             environment: azureml:sklearn-env:1\ncode_configuration:\n  code: azureml:code:1\n  \
             scoring_script: score.py\ninstance_type: Standard_DS3_v2\ninstance_count: 1\n"
        ),
    );
}

#[test]
fn validate_escapes_control_characters_in_names_values_and_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "bad.yml",
        &format!(
            "name: \"{EVIL}\"\nauth_mode: \"{EVIL}\"\n\"{EVIL}\": 1\ntraffic:\n  \"{EVIL}\": 100\n"
        ),
    );
    let out = run(tmp.path(), &["validate", "bad.yml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", streams(&out));
    assert_escaped(
        "validate",
        &out,
        r"x\u{1b}[2J\r\u{9b}\u{202e}\nFAKE: all good",
    );
    let text = streams(&out);
    assert!(text.contains("unknown field `x\\u{1b}[2J"), "{text}");
}

#[test]
fn plan_and_diff_escape_control_characters_from_yaml_values_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    environment(dir, ".live.json", "plain", "model");
    let out = run(dir, &["apply", "."], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", streams(&out));
    // Now the description and the model differ from live, so the reasons quote the new values.
    environment(dir, ".live.json", EVIL, r"m\e[31m");
    for (args, escaped) in [
        (&["plan", "."][..], r"x\u{1b}[2J\r\u{9b}\u{202e}\nFAKE"),
        (
            &["plan", ".", "-o", "markdown"],
            r"x\u{1b}[2J\r\u{9b}\u{202e}\nFAKE",
        ),
        (
            &["plan", ".", "-o", "json"],
            r"x\u001b[2J\r\u009b\u202e\nFAKE",
        ),
        (&["diff", "."], r"\u{202e}"),
        (&["diff", ".", "-o", "markdown"], r"\u{202e}"),
        (&["diff", ".", "-o", "json"], r"\u202e"),
    ] {
        let out = run(dir, args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", streams(&out));
        assert_escaped(&args.join(" "), &out, escaped);
    }
    // JSON stays JSON and keeps the value.
    let out = run(dir, &["plan", ".", "-o", "json"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let description = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s["settings"]["description"].as_str())
        .expect("an endpoint step with the description");
    assert_eq!(description, "x\x1b[2J\r\u{9b}\u{202e}\nFAKE: all good");
}

#[test]
fn apply_progress_report_and_log_lines_escape_control_characters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The state file's directory exists (so the apply lock beside it can be taken), but a
    // directory stands where the state file's temporary copy goes, so the first write fails
    // with an error that quotes the path from environment.yaml: in the progress line, the
    // summary, the JSON report and the `step failed` warning.
    let state = r"no\e[2J\rdir\x9b\u202e\nFAKE: all good/live.json";
    environment(dir, state, "plain", "model");
    let state_dir = dir.join("no\x1b[2J\rdir\u{9b}\u{202e}\nFAKE: all good");
    std::fs::create_dir_all(state_dir.join("live.tmp/in-the-way")).unwrap();
    let escaped = r"no\u{1b}[2J\rdir\u{9b}\u{202e}\nFAKE: all good/live.json";
    let out = run(dir, &["apply", "."], &[("RUST_LOG", "debug")]);
    assert_eq!(out.status.code(), Some(1), "{}", streams(&out));
    assert_escaped("apply", &out, escaped);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("step failed") && l.contains(escaped)),
        "the warning quotes the path escaped:\n{stderr}"
    );

    let out = run(
        dir,
        &["--log-format", "json", "apply", ".", "-o", "json"],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", streams(&out));
    assert_escaped(
        "apply --log-format json -o json",
        &out,
        r"no\u001b[2J\rdir\u009b\u202e\nFAKE: all good/live.json",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let raw = "no\x1b[2J\rdir\u{9b}\u{202e}\nFAKE: all good/live.json";
    assert!(
        report["results"][0]["outcome"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(raw)),
        "the report keeps the value: {report}"
    );
    let warning = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("step failed"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .expect("a step failed warning");
    assert!(
        warning["fields"]["error"].as_str().unwrap().contains(raw),
        "{warning}"
    );
}
