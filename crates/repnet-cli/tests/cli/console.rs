//! The administration console in a real browser: Debian's headless chromium, driven through
//! chromedriver (WebDriver), against the real `repnet serve` and `repnet proxy` binaries.
//! An operator signs in, reads the overview's charts of real lookups and statistics, looks
//! an object up, sets a local verdict and sees a lookup change, settles a report, issues and
//! revokes a key, changes a proxy's settings and sees the proxy apply them, and signs out.
//! Every page is checked for requests outside the server, for labelled controls, and for a
//! layout that fits a narrow screen.
//!
//! With `REPNET_CONSOLE_SCREENSHOTS=DIR` set, each page's screenshot is written there
//! (docs/console/ holds the ones docs/console.md shows).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{ProxyProcess, QUICK_ENROLMENT, ServerProcess, TOKEN, block_on};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const EICAR: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
const PROXY_KEY: &str = "ORG-PROXY-KEY-BROWSER-1";

/// A chromedriver process on a free loopback port.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser session, and where screenshots go.
struct Browser {
    client: Client,
    server: String,
    shots: Option<PathBuf>,
}

impl Browser {
    async fn open(driver: &Driver, server: &str) -> Browser {
        // chromedriver answers its status once it is up: polled, not slept for.
        let http = http();
        repnet_testkit::eventually(30, "chromedriver is up", || async {
            http.get(format!("{}/status", driver.url))
                .send()
                .await
                .is_ok_and(|answer| answer.status().is_success())
        })
        .await;
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-extensions"],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a chromium session through chromedriver");
        Browser {
            client,
            server: server.to_owned(),
            shots: std::env::var_os("REPNET_CONSOLE_SCREENSHOTS").map(PathBuf::from),
        }
    }

    async fn go(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.server))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks what `css` finds, which leads to another page, and waits for that page: a
    /// mark left on this page's window is gone once the next one has loaded.
    async fn click(&self, css: &str) {
        self.script("window.repnetLeaving = true; return null;")
            .await;
        self.toggle(css).await;
        repnet_testkit::eventually(30, "the next page", || async {
            self.client
                .execute(
                    "return window.repnetLeaving === undefined && document.readyState === 'complete';",
                    Vec::new(),
                )
                .await
                .is_ok_and(|loaded| loaded == json!(true))
        })
        .await;
    }

    /// Clicks what `css` finds, staying on the page (a check box).
    async fn toggle(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn script(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// The checks every page passes: nothing asked of or linked to another origin, every
    /// control labelled, and (when `shot` is named) its screenshot.
    async fn check_page(&self, shot: Option<&str>) {
        let outside = self
            .script(
                r#"
                const origin = location.origin;
                const urls = performance.getEntriesByType('resource').map(e => e.name)
                    .concat(performance.getEntriesByType('navigation').map(e => e.name));
                for (const el of document.querySelectorAll('[src],[href],[action],[srcset]')) {
                    for (const a of ['src', 'href', 'action', 'srcset']) {
                        const v = el.getAttribute(a);
                        if (v) urls.push(new URL(v, location.href).href);
                    }
                }
                for (const s of document.querySelectorAll('style')) {
                    for (const m of s.textContent.matchAll(/url\(([^)]*)\)|@import/g)) urls.push(m[0]);
                }
                return urls.filter(u => !(u.startsWith(origin + '/') || u === origin || u.startsWith('data:')));
                "#,
            )
            .await;
        assert_eq!(
            outside,
            json!([]),
            "requests outside the server on {}",
            self.path().await
        );
        let unlabelled = self
            .script(
                r#"
                return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                    .filter(el => el.labels.length === 0).map(el => el.outerHTML);
                "#,
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "controls without a label on {}",
            self.path().await
        );
        if let (Some(dir), Some(name)) = (&self.shots, shot) {
            std::fs::create_dir_all(dir).unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Whether the page fits the window's width (nothing scrolls sideways but the tables'
    /// own wrappers).
    async fn fits(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth;")
            .await
            == json!(true)
    }
}

/// An HTTP client as repnet's own (rustls with its crypto provider).
fn http() -> reqwest::Client {
    repnet_client::http_client_builder().build().unwrap()
}

fn post_json(url: &str, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    block_on(async {
        let mut request = http().post(format!("{url}{path}")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    })
}

async fn get_json(url: &str, token: Option<&str>) -> Value {
    let mut request = http().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

async fn verdict_of(server: &str, path: &str) -> String {
    get_json(&format!("{server}{path}"), None).await["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Whether the browser tests can run here; if not, why (scripts/test.sh installs both).
fn browser_missing() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .find(|path| !Path::new(path).exists())
        .map(|path| {
            format!(
                "{path} is missing: scripts/test.sh installs Debian's chromium and chromium-driver"
            )
        })
}

#[test]
fn an_operator_runs_the_network_from_the_console_in_a_real_browser() {
    if let Some(reason) = browser_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, format!("{QUICK_ENROLMENT}interval_seconds = 1\n")).unwrap();
    let (server, log) = ServerProcess::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    ServerProcess::drain(log, None);
    let base = server.url.clone();
    let (status, body) = post_json(
        &base,
        "/v1/admin/keys",
        &json!({"key": PROXY_KEY, "label": "branch offices"}),
        Some(TOKEN),
    );
    assert_eq!(status, 201, "{body}");
    let proxy_config = dir.path().join("proxy.toml");
    std::fs::write(&proxy_config, "follow_interval_seconds = 1\n").unwrap();
    let proxy = ProxyProcess::start_with(
        &base,
        &dir.path().join("proxy"),
        &[
            "--config",
            proxy_config.to_str().unwrap(),
            "--upstream-key",
            PROXY_KEY,
            "--name",
            "branch-1",
        ],
    );

    // Real traffic: lookups through the server and the proxy, a detection and a report.
    block_on(async {
        let http = http();
        for url in [
            format!("{base}/v1/files/{EICAR}"),
            format!("{base}/v1/domains/example.org"),
            format!("{base}/v1/urls?url=http://example.org/a"),
            format!("{}/v1/files/{EICAR}", proxy.url),
            format!("{}/v1/files/{EICAR}", proxy.url),
        ] {
            assert_eq!(http.get(&url).send().await.unwrap().status(), 200, "{url}");
        }
        let installation = repnet_client::Client::new(&base)
            .unwrap()
            .enrol_installation()
            .await
            .unwrap()
            .installation;
        let other = "ab".repeat(32);
        let batch = json!({
            "statement_version": 1, "installation": installation, "product": "browser-test/1.0",
            "events": [
                {"type": "detection", "file": EICAR, "threat": "EICAR-Test-File"},
                {"type": "false_positive", "file": other, "comment": "our <b>build</b> tool"},
            ],
        });
        let answer = http
            .post(format!("{base}/v1/statistics"))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
    });

    // The proxy's report of its two answers (it reports every second).
    block_on(repnet_testkit::eventually(
        30,
        "the proxy's report",
        || async {
            get_json(&format!("{base}/v1/admin/proxies"), Some(TOKEN)).await["proxies"][0]["lookups"]
                == json!(2)
        },
    ));

    let driver = Driver::start();
    block_on(async {
        let browser = Browser::open(&driver, &base).await;

        // Signed out: sent to sign in. A wrong token is refused; the token signs in.
        browser.go("/console").await;
        assert_eq!(browser.path().await, "/console/login");
        browser.check_page(Some("sign-in")).await;
        browser.fill("#token", "not-the-admin-token-at-all").await;
        browser.click("button[type=submit]").await;
        assert!(browser.text().await.contains("not the admin token"));
        browser.fill("#token", TOKEN).await;
        browser.click("button[type=submit]").await;
        assert_eq!(browser.path().await, "/console/overview");

        // The overview charts the traffic above.
        browser
            .click("a[href='/console/overview?window=hour']")
            .await;
        let text = browser.text().await;
        // Three asked of the server, one asked by the proxy for its first miss (its
        // second answer came from its cache).
        assert!(text.contains("4 lookups in the last hour"), "{text}");
        assert!(
            text.contains("answered from their caches: 50.0 % of 2"),
            "the proxy's report: {text}"
        );
        assert!(text.contains("1 detections in 2 reports"), "{text}");
        assert!(text.contains("EICAR-Test-File"), "{text}");
        let drawn = browser
            .script("return [document.querySelectorAll('figure.chart > svg').length, document.querySelectorAll('figure.chart > svg polyline').length, document.querySelectorAll('rect.bar').length];")
            .await;
        assert_eq!(drawn[0], json!(4), "four charts: {drawn}");
        assert!(
            drawn[1].as_u64().unwrap() >= 7,
            "lines by kind and hit rates: {drawn}"
        );
        assert!(drawn[2].as_u64().unwrap() >= 60, "bars per minute: {drawn}");
        // The lookups line shows the traffic: some point above the axis.
        let lifted = browser
            .script("return [...document.querySelectorAll('#lookups-title ~ svg polyline, figure.chart:first-child polyline')].some(p => p.getAttribute('points').split(' ').some(xy => parseFloat(xy.split(',')[1]) < 150));")
            .await;
        assert_eq!(lifted, json!(true));
        browser.check_page(Some("overview")).await;

        // Keyboard: the first Tab reaches the header's first link, the next the navigation.
        browser
            .client
            .perform_actions(
                KeyActions::new("keyboard".to_owned())
                    .then(KeyAction::Down {
                        value: Key::Tab.into(),
                    })
                    .then(KeyAction::Up {
                        value: Key::Tab.into(),
                    })
                    .then(KeyAction::Down {
                        value: Key::Tab.into(),
                    })
                    .then(KeyAction::Up {
                        value: Key::Tab.into(),
                    }),
            )
            .await
            .unwrap();
        let focused = browser
            .script("return document.activeElement.getAttribute('href');")
            .await;
        assert_eq!(
            focused,
            json!("/console/overview"),
            "Tab order: brand, then the navigation"
        );

        // Look up, with the explanation.
        browser.go("/console/lookup").await;
        browser.fill("#value", EICAR).await;
        browser
            .click("form[action='/console/lookup'] button[type=submit]")
            .await;
        let text = browser.text().await;
        assert!(text.contains("untrusted"), "{text}");
        browser.check_page(Some("lookup")).await;

        // A local verdict, live on the next lookup.
        assert_eq!(
            verdict_of(&base, "/v1/domains/bad.example").await,
            "unknown"
        );
        browser.go("/console/verdicts").await;
        browser
            .client
            .find(Locator::Css("#kind"))
            .await
            .unwrap()
            .select_by_value("domain")
            .await
            .unwrap();
        browser.fill("#value", "bad.example").await;
        browser.fill("#threat", "Phishing.<script>").await;
        browser.fill("#comment", "reported by the SOC").await;
        browser
            .click("form[action='/console/verdicts'] button[type=submit]")
            .await;
        assert!(browser.text().await.contains("Local verdict set"));
        assert!(
            browser.text().await.contains("Phishing.<script>"),
            "shown as text, not run"
        );
        assert_eq!(
            verdict_of(&base, "/v1/domains/bad.example").await,
            "untrusted"
        );
        browser.check_page(Some("verdicts")).await;

        // The false-positive report, accepted in one action: the file is trusted now.
        let other = "ab".repeat(32);
        browser.go("/console/review").await;
        assert!(browser.text().await.contains("our <b>build</b> tool"));
        browser.check_page(Some("review")).await;
        browser
            .click("form[action^='/console/review'] button[value=trusted]")
            .await;
        assert_eq!(
            verdict_of(&base, &format!("/v1/files/{other}")).await,
            "trusted"
        );

        // A licence key: issued (shown once), then revoked.
        browser.go("/console/keys").await;
        browser.fill("#label", "new branch").await;
        browser
            .click("form[action='/console/keys'] button[type=submit]")
            .await;
        let issued = browser
            .script("return [document.querySelector('#issued-key').textContent, document.querySelector('p.hint code').textContent];")
            .await;
        let (key, id) = (
            issued[0].as_str().unwrap().to_owned(),
            issued[1].as_str().unwrap().to_owned(),
        );
        assert!(key.starts_with("repnet-"), "{key}");
        browser.check_page(Some("keys")).await;
        browser.go("/console/keys").await;
        assert!(!browser.text().await.contains(&key), "shown once only");
        assert_eq!(pull_status(&base, &key).await, 200, "the new key pulls");
        browser
            .click(&format!("button[aria-label='Revoke key {id}']"))
            .await;
        assert!(browser.text().await.contains("revoked"));
        assert_ne!(pull_status(&base, &key).await, 200, "revoked");

        // The proxy: listed as it reported, its settings changed here, applied by it.
        let proxies_listed = || async {
            browser.go("/console/proxies").await;
            browser.text().await.contains("branch-1")
        };
        repnet_testkit::eventually(30, "the proxy listed", proxies_listed).await;
        browser.check_page(Some("proxies")).await;
        browser
            .fill("input[name=cache_max_ttl_seconds]", "90")
            .await;
        browser.fill("input[name=cache_max_entries]", "2500").await;
        browser
            .toggle("form[action='/console/proxies'] input[name=enabled]")
            .await;
        browser
            .click("form[action='/console/proxies'] button[type=submit]")
            .await;
        assert!(browser.text().await.contains("Settings saved for"));
        let applied = || async {
            browser.go("/console/proxies").await;
            browser.text().await.contains("revision 1 applied")
        };
        repnet_testkit::eventually(30, "the proxy applied revision 1", applied).await;
        let own = get_json(&format!("{}/v1/admin/settings", proxy.url), Some(TOKEN)).await;
        assert_eq!(
            (
                &own["enabled"],
                &own["cache_max_entries"],
                &own["cache_max_ttl_seconds"]
            ),
            (&json!(false), &json!(2500), &json!(90)),
            "{own}"
        );
        browser.check_page(Some("proxies-applied")).await;

        // The remaining pages render and keep to the server.
        for (path, shot) in [
            ("/console/feeds", "feeds"),
            ("/console/participation", "privacy"),
            ("/console/status", "status"),
        ] {
            browser.go(path).await;
            assert_eq!(browser.path().await, path);
            browser.check_page(Some(shot)).await;
        }

        // A narrow screen: every page fits its width.
        browser.client.set_window_size(390, 844).await.unwrap();
        for path in [
            "/console/overview",
            "/console/lookup",
            "/console/verdicts",
            "/console/review",
            "/console/keys",
            "/console/feeds",
            "/console/proxies",
            "/console/participation",
            "/console/status",
        ] {
            browser.go(path).await;
            assert!(
                browser.fits().await,
                "{path} scrolls sideways on a narrow screen"
            );
        }
        browser.go("/console/overview").await;
        browser.check_page(Some("overview-narrow")).await;
        browser.client.set_window_size(1280, 1000).await.unwrap();

        // Signed out: refused.
        browser.click("header form button[type=submit]").await;
        assert_eq!(browser.path().await, "/console/login");
        browser.go("/console/verdicts").await;
        assert_eq!(browser.path().await, "/console/login");

        // The proxy's own console.
        let proxy_console = Browser {
            client: browser.client.clone(),
            server: proxy.url.clone(),
            shots: browser.shots.clone(),
        };
        proxy_console.go("/console").await;
        proxy_console.fill("#token", TOKEN).await;
        proxy_console.click("button[type=submit]").await;
        assert_eq!(proxy_console.path().await, "/console/status");
        assert!(proxy_console.text().await.contains("revision 1 applied"));
        proxy_console.check_page(Some("proxy-status")).await;
        proxy_console.go("/console/settings").await;
        proxy_console.check_page(Some("proxy-settings")).await;

        browser.client.close().await.unwrap();
    });
    drop(proxy);
    drop(server);
}

/// The status of a pull of the change log (which always takes a licence key) with `key`.
async fn pull_status(base: &str, key: &str) -> u16 {
    http()
        .get(format!("{base}/v1/changes?after=0&limit=1"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
