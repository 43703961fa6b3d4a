//! Moved to `crate::git_branch` (shared by `revert` and `promote`); kept as a re-export so
//! `revert.rs` is unchanged.

pub use crate::git_branch::EnvRepo;
