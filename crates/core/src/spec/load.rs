//! Orchestration: list and read files, parse them, run both stages and collect every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::diagnostics::{Diagnostic, Diagnostics, Sink};
use super::files::{DiskFiles, Files, Tree, normalize};
use super::raw_deployment::RawDeployment;
use super::raw_endpoint::{RawEndpoint, RawFile, endpoint_or_deployment};
use super::raw_environment::{RawEnvironment, environment as raw_environment};
use super::validate::{self, rollout_key_problem};
use super::yaml::{self, Node, Pos};
use crate::model::{DesiredState, Endpoint, Environment};
use crate::plan::profile::{NEUTRAL, ProfileOf};
use crate::tree::{self, EnvTree, MAX_FILE_BYTES, TreeProblem};

pub(crate) const ENVIRONMENT_FILES: &[&str] = &["environment.yaml", "environment.yml"];

pub(crate) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

pub(crate) fn is_environment_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| ENVIRONMENT_FILES.contains(&n))
}

/// Reads and parses one YAML file; problems go to `out`.
fn parse_file(files: &dyn Files, path: &Path, out: &mut Vec<Diagnostic>) -> Option<Node> {
    let text = read_text(files, path).map_err(|m| out.push(Diagnostic::new(path, Pos::FILE, m)));
    let text = text.ok()?;
    let (root, errors) = yaml::parse(&text);
    for e in &errors {
        out.push(Diagnostic::new(path, e.pos, e.message.clone()));
    }
    if root.is_none() && errors.is_empty() {
        out.push(Diagnostic::new(path, Pos::FILE, "file is empty"));
    }
    root
}

/// Reads a UTF-8 file of at most 1 MiB, or says why not.
pub(crate) fn read_text(files: &dyn Files, path: &Path) -> Result<String, String> {
    let bytes = files.read(path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => e.to_string(),
        io::ErrorKind::NotFound => "file not found".to_string(),
        _ => format!("cannot read file: {e}"),
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(super::files::too_large().to_string());
    }
    String::from_utf8(bytes).map_err(|_| "file is not valid UTF-8".to_string())
}

/// Raw endpoints and split deployments, and whether some file yielded neither (it does not
/// parse, or is not an endpoint or deployment): then what it would have declared is unknown,
/// and references to it are not reported as missing (its own errors say what is wrong).
#[derive(Default)]
pub(crate) struct Parsed {
    pub endpoints: Vec<RawEndpoint>,
    pub deployments: Vec<RawDeployment>,
    pub incomplete: bool,
}

/// Parses endpoint and deployment files into raw endpoints and split deployments.
fn parse_endpoint_files(files: &dyn Files, paths: &[PathBuf], out: &mut Vec<Diagnostic>) -> Parsed {
    let mut parsed = Parsed::default();
    for path in paths {
        parsed.add(parse_one(files, path, out));
    }
    parsed
}

/// Parses one endpoint or deployment file: `None` when it does not parse or is neither.
pub(crate) fn parse_one(
    files: &dyn Files,
    path: &Path,
    out: &mut Vec<Diagnostic>,
) -> Option<RawFile> {
    let root = parse_file(files, path, out)?;
    endpoint_or_deployment(&mut Sink { path, out }, &root)
}

impl Parsed {
    /// Adds one file's result, in path order.
    pub(crate) fn add(&mut self, file: Option<RawFile>) {
        match file {
            Some(RawFile::Endpoint(e)) => self.endpoints.push(*e),
            Some(RawFile::Deployment(d)) => self.deployments.push(*d),
            None => self.incomplete = true,
        }
    }
}

/// Reads the environment directory `dir` from disk through the tree reader; a refused tree
/// (too many files or bytes) becomes a diagnostic on the directory.
fn read_disk(dir: &Path, out: &mut Vec<Diagnostic>) -> Option<EnvTree> {
    tree::read_dir(dir, dir)
        .map_err(|e| out.push(Diagnostic::new(e.dir(), Pos::FILE, e.message())))
        .ok()
}

