//! The people's side of tasks and results: `tasks` (the board, by role and due time), `task
//! done` (recorded with actor and note; reminders for it stop), and `funnel` (potential ->
//! reached -> handshake -> order -> repurchase, per campaign and phase).

use battleplan_core::event::EventId;
use battleplan_core::funnel::{FunnelReport, FunnelStep};
use battleplan_core::plan::model::PhaseKind;
use battleplan_core::plan::raw::LifecycleStage;
use battleplan_core::task::{self, decide_done, find_occurrence, Counts, Filter, Row, TaskEvent};
use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::app::{AppError, Ctx};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TasksQuestion {
    pub campaign: Option<String>,
    pub role: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDoneRequest {
    pub campaign: Option<String>,
    pub occurrence: String,
    pub actor: String,
    pub note: Option<String>,
    pub command_id: Option<Uuid>,
}

/// An instant as the campaign reads it, in RFC 3339 with its offset (`+00:00`, never `Z`), as
/// `local_rfc3339` writes it.
fn with_offset<S: Serializer>(
    at: &DateTime<FixedOffset>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
}

/// A value with its keys in alphabetical order, as the board's JSON has always had them.
fn keys_sorted<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

/// The task board at an instant: its rows (filtered, by due instant then occurrence id) and
/// how many are in each status.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TasksView {
    /// The instant the board is of, with the campaign's offset.
    #[serde(serialize_with = "with_offset")]
    #[schema(value_type = String, format = DateTime)]
    pub as_of: DateTime<FixedOffset>,
    pub counts: TaskCounts,
    /// Each occurrence: `occurrence`, `task`, `title`, `workstream`, `role`, `phase`, `stage`
    /// (when it has one), `due`, `status` (`open`, `overdue`, `escalated`, `skipped` with `by`
    /// and `at`, `done` with `by`, `at` and `note`), `reminders_sent`.
    #[serde(serialize_with = "keys_sorted")]
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Row>,
    /// The campaign's time zone (IANA), the one its people read due times in.
    pub time_zone: String,
}

/// How many rows are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskCounts {
    pub done: usize,
    pub escalated: usize,
    pub open: usize,
    pub overdue: usize,
    /// Cut short by an advance.
    pub skipped: usize,
}

impl From<Counts> for TaskCounts {
    fn from(counts: Counts) -> TaskCounts {
        TaskCounts {
            done: counts.done,
            escalated: counts.escalated,
            open: counts.open,
            overdue: counts.overdue,
            skipped: counts.skipped,
        }
    }
}

/// A task occurrence marked done (`already_recorded`: by an earlier try of this very command);
/// its reminders stop.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskDoneView {
    pub actor: String,
    pub already_recorded: bool,
    pub campaign: String,
    pub occurrence: String,
    /// Where the `TaskDone` is in the log (a retry names the first try's).
    pub position: u64,
}

/// The funnel of a campaign: per phase, then overall, each stage's distinct customers and the
/// share of the stage above who got that far.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunnelView {
    /// The instant the funnel is of, with the campaign's offset.
    #[serde(serialize_with = "with_offset")]
    #[schema(value_type = String, format = DateTime)]
    pub as_of: DateTime<FixedOffset>,
    pub campaign: String,
    /// The five stages, a customer counted once.
    pub overall: Vec<FunnelStepView>,
    /// The phases the plan has, in order.
    pub phases: Vec<PhaseFunnelView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhaseFunnelView {
    #[schema(value_type = String)]
    pub phase: PhaseKind,
    pub stages: Vec<FunnelStepView>,
}

/// One stage: the customers who got at least that far.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunnelStepView {
    /// `customers` over the stage above's, as a fraction; `null` for potential and after an
    /// empty stage.
    pub conversion: Option<f64>,
    pub customers: u64,
    #[schema(value_type = String)]
    pub stage: LifecycleStage,
}

impl From<&FunnelStep> for FunnelStepView {
    fn from(step: &FunnelStep) -> FunnelStepView {
        FunnelStepView {
            conversion: step.conversion,
            customers: step.customers,
            stage: step.stage,
        }
    }
}

