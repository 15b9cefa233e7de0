//! `battleplan export`, `battleplan import` and `battleplan audit verify` over the September
//! festival's log: each the real binary in a process of its own, timed from its start and
//! measured for its peak memory by `/usr/bin/time`. Baseline, measured in the same run on the
//! same store: reading the whole log back, every event decoded, no decisions.
//!
//! `cargo bench -p battleplan-orchestrator --bench archive` (`BENCH_CUSTOMERS`, default
//! 100,000; `BENCH_STORE=DIR` reuses a `scenario run --out DIR` from an earlier run). Target
//! (issue 25): each at least 300,000 events/s over the 1,000,000-customer log.

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

mod common;
use common::{env_number, festival_store, own_peak_kib, read_back, timed};

fn report(what: &str, events: u64, (took, peak): (Duration, u64)) {
    println!(
        "  {what}: {:.2} s ({:.0} events/s), peak {:.0} MiB",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64().max(0.001),
        peak as f64 / 1024.0
    );
}

fn main() {
    let customers = env_number("BENCH_CUSTOMERS", 100_000);
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-archive-")
        .tempdir()
        .unwrap();
    let out = festival_store(scratch.path(), customers);
    let data = out.join("data");
    let (baseline, events) = read_back(&data);
    // Before any child: the read-back's own peak (a scenario run here is in this process too).
    let baseline_peak = own_peak_kib();
    let file = scratch.path().join("log.jsonl");
    let file_text = file.to_str().unwrap();
    let export = timed(&data, &["export", "--out", file_text]);
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let restored = scratch.path().join("restored");
    let import = timed(&restored, &["import", file_text]);
    let verify = timed(&data, &["audit", "verify"]);
    println!(
        "september-festival, {events} events ({customers} customers, BENCH_CUSTOMERS); the export {:.0} MiB ({:.0} bytes a line):",
        bytes as f64 / 1048576.0,
        bytes as f64 / events.max(1) as f64
    );
    report("export --out FILE", events, export);
    report("import FILE (a new store)", events, import);
    report("audit verify", events, verify);
    println!(
        "  baseline, the log read back in this process: {:.2} s ({:.0} events/s), this process's peak so far {:.0} MiB",
        baseline.as_secs_f64(),
        events as f64 / baseline.as_secs_f64().max(0.001),
        baseline_peak as f64 / 1024.0
    );
}
