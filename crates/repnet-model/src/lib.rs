//! repnet's domain model: the objects the network knows about, verdicts, source records, the
//! precedence rule that turns several source records into one answer, and the built-in test set.
//!
//! This crate is pure: it does no I/O, has no async, reads no clock (callers pass `now`), and
//! never panics on input. Everything that comes from outside is parsed here into a type whose
//! existence proves it is valid (a [`Sha256`] is 32 bytes, a [`Domain`] is canonical), so the
//! rest of the system passes validated values around.

mod builtin;
pub mod encoding;
mod hash;
pub mod key;
mod name;
mod object;
mod precedence;
pub mod privacy;
mod reputation;
mod url;
mod verdict;

pub use builtin::{BuiltinEntry, EICAR, EICAR_THREAT, TEST_DOMAIN_SUFFIX, builtin_entries};
pub use hash::{FileHash, FileHashes, HashKind, Md5, PrefixOf, Sha1, Sha256};
pub use name::{FeedName, ThreatName, is_control_or_bidi};
pub use object::{CertificateThumbprint, Domain, Object, ObjectKind, canonical_ip};
pub use precedence::{
    Decision, EXPRESSION_RULE, ExpressionAnswer, ExpressionReason, PRECEDENCE_RULE, Reason, Tier,
    decide, decide_expressions,
};
pub use reputation::{MatchedExpression, Reputation, TtlPolicy};
pub use url::{CanonicalUrl, Expression, MAX_URL_LEN, UrlHost};
pub use verdict::{Categories, Category, Confidence, Source, SourceRecord, Timestamp, Verdict};

/// Why a piece of input could not be turned into a model value.
///
/// Messages are lowercase, say what was expected, and are safe to show to the client who sent
/// the input (they never contain anything but the client's own input and fixed text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Hash(String),
    #[error("{0}")]
    Domain(String),
    #[error("{0}")]
    Ip(String),
    #[error("{0}")]
    Verdict(String),
    #[error("{0}")]
    Category(String),
    #[error("{0}")]
    Confidence(String),
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Name(String),
    #[error("{0}")]
    Url(String),
    #[error("{0}")]
    Prefix(String),
}
