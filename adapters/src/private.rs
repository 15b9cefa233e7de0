//! Customer data stays private to the user who runs battleplan: names, addresses and message
//! bodies are in the store and the outbox, so the data directory (and every directory under it
//! that this crate creates) is `0700` and every file this crate creates `0600`.
//!
//! sled creates files of its own (`db`, `conf`, `blobs/`, `snap.*`) with the process umask, so
//! the binary also sets its umask to `077` before anything else; the modes here protect a
//! program that uses this crate as a library, and the `0700` directory protects whatever is in
//! it either way. A directory that already exists with permissions for its group or for others
//! (a data directory made by an older build, or by hand under umask `022`) is tightened, with a
//! warning saying so.

use std::fs::{DirBuilder, File, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The mode of a directory created for battleplan's data: the owner only.
pub const DIRECTORY_MODE: u32 = 0o700;

/// The mode of a file created in it: the owner reads and writes.
pub const FILE_MODE: u32 = 0o600;

/// The permission bits of the group and of others.
const OPEN_TO_OTHERS: u32 = 0o077;

/// Makes `dir` a private directory: creates it, and every missing parent, with mode `0700`; or,
/// when it exists with any permission for its group or others, removes those permissions and
/// warns. Returns the mode it had when it was tightened, `None` when nothing needed changing.
pub fn directory(dir: &Path) -> io::Result<Option<u32>> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {
            tighten(dir, metadata.permissions().mode(), "directory")
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIRECTORY_MODE)
                .create(dir)?;
            Ok(None)
        }
        // Not a directory: creating it says why in the words of the operating system.
        Ok(_) => DirBuilder::new()
            .mode(DIRECTORY_MODE)
            .create(dir)
            .map(|()| None),
        Err(error) => Err(error),
    }
}

/// Tightens a file this crate opened that was created with permissions for its group or others
/// (by an older build): it holds customer data. Returns the mode it had when it was tightened.
pub fn file(file: &File, path: &Path) -> io::Result<Option<u32>> {
    let mode = file.metadata()?.permissions().mode();
    if mode & OPEN_TO_OTHERS == 0 {
        return Ok(None);
    }
    file.set_permissions(Permissions::from_mode(mode & 0o7777 & !OPEN_TO_OTHERS))?;
    warn(path, mode, "file");
    Ok(Some(mode & 0o7777))
}

fn tighten(dir: &Path, mode: u32, what: &str) -> io::Result<Option<u32>> {
    if mode & OPEN_TO_OTHERS == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, Permissions::from_mode(mode & 0o7777 & !OPEN_TO_OTHERS))?;
    warn(dir, mode, what);
    Ok(Some(mode & 0o7777))
}

fn warn(path: &Path, mode: u32, what: &str) {
    tracing::warn!(
        "the {what} {} was open to other users (mode {:04o}); now {:04o}: it holds customer data",
        path.display(),
        mode & 0o7777,
        mode & 0o7777 & !OPEN_TO_OTHERS
    );
}

/// The words the command line prints when it tightened the data directory.
pub fn tightened_words(dir: &Path, mode: u32) -> String {
    format!(
        "the data directory {} was open to other users (mode {:04o}); it is now {:04o}, since it holds customer data",
        dir.display(),
        mode & 0o7777,
        mode & 0o7777 & !OPEN_TO_OTHERS
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_and_its_missing_parents_are_created_for_the_owner_only() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("a/b");
        assert_eq!(directory(&dir).unwrap(), None);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&scratch.path().join("a")), 0o700);
    }

    #[test]
    fn a_directory_open_to_others_is_tightened_and_a_private_one_left_alone() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(directory(&dir).unwrap(), Some(0o755));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(directory(&dir).unwrap(), None);
        let path = dir.join("f");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let opened = File::open(&path).unwrap();
        assert_eq!(file(&opened, &path).unwrap(), Some(0o644));
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("data");
        std::fs::write(&path, "x").unwrap();
        assert!(directory(&path).is_err());
    }
}
