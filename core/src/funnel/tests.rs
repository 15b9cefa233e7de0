//! The funnel's rules, each as given / when / then: reached before `as_of`, handshake and order
//! within `[R, R + 30 d)`, repurchase against the history and the imported order count, outcomes
//! placed by their instant whatever the order they arrive in, monotonicity, and the stage actuals
//! the boss compares with the targets. The renderings are snapshots over the September plan.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::render::{grouped, money_text};
use super::{
    funnel_json, measured, render_funnel, render_targets, targets_against_actuals, targets_json,
    Funnel, FunnelReport, Source, StageActuals, STAGES,
};
use crate::customer::events::{OutcomeKind, OutcomeRecorded};
use crate::plan::model::{ChannelKind, LifecycleStage, Metric, PhaseKind, Plan, TargetValue};
use crate::plan::values::Money;
use crate::plan::EXAMPLE_PLAN;

const CAMPAIGN: &str = "sept-festival-2026";

fn plan() -> Plan {
    let checked = crate::plan::check(EXAMPLE_PLAN.as_bytes());
    checked
        .plan
        .unwrap_or_else(|| panic!("example plan invalid: {:?}", checked.diagnostics))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn outcome(customer: &str, kind: OutcomeKind, instant: DateTime<Utc>) -> OutcomeRecorded {
    OutcomeRecorded {
        customer: customer.to_string(),
        line: 1,
        outcome: kind,
        at: instant,
        campaign: None,
        reach_out: None,
        channel: None,
        amount: None,
        message: None,
        offer: None,
    }
}

fn reply(customer: &str, instant: DateTime<Utc>) -> OutcomeRecorded {
    outcome(customer, OutcomeKind::Replied, instant)
}

fn order(customer: &str, instant: DateTime<Utc>, amount: &str) -> OutcomeRecorded {
    OutcomeRecorded {
        amount: Some(Money::parse_text(amount).unwrap()),
        ..outcome(customer, OutcomeKind::Ordered, instant)
    }
}

fn order_for(
    customer: &str,
    instant: DateTime<Utc>,
    amount: &str,
    campaign: &str,
) -> OutcomeRecorded {
    OutcomeRecorded {
        campaign: Some(campaign.to_string()),
        ..order(customer, instant, amount)
    }
}

/// The five counts of a phase (or overall), potential first.
fn counts(report: &FunnelReport, phase: Option<PhaseKind>) -> [u64; 5] {
    STAGES.map(|stage| report.count(phase, stage))
}

const WARM_UP: Option<PhaseKind> = Some(PhaseKind::WarmUp);
const BURST: Option<PhaseKind> = Some(PhaseKind::Burst);
const OVERALL: Option<PhaseKind> = None;

/// A warm-up reach: Aug 27, 10:00 in Shanghai.
fn warm_up_reach() -> DateTime<Utc> {
    at("2026-08-27T10:00:00+08:00")
}

fn reached_in_warm_up(funnel: &mut Funnel, customer: &str) {
    funnel.reached(
        CAMPAIGN,
        customer,
        warm_up_reach(),
        PhaseKind::WarmUp,
        ChannelKind::Mail,
    );
}

const LATE: &str = "2026-10-30T00:00:00+08:00";

#[test]
fn a_bounced_mail_is_not_a_reach_and_earns_no_later_order() {
    // Given three customers mailed in the warm-up and one messaged in-site
    let mut funnel = Funnel::new();
    for customer in ["c-1", "c-2", "c-3"] {
        reached_in_warm_up(&mut funnel, customer);
    }
    funnel.reached(
        CAMPAIGN,
        "c-4",
        warm_up_reach(),
        PhaseKind::WarmUp,
        ChannelKind::InSite,
    );
    let bounce_at = warm_up_reach() + Duration::hours(1);
    let bounce = |customer: &str, channel: Option<ChannelKind>| OutcomeRecorded {
        channel,
        campaign: Some(CAMPAIGN.to_string()),
        ..outcome(customer, OutcomeKind::Bounced, bounce_at)
    };
    // When c-1's mail bounces (and a bounce without a channel arrives for the in-site c-4),
    // and c-1 orders a day later
    funnel.outcome(&bounce("c-1", Some(ChannelKind::Mail)));
    funnel.outcome(&bounce("c-4", None));
    funnel.outcome(&order("c-1", warm_up_reach() + Duration::days(1), "99.00"));
    // Then c-1 is considered but neither reached nor converted; in-site c-4 still counts
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [4, 3, 0, 0, 0]);
    assert_eq!(
        funnel.stage_of(CAMPAIGN, "c-1", at(LATE)),
        Some(LifecycleStage::Potential)
    );
    assert_eq!(
        funnel.stage_of(CAMPAIGN, "c-4", at(LATE)),
        Some(LifecycleStage::Reached)
    );
    // And as of before the bounce, c-1 counted as reached
    let before = funnel.report(&plan(), bounce_at);
    assert_eq!(counts(&before, WARM_UP), [4, 4, 0, 0, 0]);

    // When c-1 is mailed again in the burst and that mail is delivered, then it counts: the
    // bounce was about the earlier mail
    let burst_reach = at("2026-09-03T10:00:00+08:00");
    funnel.reached(
        CAMPAIGN,
        "c-1",
        burst_reach,
        PhaseKind::Burst,
        ChannelKind::Mail,
    );
    funnel.outcome(&order("c-1", burst_reach + Duration::days(2), "99.00"));
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [4, 3, 0, 0, 0]);
    assert_eq!(counts(&report, BURST), [1, 1, 1, 1, 1]);
}

