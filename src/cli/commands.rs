//! The subcommands. Each returns its exit code; output goes to stdout, problems to stderr. Every
//! name, value or message that comes from the YAML or the platform is printed through
//! `crate::escape`, so control characters in it show as `\u{1b}`, `\r`, ...

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::interrupt::{INTERRUPTED, Interrupts};
use super::live::{self, ExportFile};
use super::{ApplyArgs, ExportArgs, LiveArgs, PlanArgs};
use crate::apply::{ApplyEvent, ApplyOptions, ApplyReport, StepStatus};
use crate::backend;
use crate::escape::{Esc, escape_control, escape_json};
use crate::model::{DesiredState, Environment, Target};
use crate::plan::render::{self, Format};
use crate::plan::{self, Plan, PlanOptions, diff};
use crate::reconcile::{self, ReconcileOutcome};
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
    spec::load_environment(env_dir, backend::profile_of).map_err(|diagnostics| {
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
/// Plans `desired` against `live`, each endpoint in a staged rollout at its stage (without
/// reading metrics: a stage whose bake is over shows as "judging the gates").
async fn make_plan(
    desired: &DesiredState,
    live: &crate::model::LiveState,
    prune: bool,
    output: Format,
) -> Result<Plan, u8> {
    let profile = backend::profile_of(&desired.environment.target);
    let refused = |refusals: Vec<plan::Refusal>| {
        if output == Format::Json {
            let name = desired.environment.name.as_str();
            print!("{}", render::json(name, &Plan::default(), &refusals));
        }
        for r in &refusals {
            eprintln!("refused: {r}");
        }
        eprintln!("error: the plan was refused; nothing was applied");
        ERROR
    };
    let prepared = if desired.environment.rollout.is_empty() {
        None
    } else {
        Some(
            crate::rollouts::prepare(desired, live, crate::rollouts::Metrics::Skip, None)
                .await
                .map_err(refused)?,
        )
    };
    let to_plan = prepared.as_ref().map_or(desired, |p| &p.desired);
    let mut plan =
        plan::plan(to_plan, live, &plan_options(desired, prune), profile).map_err(refused)?;
    if let Some(p) = prepared {
        crate::rollouts::keep_failed_candidates(&mut plan, &p.decisions, live);
        plan.rollouts = p.views;
    }
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
    match make_plan(&desired, &live, args.prune, args.output).await {
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
    let (desired, live) = match desired_and_live(&args.env_dir, &args.live).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let name = desired.environment.name.as_str();
    let profile = backend::profile_of(&desired.environment.target);
    let diffs = diff::diff(
        &desired,
        &live,
        &plan_options(&desired, args.prune),
        profile,
    );
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

fn progress(total: usize) -> impl Fn(ApplyEvent<'_>) + Send + Sync {
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
                    StepStatus::Done(d) if d.is_empty() => {
                        writeln!(
                            err,
                            "      {} {}: done ({secs:.1}s)",
                            subject,
                            r.step.action.kind()
                        )
                    }
                    StepStatus::Done(d) => writeln!(
                        err,
                        "      {} {}: done ({secs:.1}s): {}",
                        subject,
                        r.step.action.kind(),
                        Esc(d)
                    ),
                    StepStatus::Failed(e) => writeln!(
                        err,
                        "      {} {}: FAILED ({secs:.1}s): {}",
                        subject,
                        r.step.action.kind(),
                        Esc(&e.message)
                    ),
                    StepStatus::Skipped(why) => writeln!(
                        err,
                        "      {} {}: skipped: {}",
                        subject,
                        r.step.action.kind(),
                        Esc(why)
                    ),
                    StepStatus::WouldRun => writeln!(
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
    print_report_with(report, format, &[]);
}

/// The report; in JSON with the rollouts beside the steps (`rollouts`, docs/rollouts.md).
fn print_report_with(
    report: &ApplyReport,
    format: Format,
    rollouts: &[crate::rollout::RolloutView],
) {
    if format == Format::Json {
        let mut doc = serde_json::to_value(report).expect("report serialises");
        if !rollouts.is_empty()
            && let Some(map) = doc.as_object_mut()
        {
            map.insert(
                "rollouts".into(),
                serde_json::to_value(rollouts).expect("rollouts serialise"),
            );
        }
        let text = serde_json::to_string_pretty(&doc).expect("report serialises");
        println!("{}", escape_json(&text));
        return;
    }
    let count =
        |f: fn(&StepStatus) -> bool| report.results.iter().filter(|r| f(&r.outcome)).count();
    println!(
        "{} step(s): {} done, {} failed, {} skipped{}{}",
        report.results.len(),
        count(|o| matches!(o, StepStatus::Done(_))),
        count(|o| matches!(o, StepStatus::Failed(_))),
        count(|o| matches!(o, StepStatus::Skipped(_))),
        if count(|o| matches!(o, StepStatus::WouldRun)) > 0 {
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
            if let StepStatus::Failed(e) = &r.outcome {
                println!("{}: {}", Esc(&r.step.reason), Esc(&e.message));
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

/// The backend for `desired`'s target, configured from the command's backend flags.
async fn connect(
    desired: &crate::model::DesiredState,
    env_dir: &Path,
    args: &super::BackendArgs,
) -> anyhow::Result<Box<dyn backend::Backend>> {
    let config = super::backend_config(args)?;
    backend::connect(&desired.environment, env_dir, &config).await
}

/// Re-reads live until nothing is pending, polling every `--poll-interval-max`
/// (`FLIGHTDECK_POLL_INTERVAL_MAX`, default 5 s), for at most `FLIGHTDECK_LOCK_TIMEOUT`; then
/// refuses, naming what is still busy.
async fn wait_for_other_writer(
    backend: &dyn backend::Backend,
    mut live: crate::model::LiveState,
    every: Option<std::time::Duration>,
) -> anyhow::Result<crate::model::LiveState> {
    let limit = lock_timeout()?;
    let every = every.unwrap_or(std::time::Duration::from_secs(5));
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

/// A backend and the state file lock held for as long as it is in use.
struct Locked {
    backend: Box<dyn backend::Backend>,
    _lock: Option<backend::state_lock::StateLock>,
}

#[async_trait::async_trait]
impl backend::Backend for Locked {
    fn name(&self) -> &'static str {
        self.backend.name()
    }
    async fn read_live(&self) -> Result<crate::model::LiveState, backend::BackendError> {
        self.backend.read_live().await
    }
    async fn execute(
        &self,
        step: &crate::plan::Step,
    ) -> Result<backend::StepDetail, backend::BackendError> {
        self.backend.execute(step).await
    }
    fn step_timeout(&self, step: &crate::plan::Step) -> std::time::Duration {
        self.backend.step_timeout(step)
    }
    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&crate::rollout::RolloutRecord>,
    ) -> Result<(), backend::BackendError> {
        self.backend.write_rollout(endpoint, record).await
    }
}

/// Prints one progress line per step event.
type Progress = Box<dyn Fn(ApplyEvent<'_>) + Send + Sync>;

/// `flightdeck apply`'s edges: connect (and, for a state file, lock), wait for other writers
/// (Azure ML), print the plan, watch for Ctrl-C while steps run, print progress.
struct ApplyPlatform<'a> {
    args: &'a ApplyArgs,
    /// The environment's name, for the plan's heading.
    name: String,
    /// The target is Azure ML and this is no dry run: wait for other writers before planning.
    settle_azureml: AtomicBool,
    cancel: CancellationToken,
    interrupts: std::sync::Mutex<Option<Interrupts>>,
    /// Progress lines of the current round's plan (each round of a rollout has its own).
    progress: std::sync::Mutex<Option<Progress>>,
    /// The rollout metrics source, opened once for all of this apply's rounds.
    metrics: tokio::sync::OnceCell<Option<Arc<dyn crate::metrics::MetricsProvider>>>,
}

#[async_trait::async_trait]
impl reconcile::Platform for ApplyPlatform<'_> {
    async fn metrics(
        &self,
        environment: &Environment,
    ) -> anyhow::Result<Option<Arc<dyn crate::metrics::MetricsProvider>>> {
        self.metrics
            .get_or_try_init(|| async {
                let config = super::backend_config(&self.args.backend)?;
                backend::metrics_provider(environment, &config, &|name| std::env::var(name).ok())
            })
            .await
            .cloned()
    }

    async fn connect(
        &self,
        environment: &Environment,
    ) -> anyhow::Result<Arc<dyn backend::Backend>> {
        let args = self.args;
        let config = super::backend_config(&args.backend)?;
        let backend = backend::connect(environment, &args.env_dir, &config).await?;
        // Connected first: for a state file, that checks its path stays inside the environment
        // (no symlinked directory leads out), so the lock beside it is inside too.
        // state_file: one apply at a time, held while the backend is in use (README "apply").
        let lock = match &environment.target {
            Target::StateFile { path } if !args.dry_run => {
                let limit = lock_timeout()?;
                let state = args.env_dir.join(path);
                let waiting = |lock: &Path| {
                    eprintln!(
                        "waiting for another apply on this environment (lock {})",
                        lock.display()
                    )
                };
                Some(backend::state_lock::acquire(&state, limit, waiting).await?)
            }
            _ => None,
        };
        self.settle_azureml.store(
            matches!(environment.target, Target::AzureMl(_)) && !args.dry_run,
            Relaxed,
        );
        Ok(Arc::new(Locked {
            backend,
            _lock: lock,
        }))
    }

    /// Azure ML: an endpoint or deployment in a non-terminal state means another writer (or an
    /// interrupted apply's operation) is at work. Wait for it, re-read, then plan — never plan
    /// against a state that is still moving (docs/azureml.md "Concurrent applies").
    async fn settle(
        &self,
        backend: &dyn backend::Backend,
        live: crate::model::LiveState,
    ) -> anyhow::Result<crate::model::LiveState> {
        if self.settle_azureml.load(Relaxed) {
            wait_for_other_writer(
                backend,
                live,
                self.args.backend.settings().poll_interval_max,
            )
            .await
        } else {
            Ok(live)
        }
    }

    fn planned(&self, p: &Plan) -> Result<(), String> {
        // A rollout's rounds without steps (baking, judging) show only their `rollout:` line.
        let quiet = p.steps.is_empty() && !p.rollouts.is_empty();
        if self.args.output == Format::Text && !quiet {
            let steps = Plan {
                rollouts: Vec::new(),
                ..p.clone()
            };
            print!("{}", render::text(&self.name, &steps));
        }
        if p.is_empty() {
            return Ok(());
        }
        if let Ok(mut slot) = self.progress.lock() {
            *slot = Some(Box::new(progress(p.steps.len())));
        }
        let interrupts = Interrupts::watch(self.cancel.clone())
            .map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
        if let Ok(mut slot) = self.interrupts.lock() {
            *slot = Some(interrupts);
        }
        Ok(())
    }

    fn progress(&self, event: ApplyEvent<'_>) {
        if let Ok(slot) = self.progress.lock()
            && let Some(progress) = slot.as_ref()
        {
            progress(event);
        }
    }
}

pub async fn apply(args: &ApplyArgs) -> u8 {
    let desired = match load(&args.env_dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let cancel = CancellationToken::new();
    let platform = ApplyPlatform {
        args,
        name: desired.environment.name.clone(),
        settle_azureml: AtomicBool::new(false),
        cancel: cancel.clone(),
        interrupts: std::sync::Mutex::new(None),
        progress: std::sync::Mutex::new(None),
        metrics: tokio::sync::OnceCell::new(),
    };
    let request = reconcile::Request {
        prune: args.prune,
        revision_changed: true,
        may_apply: true,
        apply: ApplyOptions {
            concurrency: usize::from(args.concurrency),
            dry_run: args.dry_run,
        },
        revision: None,
    };
    // A staged rollout is driven here in the foreground: reconcile, show where each rollout
    // stands, wait until the next stage or gate is due, again, until no rollout has anything
    // left to do. Without rollouts this is one reconcile.
    let mut rollouts: Vec<crate::rollout::RolloutView>;
    let mut outcome;
    loop {
        outcome =
            reconcile::reconcile_once(Ok(desired.clone()), &platform, &request, &cancel).await;
        rollouts = outcome
            .plan()
            .map(|p| p.rollouts.clone())
            .unwrap_or_default();
        show_rollouts(&rollouts);
        let moving = rollouts.iter().any(|r| !r.is_failed() && !r.is_paused());
        let applied = matches!(outcome, ReconcileOutcome::Applied { .. });
        if args.dry_run || !applied || !moving || cancel.is_cancelled() {
            break;
        }
        if args.output != Format::Json
            && let ReconcileOutcome::Applied { report, .. } = &outcome
            && !report.results.is_empty()
        {
            print_report(report, args.output);
        }
        let wait = rollouts
            .iter()
            .filter_map(|r| r.next_check_seconds)
            .min()
            .map_or(Duration::ZERO, |s| {
                Duration::from_secs(s).min(ROLLOUT_DISPLAY_INTERVAL)
            });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => break,
        }
    }
    // Stop watching for Ctrl-C before the report, as before the apply.
    drop(platform.interrupts.lock().ok().and_then(|mut i| i.take()));
    let code = render_apply(&outcome, &desired, args.output, &rollouts);
    if code != OK {
        code
    } else if rollouts.iter().any(|r| r.is_failed()) {
        HELD
    } else if rollouts.iter().any(|r| r.is_paused()) {
        PAUSED
    } else {
        OK
    }
}

/// How often `apply` shows a rollout's progress while it bakes.
const ROLLOUT_DISPLAY_INTERVAL: Duration = Duration::from_secs(15);

/// One line per rollout, and one per gate verdict, on stderr.
fn show_rollouts(rollouts: &[crate::rollout::RolloutView]) {
    for r in rollouts {
        eprintln!("rollout: {}: {}", Esc(&r.endpoint), Esc(&r.message));
        for v in &r.verdicts {
            eprintln!(
                "  gate {}: {} [{}]",
                Esc(&v.gate),
                Esc(&v.describe()),
                match v.result {
                    crate::rollout::GateResult::Pass => "pass",
                    crate::rollout::GateResult::Fail => "FAIL",
                    crate::rollout::GateResult::NoData => "no data",
                }
            );
        }
    }
}

/// Prints an apply's outcome and returns its exit code.
fn render_apply(
    outcome: &ReconcileOutcome,
    desired: &DesiredState,
    output: Format,
    rollouts: &[crate::rollout::RolloutView],
) -> u8 {
    let print_report =
        |report: &ApplyReport, output: Format| print_report_with(report, output, rollouts);
    match outcome {
        ReconcileOutcome::InSync => {
            if output == Format::Json {
                print_report(&ApplyReport::default(), output);
            }
            OK
        }
        ReconcileOutcome::Invalid(invalid) => fail(invalid),
        ReconcileOutcome::BackendFailed(failure) => fail(failure),
        ReconcileOutcome::Aborted(why) => fail(why),
        ReconcileOutcome::Refused(refusals) => {
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
        // `apply` always applies: it neither plans only nor reports drift.
        ReconcileOutcome::DriftReported { .. } | ReconcileOutcome::Planned { .. } => OK,
        ReconcileOutcome::Applied { report, .. } => {
            print_report(report, output);
            OK
        }
        ReconcileOutcome::ApplyFailed { report, .. } => {
            print_report(report, output);
            CHANGES
        }
        ReconcileOutcome::Interrupted { report, .. } => {
            print_report(report, output);
            INTERRUPTED
        }
    }
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
