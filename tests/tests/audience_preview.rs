//! `audience preview` end to end: the September festival, a generated customer file and its
//! outcomes imported with the real binary, then the preview of several reach-outs in text and
//! JSON (insta snapshots), the same answer from a running daemon, and the refusals.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_scenarios::customers::{write_customers, write_outcomes, FileFormat, Options};
use battleplan_tests::{bp, ok, run_in, Daemon};
use chrono::{DateTime, Utc};

const APPLIED_AT: &str = "2026-08-01T00:00:00Z";
const IMPORTED_AT: &str = "2026-09-01T00:00:00+08:00";

fn as_of() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(IMPORTED_AT)
        .unwrap()
        .with_timezone(&Utc)
}

/// A campaign with 5,000 generated customers and their outcomes.
fn festival(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let options = Options {
        count: 5_000,
        seed: 2026,
        as_of: as_of(),
        format: FileFormat::Csv,
    };
    let mut customers = Vec::new();
    write_customers(&mut customers, options).unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    let mut outcomes = Vec::new();
    write_outcomes(&mut outcomes, options).unwrap();
    std::fs::write(dir.join("outcomes.csv"), outcomes).unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--actor",
            "li.na",
            "--clock-at",
            IMPORTED_AT,
        ],
    ));
    ok(bp(
        dir,
        &[
            "outcomes",
            "import",
            "outcomes.csv",
            "--actor",
            "li.na",
            "--clock-at",
            IMPORTED_AT,
        ],
    ));
}

fn preview(dir: &Path, target: &[&str], json: bool) -> String {
    let mut arguments = vec!["audience", "preview", "sept-festival-2026"];
    arguments.extend_from_slice(target);
    // The clock stopped at the plan's application: `--at` is then in the future, which the
    // book answers whatever day the tests run.
    arguments.extend_from_slice(&[
        "--at",
        "2026-09-01T12:00:00+08:00",
        "--clock-at",
        APPLIED_AT,
    ]);
    if json {
        arguments.push("--json");
    }
    ok(bp(dir, &arguments)).stdout
}

const TARGETS: [(&str, &[&str]); 4] = [
    ("early_stage_mail", &["--reach-out", "early-stage-mail"]),
    ("smart_batch", &["--reach-out", "smart-batch"]),
    (
        "own_customers_in_site",
        &["--reach-out", "own-customers-in-site"],
    ),
    (
        "card_visitors_in_site",
        &["--segment", "card-visitors", "--channel", "in-site"],
    ),
];

#[test]
fn the_september_festival_previewed() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    festival(dir);
    let mut answers = Vec::new();
    for (name, target) in TARGETS {
        let text = preview(dir, target, false);
        insta::assert_snapshot!(format!("{name}_text"), text);
        let json = preview(dir, target, true);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        // The counts add up: every member is excluded once or reachable, and every reachable
        // customer is planned or reported as not placed.
        let excluded: u64 = value["exclusions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            value["segment_size"].as_u64().unwrap(),
            excluded + value["reachable"].as_u64().unwrap(),
            "{name}"
        );
        let not_placed: u64 = value["not_placed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            value["reachable"].as_u64().unwrap(),
            value["planned"].as_u64().unwrap() + not_placed,
            "{name}"
        );
        assert_eq!(value["total"]["sends"], value["planned"], "{name}");
        insta::assert_snapshot!(format!("{name}_json"), json);
        answers.push((text, json));
    }

    // A running daemon answers with the same words, from the book it keeps. Its clock stands
    // before the campaign starts, so that it plans and sends nothing meanwhile.
    let mut daemon = Daemon::start(dir, &["--data", "data", "run", "--clock-at", APPLIED_AT]);
    daemon.wait_for("other terminals reach this daemon");
    for ((_, target), (text, json)) in TARGETS.iter().zip(&answers) {
        assert_eq!(&preview(dir, target, false), text);
        assert_eq!(&preview(dir, target, true), json);
    }
    // Importing again through the daemon records nothing and changes no answer.
    let again = ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--actor",
            "li.na",
            "--clock-at",
            IMPORTED_AT,
        ],
    ));
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(&preview(dir, TARGETS[0].1, true), &answers[0].1);
    let (code, lines) = daemon.terminate();
    assert_eq!(code, 0, "{lines:#?}");
}

#[test]
fn a_preview_refuses_what_it_cannot_answer() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "audience",
                "preview",
                "no-such-campaign",
                "--reach-out",
                "smart-batch",
            ],
            "no campaign named no-such-campaign",
        ),
        (
            &[
                "audience",
                "preview",
                "sept-festival-2026",
                "--reach-out",
                "smart-bacth",
            ],
            "has no reach-out `smart-bacth`",
        ),
        (
            &[
                "audience",
                "preview",
                "sept-festival-2026",
                "--segment",
                "vip",
                "--channel",
                "mail",
            ],
            "has no segment `vip`",
        ),
        (
            &[
                "audience",
                "preview",
                "sept-festival-2026",
                "--reach-out",
                "early-stage-mail",
                "--at",
                "2026-12-01",
                "--clock-at",
                APPLIED_AT,
            ],
            "the window ended at 2026-09-11 00:00 +08:00",
        ),
        (
            &[
                "audience",
                "preview",
                "sept-festival-2026",
                "--segment",
                "l1-plus",
            ],
            "--channel",
        ),
    ];
    for (arguments, expected) in cases {
        let run = bp(dir, arguments);
        assert_eq!(run.code, 2, "{arguments:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{arguments:?}: {}",
            run.stderr
        );
    }
    // An empty book is an answer, not an error.
    let empty = ok(bp(
        dir,
        &[
            "audience",
            "preview",
            "sept-festival-2026",
            "--reach-out",
            "early-stage-mail",
            "--at",
            "2026-09-01",
            "--clock-at",
            APPLIED_AT,
            "--json",
        ],
    ));
    let value: serde_json::Value = serde_json::from_str(&empty.stdout).unwrap();
    assert_eq!(value["segment_size"], 0);
    assert_eq!(value["days"].as_array().unwrap().len(), 9);
}
