//! The shop's own numbers: `metrics import FILE` (and `POST /api/v1/imports/metrics`) records
//! the figures a platform's data tool exported, and `metrics show CAMPAIGN` (and `GET
//! /api/v1/campaigns/{id}/metrics`) shows them per day and per stage, with DOMAIN.md's formulas.
//! docs/metrics.md has the file format and the rules.
//!
//! An import is checked whole first: any bad row (located) refuses the file and records
//! nothing. Then only the periods whose figures or lists change are recorded, in one append to
//! the stream `shop-metrics` made with its expected version, so the same file twice records
//! nothing and two imports at once cannot both decide on the same figures.

use std::path::PathBuf;

use battleplan_adapters::import::{self as file, Format, Item, ReadError};
use battleplan_core::campaign::timeline::local_rfc3339;
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, StoreError, StreamVersion,
};
use battleplan_core::metrics::row::{MetricsRow, MetricsSchema};
use battleplan_core::metrics::{
    formulas, plan_import, Figure, Figures, Hot, MetricsEvent, Numbers, ShopMetrics,
};
use battleplan_core::plan::model::{Plan, TargetValue};
use battleplan_core::plan::values::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::campaigns::TargetAmount;
use crate::app::import::{ProblemLine, LISTED_PROBLEMS};
use crate::app::{AppError, Ctx};
use crate::kernel::runtime::{derived_command_id, HandleError};

/// The most rows a metrics file may have: ten years of hours. A shop's numbers are a few
/// hundred rows; a file beyond this is another kind of file.
pub const MAX_ROWS: u64 = 100_000;

/// How often an import decides again when another import moved the stream meanwhile.
const ATTEMPTS: usize = 5;

/// `metrics import`, as it travels to the owner of the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsImportRequest {
    /// Absolute, so that a daemon running elsewhere finds the file.
    pub path: PathBuf,
    /// The file's name as the user wrote it, for messages and the events.
    pub file_name: String,
    pub format: Format,
    /// The zone of the file's dates; by default, the zone every campaign shares.
    pub zone: Option<String>,
    pub actor: String,
}

/// What became of a metrics import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricsOutcome {
    /// Periods recorded (new, or corrected).
    Recorded,
    /// Every figure of the file was recorded already: nothing changed.
    Unchanged,
    /// Refused whole: nothing was recorded.
    Rejected,
}

/// A period recorded now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedPeriod {
    /// `2026-09-03`, or `2026-09-03 14:00` for an hour.
    pub period: String,
    /// The figures that had another value before (a correction), by key.
    pub corrected: Vec<String>,
    /// The line of the period's first row.
    pub line: u64,
}

/// `metrics import`'s answer. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsImportView {
    /// Bad rows (a refused file).
    pub bad_rows: u64,
    /// blake3 of the file's bytes, hex; `null` when it could not be read to its end.
    pub digest: Option<String>,
    pub file: String,
    /// The first problems, where they are (all are counted in `problems`).
    pub listed: Vec<ProblemLine>,
    pub outcome: MetricsOutcome,
    /// Periods the file gives.
    pub periods: u64,
    pub problems: u64,
    /// The periods recorded now, in order.
    pub recorded: Vec<RecordedPeriod>,
    /// Good rows.
    pub rows: u64,
    /// The stream's first and last version this import recorded (empty when none).
    pub stream_versions: Vec<u64>,
    /// Periods the file gives exactly as recorded before.
    pub unchanged: u64,
    /// The zone the file's dates were read in.
    pub zone: String,
}

impl MetricsImportView {
    pub fn refused(&self) -> bool {
        self.outcome == MetricsOutcome::Rejected
    }
}

