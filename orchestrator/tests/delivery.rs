//! What the dispatcher does with each answer of a channel, on the in-memory twin scripted as a
//! real server answers: a deferral is recorded with its retry instant and handed over again
//! then (with the same key) until it goes, or given up as `undelivered` when its window closes;
//! a refusal is `refused`, and a refused address is a hard bounce for the customer; a message
//! handed over without an answer counts as sent, unconfirmed, or goes again, as the plan's
//! channel says; a failure that needs a person pauses the channel, tells ops, loses nothing, and
//! sending goes on after `channel resume`.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use battleplan_adapters::import::Format;
use battleplan_adapters::{MemoryChannel, MemoryEventLog, Scripted};
use battleplan_core::context::{Clock, ManualClock, SeededIds};
use battleplan_core::customer::events::{CustomerEvent, ImportKind, OutcomeKind};
use battleplan_core::event::{Position, RecordedEvent};
use battleplan_core::outreach::events::{NotSentReason, OutreachEvent};
use battleplan_core::outreach::port::Refusal;
use battleplan_core::plan::EXAMPLE_PLAN;
use battleplan_orchestrator::app::explain::ExplainQuestion;
use battleplan_orchestrator::app::import::ImportRequest;
use battleplan_orchestrator::app::outreach::{ChannelGuardView, ChannelState, OutboxQuestion};
use battleplan_orchestrator::app::{self, Request, Response};
use battleplan_orchestrator::kernel::runtime::Runtime;
use battleplan_orchestrator::kernel::scheduler::{Scheduler, Timing};
use chrono::{DateTime, Duration, Utc};

const CAMPAIGN: &str = "sept-festival-2026";
/// The warm-up starts: its mail reach-outs are due (no quotas, no quiet hours).
const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
/// The warm-up's last instant: its reach-outs' window closes after it.
const WARM_UP_END: &str = "2026-09-02T00:00:00+08:00";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The example plan without mail quotas and quiet hours, with `extra` added to its mail
/// channel; six customers of the reps' own lists (the warm-up's `warm-up-own-lists` mails them
/// all at its start).
struct Sale {
    runtime: Runtime,
    clock: Arc<ManualClock>,
    channel: Arc<MemoryChannel>,
    scheduler: Scheduler,
    _files: tempfile::TempDir,
}

