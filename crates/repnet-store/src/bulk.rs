//! Bulk imports: many changes applied in one transaction, sorted first so that the store is
//! written in key order.
//!
//! Changes are buffered in memory as compact entries (key + mutation) and, past
//! [`RUN_BYTES`], sorted and spilled to a run file in the data directory; memory stays bounded
//! whatever the size of the feed. [`BulkImport::finish`] merges the runs into one sorted
//! stream and hands it to the backend, which either folds it into the existing B-tree (small
//! imports) or rebuilds the tree in append mode, merging old and new in one pass (large
//! imports: every page written once and full, see `lmdb::LmdbStore::bulk_apply`).
//! Either way the import is one transaction: all of it or none of it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use repnet_model::{Md5, Sha1, Sha256, Source, ThreatName};

use crate::record::{self, Mutation, Reader, StoredSource, put_mutations, put_varint};
use crate::sync::{StreamHeader, StreamKind, SyncEntry};
use crate::{Change, StoreError};

/// Buffered bytes after which a sorted run is spilled to disk.
const RUN_BYTES: usize = 64 << 20;

/// Names of the temporary directories bulk imports spill to; removed at open.
pub const TEMP_PREFIX: &str = "import-tmp-";

/// What applies a prepared import: the storage backend (`lmdb::LmdbStore`). A trait so
/// that this module, which the backend reads imports from, does not name the backend.
pub(crate) trait Applier: Send + Sync {
    /// Applies every change of `import` in one transaction.
    fn bulk_apply(&self, import: &BulkImport) -> Result<BulkOutcome, StoreError>;
    /// Says that writes happened (a filter build may be due).
    fn note_writes(&self);
    /// The store's directory, where imports spill their sorted runs.
    fn dir(&self) -> &std::path::Path;
}

/// What a bulk import did to the store.
pub(crate) struct BulkOutcome {
    pub(crate) written: u64,
    pub(crate) rebuilt: bool,
    pub(crate) retracted: u64,
}

/// The result of a bulk import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkSummary {
    /// Changes added.
    pub changes: u64,
    /// Keys whose value was written (new or changed).
    pub keys_written: u64,
    /// Whether the knowledge base was rebuilt in key order (large imports) rather than
    /// updated in place (small ones).
    pub rebuilt: bool,
    /// Records of the replaced source retracted because the import no longer lists them.
    pub retracted: u64,
}

/// A bulk import in progress. Blocking: call it from a thread or `spawn_blocking`.
/// Dropping it without [`finish`](BulkImport::finish) discards everything added.
pub struct BulkImport {
    store: Arc<dyn Applier>,
    temp_dir: PathBuf,
    /// Names used by this import, by import-local id (sources as text, threat names).
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    /// Which names are sources and which threat names, by import-local id.
    source_names: Vec<bool>,
    threat_names: Vec<bool>,
    /// The last source and threat seen, with their ids: feeds repeat them on every line.
    last_source: Option<(Source, u32)>,
    last_threat: Option<(ThreatName, u32)>,
    /// Entries not yet spilled.
    buffer: Buffer,
    /// The run being sorted and written on another thread while this one fills `buffer`:
    /// the import uses two cores, and at most two buffers of memory. The thread hands the
    /// buffer back, emptied, for the next run.
    spilling: Option<std::thread::JoinHandle<Result<Buffer, StoreError>>>,
    /// An emptied buffer, its memory kept: allocating (and the kernel zeroing) 64 MiB per
    /// run was a tenth of the parsing thread's time.
    spare: Option<Buffer>,
    runs: Vec<PathBuf>,
    run_bytes: usize,
    /// The sources this import replaces, if it does.
    replaced: Vec<Source>,
    /// For a replication stream: its header, checked against and recorded as this store's
    /// cursor in the transaction that applies it.
    stream: Option<StreamHeader>,
    changes: u64,
    mutations: u64,
}

