//! The PostgreSQL event store's speed, each figure beside PostgreSQL's own baseline measured in
//! the same run on the same server:
//!
//! 1. durable appends of one event with 1, 8 and 64 concurrent appenders (events/s, p50 and p99
//!    latency), against the same rows (tenant, position, stream, version, record bytes of the
//!    same size) inserted by as many bare clients, one `INSERT` per transaction into a table
//!    with the same keys: no head, no chain, no checks;
//! 2. appends of 200 events (as the dispatcher makes them), against the same rows with one
//!    `COPY` per 200;
//! 3. replay: 1,000,000 events read back in position order and decoded, against the same rows
//!    read raw (`SELECT position, record`, nothing decoded).
//!
//! Run: `eval "$(bash .ci/postgres)"; cargo bench -p battleplan-adapters --bench postgres`
//! (the server is `BATTLEPLAN_TEST_POSTGRES` with `BATTLEPLAN_TEST_POSTGRES_PASSWORD`); add
//! `-- append` or `-- replay` for one part. Results in BENCHMARKS.md.

// A benchmark reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use battleplan_adapters::{PgEventLog, PgLocation, PgOptions};
use battleplan_core::context::{IdSource, SeededIds};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::upcast::{self, EventPayload};
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, Position, StreamId,
};
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;

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

fn ids() -> &'static SeededIds {
    static IDS: std::sync::OnceLock<SeededIds> = std::sync::OnceLock::new();
    IDS.get_or_init(|| SeededIds::new(0x5eed))
}

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_788_000_000, 0).unwrap()
}

