//! The resolved plan: every reference checked, every instant turned into UTC in the campaign's
//! zone, every window half-open `[start, end)`. Only `validate` builds one, so holding a `Plan`
//! means holding a plan without errors.

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

pub use super::raw::{
    Activity, ChannelKind, CouponIssue, CustomerSource, FatigueScope, FollowUpTrigger,
    LifecycleStage, QuietPolicy, ReportWeek, ResumePolicy, Sender, SmtpTlsMode, StopOn,
    SystemSegment, TemplatePurpose, UnknownOutcome,
};
use super::values::{Money, PlanDuration, TimeOfDay};

/// A half-open interval of instants, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.start <= instant && instant < self.end
    }

    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub campaign: Campaign,
    /// In order: prep, warm-up, burst, and review when the plan has one.
    pub phases: Vec<Phase>,
    /// The burst stages in order; together they cover the burst phase.
    pub stages: Vec<Stage>,
    pub roles: Vec<Role>,
    pub workstreams: Vec<Workstream>,
    pub tasks: Vec<Task>,
    pub targets: Vec<StageTarget>,
    pub segments: Vec<Segment>,
    pub channels: Vec<Channel>,
    pub templates: Vec<Template>,
    pub reach_outs: Vec<ReachOut>,
    pub follow_ups: Vec<FollowUpRule>,
    pub offers: Offers,
    /// `[reports.weekly]`: when the weekly report goes to whom, if the plan schedules it.
    pub weekly_report: Option<WeeklyReportSchedule>,
}

/// The weekly report, sent every week on `weekday` at `at` (local time in the campaign's zone)
/// to the members of the roles `to`, through each role's staff channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyReportSchedule {
    pub weekday: Weekday,
    pub at: NaiveTime,
    /// Role ids, each declared (or built in).
    pub to: Vec<String>,
    pub week: ReportWeek,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    /// A slug: lowercase letters, digits, `-` and `_`.
    pub id: String,
    pub name: String,
    pub time_zone: Tz,
    /// ISO 4217, e.g. `CNY`.
    pub currency: String,
    pub description: Option<String>,
    pub average_order_value: Option<Money>,
    pub on_resume: ResumePolicy,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    Prep,
    WarmUp,
    Burst,
    Review,
}

impl PhaseKind {
    pub const ALL: [PhaseKind; 4] = [
        PhaseKind::Prep,
        PhaseKind::WarmUp,
        PhaseKind::Burst,
        PhaseKind::Review,
    ];

    /// The key the plan file uses: `prep`, `warm_up`, `burst`, `review`.
    pub fn key(self) -> &'static str {
        match self {
            PhaseKind::Prep => "prep",
            PhaseKind::WarmUp => "warm_up",
            PhaseKind::Burst => "burst",
            PhaseKind::Review => "review",
        }
    }

    pub fn from_key(key: &str) -> Option<PhaseKind> {
        PhaseKind::ALL.into_iter().find(|kind| kind.key() == key)
    }

    /// How people say it: `prep`, `warm-up`, `burst`, `review`.
    pub fn label(self) -> &'static str {
        match self {
            PhaseKind::Prep => "prep",
            PhaseKind::WarmUp => "warm-up",
            PhaseKind::Burst => "burst",
            PhaseKind::Review => "review",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub kind: PhaseKind,
    pub name: String,
    pub description: Option<String>,
    pub window: Window,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    pub name: String,
    pub theme: String,
    pub description: Option<String>,
    pub window: Window,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
    /// The group robot its reminders go to (`None`: its mail address, or the staff outbox).
    pub robot: Option<Robot>,
    /// The mail address its reminders go to through the plan's mail server, when it has no
    /// robot.
    pub mail: Option<String>,
}

/// A role's group robot (`[roles.ID.robot]`): where to read its address and secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Robot {
    pub kind: crate::plan::raw::RobotKindName,
    pub url: SecretSource,
    pub secret: Option<SecretSource>,
    pub per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct Workstream {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub workstream: String,
    pub role: String,
    pub phase: PhaseKind,
    pub stage: Option<String>,
    pub schedule: TaskSchedule,
    /// Lead times before each due instant at which to remind; a reminder at the due instant
    /// itself is always sent.
    pub remind: Vec<PlanDuration>,
    /// How long after the due instant an undone task is escalated to the boss role.
    pub escalate_after: Option<PlanDuration>,
}

