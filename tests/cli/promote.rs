//! `flightdeck promote` through the real binary on real Git repositories: the declarative flow's
//! files (the reference copy) get exactly one line changed, the branch plans as the same hand
//! edit does (live, through the state-file backend, and offline against HEAD), a slot template
//! is promoted, and every refusal leaves every ref, HEAD and the work tree as they were.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flightdeck_testkit::git::GitRepo;

pub(crate) fn flightdeck(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(args)
        .current_dir(cwd)
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .env_remove("FLIGHTDECK_GIT_TOKEN")
        .env_remove("FLIGHTDECK_GIT_TOKEN_FILE")
        .env_remove("FLIGHTDECK_PR_TOKEN")
        .env_remove("FLIGHTDECK_PR_TOKEN_FILE")
        .output()
        .expect("run flightdeck")
}

pub(crate) fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn flow_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference/azureml-cli-yaml/canary-declarative-flow")
        .join(name)
}

/// A repository on `main` with `environments/prod`: a state-file target that Git ignores (so
/// applying leaves the work tree clean) and the reference flow's file 3 (blue and green, both
/// model version 1). Returns the repo and the environment dir.
pub(crate) fn flow_repo() -> (GitRepo, PathBuf) {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    let env = git.dir.path().join("environments/prod");
    git.write(".gitignore", ".live.json\n.live.json.lock\n");
    git.write(
        "environments/prod/environment.yaml",
        "name: prod\ntarget:\n  state_file:\n    path: .live.json\n",
    );
    std::fs::copy(flow_file("3-create-green.yml"), env.join("my-endpoint.yml")).unwrap();
    git.commit("prod: blue and green");
    (git, env)
}

