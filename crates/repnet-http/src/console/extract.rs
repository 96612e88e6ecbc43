//! What every console page handler takes: the signed-in session ([`SignedIn`]) and, for a
//! form that changes something, the form checked against the session's CSRF token
//! ([`SignedForm`]).

use std::sync::Arc;

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::Response;
use maud::{Markup, html};

use super::{Console, SIGN_IN_PATH, Session, forbidden_form, see_other};
use crate::ApiError;

/// A page handler's state that holds the console.
pub trait ConsoleState: Send + Sync {
    fn console(&self) -> &Console;
}

/// The state of the server's and the proxy's pages: what their handlers reach, and the
/// console.
impl<T: Send + Sync> ConsoleState for (T, Arc<Console>) {
    fn console(&self) -> &Console {
        &self.1
    }
}

/// A signed-in request's session; without one, the browser is sent to sign in.
#[derive(Debug)]
pub struct SignedIn(pub Session);

impl<S: ConsoleState> FromRequestParts<S> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let console = state.console();
        if !console.enabled() {
            return Err(see_other(SIGN_IN_PATH));
        }
        console
            .session(&parts.headers)
            .map(|(_, session)| SignedIn(session))
            .ok_or_else(|| see_other(SIGN_IN_PATH))
    }
}

/// A form that changes something: its fields name the session's CSRF token `csrf`.
pub trait CsrfForm: serde::de::DeserializeOwned {
    fn csrf(&self) -> &str;
}

/// A form posted by a signed-in session with that session's CSRF token, and the session.
/// Without a session the browser is sent to sign in; a form that cannot be read or lacks
/// the token is refused (`403`) and changes nothing.
#[derive(Debug)]
pub struct SignedForm<T>(pub Session, pub T);

impl<S: ConsoleState, T: CsrfForm + Send> FromRequest<S> for SignedForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let SignedIn(session) = SignedIn::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(|_| forbidden_form())?;
        if !session.allows(form.csrf()) {
            return Err(forbidden_form());
        }
        Ok(SignedForm(session, form))
    }
}

/// An error of a service, shown in a page: its message, as the API words it.
pub fn failure(error: &ApiError) -> Markup {
    html! { p.error role="alert" { (error.message) } }
}
