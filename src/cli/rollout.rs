//! `flightdeck rollout status|resume|abort ENV [ENDPOINT]`: the manual side of staged
//! rollouts, for a person or an approval stage (an Azure DevOps approval, a GitHub
//! environment). Each reads the progress the platform stores, so it works beside a running
//! agent or another `apply`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::BackendArgs;
use super::commands::{HELD, PAUSED};
use crate::apply::{self, ApplyOptions};
use crate::backend::{self, Backend};
use crate::escape::{Esc, escape_json};
use crate::model::{DesiredState, LiveState};
use crate::plan::render::Format as OutputFormat;
use crate::rollout::{RolloutRecord, RolloutState, RolloutView, engine};
use crate::rollouts::{self, Metrics};
use crate::{clock, plan, spec};

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
}

#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Where each staged rollout stands: stage, traffic, the last verdicts, why it paused or
    /// failed. Exit 3 when one is held after a failure, 4 when one waits for `resume`.
    Status(RolloutTarget),
    /// Let a paused rollout go on: its pause, or the failed gate it paused on, is approved.
    /// The agent (or the next `flightdeck apply`) moves it to the next stage.
    Resume(RolloutTarget),
    /// Stop a rollout now: traffic returns to the last good split in one step, and this
    /// desired state is held until Git changes.
    Abort(RolloutTarget),
}

#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// The environment directory (environments/<env>).
    pub env_dir: PathBuf,
    /// Only this endpoint (default: every endpoint with a policy).
    pub endpoint: Option<String>,
    /// Output format (`json` for scripts and approval stages).
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: OutputFormat,
    #[command(flatten)]
    pub backend: BackendArgs,
}

const OK: u8 = 0;
const ERROR: u8 = 2;

pub async fn run(args: &RolloutArgs) -> u8 {
    let target = match &args.action {
        RolloutAction::Status(t) | RolloutAction::Resume(t) | RolloutAction::Abort(t) => t,
    };
    let Ok(mut desired) =
        spec::load_environment(&target.env_dir, backend::profile_of).map_err(|d| eprintln!("{d}"))
    else {
        return ERROR;
    };
    if let Some(name) = &target.endpoint
        && !desired.endpoints.contains_key(name)
    {
        return fail(format!(
            "endpoint {name} is not declared in this environment"
        ));
    }
    let backend = match connect(&desired, target).await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let live = match backend.read_live().await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    // A slot endpoint's digest is over its resolved form, as the engine saw it.
    let profile = backend::profile_of(&desired.environment.target);
    if let Err(refusals) = crate::slots::resolve(&mut desired, &live, profile) {
        for r in &refusals {
            eprintln!("refused: {r}");
        }
        return ERROR;
    }
    match &args.action {
        RolloutAction::Status(t) => status(&desired, &live, t).await,
        RolloutAction::Resume(t) => resume(&desired, &live, backend.as_ref(), t).await,
        RolloutAction::Abort(t) => abort(&desired, &live, backend.as_ref(), t).await,
    }
}

async fn connect(desired: &DesiredState, t: &RolloutTarget) -> anyhow::Result<Box<dyn Backend>> {
    let config = super::backend_config(&t.backend)?;
    backend::connect(&desired.environment, &t.env_dir, &config).await
}

fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!(
        "error: {}",
        crate::escape::escape_control(&format!("{e:#}"))
    );
    ERROR
}

/// The endpoints the command acts on: the one named, else every declared one with a policy.
fn selected<'a>(desired: &'a DesiredState, t: &RolloutTarget) -> Vec<&'a String> {
    desired
        .endpoints
        .keys()
        .filter(|n| t.endpoint.as_ref().is_none_or(|e| e == *n))
        .filter(|n| desired.environment.rollout.policy_for(n).is_some())
        .collect()
}

#[derive(serde::Serialize)]
struct StatusLine<'a> {
    endpoint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<&'a RolloutView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a RolloutRecord>,
}

