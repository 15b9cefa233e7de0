//! The log's chunks in files of their own (format 7): sled keeps only where each chunk is.
//!
//! sled 0.34 keeps in memory the pages it reads, and its page cache settles its accounts in
//! batches of 64 reads per shard, so reading a long log through sled holds thousands of pages
//! beyond the cache's capacity (BENCHMARKS.md). The chunks (`layout::chunk_of`: up to ~32 KiB of
//! records, lz4-compressed) are therefore appended to *segment files* in `log/` beside sled's
//! files, and sled's `log` tree maps each chunk's first position to its place (`Locator`: 16
//! bytes). A chunk is read with one `pread`; nothing of it stays in memory once its records are
//! read.
//!
//! A segment file (`log/NNNNNNNN.seg`, numbered from 0) is only ever appended to, up to
//! `SEGMENT_BYTES`, then the next one is started. Each chunk is a *frame*: a 24-byte header
//! (magic, payload length, the chunk's first position, a checksum of the payload) and the
//! chunk. A checkpoint appends its frames and `fdatasync`s them (and the directory, for a new
//! file) before sled's batch names them, so sled never names a frame that is not on disk. Frames
//! a crash left that sled does not name (a checkpoint cut short) lie after the last one it
//! names: `settle` cuts them off when the store opens, before anything is appended.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustc_hash::FxHashMap;

/// The directory of the segment files, in the store's directory.
pub const DIRECTORY: &str = "log";

/// A segment file is not appended to past this size.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

const MAGIC: u32 = 0x4250_4331; // "BPC1"
/// magic (u32) | payload length (u32) | first position (u64) | checksum (u64), big-endian.
pub const HEADER: usize = 24;

/// No chunk is larger than this stored: a damaged locator must not make a reader allocate
/// gigabytes.
const MAX_FRAME_PAYLOAD: u32 = 64 * 1024 * 1024;

/// Where a chunk is: its segment, the offset of its frame, and the length of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator {
    pub segment: u32,
    pub offset: u64,
    pub length: u32,
}

impl Locator {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&self.segment.to_be_bytes());
        bytes[4..12].copy_from_slice(&self.offset.to_be_bytes());
        bytes[12..].copy_from_slice(&self.length.to_be_bytes());
        bytes
    }

    /// `None` if `bytes` is not a locator.
    pub fn from_bytes(bytes: &[u8]) -> Option<Locator> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let mut segment = [0u8; 4];
        segment.copy_from_slice(&bytes[..4]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&bytes[4..12]);
        let mut length = [0u8; 4];
        length.copy_from_slice(&bytes[12..]);
        Some(Locator {
            segment: u32::from_be_bytes(segment),
            offset: u64::from_be_bytes(offset),
            length: u32::from_be_bytes(length),
        })
    }
}

/// Where appending goes on: a segment and the byte after its last frame. Written with every
/// batch of sled that names new chunks (`layout::SEGMENTS_END_KEY`), so that frames appended
/// after it (by a checkpoint a crash cut short) are known to be nobody's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct End {
    pub segment: u32,
    pub end: u64,
}

impl End {
    pub fn to_bytes(self) -> [u8; 12] {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&self.segment.to_be_bytes());
        bytes[4..].copy_from_slice(&self.end.to_be_bytes());
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<End> {
        let bytes: &[u8; 12] = bytes.try_into().ok()?;
        let mut segment = [0u8; 4];
        segment.copy_from_slice(&bytes[..4]);
        let mut end = [0u8; 8];
        end.copy_from_slice(&bytes[4..]);
        Some(End {
            segment: u32::from_be_bytes(segment),
            end: u64::from_be_bytes(end),
        })
    }
}

/// A segment file's name.
pub fn file_name(segment: u32) -> String {
    format!("{segment:08x}.seg")
}

/// A frame: the header, then the chunk.
pub fn frame(first: u64, chunk: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + chunk.len());
    frame.extend_from_slice(&MAGIC.to_be_bytes());
    frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
    frame.extend_from_slice(&first.to_be_bytes());
    frame.extend_from_slice(&super::wal::checksum(chunk).to_be_bytes());
    frame.extend_from_slice(chunk);
    frame
}

