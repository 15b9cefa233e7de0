//! The ports a store implements. Reading and appending are separate traits so that a component
//! that only reads (a projection, the auditor) cannot append.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::envelope::{Metadata, NewEvent, RecordedEvent};
use super::ids::{Position, StreamId, StreamVersion};

pub type StoreResult<T> = Result<T, StoreError>;

/// What an append expects of its stream: the optimistic-concurrency check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version.
    Exact(StreamVersion),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => formatter.write_str("any version"),
            ExpectedVersion::NoStream => formatter.write_str("no stream yet"),
            ExpectedVersion::Exact(version) => write!(formatter, "version {version}"),
        }
    }
}

/// One command's events, appended all or none.
#[derive(Debug, Clone)]
pub struct Append {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub metadata: Metadata,
    /// When the events are recorded, from the clock port (stores never read a clock).
    pub recorded_at: DateTime<Utc>,
}

/// Where an append's events landed. A retried command id gets the first append's outcome back
/// with `deduplicated` set, and nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub first_position: Position,
    pub last_position: Position,
    pub first_version: StreamVersion,
    pub last_version: StreamVersion,
    pub deduplicated: bool,
}

/// Store failures, each saying how the caller handles it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Someone appended first: reload the stream and decide again, or report the conflict.
    #[error("stream {stream} is at version {actual}, the append expected {expected}")]
    Conflict {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: StreamVersion,
    },
    /// The caller's mistake (an empty append, a record too large): fix the call.
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The stored data is damaged at this position: stop and run `battleplan audit verify`.
    #[error("the store is damaged at position {position}: {detail}")]
    Corrupt { position: Position, detail: String },
    /// The store was written by a newer battleplan: upgrade, never read on.
    #[error("the store has format {found}; this battleplan reads format {supported} and older")]
    NewerFormat { found: u32, supported: u32 },
    /// Another process holds the store.
    #[error("the store is in use by another process: {0}")]
    Locked(String),
    /// The disk failed; nothing of the failed call is acknowledged.
    #[error("storage failure: {0}")]
    Io(String),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// An owner's append under a lease another node has since taken (the fencing token moved
    /// on): this node no longer owns `scope` and must stop acting on it.
    #[error("the lease on {scope} has passed to another node (epoch {current}; this append held epoch {held})")]
    Fenced {
        scope: String,
        held: u64,
        current: u64,
    },
}

#[async_trait]
pub trait EventReader: Send + Sync {
    /// Events of one stream with version >= `from`, in order, at most `limit`.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>>;

    /// Events of the whole log with position > `after`, in order, at most `limit`.
    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>>;

    /// The current version of a stream (`StreamVersion::NONE` if it has no events).
    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion>;

    /// The last durable position (`Position::START` for an empty log).
    async fn head(&self) -> StoreResult<Position>;

    /// Resolves once the durable head is beyond `position`.
    async fn wait_beyond(&self, position: Position) -> StoreResult<()>;
}

#[async_trait]
pub trait EventAppender: Send + Sync {
    /// Appends all events or none. Returns only once they are durable.
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome>;
}

/// A store both read and appended.
pub trait EventLog: EventReader + EventAppender {}

impl<T: EventReader + EventAppender> EventLog for T {}

/// A projection's stored state and its checkpoint, kept in the same store as the log and always
/// changed together.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// The last position the projection has applied (`Position::START` if none).
    async fn checkpoint(&self, projection: &str) -> StoreResult<Position>;

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;

    /// Applies `changes` (a value, or `None` to delete) and moves the checkpoint to `checkpoint`,
    /// atomically. A checkpoint that does not move forward is refused.
    async fn commit(
        &self,
        projection: &str,
        checkpoint: Position,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> StoreResult<()>;

    /// Every key and value of the projection, in key order.
    async fn scan(&self, projection: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Drops the projection's state and checkpoint, to rebuild it from the log.
    async fn reset(&self, projection: &str) -> StoreResult<()>;

    /// A directory of the store's own where a projection may keep files too large to be values
    /// (a snapshot of the projections), read straight from the disk: each file is named by a
    /// value committed with the projection's checkpoint, written and made durable before that
    /// commit, and removed only once no committed value names it. `None` (the default): the
    /// store keeps no such files, and the values hold everything.
    fn files_directory(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Makes every commit made so far durable, as [`Checkpoints::commit`] alone need not: a
    /// store that makes a projection's state durable only with the log's checkpoints would
    /// otherwise lose it to a crash, which is no loss for state the log gives again, but is one
    /// before a file the commit stopped naming is removed. The default does nothing (a store
    /// whose commits are durable when they return).
    async fn sync(&self) -> StoreResult<()> {
        Ok(())
    }
}
