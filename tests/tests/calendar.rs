//! `battleplan calendar` and `/api/v1/calendar/CAMPAIGN.ics`, read back by an independent
//! parser: Python's `icalendar` package from PyPI (`tests/ics_read.py`), in the Python
//! `.ci/run` prepares (`BATTLEPLAN_SMTP_PYTHON`, or `target/smtp-venv`). Every phase, stage,
//! task and occurrence must come back with the instants computed here from local times with
//! chrono-tz (never from battleplan's own resolution of the plan): for the September festival
//! and for a New York campaign across the end of daylight saving time (2026-11-01 02:00 EDT ->
//! 01:00 EST). Also: UIDs stable across runs, SEQUENCE following a revision, `--role` and
//! `--person`, done to-dos, and over HTTP a calendar token in the query string taken while a
//! manager's is refused, and neither ever in the daemon's log.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use battleplan_tests::http;
use battleplan_tests::{bp, ok, run_in, Daemon, Run};
use chrono::{Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

// ----- the independent parser -----

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that has `icalendar`, or `None` (after saying so loudly) where the test may skip;
/// under `CI=true` its absence fails the test.
fn icalendar_python() -> Option<PathBuf> {
    let candidate = std::env::var_os("BATTLEPLAN_SMTP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            target.join("smtp-venv/bin/python")
        });
    let works = Command::new(&candidate)
        .args(["-c", "import icalendar"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        return Some(candidate);
    }
    let how = "make one with `python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install icalendar==6.3.2 python-dateutil==2.9.0.post0` \
               (or set BATTLEPLAN_SMTP_PYTHON to a Python that has it)";
    assert!(
        std::env::var("CI").map_or(true, |ci| ci != "true"),
        "CI=true and no Python with icalendar at {}: {how}",
        candidate.display()
    );
    eprintln!(
        "\n!!! SKIPPED: this test needs a Python with icalendar ({} lacks it): {how}\n",
        candidate.display()
    );
    None
}

/// The calendar as `icalendar` reads it (`tests/ics_read.py`).
fn read_back(python: &Path, ics: &[u8]) -> Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ics).unwrap();
    let output = Command::new(python)
        .arg(workspace().join("tests/ics_read.py"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "icalendar could not read the calendar: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(ics)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["others"], serde_json::json!([]), "{read:#}");
    read
}

/// The raw text, checked line by line as RFC 5545 says: CRLF after every line and no other
/// line break, at most 75 octets a line, each line whole UTF-8 (a fold never splits a
/// character), continuation lines starting with a space.
fn check_raw(ics: &[u8]) {
    assert!(ics.ends_with(b"\r\n"), "no CRLF at the end");
    let mut pieces: Vec<&[u8]> = ics.split(|byte| *byte == b'\n').collect();
    // What follows the last line break: nothing.
    assert_eq!(pieces.pop(), Some(&b""[..]));
    let mut lines = 0;
    for (index, line) in pieces.into_iter().enumerate() {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("line {} ends with a bare LF", index + 1));
        assert!(!line.contains(&b'\r'), "a bare CR on line {}", index + 1);
        assert!(
            line.len() <= 75,
            "line {} has {} octets: {}",
            index + 1,
            line.len(),
            String::from_utf8_lossy(line)
        );
        assert!(
            std::str::from_utf8(line).is_ok(),
            "line {} splits a character: {line:?}",
            index + 1
        );
        lines += 1;
    }
    assert!(lines > 10);
}

// ----- expected instants, computed here -----

/// A local time of `zone` (`2026-11-01 09:00`) as UTC, the earlier instant when the clocks
/// repeat it, written as the reader writes instants.
fn utc(zone: Tz, local: &str) -> String {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
    zone.from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn plus(instant: &str, seconds: i64) -> String {
    let at = chrono::DateTime::parse_from_rfc3339(instant)
        .unwrap()
        .with_timezone(&Utc);
    (at + Duration::seconds(seconds))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A day's local midnight, and the midnight after the last day: a phase of whole days.
fn days(zone: Tz, first: &str, last: &str) -> (String, String) {
    let after = chrono::NaiveDate::parse_from_str(last, "%Y-%m-%d")
        .unwrap()
        .succ_opt()
        .unwrap();
    (
        utc(zone, &format!("{first} 00:00")),
        utc(zone, &format!("{after} 00:00")),
    )
}

/// What a to-do must hold.
#[derive(Debug, Clone, PartialEq)]
struct Todo {
    due: String,
    role: String,
    /// The instants its alarms ring at, in order.
    alarms: Vec<String>,
}

fn todo(due: &str, role: &str, offsets: &[i64]) -> Todo {
    Todo {
        due: due.to_string(),
        role: role.to_string(),
        alarms: offsets.iter().map(|offset| plus(due, *offset)).collect(),
    }
}

fn events_of(read: &Value) -> BTreeMap<String, (String, String)> {
    read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["uid"].as_str().unwrap().to_string(),
                (
                    event["start"].as_str().unwrap().to_string(),
                    event["end"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn todos_of(read: &Value) -> BTreeMap<String, Todo> {
    read["todos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|todo| {
            let categories = todo["categories"].as_array().unwrap();
            assert_eq!(categories.len(), 1, "{todo:#}");
            (
                todo["uid"].as_str().unwrap().to_string(),
                Todo {
                    due: todo["due"].as_str().unwrap().to_string(),
                    role: categories[0].as_str().unwrap().to_string(),
                    alarms: todo["alarms"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|alarm| {
                            assert_eq!(alarm["action"], "DISPLAY", "{alarm:#}");
                            assert!(alarm["description"].is_string(), "{alarm:#}");
                            alarm["at"].as_str().unwrap().to_string()
                        })
                        .collect(),
                },
            )
        })
        .collect()
}

fn todo_by<'a>(read: &'a Value, uid: &str) -> &'a Value {
    read["todos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|todo| todo["uid"] == uid)
        .unwrap_or_else(|| panic!("no to-do {uid} in {read:#}"))
}

/// Every component has this SEQUENCE and DTSTAMP.
fn check_stamps(read: &Value, sequence: i64, stamp: &str) {
    for kind in ["events", "todos"] {
        for component in read[kind].as_array().unwrap() {
            assert_eq!(component["sequence"], sequence, "{component:#}");
            assert_eq!(component["stamp"], stamp, "{component:#}");
        }
    }
}

fn calendar(dir: &Path, arguments: &[&str]) -> Run {
    let mut all = vec!["calendar"];
    all.extend_from_slice(arguments);
    bp(dir, &all)
}

// ----- the September festival -----

#[test]
fn the_september_festival_round_trips_every_phase_stage_and_occurrence_of_the_board() {
    let Some(python) = icalendar_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    let clock = "2026-08-01T00:00:00Z";
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", clock],
    ));
    let campaign = "sept-festival-2026";
    let run = ok(calendar(dir, &[campaign, "--clock-at", clock]));
    let ics = run.stdout.as_bytes();
    check_raw(ics);
    let read = read_back(&python, ics);
    assert_eq!(read["calendar"]["version"], "2.0");
    assert_eq!(read["calendar"]["method"], "PUBLISH");
    assert_eq!(read["calendar"]["calscale"], "GREGORIAN");
    assert_eq!(
        read["calendar"]["name"],
        "September Procurement Festival 2026"
    );
    assert_eq!(read["calendar"]["time_zone"], "Asia/Shanghai");
    check_stamps(&read, 1, clock);

    // Phases and stages: whole local days in Shanghai (+08:00), computed here.
    let shanghai = chrono_tz::Asia::Shanghai;
    let uid = |kind: &str, id: &str| format!("{kind}-{id}.{campaign}@battleplan");
    let expected: BTreeMap<String, (String, String)> = [
        (
            uid("phase", "prep"),
            days(shanghai, "2026-08-19", "2026-08-25"),
        ),
        (
            uid("phase", "warm_up"),
            days(shanghai, "2026-08-26", "2026-09-01"),
        ),
        (
            uid("phase", "burst"),
            days(shanghai, "2026-09-02", "2026-09-30"),
        ),
        (
            uid("phase", "review"),
            days(shanghai, "2026-10-01", "2026-10-07"),
        ),
        (
            uid("stage", "early"),
            days(shanghai, "2026-09-02", "2026-09-10"),
        ),
        (
            uid("stage", "middle"),
            days(shanghai, "2026-09-11", "2026-09-20"),
        ),
        (
            uid("stage", "late"),
            days(shanghai, "2026-09-21", "2026-09-30"),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(events_of(&read), expected);
    assert_eq!(
        expected[&uid("phase", "prep")].0,
        "2026-08-18T16:00:00Z",
        "chrono-tz itself"
    );

    // Every occurrence of the task board, no more, with its due instant and role.
    let board: Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "tasks",
                "--campaign",
                campaign,
                "--json",
                "--clock-at",
                clock,
            ],
        ))
        .stdout,
    )
    .unwrap();
    let todos = todos_of(&read);
    let rows = board["rows"].as_array().unwrap();
    assert_eq!(todos.len(), rows.len());
    for row in rows {
        let occurrence = row["occurrence"].as_str().unwrap();
        let uid = format!(
            "task-{}.{campaign}@battleplan",
            occurrence.replace('@', ".")
        );
        let todo = todos
            .get(&uid)
            .unwrap_or_else(|| panic!("{occurrence} is not in the calendar"));
        let due = chrono::DateTime::parse_from_rfc3339(row["due"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        assert_eq!(todo.due, due, "{occurrence}");
        assert_eq!(todo.role, row["role"], "{occurrence}");
        let read_todo = todo_by(&read, &uid);
        assert_eq!(read_todo["summary"], row["title"], "{occurrence}");
        assert_eq!(read_todo["status"], "NEEDS-ACTION", "{occurrence}");
    }

    // A few tasks, their instants and reminders computed here from the plan's words.
    // "prep.end - 2d": Aug 26 00:00 less two days; reminders 1 d and 2 h ahead, escalated a day
    // after (the unfiltered calendar is the boss's too).
    assert_eq!(
        todos[&uid("task", "pick-high-potential")],
        todo(
            &utc(shanghai, "2026-08-24 00:00"),
            "sales",
            &[-86_400, -7_200, 0, 86_400]
        )
    );
    // "burst.start + 10h", reminded a day ahead, escalated 4 h after.
    assert_eq!(
        todos[&uid("task", "official-stage-templates")],
        todo(
            &utc(shanghai, "2026-09-02 10:00"),
            "ops",
            &[-86_400, 0, 14_400]
        )
    );
    // Daily at 10:00 through the burst: 29 days, an hour's reminder each.
    let mut day = chrono::NaiveDate::from_ymd_opt(2026, 9, 2).unwrap();
    let mut count = 0;
    while day <= chrono::NaiveDate::from_ymd_opt(2026, 9, 30).unwrap() {
        let uid = format!("task-smart-batch-messages.{day}.{campaign}@battleplan");
        assert_eq!(
            todos[&uid],
            todo(
                &utc(shanghai, &format!("{day} 10:00")),
                "sales",
                &[-3_600, 0]
            ),
            "{day}"
        );
        day = day.succ_opt().unwrap();
        count += 1;
    }
    assert_eq!(count, 29);
}

// ----- a New York campaign across the end of daylight saving time -----

const NEW_YORK: &str = "ny-fall-2026";
const CHINESE_TITLE: &str =
    "准备双十一直播间的优惠券和商品链接，确认库存；再检查一遍所有商品的价格和详情页";

fn new_york_plan(daily_at: &str, report_remind: &str) -> String {
    format!(
        r#"format = 1

[campaign]
id = "ny-fall-2026"
name = "New York fall sale"
time_zone = "America/New_York"
currency = "USD"
description = "Our fall sale; the clocks go back on Sunday, November 1."

[phases.prep]
start = 2026-10-26
end = 2026-10-28

[phases.warm_up]
start = 2026-10-29
end = 2026-10-31

[phases.burst]
start = 2026-11-01
end = 2026-11-03

[phases.review]
start = 2026-11-04
end = 2026-11-05

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
description = "Numbers from the shop's data tool, by day.\nOne page \\ no more."
due = 2026-10-31T18:00:00
remind = {report_remind}
escalate_after = "6h"

[tasks.daily-check]
workstream = "data"
role = "sales"
phase = "warm_up"
title = "{CHINESE_TITLE}"
repeat = "daily"
at = "{daily_at}"
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

[tasks.boss-review]
workstream = "data"
role = "boss"
phase = "review"
title = "Review the sale"
due = 2026-11-04T12:00:00
remind = ["30m"]
"#
    )
}

/// Every to-do of the New York plan, computed here: the daily check at `daily_hour` local, the
/// report reminded `report_leads` seconds ahead.
fn new_york_todos(daily_hour: u32, report_leads: &[i64]) -> BTreeMap<String, Todo> {
    let zone = chrono_tz::America::New_York;
    let uid = |occurrence: &str| format!("task-{occurrence}.{NEW_YORK}@battleplan");
    let mut todos = BTreeMap::new();
    let mut report: Vec<i64> = report_leads.to_vec();
    report.extend([0, 6 * 3600]);
    todos.insert(
        uid("report"),
        todo(&utc(zone, "2026-10-31 18:00"), "ops", &report),
    );
    for day in [
        "2026-10-30",
        "2026-10-31",
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ] {
        todos.insert(
            uid(&format!("daily-check.{day}")),
            todo(
                &utc(zone, &format!("{day} {daily_hour:02}:00")),
                "sales",
                &[-86_400, 0],
            ),
        );
    }
    for day in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        todos.insert(
            uid(&format!("night-check.{day}")),
            todo(&utc(zone, &format!("{day} 01:30")), "sales", &[0]),
        );
    }
    todos.insert(
        uid("boss-review"),
        todo(&utc(zone, "2026-11-04 12:00"), "boss", &[-1_800, 0]),
    );
    todos
}

fn new_york_events() -> BTreeMap<String, (String, String)> {
    let zone = chrono_tz::America::New_York;
    let uid = |kind: &str, id: &str| format!("{kind}-{id}.{NEW_YORK}@battleplan");
    [
        (uid("phase", "prep"), days(zone, "2026-10-26", "2026-10-28")),
        (
            uid("phase", "warm_up"),
            days(zone, "2026-10-29", "2026-10-31"),
        ),
        (
            uid("phase", "burst"),
            days(zone, "2026-11-01", "2026-11-03"),
        ),
        (
            uid("phase", "review"),
            days(zone, "2026-11-04", "2026-11-05"),
        ),
        (
            uid("stage", "opening"),
            days(zone, "2026-11-01", "2026-11-01"),
        ),
        (
            uid("stage", "closing"),
            days(zone, "2026-11-02", "2026-11-03"),
        ),
    ]
    .into_iter()
    .collect()
}

fn with_role(todos: &BTreeMap<String, Todo>, roles: &[&str]) -> BTreeMap<String, Todo> {
    todos
        .iter()
        .filter(|(_, todo)| roles.contains(&todo.role.as_str()))
        .map(|(uid, todo)| (uid.clone(), todo.clone()))
        .collect()
}

/// The to-dos as a calendar without the boss's escalations has them.
fn without_escalations(todos: &BTreeMap<String, Todo>) -> BTreeMap<String, Todo> {
    let mut todos = todos.clone();
    for todo in todos.values_mut() {
        let escalation = plus(&todo.due, 6 * 3600);
        todo.alarms.retain(|at| *at != escalation);
    }
    todos
}

#[test]
fn a_new_york_calendar_across_the_end_of_daylight_saving_time() {
    let Some(python) = icalendar_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("plan.toml"),
        new_york_plan("09:00", r#"["1d", "2h"]"#),
    )
    .unwrap();
    let applied = "2026-10-01T12:00:00Z";
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", applied],
    ));

    // The instants: 09:00 is 13:00 UTC while New York keeps EDT, 14:00 UTC once it is back on
    // EST; 01:30 on Nov 1 happens twice and is the first (EDT) one.
    let expected = new_york_todos(9, &[-86_400, -7_200]);
    let uid = |occurrence: &str| format!("task-{occurrence}.{NEW_YORK}@battleplan");
    assert_eq!(
        expected[&uid("daily-check.2026-10-31")].due,
        "2026-10-31T13:00:00Z"
    );
    assert_eq!(
        expected[&uid("daily-check.2026-11-01")].due,
        "2026-11-01T14:00:00Z"
    );
    assert_eq!(
        expected[&uid("night-check.2026-11-01")].due,
        "2026-11-01T05:30:00Z"
    );
    // A day ahead of 09:00 EST is 10:00 EDT the day before: 24 hours, not "the same hour".
    assert_eq!(
        expected[&uid("daily-check.2026-11-01")].alarms[0],
        "2026-10-31T14:00:00Z"
    );

    let first = "2026-10-01T12:30:00Z";
    let run = ok(calendar(dir, &[NEW_YORK, "--clock-at", first]));
    let ics = run.stdout.clone().into_bytes();
    check_raw(&ics);
    // The Chinese title is folded, between characters.
    let folded_summary = run
        .stdout
        .split("\r\n")
        .position(|line| line.starts_with("SUMMARY:准备"))
        .unwrap();
    assert!(
        run.stdout
            .split("\r\n")
            .nth(folded_summary + 1)
            .unwrap()
            .starts_with(' '),
        "{}",
        run.stdout
    );
    let read = read_back(&python, &ics);
    assert_eq!(read["calendar"]["name"], "New York fall sale");
    assert_eq!(read["calendar"]["time_zone"], "America/New_York");
    check_stamps(&read, 1, first);
    assert_eq!(events_of(&read), new_york_events());
    assert_eq!(todos_of(&read), expected);
    // Text round-trips through the escaping: commas, semicolons, a backslash, a line break,
    // and a title of three-octet characters longer than a line.
    let report = todo_by(&read, &uid("report"));
    assert_eq!(report["summary"], "Write the report; then, send it");
    let description = report["description"].as_str().unwrap();
    assert!(
        description.starts_with(
            "Numbers from the shop's data tool, by day.\nOne page \\ no more.\n\nDue 2026-10-31 18:00 -04:00."
        ),
        "{description}"
    );
    assert_eq!(
        todo_by(&read, &uid("daily-check.2026-11-01"))["summary"],
        CHINESE_TITLE
    );
    assert_eq!(report["status"], "NEEDS-ACTION");

    // The same log and clock, the same bytes; another clock changes only DTSTAMP.
    assert_eq!(
        ok(calendar(dir, &[NEW_YORK, "--clock-at", first])).stdout,
        run.stdout
    );
    let later = ok(calendar(
        dir,
        &[NEW_YORK, "--clock-at", "2026-10-01T13:00:00Z"],
    ))
    .stdout;
    assert_eq!(
        later.replace("DTSTAMP:20261001T130000Z", "DTSTAMP:20261001T123000Z"),
        run.stdout
    );

    // --out: the same bytes in a file, whole, a document (0644).
    let wrote = ok(calendar(
        dir,
        &[NEW_YORK, "--out", "ny.ics", "--clock-at", first],
    ));
    assert!(
        wrote
            .stdout
            .starts_with("wrote ny.ics: 6 events, 10 to-dos"),
        "{}",
        wrote.stdout
    );
    assert_eq!(std::fs::read(dir.join("ny.ics")).unwrap(), ics);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ny.ics"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{mode:o}");
    }
    let nowhere = calendar(
        dir,
        &[NEW_YORK, "--out", "missing/ny.ics", "--clock-at", first],
    );
    assert_eq!(nowhere.code, 2, "{nowhere:?}");
    assert!(
        nowhere.stderr.contains("does not exist"),
        "{}",
        nowhere.stderr
    );

    // Filters: a role's tasks, a person's (through their roles); phases and stages always.
    let sales = read_back(
        &python,
        ok(calendar(
            dir,
            &[NEW_YORK, "--role", "sales", "--clock-at", first],
        ))
        .stdout
        .as_bytes(),
    );
    assert_eq!(sales["calendar"]["name"], "New York fall sale · sales");
    assert_eq!(events_of(&sales), new_york_events());
    assert_eq!(todos_of(&sales), with_role(&expected, &["sales"]));
    let li_na = read_back(
        &python,
        ok(calendar(
            dir,
            &[NEW_YORK, "--person", "li.na", "--clock-at", first],
        ))
        .stdout
        .as_bytes(),
    );
    // The escalation goes to the boss: it is no alarm of ops' calendar.
    assert_eq!(
        todos_of(&li_na),
        without_escalations(&with_role(&expected, &["ops"]))
    );
    let boss = read_back(
        &python,
        ok(calendar(
            dir,
            &[NEW_YORK, "--person", "chen.jie", "--clock-at", first],
        ))
        .stdout
        .as_bytes(),
    );
    assert_eq!(todos_of(&boss), with_role(&expected, &["boss"]));
    for (arguments, said) in [
        (
            vec!["--role", "marketing"],
            "campaign ny-fall-2026 has no role `marketing`; it has: ops, sales, boss",
        ),
        (
            vec!["--person", "li.nz"],
            "no role of campaign ny-fall-2026 lists `li.nz` as a member; did you mean `li.na`?",
        ),
        (
            vec!["--role", "sales", "--person", "li.na"],
            "`li.na` is not a member of role `sales`",
        ),
    ] {
        let mut all = vec![NEW_YORK];
        all.extend(arguments);
        all.extend(["--clock-at", first]);
        let refused = calendar(dir, &all);
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(refused.stderr.contains(said), "{}", refused.stderr);
        assert!(refused.stdout.is_empty());
    }
    let ghost = calendar(dir, &["ghost", "--clock-at", first]);
    assert_eq!(ghost.code, 2, "{ghost:?}");
    assert!(
        ghost.stderr.contains("no campaign named ghost"),
        "{}",
        ghost.stderr
    );

    // A revision moves the daily check to 10:00 and the report's second reminder to 3 h ahead:
    // the same UIDs, SEQUENCE 2, the new instants.
    std::fs::write(
        dir.join("plan.toml"),
        new_york_plan("10:00", r#"["1d", "3h"]"#),
    )
    .unwrap();
    let revised_at = "2026-10-02T12:00:00Z";
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", revised_at],
    ));
    let revised = read_back(
        &python,
        ok(calendar(dir, &[NEW_YORK, "--clock-at", revised_at]))
            .stdout
            .as_bytes(),
    );
    check_stamps(&revised, 2, revised_at);
    let expected = new_york_todos(10, &[-86_400, -10_800]);
    assert_eq!(
        expected[&uid("daily-check.2026-11-01")].due,
        "2026-11-01T15:00:00Z"
    );
    assert_eq!(events_of(&revised), new_york_events());
    assert_eq!(todos_of(&revised), expected);

    // Done: completed at the instant it was recorded, its reminders gone.
    let done_at = "2026-10-31T20:00:00Z";
    ok(bp(
        dir,
        &[
            "task",
            "done",
            "report",
            "--campaign",
            NEW_YORK,
            "--actor",
            "li.na",
            "--note",
            "sent, early",
            "--clock-at",
            done_at,
        ],
    ));

    // Over HTTP, from the daemon: a calendar token in the query string; a manager's refused
    // there and taken in the header.
    let calendar_token = token(dir, "li.na.calendar", "calendar");
    let manager_token = token(dir, "mia", "manager");
    let now = "2026-10-31T21:00:00Z";
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            now,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let address = http::address_in(&daemon.wait_for("HTTP API on http://"));
    daemon.wait_for("caught up");
    let get = |path: &str, headers: &[(&str, &str)]| {
        http::send(&address, "GET", path, headers, b"")
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    };
    let url = format!("/api/v1/calendar/{NEW_YORK}.ics");
    let answer = get(&format!("{url}?token={calendar_token}"), &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("text/calendar; charset=utf-8")
    );
    check_raw(&answer.body);
    // The command line, through the same daemon, says the same bytes.
    assert_eq!(
        ok(calendar(dir, &[NEW_YORK])).stdout.as_bytes(),
        answer.body
    );
    let served = read_back(&python, &answer.body);
    check_stamps(&served, 2, now);
    assert_eq!(events_of(&served), new_york_events());
    let report = todo_by(&served, &uid("report"));
    assert_eq!(report["status"], "COMPLETED");
    assert_eq!(report["completed"], done_at);
    assert_eq!(report["alarms"], serde_json::json!([]));
    assert!(
        report["description"]
            .as_str()
            .unwrap()
            .ends_with("Done by li.na at 2026-10-31 16:00 -04:00: sent, early"),
        "{report:#}"
    );
    let mut open = expected.clone();
    open.remove(&uid("report"));
    let mut served_todos = todos_of(&served);
    served_todos.remove(&uid("report"));
    assert_eq!(served_todos, open);

    let sales = get(&format!("{url}?role=sales&token={calendar_token}"), &[]);
    assert_eq!(sales.status, 200, "{}", sales.text());
    assert_eq!(
        todos_of(&read_back(&python, &sales.body)),
        with_role(&expected, &["sales"])
    );
    let person = get(
        &format!("{url}?person=wang.wei&token={calendar_token}"),
        &[],
    );
    assert_eq!(person.status, 200, "{}", person.text());
    assert_eq!(
        todos_of(&read_back(&python, &person.body)),
        with_role(&expected, &["sales"])
    );

    // A manager's token in a URL is refused, saying what to do instead.
    let refused = get(&format!("{url}?token={manager_token}"), &[]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    let problem = refused.problem();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("--role calendar"), "{detail}");
    assert!(!refused.text().contains(&manager_token));
    // In the header, it reads the calendar as every role may.
    let bearer = format!("Bearer {manager_token}");
    let header = get(&url, &[("Authorization", bearer.as_str())]);
    assert_eq!(header.status, 200, "{}", header.text());
    assert_eq!(header.body, answer.body);
    // A calendar token reads nothing else.
    let bearer = format!("Bearer {calendar_token}");
    let elsewhere = get(
        &format!("/api/v1/campaigns/{NEW_YORK}/tasks"),
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.text());
    let elsewhere = get(
        &format!("/api/v1/campaigns/{NEW_YORK}/tasks?token={calendar_token}"),
        &[],
    );
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.text());
    // No token, an unknown one, a wrong address, a campaign or role that is not there.
    let none = get(&url, &[]);
    assert_eq!(none.status, 401, "{}", none.text());
    assert!(none.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("?token="));
    let unknown = get(&format!("{url}?token=bpt_{}", "0".repeat(64)), &[]);
    assert_eq!(unknown.status, 401, "{}", unknown.text());
    let bare = get(
        &format!("/api/v1/calendar/{NEW_YORK}?token={calendar_token}"),
        &[],
    );
    assert_eq!(bare.status, 404, "{}", bare.text());
    assert!(bare.problem()["detail"].as_str().unwrap().contains(".ics"));
    let ghost = get(
        &format!("/api/v1/calendar/ghost.ics?token={calendar_token}"),
        &[],
    );
    assert_eq!(ghost.status, 404, "{}", ghost.text());
    assert_eq!(ghost.problem()["code"], "unknown_campaign");
    let role = get(&format!("{url}?role=marketing&token={calendar_token}"), &[]);
    assert_eq!(role.status, 404, "{}", role.text());
    assert!(role.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("marketing"));

    // The daemon logged every request, and no token.
    let (_, log) = daemon.terminate();
    let log = log.join("\n");
    assert!(log.contains("/api/v1/calendar/{file}"), "{log}");
    for secret in [&calendar_token, &manager_token] {
        assert!(!log.contains(secret.as_str()), "a token in the log:\n{log}");
    }
    assert!(!log.contains("token=bpt_"), "{log}");
}

fn token(dir: &Path, name: &str, role: &str) -> String {
    let made = ok(bp(
        dir,
        &["token", "create", "--name", name, "--role", role],
    ));
    made.stdout.trim().to_string()
}
