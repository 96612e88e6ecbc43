//! URL canonicalisation and expressions on a realistic mix: what every URL lookup pays on
//! the server (and in the client, in privacy mode).
//!
//! Run: `cargo bench -p repnet-model --bench url`. Results go in docs/BENCHMARKS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use repnet_model::CanonicalUrl;

/// A mix of the shapes seen in feeds and in browsing: plain pages, deep paths, queries,
/// escapes, ports and credentials, IP hosts, internationalised names, junk.
fn mix() -> Vec<Vec<u8>> {
    let mut urls = Vec::new();
    for i in 0..1_000u32 {
        let url = match i % 10 {
            0 => format!("http://www.example{i}.com/"),
            1 => format!("https://cdn{i}.static.example.net/assets/js/app.{i}.min.js"),
            2 => format!(
                "http://shop{i}.example.org/catalog/item.php?id={i}&ref=home&utm_source=mail"
            ),
            3 => format!(
                "HTTP://Login.Bank{i}.Example.COM:8080/secure/../account/./verify?session={i}#top"
            ),
            4 => format!(
                "http://192.0.{}.{}/malware/payload{i}.exe",
                i % 256,
                i / 4 % 256
            ),
            5 => format!(
                "http://user:pass@files{i}.example.com/download/%70%61%79%6c%6f%61%64{i}.zip"
            ),
            6 => format!("example{i}.com/path/to/page{i}.html"),
            7 => format!("http://3279880{i:03}/blah"),
            8 => format!("http://bücher{i}.example/straße/seite.html"),
            _ => format!(
                "https://a.b.c.d.e.sub{i}.example.co.uk//double//slash/%2525252525/{i}/?q=%2F"
            ),
        };
        urls.push(url.into_bytes());
    }
    urls
}

fn canonicalisation(c: &mut Criterion) {
    let urls = mix();
    let mut group = c.benchmark_group("url");
    group.throughput(Throughput::Elements(urls.len() as u64));
    group.bench_function("canonicalise", |b| {
        b.iter(|| {
            for url in &urls {
                let _ = std::hint::black_box(CanonicalUrl::parse(url));
            }
        })
    });
    group.bench_function("canonicalise + expressions", |b| {
        b.iter(|| {
            for url in &urls {
                if let Ok(url) = CanonicalUrl::parse(url) {
                    std::hint::black_box(url.expressions());
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, canonicalisation);
criterion_main!(benches);
