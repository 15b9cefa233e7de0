//! The event store on sled 0.34.7: the embedded default.
//!
//! Layout (one sled database, several trees):
//! - `events`: position (u64, big-endian) -> record (see `battleplan_core::event::record`);
//! - `streams`: stream key + version -> position, to read one stream;
//! - `heads`: stream name -> current version;
//! - `commands`: command id -> the append's outcome, for idempotent retries;
//! - `meta`: the store's format version;
//! - `checkpoints` and `projections`: projection state and the position it reflects.
//!
//! When data is durable: an append is one sled transaction over `events`, `streams`, `heads` and
//! `commands` (all or none), made under a single writer lock that assigns gapless positions. The
//! caller then waits for the flusher thread, which runs `Db::flush` and then `fdatasync` on the
//! database file and on any new blob file (sled's `flush` uses `sync_file_range`, which does not
//! flush the disk's cache nor file metadata, and sled writes blob files without any sync). Many
//! appends that commit while one flush runs share the next one: group commit. `read_all`,
//! `head` and `wait_beyond` only ever show events that flush has made durable, so nothing a
//! projection or a dispatcher acts on can be lost in a crash. `read_stream` also shows committed
//! events whose flush is under way; an append that decides on them is itself acknowledged only
//! after both are durable, and a crash loses both or neither.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use battleplan_core::event::append::{self, outcome_from_bytes, outcome_to_bytes, LogHead};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::record;
use battleplan_core::event::verify::{Problem, Verifier};
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, Position, RecordedEvent, StoreError, StoreResult, StreamId,
    StreamVersion, GENESIS_HASH,
};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::watch;

/// The store layout this build writes. Opening a store with a larger number is refused.
pub const STORE_FORMAT: u32 = 1;

/// The largest record accepted: far above any event, far below memory trouble.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// sled's page cache, by default: bounded, so a long log never fills memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

const FORMAT_KEY: &[u8] = b"store-format";

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
}

struct Trees {
    events: sled::Tree,
    streams: sled::Tree,
    heads: sled::Tree,
    commands: sled::Tree,
    checkpoints: sled::Tree,
    projections: sled::Tree,
}

struct Inner {
    trees: Trees,
    writer: tokio::sync::Mutex<LogHead>,
    durable: Arc<watch::Sender<Durable>>,
    flush: Arc<FlushControl>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    options: StoreOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush.lock().shutdown = true;
        self.flush.wake.notify_all();
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            // The flusher finishes the flush under way and exits; a panic there already
            // reported its failure to every waiter.
            let _ = handle.join();
        }
    }
}

/// The sled event store. Cheap to clone; all clones share one database and one flusher.
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

fn stream_key(stream: &StreamId) -> Vec<u8> {
    let name = stream.as_str().as_bytes();
    let mut key = Vec::with_capacity(name.len() + 9);
    // Names are at most 255 bytes: the length prefix keeps one stream's keys from running into
    // another's whose name starts the same.
    key.push(name.len() as u8);
    key.extend_from_slice(name);
    key
}

