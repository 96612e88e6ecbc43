//! The client's caches, in an embedded LMDB environment in `$XDG_CACHE_HOME/repnet/caches`:
//! files' hashes by their identity on disk (device, inode, size, modification time), so that
//! an unchanged file is not read again, and answers by the server (and licence key) that gave
//! them, until their TTL, so that an unchanged tree makes no lookup and one server's answer is
//! never shown as another's.
//!
//! LMDB rather than a JSON file: a scan of a million files reads and writes only the entries
//! it touches (a JSON cache was rewritten whole, ~560 MB, on every scan), and two scans at once
//! share it safely (LMDB locks between processes; heed is already the knowledge base's
//! store).
#![allow(unsafe_code)] // Opening an LMDB environment is `unsafe` in heed.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, WithoutTls};
use repnet_model::{FileHashes, Md5, ObjectKind, Sha1, Sha256};
use repnet_protocol::{ObjectRef, Reputation};
use sha2::Digest as _;

/// Most files whose hashes are kept. Past it, the cache starts over with the files of the
/// scan that found it full.
pub(crate) const MAX_HASHES: u64 = 2_000_000;

/// The map LMDB may grow to: room for millions of entries. Only what is used takes disk
/// space (the file is sparse).
const MAP_SIZE: usize = 16 << 30;

/// Expired answers removed per save at most, so that a save stays short.
const SWEEP_LIMIT: usize = 100_000;

/// Which server (and licence key) an answer came from: the first bytes of a hash of both, so
/// that neither is written to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerId([u8; 8]);

impl ServerId {
    pub(crate) fn new(server: &str, key: Option<&str>) -> ServerId {
        let mut hasher = sha2::Sha256::new();
        hasher.update(server.trim().trim_end_matches('/').to_ascii_lowercase());
        hasher.update([0]);
        hasher.update(key.map(str::trim).unwrap_or("").as_bytes());
        let digest = hasher.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        ServerId(id)
    }
}

