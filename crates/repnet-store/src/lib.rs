//! repnet's knowledge base behind one narrow handle, [`Store`].
//!
//! The handle speaks the model's language (objects, source records); only this crate knows
//! how they are laid out on disk. The handle holds a backend behind one port (`backend.rs`,
//! object-safe, no engine's types): today embedded LMDB (`lmdb`); a Redis Cluster backend for
//! scale-out will sit behind the same port and must pass the same [`conformance`] suite.
//!
//! What the store keeps per object is the set of source records (one per source); the
//! effective verdict is derived from them at read time by the model's precedence rule, so a
//! source can be corrected or retracted without losing what the others said.

mod backend;
mod bulk;
mod cluster;
mod core;
mod filter;
mod hll;
/// Storage keys are the model's: the proxy and replication readers name objects by them too.
pub(crate) use repnet_model::key;
mod lmdb;
mod record;
/// The replication stream's wire format is the protocol's; the store reads and writes it.
pub use repnet_protocol::replication as sync;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use repnet_model::{FileHash, FileHashes, Object, Sha256, Source, SourceRecord, Timestamp};

use crate::lmdb::LmdbStore;

use crate::backend::Backend;
pub use crate::backend::{ChangesAnswer, Cursor, SyncState};
/// Names in the data directory starting with this are temporary (imports' sorted runs,
/// downloaded and extracted feeds): whatever a killed process left is removed at open.
pub use crate::bulk::TEMP_PREFIX;
pub use crate::bulk::{BulkImport, BulkSummary};
pub use crate::cluster::ClusterOptions;

/// What the store knows about one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Knowledge {
    /// For files: every hash of the file the store knows, including the one asked for.
    pub hashes: FileHashes,
    /// One record per source that said something about the object.
    pub records: Vec<SourceRecord>,
    /// Approximate number of distinct devices that reported the object.
    pub prevalence: u64,
}

impl Knowledge {
    /// What is known about one file asked for by several of its hashes, from what each of
    /// them gave: every hash, one record per source (the first given wins: give the
    /// SHA-256's knowledge first), the highest prevalence. Feeds list a file by whatever hash
    /// they have, so a file whose MD5 is flagged is flagged whichever hash it is asked by.
    pub fn merge(parts: impl IntoIterator<Item = Knowledge>) -> Knowledge {
        let mut parts = parts.into_iter();
        let Some(mut merged) = parts.next() else {
            return Knowledge::default();
        };
        for part in parts {
            merged.hashes.fill_from(&part.hashes);
            merged.prevalence = merged.prevalence.max(part.prevalence);
            for record in part.records {
                if !merged.records.iter().any(|r| r.source == record.source) {
                    merged.records.push(record);
                }
            }
        }
        merged
    }
}

/// What [`Store::export`] lists: a file by its hashes, or a URL, domain or IP address by its
/// expression, with every source's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub target: ExportTarget,
    pub records: Vec<SourceRecord>,
}

/// The object an [`Exported`] entry is about.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportTarget {
    File(FileHashes),
    /// `evil.example/` (a domain and its subdomains), `1.2.3.4/`, `host/path…`.
    Expression(repnet_model::Expression),
}

/// One change to the knowledge base. A batch of changes is applied atomically.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Stores what `record.source` says about `object`, replacing what that source said
    /// before (the first sighting is kept). For files, `hashes` may give the file's other
    /// hashes: when the SHA-256 is among them, the record is kept under the SHA-256 and the
    /// MD5 and SHA-1 become aliases that resolve to it. `comment` is kept for local verdicts.
    Put {
        object: Object,
        hashes: FileHashes,
        record: SourceRecord,
        comment: Option<String>,
    },
    /// Removes what `source` said about `object` (and, for files, under its aliases).
    Remove { object: Object, source: Source },
    /// The administrator's local verdict (`record.source` is `Local`), as `Put`, with an
    /// optional time after which it lapses (the server removes it then).
    Local {
        object: Object,
        hashes: FileHashes,
        record: SourceRecord,
        comment: Option<String>,
        expires: Option<Timestamp>,
    },
}

