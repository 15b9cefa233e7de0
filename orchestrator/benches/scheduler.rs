//! The scheduler under the system clock: how late it enters a boundary, with many campaigns
//! whose boundaries are staggered, and how much CPU the daemon burns while idle.
//!
//! `cargo bench -p battleplan-orchestrator --bench scheduler` (`BENCH_CAMPAIGNS`, default
//! 10,000; `BENCH_SPAN_SECONDS`, default 30: the boundaries spread evenly over that span).
//! Baseline, measured in the same run: plain tokio timers sleeping until the same instants,
//! the floor any scheduler on this runtime can reach.

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use battleplan_adapters::system::{RandomIds, SystemClock};
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::campaign::events::PhaseEntered;
use battleplan_core::campaign::{
    CampaignEvent, Command, Outline, PlanVersion, Step, StepWindow, Timeline,
};
use battleplan_core::event::Position;
use battleplan_core::plan::model::{PhaseKind, ResumePolicy};
use battleplan_orchestrator::kernel::runtime::{Runtime, Who};
use battleplan_orchestrator::kernel::scheduler::{Scheduler, Timing};
use chrono::{DateTime, Duration, Utc};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of this process, from /proc.
fn cpu_time() -> StdDuration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime), counted after the command name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    StdDuration::from_millis(ticks * 10)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn version(id: &str, first: DateTime<Utc>) -> PlanVersion {
    let day = Duration::days(1);
    let step = |phase, stage: Option<&str>, start: DateTime<Utc>| StepWindow {
        step: Step {
            phase,
            stage: stage.map(str::to_string),
        },
        start,
        end: start + day,
    };
    PlanVersion {
        campaign: id.to_string(),
        name: format!("campaign {id}"),
        source: String::new(),
        digest: format!("{id}-v1"),
        timeline: Timeline {
            time_zone: "UTC".into(),
            on_resume: ResumePolicy::FollowClock,
            steps: vec![
                step(PhaseKind::Prep, None, first),
                step(PhaseKind::WarmUp, None, first + day),
                step(PhaseKind::Burst, Some("only"), first + day * 2),
            ],
        },
        outline: Outline::new(),
    }
}

fn report(name: &str, lags_ms: &mut [i64]) {
    lags_ms.sort_unstable();
    println!(
        "{name}: {} boundaries, lag p50 {} ms, p99 {} ms, max {} ms",
        lags_ms.len(),
        percentile(lags_ms, 0.50),
        percentile(lags_ms, 0.99),
        lags_ms.last().copied().unwrap_or(0)
    );
}

fn main() {
    let campaigns = env_number("BENCH_CAMPAIGNS", 10_000);
    let span = StdDuration::from_secs(env_number("BENCH_SPAN_SECONDS", 30));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let directory = tempfile::Builder::new()
        .prefix("battleplan-bench-scheduler-")
        .tempdir()
        .unwrap();
    let store = SledEventLog::open(directory.path(), StoreOptions::default()).unwrap();
    let runtime = Runtime::new(Arc::new(store), Arc::new(SystemClock), Arc::new(RandomIds));
    tokio.block_on(async move {
        // Baseline: tokio timers alone, sleeping until instants staggered the same way.
        let start = Utc::now() + Duration::seconds(2);
        let gap = span.as_nanos() as i64 / campaigns.max(1) as i64;
        let mut timers = Vec::new();
        for i in 0..campaigns {
            let due = start + Duration::nanoseconds(gap * i as i64);
            timers.push(tokio::spawn(async move {
                let wait = (due - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                (Utc::now() - due).num_milliseconds()
            }));
        }
        let mut baseline = Vec::new();
        for timer in timers {
            baseline.push(timer.await.unwrap());
        }
        report("baseline, tokio timers alone", &mut baseline);

        // Campaigns whose prep starts at staggered instants, a few seconds from now.
        let applying = Instant::now();
        let setup_span = Duration::seconds((campaigns / 2_000 + 5) as i64);
        let start = Utc::now() + setup_span;
        let mut tasks = Vec::new();
        let per_task = campaigns.div_ceil(64);
        for task in 0..64u64 {
            let runtime = runtime.clone();
            tasks.push(tokio::spawn(async move {
                for i in task * per_task..((task + 1) * per_task).min(campaigns) {
                    let id = format!("c{i:05}");
                    let first = start + Duration::nanoseconds(gap * i as i64);
                    let command = Command::ApplyPlan(Box::new(version(&id, first)));
                    runtime
                        .handle(&id, &command, &Who::by("bench"))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        println!(
            "applied {campaigns} plans in {:.1} s; first boundary in {:.1} s",
            applying.elapsed().as_secs_f64(),
            (start - runtime.clock.now()).num_milliseconds() as f64 / 1000.0
        );
        assert!(
            runtime.clock.now() < start,
            "setup took longer than its margin"
        );

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scheduler =
            tokio::spawn(Scheduler::new(runtime.clone(), Timing::Real, None).run(stopped));
        let target = Position(campaigns * 2);
        loop {
            let head = runtime.store.head().await.unwrap();
            if head >= target {
                break;
            }
            runtime.store.wait_beyond(head).await.unwrap();
        }
        // Idle: the next boundaries are a day away.
        let idle_wall = StdDuration::from_secs(5);
        let before = cpu_time();
        tokio::time::sleep(idle_wall).await;
        let idle_cpu = cpu_time() - before;
        stop.send(true).unwrap();
        scheduler.await.unwrap().unwrap();

        let mut lags = Vec::new();
        let mut after = Position::START;
        loop {
            let events = runtime.store.read_all(after, 10_000).await.unwrap();
            let Some(last) = events.last() else { break };
            after = last.position;
            for event in &events {
                if let Ok(Some(CampaignEvent::PhaseEntered(PhaseEntered { late_by_ms, .. }))) =
                    CampaignEvent::decode(event)
                {
                    lags.push(late_by_ms);
                }
            }
        }
        report("scheduler, sled store, system clock", &mut lags);
        println!(
            "idle: {:.1} ms of CPU in {} s ({:.2} % of one core)",
            idle_cpu.as_secs_f64() * 1000.0,
            idle_wall.as_secs(),
            idle_cpu.as_secs_f64() / idle_wall.as_secs_f64() * 100.0
        );
    });
}
