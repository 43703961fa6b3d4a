//! Loading two versions of one environment (`plan --against-rev`, the agent's next commit)
//! at the cost of what changed between them.
//!
//! Each side is a listing: every file with its blob id (`None`: changed, no id known) and,
//! for changed files, its content. Files with the same id on both sides are unchanged. The
//! loader then:
//!
//! 1. takes each endpoint and deployment file's [`FileIndex`] (names, links, weights, keys,
//!    local diagnostics) from the [`IndexCache`] by blob id, parsing only on a miss;
//! 2. marks as *compared* every endpoint a changed file declares or links to on either side,
//!    plus every endpoint with slots; when `environment.yaml`, a non-YAML file (a test's
//!    request body) or the refused entries differ, every endpoint is compared;
//! 3. parses in full the files of compared endpoints (and slot templates), and runs the one
//!    cross-file stage (`load::assemble`) on full files and records together, so diagnostics
//!    are exactly those of a full parse. Records become raw structs without settings (no
//!    `DeploymentSettings` at all), and the stage checks every endpoint but builds only the
//!    compared ones: the checks that name endpoints (`tests`, `slots`, `rollout.endpoints`,
//!    `promotion`, `smoke`) read the declared names (`validate::Declared`), never endpoints;
//! 4. so each side's desired state holds only the compared endpoints. Every other endpoint
//!    is made of the same files and the same environment on both sides, so it is identical
//!    there, and a plan of one side against the other is the same without it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::files::{Files, Tree, normalize};
use super::index::FileIndex;
use super::index_cache::IndexCache;
use super::load::{self, Layout, Parsed};
use super::paths::inside_environment;
use super::raw_endpoint::RawFile;
use crate::model::DesiredState;
use crate::plan::profile::{NEUTRAL, ProfileOf};
use crate::tree::TreeProblem;

/// A file of a listed tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedFile {
    /// Its blob id when known to equal a stored object (`None`: changed, read from `content`).
    pub id: Option<String>,
    /// Content already read (changed files); otherwise read through [`Blobs`] by `id`.
    pub content: Option<Vec<u8>>,
}

/// The files of one side, keyed by the path they are shown as (as `EnvTree` keys them), and
/// the entries the tree reader refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    pub files: BTreeMap<PathBuf, ListedFile>,
    pub problems: Vec<TreeProblem>,
}

/// Where a side's unread content comes from: blobs by id.
pub trait Blobs: Send + Sync {
    fn blob(&self, id: &str) -> io::Result<Vec<u8>>;
}

/// One side: its listing and its blobs.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub listed: &'a Listed,
    pub blobs: &'a dyn Blobs,
}

/// Which endpoints the two desired states hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compared {
    /// Every endpoint (no old side, or something environment-wide changed).
    All,
    /// Only these; every other endpoint is identical on both sides.
    Endpoints(BTreeSet<String>),
}

impl Compared {
    pub fn contains(&self, endpoint: &str) -> bool {
        match self {
            Compared::All => true,
            Compared::Endpoints(names) => names.contains(endpoint),
        }
    }
}

/// Both sides loaded: each `Ok` state holds only the compared endpoints; each `Err` holds
/// exactly the diagnostics a full parse of that side gives.
#[derive(Debug)]
pub struct PairLoad {
    pub new: Result<DesiredState, Diagnostics>,
    /// `None` when there was no old side.
    pub old: Option<Result<DesiredState, Diagnostics>>,
    pub compared: Compared,
    /// Endpoints of `new` left out because they are not compared (identical on both sides).
    pub unchanged: BTreeSet<String>,
    /// Endpoint and deployment files parsed in full (the rest came from records).
    pub parsed_in_full: usize,
}

impl Files for Side<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self
            .listed
            .files
            .get(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file not found"))?;
        match (&file.content, &file.id) {
            (Some(content), _) => Ok(content.clone()),
            (None, Some(id)) => self.blobs.blob(id),
            (None, None) => Err(io::Error::new(io::ErrorKind::NotFound, "file not found")),
        }
    }
}

impl Tree for Side<'_> {
    fn files_in(&self, dir: &Path) -> Vec<PathBuf> {
        self.listed
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }
}

