//! The embedded backend: LMDB through heed.
//!
//! Layout (all databases map bytes to bytes):
//!
//! | database | key | value |
//! |---|---|---|
//! | `objects` | object key (`key.rs`) | record (`record.rs`) |
//! | `names` | name id, u32 big-endian | UTF-8 name (feed or threat) |
//! | `name_ids` | UTF-8 name | name id, u32 big-endian |
//! | `local` | object key of a local verdict | comment and time it was set |
//! | `meta` | `format`, `next_name_id`, `active_objects`; `sequence`, `changes_floor`; `log_id`; `upstream_cursor` | u32 little-endian; u64 little-endian; 16 bytes; log id and u64 |
//! | `licences` | SHA-256 of a licence key | the key's id, label and dates (`lmdb/licences.rs`) |
//! | `changes` | sequence number, u64 big-endian | the object key that changed (`lmdb/changes.rs`) |
//! | `events` | arrival time and number, u64 big-endian each | a statistics event (`lmdb/statistics.rs`) |
//! | `stats` | object key | the object's statistics: distinct devices, counts (`lmdb/statistics.rs`) |
//! | `stats_dirty` | object key | the mark of the last change (u64 big-endian; empty before 0.10): the aggregate changed since the engine looked |
//! | `review` | object key | a false-positive report awaiting the administrator |
//!
//! There are two object databases and `meta.active_objects` says which one holds the
//! knowledge base: a large bulk import rebuilds it into the other one in key order (append
//! mode: every page written once, full) and switches in the same transaction.
//!
//! Durability is LMDB's: a write transaction is on disk when its commit returns, and a crash
//! at any moment leaves the last committed state. A `repnet.lock` file held with an exclusive
//! lock keeps a second process out of the directory.

#![allow(unsafe_code)] // Opening and resizing an LMDB environment are `unsafe` in heed.

mod changes;
pub(crate) mod licences;
mod port;
pub(crate) mod statistics;

pub(crate) use port::Lmdb;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls};
use repnet_model::{Object, ObjectKind, Source, Timestamp, builtin_entries};

use crate::core::{CachedName, NameCache, Snapshot, Transaction};
use crate::filter::{FilterGuard, KeyFilter, key_hash};
use crate::key::{ObjectKey, decode_key, is_legacy};
use crate::record::{self, Mutation, Reader, StoredRecord, put_varint, source_id};
use crate::{
    Change, Knowledge, LocalVerdict, Outcome, PrefixMatch, SearchPrefix, StoreError, StoreOptions,
    StoreStats,
};

/// The store-wide format version. Bump it only with a migration in [`MIGRATIONS`].
const FORMAT_VERSION: u32 = 2;

/// Whole-store migrations: entry `i` upgrades a store of format `i + 1` to `i + 2`. Record-level
/// changes need none (see `record.rs`); this is for changes of layout.
type Migration = fn(&mut RwTxn<'_>, &Databases) -> Result<(), StoreError>;
const MIGRATIONS: &[Migration] = &[migrate_1_to_2];

/// Round map sizes to this, a multiple of every page size LMDB runs with.
const MAP_ALIGN: usize = 1 << 20;

/// The databases of one environment.
#[derive(Clone, Copy)]
struct Databases {
    /// The two object databases; `LmdbStore::active` says which one is current.
    objects: [Database<Bytes, Bytes>; 2],
    names: Database<Bytes, Bytes>,
    name_ids: Database<Bytes, Bytes>,
    local: Database<Bytes, Bytes>,
    meta: Database<Bytes, Bytes>,
    licences: Database<Bytes, Bytes>,
    changes: Database<Bytes, Bytes>,
    events: Database<Bytes, Bytes>,
    stats: Database<Bytes, Bytes>,
    stats_dirty: Database<Bytes, Bytes>,
    review: Database<Bytes, Bytes>,
    engine_review: Database<Bytes, Bytes>,
}

pub(crate) struct LmdbStore {
    env: Env<WithoutTls>,
    dbs: Databases,
    /// Id → name for committed names; read on every lookup, written after each commit that
    /// added names. An `RwLock` because reads vastly outnumber writes.
    names: RwLock<NameCache>,
    /// Held shared by every read transaction and exclusively while the map is resized: LMDB
    /// allows resizing only when no transaction of this process is active.
    map_guard: RwLock<()>,
    /// Serialises writers, so that the writer that hits a full map can resize it knowing no
    /// other write transaction is open.
    writer: Mutex<()>,
    /// Which of `dbs.objects` is current. Changed only by a rebuild, while it holds
    /// `map_guard` exclusively around its commit, so a reader (which holds `map_guard` shared
    /// for its whole transaction) always pairs a snapshot with the right database.
    active: AtomicUsize,
    /// Answers "certainly absent" for most unknown keys without a B-tree descent.
    filter: KeyFilter,
    /// Whether `filter` is built and used (a server wants it; a one-off import does not).
    use_filter: bool,
    /// Held by the filter build for its whole run: one build at a time, and `close` waits
    /// for the one running.
    filter_build: Mutex<()>,
    /// Signalled when a write made the filter worth building again.
    filter_wanted: tokio::sync::Notify,
    /// Set when the store closes: a running filter build stops at its next chunk.
    closing: AtomicBool,
    /// Most entries the change log keeps.
    change_log_max: u64,
    /// Whether any statistics are stored: lookups read aggregates only then.
    has_stats: AtomicBool,
    dir: PathBuf,
    /// Held (with its exclusive lock) for as long as the store is open.
    _lock_file: File,
}

impl std::fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Takes the directory's lock file, or explains who holds it.
fn lock_directory(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("repnet.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Io {
            action: "open the lock file",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(StoreError::Io {
                action: "lock",
                path,
                source,
            });
        }
    }
    // Record who holds the lock, for the message another process shows.
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    if let Err(source) = written {
        return Err(StoreError::Io {
            action: "write",
            path,
            source,
        });
    }
    Ok(file)
}

fn round_up(size: usize) -> usize {
    size.div_ceil(MAP_ALIGN).saturating_mul(MAP_ALIGN)
}

/// A write that failed, telling the retry loop whether growing the map would help.
enum WriteError {
    MapFull,
    Other(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(error: StoreError) -> WriteError {
        WriteError::Other(error)
    }
}

impl LmdbStore {
    pub(crate) fn open(dir: &Path, options: &StoreOptions) -> Result<LmdbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "create the data directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let lock_file = lock_directory(dir)?;
        let existing = std::fs::metadata(dir.join("data.mdb"))
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let map_size = round_up(
            options
                .initial_map_size
                .max(existing.saturating_mul(2))
                .max(MAP_ALIGN),
        );

        let mut open_options = EnvOpenOptions::new().read_txn_without_tls();
        open_options
            .map_size(map_size)
            .max_dbs(16)
            .max_readers(1024);
        // SAFETY: NO_READ_AHEAD only changes the kernel's read-ahead advice for the map; it
        // has no memory-safety implications.
        unsafe { open_options.flags(EnvFlags::NO_READ_AHEAD) };
        // SAFETY: heed requires that the same environment is not opened twice in one process
        // with different options and that the files are not modified by other means while
        // open. The exclusive lock on `repnet.lock`, taken above and held for the lifetime of
        // this value, keeps every other opener out, in this process and in others.
        let env = unsafe { open_options.open(dir) }.map_err(|error| backend(dir, error))?;

