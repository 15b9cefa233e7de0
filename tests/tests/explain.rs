//! The auditor's tools end to end, with the real binary: `explain CAMPAIGN CUSTOMER` answering
//! for a customer reached, one fatigued when planned (placed once the fatigue ends, in the
//! preview, the run and the answer alike), one pushed to a later day by the mail quota and one
//! unsubscribed, each with the rule and the numbers behind it (insta snapshots); and `history
//! --as-of`, which replays only the events recorded up to an instant.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{bp, instant, mutate, ok, run_in, Daemon, Run};
use chrono::{DateTime, Utc};

const CAMPAIGN: &str = "sept-festival-2026";
const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
/// Mid warm-up: the recall's mail has gone out, the burst's mail is not planned yet.
const MID_WARM_UP: &str = "2026-08-29T00:00:00+08:00";
const BURST: &str = "2026-09-02T00:00:00+08:00";
const EARLY_STAGE: &str = "2026-09-03T00:00:00+08:00";

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&ok(run).stdout).unwrap()
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

/// The example plan, applied, with the mail's daily cap at 300 (200 of them free) so that the
/// warm-up recall's ~470 reachable customers spread over two days; 3,000 generated customers.
fn festival(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let plan = mutate(
        &example,
        &[(
            "daily_cap = 2000            # the platform's initial cap",
            "daily_cap = 300             # lowered so the warm-up spreads over days",
        )],
    );
    assert_ne!(plan, example, "the example's mail cap moved");
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

/// What became of a customer's first message: status, reason, instant sent.
type Fate = (String, Option<String>, Option<DateTime<Utc>>);

/// A reach-out's customers from `outbox --json --customers`: customer -> (status, reason, at).
fn outbox(dir: &Path, reach_out: &str, clock: &str) -> BTreeMap<String, Fate> {
    let report = json(bp(
        dir,
        &[
            "outbox",
            CAMPAIGN,
            "--reach-out",
            reach_out,
            "--json",
            "--customers",
            "--clock-at",
            clock,
        ],
    ));
    report["customers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["attempt"] == 1)
        .map(|row| {
            (
                row["customer"].as_str().unwrap().to_string(),
                (
                    row["status"].as_str().unwrap().to_string(),
                    row["reason"].as_str().map(str::to_string),
                    row["at"].as_str().map(instant),
                ),
            )
        })
        .collect()
}

fn explain(dir: &Path, customer: &str, as_of: &str, json: bool) -> Run {
    let mut arguments = vec!["explain", CAMPAIGN, customer, "--as-of", as_of];
    if json {
        arguments.push("--json");
    }
    bp(dir, &arguments)
}

#[test]
fn explain_says_why_each_customer_was_reached_or_not_with_the_rule_and_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    festival(dir);
    simulate(dir, WARM_UP, MID_WARM_UP);

    // The recall's mail: 300 on its first day (the cap), the rest on the second.
    let recall = outbox(dir, "warm-up-recall", MID_WARM_UP);
    let sent_on = |day: &str| -> Vec<String> {
        recall
            .iter()
            .filter(|(_, (status, _, at))| {
                status == "sent" && at.is_some_and(|at| at.to_rfc3339().starts_with(day))
            })
            .map(|(customer, _)| customer.clone())
            .collect()
    };
    // 08:00 in Shanghai is midnight UTC: the day's first sends go at the day's opening.
    let first_day = sent_on("2026-08-26");
    let second_day = sent_on("2026-08-27");
    assert_eq!(first_day.len(), 300, "the first day holds the daily cap");
    assert!(!second_day.is_empty());
    let reached = first_day[0].clone();
    let pushed = second_day[0].clone();

    // Who the early-stage mail finds fatigued by the recall when the burst opens: those the
    // recall reached on its second day at 08:00, fatigued until 2026-09-03 08:00. Fatigue is
    // decided for the instant a message goes: the preview plans them then, not never.
    let preview = json(bp(
        dir,
        &[
            "audience",
            "preview",
            CAMPAIGN,
            "--reach-out",
            "early-stage-mail",
            "--at",
            BURST,
            "--json",
            "--customers",
            "--clock-at",
            MID_WARM_UP,
        ],
    ));
    let planned_at: BTreeMap<String, DateTime<Utc>> = preview["customers"]["sends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["customer"].as_str().unwrap().to_string(),
                instant(row["at"].as_str().unwrap()),
            )
        })
        .collect();
    assert!(
        preview["after_fatigue"].as_u64().unwrap() > 0,
        "{preview:#}"
    );
    let after_fatigue = instant("2026-09-03T08:00:00+08:00");
    // Placed from then on, on the first day with room (the cap is 300 a day).
    let fatigued = second_day
        .iter()
        .find(|customer| {
            **customer != pushed
                && planned_at
                    .get(*customer)
                    .is_some_and(|at| *at >= after_fatigue)
        })
        .unwrap()
        .clone();

    // One the recall reached on its first day, to unsubscribe before the burst.
    let unsubscribed = first_day
        .iter()
        .find(|customer| **customer != reached && planned_at.contains_key(*customer))
        .unwrap()
        .clone();

    // The unsubscribed customer unsubscribes from the recall's message, imported mid warm-up.
    std::fs::write(
        dir.join("outcomes.csv"),
        format!(
            "customer,outcome,at,campaign,reach_out,channel,amount,message\n\
             {unsubscribed},unsubscribed,2026-08-28T09:30:00+08:00,{CAMPAIGN},warm-up-recall,mail,,{CAMPAIGN}/warm-up-recall/{unsubscribed}/1\n"
        ),
    )
    .unwrap();
    ok(bp(
        dir,
        &[
            "outcomes",
            "import",
            "outcomes.csv",
            "--actor",
            "li.na",
            "--clock-at",
            MID_WARM_UP,
        ],
    ));
    simulate(dir, MID_WARM_UP, EARLY_STAGE);

    // The run planned the fatigued customer after the fatigue too (a day or so later than
    // the preview said: the recall's follow-ups, planned since, took some of the early days'
    // quota).
    let early = outbox(dir, "early-stage-mail", EARLY_STAGE);
    let (status, reason, fatigued_at) = early[&fatigued].clone();
    assert_eq!((status.as_str(), reason), ("pending", None));
    let fatigued_at = fatigued_at.unwrap();
    assert!(fatigued_at >= planned_at[&fatigued], "{fatigued_at}");
    let fatigued_words = fatigued_at
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M %:z")
        .to_string();
    assert_eq!(early[&unsubscribed].1.as_deref(), Some("unsubscribed"));

    // Reached: as of mid warm-up, nothing of the burst is read into the answer.
    let answer = ok(explain(dir, &reached, MID_WARM_UP, false)).stdout;
    assert!(
        answer.contains("sent by mail with template warm-up-mail"),
        "{answer}"
    );
    assert!(
        answer.contains("within the 200 free sends a day of a daily cap of 300"),
        "{answer}"
    );
    assert!(!answer.contains("early-stage-mail"), "{answer}");
    assert!(!answer.contains("2026-09-"), "{answer}");
    insta::assert_snapshot!("reached", answer);
    // Long after, the campaign's funnel still counts the customer as reached; the lifecycle
    // stage, over the last 30 days, no longer does.
    let later = ok(explain(dir, &reached, "2026-11-30T00:00:00+08:00", false)).stdout;
    let funnel = later
        .lines()
        .find(|line| line.trim_start().starts_with("funnel:"))
        .unwrap_or_default();
    assert!(funnel.contains("reached in this campaign"), "{later}");
    assert!(!funnel.contains("lifecycle: reached"), "{later}");

    // Pushed to the second day by the cap of the first.
    let answer = ok(explain(dir, &pushed, EARLY_STAGE, false)).stdout;
    assert!(
        answer.contains("2026-08-26 was full (300 of 300, the daily cap); planned for 2026-08-27"),
        "{answer}"
    );
    insta::assert_snapshot!("pushed_by_quota", answer);

    // Fatigued: the last reach, the channel's fatigue, the instant it ends, and the send
    // planned then, as the preview and the run have it.
    let answer = ok(explain(dir, &fatigued, EARLY_STAGE, false)).stdout;
    assert!(answer.contains("the channel's fatigue is 7 d"), "{answer}");
    assert!(
        answer.contains(&format!(
            "so not before 2026-09-03 08:00 +08:00): planned for {fatigued_words}"
        )),
        "{answer}"
    );
    assert!(
        answer.contains("placed once the fatigue of 7 d ends"),
        "{answer}"
    );
    insta::assert_snapshot!("fatigued", answer);

    // Unsubscribed: when, from which message, from which file.
    let answer = ok(explain(dir, &unsubscribed, EARLY_STAGE, false)).stdout;
    assert!(
        answer
            .contains("unsubscribed at 2026-08-28 09:30 +08:00 from the message of warm-up-recall"),
        "{answer}"
    );
    assert!(
        answer.contains("imported from outcomes.csv line 2"),
        "{answer}"
    );
    assert!(
        answer.contains("follow-ups of rule no-reply-7d stopped: unsubscribed"),
        "{answer}"
    );
    insta::assert_snapshot!("unsubscribed", answer);

    // The same in JSON, for scripts.
    let answer = json(explain(dir, &fatigued, EARLY_STAGE, true));
    let planned: Vec<&serde_json::Value> = answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["what"] == "planned" && entry["reach_out"] == "early-stage-mail")
        .collect();
    assert_eq!(planned.len(), 1, "{answer:#}");
    assert!(planned[0]["why"]
        .as_str()
        .unwrap()
        .contains("not before 2026-09-03 08:00 +08:00"));
    insta::assert_snapshot!("fatigued_json", format!("{answer:#}"));

    // Bad questions: a clear message and exit 2.
    let unknown = explain(dir, "c-999999", EARLY_STAGE, false);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("no customer `c-999999` in the customer book"),
        "{}",
        unknown.stderr
    );
    let before = explain(dir, &reached, "2026-07-01T00:00:00Z", false);
    assert_eq!(before.code, 2, "{}", before.stderr);
    assert!(
        before.stderr.contains("its plan was not applied by then"),
        "{}",
        before.stderr
    );
    let garbage = bp(
        dir,
        &["explain", CAMPAIGN, &reached, "--as-of", "last tuesday"],
    );
    assert_eq!(garbage.code, 2, "{}", garbage.stderr);

    // A running daemon gives the same answer; what it records meanwhile (its clock stands at the
    // end of the run) is after the instant asked, so it changes nothing.
    let asked = "2026-09-02T12:00:00+08:00";
    let local = ok(explain(dir, &fatigued, asked, false)).stdout;
    let mut daemon = Daemon::start(dir, &["--data", "data", "run", "--clock-at", EARLY_STAGE]);
    daemon.wait_for("other terminals reach this daemon");
    assert_eq!(ok(explain(dir, &fatigued, asked, false)).stdout, local);
    let (code, lines) = daemon.terminate();
    assert_eq!(code, 0, "{lines:#?}");
}

