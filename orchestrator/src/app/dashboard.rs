//! What the live dashboard shows, as views: a campaign's page in one answer (its status and
//! stage targets, timeline, funnel, the shop's numbers, sends per day, exclusions, channels,
//! the task board, who did what lately), made by the same use cases `status`, `funnel`,
//! `metrics show`, `outbox`, `tasks` and `history` answer with, so the page and the command line
//! never disagree; and the log's head, which the page's live updates follow.

use std::collections::BTreeMap;

use battleplan_core::campaign::timeline::local_rfc3339;
use battleplan_core::customer::quota::cost_of;
use battleplan_core::event::Position;
use battleplan_core::plan::model::PhaseKind;
use battleplan_core::plan::values::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::campaigns::{CampaignStatus, HistoryEvent, HistoryQuery, StatusBody};
use crate::app::metrics::MetricsView;
use crate::app::outreach::OutboxQuestion;
use crate::app::tasks::{FunnelView, TasksQuestion, TasksView};
use crate::app::{AppError, Ctx};
use crate::kernel::runtime::Runtime;

/// What the page asks for: the campaign, and the parts its reader may see (the front knows
/// the reader's role; a part not asked for is not computed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageQuestion {
    pub campaign: String,
    /// The funnel, the targets, the shop's numbers, the sends and exclusions (not for sales).
    pub numbers: bool,
    /// The last lines of the campaign's history (the audit trail: manager and auditor).
    pub history: bool,
}

/// A phase or a burst stage on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    /// `phase` or `stage`.
    pub kind: String,
    /// `prep`, `warm_up`, `burst`, `review`, or the stage's id.
    pub id: String,
    pub name: String,
    /// RFC 3339 with the campaign's offset.
    pub start: String,
    pub end: String,
    /// Milliseconds since the epoch, for drawing.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One local day's messages through one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySendsView {
    pub date: String,
    pub channel: String,
    pub sent: u64,
    pub free: u64,
    pub paid: u64,
    /// The paid volume at the channel's price.
    pub cost: Money,
}

/// A campaign's page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignPageView {
    /// The log's head the page was made at: the live updates resume after it.
    pub position: u64,
    /// The instant answered at (RFC 3339, the campaign's offset), and in milliseconds.
    pub now: String,
    pub now_ms: i64,
    pub currency: String,
    pub status: CampaignStatus,
    pub timeline: Vec<StepView>,
    /// The plan's roles and their members, for the board by person.
    pub roles: Vec<(String, Vec<String>)>,
    pub board: TasksView,
    pub funnel: Option<FunnelView>,
    pub metrics: Option<MetricsView>,
    pub sends: Vec<DaySendsView>,
    /// Customers left out of reach-outs, by reason, over the campaign.
    pub exclusions: BTreeMap<String, u64>,
    /// The campaign's last history lines, newest first.
    pub recent: Option<Vec<HistoryEvent>>,
}

/// The most history lines a page shows.
pub const RECENT: usize = 12;

