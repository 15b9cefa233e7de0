//! The use cases that read or change campaigns: `plan apply`, `status`, `targets`, `pause`,
//! `resume`, `advance`, `cancel`, `history`. Each takes a request and answers with a view
//! (data, never words) or an [`AppError`]; `present::campaigns` makes the words.
//!
//! The views of `status` and `history` are in two parts: `body`, what `--json` prints and HTTP
//! sends (the same bytes as ever), and what the words need besides (the instant the answer is
//! for, the campaigns' states, which campaign was asked about). `present::view_json` shows the
//! body; the control socket carries the whole view, so a terminal that asked a daemon prints the
//! same words as one that opened the store.

use battleplan_core::campaign::events::PhaseEntered;
use battleplan_core::campaign::timeline::{local_rfc3339, localize_json, Step};
use battleplan_core::campaign::PlanVersion;
use battleplan_core::campaign::{self, next_due, CampaignEvent, CampaignState, Command, Status};
use battleplan_core::customer::events::CustomerEvent;
use battleplan_core::event::{Position, RecordedEvent, StreamId, StreamVersion};
use battleplan_core::funnel::{targets_against_actuals, TargetLine};
use battleplan_core::outreach::events::{stream_of as outreach_stream, OutreachEvent};
use battleplan_core::plan::model::{MetricKind, TargetValue};
use battleplan_core::plan::values::Money;
use battleplan_core::plan::{self, diagnostic};
use battleplan_core::task::{self, events::TaskEvent};
use battleplan_core::text::printable;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::app::{Action, AppError, Ctx};
use crate::kernel::projection::Campaigns;
use crate::kernel::runtime::{HandleError, Runtime, Who};

/// Writes a core value the way a `json!` literal did: through `serde_json::Value`, whose
/// objects keep their keys in alphabetical order (the bytes `--json` has always printed).
fn sorted<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

// ---------------------------------------------------------------------------------------------
// The views
// ---------------------------------------------------------------------------------------------

/// A campaign's next automated transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NextTransition {
    /// When, with the campaign's offset.
    pub at: String,
    /// Seconds from the answer's instant (negative: overdue).
    pub in_seconds: i64,
    /// The phase and stage it enters; `null` for the completion.
    #[serde(serialize_with = "sorted")]
    #[schema(value_type = Option<Object>)]
    pub step: Option<Step>,
    /// `enter` or `complete`.
    pub what: String,
}

/// One campaign's state, as `status --json` shows it (fields in alphabetical order, as ever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignStatus {
    pub campaign: String,
    pub description: String,
    pub name: String,
    pub next: Option<NextTransition>,
    pub plan_version: u32,
    /// When the status began, with the campaign's offset.
    pub since: Option<String>,
    /// The state's name (`Running`, `Paused`, ...).
    pub state: String,
    #[serde(serialize_with = "sorted")]
    #[schema(value_type = Object)]
    pub status: Status,
    /// Each stage target against what was measured (one campaign's status, when its plan has
    /// targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetRow>>,
    pub time_zone: Option<String>,
    /// How each channel stands: where it sends, and whether it sends, retries or is paused
    /// (one campaign's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<crate::app::outreach::ChannelGuardView>>,
}

/// Whether the metric of a target is money, a count or a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Money,
    Count,
    Rate,
}

/// A target's or an actual's value: money as exact text (`"300000.00"`), a count as an integer,
/// a rate as a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetAmount {
    Count(u64),
    Rate(f64),
    Money(Money),
}

/// Any of the three (not one of: a count, an integer, is a number too, as a rate of 1 may be).
impl utoipa::PartialSchema for TargetAmount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("A count")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .description(Some("A rate, as a fraction")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Money, as exact text")),
            )
            .description(Some(
                "A target's or an actual's value: money as exact text (`\"300000.00\"`), a count as an integer, a rate as a fraction.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for TargetAmount {}

/// A stage target beside what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetRow {
    /// `null` when not measured (or a ratio without paying buyers yet).
    pub actual: Option<TargetAmount>,
    pub kind: TargetKind,
    pub measured: bool,
    pub metric: String,
    /// actual / target; `null` without an actual or for a target of zero.
    pub ratio: Option<f64>,
    /// Where the actual comes from: `shop` (the shop's own numbers, `metrics import`) or
    /// `campaign` (the campaign's reaches and the orders and replies attributed to them);
    /// `null` when not measured.
    pub source: Option<String>,
    pub stage: String,
    pub target: TargetAmount,
}

/// `targets CAMPAIGN`: each stage target against what was measured. Its JSON is `body`, the
/// list `status CAMPAIGN --json` shows under `targets` (empty when the plan sets none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetsView {
    pub campaign: String,
    /// The plan's currency, to write money in.
    pub currency: String,
    pub body: Vec<TargetRow>,
}

