//! The plan file as serde reads it: one struct per kind of entry, exactly the keys a person
//! writes. Nothing here is checked beyond types; `validate` turns these into a [`super::Plan`].
//!
//! Entry structs (a phase, a task, a channel, ...) do not deny unknown keys themselves: the parser
//! checks every key of every entry against [`super::parse::fields_of`] so that all unknown keys
//! are reported at once, with a suggestion. Small nested tables deny unknown keys through serde.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

use super::values::{Money, PlanDuration, PlanWeekday, Ratio, TimeOfDay, TimeSpec};

/// `[campaign]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawCampaign {
    pub id: String,
    pub name: String,
    pub time_zone: String,
    pub currency: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub average_order_value: Option<Money>,
    #[serde(default)]
    pub on_resume: ResumePolicy,
}

/// What happens to the remaining windows when a paused campaign resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumePolicy {
    /// Resume in whatever phase the clock says now; boundaries passed while paused are entered
    /// in order at resume time.
    #[default]
    FollowClock,
    /// Shift every boundary still ahead by the length of the pause.
    ShiftWindows,
}

/// `[phases.prep]`, `[phases.warm_up]`, `[phases.burst]`, `[phases.review]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawPhase {
    pub start: TimeSpec,
    pub end: TimeSpec,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allow_gap_before: bool,
}

/// `[stages.early]`: a stage of the burst phase.
#[derive(Debug, Clone, Deserialize)]
pub struct RawStage {
    pub start: TimeSpec,
    pub end: TimeSpec,
    pub theme: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allow_gap_before: bool,
}

/// `[roles.sales]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawRole {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    /// The group robot the role's reminders go to.
    #[serde(default)]
    pub robot: Option<RawRobot>,
    /// The mail address (a team's list) the role's reminders go to, through the plan's mail
    /// server.
    #[serde(default)]
    pub mail: Option<String>,
}

/// `[roles.sales.robot]`: a DingTalk or WeCom group robot. Its address holds its token, so the
/// plan names only where to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRobot {
    pub kind: RobotKindName,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<String>,
    /// DingTalk's signing secret (`SEC...`), when the robot signs.
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default)]
    pub per_minute: Option<u32>,
}

/// Which group robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobotKindName {
    Dingtalk,
    Wecom,
}

/// `[workstreams.old-customers]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawWorkstream {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[tasks.pick-high-potential]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawTask {
    pub title: String,
    pub workstream: String,
    pub role: String,
    pub phase: String,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub due: Option<TimeSpec>,
    #[serde(default)]
    pub repeat: Option<Repeat>,
    #[serde(default)]
    pub on: Vec<PlanWeekday>,
    #[serde(default)]
    pub at: Option<TimeOfDay>,
    #[serde(default)]
    pub from: Option<TimeSpec>,
    #[serde(default)]
    pub until: Option<TimeSpec>,
    #[serde(default)]
    pub remind: Vec<PlanDuration>,
    #[serde(default)]
    pub escalate_after: Option<PlanDuration>,
    #[serde(default)]
    pub outside_phase: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repeat {
    Daily,
    Weekly,
}

/// `[segments.vip]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawSegment {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub system: Option<SystemSegment>,
    #[serde(default)]
    pub all: Option<Vec<RawCondition>>,
    #[serde(default)]
    pub any: Option<Vec<RawCondition>>,
    #[serde(default)]
    pub none: Option<Vec<RawCondition>>,
    #[serde(default)]
    pub customers: Option<Vec<String>>,
}

/// The platforms' ready-made audiences, refreshed daily.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemSegment {
    /// Active on the site in the last 7 days.
    #[serde(rename = "active_7d")]
    Active7d,
    /// Active on the site in the last 30 days.
    #[serde(rename = "active_30d")]
    Active30d,
    /// Active on the site in the last 90 days.
    #[serde(rename = "active_90d")]
    Active90d,
    /// Potential buyers with the "L1+" buyer-quality tag.
    L1PlusPotential,
    /// Mailed in the last 60 days, read, not replied.
    #[serde(rename = "mailed_read_not_replied_60d")]
    MailedReadNotReplied60d,
}