#[test]
fn reached_counts_deliveries_before_as_of_only() {
    // Given a delivery in the warm-up and one in the burst at Sep 3, 10:00
    let mut funnel = Funnel::new();
    reached_in_warm_up(&mut funnel, "c-1");
    let burst_reach = at("2026-09-03T10:00:00+08:00");
    funnel.reached(
        CAMPAIGN,
        "c-2",
        burst_reach,
        PhaseKind::Burst,
        ChannelKind::Mail,
    );
    // When asked at the burst delivery's instant, then it is not counted yet
    let report = funnel.report(&plan(), burst_reach);
    assert_eq!(counts(&report, WARM_UP), [1, 1, 0, 0, 0]);
    assert_eq!(counts(&report, BURST), [0, 0, 0, 0, 0]);
    // When asked a millisecond later, then it is
    let report = funnel.report(&plan(), burst_reach + Duration::milliseconds(1));
    assert_eq!(counts(&report, BURST), [1, 1, 0, 0, 0]);
    assert_eq!(counts(&report, OVERALL), [2, 2, 0, 0, 0]);
}

#[test]
fn potential_is_the_considered_plus_the_reached() {
    // Given three customers considered in the warm-up, one of them reached, and one reached
    // without having been considered
    let mut funnel = Funnel::new();
    for customer in ["c-1", "c-2", "c-3"] {
        funnel.considered(CAMPAIGN, customer, PhaseKind::WarmUp);
    }
    funnel.considered(CAMPAIGN, "c-1", PhaseKind::WarmUp);
    reached_in_warm_up(&mut funnel, "c-1");
    reached_in_warm_up(&mut funnel, "c-4");
    // When asked, then potential counts four distinct customers, reached two: a half
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [4, 2, 0, 0, 0]);
    let warm_up = &report.phases[1];
    assert_eq!(warm_up.phase, PhaseKind::WarmUp);
    assert_eq!(warm_up.steps[0].conversion, None);
    assert_eq!(warm_up.steps[1].conversion, Some(0.5));
    // and an empty stage makes the next conversion `None`, not 0 or NaN
    assert_eq!(warm_up.steps[3].conversion, None);
    assert_eq!(warm_up.steps[2].conversion, Some(0.0));
    // and considered customers of another campaign are not this one's
    let mut other = Funnel::new();
    other.considered("another-campaign", "c-1", PhaseKind::WarmUp);
    assert_eq!(counts(&other.report(&plan(), at(LATE)), OVERALL), [0; 5]);
}

#[test]
fn handshake_is_a_reply_within_thirty_days_of_the_reach() {
    // Given three reached customers: one replied a millisecond before R + 30 d, one exactly at
    // R + 30 d, one before the reach
    let mut funnel = Funnel::new();
    let r = warm_up_reach();
    for customer in ["in-span", "at-end", "before"] {
        reached_in_warm_up(&mut funnel, customer);
    }
    funnel.outcome(&reply(
        "in-span",
        r + Duration::days(30) - Duration::milliseconds(1),
    ));
    funnel.outcome(&reply("at-end", r + Duration::days(30)));
    funnel.outcome(&reply("before", r - Duration::hours(1)));
    // When asked well after, then only the first shook hands
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [3, 3, 1, 0, 0]);
}

