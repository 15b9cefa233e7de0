//! Snapshots of the projections a process holds in memory (the customer book, the outbox and the
//! boards), saved in the store with the log position they stand at, so that a daemon, or a
//! command run without one, reads the snapshot and replays only the tail of the log.
//!
//! A snapshot is the three projections in MessagePack (`rmp_serde`, structs as maps that name
//! their fields, since many leave out a field when it is empty; the rows held per customer, the
//! book's customers and the funnel's entries, as arrays), cut into
//! chunks of [`CHUNK`] bytes, under the projection [`PROJECTION`] of the store's checkpoints:
//! a header (JSON: the format, the position, how many chunks, the bytes and their BLAKE3 digest)
//! and the chunks, keyed by the position, written in one commit with the checkpoint (the old
//! snapshot's chunks are deleted in the same commit). Reading one checks everything the header
//! says; a header of another [`FORMAT`], a chunk missing or a digest that differs make the
//! snapshot unusable and the projections are rebuilt from the log, never misread. `audit verify`
//! replays the log up to the snapshot's position and checks that the snapshot equals what the
//! replay made (`app::audit`).
//!
//! When: after a catch-up that replayed at least [`due`]'s tail since the last snapshot, and
//! when the daemon stops. The scenario runner does not save them (its store is thrown away).

use std::io::{Read, Write};

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
}

/// The three projections, as a snapshot holds them.
#[derive(Debug, Default, PartialEq)]
pub struct Projections {
    pub book: CustomerBook,
    pub outreach: Outreach,
    pub boards: Boards,
}

