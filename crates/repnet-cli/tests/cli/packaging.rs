//! What operators install: `repnet.example.toml` is what `--print-config` prints; the
//! systemd unit passes `systemd-analyze verify`; the Prometheus rules pass `promtool`, and
//! they and the Grafana dashboard name only metrics that a real server and proxy export; the
//! container's command and health check work as the Dockerfile runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{ProxyProcess, ServerProcess, repnet, run, stderr, stdout};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `program`, or why the test that needs it skips (scripts/test.sh installs it).
pub(crate) fn tool(program: &str, package: &str) -> Option<PathBuf> {
    // Daemons (unbound) are in sbin, which a user's PATH may lack.
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&paths)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|path| path.is_file());
    if found.is_none() {
        eprintln!("skipped: no {program} (Debian's {package}; scripts/test.sh installs it)");
    }
    found
}

#[test]
fn the_example_configuration_is_what_print_config_prints() {
    let printed = run(repnet().env_remove("XDG_DATA_HOME").args([
        "serve",
        "--print-config",
        "--data",
        "/var/lib/repnet",
    ]));
    assert!(printed.status.success(), "{}", stderr(&printed));
    let example = std::fs::read_to_string(root().join("repnet.example.toml")).unwrap();
    assert!(
        stdout(&printed) == example,
        "repnet.example.toml is out of date: regenerate it with\n  repnet serve --print-config --data /var/lib/repnet > repnet.example.toml\n--- printed:\n{}",
        stdout(&printed)
    );
    // And it is a configuration the server accepts.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("repnet.toml");
    std::fs::write(&config, &example).unwrap();
    let checked = run(repnet()
        .args(["serve", "--print-config", "--config"])
        .arg(&config));
    assert!(checked.status.success(), "{}", stderr(&checked));
}

