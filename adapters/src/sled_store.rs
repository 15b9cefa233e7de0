//! The event store on sled 0.34.7: the embedded default.
//!
//! sled costs several microseconds per key written or read (it copies the leaf it changes), so
//! the store touches sled as little as it can. An append goes to a write-ahead log of its own
//! (`wal`) and to an in-memory *tail* (`tail`); sled receives the tail only at checkpoints, in
//! bulk and in one atomic `apply_batch`. The events themselves are in *chunks*: the records of
//! consecutive events (`u32` count, then each record as `u32` length + bytes; see
//! `battleplan_core::event::record`), compressed with lz4 (records repeat their streams, types
//! and actors, so a chunk shrinks about threefold), up to ~32 KiB each, appended to segment
//! files of their own (`segments`: sled 0.34 keeps in memory what it reads, so a long log read
//! through it grew the process). Layout, in one tree `log`:
//! - `L` + first position (u64, big-endian) -> where the chunk starting there is
//!   (`segments::Locator`: segment, offset, length); `Msegments-end`: where the segment files
//!   end, written with every batch that names new chunks (formats 3 to 6 kept the chunks
//!   themselves under `E` keys; opening such a store moves them, `move_chunks`);
//! - `S` + stream key + first version -> the positions of consecutive events of that stream
//!   (a stream's version is where its last entry ends); one entry per stream per checkpoint,
//!   split every 8,192 positions;
//! - `K` and `F`: the command index, sorted runs of command ids with their outcomes and a Bloom
//!   filter per run (see `commands`), for idempotent retries;
//! - `Mcheckpoint`: the last checkpoint's marker: the write-ahead log's generation since, and
//!   the position sled holds events through.
//!
//! Beside it: `meta` (the store format), `checkpoints` and `projections` (projection state and
//! the position it reflects, changed together in one transaction); and, beside sled's files,
//! the write-ahead log's two files (`wal::FILES`).
//!
//! When data is durable: each appender lays out its own append, under the sequencer's lock
//! (`Sequencer`: the log's head, stream versions): checks its command id and expected version,
//! encodes and chains its events, adds them to the tail and to the write-ahead record being
//! filled, and waits. The flusher thread takes everything laid out since it last looked, writes
//! it to the write-ahead log in one `pwrite`, `fdatasync`s it and answers each appender. While
//! one `fdatasync` runs, the appenders lay out the next batch: group commit, pipelined, with one
//! thread hop per append there and one back.
//!
//! Checkpoints (every `StoreOptions::checkpoint_events` events or 16 MiB of log, at opening and
//! at closing): the flusher freezes the tail with the batch it takes, under the sequencer's
//! lock, so that what is laid out after belongs to the next generation; once that batch is
//! durable it goes on under the next generation in the other file, and the checkpointer thread
//! writes the frozen tail into sled re-chunked, with its stream-index entries, its commands as a
//! new run and the marker of the next generation, in one `apply_batch`, installs the index's new
//! run, lets the frozen tail go, and makes sled durable (`Db::flush`, then `fdatasync` of its
//! file and `fsync` of new blob files, since sled's flush uses `sync_file_range` and writes blob
//! files without any sync). A generation's file is written again, from its start, only two
//! generations later, once the checkpoint of its records is durable: a checkpoint waits for the
//! one before, and while it waits the tail goes on growing, up to twice its size, after which
//! the flusher waits too. Each file is kept filled with zeros ahead of its last record, so an
//! `fdatasync` has no file length to update.
//!
//! Reopening after a crash (`recover`): sled holds every checkpoint whole and nothing else (a
//! batch is applied all or nothing); the marker's generation's file holds whole the batches
//! since, and the other file perhaps the next generation's after them, up to at least the last
//! acknowledged. They become the tail again, and a checkpoint makes them durable in sled before
//! anyone reads.
//!
//! `read_all`, `head` and `wait_beyond` show only durable events, so nothing a projection or a
//! dispatcher acts on can be lost in a crash. `read_stream` and `stream_version` also show
//! events whose `fdatasync` is under way: an append that decides on them is acknowledged only
//! after both are durable, and a crash loses both or neither (the log is one sequence). Once the
//! store has failed (an IO error), every append and read of the log fails, until it is reopened.
//! An append enters the tail under one lock, so a reader sees all of it or none of it;
//! readers look at the tails first and at sled after (`tail::Tails`).
//!
//! Command ids: the appender looks its command id up in the tails and the command index before
//! it takes the sequencer's lock (in parallel with the other appenders; a new id usually costs
//! one filter probe per run and no read), noting the tails' epoch; under the lock, while no tail
//! has been frozen since, it checks again only the current tail.
//!
//! Stores of formats 3 and 4 (events inserted into sled batch by batch, one `C` + id key per
//! command, the checkpoint marker in `meta`) are recovered as they were written, then upgraded
//! in place: their command keys become the first run.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use battleplan_core::event::append::{self, outcome_from_bytes, outcome_to_bytes, LogHead};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::record;
use battleplan_core::event::verify::{Damage, Problem, Verifier};
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, CommandId, Position, RecordedEvent, StoreError,
    StoreResult, StreamId, StreamVersion, GENESIS_HASH,
};
use rustc_hash::FxHashMap;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::{oneshot, watch};

mod commands;
mod read_only;
mod restore;
mod segments;
mod tail;
use commands::CommandIndex;
pub use read_only::ReadOnlyCopy;
pub use restore::{Restore, RestoreError};
use segments::Segments;
use tail::{Tail, Tails};

/// The store layout this build writes. Opening a store with another number is refused.
/// Format 3 stores events in lz4-compressed chunks; format 4 adds the write-ahead log; format 5
/// writes sled only at checkpoints and keeps command ids in runs; format 6 seals and empties the
/// write-ahead files; format 7 keeps the chunks in segment files of their own (`segments`),
/// sled only where each one is.
pub const STORE_FORMAT: u32 = 7;

/// The first format whose write-ahead files are sealed and emptied, and the last whose chunks
/// sled holds itself (under `E` keys): such a store's chunks are moved into segment files when
/// it is opened (`move_chunks`).
const SEALED_FORMAT: u32 = 6;

/// The first format with two write-ahead files and command ids in runs; format 6 empties a file
/// before a generation is written in it and makes its zeros durable ahead of its records.
const TWO_FILES_FORMAT: u32 = 5;

/// The oldest format this build opens (and upgrades): format 3 is format 4 with an empty
/// write-ahead log, and format 4 becomes format 5 once its command keys are moved into a run.
const UPGRADABLE_FORMAT: u32 = 3;

/// The format whose write-ahead log holds sled keys and values (`wal::records`).
const PAIRS_FORMAT: u32 = 4;

/// The largest record accepted: far above any event, far below memory trouble.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// sled's page cache, by default: bounded, so a long log never fills memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A chunk stops growing past this size, well below sled's threshold for keeping a value in a
/// file of its own (a quarter of its 512 KiB segment). sled copies a leaf on every insert and
/// keeps more memory the larger its leaves: with 96 KiB chunks written a checkpoint at a time,
/// a 1,000,000-row import peaked at 152 MiB; with 32 KiB, 95 MiB (`import_memory.rs`).
const CHUNK_TARGET_BYTES: usize = 32 * 1024;

/// The most positions in one stream-index entry (64 KiB).
const STREAM_ENTRY_POSITIONS: usize = 8192;

const FORMAT_KEY: &[u8] = b"store-format";

/// Present in `meta` while a restore is under way (`restore`): such a directory is not a store.
const RESTORING_KEY: &[u8] = b"restoring";

/// The directory in a store's directory where projections keep their large files.
pub const FILES_DIRECTORY: &str = "files";

/// Stream versions the sequencer keeps in memory before starting over: bounded memory however many
/// streams (customers) the log holds.
const VERSION_CACHE_ENTRIES: usize = 100_000;

/// A stream's version: where its last index entry ends (0 when it has none).
fn stream_version_in(log: &sled::Tree, stream: &StreamId) -> StoreResult<StreamVersion> {
    let prefix = layout::stream_prefix(stream);
    let last = log
        .scan_prefix(&prefix)
        .next_back()
        .transpose()
        .map_err(sled_error)?;
    match last {
        None => Ok(StreamVersion::NONE),
        Some((key, value)) => {
            let first = key.get(prefix.len()..).and_then(u64_of).ok_or_else(|| {
                corrupt(
                    Position::START,
                    format!("stream {stream}'s index is damaged"),
                )
            })?;
            Ok(StreamVersion(first + (value.len() / 8) as u64 - 1))
        }
    }
}

/// The keys of the `log` tree; public so that tests can tamper with a store as an attacker
/// would.
pub mod layout {
    use battleplan_core::event::{CommandId, StreamId};

    /// Chunks held in sled itself, formats 3 to 6: read only to recover and upgrade such a
    /// store.
    pub const EVENTS: u8 = b'E';
    /// Where each chunk is in the segment files (format 7): `L` + first position ->
    /// `segments::Locator`.
    pub const LOCATED: u8 = b'L';
    pub const STREAMS: u8 = b'S';
    /// Command keys of formats 3 and 4, one per command; format 5 keeps runs (`K`, `F`).
    pub const COMMANDS: u8 = b'C';

    /// The key of the last checkpoint's marker (`wal::marker`).
    pub const CHECKPOINT_KEY: &[u8] = b"Mcheckpoint";

    /// The key of where the segment files end (`segments::End`), written with every batch
    /// that names new chunks.
    pub const SEGMENTS_END_KEY: &[u8] = b"Msegments-end";

    /// The key naming the chunk that starts at `first_position`.
    pub fn chunk_key(first_position: u64) -> [u8; 9] {
        let mut key = [LOCATED; 9];
        key[1..].copy_from_slice(&first_position.to_be_bytes());
        key
    }

    /// The key of a chunk held in sled itself (formats 3 to 6).
    pub fn inline_chunk_key(first_position: u64) -> [u8; 9] {
        let mut key = [EVENTS; 9];
        key[1..].copy_from_slice(&first_position.to_be_bytes());
        key
    }

    /// `S` + name length + name: the prefix of one stream's index entries. Names are at most
    /// 255 bytes; the length keeps one stream's keys from running into another's whose name
    /// starts the same.
    pub fn stream_prefix(stream: &StreamId) -> Vec<u8> {
        let name = stream.as_str().as_bytes();
        let mut key = Vec::with_capacity(name.len() + 10);
        key.push(STREAMS);
        key.push(name.len() as u8);
        key.extend_from_slice(name);
        key
    }

    pub fn stream_index_key(stream: &StreamId, first_version: u64) -> Vec<u8> {
        let mut key = stream_prefix(stream);
        key.extend_from_slice(&first_version.to_be_bytes());
        key
    }

    pub fn command_key(command: &CommandId) -> [u8; 17] {
        let mut key = [COMMANDS; 17];
        key[1..].copy_from_slice(command.0.as_bytes());
        key
    }

    /// No chunk holds more than this uncompressed: a damaged size field must not make the
    /// reader allocate gigabytes.
    const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;

    /// A chunk, decompressed.
    pub struct Chunk {
        data: Vec<u8>,
    }

    impl Chunk {
        /// Its records, in order; `None` if the framing is damaged.
        pub fn records(&self) -> Option<Vec<&[u8]>> {
            let chunk = self.data.as_slice();
            let count = u32::from_be_bytes(chunk.get(..4)?.try_into().ok()?) as usize;
            let mut records = Vec::with_capacity(count.min(chunk.len() / 64 + 1));
            let mut rest = chunk.get(4..)?;
            for _ in 0..count {
                let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                records.push(rest.get(4..4 + length)?);
                rest = rest.get(4 + length..)?;
            }
            rest.is_empty().then_some(records)
        }
    }

    /// Decompresses a stored chunk; `None` if it is damaged.
    pub fn open_chunk(stored: &[u8]) -> Option<Chunk> {
        let size = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?) as usize;
        if size > MAX_CHUNK_BYTES {
            return None;
        }
        let data = lz4_flex::block::decompress(stored.get(4..)?, size).ok()?;
        (data.len() == size).then_some(Chunk { data })
    }

    /// Splits a stored chunk into its records (owned); `None` if it is damaged.
    pub fn chunk_records(stored: &[u8]) -> Option<Vec<Vec<u8>>> {
        let chunk = open_chunk(stored)?;
        let records = chunk.records()?;
        Some(records.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// A closed store's chunks, changed as an attacker with its files would change them: for
    /// tests. A chunk put in is appended to the segment files, durably, and named in sled.
    pub struct Tamper {
        log: sled::Tree,
        segments: super::Segments,
    }

    impl Tamper {
        /// The chunks of the store in `directory`, whose sled database is open with `log` its
        /// `log` tree.
        pub fn new(directory: &std::path::Path, log: &sled::Tree) -> std::io::Result<Tamper> {
            let segments = super::Segments::open(directory)?;
            segments.settle(super::segments_end(log).map_err(std::io::Error::other)?)?;
            Ok(Tamper {
                log: log.clone(),
                segments,
            })
        }

        /// The stored chunk starting at `first`, if sled names one and it reads.
        pub fn get(&self, first: u64) -> Option<Vec<u8>> {
            let locator = self.log.get(chunk_key(first)).ok()??;
            self.segments.read(first, &locator).ok()
        }

        /// Names `stored` as the chunk starting at `first`.
        pub fn insert(&self, first: u64, stored: &[u8]) {
            let locator = self
                .segments
                .append(first, stored)
                .and_then(|locator| self.segments.sync().map(|()| locator));
            if let Ok(locator) = locator {
                let _ = self.log.insert(chunk_key(first), &locator.to_bytes());
                let _ = self
                    .log
                    .insert(SEGMENTS_END_KEY, &self.segments.end().to_bytes());
            }
        }

        /// Forgets the chunk starting at `first` (its frame stays in its file).
        pub fn remove(&self, first: u64) {
            let _ = self.log.remove(chunk_key(first));
        }

        /// Every event in a chunk of its own, as a store whose appends were each checkpointed
        /// alone would hold them, so that one event can be changed alone. Damaged chunks are
        /// left as they are.
        pub fn split(&self) {
            let keys: Vec<u64> = self
                .log
                .scan_prefix([LOCATED])
                .keys()
                .filter_map(|key| {
                    key.ok()?
                        .get(1..)
                        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                        .map(u64::from_be_bytes)
                })
                .collect();
            for first in keys {
                let Some(records) = self.get(first).as_deref().and_then(chunk_records) else {
                    continue;
                };
                for (offset, record) in records.iter().enumerate() {
                    self.insert(first + offset as u64, &chunk_of(&[record]));
                }
            }
        }

        /// The byte of the segment file holding the chunk at `first` where its record bytes
        /// start, with the file's path: for tests that damage the file itself.
        pub fn place(&self, first: u64) -> Option<(std::path::PathBuf, u64)> {
            let locator = self.log.get(chunk_key(first)).ok()??;
            let locator = super::segments::Locator::from_bytes(&locator)?;
            Some((
                self.segments
                    .directory()
                    .join(super::segments::file_name(locator.segment)),
                locator.offset + super::segments::HEADER as u64,
            ))
        }
    }

    /// Builds a stored chunk from records.
    pub fn chunk_of(records: &[&[u8]]) -> Vec<u8> {
        let size = 4 + records.iter().map(|r| r.len() + 4).sum::<usize>();
        let mut chunk = Vec::with_capacity(size);
        chunk.extend_from_slice(&(records.len() as u32).to_be_bytes());
        for record in records {
            chunk.extend_from_slice(&(record.len() as u32).to_be_bytes());
            chunk.extend_from_slice(record);
        }
        lz4_flex::block::compress_prepend_size(&chunk)
    }
}

/// How an append is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// The write-ahead log is `fdatasync`ed before an append is acknowledged; a checkpoint
    /// makes sled durable (`Db::flush`, then `fdatasync` of its file and `fsync` of new blob
    /// files) before the log is cut. The default.
    Durable,
    /// The write-ahead log is written but not synced. Not durable; only for measuring what the
    /// `fdatasync` costs (see BENCHMARKS.md).
    NoSync,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_capacity_bytes: u64,
    pub max_record_bytes: usize,
    pub sync: SyncMode,
    /// A checkpoint starts once the tail holds this many events (or the write-ahead file 16
    /// MiB): what the tail keeps in memory, twice while a checkpoint runs, and what reopening
    /// after a crash reads back. Small values make tests go through many checkpoints.
    pub checkpoint_events: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: DEFAULT_CACHE_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            sync: SyncMode::Durable,
            checkpoint_events: DEFAULT_CHECKPOINT_EVENTS,
        }
    }
}

