//! What people read, from the real binary, for a campaign in Asia/Shanghai: every instant in
//! words is local time and every instant in JSON carries the campaign's offset (the staff
//! reminders, the history, the outbox, an import already done); text that came from an import
//! (a customer's tier with CR/LF and an escape sequence) reaches the terminal escaped; the task
//! board shows the reminders it promises; an actor nobody named is refused.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{binary, bp, instant, ok, run_in, Daemon};

const APPLIED_AT: &str = "2026-08-01T00:00:00Z";
const IMPORTED_AT: &str = "2026-08-18T00:00:00Z";
/// A day and a half into the prep: reminders and the visitor coupons have gone out.
const NOW: &str = "2026-08-20T12:00:00+08:00";
/// The hostile customer's tier as the CSV holds it (quoted, so CR/LF are inside the cell).
const HOSTILE_TEXT: &str = "Evil\r\nBcc: attacker@evil.example\u{1b}]0;owned\u{7}";

/// The festival applied, customers imported, and run under a virtual clock into the prep;
/// returns the daemon's log lines.
fn festival_into_the_prep(dir: &Path) -> Vec<String> {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--actor",
            "ops",
            "--clock-at",
            APPLIED_AT,
        ],
    ));
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 300,
            seed: 5,
            as_of: instant("2026-08-18T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    let mut text = String::from_utf8(customers).unwrap();
    let header: Vec<String> = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let column = |name: &str| header.iter().position(|known| known == name).unwrap();
    // A name with a line break is refused at import (it would go into a mail subject); the
    // tier is free text, so the hostile text comes in through it.
    let mut row = vec![String::new(); header.len()];
    row[column("id")] = "c-evil".into();
    row[column("name")] = "Evil".into();
    row[column("tier")] = format!("\"{HOSTILE_TEXT}\"");
    row[column("email")] = "evil@example.com".into();
    row[column("active")] = "2026-08-17T10:00:00+08:00".into();
    text.push_str(&row.join(","));
    text.push('\n');
    std::fs::write(dir.join("customers.csv"), text).unwrap();
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
    // It closed its store itself: no handle of it was left elsewhere.
    assert!(
        !log.iter().any(|line| line.contains("still held elsewhere")),
        "{}",
        log.join("\n")
    );
    log
}

/// Every string value of a JSON document under the keys named, recursively.
fn strings_under(value: &serde_json::Value, keys: &[&str], out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if let (true, Some(text)) = (keys.contains(&key.as_str()), inner.as_str()) {
                    out.push(text.to_string());
                }
                strings_under(inner, keys, out);
            }
        }
        serde_json::Value::Array(list) => {
            for inner in list {
                strings_under(inner, keys, out);
            }
        }
        _ => {}
    }
}

#[test]
fn a_shanghai_campaign_reads_in_shanghai_time_and_imported_text_is_escaped() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let log = festival_into_the_prep(dir);

    // The daemon's log lines are stamped with the simulated instant, not the machine's.
    let stamped: Vec<&String> = log
        .iter()
        .filter(|line| line.starts_with("20") && line.contains(" INFO "))
        .collect();
    assert!(stamped.len() > 2, "{log:#?}");
    for line in stamped {
        let stamp = line.split_whitespace().next().unwrap_or_default();
        let at = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
        assert!(
            at >= instant(IMPORTED_AT) && at <= instant(NOW),
            "stamped outside the simulation: {line}"
        );
    }

    // The staff outbox: reminders name their due time in the campaign's zone.
    let staff = std::fs::read_to_string(dir.join("data/outbox/staff.jsonl")).unwrap();
    let mut reminders = 0;
    for line in staff.lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap();
        let words = format!("{} {}", message["subject"], message["body"]);
        assert!(!words.contains("+00:00"), "{words}");
        if words.contains(", due 2026-") {
            assert!(words.contains("+08:00"), "{words}");
            reminders += 1;
        }
    }
    assert!(reminders > 0, "no reminder went out:\n{staff}");

    // The history as JSON: instants with the campaign's offset, summaries in local time.
    let history: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &["history", "sept-festival-2026", "--json", "--clock-at", NOW],
        ))
        .stdout,
    )
    .unwrap();
    let mut recorded = Vec::new();
    strings_under(&history, &["recorded_at"], &mut recorded);
    assert!(!recorded.is_empty());
    for at in &recorded {
        assert!(at.ends_with("+08:00"), "{at}");
    }
    let mut summaries = Vec::new();
    strings_under(&history, &["summary"], &mut summaries);
    for summary in &summaries {
        assert!(
            !summary.contains("+00:00") && !summary.contains("UTC"),
            "{summary}"
        );
    }

    // The outbox as JSON: send times with the campaign's offset.
    let outbox: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "outbox",
                "sept-festival-2026",
                "--customers",
                "--json",
                "--clock-at",
                NOW,
            ],
        ))
        .stdout,
    )
    .unwrap();
    let mut sent_at = Vec::new();
    strings_under(&outbox, &["at"], &mut sent_at);
    assert!(!sent_at.is_empty(), "{outbox:#}");
    for at in &sent_at {
        assert!(at.ends_with("+08:00"), "{at}");
    }

    // An import done before is named in local time.
    let again = ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--actor",
            "li.na",
            "--clock-at",
            NOW,
        ],
    ));
    assert!(
        again
            .stdout
            .contains("already imported on 2026-08-18 08:00 +08:00"),
        "{}",
        again.stdout
    );

    // The hostile text reaches the terminal escaped, in explain and in its errors.
    let explained = ok(bp(
        dir,
        &["explain", "sept-festival-2026", "c-evil", "--clock-at", NOW],
    ));
    assert!(
        explained
            .stdout
            .contains("Evil\\r\\nBcc: attacker@evil.example\\u{1b}]0;owned\\u{7}"),
        "{}",
        explained.stdout
    );
    assert!(
        !explained.stdout.contains(['\r', '\u{1b}', '\u{7}']),
        "{:?}",
        explained.stdout
    );
    let unknown = bp(
        dir,
        &[
            "explain",
            "sept-festival-2026",
            "c-\u{1b}[2J",
            "--clock-at",
            NOW,
        ],
    );
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(!unknown.stderr.contains('\u{1b}'), "{:?}", unknown.stderr);

    // An error names its instant in the campaign's zone too.
    let before = bp(
        dir,
        &[
            "explain",
            "sept-festival-2026",
            "c-evil",
            "--as-of",
            "2026-07-30T12:00:00Z",
            "--clock-at",
            NOW,
        ],
    );
    assert_eq!(before.code, 2, "{before:?}");
    assert!(
        before.stderr.contains("as of 2026-07-30 20:00 +08:00"),
        "{}",
        before.stderr
    );

    // The task board has the column its documentation promises, filled.
    let board = ok(bp(dir, &["tasks", "--role", "ops", "--clock-at", NOW])).stdout;
    let header = board.lines().nth(1).unwrap();
    assert!(header.contains("REMINDERS"), "{board}");
    assert!(
        board
            .lines()
            .any(|line| line.contains("create-coupons") && line.contains(" 1  ")),
        "{board}"
    );
}