#[test]
fn an_order_at_exactly_thirty_days_is_not_counted() {
    // Given two reached customers who ordered at R + 30 d - 1 ms and at R + 30 d
    let mut funnel = Funnel::new();
    let r = warm_up_reach();
    reached_in_warm_up(&mut funnel, "just-in");
    reached_in_warm_up(&mut funnel, "just-out");
    funnel.outcome(&order(
        "just-in",
        r + Duration::days(30) - Duration::milliseconds(1),
        "10.00",
    ));
    funnel.outcome(&order("just-out", r + Duration::days(30), "10.00"));
    // When asked, then one order, and it is a handshake too (the funnel is monotone)
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [2, 2, 1, 1, 0]);
    // and the stage actuals do not attribute the order at R + 30 d either (Sep 26 is in `late`)
    let actuals = funnel.stage_actuals(&plan(), at(LATE));
    let late = actuals
        .iter()
        .find(|actual| actual.stage == "late")
        .unwrap();
    assert_eq!(late.orders, 1);
    assert_eq!(late.paying_buyers, 1);
}

#[test]
fn a_late_imported_order_counts_against_the_reach_it_follows() {
    // Given a warm-up reach on Aug 27, a burst reach on Sep 5, and then, imported last, an
    // order placed on Aug 30
    let mut funnel = Funnel::new();
    reached_in_warm_up(&mut funnel, "c-1");
    funnel.reached(
        CAMPAIGN,
        "c-1",
        at("2026-09-05T09:00:00+08:00"),
        PhaseKind::Burst,
        ChannelKind::Mail,
    );
    funnel.outcome(&order("c-1", at("2026-08-30T15:00:00+08:00"), "320.00"));
    // When asked, then the order is the warm-up's, not the burst's
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [1, 1, 1, 1, 0]);
    assert_eq!(counts(&report, BURST), [1, 1, 0, 0, 0]);
    assert_eq!(counts(&report, OVERALL), [1, 1, 1, 1, 0]);
}

#[test]
fn outcomes_fed_before_the_reach_they_follow_still_count() {
    // Given a reply recorded before the reach it follows was fed
    let mut funnel = Funnel::new();
    funnel.outcome(&reply("c-1", warm_up_reach() + Duration::days(1)));
    reached_in_warm_up(&mut funnel, "c-1");
    // When asked, then it is a handshake
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [1, 1, 1, 0, 0]);
}

#[test]
fn repurchase_is_an_order_that_was_not_the_customers_first() {
    let r = warm_up_reach();
    let mut funnel = Funnel::new();
    // Given a customer whose first order ever is in the span
    reached_in_warm_up(&mut funnel, "first");
    funnel.outcome(&order("first", r + Duration::days(1), "100.00"));
    // and one who ordered twice in the span
    reached_in_warm_up(&mut funnel, "twice");
    funnel.outcome(&order("twice", r + Duration::days(1), "100.00"));
    funnel.outcome(&order("twice", r + Duration::days(2), "100.00"));
    // and one whose earlier order, long before the reach, was imported after the one in span
    reached_in_warm_up(&mut funnel, "history");
    funnel.outcome(&order("history", r + Duration::days(3), "100.00"));
    funnel.outcome(&order("history", r - Duration::days(90), "100.00"));
    // and one whose only order is in the span but whose import said they had ordered before
    reached_in_warm_up(&mut funnel, "imported");
    funnel.prior_orders("imported", 2);
    funnel.prior_orders("imported", 0);
    funnel.outcome(&order("imported", r + Duration::days(4), "100.00"));
    // When asked, then all four ordered, three of them repurchased
    let report = funnel.report(&plan(), at(LATE));
    assert_eq!(counts(&report, WARM_UP), [4, 4, 4, 4, 3]);
    // and before the second order of `twice`, only two had
    let report = funnel.report(&plan(), r + Duration::days(2));
    assert_eq!(counts(&report, WARM_UP), [4, 4, 2, 2, 0]);
    let report = funnel.report(&plan(), r + Duration::days(5));
    assert_eq!(counts(&report, WARM_UP), [4, 4, 4, 4, 3]);
}

