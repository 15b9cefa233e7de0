//! The shop's own numbers: what the platforms' data tools count (visitors, page views,
//! inquiries, new fans, orders placed and paid, paying and returning buyers, GMV collected, hot
//! products and keywords) per local day, or per hour during the burst. battleplan cannot
//! measure these itself; `metrics import` records them, one [`MetricsRecorded`] per period on
//! the stream [`STREAM`], and they measure the stage targets the reach-outs cannot.
//!
//! A period is recorded again only when a figure changes: the new event names the earlier
//! figures it corrects, so the history shows both and the latest stands. A figure the file does
//! not give leaves the period's earlier figure as it is; hot products (or keywords) given for a
//! period replace the period's earlier list.
//!
//! Over a window (a stage, a week), a day counts when its first instant is in the window: a
//! day's own row if it has one, or else the sum of its hours' rows, each counted when its first
//! instant is. Counts of distinct people (visitors, paying buyers) are summed over the days, as
//! the platforms' weekly figures are: a visitor of two days counts twice. DOMAIN.md's formulas
//! ([`formulas`]) are computed from the sums.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::event::StreamId;
use crate::plan::model::{Metric, TargetValue};
use crate::plan::values::Money;

pub mod row;

/// The stream of the shop's numbers.
pub const STREAM: &str = "shop-metrics";

/// The stream of the shop's numbers, as an id.
pub fn stream() -> Result<StreamId, String> {
    StreamId::new(STREAM)
}

/// The most hot products (or keywords) a period keeps, and a window shows.
pub const MAX_HOT: usize = 50;

/// A local day, or one hour of it (`hour` 0 to 23), in the zone the file was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u8>,
}

impl fmt::Display for Period {
    /// `2026-09-03`, or `2026-09-03 14:00` for an hour.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hour {
            None => write!(formatter, "{}", self.date.format("%Y-%m-%d")),
            Some(hour) => write!(formatter, "{} {hour:02}:00", self.date.format("%Y-%m-%d")),
        }
    }
}

/// One of the shop's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    Visitors,
    PageViews,
    Inquiries,
    NewFans,
    PlacedOrders,
    PaidOrders,
    PayingBuyers,
    ReturningBuyers,
    Gmv,
}

impl Figure {
    pub const ALL: [Figure; 9] = [
        Figure::Visitors,
        Figure::PageViews,
        Figure::Inquiries,
        Figure::NewFans,
        Figure::PlacedOrders,
        Figure::PaidOrders,
        Figure::PayingBuyers,
        Figure::ReturningBuyers,
        Figure::Gmv,
    ];

    /// The column's name in a metrics file, and the key in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Figure::Visitors => "visitors",
            Figure::PageViews => "page_views",
            Figure::Inquiries => "inquiries",
            Figure::NewFans => "new_fans",
            Figure::PlacedOrders => "placed_orders",
            Figure::PaidOrders => "paid_orders",
            Figure::PayingBuyers => "paying_buyers",
            Figure::ReturningBuyers => "returning_buyers",
            Figure::Gmv => "gmv",
        }
    }

    /// In words, for tables.
    pub fn label(self) -> &'static str {
        match self {
            Figure::Visitors => "visitors (UV)",
            Figure::PageViews => "page views (PV)",
            Figure::Inquiries => "inquiries",
            Figure::NewFans => "new fans",
            Figure::PlacedOrders => "orders placed",
            Figure::PaidOrders => "orders paid",
            Figure::PayingBuyers => "paying buyers",
            Figure::ReturningBuyers => "returning buyers",
            Figure::Gmv => "GMV collected",
        }
    }
}

/// A figure's value: a count, or money (GMV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureValue {
    Count(u64),
    Money(Money),
}

/// The figures of a period (or summed over a window). `None`: not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_views: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inquiries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_fans: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_orders: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_orders: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paying_buyers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returning_buyers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmv: Option<Money>,
}

impl Figures {
    pub fn get(&self, figure: Figure) -> Option<FigureValue> {
        let count = |value: Option<u64>| value.map(FigureValue::Count);
        match figure {
            Figure::Visitors => count(self.visitors),
            Figure::PageViews => count(self.page_views),
            Figure::Inquiries => count(self.inquiries),
            Figure::NewFans => count(self.new_fans),
            Figure::PlacedOrders => count(self.placed_orders),
            Figure::PaidOrders => count(self.paid_orders),
            Figure::PayingBuyers => count(self.paying_buyers),
            Figure::ReturningBuyers => count(self.returning_buyers),
            Figure::Gmv => self.gmv.map(FigureValue::Money),
        }
    }