/// What `verify` found: how many events checked out, the chain's head hash, and the first
/// problem if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub head_hash: String,
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, Default)]
struct Durable {
    position: Position,
    failure: Option<String>,
}

type Reply = oneshot::Sender<StoreResult<AppendOutcome>>;

/// A logged append waiting for its last position to be durable.
struct Pending {
    outcome: AppendOutcome,
    reply: Reply,
}

/// Where appends are laid out. Appenders take turns under its lock, each laying out its own
/// append after the log's head, adding it to the tail and to the write-ahead records the
/// flusher takes next.
struct Sequencer {
    head: LogHead,
    /// Stream versions as of the head. Only appends change them, under this lock, so an entry
    /// is never stale; the cache is dropped when it grows past `VERSION_CACHE_ENTRIES`.
    versions: FxHashMap<StreamId, StreamVersion>,
    /// The write-ahead log's generation that records laid out now belong to.
    generation: u64,
    /// The appends laid out since the flusher last took them, as write-ahead records.
    filling: wal::Filling,
    /// Their appenders, waiting for the flusher.
    pending: Vec<Pending>,
    /// The flusher is waiting for appends (an appender wakes it only then).
    flusher_waiting: bool,
    closing: bool,
    failure: Option<String>,
}

impl Sequencer {
    fn version_of(
        &mut self,
        log: &sled::Tree,
        tails: &RwLock<Tails>,
        stream: &StreamId,
    ) -> StoreResult<StreamVersion> {
        if let Some(version) = self.versions.get(stream) {
            return Ok(*version);
        }
        let in_tails = read(tails).last_version(stream);
        let version = match in_tails {
            Some(version) => version,
            None => stream_version_in(log, stream)?,
        };
        if self.versions.len() >= VERSION_CACHE_ENTRIES {
            self.versions.clear();
        }
        self.versions.insert(stream.clone(), version);
        Ok(version)
    }
}

struct Sequencing {
    state: Mutex<Sequencer>,
    /// Wakes the flusher.
    wake: Condvar,
}

impl Sequencing {
    fn lock(&self) -> MutexGuard<'_, Sequencer> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An append laid out and queued for the flusher, or one whose command id was recorded before.
enum Laid {
    Queued(oneshot::Receiver<StoreResult<AppendOutcome>>),
    Known(AppendOutcome),
}

struct Inner {
    log: sled::Tree,
    /// The files holding the chunks `log` names.
    segments: Arc<Segments>,
    checkpoints: sled::Tree,
    projections: sled::Tree,
    sequencing: Arc<Sequencing>,
    durable: Arc<watch::Sender<Durable>>,
    tails: Arc<RwLock<Tails>>,
    index: Arc<RwLock<CommandIndex>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    options: StoreOptions,
    /// Where projections keep their large files (`Checkpoints::files_directory`): `files/` in
    /// the store's directory, or in the directory whose segment files a read-only copy reads.
    files: PathBuf,
    /// Last, so that it is dropped after every handle on sled.
    _released: LockReleased,
}

/// Waits, when dropped, until sled has let go of its database file's lock. sled's IO threads
/// hold it for a moment after the last handle on the database is dropped, so without this a
/// store could not be opened again right after it was closed, by this process or another.
struct LockReleased {
    db_file: PathBuf,
    /// sled was left alone after it failed (`Poisoned`): its lock is held until the process
    /// ends, and waiting for it would be waiting forever.
    poisoned: Poisoned,
}

/// Set once sled failed under this store (a checkpoint's write or flush): sled is then never
/// called again in this process, not even by a handle's drop, which flushes and, after some
/// failures (a blob file cut short by a full disk), waits forever. A handle on the database is
/// leaked instead; the write-ahead log holds everything the failed checkpoint held, and the
/// next opening recovers it.
#[derive(Clone, Default)]
struct Poisoned(Arc<std::sync::atomic::AtomicBool>);

impl Poisoned {
    fn set(&self, db: &sled::Db) {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::mem::forget(db.clone());
        }
    }

    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// How many times `LockReleased` looks, a millisecond apart, before it gives up.
const LOCK_RELEASE_ATTEMPTS: u32 = 10_000;

impl Drop for LockReleased {
    fn drop(&mut self) {
        if self.poisoned.is_set() {
            return;
        }
        let Ok(file) = File::open(&self.db_file) else {
            return;
        };
        for _ in 0..LOCK_RELEASE_ATTEMPTS {
            match file.try_lock() {
                Ok(()) => {
                    let _ = file.unlock();
                    return;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(std::fs::TryLockError::Error(_)) => return,
            }
        }
        tracing::warn!(file = %self.db_file.display(), "sled still holds the store's lock after it was closed");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The flusher makes durable what it holds, then sled (a last checkpoint), and ends;
        // the checkpointer ends with it.
        self.sequencing.lock().closing = true;
        self.sequencing.wake.notify_all();
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect();
        for thread in threads {
            // A thread that panicked has already reported its failure to every waiter.
            let _ = thread.join();
        }
    }
}

/// The sled event store. Cheap to clone; all clones share one database, one sequencer and one
/// flusher.
#[derive(Clone)]
pub struct SledEventLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SledEventLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SledEventLog")
            .field("durable", &self.inner.durable.borrow().position)
            .finish()
    }
}

fn io_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
}

fn sled_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked(io.to_string())
        }
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            position: Position::START,
            detail: format!("{SLED_DAMAGE} files are damaged (sled found it at {at:?})"),
        },
        other => StoreError::Io(other.to_string()),
    }
}

/// Runs `work`, which reads sled's files, so that damage in them is an error and never a panic:
/// sled 0.34 panics on some damage it finds (a page it cannot deserialize, a node that breaks
/// its assertions) and reports other damage at no position; both are named at `position`, the
/// first the caller was reading.
fn guarded<T>(position: Position, work: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(Err(StoreError::Corrupt {
            position: Position::START,
            detail,
        })) if detail.starts_with(SLED_DAMAGE) => Err(corrupt(position, detail)),
        Ok(result) => result,
        Err(panic) => {
            let said = panic
                .downcast_ref::<&str>()
                .map(|said| said.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(corrupt(
                position,
                format!("{SLED_DAMAGE} files are damaged: sled stopped reading them ({said})"),
            ))
        }
    }
}

/// How damage found in sled's files is named.
const SLED_DAMAGE: &str = "sled's";

fn corrupt(position: Position, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        position,
        detail: detail.into(),
    }
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(array))
}

fn projection_key(projection: &str, key: &[u8]) -> Vec<u8> {
    let name = projection.as_bytes();
    let mut full = Vec::with_capacity(2 + name.len() + key.len());
    full.extend_from_slice(&(name.len() as u16).to_be_bytes());
    full.extend_from_slice(name);
    full.extend_from_slice(key);
    full
}

fn sync_directory(path: &Path) -> StoreResult<()> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error)
}

/// fsyncs blob files sled wrote since the last call (sled writes them without syncing), and the
/// blob directory when there were any.
fn sync_new_blobs(directory: &Path, synced: &mut HashSet<OsString>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut present = HashSet::new();
    let mut any_new = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !synced.contains(&name) {
            match File::open(entry.path()) {
                Ok(file) => file.sync_all()?,
                // sled removes blobs it no longer needs; one may go between listing and opening.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
            any_new = true;
        }
        present.insert(name);
    }
    *synced = present;
    if any_new {
        File::open(directory)?.sync_all()?;
    }
    Ok(())
}

/// The write-ahead log: one file beside sled's, holding each batch the flusher wrote since the
/// last checkpoint. A record is `magic (u32) | body length (u32) | checksum of the body (u64) |
/// body`, and a body is `generation (u64) | first position (u64) | last position (u64) |
/// append count (u32)`, then each append as `stream name length (u8) | stream name | command
/// id (16) | outcome (32) | record count (u32)` and its records, each `u32` length + bytes
/// (all big-endian). Format 4 wrote sled keys and values instead (`record`, `records`); those
/// are read only to recover a store of that format.
///
/// The file is written from its start again after each checkpoint, under the next generation,
/// and kept filled with zeros ahead of the last record (so that `fdatasync` has no file size to
/// update). Reading stops at the first record that is not whole (a torn write: its checksum
/// fails) or not of the current generation (zeros, or what an earlier generation left).
pub mod wal {
    /// The file of format 4, in the store's directory: read only to upgrade such a store.
    pub const FILE: &str = "battleplan.wal";

    /// The two files of format 5: generation `g` is written in `FILES[g % 2]`, so that the
    /// records of one generation stay whole while the next is written.
    pub const FILES: [&str; 2] = ["battleplan-0.wal", "battleplan-1.wal"];

