//! The event store on sled 0.34.7: the embedded default.
//!
//! sled costs tens of microseconds per commit and about two per key visited, whatever the size
//! of the value, so the store commits and stores in bulk: one writer thread takes every append
//! waiting at once and commits them as one atomic batch, and the events of a batch are stored
//! together as one "chunk". Layout, in one tree `log` (one tree, so a batch is atomic):
//! - `E` + first position (u64, big-endian) -> chunk: the records of consecutive events
//!   (`u32` count, then each record as `u32` length + bytes; see
//!   `battleplan_core::event::record`), compressed with lz4 (records repeat their streams,
//!   types and actors, so a chunk shrinks about threefold, and so does what sled keeps in memory
//!   while reading). An append's events are never split across chunks.
//! - `S` + stream key + first version -> the positions of that stream's events in one chunk (a
//!   stream's version is where its last entry ends);
//! - `C` + command id -> the append's outcome, for idempotent retries.
//!
//! Beside it: `meta` (the store format), `checkpoints` and `projections` (projection state and
//! the position it reflects, changed together in one transaction).
//!
//! When data is durable: the writer applies a batch (all of it or none), then hands its last
//! position to the flusher thread, which runs `Db::flush` and then `fdatasync` on the database
//! file and on any blob file sled created since (sled's `flush` uses `sync_file_range`, which
//! flushes neither the disk's cache nor file metadata, and sled writes blob files without any
//! sync). An append is acknowledged only when the flusher reports its position durable. While one
//! flush runs, the writer applies the next batch: group commit, pipelined. `read_all`, `head` and
//! `wait_beyond` show only durable events, so nothing a projection or a dispatcher acts on can be
//! lost in a crash. `read_stream` and `stream_version` also show applied events whose flush is
//! under way: an append that decides on them is acknowledged only after both are durable, and a
//! crash loses both or neither.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
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

/// The store layout this build writes. Opening a store with another number is refused.
/// Format 3 stores events in lz4-compressed chunks.
pub const STORE_FORMAT: u32 = 3;

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
    /// `Db::flush` then `fdatasync` of the database and new blob files. The default.
    Durable,
    /// `Db::flush` alone. Not a durability barrier on Linux; only for measuring what the
    /// `fdatasync` costs (see BENCHMARKS.md).
    FlushOnly,
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

#[derive(Debug, Default)]
struct FlushRequests {
    requested: u64,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct FlushControl {
    requests: Mutex<FlushRequests>,
    wake: Condvar,
}

impl FlushControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlushRequests> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn request(&self, position: Position) {
        {
            let mut requests = self.lock();
            if requests.requested < position.0 {
                requests.requested = position.0;
            }
        }
        self.wake.notify_one();
    }
}

struct WriteRequest {
    append: Append,
    reply: oneshot::Sender<StoreResult<AppendOutcome>>,
}

