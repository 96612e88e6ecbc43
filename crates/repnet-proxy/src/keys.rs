//! Device licence keys on the proxy: the key management the server uses too (`repnet_licences`:
//! hashes only, constant-time comparison, expiry, revocation), kept in `keys.json` in the
//! data directory since the proxy has no knowledge base.

use repnet_runtime::files::FileError;
use std::path::PathBuf;
use std::sync::Mutex;

use repnet_licences::Licence;
use repnet_licences::{BookError, BookFuture, KeyBook};
use repnet_model::{Sha256, Timestamp};
use serde::{Deserialize, Serialize};

/// `keys.json`: every key registered on this proxy, by hash.
#[derive(Debug)]
pub(crate) struct FileBook {
    path: PathBuf,
    /// Serialises read-modify-write of the file.
    writing: Mutex<()>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    key_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used: Option<u64>,
}

impl Stored {
    fn from_licence(licence: &Licence) -> Stored {
        Stored {
            id: licence.id.clone(),
            key_sha256: licence.key_sha256.to_string(),
            label: licence.label.clone(),
            created: licence.created.0,
            expires: licence.expires.map(|t| t.0),
            revoked: licence.revoked.map(|t| t.0),
            last_used: licence.last_used.map(|t| t.0),
        }
    }

    fn licence(&self) -> Result<Licence, repnet_model::ParseError> {
        Ok(Licence {
            id: self.id.clone(),
            key_sha256: Sha256::from_hex(&self.key_sha256)?,
            label: self.label.clone(),
            created: Timestamp(self.created),
            expires: self.expires.map(Timestamp),
            revoked: self.revoked.map(Timestamp),
            last_used: self.last_used.map(Timestamp),
        })
    }
}

impl FileBook {
    pub(crate) fn new(data: &std::path::Path) -> FileBook {
        FileBook {
            path: data.join("keys.json"),
            writing: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<Vec<Stored>, FileError> {
        let Some(bytes) = repnet_runtime::files::read_if_present(&self.path)? else {
            return Ok(Vec::new());
        };
        serde_json::from_slice(&bytes).map_err(|error| FileError::Damaged {
            path: self.path.clone(),
            reason: error.to_string(),
        })
    }
}

impl KeyBook for FileBook {
    fn licences(&self) -> BookFuture<'_, Vec<Licence>> {
        // A small file, read at start: not worth a blocking thread.
        Box::pin(async move {
            self.read()
                .map_err(BookError::new)?
                .iter()
                .map(|stored| {
                    stored.licence().map_err(|error| FileError::Damaged {
                        path: self.path.clone(),
                        reason: format!("key {}: {error}", stored.id),
                    })
                })
                .collect::<Result<_, _>>()
                .map_err(BookError::new)
        })
    }

    fn put(&self, licences: Vec<Licence>) -> BookFuture<'_, ()> {
        Box::pin(async move {
            let _one_at_a_time = self
                .writing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut stored = self.read().map_err(BookError::new)?;
            for licence in &licences {
                let entry = Stored::from_licence(licence);
                match stored.iter_mut().find(|s| s.key_sha256 == entry.key_sha256) {
                    Some(existing) => *existing = entry,
                    None => stored.push(entry),
                }
            }
            let bytes = serde_json::to_vec_pretty(&stored).unwrap_or_default();
            repnet_runtime::files::write_atomically(&self.path, &bytes).map_err(|source| {
                BookError::new(FileError::Write {
                    path: self.path.clone(),
                    source,
                })
            })
        })
    }
}
