//! The feed parsers never panic on any file, whatever format they are told (or guess): a bad
//! row is a counted skip and an unusable file an error. Read as a dry run (no store), from a
//! file, as `repnet import --dry-run` would; the first byte picks the format.

#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use repnet_feeds::{FeedOptions, Format, Input, NoProgress};
use repnet_model::Timestamp;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else { return };
    let formats: Vec<Format> = std::iter::once(Format::Auto).chain(Format::CONCRETE).collect();
    let format = formats[usize::from(selector) % formats.len()];
    let path = dir().path().join("feed");
    let mut file = std::fs::File::create(&path).expect("create the feed file");
    file.write_all(content).expect("write the feed file");
    drop(file);
    let mut options = FeedOptions::new(Timestamp(1_800_000_000), dir().path().to_path_buf());
    options.allow_empty = true;
    // The server's bounds, smaller: a decompression bomb must end in an error, quickly.
    options.max_decompressed_bytes = 64 << 20;
    options.max_expansion_ratio = 200;
    if let Ok(report) = repnet_feeds::check(&[Input::Path(path)], format, &options, &NoProgress) {
        assert_eq!(report.read, report.stored + report.skipped, "{report:?}");
        assert!(report.examples.len() <= repnet_feeds::Report::EXAMPLES);
    }
});