/// What `status --json` prints: one campaign's status, or every campaign's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StatusBody {
    One(Box<CampaignStatus>),
    All(Vec<CampaignStatus>),
}

/// `status [CAMPAIGN]`. Its JSON is `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusView {
    pub body: StatusBody,
    /// The instant the answer is for.
    pub now: DateTime<Utc>,
    /// The campaigns shown, in the order shown.
    #[schema(value_type = Vec<Object>)]
    pub states: Vec<CampaignState>,
    /// One campaign's stage targets, when its plan has any.
    pub targets: Option<TargetsView>,
}

/// One line of the history (fields in alphabetical order, as `history --json` always printed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEvent {
    /// Who recorded it: a person, or a part of the system (`system:scheduler`).
    pub actor: String,
    /// `null` for an import's start or finish, which belong to no one campaign.
    pub campaign: Option<String>,
    pub command_id: Uuid,
    /// How late the scheduler entered a phase or completed the campaign.
    pub late_by_ms: Option<i64>,
    /// The event, instants with the campaign's offset (a plan's text left out).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The plan version in force once the event was applied (`null` when none was).
    pub plan_version: Option<u32>,
    /// The event's position in the log.
    pub position: u64,
    pub reason: Option<String>,
    /// With the campaign's offset.
    pub recorded_at: String,
    pub summary: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's version in its stream.
    pub version: u64,
}

/// A window of the history: up to an instant (`as_of`, then each campaign's state as of it),
/// or a page of it (`next_after`: the cursor for the next page, when there may be more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    pub events: Vec<HistoryEvent>,
    /// Ask again with `after` set to this for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
    /// Each campaign's state as of `as_of`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<CampaignStatus>>,
}

/// What `history --json` prints: every event (as ever, without `--as-of` and without paging),
/// or a window of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum HistoryBody {
    Events(Vec<HistoryEvent>),
    Window(HistoryWindow),
}

impl HistoryBody {
    pub fn events(&self) -> &[HistoryEvent] {
        match self {
            HistoryBody::Events(events) => events,
            HistoryBody::Window(window) => &window.events,
        }
    }
}

/// `history [CAMPAIGN] [--as-of T]`, or a page of it. Its JSON is `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// The campaign asked about; `None`: every campaign's (each line names its own).
    pub campaign: Option<String>,
    /// Only the events recorded up to this instant.
    pub as_of: Option<DateTime<Utc>>,
    pub body: HistoryBody,
    /// With `as_of`: each campaign's state as of it.
    #[schema(value_type = Vec<Object>)]
    pub states: Vec<CampaignState>,
}

/// An event a command recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedLine {
    pub position: u64,
    pub summary: String,
    #[serde(rename = "type")]
    pub event_type: String,
}

/// What `pause`, `resume`, `advance` and `cancel` answer with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActBody {
    pub campaign: String,
    /// What the command recorded (for a repeated command id: what its first run recorded).
    pub events: Vec<RecordedLine>,
    /// The command id had been handled before: nothing new was written.
    pub repeated: bool,
    /// The campaign after it.
    pub status: CampaignStatus,
}

/// A campaign command's answer. Its JSON is `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActView {
    pub body: ActBody,
    pub now: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub state: CampaignState,
}

/// A plan event `plan apply` recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlanRecorded {
    /// The campaign's first plan.
    Applied {
        name: String,
        position: u64,
        version: u32,
    },
    /// A new version of the plan, with what changed, one line each.
    Revised {
        changes: Vec<String>,
        position: u64,
        version: u32,
    },
}

/// What `plan apply` answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyBody {
    pub campaign: String,
    /// Empty when the file is the plan version in force already.
    pub events: Vec<PlanRecorded>,
    /// The plan version in force after it.
    pub plan_version: u32,
    pub repeated: bool,
    pub status: CampaignStatus,
    /// The plan's warnings, each as `FILE:LINE:COLUMN: warning[CODE] path: message`.
    pub warnings: Vec<String>,
}

