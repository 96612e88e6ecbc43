//! Replication: `GET /v1/changes` and `GET /v1/snapshot`, what a private server pulls (see
//! `upstream.rs`) and what `repnet bundle export` writes to a file, both needing a licence
//! key whatever the server's role; the server's status; and bundle uploads. The stream format
//! is the protocol's (`repnet_protocol::replication`): a header, entries, and a trailer with a
//! SHA-256 of it all; the store writes and applies it.
use crate::AppState;
use crate::bundle::{self, BundleError};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use repnet_http::ApiError;
use repnet_http::api::json_response;
use repnet_protocol::ErrorCode;
use repnet_protocol::ServerStatus;
use repnet_store::sync::StreamHeader;
use repnet_store::{ChangesAnswer, TEMP_PREFIX};
use serde::Deserialize;
use std::io::Seek as _;
use std::sync::Arc;

/// The changes after a sequence number: each changed key's current state.
#[utoipa::path(get, path = "/v1/changes", tag = "sync",
    params(ChangesParams),
    responses((status = 200, description = "a replication stream", body = Vec<u8>, content_type = "application/vnd.repnet.sync"),
              (status = 400, body = repnet_protocol::ErrorBody),
              (status = 401, description = "no valid licence key", body = repnet_protocol::ErrorBody),
              (status = 410, description = "the changes asked for are no longer kept: fetch /v1/snapshot", body = repnet_protocol::ErrorBody)),
    security(("licence_key" = [])))]
pub(crate) async fn get_changes(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    params: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!(
                "{}: ask GET /v1/changes?after=SEQ[&limit=N], SEQ the last sequence number applied",
                rejection.body_text()
            ),
        )
    })?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit: from 1 to {MAX_LIMIT}; got {limit}"),
        ));
    }
    let limit = limit.min(PAGE_MAX);
    let slot = state
        .streams
        .acquire(state.licences.key_id(&headers, repnet_store::now()))?;
    let store = state.store.clone();
    let after = params.after;
    // Written whole on a blocking thread before the answer starts, into memory and past
    // SPOOL_IN_MEMORY into an unnamed temporary file: the page's read transaction then lasts
    // as long as the local write, never as long as a client takes to read it (a transaction
    // held open by a client that stops reading would hold up the store's writers, and every
    // reader queued behind them).
    let (answer, spool, length) = tokio::task::spawn_blocking(move || {
        let dir = store.dir().to_path_buf();
        let io = |source| repnet_store::StoreError::Io {
            action: "write a page of changes to a temporary file in",
            path: dir.clone(),
            source,
        };
        let mut spool = tempfile::SpooledTempFile::new_in(SPOOL_IN_MEMORY, &dir);
        let mut out = std::io::BufWriter::with_capacity(CHUNK, &mut spool);
        let answer = store.write_changes(after, limit, &mut out)?;
        out.into_inner().map_err(|error| io(error.into_error()))?;
        let length = spool.stream_position().map_err(io)?;
        spool.rewind().map_err(io)?;
        Ok::<_, repnet_store::StoreError>((answer, spool, length))
    })
    .await
    .map_err(|error| ApiError::internal("the changes could not be read", &error))?
    .map_err(|error| crate::failures::store_failed("the changes could not be read", &error))?;
    match answer {
        ChangesAnswer::Written(header) if length > 0 => Ok(stream_response(
            &header,
            stream_file(spool, slot),
            Some(length),
        )),
        ChangesAnswer::Written(_) => Err(ApiError::internal(
            "the changes could not be read",
            &"the page was written without a byte",
        )),
        ChangesAnswer::SnapshotNeeded(log) => {
            let message = if after > log.sequence {
                format!(
                    "this server's change log ({}) is at {}, before the {after} asked for: {after} is not a position in this log. For a bundle, export after the position the importing server was fed to (its `repnet admin status`, line `fed from`, not its own change log), or export a whole bundle (`repnet bundle export` without --after); a server that pulls fetches a snapshot (GET /v1/snapshot)",
                    log.log_id, log.sequence
                )
            } else {
                format!(
                    "the changes after {after} are no longer kept (the log holds {} to {}): export a whole bundle (`repnet bundle export` without --after); a server that pulls fetches a snapshot (GET /v1/snapshot)",
                    log.floor + 1,
                    log.sequence
                )
            };
            // With the current sequence, so that a follower that only needs what happens from
            // now on (the proxy's cache) can start there.
            Err(
                ApiError::new(StatusCode::GONE, ErrorCode::SnapshotRequired, message)
                    .with_header(
                        axum::http::HeaderName::from_static("x-repnet-sequence"),
                        HeaderValue::from(log.sequence),
                    )
                    .with_header(
                        axum::http::HeaderName::from_static("x-repnet-log-id"),
                        HeaderValue::from_str(&log.log_id.to_string())
                            .unwrap_or_else(|_| HeaderValue::from_static("")),
                    ),
            )
        }
    }
}

