//! The weekly report: ISO weeks in a zone (daylight saving included), which weeks may be asked
//! for, the report of a September festival week assembled from hand-fed projections (each
//! number checked), the same inputs giving the same bytes, the JSON read back giving the same
//! words (as the control socket carries it), HTML that escapes what it shows; text and Markdown
//! as insta snapshots.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::week::IsoWeek;
use super::{render, week_to_report, weekly, Amount, Inputs, OfferOrders, WeeklyReport};
use crate::campaign::EventMeta;
use crate::customer::events::{OutcomeKind, OutcomeRecorded};
use crate::funnel::Funnel;
use crate::metrics::{Figures, Hot, MetricsRecorded, Period, ShopMetrics};
use crate::outreach::events::{MessageSent, SendPlanned};
use crate::outreach::{Outreach, OutreachEvent};
use crate::plan::model::{ChannelKind, PhaseKind, Plan};
use crate::plan::values::Money;
use crate::plan::EXAMPLE_PLAN;
use crate::task::{TaskBoard, TaskDone, TaskEvent};

const CAMPAIGN: &str = "sept-festival-2026";

fn plan_of(source: &str) -> Plan {
    let checked = crate::plan::check(source.as_bytes());
    checked
        .plan
        .unwrap_or_else(|| panic!("plan invalid: {:?}", checked.diagnostics))
}

