//! The funnel and the targets for people (plain-text tables) and for programs (JSON).

use chrono_tz::Tz;
use serde_json::{json, Value};

use super::{stage_key, value_kind, FunnelReport, FunnelStep, TargetLine};
use crate::campaign::timeline::local;
use crate::plan::model::{MetricKind, TargetValue};
use crate::plan::values::Money;

/// The funnel per phase, then overall: stage, distinct customers, conversion from the stage
/// above as a percentage with one decimal (`-` for potential and after an empty stage).
pub fn render_funnel(report: &FunnelReport, zone: Tz) -> String {
    let mut out = format!(
        "Funnel of {} as of {}\n",
        report.campaign,
        local(zone, report.as_of)
    );
    out.push_str(&render_funnel_table(report));
    out
}

/// The table of [`render_funnel`], without its first line (which needs the campaign's zone).
pub fn render_funnel_table(report: &FunnelReport) -> String {
    let mut rows = vec![row(["", "stage", "customers", "conversion"])];
    let blocks = report
        .phases
        .iter()
        .map(|funnel| (funnel.phase.label(), &funnel.steps))
        .chain(std::iter::once(("overall", &report.overall)));
    for (name, steps) in blocks {
        for (index, step) in steps.iter().enumerate() {
            rows.push(vec![
                if index == 0 { name } else { "" }.to_string(),
                stage_key(step.stage).to_string(),
                grouped(step.customers),
                step.conversion.map_or_else(|| "-".to_string(), percent),
            ]);
        }
    }
    table(&rows, &[false, false, true, true])
}

/// The report as JSON: counts, and conversions as fractions (`null` where there is none); the
/// instant with the campaign's offset.
pub fn funnel_json(report: &FunnelReport, zone: Tz) -> Value {
    json!({
        "campaign": report.campaign,
        "as_of": crate::campaign::timeline::local_rfc3339(zone, report.as_of),
        "phases": report.phases.iter().map(|funnel| json!({
            "phase": funnel.phase.key(),
            "stages": steps_json(&funnel.steps),
        })).collect::<Vec<_>>(),
        "overall": steps_json(&report.overall),
    })
}

fn steps_json(steps: &[FunnelStep]) -> Value {
    steps
        .iter()
        .map(|step| {
            json!({
                "stage": stage_key(step.stage),
                "customers": step.customers,
                "conversion": step.conversion,
            })
        })
        .collect()
}

/// Per stage, in the order the lines come: metric, target, actual (or `not measured`) and the
/// actual as a percentage of the target.
pub fn render_targets(lines: &[TargetLine], currency: &str) -> String {
    let mut stages: Vec<&str> = Vec::new();
    for line in lines {
        if !stages.contains(&line.stage.as_str()) {
            stages.push(&line.stage);
        }
    }
    let mut rows = vec![row([
        "stage",
        "metric",
        "target",
        "actual",
        "of target",
        "from",
    ])];
    for stage in stages {
        let mut first = true;
        for line in lines.iter().filter(|line| line.stage == stage) {
            rows.push(vec![
                if first { stage } else { "" }.to_string(),
                line.metric.key().to_string(),
                value_text(line.target, currency),
                line.actual.map_or_else(
                    || "not measured".to_string(),
                    |actual| value_text(actual, currency),
                ),
                line.ratio.map_or_else(|| "-".to_string(), percent),
                line.source
                    .map_or("", |source| match source {
                        super::Source::Shop => "shop's numbers",
                        super::Source::Campaign => "campaign's reaches",
                    })
                    .to_string(),
            ]);
            first = false;
        }
    }
    table(&rows, &[false, false, true, true, true, false])
}

/// The lines as JSON: money as exact text (`"300000.00"`, as the plan's money serialises), counts
/// as integers, rates and ratios as fractions; `actual` and `ratio` are `null` when not measured.
pub fn targets_json(lines: &[TargetLine]) -> Value {
    lines
        .iter()
        .map(|line| {
            json!({
                "stage": line.stage,
                "metric": line.metric.key(),
                "kind": kind_key(value_kind(line.target)),
                "target": value_json(line.target),
                "measured": line.actual.is_some(),
                "actual": line.actual.map(value_json),
                "source": line.source.map(|source| source.key()),
                "ratio": line.ratio,
            })
        })
        .collect()
}

fn kind_key(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Money => "money",
        MetricKind::Count => "count",
        MetricKind::Rate => "rate",
    }
}

fn value_json(value: TargetValue) -> Value {
    match value {
        TargetValue::Money(money) => json!(money.to_string()),
        TargetValue::Count(count) => json!(count),
        TargetValue::Rate(rate) => json!(rate),
    }
}

fn value_text(value: TargetValue, currency: &str) -> String {
    match value {
        TargetValue::Money(money) => money_text(money, currency),
        TargetValue::Count(count) => grouped(count),
        TargetValue::Rate(rate) => percent(rate),
    }
}

/// `1,234,567.80 CNY`.
pub(super) fn money_text(money: Money, currency: &str) -> String {
    let minor = money.minor();
    let sign = if minor < 0 { "-" } else { "" };
    let absolute = minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {currency}",
        grouped(absolute / 100),
        absolute % 100
    )
}

pub(super) use crate::plan::values::grouped;

/// A fraction as a percentage with one decimal: `0.035` is `3.5%`.
fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|cell| cell.to_string()).collect()
}

/// Columns padded to their widest cell, two spaces apart; `right` says which align right.
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths = vec![0usize; right.len()];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, ((cell, width), right)) in row.iter().zip(&widths).zip(right).enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            if *right {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
