//! The proxy never touches storage (docs/proxy.md): it must not even link a storage engine.
//! `cargo tree` of its normal dependencies (what the binary links for it; the tests' real
//! server is a dev-dependency) holds no LMDB, no SQLite, no zstd, and none of the server's or
//! the store's crates.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

#[test]
fn the_proxy_links_no_storage_engine_and_no_server() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
        ])
        .arg(manifest)
        .args(["-p", "repnet-proxy"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo tree failed: {stderr}");
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: std::collections::BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains("repnet-proxy"), "{tree}");
    for forbidden in [
        "heed",
        "lmdb-master-sys",
        "rusqlite",
        "libsqlite3-sys",
        "zstd",
        "repnet-store",
        "repnet-server",
        "repnet-feeds",
    ] {
        assert!(
            !crates.contains(forbidden),
            "the proxy links {forbidden}: {crates:?}"
        );
    }
}
