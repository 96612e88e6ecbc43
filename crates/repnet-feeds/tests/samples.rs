//! Every format against the samples and the verdicts they should produce (`expect.tsv`),
//! plus compressed input, auto-detection, idempotent re-import, retraction and errors.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use repnet_feeds::{FeedOptions, Format, Input, NoProgress, Report};
use repnet_model::{
    FeedName, FileHashes, Object, ObjectKind, Reputation, Timestamp, TtlPolicy, Verdict,
};
use repnet_store::{Store, StoreOptions};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn options(dir: &Path) -> FeedOptions {
    FeedOptions::new(Timestamp(1_800_000_000), dir.to_path_buf())
}

fn import(
    store: &Store,
    dir: &Path,
    files: &[PathBuf],
    format: Format,
    options: FeedOptions,
) -> Report {
    let inputs: Vec<Input> = files.iter().cloned().map(Input::Path).collect();
    repnet_feeds::import(store, &inputs, format, &options, &NoProgress)
        .unwrap_or_else(|e| panic!("{files:?} in {}: {e}", dir.display()))
}

fn verdict(store: &Store, kind: &str, value: &str) -> Verdict {
    let kind = match kind {
        "url" => ObjectKind::Url,
        "domain" => ObjectKind::Domain,
        "file" => ObjectKind::File,
        "ip" => ObjectKind::Ip,
        other => panic!("unknown kind {other}"),
    };
    let object = Object::parse(kind, value).unwrap();
    let knowledge = runtime()
        .block_on(store.lookup(std::slice::from_ref(&object)))
        .unwrap()
        .remove(0);
    Reputation::assess(
        object,
        FileHashes::default(),
        knowledge.records,
        0,
        &TtlPolicy::default(),
    )
    .verdict
}

#[test]
fn every_sample_gives_the_expected_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let cases: &[(&str, Format, &str, u64, u64)] = &[
        // file, format, format expected from auto-detection, rows read, rows skipped
        ("urlhaus.csv", Format::Auto, "urlhaus", 5, 1),
        ("malwarebazaar.csv", Format::Auto, "malwarebazaar", 6, 1),
        ("threatfox.csv", Format::Auto, "threatfox", 4, 0),
        ("phishtank.csv", Format::Auto, "phishtank", 3, 0),
        ("openphish.txt", Format::Openphish, "openphish", 3, 0),
        ("NSRLFile.txt", Format::Auto, "nsrl", 4, 0),
        ("nsrl-rdsv3.db", Format::Auto, "nsrl", 6, 0),
        ("clamav.hdb", Format::Auto, "clamav", 4, 1),
        ("clamav.hsb", Format::Auto, "clamav", 3, 0),
        (
            "misp-warninglist.json",
            Format::Auto,
            "misp-warninglist",
            3,
            0,
        ),
        ("stix-bundle.json", Format::Auto, "stix", 4, 0),
        ("tranco.csv", Format::Auto, "tranco", 5, 0),
    ];
    for (file, format, expected_format, read, skipped) in cases {
        let mut options = options(dir.path());
        // Two files of one format are two sources here, so that neither replaces the other.
        options.source = Some(FeedName::new(&file.replace('.', "-")).unwrap());
        let report = import(
            &store,
            dir.path(),
            &[samples().join(file)],
            *format,
            options,
        );
        assert_eq!(
            report.format.map(Format::name),
            Some(*expected_format),
            "{file}"
        );
        assert_eq!(
            (report.read, report.skipped),
            (*read, *skipped),
            "{file}: {report:?}"
        );
        assert_eq!(report.stored, read - skipped, "{file}: {report:?}");
    }
    let expectations = std::fs::read_to_string(samples().join("expect.tsv")).unwrap();
    let mut checked = 0;
    for line in expectations
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let expected: Verdict = fields[2].parse().unwrap();
        assert_eq!(verdict(&store, fields[0], fields[1]), expected, "{line}");
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} expectations");
}

#[test]
fn bad_rows_are_reported_by_line_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let report = import(
        &store,
        dir.path(),
        &[samples().join("malwarebazaar.csv")],
        Format::Auto,
        options(dir.path()),
    );
    assert_eq!(report.examples.len(), 1);
    assert!(
        report.examples[0].ends_with(r#"malwarebazaar.csv:11: sha256_hash "not-a-hash": a file hash must be hexadecimal: character 'n' at position 1 is not (use 0-9 and a-f)"#),
        "{:?}",
        report.examples
    );
    assert_eq!(
        report.summary(),
        "read 6, stored 5, skipped 1 (invalid hash: 1)"
    );
    let report = import(
        &store,
        dir.path(),
        &[samples().join("urlhaus.csv")],
        Format::Auto,
        options(dir.path()),
    );
    assert!(
        report.examples[0].contains("urlhaus.csv:14: expected 9 columns, found 1"),
        "{:?}",
        report.examples
    );
}