/// A plan apply's answer. Its JSON is `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyView {
    pub body: ApplyBody,
    pub now: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub state: CampaignState,
}

// ---------------------------------------------------------------------------------------------
// status, targets
// ---------------------------------------------------------------------------------------------

/// A campaign's state as data, at `now`.
pub fn campaign_status(state: &CampaignState, now: DateTime<Utc>) -> CampaignStatus {
    let zone = state.zone();
    let next = next_due(state).map(|due| {
        let (what, step) = match &due.command {
            Command::Enter { step, .. } => ("enter", Some(step.clone())),
            _ => ("complete", None),
        };
        NextTransition {
            at: local_rfc3339(zone, due.at),
            in_seconds: (due.at - now).num_seconds(),
            step,
            what: what.to_string(),
        }
    });
    CampaignStatus {
        campaign: state.id.clone(),
        description: state.describe(),
        name: state.name.clone(),
        next,
        plan_version: state.plan_version,
        since: state.since.map(|since| local_rfc3339(zone, since)),
        state: state.kind().name().to_string(),
        status: state.status.clone(),
        targets: None,
        time_zone: state.planned.as_ref().map(|t| t.time_zone.clone()),
        channels: None,
    }
}

/// `status [CAMPAIGN]`: one campaign (with its stage targets) or every campaign.
pub async fn status(ctx: &Ctx<'_>, campaign: Option<&str>) -> Result<StatusView, AppError> {
    let now = ctx.now;
    let Some(id) = campaign else {
        let states: Vec<CampaignState> = ctx.campaigns().await?.states.values().cloned().collect();
        return Ok(StatusView {
            body: StatusBody::All(states.iter().map(|s| campaign_status(s, now)).collect()),
            now,
            states,
            targets: None,
        });
    };
    let state = ctx.campaign(id).await?.clone();
    // For one campaign, the boss's view: each stage target against what was measured.
    let targets = match stage_targets(ctx, id).await {
        Ok(targets) => Some(targets).filter(|targets| !targets.body.is_empty()),
        Err(AppError::NotFound { .. }) => None,
        Err(error) => return Err(error),
    };
    let mut one = campaign_status(&state, now);
    one.targets = targets.as_ref().map(|targets| targets.body.clone());
    one.channels = match ctx.plan(id).await {
        Ok(plan) => {
            ctx.caught_up().await?;
            let outreach = ctx.runtime.outreach.lock().await;
            Some(crate::app::outreach::channel_views(&plan, &outreach, id))
        }
        Err(AppError::NotFound { .. }) => None,
        Err(error) => return Err(error),
    };
    Ok(StatusView {
        body: StatusBody::One(Box::new(one)),
        now,
        states: vec![state],
        targets,
    })
}

/// `targets CAMPAIGN`: each stage target against what was measured.
pub async fn targets(ctx: &Ctx<'_>, campaign: &str) -> Result<TargetsView, AppError> {
    stage_targets(ctx, campaign).await
}

async fn stage_targets(ctx: &Ctx<'_>, campaign: &str) -> Result<TargetsView, AppError> {
    let plan = ctx.plan(campaign).await?;
    let mut view = TargetsView {
        campaign: campaign.to_string(),
        currency: plan.campaign.currency.clone(),
        body: Vec::new(),
    };
    if plan.targets.is_empty() {
        return Ok(view);
    }
    ctx.caught_up().await?;
    let (actuals, shop) = {
        let mut boards = ctx.runtime.boards.lock().await;
        let shop = crate::app::metrics::stage_figures(&boards.shop, &plan, ctx.now);
        (boards.funnel.stage_actuals_memo(&plan, ctx.now), shop)
    };
    view.body = targets_against_actuals(&plan, &actuals, &shop)
        .iter()
        .map(target_row)
        .collect();
    Ok(view)
}

fn target_row(line: &TargetLine) -> TargetRow {
    TargetRow {
        actual: line.actual.map(amount),
        kind: match battleplan_core::funnel::value_kind(line.target) {
            MetricKind::Money => TargetKind::Money,
            MetricKind::Count => TargetKind::Count,
            MetricKind::Rate => TargetKind::Rate,
        },
        measured: line.actual.is_some(),
        metric: line.metric.key().to_string(),
        ratio: line.ratio,
        source: line.source.map(|source| source.key().to_string()),
        stage: line.stage.clone(),
        target: amount(line.target),
    }
}

