//! End-to-end tests of the HTTP API: the real server on port 0 over a real LMDB store in a
//! temporary directory, spoken to over HTTP.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::Path;

use repnet_model::{
    Confidence, FileHashes, Object, ObjectKind, Source, SourceRecord, ThreatName, Timestamp,
    Verdict,
};
use repnet_server::ServerConfig;
use repnet_store::{Change, Store, StoreOptions};
use repnet_testkit::{Options, Server as TestServer};
use serde_json::{Value, json};

const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
use repnet_testkit::TOKEN;

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn eicar_is_untrusted_by_all_three_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    for hash in [
        EICAR_MD5,
        EICAR_SHA1,
        EICAR_SHA256,
        &EICAR_SHA256.to_uppercase(),
    ] {
        let (status, body) = server.get(&format!("/v1/files/{hash}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["verdict"], "untrusted");
        assert_eq!(body["threat"], "EICAR-Test-File");
        assert_eq!(body["source"], "builtin");
        assert_eq!(body["confidence"], 100);
        assert_eq!(body["ttl"], 3600);
        assert_eq!(body["object"]["type"], "file");
        assert_eq!(body["object"]["value"], hash.to_lowercase());
        assert_eq!(body["object"]["hashes"]["md5"], EICAR_MD5);
        assert_eq!(body["object"]["hashes"]["sha1"], EICAR_SHA1);
        assert_eq!(body["object"]["hashes"]["sha256"], EICAR_SHA256);
        assert!(body["first_seen"].as_str().unwrap().ends_with('Z'));
        assert!(
            body["categories"]
                .as_array()
                .unwrap()
                .contains(&json!("malware"))
        );
    }
    // The padded and line-ended variants are known too.
    let with_crlf =
        repnet_model::Sha256::digest(&[repnet_model::EICAR.as_slice(), b"\r\n"].concat());
    let (_, body) = server.get(&format!("/v1/files/{with_crlf}")).await;
    assert_eq!(body["threat"], "EICAR-Test-File");
    // And a test domain per category.
    let (_, body) = server.get("/v1/domains/phishing.test.repnet.invalid").await;
    assert_eq!(body["verdict"], "untrusted");
    assert_eq!(body["categories"], json!(["phishing", "test"]));
    server.stop().await;
}

#[tokio::test]
async fn unknown_objects_are_200_unknown_with_a_short_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    for path in [
        format!("/v1/files/{}", "0".repeat(64)),
        "/v1/domains/B\u{fc}cher.example.".to_owned(),
        "/v1/ips/2001:db8::99".to_owned(),
        format!("/v1/certificates/{}", "c".repeat(64)),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["verdict"], "unknown");
        assert_eq!(body["ttl"], 300);
        assert_eq!(body["threat"], Value::Null);
        assert_eq!(body["source"], Value::Null);
        assert_eq!(body["first_seen"], Value::Null);
        assert_eq!(body["prevalence"], 0);
    }
    let (_, body) = server.get("/v1/domains/B%C3%BCcher.example.").await;
    assert_eq!(body["object"]["value"], "xn--bcher-kva.example");
    server.stop().await;
}

#[tokio::test]
async fn a_local_verdict_is_set_looked_up_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let hash = "ab".repeat(32);
    let put = json!({"object": {"file": hash}, "verdict": "untrusted", "threat": "Corp.Blocked",
                     "categories": ["malware"], "comment": "ticket #7"});
    let (status, body) = server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&put),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "local");

    let (_, body) = server.get(&format!("/v1/files/{hash}")).await;
    assert_eq!(body["verdict"], "untrusted");
    assert_eq!(body["threat"], "Corp.Blocked");
    assert_eq!(body["source"], "local");

    let (status, list) = server
        .call(
            reqwest::Method::GET,
            "/v1/admin/verdicts",
            None,
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let verdicts = list["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0]["object"]["value"], hash);
    assert_eq!(verdicts[0]["comment"], "ticket #7");

    let path = format!("/v1/admin/verdicts?file={hash}");
    let (status, body) = server
        .call(reqwest::Method::DELETE, &path, None, Some(TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdict"], "unknown");
    let (_, body) = server.get(&format!("/v1/files/{hash}")).await;
    assert_eq!(body["verdict"], "unknown");
    let (status, body) = server
        .call(reqwest::Method::DELETE, &path, None, Some(TOKEN))
        .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "no_local_verdict");
    server.stop().await;
}

fn feed_record(feed: &str, verdict: Verdict, confidence: i64, threat: &str) -> SourceRecord {
    let mut record = SourceRecord::new(
        Source::feed(feed).unwrap(),
        verdict,
        Confidence::new(confidence).unwrap(),
        Timestamp(1_790_000_000),
    );
    record.threat = ThreatName::new(threat).ok();
    record
}

#[tokio::test]
async fn precedence_between_two_feeds_and_a_local_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "cd".repeat(32);
    let object = Object::parse(ObjectKind::File, &hash).unwrap();
    {
        // Two feeds disagree; stored before the server starts, as an import would.
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let changes = [
            feed_record("known-good", Verdict::Trusted, 60, "-"),
            feed_record("malware-db", Verdict::Untrusted, 90, "Trojan.Disputed"),
        ]
        .into_iter()
        .map(|record| Change::Put {
            object: object.clone(),
            hashes: FileHashes::default(),
            record,
            comment: None,
        })
        .collect();
        store.apply(changes).await.unwrap();
    }
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let (_, body) = server.get(&format!("/v1/files/{hash}?explain=true")).await;
    assert_eq!(body["verdict"], "untrusted");
    assert_eq!(body["source"], "feed:malware-db");
    let records = body["explain"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["source"], "feed:malware-db");
    assert_eq!(records[0]["decisive"], true);
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("most confident"),
        "{body}"
    );

    // The administrator overrides both.
    let put = json!({"object": {"file": hash}, "verdict": "trusted"});
    let (status, _) = server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&put),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = server.get(&format!("/v1/files/{hash}?explain=true")).await;
    assert_eq!(body["verdict"], "trusted");
    assert_eq!(body["source"], "local");
    assert_eq!(body["threat"], Value::Null);
    assert_eq!(body["explain"]["records"].as_array().unwrap().len(), 3);
    assert!(
        body["explain"]["records"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("local verdict")
    );
    // Without explain there is no explanation.
    let (_, body) = server.get(&format!("/v1/files/{hash}")).await;
    assert!(body.get("explain").is_none());
    server.stop().await;
}

