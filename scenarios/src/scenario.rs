//! The scenario file: a plan, its customers, and a script of outside inputs at instants, with
//! the instants at which to capture what the team would read. The format is documented in
//! docs/scenarios.md; this module reads and checks it (nothing runs here: the runner is
//! `battleplan_orchestrator::hosts::scenario`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A scenario file is refused beyond this size (a script is text, not data).
pub const MAX_SCENARIO_BYTES: usize = 1 << 20;

/// A scenario as its file says it, checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, used in the report and the output directory.
    pub name: String,
    /// What the scenario demonstrates, in words (printed at the top of its timeline).
    pub demonstrates: String,
    /// Seeds the ids of every event and the generated customers: the same seed, the same log.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub plan: PlanSource,
    #[serde(default)]
    pub customers: Option<Customers>,
    #[serde(default)]
    pub outcomes: Option<Outcomes>,
    pub run: RunWindow,
    /// The outside inputs and captures, in any order (run in order of instant, then as written).
    #[serde(default, rename = "at")]
    pub script: Vec<Input>,
}

fn default_seed() -> u64 {
    2026
}

/// The plan: the example `battleplan init` writes, or a file, with textual edits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSource {
    /// `"example"` for the September festival as `battleplan init` writes it, or a path
    /// relative to the scenario file.
    pub file: String,
    /// Edits applied to the plan's text, in order; each `from` must occur exactly once.
    #[serde(default)]
    pub edits: Vec<Edit>,
    /// When the plan is applied (the campaign is created then).
    #[serde(deserialize_with = "instant::required")]
    pub apply_at: DateTime<Utc>,
    #[serde(default = "default_actor")]
    pub actor: String,
}

fn default_actor() -> String {
    "li.na".to_string()
}

/// One textual edit of a plan: `from` (which must occur exactly once) becomes `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub from: String,
    pub to: String,
}

/// The customer file: generated (`battleplan_scenarios::customers`) or read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customers {
    /// Generate this many customers with the scenario's seed.
    #[serde(default)]
    pub generate: Option<u64>,
    /// Or import this file (relative to the scenario file).
    #[serde(default)]
    pub file: Option<String>,
    /// When the file is imported (and, generated, the instant their activity leads up to).
    #[serde(deserialize_with = "instant::required")]
    pub import_at: DateTime<Utc>,
    #[serde(default = "default_actor")]
    pub actor: String,
}

/// An outcomes file imported before the run: generated for the generated customers, or read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    #[serde(default)]
    pub generate: bool,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(deserialize_with = "instant::required")]
    pub import_at: DateTime<Utc>,
    #[serde(default = "default_actor")]
    pub actor: String,
}

/// When the daemon starts and when the scenario ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunWindow {
    #[serde(deserialize_with = "instant::required")]
    pub from: DateTime<Utc>,
    #[serde(deserialize_with = "instant::required")]
    pub until: DateTime<Utc>,
}

/// One entry of the script: an instant and exactly one thing that happens then.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(deserialize_with = "instant::required")]
    pub instant: DateTime<Utc>,
    /// Customers answer: replies, orders, opens, unsubscribes, bounces.
    #[serde(default)]
    pub outcomes: Option<OutcomeInput>,
    /// A person acts on the campaign.
    #[serde(default)]
    pub pause: Option<Act>,
    #[serde(default)]
    pub resume: Option<Act>,
    #[serde(default)]
    pub advance: Option<Act>,
    #[serde(default)]
    pub cancel: Option<Act>,
    /// A new version of the plan: the current plan with these edits.
    #[serde(default)]
    pub revise: Option<Revise>,
    /// A task occurrence marked done.
    #[serde(default)]
    pub task_done: Option<TaskDone>,
    /// A channel paused by the bounce guard, resumed.
    #[serde(default)]
    pub channel_resume: Option<ChannelResume>,
    /// The daemon is down from `instant` until this instant (then restarts and catches up).
    #[serde(default, deserialize_with = "instant::optional")]
    pub down_until: Option<DateTime<Utc>>,
    /// What to capture at this instant: `status`, `tasks`, `funnel`, `outbox`,
    /// `explain:<customer>`.
    #[serde(default)]
    pub capture: Option<Vec<String>>,
}

