//! Borrowed serialisers of model values for the server's hot path: they write the same JSON
//! as the owned wire types ([`crate::Reputation`], [`crate::LookupResponse`]) straight from
//! the model, without building those types and their strings first. A test holds the two to
//! the same output.

use repnet_model as model;
use serde::ser::{SerializeMap as _, SerializeSeq as _, SerializeStruct as _};
use serde::{Serialize, Serializer};

use crate::lookup::explain_records;
use crate::time::write_rfc3339;

/// A timestamp (or none) as a JSON string (or null).
struct Time(Option<model::Timestamp>);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; 20];
        match self.0.and_then(|t| write_rfc3339(t, &mut buffer)) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_none(),
        }
    }
}

/// Something printable as a JSON string, written without an intermediate `String`.
struct Text<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for Text<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

struct CategoryList(model::Categories);

impl Serialize for CategoryList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for category in self.0.iter() {
            seq.serialize_element(category.as_str())?;
        }
        seq.end()
    }
}

struct HashList<'a>(&'a model::FileHashes);

impl Serialize for HashList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(md5) = &self.0.md5 {
            map.serialize_entry("md5", &Text(md5))?;
        }
        if let Some(sha1) = &self.0.sha1 {
            map.serialize_entry("sha1", &Text(sha1))?;
        }
        if let Some(sha256) = &self.0.sha256 {
            map.serialize_entry("sha256", &Text(sha256))?;
        }
        map.end()
    }
}

struct ObjectView<'a>(&'a model::Reputation);

impl Serialize for ObjectView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let object = &self.0.object;
        let is_file = matches!(object, model::Object::File(_));
        let mut state = serializer.serialize_struct("ObjectRef", if is_file { 3 } else { 2 })?;
        state.serialize_field("type", object.kind().as_str())?;
        match &self.0.url {
            Some(url) => state.serialize_field("value", &Text(url))?,
            None => state.serialize_field("value", &Text(object))?,
        }
        if let model::Object::File(hash) = object {
            let mut hashes = self.0.hashes;
            hashes.insert(*hash);
            state.serialize_field("hashes", &HashList(&hashes))?;
        }
        state.end()
    }
}

/// One reputation as JSON: the shape of [`crate::Reputation`].
#[derive(Debug)]
pub struct ReputationJson<'a> {
    pub reputation: &'a model::Reputation,
    pub explain: bool,
}

impl Serialize for ReputationJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.reputation;
        let mut state =
            serializer.serialize_struct("Reputation", if self.explain { 12 } else { 11 })?;
        state.serialize_field("object", &ObjectView(r))?;
        state.serialize_field("verdict", r.verdict.as_str())?;
        state.serialize_field("threat", &r.threat.as_ref().map(|t| t.as_str()))?;
        state.serialize_field("categories", &CategoryList(r.categories))?;
        state.serialize_field("confidence", &r.confidence.get())?;
        state.serialize_field("source", &r.source.as_ref().map(Text))?;
        state.serialize_field("first_seen", &Time(r.first_seen))?;
        state.serialize_field("last_seen", &Time(r.last_seen))?;
        state.serialize_field("prevalence", &r.prevalence)?;
        state.serialize_field("ttl", &r.ttl)?;
        if crate::lookup::reports_match(r.object.kind()) {
            state.serialize_field("matched", &r.matched.as_ref().map(|m| m.as_str()))?;
        }
        if self.explain {
            state.serialize_field("explain", &explain_records(r))?;
        }
        state.end()
    }
}

/// A batch answer as JSON: the shape of [`crate::LookupResponse`].
#[derive(Debug)]
pub struct LookupResponseJson<'a> {
    pub results: &'a [model::Reputation],
    pub explain: bool,
}

