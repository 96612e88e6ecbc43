//! The admin API's gate, shared by the server and the proxy: the token compared in constant
//! time, wrong guesses throttled per address (in memory only), and refusals logged in
//! aggregate so that a guesser cannot flood the log.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::limits::{Windowed, address_key};

/// Why an admin token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("invalid setting admin token: {0}")]
    Weak(String),
    #[error("cannot read the admin token file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The admin token. Kept only as its SHA-256, so that comparison is constant-time whatever
/// the lengths, and the token itself never sits in memory longer than startup.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The shortest admin token accepted: 128 bits as base64.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 22;

impl AdminToken {
    /// A token from its text. Surrounding whitespace (a file's final newline) is not part of it.
    pub fn new(token: &str) -> Result<AdminToken, AdminTokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AdminTokenError::Weak(
                "the admin token is empty: put a long random string in it (e.g. `openssl rand -hex 32`)".to_owned(),
            ));
        }
        // 128 bits at least: 22 characters of base64, 32 of hex. Counting characters (and
        // refusing a handful repeated) is what can be checked of a token's randomness.
        let distinct = token
            .chars()
            .collect::<std::collections::HashSet<_>>()
            .len();
        if token.chars().count() < MIN_ADMIN_TOKEN_CHARS || distinct < 8 {
            return Err(AdminTokenError::Weak(format!(
                "the admin token is too easy to guess ({} characters, {distinct} different): use at least {MIN_ADMIN_TOKEN_CHARS} random characters (128 bits), e.g. `openssl rand -hex 32`",
                token.chars().count()
            )));
        }
        use sha2::Digest as _;
        Ok(AdminToken {
            digest: sha2::Sha256::digest(token.as_bytes()).into(),
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<AdminToken, AdminTokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| AdminTokenError::File {
            path: path.to_path_buf(),
            source,
        })?;
        AdminToken::new(&text)
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::Digest as _;
        use subtle::ConstantTimeEq as _;
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

/// Wrong tokens one address (an IPv6 /64) may send in a minute; past it every admin request
/// from there is refused until the minute ends, even with the right token.
pub const WRONG_TOKENS_PER_MINUTE: u32 = 20;

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    /// The server or proxy was started without a token.
    Disabled,
    Missing,
    Wrong,
    /// Too many wrong tokens from this address: try again after so many seconds.
    Throttled(u64),
}

impl AdminRefusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            AdminRefusal::Disabled => 403,
            AdminRefusal::Missing | AdminRefusal::Wrong => 401,
            AdminRefusal::Throttled(_) => 429,
        }
    }

    /// The API's error code.
    pub fn code(&self) -> repnet_protocol::ErrorCode {
        use repnet_protocol::ErrorCode;
        match self {
            AdminRefusal::Disabled => ErrorCode::AdminDisabled,
            AdminRefusal::Missing | AdminRefusal::Wrong => ErrorCode::Unauthorized,
            AdminRefusal::Throttled(_) => ErrorCode::RateLimited,
        }
    }

    /// What happened and what to do.
    pub fn message(&self) -> String {
        match self {
            AdminRefusal::Disabled => "the admin API is disabled here: start with --admin-token-file FILE or REPNET_ADMIN_TOKEN".to_owned(),
            AdminRefusal::Missing => "the admin API needs the admin token: send Authorization: Bearer <token>".to_owned(),
            AdminRefusal::Wrong => "the admin token is wrong: use the token the server was started with".to_owned(),
            AdminRefusal::Throttled(seconds) => format!(
                "too many wrong admin tokens from this address ({WRONG_TOKENS_PER_MINUTE} a minute): try again in {seconds} seconds"
            ),
        }
    }
}

/// The admin token and what its wrong guesses have cost.
#[derive(Debug)]
pub struct AdminGate {
    token: Option<AdminToken>,
    failures: Windowed,
    /// Keys addresses in the throttle's map, so that it never holds one.
    secret: [u8; 32],
    log: Mutex<FailureLog>,
}

/// Refusals counted per minute: the first of a minute is logged at once, the rest as one
/// line when the next minute sees a refusal.
#[derive(Debug)]
struct FailureLog {
    minute_started: Instant,
    refused: u64,
}

