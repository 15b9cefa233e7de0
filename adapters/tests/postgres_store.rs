//! What only the PostgreSQL store has to show: positions in commit order when a transaction
//! commits late (and the same test's shape catching a log that takes positions from a
//! sequence), the fencing token checked inside the append, the schema migrated or refused, and
//! a restore that is all or nothing. The contract suite and the model test run on it too
//! (`event_store_contract.rs`, `sled_model.rs`).

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use battleplan_adapters::postgres_store::{schema, Fence};
use battleplan_adapters::sled_store::RestoreError;
use battleplan_adapters::{PgEventLog, PgLocation, PgOptions};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::subscription::CatchUp;
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position, StoreError, StreamId,
};
use chrono::DateTime;
use uuid::Uuid;

#[path = "../../tests/src/postgres.rs"]
mod postgres;

fn append(stream: &str, command: u128, events: u128) -> Append {
    Append {
        stream: StreamId::new(stream).unwrap(),
        expected: ExpectedVersion::Any,
        events: (0..events)
            .map(|n| NewEvent {
                event_id: EventId(Uuid::from_u128(command * 100 + n)),
                event_type: "Tested".into(),
                schema_version: 1,
                payload: vec![n as u8],
            })
            .collect(),
        metadata: Metadata {
            actor: "system:test".into(),
            command_id: CommandId(Uuid::from_u128(command)),
            causation_id: None,
            correlation_id: None,
            reason: None,
        },
        recorded_at: DateTime::from_timestamp(1_788_000_000 + command as i64, 0).unwrap(),
    }
}

async fn location(test: &str) -> Option<(PgLocation, postgres::TestDatabase)> {
    let database = postgres::database_async(test).await?;
    let location = PgLocation::parse(&database.url)
        .unwrap()
        .with_password(&database.password);
    Some((location, database))
}

async fn open(location: &PgLocation) -> PgEventLog {
    PgEventLog::open(location.clone(), PgOptions::default())
        .await
        .unwrap()
}

/// Polls `condition` every 10 ms for at most 10 s.
async fn until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..1_000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("waited 10 s for {what}");
}

/// How many sessions of this database wait for a lock.
async fn waiting_for_locks(database: &postgres::TestDatabase) -> i64 {
    let client = postgres::connect(&database.url, &database.password).await;
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// One append's transaction is held open, its positions taken, while later appends from
/// another node try to commit and a subscriber on a third reads all the while: the later ones
/// wait for it (they take their positions from the head it holds), the subscriber never sees a
/// position before the ones below it are committed, and in the end it has every event, in
/// position order, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped_by_a_subscriber() {
    let Some((location, database)) = location("a_late_commit_is_never_skipped").await else {
        return;
    };
    let early = open(&location).await;
    let later = open(&location).await;
    let reader = open(&location).await;
    early.append(append("campaign-a", 1, 2)).await.unwrap();

    let subscriber = tokio::spawn(async move {
        let mut catch_up = CatchUp::new(&reader, Position::START, 3);
        let mut seen = Vec::new();
        while seen.len() < 2 + 3 + 5 * 2 {
            seen.push(catch_up.next().await.unwrap());
        }
        seen
    });

    let (reached, release) = early.hold_next_commit();
    let held = tokio::spawn({
        let early = early.clone();
        async move { early.append(append("campaign-b", 2, 3)).await }
    });
    reached.await.unwrap();
    let mut others = Vec::new();
    for command in 10..15 {
        let later = later.clone();
        others.push(tokio::spawn(async move {
            later.append(append("campaign-c", command, 2)).await
        }));
    }
    // The later appends have really tried: their transactions wait on the held one's lock.
    until("the later appends to wait for the held one", async || {
        waiting_for_locks(&database).await >= 1
    })
    .await;
    assert_eq!(
        early.head().await.unwrap(),
        Position(2),
        "nothing past the held append"
    );
    release.send(()).unwrap();

    let held = held.await.unwrap().unwrap();
    assert_eq!(
        (held.first_position, held.last_position),
        (Position(3), Position(5))
    );
    for other in others {
        let outcome = other.await.unwrap().unwrap();
        assert!(
            outcome.first_position > Position(5),
            "later appends come after the held one"
        );
    }
    let seen = subscriber.await.unwrap();
    let positions: Vec<u64> = seen.iter().map(|event| event.position.0).collect();
    assert_eq!(positions, (1..=15).collect::<Vec<_>>());
    let mut ids: Vec<Uuid> = seen.iter().map(|event| event.event_id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 15, "each event once");
    assert_eq!(early.verify().await.unwrap().problem, None);
}

