//! Privacy-mode lookups (`POST /v1/hashes:search`): the client sends only short prefixes of
//! hashes (SHA-256 of its URL expressions; SHA-256, SHA-1 and MD5 of its files) and decides
//! locally, by the same precedence rule as the server, from the full hashes that share them
//! and their records.

use repnet_model as model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::lookup::{ExplainedRecord, Verdict, explain_records};

/// The most prefixes in one search (of all kinds together).
pub const MAX_PREFIXES: usize = 1_000;

/// `POST /v1/hashes:search`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashSearchRequest {
    /// Hexadecimal prefixes of SHA-256 hashes (of files, and of URL expressions' text): 8 to
    /// 64 characters, an even number.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Hexadecimal prefixes of files' SHA-1 hashes: 8 to 40 characters, an even number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sha1_prefixes: Vec<String>,
    /// Hexadecimal prefixes of files' MD5 hashes: 8 to 32 characters, an even number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub md5_prefixes: Vec<String>,
    /// Hexadecimal prefixes of the SHA-256 of URL expressions' text, searched among web
    /// addresses only (`prefixes` also searches files): 8 to 64 characters, an even number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url_prefixes: Vec<String>,
}

impl HashSearchRequest {
    /// Prefixes of every kind.
    pub fn len(&self) -> usize {
        self.prefixes.len()
            + self.sha1_prefixes.len()
            + self.md5_prefixes.len()
            + self.url_prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why the search is too large to answer, if it is (more than [`MAX_PREFIXES`]), as the
    /// message of a `413 batch_too_large`.
    pub fn too_large(&self) -> Option<String> {
        (self.len() > MAX_PREFIXES).then(|| {
            format!(
                "the search has {} prefixes; the limit is {MAX_PREFIXES}: split it into several requests",
                self.len()
            )
        })
    }

    /// Every prefix, parsed, with its kind; or the first bad one's field (`prefixes[3]`) and
    /// what is wrong with it.
    pub fn parsed(&self) -> Result<Vec<SearchedPrefix>, (String, model::ParseError)> {
        let mut prefixes = Vec::with_capacity(self.len());
        for (field, of, texts) in [
            ("prefixes", model::PrefixOf::Sha256, &self.prefixes),
            ("sha1_prefixes", model::PrefixOf::Sha1, &self.sha1_prefixes),
            ("md5_prefixes", model::PrefixOf::Md5, &self.md5_prefixes),
            ("url_prefixes", model::PrefixOf::Url, &self.url_prefixes),
        ] {
            for (index, text) in texts.iter().enumerate() {
                let bytes = parse_prefix_of(of.hash_kind(), text)
                    .map_err(|error| (format!("{field}[{index}]"), error))?;
                prefixes.push((of, bytes));
            }
        }
        Ok(prefixes)
    }
}

/// A parsed prefix: what it is the start of, and its bytes.
pub type SearchedPrefix = (model::PrefixOf, Vec<u8>);

/// One full hash that starts with a requested prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HashMatch {
    /// The full hash, in lower-case hex: of the file (SHA-256, SHA-1 or MD5, as the prefix
    /// was), or the SHA-256 of the URL expression's text.
    pub hash: String,
    /// `file` or `url`.
    #[serde(rename = "type")]
    pub kind: String,
    pub verdict: Verdict,
    pub threat: Option<String>,
    pub categories: Vec<String>,
    pub confidence: u8,
    pub source: Option<String>,
    /// Every source record under the hash (for a file, under all of its hashes), so that a
    /// client weighs what several hashes or expressions hold by the server's rule.
    #[serde(default)]
    pub records: Vec<ExplainedRecord>,
}

impl HashMatch {
    pub fn from_model(kind: &str, hash: &str, reputation: &model::Reputation) -> HashMatch {
        HashMatch {
            hash: hash.to_owned(),
            kind: kind.to_owned(),
            verdict: reputation.verdict.into(),
            threat: reputation.threat.as_ref().map(|t| t.as_str().to_owned()),
            categories: reputation
                .categories
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            confidence: reputation.confidence.get(),
            source: reputation.source.as_ref().map(ToString::to_string),
            records: explain_records(reputation).records,
        }
    }