fn plan() -> Plan {
    plan_of(EXAMPLE_PLAN)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn money(text: &str) -> Money {
    Money::parse_text(text).unwrap()
}

fn week(text: &str) -> IsoWeek {
    IsoWeek::parse(text).unwrap()
}

#[test]
fn a_week_reads_and_writes_as_iso_8601_says() {
    assert_eq!(week("2026-W36").to_string(), "2026-W36");
    assert_eq!(week(" 2026-w36 ").to_string(), "2026-W36");
    assert_eq!(week("2026-W36-1").to_string(), "2026-W36");
    assert_eq!(
        week("2026-W36").monday(),
        NaiveDate::from_ymd_opt(2026, 8, 31).unwrap()
    );
    // 2026 ends on a Thursday: it has a week 53, and 2027 does not.
    assert_eq!(week("2026-W53").next().to_string(), "2027-W01");
    assert_eq!(week("2027-W01").previous().to_string(), "2026-W53");
    let refused = IsoWeek::parse("2027-W53").unwrap_err();
    assert!(refused.contains("2027-W01 to 2027-W52"), "{refused}");
    for wrong in [
        "",
        "36",
        "2026-36",
        "2026-W3",
        "2026-W036",
        "W36-2026",
        "2026-W00",
        "२०२६-W36",
    ] {
        let refused = IsoWeek::parse(wrong).unwrap_err();
        assert!(
            refused.contains("YEAR-Wnn") || refused.contains("has no week"),
            "{wrong}: {refused}"
        );
    }
    // The week a day belongs to: 2027-01-01 (a Friday) is still 2026's week 53.
    assert_eq!(
        IsoWeek::of_date(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()).to_string(),
        "2026-W53"
    );
}

#[test]
fn a_week_runs_from_monday_midnight_to_monday_midnight_in_the_zone() {
    let shanghai = week("2026-W36").window(chrono_tz::Asia::Shanghai);
    assert_eq!(shanghai.start, at("2026-08-31T00:00:00+08:00"));
    assert_eq!(shanghai.end, at("2026-09-07T00:00:00+08:00"));
    // New York falls back on Sunday 2026-11-01: that week is 169 hours long, and the week of
    // Sunday 2026-03-08, when it springs forward, 167.
    let autumn = week("2026-W44").window(chrono_tz::America::New_York);
    assert_eq!(autumn.start, at("2026-10-26T00:00:00-04:00"));
    assert_eq!(autumn.end, at("2026-11-02T00:00:00-05:00"));
    assert_eq!(autumn.end - autumn.start, Duration::hours(169));
    let spring = week("2026-W10").window(chrono_tz::America::New_York);
    assert_eq!(spring.end - spring.start, Duration::hours(167));
    // A zone whose clocks skip midnight: the week starts at the first instant after the gap.
    // (Santiago springs forward at 24:00 on Saturday 2026-09-05, so Sunday starts at 01:00.)
    let santiago = week("2026-W37").window(chrono_tz::America::Santiago);
    assert_eq!(santiago.end - santiago.start, Duration::hours(168));
}

#[test]
fn only_a_week_of_the_campaign_that_has_started_is_reported() {
    let plan = plan();
    let now = at("2026-09-05T12:00:00+08:00");
    assert_eq!(
        week_to_report(&plan, None, now).unwrap().to_string(),
        "2026-W36"
    );
    assert_eq!(
        week_to_report(&plan, Some(week("2026-W34")), now)
            .unwrap()
            .to_string(),
        "2026-W34"
    );
    let outside = week_to_report(&plan, Some(week("2026-W30")), now).unwrap_err();
    assert!(
        outside.contains("2026-W30 is outside the campaign"),
        "{outside}"
    );
    assert!(outside.contains("weeks 2026-W34 to 2026-W41"), "{outside}");
    let ahead = week_to_report(&plan, Some(week("2026-W38")), now).unwrap_err();
    assert!(ahead.contains("has not started yet"), "{ahead}");
    assert!(
        ahead.contains("the latest week with numbers is 2026-W36"),
        "{ahead}"
    );
    let later = week_to_report(&plan, None, at("2026-12-01T00:00:00+08:00")).unwrap_err();
    assert!(later.contains("outside the campaign"), "{later}");
    assert!(later.contains("name a week with --week"), "{later}");
}

/// The projections of a September festival run up to `NOW`, fed by hand.
struct World {
    plan: Plan,
    funnel: Funnel,
    shop: ShopMetrics,
    outreach: Outreach,
    board: TaskBoard,
    offers: OfferOrders,
}

const NOW: &str = "2026-09-05T12:00:00+08:00";

impl World {
    fn new(plan: Plan) -> World {
        let mut world = World {
            plan,
            funnel: Funnel::new(),
            shop: ShopMetrics::new(),
            outreach: Outreach::default(),
            board: TaskBoard::new(CAMPAIGN),
            offers: OfferOrders::new(),
        };
        world.reach();
        world.orders();
        world.shop();
        world.sends();
        world.tasks();
        world
    }

    fn reach(&mut self) {
        for index in 1..=8 {
            self.funnel
                .considered(CAMPAIGN, &format!("c-{index}"), PhaseKind::WarmUp);
        }
        for index in 1..=4 {
            self.funnel.reached(
                CAMPAIGN,
                &format!("c-{index}"),
                at("2026-08-27T10:00:00+08:00"),
                PhaseKind::WarmUp,
                ChannelKind::Mail,
            );
        }
        for index in 5..=6 {
            self.funnel.reached(
                CAMPAIGN,
                &format!("c-{index}"),
                at("2026-09-03T10:00:00+08:00"),
                PhaseKind::Burst,
                ChannelKind::Mail,
            );
        }
    }

    fn outcome(
        &mut self,
        customer: &str,
        kind: OutcomeKind,
        when: &str,
        amount: Option<&str>,
        offer: Option<&str>,
        campaign: bool,
    ) {
        let outcome = OutcomeRecorded {
            customer: customer.to_string(),
            line: 0,
            outcome: kind,
            at: at(when),
            campaign: campaign.then(|| CAMPAIGN.to_string()),
            reach_out: campaign.then(|| "early-stage-mail".to_string()),
            channel: None,
            amount: amount.map(money),
            message: None,
            offer: offer.map(str::to_string),
        };
        self.funnel.outcome(&outcome);
        self.offers.outcome(&outcome);
    }

    fn orders(&mut self) {
        use OutcomeKind::{Ordered, Replied};
        self.outcome(
            "c-4",
            Ordered,
            "2026-08-28T15:00:00+08:00",
            Some("300.00"),
            None,
            true,
        );
        self.outcome(
            "c-1",
            Ordered,
            "2026-09-03T10:00:00+08:00",
            Some("612.40"),
            Some("SEPT50"),
            true,
        );
        self.outcome(
            "c-2",
            Ordered,
            "2026-09-04T10:00:00+08:00",
            Some("700.00"),
            Some("spend-more"),
            true,
        );
        self.outcome(
            "c-3",
            Ordered,
            "2026-09-05T10:00:00+08:00",
            Some("1200.00"),
            Some("spend-more"),
            true,
        );
        self.outcome(
            "c-5",
            Ordered,
            "2026-09-05T11:00:00+08:00",
            Some("250.00"),
            Some("spend-more"),
            true,
        );
        self.outcome(
            "c-6",
            Replied,
            "2026-09-04T09:00:00+08:00",
            None,
            None,
            true,
        );
        // Not attributed to the campaign (never reached, names none); its offer is no offer of
        // the plan.
        self.outcome(
            "c-7",
            Ordered,
            "2026-09-04T18:00:00+08:00",
            Some("88.00"),
            Some("OLD10"),
            false,
        );
        // The discount claimed the day before its window opened, naming no campaign: the
        // campaign's offer all the same, not its GMV (never reached before it).
        self.outcome(
            "c-6",
            Ordered,
            "2026-09-01T10:00:00+08:00",
            Some("99.00"),
            Some("hero-sku"),
            false,
        );
        // After now: not counted yet.
        self.outcome(
            "c-8",
            Ordered,
            "2026-09-05T18:00:00+08:00",
            Some("999.00"),
            Some("SEPT50"),
            true,
        );
    }

    fn shop(&mut self) {
        let zone = chrono_tz::Asia::Shanghai;
        let days = [
            ("2026-08-26", 40, 10, 2_000),
            ("2026-08-27", 42, 12, 2_100),
            ("2026-08-28", 45, 15, 2_300),
            ("2026-08-31", 60, 20, 3_000),
            ("2026-09-01", 62, 18, 3_100),
            ("2026-09-02", 90, 30, 6_400),
            ("2026-09-03", 95, 35, 6_900),
            ("2026-09-04", 88, 25, 6_200),
        ];
        for (date, inquiries, fans, visitors) in days {
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
            let start = super::week::midnight(zone, date);
            let hot = (date == NaiveDate::from_ymd_opt(2026, 9, 3).unwrap()).then(|| {
                vec![
                    Hot {
                        name: "保温杯 500ml".to_string(),
                        count: 88,
                    },
                    Hot {
                        name: "Mug <b>gift</b> set".to_string(),
                        count: 40,
                    },
                ]
            });
            self.shop.apply(
                &MetricsRecorded {
                    period: Period { date, hour: None },
                    zone: "Asia/Shanghai".to_string(),
                    start,
                    end: start + Duration::days(1),
                    figures: Figures {
                        inquiries: Some(inquiries),
                        new_fans: Some(fans),
                        visitors: Some(visitors),
                        ..Figures::default()
                    },
                    corrects: Figures::default(),
                    hot_products: hot,
                    hot_keywords: (date == NaiveDate::from_ymd_opt(2026, 9, 4).unwrap()).then(
                        || {
                            vec![Hot {
                                name: "thermos wholesale".to_string(),
                                count: 310,
                            }]
                        },
                    ),
                    file: "shop.csv".to_string(),
                    digest: "d".to_string(),
                    line: 2,
                },
                start + Duration::days(1),
            );
        }
    }

    fn send(&mut self, index: u32, channel: &str, kind: ChannelKind, when: &str, paid: bool) {
        let sent_at = at(when);
        let key = format!("{CAMPAIGN}/early-stage-mail/s-{index}/1");
        self.outreach.apply(
            &OutreachEvent::SendPlanned(SendPlanned {
                key: key.clone(),
                campaign: CAMPAIGN.to_string(),
                reach_out: "early-stage-mail".to_string(),
                customer: format!("s-{index}"),
                attempt: 1,
                channel: channel.to_string(),
                kind,
                account: "shop-mail".to_string(),
                day: sent_at
                    .with_timezone(&chrono_tz::Asia::Shanghai)
                    .date_naive(),
                paid,
                at: sent_at,
                phase: Some(PhaseKind::Burst),
                window_end: at("2026-09-11T00:00:00+08:00"),
                follow_up: None,
                detail: None,
            }),
            sent_at,
        );
        self.outreach.apply(
            &OutreachEvent::MessageSent(MessageSent {
                key,
                campaign: CAMPAIGN.to_string(),
                channel: channel.to_string(),
                kind,
                reach_out: Some("early-stage-mail".to_string()),
                to: format!("s-{index}"),
                template: None,
                template_version: None,
                phase: Some(PhaseKind::Burst),
                stage: None,
                duplicate: false,
                unconfirmed: false,
            }),
            sent_at,
        );
    }

    fn sends(&mut self) {
        // The week before: 100 mails, all free.
        for index in 0..100 {
            self.send(
                index,
                "mail",
                ChannelKind::Mail,
                "2026-08-27T10:00:00+08:00",
                false,
            );
        }
        // This week: 450 mails on one day, 200 free and 250 paid (0.50 CNY at 2.00 per
        // 1,000), and 20 in-site messages.
        for index in 100..550 {
            self.send(
                index,
                "mail",
                ChannelKind::Mail,
                "2026-09-03T10:00:00+08:00",
                index >= 300,
            );
        }
        for index in 550..570 {
            self.send(
                index,
                "in-site",
                ChannelKind::InSite,
                "2026-09-04T10:00:00+08:00",
                false,
            );
        }
    }

    fn done(&mut self, occurrence: &str, task: &str, by: &str, when: &str) {
        self.board.apply(
            &TaskEvent::TaskDone(TaskDone {
                campaign: CAMPAIGN.to_string(),
                occurrence: occurrence.to_string(),
                task: task.to_string(),
                note: None,
            }),
            &EventMeta {
                at: at(when),
                actor: by.to_string(),
                reason: None,
            },
        );
    }

    fn tasks(&mut self) {
        // Before the week: not this week's work.
        self.done(
            "create-coupons",
            "create-coupons",
            "li.na",
            "2026-08-20T10:00:00+08:00",
        );
        // Due Sep 2 10:00, done at 09:00: on time.
        self.done(
            "official-stage-templates",
            "official-stage-templates",
            "li.na",
            "2026-09-02T09:00:00+08:00",
        );
        // Due 09:00 each day.
        self.done(
            "take-orders-in-chat@2026-09-02",
            "take-orders-in-chat",
            "wang.wei",
            "2026-09-02T10:00:00+08:00",
        );
        self.done(
            "take-orders-in-chat@2026-09-03",
            "take-orders-in-chat",
            "wang.wei",
            "2026-09-03T08:00:00+08:00",
        );
        // Due 11:00.
        self.done(
            "exchange-business-cards@2026-09-02",
            "exchange-business-cards",
            "zhang.min",
            "2026-09-02T10:00:00+08:00",
        );
        // Due Sep 1 00:00, done nine hours late.
        self.done(
            "prepare-reply-templates",
            "prepare-reply-templates",
            "liu.yang",
            "2026-09-01T09:00:00+08:00",
        );
        // Due Aug 27 00:00 (the week before), done this week.
        self.done(
            "build-warm-up-template",
            "build-warm-up-template",
            "li.na",
            "2026-09-01T10:00:00+08:00",
        );
    }

    fn report(&self, asked: &str, now: &str) -> WeeklyReport {
        weekly(&Inputs {
            plan: &self.plan,
            week: week(asked),
            now: at(now),
            position: 4_242,
            funnel: &self.funnel,
            shop: &self.shop,
            outreach: &self.outreach,
            board: &self.board,
            skipped: &[],
            offers: &self.offers,
        })
    }
}

fn headline<'a>(report: &'a WeeklyReport, metric: &str) -> &'a super::HeadlineRow {
    report
        .headline
        .iter()
        .find(|row| row.metric == metric)
        .unwrap_or_else(|| panic!("no {metric}"))
}

