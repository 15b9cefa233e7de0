//! The daily cap on the day messages go, with the real binary: the warm-up's mail (cap lowered to
//! 200 a day, 50 of them free) held over its first day, by the daemon not running or by a pause
//! of the campaign, then caught up: every local day of the file outbox holds at most the cap,
//! the first day's sends having moved on to days with room, and `explain` says why.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{bp, instant, mutate, ok, run_in, Daemon};
use chrono::FixedOffset;

const CAMPAIGN: &str = "sept-festival-2026";
const CAP: u32 = 200;
/// The warm-up opens at midnight; mail's quiet hours end at 08:00, when the first mails go.
const BEFORE_FIRST_SEND: &str = "2026-08-26T07:00:00+08:00";
/// The second day, past noon: the first day's sends were never sent on it.
const CAUGHT_UP: &str = "2026-08-27T12:00:00+08:00";
const END: &str = "2026-08-30T00:00:00+08:00";

/// The example plan with mail capped at 200 a day (50 free), applied; 3,000 customers.
fn festival(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let plan = mutate(
        &example,
        &[
            (
                "daily_cap = 2000            # the platform's initial cap",
                "daily_cap = 200             # lowered so the warm-up spreads over days",
            ),
            (
                "free_per_day = 200          # the first 200 a day are free",
                "free_per_day = 50           # lowered under the cap",
            ),
        ],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let options = Options {
        count: 3_000,
        seed: 7,
        as_of: instant("2026-08-20T00:00:00+08:00"),
        format: FileFormat::Csv,
    };
    let mut customers = Vec::new();
    write_customers(&mut customers, options).unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    ));
}

/// Runs the daemon under a virtual clock from `from` until `until`.
fn simulate(dir: &Path, from: &str, until: &str) {
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            from,
            "--until",
            until,
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
}

/// Mails in the file outbox per local day (Asia/Shanghai) they went.
fn mail_per_day(dir: &Path) -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(dir.join("data/outbox/mail.jsonl")).unwrap_or_default();
    let zone = FixedOffset::east_opt(8 * 3600).unwrap();
    let mut days = BTreeMap::new();
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = instant(line["at"].as_str().unwrap());
        *days
            .entry(at.with_timezone(&zone).format("%Y-%m-%d").to_string())
            .or_default() += 1;
    }
    days
}

/// Every day within the cap; the first day sent nothing, the second its full cap.
fn assert_within_the_cap(dir: &Path) {
    let days = mail_per_day(dir);
    for (day, sent) in &days {
        assert!(
            *sent <= CAP,
            "{sent} mails on {day}, over the cap of {CAP}: {days:?}"
        );
    }
    assert_eq!(days.get("2026-08-26"), None, "{days:?}");
    assert_eq!(days.get("2026-08-27"), Some(&CAP), "{days:?}");
    assert_eq!(days.get("2026-08-28"), Some(&CAP), "{days:?}");
}

/// A customer the warm-up recall planned for the first day, from the outbox's own account.
fn planned_for_the_first_day(dir: &Path, clock: &str) -> String {
    let report: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "outbox",
                CAMPAIGN,
                "--reach-out",
                "warm-up-recall",
                "--json",
                "--customers",
                "--clock-at",
                clock,
            ],
        ))
        .stdout,
    )
    .unwrap();
    report["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| {
            row["status"] == "pending"
                && row["at"]
                    .as_str()
                    .is_some_and(|at| instant(at) == instant("2026-08-26T08:00:00+08:00"))
        })
        .map(|row| row["customer"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn after_downtime_over_a_day_the_catch_up_keeps_every_day_within_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    festival(dir);
    // Planned at midnight, nothing sent yet; then the daemon is down until the second day.
    simulate(dir, "2026-08-26T00:00:00+08:00", BEFORE_FIRST_SEND);
    assert!(mail_per_day(dir).is_empty());
    let customer = planned_for_the_first_day(dir, BEFORE_FIRST_SEND);
    simulate(dir, CAUGHT_UP, END);
    assert_within_the_cap(dir);
    let answer = ok(bp(dir, &["explain", CAMPAIGN, &customer, "--as-of", END])).stdout;
    assert!(answer.contains("moved by mail to"), "{answer}");
    assert!(
        answer.contains("(the dispatcher was not running)"),
        "{answer}"
    );
}

#[test]
fn after_a_pause_and_resume_no_day_sends_more_than_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    festival(dir);
    simulate(dir, "2026-08-26T00:00:00+08:00", BEFORE_FIRST_SEND);
    let customer = planned_for_the_first_day(dir, BEFORE_FIRST_SEND);
    ok(bp(
        dir,
        &[
            "pause",
            CAMPAIGN,
            "--actor",
            "alice",
            "--reason",
            "stock check",
            "--clock-at",
            BEFORE_FIRST_SEND,
        ],
    ));
    simulate(dir, BEFORE_FIRST_SEND, CAUGHT_UP);
    assert!(mail_per_day(dir).is_empty());
    ok(bp(
        dir,
        &[
            "resume",
            CAMPAIGN,
            "--actor",
            "alice",
            "--reason",
            "stock arrived",
            "--clock-at",
            CAUGHT_UP,
        ],
    ));
    simulate(dir, CAUGHT_UP, END);
    assert_within_the_cap(dir);
    let answer = ok(bp(dir, &["explain", CAMPAIGN, &customer, "--as-of", END])).stdout;
    assert!(
        answer.contains(
            "held by the campaign's pause from 2026-08-26 07:00 +08:00 to 2026-08-27 12:00 +08:00"
        ),
        "{answer}"
    );
}