    /// The file generation `generation` is written in.
    pub fn file_of(generation: u64) -> &'static str {
        FILES[(generation % 2) as usize]
    }

    /// The key, in the `meta` tree, of the last checkpoint's marker in formats 3 and 4 (format
    /// 5 keeps it in the `log` tree, `layout::CHECKPOINT_KEY`, written with the checkpoint).
    pub const CHECKPOINT_KEY: &[u8] = b"checkpoint";

    pub fn marker(generation: u64, position: u64) -> [u8; 16] {
        let mut marker = [0u8; 16];
        marker[..8].copy_from_slice(&generation.to_be_bytes());
        marker[8..].copy_from_slice(&position.to_be_bytes());
        marker
    }

    /// A checkpoint's marker that also names the command-index runs the checkpoint merged
    /// away (format 6): their removal, done after the marker is durable, is finished on
    /// opening if a crash cut it short.
    pub fn marker_merging(generation: u64, position: u64, merged: &[u64]) -> Vec<u8> {
        let mut bytes = marker(generation, position).to_vec();
        for run in merged {
            bytes.extend_from_slice(&run.to_be_bytes());
        }
        bytes
    }

    /// `(generation, position)`; `None` if damaged.
    pub fn read_marker(marker: &[u8]) -> Option<(u64, u64)> {
        if marker.len() < 16 || !(marker.len() - 16).is_multiple_of(8) {
            return None;
        }
        Some((u64_at(marker, 0)?, u64_at(marker, 8)?))
    }

    /// The runs a marker names as merged away.
    pub fn merged_of(marker: &[u8]) -> Vec<u64> {
        marker
            .get(16..)
            .unwrap_or_default()
            .chunks_exact(8)
            .filter_map(|bytes| u64_at(bytes, 0))
            .collect()
    }

    const MAGIC: u32 = 0x4250_5731; // "BPW1"
    const HEADER: usize = 16;

    /// A checksum to tell a whole record from a torn one (not from a forged one: the hash
    /// chain does that).
    pub fn checksum(bytes: &[u8]) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut hash = 0x243f_6a88_85a3_08d3u64 ^ (bytes.len() as u64).wrapping_mul(K);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut array = [0u8; 8];
            array.copy_from_slice(word);
            hash = (hash ^ u64::from_le_bytes(array))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let rest = words.remainder();
        let mut array = [0u8; 8];
        array[..rest.len()].copy_from_slice(rest);
        hash = (hash ^ u64::from_le_bytes(array))
            .wrapping_mul(K)
            .rotate_left(29);
        hash ^ (hash >> 31)
    }

    /// One batch of format 4 (sled keys and values) as a record.
    pub fn record(generation: u64, first: u64, last: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut record = vec![0; BATCH_START];
        for (key, value) in pairs {
            record.extend_from_slice(&(key.len() as u32).to_be_bytes());
            record.extend_from_slice(key);
            record.extend_from_slice(&(value.len() as u32).to_be_bytes());
            record.extend_from_slice(value);
        }
        seal(&mut record, MAGIC, generation, first, last, pairs.len());
        record
    }

    /// The bytes before a record's first item: its header and the start of its body, filled in
    /// when the record is sealed.
    const BATCH_START: usize = HEADER + 28;

    /// Fills in a record's header and the start of its body: `record` starts at its header
    /// (`BATCH_START` bytes left for it) and ends with its last item.
    fn seal(record: &mut [u8], magic: u32, generation: u64, first: u64, last: u64, count: usize) {
        let size = record.len() - HEADER;
        record[..4].copy_from_slice(&magic.to_be_bytes());
        record[4..8].copy_from_slice(&(size as u32).to_be_bytes());
        record[16..24].copy_from_slice(&generation.to_be_bytes());
        record[24..32].copy_from_slice(&first.to_be_bytes());
        record[32..40].copy_from_slice(&last.to_be_bytes());
        record[40..44].copy_from_slice(&(count as u32).to_be_bytes());
        let sum = checksum(&record[HEADER..]);
        record[8..16].copy_from_slice(&sum.to_be_bytes());
    }

    /// The bodies of the whole records of `magic` and `generation` at the start of `log`, with
    /// where each starts, up to the first torn, missing, older or other one.
    fn bodies(log: &[u8], magic: u32, generation: u64) -> Vec<(usize, &[u8])> {
        let mut bodies = Vec::new();
        let mut at = 0;
        while let (Some(found), Some(size), Some(sum)) =
            (u32_at(log, at), u32_at(log, at + 4), u64_at(log, at + 8))
        {
            let Some(body) = log.get(at + HEADER..at + HEADER + size) else {
                break;
            };
            if found != magic as usize
                || u64_at(body, 0) != Some(generation)
                || checksum(body) != sum
            {
                break;
            }
            bodies.push((at, body));
            at += HEADER + size;
        }
        bodies
    }

    /// A record read back: its positions and its pairs.
    pub struct Batch<'a> {
        pub first: u64,
        pub last: u64,
        pub pairs: Vec<(&'a [u8], &'a [u8])>,
    }

    fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
        let mut array = [0u8; 4];
        array.copy_from_slice(bytes.get(at..at + 4)?);
        Some(u32::from_be_bytes(array) as usize)
    }

    fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes.get(at..at + 8)?);
        Some(u64::from_be_bytes(array))
    }

    /// The whole records of `generation` at the start of `log`, in order, up to the first
    /// torn, missing or older one. `Err` if a record whose checksum holds cannot be read: that
    /// is damage, not a torn write.
    pub fn records(log: &[u8], generation: u64) -> Result<Vec<Batch<'_>>, String> {
        let mut batches = Vec::new();
        for (at, body) in bodies(log, MAGIC, generation) {
            let damaged = || format!("a write-ahead record at byte {at} is unreadable");
            let first = u64_at(body, 8).ok_or_else(damaged)?;
            let last = u64_at(body, 16).ok_or_else(damaged)?;
            let count = u32_at(body, 24).ok_or_else(damaged)?;
            let mut pairs = Vec::with_capacity(count.min(body.len() / 8));
            let mut offset = 28;
            for _ in 0..count {
                let key_len = u32_at(body, offset).ok_or_else(damaged)?;
                let key = body
                    .get(offset + 4..offset + 4 + key_len)
                    .ok_or_else(damaged)?;
                offset += 4 + key_len;
                let value_len = u32_at(body, offset).ok_or_else(damaged)?;
                let value = body
                    .get(offset + 4..offset + 4 + value_len)
                    .ok_or_else(damaged)?;
                offset += 4 + value_len;
                pairs.push((key, value));
            }
            if offset != body.len() || first > last {
                return Err(damaged());
            }
            batches.push(Batch { first, last, pairs });
        }
        Ok(batches)
    }

    const MAGIC_APPENDS: u32 = 0x4250_5732; // "BPW2"

    /// One append as the log holds it.
    pub struct LoggedAppend<'a> {
        pub stream: &'a str,
        pub command: [u8; 16],
        pub outcome: [u8; 32],
        pub records: Vec<&'a [u8]>,
    }

    /// A batch read back: its positions and its appends.
    pub struct Logged<'a> {
        pub first: u64,
        pub last: u64,
        pub appends: Vec<LoggedAppend<'a>>,
    }

    /// A batch's record stops growing past this size (a body's length is a `u32`).
    const BATCH_BYTES: usize = 16 * 1024 * 1024;

    fn push_append(record: &mut Vec<u8>, append: &LoggedAppend<'_>) {
        // Stream names are at most 255 bytes (`StreamId`).
        record.push(append.stream.len() as u8);
        record.extend_from_slice(append.stream.as_bytes());
        record.extend_from_slice(&append.command);
        record.extend_from_slice(&append.outcome);
        record.extend_from_slice(&(append.records.len() as u32).to_be_bytes());
        for bytes in &append.records {
            record.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            record.extend_from_slice(bytes);
        }
    }

    /// One batch of appends as a record.
    pub fn batch(generation: u64, first: u64, last: u64, appends: &[LoggedAppend<'_>]) -> Vec<u8> {
        let mut record = vec![0; BATCH_START];
        for append in appends {
            push_append(&mut record, append);
        }
        seal(
            &mut record,
            MAGIC_APPENDS,
            generation,
            first,
            last,
            appends.len(),
        );
        record
    }

    /// Records being filled by the appenders, one append after another, and sealed when the
    /// flusher takes them to write (or when one grows past `BATCH_BYTES`).
    #[derive(Default)]
    pub struct Filling {
        bytes: Vec<u8>,
        /// Where the record being filled starts, its first and last positions and how many
        /// appends it holds.
        start: usize,
        first: u64,
        last: u64,
        count: usize,
    }

    impl Filling {
        /// Adds an append of the positions `first..=last` to the records of `generation`.
        pub fn push(&mut self, generation: u64, first: u64, last: u64, append: &LoggedAppend<'_>) {
            if self.count > 0 && self.bytes.len() - self.start >= BATCH_BYTES {
                self.seal(generation);
            }
            if self.count == 0 {
                self.start = self.bytes.len();
                self.bytes.resize(self.start + BATCH_START, 0);
                self.first = first;
            }
            push_append(&mut self.bytes, append);
            self.last = last;
            self.count += 1;
        }

        fn seal(&mut self, generation: u64) {
            seal(
                &mut self.bytes[self.start..],
                MAGIC_APPENDS,
                generation,
                self.first,
                self.last,
                self.count,
            );
            self.count = 0;
        }

        /// Seals the record being filled and hands over every record, leaving `spare`
        /// (emptied) to fill next.
        pub fn take(&mut self, generation: u64, mut spare: Vec<u8>) -> Vec<u8> {
            if self.count > 0 {
                self.seal(generation);
            }
            self.start = 0;
            spare.clear();
            std::mem::replace(&mut self.bytes, spare)
        }
    }

    fn parse_appends(body: &[u8]) -> Option<Logged<'_>> {
        let first = u64_at(body, 8)?;
        let last = u64_at(body, 16)?;
        let count = u32_at(body, 24)?;
        let mut appends = Vec::with_capacity(count.min(body.len() / 53));
        let mut at = 28;
        for _ in 0..count {
            let name_len = *body.get(at)? as usize;
            let stream = std::str::from_utf8(body.get(at + 1..at + 1 + name_len)?).ok()?;
            at += 1 + name_len;
            let command: [u8; 16] = body.get(at..at + 16)?.try_into().ok()?;
            let outcome: [u8; 32] = body.get(at + 16..at + 48)?.try_into().ok()?;
            let records_count = u32_at(body, at + 48)?;
            at += 52;
            let mut records = Vec::with_capacity(records_count.min(body.len() / 4));
            for _ in 0..records_count {
                let length = u32_at(body, at)?;
                records.push(body.get(at + 4..at + 4 + length)?);
                at += 4 + length;
            }
            appends.push(LoggedAppend {
                stream,
                command,
                outcome,
                records,
            });
        }
        (at == body.len() && first <= last).then_some(Logged {
            first,
            last,
            appends,
        })
    }

    /// The whole batches of `generation` at the start of `log`, in order, up to the first
    /// torn, missing or older one. `Err` if a record whose checksum holds cannot be read: that
    /// is damage, not a torn write. Format 5's reading; [`scan`] is format 6's.
    pub fn appends(log: &[u8], generation: u64) -> Result<Vec<Logged<'_>>, String> {
        bodies(log, MAGIC_APPENDS, generation)
            .into_iter()
            .map(|(at, body)| {
                parse_appends(body)
                    .ok_or_else(|| format!("a write-ahead record at byte {at} is unreadable"))
            })
            .collect()
    }

    /// How many bytes of zeros a file of format 6 holds at least after its last record: the
    /// writer extends a file by `WAL_ZEROS_AHEAD` once fewer than half of it are left, and makes
    /// the extension durable before it writes a record there.
    pub const ZEROS_AFTER: usize = 512 * 1024;

    /// The unit a disk writes whole or not at all.
    const SECTOR: usize = 512;

    /// What an emptied file holds: this many bytes of zeros (a file of fewer was cut short).
    pub const EMPTIED: usize = SECTOR;

    /// In format 6 a file's records start after its first sector, the *seal*: written after
    /// each batch is durable (and made durable by the next batch's `fdatasync`), it says how far
    /// the durable records reach, so that damage which turns the end of the records into zeros
    /// is not taken for a write cut short. `magic (u32) | generation (u64) | end (u64): the byte where the durable
    /// records end | last (u64): their last position | checksum (u64)`, then zeros. A disk
    /// writes the sector whole or not at all; all zeros, it claims nothing.
    pub const RECORDS_START: usize = SECTOR;

    const SEAL_MAGIC: u32 = 0x4250_5753; // "BPWS"

    /// The seal of `generation` whose durable records end at `end`, through position `last`.
    pub fn seal_sector(generation: u64, end: u64, last: u64) -> [u8; SECTOR] {
        let mut sector = [0u8; SECTOR];
        sector[..4].copy_from_slice(&SEAL_MAGIC.to_be_bytes());
        sector[4..12].copy_from_slice(&generation.to_be_bytes());
        sector[12..20].copy_from_slice(&end.to_be_bytes());
        sector[20..28].copy_from_slice(&last.to_be_bytes());
        let sum = checksum(&sector[..28]);
        sector[28..36].copy_from_slice(&sum.to_be_bytes());
        sector
    }

    /// A file's seal: `(generation, end, last)`, `None` if its sector is zeros.
    fn read_seal(log: &[u8]) -> Result<Option<(u64, usize, u64)>, String> {
        let Some(sector) = log.get(..SECTOR) else {
            return Ok(None);
        };
        if sector.iter().all(|byte| *byte == 0) {
            return Ok(None);
        }
        let whole = u32_at(sector, 0) == Some(SEAL_MAGIC as usize)
            && u64_at(sector, 28) == Some(checksum(&sector[..28]))
            && sector[36..].iter().all(|byte| *byte == 0);
        if !whole {
            return Err("its seal (the first sector, which says how far its durable records reach) is damaged".into());
        }
        match (u64_at(sector, 4), u64_at(sector, 12), u64_at(sector, 20)) {
            (Some(generation), Some(end), Some(last)) => Ok(Some((generation, end as usize, last))),
            _ => Err("its seal is unreadable".into()),
        }
    }

    /// What is read of one write-ahead file.
    pub struct Scanned<'a> {
        /// The whole batches, in order.
        pub batches: Vec<Logged<'a>>,
        /// Where the whole records end.
        pub end: usize,
        /// Something follows them: a write a crash cut short (never acknowledged) or what an
        /// earlier generation of the file left.
        pub torn: bool,
    }

    /// Damage found in a write-ahead file: the byte where it starts, what it is, and the
    /// positions of the whole records found beyond it (which a store that stopped there would
    /// silently lose).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Damage {
        pub at: usize,
        pub detail: String,
        /// The last position of the whole records before the damage, if any.
        pub through: Option<u64>,
        pub beyond: Option<(u64, u64)>,
    }

    /// How to read a file: `strict` for format 6, whose records start after the seal and are
    /// checked against it (format 5's start at byte 0 and are read up to the first one that is
    /// not whole and of its generation).
    #[derive(Debug, Clone, Copy)]
    pub struct Rules {
        pub strict: bool,
    }

    /// The header at `at`, if whole and of the appends' kind and within the file: the body.
    fn body_at(log: &[u8], at: usize) -> Option<(&[u8], u64)> {
        if u32_at(log, at)? != MAGIC_APPENDS as usize {
            return None;
        }
        let size = u32_at(log, at + 4)?;
        let sum = u64_at(log, at + 8)?;
        let body = log.get(at + HEADER..(at + HEADER).checked_add(size)?)?;
        Some((body, sum))
    }

    /// A whole record of `generation` at `at`: its body.
    fn whole_at(log: &[u8], at: usize, generation: u64) -> Option<&[u8]> {
        let (body, sum) = body_at(log, at)?;
        (u64_at(body, 0) == Some(generation) && checksum(body) == sum).then_some(body)
    }

    /// The first whole record of `generation` that starts after `from`, with where it starts.
    fn next_whole(log: &[u8], from: usize, generation: u64) -> Option<(usize, &[u8])> {
        let magic = MAGIC_APPENDS.to_be_bytes();
        let mut at = from;
        while at + HEADER <= log.len() {
            let found = log[at..].windows(4).position(|window| window == magic)?;
            at += found;
            if let Some(body) = whole_at(log, at, generation) {
                return Some((at, body));
            }
            at += 1;
        }
        None
    }

    /// Reads the records of `generation` where records start in `log`, and checks that the
    /// file is what writing and crashes leave. After the records there may be a write a crash
    /// cut short, or what earlier generations of the file left; anything else is damage, and
    /// reading on past it would silently lose acknowledged appends: a whole record of the
    /// generation further on, records short of what the seal says were durable, a record or a
    /// seal of another parity or a later generation (files swapped or replaced), a file that
    /// ends right after its records or is cut to nothing.
    pub fn scan(log: &[u8], generation: u64, rules: Rules) -> Result<Scanned<'_>, Damage> {
        let mut batches: Vec<Logged<'_>> = Vec::new();
        let start = if rules.strict { RECORDS_START } else { 0 };
        let mut at = start;
        let mut unreadable = None;
        while let Some(body) = whole_at(log, at, generation) {
            let Some(logged) = parse_appends(body) else {
                unreadable = Some(Damage {
                    at,
                    detail: "a record whose checksum holds cannot be read".into(),
                    through: None,
                    beyond: None,
                });
                break;
            };
            batches.push(logged);
            at += HEADER + body.len();
        }
        let checked = match unreadable {
            Some(damage) => Err(damage),
            None => check(log, at, generation, rules),
        };
        match checked {
            Ok(torn) => Ok(Scanned {
                batches,
                end: at,
                torn,
            }),
            Err(damage) => Err(Damage {
                through: batches.last().map(|batch| batch.last),
                ..damage
            }),
        }
    }

    /// What one write-ahead file holds, read on its own (no sled, no marker): for `store
    /// check`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FileState {
        /// The generation of the records at its start, if a whole one starts it.
        pub generation: Option<u64>,
        /// How many whole records, and the positions they hold.
        pub records: usize,
        pub positions: Option<(u64, u64)>,
        /// Something follows them (a write cut short, or an earlier generation's leftovers).
        pub torn: bool,
        /// What is wrong in it, if anything.
        pub damage: Option<Damage>,
    }

    /// Reads a write-ahead file of format 6 on its own.
    pub fn describe(log: &[u8]) -> FileState {
        let generation = body_at(log, RECORDS_START)
            .filter(|(body, sum)| checksum(body) == *sum)
            .and_then(|(body, _)| u64_at(body, 0))
            .or_else(|| {
                read_seal(log)
                    .ok()
                    .flatten()
                    .map(|(generation, _, _)| generation)
            });
        let rules = Rules { strict: true };
        let mut at = RECORDS_START;
        let mut records = 0;
        let mut positions: Option<(u64, u64)> = None;
        if let Some(generation) = generation {
            while let Some(body) = whole_at(log, at, generation) {
                let first = u64_at(body, 8).unwrap_or(0);
                let last = u64_at(body, 16).unwrap_or(0);
                positions = Some((positions.map_or(first, |(first, _)| first), last));
                records += 1;
                at += HEADER + body.len();
            }
        }
        let checked = match generation {
            Some(generation) => check(log, at, generation, rules),
            // No record and no seal: zeros, or damage.
            None => check(log, at, u64::MAX, rules),
        };
        FileState {
            generation,
            records,
            positions,
            torn: checked == Ok(true),
            damage: checked.err(),
        }
    }

    /// Checks the file around its whole records of `generation`, which end at `end`: its
    /// length, its seal (the records reach at least as far as it says durable records did),
    /// and what follows them. `true` if something follows them.
    fn check(log: &[u8], end: usize, generation: u64, rules: Rules) -> Result<bool, Damage> {
        let damage = |at: usize, detail: String| Damage {
            at,
            detail,
            through: None,
            beyond: None,
        };
        if !rules.strict {
            return after_records(log, end, generation, None, rules);
        }
        if log.len() < EMPTIED {
            return Err(damage(
                log.len(),
                format!(
                    "the file holds {} bytes, where an emptied one keeps {EMPTIED}: it was cut short or made anew",
                    log.len()
                ),
            ));
        }
        let durable = match read_seal(log).map_err(|detail| damage(0, detail))? {
            // Emptied files are one sector long, and a generation's seal is on disk before
            // its file grows.
            None if log.len() > EMPTIED => {
                return Err(damage(
                    0,
                    format!(
                        "its seal is zeros, though the file holds {} bytes, where an emptied one keeps {EMPTIED}: zeros were written over it",
                        log.len()
                    ),
                ))
            }
            None => None,
            Some((sealed, durable, last)) if sealed == generation => Some((durable, last)),
            // An earlier generation's seal, in a file not yet sealed in this one: it claims
            // nothing of this generation.
            Some((sealed, _, _)) if sealed < generation && sealed % 2 == generation % 2 => None,
            Some((sealed, _, _)) => {
                return Err(damage(
                    0,
                    format!("its seal names generation {sealed} where generation {generation}'s belong: the file was replaced or swapped"),
                ))
            }
        };
        let torn = after_records(log, end, generation, durable.map(|(at, _)| at), rules)?;
        match durable {
            Some((durable, last)) if end < durable => Err(damage(
                end,
                format!(
                    "its records end at byte {end}, but its seal says records through byte {durable} (events through {last}) were made durable: they were damaged or cut away"
                ),
            )),
            _ => Ok(torn),
        }
    }

    /// Checks what follows the whole records, which end at `end`: `true` if it is a write cut
    /// short, `false` if nothing; `Err` if it is damage.
    fn after_records(
        log: &[u8],
        end: usize,
        generation: u64,
        durable: Option<usize>,
        rules: Rules,
    ) -> Result<bool, Damage> {
        let damage = |at: usize, detail: String| Damage {
            at,
            detail,
            through: None,
            beyond: None,
        };
        let rest = log.get(end..).unwrap_or_default();
        // A whole record of the generation further on was acknowledged, unless it lies past
        // what the seal says is durable: then it belongs to the last write, which a crash may
        // have kept in part and in any order, and which nobody was told of.
        let acknowledged = |found: usize| durable.is_none_or(|durable| found < durable);
        if let Some((found, body)) =
            next_whole(log, end, generation).filter(|(found, _)| acknowledged(*found))
        {
            let first = u64_at(body, 8).unwrap_or(0);
            let mut last = u64_at(body, 16).unwrap_or(0);
            let mut next = found + HEADER + body.len();
            while let Some(body) = whole_at(log, next, generation) {
                last = u64_at(body, 16).unwrap_or(last);
                next += HEADER + body.len();
            }
            return Err(Damage {
                at: end,
                detail: format!(
                    "the record at byte {end} is damaged, and whole records follow it from byte {found}"
                ),
                through: None,
                beyond: Some((first, last)),
            });
        }
        let zeros = rest.iter().all(|byte| *byte == 0);
        if !rules.strict {
            // Format 5: what follows may be what an earlier generation left.
            return Ok(!zeros);
        }
        if end > RECORDS_START && log.len() < end + ZEROS_AFTER {
            return Err(damage(
                end,
                format!(
                    "the file ends at byte {}, {} bytes after its last whole record, where a written file keeps at least {ZEROS_AFTER} bytes of zeros: it was cut short",
                    log.len(),
                    log.len() - end
                ),
            ));
        }
        if zeros {
            return Ok(false);
        }
        // A file is written again, generation after generation of its parity, without being
        // emptied: what follows the records is a write cut short or what an earlier generation
        // of the file left. A record of another parity, or of a later generation, is not.
        let mut at = end;
        while let Some((found, body)) = next_any(log, at) {
            let other = u64_at(body, 0).unwrap_or(0);
            if other % 2 != generation % 2 || other > generation {
                return Err(damage(
                    found,
                    format!(
                        "byte {found} holds a record of generation {other} where generation {generation}'s and earlier ones of its file belong: the file was replaced or swapped"
                    ),
                ));
            }
            at = found + HEADER + body.len();
        }
        Ok(true)
    }

    /// The first whole record of any generation that starts at or after `from`.
    fn next_any(log: &[u8], from: usize) -> Option<(usize, &[u8])> {
        let magic = MAGIC_APPENDS.to_be_bytes();
        let mut at = from;
        while at + HEADER <= log.len() {
            let found = log[at..].windows(4).position(|window| window == magic)?;
            at += found;
            if let Some((body, sum)) = body_at(log, at) {
                if checksum(body) == sum {
                    return Some((at, body));
                }
            }
            at += 1;
        }
        None
    }
}

