//! The answer cache: bounded (quick_cache's S3-FIFO-like policy, which keeps what is asked
//! often over what was asked once), entries kept past their TTL so that they can be served
//! `stale` while the upstream is down, and dropped when the upstream's change log names one
//! of their storage keys.

use std::sync::Arc;
use std::time::Duration;

// Tokio's clock, so that tests can pause it and let entries expire without waiting.
use tokio::time::Instant;

use repnet_model::{HashKind, ObjectKind, PrefixOf};
use repnet_protocol::Reputation;

/// What was asked: the object's type and canonical text. A file asked for by several hashes
/// is their canonical texts joined by commas, the strongest first ([`file_key`]).
pub(crate) type Key = (ObjectKind, String);

/// The key of a file asked for by several hashes.
pub(crate) fn file_key(hashes: &repnet_model::FileHashes) -> Key {
    let text: Vec<String> = hashes.iter().map(|hash| hash.to_string()).collect();
    (ObjectKind::File, text.join(","))
}

/// The lookup item that asks upstream what `key` asks.
pub(crate) fn item(key: &Key) -> repnet_protocol::LookupItem<'_> {
    let (kind, value) = key;
    if *kind == ObjectKind::File && value.contains(',') {
        let mut hashes = repnet_model::FileHashes::default();
        for text in value.split(',') {
            // Made by `file_key` from parsed hashes: each parses again.
            if let Ok(hash) = repnet_model::FileHash::from_hex(text) {
                hashes.insert(hash);
            }
        }
        return repnet_protocol::LookupItem::file(&hashes);
    }
    repnet_protocol::LookupItem::new(*kind, value.as_str())
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) reputation: Arc<Reputation>,
    pub(crate) expires: Instant,
    /// Short forms ([`short_key`]) of the storage keys whose change makes this answer wrong:
    /// 8 bytes each rather than 33 (a URL depends on up to 30 expressions).
    pub(crate) keys: Arc<[u64]>,
    /// About what the entry and its key hold in memory, in bytes.
    bytes: u64,
}

/// Weighs entries by their bytes, and each at least `floor` (`cache_max_bytes /
/// cache_max_entries`), so that one weight bounds both the bytes and the entries.
#[derive(Debug, Clone)]
struct Weight {
    floor: u64,
}

impl quick_cache::Weighter<Key, Entry> for Weight {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        entry.bytes.max(self.floor)
    }
}

/// A storage key in 8 bytes: its type tag and the first bytes of its hash. Two keys that
/// share them only make an answer be dropped needlessly, never kept wrongly.
pub(crate) fn short_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let body = key.get(1..).unwrap_or(&[]);
    let len = body.len().min(7);
    bytes[..len].copy_from_slice(&body[..len]);
    bytes[7] = key.first().copied().unwrap_or(0);
    u64::from_le_bytes(bytes)
}

/// What the cache has for a question.
pub(crate) enum Cached {
    /// Within its TTL, with what is left of it.
    Fresh(Arc<Reputation>, Duration),
    /// Past its TTL: served only when the upstream cannot answer.
    Expired(Arc<Reputation>),
    Missing,
}

pub(crate) struct Cache {
    entries: quick_cache::sync::Cache<Key, Entry, Weight>,
    /// Privacy-mode searches' answers, by prefix: a quarter of the entries and bytes.
    prefixes: quick_cache::sync::Cache<Prefix, PrefixEntry, Weight>,
    /// The longest an answer is kept fresh, in seconds (`cache_max_ttl_seconds`); 0 for as
    /// long as the upstream says. Changed in place: a new lifetime applies to new answers.
    max_ttl: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
pub(crate) struct PrefixEntry {
    answer: Arc<PrefixAnswer>,
    inserted: Instant,
    expires: Instant,
    bytes: u64,
}

impl quick_cache::Weighter<Prefix, PrefixEntry> for Weight {
    fn weight(&self, _key: &Prefix, entry: &PrefixEntry) -> u64 {
        entry.bytes.max(self.floor)
    }
}

/// What the upstream's change log named since the last look, as the caches need it.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Short forms ([`short_key`]) of the changed storage keys.
    pub(crate) short: std::collections::HashSet<u64>,
    /// The changed keys a privacy search finds, by kind and their first four bytes.
    searched: std::collections::HashMap<(PrefixOf, [u8; 4]), Vec<Vec<u8>>>,
    /// Whether a file changed: a file's answer under one hash holds the records of all its
    /// hashes, so a cached prefix answer with a file in it may be wrong now.
    file: bool,
}