/// One condition of a dynamic segment: exactly one selector key, with its options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub not_tag: Option<String>,
    #[serde(default)]
    pub tier: Option<OneOrMany<String>>,
    #[serde(default)]
    pub owner: Option<OneOrMany<String>>,
    #[serde(default)]
    pub source: Option<OneOrMany<CustomerSource>>,
    #[serde(default)]
    pub locale: Option<OneOrMany<String>>,
    #[serde(default)]
    pub lifecycle: Option<OneOrMany<LifecycleStage>>,
    #[serde(default)]
    pub in_segment: Option<String>,
    #[serde(default)]
    pub activity: Option<Activity>,
    #[serde(default)]
    pub within: Option<PlanDuration>,
    #[serde(default)]
    pub not_within: Option<PlanDuration>,
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSource {
    OwnList,
    SharedPool,
    OfflineImport,
}

/// The lifecycle stages of DOMAIN.md, in funnel order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    Potential,
    Reached,
    Handshake,
    Order,
    Repurchase,
}

/// Signals a customer leaves, as imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Any signal at all.
    Active,
    Visited,
    Favourited,
    Carted,
    Followed,
    Inquired,
    Ordered,
    Opened,
    Replied,
}

/// `[channels.mail]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawChannel {
    pub kind: ChannelKind,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub daily_cap: Option<u32>,
    #[serde(default)]
    pub free_per_day: Option<u32>,
    #[serde(default)]
    pub cost_per_1000: Option<Money>,
    #[serde(default)]
    pub per_account_daily_cap: Option<u32>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub fatigue: Option<PlanDuration>,
    #[serde(default)]
    pub fatigue_scope: FatigueScope,
    #[serde(default)]
    pub quiet_hours: Option<RawQuietHours>,
    #[serde(default)]
    pub exclude_segments: Vec<String>,
    #[serde(default)]
    pub bounce_guard: Option<RawBounceGuard>,
    #[serde(default)]
    pub daily_budget: Option<Money>,
    #[serde(default)]
    pub monthly_budget: Option<Money>,
    #[serde(default)]
    pub unknown_outcome: UnknownOutcome,
    #[serde(default)]
    pub smtp: Option<RawSmtp>,
    #[serde(default)]
    pub webhook: Option<RawWebhook>,
    /// Links in the channel's messages go through the daemon's signed redirect, which records
    /// `clicked`.
    #[serde(default)]
    pub track_links: bool,
}

/// `[channels.in-site.webhook]`: the receiver a channel's messages are POSTed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    /// The name of the environment variable that holds the signing secret (never the secret).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The path of a file that holds the signing secret.
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default)]
    pub timeout: Option<PlanDuration>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub connections: Option<u32>,
}

/// `[channels.mail.smtp]`: the mail server a mail channel's messages go to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTlsMode,
    #[serde(default)]
    pub user: Option<String>,
    /// The name of the environment variable that holds the password (never the password).
    #[serde(default)]
    pub password_env: Option<String>,
    /// The path of a file that holds the password.
    #[serde(default)]
    pub password_file: Option<String>,
    pub from: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub connections: Option<u32>,
    #[serde(default)]
    pub per_second: Option<u32>,
    #[serde(default)]
    pub timeout: Option<PlanDuration>,
}

/// How a connection to the mail server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTlsMode {
    /// TLS from the first byte (port 465 by default).
    #[default]
    Implicit,
    /// STARTTLS before anything else (port 587 by default); refused if the server cannot.
    Starttls,
    /// None: only to a server on this machine (port 25 by default).
    None,
}

/// What to do with a message handed over without an answer (a mail server that stalled after
/// the data): it may or may not have arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownOutcome {
    /// Record it as sent, marked unconfirmed, and never hand it over again: a customer gets it
    /// at most once.
    #[default]
    CountAsSent,
    /// Hand it over again later with the same key (and Message-ID): a customer gets it at least
    /// once, perhaps twice, which a mail client that dedups by Message-ID shows once.
    Resend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Mail,
    InSite,
    Im,
    Webhook,
    Console,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Mail => "mail",
            ChannelKind::InSite => "in_site",
            ChannelKind::Im => "im",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Console => "console",
        }
    }
}