/// The write-ahead log as the flusher keeps it: two files, the current generation's written
/// from its start.
struct WalWriter {
    /// The store's directory, to name a file that failed.
    directory: PathBuf,
    files: [Arc<File>; 2],
    /// Each file's length: zeros after the last record.
    allocated: [u64; 2],
    generation: u64,
    /// Where the next record goes in the current generation's file: where the records made
    /// durable end (what the next seal says).
    offset: u64,
    /// The last position those records hold (0 if none).
    last: u64,
}

/// How far ahead of the last record the log is kept filled with zeros.
const WAL_ZEROS_AHEAD: u64 = 1024 * 1024;

impl WalWriter {
    fn slot(&self) -> usize {
        (self.generation % 2) as usize
    }

    /// The current generation's file.
    fn file(&self) -> &Arc<File> {
        &self.files[self.slot()]
    }

    /// Writes `record` (which ends at position `last`) after the records before it.
    fn append(&mut self, record: &[u8], last: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let slot = self.slot();
        if self.offset == wal::RECORDS_START as u64 {
            // The generation's first records: its seal (claiming none yet) is durable before
            // the file grows, so that a file longer than one sector always has a seal.
            self.seal()?;
            crate::fault::check("wal.sync")?;
            self.files[slot].sync_data()?;
        }
        let end = self.offset + record.len() as u64;
        if end + WAL_ZEROS_AHEAD / 2 > self.allocated[slot] {
            // Once per half megabyte, made durable before a record goes there: a record never
            // ends beyond the file's durable length, and a file that ends less than
            // `wal::ZEROS_AFTER` after its last record was cut short.
            let zeros = vec![0u8; (end + WAL_ZEROS_AHEAD - self.allocated[slot]) as usize];
            crate::fault::check("wal.write")?;
            self.files[slot].write_all_at(&zeros, self.allocated[slot])?;
            crate::fault::check("wal.sync")?;
            self.files[slot].sync_data()?;
            self.allocated[slot] += zeros.len() as u64;
        }
        crate::fault::check("wal.write")?;
        self.files[slot].write_all_at(record, self.offset)?;
        self.offset = end;
        self.last = last;
        Ok(())
    }

    /// Once what was appended is durable, says so in the file's seal, before the appenders are
    /// told: written after the sync, the seal never claims more than is durable, whenever a
    /// crash comes; a killed process leaves it as written (the next sync makes it durable),
    /// so that damage to the last records a killed daemon acknowledged is found.
    fn seal(&self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let seal = wal::seal_sector(self.generation, self.offset, self.last);
        crate::fault::check("wal.write")?;
        self.file().write_all_at(&seal, 0)
    }

    /// Makes what was appended durable.
    fn sync(&self) -> std::io::Result<()> {
        crate::fault::check("wal.sync")?;
        self.file().sync_data()
    }

    /// Starts writing `generation` from the start of its file.
    fn start_generation(&mut self, generation: u64) {
        self.generation = generation;
        self.offset = wal::RECORDS_START as u64;
        self.last = 0;
    }

    /// Empties both files: everything they held is durable in sled.
    fn empty_both(&mut self) -> std::io::Result<()> {
        for file in &self.files {
            empty(file)?;
        }
        self.allocated = [wal::EMPTIED as u64; 2];
        Ok(())
    }
}

/// Empties a write-ahead file, durably: it becomes `wal::EMPTIED` bytes of zeros, so that a
/// file cut to nothing is told from an emptied one. Its first sector is zeroed before it is cut,
/// so that a crash in between leaves what a torn write would.
fn empty(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    // Cut first, then the seal zeroed: a zero seal is only ever found on a file of one sector
    // (a longer one had zeros written over it: damage). A crash in between leaves one sector
    // with an earlier generation's seal, which claims nothing of the generations to come.
    crate::fault::check("wal.write")?;
    file.set_len(wal::EMPTIED as u64)?;
    crate::fault::check("wal.sync")?;
    file.sync_all()?;
    crate::fault::check("wal.write")?;
    file.write_all_at(&[0; wal::EMPTIED], 0)?;
    crate::fault::check("wal.sync")?;
    file.sync_all()
}

/// Start a checkpoint once the write-ahead log holds this many bytes...
const CHECKPOINT_WAL_BYTES: u64 = 16 * 1024 * 1024;
/// ... or this many events, by default (`StoreOptions::checkpoint_events`).
pub const DEFAULT_CHECKPOINT_EVENTS: usize = 50_000;

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What makes sled durable: sled, its file, and which blob files are already synced.
struct Syncer {
    db: sled::Db,
    db_file: File,
    blobs: PathBuf,
    synced_blobs: HashSet<OsString>,
}

impl Syncer {
    /// Makes everything applied to sled durable: `Db::flush`, `fdatasync` of its file, `fsync`
    /// of new blob files (sled's own flush uses `sync_file_range`, which flushes neither the
    /// disk's cache nor file metadata, and it writes blob files without any sync).
    fn sync(&mut self) -> std::io::Result<()> {
        crate::fault::check("sled.flush")?;
        self.db.flush().map_err(std::io::Error::other)?;
        self.db_file.sync_data()?;
        sync_new_blobs(&self.blobs, &mut self.synced_blobs)
    }
}

/// Writes the tail into `batch` as sled keeps events: chunks of up to `CHUNK_TARGET_BYTES`,
/// and per stream one index entry (split every `STREAM_ENTRY_POSITIONS`).
/// Appends the tail's events to the segment files re-chunked (not yet durable) and names the
/// chunks in `batch`, with the tail's stream-index entries.
fn tail_into(tail: &Tail, segments: &Segments, batch: &mut sled::Batch) -> std::io::Result<()> {
    let mut first = tail.first;
    let mut records: Vec<&[u8]> = Vec::new();
    let mut bytes = 0;
    let mut store = |first: u64, records: &[&[u8]]| -> std::io::Result<()> {
        let locator = segments.append(first, &layout::chunk_of(records))?;
        batch.insert(&layout::chunk_key(first), &locator.to_bytes());
        Ok(())
    };
    for (offset, record) in tail.records.iter().enumerate() {
        if !records.is_empty() && bytes + record.len() + 4 > CHUNK_TARGET_BYTES {
            store(first, &records)?;
            first = tail.first + offset as u64;
            records.clear();
            bytes = 0;
        }
        records.push(record);
        bytes += record.len() + 4;
    }
    if !records.is_empty() {
        store(first, &records)?;
    }
    batch.insert(layout::SEGMENTS_END_KEY, &segments.end().to_bytes());
    for (stream, entry) in &tail.streams {
        for (piece, positions) in entry.positions.chunks(STREAM_ENTRY_POSITIONS).enumerate() {
            let mut value = Vec::with_capacity(positions.len() * 8);
            for position in positions {
                value.extend_from_slice(&position.to_be_bytes());
            }
            let first_version = entry.first_version + (piece * STREAM_ENTRY_POSITIONS) as u64;
            batch.insert(layout::stream_index_key(stream, first_version), value);
        }
    }
    Ok(())
}

/// A chunk being filled: its first position, its records, and per stream the first version and
/// positions of that stream's events in it.
#[derive(Default)]
struct ChunkBuilder {
    first: u64,
    records: Vec<Vec<u8>>,
    bytes: usize,
    streams: Vec<(StreamId, u64, Vec<u64>)>,
}

impl ChunkBuilder {
    /// Appends the chunk to the segment files (not yet durable) and gives the pairs that name
    /// it and index its streams.
    fn finish(
        self,
        segments: &Segments,
        pairs: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> std::io::Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let records: Vec<&[u8]> = self.records.iter().map(Vec::as_slice).collect();
        let locator = segments.append(self.first, &layout::chunk_of(&records))?;
        pairs.push((
            layout::chunk_key(self.first).to_vec(),
            locator.to_bytes().to_vec(),
        ));
        for (stream, first_version, positions) in self.streams {
            let mut value = Vec::with_capacity(positions.len() * 8);
            for position in positions {
                value.extend_from_slice(&position.to_be_bytes());
            }
            pairs.push((layout::stream_index_key(&stream, first_version), value));
        }
        Ok(())
    }
}

/// The outcome a command id recorded, if any, and the tails' epoch it was looked up at: in the
/// tails (since the last checkpoint) or in the command index. The tails are looked at first: a
/// checkpoint installs its run in the index before it lets its frozen tail go, so a command is
/// always in one of the two.
fn known_command(
    log: &sled::Tree,
    tails: &RwLock<Tails>,
    index: &RwLock<CommandIndex>,
    command: &CommandId,
) -> StoreResult<(u64, Option<AppendOutcome>)> {
    let (epoch, found) = {
        let tails = read(tails);
        (tails.epoch, tails.command(command))
    };
    match found {
        Some(outcome) => Ok((epoch, Some(outcome))),
        None => Ok((epoch, read(index).lookup(log, command)?)),
    }
}

/// The one thread that writes the log: takes the appends laid out since it last looked, writes
/// them to the write-ahead log, `fdatasync`s it and acknowledges them; while it does, the
/// appenders lay out the next ones (group commit). It also starts checkpoints: when the tail has
/// grown enough it freezes it, goes on in the other write-ahead file under the next generation,
/// and hands the frozen tail to the checkpointer.
struct Flusher {
    sequencing: Arc<Sequencing>,
    durable: Arc<watch::Sender<Durable>>,
    tails: Arc<RwLock<Tails>>,
    wal: WalWriter,
    sync: SyncMode,
    checkpoint_events: usize,
    /// Hands frozen tails to the checkpointer.
    checkpoints: mpsc::Sender<CheckpointJob>,
    /// The checkpointer's answers, one per job.
    checkpointed: mpsc::Receiver<StoreResult<()>>,
    /// A job was handed over and its answer not yet read.
    checkpointing: bool,
    /// The bytes last written, kept to be filled again.
    spare: Vec<u8>,
}

/// The flusher keeps the buffer it last wrote, to be filled again, up to this size.
const SPARE_BYTES: usize = 1024 * 1024;

/// What the flusher takes from the appenders at once.
struct Taken {
    records: Vec<u8>,
    pending: Vec<Pending>,
    head: Position,
    /// The tail frozen with these appends, if a checkpoint starts after them.
    frozen: Option<Arc<Tail>>,
}

impl Flusher {
    fn run(mut self) {
        let _unwinding = FailIfUnwinding {
            sequencing: self.sequencing.clone(),
            durable: self.durable.clone(),
        };
        while let Some(taken) = self.take() {
            if !self.write(taken) {
                return;
            }
        }
        // Closing: the tail goes into sled, so that a closed store is whole in sled alone.
        if self.sequencing.lock().failure.is_none() {
            match self.checkpoint_now() {
                // A closed store is whole in sled, and its files empty: they hold at most the
                // generation two before (`recover`) only while a store is open.
                Ok(()) => {
                    if let Err(error) = self.wal.empty_both() {
                        tracing::error!(%error, "emptying the write-ahead files after the last checkpoint failed; they are read again at the next opening");
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "the last checkpoint failed; the write-ahead log will be replayed");
                }
            }
        }
    }

