//! Text for the views of `app::campaigns`. Their JSON is each view's `body` (see [`shown`]).

use std::fmt::Write as _;

use battleplan_core::campaign::timeline::{human_duration, local};
use battleplan_core::campaign::{next_due, CampaignState, Command, Status};
use battleplan_core::funnel::{render_targets, TargetLine};
use battleplan_core::plan::model::{Metric, TargetValue};
use battleplan_core::text::printable;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::campaigns::{
    ActView, ApplyView, HistoryEvent, HistoryView, PlanRecorded, StatusView, TargetAmount,
    TargetRow, TargetsView,
};
use crate::present::{json, Reply};

/// A view of this module for a terminal: its body's JSON when asked for, else its words.
pub fn shown<B: Serialize>(body: &B, as_json: bool, text: impl FnOnce() -> Reply) -> Reply {
    if as_json {
        Reply::ok(json(body))
    } else {
        text()
    }
}

fn ago_or_in(now: DateTime<Utc>, instant: DateTime<Utc>) -> String {
    let ms = (instant - now).num_milliseconds();
    if ms.abs() < 1000 {
        "just now".to_string()
    } else if ms >= 0 {
        format!("in {}", human_duration(ms))
    } else {
        format!("{} ago", human_duration(ms))
    }
}

/// The next transition in words: `burst (middle stage) at 2026-09-11 00:00 +08:00, in 8 d 22 h`.
fn next_words(state: &CampaignState, now: DateTime<Utc>) -> String {
    let zone = state.zone();
    match &state.status {
        Status::Draft => "none: no plan applied".to_string(),
        Status::Paused { .. } => format!(
            "none while paused (resume with `battleplan resume {} --actor NAME --reason WHY`)",
            state.id
        ),
        Status::Completed | Status::Cancelled { .. } => "none: the campaign is over".to_string(),
        _ => match next_due(state) {
            None => "none".to_string(),
            Some(due) => {
                let what = match &due.command {
                    Command::Enter { step, .. } => step.to_string(),
                    _ => "completion".to_string(),
                };
                let when = if due.at <= now {
                    format!(
                        "overdue by {} (the daemon enters it when it runs: `battleplan run`)",
                        human_duration((now - due.at).num_milliseconds())
                    )
                } else {
                    ago_or_in(now, due.at)
                };
                format!("{what} at {}, {when}", local(zone, due.at))
            }
        },
    }
}

fn status_text(out: &mut String, state: &CampaignState, now: DateTime<Utc>) {
    let zone = state.zone();
    let since = match &state.status {
        // A pause names its own instant: only how long ago.
        Status::Paused { since, .. } => format!(" ({})", ago_or_in(now, *since)),
        _ => state
            .since
            .map(|since| format!(" since {} ({})", local(zone, since), ago_or_in(now, since)))
            .unwrap_or_default(),
    };
    let _ = writeln!(out, "{}: {}", state.id, state.name);
    let _ = writeln!(out, "  status: {}{since}", state.describe());
    if let Some(timeline) = state.timeline() {
        let _ = writeln!(
            out,
            "  plan:   version {} ({})",
            state.plan_version, timeline.time_zone
        );
        if let Some(step) = state.current_step() {
            if let Some(window) = timeline.window(step) {
                let _ = writeln!(
                    out,
                    "  window: {} to {}",
                    local(zone, window.start),
                    local(zone, window.end)
                );
            }
        }
    }
    let _ = writeln!(out, "  next:   {}", next_words(state, now));
}

pub fn status(view: &StatusView) -> Reply {
    if view.states.is_empty() {
        return Reply::ok(
            "no campaigns yet; apply a plan with `battleplan plan apply PLAN`\n".to_string(),
        );
    }
    let mut out = String::new();
    for (index, state) in view.states.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        status_text(&mut out, state, view.now);
    }
    if let crate::app::campaigns::StatusBody::One(one) = &view.body {
        if let Some(channels) = &one.channels {
            super::outreach::channel_lines(&mut out, &one.campaign, channels, true);
        }
    }
    if let Some(targets) = view.targets.as_ref().filter(|t| !t.body.is_empty()) {
        out.push('\n');
        out.push_str(&targets_table(targets));
    }
    Reply::ok(out)
}

fn value(amount: TargetAmount) -> TargetValue {
    match amount {
        TargetAmount::Money(money) => TargetValue::Money(money),
        TargetAmount::Count(count) => TargetValue::Count(count),
        TargetAmount::Rate(rate) => TargetValue::Rate(rate),
    }
}

