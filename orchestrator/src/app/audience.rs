//! `audience preview`: the customer book caught up from the log, the campaign's plan in force,
//! and the core's planner (`battleplan_core::customer::preview`), printed for people or as JSON.
//!
//! The book is a projection kept in memory: a daemon keeps one and catches it up from its last
//! position before each question (so a preview through a running daemon costs the question, not
//! a replay); a command run without a daemon builds it from the log.

use std::fmt::Write as _;

use battleplan_core::campaign::timeline::{local, local_rfc3339};
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::customer::eligibility::Exclusion;
use battleplan_core::customer::preview::{plan_audience_except, Audience, Target};
use battleplan_core::customer::quota::{DayLimit, Unplaced};
use battleplan_core::outreach::send_key;
use battleplan_core::outreach::NotSentReason;
use battleplan_core::plan::model::FatigueScope;
use battleplan_core::plan::Plan;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::kernel::plans::plan_in_force;
use crate::kernel::runtime::{HandleError, Runtime};
use crate::present::Reply;

/// What `audience preview` asks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PreviewQuestion {
    pub campaign: String,
    pub reach_out: Option<String>,
    pub segment: Option<String>,
    pub channel: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub json: bool,
    /// List every member with their planned send or exclusion (JSON only).
    #[serde(default)]
    pub customers: bool,
}

/// Answers `audience preview` with the runtime's book (caught up first).
pub async fn preview(runtime: &Runtime, question: &PreviewQuestion) -> Result<Reply, HandleError> {
    let target = match (&question.reach_out, &question.segment, &question.channel) {
        (Some(reach_out), None, None) => Target::ReachOut(reach_out),
        (None, Some(segment), Some(channel)) => Target::Segment { segment, channel },
        _ => {
            return Ok(Reply::user_error(
                "say what to preview: --reach-out R, or --segment S with --channel C",
            ))
        }
    };
    let Some(plan) = plan_in_force(runtime, &question.campaign).await? else {
        return Ok(Reply::user_error(format_args!(
            "there is no campaign `{}` (apply its plan first: `battleplan plan apply PLAN`)",
            question.campaign
        )));
    };
    let now = runtime.clock.now();
    let at = question.at.unwrap_or(now);
    crate::kernel::dispatcher::catch_up(runtime).await?;
    if let Some(refusal) = past_the_book_cannot_answer(runtime, &plan, at, now).await? {
        return Ok(refusal);
    }
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
    let audience = match plan_audience_except(
        &plan,
        &book,
        &outreach.ledger,
        target,
        at,
        |customer, kind, fatigue_ms| {
            outreach.prior(
                &send_key(&plan.campaign.id, reach_out_id, customer, 1),
                customer,
                kind,
                any_channel(channel_id),
                from,
                fatigue_ms,
            )
        },
    ) {
        Ok(audience) => audience,
        Err(message) => return Ok(Reply::user_error(message)),
    };
    let stdout = if question.json {
        let mut value = to_json(&audience);
        if question.customers {
            value["customers"] = members_json(&audience, &book);
        }
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    } else {
        render(&audience)
    };
    Ok(Reply::ok(stdout))
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
) -> Result<Option<Reply>, HandleError> {
    if at >= now {
        return Ok(None);
    }
    let head = runtime.store.head().await?;
    let before_head = battleplan_core::event::Position(head.0.saturating_sub(1));
    let last = runtime.store.read_all(before_head, 1).await?;
    let Some(last) = last.first().filter(|last| last.recorded_at > at) else {
        return Ok(None);
    };
    let zone = plan.campaign.time_zone;
    let campaign = &plan.campaign.id;
    let when = local(zone, at);
    let as_of = local_rfc3339(zone, at);
    Ok(Some(Reply::user_error(format_args!(
        "--at {when} is in the past (the clock says {}), and the log has changed since (its last event, position {}, was recorded at {}): a preview reads today's customer book and outbox, so it cannot say what was decided then. \
         Ask the log instead: `battleplan explain {campaign} CUSTOMER --as-of {as_of}` for one customer's decisions, `battleplan history {campaign} --as-of {as_of}` for the campaign's",
        local(zone, now),
        last.position,
        local(zone, last.recorded_at),
    ))))
}

