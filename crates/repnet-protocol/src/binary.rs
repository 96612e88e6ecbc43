//! The compact binary form of a batch file lookup, offered beside JSON for clients that look
//! up many files: raw digests in, fixed-size records out.
//!
//! Request: `POST /v1/lookup?hash=<kinds>` with `Content-Type: application/octet-stream`.
//! `hash` names what each file carries, in order: `sha256` (32-byte digests), `sha1` (20),
//! `md5` (16), or several such as `sha256,sha1,md5`, when each file is those digests one
//! after the other (68 bytes) and is answered as one file from the records under all of them.
//! A digest of all zero bytes in a file of several stands for a hash not given. The body is
//! the files one after the other (at most 10,000); a body that is not a whole number of files
//! of the declared size is refused, so that 1,000 SHA-1 digests cannot be read as 625
//! SHA-256 ones.
//!
//! Response (`application/octet-stream`), little-endian:
//!
//! ```text
//! 0   4 bytes  magic "RPNB"
//! 4   u8       version = 1
//! 5   u8       record size = 20
//! 6   u16      reserved = 0
//! 8   u32      number of records (= number of digests, same order)
//! 12  u32      number of strings
//! 16  records, each 20 bytes:
//!       0  u8   verdict: 0 unknown, 1 trusted, 2 riskware, 3 untrusted
//!       1  u8   confidence, 0-100
//!       2  u8   deciding source: 0 none, 1 local, 2 builtin, 3 feed, 4 upstream, 5 engine
//!       3  u8   reserved = 0
//!       4  u32  ttl, seconds
//!       8  u32  categories, bit n = category n (see docs/http-api.md)
//!       12 u32  threat name: index into the strings, or 0xFFFFFFFF for none
//!       16 u32  feed name (source 3): index into the strings, or 0xFFFFFFFF
//! then the strings, each a u16 length and that many bytes of UTF-8.
//! ```
//!
//! Strings are shared: a threat named by 500 records is sent once.

use std::collections::HashMap;

use repnet_model as model;

/// The media type of both the request and the response.
pub const MEDIA_TYPE: &str = "application/octet-stream";

const MAGIC: &[u8; 4] = b"RPNB";
const VERSION: u8 = 1;
const RECORD_SIZE: usize = 20;
const HEADER_SIZE: usize = 16;
const NONE: u32 = u32::MAX;

/// What each file of a binary request carries: one or more digests, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout(Vec<model::HashKind>);

/// Why a `hash=` parameter is not a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "hash={layout:?}: {name:?} is not a hash kind; give md5, sha1 or sha256, or several such as hash=sha256,sha1,md5"
    )]
    UnknownKind { layout: String, name: String },
    #[error("hash={layout:?} names {kind} twice")]
    Twice {
        layout: String,
        kind: model::HashKind,
    },
}

impl Layout {
    /// SHA-256 digests only.
    pub fn sha256() -> Layout {
        Layout(vec![model::HashKind::Sha256])
    }

    /// The layout of `hash=<kinds>`: `md5`, `sha1`, `sha256`, or several separated by commas.
    pub fn parse(text: &str) -> Result<Layout, LayoutError> {
        let mut kinds = Vec::new();
        for name in text.split(',').map(str::trim) {
            let kind = match name.to_ascii_lowercase().as_str() {
                "md5" => model::HashKind::Md5,
                "sha1" => model::HashKind::Sha1,
                "sha256" => model::HashKind::Sha256,
                _ => {
                    return Err(LayoutError::UnknownKind {
                        layout: text.to_owned(),
                        name: name.to_owned(),
                    });
                }
            };
            if kinds.contains(&kind) {
                return Err(LayoutError::Twice {
                    layout: text.to_owned(),
                    kind,
                });
            }
            kinds.push(kind);
        }
        Ok(Layout(kinds))
    }

    /// The bytes of one file.
    pub fn record_size(&self) -> usize {
        self.0.iter().map(|kind| digest_len(*kind)).sum()
    }