fn amount(value: TargetValue) -> TargetAmount {
    match value {
        TargetValue::Money(money) => TargetAmount::Money(money),
        TargetValue::Count(count) => TargetAmount::Count(count),
        TargetValue::Rate(rate) => TargetAmount::Rate(rate),
    }
}

/// The zone to name an instant in when it belongs to no one campaign (an import's, say): the
/// campaigns' zone when they all share one, UTC when there is none or they differ.
pub fn zone_of_all(campaigns: &Campaigns) -> chrono_tz::Tz {
    let mut zones = campaigns.states.values().map(CampaignState::zone);
    let first = zones.next().unwrap_or(chrono_tz::Tz::UTC);
    if zones.all(|zone| zone == first) {
        first
    } else {
        chrono_tz::Tz::UTC
    }
}

/// [`zone_of_all`] of the campaigns the request sees.
pub async fn people_zone_of(ctx: &Ctx<'_>) -> Result<chrono_tz::Tz, AppError> {
    Ok(zone_of_all(ctx.campaigns().await?))
}

/// [`zone_of_all`] of the campaigns caught up in memory, for callers without a [`Ctx`].
pub async fn people_zone(runtime: &Runtime) -> Result<chrono_tz::Tz, HandleError> {
    let store = runtime.store.as_ref();
    let mut campaigns = Campaigns::load(store).await?;
    campaigns.catch_up_in_memory(store).await?;
    Ok(zone_of_all(&campaigns))
}

// ---------------------------------------------------------------------------------------------
// pause, resume, advance, cancel; plan apply
// ---------------------------------------------------------------------------------------------

pub async fn act(
    ctx: &Ctx<'_>,
    campaign: &str,
    action: Action,
    request: &Who,
) -> Result<ActView, AppError> {
    let runtime = ctx.runtime;
    // One stream's read, not the whole projection's: a draft is a campaign no plan created.
    let (state, _) = runtime.load(campaign).await?;
    if state.kind() == campaign::StateKind::Draft {
        return Err(AppError::UnknownCampaign {
            campaign: campaign.to_string(),
            known: ctx.known().await?,
        });
    }
    let handled = runtime.handle(campaign, &action.command(), request).await?;
    let zone = handled.state.zone();
    let mut events = Vec::new();
    for event in &handled.events {
        if let Ok(Some(decoded)) = CampaignEvent::decode(event) {
            events.push(RecordedLine {
                position: event.position.0,
                summary: decoded.summary(zone),
                event_type: event.event_type.clone(),
            });
        }
    }
    Ok(ActView {
        body: ActBody {
            campaign: campaign.to_string(),
            events,
            repeated: handled.repeated,
            status: campaign_status(&handled.state, ctx.now),
        },
        now: ctx.now,
        state: handled.state,
    })
}

pub async fn apply_plan(
    ctx: &Ctx<'_>,
    file_name: &str,
    source: &str,
    request: &Who,
) -> Result<ApplyView, AppError> {
    let checked = plan::check(source.as_bytes());
    let mut lines: Vec<String> = checked
        .diagnostics
        .iter()
        .map(|diagnostic| diagnostic::render(file_name, Some(&checked.line_index), diagnostic))
        .collect();
    let Some(plan) = checked.plan.as_ref() else {
        lines.push(format!(
            "{file_name}: the plan has errors; nothing was applied (see `battleplan validate {file_name}`)"
        ));
        return Err(AppError::InvalidPlan { diagnostics: lines });
    };
    let version = PlanVersion::of(plan, source);
    let id = version.campaign.clone();
    let handled = ctx
        .runtime
        .handle(&id, &Command::ApplyPlan(Box::new(version)), request)
        .await?;
    let mut events = Vec::new();
    for event in &handled.events {
        match CampaignEvent::decode(event) {
            Ok(Some(CampaignEvent::PlanApplied(applied))) => events.push(PlanRecorded::Applied {
                name: applied.name.clone(),
                position: event.position.0,
                version: applied.version,
            }),
            Ok(Some(CampaignEvent::PlanRevised(revised))) => events.push(PlanRecorded::Revised {
                changes: revised.changes.clone(),
                position: event.position.0,
                version: revised.version,
            }),
            _ => {}
        }
    }
    Ok(ApplyView {
        body: ApplyBody {
            campaign: id,
            events,
            plan_version: handled.state.plan_version,
            repeated: handled.repeated,
            status: campaign_status(&handled.state, ctx.now),
            warnings: lines,
        },
        now: ctx.now,
        state: handled.state,
    })
}

