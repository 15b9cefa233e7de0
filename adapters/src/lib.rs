//! Implementations of the core's ports: the event store (in memory for tests, sled as the
//! embedded default), the system clock and random ids, and the reader of customer and outcome
//! files (`import`), and the channels (`outbox`: the file outbox and the console;
//! `smtp`: mail over SMTP; `webhook`: signed HTTP POSTs; `memory_channel`: the in-memory twin of a real channel, for tests).
//!
//! An adapter stores, sends and reads; it never decides. Every store here passes the same
//! contract suite (`tests/event_store_contract.rs`).

pub mod fault;
pub mod import;
pub mod memory;
pub mod memory_channel;
pub mod outbox;
pub mod postgres_store;
pub mod private;
pub mod robot;
pub mod sled_store;
pub mod smtp;
pub mod system;
pub mod webhook;

pub use memory::MemoryEventLog;
pub use memory_channel::{MemoryChannel, Scripted};
pub use postgres_store::{PgEventLog, PgLocation, PgOptions};
pub use sled_store::{SledEventLog, StoreOptions, VerifyReport, DEFAULT_CACHE_BYTES};
