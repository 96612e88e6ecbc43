//! What the knowledge base blocks, written for enforcement points: a DNS Response Policy
//! Zone, a plain domain list, a hosts file, Suricata datasets, a STIX 2.1 bundle
//! (docs/integrations.md, "Blocklists"). `GET /v1/export` and `repnet export` (from a
//! server, or from a data directory) both write through [`write`]. No HTTP here.
//!
//! What is listed: every file and every URL, domain or IP address whose winning record (by
//! the precedence rule, as a lookup decides) passes the [`Filter`]. Domains, IP addresses
//! and URLs are listed by the expressions the knowledge base keeps their text for
//! (expressions stored before it did get their text at their next import or refresh).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;
use std::str::FromStr;

use repnet_model::{Categories, Category, Domain, Source, SourceRecord, Verdict, decide};
use repnet_store::{ExportTarget, Exported, Store, StoreError};
use sha1::Digest as _;

/// The formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Response Policy Zone for BIND and Unbound: blocked domains and their subdomains
    /// answer NXDOMAIN, blocked IPv4/IPv6 addresses in answers too.
    Rpz,
    /// One domain per line (each stands for its subdomains too).
    Domains,
    /// `0.0.0.0 domain` per line: exact names only (hosts files have no wildcards).
    Hosts,
    /// A Suricata dataset of SHA-256 file hashes (`type sha256`): one per line.
    Suricata,
    /// A Suricata dataset of domains (`type string`): base64, one per line.
    SuricataDomains,
    /// A STIX 2.1 bundle of indicators.
    Stix,
}

impl Format {
    pub const ALL: [(&'static str, Format); 6] = [
        ("rpz", Format::Rpz),
        ("domains", Format::Domains),
        ("hosts", Format::Hosts),
        ("suricata", Format::Suricata),
        ("suricata-domains", Format::SuricataDomains),
        ("stix", Format::Stix),
    ];

    pub fn as_str(self) -> &'static str {
        Format::ALL
            .iter()
            .find(|(_, format)| *format == self)
            .map_or("rpz", |(name, _)| name)
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Rpz => "text/dns",
            Format::Stix => "application/stix+json;version=2.1",
            _ => "text/plain; charset=utf-8",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        Format::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, format)| *format)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|(name, _)| *name).collect();
                format!("unknown format {text:?}: expected {}", names.join(", "))
            })
    }
}

/// Which entries are listed: the winning record's verdict, one of its categories (any, when
/// none is given), its source, and at least this confidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub verdicts: Vec<Verdict>,
    pub categories: Categories,
    pub sources: Vec<Source>,
    pub min_confidence: u8,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            verdicts: vec![Verdict::Untrusted],
            categories: Categories::EMPTY,
            sources: Vec::new(),
            min_confidence: 0,
        }
    }
}

