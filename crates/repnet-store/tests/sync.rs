//! Replication between two real stores: snapshots, pages of changes, retractions, the cursor,
//! and the refusals that keep a receiver consistent.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use repnet_model::{
    Confidence, Domain, Expression, FileHash, FileHashes, Md5, Object, Sha1, Sha256, Source,
    SourceRecord, ThreatName, Timestamp, Verdict,
};
use repnet_store::sync::{StreamKind, StreamReader};
use repnet_store::{Change, ChangesAnswer, Store, StoreError, StoreOptions};

fn open(dir: &std::path::Path, change_log_max: u64) -> Store {
    let options = StoreOptions {
        negative_filter: false,
        change_log_max,
        ..StoreOptions::default()
    };
    Store::open(dir, &options).unwrap()
}

fn record(source: Source, verdict: Verdict, confidence: i64, threat: Option<&str>) -> SourceRecord {
    let mut record = SourceRecord::new(
        source,
        verdict,
        Confidence::new(confidence).unwrap(),
        Timestamp(1_800_000_000),
    );
    record.threat = threat.map(|t| ThreatName::new(t).unwrap());
    record
}

fn put(object: Object, record: SourceRecord) -> Change {
    Change::Put {
        object,
        hashes: FileHashes::default(),
        record,
        comment: None,
    }
}

fn file(n: u8) -> Object {
    Object::File(FileHash::Sha256(Sha256([n; 32])))
}

fn url(text: &str) -> Object {
    Object::Url(Expression::parse(text).unwrap())
}

/// What a lookup decides: (verdict, confidence, threat) of the winning record.
async fn decided(store: &Store, objects: &[Object]) -> Vec<Option<(Verdict, u8, Option<String>)>> {
    store
        .lookup(objects)
        .await
        .unwrap()
        .into_iter()
        .map(|knowledge| {
            repnet_model::decide(&knowledge.records).map(|decision| {
                let winner = &knowledge.records[decision.winner];
                (
                    winner.verdict,
                    winner.confidence.get(),
                    winner.threat.as_ref().map(|t| t.as_str().to_owned()),
                )
            })
        })
        .collect()
}

fn snapshot(store: &Store) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.write_snapshot(&mut bytes).unwrap();
    bytes
}

fn changes(store: &Store, after: u64, limit: usize) -> Result<Vec<u8>, ChangesAnswer> {
    let mut bytes = Vec::new();
    match store.write_changes(after, limit, &mut bytes).unwrap() {
        ChangesAnswer::Written(_) => Ok(bytes),
        other => Err(other),
    }
}

fn apply(store: &Store, bytes: &[u8]) -> Result<repnet_store::StreamApplied, StoreError> {
    store.apply_stream(StreamReader::new(bytes)?)
}

