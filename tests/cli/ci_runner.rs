//! Runs the shell steps of a GitHub Actions job the way a runner does, for the CI files users
//! copy (ci/github/): the workflow and its local composite actions are parsed with the
//! project's YAML reader, `${{ … }}` expressions are replaced from the contexts a test gives
//! (`secrets`, `env`, `steps.ID.outputs`, `inputs`, `github.action_path`; any other expression
//! fails the test, so nothing is silently left out), and each `run:` script is written to a file
//! and run with the job's bash (`bash -e {0}`, or `bash --noprofile --norc -eo pipefail {0}` for
//! `shell: bash`), with the runner's variables (GITHUB_EVENT_PATH, GITHUB_OUTPUT, RUNNER_TEMP…),
//! the workflow's, job's and step's `env`. After a failed step only `if: always()` steps run.
//! `uses:` of a local action (`./.github/actions/X`) runs its composite steps; the actions a
//! test stands in for itself (checkout: the workspace is the checkout; setup-flightdeck: the
//! built binary is on PATH) are skipped; any other `uses:` fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flightdeck::spec::yaml::{Kind, Node, parse};
use serde_json::{Map, Value};

/// The YAML as JSON, every scalar a string (as the runner reads `run:`, `env:` and `with:`).
fn to_json(node: &Node) -> Value {
    match &node.kind {
        Kind::Scalar { text, .. } => Value::String(text.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect::<Map<_, _>>(),
        ),
    }
}

pub fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (node, errors) = parse(&text);
    assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    to_json(&node.expect("a YAML document"))
}

fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// How one step ended.
#[derive(Debug)]
pub struct StepRun {
    pub name: String,
    pub code: i32,
    pub output: String,
}

/// A job's run: each step that ran, in order.
#[derive(Debug)]
pub struct JobRun {
    pub steps: Vec<StepRun>,
}

impl JobRun {
    pub fn succeeded(&self) -> bool {
        self.steps.iter().all(|s| s.code == 0)
    }
    pub fn log(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("--- step `{}`: exit {}\n{}", s.name, s.code, s.output))
            .collect()
    }
}

pub struct Runner {
    /// The checkout: the user's repository with the CI files under `.github/`.
    pub workspace: PathBuf,
    /// The variables the runner sets (GITHUB_*, RUNNER_TEMP, PATH, HOME…).
    pub vars: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    /// Actions the test stands in for (`actions/checkout@v4`, `./.github/actions/setup-flightdeck`).
    pub skipped_uses: Vec<String>,
}

struct Scope<'a> {
    env: BTreeMap<String, String>,
    inputs: BTreeMap<String, String>,
    action_path: Option<String>,
    outputs: &'a mut BTreeMap<String, BTreeMap<String, String>>,
}

impl Runner {
    /// Runs `job` of the workflow at `workflow` (a path in the workspace).
    pub fn run_job(&self, workflow: &str, job: &str) -> JobRun {
        let doc = load_yaml(&self.workspace.join(workflow));
        let job_doc = &doc["jobs"][job];
        assert!(job_doc.is_object(), "no job `{job}` in {workflow}");
        let mut outputs = BTreeMap::new();
        let mut scope = Scope {
            env: BTreeMap::new(),
            inputs: BTreeMap::new(),
            action_path: None,
            outputs: &mut outputs,
        };
        // Workflow env, then the job's (each evaluated against what is set before it).
        for (k, v) in string_map(doc.get("env"))
            .into_iter()
            .chain(string_map(job_doc.get("env")))
        {
            let v = self.eval(&v, &scope);
            scope.env.insert(k, v);
        }
        let mut run = JobRun { steps: vec![] };
        let steps = job_doc["steps"].as_array().expect("steps").clone();
        self.run_steps(&steps, &mut scope, &mut run, "bash -e {0}");
        run
    }

