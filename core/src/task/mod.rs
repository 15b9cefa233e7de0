//! Tasks: the work of a battle plan, per role, due once or on a recurrence, with reminders
//! ahead of each due instant, at it, and an escalation to the boss when it is late.
//!
//! - [`schedule`]: the plan's tasks expanded into [`Occurrence`]s (one-off tasks by their id,
//!   recurring ones per local day as `TASK@YYYY-MM-DD`) and each occurrence's reminder instants;
//! - [`events`]: `TaskDone` and `ReminderPlanned` on the stream `tasks-<campaign>`;
//! - [`board`]: the [`TaskBoard`] projection, and the decisions made against it: the reminders
//!   due at an instant (after downtime, only the latest passed one per occurrence, the rest
//!   counted as superseded), the next reminder instant, marking an occurrence done, the rows;
//! - [`render`]: the board as text and as JSON.
//!
//! Pure like the rest of the core: instants come in as values.

pub mod board;
pub mod events;
pub mod render;
pub mod schedule;

pub use board::{
    decide_done, due_reminders, find_occurrence, next_reminder_at, rows, skipped_by, DoneBy,
    Filter, PlannedReminders, Row, RowStatus, TaskBoard,
};
pub use events::{reminder_key, ReminderKind, ReminderPlanned, TaskDone, TaskEvent};
pub use render::{board_json, render_board, Counts};
pub use schedule::{occurrences, reminder_schedule, Occurrence, ReminderSlot, ESCALATION_ROLE};

use crate::event::StreamId;

/// The stream holding a campaign's task events: `tasks-<slug>`.
pub fn stream_of(campaign: &str) -> Result<StreamId, String> {
    StreamId::new(format!("tasks-{campaign}")).map_err(|_| {
        format!("`{campaign}` cannot name a campaign: use 1 to 200 of a-z, 0-9, - and _")
    })
}

/// The campaign slug of a `tasks-<slug>` stream.
pub fn campaign_of(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix("tasks-")
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests;
