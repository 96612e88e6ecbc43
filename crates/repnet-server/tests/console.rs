//! The administration console over HTTP, as a browser speaks to it: a real server, forms
//! posted as a browser posts them, the session cookie carried by hand (redirects not
//! followed, so that each answer is seen).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use repnet_server::ServerConfig;
use repnet_testkit::{Options, Server as TestServer, TOKEN};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// A browser without cookies or redirects of its own.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST path` with a form, carrying `cookie` if any: status, location, set-cookie, body.
async fn post(
    server: &TestServer,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String, String, String) {
    let mut request = browser().post(server.url(path)).form(form);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    answer(request.send().await.unwrap()).await
}

async fn get(
    server: &TestServer,
    cookie: Option<&str>,
    path: &str,
) -> (u16, String, String, String) {
    let mut request = browser().get(server.url(path));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    answer(request.send().await.unwrap()).await
}

async fn answer(response: reqwest::Response) -> (u16, String, String, String) {
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &reqwest::header::HeaderValue| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (location, set_cookie) = (header(LOCATION), header(SET_COOKIE));
    let status = response.status().as_u16();
    (status, location, set_cookie, response.text().await.unwrap())
}

/// Signs in; answers the `Cookie` header value of the session.
async fn sign_in(server: &TestServer) -> String {
    let (status, location, set_cookie, _) =
        post(server, None, "/console/login", &[("token", TOKEN)]).await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 32].to_owned()
}