#[test]
fn history_as_of_replays_only_the_events_recorded_by_then() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
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
    // Into prep, then a pause and a resume by a person.
    simulate(
        dir,
        "2026-08-19T00:00:00+08:00",
        "2026-08-20T00:00:00+08:00",
    );
    ok(bp(
        dir,
        &[
            "pause",
            CAMPAIGN,
            "--actor",
            "alice",
            "--reason",
            "stock problem",
            "--clock-at",
            "2026-08-20T10:00:00+08:00",
        ],
    ));
    ok(bp(
        dir,
        &[
            "resume",
            CAMPAIGN,
            "--actor",
            "alice",
            "--reason",
            "stock is back",
            "--clock-at",
            "2026-08-21T10:00:00+08:00",
        ],
    ));

    let before = ok(bp(
        dir,
        &["history", CAMPAIGN, "--as-of", "2026-08-20T09:00:00+08:00"],
    ))
    .stdout;
    assert!(before.contains("status: prep"), "{before}");
    assert!(!before.contains("paused"), "{before}");
    assert!(!before.contains("stock problem"), "{before}");
    insta::assert_snapshot!("history_before_the_pause", before);

    let during = ok(bp(
        dir,
        &["history", CAMPAIGN, "--as-of", "2026-08-20T12:00:00+08:00"],
    ))
    .stdout;
    assert!(during.contains("status: paused in prep"), "{during}");
    assert!(during.contains("reason: stock problem"), "{during}");
    assert!(!during.contains("stock is back"), "{during}");
    insta::assert_snapshot!("history_during_the_pause", during);

    // JSON: no event recorded after the instant; the state replayed from the rest.
    let as_of = instant("2026-08-20T12:00:00+08:00");
    let answer = json(bp(
        dir,
        &["history", "--as-of", "2026-08-20T12:00:00+08:00", "--json"],
    ));
    let events = answer["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for event in events {
        let recorded_at = instant(event["recorded_at"].as_str().unwrap());
        assert!(recorded_at <= as_of, "{event:#}");
        assert_eq!(event["plan_version"], 1);
    }
    assert_eq!(events.last().unwrap()["type"], "CampaignPaused");
    assert_eq!(answer["states"][0]["state"], "Paused");
    let later = json(bp(
        dir,
        &["history", "--as-of", "2026-08-22T00:00:00+08:00", "--json"],
    ));
    assert_eq!(later["states"][0]["state"], "Prep");
    // Without --as-of: every event, as before.
    let all = json(bp(dir, &["history", CAMPAIGN, "--json"]));
    assert_eq!(all.as_array().unwrap().len(), events.len() + 1);

    // A task done by a person, through the command line: its reminders stop, the board says
    // done, and the history tells who did it, when, and their note.
    let done = ok(bp(
        dir,
        &[
            "task",
            "done",
            "create-coupons",
            "--actor",
            "bob",
            "--note",
            "five coupons live",
            "--clock-at",
            "2026-08-21T11:00:00+08:00",
        ],
    ));
    assert!(done.stdout.contains("done by bob"), "{}", done.stdout);
    let board = json(bp(
        dir,
        &["tasks", "--json", "--clock-at", "2026-08-21T12:00:00+08:00"],
    ));
    let row = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["occurrence"] == "create-coupons")
        .cloned()
        .unwrap_or_else(|| panic!("no create-coupons row in {board:#}"));
    assert_eq!(row["status"], "done", "{row:#}");
    let unknown = bp(dir, &["task", "done", "no-such-task", "--actor", "bob"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no task `no-such-task`"),
        "{}",
        unknown.stderr
    );
    let text = ok(bp(dir, &["history", CAMPAIGN])).stdout;
    let line = text
        .lines()
        .position(|line| line.contains("task create-coupons done"))
        .unwrap_or_else(|| panic!("no task line in {text}"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[line].starts_with("2026-08-21 11:00 +08:00"),
        "{}",
        lines[line]
    );
    assert!(lines[line].contains(" bob "), "{}", lines[line]);
    assert!(
        lines[line + 1].contains("reason: five coupons live"),
        "{text}"
    );
    // and the reach-outs the dispatcher decided are there, in log order with the rest.
    assert!(
        text.contains("system:dispatcher  reach-out visitor-coupons planned"),
        "{text}"
    );

    let garbage = bp(dir, &["history", "--as-of", "yesterday"]);
    assert_eq!(garbage.code, 2, "{}", garbage.stderr);
}
