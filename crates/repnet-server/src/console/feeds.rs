//! Feeds: each configured feed's state, last success, last error, counts and next refresh;
//! a refresh now; a file uploaded and imported as `POST /v1/admin/imports` imports it.

use axum::extract::{Multipart, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::{Session, forbidden_form, see_other};
use repnet_protocol::{ErrorCode, ImportParams, ImportReport};
use serde::Deserialize;

use super::{CsrfForm, Pages, SignedForm, SignedIn, failure, page, refused};

#[derive(Debug, Deserialize)]
pub(super) struct RefreshForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

impl CsrfForm for RefreshForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Done {
    #[serde(default)]
    refreshed: String,
}

/// `GET /console/feeds`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let refreshed = done.map(|Query(done)| done.refreshed).unwrap_or_default();
    let notice = (!refreshed.is_empty()).then(|| {
        html! { p.notice role="status" { "Feed " strong { (refreshed) } " refreshed: its state below is after the refresh." } }
    });
    let body = listing(&state, &session, notice);
    page(
        &console,
        &session,
        "/console/feeds",
        "Feeds",
        StatusCode::OK,
        body,
    )
}

/// `POST /console/feeds/refresh`: refreshes one feed now, as
/// `POST /v1/admin/feeds/{name}/refresh` does.
pub(super) async fn refresh(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<RefreshForm>,
) -> Response {
    match state.feeds.refresh_named(&form.name, &state.store).await {
        Some(status) => see_other(&format!(
            "/console/feeds?refreshed={}",
            url_component(&status.name)
        )),
        None => {
            let error = ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownFeed,
                format!("no scheduled feed is called {:?}", form.name),
            );
            refused(&console, &session, ("/console/feeds", "Feeds"), &error)
        }
    }
}

/// `POST /console/feeds/upload` (`multipart/form-data`: `csrf`, `format`, `source`, then
/// `file`): imports the file, bounded as an upload to the API is.
pub(super) async fn upload(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let Ok(mut multipart) = multipart else {
        return forbidden_form();
    };
    let mut params = ImportParams::default();
    let mut allowed = false;
    let mut result: Option<Result<ImportReport, ApiError>> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => {
                result = Some(Err(ApiError::bad_request(
                    ErrorCode::InvalidBody,
                    format!("the form could not be read: {error}"),
                )));
                break;
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            // The token comes before the file in the form: nothing is read without it.
            if !allowed {
                return forbidden_form();
            }
            result = Some(import(&state, &params, field).await);
            break;
        }
        let Some(text) = small_text(field).await else {
            return forbidden_form();
        };
        match name.as_str() {
            "csrf" => allowed = session.allows(&text),
            "format" => params.format = Some(text).filter(|text| !text.is_empty()),
            "source" => params.source = Some(text).filter(|text| !text.is_empty()),
            _ => {}
        }
    }
    if !allowed {
        return forbidden_form();
    }
    let result = result.unwrap_or_else(|| {
        Err(ApiError::bad_request(
            ErrorCode::EmptyBody,
            "file: choose the feed file to import",
        ))
    });
    let (status, notice) = match &result {
        Ok(report) => (StatusCode::OK, imported(report)),
        Err(error) => (error.status, failure(error)),
    };
    let body = listing(&state, &session, Some(notice));
    page(&console, &session, "/console/feeds", "Feeds", status, body)
}

/// The longest text field the upload form has (a CSRF token, a format, a source name).
const MAX_FIELD_BYTES: usize = 1024;

/// A form's text field, trimmed; `None` when it is not UTF-8 or longer than any of the form's
/// fields can be (the route has no body limit: the file is bounded as it is spooled, and the
/// other fields here).
async fn small_text(mut field: axum::extract::multipart::Field<'_>) -> Option<String> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_FIELD_BYTES => {
                bytes.extend_from_slice(&chunk)
            }
            Ok(None) => break,
            Ok(Some(_)) | Err(_) => return None,
        }
    }
    String::from_utf8(bytes)
        .ok()
        .map(|text| text.trim().to_owned())
}

async fn import(
    state: &crate::AppState,
    params: &ImportParams,
    field: axum::extract::multipart::Field<'_>,
) -> Result<ImportReport, ApiError> {
    let (format, options) =
        crate::api::feeds::upload_options(Ok(Query(params.clone())), state.store.dir())?;
    let path = crate::api::feeds::spool_stream(
        state.store.dir(),
        field,
        state.feeds.max_upload_bytes(),
        "file: the file is empty: choose the feed file to import",
    )
    .await?;
    state
        .feeds
        .upload(&state.store, path, format, options)
        .await
}

fn imported(report: &ImportReport) -> Markup {
    html! {
        div.notice role="status" {
            p {
                "Imported " strong { (report.format) } " as " code { "feed:" (report.source) } ": "
                (report.read) " read, " (report.stored) " stored, " (report.skipped) " skipped, "
                (report.retracted) " retracted."
            }
            @if !report.reasons.is_empty() {
                p { "Skipped: " (report.reasons.iter().map(|(reason, count)| format!("{reason} ({count})")).collect::<Vec<_>>().join(", ")) }
            }
        }
    }
}

fn listing(state: &crate::AppState, session: &Session, notice: Option<Markup>) -> Markup {
    let feeds = state.feeds.statuses();
    html! {
        @if let Some(notice) = notice { (notice) }
        section aria-labelledby="scheduled-heading" {
            h2 #scheduled-heading { "Scheduled feeds" }
            @if feeds.is_empty() {
                p { "No feed is scheduled: add " code { "[[feeds]]" } " to the configuration (docs/feeds.md)." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Feed" } th scope="col" { "State" } th scope="col" { "Last success" }
                        th scope="col" { "Next refresh" } th scope="col" { "Last import" } th scope="col" { "Last error" }
                        th scope="col" { span.hint { "Action" } }
                    } }
                    tbody {
                        @for feed in &feeds {
                            tr {
                                td { strong { (feed.name) } br; span.hint { (feed.format) " · every " (feed.interval_seconds) " s" } br; code { (feed.location) } }
                                td {
                                    (feed.state)
                                    @if feed.consecutive_failures > 0 { br; strong { (feed.consecutive_failures) " failures in a row" } }
                                }
                                td { (feed.last_success.as_deref().unwrap_or("never")) }
                                td { (feed.next_refresh.as_deref().unwrap_or("—")) }
                                td {
                                    @if let Some(report) = &feed.last_import {
                                        (report.stored) " stored, " (report.skipped) " skipped, " (report.retracted) " retracted"
                                    }
                                }
                                td { @if let Some(error) = &feed.error { span.error { (error) } } }
                                td {
                                    form method="post" action="/console/feeds/refresh" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="name" value=(feed.name);
                                        button type="submit" aria-label={ "Refresh " (feed.name) " now" } { "Refresh now" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="upload-heading" {
            h2 #upload-heading { "Import a file" }
            form method="post" action="/console/feeds/upload" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="format" { "Format" }
                select #format name="format" {
                    option value="auto" { "recognise it (auto)" }
                    @for format in repnet_feeds::Format::CONCRETE {
                        option value=(format.name()) { (format.name()) }
                    }
                }
                label for="source" { "Source name (its records are feed:NAME; the format's name if empty)" }
                input #source name="source" size="30";
                label for="file" { "File (plain, gzip or zip)" }
                input #file type="file" name="file" required;
                p.hint { "A full import replaces what the source said before: what the file no longer lists is retracted." }
                p { button type="submit" { "Import" } }
            }
        }
    }
}

/// `text` as one component of a URL's query.
pub(super) fn url_component(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