/// Why a chunk could not be read: the words for a `corrupt` error, or the machine's failure.
#[derive(Debug)]
pub enum ReadError {
    Damaged(String),
    Io(String),
}

/// The segment being appended to.
struct Writer {
    segment: u32,
    end: u64,
    file: Option<Arc<File>>,
    /// Written since the last `sync`.
    unsynced: bool,
    /// A file was created since the last `sync`: the directory is synced too.
    created: bool,
}

/// The segment files of one store.
pub struct Segments {
    directory: PathBuf,
    /// Segment files read in place from another store's `log/` (a read-only copy's original):
    /// those up to the segment sled named at the first `settle`. Never written.
    base: Option<Base>,
    readers: RwLock<FxHashMap<u32, Arc<File>>>,
    writer: Mutex<Writer>,
}

struct Base {
    directory: PathBuf,
    /// The last segment read from `directory` (`None`: none is).
    last: Option<u32>,
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Segments")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// A segment file shorter than the frames sled names in it: damage (`InvalidData`).
fn too_short(segment: u32, length: u64, end: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the log's file {DIRECTORY}/{} is {length} bytes long, but the store holds chunks in it up to byte {end}",
            file_name(segment)
        ),
    )
}

/// Why segment file `segment` (at `path`) could not be opened, as `settle` takes it: `Ok` for
/// a file that is missing and holds nothing sled names, damage (`InvalidData`) for a missing
/// file that should hold frames, the error itself naming the path otherwise.
fn unopened(path: &Path, segment: u32, end: u64, error: io::Error) -> io::Result<()> {
    match error.kind() {
        io::ErrorKind::NotFound if end == 0 => Ok(()),
        io::ErrorKind::NotFound => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the log's file {DIRECTORY}/{} is missing, but the store holds chunks in it",
                file_name(segment)
            ),
        )),
        kind => Err(io::Error::new(kind, format!("{}: {error}", path.display()))),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Segments {
    /// The segments of the store in `store_directory` (the directory `log/` made if missing,
    /// private). Nothing is appended before `settle`.
    pub fn open(store_directory: &Path) -> io::Result<Segments> {
        let directory = store_directory.join(DIRECTORY);
        let made = !directory.exists();
        crate::private::directory(&directory)?;
        if made {
            // Durable in the store's directory before sled names a frame in it.
            File::open(store_directory)?.sync_all()?;
        }
        Ok(Segments {
            directory,
            base: None,
            readers: RwLock::new(FxHashMap::default()),
            writer: Mutex::new(Writer {
                segment: 0,
                end: 0,
                file: None,
                unsynced: false,
                created: true,
            }),
        })
    }

    /// The segments of a store whose other files are a copy of those in `original` (a store's
    /// directory), its sled saying they end at `at`: the frames up to `at` are read from
    /// `original`'s own segment files, in place and never written (a segment file only grows,
    /// and what sled names in it never changes); frames appended go to new files in
    /// `store_directory`, after the last of `original`'s. A read-only opening reads a log of
    /// gigabytes without copying it.
    pub fn open_over(
        store_directory: &Path,
        original: &Path,
        at: Option<End>,
    ) -> io::Result<Segments> {
        let mut segments = Segments::open(store_directory)?;
        segments.base = Some(Base {
            directory: original.join(DIRECTORY),
            last: at.map(|at| at.segment),
        });
        Ok(segments)
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The directory segment `segment` is in.
    fn directory_of(&self, segment: u32) -> &Path {
        match &self.base {
            Some(base) if base.last >= Some(segment) => &base.directory,
            _ => &self.directory,
        }
    }

    /// `settle` for segments read in place: `segment` must hold the `end` bytes sled names in
    /// it (nothing is cut: the file is not this store's), and appending starts a new file.
    fn settle_over(&self, base: &Path, segment: u32, end: u64) -> io::Result<()> {
        let path = base.join(file_name(segment));
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.len() < end => {
                return Err(too_short(segment, metadata.len(), end))
            }
            Ok(_) => {}
            Err(error) => unopened(&path, segment, end, error)?,
        }
        let next = segment
            .checked_add(1)
            .ok_or_else(|| io::Error::other("the log has run out of segment numbers"))?;
        let mut writer = lock(&self.writer);
        writer.file = None;
        self.append_at(&mut writer, next, 0);
        Ok(())
    }

    /// Appending goes on at byte `end` of segment `segment`, nothing written since; no reader
    /// keeps a handle it opened before (its file may have been removed or cut).
    fn append_at(&self, writer: &mut Writer, segment: u32, end: u64) {
        writer.segment = segment;
        writer.end = end;
        writer.unsynced = false;
        writer.created = false;
        self.readers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Where appending goes on: at `at`, which sled says (the start of segment 0 when it says
    /// nothing). Whatever lies after it (frames of a checkpoint a crash cut short, later
    /// segments) is removed, durably, before anything is appended.
    pub fn settle(&self, at: Option<End>) -> io::Result<()> {
        if let Some(base) = &self.base {
            if let (Some(last), Some(at)) = (base.last, at) {
                if at.segment <= last {
                    return self.settle_over(&base.directory, at.segment, at.end);
                }
            }
        }
        let End { segment, end } = at.unwrap_or(End { segment: 0, end: 0 });
        let mut writer = lock(&self.writer);
        writer.file = None;
        let mut changed = false;
        for entry in std::fs::read_dir(&self.directory)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".seg"))
                .and_then(|number| u32::from_str_radix(number, 16).ok())
            else {
                continue;
            };
            if number > segment {
                std::fs::remove_file(entry.path())?;
                changed = true;
            }
        }
        let path = self.directory.join(file_name(segment));
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) => {
                let length = file.metadata()?.len();
                if length > end {
                    file.set_len(end)?;
                    file.sync_all()?;
                } else if length < end {
                    return Err(too_short(segment, length, end));
                }
            }
            Err(error) => unopened(&path, segment, end, error)?,
        }
        if changed {
            File::open(&self.directory)?.sync_all()?;
        }
        self.append_at(&mut writer, segment, end);
        Ok(())
    }

    /// Appends a chunk whose first record is at position `first`; durable only after `sync`.
    pub fn append(&self, first: u64, chunk: &[u8]) -> io::Result<Locator> {
        let frame = frame(first, chunk);
        let mut writer = lock(&self.writer);
        if writer.end > 0 && writer.end + frame.len() as u64 > SEGMENT_BYTES {
            // The frames written in this file since the last `sync` are made durable now:
            // `sync` knows only the file being appended to.
            if writer.unsynced {
                if let Some(file) = &writer.file {
                    crate::fault::check("segment.sync")?;
                    file.sync_data()?;
                }
                writer.unsynced = false;
            }
            writer.segment = writer
                .segment
                .checked_add(1)
                .ok_or_else(|| io::Error::other("the log has run out of segment numbers"))?;
            writer.end = 0;
            writer.file = None;
        }
        let file = match &writer.file {
            Some(file) => file.clone(),
            None => {
                let path = self.directory.join(file_name(writer.segment));
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|error| {
                        io::Error::new(error.kind(), format!("{}: {error}", path.display()))
                    })?;
                if writer.end == 0 {
                    writer.created = true;
                }
                let file = Arc::new(file);
                writer.file = Some(file.clone());
                file
            }
        };
        let named = |error: io::Error| {
            io::Error::new(
                error.kind(),
                format!(
                    "{}: {error}",
                    self.directory.join(file_name(writer.segment)).display()
                ),
            )
        };
        crate::fault::check("segment.write").map_err(named)?;
        file.write_all_at(&frame, writer.end).map_err(named)?;
        let locator = Locator {
            segment: writer.segment,
            offset: writer.end,
            length: chunk.len() as u32,
        };
        writer.end += frame.len() as u64;
        writer.unsynced = true;
        Ok(locator)
    }

    /// Where the next frame goes.
    pub fn end(&self) -> End {
        let writer = lock(&self.writer);
        End {
            segment: writer.segment,
            end: writer.end,
        }
    }

    /// Makes every appended frame durable (and the directory, when a file was made).
    pub fn sync(&self) -> io::Result<()> {
        let mut writer = lock(&self.writer);
        if writer.unsynced {
            if let Some(file) = &writer.file {
                crate::fault::check("segment.sync")?;
                file.sync_data()?;
            }
            writer.unsynced = false;
        }
        if writer.created {
            File::open(&self.directory)?.sync_all()?;
            writer.created = false;
        }
        Ok(())
    }

    fn reader(&self, segment: u32) -> io::Result<Arc<File>> {
        if let Some(file) = self
            .readers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&segment)
        {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(
            self.directory_of(segment).join(file_name(segment)),
        )?);
        self.readers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(segment, file.clone());
        Ok(file)
    }

    /// The stored chunk `locator` names, which should start at position `first`.
    pub fn read(&self, first: u64, locator: &[u8]) -> Result<Vec<u8>, ReadError> {
        let Some(locator) = Locator::from_bytes(locator) else {
            return Err(ReadError::Damaged(
                "sled's entry for a chunk is not a place in the log's files".into(),
            ));
        };
        let name = || format!("{}/{}", DIRECTORY, file_name(locator.segment));
        if locator.length > MAX_FRAME_PAYLOAD {
            return Err(ReadError::Damaged(format!(
                "sled's entry for the chunk at {first} says it is {} bytes long in {}",
                locator.length,
                name()
            )));
        }
        if locator.offset > SEGMENT_BYTES {
            // Appending starts a new file before a frame would begin past this.
            return Err(ReadError::Damaged(format!(
                "sled's entry for the chunk at {first} places it at byte {} of {}, past where any frame begins",
                locator.offset,
                name()
            )));
        }
        let file = match self.reader(locator.segment) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ReadError::Damaged(format!(
                    "the log's file {} is missing",
                    name()
                )))
            }
            Err(error) => return Err(ReadError::Io(format!("{}: {error}", name()))),
        };
        let mut frame = vec![0u8; HEADER + locator.length as usize];
        match file.read_exact_at(&mut frame, locator.offset) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ReadError::Damaged(format!(
                    "the log's file {} ends before the chunk at {first} (byte {})",
                    name(),
                    locator.offset
                )))
            }
            Err(error) => return Err(ReadError::Io(format!("{}: {error}", name()))),
        }
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&frame[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        let magic = (word(0) >> 32) as u32;
        let length = word(0) as u32;
        let damaged = |what: &str| {
            ReadError::Damaged(format!(
                "the chunk at {first} in {} (byte {}) {what}",
                name(),
                locator.offset
            ))
        };
        if magic != MAGIC || length != locator.length {
            return Err(damaged("has no frame of its own there"));
        }
        if word(8) != first {
            return Err(damaged(&format!("says it starts at {}", word(8))));
        }
        let checksum = word(16);
        let chunk = frame.split_off(HEADER);
        if super::wal::checksum(&chunk) != checksum {
            return Err(damaged("does not match its checksum"));
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A locator whose place no frame can have is damage the reader names, not a failing
    /// disk: an offset past where appending starts a new file, and a length past a frame's.
    #[test]
    fn a_locator_no_frame_can_have_is_damage() {
        let directory = tempfile::tempdir().unwrap();
        let segments = Segments::open(directory.path()).unwrap();
        segments.settle(None).unwrap();
        let locator = segments.append(1, b"chunk").unwrap();
        segments.append(2, b"the next chunk").unwrap();
        segments.sync().unwrap();
        assert_eq!(segments.read(1, &locator.to_bytes()).unwrap(), b"chunk");
        for (offset, length, says) in [
            (u64::MAX - 4, 5, "past where any frame begins"),
            (SEGMENT_BYTES + 1, 5, "past where any frame begins"),
            (0, u32::MAX, "bytes long"),
            (4, 5, "has no frame of its own there"),
            (0, 6, "has no frame of its own there"),
            (29, 500, "ends before the chunk"),
        ] {
            let wrong = Locator {
                segment: 0,
                offset,
                length,
            };
            match segments.read(1, &wrong.to_bytes()) {
                Err(ReadError::Damaged(detail)) => {
                    assert!(detail.contains(says), "{offset}, {length}: {detail}")
                }
                other => panic!("{offset}, {length}: {other:?}"),
            }
        }
    }
}
