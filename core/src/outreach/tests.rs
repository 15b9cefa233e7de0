//! Given / when / then for the outbox's decisions, on the September example plan: follow-ups
//! that stop on a reply, an order or an unsubscribe, the attempt limit, fatigue between
//! attempts; the bounce guard pausing a channel and a person resuming it; a campaign pause
//! holding sends, which go after resume inside their window and are given up with a reason
//! after it.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::decide::{bounce_guard, dispatch, follow_ups_due, plan_reach_out};
use super::events::{
    ChannelPaused, ChannelResumed, MessageSent, NotSentReason, OutreachEvent, StopReason,
};
use super::render::Renderer;
use super::state::{Outreach, SendStatus};
use crate::campaign::{CampaignState, Shift, Status, Step};
use crate::customer::book::CustomerBook;
use crate::customer::events::{
    CustomerEvent, CustomerRecorded, OutcomeKind, OutcomeRecorded, Signal,
};
use crate::plan::model::{Activity, ChannelKind, Plan, ResumePolicy};
use crate::plan::EXAMPLE_PLAN;

const CAMPAIGN: &str = "sept-festival-2026";
const REACH_OUT: &str = "early-stage-mail";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn example() -> Plan {
    crate::plan::check(EXAMPLE_PLAN.as_bytes())
        .plan
        .unwrap_or_else(|| panic!("the example plan validates"))
}

/// The campaign, its customer book and its outbox, evolved by the decisions it takes.
struct World {
    plan: Plan,
    state: CampaignState,
    book: CustomerBook,
    outreach: Outreach,
    /// The template each message went with, by idempotency key.
    templates: std::collections::BTreeMap<String, Option<String>>,
    /// Messages sent per channel and local day (the campaign's zone) of sending.
    sent_days: std::collections::BTreeMap<(String, NaiveDate), u32>,
    /// Every event applied, in order.
    log: Vec<OutreachEvent>,
}

impl World {
    /// The early stage running, with `customers` active buyers who have a mail address.
    fn new(customers: usize) -> World {
        let plan = example();
        let mut state = CampaignState::draft(CAMPAIGN);
        state.plan_version = 1;
        state.status = Status::Running {
            step: Step::stage("early"),
        };
        let mut book = CustomerBook::default();
        for index in 0..customers {
            let id = format!("c-{index:06}");
            book.apply(
                &CustomerEvent::CustomerRecorded(CustomerRecorded {
                    customer: id.clone(),
                    line: 2,
                    name: Some(format!("Buyer {index}")),
                    email: Some(format!("{id}@example.com")),
                    signals: vec![Signal {
                        activity: Activity::Active,
                        at: at("2026-08-30T10:00:00+08:00"),
                        amount: None,
                    }],
                    ..CustomerRecorded::default()
                }),
                at("2026-08-30T10:00:00+08:00"),
            );
        }
        World {
            plan,
            state,
            book,
            outreach: Outreach::default(),
            templates: std::collections::BTreeMap::new(),
            sent_days: std::collections::BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, events: &[OutreachEvent], now: DateTime<Utc>) {
        self.log.extend(events.iter().cloned());
        for event in events {
            self.outreach.apply(event, now);
        }
    }

    fn plan(&mut self, now: DateTime<Utc>) {
        let events = plan_reach_out(
            &self.plan,
            &self.state,
            &self.book,
            &self.outreach,
            REACH_OUT,
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.apply(&events, now);
    }

    /// The dispatcher at `now`: gives up what it must, sends the rest (the channel takes all).
    /// The dispatcher at `now`, as the daemon runs it: batches until nothing is left to do.
    fn dispatch(&mut self, now: DateTime<Utc>) -> (usize, Vec<NotSentReason>) {
        let mut sent = 0;
        let mut reasons = Vec::new();
        for _ in 0..100 {
            let (batch, mut given_up, moved) = self.dispatch_once(now);
            sent += batch;
            let idle = batch == 0 && given_up.is_empty() && moved == 0;
            reasons.append(&mut given_up);
            if idle {
                break;
            }
        }
        (sent, reasons)
    }

    /// One batch of the dispatcher: sent, given up, moved.
    fn dispatch_once(&mut self, now: DateTime<Utc>) -> (usize, Vec<NotSentReason>, usize) {
        let renderer = Renderer::new(&self.plan);
        let decided = dispatch(
            &self.plan,
            &self.state,
            &self.book,
            &self.outreach,
            &renderer,
            now,
            usize::MAX,
        );
        let reasons = decided
            .not_sent
            .iter()
            .filter_map(|event| match event {
                OutreachEvent::NotSent(not_sent) => Some(not_sent.reason),
                _ => None,
            })
            .collect();
        let moved = decided.moved.len();
        self.apply(&decided.moved, now);
        self.apply(&decided.not_sent, now);
        let sent = decided.messages.len();
        let today = now
            .with_timezone(&self.plan.campaign.time_zone)
            .date_naive();
        for message in decided.messages {
            *self
                .sent_days
                .entry((message.channel.clone(), today))
                .or_default() += 1;
            self.templates
                .insert(message.key.clone(), message.template.clone());
            let sent = MessageSent {
                key: message.key,
                campaign: message.campaign,
                channel: message.channel,
                kind: message.kind,
                reach_out: message.reach_out,
                to: message.to,
                template: message.template,
                template_version: message.template_version,
                phase: None,
                stage: None,
                duplicate: false,
                unconfirmed: false,
            };
            self.book.reached(&sent, now);
            self.outreach.apply(&OutreachEvent::MessageSent(sent), now);
        }
        (sent, reasons, moved)
    }

    fn follow_ups(&mut self, now: DateTime<Utc>) -> Vec<OutreachEvent> {
        let events = follow_ups_due(&self.plan, &self.state, &self.book, &self.outreach, now);
        self.apply(&events, now);
        events
    }

    fn outcome(&mut self, customer: &str, outcome: OutcomeKind, now: DateTime<Utc>) {
        let row = OutcomeRecorded {
            customer: customer.to_string(),
            line: 2,
            outcome,
            at: now,
            campaign: Some(CAMPAIGN.to_string()),
            reach_out: Some(REACH_OUT.to_string()),
            channel: Some(ChannelKind::Mail),
            amount: None,
            message: None,
            offer: None,
        };
        self.outreach.outcome(&row);
        self.book.apply(&CustomerEvent::OutcomeRecorded(row), now);
    }

    fn status(&self, customer: &str, attempt: u32) -> Option<SendStatus> {
        self.outreach
            .send(&format!("{CAMPAIGN}/{REACH_OUT}/{customer}/{attempt}"))
            .map(|send| send.status)
    }
}

fn stops(events: &[OutreachEvent]) -> Vec<StopReason> {
    events
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::FollowUpStopped(stopped) => Some(stopped.reason),
            _ => None,
        })
        .collect()
}

fn planned_at(events: &[OutreachEvent]) -> Vec<(u32, DateTime<Utc>)> {
    events
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::SendPlanned(planned) => Some((planned.attempt, planned.at)),
            _ => None,
        })
        .collect()
}

const STAGE_START: &str = "2026-09-02T00:00:00+08:00";
/// Mail's quiet hours end at 08:00: the first message goes then.
const FIRST_SEND: &str = "2026-09-02T08:00:00+08:00";
/// The rule: no reply after 7 days.
const FIRST_DUE: &str = "2026-09-09T08:00:00+08:00";

/// Given one customer sent the stage's mail at 08:00 on the first day.
fn sent_once() -> World {
    let mut world = World::new(1);
    world.plan(at(STAGE_START));
    assert_eq!(world.dispatch(at(STAGE_START)).0, 0, "held by quiet hours");
    assert_eq!(world.dispatch(at(FIRST_SEND)).0, 1);
    world
}

