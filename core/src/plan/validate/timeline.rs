//! The timeline: phases in order without overlaps or silent gaps, and burst stages that cover
//! the burst phase.

use super::{describe_duration, format_instant, Validator};
use crate::plan::diagnostic::{Code, Diagnostic};
use crate::plan::model::*;
use crate::plan::values::Edge;

impl Validator<'_> {
    pub(super) fn phases(&mut self) -> Vec<Phase> {
        let raw = self.raw;
        let mut phases = Vec::new();
        for kind in PhaseKind::ALL {
            let Some(entry) = raw.phases.iter().find(|e| e.id == kind.key()) else {
                if kind != PhaseKind::Review {
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
    pub(super) fn adjacent(
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

    pub(super) fn stages(&mut self, phases: &[Phase]) -> Vec<Stage> {
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