    /// Waits for appends and takes them; `None` once the store closes with none left, or has
    /// failed.
    fn take(&mut self) -> Option<Taken> {
        // A checkpoint that lags far behind holds the appenders back rather than let the tail
        // grow without bound.
        if self.checkpointing && self.tail_overgrown() {
            if let Err(error) = self.finish_checkpoint() {
                self.fail(detail_of(error), Vec::new());
                return None;
            }
        }
        let sequencing = self.sequencing.clone();
        let mut sequencer = sequencing.lock();
        while sequencer.pending.is_empty() && !sequencer.closing && sequencer.failure.is_none() {
            sequencer.flusher_waiting = true;
            sequencer = sequencing
                .wake
                .wait(sequencer)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        sequencer.flusher_waiting = false;
        if sequencer.pending.is_empty() || sequencer.failure.is_some() {
            return None;
        }
        let generation = sequencer.generation;
        let records = sequencer
            .filling
            .take(generation, std::mem::take(&mut self.spare));
        let pending = std::mem::take(&mut sequencer.pending);
        let head = sequencer.head.position;
        let frozen = match self.checkpoint_due(records.len()) {
            Ok(true) => {
                // The appends laid out from now on belong to the next generation.
                sequencer.generation += 1;
                Some(self.freeze(head))
            }
            Ok(false) => None,
            Err(error) => {
                drop(sequencer);
                self.fail(detail_of(error), pending);
                return None;
            }
        };
        Some(Taken {
            records,
            pending,
            head,
            frozen,
        })
    }

    /// Whether the tail has grown to twice what starts a checkpoint.
    fn tail_overgrown(&self) -> bool {
        let tails = read(&self.tails);
        tails.current.records.len() >= 2 * self.checkpoint_events
            || tails.current.bytes as u64 >= 2 * CHECKPOINT_WAL_BYTES
    }

    /// Whether a checkpoint starts after the appends being taken: the tail or the log is large
    /// enough, and the checkpoint before is finished (its generation's file is the one written
    /// next).
    fn checkpoint_due(&mut self, taking: usize) -> StoreResult<bool> {
        let full = read(&self.tails).current.records.len() >= self.checkpoint_events
            || self.wal.offset + taking as u64 >= CHECKPOINT_WAL_BYTES;
        if !full {
            return Ok(false);
        }
        if self.checkpointing {
            match self.checkpointed.try_recv() {
                Ok(result) => {
                    self.checkpointing = false;
                    result?;
                }
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(StoreError::Io("the checkpointer stopped".into()))
                }
            }
        }
        Ok(true)
    }

    /// Freezes the tail, which holds every event through `head`, and starts a new one.
    fn freeze(&self, head: Position) -> Arc<Tail> {
        let mut tails = write(&self.tails);
        let frozen = Arc::new(std::mem::replace(
            &mut tails.current,
            Tail::starting_at(head.0 + 1),
        ));
        tails.frozen = Some(frozen.clone());
        tails.epoch += 1;
        frozen
    }

    /// Writes what was taken, makes it durable and acknowledges it; then hands the frozen tail,
    /// if any, to the checkpointer. `false` if that failed: the store takes no more appends.
    fn write(&mut self, taken: Taken) -> bool {
        let Taken {
            records,
            pending,
            head,
            frozen,
        } = taken;
        let written = self
            .wal
            .append(&records, head.0)
            .and_then(|()| match self.sync {
                SyncMode::Durable => self.wal.sync(),
                SyncMode::NoSync => Ok(()),
            })
            .and_then(|()| self.wal.seal());
        if let Err(error) = written {
            let path = self.wal.directory.join(wal::file_of(self.wal.generation));
            self.fail(format!("writing {}: {error}", path.display()), pending);
            return false;
        }
        if records.capacity() <= SPARE_BYTES {
            self.spare = records;
        }
        // Readers first, so that an acknowledged appender finds its events in `read_all`.
        self.durable.send_modify(|durable| {
            if durable.position < head {
                durable.position = head;
            }
        });
        for pending in pending {
            let _ = pending.reply.send(Ok(pending.outcome));
        }
        if let Some(frozen) = frozen {
            // This generation's records are whole on disk (synced above) before the next
            // generation's first one is written: recovery reads the next only after the whole
            // of this one.
            if let Err(error) = self.start_checkpoint(frozen, head) {
                self.fail(detail_of(error), Vec::new());
                return false;
            }
        }
        true
    }

    /// Goes on under the next generation in the other file and hands `frozen` to the
    /// checkpointer.
    fn start_checkpoint(&mut self, frozen: Arc<Tail>, head: Position) -> StoreResult<()> {
        let generation = self.wal.generation + 1;
        self.wal.start_generation(generation);
        self.checkpoints
            .send(CheckpointJob {
                frozen,
                generation,
                head: head.0,
            })
            .map_err(|_| StoreError::Io("the checkpointer stopped".into()))?;
        self.checkpointing = true;
        Ok(())
    }

    /// Waits for the checkpoint under way, if any, to finish.
    fn finish_checkpoint(&mut self) -> StoreResult<()> {
        if !self.checkpointing {
            return Ok(());
        }
        self.checkpointing = false;
        self.checkpointed
            .recv()
            .map_err(|_| StoreError::Io("the checkpointer stopped".into()))?
    }

    /// A whole checkpoint, waited for: at opening and closing, with no append in hand.
    fn checkpoint_now(&mut self) -> StoreResult<()> {
        self.finish_checkpoint()?;
        if self.sync == SyncMode::Durable {
            self.wal.sync().map_err(io_error)?;
        }
        let (head, frozen) = {
            let mut sequencer = self.sequencing.lock();
            sequencer.generation += 1;
            let head = sequencer.head.position;
            (head, self.freeze(head))
        };
        self.start_checkpoint(frozen, head)?;
        self.finish_checkpoint()
    }

    /// Records a failure: nothing taken, waiting or to come is acknowledged.
    fn fail(&self, error: String, taken: Vec<Pending>) {
        fail_store(&self.sequencing, &self.durable, error, taken);
    }
}

/// What went wrong, as a failure of the store says it (`StoreError::Io` words it).
fn detail_of(error: impl Into<StoreError>) -> String {
    match error.into() {
        StoreError::Io(detail) => detail,
        other => other.to_string(),
    }
}

/// Records a failure of the store: the appends `taken`, those laid out and waiting and any to
/// come are answered with it, never acknowledged; readers see it too.
fn fail_store(
    sequencing: &Sequencing,
    durable: &watch::Sender<Durable>,
    error: String,
    taken: Vec<Pending>,
) {
    tracing::error!(%error, "making the event store durable failed; no further append is acknowledged");
    let waiting = {
        let mut sequencer = sequencing.lock();
        if sequencer.failure.is_none() {
            sequencer.failure = Some(error.clone());
        }
        std::mem::take(&mut sequencer.pending)
    };
    durable.send_modify(|durable| {
        if durable.failure.is_none() {
            durable.failure = Some(error.clone());
        }
    });
    for pending in taken.into_iter().chain(waiting) {
        let _ = pending.reply.send(Err(StoreError::Io(error.clone())));
    }
}

/// Fails the store if the flusher unwinds from a panic, so that no appender waits for it
/// forever.
struct FailIfUnwinding {
    sequencing: Arc<Sequencing>,
    durable: Arc<watch::Sender<Durable>>,
}

impl Drop for FailIfUnwinding {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fail_store(
                &self.sequencing,
                &self.durable,
                "the event store's flusher stopped".into(),
                Vec::new(),
            );
        }
    }
}

/// A frozen tail to write into sled, with the generation and position of its marker.
struct CheckpointJob {
    frozen: Arc<Tail>,
    generation: u64,
    head: u64,
}

/// Writes frozen tails into sled, beside the flusher.
struct Checkpointer {
    log: sled::Tree,
    segments: Arc<Segments>,
    directory: PathBuf,
    poisoned: Poisoned,
    tails: Arc<RwLock<Tails>>,
    index: Arc<RwLock<CommandIndex>>,
    syncer: Syncer,
    jobs: mpsc::Receiver<CheckpointJob>,
    done: mpsc::Sender<StoreResult<()>>,
}

impl Checkpointer {
    fn run(mut self) {
        while let Ok(job) = self.jobs.recv() {
            // sled fails badly on a full disk (a batch half applied, a flush that never
            // returns): a checkpoint that may not fit is not started, sled is left untouched,
            // and the write-ahead log keeps it all.
            let result = match room(&self.directory, checkpoint_room(job.frozen.bytes as u64)) {
                Err(error) => Err(io_error(error)),
                Ok(()) => {
                    let result = self.checkpoint(job);
                    if result.is_err() {
                        // sled may hold part of the batch, or be stuck: never call it again
                        // here.
                        self.poisoned.set(&self.syncer.db);
                    }
                    result
                }
            };
            if self.done.send(result).is_err() {
                return;
            }
        }
    }

    /// Writes the frozen tail into sled (its events re-chunked, one stream-index entry per
    /// stream, its commands as a run of the index, and the marker of the log's next
    /// generation) in one atomic `apply_batch`; installs the index; lets the frozen tail go;
    /// makes sled durable. Until then the frozen tail's generation's file is kept.
    fn checkpoint(&mut self, job: CheckpointJob) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        tail_into(&job.frozen, &self.segments, &mut batch).map_err(io_error)?;
        let entries = job
            .frozen
            .commands
            .iter()
            .map(|(command, outcome)| commands::entry(command, outcome))
            .collect();
        let change = read(&self.index).add(&self.log, job.frozen.first, entries, &mut batch)?;
        // Two steps, each made durable: the events, streams and the new run of commands, then
        // the marker. sled applies a batch whole only when nothing fails while applying it;
        // with the marker last, whatever a failure leaves of the first step lies beyond the
        // marker, all of it in the write-ahead log still, and opening removes it
        // (`remove_after`). The runs merged away go only once the marker, which names them,
        // is durable. The chunks' frames are durable before sled names them.
        self.segments.sync().map_err(io_error)?;
        self.log.apply_batch(batch).map_err(sled_error)?;
        self.syncer.sync().map_err(io_error)?;
        let merged_ids: Vec<u64> = change.merged_ids().collect();
        self.log
            .insert(
                layout::CHECKPOINT_KEY,
                wal::marker_merging(job.generation, job.head, &merged_ids),
            )
            .map_err(sled_error)?;
        self.syncer.sync().map_err(io_error)?;
        let merged = write(&self.index).install(change);
        {
            // Only after sled and the index hold it all (see `Tails`).
            let mut tails = write(&self.tails);
            if tails
                .frozen
                .as_ref()
                .is_some_and(|frozen| Arc::ptr_eq(frozen, &job.frozen))
            {
                tails.frozen = None;
            }
        }
        // Durable with the next checkpoint; until then the marker names them.
        commands::remove_merged(&self.log, &merged)
    }
}

/// Before sled opens the directory: it writes there at once (the rest of its last segment, a
/// snapshot), and a full disk leaves it stuck or its files unreadable, so it opens only with
/// room for that and for the checkpoint of what the write-ahead files hold; and a snapshot
/// sled began and never finished (`snap.*.generating`, which it would read as its newest and
/// call damaged) is removed: sled renames a snapshot into place only once it is whole, so such
/// a file never holds anything the older snapshot and sled's log do not.
fn prepare_for_sled(directory: &Path) -> StoreResult<()> {
    // Only while holding sled's lock (an `flock` of its database file, as sled takes it): an
    // unfinished snapshot may be one that another process is writing. The lock is let go
    // before sled takes it; a process that takes it in between finds nothing removed of its own.
    let _held = match File::open(directory.join("db")) {
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(format!(
                    "{} is held by another process",
                    directory.join("db").display()
                )))
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io_error(error)),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error(error)),
    };
    let gone = |error: &std::io::Error| error.kind() == std::io::ErrorKind::NotFound;
    let mut logged = 0;
    let mut removed = false;
    for entry in std::fs::read_dir(directory).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("battleplan") && name.ends_with(".wal") {
            match entry.metadata() {
                Ok(metadata) => logged += metadata.len(),
                Err(error) if gone(&error) => {}
                Err(error) => return Err(io_error(error)),
            }
        } else if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed = true,
                Err(error) if gone(&error) => {}
                Err(error) => return Err(io_error(error)),
            }
        }
    }
    if removed {
        sync_directory(directory)?;
    }
    room(directory, checkpoint_room(logged)).map_err(io_error)
}

/// What sled may need on disk to take a checkpoint of `bytes` of records: its pages written
/// again (twice, with the blobs of large leaves), a snapshot, a few segments.
fn checkpoint_room(bytes: u64) -> u64 {
    2 * bytes + 8 * 1024 * 1024
}

/// Fails, naming the disk and the figures, if the file system holding `directory` has less than
/// `needed` bytes free for this user.
fn room(directory: &Path, needed: u64) -> std::io::Result<()> {
    let stats = rustix::fs::statvfs(directory).map_err(std::io::Error::from)?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < needed {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "{} KiB are free on the disk and the store's database needs about {} KiB to go on",
                free / 1024,
                needed / 1024
            ),
        ));
    }
    Ok(())
}

/// How sled holds the log's chunks: itself, under `E` keys (formats 3 to 6: read only to recover
/// and upgrade such a store), or in the segment files, naming each under an `L` key.
#[derive(Clone, Copy)]
enum Chunks<'a> {
    Inline,
    Located(&'a Segments),
}

impl Chunks<'_> {
    fn prefix(self) -> u8 {
        match self {
            Chunks::Inline => layout::EVENTS,
            Chunks::Located(_) => layout::LOCATED,
        }
    }

    /// The chunk stored at the entry `value` of the chunk starting at `first`, opened.
    fn open(self, first: u64, value: &[u8]) -> StoreResult<layout::Chunk> {
        let read;
        let stored = match self {
            Chunks::Inline => value,
            Chunks::Located(segments) => {
                read = read_chunk(segments, first, value)?;
                &read[..]
            }
        };
        layout::open_chunk(stored).ok_or_else(|| corrupt(Position(first), "a chunk is damaged"))
    }
}

/// The stored chunk (compressed) that sled's entry `locator` names.
fn read_chunk(segments: &Segments, first: u64, locator: &[u8]) -> StoreResult<Vec<u8>> {
    segments.read(first, locator).map_err(|error| match error {
        segments::ReadError::Damaged(detail) => corrupt(Position(first), detail),
        segments::ReadError::Io(detail) => StoreError::Io(detail),
    })
}

/// Moves the chunks of a store of format 6 or older out of sled into the segment files, a few
/// hundred at a time: each batch's frames are durable before one sled batch names them and
/// removes the chunks. Cut short, it goes on where it stopped when the store opens again (the
/// format marker says 7 only once every chunk is moved).
fn move_chunks(log: &sled::Tree, segments: &Segments, syncer: &mut Syncer) -> StoreResult<()> {
    const AT_ONCE: usize = 256;
    settle_segments(log, segments)?;
    loop {
        // A few at a time, each range dropped before the next (see `ChunkWalk`).
        let moving: Vec<(sled::IVec, sled::IVec)> = log
            .scan_prefix([layout::EVENTS])
            .take(AT_ONCE)
            .collect::<Result<_, _>>()
            .map_err(sled_error)?;
        if moving.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        for (key, chunk) in &moving {
            let first = u64_of(&key[1..])
                .ok_or_else(|| corrupt(Position::START, "an event key is not a position"))?;
            let locator = segments.append(first, chunk).map_err(io_error)?;
            batch.remove(key.clone());
            batch.insert(&layout::chunk_key(first), &locator.to_bytes());
        }
        batch.insert(layout::SEGMENTS_END_KEY, &segments.end().to_bytes());
        segments.sync().map_err(io_error)?;
        log.apply_batch(batch).map_err(sled_error)?;
    }
    syncer.sync().map_err(io_error)
}

/// Settles the segment files where sled says they end (`Segments::settle`); a file shorter than
/// that, or missing, is damage.
fn settle_segments(log: &sled::Tree, segments: &Segments) -> StoreResult<()> {
    segments.settle(segments_end(log)?).map_err(|error| {
        if error.kind() == std::io::ErrorKind::InvalidData {
            corrupt(Position::START, error.to_string())
        } else {
            io_error(format_args!("{}: {error}", segments.directory().display()))
        }
    })
}