#[test]
fn compressed_feeds_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let zipped = dir.path().join("urlhaus.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
    writer
        .start_file(
            "csv.txt",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
    writer
        .write_all(&std::fs::read(samples().join("urlhaus.csv")).unwrap())
        .unwrap();
    writer.finish().unwrap();
    let gzipped = dir.path().join("full.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gzipped).unwrap(),
        flate2::Compression::default(),
    );
    encoder
        .write_all(&std::fs::read(samples().join("malwarebazaar.csv")).unwrap())
        .unwrap();
    encoder.finish().unwrap();
    let zipped_db = dir.path().join("rds.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zipped_db).unwrap());
    writer
        .start_file("RDS/minimal.db", zip::write::SimpleFileOptions::default())
        .unwrap();
    writer
        .write_all(&std::fs::read(samples().join("nsrl-rdsv3.db")).unwrap())
        .unwrap();
    writer.finish().unwrap();

    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let report = import(
        &store,
        dir.path(),
        &[zipped],
        Format::Auto,
        options(dir.path()),
    );
    assert_eq!((report.format, report.stored), (Some(Format::Urlhaus), 4));
    let report = import(
        &store,
        dir.path(),
        &[gzipped],
        Format::Auto,
        options(dir.path()),
    );
    assert_eq!(
        (report.format, report.stored),
        (Some(Format::Malwarebazaar), 5)
    );
    let report = import(
        &store,
        dir.path(),
        &[zipped_db],
        Format::Auto,
        options(dir.path()),
    );
    assert_eq!((report.format, report.stored), (Some(Format::Nsrl), 6));
    assert_eq!(
        verdict(&store, "url", "http://198.51.100.10:8080/demo/i0.sh"),
        Verdict::Untrusted
    );
    assert_eq!(
        verdict(&store, "file", "5049336614d0cc135820f5f36bbdf007ec6278da"),
        Verdict::Untrusted
    );
    assert_eq!(
        verdict(
            &store,
            "file",
            "c7e61e4bf9487e15c869733ba954e7c1c51b396bb31393bca9cad8bac6b08734"
        ),
        Verdict::Trusted
    );
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("feed-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_full_reimport_replaces_the_source_and_an_incremental_one_adds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    let named = |name: &str| {
        let mut options = options(dir.path());
        options.source = Some(FeedName::new(name).unwrap());
        options
    };
    let all = write(dir.path(), "all.txt", &format!("{a}\n{b}\n{c}\n"));
    let report = import(
        &store,
        dir.path(),
        std::slice::from_ref(&all),
        Format::Hashlist,
        named("mine"),
    );
    assert_eq!(report.stored, 3);
    // Another source also knows `c`.
    let other = write(dir.path(), "other.txt", &format!("{c}\n"));
    import(
        &store,
        dir.path(),
        &[other],
        Format::Hashlist,
        named("other"),
    );
    let keys = runtime().block_on(store.stats()).unwrap().keys;
    // The same feed again: nothing changes.
    let report = import(&store, dir.path(), &[all], Format::Hashlist, named("mine"));
    assert_eq!((report.stored, report.retracted), (3, 0));
    assert_eq!(runtime().block_on(store.stats()).unwrap().keys, keys);
    // The feed without `b` and `c`: they are retracted from it; `c` stays known from the other.
    let fewer = write(dir.path(), "fewer.txt", &format!("{a}\n"));
    let report = import(
        &store,
        dir.path(),
        &[fewer],
        Format::Hashlist,
        named("mine"),
    );
    assert_eq!(report.retracted, 2);
    assert_eq!(verdict(&store, "file", &a), Verdict::Untrusted);
    assert_eq!(verdict(&store, "file", &b), Verdict::Unknown);
    assert_eq!(verdict(&store, "file", &c), Verdict::Untrusted);
    assert_eq!(runtime().block_on(store.stats()).unwrap().keys, keys - 1);
    // Incremental: only adds.
    let only_b = write(dir.path(), "b.txt", &format!("{b}\n"));
    let mut incremental = named("mine");
    incremental.incremental = true;
    let report = import(&store, dir.path(), &[only_b], Format::Hashlist, incremental);
    assert_eq!(report.retracted, 0);
    assert_eq!(verdict(&store, "file", &a), Verdict::Untrusted);
    assert_eq!(verdict(&store, "file", &b), Verdict::Untrusted);
    // A feed without a single entry (a truncated download, more likely than an emptied feed)
    // changes nothing, unless allowed.
    let empty = write(dir.path(), "empty.txt", "# nothing\n");
    let error = repnet_feeds::import(
        &store,
        &[Input::Path(empty.clone())],
        Format::Hashlist,
        &named("mine"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("feed:mine's records are kept"),
        "{error}"
    );
    assert_eq!(verdict(&store, "file", &a), Verdict::Untrusted);
    let mut allow_empty = named("mine");
    allow_empty.allow_empty = true;
    let report = import(&store, dir.path(), &[empty], Format::Hashlist, allow_empty);
    assert_eq!(report.retracted, 2);
    assert_eq!(verdict(&store, "file", &a), Verdict::Unknown);
}

#[test]
fn unusable_inputs_are_errors_that_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let garbage = write(dir.path(), "garbage.bin", "this is, not a feed!\n\x01\x02");
    let error = repnet_feeds::import(
        &store,
        &[Input::Path(garbage)],
        Format::Auto,
        &options(dir.path()),
        &NoProgress,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("cannot recognise the format")
            && message.contains("urlhaus")
            && message.contains("--format"),
        "{message}"
    );
    let mixed = [
        Input::Path(samples().join("clamav.hdb")),
        Input::Path(samples().join("tranco.csv")),
    ];
    let error = repnet_feeds::import(
        &store,
        &mixed,
        Format::Auto,
        &options(dir.path()),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("one source per import"),
        "{error}"
    );
    let missing = [Input::Path(dir.path().join("missing.csv"))];
    let error = repnet_feeds::import(
        &store,
        &missing,
        Format::Auto,
        &options(dir.path()),
        &NoProgress,
    )
    .unwrap_err();
    assert!(error.to_string().contains("missing.csv"), "{error}");
}

#[test]
fn tranco_takes_the_top_n() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let mut options = options(dir.path());
    options.top = 2;
    let report = import(
        &store,
        dir.path(),
        &[samples().join("tranco.csv")],
        Format::Tranco,
        options,
    );
    assert_eq!((report.read, report.stored), (2, 2));
    assert_eq!(
        verdict(&store, "domain", "demo-popular1.example"),
        Verdict::Trusted
    );
    assert_eq!(
        verdict(&store, "domain", "demo-popular2.example"),
        Verdict::Unknown
    );
}

/// Legacy NSRL gives a SHA-1 and an MD5 per row, no SHA-256: a lookup by either finds the
/// file and names the other hash, as the RDSv3 import's rows are linked by their SHA-256.
#[test]
fn legacy_nsrl_rows_link_their_sha1_and_md5() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    import(
        &store,
        dir.path(),
        &[samples().join("NSRLFile.txt")],
        Format::Nsrl,
        options(dir.path()),
    );
    let sha1 = "5539462166174ff6a175d504bd0885323186845d";
    let md5 = "2eba9b5884d48cd0c84c8c6e96db7cf0";
    let objects = [
        Object::parse(ObjectKind::File, sha1).unwrap(),
        Object::parse(ObjectKind::File, md5).unwrap(),
    ];
    let found = runtime().block_on(store.lookup(&objects)).unwrap();
    for knowledge in &found {
        assert_eq!(knowledge.records.len(), 1, "{knowledge:?}");
        assert_eq!(knowledge.hashes.sha1.unwrap().to_string(), sha1);
        assert_eq!(knowledge.hashes.md5.unwrap().to_string(), md5);
    }
}

