//! The benchmark's quick mode runs end to end, so that it never rots: real `repnet import`,
//! real `repnet serve`, real `redis-server`. It asserts a sane table, never a speed.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;

#[test]
fn quick_mode_produces_a_sane_table() {
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_repnet-bench"));
    let repnet = bench.with_file_name("repnet");
    assert!(
        repnet.is_file(),
        "{} is missing: run the workspace's tests (scripts/test.sh), which build it",
        repnet.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = Command::new(bench)
        .args(["--quick", "--duration", "0.3", "--rounds", "1", "--json"])
        .arg(&json)
        .arg("--repnet")
        .arg(&repnet)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for scenario in [
        "batch, JSON",
        "batch, binary",
        "single",
        "latency at",
        "memory",
        "size",
    ] {
        assert!(
            stdout.contains(scenario),
            "no {scenario:?} row in\n{stdout}"
        );
    }

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["entries"], 100_000);
    let rows = report["rows"].as_array().unwrap();
    let value = |scenario: &str, metric: &str, side: &str| -> f64 {
        rows.iter()
            .find(|row| {
                row["scenario"].as_str().unwrap().starts_with(scenario) && row["metric"] == metric
            })
            .and_then(|row| row[side].as_f64())
            .unwrap_or_else(|| panic!("no {side} value for {scenario} / {metric}"))
    };
    for scenario in ["batch, JSON", "batch, binary", "single", "batch of URLs"] {
        assert!(value(scenario, "lookups/s", "repnet") > 0.0);
        assert!(value(scenario, "lookups/s", "redis") > 0.0);
    }
    assert!(value("privacy search", "prefixes/s", "repnet") > 0.0);
    let p50 = value("latency at", "p50 ms", "repnet");
    let p99 = value("latency at", "p99 ms", "repnet");
    assert!(p50 > 0.0 && p99 >= p50, "p50 {p50} p99 {p99}");
    let per_entry = value("size", "repnet bytes/entry on disk", "repnet");
    assert!(
        per_entry > 32.0 && per_entry < 1000.0,
        "{per_entry} bytes per entry"
    );
    assert!(value("memory", "server RSS MiB", "repnet") > 0.0);
    assert!(value("memory", "server RSS MiB", "redis") > 0.0);
}
