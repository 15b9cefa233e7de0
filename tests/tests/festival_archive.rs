//! The backup and restore story on the September festival, whole: the shipped scenario (with
//! 3,000 customers) run by
//! the real binary, its log exported, imported into an empty directory, and the two stores
//! compared: the same chain (head hash, every export byte), the same stored projection (both
//! verify with their replay), and the same answers from every projection a user reads.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_tests::{ok, run_in};

const END: &str = "2026-10-08T00:00:00+08:00";

fn on(dir: &Path, data: &str, arguments: &[&str]) -> String {
    let mut all = vec!["--data", data];
    all.extend_from_slice(arguments);
    ok(run_in(dir, &all)).stdout
}

#[test]
fn the_festival_exported_and_imported_is_the_same_log_with_the_same_projections() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // The shipped scenario with 3,000 customers of its 10,000: every kind of event is there,
    // in a third of the time.
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/september-festival.toml");
    let scenario = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("\ngenerate = 10000\n", "\ngenerate = 3000\n");
    assert!(scenario.contains("\ngenerate = 3000\n"));
    std::fs::write(dir.join("festival.toml"), scenario).unwrap();
    ok(run_in(
        dir,
        &["scenario", "run", "festival.toml", "--out", "festival"],
    ));
    on(dir, "festival/data", &["export", "--out", "festival.jsonl"]);
    on(dir, "restored", &["import", "festival.jsonl"]);
    on(dir, "restored", &["export", "--out", "again.jsonl"]);
    let exported = std::fs::read(dir.join("festival.jsonl")).unwrap();
    assert!(exported.len() > 1_000_000, "{} bytes", exported.len());
    assert!(
        exported == std::fs::read(dir.join("again.jsonl")).unwrap(),
        "the restored store exports different bytes"
    );

    // Both stores verify (chain, payloads, the stored projection against a replay), with the
    // same head hash.
    let verify = |data: &str| -> serde_json::Value {
        serde_json::from_str(&on(dir, data, &["audit", "verify", "--json"])).unwrap()
    };
    let (original, restored) = (verify("festival/data"), verify("restored"));
    assert_eq!(original["intact"], true, "{original}");
    assert_eq!(restored["intact"], true, "{restored}");
    assert_eq!(original["head_hash"], restored["head_hash"]);
    assert_eq!(original["events"], restored["events"]);
    assert!(original["events"].as_u64().unwrap() > 30_000, "{original}");

    // Every projection a user reads answers the same from both.
    let questions: [&[&str]; 7] = [
        &["status", "--clock-at", END],
        &["status", "sept-festival-2026", "--json", "--clock-at", END],
        &["funnel", "sept-festival-2026", "--json", "--clock-at", END],
        &[
            "outbox",
            "sept-festival-2026",
            "--json",
            "--customers",
            "--clock-at",
            END,
        ],
        &["tasks", "--json", "--clock-at", END],
        &["history", "sept-festival-2026", "--json"],
        &[
            "audience",
            "preview",
            "sept-festival-2026",
            "--reach-out",
            "early-stage-mail",
            "--at",
            "2026-09-02T00:00:00+08:00",
            "--json",
            // A preview is of now or later on the clock the command runs with.
            "--clock-at",
            "2026-09-01T00:00:00+08:00",
        ],
    ];
    for question in questions {
        assert_eq!(
            on(dir, "festival/data", question),
            on(dir, "restored", question),
            "{question:?} answers differently after the restore"
        );
    }
}
