//! Privacy-mode lookups (`POST /v1/hashes:search`): the client sends only short prefixes of
//! SHA-256 hashes (of its URL expressions, or of its files) and decides locally from the full
//! hashes that share them.

use repnet_model as model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::lookup::Verdict;

/// The most prefixes in one search.
pub const MAX_PREFIXES: usize = 1_000;

/// `POST /v1/hashes:search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashSearchRequest {
    /// Hexadecimal prefixes of SHA-256 hashes: 8 to 64 characters, an even number.
    pub prefixes: Vec<String>,
}

/// One full hash that starts with a requested prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HashMatch {
    /// The full SHA-256, in lower-case hex: of the file, or of the URL expression's text.
    pub hash: String,
    /// `file` or `url`.
    #[serde(rename = "type")]
    pub kind: String,
    pub verdict: Verdict,
    pub threat: Option<String>,
    pub categories: Vec<String>,
    pub confidence: u8,
    pub source: Option<String>,
}

impl HashMatch {
    pub fn from_model(
        kind: &str,
        hash: &model::Sha256,
        reputation: &model::Reputation,
    ) -> HashMatch {
        HashMatch {
            hash: hash.to_string(),
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
        }
    }
}

/// The answer to `POST /v1/hashes:search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HashSearchResponse {
    /// Every full hash that starts with one of the prefixes, with its verdict.
    pub matches: Vec<HashMatch>,
    /// Seconds the client may keep these results for these prefixes.
    pub cache_seconds: u32,
}

/// Parses a hexadecimal prefix: 8 to 64 characters (4 to 32 bytes), an even number.
pub fn parse_prefix(text: &str) -> Result<Vec<u8>, model::ParseError> {
    let invalid = |message: String| model::ParseError::Prefix(message);
    if text.len() < 8 || text.len() > 64 {
        return Err(invalid(format!(
            "a prefix is 8 to 64 hexadecimal characters (4 to 32 bytes of a SHA-256); got {}",
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
            assert_eq!(error.code(), "invalid_prefix");
        }
    }
}
