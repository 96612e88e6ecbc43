//! End-to-end tests of the private network: two real servers on loopback, licence keys,
//! pulling the global knowledge base, offline bundles and TLS.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::Path;

use repnet_client::{Client, ClientError};
use repnet_model::{ObjectKind, Sha256, Timestamp};
use repnet_protocol::{AddLicenceKey, ImportParams, LookupItem, SetLocalVerdict};
use repnet_server::config::Role;
use repnet_server::{ServerConfig, UpstreamConfig};
use repnet_store::{Licence, Store, StoreOptions};
use repnet_testkit::{Server as TestServer, eventually};

const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

fn private_config() -> ServerConfig {
    ServerConfig {
        role: Role::Private,
        ..ServerConfig::default()
    }
}

async fn add_key(server: &TestServer, key: &str) -> String {
    server
        .admin
        .add_licence_key(&AddLicenceKey {
            key: key.to_owned(),
            label: Some("Example Corp".to_owned()),
            expires: None,
        })
        .await
        .unwrap()
        .id
}

/// The code of a refusal, or "ok".
async fn lookup_code(client: &Client) -> String {
    match client.get(ObjectKind::File, EICAR_SHA256, false).await {
        Ok(reputation) => {
            assert_eq!(reputation.verdict, repnet_protocol::Verdict::Untrusted);
            "ok".to_owned()
        }
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => {
            assert_eq!(status, 401, "{code}: {message}");
            assert!(message.contains("provider"), "{message}");
            code
        }
        Err(other) => panic!("{other}"),
    }
}

/// A raw request, for what the client library does not expose: status, headers, body.
async fn raw(url: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn licence_keys_gate_every_exchange_on_a_private_server() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A key that expired before the server started.
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let key_sha256 = Sha256::digest(b"EXPIRED-KEY-2020");
        store
            .put_licences(vec![Licence {
                id: repnet_protocol::licence_key_id(&key_sha256),
                key_sha256,
                label: None,
                created: Timestamp(1_500_000_000),
                expires: Some(Timestamp(1_600_000_000)),
                revoked: None,
                last_used: None,
            }])
            .await
            .unwrap();
    }
    let server = TestServer::start(dir.path(), private_config()).await;
    let old_key = "ORG-2026-AAAA-BBBB";
    let old_id = add_key(&server, old_key).await;
    assert_eq!(old_id.len(), 16);

    assert_eq!(lookup_code(&server.with_key(old_key)).await, "ok");
    assert_eq!(
        lookup_code(&Client::new(&server.base).unwrap()).await,
        "licence_not_registered"
    );
    assert_eq!(
        lookup_code(&server.with_key("NOT-REGISTERED-1")).await,
        "licence_not_registered"
    );
    assert_eq!(
        lookup_code(&server.with_key("EXPIRED-KEY-2020")).await,
        "licence_expired"
    );

    // Nothing but the error: no data, and the challenge header.
    let response = raw(
        &format!("{}/v1/files/{EICAR_SHA256}", server.base),
        Some("NOT-REGISTERED-1"),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["error"]
    );
    for path in [
        "/v1/changes?after=0",
        "/v1/snapshot",
        "/v1/urls?url=http://example.com/",
    ] {
        assert_eq!(
            raw(&format!("{}{path}", server.base), None).await.status(),
            401,
            "{path}"
        );
    }
    assert_eq!(
        raw(
            &format!("{}/v1/changes?after=0", server.base),
            Some(old_key)
        )
        .await
        .status(),
        200
    );
    // Operations stay open for load balancers and monitoring.
    assert_eq!(
        raw(&format!("{}/healthz", server.base), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        raw(&format!("{}/metrics", server.base), None)
            .await
            .status(),
        200
    );

    let metrics = raw(&format!("{}/metrics", server.base), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"repnet_licence_refusals_total{code="licence_expired"} 1"#),
        "{metrics}"
    );
    // A licence change: the old key is revoked, the new one not registered yet.
    let revoked = server.admin.revoke_licence_key(&old_id).await.unwrap();
    assert!(revoked.revoked.is_some());
    let new_key = "ORG-2027-CCCC-DDDD";
    assert_eq!(
        lookup_code(&server.with_key(old_key)).await,
        "licence_revoked"
    );
    assert_eq!(
        lookup_code(&server.with_key(new_key)).await,
        "licence_not_registered"
    );
    add_key(&server, new_key).await;
    assert_eq!(lookup_code(&server.with_key(new_key)).await, "ok");
    assert_eq!(
        lookup_code(&server.with_key(old_key)).await,
        "licence_revoked"
    );

    // The listing shows ids, labels and dates; never a key.
    let list = server.admin.licence_keys().await.unwrap();
    assert_eq!(list.keys.len(), 3);
    let listed = serde_json::to_string(&list).unwrap();
    assert!(
        !listed.contains(old_key) && !listed.contains(new_key),
        "{listed}"
    );
    assert!(
        list.keys
            .iter()
            .any(|key| key.id == old_id && key.last_used.is_some())
    );

    // Mistakes are refused with the field named, and change nothing.
    for (body, code) in [
        (
            AddLicenceKey {
                key: new_key.to_owned(),
                label: None,
                expires: None,
            },
            "key_exists",
        ),
        (
            AddLicenceKey {
                key: "short".to_owned(),
                label: None,
                expires: None,
            },
            "invalid_key",
        ),
        (
            AddLicenceKey {
                key: "ORG-2028-EEEE".to_owned(),
                label: None,
                expires: Some("tomorrow".to_owned()),
            },
            "invalid_expires",
        ),
        (
            AddLicenceKey {
                key: "ORG-2028-EEEE".to_owned(),
                label: None,
                expires: Some("2001-01-01".to_owned()),
            },
            "invalid_expires",
        ),
    ] {
        match server.admin.add_licence_key(&body).await {
            Err(ClientError::Api { code: got, .. }) => assert_eq!(got, code),
            other => panic!("{other:?}"),
        }
    }
    match server.admin.revoke_licence_key("0000000000000000").await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "key_not_found"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.admin.licence_keys().await.unwrap().keys.len(), 3);
    server.stop().await;

    // Keys and revocations survive a restart.
    let server = TestServer::start(dir.path(), private_config()).await;
    assert_eq!(lookup_code(&server.with_key(new_key)).await, "ok");
    assert_eq!(
        lookup_code(&server.with_key(old_key)).await,
        "licence_revoked"
    );
    server.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        require_key: true,
        key_requests_per_second: 1,
        key_burst: 2,
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    add_key(&server, "ORG-RATE-LIMITED").await;
    let url = format!("{}/v1/files/{EICAR_SHA256}", server.base);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = raw(&url, Some("ORG-RATE-LIMITED")).await;
        if response.status() == 429 {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    // A global server with require_key answers nobody without a key.
    assert_eq!(raw(&url, None).await.status(), 401);
    server.stop().await;
}

