//! Tests that run the real `repnet` binary: the server as a process, the client against it,
//! imports, crashes (kill -9) and restarts.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use repnet_store::{Store, StoreOptions};
use serde_json::Value;

mod common;
use common::*;

#[test]
fn lookup_prints_a_table_and_exits_1_on_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, repnet_model::EICAR).unwrap();

    let output = lookup(&server, &[EICAR_SHA256]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("OBJECT"), "{text}");
    assert!(text.contains("untrusted EICAR-Test-File"), "{text}");
    assert!(text.contains("builtin"), "{text}");

    let output = lookup(
        &server,
        &[eicar.to_str().unwrap(), "example.com", "192.0.2.1"],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows[1].starts_with(eicar.to_str().unwrap())
            && rows[1].contains("untrusted EICAR-Test-File")
    );
    assert!(rows[2].starts_with("example.com") && rows[2].contains("unknown"));
    assert!(rows[3].starts_with("192.0.2.1") && rows[3].contains("ip"));

    let output = lookup(&server, &["example.com", &"0".repeat(64)]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "nothing untrusted: {}",
        stdout(&output)
    );
}

#[test]
fn lookup_json_is_an_array_of_results() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let output = lookup(&server, &["--format", "json", EICAR_MD5, "Example.COM"]);
    assert_eq!(output.status.code(), Some(1));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["input"], EICAR_MD5);
    assert_eq!(results[0]["verdict"], "untrusted");
    assert_eq!(results[0]["object"]["hashes"]["sha256"], EICAR_SHA256);
    assert_eq!(results[1]["input"], "Example.COM");
    assert_eq!(results[1]["object"]["value"], "example.com");
    assert_eq!(results[1]["verdict"], "unknown");
}

