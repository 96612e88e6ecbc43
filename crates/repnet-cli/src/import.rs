//! `repnet import`: stream a feed into a knowledge base, in constant memory, reporting bad
//! lines by number without stopping.
//!
//! Lines are parsed into changes and handed to the store's bulk import, which sorts them
//! (spilling to disk past a bound, so memory stays constant) and applies the whole feed in
//! one transaction: after a crash the knowledge base has all of the import or none of it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use repnet_model::{
    Categories, Category, Confidence, FileHash, FileHashes, Object, ObjectKind, Source,
    SourceRecord, ThreatName, Verdict,
};
use repnet_store::{BulkImport, Change, Store, StoreOptions};

use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The feed's format.
    #[arg(long, value_enum)]
    format: ImportFormat,
    /// Feed files to read (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The verdict every entry gets.
    #[arg(long, default_value = "untrusted")]
    verdict: String,
    /// The threat name every entry gets.
    #[arg(long, value_name = "NAME")]
    threat: Option<String>,
    /// Categories every entry gets (comma-separated: malware,ransomware,…).
    #[arg(long = "category", value_delimiter = ',', value_name = "CATEGORY")]
    categories: Vec<String>,
    /// How sure the feed is, 0-100.
    #[arg(long, default_value_t = 80)]
    confidence: i64,
    /// The feed's name: its records are stored as source `feed:<name>` [default: the format].
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Directory of the knowledge base to import into (the server must not be running on it).
    #[arg(
        long,
        env = "REPNET_DATA",
        default_value = "./repnet-data",
        value_name = "DIR"
    )]
    data: PathBuf,
    /// Memory for sorting the import, in MiB; beyond it, sorted runs go to temporary files in
    /// the data directory.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    buffer_mib: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportFormat {
    /// One MD5, SHA-1 or SHA-256 per line (anything after the hash on a line, such as the file
    /// name in `sha256sum` output, is ignored); `#` comments and blank lines are skipped.
    Hashlist,
    /// One URL per line (a scheme is optional); stored under its exact expression.
    Urllist,
    /// One domain per line; a verdict on a domain covers its subdomains.
    Domainlist,
}

impl ImportFormat {
    fn name(self) -> &'static str {
        match self {
            ImportFormat::Hashlist => "hashlist",
            ImportFormat::Urllist => "urllist",
            ImportFormat::Domainlist => "domainlist",
        }
    }

    /// Parses one line: `None` for blank lines and `#` comments.
    fn parse_line(self, line: &str) -> Option<Result<Object, String>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let parsed = match self {
            ImportFormat::Hashlist => {
                let token = line.split_ascii_whitespace().next().unwrap_or(line);
                FileHash::from_hex(token).map(Object::File)
            }
            ImportFormat::Urllist => Object::parse(ObjectKind::Url, line),
            ImportFormat::Domainlist => Object::parse(ObjectKind::Domain, line),
        };
        Some(parsed.map_err(|error| error.to_string()))
    }
}

/// What to store for every entry of the feed.
struct Template {
    record: SourceRecord,
}

impl ImportArgs {
    fn template(&self) -> anyhow::Result<Template> {
        let verdict: Verdict = self.verdict.parse().context("--verdict")?;
        if verdict == Verdict::Unknown {
            anyhow::bail!("--verdict: a feed entry is trusted, riskware or untrusted, not unknown");
        }
        let source = Source::feed(self.source.as_deref().unwrap_or(self.format.name()))
            .context("--source")?;
        let confidence = Confidence::new(self.confidence).context("--confidence")?;
        let mut record = SourceRecord::new(source, verdict, confidence, repnet_store::now());
        record.threat = self
            .threat
            .as_deref()
            .map(ThreatName::new)
            .transpose()
            .context("--threat")?;
        record.categories = self
            .categories
            .iter()
            .map(|text| text.parse::<Category>())
            .collect::<Result<Categories, _>>()
            .context("--category")?;
        Ok(Template { record })
    }
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    read: u64,
    stored: u64,
    skipped: u64,
}

/// Bad lines shown in full; beyond this only counted, so a wrong `--format` does not flood
/// the terminal.
const SHOWN_BAD_LINES: u64 = 20;

fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            std::io::stdin(),
        )));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
}

