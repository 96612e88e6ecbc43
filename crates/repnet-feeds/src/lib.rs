//! Threat-intelligence and known-file feeds in their real formats, into the knowledge base.
//!
//! Each format's parser turns a feed into [`Entry`]s and reports bad rows by line number
//! without stopping; the driver ([`import`]) opens files (plain, gzip or zip, or standard
//! input), recognises the format when asked (`auto`), and feeds everything of one import to
//! the store's bulk import as one source, in one transaction. A full import *replaces* the
//! source: what the new feed no longer lists is retracted from that source.
//!
//! This crate reads third-party formats, JSON ones (STIX, MISP) included; the JSON of
//! repnet's own API stays in `repnet-protocol`.

mod detect;
mod formats;
mod input;
mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use repnet_model::{
    Categories, Confidence, FeedName, FileHashes, Object, Source, SourceRecord, ThreatName,
    Timestamp, Verdict,
};
use repnet_protocol::ImportReport;
use repnet_store::{BulkImport, Change, Store, StoreError};

pub use crate::input::Input;

/// The formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Recognise the format from the content.
    Auto,
    Urlhaus,
    Malwarebazaar,
    Threatfox,
    Phishtank,
    Openphish,
    Nsrl,
    Clamav,
    MispWarninglist,
    Stix,
    Tranco,
    Hashlist,
    Urllist,
    Domainlist,
}

impl Format {
    /// Every concrete format, in the order `auto` tries them.
    pub const CONCRETE: [Format; 13] = [
        Format::Nsrl,
        Format::Stix,
        Format::MispWarninglist,
        Format::Urlhaus,
        Format::Malwarebazaar,
        Format::Threatfox,
        Format::Phishtank,
        Format::Clamav,
        Format::Tranco,
        Format::Hashlist,
        Format::Urllist,
        Format::Domainlist,
        Format::Openphish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Urlhaus => "urlhaus",
            Format::Malwarebazaar => "malwarebazaar",
            Format::Threatfox => "threatfox",
            Format::Phishtank => "phishtank",
            Format::Openphish => "openphish",
            Format::Nsrl => "nsrl",
            Format::Clamav => "clamav",
            Format::MispWarninglist => "misp-warninglist",
            Format::Stix => "stix",
            Format::Tranco => "tranco",
            Format::Hashlist => "hashlist",
            Format::Urllist => "urllist",
            Format::Domainlist => "domainlist",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        std::iter::once(Format::Auto)
            .chain(Format::CONCRETE)
            .find(|format| format.name() == text)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an import is told besides the feed itself.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// The records' source is `feed:<source>`; the format's name by default.
    pub source: Option<FeedName>,
    /// Overrides the format's verdict (for plain lists: `untrusted` by default).
    pub verdict: Option<Verdict>,
    /// Overrides the threat name the feed gives (plain lists have none otherwise).
    pub threat: Option<ThreatName>,
    /// Added to the categories the feed gives.
    pub categories: Categories,
    /// Overrides the format's confidence.
    pub confidence: Option<Confidence>,
    /// Tranco: how many of the top domains to take.
    pub top: u64,
    /// Only add: do not retract what the feed no longer lists.
    pub incremental: bool,
    /// Let a full import of a feed without a single entry retract everything of its source.
    /// Off by default: an empty file is far more often a truncated download than an emptied
    /// feed.
    pub allow_empty: bool,
    /// Memory for sorting the import; beyond it, sorted runs go to temporary files.
    pub buffer_bytes: usize,
    /// The import's time: every record's last sighting.
    pub now: Timestamp,
    /// Where temporary files go (extracted archives): the data directory.
    pub temp_dir: PathBuf,
    /// The most bytes a compressed feed (gzip, zip) may expand to.
    pub max_decompressed_bytes: u64,
    /// The most a compressed feed may expand, as a multiple of its compressed size (checked
    /// once it has expanded past 64 MiB): feeds compress 2 to 20 times; a file of zeros a
    /// thousand.
    pub max_expansion_ratio: u64,
    /// Stops the import from another thread.
    pub cancel: Cancel,
}

/// Stops an import from another thread — the server's shutdown, a client that went away —
/// at its next read (or, in SQLite, within a fraction of a second). Clones share the flag; a
/// [`child`](Cancel::child) is cancelled with its parent or on its own.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A flag of its own that also reads this one.
    pub fn child(&self) -> Cancel {
        Cancel {
            own: Arc::default(),
            parent: Some(Arc::clone(&self.own)),
        }
    }

    pub fn cancel(&self) {
        self.own.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|parent| parent.load(Ordering::Relaxed))
    }
}