    /// Sets a figure; a value of the wrong kind (money for a count) changes nothing.
    pub fn set(&mut self, figure: Figure, value: Option<FigureValue>) {
        let count = match value {
            Some(FigureValue::Count(count)) => Some(count),
            _ => None,
        };
        match figure {
            Figure::Visitors => self.visitors = count,
            Figure::PageViews => self.page_views = count,
            Figure::Inquiries => self.inquiries = count,
            Figure::NewFans => self.new_fans = count,
            Figure::PlacedOrders => self.placed_orders = count,
            Figure::PaidOrders => self.paid_orders = count,
            Figure::PayingBuyers => self.paying_buyers = count,
            Figure::ReturningBuyers => self.returning_buyers = count,
            Figure::Gmv => {
                self.gmv = match value {
                    Some(FigureValue::Money(money)) => Some(money),
                    _ => None,
                }
            }
        }
    }

    /// No figure given.
    pub fn is_empty(&self) -> bool {
        Figure::ALL.iter().all(|figure| self.get(*figure).is_none())
    }

    /// The figures `newer` gives, over these.
    pub fn overlay(&mut self, newer: &Figures) {
        for figure in Figure::ALL {
            if let Some(value) = newer.get(figure) {
                self.set(figure, Some(value));
            }
        }
    }

    /// Adds `other`'s figures to these (a figure given by either is given by the sum).
    pub fn add(&mut self, other: &Figures) {
        for figure in Figure::ALL {
            let sum = match (self.get(figure), other.get(figure)) {
                (None, None) => None,
                (Some(value), None) | (None, Some(value)) => Some(value),
                (Some(FigureValue::Count(a)), Some(FigureValue::Count(b))) => {
                    Some(FigureValue::Count(a.saturating_add(b)))
                }
                (Some(FigureValue::Money(a)), Some(FigureValue::Money(b))) => Some(
                    FigureValue::Money(Money::from_minor(a.minor().saturating_add(b.minor()))),
                ),
                (Some(value), Some(_)) => Some(value),
            };
            self.set(figure, sum);
        }
    }

    /// Of the figures `newer` gives, those that differ from these, with their value here
    /// (`None`: not given before).
    pub fn changed_by(&self, newer: &Figures) -> Vec<(Figure, Option<FigureValue>)> {
        Figure::ALL
            .into_iter()
            .filter_map(|figure| {
                let new = newer.get(figure)?;
                let old = self.get(figure);
                (old != Some(new)).then_some((figure, old))
            })
            .collect()
    }
}

/// A hot product or keyword, and how often it was seen (views, searches, sales: as the data
/// tool counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hot {
    pub name: String,
    pub count: u64,
}

/// Hot products or hot keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HotKind {
    Product,
    Keyword,
}

impl HotKind {
    pub fn column(self) -> &'static str {
        match self {
            HotKind::Product => "hot_product",
            HotKind::Keyword => "hot_keyword",
        }
    }
}

/// The shop's figures for one period, as a metrics file gave them (or as they changed since
/// the last time they were recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsRecorded {
    pub period: Period,
    /// The zone the file's dates were read in.
    pub zone: String,
    /// The period's first instant and the first instant after it.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The figures the file gives for the period.
    pub figures: Figures,
    /// The figures of the period recorded earlier that these correct (only those that
    /// change); empty when the period had none of them.
    #[serde(default, skip_serializing_if = "Figures::is_empty")]
    pub corrects: Figures,
    /// The period's hot products, when the file gives them (they replace earlier ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_products: Option<Vec<Hot>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_keywords: Option<Vec<Hot>>,
    /// The file's name, its blake3 digest (hex), and the line of the period's figures (or of
    /// its first hot row).
    pub file: String,
    pub digest: String,
    pub line: u64,
}

crate::event::upcast::event_enum!(
    /// Every event of the shop's numbers.
    MetricsEvent { MetricsRecorded }
);

/// What is kept of a period: the latest of each figure, the latest lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub figures: Figures,
    pub hot_products: Vec<Hot>,
    pub hot_keywords: Vec<Hot>,
    /// When the period was last recorded.
    pub recorded_at: DateTime<Utc>,
}