#[tokio::test]
async fn a_receiver_converges_through_a_snapshot_then_pages_of_changes() {
    let (global_dir, private_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let global = open(global_dir.path(), 1_000);
    let private = open(private_dir.path(), 1_000);
    let feed = Source::feed("urlhaus").unwrap();
    let md5 = Md5([7; 16]);
    let sha1 = Sha1([8; 20]);
    global
        .apply(vec![
            Change::Put {
                object: file(1),
                hashes: FileHashes {
                    md5: Some(md5),
                    sha1: Some(sha1),
                    sha256: Some(Sha256([1; 32])),
                },
                record: record(feed.clone(), Verdict::Untrusted, 80, Some("Trojan.Test")),
                comment: None,
            },
            put(file(2), record(feed.clone(), Verdict::Untrusted, 60, None)),
            put(file(2), record(Source::Local, Verdict::Trusted, 100, None)),
            put(
                url("evil.example/login/"),
                record(feed.clone(), Verdict::Untrusted, 90, Some("Phish")),
            ),
        ])
        .await
        .unwrap();
    let objects = vec![
        file(1),
        Object::File(FileHash::Md5(md5)),
        Object::File(FileHash::Sha1(sha1)),
        file(2),
        url("evil.example/login/"),
        file(3),
        Object::Domain(Domain::new("gone.example").unwrap()),
    ];

    let applied = apply(&private, &snapshot(&global)).unwrap();
    assert_eq!(applied.header.kind, StreamKind::Snapshot);
    let state = global.sync_state().await.unwrap();
    let cursor = private.sync_state().await.unwrap().upstream.unwrap();
    assert_eq!(
        (cursor.log_id, cursor.sequence),
        (state.log_id, state.sequence)
    );
    assert_eq!(
        decided(&private, &objects).await,
        decided(&global, &objects).await
    );
    // The global server's local verdict reaches the private one as an upstream record.
    let knowledge = private.lookup(&[file(2)]).await.unwrap();
    assert!(
        knowledge[0]
            .records
            .iter()
            .any(|r| r.source == Source::Upstream && r.verdict == Verdict::Trusted)
    );

    // Changes, a retraction and a deletion, sent a page of two keys at a time.
    global
        .apply(vec![
            put(
                file(3),
                record(feed.clone(), Verdict::Riskware, 70, Some("Adware.X")),
            ),
            put(
                Object::Domain(Domain::new("gone.example").unwrap()),
                record(feed.clone(), Verdict::Untrusted, 50, None),
            ),
            Change::Remove {
                object: file(2),
                source: Source::Local,
            },
            Change::Remove {
                object: url("evil.example/login/"),
                source: feed.clone(),
            },
        ])
        .await
        .unwrap();
    global
        .apply(vec![Change::Remove {
            object: Object::Domain(Domain::new("gone.example").unwrap()),
            source: feed.clone(),
        }])
        .await
        .unwrap();
    let mut pages = 0;
    loop {
        let cursor = private.sync_state().await.unwrap().upstream.unwrap();
        let page = changes(&global, cursor.sequence, 2).unwrap();
        let applied = apply(&private, &page).unwrap();
        pages += 1;
        if applied.header.to == applied.header.sequence {
            break;
        }
        assert!(pages < 10, "no progress");
    }
    assert!(pages >= 2, "a limit of 2 keys makes several pages");
    assert_eq!(
        decided(&private, &objects).await,
        decided(&global, &objects).await
    );
    assert_eq!(
        decided(&private, &[url("evil.example/login/")]).await,
        vec![None]
    );

    // A page applied twice is refused (it does not continue the cursor) and changes nothing.
    let first_page = changes(&global, 0, 2).unwrap();
    let error = apply(&private, &first_page).unwrap_err();
    assert!(error.to_string().contains("export with --after"), "{error}");
    assert_eq!(
        decided(&private, &objects).await,
        decided(&global, &objects).await
    );
}

#[tokio::test]
async fn local_verdicts_on_the_receiver_win_and_survive_pulls() {
    let (global_dir, private_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let global = open(global_dir.path(), 1_000);
    let private = open(private_dir.path(), 1_000);
    let feed = Source::feed("feed").unwrap();
    global
        .apply(vec![put(
            file(9),
            record(feed.clone(), Verdict::Untrusted, 90, None),
        )])
        .await
        .unwrap();
    apply(&private, &snapshot(&global)).unwrap();
    private
        .apply(vec![put(
            file(9),
            record(Source::Local, Verdict::Trusted, 100, None),
        )])
        .await
        .unwrap();
    global
        .apply(vec![put(
            file(9),
            record(feed, Verdict::Untrusted, 95, Some("Changed")),
        )])
        .await
        .unwrap();
    let after = private
        .sync_state()
        .await
        .unwrap()
        .upstream
        .unwrap()
        .sequence;
    apply(&private, &changes(&global, after, 100).unwrap()).unwrap();
    apply(&private, &snapshot(&global)).unwrap();
    assert_eq!(
        decided(&private, &[file(9)]).await,
        vec![Some((Verdict::Trusted, 100, None))]
    );
    let records = &private.lookup(&[file(9)]).await.unwrap()[0].records;
    let upstream = records
        .iter()
        .find(|r| r.source == Source::Upstream)
        .unwrap();
    assert_eq!(
        upstream.threat.as_ref().map(ThreatName::as_str),
        Some("Changed")
    );
}

#[tokio::test]
async fn a_receiver_behind_the_trimmed_log_needs_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let global = open(dir.path(), 3);
    let feed = Source::feed("feed").unwrap();
    for n in 1..=5 {
        global
            .apply(vec![put(
                file(n),
                record(feed.clone(), Verdict::Untrusted, 50, None),
            )])
            .await
            .unwrap();
    }
    let state = global.sync_state().await.unwrap();
    // The built-in test set came first; the log keeps the last three changes.
    assert_eq!(state.sequence - state.floor, 3);
    assert!(matches!(
        changes(&global, state.floor - 1, 10),
        Err(ChangesAnswer::SnapshotNeeded(_))
    ));
    assert!(matches!(
        changes(&global, state.sequence + 1, 10),
        Err(ChangesAnswer::SnapshotNeeded(_))
    ));
    assert!(changes(&global, state.floor, 10).is_ok());
    // A bulk import of more changes than the log keeps resets it.
    let mut import = global.bulk_import().unwrap();
    for n in 10..20 {
        import
            .add(&put(
                file(n),
                record(feed.clone(), Verdict::Untrusted, 50, None),
            ))
            .unwrap();
    }
    import.finish().unwrap();
    let reset = global.sync_state().await.unwrap();
    assert_eq!(reset.sequence, state.sequence + 10);
    assert_eq!(reset.floor, reset.sequence);
}

#[tokio::test]
async fn only_changes_that_other_servers_see_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let global = open(dir.path(), 1_000);
    let feed = Source::feed("feed").unwrap();
    let mut later = record(feed.clone(), Verdict::Untrusted, 50, None);
    global
        .apply(vec![put(file(1), later.clone())])
        .await
        .unwrap();
    let before = global.sync_state().await.unwrap().sequence;
    // The feed says it again an hour later: only last_seen moves.
    later.last_seen = Timestamp(later.last_seen.0 + 3600);
    global
        .apply(vec![put(file(1), later.clone())])
        .await
        .unwrap();
    assert_eq!(global.sync_state().await.unwrap().sequence, before);
    later.verdict = Verdict::Riskware;
    global.apply(vec![put(file(1), later)]).await.unwrap();
    assert_eq!(global.sync_state().await.unwrap().sequence, before + 1);
}

