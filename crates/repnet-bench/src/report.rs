//! The results: a table for people, JSON for tools.

use std::time::Duration;

use serde::Serialize;

use crate::load::Measurement;
use crate::servers::Imported;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    metric: String,
    repnet: Option<f64>,
    redis: Option<f64>,
    /// repnet / redis, for metrics where higher is better; redis / repnet for latencies, so
    /// that above 1 always means repnet is ahead.
    advantage: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    date: String,
    machine: Machine,
    entries: u64,
    seconds_per_measurement: f64,
    rounds: usize,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    repnet_protocol::rfc3339(repnet_model::Timestamp(seconds)).unwrap_or_default()
}

impl Report {
    pub(crate) fn new(entries: u64, duration: Duration, rounds: usize) -> Report {
        Report {
            date: today(),
            machine: Machine {
                cores: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                cpu: cpu_model(),
            },
            entries,
            seconds_per_measurement: duration.as_secs_f64(),
            rounds,
            rows: Vec::new(),
        }
    }

    fn row(
        &mut self,
        scenario: &str,
        metric: &str,
        repnet: Option<f64>,
        redis: Option<f64>,
        higher_is_better: bool,
    ) {
        let advantage = match (repnet, redis) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                Some(if higher_is_better { a / b } else { b / a })
            }
            _ => None,
        };
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            repnet,
            redis,
            advantage,
        });
    }

    pub(crate) fn import(&mut self, imported: Imported, disk_bytes: u64) {
        let entries = self.entries as f64;
        self.row(
            "load",
            "entries/s (repnet import of a hash list; redis pipelined SET)",
            Some(entries / imported.elapsed.as_secs_f64().max(1e-9)),
            None,
            true,
        );
        self.row(
            "load",
            "repnet import peak memory, MiB (hash list)",
            imported.peak_memory.map(mib),
            None,
            false,
        );
        self.row(
            "size",
            "repnet bytes/entry on disk",
            Some(disk_bytes as f64 / entries),
            None,
            false,
        );
    }

    /// A MalwareBazaar CSV dump of the same entries, against Redis loading the keys.
    pub(crate) fn csv_import(&mut self, imported: Imported, redis: Duration) {
        let rate = |elapsed: Duration| self.entries as f64 / elapsed.as_secs_f64().max(1e-9);
        self.row(
            "import MalwareBazaar CSV",
            "rows/s (repnet import; redis pipelined SET of the SHA-256)",
            Some(rate(imported.elapsed)),
            Some(rate(redis)),
            true,
        );
        self.row(
            "import MalwareBazaar CSV",
            "repnet import peak memory, MiB",
            imported.peak_memory.map(mib),
            None,
            false,
        );
    }

    pub(crate) fn scan(&mut self, scan: &crate::scanning::ScanResults) {
        let gb_per_second =
            |elapsed: Duration| scan.bytes as f64 / 1e9 / elapsed.as_secs_f64().max(1e-9);
        let files_per_second =
            |elapsed: Duration| scan.files as f64 / elapsed.as_secs_f64().max(1e-9);
        self.row(
            "scan",
            "GB/s: repnet scan with lookups (redis column: xargs -P2 sha256sum)",
            Some(gb_per_second(scan.scan)),
            Some(gb_per_second(scan.sha256sum_parallel)),
            true,
        );
        self.row(
            "scan",
            "GB/s: repnet scan hashing alone, MD5+SHA-1+SHA-256 (redis column: sha256sum, one process)",
            Some(gb_per_second(scan.hashing_alone)),
            Some(gb_per_second(scan.sha256sum)),
            true,
        );
        self.row(
            "scan",
            "GB/s: repnet scan --hashes sha256 hashing alone",
            Some(gb_per_second(scan.sha256_alone)),
            None,
            true,
        );
        self.row(
            "scan",
            "files/s: repnet scan with lookups; hashing alone",
            Some(files_per_second(scan.scan)),
            Some(files_per_second(scan.hashing_alone)),
            true,
        );
    }

    pub(crate) fn rescan(&mut self, rescan: &crate::scanning::RescanResults) {
        let seconds = |elapsed: Duration| elapsed.as_secs_f64();
        self.row(
            "rescan",
            &format!(
                "seconds: repnet scan of {} unchanged files, caches warm (redis column: find -printf of their sizes)",
                rescan.files
            ),
            Some(seconds(rescan.rescan)),
            Some(seconds(rescan.walk)),
            false,
        );
        self.row(
            "rescan",
            "seconds: the first scan of them (hashing and lookups)",
            Some(seconds(rescan.first)),
            None,
            false,
        );
        self.row(
            "rescan",
            "client cache MiB after both",
            Some(rescan.cache_bytes as f64 / (1 << 20) as f64),
            None,
            false,
        );
    }

    pub(crate) fn proxy(&mut self, proxy: &crate::proxying::ProxyResults) {
        let ms = |m: &Measurement, q: f64| m.latency.value_at_quantile(q) as f64 / 1000.0;
        self.row(
            "proxy, cache hits",
            "lookups/s (repnet: through the proxy; redis column: the server directly)",
            Some(proxy.hits.requests_per_second()),
            Some(proxy.direct.requests_per_second()),
            true,
        );
        self.row(
            "proxy, cache hits",
            "p99 ms (proxy; server directly)",
            Some(ms(&proxy.hits, 0.99)),
            Some(ms(&proxy.direct, 0.99)),
            false,
        );
        self.row(
            "proxy, misses",
            "lookups/s through the proxy, nearly all going upstream batched",
            Some(proxy.misses.requests_per_second()),
            None,
            true,
        );
        self.row(
            "proxy, misses",
            "p99 ms",
            Some(ms(&proxy.misses, 0.99)),
            None,
            false,
        );
    }

    pub(crate) fn statistics(&mut self, ingest: &crate::ingest::IngestResults) {
        self.row(
            "statistics ingest",
            "events/s accepted durably (batches of 100)",
            Some(ingest.events_per_second),
            None,
            true,
        );
        self.row(
            "statistics ingest",
            "p99 ms per batch",
            Some(ingest.p99_ms),
            None,
            false,
        );
        self.row(
            "statistics ingest",
            "bytes per tracked object (aggregate pages)",
            Some(ingest.aggregate_bytes as f64 / ingest.objects.max(1) as f64),
            None,
            false,
        );
        self.row(
            "statistics ingest",
            "bytes per raw event (event pages)",
            Some(ingest.raw_event_bytes as f64 / ingest.raw_events.max(1) as f64),
            None,
            false,
        );
        self.row(
            "statistics ingest",
            "server RSS MiB after the run",
            ingest.rss.map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
            None,
            false,
        );
    }

    pub(crate) fn sync(&mut self, sync: &crate::sync::SyncResults) {
        let rate = |count: u64, elapsed: Duration| count as f64 / elapsed.as_secs_f64().max(1e-9);
        self.row(
            "private catch-up, snapshot",
            "keys/s (a new private server, until caught up)",
            Some(rate(sync.keys, sync.snapshot)),
            None,
            true,
        );
        self.row(
            "private catch-up, change log",
            "changes/s (pages of 100,000, until caught up)",
            Some(rate(sync.changes, sync.changes_pull)),
            None,
            true,
        );
        self.row(
            "offline bundle",
            "bytes/key (zstd, signed snapshot)",
            Some(sync.bundle_bytes as f64 / sync.keys.max(1) as f64),
            None,
            false,
        );
        self.row(
            "offline bundle",
            "keys/s exported (repnet bundle export --data)",
            Some(rate(sync.keys, sync.bundle_export)),
            None,
            true,
        );
        self.row(
            "offline bundle",
            "keys/s imported (repnet bundle import --data)",
            Some(rate(sync.keys, sync.bundle_import)),
            None,
            true,
        );
    }

    pub(crate) fn redis_load(&mut self, elapsed: Duration) {
        if let Some(row) = self.rows.iter_mut().find(|row| row.scenario == "load") {
            let rate = self.entries as f64 / elapsed.as_secs_f64().max(1e-9);
            row.redis = Some(rate);
            row.advantage = row.repnet.map(|repnet| repnet / rate);
        }
    }

    pub(crate) fn url_load(&mut self, urls: u64, repnet: Duration, redis: Duration) {
        let rate = |elapsed: Duration| urls as f64 / elapsed.as_secs_f64().max(1e-9);
        self.row(
            "load URLs",
            "URLs/s (repnet import; redis pipelined SET)",
            Some(rate(repnet)),
            Some(rate(redis)),
            true,
        );
    }

    /// The private way in the repnet column, the direct way in the baseline column (the
    /// advantage below 1 is the private way's cost).
    pub(crate) fn client_urls(&mut self, results: &crate::client_urls::Results) {
        let scenario = "client, 1,000 URLs";
        let median = |times: &[std::time::Duration]| {
            let mut sorted = times.to_vec();
            sorted.sort();
            sorted
                .get(sorted.len() / 2)
                .map(|time| time.as_secs_f64() * 1000.0)
        };
        let (private, direct) = (median(&results.private), median(&results.direct));
        self.row(
            scenario,
            "p50 ms per lookup (repnet: by prefix; baseline: direct)",
            private,
            direct,
            false,
        );
        let per_url = |ms: Option<f64>| ms.map(|ms| ms * 1000.0 / crate::client_urls::URLS as f64);
        self.row(
            scenario,
            "p50 µs per URL (repnet: by prefix; baseline: direct)",
            per_url(private),
            per_url(direct),
            false,
        );
        self.row(
            scenario,
            "distinct prefixes sent per lookup",
            Some(results.prefixes),
            None,
            false,
        );
    }

    pub(crate) fn privacy(&mut self, repnet: &Measurement, prefixes: usize) {
        let scenario = "privacy search";
        self.row(
            scenario,
            "prefixes/s",
            Some(repnet.requests_per_second() * prefixes as f64),
            None,
            true,
        );
        self.row(
            scenario,
            "p50 ms per request",
            percentile(repnet, 50.0),
            None,
            false,
        );
        self.row(
            scenario,
            "p99 ms per request",
            percentile(repnet, 99.0),
            None,
            false,
        );
    }

    pub(crate) fn batch(
        &mut self,
        scenario: &str,
        repnet: &Measurement,
        redis: &Measurement,
        keys: usize,
    ) {
        let k = keys as f64;
        self.row(
            scenario,
            "lookups/s",
            Some(repnet.requests_per_second() * k),
            Some(redis.requests_per_second() * k),
            true,
        );
        self.row(
            scenario,
            "p50 ms per request",
            percentile(repnet, 50.0),
            percentile(redis, 50.0),
            false,
        );
        self.row(
            scenario,
            "p99 ms per request",
            percentile(repnet, 99.0),
            percentile(redis, 99.0),
            false,
        );
    }

    pub(crate) fn single(&mut self, repnet: &Measurement, redis: &Measurement) {
        self.row(
            "single",
            "lookups/s",
            Some(repnet.requests_per_second()),
            Some(redis.requests_per_second()),
            true,
        );
    }

    pub(crate) fn hashlookup(&mut self, repnet: &Measurement, redis: &Measurement) {
        self.row(
            "single, hashlookup's shape",
            "lookups/s (GET /lookup/sha256/{h}; redis GET)",
            Some(repnet.requests_per_second()),
            Some(redis.requests_per_second()),
            true,
        );
    }

    pub(crate) fn latency(&mut self, rate: f64, repnet: &Measurement, redis: &Measurement) {
        let scenario = format!("latency at {rate:.0}/s");
        self.row(
            &scenario,
            "achieved requests/s",
            Some(repnet.requests_per_second()),
            Some(redis.requests_per_second()),
            true,
        );
        for p in [50.0, 99.0, 99.9] {
            self.row(
                &scenario,
                &format!("p{p} ms"),
                percentile(repnet, p),
                percentile(redis, p),
                false,
            );
        }
    }

    /// Repnet nodes on a Redis Cluster in the repnet column, raw commands on the same cluster
    /// in the baseline column.
    pub(crate) fn cluster(&mut self, cluster: &crate::cluster::ClusterResults) {
        let rate = |elapsed: Duration| cluster.entries as f64 / elapsed.as_secs_f64().max(1e-9);
        self.row(
            "cluster, load",
            "entries/s (repnet import --server into the cluster; raw SET)",
            Some(rate(cluster.import)),
            Some(rate(cluster.raw_load)),
            true,
        );
        self.row(
            "cluster, memory",
            "masters' bytes per entry (repnet's layout; raw keys)",
            Some(cluster.repnet_bytes_per_entry),
            Some(cluster.raw_bytes_per_entry),
            false,
        );
        let keys = 1_000.0;
        for (scenario, repnet, raw) in [
            (
                "cluster, batch, one node",
                &cluster.batch_one,
                &cluster.batch_raw,
            ),
            (
                "cluster, batch, two nodes",
                &cluster.batch_two,
                &cluster.batch_raw,
            ),
        ] {
            self.row(
                scenario,
                "lookups/s (binary form; raw: cluster MGET)",
                Some(repnet.requests_per_second() * keys),
                Some(raw.requests_per_second() * keys),
                true,
            );
            self.row(
                scenario,
                "p99 ms per request",
                percentile(repnet, 99.0),
                percentile(raw, 99.0),
                false,
            );
        }
        for (scenario, repnet) in [
            ("cluster, batch, one node", &cluster.batch_one),
            ("cluster, batch, two nodes", &cluster.batch_two),
        ] {
            self.row(
                scenario,
                "lookups/s (binary form; raw: GETs pipelined per master)",
                Some(repnet.requests_per_second() * keys),
                Some(cluster.batch_pipelined.requests_per_second() * keys),
                true,
            );
        }
        for (scenario, repnet) in [
            ("cluster, single, one node", &cluster.single_one),
            ("cluster, single, two nodes", &cluster.single_two),
        ] {
            self.row(
                scenario,
                "lookups/s (raw: cluster GET)",
                Some(repnet.requests_per_second()),
                Some(cluster.single_raw.requests_per_second()),
                true,
            );
        }
    }

    pub(crate) fn memory(&mut self, repnet: Option<u64>, redis: Option<u64>) {
        self.row(
            "memory",
            "server RSS MiB",
            repnet.map(mib),
            redis.map(mib),
            false,
        );
    }

    pub(crate) fn table(&self) -> String {
        let format = |value: Option<f64>| match value {
            None => "-".to_owned(),
            Some(v) if v >= 100_000.0 => format!("{:.2}M", v / 1e6),
            Some(v) if v >= 1_000.0 => format!("{:.1}K", v / 1e3),
            Some(v) if v >= 10.0 => format!("{v:.1}"),
            Some(v) => format!("{v:.3}"),
        };
        let mut rows = vec![[
            "scenario".to_owned(),
            "metric".to_owned(),
            "repnet".to_owned(),
            "redis".to_owned(),
            "repnet advantage".to_owned(),
        ]];
        for row in &self.rows {
            rows.push([
                row.scenario.clone(),
                row.metric.clone(),
                format(row.repnet),
                format(row.redis),
                row.advantage
                    .map(|a| format!("{a:.2}x"))
                    .unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "repnet-bench {} · {} entries · {} cores, {} · {} s × {} rounds per side\n",
            self.date,
            self.entries,
            self.machine.cores,
            self.machine.cpu,
            self.seconds_per_measurement,
            self.rounds
        );
        for (index, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, width))| {
                    if c < 2 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
            if index == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
            }
        }
        out
    }

    pub(crate) fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn percentile(measurement: &Measurement, p: f64) -> Option<f64> {
    (!measurement.latency.is_empty())
        .then(|| measurement.latency.value_at_quantile(p / 100.0) as f64 / 1000.0)
}
