//! The September festival scenario simulated end to end with 100,000 generated customers: the
//! real scheduler, dispatcher, projections and command handler under the virtual clock, from
//! applying the plan and importing the customers to the end of the review. Events a second
//! and the process's peak memory. Baseline, measured in the same run on the same store: reading
//! the whole resulting log back (every event decoded from the store, no decisions), the floor of
//! anything that touches each event once.
//!
//! `cargo bench -p battleplan-orchestrator --bench scenario` (`BENCH_CUSTOMERS`, default
//! 100,000). Target: under 30 s on the 2-core machine.

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use battleplan_core::event::port::EventReader;
use battleplan_core::event::Position;
use battleplan_orchestrator::hosts::scenario::{self, Output};
use battleplan_scenarios::scenario::{load_text, DEMO, SHIPPED};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's peak resident set, in KiB, from /proc.
fn own_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// In a child process of its own, so that its peak memory is the run's alone.
fn child(out: &str, customers: u64) {
    let (name, text) = SHIPPED.iter().find(|(name, _)| *name == DEMO).unwrap();
    let text = text.replace("generate = 10000", &format!("generate = {customers}"));
    let loaded = load_text(&text, Path::new(name), Path::new(".")).unwrap();
    let output = Output {
        dir: Path::new(out).to_path_buf(),
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let finished = tokio
        .block_on(scenario::run(&loaded, &output, &|_| {}))
        .unwrap();
    let run = started.elapsed();
    let peak = own_peak_kib();

    // Baseline: the same log read back from the same store.
    let store = battleplan_adapters::SledEventLog::open(
        &output.data(),
        battleplan_adapters::StoreOptions::default(),
    )
    .unwrap();
    let started = Instant::now();
    let read = tokio.block_on(async {
        let mut after = Position::START;
        let mut count = 0u64;
        loop {
            let batch = store.read_all(after, 10_000).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = last.position;
            count += batch.len() as u64;
        }
        count
    });
    let baseline = started.elapsed();
    assert_eq!(read, finished.events);
    println!(
        "{} {} {} {}",
        run.as_millis(),
        finished.events,
        peak,
        baseline.as_millis()
    );
}

fn main() {
    let customers = env_number("BENCH_CUSTOMERS", 100_000);
    if let Ok(out) = std::env::var("BENCH_SCENARIO_CHILD") {
        child(&out, customers);
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-scenario-")
        .tempdir()
        .unwrap();
    let out = scratch.path().join("run");
    let output = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_SCENARIO_CHILD", out.display().to_string())
        .env("BENCH_CUSTOMERS", customers.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    let figures: Vec<f64> = said
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0))
        .collect();
    let (millis, events, peak_kib, baseline_millis) =
        (figures[0], figures[1], figures[2], figures[3]);
    println!(
        "september-festival with {customers} customers: {events} events in {:.2} s = {:.0} events/s, peak RSS {:.0} MiB; baseline, reading the same log back: {:.2} s = {:.0} events/s (the run takes {:.1} x as long)",
        millis / 1000.0,
        events / (millis / 1000.0),
        peak_kib / 1024.0,
        baseline_millis / 1000.0,
        events / (baseline_millis / 1000.0).max(0.001),
        millis / baseline_millis.max(1.0)
    );
}