/// A snapshot made, not yet saved.
#[derive(Debug)]
pub struct Encoded {
    header: Header,
    chunks: Vec<Vec<u8>>,
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
    #[error("the snapshot's bytes are not those its header names (digest or length differ)")]
    Digest,
    #[error("the snapshot cannot be decoded: {0}")]
    Decode(String),
    #[error("the snapshot's projections stand at different positions")]
    Positions,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The bytes written in chunks, hashed as they come.
struct Chunks {
    chunks: Vec<Vec<u8>>,
    bytes: u64,
    hasher: blake3::Hasher,
}

impl Write for Chunks {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let written = bytes.len();
        self.hasher.update(bytes);
        self.bytes += written as u64;
        while !bytes.is_empty() {
            let room = match self.chunks.last() {
                Some(last) if last.len() < CHUNK => CHUNK - last.len(),
                _ => {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                    CHUNK
                }
            };
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            if let Some(last) = self.chunks.last_mut() {
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

/// The chunks read back one after another, each let go once read (the projections grow as
/// the chunks go).
struct ChunkReader {
    chunks: std::collections::VecDeque<Vec<u8>>,
    at: usize,
}

impl Read for ChunkReader {
    /// The decoder asks for a few bytes at a time (a marker, a number): taken straight from the
    /// chunk under way when it holds them.
    #[inline]
    fn read_exact(&mut self, buffer: &mut [u8]) -> std::io::Result<()> {
        if let Some(bytes) = self
            .chunks
            .front()
            .and_then(|first| first.get(self.at..self.at + buffer.len()))
        {
            buffer.copy_from_slice(bytes);
            self.at += buffer.len();
            return Ok(());
        }
        let mut filled = 0;
        while filled < buffer.len() {
            match self.read(&mut buffer[filled..])? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
        }
        Ok(())
    }

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

/// Makes a snapshot of the three projections, which stand at the same position.
pub fn encode(
    book: &CustomerBook,
    outreach: &Outreach,
    boards: &Boards,
) -> Result<Encoded, String> {
    let position = book.position.min(outreach.position).min(boards.position);
    if book.position != position || outreach.position != position || boards.position != position {
        return Err(format!(
            "the projections stand at different positions (book {}, outbox {}, boards {})",
            book.position, outreach.position, boards.position
        ));
    }
    let mut chunks = Chunks {
        chunks: Vec::new(),
        bytes: 0,
        hasher: blake3::Hasher::new(),
    };
    rmp_serde::encode::write_named(&mut chunks, &(book, outreach, boards))
        .map_err(|error| error.to_string())?;
    let Chunks {
        chunks,
        bytes,
        hasher,
    } = chunks;
    Ok(Encoded {
        header: Header {
            format: FORMAT,
            position: position.0,
            chunks: u32::try_from(chunks.len()).map_err(|_| "too many chunks".to_string())?,
            bytes,
            digest: hasher.finalize().to_hex().to_string(),
        },
        chunks,
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

/// Saves a snapshot in one commit with its checkpoint, deleting the previous one's chunks.
/// A snapshot at or behind the one stored is not saved (another process saved a newer one).
/// Returns whether it was saved.
pub async fn save(store: &dyn Store, encoded: Encoded) -> Result<bool, StoreError> {
    let checkpoint = store.checkpoint(PROJECTION).await?;
    if checkpoint.0 >= encoded.header.position && checkpoint != Position::START {
        return Ok(false);
    }
    let mut changes = Vec::with_capacity(encoded.chunks.len() + 1);
    // The previous chunks, as its header names them (an unreadable header leaves nothing known
    // to delete but its own key, which is replaced).
    if let Ok(Some(previous)) = header(store).await {
        for index in 0..previous.chunks {
            changes.push((chunk_key(previous.position, index), None));
        }
    }
    let header_bytes = serde_json::to_vec(&encoded.header)
        .map_err(|error| StoreError::Invalid(error.to_string()))?;
    changes.push((HEADER.to_vec(), Some(header_bytes)));
    let position = encoded.header.position;
    for (index, chunk) in encoded.chunks.into_iter().enumerate() {
        changes.push((chunk_key(position, index as u32), Some(chunk)));
    }
    match store.commit(PROJECTION, Position(position), changes).await {
        Ok(()) => Ok(true),
        // Another process moved the checkpoint past this one meanwhile.
        Err(StoreError::Invalid(_)) if store.checkpoint(PROJECTION).await? > Position(position) => {
            Ok(false)
        }
        Err(error) => Err(error),
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
    let mut chunks = std::collections::VecDeque::with_capacity(header.chunks as usize);
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0u64;
    for index in 0..header.chunks {
        let Some(chunk) = store
            .get(PROJECTION, &chunk_key(header.position, index))
            .await?
        else {
            return Err(Unusable::Missing(index));
        };
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        chunks.push_back(chunk);
    }
    if bytes != header.bytes || hasher.finalize().to_hex().as_str() != header.digest {
        return Err(Unusable::Digest);
    }
    let reader = ChunkReader { chunks, at: 0 };
    let (book, outreach, boards): (CustomerBook, Outreach, Boards) =
        rmp_serde::from_read(reader).map_err(|error| Unusable::Decode(error.to_string()))?;
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
        let encoded = encode(&book, &outreach, &boards).unwrap_or_else(|why| panic!("{why}"));
        let reader = ChunkReader {
            chunks: encoded.chunks.into(),
            at: 0,
        };
        let (_, _, back): (CustomerBook, Outreach, Boards) =
            rmp_serde::from_read(reader).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, boards);
    }

    #[test]
    fn chunks_read_back_as_they_were_written() {
        let mut chunks = Chunks {
            chunks: Vec::new(),
            bytes: 0,
            hasher: blake3::Hasher::new(),
        };
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(CHUNK / 3 + 5) {
            chunks.write_all(piece).ok();
        }
        assert_eq!(chunks.chunks.len(), 3);
        assert_eq!(chunks.bytes, data.len() as u64);
        let mut back = Vec::new();
        ChunkReader {
            chunks: chunks.chunks.clone().into(),
            at: 0,
        }
        .read_to_end(&mut back)
        .ok();
        assert_eq!(back, data);
        assert_eq!(chunks.hasher.finalize(), blake3::hash(&data));
    }
}
