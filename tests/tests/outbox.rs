//! The outbox end to end, with the real binary: the real reach-out sends to and excludes exactly
//! the customers `audience preview` listed; and a large reach-out survives 24 SIGKILLs of the
//! daemon mid-planning and mid-dispatch with exactly one line per idempotency key in the file
//! outbox, none missing.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{bp, instant, mutate, ok, run_in, Daemon, Run};

const HOLD_AFTER_DELIVERY: &str = "BATTLEPLAN_FAILPOINT_HOLD_AFTER_DELIVERY";

const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
const BURST: &str = "2026-09-02T00:00:00+08:00";

/// The example plan with `replacements`, applied, and `count` generated customers imported.
fn campaign(dir: &Path, count: u64, replacements: &[(&str, &str)]) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    std::fs::write(dir.join("plan.toml"), mutate(&example, replacements)).unwrap();
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

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&ok(run).stdout).unwrap()
}

/// Every line of a channel's file outbox, by idempotency key (a key twice is a failure).
fn outbox_lines(dir: &Path, channel: &str) -> BTreeMap<String, serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("data/outbox").join(format!("{channel}.jsonl")))
        .unwrap_or_default();
    let mut lines = BTreeMap::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|error| {
            panic!("a torn or broken line in the outbox ({error}): {line}")
        });
        let key = value["key"].as_str().unwrap().to_string();
        assert!(
            lines.insert(key.clone(), value).is_none(),
            "key {key} is in the outbox twice"
        );
    }
    lines
}

/// The outbox's own account of a reach-out: (customer -> status, customer -> reason).
fn decided(dir: &Path, reach_out: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let report = json(bp(
        dir,
        &[
            "outbox",
            "sept-festival-2026",
            "--reach-out",
            reach_out,
            "--json",
            "--customers",
        ],
    ));
    let mut status = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    for row in report["customers"].as_array().unwrap() {
        if row["attempt"] != 1 {
            continue;
        }
        let customer = row["customer"].as_str().unwrap().to_string();
        status.insert(
            customer.clone(),
            row["status"].as_str().unwrap().to_string(),
        );
        if let Some(reason) = row["reason"].as_str() {
            reasons.insert(customer, reason.to_string());
        }
    }
    (status, reasons)
}

#[test]
fn the_real_reach_out_sends_to_and_excludes_exactly_the_previewed_customers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The example plan, mail quotas and quiet hours included; customers of the recall also sit
    // in other reach-outs, planned after it.
    campaign(dir, 3_000, &[]);
    let preview = json(bp(
        dir,
        &[
            "audience",
            "preview",
            "sept-festival-2026",
            "--reach-out",
            "warm-up-recall",
            "--at",
            WARM_UP,
            "--clock-at",
            "2026-08-20T00:00:00Z",
            "--json",
            "--customers",
        ],
    ));
    let previewed_sends: BTreeMap<String, String> = preview["customers"]["sends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|send| {
            (
                send["customer"].as_str().unwrap().to_string(),
                send["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let previewed_exclusions: BTreeMap<String, String> = preview["customers"]["not_sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["customer"].as_str().unwrap().to_string(),
                row["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(previewed_sends.len() > 200, "{}", previewed_sends.len());
    assert!(!previewed_exclusions.is_empty());

    // The daemon runs the warm-up under a virtual clock: enters the phase, plans the
    // reach-outs, sends day by day.
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            WARM_UP,
            "--until",
            BURST,
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));

    let (status, reasons) = decided(dir, "warm-up-recall");
    let sent: BTreeSet<&String> = status
        .iter()
        .filter(|(_, s)| s.as_str() == "sent")
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        sent,
        previewed_sends.keys().collect::<BTreeSet<_>>(),
        "the customers sent to differ from the preview's"
    );
    assert_eq!(
        reasons, previewed_exclusions,
        "the exclusions differ from the preview's"
    );
    // Each send went at the instant the preview planned, through the file outbox.
    let lines = outbox_lines(dir, "mail");
    for (customer, at) in &previewed_sends {
        let key = format!("sept-festival-2026/warm-up-recall/{customer}/1");
        let line = lines
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in the outbox"));
        assert_eq!(instant(line["at"].as_str().unwrap()), instant(at), "{key}");
        assert_eq!(line["template"], "warm-up-mail");
        assert!(line["subject"]
            .as_str()
            .unwrap()
            .starts_with("September Procurement Festival 2026 is coming"));
    }
}

