//! The administration console's sign-in, sessions and page frame, shared by `repnet serve`
//! and `repnet proxy` (each mounts its own pages under `/console`).
//!
//! An operator signs in with the admin token once and gets a session cookie: `HttpOnly`,
//! `SameSite=Strict`, `Secure` under TLS, scoped to `/console`, for [`SESSION_LIFETIME`].
//! Sign-in goes through the admin API's own gate ([`AdminGate::check`]), so a wrong token
//! counts against the same per-address limit as a wrong `Authorization` header, and the
//! console is off whenever the admin API is. Every form that changes something carries the
//! session's CSRF token, compared in constant time. Sessions live in memory: a restart signs
//! everyone out, and nothing of the token is kept in them or shown by any page.
//!
//! Pages are HTML rendered on the server ([`maud`] escapes every value it interpolates),
//! with no script and no asset from elsewhere: the console works on an air-gapped site.

pub mod chart;
mod extract;
pub mod proxy_form;

pub use extract::{ConsoleState, CsrfForm, SignedForm, SignedIn, failure};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::admin::{AdminGate, AdminRefusal};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "repnet_console";

/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once: an operator's browsers, not a crowd. The one closest to its end
/// makes room for a new one.
const MAX_SESSIONS: usize = 64;

/// The signed-in sessions of one server or proxy.
#[derive(Debug)]
pub struct Console {
    gate: Arc<AdminGate>,
    /// Served over TLS: the cookie is `Secure`.
    secure: bool,
    /// What the pages' header names this process as ("repnet serve", "repnet proxy").
    product: &'static str,
    sessions: Mutex<HashMap<String, Session>>,
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Every form of the session carries it.
    pub csrf: String,
    expires: Instant,
}