/// The shop's numbers, a projection of [`MetricsRecorded`] events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopMetrics {
    periods: BTreeMap<Period, Kept>,
    /// Events applied: the stream's version this projection reflects.
    applied: u64,
}

/// The shop's numbers over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Numbers {
    pub figures: Figures,
    /// Periods counted (days, or hours of days without a day's row).
    pub periods: u64,
    /// Summed over the periods, most first (then by name), at most [`MAX_HOT`].
    pub hot_products: Vec<Hot>,
    pub hot_keywords: Vec<Hot>,
}

impl ShopMetrics {
    pub fn new() -> ShopMetrics {
        ShopMetrics::default()
    }

    /// How many events were applied: the version of [`STREAM`] this reflects.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies one event recorded at `at`.
    pub fn apply(&mut self, event: &MetricsRecorded, at: DateTime<Utc>) {
        self.applied += 1;
        let kept = self.periods.entry(event.period).or_insert_with(|| Kept {
            start: event.start,
            end: event.end,
            figures: Figures::default(),
            hot_products: Vec::new(),
            hot_keywords: Vec::new(),
            recorded_at: at,
        });
        kept.start = event.start;
        kept.end = event.end;
        kept.figures.overlay(&event.figures);
        if let Some(products) = &event.hot_products {
            kept.hot_products = products.clone();
        }
        if let Some(keywords) = &event.hot_keywords {
            kept.hot_keywords = keywords.clone();
        }
        kept.recorded_at = at;
    }

    pub fn get(&self, period: &Period) -> Option<&Kept> {
        self.periods.get(period)
    }

    /// How many periods have figures or lists.
    pub fn len(&self) -> usize {
        self.periods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.periods.is_empty()
    }

    /// The periods whose `part` counts in `[from, to)`: each day that gives it on a row of its
    /// own and whose first instant is in the window, and the hours in the window of the other
    /// days. Figures and each list are counted apart: a day's row of hot products does not hide
    /// its hours' figures.
    fn counted<'a>(
        &'a self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        part: impl Fn(&Kept) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a Period, &'a Kept)> + 'a {
        let inside = move |kept: &Kept| from <= kept.start && kept.start < to;
        let counts = move |kept: &Kept| inside(kept) && part(kept);
        self.periods.iter().filter(move |(period, kept)| {
            if !counts(kept) {
                return false;
            }
            match period.hour {
                None => true,
                Some(_) => !self
                    .periods
                    .get(&Period {
                        date: period.date,
                        hour: None,
                    })
                    .is_some_and(&counts),
            }
        })
    }

    /// The numbers of `[from, to)`.
    pub fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Numbers {
        let mut numbers = Numbers::default();
        for (_, kept) in self.counted(from, to, |kept| !kept.figures.is_empty()) {
            numbers.figures.add(&kept.figures);
            numbers.periods += 1;
        }
        let sum = |list: fn(&Kept) -> &Vec<Hot>| {
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, kept) in self.counted(from, to, move |kept| !list(kept).is_empty()) {
                for hot in list(kept) {
                    let count = counts.entry(hot.name.as_str()).or_default();
                    *count = count.saturating_add(hot.count);
                }
            }
            ranked(counts)
        };
        numbers.hot_products = sum(|kept| &kept.hot_products);
        numbers.hot_keywords = sum(|kept| &kept.hot_keywords);
        numbers
    }

    /// Per local day of `[from, to)` with figures, its figures (its own row, or its hours
    /// summed), in order of day.
    pub fn days(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(NaiveDate, Figures)> {
        let mut days: BTreeMap<NaiveDate, Figures> = BTreeMap::new();
        for (period, kept) in self.counted(from, to, |kept| !kept.figures.is_empty()) {
            days.entry(period.date).or_default().add(&kept.figures);
        }
        days.into_iter().collect()
    }
}

/// Counts to a list, most first, then by name; at most [`MAX_HOT`].
fn ranked(counts: BTreeMap<&str, u64>) -> Vec<Hot> {
    let mut list: Vec<Hot> = counts
        .into_iter()
        .map(|(name, count)| Hot {
            name: name.to_string(),
            count,
        })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    list.truncate(MAX_HOT);
    list
}

