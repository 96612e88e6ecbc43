//! The CSV feeds of abuse.ch (URLhaus, MalwareBazaar, ThreatFox) and PhishTank. Columns are
//! found by the header (in a `#` comment for abuse.ch, on the first line for PhishTank); a
//! dump without a header is read in the published column order, told apart by its width.

use std::borrow::Cow;

use repnet_model::{
    Category, Domain, Expression, FileHash, FileHashes, Md5, Object, Sha1, Verdict, canonical_ip,
};

use super::{Flow, LineFormat, entry, threat};
use crate::text::{Columns, Row, parse_date, split_csv};
use crate::{FeedError, Sink};

/// A CSV feed: finds its header, splits rows, and hands each to `row`.
struct Headered {
    columns: Option<Columns>,
    /// Without a header: the published layout last chosen by width.
    by_width: Option<Columns>,
}

impl Headered {
    const fn new() -> Headered {
        Headered {
            columns: None,
            by_width: None,
        }
    }

    /// The row's fields and columns, or `None` for comments, headers and blank lines
    /// (bad rows are reported to `sink`). `layouts` are the published column orders, by width.
    fn split<'l>(
        &mut self,
        number: u64,
        line: &'l str,
        required: &[&str],
        layouts: &[&[&str]],
        sink: &mut Sink<'_>,
    ) -> Option<(Vec<Cow<'l, str>>, Columns)> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return None;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if let Some(columns) = Columns::from_header(comment.trim(), required) {
                self.columns = Some(columns);
            }
            return None;
        }
        // A header on a line of its own (PhishTank's first line, or a header again where
        // dumps were concatenated); rows start with a number or a quoted date, headers with a
        // name.
        let looks_like_header = trimmed
            .trim_start_matches(['"', ' '])
            .starts_with(|c: char| c.is_ascii_alphabetic());
        if (self.columns.is_none() || looks_like_header)
            && let Some(columns) = Columns::from_header(trimmed, required)
        {
            self.columns = Some(columns);
            return None;
        }
        sink.row();
        let Some(fields) = split_csv(line) else {
            sink.bad(number, "malformed CSV", "a quoted field is not closed");
            return None;
        };
        let columns = match &self.columns {
            Some(columns) => columns.clone(),
            None => {
                let layout = layouts
                    .iter()
                    .find(|layout| layout.len() == fields.len())
                    .unwrap_or(&layouts[0]);
                match &self.by_width {
                    Some(columns) if columns.len() == layout.len() => columns.clone(),
                    _ => self.by_width.insert(Columns::new(layout)).clone(),
                }
            }
        };
        if fields.len() < columns.len() {
            sink.bad(
                number,
                "too few columns",
                format!("expected {} columns, found {}", columns.len(), fields.len()),
            );
            return None;
        }
        Some((fields, columns))
    }
}

/// Parses a file hash column, reporting it as `column "value": reason`.
fn hash_column(row: &Row<'_>, column: &str, number: u64, sink: &mut Sink<'_>) -> Option<FileHash> {
    let Some(value) = row.get(column) else {
        sink.bad(number, "missing hash", format!("{column} is empty"));
        return None;
    };
    match FileHash::from_hex(value) {
        Ok(hash) => Some(hash),
        Err(error) => {
            sink.bad(
                number,
                "invalid hash",
                format!("{column} {value:?}: {error}"),
            );
            None
        }
    }
}

fn url_object(value: &str, column: &str, number: u64, sink: &mut Sink<'_>) -> Option<Object> {
    match Expression::parse(value) {
        Ok(expression) => Some(Object::Url(expression)),
        Err(error) => {
            sink.bad(
                number,
                "invalid URL",
                format!("{column} {value:?}: {error}"),
            );
            None
        }
    }
}

/// Tags that describe a file's shape rather than the threat.
const GENERIC_TAGS: &[&str] = &[
    "32-bit",
    "64-bit",
    "elf",
    "exe",
    "dll",
    "arm",
    "arm7",
    "arm5",
    "mips",
    "mipsel",
    "x86",
    "x86-64",
    "x86_64",
    "sh4",
    "ppc",
    "m68k",
    "sparc",
    "powerpc",
    "doc",
    "docx",
    "xls",
    "xlsx",
    "zip",
    "rar",
    "7z",
    "iso",
    "apk",
    "js",
    "vbs",
    "ps1",
    "hta",
    "msi",
    "bat",
    "sh",
    "lnk",
    "pdf",
    "encrypted",
    "opendir",
    "ascii",
    "script",
    "payload",
    "dropped-by",
    "botnet",
    "malware_download",
];

