//! Given / when / then for tasks: occurrences across a daylight-saving change, reminders at each
//! lead time and at the due instant, escalation, catch-up after downtime, the next reminder
//! instant, marking done, and the board for the September example.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::campaign::EventMeta;
use crate::event::{CommandId, EventId, Metadata, Position, RecordedEvent, StreamVersion};
use crate::plan::{Plan, EXAMPLE_PLAN};

/// New York: clocks go forward on 2026-03-08 at 02:00 (EST -05:00 to EDT -04:00).
const NEW_YORK: &str = r#"
format = 1

[campaign]
id = "ny-spring"
name = "New York spring sale"
time_zone = "America/New_York"
currency = "USD"

[phases.prep]
start = 2026-03-02
end = 2026-03-05

[phases.warm_up]
start = 2026-03-06
end = 2026-03-07

[phases.burst]
start = 2026-03-08
end = 2026-03-10

[stages.only]
name = "Only"
theme = "The sale has started"
start = 2026-03-08
end = 2026-03-10

[roles.ops]
name = "Operations"
members = ["li.na"]

[roles.sales]
name = "Sales"
members = ["wang.wei", "zhang.min"]

[roles.boss]
name = "Boss"
members = ["chen.jie"]

[workstreams.data]
name = "Data"
roles = ["ops", "sales", "boss"]

[tasks.report]
workstream = "data"
role = "ops"
phase = "prep"
title = "Write the report"
due = 2026-03-04T18:00:00
remind = ["2h", "1d"]
escalate_after = "6h"

[tasks.night-check]
workstream = "data"
role = "sales"
phase = "burst"
title = "Check the night orders"
repeat = "daily"
at = "02:30"

[tasks.morning-call]
workstream = "data"
role = "sales"
phase = "burst"
title = "Morning call"
repeat = "daily"
at = "09:00"
from = 2026-03-06
until = 2026-03-09
outside_phase = true
remind = ["1h"]

[tasks.sunday-review]
workstream = "data"
role = "boss"
phase = "warm_up"
title = "Sunday review"
repeat = "weekly"
on = ["sun"]
at = "12:00"
from = 2026-03-01
until = 2026-03-15
outside_phase = true
"#;

fn plan_of(source: &str) -> Plan {
    let checked = crate::plan::check(source.as_bytes());
    checked
        .plan
        .unwrap_or_else(|| panic!("test plan invalid: {:?}", checked.diagnostics))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn meta(actor: &str, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        at: now,
        actor: actor.to_string(),
        reason: None,
    }
}

/// The reminders due at `now`, applied to the board as the scheduler would record them.
fn step(plan: &Plan, board: &mut TaskBoard, now: DateTime<Utc>) -> Vec<ReminderPlanned> {
    let decided = due_reminders(plan, board, &[], now);
    for reminder in &decided {
        board.apply(
            &TaskEvent::ReminderPlanned(reminder.clone()),
            &meta("system:scheduler", now),
        );
    }
    decided
}

fn done(plan: &Plan, board: &mut TaskBoard, id: &str, by: &str, now: DateTime<Utc>) {
    let event = decide_done(plan, board, id, None).unwrap_or_else(|e| panic!("{e}"));
    board.apply(&TaskEvent::TaskDone(event), &meta(by, now));
}

fn of<'a>(decided: &'a [ReminderPlanned], occurrence: &str) -> Vec<&'a ReminderPlanned> {
    decided
        .iter()
        .filter(|reminder| reminder.occurrence == occurrence)
        .collect()
}

// The report is due 2026-03-04 18:00 EST = 23:00 UTC.
const REPORT_DUE: &str = "2026-03-04T23:00:00Z";