/// Reads every file into `import`. Blocking.
fn read_feeds(
    format: ImportFormat,
    files: &[PathBuf],
    template: &Template,
    import: &mut BulkImport,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut line = String::new();
    for path in files {
        let mut input = open_input(path)?;
        let mut number = 0u64;
        loop {
            line.clear();
            let read = match input.read_line(&mut line) {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                    // Not UTF-8: report the line and go on; the bytes were consumed.
                    number += 1;
                    tally.read += 1;
                    tally.skipped += 1;
                    report_bad_line(&tally, path, number, "not valid UTF-8 text", progress);
                    continue;
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot read {}", path.display()));
                }
            };
            if read == 0 {
                break;
            }
            number += 1;
            let Some(parsed) = format.parse_line(&line) else {
                continue;
            };
            tally.read += 1;
            match parsed {
                Ok(object) => {
                    tally.stored += 1;
                    import.add(&Change::Put {
                        object,
                        hashes: FileHashes::default(),
                        record: template.record.clone(),
                        comment: None,
                    })?;
                    if tally.read % 65_536 == 0 {
                        progress.set_position(tally.read);
                    }
                }
                Err(reason) => {
                    tally.skipped += 1;
                    report_bad_line(&tally, path, number, &reason, progress);
                }
            }
        }
    }
    progress.set_position(tally.read);
    Ok(tally)
}

fn report_bad_line(
    tally: &Tally,
    path: &Path,
    number: u64,
    reason: &str,
    progress: &indicatif::ProgressBar,
) {
    if tally.skipped <= SHOWN_BAD_LINES {
        progress.suspend(|| eprintln!("{}:{number}: skipped: {reason}", path.display()));
    }
}

pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<Outcome> {
    let template = args.template()?;
    if args.buffer_mib == 0 {
        anyhow::bail!("--buffer-mib must be at least 1");
    }
    let buffer_bytes = args.buffer_mib.saturating_mul(1 << 20);
    for path in &args.files {
        if path != Path::new("-") && !path.is_file() {
            anyhow::bail!("{}: no such file", path.display());
        }
    }
    // A one-off import does not look anything up: no negative-lookup filter.
    let options = StoreOptions {
        negative_filter: false,
        ..StoreOptions::default()
    };
    let store = Store::open(&args.data, &options)
        .with_context(|| format!("cannot open the knowledge base in {}", args.data.display()))?;
    let started = Instant::now();
    let progress =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {human_pos} entries, {per_sec} [{elapsed}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    progress.set_message("reading");
    progress.enable_steady_tick(std::time::Duration::from_millis(200));

    let files = args.files.clone();
    let format = args.format;
    let worker_progress = progress.clone();
    let (tally, summary) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut import = store.bulk_import_with_buffer(buffer_bytes)?;
        let tally = read_feeds(format, &files, &template, &mut import, &worker_progress)?;
        worker_progress.set_message("writing");
        let summary = import
            .finish()
            .context("cannot write to the knowledge base; nothing of this import was stored")?;
        Ok((tally, summary))
    })
    .await
    .map_err(|error| anyhow::anyhow!("the import stopped unexpectedly: {error}"))??;
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    if tally.skipped > SHOWN_BAD_LINES {
        eprintln!("… and {} more bad lines", tally.skipped - SHOWN_BAD_LINES);
    }
    println!(
        "read {}, stored {}, skipped {}",
        tally.read, tally.stored, tally.skipped
    );
    eprintln!(
        "into {} as {} in {elapsed:.1} s ({:.0} entries/s; {} keys written{})",
        args.data.display(),
        Source::feed(args.source.as_deref().unwrap_or(args.format.name()))?,
        tally.read as f64 / elapsed.max(1e-9),
        summary.keys_written,
        if summary.rebuilt {
            ", knowledge base rebuilt in key order"
        } else {
            ""
        },
    );
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_each_plain_format() {
        let hashlist = ImportFormat::Hashlist;
        assert_eq!(hashlist.parse_line(""), None);
        assert_eq!(hashlist.parse_line("   # a comment"), None);
        let sha256sum =
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f  eicar.com\n";
        assert!(matches!(
            hashlist.parse_line(sha256sum),
            Some(Ok(Object::File(FileHash::Sha256(_))))
        ));
        assert!(matches!(
            hashlist.parse_line("44D88612FEA8A8F36DE82E1278ABB02F\r\n"),
            Some(Ok(Object::File(FileHash::Md5(_))))
        ));
        let bad = hashlist.parse_line("not-a-hash").unwrap().unwrap_err();
        assert!(bad.contains("hexadecimal"), "{bad}");

        let url = ImportFormat::Urllist
            .parse_line("HTTP://Evil.Example/a/../b?c\n")
            .unwrap()
            .unwrap();
        assert_eq!(url.to_string(), "evil.example/b?c");
        assert!(
            ImportFormat::Urllist
                .parse_line("http://")
                .unwrap()
                .is_err()
        );
        let domain = ImportFormat::Domainlist
            .parse_line("Evil.Example.")
            .unwrap()
            .unwrap();
        assert_eq!(domain.to_string(), "evil.example");
        assert!(
            ImportFormat::Domainlist
                .parse_line("not a domain")
                .unwrap()
                .is_err()
        );
    }
}
