//! The admin API's bodies: local verdicts.

use repnet_model as model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::lookup::{LookupItem, ObjectRef, Verdict, rfc3339};

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
}

impl LocalVerdictEntry {
    pub fn from_model(
        object: &model::Object,
        record: &model::SourceRecord,
        comment: Option<&str>,
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
        }
    }
}

/// `GET /v1/admin/verdicts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalVerdictList {
    pub verdicts: Vec<LocalVerdictEntry>,
}
