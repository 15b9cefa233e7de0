//! A tmpfs of a test's own, for what only a real file system shows: a disk that fills, media
//! mounted read-only. Mounting needs root: CI runs the tests as root, and a test that needs it
//! fails there without it, and says loudly that it skipped elsewhere ([`needs_root`]).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process runs as root (it may then mount a file system).
pub fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|id| id == "0"))
        .unwrap_or(false)
}

/// Whether the part of a test that mounts a tmpfs may run: true as root. Otherwise fails under
/// `CI=true` and says it skipped `what` and how to run it (`test_file`, the test's file).
pub fn needs_root(what: &str, test_file: &str) -> bool {
    if root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run this test as root: {what} mounts a tmpfs"
    );
    eprintln!(
        "SKIPPED {what}: it mounts a tmpfs and needs root; run `sudo -E cargo test -p battleplan-tests --test {test_file}` (CI runs it as root)"
    );
    false
}

/// A tmpfs of its own at a path, unmounted when dropped.
#[derive(Debug)]
pub struct Mounted(pub PathBuf);

impl Mounted {
    /// Mounts a tmpfs of `size` (`mount`'s words: `12m`, `64k`) at `at`, made if need be.
    pub fn new(at: &Path, size: &str) -> Mounted {
        std::fs::create_dir_all(at).unwrap_or_else(|error| panic!("{}: {error}", at.display()));
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "cannot mount a tmpfs at {}",
            at.display()
        );
        Mounted(at.to_path_buf())
    }

    /// Gives it another size.
    pub fn resize(&self, size: &str) {
        self.remount(&format!("remount,size={size}"));
    }

    /// Makes it read-only.
    pub fn read_only(&self) {
        self.remount("remount,ro");
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", options])
            .arg(&self.0)
            .status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "cannot {options} {}",
            self.0.display()
        );
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