pub(crate) fn disk_environment(
    dir: &Path,
    profile_of: ProfileOf,
) -> Result<DesiredState, Diagnostics> {
    let mut out = Vec::new();
    let state = read_disk(dir, &mut out)
        .and_then(|tree| environment_into(&tree, dir, profile_of, &mut out));
    match state {
        Some(state) if out.is_empty() => Ok(state),
        _ => Err(Diagnostics::from_unsorted(out)),
    }
}

pub(crate) fn environment(
    tree: &EnvTree,
    dir: &Path,
    profile_of: ProfileOf,
) -> Result<DesiredState, Diagnostics> {
    let mut out = Vec::new();
    let state = environment_into(tree, dir, profile_of, &mut out);
    match state {
        Some(state) if out.is_empty() => Ok(state),
        _ => Err(Diagnostics::from_unsorted(out)),
    }
}

/// Loads the environment `dir` from `tree` (already read, hidden entries left out); every
/// entry the tree reader refused is reported with its path. The target's rules are those of
/// `profile_of(target)`; without a known target, those of every platform (`NEUTRAL`).
fn environment_into(
    tree: &EnvTree,
    dir: &Path,
    profile_of: ProfileOf,
    out: &mut Vec<Diagnostic>,
) -> Option<DesiredState> {
    let layout = layout(tree.keys(), &tree.problems, dir, out);
    let raw_env = layout
        .env_path
        .as_ref()
        .and_then(|p| parse_environment(tree, p, out));
    let parsed = parse_endpoint_files(tree, &layout.others, out);
    let mut left_out = BTreeSet::new();
    assemble(
        tree,
        dir,
        profile_of,
        raw_env,
        parsed,
        ALL,
        &mut left_out,
        out,
    )
}

/// Which files of a tree are what: its one `environment.yaml` (misplaced or second ones are
/// reported) and its other YAML files, sorted.
pub(crate) struct Layout {
    pub env_path: Option<PathBuf>,
    pub others: Vec<PathBuf>,
}

/// Sorts the files of a tree (its paths in order, as a `BTreeMap` gives them) into a
/// [`Layout`], reporting every refused entry and every misplaced environment file.
pub(crate) fn layout<'p>(
    paths: impl Iterator<Item = &'p PathBuf>,
    problems: &[TreeProblem],
    dir: &Path,
    out: &mut Vec<Diagnostic>,
) -> Layout {
    for problem in problems {
        let message = problem.problem.to_string();
        out.push(Diagnostic::new(&problem.path, Pos::FILE, message));
    }
    // Sorted (a BTreeMap), so results never depend on directory order.
    let yaml_files: Vec<PathBuf> = paths.filter(|p| is_yaml(p)).cloned().collect();
    let top = normalize(dir);
    let (env_files, others): (Vec<PathBuf>, Vec<PathBuf>) =
        yaml_files.into_iter().partition(|p| is_environment_file(p));
    let mut top_env = Vec::new();
    for p in env_files {
        if p.parent().map(normalize) == Some(top.clone()) {
            top_env.push(p);
        } else {
            let message = "environment.yaml belongs at the top of the environment directory";
            out.push(Diagnostic::new(&p, Pos::FILE, message));
        }
    }
    let env_path = match top_env.as_slice() {
        [] => {
            out.push(Diagnostic::new(
                dir,
                Pos::FILE,
                "no environment.yaml in this directory",
            ));
            None
        }
        [one] => Some(one.clone()),
        [first, second, ..] => {
            let message = format!(
                "an environment has one environment file, {} is already there",
                first.display()
            );
            out.push(Diagnostic::new(second, Pos::FILE, message));
            None
        }
    };
    Layout { env_path, others }
}

