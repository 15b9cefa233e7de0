//! The event store on sled 0.34.7: the embedded default.
//!
//! sled costs a few microseconds per key written, so the store commits and stores in bulk: one
//! writer thread takes every append waiting at once and commits them as one batch, and the
//! events of a batch are stored together as one "chunk". Layout, in one tree `log`:
//! - `E` + first position (u64, big-endian) -> chunk: the records of consecutive events
//!   (`u32` count, then each record as `u32` length + bytes; see
//!   `battleplan_core::event::record`), compressed with lz4 (records repeat their streams,
//!   types and actors, so a chunk shrinks about threefold, and so does what sled keeps in memory
//!   while reading). An append's events are never split across chunks.
//! - `S` + stream key + first version -> the positions of that stream's events in one chunk (a
//!   stream's version is where its last entry ends);
//! - `C` + command id -> the append's outcome, for idempotent retries.
//!
//! Beside it: `meta` (the store format and the last checkpoint's marker), `checkpoints` and
//! `projections` (projection state and the position it reflects, changed together in one
//! transaction); and, beside sled's files, the write-ahead log (`wal`).
//!
//! When data is durable: the writer inserts a batch into sled (plain inserts, chunks first:
//! sled's `apply_batch` writes its IO buffer to disk twice per batch, which cost more than
//! everything else together), then writes the batch, whole, as one record of the write-ahead
//! log, and hands its last position to the flusher thread, which `fdatasync`s the log. An append
//! is acknowledged only when the flusher reports its position durable, by the flusher itself
//! (one wake-up per append). While one `fdatasync` runs, the writer commits the next batch:
//! group commit, pipelined. sled itself is made durable only at checkpoints (`Db::flush`, then
//! `fdatasync` of its file and `fsync` of new blob files, since sled's flush uses
//! `sync_file_range` and writes blob files without any sync): every 16 MiB or 20,000 keys of
//! log, after a batch holding a value large enough for a blob file, and at close. A checkpoint
//! records the log's next generation and the position it covers in `meta`; the log is then
//! written from its start again (it is kept filled with zeros ahead of the last record, so an
//! `fdatasync` has no file length to update).
//!
//! Reopening after a crash (`recover`): sled holds every batch up to the checkpoint whole, and
//! later ones whole, in part or not at all; the log holds whole the batches since, up to at
//! least the last acknowledged one. What sled holds beyond the log is removed (no appender was
//! told of it; the chunks, inserted first, name every index entry to remove), then the log's
//! batches are inserted again, and a checkpoint makes that durable before anyone reads.
//!
//! `read_all`, `head` and `wait_beyond` show only durable events, so nothing a projection or a
//! dispatcher acts on can be lost in a crash. `read_stream` and `stream_version` also show
//! inserted events whose `fdatasync` is under way: an append that decides on them is
//! acknowledged only after both are durable, and a crash loses both or neither (the log is one
//! sequence). An append is in one chunk and one stream-index entry, so a reader sees all of it
//! or none of it; of two appends in one batch it may see one before the other.
//!
//! Command ids: the appender looks its command id up in sled before queueing (in parallel with
//! the other appenders); the writer then checks only the batches applied since, from memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
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
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::{oneshot, watch};

mod restore;
pub use restore::{Restore, RestoreError};

/// The store layout this build writes. Opening a store with another number is refused.
/// Format 3 stores events in lz4-compressed chunks; format 4 adds the write-ahead log.
pub const STORE_FORMAT: u32 = 4;

/// The oldest format this build opens (and upgrades): format 3 is format 4 with an empty
/// write-ahead log.
const UPGRADABLE_FORMAT: u32 = 3;

/// The largest record accepted: far above any event, far below memory trouble.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// sled's page cache, by default: bounded, so a long log never fills memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A chunk stops growing past this size, below sled's threshold for keeping a value in a file
/// of its own (a quarter of its 512 KiB segment).
const CHUNK_TARGET_BYTES: usize = 96 * 1024;

/// The most appends one batch takes from the queue.
const MAX_BATCH_APPENDS: usize = 4096;

const FORMAT_KEY: &[u8] = b"store-format";

