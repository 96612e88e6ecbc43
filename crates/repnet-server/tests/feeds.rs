//! End-to-end tests of feeds on the server: uploads through `POST /v1/admin/imports`, and
//! scheduled feeds refreshed from a loopback HTTP server (conditional GET with ETag) or from a
//! local file, with failures that keep the previous data.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse as _;
use repnet_client::{ClientError, ImportBody};
use repnet_protocol::{FeedStatus, ImportParams};
use repnet_server::ServerConfig;
use repnet_server::config::FeedConfig;
use repnet_testkit::{Server as TestServer, TOKEN};

/// The verdict the server gives a URL.
async fn url_verdict(server: &TestServer, url: &str) -> String {
    let answer = server
        .admin
        .get(repnet_model::ObjectKind::Url, url, false)
        .await
        .unwrap();
    answer.verdict.as_str().to_owned()
}

async fn file_verdict(server: &TestServer, hash: &str) -> String {
    let answer = server
        .admin
        .get(repnet_model::ObjectKind::File, hash, false)
        .await
        .unwrap();
    answer.verdict.as_str().to_owned()
}

async fn metrics_of(server: &TestServer) -> String {
    server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A URLhaus dump listing `urls`, in today's 9-column format.
fn urlhaus(urls: &[&str]) -> Vec<u8> {
    let mut text = String::from(
        "################################################################\n\
         # abuse.ch URLhaus Database Dump (CSV - recent URLs only)      #\n\
         ################################################################\n\
         #\n\
         # id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n",
    );
    for (id, url) in urls.iter().enumerate() {
        text.push_str(&format!(
            "\"{id}\",\"2026-11-19 10:02:21\",\"{url}\",\"online\",\"2026-11-19 10:02:21\",\"malware_download\",\"elf\",\"https://urlhaus.abuse.ch/url/{id}/\",\"someone\"\n"
        ));
    }
    text.into_bytes()
}

/// What the loopback feed server serves, and what it saw.
#[derive(Default)]
struct Published {
    body: Vec<u8>,
    etag: String,
    /// Answer 500 instead.
    broken: bool,
    requests: u64,
    not_modified: u64,
}

/// A loopback HTTP server publishing one feed at `/urlhaus.csv`, answering conditional GETs.
async fn feed_server(published: Arc<Mutex<Published>>) -> String {
    let app = axum::Router::new().route(
        "/urlhaus.csv",
        axum::routing::get(move |headers: HeaderMap| {
            let published = Arc::clone(&published);
            async move {
                let mut published = published.lock().unwrap();
                published.requests += 1;
                // Like abuse.ch and commercial feeds: a key in a header.
                if headers.get("auth-key").is_none_or(|key| key != "feed-key") {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                if published.broken {
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                let etag = published.etag.clone();
                if headers
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|value| value.as_bytes() == etag.as_bytes())
                {
                    published.not_modified += 1;
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                ([(header::ETAG, etag)], published.body.clone()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/urlhaus.csv", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn feed_config(name: &str, url: Option<String>, path: Option<PathBuf>) -> FeedConfig {
    FeedConfig {
        name: name.to_owned(),
        format: "urlhaus".to_owned(),
        url,
        path,
        interval_seconds: 3600,
        verdict: None,
        threat: None,
        categories: Vec::new(),
        confidence: None,
        top: None,
        incremental: false,
        allow_empty: false,
        headers: Default::default(),
    }
}

async fn refresh(server: &TestServer, name: &str) -> FeedStatus {
    server.admin.refresh_feed(name).await.unwrap()
}

const A: &str = "http://a.feed.example/payload.sh";
const B: &str = "http://b.feed.example/payload.sh";
const C: &str = "http://c.feed.example/payload.sh";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_feed_refreshes_with_conditional_gets_and_keeps_its_data_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let published = Arc::new(Mutex::new(Published {
        body: urlhaus(&[A, B]),
        etag: "\"v1\"".to_owned(),
        ..Published::default()
    }));
    let url = feed_server(Arc::clone(&published)).await;
    let mut feed = feed_config("urlhaus", Some(url.clone()), None);
    feed.headers
        .insert("Auth-Key".to_owned(), "feed-key".to_owned());
    let config = ServerConfig {
        feeds: vec![feed],
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config.clone()).await;

    // The schedule refreshes at start; a refresh asked for meanwhile waits for it, so after
    // this one the feed has been imported once and confirmed unchanged once.
    let status = refresh(&server, "urlhaus").await;
    assert!(
        matches!(status.state.as_str(), "imported" | "not_modified"),
        "{status:?}"
    );
    let report = status.last_import.clone().unwrap();
    assert_eq!((report.read, report.stored, report.skipped), (2, 2, 0));
    assert_eq!(report.source, "feed:urlhaus");
    assert_eq!(status.etag.as_deref(), Some("\"v1\""));
    assert_eq!(status.location, url);
    assert_eq!(url_verdict(&server, A).await, "untrusted");
    assert_eq!(url_verdict(&server, B).await, "untrusted");

    // Unchanged: a 304, nothing imported.
    let status = refresh(&server, "urlhaus").await;
    assert_eq!(status.state, "not_modified");
    assert!(published.lock().unwrap().not_modified >= 1);

    // A new version without B and with C: B is retracted.
    {
        let mut published = published.lock().unwrap();
        published.body = urlhaus(&[A, C]);
        published.etag = "\"v2\"".to_owned();
    }
    let status = refresh(&server, "urlhaus").await;
    assert_eq!(status.state, "imported", "{status:?}");
    let report = status.last_import.clone().unwrap();
    assert_eq!((report.stored, report.retracted), (2, 1));
    assert_eq!(url_verdict(&server, B).await, "unknown");
    assert_eq!(url_verdict(&server, C).await, "untrusted");

    // The publisher fails: the data stays, the failure shows in the status and the metrics.
    published.lock().unwrap().broken = true;
    let status = refresh(&server, "urlhaus").await;
    assert_eq!(status.state, "failed");
    assert_eq!(status.consecutive_failures, 1);
    let error = status.error.clone().unwrap();
    assert!(error.contains("500"), "{error}");
    assert_eq!(url_verdict(&server, A).await, "untrusted");
    let metrics = metrics_of(&server).await;
    assert!(
        metrics.contains("repnet_feed_up{feed=\"urlhaus\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("repnet_feed_refreshes_total{feed=\"urlhaus\",outcome=\"failed\"} 1"),
        "{metrics}"
    );

    // A truncated or garbled download is a failure too, not an emptied feed.
    {
        let mut published = published.lock().unwrap();
        published.broken = false;
        published.body = b"<html>maintenance</html>\n".to_vec();
        published.etag = "\"v3\"".to_owned();
    }
    let status = refresh(&server, "urlhaus").await;
    assert_eq!(status.state, "failed");
    assert_eq!(status.consecutive_failures, 2);
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("not one was a valid entry"),
        "{status:?}"
    );
    assert_eq!(url_verdict(&server, A).await, "untrusted");
    assert_eq!(url_verdict(&server, C).await, "untrusted");

    // Back to v2: recovered.
    {
        let mut published = published.lock().unwrap();
        published.body = urlhaus(&[A, C]);
        published.etag = "\"v2\"".to_owned();
    }
    let status = refresh(&server, "urlhaus").await;
    assert_eq!(status.state, "not_modified", "{status:?}");
    assert_eq!((status.consecutive_failures, status.error), (0, None));
    let metrics = metrics_of(&server).await;
    assert!(
        metrics.contains("repnet_feed_up{feed=\"urlhaus\"} 1")
            && metrics.contains("repnet_feed_entries{feed=\"urlhaus\"} 2"),
        "{metrics}"
    );

    let listed = server.admin.feeds().await.unwrap().feeds;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "urlhaus");
    assert!(listed[0].next_refresh.is_some());
    let missing = server.admin.refresh_feed("nope").await.unwrap_err();
    assert!(
        matches!(&missing, ClientError::Api { status: 404, message, .. } if message.contains("urlhaus")),
        "{missing}"
    );
    server.stop().await;

    // After a restart the validators are remembered: no download until the interval is up,
    // and then a conditional one.
    let requests = published.lock().unwrap().requests;
    let server = TestServer::start(dir.path(), config).await;
    let listed = server.admin.feeds().await.unwrap().feeds;
    assert_eq!(listed[0].state, "pending");
    assert_eq!(listed[0].etag.as_deref(), Some("\"v2\""));
    assert_eq!(url_verdict(&server, C).await, "untrusted");
    let status = refresh(&server, "urlhaus").await;
    assert_eq!(status.state, "not_modified");
    assert_eq!(published.lock().unwrap().requests, requests + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_local_file_is_imported_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("urlhaus.csv");
    std::fs::write(&path, urlhaus(&[A])).unwrap();
    let config = ServerConfig {
        feeds: vec![feed_config("local", None, Some(path.clone()))],
        ..ServerConfig::default()
    };
    let server = TestServer::start(&data, config).await;
    let status = refresh(&server, "local").await;
    assert_eq!(status.last_import.unwrap().source, "feed:local");
    assert_eq!(url_verdict(&server, A).await, "untrusted");
    let status = refresh(&server, "local").await;
    assert_eq!(status.state, "not_modified");

    std::fs::write(&path, urlhaus(&[B, C])).unwrap();
    let status = refresh(&server, "local").await;
    assert_eq!(status.state, "imported");
    assert_eq!(status.last_import.unwrap().retracted, 1);
    assert_eq!(url_verdict(&server, A).await, "unknown");
    assert_eq!(url_verdict(&server, B).await, "untrusted");

    std::fs::remove_file(&path).unwrap();
    let status = refresh(&server, "local").await;
    assert_eq!(status.state, "failed");
    assert!(
        status.error.unwrap().contains("urlhaus.csv"),
        "the error names the file"
    );
    assert_eq!(url_verdict(&server, B).await, "untrusted");
    server.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn upload(
    server: &TestServer,
    params: &ImportParams,
    body: Vec<u8>,
) -> Result<repnet_protocol::ImportReport, ClientError> {
    server
        .admin
        .import_feed(params, ImportBody::Bytes(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_feeds_are_imported_and_bad_uploads_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        // Uploads are streamed to disk: the lookup body limit does not apply to them…
        max_body_bytes: 4096,
        // …but this one does.
        max_import_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;

    // A gzipped hash list of more than max_body_bytes, recognised from its content.
    let hashes: Vec<String> = (0..200u32)
        .map(|i| repnet_model::Sha256::digest(&i.to_le_bytes()).to_string())
        .collect();
    let mut list = hashes.join("\n").into_bytes();
    list.extend_from_slice(b"\nnot-a-hash\n");
    let params = ImportParams {
        source: Some("corp".to_owned()),
        threat: Some("Corp.Bad".to_owned()),
        ..ImportParams::default()
    };
    let report = upload(&server, &params, gzip(&list)).await.unwrap();
    assert_eq!(report.format, "hashlist");
    assert_eq!(report.source, "feed:corp");
    assert_eq!((report.read, report.stored, report.skipped), (201, 200, 1));
    assert_eq!(report.reasons.get("invalid hash"), Some(&1));
    assert!(
        report.examples[0].starts_with("the upload:201: "),
        "{:?}",
        report.examples
    );
    assert_eq!(file_verdict(&server, &hashes[7]).await, "untrusted");

    // Refusals, each with the field and what to do; nothing changes.
    let refused = |error: ClientError| match error {
        ClientError::Api {
            status,
            code,
            message,
        } => (status, code, message),
        other => panic!("not a refusal: {other}"),
    };
    for (params, status, code, needle) in [
        (
            ImportParams {
                verdict: Some("unknown".to_owned()),
                ..ImportParams::default()
            },
            400,
            "invalid_query",
            "verdict",
        ),
        (
            ImportParams {
                format: Some("csv".to_owned()),
                ..ImportParams::default()
            },
            400,
            "invalid_query",
            "urlhaus",
        ),
        (
            ImportParams {
                category: Some("malware,nope".to_owned()),
                ..ImportParams::default()
            },
            400,
            "invalid_query",
            "category",
        ),
    ] {
        let (got_status, got_code, message) =
            refused(upload(&server, &params, list.clone()).await.unwrap_err());
        assert_eq!((got_status, got_code.as_str()), (status, code), "{message}");
        assert!(message.contains(needle), "{message}");
    }
    let (status, code, message) = refused(
        upload(
            &server,
            &ImportParams::default(),
            b"\x00\x01garbage, not, a feed\n".to_vec(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (422, "invalid_feed"), "{message}");
    assert!(
        message.contains("the upload") && !message.contains(dir.path().to_str().unwrap()),
        "{message}"
    );
    let (status, code, _) = refused(
        upload(&server, &ImportParams::default(), Vec::new())
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "empty_body"));
    let (status, code, message) = refused(
        upload(&server, &ImportParams::default(), vec![b'a'; 2 << 20])
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (413, "body_too_large"),
        "{message}"
    );
    // A misspelt parameter is refused, not ignored.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/admin/imports?incremantal=true", server.base))
        .bearer_auth(TOKEN)
        .body(list.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Without the token: 401.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/admin/imports", server.base))
        .body(list.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(file_verdict(&server, &hashes[7]).await, "untrusted");

    // No temporary files are left behind.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(repnet_store::TEMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.stop().await;
}

#[test]
fn feed_settings_are_checked_with_the_configuration() {
    let with = |feed: FeedConfig| ServerConfig {
        feeds: vec![feed],
        ..ServerConfig::default()
    };
    let base = feed_config("x", Some("https://feeds.example/x.csv".to_owned()), None);
    for (feed, needle) in [
        (
            FeedConfig {
                url: None,
                ..base.clone()
            },
            "either url or path",
        ),
        (
            FeedConfig {
                url: Some("ftp://feeds.example/x".to_owned()),
                ..base.clone()
            },
            "http://",
        ),
        (
            FeedConfig {
                format: "nope".to_owned(),
                ..base.clone()
            },
            "unknown format",
        ),
        (
            FeedConfig {
                name: "bad name".to_owned(),
                ..base.clone()
            },
            "source",
        ),
        (
            FeedConfig {
                interval_seconds: 0,
                ..base.clone()
            },
            "interval_seconds",
        ),
        (
            FeedConfig {
                headers: [("Bad Name".to_owned(), "x".to_owned())].into(),
                ..base.clone()
            },
            "header name",
        ),
    ] {
        let error = with(feed).validate().unwrap_err().to_string();
        assert!(error.contains("feeds") && error.contains(needle), "{error}");
    }
    let twice = ServerConfig {
        feeds: vec![base.clone(), base],
        ..ServerConfig::default()
    };
    assert!(
        twice
            .validate()
            .unwrap_err()
            .to_string()
            .contains("same name")
    );
}

/// Every background worker is in `/v1/admin/status` and the metrics, by name, with what it
/// did and its last failure: a scheduled feed that cannot be read says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_background_worker_reports_in_the_status_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("urlhaus.csv");
    std::fs::write(&path, urlhaus(&[A])).unwrap();
    let missing = dir.path().join("missing.csv");
    let config = ServerConfig {
        feeds: vec![
            feed_config("local", None, Some(path)),
            feed_config("broken", None, Some(missing.clone())),
        ],
        ..ServerConfig::default()
    };
    let server = TestServer::start(&data, config).await;
    let worker = |status: &repnet_protocol::ServerStatus, name: &str| {
        status
            .workers
            .iter()
            .find(|worker| worker.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no worker {name} in {:?}", status.workers))
    };
    let mut status = server.admin.server_status().await.unwrap();
    for _ in 0..500 {
        if worker(&status, "feed:local").units > 0 && worker(&status, "feed:broken").errors > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = server.admin.server_status().await.unwrap();
    }
    let names: Vec<&str> = status.workers.iter().map(|w| w.name.as_str()).collect();
    for name in [
        "lookup-filter",
        "feed:local",
        "feed:broken",
        "engine",
        "statistics-writer",
        "statistics-retention",
        "licence-last-use",
        "local-verdict-expiry",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let local = worker(&status, "feed:local");
    assert_eq!((local.units, local.errors), (1, 0), "{local:?}");
    assert_eq!(local.state, "idle");
    assert!(
        local
            .progress
            .unwrap()
            .starts_with("last refresh: imported, next at ")
    );
    let broken = worker(&status, "feed:broken");
    assert_eq!(broken.errors, 1, "{broken:?}");
    assert!(
        broken
            .last_error
            .as_deref()
            .unwrap()
            .contains("missing.csv"),
        "{broken:?}"
    );
    assert!(broken.last_error_at.is_some());
    assert_eq!(url_verdict(&server, A).await, "untrusted");

    let metrics = metrics_of(&server).await;
    assert!(
        metrics.contains("repnet_worker_errors_total{worker=\"feed:broken\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("repnet_worker_units_total{worker=\"feed:local\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}