impl std::fmt::Debug for BulkImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkImport")
            .field("changes", &self.changes)
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl BulkImport {
    pub(crate) fn new(
        store: Arc<dyn Applier>,
        run_bytes: Option<usize>,
    ) -> Result<BulkImport, StoreError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let number = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp_dir = store
            .dir()
            .join(format!("{TEMP_PREFIX}{}-{number}", std::process::id()));
        let run_bytes = run_bytes.unwrap_or(RUN_BYTES);
        Ok(BulkImport {
            store,
            temp_dir,
            names: Vec::new(),
            name_ids: HashMap::new(),
            source_names: Vec::new(),
            threat_names: Vec::new(),
            last_source: None,
            last_threat: None,
            // Address space only: pages are touched as entries come.
            buffer: Buffer::with_capacity(run_bytes),
            spilling: None,
            spare: None,
            runs: Vec::new(),
            run_bytes,
            replaced: Vec::new(),
            stream: None,
            changes: 0,
            mutations: 0,
        })
    }

    fn name_id(&mut self, text: &str) -> u32 {
        if let Some(id) = self.name_ids.get(text) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(text.to_owned());
        self.source_names.push(false);
        self.threat_names.push(false);
        self.name_ids.insert(text.to_owned(), id);
        id
    }

    /// Makes the import replace everything `source` said: when it finishes, the records of
    /// `source` on objects the import does not name are retracted (the other sources'
    /// records stay). A feed re-imported without an entry thus forgets it, atomically.
    pub fn replace_source(&mut self, source: Source) {
        if !self.replaced.contains(&source) {
            self.replaced.push(source);
        }
    }

    pub(crate) fn replaced_sources(&self) -> &[Source] {
        &self.replaced
    }

    pub(crate) fn stream_header(&self) -> Option<&StreamHeader> {
        self.stream.as_ref()
    }

    /// Makes the import apply a replication stream with this header: it must continue where
    /// the store is in the sender's log (a snapshot may start anywhere, and replaces what
    /// came from upstream), and the store's cursor moves to its end in the same transaction.
    pub(crate) fn set_stream(&mut self, header: StreamHeader) {
        if header.kind == StreamKind::Snapshot {
            self.replace_source(Source::Upstream);
            self.replace_source(Source::UpstreamEngine);
        }
        self.stream = Some(header);
    }

    fn source_name_id(&mut self, source: &Source) -> u32 {
        match &self.last_source {
            Some((last, id)) if last == source => *id,
            _ => {
                let id = self.name_id(&source.to_string());
                self.source_names[id as usize] = true;
                self.last_source = Some((source.clone(), id));
                id
            }
        }
    }

    fn threat_name_id(&mut self, threat: &ThreatName) -> u32 {
        match &self.last_threat {
            Some((last, id)) if last == threat => *id,
            _ => {
                let id = self.name_id(threat.as_str());
                self.threat_names[id as usize] = true;
                self.last_threat = Some((threat.clone(), id));
                id
            }
        }
    }

    /// Adds one entry of a replication stream: what the sender knows under a key becomes
    /// this store's `upstream` record there (or its absence, the retraction of that record).
    pub(crate) fn add_sync(&mut self, entry: &SyncEntry) -> Result<(), StoreError> {
        if !crate::key::is_valid_key(&entry.key) {
            return Err(StoreError::Sync(crate::sync::SyncError::Format(format!(
                "entry {} has a key this repnet does not know (type {:#04x}, {} bytes)",
                self.changes + 1,
                entry.key.first().copied().unwrap_or(0),
                entry.key.len()
            ))));
        }
        // What the upstream said here before is replaced: by its knowledge or by its
        // engine's, whichever it says now.
        let upstream = self.source_name_id(&Source::Upstream);
        let upstream_engine = self.source_name_id(&Source::UpstreamEngine);
        let retract = |source_id| Mutation::Retract { source_id };
        match &entry.value {
            None => {
                self.push(&entry.key, &retract(upstream));
                self.push(&entry.key, &retract(upstream_engine));
            }
            Some(value) => {
                if let Some(sha256) = value.alias_of {
                    self.push(&entry.key, &Mutation::Alias(sha256));
                }
                // The expression's text, checked against the key: a sender cannot name a key
                // with another expression's text.
                if let Some(text) = &value.text
                    && let Some(expression) = repnet_model::Expression::from_canonical(text)
                    && crate::key::ObjectKey::expression(&expression).as_bytes()
                        == entry.key.as_slice()
                {
                    self.push(&entry.key, &Mutation::Text(text.as_str().into()));
                }
                match &value.record {
                    None => {
                        self.push(&entry.key, &retract(upstream));
                        self.push(&entry.key, &retract(upstream_engine));
                    }
                    Some(record) => {
                        let (source_id, other) = match record.engine {
                            true => (upstream_engine, upstream),
                            false => (upstream, upstream_engine),
                        };
                        self.push(&entry.key, &retract(other));
                        let threat_id = record.threat.as_ref().map(|t| self.threat_name_id(t));
                        let source = StoredSource {
                            source_id,
                            verdict: record.verdict,
                            confidence: record.confidence.get(),
                            threat_id,
                            categories: record.categories.bits(),
                            first_seen: record.first_seen.0,
                            last_seen: record.last_seen.0.max(record.first_seen.0),
                        };
                        let upsert = Mutation::Upsert {
                            source,
                            md5: value.md5,
                            sha1: value.sha1,
                        };
                        self.push(&entry.key, &upsert);
                    }
                }
            }
        }
        self.changes += 1;
        if self.buffer.arena.len() >= self.run_bytes {
            self.spill()?;
        }
        Ok(())
    }

    fn push(&mut self, key: &[u8], mutation: &Mutation) {
        self.buffer.push(key, mutation);
        self.mutations += 1;
    }

    /// Adds one change. Only `Put`s of non-local sources can be bulk-imported: local verdicts
    /// are the administrator's, set one by one.
    pub fn add(&mut self, change: &Change) -> Result<(), StoreError> {
        let Change::Put {
            object,
            hashes,
            record,
            ..
        } = change
        else {
            return Err(StoreError::Unsupported(
                "a bulk import only stores records; remove records with Store::apply",
            ));
        };
        if record.source == Source::Local {
            return Err(StoreError::Unsupported(
                "local verdicts are set one by one through the admin API, not imported",
            ));
        }
        let source_id = self.source_name_id(&record.source);
        let threat_id = record.threat.as_ref().map(|t| self.threat_name_id(t));
        let source = StoredSource {
            source_id,
            verdict: record.verdict,
            confidence: record.confidence.get(),
            threat_id,
            categories: record.categories.bits(),
            first_seen: record.first_seen.0,
            last_seen: record.last_seen.0.max(record.first_seen.0),
        };
        for (key, mutation) in put_mutations(object, hashes, source) {
            self.buffer.push(key.as_bytes(), &mutation);
            self.mutations += 1;
        }
        self.changes += 1;
        if self.buffer.arena.len() >= self.run_bytes {
            self.spill()?;
        }
        Ok(())
    }

    /// Hands the buffer to a thread that sorts it and writes it as a run, after the previous
    /// run is written.
    fn spill(&mut self) -> Result<(), StoreError> {
        self.wait_for_spill()?;
        std::fs::create_dir_all(&self.temp_dir).map_err(|source| StoreError::Io {
            action: "create the import's temporary directory",
            path: self.temp_dir.clone(),
            source,
        })?;
        let path = self.temp_dir.join(format!("run-{}", self.runs.len()));
        self.runs.push(path.clone());
        let next = match self.spare.take() {
            Some(spare) => spare,
            None => Buffer::with_capacity(self.run_bytes),
        };
        let mut buffer = std::mem::replace(&mut self.buffer, next);
        let spilling = std::thread::Builder::new()
            .name("repnet-import-sort".to_owned())
            .spawn(move || {
                buffer.sort();
                buffer.write_run(&path)?;
                buffer.clear();
                Ok(buffer)
            })
            .map_err(|source| StoreError::Io {
                action: "start a thread for",
                path: self.temp_dir.clone(),
                source,
            })?;
        self.spilling = Some(spilling);
        Ok(())
    }

    fn wait_for_spill(&mut self) -> Result<(), StoreError> {
        if let Some(thread) = self.spilling.take() {
            let buffer = thread.join().map_err(|_| {
                StoreError::Task("the import's sorting thread panicked".to_owned())
            })??;
            self.spare = Some(buffer);
        }
        Ok(())
    }

    /// The buffered and spilled entries as one stream sorted by key (equal keys in the order
    /// they were added). Can be opened again, for a retry.
    pub(crate) fn stream(
        &self,
    ) -> Result<Box<dyn Iterator<Item = Result<Entry, StoreError>> + '_>, StoreError> {
        if self.runs.is_empty() {
            return Ok(Box::new(self.buffer.offsets.iter().map(|offset| {
                decode_entry(entry_at(&self.buffer.arena, *offset))
            })));
        }
        let readers = self
            .runs
            .iter()
            .map(|path| RunReader::open(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(ReadAhead::spawn(Merge::new(readers)?)))
    }

    /// How import name `id` is used: as a source, as a threat name.
    pub(crate) fn name_roles(&self, id: usize) -> (bool, bool) {
        (
            self.source_names.get(id).copied().unwrap_or(false),
            self.threat_names.get(id).copied().unwrap_or(false),
        )
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn mutations(&self) -> u64 {
        self.mutations
    }

    /// Applies everything added, in one transaction.
    pub fn finish(mut self) -> Result<BulkSummary, StoreError> {
        if !self.runs.is_empty() && !self.buffer.offsets.is_empty() {
            self.spill()?;
        } else {
            self.buffer.sort();
        }
        self.wait_for_spill()?;
        if !self.runs.is_empty() {
            // Everything is in the runs: give the buffers' memory back before writing, which
            // needs its own.
            self.spare = None;
            self.buffer = Buffer::default();
        }
        let store = Arc::clone(&self.store);
        let outcome = store.bulk_apply(&self)?;
        // A rebuilt object database disabled the filter: a build is due, as it is when
        // enough keys were added.
        store.note_writes();
        Ok(BulkSummary {
            changes: self.changes,
            keys_written: outcome.written,
            rebuilt: outcome.rebuilt,
            retracted: outcome.retracted,
        })
    }
}

