//! `audience preview` over a large book: the pipeline (segment at the instant, each exclusion in
//! order, the planner spreading sends over the window within quotas) against a baseline measured
//! in the same run, the same filter as a plain loop over in-memory rows, to show the pipeline's
//! overhead. Also: building the book from events (the projection rebuild), and catching it up
//! from a sled log, which is what a preview costs without a daemon.
//!
//! `cargo bench -p battleplan-orchestrator --bench audience` (`BENCH_CUSTOMERS`, default
//! 1,000,000; `BENCH_ROUNDS`, default 5, the median is reported; `BENCH_SLED=0` skips the sled
//! part).

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::context::SeededIds;
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::customer::events::{
    CustomerEvent, CustomerRecorded, ImportKind, ImportStarted, OutcomeKind, OutcomeRecorded,
    Signal,
};
use battleplan_core::customer::preview::{plan_audience, Target};
use battleplan_core::customer::quota::Ledger;
use battleplan_core::event::port::EventAppender;
use battleplan_core::event::{Append, CommandId, EventId, ExpectedVersion, Metadata, StreamId};
use battleplan_core::plan::model::{Activity, ChannelKind, CustomerSource};
use battleplan_core::plan::{self, EXAMPLE_PLAN};
use battleplan_orchestrator::kernel::plans::catch_up_book as catch_up;
use battleplan_scenarios::customers::SplitMix64;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A book's worth of events: customers with activity over the 200 days before the burst, some
/// reached recently (fatigue), some unsubscribed, in the bin, or with a bad address.
fn events(count: u64) -> Vec<CustomerEvent> {
    let as_of = at("2026-09-02T00:00:00+08:00");
    let mut random = SplitMix64::new(42);
    let mut events = Vec::with_capacity(count as usize + count as usize / 10 + 1);
    events.push(CustomerEvent::ImportStarted(ImportStarted {
        kind: ImportKind::Customers,
        file: "customers.csv".into(),
        digest: "0".repeat(64),
        rows: count,
        skipped: Vec::new(),
        skipped_total: 0,
    }));
    let owners = ["wang.wei", "zhang.min", "liu.yang"];
    let tiers = ["L0", "L1", "L1+", "L2", "L3"];
    for index in 1..=count {
        let id = format!("c-{index:07}");
        let seconds_ago = random.below(200 * 86_400) as i64;
        let email = match random.below(20) {
            0 => None,
            1 => Some("not-an-address".to_string()),
            _ => Some(format!("buyer{index}@example.com")),
        };
        let mut signals = vec![Signal {
            activity: match random.below(4) {
                0 => Activity::Visited,
                1 => Activity::Inquired,
                2 => Activity::Active,
                _ => Activity::Carted,
            },
            at: as_of - Duration::seconds(seconds_ago),
            amount: None,
        }];
        if random.below(10) == 0 {
            signals.push(Signal {
                activity: Activity::Ordered,
                at: as_of - Duration::seconds(random.below(100 * 86_400) as i64),
                amount: None,
            });
        }
        events.push(CustomerEvent::CustomerRecorded(CustomerRecorded {
            customer: id.clone(),
            line: index + 1,
            name: Some(format!("Buyer {index}")),
            company: None,
            email,
            tags: Some(if random.below(8) == 0 {
                vec!["left-card".into()]
            } else {
                Vec::new()
            }),
            tier: Some(tiers[random.below(5) as usize].to_string()),
            owner: (random.below(3) != 0).then(|| owners[random.below(3) as usize].to_string()),
            source: Some(match random.below(3) {
                0 => CustomerSource::OwnList,
                1 => CustomerSource::SharedPool,
                _ => CustomerSource::OfflineImport,
            }),
            locale: Some("en".into()),
            time_zone: (random.below(10) == 0).then(|| "Europe/Berlin".to_string()),
            attributes: Vec::new(),
            orders: None,
            unsubscribed: if random.below(50) == 0 {
                vec![ChannelKind::Mail]
            } else {
                Vec::new()
            },
            unsubscribed_all: false,
            recycle_bin: (random.below(100) == 0).then_some(true),
            signals,
        }));
        if random.below(10) == 0 {
            events.push(CustomerEvent::OutcomeRecorded(OutcomeRecorded {
                customer: id,
                line: index + 1,
                outcome: OutcomeKind::Delivered,
                at: as_of - Duration::seconds(random.below(14 * 86_400) as i64),
                campaign: None,
                reach_out: None,
                channel: Some(ChannelKind::Mail),
                amount: None,
                message: None,
                offer: None,
            }));
        }
    }
    events
}

/// The baseline's rows: what the filter reads, flat.
struct Row {
    email_ok: bool,
    unsubscribed: bool,
    recycle_bin: bool,
    last_active: i64,
    last_reached: i64,
    listed: bool,
}

