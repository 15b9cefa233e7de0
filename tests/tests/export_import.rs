//! `battleplan export` and `battleplan import` end to end, on a store the real binary built: the
//! September festival applied, 2,000 customers imported, run under a virtual clock into the
//! burst. The export imported into an empty directory gives the same chain (head hash), the same
//! export byte for byte, and the same `status`, `funnel` and `outbox`; `export --as-of` gives a
//! prefix that imports and verifies; an import into a directory that is not empty, and every
//! kind of damaged line, is refused with `FILE:LINE`, exit 2 and nothing left behind; a file
//! cut short or empty is refused by its trailer; and while a daemon holds the store, it writes
//! the export file itself.
//!
//! One test function for the festival on purpose (see audit_verify.rs): the steps spawn
//! processes. A second, small one imports an export written before lines carried each payload
//! once.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{instant, ok, run_in, Daemon, Run};

const APPLIED_AT: &str = "2026-08-01T00:00:00Z";
const IMPORTED_AT: &str = "2026-08-20T00:00:00+08:00";
const UNTIL: &str = "2026-09-05T00:00:00+08:00";
const AS_OF: &str = "2026-08-28T00:00:00+08:00";
const CAMPAIGN: &str = "sept-festival-2026";

fn on(dir: &Path, data: &str, arguments: &[&str]) -> Run {
    let mut all = vec!["--data", data];
    all.extend_from_slice(arguments);
    run_in(dir, &all)
}

