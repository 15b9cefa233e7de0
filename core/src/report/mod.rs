//! The boss's weekly business report: one ISO week of a campaign (Monday 00:00 to the next
//! Monday 00:00 in its zone), assembled from the projections' answers and nothing else, then
//! rendered as text, Markdown or HTML (`render`). docs/reports.md says where every number comes
//! from.
//!
//! - [`week`]: ISO weeks and their windows in a zone;
//! - [`offers`]: the orders that named an offer, a projection, and each offer's uptake;
//! - [`weekly`]: the report, from the plan, the week, the instant asked at and the projections
//!   (funnel, shop's numbers, outbox, task board, offer orders) with the log position they
//!   reflect;
//! - [`render`]: the report as text, Markdown (lists, which the staff robots show) and HTML (a
//!   whole document with its style inline, or its `<main>` alone for a page to embed);
//! - [`schedule`]: `[reports.weekly]` of the plan: when a report is due, and the
//!   `ReportPlanned` decision the dispatcher sends through the staff channels.
//!
//! Measured up to `as_of`, the week's end or the instant asked at if earlier: a week that has
//! ended reads the same whenever it is asked for, as long as the log holds the same events.
//! Nothing here reads a clock; every list is in a fixed order; the same inputs give the same
//! report, and the same report the same bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::campaign::timeline::local_rfc3339;
use crate::campaign::SkippedStep;
use crate::funnel::{stage_key, targets_against_actuals, value_kind, Funnel, Source, STAGES};
use crate::metrics::{shop_actual, ShopMetrics};
use crate::outreach::Outreach;
use crate::plan::model::{Metric, MetricKind, OfferRef, Plan, TargetValue, Window};
use crate::plan::values::Money;
use crate::task::{occurrences, skipped_by, TaskBoard};

pub mod offers;
pub mod render;
pub mod schedule;
pub mod week;

pub use offers::OfferOrders;
pub use week::IsoWeek;

/// How many hot products and keywords the report lists.
pub const SHOWN_HOT: usize = 10;

/// The week's headline figures, in this order.
pub const HEADLINE: [Metric; 7] = [
    Metric::Gmv,
    Metric::Orders,
    Metric::AverageOrderValue,
    Metric::Inquiries,
    Metric::Fans,
    Metric::Visitors,
    Metric::ConversionRate,
];

/// A figure: money as exact text (`"86400.00"`), a count as an integer, a rate as a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Count(u64),
    Rate(f64),
    Money(Money),
}

impl From<TargetValue> for Amount {
    fn from(value: TargetValue) -> Amount {
        match value {
            TargetValue::Money(money) => Amount::Money(money),
            TargetValue::Count(count) => Amount::Count(count),
            TargetValue::Rate(rate) => Amount::Rate(rate),
        }
    }
}

impl Amount {
    /// As a number, for ratios.
    fn number(self) -> f64 {
        match self {
            Amount::Count(count) => count as f64,
            Amount::Rate(rate) => rate,
            Amount::Money(money) => money.minor() as f64,
        }
    }
}

fn kind_key(kind: MetricKind) -> String {
    match kind {
        MetricKind::Money => "money",
        MetricKind::Count => "count",
        MetricKind::Rate => "rate",
    }
    .to_string()
}

