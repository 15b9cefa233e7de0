//! The auditor's answer to "why was this buyer reached, or not?" (`battleplan explain`), and the
//! numbers the outbox records with its decisions so that the answer can quote them.
//!
//! Two halves. At decision time, [`exclusion_detail`], [`quota_days`] and [`pushed_detail`] put
//! into words the rule and the numbers behind a `NotSent` or a send planned on a later day than
//! the first of its window (the fatigue window and the last reach, the day's cap and what the
//! ledger held); `outreach::decide` records them in the events' `detail`, so the auditor reads
//! what the orchestrator knew when it decided, not a recomputation. At explain time, [`explain`]
//! assembles, from what the orchestrator read of the log up to an instant (the customer book, the
//! campaign's state and plan as of then, and every outbox event and outcome about the customer),
//! the customer's story (the orchestrator's `present::explain` puts it into words).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::campaign::timeline::{human_duration, local};
use crate::campaign::CampaignState;
use crate::customer::book::{
    channel_index, millis, valid_email, Customer, CustomerBook, CHANNEL_KINDS, NEVER,
};
use crate::customer::eligibility::Exclusion;
use crate::customer::events::{OutcomeKind, OutcomeRecorded};
use crate::customer::quota::{DayLimit, DayPlan, Ledger};
use crate::customer::segment::Segments;
use crate::outreach::events::{NotSentReason, OutreachEvent};
use crate::plan::model::LifecycleStage;
use crate::plan::model::{Channel, ChannelKind, FatigueScope, Plan, QuietPolicy};
use crate::text::printable;

pub use crate::plan::values::grouped;

fn kind_words(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Mail => "mail",
        ChannelKind::InSite => "in-site message",
        ChannelKind::Im => "IM",
        ChannelKind::Webhook => "webhook",
        ChannelKind::Console => "console",
    }
}

fn instant_of(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The rule and the numbers behind an exclusion, as the book stood at `at` (milliseconds).
/// `segments`, compiled once by the caller, names the excluded segment the customer is in.
/// `None` when there is nothing to add to the reason itself.
pub fn exclusion_detail(
    plan: &Plan,
    channel: &Channel,
    book: &CustomerBook,
    segments: Option<&Segments>,
    customer: &Customer,
    exclusion: Exclusion,
    at: i64,
) -> Option<String> {
    let zone = plan.campaign.time_zone;
    match exclusion {
        Exclusion::NoAddress => Some(match &customer.email() {
            None => format!("no mail address; {} needs one", channel.id),
            Some(email) if valid_email(email) => {
                format!("the mail address {email} bounced; {} skips it", channel.id)
            }
            Some(email) => format!("`{email}` is not a mail address"),
        }),
        Exclusion::Unsubscribed => Some(format!(
            "unsubscribed from {} (the customer book at {})",
            kind_words(channel.kind),
            instant_of(at).map(|i| local(zone, i)).unwrap_or_default()
        )),
        Exclusion::RecycleBin => {
            Some("in the merchant's recycle bin: excluded from everything".to_string())
        }
        Exclusion::ExcludedSegment => {
            let Some(segments) = segments else {
                return Some(format!("in a segment that channel {} excludes", channel.id));
            };
            let slot = book.slot(customer.id())?;
            let matched: Vec<&str> = channel
                .exclude_segments
                .iter()
                .filter(|id| {
                    segments
                        .index_of(id)
                        .is_some_and(|index| segments.contains(book, index, slot, at))
                })
                .map(String::as_str)
                .collect();
            Some(format!(
                "in segment {} that channel {} excludes",
                matched.join(", "),
                channel.id
            ))
        }
        Exclusion::Fatigue => Some(fatigue_detail(plan, channel, customer, at)),
        Exclusion::AlreadyReached => {
            Some("this reach-out already sent the customer its message".to_string())
        }
        Exclusion::QuietHours => channel.quiet_hours.as_ref().map(|quiet| {
            format!(
                "quiet hours {}–{} on {} with policy {}",
                quiet.start.format("%H:%M"),
                quiet.end.format("%H:%M"),
                channel.id,
                match quiet.policy {
                    QuietPolicy::Hold => "hold",
                    QuietPolicy::Skip => "skip",
                }
            )
        }),
    }
}

/// `last reached by mail at ...; the channel's fatigue is 7 d, so not before ...`.
fn fatigue_detail(plan: &Plan, channel: &Channel, customer: &Customer, at: i64) -> String {
    let zone = plan.campaign.time_zone;
    let fatigue_ms = channel.fatigue.seconds().saturating_mul(1000);
    let (last, kind, scope) = match channel.fatigue_scope {
        FatigueScope::AnyChannel => {
            let (index, last) = customer
                .last_reached
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, last)| *last != NEVER && *last <= at)
                .max_by_key(|(_, last)| *last)
                .unwrap_or((0, NEVER));
            (
                last,
                CHANNEL_KINDS.get(index).copied(),
                "a reach on any channel counts",
            )
        }
        FatigueScope::ThisChannel => (
            customer.last_reached[channel_index(channel.kind)],
            Some(channel.kind),
            "only this channel's reaches count",
        ),
    };
    match (last != NEVER && last <= at, instant_of(last), kind) {
        (true, Some(last_at), Some(kind)) => {
            let until = instant_of(last.saturating_add(fatigue_ms))
                .map(|i| local(zone, i))
                .unwrap_or_default();
            format!(
                "last reached by {} at {}; the channel's fatigue is {} ({scope}), so not before {until}",
                kind_words(kind),
                local(zone, last_at),
                human_duration(fatigue_ms),
            )
        }
        _ => format!(
            "a message to the customer is already planned within the channel's fatigue of {} ({scope})",
            human_duration(fatigue_ms)
        ),
    }
}

