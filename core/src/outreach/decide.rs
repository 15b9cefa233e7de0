//! The outbox's decisions, pure: which reach-outs to plan now and their sends (the same
//! `plan_audience` that `audience preview` prints), which follow-ups fire, stop or wait out the
//! fatigue window, what the dispatcher may send now and what it must give up with a reason, and
//! when the bounce guard pauses a channel. Everything the dispatcher does is first one of these
//! decisions, recorded as events.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::events::{
    send_key, ChannelPaused, FollowUpStopped, FollowUpTerms, NotSent, NotSentReason, NoticePlanned,
    OutreachEvent, ReachOutPlanned, SendMoved, SendPlanned, StopReason,
};
use super::port::Message;
use super::render::Renderer;
use super::state::{Outreach, SendStatus};
use crate::campaign::timeline::{local, shift_instant};
use crate::campaign::{CampaignState, Shift, Status};
use crate::customer::book::{channel_index, millis, reach_out_key, CustomerBook, NEVER};
use crate::customer::eligibility::{
    exclusion, fatigue_ends, has_address, is_quiet, Exclusion, Rules,
};
use crate::customer::preview::{plan_audience_except, Target};
use crate::customer::quota::{plan_sends, Candidate, Ledger, Limits, PlanRequest, Unplaced};
use crate::customer::segment::Segments;
use crate::explain;
use crate::plan::model::{
    Activity, FatigueScope, FollowUpTrigger, PhaseKind, Plan, ReachOut, ResumePolicy, Sender,
    StopOn, TaskSchedule, Window,
};

/// The plan with every window moved by the campaign's shifting pauses (`on_resume =
/// "shift_windows"`): phases, stages and reach-outs alike, and the tasks' due instants (a
/// one-off task's due, a recurring task's span; its time of day stays), so that a task due at
/// `review.end` is due, and reminded, at the boundary where it now lies.
pub fn shifted(plan: &Plan, shifts: &[Shift]) -> Plan {
    let mut plan = plan.clone();
    if shifts.is_empty() {
        return plan;
    }
    let mv = |window: &mut Window| {
        window.start = shift_instant(window.start, shifts);
        window.end = shift_instant(window.end, shifts);
    };
    plan.phases
        .iter_mut()
        .for_each(|phase| mv(&mut phase.window));
    plan.stages
        .iter_mut()
        .for_each(|stage| mv(&mut stage.window));
    plan.reach_outs
        .iter_mut()
        .for_each(|reach_out| mv(&mut reach_out.window));
    for task in &mut plan.tasks {
        match &mut task.schedule {
            TaskSchedule::Once { due } => *due = shift_instant(*due, shifts),
            TaskSchedule::Recurring { from, until, .. } => {
                *from = shift_instant(*from, shifts);
                *until = shift_instant(*until, shifts);
            }
        }
    }
    plan
}

fn running(state: &CampaignState) -> bool {
    matches!(state.status, Status::Running { .. })
}

fn phase_of(state: &CampaignState) -> Option<PhaseKind> {
    state.current_step().map(|step| step.phase)
}

/// The reach-outs whose window is open at `now` and that are not planned yet; only while the
/// campaign runs (a paused campaign plans when it resumes, if the window is still open).
pub fn reach_outs_due<'p>(
    plan: &'p Plan,
    state: &CampaignState,
    outreach: &Outreach,
    now: DateTime<Utc>,
) -> Vec<&'p ReachOut> {
    if !running(state) {
        return Vec::new();
    }
    // Windows that have opened, including those that closed while nothing ran (the daemon was
    // down, or the campaign paused): those are decided too, every member given a reason.
    plan.reach_outs
        .iter()
        .filter(|reach_out| reach_out.window.start <= now)
        .filter(|reach_out| {
            outreach
                .reach_out_planned(&plan.campaign.id, &reach_out.id)
                .is_none()
        })
        .collect()
}

/// The follow-up terms of a reach-out, from its rule in the plan.
fn terms_of(plan: &Plan, reach_out: &ReachOut) -> Option<FollowUpTerms> {
    let id = reach_out.follow_up.as_deref()?;
    let rule = plan.follow_ups.iter().find(|rule| rule.id == id)?;
    Some(FollowUpTerms {
        rule: rule.id.clone(),
        if_no: rule.if_no,
        after_ms: rule.after.seconds().saturating_mul(1000),
        max_attempts: rule.max_attempts,
        stop_on: rule.stop_on.clone(),
        channel: rule
            .channel
            .clone()
            .unwrap_or_else(|| reach_out.channel.clone()),
    })
}

