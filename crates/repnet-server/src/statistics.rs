//! Participation: the statement (`GET /v1/statement`) and statistics (`POST /v1/statistics`).
//!
//! A batch is checked whole (a bad event refuses it, naming the field), scrubbed of personal
//! data (`repnet_model::privacy`: user folders, credentials, queries, e-mail and IP
//! addresses), its install id turned into a keyed hash (the key is the store's, rotated on a
//! schedule) and then handed to one writer task that commits every batch waiting in one
//! transaction (group commit): the `202` goes out only once the batch is on disk. Nothing of
//! the request — not the client's address, not the install id — is logged.

use repnet_protocol::ErrorCode;
use std::sync::Arc;

use repnet_model::{
    CanonicalUrl, CertificateThumbprint, FileHash, Object, Sha256, ThreatName, Timestamp, privacy,
};
use repnet_protocol::{Statement, StatisticsEvent};
use repnet_store::{StatEvent, StatKind, Store};
use tokio::sync::{mpsc, oneshot};

use repnet_http::ApiError;

const MAX_NAME_CHARS: usize = 1024;
const MAX_COMMENT_CHARS: usize = 1000;

/// The statement shown to users before they share statistics.
pub(crate) fn statement(version: u32, text: Option<String>, retention_days: u32) -> Statement {
    Statement {
        version,
        text: text.unwrap_or_else(|| {
            BUILT_IN_STATEMENT
                .trim()
                .replace("{retention_days}", &retention_days.to_string())
        }),
        categories: CATEGORIES.iter().map(|c| (*c).to_owned()).collect(),
    }
}

const BUILT_IN_STATEMENT: &str = "
In basic participation mode, this product sends only what a lookup needs: hash prefixes of
web addresses (4 bytes of the SHA-256 of each form of the address, never the URL, the domain
or the IP address) and full hashes of files (never the files, their names or their paths).
In off mode it sends nothing.

In extended participation mode, this product sends the reputation network anonymous
statistics about files and web addresses it detects or sees for the first time, and your
reports of false alarms. They help everyone: a new threat seen on many devices is blocked
everywhere within minutes, and widely used software stops causing false alarms.

No personal data is collected, processed or stored. The network never stores your IP
address, user name, host name or e-mail address. User folders in file paths are replaced by
placeholders, and query strings, fragments and credentials are removed from web addresses
before anything leaves your device, and again on arrival. Your installation is identified
only by a random number, which the server hashes with a secret key on arrival and uses only
to count distinct devices; it is never stored.

Raw statistics are deleted after {retention_days} days; only counts remain. You can see exactly what
would be sent (`repnet participation show`) and change your participation at any time
(`repnet participation off|basic|extended`).
";

const CATEGORIES: &[&str] = &[
    "hashes (SHA-256) and sizes of files detected or seen for the first time on the device",
    "the SHA-256 thumbprint of a file's signing certificate",
    "file names, with user folders replaced by placeholders",
    "web addresses of detected resources, without credentials, query strings or fragments",
    "threat names reported by the product",
    "false-positive reports, with the user's comment (e-mail and IP addresses removed)",
    "a random installation id, hashed with a secret on arrival and used only to count distinct devices",
    "the product name and version",
];

/// A batch of events and where to say whether it was stored.
pub(crate) type Pending = (
    Vec<StatEvent>,
    oneshot::Sender<Result<(), Arc<repnet_store::StoreError>>>,
);

/// Where batches wait for the writer.
pub(crate) type Queue = mpsc::Sender<Pending>;

/// What the writer takes batches from.
pub(crate) type Batches = mpsc::Receiver<Pending>;

/// Stores participants' statistics: commits every batch that is waiting in one transaction,
/// then answers each (a background worker, [`repnet_runtime::workers`]). At a stop it takes
/// no more batches and stores those already queued: an accepted batch is never lost.
pub(crate) struct Writer {
    store: Store,
    batches: Batches,
    /// Told what was stored (the console's overview).
    activity: Arc<crate::activity::Activity>,
    waiting: Vec<Pending>,
    closed: bool,
}

impl Writer {
    pub(crate) fn new(
        store: Store,
        batches: Batches,
        activity: Arc<crate::activity::Activity>,
    ) -> Writer {
        Writer {
            store,
            batches,
            activity,
            waiting: Vec::new(),
            closed: false,
        }
    }

    /// Stores what is waiting, and what is queued behind it, up to 512 batches at a time.
    async fn write(&mut self) -> Result<(), Arc<repnet_store::StoreError>> {
        while self.waiting.len() < 512 {
            match self.batches.try_recv() {
                Ok(batch) => self.waiting.push(batch),
                Err(_) => break,
            }
        }
        if self.waiting.is_empty() {
            return Ok(());
        }
        let mut waiting = std::mem::take(&mut self.waiting);
        let events: Vec<StatEvent> = waiting
            .iter_mut()
            .flat_map(|(events, _)| std::mem::take(events))
            .collect();
        // What the overview counts, taken before the store takes the events.
        let noted = crate::activity::Activity::summarise(&events);
        let result = self.store.record_statistics(events).await.map_err(Arc::new);
        if result.is_ok() {
            self.activity.note_reports(noted);
        }
        for (_, done) in waiting {
            let _ = done.send(result.clone());
        }
        result
    }
}

impl repnet_runtime::Worker for Writer {
    fn name(&self) -> String {
        "statistics-writer".to_owned()
    }

