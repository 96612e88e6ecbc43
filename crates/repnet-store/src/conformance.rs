//! The suite every storage backend must pass. Each check opens a fresh store through the
//! factory it is given, so backends run it with their own setup.

use repnet_model::{
    Categories, Category, Confidence, EICAR, FileHash, FileHashes, Md5, Object, ObjectKind, Sha1,
    Sha256, Source, SourceRecord, ThreatName, Timestamp, Verdict,
};

use crate::{Change, Outcome, Store};

/// Runs every check against stores made by `open`.
pub async fn run_all(open: &impl AsyncFn() -> Store) {
    run_records(open).await;
    statistics_fold_into_aggregates_and_mark_objects_dirty(&open().await).await;
    the_review_queue_holds_reports_and_engine_verdicts(&open().await).await;
}

/// The checks of records, lookups and changes (what is known about objects, by every kind,
/// source and alias; local verdicts; privacy-mode search; bulk imports; the change log and
/// replication) and of licence keys and secrets: all but statistics and the review queue.
async fn run_records(open: &impl AsyncFn() -> Store) {
    builtin_test_set_is_present(&open().await).await;
    unknown_objects_have_no_records(&open().await).await;
    put_then_lookup_every_kind(&open().await).await;
    sources_are_kept_side_by_side_and_replaced_per_source(&open().await).await;
    aliases_resolve_to_the_sha256_record(&open().await).await;
    remove_retracts_one_source_everywhere(&open().await).await;
    local_verdicts_are_listed_with_comments(&open().await).await;
    a_batch_is_answered_in_order(&open().await).await;
    names_survive_many_distinct_values(&open().await).await;
    urls_domains_and_prefix_search(&open().await).await;
    licence_keys_are_kept_and_replaced_by_hash(&open().await).await;
    secrets_are_made_once_and_rotated_when_old(&open().await).await;
    every_change_has_the_next_sequence_number(&open().await).await;
    bulk_import_matches_apply(open).await;
    a_replacing_import_retracts_what_its_source_no_longer_lists(&open().await).await;
    a_large_replacing_import_retracts_everything_it_no_longer_lists(&open().await).await;
    a_snapshot_replicates_into_another_store(&open().await, &open().await).await;
}

fn record(source: &str, verdict: Verdict, confidence: i64, at: u64) -> SourceRecord {
    SourceRecord::new(
        source.parse().expect("valid source"),
        verdict,
        Confidence::new(confidence).expect("valid confidence"),
        Timestamp(at),
    )
}

fn put(object: &Object, record: SourceRecord) -> Change {
    Change::Put {
        object: object.clone(),
        hashes: FileHashes::default(),
        record,
        comment: None,
    }
}

fn object(kind: ObjectKind, text: &str) -> Object {
    Object::parse(kind, text).expect("valid object")
}

pub async fn builtin_test_set_is_present(store: &Store) {
    let hashes = FileHashes::of(EICAR);
    let by_hash: Vec<Object> = [
        FileHash::Md5(hashes.md5.expect("md5")),
        FileHash::Sha1(hashes.sha1.expect("sha1")),
        FileHash::Sha256(hashes.sha256.expect("sha256")),
    ]
    .into_iter()
    .map(Object::File)
    .collect();
    for knowledge in store.lookup(&by_hash).await.expect("lookup") {
        assert_eq!(knowledge.records.len(), 1, "{knowledge:?}");
        let record = &knowledge.records[0];
        assert_eq!(record.source, Source::Builtin);
        assert_eq!(record.verdict, Verdict::Untrusted);
        assert_eq!(
            record.threat.as_ref().map(ThreatName::as_str),
            Some("EICAR-Test-File")
        );
        assert_eq!(knowledge.hashes, hashes, "every hash of EICAR is known");
    }
    let domain = object(ObjectKind::Domain, "phishing.test.repnet.invalid");
    let knowledge = store.lookup(&[domain]).await.expect("lookup");
    assert!(
        knowledge[0].records[0]
            .categories
            .contains(Category::Phishing)
    );
}

pub async fn unknown_objects_have_no_records(store: &Store) {
    let unknown = object(ObjectKind::File, &"0".repeat(64));
    let knowledge = store.lookup(&[unknown]).await.expect("lookup");
    assert!(knowledge[0].records.is_empty());
    assert_eq!(knowledge[0].prevalence, 0);
}

