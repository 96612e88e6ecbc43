//! The JSON feeds: STIX 2.1 bundles (indicators with simple patterns) and MISP warninglists.
//! Both are read as a stream: a bundle's objects one at a time, a list's values one at a
//! time, so memory does not grow with the file.

use std::fmt;

use repnet_model::{
    Category, Domain, Expression, FileHash, FileHashes, Md5, Object, Sha1, Sha256, Verdict,
    canonical_ip,
};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::entry;
use crate::input::Opened;
use crate::text::parse_date;
use crate::{Entry, FeedError, Sink};

/// Reads a JSON document with `visitor`. A sink error stops the visitor with a stand-in
/// serde error and is left in `failure`, which wins over the stand-in.
fn read_json<'de, V>(
    opened: &mut Opened,
    visitor: V,
    what: &str,
    failure: impl FnOnce() -> Option<FeedError>,
) -> Result<(), FeedError>
where
    V: Visitor<'de, Value = ()>,
{
    let name = opened.name.clone();
    let reader = opened.reader();
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result = serde::Deserializer::deserialize_map(&mut deserializer, visitor);
    if let Some(error) = failure() {
        return Err(error);
    }
    result.map_err(|error| FeedError::Format {
        path: name,
        message: format!("is not {what}: {error}"),
    })
}

// ----- STIX 2.1 ---------------------------------------------------------------------------

pub(crate) fn stix(opened: &mut Opened, sink: &mut Sink<'_>) -> Result<(), FeedError> {
    let failure = std::cell::Cell::new(None);
    let visitor = BundleVisitor {
        sink,
        failure: &failure,
    };
    read_json(opened, visitor, "a STIX 2.1 bundle", || failure.take())
}

struct BundleVisitor<'s, 'a> {
    sink: &'s mut Sink<'a>,
    failure: &'s std::cell::Cell<Option<FeedError>>,
}

