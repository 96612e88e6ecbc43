//! The Redis Cluster backend: everything in the cluster, so that any number of `repnet serve`
//! nodes can answer from the same knowledge base (and Valkey cluster, Kvrocks and managed
//! services compatible with them, through the same protocol).
//!
//! Layout, under a namespace `NS` (every key starts with `NS:`):
//! - `NS:o:{B}` — a hash per bucket `B`, the first [`BUCKET_DIGITS`] hex digits of a storage
//!   key (its kind's tag and five digits of its digest); each field is the rest of the key
//!   from its byte [`FIELD_START`], each value its record as the embedded store encodes it
//!   (`record.rs`). Buckets keep tens to hundreds of records in Redis's compact hash
//!   encoding, spread over every slot, and hold every key of a hash prefix together (for
//!   privacy-mode search).
//! - `NS:names` (id → text), `NS:name_ids` (text → id), `NS:name_next`: interned feed and
//!   threat names, shared by all nodes; an id once given never changes.
//! - `NS:local` — local verdicts' objects, comments and lapse times, by key.
//! - `NS:{log}:seq`, `NS:{log}:stream`, `NS:{log}:id` — the change log: a sequence counter
//!   and a Redis Stream of changed keys, in one slot so that one script numbers and appends;
//!   one entry per write (its id the last number given, `f` the first, `k` the keys packed),
//!   so that an import's chunk of 10,000 keys costs the log's one slot one append.
//!
//! Guarantees, which differ from LMDB's: a change to one key is atomic (each key is written
//! by compare-and-set on its bucket; a change set that lost a race is re-read and re-applied,
//! and changes are idempotent), but a change set of several keys is not one transaction, and
//! a lookup of several keys reads each as it is when read. A key is logged after it is
//! written. Reads and writes go to the masters.
//!
//! Work is driven by demand: the backend-neutral core (`core.rs`) runs over the records
//! fetched so far, notes the keys and names it lacked, and runs again once they are fetched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::cluster_async::ClusterConnection;
use repnet_model::{Object, Source, Timestamp};
use repnet_protocol::replication::{StreamHeader, StreamKind, StreamWriter, SyncEntry};

use crate::backend::{Backend, ChangesAnswer, SyncState};
use crate::bulk::Applier;
use crate::core::{CachedName, NameCache, Snapshot, Transaction};
use crate::record::{self, Mutation, StoredRecord, source_id};
use crate::{
    Aggregate, Change, Dirty, DirtyMark, EngineReview, Knowledge, Licence, LocalVerdict, Outcome,
    PrefixMatch, ReviewItem, SearchPrefix, StatEvent, StatisticsSize, StoreError, StoreStats,
};

mod pipelines;
mod statistics;

/// Hex digits of a storage key that name its bucket: its kind's tag (two) and five of its
/// digest, 2^20 buckets per kind. Buckets hold about 10 records at 10 M objects of a kind and
/// 500 at 500 M, where Redis's compact encoding of a hash (a list scanned on every access)
/// ends; with four digest digits (2^16 buckets), every write of a 10 M import scanned ~150
/// fields.
const BUCKET_DIGITS: usize = 7;

/// Where a key's field in its bucket starts: the bytes wholly named by the bucket are not
/// repeated in the field (the byte of the bucket's last digit is).
const FIELD_START: usize = BUCKET_DIGITS / 2;

/// Passes of the core over fetched records before a read or write gives up: a file's
/// records take three (its key, the SHA-256 it is an alias of, the file's other hashes).
const MAX_PASSES: usize = 6;

/// Times a change set is re-read and re-applied after another node changed a key under it.
const MAX_RETRIES: usize = 16;

/// Where the cluster is and how this store names its keys there.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `redis://host:port` of one or more nodes; the rest are discovered.
    pub nodes: Vec<String>,
    /// Every key starts with this and a colon: several knowledge bases can share a cluster.
    pub namespace: String,
    /// Where temporary files go (imports' sorted runs).
    pub scratch: PathBuf,
    /// How long a connection to a node and an answer may take.
    pub timeout: Duration,
    /// Replicas of each master that must have a write before it is acknowledged (`WAIT`):
    /// 1 and more survive the failover of a master; 0 does not wait (a cluster without
    /// replicas).
    pub replicas: u32,
}