    /// The value of `hash=` for this layout.
    pub fn query_value(&self) -> String {
        self.0
            .iter()
            .map(|kind| kind.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One file's digests, in this layout.
    pub fn write(&self, hashes: &model::FileHashes, out: &mut Vec<u8>) {
        for kind in &self.0 {
            let zeros = [0u8; 32];
            let digest: &[u8] = match kind {
                model::HashKind::Md5 => hashes.md5.as_ref().map_or(&zeros[..16], |h| h.as_bytes()),
                model::HashKind::Sha1 => {
                    hashes.sha1.as_ref().map_or(&zeros[..20], |h| h.as_bytes())
                }
                model::HashKind::Sha256 => {
                    hashes.sha256.as_ref().map_or(&zeros[..], |h| h.as_bytes())
                }
            };
            out.extend_from_slice(digest);
        }
    }
}

fn digest_len(kind: model::HashKind) -> usize {
    match kind {
        model::HashKind::Md5 => model::Md5::LEN,
        model::HashKind::Sha1 => model::Sha1::LEN,
        model::HashKind::Sha256 => model::Sha256::LEN,
    }
}

/// Why a binary request body is not files of its layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "hash={layout} declares files of {size} bytes, and {length} bytes is not a multiple of {size}: check that the body holds the hashes that hash= names"
    )]
    Length {
        layout: String,
        size: usize,
        length: usize,
    },
    #[error("file {0} of the body gives no hash (every digest is zero)")]
    NoHash(usize),
}

/// A binary answer that cannot be read: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DamagedAnswer(pub String);

/// Splits a request body into files of `layout`, or says why it is not made of them.
pub fn parse_request(body: &[u8], layout: &Layout) -> Result<Vec<model::FileHashes>, RequestError> {
    let size = layout.record_size();
    if !body.len().is_multiple_of(size) {
        return Err(RequestError::Length {
            layout: layout.query_value(),
            size,
            length: body.len(),
        });
    }
    let mut files = Vec::with_capacity(body.len() / size);
    for (index, record) in body.chunks_exact(size).enumerate() {
        let mut hashes = model::FileHashes::default();
        let mut at = 0;
        for kind in &layout.0 {
            let digest = &record[at..at + digest_len(*kind)];
            at += digest.len();
            // A file of several digests may leave some out (all zeros); a lone digest is
            // always what was asked for.
            if layout.0.len() > 1 && digest.iter().all(|b| *b == 0) {
                continue;
            }
            match kind {
                model::HashKind::Md5 => hashes.md5 = digest.try_into().ok().map(model::Md5),
                model::HashKind::Sha1 => hashes.sha1 = digest.try_into().ok().map(model::Sha1),
                model::HashKind::Sha256 => {
                    hashes.sha256 = digest.try_into().ok().map(model::Sha256)
                }
            }
        }
        if hashes.is_empty() {
            return Err(RequestError::NoHash(index));
        }
        files.push(hashes);
    }
    Ok(files)
}

/// One answer, as the binary form carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryAnswer {
    pub verdict: model::Verdict,
    pub confidence: u8,
    pub source: Option<model::Source>,
    pub ttl: u32,
    pub categories: model::Categories,
    pub threat: Option<String>,
}

impl BinaryAnswer {
    pub fn from_model(reputation: &model::Reputation) -> BinaryAnswer {
        BinaryAnswer {
            verdict: reputation.verdict,
            confidence: reputation.confidence.get(),
            source: reputation.source.clone(),
            ttl: reputation.ttl,
            categories: reputation.categories,
            threat: reputation.threat.as_ref().map(|t| t.as_str().to_owned()),
        }
    }
}

fn verdict_code(verdict: model::Verdict) -> u8 {
    match verdict {
        model::Verdict::Unknown => 0,
        model::Verdict::Trusted => 1,
        model::Verdict::Riskware => 2,
        model::Verdict::Untrusted => 3,
    }
}

/// Builds a response body, record by record.
#[derive(Debug)]
pub struct ResponseWriter {
    body: Vec<u8>,
    count: u32,
    strings: Vec<u8>,
    string_count: u32,
    string_index: HashMap<String, u32>,
}

