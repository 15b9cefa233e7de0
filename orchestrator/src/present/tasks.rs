//! Text for the views of `app::tasks`.

use battleplan_core::funnel::{render_funnel_table, FunnelReport, FunnelStep, PhaseFunnel};
use battleplan_core::task::render_board;
use chrono::Utc;
use chrono_tz::Tz;

use crate::app::tasks::{FunnelStepView, FunnelView, TaskDoneView, TasksView};
use crate::present::Reply;

/// The board as a table, due times in the campaign's zone (UTC for a zone this build does not
/// know).
pub fn tasks(view: &TasksView) -> Reply {
    let zone = view.time_zone.parse::<Tz>().unwrap_or(Tz::UTC);
    Reply::ok(render_board(
        &view.rows,
        zone,
        view.as_of.with_timezone(&Utc),
    ))
}

pub fn task_done(view: &TaskDoneView) -> Reply {
    let repeated = if view.already_recorded {
        " (already recorded by this command id)"
    } else {
        ""
    };
    Reply::ok(format!(
        "task {} of campaign {} done by {}{repeated}; its reminders stop\n",
        view.occurrence, view.campaign, view.actor
    ))
}

/// The funnel per phase, then overall, under a line naming the campaign and the instant (with
/// the campaign's offset).
pub fn funnel(view: &FunnelView) -> Reply {
    fn steps(steps: &[FunnelStepView]) -> Vec<FunnelStep> {
        steps
            .iter()
            .map(|step| FunnelStep {
                stage: step.stage,
                customers: step.customers,
                conversion: step.conversion,
            })
            .collect()
    }
    let report = FunnelReport {
        campaign: view.campaign.clone(),
        as_of: view.as_of.with_timezone(&Utc),
        overall: steps(&view.overall),
        phases: view
            .phases
            .iter()
            .map(|funnel| PhaseFunnel {
                phase: funnel.phase,
                steps: steps(&funnel.stages),
            })
            .collect(),
    };
    Reply::ok(format!(
        "Funnel of {} as of {}\n{}",
        view.campaign,
        view.as_of.format("%Y-%m-%d %H:%M %:z"),
        render_funnel_table(&report)
    ))
}
