//! The outbox's events, on one stream per campaign (`outreach-<campaign>`): what was decided for
//! each customer a reach-out or follow-up considered (a planned send with its idempotency key and
//! the quota day it reserved, or the typed reason it is not sent), what the dispatcher sent, when
//! follow-ups stopped, and the channel pauses of the bounce guard.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::customer::eligibility::Exclusion;
use crate::customer::quota::Unplaced;
use crate::event::StreamId;
use crate::plan::model::{ChannelKind, FollowUpTrigger, PhaseKind, StopOn};

/// The stream of a campaign's outbox: `outreach-<campaign>`.
pub fn stream_of(campaign: &str) -> Result<StreamId, String> {
    StreamId::new(format!("outreach-{campaign}"))
        .map_err(|_| format!("`{campaign}` cannot name a campaign"))
}

/// The idempotency key of a message to a customer: campaign, reach-out, customer and attempt.
/// The same decision always has the same key, so a channel that accepts keys sends it once.
pub fn send_key(campaign: &str, reach_out: &str, customer: &str, attempt: u32) -> String {
    // Made for every customer a reach-out considers: pieces pushed, not formatted.
    let mut key = String::with_capacity(campaign.len() + reach_out.len() + customer.len() + 13);
    for piece in [campaign, reach_out, customer] {
        key.push_str(piece);
        key.push('/');
    }
    key.push_str(crate::text::Decimal::of(u64::from(attempt)).as_str());
    key
}

/// Why a customer considered for a message gets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotSentReason {
    NoAddress,
    Unsubscribed,
    RecycleBin,
    ExcludedSegment,
    Fatigue,
    AlreadyReached,
    QuietHours,
    /// Every day left in the window was at its cap or budget before the reach-out placed any
    /// send: other sends had used the quota.
    Quota,
    /// The window had room, and the reach-out's own earlier sends filled every day of it.
    WindowFull,
    /// `sender = "owner"` and the customer's owner has no account on the channel.
    NoAccount,
    /// Held by a pause of the campaign until the send's window closed.
    CampaignPaused,
    /// Held by the bounce guard's pause of the channel until the window closed.
    BounceGuard,
    /// The campaign was completed or cancelled first.
    CampaignEnded,
    /// The window closed before it could go (the dispatcher was not running).
    WindowClosed,
    /// Held past the day whose quota it reserved (by a pause of the campaign, the bounce guard
    /// or downtime), and no later day of its window had quota left: the cap holds on the day
    /// a message goes.
    NoQuotaAfterHold,
    /// A follow-up whose customer replied, ordered or opened before it went.
    Replied,
    Ordered,
    Opened,
    /// The template failed to render (nothing was sent).
    TemplateFailed,
    /// The reach-out's window lay in a phase or stage a person skipped with `advance`.
    PhaseSkipped,
    /// The receiving side refused it for good (a mail server's 5xx, a webhook's 4xx); the
    /// detail holds its answer.
    Refused,
    /// The receiving side kept deferring it (a mail server's 4xx, a webhook's 5xx or 429, a
    /// timeout) until its window closed.
    Undelivered,
    /// Held by a pause of the channel after a failure (the server refused the connection or
    /// the credentials) until the window closed.
    ChannelDown,
}

