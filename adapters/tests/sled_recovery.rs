//! Reopening after a crash, with the write-ahead log: the states a crash can leave are built
//! by hand on a closed store (sled opened directly, the log files written with the store's own
//! record format), then the store is reopened and must be whole. The SIGKILL test
//! (`tests/tests/store_crash.rs`) shows the same with a real process.
//!
//! What a crash can leave (format 6): sled holds every checkpoint whole (each is one atomic
//! batch) and nothing after the last; the write-ahead file of the checkpoint's generation holds
//! the batches since, and the other file may hold the next generation's, written while that
//! checkpoint was under way; either may end in a torn record (its unwritten sectors zeros);
//! a file not yet written in its generation holds the generation two before.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_adapters::sled_store::{layout, wal, STORE_FORMAT};
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::event::append::{self, outcome_to_bytes, LogHead};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position, StoreError,
    StreamId, StreamVersion, GENESIS_HASH,
};
use chrono::DateTime;
use uuid::Uuid;

fn stream_of(command: u128) -> &'static str {
    if command.is_multiple_of(2) {
        "even"
    } else {
        "odd"
    }
}

/// Command `n`: one event on "odd" or "even".
fn append(command: u128) -> Append {
    Append {
        stream: StreamId::new(stream_of(command)).unwrap(),
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

/// Commands 1 to `count` laid out as the store lays them out, one append each: each one's
/// record bytes and outcome.
fn laid_out(count: u128) -> Vec<(Vec<u8>, append::Prepared)> {
    let mut head = LogHead {
        position: Position::START,
        hash: GENESIS_HASH,
    };
    let mut versions = [StreamVersion::NONE; 2];
    (1..=count)
        .map(|n| {
            let version = &mut versions[(n % 2) as usize];
            let prepared = append::prepare(append(n), head, *version, 1 << 20).unwrap();
            head = prepared.new_head;
            *version = prepared.new_version;
            (prepared.records[0].1.clone(), prepared)
        })
        .collect()
}

/// Commands `from..=to` as one batch of the write-ahead log of `generation`.
fn logged(generation: u64, from: u128, to: u128) -> Vec<u8> {
    let all = laid_out(to);
    let appends: Vec<wal::LoggedAppend<'_>> = all[from as usize - 1..]
        .iter()
        .zip(from..=to)
        .map(|((bytes, prepared), n)| wal::LoggedAppend {
            stream: stream_of(n),
            command: *Uuid::from_u128(n).as_bytes(),
            outcome: outcome_to_bytes(&prepared.outcome),
            records: vec![bytes.as_slice()],
        })
        .collect();
    wal::batch(generation, from as u64, to as u64, &appends)
}

/// Five events, one append each, alternately on "odd" and "even"; closed cleanly, so sled
/// holds them all. Returns the last checkpoint's generation.
async fn five_events(directory: &Path) -> u64 {
    {
        let store = open(directory);
        for n in 1..=5u128 {
            store.append(append(n)).await.unwrap();
        }
    }
    let db = reopen_sled(directory);
    let marker = db
        .open_tree("log")
        .unwrap()
        .get(layout::CHECKPOINT_KEY)
        .unwrap()
        .unwrap();
    let (generation, position) = wal::read_marker(&marker).unwrap();
    assert_eq!(position, 5);
    // Opened (a checkpoint) and closed (another): two generations at least.
    assert!(generation >= 2, "{generation}");
    generation
}

/// Writes `bytes` where records start in the file `generation` is written in, zeros after,
/// with the seal a generation's first batch starts with (claiming no record yet): as after a
/// crash in that batch.
fn write_log(directory: &Path, generation: u64, bytes: &[u8]) {
    std::fs::write(
        directory.join(wal::file_of(generation)),
        file_of(generation, bytes),
    )
    .unwrap();
}

/// Writes `bytes` as the records of `generation`'s file, its seal saying all of them (through
/// position `last`) were made durable: as a killed daemon leaves it.
fn write_acknowledged(directory: &Path, generation: u64, bytes: &[u8], last: u64) {
    let mut contents = file_of(generation, bytes);
    let end = (wal::RECORDS_START + bytes.len()) as u64;
    contents[..wal::RECORDS_START].copy_from_slice(&wal::seal_sector(generation, end, last));
    std::fs::write(directory.join(wal::file_of(generation)), contents).unwrap();
}

/// A file of `generation` holding `bytes` as its records, its seal claiming none of them, zeros
/// after.
fn file_of(generation: u64, bytes: &[u8]) -> Vec<u8> {
    let mut contents = wal::seal_sector(generation, wal::RECORDS_START as u64, 0).to_vec();
    contents.extend_from_slice(bytes);
    contents.resize(contents.len() + wal::ZEROS_AFTER, 0);
    contents
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
    let generation = five_events(directory.path()).await;
    // As if the crash came after the log's fdatasync (so event 6 was acknowledged) and before
    // any checkpoint: sled holds 1-5, the log 6. A torn record after it is ignored.
    let mut bytes = logged(generation, 6, 6);
    let torn = logged(generation, 7, 7);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    write_log(directory.path(), generation, &bytes);

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
    let retry = store.append(append(6)).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, Position(6));
    // Command 7's record was torn: never acknowledged, so it is appended now.
    let next = store.append(append(7)).await.unwrap();
    assert!(!next.deduplicated);
    assert_eq!(next.first_position, Position(7));
    drop(store);
    check_whole(&open(directory.path()), 7).await;
}

#[tokio::test]
async fn the_next_generation_written_during_a_checkpoint_is_restored_after_its_own() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    // A checkpoint of 6 was under way (the marker still says 5) while 7 and 8 went to the next
    // generation's file.
    write_log(directory.path(), generation, &logged(generation, 6, 6));
    write_log(
        directory.path(),
        generation + 1,
        &logged(generation + 1, 7, 8),
    );
    let store = open(directory.path());
    check_whole(&store, 8).await;
    let odd = StreamId::new("odd").unwrap();
    assert_eq!(store.stream_version(&odd).await.unwrap(), StreamVersion(4));
    for n in [3, 6, 8] {
        let retry = store.append(append(n)).await.unwrap();
        assert!(retry.deduplicated, "{n}");
        assert_eq!(retry.first_position, Position(n as u64));
    }
    drop(store);
    check_whole(&open(directory.path()), 8).await;
}