/// The table of the core's `render_targets`, from the view's rows.
fn targets_table(view: &TargetsView) -> String {
    let lines: Vec<TargetLine> = view
        .body
        .iter()
        .filter_map(|row: &TargetRow| {
            Some(TargetLine {
                stage: row.stage.clone(),
                metric: Metric::from_key(&row.metric)?,
                target: value(row.target),
                actual: row.actual.map(value),
                source: row
                    .source
                    .as_deref()
                    .and_then(battleplan_core::funnel::Source::from_key),
                ratio: row.ratio,
            })
        })
        .collect();
    render_targets(&lines, &view.currency)
}

pub fn targets(view: &TargetsView) -> Reply {
    if view.body.is_empty() {
        return Reply::ok(format!("campaign {} has no stage targets\n", view.campaign));
    }
    Reply::ok(targets_table(view))
}

/// An instant the view wrote with its campaign's offset (RFC 3339), as people read it:
/// `2026-09-03 10:00 +08:00` (what `timeline::local` writes in that zone).
pub(crate) fn local_text(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(instant) => instant.format("%Y-%m-%d %H:%M %:z").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// One line of the history: when, where in the log, under which plan version, who, what; and
/// the reason a person gave on the next.
fn history_line(out: &mut String, line: &HistoryEvent, every_campaign: bool) {
    let shown = if every_campaign {
        format!("{}  ", line.campaign.as_deref().unwrap_or("-"))
    } else {
        String::new()
    };
    // The actor, the reason and a task's note are what people typed: escaped, so that none of
    // them can move the cursor or fake a line of the history.
    let _ = writeln!(
        out,
        "{}  #{:<6} v{:<3} {shown}{:<18} {}",
        local_text(&line.recorded_at),
        line.position,
        // No plan version: a line of the customer book or the shop's numbers.
        line.plan_version
            .map_or_else(|| "-".to_string(), |version| version.to_string()),
        printable(&line.actor),
        printable(&line.summary),
    );
    if let Some(reason) = &line.reason {
        let _ = writeln!(out, "{:30}reason: {}", "", printable(reason));
    }
}

pub fn history(view: &HistoryView) -> Reply {
    let events = view.body.events();
    let mut text = String::new();
    for line in events {
        history_line(&mut text, line, view.campaign.is_none());
    }
    let Some(as_of) = view.as_of else {
        if events.is_empty() {
            return Reply::ok("no campaign events yet\n".to_string());
        }
        return Reply::ok(text);
    };
    let mut out = String::new();
    let zone = view
        .states
        .first()
        .map(CampaignState::zone)
        .unwrap_or(chrono_tz::Tz::UTC);
    let _ = writeln!(
        out,
        "as of {} (events recorded after it are left out)",
        local(zone, as_of)
    );
    out.push('\n');
    if events.is_empty() {
        out.push_str("no campaign events recorded by then\n");
    }
    out.push_str(&text);
    for state in &view.states {
        out.push('\n');
        let _ = writeln!(out, "state as of {}:", local(state.zone(), as_of));
        status_text(&mut out, state, as_of);
    }
    Reply::ok(out)
}

fn earlier(repeated: bool) -> &'static str {
    if repeated {
        ", earlier, by this same command id"
    } else {
        ""
    }
}

pub fn acted(view: &ActView) -> Reply {
    let body = &view.body;
    let mut out = String::new();
    for event in &body.events {
        let _ = writeln!(
            out,
            "{}: {} (recorded at position {}{})",
            body.campaign,
            event.summary,
            event.position,
            earlier(body.repeated)
        );
    }
    let _ = writeln!(out, "  status: {}", view.state.describe());
    let _ = writeln!(out, "  next:   {}", next_words(&view.state, view.now));
    Reply::ok(out)
}

pub fn plan_applied(view: &ApplyView) -> Reply {
    let body = &view.body;
    let id = &body.campaign;
    let earlier = earlier(body.repeated);
    let mut out = String::new();
    for warning in &body.warnings {
        let _ = writeln!(out, "{warning}");
    }
    if body.events.is_empty() {
        let _ = writeln!(
            out,
            "{id}: plan version {} is already this file; nothing recorded",
            body.plan_version
        );
    }
    for event in &body.events {
        match event {
            PlanRecorded::Applied {
                name,
                position,
                version,
            } => {
                let _ = writeln!(
                    out,
                    "{id}: applied plan version {version} ({name}), recorded at position {position}{earlier}"
                );
            }
            PlanRecorded::Revised {
                changes,
                position,
                version,
            } => {
                let _ = writeln!(
                    out,
                    "{id}: revised to plan version {version}, recorded at position {position}{earlier}"
                );
                for change in changes {
                    let _ = writeln!(out, "  - {change}");
                }
                if changes.is_empty() {
                    let _ = writeln!(out, "  (no change to the timeline or the work)");
                }
            }
        }
    }
    let _ = writeln!(out, "  status: {}", view.state.describe());
    let _ = writeln!(out, "  next:   {}", next_words(&view.state, view.now));
    Reply::ok(out)
}
