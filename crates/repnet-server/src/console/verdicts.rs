//! Local verdicts: search, add (any kind of object, a comment, an optional lapse time),
//! remove. A change goes through the admin API's own checks and store call, so it is live on
//! the next lookup and reaches private servers and proxies through the change log.

use std::borrow::Cow;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::{Session, see_other};
use repnet_protocol::{FileRef, LookupItem, SetLocalVerdict};
use serde::Deserialize;

use super::{CsrfForm, Pages, SignedForm, SignedIn, page, refused};

/// The kinds of object a form names, with their labels.
pub(super) const KINDS: &[(&str, &str)] = &[
    ("file", "File hash (MD5, SHA-1 or SHA-256)"),
    ("domain", "Domain"),
    ("url", "URL"),
    ("ip", "IP address"),
    ("certificate", "Certificate (SHA-256)"),
];

const VERDICTS: &[&str] = &["untrusted", "riskware", "trusted"];

/// Verdicts listed on one page: a search narrows down more.
const MAX_SHOWN: usize = 500;

/// The add form as sent (and sent back, filled in, when it is refused).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    threat: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    expires: String,
}

impl CsrfForm for AddForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
}

impl CsrfForm for RemoveForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    q: String,
    /// What the last change did, to say so once.
    #[serde(default)]
    done: String,
}

/// `GET /console/verdicts[?q=…]`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    search: Result<Query<Search>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let search = search.map(|Query(search)| search).unwrap_or_default();
    let notice = match search.done.as_str() {
        "added" => Some("Local verdict set: lookups answer with it now."),
        "removed" => Some("Local verdict removed."),
        _ => None,
    };
    let body = listing(
        &state,
        &session,
        &search.q,
        notice,
        &AddForm::default(),
        None,
    )
    .await;
    page(
        &console,
        &session,
        "/console/verdicts",
        "Local verdicts",
        StatusCode::OK,
        body,
    )
}

/// `POST /console/verdicts`: sets a local verdict.
pub(super) async fn add(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<AddForm>,
) -> Response {
    let result = match item(&form.kind, form.value.trim()) {
        Err(error) => Err(error),
        Ok(object) => {
            let request = SetLocalVerdict {
                object,
                verdict: form.verdict.clone(),
                threat: Some(form.threat.trim().to_owned()).filter(|threat| !threat.is_empty()),
                categories: Vec::new(),
                comment: Some(form.comment.clone()).filter(|comment| !comment.trim().is_empty()),
                expires: Some(form.expires.trim().to_owned()).filter(|expires| !expires.is_empty()),
            };
            crate::api::verdicts::set_local(&state, &request).await
        }
    };
    match result {
        Ok(_) => see_other("/console/verdicts?done=added"),
        Err(error) => {
            let status = error.status;
            let body = listing(&state, &session, "", None, &form, Some(&error)).await;
            page(
                &console,
                &session,
                "/console/verdicts",
                "Local verdicts",
                status,
                body,
            )
        }
    }
}

/// `POST /console/verdicts/remove`.
pub(super) async fn remove(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<RemoveForm>,
) -> Response {
    let result = match item(&form.kind, &form.value) {
        Err(error) => Err(error),
        Ok(item) => match crate::api::lookups::item_object(&item, "object") {
            Err(error) => Err(error),
            Ok((object, _)) => crate::api::verdicts::remove_local(&state, &object).await,
        },
    };
    match result {
        Ok(()) => see_other("/console/verdicts?done=removed"),
        Err(error) => refused(
            &console,
            &session,
            ("/console/verdicts", "Local verdicts"),
            &error,
        ),
    }
}

/// The object a form names, as a lookup item (what the API's parser takes).
fn item<'a>(kind: &str, value: &'a str) -> Result<LookupItem<'a>, ApiError> {
    let mut item = LookupItem::default();
    let value = Cow::Borrowed(value);
    match kind {
        "file" => item.file = Some(FileRef::Hash(value)),
        "domain" => item.domain = Some(value),
        "url" => item.url = Some(value),
        "ip" => item.ip = Some(value),
        "certificate" => item.certificate = Some(value),
        _ => {
            return Err(ApiError::bad_request(
                repnet_protocol::ErrorCode::InvalidRequest,
                "object: choose what kind of object it is (file, domain, URL, IP address or certificate)",
            ));
        }
    }
    Ok(item)
}

