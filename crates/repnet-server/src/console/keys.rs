//! Licence keys: issue one (a new random key, shown once, on the answer to the form and
//! nowhere after), list them with their last use, revoke one. The keys themselves are never
//! kept: the store holds their hashes, as `POST /v1/admin/keys` registers them.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::{Session, see_other};
use repnet_protocol::AddLicenceKey;
use serde::Deserialize;

use super::{CsrfForm, Pages, SignedForm, SignedIn, page, refused};

#[derive(Debug, Default, Deserialize)]
pub(super) struct IssueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires: String,
}

impl CsrfForm for IssueForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

impl CsrfForm for RevokeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Done {
    #[serde(default)]
    revoked: String,
}

/// `GET /console/keys`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let revoked = done.map(|Query(done)| done.revoked).unwrap_or_default();
    let notice = (!revoked.is_empty()).then(|| {
        html! { p.notice role="status" { "Key " code { (revoked) } " revoked: requests with it are refused from now on." } }
    });
    let body = listing(&state, &session, notice, &IssueForm::default(), None);
    page(
        &console,
        &session,
        "/console/keys",
        "Licence keys",
        StatusCode::OK,
        body,
    )
}

/// `POST /console/keys`: issues a new key and shows it, once.
pub(super) async fn issue(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<IssueForm>,
) -> Response {
    let key = new_key();
    let request = AddLicenceKey {
        key: key.clone(),
        label: Some(form.label.trim().to_owned()).filter(|label| !label.is_empty()),
        expires: Some(form.expires.trim().to_owned()).filter(|expires| !expires.is_empty()),
    };
    match state
        .licences
        .register(&request, repnet_runtime::now())
        .await
        .map_err(ApiError::from)
    {
        Ok(licence) => {
            let notice = html! {
                div.notice role="status" {
                    p { "Key issued" @if let Some(label) = &licence.label { " for " strong { (label) } } ". Copy it now: it is not kept, and this page is the only time it is shown." }
                    p { code #issued-key { (key) } }
                    p.hint { "Its id, for revoking it later: " code { (licence.id) } }
                }
            };
            let body = listing(&state, &session, Some(notice), &IssueForm::default(), None);
            page(
                &console,
                &session,
                "/console/keys",
                "Licence keys",
                StatusCode::CREATED,
                body,
            )
        }
        Err(error) => {
            let status = error.status;
            let body = listing(&state, &session, None, &form, Some(&error));
            page(
                &console,
                &session,
                "/console/keys",
                "Licence keys",
                status,
                body,
            )
        }
    }
}

/// `POST /console/keys/revoke`.
pub(super) async fn revoke(
    axum::extract::State((state, console)): Pages,
    SignedForm(session, form): SignedForm<RevokeForm>,
) -> Response {
    match state
        .licences
        .revoke(&form.id, repnet_runtime::now())
        .await
        .map_err(ApiError::from)
    {
        Ok(licence) => see_other(&format!("/console/keys?revoked={}", licence.id)),
        Err(error) => refused(
            &console,
            &session,
            ("/console/keys", "Licence keys"),
            &error,
        ),
    }
}

/// A new licence key: 128 random bits, hex, with a prefix that says what it is.
fn new_key() -> String {
    let mut bytes = [0u8; 16];
    // Without the system's randomness no key could be trusted: fail loudly.
    getrandom::fill(&mut bytes).expect("the system's random number generator");
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("repnet-{hex}")
}

fn listing(
    state: &crate::AppState,
    session: &Session,
    notice: Option<Markup>,
    form: &IssueForm,
    error: Option<&ApiError>,
) -> Markup {
    let time = |at: Option<repnet_model::Timestamp>| at.and_then(repnet_protocol::rfc3339);
    let now = repnet_runtime::now();
    let licences = state.licences.list();
    let error_for = |field: &str| {
        error.filter(|error| {
            let expires = error.message.starts_with("expires");
            (field == "expires") == expires
        })
    };
    html! {
        @if let Some(notice) = notice { (notice) }
        p.hint {
            @if state.licences.required() { "This server requires a licence key for lookups and pulls." }
            @else { "This server requires a licence key for pulls (private servers, proxies); lookups need none." }
        }
        section aria-labelledby="issue-heading" {
            h2 #issue-heading { "Issue a key" }
            form method="post" action="/console/keys" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="label" { "For (an organisation, a contract; optional)" }
                input #label name="label" value=(form.label) size="40"
                    aria-describedby=[error_for("label").map(|_| "label-error")];
                @if let Some(error) = error_for("label") { p #label-error .error role="alert" { (error.message) } }
                label for="expires" { "Stops working (optional: 2027-01-01 or RFC 3339)" }
                input #expires name="expires" value=(form.expires) size="25"
                    aria-describedby=[error_for("expires").map(|_| "expires-error")];
                @if let Some(error) = error_for("expires") { p #expires-error .error role="alert" { (error.message) } }
                p { button type="submit" { "Issue a key" } }
            }
        }
        section aria-labelledby="keys-heading" {
            h2 #keys-heading { "Keys" }
            @if licences.is_empty() {
                p { "No key is registered." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Id" } th scope="col" { "For" } th scope="col" { "Created" }
                        th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { span.hint { "Action" } }
                    } }
                    tbody {
                        @for licence in &licences {
                            @let expired = licence.expires.is_some_and(|expires| expires <= now);
                            tr {
                                td { code { (licence.id) } }
                                td { @if let Some(label) = &licence.label { (label) } }
                                td { (time(Some(licence.created)).unwrap_or_default()) }
                                td { (time(licence.expires).unwrap_or_else(|| "never".to_owned())) }
                                td { (time(licence.last_used).unwrap_or_else(|| "never".to_owned())) }
                                td {
                                    @if let Some(revoked) = time(licence.revoked) { strong { "revoked" } " " (revoked) }
                                    @else if expired { strong { "expired" } }
                                    @else { "active" }
                                }
                                td {
                                    @if licence.revoked.is_none() {
                                        form method="post" action="/console/keys/revoke" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="id" value=(licence.id);
                                            button type="submit" aria-label={ "Revoke key " (licence.id) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="change-heading" {
            h2 #change-heading { "When an organisation's licence changes" }
            p {
                "Its old key stops working when you revoke it (or when it expires): its private servers and proxies "
                "keep answering from what they have, and their pulls are refused with " code { "licence_revoked" }
                " (or " code { "licence_not_registered" } " for a key never registered) until a new key is registered here "
                "and written into their key file, which they read again within two seconds, without a restart."
            }
        }
    }
}