        let mut txn = env.write_txn().map_err(|error| backend(dir, error))?;
        let create = |txn: &mut RwTxn<'_>, name: &str| {
            env.create_database::<Bytes, Bytes>(txn, Some(name))
                .map_err(|error| backend(dir, error))
        };
        let dbs = Databases {
            objects: [create(&mut txn, "objects")?, create(&mut txn, "objects.1")?],
            names: create(&mut txn, "names")?,
            name_ids: create(&mut txn, "name_ids")?,
            local: create(&mut txn, "local")?,
            meta: create(&mut txn, "meta")?,
            licences: create(&mut txn, "licences")?,
            changes: create(&mut txn, "changes")?,
            events: create(&mut txn, "events")?,
            stats: create(&mut txn, "stats")?,
            stats_dirty: create(&mut txn, "stats_dirty")?,
            review: create(&mut txn, "review")?,
            engine_review: create(&mut txn, "engine_review")?,
        };
        migrate(dir, &mut txn, &dbs)?;
        LmdbStore::ensure_log_id(&mut txn, dbs.meta).map_err(|error| backend(dir, error))?;
        let active = read_u32(&txn, dbs.meta, b"active_objects")
            .map_err(|error| backend(dir, error))?
            .unwrap_or(0) as usize;
        if active > 1 {
            return Err(StoreError::Corrupt(format!(
                "active object database {active}"
            )));
        }
        let has_stats = !dbs
            .stats
            .is_empty(&txn)
            .map_err(|error| backend(dir, error))?;
        txn.commit().map_err(|error| backend(dir, error))?;
        crate::bulk::remove_stale_temp_dirs(dir);

        let store = LmdbStore {
            env,
            dbs,
            names: RwLock::new(NameCache::default()),
            map_guard: RwLock::new(()),
            writer: Mutex::new(()),
            active: AtomicUsize::new(active),
            filter: KeyFilter::default(),
            use_filter: options.negative_filter,
            filter_build: Mutex::new(()),
            filter_wanted: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            change_log_max: options.change_log_max,
            has_stats: AtomicBool::new(has_stats),
            dir: dir.to_path_buf(),
            _lock_file: lock_file,
        };
        store.load_names()?;
        Ok(store)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn load_names(&self) -> Result<(), StoreError> {
        let _map = self
            .map_guard
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let txn = self.env.read_txn().map_err(|e| self.error(e))?;
        let mut cache = NameCache::default();
        for entry in self.dbs.names.iter(&txn).map_err(|e| self.error(e))? {
            let (id, text) = entry.map_err(|e| self.error(e))?;
            let id = <[u8; 4]>::try_from(id)
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("a name id is not 4 bytes".to_owned()))?;
            let text = std::str::from_utf8(text)
                .map_err(|_| StoreError::Corrupt(format!("name {id} is not UTF-8")))?;
            cache.insert(id, CachedName::new(text));
        }
        *self.names.write().unwrap_or_else(PoisonError::into_inner) = cache;
        Ok(())
    }

    /// The current object database. Readers call it inside their transaction, holding
    /// `map_guard`; writers hold `writer`.
    fn objects(&self) -> Database<Bytes, Bytes> {
        self.dbs.objects[self.active.load(Ordering::Acquire)]
    }

    fn error(&self, error: heed::Error) -> StoreError {
        backend(&self.dir, error)
    }

    /// LMDB's own copy (`mdb_env_copyfd2` with `MDB_CP_COMPACT`): one read transaction, free
    /// pages left out, so a backup is consistent and no larger than the data.
    pub(crate) fn backup(&self, out: &mut File) -> Result<(), StoreError> {
        self.env
            .copy_to_file(out, heed::CompactionOption::Enabled)
            .map_err(|error| self.error(error))
    }

    // ----- reads -------------------------------------------------------------------------

    /// Runs `read` on one consistent snapshot, every key looked up in the B-tree. For reads
    /// of any length: exports, pages of changes, scans.
    fn read<T>(
        &self,
        read: impl FnOnce(&SnapshotReader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_with(false, read)
    }

    /// Runs `read` on one consistent snapshot, unknown keys answered by the negative-lookup
    /// filter. Only for reads that are short whatever a client does (a batch of lookups): the
    /// filter's guard is held throughout, and a writer waiting to record its keys in the
    /// filter holds up every reader that comes after it.
    fn read_filtered<T>(
        &self,
        read: impl FnOnce(&SnapshotReader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_with(true, read)
    }

    fn read_with<T>(
        &self,
        filtered: bool,
        read: impl FnOnce(&SnapshotReader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _map = self
            .map_guard
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // The filter's guard is taken before the snapshot: a writer records its new keys in
        // the filter before committing, so it cannot commit between the two.
        let filter = filtered.then(|| self.filter.read());
        let txn = self.env.read_txn().map_err(|e| self.error(e))?;
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        read(&SnapshotReader {
            store: self,
            txn: &txn,
            names: &names,
            filter,
        })
    }

    pub(crate) fn lookup(&self, objects: &[Object]) -> Result<Vec<Knowledge>, StoreError> {
        self.read_filtered(|reader| {
            objects
                .iter()
                .map(|object| reader.knowledge(object))
                .collect()
        })
    }

    pub(crate) fn search_prefixes(
        &self,
        prefixes: &[SearchPrefix],
        limit: usize,
    ) -> Result<(Vec<PrefixMatch>, bool), StoreError> {
        self.read_filtered(|reader| {
            let mut matches = Vec::new();
            for key_prefix in prefixes.iter().flat_map(crate::core::key_prefixes) {
                let found = self
                    .objects()
                    .prefix_iter(reader.txn, &key_prefix)
                    .map_err(|e| self.error(e))?;
                for entry in found {
                    let (key, _) = entry.map_err(|e| self.error(e))?;
                    let Some(found) = reader.prefix_match(key)? else {
                        continue;
                    };
                    if matches.len() == limit {
                        return Ok((matches, true));
                    }
                    matches.push(found);
                }
            }
            Ok((matches, false))
        })
    }

    pub(crate) fn local_verdicts(&self) -> Result<Vec<LocalVerdict>, StoreError> {
        self.read(|reader| self.read_local_verdicts(reader))
    }

    fn read_local_verdicts(
        &self,
        reader: &SnapshotReader<'_>,
    ) -> Result<Vec<LocalVerdict>, StoreError> {
        let mut verdicts = Vec::new();
        for entry in self.dbs.local.iter(reader.txn).map_err(|e| self.error(e))? {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            let local = decode_local(value)?;
            verdicts.extend(reader.local_verdict(
                key,
                local.object,
                local.comment,
                local.expires,
            )?);
        }
        Ok(verdicts)
    }

    pub(crate) fn stats(&self) -> Result<StoreStats, StoreError> {
        let _map = self
            .map_guard
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let txn = self.env.read_txn().map_err(|e| self.error(e))?;
        let keys = self.objects().len(&txn).map_err(|e| self.error(e))?;
        let disk_bytes = std::fs::metadata(self.dir.join("data.mdb"))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(StoreStats {
            keys,
            disk_bytes,
            map_bytes: self.env.info().map_size as u64,
            filter_ready: self.filter.is_enabled(),
            filter_checked: self.filter.counts().0,
            filter_answered: self.filter.counts().1,
        })
    }

    // ----- writes ------------------------------------------------------------------------

    pub(crate) fn apply(&self, changes: &[Change]) -> Result<Vec<Outcome>, StoreError> {
        self.write(|writer| {
            changes
                .iter()
                .map(|change| writer.apply(change))
                .collect::<Result<Vec<_>, _>>()
        })
    }

    /// Runs `work` in one write transaction, holding the writer lock; when the memory map is
    /// full, grows it and runs `work` again in a new transaction. For every write but the
    /// bulk import (which reserves room first and may switch object databases).
    fn write<T>(
        &self,
        mut work: impl FnMut(&mut TxnWriter<'_, '_>) -> Result<T, WriteError>,
    ) -> Result<T, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match self.write_txn(|writer| Ok((work(writer)?, None))) {
                Ok(result) => return Ok(result),
                Err(WriteError::MapFull) => self.grow_map()?,
                Err(WriteError::Other(error)) => return Err(error),
            }
        }
    }

    /// Runs `work` in a write transaction and commits it. `work` returns its result and,
    /// for a rebuild, the object database to switch to in the same commit. Names interned by
    /// `work` are published to the cache only once committed: an aborted transaction's ids
    /// are reused by the next one. The caller holds `writer`.
    fn write_txn<T>(
        &self,
        work: impl FnOnce(&mut TxnWriter<'_, '_>) -> Result<(T, Option<usize>), WriteError>,
    ) -> Result<T, WriteError> {
        let txn = self.env.write_txn().map_err(|e| self.write_error(e))?;
        let committed = self.names.read().unwrap_or_else(PoisonError::into_inner);
        let mut writer = TxnWriter {
            store: self,
            next_name_id: read_u32(&txn, self.dbs.meta, b"next_name_id")
                .map_err(|e| self.write_error(e))?
                .unwrap_or(0),
            txn,
            committed: &committed,
            new_names: Vec::new(),
            buffer: Vec::with_capacity(256),
            new_keys: Vec::new(),
            changed: changes::ChangedKeys::new(&self.dir, self.change_log_max),
        };
        let (result, switch_to) = work(&mut writer)?;
        let TxnWriter {
            mut txn,
            next_name_id,
            new_names,
            new_keys,
            changed,
            ..
        } = writer;
        self.commit_changes(&mut txn, changed)?;
        // Before the commit makes them visible: see `filter.rs`.
        self.filter.note_added(&new_keys);
        drop(committed);
        if !new_names.is_empty() {
            self.dbs
                .meta
                .put(&mut txn, b"next_name_id", &next_name_id.to_le_bytes())
                .map_err(|e| self.write_error(e))?;
        }
        match switch_to {
            Some(index) => {
                // No reader may pair the new snapshot with the old database or the reverse:
                // commit and switch while no read transaction is open.
                let _exclusive = self
                    .map_guard
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                txn.commit().map_err(|e| self.write_error(e))?;
                self.active.store(index, Ordering::Release);
            }
            None => txn.commit().map_err(|e| self.write_error(e))?,
        }
        if !new_names.is_empty() {
            let mut cache = self.names.write().unwrap_or_else(PoisonError::into_inner);
            for (id, name) in new_names {
                cache.insert(id, name);
            }
        }
        Ok(result)
    }

    fn write_error(&self, error: heed::Error) -> WriteError {
        match error {
            heed::Error::Mdb(MdbError::MapFull) => WriteError::MapFull,
            other => WriteError::Other(self.error(other)),
        }
    }

    /// Doubles the memory map. Called by the writer, between transactions.
    fn grow_map(&self) -> Result<(), StoreError> {
        let _exclusive = self
            .map_guard
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.env.info().map_size;
        let new_size = round_up(current.saturating_mul(2));
        tracing::info!(
            dir = %self.dir.display(),
            from_bytes = current,
            to_bytes = new_size,
            "growing the knowledge base's memory map"
        );
        // SAFETY: LMDB allows resizing when no transaction of this process is active. Writers
        // are serialised by `self.writer`, which our caller holds, and it has dropped its own
        // transaction; every reader holds `map_guard` shared for the life of its transaction,
        // and we hold it exclusively.
        unsafe { self.env.resize(new_size) }.map_err(|e| self.error(e))
    }

    /// Builds the negative-lookup filter and installs it. Blocking: seconds for tens of
    /// millions of keys; lookups go to the B-tree meanwhile. Reads the keys in chunks, each in
    /// its own short read transaction, so that it neither pins old pages for long nor delays
    /// closing the store: every key present after `begin_build` is in a later chunk's
    /// snapshot or in the filter's added set.
    /// `stop` is asked between chunks: a build told to stop installs nothing.
    pub(crate) fn build_filter(&self, stop: &dyn Fn() -> bool) -> Result<(), StoreError> {
        const CHUNK: usize = 1 << 16;
        if !self.use_filter {
            return Ok(());
        }
        // One build at a time: a second caller finds the first under way and leaves it.
        let Ok(_building) = self.filter_build.try_lock() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        // With writers held off, start collecting new keys; snapshots opened from now on see
        // every key committed before.
        let generation = {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            self.filter.begin_build()
        };
        let mut hashes = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            if self.closing.load(Ordering::SeqCst) || stop() {
                return Ok(());
            }
            let _map = self
                .map_guard
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let txn = self.env.read_txn().map_err(|e| self.error(e))?;
            let objects = self.objects();
            let range = match &after {
                None => (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
                Some(key) => (
                    std::ops::Bound::Excluded(key.as_slice()),
                    std::ops::Bound::Unbounded,
                ),
            };
            let mut read = 0;
            for entry in objects.range(&txn, &range).map_err(|e| self.error(e))? {
                let (key, _) = entry.map_err(|e| self.error(e))?;
                hashes.push(key_hash(key));
                read += 1;
                if read == CHUNK {
                    after = Some(key.to_vec());
                    break;
                }
            }
            if read < CHUNK {
                break;
            }
        }
        let keys = hashes.len();
        if self.filter.install(generation, hashes) {
            tracing::info!(
                keys,
                seconds = started.elapsed().as_secs_f64(),
                "negative-lookup filter ready"
            );
        }
        Ok(())
    }

    /// Stops background work and waits for it, so that the store closes (and releases its
    /// directory) when the last handle is dropped: a filter build under way stops at its
    /// next chunk.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        drop(
            self.filter_build
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// Whether the filter should be built: it is wanted and missing, or enough keys were
    /// added since it was built that rebuilding pays.
    pub(crate) fn wants_filter(&self) -> bool {
        self.use_filter
            && !self.closing.load(Ordering::SeqCst)
            && (!self.filter.is_enabled() || self.filter.wants_rebuild())
    }

    pub(crate) fn filter_ready(&self) -> bool {
        self.filter.is_enabled()
    }

    /// Wakes whoever waits in [`filter_wanted`](Self::filter_wanted) if a build is due.
    pub(crate) fn note_writes(&self) {
        if self.wants_filter() {
            self.filter_wanted.notify_one();
        }
    }

    /// Resolves when a write made a filter build due (at once if one was signalled since the
    /// last call).
    pub(crate) async fn filter_wanted(&self) {
        self.filter_wanted.notified().await
    }

    /// Makes sure every built-in test entry is stored as the model defines it, writing only
    /// the entries that are missing or differ (so restarts do not rewrite them).
    pub(crate) fn seed_builtin(&self, now: Timestamp) -> Result<(), StoreError> {
        let entries = builtin_entries(now);
        let objects: Vec<Object> = entries.iter().map(|e| e.object.clone()).collect();
        let known = self.lookup(&objects)?;
        let changes = crate::core::builtin_changes(entries, known);
        if !changes.is_empty() {
            self.apply(&changes)?;
        }
        Ok(())
    }
}