#[test]
fn lookup_errors_exit_2_with_advice() {
    // Nothing listens on this port: bind one and drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = run(repnet().args([
        "lookup",
        "--server",
        &format!("http://127.0.0.1:{port}"),
        EICAR_MD5,
    ]));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("cannot reach") && message.contains("is `repnet serve` running"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "one line: {message}");

    let output = run(repnet().args(["lookup", "not a domain!"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not a hash, IP address, URL or domain name"),
        "{}",
        stderr(&output)
    );

    let output = run(repnet().args(["lookup", "--server", "ftp://x", EICAR_MD5]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("http://127.0.0.1:8080"),
        "{}",
        stderr(&output)
    );
}

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
fn a_second_server_on_the_same_data_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = ServerProcess::start(&data);
    let output = run(repnet()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("already in use by another repnet process"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", first.child.id())),
        "{message}"
    );
    // A clean stop (SIGTERM) exits 0 and frees the directory.
    assert!(first.terminate().success());
    let again = ServerProcess::start(&data);
    drop(again);
}

/// `PUT /v1/admin/verdicts`, answered with the status; on a private runtime because the
/// tests themselves are synchronous.

#[test]
fn an_acknowledged_local_verdict_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data);
    let status = put_local_verdict(
        &server.url,
        r#"{"object":{"domain":"blocked.example"},"verdict":"untrusted"}"#,
    );
    assert_eq!(status, 200);
    server.kill_9();

    let server = ServerProcess::start(&data);
    let output = lookup(&server, &["blocked.example"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("local"));
}

fn write_hash_list(path: &Path, count: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..count {
        writeln!(file, "{}", repnet_model::Sha256::digest(&i.to_le_bytes())).unwrap();
    }
    file.flush().unwrap();
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
        store.stats().unwrap().keys
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
    let keys = store.stats().unwrap().keys;
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
    assert_eq!(store.stats().unwrap().keys, before - 1 + LINES);
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
fn print_config_shows_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("repnet.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:9001\"\nttl_seconds = 111\nunknown_ttl_seconds = 11\n",
    )
    .unwrap();
    let output = run(repnet()
        .args(["serve", "--print-config", "--config"])
        .arg(&config)
        .env("REPNET_TTL_SECONDS", "222")
        .env("REPNET_UNKNOWN_TTL_SECONDS", "22")
        .args(["--unknown-ttl-seconds", "33"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("listen = \"127.0.0.1:9001\""), "{text}");
    assert!(text.contains("ttl_seconds = 222"), "{text}");
    assert!(text.contains("unknown_ttl_seconds = 33"), "{text}");
    assert!(text.contains("# admin API disabled"), "{text}");

    std::fs::write(&config, "ttl_secs = 1\n").unwrap();
    let output = run(repnet()
        .args(["serve", "--print-config", "--config"])
        .arg(&config));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown field `ttl_secs`"),
        "{}",
        stderr(&output)
    );

    let output = run(repnet().args(["serve", "--print-config", "--max-batch-items", "20000"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("max_batch_items"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn url_debug_commands() {
    let output = run(repnet().args([
        "url",
        "canonicalize",
        "http://A.Evil.Example.:80/x/../y?z#f",
    ]));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "http://a.evil.example/y?z\n");
    let output = run(repnet().args(["url", "expressions", "http://a.b.c/1/2.html?param=1"]));
    assert_eq!(
        stdout(&output),
        "a.b.c/1/2.html?param=1\na.b.c/1/2.html\na.b.c/1/\na.b.c/\nb.c/1/2.html?param=1\nb.c/1/2.html\nb.c/1/\nb.c/\n"
    );
    let output = run(repnet().args(["url", "expressions", "http://"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("give a host"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn lookup_urls_openly_and_privately() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, repnet_model::EICAR).unwrap();

    let output = lookup(
        &server,
        &[
            "http://www.phishing.test.repnet.invalid/login?x",
            "clean.example/page",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.lines().next().unwrap().ends_with("MATCHED"), "{text}");
    assert!(text.contains("phishing.test.repnet.invalid/"), "{text}");
    assert!(text.contains("untrusted Repnet-Test-phishing"), "{text}");

    for args in [
        vec![
            "--private",
            "http://www.phishing.test.repnet.invalid/login?x",
            eicar.to_str().unwrap(),
            "clean.example",
        ],
        vec![
            "--private",
            "--format",
            "json",
            "http://www.phishing.test.repnet.invalid/login?x",
            eicar.to_str().unwrap(),
            "clean.example",
        ],
    ] {
        let output = lookup(&server, &args);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        if args.contains(&"json") {
            let results: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(results[0]["verdict"], "untrusted");
            assert_eq!(results[0]["matched"], "phishing.test.repnet.invalid/");
            assert_eq!(results[1]["threat"], "EICAR-Test-File");
            assert_eq!(results[1]["object"]["type"], "file");
            assert_eq!(results[1]["object"]["hashes"]["md5"], EICAR_MD5);
            assert_eq!(results[2]["verdict"], "unknown");
        } else {
            let text = stdout(&output);
            assert!(text.contains("untrusted EICAR-Test-File"), "{text}");
        }
    }
    // Privacy mode finds a file by its MD5 too (by an MD5 prefix).
    let output = lookup(&server, &["--private", EICAR_MD5]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).contains("untrusted EICAR-Test-File"));
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

#[test]
fn licence_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = ServerProcess::start_with(&dir.path().join("data"), &["--role", "private"]);
    ServerProcess::drain(log, None);
    let key = "ORG-CLI-2027-ABCD";
    let output = admin(
        &server,
        &[
            "keys",
            "add",
            key,
            "--label",
            "Example Corp",
            "--expires",
            "2099-01-01",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("Example Corp") && !stdout(&output).contains(key));

    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let output = lookup(&server, &["--key", key, eicar]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Without a key: exit 2, and the server's message as it is.
    let output = lookup(&server, &[eicar]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("licence_not_registered") && stderr(&output).contains("provider"),
        "{}",
        stderr(&output)
    );

    let output = admin(&server, &["keys", "revoke", key]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run(repnet()
        .args(["lookup", "--server", &server.url, eicar])
        .env("REPNET_KEY", key));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("licence_revoked"),
        "{}",
        stderr(&output)
    );
    let output = admin(&server, &["keys", "list", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(list["keys"][0]["revoked"].is_string());
    let output = admin(&server, &["keys", "revoke", "NO-SUCH-KEY-HERE"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("keys list"), "{}", stderr(&output));
    let output = admin(&server, &["keys", "add", "short"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn kill_9_of_a_private_server_during_pulls_then_it_converges() {
    const ENTRIES: u64 = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let (global_data, private_data) = (dir.path().join("global"), dir.path().join("private"));
    let list = dir.path().join("list.txt");
    write_hash_list(&list, ENTRIES);
    let output = run(repnet()
        .args([
            "import",
            "--format",
            "hashlist",
            "--source",
            "big",
            "--threat",
            "Big.Threat",
            "--data",
        ])
        .arg(&global_data)
        .arg(&list));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let global = ServerProcess::start(&global_data);
    let key = "PRIVATE-ORG-KEY-0001";
    assert_eq!(admin(&global, &["keys", "add", key]).status.code(), Some(0));
    let private_args = [
        "--role",
        "private",
        "--upstream",
        &global.url,
        "--upstream-key",
        key,
    ];

    // Killed as it starts its first pull, then again soon after it restarts.
    let (private, log) = ServerProcess::start_with(&private_data, &private_args);
    assert!(
        ServerProcess::drain(log, Some("fetching a snapshot")),
        "the private server never pulled"
    );
    private.kill_9();
    let (private, log) = ServerProcess::start_with(&private_data, &private_args);
    ServerProcess::drain(log, None);
    private.kill_9();

    // Changes upstream meanwhile, then a clean start: it must converge.
    let body = r#"{"object":{"domain":"while-down.example"},"verdict":"untrusted"}"#;
    assert_eq!(put_local_verdict(&global.url, body), 200);
    let (private, log) = ServerProcess::start_with(&private_data, &private_args);
    ServerProcess::drain(log, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (global_status, private_status) = (status(&global), status(&private));
        let upstream = &private_status["upstream"];
        if upstream["local_sequence"] == global_status["sequence"]
            && upstream["upstream_log_id"] == global_status["log_id"]
        {
            // The same keys: nothing missing, nothing extra.
            assert_eq!(
                private_status["knowledge_base_entries"],
                global_status["knowledge_base_entries"]
            );
            break;
        }
        // Each round runs `repnet admin status` twice: that paces the polling.
        assert!(
            std::time::Instant::now() < deadline,
            "no convergence: {private_status}"
        );
    }
    assert_eq!(
        admin(&private, &["keys", "add", "DEVICE-KEY-00001"])
            .status
            .code(),
        Some(0)
    );
    let sample: Vec<String> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .step_by(50_000)
        .map(str::to_owned)
        .collect();
    for hash in &sample {
        let output = lookup(
            &private,
            &["--key", "DEVICE-KEY-00001", "--format", "json", hash],
        );
        assert_eq!(output.status.code(), Some(1), "{hash}: {}", stderr(&output));
        assert!(stdout(&output).contains("Big.Threat"));
    }
    let output = lookup(
        &private,
        &["--key", "DEVICE-KEY-00001", "while-down.example"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn bundles_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (global, inside) = (dir.path().join("global"), dir.path().join("inside"));
    let list = dir.path().join("list.txt");
    write_hash_list(&list, 1_000);
    let import = |data: &Path| {
        run(repnet()
            .args(["import", "--format", "hashlist", "--source", "kb", "--data"])
            .arg(data)
            .arg(&list))
    };
    assert_eq!(import(&global).status.code(), Some(0));
    let stem = dir.path().join("provider");
    let output = run(repnet().args(["bundle", "keygen", "--out"]).arg(&stem));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (secret, public) = (stem.with_extension("key"), stem.with_extension("pub"));
    let export = |out: &Path, after: Option<&str>| {
        let mut command = repnet();
        command
            .args(["bundle", "export", "--signing-key"])
            .arg(&secret)
            .arg("--out")
            .arg(out)
            .arg("--data")
            .arg(&global);
        if let Some(after) = after {
            command.args(["--after", after]);
        }
        run(&mut command)
    };
    let import_bundle = |file: &Path| {
        run(repnet()
            .args(["bundle", "import"])
            .arg(file)
            .arg("--data")
            .arg(&inside)
            .arg("--public-key")
            .arg(&public))
    };
    let full = dir.path().join("full.bundle");
    let output = export(&full, None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = import_bundle(&full);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("snapshot"), "{}", stdout(&output));
    let to: u64 = stdout(&output)
        .split(" → ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // More upstream; a bundle after a sequence the inside has not reached is refused.
    let more = dir.path().join("more.txt");
    std::fs::write(&more, format!("{}\n", "cd".repeat(32))).unwrap();
    let output = run(repnet()
        .args([
            "import", "--format", "hashlist", "--source", "more", "--data",
        ])
        .arg(&global)
        .arg(&more));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let ahead = dir.path().join("ahead.bundle");
    assert_eq!(
        export(&ahead, Some(&(to + 1).to_string())).status.code(),
        Some(0)
    );
    let output = import_bundle(&ahead);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!("export with --after {to}")),
        "{}",
        stderr(&output)
    );
    let next = dir.path().join("next.bundle");
    assert_eq!(export(&next, Some(&to.to_string())).status.code(), Some(0));
    let output = import_bundle(&next);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let store = Store::open(&inside, &StoreOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let hash = repnet_model::Sha256::from_hex(&"cd".repeat(32)).unwrap();
    let found = runtime
        .block_on(
            store.lookup(&[repnet_model::Object::File(repnet_model::FileHash::Sha256(
                hash,
            ))]),
        )
        .unwrap();
    assert_eq!(found[0].records[0].source, repnet_model::Source::Upstream);
}

#[test]
fn participation_off_sends_nothing_and_answers_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client").join("client.toml");
    let server = ServerProcess::start(&dir.path().join("data"));
    let output = run(client(&config).args(["lookup", "--server", &server.url, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let output = run(client(&config).args(["participation", "off"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Answers are cached by the server that gave them: listen where the server was, and
    // count.
    let address = server.url.trim_start_matches("http://").to_owned();
    drop(server);
    let (silent, connections) = counting_listener_at(&address);
    // Answered from the cache: still untrusted, and not a single connection.
    let output = run(client(&config).args(["lookup", "--server", &silent, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("participation is off"));
    let output = run(client(&config).args(["lookup", "--server", &silent, "never-asked.example"]));
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("unknown"));
    let output =
        run(client(&config).args(["report-false-positive", EICAR_SHA256, "--server", &silent]));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    let output = run(client(&config).args(["participation", "show"]));
    assert!(
        stdout(&output).contains("participation: off"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn statistics_need_the_statement_accepted_again_after_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.toml");
    let data = dir.path().join("data");
    let sample = dir.path().join("eicar.com");
    std::fs::write(&sample, repnet_model::EICAR).unwrap();
    let server = ServerProcess::start(&data);
    let with = |args: &[&str]| run(client(&config).args(args).env("REPNET_SERVER", &server.url));

    let output = with(&["participation", "extended"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("repnet statement --accept"),
        "{}",
        stderr(&output)
    );
    let output = with(&["statement"]);
    assert!(
        stdout(&output).contains("No personal data")
            && stdout(&output).contains("repnet statement --accept")
    );
    assert_eq!(with(&["statement", "--accept"]).status.code(), Some(0));
    let output = with(&["participation", "extended"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = with(&["lookup", sample.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Sent (a sighting and a detection): the queue is empty and the server counts one device.
    let show = stdout(&with(&["participation", "show"]));
    assert!(
        show.contains("participation: extended") && show.contains("\"events\": []"),
        "{show}"
    );
    // The server it names is the one it would send to: REPNET_SERVER, or --server.
    assert!(show.contains(&format!("server: {}", server.url)), "{show}");
    let show = stdout(&with(&[
        "participation",
        "show",
        "--server",
        "http://127.0.0.1:9",
    ]));
    assert!(show.contains("server: http://127.0.0.1:9"), "{show}");
    let output = with(&["lookup", "--format", "json", EICAR_SHA256]);
    let answers: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(answers[0]["prevalence"], 1, "{answers}");
    server.terminate();

    // A new statement: the client falls back to basic and says so.
    let server_config = dir.path().join("server.toml");
    std::fs::write(
        &server_config,
        format!("statement_version = 2\n{QUICK_ENROLMENT}"),
    )
    .unwrap();
    let (server, log) =
        ServerProcess::start_with(&data, &["--config", server_config.to_str().unwrap()]);
    ServerProcess::drain(log, None);
    let url = server.url.clone();
    let with = |args: &[&str]| run(client(&config).args(args).env("REPNET_SERVER", &url));
    let output = with(&["lookup", sample.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("back to basic"),
        "{}",
        stderr(&output)
    );
    let show = stdout(&with(&["participation", "show"]));
    assert!(
        show.contains("participation: basic") && show.contains("statement accepted: version 1"),
        "{show}"
    );
    // What would be sent is shown, scrubbed the same way the server scrubs it.
    assert!(show.contains("\"type\": \"sighting\""), "{show}");
    assert_eq!(with(&["statement", "--accept"]).status.code(), Some(0));
    assert_eq!(with(&["participation", "extended"]).status.code(), Some(0));
    let output = with(&[
        "report-false-positive",
        EICAR_SHA256,
        "--comment",
        "it is our test file, write to alice@corp.example",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("reported"));
    let show = stdout(&with(&["participation", "show"]));
    assert!(show.contains("\"events\": []"), "{show}");
    // The administrator sees the report, scrubbed, and settles it.
    let review = admin(&server, &["review", "list"]);
    assert_eq!(review.status.code(), Some(0), "{}", stderr(&review));
    let listed = stdout(&review);
    assert!(
        listed.contains(EICAR_SHA256) && listed.contains("<e-mail>") && !listed.contains("alice@"),
        "{listed}"
    );
    let id = listed.split_whitespace().next().unwrap().to_owned();
    let settled = admin(&server, &["review", "settle", &id, "--verdict", "dismiss"]);
    assert_eq!(settled.status.code(), Some(0), "{}", stderr(&settled));
    assert!(stdout(&settled).contains("nothing to review"));

    // Queued while the server is away: shown scrubbed.
    server.terminate();
    let output = with(&[
        "report-false-positive",
        EICAR_SHA256,
        "--comment",
        "ask bob@corp.example",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("queued"));
    let show = stdout(&with(&["participation", "show"]));
    assert!(
        show.contains("ask <e-mail>") && !show.contains("bob@corp.example"),
        "{show}"
    );
}

#[test]
fn an_acknowledged_statistics_batch_survives_kill_9_and_nothing_personal_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, log) = ServerProcess::start_with(&data, &["--log", "debug"]);
    let logged = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let collector = std::sync::Arc::clone(&logged);
    let reader = std::thread::spawn(move || {
        for line in log.map_while(Result::ok) {
            let mut text = collector.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let installation = runtime.block_on(async {
        repnet_client::Client::new(&server.url)
            .unwrap()
            .enrol_installation()
            .await
            .unwrap()
            .installation
    });
    let body = serde_json::json!({
        "statement_version": 1,
        "installation": installation,
        "product": "test/1",
        "events": [
            {"type": "detection", "file": "ab".repeat(32), "name": "C:\\Users\\mallory-secret\\x.exe"},
            {"type": "false_positive", "url": "http://u:p@evil.example/?q=SECRET-Q", "comment": "me: mallory@secret.example"}
        ]
    });
    let status = runtime.block_on(async {
        repnet_client::http_client_builder()
            .build()
            .unwrap()
            .post(format!("{}/v1/statistics", server.url))
            .header("x-forwarded-for", "203.0.113.99")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 202);
    server.kill_9();
    reader.join().unwrap();
    let store = Store::open(&data, &StoreOptions::default()).unwrap();
    assert_eq!(store.event_count().unwrap(), 2);
    let file = repnet_model::Object::File(repnet_model::FileHash::Sha256(repnet_model::Sha256(
        [0xab; 32],
    )));
    assert_eq!(
        store.aggregate(&file).unwrap().unwrap().detecting_devices,
        1
    );
    drop(store);
    let log = logged.lock().unwrap().clone();
    assert!(
        log.contains("statistics stored"),
        "debug logging was on: {log}"
    );
    for needle in ["mallory", "SECRET-Q", &installation, "203.0.113.99"] {
        assert!(!log.contains(needle), "{needle:?} in the log");
    }
    let bytes = std::fs::read(data.join("data.mdb")).unwrap();
    for needle in ["mallory", "SECRET-Q", &installation, "203.0.113.99"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} on disk"
        );
    }
}

#[test]
fn the_proxy_command_serves_devices_and_takes_settings() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let proxy = ProxyProcess::start(&server.url, &dir.path().join("proxy"));
    let url = proxy.url.clone();
    let output = run(repnet().args(["lookup", "--server", &url, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let output = run(repnet()
        .args([
            "admin",
            "settings",
            "set",
            "forward_statistics",
            "true",
            "--server",
            &url,
        ])
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("\"forward_statistics\": true"),
        "{}",
        stdout(&output)
    );
    let output = run(repnet()
        .args([
            "admin",
            "settings",
            "set",
            "cache_max_entries",
            "0",
            "--server",
            &url,
        ])
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cache_max_entries"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn scan_finds_untrusted_files_reuses_its_caches_and_rechecks_after_offline() {
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

    // Again, unchanged: no file read, no lookup request.
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

    // CSV, filters and limits.
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

    // Privacy mode finds the same, by hash prefixes (and does not use the answer cache).
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

    // Offline: a new client (empty caches), the server away.
    let fresh = dir.path().join("fresh").join("client.toml");
    let address = server.url.trim_start_matches("http://").to_owned();
    drop(server);
    let dead = format!("http://{address}");
    let output = run(client(&fresh)
        .arg("scan")
        .arg(&tree)
        .args(["--server", &dead, "--format", "json"]));
    // Nothing could be checked: a CI gate must not pass.
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
    // The server is back where it was: the recheck asks it.
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

/// The client scrubs what it knows and the server cannot: its own home folder and user
/// name, wherever they are in a path. Planted, sent in extended mode, and looked for in every
/// file of the server's data directory.
#[test]
fn the_clients_own_home_and_user_name_never_reach_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.toml");
    let data = dir.path().join("data");
    let home = dir.path().join("home-planted-secret");
    let folder = home.join("docs").join("plantuser-notes");
    std::fs::create_dir_all(&folder).unwrap();
    let sample = folder.join("eicar.com");
    std::fs::write(&sample, repnet_model::EICAR).unwrap();
    let server = ServerProcess::start(&data);
    let with = |args: &[&str]| {
        run(client(&config)
            .args(args)
            .env("REPNET_SERVER", &server.url)
            .env("HOME", &home)
            .env("USER", "plantuser"))
    };
    assert_eq!(with(&["statement", "--accept"]).status.code(), Some(0));
    assert_eq!(with(&["participation", "extended"]).status.code(), Some(0));
    let output = with(&["lookup", sample.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let show = stdout(&with(&["participation", "show"]));
    assert!(
        show.contains("\"events\": []"),
        "everything was sent: {show}"
    );
    server.terminate();
    let mut found_scrubbed = false;
    let mut stack = vec![data.clone()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for planted in ["plantuser", "home-planted-secret"] {
            assert!(
                !bytes
                    .windows(planted.len())
                    .any(|w| w == planted.as_bytes()),
                "{planted} found in {}",
                path.display()
            );
        }
        let kept = "~/docs/<user>-notes/eicar.com";
        found_scrubbed |= bytes.windows(kept.len()).any(|w| w == kept.as_bytes());
    }
    assert!(found_scrubbed, "the scrubbed name was stored");
}
