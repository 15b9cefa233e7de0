//! The weekly report for people: the same sections and the same numbers as text (columns for a
//! terminal or a mail), Markdown (each row a list item, as the staff robots of DingTalk and
//! WeCom show Markdown, which has no tables) and HTML (a whole document, its style inline, or
//! only its `<main>` for a page that embeds it).
//!
//! All three are made from one [`Doc`]: the report laid out as sections of notes and tables of
//! cells already written as people read them, so the formats cannot disagree. Text that came
//! from outside (names of people, products, keywords, offers as orders gave them) goes through
//! `text::printable`; HTML escapes everything (minijinja's HTML auto-escape), Markdown
//! backslash-escapes what it would read as markup.

use std::fmt::Write as _;

use chrono::DateTime;
use serde::Serialize;

use super::{Amount, FunnelBlock, HeadlineRow, OfferRow, WeeklyReport};
use crate::plan::values::{grouped, Money};
use crate::text::printable;

/// The style of the HTML report, scoped to `.weekly-report`: a page embedding [`html_main`]
/// may include it.
pub const STYLE: &str = "\
.weekly-report{font-family:system-ui,-apple-system,\"Segoe UI\",\"PingFang SC\",\"Microsoft YaHei\",\"Noto Sans CJK SC\",sans-serif;color:#1d2430;max-width:64rem;margin:0 auto;padding:1rem 1.5rem;line-height:1.45}
.weekly-report h1{font-size:1.6rem;margin:0 0 .4rem}
.weekly-report h2{font-size:1.2rem;margin:1.6rem 0 .5rem;border-bottom:2px solid #c9362b;padding-bottom:.2rem}
.weekly-report h3{font-size:1rem;margin:1rem 0 .3rem}
.weekly-report p{margin:.25rem 0}
.weekly-report .summary p{color:#4a5568}
.weekly-report table{border-collapse:collapse;margin:.4rem 0 .8rem;font-variant-numeric:tabular-nums}
.weekly-report th,.weekly-report td{padding:.25rem .6rem;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
.weekly-report th{background:#f7f7f9;font-weight:600}
.weekly-report .num{text-align:right;white-space:nowrap}
.weekly-report .empty{color:#718096;font-style:italic}
.weekly-report footer{margin-top:2rem;color:#718096;font-size:.85rem}
";

/// The report laid out: what every format shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Doc {
    pub title: String,
    pub summary: Vec<String>,
    pub sections: Vec<Section>,
    pub footer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// A stable anchor: `numbers`, `targets`, `funnel`, `reach-outs`, `offers`, `hot`,
    /// `tasks-done`, `late`, `next-week`.
    pub id: &'static str,
    pub title: String,
    /// Said before the tables.
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
    /// Said after the tables.
    pub footnotes: Vec<String>,
    /// What to say when the section has no table to show.
    pub empty: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub caption: Option<String>,
    pub header: Vec<String>,
    /// Which columns hold numbers (aligned right).
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

/// A report in every form a staff channel takes: the subject of its message, and its text (the
/// staff outbox), Markdown (a group robot) and HTML (mail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub markdown: String,
    pub html: String,
}

impl Rendered {
    pub fn of(report: &WeeklyReport) -> Rendered {
        Rendered {
            subject: doc(report).title,
            text: text(report),
            markdown: markdown(report),
            html: html(report),
        }
    }
}

/// The report as text: columns padded for a fixed-width font.
pub fn text(report: &WeeklyReport) -> String {
    let doc = doc(report);
    let mut out = String::new();
    let _ = writeln!(out, "{}", doc.title);
    let _ = writeln!(out, "{}", "=".repeat(width(&doc.title)));
    for line in &doc.summary {
        let _ = writeln!(out, "{line}");
    }
    for section in &doc.sections {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", section.title);
        let _ = writeln!(out, "{}", "-".repeat(width(&section.title)));
        for note in &section.notes {
            let _ = writeln!(out, "{note}");
        }
        for table in &section.tables {
            if let Some(caption) = &table.caption {
                let _ = writeln!(out, "{caption}");
            }
            out.push_str(&columns(table));
        }
        for note in &section.footnotes {
            let _ = writeln!(out, "{note}");
        }
        if let Some(empty) = &section.empty {
            let _ = writeln!(out, "{empty}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", doc.footer);
    out
}

/// The report as Markdown: headings, and each table row a list item (`**first cell**: header
/// value; ...`), which robots show as well as Markdown readers.
pub fn markdown(report: &WeeklyReport) -> String {
    let doc = doc(report);
    let mut out = String::new();
    let _ = writeln!(out, "# {}", escape_markdown(&doc.title));
    let _ = writeln!(out);
    for line in &doc.summary {
        let _ = writeln!(out, "{}  ", escape_markdown(line));
    }
    for section in &doc.sections {
        let _ = writeln!(out);
        let _ = writeln!(out, "## {}", escape_markdown(&section.title));
        let _ = writeln!(out);
        for note in &section.notes {
            let _ = writeln!(out, "{}  ", escape_markdown(note));
        }
        for table in &section.tables {
            if !section.notes.is_empty() || table.caption.is_some() {
                let _ = writeln!(out);
            }
            if let Some(caption) = &table.caption {
                let _ = writeln!(out, "**{}**", escape_markdown(caption));
                let _ = writeln!(out);
            }
            // A ranking (its first column a rank without a header) is a numbered list.
            let ranked = table.header.first().is_some_and(String::is_empty);
            let skip = usize::from(ranked);
            for row in &table.rows {
                let Some(first) = row.get(skip) else {
                    continue;
                };
                let marker = match (ranked, row.first()) {
                    (true, Some(rank)) => rank.as_str(),
                    _ => "-",
                };
                let cells = row.iter().zip(&table.header).skip(skip + 1);
                let rest: Vec<String> = cells
                    .filter(|(cell, _)| !cell.is_empty() && cell.as_str() != "-")
                    .map(|(cell, header)| {
                        format!("{} {}", escape_markdown(header), escape_markdown(cell))
                    })
                    .collect();
                let _ = write!(out, "{marker} **{}**", escape_markdown(first));
                if rest.is_empty() {
                    let _ = writeln!(out);
                } else {
                    let _ = writeln!(out, ": {}", rest.join("; "));
                }
            }
        }
        if !section.footnotes.is_empty() {
            let _ = writeln!(out);
        }
        for note in &section.footnotes {
            let _ = writeln!(out, "{}  ", escape_markdown(note));
        }
        if let Some(empty) = &section.empty {
            let _ = writeln!(out, "{}", escape_markdown(empty));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "*{}*", escape_markdown(&doc.footer));
    out
}

const MAIN_TEMPLATE: &str = r#"<main class="weekly-report">
<header class="summary">
<h1>{{ doc.title }}</h1>
{%- for line in doc.summary %}
<p>{{ line }}</p>
{%- endfor %}
</header>
{%- for section in doc.sections %}
<section id="{{ section.id }}">
<h2>{{ section.title }}</h2>
{%- for note in section.notes %}
<p>{{ note }}</p>
{%- endfor %}
{%- for table in section.tables %}
{%- if table.caption %}
<h3>{{ table.caption }}</h3>
{%- endif %}
<table>
<thead><tr>{% for cell in table.header %}<th{% if table.right[loop.index0] %} class="num"{% endif %}>{{ cell }}</th>{% endfor %}</tr></thead>
<tbody>
{%- for row in table.rows %}
<tr>{% for cell in row %}<td{% if table.right[loop.index0] %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{%- endfor %}
</tbody>
</table>
{%- endfor %}
{%- for note in section.footnotes %}
<p>{{ note }}</p>
{%- endfor %}
{%- if section.empty %}
<p class="empty">{{ section.empty }}</p>
{%- endif %}
</section>
{%- endfor %}
<footer><p>{{ doc.footer }}</p></footer>
</main>
"#;

const PAGE_TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ doc.title }}</title>
<style>
{{ style|safe }}</style>
</head>
<body>
{{ main|safe }}</body>
</html>
"#;

/// The report's `<main class="weekly-report">` element alone, every text escaped, for a page
/// that embeds it (with [`STYLE`]).
pub fn html_main(report: &WeeklyReport) -> String {
    render_html("main.html", MAIN_TEMPLATE, &doc(report), None)
}

/// The report as a whole HTML document: UTF-8, its style inline, nothing fetched from
/// anywhere.
pub fn html(report: &WeeklyReport) -> String {
    let doc = doc(report);
    let main = render_html("main.html", MAIN_TEMPLATE, &doc, None);
    render_html("page.html", PAGE_TEMPLATE, &doc, Some(&main))
}

fn render_html(name: &str, source: &str, doc: &Doc, main: Option<&str>) -> String {
    let mut environment = minijinja::Environment::new();
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let rendered = environment
        .template_from_named_str(name, source)
        .and_then(|template| {
            template.render(minijinja::context! {
                doc => doc,
                main => main.unwrap_or_default(),
                style => STYLE,
            })
        });
    // The templates are fixed and their data plain: a failure is a bug, said in the page
    // rather than lost.
    rendered.unwrap_or_else(|error| {
        format!(
            "<p>the report could not be rendered: {}</p>\n",
            escape_html(&error.to_string())
        )
    })
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Text Markdown would read as markup, backslash-escaped (CommonMark's escapes).
fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '|' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How many columns of a fixed-width font a text takes: two for the wide characters of East
/// Asian scripts (Chinese, Japanese, Korean, full-width forms), one for the others.
fn width(text: &str) -> usize {
    text.chars()
        .map(|c| {
            let code = u32::from(c);
            let wide = matches!(code,
                0x1100..=0x115F
                | 0x2E80..=0x303E
                | 0x3041..=0x33FF
                | 0x3400..=0x4DBF
                | 0x4E00..=0x9FFF
                | 0xA000..=0xA4CF
                | 0xAC00..=0xD7A3
                | 0xF900..=0xFAFF
                | 0xFE30..=0xFE4F
                | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6
                | 0x20000..=0x2FFFD
                | 0x30000..=0x3FFFD);
            if wide {
                2
            } else {
                1
            }
        })
        .sum()
}

/// Columns padded to their widest cell, two spaces apart.
fn columns(table: &Table) -> String {
    let rows: Vec<&Vec<String>> = std::iter::once(&table.header).chain(&table.rows).collect();
    let mut widths = vec![0usize; table.header.len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(self::width(cell));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, ((cell, width), right)) in
            row.iter().zip(&widths).zip(&table.right).enumerate()
        {
            if column > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(self::width(cell));
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

/// `1,234,567.80 CNY`.
fn money(value: Money, currency: &str) -> String {
    let minor = value.minor();
    let sign = if minor < 0 { "-" } else { "" };
    let absolute = minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {currency}",
        grouped(absolute / 100),
        absolute % 100
    )
}

/// A fraction as a percentage with one decimal: `0.035` is `3.5%`.
fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// A relative change: `+23.4%`, `-3.0%`.
fn change(fraction: f64) -> String {
    let text = percent(fraction);
    if fraction >= 0.0 {
        format!("+{text}")
    } else {
        text
    }
}

fn amount(value: Option<Amount>, currency: &str) -> String {
    match value {
        None => "not measured".to_string(),
        Some(Amount::Money(value)) => money(value, currency),
        Some(Amount::Count(count)) => grouped(count),
        Some(Amount::Rate(rate)) => percent(rate),
    }
}

/// An instant of the report (RFC 3339 with the campaign's offset) as people read it:
/// `Mon 2026-09-07 00:00 +08:00`.
fn when(instant: &str) -> String {
    match DateTime::parse_from_rfc3339(instant) {
        Ok(at) => at.format("%a %Y-%m-%d %H:%M %:z").to_string(),
        Err(_) => printable(instant).into_owned(),
    }
}

/// A local day: `Mon 09-07`.
fn day(instant: &str) -> String {
    match DateTime::parse_from_rfc3339(instant) {
        Ok(at) => at.format("%a %m-%d %H:%M").to_string(),
        Err(_) => printable(instant).into_owned(),
    }
}

fn outside(text: &str) -> String {
    printable(text).into_owned()
}

fn source_words(source: Option<&str>) -> &'static str {
    match source {
        Some("shop") => "shop's numbers",
        Some("campaign") => "campaign's reaches",
        _ => "",
    }
}

fn metric_words(metric: &str) -> String {
    match metric {
        "gmv" => "GMV".to_string(),
        "orders" => "orders".to_string(),
        "average_order_value" => "average order value".to_string(),
        "inquiries" => "inquiries".to_string(),
        "fans" => "new fans".to_string(),
        "visitors" => "visitors (UV)".to_string(),
        "conversion_rate" => "conversion rate".to_string(),
        "paying_buyers" => "paying buyers".to_string(),
        "page_views" => "page views (PV)".to_string(),
        "new_customers" => "new customers".to_string(),
        "payment_rate" => "payment rate".to_string(),
        "repurchase_rate" => "repurchase rate".to_string(),
        other => other.replace('_', " "),
    }
}

fn signed(now: u64, before: u64) -> String {
    let delta = i128::from(now) - i128::from(before);
    match delta {
        0 => "+0".to_string(),
        d if d > 0 => format!("+{}", grouped(d as u64)),
        d => format!("-{}", grouped(d.unsigned_abs() as u64)),
    }
}

/// The report laid out in sections (see the module's documentation).
pub fn doc(report: &WeeklyReport) -> Doc {
    let currency = report.currency.as_str();
    let mut summary = vec![
        format!(
            "{} to {} ({}).",
            when(&report.start),
            when(&report.end),
            report.time_zone
        ),
        if report.complete {
            "The whole week: it has ended.".to_string()
        } else {
            format!("The week so far: measured up to {}.", when(&report.as_of))
        },
    ];
    if !report.phases.is_empty() {
        summary.push(format!(
            "Phases this week: {}.",
            report
                .phases
                .iter()
                .map(|phase| format!(
                    "{} ({} to {})",
                    outside(&phase.name),
                    day(&phase.start),
                    day(&phase.end)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    summary.push(format!(
        "Compared with {}, the week before.",
        report.previous_week
    ));
    let sections = vec![
        numbers(report, currency),
        targets(report, currency),
        funnel(&report.funnel),
        reach_outs(report, currency),
        offers(report, currency),
        hot(report),
        tasks_done(report),
        late(report),
        next_week(report),
    ];
    Doc {
        title: format!(
            "Weekly report {}: {}",
            report.week,
            outside(&report.campaign_name)
        ),
        summary,
        sections,
        footer: format!(
            "Campaign {}. Every number is computed from the log up to position {}, measured up to {}; the same log gives the same report.",
            report.campaign,
            grouped(report.as_of_position),
            when(&report.as_of)
        ),
    }
}

fn section(id: &'static str, title: &str) -> Section {
    Section {
        id,
        title: title.to_string(),
        notes: Vec::new(),
        tables: Vec::new(),
        footnotes: Vec::new(),
        empty: None,
    }
}

fn table(header: &[&str], right: &[bool]) -> Table {
    Table {
        caption: None,
        header: header.iter().map(|cell| cell.to_string()).collect(),
        right: right.to_vec(),
        rows: Vec::new(),
    }
}

fn numbers(report: &WeeklyReport, currency: &str) -> Section {
    let mut section = section("numbers", "The week's numbers");
    let mut rows = table(
        &["figure", "this week", "week before", "change", "from"],
        &[false, true, true, true, false],
    );
    for row in &report.headline {
        rows.rows.push(headline_row(row, report, currency));
    }
    section.tables.push(rows);
    section.notes.push(
        "From the shop's numbers (metrics import) where they give the figure, else from the campaign's own reaches and the orders attributed to them.".to_string(),
    );
    section
}

fn headline_row(row: &HeadlineRow, report: &WeeklyReport, currency: &str) -> Vec<String> {
    // The shop's numbers cover the days they give figures for: said when that is not all.
    let words = |source: &str, shop_days: u64, days: u64| {
        if source == "shop" && shop_days < days {
            format!(
                "{} ({shop_days} of {days} days)",
                source_words(Some(source))
            )
        } else {
            source_words(Some(source)).to_string()
        }
    };
    let now = row
        .source
        .as_deref()
        .map(|source| words(source, report.shop_days, report.days));
    let before = row.week_before_source.as_deref().map(|source| {
        words(
            source,
            report.shop_days_week_before,
            report.days_week_before,
        )
    });
    let from = match (now, before) {
        (Some(now), Some(before)) if now != before => format!("{now} (week before: {before})"),
        (Some(now), _) => now,
        (None, Some(before)) => format!("week before: {before}"),
        (None, None) => String::new(),
    };
    vec![
        metric_words(&row.metric),
        amount(row.this_week, currency),
        amount(row.week_before, currency),
        row.change.map_or_else(|| "-".to_string(), change),
        from,
    ]
}

fn targets(report: &WeeklyReport, currency: &str) -> Section {
    let mut section = section("targets", "Stage targets");
    for stage in &report.stages {
        let mut rows = table(
            &["metric", "target", "so far", "of target", "from"],
            &[false, true, true, true, false],
        );
        rows.caption = Some(format!(
            "{} ({}): {} to {}",
            outside(&stage.name),
            outside(&stage.theme),
            day(&stage.start),
            day(&stage.end)
        ));
        for target in &stage.targets {
            rows.rows.push(vec![
                metric_words(&target.metric),
                amount(Some(target.target), currency),
                amount(target.actual, currency),
                target.ratio.map_or_else(|| "-".to_string(), percent),
                source_words(target.source.as_deref()).to_string(),
            ]);
        }
        if stage.targets.is_empty() {
            rows.rows.push(vec![
                "no targets set".to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        section.tables.push(rows);
    }
    if report.stages.is_empty() {
        section.empty = Some("No burst stage falls in this week.".to_string());
    } else {
        section.notes.push(format!(
            "Each stage from its start up to {}.",
            when(&report.as_of)
        ));
    }
    section
}

fn funnel(blocks: &[FunnelBlock]) -> Section {
    let mut section = section("funnel", "The funnel");
    let Some(first) = blocks.first() else {
        section.empty = Some("No phases.".to_string());
        return section;
    };
    let mut header = vec!["phase"];
    header.extend(first.stages.iter().map(|count| count.stage.as_str()));
    let mut right = vec![false];
    right.extend(first.stages.iter().map(|_| true));
    let mut rows = table(&header, &right);
    for block in blocks {
        let mut row = vec![phase_words(&block.phase)];
        for count in &block.stages {
            row.push(format!(
                "{} ({})",
                grouped(count.customers),
                signed(count.customers, count.week_before)
            ));
        }
        rows.rows.push(row);
    }
    section.notes.push(
        "Distinct customers who got at least that far, and in brackets the change since the week before ended.".to_string(),
    );
    if let Some(overall) = blocks.iter().find(|block| block.phase == "overall") {
        let conversions: Vec<String> = overall
            .stages
            .iter()
            .filter_map(|count| {
                count
                    .conversion
                    .map(|conversion| format!("{} {}", count.stage, percent(conversion)))
            })
            .collect();
        if !conversions.is_empty() {
            section.notes.push(format!(
                "Overall conversion from the stage above: {}.",
                conversions.join(", ")
            ));
        }
    }
    section.tables.push(rows);
    section
}

fn phase_words(key: &str) -> String {
    match key {
        "warm_up" => "warm-up".to_string(),
        other => other.to_string(),
    }
}

fn reach_outs(report: &WeeklyReport, currency: &str) -> Section {
    let mut section = section("reach-outs", "Reach-outs sent");
    let reach = &report.reach_outs;
    let mut rows = table(
        &["channel", "sent", "free", "paid", "cost", "week before"],
        &[false, true, true, true, true, true],
    );
    for channel in &reach.channels {
        rows.rows.push(vec![
            outside(&channel.name),
            grouped(channel.sent),
            grouped(channel.free),
            grouped(channel.paid),
            money(channel.cost, currency),
            grouped(channel.week_before_sent),
        ]);
        if let Some(price) = channel.cost_per_1000 {
            section.footnotes.push(format!(
                "{}: the first {} a day free, then {} per 1,000.",
                outside(&channel.name),
                channel
                    .free_per_day
                    .map_or_else(|| "0".to_string(), |free| grouped(u64::from(free))),
                money(price, currency)
            ));
        }
    }
    rows.rows.push(vec![
        "total".to_string(),
        grouped(reach.sent),
        grouped(reach.free),
        grouped(reach.paid),
        money(reach.cost, currency),
        grouped(reach.week_before_sent),
    ]);
    section.tables.push(rows);
    section
}

fn offers(report: &WeeklyReport, currency: &str) -> Section {
    let mut section = section("offers", "Offers");
    if report.offers.is_empty() && report.other_offers.is_empty() {
        section.empty = Some("The plan has no offers.".to_string());
        return section;
    }
    let mut rows = table(
        &[
            "offer",
            "orders",
            "GMV",
            "average order",
            "threshold",
            "average vs threshold",
            "week before",
        ],
        &[false, true, true, true, true, true, true],
    );
    for offer in &report.offers {
        rows.rows.push(offer_row(offer, currency));
    }
    if let Some(average) = report.plan_average_order_value {
        section.notes.push(format!(
            "Orders that named each offer (the offer of an ordered outcome). The plan's average order value is {}: a threshold usually sits 10-30% above it.",
            money(average, currency)
        ));
    } else {
        section
            .notes
            .push("Orders that named each offer (the offer of an ordered outcome).".to_string());
    }
    for offer in &report.offers {
        if !offer.tiers.is_empty() && offer.orders > 0 {
            let tiers: Vec<String> = offer
                .tiers
                .iter()
                .map(|tier| {
                    format!(
                        "spend {} (-{}) {}",
                        money(tier.spend, currency),
                        money(tier.off, currency),
                        grouped(tier.orders)
                    )
                })
                .collect();
            section.footnotes.push(format!(
                "{}: orders per tier reached: {}.",
                outside(&offer.name),
                tiers.join(", ")
            ));
        }
        if offer.below_threshold > 0 {
            section.footnotes.push(format!(
                "{}: {} order(s) below the threshold.",
                outside(&offer.name),
                grouped(offer.below_threshold)
            ));
        }
        if offer.outside_window > 0 {
            section.footnotes.push(format!(
                "{}: {} order(s) placed outside the offer's window.",
                outside(&offer.name),
                grouped(offer.outside_window)
            ));
        }
        if offer.orders_without_amount > 0 {
            section.footnotes.push(format!(
                "{}: {} order(s) without an amount (counted, nothing in GMV).",
                outside(&offer.name),
                grouped(offer.orders_without_amount)
            ));
        }
    }
    for other in &report.other_offers {
        section.footnotes.push(format!(
            "\"{}\", which no offer of the plan in force answers to: {} order(s), {}.",
            outside(&other.name),
            grouped(other.orders),
            money(other.gmv, currency)
        ));
    }
    section.tables.push(rows);
    section
}

fn offer_row(offer: &OfferRow, currency: &str) -> Vec<String> {
    let name = match &offer.code {
        Some(code) => format!(
            "{} ({}, {})",
            outside(&offer.name),
            offer.kind,
            outside(code)
        ),
        None => format!("{} ({})", outside(&offer.name), offer.kind),
    };
    vec![
        name,
        grouped(offer.orders),
        money(offer.gmv, currency),
        offer
            .average_order_value
            .map_or_else(|| "-".to_string(), |value| money(value, currency)),
        offer
            .threshold
            .map_or_else(|| "-".to_string(), |value| money(value, currency)),
        offer.versus_threshold.map_or_else(
            || "-".to_string(),
            |ratio| {
                if ratio >= 1.0 {
                    format!("{} above", percent(ratio - 1.0))
                } else {
                    format!("{} below", percent(1.0 - ratio))
                }
            },
        ),
        grouped(offer.week_before_orders),
    ]
}

fn hot(report: &WeeklyReport) -> Section {
    let mut section = section("hot", "Hot products and keywords");
    for (caption, list) in [
        ("Hot products", &report.hot_products),
        ("Hot keywords", &report.hot_keywords),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut rows = table(&["", "name", "count"], &[true, false, true]);
        rows.caption = Some(caption.to_string());
        for (rank, hot) in list.iter().enumerate() {
            rows.rows.push(vec![
                format!("{}.", rank + 1),
                outside(&hot.name),
                grouped(hot.count),
            ]);
        }
        section.tables.push(rows);
    }
    if section.tables.is_empty() {
        section.empty =
            Some("The shop's numbers give none for this week (metrics import).".to_string());
    } else {
        section
            .notes
            .push("From the shop's numbers, summed over the week's days.".to_string());
    }
    section
}

fn tasks_done(report: &WeeklyReport) -> Section {
    let mut section = section("tasks-done", "Tasks done, per person");
    if report.tasks_done.is_empty() {
        section.empty = Some("Nobody marked a task done this week.".to_string());
        return section;
    }
    let mut rows = table(
        &["", "person", "done", "on time", "roles"],
        &[true, false, true, true, false],
    );
    for (rank, person) in report.tasks_done.iter().enumerate() {
        rows.rows.push(vec![
            format!("{}.", rank + 1),
            outside(&person.person),
            grouped(person.done),
            grouped(person.on_time),
            person.roles.join(", "),
        ]);
    }
    section.tables.push(rows);
    section
}

fn late(report: &WeeklyReport) -> Section {
    let mut section = section("late", "What is late");
    if report.late.is_empty() {
        section.empty = Some(format!(
            "Nothing: every task due by {} was done.",
            when(&report.as_of)
        ));
        return section;
    }
    let mut rows = table(
        &["task", "role", "late", "escalated", "oldest due"],
        &[false, false, true, true, false],
    );
    for task in &report.late {
        rows.rows.push(vec![
            format!("{} ({})", outside(&task.title), task.task),
            task.role.clone(),
            grouped(task.occurrences),
            grouped(task.escalated),
            when(&task.oldest_due),
        ]);
    }
    section.notes.push(format!(
        "Occurrences due before {} and not done by then, per task; escalated: late by more than the task's escalation delay, so the boss was told.",
        when(&report.as_of)
    ));
    section.tables.push(rows);
    section
}

fn next_week(report: &WeeklyReport) -> Section {
    let next = &report.next_week;
    let mut section = section("next-week", "Next week");
    section.notes.push(format!(
        "{}: {} to {}.",
        next.week,
        when(&next.start),
        when(&next.end)
    ));
    for change in &next.changes {
        let what = match change.kind.as_str() {
            "phase_starts" => format!("the {} phase starts", outside(&change.name)),
            "stage_starts" => format!("the {} stage starts", outside(&change.name)),
            "campaign_ends" => "the campaign ends".to_string(),
            other => other.replace('_', " "),
        };
        section.notes.push(format!("{}: {what}.", when(&change.at)));
    }
    if next.tasks.is_empty() {
        section.empty = Some("No task is due next week.".to_string());
        return section;
    }
    let mut rows = table(
        &["task", "role", "due", "times"],
        &[false, false, false, true],
    );
    for task in &next.tasks {
        let due = if task.occurrences > 1 {
            format!("{} to {}", day(&task.first_due), day(&task.last_due))
        } else {
            day(&task.first_due)
        };
        rows.rows.push(vec![
            format!("{} ({})", outside(&task.title), task.task),
            task.role.clone(),
            due,
            grouped(task.occurrences),
        ]);
    }
    section.tables.push(rows);
    section
}
