//! PostgreSQL itself restarted under load (`pg_ctl restart -m immediate`: the server is killed
//! and recovers from its own write-ahead log), three times, while eight appenders write to the
//! store: they get errors while it is down, never a wrong answer, and the store reconnects by
//! itself. An appender that got an error tries the same command id again, so an append whose
//! commit went through before its answer was lost is answered from the command index, once.
//! Afterwards every acknowledged append is where its acknowledgement said, every command is
//! whole and once, and the chain verifies. A cluster of the test's own: restarting the shared
//! one would disturb the other tests.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use battleplan_adapters::{PgEventLog, PgLocation, PgOptions};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, AppendOutcome, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, Position,
    StreamId,
};
use battleplan_tests::postgres;
use uuid::Uuid;

const RESTARTS: usize = 3;

fn append(task: u32, sequence: u32) -> Append {
    let command = Uuid::from_u128((u128::from(task) << 64) | u128::from(sequence));
    let count = 1 + (task + sequence) % 3;
    Append {
        stream: StreamId::new(format!("stream-{}", (task + sequence) % 4)).unwrap(),
        expected: ExpectedVersion::Any,
        events: (0..count)
            .map(|index| NewEvent {
                event_id: EventId(Uuid::from_u128(command.as_u128() ^ u128::from(index + 1))),
                event_type: "RestartTested".into(),
                schema_version: 1,
                payload: vec![index as u8, count as u8],
            })
            .collect(),
        metadata: Metadata {
            actor: "system:restart-test".into(),
            command_id: CommandId(command),
            causation_id: None,
            correlation_id: None,
            reason: None,
        },
        recorded_at: chrono::DateTime::from_timestamp(1_788_000_000, 0).unwrap(),
    }
}

#[test]
fn appenders_get_errors_not_wrong_answers_when_postgres_restarts() {
    let Some(cluster) = postgres::private_cluster("postgres_restart") else {
        return;
    };
    let url = cluster.database("restarts");
    let location = PgLocation::parse(&url)
        .unwrap()
        .with_password(cluster.password());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(PgEventLog::open(location.clone(), PgOptions::default()))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let (store, stop, acked, errors) =
            (store.clone(), stop.clone(), acked.clone(), errors.clone());
        tasks.push(runtime.spawn(async move {
            let mut outcomes: Vec<(Uuid, u32, AppendOutcome)> = Vec::new();
            let mut sequence = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let attempt = append(task, sequence);
                let command = attempt.metadata.command_id.0;
                let count = attempt.events.len() as u32;
                match store.append(attempt).await {
                    Ok(outcome) => {
                        outcomes.push((command, count, outcome));
                        acked.fetch_add(1, Ordering::Relaxed);
                        sequence += 1;
                    }
                    Err(_) => {
                        // The same command again after a pause: the server may be down.
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            outcomes
        }));
    }
    let wait_for_acks = |at_least: u64| {
        for _ in 0..3_000 {
            if acked.load(Ordering::Relaxed) >= at_least {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the appenders did not reach {at_least} acknowledged appends in 30 s");
    };
    for restart in 0..RESTARTS {
        wait_for_acks(acked.load(Ordering::Relaxed) + 200);
        cluster.restart_immediate();
        eprintln!("restart {}: server back", restart + 1);
    }
    // They reconnect by themselves and go on.
    wait_for_acks(acked.load(Ordering::Relaxed) + 200);
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(runtime.block_on(task).unwrap());
    }
    assert!(
        errors.load(Ordering::Relaxed) > 0,
        "the appenders met the restarts"
    );

    runtime.block_on(async {
        let reader = PgEventLog::open(location, PgOptions::default())
            .await
            .unwrap();
        let report = reader.verify().await.unwrap();
        assert_eq!(
            report.problem, None,
            "the chain verifies after the restarts"
        );
        let head = reader.head().await.unwrap();
        assert_eq!(report.checked, head.0);
        let mut events = Vec::new();
        let mut after = Position::START;
        loop {
            let batch = reader.read_all(after, 5_000).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = last.position;
            events.extend(batch);
        }
        let positions: Vec<u64> = events.iter().map(|event| event.position.0).collect();
        assert_eq!(positions, (1..=head.0).collect::<Vec<_>>());
        let mut by_command: HashMap<Uuid, Vec<u64>> = HashMap::new();
        for event in &events {
            by_command
                .entry(event.metadata.command_id.0)
                .or_default()
                .push(event.position.0);
        }
        for (command, count, outcome) in &outcomes {
            let positions = by_command
                .get(command)
                .unwrap_or_else(|| panic!("acknowledged command {command} was lost"));
            assert_eq!(
                positions.len() as u32,
                *count,
                "command {command} once and whole"
            );
            assert_eq!(
                (positions[0], positions[positions.len() - 1]),
                (outcome.first_position.0, outcome.last_position.0),
                "command {command} is where its acknowledgement said"
            );
        }
        assert_eq!(
            by_command.len(),
            outcomes.len(),
            "every command in the log was acknowledged once"
        );
    });
}

/// A node's daemon outlives a restart of the database: its scheduler fails, waits, and starts
/// again from the log, rather than the whole cluster of nodes stopping with the server.
#[test]
fn a_node_waits_for_a_restarted_database_and_goes_on() {
    let Some(cluster) = postgres::private_cluster("node_outlives_restart") else {
        return;
    };
    let url = cluster.database("node");
    let scratch = tempfile::tempdir().unwrap();
    let mut node = battleplan_tests::Daemon::start_with(
        scratch.path(),
        &[
            "--store", &url, "--data", "node-a", "run", "--node", "a", "--lease", "2",
        ],
        &[("BATTLEPLAN_STORE_PASSWORD", cluster.password())],
    );
    node.wait_for("running on node-a");
    node.wait_for("caught up");
    cluster.restart_immediate();
    // The node finds the database gone: its connections are closed by the server at once; then
    // whichever of its parts asks first (the lease keeper every 0.7 s, the scheduler when it
    // wakes) fails and tries again. A restart quicker than the scheduler's next question goes
    // by without the scheduler failing at all, so either is waited for. (Not the closed
    // connection first: the failure's own line names it, and the pool's warnings about it come
    // from other threads, before or after that line.)
    let failed = node.wait_for_or_end_any(&["the database failed", "renewing failed"]);
    assert!(failed.is_some(), "the node went on after the failure");
    // It goes on: a question through its control socket reads the restarted database.
    let status = battleplan_tests::run_in(scratch.path(), &["--data", "node-a", "status"]);
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    assert!(!node.has_ended(), "the node went on");
    let (code, lines) = node.terminate();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    assert!(
        !lines.iter().any(|line| line.contains(cluster.password())),
        "the password is in no log line"
    );
}