/// A damaged archive is an error that changes nothing, never a shorter feed whose missing
/// rows are retracted.
#[test]
fn a_damaged_archive_fails_the_import_and_retracts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    // Hashes that do not compress much, so that damage in the middle of the data is in the
    // middle of the feed.
    let lines: String = (0..20_000u32)
        .map(|i| format!("{}\n", repnet_model::Sha256::digest(&i.to_le_bytes())))
        .collect();
    let zipped = dir.path().join("list.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    writer.start_file("list.txt", deflated).unwrap();
    writer.write_all(lines.as_bytes()).unwrap();
    writer.finish().unwrap();
    let gzipped = dir.path().join("list.txt.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gzipped).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(lines.as_bytes()).unwrap();
    encoder.finish().unwrap();
    let import_as = |file: &Path| {
        let inputs = [Input::Path(file.to_path_buf())];
        let mut options = options(dir.path());
        options.source = Some(FeedName::new("corp").unwrap());
        repnet_feeds::import(&store, &inputs, Format::Hashlist, &options, &NoProgress)
    };
    assert_eq!(import_as(&zipped).unwrap().stored, 20_000);
    let records = |store: &Store| runtime().block_on(store.stats()).unwrap().keys;
    let before = records(&store);

    let damage = |file: &Path, name: &str, change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = std::fs::read(file).unwrap();
        change(&mut bytes);
        let damaged = dir.path().join(name);
        std::fs::write(&damaged, bytes).unwrap();
        damaged
    };
    let flip = |bytes: &mut Vec<u8>| {
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 64] {
            *byte ^= 0x5a;
        }
    };
    let cut = |bytes: &mut Vec<u8>| bytes.truncate(bytes.len() * 2 / 3);
    for damaged in [
        damage(&zipped, "flipped.zip", &flip),
        damage(&gzipped, "flipped.txt.gz", &flip),
        damage(&gzipped, "cut.txt.gz", &cut),
    ] {
        let error = match import_as(&damaged) {
            Err(error) => error,
            Ok(report) => panic!("{} imported: {report:?}", damaged.display()),
        };
        assert!(error.is_feed_error(), "{error}");
        assert_eq!(records(&store), before, "{}: {error}", damaged.display());
    }
}

