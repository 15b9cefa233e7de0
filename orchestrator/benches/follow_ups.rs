//! Stopping the follow-ups still open when a campaign completes: the daemon's scheduler and
//! dispatcher under the simulated clock from an hour before the end of the review to an hour
//! after it, on a store where the warm-up recall and the early-stage mail went to ~12,500
//! customers with a follow-up rule that would fire only after the campaign ended. Every open
//! thread gets its `FollowUpStopped` (campaign ended). Baseline, measured in the same run:
//! appending the same number of `FollowUpStopped` events to a fresh store of its own, in the
//! dispatcher's appends of 200, with no decision: the log's own cost.
//!
//! `cargo bench -p battleplan-orchestrator --bench follow_ups` (`BENCH_CUSTOMERS`, default
//! 12,500).

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{battleplan, env_number};

use std::sync::Arc;
use std::time::Instant;

use battleplan_adapters::outbox::FileOutbox;
use battleplan_adapters::system::RandomIds;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::context::{IdSource, ManualClock};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, Position, StreamId,
};
use battleplan_core::outreach::events::{FollowUpStopped, OutreachEvent};
use battleplan_orchestrator::kernel::runtime::Runtime;
use battleplan_orchestrator::kernel::scheduler::{Scheduler, Timing};
use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use chrono::{DateTime, Utc};

/// An hour before the review ends (2026-10-08 00:00 +08:00), and an hour after.
const BEFORE_END: &str = "2026-10-07T23:00:00+08:00";
const AFTER_END: &str = "2026-10-08T01:00:00+08:00";

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
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

/// Every `FollowUpStopped` in the log.
async fn stops(store: &SledEventLog) -> Vec<FollowUpStopped> {
    let mut found = Vec::new();
    let mut after = Position::START;
    loop {
        let events = store.read_all(after, 10_000).await.unwrap();
        let Some(last) = events.last() else {
            return found;
        };
        after = last.position;
        for event in &events {
            if let Ok(Some(OutreachEvent::FollowUpStopped(stopped))) = OutreachEvent::decode(event)
            {
                found.push(stopped);
            }
        }
    }
}

fn main() {
    let count = env_number("BENCH_CUSTOMERS", 12_500);
    let scratch = tempfile::Builder::new()
        .prefix("battleplan-bench-follow-ups-")
        .tempdir()
        .expect("a temporary directory");
    let dir = scratch.path();

    // The example plan with the warm-up recall sent to every customer, mail's quotas, budget and
    // quiet hours taken off, and a follow-up rule that waits longer than the campaign lasts.
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
            ("after = \"7d\"", "after = \"90d\""),
        ],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    let data = dir.join("data");
    let data_arg = data.display().to_string();
    battleplan(
        dir,
        &[
            "--data",
            &data_arg,
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
            &data_arg,
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    );
    // The campaign up to an hour before its end: reach-outs sent, follow-ups open.
    battleplan(
        dir,
        &[
            "--data",
            &data_arg,
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-20T00:00:00Z",
            "--until",
            BEFORE_END,
        ],
    );

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (elapsed, stopped) = tokio.block_on(async {
        let store = Arc::new(SledEventLog::open(&data, StoreOptions::default()).expect("store"));
        let clock = Arc::new(ManualClock::new(instant(BEFORE_END)));
        let runtime = Runtime::new(store.clone(), clock.clone(), Arc::new(RandomIds));
        let before = stops(&store).await.len();
        let mut scheduler = Scheduler::new(runtime, Timing::Simulated(clock), None)
            .with_outbox(Arc::new(FileOutbox::new(data.join("outbox"))));
        scheduler.start().await.expect("start");
        scheduler
            .advance_to(instant(BEFORE_END))
            .await
            .expect("catch up");
        let started = Instant::now();
        scheduler
            .advance_to(instant(AFTER_END))
            .await
            .expect("the end of the campaign");
        let elapsed = started.elapsed();
        let stopped: Vec<FollowUpStopped> = stops(&store).await.split_off(before);
        (elapsed, stopped)
    });
    assert!(
        stopped.len() >= 10_000,
        "only {} follow-ups were open at the end; raise BENCH_CUSTOMERS",
        stopped.len()
    );

    // Baseline: the same events appended to a store of their own, 200 an append.
    let baseline_dir = dir.join("baseline");
    let baseline = tokio.block_on(async {
        let store = SledEventLog::open(&baseline_dir, StoreOptions::default()).expect("store");
        let stream = StreamId::new("outreach-baseline".to_string()).unwrap();
        let at = instant(AFTER_END);
        let started = Instant::now();
        for chunk in stopped.chunks(200) {
            let events = chunk
                .iter()
                .map(|stop| {
                    OutreachEvent::FollowUpStopped(stop.clone())
                        .encode(EventId(RandomIds.next_id(at)))
                        .unwrap()
                })
                .collect();
            store
                .append(Append {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Any,
                    events,
                    metadata: Metadata {
                        actor: "bench".to_string(),
                        command_id: CommandId(RandomIds.next_id(at)),
                        causation_id: None,
                        correlation_id: None,
                        reason: None,
                    },
                    recorded_at: at,
                })
                .await
                .unwrap();
        }
        started.elapsed()
    });

    println!(
        "| the campaign completes: {} open follow-ups stopped (scheduler and dispatcher, simulated clock) | {:.3} s | {:.0} stops/s |",
        stopped.len(),
        elapsed.as_secs_f64(),
        stopped.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| **baseline**: the same {} `FollowUpStopped` appended to a store of their own, 200 an append | {:.3} s | {:.0} events/s |",
        stopped.len(),
        baseline.as_secs_f64(),
        stopped.len() as f64 / baseline.as_secs_f64()
    );
}
