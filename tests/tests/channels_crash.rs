//! Crash test of the real channels: the daemon sends mail to a real SMTP server and in-site
//! messages to a real webhook receiver (both on loopback) over the warm-up's days, and is
//! SIGKILLed at least 20 times while it sends: at the failpoint right after a channel took a
//! batch and before the log recorded it, and in the middle of a batch's delivery. Afterwards
//! every send the log records arrived, nothing arrived that the log does not record, and a key
//! arrived more than once only when a copy went in a killed run (in flight at a kill), every
//! copy with the same Message-ID or webhook-id. It prints how many did.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::smtp::{header, python, SmtpServer};
use battleplan_tests::webhook::{WebhookReceiver, SECRET};
use battleplan_tests::{bp, instant, mutate, ok, run_in, Daemon};

const HOLD_AFTER_DELIVERY: &str = "BATTLEPLAN_FAILPOINT_HOLD_AFTER_DELIVERY";
/// The warm-up's days, at 10:00 (outside mail's quiet hours).
const DAYS: [&str; 7] = [
    "2026-08-26T10:00:00+08:00",
    "2026-08-27T10:00:00+08:00",
    "2026-08-28T10:00:00+08:00",
    "2026-08-29T10:00:00+08:00",
    "2026-08-30T10:00:00+08:00",
    "2026-08-31T10:00:00+08:00",
    "2026-09-01T10:00:00+08:00",
];