impl Filter {
    /// Reads the filter's parameters as the CLI and the HTTP API take them: verdicts,
    /// categories and sources comma-separated. Errors name the parameter.
    pub fn parse(
        verdicts: Option<&str>,
        categories: Option<&str>,
        sources: Option<&str>,
        min_confidence: Option<i64>,
    ) -> Result<Filter, String> {
        let list = |text: Option<&str>| -> Vec<String> {
            text.unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut filter = Filter::default();
        if verdicts.is_some() {
            filter.verdicts = list(verdicts)
                .iter()
                .map(|text| match text.parse::<Verdict>() {
                    Ok(Verdict::Unknown) | Err(_) => Err(format!(
                        "verdict: {text:?} is not one of untrusted, riskware, trusted"
                    )),
                    Ok(verdict) => Ok(verdict),
                })
                .collect::<Result<_, _>>()?;
            if filter.verdicts.is_empty() {
                return Err("verdict: give at least one of untrusted, riskware, trusted".into());
            }
        }
        filter.categories = list(categories)
            .iter()
            .map(|text| {
                text.parse::<Category>()
                    .map_err(|error| format!("category: {error}"))
            })
            .collect::<Result<_, _>>()?;
        filter.sources = list(sources)
            .iter()
            .map(|text| {
                text.parse::<Source>()
                    .map_err(|error| format!("source: {error}"))
            })
            .collect::<Result<_, _>>()?;
        if let Some(confidence) = min_confidence {
            filter.min_confidence = u8::try_from(confidence)
                .ok()
                .filter(|c| *c <= 100)
                .ok_or_else(|| {
                    format!("min_confidence: a whole number from 0 to 100; got {confidence}")
                })?;
        }
        Ok(filter)
    }

    /// Whether the winning record passes.
    fn passes(&self, winner: &SourceRecord) -> bool {
        self.verdicts.contains(&winner.verdict)
            && (self.categories.is_empty()
                || winner.categories.bits() & self.categories.bits() != 0)
            && (self.sources.is_empty() || self.sources.contains(&winner.source))
            && winner.confidence.get() >= self.min_confidence
    }

    /// The filter as text, for an export's header and its ETag.
    pub fn describe(&self) -> String {
        let verdicts: Vec<&str> = self.verdicts.iter().map(|v| v.as_str()).collect();
        let categories: Vec<&str> = self.categories.iter().map(|c| c.as_str()).collect();
        let sources: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
        format!(
            "verdict={} category={} source={} min_confidence={}",
            verdicts.join(","),
            if categories.is_empty() {
                "any".to_owned()
            } else {
                categories.join(",")
            },
            if sources.is_empty() {
                "any".to_owned()
            } else {
                sources.join(",")
            },
            self.min_confidence
        )
    }
}

/// What an expression stands for in DNS-oriented formats.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    /// `evil.example/`: a domain and its subdomains.
    Domain(String),
    Ip(IpAddr),
    /// A URL with a path: DNS cannot express it.
    Url,
}

fn named(expression: &str) -> Named {
    let Some(host) = expression.strip_suffix('/') else {
        return Named::Url;
    };
    if host.contains('/') {
        return Named::Url;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Named::Ip(ip);
    }
    match Domain::new(host) {
        Ok(domain) => Named::Domain(domain.as_str().to_owned()),
        Err(_) => Named::Url,
    }
}

/// What one export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries written.
    pub entries: u64,
    /// The change log's sequence the export reflects.
    pub sequence: u64,
}

/// What is gathered before writing: the DNS-oriented formats need every domain at once (to
/// sort, and to find exceptions under blocked domains); the others write as they go.
#[derive(Default)]
struct Gathered {
    blocked: BTreeSet<Named>,
    /// Domains whose own verdict is trusted: exceptions where a parent is blocked.
    trusted: BTreeSet<String>,
}

/// Writes the export of `store` in `format` to `out` (blocking: run it on a blocking
/// thread). `zone` names the RPZ zone in its SOA.
pub fn write(
    store: &Store,
    format: Format,
    filter: &Filter,
    zone: &str,
    out: &mut dyn Write,
) -> Result<Summary, StoreError> {
    let io_error = |source: io::Error| StoreError::Io {
        action: "write the export to",
        path: "the output".into(),
        source,
    };
    let mut summary = Summary::default();
    let mut gathered = Gathered::default();
    let mut stix = match format {
        Format::Stix => Some(StixWriter::start(out).map_err(io_error)?),
        _ => None,
    };
    let sequence = store.export(&mut |exported: Exported| {
        // The record a lookup would answer with (by the precedence rule).
        let Some(winner) = decide(&exported.records).map(|d| &exported.records[d.winner]) else {
            return Ok(());
        };
        if !filter.passes(winner) {
            if winner.verdict == Verdict::Trusted
                && let ExportTarget::Expression(expression) = &exported.target
                && let Named::Domain(domain) = named(expression.as_str())
            {
                gathered.trusted.insert(domain);
            }
            return Ok(());
        }
        match (&exported.target, format) {
            (ExportTarget::File(hashes), Format::Suricata) => {
                if let Some(sha256) = hashes.sha256 {
                    writeln!(out, "{sha256}").map_err(io_error)?;
                    summary.entries += 1;
                }
            }
            (target, Format::Stix) => {
                if let Some(stix) = stix.as_mut() {
                    summary.entries += stix.indicator(out, target, winner).map_err(io_error)?;
                }
            }
            (ExportTarget::Expression(expression), _) if format != Format::Suricata => {
                gathered.blocked.insert(named(expression.as_str()));
            }
            (ExportTarget::Expression(_) | ExportTarget::File(_), _) => {}
        }
        Ok(())
    })?;
    summary.sequence = sequence;
    match format {
        Format::Stix => {
            if let Some(stix) = stix {
                stix.finish(out).map_err(io_error)?;
            }
        }
        Format::Suricata => {}
        _ => {
            summary.entries =
                write_names(format, filter, zone, sequence, &gathered, out).map_err(io_error)?
        }
    }
    out.flush().map_err(io_error)?;
    Ok(summary)
}

