//! `repnet lookup`: classify each argument, hash the ones that are files, ask the server in
//! batches (or, with `--private`, by hash prefix only), and print a table or JSON. The client's
//! participation decides the rest: `off` answers from the local cache without any traffic,
//! `extended` also reports first sightings of local files and detections.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use repnet_client::{Client, PrivateTarget};
use repnet_model::{CanonicalUrl, Domain, FileHash, ObjectKind, Sha256, canonical_ip};
use repnet_protocol::{
    LookupItem, LookupOutput, PrivateLookupOutput, Reputation, StatisticsEvent, Verdict,
};

use crate::Outcome;
use crate::participation::{self, ClientFiles, Mode};

#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    /// What to look up: a file (hashed here, only its SHA-256 is sent), an MD5/SHA-1/SHA-256
    /// hash, a URL (a scheme is optional when there is a path), a domain or an IP address.
    #[arg(required = true, value_name = "FILE|HASH|URL|DOMAIN|IP")]
    targets: Vec<String>,
    /// The repnet server to ask [default: the client configuration's, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "REPNET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Include every contributing source record (JSON output).
    #[arg(long)]
    explain: bool,
    /// Privacy mode: send only 4-byte prefixes of the hashes of the URLs' expressions and of
    /// the files' SHA-256, and decide here from the full hashes that come back. The server
    /// never sees what was looked up.
    #[arg(long)]
    private: bool,
    /// The organisation's licence key, for servers that require one (a private network).
    #[arg(long, env = "REPNET_KEY", value_name = "KEY", hide_env_values = true)]
    key: Option<String>,
    /// CA certificates (PEM) to trust for an https:// server, besides the system's.
    #[arg(long, env = "REPNET_CA", value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// How one argument is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    input: String,
    kind: ObjectKind,
    value: String,
    /// For a local file: its path and size (a first sighting, in extended participation).
    file: Option<(String, u64)>,
}

/// Classifies `argument` by shape. An existing file wins over everything (a file may well be
/// named like a hash), then hashes, IP addresses, URLs (a scheme, or a `/`), and domains.
fn classify(argument: &str) -> anyhow::Result<Target> {
    let target = |kind, value: String| Target {
        input: argument.to_owned(),
        kind,
        value,
        file: None,
    };
    let path = Path::new(argument);
    if path.is_dir() {
        anyhow::bail!("{argument} is a directory: pass the files in it (e.g. {argument}/*)");
    }
    if path.is_file() {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        return Ok(Target {
            file: Some((full.display().to_string(), size)),
            ..target(ObjectKind::File, hash_file(path)?.to_string())
        });
    }
    let looks_like_hash =
        matches!(argument.len(), 32 | 40 | 64) && argument.bytes().all(|b| b.is_ascii_hexdigit());
    if looks_like_hash {
        let hash = FileHash::from_hex(argument)?;
        return Ok(target(ObjectKind::File, hash.to_string()));
    }
    if let Ok(ip) = canonical_ip(argument) {
        return Ok(target(ObjectKind::Ip, ip.to_string()));
    }
    if argument.contains("://") || argument.contains('/') {
        let url = CanonicalUrl::parse(argument.as_bytes())
            .with_context(|| format!("{argument} is not a usable URL"))?;
        return Ok(target(ObjectKind::Url, url.to_string()));
    }
    let domain = Domain::new(argument).with_context(|| {
        format!("{argument} is not an existing file, a hash (32, 40 or 64 hex characters), an IP address, a URL or a domain")
    })?;
    Ok(target(ObjectKind::Domain, domain.to_string()))
}

/// The SHA-256 of a file, read in large blocks so that big files stream.
fn hash_file(path: &Path) -> anyhow::Result<Sha256> {
    use sha2::Digest as _;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(Sha256(hasher.finalize().into()))
}

/// What privacy mode can look up for a target: files by SHA-256 only.
fn private_target(target: &Target) -> anyhow::Result<PrivateTarget> {
    let url = |text: String| CanonicalUrl::parse(text.as_bytes()).map_err(anyhow::Error::from);
    Ok(match target.kind {
        ObjectKind::File => match FileHash::from_hex(&target.value)? {
            FileHash::Sha256(hash) => PrivateTarget::File(hash),
            _ => anyhow::bail!(
                "{}: privacy mode looks files up by SHA-256 only: give the file itself or its SHA-256",
                target.input
            ),
        },
        ObjectKind::Url => PrivateTarget::Url(url(target.value.clone())?),
        ObjectKind::Domain => PrivateTarget::Host(url(format!("http://{}/", target.value))?),
        ObjectKind::Ip => {
            PrivateTarget::Host(url(match target.value.parse::<std::net::IpAddr>()? {
                std::net::IpAddr::V6(ip) => format!("http://[{ip}]/"),
                ip => format!("http://{ip}/"),
            })?)
        }
        ObjectKind::Certificate => anyhow::bail!(
            "{}: privacy mode does not look up certificates",
            target.input
        ),
    })
}

