//! Store lookups on a knowledge base of 1 million SHA-256 file entries: single hits and
//! misses, and batches of 1,000 (half present), the shape of `POST /v1/lookup`.
//!
//! The store is loaded with a bulk import, as `repnet import` does.
//!
//! Run: `cargo bench -p repnet-store --bench lookup`. Results go in docs/BENCHMARKS.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use repnet_model::{
    Confidence, FileHash, FileHashes, Object, Sha256, Source, SourceRecord, ThreatName, Timestamp,
    Verdict,
};
use repnet_store::{Change, Store, StoreOptions};

const ENTRIES: u64 = 1_000_000;

/// Deterministic, well-spread 32-byte keys: `i` run through SHA-256.
fn sha256_of(i: u64) -> Sha256 {
    Sha256::digest(&i.to_le_bytes())
}

fn object(i: u64) -> Object {
    Object::File(FileHash::Sha256(sha256_of(i)))
}

fn build(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &StoreOptions::default()).expect("open");
    let mut record = SourceRecord::new(
        Source::feed("bench").expect("name"),
        Verdict::Untrusted,
        Confidence::new(80).expect("confidence"),
        Timestamp(1_790_000_000),
    );
    record.threat = Some(ThreatName::new("Bench.Threat").expect("name"));
    let mut import = store.bulk_import().expect("bulk import");
    for i in 0..ENTRIES {
        import
            .add(&Change::Put {
                object: object(i),
                hashes: FileHashes::default(),
                record: record.clone(),
                comment: None,
            })
            .expect("add");
    }
    import.finish().expect("finish");
    store
}

fn lookups(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = build(dir.path());
    // Measure with the negative-lookup filter in place, as a server runs.
    runtime
        .block_on(store.build_filter(|| false))
        .expect("filter");
    let stats = runtime.block_on(store.stats()).expect("stats");
    eprintln!(
        "{} keys, {} bytes on disk, {:.1} bytes per key",
        stats.keys,
        stats.disk_bytes,
        stats.disk_bytes as f64 / stats.keys as f64
    );

    let mut group = c.benchmark_group("store");
    let mut i = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("single hit", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % ENTRIES;
                [object(i)]
            },
            |objects| runtime.block_on(store.lookup(&objects)).expect("lookup"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("single miss", |b| {
        b.iter_batched(
            || {
                i += 1;
                [object(ENTRIES + i)]
            },
            |objects| runtime.block_on(store.lookup(&objects)).expect("lookup"),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("batch of 1000, half present", |b| {
        b.iter_batched(
            || {
                i += 1;
                (0..1_000u64)
                    .map(|j| {
                        let n = (i * 1_000 + j) * 7919;
                        if j % 2 == 0 {
                            object(n % ENTRIES)
                        } else {
                            object(ENTRIES + n)
                        }
                    })
                    .collect::<Vec<_>>()
            },
            |objects| runtime.block_on(store.lookup(&objects)).expect("lookup"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
