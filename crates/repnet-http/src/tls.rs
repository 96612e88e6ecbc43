//! HTTPS: a listener that completes TLS handshakes (rustls) before handing connections to
//! the HTTP server. Handshakes run as their own tasks, so a slow or silent client never
//! holds up the others, each must finish within ten seconds, and at most 1,024 run at once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes under way at once; connections past it are closed at once.
const MAX_HANDSHAKES: usize = 1024;

/// Why a certificate and key cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert {}: {source}", path.display())]
    Certificate {
        path: std::path::PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls_cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .0.display())]
    NoCertificate(std::path::PathBuf),
    #[error("tls_key {}: {source}", path.display())]
    Key {
        path: std::path::PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls_cert {} and tls_key {} do not make a usable pair: {source}", cert.display(), key.display())]
    Pair {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        source: rustls::Error,
    },
}

/// Loads a PEM certificate chain and private key, for HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|source| TlsError::Pair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate and key in use, read again from their files on SIGHUP (a renewed
/// certificate is served without a restart).
#[derive(Debug, Clone)]
pub struct Certificates {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl Certificates {
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates, TlsError> {
        Ok(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Arc::new(RwLock::new(server_config(cert, key)?)),
        })
    }

    /// Reads the files again; a pair that is not usable is logged and the one in use kept.
    pub fn reload(&self) {
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
                tracing::info!(cert = %self.cert.display(), "TLS certificate and key read again");
            }
            Err(error) => {
                tracing::warn!(%error, "the TLS certificate or key cannot be used: keeping the ones in use")
            }
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Accepts TCP connections and hands out those whose TLS handshake succeeded.
#[derive(Debug)]
pub struct TlsListener {
    tcp: TcpListener,
    certificates: Certificates,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, certificates: Certificates) -> TlsListener {
        TlsListener {
            tcp,
            certificates,
            handshakes: JoinSet::new(),
        }
    }
}

impl crate::Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, address)) => {
                        if self.handshakes.len() >= MAX_HANDSHAKES {
                            // Closed at once: handshakes cost CPU, and these clients retry.
                            tracing::debug!(%address, "too many TLS handshakes under way: closing a new connection");
                            continue;
                        }
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
                        }
                        let acceptor = self.certificates.acceptor();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, address)),
                                Ok(Err(error)) => {
                                    tracing::debug!(%address, %error, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(%address, "TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
