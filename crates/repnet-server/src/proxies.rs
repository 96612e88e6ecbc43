//! The proxies that pull from this server: what each last reported (`POST /v1/proxies/report`:
//! name, version, health, cache counts, position in the change log, the settings it runs
//! with) and the settings the administrator set for it, which it takes on its next report.
//!
//! A proxy is known by its licence key and its name. At most [`MAX_PROXIES`] are kept (the
//! one silent longest makes room); they are kept in `proxies.json` beside the store, so that
//! the settings set for a proxy survive a restart. Each node of a Redis Cluster keeps the
//! proxies that report to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use repnet_protocol::proxies::{ManagedSettings, ProxyInstructions, ProxyReport};
use serde::{Deserialize, Serialize};

use crate::activity::Activity;

/// The file beside the store.
const FILE: &str = "proxies.json";

/// Most proxies kept.
pub(crate) const MAX_PROXIES: usize = 1000;

/// Most proxies kept for one licence key: a key's holder cannot push other organisations'
/// proxies out.
pub(crate) const MAX_PROXIES_PER_KEY: usize = 100;

/// A proxy, as it last reported and as the administrator set it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Proxy {
    /// The id of its licence key.
    pub(crate) key_id: String,
    pub(crate) report: ProxyReport,
    /// When it first and last reported (Unix time).
    pub(crate) first_seen: u64,
    pub(crate) last_seen: u64,
    /// The settings the administrator set, and their revision (0: none set).
    pub(crate) revision: u64,
    pub(crate) settings: Option<ManagedSettings>,
}

impl Proxy {
    /// Its id in the console's forms: the key's id and the name.
    pub(crate) fn id(&self) -> String {
        format!("{}/{}", self.key_id, self.report.name)
    }
}

/// Why settings could not be set for a proxy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetError {
    #[error("no proxy {0:?} has reported to this server")]
    Unknown(String),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
}

#[derive(Debug)]
pub(crate) struct Proxies {
    proxies: Mutex<BTreeMap<(String, String), Proxy>>,
    path: PathBuf,
    /// Told the proxies' cache counts (the overview's cache hit rate).
    activity: Arc<Activity>,
    /// Serialises saves, so that an older list never lands over a newer one.
    saving: Mutex<()>,
    /// Most proxies kept ([`MAX_PROXIES`]), and for one key ([`MAX_PROXIES_PER_KEY`]).
    max: usize,
    max_per_key: usize,
}

