//! Feeds of one value per line: ClamAV hash signatures, Tranco's top list, and plain lists of
//! hashes, URLs or domains (OpenPhish is a list of URLs).

use repnet_model::{Category, Domain, FileHash, Object, ObjectKind, Verdict};

use super::{Flow, LineFormat, entry, threat};
use crate::{FeedError, Sink};

/// ClamAV `.hdb` (`md5:size:name`) and `.hsb` (`sha1-or-sha256:size:name`, or
/// `hash:*:name:flevel`): untrusted files, the signature name as the threat.
pub(crate) struct Clamav;

impl LineFormat for Clamav {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(Flow::Continue);
        }
        sink.row();
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() < 3 {
            sink.bad(number, "too few fields", "expected hash:size:name");
            return Ok(Flow::Continue);
        }
        let hash = match FileHash::from_hex(parts[0]) {
            Ok(hash) => hash,
            Err(error) => {
                sink.bad(
                    number,
                    "invalid hash",
                    format!("hash {:?}: {error}", parts[0]),
                );
                return Ok(Flow::Continue);
            }
        };
        if parts[1] != "*" && parts[1].parse::<u64>().is_err() {
            sink.bad(
                number,
                "invalid size",
                format!("size {:?} is not a number or *", parts[1]),
            );
            return Ok(Flow::Continue);
        }
        let mut entry = entry(
            Object::File(hash),
            Verdict::Untrusted,
            90,
            &[Category::Malware],
        );
        entry.threat = threat(Some(parts[2]));
        sink.entry(entry)?;
        Ok(Flow::Continue)
    }
}

/// Tranco (and Umbrella-style) top lists, `rank,domain` without a header: the top domains are
/// trusted with low weight (popular is not the same as safe), the rest is not read.
pub(crate) struct Tranco;

impl LineFormat for Tranco {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(Flow::Continue);
        }
        let top = sink.top();
        let Some((rank, domain)) = line.split_once(',') else {
            sink.row();
            sink.bad(number, "malformed row", "expected rank,domain");
            return Ok(Flow::Continue);
        };
        let Ok(rank) = rank.trim().parse::<u64>() else {
            sink.row();
            sink.bad(
                number,
                "malformed row",
                format!("rank {rank:?} is not a number"),
            );
            return Ok(Flow::Continue);
        };
        if rank > top {
            return Ok(Flow::Stop);
        }
        sink.row();
        match Domain::new(domain.trim()) {
            Ok(domain) => sink.entry(entry(
                Object::Domain(domain),
                Verdict::Trusted,
                20,
                &[Category::Popular],
            ))?,
            Err(error) => sink.bad(
                number,
                "invalid domain",
                format!("domain {domain:?}: {error}"),
            ),
        }
        Ok(Flow::Continue)
    }
}

/// One value per line; `#` comments and blank lines skipped. For hashes, anything after the
/// hash on the line (a file name, as `sha256sum` writes) is ignored.
pub(crate) struct Plain {
    kind: ObjectKind,
    categories: &'static [Category],
}

impl Plain {
    pub(crate) fn hashes() -> Plain {
        Plain {
            kind: ObjectKind::File,
            categories: &[],
        }
    }

    pub(crate) fn urls() -> Plain {
        Plain {
            kind: ObjectKind::Url,
            categories: &[],
        }
    }

    pub(crate) fn domains() -> Plain {
        Plain {
            kind: ObjectKind::Domain,
            categories: &[],
        }
    }

    pub(crate) fn openphish() -> Plain {
        Plain {
            kind: ObjectKind::Url,
            categories: &[Category::Phishing],
        }
    }
}

impl LineFormat for Plain {
    fn line(&mut self, number: u64, line: &str, sink: &mut Sink<'_>) -> Result<Flow, FeedError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(Flow::Continue);
        }
        sink.row();
        let value = match self.kind {
            ObjectKind::File => line.split_ascii_whitespace().next().unwrap_or(line),
            _ => line,
        };
        match Object::parse(self.kind, value) {
            Ok(object) => sink.entry(entry(object, Verdict::Untrusted, 80, self.categories))?,
            Err(error) => {
                let kind = match self.kind {
                    ObjectKind::File => "invalid hash",
                    ObjectKind::Url => "invalid URL",
                    _ => "invalid domain",
                };
                sink.bad(number, kind, format!("{value:?}: {error}"));
            }
        }
        Ok(Flow::Continue)
    }
}
