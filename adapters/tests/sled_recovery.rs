//! Reopening after a crash, with the write-ahead log: the states a crash can leave are built
//! by hand on a closed store (sled opened directly, the log file written with the store's own
//! record format), then the store is reopened and must be whole. The SIGKILL test
//! (`tests/tests/store_crash.rs`) shows the same with a real process.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_adapters::sled_store::{layout, wal, STORE_FORMAT};
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position, StoreError,
    StreamId, StreamVersion,
};
use chrono::DateTime;
use uuid::Uuid;

fn append(on: &str, command: u128) -> Append {
    Append {
        stream: StreamId::new(on).unwrap(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: EventId(Uuid::from_u128(command)),
            event_type: "Tested".into(),
            schema_version: 1,
            payload: vec![command as u8; 40],
        }],
        metadata: Metadata {
            actor: "system:test".into(),
            command_id: CommandId(Uuid::from_u128(command)),
            causation_id: None,
            correlation_id: None,
            reason: None,
        },
        recorded_at: DateTime::from_timestamp(1_788_000_000, 0).unwrap(),
    }
}

fn open(path: &Path) -> SledEventLog {
    SledEventLog::open(path, StoreOptions::default()).unwrap()
}

/// Six events, one append each, alternately on streams "odd" and "even"; closed cleanly.
async fn six_events(directory: &Path) {
    let store = open(directory);
    for n in 1..=6u128 {
        let on = if n % 2 == 0 { "even" } else { "odd" };
        store.append(append(on, n)).await.unwrap();
    }
}

/// The keys event 6 (the third on "even", command 6) was stored under.
fn keys_of_event_six() -> Vec<Vec<u8>> {
    vec![
        layout::chunk_key(6).to_vec(),
        layout::stream_index_key(&StreamId::new("even").unwrap(), 3),
        layout::command_key(&CommandId(Uuid::from_u128(6))).to_vec(),
    ]
}

fn marker(db: &sled::Db) -> (u64, u64) {
    let meta = db.open_tree("meta").unwrap();
    wal::read_marker(&meta.get(wal::CHECKPOINT_KEY).unwrap().unwrap()).unwrap()
}

fn set_marker(db: &sled::Db, generation: u64, position: u64) {
    db.open_tree("meta")
        .unwrap()
        .insert(wal::CHECKPOINT_KEY, &wal::marker(generation, position))
        .unwrap();
}

fn write_log(directory: &Path, bytes: &[u8]) {
    let mut contents = bytes.to_vec();
    contents.resize(bytes.len() + 4096, 0);
    std::fs::write(directory.join(wal::FILE), contents).unwrap();
}

async fn check_whole(store: &SledEventLog, head: u64) {
    assert_eq!(store.head().await.unwrap(), Position(head));
    let report = store.verify().unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.checked, head);
    let all = store.read_all(Position::START, 100).await.unwrap();
    assert_eq!(all.len() as u64, head);
}

#[tokio::test]
async fn a_batch_only_the_write_ahead_log_holds_is_restored() {
    let directory = tempfile::tempdir().unwrap();
    six_events(directory.path()).await;
    {
        // As if the crash came after the log's fdatasync (so event 6 was acknowledged) and
        // before sled wrote event 6 anywhere: the checkpoint is at 5, the log holds 6.
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let (generation, _) = marker(&db);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = keys_of_event_six()
            .into_iter()
            .map(|key| {
                let value = log.remove(&key).unwrap().unwrap().to_vec();
                (key, value)
            })
            .collect();
        set_marker(&db, generation, 5);
        db.flush().unwrap();
        // A torn record after it is ignored.
        let mut bytes = wal::record(generation, 6, 6, &pairs);
        let torn = wal::record(generation, 7, 7, &pairs);
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        write_log(directory.path(), &bytes);
    }
    let store = open(directory.path());
    check_whole(&store, 6).await;
    let even = StreamId::new("even").unwrap();
    assert_eq!(store.stream_version(&even).await.unwrap(), StreamVersion(3));
    let events = store
        .read_stream(&even, StreamVersion(1), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].position, Position(6));
    let retry = store.append(append("even", 6)).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, Position(6));
    let next = store.append(append("odd", 7)).await.unwrap();
    assert_eq!(next.first_position, Position(7));
    drop(store);
    check_whole(&open(directory.path()), 7).await;
}