#[test]
fn the_week_so_far_with_every_number_where_it_comes_from() {
    let world = World::new(plan());
    let report = world.report("2026-W36", NOW);
    assert_eq!(report.week, "2026-W36");
    assert_eq!(report.start, "2026-08-31T00:00:00+08:00");
    assert_eq!(report.end, "2026-09-07T00:00:00+08:00");
    assert_eq!(report.as_of, "2026-09-05T12:00:00+08:00");
    assert!(!report.complete);
    assert_eq!(report.as_of_position, 4_242);

    // GMV and orders: the campaign's own (the shop gave none); the order after now not yet.
    let gmv = headline(&report, "gmv");
    assert_eq!(gmv.this_week, Some(Amount::Money(money("2762.40"))));
    assert_eq!(gmv.source.as_deref(), Some("campaign"));
    assert_eq!(gmv.week_before, Some(Amount::Money(money("300.00"))));
    let change = gmv.change.unwrap();
    assert!((change - (2762.40 / 300.0 - 1.0)).abs() < 1e-9, "{change}");
    assert_eq!(
        headline(&report, "orders").this_week,
        Some(Amount::Count(4))
    );
    assert_eq!(
        headline(&report, "average_order_value").this_week,
        Some(Amount::Money(money("690.60")))
    );
    // Inquiries and fans: the shop's, days Aug 31 to Sep 4 (Sep 5 has no row).
    let inquiries = headline(&report, "inquiries");
    assert_eq!(
        inquiries.this_week,
        Some(Amount::Count(60 + 62 + 90 + 95 + 88))
    );
    assert_eq!(inquiries.source.as_deref(), Some("shop"));
    assert_eq!(inquiries.week_before, Some(Amount::Count(40 + 42 + 45)));
    assert_eq!(
        headline(&report, "fans").this_week,
        Some(Amount::Count(20 + 18 + 30 + 35 + 25))
    );
    // The shop's numbers cover five of the six days measured so far; the week before had
    // three of seven.
    assert_eq!((report.shop_days, report.days), (5, 6));
    assert_eq!(
        (report.shop_days_week_before, report.days_week_before),
        (3, 7)
    );
    // Conversion needs paying buyers from the shop: not measured, never 0.
    let conversion = headline(&report, "conversion_rate");
    assert_eq!(conversion.this_week, None);
    assert_eq!(conversion.source, None);

    // The early stage's targets, measured from its start up to now.
    assert_eq!(report.stages.len(), 1);
    let early = &report.stages[0];
    assert_eq!(early.id, "early");
    let gmv_target = early.targets.iter().find(|t| t.metric == "gmv").unwrap();
    assert_eq!(gmv_target.target, Amount::Money(money("300000.00")));
    assert_eq!(gmv_target.actual, Some(Amount::Money(money("2762.40"))));
    let inquiries_target = early
        .targets
        .iter()
        .find(|t| t.metric == "inquiries")
        .unwrap();
    assert_eq!(inquiries_target.actual, Some(Amount::Count(90 + 95 + 88)));
    assert_eq!(inquiries_target.source.as_deref(), Some("shop"));

    // Sent this week: 450 mails (250 paid, 0.50 CNY) and 20 in-site; 100 mails the week before.
    let mail = &report.reach_outs.channels[0];
    assert_eq!(
        (mail.channel.as_str(), mail.sent, mail.free, mail.paid),
        ("mail", 450, 200, 250)
    );
    assert_eq!(mail.cost, money("0.50"));
    assert_eq!(mail.week_before_sent, 100);
    let in_site = &report.reach_outs.channels[1];
    assert_eq!(
        (in_site.sent, in_site.paid, in_site.cost),
        (20, 0, Money::default())
    );
    assert_eq!(report.reach_outs.sent, 470);
    assert_eq!(report.reach_outs.cost, money("0.50"));

    // The offers, in the plan's order, each with its orders of the week.
    let ids: Vec<&str> = report
        .offers
        .iter()
        .map(|offer| offer.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "sept-50",
            "visitor-20",
            "spend-more",
            "hero-sku",
            "starter-kit"
        ]
    );
    let coupon = &report.offers[0];
    assert_eq!((coupon.orders, coupon.gmv), (1, money("612.40")));
    assert_eq!(coupon.threshold, Some(money("500.00")));
    assert!((coupon.versus_threshold.unwrap() - 1.2248).abs() < 1e-9);
    let tiered = &report.offers[2];
    assert_eq!((tiered.orders, tiered.buyers), (3, 3));
    assert_eq!(tiered.gmv, money("2150.00"));
    assert_eq!(tiered.average_order_value, Some(money("716.67")));
    assert_eq!(tiered.threshold, Some(money("300.00")));
    assert_eq!(tiered.below_threshold, 1);
    let reached: Vec<u64> = tiered.tiers.iter().map(|tier| tier.orders).collect();
    assert_eq!(reached, [0, 1, 1]);
    let discount = &report.offers[3];
    assert_eq!(discount.threshold, None);
    assert_eq!((discount.orders, discount.outside_window), (1, 1));
    assert_eq!(coupon.outside_window, 0);
    assert_eq!(report.other_offers.len(), 1);
    assert_eq!(report.other_offers[0].name, "OLD10");

    // Hot products and keywords, most first.
    assert_eq!(report.hot_products[0].name, "保温杯 500ml");
    assert_eq!(report.hot_keywords[0].count, 310);

    // Tasks done this week, a ranking; what was done before the week is not in it.
    let ranking: Vec<(&str, u64, u64)> = report
        .tasks_done
        .iter()
        .map(|person| (person.person.as_str(), person.done, person.on_time))
        .collect();
    assert_eq!(
        ranking,
        [
            ("li.na", 2, 1),
            ("wang.wei", 2, 1),
            ("zhang.min", 1, 1),
            ("liu.yang", 1, 0)
        ]
    );

    // What is late: escalated tasks first; taking orders in chat missed twice (Sep 4 and 5).
    assert!(report.late[0].escalated > 0, "{:?}", report.late[0]);
    let chat = report
        .late
        .iter()
        .find(|task| task.task == "take-orders-in-chat")
        .unwrap();
    assert_eq!(chat.occurrences, 2);
    assert_eq!(chat.oldest_due, "2026-09-04T09:00:00+08:00");
    assert!(!report
        .late
        .iter()
        .any(|task| task.task == "official-stage-templates"));

    // Next week: the middle stage starts, and the work due.
    assert_eq!(report.next_week.week, "2026-W37");
    let changes: Vec<(&str, &str)> = report
        .next_week
        .changes
        .iter()
        .map(|change| (change.kind.as_str(), change.id.as_str()))
        .collect();
    assert_eq!(changes, [("stage_starts", "middle")]);
    let chat = report
        .next_week
        .tasks
        .iter()
        .find(|task| task.task == "take-orders-in-chat")
        .unwrap();
    assert_eq!(chat.occurrences, 7);
}

