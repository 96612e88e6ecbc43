//! End-to-end tests of participation: the statement, statistics in, distinct devices counted,
//! and no personal data anywhere in the data directory.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use repnet_server::ServerConfig;
use repnet_testkit::Server as TestServer;
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

fn batch(installation: &str, events: Value) -> Value {
    json!({"statement_version": 1, "installation": installation, "product": "repnet-test/1.0", "events": events})
}

/// A configuration whose enrolments are quick (a light proof of work, every test client on
/// one address) and whose installations count at once.
fn quick_enrolment() -> ServerConfig {
    let mut config = ServerConfig {
        installation_difficulty: 8,
        enrolments_per_address_per_hour: 100_000,
        ..ServerConfig::default()
    };
    config.engine.established_after_hours = 0;
    config
}

/// Enrols an installation, as a client does: its token.
async fn enrol(server: &TestServer) -> String {
    repnet_client::Client::new(&server.base)
        .unwrap()
        .enrol_installation()
        .await
        .unwrap()
        .installation
}

/// `count` installations, enrolled concurrently.
async fn enrol_many(server: &TestServer, count: usize) -> Vec<String> {
    let mut enrolling = tokio::task::JoinSet::new();
    let client = repnet_client::Client::new(&server.base).unwrap();
    for _ in 0..count {
        let client = client.clone();
        enrolling.spawn(async move { client.enrol_installation().await.unwrap().installation });
    }
    enrolling.join_all().await
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
        ..quick_enrolment()
    };
    let server = TestServer::start(dir.path(), config.clone()).await;
    let install = enrol(&server).await;
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
    let (status, body) = post(&server, &json!({"statement_version": 2, "installation": install, "product": "p", "events": sighting})).await;
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
            &install,
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
            &install,
            json!([{"type": "sighting", "file": file, "email": "a@b.example"}]),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
    // Only installations the server enrolled count: an invented id, another server's token or
    // an altered one are refused.
    let mut altered = install.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    for invented in [
        "short",
        "sybil-device-1-abcdef",
        "has spaces in it",
        &altered,
    ] {
        let (status, body) = post(&server, &batch(invented, sighting.clone())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_installation")),
            "{invented}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("POST /v1/installations")
        );
    }
    let (status, body) = post(&server, &batch(&install, json!([]))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_events"))
    );
    assert_eq!(prevalence(&server, &file).await, 0);

    // The same install a hundred times counts once.
    for _ in 0..100 {
        let (status, body) = post(&server, &batch(&install, sighting.clone())).await;
        assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    }
    assert_eq!(prevalence(&server, &file).await, 1);
    // A thousand installs count about a thousand (sent concurrently: group commit).
    let mut sends = tokio::task::JoinSet::new();
    let client = repnet_client::http_client_builder().build().unwrap();
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for install in enrol_many(&server, 1000).await {
        let base = server.base.clone();
        let body = batch(&install, sighting.clone());
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
    let server = TestServer::start(dir.path(), quick_enrolment()).await;
    let install = enrol(&server).await;
    let events = json!([
        {"type": "detection", "file": "cd".repeat(32), "name": "C:\\Users\\jsmith-secret\\Downloads\\invoice.exe", "threat": "Trojan.Win32.Test"},
        {"type": "sighting", "file": "ef".repeat(32), "name": "/home/jsmith-secret/bin/tool"},
        {"type": "detection", "url": "http://jsmith-secret:hunter2-password@evil.example/login.php?token=SECRET-QUERY-123#frag-secret"},
        {"type": "false_positive", "file": "cd".repeat(32), "comment": "I am jsmith@corp-secret.example, my IP is 198.51.100.77 and https://intranet.example/x?session=SECRET-SESSION"},
        // The review's forms: user folders anywhere, personal data in threat names and
        // comments.
        {"type": "sighting", "file": "a1".repeat(32), "name": "\\\\?\\C:\\Users\\longpath-secret\\x.exe"},
        {"type": "sighting", "file": "a2".repeat(32), "name": "/mnt/c/Users/wsl-secret/x.exe"},
        {"type": "sighting", "file": "a3".repeat(32), "name": "/home/./dot-secret/a"},
        {"type": "sighting", "file": "a4".repeat(32), "name": "file:///C:/Users/fileurl-secret/a.exe"},
        {"type": "detection", "file": "a5".repeat(32), "threat": "Trojan.Found.By.carol.threat-secret@example.org"},
        {"type": "detection", "file": "a6".repeat(32), "threat": "Seen.At.198.51.100.23"},
        {"type": "false_positive", "file": "a7".repeat(32), "comment": "C:\\Users\\DaveSecret\\x.exe on DAVE-LAPTOP, call +1-202-555-0143"},
        // Network homes, roaming profiles, an address in a folder's name.
        {"type": "sighting", "file": "b1".repeat(32), "name": "/net/home/nethome-secret/a.exe"},
        {"type": "sighting", "file": "b2".repeat(32), "name": "/u/ushort-secret/a.exe"},
        {"type": "sighting", "file": "b3".repeat(32), "name": "\\\\fs01\\profiles$\\roaming-secret\\a.exe"},
        {"type": "sighting", "file": "b4".repeat(32), "name": "/data/mail-secret@example.org/report.pdf.exe"}
    ]);
    let (status, body) = post(&server, &batch(&install, events)).await;
    assert_eq!(status, 202, "{body}");
    server.stop().await;
    // The token is never stored, nor the installation's id in it.
    let id = install[2..34].to_owned();

    let forbidden = [
        "jsmith-secret",
        "hunter2-password",
        "SECRET-QUERY-123",
        "frag-secret",
        "jsmith@corp-secret.example",
        "198.51.100.77",
        "SECRET-SESSION",
        "longpath-secret",
        "wsl-secret",
        "dot-secret",
        "fileurl-secret",
        "threat-secret",
        "198.51.100.23",
        "DaveSecret",
        "DAVE-LAPTOP",
        "202-555-0143",
        "nethome-secret",
        "ushort-secret",
        "roaming-secret",
        "mail-secret",
        &install,
        &id,
    ];
    let mut files = 0;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for needle in forbidden {
            let needle: &str = needle;
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
        "/data/<e-mail>/report.pdf.exe",
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
    let (status, body) = post(&server, &batch("an-invented-token", sighting)).await;
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
        .bearer_auth(repnet_testkit::TOKEN);
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
    let mut config = quick_enrolment();
    config.engine.interval_seconds = 1;
    config.engine.detecting_devices = 5;
    config.engine.trusted_devices = 20;
    let server = TestServer::start(dir.path(), config).await;
    // Distinct devices are counted by HyperLogLog: two of twenty can share a register (about
    // one store in a hundred, by its random secret), so a few more than the threshold.
    let devices = enrol_many(&server, 24).await;
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
    for device in &devices[..4] {
        let events = json!([{"type": "detection", "file": malware, "threat": "Trojan.Test"}]);
        assert_eq!(post(&server, &batch(device, events.clone())).await.0, 202);
        assert_eq!(post(&server, &batch(device, events)).await.0, 202);
    }
    repnet_testkit::eventually(60, "the engine's first tick", || async {
        admin(&server, reqwest::Method::GET, "/v1/admin/engine", None)
            .await
            .1["pending"]
            == 0
    })
    .await;
    assert_eq!(reputation(&server, &malware).await["verdict"], "unknown");
    let events = json!([{"type": "detection", "file": malware}]);
    assert_eq!(post(&server, &batch(&devices[4], events)).await.0, 202);
    for device in &devices {
        let events = json!([
            {"type": "sighting", "file": popular, "signer": good_signer, "size": 5000},
            {"type": "sighting", "file": badly_signed, "signer": bad_signer},
        ]);
        assert_eq!(post(&server, &batch(device, events)).await.0, 202);
    }
    repnet_testkit::eventually(60, "the engine's verdicts", || async {
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
    assert_eq!(post(&server, &batch(&devices[1], report)).await.0, 202);
    let (status, queue) = admin(&server, reqwest::Method::GET, "/v1/admin/review", None).await;
    assert_eq!(status, 200);
    // The engine's three verdicts are there to review, with their evidence…
    let items = queue["items"].as_array().unwrap();
    let engine: Vec<&Value> = items
        .iter()
        .filter(|item| item["kind"] == "engine")
        .collect();
    assert_eq!(engine.len(), 3, "{queue}");
    let on_malware = engine
        .iter()
        .find(|item| item["object"]["value"] == malware.as_str())
        .unwrap();
    assert_eq!(on_malware["engine_verdict"], "untrusted");
    assert!(
        on_malware["comment"]
            .as_str()
            .unwrap()
            .contains("detected on 5 established installations"),
        "{on_malware}"
    );
    // …and the report.
    let item = items
        .iter()
        .find(|item| item["kind"] == "false_positive")
        .unwrap();
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
    assert_eq!(queue["items"].as_array().unwrap().len(), 3);
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
    // Confirming an engine verdict closes its item and keeps the verdict.
    let on_popular = engine
        .iter()
        .find(|item| item["object"]["value"] == popular.as_str())
        .unwrap();
    let (status, queue) = admin(
        &server,
        reqwest::Method::POST,
        &format!("/v1/admin/review/{}", on_popular["id"].as_str().unwrap()),
        Some(json!({"verdict": "dismiss"})),
    )
    .await;
    assert_eq!((status, queue["items"].as_array().unwrap().len()), (200, 2));
    assert_eq!(reputation(&server, &popular).await["verdict"], "trusted");
    server.stop().await;
}

#[tokio::test]
async fn one_installation_cannot_flood_the_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        install_batches_per_minute: 3,
        ..quick_enrolment()
    };
    let server = TestServer::start(dir.path(), config).await;
    let (flood, other) = (enrol(&server).await, enrol(&server).await);
    let sighting = json!([{"type": "sighting", "file": "ab".repeat(32)}]);
    for _ in 0..3 {
        assert_eq!(post(&server, &batch(&flood, sighting.clone())).await.0, 202);
    }
    let (status, body) = post(&server, &batch(&flood, sighting.clone())).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Another installation is not held back.
    assert_eq!(post(&server, &batch(&other, sighting)).await.0, 202);
    server.stop().await;
}

/// The adversarial review's two attacks, replayed against the defaults (but a lighter proof
/// of work, to keep the test quick): invented installation ids are refused, one address
/// enrols ten installations an hour, and a hundred fresh installations claiming a trusted
/// signer — or five detecting a file — do not move the engine: installations count only
/// once established.
#[tokio::test]
async fn invented_devices_and_signer_claims_flip_no_verdict() {
    let mut config = ServerConfig {
        installation_difficulty: 8,
        ..ServerConfig::default()
    };
    config.engine.interval_seconds = 1;
    let engine_idle = |server: &TestServer| {
        let server = server.base.clone();
        async move {
            let client = repnet_client::Client::new(&server)
                .unwrap()
                .with_admin_token(repnet_testkit::TOKEN);
            client.engine().await.unwrap().pending == 0
        }
    };
    let legit = repnet_model::Sha256::digest(b"legit-software-v1.2.3").to_string();
    let malware = repnet_model::Sha256::digest(b"brand-new-malware-sample").to_string();
    let vendor = repnet_model::Sha256::digest(b"Trusted Vendor Code Signing CA").to_string();

    // Attack 1: five statistics batches with invented install ids.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), config.clone()).await;
    for device in 1..=5 {
        let events = json!([{"type": "detection", "file": legit}]);
        let (status, body) = post(
            &server,
            &batch(&format!("sybil-device-{device}-abcdef"), events),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_installation"))
        );
    }
    // Enrolling for real: ten installations an hour from one address.
    let enrolled = enrol_many(&server, 10).await;
    let refused = repnet_client::Client::new(&server.base)
        .unwrap()
        .enrol_installation()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, repnet_client::ClientError::Api { status: 429, code, .. } if code == "rate_limited"),
        "{refused}"
    );
    for installation in &enrolled {
        let events = json!([{"type": "detection", "file": legit}]);
        assert_eq!(post(&server, &batch(installation, events)).await.0, 202);
    }
    repnet_testkit::eventually(60, "the engine's tick", || engine_idle(&server)).await;
    let answer = reputation(&server, &legit).await;
    assert_eq!(
        (answer["verdict"].as_str(), answer["prevalence"].as_u64()),
        (Some("unknown"), Some(10))
    );
    server.stop().await;

    // Attack 2: a hundred installations (from as many addresses) claim a trusted signer.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        ServerConfig {
            enrolments_per_address_per_hour: 1000,
            ..config
        },
    )
    .await;
    let (status, _) = admin(
        &server,
        reqwest::Method::PUT,
        "/v1/admin/verdicts",
        Some(json!({"object": {"certificate": vendor}, "verdict": "trusted"})),
    )
    .await;
    assert_eq!(status, 200);
    for installation in enrol_many(&server, 100).await {
        let events = json!([{"type": "sighting", "file": malware, "signer": vendor}]);
        assert_eq!(post(&server, &batch(&installation, events)).await.0, 202);
    }
    repnet_testkit::eventually(60, "the engine's tick", || engine_idle(&server)).await;
    let answer = reputation(&server, &malware).await;
    assert_eq!(answer["verdict"], "unknown", "{answer}");
    // Distinct devices are counted by HyperLogLog: exact to 64, within about 1 % beyond.
    assert!(
        (97..=103).contains(&answer["prevalence"].as_u64().unwrap()),
        "{answer}"
    );
    let (_, queue) = admin(&server, reqwest::Method::GET, "/v1/admin/review", None).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 0, "{queue}");
    server.stop().await;
}