// ---------------------------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------------------------

/// One event of the history as data.
fn history_event(
    event: &RecordedEvent,
    campaign: Option<&str>,
    summary: String,
    payload: serde_json::Value,
    plan_version: Option<u32>,
    late_by_ms: Option<i64>,
    zone: chrono_tz::Tz,
) -> HistoryEvent {
    let mut payload = payload;
    localize_json(&mut payload, zone);
    HistoryEvent {
        actor: event.metadata.actor.clone(),
        campaign: campaign.map(str::to_string),
        command_id: event.metadata.command_id.0,
        late_by_ms,
        payload,
        plan_version,
        position: event.position.0,
        reason: event.metadata.reason.clone(),
        recorded_at: local_rfc3339(zone, event.recorded_at),
        summary,
        event_type: event.event_type.clone(),
        version: event.version.0,
    }
}

/// A campaign event as the history shows it.
fn campaign_line(
    event: &RecordedEvent,
    campaign: &str,
    decoded: &CampaignEvent,
    state: &CampaignState,
) -> HistoryEvent {
    let mut payload = decoded.to_json();
    // The plan file is in the event; the history shows its digest, `export` the whole text.
    if let Some(object) = payload.as_object_mut() {
        object.remove("source");
        object.remove("outline");
    }
    let late = match decoded {
        CampaignEvent::PhaseEntered(PhaseEntered { late_by_ms, .. }) => Some(*late_by_ms),
        CampaignEvent::CampaignCompleted(c) => Some(c.late_by_ms),
        _ => None,
    };
    history_event(
        event,
        Some(campaign),
        decoded.summary(state.zone()),
        payload,
        Some(state.plan_version),
        late,
        state.zone(),
    )
}

/// An outbox or task event worth a line of the history: what people did (a channel resumed, a
/// task done) and the system's decisions about a whole reach-out or channel (a reach-out
/// planned, a channel paused by the bounce guard). What was decided for each customer is
/// `explain`'s. Returns the campaign, the words and the payload.
fn activity(
    event: &RecordedEvent,
) -> Result<Option<(String, String, serde_json::Value)>, HandleError> {
    if OutreachEvent::holds(&event.event_type) {
        return Ok(OutreachEvent::decode(event)?.and_then(|decoded| {
            let words = decoded.summary()?;
            Some((decoded.campaign().to_string(), words, decoded.to_json()))
        }));
    }
    if TaskEvent::holds(&event.event_type) {
        if let Some(TaskEvent::TaskDone(done)) = TaskEvent::decode(event)? {
            let mut words = format!("task {} done", done.occurrence);
            // The note is the command's reason too, shown on the line below when it is.
            if let Some(note) = done
                .note
                .as_ref()
                .filter(|note| event.metadata.reason.as_ref() != Some(*note))
            {
                words.push_str(&format!(": \"{note}\""));
            }
            let payload = TaskEvent::TaskDone(done.clone()).to_json();
            return Ok(Some((done.campaign, words, payload)));
        }
    }
    Ok(None)
}

/// Whether an event starts or finishes a customers or outcomes import: the history's lines
/// about imports (its rows are `explain`'s).
fn import_boundary(event: &RecordedEvent) -> bool {
    matches!(
        event.event_type.as_str(),
        "ImportStarted" | "ImportFinished"
    )
}