/// Sets fields of a bucket (ARGV: field, what was read — `''` for absent —, new value, in
/// turn) each only if it still holds what was read: answers 1 for each written, 0 where
/// another writer was first. An empty new value deletes the field.
const COMPARE_AND_SET: &str = r"
local written = {}
for i = 1, #ARGV, 3 do
  if ARGV[i + 1] == '' and ARGV[i + 2] ~= '' then
    -- Absent when read (what an import of new keys writes): one call.
    written[#written + 1] = redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2])
  else
    local current = redis.call('HGET', KEYS[1], ARGV[i])
    if current == false then current = '' end
    if current ~= ARGV[i + 1] then
      written[#written + 1] = 0
    else
      if ARGV[i + 2] == '' then
        redis.call('HDEL', KEYS[1], ARGV[i])
      else
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
      end
      written[#written + 1] = 1
    end
  end
end
return written
";

/// Gives the ARGV[2] changed keys packed in ARGV[3] the next sequence numbers and appends
/// them to the stream as one entry (its id the last number, `f` the first, `k` the keys);
/// entries whose numbers all lie more than ARGV[1] behind are trimmed. Answers the last
/// number given.
const LOG_CHANGES: &str = r"
local count = tonumber(ARGV[2])
local last = redis.call('INCRBY', KEYS[1], count)
local floor = math.max(0, last - tonumber(ARGV[1]))
redis.call('XADD', KEYS[2], 'MINID', '~', floor, last .. '-1', 'f', last - count + 1, 'k', ARGV[3])
return last
";

/// Takes the lease KEYS[1] for ARGV[1] for ARGV[2] seconds if it is free or already theirs:
/// answers 1 if they hold it now.
const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
";

/// Notes ARGV[1] alive now (the server's clock, in a sorted set), forgets those not seen for
/// ARGV[2] seconds, and answers how many are alive.
const HEARTBEAT: &str = r"
local now = redis.call('TIME')[1]
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
";

/// The device secret (KEYS[1], a hash of `secret` and `made`) if younger than ARGV[2]
/// seconds at ARGV[1], else ARGV[3], kept as the new one made now.
const DEVICE_SECRET: &str = r"
local made = redis.call('HGET', KEYS[1], 'made')
if made and math.max(0, tonumber(ARGV[1]) - tonumber(made)) < tonumber(ARGV[2]) then
  return redis.call('HGET', KEYS[1], 'secret')
end
redis.call('HSET', KEYS[1], 'secret', ARGV[3], 'made', ARGV[1])
return ARGV[3]
";

#[derive(Clone)]
pub(crate) struct Cluster {
    connection: ClusterConnection,
    namespace: String,
    scratch: PathBuf,
    names: Arc<RwLock<NameCache>>,
    compare_and_set: redis::Script,
    log_changes: redis::Script,
    device_secret: redis::Script,
    lease: redis::Script,
    heartbeat: redis::Script,
    /// This store handle's name as a lease holder.
    holder: String,
    statistics: Arc<statistics::Scripts>,
    /// Which master serves which slot, for pipelines per master (`pipelines.rs`).
    slot_map: Arc<RwLock<Option<Arc<pipelines::SlotMap>>>>,
    /// Whether statistics exist (then lookups read device counts), and when that was last
    /// asked of the cluster (seconds).
    has_stats: Arc<AtomicBool>,
    stats_checked: Arc<AtomicU64>,
    change_log_max: u64,
    replicas: u32,
    timeout: Duration,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The cluster could not be reached or refused: what a caller shows as "unavailable".
fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn corrupt(error: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

/// Lower-case hex, by table: every key's bucket name is made with it.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}

impl Cluster {
    pub(crate) async fn connect(
        options: &ClusterOptions,
        change_log_max: u64,
    ) -> Result<Cluster, StoreError> {
        let client = redis::cluster::ClusterClient::builder(options.nodes.clone())
            .connection_timeout(options.timeout)
            .response_timeout(options.timeout)
            .retries(3)
            .build()
            .map_err(unavailable)?;
        let connection = client.get_async_connection().await.map_err(|error| {
            // A standalone Redis answers, but is not a cluster: say what to set up instead.
            match error.detail() {
                Some(detail) if detail.contains("cluster support disabled") => {
                    StoreError::Unavailable(format!(
                        "{} is a Redis without cluster mode: start the nodes with `cluster-enabled yes` and join them with `redis-cli --cluster create`",
                        options.nodes.join(",")
                    ))
                }
                _ => unavailable(error),
            }
        })?;
        let cluster = Cluster {
            connection,
            namespace: options.namespace.clone(),
            scratch: options.scratch.clone(),
            names: Arc::new(RwLock::new(NameCache::default())),
            compare_and_set: redis::Script::new(COMPARE_AND_SET),
            log_changes: redis::Script::new(LOG_CHANGES),
            device_secret: redis::Script::new(DEVICE_SECRET),
            lease: redis::Script::new(LEASE),
            heartbeat: redis::Script::new(HEARTBEAT),
            holder: {
                let mut id = [0u8; 8];
                getrandom::fill(&mut id)
                    .map_err(|error| StoreError::Randomness(error.to_string()))?;
                hex(&id)
            },
            statistics: Arc::default(),
            slot_map: Arc::default(),
            has_stats: Arc::default(),
            stats_checked: Arc::default(),
            change_log_max,
            replicas: options.replicas,
            timeout: options.timeout,
        };
        cluster.load_all_names().await?;
        // The log's name, made once by whichever node comes first.
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|error| StoreError::Randomness(error.to_string()))?;
        let log_id = crate::sync::LogId(id);
        let _: bool = redis::cmd("SETNX")
            .arg(cluster.log_key("id"))
            .arg(log_id.to_string())
            .query_async(&mut cluster.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(cluster)
    }

    /// The hex of the bucket a storage key falls in, and the rest of the key.
    fn split<'k>(&self, key: &'k [u8]) -> (String, &'k [u8]) {
        (bucket_digits(key), field_bytes(key))
    }

    fn bucket(&self, key: &[u8]) -> (String, Vec<u8>) {
        let (bucket, rest) = self.split(key);
        (format!("{}:o:{{{bucket}}}", self.namespace), rest.to_vec())
    }

    /// `keys` as runs of consecutive keys in one bucket, each with its bucket's name: the
    /// sorted keys of an import's chunk make one run per bucket, named once.
    fn bucket_runs<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<(String, Range<usize>)> {
        let mut runs = Vec::new();
        let mut start = 0;
        for end in 1..=keys.len() {
            let first = keys[start].as_ref();
            if end == keys.len() || bucket_id(keys[end].as_ref()) != bucket_id(first) {
                runs.push((self.bucket(first).0, start..end));
                start = end;
            }
        }
        runs
    }

    fn log_key(&self, name: &str) -> String {
        format!("{}:{{log}}:{name}", self.namespace)
    }

    fn names_key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }

    /// The raw values under `keys`: one `HMGET` per bucket, pipelined per master.
    async fn fetch<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let runs = self.bucket_runs(keys);
        let commands = runs
            .iter()
            .map(|(bucket, run)| {
                let mut command = redis::cmd("HMGET");
                command.arg(bucket);
                for key in &keys[run.clone()] {
                    command.arg(field_bytes(key.as_ref()));
                }
                pipelines::Routed {
                    key: bucket.clone(),
                    command,
                    fallback: pipelines::Fallback::Command,
                }
            })
            .collect();
        let answers = self.run_pipelined(commands).await?;
        let mut values = Vec::with_capacity(keys.len());
        for ((_, run), answer) in runs.into_iter().zip(answers) {
            let answer: Vec<Option<Vec<u8>>> = redis::from_redis_value(answer).map_err(corrupt)?;
            if answer.len() != run.len() {
                return Err(corrupt("HMGET answered another number of fields"));
            }
            values.extend(answer);
        }
        Ok(values)
    }

    /// How many devices reported each object under `keys` (0 where none did).
    async fn fetch_devices(&self, keys: &[Vec<u8>]) -> Result<Vec<u64>, StoreError> {
        try_join_all(keys.iter().map(|key| {
            let (hash, field) = self.prevalence_key(key);
            let mut connection = self.connection.clone();
            async move {
                redis::cmd("HGET")
                    .arg(hash)
                    .arg(field)
                    .query_async::<Option<u64>>(&mut connection)
                    .await
                    .map(Option::unwrap_or_default)
            }
        }))
        .await
        .map_err(unavailable)
    }

    /// Every name interned so far (feeds and threat names: few), from the claims
    /// (`name_ids`): `names` may also hold a candidate id that lost its claim to another
    /// node, which no record uses and which must not become the name's id here.
    async fn load_all_names(&self) -> Result<(), StoreError> {
        let names: Vec<(String, u32)> = redis::cmd("HGETALL")
            .arg(self.names_key("name_ids"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut cache = self.names.write().unwrap_or_else(PoisonError::into_inner);
        for (text, id) in names {
            cache.insert(id, CachedName::new(&text));
        }
        Ok(())
    }

    /// Makes sure the cache knows the names with these ids.
    async fn load_names(&self, ids: &[u32]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let texts: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.names_key("names"))
            .arg(ids)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut cache = self.names.write().unwrap_or_else(PoisonError::into_inner);
        for (id, text) in ids.iter().zip(texts) {
            let text = text.ok_or_else(|| corrupt(format!("name {id} is missing")))?;
            cache.insert(*id, CachedName::new(&text));
        }
        Ok(())
    }

    /// Interns `texts`, giving an id to each that has none; every node agrees on the ids.
    /// Answers the texts this call gave an id: names no record can hold yet.
    async fn intern(&self, texts: &[String]) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut created = Vec::new();
        for text in texts {
            let id = match redis::cmd("HGET")
                .arg(self.names_key("name_ids"))
                .arg(text)
                .query_async::<Option<u32>>(&mut connection)
                .await
                .map_err(unavailable)?
            {
                Some(id) => id,
                None => {
                    let candidate: u32 = redis::cmd("INCR")
                        .arg(self.names_key("name_next"))
                        .query_async(&mut connection)
                        .await
                        .map_err(unavailable)?;
                    // The text first, then the claim: an id a reader finds always has its
                    // text. A candidate that lost the claim to another node stays unused.
                    let _: () = redis::cmd("HSET")
                        .arg(self.names_key("names"))
                        .arg(candidate)
                        .arg(text)
                        .query_async(&mut connection)
                        .await
                        .map_err(unavailable)?;
                    let claimed: bool = redis::cmd("HSETNX")
                        .arg(self.names_key("name_ids"))
                        .arg(text)
                        .arg(candidate)
                        .query_async(&mut connection)
                        .await
                        .map_err(unavailable)?;
                    if claimed {
                        created.push(text.clone());
                    }
                    redis::cmd("HGET")
                        .arg(self.names_key("name_ids"))
                        .arg(text)
                        .query_async::<Option<u32>>(&mut connection)
                        .await
                        .map_err(unavailable)?
                        .ok_or_else(|| corrupt(format!("name {text:?} lost its id")))?
                }
            };
            self.names
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, CachedName::new(text));
        }
        Ok(created)
    }

    /// Runs `read` over records fetched on demand until it needs nothing more.
    async fn read<T>(
        &self,
        read: impl Fn(&Fetched<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut records: HashMap<Vec<u8>, Option<StoredRecord>> = HashMap::new();
        // Device counts are read beside records once any node has recorded statistics.
        let prevalence = self.has_statistics().await?;
        let mut devices: HashMap<Vec<u8>, u64> = HashMap::new();
        for _ in 0..MAX_PASSES {
            let (result, keys, names) = {
                let cache = self.names.read().unwrap_or_else(PoisonError::into_inner);
                let fetched = Fetched {
                    records: &records,
                    devices: prevalence.then_some(&devices),
                    names: &cache,
                    missing: RefCell::default(),
                    missing_names: RefCell::default(),
                };
                let result = read(&fetched);
                (
                    result,
                    fetched.missing.into_inner(),
                    fetched.missing_names.into_inner(),
                )
            };
            if keys.is_empty() && names.is_empty() {
                return result;
            }
            let mut keys = keys;
            keys.sort_unstable();
            keys.dedup();
            let (values, counts) = futures_util::future::try_join(self.fetch(&keys), async {
                match prevalence {
                    true => self.fetch_devices(&keys).await,
                    false => Ok(Vec::new()),
                }
            })
            .await?;
            for (key, count) in keys.iter().zip(counts) {
                devices.insert(key.clone(), count);
            }
            for (key, value) in keys.into_iter().zip(values) {
                let record = value
                    .map(|bytes| record::decode(&bytes))
                    .transpose()
                    .map_err(corrupt)?;
                records.insert(key, record);
            }
            let mut names = names;
            names.sort_unstable();
            names.dedup();
            self.load_names(&names).await?;
        }
        Err(corrupt(
            "a lookup needed more rounds than any layout allows",
        ))
    }

    /// Applies `changes` by demand-driven passes, then writes each changed key by
    /// compare-and-set; a change set that lost a race is read again and applied again.
    async fn write(&self, changes: &[Change]) -> Result<Vec<Outcome>, StoreError> {
        let mut raw: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        for _ in 0..MAX_RETRIES {
            let pass = self.plan(changes, &mut raw).await?;
            let mut lost = Vec::new();
            let mut writes: Vec<Swap<'_>> = pass
                .writes
                .iter()
                .map(|(key, record)| {
                    let before = raw.get(key).and_then(|value| value.as_deref());
                    (key.as_slice(), before, record)
                })
                .collect();
            writes.sort_unstable_by_key(|(key, _, _)| *key);
            let done = self.compare_and_set_all(&writes).await?;
            for ((key, _, _), done) in writes.iter().zip(done) {
                if !done {
                    lost.push(key.to_vec());
                }
            }
            if !lost.is_empty() {
                // Read every key of the set again: those that were written changed too.
                for key in pass.writes.keys() {
                    raw.remove(key);
                }
                continue;
            }
            self.write_locals(&pass.locals).await?;
            self.log(&pass.changed).await?;
            let buckets: Vec<String> = pass.writes.keys().map(|key| self.bucket(key).0).collect();
            self.wait_for_replicas(buckets).await?;
            return Ok(pass.outcomes);
        }
        Err(StoreError::Unavailable(
            "other nodes kept changing the same keys; try again".to_owned(),
        ))
    }

    /// Writes each `(key, what was read, new record)` by compare-and-set, one script per
    /// bucket (keys of one import chunk share buckets), pipelined per master; answers, in
    /// order, whether each was written (false: another writer was first).
    async fn compare_and_set_all(&self, writes: &[Swap<'_>]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<&[u8]> = writes.iter().map(|(key, _, _)| *key).collect();
        let runs = self.bucket_runs(&keys);
        let mut after = Vec::new();
        let commands = runs
            .iter()
            .map(|(bucket, run)| {
                let mut command = redis::cmd("EVALSHA");
                command
                    .arg(self.compare_and_set.get_hash())
                    .arg(1)
                    .arg(bucket);
                for (key, before, record) in &writes[run.clone()] {
                    after.clear();
                    if !record.is_empty() {
                        record::encode(record, &mut after);
                    }
                    command
                        .arg(field_bytes(key))
                        .arg(before.unwrap_or_default())
                        .arg(after.as_slice());
                }
                pipelines::Routed {
                    key: bucket.clone(),
                    command,
                    fallback: pipelines::Fallback::Script(self.compare_and_set.clone()),
                }
            })
            .collect();
        let answers = self.run_pipelined(commands).await?;
        let mut written = Vec::with_capacity(writes.len());
        for ((_, run), answer) in runs.into_iter().zip(answers) {
            let done: Vec<i64> = redis::from_redis_value(answer).map_err(corrupt)?;
            if done.len() != run.len() {
                return Err(corrupt("a compare-and-set answered another number of keys"));
            }
            written.extend(done.into_iter().map(|done| done == 1));
        }
        Ok(written)
    }

    /// One complete pass of `changes` over the values in `raw`, fetching what it lacks.
    async fn plan(
        &self,
        changes: &[Change],
        raw: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<Pass, StoreError> {
        for _ in 0..MAX_PASSES {
            let (result, overlay) = {
                let cache = self.names.read().unwrap_or_else(PoisonError::into_inner);
                let mut overlay = Overlay {
                    raw,
                    names: &cache,
                    pass: Pass::default(),
                    missing: RefCell::default(),
                    missing_names: Vec::new(),
                };
                let result: Result<Vec<Outcome>, StoreError> =
                    changes.iter().map(|change| overlay.apply(change)).collect();
                let Overlay {
                    pass,
                    missing,
                    missing_names,
                    ..
                } = overlay;
                (result, (pass, missing.into_inner(), missing_names))
            };
            let (mut pass, missing, missing_names) = overlay;
            if missing.is_empty() && missing_names.is_empty() {
                pass.outcomes = result?;
                return Ok(pass);
            }
            let (mut missing, mut missing_names) = (missing, missing_names);
            missing.sort_unstable();
            missing.dedup();
            missing_names.sort_unstable();
            missing_names.dedup();
            let values = self.fetch(&missing).await?;
            for (key, value) in missing.into_iter().zip(values) {
                raw.insert(key, value);
            }
            self.intern(&missing_names).await?;
        }
        Err(corrupt(
            "a change needed more rounds than any layout allows",
        ))
    }

    async fn write_locals(&self, locals: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        for (key, value) in locals {
            let command = match value {
                Some(value) => {
                    let mut command = redis::cmd("HSET");
                    command
                        .arg(self.names_key("local"))
                        .arg(key.as_slice())
                        .arg(value.as_slice());
                    command
                }
                None => {
                    let mut command = redis::cmd("HDEL");
                    command.arg(self.names_key("local")).arg(key.as_slice());
                    command
                }
            };
            let _: () = command
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Numbers the changed keys and appends them to the change log.
    async fn log<K: AsRef<[u8]>>(&self, changed: &[K]) -> Result<(), StoreError> {
        if changed.is_empty() || self.change_log_max == 0 {
            return Ok(());
        }
        let mut invocation = self.log_changes.key(self.log_key("seq"));
        invocation
            .key(self.log_key("stream"))
            .arg(self.change_log_max)
            .arg(changed.len())
            .arg(pack_keys(changed));
        let _: u64 = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Waits until `self.replicas` replicas of the masters that hold `buckets` (and the
    /// change log) have every write made so far: only then is a write acknowledged, so that
    /// it survives a master's failover. One `WAIT` per master, sent on the connection that
    /// carried the writes.
    async fn wait_for_replicas(&self, mut buckets: Vec<String>) -> Result<(), StoreError> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        if self.replicas == 0 || buckets.is_empty() {
            return Ok(());
        }
        buckets.push(self.log_key("stream"));
        // WAIT covers every write sent before it on the connection to its master: one per
        // master written to.
        let masters = self.masters_of(&buckets).await?;
        // Half the answer's timeout, so that a replica that does not answer is reported as
        // such rather than as a node that timed out.
        let timeout = u64::try_from(self.timeout.as_millis() / 2).unwrap_or(u64::MAX);
        let acknowledged = try_join_all(masters.into_iter().map(|route| {
            let mut wait = redis::cmd("WAIT");
            wait.arg(self.replicas).arg(timeout);
            let mut connection = self.connection.clone();
            async move {
                let value = connection
                    .route_command(
                        wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                redis::from_redis_value::<u32>(value).map_err(redis::RedisError::from)
            }
        }))
        .await
        .map_err(unavailable)?;
        match acknowledged.iter().min() {
            Some(&fewest) if fewest < self.replicas => Err(StoreError::Unavailable(format!(
                "the write reached a master but only {fewest} of the {} replicas it must reach within {} ms; it may be lost if that master fails: try again",
                self.replicas, timeout
            ))),
            _ => Ok(()),
        }
    }

    /// Stores the built-in test set where it is missing or differs.
    pub(crate) async fn seed_builtin(&self, now: Timestamp) -> Result<(), StoreError> {
        let entries = repnet_model::builtin_entries(now);
        let objects: Vec<Object> = entries.iter().map(|e| e.object.clone()).collect();
        let known = self.lookup(&objects).await?;
        let changes = crate::core::builtin_changes(entries, known);
        if !changes.is_empty() {
            self.write(&changes).await?;
        }
        Ok(())
    }
}

/// The records fetched so far, as the core reads them; what it lacked is noted.
struct Fetched<'a> {
    records: &'a HashMap<Vec<u8>, Option<StoredRecord>>,
    /// Device counts by key, when statistics exist.
    devices: Option<&'a HashMap<Vec<u8>, u64>>,
    names: &'a NameCache,
    missing: RefCell<Vec<Vec<u8>>>,
    missing_names: RefCell<Vec<u32>>,
}

impl Snapshot for Fetched<'_> {
    fn record(&self, key: &[u8]) -> Result<Option<StoredRecord>, StoreError> {
        match self.records.get(key) {
            Some(record) => Ok(record.clone()),
            None => {
                self.missing.borrow_mut().push(key.to_vec());
                Ok(None)
            }
        }
    }

    fn prevalence(&self, key: &[u8]) -> Result<u64, StoreError> {
        let Some(devices) = self.devices else {
            return Ok(0);
        };
        match devices.get(key) {
            Some(count) => Ok(*count),
            None => {
                self.missing.borrow_mut().push(key.to_vec());
                Ok(0)
            }
        }
    }

    fn name(&self, id: u32) -> Result<CachedName, StoreError> {
        match self.names.get(id) {
            Some(name) => Ok(name.clone()),
            None => {
                self.missing_names.borrow_mut().push(id);
                // A stand-in, valid as a feed and a threat name, so that the pass goes on
                // and notes every other miss; a pass with misses is thrown away.
                Ok(CachedName::new("pending"))
            }
        }
    }
}

/// What a complete pass of a change set writes.
#[derive(Default)]
struct Pass {
    /// Each key's new record (empty: delete).
    writes: HashMap<Vec<u8>, StoredRecord>,
    locals: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    changed: Vec<Vec<u8>>,
    outcomes: Vec<Outcome>,
}

/// The core's writes over fetched values; what it lacked is noted.
struct Overlay<'a> {
    raw: &'a HashMap<Vec<u8>, Option<Vec<u8>>>,
    names: &'a NameCache,
    pass: Pass,
    missing: RefCell<Vec<Vec<u8>>>,
    missing_names: Vec<String>,
}

impl Transaction for Overlay<'_> {
    type Error = StoreError;

    fn get(&self, key: &[u8]) -> Result<Option<StoredRecord>, StoreError> {
        if let Some(record) = self.pass.writes.get(key) {
            return Ok((!record.is_empty()).then(|| record.clone()));
        }
        match self.raw.get(key) {
            Some(None) => Ok(None),
            Some(Some(bytes)) => record::decode(bytes).map(Some).map_err(corrupt),
            None => {
                self.missing.borrow_mut().push(key.to_vec());
                Ok(None)
            }
        }
    }

    fn put_changed(
        &mut self,
        key: &[u8],
        before: &StoredRecord,
        record: &StoredRecord,
    ) -> Result<(), StoreError> {
        if before.differs_for_sync(record) && !self.pass.changed.iter().any(|k| k == key) {
            self.pass.changed.push(key.to_vec());
        }
        self.pass.writes.insert(key.to_vec(), record.clone());
        Ok(())
    }

    fn existing_name_id(&self, text: &str) -> Option<u32> {
        self.names.by_text.get(text).copied()
    }

    fn name_id(&mut self, text: &str) -> Result<u32, StoreError> {
        match self.existing_name_id(text) {
            Some(id) => Ok(id),
            None => {
                self.missing_names.push(text.to_owned());
                Ok(0)
            }
        }
    }

    fn note_new_key(&mut self, _key: &[u8]) {}

    fn put_local(
        &mut self,
        key: &[u8],
        object: &Object,
        comment: Option<&str>,
        expires: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let value = crate::lmdb::encode_local_expiring(object, comment, expires);
        self.pass.locals.push((key.to_vec(), Some(value)));
        Ok(())
    }

    fn delete_local(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.pass.locals.push((key.to_vec(), None));
        Ok(())
    }
}

/// Bulk imports are applied key by key, in chunks of sorted keys: each key by
/// compare-and-set as `apply` writes it (so an import is not one transaction here: one that
/// stops leaves the keys it wrote, answering, and running it again completes it).
impl Applier for Cluster {
    fn bulk_apply(
        &self,
        import: &crate::bulk::BulkImport,
    ) -> Result<crate::bulk::BulkOutcome, StoreError> {
        block_on(self.bulk_apply_async(import))
    }

    fn note_writes(&self) {}

    fn dir(&self) -> &Path {
        &self.scratch
    }
}

/// Keys of an import written at a time.
const IMPORT_CHUNK: usize = 10_000;
/// Chunks of an import being written at once.
const CHUNKS_IN_FLIGHT: usize = 4;

impl Cluster {
    async fn bulk_apply_async(
        &self,
        import: &crate::bulk::BulkImport,
    ) -> Result<crate::bulk::BulkOutcome, StoreError> {
        if let Some(header) = import.stream_header() {
            self.check_cursor(header).await?;
        }
        // Every name of the import interned first: the mutations then only need ids.
        let ResolvedNames {
            sources,
            threats,
            created,
        } = self.resolve_import_names(import).await?;
        let remap = |mutation: &mut Mutation| -> Result<(), StoreError> {
            let unresolved = || corrupt("an import name was not resolved");
            let (source, threat) = match mutation {
                Mutation::Upsert { source, .. } => {
                    (&mut source.source_id, source.threat_id.as_mut())
                }
                Mutation::Retract { source_id } => (source_id, None),
                Mutation::Alias(_) | Mutation::Text(_) => return Ok(()),
            };
            *source = sources
                .get(*source as usize)
                .copied()
                .flatten()
                .ok_or_else(unresolved)?;
            if let Some(threat) = threat {
                *threat = threats
                    .get(*threat as usize)
                    .copied()
                    .flatten()
                    .ok_or_else(unresolved)?;
            }
            Ok(())
        };
        // A source whose name this import gave its id has no records to retract (as on LMDB:
        // a source never stored before has nothing to retract), which spares a first import
        // the scan of every bucket.
        let replaced: Vec<u32> = {
            let cache = self.names.read().unwrap_or_else(PoisonError::into_inner);
            import
                .replaced_sources()
                .iter()
                .filter(|source| match source {
                    Source::Feed(feed) => !created.iter().any(|name| name == feed.as_str()),
                    _ => true,
                })
                .filter_map(|source| stored_source_id(&cache, source))
                .collect()
        };
        // The keys the import names, for the retraction of replaced sources.
        let mut named = Named::default();
        // Chunks hold distinct keys, and several are written at once.
        let mut in_flight = InFlight::default();
        let mut chunk: Vec<(Vec<u8>, Vec<Mutation>)> = Vec::new();
        let mut stream = import.stream()?;
        let mut pending: Option<crate::bulk::Entry> = stream.next().transpose()?;
        while let Some((key, mut mutation)) = pending.take() {
            remap(&mut mutation)?;
            match chunk.last_mut() {
                Some((last, mutations)) if last.as_slice() == key.as_slice() => {
                    mutations.push(mutation)
                }
                _ => {
                    if chunk.len() == IMPORT_CHUNK {
                        in_flight
                            .push(self.write_chunk(std::mem::take(&mut chunk)))
                            .await?;
                    }
                    if !replaced.is_empty() {
                        named.push(&key);
                    }
                    chunk.push((key.to_vec(), vec![mutation]));
                }
            }
            pending = stream.next().transpose()?;
        }
        in_flight.push(self.write_chunk(chunk)).await?;
        let written = in_flight.finish().await?;
        let retracted = if replaced.is_empty() {
            0
        } else {
            named.finish();
            self.retract_elsewhere(&replaced, &named).await?
        };
        if let Some(header) = import.stream_header() {
            let _: () = redis::cmd("SET")
                .arg(self.log_key("upstream"))
                .arg(crate::backend::Cursor::after(header).encode())
                .query_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(crate::bulk::BulkOutcome {
            written,
            rebuilt: false,
            retracted,
        })
    }

    /// The store's ids of the import's names (sources and threat names), by import id.
    async fn resolve_import_names(
        &self,
        import: &crate::bulk::BulkImport,
    ) -> Result<ResolvedNames, StoreError> {
        let names = import.names();
        let mut texts = Vec::new();
        let mut parsed = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let (is_source, is_threat) = import.name_roles(index);
            let source = if is_source {
                let source: Source = name
                    .parse()
                    .map_err(|e: repnet_model::ParseError| corrupt(e))?;
                if let Source::Feed(feed) = &source {
                    texts.push(feed.as_str().to_owned());
                }
                Some(source)
            } else {
                None
            };
            if is_threat {
                texts.push(name.clone());
            }
            parsed.push((source, is_threat));
        }
        let unknown: Vec<String> = {
            let cache = self.names.read().unwrap_or_else(PoisonError::into_inner);
            texts
                .into_iter()
                .filter(|text| !cache.by_text.contains_key(text.as_str()))
                .collect()
        };
        let created = self.intern(&unknown).await?;
        let cache = self.names.read().unwrap_or_else(PoisonError::into_inner);
        let mut sources = Vec::with_capacity(names.len());
        let mut threats = Vec::with_capacity(names.len());
        for ((source, is_threat), name) in parsed.iter().zip(names) {
            sources.push(match source {
                Some(source) => Some(
                    stored_source_id(&cache, source)
                        .ok_or_else(|| corrupt(format!("source {source} has no id")))?,
                ),
                None => None,
            });
            threats.push(match is_threat {
                true => Some(
                    cache
                        .by_text
                        .get(name.as_str())
                        .copied()
                        .ok_or_else(|| corrupt(format!("threat name {name:?} has no id")))?,
                ),
                false => None,
            });
        }
        Ok(ResolvedNames {
            sources,
            threats,
            created,
        })
    }

    /// Applies each key's mutations by compare-and-set, reading a key again when another
    /// writer was first; logs the changed keys. Answers how many keys changed.
    async fn write_chunk(&self, chunk: Vec<(Vec<u8>, Vec<Mutation>)>) -> Result<u64, StoreError> {
        if chunk.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&[u8]> = chunk.iter().map(|(key, _)| key.as_slice()).collect();
        let mut current = self.fetch(&keys).await?;
        let decode = |value: &Option<Vec<u8>>| match value {
            Some(bytes) => record::decode(bytes).map_err(corrupt),
            None => Ok(StoredRecord::default()),
        };
        // Each key as the chunk found it, and as it leaves it: a key is logged when they
        // differ, however many rounds it took (a write that landed but was reported lost —
        // a pipeline cut by a failover — is found written in the next round).
        let initial: Vec<StoredRecord> = current.iter().map(decode).collect::<Result<_, _>>()?;
        let mut finals: Vec<Option<StoredRecord>> = vec![None; chunk.len()];
        // Ascending, so that the keys written stay sorted, one run per bucket.
        let mut todo: Vec<usize> = (0..chunk.len()).collect();
        let mut written = 0;
        for round in 0..MAX_RETRIES {
            let mut writes = Vec::new();
            for &index in &todo {
                let mut stored = match round {
                    0 => initial[index].clone(),
                    _ => decode(&current[index])?,
                };
                let mut any = false;
                for mutation in &chunk[index].1 {
                    any |= stored.apply(mutation);
                }
                if any {
                    writes.push((index, stored));
                } else if round > 0 {
                    // Nothing left to do: the key holds what the import wanted.
                    finals[index] = Some(stored);
                }
            }
            let results = self
                .compare_and_set_all(
                    &writes
                        .iter()
                        .map(|(index, stored)| (keys[*index], current[*index].as_deref(), stored))
                        .collect::<Vec<_>>(),
                )
                .await?;
            let mut lost = Vec::new();
            for ((index, stored), done) in writes.into_iter().zip(results) {
                if done {
                    written += 1;
                    finals[index] = Some(stored);
                } else {
                    lost.push(index);
                }
            }
            if lost.is_empty() {
                let changed: Vec<&[u8]> = finals
                    .iter()
                    .zip(&initial)
                    .zip(&keys)
                    .filter(|((last, first), _)| {
                        last.as_ref()
                            .is_some_and(|last| first.differs_for_sync(last))
                    })
                    .map(|(_, key)| *key)
                    .collect();
                self.log(&changed).await?;
                let buckets = self
                    .bucket_runs(&keys)
                    .into_iter()
                    .map(|(bucket, _)| bucket);
                self.wait_for_replicas(buckets.collect()).await?;
                return Ok(written);
            }
            let lost_keys: Vec<&[u8]> = lost.iter().map(|&index| keys[index]).collect();
            for (index, value) in lost.iter().zip(self.fetch(&lost_keys).await?) {
                current[*index] = value;
            }
            todo = lost;
        }
        Err(StoreError::Unavailable(
            "other nodes kept changing the same keys; run the import again".to_owned(),
        ))
    }

    /// Retracts the `replaced` sources from every key not in `named`: what a replacing import
    /// no longer lists. Answers how many records went. Buckets are read in pipelined waves
    /// and the retractions written in chunks, several at once, as an import's are.
    async fn retract_elsewhere(&self, replaced: &[u32], named: &Named) -> Result<u64, StoreError> {
        let mut retracted = 0;
        let mut in_flight = InFlight::default();
        let mut chunk = Vec::new();
        for wave in self.buckets().await?.chunks(SCAN_PAGE) {
            let commands = wave
                .iter()
                .map(|bucket| {
                    let mut command = redis::cmd("HGETALL");
                    command.arg(bucket);
                    pipelines::Routed {
                        key: bucket.clone(),
                        command,
                        fallback: pipelines::Fallback::Command,
                    }
                })
                .collect();
            let answers = self.run_pipelined(commands).await?;
            for (bucket, answer) in wave.iter().zip(answers) {
                let prefix = bucket_prefix(bucket)?;
                let fields: Vec<(Vec<u8>, Vec<u8>)> =
                    redis::from_redis_value(answer).map_err(corrupt)?;
                for (field, value) in fields {
                    let mut key = prefix.clone();
                    key.extend_from_slice(&field);
                    let stored = record::decode(&value).map_err(corrupt)?;
                    let mutations: Vec<Mutation> = replaced
                        .iter()
                        .filter(|id| stored.sources.iter().any(|s| s.source_id == **id))
                        .map(|&source_id| Mutation::Retract { source_id })
                        .collect();
                    if mutations.is_empty() || named.contains(&key) {
                        continue;
                    }
                    retracted += mutations.len() as u64;
                    chunk.push((key, mutations));
                    if chunk.len() == IMPORT_CHUNK {
                        in_flight
                            .push(self.write_chunk(std::mem::take(&mut chunk)))
                            .await?;
                    }
                }
            }
        }
        in_flight.push(self.write_chunk(chunk)).await?;
        in_flight.finish().await?;
        Ok(retracted)
    }

    /// Every bucket of this namespace, from every master.
    async fn buckets(&self) -> Result<Vec<String>, StoreError> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        let pattern = format!("{}:o:{{*", self.namespace);
        let mut buckets = Vec::new();
        for slot in self.masters().await? {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_PAGE);
                let page =
                    self.connection
                        .clone()
                        .route_command(
                            scan,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                                Route::new(slot, SlotAddr::Master),
                            )),
                        )
                        .await
                        .map_err(unavailable)?;
                let (next, page): (u64, Vec<String>) =
                    redis::from_redis_value(page).map_err(corrupt)?;
                buckets.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        buckets.sort_unstable();
        buckets.dedup();
        Ok(buckets)
    }

    /// A page of changes applies only where the store's cursor is.
    async fn check_cursor(&self, header: &StreamHeader) -> Result<(), StoreError> {
        crate::backend::Cursor::check_continues(self.upstream_cursor().await?, header)
    }

    async fn upstream_cursor(&self) -> Result<Option<crate::backend::Cursor>, StoreError> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.log_key("upstream"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(value.as_deref().and_then(crate::backend::Cursor::decode))
    }
}

/// Chunks of writes on their way, [`CHUNKS_IN_FLIGHT`] at most, so that the round trips of
/// one (reads, compare-and-set, the log, `WAIT`) overlap the others'; counts what they wrote.
struct InFlight<F> {
    chunks: futures_util::stream::FuturesUnordered<F>,
    written: u64,
}

impl<F> Default for InFlight<F> {
    fn default() -> Self {
        InFlight {
            chunks: futures_util::stream::FuturesUnordered::new(),
            written: 0,
        }
    }
}

impl<F: std::future::Future<Output = Result<u64, StoreError>>> InFlight<F> {
    /// Sends `chunk` on its way, once one of the chunks in flight has landed if need be.
    async fn push(&mut self, chunk: F) -> Result<(), StoreError> {
        use futures_util::StreamExt as _;
        if self.chunks.len() == CHUNKS_IN_FLIGHT
            && let Some(done) = self.chunks.next().await
        {
            self.written += done?;
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// Waits for every chunk; answers how many keys they wrote in all.
    async fn finish(mut self) -> Result<u64, StoreError> {
        use futures_util::StreamExt as _;
        while let Some(done) = self.chunks.next().await {
            self.written += done?;
        }
        Ok(self.written)
    }
}

/// A compare-and-set of one key: the key, its value as read (`None`: absent), its new record.
type Swap<'a> = (&'a [u8], Option<&'a [u8]>, &'a StoredRecord);

/// The store's ids of an import's names, by the import's ids, and the names it was the
/// first to store.
struct ResolvedNames {
    sources: Vec<Option<u32>>,
    threats: Vec<Option<u32>>,
    created: Vec<String>,
}

/// The keys an import names, as hashes grouped by bucket: what a replacing import's
/// retraction must leave alone. Imports come sorted by key, so a bucket's keys arrive as one
/// run; each run is sorted and searched alone, in cache, rather than one search over all.
#[derive(Debug, Default)]
struct Named {
    hashes: Vec<u64>,
    /// The runs of `hashes` that hold each bucket's keys, by [`bucket_id`].
    runs: HashMap<u64, Vec<std::ops::Range<usize>>>,
    /// The bucket of the run being pushed, and where that run starts.
    open: Option<(u64, usize)>,
}

impl Named {
    fn push(&mut self, key: &[u8]) {
        let bucket = bucket_id(key);
        if !matches!(self.open, Some((open, _)) if open == bucket) {
            self.close();
            self.open = Some((bucket, self.hashes.len()));
        }
        self.hashes.push(crate::filter::key_hash(key));
    }

    /// Ends the last run: call before [`Named::contains`].
    fn finish(&mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some((bucket, start)) = self.open.take() {
            let run = start..self.hashes.len();
            self.hashes[run.clone()].sort_unstable();
            self.runs.entry(bucket).or_default().push(run);
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        let hash = crate::filter::key_hash(key);
        self.runs.get(&bucket_id(key)).is_some_and(|runs| {
            runs.iter()
                .any(|run| self.hashes[run.clone()].binary_search(&hash).is_ok())
        })
    }
}

/// A storage key's bucket as a number: the count of its digits (fewer than
/// [`BUCKET_DIGITS`] for a short key) over their value.
fn bucket_id(key: &[u8]) -> u64 {
    let digits = (key.len() * 2).min(BUCKET_DIGITS);
    let mut first = [0u8; 8];
    let len = key.len().min(8);
    first[..len].copy_from_slice(&key[..len]);
    // The digits past the bucket's are shifted out (all of them for an empty key).
    let value = u64::from_be_bytes(first)
        .checked_shr(64 - 4 * digits as u32)
        .unwrap_or(0);
    (digits as u64) << 56 | value
}

/// The digits that name a storage key's bucket: its first [`BUCKET_DIGITS`] in hex.
fn bucket_digits(key: &[u8]) -> String {
    let digits = (key.len() * 2).min(BUCKET_DIGITS);
    let mut bucket = hex(&key[..digits.div_ceil(2)]);
    bucket.truncate(digits);
    bucket
}

/// The rest of a storage key: its field in its bucket.
fn field_bytes(key: &[u8]) -> &[u8] {
    &key[key.len().min(FIELD_START)..]
}

/// The stored id of `source` if it has one (a feed never named has none).
fn stored_source_id(names: &NameCache, source: &Source) -> Option<u32> {
    Some(match source {
        Source::Local => source_id::LOCAL,
        Source::Builtin => source_id::BUILTIN,
        Source::Upstream => source_id::UPSTREAM,
        Source::Engine => source_id::ENGINE,
        Source::UpstreamEngine => source_id::UPSTREAM_ENGINE,
        Source::Feed(name) => names
            .by_text
            .get(name.as_str())?
            .checked_add(source_id::FEED_BASE)?,
    })
}

/// The bytes that start every key of a bucket and are not in its fields: those its name
/// holds whole (its last digit, half a byte, is repeated in each field).
fn bucket_prefix(bucket: &str) -> Result<Vec<u8>, StoreError> {
    bucket
        .rsplit_once('{')
        .and_then(|(_, rest)| rest.strip_suffix('}'))
        .and_then(|digits| digits.get(..digits.len() / 2 * 2))
        .and_then(unhex)
        .ok_or_else(|| corrupt(format!("bucket {bucket:?}")))
}

#[async_trait::async_trait]
impl Backend for Cluster {
    fn dir(&self) -> &Path {
        &self.scratch
    }

    fn applier(&self) -> Arc<dyn Applier> {
        Arc::new(self.clone())
    }

    fn close(&self) {}

    fn shared(&self) -> bool {
        true
    }

    async fn heartbeat(&self, seconds: u64) -> Result<u32, StoreError> {
        let mut invocation = self.heartbeat.key(format!("{}:nodes", self.namespace));
        invocation.arg(&self.holder).arg(seconds.max(1));
        invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }

    async fn lease(&self, name: &str, seconds: u64) -> Result<bool, StoreError> {
        let mut invocation = self.lease.key(format!("{}:lease:{name}", self.namespace));
        invocation.arg(&self.holder).arg(seconds.max(1));
        invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }

    async fn check(&self) -> Result<(), StoreError> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            return Err(StoreError::Unavailable(
                "the cluster's state is not ok (a master is down with no replica to take over, or the cluster is not set up)".to_owned(),
            ));
        }
        // Every master answers: a master just killed fails here before the cluster notices.
        try_join_all(self.masters().await?.into_iter().map(|slot| {
            let mut connection = self.connection.clone();
            async move {
                connection
                    .route_command(
                        redis::cmd("PING"),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                            slot,
                            SlotAddr::Master,
                        ))),
                    )
                    .await
            }
        }))
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn lookup(&self, objects: &[Object]) -> Result<Vec<Knowledge>, StoreError> {
        self.read(|fetched| {
            objects
                .iter()
                .map(|object| fetched.knowledge(object))
                .collect()
        })
        .await
    }

    async fn search_prefixes(
        &self,
        prefixes: &[SearchPrefix],
        limit: usize,
    ) -> Result<(Vec<PrefixMatch>, bool), StoreError> {
        // Every key under a prefix is in one bucket (prefixes are 4 bytes of digest or more,
        // a bucket names two and a half): its fields, filtered here, in key order as LMDB's
        // range gives them.
        let mut keys = Vec::new();
        for key_prefix in prefixes.iter().flat_map(crate::core::key_prefixes) {
            let (bucket, field_prefix) = self.bucket(&key_prefix);
            let fields: Vec<Vec<u8>> = redis::cmd("HKEYS")
                .arg(bucket)
                .query_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            let mut found: Vec<Vec<u8>> = fields
                .into_iter()
                .filter(|field| field.starts_with(&field_prefix))
                .map(|field| {
                    let mut key = key_prefix[..FIELD_START].to_vec();
                    key.extend_from_slice(&field);
                    key
                })
                .collect();
            found.sort_unstable();
            keys.extend(found);
        }
        self.read(|fetched| {
            let mut matches = Vec::new();
            for key in &keys {
                let Some(found) = fetched.prefix_match(key)? else {
                    continue;
                };
                if matches.len() == limit {
                    return Ok((matches, true));
                }
                matches.push(found);
            }
            Ok((matches, false))
        })
        .await
    }

    async fn apply(&self, changes: Vec<Change>) -> Result<Vec<Outcome>, StoreError> {
        self.write(&changes).await
    }

    async fn local_verdicts(&self) -> Result<Vec<LocalVerdict>, StoreError> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.names_key("local"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut entries = entries
            .into_iter()
            .map(|(key, value)| Ok((key, crate::lmdb::decode_local(&value)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.read(|fetched| {
            let mut verdicts = Vec::new();
            for (key, local) in &entries {
                verdicts.extend(fetched.local_verdict(
                    key,
                    local.object.clone(),
                    local.comment.clone(),
                    local.expires,
                )?);
            }
            Ok(verdicts)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        // Counted over every bucket: for the administrator's status, not for a hot path. In
        // waves, so that the commands queued at once stay within the answer's timeout.
        let mut keys = 0;
        for wave in self.buckets().await?.chunks(SCAN_PAGE) {
            let counts = try_join_all(wave.iter().map(|bucket| {
                let mut connection = self.connection.clone();
                async move {
                    redis::cmd("HLEN")
                        .arg(bucket)
                        .query_async::<u64>(&mut connection)
                        .await
                }
            }))
            .await
            .map_err(unavailable)?;
            keys += counts.iter().sum::<u64>();
        }
        Ok(StoreStats {
            keys,
            disk_bytes: 0,
            map_bytes: 0,
            filter_ready: false,
            filter_checked: 0,
            filter_answered: 0,
        })
    }

    fn wants_filter(&self) -> bool {
        false
    }

    fn filter_ready(&self) -> bool {
        false
    }

    async fn filter_wanted(&self) {
        std::future::pending::<()>().await;
    }

    async fn build_filter(
        &self,
        _stop: Box<dyn Fn() -> bool + Send + 'static>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn record_statistics(&self, events: Vec<StatEvent>) -> Result<(), StoreError> {
        Cluster::record_statistics(self, events).await
    }

    async fn aggregate(&self, object: &Object) -> Result<Option<Aggregate>, StoreError> {
        Cluster::aggregate(self, object).await
    }

    async fn delete_events_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        Cluster::delete_events_before(self, cutoff).await
    }

    async fn dirty_aggregates(&self, limit: usize) -> Result<Dirty, StoreError> {
        Cluster::dirty_aggregates(self, limit).await
    }

    async fn clear_dirty(&self, keys: Vec<DirtyMark>) -> Result<(), StoreError> {
        Cluster::clear_dirty(self, keys).await
    }

    async fn dirty_count(&self) -> Result<u64, StoreError> {
        Cluster::dirty_count(self).await
    }

    async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError> {
        Cluster::review_items(self).await
    }

    async fn engine_reviews(
        &self,
        set: Vec<EngineReview>,
        removed: Vec<Object>,
    ) -> Result<(), StoreError> {
        Cluster::engine_reviews(self, set, removed).await
    }

    async fn remove_review(&self, id: String) -> Result<bool, StoreError> {
        Cluster::remove_review(self, &id).await
    }

    async fn statistics_size(&self) -> Result<StatisticsSize, StoreError> {
        Cluster::statistics_size(self).await
    }

    async fn event_count(&self) -> Result<u64, StoreError> {
        Cluster::event_count(self).await
    }

    async fn permanent_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| StoreError::Randomness(error.to_string()))?;
        let mut connection = self.connection.clone();
        // The first node to make it wins; every other keeps theirs.
        let _: bool = redis::cmd("HSETNX")
            .arg(self.names_key("secrets"))
            .arg(name)
            .arg(secret.as_slice())
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let kept: Vec<u8> = redis::cmd("HGET")
            .arg(self.names_key("secrets"))
            .arg(name)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        kept.try_into()
            .map_err(|_| corrupt(format!("secret {name} is not 32 bytes")))
    }

    async fn device_secret(
        &self,
        now: Timestamp,
        rotate_after_seconds: u64,
    ) -> Result<[u8; 32], StoreError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| StoreError::Randomness(error.to_string()))?;
        // One script: of nodes that found the secret old at once, one makes the new one and
        // the others take it.
        let mut invocation = self.device_secret.key(self.names_key("device_secret"));
        invocation
            .arg(now.0)
            .arg(rotate_after_seconds)
            .arg(secret.as_slice());
        let kept: Vec<u8> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        kept.try_into()
            .map_err(|_| corrupt("the device secret is not 32 bytes"))
    }

    async fn licences(&self) -> Result<Vec<Licence>, StoreError> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.names_key("licences"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        entries
            .iter()
            .map(|(key, value)| {
                crate::lmdb::licences::decode(key, value)
                    .map_err(|error| corrupt(format!("licence record: {error}")))
            })
            .collect()
    }

    async fn put_licences(&self, licences: Vec<Licence>) -> Result<(), StoreError> {
        if licences.is_empty() {
            return Ok(());
        }
        // One command: the keys are added or replaced together.
        let mut command = redis::cmd("HSET");
        command.arg(self.names_key("licences"));
        for licence in &licences {
            command
                .arg(licence.key_sha256.as_bytes())
                .arg(crate::lmdb::licences::encode(licence));
        }
        let _: () = command
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn sync_state(&self) -> Result<SyncState, StoreError> {
        let mut connection = self.connection.clone();
        let id: String = redis::cmd("GET")
            .arg(self.log_key("id"))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let sequence: Option<u64> = redis::cmd("GET")
            .arg(self.log_key("seq"))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let sequence = sequence.unwrap_or(0);
        // The oldest entry kept: changes from it on can be sent.
        let oldest: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(self.log_key("stream"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let floor = match oldest.into_iter().next() {
            Some((id, fields)) => log_entry(&id, fields)?.0.saturating_sub(1),
            None => sequence,
        };
        Ok(SyncState {
            log_id: id.parse().map_err(corrupt)?,
            sequence,
            floor,
            upstream: self.upstream_cursor().await?,
        })
    }

    fn write_changes(
        &self,
        after: u64,
        limit: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<ChangesAnswer, StoreError> {
        block_on(self.write_changes_async(after, limit, out))
    }

    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<StreamHeader, StoreError> {
        block_on(self.write_snapshot_async(out))
    }

    fn export(
        &self,
        visit: &mut dyn FnMut(crate::Exported) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        block_on(self.export_async(visit))
    }

    fn backup(&self, _out: &mut std::fs::File) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "backups of a Redis Cluster store: use the cluster's own persistence (RDB snapshots, AOF) or `repnet bundle export` for the knowledge base",
        ))
    }
}

