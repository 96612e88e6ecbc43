//! Small state files (runtime settings, feeds' state, a proxy's keys, a client's caches),
//! written so that a crash leaves either the old file or the new one, never half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Read, but not what it should hold: `reason` says what was found wrong.
    #[error("{} is damaged ({reason}): fix or delete it", path.display())]
    Damaged { path: PathBuf, reason: String },
}

/// Reads a state file; `None` when there is none.
pub fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to `path`: to a temporary file in the same folder (created if missing),
/// flushed to disk, renamed over `path`, and the folder flushed too, so that the rename
/// itself survives a power cut (on Unix; elsewhere the rename is as durable as the system
/// makes it).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A small secret file read again when it changes (its modification time or size): a licence
/// key that an administrator replaces after a licence change is picked up without a restart.
#[derive(Debug)]
pub struct WatchedFile {
    path: std::path::PathBuf,
    /// The modification time and size when last read.
    stamp: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
}

impl WatchedFile {
    /// Watches `path` as it is now: its current content is the one in use.
    pub fn new(path: &Path) -> WatchedFile {
        let watched = WatchedFile {
            path: path.to_path_buf(),
            stamp: std::sync::Mutex::new(None),
        };
        *watched.lock() = watched.stamp_now();
        watched
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(std::time::SystemTime, u64)>> {
        self.stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stamp_now(&self) -> Option<(std::time::SystemTime, u64)> {
        let metadata = std::fs::metadata(&self.path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    }

    /// The file's content, trimmed, if it changed since it was last read (or always, with
    /// `force`); `None` when it did not, or is empty or unreadable (the caller keeps what it
    /// has, and the error is logged).
    pub fn read_if_changed(&self, force: bool) -> Option<String> {
        let now = self.stamp_now();
        {
            let mut stamp = self.lock();
            if !force && now == *stamp {
                return None;
            }
            *stamp = now;
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            Ok(_) => {
                tracing::warn!(file = %self.path.display(), "the key file is empty: keeping the key in use");
                None
            }
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "cannot read the key file: keeping the key in use");
                None
            }
        }
    }
}
