//! Golden files of rendered plans: each case is a `before` and an `after` endpoint file; the
//! plan from before (as live) to after is rendered as text, markdown and JSON and compared with
//! `tests/golden/<case>/plan.{txt,md,json}`. Set `UPDATE_GOLDEN=1` to rewrite them, then review
//! the diff like any other change.

use std::path::{Path, PathBuf};

use flightdeck::model::{DesiredState, DriftPolicy, Environment, LiveState, Target};
use flightdeck::plan::render::{self, Format};
use flightdeck::plan::{PlanOptions, plan};
use flightdeck::spec::{self, DiskFiles};

fn desired(file: &Path) -> DesiredState {
    let endpoints = spec::load_endpoint_files(&DiskFiles, &[file.to_path_buf()])
        .unwrap_or_else(|d| panic!("{}:\n{d}", file.display()));
    DesiredState {
        environment: Environment {
            name: "golden".into(),
            target: Target::StateFile {
                path: "live.json".into(),
            },
            drift: DriftPolicy::default(),
            rollout: Default::default(),
            slots: Default::default(),
            promotion: Default::default(),
        },
        endpoints: endpoints.into_iter().map(|e| (e.name.clone(), e)).collect(),
    }
}

fn check(case: &str, before: PathBuf, after: PathBuf) {
    let live = LiveState::from_desired(&desired(&before));
    let p = plan(
        &desired(&after),
        &live,
        &PlanOptions::default(),
        flightdeck::backend::profile_of(&desired(&after).environment.target),
    )
    .expect("no refusal");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    for (ext, format) in [
        ("txt", Format::Text),
        ("md", Format::Markdown),
        ("json", Format::Json),
    ] {
        let got = render::render(format, "golden", &p);
        let path = dir.join(format!("plan.{ext}"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        assert_eq!(
            got,
            want,
            "{} differs from the rendered plan",
            path.display()
        );
    }
}

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference/azureml-cli-yaml/canary-declarative-flow")
        .join(name)
}

fn case_files(case: &str) -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    (dir.join("before.yml"), dir.join("after.yml"))
}

#[test]
fn flighting_green_renders_as_in_the_golden_files() {
    std::fs::create_dir_all(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/flight-green"),
    )
    .ok();
    check(
        "flight-green",
        reference("3-create-green.yml"),
        reference("4-flight-green.yml"),
    );
}

#[test]
fn deleting_drained_blue_renders_as_in_the_golden_files() {
    std::fs::create_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/delete-blue"))
        .ok();
    check(
        "delete-blue",
        reference("5-full-green.yml"),
        reference("6-delete-blue.yml"),
    );
}

#[test]
fn ending_a_shadow_and_flighting_the_shadowed_deployment_renders_as_in_the_golden_files() {
    let (before, after) = case_files("shadow-then-flight");
    check("shadow-then-flight", before, after);
}

#[test]
fn an_in_place_update_with_scale_down_and_a_delete_renders_as_in_the_golden_files() {
    let (before, after) = case_files("update-model-and-scale-down");
    check("update-model-and-scale-down", before, after);
}