fn append_of(stream: &str, first: u64, count: u64) -> Append {
    let events = (first..first + count)
        .map(|n| {
            upcast::encode(
                EventId(ids().next_id(at())),
                &SendPlanned {
                    campaign: "sept-festival-2026".into(),
                    reach_out: "warm-up-recall".into(),
                    customer: format!("c-{n:07}"),
                    channel: "mail".into(),
                    quota_day: "2026-08-27".into(),
                    attempt: 1,
                },
            )
            .unwrap()
        })
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

struct Server {
    url: String,
    password: String,
}

fn server() -> Server {
    let url = std::env::var("BATTLEPLAN_TEST_POSTGRES")
        .expect("BATTLEPLAN_TEST_POSTGRES: run eval \"$(bash .ci/postgres)\" first");
    let password = std::env::var("BATTLEPLAN_TEST_POSTGRES_PASSWORD").unwrap_or_default();
    Server { url, password }
}

/// A fresh database for one measurement: `postgres://.../NAME`.
async fn fresh(server: &Server, name: &str) -> String {
    let client = connect(&server.url, &server.password).await;
    let name = format!("bench_{name}_{}", std::process::id());
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = server.url.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

async fn connect(url: &str, password: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.password(password);
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn store(url: &str, password: &str, pool: usize) -> PgEventLog {
    let location = PgLocation::parse(url).unwrap().with_password(password);
    PgEventLog::open(
        location,
        PgOptions {
            pool_size: pool,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

/// The record bytes an append of one event makes, to insert the same rows bare.
fn record_bytes() -> Vec<u8> {
    let append = append_of("campaign-0", 1, 1);
    let head = battleplan_core::event::append::LogHead {
        position: Position::START,
        hash: battleplan_core::event::GENESIS_HASH,
    };
    let prepared = battleplan_core::event::append::prepare(
        append,
        head,
        battleplan_core::event::StreamVersion::NONE,
        1 << 20,
    )
    .unwrap();
    prepared.records[0].1.clone()
}

const BARE_TABLE: &str = "CREATE TABLE bare (
    tenant text NOT NULL, position bigint NOT NULL, stream text NOT NULL,
    version bigint NOT NULL, record bytea NOT NULL,
    PRIMARY KEY (tenant, position), UNIQUE (tenant, stream, version))";

/// Bare clients, one `INSERT` of one row per transaction each: PostgreSQL's own rate for
/// durable single-row commits with the same keys.
async fn bare_inserts(server: &Server, concurrency: u64, per: u64) -> (f64, Duration, Duration) {
    let url = fresh(server, &format!("bare{concurrency}")).await;
    connect(&url, &server.password)
        .await
        .batch_execute(BARE_TABLE)
        .await
        .unwrap();
    let record = Arc::new(record_bytes());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client_number in 0..concurrency {
        let (url, password, record) = (url.clone(), server.password.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            let client = connect(&url, &password).await;
            let statement = client
                .prepare(
                    "INSERT INTO bare (tenant, position, stream, version, record)
                     VALUES ('default', $1, $2, $3, $4)",
                )
                .await
                .unwrap();
            let stream = format!("campaign-{client_number}");
            let mut latencies = Vec::new();
            for n in 0..per {
                let began = Instant::now();
                let position = (client_number * 1_000_000 + n + 1) as i64;
                client
                    .execute(
                        &statement,
                        &[&position, &stream, &((n + 1) as i64), &*record],
                    )
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
    (
        (concurrency * per) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

async fn store_appends(server: &Server, concurrency: u64, per: u64) -> (f64, Duration, Duration) {
    let url = fresh(server, &format!("store{concurrency}")).await;
    let store = Arc::new(store(&url, &server.password, 8).await);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for appender in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for n in 0..per {
                let began = Instant::now();
                store
                    .append(append_of(
                        &format!("campaign-{}", appender % 16),
                        appender * 1_000_000 + n + 1,
                        1,
                    ))
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
    (
        (concurrency * per) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

const BIG: u64 = 200;

/// Appends of 200 events from one appender, and the same rows by `COPY`, 200 per transaction.
async fn big_appends(server: &Server, appends: u64) -> (f64, f64) {
    let url = fresh(server, "big").await;
    let store = store(&url, &server.password, 4).await;
    let start = Instant::now();
    for n in 0..appends {
        store
            .append(append_of("outreach-sept", n * BIG + 1, BIG))
            .await
            .unwrap();
    }
    let ours = (appends * BIG) as f64 / start.elapsed().as_secs_f64();

    let url = fresh(server, "bigbare").await;
    let client = connect(&url, &server.password).await;
    client.batch_execute(BARE_TABLE).await.unwrap();
    let record = record_bytes();
    let start = Instant::now();
    for n in 0..appends {
        let positions: Vec<i64> = (0..BIG).map(|i| (n * BIG + i + 1) as i64).collect();
        let streams: Vec<&str> = (0..BIG).map(|_| "outreach-sept").collect();
        let records: Vec<&[u8]> = (0..BIG).map(|_| record.as_slice()).collect();
        client
            .execute(
                "INSERT INTO bare (tenant, position, stream, version, record)
                 SELECT 'default', p, s, p, r FROM unnest($1::bigint[], $2::text[], $3::bytea[])
                 AS t(p, s, r)",
                &[&positions, &streams, &records],
            )
            .await
            .unwrap();
    }
    let bare = (appends * BIG) as f64 / start.elapsed().as_secs_f64();
    (ours, bare)
}

const REPLAY: u64 = 1_000_000;

async fn replay(server: &Server) -> (f64, f64) {
    let url = fresh(server, "replay").await;
    let store = store(&url, &server.password, 4).await;
    let per = 1_000;
    let fill = Instant::now();
    for batch in 0..REPLAY / per {
        store
            .append(append_of(
                &format!("campaign-{}", batch % 64),
                batch * per + 1,
                per,
            ))
            .await
            .unwrap();
    }
    eprintln!(
        "  (filled {REPLAY} events in {:.1} s)",
        fill.elapsed().as_secs_f64()
    );

    let client = connect(&url, &server.password).await;
    // Settled before reading: autovacuum starting in the middle would weigh on one side.
    client
        .batch_execute("VACUUM ANALYZE bp_events")
        .await
        .unwrap();
    let bare_before = bare_replay(&client).await;
    let start = Instant::now();
    let mut after = Position::START;
    let mut count = 0u64;
    loop {
        let batch = store.read_all(after, 10_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        count += batch.len() as u64;
    }
    assert_eq!(count, REPLAY);
    let ours = REPLAY as f64 / start.elapsed().as_secs_f64();
    let bare_after = bare_replay(&client).await;
    eprintln!("  (bare SELECT before {bare_before:.0} rows/s, after {bare_after:.0} rows/s)");
    let bare = (bare_before + bare_after) / 2.0;
    (ours, bare)
}

/// The same rows read raw, as fast as PostgreSQL gives them: rows/s.
async fn bare_replay(client: &tokio_postgres::Client) -> f64 {
    let statement = client
        .prepare(
            "SELECT position, record FROM bp_events WHERE tenant = 'default' AND position > $1
             ORDER BY position LIMIT 10000",
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut after = 0i64;
    let mut rows_read = 0u64;
    let mut bytes = 0usize;
    loop {
        let rows = client.query(&statement, &[&after]).await.unwrap();
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        rows_read += rows.len() as u64;
        bytes += rows
            .iter()
            .map(|row| row.get::<_, &[u8]>(1).len())
            .sum::<usize>();
    }
    assert_eq!(rows_read, REPLAY);
    assert!(bytes > 0);
    REPLAY as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let part = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = server();
    runtime.block_on(async {
        if part.as_deref().is_none_or(|part| part == "append") {
            println!("durable appends of one event (events/s, p50, p99):");
            for (concurrency, per) in [(1u64, 2_000u64), (8, 1_000), (64, 200)] {
                let (bare, bare_p50, bare_p99) = bare_inserts(&server, concurrency, per).await;
                let (ours, p50, p99) = store_appends(&server, concurrency, per).await;
                println!(
                    "  {concurrency:>2} appenders: store {ours:>8.0}/s p50 {p50:>8.2?} p99 {p99:>8.2?} | bare INSERT {bare:>8.0}/s p50 {bare_p50:>8.2?} p99 {bare_p99:>8.2?} | {:.2}x",
                    ours / bare
                );
            }
            let (ours, bare) = big_appends(&server, 500).await;
            println!(
                "appends of {BIG} events, one appender: store {ours:.0} events/s | bare batched INSERT {bare:.0} rows/s | {:.2}x",
                ours / bare
            );
        }
        if part.as_deref().is_none_or(|part| part == "replay") {
            let (ours, bare) = replay(&server).await;
            println!(
                "replay of {REPLAY} events: store (decoded) {ours:.0} events/s | bare SELECT {bare:.0} rows/s | {:.2}x",
                ours / bare
            );
        }
    });
}
