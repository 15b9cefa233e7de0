//! Durability shown by killing a real process: a child appends continuously and prints every
//! acknowledged append; it is killed with SIGKILL at varied moments, 25 times over one sled
//! store and 20 times over one PostgreSQL tenant. After each kill the store is reopened and
//! must hold every acknowledged event intact, with gapless positions, no command half applied,
//! and a hash chain that verifies.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use battleplan_adapters::{PgEventLog, PgLocation, PgOptions, SledEventLog, StoreOptions};
use battleplan_core::event::port::EventReader;
use battleplan_core::event::{Position, RecordedEvent};
use battleplan_tests::postgres;

const KILLS: u32 = 25;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    first: u64,
    last: u64,
    command: String,
    count: u64,
}

/// Runs the child until it has acknowledged `acks` appends, then kills it with SIGKILL. Odd
/// runs checkpoint every 64 events, so that kills land while a checkpoint writes a frozen tail
/// into sled and the next write-ahead file is being written.
fn run_and_kill(directory: &Path, run: u32, acks: usize) -> Vec<Ack> {
    run_and_kill_on(directory.as_os_str(), "", run, acks)
}

/// [`run_and_kill`] on a store named by a path or a `postgres://` URL (with its password).
fn run_and_kill_on(store: &std::ffi::OsStr, password: &str, run: u32, acks: usize) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_append_forever"));
    child
        .arg(store)
        .arg(run.to_string())
        .env("BATTLEPLAN_STORE_PASSWORD", password);
    if run % 2 == 1 {
        child.arg("64");
    }
    let mut child = child
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "unexpected line from the child: {line}");
        seen.push(Ack {
            first: fields[1].parse().unwrap(),
            last: fields[2].parse().unwrap(),
            command: fields[3].to_string(),
            count: fields[4].parse().unwrap(),
        });
        if seen.len() >= acks {
            // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no goodbye.
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was meant to be killed, it exited: {status}"
    );
    seen
}

fn payload_fields(event: &RecordedEvent) -> [u32; 5] {
    let mut fields = [0; 5];
    for (index, field) in fields.iter_mut().enumerate() {
        let bytes: [u8; 4] = event.payload[index * 4..index * 4 + 4].try_into().unwrap();
        *field = u32::from_be_bytes(bytes);
    }
    fields
}

async fn check_store(directory: &Path, acknowledged: &[Ack]) -> u64 {
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    let report = store.verify().unwrap();
    check_log(&store, report, acknowledged).await
}

async fn check_log(
    store: &dyn EventReader,
    report: battleplan_adapters::VerifyReport,
    acknowledged: &[Ack],
) -> u64 {
    assert_eq!(
        report.problem, None,
        "the hash chain must verify after a kill"
    );
    let head = store.head().await.unwrap();
    assert_eq!(report.checked, head.0);

    let mut events = Vec::new();
    let mut after = Position::START;
    loop {
        let batch = store.read_all(after, 10_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        events.extend(batch);
    }
    let positions: Vec<u64> = events.iter().map(|e| e.position.0).collect();
    assert_eq!(
        positions,
        (1..=head.0).collect::<Vec<_>>(),
        "positions are gapless"
    );

    // Every command in the log is whole: its events are contiguous and all there.
    let mut by_command: HashMap<String, Vec<&RecordedEvent>> = HashMap::new();
    for event in &events {
        by_command
            .entry(event.metadata.command_id.to_string())
            .or_default()
            .push(event);
    }
    for (command, events) in &by_command {
        let count = payload_fields(events[0])[4] as usize;
        assert_eq!(events.len(), count, "command {command} is half applied");
        for (index, event) in events.iter().enumerate() {
            assert_eq!(
                payload_fields(event)[3] as usize,
                index,
                "command {command} out of order"
            );
            assert_eq!(
                event.position.0,
                events[0].position.0 + index as u64,
                "command {command} not contiguous"
            );
        }
    }
    // Every acknowledged append is there, where the acknowledgement said.
    for ack in acknowledged {
        let events = by_command
            .get(&ack.command)
            .unwrap_or_else(|| panic!("acknowledged command {} was lost", ack.command));
        assert_eq!(events.len() as u64, ack.count);
        assert_eq!(events[0].position.0, ack.first);
        assert_eq!(events[events.len() - 1].position.0, ack.last);
    }
    head.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let directory = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    let mut previous_head = 0;
    // A fixed sequence of kill points, varied from a handful of acks to a few hundred, so the
    // kill lands in different places: mid-transaction, mid-flush, between appends.
    let mut state: u32 = 0x2545_f491;
    for run in 1..=KILLS {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let acks = 1 + (state % 300) as usize;
        let seen = run_and_kill(directory.path(), run, acks);
        assert_eq!(seen.len(), acks);
        acknowledged.extend(seen);
        let head = check_store(directory.path(), &acknowledged).await;
        assert!(head >= previous_head, "the log never shrinks");
        previous_head = head;
    }
    assert!(
        acknowledged.len() > KILLS as usize * 10,
        "the runs did real work"
    );
}

/// The same on PostgreSQL: a writer killed in the middle of its transactions (the server rolls
/// back what was not committed) never leaves half a command, and loses nothing it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_on_postgres() {
    let Some(database) = postgres::database_async("acknowledged_appends_survive_sigkill").await
    else {
        return;
    };
    let location = PgLocation::parse(&database.url)
        .unwrap()
        .with_password(&database.password);
    let mut acknowledged = Vec::new();
    let mut previous_head = 0;
    let mut state: u32 = 0x1b87_3593;
    for run in 1..=20 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let acks = 1 + (state % 300) as usize;
        let seen = run_and_kill_on(
            std::ffi::OsStr::new(&database.url),
            &database.password,
            run,
            acks,
        );
        assert_eq!(seen.len(), acks);
        acknowledged.extend(seen);
        let store = PgEventLog::open(location.clone(), PgOptions::default())
            .await
            .unwrap();
        let report = store.verify().await.unwrap();
        let head = check_log(&store, report, &acknowledged).await;
        assert!(head >= previous_head, "the log never shrinks");
        previous_head = head;
    }
    assert!(acknowledged.len() > 200, "the runs did real work");
}