#[derive(Default)]
pub(crate) struct Urlhaus(HeaderedState);

/// `Headered` with a `Default` for the format structs.
struct HeaderedState(Headered);

impl Default for HeaderedState {
    fn default() -> Self {
        HeaderedState(Headered::new())
    }
}

const URLHAUS: &[&str] = &[
    "id",
    "dateadded",
    "url",
    "url_status",
    "last_online",
    "threat",
    "tags",
    "urlhaus_link",
    "reporter",
];
const URLHAUS_OLD: &[&str] = &[
    "id",
    "dateadded",
    "url",
    "url_status",
    "threat",
    "tags",
    "urlhaus_link",
    "reporter",
];

impl LineFormat for Urlhaus {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let Some((fields, columns)) =
            self.0
                .0
                .split(number, line, &["url"], &[URLHAUS, URLHAUS_OLD], sink)
        else {
            return Ok(Flow::Continue);
        };
        let row = Row {
            fields: &fields,
            columns: &columns,
        };
        let Some(url) = row.get("url") else {
            sink.bad(number, "invalid URL", "url is empty");
            return Ok(Flow::Continue);
        };
        let Some(object) = url_object(url, "url", number, sink) else {
            return Ok(Flow::Continue);
        };
        let category = match row.get("threat") {
            Some("malware_download") => Category::MalwareDistribution,
            Some(threat) if threat.contains("phish") => Category::Phishing,
            _ => Category::Malware,
        };
        let online = row.get("url_status") != Some("offline");
        let mut entry = entry(
            object,
            Verdict::Untrusted,
            if online { 90 } else { 70 },
            &[category],
        );
        entry.threat = threat(row.get("tags").and_then(|tags| {
            tags.split(',').map(str::trim).find(|tag| {
                !tag.is_empty() && !GENERIC_TAGS.contains(&tag.to_ascii_lowercase().as_str())
            })
        }));
        entry.first_seen = row.get("dateadded").and_then(parse_date);
        sink.entry(entry)?;
        Ok(Flow::Continue)
    }
}

#[derive(Default)]
pub(crate) struct Malwarebazaar(HeaderedState);

const MALWAREBAZAAR: &[&str] = &[
    "first_seen_utc",
    "sha256_hash",
    "md5_hash",
    "sha1_hash",
    "reporter",
    "file_name",
    "file_type_guess",
    "mime_type",
    "signature",
    "clamav",
    "vtpercent",
    "imphash",
    "ssdeep",
    "tlsh",
];

impl LineFormat for Malwarebazaar {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let Some((fields, columns)) =
            self.0
                .0
                .split(number, line, &["sha256_hash"], &[MALWAREBAZAAR], sink)
        else {
            return Ok(Flow::Continue);
        };
        let row = Row {
            fields: &fields,
            columns: &columns,
        };
        let Some(FileHash::Sha256(sha256)) =
            hash_column(&row, "sha256_hash", number, sink).map(|hash| match hash {
                FileHash::Sha256(_) => hash,
                other => other,
            })
        else {
            if let Some(value) = row.get("sha256_hash")
                && FileHash::from_hex(value).is_ok()
            {
                sink.bad(
                    number,
                    "invalid hash",
                    format!("sha256_hash {value:?} is not a SHA-256"),
                );
            }
            return Ok(Flow::Continue);
        };
        let mut entry = entry(
            Object::File(FileHash::Sha256(sha256)),
            Verdict::Untrusted,
            90,
            &[Category::Malware],
        );
        // The other hashes are aliases: a bad one is left out, the row still counts.
        entry.hashes = FileHashes {
            md5: row.get("md5_hash").and_then(|v| Md5::from_hex(v).ok()),
            sha1: row.get("sha1_hash").and_then(|v| Sha1::from_hex(v).ok()),
            sha256: Some(sha256),
        };
        entry.threat = threat(row.get("signature"));
        entry.first_seen = row.get("first_seen_utc").and_then(parse_date);
        sink.entry(entry)?;
        Ok(Flow::Continue)
    }
}

#[derive(Default)]
pub(crate) struct Threatfox(HeaderedState);