#[test]
fn a_reply_stops_the_follow_ups() {
    let mut world = sent_once();
    world.outcome(
        "c-000000",
        OutcomeKind::Replied,
        at("2026-09-04T10:00:00+08:00"),
    );
    let events = world.follow_ups(at(FIRST_DUE));
    assert_eq!(stops(&events), vec![StopReason::Replied]);
    assert!(planned_at(&events).is_empty());
    assert_eq!(world.outreach.follow_ups().count(), 0);
}

#[test]
fn an_order_stops_the_follow_ups() {
    let mut world = sent_once();
    world.outcome(
        "c-000000",
        OutcomeKind::Ordered,
        at("2026-09-05T10:00:00+08:00"),
    );
    assert_eq!(
        stops(&world.follow_ups(at(FIRST_DUE))),
        vec![StopReason::Ordered]
    );
}

#[test]
fn an_unsubscribe_stops_the_follow_ups() {
    let mut world = sent_once();
    world.outcome(
        "c-000000",
        OutcomeKind::Unsubscribed,
        at("2026-09-03T10:00:00+08:00"),
    );
    assert_eq!(
        stops(&world.follow_ups(at(FIRST_DUE))),
        vec![StopReason::Unsubscribed]
    );
}

#[test]
fn a_reply_after_the_follow_up_was_planned_stops_it_at_sending() {
    let mut world = sent_once();
    let events = world.follow_ups(at(FIRST_DUE));
    assert_eq!(planned_at(&events), vec![(2, at(FIRST_DUE))]);
    world.outcome(
        "c-000000",
        OutcomeKind::Replied,
        at("2026-09-09T07:59:00+08:00"),
    );
    let (sent, reasons) = world.dispatch(at(FIRST_DUE));
    assert_eq!(sent, 0);
    assert_eq!(reasons, vec![NotSentReason::Replied]);
}

#[test]
fn follow_ups_stop_at_the_attempt_limit() {
    let mut world = sent_once();
    // Attempts 2 and 3: the rule allows two follow-ups.
    for (due, attempt) in [(FIRST_DUE, 2), ("2026-09-16T08:00:00+08:00", 3)] {
        let events = world.follow_ups(at(due));
        assert_eq!(planned_at(&events), vec![(attempt, at(due))], "{due}");
        assert_eq!(world.dispatch(at(due)).0, 1, "{due}");
        assert!(matches!(
            world.status("c-000000", attempt),
            Some(SendStatus::Sent { .. })
        ));
        // Follow-ups use the follow-up template.
        assert_eq!(
            world
                .templates
                .get(&format!("{CAMPAIGN}/{REACH_OUT}/c-000000/{attempt}"))
                .cloned()
                .flatten()
                .as_deref(),
            Some("follow-up-mail")
        );
    }
    let events = world.follow_ups(at("2026-09-23T08:00:00+08:00"));
    assert_eq!(stops(&events), vec![StopReason::AttemptLimit]);
    assert!(planned_at(&events).is_empty());
    assert!(world.status("c-000000", 4).is_none());
}

#[test]
fn each_message_takes_the_template_of_its_tier_and_of_the_stage_it_goes_in() {
    // Given two buyers, the second of tier L1+, and a follow-up template for the middle stage
    // beside the plan's stage-less one,
    let mut world = World::new(2);
    world.book.apply(
        &CustomerEvent::CustomerRecorded(CustomerRecorded {
            customer: "c-000001".into(),
            line: 3,
            tier: Some("L1+".into()),
            ..CustomerRecorded::default()
        }),
        at("2026-08-30T10:00:00+08:00"),
    );
    let mut middle = world
        .plan
        .template("follow-up-mail")
        .cloned()
        .unwrap_or_else(|| panic!("the example has follow-up-mail"));
    middle.id = "follow-up-middle".into();
    middle.stage = Some("middle".into());
    world.plan.templates.push(middle);
    let template = |world: &World, customer: &str, attempt: u32| {
        world
            .templates
            .get(&format!("{CAMPAIGN}/{REACH_OUT}/{customer}/{attempt}"))
            .cloned()
            .flatten()
    };
    // when the early stage's mail goes, then each buyer gets the most specific template: the
    // L1+ one for the L1+ buyer, the stage's for the other;
    world.plan(at(STAGE_START));
    assert_eq!(world.dispatch(at(FIRST_SEND)).0, 2);
    assert_eq!(
        template(&world, "c-000000", 1).as_deref(),
        Some("early-mail")
    );
    assert_eq!(
        template(&world, "c-000001", 1).as_deref(),
        Some("early-mail-l1")
    );
    // the first follow-up fires in the early stage: the stage-less follow-up template;
    world.follow_ups(at(FIRST_DUE));
    assert_eq!(world.dispatch(at(FIRST_DUE)).0, 2);
    for customer in ["c-000000", "c-000001"] {
        assert_eq!(
            template(&world, customer, 2).as_deref(),
            Some("follow-up-mail")
        );
    }
    // the second fires once the middle stage runs: the middle stage's follow-up template.
    world.state.status = Status::Running {
        step: Step::stage("middle"),
    };
    let second = at("2026-09-16T08:00:00+08:00");
    world.follow_ups(second);
    assert_eq!(world.dispatch(second).0, 2);
    for customer in ["c-000000", "c-000001"] {
        assert_eq!(
            template(&world, customer, 3).as_deref(),
            Some("follow-up-middle")
        );
    }
}

#[test]
fn a_follow_up_waits_out_the_fatigue_window_of_a_later_message() {
    let mut world = sent_once();
    // Another reach-out reached the customer five days later.
    let other = MessageSent {
        key: format!("{CAMPAIGN}/smart-batch/c-000000/1"),
        campaign: CAMPAIGN.to_string(),
        channel: "in-site".to_string(),
        kind: ChannelKind::InSite,
        reach_out: Some("smart-batch".to_string()),
        to: "c-000000".to_string(),
        template: None,
        template_version: None,
        phase: None,
        stage: None,
        duplicate: false,
        unconfirmed: false,
    };
    let other_at = at("2026-09-07T10:00:00+08:00");
    world.book.reached(&other, other_at);
    let events = world.follow_ups(at(FIRST_DUE));
    // Fatigue is 7 days on any channel: not before 2026-09-14 10:00.
    assert_eq!(planned_at(&events), vec![(2, other_at + Duration::days(7))]);
    assert_eq!(world.dispatch(at(FIRST_DUE)).0, 0);
    assert_eq!(world.dispatch(other_at + Duration::days(7)).0, 1);
}

