//! `repnet serve --store redis://…`: stateless nodes on a real Redis Cluster (three masters,
//! three replicas of Debian's `redis-server`), with the faults operators meet — a node
//! killed mid-import, a master killed, the whole cluster down and back.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use repnet_testkit::RedisCluster;
use serde_json::Value;

use crate::common::*;

/// One cluster at a time: each test starts six `redis-server`s, and a test that kills
/// nodes must not slow another's failover.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

fn one_cluster() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `--store` naming every node of `cluster`.
fn store(cluster: &RedisCluster) -> String {
    format!("redis://{}", cluster.addresses().join(","))
}

/// A `repnet serve` node on `cluster`, with its own directory for temporary files.
fn node(cluster: &RedisCluster, dir: &Path) -> ServerProcess {
    let (server, log) = ServerProcess::start_with(dir, &["--store", &store(cluster)]);
    ServerProcess::drain(log, None);
    server
}

/// `GET path` of a server's admin API, as JSON.
fn get_admin(url: &str, path: &str) -> Value {
    block_on(async {
        repnet_client::http_client_builder()
            .build()
            .unwrap()
            .get(format!("{url}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// `GET path` of a server: the status and the body as JSON.
fn get(url: &str, path: &str) -> (u16, Value) {
    block_on(async {
        let response = repnet_client::http_client_builder()
            .build()
            .unwrap()
            .get(format!("{url}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

/// Polls `check` until it holds, for at most `seconds`; each round runs a process or a
/// request, which paces it.
fn until(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

fn import_through(server: &ServerProcess, list: &Path) -> std::process::Command {
    let mut command = repnet();
    command
        .args(["import", "--server", &server.url, "--format", "hashlist"])
        .args(["--source", "big", "--threat", "Big.Threat"])
        .arg(list)
        .env("REPNET_ADMIN_TOKEN", TOKEN);
    command
}

fn lines(list: &Path, step: usize) -> Vec<String> {
    std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .step_by(step)
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_nodes_are_one_knowledge_base_that_a_private_server_pulls_from() {
    let _one = one_cluster();
    let cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let one = node(&cluster, &dir.path().join("one"));
    let other = node(&cluster, &dir.path().join("other"));

    // The built-in test set, seeded once, answers through both.
    for server in [&one, &other] {
        let output = lookup(server, &[EICAR_SHA256]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    }
    // A local verdict set through one is answered by the other.
    let body = r#"{"object":{"domain":"blocked.example"},"verdict":"untrusted"}"#;
    assert_eq!(put_local_verdict(&one.url, body), 200);
    let output = lookup(&other, &["www.blocked.example"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("local"), "{}", stdout(&output));
    // So is a feed imported through one.
    let list = dir.path().join("list.txt");
    write_hash_list(&list, 2_000);
    let output = run(&mut import_through(&one, &list));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for hash in lines(&list, 400) {
        let output = lookup(&other, &[&hash]);
        assert_eq!(output.status.code(), Some(1), "{hash}: {}", stderr(&output));
        assert!(stdout(&output).contains("Big.Threat"));
    }
    // A licence key registered through one lets a private server pull from the other.
    let key = "PRIVATE-ORG-KEY-0001";
    let output = admin(&one, &["keys", "add", key]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let id = stdout(&output)
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    until(30, "the other node to read the new key", || {
        stdout(&admin(&other, &["keys", "list"])).contains(&id)
    });
    let (private, log) = ServerProcess::start_with(
        &dir.path().join("private"),
        &[
            "--role",
            "private",
            "--upstream",
            &other.url,
            "--upstream-key",
            key,
        ],
    );
    ServerProcess::drain(log, None);
    assert_eq!(
        admin(&private, &["keys", "add", "DEVICE-KEY-00001"])
            .status
            .code(),
        Some(0)
    );
    let caught_up = |private: &ServerProcess| {
        let (theirs, ours) = (status(&other), status(private));
        ours["upstream"]["local_sequence"] == theirs["sequence"]
            && ours["upstream"]["upstream_log_id"] == theirs["log_id"]
    };
    until(
        60,
        "the private server to pull the cluster's knowledge",
        || caught_up(&private),
    );
    let last = lines(&list, 1).pop().unwrap();
    let output = lookup(
        &private,
        &["--key", "DEVICE-KEY-00001", &last, "blocked.example"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("Big.Threat"),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("unknown"), "{}", stdout(&output));
    // Then a change through either node reaches it as a page of changes.
    let body = r#"{"object":{"domain":"later.example"},"verdict":"untrusted"}"#;
    assert_eq!(put_local_verdict(&one.url, body), 200);
    until(60, "the private server to pull a later change", || {
        caught_up(&private)
    });
    let output = lookup(&private, &["--key", "DEVICE-KEY-00001", "later.example"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
}

#[test]
fn a_node_killed_mid_import_leaves_the_other_answering_and_the_import_reruns() {
    const ENTRIES: u64 = 200_000;
    let _one = one_cluster();
    let cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let one = node(&cluster, &dir.path().join("one"));
    let other = node(&cluster, &dir.path().join("other"));
    let before = status(&other)["knowledge_base_entries"].as_u64().unwrap();
    let list = dir.path().join("list.txt");
    write_hash_list(&list, ENTRIES);

    let mut import = import_through(&one, &list)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Polled over HTTP, not by `repnet admin status` processes: the kill must land while
    // the import is still writing (CI once saw it finish between two process polls).
    until(120, "the import to write its first keys", || {
        get_admin(&other.url, "/v1/admin/status")["knowledge_base_entries"]
            .as_u64()
            .unwrap()
            > before
    });
    one.kill_9();
    let _ = import.wait();
    let written = status(&other)["knowledge_base_entries"].as_u64().unwrap() - before;
    assert!(written < ENTRIES, "the import had finished: {written}");

    // The other node answers what it knew, and what the import had written.
    let output = lookup(&other, &[EICAR_SHA256]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Run again through the other node, the import completes.
    let output = run(&mut import_through(&other, &list));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        status(&other)["knowledge_base_entries"].as_u64().unwrap(),
        before + ENTRIES
    );
    for hash in lines(&list, 20_000) {
        let output = lookup(&other, &[&hash]);
        assert_eq!(output.status.code(), Some(1), "{hash}: {}", stderr(&output));
        assert!(stdout(&output).contains("Big.Threat"));
    }
}

#[test]
fn a_killed_master_fails_over_and_no_acknowledged_write_is_lost() {
    let _one = one_cluster();
    let mut cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let server = node(&cluster, &dir.path().join("one"));
    let domains: Vec<String> = (0..60).map(|i| format!("acked-{i}.example")).collect();
    for domain in &domains {
        let body = format!(r#"{{"object":{{"domain":"{domain}"}},"verdict":"untrusted"}}"#);
        assert_eq!(put_local_verdict(&server.url, &body), 200, "{domain}");
    }

    let victim = cluster.master_ports()[0];
    cluster.fail_over(victim);

    // Without restarting repnet: lookups answer again, and every acknowledged verdict is
    // there.
    let mut args = vec!["--format", "json"];
    args.extend(domains.iter().map(String::as_str));
    until(60, "lookups after the failover", || {
        let output = lookup(&server, &args);
        if output.status.code() != Some(1) {
            return false;
        }
        let results: Value = serde_json::from_slice(&output.stdout).unwrap();
        let results = results.as_array().unwrap();
        assert_eq!(results.len(), domains.len());
        for result in results {
            assert_eq!(result["verdict"], "untrusted", "lost: {result}");
        }
        true
    });
    let (status, _) = get(&server.url, "/readyz");
    assert_eq!(status, 200);
}

#[test]
fn a_cluster_down_is_unavailable_and_the_node_recovers_by_itself() {
    let _one = one_cluster();
    let mut cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let server = node(&cluster, &dir.path().join("one"));
    let body = r#"{"object":{"domain":"kept.example"},"verdict":"untrusted"}"#;
    assert_eq!(put_local_verdict(&server.url, body), 200);
    cluster.wait_for_replication();

    cluster.stop();
    let (status, body) = get(&server.url, "/readyz");
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &"store_unavailable".into())
    );
    let (status, body) = get(&server.url, &format!("/v1/files/{EICAR_SHA256}"));
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &"store_unavailable".into()),
        "{body}"
    );
    // The client says what is wrong, and that nothing was checked.
    let output = lookup(&server, &["kept.example"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("store") || stdout(&output).contains("store"),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );

    cluster.restart();
    until(60, "the node to be ready again", || {
        get(&server.url, "/readyz").0 == 200
    });
    let output = lookup(&server, &["kept.example"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn a_scheduled_feed_is_refreshed_by_one_node_at_a_time() {
    let _one = one_cluster();
    let cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("corp.txt");
    std::fs::write(&list, format!("{}\n", "ab".repeat(32))).unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[[feeds]]\nname = \"corp\"\nformat = \"hashlist\"\npath = {:?}\ninterval_seconds = 3600\nverdict = \"untrusted\"\n",
            list.display().to_string()
        ),
    )
    .unwrap();
    let store = store(&cluster);
    let nodes: Vec<ServerProcess> = ["one", "two"]
        .iter()
        .map(|name| {
            let (server, log) = ServerProcess::start_with(
                &dir.path().join(name),
                &["--store", &store, "--config", config.to_str().unwrap()],
            );
            ServerProcess::drain(log, None);
            server
        })
        .collect();
    // Both nodes' feed workers have had their turn.
    until(60, "both nodes' feed workers to run", || {
        nodes.iter().all(|node| {
            status(node)["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|worker| worker["name"] == "feed:corp" && worker["units"].as_u64() >= Some(1))
        })
    });
    let states: Vec<String> = nodes
        .iter()
        .map(|node| {
            get_admin(&node.url, "/v1/admin/feeds")["feeds"][0]["state"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        states.iter().filter(|state| *state == "imported").count(),
        1,
        "one node refreshed the feed, the other left it to it: {states:?}"
    );
    for node in &nodes {
        let output = lookup(node, &["--format", "json", &"ab".repeat(32)]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    }
}
