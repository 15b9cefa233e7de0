//! The campaign funnel and the stage actuals: a projection fed explicitly with who a campaign
//! considered and reached and with the replies and orders that came back, asked for counts at an
//! instant `as_of`.
//!
//! # The funnel (DOMAIN.md "Customers and the funnel")
//!
//! For the campaign of the plan, per phase the plan has and overall, the distinct customers who
//! got at least as far as each stage:
//!
//! - **potential**: considered (in the audience of one of the campaign's reach-outs planned in the
//!   phase, see [`Funnel::considered`]); a reached customer always counts as considered;
//! - **reached**: delivered at least once in the phase, at an instant before `as_of`, and not
//!   bounced: a mail bounce (of the campaign, or naming none) known before `as_of` takes back
//!   the campaign's last mail to the customer before it, which then counts for nothing (not
//!   reached, no handshake or order after it, no attribution); in-site messages do not bounce;
//! - **handshake**: reached, and replied *or ordered* in `[R, R + 30 d)` of a reach `R` in that
//!   phase (an order is a stronger handshake, so every stage counts customers who got at least
//!   that far and the funnel never widens);
//! - **order**: reached, and ordered in `[R, R + 30 d)` of a reach `R` in that phase;
//! - **repurchase**: such an order that was not the customer's first: an earlier order is in the
//!   outcome history (earlier instant; at the same instant, fed earlier), or a customer import
//!   stated that the customer had ordered before ([`Funnel::prior_orders`] above zero).
//!
//! An order at exactly `R + 30 d` is outside the span. Outcomes and reaches at or after `as_of`
//! are not counted (everything is measured over `[.., as_of)`). Outcomes are placed by their own
//! instant, whatever the order they are fed in: an order imported late, after a later reach, still
//! counts against the reach it follows. A customer reached in two phases is counted in each phase
//! where the rules hold, and once overall; a reach or consideration in a phase the plan does not
//! have is not counted at all. Outcomes count for the funnel whichever campaign they
//! name: the funnel asks whether the customer replied or ordered after being reached, not why.
//! Conversion is the count of a stage over the count of the stage above it, `None` for potential
//! (nothing above) and when the stage above is empty.
//!
//! # Stage actuals (DOMAIN.md "Measuring")
//!
//! Per burst stage, over `[stage.start, min(stage.end, as_of))` (empty before the stage starts):
//! an order or a reply is *attributed* to the campaign when the campaign reached the customer in
//! the 30 days up to it (a reach `R` with `R <= at < R + 30 d`, in any phase), or when its
//! `OutcomeRecorded.campaign` names the campaign. Then gmv is the sum of the attributed orders'
//! amounts (an order without an amount is counted, adds nothing, and is reported in
//! [`StageActuals::orders_without_amount`]), orders their count, paying buyers the distinct
//! customers who placed them, returning buyers those of them with a repurchase among them,
//! replies the attributed replies, reached the distinct customers delivered in the window (a
//! bounced mail neither reaches nor attributes).
//! Average order value is gmv / paying buyers, repurchase rate returning / paying buyers.
//! Inquiries, visitors, fans, page views, new customers, conversion rate and payment rate have no
//! source in battleplan's data: they are *not measured* (`None`), never 0.
//!
//! Memory: only customers the funnel was told about (considered, reached, with a reply or an
//! order, or with prior orders above zero) are held, each with compact sorted vectors.

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;

use crate::customer::book::{DAY_MS, FUNNEL_DAYS};
use crate::customer::events::{OutcomeKind, OutcomeRecorded};
use crate::plan::model::{
    ChannelKind, LifecycleStage, Metric, MetricKind, PhaseKind, Plan, TargetValue, Window,
};
use crate::plan::values::Money;

mod render;

pub use render::{funnel_json, render_funnel, render_funnel_table, render_targets, targets_json};

/// How long after a reach a reply or an order counts against it.
const SPAN_MS: i64 = FUNNEL_DAYS * DAY_MS;
/// The campaign symbol of an outcome that names none.
const NO_CAMPAIGN: u32 = u32::MAX;

/// The funnel's stages, in order.
pub const STAGES: [LifecycleStage; 5] = [
    LifecycleStage::Potential,
    LifecycleStage::Reached,
    LifecycleStage::Handshake,
    LifecycleStage::Order,
    LifecycleStage::Repurchase,
];

/// How a funnel stage is written: `potential`, `reached`, `handshake`, `order`, `repurchase`.
pub fn stage_key(stage: LifecycleStage) -> &'static str {
    match stage {
        LifecycleStage::Potential => "potential",
        LifecycleStage::Reached => "reached",
        LifecycleStage::Handshake => "handshake",
        LifecycleStage::Order => "order",
        LifecycleStage::Repurchase => "repurchase",
    }
}