/// Where the segment files end as far as sled knows: the furthest of its note of their end and
/// the end of the last chunk's frame (a batch is written in order, so the last chunk's frame is
/// its last; the note covers frames named under smaller keys, as `layout::Tamper` writes).
fn segments_end(log: &sled::Tree) -> StoreResult<Option<segments::End>> {
    let noted = match log.get(layout::SEGMENTS_END_KEY).map_err(sled_error)? {
        None => None,
        Some(value) => Some(segments::End::from_bytes(&value).ok_or_else(|| {
            corrupt(
                Position::START,
                "sled's note of where the log's files end is unreadable",
            )
        })?),
    };
    let last = match log
        .scan_prefix([layout::LOCATED])
        .next_back()
        .transpose()
        .map_err(sled_error)?
        .and_then(|(_, value)| segments::Locator::from_bytes(&value))
    {
        None => None,
        Some(locator) => Some(segments::End {
            segment: locator.segment,
            end: locator
                .offset
                .checked_add(segments::HEADER as u64 + u64::from(locator.length))
                .ok_or_else(|| {
                    corrupt(
                        Position::START,
                        "sled's entry for the last chunk is not a place in the log's files",
                    )
                })?,
        }),
    };
    Ok(match (noted, last) {
        (Some(noted), Some(last)) => Some(noted.max(last)),
        (noted, last) => noted.or(last),
    })
}

/// How a `ChunkWalk` finds the next chunk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The chunk at the position after the last one's records, or else the next key: what
    /// readers need, one `get` a chunk.
    Expected,
    /// The next key after the last one, whatever the last one held: what `verify` needs.
    EveryKey,
}

/// The stored chunks from `start` through `until`, one lookup each. sled 0.34's iterators keep
/// in memory every page they pass once they move on inside a page (spacejam/sled issues 1036
/// and 1410; a walk over the 1,000,000-customer log grew by 75 MiB a million events whatever
/// the cache's capacity), while a `get`, or a fresh iterator asked for one item, leaves the
/// page to sled's cache, which evicts it: reading the log this way stays within the cache.
struct ChunkWalk<'a> {
    log: &'a sled::Tree,
    /// The key after which the next chunk lies (`None` before the first).
    last: Option<sled::IVec>,
    /// Where the next chunk is expected to start, once the caller knows.
    expected: Option<u64>,
    start: u64,
    until: u64,
    walk: Walk,
}

impl<'a> ChunkWalk<'a> {
    fn new(log: &'a sled::Tree, start: u64, until: u64, walk: Walk) -> Self {
        ChunkWalk {
            log,
            last: None,
            expected: None,
            start,
            until,
            walk,
        }
    }

    /// Where the chunk after the last one returned should start: its first position plus its
    /// records.
    fn expect(&mut self, next: u64) {
        self.expected = Some(next);
    }

    fn next_chunk(&mut self) -> StoreResult<Option<(sled::IVec, sled::IVec)>> {
        use std::ops::Bound;
        if self.walk == Walk::Expected {
            if let Some(expected) = self.expected.take() {
                if expected > self.until {
                    return Ok(None);
                }
                let key = layout::chunk_key(expected);
                if let Some(chunk) = self.log.get(key).map_err(sled_error)? {
                    let key = sled::IVec::from(&key[..]);
                    self.last = Some(key.clone());
                    return Ok(Some((key, chunk)));
                }
            }
        }
        let high = Bound::Included(layout::chunk_key(self.until).to_vec());
        let low = match self.last.take() {
            Some(last) => Bound::Excluded(last.to_vec()),
            None => Bound::Included(layout::chunk_key(self.start).to_vec()),
        };
        // Asked for one item and dropped: see above.
        let found = self
            .log
            .range::<Vec<u8>, _>((low, high))
            .next()
            .transpose()
            .map_err(sled_error)?;
        if let Some((key, _)) = &found {
            self.last = Some(key.clone());
        }
        Ok(found)
    }
}

/// The log's head as stored: the last chunk's last record.
fn stored_head(log: &sled::Tree, chunks: Chunks<'_>) -> StoreResult<LogHead> {
    let Some((key, chunk)) = log
        .scan_prefix([chunks.prefix()])
        .next_back()
        .transpose()
        .map_err(sled_error)?
    else {
        return Ok(LogHead {
            position: Position::START,
            hash: GENESIS_HASH,
        });
    };
    let first = u64_of(&key[1..])
        .ok_or_else(|| corrupt(Position::START, "an event key is not a position"))?;
    let opened = chunks.open(first, &chunk)?;
    let records = opened
        .records()
        .ok_or_else(|| corrupt(Position(first), "a chunk's framing is damaged"))?;
    let last = records
        .last()
        .ok_or_else(|| corrupt(Position(first), "an empty chunk"))?;
    let raw = record::split(last).map_err(|error| corrupt(Position(first), error.to_string()))?;
    Ok(LogHead {
        position: Position(first + records.len() as u64 - 1),
        hash: raw.hash,
    })
}

/// Removes from sled the events after `end`, with their index entries: batches inserted after
/// the last checkpoint that the write-ahead log does not hold, so no appender was told of them.
/// A batch's chunks go into sled before its index entries, so whatever a crash left of such a
/// batch starts with a chunk, and the chunk names every index entry to remove.
fn remove_beyond(log: &sled::Tree, end: u64) -> StoreResult<()> {
    let tail: Vec<(sled::IVec, sled::IVec)> = log
        .range(layout::inline_chunk_key(end + 1)..=layout::inline_chunk_key(u64::MAX))
        .collect::<Result<_, _>>()
        .map_err(sled_error)?;
    for (key, chunk) in tail {
        let first = u64_of(&key[1..])
            .ok_or_else(|| corrupt(Position(end), "an event key is not a position"))?;
        let opened = layout::open_chunk(&chunk)
            .ok_or_else(|| corrupt(Position(first), "a chunk is damaged"))?;
        let records = opened
            .records()
            .ok_or_else(|| corrupt(Position(first), "a chunk's framing is damaged"))?;
        let mut streams = HashSet::new();
        for (offset, bytes) in records.into_iter().enumerate() {
            let event = decode_at(Position(first + offset as u64), bytes)?;
            if streams.insert(event.stream.clone()) {
                log.remove(layout::stream_index_key(&event.stream, event.version.0))
                    .map_err(sled_error)?;
            }
            let command = layout::command_key(&event.metadata.command_id);
            let outcome = log.get(command).map_err(sled_error)?;
            if outcome
                .as_deref()
                .and_then(outcome_from_bytes)
                .is_some_and(|outcome| outcome.first_position.0 > end)
            {
                log.remove(command).map_err(sled_error)?;
            }
        }
        log.remove(key).map_err(sled_error)?;
    }
    Ok(())
}

/// Removes from sled what a checkpoint that failed before its marker left beyond position
/// `end`: the chunks of events after it, the stream-index entries of their streams from their
/// first version on, and the command-index runs it began (a run's id is the first position of
/// the newest checkpoint it holds). Done again whole if cut short.
fn remove_after(log: &sled::Tree, segments: &Segments, end: u64) -> StoreResult<()> {
    let mut batch = sled::Batch::default();
    let mut first_versions: FxHashMap<StreamId, u64> = FxHashMap::default();
    for item in log.range(layout::chunk_key(end + 1)..=layout::chunk_key(u64::MAX)) {
        let (key, chunk) = item.map_err(sled_error)?;
        let first = u64_of(&key[1..])
            .ok_or_else(|| corrupt(Position(end), "an event key is not a position"))?;
        let opened = Chunks::Located(segments).open(first, &chunk)?;
        let records = opened
            .records()
            .ok_or_else(|| corrupt(Position(first), "a chunk's framing is damaged"))?;
        for (offset, bytes) in records.into_iter().enumerate() {
            let event = decode_at(Position(first + offset as u64), bytes)?;
            let version = first_versions.entry(event.stream).or_insert(u64::MAX);
            *version = (*version).min(event.version.0);
        }
        batch.remove(key);
    }
    for (stream, version) in first_versions {
        let from = layout::stream_index_key(&stream, version);
        let to = layout::stream_index_key(&stream, u64::MAX);
        for key in log.range(from..=to).keys() {
            batch.remove(key.map_err(sled_error)?);
        }
    }
    for prefix in [commands::FILTERS, commands::BLOCKS] {
        for key in log.scan_prefix([prefix]).keys() {
            let key = key.map_err(sled_error)?;
            if key.get(1..9).and_then(u64_of).is_some_and(|run| run > end) {
                batch.remove(key);
            }
        }
    }
    log.apply_batch(batch).map_err(sled_error)
}

/// Reopening a store of format 3 or 4: sled holds every batch up to its last checkpoint whole,
/// and may hold later ones whole, in part or not at all; the write-ahead log holds whole the
/// batches since the checkpoint, up to some point (every acknowledged one, perhaps more). The
/// store is the checkpoint and the log: batches beyond the log are removed from sled, then the
/// log's are inserted again. Returns the head and the log's generation.
fn recover_pairs(
    log: &sled::Tree,
    meta: &sled::Tree,
    contents: &[u8],
) -> StoreResult<(LogHead, u64)> {
    let stored = stored_head(log, Chunks::Inline)?;
    let (generation, checkpointed) = match meta.get(wal::CHECKPOINT_KEY).map_err(sled_error)? {
        Some(marker) => wal::read_marker(&marker)
            .ok_or_else(|| corrupt(Position::START, "the checkpoint marker is unreadable"))?,
        // Never checkpointed: written by format 3, whose batches are whole.
        None => (0, stored.position.0),
    };
    if stored.position.0 < checkpointed {
        return Err(corrupt(
            stored.position,
            format!(
                "the store ends at {} but was made durable through {checkpointed}",
                stored.position
            ),
        ));
    }
    let batches =
        wal::records(contents, generation).map_err(|detail| corrupt(stored.position, detail))?;
    let mut end = checkpointed;
    for batch in &batches {
        if batch.first != end + 1 {
            return Err(corrupt(
                Position(end + 1),
                format!(
                    "the write-ahead log goes on at position {} after {end}",
                    batch.first
                ),
            ));
        }
        end = batch.last;
    }
    if stored.position.0 == end && batches.is_empty() {
        return Ok((stored, generation));
    }
    remove_beyond(log, end)?;
    for batch in &batches {
        for (key, value) in &batch.pairs {
            log.insert(*key, *value).map_err(sled_error)?;
        }
    }
    let head = stored_head(log, Chunks::Inline)?;
    if head.position.0 != end {
        return Err(corrupt(
            head.position,
            format!(
                "the store ends at {} after recovery, not at {end}",
                head.position
            ),
        ));
    }
    Ok((head, generation))
}

/// Reopening a store of format 5: sled holds every checkpoint whole and nothing beyond the
/// last (each is one atomic batch); the write-ahead files hold whole the batches since, up to
/// at least the last acknowledged: the marker's generation, then perhaps the next, written
/// while a checkpoint was under way. They become the tail again. Returns the head, the
/// marker's generation and the tail.
///
/// The generation after the next is the first that no file can hold records of: the flusher
/// starts the next but one only once the marker names the next. Reopening goes on there, never
/// in a generation whose file may hold records a crash left beyond a torn one.
fn recover(
    log: &sled::Tree,
    segments: &Segments,
    files: [Option<&[u8]>; 2],
    strict: bool,
) -> StoreResult<(LogHead, u64, Tail)> {
    let stored = stored_head(log, Chunks::Located(segments))?;
    let (generation, checkpointed) = match log.get(layout::CHECKPOINT_KEY).map_err(sled_error)? {
        Some(marker) => wal::read_marker(&marker)
            .ok_or_else(|| corrupt(Position::START, "the checkpoint marker is unreadable"))?,
        None if stored.position == Position::START => (0, 0),
        None => {
            return Err(corrupt(
                stored.position,
                "events without a checkpoint marker",
            ))
        }
    };
    if stored.position.0 < checkpointed {
        return Err(corrupt(
            stored.position,
            format!(
                "the store ends at {} but its last checkpoint was at {checkpointed}",
                stored.position
            ),
        ));
    }
    // The marker's generation, then the next one: written in the other file once the marker's
    // was whole and synced, while a checkpoint of it was under way (see `Checkpointer`).
    let slot = |generation: u64| (generation % 2) as usize;
    let read = |generation: u64, earlier: u64| {
        let file = wal::file_of(generation);
        let Some(contents) = files[slot(generation)] else {
            return Err(corrupt(
                Position(earlier + 1),
                format!("the write-ahead file {file} is missing: the events recorded after {earlier} since the last checkpoint are not readable; events 1 to {earlier} are intact"),
            ));
        };
        wal::scan(contents, generation, wal::Rules { strict }).map_err(
            |damage| {
                let earlier = damage.through.unwrap_or(earlier);
                let beyond = match damage.beyond {
                    Some((first, last)) => format!(
                        "; whole records of events {first} to {last} follow the damage, and would be lost"
                    ),
                    None => String::new(),
                };
                corrupt(
                    Position(earlier + 1),
                    format!(
                        "the write-ahead file {file} is damaged at byte {}: {}{beyond}; events 1 to {earlier} are intact before it",
                        damage.at, damage.detail
                    ),
                )
            },
        )
    };
    let this = read(generation, checkpointed)?;
    let through = this.batches.last().map_or(checkpointed, |batch| batch.last);
    // The next generation goes on only once this one's records are whole on disk: a gap
    // between them is damage (checked below, batch by batch).
    let next = read(generation + 1, through)?;
    let (this, next) = (this.batches, next.batches);
    let mut stored = stored;
    if stored.position.0 > checkpointed {
        // A checkpoint that failed after sled took part of its events and before its marker:
        // the write-ahead log holds them all, so sled lets them go and they come back from it.
        let logged_through = this
            .iter()
            .chain(next.iter())
            .next_back()
            .map_or(checkpointed, |batch| batch.last);
        let logged_from = this
            .iter()
            .chain(next.iter())
            .next()
            .map(|batch| batch.first);
        if logged_from != Some(checkpointed + 1) || logged_through < stored.position.0 {
            return Err(corrupt(
                Position(checkpointed + 1),
                format!(
                    "sled holds events {} to {} beyond its last checkpoint, and the write-ahead log does not hold them all",
                    checkpointed + 1,
                    stored.position
                ),
            ));
        }
        remove_after(log, segments, checkpointed)?;
        stored = stored_head(log, Chunks::Located(segments))?;
        if stored.position.0 != checkpointed {
            return Err(corrupt(
                stored.position,
                format!(
                    "the store ends at {} after the events beyond its last checkpoint ({checkpointed}) were let go",
                    stored.position
                ),
            ));
        }
    }
    let mut tail = Tail::starting_at(checkpointed + 1);
    let mut head = stored;
    for batch in this.into_iter().chain(next) {
        let at = Position(tail.end());
        let damaged = |detail: String| corrupt(at, detail);
        if batch.first != tail.end() {
            return Err(damaged(format!(
                "the write-ahead log goes on at position {} after {}: events {} to {} are missing (a write-ahead file damaged, removed or replaced)",
                batch.first, head.position, head.position.0 + 1, batch.first.saturating_sub(1)
            )));
        }
        for logged in batch.appends {
            let stream = StreamId::new(logged.stream)
                .map_err(|error| damaged(format!("a logged append's stream: {error}")))?;
            let outcome = outcome_from_bytes(&logged.outcome)
                .map(|outcome| AppendOutcome {
                    deduplicated: false,
                    ..outcome
                })
                .ok_or_else(|| damaged("a logged append's outcome is unreadable".into()))?;
            let count = logged.records.len() as u64;
            if count == 0
                || outcome.first_position.0 != tail.end()
                || Some(outcome.last_position.0) != (tail.end() + count).checked_sub(1)
                || outcome.last_version.0.checked_add(1)
                    != outcome.first_version.0.checked_add(count)
            {
                return Err(damaged("a logged append does not follow the log".into()));
            }
            let mut records = Vec::with_capacity(logged.records.len());
            for bytes in &logged.records {
                let raw = record::split(bytes).map_err(|error| damaged(error.to_string()))?;
                if raw.previous_hash != head.hash {
                    return Err(damaged("a logged event does not continue the chain".into()));
                }
                head = LogHead {
                    position: Position(head.position.0 + 1),
                    hash: raw.hash,
                };
                records.push(Arc::<[u8]>::from(*bytes));
            }
            tail.push(
                &stream,
                CommandId(uuid::Uuid::from_bytes(logged.command)),
                outcome,
                records,
            );
        }
        if head.position.0 != batch.last {
            return Err(damaged(format!(
                "a logged batch says it ends at {} but holds events through {}",
                batch.last, head.position
            )));
        }
    }
    Ok((head, generation, tail))
}

