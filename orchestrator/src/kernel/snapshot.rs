//! Snapshots of the projections a process holds in memory (the customer book, the outbox and the
//! boards), saved in the store with the log position they stand at, so that a daemon, or a
//! command run without one, reads the snapshot and replays only the tail of the log.
//!
//! A snapshot is the three projections in MessagePack (`rmp_serde`, structs as maps that name
//! their fields, since many leave out a field when it is empty; the rows held per customer, the
//! book's customers and the funnel's entries, as arrays), under the projection [`PROJECTION`] of
//! the store's checkpoints: a header (JSON: the format, the position, the bytes and their BLAKE3
//! digest, and where the bytes are) committed with the checkpoint. Where the bytes are:
//!
//! - in a file of the store's own ([`files_directory`](battleplan_core::event::Checkpoints::files_directory); the sled store's `files/`),
//!   when the store keeps files: written as it is encoded, made durable and renamed to its name
//!   (`snapshot-POSITION.msgpack`) before the header naming it is committed, and read back as a
//!   stream (a snapshot of a million customers is some 300 MB: read from a value of sled's, it
//!   was copied three times and checksummed twice, more than half of a warm start). A file no
//!   committed header names (the snapshot before, or one whose commit never came) is removed
//!   after the next snapshot is committed;
//! - else cut into chunks of [`CHUNK`] bytes, values of the projection keyed by the position,
//!   written in the same commit (the old snapshot's chunks deleted in it).
//!
//! Reading one checks everything the header says; a header of another [`FORMAT`], a chunk or a
//! file missing or a digest that differs make the snapshot unusable and the projections are
//! rebuilt from the log, never misread (the bytes, a file or chunks, are decoded as they stream, and what was decoded is
//! used only once the digest of every byte is found to be the header's). `audit verify` replays
//! the log up to the snapshot's position and checks that the snapshot equals what the replay made
//! (`app::audit`).
//!
//! When: after a catch-up that replayed at least [`due`]'s tail since the last snapshot, and
//! when the daemon stops. The scenario runner does not save them (its store is thrown away).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use battleplan_core::customer::book::CustomerBook;
use battleplan_core::event::{Position, StoreError};
use battleplan_core::outreach::Outreach;
use serde::{Deserialize, Serialize};

use super::runtime::Store;
use super::work::Boards;

/// The projection (of the store's checkpoints) that holds the snapshot.
pub const PROJECTION: &str = "snapshot";

/// The snapshot's layout: raised whenever a type a snapshot holds changes (the test
/// `a_snapshot_of_a_known_log_is_these_bytes` fails until it is). A snapshot of another format
/// is not read: the projections are rebuilt from the log and a new snapshot replaces it.
pub const FORMAT: u32 = 1;

/// The size of a chunk.
pub const CHUNK: usize = 4 << 20;

/// The fewest events replayed since the last snapshot for a new one to be saved: a tenth of the
/// log, and at least this.
pub const MIN_TAIL: u64 = 100_000;

const HEADER: &[u8] = b"header";

/// What may be done with snapshots in a process (see [`super::runtime::Runtime::snapshots`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Read the snapshot before the first catch-up.
    pub load: bool,
    /// Save snapshots (a process that owns the store; not a read-only copy).
    pub save: bool,
}

impl Policy {
    /// Read and write: the daemon, and a command that opened the store itself.
    pub const OWNER: Policy = Policy {
        load: true,
        save: true,
    };
    /// Read only: a command reading a copy of the store, or a store it may not change.
    pub const READER: Policy = Policy {
        load: true,
        save: false,
    };
}

