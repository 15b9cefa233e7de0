//! `decide` and `evolve`, and what the scheduler should do next.

use chrono::{DateTime, Utc};

use super::events::{
    CampaignCancelled, CampaignCompleted, CampaignEvent, CampaignPaused, CampaignResumed,
    EventMeta, PhaseEntered, PlanApplied, PlanRevised, Trigger,
};
use super::revision::{review, PlanVersion};
use super::timeline::{local, Shift, Step};
use super::transitions::{allowed, CommandKind, StateKind};
use super::{quoted, CampaignState, Command, Context, Rejection, Status};
use crate::plan::model::ResumePolicy;

fn reject<T>(message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(message.into()))
}

/// Why the table refuses a command in this state, in a promo manager's words.
fn refusal(state: &CampaignState, command: CommandKind) -> Rejection {
    let verb = command.name();
    let zone = state.zone();
    let message = match &state.status {
        Status::Draft => format!(
            "cannot {verb}: campaign {} has no plan yet; apply one with `battleplan plan apply PLAN`",
            state.id
        ),
        Status::Paused {
            since, by, reason, ..
        } => format!(
            "cannot {verb}: the campaign has been paused since {} by {by}{}; resume it first",
            local(zone, *since),
            quoted(reason)
        ),
        Status::Completed => format!(
            "cannot {verb}: the campaign completed{}",
            state
                .since
                .map(|at| format!(" at {}", local(zone, at)))
                .unwrap_or_default()
        ),
        Status::Cancelled { by, reason } => format!(
            "cannot {verb}: the campaign was cancelled{} by {by}{}",
            state
                .since
                .map(|at| format!(" at {}", local(zone, at)))
                .unwrap_or_default(),
            quoted(reason)
        ),
        Status::Scheduled if command == CommandKind::Resume => {
            "cannot resume: the campaign is not paused (it is scheduled)".to_string()
        }
        Status::Scheduled => format!("cannot {verb}: the campaign has not started yet"),
        Status::Running { step } => match command {
            CommandKind::Resume => {
                format!("cannot resume: the campaign is not paused (it is in {step})")
            }
            CommandKind::Complete => format!(
                "cannot complete: the campaign is in {step}; it completes from its last phase (or use advance)"
            ),
            CommandKind::Enter => format!("cannot enter another step: {step} is the last one"),
            _ => format!("cannot {verb} while in {step}"),
        },
    };
    Rejection(message)
}