use crate::bulk::BulkOutcome;

impl crate::bulk::Applier for LmdbStore {
    fn bulk_apply(&self, import: &crate::bulk::BulkImport) -> Result<BulkOutcome, StoreError> {
        LmdbStore::bulk_apply(self, import)
    }

    fn note_writes(&self) {
        LmdbStore::note_writes(self)
    }

    fn dir(&self) -> &std::path::Path {
        LmdbStore::dir(self)
    }
}

/// The state of a rebuild of the object database.
struct Rebuild {
    old_index: usize,
    new_index: usize,
    /// The sources an import replaces: their records on keys the import does not name go.
    replaced: Vec<u32>,
    written: u64,
    retracted: u64,
}

/// A sorted import stream.
type EntryStream<'a> = Box<dyn Iterator<Item = Result<crate::bulk::Entry, StoreError>> + 'a>;

/// One key of an import and every mutation to it, in the order they were added.
type Group = (crate::bulk::EntryKey, smallvec::SmallVec<[Mutation; 1]>);

/// Entries of a sorted import stream, grouped by key.
struct Groups<'a> {
    stream: EntryStream<'a>,
    /// The first entry of the next group, read ahead.
    ahead: Option<crate::bulk::Entry>,
}

impl<'a> Groups<'a> {
    fn new(mut stream: EntryStream<'a>) -> Result<Groups<'a>, StoreError> {
        let ahead = stream.next().transpose()?;
        Ok(Groups { stream, ahead })
    }

    fn peek_key(&self) -> Option<&[u8]> {
        self.ahead.as_ref().map(|(key, _)| key.as_slice())
    }

    fn next_group(&mut self) -> Result<Option<Group>, StoreError> {
        let Some((key, first)) = self.ahead.take() else {
            return Ok(None);
        };
        let mut mutations = smallvec::smallvec![first];
        loop {
            match self.stream.next().transpose()? {
                Some((next_key, mutation)) if next_key == key => mutations.push(mutation),
                other => {
                    self.ahead = other;
                    return Ok(Some((key, mutations)));
                }
            }
        }
    }
}

/// Import-local name ids turned into the store's, interning new names as they come.
struct NameMap<'n> {
    names: &'n [String],
    sources: Vec<Option<u32>>,
    threats: Vec<Option<u32>>,
}

