//! The on-disk encoding of the value stored under an object's key.
//!
//! Names (sources and threats) are interned by the backend and stored as small integers; this
//! module only sees the integers. The first byte is the encoding version, so that a record
//! written by an older repnet is always readable: [`decode`] keeps a decoder for every version
//! ever written, and [`encode`] writes the current one, which migrates records lazily as they
//! are rewritten. Whole-store migrations, when a change cannot be lazy, run at open (see
//! `lmdb::migrate`).
//!
//! Version 1, all integers LEB128 varints unless sized:
//!
//! ```text
//! u8 version = 1
//! u8 flags: 1 = alias target follows, 2 = MD5 follows, 4 = SHA-1 follows, 8 = prevalence follows,
//!          16 = text follows
//! [32 bytes SHA-256 alias target] [16 bytes MD5] [20 bytes SHA-1] [varint prevalence]
//! [varint length, UTF-8 text: for URL keys, the expression (`evil.example/`, `1.2.3.4/`,
//!  `host/path`) whose SHA-256 is the key, so that what is blocked can be listed]
//! varint number of source records, then for each:
//!   varint source id (0 local, 1 builtin, 2 upstream, 3 engine, 16 + name id for feeds)
//!   u8 bits 0-1 verdict, 4 = threat follows, 8 = categories follow, 16 = last_seen differs
//!   u8 confidence (0-100)
//!   [varint threat name id] [varint category bits]
//!   varint first_seen (Unix seconds) [varint last_seen - first_seen]
//! ```
//!
//! A SHA-256 file entry with one feed record and a threat name takes 12 bytes.

use repnet_model::{Md5, Sha1, Sha256, Verdict};

/// The version [`encode`] writes.
pub(crate) const CURRENT_VERSION: u8 = 1;

/// Interned source ids for the sources that have no name.
pub(crate) mod source_id {
    pub(crate) const LOCAL: u32 = 0;
    pub(crate) const BUILTIN: u32 = 1;
    pub(crate) const UPSTREAM: u32 = 2;
    pub(crate) const ENGINE: u32 = 3;
    pub(crate) const UPSTREAM_ENGINE: u32 = 4;
    /// Feed `n` (a name id) is stored as `FEED_BASE + n`.
    pub(crate) const FEED_BASE: u32 = 16;
}

/// What one source says, with names as interned ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSource {
    pub(crate) source_id: u32,
    pub(crate) verdict: Verdict,
    pub(crate) confidence: u8,
    pub(crate) threat_id: Option<u32>,
    pub(crate) categories: u32,
    pub(crate) first_seen: u64,
    pub(crate) last_seen: u64,
}

/// The value under one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    /// For MD5 and SHA-1 keys: the SHA-256 of the same file, whose record holds the rest.
    pub(crate) alias_of: Option<Sha256>,
    /// The file's other hashes, whose keys may hold records of their own: for SHA-256 keys,
    /// its MD5 and SHA-1; for a file known without a SHA-256, the one it is not stored under.
    pub(crate) md5: Option<Md5>,
    pub(crate) sha1: Option<Sha1>,
    pub(crate) prevalence: u64,
    /// For URL keys: the expression's text (the key is its SHA-256). `None` for records
    /// written before repnet kept it, and for other keys.
    pub(crate) text: Option<Box<str>>,
    pub(crate) sources: Vec<StoredSource>,
}

impl StoredRecord {
    /// True when the record carries nothing worth keeping.
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.alias_of.is_none() && self.prevalence == 0
    }
}

/// A change to the record under one key: what a `Change::Put` becomes, per key it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// Replace what `source.source_id` said (keeping its first sighting); for SHA-256 keys,
    /// remember the file's other hashes.
    Upsert {
        source: StoredSource,
        md5: Option<Md5>,
        sha1: Option<Sha1>,
    },
    /// Point an MD5 or SHA-1 key at the file's SHA-256.
    Alias(Sha256),
    /// Remove what source `source_id` said here (a change pulled from upstream that retracts).
    Retract { source_id: u32 },
    /// Keep the text of the URL expression whose SHA-256 the key is.
    Text(Box<str>),
}