fn median(mut values: Vec<StdDuration>) -> StdDuration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let customers = env_number("BENCH_CUSTOMERS", 1_000_000);
    let rounds = env_number("BENCH_ROUNDS", 5).max(1) as usize;
    let plan = plan::check(EXAMPLE_PLAN.as_bytes())
        .plan
        .expect("the example plan");
    println!("audience preview over {customers} customers, median of {rounds} rounds");

    let started = Instant::now();
    let events = events(customers);
    println!(
        "generated {} events in {:.2?}",
        events.len(),
        started.elapsed()
    );

    let recorded_at = at("2026-08-01T00:00:00Z");
    let started = Instant::now();
    let mut book = CustomerBook::default();
    for event in &events {
        book.apply(event, recorded_at);
    }
    let build = started.elapsed();
    println!(
        "book built from {} events in {:.2?} ({:.0} events/s)",
        events.len(),
        build,
        events.len() as f64 / build.as_secs_f64()
    );

    let evaluate_at = at("2026-09-02T00:00:00+08:00");
    let ledger = Ledger::default();
    for reach_out in ["early-stage-mail", "late-stage-mail", "smart-batch"] {
        let mut times = Vec::new();
        let mut summary = String::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let audience = plan_audience(
                &plan,
                &book,
                &ledger,
                Target::ReachOut(reach_out),
                evaluate_at,
            )
            .expect("preview");
            times.push(started.elapsed());
            summary = format!(
                "segment {}, reachable {}, planned {}, days {}",
                audience.segment_size,
                audience.reachable,
                audience.placed(),
                audience.sends.days.len()
            );
            black_box(audience);
        }
        println!(
            "pipeline {reach_out:<18} {:>9.1?}  ({summary})",
            median(times)
        );
    }

    // Baseline: early-stage-mail's filter (active in 90 days; address; unsubscribed; bin;
    // do-not-contact list; 7-day fatigue) as a plain loop over flat rows, then the same day
    // arithmetic (2,000 a day).
    let listed: HashSet<&str> = ["c-000417", "c-002291"].into_iter().collect();
    let rows: Vec<Row> = book
        .customers()
        .iter()
        .map(|customer| Row {
            email_ok: customer.email_ok,
            unsubscribed: customer.unsubscribed_from(ChannelKind::Mail),
            recycle_bin: customer.recycle_bin,
            last_active: customer.last_active,
            last_reached: customer.last_reached_any(),
            listed: listed.contains(customer.id()),
        })
        .collect();
    let instant = evaluate_at.timestamp_millis();
    let day_ms = 86_400_000i64;
    let mut times = Vec::new();
    let mut reachable = 0u64;
    for _ in 0..rounds {
        let started = Instant::now();
        let mut counts = [0u64; 6];
        let mut sends_by_day = vec![0u32; 9];
        let mut day = 0usize;
        for row in &rows {
            if row.last_active == i64::MIN || row.last_active <= instant - 90 * day_ms {
                continue;
            }
            counts[0] += 1;
            if !row.email_ok {
                counts[1] += 1;
            } else if row.unsubscribed {
                counts[2] += 1;
            } else if row.recycle_bin {
                counts[3] += 1;
            } else if row.listed {
                counts[4] += 1;
            } else if row.last_reached != i64::MIN && instant - row.last_reached < 7 * day_ms {
                counts[5] += 1;
            } else {
                while day < sends_by_day.len() && sends_by_day[day] >= 2000 {
                    day += 1;
                }
                if day < sends_by_day.len() {
                    sends_by_day[day] += 1;
                }
            }
        }
        times.push(started.elapsed());
        reachable = counts[0] - counts[1..].iter().sum::<u64>();
        black_box((counts, sends_by_day));
    }
    println!(
        "baseline plain loop (early-stage-mail's filter) {:>9.1?}  (reachable {reachable})",
        median(times)
    );

    if env_number("BENCH_SLED", 1) == 0 {
        return;
    }
    // Without a daemon, a preview first catches the book up from the log.
    let directory = tempfile::Builder::new()
        .prefix("battleplan-bench-audience-")
        .tempdir()
        .expect("a temporary directory");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let store = SledEventLog::open(directory.path(), StoreOptions::default()).expect("store");
        let ids = SeededIds::new(3);
        let started = Instant::now();
        for (chunk_index, chunk) in events.chunks(1000).enumerate() {
            let encoded = chunk
                .iter()
                .map(|event| {
                    use battleplan_core::context::IdSource;
                    event
                        .encode(EventId(ids.next_id(recorded_at)))
                        .expect("encode")
                })
                .collect();
            store
                .append(Append {
                    stream: StreamId::new(format!("import-bench{:06}", chunk_index / 1000))
                        .expect("stream"),
                    expected: ExpectedVersion::Any,
                    events: encoded,
                    metadata: Metadata {
                        actor: "bench".into(),
                        command_id: CommandId(Uuid::from_u128(chunk_index as u128 + 1)),
                        causation_id: None,
                        correlation_id: None,
                        reason: None,
                    },
                    recorded_at,
                })
                .await
                .expect("append");
        }
        println!(
            "wrote {} events to sled in {:.2?}",
            events.len(),
            started.elapsed()
        );
        let mut times = Vec::new();
        for _ in 0..rounds.min(3) {
            let started = Instant::now();
            let mut book = CustomerBook::default();
            catch_up(&store, &mut book).await.expect("catch up");
            times.push(started.elapsed());
            black_box(book.len());
        }
        let replay = median(times);
        println!(
            "book caught up from the sled log in {replay:.2?} ({:.0} events/s)",
            events.len() as f64 / replay.as_secs_f64()
        );
    });
}
