//! The precedence rule: which of several source records about one object decides the answer.
//!
//! The rule, in order (the first difference decides):
//!
//! 1. **Tier.** `local` (the administrator) beats everything; then `builtin` (the test set);
//!    then feed and upstream knowledge; then the `engine` (statistics).
//! 2. **Confidence.** Within a tier, the more confident record wins.
//! 3. **Severity.** At equal confidence, the more severe verdict wins
//!    (`untrusted` > `riskware` > `trusted` > `unknown`): when two equally sure sources
//!    disagree, the network errs on the side of caution, and the administrator fixes a false
//!    positive with a local verdict.
//! 4. **Source name.** Finally the source whose name sorts first (`feed:a` before `feed:b`),
//!    so the answer never depends on the order in which records were stored.
//!
//! A URL, domain or IP address matches several **expressions** (its host suffixes and path
//! prefixes, `url.rs`), each with its own records. Each matched expression is first reduced
//! to one answer by the rule above; then [`decide_expressions`] picks the expression whose
//! answer is the answer (the first difference decides):
//!
//! 1. **Local verdicts.** An expression decided by a local verdict beats every other; among
//!    several, the most specific wins, so an administrator can block a domain and exempt one
//!    URL under it.
//! 2. **Severity.** Otherwise the most severe answer wins (`untrusted` > `riskware` >
//!    `trusted`), whatever its specificity: a phishing feed's entry for `evil.example/` is not
//!    undone by a popularity list's `www.evil.example/`, and a more specific `untrusted` beats
//!    a broader `trusted`.
//! 3. **Specificity.** Among equally severe answers, the most specific expression.

use std::cmp::Ordering;
use std::fmt;

use crate::verdict::{Source, SourceRecord, Verdict};

/// The rule of this module in one sentence, as `?explain=true` states it.
pub const PRECEDENCE_RULE: &str = "local verdicts win; then the built-in test set; then feed and upstream knowledge; then the reputation engine (this server's or its upstream's); within a tier the higher confidence, then the more severe verdict, then the first source by name";

/// The precedence tier of a source; lower wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Local,
    Builtin,
    Knowledge,
    Engine,
}

impl Tier {
    pub fn of(source: &Source) -> Tier {
        match source {
            Source::Local => Tier::Local,
            Source::Builtin => Tier::Builtin,
            Source::Feed(_) | Source::Upstream => Tier::Knowledge,
            Source::Engine | Source::UpstreamEngine => Tier::Engine,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Tier::Local => "a local verdict",
            Tier::Builtin => "the built-in test set",
            Tier::Knowledge => "feed and upstream knowledge",
            Tier::Engine => "the reputation engine (this server's or the upstream's)",
        }
    }
}

/// Why the winning record won, compared with the best of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It was the only record.
    OnlyRecord,
    /// It is the administrator's local verdict, which always wins.
    LocalVerdict,
    /// Its source is in a higher tier than the runner-up's.
    HigherTier { runner_up: Tier },
    /// Same tier, higher confidence.
    HigherConfidence { runner_up: u8 },
    /// Same tier and confidence, more severe verdict.
    MoreSevere { runner_up: Verdict },
    /// Everything equal but the source name, which sorts first.
    SourceName,
}

/// The outcome of [`decide`]: which record won and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index of the winning record in the slice given to [`decide`].
    pub winner: usize,
    pub reason: Reason,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::OnlyRecord => f.write_str("the only source with information on this object"),
            Reason::LocalVerdict => {
                f.write_str("a local verdict set by the administrator wins over every other source")
            }
            Reason::HigherTier { runner_up } => write!(
                f,
                "its source ranks above {} in the precedence order",
                runner_up.describe()
            ),
            Reason::HigherConfidence { runner_up } => write!(
                f,
                "the most confident source in its tier (the next best has confidence {runner_up})"
            ),
            Reason::MoreSevere { runner_up } => write!(
                f,
                "equally confident sources disagree and the more severe verdict wins (the other says {runner_up})"
            ),
            Reason::SourceName => f.write_str(
                "sources agree in tier, confidence and severity; the first by source name is reported",
            ),
        }
    }
}

/// The rule over matched expressions in one sentence, as `?explain=true` states it.
pub const EXPRESSION_RULE: &str = "among the expressions that matched, one decided by a local verdict wins (the most specific such one); otherwise the most severe answer wins, then the most specific expression";

/// What one matched expression answered, as [`decide_expressions`] weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpressionAnswer {
    pub verdict: Verdict,
    /// The answer is a local verdict.
    pub local: bool,
}

/// Why one matched expression decided a URL, domain or IP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionReason {
    /// It was the only expression with records.
    OnlyMatch,
    /// It holds a local verdict and the others do not.
    LocalVerdict,
    /// It is the most specific of several expressions with local verdicts.
    MostSpecificLocal,
    /// Its answer is more severe than the runner-up's, which was more specific.
    MoreSevere { runner_up: Verdict },
    /// It is the most specific of the expressions with the most severe answer.
    MostSpecific,
}

