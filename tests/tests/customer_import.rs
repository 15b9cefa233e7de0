//! `battleplan customers import` and `battleplan outcomes import` end to end, through the real
//! binary: every kind of malformed row reported with its line and column, nothing written when
//! an import is rejected, `--skip-bad-rows`, and importing the same file twice.
//!
//! These tests only run processes (none opens a store itself), so they may run side by side.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_scenarios::customers::{write_customers, write_outcomes, FileFormat, Options};
use battleplan_tests::{ok, run_in, Daemon, Run};
use chrono::{DateTime, Utc};
use serde_json::Value;

const CLOCK: &str = "2026-08-20T00:00:00Z";

fn bp(directory: &Path, arguments: &[&str]) -> Run {
    let mut all = vec!["--data", "data", "--clock-at", CLOCK];
    all.extend_from_slice(arguments);
    run_in(directory, &all)
}

/// The number of events in the store, from `audit verify` (which also checks the chain).
fn events(directory: &Path) -> u64 {
    let run = ok(bp(directory, &["audit", "verify", "--json"]));
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["intact"], true, "{}", run.stdout);
    report["events"].as_u64().unwrap()
}

fn options(count: u64, format: FileFormat) -> Options {
    Options {
        count,
        seed: 11,
        as_of: DateTime::parse_from_rfc3339("2026-08-20T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc),
        format,
    }
}

fn generated(directory: &Path, name: &str, options: Options, outcomes: bool) {
    let mut bytes = Vec::new();
    if outcomes {
        write_outcomes(&mut bytes, options).unwrap();
    } else {
        write_customers(&mut bytes, options).unwrap();
    }
    std::fs::write(directory.join(name), bytes).unwrap();
}

/// Writes the example plan (the September festival) and applies it.
fn apply_example_plan(directory: &Path) {
    ok(bp(directory, &["init", "--out", "plan.toml"]));
    ok(bp(directory, &["plan", "apply", "plan.toml"]));
}

/// The `ImportStarted` events of the store's export.
fn import_started(directory: &Path) -> Vec<Value> {
    let run = ok(bp(directory, &["export"]));
    run.stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event_type"] == "ImportStarted")
        .collect()
}

/// One malformed file: what it holds, and what the error output must say.
struct Case {
    what: &'static str,
    command: &'static str,
    file: &'static str,
    bytes: &'static [u8],
    /// Each must appear in the error output.
    expected: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "a CSV row with the wrong number of fields",
        command: "customers",
        file: "c.csv",
        bytes: b"id,name,email\nc-1,Li Na,li@example.com\nc-2,Wang Wei\n",
        expected: &["c.csv: line 3, column 3 (email): wrong number of fields: the header has 3 columns, this row has 2"],
    },
    Case {
        what: "a CSV row with too many fields",
        command: "customers",
        file: "c.csv",
        bytes: b"id,name\nc-1,Li,Na\n",
        expected: &["c.csv: line 2, column 3: wrong number of fields: the header has 2 columns, this row has 3"],
    },
    Case {
        what: "a missing required value",
        command: "customers",
        file: "c.csv",
        bytes: b"id,name\nc-1,Li\n ,Wang\n",
        expected: &["c.csv: line 3, column 1 (id): missing required value"],
    },
    Case {
        what: "an instant without an offset",
        command: "customers",
        file: "c.csv",
        bytes: b"id,active\nc-1,2026-08-01T10:00:00\n",
        expected: &["c.csv: line 2, column 2 (active): bad instant: `2026-08-01T10:00:00` has no UTC offset; write the offset too, like 2026-08-20T10:00:00+08:00"],
    },
    Case {
        what: "something that is not an instant",
        command: "customers",
        file: "c.csv",
        bytes: b"id,ordered\nc-1,last tuesday\n",
        expected: &["line 2, column 2 (ordered): bad instant: `last tuesday` is not an instant; write RFC 3339"],
    },
    Case {
        what: "a bad source",
        command: "customers",
        file: "c.csv",
        bytes: b"id,source\nc-1,own-lists\n",
        expected: &["line 2, column 2 (source): bad value: `own-lists` is not a source (did you mean `own_list`?); use one of own_list, shared_pool, offline_import"],
    },
    Case {
        what: "a bad channel kind in unsubscribed",
        command: "customers",
        file: "c.csv",
        bytes: b"id,unsubscribed\nc-1,mail;fax\n",
        expected: &["line 2, column 2 (unsubscribed): bad value: `fax` is not a channel kind; use `;`-separated kinds of mail, in_site, im, webhook, console"],
    },
    Case {
        what: "a bad number",
        command: "customers",
        file: "c.csv",
        bytes: b"id,orders\nc-1,3.5\n",
        expected: &["line 2, column 2 (orders): bad number: `3.5` is not a count"],
    },
    Case {
        what: "bad money",
        command: "customers",
        file: "c.csv",
        bytes: b"id,ordered,order_amount\nc-1,2026-08-01T10:00:00+08:00,12.345\n",
        expected: &["line 2, column 3 (order_amount): bad money: `12.345` has more than two decimals"],
    },
    Case {
        what: "an order amount without the order",
        command: "customers",
        file: "c.csv",
        bytes: b"id,order_amount\nc-1,20\n",
        expected: &["line 2, column 2 (order_amount): an order amount (20.00) needs the `ordered` instant in the same row"],
    },
    Case {
        what: "an unknown time zone",
        command: "customers",
        file: "c.csv",
        bytes: b"id,time_zone\nc-1,Asia/Shangai\n",
        expected: &["line 2, column 2 (time_zone): unknown time zone `Asia/Shangai`; did you mean `Asia/Shanghai`?"],
    },
    Case {
        what: "an unknown header column",
        command: "customers",
        file: "c.csv",
        bytes: b"id,emial\nc-1,li@example.com\n",
        expected: &[
            "c.csv: line 1, column 2 (emial): unknown column `emial`; did you mean `email`?",
            "the file cannot be imported",
        ],
    },
    Case {
        what: "a repeated header column",
        command: "customers",
        file: "c.csv",
        bytes: b"id,name,Name\nc-1,a,b\n",
        expected: &["c.csv: line 1, column 3 (Name): the column `Name` appears twice"],
    },
    Case {
        what: "a header without the id column",
        command: "customers",
        file: "c.csv",
        bytes: b"name,email\nLi,li@example.com\n",
        expected: &["c.csv: line 1, id: the header has no `id` column"],
    },
    Case {
        what: "an invalid JSON line",
        command: "customers",
        file: "c.jsonl",
        bytes: b"{\"id\":\"c-1\"}\n{\"id\":\"c-2\" \"name\":\"x\"}\n",
        expected: &["c.jsonl: line 2, column 13: invalid JSON: expected `,` or `}`"],
    },
    Case {
        what: "a JSON line that is not an object",
        command: "customers",
        file: "c.jsonl",
        bytes: b"[\"c-1\",\"Li\"]\n",
        expected: &["c.jsonl: line 1: not an object: each line holds one JSON object, like {\"id\": \"c-000001\"}; this line holds an array"],
    },
    Case {
        what: "a wrong JSON type",
        command: "customers",
        file: "c.jsonl",
        bytes: b"{\"id\":\"c-1\",\"tags\":{\"a\":1}}\n",
        expected: &["c.jsonl: line 1, tags: wrong JSON type: expected an array of strings or a `;`-separated string, found an object"],
    },
    Case {
        what: "an unknown key in a JSON line",
        command: "customers",
        file: "c.ndjson",
        bytes: b"{\"id\":\"c-1\"}\n{\"id\":\"c-2\",\"tyer\":\"L1\"}\n",
        expected: &["c.ndjson: line 2, tyer: unknown column `tyer`; did you mean `tier`?"],
    },
    Case {
        what: "bytes that are not UTF-8 in a CSV field",
        command: "customers",
        file: "c.csv",
        bytes: b"id,name\nc-1,Li\nc-2,Wang \xe9\n",
        expected: &["c.csv: line 3, column 2 (name): bytes that are not UTF-8 (at byte 6 of the field)"],
    },
    Case {
        what: "bytes that are not UTF-8 in a JSON line",
        command: "customers",
        file: "c.jsonl",
        bytes: b"{\"id\":\"c-\xff\"}\n",
        expected: &["c.jsonl: line 1, column 10: bytes that are not UTF-8"],
    },
    Case {
        what: "an empty CSV file",
        command: "customers",
        file: "c.csv",
        bytes: b"",
        expected: &["c.csv: line 1: the file is empty; a CSV file starts with its header line"],
    },
    Case {
        what: "an empty JSON lines file",
        command: "outcomes",
        file: "o.jsonl",
        bytes: b"",
        expected: &["o.jsonl: line 1: the file is empty"],
    },
    Case {
        what: "a campaign without its reach-out",
        command: "outcomes",
        file: "o.csv",
        bytes: b"customer,outcome,at,campaign,channel\nc-1,opened,2026-08-19T10:00:00+08:00,sept-festival-2026,mail\n",
        expected: &["o.csv: line 2, reach_out: `campaign` is given, so `reach_out` is needed too (both or neither)"],
    },
    Case {
        what: "a bad outcome",
        command: "outcomes",
        file: "o.csv",
        bytes: b"customer,outcome,at\nc-1,tapped,2026-08-19T10:00:00+08:00\n",
        expected: &["o.csv: line 2, column 2 (outcome): bad value: `tapped` is not an outcome; use one of delivered, bounced, opened, replied, ordered, unsubscribed, clicked"],
    },
    Case {
        what: "a delivery without its channel, and a bad channel",
        command: "outcomes",
        file: "o.csv",
        bytes: b"customer,outcome,at,channel\nc-1,delivered,2026-08-19T10:00:00+08:00,\nc-2,opened,2026-08-19T10:00:00+08:00,sms\n",
        expected: &[
            "o.csv: line 2, column 4 (channel): missing required value: a `delivered` outcome needs its channel (mail, in_site, im, webhook, console)",
            "o.csv: line 3, column 4 (channel): bad value: `sms` is not a channel",
        ],
    },
    Case {
        what: "an amount on something else than an order",
        command: "outcomes",
        file: "o.csv",
        bytes: b"customer,outcome,at,amount\nc-1,replied,2026-08-19T10:00:00+08:00,12\n",
        expected: &["o.csv: line 2, column 4 (amount): an amount (12.00) goes only with an `ordered` outcome"],
    },
];