/// Commands `from..=to` laid out one after another, as appenders fill the log's records, and
/// taken as the flusher takes them.
fn filled(generation: u64, from: u128, to: u128) -> Vec<u8> {
    let all = laid_out(to);
    let mut filling = wal::Filling::default();
    for ((bytes, prepared), n) in all[from as usize - 1..].iter().zip(from..=to) {
        filling.push(
            generation,
            prepared.outcome.first_position.0,
            prepared.outcome.last_position.0,
            &wal::LoggedAppend {
                stream: stream_of(n),
                command: *Uuid::from_u128(n).as_bytes(),
                outcome: outcome_to_bytes(&prepared.outcome),
                records: vec![bytes.as_slice()],
            },
        );
    }
    filling.take(generation, Vec::new())
}

#[tokio::test]
async fn appends_filled_into_the_log_one_by_one_are_restored() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let bytes = filled(generation, 6, 9);
    let batches = wal::appends(&bytes, generation).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].first, batches[0].last), (6, 9));
    assert_eq!(batches[0].appends.len(), 4);
    write_log(directory.path(), generation, &bytes);
    let store = open(directory.path());
    check_whole(&store, 9).await;
    let retry = store.append(append(8)).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, Position(8));
}

#[test]
fn a_filling_too_large_for_one_record_is_sealed_as_several() {
    let generation = 7;
    let payload = vec![0x5a; 1024 * 1024];
    let mut filling = wal::Filling::default();
    for n in 1..=20u64 {
        filling.push(
            generation,
            n,
            n,
            &wal::LoggedAppend {
                stream: "big",
                command: [n as u8; 16],
                outcome: [n as u8; 32],
                records: vec![&payload[..], &[n as u8]],
            },
        );
    }
    let bytes = filling.take(generation, Vec::new());
    let batches = wal::appends(&bytes, generation).unwrap();
    // A record stops growing at 16 MiB: the 17th append starts the second.
    let spans: Vec<(u64, u64, usize)> = batches
        .iter()
        .map(|batch| (batch.first, batch.last, batch.appends.len()))
        .collect();
    assert_eq!(spans, vec![(1, 16, 16), (17, 20, 4)]);
    let appends: Vec<&wal::LoggedAppend<'_>> =
        batches.iter().flat_map(|batch| &batch.appends).collect();
    for (n, append) in (1..=20u8).zip(appends) {
        assert_eq!(append.command, [n; 16]);
        assert_eq!(append.records, vec![&payload[..], &[n][..]]);
    }
    // Taken, the filling starts again, empty, under the next generation.
    filling.push(
        generation + 1,
        21,
        21,
        &wal::LoggedAppend {
            stream: "big",
            command: [21; 16],
            outcome: [21; 32],
            records: vec![&[21]],
        },
    );
    let next = filling.take(generation + 1, Vec::new());
    let batches = wal::appends(&next, generation + 1).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].first, batches[0].last), (21, 21));
}