/// Decides a reach-out's audience at `now`: a `SendPlanned` per placed member, a `NotSent` per
/// member excluded or left unplaced, then `ReachOutPlanned`. Members decided before (a planning
/// cut short by a crash) keep what was decided for them. A reach-out whose window closed before
/// it could be planned is decided as of its window's start, and every member it would have
/// reached gets `window_closed`. (The dispatcher takes the events a chunk at a time from
/// [`prepare_reach_out`], so that a million members are never a million events in memory.)
pub fn plan_reach_out(
    plan: &Plan,
    state: &CampaignState,
    book: &CustomerBook,
    outreach: &Outreach,
    reach_out_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutreachEvent>, String> {
    let planning = prepare_reach_out(plan, state, book, outreach, reach_out_id, now)?;
    Ok(planning.events(plan, book, 0..planning.len()))
}

/// A reach-out's audience decided at one instant, whose events are made a range at a time
/// ([`ReachOutPlanning::events`]): the `window_closed` of a missed window, the placed sends, the
/// excluded, the unplaced, the skipped for quiet hours, then `ReachOutPlanned`, always in that
/// order. Everything that depends on the outbox (what was decided before, the quota ledger) is
/// taken when it is prepared, so the events are the same however they are cut.
#[derive(Debug)]
pub struct ReachOutPlanning {
    campaign: String,
    reach_out: String,
    audience: crate::customer::preview::Audience,
    missed: bool,
    phase: Option<PhaseKind>,
    follow_up: Option<FollowUpTerms>,
    /// Per day of the window, why a send placed on it was not placed earlier.
    pushed: Vec<Option<String>>,
    window_full: String,
    missed_reason: NotSentReason,
    closed: Option<String>,
    /// Who a missed window would have reached, each told why it did not.
    missed_slots: Vec<u32>,
    /// Per placement: whether it is paid volume of its day; `None` for one not made (its
    /// member or day unknown).
    paid: Vec<Option<bool>>,
    after_fatigue: BTreeMap<u32, DateTime<Utc>>,
    evaluated: i64,
    planned: u64,
    not_sent: u64,
}

pub fn prepare_reach_out(
    plan: &Plan,
    state: &CampaignState,
    book: &CustomerBook,
    outreach: &Outreach,
    reach_out_id: &str,
    now: DateTime<Utc>,
) -> Result<ReachOutPlanning, String> {
    let campaign = plan.campaign.id.as_str();
    let Some(reach_out) = plan.reach_outs.iter().find(|r| r.id == reach_out_id) else {
        return Err(format!(
            "campaign {campaign} has no reach-out `{reach_out_id}`"
        ));
    };
    let any_channel = plan
        .channel(&reach_out.channel)
        .is_none_or(|c| c.fatigue_scope == FatigueScope::AnyChannel);
    let missed = now >= reach_out.window.end;
    let evaluated = if missed { reach_out.window.start } else { now };
    let from = evaluated.max(reach_out.window.start);
    let audience = plan_audience_except(
        plan,
        book,
        &outreach.ledger,
        Target::ReachOut(reach_out_id),
        evaluated,
        |slot, customer, kind, fatigue_ms| {
            outreach.prior(
                campaign,
                reach_out_id,
                (slot, customer),
                kind,
                any_channel,
                from,
                fatigue_ms,
            )
        },
    )?;
    let known = |slot: u32| (slot as usize) < book.len();
    // The numbers behind each decision, recorded with it: the days of the window as the planner
    // filled them (what the ledger held and the limit that stopped each), for sends placed after
    // the first day and for customers no day had room for.
    let channel = plan.channel(&audience.channel);
    let day_words = channel
        .map(|channel| explain::quota_days(channel, &outreach.ledger, &audience.sends.days))
        .unwrap_or_default();
    let dates: Vec<NaiveDate> = audience.sends.days.iter().map(|day| day.date).collect();
    let pushed: Vec<Option<String>> = (0..dates.len())
        .map(|day| explain::pushed_detail(&day_words, &dates, day))
        .collect();
    let window_full = explain::window_full_detail(&day_words);
    // The window closed during the campaign's last pause: the pause is why, not downtime.
    let paused = state
        .last_pause
        .filter(|(from, to)| *from < reach_out.window.end && reach_out.window.end <= *to);
    let (missed_reason, closed) = match paused {
        Some((from, to)) => (
            NotSentReason::CampaignPaused,
            Some(format!(
                "the window closed at {} while the campaign was paused (from {} to {}); it was never planned",
                local(plan.campaign.time_zone, reach_out.window.end),
                local(plan.campaign.time_zone, from),
                local(plan.campaign.time_zone, to)
            )),
        ),
        None => (
            NotSentReason::WindowClosed,
            missed.then(|| {
                format!(
                    "the window closed at {} before the reach-out could be planned (the daemon was not running)",
                    local(plan.campaign.time_zone, reach_out.window.end)
                )
            }),
        ),
    };
    let mut missed_slots: Vec<u32> = Vec::new();
    if missed {
        missed_slots = audience
            .sends
            .placements
            .iter()
            .map(|placement| placement.slot)
            .chain(audience.sends.unplaced.iter().map(|(slot, _)| *slot))
            .chain(audience.sends.quiet_skipped.iter().copied())
            .collect();
        missed_slots.sort_unstable();
        missed_slots.dedup();
    }
    let mut used_per_day: BTreeMap<u32, u32> = BTreeMap::new();
    let paid: Vec<Option<bool>> = if missed {
        Vec::new()
    } else {
        audience
            .sends
            .placements
            .iter()
            .map(|placement| {
                let day = audience.sends.days.get(placement.day as usize)?;
                if !known(placement.slot) {
                    return None;
                }
                let used = used_per_day.entry(placement.day).or_default();
                *used += 1;
                Some(*used > day.free)
            })
            .collect()
    };
    let planned = paid.iter().filter(|paid| paid.is_some()).count() as u64;
    let counted = |slots: &mut dyn Iterator<Item = u32>| slots.filter(|slot| known(*slot)).count();
    let mut not_sent = counted(&mut audience.excluded.iter().map(|(slot, _)| *slot));
    if missed {
        not_sent += counted(&mut missed_slots.iter().copied());
    } else {
        not_sent += counted(&mut audience.sends.unplaced.iter().map(|(slot, _)| *slot));
        not_sent += counted(&mut audience.sends.quiet_skipped.iter().copied());
    }
    let after_fatigue: BTreeMap<u32, DateTime<Utc>> =
        audience.after_fatigue.iter().copied().collect();
    Ok(ReachOutPlanning {
        campaign: campaign.to_string(),
        reach_out: reach_out_id.to_string(),
        missed,
        phase: phase_of(state),
        follow_up: terms_of(plan, reach_out),
        pushed,
        window_full,
        missed_reason,
        closed,
        missed_slots,
        paid,
        after_fatigue,
        evaluated: millis(audience.evaluated_at),
        planned,
        not_sent: not_sent as u64,
        audience,
    })
}

impl ReachOutPlanning {
    /// The items the events are made from: each becomes one event, or none when its member is
    /// unknown to the book (the `ReachOutPlanned` counts leave those out too).
    pub fn len(&self) -> usize {
        let sends = &self.audience.sends;
        let mut len = self.audience.excluded.len() + 1;
        if self.missed {
            len += self.missed_slots.len();
        } else {
            len += sends.placements.len() + sends.unplaced.len() + sends.quiet_skipped.len();
        }
        len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The events of the items in `range` (see [`ReachOutPlanning::len`]), in order.
    pub fn events(
        &self,
        plan: &Plan,
        book: &CustomerBook,
        range: std::ops::Range<usize>,
    ) -> Vec<OutreachEvent> {
        let audience = &self.audience;
        let campaign = self.campaign.as_str();
        let reach_out_id = self.reach_out.as_str();
        let customers = book.customers();
        let id_of = |slot: u32| -> Option<&str> { customers.get(slot as usize).map(|c| c.id()) };
        let channel = plan.channel(&audience.channel);
        let kind = audience.channel_kind;
        let phase = self.phase;
        let evaluated = self.evaluated;
        let fatigue_words = |slot: u32| -> Option<String> {
            let customer = customers.get(slot as usize)?;
            explain::exclusion_detail(
                plan,
                channel?,
                book,
                None,
                customer,
                Exclusion::Fatigue,
                evaluated,
            )
        };
        let not_sent =
            |slot: u32, reason: NotSentReason, detail: Option<String>| -> Option<OutreachEvent> {
                let customer = id_of(slot)?;
                Some(OutreachEvent::NotSent(NotSent {
                    key: send_key(campaign, reach_out_id, customer, 1),
                    campaign: campaign.to_string(),
                    reach_out: reach_out_id.to_string(),
                    customer: customer.to_string(),
                    attempt: 1,
                    channel: audience.channel.clone(),
                    reason,
                    detail,
                    phase,
                }))
            };
        // Compiled once per range, and only when a member sits in a segment the channel
        // excludes (its words name the segments).
        let segments = audience
            .excluded
            .iter()
            .any(|(_, exclusion)| *exclusion == Exclusion::ExcludedSegment)
            .then(|| Segments::compile(plan, book));
        let excluded_detail = |slot: u32, exclusion: Exclusion| -> Option<String> {
            let customer = customers.get(slot as usize)?;
            explain::exclusion_detail(
                plan,
                channel?,
                book,
                segments.as_ref(),
                customer,
                exclusion,
                evaluated,
            )
        };
        let unplaced_detail = |slot: u32, reason: Unplaced| -> Option<String> {
            match reason {
                Unplaced::WindowFull | Unplaced::QuotaUsed => Some(self.window_full.clone()),
                Unplaced::NoAccount => {
                    let owner = customers
                        .get(slot as usize)
                        .and_then(|customer| customer.owner)
                        .map(|owner| book.symbols.name(owner).to_string());
                    Some(match owner {
                        Some(owner) => format!(
                            "the reach-out sends from the customer's owner, and {owner} has no account on {}",
                            audience.channel
                        ),
                        None => "the reach-out sends from the customer's owner, and the customer has none".to_string(),
                    })
                }
                Unplaced::QuietUntilWindowEnd => {
                    excluded_detail(slot, Exclusion::QuietHours).map(|quiet| {
                        format!(
                            "{quiet}: held past the window's end at {}",
                            local(plan.campaign.time_zone, audience.window.end)
                        )
                    })
                }
            }
        };
        let placed = |index: usize| -> Option<OutreachEvent> {
            let placement = audience.sends.placements.get(index)?;
            let paid = (*self.paid.get(index)?)?;
            let customer = id_of(placement.slot)?;
            let day = audience.sends.days.get(placement.day as usize)?;
            Some(OutreachEvent::SendPlanned(SendPlanned {
                key: send_key(campaign, reach_out_id, customer, 1),
                campaign: campaign.to_string(),
                reach_out: reach_out_id.to_string(),
                customer: customer.to_string(),
                attempt: 1,
                channel: audience.channel.clone(),
                kind,
                account: audience
                    .accounts
                    .get(placement.account as usize)
                    .cloned()
                    .unwrap_or_else(|| audience.channel.clone()),
                day: day.date,
                paid,
                at: placement.at,
                phase,
                window_end: audience.window.end,
                follow_up: self.follow_up.clone(),
                detail: match self.after_fatigue.get(&placement.slot) {
                    Some(_) => fatigue_words(placement.slot).map(|fatigue| {
                        format!(
                            "{} ({fatigue}): planned for {}, the first instant after it with quota left",
                            explain::AFTER_FATIGUE,
                            local(plan.campaign.time_zone, placement.at)
                        )
                    }),
                    None => self.pushed.get(placement.day as usize).cloned().flatten(),
                },
            }))
        };
        let item = |mut index: usize| -> Option<OutreachEvent> {
            if self.missed {
                if let Some(slot) = self.missed_slots.get(index) {
                    return not_sent(*slot, self.missed_reason, self.closed.clone());
                }
                index -= self.missed_slots.len();
            } else {
                if index < audience.sends.placements.len() {
                    return placed(index);
                }
                index -= audience.sends.placements.len();
            }
            if let Some((slot, exclusion)) = audience.excluded.get(index) {
                return not_sent(
                    *slot,
                    (*exclusion).into(),
                    excluded_detail(*slot, *exclusion),
                );
            }
            index -= audience.excluded.len();
            if !self.missed {
                if let Some((slot, reason)) = audience.sends.unplaced.get(index) {
                    return not_sent(*slot, (*reason).into(), unplaced_detail(*slot, *reason));
                }
                index -= audience.sends.unplaced.len();
                if let Some(slot) = audience.sends.quiet_skipped.get(index) {
                    return not_sent(
                        *slot,
                        NotSentReason::QuietHours,
                        excluded_detail(*slot, Exclusion::QuietHours),
                    );
                }
                index -= audience.sends.quiet_skipped.len();
            }
            (index == 0).then(|| {
                OutreachEvent::ReachOutPlanned(ReachOutPlanned {
                    campaign: campaign.to_string(),
                    reach_out: reach_out_id.to_string(),
                    evaluated_at: audience.evaluated_at,
                    segment_size: audience.segment_size,
                    planned: self.planned,
                    not_sent: self.not_sent,
                })
            })
        };
        range
            .filter(|index| *index < self.len())
            .filter_map(item)
            .collect()
    }
}

/// The channel's rules for a customer check, with the reach-out's key when `already` applies.
fn rules_for(
    plan: &Plan,
    segments: &Segments,
    book: &CustomerBook,
    channel_id: &str,
    reach_out: Option<&str>,
) -> Option<Rules> {
    let channel = plan.channel(channel_id)?;
    Some(Rules {
        kind: channel.kind,
        fatigue_ms: channel.fatigue.seconds().saturating_mul(1000),
        fatigue_scope: channel.fatigue_scope,
        excluded_segments: channel
            .exclude_segments
            .iter()
            .filter_map(|id| segments.index_of(id))
            .collect(),
        reach_out: reach_out.and_then(|id| book.symbols.get(&reach_out_key(&plan.campaign.id, id))),
    })
}

/// Why a customer's follow-ups stop, if a signal came at or after `since` (milliseconds).
/// Unsubscribes are checked by the caller, who knows the channel.
fn stopped_by(
    book: &CustomerBook,
    customer: &str,
    terms: &FollowUpTerms,
    since: i64,
) -> Option<StopReason> {
    let customer = book.get(customer)?;
    let after = |activity: Activity| {
        let last = customer.last(activity);
        last != NEVER && last >= since
    };
    for stop in &terms.stop_on {
        let reason = match stop {
            StopOn::Reply => after(Activity::Replied).then_some(StopReason::Replied),
            StopOn::Order => after(Activity::Ordered).then_some(StopReason::Ordered),
            StopOn::Open => after(Activity::Opened).then_some(StopReason::Opened),
            StopOn::Unsubscribe => None,
        };
        if reason.is_some() {
            return reason;
        }
    }
    // The trigger itself: what the follow-up waits for has come.
    match terms.if_no {
        FollowUpTrigger::Reply => after(Activity::Replied).then_some(StopReason::Replied),
        FollowUpTrigger::Order => after(Activity::Ordered).then_some(StopReason::Ordered),
        FollowUpTrigger::Open => after(Activity::Opened).then_some(StopReason::Opened),
    }
}

/// The words recorded with a `phase_skipped`: which step, cut short when, by whom.
fn skipped_detail(plan: &Plan, skipped: &crate::campaign::SkippedStep) -> String {
    format!(
        "{} was skipped: {} advanced the campaign at {}, before its planned end {}",
        skipped.step,
        skipped.by,
        local(plan.campaign.time_zone, skipped.at),
        local(plan.campaign.time_zone, skipped.end)
    )
}

/// A reach-out's decision (from [`plan_reach_out`]) when its window lay in a phase or stage a
/// person skipped with `advance`: its exclusions stand, and every send it would have planned
/// is `phase_skipped` instead, so nothing of it goes out in the next phase with that phase's
/// template, and nothing of the quota is taken. Other reach-outs' decisions pass unchanged.
pub fn skip_if_advanced_past(
    plan: &Plan,
    state: &CampaignState,
    reach_out_id: &str,
    events: Vec<OutreachEvent>,
) -> Vec<OutreachEvent> {
    let skipped = plan
        .reach_outs
        .iter()
        .find(|reach_out| reach_out.id == reach_out_id)
        .and_then(|reach_out| state.skipped_window(reach_out.window.start, reach_out.window.end));
    let Some(skipped) = skipped else {
        return events;
    };
    let detail = skipped_detail(plan, skipped);
    events
        .into_iter()
        .map(|event| match event {
            OutreachEvent::SendPlanned(planned) => OutreachEvent::NotSent(NotSent {
                key: planned.key,
                campaign: planned.campaign,
                reach_out: planned.reach_out,
                customer: planned.customer,
                attempt: planned.attempt,
                channel: planned.channel,
                reason: NotSentReason::PhaseSkipped,
                detail: Some(detail.clone()),
                phase: planned.phase,
            }),
            OutreachEvent::ReachOutPlanned(mut done) => {
                done.not_sent = done.not_sent.saturating_add(done.planned);
                done.planned = 0;
                OutreachEvent::ReachOutPlanned(done)
            }
            other => other,
        })
        .collect()
}

/// Follow-ups placed together: (book slot, the send they follow).
type Group<'a> = Vec<(u32, &'a super::state::Send)>;

/// Decides the follow-ups due at `now`: stop (a signal came, the attempt limit, the campaign
/// ended), not sent (the customer can no longer be reached), or the next attempt planned within
/// quotas, after the fatigue window when the last message is too recent.
pub fn follow_ups_due(
    plan: &Plan,
    state: &CampaignState,
    book: &CustomerBook,
    outreach: &Outreach,
    now: DateTime<Utc>,
) -> Vec<OutreachEvent> {
    let campaign = plan.campaign.id.as_str();
    let terminal = state.is_terminal();
    if !terminal && !running(state) {
        return Vec::new();
    }
    let segments = Segments::compile(plan, book);
    let span_end = plan.span().end;
    let phase = phase_of(state);
    let mut events = Vec::new();
    // Once the campaign has ended (or its last window closed), every open thread stops now,
    // in one batch: waiting for each to come due would take a step per thread.
    let ended = terminal || now >= span_end;
    // Planned follow-ups grouped by channel and first allowed instant, placed together.
    let mut groups: BTreeMap<(String, DateTime<Utc>), Group<'_>> = BTreeMap::new();
    for due in outreach.follow_ups() {
        if due.at > now && !ended {
            break;
        }
        let Some(send) = outreach.send(&due.after_key) else {
            continue;
        };
        if send.planned.campaign != campaign {
            continue;
        }
        let Some(terms) = send.planned.follow_up.as_ref() else {
            continue;
        };
        let stop = |reason: StopReason| {
            OutreachEvent::FollowUpStopped(FollowUpStopped {
                after_key: send.planned.key.clone(),
                campaign: campaign.to_string(),
                reach_out: send.planned.reach_out.clone(),
                customer: send.planned.customer.clone(),
                rule: terms.rule.clone(),
                reason,
            })
        };
        if ended {
            events.push(stop(StopReason::CampaignEnded));
            continue;
        }
        let first_key = send_key(campaign, &send.planned.reach_out, &send.planned.customer, 1);
        let since = match outreach.send(&first_key).map(|first| first.status) {
            Some(SendStatus::Sent { at }) => millis(at),
            _ => match send.status {
                SendStatus::Sent { at } => millis(at),
                _ => millis(send.planned.at),
            },
        };
        let channel = plan.channel(&terms.channel);
        let kind = channel.map_or(send.planned.kind, |c| c.kind);
        let Some(customer) = book.get(&send.planned.customer) else {
            continue;
        };
        if customer.unsubscribed_from(kind) {
            events.push(stop(StopReason::Unsubscribed));
            continue;
        }
        if let Some(reason) = stopped_by(book, &send.planned.customer, terms, since) {
            events.push(stop(reason));
            continue;
        }
        if send.planned.attempt > terms.max_attempts {
            events.push(stop(StopReason::AttemptLimit));
            continue;
        }
        let attempt = send.planned.attempt + 1;
        let key = send_key(
            campaign,
            &send.planned.reach_out,
            &send.planned.customer,
            attempt,
        );
        if outreach.decided(&key) {
            continue;
        }
        let not_sent = |reason: NotSentReason| {
            OutreachEvent::NotSent(NotSent {
                key: key.clone(),
                campaign: campaign.to_string(),
                reach_out: send.planned.reach_out.clone(),
                customer: send.planned.customer.clone(),
                attempt,
                channel: terms.channel.clone(),
                reason,
                detail: None,
                phase,
            })
        };
        let (Some(channel), Some(slot)) = (channel, book.slot(&send.planned.customer)) else {
            events.push(not_sent(NotSentReason::NoAddress));
            continue;
        };
        let Some(rules) = rules_for(plan, &segments, book, &channel.id, None) else {
            continue;
        };
        let instant = millis(now);
        match exclusion(book, &segments, &rules, slot, customer, instant) {
            None => groups
                .entry((channel.id.clone(), now))
                .or_default()
                .push((slot, send)),
            Some(crate::customer::eligibility::Exclusion::Fatigue) => {
                let last = match rules.fatigue_scope {
                    FatigueScope::AnyChannel => customer.last_reached_any(),
                    FatigueScope::ThisChannel => customer.last_reached[channel_index(rules.kind)],
                };
                let until =
                    DateTime::<Utc>::from_timestamp_millis(last.saturating_add(rules.fatigue_ms))
                        .unwrap_or(now)
                        .max(now);
                groups
                    .entry((channel.id.clone(), until))
                    .or_default()
                    .push((slot, send));
            }
            Some(other) => {
                let mut event = not_sent(other.into());
                if let OutreachEvent::NotSent(not_sent) = &mut event {
                    not_sent.detail = explain::exclusion_detail(
                        plan,
                        channel,
                        book,
                        Some(&segments),
                        customer,
                        other,
                        instant,
                    );
                }
                events.push(event);
            }
        }
    }
    let mut ledger: Ledger = outreach.ledger.clone();
    for ((channel_id, from), members) in groups {
        let Some(channel) = plan.channel(&channel_id) else {
            continue;
        };
        let limits = Limits::of(channel);
        let window = Window {
            start: from,
            end: span_end,
        };
        let accounts = channel.accounts.clone();
        let request = PlanRequest {
            channel: &channel.id,
            limits,
            zone: plan.campaign.time_zone,
            window,
            from,
            quiet: channel.quiet_hours.as_ref(),
            sender: Sender::Accounts,
            accounts: &accounts,
        };
        // Each follow-up is its own candidate (one customer may have two threads due
        // together, from two reach-outs): placements name the member's index.
        let candidates = members
            .iter()
            .enumerate()
            .map(|(index, (slot, _))| Candidate {
                slot: index as u32,
                zone: book
                    .customers()
                    .get(*slot as usize)
                    .and_then(|customer| customer.time_zone),
                owner: None,
                not_before: None,
            });
        let sends = if from >= span_end {
            None
        } else {
            Some(plan_sends(&request, &ledger, candidates))
        };
        let by_slot: BTreeMap<u32, &super::state::Send> = members
            .iter()
            .enumerate()
            .map(|(index, (_, send))| (index as u32, *send))
            .collect();
        let mut used_per_day: BTreeMap<u32, u32> = BTreeMap::new();
        let mut handled = std::collections::BTreeSet::new();
        if let Some(sends) = &sends {
            for placement in &sends.placements {
                let (Some(previous), Some(day)) = (
                    by_slot.get(&placement.slot),
                    sends.days.get(placement.day as usize),
                ) else {
                    continue;
                };
                handled.insert(placement.slot);
                let used = used_per_day.entry(placement.day).or_default();
                *used += 1;
                let paid = *used > day.free;
                let account = accounts
                    .get(placement.account as usize)
                    .cloned()
                    .unwrap_or_else(|| channel.id.clone());
                ledger.record(&channel.id, day.date, &account, paid);
                let attempt = previous.planned.attempt + 1;
                events.push(OutreachEvent::SendPlanned(SendPlanned {
                    key: send_key(
                        campaign,
                        &previous.planned.reach_out,
                        &previous.planned.customer,
                        attempt,
                    ),
                    campaign: campaign.to_string(),
                    reach_out: previous.planned.reach_out.clone(),
                    customer: previous.planned.customer.clone(),
                    attempt,
                    channel: channel.id.clone(),
                    kind: channel.kind,
                    account,
                    day: day.date,
                    paid,
                    at: placement.at,
                    phase,
                    window_end: span_end,
                    follow_up: previous.planned.follow_up.clone(),
                    detail: None,
                }));
            }
            for (slot, reason) in &sends.unplaced {
                handled.insert(*slot);
                if let Some(previous) = by_slot.get(slot) {
                    events.push(follow_up_not_sent(
                        previous,
                        &channel.id,
                        (*reason).into(),
                        phase,
                    ));
                }
            }
            for slot in &sends.quiet_skipped {
                handled.insert(*slot);
                if let Some(previous) = by_slot.get(slot) {
                    events.push(follow_up_not_sent(
                        previous,
                        &channel.id,
                        NotSentReason::QuietHours,
                        phase,
                    ));
                }
            }
        }
        for (slot, previous) in &by_slot {
            if !handled.contains(slot) {
                events.push(follow_up_not_sent(
                    previous,
                    &channel.id,
                    NotSentReason::Fatigue,
                    phase,
                ));
            }
        }
    }
    events
}

fn follow_up_not_sent(
    previous: &super::state::Send,
    channel: &str,
    reason: NotSentReason,
    phase: Option<PhaseKind>,
) -> OutreachEvent {
    let attempt = previous.planned.attempt + 1;
    OutreachEvent::NotSent(NotSent {
        key: send_key(
            &previous.planned.campaign,
            &previous.planned.reach_out,
            &previous.planned.customer,
            attempt,
        ),
        campaign: previous.planned.campaign.clone(),
        reach_out: previous.planned.reach_out.clone(),
        customer: previous.planned.customer.clone(),
        attempt,
        channel: channel.to_string(),
        reason,
        detail: None,
        phase,
    })
}

/// What the dispatcher does now: give up these sends (with their reasons) and send these
/// messages, in this order.
#[derive(Debug, Default)]
pub struct Dispatch {
    /// Sends held past their quota day (or into quiet hours) and moved: recorded first.
    pub moved: Vec<OutreachEvent>,
    pub not_sent: Vec<OutreachEvent>,
    pub messages: Vec<Message>,
    /// For each message, the phase and stage it went in (recorded with its `MessageSent`).
    pub phases: Vec<(Option<PhaseKind>, Option<String>)>,
}

/// Whether a pending send is held (paused campaign, paused channel), and so due at its window's
/// end rather than its instant.
/// When a planned send's window closes, as of now: its recorded end moved by the campaign's
/// shifting pauses; `None` while the campaign is paused under `on_resume = "shift_windows"`,
/// since the window will move by however long the pause lasts.
fn window_end(plan: &Plan, state: &CampaignState, planned: &SendPlanned) -> Option<DateTime<Utc>> {
    if matches!(state.status, Status::Paused { .. })
        && plan.campaign.on_resume == ResumePolicy::ShiftWindows
    {
        return None;
    }
    Some(shift_instant(planned.window_end, &state.shifts))
}

fn held(state: &CampaignState, outreach: &Outreach, campaign: &str, channel: &str) -> bool {
    matches!(state.status, Status::Paused { .. }) || outreach.channel_paused(campaign, channel)
}

/// Up to `limit` pending sends of the campaign due at `now`, each decided: sent (rendered) or
/// not sent with its reason. Held sends stay pending until resumed, or until their window closes.
pub fn dispatch(
    plan: &Plan,
    state: &CampaignState,
    book: &CustomerBook,
    outreach: &Outreach,
    renderer: &Renderer<'_>,
    now: DateTime<Utc>,
    limit: usize,
) -> Dispatch {
    let campaign = plan.campaign.id.as_str();
    let mut out = Dispatch::default();
    let segments = Segments::compile(plan, book);
    let step = state.current_step().cloned();
    let instant = millis(now);
    let mut rules_cache: BTreeMap<(String, Option<String>), Option<Rules>> = BTreeMap::new();
    // Pending sends come in the order of their instants: once one is not due, none after it
    // is, unless something holds sends (then their windows' ends are looked at too).
    let nothing_held = !matches!(state.status, Status::Paused { .. })
        && !outreach.any_channel_paused(campaign)
        && !state.is_terminal();
    let zone = plan.campaign.time_zone;
    let today = now.with_timezone(&zone).date_naive();
    // First messages of a reach-out whose phase (or stage) a person cut short with `advance`
    // are given up at once, not each when it comes due: the outbox says at the advance that
    // they will not go. The sends already due are the loop's below.
    let skipped_reach_outs: Vec<(&str, &crate::campaign::SkippedStep)> = plan
        .reach_outs
        .iter()
        .filter_map(|reach_out| {
            state
                .skipped_window(reach_out.window.start, reach_out.window.end)
                .map(|skipped| (reach_out.id.as_str(), skipped))
        })
        .collect();
    if !skipped_reach_outs.is_empty() && !state.is_terminal() {
        for send in outreach.pending() {
            if out.not_sent.len() >= limit {
                break;
            }
            let planned = &send.planned;
            if planned.campaign != campaign || planned.attempt != 1 || planned.at <= now {
                continue;
            }
            let Some((_, skipped)) = skipped_reach_outs
                .iter()
                .find(|(id, _)| *id == planned.reach_out)
            else {
                continue;
            };
            out.not_sent.push(OutreachEvent::NotSent(NotSent {
                key: planned.key.clone(),
                campaign: campaign.to_string(),
                reach_out: planned.reach_out.clone(),
                customer: planned.customer.clone(),
                attempt: planned.attempt,
                channel: planned.channel.clone(),
                reason: NotSentReason::PhaseSkipped,
                detail: Some(skipped_detail(plan, skipped)),
                phase: planned.phase,
            }));
        }
    }
    // Sends due that may not go now: held past the day whose quota they reserved, or late into
    // the channel's quiet hours. They are moved (or given up) below, with the quota they need.
    let mut late: Vec<Late<'_>> = Vec::new();
    for send in outreach.pending() {
        if out.not_sent.len() + out.messages.len() + late.len() >= limit {
            break;
        }
        let planned = &send.planned;
        if nothing_held && planned.at > now {
            break;
        }
        if planned.campaign != campaign {
            continue;
        }
        let is_held = held(state, outreach, campaign, &planned.channel);
        // Not due yet; held sends are looked at for their window's end, and a campaign that
        // ended gives up everything at once.
        if planned.at > now && !is_held && !state.is_terminal() {
            continue;
        }
        let give_up = |reason: NotSentReason| {
            OutreachEvent::NotSent(NotSent {
                key: planned.key.clone(),
                campaign: campaign.to_string(),
                reach_out: planned.reach_out.clone(),
                customer: planned.customer.clone(),
                attempt: planned.attempt,
                channel: planned.channel.clone(),
                reason,
                detail: None,
                phase: planned.phase,
            })
        };
        if state.is_terminal() {
            out.not_sent.push(give_up(NotSentReason::CampaignEnded));
            continue;
        }
        // A first message of a reach-out whose phase a person skipped with `advance` does not
        // go out in the next phase with its template.
        if planned.attempt == 1 {
            let skipped = plan
                .reach_outs
                .iter()
                .find(|reach_out| reach_out.id == planned.reach_out)
                .and_then(|reach_out| {
                    state.skipped_window(reach_out.window.start, reach_out.window.end)
                });
            if let Some(skipped) = skipped {
                if let OutreachEvent::NotSent(mut not_sent) = give_up(NotSentReason::PhaseSkipped) {
                    not_sent.detail = Some(skipped_detail(plan, skipped));
                    out.not_sent.push(OutreachEvent::NotSent(not_sent));
                }
                continue;
            }
        }
        if window_end(plan, state, planned).is_some_and(|end| now >= end) {
            let reason = if matches!(state.status, Status::Paused { .. }) {
                NotSentReason::CampaignPaused
            } else if let Some(guard) = outreach
                .guard(campaign, &planned.channel)
                .filter(|guard| guard.paused)
            {
                if guard.failure.is_some() {
                    NotSentReason::ChannelDown
                } else {
                    NotSentReason::BounceGuard
                }
            } else if send.deferred > 0 {
                NotSentReason::Undelivered
            } else {
                NotSentReason::WindowClosed
            };
            out.not_sent.push(give_up(reason));
            continue;
        }
        if is_held || planned.at > now || !running(state) {
            continue;
        }
        let (Some(slot), Some(customer)) =
            (book.slot(&planned.customer), book.get(&planned.customer))
        else {
            out.not_sent.push(give_up(NotSentReason::NoAddress));
            continue;
        };
        let reach_out_check = (planned.attempt == 1).then(|| planned.reach_out.clone());
        let rules = rules_cache
            .entry((planned.channel.clone(), reach_out_check.clone()))
            .or_insert_with(|| {
                rules_for(
                    plan,
                    &segments,
                    book,
                    &planned.channel,
                    reach_out_check.as_deref(),
                )
            });
        if let Some(rules) = rules {
            if let Some(excluded) = exclusion(book, &segments, rules, slot, customer, instant) {
                // Reached since it was planned: fatigue is decided for the instant it goes, so
                // it waits for the fatigue to end when that is inside its window.
                let ends = DateTime::<Utc>::from_timestamp_millis(fatigue_ends(customer, rules));
                let window = window_end(plan, state, planned);
                if let (Exclusion::Fatigue, Some(ends), Some(window)) = (excluded, ends, window) {
                    if ends < window {
                        let why = plan.channel(&planned.channel).and_then(|channel| {
                            explain::exclusion_detail(
                                plan,
                                channel,
                                book,
                                Some(&segments),
                                customer,
                                excluded,
                                instant,
                            )
                        });
                        late.push(Late {
                            send,
                            not_before: Some(ends),
                            why: Some(format!(
                                "reached again since it was planned ({})",
                                why.unwrap_or_default()
                            )),
                        });
                        continue;
                    }
                }
                // Something changed since it was planned (an unsubscribe, a bounce...): the
                // numbers as they stand now are recorded with the give-up.
                let mut event = give_up(excluded.into());
                if let OutreachEvent::NotSent(not_sent) = &mut event {
                    not_sent.detail = plan.channel(&planned.channel).and_then(|channel| {
                        explain::exclusion_detail(
                            plan,
                            channel,
                            book,
                            Some(&segments),
                            customer,
                            excluded,
                            instant,
                        )
                    });
                }
                out.not_sent.push(event);
                continue;
            }
        } else if !has_address(customer, planned.kind) {
            out.not_sent.push(give_up(NotSentReason::NoAddress));
            continue;
        }
        if planned.attempt > 1 {
            if let Some(terms) = &planned.follow_up {
                let first = send_key(campaign, &planned.reach_out, &planned.customer, 1);
                let since = match outreach.send(&first).map(|s| s.status) {
                    Some(SendStatus::Sent { at }) => millis(at),
                    _ => millis(planned.at),
                };
                if let Some(reason) = stopped_by(book, &planned.customer, terms, since) {
                    let reason = match reason {
                        StopReason::Replied => NotSentReason::Replied,
                        StopReason::Ordered => NotSentReason::Ordered,
                        StopReason::Opened => NotSentReason::Opened,
                        _ => NotSentReason::Unsubscribed,
                    };
                    out.not_sent.push(give_up(reason));
                    continue;
                }
            }
        }
        if planned.day < today || quiet_now(plan, planned, customer.time_zone, now) {
            late.push(Late {
                send,
                not_before: None,
                why: None,
            });
            continue;
        }
        match renderer.render(send, customer, &book.symbols, step.as_ref(), now) {
            Ok(message) => {
                out.messages.push(message);
                out.phases.push((
                    step.as_ref().map(|s| s.phase),
                    step.as_ref().and_then(|s| s.stage.clone()),
                ));
            }
            Err(detail) => {
                if let OutreachEvent::NotSent(mut not_sent) = give_up(NotSentReason::TemplateFailed)
                {
                    not_sent.detail = Some(detail);
                    out.not_sent.push(OutreachEvent::NotSent(not_sent));
                }
            }
        }
    }
    if !late.is_empty() {
        let (moved, not_sent) = move_late(plan, state, book, outreach, &late, now);
        out.moved = moved;
        out.not_sent.extend(not_sent);
    }
    out
}

/// Whether `now` falls in the quiet hours of the send's channel (on the campaign's wall clock,
/// or on the customer's when known and the policy holds): a send due earlier that goes late
/// must not go in them.
fn quiet_now(
    plan: &Plan,
    planned: &SendPlanned,
    customer_zone: Option<chrono_tz::Tz>,
    now: DateTime<Utc>,
) -> bool {
    let Some(quiet) = plan
        .channel(&planned.channel)
        .and_then(|channel| channel.quiet_hours.as_ref())
    else {
        return false;
    };
    if planned.at >= now {
        return false;
    }
    is_quiet(quiet, plan.campaign.time_zone, now)
        || customer_zone
            .is_some_and(|zone| zone != plan.campaign.time_zone && is_quiet(quiet, zone, now))
}

/// What held a send due at `due` until `now`, in words.
fn held_by(
    plan: &Plan,
    state: &CampaignState,
    outreach: &Outreach,
    planned: &SendPlanned,
    now: DateTime<Utc>,
) -> String {
    let zone = plan.campaign.time_zone;
    let due = planned.at;
    if let Some((from, to)) = state.last_pause.filter(|(_, to)| *to > due && *to <= now) {
        return format!(
            "held by the campaign's pause from {} to {}",
            local(zone, from),
            local(zone, to)
        );
    }
    if let Some(resumed) = outreach
        .guard(&planned.campaign, &planned.channel)
        .and_then(|guard| guard.resumed_at)
        .filter(|resumed| *resumed > due && *resumed <= now)
    {
        return format!(
            "held by the bounce guard's pause of {} until it was resumed at {}",
            planned.channel,
            local(zone, resumed)
        );
    }
    format!(
        "not sent when due at {} (the dispatcher was not running), {} now",
        local(zone, due),
        local(zone, now)
    )
}

/// A send due that may not go now, and what it waits for.
struct Late<'a> {
    send: &'a super::state::Send,
    /// The end of the customer's fatigue, when a reach since planning is why.
    not_before: Option<DateTime<Utc>>,
    /// Why, when it is not a hold (pause, guard, downtime) or the quiet hours.
    why: Option<String>,
}