struct Inner {
    log: sled::Tree,
    checkpoints: sled::Tree,
    projections: sled::Tree,
    requests: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    durable: Arc<watch::Sender<Durable>>,
    flush: Arc<FlushControl>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    options: StoreOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has applied what it holds; then the flusher
        // makes that durable and ends.
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

struct Flusher {
    db: sled::Db,
    db_file: File,
    blobs: PathBuf,
    control: Arc<FlushControl>,
    durable: Arc<watch::Sender<Durable>>,
    mode: SyncMode,
}

impl Flusher {
    fn run(self) {
        let mut done = self.durable.borrow().position.0;
        let mut synced_blobs = HashSet::new();
        loop {
            let target = {
                let mut requests = self.control.lock();
                while requests.requested <= done && !requests.shutdown {
                    requests = self
                        .control
                        .wake
                        .wait(requests)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if requests.requested <= done {
                    return;
                }
                requests.requested
            };
            let result = self.db.flush().map_err(|e| e.to_string()).and_then(|_| {
                if self.mode == SyncMode::Durable {
                    self.db_file.sync_data().map_err(|e| e.to_string())?;
                    sync_new_blobs(&self.blobs, &mut synced_blobs).map_err(|e| e.to_string())?;
                }
                Ok(())
            });
            match result {
                Ok(()) => {
                    done = target;
                    self.durable
                        .send_modify(|durable| durable.position = Position(target));
                }
                Err(error) => {
                    tracing::error!(%error, "flushing the event store failed; no further append is acknowledged");
                    self.durable
                        .send_modify(|durable| durable.failure = Some(error));
                    return;
                }
            }
        }
    }
}

/// The one writer: takes every append waiting, lays them out after the log's head, and commits
/// them as one batch.
struct Writer {
    log: sled::Tree,
    head: LogHead,
    /// Stream versions as of the last applied batch. The writer is the only writer, so an
    /// entry is never stale; the cache is dropped when it grows past `VERSION_CACHE_ENTRIES`.
    versions: HashMap<StreamId, StreamVersion>,
    requests: mpsc::Receiver<WriteRequest>,
    flush: Arc<FlushControl>,
    durable: Arc<watch::Sender<Durable>>,
    max_record_bytes: usize,
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
    fn finish(self, batch: &mut sled::Batch) {
        if self.records.is_empty() {
            return;
        }
        let records: Vec<&[u8]> = self.records.iter().map(Vec::as_slice).collect();
        batch.insert(&layout::chunk_key(self.first), layout::chunk_of(&records));
        for (stream, first_version, positions) in self.streams {
            let mut value = Vec::with_capacity(positions.len() * 8);
            for position in positions {
                value.extend_from_slice(&position.to_be_bytes());
            }
            batch.insert(layout::stream_index_key(&stream, first_version), value);
        }
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
            if self.durable.borrow().failure.is_some() {
                for request in group {
                    let _ = request.reply.send(Err(StoreError::Io(
                        "the store failed earlier; restart battleplan".into(),
                    )));
                }
                continue;
            }
            self.write_group(group);
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

    fn outcome_in_store(&self, command: &CommandId) -> StoreResult<Option<AppendOutcome>> {
        match self
            .log
            .get(layout::command_key(command))
            .map_err(sled_error)?
        {
            Some(bytes) => outcome_from_bytes(&bytes).map(Some).ok_or_else(|| {
                corrupt(
                    Position::START,
                    format!("the outcome of command {command} is unreadable"),
                )
            }),
            None => Ok(None),
        }
    }

    fn write_group(&mut self, group: Vec<WriteRequest>) {
        let mut head = self.head;
        let mut versions: HashMap<StreamId, StreamVersion> = HashMap::new();
        let mut commands: HashMap<CommandId, AppendOutcome> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut chunk = ChunkBuilder::default();
        let mut replies = Vec::with_capacity(group.len());
        for WriteRequest { append, reply } in group {
            let command = append.metadata.command_id;
            let known = match commands.get(&command) {
                Some(outcome) => Ok(Some(*outcome)),
                None => self.outcome_in_store(&command),
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
                std::mem::take(&mut chunk).finish(&mut batch);
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
            batch.insert(
                &layout::command_key(&command),
                &outcome_to_bytes(&prepared.outcome),
            );
            versions.insert(stream, prepared.new_version);
            commands.insert(command, prepared.outcome);
            head = prepared.new_head;
            replies.push((reply, Ok(prepared.outcome)));
        }
        chunk.finish(&mut batch);
        if head != self.head {
            if let Err(error) = self.log.apply_batch(batch) {
                let error = sled_error(error);
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
            self.flush.request(head.position);
        }
        for (reply, result) in replies {
            // An appender that gave up waiting is no reason to stop the others.
            let _ = reply.send(result);
        }
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

impl SledEventLog {
    /// Opens (or creates) the store in `directory`. Blocking: call it before serving, or from a
    /// blocking task.
    pub fn open(directory: &Path, options: StoreOptions) -> StoreResult<SledEventLog> {
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let db = sled::Config::new()
            .path(directory)
            .cache_capacity(options.cache_capacity_bytes)
            // Flushing is this store's job, on demand; no background timer.
            .flush_every_ms(None)
            .open()
            .map_err(sled_error)?;
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
                if found < STORE_FORMAT {
                    return Err(corrupt(
                        Position::START,
                        format!("format {found} predates the first release; export it with the build that wrote it"),
                    ));
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
        let head = stored_head(&log)?;
        // Whatever sled recovered is made durable before anyone can read it.
        let db_file = File::open(directory.join("db")).map_err(io_error)?;
        db.flush().map_err(sled_error)?;
        db_file.sync_data().map_err(io_error)?;
        sync_directory(directory)?;
        let durable = Arc::new(watch::Sender::new(Durable {
            position: head.position,
            failure: None,
        }));
        let flush = Arc::new(FlushControl::default());
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            log: log.clone(),
            head,
            versions: HashMap::new(),
            requests: receiver,
            flush: flush.clone(),
            durable: durable.clone(),
            max_record_bytes: options.max_record_bytes,
        };
        let flusher = Flusher {
            db: db.clone(),
            db_file,
            blobs: directory.join("blobs"),
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
        let (reply, answer) = oneshot::channel();
        {
            let requests = self
                .inner
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let sender = requests.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(WriteRequest { append, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        let outcome = answer.await.map_err(|_| StoreError::Closed)??;
        // A deduplicated answer waits too: the first attempt may still be on its way to disk.
        self.wait_durable(outcome.last_position).await?;
        Ok(outcome)
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
