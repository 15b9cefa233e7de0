//! The customer book, segments, eligibility and the planner at their boundaries: fatigue at
//! exactly its window, the quota day turning at local midnight (daylight-saving days included),
//! quiet hours at their edges, the platform's free volume and caps, an audience that overflows
//! its window, lifecycle stages, and a rebuild that gives the same book.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use super::book::{CustomerBook, NEVER};
use super::eligibility::{fatigued, is_quiet, next_allowed, Exclusion, Rules};
use super::events::{CustomerEvent, CustomerRecorded, OutcomeKind, OutcomeRecorded, Signal};
use super::preview::{plan_audience, Target};
use super::quota::{plan_sends, Candidate, DayLimit, Ledger, Limits, PlanRequest, Unplaced};
use super::segment::Segments;
use crate::outreach::events::NotSentReason;
use crate::plan::model::{
    Activity, ChannelKind, FatigueScope, LifecycleStage, Plan, QuietHours, QuietPolicy, Sender,
    Window,
};
use crate::plan::values::Money;
use crate::plan::EXAMPLE_PLAN;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn ms(text: &str) -> i64 {
    at(text).timestamp_millis()
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap_or_else(|_| panic!("{name}"))
}

fn customer(id: &str) -> CustomerRecorded {
    CustomerRecorded {
        customer: id.to_string(),
        line: 2,
        email: Some(format!("{id}@example.com")),
        ..CustomerRecorded::default()
    }
}

fn outcome(
    id: &str,
    kind: OutcomeKind,
    when: &str,
    channel: Option<ChannelKind>,
) -> OutcomeRecorded {
    OutcomeRecorded {
        customer: id.to_string(),
        line: 2,
        outcome: kind,
        at: at(when),
        campaign: None,
        reach_out: None,
        channel,
        amount: None,
        message: None,
        offer: None,
    }
}

fn book_of(events: Vec<CustomerEvent>) -> CustomerBook {
    let mut book = CustomerBook::default();
    for event in &events {
        book.apply(event, at("2026-08-01T00:00:00Z"));
    }
    book
}

fn example_plan(replacements: &[(&str, &str)]) -> Plan {
    let mut source = EXAMPLE_PLAN.to_string();
    for (from, to) in replacements {
        assert_eq!(source.matches(from).count(), 1, "`{from}` must occur once");
        source = source.replace(from, to);
    }
    let checked = crate::plan::check(source.as_bytes());
    checked
        .plan
        .unwrap_or_else(|| panic!("test plan invalid: {:?}", checked.diagnostics))
}

fn mail_rules(fatigue_days: i64) -> Rules {
    Rules {
        kind: ChannelKind::Mail,
        fatigue_ms: fatigue_days * 86_400_000,
        fatigue_scope: FatigueScope::AnyChannel,
        excluded_segments: Vec::new(),
        reach_out: None,
    }
}

#[test]
fn fatigue_ends_at_exactly_its_window() {
    let book = book_of(vec![
        CustomerEvent::CustomerRecorded(customer("c-1")),
        CustomerEvent::OutcomeRecorded(outcome(
            "c-1",
            OutcomeKind::Delivered,
            "2026-09-01T10:00:00+08:00",
            Some(ChannelKind::InSite),
        )),
    ]);
    let reached = book.get("c-1").unwrap_or_else(|| panic!("c-1"));
    let rules = mail_rules(7);
    // Reached by in-site message; mail's fatigue counts any channel.
    assert!(fatigued(
        reached,
        &rules,
        ms("2026-09-08T09:59:59.999+08:00")
    ));
    assert!(!fatigued(reached, &rules, ms("2026-09-08T10:00:00+08:00")));
    assert!(fatigued(reached, &rules, ms("2026-09-01T10:00:00+08:00")));
    let this_channel = Rules {
        fatigue_scope: FatigueScope::ThisChannel,
        ..mail_rules(7)
    };
    assert!(!fatigued(
        reached,
        &this_channel,
        ms("2026-09-02T10:00:00+08:00")
    ));
}

