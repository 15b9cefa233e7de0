//! The command handler and the scheduler in process, on the in-memory store under a manual
//! clock: optimistic concurrency with retries, idempotent command ids, and the scheduler's
//! catch-up across daylight-saving changes.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use battleplan_adapters::MemoryEventLog;
use battleplan_core::campaign::events::PhaseEntered;
use battleplan_core::campaign::{CampaignEvent, Command, PlanVersion, StateKind};
use battleplan_core::context::{ManualClock, SeededIds};
use battleplan_core::event::{Position, StreamVersion};
use battleplan_core::plan::{self, EXAMPLE_PLAN};
use battleplan_orchestrator::kernel::runtime::{HandleError, Runtime, Who};
use battleplan_orchestrator::kernel::scheduler::{Scheduler, Timing};
use chrono::{DateTime, Utc};
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn runtime(start: &str) -> (Runtime, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at(start)));
    let runtime = Runtime::new(
        Arc::new(MemoryEventLog::default()),
        clock.clone(),
        Arc::new(SeededIds::new(7)),
    );
    (runtime, clock)
}

fn apply(source: &str) -> Command {
    let checked = plan::check(source.as_bytes());
    let plan = checked.plan.unwrap();
    Command::ApplyPlan(Box::new(PlanVersion::of(&plan, source)))
}