/// A person's command on the campaign.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Act {
    pub actor: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revise {
    pub edits: Vec<Edit>,
    pub actor: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDone {
    pub id: String,
    pub actor: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelResume {
    pub channel: String,
    pub actor: String,
    pub reason: String,
}

/// Customers answering. Who: the listed `customers`, or a `share` (0 to 1) of the customers a
/// reach-out has sent to by then, each drawn from a hash of the entry's place in the script and
/// the customer (reproducible; two entries draw independently).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInput {
    /// `delivered`, `opened`, `replied`, `ordered`, `unsubscribed` or `bounced`.
    pub kind: String,
    /// The reach-out the answer is to (its messages).
    pub reach_out: String,
    #[serde(default)]
    pub customers: Vec<String>,
    #[serde(default)]
    pub share: Option<f64>,
    /// An order's amount (`ordered` only), e.g. "880.00".
    #[serde(default)]
    pub amount: Option<String>,
}

/// Instants as a scenario writes them: an RFC 3339 string with its offset, or the same as a
/// bare TOML datetime; a datetime without an offset is refused (whose clock would it be?).
mod instant {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer};

    fn read(value: toml::Value) -> Result<DateTime<Utc>, String> {
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Datetime(datetime) => datetime.to_string(),
            other => {
                return Err(format!(
                    "expected an instant with its offset, e.g. \"2026-08-19T00:00:00+08:00\", found a value of type {}",
                    other.type_str()
                ))
            }
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|instant| instant.with_timezone(&Utc))
            .map_err(|error| {
                format!(
                    "`{text}` is not an instant with its offset, e.g. \"2026-08-19T00:00:00+08:00\" ({error})"
                )
            })
    }

    pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        read(toml::Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }

    pub fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        required(deserializer).map(Some)
    }
}

/// The outcome kinds a script may record (the importer's words).
pub const OUTCOME_KINDS: [&str; 6] = [
    "delivered",
    "opened",
    "replied",
    "ordered",
    "unsubscribed",
    "bounced",
];

/// The captures a script may ask for (besides `explain:<customer>`).
pub const CAPTURES: [&str; 4] = ["status", "tasks", "funnel", "outbox"];

/// What one entry does, once checked.
#[derive(Debug, Clone)]
pub enum Action {
    Outcomes(OutcomeInput),
    Pause(Act),
    Resume(Act),
    Advance(Act),
    Cancel(Act),
    Revise(Revise),
    TaskDone(TaskDone),
    ChannelResume(ChannelResume),
    Down { until: DateTime<Utc> },
    Capture(Vec<String>),
}

impl Action {
    /// The script's word for it.
    pub fn word(&self) -> &'static str {
        match self {
            Action::Outcomes(_) => "outcomes",
            Action::Pause(_) => "pause",
            Action::Resume(_) => "resume",
            Action::Advance(_) => "advance",
            Action::Cancel(_) => "cancel",
            Action::Revise(_) => "revise",
            Action::TaskDone(_) => "task_done",
            Action::ChannelResume(_) => "channel_resume",
            Action::Down { .. } => "down_until",
            Action::Capture(_) => "capture",
        }
    }
}

/// A checked entry of the script.
#[derive(Debug, Clone)]
pub struct Step {
    pub instant: DateTime<Utc>,
    pub action: Action,
    /// Its place in the file (`at[3]`), for messages.
    pub index: usize,
}

/// A scenario file read and checked: the scenario, its steps in order, and where it lives.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    pub steps: Vec<Step>,
    /// The scenario file's directory: relative paths start here.
    pub dir: PathBuf,
    pub path: PathBuf,
}