pub async fn board(ctx: &Ctx<'_>, question: &TasksQuestion) -> Result<TasksView, AppError> {
    let campaign = ctx.campaign_or_only(question.campaign.as_deref()).await?;
    let plan = ctx.plan(&campaign).await?;
    if let Some(role) = &question.role {
        let known: Vec<&str> = plan.roles.iter().map(|r| r.id.as_str()).collect();
        if !known.contains(&role.as_str()) {
            return Err(AppError::not_found(format_args!(
                "campaign {campaign} has no role `{role}`; it has: {}",
                known.join(", ")
            )));
        }
    }
    ctx.caught_up().await?;
    let board = ctx.runtime.boards.lock().await.board(&campaign);
    let filter = Filter {
        role: question.role.clone(),
        due_before: question.due_before,
    };
    // The steps advances cut short: their tasks show as skipped.
    let skipped = ctx.campaign(&campaign).await?.skipped.clone();
    let zone = plan.campaign.time_zone;
    let rows = task::rows(&plan, &board, &skipped, ctx.now, &filter);
    Ok(TasksView {
        as_of: ctx.now.with_timezone(&zone).fixed_offset(),
        counts: Counts::of(&rows).into(),
        rows,
        time_zone: zone.name().to_string(),
    })
}

pub async fn done(ctx: &Ctx<'_>, request: &TaskDoneRequest) -> Result<TaskDoneView, AppError> {
    let runtime = ctx.runtime;
    let campaign = ctx.campaign_or_only(request.campaign.as_deref()).await?;
    let plan = ctx.plan(&campaign).await?;
    if request.actor.trim().is_empty() {
        return Err(AppError::invalid("say who did it: --actor NAME"));
    }
    ctx.caught_up().await?;
    let board = runtime.boards.lock().await.board(&campaign);
    let stream = task::stream_of(&campaign).map_err(AppError::invalid)?;
    let decided = match decide_done(&plan, &board, &request.occurrence, request.note.clone()) {
        Ok(decided) => decided,
        Err(message) => {
            // Refused because this very command (its first try, unanswered) recorded it?
            for event in runtime.recorded_before(&stream, request.command_id).await? {
                if let Some(TaskEvent::TaskDone(done)) =
                    TaskEvent::decode(&event).map_err(AppError::internal)?
                {
                    return Ok(TaskDoneView {
                        actor: event.metadata.actor.clone(),
                        already_recorded: true,
                        campaign,
                        occurrence: done.occurrence,
                        position: event.position.0,
                    });
                }
            }
            // No such occurrence, or one already done.
            return Err(match find_occurrence(&plan, &request.occurrence) {
                Err(_) => AppError::not_found(message),
                Ok(_) => AppError::Rejected { message },
            });
        }
    };
    let now = ctx.now;
    let outcome = runtime
        .record(
            stream,
            vec![TaskEvent::TaskDone(decided.clone())
                .encode(EventId(runtime.ids.next_id(now)))
                .map_err(AppError::internal)?],
            &request.actor,
            request.note.clone(),
            request
                .command_id
                .unwrap_or_else(|| runtime.ids.next_id(now)),
            now,
        )
        .await?;
    Ok(TaskDoneView {
        actor: request.actor.clone(),
        already_recorded: outcome.deduplicated,
        campaign,
        occurrence: decided.occurrence,
        position: outcome.last_position.0,
    })
}

pub async fn funnel(ctx: &Ctx<'_>, campaign: &str) -> Result<FunnelView, AppError> {
    let plan = ctx.plan(campaign).await?;
    ctx.caught_up().await?;
    let report = ctx
        .runtime
        .boards
        .lock()
        .await
        .funnel
        .report_memo(&plan, ctx.now);
    Ok(funnel_view(&report, plan.campaign.time_zone))
}