/// Each day of a planning in words, with what the ledger held before it: `2026-08-26 was full
/// (2,000 of 2,000, the daily cap)`.
pub fn quota_days(channel: &Channel, ledger: &Ledger, days: &[DayPlan]) -> Vec<String> {
    days.iter()
        .map(|day| {
            let before = ledger
                .day(&channel.id, day.date)
                .map_or(0, |used| used.total);
            let held = u64::from(before) + u64::from(day.sends);
            let Some(_) = day.opens else {
                return match (&channel.quiet_hours, day.quiet) {
                    (Some(quiet), true) => format!(
                        "{} had no sending time outside the quiet hours ({}–{})",
                        day.date,
                        quiet.start.format("%H:%M"),
                        quiet.end.format("%H:%M")
                    ),
                    _ => format!("{} had no sending time left", day.date),
                };
            };
            // A day the ledger had already filled stopped no send of this planning, so the
            // planner names no limit: tell it from the numbers.
            let account_cap = channel
                .per_account_daily_cap
                .map(|cap| u64::from(cap).saturating_mul(channel.accounts.len().max(1) as u64));
            let limited_by = day.limited_by.or_else(|| {
                if channel.daily_cap.is_some_and(|cap| held >= u64::from(cap)) {
                    Some(DayLimit::DailyCap)
                } else if account_cap.is_some_and(|cap| held >= cap) {
                    Some(DayLimit::AccountCaps)
                } else {
                    None
                }
            });
            match limited_by {
                Some(DayLimit::DailyCap) => format!(
                    "{} was full ({} of {}, the daily cap{})",
                    day.date,
                    grouped(held),
                    grouped(u64::from(channel.daily_cap.unwrap_or(0))),
                    held_before(before)
                ),
                Some(DayLimit::AccountCaps) => format!(
                    "{} was full ({} sent, every account at its cap of {} a day{})",
                    day.date,
                    grouped(held),
                    grouped(u64::from(channel.per_account_daily_cap.unwrap_or(0))),
                    held_before(before)
                ),
                Some(DayLimit::DailyBudget) => format!(
                    "{} was full ({} sent, the daily budget {} spent{})",
                    day.date,
                    grouped(held),
                    channel
                        .daily_budget
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    held_before(before)
                ),
                Some(DayLimit::MonthlyBudget) => format!(
                    "{} was full ({} sent, the monthly budget {} spent{})",
                    day.date,
                    grouped(held),
                    channel
                        .monthly_budget
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    held_before(before)
                ),
                None => format!("{} took no more ({} planned)", day.date, grouped(held)),
            }
        })
        .collect()
}

fn held_before(before: u32) -> String {
    if before == 0 {
        String::new()
    } else {
        format!("; {} of them planned earlier", grouped(u64::from(before)))
    }
}

/// A few of many: the first, `…`, the last two when there are more than three.
fn few(words: &[String]) -> String {
    match words {
        [first, .., before_last, last] if words.len() > 3 => {
            format!("{first}, …, {before_last}, {last}")
        }
        _ => words.join(", "),
    }
}

/// Why a send went on day `day` (an index into the planning's days) rather than an earlier one;
/// `None` on the first day.
pub fn pushed_detail(days: &[String], dates: &[NaiveDate], day: usize) -> Option<String> {
    if day == 0 {
        return None;
    }
    let earlier = days.get(..day)?;
    let date = dates.get(day)?;
    Some(format!("not earlier: {}; planned for {date}", few(earlier)))
}