#[test]
fn recurring_tasks_fall_on_local_days_across_the_daylight_saving_change() {
    // Given the New York plan, whose clocks go forward on Sunday 2026-03-08 at 02:00
    let plan = plan_of(NEW_YORK);
    // When it is expanded
    let all = occurrences(&plan);
    let ids_and_dues = |task: &str| -> Vec<(String, DateTime<Utc>)> {
        all.iter()
            .filter(|o| o.task == task)
            .map(|o| (o.id.clone(), o.due))
            .collect()
    };
    // Then 09:00 local is 14:00 UTC before the change and 13:00 UTC after it
    assert_eq!(
        ids_and_dues("morning-call"),
        vec![
            ("morning-call@2026-03-06".into(), at("2026-03-06T14:00:00Z")),
            ("morning-call@2026-03-07".into(), at("2026-03-07T14:00:00Z")),
            ("morning-call@2026-03-08".into(), at("2026-03-08T13:00:00Z")),
            ("morning-call@2026-03-09".into(), at("2026-03-09T13:00:00Z")),
        ]
    );
    // And 02:30, which 2026-03-08 skips, is at the first instant after the gap (03:00 EDT)
    assert_eq!(
        ids_and_dues("night-check"),
        vec![
            ("night-check@2026-03-08".into(), at("2026-03-08T07:00:00Z")),
            ("night-check@2026-03-09".into(), at("2026-03-09T06:30:00Z")),
            ("night-check@2026-03-10".into(), at("2026-03-10T06:30:00Z")),
        ]
    );
    // And a weekly task falls on its weekday only, on each side of the change
    assert_eq!(
        ids_and_dues("sunday-review"),
        vec![
            (
                "sunday-review@2026-03-01".into(),
                at("2026-03-01T17:00:00Z")
            ),
            (
                "sunday-review@2026-03-08".into(),
                at("2026-03-08T16:00:00Z")
            ),
            (
                "sunday-review@2026-03-15".into(),
                at("2026-03-15T16:00:00Z")
            ),
        ]
    );
    // And a one-off task is named by its id
    assert_eq!(
        ids_and_dues("report"),
        vec![("report".into(), at(REPORT_DUE))]
    );
    // And everything is sorted by due instant, then id
    assert!(all
        .windows(2)
        .all(|pair| (pair[0].due, &pair[0].id) <= (pair[1].due, &pair[1].id)));
    assert_eq!(all.len(), 1 + 3 + 4 + 3);
}

#[test]
fn the_september_example_expands_to_hundreds_of_occurrences_on_shanghai_days() {
    let plan = plan_of(EXAMPLE_PLAN);
    let all = occurrences(&plan);
    // Seven daily burst tasks over 29 days, a daily prep task, five weekly ones, 18 one-off.
    assert!(all.len() > 200, "{} occurrences", all.len());
    let smart: Vec<&Occurrence> = all
        .iter()
        .filter(|o| o.task == "smart-batch-messages")
        .collect();
    // Every burst day, Sep 2 to Sep 30, at 10:00 +08:00.
    assert_eq!(smart.len(), 29);
    assert_eq!(smart[0].id, "smart-batch-messages@2026-09-02");
    assert_eq!(smart[0].due, at("2026-09-02T02:00:00Z"));
    assert_eq!(smart[28].id, "smart-batch-messages@2026-09-30");
}

#[test]
fn reminders_go_out_at_each_lead_time_and_at_the_due_instant() {
    // Given the report, due at 23:00 UTC with reminders 1 d and 2 h ahead
    let plan = plan_of(NEW_YORK);
    let mut board = TaskBoard::new("ny-spring");
    let due = at(REPORT_DUE);
    // Nothing before the first lead time
    assert!(of(
        &step(&plan, &mut board, at("2026-03-03T22:59:59Z")),
        "report"
    )
    .is_empty());
    // When the clock reaches each reminder instant in turn, then exactly that reminder is decided
    let mut seen = Vec::new();
    for (now, kind) in [
        (
            "2026-03-03T23:00:00Z",
            ReminderKind::Lead {
                before_seconds: 86_400,
            },
        ),
        (
            "2026-03-04T21:00:00Z",
            ReminderKind::Lead {
                before_seconds: 7_200,
            },
        ),
        (REPORT_DUE, ReminderKind::Due),
    ] {
        let decided = step(&plan, &mut board, at(now));
        let report = of(&decided, "report");
        assert_eq!(report.len(), 1, "at {now}: {decided:?}");
        let reminder = report[0];
        assert_eq!(reminder.kind, kind);
        assert_eq!(reminder.planned_at, at(now));
        assert_eq!(reminder.due, due);
        assert_eq!(reminder.role, "ops");
        assert_eq!(reminder.members, vec!["li.na".to_string()]);
        assert_eq!(reminder.late_by_ms, 0);
        assert_eq!(reminder.superseded, 0);
        assert_eq!(reminder.title, "Write the report");
        seen.push(reminder.key.clone());
        // And asking again at the same instant decides nothing more
        assert!(of(&step(&plan, &mut board, at(now)), "report").is_empty());
    }
    assert_eq!(
        seen,
        vec![
            "ny-spring/task/report/lead-86400s",
            "ny-spring/task/report/lead-7200s",
            "ny-spring/task/report/due",
        ]
    );
    let planned = board.reminders_of("report").unwrap();
    assert_eq!(planned.count, 3);
    assert!(!planned.escalated());
}

