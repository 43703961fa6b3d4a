//! flightdeck's dev-only test kit: exactly one of each shared test helper.
//!
//! - [`sandbox`]: the sandbox client (token, ARM, data plane, `/_sandbox`; in-process start/stop),
//!   [`azureml_sandbox`] a real Azure ML backend over it, [`mfe_schema`] the contract's schemas.
//! - [`fake_kube`]: the fake Kubernetes API server; [`k8s_cli`] drives the CLI against it;
//!   [`fake_prometheus`] the fake Prometheus query API (scripted, or per-deployment scenarios).
//! - [`arm_fake`]: the scripted ARM fake, which fails when an expected call did not come.
//! - [`git::GitRepo`], [`eventually()`], and the agent helpers in [`agent`] (re-exported here).
//! - [`rollout_history`]: the checker over the sandbox's routing history.
//! - [`recorder`], [`hung`], [`hostile`], [`git_http`], [`openpgp`], [`git_hosting`] (the pull-request APIs).
//!
//! Used only by flightdeck's own test targets (`publish = false`).
#![allow(dead_code)]

pub mod agent;
pub mod arm_fake;
pub mod azureml_sandbox;
pub mod eventually;
pub mod fake_kube;
pub mod fake_mlflow;
pub mod fake_prometheus;
pub mod git;
pub mod git_hosting;
pub mod git_http;
pub mod hostile;
pub mod hung;
pub mod k8s_cli;
pub mod mfe_schema;
pub mod openpgp;
pub mod recorder;
pub mod rollout_history;
pub mod sandbox;

pub use agent::*;

/// The `flightdeck` binary cargo built for the running test: `target/<profile>/flightdeck`, next
/// to the `deps/` directory holding the test executable (`CARGO_BIN_EXE_flightdeck` is only
/// visible to the test crate itself, not to this kit).
pub fn flightdeck_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable in target/<profile>/deps");
    profile_dir.join(format!("flightdeck{}", std::env::consts::EXE_SUFFIX))
}

/// The root of the flightdeck package (for `tests/fixtures`, `tests/golden`, `tests/sdk`).
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