/// A campaign's page.
pub async fn campaign_page(
    ctx: &Ctx<'_>,
    question: &PageQuestion,
) -> Result<CampaignPageView, AppError> {
    let id = question.campaign.as_str();
    let position = ctx.runtime.store.head().await?.0;
    let plan = ctx.plan(id).await?;
    let zone = plan.campaign.time_zone;
    let status = match crate::app::campaigns::status(ctx, Some(id)).await?.body {
        StatusBody::One(one) => *one,
        StatusBody::All(_) => {
            return Err(AppError::internal(
                "the status of one campaign came back as every campaign's",
            ))
        }
    };
    let state = ctx.campaign(id).await?;
    // The phases (each from its first step's start to its last step's end), then the burst's
    // stages, from the timeline in force (pauses that shifted it included).
    let step_view = |kind: &str, id: String, name: String, start, end| StepView {
        kind: kind.to_string(),
        id,
        name,
        start: local_rfc3339(zone, start),
        end: local_rfc3339(zone, end),
        start_ms: start.timestamp_millis(),
        end_ms: end.timestamp_millis(),
    };
    let mut timeline: Vec<StepView> = Vec::new();
    if let Some(planned) = state.planned.as_ref() {
        let mut phases: Vec<(PhaseKind, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for window in &planned.steps {
            match phases.last_mut() {
                Some((phase, _, end)) if *phase == window.step.phase => *end = window.end,
                _ => phases.push((window.step.phase, window.start, window.end)),
            }
        }
        for (phase, start, end) in phases {
            let name = plan
                .phase(phase)
                .map_or_else(|| phase.label().to_string(), |p| p.name.clone());
            timeline.push(step_view(
                "phase",
                phase.key().to_string(),
                name,
                start,
                end,
            ));
        }
        for window in &planned.steps {
            if let Some(stage) = &window.step.stage {
                let name = plan
                    .stage(stage)
                    .map_or_else(|| stage.clone(), |s| s.name.clone());
                timeline.push(step_view(
                    "stage",
                    stage.clone(),
                    name,
                    window.start,
                    window.end,
                ));
            }
        }
    }
    let board = crate::app::tasks::board(
        ctx,
        &TasksQuestion {
            campaign: Some(id.to_string()),
            role: None,
            due_before: None,
        },
    )
    .await?;
    let (funnel, metrics, sends, exclusions) = if question.numbers {
        let funnel = crate::app::tasks::funnel(ctx, id).await?;
        let metrics = crate::app::metrics::show(ctx, id).await?;
        let sent = ctx.runtime.outreach.lock().await.sent_per_day(
            id,
            zone,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        );
        let sends = sent
            .into_iter()
            .map(|day| {
                let price = plan.channel(&day.channel).and_then(|c| c.cost_per_1000);
                DaySendsView {
                    date: day.date.format("%Y-%m-%d").to_string(),
                    channel: day.channel,
                    sent: day.sent,
                    free: day.sent - day.paid,
                    paid: day.paid,
                    cost: cost_of(day.paid, price),
                }
            })
            .collect();
        let outbox = crate::app::outreach::report(
            ctx,
            &OutboxQuestion {
                campaign: id.to_string(),
                reach_out: None,
                customers: false,
            },
        )
        .await?;
        let mut exclusions: BTreeMap<String, u64> = BTreeMap::new();
        for reach_out in &outbox.reach_outs {
            for (reason, count) in &reach_out.not_sent {
                *exclusions.entry(reason.clone()).or_default() += count;
            }
        }
        (Some(funnel), Some(metrics), sends, exclusions)
    } else {
        (None, None, Vec::new(), BTreeMap::new())
    };
    let recent = if question.history {
        let history = crate::app::campaigns::history(
            ctx,
            Some(id),
            HistoryQuery {
                as_of: None,
                after: None,
                limit: None,
            },
        )
        .await?;
        let mut lines = history.body.events().to_vec();
        lines.reverse();
        lines.truncate(RECENT);
        Some(lines)
    } else {
        None
    };
    Ok(CampaignPageView {
        position,
        now: local_rfc3339(zone, ctx.now),
        now_ms: ctx.now.timestamp_millis(),
        currency: plan.campaign.currency.clone(),
        status,
        timeline,
        roles: plan
            .roles
            .iter()
            .map(|role| (role.id.clone(), role.members.clone()))
            .collect(),
        board,
        funnel,
        metrics,
        sends,
        exclusions,
        recent,
    })
}

/// The log's head now.
pub async fn head(runtime: &Runtime) -> Result<u64, AppError> {
    Ok(runtime.store.head().await?.0)
}

/// Waits until the log's durable head is beyond `position`, and says where it is then.
pub async fn wait_beyond(runtime: &Runtime, position: u64) -> Result<u64, AppError> {
    runtime.store.wait_beyond(Position(position)).await?;
    head(runtime).await
}
