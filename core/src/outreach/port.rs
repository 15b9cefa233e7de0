//! The channel port: where the dispatcher hands messages over. Every message carries its
//! idempotency key; a channel that remembers keys (the file outbox, a mail API that accepts
//! them) sends each key once however often it is handed the message, which closes the one
//! window a crash leaves open (sent, `MessageSent` not yet recorded).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::plan::model::ChannelKind;

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
}

/// What a channel did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The channel already had this key: sent before, not again.
    AlreadySent,
}

#[derive(Debug, thiserror::Error)]
#[error("channel {channel}: {detail}")]
pub struct ChannelError {
    pub channel: String,
    pub detail: String,
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
