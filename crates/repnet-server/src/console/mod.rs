//! The administration console's pages on `repnet serve` (`/console`): server-rendered HTML
//! over the same services as the admin API, behind `repnet_http::console`'s sign-in. Each
//! page is one module; they parse forms with the API's own parsers and show the API's error
//! messages beside the form.

mod feeds;
mod keys;
mod lookup;
mod participation;
mod review;
mod status;
mod verdicts;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::ApiError;
use repnet_http::console::{Console, NavLink, SIGN_IN_PATH, Session, frame, html_page, see_other};

use crate::AppState;

/// The pages, in the navigation's order.
const NAV: &[NavLink] = &[
    ("/console/lookup", "Look up"),
    ("/console/verdicts", "Local verdicts"),
    ("/console/review", "Reports"),
    ("/console/feeds", "Feeds"),
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
            axum::routing::get(|| async { see_other("/console/status") }),
        )
        .route("/console/status", axum::routing::get(status::show))
        .route("/console/lookup", axum::routing::get(lookup::show))
        .route(
            "/console/keys",
            axum::routing::get(keys::show).post(keys::issue),
        )
        .route("/console/keys/revoke", axum::routing::post(keys::revoke))
        .route("/console/feeds", axum::routing::get(feeds::show))
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

/// What every page handler gets.
type Pages = axum::extract::State<(Arc<AppState>, Arc<Console>)>;

/// The signed-in session of a request; `None` sends the browser to sign in
/// ([`to_sign_in`]).
fn signed_in(console: &Console, headers: &HeaderMap) -> Option<Session> {
    if !console.enabled() {
        return None;
    }
    console.session(headers).map(|(_, session)| session)
}

/// Where a request without a session goes.
fn to_sign_in() -> Response {
    see_other(SIGN_IN_PATH)
}

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

/// An error of a service, shown in a page: its message, as the API words it.
fn failure(error: &ApiError) -> Markup {
    html! { p.error role="alert" { (error.message) } }
}
