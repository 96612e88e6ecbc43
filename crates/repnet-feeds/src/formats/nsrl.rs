//! NIST's National Software Reference Library: the RDSv3 SQLite database (its `FILE` view)
//! and the legacy `NSRLFile.txt`. Known software: trusted, with moderate confidence (being
//! known does not make software harmless, and a malicious feed should win over it).

use repnet_model::{Category, FileHash, FileHashes, Md5, Object, Sha1, Sha256, Verdict};

use super::{Flow, LineFormat, entry};
use crate::input::{Body, Opened};
use crate::text::{Columns, Row, split_csv};
use crate::{FeedError, Sink};

const CONFIDENCE: u8 = 60;

fn known(object: Object, hashes: FileHashes) -> crate::Entry {
    let mut entry = entry(
        object,
        Verdict::Trusted,
        CONFIDENCE,
        &[Category::KnownSoftware],
    );
    entry.hashes = hashes;
    entry
}

/// SQLite's work on a database is bounded by its size, in virtual-machine steps: a base for
/// the smallest databases (about a second) plus so many per KiB. Reading the `FILE` view of a
/// 250 MB RDSv3 database (a join, with the index SQLite builds for it) took 117 steps per
/// KiB; a view that recurses forever runs out of steps instead of holding the import — and
/// every import behind it — for ever.
const BASE_STEPS: u64 = 50_000_000;
const STEPS_PER_KIB: u64 = 3_000;
/// Steps between two looks at the budget and the cancel flag: about a millisecond.
const CHECK_EVERY_STEPS: u32 = 100_000;
/// The longest value SQLite may make (a hash is 64 characters): a view that builds a string
/// of gigabytes fails at once instead.
const MAX_VALUE_BYTES: i32 = 1 << 20;

/// Why SQLite stopped a statement from the progress handler.
const STOPPED_CANCELLED: u8 = 1;
const STOPPED_BUDGET: u8 = 2;

/// Reads `SELECT sha256, sha1, md5 FROM FILE`, row by row, within the step budget.
pub(crate) fn sqlite(opened: &mut Opened, sink: &mut Sink<'_>) -> Result<(), FeedError> {
    let Body::Sqlite { path, .. } = &opened.body else {
        return Ok(());
    };
    let format_error = |message: String| FeedError::Format {
        path: opened.name.clone(),
        message,
    };
    let mut connection =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format_error(format!("cannot open the SQLite database: {e}")))?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let budget = BASE_STEPS.saturating_add(STEPS_PER_KIB.saturating_mul(size / 1024));
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let limits = connection
        .set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
            MAX_VALUE_BYTES,
        )
        .and_then(|_| {
            let cancel = sink.options.cancel.clone();
            let stopped = std::sync::Arc::clone(&stopped);
            let mut steps = 0u64;
            connection.progress_handler(
                CHECK_EVERY_STEPS as std::ffi::c_int,
                Some(move || {
                    steps += u64::from(CHECK_EVERY_STEPS);
                    let why = match () {
                        () if cancel.is_cancelled() => STOPPED_CANCELLED,
                        () if steps > budget => STOPPED_BUDGET,
                        () => return false,
                    };
                    stopped.store(why, std::sync::atomic::Ordering::Relaxed);
                    true
                }),
            )
        });
    limits.map_err(|e| format_error(format!("cannot set limits on the SQLite database: {e}")))?;
    let read_error = |error: rusqlite::Error| match stopped
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        STOPPED_CANCELLED => FeedError::Cancelled,
        STOPPED_BUDGET => format_error(format!(
            "reading the FILE view took more than {budget} SQLite steps, the most a database of {size} bytes may take: it is not an NSRL database (a view that never ends?)"
        )),
        _ if matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::TooBig)) => {
            format_error(format!(
                "the FILE view gives a value longer than {MAX_VALUE_BYTES} bytes: it is not an NSRL database"
            ))
        }
        _ => format_error(format!("cannot read the FILE view: {error}")),
    };
    let mut statement = connection
        .prepare("SELECT sha256, sha1, md5 FROM FILE")
        .map_err(|e| {
            format_error(format!(
                "is not an NSRL RDSv3 database (no FILE view with sha256, sha1, md5): {e}"
            ))
        })?;
    let mut rows = statement.query([]).map_err(read_error)?;
    let mut number = 0u64;
    while let Some(row) = rows.next().map_err(read_error)? {
        number += 1;
        sink.row();
        let text = |index: usize| row.get::<_, Option<String>>(index).ok().flatten();
        let (sha256, sha1, md5) = (text(0), text(1), text(2));
        let hashes = FileHashes {
            sha256: sha256.as_deref().and_then(|h| Sha256::from_hex(h).ok()),
            sha1: sha1.as_deref().and_then(|h| Sha1::from_hex(h).ok()),
            md5: md5.as_deref().and_then(|h| Md5::from_hex(h).ok()),
        };
        match hashes.sha256 {
            Some(sha256) => sink.entry(known(Object::File(FileHash::Sha256(sha256)), hashes))?,
            None => {
                let value = sha256.unwrap_or_default();
                sink.bad(
                    number,
                    "invalid hash",
                    format!("row {number}: sha256 {value:?} is not a SHA-256"),
                );
            }
        }
    }
    Ok(())
}

/// `NSRLFile.txt`: `"SHA-1","MD5","CRC32","FileName",…` with a header line. No SHA-256, so
/// the file is stored under its SHA-1 and its MD5 both, each naming the other.
#[derive(Default)]
pub(crate) struct Legacy {
    columns: Option<Columns>,
}

impl LineFormat for Legacy {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        if line.trim().is_empty() {
            return Ok(Flow::Continue);
        }
        if self.columns.is_none()
            && let Some(columns) = Columns::from_header(line, &["sha-1", "md5"])
        {
            self.columns = Some(columns);
            return Ok(Flow::Continue);
        }
        sink.row();
        let columns = self
            .columns
            .clone()
            .unwrap_or_else(|| Columns::new(&["sha-1", "md5", "crc32", "filename"]));
        let Some(fields) = split_csv(line) else {
            sink.bad(number, "malformed CSV", "a quoted field is not closed");
            return Ok(Flow::Continue);
        };
        let row = Row {
            fields: &fields,
            columns: &columns,
        };
        let sha1 = row.get("sha-1").map(|v| (v, Sha1::from_hex(v)));
        let md5 = row.get("md5").and_then(|v| Md5::from_hex(v).ok());
        match sha1 {
            Some((_, Ok(sha1))) => {
                // Each record names the other hash: a lookup by either finds both (and shows
                // both hashes), as the RDSv3 import's SHA-256 links its three.
                let hashes = FileHashes {
                    md5,
                    sha1: Some(sha1),
                    sha256: None,
                };
                sink.entry(known(Object::File(FileHash::Sha1(sha1)), hashes))?;
                if let Some(md5) = md5 {
                    sink.also(known(Object::File(FileHash::Md5(md5)), hashes))?;
                }
            }
            Some((value, Err(error))) => {
                sink.bad(number, "invalid hash", format!("SHA-1 {value:?}: {error}"))
            }
            None => sink.bad(number, "missing hash", "SHA-1 is empty"),
        }
        Ok(Flow::Continue)
    }
}
