//! Licence keys in the `licences` database: under the SHA-256 of the key (never the key), the
//! key's id, label, dates and revocation. Not part of the knowledge base: they have no
//! sequence numbers and are never sent to another server.
//!
//! Value, version 1 (integers LEB128 varints):
//!
//! ```text
//! u8 version = 1
//! varint id length, id bytes (UTF-8)
//! u8 flags: 1 = label, 2 = expires, 4 = revoked, 8 = last_used follow
//! varint created (Unix seconds)
//! [varint label length, label bytes] [varint expires] [varint revoked] [varint last_used]
//! ```

use std::sync::PoisonError;

use repnet_model::{Sha256, Timestamp};

use super::LmdbStore;
use crate::record::{DecodeError, Reader, put_varint};
use crate::{Licence, StoreError};

const VERSION: u8 = 1;
const FLAG_LABEL: u8 = 1;
const FLAG_EXPIRES: u8 = 2;
const FLAG_REVOKED: u8 = 4;
const FLAG_LAST_USED: u8 = 8;

pub(crate) fn encode(licence: &Licence) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    put_varint(&mut out, licence.id.len() as u64);
    out.extend_from_slice(licence.id.as_bytes());
    let mut flags = 0;
    for (present, flag) in [
        (licence.label.is_some(), FLAG_LABEL),
        (licence.expires.is_some(), FLAG_EXPIRES),
        (licence.revoked.is_some(), FLAG_REVOKED),
        (licence.last_used.is_some(), FLAG_LAST_USED),
    ] {
        if present {
            flags |= flag;
        }
    }
    out.push(flags);
    put_varint(&mut out, licence.created.0);
    if let Some(label) = &licence.label {
        put_varint(&mut out, label.len() as u64);
        out.extend_from_slice(label.as_bytes());
    }
    for time in [licence.expires, licence.revoked, licence.last_used]
        .into_iter()
        .flatten()
    {
        put_varint(&mut out, time.0);
    }
    out
}

pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Licence, DecodeError> {
    let key_sha256 = <[u8; 32]>::try_from(key)
        .map(Sha256)
        .map_err(|_| DecodeError::Malformed("licence key hash"))?;
    let mut reader = Reader::new(bytes);
    match reader.u8()? {
        VERSION => {}
        other => return Err(DecodeError::UnknownVersion(other)),
    }
    let text = |reader: &mut Reader<'_>| -> Result<String, DecodeError> {
        let len = reader.varint()? as usize;
        let bytes = reader.slice(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("licence text"))
    };
    let id = text(&mut reader)?;
    let flags = reader.u8()?;
    let created = Timestamp(reader.varint()?);
    let label = if flags & FLAG_LABEL != 0 {
        Some(text(&mut reader)?)
    } else {
        None
    };
    let mut time = |flag: u8| -> Result<Option<Timestamp>, DecodeError> {
        Ok(if flags & flag != 0 {
            Some(Timestamp(reader.varint()?))
        } else {
            None
        })
    };
    Ok(Licence {
        id,
        key_sha256,
        label,
        created,
        expires: time(FLAG_EXPIRES)?,
        revoked: time(FLAG_REVOKED)?,
        last_used: time(FLAG_LAST_USED)?,
    })
}

impl LmdbStore {
    pub(crate) fn licences(&self) -> Result<Vec<Licence>, StoreError> {
        let _map = self
            .map_guard
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let txn = self.env.read_txn().map_err(|e| self.error(e))?;
        let mut licences = Vec::new();
        for entry in self.dbs.licences.iter(&txn).map_err(|e| self.error(e))? {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            licences.push(
                decode(key, value)
                    .map_err(|error| StoreError::Corrupt(format!("licence record: {error}")))?,
            );
        }
        Ok(licences)
    }

    /// Stores `licences` (adding or replacing each, by key hash) in one transaction.
    pub(crate) fn put_licences(&self, licences: &[Licence]) -> Result<(), StoreError> {
        self.write(|writer| {
            for licence in licences {
                self.dbs
                    .licences
                    .put(
                        &mut writer.txn,
                        licence.key_sha256.as_bytes(),
                        &encode(licence),
                    )
                    .map_err(|e| self.write_error(e))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licences_round_trip_with_and_without_their_optional_fields() {
        let full = Licence {
            id: "0123456789abcdef".to_owned(),
            key_sha256: Sha256([7; 32]),
            label: Some("Example Corp — 2027".to_owned()),
            created: Timestamp(1_800_000_000),
            expires: Some(Timestamp(1_900_000_000)),
            revoked: Some(Timestamp(1_850_000_000)),
            last_used: Some(Timestamp(1_840_000_000)),
        };
        let bare = Licence {
            label: None,
            expires: None,
            revoked: None,
            last_used: None,
            ..full.clone()
        };
        for licence in [full, bare] {
            let bytes = encode(&licence);
            assert_eq!(decode(licence.key_sha256.as_bytes(), &bytes), Ok(licence));
            for cut in 0..bytes.len() {
                assert!(decode(&[7; 32], &bytes[..cut]).is_err());
            }
        }
    }
}