/// The engine sets at most `max_verdicts_per_hour`; the rest wait, and say so.
#[tokio::test]
async fn the_engine_sets_at_most_its_hourly_budget_of_verdicts() {
    let mut config = quick_enrolment();
    config.engine.interval_seconds = 1;
    config.engine.detecting_devices = 2;
    config.engine.max_verdicts_per_hour = 2;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), config).await;
    let files: Vec<String> = (1..=3u8).map(|n| format!("{n:02x}").repeat(32)).collect();
    for installation in enrol_many(&server, 2).await {
        let events: Vec<Value> = files
            .iter()
            .map(|file| json!({"type": "detection", "file": file}))
            .collect();
        assert_eq!(
            post(&server, &batch(&installation, json!(events))).await.0,
            202
        );
    }
    repnet_testkit::eventually(60, "the engine's budget", || async {
        let (_, engine) = admin(&server, reqwest::Method::GET, "/v1/admin/engine", None).await;
        engine["verdicts_this_hour"] == 2 && engine["deferred"] == true
    })
    .await;
    let mut untrusted = 0;
    for file in &files {
        if reputation(&server, file).await["verdict"] == "untrusted" {
            untrusted += 1;
        }
    }
    assert_eq!(untrusted, 2);
    let (_, engine) = admin(&server, reqwest::Method::GET, "/v1/admin/engine", None).await;
    assert_eq!(engine["pending"], 1, "{engine}");
    server.stop().await;
}
