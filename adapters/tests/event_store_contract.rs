//! The contract every event store keeps, run against each implementation: ordering, gapless
//! positions, contiguous versions, optimistic concurrency, idempotent command ids, catch-up
//! subscriptions across the switch to live, checkpoints with projection state, and appends from
//! many tasks at once.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use battleplan_adapters::{
    MemoryEventLog, PgEventLog, PgLocation, PgOptions, SledEventLog, StoreOptions,
};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::subscription::CatchUp;
use battleplan_core::event::{
    Append, Checkpoints, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position,
    StoreError, StreamId, StreamVersion, GENESIS_HASH,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[path = "../../tests/src/postgres.rs"]
mod postgres;

/// The store of a fresh database's tenant `tenant`; another tenant of the same database has
/// events of its own first, which must change nothing of this one's positions, versions or
/// chain. `None` when PostgreSQL is not there (skipped loudly off CI).
async fn on_postgres(test: &str, tenant: &str) -> Option<PgEventLog> {
    let database = postgres::database_async(test).await?;
    let location = PgLocation::parse(&database.url)
        .unwrap()
        .with_password(&database.password);
    let other = PgEventLog::open(
        location.clone().with_tenant("neighbour").unwrap(),
        PgOptions::default(),
    )
    .await
    .unwrap();
    for n in 0..3u128 {
        other
            .append(append(
                "campaign-a",
                ExpectedVersion::Any,
                900 + n,
                vec![event(900 + n, "Neighbour")],
            ))
            .await
            .unwrap();
    }
    Some(
        PgEventLog::open(location.with_tenant(tenant).unwrap(), PgOptions::default())
            .await
            .unwrap(),
    )
}

trait Store: EventAppender + EventReader + Checkpoints + 'static {}
impl<T: EventAppender + EventReader + Checkpoints + 'static> Store for T {}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_788_000_000 + seconds, 0).unwrap()
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn event(n: u128, kind: &str) -> NewEvent {
    NewEvent {
        event_id: EventId(Uuid::from_u128(n)),
        event_type: kind.to_string(),
        schema_version: 1,
        payload: n.to_be_bytes().to_vec(),
    }
}

fn append(on: &str, expected: ExpectedVersion, command: u128, events: Vec<NewEvent>) -> Append {
    Append {
        stream: stream(on),
        expected,
        events,
        metadata: Metadata {
            actor: "alice".into(),
            command_id: CommandId(Uuid::from_u128(command)),
            causation_id: Some(Uuid::from_u128(command + 1_000_000)),
            correlation_id: None,
            reason: Some("testing".into()),
        },
        recorded_at: at(command as i64),
    }
}

async fn ordering_positions_and_versions(store: Arc<dyn StoreDyn>) {
    let store = store.as_ref();
    let first = store
        .append(append(
            "campaign-a",
            ExpectedVersion::NoStream,
            1,
            vec![event(1, "A"), event(2, "B")],
        ))
        .await
        .unwrap();
    assert_eq!(
        (first.first_position, first.last_position),
        (Position(1), Position(2))
    );
    assert_eq!(
        (first.first_version, first.last_version),
        (StreamVersion(1), StreamVersion(2))
    );
    assert!(!first.deduplicated);
    let second = store
        .append(append(
            "campaign-b",
            ExpectedVersion::Any,
            2,
            vec![event(3, "C")],
        ))
        .await
        .unwrap();
    assert_eq!(second.first_position, Position(3));
    assert_eq!(second.first_version, StreamVersion(1));
    store
        .append(append(
            "campaign-a",
            ExpectedVersion::Exact(StreamVersion(2)),
            3,
            vec![event(4, "D")],
        ))
        .await
        .unwrap();

    let all = store.read_all(Position::START, 100).await.unwrap();
    let positions: Vec<u64> = all.iter().map(|e| e.position.0).collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    let kinds: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["A", "B", "C", "D"]);
    // The chain links each event to the one before.
    assert_eq!(all[0].previous_hash, GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].previous_hash, pair[0].hash);
    }
    // The envelope comes back as it went in.
    let d = &all[3];
    assert_eq!(d.stream, stream("campaign-a"));
    assert_eq!(d.version, StreamVersion(3));
    assert_eq!(d.event_id, EventId(Uuid::from_u128(4)));
    assert_eq!(d.recorded_at, at(3));
    assert_eq!(d.payload, 4u128.to_be_bytes().to_vec());
    assert_eq!(d.metadata.actor, "alice");
    assert_eq!(d.metadata.command_id, CommandId(Uuid::from_u128(3)));
    assert_eq!(d.metadata.reason.as_deref(), Some("testing"));

    let a = store
        .read_stream(&stream("campaign-a"), StreamVersion(1), 100)
        .await
        .unwrap();
    let versions: Vec<u64> = a.iter().map(|e| e.version.0).collect();
    assert_eq!(versions, [1, 2, 3]);
    let tail = store
        .read_stream(&stream("campaign-a"), StreamVersion(2), 1)
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].event_type, "B");
    assert_eq!(
        store.stream_version(&stream("campaign-a")).await.unwrap(),
        StreamVersion(3)
    );
    assert_eq!(
        store.stream_version(&stream("nothing")).await.unwrap(),
        StreamVersion::NONE
    );
    assert_eq!(store.head().await.unwrap(), Position(4));
    let after_two = store.read_all(Position(2), 1).await.unwrap();
    assert_eq!(after_two.len(), 1);
    assert_eq!(after_two[0].position, Position(3));
}

