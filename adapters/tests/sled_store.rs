//! What only the sled store can show: data survives closing and reopening, the store refuses
//! what it cannot read safely, a second opener is refused, large records (which sled keeps in
//! separate blob files) survive, and `verify` finds tampering done directly to the database.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_adapters::sled_store::layout;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::verify::Damage;
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position, StoreError,
    StreamId, StreamVersion,
};
use chrono::DateTime;
use uuid::Uuid;

fn append(on: &str, command: u128, payload: Vec<u8>) -> Append {
    Append {
        stream: StreamId::new(on).unwrap(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: EventId(Uuid::from_u128(command)),
            event_type: "Tested".into(),
            schema_version: 1,
            payload,
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

/// Opens the store once sled itself, opened raw by the test and dropped, has let go of its
/// lock: sled's IO threads hold it a moment after the last handle goes (the store waits for
/// that when it is dropped; a raw `sled::Db` does not). Polled, with a bound.
fn open_after_raw_sled(path: &Path) -> Result<SledEventLog, StoreError> {
    for _ in 0..1_000 {
        match SledEventLog::open(path, StoreOptions::default()) {
            Err(StoreError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(5)),
            other => return other,
        }
    }
    panic!("sled kept its lock on {} for 5 s", path.display());
}

async fn fill(store: &SledEventLog, count: u128) {
    for n in 1..=count {
        let on = if n % 2 == 0 { "even" } else { "odd" };
        store
            .append(append(on, n, vec![n as u8; 40]))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn events_survive_reopening_and_appends_continue_the_chain() {
    let directory = tempfile::tempdir().unwrap();
    {
        let store = open(directory.path());
        fill(&store, 10).await;
    }
    let store = open(directory.path());
    assert_eq!(store.head().await.unwrap(), Position(10));
    assert_eq!(
        store
            .stream_version(&StreamId::new("even").unwrap())
            .await
            .unwrap(),
        StreamVersion(5)
    );
    let outcome = store.append(append("odd", 11, vec![1])).await.unwrap();
    assert_eq!(outcome.first_position, Position(11));
    assert_eq!(outcome.first_version, StreamVersion(6));
    // A command id from before the restart is still recognised.
    let retry = store.append(append("odd", 3, vec![1])).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, Position(3));
    let report = store.verify().unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.checked, 11);
}

/// 64 tasks on two worker threads append at once to a store that checkpoints after every
/// event, so tails are frozen and write-ahead generations switch while appends are being laid
/// out; each append is retried at once, and so is one from five appends before (by then in a
/// frozen tail, or in the command index). Every command is recorded once, every retry gets its
/// first outcome, positions are gapless, and the store reopens whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_and_retries_across_checkpoints_are_recorded_once() {
    const TASKS: u128 = 64;
    const PER_TASK: u128 = 12;
    let directory = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        checkpoint_events: 1,
        ..StoreOptions::default()
    };
    let store = SledEventLog::open(directory.path(), options.clone()).unwrap();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let on = format!("stream-{}", task % 8);
            let mut outcomes = Vec::new();
            for n in 0..PER_TASK {
                let command = task * 1000 + n + 1;
                let first = store
                    .append(append(&on, command, vec![n as u8; 30]))
                    .await
                    .unwrap();
                assert!(!first.deduplicated);
                let retry = store
                    .append(append(&on, command, vec![0xff]))
                    .await
                    .unwrap();
                assert!(retry.deduplicated);
                assert_eq!(retry.first_position, first.first_position);
                if n >= 5 {
                    let (earlier, original) = outcomes[(n - 5) as usize];
                    let again = store
                        .append(append(&on, earlier, vec![0xff]))
                        .await
                        .unwrap();
                    assert!(again.deduplicated);
                    assert_eq!(again.first_position, original);
                }
                outcomes.push((command, first.first_position));
            }
            outcomes
        }));
    }
    let mut recorded = std::collections::HashMap::new();
    for task in tasks {
        for (command, position) in task.await.unwrap() {
            assert!(recorded.insert(position, command).is_none());
        }
    }
    let total = (TASKS * PER_TASK) as u64;
    assert_eq!(store.head().await.unwrap(), Position(total));
    let check = |events: Vec<battleplan_core::event::RecordedEvent>| {
        assert_eq!(events.len() as u64, total);
        for (expected, event) in (1..=total).zip(&events) {
            assert_eq!(event.position, Position(expected));
            let command = recorded[&event.position];
            assert_eq!(
                event.metadata.command_id,
                CommandId(Uuid::from_u128(command))
            );
        }
    };
    check(store.read_all(Position::START, 10_000).await.unwrap());
    assert_eq!(store.verify().unwrap().problem, None);
    drop(store);

    let store = SledEventLog::open(directory.path(), options).unwrap();
    check(store.read_all(Position::START, 10_000).await.unwrap());
    let report = store.verify().unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.checked, total);
    let (position, command) = recorded.iter().next().unwrap();
    let retry = store
        .append(append("stream-0", *command, vec![0xff]))
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, *position);
}

