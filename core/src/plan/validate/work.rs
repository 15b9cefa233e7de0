//! People and work: roles, workstreams, tasks (once or recurring) and the boss's stage targets.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::{format_instant, DateMeaning, Validator, BUILT_IN_ROLES};
use crate::plan::diagnostic::{suggest, Code, Diagnostic};
use crate::plan::model::*;
use crate::plan::raw::*;
use crate::plan::values::Money;
use chrono::{Datelike, TimeZone};

impl Validator<'_> {
    pub(super) fn roles(&mut self) -> Vec<Role> {
        let mut roles: Vec<Role> = BUILT_IN_ROLES
            .iter()
            .map(|(id, name)| Role {
                id: id.to_string(),
                name: name.to_string(),
                members: Vec::new(),
                robot: None,
                mail: None,
            })
            .collect();
        for entry in &self.raw.roles {
            let Some(value) = &entry.value else { continue };
            let robot = value
                .robot
                .as_ref()
                .and_then(|raw| self.robot(&entry.path, raw));
            let mail = value.mail.as_ref().and_then(|address| {
                let valid = crate::customer::book::valid_email(address);
                if !valid {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            format!("{}.mail", entry.path),
                            format!(
                                "`{}` is not a mail address",
                                crate::text::printable(address)
                            ),
                        )
                        .with_help("mail = \"sales@shop.example.com\": one address, a team's list"),
                    );
                }
                valid.then(|| address.clone())
            });
            let role = Role {
                id: entry.id.clone(),
                name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                members: value.members.clone(),
                robot,
                mail,
            };
            match roles.iter_mut().find(|r| r.id == entry.id) {
                Some(existing) => {
                    existing.members = role.members;
                    existing.robot = role.robot;
                    existing.mail = role.mail;
                    if let Some(name) = &value.name {
                        existing.name = name.clone();
                    }
                }
                None => roles.push(role),
            }
        }
        roles
    }

    /// `[roles.ID.robot]`: exactly one place for the address, at most one for DingTalk's
    /// secret (none for WeCom, which does not sign). `None` (with its diagnostics) when refused.
    fn robot(&mut self, path: &str, raw: &RawRobot) -> Option<Robot> {
        let url = match (&raw.url_env, &raw.url_file) {
            (Some(variable), None) => Some(SecretSource::Env(variable.clone())),
            (None, Some(file)) => Some(SecretSource::File(file.clone())),
            (both, _) => {
                self.push(
                    Diagnostic::new(
                        Code::RobotSecret,
                        format!("{path}.robot"),
                        if both.is_some() {
                            "both url_env and url_file: say one place to read the robot's address"
                        } else {
                            "no address: say where to read the robot's webhook address (it holds the robot's token)"
                        },
                    )
                    .with_help("url_env = \"SALES_ROBOT_URL\" (an environment variable of the daemon) or url_file = \"/etc/battleplan/sales-robot\"; never the address itself"),
                );
                None
            }
        };
        let secret = match (&raw.secret_env, &raw.secret_file) {
            (Some(variable), None) => Some(SecretSource::Env(variable.clone())),
            (None, Some(file)) => Some(SecretSource::File(file.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.push(Diagnostic::new(
                    Code::RobotSecret,
                    format!("{path}.robot"),
                    "both secret_env and secret_file: say one place to read the signing secret",
                ));
                return None;
            }
        };
        if secret.is_some() && raw.kind == RobotKindName::Wecom {
            self.push(Diagnostic::new(
                Code::RobotSecret,
                format!("{path}.robot"),
                "a signing secret for a WeCom robot: only DingTalk robots sign",
            ));
            return None;
        }
        if raw.per_minute == Some(0) {
            self.push(Diagnostic::new(
                Code::InvalidValue,
                format!("{path}.robot.per_minute"),
                "per_minute of zero: no reminder would ever go",
            ));
            return None;
        }
        Some(Robot {
            kind: raw.kind,
            url: url?,
            secret,
            per_minute: raw.per_minute.unwrap_or(20),
        })
    }

    pub(super) fn role_ids(&self) -> Vec<String> {
        BUILT_IN_ROLES
            .iter()
            .map(|(id, _)| id.to_string())
            .chain(self.raw.roles.iter().map(|e| e.id.clone()))
            .collect()
    }

    pub(super) fn workstreams(&mut self) -> Vec<Workstream> {
        let role_ids = self.role_ids();
        let mut workstreams = Vec::new();
        for entry in &self.raw.workstreams {
            let Some(value) = &entry.value else { continue };
            for (position, role) in value.roles.iter().enumerate() {
                if !role_ids.contains(role) {
                    let path = format!("{}.roles[{position}]", entry.path);
                    self.unknown_reference(
                        &path,
                        "role",
                        role,
                        role_ids.iter().map(String::as_str),
                    );
                }
            }
            workstreams.push(Workstream {
                id: entry.id.clone(),
                name: value.name.clone(),
                description: value.description.clone(),
                roles: value.roles.clone(),
            });
        }
        workstreams
    }

    pub(super) fn tasks(
        &mut self,
        phases: &[Phase],
        stages: &[Stage],
        roles: &[Role],
        workstreams: &[Workstream],
    ) -> Vec<Task> {
        let raw = self.raw;
        let role_ids = self.role_ids();
        let workstream_ids: Vec<&str> = raw.workstreams.iter().map(|e| e.id.as_str()).collect();
        let stage_ids: Vec<&str> = raw.stages.iter().map(|e| e.id.as_str()).collect();
        let mut tasks = Vec::new();
        let mut used_workstreams = BTreeSet::new();
        let mut used_roles: BTreeMap<&str, &str> = BTreeMap::new();
        for entry in &raw.tasks {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            used_workstreams.insert(value.workstream.as_str());
            used_roles.entry(value.role.as_str()).or_insert(path);
            let mut ok = true;
            ok &= self.known(
                &format!("{path}.workstream"),
                "workstream",
                &value.workstream,
                &workstream_ids,
            );
            if !role_ids.contains(&value.role) {
                ok = false;
                self.unknown_reference(
                    &format!("{path}.role"),
                    "role",
                    &value.role,
                    role_ids.iter().map(String::as_str),
                );
            } else if let Some(workstream) = workstreams.iter().find(|w| w.id == value.workstream) {
                if !workstream.roles.is_empty() && !workstream.roles.contains(&value.role) {
                    self.push(Diagnostic::new(
                        Code::RoleOutsideWorkstream,
                        format!("{path}.role"),
                        format!(
                            "the {} workstream lists roles {} but this task is for `{}`",
                            workstream.id,
                            workstream.roles.join(", "),
                            value.role
                        ),
                    ));
                }
            }
            let phase_kind = PhaseKind::from_key(&value.phase);
            if phase_kind.is_none() {
                ok = false;
                let keys = PhaseKind::ALL.map(PhaseKind::key);
                self.unknown_reference(&format!("{path}.phase"), "phase", &value.phase, keys);
            }
            if let Some(stage) = &value.stage {
                ok &= self.burst_stage(path, stage, phase_kind, &stage_ids, |_| {
                    format!("not {}", value.phase)
                });
            }
            let mut seen_leads = HashSet::new();
            for (position, lead) in value.remind.iter().enumerate() {
                if lead.seconds() == 0 {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::InvalidReminder,
                            format!("{path}.remind[{position}]"),
                            "a reminder lead time of zero; the reminder at the due instant is always sent",
                        )
                        .with_help("remove it, or give a lead time such as \"2h\""),
                    );
                } else if !seen_leads.insert(*lead) {
                    self.push(Diagnostic::new(
                        Code::DuplicateReminder,
                        format!("{path}.remind[{position}]"),
                        format!("the reminder {lead} before is listed twice"),
                    ));
                }
            }
            if value
                .escalate_after
                .is_some_and(|delay| delay.seconds() == 0)
            {
                ok = false;
                self.push(Diagnostic::new(
                    Code::InvalidReminder,
                    format!("{path}.escalate_after"),
                    "an escalation delay of zero would escalate every task the moment it is due",
                ));
            }
            let Some(phase_kind) = phase_kind else {
                continue;
            };
            self.missing_optional_phase(phase_kind, &format!("{path}.phase"));
            let scope_window = match &value.stage {
                Some(stage) => stages.iter().find(|s| &s.id == stage).map(|s| s.window),
                None => phases
                    .iter()
                    .find(|p| p.kind == phase_kind)
                    .map(|p| p.window),
            };
            let schedule = self.schedule(path, value, scope_window, &phase_kind);
            if let (true, Some(schedule)) = (ok, schedule) {
                tasks.push(Task {
                    id: entry.id.clone(),
                    title: value.title.clone(),
                    description: value.description.clone(),
                    workstream: value.workstream.clone(),
                    role: value.role.clone(),
                    phase: phase_kind,
                    stage: value.stage.clone(),
                    schedule,
                    remind: value.remind.clone(),
                    escalate_after: value.escalate_after,
                });
            }
        }
        // A task that did not parse may be the one a workstream or role is waiting for: warn
        // about idle workstreams and roles only when every task was read.
        if raw.tasks.iter().any(|entry| entry.value.is_none()) {
            return tasks;
        }
        for entry in &raw.workstreams {
            if entry.value.is_some() && !used_workstreams.contains(entry.id.as_str()) {
                self.push_at_key(Diagnostic::new(
                    Code::WorkstreamWithoutTasks,
                    entry.path.clone(),
                    format!("workstream `{}` has no tasks", entry.id),
                ));
            }
        }
        if self.has_errors_under(&["roles"]) {
            return tasks;
        }
        for (role_id, first_task) in used_roles {
            if let Some(role) = roles.iter().find(|r| r.id == role_id) {
                if role.members.is_empty() {
                    let declared = raw.roles.iter().find(|e| e.id == role_id);
                    let path = declared
                        .map(|e| e.path.clone())
                        .unwrap_or_else(|| format!("{first_task}.role"));
                    self.push(
                        Diagnostic::new(
                            Code::RoleWithoutMembers,
                            path,
                            format!("role `{role_id}` has tasks but no members: its reminders reach no one"),
                        )
                        .with_help(format!("add [roles.{role_id}] with members = [\"...\"]")),
                    );
                }
            }
        }
        tasks
    }

    pub(super) fn schedule(
        &mut self,
        path: &str,
        task: &RawTask,
        scope: Option<Window>,
        phase: &PhaseKind,
    ) -> Option<TaskSchedule> {
        let conflict = |message: String| Diagnostic::new(Code::ConflictingSchedule, path, message);
        match (&task.due, task.repeat) {
            (Some(_), Some(_)) => {
                self.push(
                    conflict(
                        "a task has either `due` (once) or `repeat` (recurring), not both".into(),
                    )
                    .with_span(self.spans.key(&format!("{path}.repeat"))),
                );
                return None;
            }
            (None, None) => {
                self.push_at_key(
                    conflict("the task has neither `due` nor `repeat`: when is it due?".into())
                        .with_help("add `due = \"prep.end - 1d\"` or a date, or `repeat = \"daily\"` with `at = \"10:00\"`"),
                );
                return None;
            }
            _ => {}
        }
        let zone = self.time_zone?;
        if let Some(due) = &task.due {
            for key in ["at", "from", "until"] {
                let present = match key {
                    "at" => task.at.is_some(),
                    "from" => task.from.is_some(),
                    _ => task.until.is_some(),
                };
                if present {
                    self.push(
                        conflict(format!(
                            "`{key}` is for recurring tasks; this one has a single `due`"
                        ))
                        .with_span(self.spans.key(&format!("{path}.{key}"))),
                    );
                }
            }
            if !task.on.is_empty() {
                self.push(
                    conflict("`on` is for weekly tasks; this one has a single `due`".into())
                        .with_span(self.spans.key(&format!("{path}.on"))),
                );
            }
            let due_path = format!("{path}.due");
            let due = self.resolve(due, DateMeaning::EndOfDay, &due_path)?;
            let scope = scope?;
            if !task.outside_phase && (due < scope.start || due > scope.end) {
                let what = match &task.stage {
                    Some(stage) => format!("stage `{stage}`"),
                    None => format!("the {} phase", phase.label()),
                };
                self.push(
                    Diagnostic::new(
                        Code::DueOutsidePhase,
                        due_path,
                        format!(
                            "due {} but {what} runs {} to {}",
                            format_instant(zone, due),
                            format_instant(zone, scope.start),
                            format_instant(zone, scope.end)
                        ),
                    )
                    .with_help("move the due instant, or set `outside_phase = true` if the task belongs to this phase but is due outside it"),
                );
                return None;
            }
            return Some(TaskSchedule::Once { due });
        }
        let repeat = task.repeat?;
        let recurrence = match repeat {
            Repeat::Daily => {
                if !task.on.is_empty() {
                    self.push(
                        conflict("`on` chooses weekdays for `repeat = \"weekly\"`; a daily task runs every day".into())
                            .with_span(self.spans.key(&format!("{path}.on"))),
                    );
                    return None;
                }
                Recurrence::Daily
            }
            Repeat::Weekly => {
                if task.on.is_empty() {
                    self.push(
                        conflict("a weekly task needs `on`, the weekdays it is due".into())
                            .with_span(self.spans.key(&format!("{path}.repeat")))
                            .with_help("for example on = [\"mon\"]"),
                    );
                    return None;
                }
                let mut days = Vec::new();
                for day in &task.on {
                    if !days.contains(&day.0) {
                        days.push(day.0);
                    }
                }
                Recurrence::Weekly(days)
            }
        };
        let scope = scope?;
        let from = match &task.from {
            Some(spec) => self.resolve(spec, DateMeaning::StartOfDay, &format!("{path}.from"))?,
            None => scope.start,
        };
        let until = match &task.until {
            Some(spec) => self.resolve(spec, DateMeaning::EndOfDay, &format!("{path}.until"))?,
            None => scope.end,
        };
        if until <= from {
            self.push(Diagnostic::new(
                Code::EmptyWindow,
                format!("{path}.until"),
                format!(
                    "the repeats end at {} but start at {}",
                    format_instant(zone, until),
                    format_instant(zone, from)
                ),
            ));
            return None;
        }
        if !task.outside_phase && (from < scope.start || until > scope.end) {
            self.push(
                Diagnostic::new(
                    Code::DueOutsidePhase,
                    format!(
                        "{path}.{}",
                        if from < scope.start { "from" } else { "until" }
                    ),
                    format!(
                        "the repeats run {} to {}, outside {} ({} to {})",
                        format_instant(zone, from),
                        format_instant(zone, until),
                        match &task.stage {
                            Some(stage) => format!("stage `{stage}`"),
                            None => format!("the {} phase", phase.label()),
                        },
                        format_instant(zone, scope.start),
                        format_instant(zone, scope.end)
                    ),
                )
                .with_help(
                    "keep `from` and `until` inside the phase, or set `outside_phase = true`",
                ),
            );
            return None;
        }
        let at = task.at.unwrap_or(crate::plan::values::TimeOfDay(
            chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
        ));
        // A time of day the zone skips (clocks going forward) has no occurrence that day, and
        // one that happens twice (clocks going back) has the earlier of the two, as for a
        // boundary written at such a time (BP0210); say each once, with the first such day.
        let weekdays = match &recurrence {
            Recurrence::Daily => Vec::new(),
            Recurrence::Weekly(days) => days.clone(),
        };
        let key = (at.0, from, until, weekdays);
        let (skipped, twice) = match self.skipped_days.get(&key) {
            Some(found) => *found,
            None => {
                let first_day = from.with_timezone(&zone).date_naive();
                let last_day = until.with_timezone(&zone).date_naive();
                let mut found = (None, None);
                for day in first_day
                    .iter_days()
                    .take_while(|day| *day <= last_day)
                    .filter(|day| key.3.is_empty() || key.3.contains(&day.weekday()))
                {
                    match zone.from_local_datetime(&day.and_time(at.0)) {
                        chrono::LocalResult::None if found.0.is_none() => found.0 = Some(day),
                        chrono::LocalResult::Ambiguous(..) if found.1.is_none() => {
                            found.1 = Some(day);
                        }
                        _ => {}
                    }
                    if found.0.is_some() && found.1.is_some() {
                        break;
                    }
                }
                self.skipped_days.insert(key, found);
                found
            }
        };
        if let Some(day) = skipped {
            self.push(
                Diagnostic::new(
                    Code::RecurringTimeSkipped,
                    format!("{path}.at"),
                    format!(
                        "{day} {at} does not exist in {zone} (clocks go forward): that day's occurrence is at the first instant after the skipped hour"
                    ),
                )
                .with_help("choose a time outside the skipped hour if the exact time matters"),
            );
        }
        if let Some(day) = twice {
            let local = day.and_time(at.0);
            if let chrono::LocalResult::Ambiguous(earliest, latest) =
                zone.from_local_datetime(&local)
            {
                self.push(
                    Diagnostic::new(
                        Code::AmbiguousLocalTime,
                        format!("{path}.at"),
                        format!(
                            "{} happens twice in {zone} (clocks go back); that day's occurrence is at the earlier, {}",
                            local.format("%Y-%m-%d %H:%M"),
                            earliest.format("%H:%M %:z")
                        ),
                    )
                    .with_help(format!(
                        "choose a time outside the repeated hour if it matters which; the later {} is {}",
                        local.format("%H:%M"),
                        latest.format("%H:%M %:z")
                    )),
                );
            }
        }
        Some(TaskSchedule::Recurring {
            recurrence,
            at,
            from,
            until,
        })
    }

    pub(super) fn targets(&mut self) -> Vec<StageTarget> {
        let raw = self.raw;
        let stage_ids: Vec<&str> = raw.stages.iter().map(|e| e.id.as_str()).collect();
        let metric_keys = Metric::ALL.map(Metric::key);
        let mut targets = Vec::new();
        for entry in &raw.targets {
            if !stage_ids.contains(&entry.id.as_str()) {
                self.push_at_key(
                    Diagnostic::new(
                        Code::UnknownReference,
                        entry.path.clone(),
                        format!("there is no stage `{}` to set targets for", entry.id),
                    )
                    .with_help(
                        match suggest(&entry.id, stage_ids.iter().copied()) {
                            Some(candidate) => format!("did you mean `{candidate}`?"),
                            None => format!("stages: {}", stage_ids.join(", ")),
                        },
                    ),
                );
                continue;
            }
            let Some(values) = &entry.value else { continue };
            for (metric_key, value) in values {
                let path = format!("{}.{metric_key}", entry.path);
                let Some(metric) = Metric::from_key(metric_key) else {
                    let mut diagnostic = Diagnostic::new(
                        Code::TargetUnknownMetric,
                        path,
                        format!("battleplan does not measure `{metric_key}`"),
                    );
                    diagnostic = match suggest(metric_key, metric_keys) {
                        Some(candidate) => {
                            diagnostic.with_help(format!("did you mean `{candidate}`?"))
                        }
                        None => {
                            diagnostic.with_help(format!("metrics: {}", metric_keys.join(", ")))
                        }
                    };
                    self.push_at_key(diagnostic);
                    continue;
                };
                if let Some(value) = self.target_value(&path, metric_key, metric.kind(), &value.0) {
                    targets.push(StageTarget {
                        stage: entry.id.clone(),
                        metric,
                        value,
                    });
                }
            }
        }
        targets
    }

    /// Reads a target as its metric measures: money, a whole count, or a rate.
    fn target_value(
        &mut self,
        path: &str,
        metric: &str,
        kind: MetricKind,
        text: &str,
    ) -> Option<TargetValue> {
        let not_positive = |this: &mut Self| {
            this.push(Diagnostic::new(
                Code::TargetNotPositive,
                path,
                format!("the {metric} target must be a number above zero"),
            ));
        };
        match kind {
            MetricKind::Money => match Money::parse_text(text) {
                Ok(money) if money.minor() > 0 => Some(TargetValue::Money(money)),
                Ok(_) => {
                    not_positive(self);
                    None
                }
                Err(message) => {
                    self.push(Diagnostic::new(Code::InvalidValue, path, message));
                    None
                }
            },
            MetricKind::Count => match text.parse::<u64>() {
                Ok(count) if count > 0 => Some(TargetValue::Count(count)),
                Ok(_) => {
                    not_positive(self);
                    None
                }
                Err(_) if text.parse::<f64>().is_ok_and(|n| n > 0.0) => {
                    self.push(Diagnostic::new(
                        Code::TargetNotWhole,
                        path,
                        format!("`{metric}` is a count; {text} is not a whole number"),
                    ));
                    None
                }
                Err(_) => {
                    not_positive(self);
                    None
                }
            },
            MetricKind::Rate => {
                let rate = match text.strip_suffix('%') {
                    Some(percent) => percent.trim().parse::<f64>().ok().map(|p| p / 100.0),
                    None => text.parse::<f64>().ok(),
                };
                match rate {
                    Some(rate) if rate > 0.0 && rate <= 1.0 => Some(TargetValue::Rate(rate)),
                    _ => {
                        self.push(
                            Diagnostic::new(
                                Code::TargetRate,
                                path,
                                format!("`{metric}` is a rate; `{text}` is not between 0 and 100%"),
                            )
                            .with_help("write it as a percentage, \"3.5%\", or a fraction, 0.035"),
                        );
                        None
                    }
                }
            }
        }
    }
}
