//! A client for repnet's HTTP API.
//!
//! Errors distinguish what a user must act on differently: the server cannot be reached
//! (start it, or fix `--server`), the server refused the request (its message says why), or
//! the server answered something this client does not understand (a version mismatch).

use std::time::Duration;

use repnet_model::ObjectKind;
use repnet_protocol::{
    AddLicenceKey, ErrorBody, FeedStatus, FeedStatusList, HashMatch, HashSearchRequest,
    HashSearchResponse, ImportParams, ImportReport, LicenceKeyEntry, LicenceKeyList,
    LocalVerdictList, LookupItem, LookupRequest, LookupResponse, LookupResult, Reputation,
    ServerStatus, SetLocalVerdict,
};
use reqwest::StatusCode;

/// The most items the server takes in one batch; longer lists are split.
pub const BATCH_LIMIT: usize = 10_000;

/// Privacy-mode searches of one lookup in flight at once.
const PARALLEL_SEARCHES: usize = 4;

/// Bytes of each hash a privacy-mode lookup sends.
pub const PRIVATE_PREFIX_BYTES: usize = 4;

/// Something to look up in privacy mode.
#[derive(Debug, Clone)]
pub struct PrivateTarget {
    /// What the answer is about.
    object: repnet_model::Object,
    /// For URLs: the canonical URL, which the answer reports.
    url: Option<repnet_model::CanonicalUrl>,
    candidates: Candidates,
}

#[derive(Debug, Clone)]
enum Candidates {
    /// A file by every hash known of it.
    File(repnet_model::FileHashes),
    /// The expressions of a URL, a domain or an IP address, most specific first, with the
    /// SHA-256 of each (asked for, then looked for in the answer).
    Expressions(Vec<(repnet_model::Expression, repnet_model::Sha256)>),
}

impl Candidates {
    fn expressions(expressions: Vec<repnet_model::Expression>) -> Candidates {
        Candidates::Expressions(
            expressions
                .into_iter()
                .map(|expression| {
                    let hash = expression.sha256();
                    (expression, hash)
                })
                .collect(),
        )
    }
}

impl PrivateTarget {
    /// A file by every hash known of it (at least one).
    pub fn file(hashes: repnet_model::FileHashes) -> Option<PrivateTarget> {
        Some(PrivateTarget {
            object: repnet_model::Object::File(hashes.primary()?),
            url: None,
            candidates: Candidates::File(hashes),
        })
    }

    /// A URL: every expression of it is a candidate.
    pub fn url(url: repnet_model::CanonicalUrl) -> PrivateTarget {
        PrivateTarget {
            object: repnet_model::Object::Url(url.exact_expression()),
            candidates: Candidates::expressions(url.expressions()),
            url: Some(url),
        }
    }

    /// A domain: the expressions of its host suffixes, as the server looks it up.
    pub fn domain(domain: repnet_model::Domain) -> Result<PrivateTarget, repnet_model::ParseError> {
        let expressions =
            repnet_model::CanonicalUrl::parse(format!("http://{domain}/").as_bytes())?
                .host_expressions();
        Ok(PrivateTarget {
            object: repnet_model::Object::Domain(domain),
            url: None,
            candidates: Candidates::expressions(expressions),
        })
    }

    /// An IP address.
    pub fn ip(ip: std::net::IpAddr) -> PrivateTarget {
        PrivateTarget {
            object: repnet_model::Object::Ip(ip),
            url: None,
            candidates: Candidates::expressions(vec![repnet_model::Expression::for_ip(ip)]),
        }
    }

    /// The prefixes this target asks for, by kind.
    fn prefixes(&self, request: &mut PrefixRequest) {
        use repnet_model::{HashKind, PrefixOf};
        let mut add = |of: PrefixOf, bytes: &[u8]| {
            if let Some(prefix) = bytes.first_chunk::<PRIVATE_PREFIX_BYTES>() {
                request.insert((of, *prefix));
            }
        };
        match &self.candidates {
            Candidates::File(hashes) => {
                for hash in hashes.iter() {
                    let of = match hash.kind() {
                        HashKind::Sha256 => PrefixOf::Sha256,
                        HashKind::Sha1 => PrefixOf::Sha1,
                        HashKind::Md5 => PrefixOf::Md5,
                    };
                    add(of, hash.as_bytes());
                }
            }
            // Among web addresses only: half the server's work, and no file is named.
            Candidates::Expressions(expressions) => {
                for (_, hash) in expressions {
                    add(PrefixOf::Url, hash.as_bytes());
                }
            }
        }
    }