impl<'n> NameMap<'n> {
    fn new(names: &'n [String]) -> NameMap<'n> {
        NameMap {
            names,
            sources: vec![None; names.len()],
            threats: vec![None; names.len()],
        }
    }

    fn name(&self, id: u32) -> Result<&'n str, WriteError> {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .ok_or_else(|| {
                WriteError::Other(StoreError::Corrupt(format!("import name {id} is missing")))
            })
    }

    /// Resolves every name of `import` now, so that [`remap_resolved`](Self::remap_resolved)
    /// needs no writes (a rebuild holds a cursor on the transaction while it remaps).
    fn resolve_all(
        &mut self,
        writer: &mut TxnWriter<'_, '_>,
        import: &crate::bulk::BulkImport,
    ) -> Result<(), WriteError> {
        for index in 0..self.names.len() {
            let (is_source, is_threat) = import.name_roles(index);
            if is_source {
                let parsed: Source =
                    self.name(index as u32)?
                        .parse()
                        .map_err(|e: repnet_model::ParseError| {
                            WriteError::Other(StoreError::Corrupt(e.to_string()))
                        })?;
                self.sources[index] =
                    Some(writer.source_id(&parsed, true)?.unwrap_or(source_id::LOCAL));
            }
            if is_threat {
                self.threats[index] = Some(writer.name_id(self.name(index as u32)?)?);
            }
        }
        Ok(())
    }

    /// [`remap`](Self::remap) after [`resolve_all`](Self::resolve_all).
    fn remap_resolved(&self, mutation: &mut Mutation) -> Result<(), WriteError> {
        let unresolved = || {
            WriteError::Other(StoreError::Corrupt(
                "an import name was not resolved".to_owned(),
            ))
        };
        let (source_id, threat_id) = match mutation {
            Mutation::Upsert { source, .. } => (&mut source.source_id, source.threat_id.as_mut()),
            Mutation::Retract { source_id } => (source_id, None),
            Mutation::Alias(_) | Mutation::Text(_) => return Ok(()),
        };
        *source_id = self
            .sources
            .get(*source_id as usize)
            .copied()
            .flatten()
            .ok_or_else(unresolved)?;
        if let Some(threat) = threat_id {
            *threat = self
                .threats
                .get(*threat as usize)
                .copied()
                .flatten()
                .ok_or_else(unresolved)?;
        }
        Ok(())
    }

    fn remap(
        &mut self,
        writer: &mut TxnWriter<'_, '_>,
        mutation: &mut Mutation,
    ) -> Result<(), WriteError> {
        let (source_id, threat_id) = match mutation {
            Mutation::Upsert { source, .. } => (&mut source.source_id, source.threat_id.as_mut()),
            Mutation::Retract { source_id } => (source_id, None),
            Mutation::Alias(_) | Mutation::Text(_) => return Ok(()),
        };
        let index = *source_id as usize;
        *source_id = match self.sources.get(index).copied().flatten() {
            Some(id) => id,
            None => {
                let parsed: Source =
                    self.name(*source_id)?
                        .parse()
                        .map_err(|e: repnet_model::ParseError| {
                            WriteError::Other(StoreError::Corrupt(e.to_string()))
                        })?;
                let id = writer.source_id(&parsed, true)?.unwrap_or(source_id::LOCAL);
                self.sources[index] = Some(id);
                id
            }
        };
        if let Some(threat) = threat_id {
            let index = *threat as usize;
            *threat = match self.threats.get(index).copied().flatten() {
                Some(id) => id,
                None => {
                    let id = writer.name_id(self.name(*threat)?)?;
                    self.threats[index] = Some(id);
                    id
                }
            };
        }
        Ok(())
    }
}

