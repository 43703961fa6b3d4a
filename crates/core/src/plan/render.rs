//! Renders plans for people (text, markdown for PR comments) and machines (JSON, documented in
//! docs/plan-json.md). Every name, reason and note is written with its control characters
//! escaped (`crate::escape`), in JSON too.

use std::fmt::Write;

use serde::Serialize;

use super::{Action, Note, Pending, Plan, Refusal, Step};
use crate::escape::{Esc, escape_control, escape_json};
use crate::model::weights_display;
use crate::rollout::RolloutView;

/// Output formats shared by `plan` and `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// The stable JSON document of `flightdeck plan --output json`.
#[derive(Serialize)]
pub struct PlanDocument<'a> {
    /// Format version of this document.
    pub version: u32,
    pub environment: &'a str,
    pub changes: bool,
    pub steps: &'a [Step],
    pub notes: &'a [Note],
    /// Live objects still being provisioned (an operation under way); `changes` is true then.
    #[serde(skip_serializing_if = "<[Pending]>::is_empty")]
    pub pending: &'a [Pending],
    #[serde(skip_serializing_if = "<[Refusal]>::is_empty")]
    pub refusals: &'a [Refusal],
    /// Endpoints in a staged rollout, or held after one failed (docs/rollouts.md).
    #[serde(skip_serializing_if = "<[RolloutView]>::is_empty")]
    pub rollouts: &'a [RolloutView],
}

/// The extra detail shown after a step's reason in text and markdown.
fn detail(step: &Step) -> String {
    match &step.action {
        Action::SetTraffic { traffic } => weights_display(traffic),
        Action::SetMirrorTraffic { mirror_traffic } => weights_display(mirror_traffic),
        Action::ScaleDeployment { from, to, .. } => format!("{from} → {to} instances"),
        _ => String::new(),
    }
}

pub fn text(environment: &str, plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(out, "{}: no changes", Esc(environment));
    } else if plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "{}: no steps, {} pending",
            Esc(environment),
            plan.pending.len()
        );
    } else {
        let endpoints = plan.by_endpoint().len();
        let _ = writeln!(
            out,
            "{}: {} step{} on {endpoints} endpoint{}",
            Esc(environment),
            plan.steps.len(),
            plural(plan.steps.len()),
            plural(endpoints)
        );
        let mut n = 0;
        for (endpoint, steps) in plan.by_endpoint() {
            let _ = writeln!(out, "\n  {}", Esc(endpoint));
            for step in steps {
                n += 1;
                let _ = writeln!(
                    out,
                    "  {n:>3}. {:<19} {:<12} {}",
                    step.action.kind(),
                    Esc(step.action.deployment().unwrap_or("-")),
                    Esc(&step.reason)
                );
            }
        }
    }
    for note in &plan.notes {
        let _ = writeln!(
            out,
            "note: {}: {}",
            Esc(&note.subject()),
            Esc(&note.message)
        );
    }
    for p in &plan.pending {
        let _ = writeln!(
            out,
            "pending: {}: an operation is under way; plan again when it ends",
            Esc(&p.to_string())
        );
    }
    for r in &plan.rollouts {
        let _ = writeln!(out, "rollout: {}: {}", Esc(&r.endpoint), Esc(&r.message));
        for v in &r.verdicts {
            let _ = writeln!(out, "  gate: {}: {:?}", Esc(&v.describe()), v.result);
        }
    }
    out
}

pub fn markdown(environment: &str, plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "### flightdeck plan: `{}`: no changes",
            Esc(environment)
        );
    } else if plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "### flightdeck plan: `{}`: {} pending",
            Esc(environment),
            plan.pending.len()
        );
    } else {
        let _ = writeln!(
            out,
            "### flightdeck plan: `{}`: {} step{}\n",
            Esc(environment),
            plan.steps.len(),
            plural(plan.steps.len())
        );
        let _ = writeln!(
            out,
            "| # | endpoint | action | deployment | reason | detail |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for (i, step) in plan.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | `{}` | `{}` | {} | {} | {} |",
                i + 1,
                Esc(&step.endpoint),
                step.action.kind(),
                step.action
                    .deployment()
                    .map(|d| format!("`{}`", Esc(d)))
                    .unwrap_or_default(),
                escape_md(&step.reason),
                escape_md(&detail(step))
            );
        }
    }
    for note in &plan.notes {
        let _ = writeln!(
            out,
            "\n> **Note** `{}`: {}",
            Esc(&note.subject()),
            escape_md(&note.message)
        );
    }
    for p in &plan.pending {
        let _ = writeln!(out, "\n> **Pending** {}", escape_md(&p.to_string()));
    }
    for r in &plan.rollouts {
        let _ = writeln!(
            out,
            "\n> **Rollout** `{}`: {}",
            Esc(&r.endpoint),
            escape_md(&r.message)
        );
    }
    out
}

pub fn json(environment: &str, plan: &Plan, refusals: &[Refusal]) -> String {
    let doc = PlanDocument {
        version: 1,
        environment,
        changes: !plan.is_empty(),
        steps: &plan.steps,
        notes: &plan.notes,
        pending: &plan.pending,
        refusals,
        rollouts: &plan.rollouts,
    };
    let text = serde_json::to_string_pretty(&doc).expect("plan serialises");
    escape_json(&text).into_owned() + "\n"
}

pub fn render(format: Format, environment: &str, plan: &Plan) -> String {
    match format {
        Format::Text => text(environment, plan),
        Format::Markdown => markdown(environment, plan),
        Format::Json => json(environment, plan, &[]),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn escape_md(s: &str) -> String {
    escape_control(s).replace('|', "\\|")
}