fn phase_bit(phase: PhaseKind) -> u8 {
    match phase {
        PhaseKind::Prep => 1,
        PhaseKind::WarmUp => 2,
        PhaseKind::Burst => 4,
        PhaseKind::Review => 8,
    }
}

/// The projection. Feed it in log order (or any order: results depend only on what was fed).
/// A snapshot holds all of it but the memo; two funnels are equal when they were fed the same.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Funnel {
    /// Each customer's place in `entries`.
    #[serde(deserialize_with = "crate::presized::hash_map")]
    customers: FxHashMap<Box<str>, u32>,
    #[serde(deserialize_with = "crate::presized::vec")]
    entries: Vec<Entry>,
    campaigns: FxHashMap<Box<str>, u32>,
    /// The latest instant fed (a reach, a reply, an order, a bounce), in milliseconds.
    latest: Option<i64>,
    /// The last answers of [`Funnel::report_memo`] and [`Funnel::stage_actuals_memo`],
    /// dropped by anything fed.
    #[serde(skip)]
    memo: Memo,
}

impl PartialEq for Funnel {
    fn eq(&self, other: &Funnel) -> bool {
        self.customers == other.customers
            && self.entries == other.entries
            && self.campaigns == other.campaigns
            && self.latest == other.latest
    }
}

/// Answers kept between feeds, for the same instant again (a manual clock) or for any instant
/// past everything fed: once `as_of` is past every instant fed, no count depends on it any
/// more (every reach, outcome and bounce lies before it), so an answer made at one such instant
/// holds at any later one, its stamps (`as_of`, the stage windows' ends) apart.
#[derive(Debug, Clone, Default)]
struct Memo {
    /// Keyed by the campaign and the plan's phases.
    report: Option<(String, Vec<PhaseKind>, FunnelReport)>,
    actuals: Option<KeptActuals>,
}

/// Stage actuals kept, keyed by the campaign and the plan's stages (id and window), made at
/// `at`.
#[derive(Debug, Clone)]
struct KeptActuals {
    campaign: String,
    stages: Vec<(String, Window)>,
    at: DateTime<Utc>,
    actuals: Vec<StageActuals>,
}

/// One customer. Most customers a big campaign considers are never reached and never answer:
/// their entry is 24 bytes, what else there is lives in `more`.
/// A snapshot holds it as a row `(prior_orders, considered, more)`: most of a million are held.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "EntryRow", into = "EntryRow")]
struct Entry {
    /// The most orders a customer import stated.
    prior_orders: u32,
    /// The first campaign that considered the customer ([`NO_CAMPAIGN`] when none did yet),
    /// with one bit per phase (see `phase_bit`) in which it did.
    considered: (u32, u8),
    more: Option<Box<More>>,
}

type EntryRow = (u32, (u32, u8), Option<Box<More>>);

impl From<EntryRow> for Entry {
    fn from((prior_orders, considered, more): EntryRow) -> Entry {
        Entry {
            prior_orders,
            considered,
            more,
        }
    }
}

impl From<Entry> for EntryRow {
    fn from(entry: Entry) -> EntryRow {
        (entry.prior_orders, entry.considered, entry.more)
    }
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            prior_orders: 0,
            considered: (NO_CAMPAIGN, 0),
            more: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct More {
    /// Other campaigns that considered the customer, as `Entry::considered`.
    considered: Vec<(u32, u8)>,
    /// Sorted by instant; equal instants in the order fed.
    reaches: Vec<Reach>,
    /// Replies and orders, sorted by instant; equal instants in the order fed.
    outcomes: Vec<Outcome>,
    /// Mail bounces: instant and campaign ([`NO_CAMPAIGN`] when the bounce names none),
    /// sorted by instant.
    bounces: Vec<(i64, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "(i64, u32, u8, bool)", into = "(i64, u32, u8, bool)")]
struct Reach {
    at: i64,
    campaign: u32,
    phase: u8,
    mail: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Kind {
    Reply,
    Order,
    OrderWithoutAmount,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "(i64, i64, u32, Kind)", into = "(i64, i64, u32, Kind)")]
struct Outcome {
    at: i64,
    /// Minor units; 0 for a reply or an order without an amount.
    amount: i64,
    /// [`NO_CAMPAIGN`] when the outcome names none.
    campaign: u32,
    kind: Kind,
}

impl From<(i64, u32, u8, bool)> for Reach {
    fn from((at, campaign, phase, mail): (i64, u32, u8, bool)) -> Reach {
        Reach {
            at,
            campaign,
            phase,
            mail,
        }
    }
}

impl From<Reach> for (i64, u32, u8, bool) {
    fn from(reach: Reach) -> (i64, u32, u8, bool) {
        (reach.at, reach.campaign, reach.phase, reach.mail)
    }
}

impl From<(i64, i64, u32, Kind)> for Outcome {
    fn from((at, amount, campaign, kind): (i64, i64, u32, Kind)) -> Outcome {
        Outcome {
            at,
            amount,
            campaign,
            kind,
        }
    }
}

impl From<Outcome> for (i64, i64, u32, Kind) {
    fn from(outcome: Outcome) -> (i64, i64, u32, Kind) {
        (outcome.at, outcome.amount, outcome.campaign, outcome.kind)
    }
}

impl Outcome {
    fn is_order(&self) -> bool {
        self.kind != Kind::Reply
    }
}

impl Entry {
    fn reaches(&self) -> &[Reach] {
        self.more.as_deref().map_or(&[], |more| &more.reaches)
    }