/// Places sends held past their day again, from `now` to their window's end, within the quota
/// of the days they would now go (the day of sending is the one whose cap counts); what no day
/// of the window takes any more is given up with the reason.
fn move_late(
    plan: &Plan,
    state: &CampaignState,
    book: &CustomerBook,
    outreach: &Outreach,
    late: &[Late<'_>],
    now: DateTime<Utc>,
) -> (Vec<OutreachEvent>, Vec<OutreachEvent>) {
    let zone = plan.campaign.time_zone;
    let mut ledger = outreach.ledger.clone();
    for Late { send, .. } in late {
        ledger.release(
            &send.planned.channel,
            send.planned.day,
            &send.planned.account,
        );
    }
    // Moved together: sends of one channel, account and window end.
    let mut groups: BTreeMap<(String, String, DateTime<Utc>), Vec<&Late<'_>>> = BTreeMap::new();
    for entry in late {
        let planned = &entry.send.planned;
        let end = window_end(plan, state, planned).unwrap_or(planned.window_end);
        groups
            .entry((planned.channel.clone(), planned.account.clone(), end))
            .or_default()
            .push(entry);
    }
    let held = |entry: &Late<'_>| -> String {
        entry
            .why
            .clone()
            .unwrap_or_else(|| held_by(plan, state, outreach, &entry.send.planned, now))
    };
    // What a send that finds no room is given up as: fatigue when a reach since planning
    // moved it, no quota after a hold otherwise.
    let full_reason = |entry: &Late<'_>| {
        if entry.not_before.is_some() {
            NotSentReason::Fatigue
        } else {
            NotSentReason::NoQuotaAfterHold
        }
    };
    let mut moved = Vec::new();
    let mut not_sent = Vec::new();
    for ((channel_id, account, end), entries) in groups {
        let give_up = |send: &super::state::Send, reason: NotSentReason, detail: String| {
            OutreachEvent::NotSent(NotSent {
                key: send.planned.key.clone(),
                campaign: send.planned.campaign.clone(),
                reach_out: send.planned.reach_out.clone(),
                customer: send.planned.customer.clone(),
                attempt: send.planned.attempt,
                channel: send.planned.channel.clone(),
                reason,
                detail: Some(detail),
                phase: send.planned.phase,
            })
        };
        let Some(channel) = plan.channel(&channel_id) else {
            // The channel left the plan: nothing to move it by.
            for entry in entries {
                not_sent.push(give_up(
                    entry.send,
                    full_reason(entry),
                    format!(
                        "{}; the plan no longer has channel {channel_id}",
                        held(entry)
                    ),
                ));
            }
            continue;
        };
        let accounts = [account.clone()];
        let request = PlanRequest {
            channel: &channel.id,
            limits: Limits::of(channel),
            zone,
            window: Window { start: now, end },
            from: now,
            quiet: channel.quiet_hours.as_ref(),
            sender: Sender::Accounts,
            accounts: &accounts,
        };
        let slots: Vec<Option<u32>> = entries
            .iter()
            .map(|entry| book.slot(&entry.send.planned.customer))
            .collect();
        let candidates = slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| slot.map(|slot| (index, slot)))
            .map(|(index, slot)| Candidate {
                slot: index as u32,
                zone: book
                    .customers()
                    .get(slot as usize)
                    .and_then(|customer| customer.time_zone),
                owner: None,
                not_before: entries[index].not_before,
            });
        let plan_of_days = if now >= end {
            None
        } else {
            Some(plan_sends(&request, &ledger, candidates))
        };
        let day_words = plan_of_days
            .as_ref()
            .map(|days| explain::quota_days(channel, &ledger, &days.days))
            .unwrap_or_default();
        let mut handled = vec![false; entries.len()];
        if let Some(days) = &plan_of_days {
            let dates: Vec<NaiveDate> = days.days.iter().map(|day| day.date).collect();
            let mut used_per_day: BTreeMap<u32, u32> = BTreeMap::new();
            for placement in &days.placements {
                let (Some(entry), Some(day)) = (
                    entries.get(placement.slot as usize),
                    days.days.get(placement.day as usize),
                ) else {
                    continue;
                };
                let send = entry.send;
                handled[placement.slot as usize] = true;
                let used = used_per_day.entry(placement.day).or_default();
                *used += 1;
                let paid = *used > day.free;
                ledger.record(&channel.id, day.date, &account, paid);
                let held = held(entry);
                let later = match entry.not_before {
                    Some(_) => format!("moved to {}", local(zone, placement.at)),
                    None => explain::pushed_detail(&day_words, &dates, placement.day as usize)
                        .unwrap_or_else(|| format!("moved to {}", day.date)),
                };
                moved.push(OutreachEvent::SendMoved(SendMoved {
                    key: send.planned.key.clone(),
                    campaign: send.planned.campaign.clone(),
                    reach_out: send.planned.reach_out.clone(),
                    customer: send.planned.customer.clone(),
                    channel: channel.id.clone(),
                    from_day: send.planned.day,
                    account: account.clone(),
                    day: day.date,
                    paid,
                    at: placement.at,
                    detail: Some(format!(
                        "planned on the quota of {} for {}, {held}; {later}",
                        send.planned.day,
                        local(zone, send.planned.at)
                    )),
                }));
            }
            for (index, reason) in &days.unplaced {
                let Some(entry) = entries.get(*index as usize) else {
                    continue;
                };
                let send = entry.send;
                handled[*index as usize] = true;
                let held = held(entry);
                let (reason, why) = match reason {
                    Unplaced::QuietUntilWindowEnd => (
                        NotSentReason::QuietHours,
                        format!(
                            "the channel's quiet hours hold it past the window's end at {}",
                            local(zone, end)
                        ),
                    ),
                    _ => (full_reason(entry), explain::window_full_detail(&day_words)),
                };
                not_sent.push(give_up(send, reason, format!("{held}; {why}")));
            }
            for index in &days.quiet_skipped {
                let Some(entry) = entries.get(*index as usize) else {
                    continue;
                };
                handled[*index as usize] = true;
                let held = held(entry);
                not_sent.push(give_up(
                    entry.send,
                    NotSentReason::QuietHours,
                    format!("{held}; now in the customer's quiet hours, with policy skip"),
                ));
            }
        }
        for (entry, handled) in entries.iter().zip(handled) {
            if !handled {
                not_sent.push(give_up(
                    entry.send,
                    full_reason(entry),
                    format!("{}; no day of the window was left", held(entry)),
                ));
            }
        }
    }
    (moved, not_sent)
}

