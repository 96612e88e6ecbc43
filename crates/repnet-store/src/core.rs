//! What every backend does the same way, written once: how a lookup gathers what is known
//! about an object from its keys (a file's records across its SHA-256, MD5 and SHA-1, the
//! record kept under the SHA-256 and the others aliases of it), how a change becomes
//! mutations of keys (interning names, keeping local verdicts' objects and comments), and
//! the name cache. A backend provides the keyed reads and writes ([`Snapshot`],
//! [`Transaction`]); LMDB runs these on one transaction, a networked backend on records it
//! fetched first.

use std::collections::HashMap;
use std::sync::Arc;

use repnet_model::{
    Categories, Confidence, FeedName, FileHash, FileHashes, Md5, Object, PrefixOf, Sha1, Sha256,
    Source, SourceRecord, ThreatName, Timestamp,
};

use crate::key::ObjectKey;
use crate::record::{StoredRecord, StoredSource, put_mutations, source_id};
use crate::{
    Change, Knowledge, LocalVerdict, Matched, Outcome, PrefixMatch, SearchPrefix, StoreError,
};

/// A name as both kinds of value it can be, parsed once when it enters the cache.
#[derive(Clone)]
pub(crate) struct CachedName {
    pub(crate) text: Arc<str>,
    pub(crate) feed: Option<FeedName>,
    pub(crate) threat: Option<ThreatName>,
}

impl CachedName {
    pub(crate) fn new(text: &str) -> CachedName {
        CachedName {
            text: Arc::from(text),
            feed: FeedName::new(text).ok(),
            threat: ThreatName::new(text).ok(),
        }
    }
}

/// The committed part of the name table, in memory. Names are few (feeds and threat names)
/// and immutable once committed, so the cache never needs invalidating.
#[derive(Default)]
pub(crate) struct NameCache {
    by_id: Vec<Option<CachedName>>,
    pub(crate) by_text: HashMap<Arc<str>, u32>,
}

impl NameCache {
    pub(crate) fn insert(&mut self, id: u32, name: CachedName) {
        let index = id as usize;
        if self.by_id.len() <= index {
            self.by_id.resize(index + 1, None);
        }
        self.by_text.insert(Arc::clone(&name.text), id);
        self.by_id[index] = Some(name);
    }

    pub(crate) fn get(&self, id: u32) -> Option<&CachedName> {
        self.by_id.get(id as usize).and_then(Option::as_ref)
    }
}

/// The storage-key prefixes a privacy-mode prefix covers: a SHA-256 prefix names files by
/// SHA-256 and URL expressions, the others files by their hash of that kind.
pub(crate) fn key_prefixes(prefix: &SearchPrefix) -> Vec<Vec<u8>> {
    let tags: &[u8] = match prefix.of {
        PrefixOf::Sha256 => &[crate::key::tag::SHA256, crate::key::tag::URL],
        PrefixOf::Url => &[crate::key::tag::URL],
        PrefixOf::Sha1 => &[crate::key::tag::SHA1],
        PrefixOf::Md5 => &[crate::key::tag::MD5],
    };
    tags.iter()
        .map(|&tag| {
            let mut key_prefix = Vec::with_capacity(1 + prefix.bytes.len());
            key_prefix.push(tag);
            key_prefix.extend_from_slice(&prefix.bytes);
            key_prefix
        })
        .collect()
}

/// Reads of one consistent view of the records, and what a lookup makes of them.
pub(crate) trait Snapshot {
    /// The record under `key`, if any.
    fn record(&self, key: &[u8]) -> Result<Option<StoredRecord>, StoreError>;
    /// How many distinct devices reported the object under `key` (0 without statistics).
    fn prevalence(&self, key: &[u8]) -> Result<u64, StoreError>;
    /// The name interned as `id`.
    fn name(&self, id: u32) -> Result<CachedName, StoreError>;

