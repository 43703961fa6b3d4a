//! The incremental `--against-rev` loader against the full one, over random edit sets in real
//! Git repositories: endpoint and deployment files added, removed and modified (invalid YAML,
//! unknown fields, broken links, duplicate names), `environment.yaml` and a test's request
//! body changed, with `tests`, `promotion` and `smoke` checks naming endpoints the edit did
//! not touch. Both sides give the same diagnostics (same order, same text); when both load,
//! the compared endpoints are exactly the full states' ones, every other endpoint is identical
//! at both revisions, and the plan is the same. A second (warm-cache) run gives the same, and
//! so does a run over a corrupt cache. The agent's loader (`spec::reload`), fed the base
//! snapshot and then the edited one, gives what a full load of each gives.

use std::collections::BTreeMap;
use std::path::Path;

use std::sync::Arc;

use flightdeck::backend::profile_of;
use flightdeck::model::{DesiredState, LiveState};
use flightdeck::plan::{Plan, PlanOptions, plan};
use flightdeck::source::EnvTree;
use flightdeck::source::incremental::{CACHE_PATH, load_against_rev};
use flightdeck::spec::reload::Reloader;
use flightdeck::spec::{self, Diagnostics};
use flightdeck_testkit::GitRepo;
use proptest::prelude::*;

const ENV: &str = "env";

fn environment(variant: u8) -> String {
    let base = "name: incremental\ntarget:\n  state_file:\n    path: .live.json\n";
    match variant {
        0 => base.to_string(),
        // A test for ep-a (its key must name a declared endpoint).
        1 => format!("{base}tests:\n  ep-a:\n    request_file: req.json\n"),
        // A rollout override whose key must name a declared endpoint.
        2 => format!(
            "{base}rollout:\n  endpoints:\n    ep-b:\n      stages:\n        - traffic: 50\n          bake: 1m\n"
        ),
        // Keys naming a deployment and an endpoint with one deployment (checked on records for
        // every endpoint the edit did not touch).
        4 => format!(
            "{base}tests:\n  ep-c/blue:\n    request_file: req.json\npromotion:\n  models:\n    \
             - model: m@champion\n      endpoint: ep-b\n"
        ),
        // A smoke gate for every endpoint: each one needs a test.
        5 => format!(
            "{base}tests:\n  ep-a:\n    request_file: req.json\nrollout:\n  default:\n    steps:\n      \
             - weight: 50\n        bake: 1m\n        gates: [smoke]\n"
        ),
        _ => format!("{base}colour: blue\n"),
    }
}

fn endpoint(file: &str, variant: u8) -> String {
    let own = file.trim_end_matches(".yml");
    let deployment = |name: &str, count: u8| {
        format!(
            "  - name: {name}\n    model: azureml:m:1\n    environment: azureml:e:1\n    \
             instance_type: Standard_DS3_v2\n    instance_count: {count}\n"
        )
    };
    match variant {
        0 => format!(
            "name: {own}\nauth_mode: key\ntraffic:\n  blue: 100\ndeployments:\n{}",
            deployment("blue", 1)
        ),
        1 => format!(
            "name: {own}\nauth_mode: key\ntraffic:\n  blue: 100\ndeployments:\n{}",
            deployment("blue", 3)
        ),
        // Traffic names a deployment only a split file may declare.
        2 => format!(
            "name: {own}\nauth_mode: key\ntraffic:\n  blue: 90\n  green: 10\ndeployments:\n{}",
            deployment("blue", 2)
        ),
        // A duplicate of ep-a's name.
        3 => format!(
            "name: ep-a\nauth_mode: key\ndeployments:\n{}",
            deployment("red", 1)
        ),
        4 => "name: [unclosed\n".to_string(),
        5 => format!("name: {own}\nauth_mode: key\nflavour: spicy\n"),
        _ => "auth_mode: key\n".to_string(),
    }
}

fn split(variant: u8) -> String {
    let body = "model: azureml:m:2\nenvironment: azureml:e:1\ninstance_type: Standard_DS3_v2\n\
                instance_count: 1\n";
    match variant {
        0 => format!("name: green\nendpoint_name: ep-a\n{body}"),
        1 => format!("name: green\nendpoint_name: ep-b\n{body}"),
        // A broken link.
        2 => format!("name: green\nendpoint_name: ep-zz\n{body}"),
        3 => format!("name: green\nendpoint_name: ep-a\n{body}instance_count: 200\n"),
        _ => ": : :\n".to_string(),
    }
}