/// Why every day of the window was refused.
pub fn window_full_detail(days: &[String]) -> String {
    if days.is_empty() {
        return "no day of the window was left".to_string();
    }
    format!("no day of the window had room: {}", few(days))
}

/// One event of the outbox about the customer, as the log recorded it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    /// The campaign's plan version in force when it was recorded.
    pub plan_version: u32,
    pub event: OutreachEvent,
}

/// A message that reached the customer, in any campaign (the fatigue counts them all).
#[derive(Debug, Clone)]
pub struct Reach {
    pub at: DateTime<Utc>,
    pub campaign: String,
    pub reach_out: String,
    pub kind: ChannelKind,
}

/// An outcome of the customer, as imported.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    /// The campaign's plan version in force when it was recorded.
    pub plan_version: u32,
    /// Who imported it.
    pub actor: String,
    /// The import's file name.
    pub file: Option<String>,
    pub outcome: OutcomeRecorded,
}

/// What the orchestrator read of the log up to `as_of`.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub state: &'a CampaignState,
    pub book: &'a CustomerBook,
    pub customer: &'a str,
    pub as_of: DateTime<Utc>,
    /// In log order.
    pub decisions: Vec<Decision>,
    pub reaches: Vec<Reach>,
    pub outcomes: Vec<Outcome>,
    /// How far the customer got in this campaign's funnel by `as_of` (`Funnel::stage_of`).
    pub funnel_stage: Option<LifecycleStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: Option<String>,
    pub company: Option<String>,
    pub email: Option<String>,
    pub email_ok: bool,
    pub tier: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub time_zone: Option<String>,
    pub orders: u32,
    pub unsubscribed_from: Vec<&'static str>,
    pub recycle_bin: bool,
    /// The last reach per channel kind.
    pub last_reached: Vec<(&'static str, DateTime<Utc>)>,
}

/// One line of the customer's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub plan_version: u32,
    /// `planned`, `moved`, `not_sent`, `sent`, `follow_ups_stopped`, or an outcome (`opened`,
    /// ...).
    pub what: String,
    pub reach_out: Option<String>,
    pub attempt: Option<u32>,
    pub summary: String,
    /// The rule and the numbers behind the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub campaign: String,
    pub customer: String,
    pub as_of: DateTime<Utc>,
    pub time_zone: String,
    pub campaign_status: String,
    pub plan_version: u32,
    pub profile: Profile,
    /// The plan's segments the customer is in at `as_of`.
    pub segments: Vec<String>,
    /// How far the customer got in this campaign's funnel by `as_of`, as `funnel CAMPAIGN`
    /// counts them; `none` if the campaign never considered them.
    pub funnel_stage: String,
    /// The customer's lifecycle stage at `as_of` (DOMAIN.md's rules, over every campaign and
    /// the last 30 days), `none` outside it.
    pub lifecycle: String,
    pub entries: Vec<Entry>,
}

fn profile(book: &CustomerBook, customer: &Customer) -> Profile {
    let name = |sym: Option<u32>| sym.map(|s| book.symbols.name(s).to_string());
    Profile {
        name: customer.name().map(str::to_string),
        company: customer.company().map(str::to_string),
        email: customer.email().map(str::to_string),
        email_ok: customer.email_ok,
        tier: name(customer.tier),
        owner: name(customer.owner),
        tags: customer
            .tags
            .iter()
            .map(|t| book.symbols.name(*t).to_string())
            .collect(),
        time_zone: customer.time_zone.map(|z| z.name().to_string()),
        orders: customer.orders,
        unsubscribed_from: CHANNEL_KINDS
            .into_iter()
            .filter(|kind| customer.unsubscribed_from(*kind))
            .map(kind_words)
            .collect(),
        recycle_bin: customer.recycle_bin,
        last_reached: CHANNEL_KINDS
            .into_iter()
            .filter_map(|kind| {
                let last = customer.last_reached[channel_index(kind)];
                (last != NEVER).then(|| instant_of(last).map(|at| (kind_words(kind), at)))?
            })
            .collect(),
    }
}