#[test]
fn a_done_task_stops_reminding_and_is_never_escalated() {
    // Given the report reminded a day ahead
    let plan = plan_of(NEW_YORK);
    let mut board = TaskBoard::new("ny-spring");
    step(&plan, &mut board, at("2026-03-03T23:00:00Z"));
    // When alice marks it done
    done(
        &plan,
        &mut board,
        "report",
        "alice",
        at("2026-03-04T10:00:00Z"),
    );
    // Then the next reminder the scheduler waits for is another task's
    let next = next_reminder_at(&plan, &board, &[], at("2026-03-04T10:00:00Z"));
    assert_eq!(
        next,
        Some(at("2026-03-06T13:00:00Z")),
        "morning call, 1 h ahead"
    );
    // And no later reminder nor the escalation is decided, however late it gets
    for now in [
        "2026-03-04T21:00:00Z",
        REPORT_DUE,
        "2026-03-05T05:00:00Z",
        "2026-03-20T00:00:00Z",
    ] {
        assert!(
            of(&step(&plan, &mut board, at(now)), "report").is_empty(),
            "{now}"
        );
    }
    assert_eq!(board.reminders_of("report").unwrap().count, 1);
    // And marking it done again is refused, saying who did it and when (local time)
    let refused = decide_done(&plan, &board, "report", None).unwrap_err();
    assert_eq!(
        refused,
        "`report` is already done: alice marked it done at 2026-03-04 05:00 -05:00"
    );
}

#[test]
fn an_undone_task_is_escalated_to_the_boss_after_the_delay() {
    let plan = plan_of(NEW_YORK);
    let mut board = TaskBoard::new("ny-spring");
    // Given every reminder up to the due instant went out on time
    for now in ["2026-03-03T23:00:00Z", "2026-03-04T21:00:00Z", REPORT_DUE] {
        step(&plan, &mut board, at(now));
    }
    // Then one second before the 6 h delay, nothing, and the row is overdue
    assert!(of(
        &step(&plan, &mut board, at("2026-03-05T04:59:59Z")),
        "report"
    )
    .is_empty());
    let filter = Filter {
        role: Some("ops".into()),
        due_before: None,
    };
    let row = |board: &TaskBoard, now: &str| {
        rows(&plan, board, &[], at(now), &filter)
            .into_iter()
            .find(|row| row.occurrence == "report")
            .unwrap()
    };
    assert_eq!(
        row(&board, "2026-03-05T04:59:59Z").status,
        RowStatus::Overdue
    );
    // When the delay has passed
    let decided = step(&plan, &mut board, at("2026-03-05T05:00:00Z"));
    // Then the escalation goes to the boss role's members, not to ops
    let report = of(&decided, "report");
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].kind, ReminderKind::Escalation);
    assert_eq!(report[0].key, "ny-spring/task/report/escalation");
    assert_eq!(report[0].role, "boss");
    assert_eq!(report[0].members, vec!["chen.jie".to_string()]);
    assert_eq!(report[0].superseded, 0);
    let escalated = row(&board, "2026-03-05T05:00:00Z");
    assert_eq!(escalated.status, RowStatus::Escalated);
    assert_eq!(escalated.reminders_sent, 4);
    // And once only
    assert!(of(
        &step(&plan, &mut board, at("2026-03-06T00:00:00Z")),
        "report"
    )
    .is_empty());

    // Given the same task done after its due instant but before the delay
    let mut board = TaskBoard::new("ny-spring");
    step(&plan, &mut board, at(REPORT_DUE));
    done(
        &plan,
        &mut board,
        "report",
        "bob",
        at("2026-03-05T01:00:00Z"),
    );
    // Then it is never escalated
    assert!(of(
        &step(&plan, &mut board, at("2026-03-05T05:00:00Z")),
        "report"
    )
    .is_empty());
    assert!(matches!(
        row(&board, "2026-03-05T05:00:00Z").status,
        RowStatus::Done { ref by, .. } if by == "bob"
    ));
}

