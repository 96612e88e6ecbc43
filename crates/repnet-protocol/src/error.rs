//! Every error the API answers with: a stable code for programs ([`ErrorCode`]) and a message
//! for people, in one body ([`ErrorBody`]). The server, the proxy, the HTTP layer and the
//! licence checks build their errors from [`ErrorCode`]; clients compare against it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $text:literal,)+) => {
        /// The stable, snake_case code of an API error (`error.code` in the body). A client
        /// may meet codes it does not know (from a newer server): it keeps the text
        /// ([`ErrorDetail::code`]) and [`ErrorDetail::known_code`] answers `None`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the table in docs/http-api.md.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it is on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                }
            }

            /// What the code means, as documented.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+),)+
                }
            }
        }
    };
}

error_codes! {
    // Requests that are not what the API takes.
    /// A JSON body that is not JSON.
    InvalidJson = "invalid_json",
    /// A body of the wrong shape: its message names the JSON path of the mistake.
    InvalidRequest = "invalid_request",
    /// A body that cannot be read, or of the wrong media type for a binary or import route.
    InvalidBody = "invalid_body",
    /// A request without the body it needs.
    EmptyBody = "empty_body",
    /// A JSON route asked without `Content-Type: application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    /// A body over the route's size limit.
    BodyTooLarge = "body_too_large",
    /// More items in a batch than `max_batch_items`.
    BatchTooLarge = "batch_too_large",
    /// A privacy-mode search that names too many hashes to answer in full.
    TooManyMatches = "too_many_matches",
    /// A query parameter that is unknown or has a wrong value.
    InvalidQuery = "invalid_query",
    /// A path segment that is not what the route takes.
    InvalidPath = "invalid_path",
    /// No such route.
    NotFound = "not_found",
    /// The route exists, not with this method.
    MethodNotAllowed = "method_not_allowed",
    /// The request's body did not arrive in time.
    RequestTimeout = "request_timeout",

    // Objects and values, as the model parses them.
    /// A file hash that is not 32, 40 or 64 hexadecimal digits.
    InvalidHash = "invalid_hash",
    /// A domain name that is not one.
    InvalidDomain = "invalid_domain",
    /// An IP address that is not one.
    InvalidIp = "invalid_ip",
    /// A URL that cannot be canonicalised.
    InvalidUrl = "invalid_url",
    /// A verdict other than `trusted`, `untrusted`, `unknown`.
    InvalidVerdict = "invalid_verdict",
    /// A category that is not one of the documented ones.
    InvalidCategory = "invalid_category",
    /// A confidence outside 0–100.
    InvalidConfidence = "invalid_confidence",
    /// A source name that is not one.
    InvalidSource = "invalid_source",
    /// A threat or product name that is not one.
    InvalidName = "invalid_name",
    /// A privacy-mode prefix that is not 4 to 32 bytes of hexadecimal.
    InvalidPrefix = "invalid_prefix",
    /// A comment that is too long or has control characters.
    InvalidComment = "invalid_comment",
    /// An expiry that is not an RFC 3339 time in the future.
    InvalidExpires = "invalid_expires",

    // Administration.
    /// The admin API is off (no admin token configured).
    AdminDisabled = "admin_disabled",
    /// No admin token, or a wrong one.
    Unauthorized = "unauthorized",
    /// No local verdict on that object.
    NoLocalVerdict = "no_local_verdict",
    /// A runtime setting with a wrong value, or not one that changes at run time.
    InvalidSetting = "invalid_setting",
    /// An import's parameters or file that cannot be imported.
    InvalidFeed = "invalid_feed",
    /// No scheduled feed of that name.
    UnknownFeed = "unknown_feed",
    /// No review item with that id.
    ReviewNotFound = "review_not_found",
    /// No proxy with that key and name has reported to this server.
    UnknownProxy = "unknown_proxy",
    /// An id in the path that is not one (a licence key's, a review item's).
    InvalidId = "invalid_id",
    /// A licence key that is not one (too short, wrong characters).
    InvalidKey = "invalid_key",
    /// A licence key's label that is too long or has control characters.
    InvalidLabel = "invalid_label",
    /// The licence key is registered already.
    KeyExists = "key_exists",
    /// No licence key with that id.
    KeyNotFound = "key_not_found",

    // Licence keys of those who look up and pull.
    /// The licence key is not registered here: after a licence change, the new key must be
    /// registered.
    LicenceNotRegistered = "licence_not_registered",
    /// The licence key was revoked.
    LicenceRevoked = "licence_revoked",
    /// The licence key has expired.
    LicenceExpired = "licence_expired",
    /// Too many requests: `Retry-After` says when to try again.
    RateLimited = "rate_limited",
    /// The proxy does not serve this device's network.
    NetworkNotAllowed = "network_not_allowed",

    // Participation.
    /// Statistics sent without accepting the current statement.
    StatementNotAccepted = "statement_not_accepted",
    /// A statistics event that is not one (its message names the field).
    InvalidEvent = "invalid_event",
    /// A statistics batch without events, or with too many.
    InvalidEvents = "invalid_events",
    /// A product name or version that is not one.
    InvalidProduct = "invalid_product",
    /// An installation token that is not valid.
    InvalidInstallation = "invalid_installation",
    /// An installation token bound to another licence key.
    InstallationKeyMismatch = "installation_key_mismatch",
    /// An enrolment challenge that this server did not issue.
    InvalidChallenge = "invalid_challenge",
    /// An enrolment challenge past its lifetime: ask for a new one.
    ChallengeExpired = "challenge_expired",
    /// A proof of work that does not meet the challenge's difficulty.
    InvalidNonce = "invalid_nonce",

    // Replication and bundles.
    /// A puller too far behind the change log: it needs a snapshot.
    SnapshotRequired = "snapshot_required",
    /// Bundles are off (no `bundle_public_key`).
    BundlesDisabled = "bundles_disabled",
    /// A backup of a store that repnet does not copy itself (a Redis Cluster).
    BackupUnsupported = "backup_unsupported",
    /// A bundle that cannot be read.
    InvalidBundle = "invalid_bundle",
    /// A bundle whose signature does not verify with the configured key.
    BundleSignature = "bundle_signature",
    /// A bundle that starts after what this server has applied: apply the ones before it.
    BundleOutOfOrder = "bundle_out_of_order",
    /// A bundle older than what this server has applied.
    BundleOlder = "bundle_older",

    // The server or the proxy itself.
    /// The server is starting or stopping: try another, or again shortly.
    NotReady = "not_ready",
    /// The server is stopping: the request was not finished.
    Stopping = "stopping",
    /// Too many connections or too much body data at once: try again shortly.
    Busy = "busy",
    /// The answer was not ready in time.
    Timeout = "timeout",
    /// The disk is full: nothing was changed.
    InsufficientStorage = "insufficient_storage",
    /// The knowledge base's store (a Redis Cluster) cannot be reached: nothing was changed;
    /// try again shortly, or another node.
    StoreUnavailable = "store_unavailable",
    /// The proxy's upstream cannot be reached.
    UpstreamUnavailable = "upstream_unavailable",
    /// The proxy's upstream refuses the proxy (its licence key, say).
    UpstreamRefused = "upstream_refused",
    /// The proxy is switched off by its administrator: use the reputation server directly.
    ProxyDisabled = "proxy_disabled",
    /// A failure of the server itself: its log has the details.
    Internal = "internal",
}

