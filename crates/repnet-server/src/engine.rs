//! The reputation engine: turns participants' statistics into verdicts with source `engine`.
//!
//! Every `interval_seconds` it takes up to `max_objects_per_tick` objects whose statistics
//! changed (the store keeps that list, `Store::dirty_aggregates`), decides each file by the
//! rules below, writes the engine records that changed, and marks the objects examined. The
//! engine is the lowest tier of the precedence rule: every feed, the built-in set, upstream
//! and local verdicts win over it.
//!
//! Rules (thresholds in `[engine]`, docs/configuration.md), first match wins:
//! 1. detected on at least `detecting_devices` distinct devices → `untrusted`;
//! 2. signed by a certificate the network says is untrusted, and no other source has a
//!    record on the file → `untrusted`;
//! 3. seen on at least `trusted_devices` distinct devices, never detected, signed by a
//!    certificate the network says is trusted → `trusted`;
//! 4. otherwise no engine verdict (one set before is removed).
//!
//! Poisoning: counts are of distinct devices (one install counts once per object, however
//! many events it sends), statistics need a statement-accepting install and, where required,
//! a licence key with its rate limit; every flip is logged with its evidence.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use repnet_model::{
    Categories, Category, CertificateThumbprint, Confidence, FileHashes, Object, Source,
    SourceRecord, Timestamp, Verdict,
};
use repnet_protocol::EngineStatus;
use repnet_store::{Aggregate, Change, Store};
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
        }
    }
}

impl EngineConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.interval_seconds == 0 || self.max_objects_per_tick == 0 {
            return Err("interval_seconds and max_objects_per_tick must be at least 1".to_owned());
        }
        if self.detecting_devices == 0 || self.trusted_devices == 0 {
            return Err("detecting_devices and trusted_devices must be at least 1".to_owned());
        }
        if self.untrusted_confidence > 100 || self.trusted_confidence > 100 {
            return Err("confidences are from 0 to 100".to_owned());
        }
        Ok(())
    }
}

/// The engine and its progress.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Thresholds can change at run time (`PATCH /v1/admin/settings`).
    config: Mutex<EngineConfig>,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    last_tick: Option<Timestamp>,
    examined: u64,
    set: u64,
    removed: u64,
}

/// What the rules say about one file, and why.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    verdict: Verdict,
    evidence: String,
}

impl Engine {
    pub(crate) fn new(config: EngineConfig) -> Engine {
        Engine {
            config: Mutex::new(config),
            progress: Mutex::new(Progress::default()),
        }
    }

    fn config(&self) -> EngineConfig {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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

    pub(crate) fn status(&self, store: &Store) -> EngineStatus {
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
            last_tick: progress.last_tick.and_then(repnet_protocol::rfc3339),
            examined: progress.examined,
            verdicts_set: progress.set,
            verdicts_removed: progress.removed,
            pending: store.dirty_count().unwrap_or(0),
        }
    }

    /// Ticks until `stop` changes.
    pub(crate) async fn run(
        self: Arc<Self>,
        store: Store,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let settings = self.config();
        if !settings.enabled {
            return;
        }
        loop {
            // A full tick means more is waiting: go on at once.
            let wait = match self.tick(&store).await {
                Ok(examined) if examined >= settings.max_objects_per_tick => Duration::ZERO,
                Ok(_) => Duration::from_secs(settings.interval_seconds),
                Err(error) => {
                    tracing::warn!(%error, "the reputation engine's tick failed; it will try again");
                    Duration::from_secs(settings.interval_seconds)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Examines up to `max_objects_per_tick` objects; answers how many.
    pub(crate) async fn tick(&self, store: &Store) -> Result<usize, repnet_store::StoreError> {
        let repnet_store::Dirty { files, keys } =
            store.dirty_aggregates(self.config().max_objects_per_tick)?;
        let objects: Vec<Object> = files.iter().map(|(object, _)| object.clone()).collect();
        let knowledge = store.lookup(&objects).await?;
        let signers: Vec<Object> = files
            .iter()
            .filter_map(|(_, aggregate)| aggregate.signer)
            .map(|signer| Object::Certificate(CertificateThumbprint(signer)))
            .collect();
        let signer_knowledge = store.lookup(&signers).await?;
        let signer_verdict = |aggregate: &Aggregate| -> Option<Verdict> {
            let signer = aggregate.signer?;
            let at = signers
                .iter()
                .position(|o| *o == Object::Certificate(CertificateThumbprint(signer)))?;
            let records = &signer_knowledge[at].records;
            repnet_model::decide(records).map(|decision| records[decision.winner].verdict)
        };
        let now = repnet_store::now();
        let config = self.config();
        let mut changes = Vec::new();
        let (mut set, mut removed) = (0, 0);
        for ((object, aggregate), knowledge) in files.iter().zip(&knowledge) {
            let current = knowledge
                .records
                .iter()
                .find(|record| record.source == Source::Engine)
                .map(|record| record.verdict);
            let others = knowledge
                .records
                .iter()
                .any(|record| record.source != Source::Engine);
            let decision = decide(&config, aggregate, signer_verdict(aggregate), others);
            match (&decision, current) {
                (Some(decision), Some(current)) if decision.verdict == current => {}
                (Some(decision), _) => {
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
                    removed += 1;
                }
                (None, None) => {}
            }
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
        progress.removed += removed;
        Ok(examined)
    }
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
                "detected on {} distinct devices (threshold {}), seen on {}",
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
    if aggregate.devices >= config.trusted_devices
        && aggregate.detecting_devices == 0
        && signer == Some(Verdict::Trusted)
    {
        return Some(Decision {
            verdict: Verdict::Trusted,
            evidence: format!(
                "seen on {} distinct devices (threshold {}), never detected, signed by a trusted certificate",
                aggregate.devices, config.trusted_devices
            ),
        });
    }
    None
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
}
