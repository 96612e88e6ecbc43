//! Private by default, asked first: with the real binary, a real server and a real proxy,
//! and a relay on the wire that records every byte between them.

#![cfg(unix)] // The invitation is driven on a pseudo-terminal.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::*;

/// A TCP relay in front of `target` that keeps a copy of every byte, both ways.
struct Relay {
    url: String,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let wire: Arc<Mutex<Vec<u8>>> = Arc::default();
        let recorded = Arc::clone(&wire);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = TcpStream::connect(&target).unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let wire = Arc::clone(&recorded);
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    wire.lock().unwrap().extend_from_slice(&buffer[..n]);
                                    if to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { url, wire }
    }

    /// Everything that went through, as text (HTTP/1.1 without compression: readable).
    fn recorded(&self) -> String {
        String::from_utf8_lossy(&self.wire.lock().unwrap()).into_owned()
    }
}

/// What a user looks up and scans: a URL with a secret in its query string, a domain, an IP
/// address, and files in a home folder named after the user.
struct Secrets {
    home: std::path::PathBuf,
    tree: std::path::PathBuf,
}

const USER: &str = "alice-wirecheck";
const URL: &str = "http://login.blocked-wirecheck.example/account?token=QS-SECRET-4471";
const DOMAIN: &str = "visited-wirecheck.example";
const IP: &str = "198.51.100.77";

impl Secrets {
    fn plant(dir: &Path) -> Secrets {
        let home = dir.join("home").join(USER);
        let tree = home.join("Downloads");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("eicar.com"), EICAR).unwrap();
        std::fs::write(tree.join(format!("{USER}-notes.txt")), b"nothing bad").unwrap();
        Secrets { home, tree }
    }

    /// Looks up and scans everything through `server`, as the user, in basic mode; answers
    /// the lookup's output.
    fn use_through(&self, server: &str, config: &Path) -> std::process::Output {
        let as_user = |command: &mut std::process::Command| {
            command.env("HOME", &self.home).env("USER", USER);
        };
        let mut lookup = client(config);
        as_user(&mut lookup);
        let output = run(lookup.args([
            "lookup", "--server", server, "--format", "json", URL, DOMAIN, IP,
        ]));
        let mut scan = client(config);
        as_user(&mut scan);
        let scanned = run(scan.args(["scan", "--server", server]).arg(&self.tree));
        assert_eq!(scanned.status.code(), Some(1), "{}", stderr(&scanned));
        output
    }
}

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What must never be on the wire in basic mode.
fn assert_nothing_personal(wire: &str) {
    assert!(
        wire.contains("/v1/hashes:search"),
        "the relay saw no search:\n{wire}"
    );
    for secret in [
        "blocked-wirecheck",
        "QS-SECRET-4471",
        "token=",
        "visited-wirecheck",
        IP,
        USER,
        "Downloads",
        "eicar.com",
    ] {
        assert!(
            !wire.contains(secret),
            "{secret:?} went over the wire:\n{wire}"
        );
    }
}

