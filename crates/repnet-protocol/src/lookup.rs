//! Lookups: the batch request, and the reputation answer for one object.

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
    /// An MD5, SHA-1 or SHA-256 file hash, hexadecimal in any case.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub file: Option<Cow<'a, str>>,
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

impl<'a> LookupItem<'a> {
    pub fn new(kind: model::ObjectKind, value: impl Into<Cow<'a, str>>) -> LookupItem<'a> {
        let value = Some(value.into());
        match kind {
            model::ObjectKind::File => LookupItem {
                file: value,
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

    /// The kind and text of the one object named, or what is wrong with the item.
    pub fn target(&self) -> Result<(model::ObjectKind, &str), String> {
        let fields = [
            (model::ObjectKind::File, &self.file),
            (model::ObjectKind::Domain, &self.domain),
            (model::ObjectKind::Ip, &self.ip),
            (model::ObjectKind::Certificate, &self.certificate),
            (model::ObjectKind::Url, &self.url),
        ];
        let mut set = fields
            .iter()
            .filter_map(|(kind, value)| Some((*kind, value.as_deref()?)));
        match (set.next(), set.next()) {
            (Some(target), None) => Ok(target),
            (None, _) => Err(
                "names no object: give exactly one of file, domain, ip, certificate or url".to_owned(),
            ),
            (Some(_), Some(_)) => Err(
                "names more than one object: give exactly one of file, domain, ip, certificate or url"
                    .to_owned(),
            ),
        }
    }
}

const ITEM_FIELDS: &[&str] = &["file", "domain", "ip", "certificate", "url"];

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
                    let slot = match &*field {
                        "file" => &mut item.file,
                        "domain" => &mut item.domain,
                        "ip" => &mut item.ip,
                        "certificate" => &mut item.certificate,
                        "url" => &mut item.url,
                        other => return Err(serde::de::Error::unknown_field(other, ITEM_FIELDS)),
                    };
                    if slot.is_some() {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate field `{field}`"
                        )));
                    }
                    *slot = Some(map.next_value::<Cow<'de, str>>()?);
                }
                Ok(item)
            }
        }

        deserializer.deserialize_map(ItemVisitor(std::marker::PhantomData))
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
    /// One result per item, in the order of the request.
    pub results: Vec<Reputation>,
}

/// One line of `repnet lookup --format json`: the argument as the user gave it, and the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupOutput {
    /// The command-line argument (a file path, a hash, a domain, an IP address).
    pub input: String,
    #[serde(flatten)]
    pub reputation: Reputation,
}

/// One line of `repnet lookup --private --format json`: what privacy mode can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateLookupOutput {
    pub input: String,
    /// `file`, `url`, `domain` or `ip`.
    #[serde(rename = "type")]
    pub kind: String,
    pub verdict: Verdict,
    pub threat: Option<String>,
    pub source: Option<String>,
    pub confidence: u8,
    /// For URLs, domains and IPs: the expression that matched.
    pub matched: Option<String>,
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
    /// Seconds a client or proxy may cache this answer.
    pub ttl: u32,
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
    /// Every source record, the deciding one first.
    pub records: Vec<ExplainedRecord>,
}

/// One source record, as `?explain=true` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExplainedRecord {
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

/// Formats a timestamp as RFC 3339 in UTC (`2026-11-29T07:01:25Z`); `None` past the year
/// 9999.
pub fn rfc3339(timestamp: model::Timestamp) -> Option<String> {
    let mut buffer = [0u8; 20];
    crate::view::write_rfc3339(timestamp, &mut buffer).map(str::to_owned)
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
            matched: reports_match(reputation.object.kind())
                .then(|| reputation.matched.as_ref().map(|m| m.as_str().to_owned())),
            explain,
        }
    }
}

pub(crate) fn explain_records(reputation: &model::Reputation) -> Explanation {
    let winner = reputation.decision.map(|d| d.winner);
    let mut records: Vec<ExplainedRecord> = reputation
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let decisive = Some(index) == winner;
            ExplainedRecord {
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
            }
        })
        .collect();
    // The deciding record first, the rest in a stable order.
    records.sort_by(|a, b| {
        b.decisive
            .cmp(&a.decisive)
            .then_with(|| a.source.cmp(&b.source))
    });
    Explanation {
        rule: model::PRECEDENCE_RULE.to_owned(),
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
        assert_eq!(request.items[0].target().unwrap(), (ObjectKind::File, "ab"));
        assert_eq!(
            request.items[1].target().unwrap(),
            (ObjectKind::Domain, "x.example")
        );
        assert!(
            request.items[2]
                .target()
                .unwrap_err()
                .contains("names no object")
        );
        assert!(
            request.items[3]
                .target()
                .unwrap_err()
                .contains("more than one")
        );
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
            assert_eq!(error.code, code, "{}", String::from_utf8_lossy(body));
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
        assert_eq!(request.items[0].target().unwrap().1, "bücher.example");
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
