//! `calendar`: a campaign's phases, burst stages and task occurrences as iCalendar text
//! (`core::calendar`), for everyone, one role or one person: the plan in force, its version and
//! shifting pauses (the `SEQUENCE`), and what the task board says is done, as of the instant
//! the request is answered at (the `DTSTAMP`). The command line prints or writes the text; HTTP
//! sends it as `text/calendar` to calendar apps subscribed to its URL.

use battleplan_core::calendar::{self, Filter, Inputs};
use serde::{Deserialize, Serialize};

use crate::app::{AppError, Ctx};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalendarQuestion {
    pub campaign: String,
    /// Only this role's tasks.
    pub role: Option<String>,
    /// Only the tasks of the roles this person is a member of.
    pub person: Option<String>,
}

/// A campaign's calendar.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalendarView {
    pub campaign: String,
    /// The plan version the calendar is of.
    pub plan_version: u32,
    /// Every component's `SEQUENCE`: the plan version plus the pauses that shifted the windows.
    pub sequence: u32,
    /// Phases and burst stages (VEVENTs).
    pub events: usize,
    /// Task occurrences (VTODOs).
    pub todos: usize,
    /// Reminders (VALARMs) of the occurrences not done.
    pub alarms: usize,
    /// The iCalendar text (RFC 5545): CRLF line ends, lines folded at 75 octets.
    pub ics: String,
}

pub async fn calendar(
    ctx: &Ctx<'_>,
    question: &CalendarQuestion,
) -> Result<CalendarView, AppError> {
    let campaign = &question.campaign;
    let plan = ctx.plan(campaign).await?;
    let state = ctx.campaign(campaign).await?;
    let filter = Filter {
        role: question.role.clone(),
        person: question.person.clone(),
    };
    // A role or person the plan does not have is refused before the board is caught up.
    filter.check(&plan).map_err(AppError::not_found)?;
    ctx.caught_up().await?;
    let board = ctx.runtime.boards.lock().await.board(campaign);
    let made = calendar::render(&Inputs {
        plan: &plan,
        plan_version: state.plan_version,
        shifts: state.shifts.len(),
        board: &board,
        skipped: &state.skipped,
        filter: &filter,
        stamp: ctx.now,
    })
    .map_err(AppError::not_found)?;
    Ok(CalendarView {
        campaign: campaign.clone(),
        plan_version: state.plan_version,
        sequence: made.sequence,
        events: made.events,
        todos: made.todos,
        alarms: made.alarms,
        ics: made.ics,
    })
}
