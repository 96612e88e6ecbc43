//! The two servers under test: the real `repnet` binary (import, then serve) and a real
//! `redis-server`, both on loopback, both loaded with the same keys.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::keys;

/// The compact value stored in Redis for every key: a verdict and a confidence, about as
/// much as repnet's 12-byte record says.
pub(crate) const REDIS_VALUE: &[u8] = b"untrusted:80";

/// Writes the knowledge base as a hash list, one hex SHA-256 per line.
pub(crate) fn write_hash_list(path: &Path, seed: u64, entries: u64) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for index in 0..entries {
        writeln!(out, "{}", keys::present(seed, index))?;
    }
    out.flush()?;
    Ok(())
}

/// Writes the URL list, one URL per line.
pub(crate) fn write_url_list(path: &Path, seed: u64, urls: u64) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for index in 0..urls {
        writeln!(out, "{}", keys::url(seed, index))?;
    }
    out.flush()?;
    Ok(())
}

/// What one `repnet import` took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Imported {
    pub(crate) elapsed: Duration,
    /// The importer's peak resident memory, as it reports it.
    pub(crate) peak_memory: Option<u64>,
}

/// Imports a feed with `repnet import`, as an operator would.
pub(crate) fn import(
    repnet: &Path,
    data: &Path,
    list: &Path,
    format: &str,
) -> anyhow::Result<Imported> {
    let started = Instant::now();
    // One source per list: an import replaces everything its source had.
    let source = format!("bench-{format}");
    let output = Command::new(repnet)
        .args([
            "import",
            "--format",
            format,
            "--source",
            &source,
            "--threat",
            "Bench.Threat",
            "--data",
        ])
        .arg(data)
        .arg(list)
        .output()
        .with_context(|| format!("cannot run {}", repnet.display()))?;
    let elapsed = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("repnet import failed: {}", log.trim());
    }
    let peak_memory = log.split("peak memory ").nth(1).and_then(|rest| {
        let mib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(mib << 20)
    });
    Ok(Imported {
        elapsed,
        peak_memory,
    })
}

/// Writes `entries` rows in MalwareBazaar's CSV export format (the `full` dump's header and
/// quoting), the SHA-256 being the knowledge base's entries.
pub(crate) fn write_malwarebazaar(path: &Path, seed: u64, entries: u64) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(
        b"################################################################\n\
          # MalwareBazaar full malware samples dump (CSV)                #\n\
          ################################################################\n\
          #\n\
          # \"first_seen_utc\",\"sha256_hash\",\"md5_hash\",\"sha1_hash\",\"reporter\",\"file_name\",\"file_type_guess\",\"mime_type\",\"signature\",\"clamav\",\"vtpercent\",\"imphash\",\"ssdeep\",\"tlsh\"\n",
    )?;
    const SIGNATURES: [&str; 4] = ["AgentTesla", "Mirai", "n/a", "RedLineStealer"];
    for index in 0..entries {
        let sha256 = keys::present(seed, index);
        let hex = sha256.to_string();
        let day = index % 28 + 1;
        writeln!(
            out,
            "\"2026-11-{day:02} 00:38:02\", \"{hex}\", \"{}\", \"{}\", \"abuse_ch\", \"sample{index}.exe\", \"exe\", \"application/x-dosexec\", \"{}\", \"n/a\", \"61.43\", \"f34d5f2d4577ed6d9ceec516c1f5a744\", \"3072:abc:def\", \"T1A1B2\"",
            &hex[..32],
            &hex[24..],
            SIGNATURES[(index % 4) as usize],
        )?;
    }
    out.flush()?;
    Ok(())
}

/// A server process, killed when dropped.
pub(crate) struct Process {
    child: Child,
    pub(crate) address: SocketAddr,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, from /proc.
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `repnet serve` on a port the OS picks, found in its JSON log.
pub(crate) fn start_repnet(repnet: &Path, data: &Path, threads: usize) -> anyhow::Result<Process> {
    start_repnet_with(
        repnet,
        data,
        &["--worker-threads", &threads.to_string()],
        &[],
    )
}

/// `repnet serve` on `data` with more arguments and environment variables.
pub(crate) fn start_repnet_with(
    repnet: &Path,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Process> {
    start_command(repnet, "serve", data, args, env)
}

/// `repnet <command>` (`serve` or `proxy`) on `data`, once it says where it listens.
pub(crate) fn start_command(
    repnet: &Path,
    command: &str,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Process> {
    start_command_on(repnet, command, data, args, env, "127.0.0.1:0")
}

/// [`start_command`] listening on `listen` (the soak starts a killed server where it was).
pub(crate) fn start_command_on(
    repnet: &Path,
    command: &str,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    listen: &str,
) -> anyhow::Result<Process> {
    let mut child = Command::new(repnet)
        .arg(command)
        .args(args)
        .envs(env.iter().copied())
        .args([
            "--listen",
            listen,
            "--log-format",
            "json",
            "--log",
            "warn,repnet=info",
            "--data",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", repnet.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let Some(line) = lines.next() else {
            bail!("repnet {command} exited before listening");
        };
        let line = line?;
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(url) = entry["fields"]["address"].as_str() {
            break url.trim_start_matches("http://").parse::<SocketAddr>()?;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Process { child, address })
}

/// Starts `redis-server` on a free loopback port without persistence, and waits until it
/// answers PING.
pub(crate) async fn start_redis(redis_server: &Path, dir: &Path) -> anyhow::Result<Process> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(redis_server)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot start {}: {error}. Install Redis (Debian: `sudo apt-get install redis-server`) or pass --redis-server PATH",
                redis_server.display()
            )
        })?;
    let process = Process {
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut connection) = crate::load::RedisConnection::connect(process.address).await
            && connection.call(b"*1\r\n$4\r\nPING\r\n").await.is_ok()
        {
            return Ok(process);
        }
        if Instant::now() > deadline {
            bail!(
                "redis-server did not answer on {} within 20 s",
                process.address
            );
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `SET key value` in RESP.
fn set_command(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
    out.extend_from_slice(format!("${}\r\n", key.len()).as_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(format!("\r\n${}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Loads the same keys into Redis, pipelined in blocks of 10,000 commands; returns the time.
pub(crate) async fn load_redis(
    address: SocketAddr,
    entries: u64,
    key_of: impl Fn(u64) -> repnet_model::Sha256,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    // Replies are "+OK\r\n"; read them concurrently so neither side's buffer fills up.
    let expected = entries * 5;
    let drain = tokio::spawn(async move {
        let mut buffer = vec![0u8; 1 << 16];
        let mut read = 0u64;
        while read < expected {
            let n = reader.read(&mut buffer).await?;
            if n == 0 {
                bail!("redis closed the connection while loading");
            }
            if buffer[..n].contains(&b'-') {
                bail!(
                    "redis refused a SET: {}",
                    String::from_utf8_lossy(&buffer[..n])
                );
            }
            read += n as u64;
        }
        Ok(())
    });
    let mut block = Vec::with_capacity(1 << 20);
    for start in (0..entries).step_by(10_000) {
        block.clear();
        for index in start..(start + 10_000).min(entries) {
            set_command(key_of(index).as_bytes(), REDIS_VALUE, &mut block);
        }
        writer.write_all(&block).await?;
    }
    writer.flush().await?;
    drain.await??;
    Ok(started.elapsed())
}

/// The directory of the running executable: `repnet` is built next to `repnet-bench`.
pub(crate) fn sibling_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join(name);
    path.is_file().then_some(path)
}
