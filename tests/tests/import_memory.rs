//! A large import streams: the real binary imports 100,000 generated customers, then
//! 1,000,000, and the second's peak memory is not much above the first's, so memory does not
//! grow with the file. Peak memory is the child's maximum resident set, from
//! `getrusage(RUSAGE_CHILDREN)` (std offers no way to ask).
//!
//! One test function on purpose: `RUSAGE_CHILDREN` covers every child this process has waited
//! for, so no other test may run children beside it.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::binary;
use chrono::{DateTime, Utc};
use serde_json::Value;

const MIB: i64 = 1024 * 1024;

/// The largest resident set of any child waited for so far, in bytes.
#[allow(
    unsafe_code,
    reason = "getrusage is the only way to read a child's peak memory; the struct is plain data written by the kernel"
)]
fn children_peak_bytes() -> i64 {
    // SAFETY: `rusage` is plain old data, so all zeros is a valid value, and getrusage only
    // writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live `rusage`, and a `who` the call knows.
    let status = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(status, 0, "getrusage failed");
    // Linux reports kilobytes.
    usage.ru_maxrss * 1024
}

fn generate(path: &Path, count: u64) {
    let options = Options {
        count,
        seed: 1,
        as_of: DateTime::parse_from_rfc3339("2026-08-20T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc),
        format: FileFormat::Csv,
    };
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    write_customers(&mut out, options).unwrap();
    out.flush().unwrap();
}

/// Imports `file` into its own data directory; returns the rows and the seconds it took.
fn import(directory: &Path, file: &str, data: &str) -> (u64, f64) {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(["--data", data, "--clock-at", "2026-08-20T00:00:00Z"])
        .args(["customers", "import", file, "--json"])
        .current_dir(directory)
        .env("USER", battleplan_tests::TESTER)
        .env_remove("BATTLEPLAN_DATA")
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "imported");
    (report["rows"].as_u64().unwrap(), seconds)
}

#[test]
fn a_million_rows_take_no_more_memory_than_a_hundred_thousand() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    generate(&dir.join("small.csv"), 100_000);
    generate(&dir.join("large.csv"), 1_000_000);
    let large_bytes = std::fs::metadata(dir.join("large.csv")).unwrap().len();

    let (small_rows, small_seconds) = import(dir, "small.csv", "small-data");
    let small_peak = children_peak_bytes();
    let (large_rows, large_seconds) = import(dir, "large.csv", "large-data");
    // The largest child so far: the large import's peak, or the small one's if that was more.
    let large_peak = children_peak_bytes();
    assert_eq!((small_rows, large_rows), (100_000, 1_000_000));

    eprintln!(
        "100,000 rows: {small_seconds:.1} s ({:.0} rows/s), peak {} MiB; 1,000,000 rows ({} MiB of CSV): {large_seconds:.1} s ({:.0} rows/s), peak {} MiB",
        small_rows as f64 / small_seconds,
        small_peak / MIB,
        large_bytes / 1024 / 1024,
        large_rows as f64 / large_seconds,
        large_peak / MIB,
    );
    assert!(
        large_peak < small_peak * 3 / 2 + 32 * MIB,
        "the 1,000,000-row import peaked at {} MiB, the 100,000-row one at {} MiB: memory grows with the file",
        large_peak / MIB,
        small_peak / MIB
    );
}