impl Console {
    pub fn new(gate: Arc<AdminGate>, secure: bool, product: &'static str) -> Console {
        Console {
            gate,
            secure,
            product,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The console is on exactly when the admin API is.
    pub fn enabled(&self) -> bool {
        self.gate.enabled()
    }

    pub fn product(&self) -> &'static str {
        self.product
    }

    /// Checks `token` as the admin API checks a bearer token; on success a new session: its
    /// id (the cookie's value) and the session.
    pub fn sign_in(
        &self,
        token: &str,
        peer: Option<IpAddr>,
    ) -> Result<(String, Session), AdminRefusal> {
        self.gate.check(Some(&format!("Bearer {token}")), peer)?;
        let id = random_hex();
        let session = Session {
            csrf: random_hex(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(soonest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&soonest);
        }
        sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The session a request's cookie names, if it is signed in and not expired.
    pub fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = session_cookie(headers)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(id) {
            Some(session) if session.expires > Instant::now() => {
                Some((id.to_owned(), session.clone()))
            }
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn sign_out(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// The `Set-Cookie` value that holds session `id`.
    fn cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{SESSION_COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_LIFETIME.as_secs()
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    fn expired_cookie(&self) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl Session {
    /// Whether a form's CSRF token is this session's (in constant time).
    pub fn allows(&self, csrf: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.csrf.len() == csrf.len() && bool::from(self.csrf.as_bytes().ct_eq(csrf.as_bytes()))
    }
}

/// 128 random bits in hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // Without the system's randomness there is no safe session: fail loudly.
    getrandom::fill(&mut bytes).expect("the system's random number generator");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The session cookie's value in a request's `Cookie` headers. Parsed here rather than with
/// a cookie crate: one name, one opaque value, nothing else to decode.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Where a signed-out browser is sent.
pub const SIGN_IN_PATH: &str = "/console/login";

/// A redirection after a form (`303 See Other`: the browser then asks with `GET`).
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

/// An HTML answer.
pub fn html_page(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Pages show the knowledge base's contents: not for shared caches, and never framed.
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        page.into_string(),
    )
        .into_response()
}

/// A link of the console's navigation: its path and its label.
pub type NavLink = (&'static str, &'static str);

/// The frame of every signed-in page: the navigation (the current page marked for screen
/// readers as well as by style), the sign-out form, and `body`.
pub fn frame(
    console: &Console,
    nav: &[NavLink],
    current: &str,
    session: &Session,
    title: &str,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (console.product()) }
                style { (STYLE) }
            }
            body {
                header {
                    a.brand href="/console" { (console.product()) }
                    nav aria-label="Console" {
                        ul {
                            @for (path, label) in nav {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The background workers of a server or a proxy, as a table.
pub fn workers_table(workers: &[repnet_protocol::WorkerStatus]) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr {
                th scope="col" { "Worker" } th scope="col" { "State" } th scope="col" { "Done" }
                th scope="col" { "Errors" } th scope="col" { "Progress" } th scope="col" { "Last error" }
            } }
            tbody {
                @for worker in workers {
                    tr {
                        td { (worker.name) }
                        td { (worker.state) }
                        td { (worker.units) }
                        td { (worker.errors) }
                        td { @if let Some(progress) = &worker.progress { (progress) } }
                        td { @if let Some(error) = &worker.last_error { (error) } }
                    }
                }
            }
        } }
    }
}

/// The sign-in page, with what went wrong last time if anything did.
fn sign_in_page(console: &Console, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · " (console.product()) }
                style { (STYLE) }
            }
            body {
                main.narrow {
                    h1 { "Sign in to " (console.product()) }
                    form method="post" action=(SIGN_IN_PATH) {
                        label for="token" { "Admin token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus
                            aria-describedby=[error.map(|_| "token-error")];
                        @if let Some(error) = error {
                            p #token-error .error role="alert" { (error) }
                        }
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "The token set as " code { "admin_token" } " (or " code { "REPNET_ADMIN_TOKEN" } ") when the process started." }
                }
            }
        }
    }
}

/// A page shown while the console is off (no admin token configured).
fn disabled_page() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Console off" } style { (STYLE) } }
            body { main.narrow {
                h1 { "The console is off" }
                p { "It is on when the admin API is: start the process with an admin token (" code { "REPNET_ADMIN_TOKEN" } ")." }
            } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm for SignOutForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `GET /console/login`.
pub async fn get_sign_in(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if !console.enabled() {
        return html_page(StatusCode::FORBIDDEN, disabled_page());
    }
    if console.session(&headers).is_some() {
        return see_other("/console");
    }
    html_page(StatusCode::OK, sign_in_page(&console, None))
}

/// `POST /console/login`: the admin token, from a form.
pub async fn post_sign_in(
    State(console): State<Arc<Console>>,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !console.enabled() {
        return html_page(StatusCode::FORBIDDEN, disabled_page());
    }
    let token = form.map(|Form(form)| form.token).unwrap_or_default();
    let peer = peer.map(|axum::Extension(ConnectInfo(peer))| peer.ip());
    match console.sign_in(token.trim(), peer) {
        Ok((id, _)) => {
            let mut answer = see_other("/console");
            answer
                .headers_mut()
                .insert(header::SET_COOKIE, console.cookie(&id));
            answer
        }
        Err(refusal) => {
            let (status, message) = match refusal {
                AdminRefusal::Throttled(seconds) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many wrong tokens from this address: try again in {seconds} s."),
                ),
                AdminRefusal::Disabled => (
                    StatusCode::FORBIDDEN,
                    "The console is off: the process has no admin token.".to_owned(),
                ),
                AdminRefusal::Missing => {
                    (StatusCode::UNAUTHORIZED, "Give the admin token.".to_owned())
                }
                AdminRefusal::Wrong => (
                    StatusCode::UNAUTHORIZED,
                    "That is not the admin token.".to_owned(),
                ),
            };
            let mut answer = html_page(status, sign_in_page(&console, Some(&message)));
            if let AdminRefusal::Throttled(seconds) = refusal
                && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
            {
                answer.headers_mut().insert(header::RETRY_AFTER, value);
            }
            answer
        }
    }
}

/// `POST /console/logout`.
pub async fn post_sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some((id, session)) = console.session(&headers) else {
        return see_other(SIGN_IN_PATH);
    };
    let csrf = form.map(|Form(form)| form.csrf).unwrap_or_default();
    if !session.allows(&csrf) {
        return forbidden_form();
    }
    console.sign_out(&id);
    let mut answer = see_other(SIGN_IN_PATH);
    answer
        .headers_mut()
        .insert(header::SET_COOKIE, console.expired_cookie());
    answer
}

/// The answer to a form without its session's CSRF token.
pub fn forbidden_form() -> Response {
    html_page(
        StatusCode::FORBIDDEN,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Refused" } style { (STYLE) } }
                body { main.narrow {
                    h1 { "Refused" }
                    p { "This form did not come from this console's session (its CSRF token is missing or old). Go back, reload the page and send it again." }
                } }
            }
        },
    )
}

/// Any other path under `/console`: a page, not the API's JSON.
async fn not_found(uri: axum::http::Uri) -> Response {
    html_page(
        StatusCode::NOT_FOUND,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Not found" } style { (STYLE) } }
                body { main.narrow {
                    h1 { "Not found" }
                    p { "The console has no page " code { (uri.path()) } "." }
                    p { a href="/console" { "To the console" } }
                } }
            }
        },
    )
}

/// The routes every console has: sign-in and sign-out. The pages are the server's or the
/// proxy's own.
pub fn routes<S>(console: Arc<Console>) -> axum::Router<S> {
    axum::Router::new()
        .route(
            SIGN_IN_PATH,
            axum::routing::get(get_sign_in).post(post_sign_in),
        )
        .route(
            "/console/logout",
            // A link followed to it signs nobody out: that takes the form and its token.
            axum::routing::post(post_sign_out).get(|| async { see_other("/console") }),
        )
        .route("/console/{*rest}", axum::routing::any(not_found))
        .with_state(console)
}