impl Drop for BulkImport {
    fn drop(&mut self) {
        let _ = self.wait_for_spill();
        // Nothing to do if nothing was spilled; a directory left by a crash is removed at the
        // next open.
        let _ = std::fs::remove_dir_all(&self.temp_dir);
    }
}

/// Changes encoded compactly: each entry is a `u32` length, then the entry (`encode_entry`).
#[derive(Default)]
struct Buffer {
    arena: Vec<u8>,
    /// Start of each entry in `arena`.
    offsets: Vec<u32>,
}

impl Buffer {
    /// A buffer that holds `bytes` of entries (and the one that crosses the bound) without
    /// growing.
    fn with_capacity(bytes: usize) -> Buffer {
        Buffer {
            arena: Vec::with_capacity(bytes.saturating_add(64 << 10)),
            offsets: Vec::with_capacity(bytes / 32),
        }
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.offsets.clear();
    }

    fn push(&mut self, key: &[u8], mutation: &Mutation) {
        let start = self.arena.len();
        self.arena.extend_from_slice(&[0; 4]);
        encode_entry(key, mutation, &mut self.arena);
        let len = (self.arena.len() - start - 4) as u32;
        self.arena[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.offsets.push(start as u32);
    }

    /// Sorts the entries by key, keeping the order of equal keys (a later change to the same
    /// key must apply later): offsets grow in the order entries were added, so they break
    /// ties. The first 8 key bytes, as a number, decide almost every comparison without
    /// touching the arena.
    fn sort(&mut self) {
        let arena = &self.arena;
        let mut keyed: Vec<(u64, u32)> = self
            .offsets
            .iter()
            .map(|offset| (key_prefix(entry_key(entry_at(arena, *offset))), *offset))
            .collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| entry_key(entry_at(arena, a.1)).cmp(entry_key(entry_at(arena, b.1))))
                .then(a.1.cmp(&b.1))
        });
        for (slot, (_, offset)) in self.offsets.iter_mut().zip(keyed) {
            *slot = offset;
        }
    }

    /// Writes the entries, in their order, as a run file.
    fn write_run(&self, path: &Path) -> Result<(), StoreError> {
        let io_error = |source| StoreError::Io {
            action: "write the import's temporary file",
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io_error)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for offset in &self.offsets {
            let entry = entry_at(&self.arena, *offset);
            out.write_all(&(entry.len() as u32).to_le_bytes())
                .map_err(io_error)?;
            out.write_all(entry).map_err(io_error)?;
        }
        out.flush().map_err(io_error)
    }
}

