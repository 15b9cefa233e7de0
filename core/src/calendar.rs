//! The team's calendar as iCalendar text (RFC 5545): the plan's phases and burst stages as
//! events, every task occurrence as a to-do with its due instant, an alarm per reminder and its
//! status on the board, for everyone or for one role or person.
//!
//! What a calendar app needs to follow a campaign that changes:
//! - every component has a stable `UID` ([`phase_uid`], [`stage_uid`], [`occurrence_uid`]),
//!   made of the campaign's id and the phase, stage or occurrence, never of an instant, so a
//!   revision that moves a task's hour moves the same to-do instead of adding another;
//! - `SEQUENCE` ([`sequence`]) is the plan version plus the pauses that shifted the windows, so
//!   it grows with every change of an instant and the app takes the new one;
//! - `DTSTAMP` is the instant the answer is made at, passed in: the same inputs give the same
//!   bytes.
//!
//! Every instant is written in UTC (`20261101T140000Z`), whatever the campaign's zone, so no
//! reader has to know the zone's rules; reminders are written relative to the due instant in
//! exact hours, minutes and seconds (`-PT24H`, never the nominal day `-P1D`, which a reader
//! could stretch to 25 hours across a daylight-saving change). Lines end with CRLF and are
//! folded at 75 octets between characters, never inside one (a Chinese title's characters are
//! three octets each).
//!
//! Pure: the occurrences and their reminders come from [`crate::task::occurrences`] and
//! [`crate::task::reminder_schedule`], what is done from the [`TaskBoard`]; nothing here reads a
//! clock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::campaign::timeline::{human_duration, local};
use crate::campaign::SkippedStep;
use crate::plan::diagnostic::suggest;
use crate::plan::model::{PhaseKind, Plan, Task};
use crate::task::{
    occurrences, reminder_schedule, skipped_by, Occurrence, ReminderKind, TaskBoard,
    ESCALATION_ROLE,
};

/// The right-hand side of every UID: the product that made it.
pub const UID_DOMAIN: &str = "battleplan";
/// The calendar's `PRODID`.
pub const PRODID: &str = "-//battleplan//battleplan calendar//EN";
/// How often a subscribed calendar app should fetch the calendar again.
pub const REFRESH: &str = "PT1H";
/// The longest content line, in octets, before it is folded (RFC 5545 3.1).
pub const LINE_OCTETS: usize = 75;

/// Whose calendar: everyone's (no filter), one role's tasks, or one person's (the tasks of every
/// role the person is a member of). Phases and stages are in every calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub role: Option<String>,
    pub person: Option<String>,
}

