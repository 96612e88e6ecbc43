//! What repnet's tests share, so that each test file does not grow a harness of its own: a
//! real server ([`Server`]) and a real proxy ([`Proxy`]) on a loopback port the system
//! chooses, stopped cleanly (the store released) by `stop`; [`eventually`], which polls
//! instead of sleeping; and [`Xdg`], temporary XDG directories and a clean environment for
//! the `repnet` binary.
//!
//! Real components, never mocks: the server runs over a real LMDB store in the directory it
//! is given, the proxy in front of whatever upstream its settings name.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test support: a panic is the report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use repnet_client::Client;
use repnet_server::{AdminToken, ServerConfig};
use repnet_store::{Store, StoreOptions};
use serde_json::Value;
use tokio::sync::oneshot;

/// The admin token of the servers and proxies started here (unless told otherwise).
pub const TOKEN: &str = "test-admin-token-0123456789";

/// Polls `check` every 20 ms until it holds, for at most `seconds`; then fails the test
/// naming `what`. A check that does not return is cut off at the deadline too.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(true) => return,
            Ok(false) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            ),
            Err(_) => panic!("timed out waiting for {what} (the last check never returned)"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Aborts the whole test process, saying why, unless dropped within `seconds`. For a test
/// whose failure would be a hang in synchronous code (a deadlock), which no async timeout
/// interrupts and which would otherwise hold up the suite until CI's own limit.
#[derive(Debug)]
#[must_use = "the watchdog guards until it is dropped"]
pub struct Watchdog {
    _done: std::sync::mpsc::Sender<()>,
}

pub fn watchdog(seconds: u64, what: &'static str) -> Watchdog {
    let (done, watched) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // Disconnected: the guard was dropped in time.
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            watched.recv_timeout(Duration::from_secs(seconds))
        {
            // Straight to the descriptor: the test harness's capture of `eprintln!` would
            // never be printed.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("watchdog: {what} did not finish within {seconds} s; aborting the tests\n")
                    .as_bytes(),
            );
            std::process::abort();
        }
    });
    Watchdog { _done: done }
}

/// Something served over HTTP: where it is.
pub trait Endpoint {
    /// `http://127.0.0.1:PORT`.
    fn base(&self) -> &str;
}

impl Endpoint for Server {
    fn base(&self) -> &str {
        &self.base
    }
}

impl Endpoint for Proxy {
    fn base(&self) -> &str {
        &self.base
    }
}

/// The steps of a long scenario test: a failure names the step it happened in, as the last
/// line of the test's output (`the scenario failed in the step: …`).
#[derive(Debug)]
pub struct Steps {
    current: &'static str,
}

impl Steps {
    pub fn new(first: &'static str) -> Steps {
        eprintln!("step: {first}");
        Steps { current: first }
    }

    /// The scenario goes on to the step `name`.
    pub fn next(&mut self, name: &'static str) {
        eprintln!("step: {name}");
        self.current = name;
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the scenario failed in the step: {}", self.current);
        }
    }
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The admin token; `None` turns the admin API off.
    pub admin_token: Option<String>,
    /// The CA file the clients trust (a server with TLS).
    pub ca: Option<PathBuf>,
    /// Where to listen: loopback port 0 unless a test needs an address again (a server that
    /// goes away and comes back).
    pub address: SocketAddr,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            admin_token: Some(TOKEN.to_owned()),
            ca: None,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl Options {
    /// No admin token: the admin API is off.
    pub fn without_admin() -> Options {
        Options {
            admin_token: None,
            ..Options::default()
        }
    }
}

/// A served thing's address, and how to stop it.
#[derive(Debug)]
struct Running {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("serve");
        }
    }
}

/// A real `repnet serve`, in this process.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` with TLS).
    pub base: String,
    /// A client with the admin token (no licence key).
    pub admin: Client,
    /// Plain HTTP, for what the client does not say (headers, bad bodies).
    pub http: reqwest::Client,
    running: Running,
}

impl Server {
    /// A server over the store in `dir`, with `config` and the admin token [`TOKEN`].
    pub async fn start(dir: &Path, config: ServerConfig) -> Server {
        Server::start_with(dir, config, Options::default()).await
    }