/// The customer's story in `inputs.plan`'s campaign, as of `inputs.as_of`.
pub fn explain(inputs: &Inputs<'_>) -> Result<Explanation, String> {
    let plan = inputs.plan;
    let zone = plan.campaign.time_zone;
    let book = inputs.book;
    let Some(customer) = book.get(inputs.customer) else {
        return Err(format!(
            "no customer `{}` in the customer book as of {} (import them with `battleplan customers import FILE`)",
            printable(inputs.customer),
            local(zone, inputs.as_of)
        ));
    };
    let at = millis(inputs.as_of);
    let segments = Segments::compile(plan, book);
    let slot = book.slot(inputs.customer);
    let matched: Vec<String> = plan
        .segments
        .iter()
        .filter(|segment| {
            slot.is_some_and(|slot| {
                segments
                    .index_of(&segment.id)
                    .is_some_and(|index| segments.contains(book, index, slot, at))
            })
        })
        .map(|segment| segment.id.clone())
        .collect();
    let lifecycle = customer
        .lifecycle(at)
        .map_or("none", crate::funnel::stage_key)
        .to_string();
    let funnel_stage = inputs
        .funnel_stage
        .map_or("none", crate::funnel::stage_key)
        .to_string();

    let mut entries = Vec::new();
    for decision in &inputs.decisions {
        entries.push(entry(inputs, decision));
    }
    for outcome in &inputs.outcomes {
        let row = &outcome.outcome;
        let mut summary = format!("{} at {}", row.outcome.as_str(), local(zone, row.at));
        if let Some(kind) = row.channel {
            summary.push_str(&format!(" by {}", kind_words(kind)));
        }
        if let Some(reach_out) = &row.reach_out {
            summary.push_str(&format!(", after {reach_out}"));
        }
        if let Some(message) = &row.message {
            summary.push_str(&format!(", message {message}"));
        }
        if let Some(amount) = row.amount {
            summary.push_str(&format!(", {amount} {}", plan.campaign.currency));
        }
        // From a file's row, or (line 0) sent by itself: a link followed, a system's answer,
        // a channel's refusal.
        let why = match (&outcome.file, row.line) {
            (Some(file), line) if line > 0 => format!("imported from {file} line {line}"),
            (None, line) if line > 0 => format!("imported from line {line}"),
            _ => format!("recorded as it came back, by {}", outcome.actor),
        };
        entries.push(Entry {
            position: outcome.position,
            recorded_at: outcome.recorded_at,
            actor: outcome.actor.clone(),
            plan_version: outcome.plan_version,
            what: row.outcome.as_str().to_string(),
            reach_out: row.reach_out.clone(),
            attempt: None,
            summary,
            why: Some(why),
        });
    }
    entries.sort_by_key(|entry| entry.position);
    Ok(Explanation {
        campaign: plan.campaign.id.clone(),
        customer: inputs.customer.to_string(),
        as_of: inputs.as_of,
        time_zone: zone.name().to_string(),
        campaign_status: inputs.state.describe(),
        plan_version: inputs.state.plan_version,
        profile: profile(book, customer),
        segments: matched,
        funnel_stage,
        lifecycle,
        entries,
    })
}