/// What a server answers for `targets`: (verdict, threat) per target.
async fn answers(
    client: &Client,
    targets: &[(ObjectKind, String)],
) -> Vec<(repnet_protocol::Verdict, Option<String>)> {
    let items: Vec<LookupItem<'_>> = targets
        .iter()
        .map(|(kind, value)| LookupItem::new(*kind, value))
        .collect();
    client
        .lookup(&items, false)
        .await
        .unwrap()
        .into_iter()
        .map(|reputation| (reputation.verdict, reputation.threat))
        .collect()
}

fn hash_list(count: u64, seed: u64) -> Vec<u8> {
    (0..count)
        .map(|i| {
            format!(
                "{}\n",
                Sha256::digest(&(seed * 1_000_000 + i).to_le_bytes())
            )
        })
        .collect::<String>()
        .into_bytes()
}

async fn import(server: &TestServer, source: &str, body: Vec<u8>, incremental: bool) {
    let params = ImportParams {
        format: Some("hashlist".to_owned()),
        source: Some(source.to_owned()),
        threat: Some(format!("Test.{source}")),
        incremental: Some(incremental),
        ..ImportParams::default()
    };
    server
        .admin
        .import_feed(&params, repnet_client::ImportBody::Bytes(body))
        .await
        .unwrap();
}

async fn caught_up(global: &TestServer, private: &TestServer) -> bool {
    let global = global.admin.server_status().await.unwrap();
    let private = private.admin.server_status().await.unwrap();
    let upstream = private.upstream.unwrap();
    upstream.upstream_log_id.as_deref() == Some(global.log_id.as_str())
        && upstream.local_sequence == Some(global.sequence)
}