pub async fn put_then_lookup_every_kind(store: &Store) {
    let objects = [
        object(ObjectKind::File, &"1".repeat(64)),
        object(ObjectKind::File, &"2".repeat(40)),
        object(ObjectKind::File, &"3".repeat(32)),
        object(ObjectKind::Domain, "evil.example"),
        object(ObjectKind::Ip, "192.0.2.7"),
        object(ObjectKind::Ip, "2001:db8::7"),
        object(ObjectKind::Certificate, &"4".repeat(64)),
    ];
    let mut expected = record("feed:test", Verdict::Untrusted, 80, 1_000);
    expected.threat = Some(ThreatName::new("Trojan.Test").expect("name"));
    expected.categories = Categories::EMPTY.with(Category::Malware).with(Category::C2);
    expected.last_seen = Timestamp(2_000);
    let changes = objects.iter().map(|o| put(o, expected.clone())).collect();
    let outcomes = store.apply(changes).await.expect("apply");
    assert!(outcomes.iter().all(|o| *o == Outcome::Stored));
    for knowledge in store.lookup(&objects).await.expect("lookup") {
        assert_eq!(knowledge.records, vec![expected.clone()]);
    }
    // A certificate and a file with the same bytes are different objects.
    let as_file = object(ObjectKind::File, &"4".repeat(64));
    assert!(
        store.lookup(&[as_file]).await.expect("lookup")[0]
            .records
            .is_empty()
    );
}

pub async fn sources_are_kept_side_by_side_and_replaced_per_source(store: &Store) {
    let target = object(ObjectKind::Domain, "contested.example");
    store
        .apply(vec![
            put(&target, record("feed:a", Verdict::Untrusted, 90, 100)),
            put(&target, record("feed:b", Verdict::Trusted, 60, 200)),
        ])
        .await
        .expect("apply");
    // feed:a speaks again: its record is replaced, its first sighting kept.
    let mut again = record("feed:a", Verdict::Riskware, 70, 300);
    again.last_seen = Timestamp(400);
    store.apply(vec![put(&target, again)]).await.expect("apply");
    let knowledge = store
        .lookup(std::slice::from_ref(&target))
        .await
        .expect("lookup")
        .remove(0);
    assert_eq!(knowledge.records.len(), 2);
    let a = knowledge
        .records
        .iter()
        .find(|r| r.source.to_string() == "feed:a")
        .expect("feed:a");
    assert_eq!(a.verdict, Verdict::Riskware);
    assert_eq!(a.first_seen, Timestamp(100));
    assert_eq!(a.last_seen, Timestamp(400));
}

pub async fn aliases_resolve_to_the_sha256_record(store: &Store) {
    let hashes = FileHashes {
        md5: Some(Md5([5; 16])),
        sha1: Some(Sha1([6; 20])),
        sha256: Some(Sha256([7; 32])),
    };
    let by_md5 = Object::File(FileHash::Md5(Md5([5; 16])));
    let by_sha1 = Object::File(FileHash::Sha1(Sha1([6; 20])));
    let by_sha256 = Object::File(FileHash::Sha256(Sha256([7; 32])));
    // The source gave all three, and named the file by its MD5.
    store
        .apply(vec![Change::Put {
            object: by_md5.clone(),
            hashes,
            record: record("feed:bazaar", Verdict::Untrusted, 90, 10),
            comment: None,
        }])
        .await
        .expect("apply");
    // Another source knows only the MD5.
    store
        .apply(vec![put(
            &by_md5,
            record("feed:clamav", Verdict::Untrusted, 70, 20),
        )])
        .await
        .expect("apply");
    let all = [by_md5, by_sha1, by_sha256];
    for knowledge in store.lookup(&all).await.expect("lookup") {
        assert_eq!(knowledge.hashes, hashes);
        let mut sources: Vec<String> = knowledge
            .records
            .iter()
            .map(|r| r.source.to_string())
            .collect();
        sources.sort();
        assert_eq!(sources, ["feed:bazaar", "feed:clamav"], "{knowledge:?}");
    }
}

