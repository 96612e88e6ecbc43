//! URL canonicalisation and host-suffix × path-prefix expressions, following the rules of
//! Google Safe Browsing v4 ("URLs and Hashing"), so that a verdict on `evil.example/` covers
//! `http://A.Evil.Example.:80/x/../y?z#f`.
//!
//! Canonicalisation works on bytes: a URL may carry any byte, percent-escaped or not.
//!
//! 1. Remove tab, CR and LF; trim surrounding whitespace; drop the fragment (from the first
//!    `#`, before unescaping, so that an escaped `%23` is not a fragment).
//! 2. Split the URL into its parts as browsers do (the WHATWG URL standard), before anything
//!    is unescaped: the scheme (`scheme:` followed by slashes or backslashes, any number of
//!    them; `http` when absent), then the authority, which ends at the first `/`, `\` or
//!    `?`; the credentials in it end at its last `@`; then the path (backslashes are
//!    slashes), then the query (from the first `?`). So `http://good.example%2F@evil.example/`
//!    and `http://evil.example\@good.example/` are on `evil.example`, as a browser goes.
//! 3. Percent-unescape each part repeatedly until nothing changes (within the part only).
//! 4. Host: drop the port (a number up to 65535); strip leading and trailing dots and
//!    collapse repeated dots; lower-case; an IPv4 address written in decimal, octal,
//!    hexadecimal or with fewer than four parts becomes dotted decimal; a non-ASCII name
//!    becomes punycode, and a name's labels may not start or end with `-` nor be `xn--`
//!    labels that are not punycode. An IPv6 address in brackets becomes its standard form in
//!    brackets. A host that holds `/`, `\`, `?` or `@` once unescaped is refused, as browsers
//!    refuse it.
//! 5. Path: resolve `.` and `..` segments, collapse repeated slashes, `/` when empty. The
//!    query is left as it is.
//! 6. Percent-escape every byte ≤ 0x20 or ≥ 0x7F, `#` and `%` (and in the path `?` and `\`),
//!    with upper-case hex.
//!
//! Expressions are `host` + `path` [+ `?query`], without the scheme: the exact host and up to
//! four suffixes formed from its last five components (never the top-level domain alone,
//! never for an IP address) × the exact path with its query, the exact path, and up to four
//! prefixes from `/`. They are listed most specific first: hosts from the longest, and within
//! a host the paths from the longest.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ParseError;

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 8 * 1024;