/// The report. Fields (here and below) in alphabetical order, as its JSON has them; instants are
/// RFC 3339 with the campaign's offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeeklyReport {
    /// What the numbers are measured up to: the week's end, or the instant asked at when the
    /// week has not ended yet.
    pub as_of: String,
    /// The log position the projections reflected: every number is computed from the events up
    /// to it.
    pub as_of_position: u64,
    pub campaign: String,
    pub campaign_name: String,
    /// Whether the week had ended at `as_of`.
    pub complete: bool,
    pub currency: String,
    /// The local days of the week measured (7 once it has ended; today counts once begun).
    pub days: u64,
    /// The same, of the week before.
    pub days_week_before: u64,
    /// The week's end: the next Monday 00:00.
    pub end: String,
    /// The funnel per phase the plan has, then overall, at `as_of`, beside the week before's end.
    pub funnel: Vec<FunnelBlock>,
    /// The week's figures against the week before's.
    pub headline: Vec<HeadlineRow>,
    /// From the shop's numbers, most first.
    pub hot_keywords: Vec<HotRow>,
    pub hot_products: Vec<HotRow>,
    /// Work due before `as_of` and not done by then, per task, escalated first.
    pub late: Vec<LateTask>,
    pub next_week: NextWeek,
    /// Each offer of the plan, in the plan's order (coupons, tiered offers, discounts, bundles).
    pub offers: Vec<OfferRow>,
    /// Names orders gave that no offer of the plan in force answers to.
    pub other_offers: Vec<OtherOffer>,
    /// The phases the week overlaps.
    pub phases: Vec<PhaseSpan>,
    /// The plan's `average_order_value`, which offers' thresholds are set against.
    pub plan_average_order_value: Option<Money>,
    pub previous_week: String,
    /// Messages to customers sent in the week, per channel of the plan.
    pub reach_outs: ReachOuts,
    /// How many of `days` the shop's numbers give figures for: a figure from them covers those
    /// days only.
    pub shop_days: u64,
    pub shop_days_week_before: u64,
    /// Each burst stage the week overlaps, with its targets against what it achieved up to
    /// `as_of`.
    pub stages: Vec<StageBlock>,
    /// Monday 00:00.
    pub start: String,
    /// Task occurrences marked done in the week, per person: a ranking, most first.
    pub tasks_done: Vec<PersonDone>,
    pub time_zone: String,
    /// `2026-W36`.
    pub week: String,
}

/// One headline figure: this week's and the week before's, each with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadlineRow {
    /// This week's over the week before's, less one (`0.25`: a quarter more); `null` when either
    /// is missing, the week before's is zero, they come from different sources, or from the
    /// shop's numbers missing days of either week.
    pub change: Option<f64>,
    /// `money`, `count` or `rate`.
    pub kind: String,
    /// A stage target's metric key: `gmv`, `orders`, `average_order_value`, `inquiries`, `fans`,
    /// `visitors`, `conversion_rate`.
    pub metric: String,
    /// `shop` (the shop's own numbers), `campaign` (the campaign's reaches and the orders
    /// attributed to them); `null` when not measured.
    pub source: Option<String>,
    pub this_week: Option<Amount>,
    pub week_before: Option<Amount>,
    pub week_before_source: Option<String>,
}

/// A phase the week overlaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub end: String,
    pub name: String,
    /// `prep`, `warm_up`, `burst`, `review`.
    pub phase: String,
    pub start: String,
}

/// A burst stage and its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageBlock {
    pub end: String,
    pub id: String,
    pub name: String,
    pub start: String,
    /// Each of the stage's targets, in the plan's order.
    pub targets: Vec<TargetRow>,
    pub theme: String,
}

/// A stage target beside what the stage achieved from its start up to `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRow {
    /// `null`: not measured (or a ratio without paying buyers yet).
    pub actual: Option<Amount>,
    pub kind: String,
    pub metric: String,
    /// actual / target.
    pub ratio: Option<f64>,
    /// `shop` or `campaign`; `null` when not measured.
    pub source: Option<String>,
    pub target: Amount,
}

/// The funnel of a phase (or `overall`): each stage at `as_of` and at the week before's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelBlock {
    /// `prep`, `warm_up`, `burst`, `review`, or `overall`.
    pub phase: String,
    pub stages: Vec<FunnelCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelCount {
    /// Of the stage above, at `as_of`; `null` for potential and after an empty stage.
    pub conversion: Option<f64>,
    pub customers: u64,
    /// `potential`, `reached`, `handshake`, `order`, `repurchase`.
    pub stage: String,
    /// At the end of the week before.
    pub week_before: u64,
}

/// Messages sent in the week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReachOuts {
    /// Each channel of the plan, in the plan's order.
    pub channels: Vec<ChannelWeek>,
    pub cost: Money,
    pub free: u64,
    pub paid: u64,
    pub sent: u64,
    pub week_before_sent: u64,
}

/// One channel's week: sent, of which free and paid (as each send was planned against its
/// day's free volume), and what the paid ones cost at the plan's price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelWeek {
    pub channel: String,
    /// Per 1,000 paid messages, as the plan says; `null` when the channel has no price.
    pub cost_per_1000: Option<Money>,
    /// The paid messages' cost, day by day at the plan's price (each day's rounded half up).
    pub cost: Money,
    pub free: u64,
    /// The plan's free volume a day; `null` when it gives none.
    pub free_per_day: Option<u32>,
    /// `mail`, `in_site`...
    pub kind: String,
    pub name: String,
    pub paid: u64,
    pub sent: u64,
    pub week_before_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotRow {
    pub count: u64,
    pub name: String,
}