impl FeedOptions {
    pub fn new(now: Timestamp, temp_dir: PathBuf) -> FeedOptions {
        FeedOptions {
            source: None,
            verdict: None,
            threat: None,
            categories: Categories::EMPTY,
            confidence: None,
            top: 10_000,
            incremental: false,
            allow_empty: false,
            buffer_bytes: 64 << 20,
            now,
            temp_dir,
            max_decompressed_bytes: 256 << 30,
            max_expansion_ratio: 200,
            cancel: Cancel::new(),
        }
    }
}

/// An import's settings as text — from the command line, the admin API's query or the
/// server's configuration — before they are checked.
#[derive(Debug, Clone, Default)]
pub struct Settings<'a> {
    pub source: Option<&'a str>,
    pub verdict: Option<&'a str>,
    pub threat: Option<&'a str>,
    pub categories: Vec<&'a str>,
    pub confidence: Option<i64>,
}

/// A setting that cannot be used: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingError {
    /// `source`, `verdict`, `threat`, `category` or `confidence`.
    pub field: &'static str,
    pub message: String,
}

impl FeedOptions {
    /// Checks `settings` and applies them; on error nothing is applied.
    pub fn apply(&mut self, settings: &Settings<'_>) -> Result<(), SettingError> {
        fn invalid<E: std::fmt::Display>(field: &'static str) -> impl Fn(E) -> SettingError {
            move |error| SettingError {
                field,
                message: error.to_string(),
            }
        }
        let source = settings
            .source
            .map(FeedName::new)
            .transpose()
            .map_err(invalid("source"))?;
        let verdict = match settings.verdict {
            None => None,
            Some(text) => match text.parse::<Verdict>().map_err(invalid("verdict"))? {
                Verdict::Unknown => {
                    return Err(SettingError {
                        field: "verdict",
                        message: "a feed entry is trusted, riskware or untrusted, not unknown"
                            .to_owned(),
                    });
                }
                verdict => Some(verdict),
            },
        };
        let threat = settings
            .threat
            .map(ThreatName::new)
            .transpose()
            .map_err(invalid("threat"))?;
        let categories = settings
            .categories
            .iter()
            .map(|text| text.trim().parse::<repnet_model::Category>())
            .collect::<Result<Categories, _>>()
            .map_err(invalid("category"))?;
        let confidence = settings
            .confidence
            .map(Confidence::new)
            .transpose()
            .map_err(invalid("confidence"))?;
        self.source = source.or(self.source.take());
        self.verdict = verdict.or(self.verdict);
        self.threat = threat.or(self.threat.take());
        self.categories = self.categories.union(categories);
        self.confidence = confidence.or(self.confidence);
        Ok(())
    }
}

/// One thing a feed says.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub object: Object,
    /// For files: the other hashes the feed gives.
    pub hashes: FileHashes,
    pub verdict: Verdict,
    pub threat: Option<ThreatName>,
    pub categories: Categories,
    pub confidence: Confidence,
    /// When the feed first saw it, if it says.
    pub first_seen: Option<Timestamp>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Data rows read (comments, headers and blank lines are not rows).
    pub read: u64,
    /// Entries stored.
    pub stored: u64,
    /// Rows skipped.
    pub skipped: u64,
    /// Skipped rows by kind of problem.
    pub reasons: BTreeMap<String, u64>,
    /// The first bad rows, as `file:line: reason`.
    pub examples: Vec<String>,
    /// Keys written to the knowledge base.
    pub keys_written: u64,
    /// Records of the source that the feed no longer lists and that were retracted.
    pub retracted: u64,
    /// The format read (useful after `auto`).
    pub format: Option<Format>,
    /// The source the records were stored as.
    pub source: Option<String>,
}

impl Report {
    /// Bad rows shown in full; beyond this only counted.
    pub const EXAMPLES: usize = 20;

    /// `read N, stored M, skipped K (reason: n, …)`.
    pub fn summary(&self) -> String {
        self.to_wire(0.0).summary()
    }

    /// The report as the admin API sends it; `seconds` is how long the import took.
    pub fn to_wire(&self, seconds: f64) -> ImportReport {
        ImportReport {
            format: self.format.map(Format::name).unwrap_or("").to_owned(),
            source: self.source.clone().unwrap_or_default(),
            read: self.read,
            stored: self.stored,
            skipped: self.skipped,
            reasons: self.reasons.clone(),
            examples: self.examples.clone(),
            retracted: self.retracted,
            keys_written: self.keys_written,
            seconds,
        }
    }
}

