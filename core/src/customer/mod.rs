//! Customers and audiences, pure: the events imports record, the customer book they build (a
//! projection), segments evaluated at an instant, eligibility with every exclusion counted, the
//! quota ledger, and the send planner that `audience preview` and the dispatcher share.

pub mod book;
pub mod eligibility;
pub mod events;
pub mod preview;
pub mod quota;
pub mod row;
pub mod segment;

pub use events::{
    CustomerEvent, CustomerRecorded, ImportFinished, ImportKind, ImportStarted, OutcomeKind,
    OutcomeRecorded, Signal, SkippedRow,
};

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests;
