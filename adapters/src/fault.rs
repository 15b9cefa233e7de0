//! Injected IO faults, for the fault tests: where a real disk cannot be made to fail on demand,
//! the store, the outbox and the imports ask [`check`] before each write, sync, rename and file
//! creation, and fail as a full disk would when told to.
//!
//! The environment variable `BATTLEPLAN_FAULTS` holds `SITE:N` pairs separated by commas: the
//! `N`th call (counted from 1) at `SITE` and every later one fail with "No space left on device"
//! (`ENOSPC`), as a disk that filled stays full until the process ends. `SITE:N+` is the same;
//! `SITE:N!` fails only the `N`th call, as a passing fault would. A site name may end with `*` to
//! match every site it starts (`wal.*:3` counts calls at all of the write-ahead log's sites
//! together). Unset, a check costs one load of an initialised cell.
//!
//! The sites: `wal.write`, `wal.sync`, `wal.create` (the store's write-ahead files),
//! `segment.write` and `segment.sync` (a chunk appended to the segment files, and their
//! `fdatasync` before sled names it), `sled.flush` (a checkpoint made durable), `store.create` and `store.rename` (files the store creates and
//! moves into place), `outbox.write` (each piece of a batch the file outbox writes, each
//! truncation: an undo, a torn line removed), `outbox.sync` (each of its `fdatasync`s) and
//! `outbox.create` (each channel file it opens, creating it and its directory if need be).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable naming the faults.
pub const VARIABLE: &str = "BATTLEPLAN_FAULTS";

/// The error a fault raises: the operating system's "No space left on device".
pub fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(ENOSPC)
}

const ENOSPC: i32 = 28;

struct Fault {
    site: String,
    prefix: bool,
    at: u64,
    once: bool,
    calls: AtomicU64,
}

impl Fault {
    fn matches(&self, site: &str) -> bool {
        if self.prefix {
            site.starts_with(&self.site)
        } else {
            site == self.site
        }
    }
}

fn faults() -> &'static [Fault] {
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        std::env::var(VARIABLE)
            .map(|spec| parse(&spec))
            .unwrap_or_default()
    })
}

fn parse(spec: &str) -> Vec<Fault> {
    spec.split(',')
        .filter_map(|item| {
            let (site, count) = item.trim().rsplit_once(':')?;
            let (count, once) = match count.strip_suffix('!') {
                Some(count) => (count, true),
                None => (count.strip_suffix('+').unwrap_or(count), false),
            };
            let at = count.parse::<u64>().ok().filter(|at| *at > 0)?;
            let (site, prefix) = match site.strip_suffix('*') {
                Some(site) => (site, true),
                None => (site, false),
            };
            Some(Fault {
                site: site.to_owned(),
                prefix,
                at,
                once,
                calls: AtomicU64::new(0),
            })
        })
        .collect()
}

/// Fails with [`disk_full`] when a fault is set for `site` and its turn has come.
pub fn check(site: &str) -> io::Result<()> {
    let faults = faults();
    if faults.is_empty() {
        return Ok(());
    }
    let mut fail = false;
    for fault in faults.iter().filter(|fault| fault.matches(site)) {
        let call = fault.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call == fault.at || (!fault.once && call > fault.at) {
            fail = true;
        }
    }
    if fail {
        tracing::warn!(site, "injected fault");
        Err(disk_full())
    } else {
        Ok(())
    }
}

/// Whether any fault is set: the fault tests' children say so in their output.
pub fn armed() -> bool {
    !faults().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(faults: &[Fault], site: &str) -> bool {
        let mut fail = false;
        for fault in faults.iter().filter(|fault| fault.matches(site)) {
            let call = fault.calls.fetch_add(1, Ordering::Relaxed) + 1;
            if call == fault.at || (!fault.once && call > fault.at) {
                fail = true;
            }
        }
        fail
    }

    #[test]
    fn a_persistent_fault_fails_its_turn_and_every_later_call() {
        let faults = parse("wal.write:3");
        let seen: Vec<bool> = (0..5).map(|_| fires(&faults, "wal.write")).collect();
        assert_eq!(seen, [false, false, true, true, true]);
        assert!(!fires(&faults, "wal.sync"));
    }

    #[test]
    fn a_passing_fault_fails_once_and_a_prefix_counts_every_site_it_starts() {
        let faults = parse("wal.*:2!, outbox.sync:1");
        assert!(!fires(&faults, "wal.write"));
        assert!(fires(&faults, "wal.sync"));
        assert!(!fires(&faults, "wal.write"));
        assert!(fires(&faults, "outbox.sync"));
        assert!(!fires(&faults, "outbox.write"));
    }

    #[test]
    fn malformed_items_are_ignored() {
        assert!(parse("nothing, wal.write:0, wal.sync:x, :").is_empty());
    }

    #[test]
    fn the_error_is_a_full_disk() {
        assert_eq!(disk_full().raw_os_error(), Some(ENOSPC));
    }
}
