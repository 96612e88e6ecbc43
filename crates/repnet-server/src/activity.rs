//! The server's activity over time, for the console's overview: lookups by kind and verdict,
//! the negative-lookup filter's and the proxies' cache hit rates, participants' reports and
//! detections, the engine's verdict changes, the top threat names and the most prevalent
//! detected objects.
//!
//! Counts are kept in three tiers of fixed slots, as a round-robin database does: 60 slots of
//! a minute (the last hour), 144 of ten minutes (the last day) and 30 of a day (the last 30
//! days). Threat names are kept per ten-minute and per day slot, the most frequent
//! [`THREATS_PER_SLOT`] of each, the rest counted together. Everything is bounded — under
//! 1 MB in `activity.json` beside the store with every slot full of the longest threat names
//! (a test fills it), a few hundred KB in practice — and saved every minute and at a stop, so
//! that a restart keeps the charts (a slot the server was down for is empty).
//!
//! Lookups, the filter and the engine keep cumulative counters of their own; a sample takes
//! their difference since the previous one. Reports, detections and proxies' cache counts
//! are handed over as they happen ([`Activity::note_reports`], [`Activity::note_proxy`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use repnet_model::{Object, ObjectKind, Verdict};
use repnet_store::{StatEvent, StatKind};
use serde::{Deserialize, Serialize};

/// The file beside the store.
const FILE: &str = "activity.json";

/// Threat names kept per slot; the others are counted under [`OTHER_THREATS`].
pub(crate) const THREATS_PER_SLOT: usize = 50;

/// Where the threat names beyond [`THREATS_PER_SLOT`] are counted.
pub(crate) const OTHER_THREATS: &str = "(other threats)";

/// Longest threat name kept (longer ones are cut at a character boundary).
const MAX_THREAT_CHARS: usize = 100;

/// Detected objects kept, by distinct devices.
pub(crate) const PREVALENT_KEPT: usize = 20;

/// A window the overview shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    Hour,
    Day,
    Month,
}

/// Each tier's slot length in seconds and number of slots.
const TIERS: [(u64, usize); 3] = [(60, 60), (600, 144), (86_400, 30)];

impl Window {
    pub(crate) const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Month];

    pub(crate) fn parse(text: &str) -> Option<Window> {
        Window::ALL
            .into_iter()
            .find(|window| window.as_str() == text)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "30d",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Window::Hour => "last hour",
            Window::Day => "last 24 hours",
            Window::Month => "last 30 days",
        }
    }

    fn tier(self) -> usize {
        match self {
            Window::Hour => 0,
            Window::Day => 1,
            Window::Month => 2,
        }
    }

    fn seconds(self) -> u64 {
        let (seconds, slots) = TIERS[self.tier()];
        seconds * slots as u64
    }
}

/// What happened in one slot (or, for the sources' totals, since the server started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Counts {
    /// By [`ObjectKind::ALL`] and [`Verdict::ALL`] index.
    pub(crate) lookups: [[u64; 4]; 5],
    /// Keys the negative-lookup filter was asked about, and answered "absent".
    pub(crate) filter_checked: u64,
    pub(crate) filter_answered: u64,
    /// Lookups the proxies answered, and those from their caches.
    pub(crate) proxy_lookups: u64,
    pub(crate) proxy_hits: u64,
    /// Participants' statistics events stored, and those that were detections.
    pub(crate) reports: u64,
    pub(crate) detections: u64,
    /// Verdicts the engine set and removed.
    pub(crate) engine_set: u64,
    pub(crate) engine_removed: u64,
}

impl Counts {
    /// Applies `f` to each pair of counters of `self` and `other`.
    fn combine(&mut self, other: &Counts, f: impl Fn(u64, u64) -> u64) {
        for (mine, theirs) in self.lookups.iter_mut().zip(&other.lookups) {
            for (mine, theirs) in mine.iter_mut().zip(theirs) {
                *mine = f(*mine, *theirs);
            }
        }
        let pairs = [
            (&mut self.filter_checked, other.filter_checked),
            (&mut self.filter_answered, other.filter_answered),
            (&mut self.proxy_lookups, other.proxy_lookups),
            (&mut self.proxy_hits, other.proxy_hits),
            (&mut self.reports, other.reports),
            (&mut self.detections, other.detections),
            (&mut self.engine_set, other.engine_set),
            (&mut self.engine_removed, other.engine_removed),
        ];
        for (mine, theirs) in pairs {
            *mine = f(*mine, theirs);
        }
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        self.combine(other, u64::saturating_add);
    }