pub async fn remove_retracts_one_source_everywhere(store: &Store) {
    let hashes = FileHashes {
        md5: Some(Md5([8; 16])),
        sha1: None,
        sha256: Some(Sha256([9; 32])),
    };
    let by_md5 = Object::File(FileHash::Md5(Md5([8; 16])));
    let by_sha256 = Object::File(FileHash::Sha256(Sha256([9; 32])));
    store
        .apply(vec![
            Change::Put {
                object: by_sha256.clone(),
                hashes,
                record: record("feed:x", Verdict::Untrusted, 90, 10),
                comment: None,
            },
            put(&by_sha256, record("feed:y", Verdict::Untrusted, 50, 10)),
        ])
        .await
        .expect("apply");
    let outcomes = store
        .apply(vec![
            Change::Remove {
                object: by_md5.clone(),
                source: "feed:x".parse().expect("source"),
            },
            Change::Remove {
                object: by_md5.clone(),
                source: "feed:never-seen".parse().expect("source"),
            },
            Change::Remove {
                object: object(ObjectKind::Domain, "never.example"),
                source: Source::Local,
            },
        ])
        .await
        .expect("apply");
    assert_eq!(
        outcomes,
        [Outcome::Removed, Outcome::NotFound, Outcome::NotFound]
    );
    for knowledge in store
        .lookup(&[by_md5.clone(), by_sha256.clone()])
        .await
        .expect("lookup")
    {
        let sources: Vec<String> = knowledge
            .records
            .iter()
            .map(|r| r.source.to_string())
            .collect();
        assert_eq!(sources, ["feed:y"]);
    }
    store
        .apply(vec![Change::Remove {
            object: by_sha256.clone(),
            source: "feed:y".parse().expect("source"),
        }])
        .await
        .expect("apply");
    let knowledge = store.lookup(&[by_sha256]).await.expect("lookup");
    assert!(knowledge[0].records.is_empty());
}

pub async fn local_verdicts_are_listed_with_comments(store: &Store) {
    let domain = object(ObjectKind::Domain, "intranet.example");
    let file = object(ObjectKind::File, &"a".repeat(64));
    store
        .apply(vec![
            Change::Put {
                object: domain.clone(),
                hashes: FileHashes::default(),
                record: record("local", Verdict::Trusted, 100, 5),
                comment: Some("our intranet, ticket #42".to_owned()),
            },
            put(&file, record("local", Verdict::Untrusted, 100, 6)),
            put(&file, record("feed:z", Verdict::Trusted, 100, 6)),
        ])
        .await
        .expect("apply");
    let listed = store.local_verdicts().await.expect("list");
    assert_eq!(listed.len(), 2);
    let listed_domain = listed
        .iter()
        .find(|v| v.object == domain)
        .expect("domain listed");
    assert_eq!(
        listed_domain.comment.as_deref(),
        Some("our intranet, ticket #42")
    );
    assert_eq!(listed_domain.record.verdict, Verdict::Trusted);
    let listed_file = listed
        .iter()
        .find(|v| v.object == file)
        .expect("file listed");
    assert_eq!(listed_file.comment, None);

    let outcome = store
        .apply(vec![Change::Remove {
            object: file.clone(),
            source: Source::Local,
        }])
        .await
        .expect("apply");
    assert_eq!(outcome, [Outcome::Removed]);
    let listed = store.local_verdicts().await.expect("list");
    assert_eq!(listed.len(), 1);
    // The feed's record on the file is untouched.
    let knowledge = store.lookup(&[file]).await.expect("lookup");
    assert_eq!(knowledge[0].records.len(), 1);
    assert_eq!(knowledge[0].records[0].source.to_string(), "feed:z");
}

pub async fn a_batch_is_answered_in_order(store: &Store) {
    let objects: Vec<Object> = (0u8..50)
        .map(|i| Object::File(FileHash::Sha256(Sha256([i; 32]))))
        .collect();
    let changes = objects
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, o)| put(o, record("feed:order", Verdict::Untrusted, i as i64, 1)))
        .collect();
    store.apply(changes).await.expect("apply");
    let knowledge = store.lookup(&objects).await.expect("lookup");
    for (i, knowledge) in knowledge.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(knowledge.records[0].confidence.get() as usize, i);
        } else {
            assert!(knowledge.records.is_empty());
        }
    }
}

pub async fn names_survive_many_distinct_values(store: &Store) {
    let changes: Vec<Change> = (0..300)
        .map(|i| {
            let target = object(ObjectKind::Domain, &format!("n{i}.example"));
            let mut rec = record(&format!("feed:f{}", i % 7), Verdict::Untrusted, 50, 1);
            rec.threat = Some(ThreatName::new(&format!("Threat.{i}")).expect("name"));
            put(&target, rec)
        })
        .collect();
    store.apply(changes).await.expect("apply");
    let lookups: Vec<Object> = (0..300)
        .map(|i| object(ObjectKind::Domain, &format!("n{i}.example")))
        .collect();
    for (i, knowledge) in store
        .lookup(&lookups)
        .await
        .expect("lookup")
        .iter()
        .enumerate()
    {
        let record = &knowledge.records[0];
        assert_eq!(
            record.threat.as_ref().map(ThreatName::as_str),
            Some(&*format!("Threat.{i}"))
        );
        assert_eq!(record.source.to_string(), format!("feed:f{}", i % 7));
    }
}

