//! `report weekly CAMPAIGN [--week 2026-W36]` (and `GET /api/v1/campaigns/{id}/reports/weekly`):
//! the boss's weekly business report, assembled by `core::report::weekly` from the projections
//! caught up to the log's head, with the position they reflect. docs/reports.md.

use battleplan_core::report::{self, week_to_report, Inputs, IsoWeek, WeeklyReport};
use serde::{Deserialize, Serialize};

use crate::app::{AppError, Ctx};

/// How the report is wanted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    /// The report's data (`--json`, and HTTP's default).
    Json,
    /// Columns for a terminal (the command line's default).
    #[default]
    Text,
    /// Headings and lists, as the staff robots show them.
    Markdown,
    /// A whole HTML document, its style inline.
    Html,
}

impl ReportFormat {
    pub const ALL: [ReportFormat; 4] = [
        ReportFormat::Json,
        ReportFormat::Text,
        ReportFormat::Markdown,
        ReportFormat::Html,
    ];

    pub fn key(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Text => "text",
            ReportFormat::Markdown => "markdown",
            ReportFormat::Html => "html",
        }
    }

    pub fn from_key(key: &str) -> Option<ReportFormat> {
        ReportFormat::ALL
            .into_iter()
            .find(|format| format.key() == key.trim().to_ascii_lowercase())
    }
}

/// Which report, of which week, in which form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeeklyQuestion {
    pub campaign: String,
    /// `2026-W36`; the week containing now when absent.
    pub week: Option<String>,
    pub format: ReportFormat,
}

/// The report, and the form it was asked in (the renderers pick it; `--json` and HTTP's
/// default give `report` as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeeklyView {
    pub format: ReportFormat,
    pub report: WeeklyReport,
}

/// `report weekly`: the week checked (ISO 8601, in the campaign, started by now), then the
/// report assembled from the projections caught up to the log, under their locks, so every
/// number is of one log position.
pub async fn weekly(ctx: &Ctx<'_>, question: &WeeklyQuestion) -> Result<WeeklyView, AppError> {
    let plan = ctx.plan(&question.campaign).await?;
    let asked = question
        .week
        .as_deref()
        .map(IsoWeek::parse)
        .transpose()
        .map_err(AppError::invalid)?;
    let week = week_to_report(&plan, asked, ctx.now).map_err(AppError::invalid)?;
    let skipped = ctx.campaign(&question.campaign).await?.skipped.clone();
    ctx.caught_up().await?;
    // In the order `dispatcher::catch_up` takes them.
    let outreach = ctx.runtime.outreach.lock().await;
    let boards = ctx.runtime.boards.lock().await;
    let board = boards.board(&question.campaign);
    let report = report::weekly(&Inputs {
        plan: &plan,
        week,
        now: ctx.now,
        position: boards.position.0,
        funnel: &boards.funnel,
        shop: &boards.shop,
        outreach: &outreach,
        board: &board,
        skipped: &skipped,
        offers: &boards.offers,
    });
    Ok(WeeklyView {
        format: question.format,
        report,
    })
}

/// The report's JSON as the OpenAPI document describes it: an object whose every field
/// docs/reports.md lists (written out by `core::report::WeeklyReport`'s serde form).
pub struct WeeklyReportBody;

impl utoipa::PartialSchema for WeeklyReportBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let list = || ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object));
        let object = || ObjectBuilder::new().schema_type(Type::Object);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The weekly report: every field is described in docs/reports.md. Instants are RFC 3339 with the campaign's offset; money is exact text; counts are integers; rates and ratios are fractions.",
            ))
            .property("week", text().description(Some("The ISO 8601 week, `2026-W36`")))
            .property("campaign", text())
            .property("campaign_name", text())
            .property("start", text().description(Some("Monday 00:00 in the campaign's zone")))
            .property("end", text().description(Some("The next Monday 00:00")))
            .property("as_of", text().description(Some("What the numbers are measured up to")))
            .property(
                "as_of_position",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("The log position every number is computed from")),
            )
            .property("complete", ObjectBuilder::new().schema_type(Type::Boolean))
            .property("currency", text())
            .property("time_zone", text())
            .property("previous_week", text())
            .property("headline", list())
            .property("stages", list())
            .property("funnel", list())
            .property("reach_outs", object())
            .property("offers", list())
            .property("other_offers", list())
            .property("hot_products", list())
            .property("hot_keywords", list())
            .property("tasks_done", list())
            .property("late", list())
            .property("next_week", object())
            .property("phases", list())
            .required("week")
            .required("campaign")
            .required("as_of")
            .required("as_of_position")
            .required("headline")
            .into()
    }
}

impl utoipa::ToSchema for WeeklyReportBody {}
