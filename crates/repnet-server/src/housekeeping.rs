//! The server's small background workers ([`repnet_runtime::workers`]): statistics past their
//! retention, local verdicts past their expiry, the negative-lookup filter, the overview's
//! activity samples. The larger ones live beside what they work on: the engine
//! (`engine.rs`), feeds (`feeds.rs`), the upstream puller (`upstream.rs`), the statistics
//! writer (`statistics.rs`), licence-key last uses (`repnet_licences`).

use std::time::Duration;

use repnet_model::{Source, Timestamp};
use repnet_runtime::workers::{Context, Next, WorkError, Worker};
use repnet_store::{Change, Store};

/// Deletes raw statistics past their retention, every hour. Stopped between deletions, never
/// within one: an abandoned deletion would go on in the blocking pool and hold the store
/// open after the server has stopped.
pub(crate) struct Retention {
    pub(crate) store: Store,
    pub(crate) retention: Duration,
}

impl Worker for Retention {
    fn name(&self) -> String {
        "statistics-retention".to_owned()
    }

    async fn work(&mut self, cx: &Context) -> Result<Next, WorkError> {
        let cutoff = Timestamp(cx.clock.now().0.saturating_sub(self.retention.as_secs()));
        let deleted = self.store.delete_events_before(cutoff).await?;
        if deleted > 0 {
            tracing::info!(deleted, "raw statistics past their retention deleted");
        }
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &Context) {
        tokio::time::sleep(Duration::from_secs(3600)).await
    }
}

/// How often local verdicts past their expiry are removed.
pub(crate) const LAPSE_INTERVAL: Duration = Duration::from_secs(5);

/// Removes local verdicts past their expiry, every [`LAPSE_INTERVAL`]: as a `DELETE` would,
/// so the change reaches private servers and proxies through the change log.
pub(crate) struct LapseLocalVerdicts {
    pub(crate) store: Store,
}

impl Worker for LapseLocalVerdicts {
    fn name(&self) -> String {
        "local-verdict-expiry".to_owned()
    }

    async fn work(&mut self, cx: &Context) -> Result<Next, WorkError> {
        let now = cx.clock.now();
        let lapsed: Vec<Change> = self
            .store
            .local_verdicts()
            .await?
            .into_iter()
            .filter(|verdict| verdict.expires.is_some_and(|expires| expires <= now))
            .map(|verdict| Change::Remove {
                object: verdict.object,
                source: Source::Local,
            })
            .collect();
        if !lapsed.is_empty() {
            let count = lapsed.len();
            self.store.apply(lapsed).await?;
            tracing::info!(count, "local verdicts past their expiry removed");
        }
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &Context) {
        tokio::time::sleep(LAPSE_INTERVAL).await
    }
}

/// On a store several servers share (a Redis Cluster), notes this server alive every few
/// seconds and counts those that are, so that each lets a licence key use its share of the
/// configured rate and together they hold the key to it.
pub(crate) struct CountServers {
    pub(crate) store: Store,
    pub(crate) licences: std::sync::Arc<crate::licences::Licences>,
}

/// How often a server notes itself alive; one silent for three times as long is not counted.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

impl Worker for CountServers {
    fn name(&self) -> String {
        "server-count".to_owned()
    }

    async fn work(&mut self, _cx: &Context) -> Result<Next, WorkError> {
        let servers = self
            .store
            .heartbeat(HEARTBEAT_INTERVAL.as_secs() * 3)
            .await?;
        self.licences.set_servers(servers);
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &Context) {
        tokio::time::sleep(HEARTBEAT_INTERVAL).await
    }
}

/// Builds the negative-lookup filter when the store says it is due: at start, after an
/// import that rebuilt the object database, and when enough keys were added since the last
/// build. A build under way stops at its next chunk of keys when the server stops.
pub(crate) struct FilterBuild {
    pub(crate) store: Store,
}

impl Worker for FilterBuild {
    fn name(&self) -> String {
        "lookup-filter".to_owned()
    }