#[tokio::test]
async fn a_log_that_skips_positions_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    // A whole record for 7 after a checkpoint at 5: 6 is missing.
    write_log(directory.path(), generation, &logged(generation, 7, 7));
    let error = SledEventLog::open(directory.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    // Nothing was changed: once the log is put right, the store opens whole.
    write_log(directory.path(), generation, &[]);
    check_whole(&open(directory.path()), 5).await;
}

#[tokio::test]
async fn records_of_earlier_generations_are_ignored() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    // What the two files held from before the last checkpoints: generation - 2 in this
    // generation's file, generation - 1 in the other.
    let leftover = |older: u64| {
        let bytes = logged(older, 6, 6);
        let mut contents = file_of(older, &bytes);
        let end = (wal::RECORDS_START + bytes.len()) as u64;
        contents[..wal::RECORDS_START].copy_from_slice(&wal::seal_sector(older, end, 6));
        contents
    };
    std::fs::write(
        directory.path().join(wal::file_of(generation)),
        leftover(generation - 2),
    )
    .unwrap();
    std::fs::write(
        directory.path().join(wal::file_of(generation + 1)),
        leftover(generation - 1),
    )
    .unwrap();
    check_whole(&open(directory.path()), 5).await;
}

/// Writes, with sled alone, a store of format 4 as that build left it: one chunk, one
/// stream-index entry and one command key per append for commands 1 to 5, its checkpoint
/// marker in `meta`, and command 6 in its write-ahead log only (`battleplan.wal`).
fn format_4_store(directory: &Path, format: u32) {
    let all = laid_out(6);
    let db = sled::open(directory).unwrap();
    let log = db.open_tree("log").unwrap();
    let meta = db.open_tree("meta").unwrap();
    let pairs_of = |n: u128| -> Vec<(Vec<u8>, Vec<u8>)> {
        let (bytes, prepared) = &all[n as usize - 1];
        let stream = StreamId::new(stream_of(n)).unwrap();
        vec![
            (
                layout::inline_chunk_key(n as u64).to_vec(),
                layout::chunk_of(&[bytes.as_slice()]),
            ),
            (
                layout::stream_index_key(&stream, prepared.outcome.first_version.0),
                (n as u64).to_be_bytes().to_vec(),
            ),
            (
                layout::command_key(&CommandId(Uuid::from_u128(n))).to_vec(),
                outcome_to_bytes(&prepared.outcome).to_vec(),
            ),
        ]
    };
    for n in 1..=5 {
        for (key, value) in pairs_of(n) {
            log.insert(key, value).unwrap();
        }
    }
    meta.insert("store-format", &format.to_be_bytes()).unwrap();
    if format == 4 {
        meta.insert(wal::CHECKPOINT_KEY, &wal::marker(3, 5))
            .unwrap();
        let mut contents = wal::record(3, 6, 6, &pairs_of(6));
        contents.resize(contents.len() + 4096, 0);
        std::fs::write(directory.join(wal::FILE), contents).unwrap();
    }
    db.flush().unwrap();
}

/// Opens the database of a store that was just closed: dropping the store waited for sled to let
/// go of its lock, so this needs no retry.
fn reopen_sled(directory: &Path) -> Reopened {
    Reopened {
        db: Some(sled::open(directory).unwrap()),
        directory: directory.to_path_buf(),
    }
}