#[tokio::test]
async fn a_second_opener_is_refused_while_the_first_holds_the_store() {
    let directory = tempfile::tempdir().unwrap();
    let _first = open(directory.path());
    let second = SledEventLog::open(directory.path(), StoreOptions::default());
    assert!(matches!(second, Err(StoreError::Locked(_))), "{second:?}");
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    drop(open(directory.path()));
    {
        let db = sled::open(directory.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("store-format", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let error = open_after_raw_sled(directory.path()).unwrap_err();
    assert_eq!(
        error,
        StoreError::NewerFormat {
            found: 99,
            supported: battleplan_adapters::sled_store::STORE_FORMAT
        }
    );
}

#[tokio::test]
async fn large_records_survive_reopening() {
    let directory = tempfile::tempdir().unwrap();
    // Incompressible, so that even compressed it is larger than a chunk's target.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..600_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    {
        let store = open(directory.path());
        store.append(append("plans", 1, big.clone())).await.unwrap();
        store.append(append("plans", 2, vec![7])).await.unwrap();
    }
    // Closing checkpointed the events: their chunks are in the segment files, not in sled.
    let segment_bytes: u64 = std::fs::read_dir(directory.path().join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        segment_bytes > 600_000,
        "the record is not in the segment files ({segment_bytes} bytes)"
    );
    let store = open(directory.path());
    let events = store.read_all(Position::START, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].payload, big);
    assert_eq!(store.verify().unwrap().problem, None);
    let too_big = vec![0u8; store.options().max_record_bytes + 1];
    let error = store.append(append("plans", 3, too_big)).await.unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
}

/// Tampers with the closed store's chunks directly, then reopens and verifies. Each event is
/// first put in a chunk of its own (`layout::Tamper::split`): chunk N is event N.
async fn tampered(edit: impl FnOnce(&layout::Tamper)) -> battleplan_adapters::VerifyReport {
    let directory = tempfile::tempdir().unwrap();
    {
        let store = open(directory.path());
        fill(&store, 6).await;
    }
    {
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let chunks = layout::Tamper::new(directory.path(), &log).unwrap();
        chunks.split();
        edit(&chunks);
        db.flush().unwrap();
    }
    open_after_raw_sled(directory.path())
        .unwrap()
        .verify()
        .unwrap()
}

/// The single record of the chunk at `position`.
fn record_of(events: &layout::Tamper, position: u64) -> Vec<u8> {
    let chunk = events.get(position).unwrap();
    let records = layout::chunk_records(&chunk).unwrap();
    assert_eq!(records.len(), 1);
    records[0].to_vec()
}

#[tokio::test]
async fn verify_finds_a_flipped_byte() {
    let report = tampered(|events| {
        let mut record = record_of(events, 4);
        let last = record.len() - 1;
        record[last] ^= 1;
        events.insert(4, &layout::chunk_of(&[&record]));
    })
    .await;
    let problem = report.problem.unwrap();
    assert_eq!(problem.position, Position(4));
    assert_eq!(problem.damage, Damage::HashMismatch);
    assert_eq!(report.checked, 3);
}

#[tokio::test]
async fn verify_finds_a_deleted_event() {
    let report = tampered(|events| {
        events.remove(3);
    })
    .await;
    let problem = report.problem.unwrap();
    assert_eq!(problem.position, Position(3));
    assert_eq!(problem.damage, Damage::OutOfSequence { found: Position(4) });
}

/// A chunk whose positions lie inside another's: the log's readers go from a chunk to the one
/// after its last record and never come to it, but a stream's reader would find it by its key,
/// so `verify` walks every key and reports it.
#[tokio::test]
async fn verify_finds_a_chunk_slipped_inside_another() {
    let report = tampered(|events| {
        let records: Vec<Vec<u8>> = (2..=4)
            .map(|position| record_of(events, position))
            .collect();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        events.insert(2, &layout::chunk_of(&slices));
        events.remove(4);
        let mut forged = records[1].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        events.insert(3, &layout::chunk_of(&[&forged]));
    })
    .await;
    let problem = report.problem.unwrap();
    assert_eq!(problem.position, Position(5));
    assert_eq!(problem.damage, Damage::OutOfSequence { found: Position(3) });
    assert_eq!(report.checked, 4);
}

#[tokio::test]
async fn verify_finds_a_reordered_pair() {
    let report = tampered(|events| {
        let two = events.get(2).unwrap();
        let three = events.get(3).unwrap();
        events.insert(2, &three);
        events.insert(3, &two);
    })
    .await;
    let problem = report.problem.unwrap();
    assert_eq!(problem.position, Position(2));
    assert_eq!(problem.damage, Damage::BrokenLink);
}

#[tokio::test]
async fn verify_finds_a_rewritten_record_whose_hash_was_recomputed() {
    // Someone who edits an event and fixes its own hash still breaks the next link.
    let report = tampered(|events| {
        let record = record_of(events, 2);
        let mut body = record[64..].to_vec();
        let last = body.len() - 1;
        body[last] ^= 1;
        let hash =
            battleplan_core::event::record::chain_hash(&record[..32].try_into().unwrap(), &body);
        let mut forged = record[..32].to_vec();
        forged.extend_from_slice(&hash);
        forged.extend_from_slice(&body);
        events.insert(2, &layout::chunk_of(&[&forged]));
    })
    .await;
    let problem = report.problem.unwrap();
    assert_eq!(problem.position, Position(3));
    assert_eq!(problem.damage, Damage::BrokenLink);
}

#[tokio::test]
async fn reading_a_damaged_record_is_an_error_not_a_panic() {
    let directory = tempfile::tempdir().unwrap();
    {
        let store = open(directory.path());
        fill(&store, 3).await;
    }
    {
        let db = sled::open(directory.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let chunks = layout::Tamper::new(directory.path(), &log).unwrap();
        chunks.split();
        chunks.insert(2, &[1, 2, 3]);
        db.flush().unwrap();
    }
    let store = open_after_raw_sled(directory.path()).unwrap();
    let error = store.read_all(Position::START, 10).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Corrupt {
                position: Position(2),
                ..
            }
        ),
        "{error:?}"
    );
    let report = store.verify().unwrap();
    assert_eq!(report.problem.map(|p| p.position), Some(Position(2)));
}

