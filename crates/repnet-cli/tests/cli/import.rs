//! `repnet import`: feeds from files, standard input and through a server; bad lines, bad
//! arguments, and kill -9 during a large import.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use repnet_store::{Store, StoreOptions};
use serde_json::Value;

use crate::common::*;

#[test]
fn import_reports_bad_lines_and_the_server_answers_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = dir.path().join("hashes.txt");
    let sha256 = "aa".repeat(32);
    let md5 = "BB".repeat(16);
    let sha1 = "cc".repeat(20);
    std::fs::write(
        &list,
        format!(
            "# my list\n\n{sha256}  some/file.exe\n{md5}\nnot-a-hash\n{sha1}\n{}\n",
            "d".repeat(65)
        ),
    )
    .unwrap();
    let output = run(repnet()
        .args([
            "import",
            "--format",
            "hashlist",
            "--verdict",
            "untrusted",
            "--threat",
            "Corp.Bad",
            "--source",
            "corp-list",
            "--data",
        ])
        .arg(&data)
        .arg(&list));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "read 5, stored 3, skipped 2 (invalid hash: 2)\n"
    );
    let errors = stderr(&output);
    assert!(errors.contains("hashes.txt:5: \"not-a-hash\""), "{errors}");
    assert!(
        errors.contains("hashes.txt:7: ") && errors.contains("got 65"),
        "{errors}"
    );

    let server = ServerProcess::start(&data);
    let output = lookup(&server, &["--format", "json", &sha256, &md5, &sha1]);
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    for result in results.as_array().unwrap() {
        assert_eq!(result["verdict"], "untrusted");
        assert_eq!(result["threat"], "Corp.Bad");
        assert_eq!(result["source"], "feed:corp-list");
        assert_eq!(result["confidence"], 80);
    }
    drop(server);

    // Re-importing the same list changes nothing but the sighting times.
    let output = run(repnet()
        .args([
            "import",
            "--format",
            "hashlist",
            "--source",
            "corp-list",
            "--data",
        ])
        .arg(&data)
        .arg(&list));
    assert_eq!(
        stdout(&output),
        "read 5, stored 3, skipped 2 (invalid hash: 2)\n"
    );
}