/// Why an import failed as a whole (bad rows do not fail it).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read {path}: {source}; nothing was changed")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error(
        "the feed has no rows: nothing was changed, {feed}'s records are kept (an empty file is more often a failed download; if the feed really is empty now, import it again with --allow-empty, allow_empty=true in the admin API, or allow_empty = true in its [[feeds]] table)"
    )]
    Empty { feed: String },
    /// Rows were read and not one was an entry: most likely the wrong `--format`. Never an
    /// empty feed: that would retract everything the source had.
    #[error("{0}")]
    NothingValid(Box<NothingValid>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// [`Cancel::cancel`] was called.
    #[error(
        "the import was cancelled (the server is stopping, or its client went away): nothing was changed"
    )]
    Cancelled,
}

impl FeedError {
    /// Whether the feed itself is at fault (unreadable, unrecognised, empty) rather than the
    /// knowledge base or a cancellation.
    pub fn is_feed_error(&self) -> bool {
        !matches!(self, FeedError::Store(_) | FeedError::Cancelled)
    }
}

/// Receives what a parser finds: entries into the bulk import, bad rows into the report.
pub(crate) struct Sink<'a> {
    /// `None` for a dry run.
    import: Option<&'a mut BulkImport>,
    options: &'a FeedOptions,
    source: Source,
    report: &'a mut Report,
    /// The file being read, for messages.
    path: String,
    /// Bytes of input read so far, for progress.
    pub(crate) progress: &'a dyn Progress,
}

impl Sink<'_> {
    /// A data row was read.
    pub(crate) fn row(&mut self) {
        self.report.read += 1;
        if self.report.read.is_multiple_of(65_536) {
            self.progress.rows(self.report.read);
        }
    }

    /// Stores an entry, applying the command line's overrides.
    pub(crate) fn entry(&mut self, entry: Entry) -> Result<(), FeedError> {
        let options = self.options;
        let mut record = SourceRecord::new(
            self.source.clone(),
            options.verdict.unwrap_or(entry.verdict),
            options.confidence.unwrap_or(entry.confidence),
            options.now,
        );
        record.threat = options.threat.clone().or(entry.threat);
        record.categories = entry.categories.union(options.categories);
        if let Some(first_seen) = entry.first_seen {
            record.first_seen = first_seen.min(options.now);
        }
        if let Some(import) = self.import.as_deref_mut() {
            import.add(&Change::Put {
                object: entry.object,
                hashes: entry.hashes,
                record,
                comment: None,
            })?;
        }
        self.report.stored += 1;
        Ok(())
    }

    /// Stores a further entry of a row already counted (a legacy NSRL row names its file by
    /// SHA-1 and by MD5; a STIX indicator may name several objects).
    pub(crate) fn also(&mut self, entry: Entry) -> Result<(), FeedError> {
        self.entry(entry)?;
        self.report.stored -= 1;
        Ok(())
    }

    /// Tranco: how many of the top domains to take.
    pub(crate) fn top(&self) -> u64 {
        self.options.top
    }

    /// Reports a bad row: `kind` groups it in the summary, `detail` says what was wrong.
    pub(crate) fn bad(&mut self, line: u64, kind: &str, detail: impl std::fmt::Display) {
        self.report.skipped += 1;
        *self.report.reasons.entry(kind.to_owned()).or_default() += 1;
        if self.report.examples.len() < Report::EXAMPLES {
            self.report
                .examples
                .push(format!("{}:{line}: {detail}", self.path));
        }
    }
}

/// What [`FeedError::NothingValid`] says.
#[derive(Debug, thiserror::Error)]
#[error(
    "{rows} read as {format} and not one was a valid entry ({reasons}){examples}{hint}: nothing was changed, {feed}'s records are kept"
)]
pub struct NothingValid {
    pub feed: String,
    pub format: Format,
    /// `1 row`, `4 rows`.
    pub rows: String,
    /// `invalid hash: 4, …`.
    pub reasons: String,
    /// `; the first: FILE:LINE: reason; …`.
    pub examples: String,
    /// `; the file looks like urlhaus: try --format urlhaus`, or `; check --format`.
    pub hint: String,
}

