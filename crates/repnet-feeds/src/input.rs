//! Opening a feed: a file or standard input, plain, gzip or zip; SQLite databases as files.
//!
//! The first bytes are read ahead so that the format can be recognised before parsing, and
//! handed back in front of the rest of the stream.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FeedError;

/// Where a feed comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    /// A file known to the user by another name (an upload, a download): messages say `name`.
    Named {
        path: PathBuf,
        name: String,
    },
    Stdin,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Path(path) => write!(f, "{}", path.display()),
            Input::Named { name, .. } => f.write_str(name),
            Input::Stdin => f.write_str("<stdin>"),
        }
    }
}

/// How many bytes are read ahead for recognising the format.
const PEEK: usize = 64 * 1024;

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// An opened feed.
pub(crate) struct Opened {
    pub(crate) name: String,
    /// The first bytes of the (decompressed) content.
    pub(crate) head: Vec<u8>,
    pub(crate) body: Body,
    /// Bytes of the file read so far (compressed bytes for archives), for progress.
    pub(crate) consumed: Arc<AtomicU64>,
    pub(crate) size: Option<u64>,
}

pub(crate) enum Body {
    /// The rest of the content after `head`.
    Stream(Box<dyn Read + Send>),
    /// A SQLite database, as a file.
    Sqlite {
        path: PathBuf,
        /// A temporary copy (of standard input, or from an archive), removed on drop.
        _temporary: Option<tempfile::TempPath>,
    },
}

impl Opened {
    /// The whole content as a buffered stream (`head` first). Empty for SQLite.
    pub(crate) fn reader(&mut self) -> Box<dyn BufRead + Send + '_> {
        let head = Cursor::new(std::mem::take(&mut self.head));
        match &mut self.body {
            Body::Stream(rest) => Box::new(BufReader::with_capacity(1 << 20, head.chain(rest))),
            Body::Sqlite { .. } => Box::new(BufReader::new(head)),
        }
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self.body, Body::Sqlite { .. })
    }
}

/// How far a compressed feed may expand.
#[derive(Debug, Clone, Copy)]
struct Expansion {
    max_bytes: u64,
    max_ratio: u64,
}

/// Below this, the ratio is not checked: a small file's headers compress oddly.
const RATIO_GRACE: u64 = 64 << 20;

/// The decompressed stream of an archive, failing once it expands beyond its limits (a
/// decompression bomb) rather than reading on.
struct Bounded<R> {
    inner: R,
    limits: Expansion,
    /// Compressed bytes read so far (the file's).
    compressed: Arc<AtomicU64>,
    produced: u64,
}

impl<R> Bounded<R> {
    fn new(inner: R, limits: Expansion, compressed: Arc<AtomicU64>) -> Bounded<R> {
        Bounded {
            inner,
            limits,
            compressed,
            produced: 0,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.produced = self.produced.saturating_add(read as u64);
        if self.produced > self.limits.max_bytes {
            return Err(std::io::Error::other(format!(
                "it expands to more than {} bytes: raise max_decompressed_bytes (repnet import --max-decompressed-gib) if the feed is that large",
                self.limits.max_bytes
            )));
        }
        let compressed = self.compressed.load(Ordering::Relaxed).max(1);
        if self.produced > RATIO_GRACE && self.produced / compressed > self.limits.max_ratio {
            return Err(std::io::Error::other(format!(
                "it expands to more than {} times its compressed size ({} bytes from {compressed}): a decompression bomb, or a feed that needs a higher max_expansion_ratio (repnet import --max-expansion-ratio)",
                self.limits.max_ratio, self.produced
            )));
        }
        Ok(read)
    }
}

/// Counts the bytes read through it, and stops reading once the import is cancelled.
struct Counting<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
    cancel: crate::Cancel,
}

impl<R: std::io::Seek> std::io::Seek for Counting<R> {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(position)
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("the import was cancelled"));
        }
        let read = self.inner.read(buffer)?;
        self.consumed.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

