//! The task board: a projection of a campaign's task events (what is done, by whom; which
//! reminders were decided), and the pure decisions made against it with the plan: which
//! reminders are due now, when the next one is, marking an occurrence done, and the board's
//! rows for people.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::events::{reminder_key, ReminderKind, ReminderPlanned, TaskDone, TaskEvent};
use super::schedule::{occurrences, reminder_schedule, Occurrence, ReminderSlot, ESCALATION_ROLE};
use crate::campaign::timeline::local;
use crate::campaign::{EventMeta, SkippedStep};
use crate::plan::diagnostic::suggest;
use crate::plan::model::{PhaseKind, Plan, Task, TaskSchedule};

/// Who marked an occurrence done, when, and what they said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneBy {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The reminders decided for one occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlannedReminders {
    /// In the order they were decided.
    pub kinds: Vec<ReminderKind>,
    pub count: u32,
    /// The latest reminder decided (by its planned instant, then kind): every reminder of the
    /// occurrence up to it is covered, sent or superseded.
    pub latest: Option<ReminderMark>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderMark {
    pub at: DateTime<Utc>,
    pub kind: ReminderKind,
}

impl PlannedReminders {
    pub fn escalated(&self) -> bool {
        self.kinds.contains(&ReminderKind::Escalation)
    }

    fn covers(&self, slot: &ReminderSlot) -> bool {
        self.latest
            .is_some_and(|mark| slot.position() <= (mark.at, mark.kind.rank()))
    }
}

/// A campaign's tasks as its `tasks-<campaign>` events made them. Rebuilt by applying every
/// event in order to [`TaskBoard::new`]; `apply` never fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskBoard {
    pub campaign: String,
    /// Done occurrences by id.
    pub done: BTreeMap<String, DoneBy>,
    /// Reminders decided, by occurrence id.
    pub reminders: BTreeMap<String, PlannedReminders>,
}

impl TaskBoard {
    pub fn new(campaign: &str) -> TaskBoard {
        TaskBoard {
            campaign: campaign.to_string(),
            done: BTreeMap::new(),
            reminders: BTreeMap::new(),
        }
    }

    /// Folds one event in. Events of another campaign are ignored; an occurrence marked done
    /// twice keeps the first.
    pub fn apply(&mut self, event: &TaskEvent, meta: &EventMeta) {
        if event.campaign() != self.campaign {
            return;
        }
        match event {
            TaskEvent::TaskDone(e) => {
                self.done
                    .entry(e.occurrence.clone())
                    .or_insert_with(|| DoneBy {
                        by: meta.actor.clone(),
                        at: meta.at,
                        note: e.note.clone(),
                    });
            }
            TaskEvent::ReminderPlanned(e) => {
                let planned = self.reminders.entry(e.occurrence.clone()).or_default();
                planned.kinds.push(e.kind);
                planned.count = planned.count.saturating_add(1);
                let mark = ReminderMark {
                    at: e.planned_at,
                    kind: e.kind,
                };
                let later = planned.latest.is_none_or(|latest| {
                    (latest.at, latest.kind.rank()) < (mark.at, mark.kind.rank())
                });
                if later {
                    planned.latest = Some(mark);
                }
            }
        }
    }

    pub fn done_by(&self, occurrence: &str) -> Option<&DoneBy> {
        self.done.get(occurrence)
    }

    pub fn reminders_of(&self, occurrence: &str) -> Option<&PlannedReminders> {
        self.reminders.get(occurrence)
    }
}

fn tasks_by_id(plan: &Plan) -> HashMap<&str, &Task> {
    plan.tasks
        .iter()
        .map(|task| (task.id.as_str(), task))
        .collect()
}

fn members_of(plan: &Plan, role: &str) -> Vec<String> {
    plan.roles
        .iter()
        .find(|candidate| candidate.id == role)
        .map(|found| found.members.clone())
        .unwrap_or_default()
}