async fn sale(extra: &str, script: impl FnOnce(&MemoryChannel)) -> Sale {
    let clock = Arc::new(ManualClock::new(at("2026-08-01T00:00:00Z")));
    let runtime = Runtime::new(
        Arc::new(MemoryEventLog::default()),
        clock.clone(),
        Arc::new(SeededIds::new(7)),
    );
    let mut plan = EXAMPLE_PLAN.to_string();
    for (from, to) in [
        (
            "free_per_day = 200          # the first 200 a day are free\n",
            "",
        ),
        (
            "daily_cap = 2000            # the platform's initial cap\n",
            "",
        ),
        ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
        (
            "quiet_hours = { start = \"22:00\", end = \"08:00\", policy = \"hold\" }\n",
            "",
        ),
        ("monthly_budget = 100.00\n", ""),
    ] {
        assert!(plan.contains(from), "{from}");
        plan = plan.replacen(from, to, 1);
    }
    plan = plan.replacen(
        "accounts = [\"shop-mail\"]\n",
        &format!("accounts = [\"shop-mail\"]\n{extra}"),
        1,
    );
    let applied = app::execute(
        &runtime,
        Request::ApplyPlan {
            file_name: "plan.toml".to_string(),
            source: plan,
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
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("customers.csv");
    let mut csv = String::from("id,name,email,source\n");
    for n in 1..=6 {
        csv.push_str(&format!("c-{n},Buyer {n},c{n}@example.com,own_list\n"));
    }
    std::fs::write(&path, csv).unwrap();
    clock.set(at("2026-08-20T00:00:00Z"));
    let imported = app::execute(
        &runtime,
        Request::Import(ImportRequest {
            kind: ImportKind::Customers,
            path,
            file_name: "customers.csv".to_string(),
            format: Format::Csv,
            skip_bad_rows: false,
            actor: "mei".to_string(),
        }),
    )
    .await;
    assert!(matches!(imported, Ok(Response::Import(_))), "{imported:?}");
    let channel = Arc::new(MemoryChannel::new());
    script(&channel);
    let mut scheduler = Scheduler::new(runtime.clone(), Timing::Simulated(clock.clone()), None)
        .with_outbox(channel.clone());
    scheduler.start().await.unwrap();
    Sale {
        runtime,
        clock,
        channel,
        scheduler,
        _files: files,
    }
}

impl Sale {
    /// The mail channel as `outbox` shows it.
    async fn mail(&self) -> ChannelGuardView {
        let answer = app::execute(
            &self.runtime,
            Request::Outbox(OutboxQuestion {
                campaign: CAMPAIGN.to_string(),
                reach_out: None,
                customers: false,
            }),
        )
        .await;
        let Ok(Response::Outbox(view)) = answer else {
            panic!("{answer:?}");
        };
        view.channels
            .into_iter()
            .find(|channel| channel.id == "mail")
            .unwrap()
    }

    async fn until(&mut self, instant: DateTime<Utc>) {
        self.scheduler.advance_to(instant).await.unwrap();
    }

    async fn events(&self) -> Vec<RecordedEvent> {
        self.runtime
            .store
            .read_all(Position::START, 1_000_000)
            .await
            .unwrap()
    }

    async fn outreach(&self) -> Vec<OutreachEvent> {
        self.events()
            .await
            .iter()
            .filter_map(|event| OutreachEvent::decode(event).unwrap())
            .collect()
    }

    /// Of the warm-up's mail to the own lists, what arrived, by customer and how many times.
    fn arrived(&self) -> BTreeMap<String, usize> {
        let mut arrived = BTreeMap::new();
        for message in self.channel.arrived() {
            if message.reach_out.as_deref() == Some("warm-up-own-lists") {
                *arrived.entry(message.to).or_default() += 1;
            }
        }
        arrived
    }

    fn handed(&self, customer: &str) -> usize {
        let key = format!("{CAMPAIGN}/warm-up-own-lists/{customer}/1");
        self.channel
            .handed()
            .iter()
            .filter(|handed| **handed == key)
            .count()
    }
}

fn customers(names: &[&str]) -> BTreeMap<String, usize> {
    names.iter().map(|name| (name.to_string(), 1)).collect()
}

#[tokio::test]
async fn a_deferred_send_goes_again_at_its_retry_with_the_same_key_and_once() {
    let mut sale = sale("", |channel| {
        let defer = Scripted::Defer {
            retry_after_ms: None,
        };
        channel.script("c-2", [defer.clone(), defer]);
        // A server that asked for a retry in ten minutes (a 429 with Retry-After).
        channel.script(
            "c-3",
            [Scripted::Defer {
                retry_after_ms: Some(600_000),
            }],
        );
    })
    .await;
    sale.until(at(WARM_UP)).await;
    // The others went at once; c-2 and c-3 were deferred, recorded with their retry instants.
    assert_eq!(sale.arrived(), customers(&["c-1", "c-4", "c-5", "c-6"]));
    let deferred: Vec<(String, u32, DateTime<Utc>)> = sale
        .outreach()
        .await
        .into_iter()
        .filter_map(|event| match event {
            OutreachEvent::DeliveryDeferred(d) => Some((d.customer, d.tries, d.retry_at)),
            _ => None,
        })
        .collect();
    let start = at(WARM_UP);
    assert_eq!(deferred.len(), 2, "{deferred:?}");
    let (customer, tries, retry_at) = &deferred[0];
    assert_eq!((customer.as_str(), *tries), ("c-2", 1));
    // One minute, lengthened by at most a fifth.
    assert!(
        *retry_at >= start + Duration::seconds(60) && *retry_at <= start + Duration::seconds(72),
        "{retry_at}"
    );
    assert_eq!(deferred[1].0, "c-3");
    assert_eq!(
        deferred[1].2,
        start + Duration::minutes(10),
        "Retry-After kept"
    );
    // Then c-2 is deferred a second time (two minutes on), and goes at the third try; c-3 at
    // its retry.
    sale.until(start + Duration::minutes(30)).await;
    assert_eq!(
        sale.arrived(),
        customers(&["c-1", "c-2", "c-3", "c-4", "c-5", "c-6"])
    );
    assert_eq!(sale.handed("c-2"), 3);
    assert_eq!(sale.handed("c-3"), 2);
    let outreach = sale.outreach().await;
    let tries: Vec<u32> = outreach
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::DeliveryDeferred(d) if d.customer == "c-2" => Some(d.tries),
            _ => None,
        })
        .collect();
    assert_eq!(tries, [1, 2]);
    let sent = outreach
        .iter()
        .filter(|event| matches!(event, OutreachEvent::MessageSent(m) if m.reach_out.as_deref() == Some("warm-up-own-lists")))
        .count();
    assert_eq!(sent, 6, "each recorded as sent once");
    let mail = sale.mail().await;
    assert_eq!((mail.state, mail.retrying), (ChannelState::Sending, 0));
    assert_eq!(mail.retrying_since, None);
    // explain tells the customer's story: each try deferred, with the server's answer, then sent.
    let explained = app::execute(
        &sale.runtime,
        Request::Explain(ExplainQuestion {
            campaign: CAMPAIGN.to_string(),
            customer: "c-2".to_string(),
            as_of: None,
        }),
    )
    .await;
    let Ok(Response::Explain(view)) = explained else {
        panic!("{explained:?}");
    };
    let story: Vec<(String, String, Option<String>)> = view
        .entries
        .into_iter()
        .filter(|entry| entry.reach_out.as_deref() == Some("warm-up-own-lists"))
        .map(|entry| (entry.what, entry.summary, entry.why))
        .collect();
    let whats: Vec<&str> = story.iter().map(|(what, _, _)| what.as_str()).collect();
    assert_eq!(
        whats,
        ["planned", "deferred", "deferred", "sent"],
        "{story:#?}"
    );
    assert!(story[1].1.contains("(try 1)"), "{story:#?}");
    assert!(story[2].1.contains("(try 2)"), "{story:#?}");
    assert_eq!(story[1].2.as_deref(), Some("451 4.3.0 try again later"));
}