impl LmdbStore {
    /// Applies a bulk import in one transaction (see `bulk.rs`); returns the number of keys
    /// written and whether the object database was rebuilt.
    pub(crate) fn bulk_apply(
        &self,
        import: &crate::bulk::BulkImport,
    ) -> Result<BulkOutcome, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Room for a second copy of the knowledge base and the import, so that a rebuild does
        // not have to start over for a bigger map half-way.
        let file = std::fs::metadata(self.dir.join("data.mdb"))
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let wanted = file
            .saturating_mul(2)
            .saturating_add((import.mutations() as usize).saturating_mul(192))
            .saturating_add(64 << 20);
        self.reserve_map(wanted)?;
        loop {
            match self.try_bulk_apply(import) {
                Ok(outcome) => return Ok(outcome),
                Err(WriteError::MapFull) => self.grow_map()?,
                Err(WriteError::Other(error)) => return Err(error),
            }
        }
    }

    fn reserve_map(&self, bytes: usize) -> Result<(), StoreError> {
        if self.env.info().map_size >= bytes {
            return Ok(());
        }
        let _exclusive = self
            .map_guard
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // SAFETY: as in `grow_map`: the caller holds `writer` and has no transaction open;
        // readers are excluded by `map_guard`.
        unsafe { self.env.resize(round_up(bytes)) }.map_err(|e| self.error(e))
    }

    fn try_bulk_apply(&self, import: &crate::bulk::BulkImport) -> Result<BulkOutcome, WriteError> {
        self.write_txn(|writer| {
            if let Some(header) = import.stream_header() {
                self.advance_cursor(&mut writer.txn, header)?;
            }
            let mut names = NameMap::new(import.names());
            let existing = self
                .objects()
                .len(&writer.txn)
                .map_err(|e| self.write_error(e))?;
            // Rewriting the whole tree costs one pass over what is there; updating in place
            // costs a B-tree descent and a page copy per key. Rebuild when the import is big
            // enough, and when it replaces a source that has records: finding them visits
            // every record anyway. (A source never stored before has nothing to retract.)
            let mut replaced = Vec::new();
            for source in import.replaced_sources() {
                replaced.extend(writer.source_id(source, false)?);
            }
            let rebuild = !replaced.is_empty() || import.mutations().saturating_mul(8) >= existing;
            let mut groups = Groups::new(import.stream().map_err(WriteError::Other)?)
                .map_err(WriteError::Other)?;
            if rebuild {
                let old_index = self.active.load(Ordering::Acquire);
                let mut state = Rebuild {
                    old_index,
                    new_index: 1 - old_index,
                    replaced,
                    written: 0,
                    retracted: 0,
                };
                self.rebuild_into(writer, import, &mut names, &mut groups, &mut state)?;
                let meta = self.dbs.meta;
                meta.put(
                    &mut writer.txn,
                    b"active_objects",
                    &(state.new_index as u32).to_le_bytes(),
                )
                .map_err(|e| self.write_error(e))?;
                self.dbs.objects[old_index]
                    .clear(&mut writer.txn)
                    .map_err(|e| self.write_error(e))?;
                // The new tree's keys are not in the filter: disable it until it is rebuilt
                // from the new tree (`Store` starts that after the commit).
                self.filter.begin_build();
                let outcome = BulkOutcome {
                    written: state.written,
                    rebuilt: true,
                    retracted: state.retracted,
                };
                return Ok((outcome, Some(state.new_index)));
            }
            let mut written = 0;
            while let Some((key, mut mutations)) = groups.next_group().map_err(WriteError::Other)? {
                let existing = writer.get(&key)?;
                if existing.is_none() {
                    writer.new_keys.push(key_hash(&key));
                }
                let before = existing.unwrap_or_default();
                let mut stored = before.clone();
                let mut changed = false;
                for mutation in &mut mutations {
                    names.remap(writer, mutation)?;
                    changed |= stored.apply(mutation);
                }
                if changed {
                    writer.put_changed(&key, &before, &stored)?;
                    written += 1;
                }
            }
            let outcome = BulkOutcome {
                written,
                rebuilt: false,
                retracted: 0,
            };
            Ok((outcome, None))
        })
    }

    /// Writes the merge of the current object database and the import into the other one, in
    /// key order with LMDB's append mode.
    fn rebuild_into(
        &self,
        writer: &mut TxnWriter<'_, '_>,
        import: &crate::bulk::BulkImport,
        names: &mut NameMap<'_>,
        groups: &mut Groups<'_>,
        rebuild: &mut Rebuild,
    ) -> Result<(), WriteError> {
        let old = self.dbs.objects[rebuild.old_index];
        let new = self.dbs.objects[rebuild.new_index];
        let replaced = std::mem::take(&mut rebuild.replaced);
        new.clear(&mut writer.txn)
            .map_err(|e| self.write_error(e))?;
        // Read the old tree from a snapshot of the last commit, which is what this write
        // transaction started from (the writer lock keeps other writers out).
        let _map = self
            .map_guard
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = self.env.read_txn().map_err(|e| self.write_error(e))?;
        let mut existing = old.iter(&snapshot).map_err(|e| self.write_error(e))?;
        let mut next_existing = existing
            .next()
            .transpose()
            .map_err(|e| self.write_error(e))?;
        names.resolve_all(writer, import)?;
        // One cursor for every append: it stays on the last page, where a put per key would
        // search the tree from its root each time.
        let buffer = &mut writer.buffer;
        let changed_keys = &mut writer.changed;
        let mut cursor = new
            .iter_mut(&mut writer.txn)
            .map_err(|e| self.write_error(e))?;
        let mut append = |key: &[u8], value: &[u8]| {
            // SAFETY: `key` and `value` come from the import, from `buffer`, or from the old
            // database through another transaction's snapshot — never from `new`, the
            // database this cursor modifies.
            unsafe { cursor.put_current_with_options::<Bytes>(heed::PutFlags::APPEND, key, value) }
                .map_err(|e| self.write_error(e))
        };
        loop {
            let take_existing = match (next_existing, groups.peek_key()) {
                (None, None) => break,
                (Some((key, _)), Some(import_key)) => key < import_key,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_existing {
                if let Some((key, value)) = next_existing {
                    match replaced.is_empty() {
                        // Not in the import: what the replaced sources said here is retracted.
                        false => {
                            let mut stored = record::decode(value).map_err(|error| {
                                WriteError::Other(StoreError::Corrupt(error.to_string()))
                            })?;
                            let before = stored.sources.len();
                            stored
                                .sources
                                .retain(|source| !replaced.contains(&source.source_id));
                            if stored.sources.len() == before {
                                append(key, value)?;
                            } else {
                                rebuild.retracted += (before - stored.sources.len()) as u64;
                                changed_keys.note(key)?;
                                if !stored.is_empty() {
                                    buffer.clear();
                                    record::encode(&stored, buffer);
                                    append(key, buffer)?;
                                }
                            }
                        }
                        true => append(key, value)?,
                    }
                }
                next_existing = existing
                    .next()
                    .transpose()
                    .map_err(|e| self.write_error(e))?;
                continue;
            }
            let Some((key, mut mutations)) = groups.next_group().map_err(WriteError::Other)? else {
                continue;
            };
            let before = match next_existing {
                Some((existing_key, value)) if existing_key == key.as_slice() => {
                    next_existing = existing
                        .next()
                        .transpose()
                        .map_err(|e| self.write_error(e))?;
                    record::decode(value).map_err(|error| {
                        WriteError::Other(StoreError::Corrupt(error.to_string()))
                    })?
                }
                _ => StoredRecord::default(),
            };
            let mut stored = before.clone();
            for mutation in &mut mutations {
                names.remap_resolved(mutation)?;
            }
            let mut changed = false;
            for &id in &replaced {
                // A replaced source keeps its record here only if the import says it again
                // (its upsert then keeps the first sighting).
                let restated = mutations.iter().any(
                    |m| matches!(m, Mutation::Upsert { source, .. } if source.source_id == id),
                );
                if !restated {
                    let before = stored.sources.len();
                    stored.sources.retain(|source| source.source_id != id);
                    let removed = (before - stored.sources.len()) as u64;
                    rebuild.retracted += removed;
                    changed |= removed > 0;
                }
            }
            for mutation in &mutations {
                changed |= stored.apply(mutation);
            }
            if changed {
                rebuild.written += 1;
                if before.differs_for_sync(&stored) {
                    changed_keys.note(&key)?;
                }
            }
            if !stored.is_empty() {
                buffer.clear();
                record::encode(&stored, buffer);
                append(&key, buffer)?;
            }
        }
        Ok(())
    }
}

fn backend(dir: &Path, error: heed::Error) -> StoreError {
    StoreError::Backend {
        dir: dir.to_path_buf(),
        message: error.to_string(),
    }
}

fn read_u32(
    txn: &RoTxn<'_>,
    db: Database<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<u32>, heed::Error> {
    Ok(db
        .get(txn, key)?
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
        .map(u32::from_le_bytes))
}

/// Brings the store to [`FORMAT_VERSION`], or refuses a store from a newer repnet.
fn migrate(dir: &Path, txn: &mut RwTxn<'_>, dbs: &Databases) -> Result<(), StoreError> {
    let found = read_u32(txn, dbs.meta, b"format").map_err(|e| backend(dir, e))?;
    let mut version = match found {
        Some(version) => version,
        None => {
            let is_empty = dbs.objects[0].is_empty(txn).map_err(|e| backend(dir, e))?;
            if !is_empty {
                return Err(StoreError::Corrupt(
                    "the store has objects but no format version".to_owned(),
                ));
            }
            FORMAT_VERSION
        }
    };
    if version > FORMAT_VERSION {
        return Err(StoreError::TooNew {
            dir: dir.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    while version < FORMAT_VERSION {
        let Some(step) = version
            .checked_sub(1)
            .and_then(|i| MIGRATIONS.get(i as usize))
        else {
            return Err(StoreError::Corrupt(format!(
                "no migration from format version {version}"
            )));
        };
        tracing::info!(
            from = version,
            to = version + 1,
            "migrating the knowledge base"
        );
        step(txn, dbs)?;
        version += 1;
    }
    if found != Some(FORMAT_VERSION) {
        dbs.meta
            .put(txn, b"format", &FORMAT_VERSION.to_le_bytes())
            .map_err(|e| backend(dir, e))?;
    }
    Ok(())
}

/// Reads within one read transaction, turning stored records into model values.
struct SnapshotReader<'a> {
    store: &'a LmdbStore,
    txn: &'a RoTxn<'a>,
    names: &'a NameCache,
    /// `None`: every key goes to the B-tree.
    filter: Option<FilterGuard<'a>>,
}

impl Snapshot for SnapshotReader<'_> {
    fn prevalence(&self, key: &[u8]) -> Result<u64, StoreError> {
        self.store.prevalence_at(self.txn, key)
    }

    fn record(&self, key: &[u8]) -> Result<Option<StoredRecord>, StoreError> {
        if let Some(filter) = &self.filter
            && !filter.may_contain(key)
        {
            return Ok(None);
        }
        match self
            .store
            .objects()
            .get(self.txn, key)
            .map_err(|e| self.store.error(e))?
        {
            None => Ok(None),
            Some(bytes) => record::decode(bytes)
                .map(Some)
                .map_err(|error| StoreError::Corrupt(error.to_string())),
        }
    }

    fn name(&self, id: u32) -> Result<CachedName, StoreError> {
        if let Some(name) = self.names.get(id) {
            return Ok(name.clone());
        }
        // A name committed after this reader took the cache lock: read it from the snapshot.
        let text = self
            .store
            .dbs
            .names
            .get(self.txn, &id.to_be_bytes())
            .map_err(|e| self.store.error(e))?
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("name {id} is missing")))?;
        Ok(CachedName::new(text))
    }
}

