//! CIRCL hashlookup's API shape (`/lookup/md5/{h}`, `/bulk/sha1`, `/info`, …) answered from
//! the knowledge base, so that hashlookup's clients — `pyhashlookup`, MISP's hashlookup
//! module, `curl | jq` recipes — work against repnet unchanged (docs/integrations.md).
//!
//! The shape is hashlookup's, not ours: its field names (`MD5`, `SHA-1`, `SHA-256`, upper-case
//! hexadecimal), 404 with `{"message": "Non existing MD5", "query": …}` for an unknown hash,
//! 400 with `{"message": …}` for a malformed one. What repnet knows beyond it is added under
//! `repnet:` names. What repnet does not keep (file names and sizes, NSRL's product codes,
//! parent/child relations, per-hash query counts) is left out rather than made up.
use crate::AppState;
use crate::lookup::{Lookup, assess};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use repnet_http::ApiError;
use repnet_http::api::json_response;
use repnet_model::{FileHash, FileHashes, HashKind, Reputation, Verdict};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The version of hashlookup's API this answers as (its server's `hashlookup-version`).
const API_VERSION: &str = "1.0";

/// A refusal in hashlookup's shape: `{"message": …}`, with the query for a 404.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    query: Option<String>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("message".to_owned(), Value::String(self.message));
        if let Some(query) = self.query {
            body.insert("query".to_owned(), Value::String(query));
        }
        json_response(self.status, Value::Object(body).to_string().into_bytes())
    }
}

fn message(status: StatusCode, message: String, query: Option<&str>) -> Refusal {
    Refusal {
        status,
        message,
        query: query.map(str::to_owned),
    }
}

/// What a handler here fails with: hashlookup's refusals, or repnet's own errors (the store
/// could not be read, a body too large).
pub(crate) enum Failure {
    Refusal(Refusal),
    Api(ApiError),
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Failure {
        Failure::Refusal(refusal)
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure::Api(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Refusal(refusal) => refusal.into_response(),
            Failure::Api(error) => error.into_response(),
        }
    }
}

/// How hashlookup names a kind in its messages.
fn kind_name(kind: HashKind) -> &'static str {
    match kind {
        HashKind::Md5 => "MD5",
        HashKind::Sha1 => "SHA-1",
        HashKind::Sha256 => "SHA-256",
    }
}

/// Parses `text` as a hash of `kind`, or hashlookup's 400 saying what was wrong.
fn parse(kind: HashKind, text: &str) -> Result<FileHash, Refusal> {
    let hex_len = match kind {
        HashKind::Md5 => 32,
        HashKind::Sha1 => 40,
        HashKind::Sha256 => 64,
    };
    let name = kind_name(kind);
    if text.len() != hex_len {
        return Err(message(
            StatusCode::BAD_REQUEST,
            format!(
                "Expecting a {name} hex value: {hex_len} hexadecimal characters, got {}",
                text.chars().count()
            ),
            None,
        ));
    }
    match FileHash::from_hex(text) {
        Ok(hash) if hash.kind() == kind => Ok(hash),
        _ => Err(message(
            StatusCode::BAD_REQUEST,
            format!("{name} is not in hex format: use only 0-9 and a-f (either case)"),
            None,
        )),
    }
}

/// Whether the knowledge base knows anything of the file: hashlookup's "exists".
fn known(reputation: &Reputation) -> bool {
    !reputation.records.is_empty()
}

/// hashlookup's trust score (0-100; 50 for a file merely known): above 50 for what repnet
/// trusts, below for what it does not, by the deciding source's confidence.
fn trust(reputation: &Reputation) -> u8 {
    let half = reputation.confidence.get() / 2;
    match reputation.verdict {
        Verdict::Trusted => 50 + half,
        Verdict::Untrusted | Verdict::Riskware => 50 - half,
        Verdict::Unknown => 50,
    }
}

/// One known file in hashlookup's shape.
fn record(reputation: &Reputation) -> Value {
    let mut body = Map::new();
    let hashes: &FileHashes = &reputation.hashes;
    if let Some(md5) = hashes.md5 {
        body.insert("MD5".to_owned(), json!(md5.to_string().to_uppercase()));
    }
    if let Some(sha1) = hashes.sha1 {
        body.insert("SHA-1".to_owned(), json!(sha1.to_string().to_uppercase()));
    }
    if let Some(sha256) = hashes.sha256 {
        body.insert(
            "SHA-256".to_owned(),
            json!(sha256.to_string().to_uppercase()),
        );
    }
    if let Some(source) = &reputation.source {
        body.insert("source".to_owned(), json!(source.to_string()));
        if matches!(reputation.verdict, Verdict::Untrusted) {
            body.insert("KnownMalicious".to_owned(), json!(source.to_string()));
        }
    }
    body.insert("hashlookup:trust".to_owned(), json!(trust(reputation)));
    body.insert(
        "repnet:verdict".to_owned(),
        json!(reputation.verdict.as_str()),
    );
    body.insert(
        "repnet:confidence".to_owned(),
        json!(reputation.confidence.get()),
    );
    if let Some(threat) = &reputation.threat {
        body.insert("repnet:threat".to_owned(), json!(threat.as_str()));
    }
    let categories: Vec<&str> = reputation.categories.iter().map(|c| c.as_str()).collect();
    if !categories.is_empty() {
        body.insert("repnet:categories".to_owned(), json!(categories));
    }
    Value::Object(body)
}