    fn outcomes(&self) -> &[Outcome] {
        self.more.as_deref().map_or(&[], |more| &more.outcomes)
    }

    fn bounces(&self) -> &[(i64, u32)] {
        self.more.as_deref().map_or(&[], |more| &more.bounces)
    }

    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// The phase bits in which the campaign considered the customer.
    fn considered_by(&self, campaign: u32) -> u8 {
        if self.considered.0 == campaign {
            return self.considered.1;
        }
        self.more
            .as_deref()
            .and_then(|more| more.considered.iter().find(|(sym, _)| *sym == campaign))
            .map_or(0, |(_, phases)| *phases)
    }

    fn consider(&mut self, campaign: u32, bit: u8) {
        if self.considered.0 == campaign {
            self.considered.1 |= bit;
        } else if self.considered.0 == NO_CAMPAIGN {
            self.considered = (campaign, bit);
        } else {
            let more = self.more();
            match more.considered.iter_mut().find(|(sym, _)| *sym == campaign) {
                Some((_, phases)) => *phases |= bit,
                None => more.considered.push((campaign, bit)),
            }
        }
    }

    /// Which order is not a repurchase: the index of the first, unless the customer had ordered
    /// before the history began (then none).
    fn first_order(&self) -> Option<usize> {
        if self.prior_orders > 0 {
            return None;
        }
        self.outcomes().iter().position(Outcome::is_order)
    }

    /// Whether the campaign reached the customer in the 30 days up to `at` (bounces known
    /// before `as_of` taken back).
    fn reached_before(&self, campaign: u32, at: i64, as_of: i64) -> bool {
        let reaches = self.reaches();
        let after = reaches.partition_point(|reach| reach.at <= at);
        (0..after)
            .rev()
            .take_while(|index| at < reaches[*index].at.saturating_add(SPAN_MS))
            .any(|index| reaches[index].campaign == campaign && !self.bounced(index, as_of))
    }

    /// Whether a bounce known before `as_of` took back the reach at `index`: a mail bounce of
    /// its campaign (or naming none) at or after it and before the campaign's next mail to the
    /// customer, which the bounce would be about instead.
    fn bounced(&self, index: usize, as_of: i64) -> bool {
        let (reaches, bounces) = (self.reaches(), self.bounces());
        let Some(reach) = reaches.get(index).copied() else {
            return false;
        };
        if !reach.mail || bounces.is_empty() {
            return false;
        }
        let next = reaches[index + 1..]
            .iter()
            .find(|later| later.mail && later.campaign == reach.campaign && later.at > reach.at)
            .map_or(i64::MAX, |later| later.at);
        let from = bounces.partition_point(|(at, _)| *at < reach.at);
        bounces[from..]
            .iter()
            .take_while(|(at, _)| *at < next && *at < as_of)
            .any(|(_, campaign)| *campaign == reach.campaign || *campaign == NO_CAMPAIGN)
    }
}

impl Funnel {
    pub fn new() -> Funnel {
        Funnel::default()
    }

    /// How many customers the funnel holds.
    pub fn customers(&self) -> usize {
        self.customers.len()
    }

    /// A change is fed: the memo goes, and `at` (if any) may be the latest instant now.
    fn fed(&mut self, at: Option<i64>) {
        self.memo = Memo::default();
        if let Some(at) = at {
            self.latest = Some(self.latest.map_or(at, |latest| latest.max(at)));
        }
    }