/// Changes that exercise a bulk import: many new keys, duplicates (the later wins), a second
/// source on an existing key, a file given by MD5 with its other hashes (aliases).
fn bulk_changes(count: u64, feed: &str, at: u64) -> (Vec<Change>, Vec<Object>) {
    let mut changes = Vec::new();
    let mut objects = Vec::new();
    for i in 0..count {
        let object = Object::File(FileHash::Sha256(Sha256::digest(&i.to_le_bytes())));
        let mut rec = record(feed, Verdict::Untrusted, (i % 100) as i64, at + i);
        rec.threat = Some(ThreatName::new(&format!("Bulk.Threat.{}", i % 5)).expect("name"));
        changes.push(put(&object, rec));
        objects.push(object);
    }
    // The same key twice in one import: the later change wins.
    let twice = Object::File(FileHash::Sha256(Sha256::digest(&5u64.to_le_bytes())));
    changes.push(put(&twice, record(feed, Verdict::Riskware, 33, at)));
    // A key that already has another source's record.
    let shared = object(ObjectKind::Domain, "shared.example");
    changes.push(put(&shared, record(feed, Verdict::Trusted, 20, at)));
    objects.push(shared);
    // A file named by MD5 with all three hashes.
    let hashes = FileHashes {
        md5: Some(Md5([0x51; 16])),
        sha1: Some(Sha1([0x52; 20])),
        sha256: Some(Sha256([0x53; 32])),
    };
    changes.push(Change::Put {
        object: Object::File(FileHash::Md5(Md5([0x51; 16]))),
        hashes,
        record: record(feed, Verdict::Untrusted, 90, at),
        comment: None,
    });
    objects.extend([
        Object::File(FileHash::Md5(Md5([0x51; 16]))),
        Object::File(FileHash::Sha1(Sha1([0x52; 20]))),
        Object::File(FileHash::Sha256(Sha256([0x53; 32]))),
    ]);
    (changes, objects)
}

async fn bulk(store: &Store, changes: Vec<Change>, run_bytes: usize) -> crate::BulkSummary {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut import = store
            .bulk_import_with_buffer(run_bytes)
            .expect("bulk import");
        for change in &changes {
            import.add(change).expect("add");
        }
        import.finish().expect("finish")
    })
    .await
    .expect("join")
}

/// An import that replaces its source retracts what the source no longer lists, and only
/// that: other sources' records, and what it lists again, stay.
pub async fn a_replacing_import_retracts_what_its_source_no_longer_lists(store: &Store) {
    let domains: Vec<Object> = (0..4)
        .map(|i| object(ObjectKind::Domain, &format!("listed{i}.example")))
        .collect();
    store
        .apply(vec![put(
            &domains[0],
            record("feed:other", Verdict::Untrusted, 60, 1),
        )])
        .await
        .expect("apply");
    let import = |listed: &[Object]| {
        let (store, listed) = (store.clone(), listed.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut import = store.bulk_import().expect("bulk import");
            import.replace_source("feed:list".parse().expect("source"));
            for domain in &listed {
                import
                    .add(&put(domain, record("feed:list", Verdict::Untrusted, 80, 2)))
                    .expect("add");
            }
            import.finish().expect("finish")
        })
    };
    import(&domains[..3]).await.expect("first import");
    let summary = import(&domains[1..]).await.expect("second import");
    assert_eq!(summary.retracted, 1, "{summary:?}");
    let known = store.lookup(&domains).await.expect("lookup");
    let sources = |k: &crate::Knowledge| -> Vec<String> {
        k.records.iter().map(|r| r.source.to_string()).collect()
    };
    assert_eq!(
        sources(&known[0]),
        ["feed:other"],
        "retracted, the other source kept"
    );
    for listed in &known[1..] {
        assert_eq!(sources(listed), ["feed:list"], "listed again or newly");
    }
}