/// An import's start or finish in words: who imported which file (its name, as given, and
/// digest), when, and how many rows; `None` for other events.
fn import_activity(
    event: &RecordedEvent,
) -> Result<Option<(String, serde_json::Value)>, HandleError> {
    if !import_boundary(event) {
        return Ok(None);
    }
    let Some(decoded) = CustomerEvent::decode(event)? else {
        return Ok(None);
    };
    let short = |digest: &str| digest.get(..12).unwrap_or(digest).to_string();
    let plural = |count: u64| if count == 1 { "" } else { "s" };
    let words = match &decoded {
        CustomerEvent::ImportStarted(started) => {
            let mut words = format!(
                "{} import of {} (blake3 {}) started: {} row{} to record",
                started.kind.as_str(),
                printable(&started.file),
                short(&started.digest),
                started.rows,
                plural(started.rows)
            );
            if started.skipped_total > 0 {
                words.push_str(&format!(
                    ", {} bad row{} skipped",
                    started.skipped_total,
                    plural(started.skipped_total)
                ));
            }
            words
        }
        CustomerEvent::ImportFinished(finished) => format!(
            "{} import (blake3 {}) finished: {} row{} recorded, {} skipped",
            finished.kind.as_str(),
            short(&finished.digest),
            finished.rows,
            plural(finished.rows),
            finished.skipped
        ),
        CustomerEvent::CustomerRecorded(_) | CustomerEvent::OutcomeRecorded(_) => return Ok(None),
    };
    let mut payload = decoded.to_json();
    // The skipped rows' details are the import's own report (and `export`'s); the history
    // keeps its lines short.
    if let Some(object) = payload.as_object_mut() {
        if object
            .get("skipped")
            .is_some_and(serde_json::Value::is_array)
        {
            object.remove("skipped");
        }
    }
    Ok(Some((words, payload)))
}

/// A period of the shop's numbers recorded, in words: which period, from which file and line,
/// the figures, and what they correct; `None` for other events.
fn metrics_activity(
    event: &RecordedEvent,
) -> Result<Option<(String, serde_json::Value)>, HandleError> {
    use battleplan_core::metrics::{Figure, FigureValue, MetricsEvent};
    if !MetricsEvent::holds(&event.event_type) {
        return Ok(None);
    }
    let Some(MetricsEvent::MetricsRecorded(recorded)) = MetricsEvent::decode(event)? else {
        return Ok(None);
    };
    let value = |value: FigureValue| match value {
        FigureValue::Count(count) => battleplan_core::plan::values::grouped(count),
        FigureValue::Money(money) => money.to_string(),
    };
    let mut parts: Vec<String> = Figure::ALL
        .into_iter()
        .filter_map(|figure| {
            let new = recorded.figures.get(figure)?;
            Some(match recorded.corrects.get(figure) {
                Some(old) => format!("{} {} (was {})", figure.key(), value(new), value(old)),
                None => format!("{} {}", figure.key(), value(new)),
            })
        })
        .collect();
    for (list, word) in [
        (&recorded.hot_products, "hot product"),
        (&recorded.hot_keywords, "hot keyword"),
    ] {
        if let Some(list) = list {
            parts.push(format!(
                "{} {word}{}",
                list.len(),
                if list.len() == 1 { "" } else { "s" }
            ));
        }
    }
    let verb = if recorded.corrects.is_empty() {
        "recorded"
    } else {
        "corrected"
    };
    let words = format!(
        "shop's numbers for {} ({}) {verb} from {}, line {}: {}",
        recorded.period,
        recorded.zone,
        printable(&recorded.file),
        recorded.line,
        parts.join(", ")
    );
    let payload = MetricsEvent::MetricsRecorded(recorded).to_json();
    Ok(Some((words, payload)))
}

/// Every event of a stream recorded by then, in order; and whether the stream has any event.
async fn whole_stream(
    runtime: &Runtime,
    stream: &StreamId,
    recorded_by_then: impl Fn(&RecordedEvent) -> bool,
) -> Result<(bool, Vec<RecordedEvent>), HandleError> {
    let store = runtime.store.as_ref();
    let mut from = StreamVersion(1);
    let mut any = false;
    let mut events = Vec::new();
    loop {
        let batch = store.read_stream(stream, from, 1_000).await?;
        let Some(last) = batch.last() else { break };
        from = last.version.next();
        let full = batch.len() == 1_000;
        any = true;
        events.extend(batch.into_iter().filter(|event| recorded_by_then(event)));
        if !full {
            break;
        }
    }
    Ok((any, events))
}

/// Whether an outbox or task event type is one the history shows a line for (see
/// [`activity`]).
fn history_line(event_type: &str) -> bool {
    OutreachEvent::SUMMARISED.contains(&event_type)
        || event_type == <battleplan_core::task::TaskDone as battleplan_core::event::upcast::EventPayload>::EVENT_TYPE
}