impl NotSentReason {
    pub fn key(self) -> &'static str {
        match self {
            NotSentReason::NoAddress => "no_address",
            NotSentReason::Unsubscribed => "unsubscribed",
            NotSentReason::RecycleBin => "recycle_bin",
            NotSentReason::ExcludedSegment => "excluded_segment",
            NotSentReason::Fatigue => "fatigue",
            NotSentReason::AlreadyReached => "already_reached",
            NotSentReason::QuietHours => "quiet_hours",
            NotSentReason::Quota => "quota",
            NotSentReason::WindowFull => "window_full",
            NotSentReason::NoAccount => "no_account",
            NotSentReason::CampaignPaused => "campaign_paused",
            NotSentReason::BounceGuard => "bounce_guard",
            NotSentReason::CampaignEnded => "campaign_ended",
            NotSentReason::WindowClosed => "window_closed",
            NotSentReason::NoQuotaAfterHold => "no_quota_after_hold",
            NotSentReason::Replied => "replied",
            NotSentReason::Ordered => "ordered",
            NotSentReason::Opened => "opened",
            NotSentReason::TemplateFailed => "template_failed",
            NotSentReason::PhaseSkipped => "phase_skipped",
            NotSentReason::Refused => "refused",
            NotSentReason::Undelivered => "undelivered",
            NotSentReason::ChannelDown => "channel_down",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            NotSentReason::NoAddress => "no or invalid address",
            NotSentReason::Unsubscribed => "unsubscribed",
            NotSentReason::RecycleBin => "in the recycle bin",
            NotSentReason::ExcludedSegment => "in a segment the channel excludes",
            NotSentReason::Fatigue => "reached within the fatigue window",
            NotSentReason::AlreadyReached => "already reached by this reach-out",
            NotSentReason::QuietHours => "quiet hours",
            NotSentReason::Quota => "no quota left in the window",
            NotSentReason::WindowFull => "the window filled up with the reach-out's own sends",
            NotSentReason::NoAccount => "no sending account",
            NotSentReason::CampaignPaused => "the campaign was paused until the window closed",
            NotSentReason::BounceGuard => {
                "the bounce guard paused the channel until the window closed"
            }
            NotSentReason::CampaignEnded => "the campaign ended first",
            NotSentReason::WindowClosed => "the window closed first",
            NotSentReason::NoQuotaAfterHold => {
                "held past its day, and no later day of the window had quota left"
            }
            NotSentReason::Replied => "replied",
            NotSentReason::Ordered => "ordered",
            NotSentReason::Opened => "opened",
            NotSentReason::TemplateFailed => "the template failed to render",
            NotSentReason::PhaseSkipped => "its phase was skipped by an advance",
            NotSentReason::Refused => "the receiving side refused it",
            NotSentReason::Undelivered => {
                "the receiving side deferred it until its window closed or its last attempt"
            }
            NotSentReason::ChannelDown => {
                "the channel was paused after a failure until the window closed"
            }
        }
    }
}

impl From<Exclusion> for NotSentReason {
    fn from(exclusion: Exclusion) -> Self {
        match exclusion {
            Exclusion::NoAddress => NotSentReason::NoAddress,
            Exclusion::Unsubscribed => NotSentReason::Unsubscribed,
            Exclusion::RecycleBin => NotSentReason::RecycleBin,
            Exclusion::ExcludedSegment => NotSentReason::ExcludedSegment,
            Exclusion::Fatigue => NotSentReason::Fatigue,
            Exclusion::AlreadyReached => NotSentReason::AlreadyReached,
            Exclusion::QuietHours => NotSentReason::QuietHours,
        }
    }
}

impl From<Unplaced> for NotSentReason {
    fn from(unplaced: Unplaced) -> Self {
        match unplaced {
            Unplaced::WindowFull => NotSentReason::WindowFull,
            Unplaced::QuotaUsed => NotSentReason::Quota,
            Unplaced::NoAccount => NotSentReason::NoAccount,
            Unplaced::QuietUntilWindowEnd => NotSentReason::QuietHours,
        }
    }
}

/// A follow-up rule as it stood when the send was planned: the send's follow-ups keep these
/// terms even if the plan is revised later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpTerms {
    pub rule: String,
    pub if_no: FollowUpTrigger,
    pub after_ms: i64,
    /// Follow-ups after the first message (attempt 1), at most.
    pub max_attempts: u32,
    pub stop_on: Vec<StopOn>,
    /// The channel follow-ups go by.
    pub channel: String,
}