#[tokio::test]
async fn a_private_server_converges_to_the_global_one_and_keeps_its_own_verdicts() {
    let (global_dir, private_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A short log, so that a big change sends the private server to a snapshot.
    let global = TestServer::start(
        global_dir.path(),
        ServerConfig {
            change_log_max: 50,
            ..ServerConfig::default()
        },
    )
    .await;
    add_key(&global, "PRIVATE-ORG-UPSTREAM").await;
    import(&global, "feed-a", hash_list(20, 1), false).await;
    fn verdict<'a>(kind: ObjectKind, value: &'a str, verdict: &str) -> SetLocalVerdict<'a> {
        SetLocalVerdict {
            object: LookupItem::new(kind, value),
            verdict: verdict.to_owned(),
            threat: Some("Global.Admin".to_owned()),
            categories: vec![],
            comment: None,
            expires: None,
        }
    }
    global
        .admin
        .set_local_verdict(&verdict(
            ObjectKind::Url,
            "http://phish.example/login",
            "untrusted",
        ))
        .await
        .unwrap();
    global
        .admin
        .set_local_verdict(&verdict(ObjectKind::Domain, "cdn.example", "trusted"))
        .await
        .unwrap();

    let mut upstream = UpstreamConfig::new(&global.base);
    upstream.key = Some("PRIVATE-ORG-UPSTREAM".to_owned());
    upstream.interval_seconds = 1;
    upstream.page_size = 7;
    let config = ServerConfig {
        upstream: Some(upstream),
        ..private_config()
    };
    let private = TestServer::start(private_dir.path(), config.clone()).await;
    add_key(&private, "DEVICE-FLEET-KEY").await;
    let device = private.with_key("DEVICE-FLEET-KEY");
    let anyone = Client::new(&global.base).unwrap();

    let hashes: Vec<String> = String::from_utf8(hash_list(20, 1))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut targets: Vec<(ObjectKind, String)> = hashes
        .iter()
        .take(5)
        .map(|h| (ObjectKind::File, h.clone()))
        .collect();
    targets.extend([
        (ObjectKind::Url, "http://phish.example/login".to_owned()),
        (ObjectKind::Url, "http://www.cdn.example/lib.js".to_owned()),
        (ObjectKind::Domain, "cdn.example".to_owned()),
        (ObjectKind::File, EICAR_SHA256.to_owned()),
        (ObjectKind::File, "00".repeat(32)),
    ]);
    eventually(30, "the first pull", || caught_up(&global, &private)).await;
    let metrics = private
        .http
        .get(private.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("repnet_upstream_up 1"), "{metrics}");
    // The expressions' text came with the pull: the private server lists what it blocks.
    let exported = private
        .http
        .get(private.url("/v1/export?format=stix&source=upstream"))
        .bearer_auth("DEVICE-FLEET-KEY")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        exported.contains("http://phish.example/login"),
        "{exported}"
    );
    assert_eq!(
        answers(&device, &targets).await,
        answers(&anyone, &targets).await
    );

    // Changes and deletions upstream reach the private server.
    global
        .admin
        .remove_local_verdict(ObjectKind::Url, "http://phish.example/login")
        .await
        .unwrap();
    global
        .admin
        .set_local_verdict(&verdict(ObjectKind::File, &hashes[0], "trusted"))
        .await
        .unwrap();
    eventually(30, "the changes", || caught_up(&global, &private)).await;
    assert_eq!(
        answers(&device, &targets).await,
        answers(&anyone, &targets).await
    );
    assert_eq!(
        answers(&device, &targets[5..6]).await[0].0,
        repnet_protocol::Verdict::Unknown
    );

    // A local verdict on the private server wins over upstream, and survives further pulls.
    private
        .admin
        .set_local_verdict(&verdict(ObjectKind::File, &hashes[1], "trusted"))
        .await
        .unwrap();
    // More changes than the global log keeps: the private server falls back to a snapshot,
    // which also retracts what the feed no longer lists.
    import(&global, "feed-a", hash_list(120, 2), false).await;
    // The cursor is written with the snapshot, the counter just after: wait for both.
    eventually(30, "the snapshot", || async {
        caught_up(&global, &private).await
            && private
                .admin
                .server_status()
                .await
                .unwrap()
                .upstream
                .is_some_and(|upstream| upstream.snapshots_applied >= 2)
    })
    .await;
    let status = private
        .admin
        .server_status()
        .await
        .unwrap()
        .upstream
        .unwrap();
    assert!(status.snapshots_applied >= 2, "{status:?}");
    assert_eq!(status.lag, Some(0));
    assert!(
        status.reachable && status.last_error.is_none(),
        "{status:?}"
    );
    let mine = answers(&device, &targets[1..2]).await;
    assert_eq!(mine[0].0, repnet_protocol::Verdict::Trusted);
    let mut without_mine = targets.clone();
    without_mine.remove(1);
    assert_eq!(
        answers(&device, &without_mine).await,
        answers(&anyone, &without_mine).await
    );
    let new_hash = String::from_utf8(hash_list(1, 2))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        answers(&device, &[(ObjectKind::File, new_hash)]).await[0].0,
        repnet_protocol::Verdict::Untrusted
    );

    // Stopped, it misses changes; restarted, it resumes from its cursor.
    private.stop().await;
    global
        .admin
        .set_local_verdict(&verdict(ObjectKind::Domain, "late.example", "untrusted"))
        .await
        .unwrap();
    let private = TestServer::start(private_dir.path(), config).await;
    eventually(30, "the resumed pull", || caught_up(&global, &private)).await;
    let late = [(ObjectKind::Domain, "late.example".to_owned())];
    assert_eq!(
        answers(&private.with_key("DEVICE-FLEET-KEY"), &late).await,
        answers(&anyone, &late).await
    );
    assert_eq!(
        answers(&private.with_key("DEVICE-FLEET-KEY"), &targets[1..2]).await[0].0,
        repnet_protocol::Verdict::Trusted
    );
    private.stop().await;
    global.stop().await;
}