#[test]
fn catching_up_after_downtime_decides_only_the_latest_passed_reminder() {
    let plan = plan_of(NEW_YORK);

    // Given nothing was decided, when the scheduler comes back 1 h after the due instant
    let mut board = TaskBoard::new("ny-spring");
    let decided = step(&plan, &mut board, at("2026-03-05T00:00:00Z"));
    // Then only the due reminder is decided, the two lead reminders counted as superseded
    let report = of(&decided, "report");
    assert_eq!(report.len(), 1, "{decided:?}");
    assert_eq!(report[0].kind, ReminderKind::Due);
    assert_eq!(report[0].superseded, 2);
    assert_eq!(report[0].late_by_ms, 3_600_000);
    assert_eq!(report[0].planned_at, at(REPORT_DUE));
    // And the superseded reminders are never decided afterwards
    assert!(of(
        &step(&plan, &mut board, at("2026-03-05T00:00:01Z")),
        "report"
    )
    .is_empty());

    // Given the first lead went out, when it comes back after the escalation instant
    let mut board = TaskBoard::new("ny-spring");
    step(&plan, &mut board, at("2026-03-03T23:00:00Z"));
    let decided = step(&plan, &mut board, at("2026-03-05T07:00:00Z"));
    // Then only the escalation is decided, the 2 h lead and the due reminder superseded
    let report = of(&decided, "report");
    assert_eq!(report.len(), 1, "{decided:?}");
    assert_eq!(report[0].kind, ReminderKind::Escalation);
    assert_eq!(report[0].role, "boss");
    assert_eq!(report[0].superseded, 2);
    assert_eq!(report[0].late_by_ms, 2 * 3_600_000);
    assert!(of(
        &step(&plan, &mut board, at("2026-03-06T00:00:00Z")),
        "report"
    )
    .is_empty());
    assert_eq!(board.reminders_of("report").unwrap().count, 2);

    // Given a long outage over several recurring occurrences
    let mut board = TaskBoard::new("ny-spring");
    let decided = step(&plan, &mut board, at("2026-03-09T14:00:00Z"));
    // Then each occurrence gets one reminder, in order of planned instant then key
    let calls = of(&decided, "morning-call@2026-03-06");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].kind, ReminderKind::Due);
    assert_eq!(calls[0].superseded, 1);
    assert!(decided
        .windows(2)
        .all(|pair| (pair[0].planned_at, &pair[0].key) < (pair[1].planned_at, &pair[1].key)));
    let occurrences_decided: Vec<&str> = decided.iter().map(|r| r.occurrence.as_str()).collect();
    assert_eq!(
        occurrences_decided,
        vec![
            "sunday-review@2026-03-01",
            "report",
            "morning-call@2026-03-06",
            "morning-call@2026-03-07",
            "night-check@2026-03-08",
            "morning-call@2026-03-08",
            "sunday-review@2026-03-08",
            "night-check@2026-03-09",
            "morning-call@2026-03-09",
        ]
    );
}