    /// Whether no count at `as_of` depends on `as_of` any more: it is after every instant fed.
    fn settled(&self, as_of: DateTime<Utc>) -> bool {
        self.latest
            .is_none_or(|latest| latest < as_of.timestamp_millis())
    }

    /// Whether an answer made at `kept` holds at `as_of` as long as nothing is fed: the same
    /// instant, or both past everything fed (then only the stamps differ).
    fn holds(&self, kept: DateTime<Utc>, as_of: DateTime<Utc>) -> bool {
        kept == as_of || (self.settled(kept) && self.settled(as_of))
    }

    /// [`Funnel::report`], answered from the last one when nothing was fed since and it holds
    /// at `as_of` (see [`Memo`]).
    pub fn report_memo(&mut self, plan: &Plan, as_of: DateTime<Utc>) -> FunnelReport {
        let phases: Vec<PhaseKind> = plan.phases.iter().map(|phase| phase.kind).collect();
        if let Some((campaign, kept, report)) = &self.memo.report {
            if *campaign == plan.campaign.id && *kept == phases && self.holds(report.as_of, as_of) {
                return FunnelReport {
                    as_of,
                    ..report.clone()
                };
            }
        }
        let report = self.report(plan, as_of);
        self.memo.report = Some((plan.campaign.id.clone(), phases, report.clone()));
        report
    }

    /// [`Funnel::stage_actuals`], answered from the last one when nothing was fed since and it
    /// holds at `as_of` (see [`Memo`]); only the windows' ends are made anew.
    pub fn stage_actuals_memo(&mut self, plan: &Plan, as_of: DateTime<Utc>) -> Vec<StageActuals> {
        let stages: Vec<(String, Window)> = plan
            .stages
            .iter()
            .map(|stage| (stage.id.clone(), stage.window))
            .collect();
        if let Some(kept) = &self.memo.actuals {
            if kept.campaign == plan.campaign.id
                && kept.stages == stages
                && self.holds(kept.at, as_of)
            {
                return kept
                    .actuals
                    .iter()
                    .zip(&stages)
                    .map(|(actual, (_, window))| StageActuals {
                        window: measured_window(*window, as_of),
                        ..actual.clone()
                    })
                    .collect();
            }
        }
        let actuals = self.stage_actuals(plan, as_of);
        self.memo.actuals = Some(KeptActuals {
            campaign: plan.campaign.id.clone(),
            stages,
            at: as_of,
            actuals: actuals.clone(),
        });
        actuals
    }

    fn campaign(&mut self, campaign: &str) -> u32 {
        if let Some(sym) = self.campaigns.get(campaign) {
            return *sym;
        }
        // Campaign ids are a handful; `NO_CAMPAIGN` stays free.
        let sym = u32::try_from(self.campaigns.len())
            .unwrap_or(NO_CAMPAIGN - 1)
            .min(NO_CAMPAIGN - 1);
        self.campaigns.insert(campaign.into(), sym);
        sym
    }

    /// Changes a customer's entry, made on first use (the id is copied only then).
    fn update(&mut self, customer: &str, change: impl FnOnce(&mut Entry)) {
        match self.customers.get(customer) {
            Some(index) => {
                if let Some(entry) = self.entries.get_mut(*index as usize) {
                    change(entry);
                }
            }
            None => {
                let mut entry = Entry::default();
                change(&mut entry);
                self.customers
                    .insert(customer.into(), self.entries.len() as u32);
                self.entries.push(entry);
            }
        }
    }

    /// The customer was in the audience of one of the campaign's reach-outs planned in `phase`.
    pub fn considered(&mut self, campaign: &str, customer: &str, phase: PhaseKind) {
        self.fed(None);
        let campaign = self.campaign(campaign);
        self.update(customer, |entry| entry.consider(campaign, phase_bit(phase)));
    }

    /// A message of the campaign was delivered to the customer at `at`, in `phase`, by a
    /// channel of `kind` (a mail can bounce later). The stage actuals place a reach by its
    /// instant (the plan's stage windows).
    pub fn reached(
        &mut self,
        campaign: &str,
        customer: &str,
        at: DateTime<Utc>,
        phase: PhaseKind,
        kind: ChannelKind,
    ) {
        self.fed(Some(at.timestamp_millis()));
        let campaign = self.campaign(campaign);
        let reach = Reach {
            at: at.timestamp_millis(),
            campaign,
            phase: phase_bit(phase),
            mail: kind == ChannelKind::Mail,
        };
        self.update(customer, |entry| {
            let reaches = &mut entry.more().reaches;
            let index = reaches.partition_point(|earlier| earlier.at <= reach.at);
            reaches.insert(index, reach);
        });
    }