/// Parses the environment file at `path`.
pub(crate) fn parse_environment(
    files: &dyn Files,
    path: &Path,
    out: &mut Vec<Diagnostic>,
) -> Option<RawEnvironment> {
    let root = parse_file(files, path, out)?;
    Some(raw_environment(&mut Sink { path, out }, &root))
}

/// Every endpoint built in full (a whole load).
pub(crate) const ALL: &dyn Fn(&str) -> bool = &|_| true;

/// Everything after parsing: links the raw endpoints and deployments of every file, checks
/// them against each other and the environment file, and builds the desired state. Every
/// endpoint is checked; the state holds those `full` names, and `left_out` gets the names of
/// the other declared ones (the incremental loader builds only the endpoints it compares).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    tree: &dyn Tree,
    dir: &Path,
    profile_of: ProfileOf,
    raw_env: Option<RawEnvironment>,
    mut parsed: Parsed,
    full: &dyn Fn(&str) -> bool,
    left_out: &mut BTreeSet<String>,
    out: &mut Vec<Diagnostic>,
) -> Option<DesiredState> {
    let incomplete = parsed.incomplete;
    let target = raw_env.as_ref().and_then(|e| e.target.clone());
    let profile = target.as_ref().map_or(&NEUTRAL, profile_of);
    let env_path = raw_env
        .as_ref()
        .map_or_else(|| dir.join(ENVIRONMENT_FILES[0]), |e| e.path.clone());
    let raw_slots = raw_env
        .as_ref()
        .map(|e| e.slots.clone())
        .unwrap_or_default();
    let templates = super::raw_slots::take_templates(
        dir,
        &env_path,
        &raw_slots,
        &mut parsed.endpoints,
        &mut parsed.deployments,
        out,
    );
    let (mut endpoints, declared) = validate::endpoints(
        profile,
        parsed.endpoints,
        parsed.deployments,
        incomplete,
        full,
        out,
    );
    left_out.extend(
        declared
            .keys()
            .filter(|n| !endpoints.contains_key(*n))
            .cloned(),
    );
    let mut template_of = |raw: &RawDeployment, out: &mut Vec<Diagnostic>| {
        let mut sink = Sink {
            path: &raw.path.clone(),
            out,
        };
        validate::deployment(&mut sink, profile, raw.clone(), true)
            .and_then(validate::Checked::into_deployment)
    };
    let mut slots = super::raw_slots::check(
        &env_path,
        raw_slots,
        templates,
        &declared,
        profile,
        incomplete,
        &mut template_of,
        out,
    );
    let raw_env = raw_env?;
    let name = raw_env.name.as_ref();
    if let Some(n) = name
        && let Some(problem) = NEUTRAL.name_problem("environment", &n.value)
    {
        out.push(Diagnostic::new(&raw_env.path, n.pos, problem));
    }
    let tests = super::requests::attach_tests(
        incomplete,
        tree,
        dir,
        &raw_env.path,
        &raw_env.tests,
        &mut endpoints,
        &declared,
        out,
    );
    // A slot's deployment is the template: the endpoint's test (or `*`) is its test.
    for (endpoint_name, s) in slots.iter_mut() {
        s.template.test = tests
            .get(endpoint_name.as_str())
            .or_else(|| tests.get("*"))
            .cloned();
    }
    if !incomplete {
        for (key, pos) in &raw_env.rollout.overrides {
            if let Some(problem) = rollout_key_problem(key, &declared) {
                out.push(Diagnostic::new(&raw_env.path, *pos, problem));
            }
        }
    }
    // The platform's mirror limit [AML R3: at most 50%] applies to a policy's mirror stage.
    for (what, percent) in &raw_env.rollout.mirrors {
        let most = profile.mirror.max_percent;
        if percent.value > most {
            out.push(Diagnostic::new(
                &raw_env.path,
                percent.pos,
                format!(
                    "{what}: mirror percent {} is above the {} limit of {most}%",
                    percent.value, profile.name
                ),
            ));
        }
    }
    // A `smoke` gate re-runs the candidate's test: an endpoint it applies to needs one.
    if !incomplete {
        for (name, deployments) in &declared {
            let what = if raw_env.rollout.settings.endpoints.contains_key(name) {
                format!("rollout.endpoints.{name}")
            } else {
                "rollout.default".to_string()
            };
            let Some((_, pos)) = raw_env.rollout.smokes.iter().find(|(w, _)| *w == what) else {
                continue;
            };
            // A deployment's test comes from `endpoint/deployment`, `endpoint` or `*`
            // (`requests::attach_tests`).
            let endpoint_wide = tests.contains_key(name.as_str()) || tests.contains_key("*");
            let tested = deployments
                .iter()
                .any(|d| endpoint_wide || tests.contains_key(&format!("{name}/{d}")))
                || slots.get(name).is_some_and(|s| s.template.test.is_some());
            if !tested {
                out.push(Diagnostic::new(
                    &raw_env.path,
                    *pos,
                    format!(
                        "{what}: the `smoke` gate re-runs the candidate's test, but no deployment \
                         of endpoint {name} has one (add a `tests:` entry for it)"
                    ),
                ));
            }
        }
    }
    if let Some(crate::model::Target::AzureMl(azure)) = &target
        && profile.values.workspace_asset_ids
    {
        super::assets::canonical_workspace_assets(azure, endpoints.values_mut());
        for (name, s) in slots.iter_mut() {
            // The template as one deployment of a scratch endpoint: the same canonical form.
            let mut scratch = Endpoint {
                name: name.clone(),
                settings: Default::default(),
                traffic: None,
                mirror_traffic: None,
                deployments: BTreeMap::from([(s.template.name.clone(), s.template.clone())]),
            };
            super::assets::canonical_workspace_assets(azure, std::iter::once(&mut scratch));
            if let Some(d) = scratch.deployments.into_values().next() {
                s.template = d;
            }
        }
    }
    let promotion = super::raw_promotion::check(
        &raw_env.path,
        raw_env.promotion.clone(),
        &declared,
        &slots,
        incomplete,
        out,
    );
    Some(DesiredState {
        environment: Environment {
            name: name?.value.clone(),
            target: target?,
            drift: raw_env.drift,
            rollout: raw_env.rollout.settings,
            slots,
            promotion,
        },
        endpoints,
    })
}