#[test]
fn next_reminder_at_is_the_earliest_reminder_still_to_decide() {
    let plan = plan_of(NEW_YORK);
    let mut board = TaskBoard::new("ny-spring");
    // Given nothing decided: the first is the sunday review's due reminder, then the report's lead
    assert_eq!(
        next_reminder_at(&plan, &board, &[], at("2026-02-01T00:00:00Z")),
        Some(at("2026-03-01T17:00:00Z"))
    );
    assert_eq!(
        next_reminder_at(&plan, &board, &[], at("2026-03-01T17:00:00Z")),
        Some(at("2026-03-03T23:00:00Z"))
    );
    // When the scheduler wakes there and decides, the next is the 2 h lead
    step(&plan, &mut board, at("2026-03-03T23:00:00Z"));
    assert_eq!(
        next_reminder_at(&plan, &board, &[], at("2026-03-03T23:00:00Z")),
        Some(at("2026-03-04T21:00:00Z"))
    );
    // And a reminder already covered (decided late, past it) is not waited for again
    step(&plan, &mut board, at("2026-03-04T23:30:00Z"));
    assert_eq!(
        next_reminder_at(&plan, &board, &[], at("2026-03-04T22:00:00Z")),
        Some(at("2026-03-05T05:00:00Z")),
        "the escalation, not the due reminder already decided"
    );
    // And done occurrences are skipped
    done(
        &plan,
        &mut board,
        "report",
        "alice",
        at("2026-03-04T23:30:00Z"),
    );
    assert_eq!(
        next_reminder_at(&plan, &board, &[], at("2026-03-04T22:00:00Z")),
        Some(at("2026-03-06T13:00:00Z"))
    );
    // And after the last reminder of the plan, nothing
    assert_eq!(
        next_reminder_at(&plan, &board, &[], at("2026-03-15T16:00:00Z")),
        None
    );
}

#[test]
fn scheduler_loop_sends_every_reminder_once_in_order() {
    // Given a scheduler that sleeps until next_reminder_at and decides what is due
    let plan = plan_of(NEW_YORK);
    let mut board = TaskBoard::new("ny-spring");
    let mut now = at("2026-02-01T00:00:00Z");
    let mut keys = Vec::new();
    while let Some(next) = next_reminder_at(&plan, &board, &[], now) {
        now = next;
        let decided = step(&plan, &mut board, now);
        assert!(!decided.is_empty(), "woke at {now} for nothing");
        for reminder in decided {
            assert_eq!(reminder.superseded, 0, "{}", reminder.key);
            assert_eq!(reminder.late_by_ms, 0, "{}", reminder.key);
            keys.push(reminder.key);
        }
    }
    // Then every reminder instant of every occurrence was decided exactly once:
    // report 2 leads + due + escalation, night-check 3 dues, morning-call 4 leads + 4 dues,
    // sunday-review 3 dues
    assert_eq!(keys.len(), 4 + 3 + 8 + 3);
    let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len());
}

#[test]
fn marking_done_names_the_occurrence_or_helps_find_it() {
    let plan = plan_of(NEW_YORK);
    let board = TaskBoard::new("ny-spring");
    let event = decide_done(
        &plan,
        &board,
        " night-check@2026-03-09 ",
        Some("  all shipped ".into()),
    )
    .unwrap();
    assert_eq!(
        event,
        TaskDone {
            campaign: "ny-spring".into(),
            occurrence: "night-check@2026-03-09".into(),
            task: "night-check".into(),
            note: Some("all shipped".into()),
        }
    );
    assert_eq!(
        decide_done(&plan, &board, "report", Some("   ".into()))
            .unwrap()
            .note,
        None
    );
    let error = |id: &str| find_occurrence(&plan, id).unwrap_err();
    assert_eq!(
        error("night-chek@2026-03-09"),
        "there is no task `night-chek` in the plan; did you mean `night-check@2026-03-09`?"
    );
    assert_eq!(
        error("reprot"),
        "there is no task `reprot` in the plan; did you mean `report`?"
    );
    assert_eq!(
        error("holiday"),
        "there is no task `holiday` in the plan; tasks: report, night-check, morning-call, sunday-review"
    );
    assert_eq!(
        error("report@2026-03-04"),
        "`report` is due once: name it `report`, without a date"
    );
    assert_eq!(
        error("night-check"),
        "`night-check` repeats: name one occurrence as `night-check@YYYY-MM-DD`, from `night-check@2026-03-08` to `night-check@2026-03-10`"
    );
    assert_eq!(
        error("sunday-review@2026-03-10"),
        "`sunday-review` has no occurrence on 2026-03-10 (they run from `sunday-review@2026-03-01` to `sunday-review@2026-03-15`); the nearest are `sunday-review@2026-03-08` and `sunday-review@2026-03-15`"
    );
    assert_eq!(
        error("night-check@2026-03-20"),
        "`night-check` has no occurrence on 2026-03-20 (they run from `night-check@2026-03-08` to `night-check@2026-03-10`); the nearest is `night-check@2026-03-10`"
    );
    assert_eq!(
        error("night-check@tomorrow"),
        "`tomorrow` is not a date: name one occurrence as `night-check@YYYY-MM-DD`, from `night-check@2026-03-08` to `night-check@2026-03-10`"
    );
}

