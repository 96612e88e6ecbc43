//! The proxy in front of a real server, both on loopback: cache headers, coalescing and
//! batching, invalidation from the change log, an upstream that goes away and comes back,
//! admission by network, statistics forwarding, and settings kept across restarts.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use repnet_client::Client;
use repnet_proxy::{Proxy, ProxyConfig, Settings};
use repnet_server::ServerConfig;
use repnet_testkit::{
    Endpoint, Options, Proxy as TestProxy, Server as TestServer, Steps, TOKEN, eventually,
};
use serde_json::{Value, json};

#[path = "../../repnet-http/tests/support/crowd.rs"]
mod crowd;

const UPSTREAM_KEY: &str = "ORG-PROXY-KEY-0001";
const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

/// The upstream server, on `address` (port 0 for any), with a licence key for the proxy.
async fn upstream(dir: &Path, address: SocketAddr, config: ServerConfig) -> TestServer {
    let running = TestServer::start_with(
        dir,
        config,
        Options {
            address,
            ..Options::default()
        },
    )
    .await;
    let (status, _) = call(
        &running,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(json!({"key": UPSTREAM_KEY})),
        Some(TOKEN),
    )
    .await;
    assert!(status == 201 || status == 409, "{status}");
    running
}

async fn proxy(data: &Path, upstream: &str, settings: Settings) -> TestProxy {
    proxy_with(data, upstream, settings, |_| {}).await
}

/// A proxy whose configuration `configure` changes first.
async fn proxy_with(
    data: &Path,
    upstream: &str,
    settings: Settings,
    configure: impl FnOnce(&mut ProxyConfig),
) -> TestProxy {
    let mut config = ProxyConfig {
        data: data.to_path_buf(),
        upstream_key: Some(UPSTREAM_KEY.to_owned()),
        follow_interval_seconds: 1,
        upstream_timeout_ms: 2_000,
        settings: Settings {
            upstream: upstream.to_owned(),
            ..settings
        },
        ..ProxyConfig::default()
    };
    configure(&mut config);
    TestProxy::start(config).await
}

async fn call(
    at: &impl Endpoint,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let (status, _, body) = call_full(at, method, path, body, token).await;
    (status, body)
}