/// Runs `work` to its end from a blocking thread of the runtime (where the store's blocking
/// operations are called).
fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Task(
            "a replication stream of a Redis Cluster store is written on a blocking thread of the async runtime".to_owned(),
        )
    })?;
    handle.block_on(work)
}

/// Entries of the change log read at a time.
/// Entries of the change log read at a time (each holds the keys of one write).
const LOG_PAGE: usize = 16;

/// Keys as the change log's entries hold them: each as a u8 length and its bytes (a storage
/// key is at most 254 bytes).
fn pack_keys<K: AsRef<[u8]>>(keys: &[K]) -> Vec<u8> {
    let mut packed = Vec::with_capacity(keys.iter().map(|key| key.as_ref().len() + 1).sum());
    for key in keys {
        let key = key.as_ref();
        packed.push(key.len() as u8);
        packed.extend_from_slice(key);
    }
    packed
}

/// The first sequence number of a change log entry and its keys, in order.
fn log_entry(
    id: &str,
    mut fields: HashMap<String, Vec<u8>>,
) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
    let malformed = || corrupt(format!("change log entry {id:?} is malformed"));
    let first = fields
        .remove("f")
        .and_then(|first| std::str::from_utf8(&first).ok()?.parse::<u64>().ok())
        .ok_or_else(malformed)?;
    let packed = fields.remove("k").ok_or_else(malformed)?;
    let mut keys = Vec::new();
    let mut rest = packed.as_slice();
    while let Some((&length, tail)) = rest.split_first() {
        let key = tail.get(..usize::from(length)).ok_or_else(malformed)?;
        keys.push(key.to_vec());
        rest = &tail[usize::from(length)..];
    }
    Ok((first, keys))
}

