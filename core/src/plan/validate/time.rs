//! Instants: dates, local times and anchored expressions resolved in the campaign's zone,
//! with daylight-saving gaps and overlaps reported; windows named or written out.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::{format_instant, DateMeaning, Validator};
use crate::plan::diagnostic::{Code, Diagnostic};
use crate::plan::model::*;
use crate::plan::raw::*;
use crate::plan::values::{Edge, TimeSpec};

/// How many boundaries may be defined in terms of each other in a row: far more than a plan
/// needs, far fewer than could exhaust the stack.
const MAX_ANCHOR_DEPTH: usize = 64;

impl Validator<'_> {
    /// The first instant of a local day. Where a zone skips midnight (daylight saving starting
    /// at 00:00), the day starts at the first local time that exists.
    pub(super) fn day_start(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
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

    pub(super) fn local_instant(
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
    pub(super) fn resolve(
        &mut self,
        spec: &TimeSpec,
        meaning: DateMeaning,
        path: &str,
    ) -> Option<DateTime<Utc>> {
        let zone = self.time_zone?;
        match spec {
            TimeSpec::Date(date) => {
                let day = match meaning {
                    DateMeaning::StartOfDay => Some(*date),
                    DateMeaning::EndOfDay => date.succ_opt(),
                };
                let start = day.and_then(|day| Self::day_start(zone, day));
                if start.is_none() && self.reported.insert(format!("{path}#day")) {
                    let message = match (meaning, day) {
                        (DateMeaning::EndOfDay, Some(next)) => format!(
                            "{date} ends when {next} starts, and {zone} skipped {next} entirely"
                        ),
                        (_, Some(day)) => format!("{zone} skipped {day} entirely"),
                        (_, None) => format!("{date} is at the end of the calendar"),
                    };
                    self.push(
                        Diagnostic::new(Code::NonexistentLocalTime, path, message)
                            .with_help("choose a date the zone has"),
                    );
                }
                start
            }
            TimeSpec::Local(local) => self.local_instant(zone, *local, path),
            TimeSpec::Fixed(fixed) => Some(fixed.with_timezone(&Utc)),
            TimeSpec::Anchored {
                anchor,
                edge,
                offset_seconds,
            } => {
                let boundary = self.boundary(anchor, *edge, path)?;
                let moved = boundary.checked_add_signed(Duration::seconds(*offset_seconds));
                if moved.is_none() && self.reported.insert(format!("{path}#range")) {
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        path,
                        "this instant falls outside the calendar battleplan handles",
                    ));
                }
                moved
            }
        }
    }

    /// A phase or stage boundary, resolved once; reports unknown names and cycles.
    pub(super) fn boundary(
        &mut self,
        name: &str,
        edge: Edge,
        referenced_from: &str,
    ) -> Option<DateTime<Utc>> {
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
        } else if let Some(entry) = self.stage_index.get(name).and_then(|i| raw.stages.get(*i)) {
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
        if self.resolving.len() >= MAX_ANCHOR_DEPTH {
            if self.reported.insert(format!("{path}#depth")) {
                self.push(
                    Diagnostic::new(
                        Code::AnchorCycle,
                        path.clone(),
                        format!("`{name}.{edge}` ends a chain of more than {MAX_ANCHOR_DEPTH} boundaries anchored on each other"),
                    )
                    .with_help("anchor boundaries on dates, or on a boundary that is anchored on a date"),
                );
            }
            return None;
        }
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
    pub(super) fn missing_optional_phase(&mut self, kind: PhaseKind, path: &str) {
        let declared = self.raw.phases.iter().any(|e| e.id == kind.key());
        if kind == PhaseKind::Review && !declared && self.reported.insert(format!("{path}#review"))
        {
            self.push(
                Diagnostic::new(Code::UnknownReference, path, "the plan has no review phase")
                    .with_help("declare [phases.review] with start and end, or use another phase"),
            );
        }
    }

    pub(super) fn window_of(
        &mut self,
        start: &TimeSpec,
        end: &TimeSpec,
        path: &str,
    ) -> Option<Window> {
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
    pub(super) fn named_or_between(
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
}
