//! The mail server's faults, end to end with the real binary and a real SMTP server on loopback
//! (aiosmtpd, `tests/smtp_server.py`, whose faults are chosen by the recipient's local part):
//! - 451 for a recipient: deferred, then on a later run it arrives, once;
//! - 550 5.1.1 for a recipient: a typed reason (`refused`) and a hard bounce for the customer,
//!   never tried again;
//! - a server that takes the data and falls silent: outcome unknown, handled as the plan's
//!   `unknown_outcome` says (counted as sent, unconfirmed, never resent; or resent with the same
//!   Message-ID);
//! - a server that refuses connections: the channel pauses, ops are told, nothing is lost, and
//!   after `channel resume` (the server back) every message arrives once.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use battleplan_tests::smtp::{header, mail_campaign, python, SmtpServer};
use battleplan_tests::{bp, ok, planned, Daemon};

const CAMPAIGN: &str = "sept-festival-2026";
const REACH_OUT: &str = "warm-up-own-lists";
const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
const LATER: &str = "2026-08-26T01:00:00+08:00";
const LATER_STILL: &str = "2026-08-26T03:00:00+08:00";

/// The daemon at `at`, run until everything due then is done.
fn run_at(dir: &Path, at: &str) {
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            at,
            "--until",
            at,
            "--public-url",
            "http://127.0.0.1:1",
        ],
    );
    let (code, lines) = daemon.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
}

/// The log's events of the mail channel.
fn events(dir: &Path) -> Vec<serde_json::Value> {
    let file = dir.join("export.jsonl");
    let _ = std::fs::remove_file(&file);
    ok(bp(dir, &["export", "--out", "export.jsonl"]));
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["payload"]["channel"] == "mail"
                || event["payload"]["channel"].is_null() && event["event_type"] == "OutcomeRecorded"
        })
        .collect()
}

fn of<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
    customer: &str,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|event| event["event_type"] == kind)
        .filter(|event| {
            event["payload"]["customer"] == customer || event["payload"]["to"] == customer
        })
        .collect()
}

/// A campaign whose first planned customers' addresses make the server answer 451 once, 550,
/// and fall silent after the data; the customers so chosen, in that order.
fn faulty_campaign(dir: &Path, port: u16, unknown_outcome: &str) -> [String; 3] {
    let keys = format!("unknown_outcome = \"{unknown_outcome}\"\n");
    mail_campaign(dir, 150, port, "2s", &keys, |csv| csv);
    let chosen: Vec<String> = planned(dir, CAMPAIGN, REACH_OUT, WARM_UP)
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(chosen.len(), 3, "too few planned");
    // The same customers again, their addresses given the faults' prefixes.
    let csv = std::fs::read_to_string(dir.join("customers.csv")).unwrap();
    let mut lines = csv.lines();
    let head = lines.next().unwrap();
    let columns: Vec<&str> = head.split(',').collect();
    let id = columns.iter().position(|c| *c == "id").unwrap();
    let email = columns.iter().position(|c| *c == "email").unwrap();
    let prefixes: BTreeMap<&str, &str> = chosen
        .iter()
        .map(String::as_str)
        .zip(["defer1-", "unknown-", "stall-"])
        .collect();
    let mut changed = vec![head.to_string()];
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if let Some(prefix) = prefixes.get(cells[id]) {
            let mut cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
            cells[email] = format!("{prefix}{}", cells[email]);
            changed.push(cells.join(","));
        }
    }
    assert_eq!(changed.len(), 4, "the chosen customers are plain CSV rows");
    std::fs::write(dir.join("changed.csv"), changed.join("\n") + "\n").unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "changed.csv",
            "--clock-at",
            "2026-08-21T00:00:00Z",
        ],
    ));
    [chosen[0].clone(), chosen[1].clone(), chosen[2].clone()]
}

/// The messages that arrived for an address, by their Message-ID.
fn arrived_for(server: &SmtpServer, prefix: &str) -> Vec<String> {
    server
        .arrived()
        .iter()
        .filter(|message| {
            message["rcpt_to"][0]
                .as_str()
                .is_some_and(|to| to.starts_with(prefix))
        })
        .map(|message| header(message, "Message-ID").unwrap().to_string())
        .collect()
}