/// A replacing import retracts what it no longer lists however many keys that is: more
/// than one write's worth, spread over every part of the store (30,000 domains listed, then
/// one in three).
pub async fn a_large_replacing_import_retracts_everything_it_no_longer_lists(store: &Store) {
    const LISTED: usize = 30_000;
    let domains: Vec<Object> = (0..LISTED)
        .map(|i| object(ObjectKind::Domain, &format!("bulk{i}.example")))
        .collect();
    let import = |listed: Vec<Object>| {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut import = store.bulk_import().expect("bulk import");
            import.replace_source("feed:bulk".parse().expect("source"));
            for domain in &listed {
                import
                    .add(&put(domain, record("feed:bulk", Verdict::Untrusted, 80, 2)))
                    .expect("add");
            }
            import.finish().expect("finish")
        })
    };
    let first = import(domains.clone()).await.expect("first import");
    assert_eq!(
        first.retracted, 0,
        "a first import retracts nothing: {first:?}"
    );
    let kept: Vec<Object> = domains.iter().step_by(3).cloned().collect();
    let second = import(kept).await.expect("second import");
    assert_eq!(second.retracted as usize, LISTED - LISTED / 3, "{second:?}");
    let sample: Vec<Object> = domains.iter().step_by(997).cloned().collect();
    let known = store.lookup(&sample).await.expect("lookup");
    for (index, knowledge) in (0..LISTED).step_by(997).zip(&known) {
        assert_eq!(
            knowledge.records.len(),
            usize::from(index % 3 == 0),
            "domain {index}: listed again or retracted"
        );
    }
}

/// A bulk import leaves the store exactly as `apply` of the same changes would, whether it
/// is large (merged from spilled runs) or small, and refuses what it cannot import.
pub async fn bulk_import_matches_apply(open: &impl AsyncFn() -> Store) {
    let by_apply = open().await;
    let by_bulk = open().await;
    let shared = object(ObjectKind::Domain, "shared.example");
    for store in [&by_apply, &by_bulk] {
        store
            .apply(vec![put(
                &shared,
                record("feed:other", Verdict::Untrusted, 70, 1),
            )])
            .await
            .expect("apply");
    }
    let (changes, objects) = bulk_changes(3_000, "feed:bulk", 1_000);
    by_apply.apply(changes.clone()).await.expect("apply");
    let summary = bulk(&by_bulk, changes.clone(), 4096).await;
    assert_eq!(summary.changes, changes.len() as u64);
    let expected = by_apply.lookup(&objects).await.expect("lookup");
    assert_eq!(by_bulk.lookup(&objects).await.expect("lookup"), expected);
    assert_eq!(
        expected[5].records[0].verdict,
        Verdict::Riskware,
        "the later change won"
    );
    assert_eq!(
        expected[3_000].records.len(),
        2,
        "both sources on the shared key"
    );
    assert_eq!(expected[3_001].hashes.sha256, Some(Sha256([0x53; 32])));

    // A small import into the now large store, overlapping what is there.
    let (small, small_objects) = bulk_changes(20, "feed:second", 5_000);
    by_apply.apply(small.clone()).await.expect("apply");
    bulk(&by_bulk, small, 1 << 20).await;
    assert_eq!(
        by_bulk.lookup(&small_objects).await.expect("lookup"),
        by_apply.lookup(&small_objects).await.expect("lookup")
    );
    assert_eq!(
        by_bulk.lookup(&objects).await.expect("lookup"),
        by_apply.lookup(&objects).await.expect("lookup")
    );
    assert_eq!(
        by_bulk.stats().await.expect("stats").keys,
        by_apply.stats().await.expect("stats").keys
    );

    // Local verdicts and removals are not bulk operations.
    let mut import = by_bulk.bulk_import().expect("bulk import");
    assert!(
        import
            .add(&put(&shared, record("local", Verdict::Trusted, 100, 1)))
            .is_err()
    );
    assert!(
        import
            .add(&Change::Remove {
                object: shared.clone(),
                source: Source::Local,
            })
            .is_err()
    );
}

