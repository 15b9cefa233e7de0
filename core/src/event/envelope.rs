//! The envelope: what every event carries besides its payload — where it sits in the log, when it
//! was recorded, who or what caused it and why, and its links in the hash chain.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ids::{CommandId, EventId, Position, StreamId, StreamVersion};
use super::record::ChainHash;

/// Who decided, and why. Shared by all events of one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// A person (`alice`) or a part of the system (`system:scheduler`).
    pub actor: String,
    /// The command that produced the events; the idempotency key of the append.
    pub command_id: CommandId,
    /// The event or command that caused this one, when there is one.
    pub causation_id: Option<Uuid>,
    /// Ties together everything that follows from one outside input.
    pub correlation_id: Option<Uuid>,
    /// Why, in the words of the person who acted.
    pub reason: Option<String>,
}

/// An event to append: its id, its type and schema version, and its payload already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: EventId,
    /// `PhaseEntered`, `ReachOutPlanned`, ... past tense.
    pub event_type: String,
    /// The payload's shape version; older shapes are upcast when read.
    pub schema_version: u16,
    /// The payload, encoded (MessagePack with field names, see `upcast`).
    pub payload: Vec<u8>,
}

/// An event as stored: the new event plus its place in the log and its hash-chain links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: StreamId,
    pub version: StreamVersion,
    pub event_id: EventId,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
    pub metadata: Metadata,
    /// The hash of the event at `position - 1` (all zeros for the first).
    pub previous_hash: ChainHash,
    /// blake3 over `previous_hash` and this event's canonical bytes.
    pub hash: ChainHash,
}
