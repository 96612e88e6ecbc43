//! Hostile input met through the real `repnet` binary: each refused with a clear error, and
//! nothing changed.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::Write as _;
use std::path::Path;

mod common;
use common::*;

/// 96 MiB of zeros in about 100 KB: gzip members concatenate, so one is compressed and
/// repeated.
fn gzip_bomb(path: &Path) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b'0'; 1 << 20]).unwrap();
    std::fs::write(path, encoder.finish().unwrap().repeat(96)).unwrap();
}

#[test]
fn a_decompression_bomb_is_refused_locally_and_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{EICAR_MD5}\n")).unwrap();
    let bomb = dir.path().join("list.txt.gz");
    gzip_bomb(&bomb);
    let import = |args: &[&str], file: &Path| {
        run(repnet()
            .args(["import", "--format", "hashlist", "--source", "corp"])
            .args(args)
            .env("REPNET_ADMIN_TOKEN", TOKEN)
            .arg(file))
    };
    let local = ["--data", data.to_str().unwrap()];
    let output = import(&local, &list);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = import(&local, &bomb);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("list.txt.gz")
            && message.contains("decompression bomb")
            && message.contains("--max-expansion-ratio"),
        "{message}"
    );
    // The limit is the user's to raise: then the zeros are read, and are no feed.
    let output = import(
        &[&local[..], &["--max-expansion-ratio", "5000"]].concat(),
        &bomb,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("line too long"),
        "{}",
        stderr(&output)
    );
    let output = import(
        &[&local[..], &["--max-expansion-ratio", "1"]].concat(),
        &bomb,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--max-expansion-ratio"),
        "{}",
        stderr(&output)
    );

    let server = ServerProcess::start(&data);
    let output = import(&["--server", &server.url], &bomb);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("decompression bomb") && message.contains("max_expansion_ratio"),
        "{message}"
    );
    // The list imported first is still there.
    let output = lookup(&server, &[EICAR_MD5]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("untrusted"), "{}", stdout(&output));
}
