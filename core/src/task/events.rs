//! The task events, on the stream `tasks-<campaign>`: work marked done, and reminders decided
//! (each with an idempotency key, so the dispatcher sends it once). Actor and instant travel in
//! the envelope (`EventMeta`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::campaign::timeline::{human_duration, local};

/// Which reminder of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// Ahead of the due instant by a lead time the task lists.
    Lead { before_seconds: i64 },
    /// At the due instant.
    Due,
    /// After the task's `escalate_after`, to the boss.
    Escalation,
}

impl ReminderKind {
    /// How the kind is written in a reminder's key: `lead-3600s`, `due`, `escalation`.
    pub fn key_part(self) -> String {
        match self {
            ReminderKind::Lead { before_seconds } => format!("lead-{before_seconds}s"),
            ReminderKind::Due => "due".to_string(),
            ReminderKind::Escalation => "escalation".to_string(),
        }
    }

    /// At one instant, a lead comes before the due reminder, which comes before the escalation.
    pub(crate) fn rank(self) -> u8 {
        match self {
            ReminderKind::Lead { .. } => 0,
            ReminderKind::Due => 1,
            ReminderKind::Escalation => 2,
        }
    }
}

/// The idempotency key of a reminder: `{campaign}/task/{occurrence}/{kind}`.
pub fn reminder_key(campaign: &str, occurrence: &str, kind: ReminderKind) -> String {
    format!("{campaign}/task/{occurrence}/{}", kind.key_part())
}

/// Someone marked an occurrence of a task done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDone {
    pub campaign: String,
    pub occurrence: String,
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A reminder was decided: the dispatcher sends it to the role's members, once (by `key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderPlanned {
    /// `{campaign}/task/{occurrence}/{kind}`: the send's idempotency key.
    pub key: String,
    pub campaign: String,
    pub occurrence: String,
    pub task: String,
    pub title: String,
    pub kind: ReminderKind,
    /// The occurrence's due instant.
    pub due: DateTime<Utc>,
    /// The reminder's own instant.
    pub planned_at: DateTime<Utc>,
    /// Who it is for: the task's role, or `boss` for an escalation.
    pub role: String,
    /// The role's members when it was decided; empty if the plan names none.
    pub members: Vec<String>,
    /// How late it was decided, in milliseconds (after downtime).
    pub late_by_ms: i64,
    /// Earlier reminders of this occurrence whose instants had passed unsent, covered by this
    /// one instead of being sent one after another.
    #[serde(default)]
    pub superseded: u32,
}

crate::event::upcast::event_enum!(
    /// Every event of a `tasks-<campaign>` stream.
    TaskEvent { TaskDone, ReminderPlanned }
);

impl TaskEvent {
    /// The campaign the event belongs to.
    pub fn campaign(&self) -> &str {
        match self {
            TaskEvent::TaskDone(e) => &e.campaign,
            TaskEvent::ReminderPlanned(e) => &e.campaign,
        }
    }

    /// One line for people: `reminder to ops (li.na): create-coupons "Create the sale coupons"
    /// is due in 1 d (2026-08-21 00:00 +08:00)`. Lateness under a minute is not mentioned.
    pub fn summary(&self, zone: chrono_tz::Tz) -> String {
        match self {
            TaskEvent::TaskDone(e) => match &e.note {
                Some(note) => format!("{} done: {note}", e.occurrence),
                None => format!("{} done", e.occurrence),
            },
            TaskEvent::ReminderPlanned(e) => {
                let to = match e.members.len() {
                    0 => format!("{} (no members)", e.role),
                    _ => format!("{} ({})", e.role, e.members.join(", ")),
                };
                let what = match e.kind {
                    ReminderKind::Lead { before_seconds } => format!(
                        "reminder to {to}: {} \"{}\" is due in {} ({})",
                        e.occurrence,
                        e.title,
                        human_duration(before_seconds.saturating_mul(1000)),
                        local(zone, e.due)
                    ),
                    ReminderKind::Due => format!(
                        "reminder to {to}: {} \"{}\" is due now ({})",
                        e.occurrence,
                        e.title,
                        local(zone, e.due)
                    ),
                    ReminderKind::Escalation => format!(
                        "escalated to {to}: {} \"{}\" was due {} and is not done",
                        e.occurrence,
                        e.title,
                        local(zone, e.due)
                    ),
                };
                let late = if e.late_by_ms >= 60_000 {
                    format!(", decided {} late", human_duration(e.late_by_ms))
                } else {
                    String::new()
                };
                let superseded = match e.superseded {
                    0 => String::new(),
                    1 => ", in place of 1 earlier reminder".to_string(),
                    n => format!(", in place of {n} earlier reminders"),
                };
                format!("{what}{late}{superseded}")
            }
        }
    }
}
