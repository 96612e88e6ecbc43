//! Recognising a feed's format from its first bytes (`--format auto`).

use repnet_model::{CanonicalUrl, Domain, FileHash};

use crate::input::Opened;
use crate::{FeedError, Format};

/// The format of an opened feed, from its first 64 KiB.
pub(crate) fn detect(opened: &mut Opened) -> Result<Format, FeedError> {
    if opened.is_sqlite() {
        return Ok(Format::Nsrl);
    }
    let head = String::from_utf8_lossy(&opened.head);
    recognise(&head).ok_or_else(|| {
        let tried: Vec<&str> = Format::CONCRETE.iter().map(|f| f.name()).collect();
        FeedError::Format {
            path: opened.name.clone(),
            message: format!(
                "cannot recognise the format (tried {}): give it with --format",
                tried.join(", ")
            ),
        }
    })
}

/// The format of a feed whose beginning is `head`.
pub(crate) fn recognise(head: &str) -> Option<Format> {
    let trimmed = head.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let compact: String = trimmed
            .chars()
            .take(4096)
            .filter(|c| !c.is_whitespace())
            .collect();
        if compact.contains("\"type\":\"bundle\"") || compact.contains("\"spec_version\":\"2.1\"") {
            return Some(Format::Stix);
        }
        if compact.contains("\"list\":[")
            && (compact.contains("\"matching_attributes\"") || compact.contains("\"name\""))
        {
            return Some(Format::MispWarninglist);
        }
        return None;
    }
    let lower = head.to_ascii_lowercase();
    // Feeds that name themselves in a comment header, or whose header names their columns.
    if lower.contains("urlhaus") || lower.contains("urlhaus_link") {
        return Some(Format::Urlhaus);
    }
    if lower.contains("malwarebazaar")
        || (lower.contains("sha256_hash")
            && lower.contains("md5_hash")
            && lower.contains("signature"))
    {
        return Some(Format::Malwarebazaar);
    }
    if lower.contains("threatfox") || (lower.contains("ioc_value") && lower.contains("ioc_type")) {
        return Some(Format::Threatfox);
    }
    let lines: Vec<&str> = head
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .take(20)
        .collect();
    // The last line of the head may be cut: judge by the complete ones.
    let complete = if lines.len() > 1 {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    let first = *lines.first()?;
    if first.to_ascii_lowercase().starts_with("phish_id,url") {
        return Some(Format::Phishtank);
    }
    if first.starts_with("\"SHA-1\",\"MD5\"") {
        return Some(Format::Nsrl);
    }
    // Lists are recognised when at least two lines in three of the first complete ones are of
    // the kind: a few bad lines (a stray header, a typo) do not hide a hash list; the import
    // then reports them as bad rows.
    let all = |test: &dyn Fn(&str) -> bool| {
        let valid = complete.iter().filter(|line| test(line)).count();
        valid > 0 && valid >= 2 * (complete.len() - valid)
    };
    let clamav = |line: &str| {
        let mut parts = line.split(':');
        let hash = parts.next().unwrap_or("");
        let size = parts.next().unwrap_or("");
        matches!(hash.len(), 32 | 40 | 64)
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && (size == "*" || (!size.is_empty() && size.bytes().all(|b| b.is_ascii_digit())))
            && parts.next().is_some()
    };
    if all(&clamav) {
        return Some(Format::Clamav);
    }
    let tranco = |line: &str| {
        line.split_once(',').is_some_and(|(rank, domain)| {
            !rank.is_empty()
                && rank.bytes().all(|b| b.is_ascii_digit())
                && Domain::new(domain.trim()).is_ok()
        })
    };
    if all(&tranco) {
        return Some(Format::Tranco);
    }
    let hash =
        |line: &str| FileHash::from_hex(line.split_ascii_whitespace().next().unwrap_or("")).is_ok();
    if all(&hash) {
        return Some(Format::Hashlist);
    }
    let url = |line: &str| line.contains("://") && CanonicalUrl::parse(line.as_bytes()).is_ok();
    if all(&url) {
        return Some(Format::Urllist);
    }
    let domain = |line: &str| Domain::new(line).is_ok();
    if all(&domain) {
        return Some(Format::Domainlist);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_recognised() {
        let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples");
        let cases = [
            ("urlhaus.csv", Format::Urlhaus),
            ("malwarebazaar.csv", Format::Malwarebazaar),
            ("threatfox.csv", Format::Threatfox),
            ("phishtank.csv", Format::Phishtank),
            ("openphish.txt", Format::Urllist),
            ("NSRLFile.txt", Format::Nsrl),
            ("clamav.hdb", Format::Clamav),
            ("clamav.hsb", Format::Clamav),
            ("misp-warninglist.json", Format::MispWarninglist),
            ("stix-bundle.json", Format::Stix),
            ("tranco.csv", Format::Tranco),
        ];
        for (file, expected) in cases {
            let text = std::fs::read_to_string(samples.join(file)).unwrap();
            assert_eq!(recognise(&text), Some(expected), "{file}");
        }
    }

    #[test]
    fn plain_lists_and_garbage() {
        assert_eq!(
            recognise(&format!("{}\n{}\n", "a".repeat(64), "b".repeat(32))),
            Some(Format::Hashlist)
        );
        assert_eq!(
            recognise("evil.example\nbad.example\n"),
            Some(Format::Domainlist)
        );
        assert_eq!(
            recognise("http://a.example/x\nhttps://b.example/\n"),
            Some(Format::Urllist)
        );
        // A few bad lines do not hide a list; a majority of them does.
        let sums = format!(
            "# sha256sum output\n{}  a.exe\n{}  b.dll\nnot-a-hash\n{}  c.sys\n",
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64)
        );
        assert_eq!(recognise(&sums), Some(Format::Hashlist));
        assert_eq!(
            recognise("not-a-hash\nnor this\nbut-this-is-not-either\n"),
            None
        );
        assert_eq!(recognise("this is, not a feed!\n"), None);
        assert_eq!(recognise("{\"hello\": 1}"), None);
    }
}