/// The console's style sheet: system fonts, a narrow-screen layout, focus outlines, and
/// states told by text and shape as well as colour.
const STYLE: &str = r#"
:root { color-scheme: light dark; --accent: #1f5fa8; --bad: #a61b1b; --good: #1d6b2f; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; padding: .6rem 1rem; border-bottom: 1px solid #8884; }
header .brand { font-weight: 700; text-decoration: none; color: inherit; }
header nav ul { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; margin: 0; padding: 0; }
header nav a { color: inherit; }
header nav a[aria-current=page] { font-weight: 700; text-decoration: underline 2px; }
header form { margin-left: auto; }
main { padding: 1rem; max-width: 72rem; }
main.narrow { max-width: 28rem; margin: 3rem auto; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
label { display: block; font-weight: 600; margin: .6rem 0 .2rem; }
input, select, textarea, button { font: inherit; padding: .35rem .5rem; max-width: 100%; }
button { cursor: pointer; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #8883; vertical-align: top; }
th { white-space: nowrap; }
td code, dd code { overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
.error { color: var(--bad); font-weight: 600; }
.error::before { content: "Error: "; }
.notice { border-left: 4px solid var(--good); padding: .3rem .6rem; }
.hint { opacity: .8; font-size: .9em; }
.table-wrap { overflow-x: auto; }
@media (max-width: 40rem) { header form { margin-left: 0; } th, td { padding: .3rem; } }
.windows { display: flex; gap: 1rem; list-style: none; padding: 0; }
.windows a[aria-current=page] { font-weight: 700; text-decoration: none; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 26rem), 1fr)); gap: 1rem 2rem; }
figure.chart { margin: 0; }
figure.chart figcaption { font-weight: 600; }
figure.chart > svg { width: 100%; height: auto; display: block; }
.grid { stroke: #8885; stroke-width: 1; }
.axis { fill: currentColor; font-size: 11px; opacity: .8; }
.bar { fill: var(--accent); }
.line { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
.s0 { stroke: #1f5fa8; }
.s1 { stroke: #c05f00; stroke-dasharray: 7 3; }
.s2 { stroke: #1d7b36; stroke-dasharray: 2 3; }
.s3 { stroke: #8a3fb0; stroke-dasharray: 9 3 2 3; }
.s4 { stroke: #b0202a; stroke-dasharray: 1 6; stroke-linecap: round; stroke-width: 3; }
.legend { display: flex; flex-wrap: wrap; gap: .2rem 1rem; list-style: none; padding: 0; margin: .2rem 0 0; font-size: .9em; }
.legend .swatch { width: 28px; height: 8px; margin-right: .3rem; display: inline-block; }
.share { display: inline-block; width: 6rem; height: .7rem; border: 1px solid #8888; vertical-align: middle; }
.share-bar { display: block; height: 100%; background: var(--accent); }
"#;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::admin::AdminToken;

    fn console() -> Console {
        let gate = AdminGate::new(Some(
            AdminToken::new("a-long-enough-admin-token-42").unwrap(),
        ));
        Console::new(Arc::new(gate), false, "repnet serve")
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_on_sign_out() {
        let console = console();
        assert!(console.sign_in("wrong", None).is_err());
        let (id, session) = console
            .sign_in("a-long-enough-admin-token-42", None)
            .unwrap();
        let headers = with_cookie(&format!("theme=dark; {SESSION_COOKIE}={id}; other=1"));
        let (found, found_session) = console.session(&headers).unwrap();
        assert_eq!(found, id);
        assert!(found_session.allows(&session.csrf));
        assert!(!found_session.allows(""));
        assert!(
            !found_session.allows(&id),
            "the session id is not its CSRF token"
        );
        console.sign_out(&id);
        assert!(console.session(&headers).is_none());
        assert!(
            console
                .session(&with_cookie(&format!("{SESSION_COOKIE}=")))
                .is_none()
        );
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_under_tls() {
        let console = console();
        let cookie = console.cookie("abc");
        let cookie = cookie.to_str().unwrap();
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/console",
            "Max-Age=28800",
        ] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!cookie.contains("Secure"), "{cookie}");
        let gate = AdminGate::new(Some(
            AdminToken::new("a-long-enough-admin-token-42").unwrap(),
        ));
        let tls = Console::new(Arc::new(gate), true, "repnet serve");
        assert!(tls.cookie("abc").to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn sessions_are_bounded() {
        let console = console();
        let first = console
            .sign_in("a-long-enough-admin-token-42", None)
            .unwrap()
            .0;
        for _ in 0..MAX_SESSIONS {
            console
                .sign_in("a-long-enough-admin-token-42", None)
                .unwrap();
        }
        assert_eq!(console.sessions.lock().unwrap().len(), MAX_SESSIONS);
        assert!(
            console
                .session(&with_cookie(&format!("{SESSION_COOKIE}={first}")))
                .is_none(),
            "the oldest made room"
        );
    }
}