impl Serialize for LookupResponseJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Results<'a>(&'a [model::Reputation], bool);
        impl Serialize for Results<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for reputation in self.0 {
                    seq.serialize_element(&ReputationJson {
                        reputation,
                        explain: self.1,
                    })?;
                }
                seq.end()
            }
        }
        let mut state = serializer.serialize_struct("LookupResponse", 1)?;
        state.serialize_field("results", &Results(self.results, self.explain))?;
        state.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{
        Confidence, FileHashes, Object, ObjectKind, Source, SourceRecord, Timestamp, TtlPolicy,
    };

    fn samples() -> Vec<model::Reputation> {
        let ttl = TtlPolicy::default();
        let mut feed = SourceRecord::new(
            Source::feed("a").unwrap(),
            model::Verdict::Untrusted,
            Confidence::new(90).unwrap(),
            Timestamp(1_800_000_000),
        );
        feed.threat = Some(model::ThreatName::new("Trojan \"quoted\" \\ ünïcode").unwrap());
        feed.categories = [model::Category::Malware, model::Category::C2]
            .into_iter()
            .collect();
        feed.last_seen = Timestamp(1_800_086_399);
        let local = SourceRecord::new(
            Source::Local,
            model::Verdict::Trusted,
            Confidence::MAX,
            Timestamp(0),
        );
        let file = Object::parse(ObjectKind::File, &"ab".repeat(16)).unwrap();
        let hashes = FileHashes {
            sha256: Some(model::Sha256([7; 32])),
            ..FileHashes::default()
        };
        vec![
            model::Reputation::assess(file.clone(), hashes, vec![feed.clone(), local], 3, &ttl),
            model::Reputation::assess(file, FileHashes::default(), vec![feed.clone()], 0, &ttl),
            model::Reputation::unknown(
                Object::parse(ObjectKind::Domain, "bücher.example").unwrap(),
                &ttl,
            ),
            model::Reputation::assess(
                Object::parse(ObjectKind::Ip, "2001:db8::1").unwrap(),
                FileHashes::default(),
                vec![feed],
                0,
                &ttl,
            ),
            model::Reputation::unknown(
                Object::parse(ObjectKind::Certificate, &"c".repeat(64)).unwrap(),
                &ttl,
            ),
        ]
    }

    #[test]
    fn the_views_write_exactly_what_the_wire_types_write() {
        let reputations = samples();
        for explain in [false, true] {
            for reputation in &reputations {
                let view = serde_json::to_string(&ReputationJson {
                    reputation,
                    explain,
                })
                .unwrap();
                let owned =
                    serde_json::to_string(&crate::Reputation::from_model(reputation, explain))
                        .unwrap();
                assert_eq!(view, owned);
            }
            let view = serde_json::to_string(&LookupResponseJson {
                results: &reputations,
                explain,
            })
            .unwrap();
            let owned = serde_json::to_string(&crate::LookupResponse {
                results: reputations
                    .iter()
                    .map(|r| {
                        crate::LookupResult::Reputation(crate::Reputation::from_model(r, explain))
                    })
                    .collect(),
            })
            .unwrap();
            assert_eq!(view, owned);
        }
    }

    #[test]
    fn rfc3339_matches_the_time_crate() {
        let mut buffer = [0u8; 20];
        for seconds in [
            0u64,
            1,
            59,
            86_399,
            86_400,
            951_782_400,
            1_795_000_000,
            4_102_444_800,
            253_402_300_799,
        ] {
            let expected = time::OffsetDateTime::from_unix_timestamp(seconds as i64)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(
                write_rfc3339(Timestamp(seconds), &mut buffer),
                Some(expected.as_str()),
                "{seconds}"
            );
        }
        assert_eq!(write_rfc3339(Timestamp(253_402_300_800), &mut buffer), None);
        assert_eq!(write_rfc3339(Timestamp(u64::MAX), &mut buffer), None);
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_agrees_everywhere(seconds in 0u64..=253_402_300_799) {
            let mut buffer = [0u8; 20];
            let expected = time::OffsetDateTime::from_unix_timestamp(seconds as i64)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            proptest::prop_assert_eq!(write_rfc3339(Timestamp(seconds), &mut buffer), Some(expected.as_str()));
        }
    }
}