/// The host of a canonical URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UrlHost {
    /// A host name, canonical and percent-escaped.
    Name(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for UrlHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlHost::Name(name) => f.write_str(name),
            UrlHost::Ipv4(ip) => ip.fmt(f),
            UrlHost::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A URL in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalUrl {
    scheme: String,
    host: UrlHost,
    /// Canonical and percent-escaped; starts with `/`.
    path: String,
    /// Percent-escaped, without the `?`; `Some("")` for a URL ending in `?`.
    query: Option<String>,
}

/// An expression: `host` + `path` [+ `?query`] of a canonical URL, or a prefix of it. What
/// the knowledge base stores URL verdicts under; a domain's verdict is the expression
/// `domain/`, an IP address's `192.0.2.1/` or `[2001:db8::1]/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expression(String);

impl Expression {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The expression of a URL given as a URL or already as an expression
    /// (`evil.example/login/`): its exact expression.
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        CanonicalUrl::parse(text.as_bytes()).map(|url| url.exact_expression())
    }

    /// The expression of a domain's verdict.
    pub fn for_domain(domain: &crate::Domain) -> Expression {
        Expression(format!("{domain}/"))
    }

    /// The expression of an IP address's verdict.
    pub fn for_ip(ip: std::net::IpAddr) -> Expression {
        match ip {
            std::net::IpAddr::V4(ip) => Expression(format!("{ip}/")),
            std::net::IpAddr::V6(ip) => Expression(format!("[{ip}]/")),
        }
    }

    /// Wraps text that is already an expression, as read back from storage. Returns `None`
    /// when it is not one.
    pub fn from_canonical(text: &str) -> Option<Expression> {
        Expression::parse(text)
            .ok()
            .filter(|expression| expression.0 == text)
    }

    /// The SHA-256 of the expression's text: what privacy-mode lookups and storage use.
    pub fn sha256(&self) -> crate::Sha256 {
        crate::Sha256::digest(self.0.as_bytes())
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(message: impl Into<String>) -> ParseError {
    ParseError::Url(message.into())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// One pass of percent-unescaping; returns whether anything was unescaped.
fn unescape_once(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(high), Some(low)) = (hex_value(input[i + 1]), hex_value(input[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            changed = true;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    changed
}

/// Unescapes `part` until nothing changes; each pass shortens the text, so this ends.
fn unescape_fully(part: &[u8]) -> Vec<u8> {
    let mut text = part.to_vec();
    let mut scratch = Vec::with_capacity(text.len());
    while unescape_once(&text, &mut scratch) {
        std::mem::swap(&mut text, &mut scratch);
    }
    text
}

/// Percent-escapes the bytes Safe Browsing escapes, with upper-case hex.
fn escape(input: &[u8], out: &mut String) {
    escape_with(input, b"", out);
}

/// [`escape`], and the bytes of `also` too (`?` and `\\` in a path, which would otherwise
/// start a query, or become a slash, when the canonical URL is read again).
fn escape_with(input: &[u8], also: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in input {
        if byte <= 0x20 || byte >= 0x7f || byte == b'#' || byte == b'%' || also.contains(&byte) {
            out.push('%');
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 0xf) as usize] as char);
        } else {
            out.push(byte as char);
        }
    }
}

/// Splits off the scheme: a letter followed by letters, digits, `+`, `-`, `.`, then `:` and
/// at least one slash or backslash, all of which are skipped, as browsers skip them
/// (`http:\\evil.example` is `http://evil.example`). Without them there is no scheme
/// (`example.com:8080/x` is a host and port).
fn split_scheme(input: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(first) = input.first() else {
        return (None, input);
    };
    if !first.is_ascii_alphabetic() {
        return (None, input);
    }
    let end = input
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(input.len());
    let after = &input[end..];
    if after.first() == Some(&b':') && matches!(after.get(1), Some(b'/' | b'\\')) {
        let rest = &after[1..];
        let skipped = rest
            .iter()
            .position(|b| !matches!(b, b'/' | b'\\'))
            .unwrap_or(rest.len());
        (Some(&input[..end]), &rest[skipped..])
    } else {
        (None, input)
    }
}

/// What is wrong with a host name's labels (after IDNA), for URLs and domains alike: none may
/// start or end with `-`, and an `xn--` label must be punycode.
pub(crate) fn label_problem(name: &str) -> Option<String> {
    for label in name.split('.') {
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "{name:?} has the label {label:?}, which starts or ends with `-`"
            ));
        }
        if let Some(encoded) = label
            .get(..4)
            .filter(|start| start.eq_ignore_ascii_case("xn--"))
            .and_then(|_| label.get(4..))
            && (encoded.is_empty() || idna::punycode::decode_to_string(encoded).is_none())
        {
            return Some(format!(
                "{name:?} has the label {label:?}, which is not valid punycode"
            ));
        }
    }
    None
}

