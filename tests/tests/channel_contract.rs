//! The channel contract: every channel behind the port keeps the same promises, and this suite
//! holds each of them to it (the file outbox, the in-memory twin, mail over SMTP to a real
//! server, the webhook to a real receiver):
//! - the same key handed over twice arrives once, as far as the channel allows: the file outbox
//!   and the twin answer the second `AlreadySent`; SMTP and the webhook cannot know, and hand
//!   it over again with the same Message-ID or webhook-id, which the receiving side shows once;
//! - a batch that cannot go counts nothing as sent (it fails, or each message is deferred), and
//!   handed over again it arrives once;
//! - a batch arrives in its order (over one connection).
//!
//! The real channels need the Python `BATTLEPLAN_SMTP_PYTHON` names (`.ci/run` makes it): they
//! fail under `CI=true` without it, and otherwise say they skipped.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use battleplan_adapters::outbox::FileOutbox;
use battleplan_adapters::smtp::{SmtpChannel, SmtpSettings, SmtpTls};
use battleplan_adapters::webhook::{parse_secret, WebhookChannel, WebhookSettings};
use battleplan_adapters::MemoryChannel;
use battleplan_core::outreach::port::{Channel, Delivery, Message};
use battleplan_core::plan::model::ChannelKind;
use battleplan_tests::smtp::{header, python, SmtpServer};
use battleplan_tests::webhook::{WebhookReceiver, SECRET};
use chrono::{DateTime, Utc};

/// A channel under test, with a way to read what arrived and to make its next batch fail.
trait Subject {
    fn channel(&self) -> &dyn Channel;
    /// The keys that arrived, in order.
    fn arrived(&self) -> Vec<String>;
    /// Arranges for the next batch to fail as a whole.
    fn break_next(&self);
    /// Takes the cause away again (a no-op where the failure passes by itself).
    fn mend(&self);
    /// What the channel answers for a key it was handed before.
    fn repeat(&self) -> Delivery {
        Delivery::AlreadySent
    }
}

struct Twin(MemoryChannel);

impl Subject for Twin {
    fn channel(&self) -> &dyn Channel {
        &self.0
    }
    fn arrived(&self) -> Vec<String> {
        self.0.arrived().into_iter().map(|m| m.key).collect()
    }
    fn break_next(&self) {
        self.0.fail_next_batch("mail", "connection refused", true);
    }
    fn mend(&self) {}
}

/// The file outbox in a directory whose channel file cannot be made while a plain file stands
/// where its directory should be: a real failure, no injection.
struct Files {
    _dir: tempfile::TempDir,
    outbox_dir: PathBuf,
    outbox: FileOutbox,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let outbox_dir = dir.path().join("outbox");
        Files {
            outbox: FileOutbox::new(&outbox_dir),
            outbox_dir,
            _dir: dir,
        }
    }
}

impl Subject for Files {
    fn channel(&self) -> &dyn Channel {
        &self.outbox
    }
    fn arrived(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.outbox_dir.join("mail.jsonl")) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["key"].as_str().unwrap().to_string()
            })
            .collect()
    }
    fn break_next(&self) {
        // Only before the first delivery: the outbox keeps its file open afterwards.
        std::fs::write(&self.outbox_dir, b"not a directory").unwrap();
    }
    fn mend(&self) {
        std::fs::remove_file(&self.outbox_dir).unwrap();
    }
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-08-26T00:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn message(n: u32) -> Message {
    Message {
        key: format!("sept/warm-up/c-{n}/1"),
        campaign: "sept".to_string(),
        channel: "mail".to_string(),
        kind: ChannelKind::Mail,
        to: format!("c-{n}"),
        address: vec![format!("c{n}@example.com")],
        from: Some("shop-mail".to_string()),
        subject: Some(format!("Hello {n}")),
        body: format!("<p>Hello {n}</p>"),
        template: Some("warm-up-mail".to_string()),
        template_version: Some(1),
        reach_out: Some("warm-up".to_string()),
        attempt: Some(1),
        at: at(),
        document: None,
    }
}

async fn the_same_key_twice_arrives_once(subject: &dyn Subject) {
    let first = vec![message(1), message(2)];
    let answers = subject.channel().deliver(&first).await.unwrap();
    assert_eq!(answers, vec![Delivery::Sent, Delivery::Sent]);
    let again = vec![message(2), message(3), message(1)];
    let answers = subject.channel().deliver(&again).await.unwrap();
    assert_eq!(
        answers,
        vec![subject.repeat(), Delivery::Sent, subject.repeat()]
    );
    assert_eq!(
        subject.arrived(),
        [
            "sept/warm-up/c-1/1",
            "sept/warm-up/c-2/1",
            "sept/warm-up/c-3/1"
        ]
    );
}