#[test]
fn a_week_that_has_ended_reads_the_same_whenever_it_is_asked() {
    let world = World::new(plan());
    let report = world.report("2026-W35", NOW);
    assert!(report.complete);
    assert_eq!(report.as_of, "2026-08-31T00:00:00+08:00");
    assert_eq!(
        report,
        world.report("2026-W35", "2026-10-01T00:00:00+08:00")
    );
    // Warm-up's week: no stage yet; next week the burst and its early stage start, in order.
    assert!(report.stages.is_empty());
    let changes: Vec<(&str, &str)> = report
        .next_week
        .changes
        .iter()
        .map(|change| (change.kind.as_str(), change.id.as_str()))
        .collect();
    assert_eq!(
        changes,
        [("phase_starts", "burst"), ("stage_starts", "early")]
    );
    // Done after the week: late as of its end (and not late in the week it was done).
    assert!(report
        .late
        .iter()
        .any(|task| task.task == "build-warm-up-template"));
    assert!(!world
        .report("2026-W36", NOW)
        .late
        .iter()
        .any(|task| task.task == "build-warm-up-template"));
    // The funnel at the week's end, beside the week before's.
    let overall = report
        .funnel
        .iter()
        .find(|block| block.phase == "overall")
        .unwrap();
    let reached = overall
        .stages
        .iter()
        .find(|count| count.stage == "reached")
        .unwrap();
    assert_eq!((reached.customers, reached.week_before), (4, 0));
}