impl fmt::Display for ExpressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpressionReason::OnlyMatch => f.write_str("the only expression with information"),
            ExpressionReason::LocalVerdict => f.write_str(
                "a local verdict on a matched expression wins over every other source on any other",
            ),
            ExpressionReason::MostSpecificLocal => {
                f.write_str("the most specific of the expressions with a local verdict")
            }
            ExpressionReason::MoreSevere { runner_up } => write!(
                f,
                "the most severe answer among the matched expressions wins over a more specific {runner_up}"
            ),
            ExpressionReason::MostSpecific => {
                f.write_str("the most specific of the expressions with the most severe answer")
            }
        }
    }
}

/// Picks the matched expression whose answer decides, by the rule in this module's
/// documentation. `answers` are the expressions with records, the most specific first.
/// Returns the index of the winner and why; `None` when nothing matched.
pub fn decide_expressions(answers: &[ExpressionAnswer]) -> Option<(usize, ExpressionReason)> {
    if answers.len() <= 1 {
        return answers.first().map(|_| (0, ExpressionReason::OnlyMatch));
    }
    if let Some(index) = answers.iter().position(|answer| answer.local) {
        let reason = if answers.iter().filter(|answer| answer.local).count() > 1 {
            ExpressionReason::MostSpecificLocal
        } else {
            ExpressionReason::LocalVerdict
        };
        return Some((index, reason));
    }
    let worst = answers.iter().map(|a| a.verdict.severity()).max()?;
    let index = answers
        .iter()
        .position(|answer| answer.verdict.severity() == worst)?;
    // Any more specific expression said something milder.
    let reason = match answers[..index].iter().map(|a| a.verdict).next() {
        Some(runner_up) => ExpressionReason::MoreSevere { runner_up },
        None => ExpressionReason::MostSpecific,
    };
    Some((index, reason))
}

fn compare(a: &SourceRecord, b: &SourceRecord) -> Ordering {
    // This runs on every lookup, so it compares in place without building a key. `Source`'s
    // derived order within one tier is the order of the names: `feed:a` < `feed:b` < `upstream`.
    let (tier_a, conf_a, sev_a) = (
        Tier::of(&a.source),
        a.confidence.get(),
        a.verdict.severity(),
    );
    let (tier_b, conf_b, sev_b) = (
        Tier::of(&b.source),
        b.confidence.get(),
        b.verdict.severity(),
    );
    tier_a
        .cmp(&tier_b)
        .then(conf_b.cmp(&conf_a))
        .then(sev_b.cmp(&sev_a))
        .then_with(|| a.source.cmp(&b.source))
}

