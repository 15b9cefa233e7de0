//! The quota ledger and the send planner.
//!
//! The ledger counts reserved sends per channel, local day (in the campaign's zone) and sending
//! account. The planner spreads an audience over the days of a window within every limit the
//! plan gives the channel: the daily cap over all accounts, the per-account daily cap, the free
//! volume a day and the price of the rest, the daily and monthly budgets for paid volume. Whoever
//! cannot be placed is returned with the reason, never dropped. `audience preview` and the
//! dispatcher plan with this same code.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::eligibility::{is_quiet, next_allowed};
use crate::plan::model::{Channel, QuietHours, QuietPolicy, Sender, Window};
use crate::plan::values::Money;

/// What the plan allows a channel in a local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub daily_cap: Option<u32>,
    pub free_per_day: Option<u32>,
    pub cost_per_1000: Option<Money>,
    pub per_account_daily_cap: Option<u32>,
    pub daily_budget: Option<Money>,
    pub monthly_budget: Option<Money>,
}

impl Limits {
    pub fn of(channel: &Channel) -> Limits {
        Limits {
            daily_cap: channel.daily_cap,
            free_per_day: channel.free_per_day,
            cost_per_1000: channel.cost_per_1000,
            per_account_daily_cap: channel.per_account_daily_cap,
            daily_budget: channel.daily_budget,
            monthly_budget: channel.monthly_budget,
        }
    }

    /// Sends a day that cost nothing: the free volume when the plan gives one; all of them when
    /// the channel has no price; none when it has a price and no free volume.
    fn free_per_day(&self) -> u32 {
        match (self.free_per_day, self.cost_per_1000) {
            (Some(free), _) => free,
            (None, None) => u32::MAX,
            (None, Some(_)) => 0,
        }
    }

    /// The most paid sends a budget buys (`None`: no budget, or nothing is paid).
    fn paid_bought_by(&self, budget: Option<Money>) -> Option<u64> {
        let budget = budget?;
        let price = self.cost_per_1000?.minor();
        if price <= 0 {
            return None;
        }
        Some((budget.minor().max(0) as u64).saturating_mul(1000) / price as u64)
    }
}

/// The cost of `paid` sends at `cost_per_1000`, rounded half up to the minor unit.
pub fn cost_of(paid: u64, cost_per_1000: Option<Money>) -> Money {
    let price = cost_per_1000.map_or(0, Money::minor).max(0) as u64;
    Money::from_minor((paid.saturating_mul(price).saturating_add(500) / 1000) as i64)
}

/// What is reserved on one channel's local day.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayUse {
    pub total: u32,
    pub paid: u32,
    pub per_account: BTreeMap<String, u32>,
}

/// Reserved sends by channel id and local day. Channels with the same id share it across
/// campaigns: the quota is the shop's, not a campaign's.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    days: BTreeMap<(String, NaiveDate), DayUse>,
}

impl Ledger {
    pub fn day(&self, channel: &str, date: NaiveDate) -> Option<&DayUse> {
        self.days.get(&(channel.to_string(), date))
    }

    /// Reserves `count` sends from `account`; the first of the day's free volume are free.
    pub fn reserve(
        &mut self,
        channel: &str,
        date: NaiveDate,
        account: &str,
        count: u32,
        limits: &Limits,
    ) {
        let day = self.days.entry((channel.to_string(), date)).or_default();
        let free_left = limits.free_per_day().saturating_sub(day.total);
        day.paid = day.paid.saturating_add(count.saturating_sub(free_left));
        day.total = day.total.saturating_add(count);
        let used = day.per_account.entry(account.to_string()).or_default();
        *used = used.saturating_add(count);
    }

    /// Records one send already decided (a planned send's event says whether it was paid).
    pub fn record(&mut self, channel: &str, date: NaiveDate, account: &str, paid: bool) {
        let day = self.days.entry((channel.to_string(), date)).or_default();
        day.total = day.total.saturating_add(1);
        day.paid = day.paid.saturating_add(u32::from(paid));
        let used = day.per_account.entry(account.to_string()).or_default();
        *used = used.saturating_add(1);
    }

