//! `advance` cuts the step it leaves short: a reach-out whose window lay in it sends nothing
//! more (its sends are given up as `phase_skipped`), instead of going out in the next stage with
//! that stage's template.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_tests::run_in;

fn ok(directory: &std::path::Path, arguments: &[&str]) -> String {
    let run = run_in(directory, arguments);
    assert_eq!(run.code, 0, "battleplan {arguments:?}: {}", run.stderr);
    run.stdout
}

#[test]
fn the_mail_of_a_stage_skipped_by_an_advance_does_not_go_out_in_the_next_stage() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    ok(dir, &["init"]);
    ok(
        dir,
        &[
            "customers",
            "generate",
            "--count",
            "2000",
            "--as-of",
            "2026-08-18T00:00:00+08:00",
        ],
    );
    let data = ["--data", "rehearsal"];
    let with = |rest: &[&str]| -> Vec<String> {
        data.iter()
            .chain(rest.iter())
            .map(|word| word.to_string())
            .collect()
    };
    let run = |rest: &[&str]| {
        let arguments = with(rest);
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        ok(dir, &arguments)
    };
    run(&[
        "plan",
        "apply",
        "battleplan.toml",
        "--clock-at",
        "2026-08-01T00:00:00Z",
    ]);
    run(&[
        "customers",
        "import",
        "customers.csv",
        "--clock-at",
        "2026-08-18T00:00:00+08:00",
    ]);
    // Given the early stage just entered and its mail planned for 08:00 (quiet hours until then),
    run(&[
        "run",
        "--simulate",
        "--clock-at",
        "2026-08-18T00:00:00+08:00",
        "--until",
        "2026-09-02T00:00:00+08:00",
    ]);
    let planned = run(&[
        "outbox",
        "sept-festival-2026",
        "--reach-out",
        "early-stage-mail",
        "--json",
    ]);
    let planned: serde_json::Value = serde_json::from_str(&planned).unwrap();
    let pending = planned["reach_outs"][0]["pending"].as_u64().unwrap();
    assert!(pending > 0, "{planned}");
    // when alice advances to the middle stage at 01:00 and the daemon runs on through the day,
    run(&[
        "advance",
        "sept-festival-2026",
        "--actor",
        "alice",
        "--reason",
        "stock sold out early",
        "--clock-at",
        "2026-09-02T01:00:00+08:00",
    ]);
    run(&[
        "run",
        "--simulate",
        "--clock-at",
        "2026-09-02T01:00:00+08:00",
        "--until",
        "2026-09-03T00:00:00+08:00",
    ]);
    // then none of the early stage's mail went out; every send it had is phase_skipped.
    let after = run(&[
        "outbox",
        "sept-festival-2026",
        "--reach-out",
        "early-stage-mail",
        "--json",
    ]);
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    let row = &after["reach_outs"][0];
    assert_eq!(row["sent"].as_u64(), Some(0), "{after}");
    assert_eq!(row["pending"].as_u64(), Some(0), "{after}");
    assert_eq!(
        row["not_sent"]["phase_skipped"].as_u64(),
        Some(pending),
        "{after}"
    );
}
