//! `repnet import`: load feeds in their published formats into a knowledge base — a local
//! data directory, or a running server through its admin API.
//!
//! The parsing is `repnet-feeds`; this module turns flags into its options, shows progress (a
//! bar on a terminal, a log line every few seconds otherwise) and prints the summary:
//! `read N, stored M, skipped K (reasons…)` on stdout, the first bad rows on stderr.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use repnet_client::{Client, ImportBody};
use repnet_feeds::{FeedOptions, Format, Input, Settings};
use repnet_protocol::{ImportParams, ImportReport};
use repnet_store::{Store, StoreOptions};

use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The feeds' format; `auto` recognises it from the content. Zip and gzip files are read
    /// directly. See docs/feeds.md for what each format becomes.
    #[arg(long, default_value = "auto", value_parser = format_parser())]
    format: Format,
    /// Feed files to read, all of one format and one source (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The feed's name: its records are stored as source `feed:<name>` [default: the format].
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Overrides the format's verdict (plain lists are `untrusted` by default).
    #[arg(long)]
    verdict: Option<String>,
    /// The threat name every entry gets (overrides the feed's).
    #[arg(long, value_name = "NAME")]
    threat: Option<String>,
    /// Categories every entry gets besides the feed's (comma-separated: malware,phishing,…).
    #[arg(long = "category", value_delimiter = ',', value_name = "CATEGORY")]
    categories: Vec<String>,
    /// Overrides the format's confidence, 0-100.
    #[arg(long)]
    confidence: Option<i64>,
    /// Tranco: how many of the top domains to take.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    top: u64,
    /// Only add: keep what the source has that these files no longer list. By default an
    /// import replaces the source and retracts what the feed dropped.
    #[arg(long)]
    incremental: bool,
    /// Let a full import of a feed without entries retract everything of its source (by
    /// default an empty feed is refused: it is more often a truncated download).
    #[arg(long)]
    allow_empty: bool,
    /// Read and check the feed, report what would be stored and skipped, and store nothing.
    #[arg(long, conflicts_with = "server")]
    dry_run: bool,
    /// Directory of the knowledge base to import into (no server may be running on it; use
    /// --server for that).
    #[arg(
        long,
        env = "REPNET_DATA",
        default_value = "./repnet-data",
        value_name = "DIR",
        conflicts_with = "server"
    )]
    data: PathBuf,
    /// Import through a running server's admin API instead (the file is uploaded).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// File holding the server's admin token (or set REPNET_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE", requires = "server")]
    admin_token_file: Option<PathBuf>,
    /// Memory for sorting the import, in MiB; beyond it, sorted runs go to temporary files in
    /// the data directory.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    buffer_mib: usize,
    /// Refuse a compressed feed (gzip, zip) that expands to more than N times its size once
    /// past 64 MiB — a decompression bomb; real feeds compress 2 to 20 times. Through
    /// --server, the server's max_expansion_ratio applies.
    #[arg(
        long,
        default_value_t = 200,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(2..=1_000_000),
        conflicts_with = "server"
    )]
    max_expansion_ratio: u64,
    /// Refuse a compressed feed that expands to more than this many GiB. Through --server,
    /// the server's max_decompressed_bytes applies.
    #[arg(
        long,
        default_value_t = 256,
        value_name = "GIB",
        value_parser = clap::value_parser!(u64).range(1..=1_048_576),
        conflicts_with = "server"
    )]
    max_decompressed_gib: u64,
}

fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    let names: Vec<&'static str> = std::iter::once(Format::Auto)
        .chain(Format::CONCRETE)
        .map(Format::name)
        .collect();
    PossibleValuesParser::new(names)
        .try_map(|name| Format::parse(&name).ok_or_else(|| format!("unknown format {name:?}")))
}

