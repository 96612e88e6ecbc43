//! A real server for end-to-end tests: a store in a directory, the server on a loopback port
//! 0, HTTP or HTTPS, stopped cleanly (releasing the store) by `stop`.

#![allow(dead_code, unreachable_pub)] // Each test file uses part of it.

use std::path::Path;

use repnet_client::Client;
use repnet_server::{AdminToken, Server, ServerConfig};
use repnet_store::{Store, StoreOptions};
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct TestServer {
    /// An admin client (no licence key).
    pub admin: Client,
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(dir: &Path, config: ServerConfig) -> TestServer {
        TestServer::start_with_ca(dir, config, None).await
    }

    /// `ca`: the CA file the admin client trusts, for a server with TLS.
    pub async fn start_with_ca(dir: &Path, config: ServerConfig, ca: Option<&Path>) -> TestServer {
        config.validate().unwrap();
        let options = StoreOptions {
            change_log_max: config.change_log_max,
            ..StoreOptions::default()
        };
        let store = Store::open(dir, &options).unwrap();
        let server = Server::new(store, &config, Some(AdminToken::new(TOKEN).unwrap())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Certificates in the tests name `localhost`.
        let base = if server.scheme() == "https" {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(listener, async {
            let _ = rx.await;
        }));
        TestServer {
            admin: Client::with_ca(&base, ca).unwrap().with_admin_token(TOKEN),
            base,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A client that sends `key` as its licence key.
    pub fn with_key(&self, key: &str) -> Client {
        Client::new(&self.base).unwrap().with_licence_key(key)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Polls `check` every 20 ms until it holds, for at most `seconds`.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
