//! The soak (`repnet-bench --soak SECONDS`, not part of the default run): a global server and
//! a private server pulling from it, real processes, under mixed load for a long time while
//! a chaos loop kills one of them (`kill -9`) and starts it again on the same port and data:
//!
//! - lookups at 80 % of the global server's measured maximum, each answer checked against
//!   what the model says it must be (the feed's hashes `untrusted`, others `unknown`, the
//!   acknowledged local verdicts as set);
//! - local verdicts written (acknowledged ones remembered), statistics batches (each about a
//!   file of its own), and feed imports (each its own source);
//! - the private server pulling all along.
//!
//! At the end it checks that both servers' memory stayed under the bound, that every
//! acknowledged write is there (on the global server, and on the private one once caught
//! up), and that no answer contradicted the model; it fails otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::keys;
use crate::servers::{Process, start_command_on};

const TOKEN: &str = "soak-admin-token-0123456789abcdef";
const KEY: &str = "SOAK-PRIVATE-ORG-KEY";
const ENTRIES: u64 = 100_000;

/// What the soak did and saw.
#[derive(Debug, Default)]
pub(crate) struct SoakResults {
    pub(crate) seconds: u64,
    pub(crate) max_rate: f64,
    pub(crate) target_rate: f64,
    pub(crate) lookups: u64,
    pub(crate) unavailable: u64,
    pub(crate) mismatches: Vec<String>,
    pub(crate) verdicts_acked: u64,
    pub(crate) batches_acked: u64,
    pub(crate) imports_acked: u64,
    pub(crate) restarts: u64,
    pub(crate) max_rss_global: u64,
    pub(crate) max_rss_private: u64,
    pub(crate) lost: Vec<String>,
}

/// One server the chaos loop kills and starts again.
struct Node {
    name: &'static str,
    data: PathBuf,
    address: SocketAddr,
    args: Vec<String>,
    process: Mutex<Option<Process>>,
}