/// Every file of the universe: `None` absent, `Some(variant)`.
#[derive(Clone, Debug)]
struct Files {
    environment: u8,
    request: u8,
    endpoints: [Option<u8>; 3],
    splits: [Option<u8>; 2],
}

const ENDPOINTS: [&str; 3] = ["ep-a.yml", "ep-b.yml", "ep-c.yml"];
const SPLITS: [&str; 2] = ["d-1.yml", "d-2.yml"];

fn files() -> impl Strategy<Value = Files> {
    (
        prop_oneof![
            6 => Just(0u8),
            1 => Just(1),
            1 => Just(2),
            1 => Just(3),
            1 => Just(4),
            1 => Just(5)
        ],
        0u8..2,
        // Mostly valid files, so both sides often load and their states are compared too.
        prop::array::uniform3(prop::option::weighted(
            0.8,
            prop_oneof![8 => 0u8..2, 1 => 2u8..7],
        )),
        prop::array::uniform2(prop::option::weighted(
            0.4,
            prop_oneof![6 => 0u8..2, 1 => 2u8..5],
        )),
    )
        .prop_map(|(environment, request, endpoints, splits)| Files {
            environment,
            request,
            endpoints,
            splits,
        })
}

/// A base and an edit of it: each file kept as it is with probability ~0.6.
fn edit_set() -> impl Strategy<Value = (Files, Files, [bool; 7])> {
    (
        files(),
        files(),
        prop::array::uniform7(prop::bool::weighted(0.6)),
    )
}

