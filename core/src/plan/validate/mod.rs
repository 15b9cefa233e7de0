//! Meaning: resolves every instant in the campaign's zone, checks every reference, window, quota,
//! template and offer rule, and builds the [`Plan`]. It never stops at the first problem; it
//! reports each with its code and location, and yields a plan only when there is no error.
//!
//! One `Validator` walks the raw plan; its methods are grouped by concern in the submodules.

mod audience;
mod messages;
mod offers;
mod reports;
mod time;
mod timeline;
mod work;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::plan::diagnostic::{suggest, Code, Diagnostic, LineIndex};
use crate::plan::model::*;
use crate::plan::parse::{self, SpanIndex};
use crate::plan::raw::*;

use crate::plan::values::{Edge, PlanDuration};

/// Roles every plan has without declaring them.
pub const BUILT_IN_ROLES: &[(&str, &str)] =
    &[("ops", "Operations"), ("sales", "Sales"), ("boss", "Boss")];

/// The outcome of checking a plan file.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Present exactly when there is no error.
    pub plan: Option<Plan>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// Turns diagnostic spans into lines and columns.
    pub line_index: LineIndex,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
}

/// Checks a plan file's bytes: decoding, syntax, types and meaning, all problems at once.
pub fn check(bytes: &[u8]) -> Checked {
    let text = match parse::decode(bytes) {
        Ok(text) => text,
        Err(diagnostic) => {
            // For a file that is not UTF-8, the readable prefix still gives a line and column.
            let prefix = match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(error) => std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
            };
            let readable = if prefix.len() <= parse::MAX_PLAN_BYTES {
                prefix
            } else {
                ""
            };
            return Checked {
                plan: None,
                diagnostics: vec![diagnostic],
                line_index: LineIndex::new(readable),
            };
        }
    };
    let parsed = parse::parse(text);
    let mut validator = Validator {
        spans: &parsed.spans,
        diagnostics: parsed.diagnostics.clone(),
        time_zone: None,
        boundaries: HashMap::new(),
        resolving: HashSet::new(),
        raw: &parsed.raw,
        reported: HashSet::new(),
        stage_index: parsed
            .raw
            .stages
            .iter()
            .enumerate()
            .map(|(position, entry)| (entry.id.as_str(), position))
            .collect(),
        skipped_days: HashMap::new(),
        coverage: HashMap::new(),
    };
    // A file that is not TOML has no meaning to check: its syntax error is the one message.
    let syntax_error = parsed.diagnostics.iter().any(|d| d.code == Code::Syntax);
    // On a deep stack: templates are parsed by a recursive parser (see `template`).
    let plan = if syntax_error {
        None
    } else {
        match super::template::on_deep_stack(|| validator.run()) {
            Some(plan) => plan,
            None => {
                // Validation never panics by design; if it ever cannot finish, nothing is accepted.
                validator.diagnostics.push(Diagnostic::new(
                    Code::InvalidValue,
                    "",
                    "the plan could not be checked to the end; it is rejected",
                ));
                None
            }
        }
    };
    let mut diagnostics = validator.diagnostics;
    diagnostics.sort_by_key(|d| (d.span.as_ref().map(|s| s.start), d.code));
    diagnostics.dedup();
    let plan = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        plan
    };
    Checked {
        plan,
        diagnostics,
        line_index: LineIndex::new(text),
    }
}

