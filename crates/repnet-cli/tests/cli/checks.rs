//! No false "clean": the real `repnet` binary finds files by every hash, never turns a
//! mistake into "unknown", and says in its exit code whether everything was checked.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

/// A data directory where a feed lists `md5_only.txt` by its MD5 and `sha1_only.txt` by its
/// SHA-1, and nothing else: the two files written in `dir`.
fn server_with_md5_and_sha1_listings(dir: &Path) -> ServerProcess {
    let data = dir.join("data");
    let md5_file = dir.join("files/md5_only.txt");
    let sha1_file = dir.join("files/sha1_only.txt");
    std::fs::create_dir_all(md5_file.parent().unwrap()).unwrap();
    std::fs::write(&md5_file, b"listed by its MD5 only, as ClamAV .hdb does").unwrap();
    std::fs::write(&sha1_file, b"listed by its SHA-1 only").unwrap();
    let hashes = |path: &Path| repnet_model::FileHashes::of(&std::fs::read(path).unwrap());
    let list = dir.join("list.txt");
    std::fs::write(
        &list,
        format!(
            "{}\n{}\n",
            hashes(&md5_file).md5.unwrap(),
            hashes(&sha1_file).sha1.unwrap()
        ),
    )
    .unwrap();
    let output = run(repnet()
        .args([
            "import",
            "--format",
            "hashlist",
            "--threat",
            "Md5.Listed",
            "--data",
        ])
        .arg(&data)
        .arg(&list));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    ServerProcess::start(&data)
}