/// A metric of a stage target measured from the shop's figures, `None` when they do not give
/// what it needs (or a ratio's denominator is zero). Reached and replies are battleplan's own.
pub fn shop_actual(figures: &Figures, metric: Metric) -> Option<TargetValue> {
    let count = |value: Option<u64>| value.map(TargetValue::Count);
    match metric {
        Metric::Gmv => figures.gmv.map(TargetValue::Money),
        Metric::Orders => count(figures.paid_orders),
        Metric::PayingBuyers => count(figures.paying_buyers),
        Metric::Inquiries => count(figures.inquiries),
        Metric::Visitors => count(figures.visitors),
        Metric::Fans => count(figures.new_fans),
        Metric::PageViews => count(figures.page_views),
        Metric::NewCustomers => match (figures.paying_buyers, figures.returning_buyers) {
            (Some(paying), Some(returning)) => {
                Some(TargetValue::Count(paying.saturating_sub(returning)))
            }
            _ => None,
        },
        Metric::AverageOrderValue => average(figures.gmv?, figures.paying_buyers?),
        Metric::ConversionRate => rate(figures.paying_buyers?, figures.visitors?),
        Metric::PaymentRate => rate(figures.paid_orders?, figures.placed_orders?),
        Metric::RepurchaseRate => rate(figures.returning_buyers?, figures.paying_buyers?),
        Metric::Reached | Metric::Replies => None,
    }
}

fn rate(part: u64, whole: u64) -> Option<TargetValue> {
    (whole > 0).then(|| TargetValue::Rate(part as f64 / whole as f64))
}

/// `gmv / buyers`, rounded to the nearest minor unit (halves away from zero).
pub fn average(gmv: Money, buyers: u64) -> Option<TargetValue> {
    if buyers == 0 {
        return None;
    }
    let gmv = i128::from(gmv.minor());
    let buyers = i128::from(buyers);
    let (quotient, remainder) = (gmv / buyers, gmv % buyers);
    let rounded = if 2 * remainder.abs() >= buyers {
        quotient + gmv.signum()
    } else {
        quotient
    };
    i64::try_from(rounded)
        .ok()
        .map(|minor| TargetValue::Money(Money::from_minor(minor)))
}

/// One of DOMAIN.md's formulas, computed from the shop's figures, with its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// `sales`, `conversion_rate`, `average_order_value`, `payment_rate`, `repurchase_rate`.
    pub key: &'static str,
    /// How it is computed, in words: `visitors × conversion rate × average order value`.
    pub expression: &'static str,
    /// `None` when an input is missing (or a denominator is zero).
    pub value: Option<TargetValue>,
    pub inputs: Vec<(&'static str, Option<TargetValue>)>,
}

/// DOMAIN.md "Measuring", from the shop's figures over a window: sales = visitors × conversion
/// rate × average order value (which gives back the paid amount, up to rounding); conversion
/// rate = paying buyers / visitors; average order value = paid amount / paying buyers; payment
/// rate = paid orders / placed orders; repurchase rate = returning paying buyers / paying
/// buyers.
pub fn formulas(figures: &Figures) -> Vec<Formula> {
    let count = |value: Option<u64>| value.map(TargetValue::Count);
    let conversion = shop_actual(figures, Metric::ConversionRate);
    let average_value = shop_actual(figures, Metric::AverageOrderValue);
    let sales = match (figures.visitors, conversion, average_value) {
        (Some(visitors), Some(TargetValue::Rate(rate)), Some(TargetValue::Money(value))) => {
            let minor = (visitors as f64 * rate * value.minor() as f64).round();
            // Within i64 for any amount a shop collects; beyond it there is no answer.
            (minor.abs() < 9.0e18).then(|| TargetValue::Money(Money::from_minor(minor as i64)))
        }
        _ => None,
    };
    vec![
        Formula {
            key: "sales",
            expression: "visitors × conversion rate × average order value",
            value: sales,
            inputs: vec![
                ("visitors", count(figures.visitors)),
                ("conversion_rate", conversion),
                ("average_order_value", average_value),
            ],
        },
        Formula {
            key: "conversion_rate",
            expression: "paying buyers / visitors",
            value: conversion,
            inputs: vec![
                ("paying_buyers", count(figures.paying_buyers)),
                ("visitors", count(figures.visitors)),
            ],
        },
        Formula {
            key: "average_order_value",
            expression: "paid amount / paying buyers",
            value: average_value,
            inputs: vec![
                ("gmv", figures.gmv.map(TargetValue::Money)),
                ("paying_buyers", count(figures.paying_buyers)),
            ],
        },
        Formula {
            key: "payment_rate",
            expression: "paid orders / placed orders",
            value: shop_actual(figures, Metric::PaymentRate),
            inputs: vec![
                ("paid_orders", count(figures.paid_orders)),
                ("placed_orders", count(figures.placed_orders)),
            ],
        },
        Formula {
            key: "repurchase_rate",
            expression: "returning paying buyers / paying buyers",
            value: shop_actual(figures, Metric::RepurchaseRate),
            inputs: vec![
                ("returning_buyers", count(figures.returning_buyers)),
                ("paying_buyers", count(figures.paying_buyers)),
            ],
        },
    ]
}

