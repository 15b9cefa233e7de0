//! The calendar's text: folding that never splits a character, escaping, UIDs, durations in
//! exact time, and a New York plan across the end of daylight saving time (2026-11-01 02:00
//! EDT -> 01:00 EST) rendered for everyone, one role and one person.

use chrono::{DateTime, Utc};

use super::*;
use crate::campaign::timeline::Step;
use crate::campaign::EventMeta;
use crate::plan::{Plan, EXAMPLE_PLAN};
use crate::task::{decide_done, TaskEvent};

const NEW_YORK_FALL: &str = r#"
format = 1

[campaign]
id = "ny-fall-2026"
name = "New York fall sale"
time_zone = "America/New_York"
currency = "USD"

[phases.prep]
start = 2026-10-26
end = 2026-10-28

[phases.warm_up]
start = 2026-10-29
end = 2026-10-31

[phases.burst]
start = 2026-11-01
end = 2026-11-03

[stages.opening]
name = "Opening"
theme = "The sale has started"
start = 2026-11-01
end = 2026-11-01

[stages.closing]
name = "Closing"
theme = "Buy before the sale ends"
start = 2026-11-02
end = 2026-11-03

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
phase = "warm_up"
title = "Write the report; then, send it"
description = "Numbers from the shop's data tool.\nOne page, please \\ no more."
due = 2026-10-31T18:00:00
remind = ["1d", "2h"]
escalate_after = "6h"

[tasks.daily-check]
workstream = "data"
role = "sales"
phase = "warm_up"
title = "准备双十一直播间的优惠券和商品链接，确认库存；再检查一遍所有商品的价格和详情页"
repeat = "daily"
at = "09:00"
from = 2026-10-30
until = 2026-11-03
outside_phase = true
remind = ["1d"]

[tasks.night-check]
workstream = "data"
role = "sales"
phase = "burst"
title = "Check the night orders"
repeat = "daily"
at = "01:30"
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

/// The content lines, unfolded, after checking every physical line: CRLF ended, at most 75
/// octets.
fn content_lines(ics: &str) -> Vec<String> {
    assert!(ics.ends_with("\r\n"), "{ics}");
    let physical: Vec<&str> = ics[..ics.len() - 2].split("\r\n").collect();
    for line in &physical {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "a bare line break in {line:?}"
        );
        assert!(line.len() <= LINE_OCTETS, "{} octets: {line:?}", line.len());
    }
    ics.replace("\r\n ", "")
        .trim_end_matches("\r\n")
        .split("\r\n")
        .map(str::to_string)
        .collect()
}

/// Each component's content lines, by UID (alarms included in their to-do).
fn components(ics: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in content_lines(ics) {
        if line == "BEGIN:VEVENT" || line == "BEGIN:VTODO" {
            current = Some(vec![line]);
        } else if line == "END:VEVENT" || line == "END:VTODO" {
            let mut lines = current.take().unwrap();
            lines.push(line);
            let uid = lines
                .iter()
                .find_map(|line| line.strip_prefix("UID:"))
                .unwrap()
                .to_string();
            found.push((uid, lines));
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    found
}

fn component<'a>(all: &'a [(String, Vec<String>)], uid: &str) -> &'a [String] {
    &all.iter()
        .find(|(candidate, _)| candidate == uid)
        .unwrap_or_else(|| panic!("no {uid}"))
        .1
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|line| line == wanted)
}

fn render_with(
    plan: &Plan,
    board: &TaskBoard,
    skipped: &[SkippedStep],
    filter: &Filter,
) -> Calendar {
    render(&Inputs {
        plan,
        plan_version: 2,
        shifts: 1,
        board,
        skipped,
        filter,
        stamp: at("2026-10-20T12:34:56.789Z"),
    })
    .unwrap()
}

#[test]
fn a_long_line_folds_at_75_octets_and_unfolds_to_itself() {
    let line = format!("DESCRIPTION:{}", "abcdefghij".repeat(20));
    let folded = fold(&line);
    let lines: Vec<&str> = folded.trim_end_matches("\r\n").split("\r\n").collect();
    assert_eq!(lines[0].len(), 75);
    assert!(lines[1..]
        .iter()
        .all(|line| line.starts_with(' ') && line.len() <= 75));
    assert_eq!(folded.replace("\r\n ", ""), format!("{line}\r\n"));
    assert_eq!(fold("END:VTODO"), "END:VTODO\r\n");
}

