//! The admin API's bodies: local verdicts, feed imports and scheduled feeds.

use repnet_model as model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::lookup::{LookupItem, ObjectRef, Verdict};
use crate::time::rfc3339;

/// `PUT /v1/admin/verdicts`: set (or replace) the local verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLocalVerdict<'a> {
    /// The object, as in a lookup item: `{"file": "…"}`, `{"domain": "…"}`, …
    #[serde(borrow)]
    pub object: LookupItem<'a>,
    /// `trusted`, `riskware` or `untrusted`.
    pub verdict: String,
    /// A threat name, or null.
    #[serde(default)]
    pub threat: Option<String>,
    /// Categories such as `malware` or `phishing`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Why the administrator set it (a ticket number, a note); at most 1,000 characters.
    #[serde(default)]
    pub comment: Option<String>,
    /// When it lapses, in the future: `2027-01-01` (midnight UTC) or RFC 3339. None: never.
    #[serde(default)]
    pub expires: Option<String>,
}

/// One local verdict, as `GET /v1/admin/verdicts` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalVerdictEntry {
    pub object: ObjectRef,
    pub verdict: Verdict,
    pub threat: Option<String>,
    pub categories: Vec<String>,
    pub comment: Option<String>,
    /// When it was first set (RFC 3339).
    pub created: Option<String>,
    /// When it was last set.
    pub updated: Option<String>,
    /// When it lapses; absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl LocalVerdictEntry {
    pub fn from_model(
        object: &model::Object,
        record: &model::SourceRecord,
        comment: Option<&str>,
        expires: Option<model::Timestamp>,
    ) -> LocalVerdictEntry {
        LocalVerdictEntry {
            object: ObjectRef::from_model(object, &model::FileHashes::default()),
            verdict: record.verdict.into(),
            threat: record.threat.as_ref().map(|t| t.as_str().to_owned()),
            categories: record
                .categories
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            comment: comment.map(str::to_owned),
            created: rfc3339(record.first_seen),
            updated: rfc3339(record.last_seen),
            expires: expires.and_then(rfc3339),
        }
    }
}

/// `GET /v1/admin/verdicts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalVerdictList {
    pub verdicts: Vec<LocalVerdictEntry>,
}

/// What a feed import did: `POST /v1/admin/imports`, and each scheduled feed's last import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// The format read (`urlhaus`, …; what `auto` recognised).
    pub format: String,
    /// The source the records are stored as (`feed:<name>`).
    pub source: String,
    /// Data rows read (comments, headers and blank lines are not rows).
    pub read: u64,
    /// Entries stored.
    pub stored: u64,
    /// Rows skipped.
    pub skipped: u64,
    /// Skipped rows by kind of problem (`invalid hash`: 3, …).
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// The first bad rows, as `file:line: reason`.
    pub examples: Vec<String>,
    /// Records of the source that the new feed no longer lists, retracted from that source.
    pub retracted: u64,
    /// Keys written to the knowledge base.
    pub keys_written: u64,
    /// How long the import took.
    pub seconds: f64,
}

impl ImportReport {
    /// `read N, stored M, skipped K (reason: n, …)`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "read {}, stored {}, skipped {}",
            self.read, self.stored, self.skipped
        );
        if !self.reasons.is_empty() {
            let reasons: Vec<String> = self
                .reasons
                .iter()
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect();
            line.push_str(&format!(" ({})", reasons.join(", ")));
        }
        line
    }
}

/// One scheduled feed, as `GET /v1/admin/feeds` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedStatus {
    /// The feed's name: its records are stored as `feed:<name>`.
    pub name: String,
    /// The configured format (`auto` when recognised from the content).
    pub format: String,
    /// Where it is fetched from: an `http(s)://` URL or a local path.
    pub location: String,
    pub interval_seconds: u64,
    /// `pending` (not tried yet), `imported`, `not_modified` or `failed`.
    pub state: String,
    /// The last attempt's error, when it failed; the previous data is kept.
    pub error: Option<String>,
    /// When the feed was last tried (RFC 3339).
    pub last_attempt: Option<String>,
    /// When the feed was last imported or confirmed unchanged (RFC 3339).
    pub last_success: Option<String>,
    /// When the next scheduled refresh is due (RFC 3339).
    pub next_refresh: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    /// The validators of the last download, sent back for a conditional GET.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The last import.
    pub last_import: Option<ImportReport>,
}