    /// Gives back one send reserved on `date` (it moved to another day). The day's free volume
    /// is its first sends, whichever they were: with one send fewer, one paid send fewer, while
    /// the day has any.
    pub fn release(&mut self, channel: &str, date: NaiveDate, account: &str) {
        let key = (channel.to_string(), date);
        let Some(day) = self.days.get_mut(&key) else {
            return;
        };
        day.total = day.total.saturating_sub(1);
        day.paid = day.paid.saturating_sub(1).min(day.total);
        if let Some(used) = day.per_account.get_mut(account) {
            *used = used.saturating_sub(1);
            if *used == 0 {
                day.per_account.remove(account);
            }
        }
        if day.total == 0 {
            self.days.remove(&key);
        }
    }

    /// Every channel's reserved days, in order.
    pub fn days(&self) -> impl Iterator<Item = (&str, NaiveDate, &DayUse)> + '_ {
        self.days
            .iter()
            .map(|((channel, date), day)| (channel.as_str(), *date, day))
    }

    /// Paid sends reserved in the calendar month of `date`, every day of it.
    pub fn paid_in_month(&self, channel: &str, date: NaiveDate) -> u64 {
        let Some(first) = NaiveDate::from_ymd_opt(date.year(), date.month(), 1) else {
            return 0;
        };
        self.days
            .range((channel.to_string(), first)..)
            .take_while(|((name, day), _)| {
                name == channel && day.year() == date.year() && day.month() == date.month()
            })
            .map(|(_, day)| u64::from(day.paid))
            .sum()
    }
}

/// What the planner needs to know about the channel and the window.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    pub channel: &'a str,
    pub limits: Limits,
    /// The campaign's zone: local days and the quota reset at its midnight.
    pub zone: Tz,
    pub window: Window,
    /// The first instant a send may go: the later of the window's start and the planning instant.
    pub from: DateTime<Utc>,
    pub quiet: Option<&'a QuietHours>,
    pub sender: Sender,
    /// The sending accounts (the reach-out's, or the channel's).
    pub accounts: &'a [String],
}

/// A candidate: a customer who passed every exclusion the planner does not decide.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub slot: u32,
    /// The customer's own zone when known: quiet hours are read on their wall clock.
    pub zone: Option<Tz>,
    pub owner: Option<&'a str>,
    /// The first instant the customer may be sent this message (the end of their fatigue
    /// window), when later than the request's `from`.
    pub not_before: Option<DateTime<Utc>>,
}

/// Why a reachable customer gets no send in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unplaced {
    /// The window had room, and this reach-out's own sends filled every day of it (cap,
    /// account caps or budget): the audience is larger than the window can carry.
    WindowFull,
    /// Every day of the window was already at its cap, account caps or budget before this
    /// reach-out placed anything: other sends used the quota.
    QuotaUsed,
    /// `sender = "owner"` and the customer has no owner, or the owner has no account on the
    /// channel.
    NoAccount,
    /// Held by quiet hours past the window's end (on the customer's wall clock, or the
    /// channel's quiet hours cover every instant left of the window).
    QuietUntilWindowEnd,
}

impl Unplaced {
    pub const ORDER: [Unplaced; 4] = [
        Unplaced::WindowFull,
        Unplaced::QuotaUsed,
        Unplaced::NoAccount,
        Unplaced::QuietUntilWindowEnd,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Unplaced::WindowFull => "window_full",
            Unplaced::QuotaUsed => "quota_used",
            Unplaced::NoAccount => "no_account",
            Unplaced::QuietUntilWindowEnd => "quiet_until_window_end",
        }
    }
}

/// One planned send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub slot: u32,
    /// Index into [`SendPlan::days`].
    pub day: u32,
    /// Index into the request's accounts.
    pub account: u32,
    pub at: DateTime<Utc>,
}

/// The binding limit of a day, when one stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayLimit {
    DailyCap,
    AccountCaps,
    DailyBudget,
    MonthlyBudget,
}