/// The caches. Cheap to share between threads: reads take their own transactions.
pub(crate) struct Caches {
    env: Env<WithoutTls>,
    /// identity → flags (1 MD5, 2 SHA-1) ‖ SHA-256 ‖ [MD5] ‖ [SHA-1].
    hashes: Database<Bytes, Bytes>,
    /// server ‖ kind ‖ value → expires (u64, big-endian) ‖ the answer as JSON.
    answers: Database<Bytes, Bytes>,
    /// expires (u64, big-endian) ‖ answer key → nothing: what to sweep, oldest first.
    expiry: Database<Bytes, Bytes>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

/// Where the caches live.
pub(crate) fn directory(cache_dir: &Path) -> PathBuf {
    cache_dir.join("caches")
}

impl Caches {
    pub(crate) fn open(cache_dir: &Path) -> anyhow::Result<Caches> {
        let dir = directory(cache_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(4).max_readers(256);
        // SAFETY: heed asks that one process not open the same environment twice with
        // different options, and that its files not be changed by other means while open.
        // This process opens it once (`Caches` is made once per command), and other processes
        // share it through LMDB's own lock file, which is what it is designed for.
        let env = unsafe { options.open(&dir) }
            .with_context(|| format!("cannot open the client caches in {}", dir.display()))?;
        let mut txn = env.write_txn()?;
        let hashes = env.create_database(&mut txn, Some("hashes"))?;
        let answers = env.create_database(&mut txn, Some("answers"))?;
        let expiry = env.create_database(&mut txn, Some("expiry"))?;
        txn.commit()?;
        Ok(Caches {
            env,
            hashes,
            answers,
            expiry,
        })
    }

    /// The hashes of the file whose identity is `identity`, when they are known (with MD5 and
    /// SHA-1 when `all` asks for them).
    pub(crate) fn hashes(&self, identity: &str, all: bool) -> Option<FileHashes> {
        let txn = self.env.read_txn().ok()?;
        let value = self.hashes.get(&txn, identity.as_bytes()).ok()??;
        let hashes = decode_hashes(value)?;
        (!all || (hashes.md5.is_some() && hashes.sha1.is_some())).then_some(hashes)
    }

    /// A fresh answer from `server` to what was `asked`.
    pub(crate) fn answer(&self, server: ServerId, asked: Asked<'_>) -> Option<Reputation> {
        let txn = self.env.read_txn().ok()?;
        let stored = self.answers.get(&txn, &answer_key(server, asked)).ok()??;
        let (expires, rest) = stored.split_first_chunk::<8>()?;
        if u64::from_be_bytes(*expires) <= now() {
            return None;
        }
        let (form, json) = rest.split_first()?;
        let mut reputation: Reputation = repnet_protocol::from_json(json).ok()?;
        if let (FORM_FILE_IMPLIED, Asked::File(hashes)) = (*form, asked) {
            reputation.object = file_object(hashes)?;
        }
        Some(reputation)
    }

    /// Keeps what a command learnt, in one transaction: files' hashes, and answers until
    /// their TTL (stale answers and explanations are not kept). Removes expired answers.
    pub(crate) fn save(
        &self,
        hashes: &[(String, FileHashes)],
        server: ServerId,
        answers: &[(Asked<'_>, &Reputation)],
    ) -> anyhow::Result<()> {
        let mut txn = self.env.write_txn()?;
        if !hashes.is_empty() {
            if self.hashes.len(&txn)? + hashes.len() as u64 > MAX_HASHES {
                // Bounded: past the limit, only this scan's files are remembered.
                self.hashes.clear(&mut txn)?;
            }
            for (identity, file) in hashes {
                self.hashes
                    .put(&mut txn, identity.as_bytes(), &encode_hashes(file))?;
            }
        }
        let now = now();
        let mut stored = Vec::new();
        for (asked, reputation) in answers {
            if reputation.stale || reputation.ttl == 0 {
                continue;
            }
            let key = answer_key(server, *asked);
            let expires = now + u64::from(reputation.ttl);
            let mut kept = (*reputation).clone();
            kept.explain = None;
            // A file's answer names the file by the hashes it was asked by: those are in the
            // key already, and a third of the answer's size.
            let form = match asked {
                Asked::File(hashes) if file_object(hashes).as_ref() == Some(&kept.object) => {
                    kept.object.value.clear();
                    kept.object.hashes = None;
                    FORM_FILE_IMPLIED
                }
                _ => FORM_WHOLE,
            };
            stored.clear();
            stored.extend_from_slice(&expires.to_be_bytes());
            stored.push(form);
            stored.extend_from_slice(&repnet_protocol::to_json(&kept));
            self.answers.put(&mut txn, &key, &stored)?;
            let mut index = expires.to_be_bytes().to_vec();
            index.extend_from_slice(&key);
            self.expiry.put(&mut txn, &index, &[])?;
        }
        self.sweep(&mut txn, now)?;
        txn.commit()?;
        Ok(())
    }

    /// Removes answers that expired before `now` (at most [`SWEEP_LIMIT`]).
    fn sweep(&self, txn: &mut heed::RwTxn<'_>, now: u64) -> anyhow::Result<()> {
        let mut expired = Vec::new();
        for entry in self.expiry.iter(txn)? {
            let (index, _) = entry?;
            let Some((expires, key)) = index.split_first_chunk::<8>() else {
                continue;
            };
            if u64::from_be_bytes(*expires) > now || expired.len() == SWEEP_LIMIT {
                break;
            }
            expired.push((index.to_vec(), *expires, key.to_vec()));
        }
        for (index, expires, key) in expired {
            self.expiry.delete(txn, &index)?;
            // The answer may have been replaced since, with a later expiry: keep that one.
            let current = self
                .answers
                .get(txn, &key)?
                .and_then(|stored| stored.first_chunk::<8>().copied());
            if current == Some(expires) {
                self.answers.delete(txn, &key)?;
            }
        }
        Ok(())
    }
}

/// What an answer answers: a file by the hashes it was asked by, or an object by its kind
/// and canonical text.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Asked<'a> {
    File(&'a FileHashes),
    Object(ObjectKind, &'a str),
}

/// The stored answer is the JSON as received.
const FORM_WHOLE: u8 = 0;
/// The stored answer's object is the file the key names (see [`file_object`]).
const FORM_FILE_IMPLIED: u8 = 1;

/// The key of an answer: the server, then the file's digests (the key stays short and says
/// what was asked), or a hash of the object's kind and text (URLs can be longer than LMDB's
/// keys).
fn answer_key(server: ServerId, asked: Asked<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + 2 + 68);
    key.extend_from_slice(&server.0);
    match asked {
        Asked::File(hashes) => {
            key.push(b'f');
            let flags = u8::from(hashes.sha256.is_some())
                | u8::from(hashes.sha1.is_some()) << 1
                | u8::from(hashes.md5.is_some()) << 2;
            key.push(flags);
            for hash in hashes.iter() {
                key.extend_from_slice(hash.as_bytes());
            }
        }
        Asked::Object(kind, value) => {
            key.push(b'o');
            let mut hasher = sha2::Sha256::new();
            hasher.update(kind.as_str());
            hasher.update(b":");
            hasher.update(value);
            key.extend_from_slice(&hasher.finalize()[..16]);
        }
    }
    key
}

/// How a server names a file asked for by `hashes`: by the strongest, with all of them.
fn file_object(hashes: &FileHashes) -> Option<ObjectRef> {
    let primary = hashes.primary()?;
    Some(ObjectRef {
        kind: ObjectKind::File.as_str().to_owned(),
        value: primary.to_string(),
        hashes: Some(repnet_protocol::Hashes {
            md5: hashes.md5.map(|h| h.to_string()),
            sha1: hashes.sha1.map(|h| h.to_string()),
            sha256: hashes.sha256.map(|h| h.to_string()),
        }),
    })
}

fn encode_hashes(hashes: &FileHashes) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(hashes.sha256.as_ref().map_or(&[0u8; 32], |h| h.as_bytes()));
    if let Some(md5) = &hashes.md5 {
        out[0] |= 1;
        out.extend_from_slice(md5.as_bytes());
    }
    if let Some(sha1) = &hashes.sha1 {
        out[0] |= 2;
        out.extend_from_slice(sha1.as_bytes());
    }
    out
}

fn decode_hashes(value: &[u8]) -> Option<FileHashes> {
    let (flags, rest) = value.split_first()?;
    let (sha256, mut rest) = rest.split_first_chunk::<32>()?;
    let mut hashes = FileHashes {
        sha256: Some(Sha256(*sha256)),
        ..FileHashes::default()
    };
    if flags & 1 != 0 {
        let (md5, more) = rest.split_first_chunk::<16>()?;
        hashes.md5 = Some(Md5(*md5));
        rest = more;
    }
    if flags & 2 != 0 {
        let (sha1, _) = rest.split_first_chunk::<20>()?;
        hashes.sha1 = Some(Sha1(*sha1));
    }
    Some(hashes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ttl: u32, verdict: repnet_model::Verdict) -> Reputation {
        let object =
            repnet_model::Object::parse(repnet_model::ObjectKind::Domain, "a.example").unwrap();
        let policy = repnet_model::TtlPolicy {
            known: ttl,
            unknown: ttl,
        };
        let mut reputation =
            Reputation::from_model(&repnet_model::Reputation::unknown(object, &policy), false);
        reputation.verdict = verdict.into();
        reputation
    }

    #[test]
    fn hashes_and_answers_are_kept_by_identity_and_by_server() {
        let dir = tempfile::tempdir().unwrap();
        let caches = Caches::open(dir.path()).unwrap();
        let file = FileHashes::of(b"some file");
        let global = ServerId::new("http://global.example:8080/", None);
        let private = ServerId::new("http://private.example:8080", Some("KEY"));
        assert_ne!(global, private);
        assert_eq!(global, ServerId::new("HTTP://global.example:8080", None));
        assert_ne!(
            private,
            ServerId::new("http://private.example:8080", Some("OTHER"))
        );
        let bad = answer(3600, repnet_model::Verdict::Untrusted);
        let good = answer(3600, repnet_model::Verdict::Trusted);
        let domain = Asked::Object(ObjectKind::Domain, "a.example");
        caches
            .save(&[("1:2:3:4.5".to_owned(), file)], global, &[(domain, &bad)])
            .unwrap();
        caches.save(&[], private, &[(domain, &good)]).unwrap();
        assert_eq!(caches.hashes("1:2:3:4.5", true), Some(file));
        assert_eq!(caches.hashes("1:2:3:4.6", false), None);
        let sha256_only = FileHashes {
            sha256: file.sha256,
            ..FileHashes::default()
        };
        caches
            .save(&[("9:9:9:9.9".to_owned(), sha256_only)], global, &[])
            .unwrap();
        assert_eq!(caches.hashes("9:9:9:9.9", false), Some(sha256_only));
        assert_eq!(
            caches.hashes("9:9:9:9.9", true),
            None,
            "MD5 and SHA-1 are needed"
        );
        assert_eq!(
            caches.answer(global, domain).unwrap().verdict,
            repnet_protocol::Verdict::Untrusted
        );
        assert_eq!(
            caches.answer(private, domain).unwrap().verdict,
            repnet_protocol::Verdict::Trusted
        );
        assert!(
            caches
                .answer(global, Asked::Object(ObjectKind::Domain, "b.example"))
                .is_none()
        );
        // A file's answer comes back whole, though stored without its object; by the hashes
        // it was asked by only.
        let object = repnet_model::Object::File(file.primary().unwrap());
        let policy = repnet_model::TtlPolicy::default();
        let answer = Reputation::from_model(
            &repnet_model::Reputation::assess(object, file, Vec::new(), 0, &policy),
            false,
        );
        caches
            .save(&[], global, &[(Asked::File(&file), &answer)])
            .unwrap();
        assert_eq!(caches.answer(global, Asked::File(&file)), Some(answer));
        assert_eq!(caches.answer(global, Asked::File(&sha256_only)), None);
    }

    #[test]
    fn expired_and_stale_answers_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let caches = Caches::open(dir.path()).unwrap();
        let server = ServerId::new("http://s.example", None);
        let mut stale = answer(3600, repnet_model::Verdict::Untrusted);
        stale.stale = true;
        let asked = Asked::Object(ObjectKind::Domain, "stale.example");
        caches.save(&[], server, &[(asked, &stale)]).unwrap();
        assert!(caches.answer(server, asked).is_none());
        // An answer already past its expiry is swept at the next save.
        let mut txn = caches.env.write_txn().unwrap();
        let old = Asked::Object(ObjectKind::Domain, "old.example");
        let key = answer_key(server, old);
        let mut stored = 5u64.to_be_bytes().to_vec();
        stored.extend_from_slice(b"{}");
        caches.answers.put(&mut txn, &key, &stored).unwrap();
        let mut index = 5u64.to_be_bytes().to_vec();
        index.extend_from_slice(&key);
        caches.expiry.put(&mut txn, &index, &[]).unwrap();
        txn.commit().unwrap();
        assert!(caches.answer(server, old).is_none());
        caches.save(&[], server, &[]).unwrap();
        let txn = caches.env.read_txn().unwrap();
        assert_eq!(caches.answers.len(&txn).unwrap(), 0);
        assert_eq!(caches.expiry.len(&txn).unwrap(), 0);
    }
}
