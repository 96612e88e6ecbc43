//! The change log and replication (see `sync.rs` for the stream).
//!
//! Every write transaction that changes what a key tells other servers (anything but a later
//! `last_seen`, `StoredRecord::differs_for_sync`) gives each such key the next sequence
//! number and appends `sequence → key` to the `changes` database, in the same transaction:
//! the log is exactly as durable as the change. `meta.sequence` is the last number given,
//! `meta.changes_floor` the number below which the log was trimmed (it keeps at most
//! `StoreOptions::change_log_max` entries), and `meta.log_id` names this log.
//!
//! A page of changes sends each key's current state, not its history: applying it brings
//! the receiver to the sender's state for those keys, and repeating a page is harmless.
//! A receiver behind the floor needs a snapshot: every key's current state.
//!
//! A server that pulls keeps its position in the sender's log (`meta.upstream_cursor`: the
//! sender's log id and the sequence applied), written in the transaction that applies the
//! changes, so a crash at any moment leaves the changes and the cursor in step.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{Database, RoTxn, RwTxn};

use super::{LmdbStore, WriteError};
use crate::StoreError;
use crate::backend::{ChangesAnswer, Cursor, SyncState};
use crate::bulk::TEMP_PREFIX;
use crate::core::Snapshot as _;
use crate::record::decode;
use crate::sync::{LogId, StreamHeader, StreamKind, StreamWriter, SyncEntry};

/// Keys a write transaction changed, in order: in memory, and past a bound in a temporary
/// file, so that a rebuild that changes tens of millions of keys stays in bounded memory.
/// Past `max` keys nothing is kept, only counted: the log is then reset (see `commit`).
pub(super) struct ChangedKeys {
    max: u64,
    count: u64,
    /// `u8 length, key` per key.
    buffer: Vec<u8>,
    spill: Option<(PathBuf, BufWriter<File>)>,
    dir: PathBuf,
}

const SPILL_BYTES: usize = 8 << 20;

impl ChangedKeys {
    pub(super) fn new(dir: &Path, max: u64) -> ChangedKeys {
        ChangedKeys {
            max,
            count: 0,
            buffer: Vec::new(),
            spill: None,
            dir: dir.to_path_buf(),
        }
    }

    pub(super) fn note(&mut self, key: &[u8]) -> Result<(), WriteError> {
        self.count += 1;
        if self.count > self.max {
            if self.count == self.max + 1 {
                // Too many to keep: the log will be reset. Drop what was kept.
                self.buffer = Vec::new();
                if let Some((path, _)) = self.spill.take() {
                    let _ = std::fs::remove_file(path);
                }
            }
            return Ok(());
        }
        self.buffer.push(key.len() as u8);
        self.buffer.extend_from_slice(key);
        if self.buffer.len() >= SPILL_BYTES {
            self.spill_buffer()?;
        }
        Ok(())
    }

    fn spill_buffer(&mut self) -> Result<(), WriteError> {
        let io = |path: &Path, source| {
            WriteError::Other(StoreError::Io {
                action: "write the change log's temporary file",
                path: path.to_path_buf(),
                source,
            })
        };
        if self.spill.is_none() {
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let number = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self.dir.join(format!(
                "{TEMP_PREFIX}changes-{}-{number}",
                std::process::id()
            ));
            let file = File::create(&path).map_err(|e| io(&path, e))?;
            self.spill = Some((path, BufWriter::with_capacity(1 << 20, file)));
        }
        if let Some((path, out)) = &mut self.spill {
            out.write_all(&self.buffer).map_err(|e| io(path, e))?;
        }
        self.buffer.clear();
        Ok(())
    }

    /// Calls `each` with every kept key, in order.
    fn for_each(
        mut self,
        mut each: impl FnMut(&[u8]) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        if let Some((path, out)) = self.spill.take() {
            let io = |source| {
                WriteError::Other(StoreError::Io {
                    action: "read the change log's temporary file",
                    path: path.clone(),
                    source,
                })
            };
            drop(out.into_inner().map_err(|e| io(e.into_error()))?);
            let mut input = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io)?);
            let mut key = [0u8; 256];
            loop {
                let mut len = [0u8; 1];
                match input.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(error) => return Err(io(error)),
                }
                let len = usize::from(len[0]);
                input.read_exact(&mut key[..len]).map_err(io)?;
                each(&key[..len])?;
            }
            let _ = std::fs::remove_file(&path);
        }
        let bytes = std::mem::take(&mut self.buffer);
        let mut at = 0;
        while at < bytes.len() {
            let len = usize::from(bytes[at]);
            each(&bytes[at + 1..at + 1 + len])?;
            at += 1 + len;
        }
        Ok(())
    }
}

