//! A plan version as the state machine stores it, and what a revision may change mid-flight.
//!
//! Allowed: moving boundaries still ahead, adding or changing tasks, templates, reach-outs and
//! the rest while they still lie ahead. Refused, with the reason: moving a boundary that has
//! passed (or moving one into the past), removing the phase or stage the campaign is in,
//! changing the time zone of a campaign that has started, changing or removing work that is
//! already over.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::timeline::{local, Step, Timeline};
use super::Rejection;
use crate::plan::model::{Plan, TaskSchedule};

/// One entry of a plan (a task, a template, ...): a fingerprint of its content and, for work
/// bound to time, the instant after which it is over and can no longer change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlineItem {
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_at: Option<DateTime<Utc>>,
}

/// Every entry of a plan by key (`tasks.recall_inquirers`, `templates.burst_early_mail`, ...).
/// Fingerprints are blake3 of the resolved entry, so a change of wording, window or reference
/// shows, and a change of formatting in the file does not.
pub type Outline = BTreeMap<String, OutlineItem>;

/// A validated plan, ready to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVersion {
    pub campaign: String,
    pub name: String,
    pub source: String,
    pub digest: String,
    pub timeline: Timeline,
    pub outline: Outline,
}

fn fingerprint(entry: &impl std::fmt::Debug) -> String {
    let text = format!("{entry:?}");
    let hash = blake3::hash(text.as_bytes()).to_hex();
    hash.as_str().get(..16).unwrap_or_default().to_string()
}

impl PlanVersion {
    pub fn of(plan: &Plan, source: &str) -> PlanVersion {
        let mut outline = Outline::new();
        let mut add = |key: String, entry: &dyn std::fmt::Debug, over_at| {
            outline.insert(
                key,
                OutlineItem {
                    fingerprint: fingerprint(&entry),
                    over_at,
                },
            );
        };
        for task in &plan.tasks {
            let over_at = match &task.schedule {
                TaskSchedule::Once { due } => *due,
                TaskSchedule::Recurring { until, .. } => *until,
            };
            add(format!("tasks.{}", task.id), task, Some(over_at));
        }
        for template in &plan.templates {
            add(format!("templates.{}", template.id), template, None);
        }
        for reach_out in &plan.reach_outs {
            add(
                format!("reach_outs.{}", reach_out.id),
                reach_out,
                Some(reach_out.window.end),
            );
        }
        for rule in &plan.follow_ups {
            add(format!("follow_ups.{}", rule.id), rule, None);
        }
        for segment in &plan.segments {
            add(format!("segments.{}", segment.id), segment, None);
        }
        for channel in &plan.channels {
            add(format!("channels.{}", channel.id), channel, None);
        }
        for role in &plan.roles {
            add(format!("roles.{}", role.id), role, None);
        }
        for workstream in &plan.workstreams {
            add(format!("workstreams.{}", workstream.id), workstream, None);
        }
        for target in &plan.targets {
            add(
                format!("targets.{}.{}", target.stage, target.metric.key()),
                target,
                None,
            );
        }
        add("offers".to_string(), &plan.offers, None);
        PlanVersion {
            campaign: plan.campaign.id.clone(),
            name: plan.campaign.name.clone(),
            source: source.to_string(),
            digest: blake3::hash(source.as_bytes()).to_hex().to_string(),
            timeline: Timeline::of(plan),
            outline,
        }
    }
}

/// What changed from `old` to `new`, or why the change is refused at `now`. `started` says
/// whether the campaign has entered its first step; `current` is the step it is in.
pub fn review(
    old: &Timeline,
    old_outline: &Outline,
    new: &Timeline,
    new_outline: &Outline,
    now: DateTime<Utc>,
    started: bool,
    current: Option<&Step>,
) -> Result<Vec<String>, Rejection> {
    let zone = old.zone();
    let at = |instant| local(zone, instant);
    let mut refusals = Vec::new();
    let mut changes = Vec::new();
    if old.time_zone != new.time_zone {
        if started {
            refusals.push(format!(
                "the time zone cannot change once the campaign has started ({} to {})",
                old.time_zone, new.time_zone
            ));
        } else {
            changes.push(format!(
                "time zone {} instead of {}",
                new.time_zone, old.time_zone
            ));
        }
    }
    if old.on_resume != new.on_resume {
        changes.push(format!(
            "on_resume is now {}",
            match new.on_resume {
                crate::plan::model::ResumePolicy::FollowClock => "follow_clock",
                crate::plan::model::ResumePolicy::ShiftWindows => "shift_windows",
            }
        ));
    }
    if let Some(step) = current {
        if new.window(step).is_none() {
            refusals.push(format!(
                "the revision removes {step}, which the campaign is in"
            ));
        }
    }
    for window in &old.steps {
        match new.window(&window.step) {
            None => {
                if current != Some(&window.step) {
                    if window.start <= now {
                        refusals.push(format!(
                            "the revision removes {}, which began at {}",
                            window.step,
                            at(window.start)
                        ));
                    } else {
                        changes.push(format!("{} removed", window.step));
                    }
                }
            }
            Some(moved) => {
                for (what, before, after) in [
                    ("starts", window.start, moved.start),
                    ("ends", window.end, moved.end),
                ] {
                    if before == after {
                        continue;
                    }
                    if before <= now {
                        refusals.push(format!(
                            "{} {what} at {}, which has passed; a revision cannot move it (to {})",
                            window.step,
                            at(before),
                            at(after)
                        ));
                    } else if after <= now {
                        refusals.push(format!(
                            "{} would {} at {}, which is in the past",
                            window.step,
                            what.trim_end_matches('s'),
                            at(after)
                        ));
                    } else {
                        changes.push(format!(
                            "{} {what} {} instead of {}",
                            window.step,
                            at(after),
                            at(before)
                        ));
                    }
                }
            }
        }
    }
    for window in &new.steps {
        if old.window(&window.step).is_none() {
            if window.start <= now {
                refusals.push(format!(
                    "the revision adds {} starting at {}, which is in the past",
                    window.step,
                    at(window.start)
                ));
            } else {
                changes.push(format!(
                    "{} added, from {} to {}",
                    window.step,
                    at(window.start),
                    at(window.end)
                ));
            }
        }
    }
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    for (key, item) in old_outline {
        let over = item.over_at.is_some_and(|over_at| over_at <= now);
        match new_outline.get(key) {
            Some(new_item) if new_item.fingerprint == item.fingerprint => {}
            Some(_) if over => refusals.push(format!(
                "{key} is over (since {}); a revision cannot change it",
                item.over_at.map(at).unwrap_or_default()
            )),
            Some(_) => changed.push(key.as_str()),
            None if over => refusals.push(format!(
                "{key} is over (since {}); a revision cannot remove it",
                item.over_at.map(at).unwrap_or_default()
            )),
            None => removed.push(key.as_str()),
        }
    }
    for (key, item) in new_outline {
        if old_outline.contains_key(key) {
            continue;
        }
        match item.over_at {
            Some(over_at) if over_at <= now => refusals.push(format!(
                "the revision adds {key}, which would already be over (at {})",
                at(over_at)
            )),
            _ => added.push(key.as_str()),
        }
    }
    for (words, keys) in [("added", added), ("changed", changed), ("removed", removed)] {
        if !keys.is_empty() {
            changes.push(format!("{words}: {}", keys.join(", ")));
        }
    }
    if refusals.is_empty() {
        Ok(changes)
    } else {
        Err(Rejection(format!(
            "cannot apply the revision: {}",
            refusals.join("; ")
        )))
    }
}