/// Turns a command into events, or refuses it with the reason.
pub fn decide(
    state: &CampaignState,
    command: &Command,
    context: &Context,
) -> Result<Vec<CampaignEvent>, Rejection> {
    let kind = command.kind();
    if allowed(state.kind(), kind).is_none() {
        return Err(refusal(state, kind));
    }
    let now = context.now;
    let timeline = state.timeline();
    match command {
        Command::ApplyPlan(version) => apply(state, version, context),
        Command::Enter { step, due } => {
            let Some(timeline) = timeline else {
                return Err(refusal(state, kind));
            };
            let current = state.current_step();
            let Some(next) = timeline.after(current) else {
                return Err(refusal(state, kind));
            };
            if &next.step != step {
                return reject(format!(
                    "cannot enter {step}: the next step is {}",
                    next.step
                ));
            }
            if next.start != *due {
                return reject(format!(
                    "cannot enter {step} for {}: the plan now says {}",
                    local(timeline.zone(), *due),
                    local(timeline.zone(), next.start)
                ));
            }
            if *due > now {
                return reject(format!(
                    "cannot enter {step} yet: it starts at {}",
                    local(timeline.zone(), *due)
                ));
            }
            let resumed = state
                .last_pause
                .is_some_and(|(since, until)| since < *due && *due <= until);
            Ok(vec![CampaignEvent::PhaseEntered(PhaseEntered {
                step: step.clone(),
                from: current.cloned(),
                planned: *due,
                late_by_ms: (now - *due).num_milliseconds(),
                trigger: if resumed {
                    Trigger::Resume
                } else {
                    Trigger::Schedule
                },
                plan_version: state.plan_version,
            })])
        }
        Command::Pause => Ok(vec![CampaignEvent::CampaignPaused(CampaignPaused {
            from: state.current_step().cloned(),
        })]),
        Command::Resume => {
            let Status::Paused { from, since, .. } = &state.status else {
                return Err(refusal(state, kind));
            };
            let paused_ms = (now - *since).num_milliseconds().max(0);
            let shift = match timeline.as_ref().map(|t| t.on_resume) {
                Some(ResumePolicy::ShiftWindows) if paused_ms > 0 => Some(Shift {
                    after: *since,
                    by_ms: paused_ms,
                }),
                _ => None,
            };
            Ok(vec![CampaignEvent::CampaignResumed(CampaignResumed {
                to: from.clone(),
                paused_ms,
                shift,
            })])
        }
        Command::Advance => {
            let Some(timeline) = timeline else {
                return Err(refusal(state, kind));
            };
            let current = state.current_step();
            match timeline.after(current) {
                Some(next) => Ok(vec![CampaignEvent::PhaseEntered(PhaseEntered {
                    step: next.step.clone(),
                    from: current.cloned(),
                    planned: next.start,
                    late_by_ms: (now - next.start).num_milliseconds(),
                    trigger: Trigger::Advance,
                    plan_version: state.plan_version,
                })]),
                None => Ok(vec![CampaignEvent::CampaignCompleted(CampaignCompleted {
                    from: current.cloned(),
                    planned: None,
                    late_by_ms: 0,
                    plan_version: state.plan_version,
                })]),
            }
        }
        Command::Cancel => Ok(vec![CampaignEvent::CampaignCancelled(CampaignCancelled {
            from: state.current_step().cloned(),
        })]),
        Command::Complete { due } => {
            let Some(timeline) = timeline else {
                return Err(refusal(state, kind));
            };
            let current = state.current_step();
            if timeline.after(current).is_some() {
                let next = timeline
                    .after(current)
                    .map(|w| w.step.to_string())
                    .unwrap_or_default();
                return reject(format!(
                    "cannot complete: {} is still ahead; advance to it, or cancel the campaign",
                    next
                ));
            }
            let end = timeline.end();
            if let Some(due) = due {
                if Some(*due) != end {
                    return reject(format!(
                        "cannot complete for {}: the plan now ends at {}",
                        local(timeline.zone(), *due),
                        end.map(|end| local(timeline.zone(), end))
                            .unwrap_or_default()
                    ));
                }
                if *due > now {
                    return reject(format!(
                        "cannot complete yet: the campaign ends at {}",
                        local(timeline.zone(), *due)
                    ));
                }
            }
            Ok(vec![CampaignEvent::CampaignCompleted(CampaignCompleted {
                from: current.cloned(),
                planned: *due,
                late_by_ms: due.map(|due| (now - due).num_milliseconds()).unwrap_or(0),
                plan_version: state.plan_version,
            })])
        }
    }
}

fn apply(
    state: &CampaignState,
    version: &PlanVersion,
    context: &Context,
) -> Result<Vec<CampaignEvent>, Rejection> {
    if version.campaign != state.id {
        return reject(format!(
            "the plan is for campaign {}, not {}",
            version.campaign, state.id
        ));
    }
    let Some(old) = state.timeline() else {
        return Ok(vec![CampaignEvent::PlanApplied(PlanApplied {
            campaign: version.campaign.clone(),
            name: version.name.clone(),
            version: 1,
            digest: version.digest.clone(),
            source: version.source.clone(),
            timeline: version.timeline.clone(),
            outline: version.outline.clone(),
        })]);
    };
    if version.digest == state.plan_digest {
        return Ok(Vec::new());
    }
    let started = state.current_step().is_some();
    let new = version.timeline.shifted(&state.shifts);
    let mut changes = review(
        &old,
        &state.outline,
        &new,
        &version.outline,
        context.now,
        started,
        state.current_step(),
    )?;
    if version.name != state.name {
        changes.insert(0, format!("renamed to {}", version.name));
    }
    Ok(vec![CampaignEvent::PlanRevised(PlanRevised {
        name: version.name.clone(),
        version: state.plan_version + 1,
        digest: version.digest.clone(),
        source: version.source.clone(),
        timeline: version.timeline.clone(),
        outline: version.outline.clone(),
        changes,
    })])
}