/// URL verdicts live under their expressions; a domain is the expression `domain/`; a
/// privacy-mode search finds files and expressions by hash prefix.
pub async fn urls_domains_and_prefix_search(store: &Store) {
    let login = object(ObjectKind::Url, "http://evil.example/login/");
    let domain = object(ObjectKind::Domain, "evil.example");
    let file = Object::File(FileHash::Sha256(Sha256([0xee; 32])));
    store
        .apply(vec![
            put(&login, record("feed:urls", Verdict::Untrusted, 80, 1)),
            put(&domain, record("feed:domains", Verdict::Riskware, 60, 1)),
            Change::Put {
                object: file.clone(),
                hashes: FileHashes {
                    md5: Some(Md5([0xed; 16])),
                    ..FileHashes::default()
                },
                record: record("feed:files", Verdict::Untrusted, 70, 1),
                comment: None,
            },
        ])
        .await
        .expect("apply");
    // The domain's verdict is the URL expression `evil.example/`.
    let root = object(ObjectKind::Url, "evil.example/");
    let knowledge = store.lookup(&[root, login.clone()]).await.expect("lookup");
    assert_eq!(knowledge[0].records[0].source.to_string(), "feed:domains");
    assert_eq!(knowledge[1].records[0].source.to_string(), "feed:urls");

    let Object::Url(expression) = &login else {
        unreachable!()
    };
    let url_hash = expression.sha256();
    let sha256 = |bytes: Vec<u8>| crate::SearchPrefix {
        of: repnet_model::PrefixOf::Sha256,
        bytes,
    };
    let (matches, truncated) = store
        .search_prefixes(
            &[
                sha256(url_hash.as_bytes()[..4].to_vec()),
                sha256(vec![0xee, 0xee, 0xee, 0xee]),
                sha256(vec![1, 2, 3, 4]),
            ],
            100,
        )
        .await
        .expect("search");
    assert!(!truncated);
    let url_match = matches
        .iter()
        .find(|m| m.matched == crate::Matched::Url(url_hash))
        .expect("the URL matched");
    assert_eq!(
        url_match.knowledge.records[0].source.to_string(),
        "feed:urls"
    );
    let file_match = matches
        .iter()
        .find(|m| m.matched == crate::Matched::File(FileHash::Sha256(Sha256([0xee; 32]))))
        .expect("the file matched");
    assert_eq!(file_match.knowledge.hashes.md5, Some(Md5([0xed; 16])));
    assert_eq!(matches.len(), 2, "nothing else starts with those prefixes");
    // An MD5 prefix finds the file by its MD5 (an alias), with the whole file's knowledge.
    let (matches, _) = store
        .search_prefixes(
            &[crate::SearchPrefix {
                of: repnet_model::PrefixOf::Md5,
                bytes: vec![0xed; 4],
            }],
            100,
        )
        .await
        .expect("search");
    assert_eq!(matches.len(), 1);
    assert_eq!(
        matches[0].matched,
        crate::Matched::File(FileHash::Md5(Md5([0xed; 16])))
    );
    assert_eq!(
        matches[0].knowledge.records[0].source.to_string(),
        "feed:files"
    );
    // A full hash is a prefix too; the limit is respected.
    let (matches, truncated) = store
        .search_prefixes(
            &[sha256(url_hash.as_bytes().to_vec()), sha256(vec![0xee; 32])],
            1,
        )
        .await
        .expect("search");
    assert_eq!(matches.len(), 1);
    assert!(truncated);
}

pub async fn licence_keys_are_kept_and_replaced_by_hash(store: &Store) {
    assert!(store.licences().await.expect("licences").is_empty());
    let licence = |id: &str, key: &str, label: Option<&str>| crate::Licence {
        id: id.to_owned(),
        key_sha256: Sha256::digest(key.as_bytes()),
        label: label.map(str::to_owned),
        created: Timestamp(1_000),
        expires: None,
        revoked: None,
        last_used: None,
    };
    store
        .put_licences(vec![
            licence("a1", "ORG-KEY-A", Some("first")),
            licence("b2", "ORG-KEY-B", None),
        ])
        .await
        .expect("put");
    let mut revoked = licence("a1", "ORG-KEY-A", Some("first"));
    revoked.revoked = Some(Timestamp(2_000));
    store
        .put_licences(vec![revoked.clone()])
        .await
        .expect("put");
    let mut kept = store.licences().await.expect("licences");
    kept.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0], revoked, "replaced by its key's hash");
    assert_eq!(kept[1].label, None);
}

pub async fn secrets_are_made_once_and_rotated_when_old(store: &Store) {
    let first = store
        .permanent_secret("installations")
        .await
        .expect("secret");
    assert_eq!(
        store
            .permanent_secret("installations")
            .await
            .expect("secret"),
        first,
        "kept for good"
    );
    assert_ne!(
        store.permanent_secret("other").await.expect("secret"),
        first
    );
    let day = 86_400;
    let device = store
        .device_secret(Timestamp(10 * day), day)
        .await
        .expect("device secret");
    assert_eq!(
        store
            .device_secret(Timestamp(10 * day + day / 2), day)
            .await
            .expect("device secret"),
        device,
        "kept while younger than the rotation"
    );
    assert_ne!(
        store
            .device_secret(Timestamp(12 * day), day)
            .await
            .expect("device secret"),
        device,
        "replaced once older"
    );
}