/// Which earlier reach-outs count against the fatigue window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FatigueScope {
    /// A reach-out on any channel, by any campaign, counts.
    #[default]
    AnyChannel,
    /// Only reach-outs on this channel count.
    ThisChannel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    #[serde(default)]
    pub policy: QuietPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuietPolicy {
    /// Hold the message until quiet hours end.
    #[default]
    Hold,
    /// Do not send it; record the reason.
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBounceGuard {
    pub max_bounce_rate: Ratio,
    #[serde(default = "default_min_sent")]
    pub min_sent: u32,
}

fn default_min_sent() -> u32 {
    100
}

/// `[templates.burst-early-mail]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawTemplate {
    pub channel: String,
    pub body: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub purpose: TemplatePurpose,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub coupon: Option<String>,
    #[serde(default = "default_version")]
    pub version: u32,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_version() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePurpose {
    /// The first message of a reach-out.
    #[default]
    ReachOut,
    /// A message sent by a follow-up rule.
    FollowUp,
}

impl TemplatePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplatePurpose::ReachOut => "reach_out",
            TemplatePurpose::FollowUp => "follow_up",
        }
    }
}

/// `[reach_outs.warm-up-recall]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawReachOut {
    pub name: String,
    pub segment: String,
    pub channel: String,
    pub window: RawWindow,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub follow_up: Option<String>,
    #[serde(default)]
    pub sender: Sender,
    #[serde(default)]
    pub description: Option<String>,
}

/// Whose account a reach-out's messages go from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// The reach-out's accounts, in turn (the channel's when it names none).
    #[default]
    Accounts,
    /// The account of the customer's owner: sales reps working their own lists.
    Owner,
}

/// A window: the name of a phase or stage, or a table with `start` and `end`.
#[derive(Debug, Clone)]
pub enum RawWindow {
    Named(String),
    Between { start: TimeSpec, end: TimeSpec },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowTable {
    start: TimeSpec,
    end: TimeSpec,
}

impl<'de> Deserialize<'de> for RawWindow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WindowVisitor;
        impl<'de> Visitor<'de> for WindowVisitor {
            type Value = RawWindow;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a phase or stage name, or a table { start = ..., end = ... }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawWindow, E> {
                Ok(RawWindow::Named(text.to_string()))
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<RawWindow, M::Error> {
                let table =
                    RawWindowTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawWindow::Between {
                    start: table.start,
                    end: table.end,
                })
            }
        }
        deserializer.deserialize_any(WindowVisitor)
    }
}

