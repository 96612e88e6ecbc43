//! Storage keys: a one-byte type tag followed by the object's raw bytes (never hex text), so
//! that a SHA-256 key is 33 bytes and keys of one type sort together.
//!
//! URL verdicts are kept under the SHA-256 of their expression (`url.rs` in the model):
//! expressions can be long, and privacy-mode lookups search by hash prefix, which a key
//! that starts with the hash answers with a range scan. Domains and IP addresses are the
//! expressions `domain/` and `ip/`, so that a URL lookup finds their verdicts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{CertificateThumbprint, Domain, Expression, FileHash, Md5, Object, Sha1, Sha256};

/// Type tags. They are part of the on-disk format: never reuse or renumber one.
pub mod tag {
    pub const SHA256: u8 = 0x01;
    pub const SHA1: u8 = 0x02;
    pub const MD5: u8 = 0x03;
    /// Format 1 only: domains, IPv4 and IPv6 addresses by their own bytes. Format 2 keeps
    /// them as URL expressions; the migration moves them.
    pub const LEGACY_DOMAIN: u8 = 0x10;
    pub const LEGACY_IPV4: u8 = 0x20;
    pub const LEGACY_IPV6: u8 = 0x21;
    pub const CERTIFICATE: u8 = 0x30;
    /// The SHA-256 of a URL expression.
    pub const URL: u8 = 0x40;
}

/// The longest key: a tag and a 253-byte domain name.
const MAX_KEY_LEN: usize = 1 + Domain::MAX_LEN;

/// An encoded key, on the stack: lookups build one per item and must not allocate.
#[derive(Clone, Copy)]
pub struct ObjectKey {
    len: usize,
    bytes: [u8; MAX_KEY_LEN],
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectKey(")?;
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

impl ObjectKey {
    #[inline]
    fn new(tag: u8, body: &[u8]) -> ObjectKey {
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes[0] = tag;
        // Bodies are at most 253 bytes: a `Domain` cannot be longer, hashes are shorter.
        let len = 1 + body.len().min(MAX_KEY_LEN - 1);
        bytes[1..len].copy_from_slice(&body[..len - 1]);
        ObjectKey { len, bytes }
    }

    #[inline]
    pub fn of(object: &Object) -> ObjectKey {
        match object {
            Object::File(hash) => ObjectKey::file(hash),
            Object::Domain(domain) => ObjectKey::expression(&Expression::for_domain(domain)),
            Object::Ip(ip) => ObjectKey::expression(&Expression::for_ip(*ip)),
            Object::Certificate(thumbprint) => {
                ObjectKey::new(tag::CERTIFICATE, thumbprint.0.as_bytes())
            }
            Object::Url(expression) => ObjectKey::expression(expression),
        }
    }

    #[inline]
    pub fn expression(expression: &Expression) -> ObjectKey {
        ObjectKey::new(tag::URL, expression.sha256().as_bytes())
    }

    /// The key a format-1 store used for `object` (for the migration's tests).
    pub fn legacy(object: &Object) -> ObjectKey {
        match object {
            Object::Domain(domain) => {
                ObjectKey::new(tag::LEGACY_DOMAIN, domain.as_str().as_bytes())
            }
            Object::Ip(IpAddr::V4(ip)) => ObjectKey::new(tag::LEGACY_IPV4, &ip.octets()),
            Object::Ip(IpAddr::V6(ip)) => ObjectKey::new(tag::LEGACY_IPV6, &ip.octets()),
            other => ObjectKey::of(other),
        }
    }

    #[inline]
    pub fn file(hash: &FileHash) -> ObjectKey {
        match hash {
            FileHash::Md5(hash) => ObjectKey::new(tag::MD5, hash.as_bytes()),
            FileHash::Sha1(hash) => ObjectKey::new(tag::SHA1, hash.as_bytes()),
            FileHash::Sha256(hash) => ObjectKey::new(tag::SHA256, hash.as_bytes()),
        }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Whether a key is one that format 2 no longer uses.
/// Whether `bytes` is a key this format writes (a key received from another server is
/// checked with this before it is stored).
pub fn is_valid_key(bytes: &[u8]) -> bool {
    match bytes.first() {
        Some(&tag::URL) => bytes.len() == 33,
        Some(_) => !is_legacy(bytes) && decode_key(bytes).is_some(),
        None => false,
    }
}

pub fn is_legacy(bytes: &[u8]) -> bool {
    matches!(
        bytes.first(),
        Some(&(tag::LEGACY_DOMAIN | tag::LEGACY_IPV4 | tag::LEGACY_IPV6))
    )
}

/// Decodes a key back into its object, for the kinds whose key holds the object itself
/// (files, certificates, and the format-1 domain and IP keys); `None` otherwise (a URL key
/// holds only the hash of its expression).
pub fn decode_key(bytes: &[u8]) -> Option<Object> {
    let (&tag, body) = bytes.split_first()?;
    Some(match tag {
        tag::SHA256 => Object::File(FileHash::Sha256(Sha256(body.try_into().ok()?))),
        tag::SHA1 => Object::File(FileHash::Sha1(Sha1(body.try_into().ok()?))),
        tag::MD5 => Object::File(FileHash::Md5(Md5(body.try_into().ok()?))),
        tag::LEGACY_DOMAIN => {
            Object::Domain(Domain::from_canonical(std::str::from_utf8(body).ok()?)?)
        }
        tag::LEGACY_IPV4 => Object::Ip(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(body).ok()?))),
        tag::LEGACY_IPV6 => {
            Object::Ip(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(body).ok()?)))
        }
        tag::CERTIFICATE => {
            Object::Certificate(CertificateThumbprint(Sha256(body.try_into().ok()?)))
        }
        _ => return None,
    })
}

