//! The people's side of tasks and results: `tasks` (the board, by role and due time), `task
//! done` (recorded with actor and note; reminders for it stop), and `funnel` (potential ->
//! reached -> handshake -> order -> repurchase, per campaign and phase).

use battleplan_core::event::EventId;
use battleplan_core::funnel::{funnel_json, render_funnel};
use battleplan_core::task::{self, board_json, decide_done, render_board, Filter, TaskEvent};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::kernel::projection::Campaigns;
use crate::kernel::runtime::{HandleError, Runtime};
use crate::present::Reply;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TasksQuestion {
    pub campaign: Option<String>,
    pub role: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
    pub json: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskDoneRequest {
    pub campaign: Option<String>,
    pub occurrence: String,
    pub actor: String,
    pub note: Option<String>,
    pub command_id: Option<Uuid>,
}

/// The campaign asked for, or the only one there is.
async fn which(
    runtime: &Runtime,
    asked: Option<&str>,
) -> Result<Result<String, Reply>, HandleError> {
    let store = runtime.store.as_ref();
    let mut campaigns = Campaigns::load(store).await?;
    campaigns.catch_up_in_memory(store).await?;
    let known: Vec<&str> = campaigns.states.keys().map(String::as_str).collect();
    Ok(match (asked, known.as_slice()) {
        (Some(id), _) if campaigns.states.contains_key(id) => Ok(id.to_string()),
        (_, []) => Err(Reply::user_error(format_args!(
            "there is no campaign{} yet (apply a plan first: `battleplan plan apply PLAN`)",
            id_words(asked)
        ))),
        (Some(id), known) => Err(Reply::user_error(format_args!(
            "there is no campaign `{id}`; there is: {}",
            known.join(", ")
        ))),
        (None, [only]) => Ok(only.to_string()),
        (None, known) => Err(Reply::user_error(format_args!(
            "say which campaign (--campaign C): {}",
            known.join(", ")
        ))),
    })
}

fn id_words(id: Option<&str>) -> String {
    id.map(|id| format!(" `{id}`")).unwrap_or_default()
}

pub async fn board(runtime: &Runtime, question: &TasksQuestion) -> Result<Reply, HandleError> {
    let campaign = match which(runtime, question.campaign.as_deref()).await? {
        Ok(campaign) => campaign,
        Err(reply) => return Ok(reply),
    };
    let Some(plan) = crate::kernel::plans::plan_in_force(runtime, &campaign).await? else {
        return Ok(Reply::user_error(format_args!(
            "campaign {campaign} has no plan"
        )));
    };
    if let Some(role) = &question.role {
        let known: Vec<&str> = plan.roles.iter().map(|r| r.id.as_str()).collect();
        if !known.contains(&role.as_str()) {
            return Ok(Reply::user_error(format_args!(
                "campaign {campaign} has no role `{role}`; it has: {}",
                known.join(", ")
            )));
        }
    }
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let now = runtime.clock.now();
    let board = runtime.boards.lock().await.board(&campaign);
    let filter = Filter {
        role: question.role.clone(),
        due_before: question.due_before,
    };
    // The steps advances cut short: their tasks show as skipped.
    let skipped = {
        let store = runtime.store.as_ref();
        let mut campaigns = Campaigns::load(store).await?;
        campaigns.catch_up_in_memory(store).await?;
        campaigns
            .states
            .get(&campaign)
            .map(|state| state.skipped.clone())
            .unwrap_or_default()
    };
    let rows = task::rows(&plan, &board, &skipped, now, &filter);
    if question.json {
        let mut text = serde_json::to_string_pretty(&board_json(&rows)).unwrap_or_default();
        text.push('\n');
        return Ok(Reply::ok(text));
    }
    Ok(Reply::ok(render_board(&rows, plan.campaign.time_zone, now)))
}

pub async fn done(runtime: &Runtime, request: &TaskDoneRequest) -> Result<Reply, HandleError> {
    let campaign = match which(runtime, request.campaign.as_deref()).await? {
        Ok(campaign) => campaign,
        Err(reply) => return Ok(reply),
    };
    let Some(plan) = crate::kernel::plans::plan_in_force(runtime, &campaign).await? else {
        return Ok(Reply::user_error(format_args!(
            "campaign {campaign} has no plan"
        )));
    };
    if request.actor.trim().is_empty() {
        return Ok(Reply::user_error("say who did it: --actor NAME"));
    }
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let board = runtime.boards.lock().await.board(&campaign);
    let stream = task::stream_of(&campaign).map_err(battleplan_core::campaign::Rejection)?;
    let decided = match decide_done(&plan, &board, &request.occurrence, request.note.clone()) {
        Ok(decided) => decided,
        Err(message) => {
            // Refused because this very command (its first try, unanswered) recorded it?
            for event in runtime.recorded_before(&stream, request.command_id).await? {
                if let Some(TaskEvent::TaskDone(done)) = TaskEvent::decode(&event)? {
                    return Ok(Reply::ok(format!(
                        "task {} of campaign {campaign} done by {} (already recorded by this command id); its reminders stop\n",
                        done.occurrence, event.metadata.actor
                    )));
                }
            }
            return Ok(Reply::user_error(message));
        }
    };
    let now = runtime.clock.now();
    let outcome = runtime
        .record(
            stream,
            vec![TaskEvent::TaskDone(decided.clone()).encode(EventId(runtime.ids.next_id(now)))?],
            &request.actor,
            request.note.clone(),
            request
                .command_id
                .unwrap_or_else(|| runtime.ids.next_id(now)),
            now,
        )
        .await?;
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let repeated = if outcome.deduplicated {
        " (already recorded by this command id)"
    } else {
        ""
    };
    Ok(Reply::ok(format!(
        "task {} of campaign {campaign} done by {}{repeated}; its reminders stop\n",
        decided.occurrence, request.actor
    )))
}

pub async fn funnel(runtime: &Runtime, campaign: &str, json: bool) -> Result<Reply, HandleError> {
    let Some(plan) = crate::kernel::plans::plan_in_force(runtime, campaign).await? else {
        return Ok(Reply::user_error(format_args!(
            "there is no campaign `{campaign}` (apply its plan first: `battleplan plan apply PLAN`)"
        )));
    };
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let now = runtime.clock.now();
    let boards = runtime.boards.lock().await;
    let report = boards.funnel.report(&plan, now);
    let text = if json {
        let mut text = serde_json::to_string_pretty(&funnel_json(&report, plan.campaign.time_zone))
            .unwrap_or_default();
        text.push('\n');
        text
    } else {
        render_funnel(&report, plan.campaign.time_zone)
    };
    Ok(Reply::ok(text))
}

/// The boss's lines for `status CAMPAIGN`: each stage target against what was measured.
pub async fn targets_text(
    runtime: &Runtime,
    campaign: &str,
) -> Result<Option<serde_json::Value>, HandleError> {
    let Some(plan) = crate::kernel::plans::plan_in_force(runtime, campaign).await? else {
        return Ok(None);
    };
    if plan.targets.is_empty() {
        return Ok(None);
    }
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let now = runtime.clock.now();
    let boards = runtime.boards.lock().await;
    let actuals = boards.funnel.stage_actuals(&plan, now);
    let lines = battleplan_core::funnel::targets_against_actuals(&plan, &actuals);
    Ok(Some(serde_json::json!({
        "text": battleplan_core::funnel::render_targets(&lines, &plan.campaign.currency),
        "json": battleplan_core::funnel::targets_json(&lines),
    })))
}

/// Still printed words; typed views come next.
pub type TasksView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type TaskDoneView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type FunnelView = crate::present::Reply;
