//! LMDB behind the [`Backend`] port, and its blocking policy: a bounded batch of lookups or
//! prefix searches runs on the calling task (memory-mapped reads of microseconds, cheaper than
//! a hop to the blocking pool, and holding no lock that waits on anything but another such
//! batch or a writer's note of its keys); everything else (writes, which wait for fsync, and
//! reads of any length) runs on tokio's blocking pool.

use std::path::Path;
use std::sync::Arc;

use repnet_model::{Object, Timestamp};
use repnet_protocol::replication::StreamHeader;

use super::LmdbStore;
use crate::backend::{Backend, ChangesAnswer, SyncState};
use crate::bulk::Applier;
use crate::{
    Aggregate, Change, Dirty, DirtyMark, EngineReview, Knowledge, Licence, LocalVerdict, Outcome,
    PrefixMatch, ReviewItem, SearchPrefix, StatEvent, StatisticsSize, StoreError, StoreStats,
};

/// The embedded store, shared with the blocking threads that work on it.
#[derive(Debug)]
pub(crate) struct Lmdb(pub(crate) Arc<LmdbStore>);

impl Lmdb {
    /// Runs `work` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LmdbStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|error| StoreError::Task(error.to_string()))?
    }
}

#[async_trait::async_trait]
impl Backend for Lmdb {
    fn dir(&self) -> &Path {
        self.0.dir()
    }

    fn applier(&self) -> Arc<dyn Applier> {
        Arc::clone(&self.0) as Arc<dyn Applier>
    }

    fn close(&self) {
        self.0.close();
    }

    async fn check(&self) -> Result<(), StoreError> {
        // An embedded store that opened serves until the process stops.
        Ok(())
    }

    async fn lookup(&self, objects: &[Object]) -> Result<Vec<Knowledge>, StoreError> {
        self.0.lookup(objects)
    }

    async fn search_prefixes(
        &self,
        prefixes: &[SearchPrefix],
        limit: usize,
    ) -> Result<(Vec<PrefixMatch>, bool), StoreError> {
        self.0.search_prefixes(prefixes, limit)
    }

    async fn apply(&self, changes: Vec<Change>) -> Result<Vec<Outcome>, StoreError> {
        let outcomes = self.blocking(move |store| store.apply(&changes)).await?;
        self.0.note_writes();
        Ok(outcomes)
    }

    async fn local_verdicts(&self) -> Result<Vec<LocalVerdict>, StoreError> {
        self.blocking(|store| store.local_verdicts()).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.blocking(|store| store.stats()).await
    }

    fn wants_filter(&self) -> bool {
        self.0.wants_filter()
    }

    fn filter_ready(&self) -> bool {
        self.0.filter_ready()
    }

    async fn filter_wanted(&self) {
        self.0.filter_wanted().await;
    }

    async fn build_filter(
        &self,
        stop: Box<dyn Fn() -> bool + Send + 'static>,
    ) -> Result<(), StoreError> {
        self.blocking(move |store| store.build_filter(&*stop)).await
    }

    async fn record_statistics(&self, events: Vec<StatEvent>) -> Result<(), StoreError> {
        self.blocking(move |store| store.record_statistics(&events))
            .await
    }

    async fn aggregate(&self, object: &Object) -> Result<Option<Aggregate>, StoreError> {
        let object = object.clone();
        self.blocking(move |store| store.aggregate(&object)).await
    }

    async fn delete_events_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        self.blocking(move |store| store.delete_events_before(cutoff))
            .await
    }

    async fn dirty_aggregates(&self, limit: usize) -> Result<Dirty, StoreError> {
        self.blocking(move |store| store.dirty_aggregates(limit))
            .await
    }

    async fn clear_dirty(&self, keys: Vec<DirtyMark>) -> Result<(), StoreError> {
        self.blocking(move |store| store.clear_dirty(&keys)).await
    }

    async fn dirty_count(&self) -> Result<u64, StoreError> {
        self.blocking(|store| store.dirty_count()).await
    }

    async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError> {
        self.blocking(|store| store.review_items()).await
    }

    async fn engine_reviews(
        &self,
        set: Vec<EngineReview>,
        removed: Vec<Object>,
    ) -> Result<(), StoreError> {
        self.blocking(move |store| store.engine_reviews(&set, &removed))
            .await
    }

    async fn remove_review(&self, id: String) -> Result<bool, StoreError> {
        self.blocking(move |store| store.remove_review(&id)).await
    }

    async fn statistics_size(&self) -> Result<StatisticsSize, StoreError> {
        self.blocking(|store| store.statistics_size()).await
    }

    async fn event_count(&self) -> Result<u64, StoreError> {
        self.blocking(|store| store.event_count()).await
    }

    async fn permanent_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let name = name.to_owned();
        self.blocking(move |store| store.permanent_secret(&name))
            .await
    }

    async fn device_secret(
        &self,
        now: Timestamp,
        rotate_after_seconds: u64,
    ) -> Result<[u8; 32], StoreError> {
        self.blocking(move |store| store.device_secret(now, rotate_after_seconds))
            .await
    }

    async fn licences(&self) -> Result<Vec<Licence>, StoreError> {
        self.blocking(|store| store.licences()).await
    }

    async fn put_licences(&self, licences: Vec<Licence>) -> Result<(), StoreError> {
        self.blocking(move |store| store.put_licences(&licences))
            .await
    }

    async fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.blocking(|store| store.sync_state()).await
    }

    fn write_changes(
        &self,
        after: u64,
        limit: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<ChangesAnswer, StoreError> {
        self.0.write_changes(after, limit, out)
    }

    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<StreamHeader, StoreError> {
        self.0.write_snapshot(out)
    }

    fn export(
        &self,
        visit: &mut dyn FnMut(crate::Exported) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.0.export(visit)
    }

    fn backup(&self, out: &mut std::fs::File) -> Result<(), StoreError> {
        self.0.backup(out)
    }
}