#[test]
fn fatigue_is_counted_in_the_preview_in_and_out_of_the_window() {
    let plan = example_plan(&[]);
    let mut events = Vec::new();
    for id in ["c-1", "c-2", "c-3"] {
        let mut row = customer(id);
        row.signals = vec![Signal {
            activity: Activity::Visited,
            at: at("2026-08-30T12:00:00+08:00"),
            amount: None,
        }];
        events.push(CustomerEvent::CustomerRecorded(row));
    }
    // c-1 exactly 7 days before the evaluation instant (out), c-2 a second less (in).
    events.push(CustomerEvent::OutcomeRecorded(outcome(
        "c-1",
        OutcomeKind::Delivered,
        "2026-08-26T00:00:00+08:00",
        Some(ChannelKind::Mail),
    )));
    events.push(CustomerEvent::OutcomeRecorded(outcome(
        "c-2",
        OutcomeKind::Delivered,
        "2026-08-26T00:00:01+08:00",
        Some(ChannelKind::Mail),
    )));
    let book = book_of(events);
    let audience = plan_audience(
        &plan,
        &book,
        &Ledger::default(),
        Target::ReachOut("early-stage-mail"),
        at("2026-09-02T00:00:00+08:00"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audience.segment_size, 3);
    // c-2's fatigue ends a second into the window, long before it closes: not excluded, but
    // placed once it ends (at 08:00, when mail's quiet hours end).
    assert_eq!(audience.excluded(Exclusion::Fatigue), 0);
    assert_eq!(audience.reachable, 3);
    assert_eq!(audience.placed(), 3);
    let c2 = book.slot("c-2").unwrap_or_else(|| panic!("c-2"));
    assert_eq!(
        audience.after_fatigue,
        vec![(c2, at("2026-09-02T00:00:01+08:00"))]
    );
}

#[test]
fn a_customer_fatigued_when_planned_goes_on_the_first_day_they_may_be_reached() {
    // Given mail with a 7-day fatigue and a customer reached on 2026-08-31 10:00 (on any
    // channel): fatigued when the early stage opens on 2026-09-02, free from 2026-09-07 10:00,
    let plan = example_plan(&[]);
    let mut row = customer("c-1");
    row.signals = vec![Signal {
        activity: Activity::Visited,
        at: at("2026-08-30T12:00:00+08:00"),
        amount: None,
    }];
    let book = book_of(vec![
        CustomerEvent::CustomerRecorded(row),
        CustomerEvent::OutcomeRecorded(outcome(
            "c-1",
            OutcomeKind::Delivered,
            "2026-08-31T10:00:00+08:00",
            Some(ChannelKind::InSite),
        )),
    ]);
    // when the reach-out is planned,
    let audience = plan_audience(
        &plan,
        &book,
        &Ledger::default(),
        Target::ReachOut("early-stage-mail"),
        at("2026-09-02T00:00:00+08:00"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // then the customer is placed at the end of the fatigue, inside the window, not dropped;
    assert_eq!(audience.excluded(Exclusion::Fatigue), 0);
    assert_eq!(audience.placed(), 1);
    assert_eq!(
        audience.sends.placements[0].at,
        at("2026-09-07T10:00:00+08:00")
    );
    assert_eq!(
        audience.sends.days[audience.sends.placements[0].day as usize].date,
        NaiveDate::from_ymd_opt(2026, 9, 7).unwrap_or_default()
    );
    // and a fatigue that ends in the quiet hours holds the send until they end;
    let late = book_of(vec![
        CustomerEvent::CustomerRecorded({
            let mut row = customer("c-1");
            row.signals = vec![Signal {
                activity: Activity::Visited,
                at: at("2026-08-30T12:00:00+08:00"),
                amount: None,
            }];
            row
        }),
        CustomerEvent::OutcomeRecorded(outcome(
            "c-1",
            OutcomeKind::Delivered,
            "2026-08-31T23:00:00+08:00",
            Some(ChannelKind::InSite),
        )),
    ]);
    let audience = plan_audience(
        &plan,
        &late,
        &Ledger::default(),
        Target::ReachOut("early-stage-mail"),
        at("2026-09-02T00:00:00+08:00"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        audience.sends.placements[0].at,
        at("2026-09-08T08:00:00+08:00")
    );
    // and one whose fatigue outlasts the window (14 days from 2026-08-31 10:00, past the
    // early stage's end on 2026-09-11) is excluded as fatigued.
    let long = example_plan(&[(
        "fatigue = \"7d\"\nquiet_hours",
        "fatigue = \"14d\"\nquiet_hours",
    )]);
    let audience = plan_audience(
        &long,
        &book,
        &Ledger::default(),
        Target::ReachOut("early-stage-mail"),
        at("2026-09-02T00:00:00+08:00"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audience.window.end, at("2026-09-11T00:00:00+08:00"));
    assert_eq!(
        audience.excluded(Exclusion::Fatigue),
        1,
        "{:?}",
        audience.exclusions
    );
    assert_eq!(audience.placed(), 0);
}

fn request<'a>(
    zone_name: &str,
    window: Window,
    limits: Limits,
    accounts: &'a [String],
    quiet: Option<&'a QuietHours>,
) -> PlanRequest<'a> {
    PlanRequest {
        channel: "mail",
        limits,
        zone: zone(zone_name),
        window,
        from: window.start,
        quiet,
        sender: Sender::Accounts,
        accounts,
    }
}

fn candidates(count: u32) -> Vec<Candidate<'static>> {
    (0..count)
        .map(|slot| Candidate {
            slot,
            zone: None,
            owner: None,
            not_before: None,
        })
        .collect()
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn the_quota_day_turns_at_local_midnight_across_the_fall_back_day() {
    // New York leaves daylight saving on 2026-11-01: that local day lasts 25 hours.
    let accounts = vec!["shop".to_string()];
    let window = Window {
        start: at("2026-10-31T22:00:00-04:00"),
        end: at("2026-11-03T00:00:00-05:00"),
    };
    let limits = Limits {
        daily_cap: Some(10),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("America/New_York", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(25),
    );
    let days: Vec<(NaiveDate, u32, Option<DateTime<Utc>>)> = plan
        .days
        .iter()
        .map(|day| (day.date, day.sends, day.opens))
        .collect();
    assert_eq!(
        days,
        vec![
            (date("2026-10-31"), 10, Some(at("2026-11-01T02:00:00Z"))),
            (date("2026-11-01"), 10, Some(at("2026-11-01T04:00:00Z"))),
            (date("2026-11-02"), 5, Some(at("2026-11-02T05:00:00Z"))),
        ]
    );
    assert_eq!(plan.days[0].limited_by, Some(DayLimit::DailyCap));
    // The eleventh customer waits for local midnight, not UTC midnight or 24 hours later.
    assert_eq!(plan.placements[10].at, at("2026-11-01T00:00:00-04:00"));
    assert_eq!(plan.placements[20].at, at("2026-11-02T00:00:00-05:00"));
    assert!(plan.unplaced.is_empty());
}

#[test]
fn the_quota_day_turns_at_local_midnight_across_the_spring_forward_day() {
    let accounts = vec!["shop".to_string()];
    let window = Window {
        start: at("2026-03-07T12:00:00-05:00"),
        end: at("2026-03-10T00:00:00-04:00"),
    };
    let limits = Limits {
        daily_cap: Some(3),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("America/New_York", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(8),
    );
    let opens: Vec<Option<DateTime<Utc>>> = plan.days.iter().map(|day| day.opens).collect();
    assert_eq!(
        opens,
        vec![
            Some(at("2026-03-07T12:00:00-05:00")),
            Some(at("2026-03-08T00:00:00-05:00")),
            Some(at("2026-03-09T00:00:00-04:00")),
        ]
    );
    let sends: Vec<u32> = plan.days.iter().map(|day| day.sends).collect();
    assert_eq!(sends, vec![3, 3, 2]);
}

#[test]
fn shanghai_quota_days_are_shanghai_midnights() {
    let accounts = vec!["shop".to_string()];
    let window = Window {
        start: at("2026-09-02T00:00:00+08:00"),
        end: at("2026-09-04T00:00:00+08:00"),
    };
    let limits = Limits {
        daily_cap: Some(2),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(4),
    );
    assert_eq!(plan.placements[2].at, at("2026-09-02T16:00:00Z"));
    assert_eq!(plan.days[1].date, date("2026-09-03"));
}

fn quiet(policy: QuietPolicy) -> QuietHours {
    QuietHours {
        start: NaiveTime::from_hms_opt(22, 0, 0).unwrap_or(NaiveTime::MIN),
        end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
        policy,
    }
}

#[test]
fn quiet_hours_at_their_edges() {
    let hours = quiet(QuietPolicy::Hold);
    let shanghai = zone("Asia/Shanghai");
    let quiet_at = |text: &str| is_quiet(&hours, shanghai, at(text));
    assert!(!quiet_at("2026-09-02T21:59:59+08:00"));
    assert!(quiet_at("2026-09-02T22:00:00+08:00"));
    assert!(quiet_at("2026-09-03T00:00:00+08:00"));
    assert!(quiet_at("2026-09-03T07:59:59+08:00"));
    assert!(!quiet_at("2026-09-03T08:00:00+08:00"));
    assert_eq!(
        next_allowed(&hours, shanghai, at("2026-09-02T22:00:00+08:00")),
        at("2026-09-03T08:00:00+08:00")
    );
    assert_eq!(
        next_allowed(&hours, shanghai, at("2026-09-03T07:59:59+08:00")),
        at("2026-09-03T08:00:00+08:00")
    );
    assert_eq!(
        next_allowed(&hours, shanghai, at("2026-09-03T08:00:00+08:00")),
        at("2026-09-03T08:00:00+08:00")
    );
    // Quiet hours within one day.
    let lunch = QuietHours {
        start: NaiveTime::from_hms_opt(12, 0, 0).unwrap_or(NaiveTime::MIN),
        end: NaiveTime::from_hms_opt(13, 0, 0).unwrap_or(NaiveTime::MIN),
        policy: QuietPolicy::Hold,
    };
    assert!(!is_quiet(&lunch, shanghai, at("2026-09-03T11:59:59+08:00")));
    assert!(is_quiet(&lunch, shanghai, at("2026-09-03T12:00:00+08:00")));
    assert!(!is_quiet(&lunch, shanghai, at("2026-09-03T13:00:00+08:00")));
}

#[test]
fn quiet_hours_hold_or_skip_on_the_customers_own_clock() {
    let accounts = vec!["shop".to_string()];
    let window = Window {
        start: at("2026-09-02T00:00:00+08:00"),
        end: at("2026-09-05T00:00:00+08:00"),
    };
    let berlin = Some(zone("Europe/Berlin"));
    let people = vec![
        Candidate {
            slot: 0,
            zone: None,
            owner: None,
            not_before: None,
        },
        Candidate {
            slot: 1,
            zone: berlin,
            owner: None,
            not_before: None,
        },
    ];
    let hold = quiet(QuietPolicy::Hold);
    let plan = plan_sends(
        &request(
            "Asia/Shanghai",
            window,
            Limits::default(),
            &accounts,
            Some(&hold),
        ),
        &Ledger::default(),
        people.clone(),
    );
    // The day opens when Shanghai's quiet hours end; Berlin is still asleep at 02:00 and is
    // held to 08:00 Berlin time.
    assert_eq!(plan.days[0].opens, Some(at("2026-09-02T08:00:00+08:00")));
    assert_eq!(plan.placements[0].at, at("2026-09-02T08:00:00+08:00"));
    assert_eq!(plan.placements[1].at, at("2026-09-02T08:00:00+02:00"));
    assert_eq!(plan.placements[1].day, 0);

    let skip = quiet(QuietPolicy::Skip);
    let plan = plan_sends(
        &request(
            "Asia/Shanghai",
            window,
            Limits::default(),
            &accounts,
            Some(&skip),
        ),
        &Ledger::default(),
        people,
    );
    assert_eq!(plan.placements.len(), 1);
    assert_eq!(plan.quiet_skipped, vec![1]);
}

#[test]
fn free_volume_then_paid_up_to_the_cap() {
    // 450 customers, the first 200 a day free, then 2 CNY per 1000, at most 2000 a day.
    let accounts = vec!["shop-mail".to_string()];
    let window = Window {
        start: at("2026-09-02T08:00:00+08:00"),
        end: at("2026-09-03T00:00:00+08:00"),
    };
    let limits = Limits {
        daily_cap: Some(2000),
        free_per_day: Some(200),
        cost_per_1000: Some(Money::from_minor(200)),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(450),
    );
    assert_eq!(plan.days.len(), 1);
    let day = &plan.days[0];
    assert_eq!((day.sends, day.free, day.paid), (450, 200, 250));
    assert_eq!(day.cost, Money::from_minor(50));
    assert!(plan.unplaced.is_empty());

    // What the ledger already holds that day counts: 150 reserved leave 50 free.
    let mut ledger = Ledger::default();
    ledger.reserve("mail", date("2026-09-02"), "shop-mail", 150, &limits);
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &ledger,
        candidates(450),
    );
    let day = &plan.days[0];
    assert_eq!((day.sends, day.free, day.paid), (450, 50, 400));
    assert_eq!(day.cost, Money::from_minor(80));
}

#[test]
fn twenty_buyers_per_account_per_day_over_two_accounts() {
    let accounts = vec!["wang.wei".to_string(), "zhang.min".to_string()];
    let window = Window {
        start: at("2026-09-02T00:00:00+08:00"),
        end: at("2026-09-12T00:00:00+08:00"),
    };
    let limits = Limits {
        per_account_daily_cap: Some(20),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(50),
    );
    let used: Vec<(u32, Vec<u32>)> = plan
        .days
        .iter()
        .filter(|day| day.sends > 0)
        .map(|day| (day.sends, day.per_account.clone()))
        .collect();
    assert_eq!(used, vec![(40, vec![20, 20]), (10, vec![5, 5])]);
    assert_eq!(plan.days[0].limited_by, Some(DayLimit::AccountCaps));
    // Accounts take turns.
    let first: Vec<u32> = plan.placements[..4].iter().map(|p| p.account).collect();
    assert_eq!(first, vec![0, 1, 0, 1]);
}

#[test]
fn an_audience_larger_than_its_window_reports_who_did_not_fit() {
    let accounts = vec!["wang.wei".to_string(), "zhang.min".to_string()];
    let window = Window {
        start: at("2026-09-02T00:00:00+08:00"),
        end: at("2026-09-04T00:00:00+08:00"),
    };
    let limits = Limits {
        per_account_daily_cap: Some(20),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(100),
    );
    assert_eq!(plan.placements.len(), 80);
    assert_eq!(plan.unplaced.len(), 20);
    assert!(plan
        .unplaced
        .iter()
        .all(|(_, reason)| *reason == Unplaced::WindowFull));
    // The last twenty in order are the ones left out, and none is silently dropped.
    let left: Vec<u32> = plan.unplaced.iter().map(|(slot, _)| *slot).collect();
    assert_eq!(left, (80..100).collect::<Vec<u32>>());
}

#[test]
fn a_window_full_before_the_reach_out_is_no_quota_left_not_window_full() {
    let accounts = vec!["wang.wei".to_string(), "zhang.min".to_string()];
    let window = Window {
        start: at("2026-09-02T00:00:00+08:00"),
        end: at("2026-09-04T00:00:00+08:00"),
    };
    let limits = Limits {
        per_account_daily_cap: Some(20),
        ..Limits::default()
    };
    // Other reach-outs took both days' quota on both accounts.
    let mut ledger = Ledger::default();
    for day in ["2026-09-02", "2026-09-03"] {
        for account in &accounts {
            ledger.reserve("mail", date(day), account, 20, &limits);
        }
    }
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &ledger,
        candidates(5),
    );
    assert!(plan.placements.is_empty());
    assert_eq!(
        plan.unplaced,
        (0..5)
            .map(|slot| (slot, Unplaced::QuotaUsed))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        NotSentReason::from(Unplaced::QuotaUsed),
        NotSentReason::Quota
    );

    // One send of room left: the first customer takes it, and the window is then full with
    // the reach-out's own send.
    let mut ledger = Ledger::default();
    for day in ["2026-09-02", "2026-09-03"] {
        for account in &accounts {
            let taken = if day == "2026-09-03" && account == "zhang.min" {
                19
            } else {
                20
            };
            ledger.reserve("mail", date(day), account, taken, &limits);
        }
    }
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &ledger,
        candidates(5),
    );
    assert_eq!(plan.placements.len(), 1);
    assert_eq!(
        plan.unplaced,
        (1..5)
            .map(|slot| (slot, Unplaced::WindowFull))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        NotSentReason::from(Unplaced::WindowFull),
        NotSentReason::WindowFull
    );
}

#[test]
fn budgets_limit_paid_volume() {
    let accounts = vec!["shop-mail".to_string()];
    let window = Window {
        start: at("2026-09-29T00:00:00+08:00"),
        end: at("2026-10-02T00:00:00+08:00"),
    };
    // 1.00 a day buys 500 paid sends at 2.00 per 1000; the month's 1.50 buys 750.
    let limits = Limits {
        daily_cap: Some(2000),
        free_per_day: Some(100),
        cost_per_1000: Some(Money::from_minor(200)),
        daily_budget: Some(Money::from_minor(100)),
        monthly_budget: Some(Money::from_minor(150)),
        ..Limits::default()
    };
    let plan = plan_sends(
        &request("Asia/Shanghai", window, limits, &accounts, None),
        &Ledger::default(),
        candidates(2000),
    );
    let days: Vec<(u32, u32, Option<DayLimit>)> = plan
        .days
        .iter()
        .map(|day| (day.free, day.paid, day.limited_by))
        .collect();
    assert_eq!(
        days,
        vec![
            (100, 500, Some(DayLimit::DailyBudget)),
            (100, 250, Some(DayLimit::MonthlyBudget)),
            // October: a new month's budget.
            (100, 500, Some(DayLimit::DailyBudget)),
        ]
    );
    assert_eq!(plan.unplaced.len(), 2000 - 1550);
}

#[test]
fn sending_from_the_owners_account() {
    let accounts = vec!["wang.wei".to_string(), "zhang.min".to_string()];
    let window = Window {
        start: at("2026-09-02T00:00:00+08:00"),
        end: at("2026-09-04T00:00:00+08:00"),
    };
    let limits = Limits {
        per_account_daily_cap: Some(1),
        ..Limits::default()
    };
    let owned = |slot: u32, owner: Option<&'static str>| Candidate {
        slot,
        zone: None,
        owner,
        not_before: None,
    };
    let mut request = request("Asia/Shanghai", window, limits, &accounts, None);
    request.sender = Sender::Owner;
    let plan = plan_sends(
        &request,
        &Ledger::default(),
        vec![
            owned(0, Some("wang.wei")),
            owned(1, Some("wang.wei")),
            owned(2, Some("wang.wei")),
            owned(3, None),
            owned(4, Some("liu.yang")),
            owned(5, Some("zhang.min")),
        ],
    );
    let placed: Vec<(u32, u32, u32)> = plan
        .placements
        .iter()
        .map(|p| (p.slot, p.day, p.account))
        .collect();
    assert_eq!(placed, vec![(0, 0, 0), (1, 1, 0), (5, 0, 1)]);
    assert_eq!(
        plan.unplaced,
        vec![
            (2, Unplaced::WindowFull),
            (3, Unplaced::NoAccount),
            (4, Unplaced::NoAccount)
        ]
    );
}

#[test]
fn every_exclusion_is_counted_once_in_its_order() {
    let plan = example_plan(&[(
        "fatigue = \"7d\"\nquiet_hours",
        "fatigue = \"14d\"\nquiet_hours",
    )]);
    let visited = Signal {
        activity: Activity::Visited,
        at: at("2026-08-30T12:00:00+08:00"),
        amount: None,
    };
    let row = |id: &str| {
        let mut row = customer(id);
        row.signals = vec![visited.clone()];
        row
    };
    let mut events = Vec::new();
    let mut no_address = row("no-address");
    no_address.email = Some("not an address".into());
    events.push(no_address);
    let mut unsubscribed = row("unsubscribed");
    unsubscribed.unsubscribed = vec![ChannelKind::Mail];
    // Also in the bin: counted once, as the first reason.
    unsubscribed.recycle_bin = Some(true);
    events.push(unsubscribed);
    let mut binned = row("binned");
    binned.recycle_bin = Some(true);
    events.push(binned);
    events.push(row("c-000417")); // do-not-contact, excluded by the mail channel
    events.push(row("fatigued"));
    events.push(row("already"));
    events.push(row("fine"));
    let mut in_site_only = row("in-site-unsub");
    in_site_only.unsubscribed = vec![ChannelKind::InSite];
    events.push(in_site_only);
    let mut events: Vec<CustomerEvent> = events
        .into_iter()
        .map(CustomerEvent::CustomerRecorded)
        .collect();
    // Fatigued past the window's end (2026-09-11, with a 14-day fatigue): excluded. A fatigue
    // that ends inside the window places the customer instead (a test of its own).
    events.push(CustomerEvent::OutcomeRecorded(outcome(
        "fatigued",
        OutcomeKind::Delivered,
        "2026-08-31T00:00:00+08:00",
        Some(ChannelKind::InSite),
    )));
    let mut earlier = outcome(
        "already",
        OutcomeKind::Delivered,
        "2026-08-20T00:00:00+08:00",
        Some(ChannelKind::Mail),
    );
    earlier.campaign = Some("sept-festival-2026".into());
    earlier.reach_out = Some("early-stage-mail".into());
    events.push(CustomerEvent::OutcomeRecorded(earlier));
    let book = book_of(events);
    let audience = plan_audience(
        &plan,
        &book,
        &Ledger::default(),
        Target::ReachOut("early-stage-mail"),
        at("2026-09-01T00:00:00+08:00"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audience.evaluated_at, at("2026-09-02T00:00:00+08:00"));
    let counts: Vec<(&str, u64)> = audience
        .exclusions
        .iter()
        .map(|(kind, count)| (kind.key(), *count))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("no_address", 1),
            ("unsubscribed", 1),
            ("recycle_bin", 1),
            ("excluded_segment", 1),
            ("fatigue", 1),
            ("already_reached", 1),
            ("quiet_hours", 0),
        ]
    );
    assert_eq!(audience.segment_size, 8);
    assert_eq!(audience.reachable, 2);
    assert_eq!(audience.placed(), 2);
    // Mail's quiet hours end at 08:00: the first sends go then.
    assert_eq!(
        audience.sends.placements[0].at,
        at("2026-09-02T08:00:00+08:00")
    );
}