/// The next instant the outbox has something to decide for this campaign after `now`: a
/// reach-out's window opening, a send's instant (its window's end when held), a follow-up.
pub fn next_due(
    plan: &Plan,
    state: &CampaignState,
    outreach: &Outreach,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let campaign = plan.campaign.id.as_str();
    let mut best: Option<DateTime<Utc>> = None;
    let mut consider = |instant: DateTime<Utc>| {
        best = Some(best.map_or(instant, |best| best.min(instant)));
    };
    if state.is_terminal() {
        // Left-overs are given up at once.
        if outreach
            .pending()
            .any(|send| send.planned.campaign == campaign)
            || outreach
                .follow_ups()
                .any(|due| due.after_key.starts_with(&format!("{campaign}/")))
        {
            consider(now);
        }
        return best;
    }
    if running(state) {
        for reach_out in &plan.reach_outs {
            if outreach
                .reach_out_planned(campaign, &reach_out.id)
                .is_none()
                && reach_out.window.end > now
            {
                consider(reach_out.window.start.max(now));
            }
        }
    }
    for send in outreach.pending() {
        if send.planned.campaign != campaign {
            continue;
        }
        if held(state, outreach, campaign, &send.planned.channel) || !running(state) {
            if let Some(end) = window_end(plan, state, &send.planned) {
                consider(end);
            }
        } else {
            // Pending sends come in the order of their instants, and every later one is due
            // at its instant or its window's end, both no earlier than this one.
            consider(send.planned.at);
            break;
        }
    }
    if running(state) {
        let prefix = format!("{campaign}/");
        if let Some(due) = outreach
            .follow_ups()
            .find(|due| due.after_key.starts_with(&prefix))
        {
            consider(due.at);
        }
    }
    best
}