/// Picks the record that decides the answer, by the rule in this module's documentation.
/// Returns `None` when there are no records (the object is unknown).
pub fn decide(records: &[SourceRecord]) -> Option<Decision> {
    let winner = (0..records.len()).min_by(|&a, &b| compare(&records[a], &records[b]))?;
    let runner_up = (0..records.len())
        .filter(|&index| index != winner)
        .min_by(|&a, &b| compare(&records[a], &records[b]));
    let best = &records[winner];
    let reason = match runner_up.map(|index| &records[index]) {
        None => Reason::OnlyRecord,
        Some(_) if best.source == Source::Local => Reason::LocalVerdict,
        Some(other) => {
            let (tier, other_tier) = (Tier::of(&best.source), Tier::of(&other.source));
            if tier != other_tier {
                Reason::HigherTier {
                    runner_up: other_tier,
                }
            } else if best.confidence != other.confidence {
                Reason::HigherConfidence {
                    runner_up: other.confidence.get(),
                }
            } else if best.verdict.severity() != other.verdict.severity() {
                Reason::MoreSevere {
                    runner_up: other.verdict,
                }
            } else {
                Reason::SourceName
            }
        }
    };
    Some(Decision { winner, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Confidence, Timestamp};

    fn record(source: &str, verdict: Verdict, confidence: i64) -> SourceRecord {
        SourceRecord::new(
            source.parse().unwrap(),
            verdict,
            Confidence::new(confidence).unwrap(),
            Timestamp(0),
        )
    }

    /// One row per rule: the records, the source expected to win, and the reason.
    #[test]
    fn precedence_table() {
        use Verdict::*;
        let cases: Vec<(Vec<SourceRecord>, &str, Reason)> = vec![
            (
                vec![record("feed:a", Untrusted, 80)],
                "feed:a",
                Reason::OnlyRecord,
            ),
            (
                vec![
                    record("feed:a", Untrusted, 100),
                    record("local", Trusted, 0),
                ],
                "local",
                Reason::LocalVerdict,
            ),
            (
                vec![
                    record("builtin", Untrusted, 100),
                    record("local", Trusted, 50),
                ],
                "local",
                Reason::LocalVerdict,
            ),
            (
                vec![
                    record("engine", Untrusted, 100),
                    record("feed:a", Trusted, 10),
                ],
                "feed:a",
                Reason::HigherTier {
                    runner_up: Tier::Engine,
                },
            ),
            (
                vec![
                    record("feed:a", Untrusted, 100),
                    record("builtin", Trusted, 10),
                ],
                "builtin",
                Reason::HigherTier {
                    runner_up: Tier::Knowledge,
                },
            ),
            (
                vec![
                    record("feed:nsrl", Trusted, 60),
                    record("feed:bazaar", Untrusted, 90),
                ],
                "feed:bazaar",
                Reason::HigherConfidence { runner_up: 60 },
            ),
            (
                vec![
                    record("upstream", Trusted, 95),
                    record("feed:x", Untrusted, 90),
                ],
                "upstream",
                Reason::HigherConfidence { runner_up: 90 },
            ),
            (
                vec![
                    record("feed:a", Trusted, 70),
                    record("feed:b", Riskware, 70),
                ],
                "feed:b",
                Reason::MoreSevere { runner_up: Trusted },
            ),
            (
                vec![
                    record("feed:b", Untrusted, 70),
                    record("feed:a", Untrusted, 70),
                ],
                "feed:a",
                Reason::SourceName,
            ),
        ];
        for (records, expected_source, expected_reason) in cases {
            let decision = decide(&records).unwrap();
            assert_eq!(
                records[decision.winner].source.to_string(),
                expected_source,
                "{records:?}"
            );
            assert_eq!(decision.reason, expected_reason, "{records:?}");
            // Never insertion order: every permutation gives the same winner.
            let mut reversed = records.clone();
            reversed.reverse();
            let again = decide(&reversed).unwrap();
            assert_eq!(reversed[again.winner].source.to_string(), expected_source);
            assert_eq!(again.reason, expected_reason);
        }
        assert_eq!(decide(&[]), None);
    }

    /// The rule over matched expressions, one row per case the issue tracker named: the
    /// answers of the matched expressions (most specific first), the winner and why.
    #[test]
    fn expression_table() {
        use Verdict::*;
        let feed = |verdict| ExpressionAnswer {
            verdict,
            local: false,
        };
        let local = |verdict| ExpressionAnswer {
            verdict,
            local: true,
        };
        let cases: Vec<(&str, Vec<ExpressionAnswer>, usize, ExpressionReason)> = vec![
            (
                "one match",
                vec![feed(Trusted)],
                0,
                ExpressionReason::OnlyMatch,
            ),
            (
                "a local block on the domain beats a popularity entry for www",
                vec![feed(Trusted), local(Untrusted)],
                1,
                ExpressionReason::LocalVerdict,
            ),
            (
                "a local allow on the domain beats a feed's block of one URL under it",
                vec![feed(Untrusted), local(Trusted)],
                1,
                ExpressionReason::LocalVerdict,
            ),
            (
                "an administrator exempts one URL under a blocked domain",
                vec![local(Trusted), feed(Trusted), local(Untrusted)],
                0,
                ExpressionReason::MostSpecificLocal,
            ),
            (
                "a feed's block of the domain beats an allow list's entry for the host",
                vec![feed(Trusted), feed(Untrusted)],
                1,
                ExpressionReason::MoreSevere { runner_up: Trusted },
            ),
            (
                "riskware on the domain beats trusted on the URL",
                vec![feed(Trusted), feed(Riskware)],
                1,
                ExpressionReason::MoreSevere { runner_up: Trusted },
            ),
            (
                "a more specific untrusted beats a broader trusted",
                vec![feed(Untrusted), feed(Trusted)],
                0,
                ExpressionReason::MostSpecific,
            ),
            (
                "untrusted on the domain beats riskware on the URL",
                vec![feed(Riskware), feed(Untrusted)],
                1,
                ExpressionReason::MoreSevere {
                    runner_up: Riskware,
                },
            ),
            (
                "equally severe: the most specific",
                vec![feed(Trusted), feed(Trusted)],
                0,
                ExpressionReason::MostSpecific,
            ),
        ];
        for (case, answers, winner, reason) in cases {
            assert_eq!(
                decide_expressions(&answers),
                Some((winner, reason)),
                "{case}"
            );
        }
        assert_eq!(decide_expressions(&[]), None);
    }

    proptest::proptest! {
        /// The winner does not depend on the order of the records.
        #[test]
        fn order_independent(
            specs in proptest::collection::vec((0usize..6, 0usize..4, 0i64..=100), 1..8),
            rotation in 0usize..8,
        ) {
            let sources = ["local", "builtin", "feed:a", "feed:b", "upstream", "engine"];
            // One record per source, as the store keeps them.
            let mut seen = std::collections::HashSet::new();
            let records: Vec<SourceRecord> = specs
                .into_iter()
                .filter(|(s, _, _)| seen.insert(*s))
                .map(|(s, v, c)| record(sources[s], Verdict::ALL[v], c))
                .collect();
            let winner = records[decide(&records).unwrap().winner].clone();
            let mut rotated = records.clone();
            rotated.rotate_left(rotation % records.len());
            proptest::prop_assert_eq!(&rotated[decide(&rotated).unwrap().winner], &winner);
        }
    }
}