#[tokio::test]
async fn streams_from_another_log_or_damaged_are_refused_and_change_nothing() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (one, other, private) = (
        open(dirs[0].path(), 100),
        open(dirs[1].path(), 100),
        open(dirs[2].path(), 100),
    );
    let feed = Source::feed("feed").unwrap();
    one.apply(vec![put(
        file(1),
        record(feed.clone(), Verdict::Untrusted, 50, None),
    )])
    .await
    .unwrap();
    other
        .apply(vec![put(
            file(2),
            record(feed.clone(), Verdict::Untrusted, 50, None),
        )])
        .await
        .unwrap();
    // Changes before any snapshot: refused.
    let error = apply(&private, &changes(&one, 0, 100).unwrap()).unwrap_err();
    assert!(error.to_string().contains("snapshot"), "{error}");
    apply(&private, &snapshot(&one)).unwrap();
    let error = apply(&private, &changes(&other, 0, 100).unwrap()).unwrap_err();
    assert!(error.to_string().contains("another log"), "{error}");
    one.apply(vec![put(
        file(3),
        record(feed, Verdict::Untrusted, 50, None),
    )])
    .await
    .unwrap();
    let after = private
        .sync_state()
        .await
        .unwrap()
        .upstream
        .unwrap()
        .sequence;
    let mut page = changes(&one, after, 100).unwrap();
    let last = page.len() - 40;
    page[last] ^= 1;
    assert!(apply(&private, &page).is_err());
    assert_eq!(decided(&private, &[file(3)]).await, vec![None]);
    assert_eq!(
        private
            .sync_state()
            .await
            .unwrap()
            .upstream
            .unwrap()
            .sequence,
        after
    );
}