#[tokio::test]
async fn a_batch_sled_holds_beyond_the_write_ahead_log_is_removed() {
    let directory = tempfile::tempdir().unwrap();
    six_events(directory.path()).await;
    {
        // As if sled wrote event 6's chunk and stream entry (not its command) to disk before
        // the crash, and the log never got it: event 6 was never acknowledged.
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let (generation, _) = marker(&db);
        log.remove(layout::command_key(&CommandId(Uuid::from_u128(6))))
            .unwrap();
        set_marker(&db, generation, 5);
        db.flush().unwrap();
        write_log(directory.path(), &[]);
    }
    let store = open(directory.path());
    check_whole(&store, 5).await;
    let even = StreamId::new("even").unwrap();
    assert_eq!(store.stream_version(&even).await.unwrap(), StreamVersion(2));
    // The command was never acknowledged: trying it again appends it.
    let again = store.append(append("even", 6)).await.unwrap();
    assert!(!again.deduplicated);
    assert_eq!(again.first_position, Position(6));
    assert_eq!(again.first_version, StreamVersion(3));
    check_whole(&store, 6).await;
}

#[tokio::test]
async fn a_log_that_skips_positions_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    six_events(directory.path()).await;
    {
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let (generation, position) = marker(&db);
        let chunk = log.get(layout::chunk_key(6)).unwrap().unwrap().to_vec();
        // A record for positions 8..8 after a checkpoint at 6: 7 is missing.
        let pairs = vec![(layout::chunk_key(8).to_vec(), chunk)];
        write_log(
            directory.path(),
            &wal::record(generation, position + 2, position + 2, &pairs),
        );
    }
    let error = SledEventLog::open(directory.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
}

#[tokio::test]
async fn records_of_an_earlier_generation_are_ignored() {
    let directory = tempfile::tempdir().unwrap();
    six_events(directory.path()).await;
    {
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let (generation, _) = marker(&db);
        let chunk = log.get(layout::chunk_key(6)).unwrap().unwrap().to_vec();
        let pairs = vec![(layout::chunk_key(7).to_vec(), chunk)];
        write_log(directory.path(), &wal::record(generation - 1, 7, 7, &pairs));
    }
    check_whole(&open(directory.path()), 6).await;
}

#[tokio::test]
async fn a_format_3_store_is_upgraded_and_an_older_one_refused() {
    let directory = tempfile::tempdir().unwrap();
    six_events(directory.path()).await;
    let set_format = |format: u32| {
        let db = sled::open(directory.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("store-format", &format.to_be_bytes()).unwrap();
        meta.remove(wal::CHECKPOINT_KEY).unwrap();
        db.flush().unwrap();
        std::fs::remove_file(directory.path().join(wal::FILE)).unwrap();
    };
    // Format 3: the same layout, no write-ahead log.
    set_format(3);
    {
        let store = open(directory.path());
        check_whole(&store, 6).await;
        store.append(append("odd", 7)).await.unwrap();
    }
    {
        let db = sled::open(directory.path()).unwrap();
        let format = db
            .open_tree("meta")
            .unwrap()
            .get("store-format")
            .unwrap()
            .unwrap();
        assert_eq!(format.as_ref(), STORE_FORMAT.to_be_bytes());
    }
    check_whole(&open(directory.path()), 7).await;
    set_format(2);
    let error = SledEventLog::open(directory.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { detail, .. } if detail.contains("format 2")),
        "{error:?}"
    );
}