    fn run_steps(
        &self,
        steps: &[Value],
        scope: &mut Scope<'_>,
        run: &mut JobRun,
        default_shell: &str,
    ) {
        for (i, step) in steps.iter().enumerate() {
            let name = step["name"]
                .as_str()
                .or(step["uses"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("step {}", i + 1));
            let condition = step["if"].as_str();
            let failed = !run.succeeded();
            match condition {
                None if failed => continue,
                None => {}
                Some(c) if c.trim() == "always()" => {}
                Some(c) => panic!("step `{name}`: unsupported `if: {c}`"),
            }
            if let Some(uses) = step["uses"].as_str() {
                if self.skipped_uses.iter().any(|s| s == uses) {
                    continue;
                }
                let Some(dir) = uses.strip_prefix("./") else {
                    panic!("step `{name}`: `uses: {uses}` is neither local nor stood in for");
                };
                self.run_action(dir, step, scope, run);
                continue;
            }
            let script = step["run"]
                .as_str()
                .unwrap_or_else(|| panic!("step `{name}`: no run"));
            let shell = match step["shell"].as_str() {
                None => default_shell.to_string(),
                Some("bash") => "bash --noprofile --norc -eo pipefail {0}".to_string(),
                Some(other) => panic!("step `{name}`: unsupported shell {other}"),
            };
            let mut env = scope.env.clone();
            for (k, v) in string_map(step.get("env")) {
                let v = self.eval(&v, scope);
                env.insert(k, v);
            }
            let script = self.eval(script, scope);
            let result = self.exec(&name, &shell, &script, &env);
            if let (Some(id), Some(out)) = (step["id"].as_str(), result.1) {
                scope.outputs.insert(id.to_string(), out);
            }
            run.steps.push(result.0);
        }
    }

    /// A local composite action: its inputs from `with:` and the defaults, its steps in order.
    fn run_action(&self, dir: &str, step: &Value, scope: &mut Scope<'_>, run: &mut JobRun) {
        let action = load_yaml(&self.workspace.join(dir).join("action.yml"));
        assert_eq!(action["runs"]["using"], "composite", "{dir}");
        let with: BTreeMap<String, String> = string_map(step.get("with"))
            .into_iter()
            .map(|(k, v)| (k, self.eval(&v, scope)))
            .collect();
        let mut inputs = BTreeMap::new();
        for (name, spec) in action["inputs"].as_object().cloned().unwrap_or_default() {
            let value = match with.get(&name) {
                Some(v) => v.clone(),
                None if spec["required"] == "true" => {
                    panic!("{dir}: required input `{name}` not given")
                }
                None => spec["default"].as_str().unwrap_or_default().to_string(),
            };
            inputs.insert(name, value);
        }
        for k in with.keys() {
            assert!(inputs.contains_key(k), "{dir}: no input `{k}`");
        }
        let mut outputs = BTreeMap::new();
        let mut inner = Scope {
            env: scope.env.clone(),
            inputs,
            action_path: Some(self.workspace.join(dir).display().to_string()),
            outputs: &mut outputs,
        };
        let steps = action["runs"]["steps"].as_array().expect("steps").clone();
        for s in &steps {
            assert!(
                s.get("run").is_none() || s.get("shell").is_some(),
                "{dir}: a composite `run:` step needs `shell:`"
            );
        }
        // Inside a composite action, a step's default `success()` looks at the action's own
        // steps, so an `if: always()` report still runs its steps after a failed job step.
        let mut own = JobRun { steps: vec![] };
        self.run_steps(&steps, &mut inner, &mut own, "bash -e {0}");
        run.steps.extend(own.steps);
    }

    /// Replaces each `${{ expr }}` from the contexts; an unknown expression fails the test.
    fn eval(&self, text: &str, scope: &Scope<'_>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .expect("an expression ends with }}")
                + start;
            let expr = rest[start + 3..end].trim();
            let parts: Vec<&str> = expr.split('.').collect();
            let value = match parts.as_slice() {
                ["secrets", k] => self.secrets.get(*k).cloned(),
                ["env", k] => scope.env.get(*k).cloned(),
                ["inputs", k] => scope.inputs.get(*k).cloned(),
                ["steps", id, "outputs", k] => Some(
                    scope
                        .outputs
                        .get(*id)
                        .and_then(|o| o.get(*k))
                        .cloned()
                        .unwrap_or_default(),
                ),
                ["github", "action_path"] => scope.action_path.clone(),
                _ => None,
            };
            out.push_str(
                &value.unwrap_or_else(|| {
                    panic!("unsupported or unset expression `${{{{ {expr} }}}}`")
                }),
            );
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    fn exec(
        &self,
        name: &str,
        shell: &str,
        script: &str,
        env: &BTreeMap<String, String>,
    ) -> (StepRun, Option<BTreeMap<String, String>>) {
        let temp = PathBuf::from(&self.vars["RUNNER_TEMP"]);
        let file = temp.join(format!("step-{}.sh", uuid::Uuid::new_v4()));
        std::fs::write(&file, script).unwrap();
        let output_file = temp.join(format!("output-{}", uuid::Uuid::new_v4()));
        std::fs::write(&output_file, "").unwrap();
        let argv: Vec<String> = shell
            .split_whitespace()
            .map(|a| a.replace("{0}", &file.display().to_string()))
            .collect();
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&self.workspace)
            .env_clear()
            .envs(&self.vars)
            .env("GITHUB_OUTPUT", &output_file)
            .envs(env)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run bash");
        let outputs = std::fs::read_to_string(&output_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            StepRun {
                name: name.to_string(),
                code: out.status.code().unwrap_or(-1),
                output,
            },
            Some(outputs),
        )
    }
}