/// Runs `write` on a blocking thread into an unnamed temporary file in the data directory,
/// buffered; answers what it returned, the file rewound, and its length. What a whole-store
/// answer (a snapshot, an export, a backup) is written with before it is sent: its read
/// transaction then lasts as long as the local write, not as long as a slow client takes to
/// download it.
pub(super) async fn spool<T: Send + 'static>(
    store: &repnet_store::Store,
    what: &'static str,
    write: impl FnOnce(
        &repnet_store::Store,
        &mut dyn std::io::Write,
    ) -> Result<T, repnet_store::StoreError>
    + Send
    + 'static,
) -> Result<(T, std::fs::File, u64), ApiError> {
    let store = store.clone();
    let failed = format!("the {what} could not be written");
    tokio::task::spawn_blocking(move || {
        let dir = store.dir().to_path_buf();
        let io = |source| repnet_store::StoreError::Io {
            action: "write to a temporary file in",
            path: dir.clone(),
            source,
        };
        let mut file = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(io)?
            .into_file();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut file);
        let written = write(&store, &mut out)?;
        out.into_inner().map_err(|error| io(error.into_error()))?;
        let length = file.stream_position().map_err(io)?;
        file.rewind().map_err(io)?;
        Ok::<_, repnet_store::StoreError>((written, file, length))
    })
    .await
    .map_err(|error| ApiError::internal(&failed, &error))?
    .map_err(|error| crate::failures::store_failed(&failed, &error))
}

/// The whole knowledge base as one stream.
#[utoipa::path(get, path = "/v1/snapshot", tag = "sync",
    responses((status = 200, description = "a replication stream", body = Vec<u8>, content_type = "application/vnd.repnet.sync"),
              (status = 401, description = "no valid licence key", body = repnet_protocol::ErrorBody)),
    security(("licence_key" = [])))]
pub(crate) async fn get_snapshot(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let slot = state
        .streams
        .acquire(state.licences.key_id(&headers, repnet_store::now()))?;
    let (header, file, length) = spool(&state.store, "snapshot", |store, out| {
        store.write_snapshot(out)
    })
    .await?;
    Ok(stream_response(
        &header,
        stream_file(file, slot),
        Some(length),
    ))
}

/// A backup of the server: a tar archive of the knowledge base (LMDB's consistent,
/// compacted copy, `data.mdb`) and the state files beside it (`BACKUP_FILES`). Written to
/// unnamed temporary files in the data directory first (the copy's read transaction lasts as
/// long as the local write, not the download), then streamed. docs/operations.md, "Backup".
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin",
    responses((status = 200, description = "a tar archive: data.mdb, then settings.json, proxies.json, feeds-state.json, activity.json where they exist", body = Vec<u8>, content_type = "application/x-tar"),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 501, description = "a Redis Cluster store: use the cluster's own persistence", body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn get_backup(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if state.store.shared() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::BackupUnsupported,
            "this server's knowledge base is a Redis Cluster: back it up with the cluster's own persistence (RDB snapshots, AOF); `repnet bundle export` writes a signed copy of the knowledge base",
        ));
    }
    let slot = state.streams.acquire(None)?;
    let ((), file, length) = spool(&state.store, "backup", backup_archive).await?;
    let mut response = (StatusCode::OK, stream_file(file, slot)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"repnet-backup.tar\""),
    );
    Ok(response)
}

