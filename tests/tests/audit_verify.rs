//! `battleplan audit verify` end to end: exit 0 and the head hash for an intact log, exit 2 with
//! the position for a damaged one, and a plain message for a directory without a store or a store
//! another process holds.
//!
//! One test function on purpose: a child forked by one test while another test holds a store
//! inherits the store's locked file description until it execs, which would make the other
//! test's reopen fail at random. Sequential steps avoid that.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_adapters::sled_store::layout;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::event::port::EventAppender;
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, StreamId,
};
use battleplan_tests::run_in;
use uuid::Uuid;

async fn store_with_events(directory: &Path, count: u128) {
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    for n in 1..=count {
        store
            .append(Append {
                stream: StreamId::campaign("sept").unwrap(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: EventId(Uuid::from_u128(n)),
                    event_type: "Audited".into(),
                    schema_version: 1,
                    payload: vec![n as u8],
                }],
                metadata: Metadata {
                    actor: "alice".into(),
                    command_id: CommandId(Uuid::from_u128(n)),
                    causation_id: None,
                    correlation_id: None,
                    reason: Some("test".into()),
                },
                recorded_at: chrono::DateTime::from_timestamp(1_788_000_000, 0).unwrap(),
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn verify_reports_intact_damaged_missing_and_busy_stores() {
    an_intact_log_verifies_and_a_damaged_one_names_its_position().await;
    no_store_and_a_busy_store_are_user_errors().await;
}

async fn an_intact_log_verifies_and_a_damaged_one_names_its_position() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    store_with_events(&data, 5).await;

    let intact = run_in(directory.path(), &["--data", "data", "audit", "verify"]);
    assert_eq!(intact.code, 0, "{}{}", intact.stdout, intact.stderr);
    assert!(
        intact.stdout.starts_with("intact: 5 events"),
        "{}",
        intact.stdout
    );

    let json = run_in(
        directory.path(),
        &["audit", "verify", "--json", "--data", "data"],
    );
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["events"], 5);
    assert_eq!(report["head_hash"].as_str().map(str::len), Some(64));

    {
        let db = sled::open(&data).unwrap();
        // Appended one at a time, each event is a chunk of its own.
        let log = db.open_tree("log").unwrap();
        let key = layout::chunk_key(4);
        let stored = log.get(key).unwrap().unwrap();
        let mut record = layout::chunk_records(&stored).unwrap().remove(0);
        let last = record.len() - 1;
        record[last] ^= 0x10;
        log.insert(key, layout::chunk_of(&[&record])).unwrap();
        db.flush().unwrap();
    }
    let damaged = run_in(directory.path(), &["--data", "data", "audit", "verify"]);
    assert_eq!(damaged.code, 2, "{}", damaged.stdout);
    insta::assert_snapshot!(damaged.stdout, @r"
    damaged: position 4: the record does not match its hash (its bytes were changed)
    the 3 events before it check out (head hash d50a79d8311004882966fb7d7ed891e131ad4f7409cb215e11f490b5eeec96de)
    ");
    let json = run_in(
        directory.path(),
        &["--data", "data", "audit", "verify", "--json"],
    );
    assert_eq!(json.code, 2);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["problem_position"], 4);
}

async fn no_store_and_a_busy_store_are_user_errors() {
    let directory = tempfile::tempdir().unwrap();
    let missing = run_in(directory.path(), &["--data", "nowhere", "audit", "verify"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("there is no battleplan store in nowhere"),
        "{}",
        missing.stderr
    );
    assert!(
        !directory.path().join("nowhere").exists(),
        "verify never creates a store"
    );

    let data = directory.path().join("data");
    store_with_events(&data, 1).await;
    let _held = SledEventLog::open(&data, StoreOptions::default()).unwrap();
    let busy = run_in(directory.path(), &["--data", "data", "audit", "verify"]);
    assert_eq!(busy.code, 2);
    assert!(
        busy.stderr.contains("in use by another battleplan process"),
        "{}",
        busy.stderr
    );
}
