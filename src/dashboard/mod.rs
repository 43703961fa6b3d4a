//! The live, read-only rollout dashboard (issue #15): per environment the commits, sync and
//! held state; per endpoint a traffic bar per deployment; for a rollout in progress its stages,
//! bake and gate readings; recent events. Served at `/` of the agent's listener, fed by the
//! agent's typed events (`agent::events`), or by `flightdeck dashboard ENV_DIR`, which polls the
//! platform itself (`local`).
//!
//! - [`board`]: what is shown, the typed updates that change it, and the bounded broadcast;
//! - [`render`] and [`chart`]: escaped HTML and inline SVG, assets embedded with `include_str!`;
//! - [`http`]: the `GET` routes, server-sent events, optional token;
//! - [`local`]: the poller behind `flightdeck dashboard`.

pub mod board;
pub mod chart;
pub mod http;
pub mod local;
pub mod render;
pub mod scoring;

pub use board::{Board, Hub};
pub use http::{DashboardContext, routes};

/// Checks a `--commit-url` template: an http(s) URL with `{sha}` where the commit id goes.
pub fn commit_url_template(text: &str) -> Result<String, String> {
    let probe = text.replace("{sha}", "0");
    let ok = text.contains("{sha}")
        && url::Url::parse(&probe)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "commit-url {text:?}: expected an http(s) URL with {{sha}}, e.g. https://github.com/o/r/commit/{{sha}}"
        ))
    }
}