fn projection_key(projection: &str, key: &[u8]) -> Vec<u8> {
    let name = projection.as_bytes();
    let mut full = Vec::with_capacity(2 + name.len() + key.len());
    full.extend_from_slice(&(name.len() as u16).to_be_bytes());
    full.extend_from_slice(name);
    full.extend_from_slice(key);
    full
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(array))
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
        let trees = Trees {
            events: tree("events")?,
            streams: tree("streams")?,
            heads: tree("heads")?,
            commands: tree("commands")?,
            checkpoints: tree("checkpoints")?,
            projections: tree("projections")?,
        };
        let meta = tree("meta")?;
        match meta.get(FORMAT_KEY).map_err(sled_error)? {
            Some(bytes) => {
                let found = bytes
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        position: Position::START,
                        detail: "the store's format marker is unreadable".into(),
                    })?;
                if found > STORE_FORMAT {
                    return Err(StoreError::NewerFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
            }
            None if !trees.events.is_empty() => {
                return Err(StoreError::Corrupt {
                    position: Position::START,
                    detail: "events without a format marker: this is not a battleplan store".into(),
                })
            }
            None => {
                meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())
                    .map_err(sled_error)?;
            }
        }
        let head = match trees.events.last().map_err(sled_error)? {
            Some((key, value)) => {
                let position = u64_of(&key).ok_or_else(|| StoreError::Corrupt {
                    position: Position::START,
                    detail: "an event key is not a position".into(),
                })?;
                let raw = record::split(&value).map_err(|error| StoreError::Corrupt {
                    position: Position(position),
                    detail: error.to_string(),
                })?;
                LogHead {
                    position: Position(position),
                    hash: raw.hash,
                }
            }
            None => LogHead {
                position: Position::START,
                hash: GENESIS_HASH,
            },
        };
        // Whatever sled recovered is made durable before anyone can read it.
        let db_file = File::open(directory.join("db")).map_err(io_error)?;
        db.flush().map_err(sled_error)?;
        db_file.sync_data().map_err(io_error)?;
        sync_directory(directory)?;
        let durable = Arc::new(watch::Sender::new(Durable {
            position: head.position,
            failure: None,
        }));
        let control = Arc::new(FlushControl::default());
        let flusher = Flusher {
            db: db.clone(),
            db_file,
            blobs: directory.join("blobs"),
            control: control.clone(),
            durable: durable.clone(),
            mode: options.sync,
        };
        let handle = std::thread::Builder::new()
            .name("battleplan-flusher".into())
            .spawn(move || flusher.run())
            .map_err(io_error)?;
        Ok(SledEventLog {
            inner: Arc::new(Inner {
                trees,
                writer: tokio::sync::Mutex::new(head),
                durable,
                flush: control,
                flusher: Mutex::new(Some(handle)),
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
        {
            let mut requests = self.inner.flush.lock();
            if requests.requested < position.0 {
                requests.requested = position.0;
            }
        }
        self.inner.flush.wake.notify_one();
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

    fn decode_at(position: Position, bytes: &[u8]) -> StoreResult<RecordedEvent> {
        record::decode(bytes).map_err(|error| StoreError::Corrupt {
            position,
            detail: error.to_string(),
        })
    }

    /// Walks the whole log and checks positions, the hash chain and stream versions; stops at
    /// the first problem. Reads in order with bounded memory.
    pub fn verify(&self) -> StoreResult<VerifyReport> {
        let mut verifier = Verifier::new();
        for item in self.inner.trees.events.iter() {
            let (key, value) = item.map_err(sled_error)?;
            // A key that is not a position reads as 0: out of sequence, reported as such.
            let position = Position(u64_of(&key).unwrap_or(0));
            if let Err(problem) = verifier.check(position, &value) {
                return Ok(VerifyReport {
                    checked: verifier.checked(),
                    head_hash: verifier.head_hash_hex(),
                    problem: Some(problem),
                });
            }
        }
        Ok(VerifyReport {
            checked: verifier.checked(),
            head_hash: verifier.head_hash_hex(),
            problem: None,
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }
}

#[async_trait]
impl EventAppender for SledEventLog {
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome> {
        self.durable_position()?;
        let trees = &self.inner.trees;
        let command_key = *append.metadata.command_id.0.as_bytes();
        let mut head = self.inner.writer.lock().await;
        if let Some(stored) = trees.commands.get(command_key).map_err(sled_error)? {
            drop(head);
            let outcome = outcome_from_bytes(&stored).ok_or_else(|| StoreError::Corrupt {
                position: Position::START,
                detail: format!(
                    "the outcome of command {} is unreadable",
                    append.metadata.command_id
                ),
            })?;
            // The first attempt may still be on its way to disk.
            self.wait_durable(outcome.last_position).await?;
            return Ok(outcome);
        }
        let stream = append.stream.clone();
        let current = match trees.heads.get(stream.as_str()).map_err(sled_error)? {
            Some(bytes) => StreamVersion(u64_of(&bytes).ok_or_else(|| StoreError::Corrupt {
                position: Position::START,
                detail: format!("the version of stream {stream} is unreadable"),
            })?),
            None => StreamVersion::NONE,
        };
        let prepared =
            append::prepare(append, *head, current, self.inner.options.max_record_bytes)?;
        let prefix = stream_key(&stream);
        let outcome_bytes = outcome_to_bytes(&prepared.outcome);
        let result: Result<(), TransactionError<()>> =
            (&trees.events, &trees.streams, &trees.heads, &trees.commands).transaction(
                |(events, streams, heads, commands)| {
                    for (position, bytes, recorded) in &prepared.records {
                        events.insert(&position.0.to_be_bytes(), bytes.as_slice())?;
                        let mut key = prefix.clone();
                        key.extend_from_slice(&recorded.version.0.to_be_bytes());
                        streams.insert(key, &position.0.to_be_bytes())?;
                    }
                    heads.insert(stream.as_str(), &prepared.new_version.0.to_be_bytes())?;
                    commands.insert(&command_key, &outcome_bytes)?;
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            );
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(error)) => return Err(sled_error(error)),
            Err(TransactionError::Abort(())) => {
                return Err(StoreError::Io("the append transaction was aborted".into()))
            }
        }
        *head = prepared.new_head;
        drop(head);
        self.wait_durable(prepared.outcome.last_position).await?;
        Ok(prepared.outcome)
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
        let trees = &self.inner.trees;
        let prefix = stream_key(stream);
        let mut start = prefix.clone();
        start.extend_from_slice(&from.0.max(1).to_be_bytes());
        let mut events = Vec::new();
        for item in trees.streams.range(start..).take(limit) {
            let (key, value) = item.map_err(sled_error)?;
            if !key.starts_with(&prefix) || key.len() != prefix.len() + 8 {
                break;
            }
            let position = Position(u64_of(&value).unwrap_or(0));
            let bytes = trees
                .events
                .get(position.0.to_be_bytes())
                .map_err(sled_error)?
                .ok_or_else(|| StoreError::Corrupt {
                    position,
                    detail: format!("stream {stream} points at a missing event"),
                })?;
            events.push(Self::decode_at(position, &bytes)?);
        }
        Ok(events)
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let durable = self.durable_position()?;
        if after >= durable || limit == 0 {
            return Ok(Vec::new());
        }
        let start = after.0 + 1;
        let mut events = Vec::with_capacity(limit.min((durable.0 - after.0) as usize));
        for item in self
            .inner
            .trees
            .events
            .range(start.to_be_bytes()..=durable.0.to_be_bytes())
            .take(limit)
        {
            let (key, value) = item.map_err(sled_error)?;
            let position = Position(u64_of(&key).unwrap_or(0));
            events.push(Self::decode_at(position, &value)?);
        }
        Ok(events)
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        match self
            .inner
            .trees
            .heads
            .get(stream.as_str())
            .map_err(sled_error)?
        {
            Some(bytes) => Ok(StreamVersion(u64_of(&bytes).unwrap_or(0))),
            None => Ok(StreamVersion::NONE),
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
        let stored = self
            .inner
            .trees
            .checkpoints
            .get(projection)
            .map_err(sled_error)?;
        Ok(Position(stored.as_deref().and_then(u64_of).unwrap_or(0)))
    }

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let value = self
            .inner
            .trees
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
        let trees = &self.inner.trees;
        let result: Result<(), TransactionError<Position>> =
            (&trees.checkpoints, &trees.projections).transaction(|(checkpoints, projections)| {
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
            .trees
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
        let trees = &self.inner.trees;
        // A projection has one writer, the runner calling this: the keys read here are all
        // there is. State and checkpoint go together, so a rebuild never starts on stale state.
        let keys: Vec<sled::IVec> = trees
            .projections
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(sled_error)?;
        let result: Result<(), TransactionError<()>> = (&trees.checkpoints, &trees.projections)
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
