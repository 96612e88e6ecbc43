//! Validated names: threat names (from feeds and administrators) and feed names (sources).

use std::fmt;
use std::sync::Arc;

use crate::ParseError;

/// A threat name such as `EICAR-Test-File` or `Win.Trojan.Agent-123`.
///
/// Printable text of 1 to 200 characters without control characters, surrounding whitespace
/// removed. Shared (`Arc`) because the same few thousand names are attached to millions of
/// records and are cloned into every answer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreatName(Arc<str>);

impl ThreatName {
    pub const MAX_CHARS: usize = 200;

    pub fn new(text: &str) -> Result<ThreatName, ParseError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ParseError::Name(
                "a threat name cannot be empty (use null for no threat)".to_owned(),
            ));
        }
        let chars = text.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(ParseError::Name(format!(
                "a threat name is at most {} characters; got {chars}",
                Self::MAX_CHARS
            )));
        }
        if let Some(bad) = text.chars().find(|&c| is_control_or_bidi(c)) {
            return Err(ParseError::Name(format!(
                "a threat name cannot contain control or text-direction characters; found {bad:?}"
            )));
        }
        Ok(ThreatName(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ThreatName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ThreatName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The name of a feed, as in the source `feed:<name>`: 1 to 64 characters from `a-z`, `0-9`,
/// `.`, `_` and `-`, starting with a letter or digit. Upper case is folded to lower case so
/// that `--source URLhaus` and `--source urlhaus` are the same source.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeedName(Arc<str>);

impl FeedName {
    pub const MAX_CHARS: usize = 64;

    pub fn new(text: &str) -> Result<FeedName, ParseError> {
        let name = text.trim().to_ascii_lowercase();
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        let starts_well = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if name.is_empty()
            || name.len() > Self::MAX_CHARS
            || !starts_well
            || !name.chars().all(valid_char)
        {
            return Err(ParseError::Source(format!(
                "a feed name is 1 to {} characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit; got {text:?}",
                Self::MAX_CHARS
            )));
        }
        Ok(FeedName(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FeedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FeedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Characters that text shown to people must not hold: control characters, and the
/// bidirectional controls that make text read otherwise than it is stored (U+202E turns
/// `exe.txt` into what looks like `txt.exe`).
pub fn is_control_or_bidi(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threat_names() {
        assert_eq!(
            ThreatName::new("  EICAR-Test-File ").unwrap().as_str(),
            "EICAR-Test-File"
        );
        assert!(ThreatName::new("").is_err());
        assert!(ThreatName::new("   ").is_err());
        assert!(ThreatName::new("a\nb").is_err());
        assert!(ThreatName::new(&"x".repeat(201)).is_err());
        assert!(ThreatName::new(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn feed_names() {
        assert_eq!(FeedName::new("URLhaus").unwrap().as_str(), "urlhaus");
        assert_eq!(
            FeedName::new("my-list_2.v1").unwrap().as_str(),
            "my-list_2.v1"
        );
        for bad in ["", "-x", "a b", "a:b", "ü", &"a".repeat(65)] {
            assert!(FeedName::new(bad).is_err(), "{bad:?}");
        }
    }
}
