//! Lookups: the batch request, and the reputation answer for one object.

use crate::time::rfc3339;
use std::borrow::Cow;

use repnet_model as model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{BodyError, parse_body};

/// One object to look up: exactly one of the fields is set.
///
/// Deserialised by hand (below) so that only a JSON object is accepted: serde's derived
/// implementation would also take an array, and `["…"]` must not quietly mean a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct LookupItem<'a> {
    /// A file: one MD5, SHA-1 or SHA-256 hash (hexadecimal in any case), or an object with
    /// several hashes of the same file (`{"sha256": "…", "md5": "…", "sha1": "…"}`), which is
    /// answered as one file from the records under all of them.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef<'a>>,
    /// A domain name; internationalised names are accepted and converted to punycode.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub domain: Option<Cow<'a, str>>,
    /// An IPv4 or IPv6 address.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Cow<'a, str>>,
    /// The SHA-256 thumbprint of a code-signing certificate.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub certificate: Option<Cow<'a, str>>,
    /// A URL (a scheme is optional), or a URL expression such as `evil.example/login/`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub url: Option<Cow<'a, str>>,
}

/// A file in a lookup item: one hash, or several hashes of the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FileRef<'a> {
    /// An MD5, SHA-1 or SHA-256, told apart by length.
    #[schema(value_type = String)]
    Hash(#[serde(borrow)] Cow<'a, str>),
    /// Several hashes of one file: at least one.
    Hashes(#[serde(borrow)] FileHashesText<'a>),
}

/// Several hashes of one file, as text. Each is checked against its own kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct FileHashesText<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub md5: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sha1: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sha256: Option<Cow<'a, str>>,
}

impl FileHashesText<'_> {
    /// The hashes, each checked against its kind; the error names the field at fault
    /// (`sha1`) and what is wrong with it.
    pub fn parse(&self) -> Result<model::FileHashes, (&'static str, model::ParseError)> {
        let mut hashes = model::FileHashes::default();
        if let Some(text) = &self.md5 {
            hashes.md5 = Some(model::Md5::from_hex(text).map_err(|e| ("md5", e))?);
        }
        if let Some(text) = &self.sha1 {
            hashes.sha1 = Some(model::Sha1::from_hex(text).map_err(|e| ("sha1", e))?);
        }
        if let Some(text) = &self.sha256 {
            hashes.sha256 = Some(model::Sha256::from_hex(text).map_err(|e| ("sha256", e))?);
        }
        if hashes.is_empty() {
            return Err((
                "",
                model::ParseError::Hash(
                    "names no hash: give at least one of md5, sha1 and sha256".to_owned(),
                ),
            ));
        }
        Ok(hashes)
    }
}

impl FileHashesText<'static> {
    pub fn from_model(hashes: &model::FileHashes) -> FileHashesText<'static> {
        FileHashesText {
            md5: hashes.md5.map(|h| Cow::Owned(h.to_string())),
            sha1: hashes.sha1.map(|h| Cow::Owned(h.to_string())),
            sha256: hashes.sha256.map(|h| Cow::Owned(h.to_string())),
        }
    }
}

/// What a [`LookupItem`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemTarget<'t> {
    /// One object of a kind, as text.
    Object(model::ObjectKind, &'t str),
    /// One file by several of its hashes.
    File(&'t FileHashesText<'t>),
}

/// Why a lookup item names no single object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("names no object: give exactly one of file, domain, ip, certificate or url")]
    NoObject,
    #[error("names more than one object: give exactly one of file, domain, ip, certificate or url")]
    SeveralObjects,
}

