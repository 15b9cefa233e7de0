//! Given / when / then for the state machine: every command in every state against the table,
//! the words of the refusals, revisions, daylight-saving changes, and a property test of random
//! command sequences.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::events::Trigger;
use super::transitions::{allowed, TABLE};
use super::*;
use crate::plan::model::PhaseKind;
use crate::plan::EXAMPLE_PLAN;

const NEW_YORK_FALL: &str = r#"
format = 1

[campaign]
id = "ny-fall"
name = "New York fall sale"
time_zone = "America/New_York"
currency = "USD"

[phases.prep]
start = 2026-10-26
end = 2026-10-31

[phases.warm_up]
start = 2026-11-01
end = 2026-11-05

[phases.burst]
start = 2026-11-06
end = 2026-11-10

[stages.only]
name = "Only"
theme = "The sale has started"
start = 2026-11-06
end = 2026-11-10
"#;

const NEW_YORK_SPRING: &str = r#"
format = 1

[campaign]
id = "ny-spring"
name = "New York spring sale"
time_zone = "America/New_York"
currency = "USD"
on_resume = "shift_windows"

[phases.prep]
start = 2026-03-02
end = 2026-03-07

[phases.warm_up]
start = 2026-03-08
end = 2026-03-08

[phases.burst]
start = "2026-03-09 00:00"
end = "2026-03-09 12:00"

[stages.first]
name = "First"
theme = "The sale has started"
start = "2026-03-09 00:00"
end = "2026-03-09 02:30"

[stages.second]
name = "Second"
theme = "Buy before the sale ends"
start = "2026-03-09 02:30"
end = "2026-03-09 12:00"

[phases.review]
start = "2026-03-09 12:00"
end = "2026-03-10 00:00"
"#;