#[test]
fn files_listed_by_md5_or_sha1_only_are_found_by_lookup_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_md5_and_sha1_listings(dir.path());
    let files = dir.path().join("files");
    let md5_file = files.join("md5_only.txt");

    let output = lookup(&server, &[md5_file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("untrusted Md5.Listed"),
        "{}",
        stdout(&output)
    );

    let config = dir.path().join("client/client.toml");
    let output = run(client(&config)
        .args(["scan", "--server", &server.url, "--format", "json"])
        .arg(&files));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for result in results {
        assert_eq!(result["verdict"], "untrusted", "{result}");
        assert!(result["md5"].is_string() && result["sha1"].is_string());
    }

    // Privacy mode finds them too, by prefixes of their MD5 and SHA-1.
    let private = dir.path().join("private/client.toml");
    let output = run(client(&private)
        .args(["scan", "--private", "--server", &server.url])
        .arg(&files));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output).matches("untrusted").count(), 2);

    // `--hashes sha256` is the fast path, and blind to such listings, as documented.
    let fast = dir.path().join("fast/client.toml");
    let output = run(client(&fast)
        .args(["scan", "--hashes", "sha256", "--server", &server.url])
        .arg(&files));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_mistake_is_reported_never_answered_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, repnet_model::EICAR).unwrap();

    // Each mistake alone: exit 2 and a message that says what the argument is not.
    let missing_hash = &EICAR_SHA256[..63];
    for (argument, message) in [
        ("invoice.pdf", "no such file"),
        ("setup.exe", "no such file"),
        ("./missing.exe", "no such file"),
        (missing_hash, "not a hash (63 hexadecimal characters"),
        ("999.1.1.1", "not an IP address"),
    ] {
        let output = lookup(&server, &[argument]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{argument}: {}",
            stdout(&output)
        );
        assert!(
            stderr(&output).contains(&format!("{argument}: {message}")),
            "{argument}: {}",
            stderr(&output)
        );
        assert!(!stdout(&output).contains("unknown"), "{argument}");
    }

    // One bad argument among good ones: the good ones are answered and printed.
    let output = lookup(&server, &["example.com", "invoice.pdf", "192.0.2.1"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    assert!(
        text.contains("example.com") && text.contains("192.0.2.1"),
        "{text}"
    );
    assert!(!text.contains("invoice.pdf"), "{text}");
    // ... and something untrusted still makes it 1.
    let output = lookup(&server, &["invoice.pdf", eicar.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    // JSON keeps every argument, the bad ones with their error.
    let output = lookup(&server, &["--format", "json", "example.com", "invoice.pdf"]);
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results[0]["verdict"], "unknown");
    assert_eq!(results[1]["input"], "invoice.pdf");
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("no such file")
    );

    // Said explicitly, a name without a public suffix is a domain.
    let output = lookup(&server, &["domain:invoice.pdf"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = lookup(&server, &["--type", "domain", "setup.exe"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // `-` reads one item per line from standard input.
    let mut child = repnet()
        .args(["lookup", "--server", &server.url, "--format", "ndjson", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("# a list\n{EICAR_MD5}\n\nexample.com\n{missing_hash}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&output));
    assert_eq!(lines[0]["verdict"], "untrusted");
    assert_eq!(lines[1]["input"], "example.com");
    assert!(lines[2]["error"].as_str().unwrap().contains("not a hash"));

    // `--explain` works with the table: the records under each row, the decisive marked.
    let output = lookup(&server, &["--explain", EICAR_SHA256]);
    let text = stdout(&output);
    assert!(
        text.contains("* builtin untrusted EICAR-Test-File"),
        "{text}"
    );
    assert!(text.contains("why: "), "{text}");

    // CSV, one row per argument.
    let output = lookup(&server, &["--format", "csv", EICAR_MD5, "invoice.pdf"]);
    let csv = stdout(&output);
    assert!(csv.starts_with("input,type,verdict"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn exit_codes_say_whether_everything_was_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let config = dir.path().join("client/client.toml");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("clean.txt"), b"nothing to see").unwrap();

    // A path that does not exist is not a clean scan.
    let missing = dir.path().join("no-such-folder");
    let output = run(client(&config)
        .args(["scan", "--server", &server.url])
        .arg(&tree)
        .arg(&missing));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("no such file or folder"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("clean.txt"));

    // Riskware passes by default and fails with --fail-on riskware.
    let riskware = "x.remote-admin.test.repnet.invalid";
    let output = lookup(&server, &[riskware]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("riskware"));
    let output = lookup(&server, &["--fail-on", "riskware", riskware]);
    assert_eq!(output.status.code(), Some(1));

    // An unreachable server: nothing was checked.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let offline = dir.path().join("offline/client.toml");
    let output = run(client(&offline)
        .args(["scan", "--server", &dead])
        .arg(&tree));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stdout(&output).contains("unknown (offline)"));
}

/// `repnet … | head -1`: a closed standard output ends the command quietly.
#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let config = dir.path().join("client/client.toml");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("eicar.com"), repnet_model::EICAR).unwrap();
    let commands: Vec<Vec<String>> = vec![
        vec!["url", "expressions", "http://a.b.c.example/1/2/3?q"],
        vec!["url", "canonicalize", "http://A.example/"],
        vec!["participation", "show"],
        vec!["lookup", "--server", &server.url, EICAR_MD5, "example.com"],
        vec!["scan", "--server", &server.url, tree.to_str().unwrap()],
        vec!["admin", "keys", "list", "--server", &server.url],
        vec!["--help"],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(str::to_owned).collect())
    .collect();
    for args in commands {
        // A pipe whose reading end is already closed: every write to it fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = client(&config)
            .args(&args)
            .env("REPNET_ADMIN_TOKEN", TOKEN)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let errors = stderr(&output);
        assert!(!errors.contains("panicked"), "{args:?}: {errors}");
        assert_ne!(output.status.code(), Some(101), "{args:?}: {errors}");
    }
}

/// With its upstream down, a proxy answers what it has cached, item by item, and the client
/// records the rest for `--recheck` and says that not everything was checked.
#[test]
fn through_a_proxy_whose_upstream_is_down_what_is_cached_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let proxy = ProxyProcess::start(&server.url, &dir.path().join("proxy"));
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("eicar.com"), repnet_model::EICAR).unwrap();
    std::fs::write(tree.join("clean.txt"), b"asked once through the proxy").unwrap();
    let first = dir.path().join("first/client.toml");
    let output = run(client(&first)
        .args(["scan", "--server", &proxy.url])
        .arg(&tree));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let output = run(repnet().args(["lookup", "--server", &proxy.url, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    // The upstream goes away; a new file appears; another device (empty caches) scans.
    drop(server);
    std::fs::write(tree.join("new.txt"), b"never asked before").unwrap();
    let second = dir.path().join("second/client.toml");
    let output = run(client(&second)
        .args(["scan", "--server", &proxy.url, "--format", "json"])
        .arg(&tree));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let verdict = |name: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(name))
            .map(|r| r["verdict"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(verdict("eicar.com"), "untrusted");
    assert_eq!(verdict("clean.txt"), "unknown");
    assert_eq!(verdict("new.txt"), "unknown (offline)");
    assert!(stderr(&output).contains("--recheck"), "{}", stderr(&output));
    let offline = std::fs::read_to_string(client_state(&second, "offline.json")).unwrap();
    assert_eq!(offline.matches("new.txt").count(), 1, "{offline}");

    // Without the untrusted file, the scan says that not everything was checked.
    std::fs::remove_file(tree.join("eicar.com")).unwrap();
    let output = run(client(&second)
        .args(["scan", "--server", &proxy.url])
        .arg(&tree));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    // A lookup: the cached item answered, the other reported as not checked.
    let output = run(repnet().args([
        "lookup",
        "--server",
        &proxy.url,
        EICAR_SHA256,
        "never-asked.example",
    ]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).contains("untrusted EICAR-Test-File"));
    assert!(
        stderr(&output).contains("never-asked.example: not checked"),
        "{}",
        stderr(&output)
    );
}

/// An answer a proxy serves past its lifetime says so in the CLI's output, not only in a
/// header.
#[test]
fn a_stale_answer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = ServerProcess::start_with(
        &dir.path().join("data"),
        &["--ttl-seconds", "1", "--unknown-ttl-seconds", "1"],
    );
    ServerProcess::drain(log, None);
    let proxy = ProxyProcess::start(&server.url, &dir.path().join("proxy"));
    let output = run(repnet().args(["lookup", "--server", &proxy.url, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    drop(server);
    // Poll until the cached answer has passed its second of lifetime.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let output = run(repnet().args([
            "lookup",
            "--server",
            &proxy.url,
            "--format",
            "json",
            EICAR_SHA256,
        ]));
        let results: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if results[0]["stale"] == true {
            assert_eq!(results[0]["verdict"], "untrusted");
            assert_eq!(output.status.code(), Some(1));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stale: {results}"
        );
    }
    let output = run(repnet().args(["lookup", "--server", &proxy.url, EICAR_SHA256]));
    assert!(
        stdout(&output).contains("untrusted EICAR-Test-File (stale)"),
        "{}",
        stdout(&output)
    );
}

/// An answer cached from one server is never shown as another's, and the client's files are
/// where the XDG base directory specification puts them.
#[test]
fn client_caches_belong_to_one_server_and_live_in_the_xdg_directories() {
    let dir = tempfile::tempdir().unwrap();
    let global = ServerProcess::start(&dir.path().join("global"));
    let private = ServerProcess::start(&dir.path().join("private"));
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let sample = tree.join("tool.exe");
    std::fs::write(&sample, b"a tool the global network flags").unwrap();
    let sha256 = repnet_model::FileHashes::of(&std::fs::read(&sample).unwrap())
        .sha256
        .unwrap()
        .to_string();
    assert_eq!(
        put_local_verdict(
            &global.url,
            &format!(
                r#"{{"object":{{"file":"{sha256}"}},"verdict":"untrusted","threat":"Global.Says.Bad"}}"#
            )
        ),
        200
    );

    let home = dir.path().join("home");
    let config = home.join(".config/repnet/client.toml");
    let user = |args: &[&str]| {
        let mut command = repnet();
        command
            .env_remove("REPNET_CLIENT_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_STATE_HOME")
            .env("HOME", &home)
            // As a fleet's installer chooses for its users (docs/privacy.md).
            .env("REPNET_PARTICIPATION", "basic")
            .args(args);
        run(&mut command)
    };
    let scan = |server: &str| {
        user(&[
            "scan",
            "--server",
            server,
            "--format",
            "json",
            tree.to_str().unwrap(),
        ])
    };
    let output = scan(&global.url);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // The private server knows nothing of it: its answer, not the global one's from the cache.
    let output = scan(&private.url);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results[0]["verdict"], "unknown");
    // And the global answer is still cached for the global server: no lookup request.
    let before = lookup_requests(&global.url);
    let output = scan(&global.url);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(lookup_requests(&global.url), before);
    // A licence key is part of whom an answer came from.
    let keyed = user(&[
        "scan",
        "--server",
        &global.url,
        "--key",
        "SOME-KEY-12345",
        tree.to_str().unwrap(),
    ]);
    assert_eq!(keyed.status.code(), Some(1));
    assert_eq!(lookup_requests(&global.url), before + 1);

    // The files: configuration, caches and state each in their XDG place, nothing else.
    let output = user(&["participation", "basic"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(config.is_file());
    assert!(home.join(".cache/repnet/caches/data.mdb").is_file());
    drop(private);
    let output = user(&[
        "scan",
        "--server",
        "http://127.0.0.1:9",
        tree.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(home.join(".local/state/repnet/offline.json").is_file());
    let beside: Vec<String> = std::fs::read_dir(config.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, ["client.toml"]);
}

/// A feed read with the wrong format never wipes its source, whatever the flags.
#[test]
fn a_wrong_feed_format_never_wipes_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let samples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../repnet-feeds/tests/samples");
    let list = dir.path().join("corp.txt");
    let hashes = ["aa".repeat(32), "bb".repeat(32), "cc".repeat(32)];
    std::fs::write(&list, hashes.join("\n")).unwrap();
    let import = |args: &[&str], file: &Path| {
        run(repnet()
            .args(["import", "--source", "corp", "--data"])
            .arg(&data)
            .args(args)
            .arg(file))
    };
    let output = import(&["--format", "hashlist"], &list);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let urlhaus = samples.join("urlhaus.csv");
    for flags in [
        vec!["--format", "malwarebazaar"],
        vec!["--format", "malwarebazaar", "--allow-empty"],
        vec!["--format", "hashlist", "--allow-empty"],
        vec!["--format", "malwarebazaar", "--dry-run"],
    ] {
        let output = import(&flags, &urlhaus);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?}: {}",
            stdout(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains("not one was a valid entry"),
            "{flags:?}: {message}"
        );
        assert!(message.contains("rows read as"), "{message}");
        assert!(
            message.contains("urlhaus.csv:"),
            "the first bad rows by line: {message}"
        );
        assert!(message.contains("try --format urlhaus"), "{message}");
        assert!(message.contains("records are kept"), "{message}");
    }
    // The source still has its three records.
    let store = repnet_store::Store::open(&data, &repnet_store::StoreOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let objects: Vec<repnet_model::Object> = hashes
        .iter()
        .map(|h| repnet_model::Object::parse(repnet_model::ObjectKind::File, h).unwrap())
        .collect();
    let found = runtime.block_on(store.lookup(&objects)).unwrap();
    assert!(found.iter().all(|k| k.records.len() == 1), "{found:?}");
    drop(store);

    // An empty feed: refused with the flag named, accepted with it (and then retracted).
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# nothing today\n").unwrap();
    let output = import(&["--format", "hashlist"], &empty);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--allow-empty"),
        "{}",
        stderr(&output)
    );
    let output = import(&["--format", "hashlist", "--allow-empty"], &empty);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("3 records retracted"),
        "{}",
        stderr(&output)
    );

    // Auto-detection takes a hash list with a bad line, and reports the line.
    let sums = dir.path().join("sums.txt");
    std::fs::write(
        &sums,
        format!(
            "{}  a.exe\n{}  b.exe\noops\n{}  c.exe\n",
            "dd".repeat(32),
            "ee".repeat(32),
            "ff".repeat(32)
        ),
    )
    .unwrap();
    let output = import(&[], &sums);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("stored 3, skipped 1"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("sums.txt:3"),
        "{}",
        stderr(&output)
    );
}

/// Polls `check` (each round runs commands, which paces it) for up to `seconds`.
fn poll(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
    }
}

/// After a licence change, a private server and a proxy take the new key from their key
/// files without a restart; SIGHUP reads them again at once and stops nothing.
#[test]
fn a_new_upstream_key_file_is_used_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let global = ServerProcess::start(&dir.path().join("global"));
    let (old, new) = ("ORG-KEY-OLD-000001", "ORG-KEY-NEW-000002");
    assert_eq!(admin(&global, &["keys", "add", old]).status.code(), Some(0));
    let key_file = dir.path().join("upstream-key");
    std::fs::write(&key_file, format!("{old}\n")).unwrap();
    let (private, log) = ServerProcess::start_with(
        &dir.path().join("private"),
        &[
            "--role",
            "private",
            "--upstream",
            &global.url,
            "--upstream-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    ServerProcess::drain(log, None);
    poll(30, "a first pull", || {
        !status(&private)["upstream"]["last_success"].is_null()
    });
    let proxy_key = dir.path().join("proxy-key");
    std::fs::write(&proxy_key, old).unwrap();
    let proxy = ProxyProcess::start_with(
        &global.url,
        &dir.path().join("proxy"),
        &["--upstream-key-file", proxy_key.to_str().unwrap()],
    );
    let output = admin(&global, &["settings", "set", "require_key", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // The licence changes: the old key is revoked.
    assert_eq!(
        admin(&global, &["keys", "revoke", old]).status.code(),
        Some(0)
    );
    let hangup = |pid: u32| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // SIGHUP pulls at once (and stops nothing).
    hangup(private.child.id());
    poll(30, "the revoked key refused", || {
        status(&private)["upstream"]["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("licence_revoked"))
    });
    // Refused is not unreachable.
    assert_eq!(status(&private)["upstream"]["reachable"], true);
    let output = run(repnet().args(["lookup", "--server", &proxy.url, &"ab".repeat(32)]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("upstream_refused"),
        "{}",
        stderr(&output)
    );

    // The new key is registered upstream and written to the files: no restart.
    assert_eq!(admin(&global, &["keys", "add", new]).status.code(), Some(0));
    let body = r#"{"object":{"domain":"after-the-licence-change.example"},"verdict":"untrusted"}"#;
    assert_eq!(put_local_verdict(&global.url, body), 200);
    std::fs::write(&key_file, format!("{new}\n")).unwrap();
    std::fs::write(&proxy_key, new).unwrap();
    poll(30, "the private server pulling with the new key", || {
        status(&private)["upstream"]["last_error"].is_null()
    });
    poll(30, "the proxy asking with the new key", || {
        run(repnet().args([
            "lookup",
            "--server",
            &proxy.url,
            "after-the-licence-change.example",
        ]))
        .status
        .code()
            == Some(1)
    });
    hangup(proxy.child.id());
    let output = run(repnet().args([
        "lookup",
        "--server",
        &proxy.url,
        "after-the-licence-change.example",
    ]));
    assert_eq!(
        output.status.code(),
        Some(1),
        "the proxy survives SIGHUP: {}",
        stderr(&output)
    );
    assert_eq!(
        status(&private)["role"],
        "private",
        "the private server survives SIGHUP"
    );
}

/// The administrator's daily work from the command line: local verdicts on every kind of
/// object (with comments and expiries), feeds, and the status of a server, a proxy and a
/// bundle-fed server.
#[test]
fn the_administrators_daily_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("corp.txt");
    std::fs::write(&list, format!("{}\n", "ab".repeat(32))).unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[[feeds]]\nname = \"corp\"\nformat = \"hashlist\"\npath = {:?}\ninterval_seconds = 3600\n",
            list.display().to_string()
        ),
    )
    .unwrap();
    let (server, log) = ServerProcess::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    ServerProcess::drain(log, None);
    let tool = dir.path().join("tool.exe");
    std::fs::write(&tool, b"a tool the administrator trusts").unwrap();
    let certificate = format!("certificate:{}", "c0".repeat(32));
    let verdicts = |args: &[&str]| admin(&server, &[&["verdicts"], args].concat());

    for (object, verdict) in [
        ("corpblock.example", "untrusted"),
        (tool.to_str().unwrap(), "trusted"),
        ("http://phish.example/login", "untrusted"),
        ("192.0.2.7", "riskware"),
        (certificate.as_str(), "untrusted"),
    ] {
        let output = verdicts(&["set", object, "--verdict", verdict, "--comment", "ticket 7"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{object}: {}",
            stderr(&output)
        );
    }
    let output = verdicts(&[
        "set",
        "expiring.example",
        "--verdict",
        "untrusted",
        "--expires",
        "2s",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains(" until "), "{}", stdout(&output));
    let output = verdicts(&["list"]);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1 + 6, "{text}");
    assert!(
        text.contains("ticket 7") && text.contains("expiring.example"),
        "{text}"
    );
    let output = lookup(&server, &[tool.to_str().unwrap(), "www.corpblock.example"]);
    let text = stdout(&output);
    assert!(
        text.contains("trusted") && text.contains("untrusted"),
        "{text}"
    );
    // A mistake is refused; an expiry in the past too.
    let output = verdicts(&["set", "invoice.pdf", "--verdict", "untrusted"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no such file"),
        "{}",
        stderr(&output)
    );
    let output = verdicts(&[
        "set",
        "x.example",
        "--verdict",
        "untrusted",
        "--expires",
        "2020-01-01",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not in the future"),
        "{}",
        stderr(&output)
    );
    // Delete; and the expiring one lapses by itself.
    let output = verdicts(&["delete", "corpblock.example"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    poll(30, "the verdict to lapse", || {
        !stdout(&verdicts(&["list"])).contains("expiring.example")
    });
    let output = lookup(&server, &["expiring.example", "corpblock.example"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));

    // Feeds.
    let output = admin(&server, &["feeds", "list"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("corp (hashlist"),
        "{}",
        stdout(&output)
    );
    let output = admin(&server, &["feeds", "refresh", "corp"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("last success:"),
        "{}",
        stdout(&output)
    );

    // Status: unambiguous for a server, and it works against a proxy.
    let text = stdout(&admin(&server, &["status"]));
    assert!(
        text.contains("knowledge base entries:") && text.contains("licence keys (active):"),
        "{text}"
    );
    let proxy = ProxyProcess::start(&server.url, &dir.path().join("proxy"));
    let output = run(repnet()
        .args(["admin", "status", "--server", &proxy.url])
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("role:                    proxy"),
        "{}",
        stdout(&output)
    );

    // A bundle-fed server says what to export after.
    let stem = dir.path().join("provider");
    assert_eq!(
        run(repnet().args(["bundle", "keygen", "--out"]).arg(&stem))
            .status
            .code(),
        Some(0)
    );
    let key = "ORG-BUNDLE-KEY-0001";
    assert_eq!(admin(&server, &["keys", "add", key]).status.code(), Some(0));
    let bundle = dir.path().join("full.bundle");
    let output = run(repnet()
        .args([
            "bundle",
            "export",
            "--server",
            &server.url,
            "--key",
            key,
            "--signing-key",
        ])
        .arg(stem.with_extension("key"))
        .arg("--out")
        .arg(&bundle));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (inside, log) = ServerProcess::start_with(
        &dir.path().join("inside"),
        &[
            "--bundle-public-key",
            stem.with_extension("pub").to_str().unwrap(),
        ],
    );
    ServerProcess::drain(log, None);
    let output = run(repnet()
        .args(["bundle", "import"])
        .arg(&bundle)
        .args(["--server", &inside.url])
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let inside_status = status(&inside);
    let global_status = status(&server);
    assert_eq!(
        inside_status["fed_from"]["sequence"],
        global_status["sequence"]
    );
    let text = stdout(&admin(&inside, &["status"]));
    let advice = format!("repnet bundle export --after {}", global_status["sequence"]);
    assert!(text.contains(&advice), "{text}");
    // A position that is not in the exporting server's log says where to find the right one.
    let output = run(repnet()
        .args(["bundle", "export", "--server", &server.url, "--key", key])
        .args(["--after", "999999", "--signing-key"])
        .arg(stem.with_extension("key"))
        .arg("--out")
        .arg(dir.path().join("wrong.bundle")));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("fed from"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("repnet bundle export"),
        "{}",
        stderr(&output)
    );
}