/// A local day of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayPlan {
    pub date: NaiveDate,
    /// The first instant sends may go that day (quiet hours and the window considered).
    pub opens: Option<DateTime<Utc>>,
    pub sends: u32,
    pub free: u32,
    pub paid: u32,
    pub cost: Money,
    /// Sends per account, in the request's account order.
    pub per_account: Vec<u32>,
    pub limited_by: Option<DayLimit>,
    /// No sending time because the channel's quiet hours cover what the window leaves of it.
    pub quiet: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPlan {
    pub days: Vec<DayPlan>,
    pub placements: Vec<Placement>,
    pub unplaced: Vec<(u32, Unplaced)>,
    /// Customers whose send fell in their quiet hours with `policy = "skip"`.
    pub quiet_skipped: Vec<u32>,
}

/// A day's bounds and what is left of its limits while planning.
struct Day {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    opens: Option<DateTime<Utc>>,
    total: u64,
    paid: u64,
    free_left: u64,
    cap_left: u64,
    paid_left: u64,
    per_account_left: Vec<u64>,
    per_account_sent: Vec<u32>,
    /// Paid sends the ledger holds in this day's month.
    ledger_month_paid: u64,
    /// The window leaves the day sending time, and the channel's quiet hours take all of it.
    quiet: bool,
    limited_by: Option<DayLimit>,
}

/// What became of one candidate.
enum Outcome {
    Placed(Placement),
    Unplaced(Unplaced),
    QuietSkipped,
}

/// The local midnight starting `date` in `zone` (the first instant of the day when midnight falls
/// in a daylight-saving gap).
pub fn day_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut wall = date.and_time(chrono::NaiveTime::MIN);
    for _ in 0..(24 * 4) {
        match zone.from_local_datetime(&wall) {
            chrono::LocalResult::Single(at) => return at.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            chrono::LocalResult::None => wall += Duration::minutes(15),
        }
    }
    wall.and_utc()
}