/// `GET /v1/admin/feeds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedStatusList {
    pub feeds: Vec<FeedStatus>,
}

/// The query of `POST /v1/admin/imports`: what `repnet import` is told besides the file.
/// Unknown parameters are refused, so that a misspelt one is not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The feed's format, or `auto` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The feed's name: records are stored as `feed:<source>` (default: the format's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Overrides the format's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Overrides the feed's threat names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// Categories added to every entry, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Overrides the format's confidence, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<i64>,
    /// Tranco: how many of the top domains to take (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<u64>,
    /// Only add; do not retract what the feed no longer lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<bool>,
    /// Let a full import of an empty feed retract everything of its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_empty: Option<bool>,
}

/// `GET /v1/admin/status`: what the server is in its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServerStatus {
    /// `global` or `private`.
    pub role: String,
    /// Whether lookups need a licence key.
    pub key_required: bool,
    /// Licence keys registered and neither revoked nor expired.
    pub licence_keys: u64,
    /// Entries (objects and hash aliases) in the knowledge base.
    pub knowledge_base_entries: u64,
    /// This server's change log: its id (32 hex digits) and last sequence number.
    pub log_id: String,
    pub sequence: u64,
    /// The oldest sequence a puller can continue from; one further behind gets a snapshot.
    pub oldest_continuable: u64,
    /// The server this one pulls from, if any.
    pub upstream: Option<UpstreamStatus>,
    /// Where this server is in the change log of the network it is fed from (by pulls or by
    /// bundles): what to export the next bundle after (`repnet bundle export --after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fed_from: Option<FedFrom>,
    /// Statistics: objects tracked and their aggregates' bytes on disk; raw events kept and
    /// theirs.
    pub tracked_objects: u64,
    pub aggregate_bytes: u64,
    pub raw_events: u64,
    pub raw_event_bytes: u64,
    /// The server's background workers (feeds, the engine, the upstream puller…).
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
}

/// What a background worker has done since the process started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerStatus {
    /// `engine`, `upstream`, `feed:<name>`, `statistics-writer`, …
    pub name: String,
    /// `busy` (in a unit of work), `idle` (waiting for work), `done` (ended on its own) or
    /// `stopped`.
    pub state: String,
    /// Units of work done, failed ones included, and failed ones.
    pub units: u64,
    pub errors: u64,
    /// When the last unit ended (RFC 3339).
    pub last_unit: Option<String>,
    /// The last failure, and when (RFC 3339); kept after later successes.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// What the worker has to say beyond its counts.
    pub progress: Option<String>,
}

/// A position in another server's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FedFrom {
    /// The other server's log id.
    pub log_id: String,
    /// The last of its changes applied here.
    pub sequence: u64,
}

/// How pulling from the upstream server goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpstreamStatus {
    pub url: String,
    /// Whether the last attempt got an answer from it. A refusal (a revoked key) is an
    /// answer: `last_error` says why.
    pub reachable: bool,
    /// The upstream's log id and sequence, as of the last answer.
    pub upstream_log_id: Option<String>,
    pub upstream_sequence: Option<u64>,
    /// How far this server has applied the upstream's log.
    pub local_sequence: Option<u64>,
    /// `upstream_sequence - local_sequence`: changes not applied yet.
    pub lag: Option<u64>,
    /// RFC 3339 times of the last attempt and the last success.
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    /// Why the last attempt failed; null once one succeeds.
    pub last_error: Option<String>,
    /// Changes and snapshots applied since the server started.
    pub changes_applied: u64,
    pub snapshots_applied: u64,
    /// When the pull under way started (RFC 3339); null between pulls.
    #[serde(default)]
    pub pulling_since: Option<String>,
    /// Seconds since the pull under way last received a byte: a pull that goes
    /// `progress_timeout_seconds` without one fails as stalled.
    #[serde(default)]
    pub stalled_seconds: Option<u64>,
}

