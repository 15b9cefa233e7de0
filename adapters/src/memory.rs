//! The event store in memory: the same contract as the sled store, for tests. Everything is
//! "durable" the moment it is appended, and lost when the value is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use battleplan_core::event::append::{self, LogHead};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, CommandId, Position, RecordedEvent, StoreError,
    StoreResult, StreamId, StreamVersion, GENESIS_HASH,
};
use tokio::sync::watch;

/// Records are not limited in memory beyond what the sled store allows, so that a test passing
/// here passes there.
pub const MAX_RECORD_BYTES: usize = crate::sled_store::DEFAULT_MAX_RECORD_BYTES;

#[derive(Debug, Default)]
struct State {
    records: Vec<RecordedEvent>,
    streams: HashMap<StreamId, Vec<Position>>,
    commands: HashMap<CommandId, AppendOutcome>,
    checkpoints: HashMap<String, Position>,
    projections: HashMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

#[derive(Debug)]
pub struct MemoryEventLog {
    state: Mutex<State>,
    head: watch::Sender<Position>,
}

impl Default for MemoryEventLog {
    fn default() -> Self {
        MemoryEventLog {
            state: Mutex::new(State::default()),
            head: watch::Sender::new(Position::START),
        }
    }
}

impl MemoryEventLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half an append: appends mutate only after
        // every check has passed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventAppender for MemoryEventLog {
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome> {
        let mut state = self.state();
        if let Some(outcome) = state.commands.get(&append.metadata.command_id) {
            return Ok(AppendOutcome {
                deduplicated: true,
                ..*outcome
            });
        }
        let head = LogHead {
            position: Position(state.records.len() as u64),
            hash: state.records.last().map_or(GENESIS_HASH, |r| r.hash),
        };
        let current = StreamVersion(
            state
                .streams
                .get(&append.stream)
                .map_or(0, |p| p.len() as u64),
        );
        let command_id = append.metadata.command_id;
        let stream = append.stream.clone();
        let prepared = append::prepare(append, head, current, MAX_RECORD_BYTES)?;
        for (position, _, recorded) in prepared.records {
            state
                .streams
                .entry(stream.clone())
                .or_default()
                .push(position);
            state.records.push(recorded);
        }
        state.commands.insert(command_id, prepared.outcome);
        drop(state);
        self.head.send_replace(prepared.outcome.last_position);
        Ok(prepared.outcome)
    }
}

#[async_trait]
impl EventReader for MemoryEventLog {
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let state = self.state();
        let Some(positions) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = from.0.saturating_sub(1) as usize;
        Ok(positions
            .iter()
            .skip(skip)
            .take(limit)
            .filter_map(|position| state.records.get(position.0 as usize - 1).cloned())
            .collect())
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let state = self.state();
        Ok(state
            .records
            .iter()
            .skip(after.0 as usize)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        Ok(StreamVersion(
            self.state()
                .streams
                .get(stream)
                .map_or(0, |p| p.len() as u64),
        ))
    }

    async fn head(&self) -> StoreResult<Position> {
        Ok(*self.head.borrow())
    }

    async fn wait_beyond(&self, position: Position) -> StoreResult<()> {
        let mut receiver = self.head.subscribe();
        receiver
            .wait_for(|head| *head > position)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Closed)
    }
}

#[async_trait]
impl Checkpoints for MemoryEventLog {
    async fn checkpoint(&self, projection: &str) -> StoreResult<Position> {
        Ok(self
            .state()
            .checkpoints
            .get(projection)
            .copied()
            .unwrap_or(Position::START))
    }

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .state()
            .projections
            .get(projection)
            .and_then(|values| values.get(key).cloned()))
    }

    async fn commit(
        &self,
        projection: &str,
        checkpoint: Position,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> StoreResult<()> {
        let mut state = self.state();
        let current = state
            .checkpoints
            .get(projection)
            .copied()
            .unwrap_or(Position::START);
        if checkpoint < current {
            return Err(StoreError::Invalid(format!(
                "projection {projection} is at {current}; its checkpoint cannot move back to {checkpoint}"
            )));
        }
        let values = state.projections.entry(projection.to_string()).or_default();
        for (key, value) in changes {
            match value {
                Some(value) => {
                    values.insert(key, value);
                }
                None => {
                    values.remove(&key);
                }
            }
        }
        state.checkpoints.insert(projection.to_string(), checkpoint);
        Ok(())
    }

    async fn scan(&self, projection: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .state()
            .projections
            .get(projection)
            .map(|values| values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn reset(&self, projection: &str) -> StoreResult<()> {
        let mut state = self.state();
        state.projections.remove(projection);
        state.checkpoints.remove(projection);
        Ok(())
    }
}