#[test]
fn every_malformed_row_kind_is_reported_with_its_line_and_column() {
    for case in CASES {
        let directory = tempfile::tempdir().unwrap();
        let dir = directory.path();
        std::fs::write(dir.join(case.file), case.bytes).unwrap();
        let run = bp(dir, &[case.command, "import", case.file]);
        assert_eq!(
            run.code, 2,
            "{}: expected exit 2\nstdout:\n{}\nstderr:\n{}",
            case.what, run.stdout, run.stderr
        );
        for expected in case.expected {
            assert!(
                run.stderr.contains(expected),
                "{}: the output lacks\n  {expected}\nit was:\n{}",
                case.what,
                run.stderr
            );
        }
        assert!(
            !dir.join("data").exists(),
            "{}: a rejected import created the data directory",
            case.what
        );
    }
}

#[test]
fn a_header_only_file_is_an_import_of_no_rows() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(dir.join("c.csv"), "id,name,email\n").unwrap();
    let run = ok(bp(dir, &["customers", "import", "c.csv"]));
    assert!(
        run.stdout.contains("c.csv: imported 0 customers"),
        "{}",
        run.stdout
    );
    assert_eq!(events(dir), 2, "ImportStarted and ImportFinished");
}

#[test]
fn a_rejected_import_writes_nothing_and_lists_every_problem_up_to_a_cap() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    generated(dir, "good.csv", options(50, FileFormat::Csv), false);
    ok(bp(dir, &["customers", "import", "good.csv"]));
    let before = events(dir);
    // 50 customers, and the two the plan names (c-000417, c-002291), which the generator adds.
    assert_eq!(before, 54);

    // 150 bad rows among good ones, each with two problems.
    let mut file = String::from("id,active,orders\n");
    for n in 0..300 {
        if n % 2 == 0 {
            file.push_str(&format!("x-{n},yesterday,many\n"));
        } else {
            file.push_str(&format!("x-{n},2026-08-01T00:00:00Z,1\n"));
        }
    }
    std::fs::write(dir.join("bad.csv"), file).unwrap();
    let run = bp(dir, &["customers", "import", "bad.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let listed = run
        .stderr
        .lines()
        .filter(|line| line.starts_with("bad.csv: line "))
        .count();
    assert_eq!(listed, 100, "{}", run.stderr);
    assert!(run
        .stderr
        .contains("bad.csv: line 2, column 2 (active): bad instant"));
    assert!(run
        .stderr
        .contains("bad.csv: line 2, column 3 (orders): bad number"));
    assert!(run.stderr.contains("... and 200 more problems not listed"));
    assert!(
        run.stderr.contains(
            "bad.csv: 150 bad rows (300 problems) of 300 rows; nothing was imported. Fix them, or import the good rows with --skip-bad-rows."
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        events(dir),
        before,
        "nothing of a rejected import is written"
    );

    let run = bp(dir, &["customers", "import", "bad.csv", "--json"]);
    assert_eq!(run.code, 2);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["outcome"], "rejected");
    assert_eq!(report["bad_rows"], 150);
    assert_eq!(report["problems"], 300);
    assert_eq!(report["listed"].as_array().unwrap().len(), 100);
    assert_eq!(report["listed"][0]["line"], 2);
    assert_eq!(report["listed"][0]["column"], "active");
    assert_eq!(report["listed"][0]["position"], 2);
    assert_eq!(events(dir), before);
}

#[test]
fn skip_bad_rows_imports_the_rest_and_lists_what_it_skipped() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let file = "id,name,active\nc-1,Li,2026-08-01T10:00:00+08:00\nc-2,Wang,2026-08-01\nc-3,Zhang\nc-4,Liu,\n";
    std::fs::write(dir.join("c.csv"), file).unwrap();
    let run = ok(bp(
        dir,
        &[
            "customers",
            "import",
            "c.csv",
            "--skip-bad-rows",
            "--actor",
            "mei",
        ],
    ));
    assert!(
        run.stdout.contains("c.csv: imported 2 customers"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("skipped 2 bad rows (--skip-bad-rows):"));
    assert!(
        run.stdout
            .contains("  line 3, active: bad instant: `2026-08-01` has no UTC offset"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("  line 4, active: wrong number of fields"),
        "{}",
        run.stdout
    );
    assert_eq!(events(dir), 4, "ImportStarted, two rows, ImportFinished");

    // The same command again: nothing changes.
    let again = ok(bp(
        dir,
        &["customers", "import", "c.csv", "--skip-bad-rows", "--json"],
    ));
    let report: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["outcome"], "already_imported");
    assert_eq!(report["rows"], 2);
    assert_eq!(events(dir), 4);
}

#[test]
fn the_same_file_twice_is_recorded_once() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    generated(
        dir,
        "customers.jsonl",
        options(300, FileFormat::Jsonl),
        false,
    );
    generated(dir, "outcomes.csv", options(300, FileFormat::Csv), true);
    // The outcomes name the example's campaign and reach-out.
    apply_example_plan(dir);
    let applied = events(dir);
    let first = ok(bp(dir, &["customers", "import", "customers.jsonl"]));
    assert!(
        first
            .stdout
            .contains("customers.jsonl: imported 302 customers"),
        "{}",
        first.stdout
    );
    let outcomes = ok(bp(dir, &["outcomes", "import", "outcomes.csv", "--json"]));
    let report: Value = serde_json::from_str(&outcomes.stdout).unwrap();
    assert_eq!(report["outcome"], "imported");
    let outcome_rows = report["rows"].as_u64().unwrap();
    assert!(outcome_rows > 30, "{outcome_rows}");
    let total = events(dir);
    assert_eq!(total, applied + 304 + outcome_rows + 2);

    let again = ok(bp(dir, &["customers", "import", "customers.jsonl"]));
    assert!(
        again.stdout.contains(
            "customers.jsonl: already imported on 2026-08-20 08:00 +08:00: 302 rows; nothing changed"
        ),
        "{}",
        again.stdout
    );
    // Renamed, the same bytes are the same import.
    std::fs::copy(dir.join("outcomes.csv"), dir.join("copy.csv")).unwrap();
    let copy = ok(bp(dir, &["outcomes", "import", "copy.csv"]));
    assert!(copy.stdout.contains("already imported"), "{}", copy.stdout);
    assert_eq!(events(dir), total);
}