    pub async fn start_with(dir: &Path, config: ServerConfig, options: Options) -> Server {
        config.validate().expect("a valid configuration");
        let store = Store::open(
            dir,
            &StoreOptions {
                change_log_max: config.change_log_max,
                ..StoreOptions::default()
            },
        )
        .expect("open the store");
        let token = options
            .admin_token
            .as_deref()
            .map(|token| AdminToken::new(token).expect("admin token"));
        let server = repnet_server::Server::new(store, &config, token)
            .await
            .expect("start the server");
        let listener = tokio::net::TcpListener::bind(options.address)
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        // Certificates in the tests name `localhost`.
        let base = if server.scheme() == "https" {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        let mut admin = Client::with_ca(&base, options.ca.as_deref()).expect("client");
        if let Some(token) = &options.admin_token {
            admin = admin.with_admin_token(token);
        }
        Server {
            admin,
            http: http_client(options.ca.as_deref()),
            running: Running {
                shutdown: Some(shutdown),
                task: Some(task),
            },
            base,
        }
    }

    /// A client that sends `key` as its licence key.
    pub fn with_key(&self, key: &str) -> Client {
        Client::new(&self.base)
            .expect("client")
            .with_licence_key(key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: the status and the JSON body (`null` when not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `method path` with an optional JSON body and bearer token: the status and the JSON
    /// body (`null` when not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Requests to the route pattern `route` answered 200 so far, from `/metrics`.
    pub async fn requests_to(&self, route: &str) -> u64 {
        requests_to(&self.http, &self.base, route).await
    }

    /// Stops the server and waits until it has released the store.
    pub async fn stop(mut self) {
        self.running.stop().await;
    }
}

/// A real `repnet proxy`, in this process.
#[derive(Debug)]
pub struct Proxy {
    pub base: String,
    pub http: reqwest::Client,
    running: Running,
}

impl Proxy {
    /// A proxy with `config` and the admin token [`TOKEN`].
    pub async fn start(config: repnet_proxy::ProxyConfig) -> Proxy {
        let proxy = repnet_proxy::Proxy::new(config, Some(AdminToken::new(TOKEN).unwrap()))
            .await
            .expect("start the proxy");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(proxy.run(listener, async {
            let _ = stopped.await;
        }));
        Proxy {
            http: http_client(None),
            running: Running {
                shutdown: Some(shutdown),
                task: Some(task),
            },
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        self.running.stop().await;
    }
}

fn http_client(ca: Option<&Path>) -> reqwest::Client {
    let mut builder = repnet_client::http_client_builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read the CA");
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM CA"));
    }
    builder.build().expect("client")
}

/// Requests to `route` that the server or proxy at `base` answered 200 so far.
pub async fn requests_to(http: &reqwest::Client, base: &str, route: &str) -> u64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!(r#"repnet_http_requests_total{{route="{route}",status="200"}}"#);
    text.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Temporary XDG directories (configuration, caches, state) for the `repnet` binary, removed
/// when dropped, and an environment without the developer's `REPNET_*` settings.
#[derive(Debug)]
pub struct Xdg {
    dir: tempfile::TempDir,
}

impl Xdg {
    pub fn new() -> Xdg {
        Xdg {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn cache_home(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn state_home(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Points `command` at these directories and clears `REPNET_*` from its environment.
    pub fn apply(&self, command: &mut std::process::Command) {
        for (key, _) in std::env::vars() {
            if key.starts_with("REPNET_") {
                command.env_remove(key);
            }
        }
        command
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_CACHE_HOME", self.cache_home())
            .env("XDG_STATE_HOME", self.state_home());
    }
}

impl Default for Xdg {
    fn default() -> Xdg {
        Xdg::new()
    }
}

/// A real Redis Cluster of Debian's `redis-server` on loopback: three masters and three
/// replicas, each with its own directory (append-only file on, so a restarted node keeps what
/// it acknowledged), created with `redis-cli --cluster create`. Every test that needs one
/// starts its own — a test that kills a master must not take another test's data with it —
/// and dropping it kills every node and removes the files.
#[derive(Debug)]
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<RedisNode>,
    /// The `redis-server` binary, and whether nodes keep an append-only file.
    server: std::path::PathBuf,
    append_only: bool,
}

#[derive(Debug)]
struct RedisNode {
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisCluster {
    /// Starts the six nodes and waits until the cluster serves every slot.
    pub fn start() -> RedisCluster {
        RedisCluster::launch(std::path::Path::new("redis-server"), true)
    }

    /// The same cluster of `server` (a `redis-server` binary) without persistence: for
    /// benchmarks, where an append-only file would measure the disk.
    pub fn start_in_memory(server: &std::path::Path) -> RedisCluster {
        RedisCluster::launch(server, false)
    }

    /// Six nodes answering `PING`, or the port of one that exited (the others are stopped
    /// when the cluster is dropped).
    fn spawn_nodes(server: &std::path::Path, append_only: bool) -> Result<RedisCluster, u16> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports = free_cluster_ports(6);
        let mut cluster = RedisCluster {
            dir,
            nodes: Vec::new(),
            server: server.to_path_buf(),
            append_only,
        };
        for port in ports {
            let child = cluster.spawn(port);
            cluster.nodes.push(RedisNode {
                port,
                child: Some(child),
            });
        }
        for node in &mut cluster.nodes {
            let port = node.port;
            let mut exited = false;
            wait_until(
                30,
                &format!("redis-server on port {port} to answer"),
                || {
                    exited = node
                        .child
                        .as_mut()
                        .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
                    exited
                        || redis_cli(port, &["ping"]).is_some_and(|answer| answer.trim() == "PONG")
                },
            );
            if exited {
                return Err(port);
            }
        }
        Ok(cluster)
    }

    fn launch(server: &std::path::Path, append_only: bool) -> RedisCluster {
        // A port found free may be taken before redis-server binds it (its cluster bus port,
        // 10,000 above, lies in the range the system gives outgoing connections): a node that
        // exits at once is started again on other ports.
        let mut attempts = 0;
        let cluster = loop {
            attempts += 1;
            match RedisCluster::spawn_nodes(server, append_only) {
                Ok(cluster) => break cluster,
                Err(port) => assert!(
                    attempts < 5,
                    "redis-server on port {port} exited at start, {attempts} times: see its log"
                ),
            }
        };
        let addresses = cluster.addresses();
        let mut create = std::process::Command::new("redis-cli");
        create.args(["--cluster", "create"]).args(&addresses).args([
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]);
        let output = create.output().expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for node in &cluster.nodes {
            wait_until(60, "the cluster to serve every slot", || {
                redis_cli(node.port, &["cluster", "info"]).is_some_and(|info| {
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_ok:16384")
                        && info.contains("cluster_known_nodes:6")
                })
            });
        }
        wait_until(60, "three masters and three replicas", || {
            cluster.master_ports().len() == 3 && cluster.replica_ports().len() == 3
        });
        for port in cluster.replica_ports() {
            wait_until(60, "every replica to be in sync with its master", || {
                redis_cli(port, &["info", "replication"])
                    .is_some_and(|info| info.contains("master_link_status:up"))
            });
        }
        cluster
    }

    fn spawn(&self, port: u16) -> std::process::Child {
        let home = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&home).expect("node directory");
        std::process::Command::new(&self.server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--appendonly", if self.append_only { "yes" } else { "no" }])
            .args(["--save", ""])
            // Replicas synchronise at once, not after the default 5 s wait for others: a
            // replica that never synchronised cannot take over from its master.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&home)
            .arg("--logfile")
            .arg(home.join("redis.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/test.sh installs it)")
    }

    /// `127.0.0.1:PORT` of every node, masters and replicas.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect()
    }

    /// The ports of the nodes that are masters now (and not failing), as a live node sees it.
    pub fn master_ports(&self) -> Vec<u16> {
        self.ports_with_role("master")
    }

    /// The ports of the nodes that are replicas now.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.ports_with_role("slave")
    }

    fn ports_with_role(&self, role: &str) -> Vec<u16> {
        let nodes = redis_cli(self.live_port(), &["cluster", "nodes"]).unwrap_or_default();
        nodes
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let address = fields.nth(1)?;
                let flags: Vec<&str> = fields.next()?.split(',').collect();
                let failing = flags.iter().any(|flag| flag.starts_with("fail"));
                (flags.contains(&role) && !failing)
                    .then(|| address.split(['@', ':']).nth(1)?.parse().ok())?
            })
            .collect()
    }

    /// Waits until every replica has every write its master took (Redis replicates
    /// asynchronously: a write acknowledged by a master that dies before this can be lost,
    /// which is what `WAIT` is for).
    pub fn wait_for_replication(&self) {
        for port in self.master_ports() {
            wait_until(60, "the replicas to catch up", || {
                let Some(info) = redis_cli(port, &["info", "replication"]) else {
                    return false;
                };
                let field = |line: &str, name: &str| -> Option<u64> {
                    line.split(',')
                        .find_map(|part| part.strip_prefix(name))?
                        .trim()
                        .parse()
                        .ok()
                };
                let master = info
                    .lines()
                    .find_map(|line| line.strip_prefix("master_repl_offset:"))
                    .and_then(|offset| offset.trim().parse::<u64>().ok());
                let replicas: Vec<u64> = info
                    .lines()
                    .filter(|line| line.starts_with("slave"))
                    .filter_map(|line| field(line, "offset="))
                    .collect();
                master.is_some_and(|master| {
                    !replicas.is_empty() && replicas.iter().all(|offset| *offset == master)
                })
            });
        }
    }

    /// Kills the node on `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every node with SIGKILL: the cluster is down until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        let ports: Vec<u16> = self.nodes.iter().map(|node| node.port).collect();
        for port in ports {
            self.kill(port);
        }
    }

    /// Starts every stopped node again, on its port and in its directory (its append-only
    /// file and cluster configuration kept), and waits until the cluster serves every slot.
    pub fn restart(&mut self) {
        for index in 0..self.nodes.len() {
            if self.nodes[index].child.is_none() {
                let child = self.spawn(self.nodes[index].port);
                self.nodes[index].child = Some(child);
            }
        }
        for node in &self.nodes {
            wait_until(60, "the restarted cluster to serve every slot", || {
                redis_cli(node.port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
        }
    }

    /// Kills the master on `victim` with SIGKILL once its replica has its writes, and waits
    /// until its replica has taken over and every live node sees the cluster whole (each
    /// learns of the failover by gossip; one that has not yet answers CLUSTERDOWN).
    pub fn fail_over(&mut self, victim: u16) {
        self.wait_for_replication();
        self.kill(victim);
        let live: Vec<u16> = self
            .nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect();
        wait_until(60, "the failover", || {
            let masters = self.master_ports();
            !masters.contains(&victim)
                && masters.len() == 3
                && live.iter().all(|port| {
                    redis_cli(*port, &["cluster", "info"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                })
        });
    }

    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|node| node.child.is_some())
            .expect("a live node")
            .port
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `redis-cli -p PORT ARGS…`'s output, or `None` when it fails.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Polls `check` every 50 ms until it holds, for at most `seconds` (for synchronous tests).
/// The Python environment `scripts/test.sh` prepares (`REPNET_TEST_VENV`, else
/// `target/test-venv`) with the tools and clients of `scripts/test-requirements.txt`, or why
/// a test that needs it cannot run (it then says so and skips).
pub fn test_venv() -> Result<std::path::PathBuf, String> {
    let venv = std::env::var_os("REPNET_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv")
        });
    if venv.join("bin/python").exists() {
        Ok(venv)
    } else {
        Err(format!(
            "no Python environment at {}: scripts/test.sh prepares it (scripts/test-requirements.txt)",
            venv.display()
        ))
    }
}

pub fn wait_until(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // The pace of the polling (as `eventually`'s tokio sleep), not a wait for readiness:
        // the condition is checked again each time.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` loopback ports free now, each with its cluster bus port (+10000) free too. Drawn
/// from 20000–29999 so that the bus ports stay below 65536 (the system's ephemeral range
/// would not).
fn free_cluster_ports(count: usize) -> Vec<u16> {
    // Ports already given to a cluster of this process, which may not be listening yet: two
    // tests starting clusters at once must not both find them free.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let start = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    let mut ports = Vec::new();
    let mut port = start;
    while ports.len() < count {
        if !given.contains(&port) && free(port) && free(port + 10_000) {
            ports.push(port);
            given.push(port);
        }
        port = if port >= 29_999 { 20_000 } else { port + 1 };
        assert_ne!(port, start, "no free ports for a Redis Cluster");
    }
    ports
}