async fn a_failed_batch_counts_nothing(subject: &dyn Subject) {
    subject.break_next();
    let batch: Vec<Message> = (1..=5).map(message).collect();
    match subject.channel().deliver(&batch).await {
        Err(_) => {}
        Ok(answers) => assert!(
            answers
                .iter()
                .all(|answer| matches!(answer, Delivery::Deferred { .. })),
            "{answers:?}"
        ),
    }
    assert!(subject.arrived().is_empty(), "{:?}", subject.arrived());
    subject.mend();
    let answers = subject.channel().deliver(&batch).await.unwrap();
    assert_eq!(answers, vec![Delivery::Sent; 5]);
    assert_eq!(subject.arrived().len(), 5);
}

async fn a_batch_keeps_its_order(subject: &dyn Subject) {
    let batch: Vec<Message> = [7, 3, 9, 1, 5].into_iter().map(message).collect();
    subject.channel().deliver(&batch).await.unwrap();
    let keys: Vec<String> = batch.into_iter().map(|m| m.key).collect();
    assert_eq!(subject.arrived(), keys);
}

/// Mail over SMTP to a real server (aiosmtpd), one connection. What arrived is what a mail
/// client shows: one message per Message-ID. Broken: the server stopped (the connection
/// refused); mended: started again on its port.
struct Mail {
    python: PathBuf,
    port: u16,
    server: Mutex<Option<SmtpServer>>,
    channel: SmtpChannel,
}

impl Mail {
    fn new() -> Option<Mail> {
        let python = python()?;
        let server = SmtpServer::start(&python);
        let port = server.port;
        let channel = SmtpChannel::new(SmtpSettings {
            host: "127.0.0.1".to_string(),
            port,
            tls: SmtpTls::None,
            credentials: None,
            from: "Shop <shop@example.com>".to_string(),
            reply_to: None,
            connections: 1,
            per_second: None,
            timeout: Duration::from_secs(5),
            domain: "example.com".to_string(),
            unsubscribe: None,
        })
        .unwrap();
        Some(Mail {
            python,
            port,
            server: Mutex::new(Some(server)),
            channel,
        })
    }
}

impl Subject for Mail {
    fn channel(&self) -> &dyn Channel {
        &self.channel
    }
    fn arrived(&self) -> Vec<String> {
        let server = self.server.lock().unwrap();
        let Some(server) = server.as_ref() else {
            return Vec::new();
        };
        let mut shown = BTreeMap::new();
        let mut keys = Vec::new();
        for message in server.arrived() {
            let id = header(&message, "Message-ID").unwrap().to_string();
            let key = header(&message, "X-Battleplan-Key").unwrap().to_string();
            if shown.insert(id, ()).is_none() {
                keys.push(key);
            }
        }
        keys
    }
    fn break_next(&self) {
        *self.server.lock().unwrap() = None;
    }
    fn mend(&self) {
        *self.server.lock().unwrap() = Some(SmtpServer::start_on(&self.python, self.port));
    }
    fn repeat(&self) -> Delivery {
        Delivery::Sent
    }
}

/// The webhook to a real receiver that keeps the ids it took (as Standard Webhooks asks), one
/// connection. Broken: the receiver stopped; mended: started again on its port.
struct Hook {
    python: PathBuf,
    port: u16,
    receiver: Mutex<Option<WebhookReceiver>>,
    channel: WebhookChannel,
}

impl Hook {
    fn new() -> Option<Hook> {
        let python = python()?;
        let receiver = WebhookReceiver::start(&python, &BTreeMap::new());
        let port = receiver.port;
        let channel = WebhookChannel::new(WebhookSettings {
            url: receiver.url(),
            secret: parse_secret(SECRET).unwrap(),
            timeout: Duration::from_secs(5),
            connections: 1,
        })
        .unwrap();
        Some(Hook {
            python,
            port,
            receiver: Mutex::new(Some(receiver)),
            channel,
        })
    }
}

impl Subject for Hook {
    fn channel(&self) -> &dyn Channel {
        &self.channel
    }
    fn arrived(&self) -> Vec<String> {
        self.receiver
            .lock()
            .unwrap()
            .as_ref()
            .map(WebhookReceiver::taken)
            .unwrap_or_default()
    }
    fn break_next(&self) {
        *self.receiver.lock().unwrap() = None;
    }
    fn mend(&self) {
        *self.receiver.lock().unwrap() = Some(WebhookReceiver::start_on(
            &self.python,
            &BTreeMap::new(),
            self.port,
        ));
    }
    fn repeat(&self) -> Delivery {
        Delivery::Sent
    }
}

macro_rules! contract {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn the_same_key_twice_arrives_once() {
                let Some(subject) = $make else { return };
                super::the_same_key_twice_arrives_once(&subject).await;
            }

            #[tokio::test]
            async fn a_failed_batch_counts_nothing() {
                let Some(subject) = $make else { return };
                super::a_failed_batch_counts_nothing(&subject).await;
            }

            #[tokio::test]
            async fn a_batch_keeps_its_order() {
                let Some(subject) = $make else { return };
                super::a_batch_keeps_its_order(&subject).await;
            }
        }
    };
}

contract!(file_outbox, Some(Files::new()));
contract!(memory_twin, Some(Twin(MemoryChannel::new())));
contract!(mail_over_smtp, Mail::new());
contract!(webhook, Hook::new());