#[test]
fn outcomes_at_or_after_as_of_are_ignored() {
    // Given a reached customer who replied on Aug 29 and ordered on Aug 30 at noon
    let mut funnel = Funnel::new();
    reached_in_warm_up(&mut funnel, "c-1");
    funnel.outcome(&reply("c-1", at("2026-08-29T12:00:00+08:00")));
    funnel.outcome(&order("c-1", at("2026-08-30T12:00:00+08:00"), "50.00"));
    // When asked at the order's instant, then only the reply counts
    let report = funnel.report(&plan(), at("2026-08-30T12:00:00+08:00"));
    assert_eq!(counts(&report, WARM_UP), [1, 1, 1, 0, 0]);
    // and the order's stage actuals do not count it (it is before the burst anyway): nothing
    let actuals = funnel.stage_actuals(&plan(), at("2026-08-30T12:00:00+08:00"));
    assert!(actuals.iter().all(|actual| actual.orders == 0));
    // When asked before the reply, then neither counts
    let report = funnel.report(&plan(), at("2026-08-29T11:59:59+08:00"));
    assert_eq!(counts(&report, WARM_UP), [1, 1, 0, 0, 0]);
}

#[test]
fn reaches_of_other_campaigns_do_not_count() {
    // Given a customer reached by another campaign who then ordered
    let mut funnel = Funnel::new();
    funnel.reached(
        "another-campaign",
        "c-1",
        warm_up_reach(),
        PhaseKind::WarmUp,
        ChannelKind::Mail,
    );
    funnel.outcome(&order("c-1", warm_up_reach() + Duration::days(1), "10.00"));
    // When asked, then this campaign's funnel is empty
    assert_eq!(counts(&funnel.report(&plan(), at(LATE)), OVERALL), [0; 5]);
    assert_eq!(funnel.customers(), 1);
}

#[test]
fn a_phase_the_plan_lacks_is_not_reported() {
    // Given a plan without a review phase, and a reach the wiring said was in review
    let mut plan = plan();
    plan.phases.retain(|phase| phase.kind != PhaseKind::Review);
    let mut funnel = Funnel::new();
    funnel.reached(
        CAMPAIGN,
        "c-1",
        at(LATE),
        PhaseKind::Review,
        ChannelKind::Mail,
    );
    // When asked, then the review phase is not reported and the reach is not counted overall
    let report = funnel.report(&plan, at(LATE) + Duration::days(1));
    let phases: Vec<PhaseKind> = report.phases.iter().map(|funnel| funnel.phase).collect();
    assert_eq!(
        phases,
        [PhaseKind::Prep, PhaseKind::WarmUp, PhaseKind::Burst]
    );
    assert_eq!(counts(&report, OVERALL), [0; 5]);
}

#[derive(Debug, Clone)]
enum Fed {
    Considered(usize, PhaseKind),
    Reached(usize, i64, PhaseKind),
    Reply(usize, i64),
    Order(usize, i64),
    Prior(usize, u32),
}

fn phase_strategy() -> impl Strategy<Value = PhaseKind> {
    prop::sample::select(PhaseKind::ALL.to_vec())
}

fn fed_strategy() -> impl Strategy<Value = Fed> {
    let customer = 0usize..6;
    let hours = 0i64..(80 * 24);
    prop_oneof![
        (customer.clone(), phase_strategy()).prop_map(|(c, p)| Fed::Considered(c, p)),
        (customer.clone(), hours.clone(), phase_strategy())
            .prop_map(|(c, h, p)| Fed::Reached(c, h, p)),
        (customer.clone(), hours.clone()).prop_map(|(c, h)| Fed::Reply(c, h)),
        (customer.clone(), hours).prop_map(|(c, h)| Fed::Order(c, h)),
        (customer, 0u32..3).prop_map(|(c, n)| Fed::Prior(c, n)),
    ]
}

