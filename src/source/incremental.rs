//! The I/O side of `plan`/`diff --against-rev`: lists the environment at a revision (blob ids
//! from the tree, no blob inflated) and in the work tree (which files differ from the
//! revision comes from Git's index and its stat cache, as `git diff REV` finds them), keeps the
//! file index records under the Git directory, and hands both sides to the pure loader
//! (`spec::incremental::load_pair`).
//!
//! The cache lives at `$GIT_DIR/flightdeck/cache-v2` (the common Git directory, shared by
//! linked worktrees), never in the work tree. See docs/cli.md (`--against-rev`).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::{DiffOptions, ErrorCode, Oid, Repository};

use flightdeck_core::spec::incremental::{Blobs, Listed, ListedFile, PairLoad, Side, load_pair};
use flightdeck_core::spec::{Diagnostic, Diagnostics, IndexCache};
use flightdeck_core::tree::{self, TreeProblem};

use super::git_tree::list_git_tree;

/// Where the cache is kept, below the common Git directory.
pub const CACHE_PATH: &str = "flightdeck/cache-v2";
/// A cache file larger than this is not read (it is rebuilt): [`IndexCache`] keeps at most
/// `MAX_ENTRIES` records of a few hundred bytes each.
const MAX_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Why the two sides could not be listed. Nothing has been loaded when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum AgainstRevError {
    #[error("{dir}: {message}")]
    Dir { dir: String, message: String },
    #[error("{dir} is not inside a Git repository")]
    NoRepository {
        dir: String,
        #[source]
        source: git2::Error,
    },
    #[error("the repository has no work tree")]
    NoWorkTree,
    #[error("{dir} is outside the repository")]
    Outside { dir: String },
    #[error("cannot resolve revision {rev}")]
    Revision {
        rev: String,
        #[source]
        source: git2::Error,
    },
    #[error("{rel} is not a directory at {rev}")]
    NotADirectory { rel: String, rev: String },
    #[error("the environment at {rev} is refused: {source}")]
    Refused {
        rev: String,
        #[source]
        source: tree::TreeError,
    },
    #[error("git: {context}")]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
}

fn git(context: &str) -> impl FnOnce(git2::Error) -> AgainstRevError + '_ {
    move |source| AgainstRevError::Git {
        context: context.to_string(),
        source,
    }
}

/// Both sides of `--against-rev`, loaded, and what the load cost.
#[derive(Debug)]
pub struct AgainstRev {
    pub load: PairLoad,
    /// Records reused from the cache and files parsed (cache misses).
    pub cache_hits: usize,
    pub cache_misses: usize,
}

/// Blobs of the repository, by hex id (the loader is `Sync`; git2 handles are not).
struct RepoBlobs(Mutex<Repository>);

impl Blobs for RepoBlobs {
    fn blob(&self, id: &str) -> io::Result<Vec<u8>> {
        let repo = self
            .0
            .lock()
            .map_err(|_| io::Error::other("repository lock poisoned"))?;
        let oid = Oid::from_str(id).map_err(io::Error::other)?;
        let blob = repo.find_blob(oid).map_err(io::Error::other)?;
        Ok(blob.content().to_vec())
    }
}

/// Loads the environment `env_dir` from the work tree and as it is at `rev`, parsing only
/// what differs (and what the cache does not hold), and updates the cache.
pub fn load_against_rev(
    env_dir: &Path,
    rev: &str,
    profile_of: flightdeck_core::plan::profile::ProfileOf,
) -> Result<AgainstRev, AgainstRevError> {
    let shown = env_dir.display().to_string();
    let abs = env_dir.canonicalize().map_err(|e| AgainstRevError::Dir {
        dir: shown.clone(),
        message: e.to_string(),
    })?;
    let repo = Repository::discover(&abs).map_err(|source| AgainstRevError::NoRepository {
        dir: shown.clone(),
        source,
    })?;
    let workdir = repo
        .workdir()
        .ok_or(AgainstRevError::NoWorkTree)?
        .canonicalize()
        .map_err(|e| AgainstRevError::Dir {
            dir: shown.clone(),
            message: e.to_string(),
        })?;
    let rel = abs
        .strip_prefix(&workdir)
        .map_err(|_| AgainstRevError::Outside { dir: shown.clone() })?
        .to_path_buf();
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|source| AgainstRevError::Revision {
            rev: rev.to_string(),
            source,
        })?;
    let root = commit.tree().map_err(git("reading the revision's tree"))?;
    let old_tree = if rel.as_os_str().is_empty() {
        Some(root.clone())
    } else {
        match root.get_path(&rel) {
            Ok(entry) => match entry
                .to_object(&repo)
                .map_err(git("reading a tree"))?
                .into_tree()
            {
                Ok(tree) => Some(tree),
                Err(_) => {
                    return Err(AgainstRevError::NotADirectory {
                        rel: rel.display().to_string(),
                        rev: rev.to_string(),
                    });
                }
            },
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(git("reading the revision's tree")(e)),
        }
    };
    // The old side: every file with its blob id, nothing inflated.
    let mut old = Listed::default();
    let mut old_ids: HashMap<PathBuf, Oid> = HashMap::new();
    if let Some(tree) = &old_tree {
        let listing =
            list_git_tree(&repo, tree, env_dir).map_err(|source| AgainstRevError::Refused {
                rev: rev.to_string(),
                source,
            })?;
        for file in listing.files {
            old_ids.insert(file.real, file.handle);
            let listed = ListedFile {
                id: Some(file.handle.to_string()),
                content: None,
            };
            old.files.insert(file.shown, listed);
        }
        old.problems = listing.problems;
    }
    let new = list_work_tree(&repo, &workdir, &abs, &rel, &root, env_dir, &old_ids)?;
    let blobs = RepoBlobs(Mutex::new(
        Repository::open(repo.path()).map_err(git("opening the repository"))?,
    ));
    let cache_file = repo.commondir().join(CACHE_PATH);
    let mut cache = read_cache(&cache_file);
    let load = match new {
        Ok(new) => load_pair(
            Side {
                listed: &new,
                blobs: &blobs,
            },
            old_tree.is_some().then_some(Side {
                listed: &old,
                blobs: &blobs,
            }),
            env_dir,
            profile_of,
            &mut cache,
        ),
        // The work tree is refused as a whole (too many files or bytes): that is its one
        // diagnostic, as a full load reports it; the old side is not needed.
        Err(diagnostic) => PairLoad {
            new: Err(Diagnostics(vec![diagnostic])),
            old: None,
            compared: flightdeck_core::spec::incremental::Compared::All,
            unchanged: Default::default(),
            parsed_in_full: 0,
        },
    };
    if cache.changed() {
        write_cache(&cache_file, &cache);
    }
    Ok(AgainstRev {
        load,
        cache_hits: cache.hits(),
        cache_misses: cache.parsed(),
    })
}