/// What applying one [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Removed,
    /// A `Remove` found nothing from that source.
    NotFound,
}

/// What a privacy-mode search found under one full hash.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixMatch {
    pub matched: Matched,
    pub knowledge: Knowledge,
}

/// The full hash a [`PrefixMatch`] is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// A file, by the hash of the kind the prefix was of.
    File(FileHash),
    /// A URL expression (and so a domain or an IP address), by the SHA-256 of its text.
    Url(Sha256),
}

/// A privacy-mode prefix: the first bytes of a hash of some kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPrefix {
    pub of: repnet_model::PrefixOf,
    pub bytes: Vec<u8>,
}

/// A local verdict, as listed for the administrator.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalVerdict {
    pub object: Object,
    pub record: SourceRecord,
    pub comment: Option<String>,
    /// When it lapses, if it does.
    pub expires: Option<Timestamp>,
}

/// What a participant reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// The file or URL was seen (a first sighting on the device).
    Sighting,
    /// The product detected it.
    Detection,
    /// The user says a verdict on it is wrong.
    FalsePositive,
}

/// One statistics event, scrubbed of personal data (`repnet_model::privacy`) before it gets
/// here. `device` is a keyed hash of the install id, used only inside distinct counts: events
/// are stored without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatEvent {
    pub kind: StatKind,
    /// A file by SHA-256, or a URL expression.
    pub object: Object,
    pub device: u64,
    /// The installation was enrolled long enough ago for the engine to count it.
    pub established: bool,
    pub time: Timestamp,
    pub size: Option<u64>,
    /// The SHA-256 thumbprint of the file's signing certificate.
    pub signer: Option<Sha256>,
    pub name: Option<String>,
    pub threat: Option<String>,
    pub comment: Option<String>,
}

/// What participants reported about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Events of each kind.
    pub sightings: u64,
    pub detections: u64,
    pub false_positives: u64,
    /// Distinct devices that reported the object, and that detected it (HyperLogLog: exact
    /// up to 64, then within about 1 %).
    pub devices: u64,
    /// Established installations that detected it.
    pub detecting_devices: u64,
    pub size: Option<u64>,
    /// The signer reported first.
    pub signer: Option<Sha256>,
    /// Reports named different signers.
    pub signer_conflict: bool,
    /// Established installations that reported it signed by `signer`.
    pub vouching_devices: u64,
}

/// How much room statistics take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatisticsSize {
    /// Objects with aggregates, and the bytes of their database's pages.
    pub objects: u64,
    pub aggregate_bytes: u64,
    /// Raw events kept, and the bytes of their database's pages.
    pub events: u64,
    pub event_bytes: u64,
}

/// A file whose statistics changed.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyFile {
    /// Its key among [`Dirty::keys`].
    pub key: Vec<u8>,
    pub object: Object,
    pub aggregate: Aggregate,
}

/// Objects whose statistics changed since the engine last looked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dirty {
    /// The files among them (by SHA-256), with their aggregates, in the order of `keys`.
    pub files: Vec<DirtyFile>,
    /// Every one of them, for [`Store::clear_dirty`], in key order.
    pub keys: Vec<DirtyMark>,
}

/// An object whose statistics changed, as the engine read it: its key and the mark of the
/// last change, so that clearing it leaves a change made since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyMark {
    pub key: Vec<u8>,
    mark: Vec<u8>,
}

/// A false-positive report awaiting the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    /// Stable: the object's storage key in hex (`engine-` first for the engine's verdicts).
    pub id: String,
    pub object: Object,
    /// Reports received (events, not devices); 0 for the engine's verdicts.
    pub reports: u64,
    /// For a verdict of the engine: when it was set.
    pub first_reported: Timestamp,
    pub last_reported: Timestamp,
    /// The latest reporter's comment, scrubbed; for the engine, its evidence.
    pub comment: Option<String>,
    /// The engine's verdict, for an item that is one.
    pub engine: Option<repnet_model::Verdict>,
}