/// One row of the table.
struct Row {
    input: String,
    kind: ObjectKind,
    verdict: Verdict,
    threat: Option<String>,
    source: Option<String>,
    confidence: u8,
    matched: Option<String>,
}

pub(crate) async fn run(args: LookupArgs, files: &ClientFiles) -> anyhow::Result<Outcome> {
    let targets = args
        .targets
        .iter()
        .map(|argument| classify(argument))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = files.load()?;
    if config.participation == Mode::Off {
        return from_cache(files, &targets, args.format);
    }
    let server = participation::server_url(&config, args.server.clone());
    let mut client = Client::with_ca(&server, args.ca.as_deref())?;
    if let Some(key) = args.key.as_ref().or(config.key.as_ref()) {
        client = client.with_licence_key(key.trim());
    }
    let rows = if args.private {
        private_lookup(&client, &targets, args.format).await?
    } else {
        let (rows, reputations) = lookup(&client, &targets, args.format, args.explain).await?;
        // For `off` mode later. A cache that cannot be written costs nothing but that.
        if let Ok(mut cache) = files.cache() {
            for (target, reputation) in targets.iter().zip(&reputations) {
                cache.put(target.kind.as_str(), &target.value, reputation);
            }
            let _ = files.save_cache(&cache);
        }
        rows
    };
    let events = statistics(&targets, &rows);
    participation::queue_and_send(files, &mut config, &client, events).await?;
    if args.format == Format::Table {
        print!("{}", table(&rows));
    }
    let untrusted = rows.iter().any(|row| row.verdict == Verdict::Untrusted);
    Ok(if untrusted {
        Outcome::UntrustedFound
    } else {
        Outcome::Clean
    })
}

/// What extended participation reports about a lookup: first sightings of local files, and
/// detections (untrusted answers).
fn statistics(targets: &[Target], rows: &[Row]) -> Vec<StatisticsEvent> {
    let mut events = Vec::new();
    for (target, row) in targets.iter().zip(rows) {
        let event = |kind: &str| StatisticsEvent {
            kind: kind.to_owned(),
            file: (target.kind == ObjectKind::File && target.value.len() == 64)
                .then(|| target.value.clone()),
            url: (target.kind == ObjectKind::Url).then(|| target.value.clone()),
            size: target.file.as_ref().map(|(_, size)| *size),
            signer: None,
            name: target.file.as_ref().map(|(path, _)| path.clone()),
            threat: None,
            comment: None,
        };
        if target.file.is_some() {
            events.push(event("sighting"));
        }
        let reportable = (target.kind == ObjectKind::File && target.value.len() == 64)
            || target.kind == ObjectKind::Url;
        if row.verdict == Verdict::Untrusted && reportable {
            events.push(StatisticsEvent {
                threat: row.threat.clone(),
                ..event("detection")
            });
        }
    }
    events
}

/// `off` mode: answers from the local cache, `unknown` for the rest; nothing is sent.
fn from_cache(files: &ClientFiles, targets: &[Target], format: Format) -> anyhow::Result<Outcome> {
    eprintln!(
        "repnet: participation is off: answers come from the local cache only, nothing is sent (`repnet participation basic` asks the server again)"
    );
    let cache = files.cache()?;
    let ttl = repnet_model::TtlPolicy {
        known: 3600,
        unknown: 300,
    };
    let mut rows = Vec::new();
    let mut output = Vec::new();
    for target in targets {
        let reputation = match cache.get(target.kind.as_str(), &target.value) {
            Some(reputation) => reputation.clone(),
            None => {
                let object = repnet_model::Object::parse(target.kind, &target.value)?;
                Reputation::from_model(&repnet_model::Reputation::unknown(object, &ttl), false)
            }
        };
        rows.push(Row {
            input: target.input.clone(),
            kind: target.kind,
            verdict: reputation.verdict,
            threat: reputation.threat.clone(),
            source: reputation.source.clone(),
            confidence: reputation.confidence,
            matched: reputation.matched.clone().flatten(),
        });
        output.push(LookupOutput {
            input: target.input.clone(),
            reputation,
        });
    }
    match format {
        Format::Json => println!("{}", repnet_protocol::to_pretty_json(&output)),
        Format::Table => print!("{}", table(&rows)),
    }
    Ok(
        if rows.iter().any(|row| row.verdict == Verdict::Untrusted) {
            Outcome::UntrustedFound
        } else {
            Outcome::Clean
        },
    )
}

async fn lookup(
    client: &Client,
    targets: &[Target],
    format: Format,
    explain: bool,
) -> anyhow::Result<(Vec<Row>, Vec<Reputation>)> {
    let items: Vec<LookupItem<'_>> = targets
        .iter()
        .map(|target| LookupItem::new(target.kind, target.value.as_str()))
        .collect();
    let results = client.lookup(&items, explain).await?;
    if format == Format::Json {
        let output: Vec<LookupOutput> = targets
            .iter()
            .zip(&results)
            .map(|(target, reputation)| LookupOutput {
                input: target.input.clone(),
                reputation: reputation.clone(),
            })
            .collect();
        println!("{}", repnet_protocol::to_pretty_json(&output));
    }
    let rows = targets
        .iter()
        .zip(&results)
        .map(|(target, result)| Row {
            input: target.input.clone(),
            kind: target.kind,
            verdict: result.verdict,
            threat: result.threat.clone(),
            source: result.source.clone(),
            confidence: result.confidence,
            matched: result.matched.clone().flatten(),
        })
        .collect();
    Ok((rows, results))
}

