//! Restoring a store from records laid out elsewhere (an export): the records are written
//! verbatim, with the positions, ids, instants and hashes they carry, into a new store.
//!
//! Every record is checked as it comes (`core::event::verify`: gapless positions, the hash
//! chain, stream versions), and a command id may name one append only. The records are stored
//! as the store holds events (chunks in the segment files, an append never split across
//! chunks, stream-index entries per chunk, the command index as one run, a checkpoint marker),
//! then made durable (the segment files `fdatasync`ed, `Db::flush`, `fdatasync` of the
//! database file, `fsync` of blob files) before the store's format marker is
//! written: a restore is marked unfinished before its first event, and the format marker
//! replaces that mark only at the end, so a restore cut short is refused by
//! `SledEventLog::open`, never a store that looks whole. The restored store is then opened as
//! any other, with a checkpoint.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use battleplan_core::event::verify::{Problem, Verifier};
use battleplan_core::event::{
    AppendOutcome, CommandId, Position, StoreError, StoreResult, StreamId,
};

use super::{
    commands, io_error, layout, sled_error, sync_new_blobs, wal, ChunkBuilder, Segments,
    SledEventLog, StoreOptions, CHUNK_TARGET_BYTES, FORMAT_KEY, RESTORING_KEY, STORE_FORMAT,
};

/// Why a restore stopped. Nothing of it is a store: the directory is marked unfinished, which
/// no one opens; remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// The records do not form an intact log: the first problem, with its position.
    Damaged(Problem),
    /// The records are intact but cannot be a store's log (a command id on two appends).
    Refused { position: Position, detail: String },
    /// The store failed.
    Store(StoreError),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Damaged(problem) => problem.fmt(formatter),
            RestoreError::Refused { position, detail } => {
                write!(formatter, "position {position}: {detail}")
            }
            RestoreError::Store(error) => error.fmt(formatter),
        }
    }
}

impl std::error::Error for RestoreError {}

impl From<StoreError> for RestoreError {
    fn from(error: StoreError) -> Self {
        RestoreError::Store(error)
    }
}

/// One append being gathered: consecutive records of one command id on one stream.
struct Gathered {
    command: CommandId,
    stream: StreamId,
    first_version: u64,
    first_position: u64,
    records: Vec<Vec<u8>>,
    bytes: usize,
}

/// A store being restored. Feed every record in order with [`Restore::push`], then
/// [`Restore::finish`]; dropping it before `finish` leaves no store (see the module's words).
pub struct Restore {
    directory: PathBuf,
    options: StoreOptions,
    db: sled::Db,
    log: sled::Tree,
    segments: Segments,
    verifier: Verifier,
    chunk: ChunkBuilder,
    gathered: Option<Gathered>,
    commands: HashSet<CommandId>,
    /// The command index's entries, written as one run at the end.
    entries: Vec<commands::Entry>,
}

impl fmt::Debug for Restore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Restore")
            .field("directory", &self.directory)
            .field("records", &self.verifier.checked())
            .finish()
    }
}

impl SledEventLog {
    /// Starts restoring a store into `directory`, which must be absent or empty. Blocking.
    pub fn restore(directory: &Path, options: StoreOptions) -> StoreResult<Restore> {
        if let Ok(mut entries) = std::fs::read_dir(directory) {
            if entries.next().is_some() {
                return Err(StoreError::Invalid(format!(
                    "a store is restored into an empty directory; {} is not empty",
                    directory.display()
                )));
            }
        }
        crate::private::directory(directory).map_err(io_error)?;
        let db = sled::Config::new()
            .path(directory)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(sled_error)?;
        let log = db.open_tree("log").map_err(sled_error)?;
        let segments = Segments::open(directory).map_err(io_error)?;
        segments.settle(None).map_err(io_error)?;
        for name in ["checkpoints", "projections"] {
            db.open_tree(name).map_err(sled_error)?;
        }
        // Before any event: a directory cut short here on is refused by `open`.
        db.open_tree("meta")
            .and_then(|meta| meta.insert(RESTORING_KEY, &[1u8][..]))
            .and_then(|_| db.flush())
            .map_err(sled_error)?;
        Ok(Restore {
            directory: directory.to_path_buf(),
            options,
            db,
            log,
            segments,
            verifier: Verifier::new(),
            chunk: ChunkBuilder::default(),
            gathered: None,
            commands: HashSet::new(),
            entries: Vec::new(),
        })
    }
}

impl Restore {
    /// How many records have been taken.
    pub fn records(&self) -> u64 {
        self.verifier.checked()
    }

    /// The hash of the last record taken: the head of the chain.
    pub fn head_hash_hex(&self) -> String {
        self.verifier.head_hash_hex()
    }