/// A verdict the reputation engine set, for the administrator to review.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineReview {
    pub object: Object,
    pub verdict: repnet_model::Verdict,
    pub evidence: String,
    pub time: Timestamp,
}

/// What [`Store::apply_stream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamApplied {
    pub header: sync::StreamHeader,
    /// Entries in the stream.
    pub entries: u64,
    /// Keys whose value changed.
    pub keys_written: u64,
}

/// A licence key as the store keeps it: the SHA-256 of the key, never the key itself.
pub use repnet_licences::Licence;

/// Numbers about the store, for operators and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of keys (objects and hash aliases).
    pub keys: u64,
    /// Bytes the data file occupies on disk.
    pub disk_bytes: u64,
    /// Current size of the memory map (grows as needed).
    pub map_bytes: u64,
    /// Whether the negative-lookup filter is built and in use.
    pub filter_ready: bool,
    /// Keys the filter was asked about since the store opened, and those it answered
    /// "absent" without reading the database (0 without a filter).
    pub filter_checked: u64,
    pub filter_answered: u64,
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The memory map to start with, in bytes. The map doubles whenever it fills up, so this
    /// only matters for tests of that growth; it is address space, not disk or memory.
    pub initial_map_size: usize,
    /// Build and use a filter that answers most lookups of unknown objects without touching
    /// the B-tree (about 9 bits of memory per key; built in the background after opening).
    /// Worth it for a server; not for a one-off import.
    pub negative_filter: bool,
    /// Most changes the change log keeps for servers that pull from this one; a server
    /// further behind gets a snapshot. 0 keeps none.
    pub change_log_max: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            initial_map_size: 4 << 30,
            negative_filter: true,
            change_log_max: 1_000_000,
        }
    }
}

/// Why a store operation failed. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data directory {dir} is already in use by another repnet process{holder}: stop that process, or pass a different --data directory"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the knowledge base in {dir} has format version {found}, but this repnet understands up to {supported}: upgrade repnet"
    )]
    TooNew {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("the knowledge base is damaged ({0}): restore the data directory from a backup")]
    Corrupt(String),
    #[error("the system gave no randomness for a secret ({0}): check the machine's entropy source")]
    Randomness(String),
    #[error("storage error in {dir}: {message}")]
    Backend { dir: PathBuf, message: String },
    #[error("a storage task stopped unexpectedly: {0}")]
    Task(String),
    /// The store's cluster could not be reached, or refused: the request may be tried again.
    #[error(
        "the knowledge base's cluster is unavailable ({0}): check that its nodes are up and reachable"
    )]
    Unavailable(String),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("{0}")]
    OutOfOrder(String),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
}

/// The handle to the knowledge base. Cheap to clone; all clones share one open store, which
/// closes (releasing its directory) when the last clone is dropped.
///
/// Every operation is `async`; how its work meets the runtime is the backend's business (see
/// `backend.rs`). The exceptions are blocking on purpose and say so: bulk imports and
/// replication streams, which read or write for as long as their files take.
#[derive(Clone, Debug)]
pub struct Store {
    /// Kept for its `Drop`.
    _handle: Arc<Handle>,
    backend: Arc<dyn Backend>,
}

/// Shared by the clones of a [`Store`]: dropping the last one stops the backend's background
/// work, which holds the backend too.
#[derive(Debug)]
struct Handle {
    backend: Arc<dyn Backend>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.backend.close();
    }
}