impl ErrorCode {
    /// The code of a model parse error.
    pub fn of(error: &repnet_model::ParseError) -> ErrorCode {
        use repnet_model::ParseError;
        match error {
            ParseError::Hash(_) => ErrorCode::InvalidHash,
            ParseError::Domain(_) => ErrorCode::InvalidDomain,
            ParseError::Ip(_) => ErrorCode::InvalidIp,
            ParseError::Verdict(_) => ErrorCode::InvalidVerdict,
            ParseError::Category(_) => ErrorCode::InvalidCategory,
            ParseError::Confidence(_) => ErrorCode::InvalidConfidence,
            ParseError::Source(_) => ErrorCode::InvalidSource,
            ParseError::Name(_) => ErrorCode::InvalidName,
            ParseError::Url(_) => ErrorCode::InvalidUrl,
            ParseError::Prefix(_) => ErrorCode::InvalidPrefix,
        }
    }

    /// The code of `text`, if it is one this version knows.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case, safe to match on: `invalid_hash`, `invalid_json`, `batch_too_large`,
    /// … (every code in docs/http-api.md, "Errors").
    pub code: String,
    /// What was wrong and what to do about it.
    pub message: String,
}

impl ErrorDetail {
    /// The code, if this version knows it.
    pub fn known_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }
}

/// A JSON body that could not be turned into a request: which part, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// [`ErrorCode::InvalidJson`] for bytes that are not JSON, [`ErrorCode::InvalidRequest`]
    /// for JSON of the wrong shape.
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert_eq!(ErrorCode::parse(text), Some(*code));
            assert!(!code.meaning().is_empty());
        }
        assert_eq!(ErrorCode::parse("from_a_newer_server"), None);
    }

    /// docs/http-api.md lists every code with its meaning.
    #[test]
    fn every_code_is_documented() {
        let docs = include_str!("../../../docs/http-api.md");
        for code in ErrorCode::ALL {
            assert!(
                docs.contains(&format!("| `{}` |", code.as_str())),
                "docs/http-api.md does not list {code} in its table of errors"
            );
        }
    }

    #[test]
    fn parse_errors_have_their_codes() {
        let error = repnet_model::Domain::new("").unwrap_err();
        assert_eq!(ErrorCode::of(&error), ErrorCode::InvalidDomain);
    }
}
