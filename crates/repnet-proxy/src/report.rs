//! Reporting to the upstream, and the settings its administrator sets for this proxy: on
//! every poll the proxy tells the server it pulls from its name, version, health and cache
//! counts, and what it runs with (`POST /v1/proxies/report`); the answer carries the settings
//! the server's administrator chose for it (the console's Proxies page), which it applies
//! through the same path as `PATCH /v1/admin/settings` and reports back at once.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use repnet_protocol::proxies::{AppliedSettings, ProxyInstructions, ProxyReport};

use crate::State;

/// The name a proxy gives when none is configured: the host's, made fit for a name.
pub(crate) fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(repnet_protocol::proxies::MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        "repnet-proxy".to_owned()
    } else {
        name
    }
}

/// Reports every `interval` (a background worker, [`repnet_runtime::workers`]).
pub(crate) struct Reporter {
    pub(crate) state: Arc<State>,
    pub(crate) name: String,
    pub(crate) interval: Duration,
    /// The upstream's revision of this proxy's settings last applied (0: none yet; after a
    /// restart the upstream's settings are applied again).
    pub(crate) applied: u64,
    /// The revision last tried, and why it could not be applied.
    pub(crate) tried: u64,
    pub(crate) error: Option<String>,
    /// Set when the upstream does not take reports (an older repnet, or not repnet): the
    /// proxy asks again only after [`UNSUPPORTED_RETRY`].
    pub(crate) unsupported: bool,
}

/// How long a proxy waits before reporting again to an upstream that does not take reports.
const UNSUPPORTED_RETRY: Duration = Duration::from_secs(600);

impl Reporter {
    fn report(&self) -> ProxyReport {
        let state = &self.state;
        let (hits, misses, stale) = (
            state.metrics.hits.get(),
            state.metrics.misses.get(),
            state.metrics.stale.get(),
        );
        ProxyReport {
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            upstream_ok: state.upstream().health().healthy,
            lookups: hits + misses + stale,
            cache_hits: hits,
            cache_entries: state.cache().len() as u64,
            position: state
                .position
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|(_, sequence)| *sequence),
            applied: AppliedSettings {
                revision: self.applied,
                settings: state.settings().managed(),
                error: self.error.clone(),
            },
        }
    }

    async fn send(&self) -> Result<ProxyInstructions, repnet_client::ClientError> {
        let upstream = self.state.upstream();
        upstream.client().report_proxy(&self.report()).await
    }

    /// Applies what the upstream sent, when it is a revision not tried yet.
    async fn apply(&mut self, instructions: ProxyInstructions) -> bool {
        let Some(settings) = instructions.settings else {
            return false;
        };
        if instructions.revision == self.tried {
            return false;
        }
        self.tried = instructions.revision;
        if !self.state.config.managed_by_upstream {
            self.error = Some(
                "this proxy does not take settings from its upstream (managed_by_upstream = false)"
                    .to_owned(),
            );
            return true;
        }
        let changed = self
            .state
            .change_settings(|current| Ok(current.with_managed(&settings)))
            .await;
        match changed {
            Ok(_) => {
                tracing::info!(
                    revision = instructions.revision,
                    "applied the settings the upstream's administrator set"
                );
                self.applied = instructions.revision;
                self.error = None;
            }
            Err(error) => {
                tracing::warn!(revision = instructions.revision, error = %error.message, "cannot apply the settings the upstream's administrator set");
                self.error = Some(error.message);
            }
        }
        true
    }
}

impl repnet_runtime::Worker for Reporter {
    fn name(&self) -> String {
        "upstream-report".to_owned()
    }

    async fn work(
        &mut self,
        cx: &repnet_runtime::Context,
    ) -> Result<repnet_runtime::Next, repnet_runtime::WorkError> {
        let sent = tokio::select! {
            sent = self.send() => sent,
            () = cx.stop.stopped() => return Ok(repnet_runtime::Next::Idle),
        };
        let instructions = match sent {
            Ok(instructions) => instructions,
            Err(repnet_client::ClientError::Api { status: 404, .. }) => {
                if !self.unsupported {
                    tracing::info!(
                        "the upstream does not take proxy reports (an older repnet?): this proxy is not managed from it; it asks again every 10 minutes"
                    );
                }
                self.unsupported = true;
                return Ok(repnet_runtime::Next::Idle);
            }
            Err(error) => return Err(format!("reporting to the upstream: {error}").into()),
        };
        self.unsupported = false;
        if self.apply(instructions).await {
            // What was applied (or why not) reaches the upstream now, not at the next poll.
            self.send()
                .await
                .map_err(|error| format!("reporting to the upstream: {error}"))?;
        }
        Ok(repnet_runtime::Next::Idle)
    }

    async fn wait_for_work(&mut self, _cx: &repnet_runtime::Context) {
        let wait = if self.unsupported {
            UNSUPPORTED_RETRY
        } else {
            self.interval
        };
        tokio::time::sleep(wait).await
    }

    fn progress(&self) -> Option<String> {
        if self.unsupported {
            return Some("the upstream does not take reports: not managed from it".to_owned());
        }
        Some(match (&self.error, self.applied) {
            (Some(error), _) => format!("settings revision {} not applied: {error}", self.tried),
            (None, 0) => "no settings from the upstream".to_owned(),
            (None, revision) => format!("upstream settings revision {revision} applied"),
        })
    }
}