impl Node {
    fn start(&self, repnet: &Path) -> anyhow::Result<()> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let process = start_command_on(
            repnet,
            "serve",
            &self.data,
            &args,
            &[("REPNET_ADMIN_TOKEN", TOKEN)],
            &self.address.to_string(),
        )
        .with_context(|| format!("starting the {} server", self.name))?;
        *self.process.lock().unwrap_or_else(|e| e.into_inner()) = Some(process);
        Ok(())
    }

    /// `kill -9`.
    fn kill(&self) {
        drop(
            self.process
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }

    fn rss(&self) -> u64 {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Process::rss_bytes)
            .unwrap_or(0)
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

fn free_address() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// What an answer must say: the verdict the model gives the object.
#[derive(Debug, Default)]
struct Acked {
    verdicts: HashMap<String, &'static str>,
    files: Vec<String>,
    imported: Vec<String>,
}

pub(crate) async fn run(
    repnet: &Path,
    work: &Path,
    seconds: u64,
    chaos_every: Duration,
    memory_bound: u64,
    seed: u64,
) -> anyhow::Result<SoakResults> {
    let global_data = work.join("soak-global");
    let private_data = work.join("soak-private");
    for dir in [&global_data, &private_data] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
    }
    eprintln!("soak: importing {ENTRIES} entries into the global server…");
    let list = work.join("soak-entries.txt");
    crate::servers::write_hash_list(&list, seed, ENTRIES)?;
    crate::servers::import(repnet, &global_data, &list, "hashlist")?;
    std::fs::remove_file(&list)?;
    let config = work.join("soak.toml");
    std::fs::write(
        &config,
        "installation_difficulty = 8\nenrolments_per_address_per_hour = 1000000\ninstall_batches_per_minute = 0\n[engine]\nestablished_after_hours = 0\n",
    )?;
    let key_file = work.join("soak-upstream-key");
    std::fs::write(&key_file, KEY)?;
    let global = Arc::new(Node {
        name: "global",
        data: global_data,
        address: free_address()?,
        args: vec!["--config".into(), config.display().to_string()],
        process: Mutex::new(None),
    });
    global.start(repnet)?;
    let admin = repnet_client::Client::new(&global.url())?.with_admin_token(TOKEN);
    admin
        .add_licence_key(&serde_json::from_value(serde_json::json!({ "key": KEY }))?)
        .await?;
    let private = Arc::new(Node {
        name: "private",
        data: private_data,
        address: free_address()?,
        args: vec![
            "--role".into(),
            "private".into(),
            "--upstream".into(),
            global.url(),
            "--upstream-key-file".into(),
            key_file.display().to_string(),
        ],
        process: Mutex::new(None),
    });
    private.start(repnet)?;
    let private_admin = repnet_client::Client::new(&private.url())?.with_admin_token(TOKEN);
    private_admin
        .add_licence_key(&serde_json::from_value(serde_json::json!({ "key": KEY }))?)
        .await?;

    let http = repnet_client::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut installations = Vec::new();
    let enrolling = repnet_client::Client::new(&global.url())?;
    for _ in 0..64 {
        installations.push(enrolling.enrol_installation().await?.installation);
    }

    // The maximum: single lookups in a closed loop, 32 at a time, for five seconds.
    let max_rate = {
        let count = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(5);
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..32u64 {
            let (http, url, count) = (http.clone(), global.url(), Arc::clone(&count));
            workers.spawn(async move {
                let mut index = worker;
                while Instant::now() < until {
                    let hash = keys::present(seed, index % ENTRIES);
                    if http
                        .get(format!("{url}/v1/files/{hash}"))
                        .send()
                        .await
                        .is_ok()
                    {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    index += 32;
                }
            });
        }
        workers.join_all().await;
        count.load(Ordering::Relaxed) as f64 / 5.0
    };
    let target_rate = max_rate * 0.8;
    eprintln!(
        "soak: {max_rate:.0} lookups/s at most; {seconds} s at {target_rate:.0}/s with writes, statistics, imports and pulls, a server killed every {} s…",
        chaos_every.as_secs()
    );

    let results = Arc::new(Mutex::new(SoakResults {
        seconds,
        max_rate,
        target_rate,
        ..SoakResults::default()
    }));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();

    // Lookups, paced: 16 workers, each at a sixteenth of the rate.
    for worker in 0..16u64 {
        let (http, url) = (http.clone(), global.url());
        let (results, acked, stop) = (Arc::clone(&results), Arc::clone(&acked), Arc::clone(&stop));
        let period = Duration::from_secs_f64(16.0 / target_rate.max(16.0));
        tasks.spawn(async move {
            let mut rng = keys::Rng::new(seed ^ ((worker + 1) * 0x9e37));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let pick = rng.next_u64();
                let (path, expected): (String, String) = match pick % 10 {
                    0..=4 => (
                        format!("/v1/files/{}", keys::present(seed, pick % ENTRIES)),
                        "untrusted".into(),
                    ),
                    5..=8 => (
                        format!("/v1/files/{}", keys::absent(seed, pick)),
                        "unknown".into(),
                    ),
                    _ => {
                        let known = {
                            let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                            acked
                                .verdicts
                                .iter()
                                .nth((pick as usize / 10) % acked.verdicts.len().max(1))
                                .map(|(domain, verdict)| (domain.clone(), *verdict))
                        };
                        match known {
                            Some((domain, verdict)) => {
                                (format!("/v1/domains/{domain}"), verdict.into())
                            }
                            None => continue,
                        }
                    }
                };
                let answer = async {
                    let response = http.get(format!("{url}{path}")).send().await.ok()?;
                    if response.status().as_u16() != 200 {
                        return None;
                    }
                    response.json::<serde_json::Value>().await.ok()
                }
                .await;
                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                results.lookups += 1;
                match answer {
                    None => results.unavailable += 1,
                    Some(answer) if answer["verdict"] != expected.as_str() => {
                        if results.mismatches.len() < 20 {
                            results.mismatches.push(format!(
                                "{path}: {} where the model says {expected}",
                                answer["verdict"]
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
        });
    }
    // Local verdicts, twenty a second, each on a domain of its own.
    {
        let admin = admin.clone();
        let (results, acked, stop) = (Arc::clone(&results), Arc::clone(&acked), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let domain = format!("soak-{seed}-{n}.example");
                let verdict = if n.is_multiple_of(2) {
                    "untrusted"
                } else {
                    "trusted"
                };
                let request = repnet_protocol::SetLocalVerdict {
                    object: repnet_protocol::LookupItem::new(
                        repnet_model::ObjectKind::Domain,
                        &domain,
                    ),
                    verdict: verdict.to_owned(),
                    threat: None,
                    categories: vec![],
                    comment: Some("soak".to_owned()),
                    expires: None,
                };
                if admin.set_local_verdict(&request).await.is_ok() {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .verdicts
                        .insert(domain, verdict);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .verdicts_acked += 1;
                }
            }
        });
    }
    // Statistics: ten batches a second, each a sighting of a file of its own.
    {
        let (http, url) = (http.clone(), global.url());
        let (results, acked, stop) = (Arc::clone(&results), Arc::clone(&acked), Arc::clone(&stop));
        let installations = installations.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let file =
                    repnet_model::Sha256::digest(format!("soak-sighting-{seed}-{n}").as_bytes())
                        .to_string();
                let body = serde_json::json!({
                    "statement_version": 1,
                    "installation": installations[n as usize % installations.len()],
                    "product": "repnet-bench/soak",
                    "events": [{"type": "sighting", "file": file, "size": 1000}],
                });
                let sent = http
                    .post(format!("{url}/v1/statistics"))
                    .json(&body)
                    .send()
                    .await;
                if sent.is_ok_and(|response| response.status().as_u16() == 202) {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .files
                        .push(file);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .batches_acked += 1;
                }
            }
        });
    }
    // Imports: every twenty seconds a feed of 1,000 new hashes, each import its own source.
    {
        let admin = admin.clone();
        let (results, acked, stop) = (Arc::clone(&results), Arc::clone(&acked), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(20));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let hashes: Vec<String> = (0..1000u64)
                    .map(|i| {
                        repnet_model::Sha256::digest(format!("soak-feed-{seed}-{n}-{i}").as_bytes())
                            .to_string()
                    })
                    .collect();
                let params = repnet_protocol::ImportParams {
                    format: Some("hashlist".to_owned()),
                    source: Some(format!("soak-feed-{n}")),
                    threat: Some("Soak.Feed".to_owned()),
                    ..repnet_protocol::ImportParams::default()
                };
                let body = repnet_client::ImportBody::Bytes(hashes.join("\n").into_bytes());
                if admin.import_feed(&params, body).await.is_ok() {
                    let mut acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                    acked
                        .imported
                        .extend([hashes[0].clone(), hashes[999].clone()]);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .imports_acked += 1;
                }
            }
        });
    }
    // Memory, every second.
    {
        let (global, private) = (Arc::clone(&global), Arc::clone(&private));
        let (results, stop) = (Arc::clone(&results), Arc::clone(&stop));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (g, p) = (global.rss(), private.rss());
                {
                    let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                    results.max_rss_global = results.max_rss_global.max(g);
                    results.max_rss_private = results.max_rss_private.max(p);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    // Chaos: kill one server, then the other, and start it again where it was.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut victim = 0;
    while Instant::now() + chaos_every < deadline {
        tokio::time::sleep(chaos_every).await;
        let node = if victim % 2 == 0 { &global } else { &private };
        victim += 1;
        eprintln!("soak: kill -9 the {} server, and start it again", node.name);
        node.kill();
        let node = Arc::clone(node);
        let repnet = repnet.to_path_buf();
        tokio::task::spawn_blocking(move || node.start(&repnet)).await??;
        results.lock().unwrap_or_else(|e| e.into_inner()).restarts += 1;
    }
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}

    // Nothing acknowledged was lost: on the global server…
    eprintln!("soak: checking every acknowledged write…");
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    let mut lost = Vec::new();
    let verdict_of = |url: String| {
        let http = http.clone();
        async move {
            let answer: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
            Some(answer)
        }
    };
    for (domain, verdict) in &acked.verdicts {
        let answer = verdict_of(format!("{}/v1/domains/{domain}", global.url())).await;
        if answer.as_ref().map(|a| a["verdict"].clone()) != Some(serde_json::json!(verdict)) {
            lost.push(format!(
                "the local verdict on {domain} ({verdict}): {answer:?}"
            ));
        }
    }
    for hash in &acked.imported {
        let answer = verdict_of(format!("{}/v1/files/{hash}", global.url())).await;
        if answer.as_ref().map(|a| a["verdict"].clone()) != Some(serde_json::json!("untrusted")) {
            lost.push(format!("the imported {hash}: {answer:?}"));
        }
    }
    for file in &acked.files {
        let answer = verdict_of(format!("{}/v1/files/{file}", global.url())).await;
        let prevalence = answer.as_ref().and_then(|a| a["prevalence"].as_u64());
        if prevalence.unwrap_or(0) == 0 {
            lost.push(format!("the sighting of {file}: {answer:?}"));
        }
    }
    // …and on the private server, once it has caught up.
    let caught_up = Instant::now() + Duration::from_secs(300);
    loop {
        let (g, p) = (
            admin.server_status().await,
            private_admin.server_status().await,
        );
        if let (Ok(g), Ok(p)) = (&g, &p)
            && let Some(upstream) = &p.upstream
            && upstream.local_sequence == Some(g.sequence)
            && upstream.upstream_log_id.as_deref() == Some(g.log_id.as_str())
        {
            break;
        }
        if Instant::now() > caught_up {
            bail!("the private server did not catch up within five minutes of the end");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let device = repnet_client::http_client_builder().build()?;
    for (domain, verdict) in &acked.verdicts {
        let answer: Option<serde_json::Value> = async {
            device
                .get(format!("{}/v1/domains/{domain}", private.url()))
                .bearer_auth(KEY)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        if answer.as_ref().map(|a| a["verdict"].clone()) != Some(serde_json::json!(verdict)) {
            lost.push(format!(
                "on the private server, {domain} ({verdict}): {answer:?}"
            ));
        }
    }
    global.kill();
    private.kill();
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    results.lost = lost;
    let mut failures = Vec::new();
    if !results.mismatches.is_empty() {
        failures.push(format!(
            "answers contradicted the model: {:?}",
            results.mismatches
        ));
    }
    if !results.lost.is_empty() {
        failures.push(format!(
            "{} acknowledged writes were lost, e.g. {:?}",
            results.lost.len(),
            &results.lost[..results.lost.len().min(5)]
        ));
    }
    for (name, rss) in [
        ("global", results.max_rss_global),
        ("private", results.max_rss_private),
    ] {
        if rss > memory_bound {
            failures.push(format!(
                "the {name} server reached {} MiB, over the bound of {} MiB",
                rss >> 20,
                memory_bound >> 20
            ));
        }
    }
    print(&results);
    if !failures.is_empty() {
        bail!("the soak failed: {}", failures.join("; "));
    }
    Ok(results)
}

fn print(results: &SoakResults) {
    println!("soak: {} s", results.seconds);
    println!(
        "  lookups: {} ({:.0}/s offered, 80 % of the measured {:.0}/s); {} unanswered while a server restarted; {} contradicted the model",
        results.lookups,
        results.target_rate,
        results.max_rate,
        results.unavailable,
        results.mismatches.len()
    );
    println!(
        "  acknowledged: {} local verdicts, {} statistics batches, {} imports; lost: {}",
        results.verdicts_acked,
        results.batches_acked,
        results.imports_acked,
        results.lost.len()
    );
    println!(
        "  restarts (kill -9): {}; peak memory: global {} MiB, private {} MiB",
        results.restarts,
        results.max_rss_global >> 20,
        results.max_rss_private >> 20
    );
}
