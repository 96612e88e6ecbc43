//! Licence keys: who may exchange data with this server.
//!
//! The keys live in a [`KeyBook`] (the store on a server, a file on a proxy; as SHA-256 hashes
//! only, [`Licence`]) and, for the check every request makes, in a map from hash to key state
//! held here. The server and the proxy share this crate: the proxy never links the store. The server is the
//! only writer of its store, so the map is loaded once and updated with every admin change
//! after the store has it. A presented key is found by its hash (a guess's hash says nothing
//! about the stored ones, so the lookup leaks nothing useful through timing) and the final
//! comparison is constant-time.
//!
//! `last_used` is kept in memory and written to the store at most once a minute (and at
//! shutdown): writing on every request would make every lookup a disk write.

use repnet_protocol::ErrorCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use http::{HeaderMap, header};
use repnet_model::{Sha256, Timestamp};
use repnet_protocol::{AddLicenceKey, LicenceKeyEntry};

/// A licence key as it is kept: the SHA-256 of the key, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    /// Shown to administrators and in logs instead of the key.
    pub id: String,
    pub key_sha256: Sha256,
    pub label: Option<String>,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
    /// When the key was last presented (recorded at most once a minute).
    pub last_used: Option<Timestamp>,
}

/// How a key may be used: requests per second, with bursts.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// Where licence keys are kept: the store on a server, a file on a proxy.
pub trait KeyBook: Send + Sync + std::fmt::Debug + 'static {
    /// Every key ever registered.
    fn licences(&self) -> BookFuture<'_, Vec<Licence>>;
    /// Adds or replaces keys (by key hash), durably.
    fn put(&self, licences: Vec<Licence>) -> BookFuture<'_, ()>;
}

/// What [`KeyBook`]'s methods return.
pub type BookFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BookError>> + Send + 'a>>;

/// Why a [`KeyBook`] could not read or keep the keys: the book's own error (the store's, or
/// the proxy's file's), kept whole as the source.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BookError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl BookError {
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> BookError {
        BookError(error.into())
    }
}

/// A request refused for its key, or an administrator's mistake: status, stable code and a
/// message that says what to do (`Retry-After` seconds for a rate limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: repnet_protocol::ErrorCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(
        status: u16,
        code: repnet_protocol::ErrorCode,
        message: impl Into<String>,
    ) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The registered keys and their use.
#[derive(Debug)]
pub struct Licences {
    book: Arc<dyn KeyBook>,
    /// Whether lookups need a key (a private server, or `require_key`). Sync endpoints always
    /// do.
    required: std::sync::atomic::AtomicBool,
    limit: RwLock<Option<RateLimit>>,
    keys: RwLock<HashMap<Sha256, Arc<KeyState>>>,
    /// Serialises writers (admin changes, flushes of `last_used`): they are rare, and one at
    /// a time keeps check-then-write simple.
    writing: tokio::sync::Mutex<()>,
    /// Told when a request carried a key not known here: on a book shared by several servers
    /// (a Redis Cluster store), another may have registered it ([`Refresher`]).
    unknown_key: tokio::sync::Notify,
    /// Servers sharing the keys' rates (1 on its own).
    servers: std::sync::atomic::AtomicU32,
}