/// Writes the backup's tar archive to `out`: LMDB's compacted copy (itself first copied to an
/// unnamed temporary file, as LMDB copies to a file), then the state files that exist.
fn backup_archive(
    store: &repnet_store::Store,
    out: &mut dyn std::io::Write,
) -> Result<(), repnet_store::StoreError> {
    let dir = store.dir().to_path_buf();
    let io = |source| repnet_store::StoreError::Io {
        action: "write a backup to a temporary file in",
        path: dir.clone(),
        source,
    };
    let mut copy = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(&dir)
        .map(tempfile::NamedTempFile::into_file)
        .map_err(io)?;
    store.backup(&mut copy)?;
    copy.rewind().map_err(io)?;
    let mut archive = tar::Builder::new(out);
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o600);
    header.set_mtime(repnet_store::now().0);
    let [database, state_files @ ..] = repnet_protocol::BACKUP_FILES;
    header.set_size(copy.metadata().map_err(io)?.len());
    archive
        .append_data(&mut header.clone(), database, &mut copy)
        .map_err(io)?;
    drop(copy);
    for name in state_files {
        // Each is replaced whole by a rename when it changes: what is read is one version.
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => {
                header.set_size(bytes.len() as u64);
                archive
                    .append_data(&mut header.clone(), name, bytes.as_slice())
                    .map_err(io)?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
    }
    archive.finish().map_err(io)
}

/// The answer's body: `file` from where it stands, read on a blocking thread a chunk ahead
/// of the client. `slot`, and with it the file, lasts as long as the body: a client that
/// stops reading is closed by the connection's write_timeout_seconds, which ends both.
pub(super) fn stream_file(file: impl std::io::Read + Send + 'static, slot: StreamSlot) -> Body {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; 256 << 10];
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => {
                    chunk.truncate(read);
                    if sender.blocking_send(Ok(chunk)).is_err() {
                        break; // The client went away.
                    }
                }
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    break;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(
        (receiver, slot),
        |(mut receiver, slot)| async move {
            receiver.recv().await.map(|chunk| (chunk, (receiver, slot)))
        },
    ))
}

/// The server's role, change log and upstream.
#[utoipa::path(get, path = "/v1/admin/status", tag = "admin",
    responses((status = 200, body = repnet_protocol::ServerStatus),
              (status = 401, body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn get_status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let status = server_status(&state).await?;
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&status),
    ))
}

/// What `/v1/admin/status` and the console's status page show.
pub(crate) async fn server_status(state: &AppState) -> Result<ServerStatus, ApiError> {
    let log = state.store.sync_state().await.map_err(|error| {
        crate::failures::store_failed("the change log could not be read", &error)
    })?;
    let keys = state
        .store
        .stats()
        .await
        .map_err(|error| crate::failures::store_failed("the store could not be read", &error))?
        .keys;
    let statistics =
        state.store.statistics_size().await.map_err(|error| {
            crate::failures::store_failed("the store could not be read", &error)
        })?;
    let status = ServerStatus {
        tracked_objects: statistics.objects,
        aggregate_bytes: statistics.aggregate_bytes,
        raw_events: statistics.events,
        raw_event_bytes: statistics.event_bytes,
        workers: repnet_http::admin::worker_statuses(&state.workers),
        role: state.role.as_str().to_owned(),
        key_required: state.licences.required(),
        licence_keys: state
            .licences
            .list()
            .iter()
            .filter(|licence| {
                licence.revoked.is_none() && licence.expires.is_none_or(|e| e > repnet_store::now())
            })
            .count() as u64,
        knowledge_base_entries: keys,
        fed_from: log.upstream.map(|cursor| repnet_protocol::FedFrom {
            log_id: cursor.log_id.to_string(),
            sequence: cursor.sequence,
        }),
        log_id: log.log_id.to_string(),
        sequence: log.sequence,
        oldest_continuable: log.floor,
        upstream: match &state.upstream {
            Some(upstream) => Some(upstream.status(&state.store).await),
            None => None,
        },
    };
    Ok(status)
}