/// Removes temporary files and directories left by imports that were killed.
pub(crate) fn remove_stale_temp_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = match entry.file_type() {
                Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(entry.path()),
                _ => std::fs::remove_file(entry.path()),
            };
        }
    }
}

/// A key and what to do to it; names in the mutation are import-local ids.
pub(crate) type Entry = (EntryKey, Mutation);

/// A key on the stack when it is short (hashes, IP addresses, most domains): an import moves
/// millions of them between threads, and a heap allocation each cost a quarter of the merge.
pub(crate) type EntryKey = smallvec::SmallVec<[u8; 40]>;

fn entry_at(arena: &[u8], offset: u32) -> &[u8] {
    let start = offset as usize;
    let len = u32::from_le_bytes([
        arena[start],
        arena[start + 1],
        arena[start + 2],
        arena[start + 3],
    ]) as usize;
    &arena[start + 4..start + 4 + len]
}

/// The first 8 bytes of a key as a big-endian number (zero-padded): orders like the bytes.
fn key_prefix(key: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    let len = key.len().min(8);
    prefix[..len].copy_from_slice(&key[..len]);
    u64::from_be_bytes(prefix)
}

fn entry_key(entry: &[u8]) -> &[u8] {
    let len = entry[0] as usize;
    &entry[1..1 + len]
}