/// One message to one customer, decided: sent by the dispatcher at `at` (or when the campaign
/// and the channel allow, while the window lasts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPlanned {
    pub key: String,
    pub campaign: String,
    pub reach_out: String,
    pub customer: String,
    /// 1 for the reach-out's message, 2, 3, ... for follow-ups.
    pub attempt: u32,
    pub channel: String,
    pub kind: ChannelKind,
    pub account: String,
    /// The local day whose quota it reserved.
    pub day: NaiveDate,
    /// Whether it is paid volume of that day.
    pub paid: bool,
    pub at: DateTime<Utc>,
    /// The campaign's phase when it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseKind>,
    /// After this the send no longer goes.
    pub window_end: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpTerms>,
    /// Why it went on this day rather than an earlier one of its window, with the numbers the
    /// planner saw (`2026-08-26 was full (2,000 of 2,000, the daily cap)`); none on the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A planned send held past the local day whose quota it reserved (a pause of the campaign, the
/// bounce guard, downtime), or past the hour it was due into the channel's quiet hours, moved
/// to the first instant of its window with room: the quota it reserved is given back and the
/// new day's is taken, so the daily cap, the free volume and the budgets hold on the day it
/// goes. The dispatcher decides it before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMoved {
    pub key: String,
    pub campaign: String,
    pub reach_out: String,
    pub customer: String,
    pub channel: String,
    /// The day (and account) whose quota it held until now.
    pub from_day: NaiveDate,
    pub account: String,
    /// The local day whose quota it reserves now, and whether it is paid volume of that day.
    pub day: NaiveDate,
    pub paid: bool,
    pub at: DateTime<Utc>,
    /// What held it and the days it could not go, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A customer considered and not sent this message, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotSent {
    pub key: String,
    pub campaign: String,
    pub reach_out: String,
    pub customer: String,
    pub attempt: u32,
    pub channel: String,
    pub reason: NotSentReason,
    /// The rule and the numbers behind the reason, as they stood when it was decided (the last
    /// reach and the fatigue window, the days of the window and their caps, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The campaign's phase when it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseKind>,
}

/// A reach-out's audience fully decided: one `SendPlanned` or `NotSent` per member before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachOutPlanned {
    pub campaign: String,
    pub reach_out: String,
    pub evaluated_at: DateTime<Utc>,
    pub segment_size: u64,
    pub planned: u64,
    pub not_sent: u64,
}

/// A message went out through its channel (`duplicate`: the channel already had its key, a
/// send from before a crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    pub key: String,
    pub campaign: String,
    pub channel: String,
    pub kind: ChannelKind,
    /// The reach-out, for a message to a customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach_out: Option<String>,
    /// The customer, or the staff role.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default)]
    pub duplicate: bool,
    /// Handed over without an answer (a mail server that stalled after the data) and, as the
    /// plan says, not handed over again: it may not have arrived. Counted as sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
}

/// Why a customer's follow-ups end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Replied,
    Ordered,
    Opened,
    Unsubscribed,
    AttemptLimit,
    CampaignEnded,
}

impl StopReason {
    pub fn key(self) -> &'static str {
        match self {
            StopReason::Replied => "replied",
            StopReason::Ordered => "ordered",
            StopReason::Opened => "opened",
            StopReason::Unsubscribed => "unsubscribed",
            StopReason::AttemptLimit => "attempt_limit",
            StopReason::CampaignEnded => "campaign_ended",
        }
    }
}

/// No more follow-ups after the message `after_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpStopped {
    pub after_key: String,
    pub campaign: String,
    pub reach_out: String,
    pub customer: String,
    pub rule: String,
    pub reason: StopReason,
}

/// The bounce guard stopped a channel's sending for this campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPaused {
    pub campaign: String,
    pub channel: String,
    pub sent: u64,
    pub bounced: u64,
    /// The plan's threshold, in words (`5%` of at least 200 sent).
    pub threshold: String,
    /// Paused not by the bounce guard but because the channel failed in a way that needs a
    /// person (the server refused the connection or the credentials): its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The receiving side deferred a send (a mail server's 4xx, a webhook's 5xx or 429, a