#[derive(Debug)]
struct KeyState {
    licence: Licence,
    /// Unix seconds of the last use, 0 for never.
    last_used: AtomicU64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl KeyState {
    fn new(licence: Licence, limit: Option<RateLimit>) -> KeyState {
        KeyState {
            last_used: AtomicU64::new(licence.last_used.map_or(0, |t| t.0)),
            licence,
            bucket: Mutex::new(Bucket {
                tokens: limit.map_or(0.0, |limit| limit.burst),
                refilled: Instant::now(),
            }),
        }
    }

    /// Takes a token; on refusal, the whole seconds until one is there.
    fn take(&self, limit: RateLimit) -> Result<(), u64> {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second;
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// The licence with the last use seen in memory.
    fn current(&self) -> Licence {
        let mut licence = self.licence.clone();
        let used = self.last_used.load(Ordering::Relaxed);
        if used > 0 {
            licence.last_used = Some(Timestamp(used));
        }
        licence
    }
}

const MAX_LABEL_CHARS: usize = 200;

const PROVIDER_ADVICE: &str = "the organisation's current licence key must be registered with the network's provider before data can be exchanged (after a licence change, until the provider registers the new key, every request is refused)";

impl Licences {
    /// The keys kept in `book`; `required`: whether lookups need one.
    pub async fn load(
        book: Arc<dyn KeyBook>,
        required: bool,
        limit: Option<RateLimit>,
    ) -> Result<Licences, BookError> {
        let keys = book
            .licences()
            .await?
            .into_iter()
            .map(|licence| (licence.key_sha256, Arc::new(KeyState::new(licence, limit))))
            .collect();
        Ok(Licences {
            book,
            required: std::sync::atomic::AtomicBool::new(required),
            limit: RwLock::new(limit),
            keys: RwLock::new(keys),
            writing: tokio::sync::Mutex::new(()),
            unknown_key: tokio::sync::Notify::new(),
            servers: std::sync::atomic::AtomicU32::new(1),
        })
    }

    /// Whether lookups need a key.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::Relaxed)
    }

    /// Changes whether lookups need a key, and the rate each key may use, at once.
    pub fn set_policy(&self, required: bool, limit: Option<RateLimit>) {
        self.required.store(required, Ordering::Relaxed);
        *self.limit.write().unwrap_or_else(PoisonError::into_inner) = limit;
    }

    /// The rate each key may use on this server: the configured rate shared among the
    /// servers that answer for the same keys ([`set_servers`](Self::set_servers)).
    fn limit(&self) -> Option<RateLimit> {
        let limit = (*self.limit.read().unwrap_or_else(PoisonError::into_inner))?;
        let servers = f64::from(self.servers.load(Ordering::Relaxed).max(1));
        Some(RateLimit {
            per_second: limit.per_second / servers,
            burst: (limit.burst / servers).max(1.0),
        })
    }

    /// How many servers answer for the same keys now (the live nodes of one Redis Cluster
    /// store, behind one balancer): each lets a key use its share of the rate, so that
    /// together they hold it to the configured rate.
    pub fn set_servers(&self, servers: u32) {
        self.servers.store(servers.max(1), Ordering::Relaxed);
    }

    /// Checks the licence key of a request (`Authorization: Bearer KEY`) at time `now`.
    pub fn check(&self, headers: &HeaderMap, now: Timestamp) -> Result<(), Refusal> {
        let refuse =
            |code: repnet_protocol::ErrorCode, message: String| Refusal::new(401, code, message);
        let Some(key) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(repnet_protocol::bearer_token)
            .map(str::trim)
            .filter(|key| !key.is_empty())
        else {
            return Err(refuse(
                ErrorCode::LicenceNotRegistered,
                format!(
                    "this server requires a licence key and none was sent: send Authorization: Bearer KEY (repnet lookup --key KEY, or REPNET_KEY); {PROVIDER_ADVICE}"
                ),
            ));
        };
        let digest = Sha256::digest(key.as_bytes());
        let state = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.get(&digest).cloned()
        };
        let state = match state {
            Some(state) if constant_time_eq(&state.licence.key_sha256, &digest) => state,
            _ => {
                self.unknown_key.notify_one();
                return Err(refuse(
                    ErrorCode::LicenceNotRegistered,
                    format!(
                        "the licence key sent is not registered on this network: {PROVIDER_ADVICE}"
                    ),
                ));
            }
        };
        let licence = &state.licence;
        if let Some(revoked) = licence.revoked {
            return Err(refuse(
                ErrorCode::LicenceRevoked,
                format!(
                    "the licence key sent (id {}) was revoked on {}: {PROVIDER_ADVICE}",
                    licence.id,
                    time(revoked)
                ),
            ));
        }
        if let Some(expires) = licence.expires.filter(|expires| *expires <= now) {
            return Err(refuse(
                ErrorCode::LicenceExpired,
                format!(
                    "the licence key sent (id {}) expired on {}: {PROVIDER_ADVICE}",
                    licence.id,
                    time(expires)
                ),
            ));
        }
        state.last_used.fetch_max(now.0, Ordering::Relaxed);
        if let Some(limit) = self.limit()
            && let Err(wait) = state.take(limit)
        {
            return Err(Refusal {
                retry_after: Some(wait),
                ..Refusal::new(
                    429,
                    ErrorCode::RateLimited,
                    format!(
                        "licence key {} made more than {} requests per second: retry after {wait} s, or batch lookups (POST /v1/lookup takes up to 10,000 objects)",
                        licence.id, limit.per_second
                    ),
                )
            });
        }
        Ok(())
    }

