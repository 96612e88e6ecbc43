//! `repnet bundle`: offline bundles for air-gapped private networks.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use repnet_server::bundle;
use repnet_store::{ChangesAnswer, Store, StoreOptions};

use crate::Outcome;
use crate::admin::ServerArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Create a signing key pair: STEM.key (secret: keep it on the exporting side) and
    /// STEM.pub (give it to the importing side).
    Keygen {
        #[arg(long, value_name = "STEM")]
        out: PathBuf,
    },
    /// Write a signed bundle: the changes after SEQ, or (without --after) a snapshot of the
    /// whole knowledge base.
    Export {
        /// The signing key (`repnet bundle keygen`'s .key file).
        #[arg(long, value_name = "FILE")]
        signing_key: PathBuf,
        /// The bundle file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Export the changes after this sequence number (the importing side's: `repnet admin
        /// status` there shows it as `fed from`) instead of a snapshot.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Read the knowledge base from this data directory (the server must not be running
        /// on it)…
        #[arg(long, value_name = "DIR", conflicts_with = "server")]
        data: Option<PathBuf>,
        /// …or from a running server, with a licence key registered there.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The licence key for --server.
        #[arg(long, env = "REPNET_KEY", value_name = "KEY", hide_env_values = true)]
        key: Option<String>,
        /// CA certificates (PEM) to trust for an https:// --server.
        #[arg(long, env = "REPNET_CA", value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Check a bundle's signature and apply it, into a data directory or a running server.
    Import {
        /// The bundle file.
        file: PathBuf,
        /// Apply it to this data directory (the server must not be running on it)…
        #[arg(long, value_name = "DIR", requires = "public_key")]
        data: Option<PathBuf>,
        /// …checked against this public key (`repnet bundle keygen`'s .pub file). A running
        /// server checks against its own `bundle_public_key`.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Apply it even if it is older than what the server has: a deliberate rollback
        /// (refused otherwise, so that a replayed old bundle cannot undo newer knowledge).
        #[arg(long)]
        force: bool,
        /// …or upload it to a running server (the default when --data is not given).
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(crate) async fn run(command: BundleCommand) -> anyhow::Result<Outcome> {
    match command {
        BundleCommand::Keygen { out } => {
            let (secret, public) = bundle::keygen(&out)?;
            let key = bundle::read_public_key(&public).map_err(anyhow::Error::msg)?;
            println!(
                "wrote {} (secret: keep it where bundles are exported) and {} (public, key {}: configure it as bundle_public_key where they are imported)",
                secret.display(),
                public.display(),
                bundle::fingerprint(&key)
            );
        }
        BundleCommand::Export {
            signing_key,
            out,
            after,
            data,
            server,
            key,
            ca,
        } => {
            let signing_key = bundle::read_secret_key(&signing_key)?;
            let size = match (data, server) {
                (Some(data), None) => export_local(&data, &out, &signing_key, after)?,
                (None, Some(server)) => {
                    let key = key.context(
                        "--server needs a licence key registered there: --key KEY or REPNET_KEY",
                    )?;
                    export_remote(&server, &key, ca.as_deref(), &out, &signing_key, after).await?
                }
                _ => anyhow::bail!(
                    "say where to export from: --data DIR (server stopped) or --server URL --key KEY"
                ),
            };
            println!(
                "wrote {} ({size} bytes), signed with key {}",
                out.display(),
                bundle::fingerprint(&signing_key.verifying_key())
            );
        }
        BundleCommand::Import {
            file,
            data,
            public_key,
            force,
            server,
        } => {
            let applied = match (data, public_key) {
                (Some(data), Some(public_key)) => {
                    let trusted =
                        bundle::read_public_key(&public_key).map_err(anyhow::Error::msg)?;
                    let store = open(&data)?;
                    let name = file.display().to_string();
                    let fed_to = store.sync_state().await?.upstream;
                    let applied = tokio::task::spawn_blocking(move || {
                        bundle::import(&store, &file, &trusted, force, fed_to)
                    })
                    .await
                    .context("the import stopped unexpectedly")?
                    .with_context(|| name)?;
                    bundle::applied_view(&applied)
                }
                (None, _) => {
                    server
                        .client(&Default::default())?
                        .import_bundle(&file, force)
                        .await?
                }
                (Some(_), None) => anyhow::bail!("--data needs --public-key FILE"),
            };
            println!(
                "applied a {} bundle of log {}: {} → {} ({} entries, {} keys changed)",
                applied.kind,
                applied.log_id,
                applied.after,
                applied.to,
                applied.entries,
                applied.keys_written
            );
        }
    }
    Ok(Outcome::Clean)
}

fn open(data: &std::path::Path) -> anyhow::Result<Store> {
    let options = StoreOptions {
        negative_filter: false,
        ..StoreOptions::default()
    };
    Store::open(data, &options)
        .with_context(|| format!("cannot open the knowledge base in {}", data.display()))
}

fn export_local(
    data: &std::path::Path,
    out: &std::path::Path,
    key: &ed25519_dalek::SigningKey,
    after: Option<u64>,
) -> anyhow::Result<u64> {
    let store = open(data)?;
    Ok(bundle::write(out, key, |stream| {
        match after {
            None => {
                store.write_snapshot(stream)?;
            }
            Some(after) => {
                if let ChangesAnswer::SnapshotNeeded(log) =
                    store.write_changes(after, usize::MAX, stream)?
                {
                    return Err(bundle::BundleError::Invalid(if after > log.sequence {
                        format!(
                            "this knowledge base is at {}, before the --after {after} asked for: give the position the importing server was fed to (`repnet admin status` there, line `fed from`, not its own change log), or export a whole bundle (without --after)",
                            log.sequence
                        )
                    } else {
                        format!(
                            "the change log no longer holds the changes after {after} (it holds {} to {}): export a snapshot (without --after)",
                            log.floor + 1,
                            log.sequence
                        )
                    }));
                }
            }
        }
        Ok(())
    })?)
}

async fn export_remote(
    server: &str,
    key: &str,
    ca: Option<&std::path::Path>,
    out: &std::path::Path,
    signing_key: &ed25519_dalek::SigningKey,
    after: Option<u64>,
) -> anyhow::Result<u64> {
    let client = repnet_client::Client::with_ca(server, ca)?.with_licence_key(key.trim());
    let path = match after {
        None => "/v1/snapshot".to_owned(),
        Some(after) => format!("/v1/changes?after={after}&limit=1000000"),
    };
    let response = client.replication_stream(&path).await?;
    let sequence = response
        .headers()
        .get("x-repnet-sequence")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let to = response
        .headers()
        .get("x-repnet-to")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(after), Some(sequence), Some(to)) = (after, sequence, to)
        && to < sequence
    {
        anyhow::bail!(
            "the server has more than 1,000,000 changes after {after} (up to {sequence}): export a snapshot (without --after)"
        );
    }
    // The stream is stored as the server sent it (its own checksum stays valid inside the
    // signed, compressed bundle), spooled to a file next to the bundle rather than held in
    // memory: a snapshot can be gigabytes.
    let dir = out
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let spooled = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(spooled.reopen()?);
    let mut response = response;
    use tokio::io::AsyncWriteExt as _;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| anyhow::anyhow!("the download from {server} failed: {error}"))?
    {
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    let path = spooled.path().to_path_buf();
    Ok(bundle::write(out, signing_key, |stream| {
        let mut input = std::fs::File::open(&path).map_err(|source| bundle::BundleError::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        })?;
        std::io::copy(&mut input, stream)
            .map(|_| ())
            .map_err(|source| bundle::BundleError::Io {
                action: "compress into",
                path: out.display().to_string(),
                source,
            })
    })?)
}
