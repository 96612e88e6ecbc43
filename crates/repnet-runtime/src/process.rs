//! The metrics every repnet process exports about itself: `repnet_build_info` and the
//! standard `process_*` metrics (CPU time, memory, open files, threads, start time) that
//! Prometheus's own clients export and dashboards expect.
//!
//! Hand-written from `/proc/self` (a few lines of parsing) rather than a crate: the
//! Prometheus process collectors in Rust belong to the other client library (`prometheus`),
//! and `procfs` would bring much more than these six numbers. On systems without `/proc`
//! only `repnet_build_info` is exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `repnet_build_info{version, component} 1` and the `process_*` metrics, read at each
/// scrape.
#[derive(Debug)]
pub struct ProcessMetrics {
    /// `serve` or `proxy`.
    pub component: &'static str,
}

/// What `/proc/self` tells of the process.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    /// `None` where `/proc/stat` is hidden (systemd's `ProcSubset=pid`).
    start_seconds: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

/// Clock ticks per second for `/proc`'s CPU times: 100 on every Linux platform repnet
/// builds for (`USER_HZ`, fixed by the kernel's ABI, whatever `CONFIG_HZ` is).
const TICKS_PER_SECOND: f64 = 100.0;
/// The page size of `/proc/self/stat`'s `rss`: 4 KiB on x86-64 and the usual aarch64
/// kernels. (`statm` would be the same unit.)
const PAGE_BYTES: i64 = 4096;

/// Parses `/proc/self/stat` (fields after the command name, which may hold spaces and
/// parentheses: split after the last `)`), with the system's boot time from `/proc/stat`.
fn parse_stat(stat: &str, boot_seconds: Option<i64>) -> Option<Sample> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    let (utime, stime) = (field(14)?, field(15)?);
    let start_ticks = field(22)?;
    Some(Sample {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        threads: field(20)?,
        start_seconds: boot_seconds
            .map(|boot| boot + (start_ticks as f64 / TICKS_PER_SECOND) as i64),
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(PAGE_BYTES),
        open_fds: None,
        max_fds: None,
    })
}

/// `btime` of `/proc/stat`: when the system booted, in Unix time.
fn boot_seconds(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit on open files from `/proc/self/limits`.
fn max_fds(limits: &str) -> Option<i64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|soft| soft.parse().ok())
}

fn sample() -> Option<Sample> {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(boot_seconds);
    let mut sample = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?, boot)?;
    sample.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as i64);
    sample.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(max_fds);
    Some(sample)
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("component", self.component),
        ];
        let mut family = encoder.encode_descriptor(
            "repnet_build_info",
            "Always 1; the labels say which repnet this is.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        let Some(sample) = sample() else {
            return Ok(());
        };
        let counter = ConstCounter::new(sample.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Some(sample.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Some(sample.virtual_bytes),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                sample.start_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                Some(sample.threads),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                sample.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                ConstGauge::new(value).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Gauge,
                )?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_read_after_the_command_name_whatever_it_holds() {
        // A command name with spaces and a parenthesis, as `/proc/self/stat` may give.
        let stat = "4242 (repnet (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let sample = parse_stat(stat, Some(1_700_000_000)).unwrap();
        assert_eq!(sample.cpu_seconds, 3.0);
        assert_eq!(sample.threads, 7);
        assert_eq!(sample.start_seconds, Some(1_700_000_123));
        assert_eq!(parse_stat(stat, None).unwrap().start_seconds, None);
        assert_eq!(sample.virtual_bytes, 104_857_600);
        assert_eq!(sample.resident_bytes, 2560 * 4096);
        assert_eq!(parse_stat("garbage", None), None);
    }

    #[test]
    fn limits_and_boot_time_are_found() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(max_fds(limits), Some(1024));
        assert_eq!(
            boot_seconds("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_described() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessMetrics { component: "test" }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(&format!(
                "repnet_build_info{{version=\"{}\",component=\"test\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(name), "{name} missing:\n{text}");
            }
        }
    }
}
