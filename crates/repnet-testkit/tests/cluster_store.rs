//! The store on a real Redis Cluster (issue 17): the backend conformance suite's checks of
//! records, lookups, changes, privacy-mode search, licence keys and secrets pass on it as on
//! LMDB, and two stores on one cluster are one knowledge base (what lets any number of
//! `repnet serve` nodes answer the same).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use repnet_model::{FileHash, FileHashes, Object, Sha256, Source, SourceRecord, Timestamp};
use repnet_store::{Change, ClusterOptions, Store, StoreOptions};
use repnet_testkit::RedisCluster;

/// One cluster at a time: six Redis servers per test are load enough for two cores, and a
/// failover timed under three clusters' load tests the machine more than the store.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(cluster: &RedisCluster, namespace: &str, scratch: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        nodes: cluster
            .addresses()
            .iter()
            .map(|address| format!("redis://{address}"))
            .collect(),
        namespace: namespace.to_owned(),
        scratch: scratch.to_owned(),
        timeout: Duration::from_secs(5),
        replicas: 1,
    }
}

#[tokio::test]
async fn the_whole_conformance_suite_passes_on_a_cluster() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // Each check gets a knowledge base of its own: a namespace of its own on the cluster.
    let opened = AtomicUsize::new(0);
    let open = async || {
        let namespace = format!("check{}", opened.fetch_add(1, Ordering::SeqCst));
        Store::connect_cluster(
            &options(&cluster, &namespace, scratch.path()),
            &StoreOptions::default(),
        )
        .await
        .unwrap()
    };
    repnet_store::conformance::run_all(&open).await;
}

#[tokio::test]
async fn two_stores_on_one_cluster_are_one_knowledge_base_that_a_private_server_pulls_from() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let one = Store::connect_cluster(
        &options(&cluster, "shared", scratch.path()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let other = Store::connect_cluster(
        &options(&cluster, "shared", scratch.path()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let file = Object::File(FileHash::Sha256(Sha256([0x5a; 32])));
    let record = SourceRecord::new(
        "feed:shared".parse::<Source>().unwrap(),
        repnet_model::Verdict::Untrusted,
        repnet_model::Confidence::new(90).unwrap(),
        Timestamp(1_700_000_000),
    );
    one.apply(vec![Change::Put {
        object: file.clone(),
        hashes: FileHashes::default(),
        record: record.clone(),
        comment: None,
    }])
    .await
    .unwrap();
    let known = other.lookup(std::slice::from_ref(&file)).await.unwrap();
    assert_eq!(known[0].records, vec![record]);
    // Both numbered the change in one log.
    let state = other.sync_state().await.unwrap();
    assert_eq!(state.log_id, one.sync_state().await.unwrap().log_id);
    assert!(state.sequence >= 1, "{state:?}");
    // Work one node does at a time: the lease is one store's until it lapses.
    assert!(one.shared() && other.shared());
    assert!(one.lease("engine", 30).await.unwrap());
    assert!(!other.lease("engine", 30).await.unwrap());
    assert!(
        one.lease("engine", 30).await.unwrap(),
        "its holder keeps it"
    );
    assert!(
        other.lease("feed:x", 1).await.unwrap(),
        "each lease is its own"
    );
    // The servers alive, for what they share (a licence key's rate).
    assert_eq!(one.heartbeat(15).await.unwrap(), 1);
    assert_eq!(other.heartbeat(15).await.unwrap(), 2);

    // A private server on the embedded store pulls a snapshot from a cluster node, then the
    // changes after it, as from any server.
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = Store::open(replica_dir.path(), &StoreOptions::default()).unwrap();
    let pull = |source: &Store, replica: &Store, after: Option<u64>| {
        let (source, replica) = (source.clone(), replica.clone());
        tokio::task::spawn_blocking(move || {
            let mut stream = Vec::new();
            match after {
                None => {
                    source.write_snapshot(&mut stream).unwrap();
                }
                Some(after) => match source.write_changes(after, 1_000, &mut stream).unwrap() {
                    repnet_store::ChangesAnswer::Written(_) => {}
                    other => panic!("a page of changes, not {other:?}"),
                },
            }
            let reader = repnet_store::sync::StreamReader::new(&stream[..]).unwrap();
            replica.apply_stream(reader).unwrap()
        })
    };
    let applied = pull(&other, &replica, None).await.unwrap();
    assert_eq!(applied.header.log_id, state.log_id);
    let known = replica.lookup(std::slice::from_ref(&file)).await.unwrap();
    assert_eq!(known[0].records.len(), 1, "{known:?}");
    assert_eq!(known[0].records[0].source, Source::Upstream);
    let retracted = Change::Remove {
        object: file.clone(),
        source: "feed:shared".parse().unwrap(),
    };
    one.apply(vec![retracted]).await.unwrap();
    pull(&other, &replica, Some(applied.header.to))
        .await
        .unwrap();
    let known = replica.lookup(std::slice::from_ref(&file)).await.unwrap();
    assert!(known[0].records.is_empty(), "{known:?}");

    // Another knowledge base on the same cluster sees none of it.
    let apart = Store::connect_cluster(
        &options(&cluster, "apart", scratch.path()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let known = apart.lookup(std::slice::from_ref(&file)).await.unwrap();
    assert!(known[0].records.is_empty(), "{known:?}");
}