impl ImportArgs {
    fn settings(&self) -> Settings<'_> {
        Settings {
            source: self.source.as_deref(),
            verdict: self.verdict.as_deref(),
            threat: self.threat.as_deref(),
            categories: self.categories.iter().map(String::as_str).collect(),
            confidence: self.confidence,
        }
    }

    /// The import's options, checked.
    fn options(&self, temp_dir: PathBuf) -> anyhow::Result<FeedOptions> {
        let mut options = FeedOptions::new(repnet_store::now(), temp_dir);
        options
            .apply(&self.settings())
            .map_err(|error| anyhow::anyhow!("--{error}"))?;
        options.top = self.top;
        options.incremental = self.incremental;
        options.allow_empty = self.allow_empty;
        options.buffer_bytes = self.buffer_mib.saturating_mul(1 << 20);
        options.max_expansion_ratio = self.max_expansion_ratio;
        options.max_decompressed_bytes = self.max_decompressed_gib.saturating_mul(1 << 30);
        Ok(options)
    }

    fn inputs(&self) -> anyhow::Result<Vec<Input>> {
        let mut stdin = false;
        self.files
            .iter()
            .map(|path| {
                if path == Path::new("-") {
                    if std::mem::replace(&mut stdin, true) {
                        anyhow::bail!("standard input (-) can be read only once");
                    }
                    return Ok(Input::Stdin);
                }
                if path.is_dir() {
                    anyhow::bail!(
                        "{} is a directory: pass the feed files in it",
                        path.display()
                    );
                }
                if !path.is_file() {
                    anyhow::bail!("{}: no such file", path.display());
                }
                Ok(Input::Path(path.clone()))
            })
            .collect()
    }
}

pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<Outcome> {
    if args.buffer_mib == 0 {
        anyhow::bail!("--buffer-mib must be at least 1");
    }
    // Checked here even for --server, so that a mistake is caught before an upload.
    let options = args.options(args.data.clone())?;
    let inputs = args.inputs()?;
    if args.dry_run {
        let format = args.format;
        let temp_dir = std::env::temp_dir();
        let report = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let progress = Progress::new();
            let mut options = options;
            options.temp_dir = temp_dir;
            let result = repnet_feeds::check(&inputs, format, &options, &progress);
            progress.finish();
            result.map(|report| report.to_wire(started.elapsed().as_secs_f64()))
        })
        .await
        .map_err(|error| anyhow::anyhow!("the check stopped unexpectedly: {error}"))??;
        print_report(&report, None, false);
        return Ok(Outcome::Clean);
    }
    let (report, into) = match &args.server {
        Some(server) => (import_remote(&args, server, &inputs).await?, server.clone()),
        None => {
            let store_options = StoreOptions {
                // A one-off import does not look anything up: no negative-lookup filter.
                negative_filter: false,
                ..StoreOptions::default()
            };
            let store = Store::open(&args.data, &store_options).with_context(|| {
                format!("cannot open the knowledge base in {}", args.data.display())
            })?;
            let format = args.format;
            let report = tokio::task::spawn_blocking(move || {
                import_local(&store, &inputs, format, &options)
            })
            .await
            .map_err(|error| anyhow::anyhow!("the import stopped unexpectedly: {error}"))??;
            (report, args.data.display().to_string())
        }
    };
    print_report(&report, Some(&into), args.server.is_none());
    Ok(Outcome::Clean)
}

fn import_local(
    store: &Store,
    inputs: &[Input],
    format: Format,
    options: &FeedOptions,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let progress = Progress::new();
    let result = repnet_feeds::import(store, inputs, format, options, &progress);
    progress.finish();
    let report = result.map_err(|error| match error {
        repnet_feeds::FeedError::Store(error) => anyhow::Error::new(error)
            .context("cannot write to the knowledge base; nothing of this import was stored"),
        error => anyhow::Error::new(error),
    })?;
    Ok(report.to_wire(started.elapsed().as_secs_f64()))
}

