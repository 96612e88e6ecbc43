//! Statistics and the review queue on the cluster, in Redis's own structures: distinct
//! devices are Redis HyperLogLogs (`PFADD`/`PFCOUNT`; the embedded store's sketches are in
//! the same dense format), counters are hash fields, raw events sorted sets by arrival time.
//!
//! Layout, under the namespace `NS`, for an object whose storage key has the bucket tag `B`
//! (its first bytes, as records have: `mod.rs`) and the rest `R`, in hex:
//! - `NS:s:{B}:R` — the aggregate: a hash of `first`, `last`, `sightings`, `detections`,
//!   `false_positives`, `size`, `signer`, `conflict`, the three distinct counts as last
//!   counted (`devices`, `detecting`, `vouching`) and `bytes`, what its sketches take;
//! - `NS:s:{B}:R:d`, `:x`, `:v` — the HyperLogLogs of devices, detecting devices and vouching
//!   devices, fed with the 8-byte keyed hash of each install id (never the id);
//! - `NS:p:{B}` — a hash of `R` → devices, read by lookups beside the record's bucket;
//! - `NS:{stats}:next`, `:dirty` (storage key → the mark of the batch that changed its
//!   aggregate last), `:objects`, `:bytes` — event numbers, the engine's work, and sizes;
//! - `NS:{events:N}` for N below [`EVENT_SHARDS`] — raw events, each a member (event number,
//!   big-endian, then the event as the embedded store encodes it) scored by arrival time;
//! - `NS:{review}` — false-positive reports: fields `HEX/n`, `/first`, `/last`, `/local`
//!   per reported object; `NS:{review}:engine` — the engine's verdicts, by storage key.
//!
//! Each object's fold is one script over keys of one slot, so it is atomic; a batch of
//! events is not one transaction (a node killed in the middle leaves the objects it folded).
//! An object is marked for the engine after its fold, so that the engine never clears a mark
//! before the aggregate it stands for is written. Statistics are not waited on by replicas:
//! a failover may lose the last moments of them, never a verdict.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use repnet_model::key::ObjectKey;
use repnet_model::{Object, Timestamp};

use super::{Cluster, corrupt, hex, unavailable, unhex};
use crate::lmdb::statistics::{
    ENGINE_PREFIX, decode_engine_review, encode_engine_review, encode_event,
};
use crate::{
    Aggregate, Dirty, DirtyFile, DirtyMark, EngineReview, ReviewItem, StatEvent, StatKind,
    StatisticsSize, StoreError,
};

/// Sorted sets the raw events are spread over, so that no one slot holds them all.
pub(super) const EVENT_SHARDS: u64 = 16;

/// Folds one object's events (ARGV[2..], six per event: kind `s`/`d`/`f`, time, device,
/// established `1`/`0`, size or '', signer or '') into its aggregate (KEYS[1]) and sketches
/// (KEYS[2..4]), and its device count into the lookups' hash (KEYS[5], field ARGV[1]).
/// Answers whether the aggregate is new and how much its sketches grew, in bytes.
const FOLD: &str = r"
local aggregate = KEYS[1]
local created = redis.call('EXISTS', aggregate) == 0 and 1 or 0
for i = 2, #ARGV, 6 do
  local kind, time, device = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local established, size, signer = ARGV[i + 3] == '1', ARGV[i + 4], ARGV[i + 5]
  local first = tonumber(redis.call('HGET', aggregate, 'first'))
  if first == nil or first == 0 or tonumber(time) < first then
    redis.call('HSET', aggregate, 'first', time)
  end
  local last = tonumber(redis.call('HGET', aggregate, 'last'))
  if last == nil or tonumber(time) > last then
    redis.call('HSET', aggregate, 'last', time)
  end
  redis.call('PFADD', KEYS[2], device)
  if kind == 's' then
    redis.call('HINCRBY', aggregate, 'sightings', 1)
  elseif kind == 'd' then
    redis.call('HINCRBY', aggregate, 'detections', 1)
    if established then redis.call('PFADD', KEYS[3], device) end
  else
    redis.call('HINCRBY', aggregate, 'false_positives', 1)
  end
  if size ~= '' then redis.call('HSET', aggregate, 'size', size) end
  if signer ~= '' then
    local known = redis.call('HGET', aggregate, 'signer')
    if known and known ~= signer then
      redis.call('HSET', aggregate, 'conflict', 1)
    else
      redis.call('HSET', aggregate, 'signer', signer)
      known = signer
    end
    if kind ~= 'f' and established and known == signer then
      redis.call('PFADD', KEYS[4], device)
    end
  end