impl StoredRecord {
    /// Applies `mutation`; returns whether the record changed.
    pub(crate) fn apply(&mut self, mutation: &Mutation) -> bool {
        match mutation {
            Mutation::Upsert { source, md5, sha1 } => {
                let before = (self.md5, self.sha1);
                self.md5 = md5.or(self.md5);
                self.sha1 = sha1.or(self.sha1);
                let changed_hashes = before != (self.md5, self.sha1);
                match self
                    .sources
                    .iter_mut()
                    .find(|s| s.source_id == source.source_id)
                {
                    Some(existing) => {
                        let merged = StoredSource {
                            first_seen: existing.first_seen.min(source.first_seen),
                            last_seen: existing.last_seen.max(source.last_seen),
                            ..source.clone()
                        };
                        let changed = *existing != merged;
                        *existing = merged;
                        changed || changed_hashes
                    }
                    None => {
                        self.sources.push(source.clone());
                        true
                    }
                }
            }
            Mutation::Alias(sha256) => {
                let changed = self.alias_of != Some(*sha256);
                self.alias_of = Some(*sha256);
                changed
            }
            Mutation::Retract { source_id } => {
                let before = self.sources.len();
                self.sources.retain(|source| source.source_id != *source_id);
                self.sources.len() != before
            }
            Mutation::Text(text) => {
                let changed = self.text.as_deref() != Some(text);
                self.text = Some(text.clone());
                changed
            }
        }
    }

    /// Whether going from `self` to `after` changes what other servers learn of this key:
    /// anything but a later `last_seen` (every refresh of a feed moves that on every entry,
    /// and sending the whole feed again for it would drown the changes that matter).
    pub(crate) fn differs_for_sync(&self, after: &StoredRecord) -> bool {
        self.alias_of != after.alias_of
            || self.text != after.text
            || self.md5 != after.md5
            || self.sha1 != after.sha1
            || self.sources.len() != after.sources.len()
            || self.sources.iter().zip(&after.sources).any(|(a, b)| {
                StoredSource {
                    last_seen: 0,
                    ..a.clone()
                } != StoredSource {
                    last_seen: 0,
                    ..b.clone()
                }
            })
    }
}

/// Why bytes could not be decoded as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("record ends early")]
    Truncated,
    #[error("record has format version {0}, which this repnet does not know: upgrade repnet")]
    UnknownVersion(u8),
    #[error("record has a malformed field: {0}")]
    Malformed(&'static str),
}

const FLAG_ALIAS: u8 = 1;
const FLAG_MD5: u8 = 2;
const FLAG_SHA1: u8 = 4;
const FLAG_PREVALENCE: u8 = 8;
const FLAG_TEXT: u8 = 16;
/// The longest text a record keeps: a URL expression is at most a few KiB (`url.rs`).
pub(crate) const MAX_TEXT_BYTES: usize = 16 * 1024;

const BIT_THREAT: u8 = 4;
const BIT_CATEGORIES: u8 = 8;
const BIT_LAST_SEEN: u8 = 16;

pub(crate) use repnet_model::encoding::{put_varint, verdict_bits, verdict_from_bits};

/// A cursor over bytes being decoded; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.bytes.split_first().ok_or(DecodeError::Truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.bytes.len() < N {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        head.try_into().map_err(|_| DecodeError::Truncated)
    }

    pub(crate) fn slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Malformed("varint overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes"))
    }

    pub(crate) fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("id out of range"))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// What has not been read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Appends the current encoding of `record` to `out`.