fn version(source: &str) -> PlanVersion {
    let checked = crate::plan::check(source.as_bytes());
    let plan = checked
        .plan
        .unwrap_or_else(|| panic!("test plan invalid: {:?}", checked.diagnostics));
    PlanVersion::of(&plan, source)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn context(now: DateTime<Utc>) -> Context {
    Context {
        now,
        actor: "alice".into(),
        reason: Some("stock problem".into()),
    }
}

/// decide, then evolve: the state after the command, with the events it produced.
fn when(
    state: &CampaignState,
    command: &Command,
    context: &Context,
) -> Result<(CampaignState, Vec<CampaignEvent>), Rejection> {
    let events = decide(state, command, context)?;
    let meta = EventMeta {
        at: context.now,
        actor: context.actor.clone(),
        reason: context.reason.clone(),
    };
    let next = events
        .iter()
        .fold(state.clone(), |state, event| evolve(state, event, &meta));
    Ok((next, events))
}

fn applied(source: &str, now: DateTime<Utc>) -> CampaignState {
    let version = version(source);
    let state = CampaignState::draft(&version.campaign);
    when(
        &state,
        &Command::ApplyPlan(Box::new(version)),
        &context(now),
    )
    .unwrap()
    .0
}

/// Runs the scheduler's steps until (and including) the one due at or before `until`.
fn scheduled_until(mut state: CampaignState, until: DateTime<Utc>) -> CampaignState {
    while let Some(due) = next_due(&state) {
        if due.at > until {
            break;
        }
        state = when(&state, &due.command, &context(due.at)).unwrap().0;
    }
    state
}

/// A renamed copy of a plan: a revision that changes nothing in time.
fn renamed(source: &str) -> String {
    let (name_line, _) = source
        .lines()
        .map(|line| (line, ()))
        .find(|(line, _)| line.starts_with("name = "))
        .unwrap();
    source.replacen(name_line, "name = \"Renamed\"", 1)
}

/// Every state a campaign of `source` passes through, with an instant to act at in each: the
/// next boundary when there is one.
fn states_of(source: &str) -> Vec<(CampaignState, DateTime<Utc>)> {
    let version = version(source);
    let start = version.timeline.steps[0].start - Duration::days(3);
    let mut states = vec![(CampaignState::draft(&version.campaign), start)];
    let mut state = applied(source, start);
    let mut now = start;
    loop {
        let due = next_due(&state);
        let act_at = due.as_ref().map_or(now + Duration::hours(1), |d| d.at);
        states.push((state.clone(), act_at));
        let paused_at = now + Duration::minutes(30);
        let (paused, _) = when(&state, &Command::Pause, &context(paused_at)).unwrap();
        states.push((paused, act_at.max(paused_at + Duration::minutes(1))));
        let (cancelled, _) = when(&state, &Command::Cancel, &context(paused_at)).unwrap();
        states.push((cancelled, paused_at + Duration::hours(1)));
        let Some(due) = due else { break };
        now = due.at;
        state = when(&state, &due.command, &context(due.at)).unwrap().0;
        if state.is_terminal() {
            states.push((state.clone(), now + Duration::hours(1)));
            break;
        }
    }
    states
}

fn commands_for(
    state: &CampaignState,
    source: &str,
    now: DateTime<Utc>,
) -> Vec<(CommandKind, Command)> {
    let enter = match next_due(state) {
        Some(Due {
            command: command @ Command::Enter { .. },
            ..
        }) => command,
        _ => Command::Enter {
            step: Step::phase(PhaseKind::Prep),
            due: now,
        },
    };
    let scheduled_complete = match next_due(state) {
        Some(Due {
            command: command @ Command::Complete { .. },
            ..
        }) => command,
        _ => Command::Complete { due: None },
    };
    vec![
        (
            CommandKind::ApplyPlan,
            Command::ApplyPlan(Box::new(version(&renamed(source)))),
        ),
        (CommandKind::Enter, enter),
        (CommandKind::Pause, Command::Pause),
        (CommandKind::Resume, Command::Resume),
        (CommandKind::Advance, Command::Advance),
        (CommandKind::Cancel, Command::Cancel),
        (CommandKind::Complete, Command::Complete { due: None }),
        (CommandKind::Complete, scheduled_complete),
    ]
}

#[test]
fn every_command_in_every_state_follows_the_table() {
    let mut seen = BTreeSet::new();
    let mut kinds_seen = BTreeSet::new();
    for source in [EXAMPLE_PLAN, NEW_YORK_FALL, NEW_YORK_SPRING] {
        for (state, now) in states_of(source) {
            kinds_seen.insert(state.kind());
            for (kind, command) in commands_for(&state, source, now) {
                let result = when(&state, &command, &context(now));
                match (allowed(state.kind(), kind), result) {
                    (None, Ok((after, _))) => panic!(
                        "{kind:?} in {:?} was accepted (to {:?}) but the table refuses it",
                        state.kind(),
                        after.kind()
                    ),
                    (None, Err(rejection)) => {
                        assert!(rejection.0.starts_with("cannot"), "{rejection}")
                    }
                    (Some(targets), Ok((after, events))) => {
                        assert!(
                            targets.contains(&after.kind()),
                            "{kind:?} took {:?} to {:?}, not in {targets:?}",
                            state.kind(),
                            after.kind()
                        );
                        // Replaying the events from scratch gives the same state.
                        assert!(!events.is_empty() || after == state);
                        seen.insert((state.kind(), kind, after.kind()));
                    }
                    (Some(_), Err(rejection)) => {
                        assert!(rejection.0.starts_with("cannot"), "{rejection}")
                    }
                }
            }
        }
    }
    assert_eq!(kinds_seen.len(), StateKind::ALL.len(), "{kinds_seen:?}");
    for (from, command, targets) in TABLE {
        for to in *targets {
            assert!(
                seen.contains(&(*from, *command, *to)),
                "no test reaches {from:?} --{command:?}--> {to:?}"
            );
        }
    }
}

#[test]
fn the_documented_table_is_the_table() {
    let docs = include_str!("../../../docs/campaign-lifecycle.md");
    assert!(
        docs.contains(&transitions::markdown()),
        "docs/campaign-lifecycle.md must contain the table exactly as written in transitions.rs:\n{}",
        transitions::markdown()
    );
}

#[test]
fn a_paused_campaign_explains_why_it_cannot_advance() {
    let state = scheduled_until(
        applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z")),
        at("2026-09-03T02:00:00Z"),
    );
    assert_eq!(
        state.status,
        Status::Running {
            step: Step::stage("early")
        }
    );
    let (paused, _) = when(
        &state,
        &Command::Pause,
        &context(at("2026-09-03T02:00:00Z")),
    )
    .unwrap();
    let refusal = decide(
        &paused,
        &Command::Advance,
        &context(at("2026-09-04T00:00:00Z")),
    )
    .unwrap_err();
    assert_eq!(
        refusal.0,
        "cannot advance: the campaign has been paused since 2026-09-03 10:00 +08:00 by alice: 'stock problem'; resume it first"
    );
    assert_eq!(next_due(&paused), None, "a paused campaign has nothing due");
    let refusal = decide(
        &paused,
        &Command::Enter {
            step: Step::stage("middle"),
            due: at("2026-09-10T16:00:00Z"),
        },
        &context(at("2026-09-11T00:00:00Z")),
    )
    .unwrap_err();
    assert!(refusal
        .0
        .starts_with("cannot enter: the campaign has been paused"));
}

#[test]
fn refusals_name_the_situation() {
    let draft = CampaignState::draft("x");
    assert_eq!(
        decide(
            &draft,
            &Command::Pause,
            &context(at("2026-01-01T00:00:00Z"))
        )
        .unwrap_err()
        .0,
        "cannot pause: campaign x has no plan yet; apply one with `battleplan plan apply PLAN`"
    );
    let scheduled = applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z"));
    let early = decide(
        &scheduled,
        &next_due(&scheduled).unwrap().command,
        &context(at("2026-08-18T15:59:59Z")),
    )
    .unwrap_err();
    assert_eq!(
        early.0,
        "cannot enter prep yet: it starts at 2026-08-19 00:00 +08:00"
    );
    let resume = decide(
        &scheduled,
        &Command::Resume,
        &context(at("2026-08-02T00:00:00Z")),
    );
    assert_eq!(
        resume.unwrap_err().0,
        "cannot resume: the campaign is not paused (it is scheduled)"
    );
    let (cancelled, _) = when(
        &scheduled,
        &Command::Cancel,
        &context(at("2026-08-02T00:00:00Z")),
    )
    .unwrap();
    assert_eq!(
        decide(&cancelled, &Command::Resume, &context(at("2026-08-03T00:00:00Z")))
            .unwrap_err()
            .0,
        "cannot resume: the campaign was cancelled at 2026-08-02 08:00 +08:00 by alice: 'stock problem'"
    );
}

#[test]
fn entering_a_boundary_twice_is_refused() {
    let scheduled = applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z"));
    let due = next_due(&scheduled).unwrap();
    let (prep, _) = when(&scheduled, &due.command, &context(due.at)).unwrap();
    let again = decide(&prep, &due.command, &context(due.at + Duration::minutes(1)));
    assert_eq!(
        again.unwrap_err().0,
        "cannot enter prep: the next step is warm-up"
    );
}

#[test]
fn catching_up_records_lateness_in_order() {
    let scheduled = applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z"));
    // Down from before prep until Sep 3rd: prep, warm-up and the early stage are overdue.
    let now = at("2026-09-03T00:00:00Z");
    let mut state = scheduled;
    let mut entered = Vec::new();
    while let Some(due) = next_due(&state).filter(|due| due.at <= now) {
        let (next, events) = when(&state, &due.command, &context(now)).unwrap();
        let Some(CampaignEvent::PhaseEntered(e)) = events.first() else {
            panic!("{events:?}")
        };
        entered.push((e.step.to_string(), e.late_by_ms / 3_600_000, e.trigger));
        state = next;
    }
    assert_eq!(
        entered,
        vec![
            ("prep".to_string(), 15 * 24 + 8, Trigger::Schedule),
            ("warm-up".to_string(), 8 * 24 + 8, Trigger::Schedule),
            ("burst (early stage)".to_string(), 32, Trigger::Schedule),
        ]
    );
}

#[test]
fn resuming_follows_the_clock_or_shifts_the_windows() {
    // follow_clock: boundaries passed during the pause are entered at resume, marked so.
    let state = scheduled_until(
        applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z")),
        at("2026-08-20T00:00:00Z"),
    );
    let (paused, _) = when(
        &state,
        &Command::Pause,
        &context(at("2026-08-20T00:00:00Z")),
    )
    .unwrap();
    let resume_at = at("2026-08-27T00:00:00Z");
    let (resumed, _) = when(&paused, &Command::Resume, &context(resume_at)).unwrap();
    assert_eq!(
        resumed.status,
        Status::Running {
            step: Step::phase(PhaseKind::Prep)
        }
    );
    let due = next_due(&resumed).unwrap();
    assert_eq!(due.at, at("2026-08-25T16:00:00Z"), "warm-up as planned");
    let (_, events) = when(&resumed, &due.command, &context(resume_at)).unwrap();
    let Some(CampaignEvent::PhaseEntered(entered)) = events.first() else {
        panic!()
    };
    assert_eq!(entered.trigger, Trigger::Resume);
    assert_eq!(entered.late_by_ms, 32 * 3_600_000);

    // shift_windows: every boundary after the pause began moves by its length.
    let spring = scheduled_until(
        applied(NEW_YORK_SPRING, at("2026-03-01T00:00:00Z")),
        at("2026-03-02T06:00:00Z"),
    );
    assert_eq!(
        spring.status,
        Status::Running {
            step: Step::phase(PhaseKind::Prep)
        }
    );
    let (paused, _) = when(
        &spring,
        &Command::Pause,
        &context(at("2026-03-03T00:00:00Z")),
    )
    .unwrap();
    let (resumed, events) = when(
        &paused,
        &Command::Resume,
        &context(at("2026-03-05T00:00:00Z")),
    )
    .unwrap();
    assert!(matches!(&events[0], CampaignEvent::CampaignResumed(r) if r.shift.is_some()));
    let due = next_due(&resumed).unwrap();
    // Warm-up was due 2026-03-08 00:00 -05:00 (05:00Z); two days later.
    assert_eq!(due.at, at("2026-03-10T05:00:00Z"));
}

#[test]
fn new_york_crosses_both_daylight_saving_changes() {
    // Spring forward on 2026-03-08 at 02:00: midnight before it is -05:00, after it -04:00.
    let spring = applied(NEW_YORK_SPRING, at("2026-03-01T00:00:00Z"));
    let mut state = spring;
    let mut boundaries = Vec::new();
    while let Some(due) = next_due(&state) {
        boundaries.push(due.at);
        state = when(&state, &due.command, &context(due.at)).unwrap().0;
    }
    assert_eq!(
        boundaries,
        vec![
            at("2026-03-02T05:00:00Z"), // prep, local midnight EST
            at("2026-03-08T05:00:00Z"), // warm-up, midnight before the change, EST
            at("2026-03-09T04:00:00Z"), // burst, first stage: midnight EDT
            at("2026-03-09T06:30:00Z"), // second stage 02:30 EDT
            at("2026-03-09T16:00:00Z"), // review 12:00 EDT
            at("2026-03-10T04:00:00Z"), // completed at midnight EDT
        ]
    );
    assert_eq!(state.status, Status::Completed);

    // Fall back on 2026-11-01 at 02:00: warm-up starts at midnight EDT, burst at midnight EST.
    let mut state = applied(NEW_YORK_FALL, at("2026-10-01T00:00:00Z"));
    let mut boundaries = Vec::new();
    while let Some(due) = next_due(&state) {
        boundaries.push(due.at);
        state = when(&state, &due.command, &context(due.at)).unwrap().0;
    }
    assert_eq!(
        boundaries,
        vec![
            at("2026-10-26T04:00:00Z"),
            at("2026-11-01T04:00:00Z"),
            at("2026-11-06T05:00:00Z"),
            at("2026-11-11T05:00:00Z"),
        ]
    );
}

#[test]
fn shanghai_boundaries_are_local_midnights() {
    let mut state = applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z"));
    let mut boundaries = Vec::new();
    while let Some(due) = next_due(&state) {
        boundaries.push((state.timeline().unwrap().local(due.at), due.at));
        state = when(&state, &due.command, &context(due.at)).unwrap().0;
    }
    let local: Vec<&str> = boundaries.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        local,
        vec![
            "2026-08-19 00:00 +08:00",
            "2026-08-26 00:00 +08:00",
            "2026-09-02 00:00 +08:00",
            "2026-09-11 00:00 +08:00",
            "2026-09-21 00:00 +08:00",
            "2026-10-01 00:00 +08:00",
            "2026-10-08 00:00 +08:00",
        ]
    );
    assert_eq!(boundaries[0].1, at("2026-08-18T16:00:00Z"));
}

