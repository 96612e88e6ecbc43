//! The replication stream: how one server's knowledge base reaches another (`/v1/changes`,
//! `/v1/snapshot`, offline bundles).
//!
//! A stream is a header, entries, and a trailer that counts the entries and carries the
//! SHA-256 of every byte before it, so that a truncated or damaged stream is refused before
//! anything of it is applied. Each entry is what the sending server knows under one storage
//! key: the key (opaque to the receiver; URL expressions are keys of their hash), and either
//! nothing (the key is gone) or its file hashes and the record that wins there by the
//! precedence rule. The receiver stores that record as source `upstream`, or as
//! `upstream-engine` when the sender's reputation engine decided it (flag 16): ranked with
//! the engine, below every feed of the receiver.
//!
//! Version 1, integers little-endian or LEB128 varints:
//!
//! ```text
//! header:  "RNSYNC" u8 version=1 u8 kind (1 changes, 2 snapshot)
//!          [16] log id   u64 after   u64 to   u64 sequence (the sender's, when it wrote)
//! entry:   u8 op (1 put, 2 delete)  u8 key length  key
//!          put: u8 flags (1 alias, 2 md5, 4 sha1, 8 record, 16 record of the engine, 32 text)
//!               [32 alias] [16 md5] [20 sha1]
//!               record: u8 verdict  u8 confidence  varint categories  varint first_seen
//!                       varint last_seen - first_seen  varint threat length  threat (UTF-8)
//!               [text: varint length, UTF-8: a URL key's expression, `evil.example/`]
//! trailer: u8 op=0  u64 entries  [32] SHA-256 of every byte before these 32
//! ```

use std::io::{self, BufRead, Write};

use repnet_model::{Categories, Confidence, Md5, Sha1, Sha256, ThreatName, Timestamp, Verdict};
use sha2::Digest as _;

use repnet_model::encoding::{put_varint, verdict_bits, verdict_from_bits};

const MAGIC: &[u8; 6] = b"RNSYNC";
const VERSION: u8 = 1;
const OP_END: u8 = 0;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const FLAG_ALIAS: u8 = 1;
const FLAG_MD5: u8 = 2;
const FLAG_SHA1: u8 = 4;
const FLAG_RECORD: u8 = 8;
const FLAG_ENGINE: u8 = 16;
/// The text of a URL key's expression follows the record. Readers older than the flag refuse a
/// stream with it ("unknown entry flags"): upgrade receivers before senders.
const FLAG_TEXT: u8 = 32;
/// The longest text an entry may carry.
const MAX_TEXT_BYTES: u64 = 16 * 1024;

/// Identifies one server's change log. Sequence numbers mean something only with it: a
/// receiver whose cursor names another log (the sender's data was replaced) starts over
/// from a snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogId(pub [u8; 16]);

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogId({self})")
    }
}

/// A text that is not a log id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a log id is 32 hex digits; got {0:?}")]
pub struct LogIdError(pub String);

impl std::str::FromStr for LogId {
    type Err = LogIdError;

    fn from_str(text: &str) -> Result<LogId, LogIdError> {
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return Err(LogIdError(text.to_owned()));
        }
        let mut id = [0u8; 16];
        for (index, pair) in bytes.chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => id[index] = high << 4 | low,
                _ => return Err(LogIdError(text.to_owned())),
            }
        }
        Ok(LogId(id))
    }
}

/// What a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The changes after `after`, up to `to`.
    Changes,
    /// The whole knowledge base at `to`: keys it does not name have nothing from upstream.
    Snapshot,
}

/// The start of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    pub kind: StreamKind,
    pub log_id: LogId,
    /// The sequence the receiver must be at to apply the stream (0 for a snapshot).
    pub after: u64,
    /// The sequence the receiver is at once the stream is applied.
    pub to: u64,
    /// The sender's sequence when it wrote the stream (`to` may be earlier for a page of
    /// changes: the receiver asks again).
    pub sequence: u64,
}

/// What a server knows under one storage key.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncEntry {
    pub key: Vec<u8>,
    /// `None`: nothing any more.
    pub value: Option<SyncValue>,
}

/// The hashes and winning record under a key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncValue {
    /// For MD5 and SHA-1 keys: the file's SHA-256.
    pub alias_of: Option<Sha256>,
    pub md5: Option<Md5>,
    pub sha1: Option<Sha1>,
    /// The record that wins under this key by the precedence rule, if any does.
    pub record: Option<SyncRecord>,
    /// For URL keys: the expression whose SHA-256 the key is, when the sender keeps it.
    pub text: Option<String>,
}