const KIND_UPSERT: u8 = 0;
const KIND_ALIAS: u8 = 1;
const KIND_RETRACT: u8 = 2;
const KIND_TEXT: u8 = 3;

/// `u8 key length, key, u8 kind`, then for an upsert: `varint source, u8 verdict, u8
/// confidence, u8 flags (1 threat, 2 md5, 4 sha1), [varint threat], varint categories,
/// varint first_seen, varint last_seen - first_seen, [md5], [sha1]`; for an alias: the SHA-256;
/// for a text: `varint length, UTF-8`.
fn encode_entry(key: &[u8], mutation: &Mutation, out: &mut Vec<u8>) {
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    match mutation {
        Mutation::Upsert { source, md5, sha1 } => {
            out.push(KIND_UPSERT);
            put_varint(out, u64::from(source.source_id));
            out.push(record::verdict_bits(source.verdict));
            out.push(source.confidence);
            let flags = u8::from(source.threat_id.is_some())
                | u8::from(md5.is_some()) << 1
                | u8::from(sha1.is_some()) << 2;
            out.push(flags);
            if let Some(threat) = source.threat_id {
                put_varint(out, u64::from(threat));
            }
            put_varint(out, u64::from(source.categories));
            put_varint(out, source.first_seen);
            put_varint(out, source.last_seen - source.first_seen);
            if let Some(md5) = md5 {
                out.extend_from_slice(md5.as_bytes());
            }
            if let Some(sha1) = sha1 {
                out.extend_from_slice(sha1.as_bytes());
            }
        }
        Mutation::Alias(sha256) => {
            out.push(KIND_ALIAS);
            out.extend_from_slice(sha256.as_bytes());
        }
        Mutation::Retract { source_id } => {
            out.push(KIND_RETRACT);
            put_varint(out, u64::from(*source_id));
        }
        Mutation::Text(text) => {
            out.push(KIND_TEXT);
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn decode_entry(entry: &[u8]) -> Result<Entry, StoreError> {
    let corrupt = |error: record::DecodeError| {
        StoreError::Corrupt(format!("an import's temporary entry: {error}"))
    };
    let mut reader = Reader::new(entry);
    let key_len = reader.u8().map_err(corrupt)? as usize;
    let key = EntryKey::from_slice(reader.slice(key_len).map_err(corrupt)?);
    let mutation = match reader.u8().map_err(corrupt)? {
        KIND_UPSERT => {
            let source_id = reader.varint_u32().map_err(corrupt)?;
            let verdict = record::verdict_from_bits(reader.u8().map_err(corrupt)?);
            let confidence = reader.u8().map_err(corrupt)?;
            let flags = reader.u8().map_err(corrupt)?;
            let threat_id = if flags & 1 != 0 {
                Some(reader.varint_u32().map_err(corrupt)?)
            } else {
                None
            };
            let categories = reader.varint_u32().map_err(corrupt)?;
            let first_seen = reader.varint().map_err(corrupt)?;
            let last_seen = first_seen.saturating_add(reader.varint().map_err(corrupt)?);
            let md5 = if flags & 2 != 0 {
                Some(Md5(reader.array().map_err(corrupt)?))
            } else {
                None
            };
            let sha1 = if flags & 4 != 0 {
                Some(Sha1(reader.array().map_err(corrupt)?))
            } else {
                None
            };
            Mutation::Upsert {
                source: StoredSource {
                    source_id,
                    verdict,
                    confidence,
                    threat_id,
                    categories,
                    first_seen,
                    last_seen,
                },
                md5,
                sha1,
            }
        }
        KIND_ALIAS => Mutation::Alias(Sha256(reader.array().map_err(corrupt)?)),
        KIND_RETRACT => Mutation::Retract {
            source_id: reader.varint_u32().map_err(corrupt)?,
        },
        KIND_TEXT => {
            let len = reader.varint().map_err(corrupt)?;
            if len > record::MAX_TEXT_BYTES as u64 {
                return Err(StoreError::Corrupt(
                    "an import's temporary entry has an over-long text".to_owned(),
                ));
            }
            let bytes = reader.slice(len as usize).map_err(corrupt)?;
            let text = std::str::from_utf8(bytes).map_err(|_| {
                StoreError::Corrupt(
                    "an import's temporary entry has a text that is not UTF-8".to_owned(),
                )
            })?;
            Mutation::Text(text.into())
        }
        kind => {
            return Err(StoreError::Corrupt(format!(
                "an import's temporary entry has kind {kind}"
            )));
        }
    };
    Ok((key, mutation))
}

/// Reads a run file entry by entry.
struct RunReader {
    path: PathBuf,
    input: BufReader<File>,
    buffer: Vec<u8>,
}

impl RunReader {
    fn open(path: &Path) -> Result<RunReader, StoreError> {
        let file = File::open(path).map_err(|source| StoreError::Io {
            action: "read the import's temporary file",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RunReader {
            path: path.to_path_buf(),
            input: BufReader::with_capacity(1 << 20, file),
            buffer: Vec::new(),
        })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        let io_error = |source| StoreError::Io {
            action: "read the import's temporary file",
            path: self.path.clone(),
            source,
        };
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(io_error(error)),
        }
        self.buffer.resize(u32::from_le_bytes(len) as usize, 0);
        self.input.read_exact(&mut self.buffer).map_err(io_error)?;
        decode_entry(&self.buffer).map(Some)
    }
}

/// An iterator run on its own thread, a few thousand items ahead of its consumer: the merge
/// of the runs (reading, decoding, comparing) overlaps with writing the B-tree.
struct ReadAhead {
    batches: std::sync::mpsc::Receiver<Vec<Result<Entry, StoreError>>>,
    current: std::vec::IntoIter<Result<Entry, StoreError>>,
}

impl ReadAhead {
    const BATCH: usize = 4096;

    fn spawn<I>(mut source: I) -> ReadAhead
    where
        I: Iterator<Item = Result<Entry, StoreError>> + Send + 'static,
    {
        let (sender, batches) = std::sync::mpsc::sync_channel(4);
        let spawned = std::thread::Builder::new()
            .name("repnet-import-merge".to_owned())
            .spawn(move || {
                loop {
                    let batch: Vec<_> = source.by_ref().take(Self::BATCH).collect();
                    let last = batch.len() < Self::BATCH || batch.iter().any(Result::is_err);
                    // The consumer stopped reading (an error, or a retry): stop too.
                    if batch.is_empty() || sender.send(batch).is_err() || last {
                        return;
                    }
                }
            });
        let current = match spawned {
            Ok(_) => Vec::new().into_iter(),
            Err(error) => vec![Err(StoreError::Task(format!(
                "cannot start the import's merge thread: {error}"
            )))]
            .into_iter(),
        };
        ReadAhead { batches, current }
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            self.current = self.batches.recv().ok()?.into_iter();
        }
    }
}

/// A k-way merge of sorted runs. Equal keys come out in run order, and runs were written in
/// the order changes were added, so equal keys keep their order.
///
/// A tournament (winner) tree over run indices: taking the smallest entry and refilling its
/// run replays one leaf-to-root path, comparing keys in place and moving only indices.
struct Merge {
    runs: Vec<RunReader>,
    /// The head of each run, by run index; `None` once the run is exhausted.
    heads: Vec<Option<Entry>>,
    /// `tree[n]` is the run whose head wins the subtree `n` (1 is the root); the leaves
    /// `leaves..2 * leaves` stand for the runs, padded to a power of two with exhausted ones.
    tree: Vec<usize>,
    leaves: usize,
}

impl Merge {
    fn new(mut runs: Vec<RunReader>) -> Result<Merge, StoreError> {
        let heads = runs
            .iter_mut()
            .map(RunReader::next_entry)
            .collect::<Result<Vec<_>, _>>()?;
        let leaves = runs.len().next_power_of_two();
        let mut tree = vec![0; 2 * leaves];
        for (leaf, slot) in tree[leaves..].iter_mut().enumerate() {
            *slot = leaf;
        }
        let mut merge = Merge {
            runs,
            heads,
            tree,
            leaves,
        };
        for node in (1..leaves).rev() {
            merge.tree[node] = merge.winner(merge.tree[2 * node], merge.tree[2 * node + 1]);
        }
        Ok(merge)
    }

    /// The run whose head comes first: the smaller key, then the earlier run. Runs past the
    /// end and exhausted runs come last.
    fn winner(&self, a: usize, b: usize) -> usize {
        let key = |run: usize| {
            self.heads
                .get(run)
                .and_then(|head| head.as_ref())
                .map(|e| &e.0)
        };
        match (key(a), key(b)) {
            (None, _) => b,
            (_, None) => a,
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Greater => b,
                std::cmp::Ordering::Equal if b < a => b,
                _ => a,
            },
        }
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        let run = self.tree[1];
        let Some(slot) = self.heads.get_mut(run) else {
            return Ok(None);
        };
        let Some(entry) = slot.take() else {
            return Ok(None);
        };
        *slot = self.runs[run].next_entry()?;
        let mut node = (run + self.leaves) / 2;
        while node >= 1 {
            self.tree[node] = self.winner(self.tree[2 * node], self.tree[2 * node + 1]);
            node /= 2;
        }
        Ok(Some(entry))
    }
}

impl Iterator for Merge {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}