/// The bounce guard: a channel whose bounces since it last resumed pass the plan's rate over at
/// least its minimum of sends is paused, and ops are told.
pub fn bounce_guard(plan: &Plan, outreach: &Outreach) -> Vec<OutreachEvent> {
    let campaign = plan.campaign.id.as_str();
    let mut events = Vec::new();
    for channel in &plan.channels {
        let Some(rule) = &channel.bounce_guard else {
            continue;
        };
        let Some(guard) = outreach.guard(campaign, &channel.id) else {
            continue;
        };
        if guard.paused {
            continue;
        }
        let (sent, bounced) = guard.since_resume();
        if sent == 0 || sent < u64::from(rule.min_sent) {
            continue;
        }
        let rate = bounced as f64 / sent as f64;
        if rate <= rule.max_bounce_rate {
            continue;
        }
        let threshold = format!(
            "{}% of at least {} sent",
            trim_rate(rule.max_bounce_rate * 100.0),
            rule.min_sent
        );
        events.push(OutreachEvent::ChannelPaused(ChannelPaused {
            campaign: campaign.to_string(),
            channel: channel.id.clone(),
            sent,
            bounced,
            threshold: threshold.clone(),
            failure: None,
        }));
        let members = ops_members(plan);
        events.push(OutreachEvent::NoticePlanned(NoticePlanned {
            key: format!(
                "{campaign}/notice/bounce-guard/{}/{}-{}",
                channel.id, guard.sent, guard.bounced
            ),
            campaign: campaign.to_string(),
            role: "ops".to_string(),
            members,
            subject: format!(
                "{}: {} sending paused by the bounce guard",
                plan.campaign.name, channel.name
            ),
            body: format!(
                "{bounced} of {sent} messages sent on {} bounced ({}%), over the plan's {threshold}. \
                 Sending on this channel is paused to protect the sending domain. Clean the list, then: \
                 battleplan channel resume {campaign} {} --actor YOU --reason WHY",
                channel.id,
                trim_rate(rate * 100.0),
                channel.id
            ),
        }));
    }
    events
}