proptest! {
    /// Whatever is fed, in whatever order, every stage counts at most the stage above, overall
    /// and in every phase, and the overall count is at least each phase's.
    #[test]
    fn the_funnel_is_monotone(fed in prop::collection::vec(fed_strategy(), 0..40), as_of_hours in 0i64..(90 * 24)) {
        let base = at("2026-08-19T00:00:00+08:00");
        let plan = plan();
        let mut funnel = Funnel::new();
        for item in &fed {
            match item {
                Fed::Considered(c, p) => funnel.considered(CAMPAIGN, &format!("c-{c}"), *p),
                Fed::Reached(c, h, p) => funnel.reached(CAMPAIGN, &format!("c-{c}"), base + Duration::hours(*h), *p, ChannelKind::Mail),
                Fed::Reply(c, h) => funnel.outcome(&reply(&format!("c-{c}"), base + Duration::hours(*h))),
                Fed::Order(c, h) => funnel.outcome(&order(&format!("c-{c}"), base + Duration::hours(*h), "1.00")),
                Fed::Prior(c, n) => funnel.prior_orders(&format!("c-{c}"), *n),
            }
        }
        let report = funnel.report(&plan, base + Duration::hours(as_of_hours));
        let mut phases: Vec<Option<PhaseKind>> = PhaseKind::ALL.into_iter().map(Some).collect();
        phases.push(None);
        for phase in phases {
            let counts = counts(&report, phase);
            for pair in counts.windows(2) {
                prop_assert!(pair[1] <= pair[0], "{phase:?}: {counts:?}");
            }
            for (stage, count) in STAGES.into_iter().zip(counts) {
                prop_assert!(count <= report.count(None, stage));
            }
        }
        // and the same events fed in reverse give the same report
        let mut reversed = Funnel::new();
        for item in fed.iter().rev() {
            match item {
                Fed::Considered(c, p) => reversed.considered(CAMPAIGN, &format!("c-{c}"), *p),
                Fed::Reached(c, h, p) => reversed.reached(CAMPAIGN, &format!("c-{c}"), base + Duration::hours(*h), *p, ChannelKind::Mail),
                Fed::Reply(c, h) => reversed.outcome(&reply(&format!("c-{c}"), base + Duration::hours(*h))),
                Fed::Order(c, h) => reversed.outcome(&order(&format!("c-{c}"), base + Duration::hours(*h), "1.00")),
                Fed::Prior(c, n) => reversed.prior_orders(&format!("c-{c}"), *n),
            }
        }
        prop_assert_eq!(reversed.report(&plan, base + Duration::hours(as_of_hours)), report);
    }
}

fn feed(funnel: &mut Funnel, item: &Fed, base: DateTime<Utc>) {
    match item {
        Fed::Considered(c, p) => funnel.considered(CAMPAIGN, &format!("c-{c}"), *p),
        Fed::Reached(c, h, p) => funnel.reached(
            CAMPAIGN,
            &format!("c-{c}"),
            base + Duration::hours(*h),
            *p,
            ChannelKind::Mail,
        ),
        Fed::Reply(c, h) => funnel.outcome(&reply(&format!("c-{c}"), base + Duration::hours(*h))),
        Fed::Order(c, h) => funnel.outcome(&order(
            &format!("c-{c}"),
            base + Duration::hours(*h),
            "1.00",
        )),
        Fed::Prior(c, n) => funnel.prior_orders(&format!("c-{c}"), *n),
    }
}

proptest! {
    /// The memo answers exactly what a fresh count would, at any instant, before and after more
    /// is fed: counts kept only while no fed instant can fall on either side of `as_of`.
    #[test]
    fn the_memo_answers_as_a_fresh_count(
        first in prop::collection::vec(fed_strategy(), 0..30),
        then in prop::collection::vec(fed_strategy(), 0..10),
        instants in prop::collection::vec(0i64..(90 * 24), 1..5),
        bounce in prop::option::of((0usize..6, 0i64..(80 * 24))),
    ) {
        let base = at("2026-08-19T00:00:00+08:00");
        let plan = plan();
        let mut funnel = Funnel::new();
        for item in &first {
            feed(&mut funnel, item, base);
        }
        let check = |funnel: &mut Funnel| -> Result<(), TestCaseError> {
            for hours in &instants {
                let as_of = base + Duration::hours(*hours);
                prop_assert_eq!(funnel.report_memo(&plan, as_of), funnel.report(&plan, as_of));
                prop_assert_eq!(
                    funnel.stage_actuals_memo(&plan, as_of),
                    funnel.stage_actuals(&plan, as_of)
                );
            }
            Ok(())
        };
        check(&mut funnel)?;
        for item in &then {
            feed(&mut funnel, item, base);
        }
        if let Some((customer, hours)) = bounce {
            funnel.outcome(&outcome(
                &format!("c-{customer}"),
                OutcomeKind::Bounced,
                base + Duration::hours(hours),
            ));
        }
        check(&mut funnel)?;
    }
}

