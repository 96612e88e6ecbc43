//! Small state files (runtime settings, feeds' state, a proxy's keys, a client's caches),
//! written so that a crash leaves either the old file or the new one, never half of one.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path`: to a temporary file in the same folder (created if missing),
/// flushed to disk, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map(|_| ()).map_err(|error| error.error)
}