#[test]
fn the_format_comes_from_the_name_or_the_option() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(dir.join("customers.txt"), "{\"id\":\"c-1\"}\n").unwrap();
    let run = bp(dir, &["customers", "import", "customers.txt"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot tell the format of customers.txt from its name"),
        "{}",
        run.stderr
    );
    ok(bp(
        dir,
        &["customers", "import", "customers.txt", "--format", "jsonl"],
    ));
    let missing = bp(dir, &["customers", "import", "nowhere.csv"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("cannot read nowhere.csv: there is no such file"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_examples_in_the_docs_import() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/customers.md"))
            .unwrap();
    let mut blocks = Vec::new();
    let mut lines = docs.lines();
    while let Some(line) = lines.next() {
        let format = match line {
            "```csv" => "csv",
            "```json" => "jsonl",
            _ => continue,
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push((format, body.join("\n") + "\n"));
    }
    assert_eq!(blocks.len(), 4, "two customer and two outcome examples");
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    // The outcome examples name the example's campaign and the customers imported before them.
    apply_example_plan(dir);
    for (index, (format, body)) in blocks.iter().enumerate() {
        let name = format!("example-{index}.{format}");
        std::fs::write(dir.join(&name), body).unwrap();
        let command = if index < 2 { "customers" } else { "outcomes" };
        let run = ok(bp(dir, &[command, "import", &name]));
        assert!(run.stdout.contains("imported"), "{}", run.stdout);
    }
}

#[test]
fn a_running_daemon_imports_the_file_itself() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    generated(dir, "customers.csv", options(120, FileFormat::Csv), false);
    std::fs::write(dir.join("bad.csv"), "id,orders\nc-1,many\n").unwrap();
    let mut daemon = Daemon::start(dir, &["--data", "data", "run", "--clock-at", CLOCK]);
    daemon.wait_for("running on");
    let run = ok(bp(
        dir,
        &["customers", "import", "customers.csv", "--actor", "mei"],
    ));
    assert!(
        run.stdout.contains("customers.csv: imported 122 customers"),
        "{}",
        run.stdout
    );
    let rejected = bp(dir, &["customers", "import", "bad.csv"]);
    assert_eq!(rejected.code, 2);
    assert!(
        rejected
            .stderr
            .contains("bad.csv: line 2, column 2 (orders): bad number"),
        "{}",
        rejected.stderr
    );
    let again = ok(bp(dir, &["customers", "import", "customers.csv"]));
    assert!(
        again.stdout.contains("already imported"),
        "{}",
        again.stdout
    );
    let (code, _) = daemon.terminate();
    assert_eq!(code, 0);
    assert_eq!(events(dir), 124);
}

#[test]
fn lines_are_right_with_crlf_a_bom_and_quoted_line_breaks_in_every_import() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    apply_example_plan(dir);
    // Customers, CSV with CR LF ends, a byte-order mark and a quoted line break: the bad rows
    // are on lines 3 and 6.
    let customers = "\u{feff}id,attr.note,active\r\nc-1,a,\r\nc-2,x,2027-01-01 10:00\r\nc-3,\"two\r\nlines\",\r\nc-4,y,soon\r\n";
    std::fs::write(dir.join("crlf.csv"), customers).unwrap();
    let run = bp(dir, &["customers", "import", "crlf.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("crlf.csv: line 3, column 3 (active): bad instant"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("crlf.csv: line 6, column 3 (active): bad instant"),
        "{}",
        run.stderr
    );
    let run = ok(bp(
        dir,
        &["customers", "import", "crlf.csv", "--skip-bad-rows"],
    ));
    assert!(run.stdout.contains("  line 3, active: "), "{}", run.stdout);
    assert!(run.stdout.contains("  line 6, active: "), "{}", run.stdout);
    // What the log records is right too.
    let started = import_started(dir);
    let skipped = &started[0]["payload"]["skipped"];
    assert_eq!(skipped[0]["line"], 3, "{started:?}");
    assert_eq!(skipped[1]["line"], 6, "{started:?}");
    assert_eq!(started[0]["payload"]["skipped_total"], 2, "{started:?}");

    // Customers, JSON lines with CR LF ends, a byte-order mark and a blank line: line 3.
    let customers = "\u{feff}{\"id\":\"c-5\"}\r\n\r\n{\"id\":\"c-6\",\"active\":\"soon\"}\r\n";
    std::fs::write(dir.join("c.jsonl"), customers).unwrap();
    let run = bp(dir, &["customers", "import", "c.jsonl"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("c.jsonl: line 3, active: bad instant"),
        "{}",
        run.stderr
    );
    // Outcomes, CSV with CR LF ends, a byte-order mark and a quoted line break: the bad rows
    // are on lines 3 (its cell runs on to line 4) and 5.
    let outcomes = "\u{feff}customer,outcome,at,channel\r\nc-1,opened,2026-08-19T10:00:00+08:00,mail\r\nc-3,opened,\"yes\r\nterday\",mail\r\nc-3,opened,soon,mail\r\n";
    std::fs::write(dir.join("o.csv"), outcomes).unwrap();
    let run = bp(dir, &["outcomes", "import", "o.csv"]);
    assert!(
        run.stderr
            .contains("o.csv: line 3, column 3 (at): bad instant"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("o.csv: line 5, column 3 (at): bad instant"),
        "{}",
        run.stderr
    );
    // JSON lines with CR LF ends and a byte-order mark: line 3.
    let outcomes = "\u{feff}{\"customer\":\"c-1\",\"outcome\":\"replied\",\"at\":\"2026-08-19T10:00:00Z\"}\r\n\r\n{\"customer\":\"c-3\",\"outcome\":\"replied\",\"at\":\"later\"}\r\n";
    std::fs::write(dir.join("o.jsonl"), outcomes).unwrap();
    let run = bp(dir, &["outcomes", "import", "o.jsonl"]);
    assert!(
        run.stderr.contains("o.jsonl: line 3, at: bad instant"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_customer_id_repeated_in_a_file_is_an_error_naming_both_lines() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(
        dir.join("dup.csv"),
        "id,name\nc-1,Li\nc-2,Wang\nc-1,Li Na\nc-3,Zhang\n",
    )
    .unwrap();
    let run = bp(dir, &["customers", "import", "dup.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("dup.csv: line 4, id: the customer `c-1` is on line 2 too"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("dup.csv: 1 bad row (1 problem) of 4 rows; nothing was imported"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("data").exists(), "nothing is written");

    // With --skip-bad-rows the first row stands and the repeat is skipped, and counted.
    let run = ok(bp(
        dir,
        &[
            "customers",
            "import",
            "dup.csv",
            "--skip-bad-rows",
            "--json",
        ],
    ));
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["rows"], 3, "{report}");
    assert_eq!(report["bad_rows"], 1, "{report}");
    assert_eq!(report["skipped"][0]["line"], 4, "{report}");
    assert_eq!(events(dir), 5, "ImportStarted, three rows, ImportFinished");

    // The same in JSON lines.
    std::fs::write(
        dir.join("dup.jsonl"),
        "{\"id\":\"c-9\"}\n{\"id\":\"c-8\"}\n\n{\"id\":\"c-9\",\"name\":\"x\"}\n",
    )
    .unwrap();
    let run = bp(dir, &["customers", "import", "dup.jsonl"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("dup.jsonl: line 4, id: the customer `c-9` is on line 1 too"),
        "{}",
        run.stderr
    );
}

#[test]
fn outcomes_naming_what_does_not_exist_are_located_errors() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    apply_example_plan(dir);
    std::fs::write(dir.join("c.csv"), "id,name\nc-1,Li\nc-2,Wang\n").unwrap();
    ok(bp(dir, &["customers", "import", "c.csv"]));
    let before = events(dir);
    let file = "customer,outcome,at,campaign,reach_out,channel,amount\n\
        c-1,delivered,2026-08-19T10:00:00Z,sept-festival-2026,warm-up-recall,mail,\n\
        c-nobody,delivered,2026-08-19T10:00:00Z,,,mail,\n\
        c-1,ordered,2026-08-19T11:00:00Z,no-such-campaign,no-such-reach-out,,20\n\
        c-1,ordered,2026-08-19T11:00:00Z,sept-festival-2026,no-such-reach-out,,20\n\
        c-2,unsubscribed,2030-01-01T00:00:00Z,,,,\n\
        c-2,opened,2026-08-19T12:00:00Z,,,mail,\n";
    std::fs::write(dir.join("o.csv"), file).unwrap();
    let run = bp(dir, &["outcomes", "import", "o.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for expected in [
        "o.csv: line 3, customer: no customer `c-nobody` in the customer book",
        "o.csv: line 4, campaign: no campaign `no-such-campaign`; the campaigns are `sept-festival-2026`",
        "o.csv: line 5, reach_out: campaign `sept-festival-2026` has no reach-out `no-such-reach-out`",
        "o.csv: line 6, at: 2030-01-01 08:00 +08:00 is later than now (2026-08-20 08:00 +08:00)",
        "o.csv: 4 bad rows (4 problems) of 6 rows; nothing was imported",
    ] {
        assert!(run.stderr.contains(expected), "lacks {expected}:\n{}", run.stderr);
    }
    assert_eq!(
        events(dir),
        before,
        "nothing of a rejected import is written"
    );

    let run = ok(bp(dir, &["outcomes", "import", "o.csv", "--skip-bad-rows"]));
    assert!(
        run.stdout
            .contains("o.csv: imported 2 outcomes: 1 delivered, 1 opened"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("skipped 4 bad rows"), "{}", run.stdout);
    assert_eq!(events(dir), before + 4);
    // No phantom customer, no order, no unsubscribe.
    let explain = bp(dir, &["explain", "sept-festival-2026", "c-nobody"]);
    assert_eq!(explain.code, 2, "{}", explain.stdout);
    assert!(
        explain
            .stderr
            .contains("no customer `c-nobody` in the customer book"),
        "{}",
        explain.stderr
    );
    let explain = ok(bp(dir, &["explain", "sept-festival-2026", "c-1", "--json"]));
    let profile: Value = serde_json::from_str(&explain.stdout).unwrap();
    assert_eq!(profile["profile"]["orders"], 0, "{profile}");
    let explain = ok(bp(dir, &["explain", "sept-festival-2026", "c-2", "--json"]));
    let profile: Value = serde_json::from_str(&explain.stdout).unwrap();
    assert_eq!(
        profile["profile"]["unsubscribed_from"],
        serde_json::json!([]),
        "{profile}"
    );
}

#[test]
fn control_characters_from_a_file_never_reach_the_terminal_raw() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(dir.join("h.csv"), "id,\u{1b}]0;owned\u{7}\nc-1,x\n").unwrap();
    let run = bp(dir, &["customers", "import", "h.csv"]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(
        run.stderr
            .contains("unknown column `\\u{1b}]0;owned\\u{7}`"),
        "{}",
        run.stderr
    );
    std::fs::write(
        dir.join("c.csv"),
        "id,name,company,active\nc-1,\"Evil\r\nBcc: attacker@evil.example\",Acme,\nc-2,Li,\"A\u{1b}[2J\",\nc-3,Wang,B,\"\u{1b}[31mred\"\n",
    )
    .unwrap();
    let run = bp(dir, &["customers", "import", "c.csv"]);
    assert_eq!(run.code, 2);
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\r'),
        "{:?}",
        run.stderr
    );
    assert!(
        run.stderr.contains("c.csv: line 2, column 2 (name): the name holds a line break or a control character at character 5: Evil\\r\\nBcc: attacker@evil.example"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("c.csv: line 4, column 3 (company): the company holds"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("c.csv: line 5, column 4 (active): bad instant: `\\u{1b}[31mred`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_keep_cell_leaves_a_value_and_an_empty_cell_clears_it() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    apply_example_plan(dir);
    std::fs::write(
        dir.join("first.csv"),
        "id,name,email,tier\nc-1,Li,li@example.com,L1\nc-2,Wang,wang@example.com,L2\n",
    )
    .unwrap();
    ok(bp(dir, &["customers", "import", "first.csv"]));
    std::fs::write(
        dir.join("refresh.csv"),
        "id,name,email,tier\nc-1,Li Na,(keep),\nc-2,(KEEP),,(keep)\n",
    )
    .unwrap();
    ok(bp(dir, &["customers", "import", "refresh.csv"]));
    let profile = |id: &str| -> Value {
        let run = ok(bp(dir, &["explain", "sept-festival-2026", id, "--json"]));
        serde_json::from_str::<Value>(&run.stdout).unwrap()["profile"].clone()
    };
    let first = profile("c-1");
    assert_eq!(first["name"], "Li Na", "{first}");
    assert_eq!(first["email"], "li@example.com", "{first}");
    assert!(first["tier"].is_null(), "an empty cell clears: {first}");
    let second = profile("c-2");
    assert_eq!(second["name"], "Wang", "{second}");
    assert!(second["email"].is_null(), "an empty cell clears: {second}");
    assert_eq!(second["tier"], "L2", "{second}");
}

/// The history says who imported which file when: each import's start (the file's name as
/// given, its digest, the rows to record and those skipped) and its finish, with the actor and
/// the instant, in the text, in JSON (naming no campaign: the customer book is every
/// campaign's) and as of an instant.
#[test]
fn history_says_who_imported_which_file_when() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(
        dir.join("c.csv"),
        "id,name,active\nc-1,Li,2026-08-01T10:00:00+08:00\nc-2,Wang,2026-08-01\nc-3,Zhang,\n",
    )
    .unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "c.csv",
            "--skip-bad-rows",
            "--actor",
            "mei",
        ],
    ));
    std::fs::write(
        dir.join("outcomes.csv"),
        "customer,outcome,at\nc-1,replied,2026-08-20T09:00:00+08:00\n",
    )
    .unwrap();
    ok(run_in(
        dir,
        &[
            "--data",
            "data",
            "--clock-at",
            "2026-08-21T00:00:00Z",
            "outcomes",
            "import",
            "outcomes.csv",
            "--actor",
            "li.na",
        ],
    ));

    let listed: Value = serde_json::from_str(&ok(bp(dir, &["history", "--json"])).stdout).unwrap();
    let listed = listed.as_array().unwrap();
    let kinds: Vec<(&str, &str)> = listed
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap(),
                event["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("ImportStarted", "mei"),
            ("ImportFinished", "mei"),
            ("ImportStarted", "li.na"),
            ("ImportFinished", "li.na"),
        ],
        "{listed:#?}"
    );
    let started = &listed[0];
    assert_eq!(started["campaign"], Value::Null);
    assert_eq!(started["payload"]["file"], "c.csv");
    assert_eq!(started["payload"]["kind"], "customers");
    assert_eq!(started["payload"]["rows"], 2);
    assert_eq!(started["payload"]["skipped_total"], 1);
    assert_eq!(
        instant(started["recorded_at"].as_str().unwrap()),
        instant(CLOCK)
    );
    let digest = started["payload"]["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{started:#}");
    assert_eq!(listed[2]["payload"]["file"], "outcomes.csv");
    assert_eq!(listed[3]["payload"]["rows"], 1);

    let text = ok(bp(dir, &["history"])).stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("2026-08-20"), "{text}");
    assert!(lines[0].contains(" mei "), "{text}");
    assert!(
        lines[0].contains(&format!(
            "customers import of c.csv (blake3 {}) started: 2 rows to record, 1 bad row skipped",
            &digest[..12]
        )),
        "{text}"
    );
    assert!(
        lines[1].contains("customers import (blake3 ")
            && lines[1].contains("finished: 2 rows recorded, 1 skipped"),
        "{text}"
    );
    assert!(lines[2].starts_with("2026-08-21"), "{text}");
    assert!(
        lines[2].contains(" li.na ")
            && lines[2].contains("outcomes import of outcomes.csv (blake3 ")
            && lines[2].contains("started: 1 row to record"),
        "{text}"
    );

    // As of an instant between the two: only the first.
    let then = ok(bp(dir, &["history", "--as-of", "2026-08-20T12:00:00Z"])).stdout;
    assert!(then.contains("customers import of c.csv"), "{then}");
    assert!(!then.contains("outcomes.csv"), "{then}");
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}