/// Damage to a segment file is found where it lies, by whatever reads that chunk, and named
/// with the file, the byte of the chunk's frame and its first position: a flipped bit (the
/// frame's checksum), the file cut short, the file removed.
#[tokio::test]
async fn a_damaged_segment_file_is_named_by_readers_and_by_verify() {
    for damage in ["flipped", "cut", "removed"] {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = open(directory.path());
            fill(&store, 6).await;
        }
        let (file, at) = {
            let db = sled::open(directory.path()).unwrap();
            let log = db.open_tree("log").unwrap();
            let chunks = layout::Tamper::new(directory.path(), &log).unwrap();
            chunks.split();
            let place = chunks.place(4).unwrap();
            db.flush().unwrap();
            place
        };
        match damage {
            "flipped" => {
                let mut bytes = std::fs::read(&file).unwrap();
                bytes[at as usize + 2] ^= 0x40;
                std::fs::write(&file, bytes).unwrap();
            }
            "cut" => {
                let cut = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
                cut.set_len(at + 1).unwrap();
            }
            _ => std::fs::remove_file(&file).unwrap(),
        }
        let store = match open_after_raw_sled(directory.path()) {
            Ok(store) => store,
            // Cut or removed before the last chunk's frame: opening reads the last chunk.
            Err(StoreError::Corrupt { position, detail }) => {
                assert_ne!(damage, "flipped", "{detail}");
                assert!(detail.contains("log/00000000.seg"), "{damage}: {detail}");
                assert_eq!(position, Position(6), "{damage}: {detail}");
                continue;
            }
            Err(other) => panic!("{damage}: {other:?}"),
        };
        assert_eq!(damage, "flipped");
        let error = store.read_all(Position::START, 10).await.unwrap_err();
        let StoreError::Corrupt { position, detail } = error else {
            panic!("{error:?}");
        };
        assert_eq!(position, Position(4));
        assert!(
            detail.contains("the chunk at 4 in log/00000000.seg (byte ")
                && detail.ends_with("does not match its checksum"),
            "{detail}"
        );
        // Events before it still read.
        assert_eq!(store.read_all(Position::START, 3).await.unwrap().len(), 3);
        let problem = store.verify().unwrap().problem.unwrap();
        assert_eq!(problem.position, Position(4));
        assert!(
            matches!(&problem.damage, Damage::StoredBadly(detail) if detail.contains("checksum")),
            "{problem:?}"
        );
    }
}