/// Every ref and where it points, plus HEAD: what "nothing was written" compares.
pub(crate) fn refs(repo: &git2::Repository) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = repo
        .references()
        .unwrap()
        .flatten()
        .map(|r| {
            (
                r.name().unwrap_or_default().to_string(),
                r.target().map(|t| t.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let head = repo.find_reference("HEAD").unwrap();
    let target = head.symbolic_target().ok().flatten().unwrap_or_default();
    out.push(("HEAD".into(), target.to_string()));
    out.sort();
    out
}

pub(crate) fn value_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{out}"))
}

/// The plan section of promote's output: from `plan against ...:` to the blank line.
fn plan_section(out: &str) -> String {
    let start = out.find("plan against ").expect("a plan section");
    let body = &out[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n\nbranch ").expect("branch after the plan") + 1].to_string()
}

fn blob_at(repo: &git2::Repository, rev: &str, path: &str) -> String {
    let commit = repo.revparse_single(rev).unwrap().peel_to_commit().unwrap();
    let entry = commit.tree().unwrap().get_path(Path::new(path)).unwrap();
    let blob = repo.find_blob(entry.id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

/// The green deployment's `version: 1` line (the second model block) set to `to`.
fn hand_edit(text: &str, to: &str) -> String {
    let at = text.find("- name: green").unwrap();
    let rel = text[at..].find("version: 1").unwrap();
    let mut out = text.to_string();
    out.replace_range(
        at + rel..at + rel + "version: 1".len(),
        &format!("version: {to}"),
    );
    out
}

#[test]
fn promote_on_the_declarative_flow_changes_exactly_one_line_and_plans_as_the_hand_edit() {
    let (git, env) = flow_repo();
    let root = git.dir.path();
    let applied = flightdeck(&["apply", "environments/prod"], root);
    assert_eq!(applied.status.code(), Some(0), "{}", show(&applied));
    let before = refs(git.repo());
    let original = std::fs::read_to_string(env.join("my-endpoint.yml")).unwrap();

    let out = flightdeck(
        &[
            "promote",
            "environments/prod",
            "my-endpoint",
            "--deployment",
            "green",
            "--model",
            "azureml:model-2:2",
        ],
        root,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert_eq!(
        value_after(&text, "branch "),
        "flightdeck/promote-prod-my-endpoint-2"
    );
    let commit = value_after(&text, "commit ").to_string();
    let (lines, paths) = git.commit_diff(&commit);
    assert_eq!(paths, ["environments/prod/my-endpoint.yml"]);
    // Exactly one line: green's version, its indentation kept; blue's `version: 1` lines and
    // the environment's `version: 1` untouched.
    assert_eq!(lines, ["-      version: 1", "+      version: 2"], "{text}");
    let promoted = blob_at(git.repo(), &commit, "environments/prod/my-endpoint.yml");
    assert_eq!(promoted, hand_edit(&original, "2"));
    let message = git
        .repo()
        .find_commit(git2::Oid::from_str(&commit).unwrap())
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("promote prod/my-endpoint: model-2 1 → 2\n"),
        "{message}"
    );
    assert!(message.contains("update_deployment"), "{message}");

    // The checked-out branch, the index and the work tree are as they were; one new branch.
    assert_eq!(
        std::fs::read_to_string(env.join("my-endpoint.yml")).unwrap(),
        original
    );
    let mut after = refs(git.repo());
    after.retain(|(name, _)| name != "refs/heads/flightdeck/promote-prod-my-endpoint-2");
    assert_eq!(after, before);

    // The same hand edit in the work tree plans exactly as the promotion's plan.
    std::fs::write(env.join("my-endpoint.yml"), hand_edit(&original, "2")).unwrap();
    let hand = flightdeck(&["plan", "environments/prod"], root);
    assert_eq!(hand.status.code(), Some(1), "{}", show(&hand));
    assert_eq!(plan_section(&text), stdout(&hand));
    assert!(
        stdout(&hand).contains("update_deployment   green"),
        "{}",
        show(&hand)
    );

    // Offline, against HEAD: the same plan as `plan --against-rev HEAD` of the hand edit.
    let offline = flightdeck(
        &[
            "promote",
            "environments/prod",
            "my-endpoint",
            "--deployment",
            "green",
            "--model",
            "model-2:3",
            "--offline",
        ],
        root,
    );
    // The hand edit makes the work tree dirty: refused, as it should be.
    assert_eq!(offline.status.code(), Some(2), "{}", show(&offline));
    assert!(
        String::from_utf8_lossy(&offline.stderr).contains("uncommitted changes"),
        "{}",
        show(&offline)
    );
    std::fs::write(env.join("my-endpoint.yml"), &original).unwrap();
    let offline = flightdeck(
        &[
            "promote",
            "environments/prod",
            "my-endpoint",
            "--deployment",
            "green",
            "--model",
            "model-2:3",
            "--offline",
        ],
        root,
    );
    assert_eq!(offline.status.code(), Some(0), "{}", show(&offline));
    std::fs::write(env.join("my-endpoint.yml"), hand_edit(&original, "3")).unwrap();
    let hand = flightdeck(
        &["plan", "environments/prod", "--against-rev", "HEAD"],
        root,
    );
    assert_eq!(plan_section(&stdout(&offline)), stdout(&hand));
}

#[test]
fn a_slot_template_is_promoted_and_the_idle_slot_gets_it() {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    git.write(
        "environments/prod/environment.yaml",
        "name: prod\ntarget:\n  state_file:\n    path: .live.json\nslots:\n  scoring:\n    names: [blue, green]\n    template: deployments/scoring.yml\n",
    );
    git.write(
        "environments/prod/scoring.yml",
        "name: scoring\nauth_mode: key\n",
    );
    let template = "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\nname: scoring\nendpoint_name: scoring\nmodel: azureml:churn:4   # the champion\nenvironment: azureml:churn-env:2\ninstance_type: Standard_DS3_v2\ninstance_count: 1\n";
    git.write("environments/prod/deployments/scoring.yml", template);
    git.commit("prod: scoring on slots");
    let root = git.dir.path();

    let refused = flightdeck(
        &[
            "promote",
            "environments/prod",
            "scoring",
            "--deployment",
            "blue",
            "--model",
            "churn:5",
            "--offline",
        ],
        root,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "endpoint scoring uses blue/green slots: promote edits its template deployments/scoring.yml, not deployment blue; leave out --deployment"
        ),
        "{}",
        show(&refused)
    );

    let out = flightdeck(
        &[
            "promote",
            "environments/prod",
            "scoring",
            "--model",
            "churn:5",
            "--offline",
        ],
        root,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("promote prod/scoring: the slot template: churn 4 → 5\n"),
        "{text}"
    );
    let commit = value_after(&text, "commit ");
    let (lines, paths) = git.commit_diff(commit);
    assert_eq!(paths, ["environments/prod/deployments/scoring.yml"]);
    assert_eq!(
        lines,
        [
            "-model: azureml:churn:4   # the champion",
            "+model: azureml:churn:5   # the champion"
        ]
    );
    // HEAD as if applied from nothing puts the template in blue: the release goes to green.
    let plan = plan_section(&text);
    assert!(plan.contains("create_deployment   green"), "{plan}");
    assert!(plan.contains("set_traffic"), "{plan}");
}

/// One refusal: exit 2, its message, and nothing written (refs, HEAD, work tree).
fn refused(git: &GitRepo, env: &Path, args: &[&str], message: &str) {
    let before = refs(git.repo());
    let file = std::fs::read(env.join("my-endpoint.yml")).unwrap();
    let mut full = vec!["promote", "environments/prod", "--offline"];
    full.extend_from_slice(args);
    let out = flightdeck(&full, git.dir.path());
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(message), "{args:?}: {}", show(&out));
    assert!(
        err.contains("nothing was written"),
        "{args:?}: {}",
        show(&out)
    );
    assert!(stdout(&out).is_empty(), "{args:?}: {}", show(&out));
    assert_eq!(refs(git.repo()), before, "{args:?}");
    assert_eq!(std::fs::read(env.join("my-endpoint.yml")).unwrap(), file);
}

#[test]
fn every_refusal_commits_nothing_and_creates_no_branch() {
    let (git, env) = flow_repo();
    let m = "--model";
    refused(
        &git,
        &env,
        &["my-endpont", m, "model-1:2"],
        "endpoint my-endpont is not declared in this environment (did you mean `my-endpoint`?)",
    );
    refused(
        &git,
        &env,
        &["my-endpoint", "--deployment", "red", m, "model-1:2"],
        "endpoint my-endpoint: deployment red is not declared (declared: blue, green)",
    );
    refused(
        &git,
        &env,
        &["my-endpoint", m, "model-1:2"],
        "endpoint my-endpoint declares 2 deployments (blue, green); pass --deployment NAME",
    );
    refused(
        &git,
        &env,
        &["my-endpoint", "--deployment", "blue", m, "model-1:1"],
        "endpoint my-endpoint: deployment blue (environments/prod/my-endpoint.yml:14) already declares model-1 version 1",
    );
    refused(
        &git,
        &env,
        &["my-endpoint", "--deployment", "blue", m, "model-2:2"],
        "it serves model model-1, not model-2; promote changes a version, not the model",
    );
    refused(
        &git,
        &env,
        &["my-endpoint", "--deployment", "blue", m, "model-1"],
        "`model-1` is not a registered model version; write NAME:VERSION or azureml:NAME:VERSION",
    );
    // The branch exists: refused before anything is committed.
    git.repo()
        .branch(
            "flightdeck/promote-prod-my-endpoint-2",
            &git.repo().head().unwrap().peel_to_commit().unwrap(),
            false,
        )
        .unwrap();
    refused(
        &git,
        &env,
        &["my-endpoint", "--deployment", "blue", m, "model-1:2"],
        "branch flightdeck/promote-prod-my-endpoint-2 already exists; delete it or pass --branch NAME",
    );
    // The result does not validate: the file would pass the 1 MiB limit of the one tree
    // reader. HEAD is valid (just under it); the longer image is refused, located.
    let pad = 1024 * 1024 - 2000;
    let text = std::fs::read_to_string(env.join("my-endpoint.yml")).unwrap();
    let big = format!("{text}# {}\n", "x".repeat(pad - text.len()));
    std::fs::write(env.join("my-endpoint.yml"), big).unwrap();
    git.commit("prod: a large file");
    let image = format!("mcr.microsoft.com/azureml/{}:2", "a".repeat(3000));
    refused(
        &git,
        &env,
        &["my-endpoint", "--deployment", "blue", "--image", &image],
        "environments/prod/my-endpoint.yml: file is larger than the 1 MiB limit",
    );
}