#[test]
fn lifecycle_stages_follow_the_domain_rules() {
    let mut potential = customer("potential");
    potential.signals = vec![Signal {
        activity: Activity::Active,
        at: at("2026-03-10T00:00:00Z"),
        amount: None,
    }];
    let mut carted = customer("carted");
    carted.signals = vec![Signal {
        activity: Activity::Carted,
        at: at("2026-08-10T00:00:00Z"),
        amount: None,
    }];
    let mut buyer = customer("buyer");
    buyer.orders = Some(1);
    buyer.signals = vec![Signal {
        activity: Activity::Ordered,
        at: at("2026-08-01T00:00:00Z"),
        amount: Some(Money::from_minor(12_000)),
    }];
    let mut events: Vec<CustomerEvent> = [potential, carted, buyer]
        .into_iter()
        .chain(["reached", "handshake", "order"].map(customer))
        .map(CustomerEvent::CustomerRecorded)
        .collect();
    for id in ["reached", "handshake", "order", "buyer"] {
        events.push(CustomerEvent::OutcomeRecorded(outcome(
            id,
            OutcomeKind::Delivered,
            "2026-08-20T00:00:00Z",
            Some(ChannelKind::Mail),
        )));
    }
    events.push(CustomerEvent::OutcomeRecorded(outcome(
        "handshake",
        OutcomeKind::Replied,
        "2026-08-21T00:00:00Z",
        None,
    )));
    events.push(CustomerEvent::OutcomeRecorded(outcome(
        "order",
        OutcomeKind::Ordered,
        "2026-08-22T00:00:00Z",
        None,
    )));
    events.push(CustomerEvent::OutcomeRecorded(outcome(
        "buyer",
        OutcomeKind::Ordered,
        "2026-08-25T00:00:00Z",
        None,
    )));
    let book = book_of(events);
    let stage = |id: &str, when: &str| {
        book.get(id)
            .unwrap_or_else(|| panic!("{id}"))
            .lifecycle(ms(when))
    };
    use LifecycleStage::*;
    // Active 180 days ago less a second: potential; at exactly 180 days: no longer.
    assert_eq!(stage("potential", "2026-09-05T23:59:59Z"), Some(Potential));
    assert_eq!(stage("potential", "2026-09-06T00:00:00Z"), None);
    // Carted 30 days ago less a second, then exactly 30 days.
    assert_eq!(stage("carted", "2026-09-08T23:59:59Z"), Some(Potential));
    assert_eq!(stage("carted", "2026-09-09T00:00:00Z"), None);
    assert_eq!(stage("reached", "2026-08-25T00:00:00Z"), Some(Reached));
    assert_eq!(stage("reached", "2026-09-19T00:00:00Z"), None);
    assert_eq!(stage("handshake", "2026-08-25T00:00:00Z"), Some(Handshake));
    assert_eq!(stage("order", "2026-08-25T00:00:00Z"), Some(Order));
    assert_eq!(stage("order", "2026-08-21T00:00:00Z"), Some(Reached));
    assert_eq!(stage("buyer", "2026-08-26T00:00:00Z"), Some(Repurchase));
    assert_eq!(stage("buyer", "2026-08-19T00:00:00Z"), None);
}