#[test]
fn killing_the_daemon_mid_dispatch_never_duplicates_or_loses_a_send() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // No quotas and no quiet hours on mail: the warm-up's reach-outs are all due at once.
    campaign(
        dir,
        30_000,
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
    let run = [
        "--data",
        "data",
        "run",
        "--clock-at",
        WARM_UP,
        "--until",
        WARM_UP,
    ];
    let mut kills = 0;
    let mut between_delivery_and_record = 0;
    let mut round = 0;
    while kills < 24 {
        round += 1;
        assert!(round < 60, "the dispatch finished before 24 kills");
        // Every third run stops at the failpoint right after the channel took a batch and
        // before `MessageSent` is recorded, and is killed there: the window where a crash could
        // send twice. The others are killed after the first (now and then the second) step of
        // planning or sending they log, wherever the process then is.
        let at_failpoint = round % 3 == 0;
        let mut daemon = if at_failpoint {
            Daemon::start_with(dir, &run, &[(HOLD_AFTER_DELIVERY, "1")])
        } else {
            Daemon::start(dir, &run)
        };
        let mut killed = false;
        if at_failpoint {
            killed = daemon
                .wait_for_or_end("delivered and not yet recorded")
                .is_some();
            between_delivery_and_record += usize::from(killed);
        } else {
            for _ in 0..(1 + usize::from(round % 4 == 0)) {
                killed = daemon
                    .wait_for_or_end_any(&["planned:", "sent a batch"])
                    .is_some();
                if !killed {
                    break;
                }
            }
        }
        if killed {
            daemon.kill();
            kills += 1;
        } else {
            let (code, log) = daemon.finish();
            assert_eq!(code, 0, "{}", log.join("\n"));
            break;
        }
    }
    assert!(kills >= 24, "only {kills} kills landed mid-dispatch");
    assert!(
        between_delivery_and_record >= 6,
        "only {between_delivery_and_record} kills landed between a delivery and its record"
    );
    // The last restart finishes the work.
    let mut daemon = Daemon::start(dir, &run);
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));

    let lines = outbox_lines(dir, "mail");
    let mut planned = 0;
    for reach_out in ["warm-up-recall", "warm-up-own-lists"] {
        let (status, _) = decided(dir, reach_out);
        for (customer, state) in &status {
            if state == "not_sent" {
                continue;
            }
            planned += 1;
            assert_eq!(state, "sent", "{reach_out} {customer}");
            let key = format!("sept-festival-2026/{reach_out}/{customer}/1");
            assert!(lines.contains_key(&key), "{key} is missing from the outbox");
        }
    }
    assert_eq!(
        lines.len(),
        planned,
        "the outbox holds lines for sends that were never planned"
    );
    assert!(planned > 10_000, "only {planned} sends planned");
    // Each batch killed between its delivery and its record was handed over again after the
    // restart; the file outbox knew the keys and wrote nothing, and the log says so.
    let export = ok(bp(dir, &["export"])).stdout;
    let redelivered = export
        .lines()
        .filter(|line| line.contains("\"event_type\":\"MessageSent\""))
        .filter(|line| line.contains("\"duplicate\":true"))
        .count();
    assert!(
        redelivered >= between_delivery_and_record,
        "{redelivered} sends recorded as handed over again after {between_delivery_and_record} kills between delivery and record"
    );
    ok(bp(dir, &["audit", "verify"]));
}
