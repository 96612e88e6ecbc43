//! What the tests that run the real `repnet` binary share: the binary without a developer's
//! settings, a server process on a port the OS chose, and small helpers.
// Each test binary uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub(crate) const EICAR_SHA256: &str =
    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
pub(crate) const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
pub(crate) const TOKEN: &str = "cli-test-admin-token-123456";

/// A server configuration for quick enrolments (see [`ServerProcess::start_with`]).
pub(crate) const QUICK_ENROLMENT: &str = "installation_difficulty = 8\nenrolments_per_address_per_hour = 100000\n\n[engine]\nestablished_after_hours = 0\n";

pub(crate) fn repnet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_repnet"));
    // Tests must not pick up a developer's settings.
    for (key, _) in std::env::vars() {
        if key.starts_with("REPNET_") {
            command.env_remove(key);
        }
    }
    // Nor their client configuration, queue and caches: this run's own (tests that are about
    // the client's files use `client`).
    let client = std::env::temp_dir().join(format!("repnet-cli-tests-{}", std::process::id()));
    // Basic participation chosen, as a user would have on their first run (the tests of the
    // first run start from nothing: `unconfigured_client`).
    chose_basic(&client.join("client.toml"));
    command.env("REPNET_CLIENT_CONFIG", client.join("client.toml"));
    command.env("XDG_CACHE_HOME", client.join("cache"));
    command.env("XDG_STATE_HOME", client.join("state"));
    command
}

pub(crate) fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

/// Runs `future` to its end: these tests are synchronous, the store's API is not.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `repnet serve` process on a port the OS chose, found from its JSON log.
/// A server's log, line by line.
pub(crate) type Log = std::io::Lines<BufReader<std::process::ChildStderr>>;

pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl ServerProcess {
    pub(crate) fn start(data: &Path) -> ServerProcess {
        let (server, log) = ServerProcess::start_with(data, &[]);
        ServerProcess::drain(log, None);
        server
    }

    /// Starts a server with `extra` arguments; answers it and the rest of its log, which the
    /// caller must read or [`drain`](ServerProcess::drain).
    pub(crate) fn start_with(data: &Path, extra: &[&str]) -> (ServerProcess, Log) {
        let mut command = repnet();
        command.arg("serve");
        // Any free port, unless the caller names one.
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        // Enrolments with a light proof of work (a debug build makes the default one in
        // seconds), all the tests' clients on one address, and installations that count at
        // once — unless the caller gives a configuration.
        if !extra.contains(&"--config") {
            let config = data.with_extension("test.toml");
            std::fs::write(&config, QUICK_ENROLMENT).unwrap();
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args(["--log-format", "json", "--data"])
            .arg(data)
            .args(extra)
            .env("REPNET_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (url, lines) = listening_address(&mut child, "server");
        (ServerProcess { child, url }, lines)
    }

    /// Reads the log until a line contains `text`, then keeps draining it so the server
    /// never blocks on a full pipe.
    pub(crate) fn drain(mut lines: Log, until: Option<&str>) -> bool {
        let mut found = until.is_none();
        if let Some(text) = until {
            for line in lines.by_ref() {
                if line.is_ok_and(|line| line.contains(text)) {
                    found = true;
                    break;
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        found
    }

    pub(crate) fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn lookup(server: &ServerProcess, args: &[&str]) -> Output {
    run(repnet()
        .arg("lookup")
        .args(["--server", &server.url])
        .args(args))
}

pub(crate) fn admin(server: &ServerProcess, args: &[&str]) -> Output {
    run(repnet()
        .args(["admin"])
        .args(args)
        .args(["--server", &server.url])
        .env("REPNET_ADMIN_TOKEN", TOKEN))
}

pub(crate) fn status(server: &ServerProcess) -> Value {
    let output = admin(server, &["status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// `repnet` with its own client configuration.
/// Its caches are in `cache/` and its state (the statistics queue, `offline.json`) in `state/`
/// beside the configuration (through `XDG_CACHE_HOME` and `XDG_STATE_HOME`).
pub(crate) fn client(config: &Path) -> Command {
    chose_basic(config);
    unconfigured_client(config)
}

/// `repnet` with a client configuration that may not exist yet: no participation chosen.
pub(crate) fn unconfigured_client(config: &Path) -> Command {
    let mut command = repnet();
    command.arg("--client-config").arg(config);
    let dir = config.parent().unwrap();
    command.env("XDG_CACHE_HOME", dir.join("cache"));
    command.env("XDG_STATE_HOME", dir.join("state"));
    command
}

/// Writes a client configuration with basic participation chosen, unless there is one.
fn chose_basic(config: &Path) {
    if !config.exists() {
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        // Another test of this process may be writing it too: whole or not at all.
        let partial = config.with_extension(
            format!("{:?}", std::thread::current().id())
                .replace(|c: char| !c.is_ascii_alphanumeric(), ""),
        );
        std::fs::write(&partial, "participation = \"basic\"\n").unwrap();
        std::fs::rename(&partial, config).unwrap();
    }
}

/// A state file of the client whose configuration is `config` (see [`client`]).
pub(crate) fn client_state(config: &Path, name: &str) -> std::path::PathBuf {
    config.parent().unwrap().join("state/repnet").join(name)
}

/// A loopback listener that only counts the connections made to it.
pub(crate) fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    counting_listener_at("127.0.0.1:0")
}

/// [`counting_listener`] on `address` (say, where a stopped server listened).
pub(crate) fn counting_listener_at(
    address: &str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind(address).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

/// The server's `/v1/lookup` requests answered 200 so far.
pub(crate) fn lookup_requests(server_url: &str) -> u64 {
    requests_to(server_url, "/v1/lookup")
}

/// The server's requests to `route` answered 200 so far.
/// A server's or proxy's `/metrics` text.
pub(crate) fn metrics_text(url: &str) -> String {
    block_on(async {
        repnet_client::http_client_builder()
            .build()
            .unwrap()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

pub(crate) fn requests_to(server_url: &str, route: &str) -> u64 {
    let text = metrics_text(server_url);
    text.lines()
        .find(|line| {
            line.starts_with(&format!(
                r#"repnet_http_requests_total{{route="{route}",status="200"}}"#
            ))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Reads a `serve` or `proxy` process's JSON log until it says where it listens; answers
/// that address and the rest of the log.
fn listening_address(child: &mut Child, what: &str) -> (String, Log) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the {what} exited before listening"))
            .unwrap();
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(address) = entry["fields"]["address"].as_str() {
            return (address.to_owned(), lines);
        }
    }
}

/// A `repnet proxy` process in front of `upstream`, on a port the OS chose.
pub(crate) struct ProxyProcess {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl ProxyProcess {
    pub(crate) fn start(upstream: &str, data: &Path) -> ProxyProcess {
        ProxyProcess::start_with(upstream, data, &[])
    }

    /// Starts a proxy with `extra` arguments.
    pub(crate) fn start_with(upstream: &str, data: &Path, extra: &[&str]) -> ProxyProcess {
        let mut child = repnet()
            .args([
                "proxy",
                "--upstream",
                upstream,
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .env("REPNET_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (url, lines) = listening_address(&mut child, "proxy");
        std::thread::spawn(move || for _ in lines {});
        ProxyProcess { child, url }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PUT /v1/admin/verdicts` with `body`; answers the status.
pub(crate) fn put_local_verdict(url: &str, body: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        repnet_client::http_client_builder()
            .build()
            .unwrap()
            .put(format!("{url}/v1/admin/verdicts"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

pub(crate) fn write_hash_list(path: &Path, count: u64) {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..count {
        writeln!(file, "{}", repnet_model::Sha256::digest(&i.to_le_bytes())).unwrap();
    }
    file.flush().unwrap();
}
