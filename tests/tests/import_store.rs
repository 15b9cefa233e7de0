//! Imports checked against the store itself. An import cut short by a crash (a failpoint aborts
//! the process right after a known chunk is durable, as SIGKILL would: no destructor, no flush)
//! is finished by running the same command again, and in the end every row is recorded exactly
//! once, in the file's order, with its actor and its chain of causes; a partial import records
//! the rows it skipped.
//!
//! One test function on purpose: it opens the store in this process once the children are done,
//! and a child forked by another test meanwhile would inherit the store's lock (see
//! ARCHITECTURE.md).

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::customer::{CustomerEvent, ImportKind};
use battleplan_core::event::port::EventReader;
use battleplan_core::event::{RecordedEvent, StreamId, StreamVersion};
use battleplan_scenarios::customers::{customers, write_customers, FileFormat, Options};
use battleplan_tests::{binary, ok, run_in, Run};
use chrono::{DateTime, Utc};
use serde_json::Value;

const CLOCK: &str = "2026-08-20T00:00:00Z";
/// The failpoint's variable (`battleplan_orchestrator::app::import::ABORT_AFTER_CHUNKS`).
const ABORT_AFTER_CHUNKS: &str = "BATTLEPLAN_FAILPOINT_IMPORT_ABORT_AFTER_CHUNKS";

fn bp(directory: &Path, arguments: &[&str]) -> Run {
    let mut all = vec!["--data", "data", "--clock-at", CLOCK];
    all.extend_from_slice(arguments);
    run_in(directory, &all)
}

fn events(directory: &Path) -> u64 {
    let run = ok(bp(directory, &["audit", "verify", "--json"]));
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    report["events"].as_u64().unwrap()
}

fn decoded(event: &RecordedEvent) -> CustomerEvent {
    CustomerEvent::decode(event).unwrap().unwrap()
}

#[test]
fn an_import_cut_short_is_finished_by_the_same_command() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let options = Options {
        count: 1_234,
        seed: 5,
        as_of: DateTime::parse_from_rfc3339("2026-08-20T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc),
        format: FileFormat::Csv,
    };
    let mut bytes = Vec::new();
    write_customers(&mut bytes, options).unwrap();
    std::fs::write(dir.join("customers.csv"), bytes).unwrap();
    // 1,234 customers and c-002291, which the plan names.
    let ids: Vec<String> = customers(options).map(|customer| customer.id).collect();
    assert_eq!(ids.len(), 1_235);

    // Cut short after 5 chunks of 100 rows.
    let crashed = Command::new(binary())
        .args(["--data", "data", "--clock-at", CLOCK])
        .args(["customers", "import", "customers.csv", "--actor", "mei"])
        .current_dir(dir)
        .env_remove("BATTLEPLAN_DATA")
        .env(ABORT_AFTER_CHUNKS, "5")
        .output()
        .unwrap();
    assert!(
        crashed.status.code().is_none(),
        "the import was meant to abort: {:?}",
        crashed.status
    );
    assert!(crashed.stdout.is_empty());
    assert_eq!(events(dir), 1 + 500, "ImportStarted and five chunks");

    // The same command finishes it.
    let resumed = ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--actor",
            "mei",
            "--json",
        ],
    ));
    let report: Value = serde_json::from_str(&resumed.stdout).unwrap();
    assert_eq!(report["outcome"], "resumed", "{report:#}");
    assert_eq!(report["recorded_earlier"], 500);
    assert_eq!(report["recorded_now"], 735);
    assert_eq!(report["stream_versions"], serde_json::json!([502, 1_237]));
    let stream = report["stream"].as_str().unwrap().to_string();
    assert_eq!(events(dir), 1_235 + 2);
    let text = ok(bp(dir, &["customers", "import", "customers.csv"]));
    assert!(
        text.stdout.contains("already imported on") && text.stdout.contains("1235 rows"),
        "{}",
        text.stdout
    );

    // A partial import, asked for, records what it skipped.
    std::fs::write(
        dir.join("partial.csv"),
        "id,orders\nc-9001,1\nc-9002,x\nc-9003,2\nc-9004,3,4\n",
    )
    .unwrap();
    let partial = ok(bp(
        dir,
        &[
            "customers",
            "import",
            "partial.csv",
            "--skip-bad-rows",
            "--json",
        ],
    ));
    let partial: Value = serde_json::from_str(&partial.stdout).unwrap();
    let partial_stream = partial["stream"].as_str().unwrap().to_string();
    assert_eq!(events(dir), 1_237 + 4);

    // Every process is done: look at the events themselves.
    let store = SledEventLog::open(&dir.join("data"), StoreOptions::default()).unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let read = |name: &str| -> Vec<RecordedEvent> {
        let stream = StreamId::new(name).unwrap();
        tokio
            .block_on(store.read_stream(&stream, StreamVersion(1), 10_000))
            .unwrap()
    };

    let recorded = read(&stream);
    assert_eq!(recorded.len(), 1_237);
    let versions: Vec<u64> = recorded.iter().map(|event| event.version.0).collect();
    assert_eq!(versions, (1..=1_237).collect::<Vec<u64>>());
    let CustomerEvent::ImportStarted(started) = decoded(&recorded[0]) else {
        panic!("the stream starts with {}", recorded[0].event_type)
    };
    assert_eq!(started.kind, ImportKind::Customers);
    assert_eq!(started.file, "customers.csv");
    assert_eq!(started.rows, 1_235);
    assert!(started.skipped.is_empty());
    assert!(stream.ends_with(&started.digest[..32]));
    let CustomerEvent::ImportFinished(finished) = decoded(&recorded[1_236]) else {
        panic!("the stream ends with {}", recorded[1_236].event_type)
    };
    assert_eq!((finished.rows, finished.skipped), (1_235, 0));
    let started_id = recorded[0].event_id.0;
    let mut rows = Vec::new();
    for event in &recorded[1..1_236] {
        let CustomerEvent::CustomerRecorded(row) = decoded(event) else {
            panic!("a row is {}", event.event_type)
        };
        assert_eq!(event.metadata.actor, "mei");
        assert_eq!(event.metadata.causation_id, Some(started_id));
        rows.push((row.customer, row.line));
    }
    let recorded_ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(recorded_ids, ids, "every row once, in the file's order");
    let lines: Vec<u64> = rows.iter().map(|(_, line)| *line).collect();
    assert_eq!(lines, (2..=1_236).collect::<Vec<u64>>());
    // Appends of 100 rows, the crash between two of them: 13 commands, before and after alike.
    let commands: BTreeSet<_> = recorded[1..1_236]
        .iter()
        .map(|event| event.metadata.command_id)
        .collect();
    assert_eq!(commands.len(), 13);

    let partial = read(&partial_stream);
    assert_eq!(partial.len(), 4);
    let CustomerEvent::ImportStarted(started) = decoded(&partial[0]) else {
        panic!("{}", partial[0].event_type)
    };
    assert_eq!((started.rows, started.skipped_total), (2, 2));
    let skipped: Vec<(u64, Option<&str>)> = started
        .skipped
        .iter()
        .map(|row| (row.line, row.column.as_deref()))
        .collect();
    assert_eq!(skipped, [(3, Some("orders")), (5, None)]);
    assert!(started.skipped[0].reason.starts_with("bad number"));
    assert!(started.skipped[1]
        .reason
        .starts_with("wrong number of fields"));
    let CustomerEvent::ImportFinished(finished) = decoded(&partial[3]) else {
        panic!("{}", partial[3].event_type)
    };
    assert_eq!((finished.rows, finished.skipped), (2, 2));
}