#[test]
fn folding_never_splits_a_character() {
    // Three octets each: 8 + 22 * 3 = 74 octets fit the first line, a 23rd would make 77.
    let title = "双十一直播间优惠券".repeat(8);
    let line = format!("SUMMARY:{title}");
    let folded = fold(&line);
    let lines: Vec<&str> = folded.trim_end_matches("\r\n").split("\r\n").collect();
    assert_eq!(lines[0].len(), 74, "{lines:?}");
    for line in &lines {
        // Each physical line is whole UTF-8 (a &str) and within the limit.
        assert!(line.len() <= 75);
    }
    assert_eq!(folded.replace("\r\n ", ""), format!("{line}\r\n"));
    // Four-octet characters, mixed with ASCII at every offset.
    for prefix in 0..4 {
        let line = format!("{}{}", "x".repeat(prefix), "😀".repeat(40));
        let folded = fold(&line);
        for physical in folded.trim_end_matches("\r\n").split("\r\n") {
            assert!(physical.len() <= 75, "{physical}");
        }
        assert_eq!(folded.replace("\r\n ", ""), format!("{line}\r\n"));
    }
}

#[test]
fn text_is_escaped_and_control_characters_are_left_out() {
    assert_eq!(
        escape("a\\b;c,d\ne\r\nf\rg\u{7}h\ti\u{1b}"),
        "a\\\\b\\;c\\,d\\ne\\nf\\ngh\ti"
    );
    assert_eq!(escape("准备，确认；"), "准备，确认；");
}

#[test]
fn uids_name_the_campaign_and_the_phase_stage_or_occurrence() {
    assert_eq!(
        phase_uid("ny-fall-2026", PhaseKind::WarmUp),
        "phase-warm_up.ny-fall-2026@battleplan"
    );
    assert_eq!(
        stage_uid("ny-fall-2026", "opening"),
        "stage-opening.ny-fall-2026@battleplan"
    );
    assert_eq!(
        occurrence_uid("ny-fall-2026", "report"),
        "task-report.ny-fall-2026@battleplan"
    );
    assert_eq!(
        occurrence_uid("ny-fall-2026", "daily-check@2026-11-01"),
        "task-daily-check.2026-11-01.ny-fall-2026@battleplan"
    );
}

#[test]
fn durations_are_exact_time_never_nominal_days() {
    assert_eq!(duration(0), "PT0S");
    assert_eq!(duration(-86_400), "-PT24H");
    assert_eq!(duration(-5_400), "-PT1H30M");
    assert_eq!(duration(21_600), "PT6H");
    assert_eq!(duration(-45), "-PT45S");
    assert_eq!(duration(-3_661), "-PT1H1M1S");
}

#[test]
fn the_sequence_grows_with_revisions_and_shifting_pauses() {
    assert_eq!(sequence(1, 0), 1);
    assert_eq!(sequence(2, 0), 2);
    assert_eq!(sequence(2, 1), 3);
    assert_eq!(sequence(u32::MAX, 3), u32::MAX);
}

