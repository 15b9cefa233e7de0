//! Random sequences of appends (with right and wrong expected versions, and retried command
//! ids), reads and restarts, run against the sled store and the PostgreSQL store (a tenant of
//! its own per case, in one database) and checked step by step against a plain model of what
//! the log must hold.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;

use battleplan_adapters::{PgEventLog, PgLocation, PgOptions, SledEventLog, StoreOptions};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, AppendOutcome, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position,
    StoreError, StreamId, StreamVersion,
};
use chrono::DateTime;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Operation {
    Append {
        stream: u8,
        /// None: any; Some(d): the model's version plus d - 1 (so wrong one time in three), or
        /// "no stream" when that is negative.
        expected: Option<u8>,
        events: u8,
        /// Retry the command of an earlier append instead of a new one.
        retry: Option<prop::sample::Index>,
    },
    ReadStream {
        stream: u8,
        from: u8,
    },
    ReadAll {
        after: u8,
    },
    Restart,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        5 => (0u8..3, prop::option::of(0u8..3), 1u8..4, prop::option::weighted(0.2, any::<prop::sample::Index>()))
            .prop_map(|(stream, expected, events, retry)| Operation::Append { stream, expected, events, retry }),
        1 => (0u8..3, 0u8..6).prop_map(|(stream, from)| Operation::ReadStream { stream, from }),
        1 => (0u8..20).prop_map(|after| Operation::ReadAll { after }),
        1 => Just(Operation::Restart),
    ]
}

/// What the log must hold: per position, (stream, event id); per stream, its positions.
#[derive(Default)]
struct Model {
    log: Vec<(u8, u128)>,
    streams: HashMap<u8, Vec<u64>>,
    commands: Vec<(u128, AppendOutcome)>,
}

fn name(stream: u8) -> StreamId {
    StreamId::new(format!("stream-{stream}")).unwrap()
}

#[path = "../../tests/src/postgres.rs"]
mod postgres;

/// Where a case runs.
enum Backend {
    Sled,
    /// A database, and a new tenant in it for each case.
    Postgres(Box<PgLocation>),
}

/// A store opened for a case, reopened on `Restart`.
#[allow(clippy::large_enum_variant, reason = "one per case")]
enum Opened {
    Sled(SledEventLog),
    Postgres(PgEventLog),
}

impl Opened {
    fn log(&self) -> &(dyn Log + 'static) {
        match self {
            Opened::Sled(store) => store,
            Opened::Postgres(store) => store,
        }
    }

    async fn chain_problem(&self) -> Option<battleplan_core::event::verify::Problem> {
        match self {
            Opened::Sled(store) => store.verify().unwrap().problem,
            Opened::Postgres(store) => store.verify().await.unwrap().problem,
        }
    }
}

trait Log: EventAppender + EventReader {}
impl<T: EventAppender + EventReader> Log for T {}

static CASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn run(operations: Vec<Operation>, backend: &Backend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let directory = tempfile::tempdir().unwrap();
        // A checkpoint every few events: the model meets frozen tails, checkpoints under way
        // and merges of the command index's runs.
        let options = StoreOptions {
            checkpoint_events: 4,
            ..StoreOptions::default()
        };
        let tenant = format!(
            "case-{}",
            CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let open = || async {
            match backend {
                Backend::Sled => {
                    Opened::Sled(SledEventLog::open(directory.path(), options.clone()).unwrap())
                }
                Backend::Postgres(location) => Opened::Postgres(
                    PgEventLog::open(
                        location.clone().with_tenant(&tenant).unwrap(),
                        PgOptions::default(),
                    )
                    .await
                    .unwrap(),
                ),
            }
        };
        let mut opened = open().await;
        let mut model = Model::default();
        let mut next_id: u128 = 1;
        for operation in operations {
            match operation {
                Operation::Append {
                    stream,
                    expected,
                    events,
                    retry,
                } => {
                    let version = model.streams.get(&stream).map_or(0, |p| p.len() as u64);
                    let expected = match expected {
                        None => ExpectedVersion::Any,
                        Some(delta) => match (version + u64::from(delta)).checked_sub(1) {
                            Some(0) | None => ExpectedVersion::NoStream,
                            Some(v) => ExpectedVersion::Exact(StreamVersion(v)),
                        },
                    };
                    let retried = retry
                        .filter(|_| !model.commands.is_empty())
                        .map(|i| *i.get(&model.commands));
                    let command = retried.map_or(next_id, |(command, _)| command);
                    let new_events: Vec<NewEvent> = (0..events)
                        .map(|_| {
                            next_id += 1;
                            NewEvent {
                                event_id: EventId(Uuid::from_u128(next_id)),
                                event_type: "Modelled".into(),
                                schema_version: 1,
                                payload: vec![stream],
                            }
                        })
                        .collect();
                    let ids: Vec<u128> =
                        new_events.iter().map(|e| e.event_id.0.as_u128()).collect();
                    next_id += 1;
                    let result = opened
                        .log()
                        .append(Append {
                            stream: name(stream),
                            expected,
                            events: new_events,
                            metadata: Metadata {
                                actor: "system:model".into(),
                                command_id: CommandId(Uuid::from_u128(command)),
                                causation_id: None,
                                correlation_id: None,
                                reason: None,
                            },
                            recorded_at: DateTime::from_timestamp(1_788_000_000, 0).unwrap(),
                        })
                        .await;
                    if let Some((_, first)) = retried {
                        let outcome = result.unwrap();
                        assert!(outcome.deduplicated);
                        assert_eq!(outcome.first_position, first.first_position);
                        assert_eq!(outcome.last_version, first.last_version);
                        continue;
                    }
                    let matches = match expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => version == 0,
                        ExpectedVersion::Exact(v) => v.0 == version,
                    };
                    if !matches {
                        match result {
                            Err(StoreError::Conflict { actual, .. }) => {
                                assert_eq!(actual, StreamVersion(version))
                            }
                            other => panic!("expected a conflict, got {other:?}"),
                        }
                        continue;
                    }
                    let outcome = result.unwrap();
                    let first = model.log.len() as u64 + 1;
                    for id in &ids {
                        model.log.push((stream, *id));
                        let position = model.log.len() as u64;
                        model.streams.entry(stream).or_default().push(position);
                    }
                    assert_eq!(outcome.first_position, Position(first));
                    assert_eq!(outcome.last_position, Position(model.log.len() as u64));
                    assert_eq!(outcome.first_version, StreamVersion(version + 1));
                    model.commands.push((command, outcome));
                }
                Operation::ReadStream { stream, from } => {
                    let read = opened
                        .log()
                        .read_stream(&name(stream), StreamVersion(u64::from(from)), 100)
                        .await
                        .unwrap();
                    let expected: Vec<u64> = model
                        .streams
                        .get(&stream)
                        .map(|p| {
                            p.iter()
                                .skip(usize::from(from.max(1)) - 1)
                                .copied()
                                .collect()
                        })
                        .unwrap_or_default();
                    assert_eq!(
                        read.iter().map(|e| e.position.0).collect::<Vec<_>>(),
                        expected
                    );
                }
                Operation::ReadAll { after } => {
                    let read = opened
                        .log()
                        .read_all(Position(u64::from(after)), 5)
                        .await
                        .unwrap();
                    let expected: Vec<u128> = model
                        .log
                        .iter()
                        .skip(usize::from(after))
                        .take(5)
                        .map(|(_, id)| *id)
                        .collect();
                    assert_eq!(
                        read.iter()
                            .map(|e| e.event_id.0.as_u128())
                            .collect::<Vec<_>>(),
                        expected
                    );
                }
                Operation::Restart => {
                    drop(opened);
                    opened = open().await;
                }
            }
            assert_eq!(
                opened.log().head().await.unwrap(),
                Position(model.log.len() as u64)
            );
        }
        assert_eq!(opened.chain_problem().await, None);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_its_model(operations in prop::collection::vec(operation(), 1..40)) {
        run(operations, &Backend::Sled);
    }
}

/// The PostgreSQL database the cases share (each its own tenant), made once.
fn postgres_backend() -> Option<Backend> {
    static DATABASE: std::sync::OnceLock<Option<postgres::TestDatabase>> =
        std::sync::OnceLock::new();
    let database = DATABASE
        .get_or_init(|| postgres::database("the_postgres_store_behaves_like_its_model"))
        .as_ref()?;
    Some(Backend::Postgres(Box::new(
        PgLocation::parse(&database.url)
            .unwrap()
            .with_password(&database.password),
    )))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_postgres_store_behaves_like_its_model(operations in prop::collection::vec(operation(), 1..40)) {
        let Some(backend) = postgres_backend() else {
            return Ok(());
        };
        run(operations, &backend);
    }
}