#[test]
fn system_and_dynamic_segments_at_an_instant() {
    let plan = example_plan(&[]);
    let signal = |activity: Activity, when: &str| Signal {
        activity,
        at: at(when),
        amount: None,
    };
    let mut rows = Vec::new();
    let mut fresh = customer("fresh");
    fresh.signals = vec![signal(Activity::Visited, "2026-08-30T00:00:00Z")];
    fresh.tags = Some(vec!["left-card".into()]);
    fresh.tier = Some("L2".into());
    rows.push(fresh);
    let mut older = customer("older");
    older.signals = vec![signal(Activity::Active, "2026-07-01T00:00:00Z")];
    older.source = Some(crate::plan::model::CustomerSource::SharedPool);
    older.tier = Some("L0".into());
    rows.push(older);
    let mut inquirer = customer("inquirer");
    inquirer.source = Some(crate::plan::model::CustomerSource::SharedPool);
    inquirer.signals = vec![
        signal(Activity::Inquired, "2026-05-01T00:00:00Z"),
        signal(Activity::Ordered, "2026-08-20T00:00:00Z"),
    ];
    rows.push(inquirer);
    let mut recent_inquirer = customer("recent-inquirer");
    recent_inquirer.source = Some(crate::plan::model::CustomerSource::SharedPool);
    recent_inquirer.signals = vec![signal(Activity::Inquired, "2026-05-01T00:00:00Z")];
    rows.push(recent_inquirer);
    let book = book_of(
        rows.into_iter()
            .map(CustomerEvent::CustomerRecorded)
            .collect(),
    );
    let segments = Segments::compile(&plan, &book);
    let members = |id: &str| -> Vec<String> {
        let index = segments.index_of(id).unwrap_or_else(|| panic!("{id}"));
        segments
            .members(&book, index, ms("2026-09-01T00:00:00Z"))
            .into_iter()
            .map(|slot| book.customers()[slot as usize].id().to_string())
            .collect()
    };
    assert_eq!(members("active-7d"), vec!["fresh"]);
    // An inquiry is activity too: 123 days ago is outside 90.
    assert_eq!(members("active-90d"), vec!["fresh", "older", "inquirer"]);
    assert_eq!(members("card-visitors"), vec!["fresh"]);
    assert_eq!(members("l1-plus"), vec!["fresh"]);
    // Inquired within 180 days, none ordered within 30.
    assert_eq!(members("pool-inquirers"), vec!["recent-inquirer"]);
    assert_eq!(members("do-not-contact"), Vec::<String>::new());
}