    /// What an export lists of the record under `key`: a file by its hashes (under its
    /// SHA-256 key; under its SHA-1 or, without one, its MD5 key when it has no SHA-256), or
    /// a URL key's expression when the record keeps its text. `None` for the rest (aliases,
    /// certificates, expressions stored before repnet kept their text).
    fn exported(
        &self,
        key: &[u8],
        stored: &StoredRecord,
    ) -> Result<Option<crate::Exported>, StoreError> {
        use repnet_model::key::tag;
        if stored.sources.is_empty() || stored.alias_of.is_some() {
            return Ok(None);
        }
        let Some((&kind, body)) = key.split_first() else {
            return Ok(None);
        };
        let target = match kind {
            tag::SHA256 | tag::SHA1 | tag::MD5 => {
                let Some(Object::File(hash)) = repnet_model::key::decode_key(key) else {
                    return Ok(None);
                };
                if kind == tag::MD5 && stored.sha1.is_some() {
                    // Listed under its SHA-1 key, which names this MD5.
                    return Ok(None);
                }
                let mut hashes = FileHashes {
                    md5: stored.md5,
                    sha1: stored.sha1,
                    sha256: None,
                };
                hashes.insert(hash);
                crate::ExportTarget::File(hashes)
            }
            tag::URL => {
                let Some(expression) = stored
                    .text
                    .as_deref()
                    .and_then(repnet_model::Expression::from_canonical)
                    .filter(|expression| expression.sha256().as_bytes() == body)
                else {
                    return Ok(None);
                };
                crate::ExportTarget::Expression(expression)
            }
            _ => return Ok(None),
        };
        let records = stored
            .sources
            .iter()
            .map(|source| self.source_record(source))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(crate::Exported { target, records }))
    }

    /// The records under one key, as they are.
    fn knowledge_at(&self, key: &[u8]) -> Result<Knowledge, StoreError> {
        let Some(record) = self.record(key)? else {
            return Ok(Knowledge {
                prevalence: self.prevalence(key)?,
                ..Knowledge::default()
            });
        };
        let records = record
            .sources
            .iter()
            .map(|source| self.source_record(source))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Knowledge {
            hashes: FileHashes::default(),
            records,
            prevalence: record.prevalence.max(self.prevalence(key)?),
        })
    }

    fn knowledge(&self, object: &Object) -> Result<Knowledge, StoreError> {
        let mut hashes = FileHashes::default();
        if let Object::File(hash) = object {
            hashes.insert(*hash);
        }
        let Some(primary) = self.record(ObjectKey::of(object).as_bytes())? else {
            return Ok(Knowledge {
                hashes,
                prevalence: self.prevalence(ObjectKey::of(object).as_bytes())?,
                ..Knowledge::default()
            });
        };
        let mut sources = Vec::new();
        let mut prevalence = primary.prevalence;
        match object {
            Object::File(asked) => {
                // Gather the records of the whole file: the SHA-256 record (reached directly
                // or through an alias) first, then what was stored under its other hashes.
                let own_sources = primary.sources;
                let main = match primary.alias_of {
                    Some(sha256) => {
                        hashes.sha256 = Some(sha256);
                        self.record(ObjectKey::file(&FileHash::Sha256(sha256)).as_bytes())?
                    }
                    None => None,
                };
                let (md5, sha1) = match &main {
                    Some(main) => (main.md5, main.sha1),
                    None => (primary.md5, primary.sha1),
                };
                if let Some(main) = main {
                    prevalence = main.prevalence;
                    sources.extend(main.sources);
                }
                sources.extend(own_sources);
                hashes.md5 = hashes.md5.or(md5);
                hashes.sha1 = hashes.sha1.or(sha1);
                let others = [md5.map(FileHash::Md5), sha1.map(FileHash::Sha1)];
                for other in others.into_iter().flatten().filter(|h| h != asked) {
                    if let Some(record) = self.record(ObjectKey::file(&other).as_bytes())? {
                        sources.extend(record.sources);
                    }
                }
            }
            _ => sources = primary.sources,
        }
        // One record per source: the first found (the SHA-256 record's) wins.
        let mut seen = Vec::with_capacity(sources.len());
        let mut records = Vec::with_capacity(sources.len());
        for source in &sources {
            if !seen.contains(&source.source_id) {
                seen.push(source.source_id);
                records.push(self.source_record(source)?);
            }
        }
        // Devices that reported the file (by its SHA-256 when known) or the object.
        let reported = match hashes.sha256 {
            Some(sha256) => ObjectKey::file(&FileHash::Sha256(sha256)),
            None => ObjectKey::of(object),
        };
        let prevalence = prevalence.max(self.prevalence(reported.as_bytes())?);
        Ok(Knowledge {
            hashes,
            records,
            prevalence,
        })
    }

    /// What a privacy-mode search reports of the object under `key`, a key that matched a
    /// prefix: `None` when it is not a searchable kind or nothing is known about it.
    fn prefix_match(&self, key: &[u8]) -> Result<Option<PrefixMatch>, StoreError> {
        let Some((&tag, body)) = key.split_first() else {
            return Ok(None);
        };
        let matched = match tag {
            crate::key::tag::URL => body.try_into().ok().map(|h| Matched::Url(Sha256(h))),
            crate::key::tag::SHA256 => body
                .try_into()
                .ok()
                .map(|h| Matched::File(FileHash::Sha256(Sha256(h)))),
            crate::key::tag::SHA1 => body
                .try_into()
                .ok()
                .map(|h| Matched::File(FileHash::Sha1(Sha1(h)))),
            crate::key::tag::MD5 => body
                .try_into()
                .ok()
                .map(|h| Matched::File(FileHash::Md5(Md5(h)))),
            _ => None,
        };
        let Some(matched) = matched else {
            return Ok(None);
        };
        let knowledge = match matched {
            Matched::File(hash) => self.knowledge(&Object::File(hash))?,
            Matched::Url(_) => self.knowledge_at(key)?,
        };
        Ok((!knowledge.records.is_empty()).then_some(PrefixMatch { matched, knowledge }))
    }

    /// What other servers learn of the record under one key.
    fn sync_value(
        &self,
        stored: &StoredRecord,
    ) -> Result<Option<crate::sync::SyncValue>, StoreError> {
        let records = stored
            .sources
            .iter()
            .map(|source| self.source_record(source))
            .collect::<Result<Vec<_>, _>>()?;
        let record = repnet_model::decide(&records).map(|decision| {
            let winner = &records[decision.winner];
            crate::sync::SyncRecord {
                engine: repnet_model::Tier::of(&winner.source) == repnet_model::Tier::Engine,
                verdict: winner.verdict,
                confidence: winner.confidence,
                threat: winner.threat.clone(),
                categories: winner.categories,
                first_seen: winner.first_seen,
                last_seen: winner.last_seen,
            }
        });
        if record.is_none() && stored.alias_of.is_none() {
            return Ok(None);
        }
        Ok(Some(crate::sync::SyncValue {
            alias_of: stored.alias_of,
            md5: stored.md5,
            sha1: stored.sha1,
            record,
            text: stored.text.as_deref().map(str::to_owned),
        }))
    }

    /// The local verdict kept under `key` (its object, comment and lapse time as kept beside
    /// it), if the key's record still holds one.
    fn local_verdict(
        &self,
        key: &[u8],
        object: Option<Object>,
        comment: Option<String>,
        expires: Option<Timestamp>,
    ) -> Result<Option<LocalVerdict>, StoreError> {
        let object = object
            .ok_or_else(|| StoreError::Corrupt("a local verdict without its object".to_owned()))?;
        let Some(stored) = self.record(key)? else {
            return Ok(None);
        };
        let Some(local) = stored
            .sources
            .iter()
            .find(|s| s.source_id == source_id::LOCAL)
        else {
            return Ok(None);
        };
        Ok(Some(LocalVerdict {
            object,
            record: self.source_record(local)?,
            comment,
            expires,
        }))
    }

    fn source_record(&self, stored: &StoredSource) -> Result<SourceRecord, StoreError> {
        let source = match stored.source_id {
            source_id::LOCAL => Source::Local,
            source_id::BUILTIN => Source::Builtin,
            source_id::UPSTREAM => Source::Upstream,
            source_id::ENGINE => Source::Engine,
            source_id::UPSTREAM_ENGINE => Source::UpstreamEngine,
            id if id >= source_id::FEED_BASE => {
                let name = self.name(id - source_id::FEED_BASE)?;
                Source::Feed(name.feed.ok_or_else(|| {
                    StoreError::Corrupt(format!("feed name {:?} is invalid", name.text))
                })?)
            }
            id => return Err(StoreError::Corrupt(format!("unknown source id {id}"))),
        };
        let threat = match stored.threat_id {
            None => None,
            Some(id) => {
                let name = self.name(id)?;
                Some(name.threat.ok_or_else(|| {
                    StoreError::Corrupt(format!("threat name {:?} is invalid", name.text))
                })?)
            }
        };
        Ok(SourceRecord {
            source,
            verdict: stored.verdict,
            threat,
            categories: Categories::from_bits(stored.categories),
            confidence: Confidence::new(i64::from(stored.confidence))
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            first_seen: Timestamp(stored.first_seen),
            last_seen: Timestamp(stored.last_seen),
        })
    }
}