    /// A reply, an order or a mail bounce (other outcomes are not the funnel's business), of
    /// any customer.
    pub fn outcome(&mut self, outcome: &OutcomeRecorded) {
        self.fed(Some(outcome.at.timestamp_millis()));
        if outcome.outcome == OutcomeKind::Bounced {
            if outcome
                .channel
                .is_some_and(|kind| kind != ChannelKind::Mail)
            {
                return;
            }
            let campaign = match &outcome.campaign {
                Some(campaign) => self.campaign(campaign),
                None => NO_CAMPAIGN,
            };
            let at = outcome.at.timestamp_millis();
            self.update(&outcome.customer, |entry| {
                let bounces = &mut entry.more().bounces;
                let index = bounces.partition_point(|(earlier, _)| *earlier <= at);
                bounces.insert(index, (at, campaign));
            });
            return;
        }
        let kind = match (outcome.outcome, outcome.amount) {
            (OutcomeKind::Replied, _) => Kind::Reply,
            (OutcomeKind::Ordered, Some(_)) => Kind::Order,
            (OutcomeKind::Ordered, None) => Kind::OrderWithoutAmount,
            _ => return,
        };
        let campaign = match &outcome.campaign {
            Some(campaign) => self.campaign(campaign),
            None => NO_CAMPAIGN,
        };
        let fed = Outcome {
            at: outcome.at.timestamp_millis(),
            amount: outcome.amount.map_or(0, Money::minor),
            campaign,
            kind,
        };
        self.update(&outcome.customer, |entry| {
            let outcomes = &mut entry.more().outcomes;
            let index = outcomes.partition_point(|earlier| earlier.at <= fed.at);
            outcomes.insert(index, fed);
        });
    }

    /// The orders a customer import stated the customer had placed; the most stated stands (as in
    /// the customer book). Zero changes nothing and holds no customer.
    pub fn prior_orders(&mut self, customer: &str, orders: u32) {
        if orders == 0 {
            return;
        }
        self.fed(None);
        self.update(customer, |entry| {
            entry.prior_orders = entry.prior_orders.max(orders)
        });
    }

    /// How far the customer got in the campaign's funnel at `as_of`, counted as `report` counts
    /// them (overall): the furthest stage, `None` if the campaign neither considered nor reached
    /// them.
    pub fn stage_of(
        &self,
        campaign: &str,
        customer: &str,
        as_of: DateTime<Utc>,
    ) -> Option<LifecycleStage> {
        let campaign = *self.campaigns.get(campaign)?;
        let entry = self.entries.get(*self.customers.get(customer)? as usize)?;
        let masks = entry_masks(entry, campaign, as_of.timestamp_millis(), u8::MAX);
        STAGES
            .into_iter()
            .zip(masks)
            .rev()
            .find(|(_, mask)| *mask != 0)
            .map(|(stage, _)| stage)
    }

    /// The funnel of `plan.campaign.id` at `as_of`, overall and per phase the plan has.
    pub fn report(&self, plan: &Plan, as_of: DateTime<Utc>) -> FunnelReport {
        let phases: Vec<PhaseKind> = plan.phases.iter().map(|phase| phase.kind).collect();
        let plan_mask = phases
            .iter()
            .fold(0u8, |mask, kind| mask | phase_bit(*kind));
        // [phase bit index][stage], and overall.
        let mut per_phase = [[0u64; 5]; 4];
        let mut overall = [0u64; 5];
        if let Some(campaign) = self.campaigns.get(plan.campaign.id.as_str()).copied() {
            let as_of = as_of.timestamp_millis();
            for entry in &self.entries {
                let masks = entry_masks(entry, campaign, as_of, plan_mask);
                for (stage, mask) in masks.iter().enumerate() {
                    if *mask != 0 {
                        overall[stage] += 1;
                    }
                    for (bit, counts) in per_phase.iter_mut().enumerate() {
                        if mask & (1 << bit) != 0 {
                            counts[stage] += 1;
                        }
                    }
                }
            }
        }
        FunnelReport {
            campaign: plan.campaign.id.clone(),
            as_of,
            overall: steps(overall),
            phases: phases
                .into_iter()
                .map(|phase| PhaseFunnel {
                    phase,
                    steps: steps(per_phase[phase_bit(phase).trailing_zeros() as usize]),
                })
                .collect(),
        }
    }