/// One offer's uptake in the week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferRow {
    /// GMV over the orders that gave an amount; `null` without one.
    pub average_order_value: Option<Money>,
    /// Orders whose amount falls short of the threshold (a data problem, or the platform's rule
    /// bent).
    pub below_threshold: u64,
    /// Distinct customers who placed the orders.
    pub buyers: u64,
    /// A coupon's code.
    pub code: Option<String>,
    pub gmv: Money,
    pub id: String,
    /// `coupon`, `tiered`, `discount`, `bundle`.
    pub kind: String,
    pub name: String,
    pub orders: u64,
    pub orders_without_amount: u64,
    /// Orders placed outside the offer's window (before it started or after it ended).
    pub outside_window: u64,
    /// The spend the plan set: a coupon's `min_spend`, a tiered offer's first tier.
    pub threshold: Option<Money>,
    /// A tiered offer's tiers, with the orders that reached each (the highest one reached).
    pub tiers: Vec<TierRow>,
    /// average order value / threshold (`1.2`: 20% above it).
    pub versus_threshold: Option<f64>,
    pub week_before_orders: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierRow {
    pub off: Money,
    pub orders: u64,
    pub spend: Money,
}

/// Orders naming an offer the plan in force does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherOffer {
    pub gmv: Money,
    pub name: String,
    pub orders: u64,
}

/// A person's week of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonDone {
    /// Occurrences marked done in the week.
    pub done: u64,
    /// Of them, done by their due instant.
    pub on_time: u64,
    pub person: String,
    /// The roles of the tasks done, sorted.
    pub roles: Vec<String>,
}

/// A task with occurrences late at `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateTask {
    /// Of them, past the task's `escalate_after` (the boss was told, or will be).
    pub escalated: u64,
    /// The latest due instant among them.
    pub last_due: String,
    /// How many occurrences are late.
    pub occurrences: u64,
    /// The earliest due instant among them.
    pub oldest_due: String,
    pub role: String,
    pub task: String,
    pub title: String,
}

/// The week after: what changes and what is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextWeek {
    pub changes: Vec<Change>,
    pub end: String,
    pub start: String,
    /// Task occurrences due in it, per task, in order of the first due instant.
    pub tasks: Vec<TaskDue>,
    pub week: String,
}

/// A phase or stage starting, or the campaign ending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub at: String,
    /// The phase key or stage id.
    pub id: String,
    /// `phase_starts`, `stage_starts`, `campaign_ends`.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDue {
    pub first_due: String,
    pub last_due: String,
    pub occurrences: u64,
    pub role: String,
    pub task: String,
    pub title: String,
}

/// What the report is made of: the projections' answers, each caught up to `position`.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub week: IsoWeek,
    /// The instant the report is asked at.
    pub now: DateTime<Utc>,
    /// The log position the projections reflect.
    pub position: u64,
    pub funnel: &'a Funnel,
    pub shop: &'a ShopMetrics,
    pub outreach: &'a Outreach,
    pub board: &'a TaskBoard,
    /// The steps advances cut short: their tasks are neither late nor due.
    pub skipped: &'a [SkippedStep],
    pub offers: &'a OfferOrders,
}

/// The ISO weeks a campaign's span overlaps: its first and its last.
pub fn campaign_weeks(plan: &Plan) -> (IsoWeek, IsoWeek) {
    let zone = plan.campaign.time_zone;
    let span = plan.span();
    let last = span
        .end
        .checked_sub_signed(Duration::milliseconds(1))
        .unwrap_or(span.end)
        .max(span.start);
    (
        IsoWeek::of_instant(zone, span.start),
        IsoWeek::of_instant(zone, last),
    )
}