/// `text` as HTML shows it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test]
async fn an_operator_signs_in_sets_and_removes_a_local_verdict_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;

    // Signed out: every page sends the browser to sign in.
    let (status, location, _, _) = get(&server, None, "/console").await;
    assert_eq!((status, location.as_str()), (303, "/console/overview"));
    for path in ["/console/status", "/console/verdicts"] {
        let (status, location, _, _) = get(&server, None, path).await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/console/login"),
            "{path}"
        );
    }
    let (status, _, _, page) = get(&server, None, "/console/login").await;
    assert_eq!(status, 200);
    assert!(page.contains("type=\"password\""), "{page}");

    // A wrong token: refused, said so, no session.
    let (status, _, set_cookie, page) = post(
        &server,
        None,
        "/console/login",
        &[("token", "not-the-token-at-all-000")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(set_cookie.is_empty(), "{set_cookie}");
    assert!(page.contains("not the admin token"), "{page}");

    // The token: a session cookie, HttpOnly and SameSite=Strict, for /console only.
    let (status, location, set_cookie, _) =
        post(&server, None, "/console/login", &[("token", TOKEN)]).await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    for part in [
        "repnet_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let (status, _, _, page) = get(&server, Some(&cookie), "/console/status").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    assert!(page.contains("global"), "the role: {page}");
    assert!(page.contains("MB on disk"), "the store's size: {page}");
    assert!(!page.contains(TOKEN), "the admin token is never shown");

    // A form without the session's CSRF token changes nothing.
    let (status, _, _, _) = post(
        &server,
        Some(&cookie),
        "/console/verdicts",
        &[
            ("kind", "domain"),
            ("value", "console.example"),
            ("verdict", "untrusted"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let (_, body) = server.get("/v1/domains/console.example").await;
    assert_eq!(body["verdict"], "unknown", "{body}");

    // Set, with a comment that is markup: live on the next lookup, shown escaped.
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/verdicts").await;
    let token = csrf(&page);
    let comment = "<script>alert('x')</script> ticket #42";
    let (status, location, _, _) = post(
        &server,
        Some(&cookie),
        "/console/verdicts",
        &[
            ("csrf", &token),
            ("kind", "domain"),
            ("value", "console.example"),
            ("verdict", "untrusted"),
            ("threat", "Phish.Console"),
            ("comment", comment),
            ("expires", ""),
        ],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/verdicts?done=added")
    );
    let (_, body) = server.get("/v1/domains/console.example").await;
    assert_eq!(body["verdict"], "untrusted", "{body}");
    assert_eq!(body["source"], "local", "{body}");
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/verdicts?done=added").await;
    assert!(page.contains("Local verdict set"), "{page}");
    assert!(page.contains(&escaped(comment)), "{page}");
    assert!(
        !page.contains("<script>"),
        "markup from the store is escaped: {page}"
    );

    // Bad input: the API's own message beside the field, what was typed kept, nothing stored.
    let (api_status, api_body) = server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&serde_json::json!({"object": {"file": "not-a-hash"}, "verdict": "untrusted"})),
            Some(TOKEN),
        )
        .await;
    let api_message = api_body["error"]["message"].as_str().unwrap().to_owned();
    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/verdicts",
        &[
            ("csrf", &token),
            ("kind", "file"),
            ("value", "not-a-hash"),
            ("verdict", "untrusted"),
        ],
    )
    .await;
    assert_eq!(status, api_status);
    assert!(
        page.contains(&escaped(&api_message)),
        "{api_message} in {page}"
    );
    assert!(page.contains("id=\"value-error\""), "{page}");
    assert!(page.contains("value=\"not-a-hash\""), "{page}");
    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/verdicts",
        &[
            ("csrf", &token),
            ("kind", "domain"),
            ("value", "later.example"),
            ("verdict", "untrusted"),
            ("expires", "2001-01-01"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("id=\"expires-error\""), "{page}");
    let (_, body) = server.get("/v1/domains/later.example").await;
    assert_eq!(body["verdict"], "unknown", "{body}");

    // Search, then remove.
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/verdicts?q=ticket+%2342").await;
    assert!(page.contains("1 of 1 shown"), "{page}");
    let (_, _, _, page) = get(
        &server,
        Some(&cookie),
        "/console/verdicts?q=nothing-like-it",
    )
    .await;
    assert!(page.contains("0 of 1 shown"), "{page}");
    let (status, location, _, _) = post(
        &server,
        Some(&cookie),
        "/console/verdicts/remove",
        &[
            ("csrf", &token),
            ("kind", "domain"),
            ("value", "console.example"),
        ],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/verdicts?done=removed")
    );
    let (_, body) = server.get("/v1/domains/console.example").await;
    assert_eq!(body["verdict"], "unknown", "{body}");
    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/verdicts/remove",
        &[
            ("csrf", &token),
            ("kind", "domain"),
            ("value", "console.example"),
        ],
    )
    .await;
    assert_eq!(status, 404);
    assert!(page.contains("no local verdict"), "{page}");

    // Signing out ends the session: the old cookie no longer opens a page.
    let (status, location, set_cookie, _) = post(
        &server,
        Some(&cookie),
        "/console/logout",
        &[("csrf", &token)],
    )
    .await;
    assert_eq!((status, location.as_str()), (303, "/console/login"));
    assert!(set_cookie.contains("Max-Age=0"), "{set_cookie}");
    let (status, location, _, _) = get(&server, Some(&cookie), "/console/status").await;
    assert_eq!((status, location.as_str()), (303, "/console/login"));
    server.stop().await;
}

#[tokio::test]
async fn wrong_tokens_at_sign_in_are_throttled_like_the_admin_apis() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let mut last = 0;
    for _ in 0..=repnet_http::admin::WRONG_TOKENS_PER_MINUTE {
        last = post(
            &server,
            None,
            "/console/login",
            &[("token", "wrong-wrong-wrong-wrong")],
        )
        .await
        .0;
    }
    assert_eq!(last, 429, "refused after the limit");
    // The limit is the address's: even the right token waits now.
    let (status, _, set_cookie, page) =
        post(&server, None, "/console/login", &[("token", TOKEN)]).await;
    assert_eq!(status, 429);
    assert!(set_cookie.is_empty());
    assert!(page.contains("try again"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn the_console_is_off_when_the_admin_api_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        dir.path(),
        ServerConfig::default(),
        Options::without_admin(),
    )
    .await;
    let (status, _, _, page) = get(&server, None, "/console/login").await;
    assert_eq!(status, 403);
    assert!(page.contains("The console is off"), "{page}");
    let (status, _, set_cookie, _) =
        post(&server, None, "/console/login", &[("token", TOKEN)]).await;
    assert_eq!(status, 403);
    assert!(set_cookie.is_empty());
    let (status, location, _, _) = get(&server, None, "/console/verdicts").await;
    assert_eq!((status, location.as_str()), (303, "/console/login"));
    server.stop().await;
}

#[tokio::test]
async fn a_sign_in_cookie_from_another_server_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestServer::start(other_dir.path(), ServerConfig::default()).await;
    let cookie = sign_in(&other).await;
    let (status, location, _, _) = get(&server, Some(&cookie), "/console/status").await;
    assert_eq!((status, location.as_str()), (303, "/console/login"));
    let (status, _, _, _) = get(&other, Some(&cookie), "/console/status").await;
    assert_eq!(status, 200);
    other.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_lookup_page_explains_which_source_decided_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let cookie = sign_in(&server).await;
    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    // The built-in record alone.
    let path = format!("/console/lookup?kind=file&value={eicar}");
    let (status, _, _, page) = get(&server, Some(&cookie), &path).await;
    assert_eq!(status, 200, "{page}");
    for shown in ["untrusted", "EICAR-Test-File", "builtin"] {
        assert!(page.contains(shown), "{shown} in {page}");
    }

    // A local verdict on it: both records shown, the local one first and deciding, with the
    // reason the API gives.
    let (status, _) = server
        .call(
            reqwest::Method::PUT,
            "/v1/admin/verdicts",
            Some(&serde_json::json!({"object": {"file": eicar}, "verdict": "trusted"})),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let (_, api) = server.get(&format!("/v1/files/{eicar}?explain=true")).await;
    let reason = api["explain"]["records"][0]["reason"].as_str().unwrap();
    let (_, _, _, page) = get(&server, Some(&cookie), &path).await;
    let local = page.find("<td>local</td>").expect("the local record");
    let builtin = page.find("<td>builtin</td>").expect("the built-in record");
    assert!(local < builtin, "the deciding record first: {page}");
    assert!(page.contains(&escaped(reason)), "{reason} in {page}");

    // Nothing known, and a value the API refuses, with the API's words.
    let (_, _, _, page) = get(
        &server,
        Some(&cookie),
        "/console/lookup?kind=domain&value=nothing.example",
    )
    .await;
    assert!(page.contains("No source has said anything"), "{page}");
    let (status, _, _, page) = get(
        &server,
        Some(&cookie),
        "/console/lookup?kind=file&value=xyz",
    )
    .await;
    assert_eq!(status, 400);
    let (_, api) = server.get("/v1/files/xyz").await;
    let message = api["error"]["message"].as_str().unwrap();
    assert!(page.contains("class=\"error\""), "{page}");
    assert!(
        page.contains(&escaped(message.trim_start_matches(": "))),
        "{message} in {page}"
    );
    server.stop().await;
}

#[tokio::test]
async fn mistyped_console_paths_answer_pages_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let (status, _, _, page) = get(&server, None, "/console/verdict").await;
    assert_eq!(status, 404);
    assert!(page.contains("no page"), "{page}");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // Following a link to sign out signs nobody out: that takes the form.
    let cookie = sign_in(&server).await;
    let (status, location, _, _) = get(&server, Some(&cookie), "/console/logout").await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    let (status, _, _, _) = get(&server, Some(&cookie), "/console/status").await;
    assert_eq!(status, 200, "still signed in");
    server.stop().await;
}

#[tokio::test]
async fn a_false_positive_report_is_accepted_or_rejected_in_one_action() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        installation_difficulty: 8,
        ..ServerConfig::default()
    };
    config.engine.established_after_hours = 0;
    let server = TestServer::start(dir.path(), config).await;
    let cookie = sign_in(&server).await;
    let device = repnet_client::Client::new(&server.base)
        .unwrap()
        .enrol_installation()
        .await
        .unwrap()
        .installation;
    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let other = "ab".repeat(32);
    for (file, comment) in [(eicar, "<b>our</b> test file"), (other.as_str(), "a tool")] {
        let batch = serde_json::json!({
            "statement_version": 1, "installation": device, "product": "repnet-test/1.0",
            "events": [{"type": "false_positive", "file": file, "comment": comment}],
        });
        let (status, body) = server.post_json("/v1/statistics", &batch).await;
        assert_eq!(status, 202, "{body}");
    }
    let other_hex = "ab".repeat(32);
    repnet_testkit::eventually(30, "both reports queued", || async {
        let page = get(&server, Some(&cookie), "/console/review").await.3;
        page.contains(eicar) && page.contains(&other_hex)
    })
    .await;
    let page = get(&server, Some(&cookie), "/console/review").await.3;
    assert!(page.contains("false-positive report"), "{page}");
    assert!(page.contains(&escaped("<b>our</b> test file")), "{page}");
    assert!(page.contains("untrusted"), "the answer now: {page}");
    let token = csrf(&page);
    let (_, queue) = server
        .call(reqwest::Method::GET, "/v1/admin/review", None, Some(TOKEN))
        .await;
    let id_of = |file: &str| {
        queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["object"]["value"] == file)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Accept: a local trusted verdict, live on the next lookup.
    let (status, location, _, _) = post(
        &server,
        Some(&cookie),
        "/console/review",
        &[
            ("csrf", &token),
            ("id", &id_of(eicar)),
            ("verdict", "trusted"),
        ],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/review?done=trusted")
    );
    let (_, answer) = server.get(&format!("/v1/files/{eicar}")).await;
    assert_eq!(
        (answer["verdict"].as_str(), answer["source"].as_str()),
        (Some("trusted"), Some("local"))
    );
    // Reject: closed, nothing set; a second settle of it is the API's 404.
    let id = id_of(&other);
    let (status, _, _, _) = post(
        &server,
        Some(&cookie),
        "/console/review",
        &[("csrf", &token), ("id", &id), ("verdict", "dismiss")],
    )
    .await;
    assert_eq!(status, 303);
    let (_, answer) = server.get(&format!("/v1/files/{other}")).await;
    assert_eq!(answer["verdict"], "unknown", "{answer}");
    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/review",
        &[("csrf", &token), ("id", &id), ("verdict", "dismiss")],
    )
    .await;
    assert_eq!(status, 404);
    assert!(page.contains("no open report"), "{page}");
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/review").await;
    assert!(page.contains("Nothing to review"), "{page}");
    // Without the session's token, nothing is settled.
    let (status, _, _, _) = post(
        &server,
        Some(&cookie),
        "/console/review",
        &[("id", &id), ("verdict", "trusted")],
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn a_licence_key_is_issued_shown_once_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let cookie = sign_in(&server).await;
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/keys").await;
    assert!(page.contains("No key is registered"), "{page}");
    assert!(
        page.contains("licence_revoked"),
        "the licence-change case, in place: {page}"
    );
    let token = csrf(&page);

    // A refused form: the API's message beside the field, nothing registered.
    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/keys",
        &[
            ("csrf", &token),
            ("label", "Example Corp"),
            ("expires", "yesterday"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("id=\"expires-error\""), "{page}");
    assert!(page.contains("No key is registered"), "{page}");

    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/keys",
        &[
            ("csrf", &token),
            ("label", "Example <Corp>"),
            ("expires", ""),
        ],
    )
    .await;
    assert_eq!(status, 201, "{page}");
    let at = page.find("id=\"issued-key\">").unwrap() + "id=\"issued-key\">".len();
    let key = page[at..].split('<').next().unwrap().to_owned();
    assert!(key.starts_with("repnet-") && key.len() == 39, "{key}");
    assert!(page.contains("Example &lt;Corp&gt;"), "{page}");
    // The key pulls changes; the listing never shows it again.
    let pull = |key: String| {
        let url = server.url("/v1/changes?after=0");
        async move {
            browser()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(pull(key.clone()).await, 200);
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/keys").await;
    assert!(!page.contains(&key), "shown once: {page}");
    assert!(page.contains("active"), "{page}");

    // Revoked: listed as such, refused at once.
    let (_, keys) = server
        .call(reqwest::Method::GET, "/v1/admin/keys", None, Some(TOKEN))
        .await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let (status, location, _, _) = post(
        &server,
        Some(&cookie),
        "/console/keys/revoke",
        &[("csrf", &token), ("id", &id)],
    )
    .await;
    assert_eq!(
        (status, location),
        (303, format!("/console/keys?revoked={id}"))
    );
    assert_eq!(pull(key).await, 401, "licence_revoked");
    let (_, _, _, page) = get(
        &server,
        Some(&cookie),
        &format!("/console/keys?revoked={id}"),
    )
    .await;
    assert!(page.contains("revoked"), "{page}");
    assert!(
        !page.contains("aria-label=\"Revoke key"),
        "no second revoke: {page}"
    );
    server.stop().await;
}

#[tokio::test]
async fn feeds_are_listed_refreshed_and_a_file_is_imported_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let published = tempfile::tempdir().unwrap();
    let list = published.path().join("domains.txt");
    std::fs::write(&list, "listed.example\n").unwrap();
    let feed = repnet_server::config::FeedConfig {
        name: "local-list".to_owned(),
        format: "domainlist".to_owned(),
        url: None,
        path: Some(list.clone()),
        interval_seconds: 3600,
        verdict: Some("untrusted".to_owned()),
        threat: None,
        categories: Vec::new(),
        confidence: None,
        top: None,
        incremental: false,
        allow_empty: false,
        headers: Default::default(),
    };
    let config = ServerConfig {
        feeds: vec![feed],
        ..ServerConfig::default()
    };
    let server = TestServer::start(dir.path(), config).await;
    let cookie = sign_in(&server).await;
    let (status, _, _, page) = get(&server, Some(&cookie), "/console/feeds").await;
    assert_eq!(status, 200);
    assert!(page.contains("local-list"), "{page}");
    let token = csrf(&page);

    // Refresh now: the file's new entry is imported.
    std::fs::write(&list, "listed.example\nadded.example\n").unwrap();
    let (status, location, _, _) = post(
        &server,
        Some(&cookie),
        "/console/feeds/refresh",
        &[("csrf", &token), ("name", "local-list")],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/feeds?refreshed=local-list")
    );
    let (_, reply) = server.get("/v1/domains/added.example").await;
    assert_eq!(reply["verdict"], "untrusted", "{reply}");
    let (status, _, _, page) = post(
        &server,
        Some(&cookie),
        "/console/feeds/refresh",
        &[("csrf", &token), ("name", "no-such-feed")],
    )
    .await;
    assert_eq!(status, 404);
    assert!(page.contains("no scheduled feed"), "{page}");

    // Upload: a file in a form, imported as the API imports it.
    let upload = |csrf: String, body: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf)
            .text("format", "domainlist")
            .text("source", "console-upload")
            .part(
                "file",
                reqwest::multipart::Part::bytes(body.as_bytes()).file_name("list.txt"),
            );
        let request = browser()
            .post(server.url("/console/feeds/upload"))
            .header(COOKIE, cookie.clone())
            .multipart(form);
        async move { answer(request.send().await.unwrap()).await }
    };
    let (status, _, _, page) = upload(token.clone(), "uploaded.example\n").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("feed:console-upload"), "{page}");
    assert!(page.contains("1 stored"), "{page}");
    let (_, reply) = server.get("/v1/domains/uploaded.example").await;
    assert_eq!(reply["source"], "feed:console-upload", "{reply}");
    // Without the session's token nothing is read or imported; an empty file is refused.
    let (status, _, _, _) = upload("wrong".repeat(8), "sneaked.example\n").await;
    assert_eq!(status, 403);
    let (_, reply) = server.get("/v1/domains/sneaked.example").await;
    assert_eq!(reply["verdict"], "unknown", "{reply}");
    let (status, _, _, page) = upload(token.clone(), "").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("empty"), "{page}");
    // A text field longer than any of the form's is not read on: this route has no body limit.
    let (status, _, _, _) = upload("x".repeat(1 << 20), "big.example\n").await;
    assert_eq!(status, 403);
    let (_, reply) = server.get("/v1/domains/big.example").await;
    assert_eq!(reply["verdict"], "unknown", "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn the_privacy_page_shows_the_statement_as_published() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let cookie = sign_in(&server).await;
    let (_, statement) = server.get("/v1/statement").await;
    let (status, _, _, page) = get(&server, Some(&cookie), "/console/participation").await;
    assert_eq!(status, 200);
    let text = statement["text"].as_str().unwrap();
    let first_line = text.lines().next().unwrap();
    assert!(
        page.contains(&escaped(first_line)),
        "{first_line} in {page}"
    );
    assert!(
        page.contains(&format!("<dd>{}</dd>", statement["version"])),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "{} days",
            ServerConfig::default().statistics_retention_days
        )),
        "{page}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_overview_charts_lookups_and_detections_and_keeps_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        installation_difficulty: 8,
        ..ServerConfig::default()
    };
    config.engine.established_after_hours = 0;
    config.engine.interval_seconds = 1;
    let server = TestServer::start(dir.path(), config.clone()).await;
    let cookie = sign_in(&server).await;

    // Nothing yet: the charts are there, empty.
    let (status, _, _, page) = get(&server, Some(&cookie), "/console/overview").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("0 lookups in the last 24 hours"), "{page}");

    // Real lookups, and a detection reported by a participant.
    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    for path in [
        format!("/v1/files/{eicar}"),
        format!("/v1/files/{}", "cd".repeat(32)),
        "/v1/domains/example.org".to_owned(),
    ] {
        assert_eq!(server.get(&path).await.0, 200, "{path}");
    }
    let device = repnet_client::Client::new(&server.base)
        .unwrap()
        .enrol_installation()
        .await
        .unwrap()
        .installation;
    let batch = serde_json::json!({
        "statement_version": 1, "installation": device, "product": "repnet-test/1.0",
        "events": [{"type": "detection", "file": eicar, "threat": "EICAR-Test-<File>"}],
    });
    let (status, body) = server.post_json("/v1/statistics", &batch).await;
    assert_eq!(status, 202, "{body}");
    repnet_testkit::eventually(30, "the engine examined the detected file", || async {
        get(&server, Some(&cookie), "/console/overview?window=hour")
            .await
            .3
            .contains(eicar)
    })
    .await;

    let (status, _, _, page) = get(&server, Some(&cookie), "/console/overview?window=hour").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("3 lookups in the last hour"), "{page}");
    assert!(page.contains("1 detections in 1 reports"), "{page}");
    assert!(page.contains(&escaped("EICAR-Test-<File>")), "{page}");
    assert!(!page.contains("EICAR-Test-<File>"), "escaped: {page}");
    assert!(page.contains("<polyline"), "a line chart: {page}");
    assert!(page.contains("role=\"img\""), "{page}");
    for kind in ["file", "domain", "url", "ip", "certificate"] {
        assert!(
            page.contains(&format!("</svg>{kind}</li>")),
            "legend {kind}: {page}"
        );
    }
    // Every window answers; a misspelt one is said so, and the day is shown.
    for window in ["day", "30d"] {
        let (status, _, _, page) = get(
            &server,
            Some(&cookie),
            &format!("/console/overview?window={window}"),
        )
        .await;
        assert_eq!(status, 200, "{window}: {page}");
        assert!(page.contains("3 lookups"), "{window}: {page}");
    }
    let (status, _, _, page) = get(&server, Some(&cookie), "/console/overview?window=week").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("choose hour, day or 30d"), "{page}");

    // A restart keeps the activity.
    server.stop().await;
    let server = TestServer::start(dir.path(), config).await;
    let cookie = sign_in(&server).await;
    let (_, _, _, page) = get(&server, Some(&cookie), "/console/overview?window=hour").await;
    assert!(page.contains("3 lookups in the last hour"), "{page}");
    assert!(page.contains(&escaped("EICAR-Test-<File>")), "{page}");
    assert!(page.contains(eicar), "{page}");
}

