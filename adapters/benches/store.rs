//! The event store's speed, each figure beside a baseline measured in the same run:
//!
//! 1. baseline: a plain file with one fdatasync per 256-byte record, and one per 1000 records;
//! 2. durable appends with 1, 8 and 64 concurrent appenders (events/s, p50 and p99 latency),
//!    and the same with the write-ahead log written but not fdatasynced (what the fdatasync
//!    costs);
//! 3. replay of 1,000,000 events through decode, the reopen time of that store, and the replay's
//!    peak memory (measured in a process of its own); the reopen time and peak memory after a
//!    crash that left a full tail in the write-ahead log.
//!
//! Run: `cargo bench -p battleplan-adapters --bench store` (results in BENCHMARKS.md); add
//! `-- append` or `-- replay` for one part, `-- profile N PER` for N durable appenders of PER
//! appends each and nothing else (to run under `perf`).
//! Set BENCH_DIR to choose the disk (default: the system temp directory).

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use battleplan_adapters::sled_store::SyncMode;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::context::{IdSource, SeededIds};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::upcast::{self, EventPayload};
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, Position, StreamId,
};
use serde::{Deserialize, Serialize};

/// A payload shaped like a real decision: about a hundred bytes.
#[derive(Debug, Serialize, Deserialize)]
struct SendPlanned {
    campaign: String,
    reach_out: String,
    customer: String,
    channel: String,
    quota_day: String,
    attempt: u32,
}

impl EventPayload for SendPlanned {
    const EVENT_TYPE: &'static str = "SendPlanned";
    const SCHEMA_VERSION: u16 = 1;
}

fn payload(n: u64) -> SendPlanned {
    SendPlanned {
        campaign: "sept-festival-2026".into(),
        reach_out: "warm-up-recall".into(),
        customer: format!("c-{n:07}"),
        channel: "mail".into(),
        quota_day: "2026-08-27".into(),
        attempt: 1,
    }
}

/// Ids as production makes them: UUID v7, a timestamp and random-looking bits (seeded here), so
/// that what the store compresses is realistic.
fn ids() -> &'static SeededIds {
    static IDS: std::sync::OnceLock<SeededIds> = std::sync::OnceLock::new();
    IDS.get_or_init(|| SeededIds::new(0x5eed))
}

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_788_000_000, 0).unwrap()
}

fn append_of(stream: &str, first: u64, count: u64) -> Append {
    let events = (first..first + count)
        .map(|n| upcast::encode(EventId(ids().next_id(at())), &payload(n)).unwrap())
        .collect();
    Append {
        stream: StreamId::new(stream).unwrap(),
        expected: ExpectedVersion::Any,
        events,
        metadata: Metadata {
            actor: "system:dispatcher".into(),
            command_id: CommandId(ids().next_id(at())),
            causation_id: Some(ids().next_id(at())),
            correlation_id: None,
            reason: None,
        },
        recorded_at: at(),
    }
}

