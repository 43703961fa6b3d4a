//! Symlink resolution inside the environment, the same for disk and Git: every hop is resolved
//! lexically against the tree itself (never the host filesystem), so a link can only ever name
//! something inside the environment directory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::walk::{Input, Kind};
use super::{EntryProblem, MAX_LINK_BYTES, MAX_LINK_HOPS, is_hidden_name};

/// Where a symlink leads: a directory or a regular file, by its real (link-free) path.
pub(super) struct Resolved<H> {
    pub kind: Kind,
    pub handle: H,
    pub real: PathBuf,
    /// The link's own target, as written.
    pub target: String,
}

/// Why a symlink is refused; each carries the link's own target, as written.
#[derive(Debug)]
pub(super) enum LinkFailure {
    Outside(String),
    Dangling(String),
    Loop(String),
    Hidden(String),
    Entry(EntryProblem),
}

/// Resolves the symlink `name` in the real directory `dir` (relative to the environment root).
pub(super) fn resolve<I: Input>(
    input: &I,
    dir: &Path,
    name: &str,
    link: &I::Handle,
    size: u64,
) -> Result<Resolved<I::Handle>, LinkFailure> {
    let target = read_link(input, &dir.join(name), link, size)?;
    let fail = |make: fn(String) -> LinkFailure| make(target.clone());
    let mut stack: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut pending: VecDeque<String> = VecDeque::new();
    queue(&target, &mut pending).map_err(&fail)?;
    let mut hops = 1;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(fail(LinkFailure::Outside));
                }
            }
            part => {
                if is_hidden_name(part) {
                    return Err(fail(LinkFailure::Hidden));
                }
                stack.push(part.to_string());
                let rel: PathBuf = stack.iter().collect();
                let entry = input
                    .lookup(&rel)
                    .map_err(|message| LinkFailure::Entry(EntryProblem::Unreadable { message }))?
                    .ok_or_else(|| fail(LinkFailure::Dangling))?;
                match entry.kind {
                    Kind::Link { size } => {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(fail(LinkFailure::Loop));
                        }
                        let next = read_link(input, &rel, &entry.handle, size)?;
                        stack.pop();
                        queue(&next, &mut pending).map_err(&fail)?;
                    }
                    Kind::Dir => {}
                    Kind::File { .. } | Kind::Other => {
                        // A file used as a directory (`a.json/x`) names nothing.
                        if pending.iter().any(|p| !p.is_empty()) {
                            return Err(fail(LinkFailure::Dangling));
                        }
                    }
                }
            }
        }
    }
    let real: PathBuf = stack.iter().collect();
    if stack.is_empty() {
        return Ok(Resolved {
            kind: Kind::Dir,
            handle: input.root(),
            real,
            target,
        });
    }
    let entry = input
        .lookup(&real)
        .map_err(|message| LinkFailure::Entry(EntryProblem::Unreadable { message }))?
        .ok_or_else(|| fail(LinkFailure::Dangling))?;
    if matches!(entry.kind, Kind::Link { .. }) {
        return Err(fail(LinkFailure::Loop));
    }
    Ok(Resolved {
        kind: entry.kind,
        handle: entry.handle,
        real,
        target,
    })
}

/// Puts the parts of `target` in front of the parts still to resolve.
fn queue(target: &str, pending: &mut VecDeque<String>) -> Result<(), fn(String) -> LinkFailure> {
    if target.is_empty() {
        return Err(LinkFailure::Dangling);
    }
    if target.starts_with('/') {
        return Err(LinkFailure::Outside);
    }
    for part in target.rsplit('/') {
        pending.push_front(part.to_string());
    }
    Ok(())
}

fn read_link<I: Input>(
    input: &I,
    rel: &Path,
    link: &I::Handle,
    size: u64,
) -> Result<String, LinkFailure> {
    if size > MAX_LINK_BYTES {
        return Err(LinkFailure::Entry(EntryProblem::LinkTooLong));
    }
    input.link_target(rel, link).map_err(LinkFailure::Entry)
}