/// The same shape against a table whose positions come from a sequence (`bigserial`), as a
/// log too often is: the held transaction takes position 1, a later one takes 2 and commits, a
/// reader at 0 sees 2 and moves on, then 1 commits behind it and is never read. This is the
/// failure the test above would show if the store took positions that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_test_catches_positions_from_a_sequence() {
    let Some(database) = postgres::database_async("positions_from_a_sequence").await else {
        return;
    };
    let mut first = postgres::connect(&database.url, &database.password).await;
    let mut second = postgres::connect(&database.url, &database.password).await;
    let reader = postgres::connect(&database.url, &database.password).await;
    first
        .batch_execute("CREATE TABLE naive (position bigserial PRIMARY KEY, body text)")
        .await
        .unwrap();
    let held = first.transaction().await.unwrap();
    held.execute("INSERT INTO naive (body) VALUES ('held')", &[])
        .await
        .unwrap();
    let later = second.transaction().await.unwrap();
    later
        .execute("INSERT INTO naive (body) VALUES ('later')", &[])
        .await
        .unwrap();
    later.commit().await.unwrap();
    let read_after = |after: i64| {
        let reader = &reader;
        async move {
            reader
                .query(
                    "SELECT position FROM naive WHERE position > $1 ORDER BY position",
                    &[&after],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }
    };
    let mut seen = read_after(0).await;
    assert_eq!(seen, vec![2], "the later commit is visible first");
    held.commit().await.unwrap();
    let after = *seen.last().unwrap();
    seen.extend(read_after(after).await);
    assert_eq!(seen, vec![2], "position 1 committed late and was skipped");
}

/// A node whose lease passed to another (it was paused, or cut off, past its lease) has its
/// appends refused inside their transaction; an append checked against the old epoch holds the
/// lease row, so the takeover waits for it rather than racing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_append_is_refused_once_the_lease_has_passed() {
    let Some((location, database)) = location("a_fenced_append_is_refused").await else {
        return;
    };
    let a = open(&location).await;
    let b = open(&location).await;
    // Long enough that the next two statements run well inside it on a loaded machine, short
    // enough to run out below.
    let fence_a = a
        .acquire_lease("campaign:sept", "node-a", 2.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fence_a.epoch, 1);
    assert_eq!(
        b.acquire_lease("campaign:sept", "node-b", 30.0)
            .await
            .unwrap(),
        None,
        "a running lease is not taken"
    );
    // Renewing keeps the epoch.
    assert_eq!(
        a.acquire_lease("campaign:sept", "node-a", 2.0)
            .await
            .unwrap(),
        Some(fence_a.clone())
    );
    a.append_fenced(append("outreach-sept", 1, 1), Some(fence_a.clone()))
        .await
        .unwrap();

    // The old owner's append is checked and held open; its lease runs out meanwhile; the
    // takeover waits on the lease row until the append has committed.
    let (reached, release) = a.hold_next_commit();
    let held = tokio::spawn({
        let a = a.clone();
        let fence = fence_a.clone();
        async move {
            a.append_fenced(append("outreach-sept", 2, 1), Some(fence))
                .await
        }
    });
    reached.await.unwrap();
    let client = postgres::connect(&database.url, &database.password).await;
    until("the lease to run out", async || {
        client
            .query_one(
                "SELECT bool_and(expires_at < clock_timestamp()) FROM bp_leases",
                &[],
            )
            .await
            .unwrap()
            .get::<_, Option<bool>>(0)
            .unwrap_or(false)
    })
    .await;
    let takeover = tokio::spawn({
        let b = b.clone();
        async move { b.acquire_lease("campaign:sept", "node-b", 30.0).await }
    });
    until("the takeover to wait for the held append", async || {
        waiting_for_locks(&database).await >= 1
    })
    .await;
    assert!(!takeover.is_finished());
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    let fence_b = takeover.await.unwrap().unwrap().unwrap();
    assert_eq!(fence_b.epoch, 2);

    let head = a.head().await.unwrap();
    match a
        .append_fenced(append("outreach-sept", 3, 2), Some(fence_a.clone()))
        .await
    {
        Err(StoreError::Fenced {
            scope,
            held,
            current,
        }) => assert_eq!((scope.as_str(), held, current), ("campaign:sept", 1, 2)),
        other => panic!("expected the old owner to be fenced off, got {other:?}"),
    }
    assert_eq!(
        a.head().await.unwrap(),
        head,
        "nothing of a fenced append is written"
    );
    assert_eq!(
        a.acquire_lease("campaign:sept", "node-a", 0.5)
            .await
            .unwrap(),
        None,
        "the old owner cannot renew a lease it lost"
    );
    b.append_fenced(append("outreach-sept", 3, 2), Some(fence_b))
        .await
        .unwrap();
    // A fence on a scope nobody ever leased is refused too.
    assert!(matches!(
        a.append_fenced(
            append("outreach-x", 4, 1),
            Some(Fence {
                scope: "campaign:x".into(),
                epoch: 1
            })
        )
        .await,
        Err(StoreError::Fenced { current: 0, .. })
    ));
    assert_eq!(a.verify().await.unwrap().problem, None);
}