/// The reminders to decide at `now`: for each occurrence not done, of its reminder instants at
/// or before `now` not yet covered by a decided reminder, only the latest (the others are
/// counted in `superseded`). Ordered by planned instant, then key. Applying them to the board
/// and asking again at the same `now` gives nothing.
///
/// An occurrence of a task of a step that an advance skipped (its due instant in the part of
/// the step's window the advance cut off) is reminded no more: its work was skipped with it.
pub fn due_reminders(
    plan: &Plan,
    board: &TaskBoard,
    skipped: &[SkippedStep],
    now: DateTime<Utc>,
) -> Vec<ReminderPlanned> {
    let tasks = tasks_by_id(plan);
    let campaign = &plan.campaign.id;
    let mut decided = Vec::new();
    for occurrence in occurrences(plan) {
        if board.done.contains_key(&occurrence.id) {
            continue;
        }
        let Some(task) = tasks.get(occurrence.task.as_str()) else {
            continue;
        };
        if skipped_by(task, occurrence.due, skipped).is_some() {
            continue;
        }
        let planned = board.reminders.get(&occurrence.id);
        let passed: Vec<ReminderSlot> = reminder_schedule(task, occurrence.due)
            .into_iter()
            .filter(|slot| slot.at <= now)
            .filter(|slot| !planned.is_some_and(|p| p.covers(slot)))
            .collect();
        let Some(latest) = passed.last() else {
            continue;
        };
        let role = match latest.kind {
            ReminderKind::Escalation => ESCALATION_ROLE.to_string(),
            _ => task.role.clone(),
        };
        decided.push(ReminderPlanned {
            key: reminder_key(campaign, &occurrence.id, latest.kind),
            campaign: campaign.clone(),
            occurrence: occurrence.id.clone(),
            task: task.id.clone(),
            title: task.title.clone(),
            kind: latest.kind,
            due: occurrence.due,
            planned_at: latest.at,
            members: members_of(plan, &role),
            role,
            late_by_ms: (now - latest.at).num_milliseconds(),
            superseded: u32::try_from(passed.len().saturating_sub(1)).unwrap_or(u32::MAX),
        });
    }
    decided.sort_by(|a, b| (a.planned_at, &a.key).cmp(&(b.planned_at, &b.key)));
    decided
}

/// The earliest reminder instant after `after` that would be decided for an occurrence not
/// done, so a scheduler can sleep until it; `None` when no reminder is left. One pass over the
/// occurrences.
pub fn next_reminder_at(
    plan: &Plan,
    board: &TaskBoard,
    skipped: &[SkippedStep],
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tasks = tasks_by_id(plan);
    let mut earliest: Option<DateTime<Utc>> = None;
    for occurrence in occurrences(plan) {
        if board.done.contains_key(&occurrence.id) {
            continue;
        }
        let Some(task) = tasks.get(occurrence.task.as_str()) else {
            continue;
        };
        if skipped_by(task, occurrence.due, skipped).is_some() {
            continue;
        }
        let planned = board.reminders.get(&occurrence.id);
        let next = reminder_schedule(task, occurrence.due)
            .into_iter()
            .filter(|slot| slot.at > after)
            .find(|slot| !planned.is_some_and(|p| p.covers(slot)));
        if let Some(slot) = next {
            earliest = Some(earliest.map_or(slot.at, |known| known.min(slot.at)));
        }
    }
    earliest
}

/// The skipped step an occurrence of `task` due at `due` belonged to: a task of that phase (and
/// stage, for a stage) due in the part of its window an advance cut off.
pub fn skipped_by<'s>(
    task: &Task,
    due: DateTime<Utc>,
    skipped: &'s [SkippedStep],
) -> Option<&'s SkippedStep> {
    skipped.iter().find(|skipped| {
        skipped.step.phase == task.phase
            && (skipped.step.stage.is_none() || skipped.step.stage == task.stage)
            && skipped.at <= due
            && due <= skipped.end
    })
}

/// Which rows to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only the tasks of this role.
    pub role: Option<String>,
    /// Only occurrences due strictly before this instant.
    pub due_before: Option<DateTime<Utc>>,
}

/// Where an occurrence stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RowStatus {
    /// Not due yet.
    Open,
    /// Due, not done.
    Overdue,
    /// Not done, and the escalation to the boss was decided.
    Escalated,
    /// Not done, and due in the part of its phase (or stage) a person cut short with
    /// `advance`: its reminders stopped with it (docs/campaign-lifecycle.md).
    Skipped {
        /// Who advanced.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    Done {
        by: String,
        at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// One occurrence on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub occurrence: String,
    pub task: String,
    pub title: String,
    pub workstream: String,
    pub role: String,
    pub phase: PhaseKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub due: DateTime<Utc>,
    #[serde(flatten)]
    pub status: RowStatus,
    /// Reminders decided for it so far (escalation included).
    pub reminders_sent: u32,
}

/// The board at `now`, filtered, sorted by due instant then occurrence id; `skipped` are the
/// steps advances cut short (`CampaignState::skipped`).
pub fn rows(
    plan: &Plan,
    board: &TaskBoard,
    skipped: &[SkippedStep],
    now: DateTime<Utc>,
    filter: &Filter,
) -> Vec<Row> {
    let tasks = tasks_by_id(plan);
    let mut rows = Vec::new();
    for occurrence in occurrences(plan) {
        let Some(task) = tasks.get(occurrence.task.as_str()) else {
            continue;
        };
        if filter.role.as_ref().is_some_and(|role| *role != task.role) {
            continue;
        }
        if filter
            .due_before
            .is_some_and(|before| occurrence.due >= before)
        {
            continue;
        }
        let planned = board.reminders.get(&occurrence.id);
        let status = match board.done.get(&occurrence.id) {
            Some(done) => RowStatus::Done {
                by: done.by.clone(),
                at: done.at,
                note: done.note.clone(),
            },
            None => match skipped_by(task, occurrence.due, skipped) {
                Some(step) => RowStatus::Skipped {
                    by: step.by.clone(),
                    at: step.at,
                },
                None if planned.is_some_and(PlannedReminders::escalated) => RowStatus::Escalated,
                None if now >= occurrence.due => RowStatus::Overdue,
                None => RowStatus::Open,
            },
        };
        rows.push(Row {
            occurrence: occurrence.id,
            task: task.id.clone(),
            title: task.title.clone(),
            workstream: task.workstream.clone(),
            role: task.role.clone(),
            phase: task.phase,
            stage: task.stage.clone(),
            due: occurrence.due,
            status,
            reminders_sent: planned.map_or(0, |p| p.count),
        });
    }
    rows
}