#[test]
fn revisions_move_future_boundaries_and_refuse_past_ones() {
    let state = scheduled_until(
        applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z")),
        at("2026-09-03T00:00:00Z"),
    );
    let now = context(at("2026-09-03T00:00:00Z"));
    // Move the late stage (future) by a day: accepted, with the change in words.
    let later = EXAMPLE_PLAN
        .replacen("end = 2026-09-20", "end = 2026-09-21", 1)
        .replacen("start = 2026-09-21", "start = 2026-09-22", 1);
    let (revised, events) =
        when(&state, &Command::ApplyPlan(Box::new(version(&later))), &now).unwrap();
    let CampaignEvent::PlanRevised(revision) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(revision.version, 2);
    assert!(
        revision.changes.contains(
            &"burst (late stage) starts 2026-09-22 00:00 +08:00 instead of 2026-09-21 00:00 +08:00"
                .to_string()
        ),
        "{:?}",
        revision.changes
    );
    assert_eq!(revised.plan_version, 2);
    assert_eq!(next_due(&revised).unwrap().at, at("2026-09-10T16:00:00Z"));

    // Move warm-up's start, which has passed: refused.
    let moved_past = EXAMPLE_PLAN.replacen(
        "start = 2026-08-19\nend = 2026-08-25\n",
        "start = 2026-08-19\nend = 2026-08-26\n",
        1,
    );
    let moved_past = moved_past.replacen("start = 2026-08-26", "start = 2026-08-27", 1);
    assert_ne!(moved_past, EXAMPLE_PLAN);
    let refusal = decide(
        &state,
        &Command::ApplyPlan(Box::new(version(&moved_past))),
        &now,
    )
    .unwrap_err();
    assert!(
        refusal
            .0
            .contains("warm-up starts at 2026-08-26 00:00 +08:00, which has passed"),
        "{refusal}"
    );

    // A new time zone for a running campaign: refused.
    let zone = EXAMPLE_PLAN.replacen("Asia/Shanghai", "Asia/Tokyo", 1);
    let refusal = decide(&state, &Command::ApplyPlan(Box::new(version(&zone))), &now).unwrap_err();
    assert!(
        refusal.0.contains("the time zone cannot change"),
        "{refusal}"
    );

    // The same plan again: nothing to record.
    assert_eq!(
        decide(
            &state,
            &Command::ApplyPlan(Box::new(version(EXAMPLE_PLAN))),
            &now
        ),
        Ok(vec![])
    );
}

