//! The commands that read or change campaigns: `plan apply`, `status`, `pause`, `resume`,
//! `advance`, `cancel`, `history`. Each runs the same way whether the `battleplan` process
//! opened the store itself or a running daemon executes it for another terminal (see
//! `control`): it takes a [`Request`] and returns what to print and the exit code.

use std::fmt::Write as _;

use battleplan_core::campaign::events::PhaseEntered;
use battleplan_core::campaign::timeline::{human_duration, local, local_rfc3339, localize_json};
use battleplan_core::campaign::{
    self, next_due, CampaignEvent, CampaignState, Command, PlanVersion, Status,
};
use battleplan_core::customer::events::CustomerEvent;
use battleplan_core::event::{Position, RecordedEvent, StreamId, StreamVersion};
use battleplan_core::outreach::events::{stream_of as outreach_stream, OutreachEvent};
use battleplan_core::plan::{self, diagnostic};
use battleplan_core::task::{self, events::TaskEvent};
use battleplan_core::text::printable;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::app::Action;
use crate::kernel::projection::Campaigns;
use crate::kernel::runtime::{HandleError, Runtime, Who};
use crate::present::{Reply, USER_ERROR};

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

fn status_json(state: &CampaignState, now: DateTime<Utc>) -> serde_json::Value {
    let zone = state.zone();
    let next = next_due(state).map(|due| {
        let (what, step) = match &due.command {
            Command::Enter { step, .. } => ("enter", Some(step.clone())),
            _ => ("complete", None),
        };
        json!({
            "what": what,
            "step": step,
            "at": local_rfc3339(zone, due.at),
            "in_seconds": (due.at - now).num_seconds(),
        })
    });
    json!({
        "campaign": state.id,
        "name": state.name,
        "state": state.kind().name(),
        "status": state.status,
        "description": state.describe(),
        "since": state.since.map(|since| local_rfc3339(zone, since)),
        "plan_version": state.plan_version,
        "time_zone": state.planned.as_ref().map(|t| t.time_zone.clone()),
        "next": next,
    })
}

