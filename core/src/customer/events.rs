//! The customer book's events: what imports record. A customer import is one stream,
//! `import-<digest>` (the first 32 hex digits of the file's blake3): `ImportStarted`, then one
//! `CustomerRecorded` or `OutcomeRecorded` per row, in the file's order, then `ImportFinished`.
//! The same file imported again finds its stream finished and records nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::StreamId;
use crate::plan::model::{Activity, ChannelKind, CustomerSource};
use crate::plan::values::Money;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    Customers,
    Outcomes,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Customers => "customers",
            ImportKind::Outcomes => "outcomes",
        }
    }
}

/// A row left out of an import the user asked to import partially (`--skip-bad-rows`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRow {
    pub line: u64,
    /// The column's name, when the problem is in one column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
}

/// An import began. Its rows follow on the same stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportStarted {
    pub kind: ImportKind,
    /// The file's name as given on the command line.
    pub file: String,
    /// blake3 of the file's bytes, hex.
    pub digest: String,
    /// Rows that will be recorded (bad rows skipped are not counted).
    pub rows: u64,
    /// Rows left out, with why (only with `--skip-bad-rows`): the first
    /// [`MAX_LISTED_SKIPPED`] of them, so the event stays small whatever the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRow>,
    /// How many rows were left out in all (`skipped` lists the first ones).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_total: u64,
}

/// The most skipped rows an `ImportStarted` lists.
pub const MAX_LISTED_SKIPPED: usize = 1_000;

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// Every row of the import is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFinished {
    pub kind: ImportKind,
    pub digest: String,
    pub rows: u64,
    pub skipped: u64,
}

/// A signal a customer left, with when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub activity: Activity,
    pub at: DateTime<Utc>,
    /// The order's amount, for `ordered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// One customer row. A field that is `None` was not in the file (the customer's earlier value
/// stands); a field that is present replaces it (an empty text clears it). Unsubscribes and the
/// recycle bin only ever add: an import cannot give back a consent a customer withdrew.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerRecorded {
    pub customer: String,
    /// The row's line in the file, for the auditor.
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// As written; whether it is a valid address is decided by the book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The sales rep who owns the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CustomerSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// An IANA zone name, checked at import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Free-form attributes (`attr.NAME` columns), in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
    /// Orders the customer has placed so far, when the file says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<u32>,
    /// Channels the customer unsubscribed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsubscribed: Vec<ChannelKind>,
    /// Unsubscribed from every channel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsubscribed_all: bool,
    /// `Some(true)` puts the customer in the recycle bin, `Some(false)` takes them out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_bin: Option<bool>,
}

/// What came back from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Delivered,
    Bounced,
    Opened,
    Replied,
    Ordered,
    Unsubscribed,
    /// A tracked link of the message was followed (an open, and more).
    Clicked,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 7] = [
        OutcomeKind::Delivered,
        OutcomeKind::Bounced,
        OutcomeKind::Opened,
        OutcomeKind::Replied,
        OutcomeKind::Ordered,
        OutcomeKind::Unsubscribed,
        OutcomeKind::Clicked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Delivered => "delivered",
            OutcomeKind::Bounced => "bounced",
            OutcomeKind::Opened => "opened",
            OutcomeKind::Replied => "replied",
            OutcomeKind::Ordered => "ordered",
            OutcomeKind::Unsubscribed => "unsubscribed",
            OutcomeKind::Clicked => "clicked",
        }
    }

    pub fn from_key(key: &str) -> Option<OutcomeKind> {
        OutcomeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == key)
    }
}

/// One outcome row: tied to a customer, and to the reach-out (campaign and reach-out id) that
/// caused it where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecorded {
    pub customer: String,
    pub line: u64,
    pub outcome: OutcomeKind,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach_out: Option<String>,
    /// The channel the message went by; for an unsubscribe without one, every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelKind>,
    /// The order's amount, for `ordered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The message's id at the channel, when the file has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `ordered`: the offer the order used, as the file names it (a plan offer's id, or a
    /// coupon's code). Left out of the payload when absent, so events recorded before offers
    /// were named read and hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
}

crate::event::upcast::event_enum!(
    /// Every event of an import stream.
    CustomerEvent { ImportStarted, CustomerRecorded, OutcomeRecorded, ImportFinished }
);

/// The stream of the import of a file with this digest (hex): `import-` and 32 hex digits.
pub fn import_stream(digest: &str) -> Result<StreamId, String> {
    let short: String = digest.chars().take(32).collect();
    StreamId::new(format!("import-{short}")).map_err(|_| format!("`{digest}` is not a file digest"))
}
