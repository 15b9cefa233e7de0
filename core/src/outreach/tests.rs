//! Given / when / then for the outbox's decisions, on the September example plan: follow-ups
//! that stop on a reply, an order or an unsubscribe, the attempt limit, fatigue between
//! attempts; the bounce guard pausing a channel and a person resuming it; a campaign pause
//! holding sends, which go after resume inside their window and are given up with a reason
//! after it.

use chrono::{DateTime, Duration, Utc};

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
        }
    }

    fn apply(&mut self, events: &[OutreachEvent], now: DateTime<Utc>) {
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
    fn dispatch(&mut self, now: DateTime<Utc>) -> (usize, Vec<NotSentReason>) {
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
        self.apply(&decided.not_sent, now);
        let sent = decided.messages.len();
        for message in decided.messages {
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
            };
            self.book.reached(&sent, now);
            self.outreach.apply(&OutreachEvent::MessageSent(sent), now);
        }
        (sent, reasons)
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
