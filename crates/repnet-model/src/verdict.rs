//! Verdicts, categories, confidence, sources, and the source record: what one source says
//! about one object.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;
use crate::name::{FeedName, ThreatName};

/// What the network thinks of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Trusted,
    Riskware,
    Untrusted,
    Unknown,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Trusted,
        Verdict::Riskware,
        Verdict::Untrusted,
        Verdict::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Trusted => "trusted",
            Verdict::Riskware => "riskware",
            Verdict::Untrusted => "untrusted",
            Verdict::Unknown => "unknown",
        }
    }

    /// How dangerous the verdict says the object is; higher is worse. Used by the precedence
    /// rule to break ties between equally confident sources on the side of caution.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Unknown => 0,
            Verdict::Trusted => 1,
            Verdict::Riskware => 2,
            Verdict::Untrusted => 3,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        Verdict::ALL
            .into_iter()
            .find(|verdict| verdict.as_str() == text)
            .ok_or_else(|| {
                ParseError::Verdict(format!(
                    "unknown verdict {text:?}: expected trusted, riskware, untrusted or unknown"
                ))
            })
    }
}

/// A category of threat or of known-good software.
///
/// The discriminant is the bit in [`Categories`] and is stored on disk: never renumber,
/// only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Category {
    Malware = 0,
    Ransomware = 1,
    Phishing = 2,
    C2 = 3,
    MalwareDistribution = 4,
    Exploit = 5,
    Spam = 6,
    Botnet = 7,
    Riskware = 8,
    Adware = 9,
    Miner = 10,
    RemoteAdmin = 11,
    Pua = 12,
    KnownSoftware = 13,
    Popular = 14,
    Test = 15,
}

