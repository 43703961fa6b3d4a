//! The page's promises, checked on the HTML itself: every value escaped, no secret, a word
//! beside every colour, links only through the template and only for commit ids.

use super::*;
use crate::dashboard::board::{DeploymentBar, EndpointPanel, Hub, Reconciled};
use crate::rollout::RolloutView;

const HOSTILE: &str = "<script>alert(1)</script>\"' onmouseover=\"x\u{1b}[31m";

fn view(
    endpoint: &str,
    state: &str,
    stage: Option<usize>,
    verdict: serde_json::Value,
) -> RolloutView {
    serde_json::from_value(serde_json::json!({
        "endpoint": endpoint,
        "state": state,
        "stage": stage,
        "stages": 3,
        "candidate": HOSTILE,
        "declared": {"green": 100},
        "traffic": {"blue": 90, HOSTILE: 10},
        "message": format!("stage 1/3: routing {HOSTILE}"),
        "next_check_seconds": 4,
        "verdicts": [verdict],
    }))
    .expect("a rollout view")
}

fn verdict(observed: f64, threshold: f64, result: &str) -> serde_json::Value {
    serde_json::json!({
        "gate": format!("error_rate < 2% {HOSTILE}"),
        "signal": "error_rate",
        "comparison": "below",
        "query": "q",
        "window": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:01:00Z"},
        "observed": observed,
        "threshold": threshold,
        "result": result,
    })
}

/// A board with hostile names everywhere a name can come from Git or the platform.
fn hostile_board(commit_url: Option<&str>) -> Hub {
    let hub = Hub::new(HOSTILE.into(), commit_url.map(str::to_string));
    hub.observed(
        HOSTILE,
        vec![EndpointPanel {
            name: HOSTILE.into(),
            deployments: vec![
                DeploymentBar {
                    name: HOSTILE.into(),
                    weight: 10,
                    mirror: 5,
                    state: "failed",
                    detail: Some(format!("provisioning failed: {HOSTILE}")),
                },
                DeploymentBar {
                    name: "blue".into(),
                    weight: 90,
                    mirror: 0,
                    state: "ready",
                    detail: None,
                },
            ],
            scoring: vec![(HOSTILE.into(), 0.25)],
        }],
    );
    for (observed, result) in [(0.01, "pass"), (0.05, "fail")] {
        hub.reconciled(Reconciled {
            env: HOSTILE,
            revision: "<b>not-a-sha</b>",
            applied: true,
            result: "applied",
            error: Some(&format!("apply failed: {HOSTILE}")),
            rollouts: &[view(
                HOSTILE,
                "baking",
                Some(1),
                verdict(observed, 0.02, result),
            )],
            steps: vec![(format!("{HOSTILE}: set traffic"), true)],
        });
    }
    hub
}

fn now() -> chrono::DateTime<chrono::Utc> {
    "2026-12-01T10:02:00Z".parse().unwrap()
}

#[test]
fn every_hostile_value_is_escaped_and_no_control_character_reaches_the_page() {
    let page = hostile_board(None).read(|b| page(b, now()));
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("\" onmouseover"), "{page}");
    assert!(!page.contains('\u{1b}'), "a raw ESC reached the page");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; onmouseover=&quot;x"));
    // The only script is the embedded one, loaded from this server.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(page.contains("<script src=\"/dashboard/app.js\"></script>"));
}

#[test]
fn a_commit_links_through_the_template_only_when_it_is_a_commit_id() {
    let hub = hostile_board(Some("https://git.example.com/o/r/commit/{sha}"));
    hub.fetched("0123456789abcdef0123456789abcdef01234567", true);
    let page = hub.read(|b| page(b, now()));
    assert!(
        page.contains("<a href=\"https://git.example.com/o/r/commit/0123456789abcdef0123456789abcdef01234567\"><code>0123456789ab</code></a>"),
        "{page}"
    );
    assert!(
        !page.contains("commit/<b>"),
        "a revision that is no commit id is not linked"
    );
    assert!(page.contains("<code>&lt;b&gt;not-a-sha</code>"), "{page}");
    let plain = hostile_board(None);
    plain.fetched("0123456789abcdef0123456789abcdef01234567", true);
    assert!(
        !plain.read(|b| super::page(b, now())).contains("<a "),
        "no template, no links"
    );
}