#[test]
fn a_new_york_campaign_across_the_end_of_daylight_saving_time() {
    let plan = plan_of(NEW_YORK_FALL);
    let board = TaskBoard::new("ny-fall-2026");
    let calendar = render_with(&plan, &board, &[], &Filter::default());
    let ics = &calendar.ics;
    let all = components(ics);
    let lines = content_lines(ics);
    assert_eq!(lines[0], "BEGIN:VCALENDAR");
    assert_eq!(lines.last().unwrap(), "END:VCALENDAR");
    for wanted in [
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "PRODID:-//battleplan//battleplan calendar//EN",
        "X-WR-CALNAME:New York fall sale",
        "X-WR-TIMEZONE:America/New_York",
    ] {
        assert!(has(&lines, wanted), "{wanted} in {ics}");
    }
    // Three phases and two stages; a one-off task, five days of the daily check, three nights.
    assert_eq!((calendar.events, calendar.todos), (5, 9));
    assert_eq!(calendar.sequence, 3);

    // Phases: local midnights, EDT (-04:00) before the change, EST (-05:00) after.
    let warm_up = component(&all, "phase-warm_up.ny-fall-2026@battleplan");
    assert!(has(warm_up, "DTSTART:20261029T040000Z"), "{warm_up:?}");
    assert!(has(warm_up, "DTEND:20261101T040000Z"), "{warm_up:?}");
    let burst = component(&all, "phase-burst.ny-fall-2026@battleplan");
    assert!(has(burst, "DTSTART:20261101T040000Z"), "{burst:?}");
    assert!(has(burst, "DTEND:20261104T050000Z"), "{burst:?}");
    let opening = component(&all, "stage-opening.ny-fall-2026@battleplan");
    assert!(has(opening, "DTEND:20261102T050000Z"), "{opening:?}");
    for (_, lines) in &all {
        assert!(has(lines, "SEQUENCE:3"));
        // The instant the calendar is made at, to the second.
        assert!(has(lines, "DTSTAMP:20261020T123456Z"));
    }

    // 09:00 is 13:00 UTC in EDT and 14:00 UTC in EST.
    for (day, due) in [
        ("2026-10-30", "20261030T130000Z"),
        ("2026-10-31", "20261031T130000Z"),
        ("2026-11-01", "20261101T140000Z"),
        ("2026-11-02", "20261102T140000Z"),
        ("2026-11-03", "20261103T140000Z"),
    ] {
        let todo = component(
            &all,
            &format!("task-daily-check.{day}.ny-fall-2026@battleplan"),
        );
        assert!(has(todo, &format!("DUE:{due}")), "{day}: {todo:?}");
        // A day ahead is 24 hours ahead, exactly: written as such.
        assert!(has(todo, "TRIGGER;RELATED=END:-PT24H"), "{todo:?}");
        assert!(has(todo, "TRIGGER;RELATED=END:PT0S"), "{todo:?}");
        assert!(has(todo, "CATEGORIES:sales"));
        assert!(has(todo, "STATUS:NEEDS-ACTION"));
        assert!(
            has(todo, "SUMMARY:准备双十一直播间的优惠券和商品链接，确认库存；再检查一遍所有商品的价格和详情页"),
            "{todo:?}"
        );
    }
    // 01:30 on the day the clocks go back happens twice: the earlier one, still EDT.
    let night = component(&all, "task-night-check.2026-11-01.ny-fall-2026@battleplan");
    assert!(has(night, "DUE:20261101T053000Z"), "{night:?}");
    let night = component(&all, "task-night-check.2026-11-02.ny-fall-2026@battleplan");
    assert!(has(night, "DUE:20261102T063000Z"), "{night:?}");

    // The one-off task: its text escaped, its reminders and (for an unfiltered calendar) the
    // escalation to the boss.
    let report = component(&all, "task-report.ny-fall-2026@battleplan");
    assert!(has(report, "DUE:20261031T220000Z"), "{report:?}");
    assert!(has(report, "SUMMARY:Write the report\\; then\\, send it"));
    let description = report
        .iter()
        .find_map(|line| line.strip_prefix("DESCRIPTION:"))
        .unwrap();
    assert!(
        description.starts_with(
            "Numbers from the shop's data tool.\\nOne page\\, please \\\\ no more.\\n\\nDue 2026-10-31 18:00 -04:00."
        ),
        "{description}"
    );
    let triggers: Vec<&String> = report
        .iter()
        .filter(|line| line.starts_with("TRIGGER"))
        .collect();
    assert_eq!(
        triggers,
        [
            "TRIGGER;RELATED=END:-PT24H",
            "TRIGGER;RELATED=END:-PT2H",
            "TRIGGER;RELATED=END:PT0S",
            "TRIGGER;RELATED=END:PT6H"
        ]
    );
    assert_eq!(calendar.alarms, 4 + 5 * 2 + 3);
    // The same inputs, the same bytes.
    assert_eq!(
        render_with(&plan, &board, &[], &Filter::default()).ics,
        calendar.ics
    );
}