#[test]
fn the_bounce_guard_pauses_the_channel_and_a_person_resumes_it() {
    let mut world = World::new(400);
    world.plan(at(STAGE_START));
    // The first 200 go (the plan's free volume a day is 200 of a cap of 2000: all 400 fit).
    let renderer_sent = world.dispatch(at(FIRST_SEND)).0;
    assert_eq!(renderer_sent, 400);
    assert!(bounce_guard(&world.plan, &world.outreach).is_empty());
    // 5% of 400 is 20 bounces: at the threshold, not over it.
    for index in 0..20 {
        world.outcome(
            &format!("c-{index:06}"),
            OutcomeKind::Bounced,
            at(FIRST_SEND),
        );
    }
    assert!(bounce_guard(&world.plan, &world.outreach).is_empty());
    world.outcome("c-000020", OutcomeKind::Bounced, at(FIRST_SEND));
    let events = bounce_guard(&world.plan, &world.outreach);
    let paused = events.iter().find_map(|event| match event {
        OutreachEvent::ChannelPaused(paused) => Some(paused.clone()),
        _ => None,
    });
    let paused = paused.unwrap_or_else(|| panic!("no pause in {events:?}"));
    assert_eq!(
        (paused.channel.as_str(), paused.sent, paused.bounced),
        ("mail", 400, 21)
    );
    let notice = events.iter().find_map(|event| match event {
        OutreachEvent::NoticePlanned(notice) => Some(notice.clone()),
        _ => None,
    });
    let notice = notice.unwrap_or_else(|| panic!("ops are not told"));
    assert_eq!(notice.role, "ops");
    assert_eq!(notice.members, vec!["li.na".to_string()]);
    world.apply(&events, at(FIRST_SEND));
    assert!(world.outreach.channel_paused(CAMPAIGN, "mail"));
    assert_eq!(world.outreach.staff_pending().count(), 1);

    // Follow-ups planned while paused are held, not sent.
    let due = at(FIRST_DUE);
    world.follow_ups(due);
    let (sent, reasons) = world.dispatch(due);
    assert_eq!(
        (sent, reasons.len()),
        (0, 0),
        "held while the channel is paused"
    );

    // A person resumes: the held sends go; the guard counts again from here.
    world.apply(
        &[OutreachEvent::ChannelResumed(ChannelResumed {
            campaign: CAMPAIGN.to_string(),
            channel: "mail".to_string(),
        })],
        due,
    );
    assert!(bounce_guard(&world.plan, &world.outreach).is_empty());
    let after_resume = world.dispatch(due + Duration::hours(1)).0;
    assert!(after_resume >= 200, "{after_resume} follow-ups sent");

    // Late bounces of first messages sent before the pause say nothing of the cleaned list:
    // 40 of them (10% of what went since the resume) do not pause the channel again.
    let late = due + Duration::hours(2);
    for index in 100..140 {
        world.outcome(&format!("c-{index:06}"), OutcomeKind::Bounced, late);
    }
    assert!(bounce_guard(&world.plan, &world.outreach).is_empty());
    // Bounces of follow-ups sent after the resume do count.
    for index in 200..240 {
        let customer = format!("c-{index:06}");
        let row = OutcomeRecorded {
            customer: customer.clone(),
            line: 3,
            outcome: OutcomeKind::Bounced,
            at: late,
            campaign: Some(CAMPAIGN.to_string()),
            reach_out: Some(REACH_OUT.to_string()),
            channel: Some(ChannelKind::Mail),
            amount: None,
            message: Some(format!("{CAMPAIGN}/{REACH_OUT}/{customer}/2")),
            offer: None,
        };
        world.outreach.outcome(&row);
    }
    let events = bounce_guard(&world.plan, &world.outreach);
    let paused = events.iter().find_map(|event| match event {
        OutreachEvent::ChannelPaused(paused) => Some((paused.sent, paused.bounced)),
        _ => None,
    });
    assert_eq!(paused, Some((after_resume as u64, 40)));
}

#[test]
fn a_pause_holds_sends_which_go_after_resume_inside_their_window() {
    let mut world = World::new(3);
    world.plan(at(STAGE_START));
    world.state.status = Status::Paused {
        from: Some(Step::stage("early")),
        since: at(STAGE_START),
        by: "alice".into(),
        reason: None,
    };
    assert_eq!(
        world.dispatch(at(FIRST_SEND)),
        (0, vec![]),
        "held while paused"
    );
    assert_eq!(world.outreach.pending_count(), 3);
    world.state.status = Status::Running {
        step: Step::stage("early"),
    };
    let resumed = at("2026-09-03T09:00:00+08:00");
    assert_eq!(world.dispatch(resumed).0, 3);
    assert_eq!(world.outreach.pending_count(), 0);
}

#[test]
fn a_send_held_past_its_window_is_given_up_as_paused() {
    let mut world = World::new(2);
    world.plan(at(STAGE_START));
    world.state.status = Status::Paused {
        from: Some(Step::stage("early")),
        since: at(STAGE_START),
        by: "alice".into(),
        reason: None,
    };
    // The early stage ends at 2026-09-11 00:00: still paused then.
    let (sent, reasons) = world.dispatch(at("2026-09-11T00:00:00+08:00"));
    assert_eq!(sent, 0);
    assert_eq!(
        reasons,
        vec![NotSentReason::CampaignPaused, NotSentReason::CampaignPaused]
    );
    assert_eq!(world.outreach.pending_count(), 0);
}

#[test]
fn under_shift_windows_a_held_send_outlives_its_window_and_goes_inside_the_shifted_one() {
    // Given a plan whose pauses shift the windows, and two sends planned for the early stage,
    let mut world = World::new(2);
    world.plan.campaign.on_resume = ResumePolicy::ShiftWindows;
    world.plan(at(STAGE_START));
    let since = at(STAGE_START);
    world.state.status = Status::Paused {
        from: Some(Step::stage("early")),
        since,
        by: "alice".into(),
        reason: None,
    };
    // when the pause outlasts the stage's end (2026-09-11 00:00), nothing is given up: the
    // window will move by however long the pause lasts,
    assert_eq!(world.dispatch(at("2026-09-12T00:00:00+08:00")), (0, vec![]));
    assert_eq!(world.outreach.pending_count(), 2);
    // and once resumed after 10 days, the window ends 10 days later: the sends go.
    let resumed = at("2026-09-13T09:00:00+08:00");
    world.state.status = Status::Running {
        step: Step::stage("early"),
    };
    world.state.shifts.push(Shift {
        after: since,
        by_ms: (resumed - since).num_milliseconds(),
    });
    assert_eq!(world.dispatch(resumed), (2, vec![]));
    assert_eq!(world.outreach.pending_count(), 0);
}

#[test]
fn under_shift_windows_a_send_is_given_up_after_its_shifted_window() {
    let mut world = World::new(1);
    world.plan.campaign.on_resume = ResumePolicy::ShiftWindows;
    world.plan(at(STAGE_START));
    let since = at(STAGE_START);
    // A pause of one day, then the channel is held by the bounce guard past the moved end.
    world.state.shifts.push(Shift {
        after: since,
        by_ms: Duration::days(1).num_milliseconds(),
    });
    world.apply(
        &[OutreachEvent::ChannelPaused(ChannelPaused {
            campaign: CAMPAIGN.to_string(),
            channel: "mail".to_string(),
            sent: 200,
            bounced: 20,
            threshold: "5%".to_string(),
            failure: None,
        })],
        since,
    );
    // The early stage's end moved from 09-11 to 09-12: still held, not given up, on the 11th,
    assert_eq!(world.dispatch(at("2026-09-11T12:00:00+08:00")), (0, vec![]));
    // given up at the moved end.
    assert_eq!(
        world.dispatch(at("2026-09-12T00:00:00+08:00")),
        (0, vec![NotSentReason::BounceGuard])
    );
}

#[test]
fn a_window_that_closed_while_nothing_ran_gives_every_member_a_reason() {
    // Given the early stage's mail never planned while its window was open (the daemon was
    // down from before the stage began until after it ended),
    let mut world = World::new(3);
    world.state.status = Status::Running {
        step: Step::stage("middle"),
    };
    // when the dispatcher looks at the reach-outs after the window (ends 2026-09-11 00:00),
    let now = at("2026-09-12T09:00:00+08:00");
    let due = super::decide::reach_outs_due(&world.plan, &world.state, &world.outreach, now);
    assert!(
        due.iter().any(|r| r.id == REACH_OUT),
        "the missed reach-out is due"
    );
    let events = plan_reach_out(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        REACH_OUT,
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    world.apply(&events, now);
    // then every member is recorded as not sent because the window closed, and nothing waits.
    let reasons: Vec<(&str, NotSentReason, bool)> = events
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::NotSent(not_sent) => Some((
                not_sent.customer.as_str(),
                not_sent.reason,
                not_sent.detail.as_deref().is_some_and(|d| {
                    d.contains("2026-09-11 00:00 +08:00") && d.contains("not running")
                }),
            )),
            OutreachEvent::SendPlanned(planned) => panic!("{} planned", planned.key),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("c-000000", NotSentReason::WindowClosed, true),
            ("c-000001", NotSentReason::WindowClosed, true),
            ("c-000002", NotSentReason::WindowClosed, true),
        ]
    );
    assert_eq!(world.outreach.pending_count(), 0);
    let planned = world
        .outreach
        .reach_out_planned(CAMPAIGN, REACH_OUT)
        .unwrap_or_else(|| panic!("the reach-out is recorded as decided"));
    assert_eq!((planned.planned, planned.not_sent), (0, 3));
}

