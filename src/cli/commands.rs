//! The subcommands. Each returns its exit code; output goes to stdout, problems to stderr. Every
//! name, value or message that comes from the YAML or the platform is printed through
//! `crate::escape`, so control characters in it show as `\u{1b}`, `\r`, ...

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::interrupt::{INTERRUPTED, Interrupts};
use super::live::{self, Snapshot};
use super::{ApplyArgs, ExportArgs, LiveArgs, PlanArgs};
use crate::apply::{self, ApplyEvent, ApplyOptions, ApplyReport, Outcome};
use crate::backend::{self, ConnectOptions};
use crate::escape::{Esc, escape_control, escape_json};
use crate::model::{DesiredState, Target};
use crate::plan::render::{self, Format};
use crate::plan::{self, Plan, PlanOptions, diff};
use crate::spec;

const OK: u8 = 0;
const CHANGES: u8 = 1;
const ERROR: u8 = 2;

/// One error line: every control character in it is escaped, line breaks too, so text from
/// YAML or the platform can never start a line of its own.
fn fail(e: impl std::fmt::Display) -> u8 {
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

fn load(env_dir: &Path) -> Result<DesiredState, u8> {
    spec::load_environment(env_dir).map_err(|diagnostics| {
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

fn plan_options(desired: &DesiredState, prune: bool) -> PlanOptions {
    PlanOptions {
        prune,
        ignore: desired.environment.drift.ignore.clone(),
    }
}

/// Plans, or reports the refusals (also as a JSON document with `--output json`) and returns
/// the exit code: a refused plan applies nothing.
fn make_plan(
    desired: &DesiredState,
    live: &crate::model::LiveState,
    prune: bool,
    output: Format,
) -> Result<Plan, u8> {
    plan::plan(desired, live, &plan_options(desired, prune)).map_err(|refusals| {
        if output == Format::Json {
            let name = desired.environment.name.as_str();
            print!("{}", render::json(name, &Plan::default(), &refusals));
        }
        for r in &refusals {
            eprintln!("refused: {r}");
        }
        eprintln!("error: the plan was refused; nothing was applied");
        ERROR
    })
}

pub fn validate(paths: &[PathBuf]) -> u8 {
    match spec::validate_paths(paths) {
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

async fn desired_and_live(
    env_dir: &Path,
    live_args: &LiveArgs,
) -> Result<(DesiredState, crate::model::LiveState), u8> {
    let desired = load(env_dir)?;
    let live = live::live_state(live_args, &desired, env_dir)
        .await
        .map_err(fail_live)?;
    Ok((desired, live))
}

pub async fn plan(args: &PlanArgs) -> u8 {
    let (desired, live) = match desired_and_live(&args.env_dir, &args.live).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    match make_plan(&desired, &live, args.prune, args.output) {
        Ok(p) => {
            print!(
                "{}",
                render::render(args.output, &desired.environment.name, &p)
            );
            if p.is_empty() { OK } else { CHANGES }
        }
        Err(code) => code,
    }
}

pub async fn diff(args: &PlanArgs) -> u8 {
    let (desired, live) = match desired_and_live(&args.env_dir, &args.live).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let name = desired.environment.name.as_str();
    let diffs = diff::diff(&desired, &live, &plan_options(&desired, args.prune));
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
    if diffs.iter().any(|d| !d.diff.is_empty()) || !pending.is_empty() {
        CHANGES
    } else {
        OK
    }
}

fn progress(total: usize) -> impl Fn(ApplyEvent<'_>) + Sync {
    let n = std::sync::atomic::AtomicUsize::new(0);
    move |event| {
        let mut err = std::io::stderr().lock();
        match event {
            ApplyEvent::Started(step) => {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let _ = writeln!(
                    err,
                    "[{i}/{total}] {} {}: {} ...",
                    Esc(&step.subject()),
                    step.action.kind(),
                    Esc(&step.reason)
                );
            }
            ApplyEvent::Finished(r) => {
                let secs = r.duration.as_secs_f64();
                let subject = r.step.subject();
                let subject = Esc(&subject);
                let _ = match &r.outcome {
                    Outcome::Done(d) if d.is_empty() => {
                        writeln!(
                            err,
                            "      {} {}: done ({secs:.1}s)",
                            subject,
                            r.step.action.kind()
                        )
                    }
                    Outcome::Done(d) => writeln!(
                        err,
                        "      {} {}: done ({secs:.1}s): {}",
                        subject,
                        r.step.action.kind(),
                        Esc(d)
                    ),
                    Outcome::Failed(e) => writeln!(
                        err,
                        "      {} {}: FAILED ({secs:.1}s): {}",
                        subject,
                        r.step.action.kind(),
                        Esc(e)
                    ),
                    Outcome::Skipped(why) => writeln!(
                        err,
                        "      {} {}: skipped: {}",
                        subject,
                        r.step.action.kind(),
                        Esc(why)
                    ),
                    Outcome::WouldRun => writeln!(
                        err,
                        "      {} {}: would run (dry run)",
                        subject,
                        r.step.action.kind()
                    ),
                };
            }
        }
    }
}

fn print_report(report: &ApplyReport, format: Format) {
    if format == Format::Json {
        let text = serde_json::to_string_pretty(report).expect("report serialises");
        println!("{}", escape_json(&text));
        return;
    }
    let count = |f: fn(&Outcome) -> bool| report.results.iter().filter(|r| f(&r.outcome)).count();
    println!(
        "{} step(s): {} done, {} failed, {} skipped{}{}",
        report.results.len(),
        count(|o| matches!(o, Outcome::Done(_))),
        count(|o| matches!(o, Outcome::Failed(_))),
        count(|o| matches!(o, Outcome::Skipped(_))),
        if count(|o| matches!(o, Outcome::WouldRun)) > 0 {
            " (dry run: nothing was changed)"
        } else {
            ""
        },
        if report.interrupted {
            "; interrupted: the skipped steps did not run, apply again to finish"
        } else {
            ""
        }
    );
    if report.error().is_some() {
        println!("failed:");
        for r in report.failures() {
            if let Outcome::Failed(e) = &r.outcome {
                println!("{}: {}", Esc(&r.step.reason), Esc(e));
            }
        }
    }
}

/// `FLIGHTDECK_LOCK_TIMEOUT` (humantime), default 10 minutes: how long an apply waits for
/// another apply on the same state_file environment.
fn lock_timeout() -> anyhow::Result<std::time::Duration> {
    match std::env::var("FLIGHTDECK_LOCK_TIMEOUT") {
        Ok(v) if !v.is_empty() => humantime::parse_duration(&v)
            .map_err(|e| anyhow::anyhow!("FLIGHTDECK_LOCK_TIMEOUT {v:?} is not a duration: {e}")),
        _ => Ok(std::time::Duration::from_secs(600)),
    }
}

/// Re-reads live until nothing is pending, polling at `FLIGHTDECK_POLL_INTERVAL_MAX` (default
/// 5 s), for at most `FLIGHTDECK_LOCK_TIMEOUT`; then refuses, naming what is still busy.
async fn wait_for_other_writer(
    backend: &dyn backend::Backend,
    mut live: crate::model::LiveState,
) -> anyhow::Result<crate::model::LiveState> {
    let limit = lock_timeout()?;
    let every = match std::env::var("FLIGHTDECK_POLL_INTERVAL_MAX") {
        Ok(v) if !v.is_empty() => humantime::parse_duration(&v).map_err(|e| {
            anyhow::anyhow!("FLIGHTDECK_POLL_INTERVAL_MAX {v:?} is not a duration: {e}")
        })?,
        _ => std::time::Duration::from_secs(5),
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut announced = false;
    loop {
        let pending = plan::pending(&live);
        let Some(first) = pending.first() else {
            return Ok(live);
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{first}: another writer is at work on this environment; gave up after {} \
                 (FLIGHTDECK_LOCK_TIMEOUT); nothing was applied",
                humantime::format_duration(limit)
            );
        }
        if !announced {
            eprintln!("waiting for another writer: {first}");
            announced = true;
        }
        tokio::time::sleep(every).await;
        live = backend.read_live().await?;
    }
}

pub async fn apply(args: &ApplyArgs) -> u8 {
    let desired = match load(&args.env_dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let opts = ConnectOptions {
        arm_endpoint: args.arm_endpoint.clone(),
    };
    let backend = match backend::connect(&desired.environment, &args.env_dir, &opts).await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    // Connected first: for a state file, that checks its path stays inside the environment
    // (no symlinked directory leads out), so the lock beside it is inside too.
    // state_file: one apply at a time, held until this function returns (docs: README "apply").
    let _lock = match &desired.environment.target {
        Target::StateFile { path } if !args.dry_run => {
            let limit = match lock_timeout() {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let state = args.env_dir.join(path);
            let waiting = |lock: &Path| {
                eprintln!(
                    "waiting for another apply on this environment (lock {})",
                    lock.display()
                )
            };
            match backend::state_lock::acquire(&state, limit, waiting).await {
                Ok(lock) => Some(lock),
                Err(e) => return fail(e),
            }
        }
        _ => None,
    };
    let mut live = match backend.read_live().await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    // Azure ML: an endpoint or deployment in a non-terminal state means another writer (or an
    // interrupted apply's operation) is at work. Wait for it, re-read, then plan — never plan
    // against a state that is still moving (docs/azureml.md "Concurrent applies").
    if matches!(desired.environment.target, Target::AzureMl(_)) && !args.dry_run {
        live = match wait_for_other_writer(backend.as_ref(), live).await {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
    }
    let p = match make_plan(&desired, &live, args.prune, args.output) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let name = desired.environment.name.as_str();
    if args.output == Format::Text {
        print!("{}", render::text(name, &p));
    }
    if p.is_empty() {
        if args.output == Format::Json {
            print_report(&ApplyReport::default(), args.output);
        }
        return OK;
    }
    let cancel = CancellationToken::new();
    let interrupts = match Interrupts::watch(cancel.clone()) {
        Ok(i) => i,
        Err(e) => return fail(format!("cannot watch for Ctrl-C: {e}")),
    };
    let opts = ApplyOptions {
        concurrency: usize::from(args.concurrency),
        dry_run: args.dry_run,
    };
    let report = apply::apply_observed(
        &p,
        backend.as_ref(),
        &opts,
        &cancel,
        &progress(p.steps.len()),
    )
    .await;
    drop(interrupts);
    print_report(&report, args.output);
    if report.interrupted {
        INTERRUPTED
    } else if report.succeeded() {
        OK
    } else {
        CHANGES
    }
}

pub async fn export(args: &ExportArgs) -> u8 {
    let desired = match load(&args.env_dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let opts = ConnectOptions {
        arm_endpoint: args.arm_endpoint.clone(),
    };
    let live = match backend::connect(&desired.environment, &args.env_dir, &opts).await {
        Ok(b) => match b.read_live().await {
            Ok(l) => l,
            Err(e) => return fail(e),
        },
        Err(e) => return fail(e),
    };
    let snapshot = Snapshot {
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
