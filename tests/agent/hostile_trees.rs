//! Hostile environment trees through the real binary (`validate`, `plan`, `plan --against-rev`,
//! `apply`): paths and symlinks that leave the environment, dangling links and loops, state files
//! outside it, a tree bigger than the limits, and plans that must never echo a request body.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use flightdeck_testkit::GitRepo;
use flightdeck_testkit::hostile::{
    MARKER, commit_one_blob_many_paths, request_body, write_environment,
};
use sha2::{Digest, Sha256};

const ENVIRONMENT: &str = flightdeck_testkit::hostile::ENVIRONMENT;

fn flightdeck(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(args)
        .current_dir(cwd)
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .output()
        .expect("run flightdeck")
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs and expects exit code `code`; returns stdout and stderr together.
fn expect(args: &[&str], cwd: &Path, code: i32) -> String {
    let out = flightdeck(args, cwd);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}:\n{text}");
    assert!(!text.contains(MARKER), "content leaked:\n{text}");
    text
}

fn assert_has(text: &str, wanted: &[&str]) {
    for line in wanted {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// `<tmp>/env`, valid, with `environment` as its environment.yaml, and a file outside it
/// (`<tmp>/outside-secret.json`) holding the marker.
fn setup(environment: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_environment(&tmp.path().join("env"), environment);
    std::fs::write(tmp.path().join("outside-secret.json"), MARKER).unwrap();
    tmp
}

#[test]
fn request_files_that_leave_the_environment_are_refused_with_their_location() {
    let env = ENVIRONMENT.replace(
        "    request_file: req.json\n",
        "    request_file: /etc/passwd\n  my-endpoint:\n    request_file: ../outside-secret.json\n",
    );
    let tmp = setup(&env);
    let text = expect(&["validate", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &[
            "env/environment.yaml:7:19: request_file `/etc/passwd`: must be relative to the environment directory, not an absolute path",
            "env/environment.yaml:9:19: request_file `../outside-secret.json`: leaves the environment directory",
        ],
    );
    expect(&["plan", "env"], tmp.path(), 2);
}

#[test]
fn symlinks_to_files_and_directories_outside_are_refused_and_named() {
    let tmp = setup(ENVIRONMENT);
    let env = tmp.path().join("env");
    std::fs::remove_file(env.join("req.json")).unwrap();
    symlink("../outside-secret.json", env.join("req.json")).unwrap();
    symlink("/etc/passwd", env.join("passwd.yml")).unwrap();
    let outside = tmp.path().join("outside-dir");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("broken.yml"), "not: [yaml").unwrap();
    std::fs::write(outside.join("secret.json"), MARKER).unwrap();
    symlink("../outside-dir", env.join("shared")).unwrap();
    let text = expect(&["validate", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &[
            "env/req.json: symlink points outside the environment directory (-> ../outside-secret.json)",
            "env/passwd.yml: symlink points outside the environment directory (-> /etc/passwd)",
            "env/shared: symlink points outside the environment directory (-> ../outside-dir)",
            "env/environment.yaml:7:19: request_file `req.json`: file not found",
        ],
    );
    assert!(!text.contains("broken.yml"), "read outside:\n{text}");
}

#[test]
fn dangling_links_and_loops_are_named_and_the_other_files_are_still_checked() {
    let tmp = setup(ENVIRONMENT);
    let env = tmp.path().join("env");
    symlink("missing.yml", env.join("gone.yml")).unwrap();
    symlink("b.yml", env.join("a.yml")).unwrap();
    symlink("a.yml", env.join("b.yml")).unwrap();
    std::fs::create_dir(env.join("sub")).unwrap();
    symlink("..", env.join("sub/again")).unwrap();
    std::fs::write(
        env.join("endpoint.yml"),
        "name: my-endpoint\ntraffic:\n  blue: 90\n",
    )
    .unwrap();
    let text = expect(&["validate", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &[
            "env/gone.yml: dangling symlink (-> missing.yml)",
            "env/a.yml: symlink loop (-> b.yml)",
            "env/b.yml: symlink loop (-> a.yml)",
            "env/sub/again: symlink loop (-> ..)",
            "env/endpoint.yml:2:1: traffic sums to 90, expected 100",
        ],
    );
}

#[test]
fn symlinks_that_stay_inside_the_environment_are_followed() {
    let tmp = setup(ENVIRONMENT);
    let env = tmp.path().join("env");
    std::fs::create_dir(env.join("data")).unwrap();
    std::fs::rename(env.join("req.json"), env.join("data/body.json")).unwrap();
    symlink("data/../data/body.json", env.join("req.json")).unwrap();
    symlink("data", env.join("more")).unwrap();
    expect(&["validate", "env"], tmp.path(), 0);
    let plan = expect(&["plan", "env"], tmp.path(), 1);
    assert!(plan.contains("req.json ("), "{plan}");
}

#[test]
fn plans_show_the_request_file_size_and_digest_and_never_the_body() {
    let tmp = setup(ENVIRONMENT);
    let body = request_body();
    let digest: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let summary = format!("req.json ({} B, sha256:{}…)", body.len(), &digest[..12]);
    for format in ["text", "markdown", "json"] {
        let out = expect(&["plan", "env", "--output", format], tmp.path(), 1);
        assert!(
            out.contains(&summary),
            "{format}: no {summary:?} in:\n{out}"
        );
        if format == "json" {
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            let test = json["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["action"] == "test_deployment")
                .expect("a test step")["test"]
                .clone();
            assert_eq!(test["request_sha256"], digest.as_str());
            assert_eq!(test["request_bytes"], body.len());
            assert!(test.get("request_body").is_none(), "{test}");
        }
    }
}

#[test]
fn state_files_outside_the_environment_are_refused_and_nothing_is_written_outside() {
    // `..` in YAML: refused by the loader, located.
    let escaping = ENVIRONMENT.replace("path: live.json", "path: ../escape.json");
    let tmp = setup(&escaping);
    let text = expect(&["validate", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &[
            "env/environment.yaml:4:11: state_file.path `../escape.json`: leaves the environment directory",
        ],
    );
    expect(&["apply", "env"], tmp.path(), 2);
    assert!(!tmp.path().join("escape.json").exists());

    // A hidden directory (not part of the tree) that is a symlink to outside.
    let hidden = ENVIRONMENT.replace("path: live.json", "path: .state/live.json");
    let tmp = setup(&hidden);
    let outside = tmp.path().join("outside-state");
    std::fs::create_dir(&outside).unwrap();
    symlink("../outside-state", tmp.path().join("env/.state")).unwrap();
    let text = expect(&["apply", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &[
            "state_file.path `.state/live.json`: env/.state resolves to",
            "outside the environment directory",
        ],
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "written outside"
    );

    // The state file itself a symlink to a file outside.
    let dotted = ENVIRONMENT.replace("path: live.json", "path: .live.json");
    let tmp = setup(&dotted);
    std::fs::write(tmp.path().join("victim.json"), "untouched").unwrap();
    symlink("../victim.json", tmp.path().join("env/.live.json")).unwrap();
    let text = expect(&["apply", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &["is a symlink, the state file is never read or written through one"],
    );
    let victim = std::fs::read_to_string(tmp.path().join("victim.json")).unwrap();
    assert_eq!(victim, "untouched");
}

#[test]
fn plan_against_rev_refuses_a_revision_whose_links_leave_the_tree() {
    let repo = GitRepo::new();
    let root = repo.dir.path();
    write_environment(&root.join("env"), ENVIRONMENT);
    std::fs::remove_file(root.join("env/req.json")).unwrap();
    symlink("../../outside-secret.json", root.join("env/req.json")).unwrap();
    repo.commit("a link out");
    std::fs::remove_file(root.join("env/req.json")).unwrap();
    std::fs::write(root.join("env/req.json"), request_body()).unwrap();
    repo.commit("a plain file");
    let text = expect(&["plan", "env", "--against-rev", "main~1"], root, 2);
    assert_has(
        &text,
        &[
            "env/req.json: symlink points outside the environment directory (-> ../../outside-secret.json)",
            "env/environment.yaml:7:19: request_file `req.json`: file not found",
        ],
    );
    expect(&["plan", "env", "--against-rev", "main"], root, 0);
}

#[test]
fn plan_against_rev_refuses_one_large_blob_named_from_thousands_of_paths() {
    let repo = GitRepo::new();
    let root = repo.dir.path();
    write_environment(&root.join("env"), ENVIRONMENT);
    repo.commit("valid");
    commit_one_blob_many_paths(repo.repo(), "refs/heads/hostile", "env", 2 << 20, 10_000);
    let text = expect(&["plan", "env", "--against-rev", "hostile"], root, 2);
    assert_has(
        &text,
        &["env: the environment holds 20000 MiB in 10005 files, more than the 64 MiB limit"],
    );
}

#[test]
fn the_working_tree_refuses_more_bytes_in_total_than_the_limit() {
    let tmp = setup(ENVIRONMENT);
    let env = tmp.path().join("env");
    // 65 paths to one 1 MiB file (hard links: 1 MiB on disk, 65 MiB in the tree).
    std::fs::create_dir(env.join("data")).unwrap();
    let first = env.join("data/0.json");
    std::fs::write(&first, vec![b' '; 1 << 20]).unwrap();
    for i in 1..65 {
        std::fs::hard_link(&first, env.join(format!("data/{i}.json"))).unwrap();
    }
    let text = expect(&["validate", "env"], tmp.path(), 2);
    assert_has(
        &text,
        &["env: the environment holds 65 MiB in 70 files, more than the 64 MiB limit"],
    );
}