pub(crate) fn encode(record: &StoredRecord, out: &mut Vec<u8>) {
    out.push(CURRENT_VERSION);
    let mut flags = 0;
    if record.alias_of.is_some() {
        flags |= FLAG_ALIAS;
    }
    if record.md5.is_some() {
        flags |= FLAG_MD5;
    }
    if record.sha1.is_some() {
        flags |= FLAG_SHA1;
    }
    if record.prevalence != 0 {
        flags |= FLAG_PREVALENCE;
    }
    if record.text.is_some() {
        flags |= FLAG_TEXT;
    }
    out.push(flags);
    if let Some(alias) = &record.alias_of {
        out.extend_from_slice(alias.as_bytes());
    }
    if let Some(md5) = &record.md5 {
        out.extend_from_slice(md5.as_bytes());
    }
    if let Some(sha1) = &record.sha1 {
        out.extend_from_slice(sha1.as_bytes());
    }
    if record.prevalence != 0 {
        put_varint(out, record.prevalence);
    }
    if let Some(text) = &record.text {
        put_varint(out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
    put_varint(out, record.sources.len() as u64);
    for source in &record.sources {
        put_varint(out, u64::from(source.source_id));
        let mut bits = verdict_bits(source.verdict);
        if source.threat_id.is_some() {
            bits |= BIT_THREAT;
        }
        if source.categories != 0 {
            bits |= BIT_CATEGORIES;
        }
        // Sightings never go backwards; a record that claims so is stored as a single instant.
        let last_seen = source.last_seen.max(source.first_seen);
        if last_seen != source.first_seen {
            bits |= BIT_LAST_SEEN;
        }
        out.push(bits);
        out.push(source.confidence);
        if let Some(threat_id) = source.threat_id {
            put_varint(out, u64::from(threat_id));
        }
        if source.categories != 0 {
            put_varint(out, u64::from(source.categories));
        }
        put_varint(out, source.first_seen);
        if last_seen != source.first_seen {
            put_varint(out, last_seen - source.first_seen);
        }
    }
}

/// Decodes a record of any version this repnet knows. Never panics, whatever the bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<StoredRecord, DecodeError> {
    let mut reader = Reader::new(bytes);
    match reader.u8()? {
        1 => decode_v1(reader),
        version => Err(DecodeError::UnknownVersion(version)),
    }
}

fn decode_v1(mut reader: Reader<'_>) -> Result<StoredRecord, DecodeError> {
    let flags = reader.u8()?;
    if flags & !(FLAG_ALIAS | FLAG_MD5 | FLAG_SHA1 | FLAG_PREVALENCE | FLAG_TEXT) != 0 {
        return Err(DecodeError::Malformed("unknown record flags"));
    }
    let mut record = StoredRecord::default();
    if flags & FLAG_ALIAS != 0 {
        record.alias_of = Some(Sha256(reader.array()?));
    }
    if flags & FLAG_MD5 != 0 {
        record.md5 = Some(Md5(reader.array()?));
    }
    if flags & FLAG_SHA1 != 0 {
        record.sha1 = Some(Sha1(reader.array()?));
    }
    if flags & FLAG_PREVALENCE != 0 {
        record.prevalence = reader.varint()?;
    }
    if flags & FLAG_TEXT != 0 {
        let len = reader.varint()?;
        if len > MAX_TEXT_BYTES as u64 {
            return Err(DecodeError::Malformed(
                "text longer than a URL expression can be",
            ));
        }
        let text = std::str::from_utf8(reader.slice(len as usize)?)
            .map_err(|_| DecodeError::Malformed("text is not UTF-8"))?;
        record.text = Some(text.into());
    }
    let count = reader.varint()?;
    // Each source takes at least 4 bytes; refuse counts the bytes cannot hold before
    // allocating for them.
    if count > (bytes_left(&reader) / 4) as u64 {
        return Err(DecodeError::Malformed(
            "source count larger than the record",
        ));
    }
    record.sources.reserve(count as usize);
    for _ in 0..count {
        let source_id = reader.varint_u32()?;
        let bits = reader.u8()?;
        if bits & !(3 | BIT_THREAT | BIT_CATEGORIES | BIT_LAST_SEEN) != 0 {
            return Err(DecodeError::Malformed("unknown source flags"));
        }
        let confidence = reader.u8()?;
        if confidence > 100 {
            return Err(DecodeError::Malformed("confidence above 100"));
        }
        let threat_id = if bits & BIT_THREAT != 0 {
            Some(reader.varint_u32()?)
        } else {
            None
        };
        let categories = if bits & BIT_CATEGORIES != 0 {
            reader.varint_u32()?
        } else {
            0
        };
        let first_seen = reader.varint()?;
        let last_seen = if bits & BIT_LAST_SEEN != 0 {
            first_seen
                .checked_add(reader.varint()?)
                .ok_or(DecodeError::Malformed("last_seen overflows"))?
        } else {
            first_seen
        };
        record.sources.push(StoredSource {
            source_id,
            verdict: verdict_from_bits(bits),
            confidence,
            threat_id,
            categories,
            first_seen,
            last_seen,
        });
    }
    if !reader.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes after the record"));
    }
    Ok(record)
}

fn bytes_left(reader: &Reader<'_>) -> usize {
    reader.bytes.len()
}

/// The text kept beside a URL key: the expression whose SHA-256 the key is (a domain is
/// kept as its expression, `evil.example/`; an IP address as `1.2.3.4/`).
pub(crate) fn expression_text(object: &repnet_model::Object) -> Option<Box<str>> {
    use repnet_model::{Expression, Object};
    let text = match object {
        Object::Url(expression) => expression.as_str().to_owned(),
        Object::Domain(domain) => Expression::for_domain(domain).as_str().to_owned(),
        Object::Ip(ip) => Expression::for_ip(*ip).as_str().to_owned(),
        Object::File(_) | Object::Certificate(_) => return None,
    };
    (text.len() <= MAX_TEXT_BYTES).then(|| text.into_boxed_str())
}