#[tokio::test]
async fn an_operator_changes_a_proxys_settings_and_the_real_proxy_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), ServerConfig::default()).await;
    let key = "ORG-PROXY-KEY-0001";
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/v1/admin/keys",
            Some(&serde_json::json!({"key": key, "label": "branch offices"})),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 201);
    let proxy = repnet_testkit::Proxy::start(repnet_proxy::ProxyConfig {
        data: proxy_dir.path().to_path_buf(),
        upstream_key: Some(key.to_owned()),
        follow_interval_seconds: 1,
        name: Some("branch-1".to_owned()),
        settings: repnet_proxy::Settings {
            upstream: server.base.clone(),
            ..repnet_proxy::Settings::default()
        },
        ..repnet_proxy::ProxyConfig::default()
    })
    .await;
    let cookie = sign_in(&server).await;

    // Devices ask through the proxy: once from upstream, once from its cache.
    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let device = reqwest::Client::new();
    for _ in 0..2 {
        let status = device
            .get(proxy.url(&format!("/v1/files/{eicar}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    // The proxy reports itself on its next poll.
    repnet_testkit::eventually(30, "the proxy listed with its cache hit", || async {
        let page = get(&server, Some(&cookie), "/console/proxies").await.3;
        page.contains("branch-1") && page.contains("1 of 2 lookups")
    })
    .await;
    let overview = get(&server, Some(&cookie), "/console/overview?window=hour")
        .await
        .3;
    assert!(
        overview.contains("answered from their caches: 50.0 % of 2"),
        "the proxies' cache hit rate: {overview}"
    );
    let page = get(&server, Some(&cookie), "/console/proxies").await.3;
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    assert!(page.contains("upstream reachable"), "{page}");
    assert!(page.contains("its own (none set here)"), "{page}");
    let token = csrf(&page);
    let (_, list) = server
        .call(reqwest::Method::GET, "/v1/admin/proxies", None, Some(TOKEN))
        .await;
    let id = list["proxies"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.ends_with("/branch-1"), "{list}");

    // A bad network: the API's message beside the field, nothing set.
    let form = |networks: &'static str, enabled: bool| {
        let mut form = vec![
            ("csrf", token.clone()),
            ("id", id.clone()),
            ("cache_max_entries", "5000".to_owned()),
            ("cache_max_megabytes", "64".to_owned()),
            ("cache_max_ttl_seconds", "120".to_owned()),
            ("allowed_networks", networks.to_owned()),
            ("forward_statistics", "on".to_owned()),
        ];
        if enabled {
            form.push(("enabled", "on".to_owned()));
        }
        form
    };
    let bad = form("10.0.0.0/33\n<script>", true);
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _, page) = post(&server, Some(&cookie), "/console/proxies", &bad).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("allowed_networks: "), "{page}");
    assert!(
        page.contains("allowed_networks-error"),
        "beside the field: {page}"
    );
    assert!(!page.contains("<script>"), "escaped: {page}");
    let (_, list) = server
        .call(reqwest::Method::GET, "/v1/admin/proxies", None, Some(TOKEN))
        .await;
    assert_eq!(list["proxies"][0]["revision"], 0, "{list}");

    // Disabled, a smaller cache, a lifetime, one network: saved, applied on the next poll.
    let good = form("127.0.0.0/8", false);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _, page) = post(&server, Some(&cookie), "/console/proxies", &good).await;
    assert_eq!(status, 303, "{page}");
    assert!(
        location.starts_with("/console/proxies?saved="),
        "{location}"
    );
    repnet_testkit::eventually(30, "the proxy applied revision 1", || async {
        get(&server, Some(&cookie), "/console/proxies")
            .await
            .3
            .contains("revision 1 applied")
    })
    .await;
    let settings: serde_json::Value = reqwest::Client::new()
        .get(proxy.url("/v1/admin/settings"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["enabled"], false, "{settings}");
    assert_eq!(settings["cache_max_entries"], 5000, "{settings}");
    assert_eq!(settings["cache_max_bytes"], 64 << 20, "{settings}");
    assert_eq!(settings["cache_max_ttl_seconds"], 120, "{settings}");
    assert_eq!(
        settings["allowed_networks"],
        serde_json::json!(["127.0.0.0/8"])
    );
    assert_eq!(settings["forward_statistics"], true, "{settings}");
    let answer = device
        .get(proxy.url(&format!("/v1/files/{eicar}")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.text().await.unwrap().contains("proxy_disabled"));
    proxy.stop().await;
}