async fn import_remote(
    args: &ImportArgs,
    server: &str,
    inputs: &[Input],
) -> anyhow::Result<ImportReport> {
    let [input] = inputs else {
        anyhow::bail!(
            "--server imports one file at a time (each upload replaces the source): combine the files first, or import them into --data"
        );
    };
    let token = crate::admin_token(args.admin_token_file.as_deref())?;
    let client = Client::new(server)?.with_admin_token(token);
    let settings = args.settings();
    let params = ImportParams {
        format: Some(args.format.name().to_owned()),
        source: settings.source.map(str::to_owned),
        verdict: settings.verdict.map(str::to_owned),
        threat: settings.threat.map(str::to_owned),
        category: (!settings.categories.is_empty()).then(|| settings.categories.join(",")),
        confidence: settings.confidence,
        top: Some(args.top),
        incremental: Some(args.incremental),
        allow_empty: Some(args.allow_empty),
    };
    // Standard input is spooled to a temporary file first: memory stays constant whatever
    // its size, and the upload can say how long it is.
    let spooled;
    let path = match input {
        Input::Stdin => {
            spooled = tokio::task::spawn_blocking(|| -> anyhow::Result<tempfile::TempPath> {
                let mut file = tempfile::NamedTempFile::new()
                    .context("cannot create a temporary file for standard input")?;
                std::io::copy(&mut std::io::stdin().lock(), &mut file)
                    .context("cannot read standard input into a temporary file")?;
                Ok(file.into_temp_path())
            })
            .await??;
            spooled.to_path_buf()
        }
        Input::Path(path) | Input::Named { path, .. } => path.clone(),
    };
    let body = ImportBody::File(path);
    eprintln!("uploading {input} to {server} …");
    Ok(client.import_feed(&params, body).await?)
}

/// `into` is where it was imported; `None` for a dry run.
fn print_report(report: &ImportReport, into: Option<&str>, local: bool) {
    for example in &report.examples {
        eprintln!("skipped {example}");
    }
    let shown = report.examples.len() as u64;
    if report.skipped > shown {
        eprintln!("… and {} more bad rows", report.skipped - shown);
    }
    println!("{}", report.summary());
    let rate = report.read as f64 / report.seconds.max(1e-9);
    let memory = match peak_memory_bytes().filter(|_| local) {
        Some(bytes) => format!("; peak memory {} MiB", bytes >> 20),
        None => String::new(),
    };
    match into {
        Some(into) => eprintln!(
            "{} into {into} as {} in {:.1} s ({rate:.0} rows/s; {} keys written, {} records retracted{memory})",
            report.format, report.source, report.seconds, report.keys_written, report.retracted,
        ),
        None => eprintln!(
            "{} checked as {} in {:.1} s ({rate:.0} rows/s); dry run: nothing was stored",
            report.format, report.source, report.seconds,
        ),
    }
}

/// The most memory this process has had resident (Linux's VmHWM), if the system says.
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Progress on stderr: a bar on a terminal, otherwise a line every [`Progress::LOG_EVERY`].
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    rows: std::sync::atomic::AtomicU64,
    last_log: Mutex<Instant>,
}

impl Progress {
    const LOG_EVERY: Duration = Duration::from_secs(5);

    fn new() -> Progress {
        use std::io::IsTerminal as _;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:25}] {bytes}/{total_bytes} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message("reading");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            rows: std::sync::atomic::AtomicU64::new(0),
            last_log: Mutex::new(Instant::now()),
        }
    }

    fn rows_per_second(&self, rows: u64) -> f64 {
        rows as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl repnet_feeds::Progress for Progress {
    fn rows(&self, rows: u64) {
        self.rows.store(rows, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{rows} rows, {:.0} rows/s",
                self.rows_per_second(rows)
            ));
        }
    }

    fn bytes(&self, read: u64, total: Option<u64>) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total.unwrap_or(0).max(read));
                bar.set_position(read);
            }
            None => {
                let Ok(mut last) = self.last_log.lock() else {
                    return;
                };
                if last.elapsed() < Self::LOG_EVERY {
                    return;
                }
                *last = Instant::now();
                let rows = self.rows.load(std::sync::atomic::Ordering::Relaxed);
                let of = total.map_or_else(String::new, |total| {
                    format!(" of {:.1} MiB", total as f64 / 1048576.0)
                });
                eprintln!(
                    "import: {rows} rows ({:.0} rows/s), {:.1} MiB{of} read",
                    self.rows_per_second(rows),
                    read as f64 / 1048576.0,
                );
            }
        }
    }

    fn writing(&self) {
        match &self.bar {
            Some(bar) => bar.set_message("writing"),
            None => eprintln!("import: writing to the knowledge base"),
        }
    }
}
