//! The port between [`Store`](crate::Store) and a storage engine: repnet's operations at the
//! level of its semantics (objects, source records, the change log, statistics), so that no
//! engine's types (heed's, redis's) cross it. Each engine decides how its work meets the
//! async runtime (LMDB: a blocking thread for anything but a bounded batch of reads); the
//! operations that read or write a stream of unbounded length are blocking, for the
//! [`Store`](crate::Store) to run on a blocking thread.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use repnet_model::{Object, Timestamp};
use repnet_protocol::replication::{LogId, StreamHeader};

use crate::bulk::Applier;
use crate::{
    Aggregate, Change, Dirty, DirtyMark, EngineReview, Knowledge, Licence, LocalVerdict, Outcome,
    PrefixMatch, ReviewItem, SearchPrefix, StatEvent, StatisticsSize, StoreError, StoreStats,
};

/// Where a store stands in its own change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncState {
    pub log_id: LogId,
    /// The last sequence number given to a change.
    pub sequence: u64,
    /// Changes after this are all in the log; a receiver further behind needs a snapshot.
    pub floor: u64,
    /// Where this store is in the log of the server it pulls from, if it ever pulled.
    pub upstream: Option<Cursor>,
}

impl SyncState {
    /// The header of a page of the changes after `after`, at most `limit` sequence numbers;
    /// `None` when `after` is below the log's floor or beyond its end (a snapshot is needed).
    pub(crate) fn page(&self, after: u64, limit: usize) -> Option<StreamHeader> {
        if after < self.floor || after > self.sequence {
            return None;
        }
        Some(StreamHeader {
            kind: repnet_protocol::replication::StreamKind::Changes,
            log_id: self.log_id,
            after,
            to: after
                .saturating_add(u64::try_from(limit).unwrap_or(u64::MAX))
                .min(self.sequence),
            sequence: self.sequence,
        })
    }
}

/// A position in another server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub log_id: LogId,
    pub sequence: u64,
}

impl Cursor {
    /// Where a stream leaves its receiver.
    pub(crate) fn after(header: &StreamHeader) -> Cursor {
        Cursor {
            log_id: header.log_id,
            sequence: header.to,
        }
    }

    /// As the backends keep it: the log id, then the sequence (little-endian).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut value = self.log_id.0.to_vec();
        value.extend_from_slice(&self.sequence.to_le_bytes());
        value
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Cursor> {
        let log_id = <[u8; 16]>::try_from(bytes.get(..16)?).ok()?;
        let sequence = <[u8; 8]>::try_from(bytes.get(16..24)?).ok()?;
        Some(Cursor {
            log_id: LogId(log_id),
            sequence: u64::from_le_bytes(sequence),
        })
    }

    /// Whether a page of changes with `header` continues from `current`; why not, if not.
    pub(crate) fn check_continues(
        current: Option<Cursor>,
        header: &StreamHeader,
    ) -> Result<(), StoreError> {
        if header.kind != repnet_protocol::replication::StreamKind::Changes
            || current.is_some_and(|cursor| {
                cursor.log_id == header.log_id && cursor.sequence == header.after
            })
        {
            return Ok(());
        }
        Err(StoreError::OutOfOrder(match current {
            Some(cursor) if cursor.log_id != header.log_id => format!(
                "the changes come from another log ({}) than this server follows ({}): apply a snapshot (or a bundle exported without --after) first",
                header.log_id, cursor.log_id
            ),
            Some(cursor) => format!(
                "the changes start at {}, this server is at {}: export with --after {}",
                header.after, cursor.sequence, cursor.sequence
            ),
            None => format!(
                "the changes start at {}, and this server has never been given a snapshot: apply a snapshot (or a bundle exported without --after) first",
                header.after
            ),
        }))
    }
}

/// What [`Store::write_changes`](crate::Store::write_changes) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangesAnswer {
    /// The stream was written.
    Written(StreamHeader),
    /// `after` is below the floor, or beyond the sequence: the receiver needs a snapshot.
    SnapshotNeeded(SyncState),
}