/// A one-paragraph summary of a valid plan, as `battleplan validate` prints it after `ok`.
pub fn summary(plan: &Plan) -> String {
    let zone = plan.campaign.time_zone;
    let span = plan.span();
    let recurring = plan
        .tasks
        .iter()
        .filter(|task| matches!(task.schedule, TaskSchedule::Recurring { .. }))
        .count();
    let offers = plan.offers.coupons.len()
        + plan.offers.tiered.len()
        + plan.offers.discounts.len()
        + plan.offers.bundles.len();
    let stages: Vec<&str> = plan.stages.iter().map(|stage| stage.id.as_str()).collect();
    format!(
        "{name} ({id}), {zone}, from {start} to {end}: {phases} ({phase_list}), {stage_count} ({stages}), \
         {workstreams} with {tasks} ({recurring} recurring) for {roles}, {targets}, \
         {segments}, {channels}, {templates}, {reach_outs}, \
         {follow_ups} and {offers}.",
        name = plan.campaign.name,
        id = plan.campaign.id,
        start = format_instant(zone, span.start),
        end = format_instant(zone, span.end),
        phases = counted(plan.phases.len(), "phase"),
        phase_list = plan.phases.iter().map(|p| p.kind.label()).collect::<Vec<_>>().join(", "),
        stage_count = counted(plan.stages.len(), "burst stage"),
        stages = stages.join(", "),
        workstreams = counted(plan.workstreams.len(), "workstream"),
        tasks = counted(plan.tasks.len(), "task"),
        roles = counted(plan.roles.len(), "role"),
        targets = counted(plan.targets.len(), "stage target"),
        segments = counted(plan.segments.len(), "segment"),
        channels = counted(plan.channels.len(), "channel"),
        templates = counted(plan.templates.len(), "template"),
        reach_outs = counted(plan.reach_outs.len(), "reach-out"),
        follow_ups = counted(plan.follow_ups.len(), "follow-up rule"),
        offers = counted(offers, "offer"),
    )
}

fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `2026-09-02 00:00 +08:00`: how instants appear in messages, on the campaign's clock.
pub fn format_instant(zone: Tz, instant: DateTime<Utc>) -> String {
    crate::campaign::timeline::local(zone, instant)
}

fn is_slug(text: &str) -> bool {
    let mut characters = text.chars();
    let first_ok = characters
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && text.len() <= 64
        && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(super) fn describe_duration(duration: Duration) -> String {
    PlanDuration::from_seconds(duration.num_seconds().abs()).to_string()
}

/// A message context for template coverage: channel, purpose, phase, stage, segment.
type CoverKey = (String, TemplatePurpose, PhaseKind, Option<String>, String);
/// The tiers with no template, and the tiers with an ambiguous choice and its candidates.
type CoverOutcome = (Vec<Option<String>>, Vec<(Option<String>, Vec<String>)>);

/// A recurring time of day over a window, on given weekdays (all days when empty).
type SkipKey = (
    NaiveTime,
    DateTime<Utc>,
    DateTime<Utc>,
    Vec<chrono::Weekday>,
);

pub(super) struct Validator<'a> {
    spans: &'a SpanIndex,
    diagnostics: Vec<Diagnostic>,
    time_zone: Option<Tz>,
    /// Resolved phase and stage boundaries by (name, edge); `None` when it could not be resolved.
    boundaries: HashMap<(String, Edge), Option<DateTime<Utc>>>,
    resolving: HashSet<(String, Edge)>,
    raw: &'a RawPlan,
    /// Paths already reported by time resolution, so a bad boundary is reported once.
    reported: HashSet<String>,
    /// Where each stage is in `raw.stages`: boundaries are looked up for every anchor.
    stage_index: HashMap<&'a str, usize>,
    /// The first day a recurring time of day is skipped, and the first day it happens twice,
    /// by (time, from, until, weekdays): tasks share windows, and each scan walks every day of
    /// one.
    skipped_days: HashMap<SkipKey, (Option<NaiveDate>, Option<NaiveDate>)>,
    /// Template coverage already worked out (see `messages::cover`).
    coverage: HashMap<CoverKey, CoverOutcome>,
}

/// How a date written alone is read: the first instant of the day, or the instant after it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum DateMeaning {
    StartOfDay,
    EndOfDay,
}

impl<'a> Validator<'a> {
    pub(super) fn push(&mut self, diagnostic: Diagnostic) {
        let span = diagnostic
            .span
            .clone()
            .or_else(|| self.spans.value(&diagnostic.path));
        self.diagnostics.push(diagnostic.with_span(span));
    }

    /// Whether an error was already reported at `prefix` or below it: checks that depend on a
    /// broken section are skipped rather than repeated as consequences.
    pub(super) fn has_errors_under(&self, prefixes: &[&str]) -> bool {
        self.diagnostics.iter().any(|d| {
            d.is_error()
                && prefixes.iter().any(|prefix| {
                    d.path == *prefix
                        || d.path
                            .strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
                })
        })
    }