#[test]
fn stage_actuals_attribute_orders_by_reach_or_by_name() {
    let mut funnel = Funnel::new();
    let early_reach = at("2026-09-03T10:00:00+08:00");
    // Given two customers reached early who ordered 260.00 and 1,000.01 in the early stage
    for customer in ["c-1", "c-2"] {
        funnel.reached(
            CAMPAIGN,
            customer,
            early_reach,
            PhaseKind::Burst,
            ChannelKind::Mail,
        );
    }
    funnel.outcome(&order("c-1", at("2026-09-04T10:00:00+08:00"), "260.00"));
    funnel.outcome(&order("c-2", at("2026-09-05T10:00:00+08:00"), "1000.01"));
    // and c-1 ordering again (a repurchase) and replying, in the same stage
    funnel.outcome(&order("c-1", at("2026-09-06T10:00:00+08:00"), "40.00"));
    funnel.outcome(&reply("c-1", at("2026-09-06T11:00:00+08:00")));
    // and a customer never reached whose order names the campaign, with no amount
    funnel.outcome(&OutcomeRecorded {
        campaign: Some(CAMPAIGN.to_string()),
        ..outcome(
            "named",
            OutcomeKind::Ordered,
            at("2026-09-07T10:00:00+08:00"),
        )
    });
    // and one never reached whose order names no campaign: not this campaign's
    funnel.outcome(&order(
        "stranger",
        at("2026-09-07T10:00:00+08:00"),
        "999.00",
    ));
    // and one whose order names another campaign: not this one's either
    funnel.outcome(&order_for(
        "other",
        at("2026-09-07T10:00:00+08:00"),
        "5.00",
        "another",
    ));
    // and an order in the middle stage named for the campaign
    funnel.outcome(&order_for(
        "c-3",
        at("2026-09-12T10:00:00+08:00"),
        "77.00",
        CAMPAIGN,
    ));
    // When asked on Sep 12 at 10:00, with the middle stage's order at exactly that instant
    let actuals = funnel.stage_actuals(&plan(), at("2026-09-12T10:00:00+08:00"));
    // Then early has the three reached customers' orders and the named one
    let stages: Vec<&str> = actuals.iter().map(|actual| actual.stage.as_str()).collect();
    assert_eq!(stages, ["early", "middle", "late"]);
    let early = &actuals[0];
    assert_eq!(early.gmv, Money::from_minor(130_001));
    assert_eq!(early.orders, 4);
    assert_eq!(early.orders_without_amount, 1);
    assert_eq!(early.paying_buyers, 3);
    assert_eq!(early.returning_buyers, 1);
    assert_eq!(early.reached, 2);
    assert_eq!(early.replies, 1);
    // 1,300.01 / 3 = 433.336...
    assert_eq!(early.average_order_value(), Some(Money::from_minor(43_334)));
    assert_eq!(early.repurchase_rate(), Some(1.0 / 3.0));
    assert_eq!(
        early.actual(Metric::Gmv),
        Some(TargetValue::Money(Money::from_minor(130_001)))
    );
    assert_eq!(early.actual(Metric::Orders), Some(TargetValue::Count(4)));
    // and the middle stage is measured up to as_of, so its order is not counted yet
    let middle = &actuals[1];
    assert_eq!((middle.orders, middle.gmv), (0, Money::from_minor(0)));
    assert_eq!(middle.window.end, at("2026-09-12T10:00:00+08:00"));
    assert_eq!(middle.actual(Metric::AverageOrderValue), None);
    assert_eq!(middle.actual(Metric::RepurchaseRate), None);
    // and the late stage, not started, has an empty window and zero counts
    let late = &actuals[2];
    assert_eq!(late.window.start, late.window.end);
    assert_eq!(late.actual(Metric::Orders), Some(TargetValue::Count(0)));
    // When asked later, then the middle stage has it
    let actuals = funnel.stage_actuals(&plan(), at(LATE));
    assert_eq!(actuals[1].gmv, Money::from_minor(7_700));
    assert_eq!(
        actuals[1].average_order_value(),
        Some(Money::from_minor(7_700))
    );
}

#[test]
fn metrics_without_a_source_are_not_measured_never_zero() {
    let actuals = Funnel::new().stage_actuals(&plan(), at(LATE));
    for metric in Metric::ALL {
        let actual = actuals[0].actual(metric);
        assert_eq!(
            measured(metric),
            actual.is_some()
                || matches!(metric, Metric::AverageOrderValue | Metric::RepurchaseRate),
            "{metric:?}"
        );
    }
    for metric in [
        Metric::Inquiries,
        Metric::Visitors,
        Metric::Fans,
        Metric::PageViews,
        Metric::ConversionRate,
        Metric::PaymentRate,
    ] {
        assert!(!measured(metric));
        assert_eq!(actuals[0].actual(metric), None);
    }
}

