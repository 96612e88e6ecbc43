//! The parsers, one module per family of formats, and the line-reading loop they share.

mod csv;
mod json;
mod lists;
mod nsrl;

use std::io::BufRead;
use std::sync::atomic::Ordering;

use repnet_model::{Categories, Category, Confidence, FileHashes, Object, ThreatName, Verdict};

use crate::input::Opened;
use crate::{Entry, FeedError, Format, Sink};

/// Whether to go on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// A format read line by line.
pub(crate) trait LineFormat {
    /// Handles line `number` (1-based, without its line ending).
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError>;
}

pub(crate) fn parse(
    format: Format,
    opened: &mut Opened,
    sink: &mut Sink<'_>,
) -> Result<(), FeedError> {
    match format {
        Format::Nsrl if opened.is_sqlite() => nsrl::sqlite(opened, sink),
        Format::Stix => json::stix(opened, sink),
        Format::MispWarninglist => json::misp(opened, sink),
        Format::Urlhaus => lines(opened, sink, &mut csv::Urlhaus::default()),
        Format::Malwarebazaar => lines(opened, sink, &mut csv::Malwarebazaar::default()),
        Format::Threatfox => lines(opened, sink, &mut csv::Threatfox::default()),
        Format::Phishtank => lines(opened, sink, &mut csv::Phishtank::default()),
        Format::Nsrl => lines(opened, sink, &mut nsrl::Legacy::default()),
        Format::Clamav => lines(opened, sink, &mut lists::Clamav),
        Format::Tranco => lines(opened, sink, &mut lists::Tranco),
        Format::Openphish => lines(opened, sink, &mut lists::Plain::openphish()),
        Format::Hashlist => lines(opened, sink, &mut lists::Plain::hashes()),
        Format::Urllist => lines(opened, sink, &mut lists::Plain::urls()),
        Format::Domainlist => lines(opened, sink, &mut lists::Plain::domains()),
        Format::Auto => Err(FeedError::Format {
            path: opened.name.clone(),
            message: "no format given".to_owned(),
        }),
    }
}

/// The longest line read: no feed's row is anywhere near it, and a longer one (a file of
/// zeros, a line that never ends) would otherwise be held whole in memory.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// Reads one line (up to and including `\n`) into `buffer`, keeping at most
/// [`MAX_LINE_BYTES`] of it; answers the bytes read (0 at the end) and whether the line was
/// longer (its rest is read and dropped).
fn read_line(reader: &mut dyn BufRead, buffer: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let (mut read, mut too_long) = (0, false);
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok((read, too_long));
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buffer.len());
        if chunk.len() > room {
            too_long = true;
        }
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        read += used;
        if done {
            return Ok((read, too_long));
        }
    }
}

/// Reads `opened` line by line into `format`. A line that is not UTF-8, or longer than
/// [`MAX_LINE_BYTES`], is a bad row.
fn lines(
    opened: &mut Opened,
    sink: &mut Sink<'_>,
    format: &mut dyn LineFormat,
) -> Result<(), FeedError> {
    let consumed = std::sync::Arc::clone(&opened.consumed);
    let size = opened.size;
    let name = opened.name.clone();
    let mut reader = opened.reader();
    let mut buffer = Vec::with_capacity(1024);
    let mut number = 0u64;
    loop {
        buffer.clear();
        let (read, too_long) =
            read_line(&mut reader, &mut buffer).map_err(|source| FeedError::Read {
                path: name.clone(),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        if number.is_multiple_of(16_384) {
            sink.progress.bytes(consumed.load(Ordering::Relaxed), size);
        }
        if too_long {
            sink.row();
            sink.bad(
                number,
                "line too long",
                format!("the line is {read} bytes; a row is at most {MAX_LINE_BYTES} bytes"),
            );
            continue;
        }
        let Ok(line) = std::str::from_utf8(&buffer) else {
            sink.row();
            sink.bad(number, "not UTF-8", "the line is not valid UTF-8 text");
            continue;
        };
        if format.line(number, line.trim_end_matches(['\n', '\r']), sink)? == Flow::Stop {
            break;
        }
    }
    sink.progress.bytes(consumed.load(Ordering::Relaxed), size);
    Ok(())
}

/// An entry with the feed's own verdict, threat, categories and confidence.
pub(crate) fn entry(
    object: Object,
    verdict: Verdict,
    confidence: u8,
    categories: &[Category],
) -> Entry {
    Entry {
        object,
        hashes: FileHashes::default(),
        verdict,
        threat: None,
        categories: categories.iter().copied().collect::<Categories>(),
        confidence: Confidence::new(i64::from(confidence.min(100))).unwrap_or(Confidence::MAX),
        first_seen: None,
    }
}

/// A threat name from a feed's text, when it is one.
pub(crate) fn threat(text: Option<&str>) -> Option<ThreatName> {
    text.and_then(|text| ThreatName::new(text).ok())
}