#[tokio::test]
async fn every_client_mistake_gets_its_status_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig {
            max_body_bytes: 1 << 20,
            ..ServerConfig::default()
        },
        Options::without_admin(),
    )
    .await;
    let gets = [
        (
            format!("/v1/files/{}", "a".repeat(65)),
            400,
            "invalid_hash",
            "got 65",
        ),
        (
            format!("/v1/files/{}g", "a".repeat(63)),
            400,
            "invalid_hash",
            "'g' at position 64",
        ),
        (
            "/v1/domains/a..b".to_owned(),
            400,
            "invalid_domain",
            "empty label",
        ),
        (
            "/v1/ips/999.1.1.1".to_owned(),
            400,
            "invalid_ip",
            "not an IP address",
        ),
        (
            format!("/v1/certificates/{}", "a".repeat(40)),
            400,
            "invalid_hash",
            "certificate",
        ),
        (
            format!("/v1/files/{EICAR_MD5}?explain=maybe"),
            400,
            "invalid_query",
            "true or false",
        ),
        (
            format!("/v1/files/{EICAR_MD5}?expalin=true"),
            400,
            "invalid_query",
            "expalin",
        ),
        ("/v1/nothing".to_owned(), 404, "not_found", "/openapi.json"),
        (
            "/v1/admin/verdicts".to_owned(),
            403,
            "admin_disabled",
            "--admin-token-file",
        ),
    ];
    for (path, status, code, message) in gets {
        let (got, body) = server.get(&path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(error_code(&body), code, "{path}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(message),
            "{path}: {body}"
        );
    }

    let lookup = server.url("/v1/lookup");
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = server.http.post(&lookup).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request
    };
    let cases = [
        (
            raw("{\"items\": [", Some("application/json")),
            400,
            "invalid_json",
        ),
        (raw("{\"items\": []}", None), 415, "unsupported_media_type"),
        (
            raw("{\"items\": []}", Some("text/plain")),
            415,
            "unsupported_media_type",
        ),
        (
            raw("{\"items\": [{\"hash\": \"x\"}]}", Some("application/json")),
            400,
            "invalid_request",
        ),
        (
            raw(
                "{\"items\": [{\"file\": \"x\", \"ip\": \"1.1.1.1\"}]}",
                Some("application/json"),
            ),
            400,
            "invalid_request",
        ),
        (
            raw(
                "{\"items\": [{\"file\": \"abc\"}]}",
                Some("application/json; charset=utf-8"),
            ),
            400,
            "invalid_hash",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), code, "{body}");
    }

    // The item at fault is named.
    let body = json!({"items": [{"file": EICAR_MD5}, {"domain": "ok.example"}, {"ip": "1.2.3"}]});
    let (status, body) = server.post_json("/v1/lookup", &body).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_ip");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("items[2].ip:"),
        "{body}"
    );

    // 10,001 items: too many.
    let items: Vec<Value> = (0..10_001).map(|_| json!({"file": EICAR_SHA256})).collect();
    let (status, body) = server
        .post_json("/v1/lookup", &json!({ "items": items }))
        .await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "batch_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10001 items")
    );

    // A body over the byte limit.
    let huge = format!(
        "{{\"items\": [{{\"domain\": \"{}\"}}]}}",
        "a".repeat(2 << 20)
    );
    let response = server
        .http
        .post(&lookup)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "body_too_large");

    // Wrong method.
    let response = server.http.delete(&lookup).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn garbage_never_gets_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let paths = [
        "/v1/files/",
        "/v1/files/%",
        "/v1/files/%ff%fe",
        "/v1/domains/%00",
        "/v1/domains/..",
        "/v1/ips/%5B::1",
        "/v1/ips/[::1]",
        "/v1/files/\u{1F600}",
        "/v1/lookup?explain=%ff",
        "/v1/domains/xn--",
        "/v1/domains/-.example",
        "/v1/certificates/%20",
    ];
    for path in paths {
        let (status, body) = server.get(path).await;
        assert!(status < 500, "{path}: {status} {body}");
    }
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"[]",
        b"{\"items\": null}",
        b"{\"items\": [null]}",
        b"\xff\xfe",
        b"{\"items\": [{\"file\": \"\\ud800\"}]}",
        b"{\"items\": [{\"domain\": 7}]}",
    ];
    for body in bodies {
        for path in ["/v1/lookup", "/v1/admin/verdicts"] {
            let method = if path == "/v1/lookup" {
                reqwest::Method::POST
            } else {
                reqwest::Method::PUT
            };
            let response = server
                .http
                .request(method, server.url(path))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!((400..500).contains(&status), "{path} {body:?}: {status}");
        }
    }
    let bad_verdicts = [
        json!({"object": {"file": EICAR_MD5}, "verdict": "unknown"}),
        json!({"object": {"file": EICAR_MD5}, "verdict": "evil"}),
        json!({"object": {"file": EICAR_MD5}, "verdict": "trusted", "categories": ["nope"]}),
        json!({"object": {"file": EICAR_MD5}, "verdict": "trusted", "threat": ""}),
        json!({"object": {"file": EICAR_MD5}, "verdict": "trusted", "comment": "x".repeat(1001)}),
        json!({"object": {}, "verdict": "trusted"}),
        json!({"verdict": "trusted"}),
    ];
    for body in bad_verdicts {
        let (status, answer) = server
            .call(
                reqwest::Method::PUT,
                "/v1/admin/verdicts",
                Some(&body),
                Some(TOKEN),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // None of that changed anything.
    let (_, list) = server
        .call(
            reqwest::Method::GET,
            "/v1/admin/verdicts",
            None,
            Some(TOKEN),
        )
        .await;
    assert_eq!(list["verdicts"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_batch_is_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    let unknown = "1".repeat(64);
    let items = json!([
        {"file": unknown}, {"file": EICAR_SHA1}, {"domain": "malware.test.repnet.invalid"},
        {"ip": "192.0.2.1"}, {"file": EICAR_MD5}, {"certificate": "e".repeat(64)}, {"file": unknown},
    ]);
    let (status, body) = server
        .post_json("/v1/lookup?explain=true", &json!({ "items": items }))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["object"]["value"].as_str().unwrap(),
                r["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (unknown.as_str(), "unknown"),
            (EICAR_SHA1, "untrusted"),
            ("malware.test.repnet.invalid", "untrusted"),
            ("192.0.2.1", "unknown"),
            (EICAR_MD5, "untrusted"),
            (&*"e".repeat(64), "unknown"),
            (unknown.as_str(), "unknown"),
        ]
    );
    assert!(results[1]["explain"]["records"].is_array());
    let (status, body) = server.post_json("/v1/lookup", &json!({"items": []})).await;
    assert_eq!((status, body), (200, json!({"results": []})));
    server.stop().await;
}

#[tokio::test]
async fn the_admin_api_needs_the_right_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let put = json!({"object": {"domain": "x.example"}, "verdict": "trusted"});
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some(&TOKEN[..TOKEN.len() - 1]),
    ] {
        for (method, body) in [
            (reqwest::Method::GET, None),
            (reqwest::Method::PUT, Some(&put)),
        ] {
            let (status, answer) = server.call(method, "/v1/admin/verdicts", body, token).await;
            assert_eq!(status, 401, "{token:?}");
            assert_eq!(error_code(&answer), "unauthorized");
        }
    }
    let (_, body) = server.get("/v1/domains/x.example").await;
    assert_eq!(body["verdict"], "unknown", "nothing was set");
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_local_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let put =
        json!({"object": {"ip": "198.51.100.7"}, "verdict": "untrusted", "categories": ["c2"]});
    let (status, _) = server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&put),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    server.stop().await;

    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let (_, body) = server.get("/v1/ips/198.51.100.7").await;
    assert_eq!(body["verdict"], "untrusted");
    assert_eq!(body["categories"], json!(["c2"]));
    server.stop().await;
}

