//! Reading a store without writing to it: what an auditor does with a copy on read-only media,
//! and what `audit verify` and `export` do with every store they open themselves.
//!
//! sled 0.34 has no read-only mode: it opens its database file for writing, takes an exclusive
//! `flock` on it, and may write while it recovers (its log, a snapshot). The store itself
//! checkpoints at opening and empties its write-ahead files. So a read-only opening copies the
//! files that make the log (sled's `db`, `conf`, `snap.*`, `blobs/` and the write-ahead files)
//! into a private scratch directory, holding a *shared* lock on the original `db` meanwhile (so
//! no battleplan process opens the store for writing halfway through the copy, and a process
//! that holds it is found), and opens the copy as any store is opened: the same recovery, the
//! same refusals of damage. The segment files in `log/`, which hold the log's chunks and are
//! most of a store's bytes, are not copied: the copy reads the frames its sled names from the
//! original's files, in place (`Segments::open_over`). A store only appends to those files and
//! cuts only frames sled never named, so those frames stay as they were when the copy was
//! made, whatever another process does with the store afterwards; what the copy's own opening
//! appends goes to files of its own. The original is only read: no lock it takes stops another reader,
//! nothing in its directory changes, and it may sit on a read-only file system. The scratch
//! directory (in `TMPDIR`, or the one given) is removed when the store is dropped.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use battleplan_core::event::{StoreError, StoreResult};

use super::{io_error, room, SledEventLog, StoreOptions};

/// A store opened from a copy of another's files; derefs to the store.
pub struct ReadOnlyCopy {
    /// Dropped first (fields drop in order): the store closes before its files go.
    store: SledEventLog,
    _scratch: tempfile::TempDir,
}

impl std::ops::Deref for ReadOnlyCopy {
    type Target = SledEventLog;

    fn deref(&self) -> &SledEventLog {
        &self.store
    }
}

impl ReadOnlyCopy {
    pub fn store(&self) -> &SledEventLog {
        &self.store
    }
}

/// The files of `directory` a store is made of, with their sizes: every regular file at its top
/// (sled's, the write-ahead files) and in `blobs/`; not the segment files in `log/` (read in
/// place), the outbox, the control socket or anything in other directories.
fn store_files(directory: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for (from, nested) in [
        (directory.to_path_buf(), None),
        (directory.join("blobs"), Some("blobs")),
    ] {
        let entries = match std::fs::read_dir(&from) {
            Ok(entries) => entries,
            Err(error) if nested.is_some() && error.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_file() {
                let relative = match nested {
                    Some(nested) => Path::new(nested).join(entry.file_name()),
                    None => PathBuf::from(entry.file_name()),
                };
                files.push((relative, entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

impl SledEventLog {
    /// Opens the store in `directory` for reading only, from a copy of its files made in a new
    /// private directory inside `scratch` (see the module's documentation). Nothing in
    /// `directory` is written, created or removed. `Locked` while another process holds the
    /// store (a daemon: ask it instead); `Io` when the copy cannot be made (no room in
    /// `scratch`: the message says how much is needed).
    pub fn open_read_only(
        directory: &Path,
        scratch: &Path,
        options: StoreOptions,
    ) -> StoreResult<ReadOnlyCopy> {
        let db = directory.join("db");
        let lock =
            File::open(&db).map_err(|error| io_error(format_args!("{}: {error}", db.display())))?;
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(format!(
                    "{} is held by another process",
                    db.display()
                )))
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(io_error(format_args!("locking {}: {error}", db.display())))
            }
        }
        let files = store_files(directory)
            .map_err(|error| io_error(format_args!("reading {}: {error}", directory.display())))?;
        let copy = tempfile::Builder::new()
            .prefix("battleplan-read-only-")
            .tempdir_in(scratch)
            .map_err(|error| {
                io_error(format_args!(
                    "cannot make a directory in {} for the copy a read-only opening reads (set TMPDIR to a writable directory): {error}",
                    scratch.display()
                ))
            })?;
        let bytes: u64 = files.iter().map(|(_, bytes)| bytes).sum();
        // The copy, and what opening it writes (a checkpoint of the write-ahead files' records).
        let needed = bytes + super::checkpoint_room(bytes);
        room(copy.path(), needed).map_err(|error| {
            io_error(format_args!(
                "no room in {} for the copy of the store a read-only opening reads ({error}); set TMPDIR to a directory with room",
                scratch.display()
            ))
        })?;
        std::fs::create_dir(copy.path().join("blobs"))
            .map_err(|error| io_error(format_args!("{}: {error}", copy.path().display())))?;
        for (relative, _) in &files {
            let from = directory.join(relative);
            let to = copy.path().join(relative);
            // `copy` keeps the mode: a copy of a file made read-only (0400) is made writable
            // (for sled, which opens its files for writing) and private again.
            std::fs::copy(&from, &to)
                .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)))
                .map_err(|error| {
                    io_error(format_args!(
                        "copying {} to {}: {error}",
                        from.display(),
                        copy.path().display()
                    ))
                })?;
        }
        // Copied whole: the original is let go before the copy is opened. The segment files
        // are read where they are: what sled's copy names in them never changes (a store only
        // appends to them, and cuts only frames sled never named).
        drop(lock);
        let store = SledEventLog::open_reading_segments(copy.path(), options, Some(directory))?;
        Ok(ReadOnlyCopy {
            store,
            _scratch: copy,
        })
    }
}