    /// The match's records as the model's, for the client to weigh; records this client
    /// cannot read (a newer server's source or category) are left out.
    pub fn source_records(&self) -> Vec<model::SourceRecord> {
        self.records
            .iter()
            .filter_map(|record| {
                let mut parsed = model::SourceRecord::new(
                    record.source.parse().ok()?,
                    record.verdict.into(),
                    model::Confidence::new(i64::from(record.confidence)).ok()?,
                    model::Timestamp(0),
                );
                parsed.threat = match &record.threat {
                    Some(threat) => Some(model::ThreatName::new(threat).ok()?),
                    None => None,
                };
                for category in &record.categories {
                    parsed.categories = parsed.categories.with(category.parse().ok()?);
                }
                let time = |text: &Option<String>| {
                    text.as_deref()
                        .and_then(|t| crate::parse_time(t).ok())
                        .unwrap_or(model::Timestamp(0))
                };
                parsed.first_seen = time(&record.first_seen);
                parsed.last_seen = time(&record.last_seen);
                Some(parsed)
            })
            .collect()
    }
}

/// The answer to `POST /v1/hashes:search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HashSearchResponse {
    /// Every full hash that starts with one of the prefixes, with its verdict.
    pub matches: Vec<HashMatch>,
    /// Seconds the client may keep these results for these prefixes: the answers are
    /// complete for each prefix, so a client decides from them without asking again.
    pub cache_seconds: u32,
    /// Seconds the client may keep an `unknown` answer (one whose prefixes matched nothing
    /// that decides it); `cache_seconds` when absent (servers before 0.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_cache_seconds: Option<u32>,
}

/// Parses a hexadecimal prefix of a SHA-256: 8 to 64 characters (4 to 32 bytes), an even
/// number.
pub fn parse_prefix(text: &str) -> Result<Vec<u8>, model::ParseError> {
    parse_prefix_of(model::HashKind::Sha256, text)
}

/// Parses a hexadecimal prefix of a hash of `kind`: from 8 characters (4 bytes) to the whole
/// hash, an even number.
pub fn parse_prefix_of(kind: model::HashKind, text: &str) -> Result<Vec<u8>, model::ParseError> {
    let invalid = |message: String| model::ParseError::Prefix(message);
    let max = match kind {
        model::HashKind::Md5 => 32,
        model::HashKind::Sha1 => 40,
        model::HashKind::Sha256 => 64,
    };
    if text.len() < 8 || text.len() > max {
        return Err(invalid(format!(
            "a prefix is 8 to {max} hexadecimal characters (4 to {} bytes of a {}); got {}",
            max / 2,
            match kind {
                model::HashKind::Md5 => "MD5",
                model::HashKind::Sha1 => "SHA-1",
                model::HashKind::Sha256 => "SHA-256",
            },
            text.len()
        )));
    }
    if !text.len().is_multiple_of(2) {
        return Err(invalid(format!(
            "a prefix is whole bytes: an even number of hexadecimal characters; got {}",
            text.len()
        )));
    }
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(invalid(format!("a prefix is hexadecimal; {bad:?} is not")));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| invalid(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("0123abCD").unwrap(),
            vec![0x01, 0x23, 0xab, 0xcd]
        );
        assert_eq!(parse_prefix(&"f".repeat(64)).unwrap().len(), 32);
        for (bad, reason) in [
            ("0123ab", "8 to 64"),
            (&*"a".repeat(66), "8 to 64"),
            ("0123abcde", "even"),
            ("0123abcg", "hexadecimal"),
        ] {
            let error = parse_prefix(bad).unwrap_err();
            assert!(error.to_string().contains(reason), "{bad}: {error}");
            assert_eq!(
                crate::ErrorCode::of(&error),
                crate::ErrorCode::InvalidPrefix
            );
        }
    }
}