impl Category {
    pub const ALL: [Category; 16] = [
        Category::Malware,
        Category::Ransomware,
        Category::Phishing,
        Category::C2,
        Category::MalwareDistribution,
        Category::Exploit,
        Category::Spam,
        Category::Botnet,
        Category::Riskware,
        Category::Adware,
        Category::Miner,
        Category::RemoteAdmin,
        Category::Pua,
        Category::KnownSoftware,
        Category::Popular,
        Category::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Malware => "malware",
            Category::Ransomware => "ransomware",
            Category::Phishing => "phishing",
            Category::C2 => "c2",
            Category::MalwareDistribution => "malware_distribution",
            Category::Exploit => "exploit",
            Category::Spam => "spam",
            Category::Botnet => "botnet",
            Category::Riskware => "riskware",
            Category::Adware => "adware",
            Category::Miner => "miner",
            Category::RemoteAdmin => "remote_admin",
            Category::Pua => "pua",
            Category::KnownSoftware => "known_software",
            Category::Popular => "popular",
            Category::Test => "test",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        Category::ALL
            .into_iter()
            .find(|category| category.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
                ParseError::Category(format!(
                    "unknown category {text:?}: expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// A set of categories, as bits. Bits this version does not know (written by a newer one)
/// are kept but not shown.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Categories(u32);

impl Categories {
    pub const EMPTY: Categories = Categories(0);

    pub fn from_bits(bits: u32) -> Categories {
        Categories(bits)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, category: Category) -> Categories {
        Categories(self.0 | 1 << category as u8)
    }

    /// Every category of either set.
    pub fn union(self, other: Categories) -> Categories {
        Categories(self.0 | other.0)
    }

    pub fn contains(self, category: Category) -> bool {
        self.0 & (1 << category as u8) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Category> for Categories {
    fn from_iter<I: IntoIterator<Item = Category>>(iter: I) -> Self {
        iter.into_iter().fold(Categories::EMPTY, Categories::with)
    }
}

impl fmt::Debug for Categories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How sure a source is, from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Confidence(u8);

impl Confidence {
    pub const MAX: Confidence = Confidence(100);
    pub const ZERO: Confidence = Confidence(0);

    pub fn new(value: i64) -> Result<Confidence, ParseError> {
        match u8::try_from(value) {
            Ok(value) if value <= 100 => Ok(Confidence(value)),
            _ => Err(ParseError::Confidence(format!(
                "confidence is a whole number from 0 to 100; got {value}"
            ))),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

/// Where a piece of knowledge came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The administrator of this server (a local verdict).
    Local,
    /// The built-in test set that every server knows.
    Builtin,
    /// A feed imported into this server, by name.
    Feed(FeedName),
    /// The upstream network this server pulls from.
    Upstream,
    /// The reputation engine, from participants' statistics.
    Engine,
    /// The upstream network's reputation engine: what this server pulled that the upstream
    /// decided from its participants' statistics. Ranked with the engine, below every feed.
    UpstreamEngine,
}

impl Source {
    pub fn feed(name: &str) -> Result<Source, ParseError> {
        FeedName::new(name).map(Source::Feed)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local => f.write_str("local"),
            Source::Builtin => f.write_str("builtin"),
            Source::Feed(name) => write!(f, "feed:{name}"),
            Source::Upstream => f.write_str("upstream"),
            Source::Engine => f.write_str("engine"),
            Source::UpstreamEngine => f.write_str("upstream-engine"),
        }
    }
}

impl FromStr for Source {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        match text {
            "local" => Ok(Source::Local),
            "builtin" => Ok(Source::Builtin),
            "upstream" => Ok(Source::Upstream),
            "engine" => Ok(Source::Engine),
            "upstream-engine" => Ok(Source::UpstreamEngine),
            _ => match text.strip_prefix("feed:") {
                Some(name) => Source::feed(name),
                None => Err(ParseError::Source(format!(
                    "unknown source {text:?}: expected local, builtin, upstream, engine, upstream-engine or feed:<name>"
                ))),
            },
        }
    }
}

/// What one source says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub source: Source,
    pub verdict: Verdict,
    pub threat: Option<ThreatName>,
    pub categories: Categories,
    pub confidence: Confidence,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

impl SourceRecord {
    /// A record first and last seen at `now`, with no threat name and no categories.
    pub fn new(source: Source, verdict: Verdict, confidence: Confidence, now: Timestamp) -> Self {
        SourceRecord {
            source,
            verdict,
            threat: None,
            categories: Categories::EMPTY,
            confidence,
            first_seen: now,
            last_seen: now,
        }
    }

    /// Folds a newer statement of the same source into `self`: the content is replaced, the
    /// first sighting is the earlier of the two and the last sighting the later.
    pub fn merge_newer(&mut self, newer: SourceRecord) {
        let first_seen = self.first_seen.min(newer.first_seen);
        let last_seen = self.last_seen.max(newer.last_seen);
        *self = SourceRecord {
            first_seen,
            last_seen,
            ..newer
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_through_text() {
        for text in ["local", "builtin", "upstream", "engine", "feed:urlhaus"] {
            assert_eq!(text.parse::<Source>().unwrap().to_string(), text);
        }
        assert_eq!(
            "feed:URLhaus".parse::<Source>().unwrap().to_string(),
            "feed:urlhaus"
        );
        assert!("feed:".parse::<Source>().is_err());
        assert!("feeds".parse::<Source>().is_err());
    }

    #[test]
    fn categories_are_a_set() {
        let set: Categories = [Category::Phishing, Category::Malware, Category::Phishing]
            .into_iter()
            .collect();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Category::Malware, Category::Phishing]
        );
        for category in Category::ALL {
            assert_eq!(category.as_str().parse::<Category>().unwrap(), category);
        }
        // Bits from a newer version are kept but not listed.
        let future = Categories::from_bits(1 << 31 | 1);
        assert_eq!(future.iter().collect::<Vec<_>>(), [Category::Malware]);
        assert_eq!(future.bits(), 1 << 31 | 1);
    }

    #[test]
    fn confidence_is_bounded() {
        assert_eq!(Confidence::new(0).unwrap().get(), 0);
        assert_eq!(Confidence::new(100).unwrap().get(), 100);
        assert!(Confidence::new(101).is_err());
        assert!(Confidence::new(-1).is_err());
    }

    #[test]
    fn merge_keeps_the_widest_sighting_window() {
        let mut old = SourceRecord::new(
            Source::Local,
            Verdict::Trusted,
            Confidence::MAX,
            Timestamp(100),
        );
        old.last_seen = Timestamp(200);
        let mut newer = SourceRecord::new(
            Source::Local,
            Verdict::Untrusted,
            Confidence::MAX,
            Timestamp(150),
        );
        newer.last_seen = Timestamp(150);
        old.merge_newer(newer);
        assert_eq!(old.verdict, Verdict::Untrusted);
        assert_eq!(old.first_seen, Timestamp(100));
        assert_eq!(old.last_seen, Timestamp(200));
    }
}