end
local devices = redis.call('PFCOUNT', KEYS[2])
redis.call('HSET', aggregate, 'devices', devices,
  'detecting', redis.call('PFCOUNT', KEYS[3]),
  'vouching', redis.call('PFCOUNT', KEYS[4]))
redis.call('HSET', KEYS[5], ARGV[1], devices)
local bytes = redis.call('STRLEN', KEYS[2]) + redis.call('STRLEN', KEYS[3])
  + redis.call('STRLEN', KEYS[4])
local before = tonumber(redis.call('HGET', aggregate, 'bytes')) or 0
redis.call('HSET', aggregate, 'bytes', bytes)
return {created, bytes - before}
";

/// Deletes each dirty mark (ARGV, key and mark in turn) that is still the one read.
const CLEAR_DIRTY: &str = r"
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 0
";

/// Counts a false-positive report of the object ARGV[1] (hex) at ARGV[2], with its object
/// and latest comment (ARGV[3]).
const REPORT: &str = r"
local id = ARGV[1]
redis.call('HINCRBY', KEYS[1], id .. '/n', 1)
local first = tonumber(redis.call('HGET', KEYS[1], id .. '/first'))
if first == nil or tonumber(ARGV[2]) < first then
  redis.call('HSET', KEYS[1], id .. '/first', ARGV[2])
end
local last = tonumber(redis.call('HGET', KEYS[1], id .. '/last'))
if last == nil or tonumber(ARGV[2]) > last then
  redis.call('HSET', KEYS[1], id .. '/last', ARGV[2])
end
redis.call('HSET', KEYS[1], id .. '/local', ARGV[3])
return 0
";

/// The scripts of this module, loaded once per store.
pub(super) struct Scripts {
    fold: redis::Script,
    clear_dirty: redis::Script,
    report: redis::Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            fold: redis::Script::new(FOLD),
            clear_dirty: redis::Script::new(CLEAR_DIRTY),
            report: redis::Script::new(REPORT),
        }
    }
}

/// A number as Redis answers it in a hash field.
fn number(value: Option<&Vec<u8>>) -> Result<Option<u64>, StoreError> {
    value
        .map(|bytes| {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt("a statistics counter is not a number"))
        })
        .transpose()
}

impl Cluster {
    /// The aggregate's key of the object at storage key `key`; its sketches add a suffix.
    fn aggregate_key(&self, key: &[u8]) -> String {
        let (bucket, rest) = self.split(key);
        format!("{}:s:{{{bucket}}}:{}", self.namespace, hex(rest))
    }

    /// The hash of device counts that lookups read beside the bucket of `key`.
    pub(super) fn prevalence_key(&self, key: &[u8]) -> (String, Vec<u8>) {
        let (bucket, rest) = self.split(key);
        (format!("{}:p:{{{bucket}}}", self.namespace), rest.to_vec())
    }

    fn stats_key(&self, name: &str) -> String {
        format!("{}:{{stats}}:{name}", self.namespace)
    }

    fn events_key(&self, shard: u64) -> String {
        format!("{}:{{events:{shard}}}", self.namespace)
    }

    fn review_key(&self, name: &str) -> String {
        format!("{}:{{review}}{name}", self.namespace)
    }