#[test]
fn the_book_rebuilt_from_the_log_is_the_same_book() {
    let mut rows: Vec<CustomerEvent> = Vec::new();
    for index in 0..50 {
        let mut row = customer(&format!("c-{index:03}"));
        row.tags = Some(vec![format!("t{}", index % 3), "all".into()]);
        row.tier = Some(format!("L{}", index % 4));
        row.attributes = vec![("country".into(), format!("k{}", index % 5))];
        rows.push(CustomerEvent::CustomerRecorded(row));
        if index % 4 == 0 {
            rows.push(CustomerEvent::OutcomeRecorded(outcome(
                &format!("c-{index:03}"),
                OutcomeKind::Ordered,
                "2026-08-20T00:00:00Z",
                None,
            )));
        }
    }
    let whole = book_of(rows.clone());
    // Incrementally, in two halves, with questions asked between.
    let mut incremental = CustomerBook::default();
    let (first, second) = rows.split_at(rows.len() / 2);
    for event in first {
        incremental.apply(event, at("2026-08-01T00:00:00Z"));
    }
    assert!(incremental.get("c-001").is_some());
    for event in second {
        incremental.apply(event, at("2026-08-01T00:00:00Z"));
    }
    assert_eq!(incremental.digest(), whole.digest());
    // The same rows again change nothing.
    let mut twice = whole.clone();
    for event in &rows {
        twice.apply(event, at("2026-08-02T00:00:00Z"));
    }
    assert_eq!(twice.digest(), whole.digest());
    assert_eq!(twice.get("c-000").map(|c| c.orders), Some(1));
    // A changed fact changes the digest.
    let mut changed = whole.clone();
    let mut row = customer("c-001");
    row.recycle_bin = Some(true);
    changed.apply(
        &CustomerEvent::CustomerRecorded(row),
        at("2026-08-02T00:00:00Z"),
    );
    assert_ne!(changed.digest(), whole.digest());
    assert_eq!(whole.get("c-049").map(|c| c.last_active), Some(NEVER));
}

