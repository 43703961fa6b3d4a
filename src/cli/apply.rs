//! `flightdeck apply`: connect (and, for a state file, lock), wait for other writers, plan,
//! apply with progress lines, and, for staged rollouts, go round until no rollout has anything
//! left to do; then the report and the exit code.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ApplyArgs;
use super::commands::{CHANGES, ERROR, HELD, OK, PAUSED, fail, load};
use super::interrupt::{INTERRUPTED, Interrupts};
use crate::apply::{ApplyEvent, ApplyOptions, ApplyReport, StepStatus};
use crate::backend;
use crate::escape::{Esc, escape_json};
use crate::model::{DesiredState, Environment, Target};
use crate::plan::render::{self, Format};
use crate::plan::{self, Plan};
use crate::reconcile::{self, ReconcileOutcome};

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
        only: None,
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
pub(super) fn show_rollouts(rollouts: &[crate::rollout::RolloutView]) {
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
