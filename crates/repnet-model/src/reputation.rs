//! A reputation answer: the records known about one object, reduced by the precedence rule.

use crate::hash::FileHashes;
use crate::name::ThreatName;
use crate::object::Object;
use crate::precedence::{Decision, decide};
use crate::url::{CanonicalUrl, Expression};
use crate::verdict::{Categories, Confidence, Source, SourceRecord, Timestamp, Verdict};

/// How long clients and proxies may cache answers, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// For objects with a known verdict.
    pub known: u32,
    /// For unknown objects: shorter, so that a new detection reaches clients quickly.
    pub unknown: u32,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            known: 3600,
            unknown: 300,
        }
    }
}

/// Everything the network says about one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Reputation {
    pub object: Object,
    /// For files: every hash of the file the network knows (including the one asked for).
    pub hashes: FileHashes,
    pub verdict: Verdict,
    pub threat: Option<ThreatName>,
    pub categories: Categories,
    pub confidence: Confidence,
    /// The deciding source; `None` when nothing is known.
    pub source: Option<Source>,
    /// Earliest first sighting over all records.
    pub first_seen: Option<Timestamp>,
    /// Latest last sighting over all records.
    pub last_seen: Option<Timestamp>,
    /// Approximate number of distinct devices that reported the object.
    pub prevalence: u64,
    pub ttl: u32,
    /// Every contributing record, for `?explain=true`.
    pub records: Vec<SourceRecord>,
    /// Which record decided and why; `None` when nothing is known.
    pub decision: Option<Decision>,
    /// For URL, domain and IP lookups: the expression whose records decided (the most
    /// specific one with any); `None` when none matched.
    pub matched: Option<Expression>,
    /// For URL lookups: the URL as canonicalised.
    pub url: Option<CanonicalUrl>,
}

impl Reputation {
    /// Reduces `records` to one answer by the precedence rule.
    pub fn assess(
        object: Object,
        hashes: FileHashes,
        records: Vec<SourceRecord>,
        prevalence: u64,
        ttl: &TtlPolicy,
    ) -> Reputation {
        let decision = decide(&records);
        let first_seen = records.iter().map(|r| r.first_seen).min();
        let last_seen = records.iter().map(|r| r.last_seen).max();
        let mut reputation = Reputation {
            object,
            hashes,
            verdict: Verdict::Unknown,
            threat: None,
            categories: Categories::EMPTY,
            confidence: Confidence::ZERO,
            source: None,
            first_seen,
            last_seen,
            prevalence,
            ttl: ttl.unknown,
            records: Vec::new(),
            decision,
            matched: None,
            url: None,
        };
        if let Some(decision) = decision {
            let winner = &records[decision.winner];
            reputation.verdict = winner.verdict;
            reputation.threat = winner.threat.clone();
            reputation.categories = winner.categories;
            reputation.confidence = winner.confidence;
            reputation.source = Some(winner.source.clone());
            if winner.verdict != Verdict::Unknown {
                reputation.ttl = ttl.known;
            }
        }
        reputation.records = records;
        reputation
    }

    /// The answer for an object nothing is known about.
    pub fn unknown(object: Object, ttl: &TtlPolicy) -> Reputation {
        Reputation::assess(object, FileHashes::default(), Vec::new(), 0, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{FileHash, Sha256};

    #[test]
    fn unknown_objects_get_the_short_ttl() {
        let object = Object::File(FileHash::Sha256(Sha256([0; 32])));
        let reputation = Reputation::unknown(object, &TtlPolicy::default());
        assert_eq!(reputation.verdict, Verdict::Unknown);
        assert_eq!(reputation.ttl, 300);
        assert_eq!(reputation.source, None);
        assert_eq!(reputation.first_seen, None);
    }

    #[test]
    fn the_winner_decides_and_sightings_span_all_records() {
        let object = Object::File(FileHash::Sha256(Sha256([1; 32])));
        let mut feed = SourceRecord::new(
            Source::feed("a").unwrap(),
            Verdict::Untrusted,
            Confidence::new(80).unwrap(),
            Timestamp(10),
        );
        feed.threat = Some(ThreatName::new("Trojan.X").unwrap());
        let mut local = SourceRecord::new(
            Source::Local,
            Verdict::Trusted,
            Confidence::MAX,
            Timestamp(50),
        );
        local.last_seen = Timestamp(60);
        let reputation = Reputation::assess(
            object,
            FileHashes::default(),
            vec![feed, local],
            7,
            &TtlPolicy::default(),
        );
        assert_eq!(reputation.verdict, Verdict::Trusted);
        assert_eq!(reputation.source, Some(Source::Local));
        assert_eq!(reputation.threat, None);
        assert_eq!(reputation.first_seen, Some(Timestamp(10)));
        assert_eq!(reputation.last_seen, Some(Timestamp(60)));
        assert_eq!(reputation.prevalence, 7);
        assert_eq!(reputation.ttl, 3600);
        assert_eq!(reputation.records.len(), 2);
    }
}
