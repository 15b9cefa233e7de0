//! The customer book and `audience preview` in process, on the in-memory store under a manual
//! clock: the book caught up from the log piecemeal is the book rebuilt at once, and a preview
//! answers from the plan in force and the rows recorded since the last question.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use battleplan_adapters::MemoryEventLog;
use battleplan_core::campaign::{Command, PlanVersion};
use battleplan_core::context::{ManualClock, SeededIds};
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::customer::events::{
    CustomerEvent, CustomerRecorded, ImportFinished, ImportKind, ImportStarted, Signal,
};
use battleplan_core::event::{Append, CommandId, EventId, ExpectedVersion, Metadata, StreamId};
use battleplan_core::plan::model::Activity;
use battleplan_core::plan::{self, EXAMPLE_PLAN};
use battleplan_orchestrator::app::audience::PreviewQuestion;
use battleplan_orchestrator::app::{execute, Request, Response};
use battleplan_orchestrator::kernel::plans::catch_up_book as catch_up;
use battleplan_orchestrator::kernel::runtime::{Runtime, Who};
use battleplan_orchestrator::present::{render, Reply};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn runtime() -> Runtime {
    Runtime::new(
        Arc::new(MemoryEventLog::default()),
        Arc::new(ManualClock::new(at("2026-08-01T00:00:00Z"))),
        Arc::new(SeededIds::new(11)),
    )
}