    /// The id of the licence key a request carries, when it is registered, unrevoked and
    /// unexpired; `None` otherwise. Counts no request against the key's rate.
    pub fn key_id(&self, headers: &HeaderMap, now: Timestamp) -> Option<String> {
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(repnet_protocol::bearer_token)
            .map(str::trim)
            .filter(|key| !key.is_empty())?;
        let digest = Sha256::digest(key.as_bytes());
        let state = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.get(&digest).cloned()
        }?;
        let licence = &state.licence;
        (constant_time_eq(&licence.key_sha256, &digest)
            && licence.revoked.is_none()
            && licence.expires.is_none_or(|expires| expires > now))
        .then(|| licence.id.clone())
    }

    /// Every key, by creation time.
    pub fn list(&self) -> Vec<Licence> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Licence> = keys.values().map(|state| state.current()).collect();
        list.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        list
    }

    /// Registers a key as an administrator asked (`POST /v1/admin/keys`): checked (the key's
    /// form, the label, the expiry), and refused if registered before, even revoked —
    /// revocation is final for a key, and the organisation gets a new one.
    pub async fn register(
        &self,
        request: &AddLicenceKey,
        now: Timestamp,
    ) -> Result<Licence, Refusal> {
        let key = request.key.trim();
        repnet_protocol::check_licence_key(key).map_err(|message| {
            Refusal::new(400, ErrorCode::InvalidKey, format!("key: {message}"))
        })?;
        let label = match request.label.as_deref().map(str::trim) {
            Some(label) if label.chars().count() > MAX_LABEL_CHARS => {
                return Err(Refusal::new(
                    400,
                    ErrorCode::InvalidLabel,
                    format!("label: at most {MAX_LABEL_CHARS} characters"),
                ));
            }
            Some(label) if label.chars().any(repnet_model::is_control_or_bidi) => {
                return Err(Refusal::new(
                    400,
                    ErrorCode::InvalidLabel,
                    "label: one line of text, without control or text-direction characters (such as U+202E)",
                ));
            }
            Some("") | None => None,
            Some(label) => Some(label.to_owned()),
        };
        let expires = match request.expires.as_deref() {
            None => None,
            Some(text) => {
                let expires = repnet_protocol::parse_time(text).map_err(|message| {
                    Refusal::new(
                        400,
                        ErrorCode::InvalidExpires,
                        format!("expires: {message}"),
                    )
                })?;
                if expires <= now {
                    return Err(Refusal::new(
                        400,
                        ErrorCode::InvalidExpires,
                        format!("expires: {text} is in the past: give a later date"),
                    ));
                }
                Some(expires)
            }
        };
        let key_sha256 = Sha256::digest(key.as_bytes());
        let licence = Licence {
            id: repnet_protocol::licence_key_id(&key_sha256),
            key_sha256,
            label,
            created: now,
            expires,
            revoked: None,
            last_used: None,
        };
        let _one_at_a_time = self.writing.lock().await;
        // Another server on a shared book may have registered it.
        self.reload()
            .await
            .map_err(|error| stored_nothing(&error))?;
        if let Some(existing) = self.get(&key_sha256) {
            return Err(Refusal::new(
                409,
                ErrorCode::KeyExists,
                format!(
                    "this key is registered already (id {}); a revoked key cannot be registered again: issue a new key",
                    existing.id
                ),
            ));
        }
        self.book
            .put(vec![licence.clone()])
            .await
            .map_err(|error| stored_nothing(&error))?;
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key_sha256,
                Arc::new(KeyState::new(licence.clone(), self.limit())),
            );
        tracing::info!(id = %licence.id, label = ?licence.label, "licence key registered");
        Ok(licence)
    }

    /// Revokes the key with id `id`; revoking twice keeps the first time.
    pub async fn revoke(&self, id: &str, now: Timestamp) -> Result<Licence, Refusal> {
        let _one_at_a_time = self.writing.lock().await;
        self.reload()
            .await
            .map_err(|error| stored_nothing(&error))?;
        let state = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.values().find(|state| state.licence.id == id).cloned()
        }
        .ok_or_else(|| {
            Refusal::new(
                404,
                ErrorCode::KeyNotFound,
                format!("no licence key has id {id:?}: GET /v1/admin/keys lists them"),
            )
        })?;
        let mut licence = state.current();
        if licence.revoked.is_some() {
            return Ok(licence);
        }
        licence.revoked = Some(now);
        self.book
            .put(vec![licence.clone()])
            .await
            .map_err(|error| stored_nothing(&error))?;
        tracing::info!(id = %licence.id, "licence key revoked");
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                licence.key_sha256,
                Arc::new(KeyState::new(licence.clone(), self.limit())),
            );
        Ok(licence)
    }

    /// Records the keys' last uses once a minute, and once more at a stop (a background
    /// worker, [`repnet_runtime::workers`]).
    pub fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder(Arc::clone(self))
    }

    /// Writes the last uses seen since the last flush to the store.
    pub async fn flush_last_used(&self) -> Result<(), BookError> {
        let _one_at_a_time = self.writing.lock().await;
        let changed: Vec<(Arc<KeyState>, Licence)> = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys.values()
                .filter(|state| {
                    state.last_used.load(Ordering::Relaxed)
                        > state.licence.last_used.map_or(0, |t| t.0)
                })
                .map(|state| (Arc::clone(state), state.current()))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        // Only the last use moves: what is stored may be newer than what this server holds
        // (a key revoked through another server on a shared book), and must stay.
        let stored: HashMap<Sha256, Licence> = self
            .book
            .licences()
            .await?
            .into_iter()
            .map(|licence| (licence.key_sha256, licence))
            .collect();
        let changed: Vec<(Arc<KeyState>, Licence)> = changed
            .into_iter()
            .map(|(state, licence)| match stored.get(&licence.key_sha256) {
                Some(kept) => {
                    let mut kept = kept.clone();
                    kept.last_used = kept.last_used.max(licence.last_used);
                    (state, kept)
                }
                None => (state, licence),
            })
            .collect();
        self.book
            .put(changed.iter().map(|(_, licence)| licence.clone()).collect())
            .await?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        for (old, licence) in changed {
            // Keep the state (and its rate-limit bucket); only the stored use moves on.
            let state = KeyState {
                last_used: AtomicU64::new(old.last_used.load(Ordering::Relaxed)),
                bucket: Mutex::new(*old.bucket.lock().unwrap_or_else(PoisonError::into_inner)),
                licence,
            };
            keys.insert(state.licence.key_sha256, Arc::new(state));
        }
        Ok(())
    }

    /// Reads the book again, for keys registered or revoked by another server sharing it;
    /// each key known here keeps its rate-limit bucket and its latest use.
    pub async fn reload(&self) -> Result<(), BookError> {
        let stored = self.book.licences().await?;
        let limit = self.limit();
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        for licence in stored {
            let state = match keys.get(&licence.key_sha256) {
                Some(state) if state.licence == licence => continue,
                Some(state) => KeyState {
                    last_used: AtomicU64::new(
                        state
                            .last_used
                            .load(Ordering::Relaxed)
                            .max(licence.last_used.map_or(0, |t| t.0)),
                    ),
                    bucket: Mutex::new(
                        *state.bucket.lock().unwrap_or_else(PoisonError::into_inner),
                    ),
                    licence,
                },
                None => KeyState::new(licence, limit),
            };
            keys.insert(state.licence.key_sha256, Arc::new(state));
        }
        Ok(())
    }

    /// Reads the book again every `every`, and soon after a request carried an unknown key:
    /// for servers that share their keys (a background worker).
    pub fn refresher(self: &Arc<Self>, every: std::time::Duration) -> Refresher {
        Refresher {
            licences: Arc::clone(self),
            every,
        }
    }

    fn get(&self, key_sha256: &Sha256) -> Option<Licence> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(key_sha256).map(|state| state.current())
    }
}