/// The week a report may be asked for: one the campaign overlaps and that has started by `now`;
/// or why not, in words. With no week named, the week containing `now`.
pub fn week_to_report(
    plan: &Plan,
    asked: Option<IsoWeek>,
    now: DateTime<Utc>,
) -> Result<IsoWeek, String> {
    let zone = plan.campaign.time_zone;
    let (first, last) = campaign_weeks(plan);
    let runs = format!(
        "campaign {} runs {} to {} (weeks {first} to {last})",
        plan.campaign.id,
        crate::campaign::timeline::local(zone, plan.span().start),
        crate::campaign::timeline::local(zone, plan.span().end),
    );
    let week = match asked {
        Some(week) => week,
        None => {
            let week = IsoWeek::of_instant(zone, now);
            if week < first || week > last {
                return Err(format!(
                    "now ({}) is in {week}, outside the campaign: {runs}; name a week with --week",
                    crate::campaign::timeline::local(zone, now)
                ));
            }
            week
        }
    };
    if week < first || week > last {
        return Err(format!("{week} is outside the campaign: {runs}"));
    }
    let window = week.window(zone);
    if window.start > now {
        let latest = IsoWeek::of_instant(zone, now);
        let hint = if latest >= first {
            format!("; the latest week with numbers is {latest}")
        } else {
            String::new()
        };
        return Err(format!(
            "{week} has not started yet: it starts {} and now is {}{hint}",
            crate::campaign::timeline::local(zone, window.start),
            crate::campaign::timeline::local(zone, now)
        ));
    }
    Ok(week)
}

/// The report of `inputs.week`, measured up to the week's end or `inputs.now`, whichever comes
/// first (see the module's documentation).
pub fn weekly(inputs: &Inputs<'_>) -> WeeklyReport {
    let plan = inputs.plan;
    let zone = plan.campaign.time_zone;
    let campaign = plan.campaign.id.as_str();
    let at = |instant: DateTime<Utc>| local_rfc3339(zone, instant);
    let window = inputs.week.window(zone);
    let as_of = window.end.min(inputs.now).max(window.start);
    let previous = inputs.week.previous();
    let previous_window = previous.window(zone);
    let previous_as_of = previous_window
        .end
        .min(inputs.now)
        .max(previous_window.start);

    let shop = inputs.shop.window(window.start, as_of);
    WeeklyReport {
        as_of: at(as_of),
        as_of_position: inputs.position,
        campaign: campaign.to_string(),
        campaign_name: plan.campaign.name.clone(),
        complete: as_of >= window.end,
        currency: plan.campaign.currency.clone(),
        days: days_measured(inputs.week, zone, as_of),
        days_week_before: days_measured(previous, zone, previous_as_of),
        end: at(window.end),
        funnel: funnel(inputs.funnel, plan, as_of, previous_as_of),
        headline: headline(inputs, window, as_of, previous_window, previous_as_of),
        hot_keywords: hot(&shop.hot_keywords),
        hot_products: hot(&shop.hot_products),
        late: late(inputs, as_of),
        next_week: next_week(inputs),
        offers: offer_rows(inputs, window, as_of, previous_window, previous_as_of),
        other_offers: other_offers(inputs, window, as_of),
        phases: plan
            .phases
            .iter()
            .filter(|phase| phase.window.overlaps(&window))
            .map(|phase| PhaseSpan {
                end: at(phase.window.end),
                name: phase.name.clone(),
                phase: phase.kind.key().to_string(),
                start: at(phase.window.start),
            })
            .collect(),
        plan_average_order_value: plan.campaign.average_order_value,
        previous_week: previous.to_string(),
        reach_outs: reach_outs(inputs, window, as_of, previous_window, previous_as_of),
        shop_days: inputs.shop.days(window.start, as_of).len() as u64,
        shop_days_week_before: inputs
            .shop
            .days(previous_window.start, previous_as_of)
            .len() as u64,
        stages: stages(inputs, window, as_of),
        start: at(window.start),
        tasks_done: tasks_done(inputs, window, as_of),
        time_zone: zone.name().to_string(),
        week: inputs.week.to_string(),
    }
}

/// The local days of a week begun by `as_of`.
fn days_measured(week: IsoWeek, zone: chrono_tz::Tz, as_of: DateTime<Utc>) -> u64 {
    week.days()
        .filter(|day| week::midnight(zone, *day) < as_of)
        .count() as u64
}

/// What a window measured: the shop's numbers over it (and whether they cover every day of
/// it), and the campaign's own.
struct Measured {
    shop: crate::metrics::Figures,
    shop_whole: bool,
    campaign: crate::funnel::StageActuals,
}

impl Measured {
    fn of(inputs: &Inputs<'_>, week: IsoWeek, window: Window, as_of: DateTime<Utc>) -> Measured {
        let zone = inputs.plan.campaign.time_zone;
        Measured {
            shop: inputs.shop.window(window.start, as_of).figures,
            shop_whole: inputs.shop.days(window.start, as_of).len() as u64
                >= days_measured(week, zone, as_of),
            campaign: inputs
                .funnel
                .window_actuals(&inputs.plan.campaign.id, "week", window, as_of),
        }
    }