/// The blocked domain that covers `domain` (itself or a parent), if any.
fn blocked_parent<'a>(blocked: &'a BTreeSet<String>, domain: &str) -> Option<&'a str> {
    let mut rest = domain;
    loop {
        if let Some(found) = blocked.get(rest) {
            return Some(found);
        }
        rest = rest.split_once('.')?.1;
    }
}

fn write_names(
    format: Format,
    filter: &Filter,
    zone: &str,
    sequence: u64,
    gathered: &Gathered,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let domains: BTreeSet<String> = gathered
        .blocked
        .iter()
        .filter_map(|named| match named {
            Named::Domain(domain) => Some(domain.clone()),
            _ => None,
        })
        .collect();
    // A domain under a blocked one is covered already.
    let top: Vec<&String> = domains
        .iter()
        .filter(|domain| {
            domain
                .split_once('.')
                .and_then(|(_, parent)| blocked_parent(&domains, parent))
                .is_none()
        })
        .collect();
    let header = format!(
        "repnet export, format {}, sequence {sequence}, {}",
        format.as_str(),
        filter.describe()
    );
    let mut entries = 0u64;
    match format {
        Format::Domains => {
            writeln!(out, "# {header}")?;
            writeln!(out, "# Each domain stands for its subdomains too.")?;
            for domain in &top {
                writeln!(out, "{domain}")?;
                entries += 1;
            }
        }
        Format::Hosts => {
            writeln!(out, "# {header}")?;
            writeln!(
                out,
                "# Exact names only: a hosts file cannot block subdomains."
            )?;
            for domain in &domains {
                writeln!(out, "0.0.0.0 {domain}")?;
                entries += 1;
            }
        }
        Format::SuricataDomains => {
            use base64::Engine as _;
            for domain in &top {
                writeln!(
                    out,
                    "{}",
                    base64::engine::general_purpose::STANDARD.encode(domain)
                )?;
                entries += 1;
            }
        }
        Format::Rpz => {
            // The serial follows the change log; SOA serials are 32-bit (RFC 1982 arithmetic
            // lets them wrap).
            let serial = (sequence % (1 << 32)) as u32;
            writeln!(out, "; {header}")?;
            writeln!(out, "$TTL 300")?;
            writeln!(
                out,
                "@ IN SOA localhost. hostmaster.{zone}. ({serial} 3600 600 86400 300)"
            )?;
            writeln!(out, "@ IN NS localhost.")?;
            for domain in &top {
                writeln!(out, "{domain} CNAME .")?;
                writeln!(out, "*.{domain} CNAME .")?;
                entries += 1;
            }
            // Trusted names under a blocked domain: let them through, as lookups do.
            for domain in &gathered.trusted {
                if let Some((_, parent)) = domain.split_once('.')
                    && blocked_parent(&domains, parent).is_some()
                    && !domains.contains(domain)
                {
                    writeln!(out, "{domain} CNAME rpz-passthru.")?;
                }
            }
            for named in &gathered.blocked {
                if let Named::Ip(ip) = named {
                    writeln!(out, "{} CNAME .", rpz_ip(*ip))?;
                    entries += 1;
                }
            }
        }
        Format::Suricata | Format::Stix => {}
    }
    Ok(entries)
}