#[test]
fn every_colour_has_its_meaning_written_beside_it() {
    let page = hostile_board(None).read(|b| page(b, now()));
    // Badges: coloured by class, each with its word.
    for part in page.split("<span class=\"badge ").skip(1) {
        let text = part
            .split_once('>')
            .unwrap()
            .1
            .split("</span>")
            .next()
            .unwrap();
        assert!(!text.trim().is_empty(), "a badge without text: {part}");
    }
    // Bars: each coloured width repeated as a number.
    assert!(page.contains("style=\"width:10%\"") && page.contains("10% live · 5% mirror"));
    assert!(page.contains("style=\"width:90%\"") && page.contains("90% live"));
    // Charts: the threshold is written, the verdict is a word.
    assert!(page.contains("threshold 0.02"), "{page}");
    assert!(
        page.contains("<span class=\"badge bad\">fail</span>"),
        "{page}"
    );
    assert!(
        page.contains("role=\"img\" aria-label=\"gate error_rate &lt; 2%"),
        "{page}"
    );
    // The stage timeline says which stage is which.
    assert!(
        page.contains("stage 1/3 <span>current</span>")
            && page.contains("stage 3/3 <span>next</span>")
    );
    assert!(page.contains("bake remaining: <strong>4 s</strong>"));
}

#[test]
fn a_gate_chart_plots_each_reading_of_the_stage_against_the_threshold() {
    let page = hostile_board(None).read(|b| page(b, now()));
    let figure = page
        .split("<figure class=\"gate\"")
        .nth(1)
        .expect("a gate chart");
    assert_eq!(
        figure.matches("<circle").count(),
        2,
        "two readings: {figure}"
    );
    assert!(figure.contains("<line class=\"threshold\""), "{figure}");
    assert!(
        figure.contains("data-verdict=\"fail\""),
        "the newest verdict"
    );
}

#[test]
fn the_page_shows_the_held_state_with_its_reason_and_the_last_error() {
    let hub = Hub::default();
    let mut held = view("my-endpoint", "held", None, verdict(0.07, 0.02, "fail"));
    held.message = "desired green 100, held at blue 100: gate error_rate failed".into();
    hub.reconciled(Reconciled {
        env: "environments/prod",
        revision: "abc",
        applied: false,
        result: "failed",
        error: Some("apply failed: step 2"),
        rollouts: &[held],
        steps: vec![],
    });
    let page = hub.read(|b| page(b, now()));
    assert!(page.contains("<span class=\"badge bad\">held</span> desired green 100, held at blue 100: gate error_rate failed"), "{page}");
    assert!(
        page.contains("<pre class=\"error\">apply failed: step 2</pre>"),
        "{page}"
    );
    assert!(page.contains("stage 1/3 <span>stopped</span>"), "{page}");
    assert!(
        page.contains("<span class=\"badge bad\">held</span> <span class=\"envname\">"),
        "an event says it was held: {page}"
    );
}

#[test]
fn the_page_is_read_only_and_semantic() {
    let page = hostile_board(None).read(|b| page(b, now()));
    for tag in [
        "<form", "<button", "<input", "method=", "onclick", "onerror",
    ] {
        assert!(!page.contains(tag), "{tag} in the page");
    }
    for tag in [
        "<main id=\"board\">",
        "<header>",
        "<h1>",
        "<h2>",
        "<section",
        "<article",
        "<dl",
        "<ol",
        "<time datetime=",
    ] {
        assert!(page.contains(tag), "{tag} missing");
    }
    assert!(page.contains("<meta name=\"viewport\""), "narrow windows");
    assert!(CSS.contains("@media (max-width"), "narrow-window CSS");
    for forbidden in ["fetch(\"POST", "method: \"POST\"", "method:'POST'"] {
        assert!(!JS.contains(forbidden), "the script only reads");
    }
}