/// The zone of a metrics file: the one asked for, or the one every campaign shares.
async fn zone_of(ctx: &Ctx<'_>, asked: Option<&str>) -> Result<chrono_tz::Tz, AppError> {
    if let Some(name) = asked {
        return name.parse::<chrono_tz::Tz>().map_err(|_| {
            let hint = battleplan_core::plan::values::suggest_zone(name)
                .map(|near| format!("did you mean `{near}`? "))
                .unwrap_or_default();
            AppError::invalid(format_args!(
                "unknown time zone `{name}`; {hint}write an IANA name, like Asia/Shanghai"
            ))
        });
    }
    let campaigns = ctx.campaigns().await?;
    let mut zones: Vec<chrono_tz::Tz> = campaigns
        .states
        .values()
        .filter(|state| state.planned.is_some())
        .map(battleplan_core::campaign::CampaignState::zone)
        .collect();
    zones.sort_by_key(|zone| zone.name());
    zones.dedup();
    match zones.as_slice() {
        [zone] => Ok(*zone),
        [] => Err(AppError::invalid(
            "no campaign has been applied yet, so the file's dates have no zone: say --zone (an IANA name, like Asia/Shanghai)",
        )),
        several => Err(AppError::invalid(format_args!(
            "the campaigns are in several zones ({}): say --zone for the file's dates",
            several
                .iter()
                .map(|zone| zone.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// What the reading found: good rows, or the problems.
struct Read {
    digest: Option<String>,
    rows: Vec<MetricsRow>,
    bad_rows: u64,
    problems: u64,
    listed: Vec<ProblemLine>,
}

fn read_file(request: &MetricsImportRequest, schema: MetricsSchema) -> Result<Read, AppError> {
    let mut read = Read {
        digest: None,
        rows: Vec::new(),
        bad_rows: 0,
        problems: 0,
        listed: Vec::new(),
    };
    let mut too_many = false;
    let result = file::read(
        &request.path,
        schema,
        request.format,
        &|_| {},
        &mut |item| {
            match item {
                Item::Row { row, .. } => {
                    if read.rows.len() as u64 >= MAX_ROWS {
                        too_many = true;
                        return false;
                    }
                    read.rows.push(row);
                }
                Item::Bad { problems, .. } => {
                    read.bad_rows += 1;
                    read.problems += problems.len() as u64;
                    let room = LISTED_PROBLEMS.saturating_sub(read.listed.len());
                    read.listed
                        .extend(problems.iter().take(room).map(ProblemLine::from));
                }
            }
            true
        },
    );
    match result {
        Ok(done) => read.digest = Some(done.digest),
        Err(ReadError::Stopped) if too_many => {
            return Err(AppError::invalid(format_args!(
                "{} has more than {MAX_ROWS} rows; a metrics file holds a shop's days and hours (docs/metrics.md): split it",
                battleplan_core::text::printable(&request.file_name)
            )))
        }
        Err(ReadError::File(problems)) => {
            read.problems = problems.len() as u64;
            read.listed = problems.iter().map(ProblemLine::from).collect();
            read.bad_rows = 0;
        }
        Err(ReadError::Io(message)) => return Err(AppError::invalid(message)),
        Err(ReadError::Stopped) => {
            return Err(AppError::internal("the file's reader stopped early"))
        }
    }
    Ok(read)
}

/// `metrics import FILE`.
pub async fn import(
    ctx: &Ctx<'_>,
    request: &MetricsImportRequest,
) -> Result<MetricsImportView, AppError> {
    file::admissible(&request.path).map_err(AppError::invalid)?;
    let zone = zone_of(ctx, request.zone.as_deref()).await?;
    let schema = MetricsSchema { zone, now: ctx.now };
    let reading = request.clone();
    let read = tokio::task::spawn_blocking(move || read_file(&reading, schema))
        .await
        .map_err(|error| AppError::internal(format_args!("reading the file failed: {error}")))??;
    let mut view = MetricsImportView {
        bad_rows: read.bad_rows,
        digest: read.digest.clone(),
        file: request.file_name.clone(),
        listed: read.listed,
        outcome: MetricsOutcome::Rejected,
        periods: 0,
        problems: read.problems,
        recorded: Vec::new(),
        rows: read.rows.len() as u64,
        stream_versions: Vec::new(),
        unchanged: 0,
        zone: zone.name().to_string(),
    };
    let (false, Some(digest)) = (view.problems > 0, read.digest) else {
        return Ok(view);
    };
    let mut periods: Vec<_> = read.rows.iter().map(|row| row.period).collect();
    periods.sort_unstable();
    periods.dedup();
    view.periods = periods.len() as u64;
    let stream = battleplan_core::metrics::stream().map_err(AppError::internal)?;
    let runtime = ctx.runtime;
    for _ in 0..ATTEMPTS {
        let version = runtime.store.stream_version(&stream).await?;
        // The projection must reflect every event of the stream the append will follow.
        let mut shop = caught_up_shop(ctx, version).await?;
        let events = match plan_import(
            &shop,
            read.rows.clone(),
            zone.name(),
            &request.file_name,
            &digest,
        ) {
            Ok(events) => events,
            Err(clashes) => {
                view.bad_rows = clashes.len() as u64;
                view.problems = clashes.len() as u64;
                view.listed = clashes
                    .iter()
                    .take(LISTED_PROBLEMS)
                    .map(|clash| ProblemLine {
                        column: Some(clash.column.clone()),
                        line: clash.line,
                        position: None,
                        reason: clash.reason.clone(),
                    })
                    .collect();
                return Ok(view);
            }
        };
        view.unchanged = view.periods - events.len() as u64;
        if events.is_empty() {
            view.outcome = MetricsOutcome::Unchanged;
            return Ok(view);
        }
        let recorded: Vec<RecordedPeriod> = events
            .iter()
            .map(|event| RecordedPeriod {
                period: event.period.to_string(),
                corrected: Figure::ALL
                    .into_iter()
                    .filter(|figure| event.corrects.get(*figure).is_some())
                    .map(|figure| figure.key().to_string())
                    .collect(),
                line: event.line,
            })
            .collect();
        let count = events.len() as u64;
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            let at = ctx.now;
            shop.apply(&event, at);
            encoded.push(
                MetricsEvent::MetricsRecorded(event)
                    .encode(EventId(runtime.ids.next_id(ctx.now)))
                    .map_err(|error| AppError::internal(error.to_string()))?,
            );
        }
        let append = Append {
            stream: stream.clone(),
            expected: if version == StreamVersion::NONE {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            },
            events: encoded,
            metadata: Metadata {
                actor: request.actor.clone(),
                command_id: CommandId(derived_command_id(&format!(
                    "metrics import\n{digest}\n{}",
                    version.0
                ))),
                causation_id: None,
                correlation_id: None,
                reason: None,
            },
            recorded_at: ctx.now,
        };
        match runtime.append_in_order(append).await {
            Ok(outcome) => {
                view.outcome = MetricsOutcome::Recorded;
                view.recorded = recorded;
                view.stream_versions = vec![outcome.first_version.0, outcome.last_version.0];
                debug_assert_eq!(outcome.last_version.0 - outcome.first_version.0 + 1, count);
                return Ok(view);
            }
            Err(HandleError::Store(StoreError::Conflict { .. })) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(AppError::Conflict {
        message: format!(
            "the shop's numbers kept changing while {} was imported (other imports under way); run the command again",
            battleplan_core::text::printable(&request.file_name)
        ),
    })
}

/// The shop's numbers caught up to at least `version` of their stream (an append still being
/// made durable is waited for), copied out of the runtime's projections.
async fn caught_up_shop(ctx: &Ctx<'_>, version: StreamVersion) -> Result<ShopMetrics, AppError> {
    let runtime = ctx.runtime;
    for _ in 0..100 {
        crate::kernel::dispatcher::catch_up(runtime).await?;
        let boards = runtime.boards.lock().await;
        if boards.shop.applied() >= version.0 {
            return Ok(boards.shop.clone());
        }
        let position = boards.position;
        drop(boards);
        runtime.store.wait_beyond(position).await?;
    }
    Err(AppError::internal(format_args!(
        "the shop's numbers could not be read up to version {version} of their stream"
    )))
}

/// The shop's figures, as JSON gives them: each `null` when no period gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FiguresView {
    /// Money, as exact text (`"86400.00"`).
    #[schema(value_type = Option<String>)]
    pub gmv: Option<Money>,
    pub inquiries: Option<u64>,
    pub new_fans: Option<u64>,
    pub page_views: Option<u64>,
    pub paid_orders: Option<u64>,
    pub paying_buyers: Option<u64>,
    pub placed_orders: Option<u64>,
    pub returning_buyers: Option<u64>,
    pub visitors: Option<u64>,
}

impl From<&Figures> for FiguresView {
    fn from(figures: &Figures) -> FiguresView {
        FiguresView {
            gmv: figures.gmv,
            inquiries: figures.inquiries,
            new_fans: figures.new_fans,
            page_views: figures.page_views,
            paid_orders: figures.paid_orders,
            paying_buyers: figures.paying_buyers,
            placed_orders: figures.placed_orders,
            returning_buyers: figures.returning_buyers,
            visitors: figures.visitors,
        }
    }
}

impl FiguresView {
    pub fn figures(&self) -> Figures {
        Figures {
            visitors: self.visitors,
            page_views: self.page_views,
            inquiries: self.inquiries,
            new_fans: self.new_fans,
            placed_orders: self.placed_orders,
            paid_orders: self.paid_orders,
            paying_buyers: self.paying_buyers,
            returning_buyers: self.returning_buyers,
            gmv: self.gmv,
        }
    }
}

/// One day's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayView {
    /// The local day, `2026-09-03`.
    pub date: String,
    pub figures: FiguresView,
}

/// A hot product or keyword over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HotView {
    pub count: u64,
    pub name: String,
}

impl From<&Hot> for HotView {
    fn from(hot: &Hot) -> HotView {
        HotView {
            count: hot.count,
            name: hot.name.clone(),
        }
    }
}

/// An input of a formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FormulaInput {
    /// A figure or a metric: `visitors`, `conversion_rate`...
    pub key: String,
    /// `null` when missing.
    pub value: Option<TargetAmount>,
}

/// One of DOMAIN.md's formulas with its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FormulaView {
    /// `visitors × conversion rate × average order value`.
    pub expression: String,
    /// Its inputs, in the formula's order.
    pub inputs: Vec<FormulaInput>,
    /// `sales`, `conversion_rate`, `average_order_value`, `payment_rate`, `repurchase_rate`.
    pub key: String,
    /// `null` when an input is missing or a denominator is zero.
    pub value: Option<TargetAmount>,
}

/// The shop's numbers over a window: a stage, or the whole campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowView {
    /// The window's end measured so far (RFC 3339, the campaign's offset).
    pub end: String,
    pub figures: FiguresView,
    pub formulas: Vec<FormulaView>,
    /// Most first, at most 10.
    pub hot_keywords: Vec<HotView>,
    pub hot_products: Vec<HotView>,
    /// `overall`, or the stage's id.
    pub name: String,
    /// Periods (days, or hours of days without a day's row) with figures.
    pub periods: u64,
    pub start: String,
}

/// `metrics show CAMPAIGN`. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsView {
    /// The instant answered at (RFC 3339, the campaign's offset).
    pub as_of: String,
    pub campaign: String,
    pub currency: String,
    /// Each local day of the campaign with figures, in order.
    pub days: Vec<DayView>,
    /// The whole campaign, from its first phase's start.
    pub overall: WindowView,
    /// Each burst stage, in the plan's order.
    pub stages: Vec<WindowView>,
    pub time_zone: String,
}