fn status_text(out: &mut String, state: &CampaignState, now: DateTime<Utc>) {
    let zone = state.zone();
    let since = match &state.status {
        // A pause names its own instant: only how long ago.
        battleplan_core::campaign::Status::Paused { since, .. } => {
            format!(" ({})", ago_or_in(now, *since))
        }
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

pub async fn status(
    runtime: &Runtime,
    campaign: Option<&str>,
    json: bool,
) -> Result<Reply, HandleError> {
    let campaigns = current(runtime).await?;
    let now = runtime.clock.now();
    let chosen: Vec<&CampaignState> = match campaign {
        Some(id) => match campaigns.states.get(id) {
            Some(state) => vec![state],
            None => return Ok(Reply::user_error(unknown_campaign(id, &campaigns))),
        },
        None => campaigns.states.values().collect(),
    };
    // For one campaign, the boss's view: each stage target against what was measured.
    let targets = match campaign {
        Some(id) => crate::app::tasks::targets_text(runtime, id).await?,
        None => None,
    };
    if json {
        let list: Vec<serde_json::Value> = chosen.iter().map(|s| status_json(s, now)).collect();
        let value = if campaign.is_some() {
            let mut value = list.into_iter().next().unwrap_or_default();
            if let Some(targets) = &targets {
                value["targets"] = targets["json"].clone();
            }
            value
        } else {
            serde_json::Value::Array(list)
        };
        return Ok(Reply::ok(format!("{value:#}\n")));
    }
    if chosen.is_empty() {
        return Ok(Reply::ok(
            "no campaigns yet; apply a plan with `battleplan plan apply PLAN`\n".to_string(),
        ));
    }
    let mut out = String::new();
    for (index, state) in chosen.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        status_text(&mut out, state, now);
    }
    if let Some(text) = targets.as_ref().and_then(|t| t["text"].as_str()) {
        out.push('\n');
        out.push_str(text);
    }
    Ok(Reply::ok(out))
}

/// The campaigns projection caught up in memory (the daemon's scheduler is the one that stores
/// it, so two processes never race on its checkpoint).
/// The zone to name an instant in when it belongs to no one campaign (an import's, say): the
/// campaigns' zone when they all share one, UTC when there is none or they differ.
pub async fn people_zone(runtime: &Runtime) -> Result<chrono_tz::Tz, HandleError> {
    let campaigns = current(runtime).await?;
    let mut zones = campaigns.states.values().map(CampaignState::zone);
    let first = zones.next().unwrap_or(chrono_tz::Tz::UTC);
    Ok(if zones.all(|zone| zone == first) {
        first
    } else {
        chrono_tz::Tz::UTC
    })
}

async fn current(runtime: &Runtime) -> Result<Campaigns, HandleError> {
    let store = runtime.store.as_ref();
    let mut campaigns = Campaigns::load(store).await?;
    campaigns.catch_up_in_memory(store).await?;
    Ok(campaigns)
}

fn unknown_campaign(id: &str, campaigns: &Campaigns) -> String {
    if campaigns.states.is_empty() {
        return format!("no campaign named {id}: there are no campaigns yet");
    }
    let known: Vec<&str> = campaigns.states.keys().map(String::as_str).collect();
    format!("no campaign named {id}; known: {}", known.join(", "))
}

pub async fn act(
    runtime: &Runtime,
    campaign: &str,
    action: Action,
    request: &Who,
) -> Result<Reply, HandleError> {
    let (state, _) = runtime.load(campaign).await?;
    if state.kind() == campaign::StateKind::Draft {
        let campaigns = current(runtime).await?;
        return Ok(Reply::user_error(unknown_campaign(campaign, &campaigns)));
    }
    let handled = runtime.handle(campaign, &action.command(), request).await?;
    let now = runtime.clock.now();
    let zone = handled.state.zone();
    let mut out = String::new();
    for event in &handled.events {
        if let Ok(Some(decoded)) = CampaignEvent::decode(event) {
            let _ = writeln!(
                out,
                "{campaign}: {} (recorded at position {}{})",
                decoded.summary(zone),
                event.position,
                if handled.repeated {
                    ", earlier, by this same command id"
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(out, "  status: {}", handled.state.describe());
    let _ = writeln!(out, "  next:   {}", next_words(&handled.state, now));
    Ok(Reply::ok(out))
}

pub async fn apply_plan(
    runtime: &Runtime,
    file_name: &str,
    source: &str,
    request: &Who,
) -> Result<Reply, HandleError> {
    let checked = plan::check(source.as_bytes());
    let mut errors = String::new();
    for diagnostic in &checked.diagnostics {
        let _ = writeln!(
            errors,
            "{}",
            diagnostic::render(file_name, Some(&checked.line_index), diagnostic)
        );
    }
    let Some(plan) = checked.plan.as_ref() else {
        let _ = writeln!(
            errors,
            "{file_name}: the plan has errors; nothing was applied (see `battleplan validate {file_name}`)"
        );
        return Ok(Reply {
            code: USER_ERROR,
            stdout: String::new(),
            stderr: errors,
        });
    };
    let version = PlanVersion::of(plan, source);
    let id = version.campaign.clone();
    let handled = runtime
        .handle(&id, &Command::ApplyPlan(Box::new(version)), request)
        .await?;
    let now = runtime.clock.now();
    let mut out = errors; // warnings, if any
    let earlier = if handled.repeated {
        ", earlier, by this same command id"
    } else {
        ""
    };
    if handled.events.is_empty() {
        let _ = writeln!(
            out,
            "{id}: plan version {} is already this file; nothing recorded",
            handled.state.plan_version
        );
    }
    for event in &handled.events {
        match CampaignEvent::decode(event) {
            Ok(Some(CampaignEvent::PlanApplied(applied))) => {
                let _ = writeln!(
                    out,
                    "{id}: applied plan version {} ({}), recorded at position {}{earlier}",
                    applied.version, applied.name, event.position
                );
            }
            Ok(Some(CampaignEvent::PlanRevised(revised))) => {
                let _ = writeln!(
                    out,
                    "{id}: revised to plan version {}, recorded at position {}{earlier}",
                    revised.version, event.position
                );
                for change in &revised.changes {
                    let _ = writeln!(out, "  - {change}");
                }
                if revised.changes.is_empty() {
                    let _ = writeln!(out, "  (no change to the timeline or the work)");
                }
            }
            _ => {}
        }
    }
    let _ = writeln!(out, "  status: {}", handled.state.describe());
    let _ = writeln!(out, "  next:   {}", next_words(&handled.state, now));
    Ok(Reply::ok(out))
}

/// One line of the history: when, where in the log, under which plan version, who, what; and
/// the reason a person gave on the next.
fn history_line(
    out: &mut String,
    event: &RecordedEvent,
    campaign: Option<&str>,
    words: &str,
    zone: chrono_tz::Tz,
    plan_version: u32,
) {
    let shown = campaign.map(|id| format!("{id}  ")).unwrap_or_default();
    // The actor, the reason and a task's note are what people typed: escaped, so that none of
    // them can move the cursor or fake a line of the history.
    let _ = writeln!(
        out,
        "{}  #{:<6} v{:<3} {shown}{:<18} {}",
        local(zone, event.recorded_at),
        event.position.0,
        plan_version,
        printable(&event.metadata.actor),
        printable(words),
    );
    if let Some(reason) = &event.metadata.reason {
        let _ = writeln!(out, "{:30}reason: {}", "", printable(reason));
    }
}

/// One event of the history as JSON.
fn history_json(
    event: &RecordedEvent,
    campaign: &str,
    words: String,
    payload: serde_json::Value,
    plan_version: Option<u32>,
    late_by_ms: Option<i64>,
    zone: chrono_tz::Tz,
) -> serde_json::Value {
    let mut payload = payload;
    localize_json(&mut payload, zone);
    json!({
        "position": event.position.0,
        "campaign": campaign,
        "version": event.version.0,
        "plan_version": plan_version,
        "recorded_at": local_rfc3339(zone, event.recorded_at),
        "type": event.event_type,
        "actor": event.metadata.actor,
        "reason": event.metadata.reason,
        "command_id": event.metadata.command_id.0,
        "late_by_ms": late_by_ms,
        "summary": words,
        "payload": payload,
    })
}

/// A campaign event as the history's JSON shows it.
fn campaign_json(
    event: &RecordedEvent,
    campaign: &str,
    decoded: &CampaignEvent,
    state: &CampaignState,
) -> serde_json::Value {
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
    history_json(
        event,
        campaign,
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
                let _ = write!(words, ": \"{note}\"");
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
    let words = match &decoded {
        CustomerEvent::ImportStarted(started) => {
            let mut words = format!(
                "{} import of {} (blake3 {}) started: {} row{} to record",
                started.kind.as_str(),
                printable(&started.file),
                short(&started.digest),
                started.rows,
                if started.rows == 1 { "" } else { "s" }
            );
            if started.skipped_total > 0 {
                let _ = write!(
                    words,
                    ", {} bad row{} skipped",
                    started.skipped_total,
                    if started.skipped_total == 1 { "" } else { "s" }
                );
            }
            words
        }
        CustomerEvent::ImportFinished(finished) => format!(
            "{} import (blake3 {}) finished: {} row{} recorded, {} skipped",
            finished.kind.as_str(),
            short(&finished.digest),
            finished.rows,
            if finished.rows == 1 { "" } else { "s" },
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

/// Every event of a stream recorded by then, in order.
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

/// `history [CAMPAIGN] [--as-of T]`: one campaign's events, or every campaign's interleaved in
/// the order they were recorded (by log position). With `--as-of`, only the events recorded up
/// to T are read into the answer, and each campaign's state as of T follows, computed by
/// replaying those events through `campaign::evolve`. Each line carries the plan version in force
/// once the event was applied.
pub async fn history(
    runtime: &Runtime,
    campaign: Option<&str>,
    json: bool,
    as_of: Option<DateTime<Utc>>,
) -> Result<Reply, HandleError> {
    let store = runtime.store.as_ref();
    let recorded_by_then =
        |event: &RecordedEvent| as_of.is_none_or(|instant| event.recorded_at <= instant);
    let mut events = Vec::new();
    match campaign {
        Some(id) => {
            let stream = campaign::stream_of(id).map_err(campaign::Rejection)?;
            let (any, own) = whole_stream(runtime, &stream, recorded_by_then).await?;
            if !any {
                let campaigns = current(runtime).await?;
                return Ok(Reply::user_error(unknown_campaign(id, &campaigns)));
            }
            events = own;
            // The outbox's and the task board's events of the campaign, in log order with its
            // own.
            for stream in [outreach_stream(id), task::stream_of(id)]
                .into_iter()
                .flatten()
            {
                events.extend(whole_stream(runtime, &stream, recorded_by_then).await?.1);
            }
            events.sort_by_key(|event| event.position);
        }
        None => {
            let mut after = Position::START;
            loop {
                let batch = store.read_all(after, 10_000).await?;
                let Some(last) = batch.last() else { break };
                after = last.position;
                let full = batch.len() == 10_000;
                events.extend(batch.into_iter().filter(|event| {
                    (campaign::campaign_of(&event.stream).is_some()
                        || OutreachEvent::holds(&event.event_type)
                        || TaskEvent::holds(&event.event_type)
                        || import_boundary(event))
                        && recorded_by_then(event)
                }));
                if !full {
                    break;
                }
            }
        }
    }
    let people = people_zone(runtime).await?;
    // Replay as we go: each line is shown with the state its event led to.
    let mut states: std::collections::BTreeMap<String, CampaignState> =
        std::collections::BTreeMap::new();
    let mut text = String::new();
    let mut list = Vec::new();
    for event in &events {
        let shown = |id: &str| campaign.is_none().then(|| id.to_string());
        let Some(id) = campaign::campaign_of(&event.stream) else {
            if let Some((words, payload)) = import_activity(event)? {
                // The customer book is every campaign's: the line names none, and reads in
                // the campaigns' zone (UTC when they differ or there are none).
                let zone = people;
                if json {
                    let mut line = history_json(event, "", words, payload, None, None, zone);
                    line["campaign"] = serde_json::Value::Null;
                    list.push(line);
                } else {
                    history_line(&mut text, event, shown("-").as_deref(), &words, zone, 0);
                }
                continue;
            }
            if let Some((id, words, payload)) = activity(event)? {
                let state = states.get(&id);
                if json {
                    let version = state.map(|state| state.plan_version);
                    let zone = state.map_or(chrono_tz::Tz::UTC, CampaignState::zone);
                    list.push(history_json(
                        event, &id, words, payload, version, None, zone,
                    ));
                } else {
                    history_line(
                        &mut text,
                        event,
                        shown(&id).as_deref(),
                        &words,
                        state.map_or(chrono_tz::Tz::UTC, CampaignState::zone),
                        state.map_or(0, |state| state.plan_version),
                    );
                }
            }
            continue;
        };
        let Some(decoded) = CampaignEvent::decode(event)? else {
            continue;
        };
        let state = states
            .remove(id)
            .unwrap_or_else(|| CampaignState::draft(id));
        let state = campaign::evolve(state, &decoded, &campaign::events::EventMeta::of(event));
        if json {
            list.push(campaign_json(event, id, &decoded, &state));
        } else {
            let zone = state.zone();
            history_line(
                &mut text,
                event,
                shown(id).as_deref(),
                &decoded.summary(zone),
                zone,
                state.plan_version,
            );
        }
        states.insert(id.to_string(), state);
    }
    let Some(as_of) = as_of else {
        if json {
            return Ok(Reply::ok(format!("{:#}\n", serde_json::Value::Array(list))));
        }
        if events.is_empty() {
            return Ok(Reply::ok("no campaign events yet\n".to_string()));
        }
        return Ok(Reply::ok(text));
    };
    if json {
        let value = json!({
            "as_of": local_rfc3339(
                states.values().next().map_or(chrono_tz::Tz::UTC, CampaignState::zone),
                as_of
            ),
            "events": list,
            "states": states.values().map(|state| status_json(state, as_of)).collect::<Vec<_>>(),
        });
        return Ok(Reply::ok(format!("{value:#}\n")));
    }
    let mut out = String::new();
    let zone = states
        .values()
        .next()
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
    for state in states.values() {
        out.push('\n');
        let _ = writeln!(out, "state as of {}:", local(state.zone(), as_of));
        status_text(&mut out, state, as_of);
    }
    Ok(Reply::ok(out))
}

/// `targets CAMPAIGN`: each stage target against what was measured (interim: the words
/// `status CAMPAIGN` prints after the campaign).
pub async fn targets(runtime: &Runtime, campaign: &str) -> Result<TargetsView, HandleError> {
    let campaigns = current(runtime).await?;
    if !campaigns.states.contains_key(campaign) {
        return Ok(Reply::user_error(unknown_campaign(campaign, &campaigns)));
    }
    Ok(crate::app::tasks::targets_text(runtime, campaign)
        .await?
        .and_then(|targets| targets["text"].as_str().map(str::to_string))
        .map(Reply::ok)
        .unwrap_or_else(|| Reply::ok(format!("campaign {campaign} has no stage targets\n"))))
}

/// Still printed words; typed views come next.
pub type TargetsView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type StatusView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type HistoryView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type ActView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type ApplyView = crate::present::Reply;