/// How a privacy-mode search finds the object stored under `key` (a replication stream's
/// key): by a prefix of this hash of this kind (URL expressions by their SHA-256), and
/// whether it is a file. `None` for what no search finds (certificates).
pub fn searched_as(key: &[u8]) -> Option<(crate::HashKind, &[u8], bool)> {
    let (&tag, hash) = key.split_first()?;
    match tag {
        tag::SHA256 => Some((crate::HashKind::Sha256, hash, true)),
        tag::URL => Some((crate::HashKind::Sha256, hash, false)),
        tag::SHA1 => Some((crate::HashKind::Sha1, hash, true)),
        tag::MD5 => Some((crate::HashKind::Md5, hash, true)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectKind;

    #[test]
    fn keys_round_trip_and_are_compact() {
        let cases = [
            (ObjectKind::File, "44d88612fea8a8f36de82e1278abb02f", 17),
            (
                ObjectKind::File,
                "3395856ce81f2b7382dee72602f798b642f14140",
                21,
            ),
            (ObjectKind::File, &"ab".repeat(32), 33),
            (ObjectKind::Certificate, &"cd".repeat(32), 33),
        ];
        for (kind, text, len) in cases {
            let object = Object::parse(kind, text).unwrap();
            let key = ObjectKey::of(&object);
            assert_eq!(key.as_bytes().len(), len, "{text}");
            assert_eq!(decode_key(key.as_bytes()), Some(object));
        }
        // Domains, IPs and URLs are expression hashes: 33 bytes whatever their length.
        let long_domain = format!("{}.example", vec!["a".repeat(63); 3].join("."));
        for (kind, text) in [
            (ObjectKind::Domain, "evil.example"),
            (ObjectKind::Domain, long_domain.as_str()),
            (ObjectKind::Ip, "192.0.2.1"),
            (ObjectKind::Ip, "2001:db8::1"),
            (
                ObjectKind::Url,
                "http://evil.example/a/very/long/path?with=query",
            ),
        ] {
            let object = Object::parse(kind, text).unwrap();
            let key = ObjectKey::of(&object);
            assert_eq!(key.as_bytes().len(), 33, "{text}");
            assert_eq!(key.as_bytes()[0], tag::URL);
        }
        // The format-1 keys still decode, for the migration.
        for (kind, text) in [
            (ObjectKind::Domain, "evil.example"),
            (ObjectKind::Ip, "192.0.2.1"),
            (ObjectKind::Ip, "2001:db8::1"),
        ] {
            let object = Object::parse(kind, text).unwrap();
            let legacy = ObjectKey::legacy(&object);
            assert!(is_legacy(legacy.as_bytes()));
            assert_eq!(decode_key(legacy.as_bytes()), Some(object));
        }
    }

    #[test]
    fn a_domain_is_the_expression_of_its_root_path() {
        let domain = Object::parse(ObjectKind::Domain, "evil.example").unwrap();
        let url = Object::parse(ObjectKind::Url, "http://EVIL.example:80/").unwrap();
        assert_eq!(
            ObjectKey::of(&domain).as_bytes(),
            ObjectKey::of(&url).as_bytes()
        );
    }

    #[test]
    fn certificates_and_files_with_the_same_bytes_are_different_keys() {
        let hex = "ab".repeat(32);
        let file = ObjectKey::of(&Object::parse(ObjectKind::File, &hex).unwrap());
        let cert = ObjectKey::of(&Object::parse(ObjectKind::Certificate, &hex).unwrap());
        assert_ne!(file.as_bytes(), cert.as_bytes());
    }

    #[test]
    fn garbage_keys_decode_to_none() {
        for bytes in [
            &[][..],
            &[0xff, 1, 2],
            &[tag::SHA256, 1, 2],
            &[tag::LEGACY_DOMAIN, b'A'],
            &[tag::URL; 33],
        ] {
            assert_eq!(decode_key(bytes), None);
        }
    }
}