/// The occurrence a person named (`task done ID`), or a message that helps them name it.
pub fn find_occurrence(plan: &Plan, id: &str) -> Result<Occurrence, String> {
    let wanted = id.trim();
    let all = occurrences(plan);
    if let Some(found) = all.iter().find(|occurrence| occurrence.id == wanted) {
        return Ok(found.clone());
    }
    let (task_part, date_part) = match wanted.split_once('@') {
        Some((task, date)) => (task, Some(date)),
        None => (wanted, None),
    };
    let Some(task) = plan.tasks.iter().find(|task| task.id == task_part) else {
        let ids = all
            .iter()
            .map(|occurrence| occurrence.id.as_str())
            .chain(plan.tasks.iter().map(|task| task.id.as_str()));
        let help = match suggest(wanted, ids) {
            Some(candidate) => format!("did you mean `{candidate}`?"),
            None => match suggest(task_part, plan.tasks.iter().map(|task| task.id.as_str())) {
                Some(candidate) => format!("did you mean task `{candidate}`?"),
                None => format!(
                    "tasks: {}",
                    plan.tasks
                        .iter()
                        .map(|task| task.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        return Err(format!(
            "there is no task `{task_part}` in the plan; {help}"
        ));
    };
    if let TaskSchedule::Once { .. } = task.schedule {
        return Err(format!(
            "`{}` is due once: name it `{}`, without a date",
            task.id, task.id
        ));
    }
    let mine: Vec<(&Occurrence, Option<NaiveDate>)> = all
        .iter()
        .filter(|occurrence| occurrence.task == task.id)
        .map(|occurrence| (occurrence, occurrence_date(&occurrence.id)))
        .collect();
    let (Some((first, _)), Some((last, _))) = (mine.first(), mine.last()) else {
        return Err(format!(
            "`{}` repeats, but none of its days falls in its window",
            task.id
        ));
    };
    let range = format!("from `{}` to `{}`", first.id, last.id);
    let Some(date_text) = date_part else {
        return Err(format!(
            "`{}` repeats: name one occurrence as `{}@YYYY-MM-DD`, {range}",
            task.id, task.id
        ));
    };
    let Ok(date) = NaiveDate::parse_from_str(date_text.trim(), "%Y-%m-%d") else {
        return Err(format!(
            "`{date_text}` is not a date: name one occurrence as `{}@YYYY-MM-DD`, {range}",
            task.id
        ));
    };
    let before = mine
        .iter()
        .rev()
        .find(|(_, day)| day.is_some_and(|day| day < date));
    let after = mine
        .iter()
        .find(|(_, day)| day.is_some_and(|day| day > date));
    let nearest = match (before, after) {
        (Some((b, _)), Some((a, _))) => format!("; the nearest are `{}` and `{}`", b.id, a.id),
        (Some((one, _)), None) | (None, Some((one, _))) => {
            format!("; the nearest is `{}`", one.id)
        }
        (None, None) => String::new(),
    };
    Err(format!(
        "`{}` has no occurrence on {date} (they run {range}){nearest}",
        task.id
    ))
}

/// The local day of a recurring occurrence's id.
fn occurrence_date(id: &str) -> Option<NaiveDate> {
    let (_, date) = id.rsplit_once('@')?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

/// Marks an occurrence done: refused for an id the plan does not have and for an occurrence
/// already done (saying by whom and when). A blank note is no note.
pub fn decide_done(
    plan: &Plan,
    board: &TaskBoard,
    occurrence_id: &str,
    note: Option<String>,
) -> Result<TaskDone, String> {
    let occurrence = find_occurrence(plan, occurrence_id)?;
    if let Some(done) = board.done.get(&occurrence.id) {
        let note = match &done.note {
            Some(note) => format!(" (\"{note}\")"),
            None => String::new(),
        };
        return Err(format!(
            "`{}` is already done: {} marked it done at {}{note}",
            occurrence.id,
            done.by,
            local(plan.campaign.time_zone, done.at)
        ));
    }
    let note = note
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty());
    Ok(TaskDone {
        campaign: plan.campaign.id.clone(),
        occurrence: occurrence.id,
        task: occurrence.task,
        note,
    })
}
