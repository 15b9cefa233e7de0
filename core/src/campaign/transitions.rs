//! The table of allowed transitions, written down once. `decide` refuses every pair the table
//! does not list before looking further, and the tests check every state against every command
//! (`decide` may still refuse a listed pair for a reason of the moment, such as a boundary not
//! yet due, and then says so). docs/campaign-lifecycle.md shows the same table; a test keeps
//! them equal.

use serde::{Deserialize, Serialize};

use super::Status;
use crate::plan::model::PhaseKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StateKind {
    Draft,
    Scheduled,
    Prep,
    WarmUp,
    Burst,
    Review,
    Paused,
    Completed,
    Cancelled,
}

impl StateKind {
    pub const ALL: [StateKind; 9] = [
        StateKind::Draft,
        StateKind::Scheduled,
        StateKind::Prep,
        StateKind::WarmUp,
        StateKind::Burst,
        StateKind::Review,
        StateKind::Paused,
        StateKind::Completed,
        StateKind::Cancelled,
    ];

    pub fn of(status: &Status) -> StateKind {
        match status {
            Status::Draft => StateKind::Draft,
            Status::Scheduled => StateKind::Scheduled,
            Status::Running { step } => match step.phase {
                PhaseKind::Prep => StateKind::Prep,
                PhaseKind::WarmUp => StateKind::WarmUp,
                PhaseKind::Burst => StateKind::Burst,
                PhaseKind::Review => StateKind::Review,
            },
            Status::Paused { .. } => StateKind::Paused,
            Status::Completed => StateKind::Completed,
            Status::Cancelled { .. } => StateKind::Cancelled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StateKind::Draft => "Draft",
            StateKind::Scheduled => "Scheduled",
            StateKind::Prep => "Prep",
            StateKind::WarmUp => "WarmUp",
            StateKind::Burst => "Burst",
            StateKind::Review => "Review",
            StateKind::Paused => "Paused",
            StateKind::Completed => "Completed",
            StateKind::Cancelled => "Cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandKind {
    ApplyPlan,
    Enter,
    Pause,
    Resume,
    Advance,
    Cancel,
    Complete,
}

impl CommandKind {
    pub const ALL: [CommandKind; 7] = [
        CommandKind::ApplyPlan,
        CommandKind::Enter,
        CommandKind::Pause,
        CommandKind::Resume,
        CommandKind::Advance,
        CommandKind::Cancel,
        CommandKind::Complete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CommandKind::ApplyPlan => "apply plan",
            CommandKind::Enter => "enter",
            CommandKind::Pause => "pause",
            CommandKind::Resume => "resume",
            CommandKind::Advance => "advance",
            CommandKind::Cancel => "cancel",
            CommandKind::Complete => "complete",
        }
    }
}

use CommandKind as C;
use StateKind as S;

/// Every allowed (state, command) pair and the states the command may lead to. A pair not
/// listed is refused. `ApplyPlan` on a campaign that has a plan is a revision and keeps the
/// state.
pub const TABLE: &[(StateKind, CommandKind, &[StateKind])] = &[
    (S::Draft, C::ApplyPlan, &[S::Scheduled]),
    (S::Scheduled, C::ApplyPlan, &[S::Scheduled]),
    (S::Scheduled, C::Enter, &[S::Prep]),
    (S::Scheduled, C::Pause, &[S::Paused]),
    (S::Scheduled, C::Advance, &[S::Prep]),
    (S::Scheduled, C::Cancel, &[S::Cancelled]),
    (S::Prep, C::ApplyPlan, &[S::Prep]),
    (S::Prep, C::Enter, &[S::WarmUp]),
    (S::Prep, C::Pause, &[S::Paused]),
    (S::Prep, C::Advance, &[S::WarmUp]),
    (S::Prep, C::Cancel, &[S::Cancelled]),
    (S::WarmUp, C::ApplyPlan, &[S::WarmUp]),
    (S::WarmUp, C::Enter, &[S::Burst]),
    (S::WarmUp, C::Pause, &[S::Paused]),
    (S::WarmUp, C::Advance, &[S::Burst]),
    (S::WarmUp, C::Cancel, &[S::Cancelled]),
    (S::Burst, C::ApplyPlan, &[S::Burst]),
    (S::Burst, C::Enter, &[S::Burst, S::Review]),
    (S::Burst, C::Pause, &[S::Paused]),
    (S::Burst, C::Advance, &[S::Burst, S::Review, S::Completed]),
    (S::Burst, C::Cancel, &[S::Cancelled]),
    (S::Burst, C::Complete, &[S::Completed]),
    (S::Review, C::ApplyPlan, &[S::Review]),
    (S::Review, C::Pause, &[S::Paused]),
    (S::Review, C::Advance, &[S::Completed]),
    (S::Review, C::Cancel, &[S::Cancelled]),
    (S::Review, C::Complete, &[S::Completed]),
    (S::Paused, C::ApplyPlan, &[S::Paused]),
    (
        S::Paused,
        C::Resume,
        &[S::Scheduled, S::Prep, S::WarmUp, S::Burst, S::Review],
    ),
    (S::Paused, C::Cancel, &[S::Cancelled]),
];

/// The states `command` may lead to from `state`; `None` when the table refuses the pair.
pub fn allowed(state: StateKind, command: CommandKind) -> Option<&'static [StateKind]> {
    TABLE
        .iter()
        .find(|(from, by, _)| *from == state && *by == command)
        .map(|(_, _, to)| *to)
}

/// The table as Markdown rows (`| Prep | pause | Paused |`), for the docs and the test that
/// keeps them equal.
pub fn markdown() -> String {
    let mut out = String::from("| state | command | leads to |\n|---|---|---|\n");
    for (from, by, to) in TABLE {
        let targets: Vec<&str> = to.iter().map(|kind| kind.name()).collect();
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            from.name(),
            by.name(),
            targets.join(", ")
        ));
    }
    out
}