/// Parses an IPv4 address the way resolvers do: 1 to 4 parts, each decimal, octal (leading
/// `0`) or hexadecimal (`0x`), the last part filling the remaining bytes.
fn parse_ipv4(host: &[u8]) -> Option<Ipv4Addr> {
    let parts: Vec<&[u8]> = host.split(|b| *b == b'.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut value: u64 = 0;
    for (index, part) in parts.iter().enumerate() {
        let number = parse_ipv4_part(part)?;
        if index + 1 < parts.len() {
            if number > 255 {
                return None;
            }
            value = value << 8 | number;
        } else {
            let remaining_bytes = 4 - index as u32;
            if number >= 1u64 << (8 * remaining_bytes) {
                return None;
            }
            value = value << (8 * remaining_bytes) | number;
        }
    }
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

fn parse_ipv4_part(part: &[u8]) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part
        .strip_prefix(b"0x")
        .or_else(|| part.strip_prefix(b"0X"))
    {
        (hex, 16)
    } else if part.len() > 1 && part[0] == b'0' {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() && radix != 16 {
        return None;
    }
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        let d = u64::from(hex_value(digit)?);
        if d >= radix {
            return None;
        }
        value = value.checked_mul(radix)?.checked_add(d)?;
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}

/// The canonical form of a host, unescaped and without credentials (`CanonicalUrl::parse`
/// took them off at the authority's last `@`, before unescaping).
fn canonical_host(raw: &[u8]) -> Result<UrlHost, ParseError> {
    if raw.first() == Some(&b'[') {
        let Some(close) = raw.iter().position(|b| *b == b']') else {
            return Err(invalid("the IPv6 address in the host has no closing `]`"));
        };
        let after = &raw[close + 1..];
        let port_only = match after.split_first() {
            None => true,
            Some((&colon, port)) => colon == b':' && port.iter().all(u8::is_ascii_digit),
        };
        if !port_only {
            return Err(invalid(
                "unexpected characters after the IPv6 address in the host",
            ));
        }
        let text = std::str::from_utf8(&raw[1..close])
            .map_err(|_| invalid("the IPv6 address in the host is not text"))?;
        let ip: Ipv6Addr = text
            .parse()
            .map_err(|_| invalid(format!("{text:?} in brackets is not an IPv6 address")))?;
        return Ok(match ip.to_ipv4_mapped() {
            Some(v4) => UrlHost::Ipv4(v4),
            None => UrlHost::Ipv6(ip),
        });
    }
    // The port: after the last `:`.
    let raw = match raw.iter().rposition(|b| *b == b':') {
        Some(colon) => {
            let port = &raw[colon + 1..];
            if !port.iter().all(u8::is_ascii_digit) {
                return Err(invalid("the port after `:` in the host is not a number"));
            }
            let value = port.iter().try_fold(0u32, |n, d| {
                n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
            });
            if value.is_none_or(|value| value > 65_535) {
                return Err(invalid("the port after `:` in the host is above 65535"));
            }
            &raw[..colon]
        }
        None => raw,
    };
    // Unescaped, these would end the host or start credentials when the canonical URL is
    // read again; browsers refuse such a host.
    if let Some(bad) = raw.iter().find(|b| matches!(b, b'/' | b'\\' | b'?' | b'@')) {
        return Err(invalid(format!(
            "the host holds `{}` once percent-decoded: browsers refuse such a host",
            *bad as char
        )));
    }
    // Only an IPv6 address, in brackets, has colons and brackets; one left here would be
    // read as a port or an address when the canonical URL is read again.
    if raw.contains(&b':') {
        return Err(invalid(
            "the host contains `:` besides its port (an IPv6 address goes in brackets)",
        ));
    }
    if raw.contains(&b'[') || raw.contains(&b']') {
        return Err(invalid(
            "the host contains `[` or `]` (an IPv6 address goes in brackets, at the start)",
        ));
    }
    let mut host = normalize_dots(raw);
    // Internationalised names become punycode, but only names made of what a host name can
    // hold: punycode moves characters around, and a `%` it moved next to hex digits would
    // be unescaped when the canonical URL is read again. Other hosts stay as bytes, escaped.
    // The dots are normalised again afterwards: mapping can remove a character and leave
    // two dots (a soft hyphen maps to nothing), or turn full-width digits into an address.
    if !host.is_ascii()
        && let Ok(text) = std::str::from_utf8(&host)
        && let Ok(ascii) = idna::domain_to_ascii_cow(text.as_bytes(), idna::AsciiDenyList::URL)
    {
        host = normalize_dots(ascii.as_bytes());
    }
    if host.is_empty() {
        return Err(invalid("the URL has no host"));
    }
    if let Some(ip) = parse_ipv4(&host) {
        return Ok(UrlHost::Ipv4(ip));
    }
    if host.is_ascii()
        && let Ok(text) = std::str::from_utf8(&host)
        && let Some(problem) = label_problem(text)
    {
        return Err(invalid(problem));
    }
    let mut name = String::with_capacity(host.len());
    escape(&host, &mut name);
    Ok(UrlHost::Name(name))
}

/// Lower case, no dot at either end, never two dots in a row.
fn normalize_dots(raw: &[u8]) -> Vec<u8> {
    let mut host = Vec::with_capacity(raw.len());
    for &byte in raw {
        if byte == b'.' && (host.is_empty() || host.last() == Some(&b'.')) {
            continue;
        }
        host.push(byte.to_ascii_lowercase());
    }
    while host.last() == Some(&b'.') {
        host.pop();
    }
    host
}

/// Resolves `.` and `..` segments and collapses repeated slashes; keeps a trailing slash.
fn canonical_path(raw: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing_slash = raw.is_empty()
        || raw.ends_with(b"/")
        || raw.ends_with(b"/.")
        || raw.ends_with(b"/..")
        || raw == b"."
        || raw == b"..";
    for segment in raw.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut path = Vec::with_capacity(raw.len() + 1);
    for segment in &segments {
        path.push(b'/');
        path.extend_from_slice(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push(b'/');
    }
    path
}

impl CanonicalUrl {
    /// Canonicalises `input`; an input without a scheme is taken as `http://`.
    pub fn parse(input: &[u8]) -> Result<CanonicalUrl, ParseError> {
        if input.len() > MAX_URL_LEN {
            return Err(invalid(format!(
                "a URL is at most {MAX_URL_LEN} bytes; got {}",
                input.len()
            )));
        }
        let mut cleaned: Vec<u8> = input
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
            .collect();
        let start = cleaned
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(cleaned.len());
        let end = cleaned
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |i| i + 1);
        cleaned.truncate(end);
        cleaned.drain(..start);
        if let Some(hash) = cleaned.iter().position(|b| *b == b'#') {
            cleaned.truncate(hash);
        }
        if cleaned.is_empty() {
            return Err(invalid("the URL is empty"));
        }
        // The parts first, as a browser splits them; each is unescaped on its own.
        let (scheme, rest) = split_scheme(&cleaned);
        let scheme = match scheme {
            Some(scheme) => String::from_utf8_lossy(scheme).to_ascii_lowercase(),
            None => "http".to_owned(),
        };
        let authority_end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'\\' | b'?'))
            .unwrap_or(rest.len());
        let (authority, rest_after) = rest.split_at(authority_end);
        let (raw_path, query) = match rest_after.iter().position(|b| *b == b'?') {
            Some(mark) => (&rest_after[..mark], Some(&rest_after[mark + 1..])),
            None => (rest_after, None),
        };
        // Credentials: up to the last `@` of the authority.
        let raw_host = match authority.iter().rposition(|b| *b == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        if raw_host.is_empty() {
            return Err(invalid(if rest.is_empty() {
                "the URL has nothing after the scheme: give a host, as in http://example.com/"
            } else {
                "the URL has no host"
            }));
        }
        let host = canonical_host(&unescape_fully(raw_host))?;
        // Backslashes in the path are slashes, as browsers read them.
        let raw_path: Vec<u8> = raw_path
            .iter()
            .map(|b| if *b == b'\\' { b'/' } else { *b })
            .collect();
        let mut path = String::with_capacity(raw_path.len() + 1);
        escape_with(
            &canonical_path(&unescape_fully(&raw_path)),
            b"?\\",
            &mut path,
        );
        let query = query.map(|query| {
            let mut escaped = String::with_capacity(query.len());
            escape(&unescape_fully(query), &mut escaped);
            escaped
        });
        let url = CanonicalUrl {
            scheme,
            host,
            path,
            query,
        };
        // Escaping can triple a URL; its canonical form must itself be a URL we accept.
        let len = url.text_len();
        if len > MAX_URL_LEN {
            return Err(invalid(format!(
                "a URL is at most {MAX_URL_LEN} bytes; this one is {len} once canonicalised"
            )));
        }
        Ok(url)
    }

    /// The same URL without its query (statistics keep no query strings: they carry
    /// search terms, session ids and e-mail addresses).
    pub fn without_query(mut self) -> CanonicalUrl {
        self.query = None;
        self
    }

    pub fn host(&self) -> &UrlHost {
        &self.host
    }

    /// The expression of the whole URL: host, path and query.
    pub fn exact_expression(&self) -> Expression {
        let mut text = format!("{}{}", self.host, self.path);
        if let Some(query) = &self.query {
            text.push('?');
            text.push_str(query);
        }
        Expression(text)
    }

    /// Runs `f` on the host suffixes to look up, most specific first, as slices of the
    /// host's text (no allocation for names: every suffix is a tail of the name).
    fn with_hosts<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        let owned;
        let text = match &self.host {
            UrlHost::Name(name) => name.as_str(),
            ip => {
                owned = ip.to_string();
                return f(&[owned.as_str()]);
            }
        };
        let mut hosts = [text; 5];
        let mut count = 1;
        // The starts of the last five components, from the right.
        let mut starts = [0usize; 5];
        let mut found = 0;
        for (index, byte) in text.bytes().enumerate().rev() {
            if byte == b'.' && found < 5 {
                starts[found] = index + 1;
                found += 1;
            }
        }
        let components = text.bytes().filter(|b| *b == b'.').count() + 1;
        // Suffixes of 5, 4, 3 and 2 components; `starts[k - 1]` begins the last k.
        for take in (2..=components.min(5)).rev() {
            if take < components {
                hosts[count] = &text[starts[take - 1]..];
                count += 1;
            }
        }
        f(&hosts[..count])
    }

    /// The paths to look up, most specific first, each with whether the query follows it:
    /// the exact path with and without its query, then up to four directory prefixes from
    /// `/`, longest first. All slices of the path.
    fn paths(&self) -> ([(&str, bool); 6], usize) {
        let path = self.path.as_str();
        let mut paths = [(path, false); 6];
        let mut count = 0;
        if self.query.is_some() {
            paths[count] = (path, true);
            count += 1;
        }
        paths[count] = (path, false);
        count += 1;
        let mut ends = [0usize; 4];
        let mut found = 0;
        for (index, byte) in path.bytes().enumerate() {
            if byte == b'/' && found < 4 {
                ends[found] = index + 1;
                found += 1;
            }
        }
        for &end in ends[..found].iter().rev() {
            if end != path.len() {
                paths[count] = (&path[..end], false);
                count += 1;
            }
        }
        (paths, count)
    }

    /// Every expression to look up, most specific first (at most 30).
    pub fn expressions(&self) -> Vec<Expression> {
        let (paths, path_count) = self.paths();
        let query = self.query.as_deref().unwrap_or("");
        self.with_hosts(|hosts| {
            let mut expressions = Vec::with_capacity(hosts.len() * path_count);
            for host in hosts {
                for &(path, with_query) in &paths[..path_count] {
                    let mut text = String::with_capacity(host.len() + path.len() + query.len() + 1);
                    text.push_str(host);
                    text.push_str(path);
                    if with_query {
                        text.push('?');
                        text.push_str(query);
                    }
                    expressions.push(Expression(text));
                }
            }
            expressions
        })
    }

    /// The expressions of a domain or IP lookup: every host suffix with the path `/`.
    pub fn host_expressions(&self) -> Vec<Expression> {
        self.with_hosts(|hosts| {
            hosts
                .iter()
                .map(|host| Expression(format!("{host}/")))
                .collect()
        })
    }

    /// The length of the canonical URL's text.
    fn text_len(&self) -> usize {
        let host = match &self.host {
            UrlHost::Name(name) => name.len(),
            ip => ip.to_string().len(),
        };
        self.scheme.len()
            + 3
            + host
            + self.path.len()
            + self.query.as_ref().map_or(0, |q| q.len() + 1)
    }
}