/// Records an import of `rows` customers, `first` onwards, each visited `days_ago` before the
/// burst.
async fn import(runtime: &Runtime, digest: &str, first: u32, rows: u32, email: bool) {
    let mut events = vec![CustomerEvent::ImportStarted(ImportStarted {
        kind: ImportKind::Customers,
        file: "customers.csv".into(),
        digest: digest.into(),
        rows: u64::from(rows),
        skipped: Vec::new(),
        skipped_total: 0,
    })];
    for index in first..first + rows {
        events.push(CustomerEvent::CustomerRecorded(CustomerRecorded {
            customer: format!("c-{index:06}"),
            line: u64::from(index - first) + 2,
            email: email.then(|| format!("buyer{index}@example.com")),
            signals: vec![Signal {
                activity: Activity::Visited,
                at: at("2026-09-01T00:00:00+08:00") - Duration::days(i64::from(index % 120)),
                amount: None,
            }],
            ..CustomerRecorded::default()
        }));
    }
    events.push(CustomerEvent::ImportFinished(ImportFinished {
        kind: ImportKind::Customers,
        digest: digest.into(),
        rows: u64::from(rows),
        skipped: 0,
    }));
    let now = runtime.clock.now();
    let encoded = events
        .iter()
        .map(|event| event.encode(EventId(runtime.ids.next_id(now))).unwrap())
        .collect();
    runtime
        .store
        .append(Append {
            stream: StreamId::new(format!("import-{}", &digest[..32])).unwrap(),
            expected: ExpectedVersion::NoStream,
            events: encoded,
            metadata: Metadata {
                actor: "li.na".into(),
                command_id: CommandId(Uuid::from_u128(u128::from(first) + 1)),
                causation_id: None,
                correlation_id: None,
                reason: None,
            },
            recorded_at: now,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_book_caught_up_piecemeal_is_the_book_rebuilt_at_once() {
    let runtime = runtime();
    import(&runtime, &"a".repeat(64), 1, 300, true).await;
    let mut piecemeal = CustomerBook::default();
    catch_up(runtime.store.as_ref(), &mut piecemeal)
        .await
        .unwrap();
    assert_eq!(piecemeal.len(), 300);
    // A second import overlapping the first: 100 known customers lose their address.
    import(&runtime, &"b".repeat(64), 201, 200, false).await;
    catch_up(runtime.store.as_ref(), &mut piecemeal)
        .await
        .unwrap();
    let mut whole = CustomerBook::default();
    catch_up(runtime.store.as_ref(), &mut whole).await.unwrap();
    assert_eq!(whole.len(), 400);
    assert_eq!(piecemeal.digest(), whole.digest());
    let record = &whole.imports[&"b".repeat(64)];
    assert_eq!((record.rows, record.recorded_rows), (200, 200));
    assert!(record.finished_at.is_some());
    // Catching up again changes nothing.
    catch_up(runtime.store.as_ref(), &mut piecemeal)
        .await
        .unwrap();
    assert_eq!(piecemeal.digest(), whole.digest());
}

fn question(reach_out: &str, at_text: &str) -> PreviewQuestion {
    PreviewQuestion {
        campaign: "sept-festival-2026".into(),
        reach_out: Some(reach_out.into()),
        segment: None,
        channel: None,
        at: Some(at(at_text)),
        customers: false,
    }
}

/// The preview as `--json` prints it (a refusal on standard error, exit 2).
async fn preview(runtime: &Runtime, question: &PreviewQuestion) -> Reply {
    render(
        &execute(runtime, Request::AudiencePreview(question.clone())).await,
        true,
    )
}

#[tokio::test]
async fn a_preview_answers_from_the_plan_in_force_and_the_latest_rows() {
    let runtime = runtime();
    let missing = preview(
        &runtime,
        &question("early-stage-mail", "2026-09-01T00:00:00Z"),
    )
    .await;
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("no campaign named sept-festival-2026"),
        "{}",
        missing.stderr
    );

    let checked = plan::check(EXAMPLE_PLAN.as_bytes());
    let version = PlanVersion::of(&checked.plan.unwrap(), EXAMPLE_PLAN);
    runtime
        .handle(
            "sept-festival-2026",
            &Command::ApplyPlan(Box::new(version)),
            &Who::by("mei"),
        )
        .await
        .unwrap();
    import(&runtime, &"a".repeat(64), 1, 300, true).await;
    let reply = preview(
        &runtime,
        &question("early-stage-mail", "2026-09-01T00:00:00Z"),
    )
    .await;
    assert_eq!(reply.code, 0, "{}", reply.stderr);
    let json: serde_json::Value = serde_json::from_str(&reply.stdout).unwrap();
    // Visited `index % 120` days before Sept 1: within 90 days of Sept 2 for 0..=88 days, which
    // 238 of c-000001..=c-000300 are.
    assert_eq!(json["segment_size"], 238);
    assert_eq!(json["evaluated_at"], "2026-09-02T00:00:00+08:00");
    let before = json["segment_size"].as_u64().unwrap();

    // Rows recorded after the first question are in the next answer.
    import(&runtime, &"b".repeat(64), 301, 120, false).await;
    let reply = preview(
        &runtime,
        &question("early-stage-mail", "2026-09-01T00:00:00Z"),
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&reply.stdout).unwrap();
    assert_eq!(json["segment_size"].as_u64().unwrap(), before + 89);
    assert_eq!(json["exclusions"][0]["reason"], "no_address");
    assert_eq!(json["exclusions"][0]["count"], 89);

    let unknown = preview(&runtime, &question("no-such", "2026-09-01T00:00:00Z")).await;
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("has no reach-out `no-such`"));
    let ended = preview(
        &runtime,
        &question("early-stage-mail", "2026-10-30T00:00:00Z"),
    )
    .await;
    assert_eq!(ended.code, 2);
    assert!(ended.stderr.contains("the window ended at"));
    // A reach-out the plan does not have is not found; a window already over cannot be asked.
    let class = |question: PreviewQuestion| async {
        match execute(&runtime, Request::AudiencePreview(question)).await {
            Ok(_) => "answered",
            Err(error) => error.code(),
        }
    };
    assert_eq!(
        class(question("no-such", "2026-09-01T00:00:00Z")).await,
        "not_found"
    );
    assert_eq!(
        class(question("early-stage-mail", "2026-10-30T00:00:00Z")).await,
        "invalid"
    );

    // The view carried as JSON (as the control socket and HTTP carry it) says the same, in
    // words and in JSON, every member included.
    let question = PreviewQuestion {
        customers: true,
        ..question("early-stage-mail", "2026-09-01T00:00:00Z")
    };
    let outcome = execute(&runtime, Request::AudiencePreview(question)).await;
    let carried: Response =
        serde_json::from_str(&serde_json::to_string(outcome.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(render(&Ok(carried.clone()), false), render(&outcome, false));
    assert_eq!(render(&Ok(carried), true), render(&outcome, true));
    let json: serde_json::Value = serde_json::from_str(&render(&outcome, true).stdout).unwrap();
    let members = &json["customers"];
    let listed =
        members["sends"].as_array().unwrap().len() + members["not_sent"].as_array().unwrap().len();
    assert_eq!(listed as u64, json["segment_size"].as_u64().unwrap());
    let text = render(&outcome, false).stdout;
    assert!(
        text.starts_with("Audience of reach-out early-stage-mail"),
        "{text}"
    );
    assert!(!text.contains("c-000"), "members are for scripts: {text}");
}