#[test]
fn a_file_row_that_leaves_a_column_out_keeps_the_earlier_value() {
    let mut first = customer("c-1");
    first.name = Some("Li Na".into());
    first.tags = Some(vec!["vip".into()]);
    let mut second = CustomerRecorded {
        customer: "c-1".into(),
        line: 2,
        ..CustomerRecorded::default()
    };
    second.tier = Some("L1+".into());
    let mut third = CustomerRecorded {
        customer: "c-1".into(),
        line: 2,
        ..CustomerRecorded::default()
    };
    third.tags = Some(Vec::new());
    third.unsubscribed = vec![];
    let book = book_of(
        [first, second, third]
            .into_iter()
            .map(CustomerEvent::CustomerRecorded)
            .collect(),
    );
    let customer = book.get("c-1").unwrap_or_else(|| panic!("c-1"));
    assert_eq!(customer.name(), Some("Li Na"));
    assert!(customer.tags.is_empty());
    assert_eq!(customer.tier.map(|t| book.symbols.name(t)), Some("L1+"));
    assert!(customer.email_ok);
}

#[test]
fn a_bounce_makes_the_address_unusable_until_it_changes() {
    let mut events = vec![
        CustomerEvent::CustomerRecorded(customer("c-1")),
        CustomerEvent::OutcomeRecorded(outcome(
            "c-1",
            OutcomeKind::Bounced,
            "2026-08-20T00:00:00Z",
            Some(ChannelKind::Mail),
        )),
    ];
    assert!(!book_of(events.clone())
        .get("c-1")
        .is_some_and(|c| c.email_ok));
    let mut fixed = customer("c-1");
    fixed.email = Some("new@example.com".into());
    events.push(CustomerEvent::CustomerRecorded(fixed));
    assert!(book_of(events).get("c-1").is_some_and(|c| c.email_ok));
    let _ = Duration::zero();
}