async fn lookup_one(state: &AppState, kind: HashKind, text: &str) -> Result<Response, Failure> {
    let hash = parse(kind, text)?;
    let mut hashes = FileHashes::default();
    hashes.insert(hash);
    // Not `None`: `hashes` holds one hash.
    let queries: Vec<Lookup> = Lookup::file(&hashes).into_iter().collect();
    let reputation = assess(state, queries).await?.remove(0);
    if !known(&reputation) {
        return Err(message(
            StatusCode::NOT_FOUND,
            format!("Non existing {}", kind_name(kind)),
            Some(text),
        )
        .into());
    }
    Ok(json_response(
        StatusCode::OK,
        record(&reputation).to_string().into_bytes(),
    ))
}

fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    path.map(|Path(text)| text).map_err(|rejection| {
        message(
            StatusCode::BAD_REQUEST,
            format!(
                "the hash in the path is unreadable: {}",
                rejection.body_text()
            ),
            None,
        )
    })
}

macro_rules! single {
    ($name:ident, $kind:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "hashlookup",
            params(("hash" = String, Path, description = "hexadecimal, in either case")),
            responses((status = 200, description = "known: hashlookup's record (MD5, SHA-1, SHA-256, source, hashlookup:trust) and repnet's verdict"),
                      (status = 400, description = "not a hash of this kind: {\"message\": …}"),
                      (status = 404, description = "unknown: {\"message\": \"Non existing …\", \"query\": …}")))]
        pub(crate) async fn $name(
            State(state): State<Arc<AppState>>,
            path: Result<Path<String>, PathRejection>,
        ) -> Result<Response, Failure> {
            lookup_one(&state, $kind, &path_text(path)?).await
        }
    };
}

single!(
    lookup_md5,
    HashKind::Md5,
    "/lookup/md5/{hash}",
    "hashlookup: one file by MD5."
);
single!(
    lookup_sha1,
    HashKind::Sha1,
    "/lookup/sha1/{hash}",
    "hashlookup: one file by SHA-1."
);
single!(
    lookup_sha256,
    HashKind::Sha256,
    "/lookup/sha256/{hash}",
    "hashlookup: one file by SHA-256."
);

/// Reads `{"hashes": […]}`. Like hashlookup, the body is JSON whatever its `Content-Type`.
fn bulk_hashes(
    state: &AppState,
    kind: HashKind,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<FileHash>, Failure> {
    let body = repnet_http::api::body_bytes(body)?;
    #[derive(serde::Deserialize)]
    struct Bulk {
        hashes: Vec<String>,
    }
    let bulk: Bulk = serde_json::from_slice(&body).map_err(|error| -> Failure {
        message(
            StatusCode::BAD_REQUEST,
            format!(
                "JSON format incorrect. An array of hashes in the key 'hashes' is expected: {error}"
            ),
            None,
        )
        .into()
    })?;
    if bulk.hashes.len() > state.max_batch_items {
        return Err(message(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} hashes; the limit is {} (max_batch_items): split them into several requests",
                bulk.hashes.len(),
                state.max_batch_items
            ),
            None,
        )
        .into());
    }
    bulk.hashes
        .iter()
        .enumerate()
        .map(|(index, text)| {
            parse(kind, text).map_err(|_| {
                message(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "hashes[{index}] is not {} {}: {text:?}",
                        if kind == HashKind::Md5 { "an" } else { "a" },
                        kind_name(kind)
                    ),
                    None,
                )
                .into()
            })
        })
        .collect()
}

async fn bulk(
    state: &AppState,
    kind: HashKind,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let hashes = bulk_hashes(state, kind, body)?;
    let queries = hashes
        .iter()
        .filter_map(|hash| {
            let mut hashes = FileHashes::default();
            hashes.insert(*hash);
            Lookup::file(&hashes)
        })
        .collect();
    let reputations = assess(state, queries).await?;
    // hashlookup's own answers: the MD5 form lists only the files it knows; the SHA-1 form
    // answers every hash in order, `{}` for one it does not.
    let answers: Vec<Value> = reputations
        .iter()
        .filter_map(|reputation| match (known(reputation), kind) {
            (true, _) => Some(record(reputation)),
            (false, HashKind::Md5) => None,
            (false, _) => Some(Value::Object(Map::new())),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        Value::Array(answers).to_string().into_bytes(),
    ))
}