/// The festival applied, its customers imported, run to `UNTIL` under a virtual clock.
fn festival(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(on(
        dir,
        "data",
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 2_000,
            seed: 11,
            as_of: instant(IMPORTED_AT),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    ok(on(
        dir,
        "data",
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
            UNTIL,
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
}

fn verify_json(dir: &Path, data: &str) -> serde_json::Value {
    let run = ok(on(dir, data, &["audit", "verify", "--json"]));
    serde_json::from_str(&run.stdout).unwrap()
}

/// What people read, with a fixed clock so that it is comparable.
fn reports(dir: &Path, data: &str) -> Vec<String> {
    [
        vec!["status", "--clock-at", UNTIL],
        vec!["status", CAMPAIGN, "--clock-at", UNTIL],
        vec!["funnel", CAMPAIGN, "--clock-at", UNTIL],
        vec!["outbox", CAMPAIGN, "--json", "--clock-at", UNTIL],
        vec!["tasks", "--clock-at", UNTIL],
    ]
    .iter()
    .map(|arguments| ok(on(dir, data, arguments)).stdout)
    .collect()
}

/// Nothing named like an import's temporary directory is left in `dir`.
fn no_leftovers(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".battleplan-import-"),
            "{name} was left behind"
        );
    }
}

#[test]
fn a_store_exported_and_imported_is_the_same_store() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    festival(dir);

    // While a daemon holds the store, it writes an export file itself (a log is no reply
    // line: to standard output, export says so and writes nothing); the file imports whole.
    let mut daemon = Daemon::start(dir, &["--data", "data", "run", "--clock-at", UNTIL]);
    daemon.wait_for("running on");
    let refused = on(dir, "data", &["export"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "a daemon (battleplan run) holds the store in data; it writes an export to a file, not to standard output: give --out FILE"
        ),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    let wrote = ok(on(dir, "data", &["export", "--out", "busy.jsonl"]));
    assert!(
        wrote.stdout.starts_with("wrote busy.jsonl: exported "),
        "{}",
        wrote.stdout
    );
    let refused = on(dir, "data", &["export", "--out", "no-such-dir/x.jsonl"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("the directory no-such-dir does not exist"),
        "{}",
        refused.stderr
    );
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{}", log.join("\n"));
    let busy = std::fs::read_to_string(dir.join("busy.jsonl")).unwrap();
    let busy_trailer: serde_json::Value =
        serde_json::from_str(busy.lines().last().unwrap()).unwrap();
    ok(on(dir, "from-daemon", &["import", "busy.jsonl"]));
    let from_daemon = verify_json(dir, "from-daemon");
    assert_eq!(from_daemon["intact"], true, "{from_daemon}");
    assert_eq!(from_daemon["head_hash"], busy_trailer["head_hash"]);

    let original = verify_json(dir, "data");
    assert_eq!(original["intact"], true, "{original}");
    let events = original["events"].as_u64().unwrap();
    assert!(events > 2_000, "{original}");

    // Export to a file and to standard output: the same lines.
    let wrote = ok(on(dir, "data", &["export", "--out", "log.jsonl"]));
    assert!(
        wrote.stdout.contains(&format!("exported {events} events")),
        "{}",
        wrote.stdout
    );
    let exported = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let to_stdout = ok(on(dir, "data", &["export"]));
    assert_eq!(to_stdout.stdout, exported);
    let all_lines: Vec<&str> = exported.lines().collect();
    assert_eq!(
        all_lines.len() as u64,
        events + 1,
        "the events and the trailer"
    );
    let trailer: serde_json::Value = serde_json::from_str(all_lines[all_lines.len() - 1]).unwrap();
    assert_eq!(
        trailer,
        serde_json::json!({
            "trailer": "battleplan-export",
            "events": events,
            "head_hash": original["head_hash"],
            "as_of": null,
        })
    );
    let lines = &all_lines[..all_lines.len() - 1];
    // Every payload of the festival is shown as JSON that gives its bytes back: none is
    // carried twice.
    assert!(!exported.contains("payload_msgpack"));
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["position"], 1);
    assert_eq!(first["event_type"], "PlanApplied");
    assert_eq!(first["payload"]["version"], 1);
    assert_eq!(first["previous_hash"], "0".repeat(64));
    let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(last["hash"], original["head_hash"]);

    // Imported into a new directory: the same chain, export, projections and reports.
    let imported = ok(on(dir, "restored", &["import", "log.jsonl"]));
    assert!(
        imported
            .stdout
            .contains(&format!("imported {events} events into restored")),
        "{}",
        imported.stdout
    );
    let restored = verify_json(dir, "restored");
    assert_eq!(restored["intact"], true, "{restored}");
    assert_eq!(restored["head_hash"], original["head_hash"]);
    assert_eq!(restored["events"], original["events"]);
    assert_eq!(restored["projection"]["campaigns"], 1);
    assert_eq!(restored["projection"]["checkpoint"], events);
    assert_eq!(ok(on(dir, "restored", &["export"])).stdout, exported);
    assert_eq!(reports(dir, "restored"), reports(dir, "data"));
    no_leftovers(dir);

    // Into an empty directory that exists: fine too.
    std::fs::create_dir(dir.join("empty")).unwrap();
    ok(on(dir, "empty", &["import", "log.jsonl"]));
    assert_eq!(
        verify_json(dir, "empty")["head_hash"],
        original["head_hash"]
    );

    // Never over a store or anything else.
    let refused = on(dir, "data", &["import", "log.jsonl"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused
            .stderr
            .contains("data already holds a battleplan store"),
        "{}",
        refused.stderr
    );
    std::fs::create_dir(dir.join("busy")).unwrap();
    std::fs::write(dir.join("busy").join("notes.txt"), "mine").unwrap();
    let refused = on(dir, "busy", &["import", "log.jsonl"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("busy is not empty"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_dir(dir.join("busy")).unwrap().count(),
        1,
        "the directory is untouched"
    );
    assert_eq!(verify_json(dir, "data")["head_hash"], original["head_hash"]);

    // Damaged files: the line and what is wrong, exit 2, nothing left behind.
    let line_of = |index: usize, edit: &dyn Fn(&str) -> String| -> String {
        let mut edited: Vec<String> = all_lines.iter().map(|line| line.to_string()).collect();
        edited[index] = edit(&edited[index]);
        edited.join("\n") + "\n"
    };
    let count = lines.len();
    let value_at =
        |index: usize| -> serde_json::Value { serde_json::from_str(lines[index]).unwrap() };
    let mut readable_payload_changed = value_at(0);
    readable_payload_changed["payload"]["version"] = 2.into();
    let mut actor_changed = value_at(4);
    actor_changed["metadata"]["actor"] = "mallory".into();
    let mut relinked = value_at(5);
    relinked["previous_hash"] = "0".repeat(64).into();
    // Line 1,025 begins the second batch of records the reading thread hands on: a link
    // across batches is checked as every other, and before anything else found in the line.
    let mut relinked_later = value_at(1024);
    relinked_later["previous_hash"] = "0".repeat(64).into();
    let mut relinked_and_edited = relinked_later.clone();
    relinked_and_edited["metadata"]["actor"] = "mallory".into();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "broken link",
            line_of(5, &|_| relinked.to_string()),
            "damaged.jsonl:6: `previous_hash` is not the hash of the event before it".into(),
        ),
        (
            "broken link, first of a batch",
            line_of(1024, &|_| relinked_later.to_string()),
            "damaged.jsonl:1025: `previous_hash` is not the hash of the event before it".into(),
        ),
        (
            "broken link and an edit, first of a batch",
            line_of(1024, &|_| relinked_and_edited.to_string()),
            "damaged.jsonl:1025: `previous_hash` is not the hash of the event before it".into(),
        ),
        (
            "an edit, first of a batch",
            line_of(1024, &|line| line.replacen("\"actor\":\"", "\"actor\":\"x", 1)),
            "damaged.jsonl:1025: `hash` does not match the event".into(),
        ),
        (
            // The readable payload is the stored bytes (no `payload_msgpack` beside it): an
            // edit of it is an edit of what the hash covers.
            "payload",
            line_of(0, &|_| readable_payload_changed.to_string()),
            "damaged.jsonl:1: `hash` does not match the event".into(),
        ),
        (
            "actor",
            line_of(4, &|_| actor_changed.to_string()),
            "damaged.jsonl:5: `hash` does not match the event".into(),
        ),
        (
            "deleted line",
            {
                let mut kept: Vec<&str> = all_lines.clone();
                kept.remove(6);
                kept.join("\n") + "\n"
            },
            "damaged.jsonl:7: position 8, expected 7".into(),
        ),
        (
            "swapped lines",
            {
                let mut swapped: Vec<&str> = all_lines.clone();
                swapped.swap(8, 9);
                swapped.join("\n") + "\n"
            },
            "damaged.jsonl:9: position 10, expected 9".into(),
        ),
        (
            "bad JSON",
            line_of(2, &|line| line[..line.len() / 2].to_string()),
            "damaged.jsonl:3: not an export line".into(),
        ),
        (
            "unknown field",
            line_of(3, &|line| line.replacen('{', "{\"extra\":1,", 1)),
            "damaged.jsonl:4: not an export line: unknown field `extra`".into(),
        ),
        (
            "cut after a whole line",
            lines[..count - 3].join("\n") + "\n",
            format!("damaged.jsonl ends after line {} without the trailer", count - 3),
        ),
        (
            "cut, its trailer kept",
            {
                let mut kept: Vec<&str> = lines[..count - 3].to_vec();
                kept.push(all_lines[count]);
                kept.join("\n") + "\n"
            },
            format!(
                "damaged.jsonl:{}: the trailer says {events} events ending in hash {}, the file holds {} ending in hash",
                count - 2,
                original["head_hash"].as_str().unwrap(),
                count - 3
            ),
        ),
        ("empty", String::new(), "damaged.jsonl is empty".into()),
        (
            "a line after the trailer",
            exported.clone() + lines[0] + "\n",
            format!("damaged.jsonl:{}: a line after the trailer", count + 2),
        ),
        (
            "trailer edited",
            line_of(count, &|line| line.replace("\"events\":", "\"events\":1")),
            format!("damaged.jsonl:{}: the trailer says 1{events} events", count + 1),
        ),
        (
            "trailer with an unknown field",
            line_of(count, &|line| line.replacen('}', ",\"extra\":1}", 1)),
            format!(
                "damaged.jsonl:{}: not an export's trailer: unknown field `extra`",
                count + 1
            ),
        ),
    ];
    for (what, text, expected) in cases {
        std::fs::write(dir.join("damaged.jsonl"), text).unwrap();
        let refused = on(dir, "target", &["import", "damaged.jsonl"]);
        assert_eq!(refused.code, 2, "{what}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(&expected),
            "{what}: expected `{expected}` in\n{}",
            refused.stderr
        );
        assert!(
            !dir.join("target").exists(),
            "{what}: the target was created"
        );
        no_leftovers(dir);
    }

    // An export written before exports had a trailer: refused above, imported when the user
    // says so, with a warning that says what cannot be checked.
    std::fs::write(dir.join("untrailered.jsonl"), lines.join("\n") + "\n").unwrap();
    let accepted = ok(on(
        dir,
        "untrailered",
        &["import", "untrailered.jsonl", "--accept-untrailered"],
    ));
    assert!(
        accepted
            .stderr
            .contains("untrailered.jsonl has no trailer: its")
            && accepted.stderr.contains("cannot be told"),
        "{}",
        accepted.stderr
    );
    assert_eq!(
        verify_json(dir, "untrailered")["head_hash"],
        original["head_hash"]
    );
    // The flag does not make an empty file an export.
    std::fs::write(dir.join("empty.jsonl"), "").unwrap();
    let refused = on(
        dir,
        "nothing",
        &["import", "empty.jsonl", "--accept-untrailered"],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(!dir.join("nothing").exists());

    // As of an instant: a prefix of the export, with a trailer of its own, which imports and
    // verifies.
    let prefix = ok(on(dir, "data", &["export", "--as-of", AS_OF])).stdout;
    let mut prefix_lines: Vec<&str> = prefix.lines().collect();
    let prefix_trailer: serde_json::Value =
        serde_json::from_str(prefix_lines.pop().unwrap()).unwrap();
    assert_eq!(prefix_trailer["trailer"], "battleplan-export");
    assert_eq!(prefix_trailer["events"], prefix_lines.len() as u64);
    assert_eq!(
        instant(prefix_trailer["as_of"].as_str().unwrap()),
        instant(AS_OF)
    );
    assert!(!prefix_lines.is_empty() && prefix_lines.len() < lines.len());
    assert_eq!(prefix_lines[..], lines[..prefix_lines.len()]);
    let as_of = instant(AS_OF);
    for line in &prefix_lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(instant(value["recorded_at"].as_str().unwrap()) <= as_of);
    }
    let next: serde_json::Value = serde_json::from_str(lines[prefix_lines.len()]).unwrap();
    assert!(instant(next["recorded_at"].as_str().unwrap()) > as_of);
    std::fs::write(dir.join("prefix.jsonl"), &prefix).unwrap();
    ok(on(dir, "as-of", &["import", "prefix.jsonl"]));
    let verified = verify_json(dir, "as-of");
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["events"], prefix_lines.len() as u64);
    let last_of_prefix: serde_json::Value =
        serde_json::from_str(prefix_lines[prefix_lines.len() - 1]).unwrap();
    assert_eq!(verified["head_hash"], last_of_prefix["hash"]);
    assert_eq!(prefix_trailer["head_hash"], last_of_prefix["hash"]);
}

/// An export written before lines left `payload_msgpack` out (every line carried its payload
/// twice; `tests/fixtures/export-2026-12-07.jsonl`, the festival's first 69 events) imports
/// as it always did, its readable payloads still checked against the bytes; exported again,
/// its lines carry each payload once and import to the same chain.
#[test]
fn an_export_that_carries_every_payload_twice_still_imports() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/export-2026-12-07.jsonl");
    let old = std::fs::read_to_string(&fixture).unwrap();
    assert_eq!(old.matches("\"payload_msgpack\":").count(), 69);
    std::fs::write(dir.join("old.jsonl"), &old).unwrap();
    ok(on(dir, "from-old", &["import", "old.jsonl"]));
    let verified = verify_json(dir, "from-old");
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["events"], 69);
    const HEAD: &str = "5acfe46672a7dd15771e1b09ebd5ab726f4e903784c97673c36368a9e02f9034";
    assert_eq!(verified["head_hash"], HEAD);

    let again = ok(on(dir, "from-old", &["export"])).stdout;
    assert!(!again.contains("payload_msgpack"));
    assert_eq!(again.lines().count(), 70);
    std::fs::write(dir.join("again.jsonl"), &again).unwrap();
    ok(on(dir, "from-again", &["import", "again.jsonl"]));
    assert_eq!(verify_json(dir, "from-again")["head_hash"], HEAD);

    // With both, the readable payload must still show the bytes.
    let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
    let mut edited: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert!(edited["payload_msgpack"].is_string());
    edited["payload"]["edited"] = true.into();
    lines[1] = edited.to_string();
    std::fs::write(dir.join("edited.jsonl"), lines.join("\n") + "\n").unwrap();
    let refused = on(dir, "from-edited", &["import", "edited.jsonl"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("edited.jsonl:2: `payload` does not match `payload_msgpack`"),
        "{}",
        refused.stderr
    );
    assert!(!dir.join("from-edited").exists());
    no_leftovers(dir);
}