async fn call_full(
    at: &impl Endpoint,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, String, Value) {
    let mut request = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .request(method, format!("{}{path}", at.base()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-repnet-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    (status, cache, response.json().await.unwrap_or(Value::Null))
}

/// Upstream `POST /v1/lookup` requests answered so far (from the server's metrics).
async fn upstream_lookups(server: &TestServer) -> u64 {
    server.requests_to("/v1/lookup").await
}

/// Upstream requests to `route` answered 200 so far.
async fn upstream_requests(server: &TestServer, route: &str) -> u64 {
    server.requests_to(route).await
}

#[tokio::test]
async fn answers_are_cached_coalesced_batched_and_invalidated() {
    let mut steps = Steps::new("a lookup through the proxy is cached");
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(
        proxy_dir.path(),
        &server.base,
        Settings {
            coalescing_window_ms: 50,
            ..Settings::default()
        },
    )
    .await;
    let path = format!("/v1/files/{EICAR_SHA256}");
    let (status, cache, first) = call_full(&proxy, reqwest::Method::GET, &path, None, None).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    let (_, cache, mut again) = call_full(&proxy, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(cache, "hit");
    steps
        .next("A cached answer carries what is left of its lifetime, never the whole of it again.");
    let left = again["ttl"].as_u64().unwrap();
    assert!(left < first["ttl"].as_u64().unwrap(), "{again}");
    again["ttl"] = first["ttl"].clone();
    assert_eq!(first, again);
    let response = reqwest::get(format!("{}{path}", proxy.base)).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let max_age: u64 = header("cache-control")
        .trim_start_matches("private, max-age=")
        .parse()
        .unwrap();
    let age: u64 = header("age").parse().unwrap();
    assert!(max_age <= left && age >= 1, "max-age {max_age}, age {age}");
    assert_eq!(max_age + age, first["ttl"].as_u64().unwrap());
    let (_, direct) = call(&server, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(
        first, direct,
        "a device cannot tell the proxy from the server"
    );
    steps.next("Bad input is refused by the proxy itself, as the server would.");
    let (status, body) = call(&proxy, reqwest::Method::GET, "/v1/files/xyz", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_hash"))
    );

    steps.next("500 devices asking one new hash at once: one upstream request.");
    let before = upstream_lookups(&server).await;
    let hash = "ab".repeat(32);
    let mut asks = tokio::task::JoinSet::new();
    let client = repnet_client::http_client_builder()
        .pool_max_idle_per_host(600)
        .build()
        .unwrap();
    for _ in 0..500 {
        let (client, url) = (client.clone(), format!("{}/v1/files/{hash}", proxy.base));
        asks.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = asks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(upstream_lookups(&server).await - before, 1);

    steps.next("50 distinct misses within the window: one upstream batch.");
    let before = upstream_lookups(&server).await;
    let mut asks = tokio::task::JoinSet::new();
    for n in 0..50u8 {
        let (client, url) = (
            client.clone(),
            format!("{}/v1/files/{}", proxy.base, format!("{n:02x}").repeat(32)),
        );
        asks.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = asks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(upstream_lookups(&server).await - before, 1);
    steps.next("A JSON batch mixes hits and misses and says so.");
    let (status, cache, body) = call_full(
        &proxy,
        reqwest::Method::POST,
        "/v1/lookup",
        Some(json!({"items": [{"file": EICAR_SHA256}, {"domain": "new.example"}]})),
        None,
    )
    .await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    assert_eq!(body["results"][0]["verdict"], "untrusted");

    steps.next(
        "A verdict fixed upstream reaches devices through the change log, well before the TTL.",
    );
    let (_, cache, _) = call_full(
        &proxy,
        reqwest::Method::GET,
        &format!("/v1/files/{hash}"),
        None,
        None,
    )
    .await;
    assert_eq!(cache, "hit");
    let (status, _) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/admin/verdicts",
        Some(json!({"object": {"file": hash}, "verdict": "untrusted"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    eventually(60, "the invalidation", || async {
        call(
            &proxy,
            reqwest::Method::GET,
            &format!("/v1/files/{hash}"),
            None,
            None,
        )
        .await
        .1["verdict"]
            == "untrusted"
    })
    .await;
    let (_, status_body) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/status",
        None,
        Some(TOKEN),
    )
    .await;
    assert!(
        status_body["hit_rate"].as_f64().unwrap() > 0.0
            && status_body["change_log"]["sequence"].as_u64().is_some(),
        "{status_body}"
    );
    steps.next("The proxy's background workers, by name, with what they did.");
    let workers = status_body["workers"].as_array().unwrap();
    let worker = |name: &str| {
        workers
            .iter()
            .find(|worker| worker["name"] == name)
            .unwrap_or_else(|| panic!("no worker {name}: {status_body}"))
    };
    assert!(worker("change-log-follower")["units"].as_u64().unwrap() > 0);
    assert_eq!(worker("change-log-follower")["errors"], 0, "{status_body}");
    assert!(
        worker("change-log-follower")["progress"]
            .as_str()
            .unwrap()
            .starts_with("at "),
        "{status_body}"
    );
    assert_eq!(worker("licence-last-use")["state"], "idle");
    let metrics = repnet_client::http_client_builder()
        .build()
        .unwrap()
        .get(format!("{}/metrics", proxy.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "repnet_proxy_cache_hits_total",
        "repnet_proxy_cache_misses_total",
        "repnet_proxy_upstream_requests_total",
        "repnet_proxy_upstream_errors_total",
        "repnet_proxy_upstream_request_duration_seconds_bucket",
        "repnet_worker_units_total{worker=\"change-log-follower\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    proxy.stop().await;
    server.stop().await;
}

/// The hex prefix (4 bytes) a private lookup of `domain` sends for its own expression.
fn domain_prefix(domain: &str) -> String {
    let url = repnet_model::CanonicalUrl::parse(format!("http://{domain}/").as_bytes()).unwrap();
    url.host_expressions()[0].sha256().to_string()[..8].to_owned()
}

#[tokio::test]
async fn privacy_searches_are_cached_by_prefix_coalesced_and_invalidated() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(
        proxy_dir.path(),
        &server.base,
        Settings {
            coalescing_window_ms: 50,
            ..Settings::default()
        },
    )
    .await;
    let searches = || upstream_requests(&server, "/v1/hashes:search");
    let (status, _) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/admin/verdicts",
        Some(json!({"object": {"domain": "blocked-prefix.example"}, "verdict": "untrusted"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);

    // A device decides from the proxy's answer as from the server's.
    let device = Client::new(&proxy.base).unwrap();
    let target = || {
        repnet_client::PrivateTarget::domain(
            repnet_model::Domain::new("login.blocked-prefix.example").unwrap(),
        )
        .unwrap()
    };
    let answer = device.lookup_private(&[target()]).await.unwrap();
    assert_eq!(answer[0].verdict, repnet_model::Verdict::Untrusted);
    let before = searches().await;
    let answer = device.lookup_private(&[target()]).await.unwrap();
    assert_eq!(answer[0].verdict, repnet_model::Verdict::Untrusted);
    assert_eq!(searches().await, before, "the second search is the proxy's");
    let search = json!({"url_prefixes": [domain_prefix("blocked-prefix.example")]});
    let (status, cache, body) = call_full(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(search),
        None,
    )
    .await;
    assert_eq!((status, cache.as_str()), (200, "hit"), "{body}");
    let left = body["cache_seconds"].as_u64().unwrap();
    assert!((3000..=3600).contains(&left), "{body}");

    // 300 devices searching one new prefix at once: one upstream search; 50 distinct new
    // prefixes within the window: one upstream search too.
    let client = repnet_client::http_client_builder()
        .pool_max_idle_per_host(400)
        .build()
        .unwrap();
    for prefixes in [
        vec!["0badc0de".to_owned(); 300],
        (0..50u8).map(|n| format!("{n:02x}a1b2c3")).collect(),
    ] {
        let before = searches().await;
        let mut asks = tokio::task::JoinSet::new();
        for prefix in prefixes {
            let (client, url) = (client.clone(), format!("{}/v1/hashes:search", proxy.base));
            asks.spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"prefixes": [prefix]}))
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            });
        }
        while let Some(status) = asks.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        assert_eq!(searches().await - before, 1);
    }

    // A prefix cached as empty learns of what is added under it through the change log,
    // long before its lifetime ends.
    let later = json!({"prefixes": [domain_prefix("later-prefix.example")]});
    let (_, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(later.clone()),
        None,
    )
    .await;
    assert_eq!(body["matches"], json!([]));
    let (_, cache, _) = call_full(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(later.clone()),
        None,
    )
    .await;
    assert_eq!(cache, "hit");
    let (status, _) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/admin/verdicts",
        Some(json!({"object": {"domain": "later-prefix.example"}, "verdict": "untrusted"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    eventually(60, "the prefix's invalidation", || async {
        let (_, body) = call(
            &proxy,
            reqwest::Method::POST,
            "/v1/hashes:search",
            Some(later.clone()),
            None,
        )
        .await;
        body["matches"].as_array().is_some_and(|m| m.len() == 1)
    })
    .await;

    // Bad prefixes are refused by the proxy itself, naming the field.
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(json!({"prefixes": ["0badc0de", "xyz"]})),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("prefixes[1]"),
        "{body}"
    );
    let many: Vec<String> = (0..1001).map(|i| format!("{i:08x}")).collect();
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(json!({"url_prefixes": many})),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("batch_too_large")),
        "{body}"
    );
    proxy.stop().await;
    server.stop().await;
}

/// Review: the proxy applied new settings before saving them, so a failed save left the
/// running proxy on one upstream and its settings file (and its status) naming another.
#[tokio::test]
async fn settings_that_cannot_be_saved_are_not_applied() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = upstream(
        dirs[0].path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let second = upstream(
        dirs[1].path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    // Only the second server blocks this domain.
    let (status, _) = call(
        &second,
        reqwest::Method::PUT,
        "/v1/admin/verdicts",
        Some(json!({"object": {"domain": "second-only.example"}, "verdict": "untrusted"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let proxy = proxy(dirs[2].path(), &first.base, Settings::default()).await;
    // The settings file cannot be written: a folder stands where it goes.
    std::fs::create_dir(dirs[2].path().join("settings.json")).unwrap();
    let (status, body) = call(
        &proxy,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({"upstream": second.base, "cache_max_entries": 10})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed"),
        "{body}"
    );
    let (_, settings) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/settings",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(settings["upstream"], first.base.as_str(), "{settings}");
    // And the proxy still asks the first server.
    let (status, answer) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/domains/second-only.example",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["verdict"], "unknown", "{answer}");
    proxy.stop().await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn an_upstream_that_goes_away_gets_stale_answers_and_503_and_nothing_cached_from_errors() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = ServerConfig {
        ttl_seconds: 1,
        unknown_ttl_seconds: 1,
        ..ServerConfig::default()
    };
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        config.clone(),
    )
    .await;
    let address: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let proxy = proxy(proxy_dir.path(), &server.base, Settings::default()).await;
    let path = format!("/v1/files/{EICAR_SHA256}");
    assert_eq!(
        call_full(&proxy, reqwest::Method::GET, &path, None, None)
            .await
            .1,
        "miss"
    );
    server.stop().await;
    // Past its TTL, with the upstream gone: served, marked stale.
    eventually(60, "a stale answer", || async {
        let (status, cache, body) =
            call_full(&proxy, reqwest::Method::GET, &path, None, None).await;
        status == 200 && cache == "stale" && body["verdict"] == "untrusted"
    })
    .await;
    // The body says it is stale too, and that it must not be kept.
    let (_, body) = call(&proxy, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(
        (body["stale"].as_bool(), body["ttl"].as_u64()),
        (Some(true), Some(0))
    );
    let uncached = format!("/v1/files/{}", "cd".repeat(32));
    let (status, body) = call(&proxy, reqwest::Method::GET, &uncached, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_unavailable"))
    );
    // A batch answers what is cached and marks, item by item, what is not.
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/lookup",
        Some(json!({"items": [{"file": EICAR_SHA256}, {"file": "cd".repeat(32)}]})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["verdict"], "untrusted");
    assert_eq!(body["results"][0]["stale"], true);
    assert_eq!(
        body["results"][1]["error"]["code"], "upstream_unavailable",
        "{body}"
    );
    // The client library reads both.
    let client = Client::new(&proxy.base).unwrap();
    let results = client
        .lookup_items(
            &[
                repnet_protocol::LookupItem::new(repnet_model::ObjectKind::File, EICAR_SHA256),
                repnet_protocol::LookupItem::new(
                    repnet_model::ObjectKind::Domain,
                    "never-asked.example",
                ),
            ],
            false,
        )
        .await
        .unwrap();
    assert!(results[0].reputation().is_some_and(|r| r.stale));
    assert!(results[1].reputation().is_none());
    // Nothing answerable: the whole batch is refused, as a single lookup is.
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/lookup",
        Some(json!({"items": [{"file": "cd".repeat(32)}]})),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("upstream_unavailable"))
    );
    let (_, status_body) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/status",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status_body["upstream"]["healthy"], false, "{status_body}");

    // The upstream comes back on the same address: answers, not the error, are what the
    // devices get (once the breaker lets requests through again).
    let server = upstream(server_dir.path(), address, config).await;
    eventually(60, "recovery", || async {
        let (status, cache, _) =
            call_full(&proxy, reqwest::Method::GET, &uncached, None, None).await;
        status == 200 && cache == "miss"
    })
    .await;
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn admission_statistics_and_settings_that_survive_a_restart() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        // A light proof of work for the enrolment below.
        ServerConfig {
            installation_difficulty: 8,
            ..ServerConfig::default()
        },
    )
    .await;
    let settings = Settings {
        allowed_networks: vec!["10.0.0.0/8".to_owned()],
        ..Settings::default()
    };
    let proxy = proxy(proxy_dir.path(), &server.base, settings).await;
    let path = format!("/v1/files/{EICAR_SHA256}");
    let (status, body) = call(&proxy, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("network_not_allowed"))
    );
    // The admin API is not a device's, and changes the settings at once.
    let (status, settings) = call(
        &proxy,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({"allowed_networks": ["127.0.0.0/8"]})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(
        call(&proxy, reqwest::Method::GET, &path, None, None)
            .await
            .0,
        200
    );
    let (status, body) = call(
        &proxy,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({"cache_max_entries": 0})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_setting"))
    );
    assert_eq!(
        call(
            &proxy,
            reqwest::Method::PATCH,
            "/v1/admin/settings",
            Some(json!({"enabled": false})),
            None
        )
        .await
        .0,
        401
    );

    // Statistics: dropped (202) by default, forwarded when the policy allows.
    let file = "ef".repeat(32);
    // A device enrols through the proxy, which forwards with its own licence key.
    let installation = repnet_client::Client::new(&proxy.base)
        .unwrap()
        .enrol_installation()
        .await
        .unwrap()
        .installation;
    let batch = json!({"statement_version": 1, "installation": installation, "product": "p/1", "events": [{"type": "sighting", "file": file}]});
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/statistics",
        Some(batch.clone()),
        None,
    )
    .await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    assert_eq!(
        call(
            &server,
            reqwest::Method::GET,
            &format!("/v1/files/{file}"),
            None,
            None
        )
        .await
        .1["prevalence"],
        0
    );
    let (status, _) = call(
        &proxy,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({"forward_statistics": true, "cache_max_entries": 5000})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/statistics",
        Some(batch),
        None,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        call(
            &server,
            reqwest::Method::GET,
            &format!("/v1/files/{file}"),
            None,
            None
        )
        .await
        .1["prevalence"],
        1
    );
    let (_, status_body) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/status",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status_body["settings"]["forward_statistics"], true);

    // Disabled: devices are told to go direct.
    call(
        &proxy,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({"enabled": false})),
        Some(TOKEN),
    )
    .await;
    let (status, body) = call(&proxy, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("proxy_disabled"))
    );
    proxy.stop().await;

    // Restarted with its original file settings: what was changed at run time is kept.
    let proxy = self::proxy(proxy_dir.path(), &server.base, Settings::default()).await;
    let (_, settings) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/settings",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (
            settings["forward_statistics"].as_bool(),
            settings["cache_max_entries"].as_u64(),
            settings["enabled"].as_bool()
        ),
        (Some(true), Some(5000), Some(false))
    );
    assert_eq!(settings["allowed_networks"], json!(["127.0.0.0/8"]));
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn devices_need_a_device_key_when_the_proxy_requires_one() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(
        proxy_dir.path(),
        &server.base,
        Settings {
            require_device_key: true,
            ..Settings::default()
        },
    )
    .await;
    let path = format!("/v1/files/{EICAR_SHA256}");
    let (status, body) = call(&proxy, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("licence_not_registered"))
    );
    let (status, entry) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(json!({"key": "DEVICE-KEY-00001", "label": "laptops"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(
        call(
            &proxy,
            reqwest::Method::GET,
            &path,
            None,
            Some("DEVICE-KEY-00001")
        )
        .await
        .0,
        200
    );
    let (status, _) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(json!({"key": "DEVICE-KEY-00002"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &proxy,
        reqwest::Method::DELETE,
        &format!("/v1/admin/keys/{}", entry["id"].as_str().unwrap()),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &proxy,
        reqwest::Method::GET,
        &path,
        None,
        Some("DEVICE-KEY-00001"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("licence_revoked"))
    );
    proxy.stop().await;
    // Keys (hashes only) are kept across a restart.
    let keys = std::fs::read_to_string(proxy_dir.path().join("keys.json")).unwrap();
    assert!(!keys.contains("DEVICE-KEY-0000"), "{keys}");
    let settings = Settings {
        require_device_key: true,
        ..Settings::default()
    };
    let proxy = self::proxy(proxy_dir.path(), &server.base, settings).await;
    assert_eq!(
        call(
            &proxy,
            reqwest::Method::GET,
            &path,
            None,
            Some("DEVICE-KEY-00002")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &proxy,
            reqwest::Method::GET,
            &path,
            None,
            Some("DEVICE-KEY-00001")
        )
        .await
        .0,
        401
    );
    let (_, list) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/keys",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 2);
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_rest_of_the_client_api_passes_through() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(proxy_dir.path(), &server.base, Settings::default()).await;
    // Privacy-mode search, the statement, explained and binary lookups: as the server answers.
    let search = json!({"prefixes": [&EICAR_SHA256[..8]]});
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(search.clone()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        call(
            &server,
            reqwest::Method::POST,
            "/v1/hashes:search",
            Some(search),
            None
        )
        .await
        .1
    );
    let (status, statement) = call(&proxy, reqwest::Method::GET, "/v1/statement", None, None).await;
    assert_eq!((status, statement["version"].as_u64()), (200, Some(1)));
    let (status, explained) = call(
        &proxy,
        reqwest::Method::GET,
        &format!("/v1/files/{EICAR_SHA256}?explain=true"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(explained["explain"].is_object(), "{explained}");
    let digest: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&EICAR_SHA256[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let client = Client::new(&proxy.base).unwrap();
    let answers = client
        .lookup_sha256(&[repnet_model::Sha256(digest.try_into().unwrap())])
        .await
        .unwrap();
    assert_eq!(answers[0].verdict, repnet_model::Verdict::Untrusted);
    // A domain and a URL go through the cache like files.
    for path in [
        "/v1/domains/test.repnet.invalid",
        "/v1/urls?url=http%3A%2F%2Fexample.com%2Fa",
        "/v1/ips/192.0.2.1",
    ] {
        let (status, cache, _) = call_full(&proxy, reqwest::Method::GET, path, None, None).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "{path}");
        assert_eq!(
            call_full(&proxy, reqwest::Method::GET, path, None, None)
                .await
                .1,
            "hit",
            "{path}"
        );
    }

    // The upstream revokes the proxy's key: devices get 502 (the gateway's failure, not their
    // key's), and the proxy's status says why it is not healthy.
    let (status, _) = call(
        &server,
        reqwest::Method::PATCH,
        "/v1/admin/settings",
        Some(json!({"require_key": true})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let id =
        repnet_protocol::licence_key_id(&repnet_model::Sha256::digest(UPSTREAM_KEY.as_bytes()));
    let (status, _) = call(
        &server,
        reqwest::Method::DELETE,
        &format!("/v1/admin/keys/{id}"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &proxy,
        reqwest::Method::GET,
        &format!("/v1/files/{}", "9a".repeat(32)),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_refused")),
        "{body}"
    );
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        "/v1/hashes:search",
        Some(json!({"prefixes": ["00000000"]})),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_refused")),
        "{body}"
    );
    let (_, status_body) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/status",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status_body["upstream"]["healthy"], false, "{status_body}");
    assert!(
        status_body["upstream"]["refused"]
            .as_str()
            .unwrap_or("")
            .contains("licence_revoked"),
        "{status_body}"
    );
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn more_idle_and_slow_devices_than_connections_do_not_hold_up_a_good_one() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy_with(
        proxy_dir.path(),
        &server.base,
        Settings::default(),
        |config| {
            config.max_body_bytes = 256 << 10;
            config.connections = repnet_http::Limits {
                max_connections: 32,
                max_buffered_body_bytes: 1 << 20,
                ..repnet_http::Limits::default()
            };
        },
    )
    .await;
    let address: SocketAddr = proxy.base.trim_start_matches("http://").parse().unwrap();
    let crowd = crowd::gather(address, "/v1/lookup", 40, 16, 10, 200_000).await;
    let url = format!("{}/v1/files/{EICAR_SHA256}", proxy.base);
    let median = crowd::median_answer_time(&url).await;
    assert!(
        median < Duration::from_millis(100),
        "a well-behaved device waited {median:?}"
    );
    let busy = crowd
        .slow_bodies
        .iter()
        .filter_map(|trickle| trickle.refused.as_deref())
        .inspect(|answer| {
            assert!(
                answer.starts_with("HTTP/1.1 503") && answer.contains("\"code\":\"busy\""),
                "{answer}"
            );
        })
        .count();
    assert_eq!(busy, 6, "four bodies fit in max_buffered_body_bytes");
    drop(crowd);
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn bodies_past_the_limit_and_settings_not_in_json_get_json_errors() {
    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(proxy_dir.path(), &server.base, Settings::default()).await;
    let http = repnet_client::http_client_builder().build().unwrap();
    // 3 MiB: over axum's default of 2 MB, under the server's 4 MiB; accepted by both.
    let mut items = Vec::new();
    while items.len() * 80 < 3 << 20 {
        items.push(json!({"domain": format!("host-{}.example.com", items.len())}));
    }
    items.truncate(10_000);
    let padding =
        " ".repeat((3 << 20) - serde_json::to_vec(&json!({"items": items})).unwrap().len());
    let body = format!(
        "{{\"items\":{}{padding}}}",
        serde_json::to_string(&items).unwrap()
    );
    assert!(body.len() > 2_000_000 && body.len() < 4 << 20);
    for base in [&server.base, &proxy.base] {
        let response = http
            .post(format!("{base}/v1/lookup"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{base}: {}",
            response.text().await.unwrap()
        );
    }
    // Past 4 MiB, announced or not: 413 in the API's shape from both.
    let too_large = " ".repeat((4 << 20) + 1);
    for base in [&server.base, &proxy.base] {
        let announced = http
            .post(format!("{base}/v1/lookup"))
            .header("content-type", "application/json")
            .body(too_large.clone())
            .send()
            .await
            .unwrap();
        let chunked = http
            .post(format!("{base}/v1/lookup"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                too_large
                    .clone()
                    .into_bytes()
                    .chunks(1 << 20)
                    .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
                    .collect::<Vec<_>>(),
            )))
            .send()
            .await
            .unwrap();
        for response in [announced, chunked] {
            assert_eq!(response.status(), 413, "{base}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "body_too_large", "{base}: {body}");
        }
    }
    // Settings and keys are JSON, said so.
    for base in [&server.base, &proxy.base] {
        for (method, path) in [
            (reqwest::Method::PATCH, "/v1/admin/settings"),
            (reqwest::Method::POST, "/v1/admin/keys"),
        ] {
            let response = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 415, "{base}{path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
        }
    }
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn an_upstream_answering_errors_without_end_gets_a_prompt_503() {
    // Every answer: 500, and zeros for ever.
    let app = axum::Router::new().fallback(|| async {
        let body = axum::body::Body::from_stream(futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&[0u8; 65536]))
        }));
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(dir.path(), &upstream, Settings::default()).await;
    let (status, body) = call(
        &proxy,
        reqwest::Method::GET,
        &format!("/v1/files/{EICAR_SHA256}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    // Stops at once although its change-log follower asks the same upstream.
    tokio::time::timeout(Duration::from_secs(5), proxy.stop())
        .await
        .expect("the proxy stops");
}

#[tokio::test]
async fn the_proxy_serves_https_with_a_private_ca() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "repnet test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let (cert, key, ca_file) = (
        files.path().join("proxy.pem"),
        files.path().join("proxy.key"),
        files.path().join("ca.pem"),
    );
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let (server_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy_with(
        proxy_dir.path(),
        &server.base,
        Settings::default(),
        |config| {
            config.tls_cert = Some(cert.clone());
            config.tls_key = Some(key.clone());
        },
    )
    .await;
    let base = proxy.base.replace("http://127.0.0.1", "https://localhost");
    // A device that trusts the CA looks up through it, over HTTP/2 (ALPN).
    let trusting = Client::with_ca(&base, Some(&ca_file)).unwrap();
    let answer = trusting
        .get(repnet_model::ObjectKind::File, EICAR_SHA256, false)
        .await
        .unwrap();
    assert_eq!(answer.verdict, repnet_protocol::Verdict::Untrusted);
    let http = repnet_client::http_client_builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(&std::fs::read(&ca_file).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let response = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // Without the CA it is refused, and plain HTTP is not served.
    let error = Client::new(&base)
        .unwrap()
        .get(repnet_model::ObjectKind::File, EICAR_SHA256, false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--ca"), "{error}");
    assert!(
        reqwest::get(format!("{}/healthz", proxy.base))
            .await
            .is_err(),
        "plain HTTP must not be answered"
    );
    // Only one of the two files: refused at start, naming both.
    let config = ProxyConfig {
        data: proxy_dir.path().join("other"),
        tls_cert: Some(cert.clone()),
        settings: Settings {
            upstream: server.base.clone(),
            ..Settings::default()
        },
        ..ProxyConfig::default()
    };
    let error = Proxy::new(config, None).await.unwrap_err().to_string();
    assert!(error.contains("tls_key"), "{error}");
    proxy.stop().await;
    server.stop().await;
}

/// The server and the proxy answer the admin API's mistakes the same way: one implementation
/// of the admin gate and of the licence-key endpoints. (The proxy took a key declared as
/// `text/plain` before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_the_proxy_refuse_admin_mistakes_alike() {
    let server_dir = tempfile::tempdir().unwrap();
    let proxy_dir = tempfile::tempdir().unwrap();
    let server = upstream(
        server_dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(proxy_dir.path(), &server.base, Settings::default()).await;
    let http = repnet_client::http_client_builder().build().unwrap();
    let answer = |at: &str,
                  method: reqwest::Method,
                  path: &str,
                  content_type: Option<&str>,
                  body: &str,
                  token: Option<&str>| {
        let mut request = http
            .request(method, format!("{at}{path}"))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let authenticate = response.headers().contains_key("www-authenticate");
            let body: Value = response.json().await.unwrap();
            (status, body["error"]["code"].clone(), authenticate, body)
        }
    };
    let post = reqwest::Method::POST;
    // What, how, the body and token, and the answer both give.
    type Mistake<'a> = (&'a str, reqwest::Method, &'a str, Option<&'a str>, &'a str);
    let cases: Vec<(Mistake, Option<&str>, u16, &str)> = vec![
        (
            ("no token", reqwest::Method::GET, "/v1/admin/keys", None, ""),
            None,
            401,
            "unauthorized",
        ),
        (
            (
                "a wrong token",
                reqwest::Method::GET,
                "/v1/admin/keys",
                None,
                "",
            ),
            Some("not-the-admin-token-at-all"),
            401,
            "unauthorized",
        ),
        (
            (
                "a key as text/plain",
                post.clone(),
                "/v1/admin/keys",
                Some("text/plain"),
                r#"{"key":"DEVICE-KEY-000000000001"}"#,
            ),
            Some(TOKEN),
            415,
            "unsupported_media_type",
        ),
        (
            (
                "a key without a content type",
                post.clone(),
                "/v1/admin/keys",
                None,
                r#"{"key":"DEVICE-KEY-000000000001"}"#,
            ),
            Some(TOKEN),
            415,
            "unsupported_media_type",
        ),
        (
            (
                "a body that is not JSON",
                post.clone(),
                "/v1/admin/keys",
                Some("application/json"),
                "{",
            ),
            Some(TOKEN),
            400,
            "invalid_json",
        ),
        (
            (
                "a misspelt field",
                post.clone(),
                "/v1/admin/keys",
                Some("application/json"),
                r#"{"kee":"x"}"#,
            ),
            Some(TOKEN),
            400,
            "invalid_request",
        ),
        (
            (
                "a key too short",
                post.clone(),
                "/v1/admin/keys",
                Some("application/json"),
                r#"{"key":"short"}"#,
            ),
            Some(TOKEN),
            400,
            "invalid_key",
        ),
        (
            (
                "an unknown id",
                reqwest::Method::DELETE,
                "/v1/admin/keys/0123456789abcdef",
                None,
                "",
            ),
            Some(TOKEN),
            404,
            "key_not_found",
        ),
    ];
    for ((what, method, path, content_type, body), token, status, code) in cases {
        let on_server = answer(
            &server.base,
            method.clone(),
            path,
            content_type,
            body,
            token,
        )
        .await;
        let on_proxy = answer(&proxy.base, method, path, content_type, body, token).await;
        assert_eq!(
            (on_server.0, on_server.1.as_str()),
            (status, Some(code)),
            "server, {what}: {}",
            on_server.3
        );
        assert_eq!(
            (&on_proxy.0, &on_proxy.1, on_proxy.2),
            (&on_server.0, &on_server.1, on_server.2),
            "{what}: the proxy answered {}, the server {}",
            on_proxy.3,
            on_server.3
        );
    }
    proxy.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_proxy_not_managed_by_its_upstream_reports_but_keeps_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = upstream(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy_with(data.path(), &server.base, Settings::default(), |config| {
        config.name = Some("lab".to_owned());
        config.managed_by_upstream = false;
    })
    .await;
    let listed = || async {
        call(
            &server,
            reqwest::Method::GET,
            "/v1/admin/proxies",
            None,
            Some(TOKEN),
        )
        .await
        .1
    };
    eventually(30, "the proxy reported", || async {
        listed().await["proxies"][0]["name"] == "lab"
    })
    .await;
    let id = listed().await["proxies"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let settings = json!({
        "enabled": false, "cache_max_entries": 10, "cache_max_bytes": 1048576,
        "cache_max_ttl_seconds": 0, "allowed_networks": [], "forward_statistics": false,
        "require_device_key": false,
    });
    // Through the admin API: an unknown proxy, a bad setting, then the settings.
    let (status, body) = call(
        &server,
        reqwest::Method::PUT,
        "/v1/admin/proxies/nokey/lab/settings",
        Some(settings.clone()),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_proxy")),
        "{body}"
    );
    let mut bad = settings.clone();
    bad["cache_max_entries"] = json!(0);
    let path = format!("/v1/admin/proxies/{id}/settings");
    let (status, body) = call(&server, reqwest::Method::PUT, &path, Some(bad), Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cache_max_entries:"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        reqwest::Method::PUT,
        &path,
        Some(settings),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["revision"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    eventually(30, "the proxy said it ignored them", || async {
        listed().await["proxies"][0]["applied"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("managed_by_upstream = false"))
    })
    .await;
    let (_, own) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/settings",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(own["enabled"], true, "unchanged: {own}");
    proxy.stop().await;
}

/// A browser without cookies or redirects of its own: status, location, set-cookie, body.
async fn browse(
    url: String,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> (u16, String, String, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = match form {
        Some(form) => browser.post(url).form(form),
        None => browser.get(url),
    };
    if let Some(cookie) = cookie {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &reqwest::header::HeaderValue| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (location, set_cookie) = (
        header(reqwest::header::LOCATION),
        header(reqwest::header::SET_COOKIE),
    );
    let status = response.status().as_u16();
    (status, location, set_cookie, response.text().await.unwrap())
}

#[tokio::test]
async fn the_proxys_console_shows_its_cache_and_changes_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = upstream(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .await;
    let proxy = proxy(data.path(), &server.base, Settings::default()).await;
    for _ in 0..2 {
        let (status, _) = call(
            &proxy,
            reqwest::Method::GET,
            &format!("/v1/files/{EICAR_SHA256}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    // Signed out: sent to sign in; a wrong token refused; the token gives a session.
    let (status, location, _, _) = browse(proxy.url("/console/status"), None, None).await;
    assert_eq!((status, location.as_str()), (303, "/console/login"));
    let (status, _, _, _) = browse(
        proxy.url("/console/login"),
        None,
        Some(&[("token", "wrong-token-wrong-token")]),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, set_cookie, _) =
        browse(proxy.url("/console/login"), None, Some(&[("token", TOKEN)])).await;
    assert_eq!(status, 303);
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let (status, _, _, page) = browse(proxy.url("/console/status"), Some(&cookie), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("repnet proxy"), "{page}");
    assert!(page.contains("1 hits, 1 misses"), "{page}");
    assert!(page.contains("50.0 %"), "{page}");
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..at + 32].to_owned();

    // Empty the cache: without the token refused, with it done.
    let (status, _, _, _) =
        browse(proxy.url("/console/cache/empty"), Some(&cookie), Some(&[])).await;
    assert_eq!(status, 403);
    let (status, location, _, _) = browse(
        proxy.url("/console/cache/empty"),
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/status?done=emptied")
    );
    let (_, _, _, page) = browse(proxy.url("/console/status"), Some(&cookie), None).await;
    assert!(page.contains("Answers</dt><dd>0 of at most"), "{page}");

    // Settings: a bad window beside its field, nothing changed; then a good change, applied.
    let upstream = server.base.clone();
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("upstream", upstream.as_str()),
        ("coalescing_window_ms", "5000"),
        ("enabled", "on"),
        ("cache_max_entries", "777"),
        ("cache_max_megabytes", "16"),
        ("cache_max_ttl_seconds", "30"),
        ("allowed_networks", "127.0.0.1/32"),
    ];
    let (status, _, _, page) =
        browse(proxy.url("/console/settings"), Some(&cookie), Some(&form)).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("coalescing_window_ms-error"), "{page}");
    let (_, own) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/settings",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(own["cache_max_entries"], 100_000, "unchanged: {own}");
    form[2] = ("coalescing_window_ms", "3");
    let (status, location, _, page) =
        browse(proxy.url("/console/settings"), Some(&cookie), Some(&form)).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/settings?done=saved"),
        "{page}"
    );
    let (_, own) = call(
        &proxy,
        reqwest::Method::GET,
        "/v1/admin/settings",
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (
            &own["cache_max_entries"],
            &own["cache_max_ttl_seconds"],
            &own["coalescing_window_ms"]
        ),
        (&json!(777), &json!(30), &json!(3)),
        "{own}"
    );
    assert_eq!(own["allowed_networks"], json!(["127.0.0.1/32"]));
    proxy.stop().await;
}