impl ResponseWriter {
    pub fn with_capacity(records: usize) -> ResponseWriter {
        let mut body = Vec::with_capacity(HEADER_SIZE + records * RECORD_SIZE + 64);
        body.extend_from_slice(MAGIC);
        body.push(VERSION);
        body.push(RECORD_SIZE as u8);
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&[0; 8]); // counts, filled in by `finish`
        ResponseWriter {
            body,
            count: 0,
            strings: Vec::new(),
            string_count: 0,
            string_index: HashMap::new(),
        }
    }

    fn string(&mut self, text: &str) -> u32 {
        if let Some(index) = self.string_index.get(text) {
            return *index;
        }
        // Names are validated to at most 200 characters; cut at a char boundary anyway so
        // that the length always fits its u16.
        let mut end = text.len().min(u16::MAX as usize);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let index = self.string_count;
        self.strings.extend_from_slice(&(end as u16).to_le_bytes());
        self.strings.extend_from_slice(&text.as_bytes()[..end]);
        self.string_count += 1;
        self.string_index.insert(text.to_owned(), index);
        index
    }

    /// Appends the record of one model answer.
    pub fn push(&mut self, reputation: &model::Reputation) {
        let (source_code, feed) = match &reputation.source {
            None => (0, None),
            Some(model::Source::Local) => (1, None),
            Some(model::Source::Builtin) => (2, None),
            Some(model::Source::Feed(name)) => (3, Some(name.as_str())),
            Some(model::Source::Upstream) => (4, None),
            Some(model::Source::Engine) => (5, None),
            Some(model::Source::UpstreamEngine) => (6, None),
        };
        let threat = match &reputation.threat {
            Some(threat) => self.string(threat.as_str()),
            None => NONE,
        };
        let feed = match feed {
            Some(name) => self.string(name),
            None => NONE,
        };
        self.body.push(verdict_code(reputation.verdict));
        self.body.push(reputation.confidence.get());
        self.body.push(source_code);
        self.body.push(0);
        self.body.extend_from_slice(&reputation.ttl.to_le_bytes());
        self.body
            .extend_from_slice(&reputation.categories.bits().to_le_bytes());
        self.body.extend_from_slice(&threat.to_le_bytes());
        self.body.extend_from_slice(&feed.to_le_bytes());
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.body[8..12].copy_from_slice(&self.count.to_le_bytes());
        self.body[12..16].copy_from_slice(&self.string_count.to_le_bytes());
        self.body.extend_from_slice(&self.strings);
        self.body
    }
}

/// Decodes a response body (for clients).
pub fn parse_response(body: &[u8]) -> Result<Vec<BinaryAnswer>, DamagedAnswer> {
    read_response(body).map_err(DamagedAnswer)
}