    /// Takes the next record (its stored bytes: hashes and canonical body, see
    /// `core::event::record`). It must be at the next position and continue the chain.
    pub fn push(&mut self, bytes: Vec<u8>) -> Result<(), RestoreError> {
        if bytes.len() > self.options.max_record_bytes {
            return Err(RestoreError::Refused {
                position: Position(self.verifier.checked() + 1),
                detail: format!(
                    "a record of {} bytes is larger than the store's limit of {} bytes",
                    bytes.len(),
                    self.options.max_record_bytes
                ),
            });
        }
        let position = Position(self.verifier.checked() + 1);
        let event = self
            .verifier
            .check_decoded(position, &bytes)
            .map_err(RestoreError::Damaged)?;
        let command = event.metadata.command_id;
        let continues = self
            .gathered
            .as_ref()
            .is_some_and(|gathered| gathered.command == command && gathered.stream == event.stream);
        if !continues {
            self.store_gathered()?;
            if !self.commands.insert(command) {
                return Err(RestoreError::Refused {
                    position,
                    detail: format!(
                        "command {command} already recorded an earlier append; a command is recorded once"
                    ),
                });
            }
            self.gathered = Some(Gathered {
                command,
                stream: event.stream.clone(),
                first_version: event.version.0,
                first_position: position.0,
                records: Vec::new(),
                bytes: 0,
            });
        }
        if let Some(gathered) = &mut self.gathered {
            gathered.bytes += bytes.len() + 4;
            gathered.records.push(bytes);
        }
        Ok(())
    }

    /// Lays the gathered append into the chunk being filled: a chunk that would grow past its
    /// target is stored first, and an append is never split.
    fn store_gathered(&mut self) -> Result<(), RestoreError> {
        let Some(gathered) = self.gathered.take() else {
            return Ok(());
        };
        let mut pairs = Vec::new();
        if !self.chunk.records.is_empty() && self.chunk.bytes + gathered.bytes > CHUNK_TARGET_BYTES
        {
            std::mem::take(&mut self.chunk)
                .finish(&self.segments, &mut pairs)
                .map_err(io_error)?;
        }
        if self.chunk.records.is_empty() {
            self.chunk.first = gathered.first_position;
        }
        let count = gathered.records.len() as u64;
        let last_position = gathered.first_position + count - 1;
        let positions: Vec<u64> = (gathered.first_position..=last_position).collect();
        match self
            .chunk
            .streams
            .iter_mut()
            .find(|(stream, _, _)| *stream == gathered.stream)
        {
            Some((_, _, known)) => known.extend(positions),
            None => self.chunk.streams.push((
                gathered.stream.clone(),
                gathered.first_version,
                positions,
            )),
        }
        self.chunk.bytes += gathered.bytes;
        self.chunk.records.extend(gathered.records);
        let outcome = AppendOutcome {
            first_position: Position(gathered.first_position),
            last_position: Position(last_position),
            first_version: battleplan_core::event::StreamVersion(gathered.first_version),
            last_version: battleplan_core::event::StreamVersion(gathered.first_version + count - 1),
            deduplicated: false,
        };
        self.entries
            .push(commands::entry(&gathered.command, &outcome));
        self.insert(pairs)
    }

    /// Chunks first.
    fn insert(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), RestoreError> {
        let (chunks, rest): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .partition(|(key, _)| key.first() == Some(&layout::LOCATED));
        for (key, value) in chunks.into_iter().chain(rest) {
            self.log.insert(key, value).map_err(sled_error)?;
        }
        Ok(())
    }

