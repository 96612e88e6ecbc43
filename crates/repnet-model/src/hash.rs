//! File hashes: fixed-size byte types parsed from hexadecimal in any case, printed in lower case.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// Which algorithm a file hash was made with. The HTTP API tells them apart by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

impl HashKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha1 => "sha1",
            HashKind::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a privacy-mode prefix is the start of. URL expressions (and so domains and IP
/// addresses) are stored by the SHA-256 of their text, like files by theirs: `Url` searches
/// only among web addresses, `Sha256` among both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrefixOf {
    Sha256,
    Sha1,
    Md5,
    Url,
}

impl PrefixOf {
    /// The hash a prefix of this is the start of.
    pub fn hash_kind(self) -> HashKind {
        match self {
            PrefixOf::Sha256 | PrefixOf::Url => HashKind::Sha256,
            PrefixOf::Sha1 => HashKind::Sha1,
            PrefixOf::Md5 => HashKind::Md5,
        }
    }
}

/// The value of each byte as a hexadecimal digit; 0xFF for bytes that are not one.
const HEX_VALUES: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes `text` as exactly `N` bytes of hexadecimal, in any case. `what` names the value in
/// the error message ("a SHA-256").
fn decode_hex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], ParseError> {
    // The fast path, taken by every valid hash: imports parse millions of them.
    let digits = text.as_bytes();
    if digits.len() == N * 2 {
        let mut bytes = [0u8; N];
        let mut invalid = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let (high, low) = (HEX_VALUES[pair[0] as usize], HEX_VALUES[pair[1] as usize]);
            invalid |= high | low;
            *byte = high << 4 | low;
        }
        if invalid & 0xF0 == 0 {
            return Ok(bytes);
        }
    }
    // The slow path says what is wrong.
    if let Some((position, bad)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(ParseError::Hash(format!(
            "{what} must be hexadecimal: character {bad:?} at position {} is not (use 0-9 and a-f)",
            position + 1
        )));
    }
    if text.len() != N * 2 {
        return Err(ParseError::Hash(format!(
            "{what} is {} hexadecimal characters; got {}",
            N * 2,
            text.len()
        )));
    }
    let mut bytes = [0u8; N];
    // Cannot fail: the length and the alphabet were checked above. Map the error anyway rather
    // than unwrap, so that a future edit cannot turn bad input into a panic.
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|error| ParseError::Hash(format!("{what} is not valid hexadecimal: {error}")))?;
    Ok(bytes)
}

macro_rules! fixed_hash {
    ($(#[$meta:meta])* $name:ident, $len:literal, $what:literal, $kind:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn from_hex(text: &str) -> Result<Self, ParseError> {
                decode_hex::<$len>(text, $what).map(Self)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            pub fn kind(&self) -> HashKind {
                $kind
            }

            /// The hash of `data`.
            pub fn digest(data: &[u8]) -> Self {
                use sha2::Digest as _;
                Self(<$crate::hash::hashers::$name>::digest(data).into())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(text: &str) -> Result<Self, ParseError> {
                Self::from_hex(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buffer = [0u8; $len * 2];
                // Cannot fail: the buffer is exactly twice the input.
                match hex::encode_to_slice(self.0, &mut buffer) {
                    Ok(()) => f.write_str(std::str::from_utf8(&buffer).map_err(|_| fmt::Error)?),
                    Err(_) => Err(fmt::Error),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

mod hashers {
    pub(crate) type Md5 = md5::Md5;
    pub(crate) type Sha1 = sha1::Sha1;
    pub(crate) type Sha256 = sha2::Sha256;
}

fixed_hash!(
    /// An MD5 file hash (16 bytes).
    Md5, 16, "an MD5 hash", HashKind::Md5
);
fixed_hash!(
    /// A SHA-1 file hash (20 bytes).
    Sha1, 20, "a SHA-1 hash", HashKind::Sha1
);
fixed_hash!(
    /// A SHA-256 file hash (32 bytes).
    Sha256, 32, "a SHA-256 hash", HashKind::Sha256
);

/// A file hash of any supported kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileHash {
    Md5(Md5),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl FileHash {
    /// Parses a hash whose kind is given by its length: 32, 40 or 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Result<FileHash, ParseError> {
        match text.len() {
            32 => Md5::from_hex(text).map(FileHash::Md5),
            40 => Sha1::from_hex(text).map(FileHash::Sha1),
            64 => Sha256::from_hex(text).map(FileHash::Sha256),
            other => {
                if let Some((position, bad)) =
                    text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit())
                {
                    return Err(ParseError::Hash(format!(
                        "a file hash must be hexadecimal: character {bad:?} at position {} is not (use 0-9 and a-f)",
                        position + 1
                    )));
                }
                Err(ParseError::Hash(format!(
                    "a file hash is 32 (MD5), 40 (SHA-1) or 64 (SHA-256) hexadecimal characters; got {other}"
                )))
            }
        }
    }

    pub fn kind(&self) -> HashKind {
        match self {
            FileHash::Md5(_) => HashKind::Md5,
            FileHash::Sha1(_) => HashKind::Sha1,
            FileHash::Sha256(_) => HashKind::Sha256,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            FileHash::Md5(hash) => hash.as_bytes(),
            FileHash::Sha1(hash) => hash.as_bytes(),
            FileHash::Sha256(hash) => hash.as_bytes(),
        }
    }
}

impl FromStr for FileHash {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        FileHash::from_hex(text)
    }
}

impl fmt::Display for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileHash::Md5(hash) => hash.fmt(f),
            FileHash::Sha1(hash) => hash.fmt(f),
            FileHash::Sha256(hash) => hash.fmt(f),
        }
    }
}

impl From<Md5> for FileHash {
    fn from(hash: Md5) -> Self {
        FileHash::Md5(hash)
    }
}

impl From<Sha1> for FileHash {
    fn from(hash: Sha1) -> Self {
        FileHash::Sha1(hash)
    }
}

impl From<Sha256> for FileHash {
    fn from(hash: Sha256) -> Self {
        FileHash::Sha256(hash)
    }
}

/// The hashes known for one file. A source that gives all three lets the network find the
/// file by any of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FileHashes {
    pub md5: Option<Md5>,
    pub sha1: Option<Sha1>,
    pub sha256: Option<Sha256>,
}