    /// Decides from the full hashes that came back, by the model's rules as the server
    /// applies them: a file from the records under all of its hashes, a URL, domain or IP
    /// from those of every matched expression.
    fn decide(&self, found: &Found<'_>) -> repnet_model::Reputation {
        let ttl = found.ttl;
        match &self.candidates {
            Candidates::File(hashes) => {
                let mut records: Vec<repnet_model::SourceRecord> = Vec::new();
                // The strongest hash first: its records win a source's disagreement, as on
                // the server.
                for hash in hashes.iter() {
                    let Some(found) = found.files.get(hash.as_bytes()).copied() else {
                        continue;
                    };
                    for record in found.source_records() {
                        if !records.iter().any(|r| r.source == record.source) {
                            records.push(record);
                        }
                    }
                }
                repnet_model::Reputation::assess(self.object.clone(), *hashes, records, 0, &ttl)
            }
            Candidates::Expressions(expressions) => {
                let matches = expressions
                    .iter()
                    .filter_map(|(expression, hash)| {
                        let found = found.urls.get(&hash.0).copied()?;
                        Some(repnet_model::MatchedExpression {
                            expression: expression.clone(),
                            records: found.source_records(),
                            prevalence: 0,
                        })
                    })
                    .collect();
                let mut reputation = repnet_model::Reputation::assess_expressions(
                    self.object.clone(),
                    matches,
                    &ttl,
                );
                reputation.url = self.url.clone();
                reputation
            }
        }
    }
}

/// A search's matches by type and full hash, and their lifetimes: what targets decide from.
struct Found<'a> {
    /// URL expressions by the SHA-256 of their text.
    urls: std::collections::HashMap<[u8; 32], &'a HashMatch>,
    /// Files by each hash the answer names them by.
    files: std::collections::HashMap<Vec<u8>, &'a HashMatch>,
    ttl: repnet_model::TtlPolicy,
}

impl<'a> Found<'a> {
    fn new(response: &'a HashSearchResponse) -> Found<'a> {
        let (mut urls, mut files) = (
            std::collections::HashMap::new(),
            std::collections::HashMap::new(),
        );
        for found in &response.matches {
            // A hash this client cannot read cannot be one it asked about.
            let Ok(hash) = hex::decode(&found.hash) else {
                continue;
            };
            match (found.kind.as_str(), <[u8; 32]>::try_from(hash.as_slice())) {
                ("url", Ok(hash)) => {
                    urls.insert(hash, found);
                }
                ("file", _) => {
                    files.insert(hash, found);
                }
                _ => {}
            }
        }
        Found {
            urls,
            files,
            ttl: repnet_model::TtlPolicy {
                known: response.cache_seconds,
                unknown: response
                    .unknown_cache_seconds
                    .unwrap_or(response.cache_seconds),
            },
        }
    }
}

/// The distinct prefixes of a privacy-mode lookup, by kind.
type PrefixRequest =
    std::collections::BTreeSet<(repnet_model::PrefixOf, [u8; PRIVATE_PREFIX_BYTES])>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a usable server URL: give one like http://127.0.0.1:8080")]
    InvalidUrl(String),
    #[error("cannot reach {url}: is `repnet serve` running there? ({reason})")]
    Unreachable { url: String, reason: String },
    /// The connection was made, but TLS failed in a way the user fixes with a flag: an
    /// untrusted certificate, or the wrong scheme for the port.
    #[error("{message}")]
    Tls { url: String, message: String },
    #[error("the server refused the request ({status}, {code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Input(String),
    #[error(
        "the server at {url} gave an answer this client does not understand ({reason}): is it a repnet server of a compatible version?"
    )]
    Unexpected { url: String, reason: String },
}

/// An HTTP client builder with rustls and its crypto provider set up.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Installing fails only if a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("repnet/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .redirect(same_origin_redirects())
}

/// Redirects are followed within the server's own origin only (scheme, host and port), at
/// most five: a licence key or an admin token must never be sent to another host because
/// a server, or whoever answers in its name, said so.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > 5 {
            attempt.error("more than five redirects")
        } else if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// How long a replication stream's sender may take before it answers.
pub const REPLICATION_HEADERS_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an answer's body may go without a byte before reading it fails.
pub const BODY_PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// The most of an error answer read: a repnet error body is a few hundred bytes.
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// The most of any other answer read into memory (replication streams are streamed).
pub const MAX_ANSWER_BODY: usize = 256 << 20;

/// Why an answer's body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer stalled: nothing for {0} seconds")]
    Stalled(u64),
    /// The connection broke: the error chain, as text.
    #[error("{0}")]
    Broken(String),
}

