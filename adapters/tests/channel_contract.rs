//! The channel contract: every channel behind the port keeps the same promises, and this suite
//! holds each of them to it (the file outbox, the in-memory twin; the real channels join as they
//! come):
//! - the same key handed over twice arrives once, the second time answered `AlreadySent`;
//! - a batch that fails as a whole counts nothing as sent, and handed over again it arrives once;
//! - a batch arrives in its order.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use battleplan_adapters::outbox::FileOutbox;
use battleplan_adapters::MemoryChannel;
use battleplan_core::outreach::port::{Channel, Delivery, Message};
use battleplan_core::plan::model::ChannelKind;
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
        vec![Delivery::AlreadySent, Delivery::Sent, Delivery::AlreadySent]
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
    assert!(subject.channel().deliver(&batch).await.is_err());
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

macro_rules! contract {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn the_same_key_twice_arrives_once() {
                super::the_same_key_twice_arrives_once(&$make).await;
            }

            #[tokio::test]
            async fn a_failed_batch_counts_nothing() {
                super::a_failed_batch_counts_nothing(&$make).await;
            }

            #[tokio::test]
            async fn a_batch_keeps_its_order() {
                super::a_batch_keeps_its_order(&$make).await;
            }
        }
    };
}

contract!(file_outbox, Files::new());
contract!(memory_twin, Twin(MemoryChannel::new()));