#[derive(Debug, Clone)]
pub enum TaskSchedule {
    Once {
        due: DateTime<Utc>,
    },
    /// Due at `at` local time on every matching day whose occurrence falls in `[from, until)`.
    Recurring {
        recurrence: Recurrence,
        at: TimeOfDay,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    Daily,
    Weekly(Vec<Weekday>),
}

/// A figure the boss expects in a stage.
#[derive(Debug, Clone)]
pub struct StageTarget {
    pub stage: String,
    pub metric: Metric,
    pub value: TargetValue,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetValue {
    Money(Money),
    Count(u64),
    /// A fraction in (0, 1].
    Rate(f64),
}

/// How a metric is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Money,
    Count,
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Gmv,
    Orders,
    PayingBuyers,
    Inquiries,
    Visitors,
    Fans,
    Reached,
    Replies,
    NewCustomers,
    PageViews,
    AverageOrderValue,
    ConversionRate,
    PaymentRate,
    RepurchaseRate,
}

impl Metric {
    pub const ALL: [Metric; 14] = [
        Metric::Gmv,
        Metric::Orders,
        Metric::PayingBuyers,
        Metric::Inquiries,
        Metric::Visitors,
        Metric::Fans,
        Metric::Reached,
        Metric::Replies,
        Metric::NewCustomers,
        Metric::PageViews,
        Metric::AverageOrderValue,
        Metric::ConversionRate,
        Metric::PaymentRate,
        Metric::RepurchaseRate,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Metric::Gmv => "gmv",
            Metric::Orders => "orders",
            Metric::PayingBuyers => "paying_buyers",
            Metric::Inquiries => "inquiries",
            Metric::Visitors => "visitors",
            Metric::Fans => "fans",
            Metric::Reached => "reached",
            Metric::Replies => "replies",
            Metric::NewCustomers => "new_customers",
            Metric::PageViews => "page_views",
            Metric::AverageOrderValue => "average_order_value",
            Metric::ConversionRate => "conversion_rate",
            Metric::PaymentRate => "payment_rate",
            Metric::RepurchaseRate => "repurchase_rate",
        }
    }

    pub fn from_key(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.key() == key)
    }

    /// Money (GMV, average order value), a count, or a rate (DOMAIN.md "Measuring").
    pub fn kind(self) -> MetricKind {
        match self {
            Metric::Gmv | Metric::AverageOrderValue => MetricKind::Money,
            Metric::ConversionRate | Metric::PaymentRate | Metric::RepurchaseRate => {
                MetricKind::Rate
            }
            _ => MetricKind::Count,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub definition: SegmentDefinition,
}

#[derive(Debug, Clone)]
pub enum SegmentDefinition {
    System(SystemSegment),
    /// A rule re-evaluated at each instant: every `all` condition, at least one `any` condition
    /// when there are some, and no `none` condition.
    Dynamic {
        all: Vec<Condition>,
        any: Vec<Condition>,
        none: Vec<Condition>,
    },
    /// A fixed list of customer ids.
    Fixed(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Tag(String),
    NotTag(String),
    Tier(Vec<String>),
    Owner(Vec<String>),
    Source(Vec<CustomerSource>),
    Locale(Vec<String>),
    Lifecycle(Vec<LifecycleStage>),
    InSegment(String),
    /// The activity happened at least once (in the window, when one is given).
    Activity {
        activity: Activity,
        within: Option<PlanDuration>,
    },
    /// The activity did not happen within the window.
    NoActivity {
        activity: Activity,
        within: PlanDuration,
    },
    Attribute {
        name: String,
        one_of: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub kind: ChannelKind,
    /// Most messages a local day, over all accounts.
    pub daily_cap: Option<u32>,
    /// Messages a local day that cost nothing; the rest up to the cap are paid.
    pub free_per_day: Option<u32>,
    pub cost_per_1000: Option<Money>,
    pub per_account_daily_cap: Option<u32>,
    pub accounts: Vec<String>,
    pub fatigue: PlanDuration,
    pub fatigue_scope: FatigueScope,
    pub quiet_hours: Option<QuietHours>,
    pub exclude_segments: Vec<String>,
    pub bounce_guard: Option<BounceGuard>,
    /// The most the channel may spend on paid volume in a local day, and in a calendar month.
    pub daily_budget: Option<Money>,
    pub monthly_budget: Option<Money>,
    /// What a message handed over without an answer counts as.
    pub unknown_outcome: UnknownOutcome,
    /// The mail server, for a mail channel that sends for real (`None`: the file outbox).
    pub smtp: Option<Smtp>,
    /// The receiver a channel's messages are POSTed to (`None`: the file outbox).
    pub webhook: Option<Webhook>,
    /// Whether links in its messages go through the daemon's signed redirect.
    pub track_links: bool,
}

impl Channel {
    /// How often a message of this channel is handed over before it is given up as
    /// undelivered; `None` where only its window ends the tries (mail: a server's 4xx).
    pub fn attempts(&self) -> Option<u32> {
        self.webhook.as_ref().map(|webhook| webhook.attempts)
    }
}

/// A channel's webhook receiver (`[channels.ID.webhook]`): each message POSTed as JSON and
/// signed per Standard Webhooks. The secret is never here: only where to read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Webhook {
    pub url: String,
    pub secret: SecretSource,
    /// The longest wait for the receiver's answer.
    pub timeout_seconds: u64,
    /// How often a message is handed over before it is given up as undelivered.
    pub attempts: u32,
    /// The most requests at once.
    pub connections: u32,
}

/// A mail channel's server (`[channels.ID.smtp]`). The password is never here: only where to
/// read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTlsMode,
    pub user: Option<String>,
    pub password: Option<SecretSource>,
    pub from: String,
    pub reply_to: Option<String>,
    pub connections: u32,
    pub per_second: Option<u32>,
    pub timeout_seconds: u64,
}

/// Where a password or a signing secret is read when the channel is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// An environment variable of the daemon.
    Env(String),
    /// A file (its whole content, a final line break dropped).
    File(String),
}