/// timeout): it stays planned and is handed over again at `retry_at`, with the same key.
/// Recorded at each try, so the tries and the backoff survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryDeferred {
    pub key: String,
    pub campaign: String,
    pub reach_out: String,
    pub channel: String,
    pub customer: String,
    /// How many times it has been deferred, this one included.
    pub tries: u32,
    pub retry_at: DateTime<Utc>,
    /// The receiving side's answer.
    pub detail: String,
}

/// A person resumed the channel (actor and reason in the envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelResumed {
    pub campaign: String,
    pub channel: String,
}

/// A message to staff decided by the outbox itself (the bounce guard telling ops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePlanned {
    pub key: String,
    pub campaign: String,
    pub role: String,
    pub members: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// A node of several on one store (docs/scale-out.md) is about to hand these messages to its
/// channel. Until an answer for each is recorded (`MessageSent`, `DeliveryDeferred`,
/// `NotSent`), they are that node's alone: no other node hands them over, even one that has
/// taken the campaign over since, and the node that handed them settles them (its channel
/// knows which it took). Never recorded by a battleplan that runs alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOver {
    pub campaign: String,
    pub node: String,
    pub keys: Vec<String>,
}

crate::event::upcast::event_enum!(
    /// Every event of an outreach stream.
    OutreachEvent { SendPlanned, SendMoved, NotSent, ReachOutPlanned, MessageSent, FollowUpStopped, ChannelPaused, ChannelResumed, NoticePlanned, DeliveryDeferred, HandedOver }
);

impl OutreachEvent {
    /// The event types [`OutreachEvent::summary`] has a line for (keep the two in step): a
    /// reader can pick them out of a campaign's many per-customer events without decoding any.
    pub const SUMMARISED: [&'static str; 3] = [
        <ReachOutPlanned as crate::event::upcast::EventPayload>::EVENT_TYPE,
        <ChannelPaused as crate::event::upcast::EventPayload>::EVENT_TYPE,
        <ChannelResumed as crate::event::upcast::EventPayload>::EVENT_TYPE,
    ];

    /// One line for people about the events that concern a whole reach-out or channel (a
    /// reach-out planned, a channel paused by the bounce guard or resumed); `None` for the
    /// per-customer ones, which are `explain`'s. Only the types of
    /// [`OutreachEvent::SUMMARISED`] have one.
    pub fn summary(&self) -> Option<String> {
        use crate::plan::values::grouped;
        match self {
            OutreachEvent::ReachOutPlanned(planned) => Some(format!(
                "reach-out {} planned: segment {}, {} to send, {} not sent",
                planned.reach_out,
                grouped(planned.segment_size),
                grouped(planned.planned),
                grouped(planned.not_sent)
            )),
            OutreachEvent::ChannelPaused(paused) => Some(match &paused.failure {
                Some(failure) => format!(
                    "channel {} paused after a failure: {failure}; ops notified",
                    paused.channel
                ),
                None => format!(
                    "channel {} paused by the bounce guard: {} bounced of {} sent (over {}); ops notified",
                    paused.channel,
                    grouped(paused.bounced),
                    grouped(paused.sent),
                    paused.threshold
                ),
            }),
            OutreachEvent::ChannelResumed(resumed) => {
                Some(format!("channel {} resumed", resumed.channel))
            }
            _ => None,
        }
    }

    /// The campaign the event belongs to.
    pub fn campaign(&self) -> &str {
        match self {
            OutreachEvent::SendPlanned(e) => &e.campaign,
            OutreachEvent::SendMoved(e) => &e.campaign,
            OutreachEvent::NotSent(e) => &e.campaign,
            OutreachEvent::ReachOutPlanned(e) => &e.campaign,
            OutreachEvent::MessageSent(e) => &e.campaign,
            OutreachEvent::FollowUpStopped(e) => &e.campaign,
            OutreachEvent::ChannelPaused(e) => &e.campaign,
            OutreachEvent::ChannelResumed(e) => &e.campaign,
            OutreachEvent::NoticePlanned(e) => &e.campaign,
            OutreachEvent::DeliveryDeferred(e) => &e.campaign,
            OutreachEvent::HandedOver(e) => &e.campaign,
        }
    }
}