/// A storage engine. Object-safe: the store holds it as `Arc<dyn Backend>`.
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync + Debug + 'static {
    /// Where temporary files go (imports' sorted runs, spooled answers).
    fn dir(&self) -> &Path;

    /// What applies a bulk import's sorted changes (blocking).
    fn applier(&self) -> Arc<dyn Applier>;

    /// Stops background work; called once, when the last handle goes.
    fn close(&self);

    /// Whether other processes serve the same knowledge base (then what a server keeps in
    /// memory — licence keys, leases — must be read again or coordinated).
    fn shared(&self) -> bool {
        false
    }
    /// Takes the lease `name` for `seconds`, or extends it if this store handle holds it;
    /// answers whether it holds it now. For work that one node of a shared store does at a
    /// time; an embedded store has one process, which always holds it.
    async fn lease(&self, _name: &str, _seconds: u64) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Notes this store handle's server as alive for `seconds`; answers how many servers
    /// noted themselves alive within that time (1 on an embedded store).
    async fn heartbeat(&self, _seconds: u64) -> Result<u32, StoreError> {
        Ok(1)
    }
    /// Whether the store can serve now (`Unavailable` when not): for readiness probes.
    async fn check(&self) -> Result<(), StoreError>;
    async fn lookup(&self, objects: &[Object]) -> Result<Vec<Knowledge>, StoreError>;
    async fn search_prefixes(
        &self,
        prefixes: &[SearchPrefix],
        limit: usize,
    ) -> Result<(Vec<PrefixMatch>, bool), StoreError>;
    async fn apply(&self, changes: Vec<Change>) -> Result<Vec<Outcome>, StoreError>;
    async fn local_verdicts(&self) -> Result<Vec<LocalVerdict>, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    // The negative-lookup filter (or whatever keeps lookups of unknown objects cheap).
    fn wants_filter(&self) -> bool;
    /// Whether lookups of unknown objects are answered by the filter now.
    fn filter_ready(&self) -> bool;
    async fn filter_wanted(&self);
    async fn build_filter(
        &self,
        stop: Box<dyn Fn() -> bool + Send + 'static>,
    ) -> Result<(), StoreError>;

    // Statistics.
    async fn record_statistics(&self, events: Vec<StatEvent>) -> Result<(), StoreError>;
    async fn aggregate(&self, object: &Object) -> Result<Option<Aggregate>, StoreError>;
    async fn delete_events_before(&self, cutoff: Timestamp) -> Result<u64, StoreError>;
    async fn dirty_aggregates(&self, limit: usize) -> Result<Dirty, StoreError>;
    async fn clear_dirty(&self, keys: Vec<DirtyMark>) -> Result<(), StoreError>;
    async fn dirty_count(&self) -> Result<u64, StoreError>;
    async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError>;
    async fn engine_reviews(
        &self,
        set: Vec<EngineReview>,
        removed: Vec<Object>,
    ) -> Result<(), StoreError>;
    async fn remove_review(&self, id: String) -> Result<bool, StoreError>;
    async fn statistics_size(&self) -> Result<StatisticsSize, StoreError>;
    async fn event_count(&self) -> Result<u64, StoreError>;

    // Secrets and licence keys.
    async fn permanent_secret(&self, name: &str) -> Result<[u8; 32], StoreError>;
    async fn device_secret(
        &self,
        now: Timestamp,
        rotate_after_seconds: u64,
    ) -> Result<[u8; 32], StoreError>;
    async fn licences(&self) -> Result<Vec<Licence>, StoreError>;
    async fn put_licences(&self, licences: Vec<Licence>) -> Result<(), StoreError>;

    // The change log and replication streams.
    async fn sync_state(&self) -> Result<SyncState, StoreError>;
    /// Blocking: writes for as long as `out` takes.
    fn write_changes(
        &self,
        after: u64,
        limit: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<ChangesAnswer, StoreError>;
    /// Blocking: writes for as long as `out` takes.
    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<StreamHeader, StoreError>;

    /// Blocking: every exportable record, to `visit` (see `Store::export`); the sequence.
    fn export(
        &self,
        visit: &mut dyn FnMut(crate::Exported) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError>;

    /// Blocking: a consistent, compacted copy of the whole store (the embedded store's
    /// database file) into `out`, from one read transaction.
    fn backup(&self, out: &mut std::fs::File) -> Result<(), StoreError>;
}
