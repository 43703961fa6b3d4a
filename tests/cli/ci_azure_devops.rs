//! The Azure DevOps pipeline users copy (ci/azure-devops/azure-pipelines.yml, docs/ci.md), its
//! `bash:` steps run as the Bash task runs them (`bash --noprofile --norc FILE`, `$(Name)`
//! macros replaced from the pipeline's variables, every variable also in the environment as
//! NAME_IN_CAPITALS with `.` as `_`, secrets only through a step's `env:`), with the built
//! binary on PATH (standing in for install-flightdeck.yml) against the sandbox: the PR stage
//! diffs against the target branch and fails on invalid input; on main, `apply` stops at the
//! policy's first pause, each `approve_N` stage (an environment with an approval check)
//! resumes and applies up to the next pause, and `done` waits for `rollout status` to say so.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flightdeck_testkit::agent::endpoint_yaml;
use flightdeck_testkit::azureml_sandbox::Env;
use flightdeck_testkit::git::GitRepo;
use serde_json::Value;

use super::ci_runner::{StepRun, load_yaml};

const PIPELINE: &str = "azure-pipelines.yml";

/// Two `pause: true` stages, no gates (so no metrics are needed): 10%, then 50%, then the
/// declared traffic.
const TWO_PAUSES: &str = "rollout:
  metrics:
    provider: azure_monitor
    ingestion_delay: 0s
  default:
    steps:
      - weight: 10
        bake: 1s
        pause: true
      - weight: 50
        bake: 1s
        pause: true
";

struct Pipeline {
    workspace: std::path::PathBuf,
    temp: tempfile::TempDir,
    /// Pipeline and predefined variables (`Build.Reason`, …).
    variables: BTreeMap<String, String>,
    /// Secret variables: only what a step maps with `env:` sees them.
    secrets: BTreeMap<String, String>,
    doc: Value,
}

impl Pipeline {
    fn new(git: &GitRepo, reason: &str, extra: &[(&str, &str)]) -> Pipeline {
        let workspace = git.dir.path().to_path_buf();
        let doc = load_yaml(&workspace.join(PIPELINE));
        let temp = tempfile::tempdir().unwrap();
        let mut variables: BTreeMap<String, String> = doc["variables"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        variables.insert("Build.Reason".into(), reason.into());
        variables.insert(
            "Agent.TempDirectory".into(),
            temp.path().display().to_string(),
        );
        for (k, v) in extra {
            variables.insert(k.to_string(), v.to_string());
        }
        Pipeline {
            workspace,
            temp,
            variables,
            secrets: BTreeMap::new(),
            doc,
        }
    }

    /// `$(Name)` → the variable's value; an unknown name is left as written, as Azure DevOps does.
    fn macros(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("$(") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find(')');
            let name = end.map(|e| &after[..e]);
            let known = name
                .filter(|n| {
                    n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                })
                .and_then(|n| self.variables.get(n).or(self.secrets.get(n)));
            match (known, end) {
                (Some(value), Some(e)) => {
                    out.push_str(value);
                    rest = &after[e + 1..];
                }
                _ => {
                    out.push_str("$(");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn stage(&self, name: &str) -> &Value {
        self.doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    }

    /// Runs every job's steps of `stage`; stops at the first failing step, as a job does.
    fn run_stage(&self, stage: &str) -> Vec<StepRun> {
        let mut runs = vec![];
        for job in self.stage(stage)["jobs"].as_array().unwrap() {
            let steps = job["steps"]
                .as_array()
                .or(job["strategy"]["runOnce"]["deploy"]["steps"].as_array())
                .expect("steps");
            for step in steps {
                if step.get("checkout").is_some() {
                    continue; // the workspace is the checkout
                }
                if let Some(t) = step["template"].as_str() {
                    assert_eq!(
                        t, "install-flightdeck.yml",
                        "stood in for: the binary is on PATH"
                    );
                    continue;
                }
                let script = step["bash"].as_str().expect("a bash step");
                let file = self
                    .temp
                    .path()
                    .join(format!("{}.sh", uuid::Uuid::new_v4()));
                std::fs::write(&file, self.macros(script)).unwrap();
                let bin_dir = flightdeck_testkit::flightdeck_bin()
                    .parent()
                    .unwrap()
                    .to_path_buf();
                let mut cmd = std::process::Command::new("bash");
                cmd.args(["--noprofile", "--norc"])
                    .arg(&file)
                    .current_dir(&self.workspace)
                    .env_clear()
                    .env(
                        "PATH",
                        format!(
                            "{}:{}",
                            bin_dir.display(),
                            std::env::var("PATH").unwrap_or_default()
                        ),
                    )
                    .env("HOME", self.temp.path())
                    .env("TF_BUILD", "True")
                    .stdin(std::process::Stdio::null());
                for (k, v) in &self.variables {
                    cmd.env(k.to_uppercase().replace('.', "_"), v);
                }
                if let Some(env) = step["env"].as_object() {
                    for (k, v) in env {
                        cmd.env(k, self.macros(v.as_str().unwrap()));
                    }
                }
                let out = cmd.output().expect("bash");
                let run = StepRun {
                    name: step["displayName"].as_str().unwrap_or("bash").to_string(),
                    code: out.status.code().unwrap_or(-1),
                    output: format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                };
                let failed = run.code != 0;
                runs.push(run);
                if failed {
                    return runs;
                }
            }
        }
        runs
    }
}

fn log(runs: &[StepRun]) -> String {
    runs.iter()
        .map(|s| format!("--- step `{}`: exit {}\n{}", s.name, s.code, s.output))
        .collect()
}

fn ok(runs: &[StepRun]) -> bool {
    runs.iter().all(|r| r.code == 0)
}

fn user_repo(sandbox: &Env, environment_extra: &str) -> GitRepo {
    let git = GitRepo::new();
    git.repo().set_head("refs/heads/main").unwrap();
    let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/azure-devops");
    for f in ["azure-pipelines.yml", "install-flightdeck.yml"] {
        std::fs::copy(ci.join(f), git.dir.path().join(f)).unwrap();
    }
    git.write(
        "environments/prod/environment.yaml",
        &sandbox.environment_yaml(environment_extra),
    );
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1)], &[("blue", 100)]),
    );
    git.commit("prod: blue");
    git
}