/// A row of a file that cannot be recorded with the others: its line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub line: u64,
    pub column: String,
    pub reason: String,
}

/// What an import of good rows records: one event per period whose figures or lists change
/// (none for a file recorded before), in order of period; or the rows that clash with others
/// of the file (a period's figures twice, a hot product twice in a period).
pub fn plan_import(
    metrics: &ShopMetrics,
    rows: Vec<row::MetricsRow>,
    zone: &str,
    file: &str,
    digest: &str,
) -> Result<Vec<MetricsRecorded>, Vec<Clash>> {
    struct Given {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        line: u64,
        figures: Option<(u64, Figures)>,
        products: Vec<(u64, Hot)>,
        keywords: Vec<(u64, Hot)>,
    }
    let mut given: BTreeMap<Period, Given> = BTreeMap::new();
    let mut clashes = Vec::new();
    for row in rows {
        let entry = given.entry(row.period).or_insert_with(|| Given {
            start: row.start,
            end: row.end,
            line: row.line,
            figures: None,
            products: Vec::new(),
            keywords: Vec::new(),
        });
        entry.line = entry.line.min(row.line);
        match row.gives {
            row::Gives::Figures(figures) => match &entry.figures {
                Some((first, _)) => clashes.push(Clash {
                    line: row.line,
                    column: "date".to_string(),
                    reason: format!(
                        "{} has figures on line {first} already; give a period's figures once a file",
                        row.period
                    ),
                }),
                None => entry.figures = Some((row.line, figures)),
            },
            row::Gives::Hot { kind, name, count } => {
                let list = match kind {
                    HotKind::Product => &mut entry.products,
                    HotKind::Keyword => &mut entry.keywords,
                };
                if let Some((first, _)) = list.iter().find(|(_, hot)| hot.name == name) {
                    clashes.push(Clash {
                        line: row.line,
                        column: kind.column().to_string(),
                        reason: format!(
                            "`{name}` is on line {first} already for {}; give each once a period",
                            row.period
                        ),
                    });
                } else if list.len() >= MAX_HOT {
                    clashes.push(Clash {
                        line: row.line,
                        column: kind.column().to_string(),
                        reason: format!(
                            "{} has {MAX_HOT} {}s already; a period keeps at most {MAX_HOT}",
                            row.period,
                            kind.column()
                        ),
                    });
                } else {
                    list.push((row.line, Hot { name, count }));
                }
            }
        }
    }
    if !clashes.is_empty() {
        clashes.sort_by_key(|clash| clash.line);
        return Err(clashes);
    }
    let list = |given: Vec<(u64, Hot)>| {
        let mut list: Vec<Hot> = given.into_iter().map(|(_, hot)| hot).collect();
        list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        list
    };
    let mut events = Vec::new();
    for (period, given) in given {
        let kept = metrics.get(&period);
        let figures = given
            .figures
            .map(|(_, figures)| figures)
            .unwrap_or_default();
        let before = kept.map(|kept| kept.figures.clone()).unwrap_or_default();
        let changed = before.changed_by(&figures);
        let mut corrects = Figures::default();
        for (figure, old) in &changed {
            corrects.set(*figure, *old);
        }
        let products = (!given.products.is_empty()).then(|| list(given.products));
        let keywords = (!given.keywords.is_empty()).then(|| list(given.keywords));
        let products_change = products
            .as_ref()
            .is_some_and(|new| kept.is_none_or(|kept| kept.hot_products != *new));
        let keywords_change = keywords
            .as_ref()
            .is_some_and(|new| kept.is_none_or(|kept| kept.hot_keywords != *new));
        if changed.is_empty() && !products_change && !keywords_change {
            continue;
        }
        events.push(MetricsRecorded {
            period,
            zone: zone.to_string(),
            start: given.start,
            end: given.end,
            figures,
            corrects,
            hot_products: products,
            hot_keywords: keywords,
            file: file.to_string(),
            digest: digest.to_string(),
            line: given.line,
        });
    }
    Ok(events)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests;
