//! The reputation engine: turns participants' statistics into verdicts with source `engine`.
//!
//! Every `interval_seconds` it takes up to `max_objects_per_tick` objects whose statistics
//! changed (the store keeps that list, `Store::dirty_aggregates`), decides each file by the
//! rules below, writes the engine records that changed, and marks the objects examined. The
//! engine is the lowest tier of the precedence rule: every feed, the built-in set, upstream
//! and local verdicts win over it.
//!
//! It counts only **established installations**: installations enrolled through
//! `POST /v1/installations` (a proof of work, or a licence key) at least
//! `established_after_hours` before their report. A participant therefore cannot invent
//! devices: each costs an enrolment, and days of waiting before it counts.
//!
//! Rules (thresholds in `[engine]`, docs/configuration.md), first match wins:
//! 1. detected on at least `detecting_devices` established installations → `untrusted`;
//! 2. signed by a certificate that a feed, the upstream, the built-in set or the administrator
//!    says is untrusted, and no other source has a record on the file → `untrusted`;
//! 3. signed by a certificate that a feed, the upstream, the built-in set or the administrator
//!    says is trusted, the claim corroborated — reported with that signer by at least
//!    `trusted_devices` established installations, never with another signer — and never
//!    detected by anyone → `trusted`. Participants' claims alone never make a file trusted:
//!    the certificate's trust comes from elsewhere, and a single report naming another
//!    signer voids the rule for good;
//! 4. otherwise no engine verdict (one set before is removed).
//!
//! The engine sets at most `max_verdicts_per_hour` verdicts an hour (removals are not
//! limited); what it would set beyond waits for the next hour. Every verdict it sets goes to
//! the review queue with its evidence, where the administrator confirms it (dismiss) or
//! overrules it with a local verdict; every flip is logged with its evidence.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use repnet_model::{
    Categories, Category, CertificateThumbprint, Confidence, FileHashes, Object, Source,
    SourceRecord, Timestamp, Verdict,
};
use repnet_protocol::EngineStatus;
use repnet_store::{Aggregate, Change, EngineReview, Store};
use serde::{Deserialize, Serialize};

/// The engine's settings (`[engine]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    pub enabled: bool,
    /// Seconds between ticks.
    pub interval_seconds: u64,
    /// Most objects examined per tick.
    pub max_objects_per_tick: usize,
    /// Distinct detecting devices that make a file `untrusted`.
    pub detecting_devices: u64,
    /// Distinct devices that make a file signed by a trusted certificate, never detected,
    /// `trusted`.
    pub trusted_devices: u64,
    /// Confidence of the engine's `untrusted` and `trusted` records (0-100).
    pub untrusted_confidence: u8,
    pub trusted_confidence: u8,
    /// Hours an installation must have been enrolled before the engine counts its reports.
    pub established_after_hours: u64,
    /// Most verdicts the engine sets in an hour; 0 for no limit.
    pub max_verdicts_per_hour: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            enabled: true,
            interval_seconds: 10,
            max_objects_per_tick: 10_000,
            detecting_devices: 5,
            trusted_devices: 100,
            untrusted_confidence: 60,
            trusted_confidence: 50,
            established_after_hours: 72,
            max_verdicts_per_hour: 1000,
        }
    }
}

impl EngineConfig {
    pub(crate) fn validate(&self) -> Result<(), EngineConfigError> {
        if self.interval_seconds == 0 || self.max_objects_per_tick == 0 {
            return Err(EngineConfigError::Pace);
        }
        if self.detecting_devices == 0 || self.trusted_devices == 0 {
            return Err(EngineConfigError::Thresholds);
        }
        if self.untrusted_confidence > 100 || self.trusted_confidence > 100 {
            return Err(EngineConfigError::Confidence);
        }
        Ok(())
    }
}

/// An `[engine]` setting that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineConfigError {
    #[error("interval_seconds and max_objects_per_tick must be at least 1")]
    Pace,
    #[error("detecting_devices and trusted_devices must be at least 1")]
    Thresholds,
    #[error("confidences are from 0 to 100")]
    Confidence,
}

/// The engine and its progress.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Thresholds can change at run time (`PATCH /v1/admin/settings`).
    config: Mutex<EngineConfig>,
    progress: Mutex<Progress>,
    /// Told the detected objects it examines (the console's most prevalent).
    activity: Arc<crate::activity::Activity>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    last_tick: Option<Timestamp>,
    examined: u64,
    set: u64,
    removed: u64,
    /// The hour the verdict budget counts in (its start, in seconds), and the verdicts set
    /// in it.
    hour: u64,
    set_this_hour: u64,
    /// Verdicts waiting for the next hour's budget at the last tick.
    deferred: bool,
}

