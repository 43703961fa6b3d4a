//! flightdeck's core: the desired-state format (`model`, `spec`), the pure planner (`plan`), the
//! executor (`apply`) and the `Backend` trait every platform implements. It does no network I/O:
//! no HTTP client, no Kubernetes client and no server live here, and the compiler keeps it so
//! (this crate does not depend on reqwest, kube or axum). Platforms live in their own crates
//! (`flightdeck-azureml`, `flightdeck-kubernetes`); the binary wires them together.
//!
//! `tree` is the one reader of an environment directory; `escape` keeps control characters out
//! of every line flightdeck prints.

pub mod apply;
pub mod backend;
pub mod clock;
pub mod concurrency;
pub mod escape;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod pod_settings;
pub mod promotion;
pub mod retry;
pub mod rollout;
pub mod secret;
pub mod slots;
pub mod smoke;
pub mod spec;
pub mod tree;