/// Upgrades a store of format 3 or 4 once `recover_pairs` has made it whole: makes sled
/// durable with the marker of the log's next generation (so the old log is never replayed
/// again), then moves its command keys into one run and writes format 5's marker, in one
/// batch. Each step can be cut short and done again.
fn upgrade(
    log: &sled::Tree,
    meta: &sled::Tree,
    syncer: &mut Syncer,
    head: Position,
    generation: u64,
) -> StoreResult<u64> {
    let generation = generation + 1;
    meta.insert(wal::CHECKPOINT_KEY, &wal::marker(generation, head.0))
        .map_err(sled_error)?;
    syncer.sync().map_err(io_error)?;
    let mut batch = sled::Batch::default();
    commands::migrate(log, &mut batch)?;
    batch.insert(layout::CHECKPOINT_KEY, &wal::marker(generation, head.0));
    log.apply_batch(batch).map_err(sled_error)?;
    syncer.sync().map_err(io_error)?;
    // Format 7 at once: the chunks still in sled are moved (`move_chunks`) by whichever opening
    // finds them, and a build of format 6 or older never opens a store half moved.
    meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())
        .map_err(sled_error)?;
    meta.remove(wal::CHECKPOINT_KEY).map_err(sled_error)?;
    syncer.sync().map_err(io_error)?;
    Ok(generation)
}

impl SledEventLog {
    /// Opens (or creates) the store in `directory`. Blocking: call it before serving, or from a
    /// blocking task.
    pub fn open(directory: &Path, options: StoreOptions) -> StoreResult<SledEventLog> {
        Self::open_reading_segments(directory, options, None)
    }

    /// [`SledEventLog::open`], with the segment files sled names at opening read in place from
    /// `segments_from` (another store's directory, never written; see
    /// [`Segments::open_over`]).
    pub(crate) fn open_reading_segments(
        directory: &Path,
        options: StoreOptions,
        segments_from: Option<&Path>,
    ) -> StoreResult<SledEventLog> {
        crate::private::directory(directory).map_err(io_error)?;
        prepare_for_sled(directory)?;
        let poisoned = Poisoned::default();
        let opened = guarded(Position::START, || {
            let db = sled::Config::new()
                .path(directory)
                .cache_capacity(options.cache_capacity_bytes)
                // Flushing is this store's job, at checkpoints; no background timer.
                .flush_every_ms(None)
                .open()
                .map_err(sled_error)?;
            Self::start(db, directory, options, poisoned.clone(), segments_from)
        });
        if matches!(&opened, Err(error) if !matches!(error, StoreError::Locked(_))) {
            // A refused store can be opened again at once (once put right), as a closed one.
            // (Held by another process, the lock is not this one's to wait for.)
            drop(LockReleased {
                db_file: directory.join("db"),
                poisoned,
            });
        }
        opened
    }