fn entry(inputs: &Inputs<'_>, decision: &Decision) -> Entry {
    let zone = inputs.plan.campaign.time_zone;
    let base = |what: &str,
                reach_out: Option<&str>,
                attempt: Option<u32>,
                summary: String,
                why: Option<String>| Entry {
        position: decision.position,
        recorded_at: decision.recorded_at,
        actor: decision.actor.clone(),
        plan_version: decision.plan_version,
        what: what.to_string(),
        reach_out: reach_out.map(str::to_string),
        attempt,
        summary,
        why,
    };
    match &decision.event {
        OutreachEvent::SendPlanned(planned) => {
            let mut summary = format!(
                "planned by {} from {} for {}, on the quota of {} ({} volume)",
                planned.channel,
                planned.account,
                local(zone, planned.at),
                planned.day,
                if planned.paid { "paid" } else { "free" },
            );
            if let Some(terms) = &planned.follow_up {
                if planned.attempt > 1 {
                    summary.push_str(&format!(
                        "; follow-up {} of rule {} (no {} within {})",
                        planned.attempt - 1,
                        terms.rule,
                        match terms.if_no {
                            crate::plan::model::FollowUpTrigger::Reply => "reply",
                            crate::plan::model::FollowUpTrigger::Order => "order",
                            crate::plan::model::FollowUpTrigger::Open => "open",
                        },
                        human_duration(terms.after_ms)
                    ));
                }
            }
            let why = if planned.attempt == 1 {
                let chosen = chosen_because(inputs, planned);
                Some(match &planned.detail {
                    Some(detail) => format!("{chosen}; {detail}"),
                    None => chosen,
                })
            } else {
                planned.detail.clone()
            };
            base(
                "planned",
                Some(&planned.reach_out),
                Some(planned.attempt),
                summary,
                why,
            )
        }
        OutreachEvent::NotSent(not_sent) => {
            let mut why = not_sent.detail.clone();
            let extra = match not_sent.reason {
                NotSentReason::Fatigue => last_reach_before(inputs, decision.recorded_at)
                    .or_else(|| planned_before(inputs, decision, &not_sent.reach_out)),
                NotSentReason::Unsubscribed => unsubscribe_before(inputs, decision.recorded_at),
                _ => None,
            };
            if let Some(extra) = extra {
                why = Some(match why {
                    Some(why) => format!("{why}; {extra}"),
                    None => extra,
                });
            }
            base(
                "not_sent",
                Some(&not_sent.reach_out),
                Some(not_sent.attempt),
                format!(
                    "not sent by {}: {} ({})",
                    not_sent.channel,
                    not_sent.reason.words(),
                    not_sent.reason.key()
                ),
                why,
            )
        }
        OutreachEvent::MessageSent(sent) => {
            let mut summary = format!("sent by {}", sent.channel);
            if let Some(template) = &sent.template {
                summary.push_str(&format!(" with template {template}"));
                if let Some(version) = sent.template_version {
                    summary.push_str(&format!(" (version {version})"));
                }
            }
            match (&sent.phase, &sent.stage) {
                (Some(phase), Some(stage)) => {
                    summary.push_str(&format!(", in {} ({stage} stage)", phase.label()))
                }
                (Some(phase), None) => summary.push_str(&format!(", in {}", phase.label())),
                _ => {}
            }
            if sent.duplicate {
                summary.push_str(" (the channel already had it: a send from before a restart)");
            }
            if sent.unconfirmed {
                summary.push_str(
                    " (handed over without an answer: it may not have arrived; not handed over again)",
                );
            }
            let attempt = sent
                .key
                .rsplit('/')
                .next()
                .and_then(|attempt| attempt.parse().ok());
            base("sent", sent.reach_out.as_deref(), attempt, summary, None)
        }
        OutreachEvent::FollowUpStopped(stopped) => base(
            "follow_ups_stopped",
            Some(&stopped.reach_out),
            None,
            format!(
                "follow-ups of rule {} stopped: {}",
                stopped.rule,
                stopped.reason.key()
            ),
            Some(match stopped.reason {
                crate::outreach::events::StopReason::AttemptLimit => inputs
                    .plan
                    .follow_ups
                    .iter()
                    .find(|rule| rule.id == stopped.rule)
                    .map(|rule| {
                        format!(
                            "rule {} allows {} follow-up(s) after the first message, and all were sent (the last: {})",
                            rule.id, rule.max_attempts, stopped.after_key
                        )
                    })
                    .unwrap_or_else(|| format!("after {}", stopped.after_key)),
                _ => format!("after {}", stopped.after_key),
            }),
        ),
        OutreachEvent::SendMoved(moved) => base(
            "moved",
            Some(&moved.reach_out),
            moved
                .key
                .rsplit('/')
                .next()
                .and_then(|attempt| attempt.parse().ok()),
            format!(
                "moved by {} to {}, on the quota of {} ({} volume), from the quota of {}",
                moved.channel,
                local(zone, moved.at),
                moved.day,
                if moved.paid { "paid" } else { "free" },
                moved.from_day
            ),
            moved.detail.clone(),
        ),
        OutreachEvent::DeliveryDeferred(deferred) => base(
            "deferred",
            Some(&deferred.reach_out),
            deferred
                .key
                .rsplit('/')
                .next()
                .and_then(|attempt| attempt.parse().ok()),
            format!(
                "deferred by the receiving side of {} (try {}): handed over again at {}",
                deferred.channel,
                deferred.tries,
                local(zone, deferred.retry_at)
            ),
            Some(crate::text::printable(&deferred.detail).into_owned()),
        ),
        other => base(other.event_type(), None, None, String::new(), None),
    }
}

/// How the detail of a send placed after the customer's fatigue window begins.
pub const AFTER_FATIGUE: &str = "fatigued when planned";