async fn private_lookup(
    client: &Client,
    targets: &[Target],
    format: Format,
) -> anyhow::Result<Vec<Row>> {
    let private: Vec<PrivateTarget> = targets
        .iter()
        .map(private_target)
        .collect::<anyhow::Result<_>>()?;
    let answers = client.lookup_private(&private).await?;
    let rows: Vec<Row> = targets
        .iter()
        .zip(answers)
        .map(|(target, answer)| Row {
            input: target.input.clone(),
            kind: target.kind,
            verdict: answer
                .found
                .as_ref()
                .map_or(Verdict::Unknown, |f| f.verdict),
            threat: answer.found.as_ref().and_then(|f| f.threat.clone()),
            source: answer.found.as_ref().and_then(|f| f.source.clone()),
            confidence: answer.found.as_ref().map_or(0, |f| f.confidence),
            matched: answer.matched,
        })
        .collect();
    if format == Format::Json {
        let output: Vec<PrivateLookupOutput> = rows
            .iter()
            .map(|row| PrivateLookupOutput {
                input: row.input.clone(),
                kind: row.kind.as_str().to_owned(),
                verdict: row.verdict,
                threat: row.threat.clone(),
                source: row.source.clone(),
                confidence: row.confidence,
                matched: row.matched.clone(),
            })
            .collect();
        println!("{}", repnet_protocol::to_pretty_json(&output));
    }
    Ok(rows)
}

/// A plain-text table, columns padded to their widest cell. The verdict column reads like a
/// sentence: `untrusted EICAR-Test-File`. A MATCHED column appears when a URL, domain or IP
/// was looked up.
fn table(rows: &[Row]) -> String {
    let with_matches = rows.iter().any(|row| {
        matches!(
            row.kind,
            ObjectKind::Url | ObjectKind::Domain | ObjectKind::Ip
        )
    });
    let mut cells = vec![
        [
            "OBJECT",
            "TYPE",
            "VERDICT",
            "SOURCE",
            "CONFIDENCE",
            "MATCHED",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for row in rows {
        let verdict = match &row.threat {
            Some(threat) => format!("{} {threat}", row.verdict.as_str()),
            None => row.verdict.as_str().to_owned(),
        };
        cells.push(vec![
            row.input.clone(),
            row.kind.as_str().to_owned(),
            verdict,
            row.source.clone().unwrap_or_else(|| "-".to_owned()),
            row.confidence.to_string(),
            row.matched.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let columns = if with_matches { 6 } else { 5 };
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            cells
                .iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_classified_by_shape() {
        let cases = [
            (
                "44D88612FEA8A8F36DE82E1278ABB02F",
                ObjectKind::File,
                "44d88612fea8a8f36de82e1278abb02f",
            ),
            ("192.0.2.1", ObjectKind::Ip, "192.0.2.1"),
            ("2001:DB8::1", ObjectKind::Ip, "2001:db8::1"),
            ("Example.COM", ObjectKind::Domain, "example.com"),
            ("deadbeef", ObjectKind::Domain, "deadbeef"),
            (
                "http://Evil.Example/a/../b",
                ObjectKind::Url,
                "http://evil.example/b",
            ),
            (
                "evil.example/login/",
                ObjectKind::Url,
                "http://evil.example/login/",
            ),
        ];
        for (argument, kind, value) in cases {
            let target = classify(argument).unwrap();
            assert_eq!(
                (target.kind, target.value.as_str()),
                (kind, value),
                "{argument}"
            );
        }
        for bad in ["http://", "a..b", "1.2.3"] {
            assert!(classify(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_existing_file_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eicar.com");
        std::fs::write(&path, repnet_model::EICAR).unwrap();
        let target = classify(path.to_str().unwrap()).unwrap();
        assert_eq!(target.kind, ObjectKind::File);
        assert_eq!(
            target.value,
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
        );
        assert!(
            classify(dir.path().to_str().unwrap())
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
    }

    #[test]
    fn privacy_mode_needs_a_sha256() {
        let md5 = classify("44D88612FEA8A8F36DE82E1278ABB02F").unwrap();
        assert!(
            private_target(&md5)
                .unwrap_err()
                .to_string()
                .contains("SHA-256")
        );
        let sha256 = classify(&"a".repeat(64)).unwrap();
        assert!(matches!(
            private_target(&sha256).unwrap(),
            PrivateTarget::File(_)
        ));
        assert!(matches!(
            private_target(&classify("example.com").unwrap()).unwrap(),
            PrivateTarget::Host(_)
        ));
        assert!(matches!(
            private_target(&classify("2001:db8::1").unwrap()).unwrap(),
            PrivateTarget::Host(_)
        ));
    }
}