impl fmt::Display for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.host, self.path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(input: &[u8]) -> String {
        CanonicalUrl::parse(input)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .to_string()
    }

    /// The examples published with Safe Browsing v4's canonicalisation rules.
    #[test]
    fn published_canonicalisation_examples() {
        let cases: &[(&[u8], &str)] = &[
            (b"http://host/%25%32%35", "http://host/%25"),
            (b"http://host/%25%32%35%25%32%35", "http://host/%25%25"),
            (b"http://host/%2525252525252525", "http://host/%25"),
            (b"http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
            (b"http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
            (b"http://www.google.com/", "http://www.google.com/"),
            (
                b"http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
                "http://168.188.99.26/.secure/www.ebay.com/",
            ),
            (
                b"http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            ),
            (
                b"http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
                "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
            ),
            (b"http://3279880203/blah", "http://195.127.0.11/blah"),
            (b"http://www.google.com/blah/..", "http://www.google.com/"),
            (b"www.google.com/", "http://www.google.com/"),
            (b"www.google.com", "http://www.google.com/"),
            (b"http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
            (b"http://www.GOOgle.com/", "http://www.google.com/"),
            (b"http://www.google.com.../", "http://www.google.com/"),
            (b"http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
            (b"http://www.google.com/q?", "http://www.google.com/q?"),
            (b"http://www.google.com/q?r?", "http://www.google.com/q?r?"),
            (b"http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
            (b"http://evil.com/foo#bar#baz", "http://evil.com/foo"),
            (b"http://evil.com/foo;", "http://evil.com/foo;"),
            (b"http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
            (b"http://\x01\x80.com/", "http://%01%80.com/"),
            (b"http://notrailingslash.com", "http://notrailingslash.com/"),
            (b"http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
            (b"  http://www.google.com/  ", "http://www.google.com/"),
            (b"http:// leadingspace.com/", "http://%20leadingspace.com/"),
            (b"http://%20leadingspace.com/", "http://%20leadingspace.com/"),
            (b"%20leadingspace.com/", "http://%20leadingspace.com/"),
            (b"https://www.securesite.com/", "https://www.securesite.com/"),
            (b"http://host.com/ab%23cd", "http://host.com/ab%23cd"),
            (b"http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                canonical(input),
                *expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn more_canonicalisation() {
        let cases: &[(&str, &str)] = &[
            (
                "http://A.Evil.Example.:80/x/../y?z#f",
                "http://a.evil.example/y?z",
            ),
            (
                "HTTP://user:pass@Example.COM:8080/a/./b/../c",
                "http://example.com/a/c",
            ),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://0177.0.0.01/", "http://127.0.0.1/"),
            ("http://10.1/", "http://10.0.0.1/"),
            ("http://1.2.3.4.5/", "http://1.2.3.4.5/"),
            ("http://256.1.1.1/", "http://256.1.1.1/"),
            (
                "http://bücher.example/ä",
                "http://xn--bcher-kva.example/%C3%A4",
            ),
            ("http://[2001:DB8::1]:8443/x", "http://[2001:db8::1]/x"),
            ("http://[::ffff:192.0.2.1]/", "http://192.0.2.1/"),
            ("http://example.com?q=1", "http://example.com/?q=1"),
            ("ftp://files.example/a", "ftp://files.example/a"),
            ("http://example.com/a/b/.", "http://example.com/a/b/"),
            ("http://example.com/../../x", "http://example.com/x"),
            ("example.com:80", "http://example.com/"),
            // As browsers read them: slashes and backslashes after the scheme, the
            // authority ending at a backslash, credentials ending at the last `@`, and
            // unescaping within each part.
            ("http:///path", "http://path/"),
            ("http:\\\\evil.example\\x\\y", "http://evil.example/x/y"),
            (
                "http://evil-idn.example\\login",
                "http://evil-idn.example/login",
            ),
            (
                "http://evil-idn.example\\@good.example/",
                "http://evil-idn.example/@good.example/",
            ),
            (
                "http://good.example%2F@evil-idn.example/",
                "http://evil-idn.example/",
            ),
            ("http://a@b@evil.example/", "http://evil.example/"),
            (
                "http://evil.example/a%3Fb?c%3Fd",
                "http://evil.example/a%3Fb?c?d",
            ),
            ("http://example.com:65535/", "http://example.com/"),
            // Full-width digits map to an IPv4 address.
            (
                "http://\u{ff11}\u{ff12}\u{ff17}\u{ff0e}0.0.1/",
                "http://127.0.0.1/",
            ),
            // Found by the fuzzer: punycode would have moved `%` next to hex digits.
            (
                "http://---\u{5a0}\u{520}0-zz%7\u{520}0-zz/",
                "http://---%D6%A0%D4%A00-zz%257%D4%A00-zz/",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical(input.as_bytes()), *expected, "{input}");
        }
    }

    /// Host vectors from the WHATWG URL standard's tests (web-platform-tests
    /// `url/resources/urltestdata.json`): the host a browser goes to, or a failure, for
    /// special URLs whose host canonicalisation agrees with Safe Browsing's.
    #[test]
    fn whatwg_host_vectors() {
        let hosts: &[(&str, &str)] = &[
            ("http://example\t.\norg", "example.org"),
            ("http://user:pass@foo:21/bar;par?b#c", "foo"),
            ("https://test:@test", "test"),
            ("https://:@test", "test"),
            ("http://f:/c", "f"),
            ("http://f:0/c", "f"),
            ("http://f:00000000000000/c", "f"),
            ("http://f:00000000000000000000080/c", "f"),
            ("http://f:\n/c", "f"),
            ("http://a:b@c:29/d", "c"),
            ("http://&a:foo(b]c@d:2/", "d"),
            ("http://::@c@d:2", "d"),
            ("http://foo.com:b@d/", "d"),
            ("http://foo.com/\\@", "foo.com"),
            ("http:\\\\foo.com\\", "foo.com"),
            ("http:\\\\a\\b:c\\d@foo.com\\", "a"),
        ];
        for (input, host) in hosts {
            let url = CanonicalUrl::parse(input.as_bytes())
                .unwrap_or_else(|error| panic!("{input:?}: {error}"));
            assert_eq!(url.host().to_string(), *host, "{input:?}");
        }
        for failure in [
            "http://f:b/c",
            "http://f: /c",
            "http://f:fifty-two/c",
            "http://f:999999/c",
            "http://f: 21 / b ? d # e ",
        ] {
            assert!(
                CanonicalUrl::parse(failure.as_bytes()).is_err(),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn unusable_urls_are_errors_with_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   ", "empty"),
            (b"#only-fragment", "empty"),
            (b"http://", "nothing after the scheme"),
            (b"http://?x", "no host"),
            (b"http://example.com:65536/", "above 65535"),
            (b"http://example.com:99999999999999999999/", "above 65535"),
            (b"http://-.com/", "starts or ends with `-`"),
            (b"http://xn--zz9.example/", "not valid punycode"),
            (b"http://xn--/", "starts or ends with `-`"),
            (b"http://evil.example%2Fpath/", "browsers refuse"),
            (b"http://evil%40good.example/", "browsers refuse"),
            // Found by the fuzzer: a soft hyphen maps to nothing and left two dots.
            ("A..-..\u{ad}..A-.".as_bytes(), "starts or ends with `-`"),
            (b"http://.../", "no host"),
            (b"http://user@/", "no host"),
            (b"http://example.com:abc/", "port"),
            (b"http://[2001:db8::1/", "closing"),
            (b"http://[nonsense]/", "not an IPv6"),
            // Found by the fuzzer: a host with two colons was not a fixed point.
            (b"\x0bs::", "contains `:`"),
            (b"\xaa\t::", "contains `:`"),
            (b"http://2001:db8::1/", "contains `:`"),
            (b".[\x04/\x04\x04", "contains `[`"),
            (b"\xc2\xad#\xcc\x87", "no host"),
        ];
        for (input, reason) in cases {
            let error = CanonicalUrl::parse(input).unwrap_err();
            assert!(
                error.to_string().contains(reason),
                "{}: {error}",
                String::from_utf8_lossy(input)
            );
            assert!(matches!(error, ParseError::Url(_)), "{error:?}");
        }
        assert!(CanonicalUrl::parse(&vec![b'a'; MAX_URL_LEN + 1]).is_err());
        // Found by the fuzzer: 3,000 bytes that escape to 9,000.
        let error = CanonicalUrl::parse(&[&b"x.example/"[..], &[0x80; 3000]].concat()).unwrap_err();
        assert!(error.to_string().contains("once canonicalised"), "{error}");
    }

    fn expressions(input: &str) -> Vec<String> {
        CanonicalUrl::parse(input.as_bytes())
            .unwrap()
            .expressions()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// The published examples, in this module's most-specific-first order.
    #[test]
    fn published_expression_examples() {
        assert_eq!(
            expressions("http://a.b.c/1/2.html?param=1"),
            [
                "a.b.c/1/2.html?param=1",
                "a.b.c/1/2.html",
                "a.b.c/1/",
                "a.b.c/",
                "b.c/1/2.html?param=1",
                "b.c/1/2.html",
                "b.c/1/",
                "b.c/",
            ]
        );
        assert_eq!(
            expressions("http://a.b.c.d.e.f.g/1.html"),
            [
                "a.b.c.d.e.f.g/1.html",
                "a.b.c.d.e.f.g/",
                "c.d.e.f.g/1.html",
                "c.d.e.f.g/",
                "d.e.f.g/1.html",
                "d.e.f.g/",
                "e.f.g/1.html",
                "e.f.g/",
                "f.g/1.html",
                "f.g/",
            ]
        );
        assert_eq!(expressions("http://1.2.3.4/1/"), ["1.2.3.4/1/", "1.2.3.4/"]);
        assert_eq!(
            expressions("http://a.b/saw-cgi/eBayISAPI.dll/"),
            ["a.b/saw-cgi/eBayISAPI.dll/", "a.b/saw-cgi/", "a.b/"]
        );
    }

    #[test]
    fn at_most_five_hosts_and_six_paths() {
        let url = CanonicalUrl::parse(b"http://a.b.c.d.e.f.g.h/1/2/3/4/5/6.html?q").unwrap();
        let all = url.expressions();
        assert_eq!(all.len(), 5 * 6);
        assert_eq!(all[0].as_str(), "a.b.c.d.e.f.g.h/1/2/3/4/5/6.html?q");
        assert_eq!(all[5].as_str(), "a.b.c.d.e.f.g.h/");
        assert_eq!(all[4].as_str(), "a.b.c.d.e.f.g.h/1/");
        assert_eq!(all[29].as_str(), "g.h/");
        assert_eq!(
            url.host_expressions()
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
            [
                "a.b.c.d.e.f.g.h/",
                "d.e.f.g.h/",
                "e.f.g.h/",
                "f.g.h/",
                "g.h/"
            ]
        );
        let ipv6 = CanonicalUrl::parse(b"http://[2001:db8::1]/a/b").unwrap();
        assert_eq!(
            ipv6.expressions()
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
            ["[2001:db8::1]/a/b", "[2001:db8::1]/a/", "[2001:db8::1]/"]
        );
    }

    #[test]
    fn expressions_of_domains_ips_and_given_expressions() {
        let domain = crate::Domain::new("Evil.Example").unwrap();
        assert_eq!(Expression::for_domain(&domain).as_str(), "evil.example/");
        assert_eq!(
            Expression::for_ip("192.0.2.1".parse().unwrap()).as_str(),
            "192.0.2.1/"
        );
        assert_eq!(
            Expression::for_ip("2001:db8::1".parse().unwrap()).as_str(),
            "[2001:db8::1]/"
        );
        assert_eq!(
            Expression::parse("evil.example/login/").unwrap().as_str(),
            "evil.example/login/"
        );
        assert_eq!(
            Expression::parse("http://Evil.Example/a.php?x=1#f")
                .unwrap()
                .as_str(),
            "evil.example/a.php?x=1"
        );
        assert_eq!(
            Expression::from_canonical("evil.example/"),
            Some(Expression::for_domain(&domain))
        );
        assert_eq!(Expression::from_canonical("EVIL.example/"), None);
        // A domain's own expression is what a URL lookup on it finds.
        let url = CanonicalUrl::parse(b"http://A.Evil.Example.:80/x/../y?z#f").unwrap();
        assert!(url.expressions().contains(&Expression::for_domain(&domain)));
    }

    proptest::proptest! {
        #[test]
        fn canonicalisation_is_idempotent(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            if let Ok(url) = CanonicalUrl::parse(&input) {
                let text = url.to_string();
                let again = CanonicalUrl::parse(text.as_bytes()).expect("a canonical URL parses");
                proptest::prop_assert_eq!(again.to_string(), text);
                for expression in url.expressions() {
                    proptest::prop_assert!(expression.as_str().is_ascii());
                }
            }
        }

        #[test]
        fn canonicalisation_of_url_like_text_is_idempotent(
            scheme in "(https?://)?",
            host in "[a-zA-Z0-9.%-]{1,20}",
            path in "(/[a-zA-Z0-9.%/ -]{0,15}){0,4}",
            query in "(\\?[a-z0-9=&%/.]{0,10})?",
        ) {
            let input = format!("{scheme}{host}{path}{query}");
            if let Ok(url) = CanonicalUrl::parse(input.as_bytes()) {
                let text = url.to_string();
                proptest::prop_assert_eq!(CanonicalUrl::parse(text.as_bytes()).unwrap().to_string(), text);
            }
        }
    }
}
