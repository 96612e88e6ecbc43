//! `repnet lookup` and `repnet url`: tables, JSON, exit codes, and web addresses openly and by
//! prefix.

use serde_json::Value;

use crate::common::*;

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
