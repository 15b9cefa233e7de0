//! Meaning: resolves every instant in the campaign's zone, checks every reference, window, quota,
//! template and offer rule, and builds the [`Plan`]. It never stops at the first problem; it
//! reports each with its code and location, and yields a plan only when there is no error.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::diagnostic::{suggest, Code, Diagnostic, LineIndex};
use super::model::*;
use super::parse::{self, SpanIndex};
use super::raw::*;
use super::template::{self, Query, Selection, KNOWN_VARIABLES};
use super::values::{Edge, Money, PlanDuration, TimeSpec};

/// Roles every plan has without declaring them.
pub const BUILT_IN_ROLES: &[(&str, &str)] =
    &[("ops", "Operations"), ("sales", "Sales"), ("boss", "Boss")];

/// The platforms' limits on bundles (Tmall's published rules).
const MAX_BUNDLES: usize = 50;
const MAX_BUNDLE_ITEMS: usize = 5;
const MAX_TIERS: usize = 3;
/// The default fatigue window when a channel sets none: the platforms' 7 days.
const DEFAULT_FATIGUE_DAYS: i64 = 7;

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
    };
    let plan = validator.run();
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
    instant
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %:z")
        .to_string()
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

fn describe_duration(duration: Duration) -> String {
    PlanDuration::from_seconds(duration.num_seconds().abs()).to_string()
}

struct Validator<'a> {
    spans: &'a SpanIndex,
    diagnostics: Vec<Diagnostic>,
    time_zone: Option<Tz>,
    /// Resolved phase and stage boundaries by (name, edge); `None` when it could not be resolved.
    boundaries: HashMap<(String, Edge), Option<DateTime<Utc>>>,
    resolving: HashSet<(String, Edge)>,
    raw: &'a RawPlan,
    /// Paths already reported by time resolution, so a bad boundary is reported once.
    reported: HashSet<String>,
}

/// How a date written alone is read: the first instant of the day, or the instant after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DateMeaning {
    StartOfDay,
    EndOfDay,
}

impl<'a> Validator<'a> {
    fn push(&mut self, diagnostic: Diagnostic) {
        let span = diagnostic
            .span
            .clone()
            .or_else(|| self.spans.value(&diagnostic.path));
        self.diagnostics.push(diagnostic.with_span(span));
    }

