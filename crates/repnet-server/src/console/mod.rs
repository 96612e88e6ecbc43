//! The administration console's pages on `repnet serve` (`/console`): server-rendered HTML
//! over the same services as the admin API, behind `repnet_http::console`'s sign-in. Each
//! page is one module; they parse forms with the API's own parsers and show the API's error
//! messages beside the form.

mod feeds;
mod keys;
mod lookup;
mod overview;
mod participation;
mod proxies;
mod review;
mod status;
mod verdicts;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::{Console, NavLink, Session, frame, html_page, see_other};
pub(super) use repnet_http::console::{CsrfForm, SignedForm, SignedIn, failure};

use crate::AppState;

/// The pages, in the navigation's order.
const NAV: &[NavLink] = &[
    ("/console/overview", "Overview"),
    ("/console/lookup", "Look up"),
    ("/console/verdicts", "Local verdicts"),
    ("/console/review", "Reports"),
    ("/console/feeds", "Feeds"),
    ("/console/proxies", "Proxies"),
    ("/console/participation", "Privacy"),
    ("/console/keys", "Licence keys"),
    ("/console/status", "Status"),
];

/// The console's routes. With the admin API off every page sends the browser to the
/// sign-in page, which says that the console is off and how to turn it on.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    state: Arc<AppState>,
    console: Arc<Console>,
) -> Router<S> {
    let pages = Router::new()
        .route(
            "/console",
            axum::routing::get(|| async { see_other("/console/overview") }),
        )
        .route("/console/overview", axum::routing::get(overview::show))
        .route("/console/status", axum::routing::get(status::show))
        .route("/console/lookup", axum::routing::get(lookup::show))
        .route(
            "/console/keys",
            axum::routing::get(keys::show).post(keys::issue),
        )
        .route("/console/keys/revoke", axum::routing::post(keys::revoke))
        .route("/console/feeds", axum::routing::get(feeds::show))
        .route(
            "/console/proxies",
            axum::routing::get(proxies::show).post(proxies::save),
        )
        .route(
            "/console/participation",
            axum::routing::get(participation::show),
        )
        .route(
            "/console/feeds/refresh",
            axum::routing::post(feeds::refresh),
        )
        .route(
            "/console/feeds/upload",
            // Bounded by the feeds' own upload limit (`max_upload_bytes`) as it is spooled,
            // not by the limit of API bodies.
            axum::routing::post(feeds::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/console/review",
            axum::routing::get(review::show).post(review::settle),
        )
        .route(
            "/console/verdicts",
            axum::routing::get(verdicts::show).post(verdicts::add),
        )
        .route(
            "/console/verdicts/remove",
            axum::routing::post(verdicts::remove),
        )
        .with_state((state, Arc::clone(&console)));
    pages.merge(repnet_http::console::routes(console))
}

/// The state every page handler gets.
type PagesState = (Arc<AppState>, Arc<Console>);
type Pages = axum::extract::State<PagesState>;

/// A page in the console's frame.
fn page(
    console: &Console,
    session: &Session,
    current: &str,
    title: &str,
    status: StatusCode,
    body: Markup,
) -> Response {
    html_page(status, frame(console, NAV, current, session, title, body))
}

/// The answer to an action the service refused: its message, and the way back to `current`.
fn refused(
    console: &Console,
    session: &Session,
    (current, title): NavLink,
    error: &ApiError,
) -> Response {
    let body = html! {
        (failure(error))
        p { a href=(current) { "Back to " (title.to_lowercase()) } }
    };
    page(console, session, current, title, error.status, body)
}
