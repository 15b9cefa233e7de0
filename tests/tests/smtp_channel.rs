//! The SMTP channel against a real SMTP server on loopback (aiosmtpd, `tests/smtp_server.py`),
//! each message parsed back by Python's standard `email` package: what arrives, and what each
//! reply of the server becomes (sent, deferred, refused recipient or message, no answer after
//! the data), and a server that refuses connections (a failure that needs a person).
//!
//! The server needs a Python with aiosmtpd: `BATTLEPLAN_SMTP_PYTHON`, or
//! `target/smtp-venv/bin/python` (`.ci/run` makes it). Without one, each test fails when
//! `CI=true` and otherwise says loudly that it skipped and how to run it.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use battleplan_adapters::smtp::{SmtpChannel, SmtpSettings, SmtpTls, UnsubscribeLinks};
use battleplan_core::outreach::links;
use battleplan_core::outreach::port::{Channel, Delivery, Message, Refusal};
use battleplan_core::plan::model::ChannelKind;
use battleplan_tests::smtp::{header, python, SmtpServer};
use chrono::{DateTime, Utc};

const KEY: [u8; 32] = [42; 32];

fn channel(port: u16, connections: usize, timeout: Duration) -> SmtpChannel {
    SmtpChannel::new(SmtpSettings {
        host: "127.0.0.1".to_string(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        from: "Shop 商城 <shop@example.com>".to_string(),
        reply_to: Some("sales@example.com".to_string()),
        connections,
        per_second: None,
        timeout,
        domain: "mail.example.com".to_string(),
        unsubscribe: Some(UnsubscribeLinks {
            base: "http://127.0.0.1:8080/api/v1".to_string(),
            key: KEY,
        }),
    })
    .unwrap()
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-08-26T10:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn message(customer: &str, address: &str) -> Message {
    Message {
        key: format!("sept-festival-2026/warm-up-own-lists/{customer}/1"),
        campaign: "sept-festival-2026".to_string(),
        channel: "mail".to_string(),
        kind: ChannelKind::Mail,
        to: customer.to_string(),
        address: vec![address.to_string()],
        from: Some("shop-mail".to_string()),
        subject: Some(format!("九月采购节 starts, {customer}")),
        body: format!(
            "<p>Dear {customer} &amp; team,</p><p>The sale starts now.</p>\
             <p><a href=\"unsubscribe://sept-festival-2026/{customer}\">Unsubscribe</a></p>"
        ),
        template: Some("warm-up-mail".to_string()),
        template_version: Some(1),
        reach_out: Some("warm-up-own-lists".to_string()),
        attempt: Some(1),
        at: at(),
        document: None,
    }
}

#[tokio::test]
async fn messages_arrive_whole_with_their_headers_and_both_parts() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let channel = channel(server.port, 4, Duration::from_secs(10));
    // A reach-out of 2,000 customers, in the dispatcher's batches of 500.
    let batch: Vec<Message> = (1..=2_000)
        .map(|n| message(&format!("c-{n:04}"), &format!("c{n}@example.com")))
        .collect();
    for part in batch.chunks(500) {
        let answers = channel.deliver(part).await.unwrap();
        assert_eq!(answers, vec![Delivery::Sent; part.len()]);
    }
    let arrived = server.arrived();
    assert_eq!(arrived.len(), 2_000);
    let mut customers: Vec<String> = Vec::new();
    for received in &arrived {
        let key = header(received, "X-Battleplan-Key").unwrap();
        let customer = key.split('/').nth(2).unwrap().to_string();
        let n: u32 = customer.trim_start_matches("c-").parse().unwrap();
        assert_eq!(customer, format!("c-{n:04}"));
        assert_eq!(received["rcpt_to"][0], format!("c{n}@example.com"));
        assert_eq!(
            header(received, "Message-ID"),
            Some(channel.message_id(key).as_str())
        );
        assert_eq!(
            header(received, "X-Battleplan-Campaign"),
            Some("sept-festival-2026")
        );
        assert_eq!(
            header(received, "X-Battleplan-Reach-Out"),
            Some("warm-up-own-lists")
        );
        assert_eq!(
            header(received, "Subject").unwrap(),
            format!("九月采购节 starts, {customer}")
        );
        assert_eq!(
            header(received, "From").unwrap(),
            "Shop 商城 <shop@example.com>"
        );
        assert_eq!(header(received, "Reply-To").unwrap(), "sales@example.com");
        // The one-click link, signed for this customer, in the header and in the body.
        let url = links::unsubscribe_url(
            "http://127.0.0.1:8080/api/v1",
            &KEY,
            "sept-festival-2026",
            &customer,
            ChannelKind::Mail,
        );
        assert_eq!(
            header(received, "List-Unsubscribe").unwrap(),
            format!("<{url}>")
        );
        assert_eq!(
            header(received, "List-Unsubscribe-Post").unwrap(),
            "List-Unsubscribe=One-Click"
        );
        let html = received["html"].as_str().unwrap();
        assert!(html.contains(&format!("href=\"{url}\"")), "{html}");
        assert!(!html.contains("unsubscribe://"), "{html}");
        let text = received["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!(
                "Dear {customer} & team,\n\nThe sale starts now.\n\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("Unsubscribe ({url})")), "{text}");
        customers.push(customer);
    }
    customers.sort();
    customers.dedup();
    assert_eq!(customers.len(), 2_000, "each customer once");
}

#[tokio::test]
async fn each_reply_of_the_server_answers_its_own_message() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    // One connection, so the stalled transaction's loss shows the next message a new one.
    let channel = channel(server.port, 1, Duration::from_secs(2));
    let batch = vec![
        message("c-ok", "ok@example.com"),
        message("c-busy", "defer1-busy@example.com"),
        message("c-gone", "unknown-gone@example.com"),
        message("c-spam", "reject-spam@example.com"),
        message("c-bad", "not an address"),
        message("c-stall", "stall-slow@example.com"),
        message("c-after", "after@example.com"),
    ];
    let answers = channel.deliver(&batch).await.unwrap();
    assert_eq!(answers[0], Delivery::Sent);
    assert!(
        matches!(&answers[1], Delivery::Deferred { detail, retry_after_ms: None } if detail.starts_with("451")),
        "{:?}",
        answers[1]
    );
    assert!(
        matches!(&answers[2], Delivery::Refused { refusal: Refusal::Recipient, detail } if detail.starts_with("550")),
        "{:?}",
        answers[2]
    );
    assert!(
        matches!(&answers[3], Delivery::Refused { refusal: Refusal::Message, detail } if detail.starts_with("554")),
        "{:?}",
        answers[3]
    );
    assert!(
        matches!(
            &answers[4],
            Delivery::Refused {
                refusal: Refusal::Recipient,
                ..
            }
        ),
        "{:?}",
        answers[4]
    );
    assert!(
        matches!(&answers[5], Delivery::Unknown { .. }),
        "{:?}",
        answers[5]
    );
    assert_eq!(answers[6], Delivery::Sent, "on a new connection");
    // What arrived: the one taken, the stalled one (the server had it), the one after.
    let arrived: Vec<String> = server
        .arrived()
        .iter()
        .map(|m| m["rcpt_to"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        arrived,
        [
            "ok@example.com",
            "stall-slow@example.com",
            "after@example.com"
        ]
    );
    // Handed over again, the deferred one is taken; the server keeps no keys, so a message
    // handed over twice arrives twice, with the same Message-ID.
    let again = channel
        .deliver(&[message("c-busy", "defer1-busy@example.com")])
        .await
        .unwrap();
    assert_eq!(again, vec![Delivery::Sent]);
    let resent = channel
        .deliver(&[message("c-ok", "ok@example.com")])
        .await
        .unwrap();
    assert_eq!(resent, vec![Delivery::Sent]);
    let arrived = server.arrived();
    let ids: Vec<&str> = arrived
        .iter()
        .filter(|m| m["rcpt_to"][0] == "ok@example.com")
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_server_that_refuses_connections_needs_a_person() {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let channel = channel(port, 2, Duration::from_secs(2));
    let batch = vec![
        message("c-1", "c1@example.com"),
        message("c-2", "c2@example.com"),
    ];
    let error = channel.deliver(&batch).await.unwrap_err();
    assert!(error.pause, "{error}");
    assert!(error.detail.contains("cannot connect"), "{error}");
    assert_eq!(error.channel, "mail");
}

#[tokio::test]
async fn a_server_that_refuses_to_relay_for_us_needs_a_person_and_bounces_no_one() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let channel = channel(server.port, 1, Duration::from_secs(5));
    let batch = vec![
        message("c-1", "relay-c1@example.com"),
        message("c-2", "c2@example.com"),
    ];
    let error = channel.deliver(&batch).await.unwrap_err();
    assert!(error.pause, "{error}");
    assert!(error.detail.contains("550 5.7.1"), "{error}");
    assert!(
        server.arrived().is_empty(),
        "nothing went after the refusal"
    );
}