/// Folds one event into the state. Never fails: an event that does not fit (which `decide`
/// never produces) leaves the state as it was.
pub fn evolve(mut state: CampaignState, event: &CampaignEvent, meta: &EventMeta) -> CampaignState {
    match event {
        CampaignEvent::PlanApplied(e) => {
            state.id = e.campaign.clone();
            state.name = e.name.clone();
            state.plan_version = e.version;
            state.plan_digest = e.digest.clone();
            state.planned = Some(e.timeline.clone());
            state.outline = e.outline.clone();
            state.status = Status::Scheduled;
            state.since = Some(meta.at);
        }
        CampaignEvent::PlanRevised(e) => {
            state.name = e.name.clone();
            state.plan_version = e.version;
            state.plan_digest = e.digest.clone();
            state.planned = Some(e.timeline.clone());
            state.outline = e.outline.clone();
        }
        CampaignEvent::PhaseEntered(e) => {
            if e.trigger == Trigger::Advance {
                if let Some(from) = &e.from {
                    let window = state
                        .timeline()
                        .and_then(|timeline| timeline.window(from).cloned());
                    if let Some(window) = window.filter(|window| meta.at < window.end) {
                        state.skipped.push(super::SkippedStep {
                            step: from.clone(),
                            start: window.start,
                            end: window.end,
                            at: meta.at,
                            by: meta.actor.clone(),
                        });
                    }
                }
            }
            state
                .entered_under
                .insert(step_key(&e.step), e.plan_version);
            state.status = Status::Running {
                step: e.step.clone(),
            };
            state.since = Some(meta.at);
        }
        CampaignEvent::CampaignPaused(e) => {
            state.status = Status::Paused {
                from: e.from.clone(),
                since: meta.at,
                by: meta.actor.clone(),
                reason: meta.reason.clone(),
            };
            state.since = Some(meta.at);
        }
        CampaignEvent::CampaignResumed(e) => {
            if let Some(shift) = e.shift {
                state.shifts.push(shift);
            }
            if let Status::Paused { since, .. } = &state.status {
                state.last_pause = Some((*since, meta.at));
            }
            state.status = match &e.to {
                Some(step) => Status::Running { step: step.clone() },
                None => Status::Scheduled,
            };
            state.since = Some(meta.at);
        }
        CampaignEvent::CampaignCompleted(_) => {
            state.status = Status::Completed;
            state.since = Some(meta.at);
        }
        CampaignEvent::CampaignCancelled(_) => {
            state.status = Status::Cancelled {
                by: meta.actor.clone(),
                reason: meta.reason.clone(),
            };
            state.since = Some(meta.at);
        }
    }
    state
}

/// `burst/early`, `prep`: how `entered_under` names a step.
pub fn step_key(step: &Step) -> String {
    match &step.stage {
        Some(stage) => format!("{}/{stage}", step.phase.key()),
        None => step.phase.key().to_string(),
    }
}

/// What the scheduler does next for a campaign, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub at: DateTime<Utc>,
    pub command: Command,
}

/// The next automated step: entering the next phase or stage at its start, or completing at the
/// end of the last window. `None` for a campaign that is a draft, paused or over.
pub fn next_due(state: &CampaignState) -> Option<Due> {
    match state.status {
        Status::Scheduled | Status::Running { .. } => {}
        _ => return None,
    }
    let timeline = state.timeline()?;
    let current = state.current_step();
    match timeline.after(current) {
        Some(next) => Some(Due {
            at: next.start,
            command: Command::Enter {
                step: next.step.clone(),
                due: next.start,
            },
        }),
        None => {
            let end = timeline.end()?;
            // The last step (the review, or the burst of a plan without one) ends: complete.
            Some(Due {
                at: end,
                command: Command::Complete { due: Some(end) },
            })
        }
    }
}

impl StateKind {
    /// Whether the scheduler has anything to do in this state.
    pub fn is_scheduled(self) -> bool {
        matches!(
            self,
            StateKind::Scheduled
                | StateKind::Prep
                | StateKind::WarmUp
                | StateKind::Burst
                | StateKind::Review
        )
    }
}
