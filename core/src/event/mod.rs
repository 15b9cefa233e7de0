//! The event log as the core sees it: identities, the envelope every event travels in, the
//! canonical bytes and hash chain that make tampering visible, the verification an auditor runs,
//! and the ports (traits) a store implements. No IO here: stores live in `battleplan-adapters`.
//!
//! Durability contract every store keeps (PRODUCT.md invariant 3): an append is all-or-nothing,
//! returns only when its events are durable, and nothing is readable before it is durable.

pub mod append;
pub mod envelope;
pub mod ids;
pub mod port;
pub mod record;
pub mod subscription;
pub mod upcast;
pub mod verify;

pub use envelope::{Metadata, NewEvent, RecordedEvent};
pub use ids::{CommandId, EventId, Position, StreamId, StreamVersion};
pub use port::{
    Append, AppendOutcome, Checkpoints, EventLog, ExpectedVersion, StoreError, StoreResult,
};
pub use record::{ChainHash, GENESIS_HASH};