    /// Whether an error was already reported at `prefix` or below it: checks that depend on a
    /// broken section are skipped rather than repeated as consequences.
    fn has_errors_under(&self, prefixes: &[&str]) -> bool {
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

    fn push_at_key(&mut self, diagnostic: Diagnostic) {
        let span = self.spans.key(&diagnostic.path);
        self.diagnostics.push(diagnostic.with_span(span));
    }

    /// Reports a reference to something undeclared, suggesting the closest declared name.
    fn unknown_reference<'n>(
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

    fn run(&mut self) -> Option<Plan> {
        let raw = self.raw;
        self.check_ids();
        let campaign = self.campaign();
        let phases = self.phases();
        let stages = self.stages(&phases);
        let roles = self.roles();
        let workstreams = self.workstreams(&roles);
        let tasks = self.tasks(&phases, &stages, &roles, &workstreams);
        let targets = self.targets();
        let segments = self.segments();
        let channels = self.channels();
        let offers = self.offers(&phases, &stages);
        let templates = self.templates(&channels, &offers);
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
        let _ = raw;
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
        })
    }

    fn check_ids(&mut self) {
        let raw = self.raw;
        let mut sections: Vec<(&str, Vec<&str>)> = Vec::new();
        macro_rules! ids {
            ($field:ident) => {
                sections.push((
                    stringify!($field),
                    raw.$field.iter().map(|e| e.path.as_str()).collect(),
                ));
            };
        }
        ids!(stages);
        ids!(roles);
        ids!(workstreams);
        ids!(tasks);
        ids!(segments);
        ids!(channels);
        ids!(templates);
        ids!(reach_outs);
        ids!(follow_ups);
        ids!(coupons);
        ids!(tiered);
        ids!(discounts);
        ids!(bundles);
        for (_, paths) in sections {
            for path in paths {
                let id = path.rsplit('.').next().unwrap_or(path);
                if !is_slug(id) {
                    self.push_at_key(
                        Diagnostic::new(
                            Code::InvalidId,
                            path,
                            format!("`{id}` is not a valid id"),
                        )
                        .with_help("ids are lowercase letters, digits, `-` and `_`, at most 64, starting with a letter or digit"),
                    );
                }
            }
        }
    }

    fn campaign(&mut self) -> Option<Campaign> {
        let raw = self.raw.campaign.as_ref()?;
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
                let names = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
                let mut diagnostic = Diagnostic::new(
                    Code::UnknownTimeZone,
                    "campaign.time_zone",
                    format!("`{}` is not an IANA time zone", raw.time_zone),
                );
                diagnostic = match suggest(&raw.time_zone, names) {
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

    // ----- time -----------------------------------------------------------------------------

    /// The first instant of a local day. Where a zone skips midnight (daylight saving starting
    /// at 00:00), the day starts at the first local time that exists.
    fn day_start(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
        let midnight = date.and_hms_opt(0, 0, 0)?;
        (0..=16).find_map(|quarter| {
            let local = midnight + Duration::minutes(15 * quarter);
            match zone.from_local_datetime(&local) {
                LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
                LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
                LocalResult::None => None,
            }
        })
    }

    fn local_instant(
        &mut self,
        zone: Tz,
        local: NaiveDateTime,
        path: &str,
    ) -> Option<DateTime<Utc>> {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
            LocalResult::Ambiguous(earliest, latest) => {
                if self.reported.insert(format!("{path}#ambiguous")) {
                    self.push(
                        Diagnostic::new(
                            Code::AmbiguousLocalTime,
                            path,
                            format!(
                                "{} happens twice in {zone} (clocks go back); the earlier, {}, is used",
                                local.format("%Y-%m-%d %H:%M"),
                                earliest.format("%H:%M %:z")
                            ),
                        )
                        .with_help(format!(
                            "write the offset to choose, e.g. {}",
                            latest.format("%Y-%m-%dT%H:%M:%S%:z")
                        )),
                    );
                }
                Some(earliest.with_timezone(&Utc))
            }
            LocalResult::None => {
                if self.reported.insert(format!("{path}#gap")) {
                    self.push(
                        Diagnostic::new(
                            Code::NonexistentLocalTime,
                            path,
                            format!(
                                "{} does not exist in {zone}: the clocks skip it (daylight saving)",
                                local.format("%Y-%m-%d %H:%M")
                            ),
                        )
                        .with_help("choose a time outside the skipped hour"),
                    );
                }
                None
            }
        }
    }

    /// Resolves an instant written in the plan. Dates mean the start or the end of the day as
    /// `meaning` says; anchored instants follow phase and stage boundaries.
    fn resolve(
        &mut self,
        spec: &TimeSpec,
        meaning: DateMeaning,
        path: &str,
    ) -> Option<DateTime<Utc>> {
        let zone = self.time_zone?;
        match spec {
            TimeSpec::Date(date) => {
                let day = match meaning {
                    DateMeaning::StartOfDay => *date,
                    DateMeaning::EndOfDay => date.succ_opt()?,
                };
                Self::day_start(zone, day)
            }
            TimeSpec::Local(local) => self.local_instant(zone, *local, path),
            TimeSpec::Fixed(fixed) => Some(fixed.with_timezone(&Utc)),
            TimeSpec::Anchored {
                anchor,
                edge,
                offset_seconds,
            } => {
                let boundary = self.boundary(anchor, *edge, path)?;
                boundary.checked_add_signed(Duration::seconds(*offset_seconds))
            }
        }
    }

    /// A phase or stage boundary, resolved once; reports unknown names and cycles.
    fn boundary(&mut self, name: &str, edge: Edge, referenced_from: &str) -> Option<DateTime<Utc>> {
        let key = (name.to_string(), edge);
        if let Some(known) = self.boundaries.get(&key) {
            return *known;
        }
        let raw = self.raw;
        let (spec, path) = if let Some(entry) = raw.phases.iter().find(|e| e.id == name) {
            let phase = entry.value.as_ref()?;
            match edge {
                Edge::Start => (&phase.start, format!("{}.start", entry.path)),
                Edge::End => (&phase.end, format!("{}.end", entry.path)),
            }
        } else if let Some(entry) = raw.stages.iter().find(|e| e.id == name) {
            let stage = entry.value.as_ref()?;
            match edge {
                Edge::Start => (&stage.start, format!("{}.start", entry.path)),
                Edge::End => (&stage.end, format!("{}.end", entry.path)),
            }
        } else if let Some(kind) = PhaseKind::from_key(name) {
            // A missing required phase is reported once as such (BP0201), not at every use; the
            // optional review phase is reported where it is used.
            self.missing_optional_phase(kind, referenced_from);
            return None;
        } else {
            if self.reported.insert(format!("{referenced_from}#anchor")) {
                let declared: Vec<String> = raw
                    .phases
                    .iter()
                    .map(|e| e.id.clone())
                    .chain(raw.stages.iter().map(|e| e.id.clone()))
                    .collect();
                self.unknown_reference(
                    referenced_from,
                    "phase or stage",
                    name,
                    declared.iter().map(String::as_str),
                );
            }
            return None;
        };
        if !self.resolving.insert(key.clone()) {
            if self.reported.insert(format!("{path}#cycle")) {
                self.push(
                    Diagnostic::new(
                        Code::AnchorCycle,
                        path.clone(),
                        format!("`{name}.{edge}` is defined in terms of itself"),
                    )
                    .with_help("anchor at least one boundary of the chain on a date"),
                );
            }
            return None;
        }
        let meaning = match edge {
            Edge::Start => DateMeaning::StartOfDay,
            Edge::End => DateMeaning::EndOfDay,
        };
        let resolved = self.resolve(spec, meaning, &path);
        self.resolving.remove(&key);
        self.boundaries.insert(key, resolved);
        resolved
    }

    /// Reports a use of the review phase in a plan that does not declare it. Required phases
    /// are reported once, as missing (BP0201).
    fn missing_optional_phase(&mut self, kind: PhaseKind, path: &str) {
        let declared = self.raw.phases.iter().any(|e| e.id == kind.key());
        if kind == PhaseKind::Review && !declared && self.reported.insert(format!("{path}#review"))
        {
            self.push(
                Diagnostic::new(Code::UnknownReference, path, "the plan has no review phase")
                    .with_help("declare [phases.review] with start and end, or use another phase"),
            );
        }
    }

    fn window_of(&mut self, start: &TimeSpec, end: &TimeSpec, path: &str) -> Option<Window> {
        let start = self.resolve(start, DateMeaning::StartOfDay, &format!("{path}.start"));
        let end = self.resolve(end, DateMeaning::EndOfDay, &format!("{path}.end"));
        let (start, end) = (start?, end?);
        if end <= start {
            let zone = self.time_zone?;
            self.push(Diagnostic::new(
                Code::EmptyWindow,
                format!("{path}.end"),
                format!(
                    "ends at {}, not after its start at {}",
                    format_instant(zone, end),
                    format_instant(zone, start)
                ),
            ));
            return None;
        }
        Some(Window { start, end })
    }

    /// A window named after a phase or stage, or written with start and end.
    fn named_or_between(
        &mut self,
        window: &RawWindow,
        path: &str,
        phases: &[Phase],
        stages: &[Stage],
    ) -> Option<Window> {
        match window {
            RawWindow::Named(name) => {
                if let Some(phase) = phases.iter().find(|p| p.kind.key() == name) {
                    return Some(phase.window);
                }
                if let Some(stage) = stages.iter().find(|s| &s.id == name) {
                    return Some(stage.window);
                }
                let known_phase = PhaseKind::from_key(name).is_some();
                if let Some(kind) = PhaseKind::from_key(name) {
                    self.missing_optional_phase(kind, path);
                }
                let known_stage = self.raw.stages.iter().any(|e| &e.id == name);
                if !known_phase && !known_stage {
                    let declared: Vec<String> = self
                        .raw
                        .phases
                        .iter()
                        .map(|e| e.id.clone())
                        .chain(self.raw.stages.iter().map(|e| e.id.clone()))
                        .collect();
                    self.unknown_reference(
                        path,
                        "phase or stage",
                        name,
                        declared.iter().map(String::as_str),
                    );
                }
                None
            }
            RawWindow::Between { start, end } => self.window_of(start, end, path),
        }
    }

    // ----- phases and stages ----------------------------------------------------------------

    fn phases(&mut self) -> Vec<Phase> {
        let raw = self.raw;
        let mut phases = Vec::new();
        for kind in PhaseKind::ALL {
            let Some(entry) = raw.phases.iter().find(|e| e.id == kind.key()) else {
                if kind != PhaseKind::Review && self.raw.campaign.is_some() {
                    self.push(
                        Diagnostic::new(
                            Code::MissingPhase,
                            "phases",
                            format!("the plan has no {} phase", kind.label()),
                        )
                        .with_help(format!("add [phases.{}] with start and end", kind.key())),
                    );
                }
                continue;
            };
            let Some(value) = &entry.value else { continue };
            let start = self.boundary(kind.key(), Edge::Start, &format!("{}.start", entry.path));
            let end = self.boundary(kind.key(), Edge::End, &format!("{}.end", entry.path));
            let (Some(start), Some(end)) = (start, end) else {
                continue;
            };
            if end <= start {
                if let Some(zone) = self.time_zone {
                    self.push(Diagnostic::new(
                        Code::EmptyWindow,
                        format!("{}.end", entry.path),
                        format!(
                            "the {} phase ends at {}, not after its start at {}",
                            kind.label(),
                            format_instant(zone, end),
                            format_instant(zone, start)
                        ),
                    ));
                }
                continue;
            }
            let consecutive = phases.last().filter(|previous: &&Phase| {
                PhaseKind::ALL
                    .windows(2)
                    .any(|pair| pair == [previous.kind, kind])
            });
            if let Some(previous) = consecutive {
                self.adjacent(
                    previous_label(previous),
                    previous.window,
                    &format!("the {} phase", kind.label()),
                    Window { start, end },
                    &entry.path,
                    value.allow_gap_before,
                    Code::PhaseOverlap,
                    Code::PhaseGap,
                );
            }
            phases.push(Phase {
                kind,
                name: value
                    .name
                    .clone()
                    .unwrap_or_else(|| default_phase_name(kind).to_string()),
                description: value.description.clone(),
                window: Window { start, end },
            });
        }
        phases
    }

    /// Checks that `next` follows `previous` without overlap and, unless allowed, without a gap.
    #[allow(clippy::too_many_arguments)] // Each argument names one side of the comparison.
    fn adjacent(
        &mut self,
        previous_label: String,
        previous: Window,
        next_label: &str,
        next: Window,
        next_path: &str,
        allow_gap: bool,
        overlap_code: Code,
        gap_code: Code,
    ) {
        let Some(zone) = self.time_zone else { return };
        if next.start < previous.end {
            let message = if next.start < previous.start {
                format!(
                    "{next_label} starts at {}, before {previous_label} (which starts at {}); list them in order",
                    format_instant(zone, next.start),
                    format_instant(zone, previous.start)
                )
            } else {
                format!(
                    "{next_label} starts at {}, {} before {previous_label} ends ({})",
                    format_instant(zone, next.start),
                    describe_duration(previous.end - next.start),
                    format_instant(zone, previous.end)
                )
            };
            self.push(Diagnostic::new(
                overlap_code,
                format!("{next_path}.start"),
                message,
            ));
        } else if next.start > previous.end && !allow_gap {
            self.push(
                Diagnostic::new(
                    gap_code,
                    format!("{next_path}.start"),
                    format!(
                        "{} gap: {previous_label} ends at {} but {next_label} starts at {}",
                        describe_duration(next.start - previous.end),
                        format_instant(zone, previous.end),
                        format_instant(zone, next.start)
                    ),
                )
                .with_help(format!(
                    "start it when the previous one ends, or set `allow_gap_before = true` in [{next_path}] if the gap is meant"
                )),
            );
        }
    }

    fn stages(&mut self, phases: &[Phase]) -> Vec<Stage> {
        let raw = self.raw;
        let burst = phases
            .iter()
            .find(|p| p.kind == PhaseKind::Burst)
            .map(|p| p.window);
        if raw.stages.is_empty() && raw.phases.iter().any(|e| e.id == "burst") {
            self.push(
                Diagnostic::new(Code::NoStages, "phases.burst", "the burst phase has no stages")
                    .with_help("declare [stages.early], [stages.middle], [stages.late] (or your own) covering the burst phase"),
            );
        }
        let mut stages: Vec<Stage> = Vec::new();
        for entry in &raw.stages {
            if PhaseKind::from_key(&entry.id).is_some() {
                self.push_at_key(Diagnostic::new(
                    Code::StageNameClash,
                    entry.path.clone(),
                    format!("a stage cannot be called `{}`: that is a phase", entry.id),
                ));
                continue;
            }
            let Some(value) = &entry.value else { continue };
            let start = self.boundary(&entry.id, Edge::Start, &format!("{}.start", entry.path));
            let end = self.boundary(&entry.id, Edge::End, &format!("{}.end", entry.path));
            let (Some(start), Some(end)) = (start, end) else {
                continue;
            };
            let Some(zone) = self.time_zone else { continue };
            if end <= start {
                self.push(Diagnostic::new(
                    Code::EmptyWindow,
                    format!("{}.end", entry.path),
                    format!(
                        "stage `{}` ends at {} but starts at {}",
                        entry.id,
                        format_instant(zone, end),
                        format_instant(zone, start)
                    ),
                ));
                continue;
            }
            let window = Window { start, end };
            if let Some(burst) = burst {
                if start < burst.start || end > burst.end {
                    self.push(Diagnostic::new(
                        Code::StageOutsideBurst,
                        format!(
                            "{}.{}",
                            entry.path,
                            if start < burst.start { "start" } else { "end" }
                        ),
                        format!(
                            "stage `{}` runs {} to {}, outside the burst phase ({} to {})",
                            entry.id,
                            format_instant(zone, start),
                            format_instant(zone, end),
                            format_instant(zone, burst.start),
                            format_instant(zone, burst.end)
                        ),
                    ));
                }
            }
            match stages.last() {
                Some(previous) => {
                    let label = format!("stage `{}`", previous.id);
                    self.adjacent(
                        label,
                        previous.window,
                        &format!("stage `{}`", entry.id),
                        window,
                        &entry.path,
                        value.allow_gap_before,
                        Code::StageOverlap,
                        Code::StageGap,
                    );
                }
                None => {
                    if let Some(burst) = burst {
                        if start > burst.start && !value.allow_gap_before {
                            self.push(
                                Diagnostic::new(
                                    Code::StageGap,
                                    format!("{}.start", entry.path),
                                    format!(
                                        "the first stage `{}` starts {} after the burst phase ({}); that time has no stage",
                                        entry.id,
                                        describe_duration(start - burst.start),
                                        format_instant(zone, burst.start)
                                    ),
                                )
                                .with_help(format!("start it with the burst phase, or set `allow_gap_before = true` in [{}]", entry.path)),
                            );
                        }
                    }
                }
            }
            stages.push(Stage {
                id: entry.id.clone(),
                name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                theme: value.theme.clone(),
                description: value.description.clone(),
                window,
            });
        }
        if let (Some(burst), Some(last), Some(zone)) = (burst, stages.last(), self.time_zone) {
            if last.window.end < burst.end {
                let path = format!("stages.{}.end", last.id);
                self.push(
                    Diagnostic::new(
                        Code::StageGap,
                        path,
                        format!(
                            "the last stage `{}` ends {} before the burst phase ({}); that time has no stage",
                            last.id,
                            describe_duration(burst.end - last.window.end),
                            format_instant(zone, burst.end)
                        ),
                    )
                    .with_help("end the last stage with the burst phase"),
                );
            }
        }
        stages
    }

    // ----- people and work ------------------------------------------------------------------

    fn roles(&mut self) -> Vec<Role> {
        let mut roles: Vec<Role> = BUILT_IN_ROLES
            .iter()
            .map(|(id, name)| Role {
                id: id.to_string(),
                name: name.to_string(),
                members: Vec::new(),
            })
            .collect();
        for entry in &self.raw.roles {
            let Some(value) = &entry.value else { continue };
            let role = Role {
                id: entry.id.clone(),
                name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                members: value.members.clone(),
            };
            match roles.iter_mut().find(|r| r.id == entry.id) {
                Some(existing) => {
                    existing.members = role.members;
                    if let Some(name) = &value.name {
                        existing.name = name.clone();
                    }
                }
                None => roles.push(role),
            }
        }
        roles
    }

    fn role_ids(&self) -> Vec<String> {
        BUILT_IN_ROLES
            .iter()
            .map(|(id, _)| id.to_string())
            .chain(self.raw.roles.iter().map(|e| e.id.clone()))
            .collect()
    }

    fn workstreams(&mut self, _roles: &[Role]) -> Vec<Workstream> {
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

    fn tasks(
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
            if !workstream_ids.contains(&value.workstream.as_str()) {
                ok = false;
                self.unknown_reference(
                    &format!("{path}.workstream"),
                    "workstream",
                    &value.workstream,
                    workstream_ids.iter().copied(),
                );
            }
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
                if !stage_ids.contains(&stage.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.stage"),
                        "stage",
                        stage,
                        stage_ids.iter().copied(),
                    );
                } else if phase_kind.is_some_and(|kind| kind != PhaseKind::Burst) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::StageOutsidePhase,
                        format!("{path}.stage"),
                        format!(
                            "stage `{stage}` is part of the burst phase, not {}",
                            value.phase
                        ),
                    ));
                }
            }
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
                } else if value.remind[..position].contains(lead) {
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

    fn schedule(
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
        let at = task.at.unwrap_or(super::values::TimeOfDay(
            chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
        ));
        Some(TaskSchedule::Recurring {
            recurrence,
            at,
            from,
            until,
        })
    }

    fn targets(&mut self) -> Vec<StageTarget> {
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
                if value.minor() <= 0 {
                    self.push(Diagnostic::new(
                        Code::TargetNotPositive,
                        path,
                        format!("the {metric_key} target must be above zero"),
                    ));
                    continue;
                }
                if !metric.is_money() && value.minor() % 100 != 0 {
                    self.push(Diagnostic::new(
                        Code::TargetNotWhole,
                        path,
                        format!("`{metric_key}` is a count; {value} is not a whole number"),
                    ));
                    continue;
                }
                targets.push(StageTarget {
                    stage: entry.id.clone(),
                    metric,
                    value: *value,
                });
            }
        }
        targets
    }

    // ----- audiences ------------------------------------------------------------------------

    fn segments(&mut self) -> Vec<Segment> {
        let raw = self.raw;
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let mut segments = Vec::new();
        let mut includes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for entry in &raw.segments {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let has_rule = value.all.is_some() || value.any.is_some() || value.none.is_some();
            let kinds = [value.system.is_some(), has_rule, value.customers.is_some()]
                .iter()
                .filter(|present| **present)
                .count();
            if kinds != 1 {
                self.push_at_key(
                    Diagnostic::new(
                        Code::SegmentKind,
                        path,
                        if kinds == 0 {
                            format!("segment `{}` says nothing about who is in it", entry.id)
                        } else {
                            format!("segment `{}` mixes kinds; choose one of `system`, a rule (`all` / `any` / `none`) or `customers`", entry.id)
                        },
                    )
                    .with_help("system = \"active_30d\", or all = [ { tag = \"vip\" } ], or customers = [\"c-1\"]"),
                );
                continue;
            }
            let name = value.name.clone().unwrap_or_else(|| entry.id.clone());
            let definition = if let Some(system) = value.system {
                SegmentDefinition::System(system)
            } else if let Some(customers) = &value.customers {
                if customers.is_empty() {
                    self.push(Diagnostic::new(
                        Code::EmptySegment,
                        format!("{path}.customers"),
                        "the customer list is empty",
                    ));
                    continue;
                }
                let mut seen = HashSet::new();
                for (position, customer) in customers.iter().enumerate() {
                    if !seen.insert(customer) {
                        self.push(Diagnostic::new(
                            Code::DuplicateCustomer,
                            format!("{path}.customers[{position}]"),
                            format!("customer `{customer}` is listed twice"),
                        ));
                    }
                }
                SegmentDefinition::Fixed(customers.clone())
            } else {
                let mut lists = Vec::new();
                let mut ok = true;
                for (key, conditions) in [
                    ("all", &value.all),
                    ("any", &value.any),
                    ("none", &value.none),
                ] {
                    let mut converted = Vec::new();
                    for (position, condition) in conditions.iter().flatten().enumerate() {
                        let condition_path = format!("{path}.{key}[{position}]");
                        match self.condition(&condition_path, condition, &segment_ids) {
                            Some(condition) => {
                                if let Condition::InSegment(other) = &condition {
                                    includes
                                        .entry(entry.id.as_str())
                                        .or_default()
                                        .push(other.clone());
                                }
                                converted.push(condition);
                            }
                            None => ok = false,
                        }
                    }
                    lists.push(converted);
                }
                if !ok {
                    continue;
                }
                if lists.iter().all(Vec::is_empty) {
                    self.push_at_key(Diagnostic::new(
                        Code::EmptySegment,
                        path,
                        format!("segment `{}` has a rule with no conditions", entry.id),
                    ));
                    continue;
                }
                let none = lists.pop().unwrap_or_default();
                let any = lists.pop().unwrap_or_default();
                let all = lists.pop().unwrap_or_default();
                if all.is_empty() && any.is_empty() {
                    self.push_at_key(
                        Diagnostic::new(
                            Code::EmptySegment,
                            path,
                            format!("segment `{}` only excludes; it would take every customer not excluded", entry.id),
                        )
                        .with_help("add an `all` or `any` condition, e.g. { activity = \"active\", within = \"180d\" }"),
                    );
                    continue;
                }
                SegmentDefinition::Dynamic { all, any, none }
            };
            segments.push(Segment {
                id: entry.id.clone(),
                name,
                description: value.description.clone(),
                definition,
            });
        }
        // Segments that include each other would never finish evaluating.
        for start in includes.keys().copied().collect::<Vec<_>>() {
            let mut stack = vec![(start.to_string(), vec![start.to_string()])];
            let mut visited = HashSet::new();
            while let Some((current, trail)) = stack.pop() {
                for next in includes.get(current.as_str()).into_iter().flatten() {
                    if next == start {
                        let mut cycle = trail.clone();
                        cycle.push(start.to_string());
                        self.push_at_key(Diagnostic::new(
                            Code::SegmentCycle,
                            format!("segments.{start}"),
                            format!("segments include each other: {}", cycle.join(" -> ")),
                        ));
                        segments.retain(|segment| segment.id != start);
                        stack.clear();
                        break;
                    }
                    if visited.insert(next.clone()) {
                        let mut longer = trail.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
        segments
    }

    fn condition(
        &mut self,
        path: &str,
        raw: &RawCondition,
        segment_ids: &[&str],
    ) -> Option<Condition> {
        let selectors: Vec<&str> = [
            ("tag", raw.tag.is_some()),
            ("not_tag", raw.not_tag.is_some()),
            ("tier", raw.tier.is_some()),
            ("owner", raw.owner.is_some()),
            ("source", raw.source.is_some()),
            ("locale", raw.locale.is_some()),
            ("lifecycle", raw.lifecycle.is_some()),
            ("in_segment", raw.in_segment.is_some()),
            ("activity", raw.activity.is_some()),
            ("attribute", raw.attribute.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(key, _)| key)
        .collect();
        if selectors.len() != 1 {
            self.push(
                Diagnostic::new(
                    Code::ConditionSelector,
                    path,
                    if selectors.is_empty() {
                        "a condition needs a selector".to_string()
                    } else {
                        format!("a condition has one selector; this one has {}", selectors.join(", "))
                    },
                )
                .with_help("selectors: tag, not_tag, tier, owner, source, locale, lifecycle, in_segment, activity, attribute; split into several conditions"),
            );
            return None;
        }
        let selector = selectors[0];
        let misplaced: Vec<&str> = [
            ("within", raw.within.is_some() && selector != "activity"),
            (
                "not_within",
                raw.not_within.is_some() && selector != "activity",
            ),
            ("equals", raw.equals.is_some() && selector != "attribute"),
            ("one_of", raw.one_of.is_some() && selector != "attribute"),
        ]
        .into_iter()
        .filter(|(_, wrong)| *wrong)
        .map(|(key, _)| key)
        .collect();
        if !misplaced.is_empty() {
            self.push(Diagnostic::new(
                Code::ConditionOption,
                path,
                format!(
                    "`{}` does not apply to a `{selector}` condition",
                    misplaced.join("`, `")
                ),
            ));
            return None;
        }
        let list = |values: &Option<OneOrMany<String>>| {
            values.as_ref().map(|v| v.0.clone()).unwrap_or_default()
        };
        let empty_list = |diagnostics: &mut Self| {
            diagnostics.push(Diagnostic::new(
                Code::ConditionOption,
                format!("{path}.{selector}"),
                format!("`{selector}` needs at least one value"),
            ));
        };
        let condition = match selector {
            "tag" => Condition::Tag(raw.tag.clone().unwrap_or_default()),
            "not_tag" => Condition::NotTag(raw.not_tag.clone().unwrap_or_default()),
            "tier" | "owner" | "locale" => {
                let values = list(match selector {
                    "tier" => &raw.tier,
                    "owner" => &raw.owner,
                    _ => &raw.locale,
                });
                if values.is_empty() {
                    empty_list(self);
                    return None;
                }
                match selector {
                    "tier" => Condition::Tier(values),
                    "owner" => Condition::Owner(values),
                    _ => Condition::Locale(values),
                }
            }
            "source" => {
                let values = raw.source.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                if values.is_empty() {
                    empty_list(self);
                    return None;
                }
                Condition::Source(values)
            }
            "lifecycle" => {
                let values = raw
                    .lifecycle
                    .as_ref()
                    .map(|v| v.0.clone())
                    .unwrap_or_default();
                if values.is_empty() {
                    empty_list(self);
                    return None;
                }
                Condition::Lifecycle(values)
            }
            "in_segment" => {
                let other = raw.in_segment.clone().unwrap_or_default();
                if !segment_ids.contains(&other.as_str()) {
                    self.unknown_reference(
                        &format!("{path}.in_segment"),
                        "segment",
                        &other,
                        segment_ids.iter().copied(),
                    );
                    return None;
                }
                Condition::InSegment(other)
            }
            "activity" => {
                let activity = raw.activity?;
                match (raw.within, raw.not_within) {
                    (Some(_), Some(_)) => {
                        self.push(Diagnostic::new(
                            Code::ConditionOption,
                            path,
                            "an activity condition has `within` or `not_within`, not both; use two conditions",
                        ));
                        return None;
                    }
                    (None, Some(within)) => Condition::NoActivity { activity, within },
                    (within, None) => Condition::Activity { activity, within },
                }
            }
            _ => {
                let name = raw.attribute.clone().unwrap_or_default();
                let one_of = match (&raw.equals, &raw.one_of) {
                    (Some(value), None) => vec![value.clone()],
                    (None, Some(values)) if !values.is_empty() => values.clone(),
                    _ => {
                        self.push(Diagnostic::new(
                            Code::ConditionOption,
                            path,
                            "an attribute condition needs exactly one of `equals` or a non-empty `one_of`",
                        ));
                        return None;
                    }
                };
                Condition::Attribute { name, one_of }
            }
        };
        Some(condition)
    }

    // ----- channels -------------------------------------------------------------------------

    fn channels(&mut self) -> Vec<Channel> {
        let raw = self.raw;
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let mut channels = Vec::new();
        for entry in &raw.channels {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            for (key, cap) in [
                ("daily_cap", value.daily_cap),
                ("per_account_daily_cap", value.per_account_daily_cap),
            ] {
                if cap == Some(0) {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::ZeroCap,
                            format!("{path}.{key}"),
                            format!("`{key}` of zero would send nothing"),
                        )
                        .with_help(
                            "remove the channel from reach-outs instead, or give a cap above zero",
                        ),
                    );
                }
            }
            if let (Some(free), Some(cap)) = (value.free_per_day, value.daily_cap) {
                if free > cap {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::FreeAboveCap,
                        format!("{path}.free_per_day"),
                        format!("{free} free messages a day is more than the daily cap of {cap}"),
                    ));
                }
                if free == cap && value.cost_per_1000.is_some_and(|cost| cost.minor() > 0) {
                    self.push(Diagnostic::new(
                        Code::PaidAboveCap,
                        format!("{path}.cost_per_1000"),
                        "the free quota equals the cap, so nothing is ever paid: the price is never used",
                    ));
                }
            }
            if value.daily_cap.is_none() && value.per_account_daily_cap.is_none() {
                self.push_at_key(
                    Diagnostic::new(
                        Code::Unlimited,
                        path,
                        format!("channel `{}` has no daily cap: nothing limits how much it sends in a day", entry.id),
                    )
                    .with_help("set daily_cap (mail: 2000 on the platform) or per_account_daily_cap"),
                );
            }
            let paid_possible = match (value.free_per_day, value.daily_cap) {
                (Some(free), Some(cap)) => free < cap,
                (Some(_), None) => true,
                _ => false,
            };
            if paid_possible && value.cost_per_1000.is_none() {
                self.push_at_key(
                    Diagnostic::new(
                        Code::UnpricedVolume,
                        format!("{path}.free_per_day"),
                        "messages above the free quota are paid, but the channel has no `cost_per_1000`; previews will show them as free",
                    )
                    .with_help("set cost_per_1000 (mail: 2.00 CNY on the platform)"),
                );
            }
            if value.per_account_daily_cap.is_some() && value.accounts.is_empty() {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::AccountsRequired,
                        format!("{path}.per_account_daily_cap"),
                        "a per-account cap needs the sending accounts it applies to",
                    )
                    .with_help("add accounts = [\"...\"]"),
                );
            }
            for (position, account) in value.accounts.iter().enumerate() {
                if account.trim().is_empty() {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        format!("{path}.accounts[{position}]"),
                        "an account name cannot be empty",
                    ));
                } else if value.accounts[..position].contains(account) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::DuplicateAccount,
                        format!("{path}.accounts[{position}]"),
                        format!("account `{account}` is listed twice"),
                    ));
                }
            }
            let fatigue = value
                .fatigue
                .unwrap_or(PlanDuration::from_seconds(DEFAULT_FATIGUE_DAYS * 86_400));
            if fatigue.seconds() == 0 {
                self.push(
                    Diagnostic::new(
                        Code::NoFatigue,
                        format!("{path}.fatigue"),
                        "no fatigue window: a customer can be messaged again at once, which the platforms count as spam",
                    )
                    .with_help("the platforms exclude customers marketed in the last 7 days: fatigue = \"7d\""),
                );
            }
            let quiet_hours = match &value.quiet_hours {
                Some(quiet) if quiet.start == quiet.end => {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::EmptyQuietHours,
                        format!("{path}.quiet_hours"),
                        format!(
                            "quiet hours start and end at {}; say which hours are quiet",
                            quiet.start
                        ),
                    ));
                    None
                }
                Some(quiet) => Some(QuietHours {
                    start: quiet.start.0,
                    end: quiet.end.0,
                    policy: quiet.policy,
                }),
                None => None,
            };
            let bounce_guard = match &value.bounce_guard {
                Some(guard)
                    if !(guard.max_bounce_rate.0 > 0.0 && guard.max_bounce_rate.0 <= 1.0) =>
                {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::BounceRate,
                            format!("{path}.bounce_guard.max_bounce_rate"),
                            format!(
                                "a bounce rate of {} is not between 0 and 1",
                                guard.max_bounce_rate.0
                            ),
                        )
                        .with_help("write a fraction such as 0.05 or a percentage such as \"5%\""),
                    );
                    None
                }
                Some(guard) => Some(BounceGuard {
                    max_bounce_rate: guard.max_bounce_rate.0,
                    min_sent: guard.min_sent,
                }),
                None => None,
            };
            for (position, segment) in value.exclude_segments.iter().enumerate() {
                if !segment_ids.contains(&segment.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.exclude_segments[{position}]"),
                        "segment",
                        segment,
                        segment_ids.iter().copied(),
                    );
                }
            }
            if ok {
                channels.push(Channel {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    kind: value.kind,
                    daily_cap: value.daily_cap,
                    free_per_day: value.free_per_day,
                    cost_per_1000: value.cost_per_1000,
                    per_account_daily_cap: value.per_account_daily_cap,
                    accounts: value.accounts.clone(),
                    fatigue,
                    fatigue_scope: value.fatigue_scope,
                    quiet_hours,
                    exclude_segments: value.exclude_segments.clone(),
                    bounce_guard,
                });
            }
        }
        channels
    }

    // ----- templates ------------------------------------------------------------------------

    fn templates(&mut self, channels: &[Channel], offers: &Offers) -> Vec<Template> {
        let raw = self.raw;
        let channel_ids: Vec<&str> = raw.channels.iter().map(|e| e.id.as_str()).collect();
        let stage_ids: Vec<&str> = raw.stages.iter().map(|e| e.id.as_str()).collect();
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let coupon_ids: Vec<&str> = raw.coupons.iter().map(|e| e.id.as_str()).collect();
        let _ = offers;
        let mut templates = Vec::new();
        for entry in &raw.templates {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if !channel_ids.contains(&value.channel.as_str()) {
                ok = false;
                self.unknown_reference(
                    &format!("{path}.channel"),
                    "channel",
                    &value.channel,
                    channel_ids.iter().copied(),
                );
            }
            let phase = match &value.phase {
                Some(key) => match PhaseKind::from_key(key) {
                    Some(kind) => Some(kind),
                    None => {
                        ok = false;
                        self.unknown_reference(
                            &format!("{path}.phase"),
                            "phase",
                            key,
                            PhaseKind::ALL.map(PhaseKind::key),
                        );
                        None
                    }
                },
                None => None,
            };
            if let Some(stage) = &value.stage {
                if !stage_ids.contains(&stage.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.stage"),
                        "stage",
                        stage,
                        stage_ids.iter().copied(),
                    );
                } else if phase.is_some_and(|kind| kind != PhaseKind::Burst) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::StageOutsidePhase,
                        format!("{path}.stage"),
                        format!("stage `{stage}` is part of the burst phase, but the template is for {}", value.phase.as_deref().unwrap_or("")),
                    ));
                }
            }
            for (position, segment) in value.segments.iter().enumerate() {
                if !segment_ids.contains(&segment.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.segments[{position}]"),
                        "segment",
                        segment,
                        segment_ids.iter().copied(),
                    );
                }
            }
            if let Some(coupon) = &value.coupon {
                if !coupon_ids.contains(&coupon.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.coupon"),
                        "coupon",
                        coupon,
                        coupon_ids.iter().copied(),
                    );
                }
            }
            if value.version == 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::TemplateVersion,
                    format!("{path}.version"),
                    "template versions start at 1",
                ));
            }
            if value.body.trim().is_empty() {
                ok = false;
                self.push(Diagnostic::new(
                    Code::EmptyTemplate,
                    format!("{path}.body"),
                    "the body is empty",
                ));
            }
            let kind = channels
                .iter()
                .find(|c| c.id == value.channel)
                .map(|c| c.kind);
            if kind == Some(ChannelKind::Mail)
                && value.subject.as_deref().is_none_or(|s| s.trim().is_empty())
            {
                ok = false;
                self.push_at_key(
                    Diagnostic::new(
                        Code::MissingSubject,
                        path,
                        "a mail template needs a subject",
                    )
                    .with_help("add subject = \"...\""),
                );
            }
            let mut used = BTreeSet::new();
            for (key, source) in [
                ("subject", value.subject.as_deref()),
                ("body", Some(value.body.as_str())),
            ] {
                let Some(source) = source else { continue };
                match template::variables(source) {
                    Ok(variables) => used.extend(variables.into_iter().map(|v| (key, v))),
                    Err(error) => {
                        ok = false;
                        let line = error
                            .line
                            .map(|line| format!(" (line {line} of the {key})"))
                            .unwrap_or_default();
                        self.push(Diagnostic::new(
                            Code::TemplateSyntax,
                            format!("{path}.{key}"),
                            format!("the {key} does not parse: {}{line}", error.message),
                        ));
                    }
                }
            }
            let mut uses_unsubscribe = false;
            for (key, variable) in &used {
                if variable == "unsubscribe_url" {
                    uses_unsubscribe = true;
                }
                if !KNOWN_VARIABLES.contains(&variable.as_str()) {
                    ok = false;
                    let mut diagnostic = Diagnostic::new(
                        Code::UnknownVariable,
                        format!("{path}.{key}"),
                        format!("`{variable}` is not a template variable"),
                    );
                    diagnostic = match suggest(variable, KNOWN_VARIABLES.iter().copied()) {
                        Some(candidate) => {
                            diagnostic.with_help(format!("did you mean `{candidate}`?"))
                        }
                        None => diagnostic.with_help(
                            "the variables are listed in docs/plan-format.md, under [templates]",
                        ),
                    };
                    self.push(diagnostic);
                } else if variable.starts_with("coupon.") && value.coupon.is_none() {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::CouponVariable,
                            format!("{path}.{key}"),
                            format!("`{variable}` is used but the template names no coupon"),
                        )
                        .with_help("add coupon = \"ID\" naming one of [offers.coupons]"),
                    );
                }
            }
            if kind == Some(ChannelKind::Mail) && !uses_unsubscribe && ok {
                self.push(
                    Diagnostic::new(
                        Code::NoUnsubscribeLink,
                        format!("{path}.body"),
                        "a marketing mail without {{ unsubscribe_url }}: buyers who cannot unsubscribe report spam",
                    )
                    .with_help("add a line such as: Unsubscribe: {{ unsubscribe_url }}"),
                );
            }
            if ok {
                templates.push(Template {
                    id: entry.id.clone(),
                    channel: value.channel.clone(),
                    purpose: value.purpose,
                    phase: phase.or(value.stage.as_ref().map(|_| PhaseKind::Burst)),
                    stage: value.stage.clone(),
                    segments: value.segments.clone(),
                    tiers: value.tiers.clone(),
                    coupon: value.coupon.clone(),
                    version: value.version,
                    subject: value.subject.clone(),
                    body: value.body.clone(),
                    description: value.description.clone(),
                });
            }
        }
        templates
    }

    // ----- reach-outs and follow-ups --------------------------------------------------------

    fn follow_ups(&mut self, templates: &[Template]) -> Vec<FollowUpRule> {
        let raw = self.raw;
        let channel_ids: Vec<&str> = raw.channels.iter().map(|e| e.id.as_str()).collect();
        let template_ids: Vec<&str> = raw.templates.iter().map(|e| e.id.as_str()).collect();
        let mut rules = Vec::new();
        for entry in &raw.follow_ups {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.after.seconds() == 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::FollowUpLimits,
                    format!("{path}.after"),
                    "a follow-up needs a delay above zero: how long to wait for an answer",
                ));
            }
            if value.max_attempts == 0 {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::FollowUpLimits,
                        format!("{path}.max_attempts"),
                        "a follow-up rule with 0 attempts never follows up",
                    )
                    .with_help("remove the rule, or allow at least 1 attempt"),
                );
            }
            if let Some(channel) = &value.channel {
                if !channel_ids.contains(&channel.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.channel"),
                        "channel",
                        channel,
                        channel_ids.iter().copied(),
                    );
                }
            }
            let template = match value.template.as_deref() {
                None | Some("auto") => TemplateChoice::Auto,
                Some(id) => {
                    if !template_ids.contains(&id) {
                        ok = false;
                        self.unknown_reference(
                            &format!("{path}.template"),
                            "template",
                            id,
                            template_ids.iter().copied(),
                        );
                    } else if let Some(found) = templates.iter().find(|t| t.id == id) {
                        if found.purpose != TemplatePurpose::FollowUp {
                            ok = false;
                            self.push(
                                Diagnostic::new(
                                    Code::TemplatePurposeMismatch,
                                    format!("{path}.template"),
                                    format!("template `{id}` is written for first messages (purpose = \"{}\")", found.purpose.as_str()),
                                )
                                .with_help("give the template purpose = \"follow_up\", or choose a follow-up template"),
                            );
                        }
                        if let Some(channel) = &value.channel {
                            if &found.channel != channel {
                                ok = false;
                                self.push(Diagnostic::new(
                                    Code::TemplateChannel,
                                    format!("{path}.template"),
                                    format!("template `{id}` is for channel `{}`, the follow-up goes out on `{channel}`", found.channel),
                                ));
                            }
                        }
                    }
                    TemplateChoice::Fixed(id.to_string())
                }
            };
            let mut stop_on = value.stop_on.clone();
            if !stop_on.contains(&StopOn::Unsubscribe) {
                stop_on.push(StopOn::Unsubscribe);
            }
            if ok {
                rules.push(FollowUpRule {
                    id: entry.id.clone(),
                    description: value.description.clone(),
                    if_no: value.if_no,
                    after: value.after,
                    max_attempts: value.max_attempts,
                    template,
                    channel: value.channel.clone(),
                    stop_on,
                });
            }
        }
        rules
    }

    #[allow(clippy::too_many_arguments)] // Reach-outs tie together every other section.
    fn reach_outs(
        &mut self,
        phases: &[Phase],
        stages: &[Stage],
        channels: &[Channel],
        templates: &[Template],
        follow_ups: &[FollowUpRule],
        campaign: Option<Window>,
    ) -> Vec<ReachOut> {
        let raw = self.raw;
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let channel_ids: Vec<&str> = raw.channels.iter().map(|e| e.id.as_str()).collect();
        let template_ids: Vec<&str> = raw.templates.iter().map(|e| e.id.as_str()).collect();
        let follow_up_ids: Vec<&str> = raw.follow_ups.iter().map(|e| e.id.as_str()).collect();
        // Which template each message gets depends on the timeline and the templates: when
        // either has errors already, coverage is not checked (it would only repeat them).
        let coverage =
            !self.has_errors_under(&["campaign", "phases", "stages", "templates", "follow_ups"]);
        let mut reach_outs = Vec::new();
        for entry in &raw.reach_outs {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if !segment_ids.contains(&value.segment.as_str()) {
                ok = false;
                self.unknown_reference(
                    &format!("{path}.segment"),
                    "segment",
                    &value.segment,
                    segment_ids.iter().copied(),
                );
            }
            let channel = channels.iter().find(|c| c.id == value.channel);
            if !channel_ids.contains(&value.channel.as_str()) {
                ok = false;
                self.unknown_reference(
                    &format!("{path}.channel"),
                    "channel",
                    &value.channel,
                    channel_ids.iter().copied(),
                );
            }
            if let Some(follow_up) = &value.follow_up {
                if !follow_up_ids.contains(&follow_up.as_str()) {
                    ok = false;
                    self.unknown_reference(
                        &format!("{path}.follow_up"),
                        "follow-up rule",
                        follow_up,
                        follow_up_ids.iter().copied(),
                    );
                }
            }
            let mut accounts = value.accounts.clone();
            if let Some(channel) = channel {
                for (position, account) in value.accounts.iter().enumerate() {
                    if !channel.accounts.contains(account) {
                        ok = false;
                        let mut diagnostic = Diagnostic::new(
                            Code::AccountNotOnChannel,
                            format!("{path}.accounts[{position}]"),
                            format!(
                                "channel `{}` has no sending account `{account}`",
                                channel.id
                            ),
                        );
                        diagnostic =
                            match suggest(account, channel.accounts.iter().map(String::as_str)) {
                                Some(candidate) => {
                                    diagnostic.with_help(format!("did you mean `{candidate}`?"))
                                }
                                None => diagnostic.with_help(format!(
                                    "add it to [channels.{}] accounts",
                                    channel.id
                                )),
                            };
                        self.push(diagnostic);
                    }
                }
                if accounts.is_empty() {
                    accounts = channel.accounts.clone();
                }
            }
            let window =
                self.named_or_between(&value.window, &format!("{path}.window"), phases, stages);
            if let (Some(window), Some(campaign), Some(zone)) = (window, campaign, self.time_zone) {
                if window.start < campaign.start || window.end > campaign.end {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::WindowOutsideCampaign,
                        format!("{path}.window"),
                        format!(
                            "the window {} to {} is outside the campaign ({} to {})",
                            format_instant(zone, window.start),
                            format_instant(zone, window.end),
                            format_instant(zone, campaign.start),
                            format_instant(zone, campaign.end)
                        ),
                    ));
                }
            }
            let template = match value.template.as_deref() {
                None | Some("auto") => TemplateChoice::Auto,
                Some(id) => {
                    if !template_ids.contains(&id) {
                        ok = false;
                        let candidates = template_ids.iter().copied().chain(["auto"]);
                        self.unknown_reference(
                            &format!("{path}.template"),
                            "template",
                            id,
                            candidates,
                        );
                    }
                    TemplateChoice::Fixed(id.to_string())
                }
            };
            let (Some(window), true) = (window, ok) else {
                continue;
            };
            let Some(channel) = channel else { continue };
            let reach_out = ReachOut {
                id: entry.id.clone(),
                name: value.name.clone(),
                description: value.description.clone(),
                segment: value.segment.clone(),
                channel: value.channel.clone(),
                template,
                window,
                accounts,
                follow_up: value.follow_up.clone(),
            };
            if !coverage {
                reach_outs.push(reach_out);
                continue;
            }
            // The template every message of this reach-out will use must exist and be unique.
            self.cover(
                &format!("{path}.template"),
                &reach_out.template,
                channel,
                TemplatePurpose::ReachOut,
                &value.segment,
                window,
                phases,
                stages,
                templates,
                "the reach-out",
            );
            if let Some(rule) = value
                .follow_up
                .as_ref()
                .and_then(|id| follow_ups.iter().find(|r| &r.id == id))
            {
                let rule_channel = rule
                    .channel
                    .as_ref()
                    .and_then(|id| channels.iter().find(|c| &c.id == id))
                    .unwrap_or(channel);
                let reach =
                    PlanDuration::from_seconds(rule.after.seconds() * i64::from(rule.max_attempts));
                let end = window.end + reach.to_chrono();
                let follow_window = Window {
                    start: window.start + rule.after.to_chrono(),
                    end: campaign.map_or(end, |c| end.min(c.end)),
                };
                if follow_window.start < follow_window.end {
                    self.cover(
                        &format!("{path}.follow_up"),
                        &rule.template,
                        rule_channel,
                        TemplatePurpose::FollowUp,
                        &value.segment,
                        follow_window,
                        phases,
                        stages,
                        templates,
                        &format!("follow-up `{}`", rule.id),
                    );
                }
            }
            reach_outs.push(reach_out);
        }
        reach_outs
    }

    /// Checks that every message sent in `window` finds exactly one template: for each phase or
    /// stage the window touches and each class of customer tier the channel's templates tell
    /// apart.
    #[allow(clippy::too_many_arguments)] // The query's dimensions, each needed.
    fn cover(
        &mut self,
        path: &str,
        choice: &TemplateChoice,
        channel: &Channel,
        purpose: TemplatePurpose,
        segment: &str,
        window: Window,
        phases: &[Phase],
        stages: &[Stage],
        templates: &[Template],
        what: &str,
    ) {
        let mut contexts: Vec<(PhaseKind, Option<&str>)> = Vec::new();
        for phase in phases.iter().filter(|p| p.window.overlaps(&window)) {
            if phase.kind == PhaseKind::Burst {
                for stage in stages.iter().filter(|s| s.window.overlaps(&window)) {
                    contexts.push((PhaseKind::Burst, Some(stage.id.as_str())));
                }
            } else {
                contexts.push((phase.kind, None));
            }
        }
        let where_ = |phase: PhaseKind, stage: Option<&str>| match stage {
            Some(stage) => format!("burst stage `{stage}`"),
            None => format!("the {} phase", phase.label()),
        };
        match choice {
            TemplateChoice::Fixed(id) => {
                let Some(template) = templates.iter().find(|t| &t.id == id) else {
                    return;
                };
                if template.channel != channel.id {
                    self.push(Diagnostic::new(
                        Code::TemplateChannel,
                        path,
                        format!(
                            "template `{id}` is written for channel `{}`, but {what} sends on `{}`",
                            template.channel, channel.id
                        ),
                    ));
                    return;
                }
                if template.purpose != purpose {
                    self.push(Diagnostic::new(
                        Code::TemplatePurposeMismatch,
                        path,
                        format!(
                            "template `{id}` has purpose \"{}\" but {what} needs \"{}\"",
                            template.purpose.as_str(),
                            purpose.as_str()
                        ),
                    ));
                    return;
                }
                let outside: Vec<String> = contexts
                    .iter()
                    .filter(|(phase, stage)| {
                        template.phase.is_some_and(|p| p != *phase)
                            || template.stage.as_deref().is_some_and(|s| Some(s) != *stage)
                    })
                    .map(|(phase, stage)| where_(*phase, *stage))
                    .collect();
                if !template.segments.is_empty() && !template.segments.iter().any(|s| s == segment)
                {
                    self.push(Diagnostic::new(
                        Code::TemplateOutOfWindow,
                        path,
                        format!(
                            "template `{id}` is meant for segments {}, but {what} goes to segment `{segment}`",
                            template.segments.join(", ")
                        ),
                    ));
                }
                if !outside.is_empty() {
                    self.push(Diagnostic::new(
                        Code::TemplateOutOfWindow,
                        path,
                        format!("template `{id}` is meant for another phase or stage, but {what} also sends in {}", outside.join(", ")),
                    ));
                }
            }
            TemplateChoice::Auto => {
                let mut tiers: Vec<Option<&str>> = vec![None];
                for template in templates
                    .iter()
                    .filter(|t| t.channel == channel.id && t.purpose == purpose)
                {
                    for tier in &template.tiers {
                        if !tiers.contains(&Some(tier.as_str())) {
                            tiers.push(Some(tier.as_str()));
                        }
                    }
                }
                let mut missing: Vec<String> = Vec::new();
                let mut ambiguous: Vec<String> = Vec::new();
                let tier_words = |tier: Option<&str>| match tier {
                    Some(tier) => format!(" for tier `{tier}`"),
                    None => " for customers of other tiers".to_string(),
                };
                for (phase, stage) in &contexts {
                    let place = where_(*phase, *stage);
                    let mut missing_tiers = Vec::new();
                    let mut ambiguous_tiers: Vec<(Option<&str>, Vec<String>)> = Vec::new();
                    for tier in &tiers {
                        let query = Query {
                            channel: &channel.id,
                            purpose,
                            phase: *phase,
                            stage: *stage,
                            segment,
                            tier: *tier,
                        };
                        match template::select(templates, &query) {
                            Selection::One(_) => {}
                            Selection::None => missing_tiers.push(*tier),
                            Selection::Ambiguous(candidates) => ambiguous_tiers.push((
                                *tier,
                                candidates.iter().map(|t| format!("`{}`", t.id)).collect(),
                            )),
                        }
                    }
                    // Name the tiers only when they differ in the outcome.
                    if missing_tiers.len() == tiers.len() {
                        missing.push(place.clone());
                    } else {
                        missing.extend(
                            missing_tiers
                                .iter()
                                .map(|tier| format!("{place}{}", tier_words(*tier))),
                        );
                    }
                    let same_everywhere = ambiguous_tiers.len() == tiers.len()
                        && ambiguous_tiers
                            .windows(2)
                            .all(|pair| pair[0].1 == pair[1].1);
                    if same_everywhere {
                        if let Some((_, ids)) = ambiguous_tiers.first() {
                            ambiguous.push(format!("{place}: {}", ids.join(" or ")));
                        }
                    } else {
                        for (tier, ids) in ambiguous_tiers {
                            ambiguous.push(format!(
                                "{place}{}: {}",
                                tier_words(tier),
                                ids.join(" or ")
                            ));
                        }
                    }
                }
                if !missing.is_empty() {
                    self.push(
                        Diagnostic::new(
                            Code::NoTemplate,
                            path,
                            format!(
                                "no {} template for {what} to segment `{segment}` on channel `{}` in {}",
                                purpose.as_str().replace('_', "-"),
                                channel.id,
                                missing.join(", ")
                            ),
                        )
                        .with_help(format!(
                            "add a template with channel = \"{}\"{} covering it, or name one with template = \"ID\"",
                            channel.id,
                            if purpose == TemplatePurpose::FollowUp { " and purpose = \"follow_up\"" } else { "" }
                        )),
                    );
                }
                for problem in ambiguous {
                    self.push(
                        Diagnostic::new(
                            Code::AmbiguousTemplate,
                            path,
                            format!("two templates fit {what} equally well in {problem}"),
                        )
                        .with_help("make one more specific (stage, segments, tiers) or add one that is more specific than both"),
                    );
                }
            }
        }
    }

    // ----- offers ---------------------------------------------------------------------------

    fn offers(&mut self, phases: &[Phase], stages: &[Stage]) -> Offers {
        let raw = self.raw;
        let mut offers = Offers::default();
        for entry in &raw.coupons {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.value.minor() <= 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::CouponValue,
                    format!("{path}.value"),
                    "a coupon must be worth more than zero",
                ));
            } else if let Some(min_spend) = value.min_spend {
                if value.value >= min_spend {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::CouponValue,
                        format!("{path}.value"),
                        format!("a coupon worth {} on a minimum spend of {min_spend} pays for the whole order", value.value),
                    ));
                }
            }
            if value.issue == CouponIssue::SpendThreshold && value.min_spend.is_none() {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::CouponThreshold,
                        format!("{path}.issue"),
                        "a spend-threshold coupon needs `min_spend`",
                    )
                    .with_help("add min_spend = 500.00 (or your threshold)"),
                );
            }
            if value.per_customer == 0 || value.quantity == Some(0) {
                ok = false;
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    path,
                    "a coupon with a quantity of 0 can never be used",
                ));
            }
            let window = match &value.window {
                Some(window) => {
                    let resolved =
                        self.named_or_between(window, &format!("{path}.window"), phases, stages);
                    ok &= resolved.is_some();
                    resolved
                }
                None => None,
            };
            if ok {
                offers.coupons.push(Coupon {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    value: value.value,
                    min_spend: value.min_spend,
                    issue: value.issue,
                    quantity: value.quantity,
                    per_customer: value.per_customer,
                    code: value.code.clone(),
                    window,
                });
            }
        }
        let average = raw.campaign.as_ref().and_then(|c| c.average_order_value);
        for entry in &raw.tiered {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.tiers.is_empty() {
                ok = false;
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    format!("{path}.tiers"),
                    "a tiered offer needs at least one tier",
                ));
            }
            if value.tiers.len() > MAX_TIERS {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::TooManyTiers,
                        format!("{path}.tiers[{MAX_TIERS}]"),
                        format!(
                            "{} tiers; the platform's rule is at most {MAX_TIERS}",
                            value.tiers.len()
                        ),
                    )
                    .with_help("fewer, clearly distinct tiers convert better"),
                );
            }
            for (position, tier) in value.tiers.iter().enumerate() {
                let tier_path = format!("{path}.tiers[{position}]");
                if tier.off.minor() <= 0 || tier.off >= tier.spend {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::TiersNotIncreasing,
                        tier_path.clone(),
                        format!("spend {} get {} off: the reward must be above zero and below the spend", tier.spend, tier.off),
                    ));
                }
                if let Some(previous) = position.checked_sub(1).map(|p| &value.tiers[p]) {
                    if tier.spend <= previous.spend || tier.off <= previous.off {
                        ok = false;
                        self.push(Diagnostic::new(
                            Code::TiersNotIncreasing,
                            tier_path,
                            format!(
                                "tier {} (spend {}, {} off) does not go beyond tier {} (spend {}, {} off); each tier must ask more and give more",
                                position + 1,
                                tier.spend,
                                tier.off,
                                position,
                                previous.spend,
                                previous.off
                            ),
                        ));
                    }
                }
            }
            if let (Some(average), Some(first)) = (average, value.tiers.first()) {
                // 10% and 30% above the average, in whole cents.
                let low = (average.minor() * 110 + 99) / 100;
                let high = average.minor() * 130 / 100;
                let threshold = first.spend.minor();
                if threshold < low || threshold > high {
                    self.push(
                        Diagnostic::new(
                            Code::TierThreshold,
                            format!("{path}.tiers[0].spend"),
                            format!(
                                "the first threshold {} is {:+.0}% against the average order value {average}; 10% to 30% above it works best",
                                first.spend,
                                (threshold as f64 / average.minor() as f64 - 1.0) * 100.0
                            ),
                        )
                        .with_help(format!(
                            "a first tier between {} and {}",
                            Money::from_minor(low),
                            Money::from_minor(high)
                        )),
                    );
                }
            }
            let window = match &value.window {
                Some(window) => {
                    let resolved =
                        self.named_or_between(window, &format!("{path}.window"), phases, stages);
                    ok &= resolved.is_some();
                    resolved
                }
                None => None,
            };
            if ok {
                offers.tiered.push(TieredOffer {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    tiers: value.tiers.iter().map(|t| (t.spend, t.off)).collect(),
                    window,
                });
            }
        }
        for entry in &raw.discounts {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            let one_percent = (value.list_price.minor() + 99) / 100;
            if value.price >= value.list_price {
                ok = false;
                self.push(Diagnostic::new(
                    Code::DiscountNotLower,
                    format!("{path}.price"),
                    format!(
                        "the discounted price {} is not below the list price {}",
                        value.price, value.list_price
                    ),
                ));
            } else if value.price.minor() < 100 || value.price.minor() < one_percent {
                ok = false;
                self.push(Diagnostic::new(
                    Code::DiscountTooDeep,
                    format!("{path}.price"),
                    format!(
                        "the discounted price {} must be at least 1% of the list price ({}) and at least 1.00",
                        value.price,
                        Money::from_minor(one_percent)
                    ),
                ));
            }
            let window =
                self.named_or_between(&value.window, &format!("{path}.window"), phases, stages);
            let listed_from = match &value.listed_from {
                Some(spec) => self.resolve(
                    spec,
                    DateMeaning::StartOfDay,
                    &format!("{path}.listed_from"),
                ),
                None => None,
            };
            let listed_until = match &value.listed_until {
                Some(spec) => {
                    self.resolve(spec, DateMeaning::EndOfDay, &format!("{path}.listed_until"))
                }
                None => None,
            };
            if let (Some(window), Some(zone)) = (window, self.time_zone) {
                if let Some(from) = listed_from.filter(|from| *from > window.start) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::NotListed,
                        format!("{path}.listed_from"),
                        format!(
                            "the item is listed from {} but the discount starts at {}; it must be listed before the discount starts",
                            format_instant(zone, from),
                            format_instant(zone, window.start)
                        ),
                    ));
                }
                if let Some(until) = listed_until.filter(|until| *until < window.end) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::NotListed,
                        format!("{path}.listed_until"),
                        format!(
                            "the item is delisted at {} but the discount runs to {}; it must stay listed until the discount ends",
                            format_instant(zone, until),
                            format_instant(zone, window.end)
                        ),
                    ));
                }
            }
            if let (true, Some(window)) = (ok, window) {
                offers.discounts.push(Discount {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    item: value.item.clone(),
                    list_price: value.list_price,
                    price: value.price,
                    window,
                });
            }
        }
        if raw.bundles.len() > MAX_BUNDLES {
            if let Some(entry) = raw.bundles.get(MAX_BUNDLES) {
                self.push_at_key(Diagnostic::new(
                    Code::TooManyBundles,
                    entry.path.clone(),
                    format!(
                        "{} bundles; a shop may have at most {MAX_BUNDLES}",
                        raw.bundles.len()
                    ),
                ));
            }
        }
        for entry in &raw.bundles {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.items.len() < 2 || value.items.len() > MAX_BUNDLE_ITEMS {
                ok = false;
                self.push(Diagnostic::new(
                    Code::BundleSize,
                    format!("{path}.items"),
                    format!(
                        "a bundle has 2 to {MAX_BUNDLE_ITEMS} items; this one has {}",
                        value.items.len()
                    ),
                ));
            }
            let sum: i64 = value.items.iter().map(|item| item.price.minor()).sum();
            if value.price.minor() >= sum {
                ok = false;
                self.push(Diagnostic::new(
                    Code::BundleNotCheaper,
                    format!("{path}.price"),
                    format!("the bundle costs {} but its items cost {} bought alone; a bundle must be cheaper", value.price, Money::from_minor(sum)),
                ));
            }
            let window = match &value.window {
                Some(window) => {
                    let resolved =
                        self.named_or_between(window, &format!("{path}.window"), phases, stages);
                    ok &= resolved.is_some();
                    resolved
                }
                None => None,
            };
            if ok {
                offers.bundles.push(Bundle {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    items: value
                        .items
                        .iter()
                        .map(|item| (item.sku.clone(), item.price))
                        .collect(),
                    price: value.price,
                    window,
                });
            }
        }
        offers
    }
}

fn previous_label(phase: &Phase) -> String {
    format!("the {} phase", phase.kind.label())
}

fn default_phase_name(kind: PhaseKind) -> &'static str {
    match kind {
        PhaseKind::Prep => "Prep",
        PhaseKind::WarmUp => "Warm-up",
        PhaseKind::Burst => "Burst",
        PhaseKind::Review => "Review",
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