/// What the rules say about one file, and why.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    verdict: Verdict,
    evidence: String,
}

impl Engine {
    pub(crate) fn new(config: EngineConfig, activity: Arc<crate::activity::Activity>) -> Engine {
        Engine {
            config: Mutex::new(config),
            progress: Mutex::new(Progress::default()),
            activity,
        }
    }

    /// Verdicts set and removed since the server started.
    pub(crate) fn changes(&self) -> (u64, u64) {
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (progress.set, progress.removed)
    }

    fn config(&self) -> EngineConfig {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Hours an installation must have been enrolled before its reports count.
    pub(crate) fn established_after_hours(&self) -> u64 {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .established_after_hours
    }

    /// Changes the thresholds; the next tick uses them.
    pub(crate) fn set_thresholds(&self, detecting_devices: u64, trusted_devices: u64) {
        let mut config = self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        config.detecting_devices = detecting_devices;
        config.trusted_devices = trusted_devices;
    }

    pub(crate) async fn status(&self, store: &Store) -> EngineStatus {
        let config = self.config();
        let progress = *self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        EngineStatus {
            enabled: config.enabled,
            interval_seconds: config.interval_seconds,
            max_objects_per_tick: config.max_objects_per_tick as u64,
            detecting_devices: config.detecting_devices,
            trusted_devices: config.trusted_devices,
            established_after_hours: config.established_after_hours,
            max_verdicts_per_hour: config.max_verdicts_per_hour,
            verdicts_this_hour: progress.set_this_hour,
            deferred: progress.deferred,
            last_tick: progress.last_tick.and_then(repnet_protocol::rfc3339),
            examined: progress.examined,
            verdicts_set: progress.set,
            verdicts_removed: progress.removed,
            pending: store.dirty_count().await.unwrap_or(0),
        }
    }

    /// The engine as a background worker: a tick every `interval_seconds`, at once again
    /// after a full one (more is waiting).
    pub(crate) fn worker(self: &Arc<Self>, store: Store) -> EngineWorker {
        EngineWorker {
            engine: Arc::clone(self),
            store,
            wait: Duration::ZERO,
            pending: None,
        }
    }

    /// Examines up to `max_objects_per_tick` objects; answers how many.
    pub(crate) async fn tick(&self, store: &Store) -> Result<usize, repnet_store::StoreError> {
        let config = self.config();
        let repnet_store::Dirty { files, mut keys } =
            store.dirty_aggregates(config.max_objects_per_tick).await?;
        let objects: Vec<Object> = files.iter().map(|file| file.object.clone()).collect();
        let knowledge = store.lookup(&objects).await?;
        let signers: Vec<Object> = files
            .iter()
            .filter_map(|file| file.aggregate.signer)
            .map(|signer| Object::Certificate(CertificateThumbprint(signer)))
            .collect();
        let signer_knowledge = store.lookup(&signers).await?;
        // What the network says of a certificate: never what the engine says (it decides
        // files only, but a pulled engine answer could name a certificate).
        let signer_verdict = |aggregate: &Aggregate| -> Option<Verdict> {
            let signer = aggregate.signer?;
            let at = signers
                .iter()
                .position(|o| *o == Object::Certificate(CertificateThumbprint(signer)))?;
            let records: Vec<SourceRecord> = signer_knowledge[at]
                .records
                .iter()
                .filter(|record| !is_engine(&record.source))
                .cloned()
                .collect();
            repnet_model::decide(&records).map(|decision| records[decision.winner].verdict)
        };
        let now = repnet_store::now();
        let mut budget = self.budget(&config, now);
        let mut changes = Vec::new();
        let (mut reviews, mut unreviewed) = (Vec::new(), Vec::new());
        let (mut set, mut removed) = (0, 0);
        let mut deferred = None;
        for (file, knowledge) in files.iter().zip(&knowledge) {
            let (object, aggregate) = (&file.object, &file.aggregate);
            if aggregate.detections > 0 {
                self.activity.note_prevalence(
                    object,
                    aggregate.devices,
                    aggregate.detecting_devices,
                    now.0,
                );
            }
            let current = knowledge
                .records
                .iter()
                .find(|record| record.source == Source::Engine)
                .map(|record| record.verdict);
            let others = knowledge
                .records
                .iter()
                .any(|record| !is_engine(&record.source));
            let decision = decide(&config, aggregate, signer_verdict(aggregate), others);
            match (&decision, current) {
                (Some(decision), Some(current)) if decision.verdict == current => {}
                (Some(decision), _) => {
                    if budget == Some(0) {
                        // This file and every one after it wait for the next hour.
                        deferred = Some(file.key.clone());
                        break;
                    }
                    budget = budget.map(|left| left - 1);
                    tracing::info!(
                        object = %object,
                        from = current.map_or("none", Verdict::as_str),
                        to = decision.verdict.as_str(),
                        evidence = %decision.evidence,
                        "reputation engine verdict"
                    );
                    let confidence = match decision.verdict {
                        Verdict::Trusted => config.trusted_confidence,
                        _ => config.untrusted_confidence,
                    };
                    let mut record = SourceRecord::new(
                        Source::Engine,
                        decision.verdict,
                        Confidence::new(i64::from(confidence)).unwrap_or(Confidence::MAX),
                        now,
                    );
                    if decision.verdict == Verdict::Untrusted {
                        record.categories = Categories::EMPTY.with(Category::Malware);
                    }
                    changes.push(Change::Put {
                        object: object.clone(),
                        hashes: FileHashes::default(),
                        record,
                        comment: None,
                    });
                    reviews.push(EngineReview {
                        object: object.clone(),
                        verdict: decision.verdict,
                        evidence: decision.evidence.clone(),
                        time: now,
                    });
                    set += 1;
                }
                (None, Some(current)) => {
                    tracing::info!(
                        object = %object,
                        from = current.as_str(),
                        to = "none",
                        devices = aggregate.devices,
                        detecting_devices = aggregate.detecting_devices,
                        "reputation engine verdict removed: its rule no longer holds"
                    );
                    changes.push(Change::Remove {
                        object: object.clone(),
                        source: Source::Engine,
                    });
                    unreviewed.push(object.clone());
                    removed += 1;
                }
                (None, None) => {}
            }
        }
        if let Some(first_deferred) = &deferred {
            // Keys are in order: those from the first deferred file on stay dirty.
            keys.retain(|dirty| dirty.key < *first_deferred);
            tracing::warn!(
                max_verdicts_per_hour = config.max_verdicts_per_hour,
                "the reputation engine reached its hourly budget of verdicts; the rest wait for the next hour"
            );
        }
        // The review queue first: a verdict is never set without its review item.
        if !reviews.is_empty() || !unreviewed.is_empty() {
            store.engine_reviews(reviews, unreviewed).await?;
        }
        if !changes.is_empty() {
            store.apply(changes).await?;
        }
        let examined = keys.len();
        store.clear_dirty(keys).await?;
        let mut progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        progress.last_tick = Some(now);
        progress.examined += examined as u64;
        progress.set += set;
        progress.set_this_hour += set;
        progress.removed += removed;
        progress.deferred = deferred.is_some();
        Ok(examined)
    }

    /// Verdicts the engine may still set this hour; `None` for no limit.
    fn budget(&self, config: &EngineConfig, now: Timestamp) -> Option<u64> {
        if config.max_verdicts_per_hour == 0 {
            return None;
        }
        let hour = now.0 - now.0 % 3600;
        let mut progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if progress.hour != hour {
            progress.hour = hour;
            progress.set_this_hour = 0;
        }
        Some(
            config
                .max_verdicts_per_hour
                .saturating_sub(progress.set_this_hour),
        )
    }
}

/// The engine's own records, and those a server pulled from its upstream's engine.
fn is_engine(source: &Source) -> bool {
    repnet_model::Tier::of(source) == repnet_model::Tier::Engine
}

/// The rules, first match wins.
fn decide(
    config: &EngineConfig,
    aggregate: &Aggregate,
    signer: Option<Verdict>,
    others: bool,
) -> Option<Decision> {
    if aggregate.detecting_devices >= config.detecting_devices {
        return Some(Decision {
            verdict: Verdict::Untrusted,
            evidence: format!(
                "detected on {} established installations (threshold {}), seen on {}",
                aggregate.detecting_devices, config.detecting_devices, aggregate.devices
            ),
        });
    }
    if signer == Some(Verdict::Untrusted) && !others {
        return Some(Decision {
            verdict: Verdict::Untrusted,
            evidence: "signed by a certificate the network says is untrusted".to_owned(),
        });
    }
    if signer == Some(Verdict::Trusted)
        && aggregate.vouching_devices >= config.trusted_devices
        && !aggregate.signer_conflict
        && aggregate.detections == 0
    {
        return Some(Decision {
            verdict: Verdict::Trusted,
            evidence: format!(
                "reported signed by a trusted certificate by {} established installations (threshold {}), never with another signer, never detected",
                aggregate.vouching_devices, config.trusted_devices
            ),
        });
    }
    None
}

/// [`Engine`] on the background-work shape ([`repnet_runtime::workers`]).
pub(crate) struct EngineWorker {
    engine: Arc<Engine>,
    store: Store,
    wait: Duration,
    /// Objects with new statistics, counted after each tick (progress is read without
    /// touching the store).
    pending: Option<u64>,
}

/// The shortest lease of the engine on a shared store, in seconds.
const ENGINE_LEASE_MIN_SECONDS: u64 = 30;

impl repnet_runtime::Worker for EngineWorker {
    fn name(&self) -> String {
        "engine".to_owned()
    }