fn person(name: &str, reason: &str) -> Who {
    Who {
        actor: name.to_string(),
        reason: Some(reason.to_string()),
        command_id: None,
        causation: None,
        fingerprint: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_campaign_lose_no_update() {
    let (runtime, _) = runtime("2026-08-01T00:00:00Z");
    let id = "sept-festival-2026";
    runtime
        .handle(id, &apply(EXAMPLE_PLAN), &person("mei", "launch"))
        .await
        .unwrap();
    // Eight people advance at once: each decision is made on the version it read, the losers
    // of each race decide again, and every accepted advance moves exactly one step.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            runtime
                .handle(id, &Command::Advance, &person(&format!("p{n}"), "go"))
                .await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(handled) => {
                assert_eq!(handled.events.len(), 1);
                accepted += 1;
            }
            Err(HandleError::Rejected(rejection)) => {
                assert!(rejection.0.starts_with("cannot advance"), "{rejection}")
            }
            Err(HandleError::Contended { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    let events = runtime.store.read_all(Position::START, 100).await.unwrap();
    assert_eq!(
        events.len(),
        1 + accepted,
        "one plan, then one event per accepted advance"
    );
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.version, StreamVersion(index as u64 + 1), "contiguous");
    }
    let (state, _) = runtime.load(id).await.unwrap();
    // prep, warm-up, early, middle, late, review, then completed: at most 7 advances.
    assert_eq!(accepted.min(7), accepted);
    let expected = [
        StateKind::Scheduled,
        StateKind::Prep,
        StateKind::WarmUp,
        StateKind::Burst,
        StateKind::Burst,
        StateKind::Burst,
        StateKind::Review,
        StateKind::Completed,
    ];
    assert_eq!(state.kind(), expected[accepted]);
}

#[tokio::test]
async fn the_same_command_id_twice_is_answered_with_the_first_result() {
    let (runtime, clock) = runtime("2026-08-20T00:00:00Z");
    let id = "sept-festival-2026";
    runtime
        .handle(id, &apply(EXAMPLE_PLAN), &person("mei", "launch"))
        .await
        .unwrap();
    let mut pause = person("alice", "stock problem");
    pause.command_id = Some(Uuid::from_u128(42));
    let first = runtime.handle(id, &Command::Pause, &pause).await.unwrap();
    assert!(!first.repeated);
    clock.advance(chrono::Duration::minutes(5));
    let second = runtime.handle(id, &Command::Pause, &pause).await.unwrap();
    assert!(second.repeated);
    assert_eq!(
        first.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        second.events.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert_eq!(runtime.store.head().await.unwrap(), Position(2));
    // A different command id is a new command, and this one is refused.
    let third = runtime
        .handle(id, &Command::Pause, &person("alice", "again"))
        .await;
    assert!(matches!(third, Err(HandleError::Rejected(_))));
}

#[tokio::test]
async fn the_scheduler_catches_up_in_order_across_daylight_saving() {
    let source = r#"
format = 1

[campaign]
id = "ny-fall"
name = "New York fall sale"
time_zone = "America/New_York"
currency = "USD"

[phases.prep]
start = 2026-10-26
end = 2026-10-31

[phases.warm_up]
start = 2026-11-01
end = 2026-11-05

[phases.burst]
start = 2026-11-06
end = 2026-11-10

[stages.only]
name = "Only"
theme = "The sale has started"
start = 2026-11-06
end = 2026-11-10
"#;
    let (runtime, _) = runtime("2026-10-01T00:00:00Z");
    runtime
        .handle("ny-fall", &apply(source), &person("mei", "launch"))
        .await
        .unwrap();
    // A daemon that was down until the burst began: everything overdue is entered once, in
    // order, each with its lateness, at the instants New York's midnights fall in UTC.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let clock = Arc::new(ManualClock::new(at("2026-11-06T07:00:00Z")));
    let late = Runtime {
        clock: clock.clone(),
        ..runtime.clone()
    };
    let summary = Scheduler::new(late.clone(), Timing::Simulated(clock.clone()), None)
        .run(stopped)
        .await
        .unwrap();
    assert_eq!(summary.caught_up, 3);
    assert_eq!(
        summary.transitions, 4,
        "three overdue steps, then completion on time"
    );
    let events = runtime.store.read_all(Position::START, 100).await.unwrap();
    let steps: Vec<(String, DateTime<Utc>, i64)> = events
        .iter()
        .filter_map(|event| match CampaignEvent::decode(event).unwrap() {
            Some(CampaignEvent::PhaseEntered(PhaseEntered {
                step,
                planned,
                late_by_ms,
                ..
            })) => Some((step.to_string(), planned, late_by_ms / 3_600_000)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("prep".to_string(), at("2026-10-26T04:00:00Z"), 11 * 24 + 3),
            (
                "warm-up".to_string(),
                at("2026-11-01T04:00:00Z"),
                5 * 24 + 3
            ),
            (
                "burst (only stage)".to_string(),
                at("2026-11-06T05:00:00Z"),
                2
            ),
        ]
    );
    assert_eq!(events.last().unwrap().event_type, "CampaignCompleted");
    assert_eq!(
        events.last().unwrap().recorded_at,
        at("2026-11-11T05:00:00Z")
    );
    let (state, _) = runtime.load("ny-fall").await.unwrap();
    assert_eq!(state.kind(), StateKind::Completed);
}

#[tokio::test]
async fn a_clock_set_back_cannot_backdate_the_record() {
    // Given a campaign paused on 2026-08-20,
    let (runtime, clock) = runtime("2026-08-01T00:00:00Z");
    runtime
        .handle(
            "sept-festival-2026",
            &apply(EXAMPLE_PLAN),
            &person("mei", "launch"),
        )
        .await
        .unwrap();
    clock.set(at("2026-08-20T00:00:00Z"));
    runtime
        .handle(
            "sept-festival-2026",
            &Command::Pause,
            &person("mei", "stock"),
        )
        .await
        .unwrap();
    let head = runtime.store.head().await.unwrap();
    // when someone resumes it with the clock set back to 2026-08-02,
    clock.set(at("2026-08-02T00:00:00Z"));
    let refused = runtime
        .handle(
            "sept-festival-2026",
            &Command::Resume,
            &person("mallory", "backdated"),
        )
        .await;
    // then it is refused, naming both instants, and nothing is recorded;
    match refused {
        Err(HandleError::Rejected(rejection)) => {
            assert!(
                rejection.0.contains("2026-08-02T00:00:00+00:00"),
                "{rejection}"
            );
            assert!(
                rejection.0.contains("2026-08-20T00:00:00+00:00"),
                "{rejection}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(runtime.store.head().await.unwrap(), head);
    // automated facts cannot slip in before it either,
    let facts = runtime
        .record(
            battleplan_core::event::StreamId::new("outreach-sept-festival-2026".to_string())
                .unwrap(),
            Vec::new(),
            "system:dispatcher",
            None,
            Uuid::from_u128(7),
            at("2026-08-02T00:00:00Z"),
        )
        .await;
    assert!(matches!(facts, Err(HandleError::Rejected(_))), "{facts:?}");
    // and with the clock back at or after the pause, resuming works.
    clock.set(at("2026-08-21T00:00:00Z"));
    runtime
        .handle(
            "sept-festival-2026",
            &Command::Resume,
            &person("mei", "stock in"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn audit_finds_an_event_recorded_before_the_one_before_it() {
    use battleplan_core::campaign::events::CampaignCancelled;
    use battleplan_core::event::{Append, CommandId, EventId, ExpectedVersion, Metadata};
    // Given a log whose last event was written without the runtime's rule (by an older
    // battleplan): a cancel dated 2026-08-02 after a pause recorded on 2026-08-20,
    let (runtime, clock) = runtime("2026-08-01T00:00:00Z");
    runtime
        .handle(
            "sept-festival-2026",
            &apply(EXAMPLE_PLAN),
            &person("mei", "launch"),
        )
        .await
        .unwrap();
    clock.set(at("2026-08-20T00:00:00Z"));
    runtime
        .handle(
            "sept-festival-2026",
            &Command::Pause,
            &person("mei", "stock"),
        )
        .await
        .unwrap();
    let cancel = CampaignEvent::CampaignCancelled(CampaignCancelled { from: None })
        .encode(EventId(Uuid::from_u128(99)))
        .unwrap();
    runtime
        .store
        .append(Append {
            stream: battleplan_core::campaign::stream_of("sept-festival-2026").unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![cancel],
            metadata: Metadata {
                actor: "mallory".into(),
                command_id: CommandId(Uuid::from_u128(99)),
                causation_id: None,
                correlation_id: None,
                reason: None,
            },
            recorded_at: at("2026-08-02T00:00:00Z"),
        })
        .await
        .unwrap();
    // when the auditor replays it, then the first thing found is the instant out of order.
    let report = battleplan_orchestrator::app::audit::check_replay(runtime.store.as_ref())
        .await
        .unwrap();
    match report.finding {
        Some(battleplan_orchestrator::app::audit::Finding::BackInTime { position, detail }) => {
            assert_eq!(position, Position(3));
            assert!(detail.contains("the clock was set back"), "{detail}");
        }
        other => panic!("expected an instant out of order, got {other:?}"),
    }
}

#[tokio::test]
async fn the_plan_in_force_moves_anchored_tasks_with_a_shifting_pause() {
    use battleplan_core::plan::model::TaskSchedule;
    // Given the example under on_resume = "shift_windows", paused six hours in the early stage,
    let source = EXAMPLE_PLAN.replacen(
        "on_resume = \"follow_clock\"",
        "on_resume = \"shift_windows\"",
        1,
    );
    let (runtime, clock) = runtime("2026-08-01T00:00:00Z");
    let campaign = "sept-festival-2026";
    runtime
        .handle(campaign, &apply(&source), &person("mei", "launch"))
        .await
        .unwrap();
    clock.set(at("2026-09-05T02:00:00Z"));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    Scheduler::new(
        runtime.clone(),
        Timing::Frozen,
        Some(at("2026-09-05T02:00:00Z")),
    )
    .run(stopped)
    .await
    .unwrap();
    runtime
        .handle(campaign, &Command::Pause, &person("mei", "stock"))
        .await
        .unwrap();
    clock.set(at("2026-09-05T08:00:00Z"));
    runtime
        .handle(campaign, &Command::Resume, &person("mei", "stock in"))
        .await
        .unwrap();
    // when the plan in force is read (the dispatcher's, the board's),
    let plan = battleplan_orchestrator::kernel::plans::plan_in_force(&runtime, campaign)
        .await
        .unwrap()
        .unwrap();
    // then the task due at `review.end - 1d` moved with the review's end, six hours later.
    let due = plan
        .tasks
        .iter()
        .find(|task| task.id == "summarise-results")
        .map(|task| match &task.schedule {
            TaskSchedule::Once { due } => *due,
            TaskSchedule::Recurring { from, .. } => *from,
        });
    assert_eq!(due, Some(at("2026-10-06T22:00:00Z")));
}
