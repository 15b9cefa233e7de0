//! Exactly once over HTTP, through a crash: fifty task-done commands are sent at once, each
//! with its own `Idempotency-Key`, and the daemon is killed (SIGKILL) while they are in flight.
//! After a restart every command that was answered 2xx is in the log exactly once, under the
//! token's name; a retry of each with its key is answered from the log and records nothing; and
//! a retry of those that got no answer records each at most once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use battleplan_core::plan::EXAMPLE_PLAN;
use battleplan_tests::http::{self, address_in};
use battleplan_tests::{bp, ok, Daemon};

const CLOCK: &str = "2026-08-20T00:00:00+08:00";
const CAMPAIGN: &str = "sept-festival-2026";
const COMMANDS: usize = 50;
const LISTENING: &str = "HTTP API on http://";

fn start(dir: &Path) -> (Daemon, String) {
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            CLOCK,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let line = daemon.wait_for(LISTENING);
    (daemon, address_in(&line))
}

/// Every `TaskDone` in the log, as (occurrence, actor, command id), read through the command
/// line (which asks the daemon when one runs).
fn done_in_log(dir: &Path) -> Vec<(String, String, String)> {
    let run = ok(bp(
        dir,
        &["history", CAMPAIGN, "--json", "--clock-at", CLOCK],
    ));
    let events: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "TaskDone")
        .map(|event| {
            (
                event["payload"]["occurrence"].as_str().unwrap().to_string(),
                event["actor"].as_str().unwrap().to_string(),
                event["command_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn done(address: &str, token: &str, occurrence: &str, key: &str) -> std::io::Result<http::Answer> {
    http::send(
        address,
        "POST",
        &format!("/api/v1/campaigns/{CAMPAIGN}/tasks/{occurrence}/done"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Idempotency-Key", key),
            ("Content-Type", "application/json"),
        ],
        format!("{{\"note\": \"done by the crash test ({key})\"}}").as_bytes(),
    )
}

#[test]
fn commands_answered_2xx_survive_a_sigkill_exactly_once_and_retries_come_from_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    std::fs::write(dir.join("plan.toml"), EXAMPLE_PLAN).unwrap();
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", CLOCK],
    ));
    let token = ok(bp(
        dir,
        &["token", "create", "--name", "rep.wang", "--role", "sales"],
    ))
    .stdout
    .trim()
    .to_string();
    let board = ok(bp(dir, &["tasks", "--json", "--clock-at", CLOCK]));
    let board: serde_json::Value = serde_json::from_str(&board.stdout).unwrap();
    let occurrences: Vec<String> = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["occurrence"].as_str().unwrap().to_string())
        .take(COMMANDS)
        .collect();
    assert_eq!(occurrences.len(), COMMANDS, "the plan has enough tasks");

    let (mut daemon, address) = start(dir);
    let answered = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = occurrences
        .iter()
        .enumerate()
        .map(|(index, occurrence)| {
            let (address, token, occurrence) = (address.clone(), token.clone(), occurrence.clone());
            let answered = answered.clone();
            std::thread::spawn(move || {
                let key = format!("crash-{index}");
                let answer = done(&address, &token, &occurrence, &key);
                answered.fetch_add(1, Ordering::SeqCst);
                (occurrence, key, answer)
            })
        })
        .collect();
    // Killed with some answered and, most likely, some still in flight: the test holds for
    // any split, and a bounded wait for the first answers keeps the kill from landing before
    // anything was sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while answered.load(Ordering::SeqCst) < COMMANDS / 5 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    daemon.kill();
    let results: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let acknowledged: Vec<_> = results
        .iter()
        .filter(|(_, _, answer)| {
            answer
                .as_ref()
                .is_ok_and(|answer| (200..300).contains(&answer.status))
        })
        .collect();
    assert!(
        !acknowledged.is_empty(),
        "some commands were answered before the kill: {:?}",
        results
            .iter()
            .map(|(_, _, answer)| answer.as_ref().map(|a| a.status).map_err(|e| e.kind()))
            .collect::<Vec<_>>()
    );
    for (_, _, answer) in &results {
        if let Ok(answer) = answer {
            assert!(
                answer.status < 500,
                "no command failed inside: {} {}",
                answer.status,
                answer.text()
            );
        }
    }

    let (mut daemon, address) = start(dir);
    let log = done_in_log(dir);
    for (occurrence, key, _) in &acknowledged {
        let recorded: Vec<_> = log.iter().filter(|(o, _, _)| o == occurrence).collect();
        assert_eq!(
            recorded.len(),
            1,
            "{occurrence} ({key}), answered 2xx, is in the log exactly once: {recorded:?}"
        );
        assert_eq!(recorded[0].1, "rep.wang", "recorded under the token's name");
    }
    for (occurrence, _, _) in &results {
        assert!(
            log.iter().filter(|(o, _, _)| o == occurrence).count() <= 1,
            "{occurrence} is never recorded twice"
        );
    }

    // A retry of an acknowledged command is answered from the log, records nothing new.
    for (occurrence, key, first) in &acknowledged {
        let again = done(&address, &token, occurrence, key).unwrap();
        let first = first.as_ref().unwrap();
        assert!(
            (200..300).contains(&again.status),
            "{occurrence}: {} {}",
            again.status,
            again.text()
        );
        assert_eq!(
            again.json()["position"],
            first.json()["position"],
            "{occurrence}: the retry names the first's position in the log"
        );
    }
    assert_eq!(done_in_log(dir), log, "the retries recorded nothing");

    // Those that got no answer are retried with their keys: each is then recorded once.
    for (occurrence, key, _) in &results {
        let answer = done(&address, &token, occurrence, key).unwrap();
        assert!(
            (200..300).contains(&answer.status),
            "{occurrence}: {} {}",
            answer.status,
            answer.text()
        );
    }
    let log = done_in_log(dir);
    for occurrence in &occurrences {
        assert_eq!(
            log.iter().filter(|(o, _, _)| o == occurrence).count(),
            1,
            "{occurrence} is recorded exactly once after the retries"
        );
    }
    daemon.terminate();
}
