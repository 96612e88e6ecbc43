//! `repnet lookup`: classify each argument, hash the ones that are files, ask the server in
//! batches, and print a table or JSON.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use repnet_client::Client;
use repnet_model::{Domain, FileHash, ObjectKind, Sha256, canonical_ip};
use repnet_protocol::{LookupItem, LookupOutput, Reputation, Verdict};

use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    /// What to look up: a file (hashed here, only its SHA-256 is sent), an MD5/SHA-1/SHA-256
    /// hash, a domain or an IP address.
    #[arg(required = true, value_name = "FILE|HASH|DOMAIN|IP")]
    targets: Vec<String>,
    /// The repnet server to ask.
    #[arg(
        long,
        env = "REPNET_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Include every contributing source record (JSON output).
    #[arg(long)]
    explain: bool,
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
}

/// Classifies `argument` by shape. An existing file wins over everything (a file may well be
/// named like a hash), then hashes, IP addresses, and domains.
fn classify(argument: &str) -> anyhow::Result<Target> {
    let target = |kind, value: String| Target {
        input: argument.to_owned(),
        kind,
        value,
    };
    let path = Path::new(argument);
    if path.is_dir() {
        anyhow::bail!("{argument} is a directory: pass the files in it (e.g. {argument}/*)");
    }
    if path.is_file() {
        return Ok(target(ObjectKind::File, hash_file(path)?.to_string()));
    }
    if argument.contains("://") {
        anyhow::bail!(
            "{argument}: URL lookups are not supported by this version; look up its domain instead"
        );
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
    if argument.contains('/') || argument.contains('\\') {
        anyhow::bail!("{argument}: no such file");
    }
    let domain = Domain::new(argument).with_context(|| {
        format!("{argument} is not an existing file, a hash (32, 40 or 64 hex characters), an IP address or a domain")
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

pub(crate) async fn run(args: LookupArgs) -> anyhow::Result<Outcome> {
    let targets = args
        .targets
        .iter()
        .map(|argument| classify(argument))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = Client::new(&args.server)?;
    let items: Vec<LookupItem<'_>> = targets
        .iter()
        .map(|target| LookupItem::new(target.kind, target.value.as_str()))
        .collect();
    let results = client.lookup(&items, args.explain).await?;
    match args.format {
        Format::Table => print!("{}", table(&targets, &results)),
        Format::Json => {
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
    }
    let untrusted = results.iter().any(|r| r.verdict == Verdict::Untrusted);
    Ok(if untrusted {
        Outcome::UntrustedFound
    } else {
        Outcome::Clean
    })
}

/// A plain-text table, columns padded to their widest cell. The verdict column reads like a
/// sentence: `untrusted EICAR-Test-File`.
fn table(targets: &[Target], results: &[Reputation]) -> String {
    let mut rows = vec![["OBJECT", "TYPE", "VERDICT", "SOURCE", "CONFIDENCE"].map(str::to_owned)];
    for (target, result) in targets.iter().zip(results) {
        let verdict = match &result.threat {
            Some(threat) => format!("{} {threat}", result.verdict.as_str()),
            None => result.verdict.as_str().to_owned(),
        };
        rows.push([
            target.input.clone(),
            target.kind.as_str().to_owned(),
            verdict,
            result.source.clone().unwrap_or_else(|| "-".to_owned()),
            result.confidence.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
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
        ];
        for (argument, kind, value) in cases {
            let target = classify(argument).unwrap();
            assert_eq!(
                (target.kind, target.value.as_str()),
                (kind, value),
                "{argument}"
            );
        }
        for bad in ["http://x.example/", "a..b", "./missing/file", "1.2.3"] {
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
}