#[tokio::test]
async fn a_send_deferred_until_its_window_closes_is_undelivered() {
    let mut sale = sale("", |channel| {
        channel.script(
            "c-4",
            std::iter::repeat_n(
                Scripted::Defer {
                    retry_after_ms: None,
                },
                1_000,
            ),
        );
    })
    .await;
    sale.until(at(WARM_UP_END) + Duration::hours(1)).await;
    assert_eq!(
        sale.arrived(),
        customers(&["c-1", "c-2", "c-3", "c-5", "c-6"])
    );
    let outreach = sale.outreach().await;
    let given_up: Vec<(String, NotSentReason)> = outreach
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::NotSent(n) if n.reach_out == "warm-up-own-lists" => {
                Some((n.customer.clone(), n.reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(given_up, [("c-4".to_string(), NotSentReason::Undelivered)]);
    // Tried again within the window with a growing wait, never after it.
    let deferrals: Vec<DateTime<Utc>> = outreach
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::DeliveryDeferred(d) => Some(d.retry_at),
            _ => None,
        })
        .collect();
    assert!(deferrals.len() > 5, "{}", deferrals.len());
    assert!(deferrals.windows(2).all(|pair| pair[0] < pair[1]));
}

#[tokio::test]
async fn a_refused_address_is_a_hard_bounce_and_a_refused_message_is_not() {
    let mut sale = sale("", |channel| {
        channel.script("c-2", [Scripted::Refuse(Refusal::Recipient)]);
        channel.script("c-5", [Scripted::Refuse(Refusal::Message)]);
    })
    .await;
    sale.until(at(WARM_UP) + Duration::hours(1)).await;
    assert_eq!(sale.arrived(), customers(&["c-1", "c-3", "c-4", "c-6"]));
    // Refused once, never handed over again.
    assert_eq!(sale.handed("c-2"), 1);
    assert_eq!(sale.handed("c-5"), 1);
    let events = sale.events().await;
    let mut refused = BTreeMap::new();
    let mut bounced = Vec::new();
    for event in &events {
        if let Some(OutreachEvent::NotSent(n)) = OutreachEvent::decode(event).unwrap() {
            if n.reason == NotSentReason::Refused {
                refused.insert(n.customer.clone(), n.detail.clone().unwrap_or_default());
            }
        }
        if let Some(CustomerEvent::OutcomeRecorded(outcome)) = CustomerEvent::decode(event).unwrap()
        {
            bounced.push((outcome.customer, outcome.outcome, outcome.message));
        }
    }
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused["c-2"].starts_with("recipient: 550"), "{refused:?}");
    assert!(refused["c-5"].starts_with("message: "), "{refused:?}");
    assert_eq!(
        bounced,
        [(
            "c-2".to_string(),
            OutcomeKind::Bounced,
            Some(format!("{CAMPAIGN}/warm-up-own-lists/c-2/1"))
        )]
    );
    // The bounce reached the customer book: no later mail goes to that address.
    battleplan_orchestrator::kernel::dispatcher::catch_up(&sale.runtime)
        .await
        .unwrap();
    let book = sale.runtime.customers.lock().await;
    assert!(!book.get("c-2").unwrap().email_ok);
    assert!(
        book.get("c-5").unwrap().email_ok,
        "a refused message says nothing of the address"
    );
}

