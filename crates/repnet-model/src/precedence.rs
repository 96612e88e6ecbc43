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

use std::cmp::Ordering;
use std::fmt;

use crate::verdict::{Source, SourceRecord, Verdict};

/// The rule of this module in one sentence, as `?explain=true` states it.
pub const PRECEDENCE_RULE: &str = "local verdicts win; then the built-in test set; then feed and upstream knowledge; then the reputation engine; within a tier the higher confidence, then the more severe verdict, then the first source by name";

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
            Source::Engine => Tier::Engine,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Tier::Local => "a local verdict",
            Tier::Builtin => "the built-in test set",
            Tier::Knowledge => "feed and upstream knowledge",
            Tier::Engine => "the reputation engine",
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