/// [`parse_response`], with what is wrong as a message.
fn read_response(body: &[u8]) -> Result<Vec<BinaryAnswer>, String> {
    let header = body
        .get(..HEADER_SIZE)
        .ok_or("the answer is shorter than its header")?;
    if &header[..4] != MAGIC {
        return Err("the answer does not start with RPNB".to_owned());
    }
    if header[4] != VERSION {
        return Err(format!(
            "the answer has version {}; this client reads version {VERSION}",
            header[4]
        ));
    }
    let record_size = header[5] as usize;
    if record_size < RECORD_SIZE {
        return Err(format!("records of {record_size} bytes are too short"));
    }
    let u32_at = |bytes: &[u8], at: usize| -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    let count = u32_at(header, 8) as usize;
    let string_count = u32_at(header, 12) as usize;
    let records_end = count
        .checked_mul(record_size)
        .and_then(|len| len.checked_add(HEADER_SIZE))
        .filter(|end| *end <= body.len())
        .ok_or("the answer is shorter than its records")?;
    let mut strings = Vec::with_capacity(string_count.min(body.len()));
    let mut at = records_end;
    for _ in 0..string_count {
        let len = body
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or("the answer's strings are cut short")?;
        let text = body
            .get(at + 2..at + 2 + len)
            .ok_or("the answer's strings are cut short")?;
        strings.push(
            std::str::from_utf8(text)
                .map_err(|_| "a string of the answer is not UTF-8")?
                .to_owned(),
        );
        at += 2 + len;
    }
    let string = |index: u32| -> Result<Option<String>, String> {
        if index == NONE {
            return Ok(None);
        }
        strings
            .get(index as usize)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("string {index} is missing from the answer"))
    };
    let mut answers = Vec::with_capacity(count);
    for record in body[HEADER_SIZE..records_end].chunks_exact(record_size) {
        let verdict = match record[0] {
            0 => model::Verdict::Unknown,
            1 => model::Verdict::Trusted,
            2 => model::Verdict::Riskware,
            3 => model::Verdict::Untrusted,
            other => return Err(format!("unknown verdict code {other}")),
        };
        let feed = string(u32_at(record, 16))?;
        let source = match (record[2], feed) {
            (0, _) => None,
            (1, _) => Some(model::Source::Local),
            (2, _) => Some(model::Source::Builtin),
            (3, Some(name)) => Some(model::Source::feed(&name).map_err(|e| e.to_string())?),
            (4, _) => Some(model::Source::Upstream),
            (5, _) => Some(model::Source::Engine),
            (6, _) => Some(model::Source::UpstreamEngine),
            (code, _) => return Err(format!("unknown source code {code}")),
        };
        answers.push(BinaryAnswer {
            verdict,
            confidence: record[1],
            source,
            ttl: u32_at(record, 4),
            categories: model::Categories::from_bits(u32_at(record, 8)),
            threat: string(u32_at(record, 12))?,
        });
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Confidence, FileHashes, Object, Source, SourceRecord, Timestamp, TtlPolicy};

    fn reputation(i: u8, source: Option<&str>, threat: Option<&str>) -> model::Reputation {
        let object = Object::File(model::FileHash::Sha256(model::Sha256([i; 32])));
        let records = match source {
            None => Vec::new(),
            Some(source) => {
                let mut record = SourceRecord::new(
                    source.parse::<Source>().unwrap(),
                    model::Verdict::Untrusted,
                    Confidence::new(i64::from(i) % 101).unwrap(),
                    Timestamp(1),
                );
                record.threat = threat.map(|t| model::ThreatName::new(t).unwrap());
                record.categories = [model::Category::Malware, model::Category::Test]
                    .into_iter()
                    .collect();
                vec![record]
            }
        };
        model::Reputation::assess(
            object,
            FileHashes::default(),
            records,
            0,
            &TtlPolicy::default(),
        )
    }

    #[test]
    fn responses_round_trip_and_share_strings() {
        let reputations = [
            reputation(1, Some("feed:bazaar"), Some("Trojan.X")),
            reputation(2, None, None),
            reputation(3, Some("feed:bazaar"), Some("Trojan.X")),
            reputation(4, Some("local"), None),
            reputation(5, Some("builtin"), Some("EICAR-Test-File")),
        ];
        let mut writer = ResponseWriter::with_capacity(reputations.len());
        for reputation in &reputations {
            writer.push(reputation);
        }
        let body = writer.finish();
        // 2 distinct threat names and 1 feed name, each sent once.
        assert_eq!(u32::from_le_bytes(body[12..16].try_into().unwrap()), 3);
        let answers = parse_response(&body).unwrap();
        let expected: Vec<BinaryAnswer> =
            reputations.iter().map(BinaryAnswer::from_model).collect();
        assert_eq!(answers, expected);
    }

    #[test]
    fn requests_are_whole_files_of_the_declared_layout() {
        let sha256 = Layout::sha256();
        let file = |byte: u8| model::FileHashes {
            sha256: Some(model::Sha256([byte; 32])),
            ..model::FileHashes::default()
        };
        assert_eq!(parse_request(&[7; 64], &sha256).unwrap(), vec![file(7); 2]);
        assert!(parse_request(&[], &sha256).unwrap().is_empty());
        assert!(
            parse_request(&[0; 33], &sha256)
                .unwrap_err()
                .to_string()
                .contains("not a multiple of 32")
        );
        // 1,000 SHA-1 digests are 20,000 bytes: a multiple of 32 too, so only the declared
        // kind tells them apart.
        let sha1 = Layout::parse("sha1").unwrap();
        let files = parse_request(&[9; 20_000], &sha1).unwrap();
        assert_eq!(files.len(), 1000);
        assert_eq!(files[0].sha1, Some(model::Sha1([9; 20])));
        assert!(
            parse_request(&[9; 20_000], &Layout::parse("md5,sha1,sha256").unwrap())
                .unwrap_err()
                .to_string()
                .contains("not a multiple of 68")
        );

        // Several digests per file, some left out.
        let all = Layout::parse("sha256, SHA1,md5").unwrap();
        assert_eq!(all.record_size(), 68);
        assert_eq!(all.query_value(), "sha256,sha1,md5");
        let mut body = Vec::new();
        let both = model::FileHashes {
            md5: Some(model::Md5([1; 16])),
            ..file(2)
        };
        all.write(&both, &mut body);
        all.write(&file(3), &mut body);
        assert_eq!(parse_request(&body, &all).unwrap(), vec![both, file(3)]);
        assert!(
            parse_request(&[0; 68], &all)
                .unwrap_err()
                .to_string()
                .contains("no hash")
        );

        for bad in ["", "sha512", "md5,md5", "sha256;md5"] {
            assert!(Layout::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn damaged_responses_are_errors_not_panics() {
        let mut writer = ResponseWriter::with_capacity(1);
        writer.push(&reputation(1, Some("feed:x"), Some("T")));
        let body = writer.finish();
        for len in 0..body.len() {
            assert!(parse_response(&body[..len]).is_err(), "{len}");
        }
        let mut bad = body.clone();
        bad[16] = 9;
        assert!(parse_response(&bad).is_err());
    }
}