/// Reads a response's body, at most `max` bytes: a longer one is an error (an answer with
/// an endless body must not be read whole).
pub async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<bytes::Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = bytes::BytesMut::new();
    loop {
        let chunk = tokio::time::timeout(BODY_PROGRESS_TIMEOUT, response.chunk())
            .await
            .map_err(|_| BodyError::Stalled(BODY_PROGRESS_TIMEOUT.as_secs()))?
            .map_err(|error| BodyError::Broken(error_chain(&error)))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Up to [`MAX_ERROR_BODY`] bytes of an error answer; what follows, and a body that breaks
/// off, are left unread (the refusal is then reported without its message).
pub async fn read_error_body(mut response: reqwest::Response) -> bytes::Bytes {
    let mut body = bytes::BytesMut::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(BODY_PROGRESS_TIMEOUT, response.chunk()).await
    {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body.freeze()
}

/// What [`Client::import_feed`] uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportBody {
    /// A file, streamed as it is read (compressed files stay compressed).
    File(std::path::PathBuf),
    Bytes(Vec<u8>),
}

/// A connection to one repnet server. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    admin_token: Option<String>,
    licence_key: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_ca(base_url, None)
    }

    /// A client that also trusts the CA certificates (PEM) in `ca_file`, for a server whose
    /// certificate comes from a private PKI.
    pub fn with_ca(
        base_url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client, ClientError> {
        Client::with_ca_and_timeout(base_url, ca_file, Duration::from_secs(60))
    }

    /// [`with_ca`](Client::with_ca), with requests failing after `timeout` rather than a
    /// minute (the proxy's upstream).
    pub fn with_ca_and_timeout(
        base_url: &str,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let mut builder = http_client_builder().timeout(timeout);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                ClientError::Input(format!(
                    "cannot read the CA file {}: {error}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| {
                    ClientError::Input(format!(
                        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate",
                        path.display()
                    ))
                })?;
            builder = builder.tls_certs_merge(certificates);
        }
        Client::from_builder(base_url, builder)
    }

    fn from_builder(
        base_url: &str,
        builder: reqwest::ClientBuilder,
    ) -> Result<Client, ClientError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        let parsed =
            reqwest::Url::parse(&base).map_err(|_| ClientError::InvalidUrl(base_url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        let http = builder.build().map_err(|error| ClientError::Unreachable {
            url: base.clone(),
            reason: error.to_string(),
        })?;
        Ok(Client {
            http,
            base,
            admin_token: None,
            licence_key: None,
        })
    }

    /// Sends `key` as the licence key with every request but the admin API's.
    pub fn with_licence_key(mut self, key: impl Into<String>) -> Client {
        self.licence_key = Some(key.into());
        self
    }

    /// The licence key this client sends, if any.
    pub fn licence_key(&self) -> Option<&str> {
        self.licence_key.as_deref()
    }

    fn keyed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.licence_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Uses `token` for the admin API.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Client {
        self.admin_token = Some(token.into());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|error| self.connection_error(&error))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_error_body(response).await;
            return Err(self.refusal(status, &body));
        }
        let body = self.read_answer(response).await?;
        repnet_protocol::from_json(&body).map_err(|reason| ClientError::Unexpected {
            url: self.base.clone(),
            reason: reason.to_string(),
        })
    }

    /// A successful answer's body, within [`MAX_ANSWER_BODY`].
    async fn read_answer(&self, response: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
        read_limited(response, MAX_ANSWER_BODY)
            .await
            .map_err(|reason| ClientError::Unexpected {
                url: self.base.clone(),
                reason: reason.to_string(),
            })
    }

    /// The error for a non-success answer.
    fn refusal(&self, status: StatusCode, body: &[u8]) -> ClientError {
        match repnet_protocol::from_json::<ErrorBody>(body) {
            Ok(error) => ClientError::Api {
                status: status.as_u16(),
                code: error.error.code,
                message: error.error.message,
            },
            Err(_) if status.is_redirection() => ClientError::Unexpected {
                url: self.base.clone(),
                reason: format!(
                    "status {status}: it redirects to another host, and repnet follows redirects within the same scheme, host and port only; give the address it names if you trust it"
                ),
            },
            Err(_) => ClientError::Unexpected {
                url: self.base.clone(),
                reason: format!("status {status} without a repnet error body"),
            },
        }
    }

    fn admin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.admin_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Looks up any number of objects, in batches the server accepts; answers in order. An
    /// item a proxy could not answer (its upstream down, the item not cached) fails the whole
    /// call with that item's error: [`lookup_items`](Client::lookup_items) answers the others.
    pub async fn lookup(
        &self,
        items: &[LookupItem<'_>],
        explain: bool,
    ) -> Result<Vec<Reputation>, ClientError> {
        self.lookup_items(items, explain)
            .await?
            .into_iter()
            .map(|result| match result {
                LookupResult::Reputation(reputation) => Ok(reputation),
                LookupResult::Unavailable(error) => Err(ClientError::Api {
                    status: 503,
                    code: error.error.code,
                    message: error.error.message,
                }),
            })
            .collect()
    }

    /// Looks up any number of objects, in batches the server accepts; answers in order, each
    /// a reputation or, from a proxy that could not answer that item, its error.
    pub async fn lookup_items(
        &self,
        items: &[LookupItem<'_>],
        explain: bool,
    ) -> Result<Vec<LookupResult>, ClientError> {
        let mut results = Vec::with_capacity(items.len());
        for chunk in items.chunks(BATCH_LIMIT) {
            let body = LookupRequest {
                items: chunk.to_vec(),
            };
            let mut request = self
                .http
                .post(format!("{}/v1/lookup", self.base))
                .json(&body);
            if explain {
                request = request.query(&[("explain", "true")]);
            }
            let response: LookupResponse = self.send(self.keyed(request)).await?;
            if response.results.len() != chunk.len() {
                return Err(ClientError::Unexpected {
                    url: self.base.clone(),
                    reason: format!(
                        "{} results for {} items",
                        response.results.len(),
                        chunk.len()
                    ),
                });
            }
            results.extend(response.results);
        }
        Ok(results)
    }

    /// Looks up files by SHA-256 with the compact binary form of `POST /v1/lookup`, in
    /// batches the server accepts; answers in order.
    pub async fn lookup_sha256(
        &self,
        digests: &[repnet_model::Sha256],
    ) -> Result<Vec<repnet_protocol::binary::BinaryAnswer>, ClientError> {
        let files: Vec<repnet_model::FileHashes> = digests
            .iter()
            .map(|digest| repnet_model::FileHashes {
                sha256: Some(*digest),
                ..repnet_model::FileHashes::default()
            })
            .collect();
        self.lookup_binary(&repnet_protocol::binary::Layout::sha256(), &files)
            .await
    }

    /// Looks up files by the hashes `layout` names, with the compact binary form of
    /// `POST /v1/lookup`, in batches the server accepts; answers in order.
    pub async fn lookup_binary(
        &self,
        layout: &repnet_protocol::binary::Layout,
        files: &[repnet_model::FileHashes],
    ) -> Result<Vec<repnet_protocol::binary::BinaryAnswer>, ClientError> {
        let mut answers = Vec::with_capacity(files.len());
        for chunk in files.chunks(BATCH_LIMIT) {
            let mut body = Vec::with_capacity(chunk.len() * layout.record_size());
            for file in chunk {
                layout.write(file, &mut body);
            }
            let request = self
                .http
                .post(format!("{}/v1/lookup", self.base))
                .query(&[("hash", layout.query_value())])
                .header(
                    reqwest::header::CONTENT_TYPE,
                    repnet_protocol::binary::MEDIA_TYPE,
                )
                .body(body);
            let response = self
                .keyed(request)
                .send()
                .await
                .map_err(|error| self.connection_error(&error))?;
            let status = response.status();
            if !status.is_success() {
                let body = read_error_body(response).await;
                return Err(self.refusal(status, &body));
            }
            let bytes = self.read_answer(response).await?;
            let chunk_answers =
                repnet_protocol::binary::parse_response(&bytes).map_err(|reason| {
                    ClientError::Unexpected {
                        url: self.base.clone(),
                        reason: reason.to_string(),
                    }
                })?;
            if chunk_answers.len() != chunk.len() {
                return Err(ClientError::Unexpected {
                    url: self.base.clone(),
                    reason: format!("{} answers for {} files", chunk_answers.len(), chunk.len()),
                });
            }
            answers.extend(chunk_answers);
        }
        Ok(answers)
    }

    /// Looks up one object with `GET /v1/<kind>s/{value}` (`GET /v1/urls?url=` for URLs).
    pub async fn get(
        &self,
        kind: ObjectKind,
        value: &str,
        explain: bool,
    ) -> Result<Reputation, ClientError> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|_| ClientError::InvalidUrl(self.base.clone()))?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| ClientError::InvalidUrl(self.base.clone()))?;
            match kind {
                ObjectKind::File => segments.extend(["v1", "files", value]),
                ObjectKind::Domain => segments.extend(["v1", "domains", value]),
                ObjectKind::Ip => segments.extend(["v1", "ips", value]),
                ObjectKind::Certificate => segments.extend(["v1", "certificates", value]),
                ObjectKind::Url => segments.extend(["v1", "urls"]),
            };
        }
        let mut request = self.keyed(self.http.get(url));
        if kind == ObjectKind::Url {
            request = request.query(&[("url", value)]);
        }
        if explain {
            request = request.query(&[("explain", "true")]);
        }
        self.send(request).await
    }

    /// `POST /v1/hashes:search`: the full hashes that start with `prefixes` (each of a hash
    /// kind), in batches the server accepts.
    pub async fn search_prefixes(
        &self,
        prefixes: &[(repnet_model::PrefixOf, Vec<u8>)],
    ) -> Result<HashSearchResponse, ClientError> {
        let mut all = HashSearchResponse {
            matches: Vec::new(),
            cache_seconds: u32::MAX,
            unknown_cache_seconds: None,
        };
        // Several requests at once: a thousand URLs make thousands of prefixes.
        let bodies: Vec<HashSearchRequest> = prefixes
            .chunks(repnet_protocol::MAX_PREFIXES)
            .map(|chunk| {
                let mut body = HashSearchRequest::default();
                for (kind, bytes) in chunk {
                    let list = match kind {
                        repnet_model::PrefixOf::Sha256 => &mut body.prefixes,
                        repnet_model::PrefixOf::Sha1 => &mut body.sha1_prefixes,
                        repnet_model::PrefixOf::Md5 => &mut body.md5_prefixes,
                        repnet_model::PrefixOf::Url => &mut body.url_prefixes,
                    };
                    list.push(hex::encode(bytes));
                }
                body
            })
            .collect();
        let searches = bodies.into_iter().map(|body| {
            let request = self
                .http
                .post(format!("{}/v1/hashes:search", self.base))
                .json(&body);
            self.send::<HashSearchResponse>(self.keyed(request))
        });
        let mut responses = futures_util::StreamExt::buffered(
            futures_util::stream::iter(searches),
            PARALLEL_SEARCHES,
        );
        while let Some(response) = futures_util::StreamExt::next(&mut responses).await {
            let response = response?;
            all.matches.extend(response.matches);
            all.cache_seconds = all.cache_seconds.min(response.cache_seconds);
            let unknown = response
                .unknown_cache_seconds
                .unwrap_or(response.cache_seconds);
            all.unknown_cache_seconds = Some(
                all.unknown_cache_seconds
                    .map_or(unknown, |u| u.min(unknown)),
            );
        }
        if prefixes.is_empty() {
            all.cache_seconds = 0;
            all.unknown_cache_seconds = Some(0);
        }
        Ok(all)
    }

    /// Looks targets up in privacy mode: only 4-byte prefixes of their hashes leave this
    /// machine; the full hashes and records that come back are weighed here, by the same
    /// rules as the server's (`repnet_model`).
    pub async fn lookup_private(
        &self,
        targets: &[PrivateTarget],
    ) -> Result<Vec<repnet_model::Reputation>, ClientError> {
        let mut prefixes = PrefixRequest::new();
        for target in targets {
            target.prefixes(&mut prefixes);
        }
        let prefixes: Vec<_> = prefixes
            .into_iter()
            .map(|(of, bytes)| (of, bytes.to_vec()))
            .collect();
        let response = self.search_prefixes(&prefixes).await?;
        let found = Found::new(&response);
        Ok(targets.iter().map(|target| target.decide(&found)).collect())
    }

    /// Sets the local verdict on one object; answers the object's new reputation.
    pub async fn set_local_verdict(
        &self,
        verdict: &SetLocalVerdict<'_>,
    ) -> Result<Reputation, ClientError> {
        let request = self
            .http
            .put(format!("{}/v1/admin/verdicts", self.base))
            .json(verdict);
        self.send(self.admin(request)).await
    }

    /// Removes the local verdict on one object; answers the object's reputation without it.
    pub async fn remove_local_verdict(
        &self,
        kind: ObjectKind,
        value: &str,
    ) -> Result<Reputation, ClientError> {
        let request = self
            .http
            .delete(format!("{}/v1/admin/verdicts", self.base))
            .query(&[(kind.as_str(), value)]);
        self.send(self.admin(request)).await
    }

    /// Every local verdict.
    pub async fn local_verdicts(&self) -> Result<LocalVerdictList, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/verdicts", self.base));
        self.send(self.admin(request)).await
    }

    /// Uploads a feed for the server to import (`POST /v1/admin/imports`); answers what the
    /// import did once it has finished, however long that takes.
    pub async fn import_feed(
        &self,
        params: &ImportParams,
        body: ImportBody,
    ) -> Result<ImportReport, ClientError> {
        let body = match body {
            ImportBody::Bytes(bytes) => reqwest::Body::from(bytes),
            ImportBody::File(path) => {
                let file = tokio::fs::File::open(&path).await.map_err(|error| {
                    ClientError::Input(format!("cannot open {}: {error}", path.display()))
                })?;
                reqwest::Body::from(file)
            }
        };
        let request = self
            .http
            .post(format!("{}/v1/admin/imports", self.base))
            .query(params)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            // Big feeds take minutes to import: no overall deadline beyond a day.
            .timeout(Duration::from_secs(24 * 3600))
            .body(body);
        self.send(self.admin(request)).await
    }

    /// The participation statement (`GET /v1/statement`).
    pub async fn statement(&self) -> Result<repnet_protocol::Statement, ClientError> {
        let request = self.http.get(format!("{}/v1/statement", self.base));
        self.send(self.keyed(request)).await
    }

    /// Enrols this installation (`GET /v1/installations/challenge`, the proof of work on a
    /// blocking thread, `POST /v1/installations`): the token that statistics batches carry.
    pub async fn enrol_installation(
        &self,
    ) -> Result<repnet_protocol::InstallationToken, ClientError> {
        let request = self
            .http
            .get(format!("{}/v1/installations/challenge", self.base));
        let challenge: repnet_protocol::InstallationChallenge =
            self.send(self.keyed(request)).await?;
        let unexpected = |reason: String| ClientError::Unexpected {
            url: self.base.clone(),
            reason,
        };
        let bytes = hex::decode(&challenge.challenge)
            .map_err(|_| unexpected("its enrolment challenge is not hex".to_owned()))?;
        if challenge.difficulty > repnet_protocol::installation::MAX_DIFFICULTY {
            return Err(unexpected(format!(
                "it asks for a proof of work of {} bits, more than the {} a client makes",
                challenge.difficulty,
                repnet_protocol::installation::MAX_DIFFICULTY
            )));
        }
        let difficulty = challenge.difficulty;
        let proof = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || {
                repnet_protocol::installation::prove(&bytes, difficulty)
            })
            .await
            .map_err(|error| unexpected(format!("the proof of work stopped: {error}")))?
        };
        let request = self
            .http
            .post(format!("{}/v1/installations", self.base))
            .json(&repnet_protocol::EnrolInstallation {
                challenge: challenge.challenge,
                nonce: hex::encode(proof),
            });
        self.send(self.keyed(request)).await
    }

    /// Sends statistics (`POST /v1/statistics`); answers once the server has stored them.
    pub async fn send_statistics(
        &self,
        batch: &repnet_protocol::StatisticsBatch,
    ) -> Result<repnet_protocol::StatisticsAccepted, ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/statistics", self.base))
            .json(batch);
        self.send(self.keyed(request)).await
    }

    /// A proxy's report to the server it pulls from (`POST /v1/proxies/report`); answers
    /// the settings the server's administrator set for it.
    pub async fn report_proxy(
        &self,
        report: &repnet_protocol::proxies::ProxyReport,
    ) -> Result<repnet_protocol::proxies::ProxyInstructions, ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/proxies/report", self.base))
            .json(report);
        self.send(self.keyed(request)).await
    }

    /// Registers a licence key (`POST /v1/admin/keys`).
    pub async fn add_licence_key(
        &self,
        key: &AddLicenceKey,
    ) -> Result<LicenceKeyEntry, ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/admin/keys", self.base))
            .json(key);
        self.send(self.admin(request)).await
    }

    /// Every licence key registered (`GET /v1/admin/keys`).
    pub async fn licence_keys(&self) -> Result<LicenceKeyList, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/keys", self.base));
        self.send(self.admin(request)).await
    }

    /// Revokes the licence key with id `id`.
    pub async fn revoke_licence_key(&self, id: &str) -> Result<LicenceKeyEntry, ClientError> {
        let request = self
            .http
            .delete(format!("{}/v1/admin/keys/{id}", self.base));
        self.send(self.admin(request)).await
    }

    /// False-positive reports awaiting a decision (`GET /v1/admin/review`).
    pub async fn review(&self) -> Result<repnet_protocol::ReviewList, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/review", self.base));
        self.send(self.admin(request)).await
    }

    /// Settles a report with a local verdict (or `dismiss`); answers the reports still open.
    pub async fn settle_review(
        &self,
        id: &str,
        settle: &repnet_protocol::SettleReview,
    ) -> Result<repnet_protocol::ReviewList, ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/admin/review/{id}", self.base))
            .json(settle);
        self.send(self.admin(request)).await
    }

    /// The runtime settings of a server or a proxy (`GET /v1/admin/settings`), as JSON.
    pub async fn settings(&self) -> Result<serde_json::Value, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/settings", self.base));
        self.send(self.admin(request)).await
    }

    /// Changes runtime settings (`PATCH /v1/admin/settings`): only those named in `patch`.
    pub async fn patch_settings(
        &self,
        patch: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let request = self
            .http
            .patch(format!("{}/v1/admin/settings", self.base))
            .json(patch);
        self.send(self.admin(request)).await
    }

    /// The reputation engine's settings and progress (`GET /v1/admin/engine`).
    pub async fn engine(&self) -> Result<repnet_protocol::EngineStatus, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/engine", self.base));
        self.send(self.admin(request)).await
    }

    /// `GET /v1/admin/status` as JSON: a server's ([`ServerStatus`]) or a proxy's (role
    /// `proxy`), which differ.
    pub async fn status_json(&self) -> Result<serde_json::Value, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/status", self.base));
        self.send(self.admin(request)).await
    }

    /// Whether the server or proxy is ready to answer (`GET /readyz` answers 200).
    pub async fn ready(&self) -> Result<(), ClientError> {
        let request = self.http.get(format!("{}/readyz", self.base));
        self.send::<serde_json::Value>(request).await.map(|_| ())
    }

    /// The server's role, sequence and upstream (`GET /v1/admin/status`).
    pub async fn server_status(&self) -> Result<ServerStatus, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/status", self.base));
        self.send(self.admin(request)).await
    }

    /// Starts `GET path` of a replication stream (`/v1/changes?…`, `/v1/snapshot`) with the
    /// licence key, and answers the response once its status says the stream follows.
    pub async fn replication_stream(
        &self,
        path_and_query: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            // A snapshot of a large knowledge base takes a while to download; the reader
            // bounds the time between two chunks (`upstream.progress_timeout_seconds`).
            .timeout(Duration::from_secs(24 * 3600));
        // The sender writes a snapshot before it answers: minutes for a large one, not more.
        let response =
            tokio::time::timeout(REPLICATION_HEADERS_TIMEOUT, self.keyed(request).send())
                .await
                .map_err(|_| ClientError::Unreachable {
                    url: self.base.clone(),
                    reason: format!(
                        "no answer within {} minutes",
                        REPLICATION_HEADERS_TIMEOUT.as_secs() / 60
                    ),
                })?
                .map_err(|error| self.connection_error(&error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_error_body(response).await;
        Err(self.refusal(status, &body))
    }

    /// Downloads a backup of the server (`GET /v1/admin/backup`, a tar archive) into `out`;
    /// answers its length. A transfer that stalls for [`BODY_PROGRESS_TIMEOUT`] fails.
    pub async fn backup(&self, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/backup", self.base));
        self.download(self.admin(request), "the backup", out).await
    }

    /// Downloads the blocklist (`GET /v1/export` with `query`: format, verdict, category,
    /// source, min_confidence, zone) into `out`, with the licence key; answers its length.
    pub async fn export(
        &self,
        query: &[(&str, String)],
        out: &mut dyn std::io::Write,
    ) -> Result<u64, ClientError> {
        let request = self
            .http
            .get(format!("{}/v1/export", self.base))
            .query(query);
        self.download(self.keyed(request), "the export", out).await
    }

    /// Sends `request` and copies the answer's body into `out` as it arrives (no limit: the
    /// caller asked for a whole file); answers its length, checked against Content-Length.
    async fn download(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, ClientError> {
        let request = request.timeout(Duration::from_secs(24 * 3600));
        let mut response = tokio::time::timeout(REPLICATION_HEADERS_TIMEOUT, request.send())
            .await
            .map_err(|_| ClientError::Unreachable {
                url: self.base.clone(),
                reason: format!(
                    "no answer within {} minutes",
                    REPLICATION_HEADERS_TIMEOUT.as_secs() / 60
                ),
            })?
            .map_err(|error| self.connection_error(&error))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_error_body(response).await;
            return Err(self.refusal(status, &body));
        }
        let expected = response.content_length();
        let mut written = 0u64;
        loop {
            let chunk = tokio::time::timeout(BODY_PROGRESS_TIMEOUT, response.chunk())
                .await
                .map_err(|_| ClientError::Unexpected {
                    url: self.base.clone(),
                    reason: format!(
                        "{what} stalled for {} seconds",
                        BODY_PROGRESS_TIMEOUT.as_secs()
                    ),
                })?
                .map_err(|error| ClientError::Unexpected {
                    url: self.base.clone(),
                    reason: format!("{what} broke off: {}", error_chain(&error)),
                })?;
            let Some(chunk) = chunk else { break };
            out.write_all(&chunk)
                .map_err(|error| ClientError::Input(format!("cannot write {what}: {error}")))?;
            written += chunk.len() as u64;
        }
        if expected.is_some_and(|expected| expected != written) {
            return Err(ClientError::Unexpected {
                url: self.base.clone(),
                reason: format!("{what} ended after {written} of {expected:?} bytes"),
            });
        }
        Ok(written)
    }

    /// Uploads an offline bundle for the server to check and apply (`POST /v1/admin/bundles`);
    /// `force` applies one older than what the server has.
    pub async fn import_bundle(
        &self,
        path: &std::path::Path,
        force: bool,
    ) -> Result<repnet_protocol::BundleApplied, ClientError> {
        let file = tokio::fs::File::open(path).await.map_err(|error| {
            ClientError::Input(format!("cannot open {}: {error}", path.display()))
        })?;
        let request = self
            .http
            .post(format!("{}/v1/admin/bundles", self.base))
            .query(&[("force", if force { "true" } else { "false" })])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(Duration::from_secs(24 * 3600))
            .body(reqwest::Body::from(file));
        self.send(self.admin(request)).await
    }

    /// Sends a request as it is (the proxy's pass-through routes), with the licence key;
    /// answers the response whatever its status. Fails only if the server cannot be reached.
    pub async fn forward(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.keyed(request)
            .send()
            .await
            .map_err(|error| self.connection_error(&error))
    }

    /// Where the server's change log is now: its id and last sequence number (from the
    /// headers of `GET /v1/changes`, whether it answers changes or `410`).
    pub async fn log_position(&self) -> Result<(String, u64), ClientError> {
        let request = self
            .http
            .get(format!("{}/v1/changes?after=0&limit=1", self.base));
        let response = self
            .keyed(request)
            .send()
            .await
            .map_err(|error| self.connection_error(&error))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        match (header("x-repnet-log-id"), header("x-repnet-sequence")) {
            (Some(log_id), Some(sequence)) if status.is_success() || status == StatusCode::GONE => {
                let sequence = sequence.parse().map_err(|_| ClientError::Unexpected {
                    url: self.base.clone(),
                    reason: "an X-Repnet-Sequence that is not a number".to_owned(),
                })?;
                Ok((log_id, sequence))
            }
            _ => {
                let body = read_error_body(response).await;
                Err(self.refusal(status, &body))
            }
        }
    }

    /// The scheduled feeds and how their last refresh went (`GET /v1/admin/feeds`).
    pub async fn feeds(&self) -> Result<FeedStatusList, ClientError> {
        let request = self.http.get(format!("{}/v1/admin/feeds", self.base));
        self.send(self.admin(request)).await
    }

    /// Refreshes a scheduled feed now and answers its status afterwards.
    pub async fn refresh_feed(&self, name: &str) -> Result<FeedStatus, ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/admin/feeds/{name}/refresh", self.base))
            .timeout(Duration::from_secs(24 * 3600));
        self.send(self.admin(request)).await
    }
}

