//! Background work, in one shape (after Garage's background workers).
//!
//! A [`Worker`] does its work in units: [`Worker::work`] does one and says what comes next
//! ([`Next`]): more at once, nothing until [`Worker::wait_for_work`] returns, or nothing ever
//! again. [`Workers`] runs each on its own task, records what it did ([`WorkerStatus`], for
//! `/v1/admin/status` and the metrics) and stops them cooperatively: a stop is seen between
//! units and while waiting, never in the middle of a unit, so that a unit that holds the
//! store (a transaction, an import) is finished or abandoned by the worker itself. A unit
//! that can be long (a download) watches [`Context::stop`] and returns early.
//!
//! Schedules read the time from [`Context::clock`] and wait with tokio's timers, so that a
//! test runs them on paused time ([`Clock::following_tokio`], `tokio::time::advance`).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use repnet_model::Timestamp;
use tokio::sync::watch;

/// What a worker does after a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More is waiting: another unit at once.
    Busy,
    /// Nothing to do until [`Worker::wait_for_work`] returns.
    Idle,
    /// Nothing ever again: the worker ends.
    Done,
}

/// Why a unit of work failed. The worker goes on: it waits for work, as after [`Next::Idle`]
/// (a worker that backs off after failures knows it failed and waits longer).
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// A piece of background work.
pub trait Worker: Send + 'static {
    /// Its name in logs, in the status and as the metrics' `worker` label: stable, short
    /// (`engine`, `feed:urlhaus`).
    fn name(&self) -> String;

    /// Does one unit of work. Not cancelled when the workers stop: a unit that can take long
    /// watches `cx.stop` and returns early.
    fn work(&mut self, cx: &Context) -> impl Future<Output = Result<Next, WorkError>> + Send;

    /// Waits until there is work again (a timer, a queue, a signal). Dropped when the
    /// workers stop.
    fn wait_for_work(&mut self, cx: &Context) -> impl Future<Output = ()> + Send;

    /// Runs once when the workers stop, after the last unit: flushes what the worker holds.
    fn finish(&mut self, _cx: &Context) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// What the worker has to say beyond its counts ("3 objects pending"), read after each
    /// unit.
    fn progress(&self) -> Option<String> {
        None
    }
}

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// In a unit of work.
    Busy,
    /// Waiting for work.
    Idle,
    /// Ended on its own ([`Next::Done`]).
    Done,
    /// Stopped with the process.
    Stopped,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Idle => "idle",
            WorkerState::Done => "done",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// What a worker has done since the process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// Units of work done, failed ones included.
    pub units: u64,
    /// Units that failed.
    pub errors: u64,
    /// When the last unit ended.
    pub last_unit: Option<Timestamp>,
    /// The last failure and when it happened; kept after later successes.
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    /// [`Worker::progress`] after the last unit.
    pub progress: Option<String>,
}

/// What a worker is given with each call.
#[derive(Debug, Clone)]
pub struct Context {
    pub stop: Stop,
    pub clock: Clock,
}