/// What applying a bundle did (`POST /v1/admin/bundles`, `repnet bundle import`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundleApplied {
    /// `changes` or `snapshot`.
    pub kind: String,
    /// The log the bundle came from, and the sequence range it covered.
    pub log_id: String,
    pub after: u64,
    pub to: u64,
    /// Entries in the bundle, and keys they changed here.
    pub entries: u64,
    pub keys_written: u64,
}

/// `GET /v1/statement`: what participants in extended mode agree to share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Statement {
    /// Statistics must name this version (`statement_version`) to be accepted.
    pub version: u32,
    pub text: String,
    /// Every kind of data collected, one line each.
    pub categories: Vec<String>,
}

/// `POST /v1/statistics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatisticsBatch {
    /// The statement version the user accepted.
    pub statement_version: u32,
    /// The installation's token, from `POST /v1/installations`; the server hashes its id
    /// with a secret on arrival and uses it only to count distinct devices.
    pub installation: String,
    /// The product and version that sends (`repnet/0.1.0`).
    pub product: String,
    pub events: Vec<StatisticsEvent>,
}

/// One event. Unknown fields are refused: there is no field for a user, host or e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatisticsEvent {
    /// `detection`, `sighting` (first sighting of a file on the device) or `false_positive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file's SHA-256 (hex)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// …or a URL (stored without credentials, query and fragment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// File size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 thumbprint of the file's signing certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// File name or path (user folders are replaced by placeholders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The threat name the product detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// For a false-positive report: the user's comment (e-mail and IP addresses removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `202` to `POST /v1/statistics`: the events are on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatisticsAccepted {
    pub accepted: u64,
}

/// `GET /v1/admin/engine`: the reputation engine's settings and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EngineStatus {
    pub enabled: bool,
    pub interval_seconds: u64,
    pub max_objects_per_tick: u64,
    /// Established installations detecting a file that make it `untrusted`.
    pub detecting_devices: u64,
    /// Established installations reporting a file signed by a trusted certificate (and none
    /// detecting it, none naming another signer) that make it `trusted`.
    pub trusted_devices: u64,
    /// Hours an installation must have been enrolled before the engine counts it.
    pub established_after_hours: u64,
    /// Most verdicts set in an hour (0: no limit), and those set this hour.
    pub max_verdicts_per_hour: u64,
    pub verdicts_this_hour: u64,
    /// Verdicts wait for the next hour's budget.
    pub deferred: bool,
    /// RFC 3339 time of the last tick.
    pub last_tick: Option<String>,
    /// Objects examined, verdicts set and removed since the server started.
    pub examined: u64,
    pub verdicts_set: u64,
    pub verdicts_removed: u64,
    /// Objects with new statistics not examined yet.
    pub pending: u64,
}

/// One item awaiting the administrator: a false-positive report, or a verdict the
/// reputation engine set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewEntry {
    pub id: String,
    /// `false_positive` or `engine`.
    pub kind: String,
    pub object: ObjectRef,
    /// Reports received (0 for the engine's verdicts).
    pub reports: u64,
    /// For a verdict of the engine: when it was set.
    pub first_reported: Option<String>,
    pub last_reported: Option<String>,
    /// The latest reporter's comment, scrubbed of personal data; for the engine, its
    /// evidence.
    pub comment: Option<String>,
    /// The verdict the engine set, for an item of the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_verdict: Option<Verdict>,
    /// The verdict the network gives the object now.
    pub verdict: Verdict,
}

/// `GET /v1/admin/review`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewList {
    pub items: Vec<ReviewEntry>,
}

/// `POST /v1/admin/review/{id}`: settle an item with a local verdict, or dismiss it (for an
/// engine verdict: confirm it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleReview {
    /// `trusted`, `riskware`, `untrusted`, or `dismiss` (close it without a verdict).
    pub verdict: String,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The files of a backup (`GET /v1/admin/backup`, a tar archive; `repnet admin backup`):
/// the knowledge base (LMDB's compacted copy) first, then the server's state files that
/// exist. A restore copies them into an empty data directory.
pub const BACKUP_FILES: [&str; 5] = [
    "data.mdb",
    "settings.json",
    "proxies.json",
    "feeds-state.json",
    "activity.json",
];
