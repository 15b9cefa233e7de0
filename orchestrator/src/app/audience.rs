//! `audience preview`: the customer book caught up from the log, the campaign's plan in force,
//! and the core's planner (`battleplan_core::customer::preview`), answered as a
//! [`PreviewView`]: every count, the day-by-day plan and, when asked, every member.
//!
//! The book is a projection kept in memory: a daemon keeps one and catches it up from its last
//! position before each question (so a preview through a running daemon costs the question, not
//! a replay); a command run without a daemon builds it from the log.

use std::collections::BTreeMap;

use battleplan_core::campaign::timeline::{local, local_rfc3339};
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::customer::eligibility::Exclusion;
use battleplan_core::customer::preview::{plan_audience_except, Audience, Target};
use battleplan_core::customer::quota::{DayLimit, DayPlan, Unplaced};
use battleplan_core::outreach::NotSentReason;
use battleplan_core::plan::model::{ChannelKind, FatigueScope};
use battleplan_core::plan::values::Money;
use battleplan_core::plan::Plan;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::app::local_time::LocalTime;
use crate::app::{AppError, Ctx};
use crate::kernel::runtime::Runtime;

/// What `audience preview` asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewQuestion {
    pub campaign: String,
    pub reach_out: Option<String>,
    pub segment: Option<String>,
    pub channel: Option<String>,
    pub at: Option<DateTime<Utc>>,
    /// List every member with their planned send or exclusion (`--customers`; in JSON only).
    #[serde(default)]
    pub customers: bool,
}

/// The audience of a reach-out (or of a segment on a channel) as the book and the outbox stand:
/// who is in it, who is excluded and why, and the sends planned day by day. Instants are
/// written with the campaign's offset.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewView {
    /// The sending accounts, in the plan's order.
    pub accounts: Vec<String>,
    /// Reachable members fatigued at the evaluation instant, planned once their fatigue ends.
    pub after_fatigue: u64,
    pub campaign: String,
    pub channel: String,
    #[schema(value_type = String, example = "mail")]
    pub channel_kind: ChannelKind,
    pub currency: String,
    /// Every member with their planned send or the reason they get none (`--customers` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers: Option<PreviewMembers>,
    pub days: Vec<PreviewDay>,
    /// Membership, eligibility and the first send are evaluated here: the later of the asked
    /// instant and the window's start.
    pub evaluated_at: LocalTime,
    /// Each exclusion, in the order they are checked, with its count (zero included); each
    /// member is counted once, under the first that applies.
    pub exclusions: Vec<ExclusionCount>,
    /// Each reason a reachable member got no send, with its count.
    pub not_placed: Vec<UnplacedCount>,
    /// Sends planned.
    pub planned: u64,
    /// The reach-out previewed (none for a segment on a channel).
    pub reach_out: Option<ReachOutName>,
    /// Members no exclusion removed.
    pub reachable: u64,
    pub segment: String,
    pub segment_size: u64,
    pub time_zone: String,
    pub total: PreviewTotal,
    pub window: PreviewWindow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReachOutName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExclusionCount {
    pub count: u64,
    /// `no_address`, `unsubscribed`, `recycle_bin`, `excluded_segment`, `fatigue`,
    /// `already_reached` or `quiet_hours`.
    #[schema(value_type = String, example = "no_address")]
    pub reason: Exclusion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnplacedCount {
    pub count: u64,
    /// `window_full`, `quota_used`, `no_account` or `quiet_until_window_end`.
    #[schema(value_type = String, example = "window_full")]
    pub reason: Unplaced,
}

/// One local day of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewDay {
    /// Sends per account.
    pub by_account: BTreeMap<String, u32>,
    #[schema(value_type = String, example = "120.00")]
    pub cost: Money,
    pub date: NaiveDate,
    pub free: u32,
    /// The limit that stopped the day, when one did: `daily_cap`, `account_caps`,
    /// `daily_budget` or `monthly_budget`.
    #[schema(value_type = Option<String>, example = "daily_cap")]
    pub limited_by: Option<DayLimit>,
    /// The first instant sends may go that day.
    pub opens: Option<LocalTime>,
    pub paid: u32,
    pub sends: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewTotal {
    #[schema(value_type = String, example = "120.00")]
    pub cost: Money,
    pub free: u64,
    pub paid: u64,
    pub sends: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewWindow {
    pub end: LocalTime,
    pub start: LocalTime,
}

/// Every member of the audience, each list in customer order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewMembers {
    pub not_sent: Vec<PreviewNotSent>,
    pub sends: Vec<PreviewSend>,
}

/// A member planned a send: when, and from which account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewSend {
    pub account: Option<String>,
    pub at: LocalTime,
    pub customer: String,
}

