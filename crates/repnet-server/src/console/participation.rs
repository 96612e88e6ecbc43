//! Participation and privacy: the statement as participants read it (`repnet statement`,
//! `GET /v1/statement`), its version, how long raw events are kept, and the room the
//! statistics take on disk.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Pages, SignedIn, page};

/// `GET /console/participation`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
) -> Response {
    let size = state.store.statistics_size().await;
    let statement = &state.statement;
    let body = html! {
        dl {
            dt { "Statement version" } dd { (statement.version) }
            dt { "Raw events kept" } dd { (state.statistics_retention_days) " days, then deleted" }
            dt { "Statistics on disk" } dd {
                @match &size {
                    Ok(size) => {
                        (megabytes(size.aggregate_bytes + size.event_bytes)) " — "
                        (size.objects) " objects' aggregates (" (megabytes(size.aggregate_bytes)) "), "
                        (size.events) " raw events (" (megabytes(size.event_bytes)) ")"
                    }
                    Err(error) => span.error { "could not be read: " (error) }
                }
            }
            @if !statement.categories.is_empty() {
                dt { "What participants send" } dd { (statement.categories.join(", ")) }
            }
        }
        h2 { "The statement, as published" }
        p.hint { "What " code { "repnet statement" } " shows and " code { "GET /v1/statement" } " serves; a participant accepts this version before sending anything." }
        blockquote style="white-space: pre-wrap; border-left: 4px solid #8886; margin: 0; padding: .5rem 1rem;" { (statement.text) }
    };
    page(
        &console,
        &session,
        "/console/participation",
        "Participation and privacy",
        StatusCode::OK,
        body,
    )
}

/// Bytes as megabytes with one decimal.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