fn read_error(name: &str) -> impl Fn(std::io::Error) -> FeedError + '_ {
    move |source| FeedError::Read {
        path: name.to_owned(),
        source,
    }
}

/// Reads up to `PEEK` bytes.
fn read_head(reader: &mut dyn Read, name: &str) -> Result<Vec<u8>, FeedError> {
    let mut head = Vec::with_capacity(PEEK);
    reader
        .take(PEEK as u64)
        .read_to_end(&mut head)
        .map_err(read_error(name))?;
    Ok(head)
}

/// Copies a stream to a temporary file in `dir`.
fn spill(
    mut reader: impl Read,
    dir: &Path,
    name: &str,
) -> Result<tempfile::NamedTempFile, FeedError> {
    std::fs::create_dir_all(dir).map_err(read_error(name))?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("{}feed-", repnet_store::TEMP_PREFIX))
        .tempfile_in(dir)
        .map_err(read_error(name))?;
    std::io::copy(&mut reader, file.as_file_mut()).map_err(read_error(name))?;
    Ok(file)
}

pub(crate) fn open(input: &Input, options: &crate::FeedOptions) -> Result<Opened, FeedError> {
    let temp_dir = options.temp_dir.as_path();
    let limits = Expansion {
        max_bytes: options.max_decompressed_bytes,
        max_ratio: options.max_expansion_ratio,
    };
    let name = input.to_string();
    let consumed = Arc::new(AtomicU64::new(0));
    let (raw, size, path): (Box<dyn Read + Send>, Option<u64>, Option<PathBuf>) = match input {
        Input::Path(path) | Input::Named { path, .. } => {
            let file = File::open(path).map_err(read_error(&name))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size, Some(path.clone()))
        }
        Input::Stdin => (Box::new(std::io::stdin()), None, None),
    };
    let mut counted: Box<dyn Read + Send> = Box::new(Counting {
        inner: raw,
        consumed: Arc::clone(&consumed),
        cancel: options.cancel.clone(),
    });
    let magic = read_head(&mut (&mut counted).take(4), &name)?;
    let mut rest: Box<dyn Read + Send> = Box::new(Cursor::new(magic.clone()).chain(counted));

    if magic.starts_with(&[0x1f, 0x8b]) {
        rest = Box::new(Bounded::new(
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, rest)),
            limits,
            Arc::clone(&consumed),
        ));
    } else if magic.starts_with(b"PK\x03\x04") {
        // A zip archive needs seeking: read it from its file, or spill standard input.
        let (file, keep) = match &path {
            Some(path) => (File::open(path).map_err(read_error(&name))?, None),
            None => {
                let spilled = spill(rest, temp_dir, &name)?;
                (
                    spilled.reopen().map_err(read_error(&name))?,
                    Some(spilled.into_temp_path()),
                )
            }
        };
        let file = Counting {
            inner: file,
            consumed: Arc::clone(&consumed),
            cancel: options.cancel.clone(),
        };
        rest = Box::new(Bounded::new(
            zip_entry(file, keep, &name)?,
            limits,
            Arc::clone(&consumed),
        ));
    }

    let mut head = read_head(&mut rest, &name)?;
    if head.starts_with(SQLITE_MAGIC) {
        let (path, keep) = match (&path, magic.starts_with(SQLITE_MAGIC)) {
            (Some(path), true) => (path.clone(), None),
            _ => {
                let spilled = spill(
                    Cursor::new(std::mem::take(&mut head)).chain(rest),
                    temp_dir,
                    &name,
                )?;
                let temp = spilled.into_temp_path();
                (temp.to_path_buf(), Some(temp))
            }
        };
        return Ok(Opened {
            name,
            head: SQLITE_MAGIC.to_vec(),
            body: Body::Sqlite {
                path,
                _temporary: keep,
            },
            consumed,
            size,
        });
    }
    Ok(Opened {
        name,
        head,
        body: Body::Stream(rest),
        consumed,
        size,
    })
}