/// A member who gets no send, and why (the reason the outbox would record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewNotSent {
    pub customer: String,
    #[schema(value_type = String, example = "fatigue")]
    pub reason: NotSentReason,
}

/// Answers `audience preview` with the runtime's book (caught up first).
pub async fn preview(ctx: &Ctx<'_>, question: &PreviewQuestion) -> Result<PreviewView, AppError> {
    let target = match (&question.reach_out, &question.segment, &question.channel) {
        (Some(reach_out), None, None) => Target::ReachOut(reach_out),
        (None, Some(segment), Some(channel)) => Target::Segment { segment, channel },
        _ => {
            return Err(AppError::invalid(
                "say what to preview: --reach-out R, or --segment S with --channel C",
            ))
        }
    };
    let plan = ctx.plan(&question.campaign).await?;
    let runtime = ctx.runtime;
    let now = ctx.now;
    let at = question.at.unwrap_or(now);
    ctx.caught_up().await?;
    past_the_book_cannot_answer(runtime, &plan, at, now).await?;
    let book = runtime.customers.lock().await;
    // The quota already reserved by planned sends, of every campaign.
    let outreach = runtime.outreach.lock().await;
    let any_channel = |channel: &str| {
        plan.channel(channel)
            .is_none_or(|c| c.fatigue_scope == FatigueScope::AnyChannel)
    };
    let (reach_out_id, channel_id) = match target {
        Target::ReachOut(id) => (
            id,
            plan.reach_outs
                .iter()
                .find(|r| r.id == id)
                .map_or("", |r| r.channel.as_str()),
        ),
        Target::Segment { channel, .. } => ("", channel),
    };
    let from = plan
        .reach_outs
        .iter()
        .find(|r| r.id == reach_out_id)
        .map_or(at, |r| at.max(r.window.start));
    let audience = plan_audience_except(
        &plan,
        &book,
        &outreach.ledger,
        target,
        at,
        |slot, customer, kind, fatigue_ms| {
            outreach.prior(
                &plan.campaign.id,
                reach_out_id,
                (slot, customer),
                kind,
                any_channel(channel_id),
                from,
                fatigue_ms,
            )
        },
    )
    .map_err(|message| refusal(&plan, target, message))?;
    let members = question.customers.then(|| members(&audience, &book));
    Ok(view(&audience, members))
}

/// The planner's refusal: something the question named that the plan does not have, or a
/// question it cannot answer (a window already over).
fn refusal(plan: &Plan, target: Target<'_>, message: String) -> AppError {
    let named_is_missing = match target {
        Target::ReachOut(id) => !plan.reach_outs.iter().any(|r| r.id == id),
        Target::Segment { segment, channel } => {
            plan.channel(channel).is_none() || !plan.segments.iter().any(|s| s.id == segment)
        }
    };
    if named_is_missing {
        AppError::not_found(message)
    } else {
        AppError::invalid(message)
    }
}

/// A preview answers with the customer book and the outbox as they are now. For an instant
/// before now (the command's clock: the system clock, or `--clock-at`) that is the book of
/// that instant only if nothing was recorded since; otherwise the answer would mix today's
/// customers with what the reach-out has decided since, and match neither the past nor the
/// present. Such a question is refused, pointing to the tools that answer it from the log.
async fn past_the_book_cannot_answer(
    runtime: &Runtime,
    plan: &Plan,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    if at >= now {
        return Ok(());
    }
    let head = runtime.store.head().await?;
    let before_head = battleplan_core::event::Position(head.0.saturating_sub(1));
    let last = runtime.store.read_all(before_head, 1).await?;
    let Some(last) = last.first().filter(|last| last.recorded_at > at) else {
        return Ok(());
    };
    let zone = plan.campaign.time_zone;
    let campaign = &plan.campaign.id;
    let when = local(zone, at);
    let as_of = local_rfc3339(zone, at);
    Err(AppError::invalid(format_args!(
        "--at {when} is in the past (the clock says {}), and the log has changed since (its last event, position {}, was recorded at {}): a preview reads today's customer book and outbox, so it cannot say what was decided then. \
         Ask the log instead: `battleplan explain {campaign} CUSTOMER --as-of {as_of}` for one customer's decisions, `battleplan history {campaign} --as-of {as_of}` for the campaign's",
        local(zone, now),
        last.position,
        local(zone, last.recorded_at),
    )))
}

