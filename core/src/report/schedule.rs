//! `[reports.weekly]` at work: when the weekly report is due, the decision to send it
//! (`ReportPlanned`, on the stream `reports-<campaign>`, carrying the report itself so that what
//! went out is in the log), and which decisions were made (a projection).
//!
//! Due once a week, on the plan's weekday at its local time (the first instant after a gap the
//! zone skips), from the campaign's start, for as long as the week it reports overlaps the
//! campaign: with `week = "previous"`, the week that ended (so the last report comes the week
//! after the campaign ends); with `week = "current"`, the week it is sent in. Like a task
//! reminder, only the latest due instant not yet decided is decided: after downtime the report
//! is caught up once, naming how late it is and how many it stands for.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::week::IsoWeek;
use super::WeeklyReport;
use crate::event::StreamId;
use crate::plan::model::{Plan, ReportWeek};
use crate::task::schedule::local_instant;

/// The stream holding a campaign's report decisions: `reports-<slug>`.
pub fn stream_of(campaign: &str) -> Result<StreamId, String> {
    StreamId::new(format!("reports-{campaign}")).map_err(|_| {
        format!("`{campaign}` cannot name a campaign: use 1 to 200 of a-z, 0-9, - and _")
    })
}

/// The idempotency key of a weekly report: `{campaign}/report/weekly/{week}`; each role's
/// message is `{key}/{role}`.
pub fn report_key(campaign: &str, week: IsoWeek) -> String {
    format!("{campaign}/report/weekly/{week}")
}

/// One time the weekly report is due: the week it reports, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub week: IsoWeek,
    pub at: DateTime<Utc>,
}

/// Every time the plan's weekly report is due, in order (none when the plan schedules none).
pub fn slots(plan: &Plan) -> Vec<Slot> {
    let Some(schedule) = &plan.weekly_report else {
        return Vec::new();
    };
    let zone = plan.campaign.time_zone;
    let span = plan.span();
    let (first, last) = super::campaign_weeks(plan);
    let mut slots = Vec::new();
    // The weeks whose weekday may carry a report: those of the campaign, and the one after.
    let mut sent_in = first;
    while sent_in <= last.next() {
        let offset = i64::from(schedule.weekday.num_days_from_monday());
        let day = sent_in.monday() + Duration::days(offset);
        let reports = match schedule.week {
            ReportWeek::Previous => sent_in.previous(),
            ReportWeek::Current => sent_in,
        };
        if let Some(at) = local_instant(zone, day.and_time(schedule.at)) {
            if at >= span.start && reports >= first && reports <= last {
                slots.push(Slot { week: reports, at });
            }
        }
        sent_in = sent_in.next();
    }
    slots
}

/// Who a report goes to: a role and its members when it was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub role: String,
    pub members: Vec<String>,
}

/// A weekly report was decided: the dispatcher sends it to each role's staff channel once (by
/// `{key}/{role}`), Markdown to a robot, HTML to a mail address, text to the staff outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportPlanned {
    /// `{campaign}/report/weekly/{week}`.
    pub key: String,
    pub campaign: String,
    /// `2026-W36`.
    pub week: String,
    /// The instant it was due.
    pub planned_at: DateTime<Utc>,
    /// How late it was decided, in milliseconds (after downtime).
    pub late_by_ms: i64,
    /// Earlier reports whose instants passed undecided (downtime), covered by this one.
    #[serde(default)]
    pub superseded: u32,
    pub to: Vec<Recipient>,
    /// The report as it was when decided: what every role receives.
    pub report: WeeklyReport,
}

/// Equality of the report's fractions is the floats' own: no fraction of a report is NaN (each
/// is computed over a denominator checked to be above zero), so equality is reflexive.
impl Eq for ReportPlanned {}

crate::event::upcast::event_enum!(
    /// Every event of a `reports-<campaign>` stream.
    ReportEvent { ReportPlanned }
);

/// The reports decided, per campaign: the latest instant covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportsDecided {
    latest: BTreeMap<String, DateTime<Utc>>,
}

impl ReportsDecided {
    pub fn apply(&mut self, event: &ReportEvent) {
        let ReportEvent::ReportPlanned(planned) = event;
        let latest = self
            .latest
            .entry(planned.campaign.clone())
            .or_insert(planned.planned_at);
        *latest = (*latest).max(planned.planned_at);
    }

    /// The latest due instant decided for the campaign: every slot up to it is covered.
    pub fn latest(&self, campaign: &str) -> Option<DateTime<Utc>> {
        self.latest.get(campaign).copied()
    }
}

/// The report to decide at `now`: the latest slot at or before `now` not covered yet, and how
/// many earlier uncovered ones it stands for.
pub fn due_report(
    plan: &Plan,
    decided: &ReportsDecided,
    now: DateTime<Utc>,
) -> Option<(Slot, u32)> {
    let covered = decided.latest(&plan.campaign.id);
    let passed: Vec<Slot> = slots(plan)
        .into_iter()
        .filter(|slot| slot.at <= now && covered.is_none_or(|latest| slot.at > latest))
        .collect();
    let latest = *passed.last()?;
    Some((
        latest,
        u32::try_from(passed.len().saturating_sub(1)).unwrap_or(u32::MAX),
    ))
}

/// The next slot after `after` not covered yet, for the scheduler.
pub fn next_report_at(
    plan: &Plan,
    decided: &ReportsDecided,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let covered = decided.latest(&plan.campaign.id);
    slots(plan)
        .into_iter()
        .map(|slot| slot.at)
        .find(|at| *at > after && covered.is_none_or(|latest| *at > latest))
}

/// The decision for a due slot, with the report assembled for it and its recipients (each role
/// of `to` with its members).
pub fn decide(
    plan: &Plan,
    slot: Slot,
    superseded: u32,
    report: WeeklyReport,
    now: DateTime<Utc>,
) -> ReportPlanned {
    let to = plan
        .weekly_report
        .as_ref()
        .map(|schedule| {
            schedule
                .to
                .iter()
                .map(|role| Recipient {
                    role: role.clone(),
                    members: plan
                        .roles
                        .iter()
                        .find(|known| known.id == *role)
                        .map(|known| known.members.clone())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    ReportPlanned {
        key: report_key(&plan.campaign.id, slot.week),
        campaign: plan.campaign.id.clone(),
        week: slot.week.to_string(),
        planned_at: slot.at,
        late_by_ms: (now - slot.at).num_milliseconds().max(0),
        superseded,
        to,
        report,
    }
}