/// One side's files as the loader sorted them.
struct Sorted<'a> {
    side: Side<'a>,
    layout: Layout,
    /// Diagnostics of the layout (refused entries, misplaced environment files).
    diagnostics: Vec<Diagnostic>,
    /// Files parsed in full in this load, with their stage-one diagnostics.
    full: HashMap<PathBuf, (Option<RawFile>, Vec<Diagnostic>)>,
}

impl<'a> Sorted<'a> {
    fn new(side: Side<'a>, dir: &Path) -> Sorted<'a> {
        let mut diagnostics = Vec::new();
        let layout = load::layout(
            side.listed.files.keys(),
            &side.listed.problems,
            dir,
            &mut diagnostics,
        );
        Sorted {
            side,
            layout,
            diagnostics,
            full: HashMap::new(),
        }
    }

    fn id(&self, path: &Path) -> Option<&str> {
        self.side.listed.files.get(path)?.id.as_deref()
    }

    /// Parses `path` in full, puts its record in `cache`, and keeps the result for this load
    /// when `keep` (changed files, read again by the cross-file stage).
    fn parse(
        &mut self,
        path: &Path,
        keep: bool,
        cache: &mut IndexCache,
    ) -> (Option<RawFile>, Vec<Diagnostic>) {
        if let Some(done) = self.full.get(path) {
            return done.clone();
        }
        let mut out = Vec::new();
        let raw = load::parse_one(&self.side, path, &mut out);
        match self.id(path).map(str::to_string) {
            Some(id) => cache.put(&id, Arc::new(FileIndex::of(raw.as_ref(), &out))),
            None => cache.count_parse(),
        }
        if keep {
            self.full
                .insert(path.to_path_buf(), (raw.clone(), out.clone()));
        }
        (raw, out)
    }

    /// The record of `path`: from this load's full parse, the cache, or a parse.
    fn index(&mut self, path: &Path, keep: bool, cache: &mut IndexCache) -> Arc<FileIndex> {
        if let Some((raw, out)) = self.full.get(path) {
            return Arc::new(FileIndex::of(raw.as_ref(), out));
        }
        if let Some(id) = self.id(path)
            && let Some(index) = cache.get(id)
        {
            return index;
        }
        let (raw, out) = self.parse(path, keep, cache);
        Arc::new(FileIndex::of(raw.as_ref(), &out))
    }
}

/// Whether a file is the same on both sides: same path, same known id.
fn same(a: Option<&ListedFile>, b: Option<&ListedFile>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.id.is_some() && a.id == b.id,
        _ => false,
    }
}

/// Whether anything outside the endpoint and deployment files differs: the environment file,
/// a non-YAML file, or the refused entries.
fn environment_wide_change(new: &Sorted<'_>, old: &Sorted<'_>) -> bool {
    if new.side.listed.problems != old.side.listed.problems
        || new.layout.env_path != old.layout.env_path
    {
        return true;
    }
    if let Some(env) = &new.layout.env_path
        && !same(
            new.side.listed.files.get(env),
            old.side.listed.files.get(env),
        )
    {
        return true;
    }
    let others = |s: &Sorted<'_>| -> BTreeSet<PathBuf> {
        s.side
            .listed
            .files
            .keys()
            .filter(|p| !load::is_yaml(p))
            .cloned()
            .collect()
    };
    let (a, b) = (others(new), others(old));
    a != b
        || a.iter()
            .any(|p| !same(new.side.listed.files.get(p), old.side.listed.files.get(p)))
}