impl<'a> LookupItem<'a> {
    pub fn new(kind: model::ObjectKind, value: impl Into<Cow<'a, str>>) -> LookupItem<'a> {
        let value = Some(value.into());
        match kind {
            model::ObjectKind::File => LookupItem {
                file: value.map(FileRef::Hash),
                ..LookupItem::default()
            },
            model::ObjectKind::Domain => LookupItem {
                domain: value,
                ..LookupItem::default()
            },
            model::ObjectKind::Ip => LookupItem {
                ip: value,
                ..LookupItem::default()
            },
            model::ObjectKind::Certificate => LookupItem {
                certificate: value,
                ..LookupItem::default()
            },
            model::ObjectKind::Url => LookupItem {
                url: value,
                ..LookupItem::default()
            },
        }
    }

    /// A file by every hash of it that is known (one hash is sent as a plain string).
    pub fn file(hashes: &model::FileHashes) -> LookupItem<'static> {
        let file = match (hashes.md5, hashes.sha1, hashes.sha256) {
            (Some(hash), None, None) => FileRef::Hash(Cow::Owned(hash.to_string())),
            (None, Some(hash), None) => FileRef::Hash(Cow::Owned(hash.to_string())),
            (None, None, Some(hash)) => FileRef::Hash(Cow::Owned(hash.to_string())),
            _ => FileRef::Hashes(FileHashesText::from_model(hashes)),
        };
        LookupItem {
            file: Some(file),
            ..LookupItem::default()
        }
    }

    /// The one object named, or what is wrong with the item.
    pub fn target(&self) -> Result<ItemTarget<'_>, TargetError> {
        let file = self.file.as_ref().map(|file| match file {
            FileRef::Hash(text) => ItemTarget::Object(model::ObjectKind::File, text),
            FileRef::Hashes(hashes) => ItemTarget::File(hashes),
        });
        let others = [
            (model::ObjectKind::Domain, &self.domain),
            (model::ObjectKind::Ip, &self.ip),
            (model::ObjectKind::Certificate, &self.certificate),
            (model::ObjectKind::Url, &self.url),
        ];
        let mut set = file.into_iter().chain(
            others
                .iter()
                .filter_map(|(kind, value)| Some(ItemTarget::Object(*kind, value.as_deref()?))),
        );
        match (set.next(), set.next()) {
            (Some(target), None) => Ok(target),
            (None, _) => Err(TargetError::NoObject),
            (Some(_), Some(_)) => Err(TargetError::SeveralObjects),
        }
    }
}

const ITEM_FIELDS: &[&str] = &["file", "domain", "ip", "certificate", "url"];
const HASH_FIELDS: &[&str] = &["md5", "sha1", "sha256"];

impl<'de: 'a, 'a> Deserialize<'de> for LookupItem<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ItemVisitor<'a> {
            type Value = LookupItem<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"an object such as {"file": "<hash>"}"#)
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut item = LookupItem::default();
                while let Some(field) = map.next_key::<Cow<'de, str>>()? {
                    let duplicate =
                        || serde::de::Error::custom(format_args!("duplicate field `{field}`"));
                    if field == "file" {
                        if item.file.is_some() {
                            return Err(duplicate());
                        }
                        item.file = Some(map.next_value::<FileRef<'de>>()?);
                        continue;
                    }
                    let slot = match &*field {
                        "domain" => &mut item.domain,
                        "ip" => &mut item.ip,
                        "certificate" => &mut item.certificate,
                        "url" => &mut item.url,
                        other => return Err(serde::de::Error::unknown_field(other, ITEM_FIELDS)),
                    };
                    if slot.is_some() {
                        return Err(duplicate());
                    }
                    *slot = Some(map.next_value::<Cow<'de, str>>()?);
                }
                Ok(item)
            }
        }

        deserializer.deserialize_map(ItemVisitor(std::marker::PhantomData))
    }
}