#[test]
fn a_revision_cannot_remove_the_current_stage() {
    let state = scheduled_until(
        applied(NEW_YORK_SPRING, at("2026-03-01T00:00:00Z")),
        at("2026-03-09T07:00:00Z"),
    );
    assert_eq!(
        state.status,
        Status::Running {
            step: Step::stage("second")
        }
    );
    let without_second = NEW_YORK_SPRING
        .replace(
            "[stages.second]\nname = \"Second\"\ntheme = \"Buy before the sale ends\"\nstart = \"2026-03-09 02:30\"\nend = \"2026-03-09 12:00\"\n",
            "",
        )
        .replace("end = \"2026-03-09 02:30\"", "end = \"2026-03-09 12:00\"");
    assert!(!without_second.contains("stages.second"));
    let refusal = decide(
        &state,
        &Command::ApplyPlan(Box::new(version(&without_second))),
        &context(at("2026-03-09T08:00:00Z")),
    )
    .unwrap_err();
    assert!(
        refusal
            .0
            .contains("the revision removes burst (second stage), which the campaign is in"),
        "{refusal}"
    );
}

#[test]
fn advancing_skips_ahead_and_records_it() {
    let state = applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z"));
    let (prep, events) = when(
        &state,
        &Command::Advance,
        &context(at("2026-08-02T00:00:00Z")),
    )
    .unwrap();
    assert_eq!(
        prep.status,
        Status::Running {
            step: Step::phase(PhaseKind::Prep)
        }
    );
    let CampaignEvent::PhaseEntered(entered) = &events[0] else {
        panic!()
    };
    assert_eq!(entered.trigger, Trigger::Advance);
    assert!(entered.late_by_ms < 0, "ahead of plan");
    // The scheduler then waits for warm-up's own boundary, not prep's.
    assert_eq!(next_due(&prep).unwrap().at, at("2026-08-25T16:00:00Z"));
}