impl Loaded {
    /// A path the scenario names, relative to its file.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// Reads and checks a scenario file. Every problem is a message that names the file and where
/// in it (`FILE:LINE:COLUMN` for the TOML, `FILE: at[N]` for the script).
pub fn load(path: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|error| format!("{shown}: cannot read: {error}"))?;
    if bytes.len() > MAX_SCENARIO_BYTES {
        return Err(format!(
            "{shown}: larger than a scenario may be ({MAX_SCENARIO_BYTES} bytes at most)"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|error| {
        format!(
            "{shown}: not UTF-8 text (byte {})",
            error.utf8_error().valid_up_to()
        )
    })?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    load_text(&text, path, &dir)
}

/// A scenario from its text; `path` names it in messages and `dir` is where its relative paths
/// start.
pub fn load_text(text: &str, path: &Path, dir: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let scenario = parse(text).map_err(|message| format!("{shown}:{message}"))?;
    let steps = check(&scenario).map_err(|message| format!("{shown}: {message}"))?;
    Ok(Loaded {
        scenario,
        steps,
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
    })
}

/// The scenarios shipped in `scenarios/`, by file name: what `battleplan demo` runs, and what
/// the snapshot tests run.
pub const SHIPPED: [(&str, &str); 8] = [
    (
        "september-festival.toml",
        include_str!("../september-festival.toml"),
    ),
    (
        "downtime-across-burst.toml",
        include_str!("../downtime-across-burst.toml"),
    ),
    (
        "quota-overflow.toml",
        include_str!("../quota-overflow.toml"),
    ),
    (
        "pause-during-burst.toml",
        include_str!("../pause-during-burst.toml"),
    ),
    (
        "revision-mid-flight.toml",
        include_str!("../revision-mid-flight.toml"),
    ),
    (
        "daylight-saving.toml",
        include_str!("../daylight-saving.toml"),
    ),
    ("bounce-storm.toml", include_str!("../bounce-storm.toml")),
    (
        "unsubscribes-in-follow-ups.toml",
        include_str!("../unsubscribes-in-follow-ups.toml"),
    ),
];

/// The shipped scenario `battleplan demo` runs.
pub const DEMO: &str = "september-festival.toml";

/// The TOML read into a scenario; a problem as `LINE:COLUMN: message`.
pub fn parse(text: &str) -> Result<Scenario, String> {
    toml::from_str::<Scenario>(text).map_err(|error| {
        let place = error
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("{line}:{column}")
            })
            .unwrap_or_else(|| "1:1".to_string());
        format!("{place}: {}", error.message())
    })
}