/// A database at an older schema is migrated in one transaction on opening, its events kept; a
/// newer schema is refused, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_migrated_and_a_newer_one_refused() {
    let Some((location, database)) = location("schema_migrated_or_refused").await else {
        return;
    };
    let old = PgEventLog::open_at_schema(location.clone(), PgOptions::default(), 1)
        .await
        .unwrap();
    old.append(append("campaign-a", 1, 3)).await.unwrap();
    drop(old);
    let client = postgres::connect(&database.url, &database.password).await;
    let version = async || -> i32 {
        client
            .query_one("SELECT version FROM battleplan_schema", &[])
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(version().await, 1);
    let store = open(&location).await;
    assert_eq!(version().await, schema::SCHEMA_VERSION);
    assert_eq!(store.head().await.unwrap(), Position(3));
    assert!(store.acquire_lease("s", "n", 1.0).await.unwrap().is_some());
    drop(store);

    client
        .execute("UPDATE battleplan_schema SET version = 99", &[])
        .await
        .unwrap();
    match PgEventLog::open(location.clone(), PgOptions::default()).await {
        Err(StoreError::NewerFormat { found, supported }) => {
            assert_eq!((found, supported), (99, schema::SCHEMA_VERSION as u32))
        }
        other => panic!("expected a newer schema to be refused, got {other:?}"),
    }
    assert_eq!(version().await, 99, "a refused schema is left as it was");
}

/// Records restored from another tenant give the same chain; a restore into a tenant that has
/// events is refused, and one that meets a damaged record leaves its tenant empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_whole_or_nothing() {
    let Some((location, _database)) = location("a_restore_is_whole_or_nothing").await else {
        return;
    };
    let source = open(&location.clone().with_tenant("source").unwrap()).await;
    for command in 1..=40 {
        source
            .append(append(
                &format!("campaign-{}", command % 3),
                command,
                1 + command % 4,
            ))
            .await
            .unwrap();
    }
    let mut records = Vec::new();
    let mut after = Position::START;
    loop {
        let batch = source.read_all(after, 7).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in batch {
            records.push(battleplan_core::event::record::encode_recorded(&event));
        }
    }
    let source_report = source.verify().await.unwrap();

    let target = open(&location.clone().with_tenant("target").unwrap()).await;
    let mut restore = target.restore().await.unwrap();
    for bytes in &records {
        restore.push(bytes.clone()).await.unwrap();
    }
    let target = restore.finish().await.unwrap();
    let report = target.verify().await.unwrap();
    assert_eq!(report, source_report);
    assert_eq!(target.head().await.unwrap(), source.head().await.unwrap());
    // The command index came along: a retried command is answered, not appended again.
    let again = target.append(append("campaign-1", 1, 2)).await.unwrap();
    assert!(again.deduplicated);

    assert!(matches!(
        target.restore().await,
        Err(StoreError::Invalid(_))
    ));

    let damaged_tenant = open(&location.clone().with_tenant("damaged").unwrap()).await;
    let mut restore = damaged_tenant.restore().await.unwrap();
    for (index, bytes) in records.iter().enumerate() {
        let mut bytes = bytes.clone();
        if index == records.len() - 5 {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        match restore.push(bytes).await {
            Ok(()) => {}
            Err(RestoreError::Damaged(problem)) => {
                assert_eq!(problem.position.0 as usize, records.len() - 4);
                break;
            }
            Err(other) => panic!("expected damage, got {other}"),
        }
    }
    drop(restore);
    assert_eq!(damaged_tenant.head().await.unwrap(), Position::START);
    assert!(damaged_tenant
        .read_all(Position::START, 10)
        .await
        .unwrap()
        .is_empty());
}