/// sled opened by the test itself. Dropped, it waits (at most 10 s) until sled's threads have
/// let go of the database's lock, so that the store opened next is not refused as held by
/// another process.
struct Reopened {
    db: Option<sled::Db>,
    directory: std::path::PathBuf,
}

impl std::ops::Deref for Reopened {
    type Target = sled::Db;
    fn deref(&self) -> &sled::Db {
        self.db.as_ref().unwrap()
    }
}

impl Drop for Reopened {
    fn drop(&mut self) {
        drop(self.db.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let free = std::fs::File::open(self.directory.join("db"))
                .map(|file| file.try_lock().is_ok())
                .unwrap_or(true);
            if free {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

fn stored_format(directory: &Path) -> Vec<u8> {
    let db = reopen_sled(directory);
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(meta.get(wal::CHECKPOINT_KEY).unwrap(), None);
    let format = meta.get("store-format").unwrap().unwrap();
    format.to_vec()
}

#[tokio::test]
async fn a_format_4_store_and_its_write_ahead_log_are_upgraded() {
    let directory = tempfile::tempdir().unwrap();
    format_4_store(directory.path(), 4);
    {
        let store = open(directory.path());
        check_whole(&store, 6).await;
        // The command keys became the index's first run; the log's batch is recognised too.
        for n in [1, 4, 6] {
            let retry = store.append(append(n)).await.unwrap();
            assert!(retry.deduplicated, "{n}");
            assert_eq!(retry.first_position, Position(n as u64));
        }
        let even = StreamId::new("even").unwrap();
        assert_eq!(store.stream_version(&even).await.unwrap(), StreamVersion(3));
        let next = store.append(append(7)).await.unwrap();
        assert_eq!(next.first_position, Position(7));
        assert_eq!(next.first_version, StreamVersion(4));
    }
    assert!(!directory.path().join(wal::FILE).exists());
    assert_eq!(stored_format(directory.path()), STORE_FORMAT.to_be_bytes());
    let store = open(directory.path());
    check_whole(&store, 7).await;
    assert!(store.append(append(2)).await.unwrap().deduplicated);
}

#[tokio::test]
async fn a_format_3_store_is_upgraded_and_an_older_one_refused() {
    let directory = tempfile::tempdir().unwrap();
    // Format 3: the same layout as format 4, without a write-ahead log.
    format_4_store(directory.path(), 3);
    {
        let store = open(directory.path());
        check_whole(&store, 5).await;
        assert!(store.append(append(5)).await.unwrap().deduplicated);
        store.append(append(6)).await.unwrap();
    }
    assert_eq!(stored_format(directory.path()), STORE_FORMAT.to_be_bytes());
    check_whole(&open(directory.path()), 6).await;

    let older = tempfile::tempdir().unwrap();
    format_4_store(older.path(), 2);
    let error = SledEventLog::open(older.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { detail, .. } if detail.contains("format 2")),
        "{error:?}"
    );
}

/// Records of commands 6, 7 and 8, one each, as the flusher writes three batches; and where
/// each starts.
fn three_records(generation: u64) -> (Vec<u8>, [usize; 3]) {
    let mut bytes = Vec::new();
    let mut starts = [0; 3];
    for (slot, n) in (6..=8u128).enumerate() {
        starts[slot] = bytes.len();
        bytes.extend_from_slice(&logged(generation, n, n));
    }
    (bytes, starts)
}

fn wal_files(directory: &Path) -> Vec<Option<Vec<u8>>> {
    wal::FILES
        .iter()
        .map(|name| std::fs::read(directory.join(name)).ok())
        .collect()
}

/// Opening refuses with the damage's first position and leaves the files as they were.
fn refused_at(directory: &Path, position: u64) -> String {
    let before = wal_files(directory);
    let error = SledEventLog::open(directory, StoreOptions::default()).unwrap_err();
    let StoreError::Corrupt {
        position: found,
        detail,
    } = error
    else {
        panic!("not damage: {error:?}");
    };
    assert_eq!(found, Position(position), "{detail}");
    assert_eq!(wal_files(directory), before, "opening changed the files");
    detail
}

#[tokio::test]
async fn a_flipped_bit_before_whole_records_is_refused_naming_what_follows() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let (mut bytes, starts) = three_records(generation);
    let at = starts[1] + 60;
    bytes[at] ^= 0x10;
    write_acknowledged(directory.path(), generation, &bytes, 8);
    let detail = refused_at(directory.path(), 7);
    assert!(
        detail.contains(&format!(
            "damaged at byte {}",
            wal::RECORDS_START + starts[1]
        )),
        "{detail}"
    );
    assert!(
        detail.contains("events 8 to 8 follow the damage"),
        "{detail}"
    );
    assert!(detail.contains("events 1 to 6 are intact"), "{detail}");
    // Put right, the store opens whole: nothing was lost by trying.
    bytes[at] ^= 0x10;
    write_acknowledged(directory.path(), generation, &bytes, 8);
    check_whole(&open(directory.path()), 8).await;
}

#[tokio::test]
async fn a_flipped_bit_in_the_last_record_is_damage_not_a_torn_write() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let (bytes, starts) = three_records(generation);
    // As a killed daemon leaves it: the seal says every record is durable.
    let mut contents = file_of(generation, &bytes);
    let end = (wal::RECORDS_START + bytes.len()) as u64;
    contents[..wal::RECORDS_START].copy_from_slice(&wal::seal_sector(generation, end, 8));
    contents[wal::RECORDS_START + starts[2] + 70] ^= 0x01;
    let path = directory.path().join(wal::file_of(generation));
    std::fs::write(&path, &contents).unwrap();
    let detail = refused_at(directory.path(), 8);
    assert!(detail.contains("its seal says"), "{detail}");
    // With the seal written before the last batch (a power cut kept the batch, not the seal
    // after it) that batch was never acknowledged: a write cut short, dropped.
    let durable = (wal::RECORDS_START + starts[2]) as u64;
    contents[..wal::RECORDS_START].copy_from_slice(&wal::seal_sector(generation, durable, 7));
    std::fs::write(&path, &contents).unwrap();
    check_whole(&open(directory.path()), 7).await;
}

#[tokio::test]
async fn zeros_over_a_record_with_whole_records_after_it_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let (mut bytes, starts) = three_records(generation);
    bytes[starts[1]..starts[2]].fill(0);
    write_acknowledged(directory.path(), generation, &bytes, 8);
    refused_at(directory.path(), 7);
    // Whole records past what the seal says is durable belong to the last write, cut short
    // by a power cut in any order of its sectors: never acknowledged, dropped.
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    write_log(directory.path(), generation, &bytes);
    check_whole(&open(directory.path()), 6).await;
}