/// The scenario's rules beyond its shape; returns the steps in the order they run.
pub fn check(scenario: &Scenario) -> Result<Vec<Step>, String> {
    if scenario.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    if scenario.run.until <= scenario.run.from {
        return Err(format!(
            "run: `until` ({}) must be after `from` ({})",
            scenario.run.until.to_rfc3339(),
            scenario.run.from.to_rfc3339()
        ));
    }
    if scenario.plan.apply_at > scenario.run.from {
        return Err("plan: `apply_at` must not be after `run.from`".into());
    }
    if let Some(customers) = &scenario.customers {
        match (customers.generate, &customers.file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("customers: give exactly one of `generate` and `file`".into())
            }
            (Some(0), None) => return Err("customers: `generate` must be at least 1".into()),
            _ => {}
        }
        if customers.import_at > scenario.run.from {
            return Err("customers: `import_at` must not be after `run.from`".into());
        }
    }
    if let Some(outcomes) = &scenario.outcomes {
        if outcomes.generate == outcomes.file.is_some() {
            return Err("outcomes: give exactly one of `generate = true` and `file`".into());
        }
        if outcomes.generate
            && scenario
                .customers
                .as_ref()
                .and_then(|c| c.generate)
                .is_none()
        {
            return Err("outcomes: `generate` needs generated customers".into());
        }
        if outcomes.import_at > scenario.run.from {
            return Err("outcomes: `import_at` must not be after `run.from`".into());
        }
    }
    let mut steps = Vec::with_capacity(scenario.script.len());
    let mut downtimes: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (index, input) in scenario.script.iter().enumerate() {
        let place = format!("at[{index}] ({})", input.instant.to_rfc3339());
        let mut actions = Vec::new();
        if let Some(outcomes) = &input.outcomes {
            if !OUTCOME_KINDS.contains(&outcomes.kind.as_str()) {
                return Err(format!(
                    "{place}: outcome kind `{}` is not one of {}",
                    outcomes.kind,
                    OUTCOME_KINDS.join(", ")
                ));
            }
            match (outcomes.customers.is_empty(), outcomes.share) {
                (true, None) | (false, Some(_)) => {
                    return Err(format!(
                        "{place}: outcomes: give exactly one of `customers` and `share`"
                    ))
                }
                (_, Some(share)) if !(share > 0.0 && share <= 1.0) => {
                    return Err(format!(
                        "{place}: outcomes: `share` must be above 0 and at most 1, not {share}"
                    ))
                }
                _ => {}
            }
            if outcomes.amount.is_some() != (outcomes.kind == "ordered") {
                return Err(format!(
                    "{place}: outcomes: an `amount` goes with `ordered` and only with it"
                ));
            }
            actions.push(Action::Outcomes(outcomes.clone()));
        }
        if let Some(act) = &input.pause {
            actions.push(Action::Pause(act.clone()));
        }
        if let Some(act) = &input.resume {
            actions.push(Action::Resume(act.clone()));
        }
        if let Some(act) = &input.advance {
            actions.push(Action::Advance(act.clone()));
        }
        if let Some(act) = &input.cancel {
            actions.push(Action::Cancel(act.clone()));
        }
        if let Some(revise) = &input.revise {
            if revise.edits.is_empty() {
                return Err(format!("{place}: revise: no edits"));
            }
            actions.push(Action::Revise(revise.clone()));
        }
        if let Some(done) = &input.task_done {
            actions.push(Action::TaskDone(done.clone()));
        }
        if let Some(resume) = &input.channel_resume {
            actions.push(Action::ChannelResume(resume.clone()));
        }
        if let Some(until) = input.down_until {
            if until <= input.instant {
                return Err(format!(
                    "{place}: `down_until` ({}) must be after the instant",
                    until.to_rfc3339()
                ));
            }
            if downtimes
                .iter()
                .any(|(from, to)| input.instant < *to && *from < until)
            {
                return Err(format!("{place}: downtimes overlap"));
            }
            downtimes.push((input.instant, until));
            actions.push(Action::Down { until });
        }
        if let Some(captures) = &input.capture {
            let mut seen = BTreeSet::new();
            for capture in captures {
                let known = CAPTURES.contains(&capture.as_str())
                    || capture
                        .strip_prefix("explain:")
                        .is_some_and(|customer| !customer.is_empty());
                if !known {
                    return Err(format!(
                        "{place}: capture `{capture}` is not one of {} or explain:<customer>",
                        CAPTURES.join(", ")
                    ));
                }
                if !seen.insert(capture) {
                    return Err(format!("{place}: capture `{capture}` twice"));
                }
            }
            actions.push(Action::Capture(captures.clone()));
        }
        let action = match actions.len() {
            1 => actions.remove(0),
            0 => {
                return Err(format!(
                    "{place}: nothing happens; give one input or capture"
                ))
            }
            _ => {
                let words: Vec<&str> = actions.iter().map(Action::word).collect();
                return Err(format!(
                    "{place}: one input per entry, found {}",
                    words.join(" and ")
                ));
            }
        };
        if input.instant < scenario.run.from || input.instant > scenario.run.until {
            return Err(format!(
                "{place}: outside the run ({} to {})",
                scenario.run.from.to_rfc3339(),
                scenario.run.until.to_rfc3339()
            ));
        }
        steps.push(Step {
            instant: input.instant,
            action,
            index,
        });
    }
    // In order of instant; entries at one instant as written.
    steps.sort_by_key(|step| (step.instant, step.index));
    Ok(steps)
}

