//! The campaign's events: what the state machine decided, stored as payloads with their schema
//! version (see `event::upcast`). Actor, reason and instant travel in the envelope.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::revision::Outline;
use super::timeline::{Shift, Step, Timeline};
use crate::event::RecordedEvent;

/// The first version of a plan: the campaign exists and is scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanApplied {
    pub campaign: String,
    pub name: String,
    pub version: u32,
    /// blake3 of `source`, hex.
    pub digest: String,
    /// The plan file as applied, so that every later decision can be traced to its words.
    pub source: String,
    pub timeline: Timeline,
    pub outline: Outline,
}

/// A new version of the plan, mid-flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRevised {
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub source: String,
    pub timeline: Timeline,
    pub outline: Outline,
    /// What changed, one line each: "burst (late stage) starts 2026-09-24 00:00 +08:00 instead of ...".
    pub changes: Vec<String>,
}

/// How a step was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// By the scheduler at (or after downtime, later than) the planned boundary.
    Schedule,
    /// By a person, ahead of the plan.
    Advance,
    /// When a paused campaign resumed past its boundary (`on_resume = "follow_clock"`): by the
    /// scheduler, as for `Schedule`.
    Resume,
}

/// The campaign entered a phase or a burst stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseEntered {
    pub step: Step,
    pub from: Option<Step>,
    /// The boundary as the plan (with any shifts) says.
    pub planned: DateTime<Utc>,
    /// How late the transition happened, in milliseconds (negative when advanced early).
    pub late_by_ms: i64,
    pub trigger: Trigger,
    /// The plan version that decided it.
    pub plan_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignPaused {
    pub from: Option<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignResumed {
    pub to: Option<Step>,
    pub paused_ms: i64,
    /// Set when the plan says `on_resume = "shift_windows"`: boundaries after the pause began
    /// moved by its length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignCompleted {
    pub from: Option<Step>,
    /// The end of the last window when the scheduler completed it; `None` when a person did.
    pub planned: Option<DateTime<Utc>>,
    pub late_by_ms: i64,
    pub plan_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignCancelled {
    pub from: Option<Step>,
}

crate::event::upcast::event_enum!(
    /// Every event of a campaign's stream.
    CampaignEvent { PlanApplied, PlanRevised, PhaseEntered, CampaignPaused, CampaignResumed, CampaignCompleted, CampaignCancelled }
);

/// What `evolve` reads from an event's envelope: when, by whom, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub reason: Option<String>,
}

impl EventMeta {
    pub fn of(event: &RecordedEvent) -> EventMeta {
        EventMeta {
            at: event.recorded_at,
            actor: event.metadata.actor.clone(),
            reason: event.metadata.reason.clone(),
        }
    }
}

impl CampaignEvent {
    /// One line for people: `entered burst (early stage), 2 h 5 min late`.
    pub fn summary(&self, zone: chrono_tz::Tz) -> String {
        use super::timeline::{human_duration, local};
        match self {
            CampaignEvent::PlanApplied(e) => {
                format!("plan version {} applied: {}", e.version, e.name)
            }
            CampaignEvent::PlanRevised(e) => {
                let changes = if e.changes.is_empty() {
                    "no change to the timeline or the work".to_string()
                } else {
                    e.changes.join("; ")
                };
                format!("plan revised to version {}: {changes}", e.version)
            }
            CampaignEvent::PhaseEntered(e) => {
                let timing = match e.trigger {
                    Trigger::Advance => format!(
                        "advanced ahead of its planned start {}",
                        local(zone, e.planned)
                    ),
                    Trigger::Schedule | Trigger::Resume if e.late_by_ms > 0 => format!(
                        "{} late (planned {})",
                        human_duration(e.late_by_ms),
                        local(zone, e.planned)
                    ),
                    Trigger::Schedule | Trigger::Resume => "on time".to_string(),
                };
                let resumed = if e.trigger == Trigger::Resume {
                    " after the pause"
                } else {
                    ""
                };
                // What an advance cuts short goes with it (docs/campaign-lifecycle.md).
                let skipped = match (&e.from, e.trigger) {
                    (Some(from), Trigger::Advance) if e.late_by_ms < 0 => format!(
                        "; the rest of {from} is skipped, its reach-outs and task reminders with it"
                    ),
                    _ => String::new(),
                };
                format!("entered {}{resumed}, {timing}{skipped}", e.step)
            }
            CampaignEvent::CampaignPaused(e) => match &e.from {
                Some(step) => format!("paused in {step}"),
                None => "paused before it started".to_string(),
            },
            CampaignEvent::CampaignResumed(e) => {
                let shift = match &e.shift {
                    Some(shift) => format!(
                        "; boundaries after {} moved {} later",
                        local(zone, shift.after),
                        human_duration(shift.by_ms)
                    ),
                    None => String::new(),
                };
                format!("resumed after {}{shift}", human_duration(e.paused_ms))
            }
            CampaignEvent::CampaignCompleted(e) => match e.planned {
                Some(planned) if e.late_by_ms > 0 => format!(
                    "completed, {} late (planned {})",
                    human_duration(e.late_by_ms),
                    local(zone, planned)
                ),
                Some(_) => "completed on time".to_string(),
                None => "completed by hand".to_string(),
            },
            CampaignEvent::CampaignCancelled(_) => "cancelled".to_string(),
        }
    }
}
