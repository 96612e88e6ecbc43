//! `repnet scan`: untrusted files found, caches reused, offline rechecks, unreadable files
//! reported.

use serde_json::Value;

use crate::common::*;
use repnet_testkit::Steps;

#[test]
fn scan_finds_untrusted_files_reuses_its_caches_and_rechecks_after_offline() {
    let mut steps = Steps::new("a first scan finds the untrusted files");
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::write(tree.join("eicar.com"), repnet_model::EICAR).unwrap();
    std::fs::write(tree.join("sub/deeper/eicar-copy.txt"), repnet_model::EICAR).unwrap();
    for n in 0..5u8 {
        std::fs::write(
            tree.join(format!("sub/random-{n}.bin")),
            vec![n; 1000 + usize::from(n)],
        )
        .unwrap();
    }
    std::fs::write(tree.join("big.iso"), vec![7u8; 200_000]).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&tree, tree.join("sub/loop")).unwrap();
    let config = dir.path().join("client.toml");
    let server = ServerProcess::start(&dir.path().join("data"));
    let scan = |args: &[&str]| {
        run(client(&config)
            .arg("scan")
            .arg(&tree)
            .args(["--server", &server.url])
            .args(args))
    };

    let output = scan(&["--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let results: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 8, "{results:?}");
    assert_eq!(results[0]["verdict"], "untrusted", "untrusted first");
    let untrusted = results
        .iter()
        .filter(|r| r["verdict"] == "untrusted")
        .count();
    assert_eq!(untrusted, 2);
    assert!(
        results
            .iter()
            .all(|r| r["sha256"].as_str().is_some_and(|h| h.len() == 64))
    );
    assert!(
        stderr(&output).contains("scanned 8 files"),
        "{}",
        stderr(&output)
    );

    steps.next("Again, unchanged: no file read, no lookup request.");
    let before = lookup_requests(&server.url);
    let output = scan(&["--format", "ndjson"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(lookup_requests(&server.url), before);
    assert!(
        stderr(&output).contains("0 hashed, 0 lookup requests"),
        "{}",
        stderr(&output)
    );
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);

    steps.next("CSV, filters and limits.");
    let output = scan(&[
        "--format",
        "csv",
        "--exclude",
        "*.com",
        "--max-size",
        "100000",
    ]);
    let csv = stdout(&output);
    assert!(csv.starts_with("path,size,sha256,md5,sha1,verdict"));
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    assert!(!csv.contains("eicar.com") && !csv.contains("big.iso"));
    let output = scan(&["--only-untrusted", "--format", "json"]);
    let only: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(only.as_array().unwrap().len(), 2);
    assert_eq!(only[0]["md5"], EICAR_MD5);
    let output = scan(&[]);
    assert!(
        stdout(&output)
            .lines()
            .nth(1)
            .unwrap()
            .contains("untrusted"),
        "{}",
        stdout(&output)
    );

    steps
        .next("Privacy mode finds the same, by hash prefixes (and does not use the answer cache).");
    let private = dir.path().join("private").join("client.toml");
    let output = run(client(&private).arg("scan").arg(&tree).args([
        "--server",
        &server.url,
        "--private",
        "--only-untrusted",
        "--format",
        "ndjson",
    ]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 2);

    steps.next("Offline: a new client (empty caches), the server away.");
    let fresh = dir.path().join("fresh").join("client.toml");
    let address = server.url.trim_start_matches("http://").to_owned();
    drop(server);
    let dead = format!("http://{address}");
    let output = run(client(&fresh)
        .arg("scan")
        .arg(&tree)
        .args(["--server", &dead, "--format", "json"]));
    steps.next("Nothing could be checked: a CI gate must not pass.");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--recheck"), "{}", stderr(&output));
    let results: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["verdict"] == "unknown (offline)")
    );
    steps.next("The server is back where it was: the recheck asks it.");
    let (server, log) =
        ServerProcess::start_with(&dir.path().join("data"), &["--listen", &address]);
    ServerProcess::drain(log, None);
    let output = run(client(&fresh).args(["scan", "--recheck", "--server", "http://127.0.0.1:9"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("pass --server"),
        "{}",
        stderr(&output)
    );
    let output = run(client(&fresh).args(["scan", "--recheck", "--server", &server.url]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).contains("eicar.com"));
    let output = run(client(&fresh).args(["scan", "--recheck", "--server", &server.url]));
    assert_eq!(output.status.code(), Some(0));
    assert!(stderr(&output).contains("nothing to recheck"));
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_reported_and_the_scan_goes_on() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let locked = tree.join("locked.bin");
    std::fs::write(&locked, b"secret").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(tree.join("eicar.com"), repnet_model::EICAR).unwrap();
    if std::fs::read(&locked).is_ok() {
        eprintln!("running as root: permissions do not stop reads; nothing to test");
        return;
    }
    let server = ServerProcess::start(&dir.path().join("data"));
    let output = run(client(&dir.path().join("client.toml"))
        .arg("scan")
        .arg(&tree)
        .args(["--server", &server.url, "--format", "json"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let results: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["verdict"] == "unreadable")
    );
}

/// Output for pipelines: `--format ndjson` writes a line per file (as each is decided), CSV
/// quotes what RFC 4180 says to quote, and a name that is
/// not UTF-8 is written losslessly (`\xHH`, backslash as `\\`).
#[test]
fn pipelines_read_ndjson_as_it_comes_csv_by_rfc_4180_and_every_name_losslessly() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(
        tree.join("eicar, \"quoted\"\nname.com"),
        repnet_model::EICAR,
    )
    .unwrap();
    std::fs::write(tree.join("back\\slash.txt"), b"plain").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        std::fs::write(
            tree.join(std::ffi::OsStr::from_bytes(b"caf\xe9.bin")),
            b"latin-1 name",
        )
        .unwrap();
    }
    let config = dir.path().join("client.toml");
    let server = ServerProcess::start(&dir.path().join("data"));

    // NDJSON: one object per file, read line by line as a pipeline does.
    let mut child = client(&config)
        .arg("scan")
        .arg(&tree)
        .args(["--server", &server.url, "--format", "ndjson"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(first["path"].is_string(), "{first}");
    let mut paths = vec![first["path"].as_str().unwrap().to_owned()];
    for line in lines {
        let value: Value = serde_json::from_str(&line.unwrap()).unwrap();
        paths.push(value["path"].as_str().unwrap().to_owned());
    }
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let tree_text = tree.display().to_string();
    paths.sort();
    let mut expected = vec![
        format!("{tree_text}/back\\\\slash.txt"),
        format!("{tree_text}/eicar, \"quoted\"\nname.com"),
    ];
    #[cfg(unix)]
    expected.push(format!("{tree_text}/caf\\xE9.bin"));
    expected.sort();
    assert_eq!(paths, expected);

    // CSV: the name with a comma, quotes and a newline is one quoted field.
    let output = run(client(&config).arg("scan").arg(&tree).args([
        "--server",
        &server.url,
        "--format",
        "csv",
    ]));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("\"{tree_text}/eicar, \"\"quoted\"\"\nname.com\",")),
        "{text}"
    );
    // Read back by a CSV reader: four records of ten fields.
    let records = parse_csv(&text);
    assert_eq!(records.len(), 1 + expected.len(), "{records:?}");
    assert!(records.iter().all(|r| r.len() == 10), "{records:?}");
}

/// A minimal RFC 4180 reader for the check: quoted fields with doubled quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    records
}
