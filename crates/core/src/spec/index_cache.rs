//! File index records by blob id: in memory for the agent, and as bytes the CLI keeps under
//! the Git directory (`$GIT_DIR/flightdeck/cache-v2`). The bytes are a small header (magic,
//! format, flightdeck version), the records in postcard's compact binary encoding, and a
//! checksum of both; anything else (another format or version, a truncated, corrupt or foreign
//! file) reads as no cache, and the loader parses what it needs and writes a fresh one.

use std::collections::HashMap;
use std::sync::Arc;

use super::index::FileIndex;
use crate::tree::MAX_FILES;

/// The first bytes of every cache file.
const MAGIC: &[u8; 8] = b"fdidx\0\0\0";
/// Bumped whenever [`FileIndex`], its encoding or the checks stage one makes change shape
/// (1: JSON; 2: postcard, keys interned).
const FORMAT: u32 = 2;
/// The version whose loader wrote the records: another version reads as no cache.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Most records kept: both sides of a comparison at the tree limit. Records of this run come
/// first; older ones fill what is left.
pub const MAX_ENTRIES: usize = 2 * MAX_FILES;

/// Records by blob id (a Git object id, or a content hash where there is no Git object).
#[derive(Debug, Default)]
pub struct IndexCache {
    entries: HashMap<Box<str>, Entry>,
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

/// FNV-1a over the bytes: catches a corrupt file (not an attack: the cache is the user's own).
fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl IndexCache {
    pub fn new() -> IndexCache {
        IndexCache::default()
    }

    /// The cache `to_bytes` wrote, or `None` when `bytes` are not one this version wrote
    /// (corrupt, truncated, foreign, another format or version): then start from nothing.
    pub fn from_bytes(bytes: &[u8]) -> Option<IndexCache> {
        let body = bytes.strip_prefix(MAGIC)?;
        let (body, sum) = body.split_at_checked(body.len().checked_sub(8)?)?;
        if checksum(body).to_le_bytes() != sum {
            return None;
        }
        let ((format, version), rest) = postcard::take_from_bytes::<(u32, &str)>(body).ok()?;
        if format != FORMAT || version != VERSION {
            return None;
        }
        let (count, mut rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
        let count = usize::try_from(count).ok().filter(|n| *n <= MAX_ENTRIES)?;
        let mut entries = HashMap::with_capacity(count);
        for _ in 0..count {
            let ((id, index), more) = postcard::take_from_bytes::<(&str, FileIndex)>(rest).ok()?;
            rest = more;
            let entry = Entry {
                index: Arc::new(index),
                used: false,
            };
            entries.insert(Box::from(id), entry);
        }
        if !rest.is_empty() {
            return None;
        }
        Some(IndexCache {
            entries,
            ..IndexCache::default()
        })
    }

    /// At most [`MAX_ENTRIES`] records: those used since loading first, then the others.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut ids: Vec<(&Box<str>, &Entry)> = self.entries.iter().collect();
        ids.sort_by(|a, b| b.1.used.cmp(&a.1.used).then(a.0.cmp(b.0)));
        ids.truncate(MAX_ENTRIES);
        let mut out = MAGIC.to_vec();
        let header = (FORMAT, VERSION, ids.len() as u32);
        let Ok(mut body) = postcard::to_extend(&header, Vec::new()) else {
            return Vec::new();
        };
        for (id, entry) in ids {
            match postcard::to_extend(&(&**id, &*entry.index), body) {
                Ok(more) => body = more,
                Err(_) => return Vec::new(),
            }
        }
        out.extend_from_slice(&body);
        out.extend_from_slice(&checksum(&body).to_le_bytes());
        out
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
        if self.entries.insert(Box::from(id), entry).is_none() {
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
        assert!(
            IndexCache::from_bytes(&bytes).is_some(),
            "the bytes as written"
        );
        assert!(IndexCache::from_bytes(&bytes[..bytes.len() / 2]).is_none());
        assert!(IndexCache::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        assert!(IndexCache::from_bytes(b"\x00\x01garbage").is_none());
        assert!(IndexCache::from_bytes(b"").is_none());
        for i in MAGIC.len()..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert!(
                IndexCache::from_bytes(&flipped).is_none(),
                "a byte changed at {i} is caught"
            );
        }
        // A v1 (JSON) cache, and this format written by another version or format number.
        let v1 = format!("{{\"format\":1,\"version\":\"{VERSION}\",\"entries\":{{}}}}");
        assert!(IndexCache::from_bytes(v1.as_bytes()).is_none());
        let written = |format: u32, version: &str| {
            let body = postcard::to_stdvec(&(format, version, 0u32)).unwrap();
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&body);
            out.extend_from_slice(&checksum(&body).to_le_bytes());
            out
        };
        assert!(IndexCache::from_bytes(&written(FORMAT, VERSION)).is_some());
        assert!(IndexCache::from_bytes(&written(FORMAT, "0.0.0-other")).is_none());
        assert!(IndexCache::from_bytes(&written(1, VERSION)).is_none());
        assert!(IndexCache::from_bytes(&written(99, VERSION)).is_none());
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
