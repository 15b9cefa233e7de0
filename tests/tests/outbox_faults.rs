//! The file outbox on a disk that fails mid-batch, end to end: the daemon runs the warm-up's
//! sends with one write of the outbox failing as a full disk would (`BATTLEPLAN_FAULTS`
//! `outbox.write:N!`, a passing fault, so the same daemon tries again), for several N across the
//! batches. Every message is in the outbox files exactly once, with no torn line, and the log
//! records exactly those messages as sent, each once and none as handed over again: the failed
//! batch was undone, not left in the file to be written a second time.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{bp, instant, mutate, ok, run_in, Daemon};

const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
/// Long enough for a retry 30 s after each failure, under the simulated clock.
const UNTIL: &str = "2026-08-26T00:10:00+08:00";

/// The example plan with no quotas or quiet hours on mail (the warm-up's sends all due at once,
/// several batches of 500), applied, and `count` customers imported.
fn campaign(dir: &Path, count: u64) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let plan = mutate(
        &example,
        &[
            (
                "free_per_day = 200          # the first 200 a day are free\n",
                "",
            ),
            (
                "daily_cap = 2000            # the platform's initial cap\n",
                "",
            ),
            ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
            (
                "quiet_hours = { start = \"22:00\", end = \"08:00\", policy = \"hold\" }\n",
                "",
            ),
            ("monthly_budget = 100.00\n", ""),
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
        count,
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

/// A copy of a directory tree (a store no process holds).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every line of every outbox file, by idempotency key: a key twice, or a line that is not whole
/// JSON, is a failure.
fn outbox_keys(dir: &Path) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("data/outbox")).unwrap() {
        let path = entry.unwrap().path();
        let channel = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{channel}: a torn last line"
        );
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("{channel}: a torn or broken line in the outbox ({error}): {line}")
            });
            let key = value["key"].as_str().unwrap().to_string();
            if let Some(first) = keys.insert(key.clone(), channel.clone()) {
                panic!("key {key} is in the outbox twice ({first} and {channel})");
            }
        }
    }
    keys
}

/// The log's `MessageSent`s: key -> how many times recorded, and how many say "handed over
/// again".
fn sent_in_log(dir: &Path) -> (BTreeMap<String, usize>, usize) {
    let export = ok(bp(dir, &["export"])).stdout;
    let mut sent = BTreeMap::new();
    let mut duplicates = 0;
    for line in export.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value["event_type"] != "MessageSent" {
            continue;
        }
        let payload = &value["payload"];
        let key = payload["key"]
            .as_str()
            .unwrap_or_else(|| panic!("a MessageSent without a key: {payload}"));
        *sent.entry(key.to_string()).or_insert(0) += 1;
        duplicates += usize::from(payload["duplicate"] == true);
    }
    (sent, duplicates)
}

#[test]
fn a_write_failing_mid_batch_leaves_every_message_in_the_outbox_exactly_once() {
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path().join("base");
    std::fs::create_dir(&base).unwrap();
    campaign(&base, 3_000);
    let run = [
        "--data",
        "data",
        "run",
        "--simulate",
        "--clock-at",
        WARM_UP,
        "--until",
        UNTIL,
    ];
    // The first write of all, one early in the first batch, one in the middle of the batches,
    // one late: a batch is written in pieces of 64 KiB, a few pieces a batch.
    for n in [1, 3, 6, 10] {
        let dir = scratch.path().join(format!("fault-{n}"));
        copy_tree(&base, &dir);
        let faults = format!("outbox.write:{n}!");
        let mut daemon = Daemon::start_with(&dir, &run, &[("BATTLEPLAN_FAULTS", &faults)]);
        let (code, log) = daemon.finish();
        let log = log.join("\n");
        assert_eq!(code, 0, "{faults}: {log}");
        assert_eq!(
            log.matches("No space left on device").count(),
            1,
            "{faults}: the fault did not fire once: {log}"
        );
        assert_eq!(log.matches("trying again in").count(), 1, "{faults}: {log}");

        let outbox = outbox_keys(&dir);
        let (sent, duplicates) = sent_in_log(&dir);
        assert!(
            outbox.values().filter(|channel| *channel == "mail").count() > 1_000,
            "{faults}: only {} mails, not several batches",
            outbox.len()
        );
        let twice: Vec<&String> = sent
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(key, _)| key)
            .collect();
        assert!(
            twice.is_empty(),
            "{faults}: recorded as sent twice: {twice:?}"
        );
        assert!(
            outbox.keys().eq(sent.keys()),
            "{faults}: the outbox ({} lines) and the log's sends ({}) differ",
            outbox.len(),
            sent.len()
        );
        // The failed batch was undone, so its retry wrote every message anew: nothing was
        // found already in the file.
        assert_eq!(duplicates, 0, "{faults}");
    }
}