#[tokio::test]
async fn a_file_cut_short_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let (bytes, starts) = three_records(generation);
    let path = directory.path().join(wal::file_of(generation));
    // Cut after its last record, and inside it: a written file keeps zeros after its records.
    let whole = file_of(generation, &bytes);
    let records_end = wal::RECORDS_START + bytes.len();
    std::fs::write(&path, &whole[..records_end]).unwrap();
    let detail = refused_at(directory.path(), 9);
    assert!(detail.contains("cut short"), "{detail}");
    std::fs::write(&path, &whole[..wal::RECORDS_START + starts[2] + 30]).unwrap();
    refused_at(directory.path(), 8);
}

#[tokio::test]
async fn records_the_seal_says_were_durable_cannot_turn_into_zeros() {
    let (bytes, starts) = three_records(0);
    let sealed = |generation: u64| {
        let (bytes, _) = three_records(generation);
        let mut contents = file_of(generation, &bytes);
        // The seal written with the batch of 8: the records of 6 and 7 were durable.
        let durable = (wal::RECORDS_START + starts[2]) as u64;
        contents[..wal::RECORDS_START].copy_from_slice(&wal::seal_sector(generation, durable, 7));
        contents
    };
    let records = |from: usize| wal::RECORDS_START + from..wal::RECORDS_START + bytes.len();
    // 8 cut short by a crash (never acknowledged; its one sector unwritten): the store opens
    // with 6 and 7.
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let path = directory.path().join(wal::file_of(generation));
    let mut torn = sealed(generation);
    torn[records(starts[2])].fill(0);
    std::fs::write(&path, &torn).unwrap();
    check_whole(&open(directory.path()), 7).await;
    // The same zeros from inside 7 to the end are damage, though they look like a torn write.
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let path = directory.path().join(wal::file_of(generation));
    let mut zeroed = sealed(generation);
    zeroed[records(starts[1] + 40)].fill(0);
    std::fs::write(&path, &zeroed).unwrap();
    let detail = refused_at(directory.path(), 7);
    assert!(detail.contains("its seal says"), "{detail}");
    // A damaged seal is damage too.
    let mut damaged = sealed(generation);
    damaged[13] ^= 0x04;
    std::fs::write(&path, &damaged).unwrap();
    let detail = refused_at(directory.path(), 9);
    assert!(detail.contains("seal"), "{detail}");
}