fn exclusion_words(audience: &Audience, exclusion: Exclusion) -> String {
    let channel = audience.channel_kind.as_str();
    match exclusion {
        Exclusion::NoAddress => format!("no or invalid address for {channel}"),
        Exclusion::Unsubscribed => format!("unsubscribed from {channel}"),
        Exclusion::RecycleBin => "in the recycle bin".to_string(),
        Exclusion::ExcludedSegment => "in a segment the channel excludes".to_string(),
        Exclusion::Fatigue => "reached within the fatigue window".to_string(),
        Exclusion::AlreadyReached => "already reached by this reach-out".to_string(),
        Exclusion::QuietHours => "in quiet hours (the plan says skip)".to_string(),
    }
}

fn unplaced_words(reason: Unplaced) -> &'static str {
    match reason {
        Unplaced::WindowFull => "window full",
        Unplaced::QuotaUsed => "no quota left before this reach-out",
        Unplaced::NoAccount => "no sending account (sender = owner)",
        Unplaced::QuietUntilWindowEnd => "held by quiet hours past the window's end",
    }
}

fn limit_words(limit: Option<DayLimit>) -> &'static str {
    match limit {
        None => "",
        Some(DayLimit::DailyCap) => "daily cap reached",
        Some(DayLimit::AccountCaps) => "account caps reached",
        Some(DayLimit::DailyBudget) => "daily budget spent",
        Some(DayLimit::MonthlyBudget) => "monthly budget spent",
    }
}

use battleplan_core::plan::values::grouped;

fn total_cost(audience: &Audience) -> battleplan_core::plan::values::Money {
    battleplan_core::plan::values::Money::from_minor(
        audience.sends.days.iter().map(|day| day.cost.minor()).sum(),
    )
}