/// The largest file of a zip archive, decompressed on a thread into a bounded channel (the
/// archive's reader borrows the archive, which a stream handed out cannot). A channel, not
/// an OS pipe: a reader that stops early (an error, a decompression bomb) must end the
/// thread quietly, where a pipe would raise SIGPIPE, which kills a command-line process.
fn zip_entry(
    file: Counting<File>,
    keep: Option<tempfile::TempPath>,
    name: &str,
) -> Result<Box<dyn Read + Send>, FeedError> {
    let format_error = |message: String| FeedError::Format {
        path: name.to_owned(),
        message,
    };
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format_error(format!("is not a readable zip archive: {e}")))?;
    let largest = (0..archive.len())
        .filter_map(|index| {
            let entry = archive.by_index(index).ok()?;
            entry.is_file().then(|| (entry.size(), index))
        })
        .max()
        .map(|(_, index)| index)
        .ok_or_else(|| format_error("is a zip archive with no file in it".to_owned()))?;
    // Four chunks of 64 KiB in flight at most.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::Builder::new()
        .name("repnet-unzip".to_owned())
        .spawn(move || {
            let _keep = keep;
            let mut entry = match archive.by_index(largest) {
                Ok(entry) => entry,
                Err(error) => {
                    let _ = sender.send(Err(std::io::Error::other(error)));
                    return;
                }
            };
            // A read error (damaged data, a checksum that does not match) is sent as an
            // error: the importer would otherwise take the end of the data for the end of
            // the feed and retract everything after the damage. A send error means the
            // reader stopped (an error, or enough rows, on its side).
            loop {
                let mut buffer = vec![0u8; 1 << 16];
                match entry.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => {
                        buffer.truncate(read);
                        if sender.send(Ok(buffer)).is_err() {
                            break;
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        break;
                    }
                }
            }
        })
        .map_err(read_error(name))?;
    Ok(Box::new(Unzipped {
        receiver,
        current: Vec::new(),
        at: 0,
    }))
}

/// The decompressed entry, as the thread sends it, ending in the thread's error if it had
/// one rather than in a clean end of data.
struct Unzipped {
    receiver: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for Unzipped {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(error)) => {
                    return Err(std::io::Error::new(
                        error.kind(),
                        format!("the zip archive is damaged: {error}"),
                    ));
                }
                // The thread is done, having sent everything.
                Err(_) => return Ok(0),
            }
        }
        let len = buffer.len().min(self.current.len() - self.at);
        buffer[..len].copy_from_slice(&self.current[self.at..self.at + len]);
        self.at += len;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn content(opened: &mut Opened) -> String {
        let mut text = String::new();
        opened.reader().read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn plain_gzip_and_zip_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let text = "line one\nline two\n".repeat(10_000);
        let plain = dir.path().join("feed.txt");
        std::fs::write(&plain, &text).unwrap();
        let gzip = dir.path().join("feed.txt.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(&gzip).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();
        let zipped = dir.path().join("feed.zip");
        let mut writer = zip::ZipWriter::new(File::create(&zipped).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("readme.txt", options).unwrap();
        writer.write_all(b"a small file").unwrap();
        writer.start_file("feed.txt", options).unwrap();
        writer.write_all(text.as_bytes()).unwrap();
        writer.finish().unwrap();
        for path in [plain, gzip, zipped] {
            let options =
                crate::FeedOptions::new(repnet_model::Timestamp(0), dir.path().to_path_buf());
            let mut opened = open(&Input::Path(path.clone()), &options).unwrap();
            assert_eq!(content(&mut opened), text, "{}", path.display());
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let options = crate::FeedOptions::new(repnet_model::Timestamp(0), "/tmp".into());
        let error = match open(&Input::Path("/nonexistent/feed.csv".into()), &options) {
            Err(error) => error,
            Ok(_) => panic!("opened a missing file"),
        };
        assert!(
            error.to_string().contains("/nonexistent/feed.csv"),
            "{error}"
        );
    }
}