/// Applies changes within one write transaction.
struct TxnWriter<'env, 'names> {
    store: &'env LmdbStore,
    txn: RwTxn<'env>,
    committed: &'names NameCache,
    /// Names added by this transaction, published to the cache after commit.
    new_names: Vec<(u32, CachedName)>,
    next_name_id: u32,
    /// Reused for encoding records.
    buffer: Vec<u8>,
    /// Filter hashes of the keys this transaction creates.
    new_keys: Vec<u64>,
    /// Keys this transaction changed, for the change log.
    changed: changes::ChangedKeys,
}

impl TxnWriter<'_, '_> {
    fn fail(&self, error: heed::Error) -> WriteError {
        self.store.write_error(error)
    }

    fn put(&mut self, key: &[u8], record: &StoredRecord) -> Result<(), WriteError> {
        if record.is_empty() {
            self.store
                .objects()
                .delete(&mut self.txn, key)
                .map_err(|e| self.store.write_error(e))?;
            return Ok(());
        }
        self.buffer.clear();
        record::encode(record, &mut self.buffer);
        self.store
            .objects()
            .put(&mut self.txn, key, &self.buffer)
            .map_err(|e| self.store.write_error(e))
    }
}

impl Transaction for TxnWriter<'_, '_> {
    type Error = WriteError;

    fn get(&self, key: &[u8]) -> Result<Option<StoredRecord>, Self::Error> {
        match self
            .store
            .objects()
            .get(&self.txn, key)
            .map_err(|e| self.fail(e))?
        {
            None => Ok(None),
            Some(bytes) => record::decode(bytes)
                .map(Some)
                .map_err(|error| Self::Error::Other(StoreError::Corrupt(error.to_string()))),
        }
    }

    /// Writes `record` under `key`, which held `before`, and logs the change if other
    /// servers would see it.
    fn put_changed(
        &mut self,
        key: &[u8],
        before: &StoredRecord,
        record: &StoredRecord,
    ) -> Result<(), Self::Error> {
        if before.differs_for_sync(record) {
            self.changed.note(key)?;
        }
        self.put(key, record)
    }

    /// The id of `text`, if it has one.
    fn existing_name_id(&self, text: &str) -> Option<u32> {
        self.committed.by_text.get(text).copied().or_else(|| {
            self.new_names
                .iter()
                .find(|(_, n)| &*n.text == text)
                .map(|(id, _)| *id)
        })
    }

    fn name_id(&mut self, text: &str) -> Result<u32, Self::Error> {
        if let Some(id) = self.existing_name_id(text) {
            return Ok(id);
        }
        let id = self.next_name_id;
        self.next_name_id = id.checked_add(1).ok_or_else(|| {
            Self::Error::Other(StoreError::Corrupt("the name table is full".to_owned()))
        })?;
        let dbs = self.store.dbs;
        dbs.names
            .put(&mut self.txn, &id.to_be_bytes(), text.as_bytes())
            .map_err(|e| self.store.write_error(e))?;
        dbs.name_ids
            .put(&mut self.txn, text.as_bytes(), &id.to_be_bytes())
            .map_err(|e| self.store.write_error(e))?;
        self.new_names.push((id, CachedName::new(text)));
        Ok(id)
    }

    fn note_new_key(&mut self, key: &[u8]) {
        self.new_keys.push(key_hash(key));
    }

    fn put_local(
        &mut self,
        key: &[u8],
        object: &Object,
        comment: Option<&str>,
        expires: Option<Timestamp>,
    ) -> Result<(), WriteError> {
        let value = encode_local_expiring(object, comment, expires);
        self.store
            .dbs
            .local
            .put(&mut self.txn, key, &value)
            .map_err(|e| self.store.write_error(e))
    }

    fn delete_local(&mut self, key: &[u8]) -> Result<(), WriteError> {
        self.store
            .dbs
            .local
            .delete(&mut self.txn, key)
            .map(|_| ())
            .map_err(|e| self.store.write_error(e))
    }
}

/// The value of a `local` entry: a version byte, then the comment's length and bytes.
/// Object kinds as the `local` database stores them. Part of the format: append only.
const LOCAL_KINDS: [(u8, ObjectKind); 5] = [
    (0, ObjectKind::File),
    (1, ObjectKind::Domain),
    (2, ObjectKind::Ip),
    (3, ObjectKind::Certificate),
    (4, ObjectKind::Url),
];

/// What the `local` database keeps about a local verdict: the object as it was given (a URL
/// key holds only a hash), and the administrator's comment.
#[derive(Debug, PartialEq)]
pub(crate) struct LocalEntry {
    /// `None` only in format-1 values, which the migration rewrites.
    pub(super) object: Option<Object>,
    pub(super) comment: Option<String>,
    /// When the local verdict lapses (version 3).
    pub(super) expires: Option<Timestamp>,
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Version 2: `u8 2, u8 kind, varint length + object text, [varint length + comment]`.
/// (Version 1, of format-1 stores: `u8 1, [varint length + comment]`.)
pub(crate) fn encode_local(object: &Object, comment: Option<&str>) -> Vec<u8> {
    encode_local_expiring(object, comment, None)
}

/// A `local` entry, version 2 (object, comment) or, with an expiry, 3 (object, the expiry as
/// a varint of Unix seconds, comment).
pub(crate) fn encode_local_expiring(
    object: &Object,
    comment: Option<&str>,
    expires: Option<Timestamp>,
) -> Vec<u8> {
    let kind = LOCAL_KINDS
        .iter()
        .find(|(_, kind)| *kind == object.kind())
        .map_or(0, |(code, _)| *code);
    let mut out = vec![if expires.is_some() { 3 } else { 2 }, kind];
    put_text(&mut out, &object.to_string());
    if let Some(expires) = expires {
        put_varint(&mut out, expires.0);
    }
    if let Some(comment) = comment {
        put_text(&mut out, comment);
    }
    out
}

pub(crate) fn decode_local(bytes: &[u8]) -> Result<LocalEntry, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("a local verdict's entry {what}"));
    let mut reader = Reader::new(bytes);
    let text = |reader: &mut Reader<'_>| -> Result<String, StoreError> {
        let len = reader.varint().map_err(|_| corrupt("is truncated"))?;
        let text = reader
            .slice(usize::try_from(len).map_err(|_| corrupt("is too long"))?)
            .map_err(|_| corrupt("is truncated"))?;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| corrupt("is not UTF-8"))
    };
    let version = reader.u8().map_err(|_| corrupt("is empty"))?;
    let object = match version {
        1 => None,
        2 | 3 => {
            let code = reader.u8().map_err(|_| corrupt("is truncated"))?;
            let kind = LOCAL_KINDS
                .iter()
                .find(|(c, _)| *c == code)
                .map(|(_, kind)| *kind)
                .ok_or_else(|| corrupt("has an unknown object kind"))?;
            let value = text(&mut reader)?;
            Some(
                Object::parse(kind, &value)
                    .map_err(|e| corrupt(&format!("has an invalid object: {e}")))?,
            )
        }
        _ => return Err(corrupt("has an unknown version")),
    };
    let expires = match version {
        3 => Some(Timestamp(
            reader.varint().map_err(|_| corrupt("is truncated"))?,
        )),
        _ => None,
    };
    let comment = if reader.is_empty() {
        None
    } else {
        Some(text(&mut reader)?)
    };
    Ok(LocalEntry {
        object,
        comment,
        expires,
    })
}