    /// A figure: the shop's where its numbers give it, else the campaign's own.
    fn get(&self, metric: Metric) -> Option<(TargetValue, Source)> {
        shop_actual(&self.shop, metric)
            .map(|value| (value, Source::Shop))
            .or_else(|| {
                self.campaign
                    .actual(metric)
                    .map(|value| (value, Source::Campaign))
            })
    }
}

fn headline(
    inputs: &Inputs<'_>,
    window: Window,
    as_of: DateTime<Utc>,
    previous_window: Window,
    previous_as_of: DateTime<Utc>,
) -> Vec<HeadlineRow> {
    let now = Measured::of(inputs, inputs.week, window, as_of);
    let then = Measured::of(
        inputs,
        inputs.week.previous(),
        previous_window,
        previous_as_of,
    );
    HEADLINE
        .iter()
        .map(|metric| {
            let this = now.get(*metric);
            let before = then.get(*metric);
            // The shop's numbers of some days only compare with nothing.
            let comparable = this.zip(before).is_some_and(|((_, from), (_, was))| {
                from == was && (from != Source::Shop || (now.shop_whole && then.shop_whole))
            });
            let change = match (this, before) {
                (Some((this, _)), Some((before, _))) if comparable => {
                    let (this, before) =
                        (Amount::from(this).number(), Amount::from(before).number());
                    (before != 0.0).then(|| this / before - 1.0)
                }
                _ => None,
            };
            HeadlineRow {
                change,
                kind: kind_key(metric.kind()),
                metric: metric.key().to_string(),
                source: this.map(|(_, source)| source.key().to_string()),
                this_week: this.map(|(value, _)| value.into()),
                week_before: before.map(|(value, _)| value.into()),
                week_before_source: before.map(|(_, source)| source.key().to_string()),
            }
        })
        .collect()
}

fn stages(inputs: &Inputs<'_>, window: Window, as_of: DateTime<Utc>) -> Vec<StageBlock> {
    let plan = inputs.plan;
    let zone = plan.campaign.time_zone;
    let actuals = inputs.funnel.stage_actuals(plan, as_of);
    let shop: Vec<crate::metrics::Figures> = plan
        .stages
        .iter()
        .map(|stage| {
            let end = stage.window.end.min(as_of).max(stage.window.start);
            inputs.shop.window(stage.window.start, end).figures
        })
        .collect();
    let lines = targets_against_actuals(plan, &actuals, &shop);
    plan.stages
        .iter()
        .filter(|stage| stage.window.overlaps(&window))
        .map(|stage| StageBlock {
            end: local_rfc3339(zone, stage.window.end),
            id: stage.id.clone(),
            name: stage.name.clone(),
            start: local_rfc3339(zone, stage.window.start),
            targets: {
                // The boss's order: GMV first, as `Metric::ALL` has them.
                let mut mine: Vec<&crate::funnel::TargetLine> =
                    lines.iter().filter(|line| line.stage == stage.id).collect();
                mine.sort_by_key(|line| Metric::ALL.iter().position(|m| *m == line.metric));
                mine
            }
            .into_iter()
            .map(|line| TargetRow {
                actual: line.actual.map(Amount::from),
                kind: kind_key(value_kind(line.target)),
                metric: line.metric.key().to_string(),
                ratio: line.ratio,
                source: line.source.map(|source| source.key().to_string()),
                target: line.target.into(),
            })
            .collect(),
            theme: stage.theme.clone(),
        })
        .collect()
}

