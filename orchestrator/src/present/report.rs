//! The weekly report for people: text, Markdown and HTML, each made by `core::report::render`
//! from the report's data (so a client renders what the daemon assembled, byte for byte), and
//! the `<main>` fragment a page embeds.

use battleplan_core::report::{render, WeeklyReport};

use crate::app::report::{ReportFormat, WeeklyView};
use crate::present::{json, Reply};

/// Columns for a terminal or a plain-text mail.
pub fn text(report: &WeeklyReport) -> String {
    render::text(report)
}

/// Headings and lists: what the staff robots show.
pub fn markdown(report: &WeeklyReport) -> String {
    render::markdown(report)
}

/// A whole HTML document: UTF-8, its style inline, every text escaped, nothing fetched.
pub fn html(report: &WeeklyReport) -> String {
    render::html(report)
}

/// The report's `<main class="weekly-report">` alone, for a page that embeds it; style it
/// with [`STYLE`].
pub fn html_main(report: &WeeklyReport) -> String {
    render::html_main(report)
}

/// The style [`html`] inlines, scoped to `.weekly-report`.
pub const STYLE: &str = render::STYLE;

/// The report in a format.
pub fn rendered(report: &WeeklyReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => json(report),
        ReportFormat::Text => text(report),
        ReportFormat::Markdown => markdown(report),
        ReportFormat::Html => html(report),
    }
}

/// The media type of a format, as HTTP names it.
pub fn content_type(format: ReportFormat) -> &'static str {
    match format {
        ReportFormat::Json => "application/json",
        ReportFormat::Text => "text/plain; charset=utf-8",
        ReportFormat::Markdown => "text/markdown; charset=utf-8",
        ReportFormat::Html => "text/html; charset=utf-8",
    }
}

/// `report weekly`: the format asked for, or the report's JSON with `--json`.
pub fn shown(view: &WeeklyView, as_json: bool) -> Reply {
    let format = if as_json {
        ReportFormat::Json
    } else {
        view.format
    };
    Reply::ok(rendered(&view.report, format))
}