#[test]
fn a_window_that_closed_during_a_pause_gives_every_member_campaign_paused() {
    // Given the campaign paused from before the early stage until after its mail's window
    // closed (2026-09-11 00:00), and resumed,
    let mut world = World::new(2);
    let paused = at("2026-09-01T12:00:00+08:00");
    let resumed = at("2026-09-12T09:00:00+08:00");
    world.state.status = Status::Running {
        step: Step::stage("middle"),
    };
    world.state.last_pause = Some((paused, resumed));
    // when the reach-out is decided after the resume,
    let events = plan_reach_out(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        REACH_OUT,
        resumed,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // then the pause, not downtime, is the reason given to every member, with its span.
    let reasons: Vec<(NotSentReason, String)> = events
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::NotSent(not_sent) => {
                Some((not_sent.reason, not_sent.detail.clone().unwrap_or_default()))
            }
            OutreachEvent::SendPlanned(planned) => panic!("{} planned", planned.key),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2);
    for (reason, detail) in &reasons {
        assert_eq!(*reason, NotSentReason::CampaignPaused);
        assert_eq!(
            detail,
            "the window closed at 2026-09-11 00:00 +08:00 while the campaign was paused (from 2026-09-01 12:00 +08:00 to 2026-09-12 09:00 +08:00); it was never planned"
        );
    }

    // A pause that ended before the window closed is not the reason: the daemon was down.
    world.state.last_pause = Some((paused, at("2026-09-02T09:00:00+08:00")));
    let events = plan_reach_out(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        REACH_OUT,
        resumed,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(events.iter().all(|event| match event {
        OutreachEvent::NotSent(not_sent) => not_sent.reason == NotSentReason::WindowClosed,
        _ => true,
    }));
}

#[test]
fn a_mail_carries_its_unsubscribe_link_unescaped_and_the_customer_data_escaped() {
    // Given a buyer whose name holds HTML,
    let mut world = World::new(1);
    world.book.apply(
        &CustomerEvent::CustomerRecorded(CustomerRecorded {
            customer: "c-000000".into(),
            line: 3,
            name: Some("<b>Li</b> & Co".into()),
            email: Some("c-000000@example.com".into()),
            signals: vec![Signal {
                activity: Activity::Active,
                at: at("2026-08-30T10:00:00+08:00"),
                amount: None,
            }],
            ..CustomerRecorded::default()
        }),
        at("2026-08-30T10:00:00+08:00"),
    );
    world.plan(at(STAGE_START));
    // when the stage's mail is rendered for sending,
    let renderer = Renderer::new(&world.plan);
    let decided = dispatch(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        &renderer,
        at(FIRST_SEND),
        usize::MAX,
    );
    let body = &decided.messages[0].body;
    // then the link is whole and the customer's text is escaped.
    assert!(
        body.contains("unsubscribe://sept-festival-2026/c-000000"),
        "{body}"
    );
    assert!(
        body.contains("&lt;b&gt;Li&lt;&#x2f;b&gt; &amp; Co"),
        "{body}"
    );
}

#[test]
fn when_the_campaign_completes_every_open_follow_up_stops_at_once() {
    // Given 50 customers sent the stage's mail, their follow-ups due a week later.
    let mut world = World::new(50);
    world.plan(at(STAGE_START));
    assert_eq!(world.dispatch(at(FIRST_SEND)).0, 50);
    assert_eq!(world.outreach.follow_ups().count(), 50);
    // When the campaign completes a day later, before any follow-up is due,
    world.state.status = Status::Completed;
    let events = world.follow_ups(at("2026-09-03T08:00:00+08:00"));
    // then every thread stops in that one decision, none left to wait for its due instant.
    assert_eq!(stops(&events), vec![StopReason::CampaignEnded; 50]);
    assert_eq!(world.outreach.follow_ups().count(), 0);
}

#[test]
fn a_shifting_pause_moves_the_tasks_anchored_to_the_boundaries_it_moves() {
    use crate::plan::model::TaskSchedule;
    // Given the example plan and a six-hour pause that began during the early stage,
    let plan = example();
    let pause = Shift {
        after: at("2026-09-05T10:00:00+08:00"),
        by_ms: 6 * 3_600_000,
    };
    // when the plan in force is made of it,
    let moved = super::decide::shifted(&plan, &[pause]);
    let span = |plan: &Plan, id: &str| match plan.tasks.iter().find(|task| task.id == id) {
        Some(task) => match &task.schedule {
            TaskSchedule::Once { due } => (*due, *due),
            TaskSchedule::Recurring { from, until, .. } => (*from, *until),
        },
        None => panic!("no task {id}"),
    };
    let due = |plan: &Plan, id: &str| span(plan, id).0;
    // then a task due at `review.end - 1d` moved with the review's end, six hours later,
    assert_eq!(
        due(&moved, "summarise-results"),
        at("2026-10-07T06:00:00+08:00")
    );
    // a recurring task over the burst keeps its start (before the pause) and ends later,
    let (from, until) = span(&plan, "adjust-keywords");
    assert_eq!(
        span(&moved, "adjust-keywords"),
        (from, until + Duration::hours(6))
    );
    // and a task due before the pause stays where it was.
    assert_eq!(
        due(&moved, "pick-hot-themes"),
        due(&plan, "pick-hot-themes")
    );
}

/// The early stage skipped by alice's advance to the middle stage at `when`.
fn skip_early(world: &mut World, when: DateTime<Utc>) {
    world.state.skipped.push(crate::campaign::SkippedStep {
        step: Step::stage("early"),
        start: at(STAGE_START),
        end: at("2026-09-11T00:00:00+08:00"),
        at: when,
        by: "alice".to_string(),
    });
    world.state.status = Status::Running {
        step: Step::stage("middle"),
    };
}

#[test]
fn sends_of_a_reach_out_whose_stage_was_skipped_by_an_advance_do_not_go_out() {
    // Given 2,500 customers: the stage's mail goes to 2,000 on its first day (the cap), the
    // rest on the second,
    let mut world = World::new(2_500);
    world.plan(at(STAGE_START));
    assert_eq!(world.dispatch(at(FIRST_SEND)).0, 2_000);
    // when alice advances to the middle stage that evening,
    skip_early(&mut world, at("2026-09-02T20:00:00+08:00"));
    // then the next morning nothing of the early stage's mail goes out with the middle stage's
    // template: every send left is given up as phase_skipped, with what was skipped and by whom.
    let (sent, reasons) = world.dispatch(at("2026-09-03T08:00:00+08:00"));
    assert_eq!(sent, 0);
    assert!(!reasons.is_empty());
    assert!(reasons
        .iter()
        .all(|reason| *reason == NotSentReason::PhaseSkipped));
    assert_eq!(world.outreach.pending_count(), 0);
}

#[test]
fn a_reach_out_of_a_skipped_stage_planned_after_the_advance_plans_no_send() {
    // Given the early stage skipped before its mail was planned,
    let mut world = World::new(3);
    skip_early(&mut world, at("2026-09-02T00:30:00+08:00"));
    // when the reach-out is decided,
    let events = plan_reach_out(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        REACH_OUT,
        at("2026-09-02T01:00:00+08:00"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let events = super::decide::skip_if_advanced_past(&world.plan, &world.state, REACH_OUT, events);
    // then every member it would have reached is phase_skipped, and the count says so.
    assert!(planned_at(&events).is_empty());
    let reasons: Vec<NotSentReason> = events
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::NotSent(not_sent) => Some(not_sent.reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![NotSentReason::PhaseSkipped; 3]);
    let done = events.iter().find_map(|event| match event {
        OutreachEvent::ReachOutPlanned(done) => Some(done),
        _ => None,
    });
    assert_eq!(done.map(|done| (done.planned, done.not_sent)), Some((0, 3)));
}

/// The one customer `c-000000`, active, with a mail address and `name` (or none), the early
/// stage's mail planned; then what the dispatcher decides at the first sending instant.
fn early_mail_to(world: &mut World, name: Option<&str>) -> super::decide::Dispatch {
    world.book.apply(
        &CustomerEvent::CustomerRecorded(CustomerRecorded {
            customer: "c-000000".into(),
            line: 2,
            name: name.map(str::to_string),
            email: Some("c-000000@example.com".into()),
            signals: vec![Signal {
                activity: Activity::Active,
                at: at("2026-08-30T10:00:00+08:00"),
                amount: None,
            }],
            ..CustomerRecorded::default()
        }),
        at("2026-08-30T10:00:00+08:00"),
    );
    world.plan(at(STAGE_START));
    let renderer = Renderer::new(&world.plan);
    dispatch(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        &renderer,
        at(FIRST_SEND),
        usize::MAX,
    )
}

/// The example's early-stage mail template, to be rewritten by a test.
fn early_template(plan: &mut Plan) -> &mut crate::plan::model::Template {
    plan.templates
        .iter_mut()
        .find(|template| template.id == "early-mail")
        .unwrap_or_else(|| panic!("the example has early-mail"))
}

#[test]
fn a_customer_without_a_name_gets_the_templates_fallback_not_the_company_or_the_id() {
    // Given a buyer with a company but no name, and a template with a fallback,
    let mut world = World::new(0);
    early_template(&mut world.plan).body =
        "Dear {{ customer.name | default('customer') }} of {{ customer.company | default('your company') }}, {{ unsubscribe_url }}".into();
    // when the mail is rendered,
    let decided = early_mail_to(&mut world, None);
    // then the fallback is written: the name is missing, not the company or the id.
    assert_eq!(decided.messages.len(), 1, "{:?}", decided.not_sent);
    let body = &decided.messages[0].body;
    assert!(body.starts_with("Dear customer of your company,"), "{body}");
}

#[test]
fn a_bare_missing_name_gives_the_send_up_as_template_failed() {
    // Given a template that prints the name with no fallback, and a buyer with no name,
    let mut world = World::new(0);
    early_template(&mut world.plan).body = "Dear {{ customer.name }}, {{ unsubscribe_url }}".into();
    // when the mail is rendered,
    let decided = early_mail_to(&mut world, None);
    // then nothing goes out with an empty or borrowed name: the send has a typed reason.
    assert!(decided.messages.is_empty());
    assert!(matches!(
        decided.not_sent.as_slice(),
        [OutreachEvent::NotSent(not_sent)] if not_sent.reason == NotSentReason::TemplateFailed
    ));
}

#[test]
fn a_name_with_a_line_break_never_reaches_a_subject_and_stays_inert_in_the_body() {
    // Given a subject and a body that print the name, and a buyer whose name holds CR/LF, an
    // escape sequence and template syntax,
    let mut world = World::new(0);
    let template = early_template(&mut world.plan);
    template.subject = Some("For {{ customer.name }}".into());
    template.body = "Dear {{ customer.name }}, {{ unsubscribe_url }}".into();
    let hostile = "Evil\r\nBcc: attacker@evil.example\u{1b}]0;x {{ campaign.id }}";
    // when the mail is rendered,
    let decided = early_mail_to(&mut world, Some(hostile));
    // then no subject with a line break is handed to the channel: the send is given up.
    assert!(decided.messages.is_empty(), "{:?}", decided.messages);
    let [OutreachEvent::NotSent(not_sent)] = decided.not_sent.as_slice() else {
        panic!("{:?}", decided.not_sent)
    };
    assert_eq!(not_sent.reason, NotSentReason::TemplateFailed);
    let detail = not_sent.detail.clone().unwrap_or_default();
    assert!(detail.contains("subject"), "{detail}");
    assert!(
        !detail.contains('\r') && !detail.contains('\u{1b}'),
        "{detail}"
    );

    // And with the name only in the body, the message goes, the field's template syntax as
    // written (never evaluated) and its markup escaped.
    let mut world = World::new(0);
    let template = early_template(&mut world.plan);
    template.subject = Some("Our sale".into());
    template.body = "Dear {{ customer.name }}, {{ unsubscribe_url }}".into();
    let decided = early_mail_to(&mut world, Some("<i>Li</i> {{ campaign.id }}"));
    assert_eq!(decided.messages.len(), 1, "{:?}", decided.not_sent);
    let body = &decided.messages[0].body;
    assert!(
        body.contains("&lt;i&gt;Li&lt;&#x2f;i&gt; {{ campaign.id }}"),
        "{body}"
    );
}

#[test]
fn stage_times_are_local_date_and_time_and_the_days_have_their_own_names() {
    // Given the early stage ending at 21:00 local time,
    let mut world = World::new(0);
    let end = at("2026-09-10T21:00:00+08:00");
    if let Some(stage) = world.plan.stages.iter_mut().find(|s| s.id == "early") {
        stage.window.end = end;
    }
    early_template(&mut world.plan).body =
        "From {{ stage.starts }} to {{ stage.ends }}, {{ stage.first_day }} to {{ stage.last_day }}. {{ unsubscribe_url }}".into();
    // when the stage's mail is rendered,
    let decided = early_mail_to(&mut world, Some("Li"));
    // then the instants say the hour, in the campaign's zone, and the days are the dates.
    assert_eq!(decided.messages.len(), 1, "{:?}", decided.not_sent);
    let body = &decided.messages[0].body;
    assert!(
        body.starts_with(
            "From 2026-09-02 00:00 +08:00 to 2026-09-10 21:00 +08:00, 2026-09-02 to 2026-09-10."
        ),
        "{body}"
    );
}

// The daily cap on the day of sending: sends held by a pause, the bounce guard or downtime
// past the day whose quota they reserved are moved to days with room, never sent on top of a
// later day's own quota.

/// What holds the outbox for a while.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// The campaign paused from `.0` to `.1`.
    Pause(DateTime<Utc>, DateTime<Utc>),
    /// The bounce guard paused mail from `.0`; a person resumed it at `.1`.
    Guard(DateTime<Utc>, DateTime<Utc>),
    /// The daemon not running from `.0` to `.1`.
    Down(DateTime<Utc>, DateTime<Utc>),
}

impl Hold {
    fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        match self {
            Hold::Pause(from, to) | Hold::Guard(from, to) | Hold::Down(from, to) => (from, to),
        }
    }
}

impl World {
    /// Mail with a small cap, free volume and price, so that few customers fill days.
    fn mail_limits(&mut self, cap: u32, free: u32, cost_minor: i64, quiet: bool) {
        let mail = self
            .plan
            .channels
            .iter_mut()
            .find(|channel| channel.id == "mail")
            .unwrap_or_else(|| panic!("the example has mail"));
        mail.daily_cap = Some(cap);
        mail.free_per_day = Some(free);
        mail.cost_per_1000 = Some(crate::plan::values::Money::from_minor(cost_minor));
        mail.monthly_budget = None;
        mail.daily_budget = None;
        if !quiet {
            mail.quiet_hours = None;
        }
        // The one reach-out these worlds plan (the others would always be due).
        self.plan
            .reach_outs
            .retain(|reach_out| reach_out.id == REACH_OUT);
    }

    /// Runs the dispatcher as the daemon does, from `from` to `until`: at every instant it has
    /// something due (or a hold begins or ends), follow-ups then sends, unless it is down.
    fn run(&mut self, from: DateTime<Utc>, until: DateTime<Utc>, holds: &[Hold]) {
        let mut now = from;
        let mut paused_since: Option<DateTime<Utc>> = None;
        let mut guard_on = false;
        for _ in 0..5_000 {
            let paused = holds
                .iter()
                .any(|hold| matches!(hold, Hold::Pause(a, b) if *a <= now && now < *b));
            match (paused, paused_since) {
                (true, None) => {
                    paused_since = Some(now);
                    self.state.status = Status::Paused {
                        from: Some(Step::stage("early")),
                        since: now,
                        by: "alice".into(),
                        reason: None,
                    };
                }
                (false, Some(since)) => {
                    paused_since = None;
                    self.state.last_pause = Some((since, now));
                    self.state.status = Status::Running {
                        step: Step::stage("early"),
                    };
                }
                _ => {}
            }
            let guarded = holds
                .iter()
                .any(|hold| matches!(hold, Hold::Guard(a, b) if *a <= now && now < *b));
            if guarded != guard_on {
                guard_on = guarded;
                let event = if guarded {
                    OutreachEvent::ChannelPaused(ChannelPaused {
                        campaign: CAMPAIGN.to_string(),
                        channel: "mail".to_string(),
                        sent: 0,
                        bounced: 0,
                        threshold: "5% of at least 200 sent".to_string(),
                        failure: None,
                    })
                } else {
                    OutreachEvent::ChannelResumed(ChannelResumed {
                        campaign: CAMPAIGN.to_string(),
                        channel: "mail".to_string(),
                    })
                };
                self.apply(&[event], now);
            }
            let down = holds
                .iter()
                .any(|hold| matches!(hold, Hold::Down(a, b) if *a <= now && now < *b));
            if !down {
                self.follow_ups(now);
                self.dispatch(now);
            }
            let boundaries = holds
                .iter()
                .flat_map(|hold| {
                    let (a, b) = hold.bounds();
                    [a, b]
                })
                .filter(|at| *at > now);
            // Down, nothing is looked at until it runs again.
            let due = super::decide::next_due(&self.plan, &self.state, &self.outreach, now)
                .map(|at| at.max(now + Duration::seconds(1)))
                .filter(|_| !down);
            let Some(next) = boundaries.chain(due).min() else {
                return;
            };
            if next > until {
                return;
            }
            now = next;
        }
        panic!("the dispatcher never settled");
    }

    /// Every day's sends against the cap, and the ledger against what went (everything
    /// decided by now): the same total, the free volume first, the rest paid.
    fn check_days(&self, cap: u32, free: u32) {
        for ((channel, day), sent) in &self.sent_days {
            assert!(
                *sent <= cap,
                "{sent} sent by {channel} on {day}, over the cap of {cap}: {:?}",
                self.sent_days
            );
        }
        assert_eq!(self.outreach.pending_count(), 0, "everything is decided");
        let mut ledger = std::collections::BTreeMap::new();
        for (channel, day, used) in self.outreach.ledger.days() {
            assert!(used.paid <= used.total);
            assert_eq!(
                used.paid,
                used.total.saturating_sub(free),
                "{channel} {day}: the first {free} a day are free, the rest paid"
            );
            ledger.insert((channel.to_string(), day), used.total);
        }
        let sent: std::collections::BTreeMap<(String, NaiveDate), u32> = self
            .sent_days
            .iter()
            .filter(|(_, sent)| **sent > 0)
            .map(|(key, sent)| (key.clone(), *sent))
            .collect();
        assert_eq!(
            ledger, sent,
            "the ledger holds what went, on the day it went"
        );
    }
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn sent_on(world: &World, date: &str) -> u32 {
    world
        .sent_days
        .get(&("mail".to_string(), day(date)))
        .copied()
        .unwrap_or(0)
}

/// 25 customers on mail with a cap of 10 a day, 4 of them free: 10 on 2026-09-02, 10 on
/// 09-03, 5 on 09-04, each day's first mails at 08:00 when the quiet hours end.
fn capped(customers: usize) -> World {
    let mut world = World::new(customers);
    world.mail_limits(10, 4, 2_000, true);
    world.plan.follow_ups.clear();
    for reach_out in &mut world.plan.reach_outs {
        reach_out.follow_up = None;
    }
    world.plan(at(STAGE_START));
    world
}

/// Held over the whole first day, resumed at noon of the second.
const HOLD_FROM: &str = "2026-09-02T07:00:00+08:00";
const HOLD_TO: &str = "2026-09-03T12:00:00+08:00";

fn held_then_resumed(hold: Hold) -> World {
    let mut world = capped(25);
    world.run(at(STAGE_START), at("2026-09-12T00:00:00+08:00"), &[hold]);
    world
}

#[test]
fn after_a_pause_and_resume_no_day_sends_more_than_its_cap() {
    let world = held_then_resumed(Hold::Pause(at(HOLD_FROM), at(HOLD_TO)));
    // The first day's ten went nowhere that day, the second day's ten went at noon, and the
    // first day's ten were moved on: five to the third day's room, five to the fourth.
    assert_eq!(sent_on(&world, "2026-09-02"), 0);
    assert_eq!(sent_on(&world, "2026-09-03"), 10);
    assert_eq!(sent_on(&world, "2026-09-04"), 10);
    assert_eq!(sent_on(&world, "2026-09-05"), 5);
    world.check_days(10, 4);
}

#[test]
fn after_a_bounce_guard_pause_and_channel_resume_no_day_sends_more_than_its_cap() {
    let world = held_then_resumed(Hold::Guard(at(HOLD_FROM), at(HOLD_TO)));
    assert_eq!(sent_on(&world, "2026-09-03"), 10);
    assert_eq!(sent_on(&world, "2026-09-04"), 10);
    assert_eq!(sent_on(&world, "2026-09-05"), 5);
    world.check_days(10, 4);
}

#[test]
fn after_downtime_the_catch_up_keeps_every_day_within_its_cap() {
    let world = held_then_resumed(Hold::Down(at(HOLD_FROM), at(HOLD_TO)));
    assert_eq!(sent_on(&world, "2026-09-03"), 10);
    assert_eq!(sent_on(&world, "2026-09-04"), 10);
    assert_eq!(sent_on(&world, "2026-09-05"), 5);
    world.check_days(10, 4);
}

#[test]
fn a_moved_send_records_the_days_it_left_and_took_and_what_held_it() {
    let mut world = capped(25);
    world.run(
        at(STAGE_START),
        at(HOLD_TO),
        &[Hold::Pause(at(HOLD_FROM), at(HOLD_TO))],
    );
    // At the resume the first day's ten are moved on: the second day is full (its own ten).
    let moved: Vec<&super::events::SendMoved> = world
        .log
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::SendMoved(moved) => Some(moved),
            _ => None,
        })
        .collect();
    assert_eq!(moved.len(), 10);
    assert!(moved.iter().all(|m| m.from_day == day("2026-09-02")));
    let days: Vec<NaiveDate> = moved.iter().map(|m| m.day).collect();
    assert_eq!(
        days.iter().filter(|d| **d == day("2026-09-04")).count(),
        5,
        "{days:?}"
    );
    assert_eq!(days.iter().filter(|d| **d == day("2026-09-05")).count(), 5);
    // On 2026-09-04 none is free (its own five took the four free and one paid before); on
    // 09-05, empty until then, the first four are.
    let paid = |date: &str| -> Vec<bool> {
        moved
            .iter()
            .filter(|m| m.day == day(date))
            .map(|m| m.paid)
            .collect()
    };
    assert_eq!(paid("2026-09-04"), vec![true; 5]);
    assert_eq!(paid("2026-09-05"), vec![false, false, false, false, true]);
    assert_eq!(
        moved[0].detail.as_deref(),
        Some("planned on the quota of 2026-09-02 for 2026-09-02 08:00 +08:00, held by the campaign's pause from 2026-09-02 07:00 +08:00 to 2026-09-03 12:00 +08:00; not earlier: 2026-09-03 was full (10 of 10, the daily cap; 10 of them planned earlier); planned for 2026-09-04")
    );
}