/// The planner's audience as a view: every count, and the day-by-day plan.
fn view(audience: &Audience, customers: Option<PreviewMembers>) -> PreviewView {
    let zone = audience.zone;
    let instant = |at: DateTime<Utc>| LocalTime::new(zone, at);
    let days = audience
        .sends
        .days
        .iter()
        .map(|day| PreviewDay {
            by_account: audience
                .accounts
                .iter()
                .cloned()
                .zip(day.per_account.iter().copied())
                .collect(),
            cost: day.cost,
            date: day.date,
            free: day.free,
            limited_by: day.limited_by,
            opens: day.opens.map(instant),
            paid: day.paid,
            sends: day.sends,
        })
        .collect();
    let sum = |field: fn(&DayPlan) -> u32| -> u64 {
        audience
            .sends
            .days
            .iter()
            .map(|day| u64::from(field(day)))
            .sum()
    };
    PreviewView {
        accounts: audience.accounts.clone(),
        after_fatigue: audience.after_fatigue.len() as u64,
        campaign: audience.campaign.clone(),
        channel: audience.channel.clone(),
        channel_kind: audience.channel_kind,
        currency: audience.currency.clone(),
        customers,
        days,
        evaluated_at: instant(audience.evaluated_at),
        exclusions: audience
            .exclusions
            .iter()
            .map(|(reason, count)| ExclusionCount {
                count: *count,
                reason: *reason,
            })
            .collect(),
        not_placed: audience
            .unplaced
            .iter()
            .map(|(reason, count)| UnplacedCount {
                count: *count,
                reason: *reason,
            })
            .collect(),
        planned: audience.placed(),
        reach_out: audience.reach_out.as_ref().map(|(id, name)| ReachOutName {
            id: id.clone(),
            name: name.clone(),
        }),
        reachable: audience.reachable,
        segment: audience.segment.clone(),
        segment_size: audience.segment_size,
        time_zone: zone.name().to_string(),
        total: PreviewTotal {
            cost: Money::from_minor(audience.sends.days.iter().map(|day| day.cost.minor()).sum()),
            free: sum(|day| day.free),
            paid: sum(|day| day.paid),
            sends: sum(|day| day.sends),
        },
        window: PreviewWindow {
            end: instant(audience.window.end),
            start: instant(audience.window.start),
        },
    }
}

/// Every member of the audience: the send planned (instant, account) or the reason not, each
/// list in customer order (the reasons of one customer in the order of their keys).
fn members(audience: &Audience, book: &CustomerBook) -> PreviewMembers {
    let id = |slot: u32| {
        book.customers()
            .get(slot as usize)
            .map(|customer| customer.id().to_string())
            .unwrap_or_default()
    };
    let mut sends: Vec<PreviewSend> = audience
        .sends
        .placements
        .iter()
        .map(|placement| PreviewSend {
            account: audience.accounts.get(placement.account as usize).cloned(),
            at: LocalTime::new(audience.zone, placement.at),
            customer: id(placement.slot),
        })
        .collect();
    sends.sort_by(|a, b| a.customer.cmp(&b.customer));
    let mut not_sent: Vec<PreviewNotSent> = audience
        .excluded
        .iter()
        .map(|(slot, exclusion)| (*slot, NotSentReason::from(*exclusion)))
        .chain(
            audience
                .sends
                .unplaced
                .iter()
                .map(|(slot, reason)| (*slot, NotSentReason::from(*reason))),
        )
        .chain(
            audience
                .sends
                .quiet_skipped
                .iter()
                .map(|slot| (*slot, NotSentReason::QuietHours)),
        )
        .map(|(slot, reason)| PreviewNotSent {
            customer: id(slot),
            reason,
        })
        .collect();
    not_sent.sort_by(|a, b| (&a.customer, a.reason.key()).cmp(&(&b.customer, b.reason.key())));
    PreviewMembers { not_sent, sends }
}
