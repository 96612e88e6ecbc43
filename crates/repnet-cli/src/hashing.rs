//! One read of a file feeds its MD5, SHA-1 and SHA-256: feeds list files by whichever hash
//! they have (ClamAV and many hash lists by MD5, legacy NSRL by SHA-1), so a file is looked up
//! by all three or it is missed.

use std::io::Read as _;
use std::path::Path;

use repnet_model::{FileHashes, Md5, Sha1, Sha256};
use sha2::Digest as _;

/// Bytes read at a time: large enough that big files stream at the hashes' speed.
const BLOCK: usize = 1 << 20;

/// Which hashes to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// MD5, SHA-1 and SHA-256.
    All,
    /// SHA-256 only (`--hashes sha256`): about three times faster, and blind to what feeds
    /// list by MD5 or SHA-1 only.
    Sha256,
}

/// The hashes of the file at `path`, from one read of it.
pub(crate) fn hash_file(path: &Path, which: Which) -> std::io::Result<FileHashes> {
    let mut file = std::fs::File::open(path)?;
    let mut sha256 = sha2::Sha256::new();
    let mut others = (which == Which::All).then(|| (md5::Md5::new(), sha1::Sha1::new()));
    let mut buffer = vec![0u8; BLOCK];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let block = &buffer[..read];
        sha256.update(block);
        if let Some((md5, sha1)) = &mut others {
            md5.update(block);
            sha1.update(block);
        }
    }
    let (md5, sha1) = match others {
        Some((md5, sha1)) => (
            Some(Md5(md5.finalize().into())),
            Some(Sha1(sha1.finalize().into())),
        ),
        None => (None, None),
    };
    Ok(FileHashes {
        md5,
        sha1,
        sha256: Some(Sha256(sha256.finalize().into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_read_gives_every_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eicar.com");
        std::fs::write(&path, repnet_model::EICAR).unwrap();
        let hashes = hash_file(&path, Which::All).unwrap();
        assert_eq!(hashes, FileHashes::of(repnet_model::EICAR));
        let only = hash_file(&path, Which::Sha256).unwrap();
        assert_eq!((only.md5, only.sha1), (None, None));
        assert_eq!(only.sha256, hashes.sha256);
        // Larger than one block.
        let big: Vec<u8> = (0..(3 * BLOCK + 17)).map(|i| i as u8).collect();
        std::fs::write(&path, &big).unwrap();
        assert_eq!(hash_file(&path, Which::All).unwrap(), FileHashes::of(&big));
    }
}