impl<'de> Visitor<'de> for BundleVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a STIX bundle: an object with `objects`")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "objects" {
                map.next_value_seed(ObjectsSeed {
                    sink: &mut *self.sink,
                    failure: self.failure,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct ObjectsSeed<'s, 'a> {
    sink: &'s mut Sink<'a>,
    failure: &'s std::cell::Cell<Option<FeedError>>,
}

impl<'de> DeserializeSeed<'de> for ObjectsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ObjectsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of STIX objects")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let mut index = 0u64;
        while let Some(object) = seq.next_element::<serde_json::Value>()? {
            index += 1;
            if let Err(error) = stix_object(index, &object, self.sink) {
                self.failure.set(Some(error));
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

fn stix_object(
    index: u64,
    object: &serde_json::Value,
    sink: &mut Sink<'_>,
) -> Result<(), FeedError> {
    if object["type"] != "indicator" {
        return Ok(());
    }
    sink.row();
    let id = object["id"].as_str().unwrap_or("?");
    if object["revoked"] == true {
        sink.bad(
            index,
            "revoked indicator",
            format!("indicator {id} is revoked"),
        );
        return Ok(());
    }
    let pattern_type = object["pattern_type"].as_str().unwrap_or("stix");
    if pattern_type != "stix" {
        sink.bad(
            index,
            "unsupported pattern",
            format!("indicator {id}: pattern type {pattern_type:?} is not stix"),
        );
        return Ok(());
    }
    let Some(pattern) = object["pattern"].as_str() else {
        sink.bad(
            index,
            "unsupported pattern",
            format!("indicator {id} has no pattern"),
        );
        return Ok(());
    };
    let benign = object["indicator_types"]
        .as_array()
        .is_some_and(|types| types.iter().any(|t| t == "benign"));
    let confidence = object["confidence"]
        .as_u64()
        .map_or(80, |c| c.min(100) as u8);
    let first_seen = object["valid_from"].as_str().and_then(parse_date);
    let objects = match parse_pattern(pattern) {
        Ok(objects) => objects,
        Err(reason) => {
            sink.bad(
                index,
                "unsupported pattern",
                format!("indicator {id}: {reason}"),
            );
            return Ok(());
        }
    };
    for (position, (object, hashes)) in objects.into_iter().enumerate() {
        let (verdict, categories): (Verdict, &[Category]) = if benign {
            (Verdict::Trusted, &[])
        } else {
            (Verdict::Untrusted, &[Category::Malware])
        };
        let mut entry: Entry = entry(object, verdict, confidence, categories);
        entry.hashes = hashes;
        entry.first_seen = first_seen;
        // One indicator is one row, whatever it names.
        if position == 0 {
            sink.entry(entry)?;
        } else {
            sink.also(entry)?;
        }
    }
    Ok(())
}

/// One `path = 'value'` comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    path: String,
    value: String,
}

/// Splits `text` at top-level occurrences of ` word ` (outside quotes and brackets).
fn split_top(text: &str, word: &str) -> Vec<String> {
    let separator = format!(" {word} ");
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' if quoted => {
                current.push(c);
                if let Some((_, next)) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            '\'' => quoted = !quoted,
            '[' | '(' if !quoted => depth += 1,
            ']' | ')' if !quoted => depth -= 1,
            _ => {}
        }
        if !quoted && depth == 0 && text[index..].starts_with(&separator) {
            parts.push(std::mem::take(&mut current));
            for _ in 0..separator.len() - 1 {
                chars.next();
            }
            continue;
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// Why a STIX pattern names no usable object.
#[derive(Debug, thiserror::Error)]
enum PatternError {
    #[error("{0:?} is not a `path = 'value'` comparison")]
    NotAComparison(String),
    #[error("only = comparisons are supported: {0:?}")]
    Operator(String),
    #[error("the value of {0:?} is not a quoted string")]
    Unquoted(String),
    #[error("the pattern names nothing")]
    Empty,
    #[error("hash algorithm {0:?} is not MD5, SHA-1 or SHA-256")]
    Algorithm(String),
    #[error("{path} {value:?}: {error}")]
    Value {
        path: String,
        value: String,
        error: repnet_model::ParseError,
    },
    #[error("{0:?} is not a file hash, URL, domain or IP address")]
    Object(String),
    #[error("{0:?} is a range; only single addresses are supported")]
    Range(String),
}

fn parse_comparison(text: &str) -> Result<Comparison, PatternError> {
    let text = text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let Some((path, value)) = text.split_once('=') else {
        return Err(PatternError::NotAComparison(text.to_owned()));
    };
    if path.ends_with('!') || path.ends_with('<') || path.ends_with('>') {
        return Err(PatternError::Operator(text.to_owned()));
    }
    let value = value.trim();
    let inner = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(|| PatternError::Unquoted(text.to_owned()))?;
    let mut unescaped = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            unescaped.extend(chars.next());
        } else {
            unescaped.push(c);
        }
    }
    Ok(Comparison {
        path: path.trim().to_ascii_lowercase().replace(['\'', '"'], ""),
        value: unescaped,
    })
}

/// The objects a STIX pattern names. Comparisons joined by AND inside one observation that
/// all give hashes of a file describe one file with several hashes; every other comparison
/// names an object of its own.
fn parse_pattern(pattern: &str) -> Result<Vec<(Object, FileHashes)>, PatternError> {
    let mut objects = Vec::new();
    for observation in split_top(pattern.trim(), "OR") {
        let observation = observation.trim();
        let inner = observation
            .strip_prefix('[')
            .and_then(|o| o.strip_suffix(']'))
            .unwrap_or(observation);
        for alternative in split_top(inner, "OR") {
            let comparisons = split_top(&alternative, "AND")
                .iter()
                .map(|c| parse_comparison(c))
                .collect::<Result<Vec<_>, _>>()?;
            let all_hashes = comparisons
                .iter()
                .all(|c| c.path.starts_with("file:hashes."));
            if all_hashes && comparisons.len() > 1 {
                let mut hashes = FileHashes::default();
                for comparison in &comparisons {
                    hashes.insert(file_hash(comparison)?);
                }
                let primary = hashes
                    .sha256
                    .map(FileHash::Sha256)
                    .or(hashes.sha1.map(FileHash::Sha1))
                    .or(hashes.md5.map(FileHash::Md5))
                    .ok_or(PatternError::Empty)?;
                objects.push((Object::File(primary), hashes));
            } else {
                for comparison in &comparisons {
                    objects.push((comparison_object(comparison)?, FileHashes::default()));
                }
            }
        }
    }
    if objects.is_empty() {
        return Err(PatternError::Empty);
    }
    Ok(objects)
}

fn file_hash(comparison: &Comparison) -> Result<FileHash, PatternError> {
    let algorithm = comparison
        .path
        .trim_start_matches("file:hashes.")
        .replace('-', "");
    let value = comparison.value.as_str();
    let parsed = match algorithm.as_str() {
        "sha256" => Sha256::from_hex(value).map(FileHash::Sha256),
        "sha1" => Sha1::from_hex(value).map(FileHash::Sha1),
        "md5" => Md5::from_hex(value).map(FileHash::Md5),
        other => {
            return Err(PatternError::Algorithm(other.to_owned()));
        }
    };
    parsed.map_err(|error| PatternError::Value {
        path: comparison.path.clone(),
        value: value.to_owned(),
        error,
    })
}

fn comparison_object(comparison: &Comparison) -> Result<Object, PatternError> {
    let value = comparison.value.as_str();
    let object = match comparison.path.as_str() {
        path if path.starts_with("file:hashes.") => Object::File(file_hash(comparison)?),
        "url:value" => {
            Object::Url(
                Expression::parse(value).map_err(|error| PatternError::Value {
                    path: comparison.path.clone(),
                    value: value.to_owned(),
                    error,
                })?,
            )
        }
        "domain-name:value" => {
            Object::Domain(Domain::new(value).map_err(|error| PatternError::Value {
                path: comparison.path.clone(),
                value: value.to_owned(),
                error,
            })?)
        }
        "ipv4-addr:value" | "ipv6-addr:value" => Object::Ip(single_address(value)?),
        other => {
            return Err(PatternError::Object(other.to_owned()));
        }
    };
    Ok(object)
}

/// An IP address, or a CIDR block of one address.
fn single_address(value: &str) -> Result<std::net::IpAddr, PatternError> {
    let (address, prefix) = match value.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (value, None),
    };
    let ip = canonical_ip(address).map_err(|error| PatternError::Value {
        path: "ip-addr:value".to_owned(),
        value: value.to_owned(),
        error,
    })?;
    let full = if ip.is_ipv4() { "32" } else { "128" };
    match prefix {
        None => Ok(ip),
        Some(prefix) if prefix == full => Ok(ip),
        Some(_) => Err(PatternError::Range(value.to_owned())),
    }
}

// ----- MISP warninglists ------------------------------------------------------------------

pub(crate) fn misp(opened: &mut Opened, sink: &mut Sink<'_>) -> Result<(), FeedError> {
    let failure = std::cell::Cell::new(None);
    let mut state = MispState::default();
    let visitor = MispVisitor {
        sink: &mut *sink,
        failure: &failure,
        state: &mut state,
    };
    read_json(opened, visitor, "a MISP warninglist", || failure.take())?;
    // Values that came before the list's type: judged now.
    for (index, value) in std::mem::take(&mut state.pending).into_iter().enumerate() {
        misp_value(index as u64 + 1, &value, &state, sink)?;
    }
    Ok(())
}

#[derive(Default)]
struct MispState {
    kind: Option<String>,
    attributes: Vec<String>,
    /// Values seen before `type`.
    pending: Vec<String>,
}

struct MispVisitor<'s, 'a> {
    sink: &'s mut Sink<'a>,
    failure: &'s std::cell::Cell<Option<FeedError>>,
    state: &'s mut MispState,
}

impl<'de> Visitor<'de> for MispVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MISP warninglist: an object with `list`")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => self.state.kind = Some(map.next_value()?),
                "matching_attributes" => self.state.attributes = map.next_value()?,
                "list" => map.next_value_seed(ListSeed {
                    sink: &mut *self.sink,
                    failure: self.failure,
                    state: &mut *self.state,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ListSeed<'s, 'a> {
    sink: &'s mut Sink<'a>,
    failure: &'s std::cell::Cell<Option<FeedError>>,
    state: &'s mut MispState,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let mut index = 0u64;
        while let Some(value) = seq.next_element::<String>()? {
            index += 1;
            if self.state.kind.is_none() {
                self.state.pending.push(value);
                continue;
            }
            if let Err(error) = misp_value(index, &value, self.state, self.sink) {
                self.failure.set(Some(error));
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

fn misp_value(
    index: u64,
    value: &str,
    state: &MispState,
    sink: &mut Sink<'_>,
) -> Result<(), FeedError> {
    sink.row();
    let value = value.trim();
    let kind = state.kind.as_deref().unwrap_or("string");
    let wants = |attribute: &str| state.attributes.iter().any(|a| a.contains(attribute));
    let object = match kind {
        "substring" | "regex" => {
            sink.bad(
                index,
                "not an exact value",
                format!("{value:?}: {kind} lists cannot be matched exactly"),
            );
            return Ok(());
        }
        "cidr" => single_address(value)
            .map(Object::Ip)
            .map_err(|e| e.to_string()),
        "hostname" => Domain::new(value)
            .map(Object::Domain)
            .or_else(|_| canonical_ip(value).map(Object::Ip))
            .map_err(|e| e.to_string()),
        _ => {
            if (wants("md5")
                || wants("sha1")
                || wants("sha256")
                || matches!(value.len(), 32 | 40 | 64))
                && let Ok(hash) = FileHash::from_hex(value)
            {
                Ok(Object::File(hash))
            } else if let Ok(ip) = canonical_ip(value) {
                Ok(Object::Ip(ip))
            } else if value.contains('/') || wants("url") {
                Expression::parse(value)
                    .map(Object::Url)
                    .map_err(|e| e.to_string())
            } else {
                Domain::new(value)
                    .map(Object::Domain)
                    .map_err(|e| e.to_string())
            }
        }
    };
    match object {
        Ok(object) => {
            let categories: &[Category] = match object {
                Object::File(_) => &[Category::KnownSoftware],
                _ => &[],
            };
            sink.entry(entry(object, Verdict::Trusted, 70, categories))?;
        }
        Err(reason) => sink.bad(
            index,
            "invalid value",
            format!("list value {value:?}: {reason}"),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(pattern: &str) -> Vec<String> {
        parse_pattern(pattern)
            .unwrap()
            .into_iter()
            .map(|(object, hashes)| {
                format!(
                    "{}:{object}{}",
                    object.kind(),
                    if hashes.is_empty() { "" } else { "+" }
                )
            })
            .collect()
    }

    #[test]
    fn stix_patterns() {
        let sha256 = "f3b5f9646d69febc087df7d3e4e8b99e685988276dee66e3841086e2c78cca41";
        assert_eq!(
            objects(&format!("[file:hashes.'SHA-256' = '{sha256}']")),
            [format!("file:{sha256}")]
        );
        assert_eq!(
            objects("[url:value = 'http://demo-stix.example/4712/']"),
            ["url:demo-stix.example/4712/"]
        );
        assert_eq!(
            objects("[domain-name:value = 'Demo-APT.example']"),
            ["domain:demo-apt.example"]
        );
        assert_eq!(
            objects("[ipv4-addr:value = '192.0.2.1/32']"),
            ["ip:192.0.2.1"]
        );
        assert_eq!(
            objects("[domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']"),
            ["domain:a.example", "domain:b.example"]
        );
        assert_eq!(
            objects(&format!(
                "[file:hashes.MD5 = '{}' AND file:hashes.'SHA-256' = '{sha256}']",
                "a".repeat(32)
            )),
            [format!("file:{sha256}+")]
        );
        assert_eq!(
            objects("[url:value = 'http://x.example/it\\'s']"),
            ["url:x.example/it's"]
        );
        for bad in [
            "[ipv4-addr:value = '10.0.0.0/8']",
            "[file:name = 'evil.exe']",
            "[url:value MATCHES '^http']",
            "[file:hashes.'SHA-256' = 'nothex']",
            "[domain-name:value != 'x.example']",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }
}