impl Store {
    /// Opens (creating if needed) the embedded store in `dir`, migrates it to the current
    /// format, and makes sure it knows the built-in test set. Fails if another process has
    /// the directory open. Blocking (seconds at most, for a migration).
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let lmdb = Arc::new(LmdbStore::open(dir, options)?);
        lmdb.seed_builtin(now())?;
        Ok(Store::over(Arc::new(crate::lmdb::Lmdb(lmdb))))
    }

    /// Connects to the Redis Cluster that `options` names and makes sure it knows the
    /// built-in test set: a stateless store, which any number of servers may share.
    pub async fn connect_cluster(
        options: &ClusterOptions,
        store_options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let cluster =
            crate::cluster::Cluster::connect(options, store_options.change_log_max).await?;
        cluster.seed_builtin(now()).await?;
        Ok(Store::over(Arc::new(cluster)))
    }

    fn over(backend: Arc<dyn Backend>) -> Store {
        Store {
            _handle: Arc::new(Handle {
                backend: Arc::clone(&backend),
            }),
            backend,
        }
    }

    /// Whether the negative-lookup filter should be built now: the store was opened with
    /// [`StoreOptions::negative_filter`] and the filter is missing, or enough keys were added
    /// since it was built that rebuilding pays. Whoever runs the store's background work
    /// (`repnet serve`) builds it with [`Store::build_filter`]; until then lookups go to the
    /// B-tree.
    pub fn wants_filter(&self) -> bool {
        self.backend.wants_filter()
    }

    /// Whether lookups of unknown objects are answered by the negative-lookup filter now.
    pub fn filter_ready(&self) -> bool {
        self.backend.filter_ready()
    }

    /// Resolves when a write made a filter build due.
    pub async fn filter_wanted(&self) {
        self.backend.filter_wanted().await
    }

    /// Builds the negative-lookup filter and installs it (seconds for tens of millions of
    /// keys; lookups go to the B-tree meanwhile). `stop` is asked between chunks of keys: a
    /// build told to stop installs nothing. Returns at once if a build is already under way.
    pub async fn build_filter(
        &self,
        stop: impl Fn() -> bool + Send + 'static,
    ) -> Result<(), StoreError> {
        self.backend.build_filter(Box::new(stop)).await
    }

    /// Whether other processes serve the same knowledge base (a Redis Cluster store): then
    /// a server reads licence keys again and takes leases for work one node does at a time.
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    /// Takes the lease `name` for `seconds`, or extends it if this store holds it; answers
    /// whether it holds it now: for work one node of a shared store does at a time (a
    /// scheduled feed's refresh, the reputation engine, pulls from an upstream). Always
    /// `true` on the embedded store, which one process owns.
    pub async fn lease(&self, name: &str, seconds: u64) -> Result<bool, StoreError> {
        self.backend.lease(name, seconds).await
    }

    /// Notes this server as alive for `seconds`; answers how many servers of the same
    /// knowledge base did within that time (1 on the embedded store): for what they share,
    /// such as a licence key's rate.
    pub async fn heartbeat(&self, seconds: u64) -> Result<u32, StoreError> {
        self.backend.heartbeat(seconds).await
    }

    /// Whether the store can serve now: `Unavailable` while a Redis Cluster store cannot be
    /// reached or has slots no master serves (readiness probes); always `Ok` for LMDB.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.backend.check().await
    }

    /// Looks up `objects` in one consistent snapshot. The answer has one entry per object, in
    /// the same order; an unknown object gets an empty [`Knowledge`].
    pub async fn lookup(&self, objects: &[Object]) -> Result<Vec<Knowledge>, StoreError> {
        self.backend.lookup(objects).await
    }

    /// Applies `changes` atomically, in order: when this returns `Ok`, every change is on
    /// disk and survives a crash; on error, none is applied.
    pub async fn apply(&self, changes: Vec<Change>) -> Result<Vec<Outcome>, StoreError> {
        self.backend.apply(changes).await
    }

    /// Starts a bulk import: changes are added one by one (sorted and spilled to disk as
    /// needed, so memory stays bounded) and applied in one transaction by
    /// [`BulkImport::finish`]. Use it for feeds; the knowledge base is written in key order,
    /// which is much faster and more compact than [`Store::apply`] for many changes.
    /// Blocking: call it from a thread or `spawn_blocking`.
    pub fn bulk_import(&self) -> Result<BulkImport, StoreError> {
        BulkImport::new(self.backend.applier(), None)
    }

    /// A bulk import that sorts up to `buffer_bytes` of changes in memory before spilling a
    /// sorted run to a temporary file in the data directory (the default is 64 MiB).
    pub fn bulk_import_with_buffer(&self, buffer_bytes: usize) -> Result<BulkImport, StoreError> {
        BulkImport::new(self.backend.applier(), Some(buffer_bytes.max(1)))
    }

    /// Every file and URL expression whose hash starts with one of `prefixes`, with what is
    /// known about it, in one snapshot: SHA-256 prefixes match files by SHA-256 and URL
    /// expressions by the SHA-256 of their text; MD5 and SHA-1 prefixes match files by those
    /// hashes. Stops after `limit` matches and then says so (`true`).
    pub async fn search_prefixes(
        &self,
        prefixes: &[SearchPrefix],
        limit: usize,
    ) -> Result<(Vec<PrefixMatch>, bool), StoreError> {
        self.backend.search_prefixes(prefixes, limit).await
    }

    /// Every local verdict, ordered by object key.
    pub async fn local_verdicts(&self) -> Result<Vec<LocalVerdict>, StoreError> {
        self.backend.local_verdicts().await
    }

    /// Stores statistics events and folds them into their objects' aggregates, atomically
    /// and durably: when this returns `Ok`, the events survive a crash.
    pub async fn record_statistics(&self, events: Vec<StatEvent>) -> Result<(), StoreError> {
        self.backend.record_statistics(events).await
    }

    /// What participants reported about `object` (a file by SHA-256, or a URL expression).
    pub async fn aggregate(&self, object: &Object) -> Result<Option<Aggregate>, StoreError> {
        self.backend.aggregate(object).await
    }

    /// Deletes raw statistics events that arrived before `cutoff` (aggregates stay); answers
    /// how many.
    pub async fn delete_events_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        self.backend.delete_events_before(cutoff).await
    }

    /// Up to `limit` objects whose statistics changed since the engine last cleared them:
    /// the files among them with their aggregates, and every key (for [`Store::clear_dirty`]).
    pub async fn dirty_aggregates(&self, limit: usize) -> Result<Dirty, StoreError> {
        self.backend.dirty_aggregates(limit).await
    }

    /// Marks objects as examined by the engine, except those whose statistics changed since
    /// it read them (they stay for its next look).
    pub async fn clear_dirty(&self, keys: Vec<DirtyMark>) -> Result<(), StoreError> {
        self.backend.clear_dirty(keys).await
    }

    /// Objects whose statistics the engine has not examined yet.
    pub async fn dirty_count(&self) -> Result<u64, StoreError> {
        self.backend.dirty_count().await
    }

    /// False-positive reports and the engine's verdicts awaiting the administrator.
    pub async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError> {
        self.backend.review_items().await
    }

    /// Puts verdicts the engine set in the review queue, and takes out those of objects whose
    /// engine verdict was removed.
    pub async fn engine_reviews(
        &self,
        set: Vec<EngineReview>,
        removed: Vec<Object>,
    ) -> Result<(), StoreError> {
        self.backend.engine_reviews(set, removed).await
    }

    /// Closes a review item; answers whether it existed.
    pub async fn remove_review(&self, id: String) -> Result<bool, StoreError> {
        self.backend.remove_review(id).await
    }

    /// How much room statistics take.
    pub async fn statistics_size(&self) -> Result<StatisticsSize, StoreError> {
        self.backend.statistics_size().await
    }

    /// Raw statistics events stored.
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        self.backend.event_count().await
    }

    /// A secret made at first use and kept for good (the key of installation tokens,
    /// `installations`).
    pub async fn permanent_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        self.backend.permanent_secret(name).await
    }

    /// The secret key of the installation-id hash, made at first use and replaced once older
    /// than `rotate_after_seconds`.
    pub async fn device_secret(
        &self,
        now: Timestamp,
        rotate_after_seconds: u64,
    ) -> Result<[u8; 32], StoreError> {
        self.backend.device_secret(now, rotate_after_seconds).await
    }

    /// Every licence key ever registered, revoked ones included.
    pub async fn licences(&self) -> Result<Vec<Licence>, StoreError> {
        self.backend.licences().await
    }

    /// Adds or replaces (by key hash) licence records, atomically and durably.
    pub async fn put_licences(&self, licences: Vec<Licence>) -> Result<(), StoreError> {
        self.backend.put_licences(licences).await
    }

    /// Where this store is in its own change log, and in its upstream's.
    pub async fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.backend.sync_state().await
    }

    /// Writes the changes after `after` (at most `limit` sequence numbers; each changed key
    /// once, with its current state) to `out` as a replication stream, header first, or says
    /// that a snapshot is needed. Blocking; the store's snapshot lasts as long as the
    /// writing, so give it an `out` that does not wait on anyone (memory, a file), never a
    /// client's connection.
    pub fn write_changes<W: std::io::Write>(
        &self,
        after: u64,
        limit: usize,
        mut out: W,
    ) -> Result<ChangesAnswer, StoreError> {
        self.backend.write_changes(after, limit, &mut out)
    }

    /// Writes every key's state to `out` as a snapshot stream. Blocking, like
    /// [`write_changes`](Store::write_changes).
    pub fn write_snapshot<W: std::io::Write>(
        &self,
        mut out: W,
    ) -> Result<sync::StreamHeader, StoreError> {
        self.backend.write_snapshot(&mut out)
    }

    /// Calls `visit` with every file and every URL expression (with its text) the knowledge
    /// base holds records about, from one consistent view (the embedded store) or bucket by
    /// bucket (a Redis Cluster); answers the change log's sequence when it began. Blocking.
    pub fn export(
        &self,
        visit: &mut dyn FnMut(Exported) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.backend.export(visit)
    }

    /// Writes a consistent, compacted copy of the embedded store's database (`data.mdb`) to
    /// `out`, from one read transaction: writes go on meanwhile. Blocking. A Redis Cluster
    /// store answers [`StoreError::Unsupported`].
    pub fn backup(&self, out: &mut std::fs::File) -> Result<(), StoreError> {
        self.backend.backup(out)
    }

    /// Applies a replication stream from another server in one transaction, after reading
    /// and checking all of it: records become `upstream` records, a snapshot replaces every
    /// `upstream` record, and the store's cursor in the sender's log moves to the stream's
    /// end in the same transaction. A stream that does not continue from the cursor, or is
    /// damaged, changes nothing. Blocking.
    pub fn apply_stream<R: std::io::BufRead>(
        &self,
        mut stream: sync::StreamReader<R>,
    ) -> Result<StreamApplied, StoreError> {
        let header = *stream.header();
        let mut import = self.bulk_import()?;
        import.set_stream(header);
        while let Some(entry) = stream.next_entry()? {
            import.add_sync(&entry)?;
        }
        let summary = import.finish()?;
        Ok(StreamApplied {
            header,
            entries: summary.changes,
            keys_written: summary.keys_written,
        })
    }

    /// How many keys, records and bytes the knowledge base holds.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.backend.stats().await
    }

    /// The directory the store keeps its temporary files in (and, for the embedded store,
    /// its data).
    pub fn dir(&self) -> &Path {
        self.backend.dir()
    }
}

pub use repnet_model::key::searched_as;

/// The current time as a model timestamp.
pub use repnet_runtime::now;

/// A server keeps its licence keys in its store.
impl repnet_licences::KeyBook for Store {
    fn licences(&self) -> repnet_licences::BookFuture<'_, Vec<Licence>> {
        Box::pin(async move {
            Store::licences(self)
                .await
                .map_err(repnet_licences::BookError::new)
        })
    }

    fn put(&self, licences: Vec<Licence>) -> repnet_licences::BookFuture<'_, ()> {
        Box::pin(async move {
            self.put_licences(licences)
                .await
                .map_err(repnet_licences::BookError::new)
        })
    }
}