/// An address as an RPZ IP trigger: `32.4.3.2.1.rpz-ip` for 1.2.3.4;
/// `128.1.zz.db8.2001.rpz-ip` for 2001:db8::1 (16-bit groups, reversed, the longest run of
/// zero groups as `zz`).
fn rpz_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("32.{d}.{c}.{b}.{a}.rpz-ip")
        }
        IpAddr::V6(ip) => {
            let groups = ip.segments();
            // The longest run of two or more zero groups (the first of equals), as `::`.
            let (mut best, mut run) = ((0usize, 0usize), (0usize, 0usize));
            for (index, group) in groups.iter().enumerate() {
                if *group == 0 {
                    if run.1 == 0 {
                        run.0 = index;
                    }
                    run.1 += 1;
                    if run.1 > best.1 {
                        best = run;
                    }
                } else {
                    run = (0, 0);
                }
            }
            let mut labels = Vec::new();
            let mut index = 0;
            while index < 8 {
                if best.1 >= 2 && index == best.0 {
                    labels.push("zz".to_owned());
                    index += best.1;
                } else {
                    labels.push(format!("{:x}", groups[index]));
                    index += 1;
                }
            }
            labels.reverse();
            format!("128.{}.rpz-ip", labels.join("."))
        }
    }
}

/// A STIX 2.1 bundle, written object by object.
struct StixWriter {
    first: bool,
}

