//! A reputation answer: the records known about one object, reduced by the precedence rule.

use crate::hash::FileHashes;
use crate::name::ThreatName;
use crate::object::Object;
use crate::precedence::{Decision, ExpressionAnswer, ExpressionReason, decide, decide_expressions};
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
    /// For URL, domain and IP lookups: why `matched` decided among the expressions with
    /// records.
    pub expression_reason: Option<ExpressionReason>,
    /// For URL, domain and IP lookups: the other expressions that had records, most specific
    /// first (`?explain=true` shows them).
    pub also_matched: Vec<MatchedExpression>,
}

/// One expression of a URL, domain or IP lookup and its records.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedExpression {
    pub expression: Expression,
    pub records: Vec<SourceRecord>,
    pub prevalence: u64,
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
            expression_reason: None,
            also_matched: Vec::new(),
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

    /// The answer for a URL, domain or IP address from what each of its expressions holds
    /// (most specific first; expressions without records may be left out), by the rule over
    /// expressions (`precedence.rs`).
    pub fn assess_expressions(
        object: Object,
        matches: Vec<MatchedExpression>,
        ttl: &TtlPolicy,
    ) -> Reputation {
        let mut matches: Vec<MatchedExpression> = matches
            .into_iter()
            .filter(|m| !m.records.is_empty())
            .collect();
        let answers: Vec<ExpressionAnswer> = matches
            .iter()
            .map(|m| {
                // Not empty: filtered above.
                let winner = decide(&m.records).map(|d| &m.records[d.winner]);
                ExpressionAnswer {
                    verdict: winner.map_or(Verdict::Unknown, |r| r.verdict),
                    local: winner.is_some_and(|r| r.source == Source::Local),
                }
            })
            .collect();
        let Some((index, reason)) = decide_expressions(&answers) else {
            return Reputation::unknown(object, ttl);
        };
        let decisive = matches.remove(index);
        let mut reputation = Reputation::assess(
            object,
            FileHashes::default(),
            decisive.records,
            decisive.prevalence,
            ttl,
        );
        reputation.matched = Some(decisive.expression);
        reputation.expression_reason = Some(reason);
        reputation.also_matched = matches;
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

    fn record(source: &str, verdict: Verdict, confidence: i64) -> SourceRecord {
        SourceRecord::new(
            source.parse().unwrap(),
            verdict,
            Confidence::new(confidence).unwrap(),
            Timestamp(1),
        )
    }

    /// The walkthrough's case: a local block on `corpblock.example`, Tranco's entry for
    /// `www.corpblock.example`.
    #[test]
    fn a_broad_local_block_is_not_undone_by_a_narrow_popularity_entry() {
        let url = CanonicalUrl::parse(b"http://www.corpblock.example/payload.exe").unwrap();
        let expressions = url.expressions();
        let find = |text: &str| {
            expressions
                .iter()
                .find(|e| e.as_str() == text)
                .cloned()
                .unwrap()
        };
        let matches = vec![
            MatchedExpression {
                expression: find("www.corpblock.example/"),
                records: vec![record("feed:tranco", Verdict::Trusted, 20)],
                prevalence: 0,
            },
            MatchedExpression {
                expression: find("corpblock.example/"),
                records: vec![record("local", Verdict::Untrusted, 100)],
                prevalence: 0,
            },
        ];
        let object = Object::Url(url.exact_expression());
        let reputation = Reputation::assess_expressions(object, matches, &TtlPolicy::default());
        assert_eq!(reputation.verdict, Verdict::Untrusted);
        assert_eq!(reputation.source, Some(Source::Local));
        assert_eq!(
            reputation.matched.as_ref().map(Expression::as_str),
            Some("corpblock.example/")
        );
        assert_eq!(
            reputation.expression_reason,
            Some(ExpressionReason::LocalVerdict)
        );
        assert_eq!(reputation.also_matched.len(), 1);
    }

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