fn stored_nothing(error: &BookError) -> Refusal {
    tracing::error!(%error, "licence keys could not be stored");
    Refusal::new(
        500,
        ErrorCode::Internal,
        "the licence keys could not be stored; the log has the details",
    )
}

fn constant_time_eq(a: &Sha256, b: &Sha256) -> bool {
    use subtle::ConstantTimeEq as _;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn time(timestamp: Timestamp) -> String {
    repnet_protocol::rfc3339(timestamp).unwrap_or_else(|| timestamp.0.to_string())
}

/// A licence key as the admin API shows it.
pub fn entry(licence: &Licence) -> LicenceKeyEntry {
    LicenceKeyEntry::new(
        &licence.id,
        licence.label.as_deref(),
        licence.created,
        licence.expires,
        licence.last_used,
        licence.revoked,
    )
}

/// Records licence keys' last uses: see [`Licences::recorder`].
#[derive(Debug)]
pub struct Recorder(Arc<Licences>);

impl repnet_runtime::Worker for Recorder {
    fn name(&self) -> String {
        "licence-last-use".to_owned()
    }

    async fn work(
        &mut self,
        _cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        self.0
            .flush_last_used()
            .await
            .map_err(|error| format!("cannot record when licence keys were last used: {error}"))?;
        Ok(repnet_runtime::Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await
    }

    async fn finish(&mut self, _cx: &repnet_runtime::Context) {
        if let Err(error) = self.0.flush_last_used().await {
            tracing::warn!(%error, "cannot record when licence keys were last used");
        }
    }
}

/// Reads the keys again: see [`Licences::refresher`].
#[derive(Debug)]
pub struct Refresher {
    licences: Arc<Licences>,
    every: std::time::Duration,
}

/// Reads after an unknown key come at most this often, whatever requests carry.
const MIN_RELOAD_SPACING: std::time::Duration = std::time::Duration::from_secs(1);

impl repnet_runtime::Worker for Refresher {
    fn name(&self) -> String {
        "licence-refresh".to_owned()
    }

    async fn work(
        &mut self,
        _cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        self.licences
            .reload()
            .await
            .map_err(|error| format!("cannot read the licence keys: {error}"))?;
        Ok(repnet_runtime::Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        tokio::time::sleep(MIN_RELOAD_SPACING).await;
        tokio::select! {
            () = tokio::time::sleep(self.every.saturating_sub(MIN_RELOAD_SPACING)) => {}
            () = self.licences.unknown_key.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys kept in memory.
    #[derive(Debug, Default)]
    struct Book(Mutex<Vec<Licence>>);

    impl KeyBook for Book {
        fn licences(&self) -> BookFuture<'_, Vec<Licence>> {
            Box::pin(async move {
                Ok(self
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone())
            })
        }

        fn put(&self, licences: Vec<Licence>) -> BookFuture<'_, ()> {
            Box::pin(async move {
                let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                for licence in licences {
                    kept.retain(|known| known.key_sha256 != licence.key_sha256);
                    kept.push(licence);
                }
                Ok(())
            })
        }
    }

    async fn register(licences: &Licences, key: &str) {
        licences
            .register(
                &AddLicenceKey {
                    key: key.to_owned(),
                    label: None,
                    expires: None,
                },
                Timestamp(1_000),
            )
            .await
            .expect("register");
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {key}").parse().expect("header"),
        );
        headers
    }

    #[tokio::test]
    async fn servers_that_share_the_keys_share_each_keys_rate() {
        let limit = RateLimit {
            per_second: 0.001,
            burst: 10.0,
        };
        let licences = Licences::load(Arc::new(Book::default()), true, Some(limit))
            .await
            .expect("load");
        let key = "SHARED-RATE-KEY-01";
        register(&licences, key).await;
        let headers = bearer(key);
        // Two servers behind one balancer: each lets the key make half its burst.
        licences.set_servers(2);
        let allowed = (0..10)
            .filter(|_| licences.check(&headers, Timestamp(1_000)).is_ok())
            .count();
        assert_eq!(allowed, 5);
    }

    #[tokio::test]
    async fn a_key_registered_through_another_server_is_read_again() {
        let book = Arc::new(Book::default());
        let here = Licences::load(Arc::clone(&book) as Arc<dyn KeyBook>, true, None)
            .await
            .expect("load");
        let there = Licences::load(Arc::clone(&book) as Arc<dyn KeyBook>, true, None)
            .await
            .expect("load");
        let key = "REGISTERED-THERE-01";
        register(&there, key).await;
        let headers = bearer(key);
        assert!(here.check(&headers, Timestamp(1_001)).is_err());
        here.reload().await.expect("reload");
        assert!(here.check(&headers, Timestamp(1_001)).is_ok());
        // Revoked there: recording a use here does not bring it back.
        let id = there.list()[0].id.clone();
        there.revoke(&id, Timestamp(1_002)).await.expect("revoke");
        here.flush_last_used().await.expect("flush");
        there.reload().await.expect("reload");
        assert!(there.check(&headers, Timestamp(1_003)).is_err());
        assert!(
            book.0.lock().unwrap_or_else(PoisonError::into_inner)[0]
                .revoked
                .is_some()
        );
    }
}