#[tokio::test]
async fn raw_statistics_expire_and_aggregates_stay() {
    use repnet_store::{StatEvent, StatKind};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100);
    let event = |device: u64, time: u64| StatEvent {
        kind: StatKind::Detection,
        object: file(7),
        device,
        established: true,
        time: Timestamp(time),
        size: Some(10),
        signer: None,
        name: Some("%USERPROFILE%\\x.exe".to_owned()),
        threat: None,
        comment: None,
    };
    store
        .record_statistics(vec![event(1, 1_000), event(2, 2_000), event(2, 3_000)])
        .await
        .unwrap();
    assert_eq!(store.event_count().await.unwrap(), 3);
    assert_eq!(
        store.delete_events_before(Timestamp(2_500)).await.unwrap(),
        2
    );
    assert_eq!(store.event_count().await.unwrap(), 1);
    let aggregate = store.aggregate(&file(7)).await.unwrap().unwrap();
    assert_eq!(
        (
            aggregate.detections,
            aggregate.detecting_devices,
            aggregate.devices
        ),
        (3, 2, 2)
    );
    assert_eq!(
        (aggregate.first_seen, aggregate.last_seen),
        (Timestamp(1_000), Timestamp(3_000))
    );
    // Lookups report distinct devices as prevalence.
    assert_eq!(store.lookup(&[file(7)]).await.unwrap()[0].prevalence, 2);
    drop(store);
    let store = open(dir.path(), 100);
    assert_eq!(store.lookup(&[file(7)]).await.unwrap()[0].prevalence, 2);
}

/// Review: the engine read an object, an event about it arrived, and the engine's clearing
/// of what it read also cleared the new event's mark — the event was ignored until another
/// came. A clear leaves a mark made after the read.
#[tokio::test]
async fn the_engine_clears_only_the_marks_it_read() {
    use repnet_store::{StatEvent, StatKind};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100);
    let event = |object, device: u64| StatEvent {
        kind: StatKind::Detection,
        object,
        device,
        established: true,
        time: Timestamp(1_000 + device),
        size: None,
        signer: None,
        name: None,
        threat: None,
        comment: None,
    };
    store
        .record_statistics(vec![event(file(1), 1), event(file(2), 1)])
        .await
        .unwrap();
    let read = store.dirty_aggregates(100).await.unwrap();
    assert_eq!(read.keys.len(), 2);
    // After the engine's read, before its clear: a second device detects file 1.
    store
        .record_statistics(vec![event(file(1), 2)])
        .await
        .unwrap();
    store.clear_dirty(read.keys).await.unwrap();
    let left = store.dirty_aggregates(100).await.unwrap();
    assert_eq!(
        left.files.len(),
        1,
        "file 1 waits for the engine's next look"
    );
    assert_eq!(left.files[0].object, file(1));
    assert_eq!(left.files[0].aggregate.detecting_devices, 2);
    store.clear_dirty(left.keys).await.unwrap();
    assert_eq!(store.dirty_count().await.unwrap(), 0);
}

/// Review: at rotation, two requests that both found the device secret old each made one,
/// and the first's batch was hashed with a secret that was then replaced (its devices counted
/// again under the second). However many ask at once, one secret is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_device_secret_is_made_once_however_many_ask_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100);
    for round in 0..50u64 {
        // Each round comes after the last round's secret is older than the rotation period.
        let now = Timestamp(1_000_000 + round * 100);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let askers: Vec<_> = (0..4)
            .map(|_| {
                let (store, barrier) = (store.clone(), std::sync::Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.device_secret(now, 50).await.unwrap()
                })
            })
            .collect();
        let mut secrets: Vec<[u8; 32]> = Vec::new();
        for asker in askers {
            secrets.push(asker.await.unwrap());
        }
        assert!(
            secrets.windows(2).all(|pair| pair[0] == pair[1]),
            "round {round}: {} different secrets",
            secrets
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
        assert_eq!(store.device_secret(now, 50).await.unwrap(), secrets[0]);
    }
}