/// Stream versions the writer keeps in memory before starting over: bounded memory however many
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

    pub const EVENTS: u8 = b'E';
    pub const STREAMS: u8 = b'S';
    pub const COMMANDS: u8 = b'C';

    pub fn chunk_key(first_position: u64) -> [u8; 9] {
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: DEFAULT_CACHE_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            sync: SyncMode::Durable,
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

/// An applied append waiting for its last position to be durable.
struct Pending {
    last: Position,
    outcome: AppendOutcome,
    reply: Reply,
}

#[derive(Default)]
struct FlushState {
    /// The highest position the writer has asked to be made durable.
    requested: u64,
    /// The highest position made durable.
    done: u64,
    failure: Option<String>,
    pending: Vec<Pending>,
    shutdown: bool,
}

#[derive(Default)]
struct FlushControl {
    state: Mutex<FlushState>,
    wake: Condvar,
}

impl FlushControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlushState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn request(&self, position: Position) {
        {
            let mut state = self.lock();
            if state.requested < position.0 {
                state.requested = position.0;
            }
        }
        self.wake.notify_one();
    }

    /// Answers each append once its last position is durable: at once if it already is (a
    /// deduplicated retry), else when the flusher gets there.
    fn acknowledge_when_durable(&self, head: Position, ready: Vec<Pending>) {
        let mut now = Vec::new();
        let failure = {
            let mut state = self.lock();
            if state.requested < head.0 {
                state.requested = head.0;
            }
            if state.failure.is_none() {
                for pending in ready {
                    if pending.last.0 <= state.done {
                        now.push(pending);
                    } else {
                        state.pending.push(pending);
                    }
                }
                None
            } else {
                now = ready;
                state.failure.clone()
            }
        };
        self.wake.notify_one();
        for pending in now {
            let _ = pending.reply.send(match &failure {
                None => Ok(pending.outcome),
                Some(failure) => Err(StoreError::Io(failure.clone())),
            });
        }
    }

    /// Records a failure: nothing waiting or to come is acknowledged.
    fn fail(&self, durable: &watch::Sender<Durable>, error: String) {
        tracing::error!(%error, "making the event store durable failed; no further append is acknowledged");
        let waiting = {
            let mut state = self.lock();
            if state.failure.is_none() {
                state.failure = Some(error.clone());
            }
            std::mem::take(&mut state.pending)
        };
        durable.send_modify(|durable| {
            if durable.failure.is_none() {
                durable.failure = Some(error.clone());
            }
        });
        for pending in waiting {
            let _ = pending.reply.send(Err(StoreError::Io(error.clone())));
        }
    }
}

struct WriteRequest {
    append: Append,
    /// The number of batches applied when the appender looked its command id up in the store
    /// and did not find it; `None` if it did not look.
    checked_after: Option<u64>,
    reply: Reply,
}

struct Inner {
    log: sled::Tree,
    checkpoints: sled::Tree,
    projections: sled::Tree,
    requests: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    durable: Arc<watch::Sender<Durable>>,
    flush: Arc<FlushControl>,
    /// How many batches the writer has applied (released after each `apply_batch`).
    applied_batches: Arc<AtomicU64>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    options: StoreOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has applied what it holds and made sled
        // durable (a last checkpoint); then the flusher ends.
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect();
        let mut threads = threads.into_iter();
        if let Some(writer) = threads.next() {
            let _ = writer.join();
        }
        self.flush.lock().shutdown = true;
        self.flush.wake.notify_all();
        for thread in threads {
            // A thread that panicked has already reported its failure to every waiter.
            let _ = thread.join();
        }
    }
}

/// The sled event store. Cheap to clone; all clones share one database, one writer and one
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
            detail: format!("sled reports corruption at {at:?}"),
        },
        other => StoreError::Io(other.to_string()),
    }
}

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

/// The write-ahead log: one file beside sled's, holding each batch the writer applied since the
/// last checkpoint, exactly as it went to sled. A record is
/// `magic (u32) | body length (u32) | checksum of the body (u64) | body`, and a body is
/// `generation (u64) | first position (u64) | last position (u64) | pair count (u32)`, then
/// each pair as `u32` length + key, `u32` length + value (all big-endian).
///
/// The file is written from its start again after each checkpoint, under the next generation,
/// and kept filled with zeros ahead of the last record (so that `fdatasync` has no file size to
/// update). Reading stops at the first record that is not whole (a torn write: its checksum
/// fails) or not of the current generation (zeros, or what an earlier generation left).
pub mod wal {
    /// The file's name, in the store's directory.
    pub const FILE: &str = "battleplan.wal";