    /// Lookups of `kind`, of every verdict.
    pub(crate) fn lookups_of(&self, kind: ObjectKind) -> u64 {
        let at = ObjectKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.lookups[at].iter().sum()
    }

    /// Lookups answered `verdict`, of every kind.
    pub(crate) fn answered(&self, verdict: Verdict) -> u64 {
        let at = Verdict::ALL.iter().position(|v| *v == verdict).unwrap_or(0);
        self.lookups.iter().map(|by_verdict| by_verdict[at]).sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Slot {
    /// Unix time of its start, a multiple of its tier's length.
    start: u64,
    counts: Counts,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    threats: BTreeMap<String, u64>,
}

/// A detected object and how many distinct devices reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Prevalent {
    /// `file` or `url`, as the console's lookup names kinds.
    pub(crate) kind: String,
    pub(crate) object: String,
    pub(crate) devices: u64,
    pub(crate) detecting_devices: u64,
    /// When the engine last examined it (Unix time).
    pub(crate) seen: u64,
}

/// What a stored batch of participants' events adds.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    events: u64,
    detections: u64,
    threats: BTreeMap<String, u64>,
}

/// A point of a window's charts.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub(crate) start: u64,
    /// The seconds of the slot that have passed (less than its length for the current one).
    pub(crate) seconds: u64,
    pub(crate) counts: Counts,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    version: u32,
    tiers: [VecDeque<Slot>; 3],
    prevalent: Vec<Prevalent>,
}

#[derive(Debug, Default)]
struct State {
    saved: Saved,
    /// The sources' totals at the previous sample; `None` before the first.
    last_totals: Option<Counts>,
    /// Counted since the previous sample by those who hand counts over.
    pending: Counts,
    pending_threats: BTreeMap<String, u64>,
}

/// The activity, shared by the sampler, the statistics writer, the engine, the proxies'
/// reports and the console.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    path: PathBuf,
}

