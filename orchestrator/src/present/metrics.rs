//! Text for the views of `app::metrics`: what an import recorded, and the shop's numbers.

use std::fmt::Write as _;

use battleplan_core::metrics::Figure;
use battleplan_core::plan::values::{grouped, Money};
use battleplan_core::text::printable;

use crate::app::campaigns::TargetAmount;
use crate::app::metrics::{
    FiguresView, MetricsImportView, MetricsOutcome, MetricsView, WindowView,
};
use crate::present::{json, Reply, USER_ERROR};

/// A metrics import's answer. A refused file exits 2 either way (its problems on standard
/// error as words, on standard output as JSON).
pub fn imported(view: &MetricsImportView, as_json: bool) -> Reply {
    let code = if view.refused() { USER_ERROR } else { 0 };
    if as_json {
        return Reply {
            code,
            stdout: json(view),
            stderr: String::new(),
        };
    }
    let file = printable(&view.file);
    match view.outcome {
        MetricsOutcome::Rejected => {
            let mut out = format!(
                "battleplan: {file} was not imported: nothing was recorded ({} in {}):\n",
                plural(view.problems, "problem"),
                plural(view.bad_rows.max(1), "row")
            );
            for problem in &view.listed {
                let _ = writeln!(out, "  {}", crate::present::import::located(problem));
            }
            if view.problems > view.listed.len() as u64 {
                let _ = writeln!(
                    out,
                    "  and {} more",
                    view.problems - view.listed.len() as u64
                );
            }
            Reply {
                code,
                stdout: String::new(),
                stderr: out,
            }
        }
        MetricsOutcome::Unchanged => Reply::ok(format!(
            "{file}: nothing changed: the {} it gives were recorded already (dates in {})\n",
            plural(view.periods, "period"),
            view.zone
        )),
        MetricsOutcome::Recorded => {
            let corrected: Vec<String> = view
                .recorded
                .iter()
                .filter(|period| !period.corrected.is_empty())
                .map(|period| format!("{} ({})", period.period, period.corrected.join(", ")))
                .collect();
            let mut out = format!(
                "recorded the shop's numbers for {} from {file} (dates in {})",
                plural(view.recorded.len() as u64, "period"),
                view.zone
            );
            if view.unchanged > 0 {
                let _ = write!(out, "; {} unchanged", plural(view.unchanged, "period"));
            }
            out.push('\n');
            if !corrected.is_empty() {
                let _ = writeln!(out, "corrected: {}", corrected.join("; "));
            }
            Reply::ok(out)
        }
    }
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// `1,234.50 CNY`.
fn money(amount: Money, currency: &str) -> String {
    let minor = amount.minor();
    let sign = if minor < 0 { "-" } else { "" };
    let absolute = minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {currency}",
        grouped(absolute / 100),
        absolute % 100
    )
}

/// A value as people read it: counts grouped, money with its currency, rates as percentages.
pub fn amount_text(value: Option<TargetAmount>, currency: &str) -> String {
    match value {
        None => "-".to_string(),
        Some(TargetAmount::Count(count)) => grouped(count),
        Some(TargetAmount::Money(amount)) => money(amount, currency),
        Some(TargetAmount::Rate(rate)) => format!("{:.2}%", rate * 100.0),
    }
}

fn figure_text(figures: &FiguresView, figure: Figure, currency: &str) -> String {
    let figures = figures.figures();
    match figures.get(figure) {
        None => "-".to_string(),
        Some(battleplan_core::metrics::FigureValue::Count(count)) => grouped(count),
        Some(battleplan_core::metrics::FigureValue::Money(amount)) => money(amount, currency),
    }
}

/// The figures shown in the day table, with short headings.
const DAY_COLUMNS: [(Figure, &str); 9] = [
    (Figure::Visitors, "UV"),
    (Figure::PageViews, "PV"),
    (Figure::Inquiries, "inquiries"),
    (Figure::NewFans, "new fans"),
    (Figure::PlacedOrders, "placed"),
    (Figure::PaidOrders, "paid"),
    (Figure::PayingBuyers, "buyers"),
    (Figure::ReturningBuyers, "returning"),
    (Figure::Gmv, "GMV"),
];

/// Columns padded to their widest cell, two spaces apart, the first aligned left.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if index == 0 {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str("  ");
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The days' table: one row per day, the figures as columns.
pub fn days_table(view: &MetricsView) -> String {
    let mut rows = vec![std::iter::once("day".to_string())
        .chain(DAY_COLUMNS.iter().map(|(_, heading)| heading.to_string()))
        .collect::<Vec<_>>()];
    for day in &view.days {
        rows.push(
            std::iter::once(day.date.clone())
                .chain(
                    DAY_COLUMNS
                        .iter()
                        .map(|(figure, _)| figure_text(&day.figures, *figure, &view.currency)),
                )
                .collect(),
        );
    }
    table(&rows)
}

/// A window's formulas: `sales = visitors × conversion rate × average order value: 10,000 ×
/// 2.5% × 400.00 CNY = 100,000.00 CNY`.
pub fn formulas_text(window: &WindowView, currency: &str) -> String {
    let mut out = String::new();
    for formula in &window.formulas {
        let inputs: Vec<String> = formula
            .inputs
            .iter()
            .map(|input| amount_text(input.value, currency))
            .collect();
        let _ = writeln!(
            out,
            "  {} = {}: {} -> {}",
            formula.key,
            formula.expression,
            formula
                .inputs
                .iter()
                .map(|input| format!("{} {}", input.key, amount_text(input.value, currency)))
                .collect::<Vec<_>>()
                .join(", "),
            match formula.value {
                Some(_) => amount_text(formula.value, currency),
                None if inputs.iter().any(|input| input == "-") => {
                    "not measured (an input is missing)".to_string()
                }
                None => "not measured (a denominator is zero)".to_string(),
            }
        );
    }
    out
}

fn hot_text(window: &WindowView) -> String {
    let mut out = String::new();
    let list = |items: &[crate::app::metrics::HotView]| {
        items
            .iter()
            .map(|hot| format!("{} ({})", printable(&hot.name), grouped(hot.count)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !window.hot_products.is_empty() {
        let _ = writeln!(out, "  hot products: {}", list(&window.hot_products));
    }
    if !window.hot_keywords.is_empty() {
        let _ = writeln!(out, "  hot keywords: {}", list(&window.hot_keywords));
    }
    out
}

/// `metrics show CAMPAIGN`.
pub fn shown(view: &MetricsView) -> Reply {
    let mut out = format!(
        "The shop's numbers for {} as of {}\n",
        view.campaign,
        crate::present::campaigns::local_text(&view.as_of)
    );
    if view.days.is_empty() {
        out.push_str(
            "no figures recorded for the campaign's days yet: battleplan metrics import FILE (docs/metrics.md)\n",
        );
        return Reply::ok(out);
    }
    out.push('\n');
    out.push_str(&days_table(view));
    for window in std::iter::once(&view.overall).chain(&view.stages) {
        if window.start == window.end {
            let _ = writeln!(
                out,
                "\n{}: begins {}",
                window.name,
                crate::present::campaigns::local_text(&window.start)
            );
            continue;
        }
        let _ = writeln!(
            out,
            "\n{} ({} to {}, {}):",
            window.name,
            crate::present::campaigns::local_text(&window.start),
            crate::present::campaigns::local_text(&window.end),
            plural(window.periods, "period")
        );
        out.push_str(&formulas_text(window, &view.currency));
        out.push_str(&hot_text(window));
    }
    Reply::ok(out)
}