/// What storing `source` about `object` does, key by key: a file whose SHA-256 is known is
/// kept under it (remembering its MD5 and SHA-1), and its MD5 and SHA-1 keys become aliases
/// of it. Anything else is kept under its own key.
pub(crate) fn put_mutations(
    object: &repnet_model::Object,
    hashes: &repnet_model::FileHashes,
    source: StoredSource,
) -> Vec<(crate::key::ObjectKey, Mutation)> {
    use crate::key::ObjectKey;
    use repnet_model::{FileHash, Object};

    let mut all = *hashes;
    let Object::File(hash) = object else {
        let key = ObjectKey::of(object);
        let mut mutations = vec![(
            key,
            Mutation::Upsert {
                source,
                md5: None,
                sha1: None,
            },
        )];
        if let Some(text) = expression_text(object) {
            mutations.push((key, Mutation::Text(text)));
        }
        return mutations;
    };
    all.insert(*hash);
    let Some(sha256) = all.sha256 else {
        // No SHA-256 to point at (legacy NSRL gives SHA-1 and MD5): the record stays under
        // the hash given and names the file's other hash, so that a lookup by either gathers
        // what is stored under both (the source stores its record under each).
        return vec![(
            ObjectKey::file(hash),
            Mutation::Upsert {
                source,
                md5: all.md5.filter(|_| !matches!(hash, FileHash::Md5(_))),
                sha1: all.sha1.filter(|_| !matches!(hash, FileHash::Sha1(_))),
            },
        )];
    };
    let mut mutations = vec![(
        ObjectKey::file(&FileHash::Sha256(sha256)),
        Mutation::Upsert {
            source,
            md5: all.md5,
            sha1: all.sha1,
        },
    )];
    if let Some(md5) = all.md5 {
        mutations.push((
            ObjectKey::file(&FileHash::Md5(md5)),
            Mutation::Alias(sha256),
        ));
    }
    if let Some(sha1) = all.sha1 {
        mutations.push((
            ObjectKey::file(&FileHash::Sha1(sha1)),
            Mutation::Alias(sha256),
        ));
    }
    mutations
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arbitrary_source() -> impl Strategy<Value = StoredSource> {
        (
            any::<u32>(),
            0usize..4,
            0u8..=100,
            proptest::option::of(any::<u32>()),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(source_id, verdict, confidence, threat_id, categories, a, b)| StoredSource {
                    source_id,
                    verdict: Verdict::ALL[verdict],
                    confidence,
                    threat_id,
                    categories,
                    first_seen: a.min(b),
                    last_seen: a.max(b),
                },
            )
    }

    fn arbitrary_record() -> impl Strategy<Value = StoredRecord> {
        (
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 16]>()),
            proptest::option::of(any::<[u8; 20]>()),
            any::<u64>(),
            proptest::collection::vec(arbitrary_source(), 0..6),
            proptest::option::of("\\PC{0,40}"),
        )
            .prop_map(
                |(alias, md5, sha1, prevalence, sources, text)| StoredRecord {
                    alias_of: alias.map(Sha256),
                    md5: md5.map(Md5),
                    sha1: sha1.map(Sha1),
                    prevalence,
                    text: text.map(String::into_boxed_str),
                    sources,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(record in arbitrary_record()) {
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            prop_assert_eq!(decode(&bytes).unwrap(), record);
        }

        #[test]
        fn every_truncation_is_an_error_not_a_panic(record in arbitrary_record()) {
            let mut bytes = Vec::new();
            encode(&record, &mut bytes);
            for len in 0..bytes.len() {
                prop_assert!(decode(&bytes[..len]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn a_typical_file_entry_is_twelve_bytes() {
        let record = StoredRecord {
            sources: vec![StoredSource {
                source_id: source_id::FEED_BASE,
                verdict: Verdict::Untrusted,
                confidence: 80,
                threat_id: Some(3),
                categories: 0,
                first_seen: 1_790_000_000,
                last_seen: 1_790_000_000,
            }],
            ..StoredRecord::default()
        };
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        assert_eq!(bytes.len(), 12);
    }

    #[test]
    fn upserts_replace_one_source_and_keep_the_sighting_window() {
        let source = |id, verdict, first, last| StoredSource {
            source_id: id,
            verdict,
            confidence: 50,
            threat_id: None,
            categories: 0,
            first_seen: first,
            last_seen: last,
        };
        let mut record = StoredRecord::default();
        let upsert = |s| Mutation::Upsert {
            source: s,
            md5: None,
            sha1: None,
        };
        assert!(record.apply(&upsert(source(16, Verdict::Untrusted, 10, 20))));
        assert!(record.apply(&upsert(source(17, Verdict::Trusted, 5, 5))));
        assert!(record.apply(&upsert(source(16, Verdict::Riskware, 15, 30))));
        assert!(
            !record.apply(&upsert(source(16, Verdict::Riskware, 15, 30))),
            "same again: no change"
        );
        assert_eq!(
            record.sources,
            vec![
                source(16, Verdict::Riskware, 10, 30),
                source(17, Verdict::Trusted, 5, 5)
            ]
        );
        assert!(record.apply(&Mutation::Alias(Sha256([1; 32]))));
        assert!(!record.apply(&Mutation::Alias(Sha256([1; 32]))));
    }

    #[test]
    fn unknown_versions_are_refused_with_advice() {
        let error = decode(&[9, 0, 0]).unwrap_err();
        assert!(error.to_string().contains("upgrade repnet"));
    }
}