    /// The actuals of `plan.campaign.id` per burst stage, over `[stage.start, min(stage.end,
    /// as_of))`, in the plan's stage order.
    pub fn stage_actuals(&self, plan: &Plan, as_of: DateTime<Utc>) -> Vec<StageActuals> {
        let stages: Vec<(String, Window)> = plan
            .stages
            .iter()
            .map(|stage| (stage.id.clone(), stage.window))
            .collect();
        self.actuals_over(&plan.campaign.id, &stages, as_of)
    }

    /// What the campaign achieved over any window (a week), measured as a stage is: over
    /// `[window.start, min(window.end, as_of))`, named `name` in [`StageActuals::stage`].
    pub fn window_actuals(
        &self,
        campaign: &str,
        name: &str,
        window: Window,
        as_of: DateTime<Utc>,
    ) -> StageActuals {
        let mut actuals = self.actuals_over(campaign, &[(name.to_string(), window)], as_of);
        actuals.pop().unwrap_or(StageActuals {
            stage: name.to_string(),
            window: measured_window(window, as_of),
            gmv: Money::default(),
            orders: 0,
            orders_without_amount: 0,
            paying_buyers: 0,
            returning_buyers: 0,
            reached: 0,
            replies: 0,
        })
    }

    /// The actuals of `campaign` over each named window, in the order given.
    fn actuals_over(
        &self,
        campaign: &str,
        named: &[(String, Window)],
        as_of: DateTime<Utc>,
    ) -> Vec<StageActuals> {
        let windows: Vec<(i64, i64)> = named
            .iter()
            .map(|(_, window)| {
                let start = window.start.timestamp_millis();
                let end = window.end.min(as_of).timestamp_millis().max(start);
                (start, end)
            })
            .collect();
        let mut actuals: Vec<StageActuals> = named
            .iter()
            .map(|(name, window)| StageActuals {
                stage: name.clone(),
                window: measured_window(*window, as_of),
                gmv: Money::default(),
                orders: 0,
                orders_without_amount: 0,
                paying_buyers: 0,
                returning_buyers: 0,
                reached: 0,
                replies: 0,
            })
            .collect();
        let Some(campaign) = self.campaigns.get(campaign).copied() else {
            return actuals;
        };
        let stage_of = |at: i64| {
            windows
                .iter()
                .position(|(start, end)| *start <= at && at < *end)
        };
        // Per stage: (reached, paid, returning) for the customer at hand.
        let mut flags = vec![(false, false, false); windows.len()];
        for entry in &self.entries {
            flags
                .iter_mut()
                .for_each(|flag| *flag = (false, false, false));
            let as_of = as_of.timestamp_millis();
            for (index, reach) in entry.reaches().iter().enumerate() {
                if reach.campaign != campaign || entry.bounced(index, as_of) {
                    continue;
                }
                if let Some(flag) = stage_of(reach.at).and_then(|index| flags.get_mut(index)) {
                    flag.0 = true;
                }
            }
            let first_order = entry.first_order();
            for (index, outcome) in entry.outcomes().iter().enumerate() {
                let Some(stage) = stage_of(outcome.at) else {
                    continue;
                };
                let attributed = outcome.campaign == campaign
                    || entry.reached_before(campaign, outcome.at, as_of);
                let (Some(actual), Some(flag)) = (actuals.get_mut(stage), flags.get_mut(stage))
                else {
                    continue;
                };
                if !attributed {
                    continue;
                }
                match outcome.kind {
                    Kind::Reply => actual.replies += 1,
                    Kind::Order | Kind::OrderWithoutAmount => {
                        actual.orders += 1;
                        if outcome.kind == Kind::OrderWithoutAmount {
                            actual.orders_without_amount += 1;
                        }
                        actual.gmv =
                            Money::from_minor(actual.gmv.minor().saturating_add(outcome.amount));
                        flag.1 = true;
                        if first_order != Some(index) {
                            flag.2 = true;
                        }
                    }
                }
            }
            for (actual, (reached, paid, returning)) in actuals.iter_mut().zip(&flags) {
                actual.reached += u64::from(*reached);
                actual.paying_buyers += u64::from(*paid);
                actual.returning_buyers += u64::from(*returning);
            }
        }
        actuals
    }
}

/// The part of a stage's window measured at `as_of`: `[start, min(end, as_of))`, empty before
/// the stage starts.
fn measured_window(window: Window, as_of: DateTime<Utc>) -> Window {
    Window {
        start: window.start,
        end: window.end.min(as_of).max(window.start),
    }
}

/// For one customer and campaign: per funnel stage, the phase bits in which the customer got
/// that far.
fn entry_masks(entry: &Entry, campaign: u32, as_of: i64, plan_mask: u8) -> [u8; 5] {
    let considered = entry.considered_by(campaign);
    let first_order = entry.first_order();
    let (mut reached, mut handshake, mut order, mut repurchase) = (0u8, 0u8, 0u8, 0u8);
    // A bounced mail still shows the customer was considered.
    let mut attempted = 0u8;
    let outcomes = entry.outcomes();
    for (index, reach) in entry.reaches().iter().enumerate() {
        if reach.campaign != campaign || reach.at >= as_of {
            continue;
        }
        attempted |= reach.phase;
        if entry.bounced(index, as_of) {
            continue;
        }
        reached |= reach.phase;
        let end = reach.at.saturating_add(SPAN_MS).min(as_of);
        let from = outcomes.partition_point(|outcome| outcome.at < reach.at);
        for (offset, outcome) in outcomes[from..]
            .iter()
            .enumerate()
            .take_while(|(_, outcome)| outcome.at < end)
        {
            handshake |= reach.phase;
            if outcome.is_order() {
                order |= reach.phase;
                if first_order != Some(from + offset) {
                    repurchase |= reach.phase;
                }
            }
        }
    }
    [
        (considered | attempted) & plan_mask,
        reached & plan_mask,
        handshake & plan_mask,
        order & plan_mask,
        repurchase & plan_mask,
    ]
}

fn steps(counts: [u64; 5]) -> Vec<FunnelStep> {
    let mut previous: Option<u64> = None;
    STAGES
        .into_iter()
        .zip(counts)
        .map(|(stage, customers)| {
            let conversion = match previous {
                Some(above) if above > 0 => Some(customers as f64 / above as f64),
                _ => None,
            };
            previous = Some(customers);
            FunnelStep {
                stage,
                customers,
                conversion,
            }
        })
        .collect()
}

/// One stage of a funnel: distinct customers who got at least that far, and the share of the
/// stage above who did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunnelStep {
    pub stage: LifecycleStage,
    pub customers: u64,
    /// `customers` over the stage above's; `None` for potential and when the stage above is empty.
    pub conversion: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseFunnel {
    pub phase: PhaseKind,
    /// The five stages, in the order of [`STAGES`].
    pub steps: Vec<FunnelStep>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunnelReport {
    pub campaign: String,
    pub as_of: DateTime<Utc>,
    /// The five stages, in the order of [`STAGES`]; a customer counts once.
    pub overall: Vec<FunnelStep>,
    /// The phases the plan has, in order.
    pub phases: Vec<PhaseFunnel>,
}

impl FunnelReport {
    /// The customers at a stage, overall (`phase` `None`) or in a phase; 0 for a phase the plan
    /// does not have.
    pub fn count(&self, phase: Option<PhaseKind>, stage: LifecycleStage) -> u64 {
        let steps = match phase {
            None => Some(&self.overall),
            Some(kind) => self
                .phases
                .iter()
                .find(|funnel| funnel.phase == kind)
                .map(|funnel| &funnel.steps),
        };
        steps
            .and_then(|steps| steps.iter().find(|step| step.stage == stage))
            .map_or(0, |step| step.customers)
    }
}

/// What a burst stage achieved, over [`StageActuals::window`].
#[derive(Debug, Clone, PartialEq)]
pub struct StageActuals {
    pub stage: String,
    /// `[stage.start, min(stage.end, as_of))`; empty before the stage starts.
    pub window: Window,
    pub gmv: Money,
    pub orders: u64,
    /// Attributed orders that came without an amount: counted in `orders`, nothing in `gmv`.
    pub orders_without_amount: u64,
    pub paying_buyers: u64,
    /// Paying buyers with a repurchase among their attributed orders.
    pub returning_buyers: u64,
    pub reached: u64,
    pub replies: u64,
}

/// Whether battleplan's data (reaches and outcomes) can measure a metric.
pub fn measured(metric: Metric) -> bool {
    matches!(
        metric,
        Metric::Gmv
            | Metric::Orders
            | Metric::PayingBuyers
            | Metric::Reached
            | Metric::Replies
            | Metric::AverageOrderValue
            | Metric::RepurchaseRate
            | Metric::NewCustomers
    )
}

impl StageActuals {
    /// gmv / paying buyers, rounded to the nearest minor unit (halves away from zero); `None`
    /// without paying buyers.
    pub fn average_order_value(&self) -> Option<Money> {
        if self.paying_buyers == 0 {
            return None;
        }
        let gmv = i128::from(self.gmv.minor());
        let buyers = i128::from(self.paying_buyers);
        let (quotient, remainder) = (gmv / buyers, gmv % buyers);
        let rounded = if 2 * remainder.abs() >= buyers {
            quotient + gmv.signum()
        } else {
            quotient
        };
        i64::try_from(rounded).ok().map(Money::from_minor)
    }

    /// Returning paying buyers / paying buyers; `None` without paying buyers.
    pub fn repurchase_rate(&self) -> Option<f64> {
        (self.paying_buyers > 0).then(|| self.returning_buyers as f64 / self.paying_buyers as f64)
    }

    /// The actual of a metric; `None` when battleplan cannot measure it (see [`measured`]) or
    /// it is a ratio over no paying buyers.
    pub fn actual(&self, metric: Metric) -> Option<TargetValue> {
        match metric {
            Metric::Gmv => Some(TargetValue::Money(self.gmv)),
            Metric::Orders => Some(TargetValue::Count(self.orders)),
            Metric::PayingBuyers => Some(TargetValue::Count(self.paying_buyers)),
            Metric::Reached => Some(TargetValue::Count(self.reached)),
            Metric::Replies => Some(TargetValue::Count(self.replies)),
            Metric::AverageOrderValue => self.average_order_value().map(TargetValue::Money),
            Metric::RepurchaseRate => self.repurchase_rate().map(TargetValue::Rate),
            Metric::NewCustomers => Some(TargetValue::Count(
                self.paying_buyers.saturating_sub(self.returning_buyers),
            )),
            Metric::Inquiries
            | Metric::Visitors
            | Metric::Fans
            | Metric::PageViews
            | Metric::ConversionRate
            | Metric::PaymentRate => None,
        }
    }
}

/// Where an actual comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shop's own numbers (`metrics import`).
    Shop,
    /// battleplan's reaches and the orders and replies attributed to them.
    Campaign,
}

impl Source {
    pub fn key(self) -> &'static str {
        match self {
            Source::Shop => "shop",
            Source::Campaign => "campaign",
        }
    }

