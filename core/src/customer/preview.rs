//! The audience of a reach-out (or of a segment on a channel), from segment to day-by-day sends:
//! segment members at the evaluation instant, each exclusion counted in its fixed order, then the
//! planner spreading the reachable over the window within the quota ledger. `audience preview`
//! prints it; the dispatcher plans the real sends with the same call, so the preview is exactly
//! what will happen if nothing changes.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::book::{millis, reach_out_key, CustomerBook};
use super::eligibility::{already_reached, exclusion, fatigue_ends, Exclusion, Rules};
use super::quota::{plan_sends, Candidate, Ledger, Limits, PlanRequest, SendPlan, Unplaced};
use super::segment::Segments;
use crate::campaign::timeline::local;
use crate::plan::model::{ChannelKind, Plan, Sender, Window};

/// What to plan: a reach-out of the plan, or a segment on a channel.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    ReachOut(&'a str),
    /// From the evaluation instant to the end of the campaign, from the channel's accounts.
    Segment {
        segment: &'a str,
        channel: &'a str,
    },
}

/// The planned audience.
#[derive(Debug, Clone)]
pub struct Audience {
    pub campaign: String,
    /// The reach-out's id and name.
    pub reach_out: Option<(String, String)>,
    pub segment: String,
    pub channel: String,
    pub channel_kind: ChannelKind,
    pub zone: Tz,
    pub currency: String,
    pub window: Window,
    /// Segment membership, eligibility and the first send are evaluated here: the later of the
    /// asked instant and the window's start.
    pub evaluated_at: DateTime<Utc>,
    pub segment_size: u64,
    /// Each exclusion in [`Exclusion::ORDER`] with its count (zero included).
    pub exclusions: Vec<(Exclusion, u64)>,
    /// Each excluded member (book slot) with its exclusion, in the order they were checked;
    /// quiet-hours skips are in `sends.quiet_skipped`.
    pub excluded: Vec<(u32, Exclusion)>,
    /// Members no exclusion removed (quiet-hours skips aside).
    pub reachable: u64,
    /// Reachable members fatigued at the evaluation instant whose fatigue ends inside the
    /// window (book slot, the instant it ends): planned from then on, not excluded.
    pub after_fatigue: Vec<(u32, DateTime<Utc>)>,
    /// Each reason in [`Unplaced::ORDER`] with its count.
    pub unplaced: Vec<(Unplaced, u64)>,
    pub accounts: Vec<String>,
    pub sends: SendPlan,
}

impl Audience {
    pub fn excluded(&self, exclusion: Exclusion) -> u64 {
        self.exclusions
            .iter()
            .find(|(kind, _)| *kind == exclusion)
            .map_or(0, |(_, count)| *count)
    }

    pub fn placed(&self) -> u64 {
        self.sends.placements.len() as u64
    }
}

/// Plans the audience of `target` as the book and ledger stand, evaluated at `at`.
pub fn plan_audience(
    plan: &Plan,
    book: &CustomerBook,
    ledger: &Ledger,
    target: Target<'_>,
    at: DateTime<Utc>,
) -> Result<Audience, String> {
    plan_audience_except(plan, book, ledger, target, at, |_, _, _, _| Prior::Nothing)
}

/// What the outbox already holds for a member, beyond what the book knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    Nothing,
    /// Decided before (a planning resumed after a crash): left out, it keeps its decision.
    Decided,
    /// A send planned, not yet sent, within the fatigue window: counted as fatigue.
    PlannedNearby,
}