impl Activity {
    /// The activity saved in `dir` by an earlier run, or none.
    pub(crate) fn load(dir: &Path) -> Activity {
        let path = dir.join(FILE);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Saved>(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable activity file; the overview's charts start empty");
                Saved::default()
            }),
            Err(_) => Saved::default(),
        };
        Activity {
            state: Mutex::new(State {
                saved,
                ..State::default()
            }),
            path,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the overview counts of participants' `events`: taken before they are stored,
    /// added once they are ([`Activity::note_reports`]).
    pub(crate) fn summarise(events: &[StatEvent]) -> Reported {
        let mut reported = Reported {
            events: events.len() as u64,
            ..Reported::default()
        };
        for event in events.iter().filter(|e| e.kind == StatKind::Detection) {
            reported.detections += 1;
            if let Some(threat) = &event.threat {
                let threat = match threat.char_indices().nth(MAX_THREAT_CHARS) {
                    Some((cut, _)) => &threat[..cut],
                    None => threat,
                };
                *reported.threats.entry(threat.to_owned()).or_default() += 1;
            }
        }
        trim_threats(&mut reported.threats);
        reported
    }

    /// Participants' events the statistics writer stored.
    pub(crate) fn note_reports(&self, reported: Reported) {
        let mut state = self.state();
        state.pending.reports += reported.events;
        state.pending.detections += reported.detections;
        for (name, count) in reported.threats {
            *state.pending_threats.entry(name).or_default() += count;
        }
        // Bounded between samples too: a flood of distinct names is cut to the most frequent.
        if state.pending_threats.len() > 4 * THREATS_PER_SLOT {
            trim_threats(&mut state.pending_threats);
        }
    }

    /// A proxy answered `lookups` more lookups since its last report, `hits` from its cache.
    pub(crate) fn note_proxy(&self, lookups: u64, hits: u64) {
        let mut state = self.state();
        state.pending.proxy_lookups += lookups;
        state.pending.proxy_hits += hits.min(lookups);
    }

    /// The engine examined a detected `object` reported by `devices` distinct devices.
    pub(crate) fn note_prevalence(
        &self,
        object: &Object,
        devices: u64,
        detecting_devices: u64,
        now: u64,
    ) {
        let kind = object.kind().as_str().to_owned();
        let object = object.to_string();
        let mut state = self.state();
        let prevalent = &mut state.saved.prevalent;
        prevalent.retain(|entry| entry.object != object);
        prevalent.push(Prevalent {
            kind,
            object,
            devices,
            detecting_devices,
            seen: now,
        });
        prevalent.sort_by(|a, b| b.devices.cmp(&a.devices).then(b.seen.cmp(&a.seen)));
        prevalent.truncate(PREVALENT_KEPT);
    }

    /// Adds what happened since the previous sample, given the sources' `totals` now, to the
    /// slots of `now` (Unix time).
    pub(crate) fn sample(&self, now: u64, totals: Counts) {
        let mut state = self.state();
        let mut delta = totals.clone();
        if let Some(last) = &state.last_totals {
            delta.combine(last, u64::saturating_sub);
        }
        state.last_totals = Some(totals);
        delta.add(&std::mem::take(&mut state.pending));
        let threats = std::mem::take(&mut state.pending_threats);
        for (tier, (seconds, slots)) in state.saved.tiers.iter_mut().zip(TIERS) {
            let start = now - now % seconds;
            match tier.back_mut() {
                // A clock set back adds to the latest slot rather than reordering them.
                Some(last) if last.start >= start => last.counts.add(&delta),
                _ => tier.push_back(Slot {
                    start,
                    counts: delta.clone(),
                    threats: BTreeMap::new(),
                }),
            }
            if seconds >= 600
                && !threats.is_empty()
                && let Some(last) = tier.back_mut()
            {
                for (name, count) in &threats {
                    *last.threats.entry(name.clone()).or_default() += count;
                }
                trim_threats(&mut last.threats);
            }
            let oldest = now.saturating_sub(seconds * slots as u64);
            while tier
                .front()
                .is_some_and(|slot| slot.start <= oldest || tier.len() > slots)
            {
                tier.pop_front();
            }
        }
    }

    /// The points of `window` up to `now`, oldest first, one per slot (zero where nothing
    /// was counted).
    pub(crate) fn points(&self, window: Window, now: u64) -> Vec<Point> {
        let state = self.state();
        let (seconds, slots) = TIERS[window.tier()];
        let current = now - now % seconds;
        let mut stored = state.saved.tiers[window.tier()].iter().peekable();
        (0..slots as u64)
            .rev()
            .map(|back| current.saturating_sub(back * seconds))
            .map(|start| {
                while stored.peek().is_some_and(|slot| slot.start < start) {
                    stored.next();
                }
                let counts = match stored.peek() {
                    Some(slot) if slot.start == start => slot.counts.clone(),
                    _ => Counts::default(),
                };
                Point {
                    start,
                    seconds: seconds.min(now - start + 1),
                    counts,
                }
            })
            .collect()
    }

    /// The most detected threat names in `window`, most first, at most `limit`.
    pub(crate) fn top_threats(&self, window: Window, now: u64, limit: usize) -> Vec<(String, u64)> {
        let state = self.state();
        // Threat names are kept per ten minutes and per day.
        let tier = match window {
            Window::Hour | Window::Day => 1,
            Window::Month => 2,
        };
        let since = now.saturating_sub(window.seconds());
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for slot in state.saved.tiers[tier].iter().filter(|s| s.start >= since) {
            for (name, count) in &slot.threats {
                *totals.entry(name).or_default() += count;
            }
        }
        let mut top: Vec<(String, u64)> = totals
            .into_iter()
            .map(|(name, count)| (name.to_owned(), count))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(limit);
        top
    }

    /// The detected objects the engine examined in `window`, by distinct devices.
    pub(crate) fn prevalent(&self, window: Window, now: u64) -> Vec<Prevalent> {
        let since = now.saturating_sub(window.seconds());
        self.state()
            .saved
            .prevalent
            .iter()
            .filter(|entry| entry.seen >= since)
            .cloned()
            .collect()
    }

    /// Writes the activity to its file.
    pub(crate) fn save(&self) {
        let text = {
            let mut state = self.state();
            state.saved.version = 1;
            serde_json::to_vec(&state.saved)
        };
        let result = text
            .map_err(std::io::Error::other)
            .and_then(|text| repnet_runtime::files::write_atomically(&self.path, &text));
        if let Err(error) = result {
            tracing::warn!(path = %self.path.display(), %error, "cannot save the activity; the overview's charts restart from the last save after a restart");
        }
    }
}