#[tokio::test]
async fn a_private_server_with_a_revoked_upstream_key_reports_it_and_keeps_its_data() {
    let (global_dir, private_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let global = TestServer::start(global_dir.path(), ServerConfig::default()).await;
    let id = add_key(&global, "PRIVATE-ORG-UPSTREAM").await;
    let mut upstream = UpstreamConfig::new(&global.base);
    upstream.key = Some("PRIVATE-ORG-UPSTREAM".to_owned());
    upstream.interval_seconds = 1;
    let private = TestServer::start(
        private_dir.path(),
        ServerConfig {
            upstream: Some(upstream),
            ..private_config()
        },
    )
    .await;
    eventually(30, "the first pull", || caught_up(&global, &private)).await;
    global.admin.revoke_licence_key(&id).await.unwrap();
    global
        .admin
        .set_local_verdict(&SetLocalVerdict {
            object: LookupItem::new(ObjectKind::Domain, "after-revocation.example"),
            verdict: "untrusted".to_owned(),
            threat: None,
            categories: vec![],
            comment: None,
            expires: None,
        })
        .await
        .unwrap();
    eventually(30, "the refusal", || async {
        let status = private
            .admin
            .server_status()
            .await
            .unwrap()
            .upstream
            .unwrap();
        status
            .last_error
            .is_some_and(|error| error.contains("licence_revoked") && error.contains("provider"))
    })
    .await;
    // Refused, the upstream tells nothing: not even how far it has moved on.
    let status = private
        .admin
        .server_status()
        .await
        .unwrap()
        .upstream
        .unwrap();
    // Reachable (it answered), and refusing: the error says so.
    assert!(status.reachable, "{status:?}");
    add_key(&private, "DEVICE-FLEET-KEY").await;
    let eicar = [(ObjectKind::File, EICAR_SHA256.to_owned())];
    assert_eq!(
        answers(&private.with_key("DEVICE-FLEET-KEY"), &eicar).await[0].0,
        repnet_protocol::Verdict::Untrusted
    );
    private.stop().await;
    global.stop().await;
}

async fn download(global: &TestServer, key: &str, path: &str) -> Vec<u8> {
    let client = Client::new(&global.base).unwrap().with_licence_key(key);
    client
        .replication_stream(path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

fn bundle(
    dir: &Path,
    name: &str,
    key: &ed25519_dalek::SigningKey,
    stream: &[u8],
) -> std::path::PathBuf {
    let path = dir.join(name);
    repnet_server::bundle::write(&path, key, |out| {
        out.write_all(stream)
            .map_err(|source| repnet_server::bundle::BundleError::Io {
                action: "write",
                path: name.to_owned(),
                source,
            })
    })
    .unwrap();
    path
}

#[tokio::test]
async fn signed_bundles_carry_the_knowledge_base_across_an_air_gap() {
    use std::io::Write as _;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let keys = dirs[2].path();
    let (secret, public) = repnet_server::bundle::keygen(&keys.join("provider")).unwrap();
    let (other_secret, _) = repnet_server::bundle::keygen(&keys.join("someone-else")).unwrap();
    assert!(
        repnet_server::bundle::keygen(&keys.join("provider")).is_err(),
        "keys are never overwritten"
    );
    let signing = repnet_server::bundle::read_secret_key(&secret).unwrap();
    let other = repnet_server::bundle::read_secret_key(&other_secret).unwrap();

    let global = TestServer::start(dirs[0].path(), ServerConfig::default()).await;
    add_key(&global, "EXPORTER-KEY-0001").await;
    import(&global, "feed-a", hash_list(30, 3), false).await;
    let private = TestServer::start(
        dirs[1].path(),
        ServerConfig {
            bundle_public_key: Some(public.clone()),
            ..private_config()
        },
    )
    .await;
    add_key(&private, "DEVICE-FLEET-KEY").await;
    let device = private.with_key("DEVICE-FLEET-KEY");
    let anyone = Client::new(&global.base).unwrap();

    let snapshot = bundle(
        keys,
        "snapshot.bundle",
        &signing,
        &download(&global, "EXPORTER-KEY-0001", "/v1/snapshot").await,
    );
    let applied = private.admin.import_bundle(&snapshot, false).await.unwrap();
    assert_eq!(applied.kind, "snapshot");
    let targets: Vec<(ObjectKind, String)> = String::from_utf8(hash_list(30, 3))
        .unwrap()
        .lines()
        .take(4)
        .map(|h| (ObjectKind::File, h.to_owned()))
        .collect();
    assert_eq!(
        answers(&device, &targets).await,
        answers(&anyone, &targets).await
    );

    // The next changes, exported after where the private server is.
    let at = private.admin.server_status().await.unwrap().upstream;
    assert!(
        at.is_none(),
        "a server without upstream has no upstream status"
    );
    let after = applied.to;
    global
        .admin
        .set_local_verdict(&SetLocalVerdict {
            object: LookupItem::new(ObjectKind::File, &targets[0].1),
            verdict: "trusted".to_owned(),
            threat: None,
            categories: vec![],
            comment: None,
            expires: None,
        })
        .await
        .unwrap();
    let changes = bundle(
        keys,
        "changes.bundle",
        &signing,
        &download(
            &global,
            "EXPORTER-KEY-0001",
            &format!("/v1/changes?after={after}"),
        )
        .await,
    );

    // Tampered: one byte of the payload changed.
    let mut bytes = std::fs::read(&changes).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = keys.join("tampered.bundle");
    std::fs::File::create(&tampered)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let refusal = |result: Result<repnet_protocol::BundleApplied, ClientError>| match result {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("{other:?}"),
    };
    let (status, code, _) = refusal(private.admin.import_bundle(&tampered, false).await);
    assert_eq!((status, code.as_str()), (422, "bundle_signature"));
    // Fifty bytes: not a bundle, said without naming where the server spooled it.
    let short = keys.join("short.bundle");
    std::fs::write(&short, [7u8; 50]).unwrap();
    let (status, code, message) = refusal(private.admin.import_bundle(&short, false).await);
    assert_eq!(
        (status, code.as_str()),
        (422, "invalid_bundle"),
        "{message}"
    );
    assert!(
        !message.contains('/') && !message.contains(repnet_store::TEMP_PREFIX),
        "{message}"
    );
    // Signed by a key this server does not trust.
    let foreign = bundle(
        keys,
        "foreign.bundle",
        &other,
        &std::fs::read(&changes).unwrap()[105..],
    );
    let (status, code, message) = refusal(private.admin.import_bundle(&foreign, false).await);
    assert_eq!(
        (status, code.as_str()),
        (422, "bundle_signature"),
        "{message}"
    );
    assert_eq!(
        answers(&device, &targets[..1]).await[0].0,
        repnet_protocol::Verdict::Untrusted
    );

    let applied = private.admin.import_bundle(&changes, false).await.unwrap();
    assert_eq!((applied.kind.as_str(), applied.after), ("changes", after));
    assert_eq!(
        answers(&device, &targets).await,
        answers(&anyone, &targets).await
    );
    // The same changes again do not continue the private server's sequence.
    let (status, code, message) = refusal(private.admin.import_bundle(&changes, false).await);
    assert_eq!((status, code.as_str()), (409, "bundle_out_of_order"));
    assert!(
        message.contains(&format!("export with --after {}", applied.to)),
        "{message}"
    );

    // The old snapshot replayed would roll the knowledge base back: refused, unless forced.
    let (status, code, message) = refusal(private.admin.import_bundle(&snapshot, false).await);
    assert_eq!((status, code.as_str()), (409, "bundle_older"), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(
        answers(&device, &targets).await,
        answers(&anyone, &targets).await,
        "nothing was rolled back"
    );
    let forced = private.admin.import_bundle(&snapshot, true).await.unwrap();
    assert_eq!(forced.kind, "snapshot");

    // A server without a bundle key takes none.
    let (status, code, _) = refusal(global.admin.import_bundle(&changes, false).await);
    assert_eq!((status, code.as_str()), (403, "bundles_disabled"));
    private.stop().await;
    global.stop().await;
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "repnet test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let (cert, key, ca_file) = (
        files.path().join("server.pem"),
        files.path().join("server.key"),
        files.path().join("ca.pem"),
    );
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let config = ServerConfig {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(
        dir.path(),
        config,
        repnet_testkit::Options {
            ca: Some(ca_file.clone()),
            ..Default::default()
        },
    )
    .await;
    assert!(server.base.starts_with("https://"));
    let trusting = Client::with_ca(&server.base, Some(&ca_file)).unwrap();
    let reputation = trusting
        .get(ObjectKind::File, EICAR_SHA256, false)
        .await
        .unwrap();
    assert_eq!(reputation.verdict, repnet_protocol::Verdict::Untrusted);
    assert!(server.admin.server_status().await.is_ok());
    // Without the CA, the certificate is not trusted.
    let error = Client::new(&server.base)
        .unwrap()
        .get(ObjectKind::File, EICAR_SHA256, false)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("pass --ca FILE"), "{error}");
    // The wrong scheme for the port says which one to use.
    let plain = server.base.replace("https://", "http://");
    let error = Client::new(&plain)
        .unwrap()
        .get(ObjectKind::File, EICAR_SHA256, false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("use https://"), "{error}");
    let other_dir = tempfile::tempdir().unwrap();
    let cleartext = TestServer::start(other_dir.path(), ServerConfig::default()).await;
    let error = Client::new(&cleartext.base.replace("http://", "https://"))
        .unwrap()
        .get(ObjectKind::File, EICAR_SHA256, false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("use http://"), "{error}");
    cleartext.stop().await;
    // A mismatched pair is refused at startup, naming the files.
    let config = ServerConfig {
        tls_cert: Some(cert),
        tls_key: Some(ca_file.clone()),
        ..ServerConfig::default()
    };
    let store = Store::open(
        tempfile::tempdir().unwrap().path(),
        &StoreOptions::default(),
    )
    .unwrap();
    let error = repnet_server::Server::new(store, &config, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("tls_key"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn runtime_settings_change_at_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let settings = server.admin.settings().await.unwrap();
    assert_eq!(settings["require_key"], false);
    let url = format!("{}/v1/files/{EICAR_SHA256}", server.base);
    assert_eq!(raw(&url, None).await.status(), 200);
    let changed = server
        .admin
        .patch_settings(&serde_json::json!({"require_key": true, "engine_detecting_devices": 9}))
        .await
        .unwrap();
    assert_eq!(
        (
            changed["require_key"].as_bool(),
            changed["key_burst"].as_u64()
        ),
        (Some(true), Some(0))
    );
    assert_eq!(raw(&url, None).await.status(), 401);
    for bad in [
        serde_json::json!({"require_key": "yes"}),
        serde_json::json!({"listen": "0.0.0.0:1"}),
        serde_json::json!({"engine_trusted_devices": 0}),
    ] {
        match server.admin.patch_settings(&bad).await {
            Err(ClientError::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (400, "invalid_setting"), "{bad}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    server.stop().await;
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let url = format!("{}/v1/files/{EICAR_SHA256}", server.base);
    assert_eq!(raw(&url, None).await.status(), 401);
    let engine: serde_json::Value =
        serde_json::to_value(server.admin.engine().await.unwrap()).unwrap();
    assert_eq!(engine["detecting_devices"], 9);
    server.stop().await;
}

/// What the global network's engine decided reaches a private server marked as the engine's
/// (`upstream-engine`): below the private server's own feeds, which it never overrides, and
/// replaced when the global server decides otherwise.
#[tokio::test]
async fn the_upstream_engine_ranks_below_the_private_servers_feeds() {
    let (global_dir, private_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = ServerConfig {
        installation_difficulty: 8,
        enrolments_per_address_per_hour: 1000,
        ..ServerConfig::default()
    };
    config.engine.established_after_hours = 0;
    config.engine.interval_seconds = 1;
    config.engine.detecting_devices = 2;
    let global = TestServer::start(global_dir.path(), config).await;
    add_key(&global, "PRIVATE-ORG-UPSTREAM").await;
    let (ours, theirs) = ("a1".repeat(32), "b2".repeat(32));
    let anyone = Client::new(&global.base).unwrap();
    for _ in 0..2 {
        let installation = anyone.enrol_installation().await.unwrap().installation;
        let batch: repnet_protocol::StatisticsBatch = serde_json::from_value(serde_json::json!({
            "statement_version": 1,
            "installation": installation,
            "product": "test/1",
            "events": [{"type": "detection", "file": ours}, {"type": "detection", "file": theirs}],
        }))
        .unwrap();
        anyone.send_statistics(&batch).await.unwrap();
    }
    let source = |client: &Client, file: &str| {
        let (client, file) = (client.clone(), file.to_owned());
        async move {
            let answer = client.get(ObjectKind::File, &file, false).await.unwrap();
            (answer.verdict, answer.source)
        }
    };
    eventually(60, "the global engine's verdicts", || async {
        source(&anyone, &theirs).await.1.as_deref() == Some("engine")
            && source(&anyone, &ours).await.1.as_deref() == Some("engine")
    })
    .await;

    let mut upstream = UpstreamConfig::new(&global.base);
    upstream.key = Some("PRIVATE-ORG-UPSTREAM".to_owned());
    upstream.interval_seconds = 1;
    let private = TestServer::start(
        private_dir.path(),
        ServerConfig {
            upstream: Some(upstream),
            ..private_config()
        },
    )
    .await;
    add_key(&private, "DEVICE-FLEET-KEY").await;
    let device = private.with_key("DEVICE-FLEET-KEY");
    // The organisation's own feed says its file is fine.
    let params = ImportParams {
        format: Some("hashlist".to_owned()),
        source: Some("corp".to_owned()),
        verdict: Some("trusted".to_owned()),
        confidence: Some(50),
        ..ImportParams::default()
    };
    private
        .admin
        .import_feed(
            &params,
            repnet_client::ImportBody::Bytes(format!("{ours}\n").into_bytes()),
        )
        .await
        .unwrap();
    eventually(30, "the first pull", || caught_up(&global, &private)).await;
    assert_eq!(
        source(&device, &ours).await,
        (
            repnet_protocol::Verdict::Trusted,
            Some("feed:corp".to_owned())
        )
    );
    assert_eq!(
        source(&device, &theirs).await,
        (
            repnet_protocol::Verdict::Untrusted,
            Some("upstream-engine".to_owned())
        )
    );

    // The global administrator overrules the engine: the private server follows.
    global
        .admin
        .set_local_verdict(&SetLocalVerdict {
            object: LookupItem::new(ObjectKind::File, &theirs),
            verdict: "trusted".to_owned(),
            threat: None,
            categories: vec![],
            comment: None,
            expires: None,
        })
        .await
        .unwrap();
    eventually(30, "the pull of the local verdict", || async {
        source(&device, &theirs).await
            == (
                repnet_protocol::Verdict::Trusted,
                Some("upstream".to_owned()),
            )
    })
    .await;
    private.stop().await;
    global.stop().await;
}