/// Whether a snapshot is due at `position`, the last one being at `last`.
pub fn due(last: u64, position: u64) -> bool {
    let tail = position.saturating_sub(last);
    tail >= MIN_TAIL.max(position / 10)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    format: u32,
    position: u64,
    chunks: u32,
    bytes: u64,
    /// BLAKE3 of the bytes, in hex.
    digest: String,
    /// The file in the store's files directory that holds the bytes (then `chunks` is 0);
    /// absent when the chunks do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

/// The names of snapshot files: `snapshot-POSITION.msgpack`, the position in 20 digits.
const FILE_PREFIX: &str = "snapshot-";
const FILE_SUFFIX: &str = ".msgpack";
/// A snapshot file being written: `.snapshot-PID-RANDOM` (another process's is an orphan: no
/// two processes own a store's directory at once).
const PARTIAL_PREFIX: &str = ".snapshot-";

fn file_name(position: u64) -> String {
    format!("{FILE_PREFIX}{position:020}{FILE_SUFFIX}")
}

/// The position a snapshot file's name holds, if it is one's.
fn file_position(name: &str) -> Option<u64> {
    name.strip_prefix(FILE_PREFIX)?
        .strip_suffix(FILE_SUFFIX)
        .filter(|digits| digits.len() == 20 && digits.bytes().all(|byte| byte.is_ascii_digit()))?
        .parse()
        .ok()
}

/// The three projections, as a snapshot holds them.
#[derive(Debug, Default, PartialEq)]
pub struct Projections {
    pub book: CustomerBook,
    pub outreach: Outreach,
    pub boards: Boards,
}

impl Projections {
    /// Feeds the projections the log's events after their position, up to `to`: what replaying
    /// the log up to there gives (the tests' yardstick for a snapshot).
    pub async fn replay_to(&mut self, store: &dyn Store, to: Position) -> Result<(), String> {
        let mut after = self.book.position;
        while after < to {
            let events = store
                .read_all(after, 1_000)
                .await
                .map_err(|error| error.to_string())?;
            if events.is_empty() {
                break;
            }
            for event in events.iter().take_while(|event| event.position <= to) {
                after = event.position;
                super::work::feed(&mut self.book, &mut self.outreach, &mut self.boards, event)
                    .map_err(|error| format!("position {}: {error}", event.position))?;
            }
            if events.last().is_some_and(|last| last.position > to) {
                break;
            }
        }
        Ok(())
    }
}

/// A snapshot made, not yet saved.
#[derive(Debug)]
pub struct Encoded {
    header: Header,
    body: Body,
}

/// Where a snapshot made is, until it is saved.
#[derive(Debug)]
enum Body {
    Chunks(Vec<Vec<u8>>),
    /// Written in the files directory, under a name of its own until it is saved (removed when
    /// dropped unsaved).
    File {
        partial: tempfile::NamedTempFile,
        directory: PathBuf,
    },
}

impl Encoded {
    pub fn position(&self) -> Position {
        Position(self.header.position)
    }

    pub fn bytes(&self) -> u64 {
        self.header.bytes
    }

    /// BLAKE3 of the bytes, in hex.
    pub fn digest(&self) -> &str {
        &self.header.digest
    }
}

/// Why a snapshot could not be read (it is then not used: the log is replayed).
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("the snapshot's header cannot be read: {0}")]
    Header(String),
    #[error("the snapshot is of format {found}; this battleplan reads format {FORMAT}")]
    Format { found: u32 },
    #[error("the snapshot says position {header} but its checkpoint is {checkpoint}")]
    Position { header: u64, checkpoint: u64 },
    #[error("the snapshot's chunk {0} is missing")]
    Missing(u32),
    #[error("the snapshot's file {name} cannot be read: {error}")]
    File { name: String, error: String },
    #[error("the snapshot's bytes are not those its header names (digest or length differ)")]
    Digest,
    #[error("the snapshot cannot be decoded: {0}")]
    Decode(String),
    #[error("the snapshot's projections stand at different positions")]
    Positions,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The bytes written, cut into chunks of [`CHUNK`] bytes.
struct Chunks(Vec<Vec<u8>>);