impl Filter {
    /// Refuses a role the plan does not have, a person no role lists, or a person who is not a
    /// member of the role also asked for; the message names what there is.
    pub fn check(&self, plan: &Plan) -> Result<(), String> {
        let campaign = &plan.campaign.id;
        if let Some(role) = &self.role {
            if !plan.roles.iter().any(|candidate| candidate.id == *role) {
                let ids = plan.roles.iter().map(|candidate| candidate.id.as_str());
                let help = match suggest(role, ids.clone()) {
                    Some(candidate) => format!("did you mean `{candidate}`?"),
                    None => format!("it has: {}", ids.collect::<Vec<_>>().join(", ")),
                };
                return Err(format!("campaign {campaign} has no role `{role}`; {help}"));
            }
        }
        if let Some(person) = &self.person {
            let mut members: Vec<&str> = plan
                .roles
                .iter()
                .flat_map(|role| role.members.iter().map(String::as_str))
                .collect();
            members.sort_unstable();
            members.dedup();
            if !members.contains(&person.as_str()) {
                let help = match suggest(person, members.iter().copied()) {
                    Some(candidate) => format!("did you mean `{candidate}`?"),
                    None if members.is_empty() => "its roles list no members".to_string(),
                    None => format!("its roles list: {}", members.join(", ")),
                };
                return Err(format!(
                    "no role of campaign {campaign} lists `{person}` as a member; {help}"
                ));
            }
            if let Some(role) = &self.role {
                if !self.roles_of_person(plan).contains(&role.as_str()) {
                    return Err(format!(
                        "`{person}` is not a member of role `{role}` in campaign {campaign}; their roles: {}",
                        self.roles_of_person(plan).join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The roles the person asked for is a member of.
    fn roles_of_person<'p>(&self, plan: &'p Plan) -> Vec<&'p str> {
        let Some(person) = &self.person else {
            return Vec::new();
        };
        plan.roles
            .iter()
            .filter(|role| role.members.iter().any(|member| member == person))
            .map(|role| role.id.as_str())
            .collect()
    }

    /// Whether the task's occurrences are in this calendar.
    fn includes(&self, plan: &Plan, task: &Task) -> bool {
        if self.role.as_ref().is_some_and(|role| *role != task.role) {
            return false;
        }
        if self.person.is_some() && !self.roles_of_person(plan).contains(&task.role.as_str()) {
            return false;
        }
        true
    }

    /// Whether the readers of this calendar are the ones escalations go to (the boss role):
    /// then a task's escalation is one of its alarms.
    fn hears_escalations(&self, plan: &Plan) -> bool {
        let role_ok = self
            .role
            .as_deref()
            .is_none_or(|role| role == ESCALATION_ROLE);
        let person_ok =
            self.person.is_none() || self.roles_of_person(plan).contains(&ESCALATION_ROLE);
        role_ok && person_ok
    }

    /// How the calendar's name says whose it is: ` · sales`, ` · li.na`.
    fn suffix(&self) -> String {
        match (&self.role, &self.person) {
            (None, None) => String::new(),
            (Some(role), None) => format!(" · {role}"),
            (None, Some(person)) => format!(" · {person}"),
            (Some(role), Some(person)) => format!(" · {person} ({role})"),
        }
    }
}

/// What a calendar is made of.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The plan in force (its windows and tasks already moved by shifting pauses).
    pub plan: &'a Plan,
    /// The plan version in force (1, 2, ...).
    pub plan_version: u32,
    /// How many pauses shifted the plan's windows (`CampaignState::shifts`).
    pub shifts: usize,
    /// What is done, on the campaign's task board.
    pub board: &'a TaskBoard,
    /// The steps an advance cut short: their occurrences are cancelled.
    pub skipped: &'a [SkippedStep],
    pub filter: &'a Filter,
    /// The instant the calendar is made at (`DTSTAMP`).
    pub stamp: DateTime<Utc>,
}

/// The calendar and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The iCalendar text: CRLF line ends, folded lines.
    pub ics: String,
    /// Phases and stages.
    pub events: usize,
    /// Task occurrences.
    pub todos: usize,
    pub alarms: usize,
    pub sequence: u32,
}

/// The `SEQUENCE` of every component: the plan version, plus one for each pause that shifted
/// the windows. Both only grow, so every change of an instant (a revision, a shifting pause)
/// raises it and a calendar app takes the new instants.
pub fn sequence(plan_version: u32, shifts: usize) -> u32 {
    plan_version.saturating_add(u32::try_from(shifts).unwrap_or(u32::MAX))
}

/// `phase-burst.CAMPAIGN@battleplan`.
pub fn phase_uid(campaign: &str, phase: PhaseKind) -> String {
    format!("phase-{}.{campaign}@{UID_DOMAIN}", phase.key())
}

/// `stage-early.CAMPAIGN@battleplan`.
pub fn stage_uid(campaign: &str, stage: &str) -> String {
    format!("stage-{stage}.{campaign}@{UID_DOMAIN}")
}

/// `task-create-coupons.CAMPAIGN@battleplan` for a one-off task,
/// `task-take-orders.2026-09-02.CAMPAIGN@battleplan` for the occurrence of a recurring one on a
/// local day (the board's occurrence id `TASK@DAY`, its `@` made a `.`). Ids are slugs, which
/// hold no `.`, so a UID names one occurrence only.
pub fn occurrence_uid(campaign: &str, occurrence: &str) -> String {
    format!(
        "task-{}.{campaign}@{UID_DOMAIN}",
        occurrence.replace('@', ".")
    )
}

/// The calendar for `inputs`, or why the filter is refused ([`Filter::check`]).
pub fn render(inputs: &Inputs<'_>) -> Result<Calendar, String> {
    let plan = inputs.plan;
    inputs.filter.check(plan)?;
    let campaign = &plan.campaign.id;
    let zone = plan.campaign.time_zone;
    let sequence = sequence(inputs.plan_version, inputs.shifts);
    let stamp = utc(inputs.stamp);
    let mut out = Writer::default();
    out.line("BEGIN:VCALENDAR");
    out.line(&format!("PRODID:{PRODID}"));
    out.line("VERSION:2.0");
    out.line("CALSCALE:GREGORIAN");
    out.line("METHOD:PUBLISH");
    let name = format!("{}{}", plan.campaign.name, inputs.filter.suffix());
    out.text("NAME", &name);
    out.text("X-WR-CALNAME", &name);
    if let Some(description) = &plan.campaign.description {
        out.text("X-WR-CALDESC", description);
    }
    out.text("X-WR-TIMEZONE", zone.name());
    out.line(&format!("REFRESH-INTERVAL;VALUE=DURATION:{REFRESH}"));
    out.line(&format!("X-PUBLISHED-TTL:{REFRESH}"));

    let mut calendar = Calendar {
        ics: String::new(),
        events: 0,
        todos: 0,
        alarms: 0,
        sequence,
    };
    let head = |out: &mut Writer, uid: &str| {
        out.text("UID", uid);
        out.line(&format!("DTSTAMP:{stamp}"));
        out.line(&format!("SEQUENCE:{sequence}"));
    };

    for phase in &plan.phases {
        out.line("BEGIN:VEVENT");
        head(&mut out, &phase_uid(campaign, phase.kind));
        out.line(&format!("DTSTART:{}", utc(phase.window.start)));
        out.line(&format!("DTEND:{}", utc(phase.window.end)));
        out.text("SUMMARY", &phase.name);
        let mut words = Vec::new();
        if let Some(description) = &phase.description {
            words.push(description.clone());
        }
        words.push(format!(
            "The {} phase of {}: {} to {}.",
            phase.kind.label(),
            plan.campaign.name,
            local(zone, phase.window.start),
            local(zone, phase.window.end)
        ));
        out.text("DESCRIPTION", &words.join("\n\n"));
        out.line("CATEGORIES:phase");
        // A phase lasts days: it must not make its readers look busy.
        out.line("TRANSP:TRANSPARENT");
        out.line("END:VEVENT");
        calendar.events += 1;
    }
    for stage in &plan.stages {
        out.line("BEGIN:VEVENT");
        head(&mut out, &stage_uid(campaign, &stage.id));
        out.line(&format!("DTSTART:{}", utc(stage.window.start)));
        out.line(&format!("DTEND:{}", utc(stage.window.end)));
        out.text("SUMMARY", &format!("{}: {}", stage.name, stage.theme));
        let mut words = Vec::new();
        if let Some(description) = &stage.description {
            words.push(description.clone());
        }
        words.push(format!(
            "The {} stage of the burst of {}: {} to {}.",
            stage.id,
            plan.campaign.name,
            local(zone, stage.window.start),
            local(zone, stage.window.end)
        ));
        out.text("DESCRIPTION", &words.join("\n\n"));
        out.line("CATEGORIES:stage");
        out.line("TRANSP:TRANSPARENT");
        out.line("END:VEVENT");
        calendar.events += 1;
    }

    let escalations = inputs.filter.hears_escalations(plan);
    let tasks: HashMap<&str, &Task> = plan
        .tasks
        .iter()
        .map(|task| (task.id.as_str(), task))
        .collect();
    for occurrence in occurrences(plan) {
        let Some(task) = tasks.get(occurrence.task.as_str()).copied() else {
            continue;
        };
        if !inputs.filter.includes(plan, task) {
            continue;
        }
        out.line("BEGIN:VTODO");
        head(&mut out, &occurrence_uid(campaign, &occurrence.id));
        out.text("SUMMARY", &task.title);
        out.line(&format!("DUE:{}", utc(occurrence.due)));
        let done = inputs.board.done_by(&occurrence.id);
        let skipped = skipped_by(task, occurrence.due, inputs.skipped);
        out.text(
            "DESCRIPTION",
            &task_words(plan, task, &occurrence, inputs.board, skipped),
        );
        out.line(&format!("CATEGORIES:{}", escape(&task.role)));
        match (done, skipped) {
            (Some(done), _) => {
                out.line("STATUS:COMPLETED");
                out.line(&format!("COMPLETED:{}", utc(done.at)));
                out.line("PERCENT-COMPLETE:100");
            }
            (None, Some(_)) => out.line("STATUS:CANCELLED"),
            (None, None) => {
                out.line("STATUS:NEEDS-ACTION");
                // Reminders stop once it is done or skipped, as the reminders sent do.
                for slot in reminder_schedule(task, occurrence.due) {
                    if slot.kind == ReminderKind::Escalation && !escalations {
                        continue;
                    }
                    out.line("BEGIN:VALARM");
                    out.line("ACTION:DISPLAY");
                    let offset = (slot.at - occurrence.due).num_seconds();
                    out.line(&format!("TRIGGER;RELATED=END:{}", duration(offset)));
                    let said = match slot.kind {
                        ReminderKind::Lead { before_seconds } => format!(
                            "Due in {}: {}",
                            human_duration(before_seconds.saturating_mul(1000)),
                            task.title
                        ),
                        ReminderKind::Due => format!("Due now: {}", task.title),
                        ReminderKind::Escalation => format!(
                            "Escalated to {ESCALATION_ROLE}: {} ({}) was due {} and is not done",
                            task.title,
                            task.role,
                            local(zone, occurrence.due)
                        ),
                    };
                    out.text("DESCRIPTION", &said);
                    out.line("END:VALARM");
                    calendar.alarms += 1;
                }
            }
        }
        out.line("END:VTODO");
        calendar.todos += 1;
    }
    out.line("END:VCALENDAR");
    calendar.ics = out.text;
    Ok(calendar)
}

/// A to-do's description: the task's own text, then when it is due in the campaign's zone,
/// who does it, where it belongs, how to mark it done, and what became of it.
fn task_words(
    plan: &Plan,
    task: &Task,
    occurrence: &Occurrence,
    board: &TaskBoard,
    skipped: Option<&SkippedStep>,
) -> String {
    let zone = plan.campaign.time_zone;
    let mut parts = Vec::new();
    if let Some(description) = &task.description {
        parts.push(description.clone());
    }
    let mut facts = vec![format!("Due {}.", local(zone, occurrence.due))];
    let role = plan.roles.iter().find(|role| role.id == task.role);
    let role_words = match role {
        Some(role) if !role.members.is_empty() => {
            format!("{} ({}): {}", role.name, role.id, role.members.join(", "))
        }
        Some(role) => format!("{} ({})", role.name, role.id),
        None => task.role.clone(),
    };
    facts.push(format!("Role: {role_words}."));
    let workstream = plan
        .workstreams
        .iter()
        .find(|workstream| workstream.id == task.workstream)
        .map_or(task.workstream.as_str(), |workstream| {
            workstream.name.as_str()
        });
    facts.push(format!("Workstream: {workstream}."));
    let stage = task
        .stage
        .as_ref()
        .map(|stage| format!(", stage {stage}"))
        .unwrap_or_default();
    facts.push(format!("Phase: {}{stage}.", task.phase.label()));
    facts.push(format!(
        "Mark it done: battleplan task done {} --campaign {} --actor NAME",
        occurrence.id, plan.campaign.id
    ));
    parts.push(facts.join("\n"));
    if let Some(done) = board.done_by(&occurrence.id) {
        let note = done
            .note
            .as_ref()
            .map(|note| format!(": {note}"))
            .unwrap_or_default();
        parts.push(format!(
            "Done by {} at {}{note}",
            done.by,
            local(zone, done.at)
        ));
    } else if let Some(step) = skipped {
        parts.push(format!(
            "Skipped: {} advanced the campaign out of its {} at {}.",
            step.by,
            match &step.step.stage {
                Some(stage) => format!("stage {stage}"),
                None => format!("{} phase", step.step.phase.label()),
            },
            local(zone, step.at)
        ));
    }
    parts.join("\n\n")
}

/// A DATE-TIME in UTC, to the second: `20261101T140000Z`.
fn utc(instant: DateTime<Utc>) -> String {
    instant.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A DURATION in exact time only (hours, minutes, seconds), signed: `-PT24H`, `-PT1H30M`,
/// `PT0S`. Days and weeks are nominal in RFC 5545 (a day across a daylight-saving change is 23
/// or 25 hours to a reader in such a zone); a reminder's lead is exact seconds.
pub fn duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let total = seconds.unsigned_abs();
    if total == 0 {
        return "PT0S".to_string();
    }
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = format!("{sign}PT");
    if hours > 0 {
        text.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}M"));
    }
    if secs > 0 {
        text.push_str(&format!("{secs}S"));
    }
    text
}

/// A TEXT value escaped (RFC 5545 3.3.11): backslash, semicolon and comma behind a backslash,
/// every line break (LF, CR LF, CR) as `\n`. The other control characters, which TEXT may not
/// hold, are left out; a tab stays.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut characters = text.chars().peekable();
    while let Some(c) = characters.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if characters.peek() == Some(&'\n') {
                    characters.next();
                }
                out.push_str("\\n");
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A content line folded (RFC 5545 3.1): at most [`LINE_OCTETS`] octets a line, the
/// continuation lines starting with one space, each break between two characters (never inside
/// a UTF-8 sequence), every line ended by CRLF.
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / LINE_OCTETS * 3 + 2);
    let mut width = 0;
    for c in line.chars() {
        let octets = c.len_utf8();
        if width + octets > LINE_OCTETS {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += octets;
    }
    out.push_str("\r\n");
    out
}

/// The calendar's text, a content line at a time.
#[derive(Default)]
struct Writer {
    text: String,
}

impl Writer {
    fn line(&mut self, content: &str) {
        self.text.push_str(&fold(content));
    }

    /// A property with a TEXT value.
    fn text(&mut self, name: &str, value: &str) {
        self.line(&format!("{name}:{}", escape(value)));
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests;
