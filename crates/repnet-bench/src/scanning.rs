//! The `scan` scenario: `repnet scan` over a generated tree (20,000 files, about 2 GB, the
//! page cache warm), against `sha256sum` over the same files in one process and in two
//! (`xargs -P2`), and against itself without lookups (hashing alone: all three hashes, and
//! SHA-256 only).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const FILES: usize = 20_000;

/// What the scenario measured: seconds for each way over the same files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanResults {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    pub(crate) sha256sum: Duration,
    pub(crate) sha256sum_parallel: Duration,
    /// MD5, SHA-1 and SHA-256 (the default), no lookups.
    pub(crate) hashing_alone: Duration,
    /// `--hashes sha256`, no lookups: the path before files were looked up by every hash.
    pub(crate) sha256_alone: Duration,
    pub(crate) scan: Duration,
}

/// Writes the tree: 100 folders of 200 files, sizes from 1 KB to about 200 KB.
fn generate(tree: &Path, seed: u64) -> anyhow::Result<u64> {
    let mut rng = crate::keys::Rng::new(seed.wrapping_add(11));
    let mut bytes = 0;
    let mut block = vec![0u8; 256 << 10];
    for chunk in block.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
    }
    for index in 0..FILES {
        let folder = tree.join(format!("d{:03}", index / 200));
        std::fs::create_dir_all(&folder)?;
        let size = 1024 + (rng.next_u64() % (200 << 10)) as usize;
        // Distinct content: the file's number in its first bytes.
        let start = (rng.next_u64() as usize) % (block.len() - size);
        let mut content = block[start..start + size].to_vec();
        content[..8].copy_from_slice(&(index as u64).to_le_bytes());
        std::fs::write(folder.join(format!("f{index:05}.bin")), &content)?;
        bytes += size as u64;
    }
    Ok(bytes)
}

fn timed(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() && status.code() != Some(1) {
        bail!("{command:?} failed: {status}");
    }
    Ok(started.elapsed())
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    command
}

pub(crate) fn run(
    repnet: &Path,
    work_dir: &Path,
    server: std::net::SocketAddr,
    seed: u64,
) -> anyhow::Result<ScanResults> {
    let dir = work_dir.join("scan");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let tree = dir.join("tree");
    let bytes = generate(&tree, seed)?;
    let tree_text = tree.display().to_string();
    // Warm the page cache, then measure each way once more.
    timed(&mut shell(&format!(
        "find {tree_text} -type f -print0 | xargs -0 cat > /dev/null"
    )))?;
    let sha256sum = timed(&mut shell(&format!(
        "find {tree_text} -type f -print0 | xargs -0 sha256sum > /dev/null"
    )))?;
    let sha256sum_parallel = timed(&mut shell(&format!(
        "find {tree_text} -type f -print0 | xargs -0 -P2 -n 1000 sha256sum > /dev/null"
    )))?;
    let scan = |config: &Path, participation: &str, extra: &[&str]| -> anyhow::Result<Duration> {
        // Chosen, as a user does on the first run (or nothing would be sent).
        std::fs::create_dir_all(config.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(config, format!("participation = \"{participation}\"\n"))?;
        timed(
            Command::new(repnet)
                .arg("--client-config")
                .arg(config)
                .args([
                    "scan",
                    &tree_text,
                    "--server",
                    &format!("http://{server}"),
                    "--format",
                    "csv",
                ])
                .args(extra),
        )
    };
    let sha256_alone = scan(
        &dir.join("sha256").join("client.toml"),
        "off",
        &["--hashes", "sha256"],
    )?;
    let hashing_alone = scan(&dir.join("offline").join("client.toml"), "off", &[])?;
    let scan_time = scan(&dir.join("online").join("client.toml"), "basic", &[])?;
    std::fs::remove_dir_all(&dir)?;
    Ok(ScanResults {
        files: FILES,
        bytes,
        sha256sum,
        sha256sum_parallel,
        hashing_alone,
        sha256_alone,
        scan: scan_time,
    })
}

/// What the rescan scenario measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RescanResults {
    pub(crate) files: usize,
    /// `find -printf` of every file's size: the walk and a `stat` of each, nothing more.
    pub(crate) walk: Duration,
    /// The first scan: every file hashed and looked up.
    pub(crate) first: Duration,
    /// The second: nothing read, nothing asked.
    pub(crate) rescan: Duration,
    /// The client's cache directory afterwards.
    pub(crate) cache_bytes: u64,
}

const RESCAN_FILES: usize = 1_000_000;

fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => disk_usage(&entry.path()),
            Ok(metadata) => {
                use std::os::unix::fs::MetadataExt as _;
                metadata.blocks() * 512
            }
            Err(_) => 0,
        })
        .sum()
}

/// A second `repnet scan` of a million unchanged files, the caches warm from a first.
pub(crate) fn rescan(
    repnet: &Path,
    work_dir: &Path,
    server: std::net::SocketAddr,
) -> anyhow::Result<RescanResults> {
    let dir = work_dir.join("rescan");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let tree = dir.join("tree");
    for index in 0..RESCAN_FILES {
        let folder = tree.join(format!("d{:04}", index / 1000));
        if index % 1000 == 0 {
            std::fs::create_dir_all(&folder)?;
        }
        std::fs::write(folder.join(format!("f{index:07}")), index.to_le_bytes())?;
    }
    let tree_text = tree.display().to_string();
    let walk = timed(&mut shell(&format!(
        "find {tree_text} -type f -printf '%s\\n' > /dev/null"
    )))?;
    let home = dir.join("home");
    let scan = || -> anyhow::Result<Duration> {
        timed(
            Command::new(repnet)
                .env("XDG_CONFIG_HOME", home.join("config"))
                .env("XDG_CACHE_HOME", home.join("cache"))
                .env("XDG_STATE_HOME", home.join("state"))
                .env("REPNET_PARTICIPATION", "basic")
                .args([
                    "scan",
                    &tree_text,
                    "--server",
                    &format!("http://{server}"),
                    "--format",
                    "csv",
                ]),
        )
    };
    let first = scan()?;
    let rescan = scan()?;
    let cache_bytes = disk_usage(&home.join("cache"));
    std::fs::remove_dir_all(&dir)?;
    Ok(RescanResults {
        files: RESCAN_FILES,
        walk,
        first,
        rescan,
        cache_bytes,
    })
}