fn campaign(dir: &Path, smtp_port: u16, webhook: &str) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let plan = mutate(
        &example,
        &[
            ("free_per_day = 200          # the first 200 a day are free\n", "free_per_day = 90\n"),
            ("daily_cap = 2000            # the platform's initial cap\n", "daily_cap = 90\n"),
            ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
            ("monthly_budget = 100.00\n", ""),
            (
                "accounts = [\"shop-mail\"]\n",
                &format!(
                    "accounts = [\"shop-mail\"]\nsmtp = {{ host = \"127.0.0.1\", port = {smtp_port}, tls = \"none\", from = \"Shop <shop@example.com>\", timeout = \"10s\" }}\n"
                ),
            ),
            (
                "accounts = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\nfatigue = \"7d\"\n",
                &format!(
                    "accounts = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\nfatigue = \"0d\"\nwebhook = {{ url = \"{webhook}\", secret_env = \"SHOP_WEBHOOK_SECRET\", timeout = \"10s\" }}\n"
                ),
            ),
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
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 5_000,
            seed: 5,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
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

/// How many messages each receiver took so far (the webhook's first takes of an id and its
/// repeats alike).
fn arrivals(server: &SmtpServer, receiver: &WebhookReceiver) -> (usize, usize) {
    (server.count(), receiver.answered_ok())
}

/// Whether either receiver took something since `before`.
fn grew(now: (usize, usize), before: (usize, usize)) -> bool {
    now.0 > before.0 || now.1 > before.1
}

/// The arrivals once the receivers have finished writing what they took before a kill: the
/// same count three times, 20 ms apart (at most 5 s).
fn settled(server: &SmtpServer, receiver: &WebhookReceiver) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = arrivals(server, receiver);
    let mut same = 0;
    while same < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = arrivals(server, receiver);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

#[test]
fn twenty_kills_while_sending_lose_nothing_and_repeat_only_what_was_in_flight() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let receiver = WebhookReceiver::start(&python, &BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    campaign(dir, server.port, &receiver.url());
    let environment = [("SHOP_WEBHOOK_SECRET", SECRET)];

    let mut kills = 0;
    let mut at_failpoint = 0;
    // The arrivals (by their order at each receiver) that came in killed runs.
    let mut killed_ranges: Vec<((usize, usize), (usize, usize))> = Vec::new();
    for at in DAYS {
        let run = [
            "--data",
            "data",
            "run",
            "--clock-at",
            at,
            "--until",
            at,
            "--public-url",
            "http://127.0.0.1:1",
        ];
        // Each day is run until a run finishes it; up to four runs a day are killed while they
        // send, alternately at the failpoint and in the middle of a delivery.
        let mut round = 0;
        loop {
            let before = arrivals(&server, &receiver);
            let kill = round < 4;
            let failpoint = kill && round % 2 == 0;
            let mut environment = environment.to_vec();
            if failpoint {
                environment.push((HOLD_AFTER_DELIVERY, "1"));
            }
            let mut daemon = Daemon::start_with(dir, &run, &environment);
            let killed = if !kill {
                false
            } else if failpoint {
                daemon
                    .wait_for_or_end("delivered and not yet recorded")
                    .is_some()
            } else {
                // Mid-delivery: as soon as the receivers took something of this run.
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut took = false;
                while Instant::now() < deadline && !daemon.has_ended() {
                    if grew(arrivals(&server, &receiver), before) {
                        took = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                took
            };
            if killed {
                daemon.kill();
                let after = settled(&server, &receiver);
                // A kill while it sent to the receivers (not one after it wrote staff
                // reminders to their outbox).
                if grew(after, before) {
                    kills += 1;
                    at_failpoint += usize::from(failpoint);
                    killed_ranges.push((before, after));
                }
                round += 1;
                continue;
            }
            let (code, lines) = daemon.finish();
            assert_eq!(code, 0, "{}", lines.join("\n"));
            let after = arrivals(&server, &receiver);
            println!(
                "{at}: {} mails and {} webhooks in the run that finished the day, {kills} kills so far",
                after.0 - before.0,
                after.1 - before.1
            );
            break;
        }
    }
    assert!(kills >= 20, "only {kills} kills landed while sending");
    // The warm-up's last sending hours, without kills: everything it planned is then due.
    let last = "2026-09-01T21:59:00+08:00";
    let mut daemon = Daemon::start_with(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            last,
            "--until",
            last,
            "--public-url",
            "http://127.0.0.1:1",
        ],
        &environment,
    );
    let (code, lines) = daemon.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));

    // What the log says was sent, by key.
    ok(bp(dir, &["export", "--out", "export.jsonl"]));
    let log = std::fs::read_to_string(dir.join("export.jsonl")).unwrap();
    let sent: BTreeSet<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event_type"] == "MessageSent")
        .filter(|event| {
            ["mail", "in-site"].contains(&event["payload"]["channel"].as_str().unwrap())
        })
        .map(|event| event["payload"]["key"].as_str().unwrap().to_string())
        .collect();
    // Every planned mail of the warm-up went (or was given up for a reason): none is pending.
    let outbox: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "outbox",
                "sept-festival-2026",
                "--json",
                "--clock-at",
                DAYS[6],
            ],
        ))
        .stdout,
    )
    .unwrap();
    for reach_out in outbox["reach_outs"].as_array().unwrap() {
        if reach_out["id"].as_str().unwrap().starts_with("warm-up") {
            assert_eq!(reach_out["pending"], 0, "{reach_out}");
        }
    }
    assert!(
        sent.len() > 500,
        "only {} sends: {}",
        sent.len(),
        ok(bp(
            dir,
            &["outbox", "sept-festival-2026", "--clock-at", DAYS[6]]
        ))
        .stdout
    );

    // Every copy that arrived: its id, and whether it came in a killed run (in flight at a
    // kill: handed over, not yet recorded).
    let in_killed_run = |mail: bool, index: usize| {
        killed_ranges.iter().any(|(before, after)| {
            let (from, to) = if mail {
                (before.0, after.0)
            } else {
                (before.1, after.1)
            };
            (from..to).contains(&index)
        })
    };
    let mut copies: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for (index, message) in server.arrived().iter().enumerate() {
        let key = header(message, "X-Battleplan-Key").unwrap().to_string();
        let id = header(message, "Message-ID").unwrap().to_string();
        copies
            .entry(key)
            .or_default()
            .push((id, in_killed_run(true, index)));
    }
    let taken = receiver.attempts();
    let taken = taken.iter().filter(|attempt| attempt["status"] == 200);
    for (index, attempt) in taken.enumerate() {
        assert_eq!(attempt["verified"], true);
        let key = attempt["body"]["data"]["key"].as_str().unwrap().to_string();
        let id = attempt["id"].as_str().unwrap().to_string();
        copies
            .entry(key)
            .or_default()
            .push((id, in_killed_run(false, index)));
    }
    let arrived: BTreeSet<String> = copies.keys().cloned().collect();
    let missing: Vec<&String> = sent.difference(&arrived).collect();
    assert!(
        missing.is_empty(),
        "recorded as sent, never arrived: {missing:?}"
    );
    let unknown: Vec<&String> = arrived.difference(&sent).collect();
    assert!(
        unknown.is_empty(),
        "arrived, not recorded as sent: {unknown:?}"
    );
    let mut repeated = 0;
    for (key, ids) in &copies {
        if ids.len() > 1 {
            repeated += ids.len() - 1;
            assert!(ids.iter().all(|(id, _)| *id == ids[0].0), "{key}: {ids:?}");
            // At most one copy went in a run that recorded it; the others were in flight at a
            // kill.
            let outside = ids.iter().filter(|(_, killed)| !killed).count();
            assert!(
                outside <= 1,
                "{key} arrived {outside} times outside killed runs"
            );
        }
    }
    assert!(
        repeated > 0,
        "no kill landed between a delivery and its record"
    );
    println!(
        "{kills} kills ({at_failpoint} between a delivery and its record): {} sends, {repeated} repeated copies of {} keys in flight at a kill, each with its key's Message-ID or webhook-id",
        sent.len(),
        copies.values().filter(|ids| ids.len() > 1).count()
    );
    ok(bp(dir, &["audit", "verify"]));
}