/// A string is one hash; an object is several hashes of one file. Hand-written rather than
/// `#[serde(untagged)]`, whose error for a bad value ("did not match any variant") does not
/// say what was expected.
impl<'de: 'a, 'a> Deserialize<'de> for FileRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FileVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for FileVisitor<'a> {
            type Value = FileRef<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a hash, or an object such as {"sha256": "…", "md5": "…"}"#)
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(FileRef::Hash(Cow::Borrowed(text)))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(FileRef::Hash(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(FileRef::Hash(Cow::Owned(text)))
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut hashes = FileHashesText::default();
                while let Some(field) = map.next_key::<Cow<'de, str>>()? {
                    let slot = match &*field {
                        "md5" => &mut hashes.md5,
                        "sha1" => &mut hashes.sha1,
                        "sha256" => &mut hashes.sha256,
                        other => return Err(serde::de::Error::unknown_field(other, HASH_FIELDS)),
                    };
                    if slot.is_some() {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate field `{field}`"
                        )));
                    }
                    *slot = Some(map.next_value::<Cow<'de, str>>()?);
                }
                Ok(FileRef::Hashes(hashes))
            }
        }

        deserializer.deserialize_any(FileVisitor(std::marker::PhantomData))
    }
}

/// `POST /v1/lookup`: up to 10,000 objects, answered in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest<'a> {
    #[serde(borrow)]
    pub items: Vec<LookupItem<'a>>,
}

/// Parses a batch request body.
pub fn parse_lookup_request(body: &[u8]) -> Result<LookupRequest<'_>, BodyError> {
    parse_body(body)
}

/// The answer to `POST /v1/lookup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    /// One result per item, in the order of the request: a reputation, or (from a proxy whose
    /// upstream cannot answer an item it has not cached) an error for that item alone.
    pub results: Vec<LookupResult>,
}

/// One item's result in a batch answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
// Nearly every result is a reputation: boxing it would cost an allocation per item to save
// room in the rare error.
#[allow(clippy::large_enum_variant)]
pub enum LookupResult {
    Reputation(Reputation),
    /// The item could not be answered now (`upstream_unavailable`, `upstream_refused`); the
    /// others in the batch were. A client treats it as not checked (offline).
    Unavailable(crate::ErrorBody),
}

impl LookupResult {
    pub fn reputation(&self) -> Option<&Reputation> {
        match self {
            LookupResult::Reputation(reputation) => Some(reputation),
            LookupResult::Unavailable(_) => None,
        }
    }
}

/// One line of `repnet lookup --format json`: the argument as the user gave it, and the
/// answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupOutput {
    /// The command-line argument (a file path, a hash, a domain, an IP address).
    pub input: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub reputation: Option<Reputation>,
    /// Why the argument could not be looked up (no such file, not a hash, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A verdict on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Trusted,
    Riskware,
    Untrusted,
    Unknown,
}

impl From<model::Verdict> for Verdict {
    fn from(verdict: model::Verdict) -> Self {
        match verdict {
            model::Verdict::Trusted => Verdict::Trusted,
            model::Verdict::Riskware => Verdict::Riskware,
            model::Verdict::Untrusted => Verdict::Untrusted,
            model::Verdict::Unknown => Verdict::Unknown,
        }
    }
}

impl From<Verdict> for model::Verdict {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Trusted => model::Verdict::Trusted,
            Verdict::Riskware => model::Verdict::Riskware,
            Verdict::Untrusted => model::Verdict::Untrusted,
            Verdict::Unknown => model::Verdict::Unknown,
        }
    }
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Trusted => "trusted",
            Verdict::Riskware => "riskware",
            Verdict::Untrusted => "untrusted",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Every hash of a file the network knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hashes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The object an answer is about, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObjectRef {
    /// `file`, `domain`, `ip` or `certificate`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The canonical value: lower-case hex, punycode domain, standard IP text.
    pub value: String,
    /// For files: every hash of the file the network knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Hashes>,
}

impl ObjectRef {
    pub fn from_model(object: &model::Object, hashes: &model::FileHashes) -> ObjectRef {
        let hashes = match object {
            model::Object::File(hash) => Some({
                let mut hashes = *hashes;
                hashes.insert(*hash);
                hashes
            })
            .map(|hashes| Hashes {
                md5: hashes.md5.map(|h| h.to_string()),
                sha1: hashes.sha1.map(|h| h.to_string()),
                sha256: hashes.sha256.map(|h| h.to_string()),
            }),
            _ => None,
        };
        ObjectRef {
            kind: object.kind().as_str().to_owned(),
            value: object.to_string(),
            hashes,
        }
    }
}