/// Loads `new` and, when given, `old` (see the module documentation). Without `old`, every
/// endpoint of `new` is loaded and every record lands in `cache`, ready for the next call.
pub fn load_pair(
    new: Side<'_>,
    old: Option<Side<'_>>,
    dir: &Path,
    profile_of: ProfileOf,
    cache: &mut IndexCache,
) -> PairLoad {
    let mut new = Sorted::new(new, dir);
    let mut old = old.map(|o| Sorted::new(o, dir));
    let all = old
        .as_ref()
        .is_none_or(|old| environment_wide_change(&new, old));
    let mut touched: BTreeSet<String> = BTreeSet::new();
    if let Some(old) = old.as_mut().filter(|_| !all) {
        let paths: BTreeSet<PathBuf> = new
            .layout
            .others
            .iter()
            .chain(&old.layout.others)
            .cloned()
            .collect();
        for path in paths {
            let (n, o) = (
                new.side.listed.files.get(&path),
                old.side.listed.files.get(&path),
            );
            if same(n, o) {
                continue;
            }
            for side in [&mut new, &mut *old] {
                if side.side.listed.files.contains_key(&path) {
                    let index = side.index(&path, true, cache);
                    touched.extend(index.endpoint_names().into_iter().map(str::to_string));
                }
            }
        }
    }
    let mut parsed_in_full = 0;
    let new_state = load_side(
        &mut new,
        dir,
        profile_of,
        all,
        &mut touched,
        cache,
        &mut parsed_in_full,
    );
    let compared = if all {
        Compared::All
    } else {
        Compared::Endpoints(touched.clone())
    };
    // One side's state at a time, each holding only the compared endpoints.
    let (new, unchanged) = new_state;
    let unchanged = if new.is_ok() {
        unchanged
    } else {
        BTreeSet::new()
    };
    let old = old.as_mut().map(|o| {
        load_side(
            o,
            dir,
            profile_of,
            all,
            &mut touched,
            cache,
            &mut parsed_in_full,
        )
        .0
    });
    PairLoad {
        new,
        old,
        compared,
        unchanged,
        parsed_in_full,
    }
}

/// One side: the environment file, full files for compared endpoints, records for the rest,
/// then the cross-file stage, which checks every endpoint and builds only the compared ones.
/// Endpoints with slots join `touched` (their templates are read in full on both sides).
/// Returns the state and the declared endpoints it leaves out.
fn load_side(
    side: &mut Sorted<'_>,
    dir: &Path,
    profile_of: ProfileOf,
    all: bool,
    touched: &mut BTreeSet<String>,
    cache: &mut IndexCache,
    parsed_in_full: &mut usize,
) -> (Result<DesiredState, Diagnostics>, BTreeSet<String>) {
    let mut out = side.diagnostics.clone();
    let raw_env = side
        .layout
        .env_path
        .clone()
        .and_then(|p| load::parse_environment(&side.side, &p, &mut out));
    let mut templates: BTreeSet<PathBuf> = BTreeSet::new();
    if let Some(env) = &raw_env {
        for s in &env.slots {
            touched.insert(s.endpoint.clone());
            if let Some(rel) = s
                .template
                .as_ref()
                .and_then(|t| inside_environment(&t.value).ok())
            {
                templates.insert(normalize(&dir.join(rel)));
            }
        }
    }
    // The keys the profile's rules read (`validate::deployment`): all a record must keep.
    let target = raw_env.as_ref().and_then(|e| e.target.as_ref());
    let profile = target.map_or(&NEUTRAL, profile_of);
    let checked =
        |key: &str| profile.foreign(key).is_some() || profile.required_fields.contains(&key);
    let mut parsed = Parsed::default();
    parsed.endpoints.reserve_exact(side.layout.others.len());
    for path in side.layout.others.clone() {
        let index = if all {
            None
        } else {
            Some(side.index(&path, false, cache))
        };
        let in_full = index.as_ref().is_none_or(|index| {
            templates.contains(&normalize(&path))
                || index.endpoint_names().iter().any(|n| touched.contains(*n))
        });
        if in_full {
            *parsed_in_full += 1;
            let (raw, diagnostics) = side.parse(&path, false, cache);
            out.extend(diagnostics);
            parsed.add(raw);
        } else if let Some(index) = index {
            out.extend(index.diagnostics(&path));
            parsed.add(index.raw(&path, &checked));
        }
    }
    // Full files are not needed once the stage has run: keep memory to one side's worth.
    side.full.clear();
    let touched: &BTreeSet<String> = touched;
    let full = |name: &str| all || touched.contains(name);
    let mut left_out = BTreeSet::new();
    let state = load::assemble(
        &side.side,
        dir,
        profile_of,
        raw_env,
        parsed,
        &full,
        &mut left_out,
        &mut out,
    );
    let state = match state {
        Some(state) if out.is_empty() => Ok(state),
        _ => Err(Diagnostics::from_unsorted(out)),
    };
    (state, left_out)
}