/// The report as data, its instant in the campaign's zone.
fn funnel_view(report: &FunnelReport, zone: Tz) -> FunnelView {
    FunnelView {
        as_of: report.as_of.with_timezone(&zone).fixed_offset(),
        campaign: report.campaign.clone(),
        overall: report.overall.iter().map(FunnelStepView::from).collect(),
        phases: report
            .phases
            .iter()
            .map(|funnel| PhaseFunnelView {
                phase: funnel.phase,
                stages: funnel.steps.iter().map(FunnelStepView::from).collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use battleplan_core::funnel::{funnel_json, FunnelReport, FunnelStep, PhaseFunnel};
    use battleplan_core::plan::model::PhaseKind;
    use battleplan_core::plan::raw::LifecycleStage;
    use battleplan_core::task::{Row, RowStatus};
    use chrono::{DateTime, Utc};
    use chrono_tz::Tz;

    use super::{funnel_view, TaskCounts, TasksView};

    /// As `--json` prints a view.
    fn pretty<T: serde::Serialize>(value: &T) -> String {
        format!("{}\n", serde_json::to_string_pretty(value).unwrap())
    }

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn step(stage: LifecycleStage, customers: u64, conversion: Option<f64>) -> FunnelStep {
        FunnelStep {
            stage,
            customers,
            conversion,
        }
    }

    #[test]
    fn the_funnel_view_is_written_as_the_core_writes_the_report() {
        let steps = vec![
            step(LifecycleStage::Potential, 2_462, None),
            step(LifecycleStage::Reached, 1_795, Some(1_795.0 / 2_462.0)),
            step(LifecycleStage::Handshake, 0, Some(0.0)),
            step(LifecycleStage::Order, 0, None),
        ];
        let report = FunnelReport {
            campaign: "sept-festival-2026".to_string(),
            as_of: instant("2026-08-26T04:00:00.250Z"),
            overall: steps.clone(),
            phases: vec![PhaseFunnel {
                phase: PhaseKind::WarmUp,
                steps,
            }],
        };
        for zone in [Tz::Asia__Shanghai, Tz::UTC, Tz::America__New_York] {
            assert_eq!(
                pretty(&funnel_view(&report, zone)),
                pretty(&funnel_json(&report, zone)),
            );
        }
    }

    #[test]
    fn a_board_read_back_from_its_json_is_the_same_board() {
        let row = |occurrence: &str, status: RowStatus| Row {
            occurrence: occurrence.to_string(),
            task: occurrence.to_string(),
            title: "Take orders in chat".to_string(),
            workstream: "sales".to_string(),
            role: "sales".to_string(),
            phase: PhaseKind::Burst,
            stage: Some("early".to_string()),
            due: instant("2026-09-02T01:00:00Z"),
            status,
            reminders_sent: 2,
        };
        let rows = vec![
            row("open-one", RowStatus::Open),
            row(
                "done-one",
                RowStatus::Done {
                    by: "bob".to_string(),
                    at: instant("2026-09-02T02:00:00Z"),
                    note: Some("five coupons live".to_string()),
                },
            ),
            row(
                "skipped-one",
                RowStatus::Skipped {
                    by: "alice".to_string(),
                    at: instant("2026-09-02T03:00:00Z"),
                },
            ),
        ];
        let view = TasksView {
            as_of: instant("2026-09-02T04:00:00Z")
                .with_timezone(&Tz::Asia__Shanghai)
                .fixed_offset(),
            counts: TaskCounts {
                open: 1,
                done: 1,
                skipped: 1,
                ..TaskCounts::default()
            },
            rows,
            time_zone: "Asia/Shanghai".to_string(),
        };
        let text = pretty(&view);
        let back: TasksView = serde_json::from_str(&text).unwrap();
        assert_eq!(back.rows, view.rows);
        assert_eq!(back.as_of, view.as_of);
        assert_eq!(pretty(&back), text);
        // Keys in alphabetical order, instants of the board as the campaign reads them.
        assert!(
            text.starts_with(
                "{\n  \"as_of\": \"2026-09-02T12:00:00+08:00\",\n  \"counts\": {\n    \"done\": 1,"
            ),
            "{text}"
        );
        assert!(
            text.contains("\"due\": \"2026-09-02T01:00:00Z\",\n      \"note\""),
            "{text}"
        );
    }
}