/// Whether the workers are told to stop.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the workers are told to stop (at once if they already are).
    pub async fn stopped(&self) {
        let mut receiver = self.0.clone();
        // An error means the sender is gone: nobody can stop us any more, nor will.
        if receiver.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The time for schedules: the system's, or (in tests) one that moves with tokio's time.
#[derive(Debug, Clone, Copy)]
pub struct Clock(ClockKind);

#[derive(Debug, Clone, Copy)]
enum ClockKind {
    System,
    Tokio {
        epoch: Timestamp,
        start: tokio::time::Instant,
    },
}

impl Clock {
    pub fn system() -> Clock {
        Clock(ClockKind::System)
    }

    /// A clock that reads `epoch` now and moves on with tokio's time: on paused time
    /// (`tokio::time::pause`) it moves only with `tokio::time::advance` and auto-advance.
    pub fn following_tokio(epoch: Timestamp) -> Clock {
        Clock(ClockKind::Tokio {
            epoch,
            start: tokio::time::Instant::now(),
        })
    }

    pub fn now(&self) -> Timestamp {
        match self.0 {
            ClockKind::System => crate::now(),
            ClockKind::Tokio { epoch, start } => {
                Timestamp(epoch.0.saturating_add(start.elapsed().as_secs()))
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

/// The background workers of a process: started with [`Workers::spawn`], watched with
/// [`Workers::statuses`], stopped together with [`Workers::stop`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: Clock,
    stop: watch::Sender<bool>,
    statuses: Mutex<Vec<Arc<Mutex<WorkerStatus>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Workers {
    pub fn new(clock: Clock) -> Workers {
        Workers {
            inner: Arc::new(Inner {
                clock,
                stop: watch::channel(false).0,
                statuses: Mutex::new(Vec::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Starts `worker` on a task of its own. A worker spawned after [`Workers::stop`] is
    /// finished at once.
    pub fn spawn(&self, worker: impl Worker) {
        let status = Arc::new(Mutex::new(WorkerStatus {
            name: worker.name(),
            state: WorkerState::Idle,
            units: 0,
            errors: 0,
            last_unit: None,
            last_error: None,
            last_error_at: None,
            progress: None,
        }));
        lock(&self.inner.statuses).push(Arc::clone(&status));
        let cx = Context {
            stop: Stop(self.inner.stop.subscribe()),
            clock: self.inner.clock,
        };
        let task = tokio::spawn(run(worker, status, cx));
        lock(&self.inner.tasks).push(task);
    }

    /// Every worker's status, in the order they were spawned.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        lock(&self.inner.statuses)
            .iter()
            .map(|status| lock(status).clone())
            .collect()
    }

    /// Tells every worker to stop and waits until each has finished its unit of work and
    /// [`Worker::finish`].
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            if let Err(error) = task.await
                && error.is_panic()
            {
                tracing::error!(%error, "a background worker panicked");
            }
        }
    }
}

async fn run(mut worker: impl Worker, status: Arc<Mutex<WorkerStatus>>, cx: Context) {
    let name = lock(&status).name.clone();
    // Failures in a row: the first is logged as a warning, the rest quietly (an upstream
    // that is down fails every unit), and the recovery again.
    let mut failing = 0u64;
    loop {
        if cx.stop.is_stopping() {
            break;
        }
        lock(&status).state = WorkerState::Busy;
        let result = worker.work(&cx).await;
        let next = {
            let mut status = lock(&status);
            let now = cx.clock.now();
            status.units += 1;
            status.last_unit = Some(now);
            status.progress = worker.progress();
            match result {
                Ok(next) => {
                    if failing > 0 {
                        tracing::info!(worker = %name, failures = failing, "background work succeeds again");
                        failing = 0;
                    }
                    next
                }
                Err(error) => {
                    failing += 1;
                    if failing == 1 {
                        tracing::warn!(worker = %name, %error, "background work failed; it will be tried again");
                    } else {
                        tracing::debug!(worker = %name, %error, failures = failing, "background work failed again");
                    }
                    status.errors += 1;
                    status.last_error = Some(error.to_string());
                    status.last_error_at = Some(now);
                    Next::Idle
                }
            }
        };
        match next {
            // Let other tasks run between units of a busy worker.
            Next::Busy => tokio::task::yield_now().await,
            Next::Idle => {
                lock(&status).state = WorkerState::Idle;
                tokio::select! {
                    () = worker.wait_for_work(&cx) => {}
                    () = cx.stop.stopped() => break,
                }
            }
            Next::Done => {
                lock(&status).state = WorkerState::Done;
                tracing::debug!(worker = %name, "background worker done");
                return;
            }
        }
    }
    worker.finish(&cx).await;
    lock(&status).state = WorkerState::Stopped;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The workers' statuses as metrics, read at each scrape: `repnet_worker_units_total`,
/// `repnet_worker_errors_total`, `repnet_worker_busy` and `repnet_worker_last_unit_seconds`,
/// each labelled by `worker`.
#[derive(Debug)]
pub struct WorkerMetrics(pub Workers);

impl prometheus_client::collector::Collector for WorkerMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let statuses = self.0.statuses();
        let labels = |status: &WorkerStatus| vec![("worker".to_owned(), status.name.clone())];
        let mut family = encoder.encode_descriptor(
            "repnet_worker_units",
            "Units of work each background worker has done, failed ones included.",
            None,
            MetricType::Counter,
        )?;
        for status in &statuses {
            ConstCounter::new(status.units).encode(family.encode_family(&labels(status))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "repnet_worker_errors",
            "Units of work each background worker has failed.",
            None,
            MetricType::Counter,
        )?;
        for status in &statuses {
            ConstCounter::new(status.errors).encode(family.encode_family(&labels(status))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "repnet_worker_busy",
            "1 while a background worker is in a unit of work, else 0.",
            None,
            MetricType::Gauge,
        )?;
        for status in &statuses {
            let busy = i64::from(status.state == WorkerState::Busy);
            ConstGauge::new(busy).encode(family.encode_family(&labels(status))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "repnet_worker_last_unit_seconds",
            "When each background worker last ended a unit of work (Unix time; 0: never).",
            None,
            MetricType::Gauge,
        )?;
        for status in &statuses {
            let last = status
                .last_unit
                .map_or(0, |t| i64::try_from(t.0).unwrap_or(i64::MAX));
            ConstGauge::new(last).encode(family.encode_family(&labels(status))?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Ticks every `period`, noting the clock's time at each unit.
    struct Ticker {
        period: Duration,
        seen: Arc<Mutex<Vec<u64>>>,
        fail_at: Option<usize>,
        finished: Arc<AtomicU64>,
    }

    impl Worker for Ticker {
        fn name(&self) -> String {
            "ticker".to_owned()
        }

        async fn work(&mut self, cx: &Context) -> Result<Next, WorkError> {
            let mut seen = lock(&self.seen);
            seen.push(cx.clock.now().0);
            if Some(seen.len()) == self.fail_at {
                return Err("the third unit fails".into());
            }
            Ok(Next::Idle)
        }

        async fn wait_for_work(&mut self, _cx: &Context) {
            tokio::time::sleep(self.period).await
        }

        async fn finish(&mut self, _cx: &Context) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }

        fn progress(&self) -> Option<String> {
            Some(format!("{} seen", lock(&self.seen).len()))
        }
    }

    fn ticker(fail_at: Option<usize>) -> (Ticker, Arc<Mutex<Vec<u64>>>, Arc<AtomicU64>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let finished = Arc::new(AtomicU64::new(0));
        let ticker = Ticker {
            period: Duration::from_secs(60),
            seen: Arc::clone(&seen),
            fail_at,
            finished: Arc::clone(&finished),
        };
        (ticker, seen, finished)
    }

    /// Lets the spawned tasks run until they wait on a timer.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_runs_on_the_injected_clock() {
        let workers = Workers::new(Clock::following_tokio(Timestamp(1_000)));
        let (ticker, seen, finished) = ticker(Some(3));
        workers.spawn(ticker);
        settle().await;
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(60)).await;
            settle().await;
        }
        assert_eq!(*lock(&seen), vec![1_000, 1_060, 1_120, 1_180]);
        let status = &workers.statuses()[0];
        assert_eq!(status.name, "ticker");
        assert_eq!(status.state, WorkerState::Idle);
        assert_eq!((status.units, status.errors), (4, 1));
        assert_eq!(status.last_unit, Some(Timestamp(1_180)));
        assert_eq!(status.last_error.as_deref(), Some("the third unit fails"));
        assert_eq!(status.last_error_at, Some(Timestamp(1_120)));
        assert_eq!(status.progress.as_deref(), Some("4 seen"));

        workers.stop().await;
        assert_eq!(finished.load(Ordering::SeqCst), 1, "finish runs once");
        assert_eq!(workers.statuses()[0].state, WorkerState::Stopped);
    }

    /// A unit under way when the stop comes is finished, not cancelled; `stop` waits for it.
    struct Slow {
        started: Arc<tokio::sync::Barrier>,
        ended: Arc<AtomicU64>,
    }

    impl Worker for Slow {
        fn name(&self) -> String {
            "slow".to_owned()
        }

        async fn work(&mut self, _cx: &Context) -> Result<Next, WorkError> {
            self.started.wait().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            self.ended.fetch_add(1, Ordering::SeqCst);
            Ok(Next::Busy)
        }

        async fn wait_for_work(&mut self, _cx: &Context) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_for_the_unit_under_way_and_starts_no_other() {
        let workers = Workers::new(Clock::system());
        let started = Arc::new(tokio::sync::Barrier::new(2));
        let ended = Arc::new(AtomicU64::new(0));
        workers.spawn(Slow {
            started: Arc::clone(&started),
            ended: Arc::clone(&ended),
        });
        started.wait().await;
        assert_eq!(workers.statuses()[0].state, WorkerState::Busy);
        workers.stop().await;
        assert_eq!(ended.load(Ordering::SeqCst), 1);
        let status = &workers.statuses()[0];
        assert_eq!((status.units, status.state), (1, WorkerState::Stopped));
    }

    struct Once;

    impl Worker for Once {
        fn name(&self) -> String {
            "once".to_owned()
        }

        async fn work(&mut self, _cx: &Context) -> Result<Next, WorkError> {
            Ok(Next::Done)
        }

        async fn wait_for_work(&mut self, _cx: &Context) {}
    }

    #[tokio::test]
    async fn statuses_and_metrics_name_every_worker() {
        let workers = Workers::new(Clock::system());
        workers.spawn(Once);
        let (ticker, _, _) = ticker(None);
        workers.spawn(ticker);
        settle().await;
        let states: Vec<_> = workers
            .statuses()
            .into_iter()
            .map(|status| (status.name, status.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("once".to_owned(), WorkerState::Done),
                ("ticker".to_owned(), WorkerState::Idle),
            ]
        );
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(WorkerMetrics(workers.clone())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("repnet_worker_units_total{worker=\"once\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("repnet_worker_busy{worker=\"ticker\"} 0"),
            "{text}"
        );
        workers.stop().await;
        // A worker that was done stays done.
        assert_eq!(workers.statuses()[0].state, WorkerState::Done);
    }
}