#[test]
fn print_config_masks_the_upstream_licence_key() {
    let printed = run(repnet().args([
        "serve",
        "--print-config",
        "--upstream",
        "https://global.example",
        "--upstream-key",
        "ORGANISATION-SECRET-KEY",
    ]));
    assert!(printed.status.success(), "{}", stderr(&printed));
    let text = stdout(&printed);
    assert!(!text.contains("ORGANISATION-SECRET-KEY"), "{text}");
    assert!(
        text.contains("key = \"<hidden by --print-config>\""),
        "{text}"
    );
    let printed = run(repnet().args([
        "proxy",
        "--print-config",
        "--upstream",
        "https://global.example",
        "--upstream-key",
        "ORGANISATION-SECRET-KEY",
    ]));
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert!(!stdout(&printed).contains("ORGANISATION-SECRET-KEY"));
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze", "systemd") else {
        return;
    };
    let unit = std::fs::read_to_string(root().join("packaging/systemd/repnet.service")).unwrap();
    // verify checks that ExecStart's program exists: this build's binary stands in for
    // /usr/local/bin/repnet.
    let unit = unit.replace("/usr/local/bin/repnet", env!("CARGO_BIN_EXE_repnet"));
    for needed in [
        "DynamicUser=yes",
        "StateDirectory=repnet",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repnet.service");
    std::fs::write(&path, &unit).unwrap();
    let verified = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(
        verified.status.success() && stderr(&verified).trim().is_empty(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    // The check can fail: a unit with a mistake does.
    std::fs::write(&path, unit.replace("ExecStart=/", "ExecStart=")).unwrap();
    let verified = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(!verified.status.success(), "{}", stderr(&verified));
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_when_they_should() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let dir = root().join("packaging/prometheus");
    let checked = run(Command::new(&promtool)
        .args(["check", "rules", "repnet-alerts.yml"])
        .current_dir(&dir));
    assert!(
        checked.status.success(),
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );
    let tested = run(Command::new(&promtool)
        .args(["test", "rules", "repnet-alerts.test.yml"])
        .current_dir(&dir));
    assert!(
        tested.status.success(),
        "{}{}",
        stdout(&tested),
        stderr(&tested)
    );
}

/// The metric names an expression uses (`repnet_…`, `process_…`), as families: without the
/// `_bucket`, `_total` suffixes that the exposition adds.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let starts = ["repnet_", "process_"]
            .iter()
            .any(|prefix| rest.starts_with(prefix));
        let boundary = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if starts && boundary {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..end].to_owned());
            at += end;
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Every family a `/metrics` text declares (`# TYPE name …`), with the sample names its
/// samples may have.
fn declared(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .flat_map(|family| {
            ["", "_total", "_bucket", "_sum", "_count", "_created"]
                .map(|suffix| format!("{family}{suffix}"))
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_rules_name_only_metrics_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    // A server with a feed and an upstream (the upstream's metrics are exported only then),
    // and a proxy.
    let global = ServerProcess::start(&dir.path().join("global"));
    let feed = dir.path().join("feed.txt");
    std::fs::write(&feed, "evil.example\n").unwrap();
    let config = dir.path().join("private.toml");
    std::fs::write(
        &config,
        format!(
            "[[feeds]]\nname = \"corp\"\nformat = \"domainlist\"\npath = \"{}\"\n",
            feed.display()
        ),
    )
    .unwrap();
    let (private, log) = ServerProcess::start_with(
        &dir.path().join("private"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--upstream",
            &global.url,
            "--upstream-key",
            "NOT-REGISTERED-KEY",
        ],
    );
    ServerProcess::drain(log, None);
    let proxy = ProxyProcess::start(&global.url, &dir.path().join("proxy"));
    let metrics = crate::common::metrics_text;
    // The global server counts the private one's refused pull (its key is not registered):
    // a family appears once it has a sample.
    let mut global_metrics = String::new();
    repnet_testkit::wait_until(10, "the global server's licence refusal", || {
        global_metrics = metrics(&global.url);
        global_metrics.contains("repnet_licence_refusals_total")
    });
    let mut exported = declared(&global_metrics);
    exported.extend(declared(&metrics(&private.url)));
    exported.extend(declared(&metrics(&proxy.url)));
    for file in [
        "packaging/grafana/repnet-dashboard.json",
        "packaging/prometheus/repnet-alerts.yml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() > 10, "{file}: {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics nothing exports: {missing:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("packaging/grafana/repnet-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.iter().all(|panel| panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        || panel["type"] == "row"));
}

/// What the Dockerfile runs: `repnet serve` configured by REPNET_DATA and REPNET_LISTEN, and
/// `repnet health` as its HEALTHCHECK — 0 while the server is ready, 1 once it is gone.
#[test]
fn the_containers_command_and_health_check_work() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for needed in [
        "REPNET_DATA=/data",
        "REPNET_LISTEN=0.0.0.0:8080",
        "USER repnet",
        "VOLUME [\"/data\"]",
        "CMD [\"repnet\", \"health\", \"--server\", \"http://127.0.0.1:8080\"]",
    ] {
        assert!(dockerfile.contains(needed), "the Dockerfile lacks {needed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = repnet()
        .arg("serve")
        .env("REPNET_DATA", dir.path().join("data"))
        .env("REPNET_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let health = || run(repnet().args(["health", "--server", &url]));
    let mut ready = health();
    repnet_testkit::wait_until(10, "the server's readiness", || {
        ready = health();
        ready.status.success()
    });
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert!(stdout(&ready).contains("ready"));
    server.kill().unwrap();
    server.wait().unwrap();
    let gone = health();
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("is not ready"), "{}", stderr(&gone));
}

/// `access_log = true`: a line per request with the route's pattern, never what was looked
/// up nor who asked.
#[test]
fn the_access_log_names_routes_not_what_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("repnet.toml");
    std::fs::write(
        &config,
        format!("access_log = true\n{}", crate::common::QUICK_ENROLMENT),
    )
    .unwrap();
    let (server, log) = ServerProcess::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let looked_up = run(repnet().args([
        "lookup",
        "--server",
        &server.url,
        "--no-private",
        "domain:secret-intranet.example",
    ]));
    assert!(looked_up.status.success(), "{}", stderr(&looked_up));
    // Stopped, the server's log ends: read it whole.
    assert!(server.terminate().success());
    let lines: Vec<String> = log.map_while(Result::ok).collect();
    let line = lines
        .iter()
        .find(|line| line.contains("repnet::access") && line.contains("/v1/lookup"))
        .unwrap_or_else(|| panic!("no access log line for the lookup in {lines:#?}"));
    assert!(line.contains("\"status\":200"), "{line}");
    assert!(line.contains("\"bytes\":"), "{line}");
    assert!(
        lines.iter().all(|line| !line.contains("secret-intranet")),
        "{lines:#?}"
    );
    assert!(!line.contains("127.0.0.1"), "{line}");
}