    pub fn from_key(key: &str) -> Option<Source> {
        [Source::Shop, Source::Campaign]
            .into_iter()
            .find(|source| source.key() == key)
    }
}

/// A stage target beside its actual.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetLine {
    pub stage: String,
    pub metric: Metric,
    pub target: TargetValue,
    /// `None`: not measured (or a ratio without paying buyers yet).
    pub actual: Option<TargetValue>,
    /// Where `actual` comes from; `None` when not measured.
    pub source: Option<Source>,
    /// actual / target; `None` when there is no actual or the target is zero.
    pub ratio: Option<f64>,
}

/// Every target of the plan, in the plan's order, with the actual of its stage: from the
/// shop's figures over the stage (`shop`, one per stage of `actuals`, in the same order) when
/// they give it, else from what the campaign measured itself (gmv, orders, paying buyers,
/// new customers, average order value and repurchase rate of the orders attributed to its
/// reaches; reached; replies).
pub fn targets_against_actuals(
    plan: &Plan,
    actuals: &[StageActuals],
    shop: &[crate::metrics::Figures],
) -> Vec<TargetLine> {
    plan.targets
        .iter()
        .map(|target| {
            let index = actuals
                .iter()
                .position(|actual| actual.stage == target.stage);
            let from_shop = index
                .and_then(|index| shop.get(index))
                .and_then(|figures| crate::metrics::shop_actual(figures, target.metric))
                .map(|actual| (actual, Source::Shop));
            let measured = from_shop.or_else(|| {
                index
                    .and_then(|index| actuals.get(index))
                    .and_then(|actual| actual.actual(target.metric))
                    .map(|actual| (actual, Source::Campaign))
            });
            let actual = measured.map(|(actual, _)| actual);
            TargetLine {
                stage: target.stage.clone(),
                metric: target.metric,
                target: target.value,
                actual,
                source: measured.map(|(_, source)| source),
                ratio: actual.and_then(|actual| ratio(actual, target.value)),
            }
        })
        .collect()
}

fn ratio(actual: TargetValue, target: TargetValue) -> Option<f64> {
    let (actual, target) = match (actual, target) {
        (TargetValue::Money(a), TargetValue::Money(t)) => (a.minor() as f64, t.minor() as f64),
        (TargetValue::Count(a), TargetValue::Count(t)) => (a as f64, t as f64),
        (TargetValue::Rate(a), TargetValue::Rate(t)) => (a, t),
        _ => return None,
    };
    (target != 0.0).then(|| actual / target)
}

/// The kind of a target value.
pub fn value_kind(value: TargetValue) -> MetricKind {
    match value {
        TargetValue::Money(_) => MetricKind::Money,
        TargetValue::Count(_) => MetricKind::Count,
        TargetValue::Rate(_) => MetricKind::Rate,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests;