/// Plans one send for each candidate, in order, on the first day with room.
pub fn plan_sends<'a>(
    request: &PlanRequest<'_>,
    ledger: &Ledger,
    candidates: impl IntoIterator<Item = Candidate<'a>>,
) -> SendPlan {
    let limits = request.limits;
    let implicit = [request.channel.to_string()];
    let accounts: &[String] = if request.accounts.is_empty() {
        &implicit
    } else {
        request.accounts
    };
    let mut days = lay_out_days(request, ledger, accounts);
    let mut placements = Vec::new();
    let mut unplaced = Vec::new();
    let mut quiet_skipped = Vec::new();
    let mut month_paid: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    let month_limit = limits.paid_bought_by(limits.monthly_budget);
    // A customer no day takes: the window filled up with this reach-out's sends, or it was
    // full before them.
    // A window whose every day is shut by the channel's quiet hours has no quota problem.
    let full = if !days.is_empty() && days.iter().all(|day| day.opens.is_none() && day.quiet) {
        Unplaced::QuietUntilWindowEnd
    } else if days
        .iter()
        .all(|day| day_closed(day, month_limit.is_some()))
    {
        Unplaced::QuotaUsed
    } else {
        Unplaced::WindowFull
    };
    let mut first_open = 0usize;
    let mut next_account = 0usize;

    for candidate in candidates {
        // Days before `first_open` are full for everyone.
        while first_open < days.len() && day_closed(&days[first_open], month_limit.is_some()) {
            first_open += 1;
        }
        let account_fixed = match request.sender {
            Sender::Accounts => None,
            Sender::Owner => match candidate
                .owner
                .and_then(|owner| accounts.iter().position(|account| account == owner))
            {
                Some(index) => Some(index),
                None => {
                    unplaced.push((candidate.slot, Unplaced::NoAccount));
                    continue;
                }
            },
        };
        let mut day_index = first_open;
        let mut not_before = request.from;
        if let Some(later) = candidate.not_before.filter(|later| *later > request.from) {
            // Fatigued until `later`: the first day it may go is the one holding it.
            if later >= request.window.end {
                unplaced.push((candidate.slot, full));
                continue;
            }
            not_before = later;
            if let Some(index) = days
                .iter()
                .position(|day| day.start <= later && later < day.end)
            {
                day_index = index.max(day_index);
            }
        }
        let mut outcome = Outcome::Unplaced(full);
        let mut rounds = 0usize;
        while day_index < days.len() && rounds < 4 * days.len() + 8 {
            rounds += 1;
            let Some(opens) = days[day_index].opens else {
                day_index += 1;
                continue;
            };
            let at = opens.max(not_before);
            if at >= days[day_index].end {
                day_index += 1;
                continue;
            }
            // Later than the day opens (a fatigue window's end): maybe in the channel's quiet
            // hours, which hold it.
            if let Some(quiet) = request.quiet.filter(|_| at > opens) {
                let allowed = next_allowed(quiet, request.zone, at);
                if allowed > at {
                    if allowed >= request.window.end {
                        outcome = Outcome::Unplaced(Unplaced::QuietUntilWindowEnd);
                        break;
                    }
                    not_before = allowed;
                    match days
                        .iter()
                        .position(|day| day.start <= allowed && allowed < day.end)
                    {
                        Some(index) => day_index = index.max(day_index),
                        None => break,
                    }
                    continue;
                }
            }
            if let (Some(quiet), Some(zone)) = (request.quiet, candidate.zone) {
                if zone != request.zone && is_quiet(quiet, zone, at) {
                    if quiet.policy == QuietPolicy::Skip {
                        outcome = Outcome::QuietSkipped;
                        break;
                    }
                    let held = next_allowed(quiet, zone, at);
                    if held >= request.window.end {
                        outcome = Outcome::Unplaced(Unplaced::QuietUntilWindowEnd);
                        break;
                    }
                    not_before = held;
                    match days
                        .iter()
                        .position(|day| day.start <= held && held < day.end)
                    {
                        Some(index) => day_index = index.max(day_index),
                        None => break,
                    }
                    continue;
                }
            }
            let month = {
                let local = days[day_index].start.with_timezone(&request.zone);
                (local.year(), local.month())
            };
            let paid_in_month = month_paid.get(&month).copied().unwrap_or(0);
            let month_left = month_limit.map(|limit| {
                limit.saturating_sub(paid_in_month + days[day_index].ledger_month_paid)
            });
            match take(
                &mut days[day_index],
                account_fixed,
                &mut next_account,
                accounts.len(),
                month_left,
            ) {
                Some((account, paid)) => {
                    if paid {
                        *month_paid.entry(month).or_default() += 1;
                    }
                    outcome = Outcome::Placed(Placement {
                        slot: candidate.slot,
                        day: day_index as u32,
                        account: account as u32,
                        at,
                    });
                    break;
                }
                None => day_index += 1,
            }
        }
        match outcome {
            Outcome::Placed(placement) => placements.push(placement),
            Outcome::Unplaced(reason) => unplaced.push((candidate.slot, reason)),
            Outcome::QuietSkipped => quiet_skipped.push(candidate.slot),
        }
    }

    let plans = days
        .into_iter()
        .map(|day| {
            let local = day.start.with_timezone(&request.zone);
            let per_account = day.per_account_sent;
            DayPlan {
                date: local.date_naive(),
                opens: day.opens,
                sends: day.total as u32,
                free: (day.total - day.paid) as u32,
                paid: day.paid as u32,
                cost: cost_of(day.paid, limits.cost_per_1000),
                per_account,
                limited_by: day.limited_by,
                quiet: day.quiet,
            }
        })
        .collect();
    SendPlan {
        days: plans,
        placements,
        unplaced,
        quiet_skipped,
    }
}

/// A day nobody can be placed on any more.
fn day_closed(day: &Day, monthly: bool) -> bool {
    day.opens.is_none()
        || day.cap_left == 0
        || (day.free_left == 0 && day.paid_left == 0)
        || day.per_account_left.iter().all(|left| *left == 0)
        || (monthly && day.limited_by == Some(DayLimit::MonthlyBudget))
}

