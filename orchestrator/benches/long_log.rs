//! A daemon over a long log, against the same daemon over the log's first million events: is
//! its memory flat in the log's length?
//!
//! The log: the September festival with `BENCH_CUSTOMERS` customers (100,000 by default), then
//! the customers' file imported again and again with every customer changed (a shop that syncs
//! its own system nightly; a new seed of the generator each time, the same ids), until the log
//! holds `BENCH_EVENTS` events (10,000,000 by default). The store is copied aside as soon as
//! the log passes `BENCH_PREFIX` events (1,000,000). Over each store, with its snapshot of the
//! projections removed so that the daemon catches up from the log itself: a daemon started
//! (the release binary, a process of its own), asked `outbox` through its control socket (which
//! needs the customer book, the outbox and the boards caught up), its resident memory read from
//! /proc (`VmRSS` after the answer, and `VmHWM`, the peak), then stopped. Baseline, in the same
//! run: each log read back in the bench's process, every event decoded.
//!
//! `BENCH_STORE=DIR` reuses the stores of an earlier run (`DIR/prefix`, `DIR/long`, each a
//! data directory) instead of making them; `BENCH_KEEP=DIR` makes them there and keeps them.

// A bench: a failure is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::{
    battleplan, daemon_answering, drop_snapshot, env_number, read_back, run_scenario, stop_daemon,
};

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use chrono::{DateTime, Utc};

/// The festival's campaign, asked about first.
const OUTBOX: [&str; 2] = ["outbox", "sept-festival-2026"];

/// Where the imports' clock starts: after the festival.
const SYNCS_FROM: &str = "2026-11-01T00:00:00+08:00";

/// The events a store's log holds, from `audit verify --json`.
fn events_of(data: &Path) -> u64 {
    let report = battleplan(
        data.parent().unwrap_or(Path::new(".")),
        &[
            "--data",
            &data.display().to_string(),
            "audit",
            "verify",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    report["events"].as_u64().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Makes the two stores in `root`: `prefix` (the log's first `prefix_events` or a little more)
/// and `long` (at least `events`).
fn make_stores(root: &Path, customers: u64, prefix_events: u64, events: u64) {
    let run = root.join("run");
    run_scenario(&run, customers);
    let long = root.join("long");
    std::fs::rename(run.join("data"), &long).unwrap();
    let mut held = events_of(&long);
    let mut copied = false;
    let file = root.join("sync.jsonl");
    let start = DateTime::parse_from_rfc3339(SYNCS_FROM)
        .unwrap()
        .with_timezone(&Utc);
    let mut round = 0u64;
    while held < events {
        if !copied && held >= prefix_events {
            copy_dir(&long, &root.join("prefix"));
            copied = true;
        }
        round += 1;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        write_customers(
            &mut out,
            Options {
                count: customers,
                seed: 1000 + round,
                as_of: start,
                format: FileFormat::Jsonl,
            },
        )
        .unwrap();
        drop(out);
        let clock = (start + chrono::Duration::hours(round as i64)).to_rfc3339();
        battleplan(
            root,
            &[
                "--data",
                &long.display().to_string(),
                "--clock-at",
                &clock,
                "customers",
                "import",
                &file.display().to_string(),
            ],
        );
        held += customers;
        if round.is_multiple_of(10) {
            eprintln!("  {held} events after {round} imports");
        }
    }
    if !copied {
        copy_dir(&long, &root.join("prefix"));
    }
}

/// A `/proc/PID/status` figure, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// A daemon over `data` to its first answer: the time, its resident memory then and its peak
/// (KiB).
fn daemon(data: &Path) -> (Duration, u64, u64) {
    let (elapsed, daemon) =
        daemon_answering(data, &["--clock-at", "2026-12-01T00:00:00+08:00"], &OUTBOX);
    let resident = status_kib(daemon.id(), "VmRSS:");
    let peak = status_kib(daemon.id(), "VmHWM:");
    stop_daemon(daemon);
    (elapsed, resident, peak)
}

fn main() {
    let customers = env_number("BENCH_CUSTOMERS", 100_000);
    let events = env_number("BENCH_EVENTS", 10_000_000);
    let prefix_events = env_number("BENCH_PREFIX", 1_000_000);
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-long-")
        .tempdir()
        .unwrap();
    let root: PathBuf = match (std::env::var("BENCH_STORE"), std::env::var("BENCH_KEEP")) {
        (Ok(dir), _) => PathBuf::from(dir),
        (Err(_), keep) => {
            let root = keep.map_or_else(|_| scratch.path().to_path_buf(), PathBuf::from);
            let started = Instant::now();
            make_stores(&root, customers, prefix_events, events);
            eprintln!("stores made in {:.0} s", started.elapsed().as_secs_f64());
            root
        }
    };
    println!("a daemon over a long log (the festival with {customers} customers, then the customers imported again and again):");
    for name in ["prefix", "long"] {
        let data = root.join(name);
        let (baseline, held) = read_back(&data);
        drop_snapshot(&data);
        let (first_answer, resident, peak) = daemon(&data);
        println!(
            "  {held} events: first answer after {:.2} s, resident {:.0} MiB after catching up, peak {:.0} MiB; baseline: the log read back in {:.2} s ({:.0} k events/s)",
            first_answer.as_secs_f64(),
            resident as f64 / 1024.0,
            peak as f64 / 1024.0,
            baseline.as_secs_f64(),
            held as f64 / baseline.as_secs_f64() / 1000.0,
        );
    }
}