impl Changes {
    /// Notes a storage key the change log named.
    pub(crate) fn add(&mut self, key: &[u8]) {
        self.short.insert(short_key(key));
        if let Some((kind, hash, file)) = repnet_model::key::searched_as(key)
            && let Some(first) = hash.first_chunk::<4>()
        {
            let searched_by: &[PrefixOf] = match (kind, file) {
                (HashKind::Sha256, false) => &[PrefixOf::Url, PrefixOf::Sha256],
                (HashKind::Sha256, true) => &[PrefixOf::Sha256],
                (HashKind::Sha1, _) => &[PrefixOf::Sha1],
                (HashKind::Md5, _) => &[PrefixOf::Md5],
            };
            for of in searched_by {
                self.searched
                    .entry((*of, *first))
                    .or_default()
                    .push(hash.to_vec());
            }
            self.file |= file;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.short.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.short.len()
    }

    /// Whether the cached answer for `prefix` may be wrong now: a changed key is under it,
    /// or it holds a file and a file changed.
    fn touch(&self, prefix: &Prefix, answer: &PrefixAnswer) -> bool {
        let under = prefix.bytes.first_chunk::<4>().is_some_and(|first| {
            self.searched
                .get(&(prefix.of, *first))
                .is_some_and(|hashes| hashes.iter().any(|h| h.starts_with(&prefix.bytes)))
        });
        under || (self.file && answer.matches.iter().any(|m| m.kind == "file"))
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Cache {
    /// A cache of at most `max_entries` answers and about `max_bytes` bytes.
    /// Three quarters of both go to answers about objects, a quarter to privacy-mode
    /// searches' answers.
    pub(crate) fn new(max_entries: usize, max_bytes: u64) -> Cache {
        let max_entries = max_entries.max(4);
        let floor = (max_bytes / max_entries as u64).max(1);
        let (objects, prefixes) = (max_entries - max_entries / 4, max_entries / 4);
        Cache {
            entries: quick_cache::sync::Cache::with_weighter(
                objects,
                floor.saturating_mul(objects as u64),
                Weight { floor },
            ),
            prefixes: quick_cache::sync::Cache::with_weighter(
                prefixes,
                floor.saturating_mul(prefixes as u64),
                Weight { floor },
            ),
            max_ttl: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Caps how long answers inserted from now on stay fresh; 0 removes the cap.
    pub(crate) fn set_max_ttl(&self, seconds: u64) {
        self.max_ttl
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// `seconds` the upstream gave, capped by `max_ttl`.
    fn lifetime(&self, seconds: u32) -> Duration {
        let seconds = u64::from(seconds);
        let cap = self.max_ttl.load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_secs(if cap == 0 { seconds } else { seconds.min(cap) })
    }

    /// About the bytes the cache holds.
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.weight() + self.prefixes.weight()
    }

    /// The answer for one prefix, how long ago the upstream gave it, and whether it is still
    /// fresh (an expired one is served only when the upstream cannot answer).
    pub(crate) fn get_prefix(
        &self,
        prefix: &Prefix,
        now: Instant,
    ) -> Option<(Arc<PrefixAnswer>, Duration, bool)> {
        let entry = self.prefixes.get(prefix)?;
        Some((
            entry.answer,
            now.saturating_duration_since(entry.inserted),
            entry.expires > now,
        ))
    }

    /// Keeps the answer for one prefix: for the upstream's lifetime of an unknown answer
    /// when nothing is under the prefix, of a known one otherwise.
    pub(crate) fn insert_prefix(&self, prefix: Prefix, answer: Arc<PrefixAnswer>, now: Instant) {
        let seconds = if answer.matches.is_empty() {
            answer.unknown_cache_seconds
        } else {
            answer.cache_seconds
        };
        let bytes = answer
            .matches
            .iter()
            .map(|found| repnet_protocol::to_json(found).len() as u64)
            .sum::<u64>()
            + prefix.bytes.len() as u64
            + 120;
        self.prefixes.insert(
            prefix,
            PrefixEntry {
                answer,
                inserted: now,
                expires: now + self.lifetime(seconds),
                bytes,
            },
        );
    }

    pub(crate) fn get(&self, key: &Key, now: Instant) -> Cached {
        match self.entries.get(key) {
            Some(entry) if entry.expires > now => {
                Cached::Fresh(entry.reputation, entry.expires - now)
            }
            Some(entry) => Cached::Expired(entry.reputation),
            None => Cached::Missing,
        }
    }

    pub(crate) fn insert(&self, key: Key, reputation: Reputation, keys: Vec<u64>, now: Instant) {
        let ttl = self.lifetime(reputation.ttl);
        // The answer as JSON is a fair measure of its strings and lists; the rest is the
        // key, the dependencies and the bookkeeping of an entry.
        let bytes =
            (repnet_protocol::to_json(&reputation).len() + key.1.len() + keys.len() * 8 + 160)
                as u64;
        self.entries.insert(
            key,
            Entry {
                reputation: Arc::new(reputation),
                expires: now + ttl,
                keys: keys.into(),
                bytes,
            },
        );
    }

    /// Drops every answer that depends on one of `changed`; answers how many went.
    pub(crate) fn invalidate(&self, changed: &Changes) -> usize {
        let before = self.len();
        self.entries
            .retain(|_, entry| !entry.keys.iter().any(|key| changed.short.contains(key)));
        self.prefixes
            .retain(|prefix, entry| !changed.touch(prefix, &entry.answer));
        before - self.len()
    }

    pub(crate) fn clear(&self) {
        self.entries.clear();
        self.prefixes.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() + self.prefixes.len()
    }
}

/// A hash prefix a device searched for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Prefix {
    pub(crate) of: PrefixOf,
    pub(crate) bytes: Vec<u8>,
}

impl Prefix {
    /// Whether a search's match (its hash decoded) is of the kind this prefix searches (its
    /// bytes are checked by the caller).
    pub(crate) fn matches(&self, hash: &[u8], found: &repnet_protocol::HashMatch) -> bool {
        let length = match self.of.hash_kind() {
            HashKind::Sha256 => 32,
            HashKind::Sha1 => 20,
            HashKind::Md5 => 16,
        };
        (self.of != PrefixOf::Url || found.kind == "url") && hash.len() == length
    }
}

/// What the upstream answered for one prefix: every full hash under it, complete.
#[derive(Debug, Clone)]
pub(crate) struct PrefixAnswer {
    pub(crate) matches: Vec<repnet_protocol::HashMatch>,
    pub(crate) cache_seconds: u32,
    pub(crate) unknown_cache_seconds: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ttl: u32) -> Reputation {
        let object = repnet_model::Object::parse(ObjectKind::Domain, "example.com").unwrap();
        let policy = repnet_model::TtlPolicy {
            known: ttl,
            unknown: ttl,
        };
        Reputation::from_model(&repnet_model::Reputation::unknown(object, &policy), false)
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_lifetime_caps_the_upstreams() {
        let cache = Cache::new(10, 1 << 20);
        cache.set_max_ttl(60);
        let key: Key = (ObjectKind::Domain, "example.com".to_owned());
        cache.insert(key.clone(), answer(300), Vec::new(), Instant::now());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            cache.get(&key, Instant::now()),
            Cached::Expired(_)
        ));
        cache.set_max_ttl(0);
        cache.insert(key.clone(), answer(300), Vec::new(), Instant::now());
        tokio::time::advance(Duration::from_secs(200)).await;
        assert!(matches!(cache.get(&key, Instant::now()), Cached::Fresh(..)));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl_and_stay_for_stale_answers() {
        let cache = Cache::new(10, 1 << 20);
        let key: Key = (ObjectKind::Domain, "example.com".to_owned());
        cache.insert(
            key.clone(),
            answer(300),
            vec![short_key(&[0x40, 1, 2])],
            Instant::now(),
        );
        assert!(matches!(cache.get(&key, Instant::now()), Cached::Fresh(..)));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(matches!(cache.get(&key, Instant::now()), Cached::Fresh(..)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            cache.get(&key, Instant::now()),
            Cached::Expired(_)
        ));
        // A change naming one of its keys drops it; others stay.
        let other: Key = (ObjectKind::Domain, "other.example".to_owned());
        cache.insert(
            other.clone(),
            answer(300),
            vec![short_key(&[0x40, 9, 9])],
            Instant::now(),
        );
        let mut changed = Changes::default();
        changed.add(&[0x40, 1, 2]);
        assert_eq!(cache.invalidate(&changed), 1);
        assert!(matches!(cache.get(&key, Instant::now()), Cached::Missing));
        assert!(matches!(
            cache.get(&other, Instant::now()),
            Cached::Fresh(..)
        ));
    }

    fn found(kind: &str, hash: &str) -> repnet_protocol::HashMatch {
        repnet_protocol::HashMatch {
            hash: hash.to_owned(),
            kind: kind.to_owned(),
            verdict: repnet_protocol::Verdict::Untrusted,
            threat: None,
            categories: Vec::new(),
            confidence: 90,
            source: None,
            records: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn prefix_answers_are_dropped_by_changes_under_them_and_by_any_file_they_hold() {
        let cache = Cache::new(100, 1 << 20);
        let prefix = |of, bytes: &[u8]| Prefix {
            of,
            bytes: bytes.to_vec(),
        };
        let answer = |matches| {
            Arc::new(PrefixAnswer {
                matches,
                cache_seconds: 3600,
                unknown_cache_seconds: 300,
            })
        };
        let empty_url = prefix(PrefixOf::Url, &[1, 2, 3, 4]);
        let longer = prefix(PrefixOf::Sha256, &[1, 2, 3, 4, 5]);
        let url = prefix(PrefixOf::Url, &[9, 9, 9, 9]);
        let file = prefix(PrefixOf::Md5, &[7, 7, 7, 7]);
        let now = Instant::now();
        cache.insert_prefix(empty_url.clone(), answer(Vec::new()), now);
        cache.insert_prefix(longer.clone(), answer(Vec::new()), now);
        cache.insert_prefix(
            url.clone(),
            answer(vec![found("url", &"09".repeat(32))]),
            now,
        );
        cache.insert_prefix(
            file.clone(),
            answer(vec![found("file", &"07".repeat(16))]),
            now,
        );
        // Empty answers live for the unknown lifetime, the others for the known one.
        tokio::time::advance(Duration::from_secs(301)).await;
        assert!(matches!(
            cache.get_prefix(&empty_url, Instant::now()),
            Some((_, _, false))
        ));
        assert!(matches!(
            cache.get_prefix(&url, Instant::now()),
            Some((_, _, true))
        ));

        // A new URL expression under 01020304 (but not under 0102030405).
        let mut changed = Changes::default();
        let mut key = vec![0x40, 1, 2, 3, 4, 6];
        key.resize(33, 0);
        changed.add(&key);
        assert_eq!(cache.invalidate(&changed), 1);
        assert!(cache.get_prefix(&empty_url, Instant::now()).is_none());
        assert!(cache.get_prefix(&longer, Instant::now()).is_some());
        // A file changed under another of its hashes: the answer holding a file goes, the
        // one holding only a URL stays.
        let mut changed = Changes::default();
        let mut key = vec![0x01, 0xee];
        key.resize(33, 0);
        changed.add(&key);
        assert_eq!(cache.invalidate(&changed), 1);
        assert!(cache.get_prefix(&file, Instant::now()).is_none());
        assert!(cache.get_prefix(&url, Instant::now()).is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = Cache::new(100, 1 << 20);
        for n in 0..1_000 {
            cache.insert(
                (ObjectKind::Domain, format!("d{n}.example")),
                answer(60),
                Vec::new(),
                Instant::now(),
            );
        }
        assert!(cache.len() <= 110, "{}", cache.len());
    }

    #[test]
    fn large_answers_are_bounded_by_bytes() {
        // The review's 8 KB URLs: 100,000 entries took 1.67 GB. 1 MiB holds about 120.
        let cache = Cache::new(100_000, 1 << 20);
        for n in 0..2_000 {
            cache.insert(
                (
                    ObjectKind::Url,
                    format!("http://x.example/{n}/{}", "a".repeat(8000)),
                ),
                answer(60),
                Vec::new(),
                Instant::now(),
            );
        }
        assert!(cache.bytes() <= 1 << 20, "{}", cache.bytes());
        assert!((50..=140).contains(&cache.len()), "{}", cache.len());
    }
}
