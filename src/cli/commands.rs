//! The subcommands. Each returns its exit code; output goes to stdout, problems to stderr. Every
//! name, value or message that comes from the YAML or the platform is printed through
//! `crate::escape`, so control characters in it show as `\u{1b}`, `\r`, ...

use std::path::{Path, PathBuf};

use super::apply::show_rollouts;
use super::live::{self, ExportFile};
use super::{ExportArgs, LiveArgs, PlanArgs};
use crate::backend;
use crate::escape::{Esc, escape_control, escape_json};
use crate::model::DesiredState;
use crate::plan::render::{self, Format};
use crate::plan::{self, Plan, PlanOptions, diff};
use crate::spec;

pub(super) const OK: u8 = 0;
pub(super) const CHANGES: u8 = 1;
pub(super) const ERROR: u8 = 2;

/// One error line: every control character in it is escaped, line breaks too, so text from
/// YAML or the platform can never start a line of its own.
pub(super) fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("error: {}", escape_control(&format!("{e:#}")));
    ERROR
}

/// Like `fail`, but an environment that does not load at `--against-rev` lists its problems
/// first, one per line, as `validate` does.
fn fail_live(e: anyhow::Error) -> u8 {
    if let Some(invalid) = e.downcast_ref::<live::InvalidAtRev>() {
        eprintln!("{}", invalid.diagnostics);
    }
    fail(e)
}

pub(super) fn load(env_dir: &Path) -> Result<DesiredState, u8> {
    loaded(
        env_dir,
        spec::load_environment(env_dir, backend::profile_of),
    )
}

/// The work tree's desired state, or its problems printed and the exit code.
fn loaded(
    env_dir: &Path,
    result: Result<DesiredState, spec::Diagnostics>,
) -> Result<DesiredState, u8> {
    result.map_err(|diagnostics| {
        eprintln!("{diagnostics}");
        eprintln!(
            "error: {} is invalid ({} problem{}); nothing was planned or applied",
            Esc(&env_dir.display().to_string()),
            diagnostics.0.len(),
            if diagnostics.0.len() == 1 { "" } else { "s" }
        );
        ERROR
    })
}

pub(super) fn plan_options(desired: &DesiredState, prune: bool) -> PlanOptions {
    PlanOptions {
        prune,
        ignore: desired.environment.drift.ignore.clone(),
    }
}

/// Plans, or reports the refusals (also as a JSON document with `--output json`) and returns
/// the exit code: a refused plan applies nothing.
/// Plans `desired` against `live`, each endpoint in a staged rollout at its stage (without
/// reading metrics: a stage whose bake is over shows as "judging the gates").
pub(super) async fn make_plan(
    desired: &DesiredState,
    live: &crate::model::LiveState,
    slot_notes: &[plan::Note],
    prune: bool,
    output: Format,
) -> Result<Plan, u8> {
    let mut plan =
        crate::rollouts::plan_without_metrics(desired, live, &plan_options(desired, prune))
            .await
            .map_err(|refusals| report_refusals(desired, &refusals, output))?;
    plan.notes.splice(0..0, slot_notes.to_vec());
    Ok(plan)
}

/// Exit code of `plan`, `diff` and `apply` when an endpoint is held at its baseline after a
/// failed rollout: Git and the platform disagree until Git changes (`flightdeck revert`).
pub const HELD: u8 = 3;
/// Exit code of `apply` when a rollout waits for a person (`flightdeck rollout resume`).
pub const PAUSED: u8 = 4;

pub fn validate(paths: &[PathBuf]) -> u8 {
    match spec::validate_paths(paths, backend::profile_of) {
        Ok(()) => {
            println!(
                "{} path{} valid",
                paths.len(),
                if paths.len() == 1 { "" } else { "s" }
            );
            OK
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("error: {} problem(s) found", diagnostics.0.len());
            ERROR
        }
    }
}

/// `flightdeck schema --out DIR`: writes every generated JSON Schema into `DIR`.
pub fn schema(out: &Path) -> u8 {
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!(
            "error: cannot create {}: {e}",
            Esc(&out.display().to_string())
        );
        return ERROR;
    }
    for file in spec::schema::schemas() {
        let path = out.join(file.file_name);
        if let Err(e) = std::fs::write(&path, &file.text) {
            eprintln!(
                "error: cannot write {}: {e}",
                Esc(&path.display().to_string())
            );
            return ERROR;
        }
        println!("wrote {}", Esc(&path.display().to_string()));
    }
    OK
}

/// What `plan` and `diff` compare.
struct Compared {
    desired: DesiredState,
    live: crate::model::LiveState,
    /// Which slot gets the template and why.
    notes: Vec<plan::Note>,
    /// With `--against-rev`: endpoints identical at both revisions, left out of both states.
    unchanged: std::collections::BTreeSet<String>,
}

/// The desired state with its slot endpoints resolved against live (`slots::resolve`), live,
/// and the notes that say which slot gets the template and why. With `--against-rev`, both
/// sides come from the incremental loader and hold only the endpoints that may differ.
async fn desired_and_live(
    env_dir: &Path,
    live_args: &LiveArgs,
    output: Format,
) -> Result<Compared, u8> {
    let (mut desired, live, unchanged) = match &live_args.against_rev {
        Some(rev) => match live::against_rev(env_dir, rev) {
            Ok(sides) => (
                loaded(env_dir, sides.desired)?,
                sides.live.map_err(fail_live)?,
                sides.unchanged,
            ),
            Err(e) => {
                // The work tree's own problems come first, as without a revision.
                load(env_dir)?;
                return Err(fail_live(e));
            }
        },
        None => {
            let desired = load(env_dir)?;
            let live = live::live_state(live_args, &desired, env_dir)
                .await
                .map_err(fail_live)?;
            (desired, live, Default::default())
        }
    };
    let notes = resolve_slots(&mut desired, &live, output)?;
    Ok(Compared {
        desired,
        live,
        notes,
        unchanged,
    })
}