#[derive(Debug, Clone)]
enum Step_ {
    Apply(usize),
    Scheduled,
    Enter(u8),
    Pause,
    Resume,
    Advance,
    Cancel,
    Complete,
}

fn any_step() -> impl Strategy<Value = (Step_, u32)> {
    let step = prop_oneof![
        (0usize..3).prop_map(Step_::Apply),
        Just(Step_::Scheduled),
        Just(Step_::Scheduled),
        any::<u8>().prop_map(Step_::Enter),
        Just(Step_::Pause),
        Just(Step_::Resume),
        Just(Step_::Advance),
        Just(Step_::Cancel),
        Just(Step_::Complete),
    ];
    (step, 0u32..(10 * 24 * 60))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_commands_stay_in_the_table_and_replay_to_the_same_state(
        steps in proptest::collection::vec(any_step(), 1..40)
    ) {
        let sources = [
            EXAMPLE_PLAN.to_string(),
            renamed(EXAMPLE_PLAN),
            EXAMPLE_PLAN
                .replacen("end = 2026-09-20", "end = 2026-09-21", 1)
                .replacen("start = 2026-09-21", "start = 2026-09-22", 1),
        ];
        let versions: Vec<PlanVersion> = sources.iter().map(|s| version(s)).collect();
        let steps_all: Vec<Step> = versions[0].timeline.steps.iter().map(|w| w.step.clone()).collect();
        let mut state = CampaignState::draft("sept-festival-2026");
        let mut now = at("2026-08-10T00:00:00Z");
        let mut log: Vec<(CampaignEvent, EventMeta)> = Vec::new();
        for (step, minutes) in steps {
            now += Duration::minutes(i64::from(minutes));
            let command = match step {
                Step_::Apply(i) => Command::ApplyPlan(Box::new(versions[i].clone())),
                Step_::Scheduled => match next_due(&state) {
                    Some(due) if due.at <= now => due.command,
                    _ => continue,
                },
                Step_::Enter(i) => Command::Enter {
                    step: steps_all[usize::from(i) % steps_all.len()].clone(),
                    due: now - Duration::minutes(i64::from(i)),
                },
                Step_::Pause => Command::Pause,
                Step_::Resume => Command::Resume,
                Step_::Advance => Command::Advance,
                Step_::Cancel => Command::Cancel,
                Step_::Complete => Command::Complete { due: None },
            };
            let ctx = context(now);
            match decide(&state, &command, &ctx) {
                Ok(events) => {
                    let meta = EventMeta { at: now, actor: ctx.actor.clone(), reason: ctx.reason.clone() };
                    let before = state.kind();
                    for event in &events {
                        state = evolve(state, event, &meta);
                        log.push((event.clone(), meta.clone()));
                    }
                    let targets = allowed(before, command.kind());
                    prop_assert!(targets.is_some(), "{before:?} accepted {command:?}");
                    prop_assert!(
                        events.is_empty() || targets.unwrap_or_default().contains(&state.kind()),
                        "{before:?} --{:?}--> {:?}", command.kind(), state.kind()
                    );
                }
                Err(rejection) => prop_assert!(!rejection.0.is_empty()),
            }
            // Replaying the log from scratch gives the same state.
            let replayed = log.iter().fold(CampaignState::draft("sept-festival-2026"), |s, (e, m)| evolve(s, e, m));
            prop_assert_eq!(&replayed, &state);
        }
    }
}