/// Keeps the [`THREATS_PER_SLOT`] most frequent names, counting the others together.
fn trim_threats(threats: &mut BTreeMap<String, u64>) {
    if threats.len() <= THREATS_PER_SLOT {
        return;
    }
    let other = threats.remove(OTHER_THREATS).unwrap_or(0);
    let mut by_count: Vec<(String, u64)> = std::mem::take(threats).into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: u64 = by_count
        .iter()
        .skip(THREATS_PER_SLOT - 1)
        .map(|(_, count)| count)
        .sum();
    by_count.truncate(THREATS_PER_SLOT - 1);
    threats.extend(by_count);
    threats.insert(OTHER_THREATS.to_owned(), other + rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookups(n: u64) -> Counts {
        let mut counts = Counts::default();
        counts.lookups[0][0] = n;
        counts
    }

    #[test]
    fn samples_add_the_difference_since_the_previous_one() {
        let dir = tempfile::tempdir().expect("dir");
        let activity = Activity::load(dir.path());
        let t = 1_700_000_000 - 1_700_000_000 % 86_400;
        activity.sample(t, lookups(5));
        activity.sample(t + 30, lookups(8));
        activity.sample(t + 65, lookups(20));
        let hour = activity.points(Window::Hour, t + 65);
        assert_eq!(hour.len(), 60);
        let last_two: Vec<u64> = hour[58..].iter().map(|p| p.counts.lookups[0][0]).collect();
        assert_eq!(last_two, [8, 12], "a minute's slot holds its own lookups");
        assert_eq!(hour[59].seconds, 6, "the current minute has lasted 6 s");
        let day = activity.points(Window::Day, t + 65);
        assert_eq!(day.last().map(|p| p.counts.lookups[0][0]), Some(20));
    }

    #[test]
    fn slots_past_the_window_are_dropped_and_the_file_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let activity = Activity::load(dir.path());
        let t = 1_700_000_000 - 1_700_000_000 % 86_400;
        for minute in 0..200 {
            activity.sample(t + minute * 60, lookups(minute));
        }
        assert!(activity.state().saved.tiers[0].len() <= 60);
        activity.save();
        let again = Activity::load(dir.path());
        let points = again.points(Window::Hour, t + 199 * 60);
        assert_eq!(points.last().map(|p| p.counts.lookups[0][0]), Some(1));
        assert_eq!(
            points.iter().map(|p| p.counts.lookups[0][0]).sum::<u64>(),
            60,
            "the last 60 minutes, one lookup each"
        );
    }

    #[test]
    fn the_file_stays_bounded_when_every_slot_is_full() {
        let dir = tempfile::tempdir().expect("dir");
        let activity = Activity::load(dir.path());
        let t = 1_700_000_000 - 1_700_000_000 % 86_400;
        let big = Counts {
            lookups: [[u64::MAX / 4; 4]; 5],
            filter_checked: u64::MAX / 4,
            ..Counts::default()
        };
        // 31 days of ten-minute samples, each with 60 distinct threat names of the longest
        // kept length.
        for step in 0..(31 * 144) {
            let mut totals = big.clone();
            totals.lookups[0][0] = step;
            let name = |i: u64| format!("{:0>100}", step * 100 + i);
            let mut events = Vec::new();
            for i in 0..60 {
                events.push((name(i), 1));
            }
            activity.note_reports(Reported {
                events: 60,
                detections: 60,
                threats: events.into_iter().collect(),
            });
            activity.sample(t + step * 600, totals);
            activity.sample(t + step * 600 + 60, big.clone());
        }
        activity.save();
        let bytes = std::fs::metadata(dir.path().join(FILE))
            .expect("saved")
            .len();
        // 947,048 bytes when measured: docs/console.md states it.
        assert!(bytes < 1_000_000, "{bytes} bytes");
        assert!(
            activity
                .state()
                .saved
                .tiers
                .iter()
                .map(VecDeque::len)
                .sum::<usize>()
                <= 60 + 144 + 30
        );
    }

    #[test]
    fn threat_names_are_bounded_per_slot() {
        let dir = tempfile::tempdir().expect("dir");
        let activity = Activity::load(dir.path());
        let t = 1_700_000_000;
        let event = |threat: String| StatEvent {
            kind: StatKind::Detection,
            object: Object::File(repnet_model::FileHash::Sha256(repnet_model::Sha256(
                [0; 32],
            ))),
            device: 1,
            established: true,
            time: repnet_model::Timestamp(t),
            size: None,
            signer: None,
            name: None,
            threat: Some(threat),
            comment: None,
        };
        let mut events: Vec<StatEvent> = (0..500).map(|i| event(format!("Trojan.{i}"))).collect();
        events.extend((0..10).map(|_| event("Worm.Big".to_owned())));
        activity.note_reports(Activity::summarise(&events));
        activity.sample(t, Counts::default());
        let top = activity.top_threats(Window::Day, t, 100);
        // 48 of the 500 single detections are kept by name, beside Worm.Big.
        assert_eq!(top.first(), Some(&(OTHER_THREATS.to_owned(), 452)));
        assert_eq!(top.get(1), Some(&("Worm.Big".to_owned(), 10)));
        assert_eq!(top.len(), THREATS_PER_SLOT);
        let points = activity.points(Window::Hour, t);
        assert_eq!(points.last().map(|p| p.counts.detections), Some(510));
    }
}