/// Applies an offline bundle (`repnet bundle export`), checked against the configured
/// `bundle_public_key`.
#[utoipa::path(post, path = "/v1/admin/bundles", tag = "admin",
    params(("force" = Option<bool>, Query, description = "apply a bundle older than what the server has (a deliberate rollback)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a bundle file"),
    responses((status = 200, body = repnet_protocol::BundleApplied),
              (status = 401, body = repnet_protocol::ErrorBody),
              (status = 403, description = "no bundle_public_key configured", body = repnet_protocol::ErrorBody),
              (status = 409, description = "the bundle does not continue this server's sequence, or is older than what it has", body = repnet_protocol::ErrorBody),
              (status = 422, description = "not a bundle, a bad signature, or a damaged stream", body = repnet_protocol::ErrorBody)),
    security(("admin_token" = [])))]
pub(crate) async fn post_bundle(
    State(state): State<Arc<AppState>>,
    params: Result<Query<BundleParams>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let force = match params {
        Ok(Query(params)) => match params.force.as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") | Some("") => true,
            Some(other) => {
                let error = ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("force must be true or false; got {other:?}"),
                );
                return Err(repnet_http::api::discard_body(body, error).await);
            }
        },
        Err(rejection) => {
            let error = ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!(
                    "{}: the only parameter here is force=true",
                    rejection.body_text()
                ),
            );
            return Err(repnet_http::api::discard_body(body, error).await);
        }
    };
    let Some(trusted) = state.bundle_key else {
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::BundlesDisabled,
            "this server accepts no bundles: configure bundle_public_key (the .pub file of `repnet bundle keygen`) and restart it",
        );
        return Err(repnet_http::api::discard_body(body, error).await);
    };
    let path = super::feeds::spool_body(
        state.store.dir(),
        body,
        state.feeds.max_upload_bytes(),
        "the request body is empty: send the bundle file as the body (repnet bundle import FILE --server URL)",
    )
    .await?;
    let store = state.store.clone();
    let fed_to = store
        .sync_state()
        .await
        .map_err(|error| crate::failures::store_failed("the change log could not be read", &error))?
        .upstream;
    let applied = tokio::task::spawn_blocking(move || {
        let result = bundle::import(&store, &path, &trusted, force, fed_to);
        drop(path);
        result
    })
    .await
    .map_err(|error| ApiError::internal("the bundle could not be applied", &error))?
    .map_err(bundle_error)?;
    tracing::info!(
        kind = ?applied.header.kind,
        entries = applied.entries,
        sequence = applied.header.to,
        "bundle applied"
    );
    Ok(json_response(
        StatusCode::OK,
        repnet_protocol::to_json(&bundle::applied_view(&applied)),
    ))
}

/// The media type of replication streams.
pub(crate) const STREAM_TYPE: &str = "application/vnd.repnet.sync";

/// Changes in a page unless the client asks for fewer or more.
const DEFAULT_LIMIT: usize = 100_000;
const MAX_LIMIT: usize = 1_000_000;
/// Changes actually sent in one page, whatever was asked: the page says where it ended
/// (`X-Repnet-To`), and the client asks again from there.
const PAGE_MAX: usize = 100_000;