/// The history's lines as the events come, in log order, each with the state its event led to;
/// only the page's lines are made.
struct Replay {
    /// The zone of the lines that belong to no one campaign.
    people: chrono_tz::Tz,
    after: Option<u64>,
    limit: Option<usize>,
    /// Whether to stop once a line past the page is found.
    stop_when_full: bool,
    states: std::collections::BTreeMap<String, CampaignState>,
    lines: Vec<HistoryEvent>,
    /// A line past the page was found: the page's last line is the next page's cursor.
    more: bool,
}

impl Replay {
    /// Takes the next event; `true` when nothing after it is needed.
    fn feed(&mut self, event: &RecordedEvent) -> Result<bool, AppError> {
        let wanted = self.after.is_none_or(|after| event.position.0 > after);
        let full = self.limit.is_some_and(|limit| self.lines.len() >= limit);
        let Some(id) = campaign::campaign_of(&event.stream) else {
            if !wanted {
                return Ok(false);
            }
            let shop = match metrics_activity(event)? {
                Some(found) => Some(found),
                None => import_activity(event)?,
            };
            let line = if let Some((words, payload)) = shop {
                // The customer book and the shop's numbers are every campaign's: the line names
                // none, and reads in the campaigns' zone (UTC when they differ or there are
                // none).
                Some(history_event(
                    event,
                    None,
                    words,
                    payload,
                    None,
                    None,
                    self.people,
                ))
            } else if let Some((id, words, payload)) = activity(event)? {
                let state = self.states.get(&id);
                let version = state.map(|state| state.plan_version);
                let zone = state.map_or(chrono_tz::Tz::UTC, CampaignState::zone);
                Some(history_event(
                    event,
                    Some(&id),
                    words,
                    payload,
                    version,
                    None,
                    zone,
                ))
            } else {
                None
            };
            return Ok(line.is_some_and(|line| self.take(line, full)));
        };
        let Some(decoded) = CampaignEvent::decode(event).map_err(HandleError::from)? else {
            return Ok(false);
        };
        let state = self
            .states
            .remove(id)
            .unwrap_or_else(|| CampaignState::draft(id));
        let state = campaign::evolve(state, &decoded, &campaign::events::EventMeta::of(event));
        let done = wanted && self.take(campaign_line(event, id, &decoded, &state), full);
        self.states.insert(id.to_string(), state);
        Ok(done)
    }

    /// A line of the answer: on the page, or the sign that there is more. `true` when nothing
    /// after it is needed.
    fn take(&mut self, line: HistoryEvent, full: bool) -> bool {
        if full {
            self.more = true;
            return self.stop_when_full;
        }
        self.lines.push(line);
        false
    }
}

/// What a history request asks for besides the campaign.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery {
    /// Only the events recorded up to this instant, then each campaign's state as of it.
    pub as_of: Option<DateTime<Utc>>,
    /// Only the events after this log position.
    pub after: Option<u64>,
    /// At most this many events.
    pub limit: Option<usize>,
}