impl Drop for ChangedKeys {
    fn drop(&mut self) {
        if let Some((path, _)) = self.spill.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(super) fn read_u64(
    txn: &RoTxn<'_>,
    db: Database<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<u64>, heed::Error> {
    Ok(db
        .get(txn, key)?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map(u64::from_le_bytes))
}

fn read_cursor(txn: &RoTxn<'_>, db: Database<Bytes, Bytes>) -> Result<Option<Cursor>, heed::Error> {
    Ok(db.get(txn, b"upstream_cursor")?.and_then(Cursor::decode))
}

impl LmdbStore {
    /// Gives this store's log an id if it has none (a new store, or one from before logs).
    pub(super) fn ensure_log_id(
        txn: &mut RwTxn<'_>,
        meta: Database<Bytes, Bytes>,
    ) -> Result<(), heed::Error> {
        if meta.get(txn, b"log_id")?.is_none() {
            let mut id = [0u8; 16];
            // A clock-and-address mix when the system has no randomness to give: ids only
            // need to differ between stores.
            if getrandom::fill(&mut id).is_err() {
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos())
                    .unwrap_or(0)
                    ^ (&id as *const _ as usize as u128);
                id = seed.to_le_bytes();
            }
            meta.put(txn, b"log_id", &id)?;
        }
        Ok(())
    }

    fn state_in(&self, txn: &RoTxn<'_>) -> Result<SyncState, StoreError> {
        let meta = self.dbs.meta;
        let log_id = meta
            .get(txn, b"log_id")
            .map_err(|e| self.error(e))?
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .map(LogId)
            .ok_or_else(|| StoreError::Corrupt("the change log has no id".to_owned()))?;
        Ok(SyncState {
            log_id,
            sequence: read_u64(txn, meta, b"sequence")
                .map_err(|e| self.error(e))?
                .unwrap_or(0),
            floor: read_u64(txn, meta, b"changes_floor")
                .map_err(|e| self.error(e))?
                .unwrap_or(0),
            upstream: read_cursor(txn, meta).map_err(|e| self.error(e))?,
        })
    }

    pub(crate) fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.read(|reader| self.state_in(reader.txn))
    }

    /// Appends the keys a transaction changed to the log, before its commit.
    pub(super) fn commit_changes(
        &self,
        txn: &mut RwTxn<'_>,
        changed: ChangedKeys,
    ) -> Result<(), WriteError> {
        if changed.count == 0 {
            return Ok(());
        }
        let meta = self.dbs.meta;
        let fail = |e| self.write_error(e);
        let sequence = read_u64(txn, meta, b"sequence").map_err(fail)?.unwrap_or(0);
        let floor = read_u64(txn, meta, b"changes_floor")
            .map_err(fail)?
            .unwrap_or(0);
        let max = changed.max;
        let new_sequence = sequence + changed.count;
        if changed.count > max {
            // More changes than the log keeps: every receiver needs a snapshot anyway.
            self.dbs.changes.clear(txn).map_err(fail)?;
            meta.put(txn, b"changes_floor", &new_sequence.to_le_bytes())
                .map_err(fail)?;
        } else {
            let mut next = sequence;
            let log = self.dbs.changes;
            changed.for_each(|key| {
                next += 1;
                log.put_with_flags(txn, heed::PutFlags::APPEND, &next.to_be_bytes(), key)
                    .map_err(fail)
            })?;
            if new_sequence - floor > max {
                let new_floor = new_sequence - max;
                let bound = new_floor.to_be_bytes();
                let range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = (
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Included(&bound),
                );
                log.delete_range(txn, &range).map_err(fail)?;
                meta.put(txn, b"changes_floor", &new_floor.to_le_bytes())
                    .map_err(fail)?;
            }
        }
        meta.put(txn, b"sequence", &new_sequence.to_le_bytes())
            .map_err(fail)?;
        Ok(())
    }

    /// Writes the changes after `after` (at most `limit` of them: sequence numbers, so the
    /// page's end is known before anything is read, and the header goes out first) as a
    /// stream: each changed key once, with its current state. Memory: the keys seen, at most
    /// `limit` borrowed slices.
    pub(crate) fn write_changes<W: Write>(
        &self,
        after: u64,
        limit: usize,
        out: W,
    ) -> Result<ChangesAnswer, StoreError> {
        self.read(|reader| {
            let state = self.state_in(reader.txn)?;
            let Some(header) = state.page(after, limit) else {
                return Ok(ChangesAnswer::SnapshotNeeded(state));
            };
            let to = header.to;
            let io = |source| StoreError::Io {
                action: "write the changes of",
                path: self.dir.clone(),
                source,
            };
            let mut stream = StreamWriter::new(out, &header).map_err(io)?;
            let start = (after + 1).to_be_bytes();
            let end = to.to_be_bytes();
            let mut seen = HashSet::new();
            for entry in self
                .dbs
                .changes
                .range(
                    reader.txn,
                    &(
                        std::ops::Bound::Included(&start[..]),
                        std::ops::Bound::Included(&end[..]),
                    ),
                )
                .map_err(|e| self.error(e))?
            {
                let (_, key) = entry.map_err(|e| self.error(e))?;
                if !seen.insert(key) {
                    continue;
                }
                let value = match self
                    .objects()
                    .get(reader.txn, key)
                    .map_err(|e| self.error(e))?
                {
                    None => None,
                    Some(bytes) => {
                        let stored = decode(bytes)
                            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                        reader.sync_value(&stored)?
                    }
                };
                stream
                    .entry(&SyncEntry {
                        key: key.to_vec(),
                        value,
                    })
                    .map_err(io)?;
            }
            stream.finish().map_err(io)?;
            Ok(ChangesAnswer::Written(header))
        })
    }

    /// Every exportable record to `visit`, from one read transaction; the sequence then.
    pub(crate) fn export(
        &self,
        visit: &mut dyn FnMut(crate::Exported) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.read(|reader| {
            let sequence = self.state_in(reader.txn)?.sequence;
            for entry in self.objects().iter(reader.txn).map_err(|e| self.error(e))? {
                let (key, bytes) = entry.map_err(|e| self.error(e))?;
                let stored =
                    decode(bytes).map_err(|error| StoreError::Corrupt(error.to_string()))?;
                if let Some(exported) = reader.exported(key, &stored)? {
                    visit(exported)?;
                }
            }
            Ok(sequence)
        })
    }

    /// Writes every key's state as a snapshot stream.
    pub(crate) fn write_snapshot<W: Write>(&self, out: W) -> Result<StreamHeader, StoreError> {
        self.read(|reader| {
            let state = self.state_in(reader.txn)?;
            let header = StreamHeader {
                kind: StreamKind::Snapshot,
                log_id: state.log_id,
                after: 0,
                to: state.sequence,
                sequence: state.sequence,
            };
            let io = |source| StoreError::Io {
                action: "write a snapshot of",
                path: self.dir.clone(),
                source,
            };
            let mut stream = StreamWriter::new(out, &header).map_err(io)?;
            for entry in self.objects().iter(reader.txn).map_err(|e| self.error(e))? {
                let (key, bytes) = entry.map_err(|e| self.error(e))?;
                let stored =
                    decode(bytes).map_err(|error| StoreError::Corrupt(error.to_string()))?;
                if let Some(value) = reader.sync_value(&stored)? {
                    stream
                        .entry(&SyncEntry {
                            key: key.to_vec(),
                            value: Some(value),
                        })
                        .map_err(io)?;
                }
            }
            stream.finish().map_err(io)?;
            Ok(header)
        })
    }

    /// Checks, inside the transaction that applies a stream, that it continues where this
    /// store is, and moves the cursor to its end.
    pub(super) fn advance_cursor(
        &self,
        txn: &mut RwTxn<'_>,
        header: &StreamHeader,
    ) -> Result<(), WriteError> {
        let fail = |e| self.write_error(e);
        let current = read_cursor(txn, self.dbs.meta).map_err(fail)?;
        Cursor::check_continues(current, header).map_err(WriteError::Other)?;
        let value = Cursor::after(header).encode();
        self.dbs
            .meta
            .put(txn, b"upstream_cursor", &value)
            .map_err(fail)
    }
}
