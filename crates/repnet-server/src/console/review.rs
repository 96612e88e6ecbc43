//! False-positive reports and the engine's verdicts to review: each open item with its
//! object's answer now (verdict, deciding source, prevalence), settled in one action —
//! accepted (a local trusted verdict) or rejected — through the API's own `settle`.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use repnet_http::console::see_other;
use repnet_protocol::SettleReview;
use serde::Deserialize;

use super::{CsrfForm, Pages, SignedForm, SignedIn, failure, page, refused};

#[derive(Debug, Deserialize)]
pub(super) struct SettleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    /// `trusted` (accept the report, or overrule the engine) or `dismiss`.
    #[serde(default)]
    verdict: String,
}

impl CsrfForm for SettleForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Done {
    #[serde(default)]
    done: String,
}

/// `GET /console/review`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = match done
        .map(|Query(done)| done.done)
        .unwrap_or_default()
        .as_str()
    {
        "trusted" => Some("Accepted: the object has a local trusted verdict now."),
        "dismiss" => Some("Closed without a verdict."),
        _ => None,
    };
    let (status, body) = match crate::api::statistics::review_items(&state).await {
        Err(error) => (error.status, failure(&error)),
        Ok(items) => (
            StatusCode::OK,
            html! {
                @if let Some(notice) = notice { p.notice role="status" { (notice) } }
                p.hint {
                    "Participants' false-positive reports, and the reputation engine's verdicts, wait here. "
                    "Accepting a report sets a local trusted verdict on the object (it answers every lookup at once "
                    "and reaches private servers and proxies); rejecting closes it and changes nothing."
                }
                @if items.is_empty() {
                    p { "Nothing to review." }
                } @else {
                    div.table-wrap { table {
                        thead { tr {
                            th scope="col" { "Object" } th scope="col" { "Item" } th scope="col" { "Answer now" }
                            th scope="col" { "Prevalence" } th scope="col" { "Reported" } th scope="col" { "Comment" }
                            th scope="col" { "Settle" }
                        } }
                        tbody {
                            @for (item, reputation) in &items {
                                tr {
                                    td { span.hint { (item.object.kind()) } br; code { (item.object) } }
                                    td {
                                        @match item.engine {
                                            Some(verdict) => { "the engine's verdict: " strong { (verdict) } }
                                            None => { "false-positive report" @if item.reports != 1 { " (" (item.reports) " reports)" } }
                                        }
                                    }
                                    td {
                                        (reputation.verdict)
                                        @if let Some(source) = &reputation.source { span.hint { " by " (source) } }
                                    }
                                    td { (reputation.prevalence) " devices" }
                                    td {
                                        @match repnet_protocol::rfc3339(item.last_reported) { Some(at) => (at), None => "—" }
                                    }
                                    td { @if let Some(comment) = &item.comment { (comment) } }
                                    td {
                                        form method="post" action="/console/review" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="id" value=(item.id);
                                            @if item.engine.is_some() {
                                                button type="submit" name="verdict" value="dismiss" { "Keep the engine's verdict" }
                                                " "
                                                button type="submit" name="verdict" value="trusted" { "Overrule: trust it" }
                                            } @else {
                                                button type="submit" name="verdict" value="trusted" { "Accept: trust it" }
                                                " "
                                                button type="submit" name="verdict" value="dismiss" { "Reject" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            },
        ),
    };
    page(
        &console,
        &session,
        "/console/review",
        "False-positive reports",
        status,
        body,
    )
}

/// `POST /console/review`: settles one item.
pub(super) async fn settle(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<SettleForm>,
) -> Response {
    let request = SettleReview {
        verdict: form.verdict.clone(),
        comment: None,
    };
    match crate::api::statistics::settle(&state, &form.id, request).await {
        Ok(()) => see_other(&format!(
            "/console/review?done={}",
            if form.verdict == "dismiss" {
                "dismiss"
            } else {
                "trusted"
            }
        )),
        Err(error) => refused(
            &console,
            &session,
            ("/console/review", "False-positive reports"),
            &error,
        ),
    }
}
