//! The `sync` scenario: how fast a private server catches up with a global one, through a
//! snapshot (a new private server) and through the change log (one that was stopped while
//! the global server imported N entries), and how large and fast an offline bundle of the
//! knowledge base is. Real `repnet` processes throughout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::servers::{Process, start_repnet_with};

const TOKEN: &str = "bench-admin-token-0123456789";
const KEY: &str = "BENCH-PRIVATE-ORG-KEY";

/// What the scenario measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncResults {
    /// Keys in the global knowledge base (what a snapshot carries).
    pub(crate) keys: u64,
    pub(crate) snapshot: Duration,
    /// Changes logged by the global server's import, and the time to pull them all.
    pub(crate) changes: u64,
    pub(crate) changes_pull: Duration,
    pub(crate) bundle_bytes: u64,
    pub(crate) bundle_export: Duration,
    pub(crate) bundle_import: Duration,
}

fn repnet_command(repnet: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(repnet)
        .args(args)
        .env("REPNET_ADMIN_TOKEN", TOKEN)
        .output()
        .with_context(|| format!("cannot run {}", repnet.display()))?;
    if !output.status.success() {
        bail!(
            "repnet {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn status(repnet: &Path, server: &Process) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{}", server.address);
    let text = repnet_command(repnet, &["admin", "status", "--json", "--server", &url])?;
    Ok(serde_json::from_str(&text)?)
}

/// Waits until `private` has applied everything `global` has; answers how long that took
/// from `started`. Each round runs `repnet admin status` twice, which paces the polling.
fn wait_caught_up(
    repnet: &Path,
    global: &Process,
    private: &Process,
    started: Instant,
) -> anyhow::Result<Duration> {
    let global = status(repnet, global)?;
    loop {
        let private = status(repnet, private)?;
        let upstream = &private["upstream"];
        if upstream["local_sequence"] == global["sequence"]
            && upstream["upstream_log_id"] == global["log_id"]
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the private server did not catch up in an hour: {private}");
        }
    }
}

fn start_private(repnet: &Path, data: &Path, upstream: &Process) -> anyhow::Result<Process> {
    let url = format!("http://{}", upstream.address);
    start_repnet_with(
        repnet,
        data,
        &[
            "--role",
            "private",
            "--upstream",
            &url,
            "--upstream-key",
            KEY,
        ],
        &[("REPNET_ADMIN_TOKEN", TOKEN)],
    )
}

fn start_global(repnet: &Path, data: &Path, config: Option<&Path>) -> anyhow::Result<Process> {
    let mut args = vec![];
    let config_text;
    if let Some(config) = config {
        config_text = config.display().to_string();
        args.extend(["--config", config_text.as_str()]);
    }
    let server = start_repnet_with(repnet, data, &args, &[("REPNET_ADMIN_TOKEN", TOKEN)])?;
    let url = format!("http://{}", server.address);
    repnet_command(repnet, &["admin", "keys", "add", KEY, "--server", &url])?;
    Ok(server)
}

/// `data`: the global knowledge base (not in use by a server); `list`: a hash list of
/// `entries` lines for the change-log measurement.
pub(crate) fn run(
    repnet: &Path,
    work_dir: &Path,
    data: &Path,
    list: &Path,
    entries: u64,
) -> anyhow::Result<SyncResults> {
    let dir = work_dir.join("sync");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let path = |name: &str| dir.join(name).display().to_string();

    eprintln!("sync: a signed bundle of the knowledge base…");
    repnet_command(repnet, &["bundle", "keygen", "--out", &path("signing")])?;
    let started = Instant::now();
    repnet_command(
        repnet,
        &[
            "bundle",
            "export",
            "--signing-key",
            &path("signing.key"),
            "--out",
            &path("full.bundle"),
            "--data",
            &data.display().to_string(),
        ],
    )?;
    let bundle_export = started.elapsed();
    let bundle_bytes = std::fs::metadata(dir.join("full.bundle"))?.len();
    let started = Instant::now();
    repnet_command(
        repnet,
        &[
            "bundle",
            "import",
            &path("full.bundle"),
            "--data",
            &path("bundle-import"),
            "--public-key",
            &path("signing.pub"),
        ],
    )?;
    let bundle_import = started.elapsed();
    std::fs::remove_dir_all(dir.join("bundle-import"))?;
    std::fs::remove_file(dir.join("full.bundle"))?;

    eprintln!("sync: a new private server pulls a snapshot…");
    let global = start_global(repnet, data, None)?;
    let keys = status(repnet, &global)?["keys"].as_u64().unwrap_or(0);
    let started = Instant::now();
    let private = start_private(repnet, &dir.join("private-snapshot"), &global)?;
    let snapshot = wait_caught_up(repnet, &global, &private, started)?;
    drop(private);
    drop(global);
    std::fs::remove_dir_all(dir.join("private-snapshot"))?;

    eprintln!("sync: a private server pulls {entries} changes from the change log…");
    let config = dir.join("global.toml");
    std::fs::write(&config, format!("change_log_max = {}\n", entries * 2))?;
    let global = start_global(repnet, &dir.join("global-log"), Some(&config))?;
    let private = start_private(repnet, &dir.join("private-log"), &global)?;
    wait_caught_up(repnet, &global, &private, Instant::now())?;
    drop(private);
    let url = format!("http://{}", global.address);
    repnet_command(
        repnet,
        &[
            "import",
            "--format",
            "hashlist",
            "--source",
            "bench",
            "--threat",
            "Bench.Threat",
            "--server",
            &url,
            &list.display().to_string(),
        ],
    )?;
    let changes = status(repnet, &global)?["sequence"].as_u64().unwrap_or(0);
    let started = Instant::now();
    let private = start_private(repnet, &dir.join("private-log"), &global)?;
    let changes_pull = wait_caught_up(repnet, &global, &private, started)?;
    drop(private);
    drop(global);
    std::fs::remove_dir_all(&dir)?;
    Ok(SyncResults {
        keys,
        snapshot,
        changes,
        changes_pull,
        bundle_bytes,
        bundle_export,
        bundle_import,
    })
}
