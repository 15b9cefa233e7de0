//! The webhook channel (`adapters::webhook`) against a real receiver on loopback
//! (`tests/webhook_receiver.py`), which checks every signature with the `standardwebhooks`
//! package from PyPI, an implementation independent of ours:
//! - every request verifies, carries the key as `webhook-id` and the documented body;
//! - the receiver's answers are read as the port says: 500 and 429 (with its `Retry-After`)
//!   deferred, then taken on a later attempt; 410 gone; 400 refused; no answer deferred once the
//!   timeout passes; a receiver that is not there deferred;
//! - the contract: the same key handed over twice is taken once by a receiver that keeps ids,
//!   a batch goes in its order over one connection, and a signature under another secret is
//!   refused by the receiver.
//!
//! Needs the Python `BATTLEPLAN_SMTP_PYTHON` names (aiosmtpd and standardwebhooks; `.ci/run`
//! makes it): fails under `CI=true` without it, else says it skipped.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use battleplan_adapters::webhook::{parse_secret, WebhookChannel, WebhookSettings};
use battleplan_core::outreach::port::{Channel, Delivery, Message, Refusal};
use battleplan_core::plan::model::ChannelKind;
use battleplan_tests::smtp::python;
use battleplan_tests::webhook::{WebhookReceiver, SECRET};

fn message(customer: &str) -> Message {
    Message {
        key: format!("sept/visitor-coupons/{customer}/1"),
        campaign: "sept".to_string(),
        channel: "in-site".to_string(),
        kind: ChannelKind::InSite,
        to: customer.to_string(),
        address: vec![customer.to_string()],
        from: Some("wang.wei".to_string()),
        subject: None,
        body: format!("Thanks for visiting, {customer} <b>&</b> \"friends\"! 满300减50"),
        template: Some("in-site-visitor-coupon".to_string()),
        template_version: Some(2),
        reach_out: Some("visitor-coupons".to_string()),
        attempt: Some(1),
        at: chrono::DateTime::parse_from_rfc3339("2026-08-26T09:00:00+08:00")
            .unwrap()
            .with_timezone(&chrono::Utc),
        document: None,
    }
}

fn channel(url: &str, secret: &str, connections: usize, timeout: Duration) -> WebhookChannel {
    WebhookChannel::new(WebhookSettings {
        url: url.to_string(),
        secret: parse_secret(secret).unwrap(),
        timeout,
        connections,
    })
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_request_verifies_and_carries_the_key_and_the_documented_body() {
    let Some(python) = python() else { return };
    let receiver = WebhookReceiver::start(&python, &BTreeMap::new());
    let hook = channel(&receiver.url(), SECRET, 4, Duration::from_secs(10));
    let batch: Vec<Message> = (1..=60).map(|n| message(&format!("c-{n:04}"))).collect();
    let answers = runtime().block_on(hook.deliver(&batch)).unwrap();
    assert_eq!(answers, vec![Delivery::Sent; 60]);
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 60);
    for attempt in &attempts {
        assert_eq!(attempt["verified"], true, "{attempt}");
        let body = &attempt["body"];
        assert_eq!(body["type"], "battleplan.message");
        assert_eq!(body["timestamp"], "2026-08-26T01:00:00.000Z");
        let data = &body["data"];
        assert_eq!(attempt["id"], data["key"], "webhook-id is the key");
        let customer = data["customer"].as_str().unwrap();
        assert_eq!(
            data["body"].as_str().unwrap(),
            format!("Thanks for visiting, {customer} <b>&</b> \"friends\"! 满300减50")
        );
        assert_eq!(data["campaign"], "sept");
        assert_eq!(data["reach_out"], "visitor-coupons");
        assert_eq!(data["channel"], "in-site");
        assert_eq!(data["kind"], "in_site");
        assert_eq!(data["account"], "wang.wei");
        assert_eq!(data["template"], "in-site-visitor-coupon");
        assert_eq!(data["template_version"], 2);
        assert_eq!(data["attempt"], 1);
    }
    let mut taken = receiver.taken();
    taken.sort();
    let mut keys: Vec<String> = batch.iter().map(|m| m.key.clone()).collect();
    keys.sort();
    assert_eq!(taken, keys);
}