/// The add form, the search, and the local verdicts (those matching `query`).
async fn listing(
    state: &crate::AppState,
    session: &Session,
    query: &str,
    notice: Option<&str>,
    form: &AddForm,
    error: Option<&ApiError>,
) -> Markup {
    let verdicts = state.store.local_verdicts().await;
    // Which field the error is about: its message starts with the field's name.
    let field_of = |error: &ApiError| {
        let message = error.message.as_str();
        ["verdict", "threat", "comment", "expires"]
            .into_iter()
            .find(|field| message.starts_with(&format!("{field}:")))
            .unwrap_or("value")
    };
    let error_field = error.map(field_of);
    let error_for = |field: &str| error.filter(|_| error_field == Some(field));
    let query = query.trim();
    html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        section aria-labelledby="add-heading" {
            h2 #add-heading { "Set a local verdict" }
            form method="post" action="/console/verdicts" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="kind" { "Kind of object" }
                select #kind name="kind" {
                    @for (kind, label) in KINDS {
                        option value=(kind) selected[form.kind == *kind] { (label) }
                    }
                }
                label for="value" { "Object" }
                input #value name="value" value=(form.value) required size="70"
                    aria-invalid=[error_for("value").map(|_| "true")]
                    aria-describedby=[error_for("value").map(|_| "value-error")];
                @if let Some(error) = error_for("value") { p #value-error .error role="alert" { (error.message) } }
                label for="verdict" { "Verdict" }
                select #verdict name="verdict" aria-describedby=[error_for("verdict").map(|_| "verdict-error")] {
                    @for verdict in VERDICTS {
                        option value=(verdict) selected[form.verdict == *verdict] { (verdict) }
                    }
                }
                @if let Some(error) = error_for("verdict") { p #verdict-error .error role="alert" { (error.message) } }
                label for="threat" { "Threat name (optional)" }
                input #threat name="threat" value=(form.threat) size="40"
                    aria-describedby=[error_for("threat").map(|_| "threat-error")];
                @if let Some(error) = error_for("threat") { p #threat-error .error role="alert" { (error.message) } }
                label for="comment" { "Comment (optional: a ticket, a reason)" }
                textarea #comment name="comment" rows="2" cols="60"
                    aria-describedby=[error_for("comment").map(|_| "comment-error")] { (form.comment) }
                @if let Some(error) = error_for("comment") { p #comment-error .error role="alert" { (error.message) } }
                label for="expires" { "Lapses (optional: 2027-01-01 or RFC 3339)" }
                input #expires name="expires" value=(form.expires) size="25"
                    aria-describedby=[error_for("expires").map(|_| "expires-error")];
                @if let Some(error) = error_for("expires") { p #expires-error .error role="alert" { (error.message) } }
                p { button type="submit" { "Set the verdict" } }
            }
        }
        section aria-labelledby="list-heading" {
            h2 #list-heading { "Verdicts set" }
            form method="get" action="/console/verdicts" role="search" {
                label for="q" { "Search objects, threats and comments" }
                input #q type="search" name="q" value=(query);
                " " button type="submit" { "Search" }
            }
            @match verdicts {
                Err(error) => p.error role="alert" { "The local verdicts could not be read: " (error) },
                Ok(verdicts) => {
                    @let matching: Vec<_> = verdicts.iter().filter(|verdict| matches(verdict, query)).collect();
                    @let shown = &matching[..matching.len().min(MAX_SHOWN)];
                    p {
                        (shown.len()) " of " (verdicts.len()) " shown."
                        @if shown.len() < matching.len() { " " (matching.len()) " match: search to narrow them down." }
                    }
                    div.table-wrap { table {
                        thead { tr {
                            th scope="col" { "Object" } th scope="col" { "Verdict" } th scope="col" { "Threat" }
                            th scope="col" { "Comment" } th scope="col" { "Lapses" } th scope="col" { span.hint { "Action" } }
                        } }
                        tbody {
                            @for verdict in shown.iter().copied() {
                                @let (kind, value) = form_object(&verdict.object);
                                tr {
                                    td { span.hint { (verdict.object.kind()) } br; code { (verdict.object) } }
                                    td { (verdict.record.verdict) }
                                    td { @if let Some(threat) = &verdict.record.threat { (threat) } }
                                    td { @if let Some(comment) = &verdict.comment { (comment) } }
                                    td { @match verdict.expires.and_then(repnet_protocol::rfc3339) { Some(at) => (at), None => "never" } }
                                    td {
                                        form method="post" action="/console/verdicts/remove" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="kind" value=(kind);
                                            input type="hidden" name="value" value=(value);
                                            button type="submit" aria-label={ "Remove the verdict on " (verdict.object) } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    }
}

/// Whether a local verdict matches a search (empty: every one).
fn matches(verdict: &repnet_store::LocalVerdict, query: &str) -> bool {
    if query.is_empty() {
        return true;
    }
    let query = query.to_lowercase();
    verdict.object.to_string().to_lowercase().contains(&query)
        || verdict
            .record
            .threat
            .as_ref()
            .is_some_and(|threat| threat.as_str().to_lowercase().contains(&query))
        || verdict
            .comment
            .as_ref()
            .is_some_and(|comment| comment.to_lowercase().contains(&query))
}

/// The kind and value a form gives to name `object` again.
fn form_object(object: &repnet_model::Object) -> (&'static str, String) {
    (object.kind().as_str(), object.to_string())
}