/// Why a reach-out's first message was planned for the customer: in its segment, no exclusion,
/// and the day's quota (from the plan in force as of the question).
fn chosen_because(inputs: &Inputs<'_>, planned: &crate::outreach::events::SendPlanned) -> String {
    let plan = inputs.plan;
    let segment = plan
        .reach_outs
        .iter()
        .find(|reach_out| reach_out.id == planned.reach_out)
        .map_or("its segment", |reach_out| reach_out.segment.as_str());
    let channel = plan.channel(&planned.channel);
    let fatigue = channel
        .map(|c| human_duration(c.fatigue.seconds().saturating_mul(1000)))
        .unwrap_or_default();
    // A customer fatigued when planned was placed once the fatigue ends (the detail says so).
    let fatigued = if planned
        .detail
        .as_deref()
        .is_some_and(|detail| detail.starts_with(AFTER_FATIGUE))
    {
        format!("placed once the fatigue of {fatigue} ends")
    } else {
        format!("not reached within the fatigue of {fatigue}")
    };
    let mut words = format!(
        "in segment {segment} when the reach-out was planned, and no exclusion applied (an address, no unsubscribe, not in the recycle bin nor an excluded segment, {fatigued}, not yet sent by this reach-out)"
    );
    if let Some(channel) = channel {
        let cap = channel
            .daily_cap
            .map(|cap| format!(" of a daily cap of {}", grouped(u64::from(cap))))
            .unwrap_or_default();
        match (channel.free_per_day, planned.paid) {
            (Some(free), false) => words.push_str(&format!(
                "; within the {} free sends a day{cap}",
                grouped(u64::from(free))
            )),
            (Some(free), true) => words.push_str(&format!(
                "; paid volume, beyond the {} free sends a day{cap}",
                grouped(u64::from(free))
            )),
            (None, _) if !cap.is_empty() => words.push_str(&format!(
                "; within the daily cap{}",
                cap.trim_start_matches(" of a daily cap")
            )),
            _ => {}
        }
    }
    words
}

/// The last message that reached the customer before `at`, in words.
fn last_reach_before(inputs: &Inputs<'_>, at: DateTime<Utc>) -> Option<String> {
    let zone = inputs.plan.campaign.time_zone;
    let reach = inputs
        .reaches
        .iter()
        .filter(|r| r.at <= at)
        .max_by_key(|r| r.at)?;
    Some(format!(
        "the last message that reached the customer: {} of campaign {}, by {} at {}",
        reach.reach_out,
        reach.campaign,
        kind_words(reach.kind),
        local(zone, reach.at)
    ))
}

/// The send of another reach-out planned for the customer before `decision`, in words: what a
/// fatigue without a reach yet counted.
fn planned_before(inputs: &Inputs<'_>, decision: &Decision, reach_out: &str) -> Option<String> {
    let zone = inputs.plan.campaign.time_zone;
    inputs
        .decisions
        .iter()
        .filter(|earlier| earlier.position < decision.position)
        .filter_map(|earlier| match &earlier.event {
            OutreachEvent::SendPlanned(planned) if planned.reach_out != reach_out => Some(planned),
            _ => None,
        })
        .next_back()
        .map(|planned| {
            format!(
                "the send already planned: {} by {} for {}",
                planned.reach_out,
                planned.channel,
                local(zone, planned.at)
            )
        })
}