/// A read-only opening reads the original's segment files where they are instead of copying
/// them (they are most of a store's bytes): its own `log/` holds none of them, only what its
/// own opening appends. What the store appends afterwards, while the copy is open, does not
/// change what the copy reads: the same events, the same chain, intact.
#[tokio::test]
async fn a_read_only_opening_reads_the_segment_files_in_place() {
    let directory = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        checkpoint_events: 2,
        ..StoreOptions::default()
    };
    {
        let store = SledEventLog::open(directory.path(), options.clone()).unwrap();
        fill(&store, 9).await;
    }
    let segment_files = |log: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(log)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let original = segment_files(&directory.path().join("log"));
    assert!(
        original.contains(&"00000000.seg".to_string()),
        "{original:?}"
    );

    let copy =
        SledEventLog::open_read_only(directory.path(), scratch.path(), options.clone()).unwrap();
    let copied: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(copied.len(), 1, "{copied:?}");
    let own = segment_files(&copied[0].join("log"));
    assert!(
        own.iter().all(|name| !original.contains(name)),
        "the copy holds the original's segment files: {own:?} of {original:?}"
    );
    let read = copy.read_all(Position::START, 100).await.unwrap();
    assert_eq!(read.len(), 9);

    // The store goes on while the copy is open.
    {
        let store = SledEventLog::open(directory.path(), options).unwrap();
        // Commands 1 to 9 again are retries: 21 events more.
        fill(&store, 30).await;
        assert_eq!(store.head().await.unwrap(), Position(30));
    }
    let again = copy.read_all(Position::START, 100).await.unwrap();
    assert_eq!(again, read);
    let report = copy.verify().unwrap();
    assert_eq!((report.checked, report.problem), (9, None));
}