    /// Stores what is left, makes it durable, marks the directory a store, and opens it.
    pub fn finish(mut self) -> Result<SledEventLog, RestoreError> {
        self.store_gathered()?;
        let mut pairs = Vec::new();
        std::mem::take(&mut self.chunk)
            .finish(&self.segments, &mut pairs)
            .map_err(io_error)?;
        self.insert(pairs)?;
        // The command index as one run, and a checkpoint marker: the store is whole in sled.
        let mut batch = sled::Batch::default();
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable_by_key(|entry| entry.0);
        if !entries.is_empty() {
            commands::write_run(&mut batch, 1, &entries, &mut Vec::new());
        }
        batch.insert(
            layout::CHECKPOINT_KEY,
            &wal::marker(0, self.verifier.checked()),
        );
        batch.insert(layout::SEGMENTS_END_KEY, &self.segments.end().to_bytes());
        self.log.apply_batch(batch).map_err(sled_error)?;
        self.segments.sync().map_err(io_error)?;
        self.db.flush().map_err(sled_error)?;
        File::open(self.directory.join("db"))
            .and_then(|file| file.sync_data())
            .map_err(io_error)?;
        sync_new_blobs(&self.directory.join("blobs"), &mut HashSet::new()).map_err(io_error)?;
        // A store has both write-ahead files (empty here: sled holds everything).
        for name in wal::FILES {
            crate::fault::check("wal.create").map_err(io_error)?;
            File::create(self.directory.join(name))
                .and_then(|file| {
                    file.set_len(wal::EMPTIED as u64)?;
                    file.sync_all()
                })
                .map_err(io_error)?;
        }
        File::open(&self.directory)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error)?;
        // Only now is this a store: the events are durable before their marker.
        let meta = self.db.open_tree("meta").map_err(sled_error)?;
        let mut marked = sled::Batch::default();
        marked.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes());
        marked.remove(RESTORING_KEY);
        meta.apply_batch(marked).map_err(sled_error)?;
        // Opening checkpoints: the marker is durable (with the log's first generation) before
        // the store is handed out.
        Ok(SledEventLog::start(
            self.db,
            &self.directory,
            self.options,
            super::Poisoned::default(),
            None,
        )?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use battleplan_core::event::port::{EventAppender, EventReader};
    use battleplan_core::event::record;
    use battleplan_core::event::verify::Damage;
    use battleplan_core::event::{
        Append, EventId, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamVersion,
    };
    use uuid::Uuid;

    use super::*;

    fn append(stream: &str, command: u128, events: u128) -> Append {
        Append {
            stream: StreamId::new(stream).unwrap(),
            expected: ExpectedVersion::Any,
            events: (0..events)
                .map(|n| NewEvent {
                    event_id: EventId(Uuid::from_u128(command * 100 + n)),
                    event_type: "Tested".into(),
                    schema_version: 1,
                    payload: vec![n as u8; 3000],
                })
                .collect(),
            metadata: Metadata {
                actor: "alice".into(),
                command_id: CommandId(Uuid::from_u128(command)),
                causation_id: None,
                correlation_id: None,
                reason: None,
            },
            recorded_at: chrono::DateTime::from_timestamp(1_788_000_000, 0).unwrap(),
        }
    }

    /// A store of 60 appends over three streams, some large enough to fill chunks; its records.
    async fn original(directory: &Path) -> Vec<RecordedEvent> {
        let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
        for command in 1..=60u128 {
            let stream = ["a", "b", "c"][(command % 3) as usize];
            store
                .append(append(stream, command, 1 + command % 7))
                .await
                .unwrap();
        }
        store.read_all(Position::START, usize::MAX).await.unwrap()
    }

    fn record_bytes(event: &RecordedEvent) -> Vec<u8> {
        let (bytes, _) = record::encode(
            NewEvent {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                payload: event.payload.clone(),
            },
            record::Placement {
                position: event.position,
                stream: &event.stream,
                version: event.version,
                recorded_at: event.recorded_at,
                metadata: &event.metadata,
                previous_hash: event.previous_hash,
            },
        );
        bytes
    }

    #[tokio::test]
    async fn a_restored_store_reads_and_appends_as_the_original() {
        let scratch = tempfile::tempdir().unwrap();
        let events = original(&scratch.path().join("original")).await;
        let target = scratch.path().join("restored");
        let mut restore = SledEventLog::restore(&target, StoreOptions::default()).unwrap();
        for event in &events {
            restore.push(record_bytes(event)).unwrap();
        }
        let store = restore.finish().unwrap();
        let report = store.verify().unwrap();
        assert_eq!(report.problem, None);
        assert_eq!(report.checked, events.len() as u64);
        assert_eq!(
            store.read_all(Position::START, usize::MAX).await.unwrap(),
            events
        );
        let stream = StreamId::new("b").unwrap();
        let of_b: Vec<RecordedEvent> = events
            .iter()
            .filter(|e| e.stream == stream)
            .cloned()
            .collect();
        assert_eq!(
            store
                .read_stream(&stream, StreamVersion(1), usize::MAX)
                .await
                .unwrap(),
            of_b
        );
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            StreamVersion(of_b.len() as u64)
        );
        // A command recorded before the restore is recognised; a new one goes on the chain.
        let again = store.append(append("a", 3, 1)).await.unwrap();
        assert!(again.deduplicated);
        let new = store.append(append("a", 61, 1)).await.unwrap();
        assert_eq!(new.first_position, Position(events.len() as u64 + 1));
        assert_eq!(store.verify().unwrap().problem, None);
    }

    #[tokio::test]
    async fn a_broken_chain_or_a_busy_directory_is_refused_and_an_unfinished_restore_is_no_store() {
        let scratch = tempfile::tempdir().unwrap();
        let events = original(&scratch.path().join("original")).await;

        let busy = scratch.path().join("busy");
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("file"), "x").unwrap();
        assert!(matches!(
            SledEventLog::restore(&busy, StoreOptions::default()),
            Err(StoreError::Invalid(_))
        ));

        let target = scratch.path().join("restored");
        {
            let mut restore = SledEventLog::restore(&target, StoreOptions::default()).unwrap();
            for event in &events[..10] {
                restore.push(record_bytes(event)).unwrap();
            }
            match restore.push(record_bytes(&events[11])) {
                Err(RestoreError::Damaged(problem)) => {
                    assert_eq!(problem.position, Position(11));
                    assert_eq!(problem.damage, Damage::BrokenLink);
                }
                other => panic!("{other:?}"),
            }
        }
        // Dropped before `finish`: marked unfinished, which no one opens.
        assert!(matches!(
            SledEventLog::open(&target, StoreOptions::default()),
            Err(StoreError::Corrupt { .. }) | Err(StoreError::Locked(_))
        ));
    }
}