#[test]
fn in_basic_mode_no_web_address_or_user_name_goes_over_the_wire_to_a_server_or_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    // The server knows the URL's host is bad: the private answer must still find it.
    assert_eq!(
        put_local_verdict(
            &server.url,
            r#"{"object":{"domain":"blocked-wirecheck.example"},"verdict":"untrusted","threat":"Phishing.Wirecheck"}"#
        ),
        200
    );
    let secrets = Secrets::plant(dir.path());

    let relay = Relay::start(&server.url);
    let output = secrets.use_through(&relay.url, &dir.path().join("direct/client.toml"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let answers: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answers[0]["verdict"], "untrusted", "{answers}");
    assert_eq!(answers[0]["threat"], "Phishing.Wirecheck");
    assert_eq!(answers[1]["verdict"], "unknown");
    assert_eq!(answers[2]["verdict"], "unknown");
    assert_nothing_personal(&relay.recorded());

    // Through a proxy: neither the proxy nor, behind it, the server learns more.
    let upstream_relay = Relay::start(&server.url);
    let proxy = ProxyProcess::start(&upstream_relay.url, &dir.path().join("proxy"));
    let device_relay = Relay::start(&proxy.url);
    let output = secrets.use_through(&device_relay.url, &dir.path().join("fleet/client.toml"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let answers: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answers[0]["threat"], "Phishing.Wirecheck", "{answers}");
    assert_nothing_personal(&device_relay.recorded());
    assert_nothing_personal(&upstream_relay.recorded());

    // `--no-private` is the explicit way to send them as they are.
    let output = run(client(&dir.path().join("direct/client.toml")).args([
        "lookup",
        "--no-private",
        "--server",
        &relay.url,
        DOMAIN,
    ]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(relay.recorded().contains("visited-wirecheck"));
}

#[test]
fn prefix_answers_are_kept_for_the_lifetime_the_server_gives() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let config = dir.path().join("client.toml");
    let lookup = |args: &[&str]| {
        run(client(&config)
            .args(["lookup", "--server", &server.url])
            .args(args))
    };
    let output = lookup(&["phishing.test.repnet.invalid", DOMAIN]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let searched = requests_to(&server.url, "/v1/hashes:search");
    assert_eq!(searched, 1);
    // Again: answered from the client's cache, within their lifetimes (an hour, five minutes).
    let output = lookup(&["phishing.test.repnet.invalid", DOMAIN]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).contains("untrusted"), "{}", stdout(&output));
    assert_eq!(requests_to(&server.url, "/v1/hashes:search"), searched);
    // `--explain` asks, so that it can show every source.
    let output = lookup(&["--explain", "phishing.test.repnet.invalid"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(requests_to(&server.url, "/v1/hashes:search"), searched + 1);
}

#[test]
fn with_no_mode_chosen_and_no_terminal_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.toml");
    let (silent, connections) = counting_listener();
    let tree = Secrets::plant(dir.path()).tree;
    for args in [
        vec!["lookup", "--server", &silent, DOMAIN],
        vec!["lookup", "--server", &silent, EICAR_SHA256],
        vec!["scan", "--server", &silent, tree.to_str().unwrap()],
    ] {
        let output = run(unconfigured_client(&config).args(&args));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        for advice in [
            "nothing was sent",
            "repnet participation basic",
            "repnet participation off",
            "REPNET_PARTICIPATION=basic",
        ] {
            assert!(message.contains(advice), "{advice:?} not in {message}");
        }
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!config.exists(), "nothing chosen, nothing written");

    // A mistyped mode in the environment is named, and nothing is sent either.
    let output = run(unconfigured_client(&config)
        .env("REPNET_PARTICIPATION", "basik")
        .args(["lookup", "--server", &silent, DOMAIN]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(r#"REPNET_PARTICIPATION="basik" is not a participation mode"#),
        "{}",
        stderr(&output)
    );
    // Extended from the environment needs the statement accepted.
    let output = run(unconfigured_client(&config)
        .env("REPNET_PARTICIPATION", "extended")
        .args(["lookup", "--server", &silent, DOMAIN]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("repnet statement --accept"),
        "{}",
        stderr(&output)
    );
    // Off from the environment answers from the (empty) cache, silently.
    let output = run(unconfigured_client(&config)
        .env("REPNET_PARTICIPATION", "off")
        .args(["lookup", "--server", &silent, DOMAIN]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);

    // `participation show` says that nothing is chosen, and what each mode would send.
    let output = run(unconfigured_client(&config).args(["participation", "show"]));
    let shown = stdout(&output);
    assert!(shown.contains("participation: not chosen yet"), "{shown}");
    assert!(shown.contains("hash prefixes of web addresses"), "{shown}");
    assert!(shown.contains("full hashes of files"), "{shown}");
}

/// Waits for the end of what the binary writes on the terminal; answers its exit code.
fn exit_code(session: &mut rexpect::session::PtySession) -> String {
    session.exp_eof().unwrap();
    format!("{:?}", session.process().wait().unwrap())
}

#[test]
fn the_invitation_asks_on_a_terminal_and_the_answer_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let config = dir.path().join("client.toml");

    let mut command = unconfigured_client(&config);
    command.args(["lookup", "--server", &server.url, EICAR_SHA256]);
    let mut session = rexpect::session::spawn_command(command, Some(30_000)).unwrap();
    session.exp_string("before anything is sent to").unwrap();
    session
        .exp_string("hash prefixes of web addresses")
        .unwrap();
    session.exp_string("No personal data is collected").unwrap();
    session
        .exp_string("Participation [off/basic/extended]: ")
        .unwrap();
    session.send_line("sometimes").unwrap();
    session
        .exp_string("Please answer off, basic or extended.")
        .unwrap();
    // Extended shows the server's statement and needs it accepted.
    session.send_line("extended").unwrap();
    session.exp_string("What is collected:").unwrap();
    session
        .exp_string("Do you accept this statement? [yes/no]: ")
        .unwrap();
    session.send_line("no").unwrap();
    session.exp_string("Not accepted").unwrap();
    session
        .exp_string("Participation [off/basic/extended]: ")
        .unwrap();
    session.send_line("basic").unwrap();
    session
        .exp_string("participation: basic (saved in")
        .unwrap();
    session.exp_string("untrusted").unwrap();
    let status = exit_code(&mut session);
    assert!(status.contains(", 1)"), "{status}");
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains(r#"participation = "basic""#), "{saved}");
    assert!(!saved.contains("statement_version = 1"), "{saved}");

    // Asked once: the next command, on a terminal or not, goes ahead.
    let output =
        run(unconfigured_client(&config).args(["lookup", "--server", &server.url, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    // Another user accepts the statement: extended, with the version recorded.
    let other = dir.path().join("other/client.toml");
    let mut command = unconfigured_client(&other);
    command.args(["lookup", "--server", &server.url, EICAR_SHA256]);
    let mut session = rexpect::session::spawn_command(command, Some(30_000)).unwrap();
    session
        .exp_string("Participation [off/basic/extended]: ")
        .unwrap();
    session.send_line("extended").unwrap();
    session
        .exp_string("Do you accept this statement? [yes/no]: ")
        .unwrap();
    session.send_line("yes").unwrap();
    session.exp_string("participation: extended").unwrap();
    let status = exit_code(&mut session);
    assert!(status.contains(", 1)"), "{status}");
    let saved = std::fs::read_to_string(&other).unwrap();
    assert!(saved.contains(r#"participation = "extended""#), "{saved}");
    assert!(saved.contains("statement_version = 1"), "{saved}");

    // The end of the terminal's input is no answer: nothing is sent, nothing is kept.
    let third = dir.path().join("third/client.toml");
    let (silent, connections) = counting_listener();
    let mut command = unconfigured_client(&third);
    command.args(["lookup", "--server", &silent, DOMAIN]);
    let mut session = rexpect::session::spawn_command(command, Some(30_000)).unwrap();
    session
        .exp_string("Participation [off/basic/extended]: ")
        .unwrap();
    session.send_control('d').unwrap();
    session.exp_string("nothing was sent").unwrap();
    let status = exit_code(&mut session);
    assert!(status.contains(", 2)"), "{status}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!third.exists());
}