    /// The key, in the `meta` tree, of the last checkpoint's marker: the log's generation
    /// since, and the position sled was made durable through.
    pub const CHECKPOINT_KEY: &[u8] = b"checkpoint";

    pub fn marker(generation: u64, position: u64) -> [u8; 16] {
        let mut marker = [0u8; 16];
        marker[..8].copy_from_slice(&generation.to_be_bytes());
        marker[8..].copy_from_slice(&position.to_be_bytes());
        marker
    }

    /// `(generation, position)`; `None` if damaged.
    pub fn read_marker(marker: &[u8]) -> Option<(u64, u64)> {
        if marker.len() != 16 {
            return None;
        }
        Some((u64_at(marker, 0)?, u64_at(marker, 8)?))
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

    /// One batch as a record.
    pub fn record(generation: u64, first: u64, last: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let size = 28
            + pairs
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>();
        let mut record = Vec::with_capacity(HEADER + size);
        record.extend_from_slice(&MAGIC.to_be_bytes());
        record.extend_from_slice(&(size as u32).to_be_bytes());
        record.extend_from_slice(&[0; 8]);
        record.extend_from_slice(&generation.to_be_bytes());
        record.extend_from_slice(&first.to_be_bytes());
        record.extend_from_slice(&last.to_be_bytes());
        record.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
        for (key, value) in pairs {
            record.extend_from_slice(&(key.len() as u32).to_be_bytes());
            record.extend_from_slice(key);
            record.extend_from_slice(&(value.len() as u32).to_be_bytes());
            record.extend_from_slice(value);
        }
        let sum = checksum(&record[HEADER..]);
        record[8..16].copy_from_slice(&sum.to_be_bytes());
        record
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
        let mut at = 0;
        while let (Some(magic), Some(size), Some(sum)) =
            (u32_at(log, at), u32_at(log, at + 4), u64_at(log, at + 8))
        {
            let Some(body) = log.get(at + HEADER..at + HEADER + size) else {
                break;
            };
            if magic != MAGIC as usize
                || u64_at(body, 0) != Some(generation)
                || checksum(body) != sum
            {
                break;
            }
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
            at += HEADER + size;
        }
        Ok(batches)
    }
}

/// The write-ahead log as the writer keeps it.
struct WalWriter {
    file: Arc<File>,
    generation: u64,
    /// Where the next record goes.
    offset: u64,
    /// The file's length: zeros (or an earlier generation's records) from `offset` on.
    allocated: u64,
}

/// How far ahead of the last record the log is kept filled with zeros.
const WAL_ZEROS_AHEAD: u64 = 1024 * 1024;

impl WalWriter {
    fn append(&mut self, record: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = self.offset + record.len() as u64;
        if end + WAL_ZEROS_AHEAD / 2 > self.allocated {
            // Once per megabyte: the next `fdatasync` records the new length.
            let zeros = vec![0u8; (end + WAL_ZEROS_AHEAD - self.allocated) as usize];
            self.file.write_all_at(&zeros, self.allocated)?;
            self.allocated += zeros.len() as u64;
        }
        self.file.write_all_at(record, self.offset)?;
        self.offset = end;
        Ok(())
    }
}

/// Start a checkpoint once the write-ahead log holds this many bytes...
const CHECKPOINT_WAL_BYTES: u64 = 16 * 1024 * 1024;
/// ... or this many sled keys: what reopening after a crash replays, kept well under a second.
const CHECKPOINT_WAL_KEYS: usize = 20_000;

/// Batches whose command ids the writer remembers, for appenders that looked their command id
/// up in the store themselves before queueing.
const RECENT_BATCHES: usize = 1024;

/// What a checkpoint needs: sled, its file, and which blob files are already synced.
struct Checkpointer {
    db: sled::Db,
    meta: sled::Tree,
    db_file: File,
    blobs: PathBuf,
    synced_blobs: HashSet<OsString>,
}

impl Checkpointer {
    /// Makes everything applied to sled durable there (`Db::flush`, `fdatasync` of its file,
    /// `fsync` of new blob files: sled's own flush uses `sync_file_range`, which flushes neither
    /// the disk's cache nor file metadata, and it writes blob files without any sync), with a
    /// marker of the log's next generation; the log then starts again from its beginning.
    fn run(&mut self, wal: &mut WalWriter, head: Position) -> std::io::Result<()> {
        let generation = wal.generation + 1;
        self.meta
            .insert(wal::CHECKPOINT_KEY, &wal::marker(generation, head.0))
            .map_err(std::io::Error::other)?;
        self.db.flush().map_err(std::io::Error::other)?;
        self.db_file.sync_data()?;
        sync_new_blobs(&self.blobs, &mut self.synced_blobs)?;
        wal.generation = generation;
        wal.offset = 0;
        Ok(())
    }
}

struct Flusher {
    wal: Arc<File>,
    control: Arc<FlushControl>,
    durable: Arc<watch::Sender<Durable>>,
    mode: SyncMode,
}

impl Flusher {
    fn run(self) {
        loop {
            let target = {
                let mut state = self.control.lock();
                while (state.requested <= state.done || state.failure.is_some()) && !state.shutdown
                {
                    state = self
                        .control
                        .wake
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if state.requested <= state.done || state.failure.is_some() {
                    return;
                }
                state.requested
            };
            // Everything up to `target` was written to the log before it was requested, or
            // made durable in sled by a checkpoint before the log was cut.
            let result = match self.mode {
                SyncMode::Durable => self.wal.sync_data(),
                SyncMode::NoSync => Ok(()),
            };
            if let Err(error) = result {
                self.control.fail(&self.durable, error.to_string());
                return;
            }
            let ready = {
                let mut state = self.control.lock();
                state.done = state.done.max(target);
                let (ready, waiting) = std::mem::take(&mut state.pending)
                    .into_iter()
                    .partition(|pending| pending.last.0 <= target);
                state.pending = waiting;
                ready
            };
            // Readers first, so that an acknowledged appender finds its events in `read_all`.
            self.durable.send_modify(|durable| {
                if durable.position.0 < target {
                    durable.position = Position(target);
                }
            });
            for pending in ready {
                let _ = pending.reply.send(Ok(pending.outcome));
            }
        }
    }
}

/// The command ids of the last `RECENT_BATCHES` batches applied.
#[derive(Default)]
struct RecentCommands {
    outcomes: HashMap<CommandId, (u64, AppendOutcome)>,
    batches: VecDeque<(u64, Vec<CommandId>)>,
    /// Every batch after this one is remembered.
    forgotten_through: u64,
}

impl RecentCommands {
    fn remember(&mut self, batch: u64, commands: Vec<(CommandId, AppendOutcome)>) {
        let mut ids = Vec::with_capacity(commands.len());
        for (command, outcome) in commands {
            self.outcomes.insert(command, (batch, outcome));
            ids.push(command);
        }
        self.batches.push_back((batch, ids));
        while self.batches.len() > RECENT_BATCHES {
            let Some((old, ids)) = self.batches.pop_front() else {
                break;
            };
            for id in ids {
                if self.outcomes.get(&id).is_some_and(|(b, _)| *b == old) {
                    self.outcomes.remove(&id);
                }
            }
            self.forgotten_through = old;
        }
    }
}

/// The one writer: takes every append waiting, lays them out after the log's head, and commits
/// them as one batch: applied to sled, then written to the write-ahead log.
struct Writer {
    log: sled::Tree,
    head: LogHead,
    /// Stream versions as of the last applied batch. The writer is the only writer, so an
    /// entry is never stale; the cache is dropped when it grows past `VERSION_CACHE_ENTRIES`.
    versions: HashMap<StreamId, StreamVersion>,
    recent: RecentCommands,
    applied_batches: Arc<AtomicU64>,
    requests: mpsc::Receiver<WriteRequest>,
    flush: Arc<FlushControl>,
    durable: Arc<watch::Sender<Durable>>,
    max_record_bytes: usize,
    checkpointer: Checkpointer,
    wal: WalWriter,
    wal_keys: usize,
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
    fn finish(self, pairs: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if self.records.is_empty() {
            return;
        }
        let records: Vec<&[u8]> = self.records.iter().map(Vec::as_slice).collect();
        pairs.push((
            layout::chunk_key(self.first).to_vec(),
            layout::chunk_of(&records),
        ));
        for (stream, first_version, positions) in self.streams {
            let mut value = Vec::with_capacity(positions.len() * 8);
            for position in positions {
                value.extend_from_slice(&position.to_be_bytes());
            }
            pairs.push((layout::stream_index_key(&stream, first_version), value));
        }
    }
}

/// The outcome stored for a command id, if any.
fn stored_outcome(log: &sled::Tree, command: &CommandId) -> StoreResult<Option<AppendOutcome>> {
    match log.get(layout::command_key(command)).map_err(sled_error)? {
        Some(bytes) => outcome_from_bytes(&bytes).map(Some).ok_or_else(|| {
            corrupt(
                Position::START,
                format!("the outcome of command {command} is unreadable"),
            )
        }),
        None => Ok(None),
    }
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.requests.recv() {
            let mut group = vec![first];
            while group.len() < MAX_BATCH_APPENDS {
                match self.requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            if let Some(failure) = self.durable.borrow().failure.clone() {
                for request in group {
                    let _ = request.reply.send(Err(StoreError::Io(format!(
                        "the store failed earlier ({failure}); restart battleplan"
                    ))));
                }
                continue;
            }
            self.write_group(group);
        }
        // Closing: sled is made durable and the write-ahead log emptied, so that a closed
        // store is whole in sled alone.
        if self.durable.borrow().failure.is_none() {
            if let Err(error) = self.checkpointer.run(&mut self.wal, self.head.position) {
                tracing::error!(%error, "the last checkpoint failed; the write-ahead log will be replayed");
            }
        }
    }

    fn version_of(&mut self, stream: &StreamId) -> StoreResult<StreamVersion> {
        if let Some(version) = self.versions.get(stream) {
            return Ok(*version);
        }
        let version = stream_version_in(&self.log, stream)?;
        if self.versions.len() >= VERSION_CACHE_ENTRIES {
            self.versions.clear();
        }
        self.versions.insert(stream.clone(), version);
        Ok(version)
    }

    /// The first outcome of a command id applied before, if any. An appender that looked in
    /// the store itself says after how many batches; only the batches since need checking.
    fn known_outcome(
        &self,
        command: &CommandId,
        checked_after: Option<u64>,
    ) -> StoreResult<Option<AppendOutcome>> {
        match checked_after {
            Some(after) if after >= self.recent.forgotten_through => Ok(self
                .recent
                .outcomes
                .get(command)
                .filter(|(batch, _)| *batch > after)
                .map(|(_, outcome)| *outcome)),
            _ => stored_outcome(&self.log, command),
        }
    }

    fn write_group(&mut self, group: Vec<WriteRequest>) {
        let mut head = self.head;
        let mut versions: HashMap<StreamId, StreamVersion> = HashMap::new();
        let mut commands: HashMap<CommandId, AppendOutcome> = HashMap::new();
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut chunk = ChunkBuilder::default();
        let mut replies: Vec<(Reply, StoreResult<AppendOutcome>)> = Vec::new();
        for WriteRequest {
            append,
            checked_after,
            reply,
        } in group
        {
            let command = append.metadata.command_id;
            let known = match commands.get(&command) {
                Some(outcome) => Ok(Some(*outcome)),
                None => self.known_outcome(&command, checked_after),
            };
            match known {
                Ok(Some(outcome)) => {
                    replies.push((
                        reply,
                        Ok(AppendOutcome {
                            deduplicated: true,
                            ..outcome
                        }),
                    ));
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    replies.push((reply, Err(error)));
                    continue;
                }
            }
            let stream = append.stream.clone();
            let current = match versions.get(&stream) {
                Some(version) => *version,
                None => match self.version_of(&stream) {
                    Ok(version) => version,
                    Err(error) => {
                        replies.push((reply, Err(error)));
                        continue;
                    }
                },
            };
            let prepared = match append::prepare(append, head, current, self.max_record_bytes) {
                Ok(prepared) => prepared,
                Err(error) => {
                    replies.push((reply, Err(error)));
                    continue;
                }
            };
            let append_bytes: usize = prepared
                .records
                .iter()
                .map(|(_, bytes, _)| bytes.len() + 4)
                .sum();
            if !chunk.records.is_empty() && chunk.bytes + append_bytes > CHUNK_TARGET_BYTES {
                std::mem::take(&mut chunk).finish(&mut pairs);
            }
            if chunk.records.is_empty() {
                chunk.first = prepared.outcome.first_position.0;
            }
            for (position, bytes, recorded) in prepared.records {
                chunk.bytes += bytes.len() + 4;
                chunk.records.push(bytes);
                match chunk.streams.iter_mut().find(|(s, _, _)| *s == stream) {
                    Some((_, _, positions)) => positions.push(position.0),
                    None => {
                        chunk
                            .streams
                            .push((stream.clone(), recorded.version.0, vec![position.0]))
                    }
                }
            }
            pairs.push((
                layout::command_key(&command).to_vec(),
                outcome_to_bytes(&prepared.outcome).to_vec(),
            ));
            versions.insert(stream, prepared.new_version);
            commands.insert(command, prepared.outcome);
            head = prepared.new_head;
            replies.push((reply, Ok(prepared.outcome)));
        }
        chunk.finish(&mut pairs);
        if head != self.head {
            if let Err(error) = self.commit(self.head.position.0 + 1, head.position.0, &pairs) {
                for (reply, _) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
            self.head = head;
            if self.versions.len() + versions.len() > VERSION_CACHE_ENTRIES {
                self.versions.clear();
            }
            self.versions.extend(versions);
            let batch = self.applied_batches.load(Ordering::Relaxed) + 1;
            self.recent.remember(batch, commands.into_iter().collect());
            // After `apply_batch`: an appender that reads this number finds the batch in sled.
            self.applied_batches.store(batch, Ordering::Release);
        }
        let mut ready = Vec::with_capacity(replies.len());
        for (reply, result) in replies {
            match result {
                Ok(outcome) => ready.push(Pending {
                    last: outcome.last_position,
                    outcome,
                    reply,
                }),
                // An appender that gave up waiting is no reason to stop the others.
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
        }
        self.flush
            .acknowledge_when_durable(self.head.position, ready);
    }

    /// Inserts one batch into sled, chunks first, then writes it to the write-ahead log;
    /// checkpoints when the log has grown enough, or when the batch holds a value large enough
    /// for sled to put in a blob file (which only a checkpoint syncs).
    ///
    /// Plain inserts, not `apply_batch`: sled writes its IO buffer to disk twice for every
    /// batch (see BENCHMARKS.md). A crash can leave a batch partly in sled; the log holds every
    /// batch whole, and reopening restores it from there, or removes it if the log does not
    /// hold it (`recover`).
    fn commit(&mut self, first: u64, last: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> StoreResult<()> {
        let mut large = false;
        let chunks_first = pairs
            .iter()
            .filter(|(key, _)| key.first() == Some(&layout::EVENTS))
            .chain(
                pairs
                    .iter()
                    .filter(|(key, _)| key.first() != Some(&layout::EVENTS)),
            );
        for (key, value) in chunks_first {
            large |= value.len() > CHUNK_TARGET_BYTES;
            if let Err(error) = self.log.insert(key.as_slice(), value.as_slice()) {
                // Part of the batch may be in sled: nothing more is acknowledged.
                let error = sled_error(error);
                self.flush.fail(&self.durable, error.to_string());
                return Err(error);
            }
        }
        let record = wal::record(self.wal.generation, first, last, pairs);
        let logged = self.wal.append(&record).and_then(|()| {
            self.wal_keys += pairs.len();
            if large
                || self.wal.offset >= CHECKPOINT_WAL_BYTES
                || self.wal_keys >= CHECKPOINT_WAL_KEYS
            {
                self.checkpointer.run(&mut self.wal, Position(last))?;
                self.wal_keys = 0;
            }
            Ok(())
        });
        if let Err(error) = logged {
            let error = error.to_string();
            self.flush.fail(&self.durable, error.clone());
            return Err(StoreError::Io(error));
        }
        Ok(())
    }
}

/// The log's head as stored: the last chunk's last record.
fn stored_head(log: &sled::Tree) -> StoreResult<LogHead> {
    let Some((key, chunk)) = log
        .scan_prefix([layout::EVENTS])
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
    let opened =
        layout::open_chunk(&chunk).ok_or_else(|| corrupt(Position(first), "a chunk is damaged"))?;
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
        .range(layout::chunk_key(end + 1)..=layout::chunk_key(u64::MAX))
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

/// Reopening: sled holds every batch up to its last checkpoint whole, and may hold later ones
/// whole, in part or not at all; the write-ahead log holds whole the batches since the
/// checkpoint, up to some point (every acknowledged one, perhaps more). The store is the
/// checkpoint and the log: batches beyond the log are removed from sled, then the log's are
/// inserted again. Returns the head and the log's generation.
fn recover(log: &sled::Tree, meta: &sled::Tree, contents: &[u8]) -> StoreResult<(LogHead, u64)> {
    let stored = stored_head(log)?;
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
    let head = stored_head(log)?;
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

impl SledEventLog {
    /// Opens (or creates) the store in `directory`. Blocking: call it before serving, or from a
    /// blocking task.
    pub fn open(directory: &Path, options: StoreOptions) -> StoreResult<SledEventLog> {
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let db = sled::Config::new()
            .path(directory)
            .cache_capacity(options.cache_capacity_bytes)
            // Flushing is this store's job, at checkpoints; no background timer.
            .flush_every_ms(None)
            .open()
            .map_err(sled_error)?;
        Self::start(db, directory, options)
    }

    /// Opens the store on a sled database already open in `directory`: checks its format,
    /// recovers, checkpoints, and starts the writer and the flusher.
    fn start(db: sled::Db, directory: &Path, options: StoreOptions) -> StoreResult<SledEventLog> {
        let tree = |name: &str| db.open_tree(name).map_err(sled_error);
        let log = tree("log")?;
        let checkpoints = tree("checkpoints")?;
        let projections = tree("projections")?;
        let meta = tree("meta")?;
        match meta.get(FORMAT_KEY).map_err(sled_error)? {
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
                if found < STORE_FORMAT {
                    // Format 3 is format 4 without a write-ahead log: only the marker changes,
                    // so that a build of format 3 never opens a store whose log it would ignore.
                    meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())
                        .map_err(sled_error)?;
                }
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
            }
        }
        let wal_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(directory.join(wal::FILE))
            .map_err(io_error)?;
        let mut contents = Vec::new();
        (&wal_file).read_to_end(&mut contents).map_err(io_error)?;
        let (head, generation) = recover(&log, &meta, &contents)?;
        let wal_file = Arc::new(wal_file);
        let mut wal = WalWriter {
            file: wal_file.clone(),
            generation,
            offset: 0,
            allocated: contents.len() as u64,
        };
        drop(contents);
        // Whatever sled recovered, and whatever the log added, is made durable before anyone
        // can read it; the log starts again under a new generation.
        let db_file = File::open(directory.join("db")).map_err(io_error)?;
        let mut checkpointer = Checkpointer {
            db: db.clone(),
            meta,
            db_file,
            blobs: directory.join("blobs"),
            synced_blobs: HashSet::new(),
        };
        checkpointer
            .run(&mut wal, head.position)
            .map_err(io_error)?;
        sync_directory(directory)?;
        let durable = Arc::new(watch::Sender::new(Durable {
            position: head.position,
            failure: None,
        }));
        let flush = Arc::new(FlushControl::default());
        flush.lock().done = head.position.0;
        flush.lock().requested = head.position.0;
        let applied_batches = Arc::new(AtomicU64::new(0));
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            log: log.clone(),
            head,
            versions: HashMap::new(),
            recent: RecentCommands::default(),
            applied_batches: applied_batches.clone(),
            requests: receiver,
            flush: flush.clone(),
            durable: durable.clone(),
            max_record_bytes: options.max_record_bytes,
            checkpointer,
            wal,
            wal_keys: 0,
        };
        let flusher = Flusher {
            wal: wal_file,
            control: flush.clone(),
            durable: durable.clone(),
            mode: options.sync,
        };
        let writer = std::thread::Builder::new()
            .name("battleplan-writer".into())
            .spawn(move || writer.run())
            .map_err(io_error)?;
        let flusher = std::thread::Builder::new()
            .name("battleplan-flusher".into())
            .spawn(move || flusher.run())
            .map_err(io_error)?;
        Ok(SledEventLog {
            inner: Arc::new(Inner {
                log,
                checkpoints,
                projections,
                requests: Mutex::new(Some(sender)),
                durable,
                flush,
                applied_batches,
                threads: Mutex::new(vec![writer, flusher]),
                options,
            }),
        })
    }

    fn durable_position(&self) -> StoreResult<Position> {
        let durable = self.inner.durable.borrow();
        match &durable.failure {
            Some(failure) => Err(StoreError::Io(failure.clone())),
            None => Ok(durable.position),
        }
    }

    async fn wait_durable(&self, position: Position) -> StoreResult<()> {
        self.inner.flush.request(position);
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

    /// Calls `visit` with every stored event record at or after `from` and at most `until`, in
    /// order, with the position the store holds it under. Stops early when `visit` says so.
    fn for_each_record(
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
        for item in log.range(layout::chunk_key(start)..=layout::chunk_key(until)) {
            let (key, chunk) = item.map_err(sled_error)?;
            let first = u64_of(&key[1..])
                .ok_or_else(|| corrupt(Position(from), "an event key is not a position"))?;
            let opened = layout::open_chunk(&chunk)
                .ok_or_else(|| corrupt(Position(first), "a chunk is damaged"))?;
            let records = opened
                .records()
                .ok_or_else(|| corrupt(Position(first), "a chunk's framing is damaged"))?;
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
    /// the first problem. Reads chunk by chunk, with bounded memory.
    pub fn verify(&self) -> StoreResult<VerifyReport> {
        let mut verifier = Verifier::new();
        let mut problem = None;
        for item in self.inner.log.scan_prefix([layout::EVENTS]) {
            let (key, chunk) = item.map_err(sled_error)?;
            // A key that is not a position reads as 0: out of sequence, reported as such.
            let first = u64_of(&key[1..]).unwrap_or(0);
            let opened = layout::open_chunk(&chunk);
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
        Ok(VerifyReport {
            checked: verifier.checked(),
            head_hash: verifier.head_hash_hex(),
            problem,
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
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
        // The command id is looked up here, beside the other appenders, rather than in the one
        // writer; the writer then checks only the batches applied since.
        let applied = self.inner.applied_batches.load(Ordering::Acquire);
        if let Some(outcome) = stored_outcome(&self.inner.log, &append.metadata.command_id)? {
            // The first attempt may still be on its way to disk.
            self.wait_durable(outcome.last_position).await?;
            return Ok(AppendOutcome {
                deduplicated: true,
                ..outcome
            });
        }
        let (reply, answer) = oneshot::channel();
        {
            let requests = self
                .inner
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let sender = requests.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(WriteRequest {
                    append,
                    checked_after: Some(applied),
                    reply,
                })
                .map_err(|_| StoreError::Closed)?;
        }
        // The writer answers once the append is durable.
        answer.await.map_err(|_| StoreError::Closed)?
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
        let log = &self.inner.log;
        let from = from.0.max(1);
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
            for (offset, bytes) in value.chunks(8).enumerate() {
                let version = first_version + offset as u64;
                if version >= from && positions.len() < limit {
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
        let mut events = Vec::with_capacity(positions.len());
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
            let opened = layout::open_chunk(&chunk)
                .ok_or_else(|| corrupt(Position(first), "a chunk is damaged"))?;
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
        Ok(events)
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let durable = self.durable_position()?;
        if after >= durable || limit == 0 {
            return Ok(Vec::new());
        }
        let mut events = Vec::with_capacity(limit.min((durable.0 - after.0) as usize));
        self.for_each_record(after.0 + 1, durable.0, |position, bytes| {
            events.push(decode_at(position, bytes)?);
            Ok(events.len() < limit)
        })?;
        Ok(events)
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        stream_version_in(&self.inner.log, stream)
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
}
