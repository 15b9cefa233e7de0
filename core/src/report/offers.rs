//! The orders that named an offer (`OutcomeRecorded.offer`): a projection fed with every
//! outcome, keeping only the orders with an offer, and each offer's uptake over a window.
//!
//! An order counts for a plan's offer when its name is the offer's id or, for a coupon, its code
//! (in any case; [`crate::plan::model::Offers::find`]) in the plan given (the plan in force), and
//! the order names the plan's campaign or no campaign at all. An order whose name no offer of
//! that plan has (an offer a revision removed) is listed apart, by the name it gave.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::customer::events::{OutcomeKind, OutcomeRecorded};
use crate::plan::model::{OfferRef, Plan, Window};
use crate::plan::values::Money;

/// One order that named an offer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct OfferOrder {
    at: DateTime<Utc>,
    campaign: Option<Box<str>>,
    customer: Box<str>,
    offer: Box<str>,
    amount: Option<Money>,
}

/// Every order that named an offer, by instant (equal instants in the order fed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OfferOrders {
    orders: Vec<OfferOrder>,
}

/// What one offer's orders came to over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uptake {
    pub orders: u64,
    /// Orders that came without an amount: counted in `orders`, nothing in `gmv`.
    pub orders_without_amount: u64,
    /// Distinct customers who placed them.
    pub buyers: u64,
    pub gmv: Money,
    /// The amounts of the orders that had one, in order of instant.
    pub amounts: Vec<Money>,
    /// Every order's instant, in order.
    pub instants: Vec<DateTime<Utc>>,
}

impl Uptake {
    /// GMV over the orders with an amount (per order: what the offer's threshold is about),
    /// rounded to the nearest minor unit (halves away from zero); `None` without such orders.
    pub fn average_order_value(&self) -> Option<Money> {
        let counted = self.amounts.len() as u64;
        match crate::metrics::average(self.gmv, counted)? {
            crate::plan::model::TargetValue::Money(money) => Some(money),
            _ => None,
        }
    }
}

impl OfferOrders {
    pub fn new() -> OfferOrders {
        OfferOrders::default()
    }

    /// How many orders naming an offer are kept.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// An outcome: kept if it is an order naming an offer.
    pub fn outcome(&mut self, outcome: &OutcomeRecorded) {
        let (OutcomeKind::Ordered, Some(offer)) = (outcome.outcome, &outcome.offer) else {
            return;
        };
        let order = OfferOrder {
            at: outcome.at,
            campaign: outcome.campaign.as_deref().map(Into::into),
            customer: outcome.customer.as_str().into(),
            offer: offer.trim().into(),
            amount: outcome.amount,
        };
        let index = self
            .orders
            .partition_point(|earlier| earlier.at <= order.at);
        self.orders.insert(index, order);
    }

    /// The orders of the plan's campaign (naming it, or no campaign) in `[window.start,
    /// min(window.end, as_of))`.
    fn of_campaign<'a>(
        &'a self,
        plan: &'a Plan,
        window: Window,
        as_of: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a OfferOrder> + 'a {
        let end = window.end.min(as_of);
        let from = self.orders.partition_point(|order| order.at < window.start);
        self.orders[from..]
            .iter()
            .take_while(move |order| order.at < end)
            .filter(move |order| {
                order
                    .campaign
                    .as_deref()
                    .is_none_or(|campaign| campaign == plan.campaign.id)
            })
    }

    /// Each offer of the plan (by id) with its orders in the window, and apart the names no offer
    /// of the plan answers to (by name, as given).
    pub fn uptake(
        &self,
        plan: &Plan,
        window: Window,
        as_of: DateTime<Utc>,
    ) -> (BTreeMap<String, Uptake>, BTreeMap<String, Uptake>) {
        let mut known: BTreeMap<String, (Uptake, Vec<&str>)> = BTreeMap::new();
        let mut other: BTreeMap<String, (Uptake, Vec<&str>)> = BTreeMap::new();
        for order in self.of_campaign(plan, window, as_of) {
            let entry = match plan.offers.find(&order.offer) {
                Some(offer) => known.entry(offer.id().to_string()).or_default(),
                None => other.entry(order.offer.to_string()).or_default(),
            };
            let (uptake, buyers) = entry;
            uptake.orders += 1;
            uptake.instants.push(order.at);
            match order.amount {
                Some(amount) => {
                    uptake.gmv =
                        Money::from_minor(uptake.gmv.minor().saturating_add(amount.minor()));
                    uptake.amounts.push(amount);
                }
                None => uptake.orders_without_amount += 1,
            }
            buyers.push(&order.customer);
        }
        let settle = |map: BTreeMap<String, (Uptake, Vec<&str>)>| {
            map.into_iter()
                .map(|(name, (mut uptake, mut buyers))| {
                    buyers.sort_unstable();
                    buyers.dedup();
                    uptake.buyers = buyers.len() as u64;
                    (name, uptake)
                })
                .collect()
        };
        (settle(known), settle(other))
    }
}

/// For a tiered offer, how many of the amounts reached each tier (the highest tier whose spend
/// the amount reaches), in the tiers' order, and how many reached none.
pub fn tiers_reached(offer: &OfferRef<'_>, amounts: &[Money]) -> (Vec<u64>, u64) {
    let OfferRef::Tiered(tiered) = offer else {
        return (Vec::new(), 0);
    };
    let mut reached = vec![0u64; tiered.tiers.len()];
    let mut below = 0;
    for amount in amounts {
        match tiered
            .tiers
            .iter()
            .rposition(|(spend, _)| amount.minor() >= spend.minor())
        {
            Some(index) => reached[index] += 1,
            None => below += 1,
        }
    }
    (reached, below)
}

/// How many of the amounts fall short of a threshold.
pub fn below(threshold: Option<Money>, amounts: &[Money]) -> u64 {
    threshold.map_or(0, |threshold| {
        amounts
            .iter()
            .filter(|amount| amount.minor() < threshold.minor())
            .count() as u64
    })
}