fn recorded(event: &TaskEvent, actor: &str, now: DateTime<Utc>, position: u64) -> RecordedEvent {
    let new = event
        .encode(EventId(Uuid::from_u128(u128::from(position))))
        .unwrap();
    RecordedEvent {
        position: Position(position),
        stream: stream_of("ny-spring").unwrap(),
        version: StreamVersion(position),
        event_id: new.event_id,
        recorded_at: now,
        event_type: new.event_type,
        schema_version: new.schema_version,
        payload: new.payload,
        metadata: Metadata {
            actor: actor.into(),
            command_id: CommandId(Uuid::from_u128(u128::from(position) + 1000)),
            causation_id: None,
            correlation_id: None,
            reason: None,
        },
        previous_hash: [0; 32],
        hash: [0; 32],
    }
}

#[test]
fn the_board_is_rebuilt_from_its_recorded_events() {
    // Given a board built step by step
    let plan = plan_of(NEW_YORK);
    let mut board = TaskBoard::new("ny-spring");
    let mut log = Vec::new();
    for now in ["2026-03-03T23:00:00Z", "2026-03-05T06:00:00Z"] {
        for reminder in step(&plan, &mut board, at(now)) {
            log.push((
                TaskEvent::ReminderPlanned(reminder),
                "system:scheduler",
                at(now),
            ));
        }
    }
    let finished =
        decide_done(&plan, &board, "night-check@2026-03-08", Some("late".into())).unwrap();
    let when = at("2026-03-08T08:00:00Z");
    board.apply(
        &TaskEvent::TaskDone(finished.clone()),
        &meta("wang.wei", when),
    );
    log.push((TaskEvent::TaskDone(finished), "wang.wei", when));
    // When its events are encoded, decoded and applied to a new board
    let mut rebuilt = TaskBoard::new("ny-spring");
    for (position, (event, actor, now)) in log.iter().enumerate() {
        let record = recorded(event, actor, *now, position as u64);
        let decoded = TaskEvent::decode(&record).unwrap().unwrap();
        assert_eq!(&decoded, event);
        rebuilt.apply(&decoded, &EventMeta::of(&record));
    }
    // Then it is the same board
    assert_eq!(rebuilt, board);
    assert_eq!(
        rebuilt.done_by("night-check@2026-03-08").unwrap().by,
        "wang.wei"
    );
    // And events of another campaign change nothing
    let foreign = TaskEvent::TaskDone(TaskDone {
        campaign: "other".into(),
        occurrence: "report".into(),
        task: "report".into(),
        note: None,
    });
    rebuilt.apply(&foreign, &meta("mallory", when));
    assert_eq!(rebuilt, board);
}

