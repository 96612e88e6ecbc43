//! The objects the network keeps reputations for, each in its canonical form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::ParseError;
use crate::hash::{FileHash, Sha256};
use crate::url::Expression;

/// The kinds of object, as named in the HTTP API (`{"file": …}`, `/v1/domains/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    File,
    Domain,
    Ip,
    Certificate,
    Url,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::File,
        ObjectKind::Domain,
        ObjectKind::Ip,
        ObjectKind::Certificate,
        ObjectKind::Url,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Domain => "domain",
            ObjectKind::Ip => "ip",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Url => "url",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectKind {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        ObjectKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                ParseError::Name(format!(
                    "unknown object type {text:?}: expected file, domain, ip, certificate or url"
                ))
            })
    }
}

/// A domain name in canonical form: lower case, internationalised names in punycode
/// (`bücher.example` → `xn--bcher-kva.example`), without the trailing dot of a fully
/// qualified name. Labels are 1–63 characters of letters, digits, `-` and `_` (underscores
/// are not valid in host names, but they occur in real DNS names and in malicious ones).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub const MAX_LEN: usize = 253;

    pub fn new(text: &str) -> Result<Domain, ParseError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Err(ParseError::Domain(
                "a domain name cannot be empty".to_owned(),
            ));
        }
        let ascii = idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL)
            .map_err(|_| {
                ParseError::Domain(format!(
                    "{text:?} is not a valid domain name (it could not be converted to punycode)"
                ))
            })?;
        let ascii = ascii.into_owned();
        if ascii.len() > Self::MAX_LEN {
            return Err(ParseError::Domain(format!(
                "a domain name is at most {} characters; got {}",
                Self::MAX_LEN,
                ascii.len()
            )));
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(ParseError::Domain(format!(
                    "{text:?} has an empty label (two dots in a row, or a leading dot)"
                )));
            }
            if label.len() > 63 {
                return Err(ParseError::Domain(format!(
                    "{text:?} has a label longer than 63 characters"
                )));
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(ParseError::Domain(format!(
                    "{text:?} contains {bad:?}, which is not allowed in a domain name"
                )));
            }
        }
        if let Some(problem) = crate::url::label_problem(&ascii) {
            return Err(ParseError::Domain(problem));
        }
        if ascii.parse::<std::net::Ipv4Addr>().is_ok()
            || ascii
                .split('.')
                .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ParseError::Domain(format!(
                "{text:?} is an IP address, not a domain name: look it up as an ip"
            )));
        }
        Ok(Domain(ascii))
    }

    /// Wraps a name that is already canonical, as read back from storage. Returns `None` when
    /// it is not, so that a damaged store cannot smuggle a non-canonical name into an answer.
    pub fn from_canonical(text: &str) -> Option<Domain> {
        Domain::new(text).ok().filter(|domain| domain.0 == text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name ends in a public suffix of the Public Suffix List (`com`, `co.uk`, …) or in
    /// a special-use name of RFC 6761 (`test`, `example`, `invalid`, `localhost`), with at
    /// least one label before it. What a person types as a domain does; `invoice.pdf` and
    /// `setup.exe` do not, and are far more likely file names.
    pub fn has_known_suffix(&self) -> bool {
        const SPECIAL_USE: [&str; 4] = ["test", "example", "invalid", "localhost"];
        let last = self.0.rsplit('.').next().unwrap_or("");
        if SPECIAL_USE.contains(&last) {
            return self.0.contains('.');
        }
        match psl::suffix(self.0.as_bytes()) {
            Some(suffix) => suffix.is_known() && suffix.as_bytes().len() < self.0.len(),
            None => false,
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

/// Parses an IPv4 or IPv6 address in its standard text form and returns it canonically:
/// an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address it maps. IPv6 with a
/// zone (`fe80::1%eth0`) is rejected: a zone means nothing outside one machine.
pub fn canonical_ip(text: &str) -> Result<IpAddr, ParseError> {
    let text_without_brackets = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text);
    let ip: IpAddr = text_without_brackets.parse().map_err(|_| {
        ParseError::Ip(format!(
            "{text:?} is not an IP address: expected dotted IPv4 (192.0.2.1) or IPv6 (2001:db8::1)"
        ))
    })?;
    Ok(match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    })
}

/// The SHA-256 thumbprint of a code-signing certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateThumbprint(pub Sha256);

impl CertificateThumbprint {
    pub fn from_hex(text: &str) -> Result<CertificateThumbprint, ParseError> {
        Sha256::from_hex(text)
            .map(CertificateThumbprint)
            .map_err(|error| {
                ParseError::Hash(format!(
                    "a certificate thumbprint is the certificate's SHA-256: {}",
                    error
                        .to_string()
                        .trim_start_matches("a SHA-256 hash is ")
                        .trim_start_matches("a SHA-256 hash must be ")
                ))
            })
    }
}

impl fmt::Display for CertificateThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CertificateThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateThumbprint({})", self.0)
    }
}