    async fn work(&mut self, cx: &Context) -> Result<Next, WorkError> {
        if self.store.wants_filter() {
            let stop = cx.stop.clone();
            self.store.build_filter(move || stop.is_stopping()).await?;
        }
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &Context) {
        // A failed build is tried again after a minute, or at the next write that wants one.
        tokio::select! {
            () = self.store.filter_wanted() => {}
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }

    fn progress(&self) -> Option<String> {
        let ready = self.store.filter_ready();
        Some(if ready { "built" } else { "not built" }.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repnet_model::{Confidence, Domain, Object, SourceRecord, Verdict};
    use repnet_runtime::workers::{Clock, Workers};

    fn store(dir: &std::path::Path) -> Store {
        Store::open(dir, &repnet_store::StoreOptions::default()).expect("store")
    }

    /// Lets the workers run until they wait on a timer again: the store's work runs on
    /// blocking threads, during which tokio does not advance paused time.
    async fn settle(workers: &Workers, units: u64) {
        while workers.statuses()[0].units < units {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_verdict_lapses_at_its_expiry_on_the_injected_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let epoch = Timestamp(1_000_000);
        let object = Object::Domain(Domain::new("lapsing.example").expect("domain"));
        let record = SourceRecord::new(Source::Local, Verdict::Untrusted, Confidence::MAX, epoch);
        store
            .apply(vec![Change::Local {
                object: object.clone(),
                hashes: Default::default(),
                record,
                comment: None,
                expires: Some(Timestamp(epoch.0 + 12)),
            }])
            .await
            .expect("apply");
        let workers = Workers::new(Clock::following_tokio(epoch));
        workers.spawn(LapseLocalVerdicts {
            store: store.clone(),
        });
        let known = || async {
            !store
                .lookup(std::slice::from_ref(&object))
                .await
                .expect("lookup")[0]
                .records
                .is_empty()
        };
        settle(&workers, 1).await;
        assert!(known().await, "not expired at the start");
        tokio::time::advance(LAPSE_INTERVAL).await;
        settle(&workers, 2).await;
        assert!(known().await, "not expired after 5 s of 12");
        tokio::time::advance(LAPSE_INTERVAL * 2).await;
        settle(&workers, 3).await;
        assert!(!known().await, "removed at the first sweep after 12 s");
        workers.stop().await;
    }
}

/// How often the activity sampler takes the counters' differences; the overview also
/// samples when it is shown.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples between two saves of the activity (a minute).
const SAVE_EVERY: u32 = 6;

/// Where the sampler reads the cumulative counters.
#[derive(Clone, Debug)]
pub(crate) struct ActivitySources {
    pub(crate) activity: std::sync::Arc<crate::activity::Activity>,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) store: repnet_store::Store,
    pub(crate) engine: std::sync::Arc<crate::engine::Engine>,
}

impl ActivitySources {
    /// Takes a sample now.
    pub(crate) async fn sample(&self, now: u64) {
        let mut totals = crate::activity::Counts {
            lookups: self.metrics.lookup_totals(),
            ..crate::activity::Counts::default()
        };
        if let Ok(stats) = self.store.stats().await {
            totals.filter_checked = stats.filter_checked;
            totals.filter_answered = stats.filter_answered;
        }
        (totals.engine_set, totals.engine_removed) = self.engine.changes();
        self.activity.sample(now, totals);
    }
}

/// The overview's activity ([`crate::activity`]): samples every [`SAMPLE_EVERY`] and saves every minute and at a stop.
pub(crate) struct ActivitySampler {
    pub(crate) sources: ActivitySources,
    pub(crate) samples: u32,
}

impl repnet_runtime::Worker for ActivitySampler {
    fn name(&self) -> String {
        "activity".to_owned()
    }

    async fn work(
        &mut self,
        cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        self.sources.sample(cx.clock.now().0).await;
        self.samples += 1;
        if self.samples.is_multiple_of(SAVE_EVERY) {
            let activity = std::sync::Arc::clone(&self.sources.activity);
            let _ = tokio::task::spawn_blocking(move || activity.save()).await;
        }
        Ok(repnet_runtime::Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        tokio::time::sleep(SAMPLE_EVERY).await
    }

    async fn finish(&mut self, cx: &repnet_runtime::Context) {
        self.sources.sample(cx.clock.now().0).await;
        let activity = std::sync::Arc::clone(&self.sources.activity);
        let _ = tokio::task::spawn_blocking(move || activity.save()).await;
    }
}
