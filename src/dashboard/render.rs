//! The dashboard as server-rendered HTML: the whole page (`/`) and the fragment inside `<main>`
//! that the page's script fetches again on each pushed update (`/dashboard/fragment`). Every
//! value goes through [`esc`] (HTML-escaped, control characters shown as `\u{..}`); every colour
//! has its text beside it (the percentage, the state word, the verdict). The page needs no
//! script: without one it is a snapshot of the moment it was served.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::board::{Board, DeploymentBar, EndpointPanel, EnvPanel, EventLine};
use super::chart;
use crate::rollout::RolloutView;

/// Served as `/dashboard/app.css` and `/dashboard/app.js`, so the page's Content-Security-Policy
/// can forbid inline scripts: a value that escaped escaping still could not run.
pub const CSS: &str = include_str!("assets/dashboard.css");
pub const JS: &str = include_str!("assets/dashboard.js");

/// Appends `s` escaped for HTML text and double-quoted attributes.
pub fn esc(out: &mut String, s: &str) {
    // Most values (names, weights, commit ids) are plain ASCII with nothing to escape.
    let plain = s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\''));
    if plain {
        out.push_str(s);
        return;
    }
    for c in crate::escape::escape_control(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    esc(&mut out, s);
    out
}

/// The whole page: head, the fragment, the script that keeps it live.
pub fn page(board: &Board, now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(estimate(board));
    out.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>flightdeck</title>\n\
         <link rel=\"stylesheet\" href=\"/dashboard/app.css\">\n",
    );
    out.push_str("</head>\n<body>\n<header>\n<h1>flightdeck</h1>\n<p>");
    if !board.source.is_empty() {
        out.push_str("watching <code>");
        esc(&mut out, &board.source);
        out.push_str("</code> · ");
    }
    out.push_str("<span id=\"live\" role=\"status\">static snapshot</span></p>\n</header>\n");
    out.push_str("<main id=\"board\">\n");
    fragment_into(&mut out, board, now);
    out.push_str("</main>\n<script src=\"/dashboard/app.js\"></script>\n</body>\n</html>\n");
    out
}

/// What `<main>` holds; the script swaps it in on each update.
pub fn fragment(board: &Board, now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(estimate(board));
    fragment_into(&mut out, board, now);
    out
}

fn fragment_into(out: &mut String, board: &Board, now: DateTime<Utc>) {
    let _ = write!(
        out,
        "<p class=\"meta\" data-version=\"{}\">as of <time datetime=\"{}\">{}</time>",
        board.version,
        now.format("%Y-%m-%dT%H:%M:%SZ"),
        now.format("%H:%M:%S UTC")
    );
    if let Some(rev) = &board.revision {
        out.push_str(" · source at ");
        commit(out, board, rev);
    }
    out.push_str("</p>\n");
    if board.envs.is_empty() {
        out.push_str("<p>No environment reconciled yet.</p>\n");
    }
    for (name, env) in &board.envs {
        env_section(out, board, name, env);
    }
    events(out, board);
}

fn env_section(out: &mut String, board: &Board, name: &str, env: &EnvPanel) {
    out.push_str("<section class=\"env\" data-env=\"");
    esc(out, name);
    out.push_str("\">\n<h2>");
    esc(out, name);
    out.push_str("</h2>\n<dl class=\"facts\">\n<dt>source commit</dt><dd>");
    opt_commit(out, board, env.commit.as_deref());
    out.push_str("</dd>\n<dt>applied commit</dt><dd>");
    opt_commit(out, board, env.applied_commit.as_deref());
    out.push_str("</dd>\n<dt>sync</dt><dd>");
    let sync = env.sync.as_deref().unwrap_or("not yet");
    let class = match sync {
        "in_sync" | "applied" => "ok",
        "planned" | "drift_reported" | "not yet" | "rolling_out" | "out_of_sync" => "warn",
        _ => "bad",
    };
    badge(out, class, sync);
    if env.drift {
        out.push(' ');
        badge(out, "warn", "drift");
    }
    out.push_str("</dd>\n<dt>rollout</dt><dd>");
    match (env.failed(), env.rollouts.iter().find(|r| r.is_paused())) {
        (Some(failed), _) => {
            badge(
                out,
                "bad",
                if failed.state == "held" {
                    "held"
                } else {
                    "rolling back"
                },
            );
            out.push(' ');
            esc(out, &failed.message);
        }
        (None, Some(paused)) => {
            badge(out, "warn", "paused");
            out.push(' ');
            esc(out, &paused.message);
        }
        (None, None) if env.rollouts.is_empty() => out.push_str("none in progress"),
        (None, None) => badge(out, "ok", "progressing"),
    }
    out.push_str("</dd>\n<dt>last error</dt><dd>");
    match &env.last_error {
        Some(e) => {
            out.push_str("<pre class=\"error\">");
            esc(out, e);
            out.push_str("</pre>");
        }
        None => out.push_str("none"),
    }
    out.push_str("</dd>\n</dl>\n");
    for view in &env.rollouts {
        rollout(out, env, view);
    }
    if !env.endpoints.is_empty() {
        // Past CARDS endpoints, only those worth a look get a card; the steady rest are rows.
        let many = env.endpoints.len() > CARDS;
        let worth_a_look = |e: &&EndpointPanel| {
            !many
                || env.rollouts.iter().any(|r| r.endpoint == e.name)
                || e.deployments
                    .iter()
                    .any(|d| d.state != "ready" || d.mirror > 0)
        };
        out.push_str("<h3>Endpoints</h3>\n<div class=\"endpoints\">\n");
        for e in env.endpoints.iter().filter(worth_a_look) {
            endpoint(out, e);
        }
        out.push_str("</div>\n");
        let steady: Vec<&EndpointPanel> =
            env.endpoints.iter().filter(|e| !worth_a_look(e)).collect();
        if !steady.is_empty() {
            steady_table(out, &steady);
        }
    }
    out.push_str("</section>\n");
}

