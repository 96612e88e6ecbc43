//! `repnet participation` and statistics: off sends nothing, the statement accepted again after
//! it changes, an acknowledged batch survives kill -9, nothing personal reaches the server.

use repnet_store::{Store, StoreOptions};
use serde_json::Value;

use crate::common::*;

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
    assert_eq!(block_on(store.event_count()).unwrap(), 2);
    let file = repnet_model::Object::File(repnet_model::FileHash::Sha256(repnet_model::Sha256(
        [0xab; 32],
    )));
    assert_eq!(
        block_on(store.aggregate(&file))
            .unwrap()
            .unwrap()
            .detecting_devices,
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