/// hashlookup: the files of a list of MD5s that are known (the unknown ones are left out).
#[utoipa::path(post, path = "/bulk/md5", tag = "hashlookup",
    request_body(content = String, content_type = "application/json", description = "{\"hashes\": [\"<md5>\", …]}"),
    responses((status = 200, description = "the known files, in hashlookup's shape"),
              (status = 400, description = "not JSON of that shape, or a hash that is not an MD5: {\"message\": …}"),
              (status = 413, description = "more hashes than max_batch_items")))]
pub(crate) async fn bulk_md5(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    bulk(&state, HashKind::Md5, body).await
}

/// hashlookup: one answer per SHA-1 of the list, in order (`{}` for an unknown one).
#[utoipa::path(post, path = "/bulk/sha1", tag = "hashlookup",
    request_body(content = String, content_type = "application/json", description = "{\"hashes\": [\"<sha1>\", …]}"),
    responses((status = 200, description = "one answer per hash, in hashlookup's shape"),
              (status = 400, description = "not JSON of that shape, or a hash that is not a SHA-1: {\"message\": …}"),
              (status = 413, description = "more hashes than max_batch_items")))]
pub(crate) async fn bulk_sha1(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    bulk(&state, HashKind::Sha1, body).await
}

/// hashlookup: about the database.
#[utoipa::path(get, path = "/info", tag = "hashlookup",
    responses((status = 200, description = "hashlookup-version, repnet-version, the knowledge base's entries and its feeds")))]
pub(crate) async fn info(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let entries = state
        .store
        .stats()
        .await
        .map_err(|error| crate::failures::store_failed("the store could not be read", &error))?
        .keys;
    let mut body = Map::new();
    body.insert("hashlookup-version".to_owned(), json!(API_VERSION));
    body.insert(
        "repnet-version".to_owned(),
        json!(env!("CARGO_PKG_VERSION")),
    );
    body.insert("repnet-entries".to_owned(), json!(entries.to_string()));
    let feeds: Vec<String> = state.feeds.statuses().into_iter().map(|f| f.name).collect();
    body.insert("repnet-feeds".to_owned(), json!(feeds));
    Ok(json_response(
        StatusCode::OK,
        Value::Object(body).to_string().into_bytes(),
    ))
}

/// hashlookup: the most asked-for hashes. repnet keeps no per-hash query counts (what a
/// device asks is not recorded), so both lists are empty.
#[utoipa::path(get, path = "/stats/top", tag = "hashlookup",
    responses((status = 200, description = "{\"nx\": [], \"exist\": []}: repnet does not record what is asked")))]
pub(crate) async fn top() -> Response {
    json_response(
        StatusCode::OK,
        json!({"nx": [], "exist": []}).to_string().into_bytes(),
    )
}

type RelationsPath = Result<Path<(String, String, String)>, PathRejection>;

/// hashlookup: a file's children (the members of an archive). repnet keeps no relations
/// between files: every SHA-1 has none.
#[utoipa::path(get, path = "/children/{sha1}/{count}/{cursor}", tag = "hashlookup",
    params(("sha1" = String, Path), ("count" = String, Path), ("cursor" = String, Path)),
    responses((status = 400, description = "not a SHA-1"),
              (status = 404, description = "repnet keeps no relations between files")))]
pub(crate) async fn children(path: RelationsPath) -> Response {
    relations(path)
}

/// hashlookup: a file's parents (the archives holding it): none, as for children.
#[utoipa::path(get, path = "/parents/{sha1}/{count}/{cursor}", tag = "hashlookup",
    params(("sha1" = String, Path), ("count" = String, Path), ("cursor" = String, Path)),
    responses((status = 400, description = "not a SHA-1"),
              (status = 404, description = "repnet keeps no relations between files")))]
pub(crate) async fn parents(path: RelationsPath) -> Response {
    relations(path)
}

fn relations(path: RelationsPath) -> Response {
    let sha1 = match path {
        Ok(Path((sha1, _, _))) => sha1,
        Err(rejection) => {
            return message(StatusCode::BAD_REQUEST, rejection.body_text(), None).into_response();
        }
    };
    match parse(HashKind::Sha1, &sha1) {
        Ok(_) => message(
            StatusCode::NOT_FOUND,
            "The SHA-1 has no parents or children here: repnet keeps no relations between files"
                .to_owned(),
            Some(&sha1),
        )
        .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}