/// An export to a disk that fills is said as the disk's failure (exit 1), naming the file, and
/// leaves nothing of the file on the disk; whether the command writes it or a running daemon
/// does. A real full file system: a small tmpfs (root only; CI runs the tests as root).
#[test]
fn an_export_to_a_full_disk_says_so_and_leaves_nothing() {
    use battleplan_tests::mount::{needs_root, Mounted};
    if !needs_root(
        "an_export_to_a_full_disk_says_so_and_leaves_nothing",
        "export_import",
    ) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/export-2026-12-07.jsonl");
    std::fs::copy(&fixture, dir.join("old.jsonl")).unwrap();
    ok(on(dir, "data", &["import", "old.jsonl"]));
    let whole = ok(on(dir, "data", &["export"])).stdout;
    // Room for a part of the export only.
    let small = Mounted::new(&dir.join("small"), "16k");
    assert!(whole.len() > 64 * 1024, "{} bytes", whole.len());
    let out = small.0.join("export.jsonl");
    let out = out.to_str().unwrap();
    let said = |run: &Run, by: &str| {
        assert_eq!(run.code, 1, "{by}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "the disk failed: cannot write the export {out}: No space left on device"
            )) && run.stderr.contains("nothing of it was left"),
            "{by}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("internal error"),
            "{by}: {}",
            run.stderr
        );
        let left: Vec<_> = std::fs::read_dir(&small.0).unwrap().collect();
        assert!(left.is_empty(), "{by}: {left:?} left on the full disk");
    };
    said(&on(dir, "data", &["export", "--out", out]), "the command");

    // An imported store is no rehearsal's: the daemon runs on the real clock.
    let mut daemon = Daemon::start(dir, &["--data", "data", "run"]);
    daemon.wait_for("running on");
    said(&on(dir, "data", &["export", "--out", out]), "the daemon");
    // With room, the same export is written whole.
    small.resize("4m");
    ok(on(dir, "data", &["export", "--out", out]));
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{}", log.join("\n"));
    // The daemon, on the real clock, may have recorded more: the log as it was, then the rest.
    let written = std::fs::read_to_string(out).unwrap();
    let events = whole.trim_end().rsplit_once('\n').unwrap().0;
    assert!(
        written.starts_with(events),
        "the export written with room differs"
    );
    assert!(
        written
            .trim_end()
            .rsplit_once('\n')
            .is_some_and(|(_, trailer)| trailer.contains("\"trailer\":\"battleplan-export\"")),
        "the export written with room has no trailer"
    );
}