/// Endpoints shown as cards before the steady ones become table rows.
pub const CARDS: usize = 24;

/// One row per steady endpoint (every deployment ready, no mirror, no rollout): its split as
/// text.
fn steady_table(out: &mut String, steady: &[&EndpointPanel]) {
    let _ = write!(
        out,
        "<table class=\"steady\">\n<caption>{} steady endpoints (all deployments ready)</caption>\n\
         <thead><tr><th scope=\"col\">endpoint</th><th scope=\"col\">live traffic</th></tr></thead>\n<tbody>\n",
        steady.len()
    );
    for e in steady {
        out.push_str("<tr><td>");
        esc(out, &e.name);
        out.push_str("</td><td>");
        let mut first = true;
        for d in e.deployments.iter().filter(|d| d.weight > 0) {
            if !first {
                out.push_str(" · ");
            }
            first = false;
            esc(out, &d.name);
            let _ = write!(out, " {}%", d.weight);
        }
        if first {
            out.push_str("no traffic");
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// What a page of `board` about takes, so the text is allocated once, not doubled as it grows.
fn estimate(board: &Board) -> usize {
    let endpoints: usize = board.envs.values().map(|e| e.endpoints.len()).sum();
    let rollouts: usize = board.envs.values().map(|e| e.rollouts.len()).sum();
    4096 + endpoints * 128 + rollouts * 8192 + board.events.len() * 320
}

fn badge(out: &mut String, class: &str, text: &str) {
    let _ = write!(out, "<span class=\"badge {class}\">");
    esc(out, text);
    out.push_str("</span>");
}

fn endpoint(out: &mut String, e: &EndpointPanel) {
    out.push_str("<article class=\"endpoint\" data-endpoint=\"");
    esc(out, &e.name);
    out.push_str("\">\n<h4>");
    esc(out, &e.name);
    out.push_str("</h4>\n<ul class=\"bars\">\n");
    for d in &e.deployments {
        bar(out, d);
    }
    out.push_str("</ul>\n");
    if !e.scoring.is_empty() {
        out.push_str("<p class=\"scoring\">scoring share, last minutes: ");
        for (i, (name, share)) in e.scoring.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str("<span data-scoring=\"");
            esc(out, name);
            let _ = write!(out, "\">");
            esc(out, name);
            let _ = write!(out, " {:.0}%</span>", share * 100.0);
        }
        out.push_str("</p>\n");
    }
    out.push_str("</article>\n");
}

fn bar(out: &mut String, d: &DeploymentBar) {
    let (w, m) = (d.weight.min(100), d.mirror.min(100));
    out.push_str("<li data-deployment=\"");
    esc(out, &d.name);
    let _ = write!(
        out,
        "\" data-weight=\"{w}\" data-mirror=\"{m}\"><span class=\"dep\">"
    );
    esc(out, &d.name);
    let _ = write!(
        out,
        "</span><span class=\"bar\" aria-hidden=\"true\"><span class=\"live\" style=\"width:{w}%\"></span>"
    );
    if m > 0 {
        let _ = write!(out, "<span class=\"mirror\" style=\"width:{m}%\"></span>");
    }
    let _ = write!(out, "</span><span class=\"info\">{w}% live");
    if m > 0 {
        let _ = write!(out, " · {m}% mirror");
    }
    out.push(' ');
    let class = match d.state {
        "ready" => "ok",
        "provisioning" => "warn",
        _ => "bad",
    };
    badge(out, class, d.state);
    if let Some(detail) = &d.detail {
        out.push_str(" <small>");
        esc(out, detail);
        out.push_str("</small>");
    }
    out.push_str("</span></li>\n");
}

fn rollout(out: &mut String, env: &EnvPanel, view: &RolloutView) {
    out.push_str("<section class=\"rollout\" data-rollout=\"");
    esc(out, &view.endpoint);
    let _ = write!(
        out,
        "\" data-state=\"{}\" data-stage=\"{}\">\n<h3>Rollout of ",
        escaped(&view.state),
        view.stage.map(|s| s.to_string()).unwrap_or_default()
    );
    esc(out, &view.endpoint);
    if let Some(c) = &view.candidate {
        out.push_str(" to <code>");
        esc(out, c);
        out.push_str("</code>");
    }
    out.push_str("</h3>\n<p class=\"message\">");
    esc(out, &view.message);
    out.push_str("</p>\n<ol class=\"stages\" aria-label=\"stages\">\n");
    for stage in 1..=view.stages {
        let (class, word) = match view.stage {
            _ if view.is_failed() => ("bad", "stopped"),
            Some(at) if stage < at => ("ok", "done"),
            Some(at) if stage == at => ("now", "current"),
            _ => ("next", "next"),
        };
        let _ = writeln!(
            out,
            "<li class=\"{class}\">stage {stage}/{} <span>{word}</span></li>",
            view.stages
        );
    }
    out.push_str("</ol>\n<p>");
    match (view.state.as_str(), view.next_check_seconds) {
        ("baking", Some(s)) => {
            let _ = write!(out, "bake remaining: <strong>{s} s</strong>");
        }
        (_, Some(s)) => {
            let _ = write!(out, "next look in {s} s");
        }
        ("paused" | "held", None) => out.push_str("waiting for a person or for Git"),
        (_, None) => out.push_str("moving traffic"),
    }
    out.push_str("</p>\n");
    for g in env.gates.iter().filter(|g| g.endpoint == view.endpoint) {
        chart::gate(out, g);
    }
    out.push_str("</section>\n");
}

fn events(out: &mut String, board: &Board) {
    out.push_str("<section class=\"events\">\n<h2>Recent events</h2>\n");
    if board.events.is_empty() {
        out.push_str("<p>None yet.</p>\n");
    } else {
        out.push_str("<ol>\n");
        for e in &board.events {
            event(out, board, e);
        }
        out.push_str("</ol>\n");
    }
    out.push_str("</section>\n");
}

fn event(out: &mut String, board: &Board, e: &EventLine) {
    let class = match e.kind {
        "step failed" | "rollback" | "held" | "error" => "bad",
        _ => "ok",
    };
    let _ = write!(
        out,
        "<li><time datetime=\"{}\">{}</time> ",
        e.at.format("%Y-%m-%dT%H:%M:%SZ"),
        e.at.format("%H:%M:%S")
    );
    badge(out, class, e.kind);
    if !e.env.is_empty() {
        out.push_str(" <span class=\"envname\">");
        esc(out, &e.env);
        out.push_str("</span>");
    }
    out.push(' ');
    esc(out, &e.text);
    if let Some(c) = &e.commit {
        out.push_str(" · ");
        commit(out, board, c);
    }
    out.push_str("</li>\n");
}

fn opt_commit(out: &mut String, board: &Board, sha: Option<&str>) {
    match sha.filter(|s| !s.is_empty()) {
        Some(sha) => commit(out, board, sha),
        None => out.push_str("none known"),
    }
}

/// A commit as a link through the template, or plain text. Only a hexadecimal id is put into
/// a link: a revision read back from the platform (a record's tag) could be anything.
fn commit(out: &mut String, board: &Board, sha: &str) {
    let short: String = sha.chars().take(12).collect();
    let linkable = !sha.is_empty() && sha.len() <= 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    match &board.commit_url {
        Some(template) if linkable => {
            out.push_str("<a href=\"");
            esc(out, &template.replace("{sha}", sha));
            out.push_str("\"><code>");
            esc(out, &short);
            out.push_str("</code></a>");
        }
        _ => {
            out.push_str("<code>");
            esc(out, &short);
            out.push_str("</code>");
        }
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