/// The writes of one change set: what a backend provides, and what the changes do with it.
pub(crate) trait Transaction {
    type Error: From<StoreError>;

    fn get(&self, key: &[u8]) -> Result<Option<StoredRecord>, Self::Error>;
    /// Writes `record` under `key`, which held `before` (an empty record deletes the key),
    /// and logs the change if other servers would see it.
    fn put_changed(
        &mut self,
        key: &[u8],
        before: &StoredRecord,
        record: &StoredRecord,
    ) -> Result<(), Self::Error>;
    /// The id of `text`, if it has one.
    fn existing_name_id(&self, text: &str) -> Option<u32>;
    /// The id of `text`, interning it if it has none.
    fn name_id(&mut self, text: &str) -> Result<u32, Self::Error>;
    /// A key that did not exist is about to be written.
    fn note_new_key(&mut self, key: &[u8]);
    /// Keeps a local verdict's object, comment and lapse time under its key.
    fn put_local(
        &mut self,
        key: &[u8],
        object: &Object,
        comment: Option<&str>,
        expires: Option<Timestamp>,
    ) -> Result<(), Self::Error>;
    fn delete_local(&mut self, key: &[u8]) -> Result<(), Self::Error>;

    /// The stored id of `source`; `None` for a feed that was never named (so nothing of it
    /// can be stored) when `create` is false.
    fn source_id(&mut self, source: &Source, create: bool) -> Result<Option<u32>, Self::Error> {
        Ok(Some(match source {
            Source::Local => source_id::LOCAL,
            Source::Builtin => source_id::BUILTIN,
            Source::Upstream => source_id::UPSTREAM,
            Source::Engine => source_id::ENGINE,
            Source::UpstreamEngine => source_id::UPSTREAM_ENGINE,
            Source::Feed(name) => {
                let id = if create {
                    self.name_id(name.as_str())?
                } else {
                    match self.existing_name_id(name.as_str()) {
                        Some(id) => id,
                        None => return Ok(None),
                    }
                };
                id.checked_add(source_id::FEED_BASE).ok_or_else(|| {
                    Self::Error::from(StoreError::Corrupt("feed id out of range".to_owned()))
                })?
            }
        }))
    }