/// How many hot products and keywords a view shows.
pub const SHOWN_HOT: usize = 10;

fn amount(value: TargetValue) -> TargetAmount {
    match value {
        TargetValue::Money(money) => TargetAmount::Money(money),
        TargetValue::Count(count) => TargetAmount::Count(count),
        TargetValue::Rate(rate) => TargetAmount::Rate(rate),
    }
}

/// A window's numbers as a view.
pub fn window_view(
    name: &str,
    zone: chrono_tz::Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    numbers: &Numbers,
) -> WindowView {
    WindowView {
        end: local_rfc3339(zone, end),
        figures: FiguresView::from(&numbers.figures),
        formulas: formulas(&numbers.figures)
            .into_iter()
            .map(|formula| FormulaView {
                expression: formula.expression.to_string(),
                inputs: formula
                    .inputs
                    .into_iter()
                    .map(|(key, value)| FormulaInput {
                        key: key.to_string(),
                        value: value.map(amount),
                    })
                    .collect(),
                key: formula.key.to_string(),
                value: formula.value.map(amount),
            })
            .collect(),
        hot_keywords: numbers
            .hot_keywords
            .iter()
            .take(SHOWN_HOT)
            .map(HotView::from)
            .collect(),
        hot_products: numbers
            .hot_products
            .iter()
            .take(SHOWN_HOT)
            .map(HotView::from)
            .collect(),
        name: name.to_string(),
        periods: numbers.periods,
        start: local_rfc3339(zone, start),
    }
}