    pub(super) fn push_at_key(&mut self, diagnostic: Diagnostic) {
        let span = self.spans.key(&diagnostic.path);
        self.diagnostics.push(diagnostic.with_span(span));
    }

    /// Whether `name` is among `declared`; if not, reports it with a suggestion.
    pub(super) fn known(&mut self, path: &str, kind: &str, name: &str, declared: &[&str]) -> bool {
        let found = declared.contains(&name);
        if !found {
            self.unknown_reference(path, kind, name, declared.iter().copied());
        }
        found
    }

    /// Whether `stage` (at `{path}.stage`) is declared and, when a phase is given, that phase is
    /// burst; `other_phase` words the second problem.
    pub(super) fn burst_stage(
        &mut self,
        path: &str,
        stage: &str,
        phase: Option<PhaseKind>,
        stage_ids: &[&str],
        other_phase: impl Fn(PhaseKind) -> String,
    ) -> bool {
        let stage_path = format!("{path}.stage");
        if !self.known(&stage_path, "stage", stage, stage_ids) {
            return false;
        }
        match phase.filter(|kind| *kind != PhaseKind::Burst) {
            Some(kind) => {
                self.push(Diagnostic::new(
                    Code::StageOutsidePhase,
                    stage_path,
                    format!(
                        "stage `{stage}` is part of the burst phase, {}",
                        other_phase(kind)
                    ),
                ));
                false
            }
            None => true,
        }
    }