#[test]
fn every_target_gets_a_line_with_its_actual_and_ratio() {
    let plan = plan();
    let mut funnel = Funnel::new();
    funnel.outcome(&order_for(
        "c-1",
        at("2026-09-03T10:00:00+08:00"),
        "30000.00",
        CAMPAIGN,
    ));
    let actuals = funnel.stage_actuals(&plan, at(LATE));
    let lines = targets_against_actuals(&plan, &actuals, &[]);
    assert_eq!(lines.len(), plan.targets.len());
    let line = |stage: &str, metric: Metric| {
        lines
            .iter()
            .find(|line| line.stage == stage && line.metric == metric)
            .unwrap()
    };
    let gmv = line("early", Metric::Gmv);
    assert_eq!(
        gmv.target,
        TargetValue::Money(Money::from_minor(30_000_000))
    );
    assert_eq!(
        gmv.actual,
        Some(TargetValue::Money(Money::from_minor(3_000_000)))
    );
    assert_eq!(gmv.ratio, Some(0.1));
    let inquiries = line("early", Metric::Inquiries);
    assert_eq!((inquiries.actual, inquiries.ratio), (None, None));
    let middle_orders = line("middle", Metric::Orders);
    assert_eq!(middle_orders.actual, Some(TargetValue::Count(0)));
    assert_eq!(middle_orders.ratio, Some(0.0));
    assert_eq!(middle_orders.source, Some(Source::Campaign));

    // The shop's numbers for the early stage measure what the campaign cannot, and stand for
    // the whole shop where both measure (its GMV, not only the attributed orders').
    let shop = [crate::metrics::Figures {
        inquiries: Some(350),
        gmv: Some(Money::from_minor(31_000_000)),
        ..Default::default()
    }];
    let lines = targets_against_actuals(&plan, &actuals, &shop);
    let early = |metric: Metric| {
        lines
            .iter()
            .find(|line| line.stage == "early" && line.metric == metric)
            .unwrap()
            .clone()
    };
    assert_eq!(
        early(Metric::Inquiries).actual,
        Some(TargetValue::Count(350))
    );
    assert_eq!(early(Metric::Inquiries).source, Some(Source::Shop));
    assert_eq!(
        early(Metric::Gmv).actual,
        Some(TargetValue::Money(Money::from_minor(31_000_000)))
    );
    assert_eq!(early(Metric::Gmv).source, Some(Source::Shop));
    assert_eq!(early(Metric::Orders).source, Some(Source::Campaign));
}

#[test]
fn numbers_print_grouped() {
    assert_eq!(grouped(0), "0");
    assert_eq!(grouped(999), "999");
    assert_eq!(grouped(1_000), "1,000");
    assert_eq!(grouped(12_345_678), "12,345,678");
    assert_eq!(
        money_text(Money::from_minor(30_000_000), "CNY"),
        "300,000.00 CNY"
    );
    assert_eq!(money_text(Money::from_minor(-5), "CNY"), "-0.05 CNY");
}

