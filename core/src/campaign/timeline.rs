//! The campaign's timeline as the state machine sees it: the steps (prep, warm-up, each burst
//! stage, review) with their windows in UTC, the zone they were written in, and what resuming
//! after a pause does. It is stored in every plan event, so the state machine never has to read
//! the plan file again.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::plan::model::{PhaseKind, Plan, ResumePolicy};

/// Where a running campaign is: a phase, and in the burst phase a stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    pub phase: PhaseKind,
    /// The burst stage; `None` outside the burst, and in a burst before its first stage starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

impl Step {
    pub fn phase(phase: PhaseKind) -> Step {
        Step { phase, stage: None }
    }

    pub fn stage(stage: &str) -> Step {
        Step {
            phase: PhaseKind::Burst,
            stage: Some(stage.to_string()),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.stage {
            Some(stage) => write!(formatter, "{} ({stage} stage)", self.phase.label()),
            None => formatter.write_str(self.phase.label()),
        }
    }
}

/// A step and its half-open window `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepWindow {
    pub step: Step,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The campaign's IANA zone, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    pub on_resume: ResumePolicy,
    /// In order; each starts no earlier than the one before ends.
    pub steps: Vec<StepWindow>,
}

/// A pause whose length was added to every boundary after it (`on_resume = "shift_windows"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    /// Boundaries strictly after this instant move.
    pub after: DateTime<Utc>,
    pub by_ms: i64,
}

impl Timeline {
    /// The steps of a validated plan: prep, warm-up, the burst stages (a burst that starts before
    /// its first stage gets a step of its own), review when the plan has one.
    pub fn of(plan: &Plan) -> Timeline {
        let mut steps = Vec::new();
        for phase in &plan.phases {
            if phase.kind != PhaseKind::Burst || plan.stages.is_empty() {
                steps.push(StepWindow {
                    step: Step::phase(phase.kind),
                    start: phase.window.start,
                    end: phase.window.end,
                });
                continue;
            }
            if let Some(first) = plan.stages.first() {
                if first.window.start > phase.window.start {
                    steps.push(StepWindow {
                        step: Step::phase(PhaseKind::Burst),
                        start: phase.window.start,
                        end: first.window.start,
                    });
                }
            }
            for stage in &plan.stages {
                steps.push(StepWindow {
                    step: Step::stage(&stage.id),
                    start: stage.window.start,
                    end: stage.window.end,
                });
            }
        }
        Timeline {
            time_zone: plan.campaign.time_zone.name().to_string(),
            on_resume: plan.campaign.on_resume,
            steps,
        }
    }

    pub fn zone(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::UTC)
    }

    /// When the last step ends: the campaign completes then.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.steps.last().map(|window| window.end)
    }

    pub fn index_of(&self, step: &Step) -> Option<usize> {
        self.steps.iter().position(|window| &window.step == step)
    }

    pub fn window(&self, step: &Step) -> Option<&StepWindow> {
        self.steps.iter().find(|window| &window.step == step)
    }

    /// The step after `step`; the first step when `step` is `None`.
    pub fn after(&self, step: Option<&Step>) -> Option<&StepWindow> {
        match step {
            None => self.steps.first(),
            Some(step) => self.steps.get(self.index_of(step)? + 1),
        }
    }

    /// The step the clock says, if any: the last one started at or before `instant` and not yet
    /// ended.
    pub fn step_at(&self, instant: DateTime<Utc>) -> Option<&StepWindow> {
        self.steps
            .iter()
            .rev()
            .find(|window| window.start <= instant && instant < window.end)
    }

    /// This timeline with every instant strictly after each shift's `after` moved by its length.
    pub fn shifted(&self, shifts: &[Shift]) -> Timeline {
        let mut timeline = self.clone();
        for window in &mut timeline.steps {
            window.start = shift_instant(window.start, shifts);
            window.end = shift_instant(window.end, shifts);
        }
        timeline
    }

    /// An instant as people in the campaign's zone read it: `2026-09-03 10:00 +08:00`.
    pub fn local(&self, instant: DateTime<Utc>) -> String {
        local(self.zone(), instant)
    }
}

/// An instant moved by the campaign's shifting pauses, in the order they happened: each moves
/// it by its length if it lies strictly after the pause began.
pub fn shift_instant(instant: DateTime<Utc>, shifts: &[Shift]) -> DateTime<Utc> {
    shifts.iter().fold(instant, |instant, shift| {
        if instant > shift.after {
            instant
                .checked_add_signed(Duration::milliseconds(shift.by_ms))
                .unwrap_or(instant)
        } else {
            instant
        }
    })
}

/// An instant as people in the campaign's zone read it: `2026-09-03 10:00 +08:00`. Every
/// sentence that names an instant (a summary, an error, a reminder, a rendered message) uses
/// this, and every JSON answer [`local_rfc3339`], so no one reads UTC for a Shanghai campaign.
pub fn local(zone: Tz, instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %:z")
        .to_string()
}

/// An instant for a script, in RFC 3339 with the campaign's offset:
/// `2026-09-03T10:00:00+08:00`. The same instant as the UTC form, written as the campaign reads
/// it.
pub fn local_rfc3339(zone: Tz, instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&zone)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// Every instant in a JSON answer written with the campaign's offset: each string that is an
/// RFC 3339 instant in UTC (`...Z` or `...+00:00`, as serde writes a `DateTime<Utc>`) becomes
/// [`local_rfc3339`]. The instants stay the same; only how they are written changes.
pub fn localize_json(value: &mut serde_json::Value, zone: Tz) {
    match value {
        serde_json::Value::String(text) => {
            let utc = text.ends_with('Z') || text.ends_with("+00:00");
            if utc && text.len() <= 40 && text.contains('T') {
                if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
                    *text = local_rfc3339(zone, instant.with_timezone(&Utc));
                }
            }
        }
        serde_json::Value::Array(list) => {
            for inner in list {
                localize_json(inner, zone);
            }
        }
        serde_json::Value::Object(map) => {
            for inner in map.values_mut() {
                localize_json(inner, zone);
            }
        }
        _ => {}
    }
}

/// A length of time as people say it: `3 d 4 h`, `12 min`, `45 s`.
pub fn human_duration(milliseconds: i64) -> String {
    let seconds = milliseconds.unsigned_abs() / 1000;
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days} d"));
    }
    if hours > 0 {
        parts.push(format!("{hours} h"));
    }
    if minutes > 0 && days == 0 {
        parts.push(format!("{minutes} min"));
    }
    if secs > 0 && days == 0 && hours == 0 {
        parts.push(format!("{secs} s"));
    }
    if parts.is_empty() {
        if milliseconds == 0 {
            return "0 s".to_string();
        }
        return format!("{} ms", milliseconds.unsigned_abs());
    }
    parts.join(" ")
}