#[tokio::test]
async fn a_file_cut_to_nothing_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    std::fs::write(directory.path().join(wal::file_of(generation)), b"").unwrap();
    let detail = refused_at(directory.path(), 6);
    assert!(detail.contains("cut short or made anew"), "{detail}");
}

#[tokio::test]
async fn a_missing_file_is_refused_and_not_made_anew() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    let path = directory.path().join(wal::file_of(generation));
    std::fs::remove_file(&path).unwrap();
    let detail = refused_at(directory.path(), 6);
    assert!(detail.contains("is missing"), "{detail}");
    assert!(!path.exists());
}

#[tokio::test]
async fn swapped_files_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    // The marker's generation's records in the other file, the next generation's in its file.
    write_log(directory.path(), generation + 1, &logged(generation, 6, 6));
    write_log(directory.path(), generation, &logged(generation + 1, 7, 7));
    let detail = refused_at(directory.path(), 6);
    assert!(detail.contains("replaced or swapped"), "{detail}");
}

#[tokio::test]
async fn a_torn_record_after_which_the_next_generation_goes_on_is_damage() {
    let directory = tempfile::tempdir().unwrap();
    let generation = five_events(directory.path()).await;
    // The next generation starts only once this one is whole on disk: a record of this one
    // that is not whole, with the next one's records after it, was acknowledged and damaged.
    let mut bytes = logged(generation, 6, 6);
    let torn = logged(generation, 7, 7);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    write_log(directory.path(), generation, &bytes);
    write_log(
        directory.path(),
        generation + 1,
        &logged(generation + 1, 8, 8),
    );
    refused_at(directory.path(), 7);
}

#[tokio::test]
async fn a_closed_store_leaves_its_files_empty() {
    let directory = tempfile::tempdir().unwrap();
    five_events(directory.path()).await;
    for contents in wal_files(directory.path()) {
        assert_eq!(contents, Some(vec![0; wal::EMPTIED]));
    }
}

proptest::proptest! {
    /// Reading a write-ahead file never panics, whatever its bytes: a valid file flipped,
    /// cut and overwritten at random, and random bytes alone.
    #[test]
    fn reading_any_bytes_never_panics(
        flips in proptest::collection::vec((0usize..2048, 0u8..8), 0..6),
        cut in 0usize..4096,
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
        at in 0usize..2048,
    ) {
        let (bytes, starts) = three_records(4);
        let mut contents = file_of(4, &bytes);
        let durable = (wal::RECORDS_START + starts[2]) as u64;
        contents[..wal::RECORDS_START].copy_from_slice(&wal::seal_sector(4, durable, 7));
        for (at, bit) in flips {
            if let Some(byte) = contents.get_mut(at) {
                *byte ^= 1 << bit;
            }
        }
        let mut overwritten = contents.clone();
        for (offset, byte) in noise.iter().enumerate() {
            if let Some(slot) = overwritten.get_mut(at + offset) {
                *slot = *byte;
            }
        }
        for file in [&contents[..], &contents[..cut.min(contents.len())], &overwritten[..], &noise[..]] {
            for strict in [true, false] {
                let _ = wal::scan(file, 4, wal::Rules { strict });
            }
            let _ = wal::describe(file);
        }
    }
}