async fn streams_with_a_common_prefix_stay_apart(store: Arc<dyn StoreDyn>) {
    let store = store.as_ref();
    store
        .append(append("a", ExpectedVersion::Any, 1, vec![event(1, "A")]))
        .await
        .unwrap();
    store
        .append(append("ab", ExpectedVersion::Any, 2, vec![event(2, "AB")]))
        .await
        .unwrap();
    store
        .append(append("a", ExpectedVersion::Any, 3, vec![event(3, "A")]))
        .await
        .unwrap();
    let a = store
        .read_stream(&stream("a"), StreamVersion(1), 10)
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["A", "A"]
    );
    let ab = store
        .read_stream(&stream("ab"), StreamVersion(1), 10)
        .await
        .unwrap();
    assert_eq!(ab.len(), 1);
}

async fn conflicts_carry_the_actual_version(store: Arc<dyn StoreDyn>) {
    let store = store.as_ref();
    store
        .append(append(
            "s",
            ExpectedVersion::NoStream,
            1,
            vec![event(1, "A")],
        ))
        .await
        .unwrap();
    let error = store
        .append(append(
            "s",
            ExpectedVersion::NoStream,
            2,
            vec![event(2, "B")],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        StoreError::Conflict {
            stream: stream("s"),
            expected: ExpectedVersion::NoStream,
            actual: StreamVersion(1)
        }
    );
    let error = store
        .append(append(
            "s",
            ExpectedVersion::Exact(StreamVersion(5)),
            3,
            vec![event(3, "C")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Conflict {
                actual: StreamVersion(1),
                ..
            }
        ),
        "{error:?}"
    );
    let error = store
        .append(append(
            "new",
            ExpectedVersion::Exact(StreamVersion(1)),
            4,
            vec![event(4, "D")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Conflict {
                actual: StreamVersion(0),
                ..
            }
        ),
        "{error:?}"
    );
    // Nothing of a rejected append was written.
    assert_eq!(store.head().await.unwrap(), Position(1));
    let error = store
        .append(append("s", ExpectedVersion::Any, 5, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)));
}

async fn a_retried_command_returns_its_first_result(store: Arc<dyn StoreDyn>) {
    let store = store.as_ref();
    let first = store
        .append(append(
            "s",
            ExpectedVersion::NoStream,
            7,
            vec![event(1, "A"), event(2, "B")],
        ))
        .await
        .unwrap();
    // The retry would now conflict and carries other events: the first result wins, nothing is
    // written.
    let retry = store
        .append(append(
            "s",
            ExpectedVersion::NoStream,
            7,
            vec![event(9, "Z")],
        ))
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(
        (
            retry.first_position,
            retry.last_position,
            retry.first_version,
            retry.last_version
        ),
        (
            first.first_position,
            first.last_position,
            first.first_version,
            first.last_version
        )
    );
    assert_eq!(store.head().await.unwrap(), Position(2));
    assert_eq!(store.read_all(Position::START, 10).await.unwrap().len(), 2);
}

async fn subscriptions_replay_then_follow_live(store: Arc<dyn StoreDyn>) {
    for n in 1..=5u128 {
        store
            .append(append(
                "s",
                ExpectedVersion::Any,
                n,
                vec![event(n, "Early")],
            ))
            .await
            .unwrap();
    }
    let total = 205u64;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 6..=total as u128 {
                let on = if n % 3 == 0 { "t" } else { "s" };
                store
                    .append(append(on, ExpectedVersion::Any, n, vec![event(n, "Live")]))
                    .await
                    .unwrap();
            }
        })
    };
    // Starts from a checkpoint in the middle of the replayed part.
    let mut subscription = CatchUp::new(store.as_ref(), Position(2), 7);
    let mut seen = Vec::new();
    while seen.len() < (total - 2) as usize {
        let next = subscription.next().await.unwrap();
        seen.push(next.position.0);
    }
    writer.await.unwrap();
    let expected: Vec<u64> = (3..=total).collect();
    assert_eq!(
        seen, expected,
        "every event once, in order, across the switch to live"
    );
    assert_eq!(subscription.position(), Position(total));
    assert!(subscription.try_next().await.unwrap().is_none());
}