/// Keys of a snapshot read at a time from each node.
const SCAN_PAGE: usize = 1_000;

impl Cluster {
    fn stream_error(&self, action: &'static str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            action,
            path: self.scratch.clone(),
            source,
        }
    }

    async fn write_changes_async(
        &self,
        after: u64,
        limit: usize,
        out: &mut dyn std::io::Write,
    ) -> Result<ChangesAnswer, StoreError> {
        let state = self.sync_state().await?;
        let Some(header) = state.page(after, limit) else {
            return Ok(ChangesAnswer::SnapshotNeeded(state));
        };
        let to = header.to;
        let io = self.stream_error("write the changes of");
        let mut stream = StreamWriter::new(out, &header).map_err(&io)?;
        let mut seen = std::collections::HashSet::new();
        // Entries whose last number is `after + 1` or more, in order; the first may hold
        // numbers before it, the last numbers past `to`: those are left out.
        let mut start = format!("{}-0", after + 1);
        'pages: loop {
            let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(self.log_key("stream"))
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(LOG_PAGE)
                .query_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            if entries.is_empty() {
                break;
            }
            let mut keys = Vec::new();
            let mut done = false;
            for (id, fields) in entries {
                let (first, changed) = log_entry(&id, fields)?;
                start = format!("({id}");
                for (sequence, key) in (first..).zip(changed) {
                    if sequence > to {
                        done = true;
                        break;
                    }
                    if sequence > after && seen.insert(key.clone()) {
                        keys.push(key);
                    }
                }
                if done {
                    break;
                }
            }
            let values = self
                .read(|fetched| {
                    keys.iter()
                        .map(|key| match fetched.record(key)? {
                            None => Ok(None),
                            Some(stored) => fetched.sync_value(&stored),
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                })
                .await?;
            for (key, value) in keys.into_iter().zip(values) {
                stream.entry(&SyncEntry { key, value }).map_err(&io)?;
            }
            if done {
                break 'pages;
            }
        }
        stream.finish().map_err(&io)?;
        Ok(ChangesAnswer::Written(header))
    }

    /// A slot each master serves, as the cluster sees itself now: a command routed to it
    /// reaches that master through the client's own map of the cluster.
    async fn masters(&self) -> Result<Vec<u16>, StoreError> {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut masters = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(flags) = fields.get(2) else {
                continue;
            };
            if !flags.split(',').any(|flag| flag == "master")
                || flags
                    .split(',')
                    .any(|flag| flag == "fail" || flag == "noaddr")
            {
                continue;
            }
            // Fields 8 on are the slot ranges (`0-5460`, `5461`, or `[…]` for slots moving).
            let first = fields
                .iter()
                .skip(8)
                .filter(|range| !range.starts_with('['))
                .find_map(|range| range.split('-').next()?.parse::<u16>().ok());
            if let Some(slot) = first {
                masters.push(slot);
            }
        }
        Ok(masters)
    }

    async fn write_snapshot_async(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<StreamHeader, StoreError> {
        // The log's position first: whatever changes while the buckets are read is in the
        // snapshot or after it in the log, and applying it again changes nothing.
        let state = self.sync_state().await?;
        let header = StreamHeader {
            kind: StreamKind::Snapshot,
            log_id: state.log_id,
            after: 0,
            to: state.sequence,
            sequence: state.sequence,
        };
        let io = self.stream_error("write a snapshot of");
        let mut stream = StreamWriter::new(out, &header).map_err(&io)?;
        for bucket in self.buckets().await? {
            self.write_bucket(&bucket, &mut stream, &io).await?;
        }
        stream.finish().map_err(&io)?;
        Ok(header)
    }

    /// Every exportable record, bucket by bucket (each bucket one read); the sequence before.
    async fn export_async(
        &self,
        visit: &mut dyn FnMut(crate::Exported) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let sequence = self.sync_state().await?.sequence;
        for bucket in self.buckets().await? {
            let prefix = bucket_prefix(&bucket)?;
            let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
                .arg(&bucket)
                .query_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
            let mut entries = Vec::with_capacity(fields.len());
            for (field, value) in fields {
                let mut key = prefix.clone();
                key.extend_from_slice(&field);
                entries.push((key, record::decode(&value).map_err(corrupt)?));
            }
            let exported = self
                .read(|fetched| {
                    entries
                        .iter()
                        .map(|(key, stored)| fetched.exported(key, stored))
                        .collect::<Result<Vec<_>, StoreError>>()
                })
                .await?;
            for item in exported.into_iter().flatten() {
                visit(item)?;
            }
        }
        Ok(sequence)
    }

    /// Every record of one bucket, as snapshot entries.
    async fn write_bucket(
        &self,
        bucket: &str,
        stream: &mut StreamWriter<&mut dyn std::io::Write>,
        io: &impl Fn(std::io::Error) -> StoreError,
    ) -> Result<(), StoreError> {
        let prefix = bucket_prefix(bucket)?;
        let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(bucket)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut entries = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            let mut key = prefix.clone();
            key.extend_from_slice(&field);
            entries.push((key, record::decode(&value).map_err(corrupt)?));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let values = self
            .read(|fetched| {
                entries
                    .iter()
                    .map(|(_, stored)| fetched.sync_value(stored))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        for ((key, _), value) in entries.into_iter().zip(values) {
            if let Some(value) = value {
                stream
                    .entry(&SyncEntry {
                        key,
                        value: Some(value),
                    })
                    .map_err(io)?;
            }
        }
        Ok(())
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key is its bucket's prefix and its field again, keys that share their first
    /// seven digits share a bucket, and the bucket's name is those digits.
    #[test]
    fn a_key_is_its_buckets_prefix_and_its_field() {
        let keys: [&[u8]; 6] = [
            &[0x01, 0xab, 0xcd, 0xe1, 0x22, 0x33],
            &[0x01, 0xab, 0xcd, 0xef, 0x00],
            &[0x01, 0xab, 0xcd, 0xf0],
            &[0x01, 0xab, 0xcd],
            &[0x01, 0xab],
            &[],
        ];
        for key in keys {
            let (bucket, field) = (bucket_digits(key), field_bytes(key));
            let mut again = bucket_prefix(&format!("NS:o:{{{bucket}}}")).unwrap();
            again.extend_from_slice(field);
            assert_eq!(again, key, "bucket {bucket}");
        }
        assert_eq!(bucket_id(keys[0]), bucket_id(keys[1]), "same seven digits");
        assert_ne!(
            bucket_id(keys[1]),
            bucket_id(keys[2]),
            "the seventh digit differs"
        );
        assert_ne!(
            bucket_id(&[]),
            bucket_id(&[0x00]),
            "the empty key has a bucket of its own"
        );
        assert_ne!(
            bucket_id(keys[3]),
            bucket_id(&[0x01, 0xab, 0xcd, 0x00]),
            "shorter"
        );
    }
}