impl FileHashes {
    /// All three hashes of `data`, in one pass over the bytes per algorithm.
    pub fn of(data: &[u8]) -> FileHashes {
        FileHashes {
            md5: Some(Md5::digest(data)),
            sha1: Some(Sha1::digest(data)),
            sha256: Some(Sha256::digest(data)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.md5.is_none() && self.sha1.is_none() && self.sha256.is_none()
    }

    /// Records `hash` in the slot of its kind.
    pub fn insert(&mut self, hash: FileHash) {
        match hash {
            FileHash::Md5(hash) => self.md5 = Some(hash),
            FileHash::Sha1(hash) => self.sha1 = Some(hash),
            FileHash::Sha256(hash) => self.sha256 = Some(hash),
        }
    }

    /// Fills the slots that `self` lacks from `other`.
    pub fn fill_from(&mut self, other: &FileHashes) {
        self.md5 = self.md5.or(other.md5);
        self.sha1 = self.sha1.or(other.sha1);
        self.sha256 = self.sha256.or(other.sha256);
    }

    /// Every hash held, the strongest first: SHA-256, SHA-1, MD5.
    pub fn iter(&self) -> impl Iterator<Item = FileHash> + use<> {
        [
            self.sha256.map(FileHash::Sha256),
            self.sha1.map(FileHash::Sha1),
            self.md5.map(FileHash::Md5),
        ]
        .into_iter()
        .flatten()
    }

    /// The strongest hash held, which names the file in answers.
    pub fn primary(&self) -> Option<FileHash> {
        self.iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_in_any_case() {
        let cases = [
            ("44D88612FEA8A8F36DE82E1278ABB02F", HashKind::Md5),
            ("3395856ce81f2b7382dee72602f798b642f14140", HashKind::Sha1),
            (
                "275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F",
                HashKind::Sha256,
            ),
        ];
        for (text, kind) in cases {
            let hash = FileHash::from_hex(text).unwrap();
            assert_eq!(hash.kind(), kind);
            assert_eq!(hash.to_string(), text.to_ascii_lowercase());
        }
    }

    #[test]
    fn rejects_bad_hashes_with_a_message_naming_the_problem() {
        let cases = [
            ("", "got 0"),
            (&"a".repeat(65), "got 65"),
            (&"a".repeat(63), "got 63"),
            (
                &format!("{}g", "a".repeat(63)),
                "character 'g' at position 64",
            ),
            ("zz", "character 'z' at position 1"),
            ("44d88612fea8a8f36de82e1278abb02é", "character 'é'"),
        ];
        for (text, expected) in cases {
            let error = FileHash::from_hex(text).unwrap_err();
            assert!(error.to_string().contains(expected), "{text:?}: {error}");
            assert!(matches!(error, ParseError::Hash(_)), "{error:?}");
        }
    }

    #[test]
    fn digest_matches_known_values() {
        assert_eq!(
            Sha256::digest(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Md5::digest(b"").to_string(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            Sha1::digest(b"").to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    proptest::proptest! {
        #[test]
        fn hex_round_trips(bytes in proptest::array::uniform32(0u8..)) {
            let hash = Sha256(bytes);
            let text = hash.to_string();
            proptest::prop_assert_eq!(Sha256::from_hex(&text).unwrap(), hash);
            proptest::prop_assert_eq!(Sha256::from_hex(&text.to_ascii_uppercase()).unwrap(), hash);
        }

        #[test]
        fn never_panics_on_any_text(text in ".{0,80}") {
            let _ = FileHash::from_hex(&text);
        }
    }
}