/// The members of the plan's `ops` role, who are told when a channel stops.
fn ops_members(plan: &Plan) -> Vec<String> {
    plan.roles
        .iter()
        .find(|role| role.id == "ops")
        .map(|role| role.members.clone())
        .unwrap_or_default()
}

/// A channel of the campaign failed in a way that needs a person (the server refused the
/// connection or the credentials): it is paused, as the bounce guard pauses it, and ops are
/// told what failed and how to resume. Nothing when it is paused already or the plan has no
/// such channel. `at` makes the notice's key (one per failure).
pub fn pause_after_failure(
    plan: &Plan,
    outreach: &Outreach,
    channel_id: &str,
    failure: &str,
    at: DateTime<Utc>,
) -> Vec<OutreachEvent> {
    let campaign = plan.campaign.id.as_str();
    let Some(channel) = plan.channel(channel_id) else {
        return Vec::new();
    };
    let guard = outreach.guard(campaign, channel_id);
    if guard.is_some_and(|guard| guard.paused) {
        return Vec::new();
    }
    let (sent, bounced) = guard.map_or((0, 0), |guard| (guard.sent, guard.bounced));
    vec![
        OutreachEvent::ChannelPaused(ChannelPaused {
            campaign: campaign.to_string(),
            channel: channel.id.clone(),
            sent,
            bounced,
            threshold: String::new(),
            failure: Some(failure.to_string()),
        }),
        OutreachEvent::NoticePlanned(NoticePlanned {
            key: format!(
                "{campaign}/notice/channel-failed/{}/{}",
                channel.id,
                at.timestamp_millis()
            ),
            campaign: campaign.to_string(),
            role: "ops".to_string(),
            members: ops_members(plan),
            subject: format!(
                "{}: {} sending paused after a failure",
                plan.campaign.name, channel.name
            ),
            body: format!(
                "Sending on {} failed: {failure}. Nothing was lost: the messages wait, and their \
                 windows still hold. Fix the cause (the server, its address, the credentials), \
                 then: battleplan channel resume {campaign} {} --actor YOU --reason WHY",
                channel.id, channel.id
            ),
        }),
    ]
}

fn trim_rate(percent: f64) -> String {
    let text = format!("{percent:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}
