//! `repnet admin backup DIR` and `repnet admin restore BACKUP --data DIR`: a running
//! server's knowledge base and state files, copied consistently (LMDB's compacted copy, by
//! the server) into a directory; and back into an empty data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use repnet_protocol::BACKUP_FILES;

use crate::Outcome;

/// Fails unless `dir` is absent or an empty directory: a backup or a restore never mixes
/// its files with others.
fn require_empty(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: {what} goes into a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Makes `dir`'s entries durable: its files were fsynced, this records their names.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// `repnet admin backup DIR`: downloads the server's backup archive and unpacks its files
/// (only the known ones) into `dir`, each synced to disk.
pub(crate) async fn backup(dir: &Path, client: &repnet_client::Client) -> anyhow::Result<Outcome> {
    require_empty(dir, "a backup")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The archive is spooled beside the backup, then unpacked: a transfer that breaks off
    // leaves no half-written database in `dir`.
    let mut archive = tempfile::tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let bytes = client.backup(&mut archive).await?;
    let files = tokio::task::spawn_blocking({
        let dir = dir.to_path_buf();
        move || unpack(archive, &dir)
    })
    .await
    .context("the unpacking stopped unexpectedly")??;
    println!(
        "backed up {} ({bytes} bytes) into {}: {}",
        client.base_url(),
        dir.display(),
        files.join(", ")
    );
    println!(
        "restore it with: repnet admin restore {} --data NEW-DATA-DIR",
        dir.display()
    );
    Ok(Outcome::Clean)
}

/// Unpacks the backup's files into `dir`; answers their names. Anything but the known files
/// (a path, a link, another name) is refused: the archive comes over the network.
fn unpack(mut archive: std::fs::File, dir: &Path) -> anyhow::Result<Vec<String>> {
    use std::io::Seek as _;
    archive
        .rewind()
        .context("cannot read the downloaded backup")?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(archive));
    let mut names = Vec::new();
    for entry in tar.entries().context("the backup is not a tar archive")? {
        let mut entry = entry.context("the backup archive is damaged")?;
        let name = entry
            .path()
            .ok()
            .and_then(|path| path.to_str().map(str::to_owned))
            .unwrap_or_default();
        if !entry.header().entry_type().is_file()
            || !BACKUP_FILES.contains(&name.as_str())
            || names.contains(&name)
        {
            bail!("the backup holds an unexpected entry {name:?}: it is not a repnet backup");
        }
        let path = dir.join(&name);
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::io::copy(&mut entry, &mut file)
            .and_then(|_| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        names.push(name);
    }
    if names.first().map(String::as_str) != Some(BACKUP_FILES[0]) {
        bail!(
            "the backup holds no knowledge base ({}): it is not a repnet backup",
            BACKUP_FILES[0]
        );
    }
    sync_dir(dir)?;
    Ok(names)
}

/// `repnet admin restore BACKUP --data DIR`: copies a backup's files into a new or empty
/// data directory, then opens the knowledge base there to check it.
pub(crate) async fn restore(backup: &Path, data: &Path) -> anyhow::Result<Outcome> {
    let database = backup.join(BACKUP_FILES[0]);
    if !database.is_file() {
        bail!(
            "{} holds no {}: give the directory `repnet admin backup` wrote",
            backup.display(),
            BACKUP_FILES[0]
        );
    }
    require_empty(data, "a restore")?;
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let mut restored = Vec::new();
    for name in BACKUP_FILES {
        let from = backup.join(name);
        if !from.is_file() {
            continue;
        }
        let to: PathBuf = data.join(name);
        std::fs::copy(&from, &to)
            .and_then(|_| std::fs::File::open(&to)?.sync_all())
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        restored.push(name);
    }
    sync_dir(data)?;
    let store = repnet_store::Store::open(data, &repnet_store::StoreOptions::default())
        .with_context(|| {
            format!(
                "the restored knowledge base in {} does not open",
                data.display()
            )
        })?;
    let stats = store.stats().await?;
    println!(
        "restored {} into {} ({} entries in the knowledge base): start the server with --data {}",
        restored.join(", "),
        data.display(),
        stats.keys,
        data.display()
    );
    Ok(Outcome::Clean)
}
