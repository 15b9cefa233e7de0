//! Offers, checked against the platforms' published rules.

use super::{format_instant, DateMeaning, Validator};
use crate::plan::diagnostic::{Code, Diagnostic};
use crate::plan::model::*;
use crate::plan::raw::*;
use crate::plan::values::Money;

/// The platforms' limits on offers (Tmall's published rules).
const MAX_BUNDLES: usize = 50;
const MAX_BUNDLE_ITEMS: usize = 5;
const MAX_TIERS: usize = 3;

impl Validator<'_> {
    pub(super) fn offers(&mut self, phases: &[Phase], stages: &[Stage]) -> Offers {
        let raw = self.raw;
        let mut offers = Offers::default();
        for entry in &raw.coupons {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.min_spend.is_some_and(|spend| spend.minor() <= 0) {
                ok = false;
                self.push(Diagnostic::new(
                    Code::NegativeAmount,
                    format!("{path}.min_spend"),
                    "a minimum spend must be above zero",
                ));
            }
            if value.value.minor() <= 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::CouponValue,
                    format!("{path}.value"),
                    "a coupon must be worth more than zero",
                ));
            } else if let Some(min_spend) = value.min_spend {
                if value.value >= min_spend {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::CouponValue,
                        format!("{path}.value"),
                        format!("a coupon worth {} on a minimum spend of {min_spend} pays for the whole order", value.value),
                    ));
                }
            }
            if value.issue == CouponIssue::SpendThreshold && value.min_spend.is_none() {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::CouponThreshold,
                        format!("{path}.issue"),
                        "a spend-threshold coupon needs `min_spend`",
                    )
                    .with_help("add min_spend = 500.00 (or your threshold)"),
                );
            }
            for (key, zero) in [
                ("per_customer", value.per_customer == 0),
                ("quantity", value.quantity == Some(0)),
            ] {
                if zero {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        format!("{path}.{key}"),
                        format!("`{key}` of 0: the coupon could never be used"),
                    ));
                }
            }
            let window = self.optional_window(value.window.as_ref(), path, phases, stages, &mut ok);
            if ok {
                offers.coupons.push(Coupon {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    value: value.value,
                    min_spend: value.min_spend,
                    issue: value.issue,
                    quantity: value.quantity,
                    per_customer: value.per_customer,
                    code: value.code.clone(),
                    window,
                });
            }
        }
        let average = raw.campaign.as_ref().and_then(|c| c.average_order_value);
        for entry in &raw.tiered {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.tiers.is_empty() {
                ok = false;
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    format!("{path}.tiers"),
                    "a tiered offer needs at least one tier",
                ));
            }
            if value.tiers.len() > MAX_TIERS {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::TooManyTiers,
                        format!("{path}.tiers[{MAX_TIERS}]"),
                        format!(
                            "{} tiers; the platform's rule is at most {MAX_TIERS}",
                            value.tiers.len()
                        ),
                    )
                    .with_help("fewer, clearly distinct tiers convert better"),
                );
            }
            for (position, tier) in value.tiers.iter().enumerate() {
                let tier_path = format!("{path}.tiers[{position}]");
                if tier.spend.minor() <= 0 || tier.off.minor() <= 0 || tier.off >= tier.spend {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::TiersNotIncreasing,
                        tier_path.clone(),
                        format!("spend {} get {} off: the reward must be above zero and below the spend", tier.spend, tier.off),
                    ));
                }
                if let Some(previous) = position.checked_sub(1).map(|p| &value.tiers[p]) {
                    if tier.spend <= previous.spend || tier.off <= previous.off {
                        ok = false;
                        self.push(Diagnostic::new(
                            Code::TiersNotIncreasing,
                            tier_path,
                            format!(
                                "tier {} (spend {}, {} off) does not go beyond tier {} (spend {}, {} off); each tier must ask more and give more",
                                position + 1,
                                tier.spend,
                                tier.off,
                                position,
                                previous.spend,
                                previous.off
                            ),
                        ));
                    }
                }
            }
            let average = average.filter(|average| average.minor() > 0);
            if let (Some(average), Some(first)) = (average, value.tiers.first()) {
                // 10% and 30% above the average, in whole cents.
                let low = (average.minor() * 110 + 99) / 100;
                let high = average.minor() * 130 / 100;
                let threshold = first.spend.minor();
                if threshold < low || threshold > high {
                    self.push(
                        Diagnostic::new(
                            Code::TierThreshold,
                            format!("{path}.tiers[0].spend"),
                            format!(
                                "the first threshold {} is {:+.0}% against the average order value {average}; 10% to 30% above it works best",
                                first.spend,
                                (threshold as f64 / average.minor() as f64 - 1.0) * 100.0
                            ),
                        )
                        .with_help(format!(
                            "a first tier between {} and {}",
                            Money::from_minor(low),
                            Money::from_minor(high)
                        )),
                    );
                }
            }
            let window = self.optional_window(value.window.as_ref(), path, phases, stages, &mut ok);
            if ok {
                offers.tiered.push(TieredOffer {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    tiers: value.tiers.iter().map(|t| (t.spend, t.off)).collect(),
                    window,
                });
            }
        }
        for entry in &raw.discounts {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.list_price.minor() <= 0 {
                self.push(Diagnostic::new(
                    Code::NegativeAmount,
                    format!("{path}.list_price"),
                    "a list price must be above zero",
                ));
                continue;
            }
            let one_percent = (value.list_price.minor() + 99) / 100;
            if value.price >= value.list_price {
                ok = false;
                self.push(Diagnostic::new(
                    Code::DiscountNotLower,
                    format!("{path}.price"),
                    format!(
                        "the discounted price {} is not below the list price {}",
                        value.price, value.list_price
                    ),
                ));
            } else if value.price.minor() < 100 || value.price.minor() < one_percent {
                ok = false;
                self.push(Diagnostic::new(
                    Code::DiscountTooDeep,
                    format!("{path}.price"),
                    format!(
                        "the discounted price {} must be at least 1% of the list price ({}) and at least 1.00",
                        value.price,
                        Money::from_minor(one_percent)
                    ),
                ));
            }
            let window =
                self.named_or_between(&value.window, &format!("{path}.window"), phases, stages);
            let listed_from = match &value.listed_from {
                Some(spec) => self.resolve(
                    spec,
                    DateMeaning::StartOfDay,
                    &format!("{path}.listed_from"),
                ),
                None => None,
            };
            let listed_until = match &value.listed_until {
                Some(spec) => {
                    self.resolve(spec, DateMeaning::EndOfDay, &format!("{path}.listed_until"))
                }
                None => None,
            };
            if let (Some(window), Some(zone)) = (window, self.time_zone) {
                if let Some(from) = listed_from.filter(|from| *from > window.start) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::NotListed,
                        format!("{path}.listed_from"),
                        format!(
                            "the item is listed from {} but the discount starts at {}; it must be listed before the discount starts",
                            format_instant(zone, from),
                            format_instant(zone, window.start)
                        ),
                    ));
                }
                if let Some(until) = listed_until.filter(|until| *until < window.end) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::NotListed,
                        format!("{path}.listed_until"),
                        format!(
                            "the item is delisted at {} but the discount runs to {}; it must stay listed until the discount ends",
                            format_instant(zone, until),
                            format_instant(zone, window.end)
                        ),
                    ));
                }
            }
            if let (true, Some(window)) = (ok, window) {
                offers.discounts.push(Discount {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    item: value.item.clone(),
                    list_price: value.list_price,
                    price: value.price,
                    window,
                });
            }
        }
        if raw.bundles.len() > MAX_BUNDLES {
            if let Some(entry) = raw.bundles.get(MAX_BUNDLES) {
                self.push_at_key(Diagnostic::new(
                    Code::TooManyBundles,
                    entry.path.clone(),
                    format!(
                        "{} bundles; a shop may have at most {MAX_BUNDLES}",
                        raw.bundles.len()
                    ),
                ));
            }
        }
        for entry in &raw.bundles {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.items.len() < 2 || value.items.len() > MAX_BUNDLE_ITEMS {
                ok = false;
                self.push(Diagnostic::new(
                    Code::BundleSize,
                    format!("{path}.items"),
                    format!(
                        "a bundle has 2 to {MAX_BUNDLE_ITEMS} items; this one has {}",
                        value.items.len()
                    ),
                ));
            }
            if value.items.iter().any(|item| item.price.minor() <= 0) || value.price.minor() <= 0 {
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    format!("{path}.price"),
                    "a bundle and each of its items must cost more than zero",
                ));
                continue;
            }
            // i128: no number of items can overflow it.
            let sum: i128 = value
                .items
                .iter()
                .map(|item| i128::from(item.price.minor()))
                .sum();
            if i128::from(value.price.minor()) >= sum {
                ok = false;
                self.push(Diagnostic::new(
                    Code::BundleNotCheaper,
                    format!("{path}.price"),
                    format!("the bundle costs {} but its items cost {} bought alone; a bundle must be cheaper", value.price, Money::from_minor(i64::try_from(sum).unwrap_or(i64::MAX))),
                ));
            }
            let window = self.optional_window(value.window.as_ref(), path, phases, stages, &mut ok);
            if ok {
                offers.bundles.push(Bundle {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    items: value
                        .items
                        .iter()
                        .map(|item| (item.sku.clone(), item.price))
                        .collect(),
                    price: value.price,
                    window,
                });
            }
        }
        offers
    }

    /// An offer's window, when it has one; a window that does not resolve marks the offer bad.
    fn optional_window(
        &mut self,
        window: Option<&RawWindow>,
        path: &str,
        phases: &[Phase],
        stages: &[Stage],
        ok: &mut bool,
    ) -> Option<Window> {
        let window = window?;
        let resolved = self.named_or_between(window, &format!("{path}.window"), phases, stages);
        *ok &= resolved.is_some();
        resolved
    }
}