/// [`plan_audience`], with what the outbox holds for each member (`prior`, by customer id).
pub fn plan_audience_except(
    plan: &Plan,
    book: &CustomerBook,
    ledger: &Ledger,
    target: Target<'_>,
    at: DateTime<Utc>,
    prior: impl Fn(u32, &str, ChannelKind, i64) -> Prior,
) -> Result<Audience, String> {
    let zone = plan.campaign.time_zone;
    let (reach_out, segment_id, channel_id, window, sender, accounts) = match target {
        Target::ReachOut(id) => {
            let Some(reach_out) = plan.reach_outs.iter().find(|r| r.id == id) else {
                let known: Vec<&str> = plan.reach_outs.iter().map(|r| r.id.as_str()).collect();
                return Err(format!(
                    "campaign {} has no reach-out `{id}`; it has: {}",
                    plan.campaign.id,
                    known.join(", ")
                ));
            };
            (
                Some((reach_out.id.clone(), reach_out.name.clone())),
                reach_out.segment.as_str(),
                reach_out.channel.as_str(),
                reach_out.window,
                reach_out.sender,
                reach_out.accounts.clone(),
            )
        }
        Target::Segment { segment, channel } => {
            let span = plan.span();
            let channel_accounts = plan
                .channel(channel)
                .map(|c| c.accounts.clone())
                .unwrap_or_default();
            (
                None,
                segment,
                channel,
                Window {
                    start: at.max(span.start),
                    end: span.end,
                },
                Sender::Accounts,
                channel_accounts,
            )
        }
    };
    let Some(channel) = plan.channel(channel_id) else {
        let known: Vec<&str> = plan.channels.iter().map(|c| c.id.as_str()).collect();
        return Err(format!(
            "campaign {} has no channel `{channel_id}`; it has: {}",
            plan.campaign.id,
            known.join(", ")
        ));
    };
    let segments = Segments::compile(plan, book);
    let Some(segment_index) = segments.index_of(segment_id) else {
        let known: Vec<&str> = plan.segments.iter().map(|s| s.id.as_str()).collect();
        return Err(format!(
            "campaign {} has no segment `{segment_id}`; it has: {}",
            plan.campaign.id,
            known.join(", ")
        ));
    };
    if at >= window.end {
        return Err(format!(
            "the window ended at {}; nothing is left to plan (give an earlier --at)",
            local(zone, window.end)
        ));
    }
    let from = at.max(window.start);
    let instant = millis(from);
    let rules = Rules {
        kind: channel.kind,
        fatigue_ms: channel.fatigue.seconds().saturating_mul(1000),
        fatigue_scope: channel.fatigue_scope,
        excluded_segments: channel
            .exclude_segments
            .iter()
            .filter_map(|id| segments.index_of(id))
            .collect(),
        reach_out: reach_out
            .as_ref()
            .and_then(|(id, _)| book.symbols.get(&reach_out_key(&plan.campaign.id, id))),
    };

    let mut counts = [0u64; Exclusion::ORDER.len()];
    let mut segment_size = 0u64;
    let mut candidates = Vec::new();
    let mut excluded_members = Vec::new();
    let mut after_fatigue = Vec::new();
    for slot in segments.members(book, segment_index, instant) {
        let Some(customer) = book.customers().get(slot as usize) else {
            continue;
        };
        let prior = prior(slot, customer.id(), channel.kind, rules.fatigue_ms);
        if prior == Prior::Decided {
            continue;
        }
        segment_size += 1;
        let mut excluded = exclusion(book, &segments, &rules, slot, customer, instant)
            .or((prior == Prior::PlannedNearby).then_some(Exclusion::Fatigue));
        let mut not_before = None;
        if excluded == Some(Exclusion::Fatigue) && prior != Prior::PlannedNearby {
            // Fatigue is decided for the instant the send goes, not once: a customer whose
            // fatigue ends inside the window is placed from then on.
            let ends = DateTime::<Utc>::from_timestamp_millis(fatigue_ends(customer, &rules))
                .filter(|ends| *ends < window.end);
            if let Some(ends) = ends {
                excluded = already_reached(customer, &rules).then_some(Exclusion::AlreadyReached);
                if excluded.is_none() {
                    not_before = Some(ends);
                    after_fatigue.push((slot, ends));
                }
            }
        }
        match excluded {
            Some(excluded) => {
                counts[excluded.index()] += 1;
                excluded_members.push((slot, excluded));
            }
            None => candidates.push(Candidate {
                slot,
                zone: customer.time_zone,
                owner: customer.owner.map(|owner| book.symbols.name(owner)),
                not_before,
            }),
        }
    }
    let reachable = candidates.len() as u64;
    let request = PlanRequest {
        channel: &channel.id,
        limits: Limits::of(channel),
        zone,
        window,
        from,
        quiet: channel.quiet_hours.as_ref(),
        sender,
        accounts: &accounts,
    };
    let sends = plan_sends(&request, ledger, candidates);
    counts[Exclusion::QuietHours.index()] += sends.quiet_skipped.len() as u64;
    let reachable = reachable - sends.quiet_skipped.len() as u64;
    let mut unplaced_counts = [0u64; Unplaced::ORDER.len()];
    for (_, reason) in &sends.unplaced {
        if let Some(index) = Unplaced::ORDER.iter().position(|known| known == reason) {
            unplaced_counts[index] += 1;
        }
    }
    Ok(Audience {
        campaign: plan.campaign.id.clone(),
        reach_out,
        segment: segment_id.to_string(),
        channel: channel.id.clone(),
        channel_kind: channel.kind,
        zone,
        currency: plan.campaign.currency.clone(),
        window,
        evaluated_at: from,
        segment_size,
        exclusions: Exclusion::ORDER.into_iter().zip(counts).collect(),
        excluded: excluded_members,
        reachable,
        after_fatigue,
        unplaced: Unplaced::ORDER.into_iter().zip(unplaced_counts).collect(),
        accounts: if accounts.is_empty() {
            vec![channel.id.clone()]
        } else {
            accounts
        },
        sends,
    })
}