/// Takes one send from the day, from the fixed account or the next one in turn with room.
/// Returns the account and whether the send is paid.
fn take(
    day: &mut Day,
    fixed: Option<usize>,
    next_account: &mut usize,
    accounts: usize,
    month_paid_left: Option<u64>,
) -> Option<(usize, bool)> {
    if day.cap_left == 0 {
        day.limited_by.get_or_insert(DayLimit::DailyCap);
        return None;
    }
    let paid = day.free_left == 0;
    if paid {
        if day.paid_left == 0 {
            day.limited_by.get_or_insert(DayLimit::DailyBudget);
            return None;
        }
        if month_paid_left == Some(0) {
            day.limited_by.get_or_insert(DayLimit::MonthlyBudget);
            return None;
        }
    }
    let account = match fixed {
        Some(index) => (day.per_account_left.get(index).copied().unwrap_or(0) > 0).then_some(index),
        None => {
            let found = (0..accounts)
                .map(|offset| (*next_account + offset) % accounts)
                .find(|index| day.per_account_left[*index] > 0);
            if let Some(index) = found {
                *next_account = (index + 1) % accounts;
            }
            found
        }
    };
    let Some(account) = account else {
        if day.per_account_left.iter().all(|left| *left == 0) {
            day.limited_by.get_or_insert(DayLimit::AccountCaps);
        }
        return None;
    };
    day.per_account_left[account] -= 1;
    day.per_account_sent[account] += 1;
    day.cap_left -= 1;
    day.total += 1;
    if paid {
        day.paid += 1;
        day.paid_left -= 1;
    } else {
        day.free_left -= 1;
    }
    // The limit this send used up, if it was the last the day allowed.
    if day.limited_by.is_none() {
        day.limited_by = if day.cap_left == 0 {
            Some(DayLimit::DailyCap)
        } else if day.per_account_left.iter().all(|left| *left == 0) {
            Some(DayLimit::AccountCaps)
        } else if day.free_left == 0 && day.paid_left == 0 {
            Some(DayLimit::DailyBudget)
        } else {
            None
        };
    }
    Some((account, paid))
}

/// The local days from `from` to the window's end, each with what the ledger leaves of it.
fn lay_out_days(request: &PlanRequest<'_>, ledger: &Ledger, accounts: &[String]) -> Vec<Day> {
    let limits = request.limits;
    let zone = request.zone;
    let mut days = Vec::new();
    if request.from >= request.window.end {
        return days;
    }
    let mut date = request.from.with_timezone(&zone).date_naive();
    let last = (request.window.end - Duration::milliseconds(1))
        .with_timezone(&zone)
        .date_naive();
    let daily_paid = limits.paid_bought_by(limits.daily_budget);
    while date <= last {
        let start = day_start(zone, date);
        let next = date.succ_opt().unwrap_or(date);
        let end = if next == date {
            request.window.end
        } else {
            day_start(zone, next)
        };
        let used = ledger.day(request.channel, date);
        let used_total = used.map_or(0, |day| day.total);
        let used_paid = used.map_or(0, |day| day.paid);
        let earliest = start.max(request.from).max(request.window.start);
        let mut opens = earliest;
        if let Some(quiet) = request.quiet {
            opens = next_allowed(quiet, zone, opens);
        }
        let closes = end.min(request.window.end);
        let quiet = earliest < closes && opens >= closes;
        let opens = (opens < closes).then_some(opens);
        let per_account_left = accounts
            .iter()
            .map(|account| {
                let used = used
                    .and_then(|day| day.per_account.get(account))
                    .copied()
                    .unwrap_or(0);
                limits
                    .per_account_daily_cap
                    .map_or(u64::MAX, |cap| u64::from(cap.saturating_sub(used)))
            })
            .collect();
        days.push(Day {
            start,
            end: end.min(request.window.end),
            opens,
            total: 0,
            paid: 0,
            free_left: u64::from(limits.free_per_day().saturating_sub(used_total)),
            cap_left: limits
                .daily_cap
                .map_or(u64::MAX, |cap| u64::from(cap.saturating_sub(used_total))),
            paid_left: daily_paid
                .map_or(u64::MAX, |paid| paid.saturating_sub(u64::from(used_paid))),
            per_account_left,
            per_account_sent: vec![0; accounts.len()],
            ledger_month_paid: ledger.paid_in_month(request.channel, date),
            quiet,
            limited_by: None,
        });
        if next == date {
            break;
        }
        date = next;
    }
    days
}