pub(crate) fn endpoint_files(
    files: &dyn Files,
    paths: &[PathBuf],
) -> Result<Vec<Endpoint>, Diagnostics> {
    let mut out = Vec::new();
    let parsed = parse_endpoint_files(files, paths, &mut out);
    let (endpoints, _) = validate::endpoints(
        &NEUTRAL,
        parsed.endpoints,
        parsed.deployments,
        parsed.incomplete,
        ALL,
        &mut out,
    );
    if out.is_empty() {
        Ok(endpoints.into_values().collect())
    } else {
        Err(Diagnostics::from_unsorted(out))
    }
}

pub(crate) fn validate_paths(paths: &[PathBuf], profile_of: ProfileOf) -> Result<(), Diagnostics> {
    let mut out = Vec::new();
    let mut loose = Vec::new();
    let check_dir = |dir: &Path, out: &mut Vec<Diagnostic>| {
        if let Some(tree) = read_disk(dir, out) {
            environment_into(&tree, dir, profile_of, out);
        }
    };
    for path in paths {
        if path.is_dir() {
            check_dir(path, &mut out);
        } else if is_environment_file(path) {
            let dir = path.parent().unwrap_or(Path::new("."));
            check_dir(dir, &mut out);
        } else if path.exists() {
            loose.push(path.clone());
        } else {
            out.push(Diagnostic::new(
                path,
                Pos::FILE,
                "no such file or directory",
            ));
        }
    }
    if !loose.is_empty()
        && let Err(d) = endpoint_files(&DiskFiles, &loose)
    {
        out.extend(d.0);
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics::from_unsorted(out))
    }
}
