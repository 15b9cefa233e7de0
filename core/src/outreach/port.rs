//! The channel port: where the dispatcher hands messages over. Every message carries its
//! idempotency key; a channel that remembers keys (the file outbox, a mail API that accepts
//! them) sends each key once however often it is handed the message, which closes the one
//! window a crash leaves open (sent, `MessageSent` not yet recorded).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::plan::model::ChannelKind;

/// A whole document beside a message's text, for a message to staff that has one (the weekly
/// report): a group robot posts its Markdown as it is, a mail its HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Document {
    pub markdown: String,
    pub html: String,
}

/// One rendered message, ready to go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The idempotency key.
    pub key: String,
    pub campaign: String,
    /// The plan's channel id (`mail`, `in-site`), or `staff` for messages to the team.
    pub channel: String,
    pub kind: ChannelKind,
    /// The customer id, or the staff role.
    pub to: String,
    /// The mail address, or the role's members for staff.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<String>,
    /// The sending account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach_out: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The instant it was decided to go.
    pub at: DateTime<Utc>,
    /// Its document, when it has one (see [`Document`]); the file outbox keeps the text.
    #[serde(skip)]
    pub document: Option<Document>,
}

/// What a channel did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The channel already had this key: sent before, not again.
    AlreadySent,
    /// The receiving side refused this message for good (a mail server's 5xx for the
    /// recipient, a webhook's 4xx): it is not sent and is not tried again.
    Refused {
        refusal: Refusal,
        detail: String,
    },
    /// The receiving side did not take it this time and may later (a mail server's 4xx, a
    /// webhook's 5xx or 429, a timeout before the message was handed over): try again, not
    /// before `retry_after_ms` when the server said so.
    Deferred {
        detail: String,
        retry_after_ms: Option<u64>,
    },
    /// Handed over and no answer came (a mail server that stalls after the message's data):
    /// it may or may not have arrived. The plan says whether to hand it over again.
    Unknown {
        detail: String,
    },
}

/// Why a receiving side refused a message for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address does not exist (a hard bounce: the customer's address is bad).
    Recipient,
    /// The message was refused (its content, a policy), not the address.
    Message,
    /// The receiver is gone for good (a webhook's 410).
    Gone,
}

impl Refusal {
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Recipient => "recipient",
            Refusal::Message => "message",
            Refusal::Gone => "gone",
        }
    }
}

/// A whole batch failed: nothing of it was taken.
#[derive(Debug, thiserror::Error)]
#[error("channel {channel}: {detail}")]
pub struct ChannelError {
    pub channel: String,
    pub detail: String,
    /// Whether the failure needs a person (the server refuses connections, the credentials
    /// are refused): the channel is paused and ops are told, until `channel resume`. Otherwise
    /// (a full disk, a passing fault) the batch is handed over again later by itself.
    pub pause: bool,
}

/// A channel's adapter. `deliver` hands over a batch in order and answers each message, one
/// answer per message. On an error none of the batch counts as delivered and nothing of it is
/// recorded as sent; the batch is handed over again later, and each message must then go exactly
/// once: the channel undoes what it took of the failed batch, or, where it cannot, recognises by
/// key the ones that went and answers them `AlreadySent`. A channel never forgets a key it holds
/// nor claims one it does not.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError>;
}

/// The first wait before a deferred message is handed over again, and the longest.
const FIRST_RETRY_MS: i64 = 60_000;
const LONGEST_RETRY_MS: i64 = 3_600_000;
/// The longest wait a receiver's `Retry-After` is honoured for.
const LONGEST_ASKED_MS: i64 = 86_400_000;

/// How long to wait before handing a deferred message over again, after its `tries`-th
/// deferral: what the receiving side asked for (a `Retry-After`), or else one minute doubling
/// with each deferral up to an hour, lengthened by up to a fifth by the key (the same for the
/// same key and try, so a replay decides the same), so that messages deferred together do not
/// all come back at once.
pub fn retry_delay_ms(tries: u32, key: &str, asked_ms: Option<u64>) -> i64 {
    if let Some(asked) = asked_ms {
        // Honoured up to a day: a receiver asking for more says nothing a window can use.
        return i64::try_from(asked)
            .unwrap_or(LONGEST_ASKED_MS)
            .clamp(1_000, LONGEST_ASKED_MS);
    }
    let doubled = FIRST_RETRY_MS
        .saturating_mul(1i64 << tries.saturating_sub(1).min(20))
        .min(LONGEST_RETRY_MS);
    // FNV-1a over the key and the try.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes().chain(tries.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let spread = i64::try_from(hash % 1_000).unwrap_or(0);
    doubled + doubled / 5 * spread / 1_000
}

#[cfg(test)]
mod tests {
    use super::retry_delay_ms;

    #[test]
    fn the_backoff_doubles_to_an_hour_and_a_receivers_wish_is_kept_within_a_day() {
        let key = "sept/warm-up/c-1/1";
        let first = retry_delay_ms(1, key, None);
        assert!((60_000..=72_000).contains(&first), "{first}");
        assert_eq!(
            first,
            retry_delay_ms(1, key, None),
            "the same for the same key"
        );
        let second = retry_delay_ms(2, key, None);
        assert!((120_000..=144_000).contains(&second), "{second}");
        let late = retry_delay_ms(40, key, None);
        assert!((3_600_000..=4_320_000).contains(&late), "{late}");
        assert_eq!(retry_delay_ms(1, key, Some(600_000)), 600_000);
        assert_eq!(retry_delay_ms(1, key, Some(0)), 1_000);
        assert_eq!(retry_delay_ms(1, key, Some(u64::MAX)), 86_400_000);
    }
}
