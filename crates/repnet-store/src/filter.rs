//! A negative-lookup filter in front of the object database: most lookups of unknown objects
//! are answered without descending the B-tree.
//!
//! The filter is a binary fuse filter (xorf) over a hash of every key, built from a snapshot,
//! plus the set of keys written since the build began. It never says "absent" for a key
//! that is there: writers add their new keys to the set *before* they commit, and a build
//! starts collecting that set before it opens its snapshot, so every key is either in the
//! snapshot or in the set. When the filter is being (re)built, or after a rebuild of the
//! object database, it is disabled and every lookup goes to the B-tree.

use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use xorf::{BinaryFuse8, Filter as _};

/// The hash of a key, as the filter sees it.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Keys are already hashed: the set uses them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashedSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

#[derive(Default)]
struct State {
    /// The keys of the snapshot the filter was built from; `None` while disabled.
    fuse: Option<BinaryFuse8>,
    /// Keys written since the build began.
    added: HashedSet,
}

#[derive(Default)]
pub(crate) struct KeyFilter {
    /// Read for every lookup batch, written when keys are added or a build is installed.
    state: RwLock<State>,
    /// Bumped whenever the filter is disabled, so that a build from an older snapshot is
    /// never installed over a newer state.
    generation: AtomicU64,
    /// Keys checked while the filter was enabled, and those it answered "absent", since the
    /// store opened (the console's filter hit rate). Added once per read, not per key.
    checked: AtomicU64,
    answered: AtomicU64,
}

/// A read guard for a batch of checks.
pub(crate) struct FilterGuard<'a> {
    state: RwLockReadGuard<'a, State>,
    filter: &'a KeyFilter,
    checked: Cell<u64>,
    answered: Cell<u64>,
}

impl FilterGuard<'_> {
    /// False only if the key is certainly not in the database.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        match &self.state.fuse {
            None => true,
            Some(fuse) => {
                let hash = key_hash(key);
                let may = fuse.contains(&hash) || self.state.added.contains(&hash);
                self.checked.set(self.checked.get() + 1);
                self.answered.set(self.answered.get() + u64::from(!may));
                may
            }
        }
    }
}

impl Drop for FilterGuard<'_> {
    fn drop(&mut self) {
        if self.checked.get() > 0 {
            self.filter
                .checked
                .fetch_add(self.checked.get(), Ordering::Relaxed);
            self.filter
                .answered
                .fetch_add(self.answered.get(), Ordering::Relaxed);
        }
    }
}

impl KeyFilter {
    pub(crate) fn read(&self) -> FilterGuard<'_> {
        FilterGuard {
            state: self.state.read().unwrap_or_else(PoisonError::into_inner),
            filter: self,
            checked: Cell::new(0),
            answered: Cell::new(0),
        }
    }

    /// Keys checked while enabled, and those answered "absent", since the store opened.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.checked.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
        )
    }

    /// Records keys a writer is about to commit.
    pub(crate) fn note_added(&self, hashes: &[u64]) {
        if hashes.is_empty() {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.added.extend(hashes.iter().copied());
    }

    /// Disables the filter and starts a new generation; the caller builds from a snapshot
    /// opened afterwards (with writers excluded while it opens it) and installs with
    /// [`install`](KeyFilter::install).
    pub(crate) fn begin_build(&self) -> u64 {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.fuse = None;
        state.added.clear();
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Installs a filter built from `hashes` for `generation`, unless a newer generation
    /// began meanwhile. Returns whether it was installed.
    pub(crate) fn install(&self, generation: u64, mut hashes: Vec<u64>) -> bool {
        hashes.sort_unstable();
        hashes.dedup();
        let fuse = match BinaryFuse8::try_from(&hashes) {
            Ok(fuse) => fuse,
            Err(error) => {
                tracing::warn!(%error, keys = hashes.len(), "cannot build the negative-lookup filter; lookups go to the B-tree");
                return false;
            }
        };
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return false;
        }
        state.fuse = Some(fuse);
        true
    }

    /// Whether the set of keys added since the build is large enough that a rebuild pays.
    pub(crate) fn wants_rebuild(&self) -> bool {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match &state.fuse {
            Some(fuse) => state.added.len() > 100_000 && state.added.len() > fuse.len() / 64,
            None => false,
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .fuse
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let filter = KeyFilter::default();
        let keys: Vec<Vec<u8>> = (0u64..50_000).map(|i| i.to_le_bytes().to_vec()).collect();
        let generation = filter.begin_build();
        // A key written while the filter is built is covered by the added set.
        filter.note_added(&[key_hash(b"late")]);
        assert!(filter.install(generation, keys.iter().map(|k| key_hash(k)).collect()));
        let guard = filter.read();
        assert!(keys.iter().all(|k| guard.may_contain(k)));
        assert!(guard.may_contain(b"late"));
        let false_positives = (50_000u64..150_000)
            .filter(|i| guard.may_contain(&i.to_le_bytes()))
            .count();
        assert!(
            false_positives < 1_000,
            "{false_positives} false positives in 100,000"
        );
        drop(guard);
        assert_eq!(
            filter.counts(),
            (150_001, 100_000 - false_positives as u64),
            "every check counted once the read ends"
        );
    }

    #[test]
    fn a_stale_build_is_not_installed() {
        let filter = KeyFilter::default();
        let old = filter.begin_build();
        let _new = filter.begin_build();
        assert!(!filter.install(old, vec![1, 2, 3]));
        assert!(!filter.is_enabled());
        assert!(
            filter.read().may_contain(b"anything"),
            "disabled: everything may be there"
        );
    }
}