/// The September plan with a small population, asked on Sep 16 at noon in Shanghai:
/// - warm-up: w-1 .. w-6 considered; w-1 .. w-4 reached on Aug 27-28; w-1 replied, w-2 ordered
///   (320.00, named for the campaign), w-1 ordered on Sep 4 (after a burst reach on Sep 3);
/// - burst: b-1 .. b-8 considered; b-1, b-2, b-3 reached early, b-4, b-5 in the middle stage;
///   b-1 ordered twice (260.00 early, 199.90 middle: a repurchase), b-2 replied, b-4 ordered
///   12,345.67, b-5 (3 orders before, says the import) ordered 88.00;
/// - a customer never reached ordered 500.00 naming the campaign (counted in the actuals, not in
///   the funnel), another 999.00 naming nothing (counted nowhere);
/// - an order on Sep 17, after as_of, is ignored.
fn population() -> Funnel {
    let mut funnel = Funnel::new();
    for n in 1..=6 {
        funnel.considered(CAMPAIGN, &format!("w-{n}"), PhaseKind::WarmUp);
    }
    for n in 1..=8 {
        funnel.considered(CAMPAIGN, &format!("b-{n}"), PhaseKind::Burst);
    }
    let reaches = [
        ("w-1", "2026-08-27T10:00:00+08:00", PhaseKind::WarmUp, None),
        ("w-2", "2026-08-27T10:00:00+08:00", PhaseKind::WarmUp, None),
        ("w-3", "2026-08-28T10:00:00+08:00", PhaseKind::WarmUp, None),
        ("w-4", "2026-08-28T10:00:00+08:00", PhaseKind::WarmUp, None),
        (
            "w-1",
            "2026-09-03T10:00:00+08:00",
            PhaseKind::Burst,
            Some("early"),
        ),
        (
            "b-1",
            "2026-09-03T10:00:00+08:00",
            PhaseKind::Burst,
            Some("early"),
        ),
        (
            "b-2",
            "2026-09-03T10:00:00+08:00",
            PhaseKind::Burst,
            Some("early"),
        ),
        (
            "b-3",
            "2026-09-04T10:00:00+08:00",
            PhaseKind::Burst,
            Some("early"),
        ),
        (
            "b-4",
            "2026-09-12T10:00:00+08:00",
            PhaseKind::Burst,
            Some("middle"),
        ),
        (
            "b-5",
            "2026-09-12T10:00:00+08:00",
            PhaseKind::Burst,
            Some("middle"),
        ),
    ];
    for (customer, instant, phase, _stage) in reaches {
        funnel.reached(CAMPAIGN, customer, at(instant), phase, ChannelKind::Mail);
    }
    funnel.prior_orders("b-5", 3);
    funnel.outcome(&reply("w-1", at("2026-08-28T09:00:00+08:00")));
    funnel.outcome(&order_for(
        "w-2",
        at("2026-08-30T09:00:00+08:00"),
        "320.00",
        CAMPAIGN,
    ));
    funnel.outcome(&order("w-1", at("2026-09-04T09:00:00+08:00"), "1280.50"));
    funnel.outcome(&order("b-1", at("2026-09-05T09:00:00+08:00"), "260.00"));
    funnel.outcome(&order("b-1", at("2026-09-13T09:00:00+08:00"), "199.90"));
    funnel.outcome(&reply("b-2", at("2026-09-06T09:00:00+08:00")));
    funnel.outcome(&order("b-4", at("2026-09-14T09:00:00+08:00"), "12345.67"));
    funnel.outcome(&order("b-5", at("2026-09-15T09:00:00+08:00"), "88.00"));
    funnel.outcome(&order_for(
        "x-1",
        at("2026-09-06T09:00:00+08:00"),
        "500.00",
        CAMPAIGN,
    ));
    funnel.outcome(&order("x-2", at("2026-09-06T09:00:00+08:00"), "999.00"));
    funnel.outcome(&order("b-3", at("2026-09-17T09:00:00+08:00"), "70.00"));
    funnel
}

fn as_of() -> DateTime<Utc> {
    at("2026-09-16T12:00:00+08:00")
}

#[test]
fn the_population_funnel() {
    let report = population().report(&plan(), as_of());
    assert_eq!(counts(&report, WARM_UP), [6, 4, 2, 2, 0]);
    assert_eq!(counts(&report, BURST), [9, 6, 5, 4, 2]);
    assert_eq!(counts(&report, OVERALL), [14, 9, 6, 5, 2]);
    assert_eq!(report.count(OVERALL, LifecycleStage::Repurchase), 2);
}

#[test]
fn render_funnel_snapshot() {
    let plan = plan();
    let report = population().report(&plan, as_of());
    insta::assert_snapshot!(
        "render_funnel",
        render_funnel(&report, plan.campaign.time_zone)
    );
    insta::assert_snapshot!(
        "funnel_json",
        serde_json::to_string_pretty(&funnel_json(&report, plan.campaign.time_zone)).unwrap()
    );
}

#[test]
fn render_targets_snapshot() {
    let plan = plan();
    let actuals: Vec<StageActuals> = population().stage_actuals(&plan, as_of());
    let shop = [crate::metrics::Figures {
        inquiries: Some(350),
        new_fans: Some(120),
        ..Default::default()
    }];
    let lines = targets_against_actuals(&plan, &actuals, &shop);
    insta::assert_snapshot!(
        "render_targets",
        render_targets(&lines, &plan.campaign.currency)
    );
    insta::assert_snapshot!(
        "targets_json",
        serde_json::to_string_pretty(&targets_json(&lines)).unwrap()
    );
}