impl Proxies {
    /// The proxies kept in `dir` by an earlier run.
    pub(crate) fn load(dir: &Path, activity: Arc<Activity>) -> Proxies {
        let path = dir.join(FILE);
        let list: Vec<Proxy> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable proxies file: the proxies' settings set here are lost");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        let proxies = list
            .into_iter()
            .map(|proxy| ((proxy.key_id.clone(), proxy.report.name.clone()), proxy))
            .collect();
        Proxies {
            proxies: Mutex::new(proxies),
            path,
            activity,
            saving: Mutex::new(()),
            max: MAX_PROXIES,
            max_per_key: MAX_PROXIES_PER_KEY,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Proxy>> {
        self.proxies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a proxy's `report`, made with the licence key `key_id` at `now`; answers the
    /// settings set for it.
    pub(crate) fn report(&self, key_id: &str, report: ProxyReport, now: u64) -> ProxyInstructions {
        let id = (key_id.to_owned(), report.name.clone());
        let (instructions, changed) = {
            let mut proxies = self.lock();
            let new = !proxies.contains_key(&id);
            if new {
                // The one silent longest makes room: of the same key when it has its fill,
                // else of all.
                let same_key = proxies.keys().filter(|(key, _)| key == key_id).count();
                let full = if same_key >= self.max_per_key {
                    Some(true)
                } else {
                    (proxies.len() >= self.max).then_some(false)
                };
                if let Some(only_this_key) = full
                    && let Some(oldest) = proxies
                        .iter()
                        .filter(|((key, _), _)| !only_this_key || key == key_id)
                        .min_by_key(|(_, proxy)| proxy.last_seen)
                        .map(|(id, _)| id.clone())
                {
                    proxies.remove(&oldest);
                }
            }
            let proxy = proxies.entry(id).or_insert_with(|| Proxy {
                key_id: key_id.to_owned(),
                report: report.clone(),
                first_seen: now,
                last_seen: now,
                revision: 0,
                settings: None,
            });
            // Counts since the proxy started: what is new since its last report (all of
            // them when it restarted since).
            let restarted = report.lookups < proxy.report.lookups
                || report.cache_hits < proxy.report.cache_hits;
            let (lookups, hits) = if new || restarted {
                (report.lookups, report.cache_hits)
            } else {
                (
                    report.lookups - proxy.report.lookups,
                    report.cache_hits - proxy.report.cache_hits,
                )
            };
            self.activity.note_proxy(lookups, hits);
            let applied_changed = proxy.report.applied != report.applied;
            proxy.report = report;
            proxy.last_seen = now;
            (
                ProxyInstructions {
                    revision: proxy.revision,
                    settings: proxy.settings.clone(),
                },
                new || applied_changed,
            )
        };
        // Kept when the list or what a proxy runs with changed, not for every poll.
        if changed {
            self.save();
        }
        instructions
    }

    /// Every proxy, by key and name.
    pub(crate) fn list(&self) -> Vec<Proxy> {
        self.lock().values().cloned().collect()
    }

    /// Sets the settings of the proxy `id` (`key_id/name`): checked, kept, sent on its next
    /// report. Answers the new revision.
    pub(crate) fn set(&self, id: &str, settings: ManagedSettings) -> Result<u64, SetError> {
        settings
            .validate()
            .map_err(|(field, message)| SetError::Invalid(field, message))?;
        let revision = {
            let mut proxies = self.lock();
            let proxy = proxies
                .values_mut()
                .find(|proxy| proxy.id() == id)
                .ok_or_else(|| SetError::Unknown(id.to_owned()))?;
            proxy.revision += 1;
            proxy.settings = Some(settings);
            proxy.revision
        };
        self.save();
        Ok(revision)
    }

    /// Writes the list to its file.
    fn save(&self) {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let text = serde_json::to_vec(&self.list());
        let result = text
            .map_err(std::io::Error::other)
            .and_then(|text| repnet_runtime::files::write_atomically(&self.path, &text));
        if let Err(error) = result {
            tracing::error!(path = %self.path.display(), %error, "cannot keep the proxies' settings; they are lost at a restart");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use repnet_protocol::proxies::AppliedSettings;

    fn managed() -> ManagedSettings {
        ManagedSettings {
            enabled: true,
            cache_max_entries: 1000,
            cache_max_bytes: 1 << 20,
            cache_max_ttl_seconds: 0,
            allowed_networks: Vec::new(),
            forward_statistics: false,
            require_device_key: false,
        }
    }

    fn report(name: &str, lookups: u64, hits: u64) -> ProxyReport {
        ProxyReport {
            name: name.to_owned(),
            version: "1".to_owned(),
            upstream_ok: true,
            lookups,
            cache_hits: hits,
            cache_entries: 0,
            position: None,
            applied: AppliedSettings {
                revision: 0,
                settings: managed(),
                error: None,
            },
        }
    }

    #[test]
    fn settings_set_for_a_proxy_are_sent_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let activity = Arc::new(Activity::load(dir.path()));
        let proxies = Proxies::load(dir.path(), Arc::clone(&activity));
        assert_eq!(proxies.report("k1", report("a", 10, 4), 100).revision, 0);
        assert!(matches!(
            proxies.set("k1/b", managed()),
            Err(SetError::Unknown(_))
        ));
        let bad = ManagedSettings {
            allowed_networks: vec!["nonsense".to_owned()],
            ..managed()
        };
        assert!(matches!(
            proxies.set("k1/a", bad),
            Err(SetError::Invalid("allowed_networks", _))
        ));
        let wanted = ManagedSettings {
            enabled: false,
            ..managed()
        };
        assert_eq!(proxies.set("k1/a", wanted.clone()).unwrap(), 1);
        let again = Proxies::load(dir.path(), activity);
        let instructions = again.report("k1", report("a", 15, 6), 110);
        assert_eq!(
            (instructions.revision, instructions.settings),
            (1, Some(wanted))
        );
    }

    #[test]
    fn the_oldest_proxy_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let activity = Arc::new(Activity::load(dir.path()));
        let mut proxies = Proxies::load(dir.path(), activity);
        (proxies.max, proxies.max_per_key) = (4, 2);
        proxies.report("other", report("theirs", 0, 0), 999);
        for i in 0..3 {
            proxies.report("k", report(&format!("p{i}"), 0, 0), 1000 + i);
        }
        let names = |proxies: &Proxies| -> Vec<String> {
            proxies.list().into_iter().map(|p| p.report.name).collect()
        };
        assert_eq!(
            names(&proxies),
            ["p1", "p2", "theirs"],
            "a key's oldest made room for its third"
        );
        proxies.report("k2", report("a", 0, 0), 2000);
        proxies.report("k2", report("b", 0, 0), 2001);
        assert_eq!(names(&proxies).len(), 4);
        assert!(
            !names(&proxies).contains(&"theirs".to_owned()),
            "the one silent longest made room"
        );
    }
}
