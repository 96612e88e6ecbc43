//! Look up: any object, with the `explain` view — every source, what it said, and why the
//! verdict won — as `GET /v1/<kind>s/…?explain=true` answers it.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_model::{ObjectKind, Reputation};
use serde::Deserialize;

use super::{Pages, SignedIn, failure, page};

#[derive(Debug, Default, Deserialize)]
pub(super) struct Asked {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
}

/// `GET /console/lookup[?kind=…&value=…]`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    asked: Result<Query<Asked>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let asked = asked.map(|Query(asked)| asked).unwrap_or_default();
    let value = asked.value.trim();
    let (status, result) = if value.is_empty() {
        (StatusCode::OK, html! {})
    } else {
        match look_up(&state, &asked.kind, value).await {
            Ok(reputation) => (StatusCode::OK, answer(&reputation)),
            Err(error) => (error.status, failure(&error)),
        }
    };
    let kind = if asked.kind.is_empty() {
        "file"
    } else {
        asked.kind.as_str()
    };
    let body = html! {
        form method="get" action="/console/lookup" role="search" {
            label for="kind" { "Kind of object" }
            select #kind name="kind" {
                @for (option, label) in super::verdicts::KINDS {
                    option value=(option) selected[kind == *option] { (label) }
                }
            }
            label for="value" { "Object" }
            input #value name="value" value=(value) required size="70";
            " " button type="submit" { "Look up" }
        }
        (result)
    };
    page(
        &console,
        &session,
        "/console/lookup",
        "Look up",
        status,
        body,
    )
}

/// The object's reputation, asked as a lookup asks it (a domain covers its parents, a URL
/// its expressions).
async fn look_up(state: &crate::AppState, kind: &str, value: &str) -> Result<Reputation, ApiError> {
    let kind: ObjectKind = kind
        .parse()
        .map_err(|error| ApiError::invalid("kind", &error))?;
    let query = crate::lookup::Lookup::parse(kind, value)
        .map_err(|error| ApiError::invalid("value", &error))?;
    Ok(crate::lookup::assess(state, vec![query]).await?.remove(0))
}

fn answer(reputation: &Reputation) -> Markup {
    let explanation = repnet_protocol::explain_records(reputation);
    let time = |at: Option<repnet_model::Timestamp>| {
        at.and_then(repnet_protocol::rfc3339)
            .unwrap_or_else(|| "—".to_owned())
    };
    html! {
        h2 { "Answer" }
        dl {
            dt { "Object" } dd { span.hint { (reputation.object.kind()) } " " code { (reputation.object) } }
            dt { "Verdict" } dd { strong { (reputation.verdict) } }
            dt { "Confidence" } dd { (reputation.confidence.get()) }
            dt { "Decided by" } dd { @match &reputation.source { Some(source) => (source), None => "nothing is known" } }
            @if let Some(threat) = &reputation.threat { dt { "Threat" } dd { (threat) } }
            @if !reputation.categories.is_empty() {
                dt { "Categories" } dd { (reputation.categories.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")) }
            }
            dt { "Seen" } dd { "first " (time(reputation.first_seen)) ", last " (time(reputation.last_seen)) }
            dt { "Prevalence" } dd { (reputation.prevalence) " devices" }
            @if let Some(matched) = &reputation.matched { dt { "Matched" } dd { code { (matched) } } }
            dt { "Cached by clients for" } dd { (reputation.ttl) " s" }
        }
        h2 { "Why" }
        p { "Precedence: " (explanation.rule) "." }
        @if let Some(rule) = &explanation.expression_rule { p { (rule) } }
        @if let Some(reason) = &explanation.expression_reason { p { "The expression that decided: " (reason) "." } }
        @if explanation.records.is_empty() {
            p { "No source has said anything about it." }
        } @else {
            div.table-wrap { table {
                caption.hint { "Every source's record, the deciding one first" }
                thead { tr {
                    th scope="col" { "Source" } th scope="col" { "Verdict" } th scope="col" { "Confidence" }
                    th scope="col" { "Threat" } th scope="col" { "Expression" } th scope="col" { "Seen" } th scope="col" { "Decided" }
                } }
                tbody {
                    @for record in &explanation.records {
                        tr {
                            td { (record.source) }
                            td { (verdict_text(record.verdict)) }
                            td { (record.confidence) }
                            td { @if let Some(threat) = &record.threat { (threat) } }
                            td { @if let Some(expression) = &record.expression { code { (expression) } } }
                            td { (record.first_seen.as_deref().unwrap_or("—")) " – " (record.last_seen.as_deref().unwrap_or("—")) }
                            td { @if record.decisive { strong { "yes" } @if let Some(reason) = &record.reason { ": " (reason) } } @else { "no" } }
                        }
                    }
                }
            } }
        }
    }
}

fn verdict_text(verdict: repnet_protocol::Verdict) -> &'static str {
    match verdict {
        repnet_protocol::Verdict::Trusted => "trusted",
        repnet_protocol::Verdict::Riskware => "riskware",
        repnet_protocol::Verdict::Untrusted => "untrusted",
        repnet_protocol::Verdict::Unknown => "unknown",
    }
}