/// The unsubscribe that the book held at `at`, in words.
fn unsubscribe_before(inputs: &Inputs<'_>, at: DateTime<Utc>) -> Option<String> {
    let zone = inputs.plan.campaign.time_zone;
    let outcome = inputs
        .outcomes
        .iter()
        .filter(|o| o.outcome.outcome == OutcomeKind::Unsubscribed && o.recorded_at <= at)
        .max_by_key(|o| o.position)?;
    let row = &outcome.outcome;
    let mut words = format!("unsubscribed at {}", local(zone, row.at));
    match (&row.campaign, &row.reach_out) {
        (Some(campaign), Some(reach_out)) => {
            words.push_str(&format!(" from the message of {reach_out} ({campaign})"));
        }
        (_, Some(reach_out)) => words.push_str(&format!(" from the message of {reach_out}")),
        _ => {}
    }
    if let Some(message) = &row.message {
        words.push_str(&format!(", message {message}"));
    }
    if let Some(file) = &outcome.file {
        words.push_str(&format!(" (imported from {file} line {})", row.line));
    }
    Some(words)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests {
    use super::*;
    use crate::campaign::{Status, Step};
    use crate::customer::events::{CustomerEvent, CustomerRecorded, Signal};
    use crate::customer::quota::Limits;
    use crate::outreach::decide::plan_reach_out;
    use crate::outreach::events::{MessageSent, NotSent, SendPlanned};
    use crate::outreach::state::Outreach;
    use crate::plan::model::Activity;
    use crate::plan::EXAMPLE_PLAN;

    const CAMPAIGN: &str = "sept-festival-2026";
    const BURST: &str = "2026-09-02T00:00:00+08:00";

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The example plan in its early stage, and a book of `count` active buyers with a mail
    /// address (`c-000000`, ...).
    fn world(count: usize) -> (Plan, CampaignState, CustomerBook) {
        let plan = crate::plan::check(EXAMPLE_PLAN.as_bytes()).plan.unwrap();
        let mut state = CampaignState::draft(CAMPAIGN);
        state.plan_version = 1;
        state.status = Status::Running {
            step: Step::stage("early"),
        };
        let mut book = CustomerBook::default();
        for index in 0..count {
            let id = format!("c-{index:06}");
            book.apply(
                &CustomerEvent::CustomerRecorded(CustomerRecorded {
                    customer: id.clone(),
                    line: 2,
                    email: Some(format!("{id}@example.com")),
                    signals: vec![Signal {
                        activity: Activity::Active,
                        at: at("2026-08-30T10:00:00+08:00"),
                        amount: None,
                    }],
                    ..CustomerRecorded::default()
                }),
                at("2026-08-30T10:00:00+08:00"),
            );
        }
        (plan, state, book)
    }

    fn not_sent(events: &[OutreachEvent]) -> Vec<&NotSent> {
        events
            .iter()
            .filter_map(|event| match event {
                OutreachEvent::NotSent(not_sent) => Some(not_sent),
                _ => None,
            })
            .collect()
    }

    fn planned(events: &[OutreachEvent]) -> Vec<&SendPlanned> {
        events
            .iter()
            .filter_map(|event| match event {
                OutreachEvent::SendPlanned(planned) => Some(planned),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_fatigued_customer_is_recorded_with_the_last_reach_and_the_end_of_the_window() {
        let (plan, state, mut book) = world(1);
        book.reached(
            &MessageSent {
                key: format!("{CAMPAIGN}/warm-up-recall/c-000000/1"),
                campaign: CAMPAIGN.to_string(),
                channel: "mail".to_string(),
                kind: ChannelKind::Mail,
                reach_out: Some("warm-up-recall".to_string()),
                to: "c-000000".to_string(),
                template: None,
                template_version: None,
                phase: None,
                stage: None,
                duplicate: false,
                unconfirmed: false,
            },
            at("2026-08-28T10:00:00+08:00"),
        );
        let events = plan_reach_out(
            &plan,
            &state,
            &book,
            &Outreach::default(),
            "early-stage-mail",
            at(BURST),
        )
        .unwrap();
        // The fatigue ends inside the window: the customer is placed then, not dropped, and
        // the decision says why it is not earlier.
        assert!(not_sent(&events).is_empty());
        let planned = planned(&events);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].at, at("2026-09-04T10:00:00+08:00"));
        assert_eq!(
            planned[0].detail.as_deref(),
            Some("fatigued when planned (last reached by mail at 2026-08-28 10:00 +08:00; the channel's fatigue is 7 d (a reach on any channel counts), so not before 2026-09-04 10:00 +08:00): planned for 2026-09-04 10:00 +08:00, the first instant after it with quota left")
        );
    }

    #[test]
    fn a_customer_fatigued_past_the_window_is_recorded_with_the_last_reach_and_its_end() {
        let (plan, state, mut book) = world(1);
        book.reached(
            &MessageSent {
                key: format!("{CAMPAIGN}/warm-up-recall/c-000000/1"),
                campaign: CAMPAIGN.to_string(),
                channel: "mail".to_string(),
                kind: ChannelKind::Mail,
                reach_out: Some("warm-up-recall".to_string()),
                to: "c-000000".to_string(),
                template: None,
                template_version: None,
                phase: None,
                stage: None,
                duplicate: false,
                unconfirmed: false,
            },
            at("2026-09-05T10:00:00+08:00"),
        );
        // Planned late in the early stage, whose window ends on 2026-09-11 00:00.
        let events = plan_reach_out(
            &plan,
            &state,
            &book,
            &Outreach::default(),
            "early-stage-mail",
            at("2026-09-06T00:00:00+08:00"),
        )
        .unwrap();
        let not_sent = not_sent(&events);
        assert_eq!(not_sent.len(), 1);
        assert_eq!(not_sent[0].reason, NotSentReason::Fatigue);
        assert_eq!(
            not_sent[0].detail.as_deref(),
            Some("last reached by mail at 2026-09-05 10:00 +08:00; the channel's fatigue is 7 d (a reach on any channel counts), so not before 2026-09-12 10:00 +08:00")
        );
    }

    #[test]
    fn a_send_given_up_at_dispatch_records_what_changed_since_it_was_planned() {
        let (plan, state, mut book) = world(1);
        let mut outreach = Outreach::default();
        let events = plan_reach_out(
            &plan,
            &state,
            &book,
            &outreach,
            "early-stage-mail",
            at(BURST),
        )
        .unwrap();
        for event in &events {
            outreach.apply(event, at(BURST));
        }
        let send_at = planned(&events)[0].at;
        // The customer unsubscribes from mail before the send goes.
        let row = OutcomeRecorded {
            customer: "c-000000".to_string(),
            line: 2,
            outcome: OutcomeKind::Unsubscribed,
            at: at("2026-09-02T07:00:00+08:00"),
            campaign: None,
            reach_out: None,
            channel: Some(ChannelKind::Mail),
            amount: None,
            message: None,
            offer: None,
        };
        book.apply(
            &CustomerEvent::OutcomeRecorded(row),
            at("2026-09-02T07:00:00+08:00"),
        );
        let renderer = crate::outreach::render::Renderer::new(&plan);
        let decided = crate::outreach::decide::dispatch(
            &plan,
            &state,
            &book,
            &outreach,
            &renderer,
            send_at,
            usize::MAX,
        );
        assert!(decided.messages.is_empty());
        let given_up = not_sent(&decided.not_sent);
        assert_eq!(given_up.len(), 1);
        assert_eq!(given_up[0].reason, NotSentReason::Unsubscribed);
        assert_eq!(
            given_up[0].detail.as_deref(),
            Some("unsubscribed from mail (the customer book at 2026-09-02 08:00 +08:00)")
        );
    }

    #[test]
    fn a_full_day_pushes_the_send_and_a_full_window_is_recorded_with_every_day() {
        let (plan, state, book) = world(2);
        let mail = plan.channel("mail").unwrap();
        let limits = Limits::of(mail);
        let date = |day| NaiveDate::from_ymd_opt(2026, 9, day).unwrap();
        // The first day of the early stage already full (another campaign's sends).
        let mut outreach = Outreach::default();
        outreach
            .ledger
            .reserve("mail", date(2), "shop-mail", 2000, &limits);
        let events = plan_reach_out(
            &plan,
            &state,
            &book,
            &outreach,
            "early-stage-mail",
            at(BURST),
        )
        .unwrap();
        let sends = planned(&events);
        assert_eq!(sends.len(), 2);
        assert_eq!(sends[0].day, date(3));
        assert_eq!(
            sends[0].detail.as_deref(),
            Some("not earlier: 2026-09-02 was full (2,000 of 2,000, the daily cap; 2,000 of them planned earlier); planned for 2026-09-03")
        );

        // Every day of the stage full: nobody placed, each day's numbers recorded.
        for day in 3..=10 {
            outreach
                .ledger
                .reserve("mail", date(day), "shop-mail", 2000, &limits);
        }
        let events = plan_reach_out(
            &plan,
            &state,
            &book,
            &outreach,
            "early-stage-mail",
            at(BURST),
        )
        .unwrap();
        let not_sent = not_sent(&events);
        assert_eq!(not_sent.len(), 2);
        assert_eq!(not_sent[0].reason, NotSentReason::Quota);
        let detail = not_sent[0].detail.as_deref().unwrap();
        assert!(
            detail.starts_with(
                "no day of the window had room: 2026-09-02 was full (2,000 of 2,000, the daily cap"
            ),
            "{detail}"
        );
        assert!(detail.contains("2026-09-10 was full"), "{detail}");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(200), "200");
        assert_eq!(grouped(2000), "2,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn a_send_on_the_first_day_was_not_pushed() {
        let days = vec!["2026-08-26 was full (2,000 of 2,000, the daily cap)".to_string()];
        let dates = [NaiveDate::from_ymd_opt(2026, 8, 26).unwrap_or_default()];
        assert_eq!(pushed_detail(&days, &dates, 0), None);
    }

    #[test]
    fn a_send_on_a_later_day_names_the_full_days_before_it() {
        let date = |d| NaiveDate::from_ymd_opt(2026, 8, d).unwrap_or_default();
        let dates = [date(26), date(27), date(28), date(29), date(30)];
        let days: Vec<String> = dates
            .iter()
            .map(|d| format!("{d} was full (2,000 of 2,000, the daily cap)"))
            .collect();
        assert_eq!(
            pushed_detail(&days, &dates, 1).as_deref(),
            Some("not earlier: 2026-08-26 was full (2,000 of 2,000, the daily cap); planned for 2026-08-27")
        );
        assert_eq!(
            pushed_detail(&days, &dates, 4).as_deref(),
            Some("not earlier: 2026-08-26 was full (2,000 of 2,000, the daily cap), …, 2026-08-28 was full (2,000 of 2,000, the daily cap), 2026-08-29 was full (2,000 of 2,000, the daily cap); planned for 2026-08-30")
        );
        assert_eq!(
            window_full_detail(&days[..2]),
            "no day of the window had room: 2026-08-26 was full (2,000 of 2,000, the daily cap), 2026-08-27 was full (2,000 of 2,000, the daily cap)"
        );
    }
}
