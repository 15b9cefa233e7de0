//! The history in pages (HTTP's cursor paging): through `app::execute` on the in-memory store,
//! pages of any size cover the whole history exactly once, in log order, and only the last page
//! lacks a cursor.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use battleplan_adapters::outbox::FileOutbox;
use battleplan_adapters::MemoryEventLog;
use battleplan_core::context::{Clock, ManualClock, SeededIds};
use battleplan_core::plan::EXAMPLE_PLAN;
use battleplan_orchestrator::app::campaigns::{HistoryBody, HistoryEvent, HistoryView};
use battleplan_orchestrator::app::{self, Action, AppError, Request, Response};
use battleplan_orchestrator::kernel::runtime::Runtime;
use battleplan_orchestrator::kernel::scheduler::{Scheduler, Timing};
use chrono::{DateTime, Duration, Utc};

const CAMPAIGN: &str = "sept-festival-2026";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A campaign applied and run by the scheduler into its warm-up (phases entered, reach-outs
/// planned), then paused, resumed and advanced by hand. Returns the instant it was paused.
async fn campaign_with_a_past() -> (Runtime, DateTime<Utc>, tempfile::TempDir) {
    campaign_asked_and_run(false).await
}

/// [`campaign_with_a_past`], whose history is asked for once before the scheduler runs (when
/// `ask_first`): what a runtime keeps between questions must not hide what came after.
async fn campaign_asked_and_run(ask_first: bool) -> (Runtime, DateTime<Utc>, tempfile::TempDir) {
    let clock = Arc::new(ManualClock::new(at("2026-08-01T00:00:00Z")));
    let runtime = Runtime::new(
        Arc::new(MemoryEventLog::default()),
        clock.clone(),
        Arc::new(SeededIds::new(7)),
    );
    let applied = app::execute(
        &runtime,
        Request::ApplyPlan {
            file_name: "plan.toml".to_string(),
            source: EXAMPLE_PLAN.to_string(),
            actor: "mei".to_string(),
            reason: None,
            command_id: None,
        },
    )
    .await;
    assert!(
        matches!(applied, Ok(Response::PlanApplied(_))),
        "{applied:?}"
    );
    if ask_first {
        let early = history(&runtime, Some(CAMPAIGN), None, None, None).await;
        assert!(
            !early
                .body
                .events()
                .iter()
                .any(|line| line.event_type == "ReachOutPlanned"),
            "nothing planned before the scheduler ran: {:?}",
            early.body
        );
    }
    let outbox = tempfile::tempdir().unwrap();
    let mut scheduler = Scheduler::new(runtime.clone(), Timing::Simulated(clock.clone()), None)
        .with_outbox(Arc::new(FileOutbox::new(outbox.path())));
    scheduler.start().await.unwrap();
    scheduler
        .advance_to(at("2026-08-27T00:00:00+08:00"))
        .await
        .unwrap();
    let mut paused_at = clock.now();
    for action in [Action::Pause, Action::Resume, Action::Advance] {
        clock.advance(Duration::minutes(5));
        if action == Action::Pause {
            paused_at = clock.now();
        }
        let acted = app::execute(
            &runtime,
            Request::Act {
                campaign: CAMPAIGN.to_string(),
                action,
                actor: "mei".to_string(),
                reason: Some(format!("{action:?} by hand")),
                command_id: None,
            },
        )
        .await;
        assert!(
            matches!(acted, Ok(Response::Acted(_))),
            "{action:?}: {acted:?}"
        );
    }
    (runtime, paused_at, outbox)
}

async fn history(
    runtime: &Runtime,
    campaign: Option<&str>,
    as_of: Option<DateTime<Utc>>,
    after: Option<u64>,
    limit: Option<usize>,
) -> HistoryView {
    let request = Request::History {
        campaign: campaign.map(str::to_string),
        as_of,
        after,
        limit,
    };
    match app::execute(runtime, request).await {
        Ok(Response::History(view)) => view,
        other => panic!("not a history: {other:?}"),
    }
}

/// Every page of `limit` lines in turn, as a client following `next_after` reads them: each
/// page's positions and cursor, and every line read.
async fn pages(
    runtime: &Runtime,
    campaign: Option<&str>,
    as_of: Option<DateTime<Utc>>,
    limit: usize,
) -> (Vec<(Vec<u64>, Option<u64>)>, Vec<HistoryEvent>) {
    let mut pages = Vec::new();
    let mut lines = Vec::new();
    let mut after = None;
    loop {
        let view = history(runtime, campaign, as_of, after, Some(limit)).await;
        let HistoryBody::Window(window) = &view.body else {
            panic!("a page is a window: {:?}", view.body);
        };
        let positions: Vec<u64> = window.events.iter().map(|line| line.position).collect();
        pages.push((positions, window.next_after));
        lines.extend(window.events.iter().cloned());
        match window.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages.len() < 100, "the pages never end: {pages:?}");
    }
    (pages, lines)
}