#[test]
fn a_held_send_no_later_day_of_its_window_can_take_is_given_up_with_its_reason() {
    // 95 customers at 10 a day fill the early stage's nine days (09-02 to 09-10) but five;
    // held over the first day, the first day's ten find room for five only.
    let mut world = capped(85);
    world.run(
        at(STAGE_START),
        at("2026-09-12T00:00:00+08:00"),
        &[Hold::Pause(at(HOLD_FROM), at(HOLD_TO))],
    );
    let reasons: Vec<NotSentReason> = world
        .outreach
        .sends_of(CAMPAIGN)
        .filter_map(|send| match send.status {
            SendStatus::NotSent(reason) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![NotSentReason::NoQuotaAfterHold; 5],
        "five of the first day's ten find no room"
    );
    world.check_days(10, 4);
}

#[test]
fn a_send_late_into_the_quiet_hours_waits_for_them_to_end() {
    // Down from before the first send until 23:00: mail's quiet hours (22:00 to 08:00) hold
    // the first day's sends to the next morning, on the next day's quota.
    let mut world = capped(5);
    world.run(
        at(STAGE_START),
        at("2026-09-04T00:00:00+08:00"),
        &[Hold::Down(at(HOLD_FROM), at("2026-09-02T23:00:00+08:00"))],
    );
    assert_eq!(sent_on(&world, "2026-09-02"), 0);
    assert_eq!(sent_on(&world, "2026-09-03"), 5);
    world.check_days(10, 4);
}

mod ledger_property {
    use proptest::prelude::*;

    use super::*;

    /// An interval of the early stage (2026-09-02 to 2026-09-11), in hours from its start.
    fn interval() -> impl Strategy<Value = (u32, u32)> {
        (0u32..216, 1u32..72).prop_map(|(start, length)| (start, start + length))
    }

    fn hold_of(kind: u8, (from, to): (u32, u32)) -> Hold {
        let base = at(STAGE_START);
        let from = base + Duration::hours(i64::from(from)) + Duration::minutes(7);
        let to = base + Duration::hours(i64::from(to)) + Duration::minutes(7);
        match kind % 3 {
            0 => Hold::Pause(from, to),
            1 => Hold::Guard(from, to),
            _ => Hold::Down(from, to),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// For random caps, free volumes, audiences, pauses, guard pauses and downtimes (with
        /// follow-ups on the same channel), no local day sends more than its cap, and every
        /// day's free and paid volume add up to what went that day.
        #[test]
        fn no_local_day_sends_more_than_its_cap(
            cap in 1u32..12,
            free in 0u32..14,
            customers in 0usize..40,
            quiet in any::<bool>(),
            holds in proptest::collection::vec((any::<u8>(), interval()), 0..4),
        ) {
            let mut world = World::new(customers);
            world.mail_limits(cap, free, 2_000, quiet);
            world.plan(at(STAGE_START));
            let holds: Vec<Hold> = holds
                .into_iter()
                .map(|(kind, bounds)| hold_of(kind, bounds))
                .collect();
            // Past the campaign's end (2026-10-07): every send and follow-up decided.
            world.run(at(STAGE_START), at("2026-10-09T00:00:00+08:00"), &holds);
            world.check_days(cap, free);
        }
    }
}

#[test]
fn a_send_whose_customer_was_reached_since_it_was_planned_waits_for_the_fatigue_to_end() {
    // Given the stage's mail planned for 08:00 on its first day,
    let mut world = World::new(1);
    world.plan(at(STAGE_START));
    // when another reach-out reaches the customer at 07:00 (7 days of fatigue, any channel),
    let other = MessageSent {
        key: format!("{CAMPAIGN}/smart-batch/c-000000/1"),
        campaign: CAMPAIGN.to_string(),
        channel: "in-site".to_string(),
        kind: ChannelKind::InSite,
        reach_out: Some("smart-batch".to_string()),
        to: "c-000000".to_string(),
        template: None,
        template_version: None,
        phase: None,
        stage: None,
        duplicate: false,
        unconfirmed: false,
    };
    world.book.reached(&other, at("2026-09-02T07:00:00+08:00"));
    // then at 08:00 it does not go, nor is it given up: it moves to the fatigue's end (07:00,
    // in mail's quiet hours, so 08:00),
    assert_eq!(world.dispatch(at(FIRST_SEND)), (0, vec![]));
    let key = format!("{CAMPAIGN}/{REACH_OUT}/c-000000/1");
    let send = world
        .outreach
        .send(&key)
        .unwrap_or_else(|| panic!("the send"));
    assert_eq!(send.planned.at, at("2026-09-09T08:00:00+08:00"));
    let moved = world.log.iter().find_map(|event| match event {
        OutreachEvent::SendMoved(moved) => Some(moved.clone()),
        _ => None,
    });
    let moved = moved.unwrap_or_else(|| panic!("no move"));
    assert_eq!(
        moved.detail.as_deref(),
        Some("planned on the quota of 2026-09-02 for 2026-09-02 08:00 +08:00, reached again since it was planned (last reached by in-site message at 2026-09-02 07:00 +08:00; the channel's fatigue is 7 d (a reach on any channel counts), so not before 2026-09-09 07:00 +08:00); moved to 2026-09-09 08:00 +08:00")
    );
    // and goes then, on that day's quota.
    assert_eq!(world.dispatch(at("2026-09-09T07:59:59+08:00")).0, 0);
    assert_eq!(world.dispatch(at("2026-09-09T08:00:00+08:00")).0, 1);
    assert_eq!(sent_on(&world, "2026-09-09"), 1);
    world.check_days(2000, 200);
}

#[test]
fn a_window_wholly_in_the_quiet_hours_is_reported_as_quiet_hours_not_quota() {
    // Given the stage's mail in a window from 00:00 to 01:00, all of it in mail's quiet hours
    // (22:00 to 08:00, hold),
    let mut world = World::new(3);
    world.plan.follow_ups.clear();
    for reach_out in &mut world.plan.reach_outs {
        if reach_out.id == REACH_OUT {
            reach_out.window.end = at("2026-09-02T01:00:00+08:00");
            reach_out.follow_up = None;
        }
    }
    // the preview holds every member past the window's end,
    let audience = crate::customer::preview::plan_audience(
        &world.plan,
        &world.book,
        &world.outreach.ledger,
        crate::customer::preview::Target::ReachOut(REACH_OUT),
        at(STAGE_START),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        audience
            .sends
            .unplaced
            .iter()
            .map(|(_, r)| *r)
            .collect::<Vec<_>>(),
        vec![crate::customer::quota::Unplaced::QuietUntilWindowEnd; 3]
    );
    // and the run records quiet hours for each, with the rule and the window's end, not quota.
    world.plan(at(STAGE_START));
    let not_sent: Vec<&super::events::NotSent> = world
        .log
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::NotSent(not_sent) => Some(not_sent),
            _ => None,
        })
        .collect();
    assert_eq!(not_sent.len(), 3);
    assert!(not_sent
        .iter()
        .all(|n| n.reason == NotSentReason::QuietHours));
    assert_eq!(
        not_sent[0].detail.as_deref(),
        Some("quiet hours 22:00–08:00 on mail with policy hold: held past the window's end at 2026-09-02 01:00 +08:00")
    );
}

