//! When work is due: every task of a plan expanded into occurrences (a one-off task once, a
//! recurring one per matching local day), and the reminder instants of each occurrence.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::events::ReminderKind;
use crate::plan::model::{Plan, Recurrence, Task, TaskSchedule};

/// The role an escalation is addressed to.
pub const ESCALATION_ROLE: &str = "boss";

/// One time a task is due.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Occurrence {
    /// The task id for a one-off task; `TASK@YYYY-MM-DD` (the local day) for a recurring one.
    pub id: String,
    pub task: String,
    pub due: DateTime<Utc>,
}

/// Every occurrence of every task of the plan, sorted by due instant then id.
pub fn occurrences(plan: &Plan) -> Vec<Occurrence> {
    let zone = plan.campaign.time_zone;
    let mut all = Vec::new();
    for task in &plan.tasks {
        occurrences_of(zone, task, &mut all);
    }
    all.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
    all
}

/// The occurrences of one task, in order, appended to `into`.
pub(crate) fn occurrences_of(zone: Tz, task: &Task, into: &mut Vec<Occurrence>) {
    match &task.schedule {
        TaskSchedule::Once { due } => into.push(Occurrence {
            id: task.id.clone(),
            task: task.id.clone(),
            due: *due,
        }),
        TaskSchedule::Recurring {
            recurrence,
            at,
            from,
            until,
        } => {
            let first_day = from.with_timezone(&zone).date_naive();
            let last_day = until.with_timezone(&zone).date_naive();
            for day in first_day.iter_days().take_while(|day| *day <= last_day) {
                let matches = match recurrence {
                    Recurrence::Daily => true,
                    Recurrence::Weekly(days) => days.contains(&day.weekday()),
                };
                if !matches {
                    continue;
                }
                let Some(due) = local_instant(zone, day.and_time(at.0)) else {
                    continue;
                };
                if *from <= due && due < *until {
                    into.push(Occurrence {
                        id: format!("{}@{}", task.id, day.format("%Y-%m-%d")),
                        task: task.id.clone(),
                        due,
                    });
                }
            }
        }
    }
}

/// A local time in the zone as an instant: the earlier one when the clocks repeat it, the first
/// instant after the gap when they skip it (validation warns of that: `RecurringTimeSkipped`).
/// `None` only for a gap longer than two days or past the end of the calendar.
pub(crate) fn local_instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    fn exact(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
            LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    }
    if let Some(instant) = exact(zone, local) {
        return Some(instant);
    }
    // In a gap: find the first local minute after it, then the first second of that minute the
    // zone has (gaps end on whole minutes in practice; this stays exact if one does not).
    let minute = Duration::minutes(1);
    let second = Duration::seconds(1);
    let mut probe = local;
    for _ in 0..(2 * 24 * 60) {
        probe = probe.checked_add_signed(minute)?;
        if let Some(mut first) = exact(zone, probe) {
            let mut back = probe;
            for _ in 0..59 {
                back = back.checked_sub_signed(second)?;
                if back <= local {
                    break;
                }
                match exact(zone, back) {
                    Some(earlier) => first = earlier,
                    None => break,
                }
            }
            return Some(first);
        }
    }
    None
}

/// One reminder instant of an occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderSlot {
    pub kind: ReminderKind,
    pub at: DateTime<Utc>,
}

impl ReminderSlot {
    /// The order in which reminders follow each other: by instant, and at one instant a lead
    /// before the due reminder before the escalation.
    pub fn position(&self) -> (DateTime<Utc>, u8) {
        (self.at, self.kind.rank())
    }
}

/// The reminders of an occurrence of `task` due at `due`, in order: one per lead time, one at
/// the due instant, and the escalation when the task has one. Instants beyond the calendar are
/// left out.
pub fn reminder_schedule(task: &Task, due: DateTime<Utc>) -> Vec<ReminderSlot> {
    let leads: BTreeSet<i64> = task
        .remind
        .iter()
        .map(|lead| lead.seconds())
        .filter(|seconds| *seconds > 0)
        .collect();
    let mut slots = Vec::with_capacity(leads.len() + 2);
    // Longest lead first: the earliest reminder.
    for before_seconds in leads.into_iter().rev() {
        if let Some(at) = due.checked_sub_signed(Duration::seconds(before_seconds)) {
            slots.push(ReminderSlot {
                kind: ReminderKind::Lead { before_seconds },
                at,
            });
        }
    }
    slots.push(ReminderSlot {
        kind: ReminderKind::Due,
        at: due,
    });
    if let Some(delay) = task.escalate_after {
        if let Some(at) = due.checked_add_signed(Duration::seconds(delay.seconds())) {
            slots.push(ReminderSlot {
                kind: ReminderKind::Escalation,
                at,
            });
        }
    }
    slots.sort_by_key(ReminderSlot::position);
    slots
}