pub async fn every_change_has_the_next_sequence_number(store: &Store) {
    let before = store.sync_state().await.expect("sync state");
    let domain = object(ObjectKind::Domain, "sequenced.example");
    store
        .apply(vec![put(
            &domain,
            record("feed:a", Verdict::Untrusted, 80, 10),
        )])
        .await
        .expect("apply");
    let after_put = store.sync_state().await.expect("sync state");
    assert_eq!(after_put.log_id, before.log_id, "the same log");
    assert!(
        after_put.sequence > before.sequence,
        "{before:?} {after_put:?}"
    );
    store
        .apply(vec![Change::Remove {
            object: domain,
            source: "feed:a".parse().expect("source"),
        }])
        .await
        .expect("apply");
    let after_remove = store.sync_state().await.expect("sync state");
    assert!(after_remove.sequence > after_put.sequence);
    // What changed after `before` is written as a stream a puller reads (on a blocking
    // thread, as the store's streams are).
    let (answer, stream) = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut stream = Vec::new();
            let answer = store.write_changes(before.sequence, 1_000, &mut stream);
            (answer, stream)
        })
        .await
        .expect("the writing thread")
    };
    match answer.expect("changes") {
        crate::ChangesAnswer::Written(header) => {
            assert_eq!(header.to, after_remove.sequence, "{header:?}");
        }
        other => panic!("a stream of changes, not {other:?}"),
    }
    let mut reader = crate::sync::StreamReader::new(&stream[..]).expect("a stream");
    let mut entries = 0;
    while reader.next_entry().expect("entry").is_some() {
        entries += 1;
    }
    assert!(entries >= 1, "the changed key is in the stream");

    // A page holds exactly the changes numbered in it, however the log groups them: five
    // keys changed by one write, asked for two at a time from the second on.
    let start = store.sync_state().await.expect("sync state").sequence;
    let five: Vec<Change> = (0..5)
        .map(|i| {
            put(
                &object(ObjectKind::Domain, &format!("paged-{i}.example")),
                record("feed:a", Verdict::Untrusted, 80, 10),
            )
        })
        .collect();
    store.apply(five).await.expect("apply");
    assert_eq!(
        store.sync_state().await.expect("sync state").sequence,
        start + 5
    );
    for (after, limit, expected) in [(start + 1, 2, 2), (start, 10, 5), (start + 4, 10, 1)] {
        let store = store.clone();
        let (answer, stream) = tokio::task::spawn_blocking(move || {
            let mut stream = Vec::new();
            let answer = store.write_changes(after, limit, &mut stream);
            (answer, stream)
        })
        .await
        .expect("the writing thread");
        match answer.expect("changes") {
            crate::ChangesAnswer::Written(header) => {
                assert_eq!(header.to, after + expected, "{header:?}");
            }
            other => panic!("a stream of changes, not {other:?}"),
        }
        let mut reader = crate::sync::StreamReader::new(&stream[..]).expect("a stream");
        let mut entries = 0;
        while reader.next_entry().expect("entry").is_some() {
            entries += 1;
        }
        assert_eq!(entries, expected, "after {after}, {limit} at most");
    }
}