fn write_all(repo: &GitRepo, f: &Files) {
    let root = repo.dir.path().join(ENV);
    std::fs::create_dir_all(&root).unwrap();
    let put = |name: &str, content: Option<String>| {
        let path = root.join(name);
        match content {
            Some(c) => std::fs::write(path, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    };
    put("environment.yaml", Some(environment(f.environment)));
    put("req.json", Some(format!("{{\"input\": {}}}", f.request)));
    for (name, v) in ENDPOINTS.iter().zip(f.endpoints) {
        put(name, v.map(|v| endpoint(name, v)));
    }
    for (name, v) in SPLITS.iter().zip(f.splits) {
        put(name, v.map(split));
    }
}

/// The edit: each file of `base` kept where `keep` says so, else as in `edit`.
fn merged(base: &Files, edit: &Files, keep: [bool; 7]) -> Files {
    fn pick<T>(keep: bool, a: T, b: T) -> T {
        if keep { a } else { b }
    }
    Files {
        environment: pick(keep[0], base.environment, edit.environment),
        request: pick(keep[1], base.request, edit.request),
        endpoints: [0, 1, 2].map(|i| pick(keep[2 + i], base.endpoints[i], edit.endpoints[i])),
        splits: [0, 1].map(|i| pick(keep[5 + i], base.splits[i], edit.splits[i])),
    }
}

fn as_live(old: &DesiredState) -> LiveState {
    LiveState::from_desired(old)
}

fn plan_of(new: &DesiredState, old: &DesiredState) -> Plan {
    let profile = flightdeck::backend::profile_of(&new.environment.target);
    // With `prune`, an endpoint only the old side declares is a step too.
    let opts = PlanOptions {
        prune: true,
        ..PlanOptions::default()
    };
    plan(new, &as_live(old), &opts, profile).unwrap_or_default()
}

/// Both sides loaded in full, as before the incremental loader.
fn full(repo: &GitRepo, env_dir: &Path, rev: &str) -> (Loaded, Loaded) {
    let new = spec::load_environment(env_dir, flightdeck::backend::profile_of);
    let old = spec::load_tree(&old_tree(repo, env_dir, rev), env_dir, profile_of);
    (new, old)
}

type Loaded = Result<DesiredState, Diagnostics>;

/// The environment's files at `rev`, as the agent's snapshot holds them.
fn old_tree(repo: &GitRepo, env_dir: &Path, rev: &str) -> EnvTree {
    let git = repo.repo();
    let commit = git.find_commit(git2::Oid::from_str(rev).unwrap()).unwrap();
    let entry = commit.tree().unwrap().get_path(Path::new(ENV)).unwrap();
    let tree = git.find_tree(entry.id()).unwrap();
    flightdeck::source::read_git_tree(git, &tree, env_dir).unwrap()
}

/// The agent's loader over the base snapshot, then the edited one (then the base again):
/// each load equals a full load of that snapshot.
fn check_reloader(
    repo: &GitRepo,
    env_dir: &Path,
    rev: &str,
    (full_new, full_old): (&Loaded, &Loaded),
) -> Result<(), TestCaseError> {
    let old = Arc::new(old_tree(repo, env_dir, rev));
    let new = Arc::new(flightdeck::source::tree::read_dir(env_dir, env_dir).unwrap());
    let mut reloader = Reloader::new();
    prop_assert_eq!(&reloader.load(&old, env_dir, profile_of), full_old);
    prop_assert_eq!(&reloader.load(&new, env_dir, profile_of), full_new);
    prop_assert_eq!(&reloader.load(&old, env_dir, profile_of), full_old);
    Ok(())
}

fn only<'a>(
    state: &'a DesiredState,
    keep: &'a dyn Fn(&str) -> bool,
) -> BTreeMap<&'a String, &'a flightdeck::model::Endpoint> {
    state.endpoints.iter().filter(|(n, _)| keep(n)).collect()
}

/// Runs the incremental loader and checks it against the full one.
fn check(repo: &GitRepo, env_dir: &Path, rev: &str) -> Result<usize, TestCaseError> {
    let (full_new, full_old) = full(repo, env_dir, rev);
    check_reloader(repo, env_dir, rev, (&full_new, &full_old))?;
    let inc = load_against_rev(env_dir, rev, flightdeck::backend::profile_of)
        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    let load = inc.load;
    let old = load.old.expect("the environment exists at the base");
    match (&load.new, &full_new) {
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        (Ok(_), Ok(_)) => {}
        (a, b) => prop_assert!(false, "new side: incremental {a:?}, full {b:?}"),
    }
    match (&old, &full_old) {
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        (Ok(_), Ok(_)) => {}
        (a, b) => prop_assert!(false, "old side: incremental {a:?}, full {b:?}"),
    }
    if let (Ok(new), Ok(old), Ok(fnew), Ok(fold)) = (&load.new, &old, &full_new, &full_old) {
        prop_assert_eq!(&new.environment, &fnew.environment);
        prop_assert_eq!(&old.environment, &fold.environment);
        let compared = |n: &str| load.compared.contains(n);
        prop_assert_eq!(only(new, &|_| true), only(fnew, &compared));
        prop_assert_eq!(only(old, &|_| true), only(fold, &compared));
        let not_compared = |n: &str| !load.compared.contains(n);
        prop_assert_eq!(only(fnew, &not_compared), only(fold, &not_compared));
        let unchanged: Vec<&String> = only(fnew, &not_compared).into_keys().collect();
        prop_assert_eq!(load.unchanged.iter().collect::<Vec<_>>(), unchanged);
        prop_assert_eq!(plan_of(new, old), plan_of(fnew, fold));
    }
    Ok(inc.cache_misses)
}

fn cache_file(repo: &GitRepo) -> std::path::PathBuf {
    repo.dir.path().join(".git").join(CACHE_PATH)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_incremental_against_rev_load_equals_a_full_parse_of_both_revisions(
        (base, edit, keep) in edit_set(),
        corrupt in prop::bool::weighted(0.2),
    ) {
        let repo = GitRepo::new();
        write_all(&repo, &base);
        let rev = repo.commit("base");
        write_all(&repo, &merged(&base, &edit, keep));
        let env_dir = repo.dir.path().join(ENV);
        let cold = check(&repo, &env_dir, &rev)?;
        prop_assert!(cache_file(&repo).exists(), "a cold run writes the cache");
        if corrupt {
            std::fs::write(cache_file(&repo), b"{\"format\": 1, \"entr").unwrap();
        }
        let warm = check(&repo, &env_dir, &rev)?;
        if !corrupt {
            prop_assert!(warm <= cold, "a warm run parses no more ({warm} > {cold})");
        }
    }
}

/// Writes and commits `base`, then changes ep-b.yml (its second content) in the work tree only;
/// returns the base revision.
fn commit_then_change_ep_b(repo: &GitRepo, base: &Files) -> String {
    write_all(repo, base);
    let rev = repo.commit("base");
    let mut edit = base.clone();
    edit.endpoints[1] = Some(1);
    write_all(repo, &edit);
    rev
}

#[test]
fn a_warm_run_parses_only_the_files_that_changed_in_the_work_tree() {
    let repo = GitRepo::new();
    let base = Files {
        environment: 0,
        request: 0,
        endpoints: [Some(0), Some(0), Some(0)],
        splits: [Some(0), None],
    };
    let rev = commit_then_change_ep_b(&repo, &base);
    let env_dir = repo.dir.path().join(ENV);
    let cold = load_against_rev(&env_dir, &rev, flightdeck::backend::profile_of).unwrap();
    // Cold: the base revision's four endpoint and deployment files, once each (the work
    // tree's unchanged files share their blobs), and the changed ep-b.yml.
    assert_eq!(cold.cache_misses, 5);
    let warm = load_against_rev(&env_dir, &rev, flightdeck::backend::profile_of).unwrap();
    // Warm: only ep-b.yml of the work tree (it has no blob), and ep-b.yml at the base to build
    // ep-b in full.
    assert_eq!(warm.cache_misses, 2, "{warm:?}");
    assert!(warm.cache_hits >= 3, "{warm:?}");
    let new = warm.load.new.unwrap();
    assert_eq!(new.endpoints.keys().collect::<Vec<_>>(), ["ep-b"]);
    assert_eq!(
        warm.load.unchanged.iter().collect::<Vec<_>>(),
        ["ep-a", "ep-c"]
    );
}

#[test]
fn the_agent_reloads_only_the_endpoints_a_commit_changed() {
    let repo = GitRepo::new();
    let base = Files {
        environment: 0,
        request: 0,
        endpoints: [Some(0), Some(0), Some(0)],
        splits: [Some(0), None],
    };
    let rev = commit_then_change_ep_b(&repo, &base);
    let env_dir = repo.dir.path().join(ENV);
    let old = Arc::new(old_tree(&repo, &env_dir, &rev));
    let new = Arc::new(flightdeck::source::tree::read_dir(&env_dir, &env_dir).unwrap());
    let mut reloader = Reloader::new();
    reloader.load(&old, &env_dir, profile_of).unwrap();
    assert_eq!(reloader.parsed(), 4, "the first snapshot is parsed in full");
    let desired = reloader.load(&new, &env_dir, profile_of).unwrap();
    // ep-b.yml at both snapshots; ep-a.yml, ep-c.yml and d-1.yml come from their records.
    assert_eq!(reloader.parsed(), 6);
    assert_eq!(
        desired,
        spec::load_tree(&new, &env_dir, profile_of).unwrap()
    );
    assert_eq!(reloader.records(), 5, "records of both snapshots, no more");
}

#[test]
fn checks_across_the_environment_file_see_the_endpoints_an_edit_did_not_touch() {
    // The environment file is the same at both revisions and only ep-b.yml changes, so ep-a
    // and ep-c come from their records: `tests`, `rollout`, `promotion` and `smoke` still
    // check them, as a full parse does.
    for environment in 1..=5 {
        let repo = GitRepo::new();
        let base = Files {
            environment,
            request: 0,
            endpoints: [Some(0), Some(0), Some(0)],
            splits: [None, Some(1)],
        };
        let rev = commit_then_change_ep_b(&repo, &base);
        let env_dir = repo.dir.path().join(ENV);
        check(&repo, &env_dir, &rev).unwrap_or_else(|e| panic!("environment {environment}: {e}"));
        let warm = load_against_rev(&env_dir, &rev, profile_of).unwrap();
        let compared = flightdeck::spec::incremental::Compared::Endpoints(["ep-b".into()].into());
        assert_eq!(warm.load.compared, compared, "environment {environment}");
        if environment == 5 {
            // ep-b (split file d-2) and ep-c have no test: the gate is refused for both.
            let shown = warm.load.new.unwrap_err().to_string();
            assert!(shown.contains("endpoint ep-c has one"), "{shown}");
            assert!(shown.contains("endpoint ep-b has one"), "{shown}");
        }
    }
}