#[test]
fn events_read_as_json_and_as_one_line() {
    let plan = plan_of(NEW_YORK);
    let zone = plan.campaign.time_zone;
    let board = TaskBoard::new("ny-spring");
    let decided = due_reminders(&plan, &board, &[], at("2026-03-05T07:00:00Z"));
    let report = decided.iter().find(|r| r.occurrence == "report").unwrap();
    let event = TaskEvent::ReminderPlanned(report.clone());
    assert_eq!(event.event_type(), "ReminderPlanned");
    assert_eq!(
        event.summary(zone),
        "escalated to boss (chen.jie): report \"Write the report\" was due 2026-03-04 18:00 -05:00 \
         and is not done, decided 2 h late, in place of 3 earlier reminders"
    );
    let json = event.to_json();
    assert_eq!(json["kind"], "escalation");
    assert_eq!(json["planned_at"], "2026-03-05T05:00:00Z");
    let lead = TaskEvent::ReminderPlanned(ReminderPlanned {
        kind: ReminderKind::Lead {
            before_seconds: 7200,
        },
        late_by_ms: 0,
        superseded: 0,
        role: "ops".into(),
        members: Vec::new(),
        ..report.clone()
    });
    assert_eq!(
        lead.to_json()["kind"],
        serde_json::json!({"lead": {"before_seconds": 7200}})
    );
    assert_eq!(
        lead.summary(zone),
        "reminder to ops (no members): report \"Write the report\" is due in 2 h (2026-03-04 18:00 -05:00)"
    );
    let finished = TaskEvent::TaskDone(TaskDone {
        campaign: "ny-spring".into(),
        occurrence: "report".into(),
        task: "report".into(),
        note: Some("sent to the boss".into()),
    });
    assert_eq!(finished.summary(zone), "report done: sent to the boss");
    assert_eq!(stream_of("ny-spring").unwrap().as_str(), "tasks-ny-spring");
    assert_eq!(
        campaign_of(&stream_of("ny-spring").unwrap()),
        Some("ny-spring")
    );
    assert!(stream_of("two words").is_err());
}

/// The September example at 2026-08-27 12:00 in Shanghai (warm-up): the reminders due so far
/// decided, two tasks done, the ops board for the first days.
fn september_board() -> (Plan, Vec<Row>, DateTime<Utc>) {
    let plan = plan_of(EXAMPLE_PLAN);
    let mut board = TaskBoard::new(&plan.campaign.id);
    done(
        &plan,
        &mut board,
        "create-coupons",
        "li.na",
        at("2026-08-20T09:30:00+08:00"),
    );
    let event = decide_done(
        &plan,
        &board,
        "review-visitors-prep@2026-08-19",
        Some("12 coupons sent".into()),
    )
    .unwrap();
    board.apply(
        &TaskEvent::TaskDone(event),
        &meta("li.na", at("2026-08-19T18:10:00+08:00")),
    );
    let now = at("2026-08-27T12:00:00+08:00");
    step(&plan, &mut board, now);
    let filter = Filter {
        role: Some("ops".into()),
        due_before: Some(at("2026-09-03T00:00:00+08:00")),
    };
    let rows = rows(&plan, &board, &[], now, &filter);
    (plan, rows, now)
}

#[test]
fn the_september_ops_board() {
    let (plan, rows, now) = september_board();
    assert!(rows.iter().all(|row| row.role == "ops"));
    assert!(rows
        .iter()
        .all(|row| row.due < at("2026-09-03T00:00:00+08:00")));
    let counts = Counts::of(&rows);
    assert_eq!(counts.done, 2);
    assert!(counts.escalated >= 1, "{counts:?}");
    insta::assert_snapshot!(render_board(&rows, plan.campaign.time_zone, now));
}

#[test]
fn the_september_ops_board_as_json() {
    let (_, rows, _) = september_board();
    let json = board_json(&rows);
    assert_eq!(json["counts"]["done"], 2);
    let coupons = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["occurrence"] == "create-coupons")
        .unwrap();
    assert_eq!(
        coupons,
        &serde_json::json!({
            "occurrence": "create-coupons",
            "task": "create-coupons",
            "title": "Create the sale coupons",
            "workstream": "sale-marketing",
            "role": "ops",
            "phase": "prep",
            "due": "2026-08-20T16:00:00Z",
            "status": "done",
            "by": "li.na",
            "at": "2026-08-20T01:30:00Z",
            "reminders_sent": 0,
        })
    );
}