/// What the network says about one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reputation {
    pub object: ObjectRef,
    pub verdict: Verdict,
    /// The threat name, e.g. `EICAR-Test-File`; null when there is none.
    pub threat: Option<String>,
    /// Categories such as `malware`, `phishing`, `c2`.
    pub categories: Vec<String>,
    /// 0–100.
    pub confidence: u8,
    /// The deciding source (`local`, `feed:<name>`, `engine`, `upstream`, `builtin`); null when unknown.
    pub source: Option<String>,
    /// RFC 3339, UTC; null when unknown.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Approximate number of distinct devices that reported the object.
    pub prevalence: u64,
    /// Seconds a client or proxy may cache this answer (from a proxy's cache: what is left
    /// of it).
    pub ttl: u32,
    /// True for an answer a proxy served past its lifetime because its upstream could not be
    /// asked: it may be out of date. Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// URL, domain and IP answers: the expression whose records decided (the most specific
    /// one with any), or null when none matched. Absent for files and certificates.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    #[schema(value_type = Option<String>)]
    pub matched: Option<Option<String>>,
    /// With `?explain=true`: every contributing source record and why the verdict won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explanation>,
}

/// Why the answer is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The precedence rule, in one sentence.
    pub rule: String,
    /// URL, domain and IP answers: the rule over the matched expressions, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression_rule: Option<String>,
    /// URL, domain and IP answers: why the `matched` expression decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression_reason: Option<String>,
    /// Every source record, the deciding one first (for URLs, domains and IPs: those of
    /// every matched expression, the deciding expression's first).
    pub records: Vec<ExplainedRecord>,
}

/// One source record, as `?explain=true` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExplainedRecord {
    /// URL, domain and IP answers: the expression the record is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    pub source: String,
    pub verdict: Verdict,
    pub threat: Option<String>,
    pub categories: Vec<String>,
    pub confidence: u8,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// True for the record that decided the answer.
    pub decisive: bool,
    /// For the deciding record: why it won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn categories(categories: model::Categories) -> Vec<String> {
    categories.iter().map(|c| c.as_str().to_owned()).collect()
}

/// Tells a field that is present but null (`Some(None)`) from an absent one (`None`).
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Whether answers about objects of `kind` say which expression matched.
pub(crate) fn reports_match(kind: model::ObjectKind) -> bool {
    matches!(
        kind,
        model::ObjectKind::Url | model::ObjectKind::Domain | model::ObjectKind::Ip
    )
}

impl Reputation {
    pub fn from_model(reputation: &model::Reputation, explain: bool) -> Reputation {
        let explain = explain.then(|| explain_records(reputation));
        let mut object = ObjectRef::from_model(&reputation.object, &reputation.hashes);
        if let Some(url) = &reputation.url {
            object.value = url.to_string();
        }
        Reputation {
            object,
            verdict: reputation.verdict.into(),
            threat: reputation.threat.as_ref().map(|t| t.as_str().to_owned()),
            categories: categories(reputation.categories),
            confidence: reputation.confidence.get(),
            source: reputation.source.as_ref().map(ToString::to_string),
            first_seen: reputation.first_seen.and_then(rfc3339),
            last_seen: reputation.last_seen.and_then(rfc3339),
            prevalence: reputation.prevalence,
            ttl: reputation.ttl,
            stale: false,
            matched: reports_match(reputation.object.kind())
                .then(|| reputation.matched.as_ref().map(|m| m.as_str().to_owned())),
            explain,
        }
    }
}