/// The preview for people.
pub fn render(audience: &Audience) -> String {
    let mut out = String::new();
    let zone = audience.zone;
    match &audience.reach_out {
        Some((id, name)) => {
            let _ = writeln!(
                out,
                "Audience of reach-out {id} (\"{name}\"), campaign {}",
                audience.campaign
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Audience of segment {} on channel {}, campaign {}",
                audience.segment, audience.channel, audience.campaign
            );
        }
    }
    let _ = writeln!(
        out,
        "  segment {}, channel {} ({}), window {} to {}",
        audience.segment,
        audience.channel,
        audience.channel_kind.as_str(),
        local(zone, audience.window.start),
        local(zone, audience.window.end)
    );
    let _ = writeln!(out, "  evaluated at {}", local(zone, audience.evaluated_at));
    let _ = writeln!(out);
    let width = 56;
    let line = |out: &mut String, label: &str, value: u64| {
        let _ = writeln!(out, "  {label:<width$}{:>12}", grouped(value));
    };
    line(
        &mut out,
        &format!("in segment {}", audience.segment),
        audience.segment_size,
    );
    let _ = writeln!(out, "  excluded, each counted once, in this order:");
    for (exclusion, count) in &audience.exclusions {
        line(
            &mut out,
            &format!("  {}", exclusion_words(audience, *exclusion)),
            *count,
        );
    }
    line(&mut out, "reachable", audience.reachable);
    if !audience.after_fatigue.is_empty() {
        line(
            &mut out,
            "  of them fatigued now, planned once their fatigue ends",
            audience.after_fatigue.len() as u64,
        );
    }
    line(&mut out, "planned to send", audience.placed());
    for (reason, count) in &audience.unplaced {
        line(
            &mut out,
            &format!("not placed: {}", unplaced_words(*reason)),
            *count,
        );
    }
    let _ = writeln!(out);

    let show_accounts = audience.accounts.len() > 1;
    let mut header = format!(
        "  {:<12}{:>7}{:>10}{:>10}{:>10}{:>12}",
        "day", "opens", "sends", "free", "paid", "cost"
    );
    if show_accounts {
        for account in &audience.accounts {
            let _ = write!(header, "{:>12}", truncate(account, 11));
        }
    }
    let _ = writeln!(out, "{}", header.trim_end());
    let (mut sends, mut free, mut paid) = (0u64, 0u64, 0u64);
    for day in &audience.sends.days {
        sends += u64::from(day.sends);
        free += u64::from(day.free);
        paid += u64::from(day.paid);
        let opens = day
            .opens
            .map(|opens| opens.with_timezone(&zone).format("%H:%M").to_string())
            .unwrap_or_else(|| "-".to_string());
        let mut row = format!(
            "  {:<12}{:>7}{:>10}{:>10}{:>10}{:>12}",
            day.date.format("%Y-%m-%d"),
            opens,
            grouped(u64::from(day.sends)),
            grouped(u64::from(day.free)),
            grouped(u64::from(day.paid)),
            day.cost.to_string(),
        );
        if show_accounts {
            for count in &day.per_account {
                let _ = write!(row, "{:>12}", grouped(u64::from(*count)));
            }
        }
        let limit = limit_words(day.limited_by);
        if !limit.is_empty() {
            let _ = write!(row, "  {limit}");
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "  {:<12}{:>7}{:>10}{:>10}{:>10}{:>12}",
        "total",
        "",
        grouped(sends),
        grouped(free),
        grouped(paid),
        total_cost(audience).to_string(),
    );
    let _ = writeln!(out, "  costs in {}", audience.currency);
    out
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// Every member of the audience: the send planned (instant, account) or the reason not.
fn members_json(audience: &Audience, book: &CustomerBook) -> serde_json::Value {
    let id = |slot: u32| {
        book.customers()
            .get(slot as usize)
            .map(|customer| customer.id.to_string())
            .unwrap_or_default()
    };
    let mut sends: Vec<serde_json::Value> = audience
        .sends
        .placements
        .iter()
        .map(|placement| {
            json!({
                "customer": id(placement.slot),
                "at": local_rfc3339(audience.zone, placement.at),
                "account": audience.accounts.get(placement.account as usize),
            })
        })
        .collect();
    sends.sort_by(|a, b| a["customer"].as_str().cmp(&b["customer"].as_str()));
    let mut not_sent: Vec<(String, &'static str)> = audience
        .excluded
        .iter()
        .map(|(slot, exclusion)| (id(*slot), NotSentReason::from(*exclusion).key()))
        .chain(
            audience
                .sends
                .unplaced
                .iter()
                .map(|(slot, reason)| (id(*slot), NotSentReason::from(*reason).key())),
        )
        .chain(
            audience
                .sends
                .quiet_skipped
                .iter()
                .map(|slot| (id(*slot), NotSentReason::QuietHours.key())),
        )
        .collect();
    not_sent.sort();
    json!({
        "sends": sends,
        "not_sent": not_sent
            .into_iter()
            .map(|(customer, reason)| json!({"customer": customer, "reason": reason}))
            .collect::<Vec<_>>(),
    })
}

/// The preview as JSON: every count, and the day-by-day plan.
pub fn to_json(audience: &Audience) -> serde_json::Value {
    let zone = audience.zone;
    let instant = |at: DateTime<Utc>| local_rfc3339(zone, at);
    let days: Vec<serde_json::Value> = audience
        .sends
        .days
        .iter()
        .map(|day| {
            let by_account: serde_json::Map<String, serde_json::Value> = audience
                .accounts
                .iter()
                .zip(&day.per_account)
                .map(|(account, count)| (account.clone(), json!(count)))
                .collect();
            json!({
                "date": day.date.format("%Y-%m-%d").to_string(),
                "opens": day.opens.map(instant),
                "sends": day.sends,
                "free": day.free,
                "paid": day.paid,
                "cost": day.cost,
                "by_account": by_account,
                "limited_by": day.limited_by,
            })
        })
        .collect();
    let sum = |field: fn(&battleplan_core::customer::quota::DayPlan) -> u32| -> u64 {
        audience
            .sends
            .days
            .iter()
            .map(|day| u64::from(field(day)))
            .sum()
    };
    json!({
        "campaign": audience.campaign,
        "reach_out": audience.reach_out.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
        "segment": audience.segment,
        "channel": audience.channel,
        "channel_kind": audience.channel_kind,
        "time_zone": zone.name(),
        "currency": audience.currency,
        "window": { "start": instant(audience.window.start), "end": instant(audience.window.end) },
        "evaluated_at": instant(audience.evaluated_at),
        "segment_size": audience.segment_size,
        "exclusions": audience.exclusions.iter().map(|(exclusion, count)| json!({
            "reason": exclusion.key(),
            "count": count,
        })).collect::<Vec<_>>(),
        "reachable": audience.reachable,
        "after_fatigue": audience.after_fatigue.len(),
        "planned": audience.placed(),
        "not_placed": audience.unplaced.iter().map(|(reason, count)| json!({
            "reason": reason.key(),
            "count": count,
        })).collect::<Vec<_>>(),
        "accounts": audience.accounts,
        "days": days,
        "total": {
            "sends": sum(|day| day.sends),
            "free": sum(|day| day.free),
            "paid": sum(|day| day.paid),
            "cost": total_cost(audience),
        },
    })
}

/// Still printed words; typed views come next.
pub type PreviewView = crate::present::Reply;
