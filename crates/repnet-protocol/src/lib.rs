//! The wire formats of repnet's HTTP API, shared by the server, the client and the CLI: JSON,
//! and the compact binary form of batch file lookups ([`binary`]).
//!
//! Request types keep client input as text (borrowed where possible) so that the server can
//! validate it with the model's parsers and report exactly which field was wrong. Response
//! types are built from model values with [`Reputation::from_model`] and friends.

mod admin;
pub mod binary;
mod error;
pub mod installation;
mod licence;
mod lookup;
pub mod proxies;
pub mod replication;
mod search;
mod time;
mod view;

pub use admin::{
    BACKUP_FILES, BundleApplied, EngineStatus, FedFrom, FeedStatus, FeedStatusList, ImportParams,
    ImportReport, LocalVerdictEntry, LocalVerdictList, ReviewEntry, ReviewList, ServerStatus,
    SetLocalVerdict, SettleReview, Statement, StatisticsAccepted, StatisticsBatch, StatisticsEvent,
    UpstreamStatus, WorkerStatus,
};
pub use error::{BodyError, ErrorBody, ErrorCode, ErrorDetail};
pub use installation::{EnrolInstallation, InstallationChallenge, InstallationToken};
pub use licence::{
    AddLicenceKey, LicenceKeyEntry, LicenceKeyError, LicenceKeyList, TimeError, bearer_token,
    check_licence_key, licence_key_id, parse_time,
};
pub use lookup::{
    ExplainedRecord, Explanation, FileHashesText, FileRef, Hashes, ItemTarget, LookupItem,
    LookupOutput, LookupRequest, LookupResponse, LookupResult, ObjectRef, Reputation, Verdict,
    explain_records, parse_lookup_request,
};
pub use search::{
    HashMatch, HashSearchRequest, HashSearchResponse, MAX_PREFIXES, SearchedPrefix, parse_prefix,
    parse_prefix_of,
};
pub use time::rfc3339;
pub use view::{LookupResponseJson, ReputationJson};

use serde::{Deserialize, Serialize};

/// Parses a JSON request body, naming the path of the offending field in the error
/// (`items[3]: unknown field "hash"`).
pub fn parse_body<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, BodyError> {
    // Every request body is an object; serde would also accept an array for a struct, with a
    // baffling message.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(BodyError {
            code: ErrorCode::InvalidRequest,
            message: "the body must be a JSON object, such as {\"items\": [...]}".to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let code = if inner.is_data() {
            ErrorCode::InvalidRequest
        } else {
            ErrorCode::InvalidJson
        };
        let message = match (code, path.as_str()) {
            (ErrorCode::InvalidJson, _) => format!("the body is not valid JSON: {inner}"),
            (_, "." | "") => format!("the body does not have the expected shape: {inner}"),
            (_, path) => format!("{path}: {inner}"),
        };
        BodyError { code, message }
    })?;
    deserializer.end().map_err(|error| BodyError {
        code: ErrorCode::InvalidJson,
        message: format!("the body is not valid JSON: {error}"),
    })?;
    Ok(value)
}

/// Serialises a response body. Our types always serialise; the fallback keeps that a
/// property of the types rather than a panic.
/// Why a `PATCH` of settings cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("give a JSON object of the settings to change, e.g. {{\"require_key\":true}}")]
    NotAnObject,
    #[error("{key:?} is not a setting that changes at run time: {known}")]
    UnknownSetting { key: String, known: String },
    /// A value of the wrong type or out of range: serde's message names the setting.
    #[error("{0}")]
    Invalid(#[source] serde_json::Error),
}

/// Applies a JSON object of changes (`PATCH` of settings) to `current`: only the keys it names
/// change, and every one must be a field of `T`. The message of an error names the key.
pub fn merge_patch<T: Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &[u8],
) -> Result<T, PatchError> {
    let patch: serde_json::Value = serde_json::from_slice(patch).map_err(PatchError::NotJson)?;
    let serde_json::Value::Object(changes) = patch else {
        return Err(PatchError::NotAnObject);
    };
    let mut merged = serde_json::to_value(current).map_err(PatchError::Invalid)?;
    if let serde_json::Value::Object(fields) = &mut merged {
        for (key, value) in changes {
            if !fields.contains_key(&key) {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(PatchError::UnknownSetting {
                    key,
                    known: known.join(", "),
                });
            }
            fields.insert(key, value);
        }
    }
    serde_json::from_value(merged).map_err(PatchError::Invalid)
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|error| {
        format!(
            r#"{{"error":{{"code":"internal","message":"cannot encode the answer: {error}"}}}}"#
        )
        .into_bytes()
    })
}

/// Pretty JSON for people reading a terminal (`repnet lookup --format json`).
pub fn to_pretty_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|error| format!("cannot encode the output: {error}"))
}

/// A response body that is not what was expected (for clients).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(#[from] serde_json::Error);

/// Parses a response body (for clients).
pub fn from_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, JsonError> {
    Ok(serde_json::from_slice(bytes)?)
}