/// A record without its source: the receiver stores it as `upstream` (`upstream-engine` when
/// `engine`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRecord {
    /// The sender's reputation engine decided it.
    pub engine: bool,
    pub verdict: Verdict,
    pub confidence: Confidence,
    pub threat: Option<ThreatName>,
    pub categories: Categories,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// Why a stream cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read the replication stream: {0}")]
    Io(#[from] io::Error),
    #[error("the replication stream is malformed: {0}")]
    Format(String),
    #[error("the replication stream is damaged or incomplete: {0}")]
    Integrity(String),
}

/// Writes a stream, hashing as it goes.
#[derive(Debug)]
pub struct StreamWriter<W: Write> {
    out: W,
    hasher: sha2::Sha256,
    entries: u64,
    buffer: Vec<u8>,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(out: W, header: &StreamHeader) -> io::Result<StreamWriter<W>> {
        let mut writer = StreamWriter {
            out,
            hasher: sha2::Sha256::new(),
            entries: 0,
            buffer: Vec::with_capacity(256),
        };
        let mut bytes = Vec::with_capacity(48);
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.push(match header.kind {
            StreamKind::Changes => 1,
            StreamKind::Snapshot => 2,
        });
        bytes.extend_from_slice(&header.log_id.0);
        for number in [header.after, header.to, header.sequence] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        writer.write(&bytes)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }

    pub fn entry(&mut self, entry: &SyncEntry) -> io::Result<()> {
        let mut bytes = std::mem::take(&mut self.buffer);
        bytes.clear();
        encode_entry(entry, &mut bytes);
        let result = self.write(&bytes);
        self.buffer = bytes;
        self.entries += 1;
        result
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the trailer; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let mut trailer = vec![OP_END];
        trailer.extend_from_slice(&self.entries.to_le_bytes());
        self.write(&trailer)?;
        let digest: [u8; 32] = self.hasher.finalize().into();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn encode_entry(entry: &SyncEntry, out: &mut Vec<u8>) {
    let key_len = entry.key.len().min(255);
    match &entry.value {
        None => {
            out.push(OP_DELETE);
            out.push(key_len as u8);
            out.extend_from_slice(&entry.key[..key_len]);
        }
        Some(value) => {
            out.push(OP_PUT);
            out.push(key_len as u8);
            out.extend_from_slice(&entry.key[..key_len]);
            let flags = [
                (value.alias_of.is_some(), FLAG_ALIAS),
                (value.md5.is_some(), FLAG_MD5),
                (value.sha1.is_some(), FLAG_SHA1),
                (value.record.is_some(), FLAG_RECORD),
                (value.record.as_ref().is_some_and(|r| r.engine), FLAG_ENGINE),
                (value.text.is_some(), FLAG_TEXT),
            ]
            .into_iter()
            .filter(|(present, _)| *present)
            .fold(0, |flags, (_, flag)| flags | flag);
            out.push(flags);
            if let Some(alias) = &value.alias_of {
                out.extend_from_slice(alias.as_bytes());
            }
            if let Some(md5) = &value.md5 {
                out.extend_from_slice(md5.as_bytes());
            }
            if let Some(sha1) = &value.sha1 {
                out.extend_from_slice(sha1.as_bytes());
            }
            if let Some(record) = &value.record {
                out.push(verdict_bits(record.verdict));
                out.push(record.confidence.get());
                put_varint(out, u64::from(record.categories.bits()));
                put_varint(out, record.first_seen.0);
                put_varint(out, record.last_seen.0.saturating_sub(record.first_seen.0));
                let threat = record.threat.as_ref().map_or("", ThreatName::as_str);
                put_varint(out, threat.len() as u64);
                out.extend_from_slice(threat.as_bytes());
            }
            if let Some(text) = &value.text {
                put_varint(out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// Reads a stream, checking it as it goes; the trailer's count and hash are checked when
/// [`next`](StreamReader::next) reaches it, so a caller that applies only after `None` never
/// applies a damaged stream.
#[derive(Debug)]
pub struct StreamReader<R: BufRead> {
    input: R,
    hasher: sha2::Sha256,
    header: StreamHeader,
    entries: u64,
    /// The most entries this stream may hold: for changes, one per sequence number it
    /// covers; lowered by [`with_max_entries`](StreamReader::with_max_entries).
    max_entries: u64,
    done: bool,
}

impl<R: BufRead> StreamReader<R> {
    pub fn new(mut input: R) -> Result<StreamReader<R>, SyncError> {
        let mut hasher = sha2::Sha256::new();
        let mut bytes = [0u8; 48];
        input
            .read_exact(&mut bytes)
            .map_err(|error| match error.kind() {
                io::ErrorKind::UnexpectedEof => {
                    SyncError::Format("too short for a replication stream".to_owned())
                }
                _ => SyncError::Io(error),
            })?;
        hasher.update(bytes);
        if &bytes[..6] != MAGIC {
            return Err(SyncError::Format(
                "not a repnet replication stream (no RNSYNC header)".to_owned(),
            ));
        }
        if bytes[6] != VERSION {
            return Err(SyncError::Format(format!(
                "replication stream version {} is not one this repnet reads ({VERSION}): upgrade repnet",
                bytes[6]
            )));
        }
        let kind = match bytes[7] {
            1 => StreamKind::Changes,
            2 => StreamKind::Snapshot,
            other => return Err(SyncError::Format(format!("unknown stream kind {other}"))),
        };
        let number = |at: usize| {
            let mut le = [0u8; 8];
            le.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(le)
        };
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&bytes[8..24]);
        let header = StreamHeader {
            kind,
            log_id: LogId(log_id),
            after: number(24),
            to: number(32),
            sequence: number(40),
        };
        if header.to < header.after {
            return Err(SyncError::Format(format!(
                "the stream goes from {} back to {}",
                header.after, header.to
            )));
        }
        let max_entries = match kind {
            StreamKind::Changes => header.to - header.after,
            StreamKind::Snapshot => u64::MAX,
        };
        Ok(StreamReader {
            input,
            hasher,
            header,
            entries: 0,
            max_entries,
            done: false,
        })
    }

    /// Fails the stream at its `max + 1`th entry: a receiver that asked for a page of `max`
    /// changes takes no more, however long the stream.
    pub fn with_max_entries(mut self, max: u64) -> StreamReader<R> {
        self.max_entries = self.max_entries.min(max);
        self
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], SyncError> {
        let mut bytes = [0u8; N];
        self.input.read_exact(&mut bytes).map_err(truncated)?;
        self.hasher.update(bytes);
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, SyncError> {
        Ok(self.bytes::<1>()?[0])
    }

    fn varint(&mut self) -> Result<u64, SyncError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(SyncError::Format("a number is too long".to_owned()))
    }

    fn vec(&mut self, len: usize) -> Result<Vec<u8>, SyncError> {
        let mut bytes = vec![0u8; len];
        self.input.read_exact(&mut bytes).map_err(truncated)?;
        self.hasher.update(&bytes);
        Ok(bytes)
    }

    /// The next entry; `None` once the trailer is read and checked.
    pub fn next_entry(&mut self) -> Result<Option<SyncEntry>, SyncError> {
        if self.done {
            return Ok(None);
        }
        let op = self.u8()?;
        if op == OP_END {
            let count = u64::from_le_bytes(self.bytes::<8>()?);
            let expected: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
            let mut digest = [0u8; 32];
            self.input.read_exact(&mut digest).map_err(truncated)?;
            if digest != expected {
                return Err(SyncError::Integrity(
                    "its SHA-256 does not match its content".to_owned(),
                ));
            }
            if count != self.entries {
                return Err(SyncError::Integrity(format!(
                    "it says {count} entries but holds {}",
                    self.entries
                )));
            }
            let mut rest = [0u8; 1];
            if self.input.read(&mut rest)? != 0 {
                return Err(SyncError::Format(
                    "bytes follow the end of the stream".to_owned(),
                ));
            }
            self.done = true;
            return Ok(None);
        }
        if self.entries >= self.max_entries {
            return Err(SyncError::Format(format!(
                "more entries than the {} it may hold",
                self.max_entries
            )));
        }
        let key_len = usize::from(self.u8()?);
        if key_len == 0 {
            return Err(SyncError::Format("an entry has an empty key".to_owned()));
        }
        let key = self.vec(key_len)?;
        let value = match op {
            OP_DELETE => None,
            OP_PUT => {
                let flags = self.u8()?;
                if flags
                    & !(FLAG_ALIAS | FLAG_MD5 | FLAG_SHA1 | FLAG_RECORD | FLAG_ENGINE | FLAG_TEXT)
                    != 0
                {
                    return Err(SyncError::Format(format!("unknown entry flags {flags:#x}")));
                }
                let alias_of = (flags & FLAG_ALIAS != 0)
                    .then(|| self.bytes::<32>().map(Sha256))
                    .transpose()?;
                let md5 = (flags & FLAG_MD5 != 0)
                    .then(|| self.bytes::<16>().map(Md5))
                    .transpose()?;
                let sha1 = (flags & FLAG_SHA1 != 0)
                    .then(|| self.bytes::<20>().map(Sha1))
                    .transpose()?;
                let record = if flags & FLAG_RECORD != 0 {
                    Some(SyncRecord {
                        engine: flags & FLAG_ENGINE != 0,
                        ..self.record()?
                    })
                } else {
                    None
                };
                let text = if flags & FLAG_TEXT != 0 {
                    let len = self.varint()?;
                    if len > MAX_TEXT_BYTES {
                        return Err(SyncError::Format(format!(
                            "an entry's text of {len} bytes is longer than a URL expression can be"
                        )));
                    }
                    let bytes = self.vec(len as usize)?;
                    Some(String::from_utf8(bytes).map_err(|_| {
                        SyncError::Format("an entry's text is not UTF-8".to_owned())
                    })?)
                } else {
                    None
                };
                Some(SyncValue {
                    alias_of,
                    md5,
                    sha1,
                    record,
                    text,
                })
            }
            other => return Err(SyncError::Format(format!("unknown entry kind {other}"))),
        };
        self.entries += 1;
        Ok(Some(SyncEntry { key, value }))
    }

    fn record(&mut self) -> Result<SyncRecord, SyncError> {
        let verdict = verdict_from_bits(self.u8()?);
        let confidence = Confidence::new(i64::from(self.u8()?))
            .map_err(|error| SyncError::Format(format!("confidence: {error}")))?;
        let categories = u32::try_from(self.varint()?)
            .map(Categories::from_bits)
            .map_err(|_| SyncError::Format("categories out of range".to_owned()))?;
        let first_seen = self.varint()?;
        let last_seen = first_seen.saturating_add(self.varint()?);
        let threat_len = usize::try_from(self.varint()?)
            .ok()
            .filter(|len| *len <= 1024)
            .ok_or_else(|| SyncError::Format("a threat name is too long".to_owned()))?;
        let threat = if threat_len == 0 {
            None
        } else {
            let bytes = self.vec(threat_len)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| SyncError::Format("a threat name is not UTF-8".to_owned()))?;
            Some(
                ThreatName::new(&text)
                    .map_err(|error| SyncError::Format(format!("threat name: {error}")))?,
            )
        };
        Ok(SyncRecord {
            engine: false,
            verdict,
            confidence,
            threat,
            categories,
            first_seen: Timestamp(first_seen),
            last_seen: Timestamp(last_seen),
        })
    }
}

fn truncated(error: io::Error) -> SyncError {
    match error.kind() {
        io::ErrorKind::UnexpectedEof => SyncError::Integrity("it ends early".to_owned()),
        _ => SyncError::Io(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SyncEntry> {
        vec![
            SyncEntry {
                key: vec![1; 33],
                value: Some(SyncValue {
                    alias_of: None,
                    md5: Some(Md5([2; 16])),
                    sha1: Some(Sha1([3; 20])),
                    record: Some(SyncRecord {
                        engine: true,
                        verdict: Verdict::Untrusted,
                        confidence: Confidence::new(90).unwrap(),
                        threat: Some(ThreatName::new("Trojan.Win32.Example").unwrap()),
                        categories: Categories::from_bits(5),
                        first_seen: Timestamp(1_800_000_000),
                        last_seen: Timestamp(1_800_000_100),
                    }),
                    text: Some("evil.example/login/".to_owned()),
                }),
            },
            SyncEntry {
                key: vec![3; 17],
                value: Some(SyncValue {
                    alias_of: Some(Sha256([1; 32])),
                    ..SyncValue::default()
                }),
            },
            SyncEntry {
                key: vec![0x40; 33],
                value: None,
            },
        ]
    }

    fn stream(entries: &[SyncEntry]) -> Vec<u8> {
        let header = StreamHeader {
            kind: StreamKind::Changes,
            log_id: LogId([9; 16]),
            after: 10,
            to: 13,
            sequence: 20,
        };
        let mut writer = StreamWriter::new(Vec::new(), &header).unwrap();
        for entry in entries {
            writer.entry(entry).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(StreamHeader, Vec<SyncEntry>), SyncError> {
        let mut reader = StreamReader::new(bytes)?;
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            entries.push(entry);
        }
        Ok((*reader.header(), entries))
    }

    #[test]
    fn streams_round_trip() {
        let entries = sample();
        let (header, read) = read_all(&stream(&entries)).unwrap();
        assert_eq!(read, entries);
        assert_eq!((header.after, header.to, header.sequence), (10, 13, 20));
        assert_eq!(
            header.log_id.to_string().parse::<LogId>(),
            Ok(LogId([9; 16]))
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = stream(&sample());
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(read_all(&damaged).is_err(), "flipped byte {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
    }

    #[test]
    fn a_stream_holds_no_more_entries_than_it_may() {
        // Three changes (10 to 13) hold three entries at most: a fourth is refused before
        // it is read, as is a second when the receiver asked for a page of one.
        let mut four = sample();
        four.push(SyncEntry {
            key: vec![7; 33],
            value: None,
        });
        let error = read_all(&stream(&four)).unwrap_err();
        assert!(
            error.to_string().contains("more entries than the 3"),
            "{error}"
        );
        let bytes = stream(&sample());
        let mut reader = StreamReader::new(&bytes[..]).unwrap().with_max_entries(1);
        assert!(reader.next_entry().unwrap().is_some());
        let error = reader.next_entry().unwrap_err();
        assert!(
            error.to_string().contains("more entries than the 1"),
            "{error}"
        );
    }
}