fn main_pipeline(git: &GitRepo, sandbox: &Env) -> Pipeline {
    let mut p = Pipeline::new(
        git,
        "IndividualCI",
        &[
            ("Build.SourceBranch", "refs/heads/main"),
            (
                "FLIGHTDECK_ARM_ENDPOINT",
                sandbox.vars["FLIGHTDECK_ARM_ENDPOINT"].as_str(),
            ),
            (
                "AZURE_AUTHORITY_HOST",
                sandbox.vars["AZURE_AUTHORITY_HOST"].as_str(),
            ),
            ("FLIGHTDECK_POLL_INTERVAL_MAX", "20ms"),
        ],
    );
    for k in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
        p.secrets.insert(k.to_string(), sandbox.vars[k].clone());
    }
    p
}

fn traffic(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_approval_stage_resumes_one_pause_and_the_last_stage_sees_the_rollout_done() {
    let sandbox = Env::start(Duration::ZERO).await;
    let git = user_repo(&sandbox, TWO_PAUSES);
    // Each approval stage runs after the one before it: the chain the approvals gate.
    let stages = ["apply", "approve_1", "approve_2", "done"];
    {
        let p = main_pipeline(&git, &sandbox);
        for pair in stages.windows(2) {
            assert_eq!(p.stage(pair[1])["dependsOn"], pair[0]);
        }
        for (n, s) in ["approve_1", "approve_2"].iter().enumerate() {
            let job = &p.stage(s)["jobs"][0];
            assert_eq!(
                job["environment"],
                format!("flightdeck-prod-pause-{}", n + 1)
            );
        }
    }
    let run = |stage: &'static str| {
        let p = main_pipeline(&git, &sandbox);
        async move {
            tokio::task::spawn_blocking(move || p.run_stage(stage))
                .await
                .unwrap()
        }
    };

    // The first push: blue lands (a first deployment is applied as written).
    let out = run("apply").await;
    assert!(ok(&out), "{}", log(&out));
    assert_eq!(
        sandbox.traffic("my-endpoint").await,
        traffic(&[("blue", 100)])
    );

    // The release: green takes all the traffic, through the two pauses.
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("green", 100)]),
    );
    git.commit("prod: green");
    let out = run("apply").await;
    assert!(
        ok(&out),
        "apply exit 4 (paused) passes the stage: {}",
        log(&out)
    );
    assert!(log(&out).contains("paused"), "{}", log(&out));
    assert_eq!(
        sandbox.traffic("my-endpoint").await,
        traffic(&[("blue", 90), ("green", 10)])
    );

    let out = run("approve_1").await;
    assert!(ok(&out), "{}", log(&out));
    assert!(log(&out).contains("resumed at stage 1"), "{}", log(&out));
    assert_eq!(
        sandbox.traffic("my-endpoint").await,
        traffic(&[("blue", 50), ("green", 50)])
    );

    let out = run("approve_2").await;
    assert!(ok(&out), "{}", log(&out));
    assert!(log(&out).contains("resumed at stage 2"), "{}", log(&out));
    assert_eq!(
        sandbox.traffic("my-endpoint").await,
        traffic(&[("green", 100)])
    );

    let out = run("done").await;
    assert!(ok(&out), "{}", log(&out));
    assert!(log(&out).contains("rollout done"), "{}", log(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pr_stage_diffs_against_the_target_branch_and_fails_on_invalid_input() {
    let sandbox = Env::start(Duration::ZERO).await;
    let git = user_repo(&sandbox, "");
    let base = git.repo().head().unwrap().target().unwrap();
    git.repo()
        .reference("refs/remotes/origin/main", base, true, "fetched")
        .unwrap();
    let pr = |git: &GitRepo| {
        Pipeline::new(
            git,
            "PullRequest",
            &[
                ("Build.SourceBranch", "refs/pull/7/merge"),
                ("System.PullRequest.TargetBranch", "refs/heads/main"),
            ],
        )
    };
    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 100)]),
    );
    git.commit("prod: green");
    let p = pr(&git);
    let summary = p.temp.path().join("flightdeck-diff.md");
    let out = tokio::task::spawn_blocking(move || (p.run_stage("validate"), p))
        .await
        .unwrap();
    assert!(ok(&out.0), "changes are not a failure: {}", log(&out.0));
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("+  green:"), "{text}");
    assert!(log(&out.0).contains(&format!("##vso[task.uploadsummary]{}", summary.display())));

    git.write(
        "environments/prod/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1)], &[("blue", 150)]),
    );
    git.commit("prod: too much traffic");
    let p = pr(&git);
    let out = tokio::task::spawn_blocking(move || p.run_stage("validate"))
        .await
        .unwrap();
    assert!(!ok(&out), "{}", log(&out));
    assert!(log(&out).contains("my-endpoint.yml:"), "{}", log(&out));
}
