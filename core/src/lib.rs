//! The battleplan domain, pure: the plan format and its validation, the event log's pure half, the
//! campaign state machine, customers and audiences, the outbox's decisions (`outreach`), tasks
//! and their reminders (`task`), the team's calendar as iCalendar text (`calendar`), and the
//! funnel with the stage targets (`funnel`), and the boss's weekly report (`report`).
//!
//! Nothing in this crate does IO, reads a clock or draws randomness: time and ids come in as
//! values, so the same inputs always give the same outputs.

pub mod calendar;
pub mod campaign;
pub mod context;
pub mod customer;
pub mod event;
pub mod explain;
pub mod feed;
pub mod funnel;
pub mod metrics;
pub mod outreach;
pub mod plan;
pub mod presized;
pub mod report;
pub mod task;
pub mod text;
