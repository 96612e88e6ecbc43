//! End-to-end tests of participation: the statement, statistics in, distinct devices counted,
//! and no personal data anywhere in the data directory.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::TestServer;
use repnet_server::ServerConfig;
use serde_json::{Value, json};

async fn post(server: &TestServer, body: &Value) -> (u16, Value) {
    let response = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .post(format!("{}/v1/statistics", server.base))
        .header("x-forwarded-for", "198.51.100.77")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn batch(install: &str, events: Value) -> Value {
    json!({"statement_version": 1, "install_id": install, "product": "repnet-test/1.0", "events": events})
}

async fn prevalence(server: &TestServer, sha256: &str) -> u64 {
    let response = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .get(format!("{}/v1/files/{sha256}", server.base))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["prevalence"].as_u64().unwrap()
}

#[tokio::test]
async fn statistics_are_checked_counted_by_distinct_device_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        install_batches_per_minute: 0,
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config.clone()).await;
    let statement: Value = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .get(format!("{}/v1/statement", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(statement["version"], 1);
    assert!(
        statement["text"]
            .as_str()
            .unwrap()
            .contains("No personal data")
    );
    assert!(statement["categories"].as_array().unwrap().len() >= 5);

    let file = "ab".repeat(32);
    let sighting = json!([{"type": "sighting", "file": file, "size": 1234, "name": "C:\\Program Files\\App\\app.exe"}]);
    // Refusals name what was wrong and store nothing.
    let (status, body) = post(&server, &json!({"statement_version": 2, "install_id": "install-0001", "product": "p", "events": sighting})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("statement_not_accepted"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("repnet statement --accept")
    );
    let (status, body) = post(
        &server,
        &batch(
            "install-0001",
            json!([{"type": "sighting", "file": file}, {"type": "detection", "file": "xyz"}]),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[1].file"),
        "{body}"
    );
    let (status, body) = post(
        &server,
        &batch(
            "install-0001",
            json!([{"type": "sighting", "file": file, "email": "a@b.example"}]),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
    for (install, code) in [
        ("short", "invalid_install_id"),
        ("has spaces in it", "invalid_install_id"),
    ] {
        let (status, body) = post(&server, &batch(install, sighting.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)));
    }
    let (status, body) = post(&server, &batch("install-0001", json!([]))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_events"))
    );
    assert_eq!(prevalence(&server, &file).await, 0);

    // The same install a hundred times counts once.
    for _ in 0..100 {
        let (status, body) = post(&server, &batch("install-0001", sighting.clone())).await;
        assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    }
    assert_eq!(prevalence(&server, &file).await, 1);
    // A thousand installs count about a thousand (sent concurrently: group commit).
    let mut sends = tokio::task::JoinSet::new();
    let client = repnet_client::http_client_builder().build().unwrap();
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for install in 0..1000 {
        let base = server.base.clone();
        let body = batch(&format!("install-{install:06}"), sighting.clone());
        let (client, in_flight) = (client.clone(), in_flight.clone());
        sends.spawn(async move {
            let _permit = in_flight.acquire_owned().await.unwrap();
            client
                .post(format!("{base}/v1/statistics"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), 202);
    }
    let count = prevalence(&server, &file).await as f64;
    assert!((count - 1001.0).abs() <= 1001.0 * 0.03, "{count}");
    server.stop().await;

    // Everything acknowledged is on disk.
    let server = TestServer::start(dir.path(), config).await;
    assert_eq!(prevalence(&server, &file).await as f64, count);
    server.stop().await;
}

#[tokio::test]
async fn no_personal_data_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let install = "install-id-PERSONAL-4f1c9e";
    let events = json!([
        {"type": "detection", "file": "cd".repeat(32), "name": "C:\\Users\\jsmith-secret\\Downloads\\invoice.exe", "threat": "Trojan.Win32.Test"},
        {"type": "sighting", "file": "ef".repeat(32), "name": "/home/jsmith-secret/bin/tool"},
        {"type": "detection", "url": "http://jsmith-secret:hunter2-password@evil.example/login.php?token=SECRET-QUERY-123#frag-secret"},
        {"type": "false_positive", "file": "cd".repeat(32), "comment": "I am jsmith@corp-secret.example, my IP is 198.51.100.77 and https://intranet.example/x?session=SECRET-SESSION"}
    ]);
    let (status, body) = post(&server, &batch(install, events)).await;
    assert_eq!(status, 202, "{body}");
    server.stop().await;

    let forbidden = [
        "jsmith-secret",
        "hunter2-password",
        "SECRET-QUERY-123",
        "frag-secret",
        "jsmith@corp-secret.example",
        "198.51.100.77",
        "SECRET-SESSION",
        install,
    ];
    let mut files = 0;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for needle in forbidden {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{needle:?} found in {}",
                entry.display()
            );
        }
    }
    assert!(files > 0);
    // What was kept: the scrubbed forms.
    let data = std::fs::read(dir.path().join("data.mdb")).unwrap();
    for kept in [
        "%USERPROFILE%\\Downloads\\invoice.exe",
        "~/bin/tool",
        "<e-mail>",
        "<ip>",
    ] {
        assert!(
            data.windows(kept.len()).any(|w| w == kept.as_bytes()),
            "{kept:?} not stored"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_private_server_takes_statistics_only_from_its_own_clients() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        role: repnet_server::Role::Private,
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    let sighting = json!([{"type": "sighting", "file": "ab".repeat(32)}]);
    let (status, body) = post(&server, &batch("install-0001", sighting)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("licence_not_registered"))
    );
    server.stop().await;
}

async fn reputation(server: &TestServer, sha256: &str) -> Value {
    repnet_client::http_client_builder()
        .build()
        .unwrap()
        .get(format!("{}/v1/files/{sha256}", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn admin(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(common::TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_engine_turns_statistics_into_verdicts_and_reports_into_a_review_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.engine.interval_seconds = 1;
    config.engine.detecting_devices = 5;
    config.engine.trusted_devices = 20;
    let server = TestServer::start(dir.path(), config).await;
    let (malware, popular, badly_signed) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    let (good_signer, bad_signer) = ("d4".repeat(32), "e5".repeat(32));
    for (signer, verdict) in [(&good_signer, "trusted"), (&bad_signer, "untrusted")] {
        let (status, _) = admin(
            &server,
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(json!({"object": {"certificate": signer}, "verdict": verdict})),
        )
        .await;
        assert_eq!(status, 200);
    }
    // Four devices detecting it are not enough; the same device again does not count.
    for install in 0..4 {
        let events = json!([{"type": "detection", "file": malware, "threat": "Trojan.Test"}]);
        assert_eq!(
            post(
                &server,
                &batch(&format!("device-{install:04}"), events.clone())
            )
            .await
            .0,
            202
        );
        assert_eq!(
            post(&server, &batch(&format!("device-{install:04}"), events))
                .await
                .0,
            202
        );
    }
    common::eventually(10, "the engine's first tick", || async {
        admin(&server, reqwest::Method::GET, "/v1/admin/engine", None)
            .await
            .1["pending"]
            == 0
    })
    .await;
    assert_eq!(reputation(&server, &malware).await["verdict"], "unknown");
    let events = json!([{"type": "detection", "file": malware}]);
    assert_eq!(post(&server, &batch("device-0004", events)).await.0, 202);
    for install in 0..20 {
        let events = json!([
            {"type": "sighting", "file": popular, "signer": good_signer, "size": 5000},
            {"type": "sighting", "file": badly_signed, "signer": bad_signer},
        ]);
        assert_eq!(
            post(&server, &batch(&format!("device-{install:04}"), events))
                .await
                .0,
            202
        );
    }
    common::eventually(15, "the engine's verdicts", || async {
        reputation(&server, &malware).await["verdict"] == "untrusted"
            && reputation(&server, &popular).await["verdict"] == "trusted"
            && reputation(&server, &badly_signed).await["verdict"] == "untrusted"
    })
    .await;
    let answer = reputation(&server, &malware).await;
    assert_eq!(
        (answer["source"].as_str(), answer["prevalence"].as_u64()),
        (Some("engine"), Some(5))
    );
    let (_, engine) = admin(&server, reqwest::Method::GET, "/v1/admin/engine", None).await;
    assert!(engine["verdicts_set"].as_u64().unwrap() >= 3, "{engine}");

    // A false-positive report goes to the review queue; the administrator settles it.
    let report = json!([{"type": "false_positive", "file": malware, "comment": "our own tool, ask admin@corp.example"}]);
    assert_eq!(post(&server, &batch("device-0001", report)).await.0, 202);
    let (status, queue) = admin(&server, reqwest::Method::GET, "/v1/admin/review", None).await;
    assert_eq!(status, 200);
    let item = &queue["items"][0];
    assert_eq!(
        (item["reports"].as_u64(), item["verdict"].as_str()),
        (Some(1), Some("untrusted"))
    );
    assert_eq!(item["comment"], "our own tool, ask <e-mail>");
    let id = item["id"].as_str().unwrap().to_owned();
    let (status, body) = admin(
        &server,
        reqwest::Method::POST,
        &format!("/v1/admin/review/{id}"),
        Some(json!({"verdict": "maybe"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_verdict"))
    );
    let (status, queue) = admin(
        &server,
        reqwest::Method::POST,
        &format!("/v1/admin/review/{id}"),
        Some(json!({"verdict": "trusted"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(queue["items"].as_array().unwrap().len(), 0);
    let answer = reputation(&server, &malware).await;
    assert_eq!(
        (answer["verdict"].as_str(), answer["source"].as_str()),
        (Some("trusted"), Some("local"))
    );
    let (status, _) = admin(
        &server,
        reqwest::Method::POST,
        &format!("/v1/admin/review/{id}"),
        Some(json!({"verdict": "trusted"})),
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn one_installation_cannot_flood_the_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        install_batches_per_minute: 3,
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    let sighting = json!([{"type": "sighting", "file": "ab".repeat(32)}]);
    for _ in 0..3 {
        assert_eq!(
            post(&server, &batch("install-flood", sighting.clone()))
                .await
                .0,
            202
        );
    }
    let (status, body) = post(&server, &batch("install-flood", sighting.clone())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Another installation is not held back.
    assert_eq!(
        post(&server, &batch("install-other", sighting)).await.0,
        202
    );
    server.stop().await;
}
