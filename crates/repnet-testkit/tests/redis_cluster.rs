//! The Redis Cluster the backend's tests will run on (issue 17): it comes up with every slot
//! served, follows redirections, fails over when a master is killed, and goes away when
//! dropped.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use repnet_testkit::{RedisCluster, redis_cli};

#[test]
fn a_cluster_serves_every_slot_fails_over_and_goes_away_when_dropped() {
    let mut cluster = RedisCluster::start();
    let ports: Vec<u16> = cluster
        .addresses()
        .iter()
        .map(|address| address.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 6);
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "{masters:?}");

    // Keys land on the nodes their slots say; any node redirects to them (-c).
    for key in ["a", "b", "c", "repnet:1", "repnet:2"] {
        let set = redis_cli(ports[0], &["-c", "set", key, key]).unwrap();
        assert_eq!(set.trim(), "OK", "{key}");
    }
    for key in ["a", "b", "c", "repnet:1", "repnet:2"] {
        let got = redis_cli(ports[5], &["-c", "get", key]).unwrap();
        assert_eq!(got.trim(), key);
    }

    // A master killed once its replica has its writes: the replica takes over, and the keys
    // still answer.
    let victim = masters[0];
    let survivor = *ports.iter().find(|port| **port != victim).unwrap();
    cluster.fail_over(victim);
    for key in ["a", "b", "c", "repnet:1", "repnet:2"] {
        let got = redis_cli(survivor, &["-c", "get", key]).unwrap();
        assert_eq!(got.trim(), key, "{key} after the failover");
    }

    drop(cluster);
    for port in ports {
        assert!(
            redis_cli(port, &["ping"]).is_none(),
            "port {port} still answers"
        );
    }
}