#[test]
fn advancing_out_of_a_step_before_its_end_records_what_was_skipped() {
    // Given the campaign in prep (planned 2026-08-19 to the end of 2026-08-25, Shanghai),
    let state = applied(EXAMPLE_PLAN, at("2026-08-01T00:00:00Z"));
    let prep = scheduled_until(state, at("2026-08-20T00:00:00Z"));
    assert!(prep.skipped.is_empty());
    // when alice advances to the warm-up on 2026-08-24 at noon,
    let (warm_up, events) = when(
        &prep,
        &Command::Advance,
        &context(at("2026-08-24T04:00:00Z")),
    )
    .unwrap();
    assert!(
        events[0]
            .summary(warm_up.zone())
            .ends_with("; the rest of prep is skipped, its reach-outs and task reminders with it"),
        "{}",
        events[0].summary(warm_up.zone())
    );
    // then the rest of prep is recorded as skipped, by her, from then to its planned end,
    assert_eq!(warm_up.skipped.len(), 1);
    let skipped = &warm_up.skipped[0];
    assert_eq!(skipped.step, Step::phase(PhaseKind::Prep));
    assert_eq!(skipped.at, at("2026-08-24T04:00:00Z"));
    assert_eq!(skipped.end, at("2026-08-25T16:00:00Z"));
    assert_eq!(skipped.by, "alice");
    // and a window inside prep that had not ended is covered; one that ended before is not.
    assert!(warm_up
        .skipped_window(at("2026-08-18T16:00:00Z"), at("2026-08-25T16:00:00Z"))
        .is_some());
    assert!(warm_up
        .skipped_window(at("2026-08-18T16:00:00Z"), at("2026-08-20T16:00:00Z"))
        .is_none());
    // The scheduler's own entries skip nothing.
    let later = scheduled_until(warm_up, at("2026-09-03T00:00:00Z"));
    assert_eq!(later.skipped.len(), 1);
}