/// The error for a feed of which no row was valid, with the counts, the first reasons, and,
/// when the format was given and the first file looks like another, that one.
fn nothing_valid(
    report: &Report,
    read_as: Format,
    source: &Source,
    asked: Format,
    inputs: &[Input],
    options: &FeedOptions,
) -> FeedError {
    let reasons: Vec<String> = report
        .reasons
        .iter()
        .map(|(reason, count)| format!("{reason}: {count}"))
        .collect();
    let examples = match report.examples.as_slice() {
        [] => String::new(),
        first => format!(
            "; the first: {}",
            first.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ),
    };
    let detected = match (asked, inputs.first()) {
        (Format::Auto, _) | (_, None | Some(Input::Stdin)) => None,
        (_, Some(input)) => input::open(input, options)
            .ok()
            .and_then(|mut opened| detect::detect(&mut opened).ok()),
    };
    let hint = match detected {
        Some(other) if other != read_as => {
            format!("; the file looks like {other}: try --format {other} (or --format auto)")
        }
        _ => "; check --format".to_owned(),
    };
    FeedError::NothingValid(Box::new(NothingValid {
        feed: source.to_string(),
        format: read_as,
        rows: match report.read {
            1 => "1 row".to_owned(),
            read => format!("{read} rows"),
        },
        reasons: reasons.join(", "),
        examples,
        hint,
    }))
}

/// Where an import reports its progress.
pub trait Progress: Sync {
    /// Rows read so far.
    fn rows(&self, _rows: u64) {}
    /// Bytes of the current file read so far, and its size when known.
    fn bytes(&self, _read: u64, _total: Option<u64>) {}
    /// The import has read everything and is writing.
    fn writing(&self) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Imports `inputs` (all of one format, as one source) into `store`, in one transaction.
/// Blocking: call it from a thread or `spawn_blocking`.
pub fn import(
    store: &Store,
    inputs: &[Input],
    format: Format,
    options: &FeedOptions,
    progress: &dyn Progress,
) -> Result<Report, FeedError> {
    read(Some(store), inputs, format, options, progress)
}

/// Reads `inputs` as [`import`] would, and reports what it would store, without a store:
/// a dry run, to check a feed before importing it.
pub fn check(
    inputs: &[Input],
    format: Format,
    options: &FeedOptions,
    progress: &dyn Progress,
) -> Result<Report, FeedError> {
    read(None, inputs, format, options, progress)
}

fn read(
    store: Option<&Store>,
    inputs: &[Input],
    format: Format,
    options: &FeedOptions,
    progress: &dyn Progress,
) -> Result<Report, FeedError> {
    // Whatever failed once the import was cancelled (a read, SQLite) failed for that.
    let cancelled = |error: FeedError| match options.cancel.is_cancelled() {
        true => FeedError::Cancelled,
        false => error,
    };
    let mut report = Report::default();
    // The format and source, fixed by the first input; the bulk import, with a store.
    let mut chosen: Option<(Format, Source)> = None;
    let mut bulk: Option<BulkImport> = None;
    for input in inputs {
        let mut opened = input::open(input, options).map_err(cancelled)?;
        let detected = match format {
            Format::Auto => detect::detect(&mut opened).map_err(cancelled)?,
            concrete => concrete,
        };
        let (format, source) = match &chosen {
            Some((format, source)) => {
                if *format != detected {
                    return Err(FeedError::Format {
                        path: input.to_string(),
                        message: format!(
                            "is {detected}, but the files before it are {format}: import each format on its own (one source per import)"
                        ),
                    });
                }
                (*format, source.clone())
            }
            None => {
                let name = match &options.source {
                    Some(name) => name.clone(),
                    None => FeedName::new(detected.name()).map_err(|e| FeedError::Format {
                        path: input.to_string(),
                        message: e.to_string(),
                    })?,
                };
                let source = Source::Feed(name);
                if let Some(store) = store {
                    let mut import = store.bulk_import_with_buffer(options.buffer_bytes)?;
                    if !options.incremental {
                        import.replace_source(source.clone());
                    }
                    bulk = Some(import);
                }
                chosen = Some((detected, source.clone()));
                (detected, source)
            }
        };
        report.format = Some(format);
        report.source = Some(source.to_string());
        let mut sink = Sink {
            import: bulk.as_mut(),
            options,
            source,
            report: &mut report,
            path: input.to_string(),
            progress,
        };
        formats::parse(format, &mut opened, &mut sink).map_err(cancelled)?;
    }
    if options.cancel.is_cancelled() {
        return Err(FeedError::Cancelled);
    }
    progress.rows(report.read);
    if let Some((chosen_format, source)) = &chosen {
        if report.read > 0 && report.stored == 0 {
            return Err(nothing_valid(
                &report,
                *chosen_format,
                source,
                format,
                inputs,
                options,
            ));
        }
        if report.read == 0 && !options.incremental && !options.allow_empty {
            return Err(FeedError::Empty {
                feed: source.to_string(),
            });
        }
    }
    if let Some(bulk) = bulk {
        progress.writing();
        let summary = bulk.finish()?;
        report.keys_written = summary.keys_written;
        report.retracted = summary.retracted;
    }
    Ok(report)
}
