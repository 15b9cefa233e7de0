//! What the benches that drive the real binary share: a command run, a command timed in a
//! process of its own, the festival run at a size, and the baseline of reading the whole log
//! back. `mod common;` in each bench that uses it.

// Each bench uses only some of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use battleplan_core::event::port::EventReader;
use battleplan_core::event::Position;
use battleplan_orchestrator::hosts::scenario::{self, Output};
use battleplan_scenarios::scenario::{load_text, DEMO, SHIPPED};

pub const BATTLEPLAN: &str = env!("CARGO_BIN_EXE_battleplan");

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's peak resident set, in KiB, from /proc.
pub fn own_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// The command's wall time and peak resident memory (KiB), through `/usr/bin/time`.
pub fn timed(data: &Path, arguments: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak-kib %M"])
        .arg(BATTLEPLAN)
        .arg("--data")
        .arg(data)
        .args(arguments)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let peak = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak-kib "))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or(0);
    (elapsed, peak)
}

/// The shipped festival with `customers` generated, run into `out` (`scenario run --out`).
pub fn run_scenario(out: &Path, customers: u64) {
    let (name, text) = SHIPPED.iter().find(|(name, _)| *name == DEMO).unwrap();
    let text = text.replace("generate = 10000", &format!("generate = {customers}"));
    let loaded = load_text(&text, Path::new(name), Path::new(".")).unwrap();
    let output = Output {
        dir: out.to_path_buf(),
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio
        .block_on(scenario::run(&loaded, &output, &|_| {}))
        .unwrap();
}

/// The festival's output directory: `BENCH_STORE` when set (a `scenario run --out DIR` from an
/// earlier run), else the festival run now with `customers` into `scratch`.
pub fn festival_store(scratch: &Path, customers: u64) -> std::path::PathBuf {
    match std::env::var("BENCH_STORE") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => {
            let out = scratch.join("run");
            run_scenario(&out, customers);
            out
        }
    }
}

/// The baseline: the whole log read back, every event decoded, in this process.
pub fn read_back(data: &Path) -> (Duration, u64) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store =
        battleplan_adapters::SledEventLog::open(data, battleplan_adapters::StoreOptions::default())
            .unwrap();
    let started = Instant::now();
    let count = tokio.block_on(async {
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
    (started.elapsed(), count)
}

/// Runs `battleplan ARGS` in `dir` and gives its standard output; a failure stops the bench.
pub fn battleplan(dir: &Path, arguments: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_battleplan"))
        .args(arguments)
        .current_dir(dir)
        .env_remove("BATTLEPLAN_DATA")
        // The actor of what it records without --actor, on a machine that may not set USER.
        .env("USER", "bench")
        .output()
        .expect("battleplan runs");
    assert!(
        output.status.success(),
        "battleplan {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A daemon (`battleplan --data DATA [RUN_ARGUMENTS] run`) started and asked `question` through
/// its control socket once it listens (a command started before would open the store itself):
/// the time from its spawn to the answer, and the daemon, still running.
pub fn daemon_answering(
    data: &Path,
    run_arguments: &[&str],
    question: &[&str],
) -> (Duration, Child) {
    let socket = data.join("control.sock");
    let _ = std::fs::remove_file(&socket);
    let started = Instant::now();
    let daemon = Command::new(BATTLEPLAN)
        .arg("--data")
        .arg(data)
        .args(run_arguments)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the daemon never listened");
        std::thread::sleep(Duration::from_millis(5));
    }
    let answered = Command::new(BATTLEPLAN)
        .arg("--data")
        .arg(data)
        .args(question)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    (elapsed, daemon)
}

/// Stops a daemon as a person would (SIGTERM) and waits for it.
pub fn stop_daemon(mut daemon: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
}

/// Removes the store's snapshot of the projections: the next process catches up from the log.
pub fn drop_snapshot(data: &Path) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let store = battleplan_adapters::SledEventLog::open(
            data,
            battleplan_adapters::StoreOptions::default(),
        )
        .unwrap();
        use battleplan_core::event::Checkpoints;
        store
            .reset(battleplan_orchestrator::kernel::snapshot::PROJECTION)
            .await
            .unwrap();
    });
}