/// What `?explain=true` adds to an answer: every record, the deciding one first with why it
/// decided, and the rules applied.
pub fn explain_records(reputation: &model::Reputation) -> Explanation {
    let winner = reputation.decision.map(|d| d.winner);
    let explained = |record: &model::SourceRecord,
                     expression: Option<&model::Expression>,
                     decisive: bool| ExplainedRecord {
        expression: expression.map(|e| e.as_str().to_owned()),
        source: record.source.to_string(),
        verdict: record.verdict.into(),
        threat: record.threat.as_ref().map(|t| t.as_str().to_owned()),
        categories: categories(record.categories),
        confidence: record.confidence.get(),
        first_seen: rfc3339(record.first_seen),
        last_seen: rfc3339(record.last_seen),
        decisive,
        reason: reputation
            .decision
            .filter(|_| decisive)
            .map(|d| d.reason.to_string()),
    };
    let mut records: Vec<ExplainedRecord> = reputation
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            explained(record, reputation.matched.as_ref(), Some(index) == winner)
        })
        .collect();
    // The deciding record first, the rest in a stable order.
    records.sort_by(|a, b| {
        b.decisive
            .cmp(&a.decisive)
            .then_with(|| a.source.cmp(&b.source))
    });
    // Then what the other matched expressions said, most specific first.
    for other in &reputation.also_matched {
        let mut theirs: Vec<ExplainedRecord> = other
            .records
            .iter()
            .map(|record| explained(record, Some(&other.expression), false))
            .collect();
        theirs.sort_by(|a, b| a.source.cmp(&b.source));
        records.extend(theirs);
    }
    let by_expression = reports_match(reputation.object.kind());
    Explanation {
        rule: model::PRECEDENCE_RULE.to_owned(),
        expression_rule: by_expression.then(|| model::EXPRESSION_RULE.to_owned()),
        expression_reason: reputation.expression_reason.map(|r| r.to_string()),
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{
        Confidence, FileHashes, Object, ObjectKind, Source, SourceRecord, Timestamp, TtlPolicy,
    };

    #[test]
    fn items_name_exactly_one_object() {
        let request = parse_lookup_request(
            br#"{"items":[{"file":"ab"},{"domain":"x.example"},{},{"ip":"1.2.3.4","domain":"y"}]}"#,
        )
        .unwrap();
        assert_eq!(
            request.items[0].target().unwrap(),
            ItemTarget::Object(ObjectKind::File, "ab")
        );
        assert_eq!(
            request.items[1].target().unwrap(),
            ItemTarget::Object(ObjectKind::Domain, "x.example")
        );
        assert!(
            request.items[2]
                .target()
                .unwrap_err()
                .to_string()
                .contains("names no object")
        );
        assert!(
            request.items[3]
                .target()
                .unwrap_err()
                .to_string()
                .contains("more than one")
        );
    }

    #[test]
    fn a_file_item_carries_one_hash_or_several() {
        let sha256 = "ab".repeat(32);
        let md5 = "cd".repeat(16);
        let body = format!(
            r#"{{"items":[{{"file":{{"sha256":"{sha256}","md5":"{md5}"}}}},{{"file":"{md5}"}}]}}"#
        );
        let request = parse_lookup_request(body.as_bytes()).unwrap();
        let ItemTarget::File(hashes) = request.items[0].target().unwrap() else {
            panic!("not a file by several hashes");
        };
        let parsed = hashes.parse().unwrap();
        assert_eq!(parsed.sha256.unwrap().to_string(), sha256);
        assert_eq!(parsed.md5.unwrap().to_string(), md5);
        assert_eq!(parsed.sha1, None);
        assert_eq!(
            request.items[1].target().unwrap(),
            ItemTarget::Object(ObjectKind::File, &md5)
        );
        // What the client sends reads back the same.
        let item = LookupItem::file(&parsed);
        let again = LookupRequest { items: vec![item] };
        let json = serde_json::to_string(&again).unwrap();
        assert_eq!(parse_lookup_request(json.as_bytes()).unwrap(), again);

        // Each hash is checked against its own kind, and the field is named.
        let wrong = format!(r#"{{"items":[{{"file":{{"sha1":"{md5}"}}}}]}}"#);
        let request = parse_lookup_request(wrong.as_bytes()).unwrap();
        let ItemTarget::File(hashes) = request.items[0].target().unwrap() else {
            panic!("not a file by several hashes");
        };
        let (field, error) = hashes.parse().unwrap_err();
        assert_eq!(field, "sha1");
        assert!(error.to_string().contains("40 hexadecimal"), "{error}");
        let empty = parse_lookup_request(br#"{"items":[{"file":{}}]}"#).unwrap();
        let ItemTarget::File(hashes) = empty.items[0].target().unwrap() else {
            panic!("not a file by several hashes");
        };
        assert!(
            hashes
                .parse()
                .unwrap_err()
                .1
                .to_string()
                .contains("at least one")
        );
        for (body, message) in [
            (
                &br#"{"items":[{"file":{"crc32":"00"}}]}"#[..],
                "unknown field `crc32`",
            ),
            (br#"{"items":[{"file":5}]}"#, "items[0].file: invalid type"),
            (
                br#"{"items":[{"file":["ab"]}]}"#,
                "items[0].file: invalid type",
            ),
        ] {
            let error = parse_lookup_request(body).unwrap_err();
            assert!(error.message.contains(message), "{}", error.message);
        }
    }

    #[test]
    fn body_errors_name_the_path_and_the_kind_of_problem() {
        let cases: [(&[u8], &str, &str); 7] = [
            (b"{", "invalid_json", "not valid JSON"),
            (b"{\"items\":[]} x", "invalid_json", "not valid JSON"),
            (
                br#"{"items":[{"hash":"x"}]}"#,
                "invalid_request",
                "items[0]: unknown field `hash`",
            ),
            (
                br#"{"items":[{"file":5}]}"#,
                "invalid_request",
                "items[0].file: invalid type",
            ),
            (
                br#"{"things":[]}"#,
                "invalid_request",
                "unknown field `things`",
            ),
            (br#"[]"#, "invalid_request", "must be a JSON object"),
            (
                br#"{"items":[["x"]]}"#,
                "invalid_request",
                "items[0]: invalid type: sequence",
            ),
        ];
        for (body, code, message) in cases {
            let error = parse_lookup_request(body).unwrap_err();
            assert_eq!(
                error.code.as_str(),
                code,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(
                error.message.contains(message),
                "{}: {}",
                String::from_utf8_lossy(body),
                error.message
            );
        }
    }

    #[test]
    fn escaped_strings_are_accepted() {
        let request =
            parse_lookup_request(br#"{"items":[{"domain":"b\u00fccher.example"}]}"#).unwrap();
        assert_eq!(
            request.items[0].target().unwrap(),
            ItemTarget::Object(ObjectKind::Domain, "bücher.example")
        );
    }

    #[test]
    fn a_reputation_with_explanation_has_a_stable_shape() {
        let object = Object::parse(ObjectKind::File, &"ab".repeat(32)).unwrap();
        let mut feed = SourceRecord::new(
            Source::feed("a").unwrap(),
            model::Verdict::Untrusted,
            Confidence::new(90).unwrap(),
            Timestamp(1_800_000_000),
        );
        feed.threat = Some(model::ThreatName::new("Trojan.Test").unwrap());
        feed.categories = [model::Category::Malware].into_iter().collect();
        let local = SourceRecord::new(
            Source::Local,
            model::Verdict::Trusted,
            Confidence::MAX,
            Timestamp(1_800_000_100),
        );
        let reputation = model::Reputation::assess(
            object,
            FileHashes::default(),
            vec![feed, local],
            3,
            &TtlPolicy::default(),
        );
        insta::assert_json_snapshot!(Reputation::from_model(&reputation, true));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(Timestamp(0)).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp(1_795_000_000)).unwrap(),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(rfc3339(Timestamp(u64::MAX)), None);
    }
}
