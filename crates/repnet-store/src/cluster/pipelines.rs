//! Commands of many slots sent as one pipeline per master: a batch of 1,000 lookups or an
//! import's chunk touches hundreds of buckets, each in its own slot, and the cluster client
//! only pipelines commands of one slot. A master accepts commands for every slot it serves,
//! so this store keeps the cluster's slot map (`CLUSTER SLOTS`), groups commands by master
//! and routes each group to it. A pipeline that meets a redirection (a slot moved, a
//! failover) or a script not yet loaded on that master runs its commands one by one through
//! the client, which follows redirections and loads scripts, and the map is read again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use futures_util::future::try_join_all;
use redis::Value;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};

use super::{Cluster, unavailable};
use crate::StoreError;

/// Which master serves each slot, as the cluster last said: per slot, the index of its
/// master, and per master, one of its slots (to route a pipeline to it).
#[derive(Debug)]
pub(super) struct SlotMap {
    master_of: HashMap<Slot, u16>,
    routes: Vec<u16>,
}

impl SlotMap {
    /// The master serving `key`'s slot (`None` if none did when the map was read).
    fn master(&self, key: &str) -> Option<u16> {
        self.master_of.get(&Slot::for_key(key)).copied()
    }
}

/// What a pipelined run sends: a command and the key it routes by.
pub(super) struct Routed {
    pub(super) key: String,
    pub(super) command: redis::Cmd,
    /// Sent when the pipeline cannot be (the script's invocation, which loads it).
    pub(super) fallback: Fallback,
}

pub(super) enum Fallback {
    /// The command itself, through the client.
    Command,
    /// A script, by invocation (loads it where it is missing), with the command's
    /// arguments after `EVALSHA sha 1 key`.
    Script(redis::Script),
}

impl Cluster {
    async fn slot_map(&self) -> Result<Arc<SlotMap>, StoreError> {
        if let Some(map) = self
            .slot_map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(map);
        }
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut master_of = HashMap::new();
        let mut masters: Vec<Vec<u8>> = Vec::new();
        let mut routes = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(fields) = range else {
                    continue;
                };
                let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
                    (fields.first(), fields.get(1), fields.get(2))
                else {
                    continue;
                };
                // A master's address and port name it.
                let name: Vec<u8> = node
                    .iter()
                    .take(2)
                    .flat_map(|part| match part {
                        Value::BulkString(bytes) => bytes.clone(),
                        Value::Int(port) => port.to_string().into_bytes(),
                        _ => Vec::new(),
                    })
                    .collect();
                let index = match masters.iter().position(|known| *known == name) {
                    Some(index) => index,
                    None => {
                        masters.push(name);
                        routes.push(*start as u16);
                        masters.len() - 1
                    }
                };
                for slot in (*start).max(0)..=*end {
                    if let Some(slot) = u16::try_from(slot).ok().and_then(Slot::new) {
                        master_of.insert(slot, index as u16);
                    }
                }
            }
        }
        let map = Arc::new(SlotMap { master_of, routes });
        *self
            .slot_map
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&map));
        Ok(map)
    }

    /// A route to each master that serves one of `keys`.
    pub(super) async fn masters_of(&self, keys: &[String]) -> Result<Vec<Route>, StoreError> {
        let map = self.slot_map().await?;
        let mut routes: Vec<Route> = Vec::new();
        for key in keys {
            let route = match map
                .master(key)
                .and_then(|master| map.routes.get(usize::from(master)))
            {
                Some(slot) => Route::new(*slot, SlotAddr::Master),
                // A slot no master served when the map was read: by the key, through the
                // client's own map, and this one read again next time.
                None => {
                    self.forget_slot_map();
                    Route::with_key(key, SlotAddr::Master)
                }
            };
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        Ok(routes)
    }

    fn forget_slot_map(&self) {
        *self
            .slot_map
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs `commands`, pipelined per master, concurrently; answers each one's value, in
    /// order.
    pub(super) async fn run_pipelined(
        &self,
        commands: Vec<Routed>,
    ) -> Result<Vec<Value>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let map = self.slot_map().await?;
        let mut groups: HashMap<Option<u16>, Vec<usize>> = HashMap::new();
        for (index, routed) in commands.iter().enumerate() {
            groups
                .entry(map.master(&routed.key))
                .or_default()
                .push(index);
        }
        let commands = &commands;
        let answers = try_join_all(groups.into_iter().map(|(master, indices)| {
            let route = master.and_then(|master| map.routes.get(usize::from(master)).copied());
            async move {
                let values = match route {
                    Some(slot) => {
                        let mut pipeline = redis::pipe();
                        for &index in &indices {
                            pipeline.add_command(commands[index].command.clone());
                        }
                        self.connection
                            .clone()
                            .route_pipeline(
                                pipeline,
                                0,
                                indices.len(),
                                SingleNodeRoutingInfo::SpecificNode(Route::new(
                                    slot,
                                    SlotAddr::Master,
                                )),
                            )
                            .await
                            .ok()
                            .filter(|values| values.len() == indices.len())
                    }
                    // A slot no master served when the map was read.
                    None => None,
                };
                let values = match values {
                    // Only the commands that failed (a slot moved, a script not loaded there)
                    // are sent again: the others were carried out, and a compare-and-set sent
                    // twice would report its own write as another writer's.
                    Some(mut values) => {
                        let failed: Vec<usize> = (0..values.len())
                            .filter(|&at| matches!(values[at], Value::ServerError(_)))
                            .collect();
                        if !failed.is_empty() {
                            self.forget_slot_map();
                            let again: Vec<usize> = failed.iter().map(|&at| indices[at]).collect();
                            for (at, value) in failed
                                .into_iter()
                                .zip(self.one_by_one(commands, &again).await?)
                            {
                                values[at] = value;
                            }
                        }
                        values
                    }
                    // The pipeline was not answered: what it carried out is unknown, and each
                    // command is sent again through the client (its redirections, reconnects).
                    None => {
                        self.forget_slot_map();
                        self.one_by_one(commands, &indices).await?
                    }
                };
                Ok::<_, StoreError>((indices, values))
            }
        }))
        .await?;
        let mut values = vec![Value::Nil; commands.len()];
        for (indices, answer) in answers {
            for (index, value) in indices.into_iter().zip(answer) {
                values[index] = value;
            }
        }
        Ok(values)
    }

    /// The commands at `indices` through the client, which follows redirections.
    async fn one_by_one(
        &self,
        commands: &[Routed],
        indices: &[usize],
    ) -> Result<Vec<Value>, StoreError> {
        try_join_all(indices.iter().map(|&index| {
            let routed = &commands[index];
            let mut connection = self.connection.clone();
            async move {
                match &routed.fallback {
                    Fallback::Command => routed.command.query_async::<Value>(&mut connection).await,
                    Fallback::Script(script) => {
                        let mut invocation = script.key(&routed.key);
                        for arg in routed.command.args_iter().skip(4) {
                            if let redis::Arg::Simple(arg) = arg {
                                invocation.arg(arg);
                            }
                        }
                        invocation.invoke_async::<Value>(&mut connection).await
                    }
                }
            }
        }))
        .await
        .map_err(unavailable)
    }
}