#[test]
fn the_fragment_is_what_the_page_holds_in_main() {
    let hub = hostile_board(None);
    let (page, fragment) = hub.read(|b| (page(b, now()), fragment(b, now())));
    assert!(page.contains(&format!("<main id=\"board\">\n{fragment}</main>")));
}

#[test]
fn past_the_card_limit_steady_endpoints_are_rows_and_those_worth_a_look_stay_cards() {
    let hub = Hub::default();
    let panel = |name: String, state: &'static str| EndpointPanel {
        name,
        deployments: vec![DeploymentBar {
            name: "blue".into(),
            weight: 100,
            mirror: 0,
            state,
            detail: None,
        }],
        scoring: vec![],
    };
    let mut panels: Vec<EndpointPanel> = (0..CARDS)
        .map(|i| panel(format!("ep-{i:03}"), "ready"))
        .collect();
    panels.push(panel(HOSTILE.into(), "ready"));
    panels.push(panel("broken".into(), "failed"));
    hub.observed("env", panels);
    let page = hub.read(|b| page(b, now()));
    assert!(
        page.contains(&format!("<caption>{} steady endpoints", CARDS + 1)),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>ep-000</td><td>blue 100%</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>&lt;script&gt;"),
        "rows are escaped too"
    );
    assert!(
        page.contains("<article class=\"endpoint\" data-endpoint=\"broken\">"),
        "a failed one stays a card"
    );
    assert_eq!(page.matches("<article").count(), 1, "{page}");
}

#[test]
fn an_unknown_commit_says_so_instead_of_showing_an_empty_code() {
    let hub = Hub::default();
    hub.reconciled(Reconciled {
        env: "env",
        revision: "",
        applied: false,
        result: "out_of_sync",
        error: None,
        rollouts: &[],
        steps: vec![],
    });
    let page = hub.read(|b| page(b, now()));
    assert!(
        page.contains("<dt>source commit</dt><dd>none known</dd>"),
        "{page}"
    );
    assert!(!page.contains("<code></code>"), "{page}");
}

fn panel(name: &str, weight: u32) -> EndpointPanel {
    EndpointPanel {
        name: name.into(),
        deployments: vec![DeploymentBar {
            name: "blue".into(),
            weight,
            mirror: 0,
            state: "ready",
            detail: None,
        }],
        scoring: vec![],
    }
}

fn shown(hub: &Hub) -> Vec<(String, u32)> {
    hub.read(|b| {
        b.envs["env"]
            .endpoints
            .iter()
            .map(|e| (e.name.clone(), e.deployments[0].weight))
            .collect()
    })
}

#[test]
fn a_targeted_read_replaces_only_the_endpoints_it_read_and_drops_the_ones_gone() {
    let hub = Hub::default();
    hub.observed("env", vec![panel("a", 100), panel("b", 100)]);
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    // A tick that read nothing (nothing changed) leaves the board as it was.
    hub.observed_some("env", vec![], &names(&[]));
    assert_eq!(shown(&hub), [("a".into(), 100), ("b".into(), 100)]);
    hub.observed_some("env", vec![panel("a", 50)], &names(&["a"]));
    assert_eq!(shown(&hub), [("a".into(), 50), ("b".into(), 100)]);
    // b was read and is not live any more.
    hub.observed_some("env", vec![], &names(&["b"]));
    assert_eq!(shown(&hub), [("a".into(), 50)]);
    // A full read replaces everything.
    hub.observed("env", vec![panel("c", 100)]);
    assert_eq!(shown(&hub), [("c".into(), 100)]);
}