impl AdminGate {
    pub fn new(token: Option<AdminToken>) -> AdminGate {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // Without randomness the keys are still one-way hashes of the addresses.
            tracing::warn!("no randomness for the admin throttle's key: using a fixed one");
        }
        AdminGate {
            token,
            failures: Windowed::new(Duration::from_secs(60), 1_000_000),
            secret,
            log: Mutex::new(FailureLog {
                minute_started: Instant::now(),
                refused: 0,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Checks a request's `Authorization` header value, from `peer` (when known).
    pub fn check(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<(), AdminRefusal> {
        let Some(token) = &self.token else {
            return Err(AdminRefusal::Disabled);
        };
        let now = Instant::now();
        let client = peer.map(|peer| address_key(&self.secret, peer));
        if let Some(client) = client {
            self.failures
                .exhausted(client, WRONG_TOKENS_PER_MINUTE, now)
                .map_err(AdminRefusal::Throttled)?;
        }
        let presented = authorization
            .and_then(repnet_protocol::bearer_token)
            .ok_or(AdminRefusal::Missing)?;
        if token.matches(presented.trim()) {
            return Ok(());
        }
        if let Some(client) = client {
            // Counted; the refusal after the limit is the next request's.
            let _ = self.failures.take(client, WRONG_TOKENS_PER_MINUTE, now);
        }
        self.note_refusal(now);
        Err(AdminRefusal::Wrong)
    }

    fn note_refusal(&self, now: Instant) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(log.minute_started) >= Duration::from_secs(60) {
            if log.refused > 1 {
                tracing::warn!(
                    refused = log.refused,
                    "admin requests with a wrong token refused in the minute before"
                );
            }
            log.minute_started = now;
            log.refused = 0;
        }
        log.refused += 1;
        if log.refused == 1 {
            tracing::warn!(
                "admin request with a wrong token refused (more this minute are counted, then logged as one line)"
            );
        }
    }
}

/// The admin API's middleware, the server's and the proxy's: lets a request through only
/// with the admin token (`Authorization: Bearer`). A refused upload (a feed, a bundle) is read
/// to its end first, so that the client, still sending, gets the answer rather than a reset
/// connection.
pub async fn require_admin(
    axum::extract::State(gate): axum::extract::State<std::sync::Arc<AdminGate>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(peer))| peer.ip());
    match gate.check(authorization, peer) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            crate::api::discard_body(request.into_body(), crate::ApiError::from(refusal))
                .await
                .into_response()
        }
    }
}

/// The background workers' statuses as `/v1/admin/status` shows them.
pub fn worker_statuses(workers: &repnet_runtime::Workers) -> Vec<repnet_protocol::WorkerStatus> {
    let time = |t: Option<repnet_model::Timestamp>| t.and_then(repnet_protocol::rfc3339);
    workers
        .statuses()
        .into_iter()
        .map(|status| repnet_protocol::WorkerStatus {
            name: status.name,
            state: status.state.as_str().to_owned(),
            units: status.units,
            errors: status.errors,
            last_unit: time(status.last_unit),
            last_error: status.last_error,
            last_error_at: time(status.last_error_at),
            progress: status.progress,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_compare_by_value_only() {
        let token = AdminToken::new("s3cret-token-0123456789\n").unwrap();
        assert!(token.matches("s3cret-token-0123456789"));
        assert!(!token.matches("s3cret-token-0123456788"));
        assert!(!token.matches(""));
        assert!(AdminToken::new(" \n").is_err());
        // Under 128 bits, or a few characters repeated: refused, saying what to do.
        for weak in ["a", "s3cret-token", "abababababababababababab"] {
            let error = AdminToken::new(weak).unwrap_err().to_string();
            assert!(error.contains("openssl rand -hex 32"), "{error}");
        }
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn wrong_guesses_are_throttled_per_address() {
        let gate = AdminGate::new(Some(
            AdminToken::new("a-long-enough-admin-token-42").unwrap(),
        ));
        let guesser: IpAddr = "192.0.2.9".parse().unwrap();
        let admin: IpAddr = "192.0.2.10".parse().unwrap();
        for _ in 0..WRONG_TOKENS_PER_MINUTE {
            assert_eq!(
                gate.check(Some("Bearer guess"), Some(guesser)),
                Err(AdminRefusal::Wrong)
            );
        }
        // Past the limit, even the right token waits: guessing is not worth it.
        assert!(matches!(
            gate.check(Some("Bearer a-long-enough-admin-token-42"), Some(guesser)),
            Err(AdminRefusal::Throttled(_))
        ));
        assert_eq!(
            gate.check(Some("bearer a-long-enough-admin-token-42"), Some(admin)),
            Ok(())
        );
        assert_eq!(gate.check(None, Some(admin)), Err(AdminRefusal::Missing));
        assert_eq!(
            AdminGate::new(None).check(Some("Bearer x"), None),
            Err(AdminRefusal::Disabled)
        );
    }
}