    async fn work(
        &mut self,
        _cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        let settings = self.engine.config();
        if !settings.enabled {
            self.pending = self.store.dirty_count().await.ok();
            return Ok(repnet_runtime::Next::Done);
        }
        self.wait = Duration::from_secs(settings.interval_seconds);
        // One node of a shared store runs the engine: the one holding its lease, which it
        // keeps by running; another takes over once it lapses.
        let lease = (settings.interval_seconds.saturating_mul(3)).max(ENGINE_LEASE_MIN_SECONDS);
        if !self.store.lease("engine", lease).await? {
            self.pending = None;
            return Ok(repnet_runtime::Next::Idle);
        }
        let examined = self.engine.tick(&self.store).await?;
        self.pending = self.store.dirty_count().await.ok();
        // A full tick means more is waiting: go on at once.
        Ok(if examined >= settings.max_objects_per_tick {
            repnet_runtime::Next::Busy
        } else {
            repnet_runtime::Next::Idle
        })
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        tokio::time::sleep(self.wait).await
    }

    fn progress(&self) -> Option<String> {
        let pending = self.pending?;
        Some(format!("{pending} objects with new statistics pending"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate(devices: u64, detecting: u64, signed: bool) -> Aggregate {
        Aggregate {
            first_seen: Timestamp(1),
            last_seen: Timestamp(2),
            sightings: devices,
            detections: detecting,
            false_positives: 0,
            devices,
            detecting_devices: detecting,
            size: None,
            signer: signed.then_some(repnet_model::Sha256([1; 32])),
            signer_conflict: false,
            vouching_devices: if signed { devices } else { 0 },
        }
    }

    #[test]
    fn the_rules_in_order() {
        let config = EngineConfig::default();
        let verdict = |aggregate: Aggregate, signer: Option<Verdict>, others: bool| {
            decide(&config, &aggregate, signer, others).map(|d| d.verdict)
        };
        assert_eq!(
            verdict(aggregate(5, 5, false), None, false),
            Some(Verdict::Untrusted)
        );
        assert_eq!(
            verdict(aggregate(500, 4, true), Some(Verdict::Trusted), false),
            None
        );
        assert_eq!(
            verdict(aggregate(100, 0, true), Some(Verdict::Trusted), false),
            Some(Verdict::Trusted)
        );
        assert_eq!(
            verdict(aggregate(99, 0, true), Some(Verdict::Trusted), false),
            None
        );
        assert_eq!(verdict(aggregate(1000, 0, false), None, false), None);
        assert_eq!(
            verdict(aggregate(1, 0, true), Some(Verdict::Untrusted), false),
            Some(Verdict::Untrusted)
        );
        assert_eq!(
            verdict(aggregate(1, 0, true), Some(Verdict::Untrusted), true),
            None
        );
        // Many detections win over a trusted signer.
        assert_eq!(
            verdict(aggregate(1000, 6, true), Some(Verdict::Trusted), true),
            Some(Verdict::Untrusted)
        );
    }

    #[test]
    fn a_trusted_verdict_needs_the_claim_corroborated() {
        let config = EngineConfig::default();
        let trusted = |aggregate: &Aggregate, signer: Option<Verdict>| {
            decide(&config, aggregate, signer, false).map(|d| d.verdict) == Some(Verdict::Trusted)
        };
        let corroborated = aggregate(100, 0, true);
        assert!(trusted(&corroborated, Some(Verdict::Trusted)));
        // A certificate nobody but the participants vouches for.
        assert!(!trusted(&corroborated, None));
        // Seen often, but the claim made by too few established installations.
        let few = Aggregate {
            vouching_devices: 99,
            ..corroborated
        };
        assert!(!trusted(&few, Some(Verdict::Trusted)));
        // One report named another signer.
        let conflicting = Aggregate {
            signer_conflict: true,
            ..corroborated
        };
        assert!(!trusted(&conflicting, Some(Verdict::Trusted)));
        // One detection, even from a new installation.
        let detected = Aggregate {
            detections: 1,
            ..corroborated
        };
        assert!(!trusted(&detected, Some(Verdict::Trusted)));
    }
}