fn funnel(
    funnel: &Funnel,
    plan: &Plan,
    as_of: DateTime<Utc>,
    previous_as_of: DateTime<Utc>,
) -> Vec<FunnelBlock> {
    let now = funnel.report(plan, as_of);
    let before = funnel.report(plan, previous_as_of);
    let phases = plan
        .phases
        .iter()
        .map(|phase| (phase.kind.key().to_string(), Some(phase.kind)))
        .chain(std::iter::once(("overall".to_string(), None)));
    phases
        .map(|(name, phase)| {
            let steps = match phase {
                None => Some(&now.overall),
                Some(kind) => now
                    .phases
                    .iter()
                    .find(|funnel| funnel.phase == kind)
                    .map(|funnel| &funnel.steps),
            };
            FunnelBlock {
                phase: name,
                stages: STAGES
                    .iter()
                    .map(|stage| {
                        let step = steps.and_then(|steps| steps.iter().find(|s| s.stage == *stage));
                        FunnelCount {
                            conversion: step.and_then(|step| step.conversion),
                            customers: step.map_or(0, |step| step.customers),
                            stage: stage_key(*stage).to_string(),
                            week_before: before.count(phase, *stage),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Per channel id: (sent, paid, cost) in the window, the cost day by day.
fn sent_in(
    inputs: &Inputs<'_>,
    window: Window,
    as_of: DateTime<Utc>,
) -> BTreeMap<String, (u64, u64, Money)> {
    let plan = inputs.plan;
    let zone = plan.campaign.time_zone;
    let end = window.end.min(as_of);
    let days = inputs
        .outreach
        .sent_per_day(&plan.campaign.id, zone, window.start, end);
    let mut channels: BTreeMap<String, (u64, u64, Money)> = BTreeMap::new();
    for crate::outreach::state::DaySent {
        channel,
        sent,
        paid,
        ..
    } in days
    {
        let price = plan.channel(&channel).and_then(|found| found.cost_per_1000);
        let cost = crate::customer::quota::cost_of(paid, price);
        let entry = channels.entry(channel).or_insert((0, 0, Money::default()));
        entry.0 += sent;
        entry.1 += paid;
        entry.2 = Money::from_minor(entry.2.minor().saturating_add(cost.minor()));
    }
    channels
}

fn reach_outs(
    inputs: &Inputs<'_>,
    window: Window,
    as_of: DateTime<Utc>,
    previous_window: Window,
    previous_as_of: DateTime<Utc>,
) -> ReachOuts {
    let plan = inputs.plan;
    let this = sent_in(inputs, window, as_of);
    let before = sent_in(inputs, previous_window, previous_as_of);
    let mut channels: Vec<ChannelWeek> = plan
        .channels
        .iter()
        .map(|channel| {
            let (sent, paid, cost) =
                this.get(&channel.id)
                    .copied()
                    .unwrap_or((0, 0, Money::default()));
            ChannelWeek {
                channel: channel.id.clone(),
                cost_per_1000: channel.cost_per_1000,
                cost,
                free: sent.saturating_sub(paid),
                free_per_day: channel.free_per_day,
                kind: channel.kind.as_str().to_string(),
                name: channel.name.clone(),
                paid,
                sent,
                week_before_sent: before.get(&channel.id).map_or(0, |(sent, _, _)| *sent),
            }
        })
        .collect();
    // A channel a revision removed, which sent in the week.
    for (channel, (sent, paid, cost)) in &this {
        if plan.channel(channel).is_none() {
            channels.push(ChannelWeek {
                channel: channel.clone(),
                cost_per_1000: None,
                cost: *cost,
                free: sent.saturating_sub(*paid),
                free_per_day: None,
                kind: String::new(),
                name: channel.clone(),
                paid: *paid,
                sent: *sent,
                week_before_sent: before.get(channel).map_or(0, |(sent, _, _)| *sent),
            });
        }
    }
    ReachOuts {
        cost: Money::from_minor(channels.iter().map(|c| c.cost.minor()).sum()),
        free: channels.iter().map(|c| c.free).sum(),
        paid: channels.iter().map(|c| c.paid).sum(),
        sent: channels.iter().map(|c| c.sent).sum(),
        week_before_sent: before.values().map(|(sent, _, _)| sent).sum(),
        channels,
    }
}

fn hot(list: &[crate::metrics::Hot]) -> Vec<HotRow> {
    list.iter()
        .take(SHOWN_HOT)
        .map(|hot| HotRow {
            count: hot.count,
            name: hot.name.clone(),
        })
        .collect()
}

fn offer_rows(
    inputs: &Inputs<'_>,
    window: Window,
    as_of: DateTime<Utc>,
    previous_window: Window,
    previous_as_of: DateTime<Utc>,
) -> Vec<OfferRow> {
    let plan = inputs.plan;
    let (this, _) = inputs.offers.uptake(plan, window, as_of);
    let (before, _) = inputs.offers.uptake(plan, previous_window, previous_as_of);
    plan.offers
        .all()
        .into_iter()
        .map(|offer| {
            let uptake = this.get(offer.id()).cloned().unwrap_or_default();
            let threshold = offer.threshold();
            let average = uptake.average_order_value();
            let (reached, _) = offers::tiers_reached(&offer, &uptake.amounts);
            OfferRow {
                average_order_value: average,
                below_threshold: offers::below(threshold, &uptake.amounts),
                buyers: uptake.buyers,
                code: match offer {
                    OfferRef::Coupon(coupon) => coupon.code.clone(),
                    _ => None,
                },
                gmv: uptake.gmv,
                id: offer.id().to_string(),
                kind: offer.kind().to_string(),
                name: offer.name().to_string(),
                orders: uptake.orders,
                orders_without_amount: uptake.orders_without_amount,
                outside_window: offer.window().map_or(0, |window| {
                    uptake
                        .instants
                        .iter()
                        .filter(|at| !window.contains(**at))
                        .count() as u64
                }),
                threshold,
                tiers: match offer {
                    OfferRef::Tiered(tiered) => tiered
                        .tiers
                        .iter()
                        .zip(reached)
                        .map(|((spend, off), orders)| TierRow {
                            off: *off,
                            orders,
                            spend: *spend,
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                versus_threshold: match (average, threshold) {
                    (Some(average), Some(threshold)) if threshold.minor() > 0 => {
                        Some(average.minor() as f64 / threshold.minor() as f64)
                    }
                    _ => None,
                },
                week_before_orders: before.get(offer.id()).map_or(0, |uptake| uptake.orders),
            }
        })
        .collect()
}

fn other_offers(inputs: &Inputs<'_>, window: Window, as_of: DateTime<Utc>) -> Vec<OtherOffer> {
    let (_, other) = inputs.offers.uptake(inputs.plan, window, as_of);
    other
        .into_iter()
        .map(|(name, uptake)| OtherOffer {
            gmv: uptake.gmv,
            name,
            orders: uptake.orders,
        })
        .collect()
}

fn tasks_done(inputs: &Inputs<'_>, window: Window, as_of: DateTime<Utc>) -> Vec<PersonDone> {
    let plan = inputs.plan;
    let due: BTreeMap<String, (DateTime<Utc>, String)> = occurrences(plan)
        .into_iter()
        .filter_map(|occurrence| {
            let task = plan.tasks.iter().find(|task| task.id == occurrence.task)?;
            Some((occurrence.id, (occurrence.due, task.role.clone())))
        })
        .collect();
    let mut people: BTreeMap<&str, (u64, u64, Vec<String>)> = BTreeMap::new();
    for (occurrence, done) in &inputs.board.done {
        if done.at < window.start || done.at >= as_of {
            continue;
        }
        let person = people.entry(done.by.as_str()).or_default();
        person.0 += 1;
        if let Some((due, role)) = due.get(occurrence) {
            if done.at <= *due {
                person.1 += 1;
            }
            if !person.2.contains(role) {
                person.2.push(role.clone());
            }
        }
    }
    let mut ranking: Vec<PersonDone> = people
        .into_iter()
        .map(|(person, (done, on_time, mut roles))| {
            roles.sort();
            PersonDone {
                done,
                on_time,
                person: person.to_string(),
                roles,
            }
        })
        .collect();
    ranking.sort_by(|a, b| {
        b.done
            .cmp(&a.done)
            .then(b.on_time.cmp(&a.on_time))
            .then_with(|| a.person.cmp(&b.person))
    });
    ranking
}

/// Of a task's late occurrences: how many, how many escalated, the oldest and the last due.
type Lateness = (u64, u64, DateTime<Utc>, DateTime<Utc>);

fn late(inputs: &Inputs<'_>, as_of: DateTime<Utc>) -> Vec<LateTask> {
    let plan = inputs.plan;
    let zone = plan.campaign.time_zone;
    let mut tasks: BTreeMap<&str, Lateness> = BTreeMap::new();
    for occurrence in occurrences(plan) {
        if occurrence.due >= as_of {
            continue;
        }
        let Some(task) = plan.tasks.iter().find(|task| task.id == occurrence.task) else {
            continue;
        };
        let done = inputs
            .board
            .done_by(&occurrence.id)
            .is_some_and(|done| done.at < as_of);
        if done || skipped_by(task, occurrence.due, inputs.skipped).is_some() {
            continue;
        }
        let escalated = task.escalate_after.is_some_and(|delay| {
            occurrence
                .due
                .checked_add_signed(Duration::seconds(delay.seconds()))
                .is_some_and(|at| at <= as_of)
        });
        let entry = tasks
            .entry(task.id.as_str())
            .or_insert((0, 0, occurrence.due, occurrence.due));
        entry.0 += 1;
        entry.1 += u64::from(escalated);
        entry.2 = entry.2.min(occurrence.due);
        entry.3 = entry.3.max(occurrence.due);
    }
    let mut late: Vec<(u64, DateTime<Utc>, LateTask)> = tasks
        .into_iter()
        .filter_map(|(id, (count, escalated, oldest, last))| {
            let task = plan.tasks.iter().find(|task| task.id == id)?;
            Some((
                escalated,
                oldest,
                LateTask {
                    escalated,
                    last_due: local_rfc3339(zone, last),
                    occurrences: count,
                    oldest_due: local_rfc3339(zone, oldest),
                    role: task.role.clone(),
                    task: task.id.clone(),
                    title: task.title.clone(),
                },
            ))
        })
        .collect();
    // Escalated first, then the longest late, then by id.
    late.sort_by(|a, b| {
        (b.0 > 0)
            .cmp(&(a.0 > 0))
            .then(a.1.cmp(&b.1))
            .then_with(|| a.2.task.cmp(&b.2.task))
    });
    late.into_iter().map(|(_, _, task)| task).collect()
}

fn next_week(inputs: &Inputs<'_>) -> NextWeek {
    let plan = inputs.plan;
    let zone = plan.campaign.time_zone;
    let next = inputs.week.next();
    let next_window = next.window(zone);
    let mut changes: Vec<(DateTime<Utc>, u8, Change)> = Vec::new();
    for (index, phase) in plan.phases.iter().enumerate() {
        if next_window.contains(phase.window.start) {
            changes.push((
                phase.window.start,
                0,
                Change {
                    at: local_rfc3339(zone, phase.window.start),
                    id: phase.kind.key().to_string(),
                    kind: "phase_starts".to_string(),
                    name: phase.name.clone(),
                },
            ));
        }
        if index + 1 == plan.phases.len() && next_window.contains(phase.window.end) {
            changes.push((
                phase.window.end,
                2,
                Change {
                    at: local_rfc3339(zone, phase.window.end),
                    id: plan.campaign.id.clone(),
                    kind: "campaign_ends".to_string(),
                    name: plan.campaign.name.clone(),
                },
            ));
        }
    }
    for stage in &plan.stages {
        if next_window.contains(stage.window.start) {
            changes.push((
                stage.window.start,
                1,
                Change {
                    at: local_rfc3339(zone, stage.window.start),
                    id: stage.id.clone(),
                    kind: "stage_starts".to_string(),
                    name: stage.name.clone(),
                },
            ));
        }
    }
    changes.sort_by_key(|change| (change.0, change.1));
    let mut tasks: Vec<(DateTime<Utc>, TaskDue)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for occurrence in occurrences(plan) {
        if !next_window.contains(occurrence.due) {
            continue;
        }
        let Some(task) = plan.tasks.iter().find(|task| task.id == occurrence.task) else {
            continue;
        };
        if skipped_by(task, occurrence.due, inputs.skipped).is_some() {
            continue;
        }
        let due = local_rfc3339(zone, occurrence.due);
        match index.get(&task.id) {
            Some(at) => {
                let (_, entry) = &mut tasks[*at];
                entry.occurrences += 1;
                entry.last_due = due;
            }
            None => {
                index.insert(task.id.clone(), tasks.len());
                tasks.push((
                    occurrence.due,
                    TaskDue {
                        first_due: due.clone(),
                        last_due: due,
                        occurrences: 1,
                        role: task.role.clone(),
                        task: task.id.clone(),
                        title: task.title.clone(),
                    },
                ));
            }
        }
    }
    // Occurrences come sorted by due instant then id: the first of each task is its earliest.
    tasks.sort_by(|a, b| (a.0, &a.1.task).cmp(&(b.0, &b.1.task)));
    NextWeek {
        changes: changes.into_iter().map(|(_, _, change)| change).collect(),
        end: local_rfc3339(zone, next_window.end),
        start: local_rfc3339(zone, next_window.start),
        tasks: tasks.into_iter().map(|(_, task)| task).collect(),
        week: next.to_string(),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests;