#[test]
fn the_same_inputs_give_the_same_bytes_and_the_json_gives_the_same_words() {
    let world = World::new(plan());
    let report = world.report("2026-W36", NOW);
    let again = World::new(plan()).report("2026-W36", NOW);
    assert_eq!(render::text(&report), render::text(&again));
    assert_eq!(render::markdown(&report), render::markdown(&again));
    assert_eq!(render::html(&report), render::html(&again));
    // What the control socket carries, read back, renders the same.
    let json = serde_json::to_string_pretty(&report).unwrap();
    let back: WeeklyReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(render::text(&back), render::text(&report));
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
}

#[test]
fn html_is_a_whole_document_that_escapes_what_it_shows() {
    let source = EXAMPLE_PLAN.replace(
        "title = \"Take orders in chat\"",
        "title = \"Take orders in chat <script>alert(1)</script> & \\\"close\\\"\"",
    );
    let world = World::new(plan_of(&source));
    let report = world.report("2026-W36", NOW);
    let page = render::html(&report);
    assert!(
        page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{page}"
    );
    assert!(page.contains("<meta charset=\"utf-8\">"));
    assert!(page.contains("<style>"));
    assert!(page.trim_end().ends_with("</html>"));
    // Nothing fetched from elsewhere.
    for external in ["<link", "<script", "src=", "href=\"http", "@import", "url("] {
        assert!(!page.contains(external), "{external}");
    }
    assert!(page.contains("Take orders in chat &lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; &quot;close&quot;"), "{page}");
    assert!(page.contains("Mug &lt;b&gt;gift&lt;&#x2f;b&gt; set"));
    assert!(page.contains("保温杯 500ml"));
    // The fragment is the document's <main>, for a page to embed.
    let main = render::html_main(&report);
    assert!(main.starts_with("<main class=\"weekly-report\">"));
    assert!(page.contains(&main));
    // Markdown escapes what it would read as markup.
    let markdown = render::markdown(&report);
    assert!(markdown.contains("\\<script\\>"), "{markdown}");
}

#[test]
fn the_report_for_people() {
    let world = World::new(plan());
    let report = world.report("2026-W36", NOW);
    insta::assert_snapshot!("weekly_text", render::text(&report));
    insta::assert_snapshot!("weekly_markdown", render::markdown(&report));
    let ended = world.report("2026-W35", NOW);
    insta::assert_snapshot!("weekly_text_ended", render::text(&ended));
}
