//! Offline bundles: a replication stream (changes or a snapshot), compressed and signed, for
//! networks without a route to the upstream (`repnet bundle export|import`, and
//! `POST /v1/admin/bundles` on a running server).
//!
//! ```text
//! "RNBUNDLE"  u8 version = 1  [32] signer's Ed25519 public key  [64] signature
//! zstd-compressed replication stream (repnet_store::sync)
//! ```
//!
//! The signature is Ed25519 over `"repnet bundle v1\0"` followed by the SHA-256 of the
//! compressed stream. An importer checks it against the public key it was configured with
//! before reading the stream, then applies the stream as a pull would: it must continue
//! where the receiver is (the store checks that in the transaction that applies it).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use repnet_protocol::BundleApplied;
use repnet_store::sync::StreamReader;
use repnet_store::{Store, StreamApplied};
use sha2::Digest as _;

const MAGIC: &[u8; 8] = b"RNBUNDLE";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 32 + 64;
const CONTEXT: &[u8] = b"repnet bundle v1\0";
const SECRET_PREFIX: &str = "repnet-bundle-secret-key-v1 ";
const PUBLIC_PREFIX: &str = "repnet-bundle-public-key-v1 ";

/// Why a bundle cannot be made or used. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Invalid(String),
    #[error("the bundle's signature does not verify: {0}")]
    Signature(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// The bundle is older than what the server has from the same log: applying it would roll
    /// the knowledge base back.
    #[error("{0}")]
    Older(String),
    #[error(transparent)]
    Store(#[from] repnet_store::StoreError),
    #[error("{} is not a bundle public key: give the .pub file `repnet bundle keygen` made", .0.display())]
    NotAPublicKey(std::path::PathBuf),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + use<> {
    let path = path.display().to_string();
    move |source| BundleError::Io {
        action,
        path,
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (index, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        out[index] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A short, shareable name of a public key: its first 8 bytes in hex.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex(&key.as_bytes()[..8])
}

/// Creates a signing key pair: `<stem>.key` (secret, readable by its owner only) and
/// `<stem>.pub`. Refuses to overwrite either.
pub fn keygen(stem: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), BundleError> {
    let secret_path = stem.with_extension("key");
    let public_path = stem.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(BundleError::Invalid(format!(
                "{} exists already: keys are never overwritten; choose another --out",
                path.display()
            )));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| {
        BundleError::Invalid(format!("the system gave no randomness for a key: {error}"))
    })?;
    let secret = SigningKey::from_bytes(&seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&secret_path)
        .map_err(io("create", &secret_path))?;
    writeln!(file, "{SECRET_PREFIX}{}", hex(&seed)).map_err(io("write", &secret_path))?;
    std::fs::write(
        &public_path,
        format!(
            "{PUBLIC_PREFIX}{}\n",
            hex(secret.verifying_key().as_bytes())
        ),
    )
    .map_err(io("write", &public_path))?;
    Ok((secret_path, public_path))
}

pub fn read_secret_key(path: &Path) -> Result<SigningKey, BundleError> {
    let text = std::fs::read_to_string(path).map_err(io("read the signing key", path))?;
    text.trim()
        .strip_prefix(SECRET_PREFIX)
        .and_then(unhex::<32>)
        .map(|seed| SigningKey::from_bytes(&seed))
        .ok_or_else(|| {
            BundleError::Invalid(format!(
                "{} is not a bundle signing key: make one with `repnet bundle keygen`",
                path.display()
            ))
        })
}

/// Reads a public key file (`repnet bundle keygen`'s `.pub`).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    text.trim()
        .strip_prefix(PUBLIC_PREFIX)
        .and_then(unhex::<32>)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| BundleError::NotAPublicKey(path.to_path_buf()))
}

fn message(digest: &[u8; 32]) -> Vec<u8> {
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(digest);
    message
}

/// Writes a bundle to `out`: `write_stream` writes the replication stream (into a zstd
/// encoder); the header and signature are written last, over the finished payload. Answers
/// the bundle's size.
pub fn write(
    out: &Path,
    key: &SigningKey,
    write_stream: impl FnOnce(&mut dyn Write) -> Result<(), BundleError>,
) -> Result<u64, BundleError> {
    let mut file = File::create(out).map_err(io("create", out))?;
    file.write_all(&[0u8; HEADER_LEN])
        .map_err(io("write", out))?;
    let mut hashing = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: sha2::Sha256::new(),
    };
    {
        let mut encoder =
            zstd::stream::Encoder::new(&mut hashing, 3).map_err(io("compress into", out))?;
        write_stream(&mut encoder)?;
        encoder.finish().map_err(io("compress into", out))?;
    }
    let HashingWriter { inner, hasher } = hashing;
    let mut file = inner
        .into_inner()
        .map_err(|error| io("write", out)(error.into_error()))?;
    let digest: [u8; 32] = hasher.finalize().into();
    let signature = key.sign(&message(&digest));
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    header.extend_from_slice(key.verifying_key().as_bytes());
    header.extend_from_slice(&signature.to_bytes());
    file.seek(SeekFrom::Start(0)).map_err(io("write", out))?;
    file.write_all(&header).map_err(io("write", out))?;
    file.sync_all().map_err(io("write", out))?;
    file.metadata().map(|m| m.len()).map_err(io("write", out))
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks the bundle in `path` against `trusted`, then applies it to `store`, whose cursor
/// in the log it was fed from is `fed_to` (its [`SyncState::upstream`](repnet_store::SyncState),
/// read just before). Blocking.
pub fn import(
    store: &Store,
    path: &Path,
    trusted: &VerifyingKey,
    force: bool,
    fed_to: Option<repnet_store::Cursor>,
) -> Result<StreamApplied, BundleError> {
    let mut file = File::open(path).map_err(io("open the bundle", path))?;
    let mut header = [0u8; HEADER_LEN];
    // The messages do not name `path`: on a server it is a temporary file of its own,
    // which a client has no business knowing; the CLI names its file itself.
    file.read_exact(&mut header)
        .map_err(|_| BundleError::Invalid("not a repnet bundle (too short)".to_owned()))?;
    if &header[..8] != MAGIC {
        return Err(BundleError::Invalid(
            "not a repnet bundle (no RNBUNDLE header)".to_owned(),
        ));
    }
    if header[8] != VERSION {
        return Err(BundleError::Invalid(format!(
            "the bundle has version {}, this repnet reads {VERSION}: upgrade repnet",
            header[8]
        )));
    }
    let signer = <[u8; 32]>::try_from(&header[9..41])
        .ok()
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| BundleError::Signature("its signer's key is malformed".to_owned()))?;
    if signer != *trusted {
        return Err(BundleError::Signature(format!(
            "it was signed by key {}, and this server trusts key {}: import bundles from your own provider, or configure its public key",
            fingerprint(&signer),
            fingerprint(trusted)
        )));
    }
    let signature = Signature::from_slice(&header[41..105])
        .map_err(|_| BundleError::Signature("the signature is malformed".to_owned()))?;
    let mut hasher = sha2::Sha256::new();
    let mut reader = BufReader::with_capacity(1 << 20, &mut file);
    std::io::copy(&mut reader, &mut HashOnly(&mut hasher)).map_err(io("read the bundle", path))?;
    drop(reader);
    let digest: [u8; 32] = hasher.finalize().into();
    trusted.verify(&message(&digest), &signature).map_err(|_| {
        BundleError::Signature(
            "the content was changed after signing (or the file is damaged): get the bundle again"
                .to_owned(),
        )
    })?;
    file.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(io("read the bundle", path))?;
    let decoder = zstd::stream::Decoder::new(file).map_err(io("decompress the bundle", path))?;
    let stream = StreamReader::new(BufReader::with_capacity(1 << 20, decoder))
        .map_err(repnet_store::StoreError::from)?;
    // A signed bundle stays valid forever: an old snapshot replayed would roll the knowledge
    // base back to it. Refused unless the administrator says so.
    let header = *stream.header();
    if let Some(cursor) = fed_to
        && cursor.log_id == header.log_id
        && header.to < cursor.sequence
        && !force
    {
        return Err(BundleError::Older(format!(
            "the bundle ends at {} of log {}, and this server already has up to {}: applying it would roll the knowledge base back. Import a newer bundle, or force it (repnet bundle import --force; force=true)",
            header.to, header.log_id, cursor.sequence
        )));
    }
    Ok(store.apply_stream(stream)?)
}

struct HashOnly<'a>(&'a mut sha2::Sha256);

impl Write for HashOnly<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The answer to a bundle import.
pub fn applied_view(applied: &repnet_store::StreamApplied) -> BundleApplied {
    BundleApplied {
        kind: match applied.header.kind {
            repnet_store::sync::StreamKind::Changes => "changes",
            repnet_store::sync::StreamKind::Snapshot => "snapshot",
        }
        .to_owned(),
        log_id: applied.header.log_id.to_string(),
        after: applied.header.after,
        to: applied.header.to,
        entries: applied.entries,
        keys_written: applied.keys_written,
    }
}