pub async fn statistics_fold_into_aggregates_and_mark_objects_dirty(store: &Store) {
    let file = Object::File(FileHash::Sha256(Sha256::digest(b"reported file")));
    let event = |kind: crate::StatKind, device: u64, at: u64| crate::StatEvent {
        kind,
        object: file.clone(),
        device,
        established: true,
        time: Timestamp(at),
        size: Some(1_234),
        signer: None,
        name: None,
        threat: None,
        comment: None,
    };
    store
        .record_statistics(vec![
            event(crate::StatKind::Sighting, 1, 100),
            event(crate::StatKind::Detection, 2, 200),
            event(crate::StatKind::Detection, 2, 300),
        ])
        .await
        .expect("record");
    let aggregate = store
        .aggregate(&file)
        .await
        .expect("aggregate")
        .expect("one");
    assert_eq!(
        (aggregate.sightings, aggregate.detections),
        (1, 2),
        "{aggregate:?}"
    );
    assert_eq!((aggregate.devices, aggregate.detecting_devices), (2, 1));
    assert_eq!(
        (aggregate.first_seen, aggregate.last_seen),
        (Timestamp(100), Timestamp(300))
    );
    assert_eq!(store.event_count().await.expect("events"), 3);
    // Lookups answer how many devices reported the file.
    let known = store
        .lookup(std::slice::from_ref(&file))
        .await
        .expect("lookup");
    assert_eq!(known[0].prevalence, 2, "{known:?}");
    assert_eq!(store.dirty_count().await.expect("dirty"), 1);
    let dirty = store.dirty_aggregates(10).await.expect("dirty");
    assert_eq!(dirty.files.len(), 1);
    assert_eq!(dirty.files[0].object, file);
    store.clear_dirty(dirty.keys).await.expect("clear");
    assert_eq!(store.dirty_count().await.expect("dirty"), 0);
    // Raw events past their retention go; the aggregate stays.
    assert_eq!(
        store
            .delete_events_before(Timestamp(250))
            .await
            .expect("delete"),
        2
    );
    assert_eq!(store.event_count().await.expect("events"), 1);
    assert!(store.aggregate(&file).await.expect("aggregate").is_some());
}

pub async fn the_review_queue_holds_reports_and_engine_verdicts(store: &Store) {
    let reported = Object::File(FileHash::Sha256(Sha256::digest(b"said to be wrong")));
    let engine = Object::File(FileHash::Sha256(Sha256::digest(b"set by the engine")));
    let report = |device: u64, at: u64, comment: &str| crate::StatEvent {
        kind: crate::StatKind::FalsePositive,
        object: reported.clone(),
        device,
        established: true,
        time: Timestamp(at),
        size: None,
        signer: None,
        name: None,
        threat: None,
        comment: Some(comment.to_owned()),
    };
    store
        .record_statistics(vec![report(1, 100, "first"), report(2, 200, "latest")])
        .await
        .expect("record");
    store
        .engine_reviews(
            vec![crate::EngineReview {
                object: engine.clone(),
                verdict: Verdict::Untrusted,
                evidence: "detected on 5 established installations".to_owned(),
                time: Timestamp(300),
            }],
            Vec::new(),
        )
        .await
        .expect("engine reviews");
    let mut items = store.review_items().await.expect("review items");
    items.sort_by_key(|item| item.engine.is_some());
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        (
            &items[0].object,
            items[0].reports,
            items[0].comment.as_deref()
        ),
        (&reported, 2, Some("latest"))
    );
    assert_eq!(
        (&items[1].object, items[1].engine),
        (&engine, Some(Verdict::Untrusted))
    );
    // An engine verdict removed takes its item out; an item settled is closed.
    store
        .engine_reviews(Vec::new(), vec![engine])
        .await
        .expect("engine reviews");
    assert!(
        store
            .remove_review(items[0].id.clone())
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_review(items[0].id.clone())
            .await
            .expect("remove")
    );
    assert!(store.review_items().await.expect("review items").is_empty());
}

pub async fn a_snapshot_replicates_into_another_store(source: &Store, replica: &Store) {
    let domain = object(ObjectKind::Domain, "replicated.example");
    source
        .apply(vec![put(
            &domain,
            record("feed:a", Verdict::Untrusted, 90, 10),
        )])
        .await
        .expect("apply");
    // Streams are written and applied on blocking threads, as the store's streams are.
    let (header, snapshot) = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            let mut snapshot = Vec::new();
            let header = source.write_snapshot(&mut snapshot).expect("snapshot");
            (header, snapshot)
        })
        .await
        .expect("the writing thread")
    };
    let applied = {
        let replica = replica.clone();
        tokio::task::spawn_blocking(move || {
            let reader = crate::sync::StreamReader::new(&snapshot[..]).expect("a stream");
            replica.apply_stream(reader).expect("apply the stream")
        })
        .await
        .expect("the applying thread")
    };
    assert_eq!(applied.header, header);
    let knowledge = replica
        .lookup(std::slice::from_ref(&domain))
        .await
        .expect("lookup");
    let records = &knowledge[0].records;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].source, Source::Upstream);
    assert_eq!(records[0].verdict, Verdict::Untrusted);
    let cursor = replica
        .sync_state()
        .await
        .expect("sync state")
        .upstream
        .expect("a cursor");
    assert_eq!(
        (cursor.log_id, cursor.sequence),
        (header.log_id, header.to),
        "the cursor moved with the stream"
    );
}
