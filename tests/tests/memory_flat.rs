//! Memory stays flat as the log grows: the same customers over a log 1x and 10x as long (their
//! file imported twice, or twenty times, with a change each time, as a shop that syncs its own
//! system nightly does), so that the projections are the same size and only the log differs.
//! Over each store, three workloads, each the real binary in a child process whose peak
//! resident set comes from `wait4`:
//! - a daemon started, asked a question and stopped (it catches up the customer book, the
//!   outbox and the boards from the whole log, and saves their snapshot as it stops);
//! - `audit verify` (the hash chain, every payload read as its type, the snapshot compared with
//!   a replay of the whole log);
//! - `export` of the whole log to a file.
//!
//! The page cache is set small (`BATTLEPLAN_STORE_CACHE_MIB`) for both, so that the cache's
//! own capacity is not what the longer log fills. Reading the log's chunks through sled (before
//! the segment files) grew with the log whatever the cache (BENCHMARKS.md).

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{binary, TESTER};
use chrono::{DateTime, Utc};
use serde_json::Value;

const MIB: i64 = 1024 * 1024;
const CUSTOMERS: u64 = 5_000;
/// The imports of the short log and of the long one: long enough that the short one already
/// runs every workload at its steady state (batches in flight, caches filled).
const SHORT: u64 = 2;
const LONG: u64 = 20;
const CLOCK: &str = "2026-08-20T00:00:00+08:00";

/// What a child printed and its exit code, and its peak resident set in bytes.
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    peak: i64,
}

/// Waits for the child `pid` and gives its exit code and peak resident set in bytes.
#[allow(
    unsafe_code,
    reason = "wait4 is the only way to read one child's peak memory; the structs are plain data written by the kernel"
)]
fn wait_measured(pid: u32) -> (i32, i64) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, so all zeros is a valid value; wait4 only writes into
    // the status and the struct it is given, both live for the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to live values, and a pid this process spawned and has not waited
    // for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Linux reports kilobytes.
    (code, usage.ru_maxrss * 1024)
}

/// `battleplan ARGS` on the data directory `data` (in `directory`), waited for with `wait4`.
fn measured(directory: &Path, data: &str, arguments: &[&str]) -> Measured {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let child = base(directory, data)
        .args(arguments)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let (code, peak) = wait_measured(child.id());
    // Waited for already: dropping the handle neither waits nor kills.
    drop(child);
    Measured {
        code,
        stdout: read_all(out),
        stderr: read_all(err),
        peak,
    }
}

fn read_all(file: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut file = file;
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    text
}

fn base(directory: &Path, data: &str) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["--data", data])
        .current_dir(directory)
        .env("USER", TESTER)
        .env("BATTLEPLAN_STORE_CACHE_MIB", "4")
        .env_remove("BATTLEPLAN_DATA")
        .env_remove("RUST_LOG");
    command
}

/// The customers, as JSON lines: round 0 as generated, each later round with a tag of its
/// own added to every customer (the same customers, each changed).
fn customers_file(path: &Path, round: u64) {
    let mut generated = Vec::new();
    write_customers(
        &mut generated,
        Options {
            count: CUSTOMERS,
            seed: 7,
            as_of: DateTime::parse_from_rfc3339(CLOCK)
                .unwrap()
                .with_timezone(&Utc),
            format: FileFormat::Jsonl,
        },
    )
    .unwrap();
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for line in BufReader::new(&generated[..]).lines() {
        let mut customer: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if round > 0 {
            let tags = customer
                .as_object_mut()
                .unwrap()
                .entry("tags")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !tags.is_array() {
                *tags = Value::Array(Vec::new());
            }
            tags.as_array_mut()
                .unwrap()
                .push(Value::String(format!("sync-{round}")));
        }
        serde_json::to_writer(&mut out, &customer).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

/// Imports rounds `0..rounds` into `data`; gives the events the log then holds.
fn store_of(directory: &Path, data: &str, rounds: u64) -> u64 {
    for round in 0..rounds {
        let file = format!("customers-{round}.jsonl");
        let clock = format!("2026-08-19T{round:02}:00:00+08:00");
        let import = measured(
            directory,
            data,
            &["--clock-at", &clock, "customers", "import", &file, "--json"],
        );
        assert_eq!(import.code, 0, "{}{}", import.stdout, import.stderr);
        let report: Value = serde_json::from_str(&import.stdout).unwrap();
        assert_eq!(report["rows"], CUSTOMERS, "{}", import.stdout);
    }
    let verify = measured(directory, data, &["audit", "verify", "--json"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let report: Value = serde_json::from_str(&verify.stdout).unwrap();
    report["events"].as_u64().unwrap()
}

/// A daemon over `data`, started, asked `status` through its control socket once it listens,
/// and stopped with SIGTERM: it catches up and saves the snapshot of the projections as it
/// stops. Gives its peak.
fn daemon_peak(directory: &Path, data: &str) -> i64 {
    let socket = directory.join(data).join("control.sock");
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let child = base(directory, data)
        .args(["--clock-at", CLOCK, "run"])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon never listened: {}",
            read_all(err.try_clone().unwrap())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = base(directory, data).arg("status").output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let (code, peak) = wait_measured(child.id());
    drop(child);
    assert_eq!(code, 0, "{}", read_all(err));
    peak
}

#[test]
fn a_log_ten_times_longer_over_the_same_customers_takes_no_more_memory() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    for round in 0..LONG {
        customers_file(&dir.join(format!("customers-{round}.jsonl")), round);
    }
    let short = store_of(dir, "short", SHORT);
    let long = store_of(dir, "long", LONG);
    assert!(long >= short * (LONG / SHORT), "{short} and {long} events");

    let mut lines = Vec::new();
    for (workload, arguments) in [
        ("daemon", &[][..]),
        ("audit verify", &["audit", "verify"][..]),
        ("export", &["export", "--out", "EXPORT"][..]),
    ] {
        let peak = |data: &str| {
            if workload == "daemon" {
                return daemon_peak(dir, data);
            }
            let arguments: Vec<String> = arguments
                .iter()
                .map(|argument| argument.replace("EXPORT", &format!("{data}.jsonl")))
                .collect();
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            let run = measured(dir, data, &arguments);
            assert_eq!(run.code, 0, "{workload}: {}{}", run.stdout, run.stderr);
            run.peak
        };
        let (short_peak, long_peak) = (peak("short"), peak("long"));
        lines.push(format!(
            "{workload}: {short} events {} MiB, {long} events {} MiB",
            short_peak / MIB,
            long_peak / MIB
        ));
        assert!(
            long_peak < short_peak + short_peak / 10 + 8 * MIB,
            "{workload} peaked at {} MiB over {long} events and at {} MiB over {short}: memory grows with the log",
            long_peak / MIB,
            short_peak / MIB,
        );
    }
    eprintln!("{}", lines.join("\n"));
}
