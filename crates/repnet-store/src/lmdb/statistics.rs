//! Statistics from participants: raw events (kept for the retention period, without any
//! device identifier) and per-object aggregates (kept): distinct devices that saw and that
//! detected the object (HyperLogLog, `hll.rs`, fed with keyed hashes of install ids — never
//! the ids), first and last seen, counts, the signer and size last reported.
//!
//! `events`: u64 big-endian arrival time, u64 big-endian number → the event (below).
//! `stats`: object key → the aggregate (below). `stats_dirty`: object keys whose aggregate
//! changed since the reputation engine last looked → the mark of the batch that changed it
//! last (its last event number, big-endian), so that the engine clears only what it read. `review`: object key → a false-positive
//! report awaiting the administrator (`varint reports, varint first, varint last`, then the
//! object and the latest comment as in the `local` database). `engine_review`: object key →
//! a verdict the engine set, for the administrator (`u8 verdict, varint time`, then the
//! object and the engine's evidence as in the `local` database). `meta.device_secret`: the key of the install-id
//! hash and when it was made (rotated by the server).
//!
//! Event, version 1: `u8 version, u8 kind, u8 key length, key, u8 flags (1 size, 2 signer,
//! 4 name, 8 threat, 16 comment), [varint size], [32 signer], [text name], [text threat],
//! [text comment]`, texts as varint length and UTF-8.
//!
//! Aggregate, version 1: `u8 version, varint devices, varint detecting devices, varint
//! first_seen, varint last_seen, varint sightings, varint detections, varint
//! false_positives, u8 flags (1 size, 2 signer, 4 conflicting signers, 8 vouching), [varint
//! size], [32 signer], [varint vouching devices], devices (Distinct), detecting devices
//! (Distinct), [vouching devices (Distinct)]`. The counts are the sketches' estimates, kept
//! up front so that a lookup's `prevalence` reads two numbers instead of counting a
//! 16,384-register sketch.
//!
//! The engine counts only established installations (`StatEvent::established`): detecting
//! devices are those that detected the object, vouching devices those that reported it
//! signed by the aggregate's signer. A report naming another signer marks the signers as
//! conflicting, for good.

use heed::RwTxn;
use repnet_model::{Object, Timestamp};

use super::{LmdbStore, WriteError};
use crate::hll::Distinct;
use crate::key::ObjectKey;
use crate::record::{DecodeError, Reader, put_varint};
use crate::{
    Aggregate, Dirty, EngineReview, ReviewItem, StatEvent, StatKind, StatisticsSize, StoreError,
};

const VERSION: u8 = 1;

