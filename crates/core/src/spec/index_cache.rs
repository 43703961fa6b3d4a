//! File index records by blob id: in memory for the agent, and as bytes the CLI keeps under
//! the Git directory (`$GIT_DIR/flightdeck/cache-v1`). The bytes carry the format and the
//! flightdeck version; anything else (another version, a truncated or foreign file) reads as
//! no cache, and the loader parses what it needs and writes a fresh one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::FileIndex;
use crate::tree::MAX_FILES;

/// Bumped whenever [`FileIndex`] or the checks stage one makes change shape.
const FORMAT: u32 = 1;
/// The version whose loader wrote the records: another version reads as no cache.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Most records kept: both sides of a comparison at the tree limit. Records of this run come
/// first; older ones fill what is left.
pub const MAX_ENTRIES: usize = 2 * MAX_FILES;

/// Records by blob id (a Git object id, or a content hash where there is no Git object).
#[derive(Debug, Default)]
pub struct IndexCache {
    entries: HashMap<String, Entry>,
    /// Files parsed (cache misses) and records reused (hits) since the cache was made.
    parsed: usize,
    hits: usize,
    /// A record was added since the cache was made or read.
    changed: bool,
}

#[derive(Debug)]
struct Entry {
    index: Arc<FileIndex>,
    /// Read or written since the cache was loaded (or since the last `retain_used`).
    used: bool,
}

#[derive(Deserialize)]
struct OnDisk {
    format: u32,
    version: String,
    entries: HashMap<String, FileIndex>,
}

#[derive(Serialize)]
struct ToDisk<'a> {
    format: u32,
    version: &'a str,
    entries: BTreeMap<&'a str, &'a FileIndex>,
}

impl IndexCache {
    pub fn new() -> IndexCache {
        IndexCache::default()
    }

    /// The cache `to_bytes` wrote, or `None` when `bytes` are not one this version wrote
    /// (corrupt, truncated, foreign, another format or version): then start from nothing.
    pub fn from_bytes(bytes: &[u8]) -> Option<IndexCache> {
        let disk: OnDisk = serde_json::from_slice(bytes).ok()?;
        if disk.format != FORMAT || disk.version != VERSION || disk.entries.len() > MAX_ENTRIES {
            return None;
        }
        let entries = disk
            .entries
            .into_iter()
            .map(|(id, index)| {
                let entry = Entry {
                    index: Arc::new(index),
                    used: false,
                };
                (id, entry)
            })
            .collect();
        Some(IndexCache {
            entries,
            ..IndexCache::default()
        })
    }

    /// At most [`MAX_ENTRIES`] records: those used since loading first, then the others.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut ids: Vec<(&String, &Entry)> = self.entries.iter().collect();
        ids.sort_by(|a, b| b.1.used.cmp(&a.1.used).then(a.0.cmp(b.0)));
        let entries = ids
            .into_iter()
            .take(MAX_ENTRIES)
            .map(|(id, e)| (id.as_str(), &*e.index))
            .collect();
        let disk = ToDisk {
            format: FORMAT,
            version: VERSION,
            entries,
        };
        serde_json::to_vec(&disk).unwrap_or_default()
    }

    /// Drops every record not used since the last call (the agent keeps what its last two
    /// snapshots use, no more).
    pub fn retain_used(&mut self) {
        self.entries.retain(|_, e| std::mem::take(&mut e.used));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Files parsed because no record was there, since the cache was made.
    pub fn parsed(&self) -> usize {
        self.parsed
    }

    /// Records reused instead of parsing, since the cache was made.
    pub fn hits(&self) -> usize {
        self.hits
    }

    pub(crate) fn get(&mut self, id: &str) -> Option<Arc<FileIndex>> {
        let entry = self.entries.get_mut(id)?;
        entry.used = true;
        self.hits += 1;
        Some(entry.index.clone())
    }

    pub(crate) fn put(&mut self, id: &str, index: Arc<FileIndex>) {
        self.parsed += 1;
        let entry = Entry { index, used: true };
        if self.entries.insert(id.to_string(), entry).is_none() {
            self.changed = true;
        }
    }

    /// Whether a record was added since the cache was made or read (then it is worth
    /// writing back).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// A file parsed that has no id (a changed work-tree file): counted, not kept.
    pub(crate) fn count_parse(&mut self) {
        self.parsed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::diagnostics::Diagnostic;
    use crate::spec::yaml::Pos;
    use std::path::Path;

    fn one() -> IndexCache {
        let mut cache = IndexCache::new();
        let local = [Diagnostic::new(
            Path::new("a.yml"),
            Pos { line: 2, column: 3 },
            "unknown field `x` in endpoint",
        )];
        cache.put("abc", Arc::new(FileIndex::of(None, &local)));
        cache
    }

    #[test]
    fn records_come_back_from_the_bytes_this_version_wrote() {
        let cache = one();
        assert!(cache.changed());
        let read = IndexCache::from_bytes(&cache.to_bytes()).expect("readable");
        assert_eq!(read.len(), 1);
        assert!(
            !read.changed(),
            "a cache just read has nothing new to write"
        );
        let mut read = read;
        let index = read.get("abc").expect("the record");
        let shown: Vec<String> = index
            .diagnostics(Path::new("b.yml"))
            .map(|d| d.to_string())
            .collect();
        assert_eq!(shown, ["b.yml:2:3: unknown field `x` in endpoint"]);
    }

    #[test]
    fn a_corrupt_truncated_or_foreign_cache_reads_as_none() {
        let bytes = one().to_bytes();
        assert!(IndexCache::from_bytes(&bytes[..bytes.len() / 2]).is_none());
        assert!(IndexCache::from_bytes(b"\x00\x01garbage").is_none());
        let text = String::from_utf8(bytes).unwrap();
        let other_version = text.replace(VERSION, "0.0.0-other");
        assert!(IndexCache::from_bytes(other_version.as_bytes()).is_none());
        let other_format = text.replace("\"format\":1", "\"format\":99");
        assert!(IndexCache::from_bytes(other_format.as_bytes()).is_none());
    }

    #[test]
    fn the_agent_keeps_only_the_records_its_last_load_used() {
        let mut cache = one();
        cache.retain_used();
        assert_eq!(cache.len(), 1, "used by the load that put it");
        cache.retain_used();
        assert!(cache.is_empty(), "not used since");
    }
}