#[derive(Debug, Clone)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub policy: QuietPolicy,
}

#[derive(Debug, Clone)]
pub struct BounceGuard {
    pub max_bounce_rate: f64,
    pub min_sent: u32,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub id: String,
    pub channel: String,
    pub purpose: TemplatePurpose,
    pub phase: Option<PhaseKind>,
    pub stage: Option<String>,
    pub segments: Vec<String>,
    pub tiers: Vec<String>,
    pub coupon: Option<String>,
    pub version: u32,
    pub subject: Option<String>,
    pub body: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChoice {
    /// The template that fits the phase, stage, segment and tier at sending time.
    Auto,
    Fixed(String),
}

#[derive(Debug, Clone)]
pub struct ReachOut {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub segment: String,
    pub channel: String,
    pub template: TemplateChoice,
    pub window: Window,
    /// Sending accounts; the channel's accounts when the plan names none.
    pub accounts: Vec<String>,
    pub follow_up: Option<String>,
    pub sender: Sender,
}

#[derive(Debug, Clone)]
pub struct FollowUpRule {
    pub id: String,
    pub description: Option<String>,
    pub if_no: FollowUpTrigger,
    pub after: PlanDuration,
    pub max_attempts: u32,
    pub template: TemplateChoice,
    /// The reach-out's own channel when `None`.
    pub channel: Option<String>,
    /// Always contains `Unsubscribe`: an unsubscribed customer is never followed up.
    pub stop_on: Vec<StopOn>,
}

#[derive(Debug, Clone, Default)]
pub struct Offers {
    pub coupons: Vec<Coupon>,
    pub tiered: Vec<TieredOffer>,
    pub discounts: Vec<Discount>,
    pub bundles: Vec<Bundle>,
}

#[derive(Debug, Clone)]
pub struct Coupon {
    pub id: String,
    pub name: String,
    pub value: Money,
    pub min_spend: Option<Money>,
    pub issue: CouponIssue,
    pub quantity: Option<u32>,
    pub per_customer: u32,
    pub code: Option<String>,
    pub window: Option<Window>,
}

#[derive(Debug, Clone)]
pub struct TieredOffer {
    pub id: String,
    pub name: String,
    /// (spend at least, amount off), strictly increasing in both.
    pub tiers: Vec<(Money, Money)>,
    pub window: Option<Window>,
}

#[derive(Debug, Clone)]
pub struct Discount {
    pub id: String,
    pub name: String,
    pub item: String,
    pub list_price: Money,
    pub price: Money,
    pub window: Window,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    pub id: String,
    pub name: String,
    pub items: Vec<(String, Money)>,
    pub price: Money,
    pub window: Option<Window>,
}

/// One of the plan's offers, whatever its kind.
#[derive(Debug, Clone, Copy)]
pub enum OfferRef<'a> {
    Coupon(&'a Coupon),
    Tiered(&'a TieredOffer),
    Discount(&'a Discount),
    Bundle(&'a Bundle),
}

impl OfferRef<'_> {
    pub fn id(&self) -> &str {
        match self {
            OfferRef::Coupon(offer) => &offer.id,
            OfferRef::Tiered(offer) => &offer.id,
            OfferRef::Discount(offer) => &offer.id,
            OfferRef::Bundle(offer) => &offer.id,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            OfferRef::Coupon(offer) => &offer.name,
            OfferRef::Tiered(offer) => &offer.name,
            OfferRef::Discount(offer) => &offer.name,
            OfferRef::Bundle(offer) => &offer.name,
        }
    }

    /// `coupon`, `tiered`, `discount` or `bundle`.
    pub fn kind(&self) -> &'static str {
        match self {
            OfferRef::Coupon(_) => "coupon",
            OfferRef::Tiered(_) => "tiered",
            OfferRef::Discount(_) => "discount",
            OfferRef::Bundle(_) => "bundle",
        }
    }

    /// When it may be used, when the plan says.
    pub fn window(&self) -> Option<Window> {
        match self {
            OfferRef::Coupon(offer) => offer.window,
            OfferRef::Tiered(offer) => offer.window,
            OfferRef::Discount(offer) => Some(offer.window),
            OfferRef::Bundle(offer) => offer.window,
        }
    }

    /// The spend an order must reach to use it: a coupon's `min_spend`, a tiered offer's first
    /// tier; `None` for discounts and bundles, which have none.
    pub fn threshold(&self) -> Option<Money> {
        match self {
            OfferRef::Coupon(coupon) => coupon.min_spend,
            OfferRef::Tiered(tiered) => tiered.tiers.first().map(|(spend, _)| *spend),
            OfferRef::Discount(_) | OfferRef::Bundle(_) => None,
        }
    }
}

impl Offers {
    /// Every offer, in the plan's order within each kind: coupons, tiered offers, discounts,
    /// bundles.
    pub fn all(&self) -> Vec<OfferRef<'_>> {
        self.coupons
            .iter()
            .map(OfferRef::Coupon)
            .chain(self.tiered.iter().map(OfferRef::Tiered))
            .chain(self.discounts.iter().map(OfferRef::Discount))
            .chain(self.bundles.iter().map(OfferRef::Bundle))
            .collect()
    }

    /// The offer an order names: by its id (exactly), or a coupon by its code (in any case, as
    /// buyers type codes).
    pub fn find(&self, name: &str) -> Option<OfferRef<'_>> {
        let name = name.trim();
        self.all()
            .into_iter()
            .find(|offer| offer.id() == name)
            .or_else(|| {
                self.coupons
                    .iter()
                    .find(|coupon| {
                        coupon
                            .code
                            .as_deref()
                            .is_some_and(|code| code.eq_ignore_ascii_case(name))
                    })
                    .map(OfferRef::Coupon)
            })
    }