#[test]
fn each_answer_is_read_as_the_port_says() {
    let Some(python) = python() else { return };
    let faults: BTreeMap<String, String> = [
        ("c-500", "500x2"),
        ("c-429", "429x1"),
        ("c-410", "410"),
        ("c-400", "400"),
        ("c-hang", "hangx1"),
    ]
    .into_iter()
    .map(|(customer, fault)| (customer.to_string(), fault.to_string()))
    .collect();
    let receiver = WebhookReceiver::start(&python, &faults);
    let hook = channel(&receiver.url(), SECRET, 4, Duration::from_secs(1));
    let batch: Vec<Message> = ["c-ok", "c-500", "c-429", "c-410", "c-400", "c-hang"]
        .into_iter()
        .map(message)
        .collect();
    let runtime = runtime();
    let first = runtime.block_on(hook.deliver(&batch)).unwrap();
    assert_eq!(first[0], Delivery::Sent);
    assert!(
        matches!(&first[1], Delivery::Deferred { detail, retry_after_ms: None } if detail.starts_with("500")),
        "{:?}",
        first[1]
    );
    assert!(
        matches!(&first[2], Delivery::Deferred { detail, retry_after_ms: Some(1000) } if detail.starts_with("429")),
        "{:?}",
        first[2]
    );
    assert!(
        matches!(&first[3], Delivery::Refused { refusal: Refusal::Gone, detail } if detail.starts_with("410")),
        "{:?}",
        first[3]
    );
    assert!(
        matches!(&first[4], Delivery::Refused { refusal: Refusal::Message, detail } if detail.starts_with("400")),
        "{:?}",
        first[4]
    );
    assert!(
        matches!(&first[5], Delivery::Deferred { detail, .. } if detail.contains("no answer within 1 s")),
        "{:?}",
        first[5]
    );
    // The deferred ones handed over again: the 500 once more, then all taken.
    let again: Vec<Message> = [1, 2, 5].iter().map(|&i| batch[i].clone()).collect();
    let second = runtime.block_on(hook.deliver(&again)).unwrap();
    assert!(matches!(second[0], Delivery::Deferred { .. }), "{second:?}");
    assert_eq!(second[1..], [Delivery::Sent, Delivery::Sent]);
    let third = runtime.block_on(hook.deliver(&again[..1])).unwrap();
    assert_eq!(third, [Delivery::Sent]);
    // Every attempt reached the receiver, signed, and each message was taken once.
    let attempts = receiver.attempts();
    let per_customer = |customer: &str| {
        attempts
            .iter()
            .filter(|attempt| attempt["customer"] == customer)
            .map(|attempt| attempt["status"].as_u64())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        per_customer("c-500"),
        [Some(500), Some(500), Some(200)],
        "{attempts:?}"
    );
    assert_eq!(per_customer("c-429"), [Some(429), Some(200)]);
    assert_eq!(per_customer("c-410"), [Some(410)]);
    assert_eq!(per_customer("c-hang"), [None, Some(200)]);
    assert!(attempts.iter().all(|attempt| attempt["verified"] == true));
    let mut taken = receiver.taken();
    taken.sort();
    assert_eq!(
        taken,
        [
            "sept/visitor-coupons/c-429/1",
            "sept/visitor-coupons/c-500/1",
            "sept/visitor-coupons/c-hang/1",
            "sept/visitor-coupons/c-ok/1"
        ]
    );
}