async fn checkpoints_move_with_their_state(store: Arc<dyn StoreDyn>) {
    let store = store.as_ref();
    assert_eq!(store.checkpoint("funnel").await.unwrap(), Position::START);
    store
        .commit(
            "funnel",
            Position(3),
            vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), Some(b"2".to_vec())),
            ],
        )
        .await
        .unwrap();
    store
        .commit(
            "funnel",
            Position(5),
            vec![(b"a".to_vec(), None), (b"c".to_vec(), Some(b"3".to_vec()))],
        )
        .await
        .unwrap();
    store
        .commit(
            "other",
            Position(1),
            vec![(b"a".to_vec(), Some(b"x".to_vec()))],
        )
        .await
        .unwrap();
    assert_eq!(store.checkpoint("funnel").await.unwrap(), Position(5));
    assert_eq!(store.get("funnel", b"a").await.unwrap(), None);
    assert_eq!(
        store.get("funnel", b"c").await.unwrap(),
        Some(b"3".to_vec())
    );
    assert_eq!(
        store.scan("funnel").await.unwrap(),
        vec![
            (b"b".to_vec(), b"2".to_vec()),
            (b"c".to_vec(), b"3".to_vec())
        ]
    );
    let error = store
        .commit(
            "funnel",
            Position(4),
            vec![(b"z".to_vec(), Some(b"9".to_vec()))],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)));
    assert_eq!(
        store.get("funnel", b"z").await.unwrap(),
        None,
        "a refused commit changes nothing"
    );
    store.reset("funnel").await.unwrap();
    assert_eq!(store.checkpoint("funnel").await.unwrap(), Position::START);
    assert!(store.scan("funnel").await.unwrap().is_empty());
    assert_eq!(
        store.scan("other").await.unwrap().len(),
        1,
        "other projections are untouched"
    );
}

/// 32 tasks append to one stream, each expecting the version it last read and retrying on
/// conflict: every append lands exactly once, versions and positions have no gap.
async fn many_writers_on_one_stream(store: Arc<dyn StoreDyn>) {
    let tasks = 32u128;
    let per_task = 8u128;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for n in 0..per_task {
                let id = task * 1000 + n + 1;
                loop {
                    let version = store.stream_version(&stream("busy")).await.unwrap();
                    let attempt = append(
                        "busy",
                        ExpectedVersion::Exact(version),
                        id,
                        vec![event(id, "Counted")],
                    );
                    match store.append(attempt).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("append failed: {other}"),
                    }
                }
            }
            conflicts
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let total = (tasks * per_task) as u64;
    let events = store
        .read_stream(&stream("busy"), StreamVersion(1), 10_000)
        .await
        .unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.version.0).collect();
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    let positions: Vec<u64> = events.iter().map(|e| e.position.0).collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    let mut ids: Vec<u128> = events.iter().map(|e| e.event_id.0.as_u128()).collect();
    ids.sort_unstable();
    let mut expected: Vec<u128> = (0..tasks)
        .flat_map(|t| (0..per_task).map(move |n| t * 1000 + n + 1))
        .collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "no lost update, no duplicate");
}

/// Object-safe view of a store, so one suite serves every implementation.
trait StoreDyn: EventAppender + EventReader + Checkpoints {}
impl<T: Store> StoreDyn for T {}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn in_memory() {
                    super::$name(Arc::new(MemoryEventLog::new())).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sled() {
                    let directory = tempfile::tempdir().unwrap();
                    let store = SledEventLog::open(directory.path(), StoreOptions::default()).unwrap();
                    super::$name(Arc::new(store)).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    let Some(store) = super::on_postgres(stringify!($name), "merchant").await else {
                        return;
                    };
                    super::$name(Arc::new(store)).await;
                }

                /// A checkpoint every 3 events: readers meet frozen tails and checkpoints
                /// under way at every step.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sled_checkpointing_all_the_time() {
                    let directory = tempfile::tempdir().unwrap();
                    let options = StoreOptions {
                        checkpoint_events: 3,
                        ..StoreOptions::default()
                    };
                    let store = SledEventLog::open(directory.path(), options).unwrap();
                    super::$name(Arc::new(store)).await;
                }
            }
        )*
    };
}

contract!(
    ordering_positions_and_versions,
    streams_with_a_common_prefix_stay_apart,
    conflicts_carry_the_actual_version,
    a_retried_command_returns_its_first_result,
    subscriptions_replay_then_follow_live,
    checkpoints_move_with_their_state,
    many_writers_on_one_stream,
);