#[tokio::test]
async fn operations_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    assert_eq!(server.get("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(
        server.get("/readyz").await,
        (200, json!({"status": "ready"}))
    );
    server.get(&format!("/v1/files/{EICAR_SHA256}")).await;
    server.get(&format!("/v1/files/{}", "a".repeat(65))).await;

    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"repnet_lookups_total{object="file",verdict="untrusted"} 1"#,
        r#"repnet_http_requests_total{route="/v1/files/{hash}",status="200"} 1"#,
        r#"repnet_http_requests_total{route="/v1/files/{hash}",status="400"} 1"#,
        "repnet_http_request_duration_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }

    let (status, openapi) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/files/{hash}",
        "/v1/lookup",
        "/v1/admin/verdicts",
        "/v1/admin/imports",
        "/v1/admin/feeds",
        "/v1/admin/feeds/{name}/refresh",
        "/metrics",
    ] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(openapi["components"]["schemas"].get("Reputation").is_some());
    // A batch's result is a reputation or, from a proxy, an item's error; an answer may be
    // stale; a file may be given by several hashes.
    let schemas = &openapi["components"]["schemas"];
    assert!(
        schemas["LookupResult"]["oneOf"]
            .as_array()
            .is_some_and(|v| v.len() == 2),
        "{}",
        schemas["LookupResult"]
    );
    assert!(schemas["Reputation"]["properties"].get("stale").is_some());
    assert!(
        schemas["FileRef"]["oneOf"].is_array(),
        "{}",
        schemas["FileRef"]
    );
    server.stop().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    let http2 = repnet_client::http_client_builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = http2
        .get(server.url(&format!("/v1/files/{EICAR_SHA1}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["threat"], "EICAR-Test-File");
    server.stop().await;
}

#[tokio::test]
async fn binary_batch_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let put = json!({"object": {"file": "ab".repeat(32)}, "verdict": "riskware", "threat": "Corp.Tool",
                     "categories": ["remote_admin"]});
    server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&put),
            Some(TOKEN),
        )
        .await;

    let client = repnet_client::Client::new(&server.base).unwrap();
    let eicar = repnet_model::Sha256::from_hex(EICAR_SHA256).unwrap();
    let digests = [
        eicar,
        repnet_model::Sha256([0; 32]),
        repnet_model::Sha256([0xab; 32]),
        eicar,
    ];
    let answers = client.lookup_sha256(&digests).await.unwrap();
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].verdict, Verdict::Untrusted);
    assert_eq!(answers[0].threat.as_deref(), Some("EICAR-Test-File"));
    assert_eq!(answers[0].source, Some(Source::Builtin));
    assert_eq!(answers[0].ttl, 3600);
    assert!(
        answers[0]
            .categories
            .contains(repnet_model::Category::Malware)
    );
    assert_eq!(answers[1].verdict, Verdict::Unknown);
    assert_eq!(answers[1].source, None);
    assert_eq!(answers[1].ttl, 300);
    assert_eq!(answers[2].verdict, Verdict::Riskware);
    assert_eq!(answers[2].source, Some(Source::Local));
    assert_eq!(answers[2].threat.as_deref(), Some("Corp.Tool"));
    assert_eq!(answers[3], answers[0]);

    // The same answers as JSON.
    let (_, body) = server
        .post_json(
            "/v1/lookup",
            &json!({"items": [{"file": EICAR_SHA256}, {"file": "ab".repeat(32)}]}),
        )
        .await;
    assert_eq!(body["results"][0]["threat"], "EICAR-Test-File");
    assert_eq!(body["results"][1]["verdict"], "riskware");

    let post = |body: Vec<u8>| {
        server
            .http
            .post(server.url("/v1/lookup?hash=sha256"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    let response = post(vec![0; 33]).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "invalid_body");
    let response = post(vec![0; 32 * 10_001]).await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "batch_too_large");
    let response = server
        .http
        .post(server.url("/v1/lookup"))
        .header("content-type", "text/csv")
        .body("x")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/octet-stream"),
        "{body}"
    );

    // The binary form as an operation of its own: the same records; its mistakes named.
    let files = |query: &str, media: &str, body: Vec<u8>| {
        server
            .http
            .post(server.url(&format!("/v1/files:lookup{query}")))
            .header("content-type", media)
            .body(body)
            .send()
    };
    let digests = hex::decode(EICAR_SHA256).unwrap();
    let alone = files("?hash=sha256", "application/octet-stream", digests.clone())
        .await
        .unwrap();
    assert_eq!(alone.status().as_u16(), 200);
    let via_lookup = post(digests.clone()).await.unwrap();
    assert_eq!(
        alone.bytes().await.unwrap(),
        via_lookup.bytes().await.unwrap(),
        "the same records as POST /v1/lookup"
    );
    for (query, media, status, code) in [
        ("", "application/octet-stream", 400, "invalid_query"),
        (
            "?hash=sha256&explain=true",
            "application/octet-stream",
            400,
            "invalid_query",
        ),
        (
            "?hash=sha256",
            "application/json",
            415,
            "unsupported_media_type",
        ),
    ] {
        let response = files(query, media, digests.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{query} {media}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), code, "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn urls_are_matched_by_their_most_specific_expression() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let set = |object: Value, verdict: &str, threat: &str| json!({"object": object, "verdict": verdict, "threat": threat});
    for body in [
        set(
            json!({"domain": "evil.example"}),
            "untrusted",
            "Evil.Domain",
        ),
        set(
            json!({"url": "evil.example/login/"}),
            "riskware",
            "Evil.Login",
        ),
        set(
            json!({"url": "http://good.example/a.php?x=1"}),
            "untrusted",
            "Exact.Query",
        ),
        set(json!({"ip": "192.0.2.66"}), "untrusted", "Evil.Ip"),
    ] {
        let (status, answer) = server
            .call(
                reqwest::Method::PUT,
                "/v1/admin/verdicts",
                Some(&body),
                Some(TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{body}: {answer}");
    }
    let url = |u: &str| {
        let encoded: String = u
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("/v1/urls?url={encoded}")
    };
    let cases = [
        // The issue's example: the domain's verdict covers every variation.
        (
            "http://A.Evil.Example.:80/x/../y?z#f",
            "untrusted",
            Some("evil.example/"),
            "http://a.evil.example/y?z",
        ),
        (
            "https://evil.example/login/form.php?u=1",
            "riskware",
            Some("evil.example/login/"),
            "https://evil.example/login/form.php?u=1",
        ),
        (
            "good.example/a.php?x=1",
            "untrusted",
            Some("good.example/a.php?x=1"),
            "http://good.example/a.php?x=1",
        ),
        (
            "good.example/a.php?x=2",
            "unknown",
            None,
            "http://good.example/a.php?x=2",
        ),
        (
            "http://0xC0.0.2.66/anything",
            "untrusted",
            Some("192.0.2.66/"),
            "http://192.0.2.66/anything",
        ),
        (
            "http://phishing.test.repnet.invalid/",
            "untrusted",
            Some("phishing.test.repnet.invalid/"),
            "http://phishing.test.repnet.invalid/",
        ),
        (
            "http://url.test.repnet.invalid/miner?x",
            "riskware",
            Some("url.test.repnet.invalid/miner"),
            "http://url.test.repnet.invalid/miner?x",
        ),
        (
            "http://url.test.repnet.invalid/",
            "unknown",
            None,
            "http://url.test.repnet.invalid/",
        ),
    ];
    for (input, verdict, matched, canonical) in cases {
        let (status, body) = server.get(&url(input)).await;
        assert_eq!(status, 200, "{input}: {body}");
        assert_eq!(body["verdict"], verdict, "{input}: {body}");
        assert_eq!(body["matched"], json!(matched), "{input}");
        assert_eq!(body["object"]["type"], "url");
        assert_eq!(body["object"]["value"], canonical);
    }
    // The same through the batch, in order, with a domain and an IP.
    let items = json!([
        {"url": "http://sub.evil.example/x"}, {"domain": "deep.sub.evil.example"}, {"domain": "fine.example"},
        {"ip": "192.0.2.66"}, {"file": EICAR_MD5}
    ]);
    let (status, body) = server
        .post_json("/v1/lookup", &json!({ "items": items }))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["matched"], "evil.example/");
    assert_eq!(
        results[1]["verdict"], "untrusted",
        "a parent domain's verdict covers subdomains"
    );
    assert_eq!(results[1]["object"]["value"], "deep.sub.evil.example");
    assert_eq!(results[1]["matched"], "evil.example/");
    assert_eq!(results[2]["verdict"], "unknown");
    assert_eq!(results[2]["matched"], Value::Null);
    assert_eq!(results[3]["threat"], "Evil.Ip");
    assert!(
        results[4].get("matched").is_none(),
        "files have no expressions"
    );
    // Local verdicts on URLs are listed as URLs and can be removed.
    let (_, list) = server
        .call(
            reqwest::Method::GET,
            "/v1/admin/verdicts",
            None,
            Some(TOKEN),
        )
        .await;
    let listed: Vec<&str> = list["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["object"]["value"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"evil.example/login/"), "{listed:?}");
    assert!(listed.contains(&"evil.example"), "{listed:?}");
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            "/v1/admin/verdicts?url=evil.example%2Flogin%2F",
            None,
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = server
        .get(&url("https://evil.example/login/form.php"))
        .await;
    assert_eq!(
        body["matched"], "evil.example/",
        "without the login verdict the domain's decides"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    for (path, code, message) in [
        ("/v1/urls", "invalid_url", "?url="),
        ("/v1/urls?url=", "invalid_url", "empty"),
        (
            "/v1/urls?url=http%3A%2F%2F",
            "invalid_url",
            "nothing after the scheme",
        ),
        ("/v1/urls?url=http%3A%2F%2F%3Fx", "invalid_url", "no host"),
        (
            "/v1/urls?url=http%3A%2F%2Fexample.com%3Aport%2F",
            "invalid_url",
            "port",
        ),
        ("/v1/urls?url=x.example&hmm=1", "invalid_query", "hmm"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(error_code(&body), code, "{path}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(message),
            "{path}: {body}"
        );
    }
    // Bytes that are not UTF-8 are fine in a URL.
    let (status, body) = server.get("/v1/urls?url=http%3A%2F%2F%01%80.com%2F").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"]["value"], "http://%01%80.com/");
    let (status, body) = server
        .post_json(
            "/v1/lookup",
            &json!({"items": [{"url": "ok.example"}, {"url": "http://"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("items[1].url:"),
        "{body}"
    );
    for (prefixes, code) in [
        (json!(["0123ab"]), "invalid_prefix"),
        (json!(["0123abcde"]), "invalid_prefix"),
        (json!(["zzzzzzzz"]), "invalid_prefix"),
        (json!("0123abcd"), "invalid_request"),
    ] {
        let (status, body) = server
            .post_json("/v1/hashes:search", &json!({ "prefixes": prefixes }))
            .await;
        assert_eq!(status, 400, "{prefixes}: {body}");
        assert_eq!(error_code(&body), code);
    }
    let many: Vec<String> = (0..1001).map(|i| format!("{i:08x}")).collect();
    let (status, body) = server
        .post_json("/v1/hashes:search", &json!({ "prefixes": many }))
        .await;
    assert_eq!(status, 413, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn privacy_mode_finds_files_and_urls_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    let eicar_prefix = &EICAR_SHA256[..8];
    let phishing = repnet_model::Expression::parse("phishing.test.repnet.invalid/")
        .unwrap()
        .sha256()
        .to_string();
    let (status, body) = server
        .post_json(
            "/v1/hashes:search",
            &json!({"prefixes": [eicar_prefix, &phishing[..8], "00000000"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let matches = body["matches"].as_array().unwrap();
    let eicar = matches
        .iter()
        .find(|m| m["hash"] == EICAR_SHA256)
        .expect("EICAR found by its prefix");
    assert_eq!(eicar["type"], "file");
    assert_eq!(eicar["threat"], "EICAR-Test-File");
    let url = matches
        .iter()
        .find(|m| m["hash"] == phishing)
        .expect("the test URL found by its prefix");
    assert_eq!(url["type"], "url");
    assert_eq!(url["verdict"], "untrusted");
    assert_eq!(body["cache_seconds"], 3600);
    assert_eq!(body["unknown_cache_seconds"], 300);
    // `url_prefixes` search among web addresses only: no file is named.
    let (status, body) = server
        .post_json(
            "/v1/hashes:search",
            &json!({"url_prefixes": [eicar_prefix, &phishing[..8]]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hashes: Vec<&str> = body["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, [phishing.as_str()], "{body}");
    let (status, body) = server
        .post_json("/v1/hashes:search", &json!({"url_prefixes": ["abc"]}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("url_prefixes[0]: "),
        "{body}"
    );

    // The client library does the whole dance: only prefixes go out.
    let client = repnet_client::Client::new(&server.base).unwrap();
    let eicar = repnet_model::FileHashes {
        sha256: Some(repnet_model::Sha256::from_hex(EICAR_SHA256).unwrap()),
        ..FileHashes::default()
    };
    let by_md5 = repnet_model::FileHashes {
        md5: Some(repnet_model::Md5::from_hex(EICAR_MD5).unwrap()),
        ..FileHashes::default()
    };
    let targets = [
        repnet_client::PrivateTarget::url(
            repnet_model::CanonicalUrl::parse(b"http://www.phishing.test.repnet.invalid/login?x=1")
                .unwrap(),
        ),
        repnet_client::PrivateTarget::file(eicar).unwrap(),
        repnet_client::PrivateTarget::domain(repnet_model::Domain::new("clean.example").unwrap())
            .unwrap(),
        repnet_client::PrivateTarget::file(by_md5).unwrap(),
    ];
    let answers = client.lookup_private(&targets).await.unwrap();
    assert_eq!(
        answers[0].matched.as_ref().map(|m| m.as_str()),
        Some("phishing.test.repnet.invalid/")
    );
    assert_eq!(answers[0].verdict, Verdict::Untrusted);
    assert_eq!(
        answers[1].threat.as_ref().map(|t| t.as_str()),
        Some("EICAR-Test-File")
    );
    assert_eq!(answers[2].verdict, Verdict::Unknown);
    assert_eq!(answers[2].matched, None);
    assert_eq!(
        answers[3].verdict,
        Verdict::Untrusted,
        "found by an MD5 prefix"
    );
    // The same answers as a direct lookup of the same knowledge base.
    let direct = client
        .lookup(
            &[
                repnet_protocol::LookupItem::new(
                    ObjectKind::Url,
                    "http://www.phishing.test.repnet.invalid/login?x=1",
                ),
                repnet_protocol::LookupItem::new(ObjectKind::File, EICAR_SHA256),
                repnet_protocol::LookupItem::new(ObjectKind::Domain, "clean.example"),
                repnet_protocol::LookupItem::new(ObjectKind::File, EICAR_MD5),
            ],
            false,
        )
        .await
        .unwrap();
    for (private, direct) in answers.iter().zip(&direct) {
        let private = repnet_protocol::Reputation::from_model(private, false);
        assert_eq!(
            (
                &private.verdict,
                &private.threat,
                &private.source,
                &private.matched
            ),
            (
                &direct.verdict,
                &direct.threat,
                &direct.source,
                &direct.matched
            ),
        );
    }
    server.stop().await;
}

/// Stores `(object, record)` pairs before a server starts, as imports would.
async fn store_records(dir: &Path, entries: Vec<(Object, SourceRecord)>) {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    let changes = entries
        .into_iter()
        .map(|(object, record)| Change::Put {
            object,
            hashes: FileHashes::default(),
            record,
            comment: None,
        })
        .collect();
    store.apply(changes).await.unwrap();
}

/// A file that a feed lists by MD5 only, and another by SHA-1 only (ClamAV `.hdb`, MD5
/// lists): asked for by all three hashes of the file, each is found, in JSON and binary.
#[tokio::test]
async fn a_file_is_found_by_every_hash_it_is_asked_by() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileHashes::of(b"a file that a feed lists by MD5 only");
    let second = FileHashes::of(b"a file that a feed lists by SHA-1 only");
    let md5 = Object::File(repnet_model::FileHash::Md5(first.md5.unwrap()));
    let sha1 = Object::File(repnet_model::FileHash::Sha1(second.sha1.unwrap()));
    store_records(
        dir.path(),
        vec![
            (
                md5,
                feed_record("clamav", Verdict::Untrusted, 80, "Win.Trojan.Md5Only"),
            ),
            (
                sha1,
                feed_record("sha1list", Verdict::Untrusted, 70, "Sha1.Only"),
            ),
        ],
    )
    .await;
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    let hex = |hashes: &FileHashes| {
        json!({
            "sha256": hashes.sha256.unwrap().to_string(),
            "sha1": hashes.sha1.unwrap().to_string(),
            "md5": hashes.md5.unwrap().to_string(),
        })
    };

    // By SHA-256 alone the network cannot know: that was the false "clean".
    let (_, body) = server
        .get(&format!("/v1/files/{}", first.sha256.unwrap()))
        .await;
    assert_eq!(body["verdict"], "unknown");

    let (status, body) = server
        .post_json(
            "/v1/lookup",
            &json!({"items": [{"file": hex(&first)}, {"file": hex(&second)}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["verdict"], "untrusted", "{body}");
    assert_eq!(results[0]["threat"], "Win.Trojan.Md5Only");
    assert_eq!(results[0]["source"], "feed:clamav");
    // The answer names the file by its SHA-256 and lists every hash.
    assert_eq!(
        results[0]["object"]["value"],
        first.sha256.unwrap().to_string()
    );
    assert_eq!(results[0]["object"]["hashes"], hex(&first));
    assert_eq!(results[1]["threat"], "Sha1.Only");

    // The binary form, declaring what each file carries.
    let client = repnet_client::Client::new(&server.base).unwrap();
    let layout = repnet_protocol::binary::Layout::parse("sha256,sha1,md5").unwrap();
    let unknown = FileHashes::of(b"nobody lists this one");
    let answers = client
        .lookup_binary(&layout, &[first, unknown, second])
        .await
        .unwrap();
    let verdicts: Vec<Verdict> = answers.iter().map(|a| a.verdict).collect();
    assert_eq!(
        verdicts,
        [Verdict::Untrusted, Verdict::Unknown, Verdict::Untrusted]
    );
    assert_eq!(answers[0].threat.as_deref(), Some("Win.Trojan.Md5Only"));

    // 1,000 raw SHA-1 digests (20,000 bytes, a multiple of 32) declared as SHA-1 are 1,000
    // files; the flagged one is found.
    let mut sha1s: Vec<FileHashes> = (0..1000u32)
        .map(|i| FileHashes {
            sha1: FileHashes::of(&i.to_le_bytes()).sha1,
            ..FileHashes::default()
        })
        .collect();
    sha1s[500].sha1 = second.sha1;
    let layout = repnet_protocol::binary::Layout::parse("sha1").unwrap();
    let answers = client.lookup_binary(&layout, &sha1s).await.unwrap();
    assert_eq!(answers.len(), 1000);
    assert_eq!(answers[500].verdict, Verdict::Untrusted);
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.verdict == Verdict::Untrusted)
            .count(),
        1
    );

    // A body that does not say what it carries, or does not match what it says, is refused.
    let post = |query: &str, body: Vec<u8>| {
        server
            .http
            .post(server.url(&format!("/v1/lookup{query}")))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    for (query, body, code, message) in [
        ("", vec![0u8; 20_000], "invalid_query", "?hash=sha256"),
        (
            "?hash=sha256",
            vec![0u8; 20_001],
            "invalid_body",
            "not a multiple of 32",
        ),
        (
            "?hash=sha512",
            vec![0u8; 64],
            "invalid_query",
            "not a hash kind",
        ),
        (
            "?hash=md5,sha1",
            vec![0u8; 36],
            "invalid_body",
            "gives no hash",
        ),
    ] {
        let response = post(query, body).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), code, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(message),
            "{query}: {body}"
        );
    }
    // A hash of the wrong kind in a file of several is named.
    let (status, body) = server
        .post_json(
            "/v1/lookup",
            &json!({"items": [{"file": {"sha1": first.md5.unwrap().to_string()}}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_hash");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[0].file.sha1"),
        "{body}"
    );
    let (status, body) = server
        .post_json("/v1/lookup?hash=sha1", &json!({"items": []}))
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_query"));
    server.stop().await;
}

/// A broad block is not undone by a narrow allow: the rule over matched expressions.
#[tokio::test]
async fn a_broad_block_is_not_undone_by_a_narrow_allow() {
    let dir = tempfile::tempdir().unwrap();
    let domain = |name: &str| Object::parse(ObjectKind::Domain, name).unwrap();
    let url = |text: &str| {
        Object::Url(
            repnet_model::CanonicalUrl::parse(text.as_bytes())
                .unwrap()
                .exact_expression(),
        )
    };
    let popular = |name: &str| {
        (
            domain(name),
            feed_record("tranco", Verdict::Trusted, 20, "-"),
        )
    };
    store_records(
        dir.path(),
        vec![
            popular("www.corpblock.example"),
            popular("www.phish.example"),
            (
                domain("phish.example"),
                feed_record("phishtank", Verdict::Untrusted, 90, "Phishing.Kit"),
            ),
            popular("safe.example"),
            (
                url("http://safe.example/bad/"),
                feed_record("urlhaus", Verdict::Untrusted, 90, "Mozi"),
            ),
        ],
    )
    .await;
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    for (object, verdict) in [
        (json!({"domain": "corpblock.example"}), "untrusted"),
        // The administrator exempts one page under the blocked domain.
        (
            json!({"url": "http://www.corpblock.example/help.html"}),
            "trusted",
        ),
    ] {
        let body = json!({"object": object, "verdict": verdict});
        let (status, answer) = server
            .call(
                reqwest::Method::PUT,
                "/v1/admin/verdicts",
                Some(&body),
                Some(TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    let items = json!([
        {"domain": "corpblock.example"},
        {"domain": "www.corpblock.example"},
        {"url": "http://www.corpblock.example/payload.exe"},
        {"url": "http://www.corpblock.example/help.html"},
        {"url": "https://www.phish.example/login"},
        {"url": "http://safe.example/bad/x.sh"},
        {"url": "http://safe.example/good"},
    ]);
    let (status, body) = server
        .post_json("/v1/lookup?explain=true", &json!({ "items": items }))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let expected = [
        ("untrusted", "local", "corpblock.example/"),
        ("untrusted", "local", "corpblock.example/"),
        ("untrusted", "local", "corpblock.example/"),
        ("trusted", "local", "www.corpblock.example/help.html"),
        ("untrusted", "feed:phishtank", "phish.example/"),
        ("untrusted", "feed:urlhaus", "safe.example/bad/"),
        ("trusted", "feed:tranco", "safe.example/"),
    ];
    for (result, (verdict, source, matched)) in results.iter().zip(expected) {
        let input = &result["object"]["value"];
        assert_eq!(result["verdict"], verdict, "{input}: {result}");
        assert_eq!(result["source"], source, "{input}");
        assert_eq!(result["matched"], matched, "{input}");
    }
    // The explanation shows every matched expression and why one decided.
    let explain = &results[1]["explain"];
    assert!(
        explain["expression_reason"]
            .as_str()
            .unwrap()
            .contains("local verdict"),
        "{explain}"
    );
    let records = explain["records"].as_array().unwrap();
    assert_eq!(records[0]["expression"], "corpblock.example/");
    assert_eq!(records[0]["decisive"], true);
    assert!(
        records
            .iter()
            .any(|r| r["expression"] == "www.corpblock.example/" && r["source"] == "feed:tranco"),
        "{explain}"
    );
    // Single lookups follow the same rule.
    let (_, body) = server.get("/v1/domains/www.corpblock.example").await;
    assert_eq!(body["verdict"], "untrusted");
    server.stop().await;
}

/// A URL is on the host a browser goes to, whatever backslashes, `@` and escapes say.
#[tokio::test]
async fn urls_are_on_the_host_a_browser_goes_to() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let body = json!({"object": {"domain": "evil-idn.example"}, "verdict": "untrusted"});
    let (status, _) = server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&body),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let items = json!([
        {"url": "http://evil-idn.example\\login"},
        {"url": "http://evil-idn.example\\@good.example/"},
        {"url": "http://good.example%2F@evil-idn.example/"},
        {"url": "http:\\\\evil-idn.example\\x"},
    ]);
    let (status, body) = server
        .post_json("/v1/lookup", &json!({ "items": items }))
        .await;
    assert_eq!(status, 200, "{body}");
    for result in body["results"].as_array().unwrap() {
        assert_eq!(result["verdict"], "untrusted", "{result}");
        assert_eq!(result["matched"], "evil-idn.example/", "{result}");
    }
    // What a browser refuses is refused.
    for (url, reason) in [
        ("http://evil-idn.example:70000/", "above 65535"),
        ("http://-.com/", "starts or ends with `-`"),
    ] {
        let (status, body) = server
            .post_json("/v1/lookup", &json!({"items": [{"url": url}]}))
            .await;
        assert_eq!((status, error_code(&body)), (400, "invalid_url"), "{url}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{body}"
        );
    }
    server.stop().await;
}

/// `Authorization: bearer` in lower case is the same scheme; NUL or a right-to-left override
/// in a comment or a key's label and an offset of `+99:99` are refused.
#[tokio::test]
async fn small_things_of_the_adversarial_review() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let response = server
        .http
        .get(server.url("/v1/admin/verdicts"))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    for (body, code, message) in [
        (
            json!({"object": {"domain": "x.example"}, "verdict": "untrusted", "comment": "a\u{0}b"}),
            "invalid_comment",
            "control and text-direction characters",
        ),
        (
            json!({"object": {"domain": "x.example"}, "verdict": "untrusted", "comment": "see gpj\u{202E}exe.txt"}),
            "invalid_comment",
            "text-direction characters",
        ),
        (
            json!({"object": {"domain": "x.example"}, "verdict": "untrusted", "expires": "2099-01-01T00:00:00+99:99"}),
            "invalid_expires",
            "not a date or time",
        ),
        (
            json!({"key": "RTL-LABEL-KEY-0001", "label": "Corp \u{202E}evil"}),
            "invalid_label",
            "text-direction characters",
        ),
    ] {
        let (method, path) = if body.get("key").is_some() {
            (reqwest::Method::POST, "/v1/admin/keys")
        } else {
            (reqwest::Method::PUT, "/v1/admin/verdicts")
        };
        let (status, answer) = server.call(method, path, Some(&body), Some(TOKEN)).await;
        assert_eq!((status, error_code(&answer)), (400, code), "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{answer}"
        );
    }
    server.stop().await;
}

/// `/metrics` says which repnet answers and how its process is (the names Prometheus's own
/// clients use, which dashboards expect); the upstream's metrics only where there is one.
#[tokio::test]
async fn metrics_name_the_build_and_the_process_and_no_upstream_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "repnet_build_info{{version=\"{}\",component=\"serve\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(!metrics.contains("repnet_upstream"), "{metrics}");
    server.stop().await;
}