/// A line longer than a row can be is a bad row with its number, not a line held whole in
/// memory; the rows after it are read.
#[test]
fn a_huge_line_is_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let list = dir.path().join("list.txt");
    let mut text = "a".repeat(3 << 20);
    text.push('\n');
    text.push_str(&format!("{}\n{}", "ab".repeat(32), "cd".repeat(32)));
    std::fs::write(&list, text).unwrap();
    let report = import(
        &store,
        dir.path(),
        &[list],
        Format::Hashlist,
        options(dir.path()),
    );
    assert_eq!(
        (report.read, report.stored, report.skipped),
        (3, 2, 1),
        "{report:?}"
    );
    assert_eq!(report.reasons.get("line too long"), Some(&1));
    assert!(report.examples[0].contains(":1: "), "{:?}", report.examples);
}

/// A compressed feed that expands far beyond what feeds do — a decompression bomb — fails
/// its import, names the limit, and changes nothing; so does one beyond the byte limit.
#[test]
fn a_decompression_bomb_fails_the_import_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{}\n{}\n", "ab".repeat(32), "cd".repeat(32))).unwrap();
    let import_as = |file: &Path, change: &dyn Fn(&mut FeedOptions)| {
        let inputs = [Input::Path(file.to_path_buf())];
        let mut options = options(dir.path());
        options.source = Some(FeedName::new("corp").unwrap());
        change(&mut options);
        repnet_feeds::import(&store, &inputs, Format::Hashlist, &options, &NoProgress)
    };
    assert_eq!(import_as(&list, &|_| ()).unwrap().stored, 2);
    let before = runtime().block_on(store.stats()).unwrap().keys;

    // 96 MiB of zeros: about 100 KB gzipped, a thousand times smaller. (Gzip members
    // concatenate: one is compressed and repeated, which is quick in a debug build.)
    let zeros = vec![b'0'; 1 << 20];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&zeros).unwrap();
    let member = encoder.finish().unwrap();
    let gzipped = dir.path().join("bomb.txt.gz");
    std::fs::write(&gzipped, member.repeat(96)).unwrap();
    let zipped = dir.path().join("bomb.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
    writer
        .start_file(
            "bomb.txt",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(9)),
        )
        .unwrap();
    for _ in 0..96 {
        writer.write_all(&zeros).unwrap();
    }
    writer.finish().unwrap();
    for bomb in [&gzipped, &zipped] {
        let error = match import_as(bomb, &|_| ()) {
            Err(error) => error,
            Ok(report) => panic!("{} imported: {report:?}", bomb.display()),
        };
        let message = error.to_string();
        eprintln!("{message}");
        assert!(error.is_feed_error(), "{message}");
        assert!(
            message.contains("bomb") && message.contains("max_expansion_ratio"),
            "{message}"
        );
        assert_eq!(
            runtime().block_on(store.stats()).unwrap().keys,
            before,
            "{message}"
        );
    }

    // A feed within the ratio but beyond the byte limit.
    let error = match import_as(&gzipped, &|options| {
        options.max_decompressed_bytes = 8 << 20
    }) {
        Err(error) => error,
        Ok(report) => panic!("imported: {report:?}"),
    };
    assert!(
        error.to_string().contains("max_decompressed_bytes"),
        "{error}"
    );
    assert_eq!(runtime().block_on(store.stats()).unwrap().keys, before);
}
