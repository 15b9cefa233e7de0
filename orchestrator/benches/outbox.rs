//! Planning and dispatching a reach-out of ~100,000 customers to the file outbox, as the daemon
//! does when the warm-up opens: every customer decided as events (a planned send with its quota
//! day, or a typed reason), every planned send rendered, written to the channel's file with its
//! idempotency key, and recorded as sent. Reach-outs a second and the process's peak memory.
//! Baseline, measured in the same run: writing the same lines to a file of their own in the same
//! batches with the same `fdatasync` per batch, and no log.
//!
//! `cargo bench -p battleplan-orchestrator --bench outbox` (`BENCH_CUSTOMERS`, default 125,000:
//! some generated customers have no address, unsubscribed or are in the recycle bin, so ~100,000
//! sends).

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{battleplan, env_number, own_peak_kib};

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use chrono::{DateTime, Utc};

const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
/// The dispatcher's batch: one `fdatasync` of the outbox file per this many messages.
const BATCH: usize = 500;

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// In a child process of its own (so that its peak memory is the run's alone): the daemon's
/// scheduler and dispatcher with the clock fixed at the warm-up's start, as
/// `battleplan run --clock-at WARM_UP --until WARM_UP` runs them.
fn child(data: &str) {
    use battleplan_adapters::outbox::FileOutbox;
    use battleplan_adapters::system::RandomIds;
    use battleplan_adapters::{SledEventLog, StoreOptions};
    use battleplan_core::context::ManualClock;
    use battleplan_orchestrator::kernel::runtime::Runtime;
    use battleplan_orchestrator::kernel::scheduler::{Scheduler, Timing};
    use std::sync::Arc;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let data = Path::new(data);
    let store = SledEventLog::open(data, StoreOptions::default()).expect("store");
    let at = instant(WARM_UP);
    let runtime = Runtime::new(
        Arc::new(store),
        Arc::new(ManualClock::new(at)),
        Arc::new(RandomIds),
    );
    let started = Instant::now();
    let summary = tokio.block_on(async {
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        Scheduler::new(runtime, Timing::Frozen, Some(at))
            .with_outbox(Arc::new(FileOutbox::new(data.join("outbox"))))
            .run(stopped)
            .await
            .expect("the run")
    });
    println!(
        "{} {} {}",
        started.elapsed().as_millis(),
        own_peak_kib(),
        summary.sent
    );
}

/// `base` with each `(from, to)` replaced; `from` must occur exactly once.
fn mutate(base: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = base.to_string();
    for (from, to) in replacements {
        assert_eq!(
            text.matches(from).count(),
            1,
            "`{from}` in the example plan"
        );
        text = text.replacen(from, to, 1);
    }
    text
}

fn main() {
    if let Ok(data) = std::env::var("BENCH_OUTBOX_CHILD") {
        child(&data);
        return;
    }
    let count = env_number("BENCH_CUSTOMERS", 125_000);
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-outbox-")
        .tempdir()
        .expect("a temporary directory");
    let dir = scratch.path();

    // The example plan, with the warm-up recall sent to every customer and mail's quotas, budget
    // and quiet hours taken off, so that the whole reach-out is due at the warm-up's start.
    battleplan(dir, &["init", "--out", "example.toml"]);
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let plan = mutate(
        &example,
        &[
            (
                "all = [\n  { source = \"shared_pool\" },\n  { activity = \"inquired\", within = \"180d\" },\n]\nnone = [{ activity = \"ordered\", within = \"30d\" }]\n",
                "all = [{ source = [\"shared_pool\", \"own_list\", \"offline_import\"] }]\n",
            ),
            ("free_per_day = 200          # the first 200 a day are free\n", ""),
            ("daily_cap = 2000            # the platform's initial cap\n", ""),
            ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
            (
                "quiet_hours = { start = \"22:00\", end = \"08:00\", policy = \"hold\" }\n",
                "",
            ),
            ("monthly_budget = 100.00\n", ""),
        ],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    battleplan(
        dir,
        &[
            "--data",
            "data",
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    );
    let mut customers =
        std::io::BufWriter::new(std::fs::File::create(dir.join("customers.csv")).unwrap());
    write_customers(
        &mut customers,
        Options {
            count,
            seed: 7,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    drop(customers);
    battleplan(
        dir,
        &[
            "--data",
            "data",
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    );

    let data = dir.join("data");
    let output = Command::new(std::env::current_exe().expect("the bench's own path"))
        .env("BENCH_OUTBOX_CHILD", data.display().to_string())
        .output()
        .expect("the run child runs");
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
    let (millis, peak_kib, sent) = (figures[0], figures[1], figures[2]);
    let run = std::time::Duration::from_secs_f64(millis / 1000.0);

    // What the reach-outs decided, as the outbox report counts it.
    let report: serde_json::Value = serde_json::from_str(&battleplan(
        dir,
        &["--data", "data", "outbox", "sept-festival-2026", "--json"],
    ))
    .unwrap();
    // Every customer channel's file (mail, and the in-site coupons running since the prep);
    // staff reminders are not counted.
    let mut text = String::new();
    for channel in ["mail", "in-site"] {
        text += &std::fs::read_to_string(data.join(format!("outbox/{channel}.jsonl")))
            .unwrap_or_default();
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as f64, sent, "one line a message sent");

    // Baseline: the same lines, written in the same batches, each batch made durable.
    let started = Instant::now();
    let mut file = std::fs::File::create(dir.join("baseline.jsonl")).unwrap();
    for batch in lines.chunks(BATCH) {
        let mut buffer = Vec::with_capacity(batch.len() * 512);
        for line in batch {
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        file.write_all(&buffer).unwrap();
        file.sync_data().unwrap();
    }
    let baseline = started.elapsed();

    println!("{count} customers; outbox report: {report}");
    println!(
        "planned and dispatched {sent} reach-out message(s) in {run:.2?} = {:.0} reach-outs/s, peak RSS {:.0} MiB; baseline, the same {} lines ({:.0} MiB) written in batches of {BATCH} with fdatasync: {baseline:.2?} = {:.0} lines/s (the outbox takes {:.0} x as long)",
        sent / run.as_secs_f64(),
        peak_kib / 1024.0,
        lines.len(),
        text.len() as f64 / 1_048_576.0,
        lines.len() as f64 / baseline.as_secs_f64(),
        run.as_secs_f64() / baseline.as_secs_f64()
    );
}
