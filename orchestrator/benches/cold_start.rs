//! A cold start over the September festival's log: the first `audience preview` of a command run
//! without a daemon, once with no snapshot of the projections (the whole log replayed; it saves
//! one) and once from that snapshot (only the tail replayed: none); then a daemon's start to its
//! first answer, from the snapshot. Each is the real `battleplan` binary in a process of its
//! own, timed from its start and measured for its peak memory by `/usr/bin/time`. Baseline,
//! measured in the same run on the same store: reading the whole log back, every event decoded,
//! no decisions (what any replay costs at least).
//!
//! `cargo bench -p battleplan-orchestrator --bench cold_start` (`BENCH_CUSTOMERS`, default
//! 100,000; `BENCH_STORE=DIR` reuses a scenario's output from an earlier run, its snapshot
//! removed first). Target (issue 25): under 2 s from a snapshot at 1,000,000 customers.

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

mod common;
use common::{
    daemon_answering, drop_snapshot, env_number, festival_store, read_back, stop_daemon, timed,
};

/// The preview as the festival's first mail was planned (a question: the clock is only what it
/// answers at).
const PREVIEW: [&str; 6] = [
    "--clock-at=2026-09-01T08:00:00+08:00",
    "audience",
    "preview",
    "sept-festival-2026",
    "--reach-out",
    "early-stage-mail",
];

/// What the daemon is asked first: the outbox, which needs the projections caught up.
const OUTBOX: [&str; 2] = ["outbox", "sept-festival-2026"];

/// A daemon's start to its first answer (`outbox` through its control socket).
fn daemon_first_answer(data: &Path) -> Duration {
    let (elapsed, daemon) = daemon_answering(data, &[], &OUTBOX);
    stop_daemon(daemon);
    elapsed
}

fn main() {
    let customers = env_number("BENCH_CUSTOMERS", 100_000);
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-cold-")
        .tempdir()
        .unwrap();
    let out = festival_store(scratch.path(), customers);
    let data = out.join("data");
    let (baseline, events) = read_back(&data);
    // No snapshot: the first command replays the whole log (and saves one).
    drop_snapshot(&data);
    let (cold, cold_peak) = timed(&data, &PREVIEW);
    let (warm, warm_peak) = timed(&data, &PREVIEW);
    let daemon = daemon_first_answer(&data);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snapshot = tokio.block_on(async {
        let store = battleplan_adapters::SledEventLog::open(
            &data,
            battleplan_adapters::StoreOptions::default(),
        )
        .unwrap();
        battleplan_orchestrator::kernel::snapshot::stored(&store)
            .await
            .unwrap()
    });
    let (snapshot_at, snapshot_bytes) = snapshot.map_or((0, 0), |(at, bytes)| (at.0, bytes));
    let size_of = |directory: &Path| {
        std::fs::read_dir(directory)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|metadata| metadata.len())
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    // sled's files and the write-ahead files, then the segment files.
    let size = size_of(&data);
    let segments = size_of(&data.join("log"));
    println!(
        "september-festival with {customers} customers (BENCH_CUSTOMERS), {events} events ({:.0} MiB of sled's and the write-ahead files besides sled's blobs, {:.0} MiB of segment files):",
        size as f64 / 1048576.0,
        segments as f64 / 1048576.0
    );
    println!(
        "  audience preview without a daemon, no snapshot (whole log replayed, snapshot saved): {:.2} s, peak {:.0} MiB",
        cold.as_secs_f64(),
        cold_peak as f64 / 1024.0
    );
    println!(
        "  audience preview without a daemon, from the snapshot: {:.2} s, peak {:.0} MiB",
        warm.as_secs_f64(),
        warm_peak as f64 / 1024.0
    );
    println!(
        "  a daemon's start to its first answer, from the snapshot: {:.2} s",
        daemon.as_secs_f64()
    );
    println!(
        "  the snapshot: {:.1} MiB at position {snapshot_at}",
        snapshot_bytes as f64 / 1048576.0
    );
    println!(
        "  baseline, the log read back in this process: {:.2} s ({:.0} events/s)",
        baseline.as_secs_f64(),
        events as f64 / baseline.as_secs_f64().max(0.001)
    );
}