#[test]
fn a_day_the_quiet_hours_take_says_so() {
    let world = World::new(0);
    let mut plan = world.plan.clone();
    for reach_out in &mut plan.reach_outs {
        if reach_out.id == REACH_OUT {
            reach_out.window.end = at("2026-09-02T01:00:00+08:00");
        }
    }
    let audience = crate::customer::preview::plan_audience(
        &plan,
        &world.book,
        &world.outreach.ledger,
        crate::customer::preview::Target::ReachOut(REACH_OUT),
        at(STAGE_START),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mail = plan.channel("mail").unwrap_or_else(|| panic!("mail"));
    assert_eq!(
        crate::explain::quota_days(mail, &world.outreach.ledger, &audience.sends.days),
        vec!["2026-09-02 had no sending time outside the quiet hours (22:00–08:00)".to_string()]
    );
}

/// The dispatcher makes a big reach-out's events a chunk at a time: however the items are cut,
/// the events are those of one planning, in the same order (excluded, placed and unplaced
/// members, and a window missed altogether).
#[test]
fn a_planning_cut_into_chunks_gives_the_events_of_one_planning() {
    let mut world = World::new(9_000);
    // Some members excluded: no address, unsubscribed.
    for index in (0..9_000).step_by(97) {
        world.book.apply(
            &CustomerEvent::CustomerRecorded(CustomerRecorded {
                customer: format!("c-{index:06}"),
                line: 2,
                email: Some(String::new()),
                unsubscribed_all: index % 2 == 0,
                ..CustomerRecorded::default()
            }),
            at("2026-08-31T10:00:00+08:00"),
        );
    }
    for now in [
        at("2026-09-02T00:00:00+08:00"),
        at("2026-10-30T00:00:00+08:00"),
    ] {
        let whole = plan_reach_out(
            &world.plan,
            &world.state,
            &world.book,
            &world.outreach,
            REACH_OUT,
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let planning = super::decide::prepare_reach_out(
            &world.plan,
            &world.state,
            &world.book,
            &world.outreach,
            REACH_OUT,
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let reasons: std::collections::BTreeSet<&str> = whole
            .iter()
            .filter_map(|event| match event {
                OutreachEvent::NotSent(not_sent) => Some(not_sent.reason.key()),
                _ => None,
            })
            .collect();
        assert!(reasons.len() >= 2, "a varied audience: {reasons:?}");
        for chunk in [1, 7, 200, 4_999, 100_000] {
            let mut cut = Vec::new();
            let mut start = 0;
            while start < planning.len() {
                let end = (start + chunk).min(planning.len());
                cut.extend(planning.events(&world.plan, &world.book, start..end));
                start = end;
            }
            assert_eq!(cut, whole, "cut every {chunk} at {now}");
        }
    }
}

/// Once a reach-out is planned, the projection fed with the book keeps whom its planning
/// decided not to send as book slots rather than keys: a preview of the reach-out still leaves
/// out everyone decided, exactly as the keys did, and takes in a customer imported since.
#[test]
fn a_closed_planning_still_knows_whom_it_decided() {
    use crate::customer::preview::plan_audience_except;
    use crate::feed::{Decoded, Place};
    let mut world = World::new(5_000);
    for index in (0..5_000).step_by(13) {
        world.book.apply(
            &CustomerEvent::CustomerRecorded(CustomerRecorded {
                customer: format!("c-{index:06}"),
                line: 2,
                email: Some(String::new()),
                ..CustomerRecorded::default()
            }),
            at("2026-08-31T10:00:00+08:00"),
        );
    }
    let now = at("2026-09-02T00:00:00+08:00");
    let events = plan_reach_out(
        &world.plan,
        &world.state,
        &world.book,
        &world.outreach,
        REACH_OUT,
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(events
        .iter()
        .any(|event| matches!(event, OutreachEvent::NotSent(_))));
    // One outbox fed alone (keeps every key), one fed with the book (keeps slots).
    let mut keys = Outreach::default();
    let mut slots = Outreach::default();
    let stream = crate::event::StreamId::new(format!("outreach-{CAMPAIGN}"))
        .unwrap_or_else(|e| panic!("{e}"));
    for (index, event) in events.iter().enumerate() {
        let place = Place {
            position: crate::event::Position(index as u64 + 1),
            recorded_at: now,
            stream: &stream,
        };
        let decoded = Decoded::Outreach(event.clone());
        keys.apply_decoded(place, &decoded);
        slots.apply_fed(place, &decoded, &world.book);
    }
    let not_planned_left = |outreach: &Outreach| {
        events
            .iter()
            .filter_map(|event| match event {
                OutreachEvent::NotSent(not_sent) => outreach.not_planned(&not_sent.key),
                _ => None,
            })
            .count()
    };
    assert!(not_planned_left(&keys) > 0);
    assert_eq!(not_planned_left(&slots), 0, "the keys left memory");
    let preview = |outreach: &Outreach, book: &CustomerBook| {
        plan_audience_except(
            &world.plan,
            book,
            &outreach.ledger,
            crate::customer::preview::Target::ReachOut(REACH_OUT),
            now,
            |slot, customer, kind, fatigue_ms| {
                outreach.prior(
                    CAMPAIGN,
                    REACH_OUT,
                    (slot, customer),
                    kind,
                    true,
                    now,
                    fatigue_ms,
                )
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let (by_keys, by_slots) = (preview(&keys, &world.book), preview(&slots, &world.book));
    assert_eq!(by_keys.segment_size, 0, "everyone was decided");
    assert_eq!(by_slots.segment_size, by_keys.segment_size);
    // A customer imported since is not decided.
    world.book.apply(
        &CustomerEvent::CustomerRecorded(CustomerRecorded {
            customer: "c-new".to_string(),
            line: 2,
            email: Some("new@example.com".to_string()),
            signals: vec![Signal {
                activity: Activity::Active,
                at: at("2026-08-30T10:00:00+08:00"),
                amount: None,
            }],
            ..CustomerRecorded::default()
        }),
        at("2026-09-01T10:00:00+08:00"),
    );
    let (by_keys, by_slots) = (preview(&keys, &world.book), preview(&slots, &world.book));
    assert_eq!(by_keys.segment_size, 1);
    assert_eq!(by_slots.segment_size, 1);
    assert_eq!(by_slots.excluded, by_keys.excluded);
}

proptest::proptest! {
    /// A send's key is its four parts joined by `/`, the attempt in decimal, whatever they hold.
    #[test]
    fn a_send_key_is_its_parts_joined(
        campaign in "[a-z0-9-]{0,20}",
        reach_out in "\\PC{0,12}",
        customer in "\\PC{0,16}",
        attempt in proptest::prelude::any::<u32>(),
    ) {
        proptest::prop_assert_eq!(
            super::events::send_key(&campaign, &reach_out, &customer, attempt),
            format!("{campaign}/{reach_out}/{customer}/{attempt}")
        );
    }
}