/// Resolves the slot endpoints of `desired` against `live`, or reports the refusal (as a plan
/// would be refused) and returns the exit code.
pub(super) fn resolve_slots(
    desired: &mut DesiredState,
    live: &crate::model::LiveState,
    output: Format,
) -> Result<Vec<plan::Note>, u8> {
    let profile = backend::profile_of(&desired.environment.target);
    crate::slots::resolve(desired, live, profile)
        .map_err(|refusals| report_refusals(desired, &refusals, output))
}

/// Prints a refused plan's reasons (and, with `--output json`, the refusal document) and
/// returns the exit code: a refused plan applies nothing.
fn report_refusals(desired: &DesiredState, refusals: &[plan::Refusal], output: Format) -> u8 {
    if output == Format::Json {
        let name = desired.environment.name.as_str();
        print!("{}", render::json(name, &Plan::default(), refusals));
    }
    for r in refusals {
        eprintln!("refused: {r}");
    }
    eprintln!("error: the plan was refused; nothing was applied");
    ERROR
}

pub async fn plan(args: &PlanArgs) -> u8 {
    let Compared {
        desired,
        live,
        notes,
        ..
    } = match desired_and_live(&args.env_dir, &args.live, args.output).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    match make_plan(&desired, &live, &notes, args.prune, args.output).await {
        Ok(p) => {
            print!(
                "{}",
                render::render(args.output, &desired.environment.name, &p)
            );
            if p.rollouts.iter().any(|r| r.is_failed()) {
                HELD
            } else if p.is_empty() && p.rollouts.is_empty() {
                OK
            } else {
                CHANGES
            }
        }
        Err(code) => code,
    }
}

pub async fn diff(args: &PlanArgs) -> u8 {
    let Compared {
        desired,
        live,
        notes,
        unchanged,
    } = match desired_and_live(&args.env_dir, &args.live, args.output).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let name = desired.environment.name.as_str();
    let profile = backend::profile_of(&desired.environment.target);
    let mut diffs = diff::diff(
        &desired,
        &live,
        &plan_options(&desired, args.prune),
        profile,
    );
    // Endpoints the incremental loader left out are the same at both revisions.
    if !unchanged.is_empty() {
        diffs.extend(unchanged.into_iter().map(|endpoint| diff::EndpointDiff {
            endpoint,
            status: "unchanged",
            diff: String::new(),
            notes: Vec::new(),
        }));
        diffs.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
    }
    // Which slot gets the template and why, beside that endpoint's other notes.
    for note in notes {
        if let Some(d) = diffs.iter_mut().find(|d| d.endpoint == note.endpoint) {
            d.notes.insert(0, note);
        }
    }
    let out = match args.output {
        Format::Text => diff::text(&diffs),
        Format::Markdown => diff::markdown(name, &diffs),
        Format::Json => diff::json(name, &diffs),
    };
    print!("{out}");
    // A live object still being provisioned is not converged, whatever its fields say.
    let pending = plan::pending(&live);
    for p in &pending {
        eprintln!("pending: {p}: an operation is under way; diff again when it ends");
    }
    // Where a staged rollout stands, and whether one is held after it failed.
    let mut held = false;
    if !desired.environment.rollout.is_empty() {
        match crate::rollouts::prepare(&desired, &live, crate::rollouts::Metrics::Skip, None).await
        {
            Ok(p) => {
                show_rollouts(&p.views);
                held = p.views.iter().any(|r| r.is_failed());
            }
            Err(refusals) => {
                for r in &refusals {
                    eprintln!("refused: {r}");
                }
                return ERROR;
            }
        }
    }
    if held {
        HELD
    } else if diffs.iter().any(|d| !d.diff.is_empty()) || !pending.is_empty() {
        CHANGES
    } else {
        OK
    }
}

/// The backend for `desired`'s target, configured from the command's backend flags.
async fn connect(
    desired: &crate::model::DesiredState,
    env_dir: &Path,
    args: &super::BackendArgs,
) -> anyhow::Result<Box<dyn backend::Backend>> {
    let config = super::backend_config(args)?;
    backend::connect(&desired.environment, env_dir, &config).await
}

pub async fn export(args: &ExportArgs) -> u8 {
    let desired = match load(&args.env_dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let live = match connect(&desired, &args.env_dir, &args.backend).await {
        Ok(b) => match b.read_live().await {
            Ok(l) => l,
            Err(e) => return fail(e),
        },
        Err(e) => return fail(e),
    };
    let snapshot = ExportFile {
        version: 1,
        environment: desired.environment.name.clone(),
        target: desired.environment.target.kind().to_string(),
        live,
    };
    let json = serde_json::to_string_pretty(&snapshot).expect("snapshot serialises") + "\n";
    match &args.file {
        Some(path) => match std::fs::write(path, json) {
            Ok(()) => {
                eprintln!("wrote {}", Esc(&path.display().to_string()));
                OK
            }
            Err(e) => fail(format!("{}: {e}", path.display())),
        },
        None => {
            print!("{}", escape_json(&json));
            OK
        }
    }
}