const THREATFOX: &[&str] = &[
    "first_seen_utc",
    "ioc_id",
    "ioc_value",
    "ioc_type",
    "threat_type",
    "fk_malware",
    "malware_alias",
    "malware_printable",
    "last_seen_utc",
    "confidence_level",
    "is_compromised",
    "reference",
    "tags",
    "anonymous",
    "reporter",
];
const THREATFOX_OLD: &[&str] = &[
    "first_seen_utc",
    "ioc_id",
    "ioc_value",
    "ioc_type",
    "threat_type",
    "fk_malware",
    "malware_alias",
    "malware_printable",
    "last_seen_utc",
    "confidence_level",
    "reference",
    "tags",
    "anonymous",
    "reporter",
];

/// The IP address of `ip:port` (`[v6]:port` for IPv6).
fn ip_of_ip_port(value: &str) -> Option<std::net::IpAddr> {
    if let Some(rest) = value.strip_prefix('[') {
        return canonical_ip(rest.split(']').next()?).ok();
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => value,
    };
    canonical_ip(host).ok()
}

impl LineFormat for Threatfox {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let Some((fields, columns)) = self.0.0.split(
            number,
            line,
            &["ioc_value", "ioc_type"],
            &[THREATFOX, THREATFOX_OLD],
            sink,
        ) else {
            return Ok(Flow::Continue);
        };
        let row = Row {
            fields: &fields,
            columns: &columns,
        };
        let (Some(value), Some(kind)) = (row.get("ioc_value"), row.get("ioc_type")) else {
            sink.bad(number, "missing IOC", "ioc_value or ioc_type is empty");
            return Ok(Flow::Continue);
        };
        let object = match kind {
            "domain" => match Domain::new(value) {
                Ok(domain) => Object::Domain(domain),
                Err(error) => {
                    sink.bad(
                        number,
                        "invalid domain",
                        format!("ioc_value {value:?}: {error}"),
                    );
                    return Ok(Flow::Continue);
                }
            },
            "url" => match url_object(value, "ioc_value", number, sink) {
                Some(object) => object,
                None => return Ok(Flow::Continue),
            },
            "ip:port" | "ip" => match ip_of_ip_port(value) {
                Some(ip) => Object::Ip(ip),
                None => {
                    sink.bad(
                        number,
                        "invalid IP",
                        format!("ioc_value {value:?} is not an IP address (with a port)"),
                    );
                    return Ok(Flow::Continue);
                }
            },
            "md5_hash" | "sha1_hash" | "sha256_hash" => {
                match hash_column(&row, "ioc_value", number, sink) {
                    Some(hash) => Object::File(hash),
                    None => return Ok(Flow::Continue),
                }
            }
            other => {
                sink.bad(
                    number,
                    "unsupported IOC type",
                    format!("ioc_type {other:?} is not a file, URL, domain or IP"),
                );
                return Ok(Flow::Continue);
            }
        };
        let categories: &[Category] = match row.get("threat_type") {
            Some("botnet_cc") => &[Category::C2, Category::Botnet],
            Some("payload_delivery") => &[Category::MalwareDistribution],
            _ => &[Category::Malware],
        };
        let confidence = row
            .get("confidence_level")
            .and_then(|level| level.parse::<u8>().ok())
            .unwrap_or(75);
        let mut entry = entry(object, Verdict::Untrusted, confidence, categories);
        entry.threat = threat(
            row.get("malware_printable")
                .filter(|name| *name != "Unknown malware"),
        );
        entry.first_seen = row.get("first_seen_utc").and_then(parse_date);
        sink.entry(entry)?;
        Ok(Flow::Continue)
    }
}

#[derive(Default)]
pub(crate) struct Phishtank(HeaderedState);

const PHISHTANK: &[&str] = &[
    "phish_id",
    "url",
    "phish_detail_url",
    "submission_time",
    "verified",
    "verification_time",
    "online",
    "target",
];

impl LineFormat for Phishtank {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let Some((fields, columns)) =
            self.0
                .0
                .split(number, line, &["phish_id", "url"], &[PHISHTANK], sink)
        else {
            return Ok(Flow::Continue);
        };
        let row = Row {
            fields: &fields,
            columns: &columns,
        };
        let Some(url) = row.get("url") else {
            sink.bad(number, "invalid URL", "url is empty");
            return Ok(Flow::Continue);
        };
        let Some(object) = url_object(url, "url", number, sink) else {
            return Ok(Flow::Continue);
        };
        let verified = row.get("verified") == Some("yes");
        let mut entry = entry(
            object,
            Verdict::Untrusted,
            if verified { 90 } else { 60 },
            &[Category::Phishing],
        );
        entry.threat = threat(row.get("target").filter(|target| *target != "Other"));
        entry.first_seen = row.get("submission_time").and_then(parse_date);
        sink.entry(entry)?;
        Ok(Flow::Continue)
    }
}
