//! The campaign as a pure state machine: `decide(state, command, context)` turns a command into
//! events or a rejection that explains itself; `evolve(state, event)` folds an event into the
//! state and never fails. The runtime (`battleplan-orchestrator`) loads a campaign's stream,
//! decides, and appends with the expected version; the scheduler asks [`next_due`] what to do
//! and when.
//!
//! Life of a campaign (the table of allowed transitions is [`transitions::TABLE`]):
//! Draft -> Scheduled -> Prep -> WarmUp -> Burst(stage) -> Review -> Completed, plus Paused
//! (remembering where from) and Cancelled.

pub mod decide;
pub mod events;
pub mod revision;
pub mod timeline;
pub mod transitions;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use decide::{decide, evolve, next_due, Due};
pub use events::{CampaignEvent, EventMeta};
pub use revision::{Outline, PlanVersion};
pub use timeline::{Shift, Step, StepWindow, Timeline};
pub use transitions::{CommandKind, StateKind};

use crate::event::StreamId;

/// The stream holding a campaign's life: `campaign-<slug>`.
pub fn stream_of(campaign: &str) -> Result<StreamId, String> {
    StreamId::new(format!("campaign-{campaign}")).map_err(|_| {
        format!("`{campaign}` cannot name a campaign: use 1 to 200 of a-z, 0-9, - and _")
    })
}

/// The campaign slug of a `campaign-<slug>` stream.
pub fn campaign_of(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix("campaign-")
}

/// Where a campaign stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// No plan applied yet.
    Draft,
    /// A plan is applied; the first phase has not begun.
    Scheduled,
    /// In a phase (and in the burst, a stage).
    Running {
        step: Step,
    },
    /// Stopped by a person: no transition happens until someone resumes.
    Paused {
        /// The step it was in, or `None` if it was still scheduled.
        from: Option<Step>,
        since: DateTime<Utc>,
        by: String,
        reason: Option<String>,
    },
    Completed,
    Cancelled {
        by: String,
        reason: Option<String>,
    },
}

/// A campaign as its events made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignState {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// When the status began (the instant of the event that set it).
    pub since: Option<DateTime<Utc>>,
    /// The plan version in force (1, 2, ...); 0 in Draft.
    pub plan_version: u32,
    /// blake3 of the plan file in force.
    pub plan_digest: String,
    /// The timeline as the plan wrote it.
    pub planned: Option<Timeline>,
    /// Pauses whose length moved the boundaries after them.
    pub shifts: Vec<Shift>,
    /// Fingerprints of the plan's tasks, templates, reach-outs... to tell a revision's changes.
    pub outline: Outline,
    /// The plan version under which each step was entered.
    pub entered_under: BTreeMap<String, u32>,
    /// The last pause, from when to when: boundaries it covered are entered as resumed.
    pub last_pause: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Steps a person advanced out of before their planned end, in order: what was left of
    /// their window was skipped, and the reach-outs, tasks and reminders that lay in it with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedStep>,
}

/// What an `advance` cut short: the step it left, its planned window, and when it was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedStep {
    pub step: Step,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// When the campaign advanced out of it (before `end`).
    pub at: DateTime<Utc>,
    pub by: String,
}

impl SkippedStep {
    /// Whether a window belongs to the skipped part of the step: it lies within the step's
    /// planned window and had not ended when the campaign advanced.
    pub fn covers(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.start <= start && end <= self.end && self.at < end
    }
}

impl CampaignState {
    /// A campaign with no events: Draft.
    pub fn draft(id: &str) -> CampaignState {
        CampaignState {
            id: id.to_string(),
            name: String::new(),
            status: Status::Draft,
            since: None,
            plan_version: 0,
            plan_digest: String::new(),
            planned: None,
            shifts: Vec::new(),
            outline: Outline::default(),
            entered_under: BTreeMap::new(),
            last_pause: None,
            skipped: Vec::new(),
        }
    }

    /// The skipped step a window lies in, if an advance cut it short (see [`SkippedStep`]).
    pub fn skipped_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<&SkippedStep> {
        self.skipped
            .iter()
            .find(|skipped| skipped.covers(start, end))
    }

    /// The timeline in force: as planned, with every shifting pause applied.
    pub fn timeline(&self) -> Option<Timeline> {
        self.planned
            .as_ref()
            .map(|planned| planned.shifted(&self.shifts))
    }

    pub fn kind(&self) -> StateKind {
        StateKind::of(&self.status)
    }

    /// The step the campaign is in, counting a paused campaign as in the step it paused in.
    pub fn current_step(&self) -> Option<&Step> {
        match &self.status {
            Status::Running { step } => Some(step),
            Status::Paused { from, .. } => from.as_ref(),
            _ => None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.status, Status::Completed | Status::Cancelled { .. })
    }

    /// The campaign's zone, UTC before a plan is applied.
    pub fn zone(&self) -> chrono_tz::Tz {
        self.planned
            .as_ref()
            .map(Timeline::zone)
            .unwrap_or(chrono_tz::Tz::UTC)
    }

    /// The status in words: `burst (early stage)`, `paused in warm-up since ... by alice: '...'`.
    pub fn describe(&self) -> String {
        let zone = self.zone();
        match &self.status {
            Status::Draft => "draft (no plan applied)".to_string(),
            Status::Scheduled => "scheduled".to_string(),
            Status::Running { step } => step.to_string(),
            Status::Paused {
                from,
                since,
                by,
                reason,
            } => {
                let place = match from {
                    Some(step) => format!("in {step}"),
                    None => "before it started".to_string(),
                };
                format!(
                    "paused {place} since {} by {by}{}",
                    timeline::local(zone, *since),
                    quoted(reason)
                )
            }
            Status::Completed => "completed".to_string(),
            Status::Cancelled { by, reason } => format!("cancelled by {by}{}", quoted(reason)),
        }
    }
}

pub(crate) fn quoted(reason: &Option<String>) -> String {
    match reason {
        Some(reason) => format!(": '{reason}'"),
        None => String::new(),
    }
}

/// What a person or the scheduler asks of a campaign.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The first version of a plan, or a revision.
    ApplyPlan(Box<PlanVersion>),
    /// Enter `step` because its boundary `due` has come (issued by the scheduler).
    Enter {
        step: Step,
        due: DateTime<Utc>,
    },
    Pause,
    Resume,
    /// Skip to the next phase or stage now.
    Advance,
    Cancel,
    /// End the campaign: at the end of its last window (`due`, from the scheduler), or now by a
    /// person from its last step.
    Complete {
        due: Option<DateTime<Utc>>,
    },
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::ApplyPlan(_) => CommandKind::ApplyPlan,
            Command::Enter { .. } => CommandKind::Enter,
            Command::Pause => CommandKind::Pause,
            Command::Resume => CommandKind::Resume,
            Command::Advance => CommandKind::Advance,
            Command::Cancel => CommandKind::Cancel,
            Command::Complete { .. } => CommandKind::Complete,
        }
    }
}

/// Who asks, when, and why: everything `decide` knows besides the state and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub actor: String,
    pub reason: Option<String>,
}

/// A command refused, in words a promo manager understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

#[cfg(test)]
mod tests;