/// Format 1 → 2: domains and IP addresses move from keys of their own bytes to the keys of
/// their expressions (`domain/`, `ip/`), so that URL lookups find them; `local` entries
/// gain the object they are about. Records that meet at one key are merged.
fn migrate_1_to_2(txn: &mut RwTxn<'_>, dbs: &Databases) -> Result<(), StoreError> {
    let heed_error = |error: heed::Error| StoreError::Backend {
        dir: PathBuf::new(),
        message: error.to_string(),
    };
    let decode_error = |error: record::DecodeError| StoreError::Corrupt(error.to_string());
    for objects in dbs.objects {
        let mut legacy = Vec::new();
        for entry in objects.iter(txn).map_err(heed_error)? {
            let (key, value) = entry.map_err(heed_error)?;
            if is_legacy(key) {
                legacy.push((key.to_vec(), value.to_vec()));
            }
        }
        for (old_key, value) in legacy {
            let object = decode_key(&old_key)
                .ok_or_else(|| StoreError::Corrupt("an unreadable format-1 key".to_owned()))?;
            let moved = record::decode(&value).map_err(decode_error)?;
            let new_key = ObjectKey::of(&object);
            let mut merged = match objects.get(txn, new_key.as_bytes()).map_err(heed_error)? {
                Some(bytes) => record::decode(bytes).map_err(decode_error)?,
                None => StoredRecord::default(),
            };
            for source in moved.sources {
                merged.apply(&Mutation::Upsert {
                    source,
                    md5: None,
                    sha1: None,
                });
            }
            merged.prevalence = merged.prevalence.max(moved.prevalence);
            let mut bytes = Vec::new();
            record::encode(&merged, &mut bytes);
            objects
                .put(txn, new_key.as_bytes(), &bytes)
                .map_err(heed_error)?;
            objects.delete(txn, &old_key).map_err(heed_error)?;
        }
    }
    let mut entries = Vec::new();
    for entry in dbs.local.iter(txn).map_err(heed_error)? {
        let (key, value) = entry.map_err(heed_error)?;
        entries.push((key.to_vec(), value.to_vec()));
    }
    for (old_key, value) in entries {
        let entry = decode_local(&value)?;
        if entry.object.is_some() {
            continue;
        }
        let object = decode_key(&old_key).ok_or_else(|| {
            StoreError::Corrupt("an unreadable format-1 local verdict key".to_owned())
        })?;
        let new_key = ObjectKey::of(&object);
        dbs.local.delete(txn, &old_key).map_err(heed_error)?;
        dbs.local
            .put(
                txn,
                new_key.as_bytes(),
                &encode_local(&object, entry.comment.as_deref()),
            )
            .map_err(heed_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StoredSource;
    use repnet_model::{
        Confidence, FileHash, FileHashes, Sha256, SourceRecord, ThreatName, Verdict,
    };

    fn open(dir: &Path) -> crate::Store {
        crate::Store::open(dir, &StoreOptions::default()).expect("open")
    }

    #[tokio::test]
    async fn conformance() {
        let dirs = std::sync::Mutex::new(Vec::new());
        crate::conformance::run_all(&async || {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(dir.path());
            dirs.lock().expect("lock").push(dir);
            store
        })
        .await;
    }

    #[test]
    fn a_second_opener_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = open(dir.path());
        let error = crate::Store::open(dir.path(), &StoreOptions::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("already in use by another repnet process"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let object =
            Object::parse(repnet_model::ObjectKind::Domain, "kept.example").expect("domain");
        {
            let store = open(dir.path());
            let mut record = SourceRecord::new(
                Source::feed("persist").expect("feed"),
                Verdict::Riskware,
                Confidence::new(42).expect("confidence"),
                Timestamp(7),
            );
            record.threat = Some(ThreatName::new("Kept.Threat").expect("threat"));
            store
                .apply(vec![Change::Put {
                    object: object.clone(),
                    hashes: FileHashes::default(),
                    record,
                    comment: None,
                }])
                .await
                .expect("apply");
        }
        let store = open(dir.path());
        let knowledge = store.lookup(&[object]).await.expect("lookup");
        let record = &knowledge[0].records[0];
        assert_eq!(record.verdict, Verdict::Riskware);
        assert_eq!(
            record.threat.as_ref().map(ThreatName::as_str),
            Some("Kept.Threat")
        );
        assert_eq!(record.source.to_string(), "feed:persist");
    }

    #[tokio::test]
    async fn the_map_grows_instead_of_failing_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open(
            dir.path(),
            &StoreOptions {
                initial_map_size: 1 << 20,
                ..StoreOptions::default()
            },
        )
        .expect("open");
        let before = store.stats().await.expect("stats").map_bytes;
        let record = SourceRecord::new(
            Source::feed("growth").expect("feed"),
            Verdict::Untrusted,
            Confidence::MAX,
            Timestamp(1),
        );
        // 100,000 entries need several megabytes: far more than the initial 1 MiB map.
        let objects: Vec<Object> = (0u64..100_000)
            .map(|i| Object::File(FileHash::Sha256(Sha256::digest(&i.to_le_bytes()))))
            .collect();
        for chunk in objects.chunks(25_000) {
            let changes = chunk
                .iter()
                .map(|object| Change::Put {
                    object: object.clone(),
                    hashes: FileHashes::default(),
                    record: record.clone(),
                    comment: None,
                })
                .collect();
            store.apply(changes).await.expect("apply grows the map");
        }
        let stats = store.stats().await.expect("stats");
        assert!(stats.map_bytes > before, "{stats:?}");
        let knowledge = store.lookup(&objects[99_990..]).await.expect("lookup");
        assert!(knowledge.iter().all(|k| k.records.len() == 1));
    }

    #[test]
    fn a_store_from_a_newer_repnet_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(open(dir.path()));
        {
            let store = LmdbStore::open(dir.path(), &StoreOptions::default()).expect("open");
            let mut txn = store.env.write_txn().expect("txn");
            store
                .dbs
                .meta
                .put(&mut txn, b"format", &99u32.to_le_bytes())
                .expect("put");
            txn.commit().expect("commit");
        }
        let error = crate::Store::open(dir.path(), &StoreOptions::default()).unwrap_err();
        assert!(error.to_string().contains("upgrade repnet"), "{error}");
    }

    #[tokio::test]
    async fn a_large_bulk_import_rebuilds_compactly_and_a_small_one_updates_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Without a change log, whose entries (about 50 bytes each) would count here too.
        let options = StoreOptions {
            change_log_max: 0,
            ..StoreOptions::default()
        };
        let store = crate::Store::open(dir.path(), &options).expect("open");
        let record = SourceRecord::new(
            Source::feed("bulk").expect("feed"),
            Verdict::Untrusted,
            Confidence::new(80).expect("confidence"),
            Timestamp(1_790_000_000),
        );
        let import = |range: std::ops::Range<u64>| {
            let store = store.clone();
            let record = record.clone();
            tokio::task::spawn_blocking(move || {
                let mut import = store.bulk_import().expect("bulk import");
                for i in range {
                    let object = Object::File(FileHash::Sha256(Sha256::digest(&i.to_le_bytes())));
                    import
                        .add(&Change::Put {
                            object,
                            hashes: FileHashes::default(),
                            record: record.clone(),
                            comment: None,
                        })
                        .expect("add");
                }
                import.finish().expect("finish")
            })
        };
        let summary = import(0..200_000).await.expect("join");
        assert!(summary.rebuilt);
        assert_eq!(summary.keys_written, 200_000);
        let stats = store.stats().await.expect("stats");
        // Written in key order with append: pages are full. 33-byte key, 12-byte record,
        // LMDB's 10 bytes per node: about 57 bytes per key, plus branch pages.
        let per_key = stats.disk_bytes as f64 / stats.keys as f64;
        assert!(per_key < 64.0, "{per_key:.1} bytes per key: {stats:?}");

        let summary = import(199_990..200_010).await.expect("join");
        assert!(!summary.rebuilt);
        assert_eq!(
            summary.keys_written, 10,
            "the 10 new keys; the 10 unchanged ones are not rewritten"
        );
        assert_eq!(store.stats().await.expect("stats").keys, stats.keys + 10);
        drop(store);
        // The switch of object database survives reopening.
        let store = open(dir.path());
        assert_eq!(store.stats().await.expect("stats").keys, stats.keys + 10);
    }

    /// Builds the filter, as `repnet serve`'s worker does when the store says it is due.
    async fn build_filter(store: &crate::Store) {
        assert!(store.wants_filter(), "a filter build is due");
        store.build_filter(|| false).await.expect("build");
        assert!(store.stats().await.expect("stats").filter_ready);
        assert!(!store.wants_filter());
    }

    #[tokio::test]
    async fn the_negative_filter_never_hides_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let record = SourceRecord::new(
            Source::feed("filter").expect("feed"),
            Verdict::Untrusted,
            Confidence::MAX,
            Timestamp(1),
        );
        let object = |i: u64| Object::File(FileHash::Sha256(Sha256::digest(&i.to_le_bytes())));
        let put = |i: u64| Change::Put {
            object: object(i),
            hashes: FileHashes::default(),
            record: record.clone(),
            comment: None,
        };
        let bulk = |range: std::ops::Range<u64>| {
            let store = store.clone();
            let changes: Vec<Change> = range.map(put).collect();
            tokio::task::spawn_blocking(move || {
                let mut import = store.bulk_import().expect("bulk import");
                for change in &changes {
                    import.add(change).expect("add");
                }
                import.finish().expect("finish")
            })
        };
        let known = |store: &crate::Store, range: std::ops::Range<u64>| {
            let objects: Vec<Object> = range.map(object).collect();
            let store = store.clone();
            async move {
                store
                    .lookup(&objects)
                    .await
                    .expect("lookup")
                    .iter()
                    .filter(|k| !k.records.is_empty())
                    .count()
            }
        };
        // A large import rebuilds the tree; the filter is rebuilt after it.
        assert!(bulk(0..20_000).await.expect("join").rebuilt);
        // The import said so to whoever builds filters.
        tokio::time::timeout(std::time::Duration::ZERO, store.filter_wanted())
            .await
            .expect("a build is signalled");
        build_filter(&store).await;
        assert_eq!(known(&store, 0..20_000).await, 20_000);
        assert_eq!(known(&store, 20_000..40_000).await, 0);
        // Keys written after the build are found through the added set.
        store
            .apply((20_000..20_100).map(put).collect())
            .await
            .expect("apply");
        assert_eq!(known(&store, 19_950..20_150).await, 150);
        assert!(!bulk(20_100..20_200).await.expect("join").rebuilt);
        assert_eq!(known(&store, 20_000..20_300).await, 200);
        // The built-in test set is behind the filter too.
        let eicar = Object::File(FileHash::Sha256(Sha256::digest(repnet_model::EICAR)));
        assert_eq!(
            store.lookup(&[eicar]).await.expect("lookup")[0]
                .records
                .len(),
            1
        );
        // A reopened store builds its filter from what is on disk.
        drop(store);
        let store = open(dir.path());
        build_filter(&store).await;
        assert_eq!(known(&store, 0..20_300).await, 20_200);
    }

    #[tokio::test]
    async fn a_format_1_store_is_migrated_to_format_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(open(dir.path()));
        let domain = Object::parse(ObjectKind::Domain, "old.example").expect("domain");
        let ip = Object::parse(ObjectKind::Ip, "192.0.2.9").expect("ip");
        let source = |source_id, verdict| StoredSource {
            source_id,
            verdict,
            confidence: 90,
            threat_id: None,
            categories: 0,
            first_seen: 10,
            last_seen: 20,
        };
        {
            // Write what format 1 wrote: domains and IPs under their own bytes.
            let store = LmdbStore::open(dir.path(), &StoreOptions::default()).expect("open");
            let objects = store.objects();
            let mut txn = store.env.write_txn().expect("txn");
            let put = |txn: &mut RwTxn<'_>, key: &[u8], record: &StoredRecord| {
                let mut bytes = Vec::new();
                record::encode(record, &mut bytes);
                objects.put(txn, key, &bytes).expect("put");
            };
            let local = StoredRecord {
                sources: vec![source(source_id::LOCAL, Verdict::Untrusted)],
                ..StoredRecord::default()
            };
            put(&mut txn, ObjectKey::legacy(&domain).as_bytes(), &local);
            // The same domain already has a record at its new key: the two are merged.
            let engine = StoredRecord {
                sources: vec![source(source_id::ENGINE, Verdict::Riskware)],
                ..StoredRecord::default()
            };
            put(&mut txn, ObjectKey::of(&domain).as_bytes(), &engine);
            let builtin = StoredRecord {
                sources: vec![source(source_id::BUILTIN, Verdict::Trusted)],
                ..StoredRecord::default()
            };
            put(&mut txn, ObjectKey::legacy(&ip).as_bytes(), &builtin);
            let mut v1_comment = vec![1];
            put_text(&mut v1_comment, "blocked in 2025");
            store
                .dbs
                .local
                .put(&mut txn, ObjectKey::legacy(&domain).as_bytes(), &v1_comment)
                .expect("put");
            store
                .dbs
                .meta
                .put(&mut txn, b"format", &1u32.to_le_bytes())
                .expect("put");
            txn.commit().expect("commit");
        }
        let store = open(dir.path());
        let knowledge = store.lookup(&[domain.clone(), ip]).await.expect("lookup");
        let mut sources: Vec<String> = knowledge[0]
            .records
            .iter()
            .map(|r| r.source.to_string())
            .collect();
        sources.sort();
        assert_eq!(sources, ["engine", "local"]);
        assert_eq!(knowledge[1].records[0].source, Source::Builtin);
        let locals = store.local_verdicts().await.expect("list");
        let migrated = locals
            .iter()
            .find(|v| v.object == domain)
            .expect("the local verdict survived");
        assert_eq!(migrated.comment.as_deref(), Some("blocked in 2025"));
        drop(store);
        let store = LmdbStore::open(dir.path(), &StoreOptions::default()).expect("open");
        let txn = store.env.read_txn().expect("txn");
        let legacy_left = store
            .objects()
            .iter(&txn)
            .expect("iter")
            .filter(|entry| entry.as_ref().is_ok_and(|(key, _)| is_legacy(key)))
            .count();
        assert_eq!(legacy_left, 0);
        assert_eq!(
            read_u32(&txn, store.dbs.meta, b"format").expect("read"),
            Some(2)
        );
    }

    #[test]
    fn local_entries_round_trip() {
        let objects = [
            Object::parse(ObjectKind::File, &"a".repeat(64)).expect("file"),
            Object::parse(ObjectKind::Domain, "evil.example").expect("domain"),
            Object::parse(ObjectKind::Url, "http://evil.example/x?y").expect("url"),
        ];
        for object in objects {
            for comment in [None, Some(""), Some("ticket #1 — ünïcode")] {
                for expires in [None, Some(Timestamp(1_900_000_000))] {
                    let bytes = encode_local_expiring(&object, comment, expires);
                    let entry = decode_local(&bytes).expect("decode");
                    assert_eq!(entry.object.as_ref(), Some(&object));
                    assert_eq!(entry.comment.as_deref(), comment);
                    assert_eq!(entry.expires, expires);
                }
            }
        }
        assert!(decode_local(&[]).is_err());
        assert!(decode_local(&[1, 5, b'a']).is_err());
        assert!(decode_local(&[2, 9, 0]).is_err());
        // Format-1 values: a comment only.
        assert_eq!(
            decode_local(&[1, 2, b'h', b'i']).expect("decode"),
            LocalEntry {
                object: None,
                comment: Some("hi".to_owned()),
                expires: None,
            }
        );
    }
}