/// A name-based (version 5) UUID in repnet's namespace: the same object gets the same
/// indicator id in every export, so that consumers update rather than duplicate it.
fn uuid5(name: &str) -> String {
    // uuid5(NAMESPACE_URL, "https://repnet.example/stix"), fixed.
    const NAMESPACE: [u8; 16] = [
        0x8b, 0x3c, 0x1d, 0x4e, 0x2a, 0x5f, 0x5b, 0x6c, 0x9d, 0x7e, 0x0f, 0x11, 0x22, 0x33, 0x44,
        0x55,
    ];
    let mut hasher = sha1::Sha1::new();
    hasher.update(NAMESPACE);
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A string in a STIX pattern: quotes and backslashes escaped.
fn pattern_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

fn stix_time(timestamp: repnet_model::Timestamp) -> String {
    repnet_protocol::rfc3339(timestamp)
        .map(|text| text.replace('Z', ".000Z"))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

impl StixWriter {
    fn start(out: &mut dyn Write) -> io::Result<StixWriter> {
        write!(
            out,
            "{{\"type\":\"bundle\",\"id\":\"bundle--{}\",\"objects\":[",
            uuid5(&format!("bundle {}", repnet_store::now().0))
        )?;
        Ok(StixWriter { first: true })
    }

    /// Writes the indicator for `target`; answers how many (0 for what STIX cannot name).
    fn indicator(
        &mut self,
        out: &mut dyn Write,
        target: &ExportTarget,
        winner: &SourceRecord,
    ) -> io::Result<u64> {
        let (name, pattern) = match target {
            ExportTarget::File(hashes) => {
                let mut parts = Vec::new();
                if let Some(sha256) = hashes.sha256 {
                    parts.push(format!("file:hashes.'SHA-256' = '{sha256}'"));
                }
                if let Some(sha1) = hashes.sha1 {
                    parts.push(format!("file:hashes.'SHA-1' = '{sha1}'"));
                }
                if let Some(md5) = hashes.md5 {
                    parts.push(format!("file:hashes.MD5 = '{md5}'"));
                }
                let Some(primary) = hashes.primary() else {
                    return Ok(0);
                };
                (primary.to_string(), format!("[{}]", parts.join(" OR ")))
            }
            ExportTarget::Expression(expression) => match named(expression.as_str()) {
                Named::Domain(domain) => (
                    domain.clone(),
                    format!("[domain-name:value = '{}']", pattern_string(&domain)),
                ),
                Named::Ip(IpAddr::V4(ip)) => {
                    (ip.to_string(), format!("[ipv4-addr:value = '{ip}']"))
                }
                Named::Ip(IpAddr::V6(ip)) => {
                    (ip.to_string(), format!("[ipv6-addr:value = '{ip}']"))
                }
                Named::Url => {
                    let url = format!("http://{}", expression.as_str());
                    (
                        url.clone(),
                        format!("[url:value = '{}']", pattern_string(&url)),
                    )
                }
            },
        };
        let indicator_type = match winner.verdict {
            Verdict::Trusted => "benign",
            Verdict::Riskware => "anomalous-activity",
            _ => "malicious-activity",
        };
        let mut object = serde_json::json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": format!("indicator--{}", uuid5(&pattern)),
            "created": stix_time(winner.first_seen),
            "modified": stix_time(winner.last_seen.max(winner.first_seen)),
            "name": name,
            "indicator_types": [indicator_type],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": stix_time(winner.first_seen),
            "confidence": winner.confidence.get(),
            "labels": winner.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "description": format!("repnet: {} from {}", winner.verdict.as_str(), winner.source),
        });
        if let Some(threat) = &winner.threat
            && let Some(map) = object.as_object_mut()
        {
            map.insert(
                "description".to_owned(),
                serde_json::Value::String(format!(
                    "repnet: {} ({}) from {}",
                    winner.verdict.as_str(),
                    threat.as_str(),
                    winner.source
                )),
            );
        }
        if let Some(map) = object.as_object_mut()
            && winner.categories.is_empty()
        {
            map.remove("labels");
        }
        if !self.first {
            out.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut *out, &object).map_err(io::Error::other)?;
        Ok(1)
    }

    fn finish(self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(b"]}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_triggers_follow_the_rpz_draft() {
        assert_eq!(rpz_ip("192.0.2.1".parse().unwrap()), "32.1.2.0.192.rpz-ip");
        assert_eq!(
            rpz_ip("2001:db8::1".parse().unwrap()),
            "128.1.zz.db8.2001.rpz-ip"
        );
        assert_eq!(
            rpz_ip("2001:db8:0:1:0:0:0:5".parse().unwrap()),
            "128.5.zz.1.0.db8.2001.rpz-ip"
        );
    }

    #[test]
    fn expressions_are_told_apart() {
        assert_eq!(
            named("evil.example/"),
            Named::Domain("evil.example".to_owned())
        );
        assert_eq!(named("192.0.2.1/"), Named::Ip("192.0.2.1".parse().unwrap()));
        assert_eq!(
            named("[2001:db8::1]/"),
            Named::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(named("evil.example/login/"), Named::Url);
    }

    #[test]
    fn filters_are_checked_with_the_parameter_named() {
        let error = Filter::parse(Some("untrusted,bogus"), None, None, None).unwrap_err();
        assert!(error.starts_with("verdict:"), "{error}");
        let error = Filter::parse(None, Some("nope"), None, None).unwrap_err();
        assert!(error.starts_with("category:"), "{error}");
        let error = Filter::parse(None, None, Some("feeed:x"), None).unwrap_err();
        assert!(error.starts_with("source:"), "{error}");
        let error = Filter::parse(None, None, None, Some(101)).unwrap_err();
        assert!(error.starts_with("min_confidence:"), "{error}");
        let filter = Filter::parse(
            Some("untrusted,riskware"),
            Some("phishing"),
            Some("feed:x"),
            Some(50),
        )
        .unwrap();
        assert_eq!(filter.verdicts, [Verdict::Untrusted, Verdict::Riskware]);
        assert_eq!(filter.min_confidence, 50);
    }

    #[test]
    fn indicator_ids_are_stable_version_5_uuids() {
        let id = uuid5("[domain-name:value = 'evil.example']");
        assert_eq!(id, uuid5("[domain-name:value = 'evil.example']"));
        assert_eq!(&id[14..15], "5");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