/// `history [CAMPAIGN] [--as-of T]`: one campaign's events, or every campaign's interleaved in
/// the order they were recorded (by log position). With `as_of`, only the events recorded up
/// to T are read into the answer, and each campaign's state as of T follows, computed by
/// replaying those events through `campaign::evolve`. Each line carries the plan version in
/// force once the event was applied. With `after` and `limit`, one page of those lines: the
/// replay still starts at the beginning (a line's plan version depends on what came before),
/// and `next_after` says where the next page starts when there may be one.
pub async fn history(
    ctx: &Ctx<'_>,
    campaign: Option<&str>,
    query: HistoryQuery,
) -> Result<HistoryView, AppError> {
    let HistoryQuery {
        as_of,
        after,
        limit,
    } = query;
    if limit == Some(0) {
        return Err(AppError::invalid(
            "a page of the history holds at least one event (limit 1 or more)",
        ));
    }
    let runtime = ctx.runtime;
    let store = runtime.store.as_ref();
    let recorded_by_then =
        |event: &RecordedEvent| as_of.is_none_or(|instant| event.recorded_at <= instant);
    let mut replay = Replay {
        people: people_zone_of(ctx).await?,
        after,
        limit,
        // With `as_of`, every campaign's state as of it is part of the answer: replay to the end.
        stop_when_full: as_of.is_none(),
        states: std::collections::BTreeMap::new(),
        lines: Vec::new(),
        more: false,
    };
    match campaign {
        Some(id) => {
            // A name that cannot be a campaign's names none, as one no plan created.
            let stream = campaign::stream_of(id).ok();
            let (any, mut events) = match &stream {
                Some(stream) => whole_stream(runtime, stream, recorded_by_then).await?,
                None => (false, Vec::new()),
            };
            if !any {
                return Err(AppError::UnknownCampaign {
                    campaign: id.to_string(),
                    known: ctx.known().await?,
                });
            }
            // The outbox's and the task board's events that are lines of the history (a few
            // among the campaign's many sends), in log order with its own.
            for stream in [outreach_stream(id), task::stream_of(id)]
                .into_iter()
                .flatten()
            {
                let lines =
                    crate::kernel::picked::picked(runtime, &stream, "history", history_line)
                        .await?;
                events.extend(lines.into_iter().filter(|event| recorded_by_then(event)));
            }
            // The shop's numbers of the campaign's days (from its first phase's start to its
            // last phase's end), corrections included.
            if let Some((start, end)) = match ctx.plan(id).await {
                Ok(plan) => crate::app::metrics::span(&plan),
                Err(_) => None,
            } {
                let stream = battleplan_core::metrics::stream().map_err(AppError::internal)?;
                let shop =
                    crate::kernel::picked::picked(runtime, &stream, "history", |_| true).await?;
                for event in shop.into_iter().filter(|event| recorded_by_then(event)) {
                    let period_start = match battleplan_core::metrics::MetricsEvent::decode(&event)
                        .map_err(HandleError::from)?
                    {
                        Some(battleplan_core::metrics::MetricsEvent::MetricsRecorded(recorded)) => {
                            Some(recorded.start)
                        }
                        None => None,
                    };
                    if period_start.is_some_and(|at| start <= at && at < end) {
                        events.push(event);
                    }
                }
            }
            events.sort_by_key(|event| event.position);
            for event in &events {
                if replay.feed(event)? {
                    break;
                }
            }
        }
        None => {
            // Before a page, only the campaigns' own events matter (for the states they led
            // to): read from their streams, not the whole log; from the page on, the log, as
            // far as the page needs.
            let mut from = Position::START;
            if let Some(after) = after {
                let mut before = Vec::new();
                for id in ctx.known().await? {
                    let Ok(stream) = campaign::stream_of(&id) else {
                        continue;
                    };
                    let (_, own) = whole_stream(runtime, &stream, |event| {
                        event.position.0 <= after && recorded_by_then(event)
                    })
                    .await?;
                    before.extend(own);
                }
                before.sort_by_key(|event| event.position);
                for event in &before {
                    replay.feed(event)?;
                }
                from = Position(after);
            }
            'log: loop {
                let batch = store.read_all(from, 10_000).await?;
                let Some(last) = batch.last() else { break };
                from = last.position;
                let full = batch.len() == 10_000;
                for event in batch.iter().filter(|event| {
                    (campaign::campaign_of(&event.stream).is_some()
                        || OutreachEvent::holds(&event.event_type)
                        || TaskEvent::holds(&event.event_type)
                        || battleplan_core::metrics::MetricsEvent::holds(&event.event_type)
                        || import_boundary(event))
                        && recorded_by_then(event)
                }) {
                    if replay.feed(event)? {
                        break 'log;
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }
    let Replay {
        states,
        lines,
        more,
        ..
    } = replay;
    let next_after = if more {
        lines.last().map(|line| line.position)
    } else {
        None
    };
    let paged = after.is_some() || limit.is_some();
    let body = match as_of {
        None if !paged => HistoryBody::Events(lines),
        None => HistoryBody::Window(HistoryWindow {
            as_of: None,
            events: lines,
            next_after,
            states: None,
        }),
        Some(as_of) => HistoryBody::Window(HistoryWindow {
            as_of: Some(local_rfc3339(
                states
                    .values()
                    .next()
                    .map_or(chrono_tz::Tz::UTC, CampaignState::zone),
                as_of,
            )),
            events: lines,
            next_after,
            states: Some(
                states
                    .values()
                    .map(|state| campaign_status(state, as_of))
                    .collect(),
            ),
        }),
    };
    Ok(HistoryView {
        campaign: campaign.map(str::to_string),
        as_of,
        body,
        states: if as_of.is_some() {
            states.into_values().collect()
        } else {
            Vec::new()
        },
    })
}