/// The buffer a page of changes is written through.
const CHUNK: usize = 64 << 10;

/// A page of changes is kept in memory up to this size, in a temporary file past it.
const SPOOL_IN_MEMORY: usize = 1 << 20;

/// Replication streams being sent, in total and per licence key: each holds a read
/// transaction (a page) or a temporary file (a snapshot) while its client reads.
#[derive(Debug)]
pub(crate) struct StreamSlots {
    max_total: usize,
    max_per_key: usize,
    used: std::sync::Mutex<(usize, std::collections::HashMap<String, usize>)>,
}

impl StreamSlots {
    pub(crate) fn new(max_total: usize, max_per_key: usize) -> StreamSlots {
        StreamSlots {
            max_total,
            max_per_key,
            used: std::sync::Mutex::new((0, std::collections::HashMap::new())),
        }
    }

    /// A slot for one stream to `key`'s holder, released when the stream ends.
    pub(super) fn acquire(self: &Arc<Self>, key: Option<String>) -> Result<StreamSlot, ApiError> {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let retry = || {
            (
                axum::http::HeaderName::from_static("retry-after"),
                HeaderValue::from_static("5"),
            )
        };
        if used.0 >= self.max_total {
            let (name, value) = retry();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Busy,
                format!(
                    "this server sends {} replication streams at once (max_replication_streams): try again in a few seconds",
                    self.max_total
                ),
            )
            .with_header(name, value));
        }
        if let Some(key) = &key {
            let mine = used.1.get(key).copied().unwrap_or(0);
            if mine >= self.max_per_key {
                let (name, value) = retry();
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    format!(
                        "this licence key has {mine} replication streams under way (max_replication_streams_per_key): finish reading them first"
                    ),
                )
                .with_header(name, value));
            }
            *used.1.entry(key.clone()).or_insert(0) += 1;
        }
        used.0 += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            key,
        })
    }
}

/// One stream under way; dropped with its answer's body.
#[derive(Debug)]
pub(super) struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: Option<String>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut used = self
            .slots
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        used.0 = used.0.saturating_sub(1);
        if let Some(key) = &self.key
            && let Some(count) = used.1.get_mut(key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                used.1.remove(key);
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesParams {
    /// The last sequence number the client has applied (0 for none).
    after: u64,
    /// Most changes (sequence numbers) in the answer, each changed key once (default and
    /// most sent 100,000; up to 1,000,000 accepted). The answer's `X-Repnet-To` says where
    /// it ended.
    #[serde(default)]
    limit: Option<usize>,
}

fn stream_response(header: &StreamHeader, body: Body, length: Option<u64>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_TYPE));
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    headers.insert("x-repnet-sequence", HeaderValue::from(header.sequence));
    headers.insert("x-repnet-to", HeaderValue::from(header.to));
    if let Ok(value) = HeaderValue::from_str(&header.log_id.to_string()) {
        headers.insert("x-repnet-log-id", value);
    }
    response
}

/// `POST /v1/admin/bundles`'s parameters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundleParams {
    /// Apply a bundle older than what the server has (a deliberate rollback).
    #[serde(default)]
    force: Option<String>,
}

fn bundle_error(error: BundleError) -> ApiError {
    match error {
        BundleError::Older(message) => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::BundleOlder, message)
        }
        BundleError::Store(repnet_store::StoreError::OutOfOrder(message)) => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::BundleOutOfOrder, message)
        }
        BundleError::Store(repnet_store::StoreError::Sync(error)) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidBundle,
            error.to_string(),
        ),
        BundleError::Invalid(message) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidBundle,
            message,
        ),
        error @ BundleError::Signature(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BundleSignature,
            error.to_string(),
        ),
        BundleError::Store(error @ repnet_store::StoreError::Unavailable(_)) => {
            crate::failures::store_failed("the bundle could not be applied", &error)
        }
        error => ApiError::internal("the bundle could not be applied", &error),
    }
}