/// Applies textual edits to a plan; each `from` must occur exactly once.
pub fn edit(text: &str, edits: &[Edit]) -> Result<String, String> {
    let mut text = text.to_string();
    for (n, edit) in edits.iter().enumerate() {
        let count = text.matches(edit.from.as_str()).count();
        if count != 1 {
            return Err(format!(
                "edit {n}: `{}` occurs {count} times in the plan, it must occur exactly once",
                edit.from.trim_end()
            ));
        }
        text = text.replacen(edit.from.as_str(), &edit.to, 1);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "minimal"
demonstrates = "a plan applied and run"
[plan]
file = "example"
apply_at = "2026-08-01T00:00:00+08:00"
[run]
from = "2026-08-19T00:00:00+08:00"
until = "2026-08-20T00:00:00+08:00"
"#;

    fn with(extra: &str) -> Result<Vec<Step>, String> {
        let scenario = parse(&format!("{MINIMAL}{extra}"))?;
        check(&scenario)
    }

    #[test]
    fn a_minimal_scenario_reads_and_steps_run_in_order_of_instant() {
        let steps = with(
            r#"
[[at]]
instant = "2026-08-19T12:00:00+08:00"
capture = ["status"]
[[at]]
instant = "2026-08-19T09:00:00+08:00"
pause = { actor = "alice", reason = "stock" }
[[at]]
instant = "2026-08-19T12:00:00+08:00"
resume = { actor = "alice", reason = "restocked" }
"#,
        )
        .unwrap();
        let words: Vec<&str> = steps.iter().map(|s| s.action.word()).collect();
        assert_eq!(words, ["pause", "capture", "resume"]);
    }

    #[test]
    fn problems_name_their_place() {
        let unknown = parse(&format!("colour = 1{MINIMAL}")).unwrap_err();
        assert!(unknown.starts_with("1:1:"), "{unknown}");
        assert!(unknown.contains("colour"), "{unknown}");
        let two = with(
            "[[at]]\ninstant = \"2026-08-19T09:00:00+08:00\"\npause = { actor = \"a\", reason = \"r\" }\ncapture = [\"status\"]\n",
        )
        .unwrap_err();
        assert!(
            two.contains("at[0]") && two.contains("pause and capture"),
            "{two}"
        );
        let none = with("[[at]]\ninstant = \"2026-08-19T09:00:00+08:00\"\n").unwrap_err();
        assert!(none.contains("nothing happens"), "{none}");
        let outside =
            with("[[at]]\ninstant = \"2026-09-19T09:00:00+08:00\"\ncapture = [\"funnel\"]\n")
                .unwrap_err();
        assert!(outside.contains("outside the run"), "{outside}");
        let capture =
            with("[[at]]\ninstant = \"2026-08-19T09:00:00+08:00\"\ncapture = [\"funnels\"]\n")
                .unwrap_err();
        assert!(capture.contains("`funnels`"), "{capture}");
        let share = with("[[at]]\ninstant = \"2026-08-19T09:00:00+08:00\"\noutcomes = { kind = \"bounced\", reach_out = \"r\", share = 1.5 }\n")
            .unwrap_err();
        assert!(share.contains("share"), "{share}");
        let down = with("[[at]]\ninstant = \"2026-08-19T09:00:00+08:00\"\ndown_until = \"2026-08-19T08:00:00+08:00\"\n")
            .unwrap_err();
        assert!(down.contains("must be after"), "{down}");
    }

    #[test]
    fn instants_are_quoted_or_bare_but_always_with_their_offset() {
        let quoted = parse(MINIMAL).unwrap();
        let bare = parse(&MINIMAL.replace(
            "apply_at = \"2026-08-01T00:00:00+08:00\"",
            "apply_at = 2026-08-01T00:00:00+08:00",
        ))
        .unwrap();
        assert_eq!(quoted.plan.apply_at, bare.plan.apply_at);
        let local = parse(&MINIMAL.replace(
            "apply_at = \"2026-08-01T00:00:00+08:00\"",
            "apply_at = 2026-08-01T00:00:00",
        ))
        .unwrap_err();
        assert!(
            local.starts_with("6:12:") && local.contains("with its offset"),
            "{local}"
        );
        let out_of_range = parse(&MINIMAL.replace(
            "until = \"2026-08-20T00:00:00+08:00\"",
            "until = \"2026-08-20 25:00\"",
        ))
        .unwrap_err();
        assert!(
            out_of_range.contains("`2026-08-20 25:00` is not an instant"),
            "{out_of_range}"
        );
        let number =
            parse(&MINIMAL.replace("until = \"2026-08-20T00:00:00+08:00\"", "until = 20260820"))
                .unwrap_err();
        assert!(number.contains("found a value of type integer"), "{number}");
    }

    #[test]
    fn edits_must_match_once() {
        let edits = |from: &str| {
            vec![Edit {
                from: from.into(),
                to: "x".into(),
            }]
        };
        assert_eq!(edit("a b c", &edits("b")).unwrap(), "a x c");
        assert!(edit("a b b", &edits("b")).unwrap_err().contains("2 times"));
        assert!(edit("a b c", &edits("d")).unwrap_err().contains("0 times"));
    }
}