fn bench_directory() -> PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn fresh(name: &str) -> PathBuf {
    let path = bench_directory().join(format!("battleplan-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn baseline(records: u64, every: u64) -> f64 {
    let directory = fresh("baseline");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join("log"))
        .unwrap();
    let record = [0x5au8; 256];
    let start = Instant::now();
    for n in 1..=records {
        file.write_all(&record).unwrap();
        if n % every == 0 {
            file.sync_data().unwrap();
        }
    }
    file.sync_data().unwrap();
    let rate = records as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(directory).unwrap();
    rate
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

async fn appenders(
    concurrency: u64,
    per_appender: u64,
    sync: SyncMode,
) -> (f64, Duration, Duration) {
    let directory = fresh(&format!("append-{concurrency}"));
    let store = Arc::new(
        SledEventLog::open(
            &directory,
            StoreOptions {
                sync,
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for appender in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_appender as usize);
            for n in 0..per_appender {
                let id = appender * 1_000_000 + n + 1;
                let began = Instant::now();
                store
                    .append(append_of(&format!("campaign-{}", appender % 16), id, 1))
                    .await
                    .unwrap();
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    drop(store);
    std::fs::remove_dir_all(directory).unwrap();
    (
        (concurrency * per_appender) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    )
}

fn peak_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

const REPLAY_EVENTS: u64 = 1_000_000;

async fn build_replay_store(directory: &Path) {
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    let per_append = 1000;
    for batch in 0..REPLAY_EVENTS / per_append {
        let first = batch * per_append + 1;
        store
            .append(append_of(
                &format!("campaign-{}", batch % 64),
                first,
                per_append,
            ))
            .await
            .unwrap();
    }
}

/// Runs in a process of its own so that its peak memory is the replay's alone. With
/// `decode_payloads` off it measures the store's part alone (envelopes decoded, payloads not).
async fn replay(directory: &Path, decode_payloads: bool) {
    let opened = Instant::now();
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    let reopen = opened.elapsed();
    let start = Instant::now();
    let mut after = Position::START;
    let mut count = 0u64;
    let mut customers = 0usize;
    loop {
        let batch = store.read_all(after, 10_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            if decode_payloads {
                let decoded: SendPlanned = upcast::decode(event).unwrap();
                customers += decoded.customer.len();
            } else {
                customers += event.payload.len();
            }
            count += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(count, REPLAY_EVENTS);
    assert!(customers > 0);
    let what = if decode_payloads {
        "envelopes and payloads decoded"
    } else {
        "envelopes decoded, payloads not (the store's share)"
    };
    println!(
        "| replay {count} events, {what} | {:.0} events/s | {:.2} s | {:.0} ms | {:.0} MiB |",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        reopen.as_secs_f64() * 1000.0,
        peak_memory_mib()
    );
}

/// Appenders' rate against the baseline measured just before and just after, so that a disk
/// whose flush rate drifts compares like with like. Three rounds; the median is reported.
fn append_rows(runtime: &tokio::runtime::Runtime) {
    println!(
        "| what | events/s | baseline (1 fdatasync/record) around it | x baseline | p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|");
    let per_thousand = baseline(200_000, 1000);
    let per_record = baseline(2_000, 1);
    println!(
        "| plain file, fdatasync per 1000 records | {per_thousand:.0} | {per_record:.0} | {:.1} | | |",
        per_thousand / per_record
    );
    // 64,000 events at 64 appenders: several checkpoints of the write-ahead log are in each run.
    for (concurrency, per_appender) in [(1u64, 1_000u64), (8, 1_000), (64, 1_000)] {
        for sync in [SyncMode::Durable, SyncMode::NoSync] {
            let mut rounds = Vec::new();
            for _ in 0..3 {
                let before = baseline(1_000, 1);
                let (rate, p50, p99) = runtime.block_on(appenders(concurrency, per_appender, sync));
                let after = baseline(1_000, 1);
                let around = (before + after) / 2.0;
                rounds.push((rate / around, rate, around, p50, p99));
            }
            rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ratio, rate, around, p50, p99) = rounds[1];
            let label = match sync {
                SyncMode::Durable => "durable (log fdatasync)",
                SyncMode::NoSync => "log written, no fdatasync (not durable)",
            };
            println!(
                "| {concurrency} appenders, {label} | {rate:.0} | {around:.0} | {ratio:.1} | {:.2} ms | {:.2} ms |",
                p50.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0
            );
        }
    }
}

fn replay_rows(runtime: &tokio::runtime::Runtime) {
    let directory = fresh("replay");
    let built = Instant::now();
    // Built by a process of its own, like each replay, so that each peak memory is one job's.
    child("build-child", &directory, &[]);
    let _ = runtime;
    println!(
        "built a store of {REPLAY_EVENTS} events in {:.1} s ({:.0} MiB on disk)",
        built.elapsed().as_secs_f64(),
        walk_size(&directory) as f64 / (1024.0 * 1024.0)
    );
    println!();
    println!("| replay (a process of its own) | rate | time | reopen | peak memory (VmHWM) |");
    println!("|---|---|---|---|---|");
    child("replay-child", &directory, &[]);
    child("replay-child", &directory, &["--no-payload"]);
    std::fs::remove_dir_all(directory).unwrap();
    crash_rows();
}

/// Events a crashed store leaves in its write-ahead log: about a full tail (a checkpoint comes
/// every 50,000 events or 16 MiB of log; these ~300-byte records make 15 MiB), all of which
/// reopening reads back and checkpoints into sled.
const CRASH_EVENTS: u64 = 48_000;

/// Reopening after a crash: a child appends `CRASH_EVENTS` events after its store's opening
/// checkpoint and exits without closing the store (no last checkpoint, as after SIGKILL); a
/// second child reopens it.
fn crash_rows() {
    let directory = fresh("crash");
    child("crash-child", &directory, &[]);
    println!();
    println!("| reopen after a crash (a process of its own) | events recovered from the write-ahead log | reopen | peak memory (VmHWM) |");
    println!("|---|---|---|---|");
    child("reopen-child", &directory, &[]);
    std::fs::remove_dir_all(directory).unwrap();
}

/// Runs this benchmark again as the child `mode` on `directory`, and waits for it to succeed.
fn child(mode: &str, directory: &Path, extra: &[&str]) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(mode)
        .arg(directory)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "{mode} failed: {status}");
}

async fn crash(directory: &Path) {
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    let per_append = 100;
    for batch in 0..CRASH_EVENTS / per_append {
        store
            .append(append_of(
                &format!("campaign-{}", batch % 64),
                batch * per_append + 1,
                per_append,
            ))
            .await
            .unwrap();
    }
    // Every append above is acknowledged, so durable in the write-ahead log; none is in sled.
    std::process::exit(0);
}

async fn reopen(directory: &Path) {
    let opened = Instant::now();
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    let reopen = opened.elapsed();
    assert_eq!(store.head().await.unwrap(), Position(CRASH_EVENTS));
    let peak = peak_memory_mib();
    let report = store.verify().unwrap();
    assert_eq!((report.checked, report.problem), (CRASH_EVENTS, None));
    println!(
        "| {CRASH_EVENTS} events appended since the last checkpoint | {CRASH_EVENTS} | {:.0} ms | {:.0} MiB |",
        reopen.as_secs_f64() * 1000.0,
        peak
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let arguments: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // The children: checked first, so that a child never starts another run.
    let directory = || PathBuf::from(arguments.get(1).expect("a child's directory"));
    match arguments.first().map(String::as_str) {
        Some("build-child") => return runtime.block_on(build_replay_store(&directory())),
        Some("replay-child") => {
            let decode_payloads = !arguments.iter().any(|a| a == "--no-payload");
            return runtime.block_on(replay(&directory(), decode_payloads));
        }
        Some("crash-child") => return runtime.block_on(crash(&directory())),
        Some("reopen-child") => return runtime.block_on(reopen(&directory())),
        _ => {}
    }
    if arguments.first().map(String::as_str) == Some("profile") {
        let concurrency: u64 = arguments.get(1).map_or(64, |a| a.parse().unwrap());
        let per_appender: u64 = arguments.get(2).map_or(2000, |a| a.parse().unwrap());
        let cpu = std::time::Instant::now();
        let (rate, p50, p99) =
            runtime.block_on(appenders(concurrency, per_appender, SyncMode::Durable));
        println!(
            "profile: {concurrency} appenders: {rate:.0} events/s, p50 {:.2} ms, p99 {:.2} ms ({:.2} s)",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            cpu.elapsed().as_secs_f64()
        );
        return;
    }
    let only = arguments.first().cloned().unwrap_or_default();
    println!("disk: {}", bench_directory().display());
    println!();
    if only.is_empty() || only == "append" {
        append_rows(&runtime);
        println!();
    }
    if only.is_empty() || only == "replay" {
        replay_rows(&runtime);
    }
}

fn walk_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let metadata = entry.metadata().unwrap();
                    if metadata.is_dir() {
                        walk_size(&entry.path())
                    } else {
                        metadata.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