impl Write for Chunks {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let written = bytes.len();
        while !bytes.is_empty() {
            let room = match self.0.last() {
                Some(last) if last.len() < CHUNK => CHUNK - last.len(),
                _ => {
                    self.0.push(Vec::with_capacity(CHUNK));
                    CHUNK
                }
            };
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            if let Some(last) = self.0.last_mut() {
                last.extend_from_slice(now);
            }
            bytes = rest;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    bytes: u64,
    hasher: blake3::Hasher,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            bytes: 0,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A buffered reader that hashes and counts every byte it reads from `inner`, a buffer at a
/// time (hashing what the decoder takes a byte or two at a time would cost more than decoding).
struct Hashed<R> {
    inner: R,
    buffer: Box<[u8]>,
    at: usize,
    filled: usize,
    bytes: u64,
    hasher: blake3::Hasher,
}

impl<R: Read> Hashed<R> {
    fn new(inner: R) -> Hashed<R> {
        Hashed {
            inner,
            buffer: vec![0; 1 << 20].into_boxed_slice(),
            at: 0,
            filled: 0,
            bytes: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    /// Reads the next bufferful, once the one before is used up; 0 at the end.
    fn fill(&mut self) -> std::io::Result<usize> {
        let read = loop {
            match self.inner.read(&mut self.buffer) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read?,
            }
        };
        self.hasher.update(&self.buffer[..read]);
        self.bytes += read as u64;
        (self.at, self.filled) = (0, read);
        Ok(read)
    }

    /// Reads to the end, so that every byte is hashed and counted.
    fn finish(&mut self) -> std::io::Result<()> {
        self.at = self.filled;
        while self.fill()? > 0 {}
        Ok(())
    }
}

impl<R: Read> Read for Hashed<R> {
    /// The decoder asks for a few bytes at a time (a marker, a number): taken straight from the
    /// buffer when it holds them.
    #[inline]
    fn read_exact(&mut self, buffer: &mut [u8]) -> std::io::Result<()> {
        if let Some(bytes) = self.buffer[..self.filled].get(self.at..self.at + buffer.len()) {
            buffer.copy_from_slice(bytes);
            self.at += buffer.len();
            return Ok(());
        }
        let mut done = 0;
        while done < buffer.len() {
            match self.read(&mut buffer[done..])? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }

    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.filled && self.fill()? == 0 {
            return Ok(0);
        }
        let n = buffer.len().min(self.filled - self.at);
        buffer[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The chunks read back one after another, each let go once read (the projections grow as
/// the chunks go).
struct ChunkReader {
    chunks: std::collections::VecDeque<Vec<u8>>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while let Some(first) = self.chunks.front() {
            if self.at < first.len() {
                let n = buffer.len().min(first.len() - self.at);
                buffer[..n].copy_from_slice(&first[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            self.chunks.pop_front();
            self.at = 0;
        }
        Ok(0)
    }
}

/// Makes a snapshot of the three projections, which stand at the same position: in a file of
/// `files` (the store's [`files_directory`](battleplan_core::event::Checkpoints::files_directory)) when there is one, else in chunks.
pub fn encode(
    book: &CustomerBook,
    outreach: &Outreach,
    boards: &Boards,
    files: Option<&Path>,
) -> Result<Encoded, String> {
    let position = book.position.min(outreach.position).min(boards.position);
    if book.position != position || outreach.position != position || boards.position != position {
        return Err(format!(
            "the projections stand at different positions (book {}, outbox {}, boards {})",
            book.position, outreach.position, boards.position
        ));
    }
    if let Some(directory) = files {
        return encode_to_file(book, outreach, boards, position, directory)
            .map_err(|error| format!("{}: {error}", directory.display()));
    }
    let mut writer = Hashing::new(Chunks(Vec::new()));
    rmp_serde::encode::write_named(&mut writer, &(book, outreach, boards))
        .map_err(|error| error.to_string())?;
    let Hashing {
        inner: Chunks(chunks),
        bytes,
        hasher,
    } = writer;
    Ok(Encoded {
        header: Header {
            format: FORMAT,
            position: position.0,
            chunks: u32::try_from(chunks.len()).map_err(|_| "too many chunks".to_string())?,
            bytes,
            digest: hasher.finalize().to_hex().to_string(),
            file: None,
        },
        body: Body::Chunks(chunks),
    })
}

fn encode_to_file(
    book: &CustomerBook,
    outreach: &Outreach,
    boards: &Boards,
    position: Position,
    directory: &Path,
) -> std::io::Result<Encoded> {
    let existed = directory.is_dir();
    battleplan_adapters::private::directory(directory)?;
    if !existed {
        if let Some(parent) = directory.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    let partial = tempfile::Builder::new()
        .prefix(&format!("{PARTIAL_PREFIX}{}-", std::process::id()))
        .tempfile_in(directory)?;
    let (bytes, hasher) = {
        let mut writer = Hashing::new(BufWriter::with_capacity(1 << 20, partial.as_file()));
        rmp_serde::encode::write_named(&mut writer, &(book, outreach, boards))
            .map_err(std::io::Error::other)?;
        writer.flush()?;
        (writer.bytes, writer.hasher)
    };
    Ok(Encoded {
        header: Header {
            format: FORMAT,
            position: position.0,
            chunks: 0,
            bytes,
            digest: hasher.finalize().to_hex().to_string(),
            file: Some(file_name(position.0)),
        },
        body: Body::File {
            partial,
            directory: directory.to_path_buf(),
        },
    })
}

fn chunk_key(position: u64, index: u32) -> Vec<u8> {
    format!("chunk/{position:020}/{index:06}").into_bytes()
}

async fn header(store: &dyn Store) -> Result<Option<Header>, Unusable> {
    let Some(bytes) = store.get(PROJECTION, HEADER).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| Unusable::Header(error.to_string()))
}

/// Saves a snapshot in one commit with its checkpoint, deleting the previous one's chunks (and,
/// once committed, the files no header names any more). A snapshot at or behind the one stored
/// is not saved (another process saved a newer one). Returns whether it was saved.
pub async fn save(store: &dyn Store, encoded: Encoded) -> Result<bool, StoreError> {
    let checkpoint = store.checkpoint(PROJECTION).await?;
    if checkpoint.0 >= encoded.header.position && checkpoint != Position::START {
        return Ok(false);
    }
    let Encoded { header, body } = encoded;
    let mut changes = Vec::new();
    // The previous chunks, as its header names them (an unreadable header leaves nothing known
    // to delete but its own key, which is replaced).
    // The previous file is kept until the next snapshot: a command reading a copy of the store
    // taken before this commit (`audit verify`) may be about to read it.
    let mut keep_from = header.position;
    if let Ok(Some(previous)) = self::header(store).await {
        for index in 0..previous.chunks {
            changes.push((chunk_key(previous.position, index), None));
        }
        if previous.file.is_some() {
            keep_from = previous.position;
        }
    }
    let header_bytes =
        serde_json::to_vec(&header).map_err(|error| StoreError::Invalid(error.to_string()))?;
    changes.push((HEADER.to_vec(), Some(header_bytes)));
    let position = header.position;
    let written = match body {
        Body::Chunks(chunks) => {
            for (index, chunk) in chunks.into_iter().enumerate() {
                changes.push((chunk_key(position, index as u32), Some(chunk)));
            }
            None
        }
        Body::File { partial, directory } => {
            let path = directory.join(file_name(position));
            persist(partial, &path, &directory).map_err(|error| {
                StoreError::Io(format!("the snapshot file {}: {error}", path.display()))
            })?;
            Some((path, directory))
        }
    };
    let committed = match store.commit(PROJECTION, Position(position), changes).await {
        Ok(()) => Ok(true),
        // Another process moved the checkpoint past this one meanwhile.
        Err(StoreError::Invalid(_)) if store.checkpoint(PROJECTION).await? > Position(position) => {
            Ok(false)
        }
        Err(error) => Err(error),
    };
    if let Some((path, directory)) = written {
        if matches!(committed, Ok(true)) {
            // The files before are removed only once no crash can bring back a header that
            // names one.
            match store.sync().await {
                Ok(()) => remove_files_before(&directory, keep_from),
                Err(error) => tracing::warn!(
                    "the snapshot's commit is not yet durable ({error}); the files before it are kept"
                ),
            }
        } else if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(
                "the snapshot file {} was not removed: {error}",
                path.display()
            );
        }
    }
    committed
}

/// Makes a snapshot file durable under its name, in a directory durable with it.
fn persist(partial: tempfile::NamedTempFile, path: &Path, directory: &Path) -> std::io::Result<()> {
    partial.as_file().sync_all()?;
    partial.persist(path).map_err(|error| error.error)?;
    std::fs::File::open(directory)?.sync_all()
}

/// Removes the snapshot files of positions before `position` (the snapshot before the one just
/// committed is kept: see [`save`]) and what a process that ended left half-written. Failures
/// are said, not fatal: the next snapshot tries again.
fn remove_files_before(directory: &Path, position: u64) {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!("{}: {error}", directory.display());
            return;
        }
    };
    let ours = format!("{PARTIAL_PREFIX}{}-", std::process::id());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = file_position(name).is_some_and(|at| at < position)
            || (name.starts_with(PARTIAL_PREFIX) && !name.starts_with(&ours));
        if stale {
            if let Err(error) = std::fs::remove_file(entry.path()) {
                tracing::warn!("{}: {error}", entry.path().display());
            }
        }
    }
}

/// The snapshot stored: `None` when there is none, an error saying why when there is one that
/// cannot be used (the caller replays the log instead).
pub async fn load(store: &dyn Store) -> Result<Option<Projections>, Unusable> {
    let checkpoint = store.checkpoint(PROJECTION).await?;
    let Some(header) = header(store).await? else {
        return Ok(None);
    };
    if header.format != FORMAT {
        return Err(Unusable::Format {
            found: header.format,
        });
    }
    if header.position != checkpoint.0 {
        return Err(Unusable::Position {
            header: header.position,
            checkpoint: checkpoint.0,
        });
    }
    let (book, outreach, boards) = match &header.file {
        Some(name) => read_file(store, &header, name)?,
        None => read_chunks(store, &header).await?,
    };
    let position = Position(header.position);
    if book.position != position || outreach.position != position || boards.position != position {
        return Err(Unusable::Positions);
    }
    Ok(Some(Projections {
        book,
        outreach,
        boards,
    }))
}

type Decoded = (CustomerBook, Outreach, Boards);

async fn read_chunks(store: &dyn Store, header: &Header) -> Result<Decoded, Unusable> {
    let mut chunks = std::collections::VecDeque::with_capacity(header.chunks as usize);
    for index in 0..header.chunks {
        let Some(chunk) = store
            .get(PROJECTION, &chunk_key(header.position, index))
            .await?
        else {
            return Err(Unusable::Missing(index));
        };
        chunks.push_back(chunk);
    }
    decode_checked(ChunkReader { chunks, at: 0 }, header, |error| {
        Unusable::Decode(error.to_string())
    })
}

/// Decodes the snapshot's bytes as they stream, then reads what is left of them: what was
/// decoded is returned only when every byte's digest is the header's. `unreadable` says why
/// the bytes could not be read to their end.
fn decode_checked(
    bytes: impl Read,
    header: &Header,
    unreadable: impl Fn(std::io::Error) -> Unusable,
) -> Result<Decoded, Unusable> {
    let mut reader = Hashed::new(bytes);
    let decoded: Result<Decoded, _> = rmp_serde::from_read(&mut reader);
    reader.finish().map_err(unreadable)?;
    if reader.bytes != header.bytes || reader.hasher.finalize().to_hex().as_str() != header.digest {
        return Err(Unusable::Digest);
    }
    decoded.map_err(|error| Unusable::Decode(error.to_string()))
}

/// The snapshot's file, decoded as it streams ([`decode_checked`]).
fn read_file(store: &dyn Store, header: &Header, name: &str) -> Result<Decoded, Unusable> {
    let unreadable = |error: std::io::Error| Unusable::File {
        name: name.to_string(),
        error: error.to_string(),
    };
    // A header names a file of its own directory, nothing else.
    if file_position(name) != Some(header.position) {
        return Err(Unusable::Header(format!(
            "it names {name:?}, not the file of its position"
        )));
    }
    let Some(directory) = store.files_directory() else {
        return Err(unreadable(std::io::Error::other(
            "this store keeps no files",
        )));
    };
    let file = std::fs::File::open(directory.join(name)).map_err(unreadable)?;
    decode_checked(file, header, unreadable)
}

/// The position of the snapshot stored, if there is one with a readable header.
pub async fn position(store: &dyn Store) -> Result<Option<Position>, StoreError> {
    Ok(stored(store).await?.map(|(position, _)| position))
}

/// The position and the size in bytes of the snapshot stored, if there is one with a readable
/// header.
pub async fn stored(store: &dyn Store) -> Result<Option<(Position, u64)>, StoreError> {
    Ok(match header(store).await {
        Ok(Some(header)) => Some((Position(header.position), header.bytes)),
        Ok(None) | Err(Unusable::Header(_)) => None,
        Err(Unusable::Store(error)) => return Err(error),
        Err(_) => None,
    })
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_after_a_tenth_of_the_log_and_at_least_the_least_tail() {
        assert!(!due(0, MIN_TAIL - 1));
        assert!(due(0, MIN_TAIL));
        assert!(!due(5_000_000, 5_400_000));
        assert!(due(5_000_000, 5_600_000));
        assert!(!due(10, 5));
    }

    /// Fields left out when empty (as the events' JSON and MessagePack leave them) in the middle
    /// of a struct: a snapshot names each field, so none is read as the next one.
    #[test]
    fn shop_numbers_with_figures_missing_read_back_as_they_were() {
        use battleplan_core::metrics::{Figures, MetricsRecorded, Period};
        let day = chrono::NaiveDate::from_ymd_opt(2026, 9, 3).unwrap_or_default();
        let start = chrono::DateTime::from_timestamp(1_788_364_800, 0).unwrap_or_default();
        let recorded = MetricsRecorded {
            period: Period {
                date: day,
                hour: None,
            },
            zone: "Asia/Shanghai".to_string(),
            start,
            end: start + chrono::Duration::days(1),
            figures: Figures {
                visitors: Some(12_250),
                inquiries: None,
                new_fans: Some(80),
                ..Figures::default()
            },
            corrects: Figures::default(),
            hot_products: None,
            hot_keywords: None,
            file: "shop.csv".to_string(),
            digest: "00".repeat(32),
            line: 2,
        };
        let mut boards = Boards::default();
        boards.shop.apply(&recorded, start);
        let (book, outreach) = (CustomerBook::default(), Outreach::default());
        let encoded = encode(&book, &outreach, &boards, None).unwrap_or_else(|why| panic!("{why}"));
        let Body::Chunks(chunks) = encoded.body else {
            panic!("no files directory: chunks")
        };
        let reader = ChunkReader {
            chunks: chunks.into(),
            at: 0,
        };
        let (_, _, back): (CustomerBook, Outreach, Boards) =
            rmp_serde::from_read(reader).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, boards);
    }

    /// Read as the decoder reads (a byte, a few, a long text) and then to the end: every byte
    /// comes back in order and the digest is that of the whole.
    #[test]
    fn a_hashed_reader_gives_every_byte_and_hashes_them_all() {
        let data: Vec<u8> = (0..(3 << 20) + 12_345)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let mut reader = Hashed::new(&data[..]);
        let mut back = Vec::new();
        let mut sizes = [1usize, 3, 70_000, 1 << 20, 2].into_iter().cycle();
        while back.len() < data.len() / 2 {
            let mut piece = vec![0; sizes.next().unwrap_or(1)];
            reader.read_exact(&mut piece).ok();
            back.extend_from_slice(&piece);
        }
        assert_eq!(back, data[..back.len()]);
        reader.finish().ok();
        assert_eq!(reader.bytes, data.len() as u64);
        assert_eq!(reader.hasher.finalize(), blake3::hash(&data));
        let mut past = [0u8; 1];
        assert!(
            reader.read_exact(&mut past).is_err(),
            "nothing past the end"
        );
    }

    #[test]
    fn chunks_read_back_as_they_were_written() {
        let mut writer = Hashing::new(Chunks(Vec::new()));
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(CHUNK / 3 + 5) {
            writer.write_all(piece).ok();
        }
        assert_eq!(writer.inner.0.len(), 3);
        assert_eq!(writer.bytes, data.len() as u64);
        let mut back = Vec::new();
        ChunkReader {
            chunks: writer.inner.0.clone().into(),
            at: 0,
        }
        .read_to_end(&mut back)
        .ok();
        assert_eq!(back, data);
        assert_eq!(writer.hasher.finalize(), blake3::hash(&data));
    }
}