/// Five events, then a sixth in a checkpoint of its own (closed cleanly both times); then the
/// marker put back as it stood before that checkpoint's marker was written: as if the
/// checkpoint failed after sled took event 6 (its chunk, stream entry and command run) and
/// before its marker. Returns the marker's generation, whose file held event 6.
async fn sixth_beyond_the_marker(directory: &Path) -> u64 {
    five_events(directory).await;
    {
        let store = open(directory);
        store.append(append(6)).await.unwrap();
    }
    let db = reopen_sled(directory);
    let log = db.open_tree("log").unwrap();
    let marker = log.get(layout::CHECKPOINT_KEY).unwrap().unwrap();
    let (generation, position) = wal::read_marker(&marker).unwrap();
    assert_eq!(position, 6);
    // Event 6 was appended in the generation before the closing checkpoint's.
    log.insert(layout::CHECKPOINT_KEY, &wal::marker(generation - 1, 5))
        .unwrap();
    db.flush().unwrap();
    generation - 1
}

#[tokio::test]
async fn events_sled_took_from_a_checkpoint_that_failed_before_its_marker_come_back_from_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let generation = sixth_beyond_the_marker(directory.path()).await;
    write_acknowledged(directory.path(), generation, &logged(generation, 6, 6), 6);
    let store = open(directory.path());
    check_whole(&store, 6).await;
    let retry = store.append(append(6)).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, Position(6));
    let next = store.append(append(7)).await.unwrap();
    assert_eq!(next.first_position, Position(7));
    let even = StreamId::new("even").unwrap();
    assert_eq!(store.stream_version(&even).await.unwrap(), StreamVersion(3));
    drop(store);
    check_whole(&open(directory.path()), 7).await;

    // Without the log's copy of event 6 it is refused: sled alone holds it.
    let directory = tempfile::tempdir().unwrap();
    sixth_beyond_the_marker(directory.path()).await;
    let detail = refused_at(directory.path(), 6);
    assert!(detail.contains("beyond its last checkpoint"), "{detail}");
}

/// A store of format 6 (its chunks inside sled, under `E` keys), as that build left it, is
/// opened: its chunks move into the segment files, the log reads whole, the commands still
/// answer, and the format says 7. A move cut short (the first chunks moved, the rest still in
/// sled; the format already 7, as the move marks it first, or still 6 as an older build of
/// this one left it) goes on at the next opening.
#[tokio::test]
async fn a_format_6_store_moves_its_chunks_into_segment_files() {
    for (moved_through, format) in [(0u64, 6u32), (4, 6), (4, 7)] {
        let directory = tempfile::tempdir().unwrap();
        {
            let store = open(directory.path());
            for n in 1..=9 {
                store.append(append(n)).await.unwrap();
            }
        }
        let before = {
            let store = open(directory.path());
            store.read_all(Position::START, 100).await.unwrap()
        };
        {
            let db = reopen_sled(directory.path());
            let log = db.open_tree("log").unwrap();
            let chunks = layout::Tamper::new(directory.path(), &log).unwrap();
            chunks.split();
            for first in moved_through + 1..=9 {
                let stored = chunks.get(first).unwrap();
                log.insert(layout::inline_chunk_key(first), stored).unwrap();
                log.remove(layout::chunk_key(first)).unwrap();
            }
            if moved_through == 0 {
                log.remove(layout::SEGMENTS_END_KEY).unwrap();
            }
            let meta = db.open_tree("meta").unwrap();
            meta.insert("store-format", &format.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        if moved_through == 0 {
            std::fs::remove_dir_all(directory.path().join("log")).unwrap();
        }
        {
            let store = open(directory.path());
            check_whole(&store, 9).await;
            assert_eq!(store.read_all(Position::START, 100).await.unwrap(), before);
            let retry = store.append(append(5)).await.unwrap();
            assert!(retry.deduplicated);
            assert_eq!(retry.first_position, Position(5));
            store.append(append(10)).await.unwrap();
        }
        let db = reopen_sled(directory.path());
        let log = db.open_tree("log").unwrap();
        assert_eq!(log.scan_prefix([layout::EVENTS]).count(), 0);
        assert!(log.scan_prefix([layout::LOCATED]).count() >= 10);
        let meta = db.open_tree("meta").unwrap();
        let format = meta.get("store-format").unwrap().unwrap();
        assert_eq!(format.as_ref(), STORE_FORMAT.to_be_bytes());
        assert_eq!(STORE_FORMAT, 7);
    }
}
