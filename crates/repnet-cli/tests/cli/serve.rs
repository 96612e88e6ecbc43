//! `repnet serve`: one server per data directory, acknowledged writes that survive kill -9 (a
//! private server's pulls too), and where its configuration comes from.

use crate::common::*;

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