#[test]
fn a_451_arrives_later_once_a_550_bounces_and_a_silence_counts_as_sent_unconfirmed() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let [deferred, unknown, silent] = faulty_campaign(dir, server.port, "count_as_sent");
    run_at(dir, WARM_UP);
    let first = events(dir);
    assert_eq!(of(&first, "DeliveryDeferred", &deferred).len(), 1);
    assert!(of(&first, "MessageSent", &deferred).is_empty());
    assert!(arrived_for(&server, "defer1-").is_empty());
    run_at(dir, LATER);
    run_at(dir, LATER_STILL);
    let events = events(dir);
    // The 451: deferred once, then sent and arrived, once.
    assert_eq!(of(&events, "MessageSent", &deferred).len(), 1);
    assert_eq!(arrived_for(&server, "defer1-").len(), 1);
    // The 550: refused, a hard bounce, never tried again.
    let refused = of(&events, "NotSent", &unknown);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["payload"]["reason"], "refused");
    assert!(
        refused[0]["payload"]["detail"]
            .as_str()
            .unwrap()
            .contains("550"),
        "{}",
        refused[0]
    );
    let bounce = of(&events, "OutcomeRecorded", &unknown);
    assert_eq!(bounce.len(), 1);
    assert_eq!(bounce[0]["payload"]["outcome"], "bounced");
    assert!(of(&events, "DeliveryDeferred", &unknown).is_empty());
    assert!(arrived_for(&server, "unknown-").is_empty());
    let explained: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "explain",
                CAMPAIGN,
                &unknown,
                "--json",
                "--clock-at",
                LATER_STILL,
            ],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(explained["profile"]["email_ok"], false, "{explained}");
    // The silence: the server has it; counted as sent, unconfirmed, and never handed over again.
    let sent = of(&events, "MessageSent", &silent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["payload"]["unconfirmed"], true, "{}", sent[0]);
    assert_eq!(arrived_for(&server, "stall-").len(), 1);
}

#[test]
fn with_resend_a_silence_is_handed_over_again_with_the_same_message_id() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let [_, _, silent] = faulty_campaign(dir, server.port, "resend");
    run_at(dir, WARM_UP);
    run_at(dir, LATER);
    let events = events(dir);
    // The server falls silent for this address every time: each silence is a deferral, and
    // every copy that arrived carries the one Message-ID.
    assert!(of(&events, "MessageSent", &silent).is_empty());
    assert_eq!(of(&events, "DeliveryDeferred", &silent).len(), 2);
    let copies = arrived_for(&server, "stall-");
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(copies[0], copies[1]);
}

#[test]
fn a_server_that_refuses_connections_pauses_the_channel_until_resumed_and_nothing_is_lost() {
    let Some(python) = python() else { return };
    // A port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    mail_campaign(dir, 150, port, "2s", "", |csv| csv);
    let planned: BTreeSet<String> = planned(dir, CAMPAIGN, REACH_OUT, WARM_UP)
        .into_iter()
        .collect();
    run_at(dir, WARM_UP);
    let status: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &["status", CAMPAIGN, "--json", "--clock-at", WARM_UP],
        ))
        .stdout,
    )
    .unwrap();
    let mail = status["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|channel| channel["id"] == "mail")
        .unwrap()
        .clone();
    assert_eq!(mail["state"], "paused_after_failure", "{mail}");
    assert!(
        mail["failure"].as_str().unwrap().contains("cannot connect"),
        "{mail}"
    );
    // Ops are told, with the command that resumes it.
    let staff = std::fs::read_to_string(dir.join("data/outbox/staff.jsonl")).unwrap();
    assert!(
        staff.contains("sending paused after a failure")
            && staff.contains(&format!("battleplan channel resume {CAMPAIGN} mail")),
        "{staff}"
    );
    // Nothing sent, and nothing given up for it: the messages wait.
    let events = events(dir);
    for event in &events {
        assert_ne!(event["event_type"], "MessageSent", "{event}");
        let reason = event["payload"]["reason"].as_str().unwrap_or_default();
        assert!(
            !["refused", "undelivered", "channel_down"].contains(&reason),
            "{event}"
        );
    }
    // The server comes up; a person resumes the channel; everything planned arrives, once.
    let server = SmtpServer::start_on(&python, port);
    ok(bp(
        dir,
        &[
            "channel",
            "resume",
            CAMPAIGN,
            "mail",
            "--actor",
            "mia",
            "--reason",
            "the relay is back",
            "--clock-at",
            LATER,
        ],
    ));
    run_at(dir, LATER);
    let arrived: Vec<String> = server
        .arrived()
        .iter()
        .filter(|message| header(message, "X-Battleplan-Reach-Out") == Some(REACH_OUT))
        .map(|message| {
            header(message, "X-Battleplan-Key")
                .unwrap()
                .split('/')
                .nth(2)
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: BTreeSet<String> = arrived.iter().cloned().collect();
    assert_eq!(unique.len(), arrived.len(), "a message arrived twice");
    assert_eq!(unique, planned);
}
