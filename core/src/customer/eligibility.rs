//! Who may be sent a message, and why not: each exclusion counted on its own, in a fixed order
//! (the first that applies is the one counted), documented in `docs/audiences.md`.
//!
//! 1. no or invalid address for the channel
//! 2. unsubscribed from the channel
//! 3. in the recycle bin
//! 4. in one of the channel's excluded segments (`exclude_segments`)
//! 5. reached within the fatigue window (for a reach-out, only when the window ends before the
//!    fatigue does: otherwise the customer is placed on the first day they may be reached)
//! 6. already reached by this reach-out
//! 7. quiet hours, when the plan says `skip` (decided by the planner, which knows the instant)

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::book::{channel_index, Customer, CustomerBook, Sym, NEVER};
use super::segment::Segments;
use crate::plan::model::{ChannelKind, FatigueScope, QuietHours};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    NoAddress,
    Unsubscribed,
    RecycleBin,
    ExcludedSegment,
    Fatigue,
    AlreadyReached,
    QuietHours,
}

impl Exclusion {
    /// The order in which they are checked and listed.
    pub const ORDER: [Exclusion; 7] = [
        Exclusion::NoAddress,
        Exclusion::Unsubscribed,
        Exclusion::RecycleBin,
        Exclusion::ExcludedSegment,
        Exclusion::Fatigue,
        Exclusion::AlreadyReached,
        Exclusion::QuietHours,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Exclusion::NoAddress => "no_address",
            Exclusion::Unsubscribed => "unsubscribed",
            Exclusion::RecycleBin => "recycle_bin",
            Exclusion::ExcludedSegment => "excluded_segment",
            Exclusion::Fatigue => "fatigue",
            Exclusion::AlreadyReached => "already_reached",
            Exclusion::QuietHours => "quiet_hours",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The rules of one channel (and reach-out) a customer is checked against.
#[derive(Debug, Clone)]
pub struct Rules {
    pub kind: ChannelKind,
    /// Milliseconds: a customer reached less than this before the instant is fatigued.
    pub fatigue_ms: i64,
    pub fatigue_scope: FatigueScope,
    /// Indexes (in `Segments`) of the channel's `exclude_segments`.
    pub excluded_segments: Vec<usize>,
    /// The reach-out's key in the book's symbols, when it has reached anyone yet.
    pub reach_out: Option<Sym>,
}

/// Whether the customer has an address the channel can use. In-site and IM messages go to the
/// buyer's platform account (the customer id); mail needs a well-formed address that has not
/// bounced; webhooks and the console reach everyone.
pub fn has_address(customer: &Customer, kind: ChannelKind) -> bool {
    match kind {
        ChannelKind::Mail => customer.email_ok,
        ChannelKind::InSite | ChannelKind::Im | ChannelKind::Webhook | ChannelKind::Console => true,
    }
}

/// The first exclusion that applies to the customer in `slot` at `at` (milliseconds), quiet
/// hours aside; `None` when the customer may be sent a message.
pub fn exclusion(
    book: &CustomerBook,
    segments: &Segments,
    rules: &Rules,
    slot: u32,
    customer: &Customer,
    at: i64,
) -> Option<Exclusion> {
    if !has_address(customer, rules.kind) {
        return Some(Exclusion::NoAddress);
    }
    if customer.unsubscribed_from(rules.kind) {
        return Some(Exclusion::Unsubscribed);
    }
    if customer.recycle_bin {
        return Some(Exclusion::RecycleBin);
    }
    if rules
        .excluded_segments
        .iter()
        .any(|index| segments.contains(book, *index, slot, at))
    {
        return Some(Exclusion::ExcludedSegment);
    }
    if fatigued(customer, rules, at) {
        return Some(Exclusion::Fatigue);
    }
    if already_reached(customer, rules) {
        return Some(Exclusion::AlreadyReached);
    }
    None
}

/// Reached less than the fatigue window before `at`: at exactly the window's length the customer
/// may be reached again.
pub fn fatigued(customer: &Customer, rules: &Rules, at: i64) -> bool {
    let last = last_reach(customer, rules);
    last != NEVER && last <= at && at - last < rules.fatigue_ms
}

/// The last reach that counts for the channel's fatigue (milliseconds, `NEVER` if none).
fn last_reach(customer: &Customer, rules: &Rules) -> i64 {
    match rules.fatigue_scope {
        FatigueScope::AnyChannel => customer.last_reached_any(),
        FatigueScope::ThisChannel => customer.last_reached[channel_index(rules.kind)],
    }
}

/// The instant (milliseconds) a fatigued customer may be reached again: the last reach that
/// counts plus the fatigue window.
pub fn fatigue_ends(customer: &Customer, rules: &Rules) -> i64 {
    last_reach(customer, rules).saturating_add(rules.fatigue_ms)
}

/// Already reached by the reach-out the rules are for.
pub fn already_reached(customer: &Customer, rules: &Rules) -> bool {
    rules
        .reach_out
        .is_some_and(|key| customer.reached_by.binary_search(&key).is_ok())
}

/// Whether `instant` falls in the quiet hours, read on the wall clock of `zone`. Quiet hours are
/// `[start, end)`; when `start` is after `end` they span midnight (22:00 to 08:00).
pub fn is_quiet(quiet: &QuietHours, zone: Tz, instant: DateTime<Utc>) -> bool {
    let time = instant.with_timezone(&zone).time();
    in_quiet_span(quiet.start, quiet.end, time)
}

fn in_quiet_span(start: NaiveTime, end: NaiveTime, time: NaiveTime) -> bool {
    if start <= end {
        start <= time && time < end
    } else {
        time >= start || time < end
    }
}

/// The first instant at or after `instant` outside the quiet hours in `zone`. When the end of the
/// quiet hours does not exist that day (a daylight-saving gap), the first instant after the gap.
pub fn next_allowed(quiet: &QuietHours, zone: Tz, instant: DateTime<Utc>) -> DateTime<Utc> {
    if !is_quiet(quiet, zone, instant) {
        return instant;
    }
    let local = instant.with_timezone(&zone);
    let date = local.date_naive();
    let end_date = if quiet.start > quiet.end && local.time() >= quiet.start {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    let mut wall = end_date.and_time(quiet.end);
    // A gap lasts at most a few hours; step over it a minute at a time.
    for _ in 0..(24 * 60) {
        match zone.from_local_datetime(&wall) {
            chrono::LocalResult::Single(at) => return at.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            chrono::LocalResult::None => wall += Duration::minutes(1),
        }
    }
    instant
}