#[test]
fn done_and_skipped_occurrences_say_so_and_have_no_alarms() {
    let plan = plan_of(NEW_YORK_FALL);
    let mut board = TaskBoard::new("ny-fall-2026");
    let event = decide_done(&plan, &board, "report", Some("sent, early".into())).unwrap();
    board.apply(
        &TaskEvent::TaskDone(event),
        &EventMeta {
            at: at("2026-10-31T20:15:30.500Z"),
            actor: "li.na".into(),
            reason: None,
        },
    );
    let skipped = [SkippedStep {
        step: Step {
            phase: PhaseKind::Burst,
            stage: None,
        },
        start: at("2026-11-01T04:00:00Z"),
        end: at("2026-11-04T05:00:00Z"),
        at: at("2026-11-02T15:00:00Z"),
        by: "chen.jie".into(),
    }];
    let calendar = render_with(&plan, &board, &skipped, &Filter::default());
    let all = components(&calendar.ics);
    let report = component(&all, "task-report.ny-fall-2026@battleplan");
    assert!(has(report, "STATUS:COMPLETED"), "{report:?}");
    assert!(has(report, "COMPLETED:20261031T201530Z"), "{report:?}");
    assert!(!report.iter().any(|line| line == "BEGIN:VALARM"));
    assert!(
        report
            .iter()
            .any(|line| line.ends_with("Done by li.na at 2026-10-31 16:15 -04:00: sent\\, early")),
        "{report:?}"
    );
    // The night check of Nov 3 lay in the part of the burst the advance cut off; Nov 2's was
    // before it.
    let night = component(&all, "task-night-check.2026-11-03.ny-fall-2026@battleplan");
    assert!(has(night, "STATUS:CANCELLED"), "{night:?}");
    assert!(
        night.iter().any(|line| line.ends_with(
            "Skipped: chen.jie advanced the campaign out of its burst phase at 2026-11-02 10:00 -05:00."
        )),
        "{night:?}"
    );
    assert!(!night.iter().any(|line| line == "BEGIN:VALARM"));
    let night = component(&all, "task-night-check.2026-11-02.ny-fall-2026@battleplan");
    assert!(has(night, "STATUS:NEEDS-ACTION"), "{night:?}");
}

#[test]
fn a_role_or_a_person_sees_their_tasks_and_every_phase() {
    let plan = plan_of(NEW_YORK_FALL);
    let board = TaskBoard::new("ny-fall-2026");
    let uids = |filter: Filter| -> Vec<String> {
        components(&render_with(&plan, &board, &[], &filter).ics)
            .into_iter()
            .map(|(uid, _)| uid)
            .filter(|uid| uid.starts_with("task-"))
            .collect()
    };
    let sales = uids(Filter {
        role: Some("sales".into()),
        person: None,
    });
    assert_eq!(sales.len(), 8);
    assert!(sales.iter().all(|uid| !uid.starts_with("task-report.")));
    let li_na = uids(Filter {
        role: None,
        person: Some("li.na".into()),
    });
    assert_eq!(li_na, ["task-report.ny-fall-2026@battleplan"]);
    let ops = render_with(
        &plan,
        &board,
        &[],
        &Filter {
            role: Some("ops".into()),
            person: None,
        },
    );
    // Phases and stages are in every calendar; the escalation goes to the boss, not to ops.
    assert_eq!((ops.events, ops.todos, ops.alarms), (5, 1, 3));
    assert!(content_lines(&ops.ics).contains(&"X-WR-CALNAME:New York fall sale · ops".to_string()));
    let boss = render_with(
        &plan,
        &board,
        &[],
        &Filter {
            role: None,
            person: Some("chen.jie".into()),
        },
    );
    assert_eq!(boss.todos, 0);
}

#[test]
fn an_unknown_role_or_person_is_refused_with_what_there_is() {
    let plan = plan_of(NEW_YORK_FALL);
    let board = TaskBoard::new("ny-fall-2026");
    let refused = |role: Option<&str>, person: Option<&str>| {
        render(&Inputs {
            plan: &plan,
            plan_version: 1,
            shifts: 0,
            board: &board,
            skipped: &[],
            filter: &Filter {
                role: role.map(str::to_string),
                person: person.map(str::to_string),
            },
            stamp: at("2026-10-20T00:00:00Z"),
        })
        .unwrap_err()
    };
    assert_eq!(
        refused(Some("sale"), None),
        "campaign ny-fall-2026 has no role `sale`; did you mean `sales`?"
    );
    assert_eq!(
        refused(Some("marketing"), None),
        "campaign ny-fall-2026 has no role `marketing`; it has: ops, sales, boss"
    );
    assert_eq!(
        refused(None, Some("li.nz")),
        "no role of campaign ny-fall-2026 lists `li.nz` as a member; did you mean `li.na`?"
    );
    assert_eq!(
        refused(Some("sales"), Some("li.na")),
        "`li.na` is not a member of role `sales` in campaign ny-fall-2026; their roles: ops"
    );
}

#[test]
fn the_september_festival_has_every_occurrence_of_the_board() {
    let plan = plan_of(EXAMPLE_PLAN);
    let board = TaskBoard::new(&plan.campaign.id);
    let calendar = render_with(&plan, &board, &[], &Filter::default());
    assert_eq!(calendar.todos, crate::task::occurrences(&plan).len());
    assert_eq!(calendar.events, plan.phases.len() + plan.stages.len());
    // Every physical line checked by the reader.
    assert!(content_lines(&calendar.ics).len() > calendar.todos * 8);
}