/// An object the network knows, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    File(FileHash),
    Domain(Domain),
    Ip(IpAddr),
    Certificate(CertificateThumbprint),
    /// A URL expression (see `url.rs`): what URL verdicts are stored under.
    Url(Expression),
}

impl Object {
    /// Parses `text` as an object of `kind`, the way the HTTP API does for `{"<kind>": text}`.
    pub fn parse(kind: ObjectKind, text: &str) -> Result<Object, ParseError> {
        match kind {
            ObjectKind::File => FileHash::from_hex(text).map(Object::File),
            ObjectKind::Domain => Domain::new(text).map(Object::Domain),
            ObjectKind::Ip => canonical_ip(text).map(Object::Ip),
            ObjectKind::Certificate => {
                CertificateThumbprint::from_hex(text).map(Object::Certificate)
            }
            ObjectKind::Url => Expression::parse(text).map(Object::Url),
        }
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::File(_) => ObjectKind::File,
            Object::Domain(_) => ObjectKind::Domain,
            Object::Ip(_) => ObjectKind::Ip,
            Object::Certificate(_) => ObjectKind::Certificate,
            Object::Url(_) => ObjectKind::Url,
        }
    }
}

/// The canonical value: lower-case hex for hashes and thumbprints, punycode for domains,
/// the standard text form for IP addresses.
impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::File(hash) => hash.fmt(f),
            Object::Domain(domain) => domain.fmt(f),
            Object::Ip(ip) => ip.fmt(f),
            Object::Certificate(thumbprint) => thumbprint.fmt(f),
            Object::Url(expression) => expression.fmt(f),
        }
    }
}

impl From<FileHash> for Object {
    fn from(hash: FileHash) -> Self {
        Object::File(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_with_and_without_a_known_suffix() {
        for known in [
            "example.com",
            "www.bbc.co.uk",
            "malware.test.repnet.invalid",
            "evil.example",
            "xn--bcher-kva.de",
            "corp.localhost",
            "files.zip",
        ] {
            assert!(Domain::new(known).unwrap().has_known_suffix(), "{known}");
        }
        for unknown in [
            "invoice.pdf",
            "setup.exe",
            "deadbeef",
            "com",
            "co.uk",
            "example",
            "a.b",
        ] {
            assert!(
                !Domain::new(unknown).unwrap().has_known_suffix(),
                "{unknown}"
            );
        }
    }

    #[test]
    fn canonical_domains() {
        let cases = [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("BÜCHER.example", "xn--bcher-kva.example"),
            ("_dmarc.example.org", "_dmarc.example.org"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("localhost", "localhost"),
        ];
        for (input, expected) in cases {
            assert_eq!(Domain::new(input).unwrap().as_str(), expected, "{input}");
        }
    }

    #[test]
    fn rejected_domains() {
        let cases = [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty label"),
            (".a.b", "empty label"),
            ("a b.example", "not"),
            ("evil.example/path", "not"),
            ("user@evil.example", "not"),
            ("192.0.2.1", "IP address"),
            ("1.2.3", "IP address"),
            // As in URLs: labels do not start or end with `-`, and `xn--` is punycode.
            ("-.com", "starts or ends with `-`"),
            ("a-.example", "starts or ends with `-`"),
            ("xn--", "not a valid domain name"),
            ("xn--zz9.example", "not a valid domain name"),
        ];
        for (input, expected) in cases {
            let error = Domain::new(input).unwrap_err();
            assert!(error.to_string().contains(expected), "{input:?}: {error}");
            assert!(matches!(error, ParseError::Domain(_)), "{error:?}");
        }
        assert!(Domain::new(&format!("{}.example", "a".repeat(64))).is_err());
        assert!(Domain::new(&vec!["a".repeat(60); 5].join(".")).is_err());
    }

    #[test]
    fn canonical_ips() {
        let cases = [
            ("192.0.2.1", "192.0.2.1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                canonical_ip(input).unwrap().to_string(),
                expected,
                "{input}"
            );
        }
        for bad in [
            "",
            "256.1.1.1",
            "1.2.3",
            "example.com",
            "fe80::1%eth0",
            "01.2.3.4",
        ] {
            let error = canonical_ip(bad).unwrap_err();
            assert!(matches!(error, ParseError::Ip(_)), "{bad}");
        }
    }

    #[test]
    fn certificate_thumbprints_are_sha256_only() {
        let sha256 = "a".repeat(64);
        assert!(CertificateThumbprint::from_hex(&sha256).is_ok());
        let error = CertificateThumbprint::from_hex(&"a".repeat(40)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("64 hexadecimal characters; got 40"),
            "{error}"
        );
    }

    #[test]
    fn object_parse_dispatches_on_kind() {
        assert_eq!(
            Object::parse(ObjectKind::Domain, "EXAMPLE.org")
                .unwrap()
                .to_string(),
            "example.org"
        );
        assert_eq!(
            Object::parse(ObjectKind::Ip, "10.0.0.1").unwrap().kind(),
            ObjectKind::Ip
        );
        assert!(Object::parse(ObjectKind::File, "xyz").is_err());
    }
}