    /// Opens the store on a sled database already open in `directory`: checks its format,
    /// recovers, checkpoints, and starts the flusher and the checkpointer.
    fn start(
        db: sled::Db,
        directory: &Path,
        options: StoreOptions,
        poisoned: Poisoned,
        segments_from: Option<&Path>,
    ) -> StoreResult<SledEventLog> {
        let tree = |name: &str| db.open_tree(name).map_err(sled_error);
        let log = tree("log")?;
        let checkpoints = tree("checkpoints")?;
        let projections = tree("projections")?;
        let meta = tree("meta")?;
        if meta.contains_key(RESTORING_KEY).map_err(sled_error)? {
            return Err(corrupt(
                Position::START,
                "an unfinished restore, not a store: remove the directory and import again",
            ));
        }
        let (format, existing) = match meta.get(FORMAT_KEY).map_err(sled_error)? {
            Some(bytes) => {
                let found = bytes
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| {
                        corrupt(Position::START, "the store's format marker is unreadable")
                    })?;
                if found > STORE_FORMAT {
                    return Err(StoreError::NewerFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                if found < UPGRADABLE_FORMAT {
                    return Err(corrupt(
                        Position::START,
                        format!("format {found} predates the first release; export it with the build that wrote it"),
                    ));
                }
                if found < PAIRS_FORMAT {
                    // Format 3 is format 4 without a write-ahead log: only the marker changes,
                    // so that a build of format 3 never opens a store whose log it would ignore.
                    meta.insert(FORMAT_KEY, &PAIRS_FORMAT.to_be_bytes())
                        .map_err(sled_error)?;
                }
                (found, true)
            }
            None if !log.is_empty() => {
                return Err(corrupt(
                    Position::START,
                    "events without a format marker: this is not a battleplan store",
                ))
            }
            None => {
                meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())
                    .map_err(sled_error)?;
                (STORE_FORMAT, false)
            }
        };
        // A store of format 6 has both files from its first opening on; a missing one is
        // damage, never made anew (which would silently drop what it held).
        // A store with no checkpoint marker never finished its first opening (the format is
        // written before the files exist), so it holds nothing acknowledged: its files may be
        // made.
        let never_opened = log
            .get(layout::CHECKPOINT_KEY)
            .map_err(sled_error)?
            .is_none()
            && log.is_empty();
        let create = !existing || never_opened || format < SEALED_FORMAT;
        let open_wal = |name: &str| -> StoreResult<Option<(File, Vec<u8>)>> {
            let path = directory.join(name);
            if create {
                crate::fault::check("wal.create").map_err(io_error)?;
            }
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(&path)
            {
                Ok(file) => file,
                // `recover` says which events it held.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(io_error(format_args!("{}: {error}", path.display()))),
            };
            let mut contents = Vec::new();
            (&file)
                .read_to_end(&mut contents)
                .map_err(|error| io_error(format_args!("{}: {error}", path.display())))?;
            if create && contents.is_empty() {
                // New files start emptied.
                empty(&file)
                    .map_err(|error| io_error(format_args!("{}: {error}", path.display())))?;
                contents = vec![0; wal::EMPTIED];
            }
            Ok(Some((file, contents)))
        };
        let db_file = File::open(directory.join("db")).map_err(io_error)?;
        let mut syncer = Syncer {
            db: db.clone(),
            db_file,
            blobs: directory.join("blobs"),
            synced_blobs: HashSet::new(),
        };
        let first = open_wal(wal::FILES[0])?;
        let second = open_wal(wal::FILES[1])?;
        if create {
            // The files' names are durable before sled says the store exists.
            sync_directory(directory)?;
        }
        let first_contents = first.as_ref().map(|(_, bytes)| &bytes[..]);
        let second_contents = second.as_ref().map(|(_, bytes)| &bytes[..]);
        let allocated = [
            first_contents.map_or(0, |bytes| bytes.len() as u64),
            second_contents.map_or(0, |bytes| bytes.len() as u64),
        ];
        let segments = Arc::new(
            match segments_from {
                Some(base) => Segments::open_over(directory, base, segments_end(&log)?),
                None => Segments::open(directory),
            }
            .map_err(io_error)?,
        );
        let (head, generation, tail) = if format < TWO_FILES_FORMAT {
            let old = directory.join(wal::FILE);
            let contents = match std::fs::read(&old) {
                Ok(contents) => contents,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(error) => return Err(io_error(error)),
            };
            let (head, generation) = recover_pairs(&log, &meta, &contents)?;
            let generation = upgrade(&log, &meta, &mut syncer, head.position, generation)?;
            // Upgraded and durable: format 4's log is never read again.
            if !contents.is_empty() || old.exists() {
                std::fs::remove_file(&old).map_err(io_error)?;
            }
            move_chunks(&log, &segments, &mut syncer)?;
            (head, generation, Tail::starting_at(head.position.0 + 1))
        } else {
            if format == SEALED_FORMAT {
                // Marked first, durably: a build of format 6 never opens a store half moved
                // (format 5's files are read by other rules, so such a store keeps its number
                // until it is opened whole).
                meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())
                    .map_err(sled_error)?;
                syncer.sync().map_err(io_error)?;
            }
            let inline = log
                .scan_prefix([layout::EVENTS])
                .next()
                .transpose()
                .map_err(sled_error)?
                .is_some();
            if inline {
                // Whatever sled holds moves, a failed checkpoint's chunks too: `recover` then
                // lets those go as it would have in sled. A move cut short goes on here.
                move_chunks(&log, &segments, &mut syncer)?;
            }
            recover(
                &log,
                &segments,
                [first_contents, second_contents],
                format >= SEALED_FORMAT,
            )?
        };
        // Appending goes on after the last chunk sled names: frames a crash left beyond it go.
        settle_segments(&log, &segments)?;
        let (Some((first, _)), Some((second, _))) = (first, second) else {
            // Only a store of format 6 may miss one, and `recover` refuses it.
            return Err(corrupt(head.position, "a write-ahead file is missing"));
        };
        let merged = log
            .get(layout::CHECKPOINT_KEY)
            .map_err(sled_error)?
            .map(|marker| wal::merged_of(&marker))
            .unwrap_or_default();
        let index = CommandIndex::load(&log, &merged)?;
        // The marker's generation and the next may have records; the first checkpoint starts
        // the one after, which none has (see `recover`).
        let wal = WalWriter {
            directory: directory.to_path_buf(),
            files: [Arc::new(first), Arc::new(second)],
            allocated,
            generation: generation + 1,
            offset: wal::RECORDS_START as u64,
            last: 0,
        };
        let durable = Arc::new(watch::Sender::new(Durable {
            position: head.position,
            failure: None,
        }));
        let tails = Arc::new(RwLock::new(Tails::new(tail)));
        let index = Arc::new(RwLock::new(index));
        let (jobs, job_receiver) = mpsc::channel();
        let (done_sender, done) = mpsc::channel();
        let checkpointer = Checkpointer {
            log: log.clone(),
            segments: segments.clone(),
            directory: directory.to_path_buf(),
            poisoned: poisoned.clone(),
            tails: tails.clone(),
            index: index.clone(),
            syncer,
            jobs: job_receiver,
            done: done_sender,
        };
        let checkpointer = std::thread::Builder::new()
            .name("battleplan-checkpointer".into())
            .spawn(move || checkpointer.run())
            .map_err(io_error)?;
        let sequencing = Arc::new(Sequencing {
            state: Mutex::new(Sequencer {
                head,
                versions: FxHashMap::default(),
                generation: wal.generation,
                filling: wal::Filling::default(),
                pending: Vec::new(),
                flusher_waiting: false,
                closing: false,
                failure: None,
            }),
            wake: Condvar::new(),
        });
        let mut flusher = Flusher {
            sequencing: sequencing.clone(),
            durable: durable.clone(),
            tails: tails.clone(),
            wal,
            sync: options.sync,
            checkpoint_events: options.checkpoint_events.max(1),
            checkpoints: jobs,
            checkpointed: done,
            checkpointing: false,
            spare: Vec::new(),
        };
        // Whatever the log held goes into sled and is made durable before anyone can read it;
        // the log starts again under a generation no file holds records of.
        flusher.checkpoint_now()?;
        // Sled holds it all now: both files start empty, so that whatever a crash leaves in
        // them after their records is zeros (`wal::scan`).
        flusher.wal.empty_both().map_err(|error| {
            io_error(format_args!(
                "emptying the write-ahead files in {}: {error}",
                directory.display()
            ))
        })?;
        if format < STORE_FORMAT {
            // Durable (with a checkpoint of nothing) before a record is written where format 6
            // puts it, after the seal: a reader of format 5 would not look there.
            meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())
                .map_err(sled_error)?;
            flusher.checkpoint_now()?;
        }
        let flusher = std::thread::Builder::new()
            .name("battleplan-flusher".into())
            .spawn(move || flusher.run())
            .map_err(io_error)?;
        Ok(SledEventLog {
            inner: Arc::new(Inner {
                log,
                segments,
                checkpoints,
                projections,
                sequencing,
                durable,
                tails,
                index,
                // The flusher first: it ends the checkpointer when it ends.
                threads: Mutex::new(vec![flusher, checkpointer]),
                options,
                files: segments_from.unwrap_or(directory).join(FILES_DIRECTORY),
                _released: LockReleased {
                    db_file: directory.join("db"),
                    poisoned,
                },
            }),
        })
    }

    /// Lays out an append after the log's head, under the sequencer's lock: checks its command
    /// id against what was recorded since the appender looked at the tails' `epoch` (looking
    /// again, without the lock, if a tail was frozen since), checks its expected version,
    /// encodes and chains its events, and adds them to the tail and to the write-ahead records
    /// the flusher takes next. Holds the lock for microseconds: no IO but a look in sled for
    /// the version of a stream that neither the cache nor the tails know.
    fn lay_out(&self, append: Append, epoch: u64) -> StoreResult<Laid> {
        let inner = &*self.inner;
        let command = append.metadata.command_id;
        let mut epoch = epoch;
        let mut sequencer = loop {
            let sequencer = inner.sequencing.lock();
            if let Some(failure) = &sequencer.failure {
                return Err(StoreError::Io(format!(
                    "the store failed earlier ({failure}); restart battleplan"
                )));
            }
            if sequencer.closing {
                return Err(StoreError::Closed);
            }
            {
                let tails = read(&inner.tails);
                if tails.epoch == epoch {
                    // No tail was frozen since the appender looked: only the current one can
                    // hold a command recorded since.
                    if let Some(outcome) = tails.current.commands.get(&command) {
                        return Ok(Laid::Known(*outcome));
                    }
                    drop(tails);
                    break sequencer;
                }
            }
            // A tail was frozen since: look again, with the lock let go (the look may read the
            // command index in sled).
            drop(sequencer);
            let (now, known) = known_command(&inner.log, &inner.tails, &inner.index, &command)?;
            if let Some(outcome) = known {
                return Ok(Laid::Known(outcome));
            }
            epoch = now;
        };
        let current = sequencer.version_of(&inner.log, &inner.tails, &append.stream)?;
        let stream = append.stream.clone();
        let prepared = append::prepare(
            append,
            sequencer.head,
            current,
            inner.options.max_record_bytes,
        )?;
        let outcome = prepared.outcome;
        let records: Vec<Vec<u8>> = prepared
            .records
            .into_iter()
            .map(|(_, bytes, _)| bytes)
            .collect();
        let generation = sequencer.generation;
        sequencer.filling.push(
            generation,
            outcome.first_position.0,
            outcome.last_position.0,
            &wal::LoggedAppend {
                stream: stream.as_str(),
                command: *command.0.as_bytes(),
                outcome: outcome_to_bytes(&outcome),
                records: records.iter().map(Vec::as_slice).collect(),
            },
        );
        write(&inner.tails).current.push(
            &stream,
            command,
            outcome,
            records.into_iter().map(Arc::<[u8]>::from),
        );
        sequencer.head = prepared.new_head;
        sequencer.versions.insert(stream, prepared.new_version);
        let (reply, answer) = oneshot::channel();
        sequencer.pending.push(Pending { outcome, reply });
        let wake = std::mem::take(&mut sequencer.flusher_waiting);
        drop(sequencer);
        if wake {
            inner.sequencing.wake.notify_one();
        }
        Ok(Laid::Queued(answer))
    }

    fn durable_position(&self) -> StoreResult<Position> {
        let durable = self.inner.durable.borrow();
        match &durable.failure {
            Some(failure) => Err(StoreError::Io(failure.clone())),
            None => Ok(durable.position),
        }
    }

    /// Waits for `position` to be durable: the flusher writes whatever is laid out, so it gets
    /// there without being asked.
    async fn wait_durable(&self, position: Position) -> StoreResult<()> {
        let mut receiver = self.inner.durable.subscribe();
        let reached = receiver
            .wait_for(|durable| durable.position >= position || durable.failure.is_some())
            .await
            .map_err(|_| StoreError::Closed)?;
        match &reached.failure {
            Some(failure) => Err(StoreError::Io(failure.clone())),
            None => Ok(()),
        }
    }

    /// Calls `visit` with every event record at or after `from` and at most `until` (at most
    /// `limit` of them), in order, with the position the store holds it under. Stops early when
    /// `visit` says so. The tails are looked at first (see `Tails`): sled holds everything
    /// before their first position.
    fn for_each_record(
        &self,
        from: u64,
        until: u64,
        limit: usize,
        mut visit: impl FnMut(Position, &[u8]) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        let (tail_first, in_tail) = {
            let tails = read(&self.inner.tails);
            (tails.first(), tails.range(from, until, limit))
        };
        let mut visited = 0;
        if from < tail_first {
            let mut stopped = false;
            guarded(Position(from), || {
                self.for_each_stored_record(from, until.min(tail_first - 1), |position, bytes| {
                    visited += 1;
                    let go_on = visit(position, bytes)? && visited < limit;
                    stopped = !go_on;
                    Ok(go_on)
                })
            })?;
            if stopped {
                return Ok(());
            }
        }
        for (position, bytes) in in_tail {
            if visited >= limit {
                break;
            }
            visited += 1;
            if !visit(Position(position), &bytes)? {
                break;
            }
        }
        Ok(())
    }

    /// `for_each_record` over what sled holds.
    fn for_each_stored_record(
        &self,
        from: u64,
        until: u64,
        mut visit: impl FnMut(Position, &[u8]) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        let log = &self.inner.log;
        // The chunk holding `from` starts at or before it.
        let start = log
            .range(layout::chunk_key(0)..=layout::chunk_key(from))
            .next_back()
            .transpose()
            .map_err(sled_error)?
            .map_or(from, |(key, _)| u64_of(&key[1..]).unwrap_or(from));
        let mut chunks = ChunkWalk::new(log, start, until, Walk::Expected);
        while let Some((key, chunk)) = chunks.next_chunk()? {
            let first = u64_of(&key[1..])
                .ok_or_else(|| corrupt(Position(from), "an event key is not a position"))?;
            let opened = Chunks::Located(&self.inner.segments).open(first, &chunk)?;
            let records = opened
                .records()
                .ok_or_else(|| corrupt(Position(first), "a chunk's framing is damaged"))?;
            // An empty chunk (damage) or one at the end of the positions is passed by key.
            if let Some(next) = first
                .checked_add(records.len() as u64)
                .filter(|next| *next > first)
            {
                chunks.expect(next);
            }
            for (offset, bytes) in records.into_iter().enumerate() {
                let position = first + offset as u64;
                if position < from {
                    continue;
                }
                if position > until || !visit(Position(position), bytes)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Walks the whole log and checks positions, the hash chain and stream versions; stops at
    /// the first problem. Reads sled chunk by chunk, with bounded memory, then the tail; a
    /// panic of sled's on damage it finds is an error (`guarded`).
    pub fn verify(&self) -> StoreResult<VerifyReport> {
        guarded(Position::START, || self.verify_unguarded())
    }

    fn verify_unguarded(&self) -> StoreResult<VerifyReport> {
        // Durable events only: the tails also hold appends laid out and not yet on disk.
        let durable = self.inner.durable.borrow().position;
        let (tail_first, in_tail) = {
            let tails = read(&self.inner.tails);
            (
                tails.first(),
                tails.range(tails.first(), durable.0, usize::MAX),
            )
        };
        let mut verifier = Verifier::new();
        let mut problem = None;
        // Every key, overlapping ones too: a chunk an attacker slipped in inside another's
        // positions is found here, out of sequence, though the readers never come to it.
        let mut stored = ChunkWalk::new(
            &self.inner.log,
            0,
            tail_first.saturating_sub(1),
            Walk::EveryKey,
        );
        while let Some((key, chunk)) = stored.next_chunk()? {
            // A key that is not a position reads as 0: out of sequence, reported as such.
            let first = u64_of(&key[1..]).unwrap_or(0);
            let opened = match self.inner.segments.read(first, &chunk) {
                Ok(stored) => layout::open_chunk(&stored),
                Err(segments::ReadError::Io(detail)) => return Err(StoreError::Io(detail)),
                Err(segments::ReadError::Damaged(detail)) => {
                    problem = Some(Problem {
                        position: Position(verifier.checked() + 1),
                        damage: Damage::StoredBadly(detail),
                    });
                    break;
                }
            };
            let Some(records) = opened.as_ref().and_then(layout::Chunk::records) else {
                problem = Some(Problem {
                    position: Position(verifier.checked() + 1),
                    damage: Damage::Unreadable(record::DecodeError::Truncated("chunk framing")),
                });
                break;
            };
            if let Some(found) = records.iter().enumerate().find_map(|(offset, bytes)| {
                verifier.check(Position(first + offset as u64), bytes).err()
            }) {
                problem = Some(found);
                break;
            }
        }
        if problem.is_none() {
            problem = in_tail
                .iter()
                .find_map(|(position, bytes)| verifier.check(Position(*position), bytes).err());
        }
        Ok(VerifyReport {
            checked: verifier.checked(),
            head_hash: verifier.head_hash_hex(),
            problem,
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The stream's events sled holds, from version `from` and before version `before`.
    fn read_stored_stream(
        &self,
        stream: &StreamId,
        from: u64,
        before: u64,
        limit: usize,
        events: &mut Vec<RecordedEvent>,
    ) -> StoreResult<()> {
        let log = &self.inner.log;
        let prefix = layout::stream_prefix(stream);
        // The index entry holding `from` starts at or before it.
        let start = log
            .range(prefix.clone()..=layout::stream_index_key(stream, from))
            .next_back()
            .transpose()
            .map_err(sled_error)?
            .and_then(|(key, _)| key.strip_prefix(prefix.as_slice()).and_then(u64_of))
            .unwrap_or(from);
        let mut positions = Vec::new();
        for item in log.range(layout::stream_index_key(stream, start)..) {
            let (key, value) = item.map_err(sled_error)?;
            let Some(first_version) = key.strip_prefix(prefix.as_slice()).and_then(u64_of) else {
                break;
            };
            if first_version >= before {
                break;
            }
            for (offset, bytes) in value.chunks(8).enumerate() {
                let version = first_version + offset as u64;
                if version >= from && version < before && positions.len() < limit {
                    let position = u64_of(bytes).ok_or_else(|| {
                        corrupt(
                            Position::START,
                            format!("stream {stream}'s index is damaged"),
                        )
                    })?;
                    positions.push(position);
                }
            }
            if positions.len() >= limit {
                break;
            }
        }
        // Positions rise with versions: each chunk is found once and gives every wanted record
        // it holds.
        let mut index = 0;
        while let Some(&target) = positions.get(index) {
            let missing = || {
                corrupt(
                    Position(target),
                    format!("stream {stream} points at a missing event"),
                )
            };
            let (key, chunk) = log
                .range(layout::chunk_key(0)..=layout::chunk_key(target))
                .next_back()
                .transpose()
                .map_err(sled_error)?
                .ok_or_else(missing)?;
            let first = u64_of(&key[1..]).ok_or_else(missing)?;
            let opened = Chunks::Located(&self.inner.segments).open(first, &chunk)?;
            let records = opened
                .records()
                .ok_or_else(|| corrupt(Position(first), "a chunk's framing is damaged"))?;
            let last = first + records.len() as u64 - 1;
            if target > last {
                return Err(missing());
            }
            while let Some(&position) = positions.get(index).filter(|p| **p <= last) {
                let bytes = position
                    .checked_sub(first)
                    .and_then(|offset| records.get(offset as usize))
                    .ok_or_else(|| {
                        corrupt(
                            Position(position),
                            format!("stream {stream}'s index is out of order"),
                        )
                    })?;
                events.push(decode_at(Position(position), bytes)?);
                index += 1;
            }
        }
        Ok(())
    }
}

fn decode_at(position: Position, bytes: &[u8]) -> StoreResult<RecordedEvent> {
    let event = record::decode(bytes).map_err(|error| corrupt(position, error.to_string()))?;
    if event.position != position {
        return Err(corrupt(
            position,
            format!("the record says it is at position {}", event.position),
        ));
    }
    Ok(event)
}

#[async_trait]
impl EventAppender for SledEventLog {
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome> {
        self.durable_position()?;
        // The command id is looked up here, beside the other appenders, rather than under the
        // sequencer's lock; under it, only what was recorded since is checked.
        let inner = &self.inner;
        let (epoch, known) = known_command(
            &inner.log,
            &inner.tails,
            &inner.index,
            &append.metadata.command_id,
        )?;
        if let Some(outcome) = known {
            // The first attempt may still be on its way to disk.
            self.wait_durable(outcome.last_position).await?;
            return Ok(AppendOutcome {
                deduplicated: true,
                ..outcome
            });
        }
        match self.lay_out(append, epoch)? {
            // The flusher answers once the append is durable.
            Laid::Queued(answer) => answer.await.map_err(|_| StoreError::Closed)?,
            Laid::Known(outcome) => {
                self.wait_durable(outcome.last_position).await?;
                Ok(AppendOutcome {
                    deduplicated: true,
                    ..outcome
                })
            }
        }
    }
}

#[async_trait]
impl EventReader for SledEventLog {
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        // After a failure the tails may hold appends that will never be durable.
        self.durable_position()?;
        let from = from.0.max(1);
        // The tails first (see `Tails`): sled holds the stream's versions before theirs.
        let (stored_before, in_tail) = read(&self.inner.tails).stream_records(stream, from, limit);
        let mut events = Vec::with_capacity(limit.min(64));
        if from < stored_before {
            guarded(Position::START, || {
                self.read_stored_stream(stream, from, stored_before, limit, &mut events)
            })?;
        }
        for (position, bytes) in in_tail {
            if events.len() >= limit {
                break;
            }
            events.push(decode_at(Position(position), &bytes)?);
        }
        Ok(events)
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let durable = self.durable_position()?;
        if after >= durable || limit == 0 {
            return Ok(Vec::new());
        }
        let mut events = Vec::with_capacity(limit.min((durable.0 - after.0) as usize));
        self.for_each_record(after.0 + 1, durable.0, limit, |position, bytes| {
            events.push(decode_at(position, bytes)?);
            Ok(events.len() < limit)
        })?;
        Ok(events)
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        self.durable_position()?;
        let in_tails = read(&self.inner.tails).last_version(stream);
        match in_tails {
            Some(version) => Ok(version),
            None => stream_version_in(&self.inner.log, stream),
        }
    }

    async fn head(&self) -> StoreResult<Position> {
        self.durable_position()
    }

    async fn wait_beyond(&self, position: Position) -> StoreResult<()> {
        let mut receiver = self.inner.durable.subscribe();
        let reached = receiver
            .wait_for(|durable| durable.position > position || durable.failure.is_some())
            .await
            .map_err(|_| StoreError::Closed)?;
        match &reached.failure {
            Some(failure) => Err(StoreError::Io(failure.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Checkpoints for SledEventLog {
    async fn checkpoint(&self, projection: &str) -> StoreResult<Position> {
        let stored = self.inner.checkpoints.get(projection).map_err(sled_error)?;
        Ok(Position(stored.as_deref().and_then(u64_of).unwrap_or(0)))
    }

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let value = self
            .inner
            .projections
            .get(projection_key(projection, key))
            .map_err(sled_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn commit(
        &self,
        projection: &str,
        checkpoint: Position,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> StoreResult<()> {
        let inner = &self.inner;
        let result: Result<(), TransactionError<Position>> =
            (&inner.checkpoints, &inner.projections).transaction(|(checkpoints, projections)| {
                let current = Position(
                    checkpoints
                        .get(projection)?
                        .as_deref()
                        .and_then(u64_of)
                        .unwrap_or(0),
                );
                if checkpoint < current {
                    return Err(ConflictableTransactionError::Abort(current));
                }
                for (key, value) in &changes {
                    let full = projection_key(projection, key);
                    match value {
                        Some(value) => {
                            projections.insert(full, value.as_slice())?;
                        }
                        None => {
                            projections.remove(full)?;
                        }
                    }
                }
                checkpoints.insert(projection, &checkpoint.0.to_be_bytes())?;
                Ok(())
            });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(current)) => Err(StoreError::Invalid(format!(
                "projection {projection} is at {current}; its checkpoint cannot move back to {checkpoint}"
            ))),
            Err(TransactionError::Storage(error)) => Err(sled_error(error)),
        }
    }

    async fn scan(&self, projection: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = projection_key(projection, &[]);
        self.inner
            .projections
            .scan_prefix(&prefix)
            .map(|item| {
                item.map(|(key, value)| (key[prefix.len()..].to_vec(), value.to_vec()))
                    .map_err(sled_error)
            })
            .collect()
    }

    async fn reset(&self, projection: &str) -> StoreResult<()> {
        let prefix = projection_key(projection, &[]);
        let inner = &self.inner;
        // A projection has one writer, the runner calling this: the keys read here are all
        // there is. State and checkpoint go together, so a rebuild never starts on stale state.
        let keys: Vec<sled::IVec> = inner
            .projections
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(sled_error)?;
        let result: Result<(), TransactionError<()>> = (&inner.checkpoints, &inner.projections)
            .transaction(|(checkpoints, projections)| {
                for key in &keys {
                    projections.remove(key)?;
                }
                checkpoints.remove(projection)?;
                Ok(())
            });
        result.map_err(|error| match error {
            TransactionError::Storage(error) => sled_error(error),
            TransactionError::Abort(()) => StoreError::Io("the reset was aborted".into()),
        })
    }

    fn files_directory(&self) -> Option<PathBuf> {
        Some(self.inner.files.clone())
    }

    /// sled's state made durable now, as a checkpoint makes it (`Syncer::sync`, but for blob
    /// files: a commit that needs this is small).
    async fn sync(&self) -> StoreResult<()> {
        let released = &self.inner._released;
        if released
            .poisoned
            .0
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Io(
                "sled failed earlier in this process; the store must be opened again".into(),
            ));
        }
        crate::fault::check("sled.flush").map_err(io_error)?;
        self.inner.projections.flush().map_err(sled_error)?;
        File::open(&released.db_file)
            .and_then(|file| file.sync_data())
            .map_err(io_error)
    }
}
