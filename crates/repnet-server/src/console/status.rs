//! The status page: role, upstream and lag, the knowledge base's size, version, uptime, the
//! background workers.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Pages, SignedIn, failure, page};

pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
) -> Response {
    let uptime = state.started.elapsed().as_secs();
    // The store's size on disk (none for a store in a Redis Cluster).
    let disk_bytes = state
        .store
        .stats()
        .await
        .ok()
        .map(|stats| stats.disk_bytes)
        .filter(|bytes| *bytes > 0);
    let body = match crate::api::replication::server_status(&state).await {
        Err(error) => failure(&error),
        Ok(status) => html! {
            dl {
                dt { "Role" } dd { (status.role) }
                dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
                dt { "Uptime" } dd { (duration(uptime)) }
                dt { "Knowledge base" } dd {
                    (status.knowledge_base_entries) " entries"
                    @if let Some(bytes) = disk_bytes { ", " (format!("{:.1}", bytes as f64 / 1_000_000.0)) " MB on disk" }
                }
                dt { "Change log" } dd { "log " code { (status.log_id) } ", change " (status.sequence) }
                dt { "Licence keys" } dd {
                    (status.licence_keys) " active; "
                    @if status.key_required { "a key is required for lookups" } @else { "lookups need no key" }
                }
                dt { "Statistics" } dd {
                    (status.tracked_objects) " objects tracked, " (status.raw_events) " raw events"
                }
                dt { "Upstream" } dd {
                    @match &status.upstream {
                        None => "none: this server is not fed by another",
                        Some(upstream) => {
                            (upstream.url) " — "
                            @if upstream.reachable { "reachable" } @else { strong { "unreachable" } }
                            @if let Some(lag) = upstream.lag { ", " (lag) " changes behind" }
                            @if let Some(error) = &upstream.last_error { br; span.error { (error) } }
                        }
                    }
                }
            }
            h2 { "Background work" }
            (repnet_http::console::workers_table(&status.workers))
        },
    };
    page(
        &console,
        &session,
        "/console/status",
        "Status",
        StatusCode::OK,
        body,
    )
}

/// `3 d 4 h`, `5 h 2 min`, `42 s`.
pub(super) fn duration(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds} s"),
        (0, 0, _) => format!("{minutes} min"),
        (0, _, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h"),
    }
}
