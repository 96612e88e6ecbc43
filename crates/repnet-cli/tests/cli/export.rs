//! `repnet export` and `GET /v1/export`, checked by the tools that consume them: the RPZ
//! zone by `named-checkzone` and by a real `unbound` that answers NXDOMAIN for what is
//! blocked; the STIX bundle by the `stix2` package; the Suricata datasets by their
//! documented format (Debian has no `suricata` package); the conditional GET by ETag.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use crate::packaging::tool;

/// The licence key the enforcement points fetch with (like replication, exports need one).
const KEY: &str = "ORG-RESOLVERS-2027-KEY";

/// A server holding: a blocked domain with a trusted subdomain, a blocked IP address, a
/// blocked URL, URLhaus's sample, and the built-in test set (EICAR).
fn server_with_blocks(dir: &Path) -> ServerProcess {
    let (server, log) = ServerProcess::start_with(&dir.join("data"), &[]);
    ServerProcess::drain(log, None);
    for (object, verdict) in [
        ("domain:blocked.example", "untrusted"),
        ("domain:ok.blocked.example", "trusted"),
        ("ip:192.0.2.66", "untrusted"),
        ("url:http://evil.example/login", "untrusted"),
    ] {
        let output = admin(
            &server,
            &[
                "verdicts",
                "set",
                object,
                "--verdict",
                verdict,
                "--category",
                "phishing",
            ],
        );
        assert!(output.status.success(), "{object}: {}", stderr(&output));
    }
    let added = admin(&server, &["keys", "add", KEY, "--label", "resolvers"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let imported = run(repnet()
        .args(["import", "--server", &server.url, "--format", "urlhaus"])
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../repnet-feeds/tests/samples/urlhaus.csv"),
        )
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert!(imported.status.success(), "{}", stderr(&imported));
    server
}

fn export(server: &ServerProcess, args: &[&str]) -> String {
    let output = run(repnet()
        .args(["export", "--server", &server.url, "--key", KEY])
        .args(args));
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn the_lists_name_what_is_blocked_and_the_filters_choose() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_blocks(dir.path());
    let domains = export(&server, &["--format", "domains"]);
    let listed: Vec<&str> = domains.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(listed.contains(&"blocked.example"), "{domains}");
    assert!(!listed.contains(&"ok.blocked.example"), "{domains}");
    // An IP address and a URL with a path are not domains.
    assert!(
        !domains.contains("192.0.2.66") && !domains.contains("evil.example"),
        "{domains}"
    );
    let hosts = export(&server, &["--format", "hosts"]);
    assert!(
        hosts.lines().any(|l| l == "0.0.0.0 blocked.example"),
        "{hosts}"
    );
    // Filters: by source, by category, by confidence.
    let local = export(&server, &["--format", "stix", "--source", "local"]);
    assert!(
        local.contains("blocked.example") && !local.contains("EICAR"),
        "{local}"
    );
    let phishing = export(
        &server,
        &[
            "--format",
            "domains",
            "--category",
            "phishing",
            "--source",
            "local",
        ],
    );
    assert!(phishing.contains("blocked.example"));
    let none = export(
        &server,
        &[
            "--format",
            "domains",
            "--category",
            "c2",
            "--source",
            "local",
        ],
    );
    assert!(!none.lines().any(|l| !l.starts_with('#')), "{none}");
    let trusted = export(
        &server,
        &[
            "--format",
            "domains",
            "--verdict",
            "trusted",
            "--source",
            "local",
        ],
    );
    assert!(
        trusted.lines().any(|l| l == "ok.blocked.example"),
        "{trusted}"
    );

    // Suricata: a sha256 dataset is one lower-case SHA-256 per line; a string dataset is
    // base64, one per line (Suricata's documented dataset formats).
    let sha256 = export(&server, &["--format", "suricata"]);
    assert!(!sha256.is_empty());
    for line in sha256.lines() {
        assert!(
            line.len() == 64
                && line
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{line:?}"
        );
    }
    assert!(sha256.contains("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"));
    let encoded = export(&server, &["--format", "suricata-domains"]);
    use base64::Engine as _;
    let decoded: Vec<String> = encoded
        .lines()
        .map(|line| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(line)
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let plain: Vec<String> = domains
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert_eq!(decoded, plain);

    // Without a licence key: the refusal says what to do.
    let output = run(repnet().args(["export", "--server", &server.url]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("repnet admin keys add"),
        "{}",
        stderr(&output)
    );

    // Mistakes are named, and nothing is written.
    let output = run(repnet().args(["export", "--server", &server.url, "--verdict", "bogus"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--verdict"), "{}", stderr(&output));
    let output = run(repnet().args(["export", "--server", &server.url, "--min-confidence", "101"]));
    assert!(
        stderr(&output).contains("--min-confidence"),
        "{}",
        stderr(&output)
    );

    // From the data directory, once the server is stopped: the same list.
    assert!(server.terminate().success());
    let output = run(repnet()
        .args(["export", "--format", "domains", "--data"])
        .arg(dir.path().join("data")));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), domains);
    // A directory without a knowledge base is refused, not given a new one.
    let missing = dir.path().join("no-such-data");
    let output = run(repnet().args(["export", "--data"]).arg(&missing));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no knowledge base there"),
        "{}",
        stderr(&output)
    );
    assert!(!missing.exists());
}

#[test]
fn the_rpz_zone_passes_named_checkzone_and_unbound_answers_nxdomain_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_blocks(dir.path());
    let zone = dir.path().join("rpz.zone");
    let output = run(repnet()
        .args([
            "export",
            "--server",
            &server.url,
            "--key",
            KEY,
            "--format",
            "rpz",
            "--zone",
            "rpz.test",
            "--output",
        ])
        .arg(&zone));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&zone).unwrap();
    for line in [
        "blocked.example CNAME .",
        "*.blocked.example CNAME .",
        "ok.blocked.example CNAME rpz-passthru.",
        "32.66.2.0.192.rpz-ip CNAME .",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    if let Some(checkzone) = tool("named-checkzone", "bind9-utils") {
        let checked = run(Command::new(checkzone).arg("rpz.test").arg(&zone));
        assert!(
            checked.status.success(),
            "{}{}",
            stdout(&checked),
            stderr(&checked)
        );
        // The check can fail: a damaged zone does.
        let broken = dir.path().join("broken.zone");
        std::fs::write(&broken, text.replace("CNAME .", "CNAME")).unwrap();
        let checked = run(
            Command::new(tool("named-checkzone", "bind9-utils").unwrap())
                .arg("rpz.test")
                .arg(&broken),
        );
        assert!(!checked.status.success());
    }
    let (Some(unbound), Some(dig)) = (tool("unbound", "unbound"), tool("dig", "bind9-dnsutils"))
    else {
        return;
    };
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `example.` is served to unbound's resolver from a local authoritative zone (as if from
    // the Internet, which the test machine does not reach): the policy zone then rewrites
    // the answers it would give.
    let example = dir.path().join("example.zone");
    std::fs::write(
        &example,
        "$TTL 60\n@ IN SOA localhost. hostmaster.example. (1 3600 600 86400 60)\n@ IN NS localhost.\n\
         clean IN A 192.0.2.1\nblocked IN A 192.0.2.12\nwww.blocked IN A 192.0.2.11\n\
         ok.blocked IN A 192.0.2.10\nbad-address IN A 192.0.2.66\n",
    )
    .unwrap();
    let config = dir.path().join("unbound.conf");
    std::fs::write(
        &config,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  module-config: \"respip iterator\"\n  access-control: 127.0.0.0/8 allow\n  do-ip6: no\nremote-control:\n  control-enable: no\nauth-zone:\n  name: \"example.\"\n  zonefile: \"{example}\"\n  for-downstream: no\n  for-upstream: yes\nrpz:\n  name: \"rpz.test.\"\n  zonefile: \"{zone}\"\n",
            dir = dir.path().display(),
            example = example.display(),
            zone = zone.display()
        ),
    )
    .unwrap();
    let mut resolver = UnboundProcess(
        Command::new(unbound)
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ask = |name: &str| -> String {
        stdout(&run(Command::new(&dig).args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tries=1",
            "+time=1",
            name,
            "A",
        ])))
    };
    repnet_testkit::wait_until(20, "unbound's answers", || {
        ask("clean.example").contains("192.0.2.1")
    });
    for (name, expected) in [
        ("blocked.example", "status: NXDOMAIN"),
        ("www.blocked.example", "status: NXDOMAIN"),
        ("ok.blocked.example", "192.0.2.10"),
        ("clean.example", "192.0.2.1"),
        // An answer holding a blocked address is rewritten too.
        ("bad-address.example", "status: NXDOMAIN"),
    ] {
        let answer = ask(name);
        assert!(
            answer.contains(expected),
            "{name}: expected {expected}:\n{answer}"
        );
    }
    let _ = resolver.0.kill();
    let _ = resolver.0.wait();
}

struct UnboundProcess(std::process::Child);

impl Drop for UnboundProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv() -> Option<PathBuf> {
    repnet_testkit::test_venv()
        .map_err(|reason| eprintln!("skipped: {reason}"))
        .ok()
}

const CHECK_STIX: &str = r#"
import sys, stix2
from stix2patterns.validator import run_validator
bundle = stix2.parse(open(sys.argv[1]).read(), allow_custom=False)
kinds = set()
for indicator in bundle.objects:
    assert indicator.type == "indicator", indicator
    errors = run_validator(indicator.pattern)
    assert not errors, (indicator.pattern, errors)
    kinds.add(indicator.pattern.split(":")[0].strip("["))
print(len(bundle.objects), " ".join(sorted(kinds)))
"#;

#[test]
fn the_stix_bundle_passes_the_stix2_library_and_the_export_is_fetched_only_when_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_blocks(dir.path());
    let bundle = dir.path().join("bundle.json");
    let output = run(repnet()
        .args([
            "export",
            "--server",
            &server.url,
            "--key",
            KEY,
            "--format",
            "stix",
            "-o",
        ])
        .arg(&bundle));
    assert!(output.status.success(), "{}", stderr(&output));
    if let Some(venv) = venv() {
        let checked = run(Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(CHECK_STIX)
            .arg(&bundle));
        assert!(
            checked.status.success(),
            "{}{}",
            stdout(&checked),
            stderr(&checked)
        );
        assert!(
            stdout(&checked).contains("domain-name file ipv4-addr url"),
            "{}",
            stdout(&checked)
        );
    }

    // The conditional GET: unchanged, a poller gets 304; after a change, the new list.
    let http = repnet_client::http_client_builder().build().unwrap();
    let get = |etag: Option<&str>| {
        block_on(async {
            let mut request = http
                .get(format!("{}/v1/export?format=domains", server.url))
                .bearer_auth(KEY);
            if let Some(etag) = etag {
                request = request.header("If-None-Match", etag);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let etag = response
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, etag, response.text().await.unwrap())
        })
    };
    let (status, etag, body) = get(None);
    assert_eq!(status, 200, "{body}");
    let etag = etag.unwrap();
    let (status, again, body) = get(Some(&etag));
    assert_eq!(
        (status, again.as_deref(), body.as_str()),
        (304, Some(etag.as_str()), "")
    );
    let blocked = admin(
        &server,
        &[
            "verdicts",
            "set",
            "domain:new.example",
            "--verdict",
            "untrusted",
        ],
    );
    assert!(blocked.status.success(), "{}", stderr(&blocked));
    let (status, changed, body) = get(Some(&etag));
    assert_eq!(status, 200);
    assert_ne!(changed.unwrap(), etag);
    assert!(body.lines().any(|l| l == "new.example"), "{body}");
    // Another filter is another list: another ETag.
    let (_, other, _) = block_on(async {
        let response = http
            .get(format!(
                "{}/v1/export?format=domains&source=local",
                server.url
            ))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        (
            0,
            response
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned()),
            (),
        )
    });
    assert_ne!(other, Some(etag));
    // Without a licence key: refused, as replication is.
    let status = block_on(async {
        http.get(format!("{}/v1/export", server.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);
    // A misspelt parameter is refused.
    let (status, _, body) = block_on(async {
        let response = http
            .get(format!("{}/v1/export?fromat=rpz", server.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            (),
            response.text().await.unwrap(),
        )
    });
    assert_eq!(status, 400, "{body}");
}