    /// Whether any node has recorded statistics (then lookups read device counts); asked of
    /// the cluster again at most every few seconds while none had.
    pub(super) async fn has_statistics(&self) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        if self.has_stats.load(Ordering::Acquire) {
            return Ok(true);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if now.saturating_sub(self.stats_checked.load(Ordering::Acquire)) < 5 {
            return Ok(false);
        }
        self.stats_checked.store(now, Ordering::Release);
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.stats_key("next"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        if exists {
            self.has_stats.store(true, Ordering::Release);
        }
        Ok(exists)
    }

    pub(super) async fn record_statistics(&self, events: Vec<StatEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let last: u64 = redis::cmd("INCRBY")
            .arg(self.stats_key("next"))
            .arg(events.len())
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        self.has_stats
            .store(true, std::sync::atomic::Ordering::Release);
        let first = last + 1 - events.len() as u64;
        // The raw events, by shard.
        let mut shards: HashMap<u64, redis::Cmd> = HashMap::new();
        let mut buffer = Vec::with_capacity(256);
        for (number, event) in (first..).zip(&events) {
            let key = ObjectKey::of(&event.object);
            buffer.clear();
            buffer.extend_from_slice(&number.to_be_bytes());
            encode_event(key.as_bytes(), event, &mut buffer);
            let shard = number % EVENT_SHARDS;
            shards
                .entry(shard)
                .or_insert_with(|| {
                    let mut command = redis::cmd("ZADD");
                    command.arg(self.events_key(shard));
                    command
                })
                .arg(event.time.0)
                .arg(buffer.as_slice());
        }
        try_join_all(shards.into_values().map(|command| {
            let mut connection = self.connection.clone();
            async move { command.query_async::<u64>(&mut connection).await }
        }))
        .await
        .map_err(unavailable)?;
        // Each object's events folded by one script.
        let mut objects: Vec<(ObjectKey, Vec<&StatEvent>)> = Vec::new();
        for event in &events {
            let key = ObjectKey::of(&event.object);
            match objects
                .iter_mut()
                .find(|(k, _)| k.as_bytes() == key.as_bytes())
            {
                Some((_, list)) => list.push(event),
                None => objects.push((key, vec![event])),
            }
        }
        let folded = try_join_all(objects.iter().map(|(key, events)| {
            let aggregate = self.aggregate_key(key.as_bytes());
            let (prevalence, field) = self.prevalence_key(key.as_bytes());
            let mut invocation = self.statistics.fold.key(&aggregate);
            invocation
                .key(format!("{aggregate}:d"))
                .key(format!("{aggregate}:x"))
                .key(format!("{aggregate}:v"))
                .key(prevalence)
                .arg(field);
            for event in events {
                invocation
                    .arg(match event.kind {
                        StatKind::Sighting => "s",
                        StatKind::Detection => "d",
                        StatKind::FalsePositive => "f",
                    })
                    .arg(event.time.0)
                    .arg(event.device.to_le_bytes().as_slice())
                    .arg(if event.established { "1" } else { "0" })
                    .arg(event.size.map(|size| size.to_string()).unwrap_or_default())
                    .arg(
                        event
                            .signer
                            .map(|signer| signer.as_bytes().to_vec())
                            .unwrap_or_default(),
                    );
            }
            let mut connection = self.connection.clone();
            async move { invocation.invoke_async::<(u64, i64)>(&mut connection).await }
        }))
        .await
        .map_err(unavailable)?;
        let created: u64 = folded.iter().map(|(created, _)| created).sum();
        let grown: i64 = folded.iter().map(|(_, grown)| grown).sum();
        // Then marked for the engine, with this batch's last number (unique to the batch).
        let mut dirty = redis::cmd("HSET");
        dirty.arg(self.stats_key("dirty"));
        for (key, _) in &objects {
            dirty.arg(key.as_bytes()).arg(last.to_be_bytes().as_slice());
        }
        let mut sizes = redis::pipe();
        sizes
            .cmd("INCRBY")
            .arg(self.stats_key("objects"))
            .arg(created)
            .ignore()
            .cmd("INCRBY")
            .arg(self.stats_key("bytes"))
            .arg(grown)
            .ignore();
        let _: () = dirty
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let _: () = sizes
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        for event in events.iter().filter(|e| e.kind == StatKind::FalsePositive) {
            let mut invocation = self.statistics.report.key(self.review_key(""));
            invocation
                .arg(hex(ObjectKey::of(&event.object).as_bytes()))
                .arg(event.time.0)
                .arg(crate::lmdb::encode_local(
                    &event.object,
                    event.comment.as_deref(),
                ));
            let () = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn aggregate(&self, object: &Object) -> Result<Option<Aggregate>, StoreError> {
        self.aggregate_at(ObjectKey::of(object).as_bytes()).await
    }

    async fn aggregate_at(&self, key: &[u8]) -> Result<Option<Aggregate>, StoreError> {
        const FIELDS: [&str; 11] = [
            "first",
            "last",
            "sightings",
            "detections",
            "false_positives",
            "devices",
            "detecting",
            "vouching",
            "size",
            "signer",
            "conflict",
        ];
        let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.aggregate_key(key))
            .arg(&FIELDS)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let [
            first,
            last,
            sightings,
            detections,
            false_positives,
            devices,
            detecting,
            vouching,
            size,
            signer,
            conflict,
        ] = <[Option<Vec<u8>>; 11]>::try_from(values)
            .map_err(|_| corrupt("an aggregate answered the wrong number of fields"))?;
        let Some(first) = number(first.as_ref())? else {
            return Ok(None);
        };
        let count = |value: &Option<Vec<u8>>| number(value.as_ref()).map(Option::unwrap_or_default);
        Ok(Some(Aggregate {
            first_seen: Timestamp(first),
            last_seen: Timestamp(count(&last)?),
            sightings: count(&sightings)?,
            detections: count(&detections)?,
            false_positives: count(&false_positives)?,
            devices: count(&devices)?,
            detecting_devices: count(&detecting)?,
            size: number(size.as_ref())?,
            signer: signer
                .map(|bytes| {
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map(repnet_model::Sha256)
                        .map_err(|_| corrupt("an aggregate's signer is not 32 bytes"))
                })
                .transpose()?,
            signer_conflict: conflict.is_some(),
            vouching_devices: count(&vouching)?,
        }))
    }

    pub(super) async fn delete_events_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let deleted = try_join_all((0..EVENT_SHARDS).map(|shard| {
            let mut connection = self.connection.clone();
            let key = self.events_key(shard);
            async move {
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(key)
                    .arg("-inf")
                    .arg(format!("({}", cutoff.0))
                    .query_async::<u64>(&mut connection)
                    .await
            }
        }))
        .await
        .map_err(unavailable)?;
        Ok(deleted.iter().sum())
    }

    pub(super) async fn event_count(&self) -> Result<u64, StoreError> {
        let counts = try_join_all((0..EVENT_SHARDS).map(|shard| {
            let mut connection = self.connection.clone();
            let key = self.events_key(shard);
            async move {
                redis::cmd("ZCARD")
                    .arg(key)
                    .query_async::<u64>(&mut connection)
                    .await
            }
        }))
        .await
        .map_err(unavailable)?;
        Ok(counts.iter().sum())
    }

    pub(super) async fn dirty_aggregates(&self, limit: usize) -> Result<Dirty, StoreError> {
        let mut connection = self.connection.clone();
        let mut marks: Vec<DirtyMark> = Vec::new();
        let mut cursor = 0u64;
        while marks.len() < limit {
            let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("HSCAN")
                .arg(self.stats_key("dirty"))
                .arg(cursor)
                .arg("COUNT")
                .arg(limit.clamp(10, 1_000))
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            for pair in page.chunks_exact(2) {
                // A scan may answer a field twice.
                if marks.len() < limit && !marks.iter().any(|mark| mark.key == pair[0]) {
                    marks.push(DirtyMark {
                        key: pair[0].clone(),
                        mark: pair[1].clone(),
                    });
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let files = try_join_all(marks.iter().filter_map(|mark| {
            match crate::key::decode_key(&mark.key)? {
                object @ Object::File(repnet_model::FileHash::Sha256(_)) => Some(async move {
                    Ok::<_, StoreError>(self.aggregate_at(&mark.key).await?.map(|aggregate| {
                        DirtyFile {
                            key: mark.key.clone(),
                            object,
                            aggregate,
                        }
                    }))
                }),
                _ => None,
            }
        }))
        .await?;
        Ok(Dirty {
            files: files.into_iter().flatten().collect(),
            keys: marks,
        })
    }

    pub(super) async fn clear_dirty(&self, marks: Vec<DirtyMark>) -> Result<(), StoreError> {
        for chunk in marks.chunks(500) {
            let mut invocation = self.statistics.clear_dirty.key(self.stats_key("dirty"));
            for mark in chunk {
                invocation
                    .arg(mark.key.as_slice())
                    .arg(mark.mark.as_slice());
            }
            let _: u64 = invocation
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn dirty_count(&self) -> Result<u64, StoreError> {
        redis::cmd("HLEN")
            .arg(self.stats_key("dirty"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }

    pub(super) async fn statistics_size(&self) -> Result<StatisticsSize, StoreError> {
        let mut connection = self.connection.clone();
        let (objects, bytes): (Option<u64>, Option<i64>) = redis::cmd("MGET")
            .arg(self.stats_key("objects"))
            .arg(self.stats_key("bytes"))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let event_bytes = try_join_all((0..EVENT_SHARDS).map(|shard| {
            let mut connection = self.connection.clone();
            let key = self.events_key(shard);
            async move {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .query_async::<Option<u64>>(&mut connection)
                    .await
            }
        }))
        .await
        .map_err(unavailable)?;
        Ok(StatisticsSize {
            objects: objects.unwrap_or_default(),
            aggregate_bytes: bytes.unwrap_or_default().max(0) as u64,
            events: self.event_count().await?,
            event_bytes: event_bytes.into_iter().flatten().sum(),
        })
    }

    pub(super) async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError> {
        let mut connection = self.connection.clone();
        let reports: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.review_key(""))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let mut by_id: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
        for (field, value) in reports {
            let Some((id, part)) = field.split_once('/') else {
                continue;
            };
            by_id
                .entry(id.to_owned())
                .or_default()
                .insert(part.to_owned(), value);
        }
        let mut items = Vec::new();
        for (id, parts) in by_id {
            let (Some(reports), Some(first), Some(last), Some(local)) = (
                number(parts.get("n"))?,
                number(parts.get("first"))?,
                number(parts.get("last"))?,
                parts.get("local"),
            ) else {
                // A report being removed or written right now.
                continue;
            };
            let local = crate::lmdb::decode_local(local)?;
            let Some(object) = local.object else { continue };
            items.push(ReviewItem {
                id,
                object,
                reports,
                first_reported: Timestamp(first),
                last_reported: Timestamp(last),
                comment: local.comment,
                engine: None,
            });
        }
        let engine: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.review_key(":engine"))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        for (key, value) in engine {
            items.extend(decode_engine_review(&key, &value)?);
        }
        items.sort_by(|a, b| (a.first_reported, &a.id).cmp(&(b.first_reported, &b.id)));
        Ok(items)
    }

    pub(super) async fn engine_reviews(
        &self,
        set: Vec<EngineReview>,
        removed: Vec<Object>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        if !set.is_empty() {
            let mut command = redis::cmd("HSET");
            command.arg(self.review_key(":engine"));
            let mut buffer = Vec::new();
            for review in &set {
                buffer.clear();
                encode_engine_review(review, &mut buffer);
                command
                    .arg(ObjectKey::of(&review.object).as_bytes())
                    .arg(buffer.as_slice());
            }
            let _: () = command
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
        }
        if !removed.is_empty() {
            let mut command = redis::cmd("HDEL");
            command.arg(self.review_key(":engine"));
            for object in &removed {
                command.arg(ObjectKey::of(object).as_bytes());
            }
            let _: () = command
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn remove_review(&self, id: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        if let Some(engine) = id.strip_prefix(ENGINE_PREFIX) {
            let Some(key) = unhex(engine) else {
                return Ok(false);
            };
            let removed: u64 = redis::cmd("HDEL")
                .arg(self.review_key(":engine"))
                .arg(key)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            return Ok(removed > 0);
        }
        if unhex(id).is_none() {
            return Ok(false);
        }
        let removed: u64 = redis::cmd("HDEL")
            .arg(self.review_key(""))
            .arg(
                ["n", "first", "last", "local"]
                    .map(|part| format!("{id}/{part}"))
                    .to_vec(),
            )
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }
}