/// The engine's counts: only established installations detect and vouch for a signer; a
/// report naming another signer marks the claims as conflicting for good, across restarts.
#[tokio::test]
async fn signer_claims_count_established_installations_and_keep_conflicts() {
    use repnet_store::{StatEvent, StatKind};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 100);
    let signer = |byte: u8| Some(repnet_model::Sha256([byte; 32]));
    let event = |kind, device: u64, established: bool, signer| StatEvent {
        kind,
        object: file(8),
        device,
        established,
        time: Timestamp(1_000 + device),
        size: None,
        signer,
        name: None,
        threat: None,
        comment: None,
    };
    store
        .record_statistics(vec![
            event(StatKind::Sighting, 1, true, signer(1)),
            event(StatKind::Sighting, 2, true, signer(1)),
            event(StatKind::Sighting, 3, false, signer(1)),
            event(StatKind::Detection, 4, false, None),
            event(StatKind::Sighting, 5, true, None),
        ])
        .await
        .unwrap();
    let aggregate = store.aggregate(&file(8)).await.unwrap().unwrap();
    assert_eq!(aggregate.devices, 5);
    assert_eq!(aggregate.vouching_devices, 2);
    assert_eq!(aggregate.detecting_devices, 0);
    assert_eq!(aggregate.detections, 1);
    assert!(!aggregate.signer_conflict);

    store
        .record_statistics(vec![event(StatKind::Sighting, 6, true, signer(2))])
        .await
        .unwrap();
    drop(store);
    let store = open(dir.path(), 100);
    let aggregate = store.aggregate(&file(8)).await.unwrap().unwrap();
    assert!(aggregate.signer_conflict);
    assert_eq!(aggregate.signer, signer(1));
    assert_eq!(aggregate.vouching_devices, 2);
}

/// The sender's engine decisions arrive as `upstream-engine`, below the receiver's feeds; a
/// later snapshot replaces them as it replaces `upstream`, and a change from the engine to
/// knowledge moves the record from one to the other.
#[tokio::test]
async fn engine_decisions_arrive_as_the_upstream_engine_and_snapshots_replace_them() {
    let (global_dir, private_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let global = open(global_dir.path(), 1_000);
    let private = open(private_dir.path(), 1_000);
    global
        .apply(vec![
            put(
                file(1),
                record(Source::Engine, Verdict::Untrusted, 60, None),
            ),
            put(
                file(2),
                record(Source::Engine, Verdict::Untrusted, 60, None),
            ),
        ])
        .await
        .unwrap();
    let corp = Source::feed("corp").unwrap();
    private
        .apply(vec![put(
            file(1),
            record(corp.clone(), Verdict::Trusted, 50, None),
        )])
        .await
        .unwrap();
    apply(&private, &snapshot(&global)).unwrap();
    let sources = |store: &Store, object: Object| {
        let store = store.clone();
        async move {
            let knowledge = store
                .lookup(std::slice::from_ref(&object))
                .await
                .unwrap()
                .remove(0);
            let mut sources: Vec<String> = knowledge
                .records
                .iter()
                .map(|record| format!("{}:{}", record.source, record.verdict))
                .collect();
            sources.sort();
            (sources, decided(&store, &[object]).await[0].clone())
        }
    };
    let (on_one, decided_one) = sources(&private, file(1)).await;
    assert_eq!(on_one, ["feed:corp:trusted", "upstream-engine:untrusted"]);
    assert_eq!(decided_one.unwrap().0, Verdict::Trusted);
    assert_eq!(
        sources(&private, file(2)).await.0,
        ["upstream-engine:untrusted"]
    );

    // The sender's engine drops file 2, and its administrator decides file 1.
    let after = private
        .sync_state()
        .await
        .unwrap()
        .upstream
        .unwrap()
        .sequence;
    global
        .apply(vec![
            Change::Remove {
                object: file(2),
                source: Source::Engine,
            },
            put(
                file(1),
                record(Source::Local, Verdict::Untrusted, 100, None),
            ),
        ])
        .await
        .unwrap();
    apply(&private, &changes(&global, after, 100).unwrap()).unwrap();
    assert_eq!(
        sources(&private, file(1)).await.0,
        ["feed:corp:trusted", "upstream:untrusted"]
    );
    assert!(sources(&private, file(2)).await.0.is_empty());

    // A snapshot without the engine's decisions takes them away.
    global
        .apply(vec![put(
            file(3),
            record(Source::Engine, Verdict::Untrusted, 60, None),
        )])
        .await
        .unwrap();
    apply(&private, &snapshot(&global)).unwrap();
    assert_eq!(
        sources(&private, file(3)).await.0,
        ["upstream-engine:untrusted"]
    );
    global
        .apply(vec![Change::Remove {
            object: file(3),
            source: Source::Engine,
        }])
        .await
        .unwrap();
    apply(&private, &snapshot(&global)).unwrap();
    assert!(sources(&private, file(3)).await.0.is_empty());
}
