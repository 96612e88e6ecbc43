//! `repnet export`: what the knowledge base blocks, for DNS resolvers, hosts files, Suricata
//! and STIX consumers — from a running server (`--server`, `GET /v1/export`) or from a data
//! directory (`--data`, no server running there), to standard output or `--output FILE`
//! (replaced whole, so that a resolver never reads half a zone).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use repnet_server::export::{Filter, Format};

use crate::Outcome;
use crate::config::ClientConfig;

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The format.
    #[arg(long, value_name = "FORMAT", default_value = "rpz",
          value_parser = ["rpz", "domains", "hosts", "suricata", "suricata-domains", "stix"])]
    format: String,
    /// Read the knowledge base in this data directory instead of asking a server (no server
    /// may be running on it).
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    data: Option<PathBuf>,
    #[command(flatten)]
    connection: crate::connect::ServerArgs,
    /// Verdicts to list, comma-separated: untrusted, riskware, trusted [default: untrusted].
    #[arg(long, value_name = "V,…")]
    verdict: Option<String>,
    /// List only entries with one of these categories (phishing, malware, c2, …).
    #[arg(long, value_name = "C,…")]
    category: Option<String>,
    /// List only what these sources decided (feed:urlhaus, local, upstream, engine, …).
    #[arg(long, value_name = "S,…")]
    source: Option<String>,
    /// The least confidence listed, 0 to 100.
    #[arg(long, value_name = "N")]
    min_confidence: Option<i64>,
    /// The RPZ zone's name (its SOA names it; use the name your resolver gives the zone).
    #[arg(long, value_name = "NAME", default_value = "rpz.repnet")]
    zone: String,
    /// Write here (replaced whole when done) instead of to standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) async fn run(args: ExportArgs, config: &ClientConfig) -> anyhow::Result<Outcome> {
    // Checked here first, so that a mistake is named before anything is asked or opened.
    let format: Format = args
        .format
        .parse()
        .map_err(|error| anyhow::anyhow!("--format: {error}"))?;
    let filter = Filter::parse(
        args.verdict.as_deref(),
        args.category.as_deref(),
        args.source.as_deref(),
        args.min_confidence,
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "--{}",
            error.replacen("min_confidence", "min-confidence", 1)
        )
    })?;
    repnet_model::Domain::new(&args.zone).map_err(|error| anyhow::anyhow!("--zone: {error}"))?;

    // Into a temporary file beside the output, renamed over it when complete.
    let (mut out, target): (
        Box<dyn std::io::Write + Send>,
        Option<(tempfile::NamedTempFile, PathBuf)>,
    ) = match &args.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let file = tempfile::Builder::new()
                .prefix(".repnet-export-")
                .tempfile_in(dir)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
            let writer = file.reopen().context("cannot open the temporary file")?;
            (
                Box::new(std::io::BufWriter::new(writer)),
                Some((file, path.clone())),
            )
        }
        None => (Box::new(std::io::BufWriter::new(std::io::stdout())), None),
    };
    let entries = match &args.data {
        Some(data) => {
            // Opening a directory without a knowledge base would create one: refused.
            if !data.join("data.mdb").is_file() {
                anyhow::bail!(
                    "--data {}: no knowledge base there (no data.mdb): give the data directory of a server (`repnet serve --data DIR`)",
                    data.display()
                );
            }
            let store = repnet_store::Store::open(data, &repnet_store::StoreOptions::default())
                .with_context(|| format!("cannot open the knowledge base in {}", data.display()))?;
            let zone = args.zone.clone();
            let summary = tokio::task::spawn_blocking(move || {
                let result = repnet_server::export::write(&store, format, &filter, &zone, &mut out);
                (result, out)
            })
            .await
            .context("the export stopped unexpectedly")?;
            out = summary.1;
            Some(summary.0?.entries)
        }
        None => {
            let mut query = vec![("format", args.format.clone()), ("zone", args.zone.clone())];
            for (name, value) in [
                ("verdict", &args.verdict),
                ("category", &args.category),
                ("source", &args.source),
            ] {
                if let Some(value) = value {
                    query.push((name, value.clone()));
                }
            }
            if let Some(confidence) = args.min_confidence {
                query.push(("min_confidence", confidence.to_string()));
            }
            let client = args.connection.client(config)?;
            let keyed = args.connection.key(config).is_some();
            client.export(&query, &mut out).await.map_err(|error| {
                let refused = matches!(&error, repnet_client::ClientError::Api { status: 401, .. });
                let error = anyhow::Error::new(error);
                if refused && !keyed {
                    error.context(
                        "an export, like replication, needs a licence key registered on the server: `repnet admin keys add KEY` there, then pass --key KEY (or REPNET_KEY)",
                    )
                } else {
                    error
                }
            })?;
            None
        }
    };
    out.flush().context("cannot write the export")?;
    drop(out);
    if let Some((file, path)) = target {
        file.as_file()
            .sync_all()
            .context("cannot write the export")?;
        file.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        match entries {
            Some(entries) => eprintln!("wrote {entries} entries to {}", path.display()),
            None => eprintln!("wrote {}", path.display()),
        }
    }
    Ok(Outcome::Clean)
}