    fn apply(&mut self, change: &Change) -> Result<Outcome, Self::Error> {
        match change {
            Change::Put {
                object,
                hashes,
                record,
                comment,
            } => {
                self.put_record(object, hashes, record, comment.as_deref(), None)?;
                Ok(Outcome::Stored)
            }
            Change::Local {
                object,
                hashes,
                record,
                comment,
                expires,
            } => {
                self.put_record(object, hashes, record, comment.as_deref(), *expires)?;
                Ok(Outcome::Stored)
            }
            Change::Remove { object, source } => self.remove(object, source),
        }
    }

    fn put_record(
        &mut self,
        object: &Object,
        hashes: &FileHashes,
        record: &SourceRecord,
        comment: Option<&str>,
        expires: Option<Timestamp>,
    ) -> Result<(), Self::Error> {
        let source = StoredSource {
            source_id: self
                .source_id(&record.source, true)?
                .unwrap_or(source_id::LOCAL),
            verdict: record.verdict,
            confidence: record.confidence.get(),
            threat_id: match &record.threat {
                Some(threat) => Some(self.name_id(threat.as_str())?),
                None => None,
            },
            categories: record.categories.bits(),
            first_seen: record.first_seen.0,
            last_seen: record.last_seen.0.max(record.first_seen.0),
        };
        let mutations = put_mutations(object, hashes, source);
        // A key's mutations follow one another (its record and its text): applied together,
        // they are one write and one change.
        for same_key in mutations.chunk_by(|(a, _), (b, _)| a.as_bytes() == b.as_bytes()) {
            let key = &same_key[0].0;
            let existing = self.get(key.as_bytes())?;
            if existing.is_none() {
                self.note_new_key(key.as_bytes());
            }
            let before = existing.unwrap_or_default();
            let mut stored = before.clone();
            let mut changed = false;
            for (_, mutation) in same_key {
                changed |= stored.apply(mutation);
            }
            if changed {
                self.put_changed(key.as_bytes(), &before, &stored)?;
            }
        }
        if record.source == Source::Local {
            // The first mutation is the one that holds the record.
            if let Some((key, _)) = mutations.first() {
                self.put_local(key.as_bytes(), object, comment, expires)?;
            }
        }
        Ok(())
    }

