//! Renders plans for people (text, markdown for PR comments) and machines (JSON, documented in
//! docs/plan-json.md).

use std::fmt::Write;

use serde::Serialize;

use super::{Action, Note, Pending, Plan, Refusal, Step};
use crate::model::weights_display;

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
        let _ = writeln!(out, "{environment}: no changes");
    } else if plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "{environment}: no steps, {} pending",
            plan.pending.len()
        );
    } else {
        let endpoints = plan.by_endpoint().len();
        let _ = writeln!(
            out,
            "{environment}: {} step{} on {endpoints} endpoint{}",
            plan.steps.len(),
            plural(plan.steps.len()),
            plural(endpoints)
        );
        let mut n = 0;
        for (endpoint, steps) in plan.by_endpoint() {
            let _ = writeln!(out, "\n  {endpoint}");
            for step in steps {
                n += 1;
                let _ = writeln!(
                    out,
                    "  {n:>3}. {:<19} {:<12} {}",
                    step.action.kind(),
                    step.action.deployment().unwrap_or("-"),
                    step.reason
                );
            }
        }
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {}: {}", note_subject(note), note.message);
    }
    for p in &plan.pending {
        let _ = writeln!(
            out,
            "pending: {p}: an operation is under way; plan again when it ends"
        );
    }
    out
}

pub fn markdown(environment: &str, plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(out, "### flightdeck plan: `{environment}`: no changes");
    } else if plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "### flightdeck plan: `{environment}`: {} pending",
            plan.pending.len()
        );
    } else {
        let _ = writeln!(
            out,
            "### flightdeck plan: `{environment}`: {} step{}\n",
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
                step.endpoint,
                step.action.kind(),
                step.action
                    .deployment()
                    .map(|d| format!("`{d}`"))
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
            note_subject(note),
            escape_md(&note.message)
        );
    }
    for p in &plan.pending {
        let _ = writeln!(out, "\n> **Pending** {}", escape_md(&p.to_string()));
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
    };
    serde_json::to_string_pretty(&doc).expect("plan serialises") + "\n"
}

pub fn render(format: Format, environment: &str, plan: &Plan) -> String {
    match format {
        Format::Text => text(environment, plan),
        Format::Markdown => markdown(environment, plan),
        Format::Json => json(environment, plan, &[]),
    }
}

fn note_subject(note: &Note) -> String {
    match &note.deployment {
        Some(d) => format!("{}/{d}", note.endpoint),
        None => note.endpoint.clone(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|")
}
