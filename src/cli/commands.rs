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
use crate::escape::{Esc, escape_control_keep_lines, escape_json};
use crate::model::DesiredState;
use crate::plan::render::{self, Format};
use crate::plan::{self, Plan, PlanOptions, diff};
use crate::spec;

const OK: u8 = 0;
const CHANGES: u8 = 1;
const ERROR: u8 = 2;

fn fail(e: impl std::fmt::Display) -> u8 {
    // Errors may span lines (an invalid environment at `--against-rev` lists its problems, each
    // escaped already); the lines stay, every other control character is escaped.
    eprintln!("error: {}", escape_control_keep_lines(&format!("{e:#}")));
    ERROR
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

async fn desired_and_live(
    env_dir: &Path,
    live_args: &LiveArgs,
) -> Result<(DesiredState, crate::model::LiveState), u8> {
    let desired = load(env_dir)?;
    let live = live::live_state(live_args, &desired, env_dir)
        .await
        .map_err(fail)?;
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
    if diffs.iter().any(|d| !d.diff.is_empty()) {
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
    let live = match backend.read_live().await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
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