/// `[follow_ups.no-reply-7d]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawFollowUp {
    pub if_no: FollowUpTrigger,
    pub after: PlanDuration,
    pub max_attempts: u32,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub stop_on: Vec<StopOn>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpTrigger {
    Reply,
    Order,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOn {
    Reply,
    Order,
    Unsubscribe,
    Open,
}

/// `[targets.early]`: metric name to the number the boss expects in that stage.
pub type RawTargets = BTreeMap<String, TargetNumber>;

/// A target as written: an amount (`300000.00`), a count (`400`) or a rate (`"3.5%"` or
/// `0.035`). Kept as text; the metric decides how it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetNumber(pub String);

impl<'de> Deserialize<'de> for TargetNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = TargetNumber;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a number, or a rate such as \"3.5%\"")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<TargetNumber, E> {
                Ok(TargetNumber(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<TargetNumber, E> {
                Ok(TargetNumber(value.to_string()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<TargetNumber, E> {
                if value.is_finite() {
                    // The shortest text that reads back as this float is what was written.
                    Ok(TargetNumber(format!("{value}")))
                } else {
                    Err(E::custom("a target must be a finite number"))
                }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<TargetNumber, E> {
                Ok(TargetNumber(text.trim().to_string()))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// `[offers.coupons.sept-50]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawCoupon {
    pub value: Money,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub min_spend: Option<Money>,
    #[serde(default)]
    pub issue: CouponIssue,
    #[serde(default)]
    pub quantity: Option<u32>,
    #[serde(default = "default_per_customer")]
    pub per_customer: u32,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub window: Option<RawWindow>,
}

fn default_per_customer() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponIssue {
    /// Buyers claim it on the shop page.
    #[default]
    Claim,
    /// Issued automatically when an order reaches `min_spend`.
    SpendThreshold,
    /// Pushed to chosen customers from the CRM.
    CrmPush,
}

/// `[offers.tiered.spend-more]`: spend X, get Y off.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTiered {
    pub tiers: Vec<RawTier>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub window: Option<RawWindow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub spend: Money,
    pub off: Money,
}

/// `[offers.discounts.hero-sku]`: a limited-time discount on one item.
#[derive(Debug, Clone, Deserialize)]
pub struct RawDiscount {
    pub item: String,
    pub list_price: Money,
    pub price: Money,
    pub window: RawWindow,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub listed_from: Option<TimeSpec>,
    #[serde(default)]
    pub listed_until: Option<TimeSpec>,
}

/// `[offers.bundles.starter-kit]`
#[derive(Debug, Clone, Deserialize)]
pub struct RawBundle {
    pub items: Vec<RawBundleItem>,
    pub price: Money,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub window: Option<RawWindow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundleItem {
    pub sku: String,
    pub price: Money,
}

/// A value that may be written alone or as a list: `tier = "L1+"` or `tier = ["L1+", "L2"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<OneOrMany<T>, E> {
                let value = T::deserialize(text.to_string().into_deserializer())?;
                Ok(OneOrMany(vec![value]))
            }
            fn visit_seq<S: de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<OneOrMany<T>, S::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                Ok(OneOrMany(values))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

/// An entry of a keyed section (`[tasks.ID]`): its id, its path in the file, and its value when
/// it deserialized. A failed entry keeps its id so references to it do not cascade into more
/// errors.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    pub id: String,
    pub path: String,
    pub value: Option<T>,
}

/// `[reports.weekly]`: the weekly business report, sent on a weekday at a local time to the
/// staff of some roles through their channels (robot, mail, or the staff outbox).
#[derive(Debug, Clone, Deserialize)]
pub struct RawWeeklyReport {
    /// A weekday and a local time: `"monday 09:30"`.
    pub every: String,
    /// The roles it goes to.
    pub to: Vec<String>,
    /// Which week it reports: the one that ended (`previous`, the default) or the one under
    /// way (`current`).
    #[serde(default)]
    pub week: ReportWeek,
}

/// Which week a scheduled report covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportWeek {
    /// The week that ended before it is sent: a Monday morning's report of last week.
    #[default]
    Previous,
    /// The week it is sent in, so far.
    Current,
}

/// The whole plan as read, section by section, in file order.
#[derive(Debug, Clone, Default)]
pub struct RawPlan {
    pub format: Option<i64>,
    /// `campaign.time_zone` read on its own, so that a mistake elsewhere in `[campaign]` does
    /// not switch off every check that needs the zone.
    pub time_zone_hint: Option<String>,
    pub campaign: Option<RawCampaign>,
    pub phases: Vec<Entry<RawPhase>>,
    pub stages: Vec<Entry<RawStage>>,
    pub roles: Vec<Entry<RawRole>>,
    pub workstreams: Vec<Entry<RawWorkstream>>,
    pub tasks: Vec<Entry<RawTask>>,
    pub targets: Vec<Entry<RawTargets>>,
    pub segments: Vec<Entry<RawSegment>>,
    pub channels: Vec<Entry<RawChannel>>,
    pub templates: Vec<Entry<RawTemplate>>,
    pub reach_outs: Vec<Entry<RawReachOut>>,
    pub follow_ups: Vec<Entry<RawFollowUp>>,
    pub coupons: Vec<Entry<RawCoupon>>,
    pub tiered: Vec<Entry<RawTiered>>,
    pub discounts: Vec<Entry<RawDiscount>>,
    pub bundles: Vec<Entry<RawBundle>>,
    /// `[reports.weekly]`, when the plan has it.
    pub weekly_report: Option<RawWeeklyReport>,
}