#[test]
fn a_repeated_local_time_takes_the_earlier_instant_and_a_skipped_one_the_end_of_the_gap() {
    let zone: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let local = |text: &str| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
    // Clocks go back on 2026-11-01 at 02:00: 01:30 happens twice, EDT first.
    assert_eq!(
        schedule::local_instant(zone, local("2026-11-01 01:30")),
        Some(at("2026-11-01T05:30:00Z"))
    );
    // Clocks go forward on 2026-03-08 at 02:00: 02:00 to 02:59 do not exist.
    for skipped in ["2026-03-08 02:00", "2026-03-08 02:59"] {
        assert_eq!(
            schedule::local_instant(zone, local(skipped)),
            Some(at("2026-03-08T07:00:00Z")),
            "{skipped}"
        );
    }
    assert_eq!(
        schedule::local_instant(zone, local("2026-03-08 03:00")),
        Some(at("2026-03-08T07:00:00Z"))
    );
}

#[test]
fn a_task_of_a_step_skipped_by_an_advance_is_reminded_no_more() {
    // Given the September example: the boss sets the stage targets by `warm_up.end - 1d`
    // (2026-09-01 00:00 +08:00), reminded two days and one day before,
    let plan = plan_of(EXAMPLE_PLAN);
    let board = TaskBoard::new(&plan.campaign.id);
    let now = at("2026-08-31T12:00:00+08:00");
    let before = due_reminders(&plan, &board, &[], now);
    assert_eq!(of(&before, "set-stage-targets").len(), 1);
    // when the warm-up was skipped by an advance to the burst on 2026-08-28,
    let skipped = [crate::campaign::SkippedStep {
        step: crate::campaign::Step::phase(crate::plan::model::PhaseKind::WarmUp),
        start: at("2026-08-26T00:00:00+08:00"),
        end: at("2026-09-02T00:00:00+08:00"),
        at: at("2026-08-28T09:00:00+08:00"),
        by: "alice".to_string(),
    }];
    // then no reminder of it is decided, nor waited for; other tasks are untouched.
    let after = due_reminders(&plan, &board, &skipped, now);
    assert!(of(&after, "set-stage-targets").is_empty());
    let warm_up: Vec<&str> = plan
        .tasks
        .iter()
        .filter(|task| task.phase == crate::plan::model::PhaseKind::WarmUp)
        .map(|task| task.id.as_str())
        .collect();
    let others = |decided: &[ReminderPlanned]| -> Vec<String> {
        decided
            .iter()
            .filter(|reminder| !warm_up.contains(&reminder.task.as_str()))
            .map(|reminder| reminder.key.clone())
            .collect()
    };
    assert_eq!(others(&after), others(&before));
    let next = next_reminder_at(&plan, &board, &skipped, at("2026-08-28T10:00:00+08:00"));
    let next_without = next_reminder_at(&plan, &board, &[], at("2026-08-28T10:00:00+08:00"));
    assert!(next >= next_without);
    // And the board shows it skipped, by whom, rather than overdue; other tasks as they were.
    let everything = Filter::default();
    let status_of = |skipped: &[crate::campaign::SkippedStep], id: &str| {
        rows(&plan, &board, skipped, now, &everything)
            .into_iter()
            .find(|row| row.task == id)
            .map(|row| row.status)
    };
    assert_eq!(
        status_of(&skipped, "set-stage-targets"),
        Some(RowStatus::Skipped {
            by: "alice".to_string(),
            at: at("2026-08-28T09:00:00+08:00"),
        })
    );
    assert_eq!(
        status_of(&[], "set-stage-targets"),
        Some(RowStatus::Open),
        "due 2026-09-01, not yet at {now}"
    );
    let board_rows = rows(&plan, &board, &skipped, now, &everything);
    let text = crate::task::render_board(&board_rows, plan.campaign.time_zone, now);
    assert!(text.contains("skipped (advanced by alice)"), "{text}");
    assert!(text.contains(" skipped, "), "{text}");
}