/// The campaign's whole span: its first phase's start to its last phase's end.
pub fn span(plan: &Plan) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = plan.phases.iter().map(|phase| phase.window.start).min()?;
    let end = plan.phases.iter().map(|phase| phase.window.end).max()?;
    Some((start, end))
}

/// Each stage's figures over `[stage.start, min(stage.end, now))`, in the plan's order.
pub fn stage_figures(shop: &ShopMetrics, plan: &Plan, now: DateTime<Utc>) -> Vec<Figures> {
    plan.stages
        .iter()
        .map(|stage| {
            let end = stage.window.end.min(now).max(stage.window.start);
            shop.window(stage.window.start, end).figures
        })
        .collect()
}

/// `metrics show CAMPAIGN`.
pub async fn show(ctx: &Ctx<'_>, campaign: &str) -> Result<MetricsView, AppError> {
    let plan = ctx.plan(campaign).await?;
    ctx.caught_up().await?;
    let shop = ctx.runtime.boards.lock().await.shop.clone();
    Ok(metrics_view(&shop, &plan, ctx.now))
}

/// The view of the shop's numbers for a plan at `now`.
pub fn metrics_view(shop: &ShopMetrics, plan: &Plan, now: DateTime<Utc>) -> MetricsView {
    let zone = plan.campaign.time_zone;
    let (start, end) = span(plan).unwrap_or((now, now));
    let end = end.min(now).max(start);
    MetricsView {
        as_of: local_rfc3339(zone, now),
        campaign: plan.campaign.id.clone(),
        currency: plan.campaign.currency.clone(),
        days: shop
            .days(start, end)
            .iter()
            .map(|(date, figures)| DayView {
                date: date.format("%Y-%m-%d").to_string(),
                figures: FiguresView::from(figures),
            })
            .collect(),
        overall: window_view("overall", zone, start, end, &shop.window(start, end)),
        stages: plan
            .stages
            .iter()
            .map(|stage| {
                let end = stage.window.end.min(now).max(stage.window.start);
                window_view(
                    &stage.id,
                    zone,
                    stage.window.start,
                    end,
                    &shop.window(stage.window.start, end),
                )
            })
            .collect(),
        time_zone: zone.name().to_string(),
    }
}
