//! Crash-test child: appends to the sled store in DIR (or to the PostgreSQL store a
//! `postgres://` URL names, the password in `BATTLEPLAN_STORE_PASSWORD`) from 8 concurrent
//! tasks until it is killed, printing one line per acknowledged append:
//! `ack FIRST_POSITION LAST_POSITION COMMAND_ID EVENT_COUNT`.
//! Each event's payload is `[run, task, sequence, index, count]` (u32 each, big-endian) so the
//! checker can tell a whole command from half of one. Usage: `append_forever DIR RUN
//! [CHECKPOINT_EVENTS]` (the store's checkpoint threshold; small values make the kill land
//! during checkpoints).

// A test-support binary: it reports a broken setup by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use battleplan_adapters::{PgEventLog, PgLocation, PgOptions, SledEventLog, StoreOptions};
use battleplan_core::event::port::EventAppender;
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, StreamId,
};
use uuid::Uuid;

fn main() {
    let mut arguments = std::env::args().skip(1);
    let directory = PathBuf::from(arguments.next().expect("DIR"));
    let run: u32 = arguments
        .next()
        .expect("RUN")
        .parse()
        .expect("RUN is a number");
    let mut options = StoreOptions::default();
    if let Some(events) = arguments.next() {
        options.checkpoint_events = events.parse().expect("CHECKPOINT_EVENTS is a number");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let location = directory.to_str().unwrap_or_default();
        let store: Arc<dyn EventAppender> = if location.starts_with("postgres://") {
            let password = std::env::var("BATTLEPLAN_STORE_PASSWORD").unwrap_or_default();
            let location = PgLocation::parse(location)
                .expect("a store URL")
                .with_password(&password);
            Arc::new(
                PgEventLog::open(location, PgOptions::default())
                    .await
                    .expect("open"),
            )
        } else {
            Arc::new(SledEventLog::open(&directory, options).expect("open"))
        };
        let mut tasks = Vec::new();
        for task in 0..8u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for sequence in 0u32.. {
                    let count = 1 + (sequence + task) % 3;
                    let command = Uuid::from_u128(
                        (u128::from(run) << 96) | (u128::from(task) << 64) | u128::from(sequence),
                    );
                    let events = (0..count)
                        .map(|index| {
                            let mut payload = Vec::with_capacity(20);
                            for field in [run, task, sequence, index, count] {
                                payload.extend_from_slice(&field.to_be_bytes());
                            }
                            NewEvent {
                                event_id: EventId(Uuid::from_u128(
                                    command.as_u128() ^ u128::from(index + 1),
                                )),
                                event_type: "CrashTested".into(),
                                schema_version: 1,
                                payload,
                            }
                        })
                        .collect();
                    let outcome = store
                        .append(Append {
                            stream: StreamId::new(format!("stream-{}", (task + sequence) % 5))
                                .unwrap(),
                            expected: ExpectedVersion::Any,
                            events,
                            metadata: Metadata {
                                actor: "system:crash-test".into(),
                                command_id: CommandId(command),
                                causation_id: None,
                                correlation_id: None,
                                reason: None,
                            },
                            recorded_at: chrono::DateTime::from_timestamp(1_788_000_000, 0)
                                .unwrap(),
                        })
                        .await
                        .expect("append");
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "ack {} {} {} {}",
                        outcome.first_position, outcome.last_position, command, count
                    )
                    .expect("stdout");
                    out.flush().expect("stdout");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    });
}