#[tokio::test]
async fn pages_cover_the_history_once_in_order_and_the_last_has_no_cursor() {
    let (runtime, _, _outbox) = campaign_with_a_past().await;
    for campaign in [None, Some(CAMPAIGN)] {
        let whole = history(&runtime, campaign, None, None, None).await;
        let HistoryBody::Events(all) = &whole.body else {
            panic!("without paging, every event: {:?}", whole.body);
        };
        let all: Vec<u64> = all.iter().map(|line| line.position).collect();
        // The campaign's own events and its outbox's (the reach-outs planned).
        assert!(all.len() >= 8, "{all:?}");
        let lines = whole.body.events();
        assert!(
            lines
                .iter()
                .any(|line| line.event_type == "ReachOutPlanned"),
            "{lines:#?}"
        );
        for limit in [1, 2, 3, all.len() - 1, all.len(), all.len() + 5] {
            let (pages, lines) = pages(&runtime, campaign, None, limit).await;
            let read: Vec<u64> = pages.iter().flat_map(|(page, _)| page.clone()).collect();
            assert_eq!(read, all, "limit {limit}: {pages:?}");
            // Each line as the whole history shows it: the same plan version, zone, words.
            assert_eq!(lines, whole.body.events(), "limit {limit}");
            let (last, others) = pages.split_last().unwrap();
            assert_eq!(last.1, None, "limit {limit}: {pages:?}");
            assert!(!last.0.is_empty(), "no empty last page: {pages:?}");
            for (page, next) in others {
                assert_eq!(page.len(), limit, "{pages:?}");
                assert_eq!(*next, page.last().copied(), "{pages:?}");
            }
        }
    }
}

/// One campaign's history picks its lines out of the outbox's and the task board's streams and
/// keeps them between questions; the whole log's history reads every event. With one campaign
/// they say the same, asked before and after the scheduler added to those streams.
#[tokio::test]
async fn the_campaigns_history_shows_what_the_whole_logs_does() {
    for ask_first in [false, true] {
        let (runtime, _, _outbox) = campaign_asked_and_run(ask_first).await;
        let one = history(&runtime, Some(CAMPAIGN), None, None, None).await;
        let all = history(&runtime, None, None, None, None).await;
        assert_eq!(
            one.body.events(),
            all.body.events(),
            "ask_first {ask_first}"
        );
        // Every outbox event type with a line is one the campaign's history picks.
        let events = runtime
            .store
            .read_all(battleplan_core::event::Position::START, 100_000)
            .await
            .unwrap();
        let mut summarised = 0;
        for event in &events {
            if let Some(decoded) =
                battleplan_core::outreach::events::OutreachEvent::decode(event).unwrap()
            {
                let picked = battleplan_core::outreach::events::OutreachEvent::SUMMARISED
                    .contains(&event.event_type.as_str());
                assert_eq!(decoded.summary().is_some(), picked, "{}", event.event_type);
                summarised += usize::from(picked);
            }
        }
        assert!(summarised > 0, "the run planned reach-outs");
    }
}

#[tokio::test]
async fn a_page_of_the_history_as_of_an_instant_keeps_the_states_as_of_it() {
    let (runtime, paused_at, _outbox) = campaign_with_a_past().await;
    // Up to the pause: what the scheduler did, and the pause.
    let as_of = paused_at + Duration::minutes(1);
    let whole = history(&runtime, Some(CAMPAIGN), Some(as_of), None, None).await;
    let HistoryBody::Window(window) = &whole.body else {
        panic!("as of an instant: a window {:?}", whole.body);
    };
    assert_eq!(window.next_after, None);
    let all: Vec<u64> = window.events.iter().map(|line| line.position).collect();
    let (pages, lines) = pages(&runtime, Some(CAMPAIGN), Some(as_of), 2).await;
    assert_eq!(lines, window.events);
    let read: Vec<u64> = pages.iter().flat_map(|(page, _)| page.clone()).collect();
    assert_eq!(read, all, "{pages:?}");
    let last = history(&runtime, Some(CAMPAIGN), Some(as_of), Some(all[1]), Some(2)).await;
    assert_eq!(last.states.len(), 1);
    assert_eq!(last.states[0].kind().name(), "Paused");
}

#[tokio::test]
async fn a_page_of_no_event_is_refused_and_the_plain_history_is_a_list() {
    let (runtime, _, _outbox) = campaign_with_a_past().await;
    let refused = app::execute(
        &runtime,
        Request::History {
            campaign: None,
            as_of: None,
            after: None,
            limit: Some(0),
        },
    )
    .await;
    assert!(
        matches!(refused, Err(AppError::Invalid { .. })),
        "{refused:?}"
    );
    // The JSON of a page names the cursor; the whole history stays the list it always was.
    let whole = app::execute(
        &runtime,
        Request::History {
            campaign: None,
            as_of: None,
            after: None,
            limit: None,
        },
    )
    .await
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&battleplan_orchestrator::present::view_json(&whole)).unwrap();
    assert!(json.is_array(), "{json:#}");
    let page = app::execute(
        &runtime,
        Request::History {
            campaign: None,
            as_of: None,
            after: None,
            limit: Some(2),
        },
    )
    .await
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&battleplan_orchestrator::present::view_json(&page)).unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 2, "{json:#}");
    assert_eq!(
        json["next_after"], json["events"][1]["position"],
        "{json:#}"
    );
}