#[test]
fn the_contract_once_per_key_in_order_and_only_under_the_secret() {
    let Some(python) = python() else { return };
    let receiver = WebhookReceiver::start(&python, &BTreeMap::new());
    let hook = channel(&receiver.url(), SECRET, 1, Duration::from_secs(10));
    let runtime = runtime();
    // In order over one connection.
    let batch: Vec<Message> = ["c-7", "c-3", "c-9", "c-1", "c-5"]
        .into_iter()
        .map(message)
        .collect();
    assert_eq!(
        runtime.block_on(hook.deliver(&batch)).unwrap(),
        vec![Delivery::Sent; 5]
    );
    let keys: Vec<String> = batch.iter().map(|m| m.key.clone()).collect();
    assert_eq!(receiver.taken(), keys);
    // The same keys again (a resend after a crash): the receiver takes none of them twice.
    assert_eq!(
        runtime.block_on(hook.deliver(&batch[..2])).unwrap(),
        vec![Delivery::Sent; 2]
    );
    assert_eq!(receiver.taken(), keys);
    let duplicates = receiver
        .attempts()
        .iter()
        .filter(|attempt| attempt["duplicate"] == true)
        .count();
    assert_eq!(duplicates, 2);
    // Signed under another secret: the receiver refuses it, and so it is not sent.
    let forged = channel(
        &receiver.url(),
        "whsec_c29tZSBvdGhlciBzZWNyZXQgYnl0ZXM=",
        1,
        Duration::from_secs(10),
    );
    let answer = runtime.block_on(forged.deliver(&[message("c-2")])).unwrap();
    assert!(
        matches!(&answer[0], Delivery::Refused { refusal: Refusal::Message, detail } if detail.starts_with("401")),
        "{answer:?}"
    );
    assert_eq!(receiver.taken(), keys);
}

#[test]
fn a_receiver_that_is_not_there_defers_every_message() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = channel(
        &format!("http://127.0.0.1:{port}/hooks"),
        SECRET,
        1,
        Duration::from_secs(5),
    );
    let batch: Vec<Message> = ["c-1", "c-2", "c-3"].into_iter().map(message).collect();
    let answers = runtime().block_on(hook.deliver(&batch)).unwrap();
    // The first tried; after as many silences in a row as connections, the rest are not.
    assert!(
        matches!(&answers[0], Delivery::Deferred { detail, retry_after_ms: None } if detail.starts_with("no answer: cannot connect")),
        "{answers:?}"
    );
    for answer in &answers[1..] {
        assert!(
            matches!(answer, Delivery::Deferred { detail, .. } if detail.starts_with("not tried")),
            "{answer:?}"
        );
    }
}

#[test]
fn a_receiver_that_hangs_holds_up_only_a_few_requests_of_a_batch() {
    let Some(python) = python() else { return };
    let faults: BTreeMap<String, String> = [("c-hang".to_string(), "hang".to_string())].into();
    let receiver = WebhookReceiver::start(&python, &faults);
    let hook = channel(&receiver.url(), SECRET, 4, Duration::from_secs(1));
    let batch: Vec<Message> = (0..20)
        .map(|n| Message {
            key: format!("sept/visitor-coupons/c-hang/{n}"),
            ..message("c-hang")
        })
        .collect();
    let answers = runtime().block_on(hook.deliver(&batch)).unwrap();
    assert!(answers
        .iter()
        .all(|answer| matches!(answer, Delivery::Deferred { .. })));
    // Four at once time out together; a few more may start as the first come back.
    let tried = receiver.attempts().len();
    assert!((4..=8).contains(&tried), "{tried} of 20 tried");
    let not_tried = answers
        .iter()
        .filter(|answer| matches!(answer, Delivery::Deferred { detail, .. } if detail.starts_with("not tried")))
        .count();
    assert_eq!(not_tried, 20 - tried);
}

#[test]
fn a_plain_http_webhook_is_only_for_this_machine_and_the_secret_is_never_shown() {
    let refused = WebhookChannel::new(WebhookSettings {
        url: "http://hooks.example.com/battleplan".to_string(),
        secret: parse_secret(SECRET).unwrap(),
        timeout: Duration::from_secs(1),
        connections: 1,
    })
    .unwrap_err();
    assert!(refused.to_string().contains("plain http"), "{refused}");
    let hook = channel(
        "https://hooks.example.com/battleplan",
        SECRET,
        1,
        Duration::from_secs(1),
    );
    let shown = format!("{hook:?}");
    assert!(!shown.contains("MfKQ9r8"), "{shown}");
}