    /// Reports a reference to something undeclared, suggesting the closest declared name.
    pub(super) fn unknown_reference<'n>(
        &mut self,
        path: &str,
        kind: &str,
        name: &str,
        declared: impl IntoIterator<Item = &'n str> + Clone,
    ) {
        let mut diagnostic = Diagnostic::new(
            Code::UnknownReference,
            path,
            format!("there is no {kind} `{name}`"),
        );
        if let Some(candidate) = suggest(name, declared.clone()) {
            diagnostic = diagnostic.with_help(format!("did you mean `{candidate}`?"));
        } else {
            let mut all: Vec<&str> = Vec::new();
            for declared_name in declared {
                if !all.contains(&declared_name) {
                    all.push(declared_name);
                }
            }
            if all.is_empty() {
                diagnostic = diagnostic.with_help(format!("the plan declares no {kind}"));
            } else if all.len() <= 12 {
                diagnostic = diagnostic.with_help(format!("declared: {}", all.join(", ")));
            }
        }
        self.push(diagnostic);
    }

    pub(super) fn run(&mut self) -> Option<Plan> {
        self.check_ids();
        let campaign = self.campaign();
        let phases = self.phases();
        let stages = self.stages(&phases);
        let roles = self.roles();
        let workstreams = self.workstreams();
        let tasks = self.tasks(&phases, &stages, &roles, &workstreams);
        let targets = self.targets();
        let segments = self.segments();
        let channels = self.channels();
        let offers = self.offers(&phases, &stages);
        let templates = self.templates(&channels);
        let follow_ups = self.follow_ups(&templates);
        // Windows are compared with the campaign only when its timeline is whole; otherwise
        // the timeline's own errors say what is wrong.
        let timeline_ok = !self.has_errors_under(&["campaign", "phases", "stages"]);
        let span = match (phases.first(), phases.last(), timeline_ok) {
            (Some(first), Some(last), true) => Some(Window {
                start: first.window.start,
                end: last.window.end,
            }),
            _ => None,
        };
        let reach_outs =
            self.reach_outs(&phases, &stages, &channels, &templates, &follow_ups, span);
        let weekly_report = self.weekly_report(&roles);
        Some(Plan {
            campaign: campaign?,
            phases,
            stages,
            roles,
            workstreams,
            tasks,
            targets,
            segments,
            channels,
            templates,
            reach_outs,
            follow_ups,
            offers,
            weekly_report,
        })
    }

    pub(super) fn check_ids(&mut self) {
        let raw = self.raw;
        macro_rules! entries {
            ($($field:ident),*) => {
                vec![$(raw.$field.iter().map(|e| (e.id.clone(), e.path.clone())).collect::<Vec<_>>()),*]
            };
        }
        let sections = entries!(
            stages,
            roles,
            workstreams,
            tasks,
            segments,
            channels,
            templates,
            reach_outs,
            follow_ups,
            coupons,
            tiered,
            discounts,
            bundles
        );
        for (id, path) in sections.into_iter().flatten() {
            if !is_slug(&id) {
                self.push_at_key(
                    Diagnostic::new(Code::InvalidId, path, format!("`{id}` is not a valid id"))
                        .with_help("ids are lowercase letters, digits, `-` and `_`, at most 64, starting with a letter or digit"),
                );
            }
        }
        // "auto" means "the template that fits"; a template cannot be called that.
        for entry in raw.templates.iter().filter(|e| e.id == "auto") {
            self.push_at_key(
                Diagnostic::new(
                    Code::InvalidId,
                    entry.path.clone(),
                    "`auto` is reserved: `template = \"auto\"` means the template that fits",
                )
                .with_help("choose another id"),
            );
        }
    }

    pub(super) fn campaign(&mut self) -> Option<Campaign> {
        let Some(raw) = self.raw.campaign.as_ref() else {
            // [campaign] could not be read (its error is reported); its zone may still be good,
            // and every time check needs it.
            self.time_zone = self
                .raw
                .time_zone_hint
                .as_deref()
                .and_then(|zone| zone.parse().ok());
            return None;
        };
        let mut ok = true;
        if !is_slug(&raw.id) {
            ok = false;
            self.push(
                Diagnostic::new(
                    Code::InvalidCampaignId,
                    "campaign.id",
                    format!("`{}` is not a valid campaign id", raw.id),
                )
                .with_help(
                    "use lowercase letters, digits, `-` and `_`, e.g. \"sept-festival-2026\"",
                ),
            );
        }
        let time_zone = match raw.time_zone.parse::<Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                ok = false;
                let mut diagnostic = Diagnostic::new(
                    Code::UnknownTimeZone,
                    "campaign.time_zone",
                    format!("`{}` is not an IANA time zone", raw.time_zone),
                );
                diagnostic = match crate::plan::values::suggest_zone(&raw.time_zone) {
                    Some(candidate) => diagnostic.with_help(format!("did you mean `{candidate}`?")),
                    None => diagnostic.with_help(
                        "write a zone name such as \"Asia/Shanghai\" or \"America/New_York\"",
                    ),
                };
                self.push(diagnostic);
                None
            }
        };
        self.time_zone = time_zone;
        let currency_ok =
            raw.currency.len() == 3 && raw.currency.chars().all(|c| c.is_ascii_uppercase());
        if !currency_ok {
            ok = false;
            self.push(
                Diagnostic::new(
                    Code::InvalidCurrency,
                    "campaign.currency",
                    format!(
                        "`{}` is not written as an ISO 4217 currency code",
                        raw.currency
                    ),
                )
                .with_help("three capital letters, such as \"CNY\" or \"USD\""),
            );
        }
        if let Some(value) = raw.average_order_value {
            if value.minor() <= 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    "campaign.average_order_value",
                    "the average order value must be above zero",
                ));
            }
        }
        let time_zone = time_zone?;
        ok.then(|| Campaign {
            id: raw.id.clone(),
            name: raw.name.clone(),
            time_zone,
            currency: raw.currency.clone(),
            description: raw.description.clone(),
            average_order_value: raw.average_order_value,
            on_resume: raw.on_resume,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{diagnostic::render, EXAMPLE_PLAN};

    #[test]
    fn the_example_plan_is_valid() {
        let checked = check(EXAMPLE_PLAN.as_bytes());
        let rendered: Vec<String> = checked
            .diagnostics
            .iter()
            .map(|d| render("example.toml", Some(&checked.line_index), d))
            .collect();
        assert!(checked.diagnostics.is_empty(), "{}", rendered.join("\n"));
        assert!(checked.plan.is_some());
    }
}