#[test]
fn an_actor_nobody_named_is_refused_with_where_the_actor_comes_from() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    std::fs::write(dir.join("customers.csv"), "id,name\nc-1,Li\n").unwrap();
    for arguments in [
        &[
            "--data",
            "data",
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            APPLIED_AT,
        ][..],
        &[
            "--data",
            "data",
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            APPLIED_AT,
        ][..],
    ] {
        let output = std::process::Command::new(binary())
            .args(arguments)
            .current_dir(dir)
            .env_remove("BATTLEPLAN_DATA")
            .env_remove("USER")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(
            stderr.contains("--actor") && stderr.contains("USER"),
            "{stderr}"
        );
    }
    // Nothing was recorded: the campaign does not exist.
    let status = bp(dir, &["status", "--clock-at", APPLIED_AT]);
    assert!(!status.stdout.contains("sept-festival-2026"), "{status:?}");
}

#[test]
fn a_preview_of_a_past_instant_the_log_has_moved_on_from_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    festival_into_the_prep(dir);
    let preview = |at: &str| {
        bp(
            dir,
            &[
                "audience",
                "preview",
                "sept-festival-2026",
                "--reach-out",
                "visitor-coupons",
                "--at",
                at,
                "--clock-at",
                NOW,
            ],
        )
    };
    // The visitor coupons were planned and sent since the morning of the 19th: the book of
    // today cannot say what was decided then.
    let past = preview("2026-08-19T06:00:00+08:00");
    assert_eq!(past.code, 2, "{past:?}");
    assert!(past.stdout.is_empty(), "{}", past.stdout);
    for words in [
        "--at 2026-08-19 06:00 +08:00 is in the past",
        "the clock says 2026-08-20 12:00 +08:00",
        "battleplan explain sept-festival-2026 CUSTOMER --as-of 2026-08-19T06:00:00+08:00",
        "battleplan history sept-festival-2026 --as-of 2026-08-19T06:00:00+08:00",
    ] {
        assert!(past.stderr.contains(words), "{words} in {}", past.stderr);
    }
    // Now and later are what a preview is for.
    ok(preview(NOW));
    ok(preview("2026-08-22T00:00:00+08:00"));
}

#[test]
fn an_imports_problems_quote_the_file_escaped() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // An unknown column whose name sets the window title, and a cell with a line break.
    std::fs::write(
        dir.join("bad.csv"),
        "id,active,na\u{1b}]0;owned\u{7}me\nc-1,\"2026\r\nfake: line\",x\n",
    )
    .unwrap();
    let run = bp(dir, &["customers", "import", "bad.csv", "--actor", "li.na"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("\\u{1b}]0;owned\\u{7}"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(['\u{1b}', '\u{7}', '\r']),
        "{:?}",
        run.stderr
    );
    // Every line of the answer starts as the tool writes it: no line is faked by the file.
    for line in run.stderr.lines() {
        assert!(!line.starts_with("fake"), "{:?}", run.stderr);
    }
}