    /// The names an order may use for the offers: every id, and every coupon's code.
    pub fn names(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|offer| offer.id().to_string())
            .chain(self.coupons.iter().filter_map(|coupon| coupon.code.clone()))
            .collect()
    }
}

impl Plan {
    pub fn phase(&self, kind: PhaseKind) -> Option<&Phase> {
        self.phases.iter().find(|phase| phase.kind == kind)
    }

    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.id == id)
    }

    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|channel| channel.id == id)
    }

    pub fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|template| template.id == id)
    }

    /// From the start of the first phase to the end of the last.
    pub fn span(&self) -> Window {
        let start = self.phases.first().map(|phase| phase.window.start);
        let end = self.phases.last().map(|phase| phase.window.end);
        match (start, end) {
            (Some(start), Some(end)) => Window { start, end },
            // A validated plan always has phases; an empty window is the honest answer otherwise.
            _ => Window {
                start: DateTime::<Utc>::MIN_UTC,
                end: DateTime::<Utc>::MIN_UTC,
            },
        }
    }

    /// The phase and stage in force at an instant, if any.
    pub fn position_at(&self, instant: DateTime<Utc>) -> Option<(PhaseKind, Option<&str>)> {
        let phase = self
            .phases
            .iter()
            .find(|phase| phase.window.contains(instant))?;
        let stage = if phase.kind == PhaseKind::Burst {
            self.stages
                .iter()
                .find(|stage| stage.window.contains(instant))
                .map(|stage| stage.id.as_str())
        } else {
            None
        };
        Some((phase.kind, stage))
    }
}