    fn remove(&mut self, object: &Object, source: &Source) -> Result<Outcome, Self::Error> {
        let Some(id) = self.source_id(source, false)? else {
            return Ok(Outcome::NotFound);
        };
        // The keys a lookup of `object` gathers records from (see `SnapshotReader::knowledge`).
        let mut keys = vec![ObjectKey::of(object)];
        let primary = match object {
            Object::File(_) => self.get(keys[0].as_bytes())?,
            _ => None,
        };
        if let (Object::File(asked), Some(primary)) = (object, primary) {
            let main = match primary.alias_of.map(FileHash::Sha256) {
                Some(hash) => {
                    keys.push(ObjectKey::file(&hash));
                    self.get(ObjectKey::file(&hash).as_bytes())?
                }
                None => Some(primary),
            };
            if let Some(main) = main {
                let others = [main.md5.map(FileHash::Md5), main.sha1.map(FileHash::Sha1)];
                for other in others.into_iter().flatten().filter(|h| h != asked) {
                    keys.push(ObjectKey::file(&other));
                }
            }
        }
        let mut removed = false;
        for key in &keys {
            let Some(mut stored) = self.get(key.as_bytes())? else {
                continue;
            };
            let before = stored.clone();
            stored.sources.retain(|s| s.source_id != id);
            if stored.sources.len() != before.sources.len() {
                removed = true;
                self.put_changed(key.as_bytes(), &before, &stored)?;
            }
            if *source == Source::Local {
                self.delete_local(key.as_bytes())?;
            }
        }
        Ok(if removed {
            Outcome::Removed
        } else {
            Outcome::NotFound
        })
    }
}

/// What storing the built-in test set changes: its entries that `known` (their lookups, in
/// order) lacks or has otherwise.
pub(crate) fn builtin_changes(
    entries: Vec<repnet_model::BuiltinEntry>,
    known: Vec<Knowledge>,
) -> Vec<Change> {
    entries
        .into_iter()
        .zip(known)
        .filter(|(entry, knowledge)| {
            !knowledge.records.iter().any(|r| {
                r.source == Source::Builtin
                    && r.verdict == entry.record.verdict
                    && r.threat == entry.record.threat
                    && r.categories == entry.record.categories
                    && r.confidence == entry.record.confidence
            })
        })
        .map(|(entry, _)| Change::Put {
            object: entry.object,
            hashes: entry.hashes,
            record: entry.record,
            comment: None,
        })
        .collect()
}
