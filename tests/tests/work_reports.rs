//! What the team reads while the campaign runs, from the real binary: the task board (all of it,
//! and one role's), the funnel and `status` with the stage targets against actuals, after the
//! September festival has run under a virtual clock from its prep into the burst with 2,000
//! generated customers and the outcomes that came back. insta snapshots of each.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_scenarios::customers::{write_customers, write_outcomes, FileFormat, Options};
use battleplan_tests::{bp, instant, ok, run_in, Daemon};

const APPLIED_AT: &str = "2026-08-01T00:00:00Z";
const IMPORTED_AT: &str = "2026-08-20T00:00:00+08:00";
/// Mid-way through the burst's early stage.
const NOW: &str = "2026-09-05T12:00:00+08:00";

fn options(as_of: &str) -> Options {
    Options {
        count: 2_000,
        seed: 11,
        as_of: instant(as_of),
        format: FileFormat::Csv,
    }
}

/// The festival applied, its customers imported, run from before the prep to `NOW` under a
/// virtual clock, and the outcomes of its messages imported at `NOW`.
fn festival_until_now(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let mut customers = Vec::new();
    write_customers(&mut customers, options(IMPORTED_AT)).unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
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
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            IMPORTED_AT,
            "--until",
            NOW,
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
    let mut outcomes = Vec::new();
    write_outcomes(&mut outcomes, options(NOW)).unwrap();
    std::fs::write(dir.join("outcomes.csv"), outcomes).unwrap();
    ok(bp(
        dir,
        &[
            "outcomes",
            "import",
            "outcomes.csv",
            "--actor",
            "li.na",
            "--clock-at",
            NOW,
        ],
    ));
}

#[test]
fn the_board_the_funnel_and_the_targets_mid_burst() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    festival_until_now(dir);

    let board = ok(bp(
        dir,
        &["tasks", "--due-before", "2026-09-08", "--clock-at", NOW],
    ))
    .stdout;
    insta::assert_snapshot!("task_board", board);
    let boss = ok(bp(dir, &["tasks", "--role", "boss", "--clock-at", NOW])).stdout;
    insta::assert_snapshot!("task_board_boss", boss);
    let funnel = ok(bp(
        dir,
        &["funnel", "sept-festival-2026", "--clock-at", NOW],
    ))
    .stdout;
    insta::assert_snapshot!("funnel", funnel);
    let status = ok(bp(
        dir,
        &["status", "sept-festival-2026", "--clock-at", NOW],
    ))
    .stdout;
    insta::assert_snapshot!("status_with_targets", status);

    // The funnel as JSON, for the tools that read it.
    let json: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &["funnel", "sept-festival-2026", "--json", "--clock-at", NOW],
        ))
        .stdout,
    )
    .unwrap();
    insta::assert_snapshot!("funnel_json", serde_json::to_string_pretty(&json).unwrap());
}

#[test]
fn a_reader_that_stops_early_is_not_a_crash() {
    // Given a board larger than a pipe holds (some 80 KB of JSON),
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let whole = ok(bp(dir, &["tasks", "--json", "--clock-at", NOW])).stdout;
    assert!(whole.len() > 128 * 1024 / 2, "{} bytes", whole.len());
    // when whoever reads it goes away before the end (`battleplan tasks --json | head`),
    let mut child = std::process::Command::new(battleplan_tests::binary())
        .args(["--data", "data", "tasks", "--json", "--clock-at", NOW])
        .current_dir(dir)
        .env_remove("BATTLEPLAN_DATA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    // then the command ends as it would have, without a panic.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