/// Review items of the engine's verdicts have ids that start with this.
pub(crate) const ENGINE_PREFIX: &str = "engine-";

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind_byte(kind: StatKind) -> u8 {
    match kind {
        StatKind::Sighting => 0,
        StatKind::Detection => 1,
        StatKind::FalsePositive => 2,
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

pub(crate) fn encode_event(key: &[u8], event: &StatEvent, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.push(kind_byte(event.kind));
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    let flags = [
        event.size.is_some(),
        event.signer.is_some(),
        event.name.is_some(),
        event.threat.is_some(),
        event.comment.is_some(),
    ]
    .iter()
    .enumerate()
    .fold(0u8, |flags, (bit, present)| {
        flags | (u8::from(*present) << bit)
    });
    out.push(flags);
    if let Some(size) = event.size {
        put_varint(out, size);
    }
    if let Some(signer) = &event.signer {
        out.extend_from_slice(signer.as_bytes());
    }
    for text in [&event.name, &event.threat, &event.comment]
        .into_iter()
        .flatten()
    {
        put_text(out, text);
    }
}

/// A verdict the engine set, for the administrator: `u8 verdict, varint time`, then the
/// object and the engine's evidence as a local verdict's are (both backends).
pub(crate) fn encode_engine_review(review: &EngineReview, out: &mut Vec<u8>) {
    out.push(crate::record::verdict_bits(review.verdict));
    put_varint(out, review.time.0);
    out.extend_from_slice(&super::encode_local(&review.object, Some(&review.evidence)));
}

/// The review item of an engine's verdict stored under `key` (none if its object is gone).
pub(crate) fn decode_engine_review(
    key: &[u8],
    bytes: &[u8],
) -> Result<Option<ReviewItem>, StoreError> {
    let corrupt = |_| StoreError::Corrupt("an engine review item".to_owned());
    let mut reader = Reader::new(bytes);
    let verdict = crate::record::verdict_from_bits(reader.u8().map_err(corrupt)?);
    let time = reader.varint().map_err(corrupt)?;
    let local = super::decode_local(reader.rest())?;
    Ok(local.object.map(|object| ReviewItem {
        id: format!("{ENGINE_PREFIX}{}", hex(key)),
        object,
        reports: 0,
        first_reported: Timestamp(time),
        last_reported: Timestamp(time),
        comment: local.comment,
        engine: Some(verdict),
    }))
}

/// What an aggregate holds, encoded.
#[derive(Debug, Default, Clone, PartialEq)]
struct Stored {
    first_seen: u64,
    last_seen: u64,
    sightings: u64,
    detections: u64,
    false_positives: u64,
    size: Option<u64>,
    signer: Option<[u8; 32]>,
    /// Two reports named different signers.
    signer_conflict: bool,
    devices: Distinct,
    detecting: Distinct,
    vouching: Distinct,
    /// The sketches' estimates as stored; recounted (a dense sketch has 16,384 registers)
    /// only when an event changed a sketch.
    device_count: u64,
    detecting_count: u64,
    vouching_count: u64,
}

impl Stored {
    fn add_device(&mut self, device: u64) {
        if self.devices.add(device) {
            self.device_count = self.devices.count();
        }
    }

    fn add_detecting(&mut self, device: u64) {
        if self.detecting.add(device) {
            self.detecting_count = self.detecting.count();
        }
    }

    fn add_vouching(&mut self, device: u64) {
        if self.vouching.add(device) {
            self.vouching_count = self.vouching.count();
        }
    }
}

fn encode_aggregate(stored: &Stored, out: &mut Vec<u8>) {
    out.push(VERSION);
    for number in [
        stored.device_count,
        stored.detecting_count,
        stored.first_seen,
        stored.last_seen,
        stored.sightings,
        stored.detections,
        stored.false_positives,
    ] {
        put_varint(out, number);
    }
    let vouching = stored.vouching_count > 0;
    out.push(
        u8::from(stored.size.is_some())
            | u8::from(stored.signer.is_some()) << 1
            | u8::from(stored.signer_conflict) << 2
            | u8::from(vouching) << 3,
    );
    if let Some(size) = stored.size {
        put_varint(out, size);
    }
    if let Some(signer) = &stored.signer {
        out.extend_from_slice(signer);
    }
    if vouching {
        put_varint(out, stored.vouching_count);
    }
    stored.devices.encode(out);
    stored.detecting.encode(out);
    if vouching {
        stored.vouching.encode(out);
    }
}

fn decode_aggregate(bytes: &[u8]) -> Result<Stored, DecodeError> {
    let mut reader = Reader::new(bytes);
    match reader.u8()? {
        VERSION => {}
        other => return Err(DecodeError::UnknownVersion(other)),
    }
    let device_count = reader.varint()?;
    let detecting_count = reader.varint()?;
    let mut stored = Stored {
        device_count,
        detecting_count,
        first_seen: reader.varint()?,
        last_seen: reader.varint()?,
        sightings: reader.varint()?,
        detections: reader.varint()?,
        false_positives: reader.varint()?,
        ..Stored::default()
    };
    let flags = reader.u8()?;
    if flags & 1 != 0 {
        stored.size = Some(reader.varint()?);
    }
    if flags & 2 != 0 {
        stored.signer = Some(reader.array()?);
    }
    stored.signer_conflict = flags & 4 != 0;
    if flags & 8 != 0 {
        stored.vouching_count = reader.varint()?;
    }
    let rest = reader.rest();
    let (devices, used) = Distinct::decode(rest).ok_or(DecodeError::Malformed("device count"))?;
    let rest = &rest[used..];
    let (detecting, used) =
        Distinct::decode(rest).ok_or(DecodeError::Malformed("detecting device count"))?;
    stored.devices = devices;
    stored.detecting = detecting;
    if flags & 8 != 0 {
        let (vouching, _) = Distinct::decode(&rest[used..])
            .ok_or(DecodeError::Malformed("vouching device count"))?;
        stored.vouching = vouching;
    }
    Ok(stored)
}

impl Stored {
    fn aggregate(&self) -> Aggregate {
        Aggregate {
            first_seen: Timestamp(self.first_seen),
            last_seen: Timestamp(self.last_seen),
            sightings: self.sightings,
            detections: self.detections,
            false_positives: self.false_positives,
            devices: self.device_count,
            detecting_devices: self.detecting_count,
            size: self.size,
            signer: self.signer.map(repnet_model::Sha256),
            signer_conflict: self.signer_conflict,
            vouching_devices: self.vouching_count,
        }
    }
}

impl LmdbStore {
    /// Stores events and folds them into their objects' aggregates, in one transaction.
    pub(crate) fn record_statistics(&self, events: &[StatEvent]) -> Result<(), StoreError> {
        self.write(|writer| self.fold_events(&mut writer.txn, events))?;
        self.has_stats
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn fold_events(&self, txn: &mut RwTxn<'_>, events: &[StatEvent]) -> Result<(), WriteError> {
        let fail = |e| self.write_error(e);
        let meta = self.dbs.meta;
        let mut number = super::changes::read_u64(txn, meta, b"next_event")
            .map_err(fail)?
            .unwrap_or(0);
        let mut buffer = Vec::with_capacity(256);
        // Events of one batch often name the same object: fold them in memory first.
        let mut folded: Vec<(ObjectKey, Stored)> = Vec::new();
        for event in events {
            let key = ObjectKey::of(&event.object);
            buffer.clear();
            encode_event(key.as_bytes(), event, &mut buffer);
            let mut event_key = [0u8; 16];
            event_key[..8].copy_from_slice(&event.time.0.to_be_bytes());
            event_key[8..].copy_from_slice(&number.to_be_bytes());
            number += 1;
            self.dbs
                .events
                .put(txn, &event_key, &buffer)
                .map_err(fail)?;
            let at = match folded
                .iter()
                .position(|(k, _)| k.as_bytes() == key.as_bytes())
            {
                Some(at) => at,
                None => {
                    let stored = match self.dbs.stats.get(txn, key.as_bytes()).map_err(fail)? {
                        Some(bytes) => decode_aggregate(bytes).map_err(|error| {
                            WriteError::Other(StoreError::Corrupt(format!("statistics: {error}")))
                        })?,
                        None => Stored::default(),
                    };
                    folded.push((key, stored));
                    folded.len() - 1
                }
            };
            let stored = &mut folded[at].1;
            let time = event.time.0;
            stored.first_seen = if stored.first_seen == 0 {
                time
            } else {
                stored.first_seen.min(time)
            };
            stored.last_seen = stored.last_seen.max(time);
            stored.add_device(event.device);
            match event.kind {
                StatKind::Sighting => stored.sightings += 1,
                StatKind::Detection => {
                    stored.detections += 1;
                    if event.established {
                        stored.add_detecting(event.device);
                    }
                }
                StatKind::FalsePositive => stored.false_positives += 1,
            }
            if event.size.is_some() {
                stored.size = event.size;
            }
            if let Some(signer) = event.signer.map(|signer| *signer.as_bytes()) {
                match stored.signer {
                    Some(known) if known != signer => stored.signer_conflict = true,
                    _ => stored.signer = Some(signer),
                }
                if event.kind != StatKind::FalsePositive
                    && event.established
                    && stored.signer == Some(signer)
                {
                    stored.add_vouching(event.device);
                }
            }
        }
        // The dirty mark is this batch's last event number: unique to the batch, so that the
        // engine clears only the marks it read (`clear_dirty`), never one set after.
        let mark = number.to_be_bytes();
        for (key, stored) in &folded {
            buffer.clear();
            encode_aggregate(stored, &mut buffer);
            self.dbs
                .stats
                .put(txn, key.as_bytes(), &buffer)
                .map_err(fail)?;
            self.dbs
                .stats_dirty
                .put(txn, key.as_bytes(), &mark)
                .map_err(fail)?;
        }
        for event in events.iter().filter(|e| e.kind == StatKind::FalsePositive) {
            let key = ObjectKey::of(&event.object);
            let corrupt = |_| WriteError::Other(StoreError::Corrupt("a review item".to_owned()));
            let (reports, first) = match self.dbs.review.get(txn, key.as_bytes()).map_err(fail)? {
                Some(bytes) => {
                    let mut reader = Reader::new(bytes);
                    (
                        reader.varint().map_err(corrupt)?,
                        reader.varint().map_err(corrupt)?,
                    )
                }
                None => (0, event.time.0),
            };
            buffer.clear();
            put_varint(&mut buffer, reports + 1);
            put_varint(&mut buffer, first.min(event.time.0));
            put_varint(&mut buffer, event.time.0);
            buffer.extend_from_slice(&super::encode_local(
                &event.object,
                event.comment.as_deref(),
            ));
            self.dbs
                .review
                .put(txn, key.as_bytes(), &buffer)
                .map_err(fail)?;
        }
        meta.put(txn, b"next_event", &number.to_le_bytes())
            .map_err(fail)?;
        Ok(())
    }

    /// The aggregate of `object`, if anyone reported it.
    pub(crate) fn aggregate(&self, object: &Object) -> Result<Option<Aggregate>, StoreError> {
        self.read(|reader| self.aggregate_at(reader.txn, ObjectKey::of(object).as_bytes()))
    }

    pub(super) fn aggregate_at(
        &self,
        txn: &heed::RoTxn<'_>,
        key: &[u8],
    ) -> Result<Option<Aggregate>, StoreError> {
        match self.dbs.stats.get(txn, key).map_err(|e| self.error(e))? {
            None => Ok(None),
            Some(bytes) => decode_aggregate(bytes)
                .map(|stored| Some(stored.aggregate()))
                .map_err(|error| StoreError::Corrupt(format!("statistics: {error}"))),
        }
    }

    /// Devices that reported the object at `key`, if any did (for lookups' `prevalence`).
    pub(super) fn prevalence_at(
        &self,
        txn: &heed::RoTxn<'_>,
        key: &[u8],
    ) -> Result<u64, StoreError> {
        if !self.has_stats.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(0);
        }
        let Some(bytes) = self.dbs.stats.get(txn, key).map_err(|e| self.error(e))? else {
            return Ok(0);
        };
        // The version and the device count only: no sketch is decoded on a lookup.
        let mut reader = Reader::new(bytes);
        match reader.u8() {
            Ok(VERSION) => reader
                .varint()
                .map_err(|error| StoreError::Corrupt(format!("statistics: {error}"))),
            Ok(other) => Err(StoreError::Corrupt(format!(
                "statistics: {}",
                DecodeError::UnknownVersion(other)
            ))),
            Err(error) => Err(StoreError::Corrupt(format!("statistics: {error}"))),
        }
    }

    /// Deletes the raw events that arrived before `cutoff`; aggregates stay. Answers how
    /// many went.
    pub(crate) fn delete_events_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let bound = cutoff.0.to_be_bytes();
        let range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = (
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(&bound),
        );
        self.write(|writer| {
            self.dbs
                .events
                .delete_range(&mut writer.txn, &range)
                .map(|deleted| deleted as u64)
                .map_err(|e| self.write_error(e))
        })
    }

    /// Up to `limit` objects whose aggregate changed since [`clear_dirty`], with their
    /// aggregates: files by SHA-256 (the objects the engine decides), and the keys of the rest.
    pub(crate) fn dirty_aggregates(&self, limit: usize) -> Result<Dirty, StoreError> {
        self.read(|reader| {
            let mut files = Vec::new();
            let mut keys = Vec::new();
            for entry in self
                .dbs
                .stats_dirty
                .iter(reader.txn)
                .map_err(|e| self.error(e))?
            {
                let (key, mark) = entry.map_err(|e| self.error(e))?;
                if keys.len() == limit {
                    break;
                }
                keys.push(crate::DirtyMark {
                    key: key.to_vec(),
                    mark: mark.to_vec(),
                });
                if let Some(object @ Object::File(repnet_model::FileHash::Sha256(_))) =
                    crate::key::decode_key(key)
                    && let Some(aggregate) = self.aggregate_at(reader.txn, key)?
                {
                    files.push(crate::DirtyFile {
                        key: key.to_vec(),
                        object,
                        aggregate,
                    });
                }
            }
            Ok(Dirty { files, keys })
        })
    }

    /// Marks objects as looked at by the engine, each unless its aggregate changed again
    /// after the engine read it (its mark is then another).
    pub(crate) fn clear_dirty(&self, keys: &[crate::DirtyMark]) -> Result<(), StoreError> {
        self.write(|writer| {
            for dirty in keys {
                let current = self
                    .dbs
                    .stats_dirty
                    .get(&writer.txn, &dirty.key)
                    .map_err(|e| self.write_error(e))?;
                if current == Some(dirty.mark.as_slice()) {
                    self.dbs
                        .stats_dirty
                        .delete(&mut writer.txn, &dirty.key)
                        .map_err(|e| self.write_error(e))?;
                }
            }
            Ok(())
        })
    }

    /// Objects with aggregates the engine has not looked at yet.
    pub(crate) fn dirty_count(&self) -> Result<u64, StoreError> {
        self.read(|reader| {
            self.dbs
                .stats_dirty
                .len(reader.txn)
                .map_err(|e| self.error(e))
        })
    }

    /// The false-positive reports awaiting the administrator, oldest report first.
    pub(crate) fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError> {
        self.read(|reader| {
            let mut items = Vec::new();
            for entry in self
                .dbs
                .review
                .iter(reader.txn)
                .map_err(|e| self.error(e))?
            {
                let (key, bytes) = entry.map_err(|e| self.error(e))?;
                let corrupt = |_| StoreError::Corrupt("a review item".to_owned());
                let mut reader = Reader::new(bytes);
                let reports = reader.varint().map_err(corrupt)?;
                let first = reader.varint().map_err(corrupt)?;
                let last = reader.varint().map_err(corrupt)?;
                let local = super::decode_local(reader.rest())?;
                let Some(object) = local.object else { continue };
                items.push(ReviewItem {
                    id: hex(key),
                    object,
                    reports,
                    first_reported: Timestamp(first),
                    last_reported: Timestamp(last),
                    comment: local.comment,
                    engine: None,
                });
            }
            for entry in self
                .dbs
                .engine_review
                .iter(reader.txn)
                .map_err(|e| self.error(e))?
            {
                let (key, bytes) = entry.map_err(|e| self.error(e))?;
                items.extend(decode_engine_review(key, bytes)?);
            }
            items.sort_by_key(|item| item.first_reported);
            Ok(items)
        })
    }

    pub(crate) fn engine_reviews(
        &self,
        set: &[EngineReview],
        removed: &[Object],
    ) -> Result<(), StoreError> {
        self.write(|writer| {
            let mut buffer = Vec::new();
            for review in set {
                buffer.clear();
                encode_engine_review(review, &mut buffer);
                self.dbs
                    .engine_review
                    .put(
                        &mut writer.txn,
                        ObjectKey::of(&review.object).as_bytes(),
                        &buffer,
                    )
                    .map_err(|e| self.write_error(e))?;
            }
            for object in removed {
                self.dbs
                    .engine_review
                    .delete(&mut writer.txn, ObjectKey::of(object).as_bytes())
                    .map_err(|e| self.write_error(e))?;
            }
            Ok(())
        })
    }

    /// Removes a review item (settled by the administrator); answers whether it existed.
    pub(crate) fn remove_review(&self, id: &str) -> Result<bool, StoreError> {
        let (database, id) = match id.strip_prefix(ENGINE_PREFIX) {
            Some(id) => (self.dbs.engine_review, id),
            None => (self.dbs.review, id),
        };
        let Some(key) = (0..id.len())
            .step_by(2)
            .map(|at| {
                id.get(at..at + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
        else {
            return Ok(false);
        };
        self.write(|writer| {
            database
                .delete(&mut writer.txn, &key)
                .map_err(|e| self.write_error(e))
        })
    }

    /// How much the statistics take: objects tracked and their aggregates' bytes (pages of
    /// the `stats` database), raw events and theirs.
    pub(crate) fn statistics_size(&self) -> Result<StatisticsSize, StoreError> {
        self.read(|reader| {
            let size = |db: heed::Database<heed::types::Bytes, heed::types::Bytes>| {
                db.stat(reader.txn).map(|stat| {
                    let pages = stat.branch_pages + stat.leaf_pages + stat.overflow_pages;
                    (
                        stat.entries as u64,
                        pages as u64 * u64::from(stat.page_size),
                    )
                })
            };
            let (objects, aggregate_bytes) = size(self.dbs.stats).map_err(|e| self.error(e))?;
            let (events, event_bytes) = size(self.dbs.events).map_err(|e| self.error(e))?;
            Ok(StatisticsSize {
                objects,
                aggregate_bytes,
                events,
                event_bytes,
            })
        })
    }

    /// Raw events stored, for operators and tests.
    pub(crate) fn event_count(&self) -> Result<u64, StoreError> {
        self.read(|reader| self.dbs.events.len(reader.txn).map_err(|e| self.error(e)))
    }

    /// The key of the install-id hash: made at first use and again once older than
    /// `rotate_after` seconds. Answers the key.
    /// A secret made once and kept for good under `name` in `meta`.
    pub(crate) fn permanent_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let key = format!("secret.{name}");
        let read = |this: &Self| {
            this.read(|reader| {
                Ok(this
                    .dbs
                    .meta
                    .get(reader.txn, key.as_bytes())
                    .map_err(|e| this.error(e))?
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()))
            })
        };
        if let Some(secret) = read(self)? {
            return Ok(secret);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| StoreError::Randomness(error.to_string()))?;
        self.write(|writer| {
            // Another caller may have made it meanwhile: keep theirs.
            if self
                .dbs
                .meta
                .get(&writer.txn, key.as_bytes())
                .map_err(|e| self.write_error(e))?
                .is_none()
            {
                self.dbs
                    .meta
                    .put(&mut writer.txn, key.as_bytes(), &secret)
                    .map_err(|e| self.write_error(e))?;
            }
            Ok(())
        })?;
        read(self)?.ok_or_else(|| StoreError::Corrupt(format!("meta {key}")))
    }

    pub(crate) fn device_secret(
        &self,
        now: Timestamp,
        rotate_after: u64,
    ) -> Result<[u8; 32], StoreError> {
        // The secret if it is younger than `rotate_after`.
        let fresh = |stored: Option<&[u8]>| {
            let bytes = <[u8; 40]>::try_from(stored?).ok()?;
            let made = u64::from_le_bytes(bytes[32..].try_into().ok()?);
            (now.0.saturating_sub(made) < rotate_after)
                .then(|| bytes[..32].try_into().ok())
                .flatten()
        };
        let current = self.read(|reader| {
            Ok(fresh(
                self.dbs
                    .meta
                    .get(reader.txn, b"device_secret")
                    .map_err(|e| self.error(e))?,
            ))
        })?;
        if let Some(secret) = current {
            return Ok(secret);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| StoreError::Randomness(error.to_string()))?;
        let mut value = secret.to_vec();
        value.extend_from_slice(&now.0.to_le_bytes());
        // Checked again inside the write: of two requests that found the secret old at once,
        // the second takes the one the first made, or the same device would hash two ways.
        self.write(|writer| {
            let stored = self
                .dbs
                .meta
                .get(&writer.txn, b"device_secret")
                .map_err(|e| self.write_error(e))?;
            if let Some(made_meanwhile) = fresh(stored) {
                secret = made_meanwhile;
                return Ok(());
            }
            self.dbs
                .meta
                .put(&mut writer.txn, b"device_secret", &value)
                .map_err(|e| self.write_error(e))
        })?;
        Ok(secret)
    }
}