    async fn work(
        &mut self,
        _cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        self.write()
            .await
            .map_err(|error| format!("statistics could not be stored: {error}"))?;
        Ok(if self.closed {
            repnet_runtime::Next::Done
        } else {
            repnet_runtime::Next::Idle
        })
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        match self.batches.recv().await {
            Some(batch) => self.waiting.push(batch),
            None => self.closed = true,
        }
    }

    async fn finish(&mut self, _cx: &repnet_runtime::Context) {
        self.batches.close();
        loop {
            if let Err(error) = self.write().await {
                tracing::error!(%error, "statistics could not be stored");
            }
            match self.batches.recv().await {
                Some(batch) => self.waiting.push(batch),
                None => return,
            }
        }
    }
}

/// Batches per installation per minute, in memory ([`repnet_http::limits::Windowed`]).
#[derive(Debug)]
pub(crate) struct InstallLimit {
    per_minute: std::sync::atomic::AtomicU32,
    windows: repnet_http::limits::Windowed,
}

impl InstallLimit {
    pub(crate) fn new(per_minute: u32) -> InstallLimit {
        InstallLimit {
            per_minute: std::sync::atomic::AtomicU32::new(per_minute),
            windows: repnet_http::limits::Windowed::new(
                std::time::Duration::from_secs(60),
                1_000_000,
            ),
        }
    }

    pub(crate) fn set(&self, per_minute: u32) {
        self.per_minute
            .store(per_minute, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts a batch from `device`; on refusal, the seconds until its window ends.
    pub(crate) fn take(&self, device: u64) -> Result<(), u64> {
        match self.per_minute() {
            0 => Ok(()),
            per_minute => self
                .windows
                .take(device, per_minute, std::time::Instant::now()),
        }
    }
}

/// The keyed hash of an installation's id: the only form in which it is used.
pub(crate) fn device(secret: &[u8; 32], installation: &[u8; 16]) -> u64 {
    let mut input = Vec::with_capacity(32 + installation.len());
    input.extend_from_slice(secret);
    input.extend_from_slice(installation);
    let digest = Sha256::digest(&input);
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

fn invalid(field: String, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidEvent, format!("{field}: {message}"))
}

/// One event, checked and scrubbed.
pub(crate) fn event(
    index: usize,
    event: &StatisticsEvent,
    device: u64,
    established: bool,
    now: Timestamp,
) -> Result<StatEvent, ApiError> {
    let field = |name: &str| format!("events[{index}].{name}");
    let kind = match event.kind.as_str() {
        "detection" => StatKind::Detection,
        "sighting" => StatKind::Sighting,
        "false_positive" => StatKind::FalsePositive,
        other => {
            return Err(invalid(
                field("type"),
                format!(
                    "{other:?} is not an event type: use detection, sighting or false_positive"
                ),
            ));
        }
    };
    let object = match (&event.file, &event.url) {
        (Some(file), None) => match FileHash::from_hex(file) {
            Ok(FileHash::Sha256(sha256)) => Object::File(FileHash::Sha256(sha256)),
            Ok(_) => {
                return Err(invalid(
                    field("file"),
                    "give the file's SHA-256 (64 hex digits)",
                ));
            }
            Err(error) => return Err(invalid(field("file"), error)),
        },
        (None, Some(url)) => {
            let canonical = CanonicalUrl::parse(url.as_bytes())
                .map_err(|error| invalid(field("url"), error))?
                .without_query();
            Object::Url(canonical.exact_expression())
        }
        _ => {
            return Err(invalid(
                field("file"),
                "an event names one object: a file or a url",
            ));
        }
    };
    if kind == StatKind::Sighting && !matches!(object, Object::File(_)) {
        return Err(invalid(
            field("url"),
            "sightings are of files; report a URL as a detection",
        ));
    }
    let signer = match &event.signer {
        None => None,
        Some(text) => Some(
            CertificateThumbprint::from_hex(text)
                .map(|thumbprint| thumbprint.0)
                .map_err(|error| invalid(field("signer"), error))?,
        ),
    };
    let text =
        |value: &Option<String>, name: &str, max: usize| -> Result<Option<String>, ApiError> {
            match value {
                None => Ok(None),
                Some(text) if text.chars().count() > max => {
                    Err(invalid(field(name), format!("at most {max} characters")))
                }
                Some(text)
                    if text
                        .chars()
                        .any(|c| repnet_model::is_control_or_bidi(c) && c != '\t') =>
                {
                    Err(invalid(
                        field(name),
                        "control and text-direction characters are not allowed",
                    ))
                }
                Some(text) => Ok(Some(text.clone())),
            }
        };
    let name = text(&event.name, "name", MAX_NAME_CHARS)?.map(|name| privacy::scrub_path(&name));
    let comment = text(&event.comment, "comment", MAX_COMMENT_CHARS)?
        .map(|comment| privacy::scrub_text(&comment));
    // A threat name holding personal data (an e-mail address, say) is dropped, not stored.
    let threat = match &event.threat {
        None => None,
        Some(threat) => privacy::scrub_threat(
            ThreatName::new(threat)
                .map_err(|error| invalid(field("threat"), error))?
                .as_str(),
        ),
    };
    Ok(StatEvent {
        kind,
        object,
        device,
        established,
        time: now,
        size: event.size,
        signer,
        name,
        threat,
        comment,
    })
}