#[test]
fn import_refuses_bad_arguments_and_a_busy_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{EICAR_MD5}\n")).unwrap();
    for (args, message) in [
        (vec!["--verdict", "unknown"], "--verdict"),
        (vec!["--verdict", "bad"], "unknown verdict"),
        (vec!["--confidence", "101"], "--confidence"),
        (vec!["--category", "nope"], "unknown category"),
        (vec!["--source", "bad name"], "--source"),
    ] {
        let output = run(repnet()
            .args(["import", "--format", "hashlist", "--data"])
            .arg(&data)
            .args(&args)
            .arg(&list));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = run(repnet()
        .args(["import", "--format", "hashlist", "--data"])
        .arg(&data)
        .arg(dir.path().join("missing.txt")));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no such file"));

    let _server = ServerProcess::start(&data);
    let output = run(repnet()
        .args(["import", "--format", "hashlist", "--data"])
        .arg(&data)
        .arg(&list));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("already in use by another repnet process"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn kill_9_during_a_large_import_leaves_the_source_as_it_was() {
    const LINES: u64 = 600_000;
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    // The source's current feed: one hash, which the big re-import does not list.
    let old_hash = "ab".repeat(16);
    let old = dir.path().join("old.txt");
    std::fs::write(&old, format!("{old_hash}\n")).unwrap();
    let import = |list: &Path, extra: &[&str]| {
        let mut command = repnet();
        command
            .args(["import", "--format", "hashlist", "--source", "big"])
            .args(extra)
            .arg("--data")
            .arg(&data)
            .arg(list);
        command
    };
    let output = run(&mut import(&old, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let before = {
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        block_on(store.stats()).unwrap().keys
    };
    let list = dir.path().join("big.txt");
    write_hash_list(&list, LINES);

    // A small sort buffer: the import spills sorted runs to temporary files first. Not a
    // terminal, so progress comes as log lines; kill it once it says it is writing.
    let mut child = import(&list, &["--buffer-mib", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut writing = false;
    for line in log.by_ref() {
        if line.unwrap().contains("writing to the knowledge base") {
            writing = true;
            break;
        }
    }
    assert!(writing, "the import never said it was writing");
    child.kill().unwrap();
    child.wait().unwrap();

    let store =
        Store::open(&data, &StoreOptions::default()).expect("the store opens after kill -9");
    let keys = block_on(store.stats()).unwrap().keys;
    eprintln!("after kill -9: {keys} keys (before the import: {before})");
    // The import is one transaction: all of it or none of it, never a part. (Killed before
    // its commit, the old feed is whole; after, the new one replaced it.)
    assert!(
        keys == before || keys == before - 1 + LINES,
        "{keys} keys: a partial import"
    );
    drop(store);
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("import-tmp-")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files were not cleaned up at open"
    );
    if keys == before {
        let server = ServerProcess::start(&data);
        let output = lookup(&server, &["--format", "json", &old_hash]);
        let results: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(results[0]["source"], "feed:big", "the old feed is intact");
        drop(server);
    }

    // Importing again completes the job, and retracts what the new feed does not list.
    let output = run(&mut import(&list, &[]));
    assert_eq!(
        stdout(&output),
        format!("read {LINES}, stored {LINES}, skipped 0\n")
    );
    let store = Store::open(&data, &StoreOptions::default()).unwrap();
    assert_eq!(block_on(store.stats()).unwrap().keys, before - 1 + LINES);
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../repnet-feeds/tests/samples")
}

#[test]
fn feeds_import_as_published_from_files_stdin_and_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Auto-detected, from standard input.
    let mut child = repnet()
        .args(["import", "--data"])
        .arg(&data)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(samples().join("malwarebazaar.csv")).unwrap())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("read "), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("malwarebazaar into")
            && stderr(&output).contains("feed:malwarebazaar"),
        "{}",
        stderr(&output)
    );
    // A dry run reads and reports, and stores nothing anywhere.
    let untouched = dir.path().join("untouched");
    let output = run(repnet()
        .args(["import", "--dry-run", "--data"])
        .arg(&untouched)
        .arg(samples().join("threatfox.csv")));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("read "), "{}", stdout(&output));
    assert!(stderr(&output).contains("dry run"), "{}", stderr(&output));
    assert!(!untouched.exists());
    // An unrecognisable file: a clear error naming the formats tried.
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"\x00\x01\x02 not a feed").unwrap();
    let output = run(repnet().args(["import", "--data"]).arg(&data).arg(&garbage));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("urlhaus") && stderr(&output).contains("--format"),
        "{}",
        stderr(&output)
    );

    let server = ServerProcess::start(&data);
    // The MalwareBazaar sample's first file, by its MD5 alias.
    let output = lookup(
        &server,
        &["--format", "json", "607ab5670162dc6efaeb59986547d50b"],
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results[0]["verdict"], "untrusted", "{results}");
    assert_eq!(results[0]["threat"], "AgentTesla", "{results}");

    // Through the server: the upload is imported there, the report printed here.
    let upload = |extra: &[&str], token: Option<&str>| {
        let mut command = repnet();
        command
            .args(["import", "--server", &server.url, "--format", "urlhaus"])
            .args(extra)
            .arg(samples().join("urlhaus.csv"));
        if let Some(token) = token {
            command.env("REPNET_ADMIN_TOKEN", token);
        }
        run(&mut command)
    };
    let output = upload(&[], Some(TOKEN));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("read ") && stderr(&output).contains("feed:urlhaus"),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let output = lookup(
        &server,
        &["--format", "json", "http://198.51.100.10:8080/demo/i0.sh"],
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results[0]["verdict"], "untrusted", "{results}");
    assert_eq!(results[0]["source"], "feed:urlhaus", "{results}");
    // Without the token, or with a wrong one: refused, with what to do.
    let output = upload(&[], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("REPNET_ADMIN_TOKEN"),
        "{}",
        stderr(&output)
    );
    let output = upload(&[], Some("wrong-token"));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("401"), "{}", stderr(&output));
    // A bad setting is caught before anything is uploaded.
    let output = upload(&["--confidence", "500"], Some(TOKEN));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--confidence"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn url_and_domain_lists_import() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let urls = dir.path().join("urls.txt");
    std::fs::write(
        &urls,
        "# phishing kit\nhttp://Kit.Example/login/\nhttp://\nkit.example/a.php?x=1\n",
    )
    .unwrap();
    let domains = dir.path().join("domains.txt");
    std::fs::write(&domains, "Bad.Example.\n\nnot a domain\n").unwrap();
    let output = run(repnet()
        .args([
            "import",
            "--format",
            "urllist",
            "--threat",
            "Phish.Kit",
            "--category",
            "phishing",
            "--data",
        ])
        .arg(&data)
        .arg(&urls));
    assert_eq!(
        stdout(&output),
        "read 3, stored 2, skipped 1 (invalid URL: 1)\n",
        "{}",
        stderr(&output)
    );
    let output = run(repnet()
        .args([
            "import",
            "--format",
            "domainlist",
            "--verdict",
            "riskware",
            "--data",
        ])
        .arg(&data)
        .arg(&domains));
    assert_eq!(
        stdout(&output),
        "read 2, stored 1, skipped 1 (invalid domain: 1)\n",
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("domains.txt:3: "),
        "{}",
        stderr(&output)
    );

    let server = ServerProcess::start(&data);
    let output = lookup(
        &server,
        &[
            "--format",
            "json",
            "https://kit.example/login/step2",
            "cdn.bad.example",
        ],
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results[0]["verdict"], "untrusted");
    assert_eq!(results[0]["threat"], "Phish.Kit");
    assert_eq!(results[0]["matched"], "kit.example/login/");
    assert_eq!(results[0]["source"], "feed:urllist");
    assert_eq!(results[1]["verdict"], "riskware");
    assert_eq!(results[1]["matched"], "bad.example/");
}