/// The work-tree side: the directory listed as a full load lists it (symlinks, hidden
/// entries, limits); a file whose real path Git finds unchanged against the revision takes
/// the revision's blob id, every other file is read now (as a full load reads it). `Err` is
/// the diagnostic of a refused directory.
fn list_work_tree(
    repo: &Repository,
    workdir: &Path,
    abs: &Path,
    rel: &Path,
    root: &git2::Tree<'_>,
    env_dir: &Path,
    old_ids: &HashMap<PathBuf, Oid>,
) -> Result<Result<Listed, Diagnostic>, AgainstRevError> {
    let listing = match tree::list_dir(abs, env_dir) {
        Ok(listing) => listing,
        Err(e) => {
            let pos = flightdeck_core::spec::yaml::Pos::FILE;
            return Ok(Err(Diagnostic::new(e.dir(), pos, e.message())));
        }
    };
    let changed = changed_paths(repo, workdir, rel, root)?;
    let mut listed = Listed {
        files: Default::default(),
        problems: listing.problems,
    };
    for file in listing.files {
        let unchanged = changed.as_ref().is_some_and(|c| !c.contains(&file.real));
        let id = old_ids.get(&file.real).filter(|_| unchanged);
        let entry = match id {
            Some(id) => ListedFile {
                id: Some(id.to_string()),
                content: None,
            },
            None => match tree::read_listed(abs, &file) {
                Ok(content) => ListedFile {
                    id: None,
                    content: Some(content),
                },
                Err(problem) => {
                    listed.problems.push(TreeProblem {
                        path: file.shown,
                        problem,
                    });
                    continue;
                }
            },
        };
        listed.files.insert(file.shown, entry);
    }
    Ok(Ok(listed))
}

/// The paths below the environment (relative to it) whose work-tree content differs from the
/// revision, tracked, untracked or ignored, as Git's index and stat cache find them. `None`
/// when Git may rewrite content on checkout (`core.autocrlf`, attributes): then the blob is
/// not the file's bytes and every file counts as changed.
fn changed_paths(
    repo: &Repository,
    workdir: &Path,
    rel: &Path,
    root: &git2::Tree<'_>,
) -> Result<Option<BTreeSet<PathBuf>>, AgainstRevError> {
    let config = repo.config().map_err(git("reading the configuration"))?;
    let autocrlf = config.get_string("core.autocrlf").unwrap_or_default();
    let attributes = [
        workdir.join(".gitattributes"),
        repo.commondir().join("info/attributes"),
    ];
    if !matches!(autocrlf.as_str(), "" | "false") || attributes.iter().any(|p| p.exists()) {
        return Ok(None);
    }
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(true)
        .include_typechange(true);
    if !rel.as_os_str().is_empty() {
        opts.pathspec(rel);
    }
    let diff = repo
        .diff_tree_to_workdir_with_index(Some(root), Some(&mut opts))
        .map_err(git("comparing the work tree with the revision"))?;
    let mut changed = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path()
                && let Ok(inside) = path.strip_prefix(rel)
            {
                changed.insert(inside.to_path_buf());
            }
        }
    }
    Ok(Some(changed))
}

/// The cache at `path`, or an empty one when it is missing, too large, corrupt or foreign.
fn read_cache(path: &Path) -> IndexCache {
    let fits = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_CACHE_BYTES);
    fits.then(|| std::fs::read(path).ok())
        .flatten()
        .and_then(|bytes| IndexCache::from_bytes(&bytes))
        .unwrap_or_default()
}

/// Writes the cache through a temporary file and a rename, so a reader never sees half of
/// one. A cache that cannot be written is only a slower next run: the error is dropped.
fn write_cache(path: &Path, cache: &IndexCache) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!("cache-v2.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, cache.to_bytes()).is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return;
    }
    // The JSON cache of earlier versions is never read again.
    let _ = std::fs::remove_file(dir.join("cache-v1"));
}