impl Client {
    /// The error for a request that got no answer: TLS problems say what to do; anything else
    /// is the server being unreachable.
    fn connection_error(&self, error: &reqwest::Error) -> ClientError {
        connection_error(&self.base, error)
    }
}

/// [`Client::connection_error`] for a client of `url`.
fn connection_error(url: &str, error: &reqwest::Error) -> ClientError {
    let reason = error_chain(error);
    let tls = |message: String| ClientError::Tls {
        url: url.to_owned(),
        message,
    };
    let certificate = reason.contains("invalid peer certificate") || reason.contains("certificate");
    if certificate && reason.contains("NotValidForName") {
        return tls(format!(
            "the certificate of {url} is not issued for that name ({reason}): use the name it was issued for"
        ));
    }
    if certificate && reason.contains("Expired") {
        return tls(format!(
            "the certificate of {url} has expired ({reason}): the server needs a new one"
        ));
    }
    if certificate {
        return tls(format!(
            "the server's certificate is not trusted ({reason}): pass --ca FILE with the certificate of the CA that issued it (or set REPNET_CA, or `repnet config set ca FILE`)"
        ));
    }
    if url.starts_with("http://")
        && (reason.contains("invalid HTTP version") || reason.contains("HTTP/0.9"))
    {
        return tls(format!(
            "{url} answered in TLS: this port speaks HTTPS: use https://{}",
            url.trim_start_matches("http://")
        ));
    }
    if url.starts_with("https://")
        && (reason.contains("InvalidContentType") || reason.contains("corrupt message"))
    {
        return tls(format!(
            "{url} does not speak HTTPS ({reason}): use http://{}",
            url.trim_start_matches("https://")
        ));
    }
    ClientError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

/// The root cause of an error: reqwest's own message ("error sending request for url …")
/// hides the part a user can act on ("Connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = error;
    while let Some(cause) = root.source() {
        root = cause;
    }
    if error.is_timeout() {
        format!("timed out: {root}")
    } else {
        root.to_string()
    }
}

impl ClientError {
    /// The HTTP status of a refusal, if the server refused.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => StatusCode::from_u16(*status).ok(),
            _ => None,
        }
    }
}