#[tokio::test]
async fn no_answer_counts_as_sent_unconfirmed_unless_the_plan_says_resend() {
    // The default: counted as sent, never handed over again.
    let mut kept = sale("", |channel| channel.script("c-3", [Scripted::NoAnswer])).await;
    kept.until(at(WARM_UP) + Duration::hours(1)).await;
    assert_eq!(kept.handed("c-3"), 1);
    let unconfirmed: Vec<String> = kept
        .outreach()
        .await
        .into_iter()
        .filter_map(|event| match event {
            OutreachEvent::MessageSent(m) if m.unconfirmed => Some(m.to),
            _ => None,
        })
        .collect();
    assert_eq!(unconfirmed, ["c-3"]);
    // `unknown_outcome = "resend"`: handed over again with the same key; the twin, which got it
    // the first time, knows the key, and it is recorded as sent once, a duplicate.
    let mut resent = sale("unknown_outcome = \"resend\"\n", |channel| {
        channel.script("c-3", [Scripted::NoAnswer])
    })
    .await;
    resent.until(at(WARM_UP) + Duration::hours(1)).await;
    assert_eq!(resent.handed("c-3"), 2);
    assert_eq!(resent.arrived()["c-3"], 1);
    let sent: Vec<(bool, bool)> = resent
        .outreach()
        .await
        .into_iter()
        .filter_map(|event| match event {
            OutreachEvent::MessageSent(m) if m.to == "c-3" => Some((m.duplicate, m.unconfirmed)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [(true, false)]);
}

#[tokio::test]
async fn a_failure_that_needs_a_person_pauses_the_channel_and_loses_nothing() {
    let mut sale = sale("", |channel| {
        channel.fail_next_batch("mail", "connection refused by 127.0.0.1:2525", true)
    })
    .await;
    sale.until(at(WARM_UP) + Duration::hours(6)).await;
    assert!(sale.arrived().is_empty(), "{:?}", sale.arrived());
    let outreach = sale.outreach().await;
    let paused: Vec<Option<String>> = outreach
        .iter()
        .filter_map(|event| match event {
            OutreachEvent::ChannelPaused(p) => Some(p.failure.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        paused,
        [Some("connection refused by 127.0.0.1:2525".to_string())]
    );
    let notice = outreach
        .iter()
        .find_map(|event| match event {
            OutreachEvent::NoticePlanned(n) => Some(n.clone()),
            _ => None,
        })
        .expect("ops are told");
    assert_eq!(notice.role, "ops");
    assert!(
        notice.body.contains("connection refused"),
        "{}",
        notice.body
    );
    assert!(
        notice.body.contains("battleplan channel resume"),
        "{}",
        notice.body
    );
    // Held while paused: nothing handed over again after the failed batch.
    assert_eq!(sale.handed("c-1"), 0);
    // A person resumes the channel: everything goes, once.
    let resumed = app::execute(
        &sale.runtime,
        Request::ChannelResume {
            campaign: CAMPAIGN.to_string(),
            channel: "mail".to_string(),
            actor: "li.na".to_string(),
            reason: "the relay is back".to_string(),
            command_id: None,
        },
    )
    .await;
    assert!(resumed.is_ok(), "{resumed:?}");
    let now = sale.clock.now();
    sale.until(now + Duration::hours(1)).await;
    assert_eq!(
        sale.arrived(),
        customers(&["c-1", "c-2", "c-3", "c-4", "c-5", "c-6"])
    );
    assert_eq!(sale.mail().await.state, ChannelState::Sending);
}

/// The dispatcher folds the events it records into its projections without reading them back;
/// what it folds is what the log gives a reader: a daemon whose clock has nanoseconds answers
/// `outbox --customers` exactly as a process that caught up from the log (which keeps
/// microseconds), deferred retries, sends and follow-ups included.
#[tokio::test]
async fn projections_fed_by_the_dispatcher_are_those_the_log_gives() {
    let mut sale = sale("", |channel| {
        channel.script(
            "c-2",
            [Scripted::Defer {
                retry_after_ms: None,
            }],
        );
    })
    .await;
    let odd = at(WARM_UP) + Duration::nanoseconds(123_456_789);
    sale.clock.set(odd);
    sale.until(odd).await;
    sale.until(odd + Duration::minutes(5) + Duration::nanoseconds(987))
        .await;
    let question = || {
        Request::Outbox(OutboxQuestion {
            campaign: CAMPAIGN.to_string(),
            reach_out: None,
            customers: true,
        })
    };
    let live = app::execute(&sale.runtime, question()).await;
    let fresh = Runtime::new(
        sale.runtime.store.clone(),
        sale.clock.clone(),
        Arc::new(SeededIds::new(8)),
    );
    let replayed = app::execute(&fresh, question()).await;
    let (Ok(Response::Outbox(live)), Ok(Response::Outbox(replayed))) = (live, replayed) else {
        panic!("outbox answered");
    };
    let rows = live.customers.as_ref().map_or(0, Vec::len);
    assert!(rows >= 6, "{live:?}");
    assert!(
        live.customers
            .iter()
            .flatten()
            .any(|row| row.at.as_deref().is_some_and(|at| at.contains(".123456"))),
        "the odd instant is on some row: {live:?}"
    );
    assert_eq!(
        serde_json::to_value(&live).unwrap(),
        serde_json::to_value(&replayed).unwrap()
    );
}