async fn status(desired: &DesiredState, live: &LiveState, t: &RolloutTarget) -> u8 {
    let prepared = match rollouts::prepare(desired, live, Metrics::Skip, None).await {
        Ok(p) => p,
        Err(refusals) => {
            for r in &refusals {
                eprintln!("refused: {r}");
            }
            return ERROR;
        }
    };
    let names = selected(desired, t);
    let lines: Vec<StatusLine<'_>> = names
        .iter()
        .map(|name| StatusLine {
            endpoint: name,
            rollout: prepared.views.iter().find(|v| &&v.endpoint == name),
            record: live.endpoints.get(*name).and_then(|e| e.rollout.as_ref()),
        })
        .collect();
    if t.output == OutputFormat::Json {
        let text = serde_json::to_string_pretty(&lines).expect("status serialises");
        println!("{}", escape_json(&text));
    } else {
        if lines.is_empty() {
            println!("no endpoint has a rollout policy");
        }
        for line in &lines {
            match (line.rollout, line.record) {
                (Some(view), _) => {
                    println!("{}: {}", Esc(line.endpoint), Esc(&view.message));
                    for v in &view.verdicts {
                        println!("  gate {}: {}", Esc(&v.gate), Esc(&v.describe()));
                    }
                }
                (None, Some(r)) => println!(
                    "{}: last rollout {} (candidate {}, {})",
                    Esc(line.endpoint),
                    r.state.name(),
                    Esc(&r.candidate),
                    r.since.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                (None, None) => println!("{}: no rollout", Esc(line.endpoint)),
            }
        }
    }
    let views: Vec<&RolloutView> = lines.iter().filter_map(|l| l.rollout).collect();
    if views.iter().any(|v| v.is_failed()) {
        HELD
    } else if views.iter().any(|v| v.is_paused()) {
        PAUSED
    } else {
        OK
    }
}

async fn resume(
    desired: &DesiredState,
    live: &LiveState,
    backend: &dyn Backend,
    t: &RolloutTarget,
) -> u8 {
    let mut resumed = 0;
    for name in selected(desired, t) {
        let Some(record) = live.endpoints.get(name).and_then(|e| e.rollout.as_ref()) else {
            continue;
        };
        if record.digest != engine::digest(&desired.endpoints[name]) {
            continue; // the pause belongs to an older desired state
        }
        let Some(next) = engine::resume(record) else {
            continue;
        };
        if let Err(e) = backend.write_rollout(name, Some(&next)).await {
            return fail(e);
        }
        resumed += 1;
        println!(
            "{}: resumed at stage {}; the agent or the next `flightdeck apply` goes on",
            Esc(name),
            next.stage + 1
        );
    }
    if resumed == 0 {
        return fail("no paused rollout to resume");
    }
    OK
}

async fn abort(
    desired: &DesiredState,
    live: &LiveState,
    backend: &dyn Backend,
    t: &RolloutTarget,
) -> u8 {
    let mut aborted = 0;
    for name in selected(desired, t) {
        let Some(record) = live.endpoints.get(name).and_then(|e| e.rollout.as_ref()) else {
            continue;
        };
        let current = record.digest == engine::digest(&desired.endpoints[name]);
        if !current
            || !matches!(
                record.state,
                RolloutState::Progressing | RolloutState::Paused
            )
        {
            continue;
        }
        let mut failed = record.clone();
        failed.state = RolloutState::Failed;
        failed.shifting = false;
        failed.since = crate::rollout::record::ceil_second(clock::now_utc());
        failed.reason = Some(format!(
            "aborted at stage {} (flightdeck rollout abort)",
            record.stage + 1
        ));
        if let Err(e) = backend.write_rollout(name, Some(&failed)).await {
            return fail(e);
        }
        aborted += 1;
    }
    if aborted == 0 {
        return fail("no rollout in progress to abort");
    }
    // Held now: plan and apply the return to the baseline at once.
    let live = match backend.read_live().await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let prepared = match rollouts::prepare(desired, &live, Metrics::Skip, None).await {
        Ok(p) => p,
        Err(refusals) => return fail(format!("{refusals:?}")),
    };
    let options = plan::PlanOptions {
        prune: false,
        ignore: desired.environment.drift.ignore.clone(),
    };
    let profile = backend::profile_of(&desired.environment.target);
    let mut plan = match plan::plan(&prepared.desired, &live, &options, profile) {
        Ok(p) => p,
        Err(refusals) => return fail(format!("the rollback was refused: {refusals:?}")),
    };
    rollouts::keep_failed_candidates(&mut plan, &prepared.decisions, &live);
    let report = apply::apply(
        &plan,
        backend,
        &ApplyOptions::default(),
        &CancellationToken::new(),
    )
    .await;
    for view in &prepared.views {
        println!("{}: {}", Esc(&view.endpoint), Esc(&view.message));
    }
    if let Some(e) = report.error() {
        return fail(format!("the rollback did not finish: {e}"));
    }
    HELD
}
