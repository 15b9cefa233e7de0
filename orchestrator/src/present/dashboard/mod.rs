//! The live dashboard's pages, server-rendered: minijinja templates (HTML-escaped), charts as
//! SVG (`svg`), one stylesheet and one small script, every asset embedded in the binary. Pure:
//! a page is made of views the use cases answered with and of what the reader may do (their
//! role's rights, decided by the front).

pub mod svg;

use std::sync::OnceLock;

use battleplan_core::plan::values::grouped;
use minijinja::{context, Environment, Value};
use serde::Serialize;
use serde_json::json;

use crate::app::campaigns::{CampaignStatus, HistoryEvent, TargetAmount};
use crate::app::dashboard::CampaignPageView;
use crate::app::metrics::{FiguresView, MetricsView};
use crate::present::metrics::amount_text;

/// Who reads the page, and what their role lets them see and do.
#[derive(Debug, Clone, Serialize)]
pub struct Viewer {
    pub name: String,
    pub role: String,
    /// The session's token against cross-site requests, in every form.
    pub csrf: String,
    /// Funnel, targets, the shop's numbers, sends, the weekly report.
    pub may_numbers: bool,
    /// The audit trail: the history's lines.
    pub may_history: bool,
    /// A customer's explanation and the history as of an instant.
    pub may_explain: bool,
    /// Marking tasks done.
    pub may_task_done: bool,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("campaigns.html", include_str!("templates/campaigns.html")),
    ("campaign.html", include_str!("templates/campaign.html")),
    ("screen.html", include_str!("templates/screen.html")),
    ("customer.html", include_str!("templates/customer.html")),
    ("message.html", include_str!("templates/message.html")),
    ("report.html", include_str!("templates/report.html")),
];

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// An embedded asset's content type and bytes (the weekly report's style is the report's
/// own, `present::report::STYLE`).
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    if name == "report.css" {
        return Some(("text/css; charset=utf-8", crate::present::report::STYLE));
    }
    ASSETS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map(|(_, kind, bytes)| (*kind, *bytes))
}

fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        // `.html` templates escape every value as HTML (minijinja's default for the suffix).
        for (name, source) in TEMPLATES {
            if let Err(error) = environment.add_template(name, source) {
                // A template that does not parse is a programming error the tests catch; the
                // page then says so instead of panicking.
                tracing::error!("the dashboard's template {name} does not parse: {error}");
            }
        }
        environment
    })
}

fn render(template: &str, values: Value) -> String {
    match environment()
        .get_template(template)
        .and_then(|template| template.render(values))
    {
        Ok(html) => html,
        Err(error) => format!(
            "<!doctype html><meta charset=\"utf-8\"><title>battleplan</title><p>The page could not be made: {}</p>",
            svg::escape(&error.to_string())
        ),
    }
}

/// The login page, with what went wrong the last time, if anything.
pub fn login(error: Option<&str>, next: &str) -> String {
    render(
        "login.html",
        context! { title => "Log in", body_class => "login-body", position => 0, now_ms => 0,
        error => error, next => next },
    )
}

/// A page that only says something (a refusal, a missing campaign).
pub fn message(viewer: Option<&Viewer>, heading: &str, text: &str, back: Option<&str>) -> String {
    render(
        "message.html",
        context! { title => heading, body_class => "message-body", position => 0, now_ms => 0,
        viewer => viewer, heading => heading, message => text, back => back },
    )
}

/// `/dashboard/campaigns/ID`, percent-encoded.
pub fn campaign_url(id: &str) -> String {
    format!("/dashboard/campaigns/{}", encode(id))
}

/// A path segment percent-encoded (everything but unreserved characters).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `running`, `paused`, `scheduled`, `completed`, `cancelled`...: the status's own key.
fn state_class(status: &CampaignStatus) -> String {
    serde_json::to_value(&status.status)
        .ok()
        .and_then(|value| {
            value
                .get("status")
                .and_then(|key| key.as_str().map(str::to_string))
        })
        .unwrap_or_default()
}

/// The campaigns, each with its state and next transition.
pub fn campaigns(viewer: &Viewer, statuses: &[CampaignStatus], position: u64) -> String {
    let rows: Vec<serde_json::Value> = statuses
        .iter()
        .map(|status| {
            json!({
                "id": status.campaign,
                "url": campaign_url(&status.campaign),
                "name": status.name,
                "description": status.description,
                "state_class": state_class(status),
                "next": status.next.as_ref().map(|next| format!("{} {}", next.what, local(&next.at))).unwrap_or_default(),
                "version": status.plan_version,
            })
        })
        .collect();
    render(
        "campaigns.html",
        context! { title => "Campaigns", body_class => "list-body", position => position,
        now_ms => 0, live => true, viewer => viewer, campaigns => rows },
    )
}

/// `2026-09-03 10:00 +08:00` from RFC 3339.
fn local(rfc3339: &str) -> String {
    crate::present::campaigns::local_text(rfc3339)
}

fn milliseconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |at| at.timestamp_millis())
}

/// A value as the JSON writes it, for a cell's `data-value`.
fn raw(value: Option<TargetAmount>) -> String {
    match value {
        None => String::new(),
        Some(TargetAmount::Count(count)) => count.to_string(),
        Some(TargetAmount::Money(money)) => money.to_string(),
        Some(TargetAmount::Rate(rate)) => rate.to_string(),
    }
}

fn targets(view: &CampaignPageView) -> Vec<serde_json::Value> {
    let currency = view.currency.as_str();
    view.status
        .targets
        .iter()
        .flatten()
        .map(|row| {
            json!({
                "stage": row.stage,
                "metric": row.metric,
                "target": amount_text(Some(row.target), currency),
                "actual": if row.measured { amount_text(row.actual, currency) } else { "not measured".to_string() },
                "value": raw(row.actual),
                "ratio": row.ratio.map(|ratio| (ratio * 100.0).clamp(0.0, 100.0).round()),
                "ratio_text": row.ratio.map(|ratio| format!("{:.1}%", ratio * 100.0)),
                "source": match row.source.as_deref() {
                    Some("shop") => "shop's numbers",
                    Some("campaign") => "campaign's reaches",
                    _ => "",
                },
            })
        })
        .collect()
}

fn timeline_svg(view: &CampaignPageView) -> String {
    let spans: Vec<svg::Span> = view
        .timeline
        .iter()
        .map(|step| svg::Span {
            row: usize::from(step.kind == "stage"),
            label: step.name.clone(),
            start_ms: step.start_ms,
            end_ms: step.end_ms,
        })
        .collect();
    svg::timeline(&spans, view.now_ms)
}

fn next(view: &CampaignPageView) -> (String, i64, String) {
    match &view.status.next {
        Some(next) => {
            let step = next
                .step
                .as_ref()
                .map(|step| step.to_string())
                .unwrap_or_else(|| "the end".to_string());
            let what = if next.what == "complete" {
                "completes".to_string()
            } else {
                format!("enters {step}")
            };
            (
                format!("{what} at {}", local(&next.at)),
                milliseconds(&next.at),
                in_words(next.in_seconds),
            )
        }
        None => (String::new(), 0, String::new()),
    }
}

/// `in 2 d 03:04:05` or `overdue by 00:10:00`: what the page's script keeps ticking.
fn in_words(seconds: i64) -> String {
    let sign = if seconds < 0 { "overdue by " } else { "in " };
    let left = seconds.unsigned_abs();
    let days = left / 86_400;
    let rest = left % 86_400;
    let days = if days > 0 {
        format!("{days} d ")
    } else {
        String::new()
    };
    format!(
        "{sign}{days}{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A column of the days' table: its heading, and its cell of a day's figures.
type DayColumn = (&'static str, fn(&FiguresView) -> Option<String>);

const DAY_FIGURES: [DayColumn; 7] = [
    ("UV", |f| f.visitors.map(grouped)),
    ("PV", |f| f.page_views.map(grouped)),
    ("inquiries", |f| f.inquiries.map(grouped)),
    ("new fans", |f| f.new_fans.map(grouped)),
    ("orders paid", |f| f.paid_orders.map(grouped)),
    ("buyers", |f| f.paying_buyers.map(grouped)),
    ("GMV", |f| {
        f.gmv
            .map(|gmv| amount_text(Some(TargetAmount::Money(gmv)), ""))
    }),
];

fn day_cells(figures: &FiguresView) -> Vec<String> {
    DAY_FIGURES
        .iter()
        .map(|(_, cell)| {
            cell(figures)
                .unwrap_or_else(|| "-".to_string())
                .trim()
                .to_string()
        })
        .collect()
}

fn hot(list: &[crate::app::metrics::HotView]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|hot| json!({"name": hot.name, "count": grouped(hot.count)}))
        .collect()
}

/// The numbers part of a campaign's page (empty when the reader may not see them).
fn numbers(view: &CampaignPageView, out: &mut serde_json::Map<String, serde_json::Value>) {
    let currency = view.currency.as_str();
    if let Some(funnel) = &view.funnel {
        let stages: Vec<String> = funnel
            .overall
            .iter()
            .map(|step| battleplan_core::funnel::stage_key(step.stage).to_string())
            .collect();
        let block = |name: String, key: String, steps: &[crate::app::tasks::FunnelStepView]| {
            json!({
                "name": name,
                "key": key,
                "steps": steps.iter().map(|step| json!({
                    "stage": battleplan_core::funnel::stage_key(step.stage),
                    "customers": step.customers,
                    "written": grouped(step.customers),
                    "conversion": step.conversion.map(|rate| format!("{:.1}%", rate * 100.0)),
                })).collect::<Vec<_>>(),
            })
        };
        let mut blocks: Vec<serde_json::Value> = funnel
            .phases
            .iter()
            .map(|phase| {
                block(
                    phase.phase.label().to_string(),
                    phase.phase.key().to_string(),
                    &phase.stages,
                )
            })
            .collect();
        blocks.push(block(
            "overall".to_string(),
            "overall".to_string(),
            &funnel.overall,
        ));
        let bars: Vec<(String, u64, String)> = funnel
            .overall
            .iter()
            .map(|step| {
                (
                    battleplan_core::funnel::stage_key(step.stage).to_string(),
                    step.customers,
                    match step.conversion {
                        Some(rate) => format!("{} ({:.1}%)", grouped(step.customers), rate * 100.0),
                        None => grouped(step.customers),
                    },
                )
            })
            .collect();
        out.insert("funnel_stages".into(), json!(stages));
        out.insert("funnel".into(), json!(blocks));
        out.insert("funnel_svg".into(), json!(svg::bars(&bars)));
        out.insert(
            "funnel_screen_svg".into(),
            json!(svg::bars_in(&bars, 560.0)),
        );
    }
    if let Some(metrics) = &view.metrics {
        metrics_part(metrics, currency, out);
    }
    let sends: Vec<serde_json::Value> = view
        .sends
        .iter()
        .map(|day| {
            json!({
                "date": day.date, "channel": day.channel, "sent": grouped(day.sent),
                "free": grouped(day.free), "paid": grouped(day.paid),
                "cost": amount_text(Some(TargetAmount::Money(day.cost)), currency),
            })
        })
        .collect();
    let mut per_day: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for day in &view.sends {
        let entry = per_day
            .entry(day.date.as_str())
            .or_insert_with(|| vec![0, 0]);
        entry[0] += day.free;
        entry[1] += day.paid;
    }
    let columns: Vec<(String, Vec<u64>)> = per_day
        .into_iter()
        .map(|(day, parts)| (day.to_string(), parts))
        .collect();
    let (sent, free, paid): (u64, u64, u64) = view.sends.iter().fold((0, 0, 0), |total, day| {
        (total.0 + day.sent, total.1 + day.free, total.2 + day.paid)
    });
    let cost = view
        .sends
        .iter()
        .fold(0i64, |total, day| total.saturating_add(day.cost.minor()));
    out.insert("sends".into(), json!(sends));
    out.insert(
        "sends_svg".into(),
        json!(svg::stacked_days(&columns, &["free", "paid"])),
    );
    out.insert(
        "sends_total".into(),
        json!({
            "sent": sent, "sent_text": grouped(sent), "free": grouped(free), "paid": grouped(paid),
            "cost": amount_text(Some(TargetAmount::Money(battleplan_core::plan::values::Money::from_minor(cost))), currency),
        }),
    );
    out.insert(
        "exclusions".into(),
        json!(view
            .exclusions
            .iter()
            .map(|(reason, count)| json!({"reason": reason, "count": grouped(*count)}))
            .collect::<Vec<_>>()),
    );
}

fn metrics_part(
    metrics: &MetricsView,
    currency: &str,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let days: Vec<serde_json::Value> = metrics
        .days
        .iter()
        .map(|day| json!({"date": day.date, "cells": day_cells(&day.figures)}))
        .collect();
    // GMV per day when the shop's numbers give it, else visitors.
    let with_gmv = metrics.days.iter().any(|day| day.figures.gmv.is_some());
    let columns: Vec<(String, Vec<u64>)> = metrics
        .days
        .iter()
        .map(|day| {
            let value = if with_gmv {
                day.figures
                    .gmv
                    .map_or(0, |gmv| gmv.minor().max(0) as u64 / 100)
            } else {
                day.figures.visitors.unwrap_or(0)
            };
            (day.date.clone(), vec![value])
        })
        .collect();
    let legend = if with_gmv {
        format!("GMV ({currency})")
    } else {
        "visitors (UV)".to_string()
    };
    out.insert("days".into(), json!(days));
    out.insert(
        "day_headings".into(),
        json!(DAY_FIGURES
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()),
    );
    out.insert(
        "days_total".into(),
        json!(day_cells(&metrics.overall.figures)),
    );
    out.insert(
        "shop_gmv".into(),
        json!(metrics
            .overall
            .figures
            .gmv
            .map(|gmv| gmv.to_string())
            .unwrap_or_default()),
    );
    out.insert(
        "gmv_svg".into(),
        json!(svg::stacked_days(&columns, &[&legend])),
    );
    out.insert(
        "formulas".into(),
        json!(metrics
            .overall
            .formulas
            .iter()
            .map(|formula| json!({
                "key": formula.key,
                "expression": formula.expression,
                "inputs": formula.inputs.iter().map(|input| format!("{} {}", input.key, amount_text(input.value, currency))).collect::<Vec<_>>().join(", "),
                "value": if formula.value.is_some() { amount_text(formula.value, currency) } else { "not measured".to_string() },
            }))
            .collect::<Vec<_>>()),
    );
    out.insert(
        "hot_products".into(),
        json!(hot(&metrics.overall.hot_products)),
    );
    out.insert(
        "hot_keywords".into(),
        json!(hot(&metrics.overall.hot_keywords)),
    );
}

/// The board grouped by role (with the role's members), overdue and escalated first in each.
fn board(viewer: &Viewer, view: &CampaignPageView) -> Vec<serde_json::Value> {
    use battleplan_core::task::RowStatus;
    let url = campaign_url(&view.status.campaign);
    let zone_rows = &view.board.rows;
    let mut roles: Vec<String> = view.roles.iter().map(|(role, _)| role.clone()).collect();
    for row in zone_rows {
        if !roles.contains(&row.role) {
            roles.push(row.role.clone());
        }
    }
    let zone: chrono_tz::Tz = view.board.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
    roles
        .into_iter()
        .filter_map(|role| {
            let mut rows: Vec<&battleplan_core::task::Row> =
                zone_rows.iter().filter(|row| row.role == role).collect();
            if rows.is_empty() {
                return None;
            }
            let rank = |row: &battleplan_core::task::Row| match row.status {
                RowStatus::Escalated => 0,
                RowStatus::Overdue => 1,
                RowStatus::Open => 2,
                RowStatus::Done { .. } => 3,
                RowStatus::Skipped { .. } => 4,
            };
            rows.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.due.cmp(&b.due)));
            let members = view
                .roles
                .iter()
                .find(|(id, _)| *id == role)
                .map(|(_, members)| members.join(", "))
                .unwrap_or_default();
            // What needs a look now: everything late, what is due in the next week, what was
            // done in the last; the rest folds away.
            let now = chrono::DateTime::parse_from_rfc3339(&view.now)
                .map(|at| at.with_timezone(&chrono::Utc))
                .unwrap_or_default();
            let week = chrono::Duration::days(7);
            let (rows, later): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|row| match &row.status {
                    RowStatus::Escalated | RowStatus::Overdue => true,
                    RowStatus::Open => row.due <= now + week,
                    RowStatus::Done { at, .. } | RowStatus::Skipped { at, .. } => *at + week >= now,
                });
            let row_json = |row: &battleplan_core::task::Row| {
                let (status, class, by) = match &row.status {
                    RowStatus::Open => ("open", "open", String::new()),
                    RowStatus::Overdue => ("overdue", "overdue", String::new()),
                    RowStatus::Escalated => ("escalated", "escalated", String::new()),
                    RowStatus::Skipped { by, at } => (
                        "skipped",
                        "skipped",
                        format!(
                            "{by}, {}",
                            battleplan_core::campaign::timeline::local(zone, *at)
                        ),
                    ),
                    RowStatus::Done { by, at, .. } => (
                        "done",
                        "done",
                        format!(
                            "{by}, {}",
                            battleplan_core::campaign::timeline::local(zone, *at)
                        ),
                    ),
                };
                let open = matches!(
                    row.status,
                    RowStatus::Open | RowStatus::Overdue | RowStatus::Escalated
                );
                json!({
                    "occurrence": row.occurrence,
                    "title": row.title,
                    "due": battleplan_core::campaign::timeline::local(zone, row.due),
                    "status": status,
                    "class": class,
                    "by": by,
                    "can_done": viewer.may_task_done && open,
                    "done_url": format!("{url}/tasks/{}/done", encode(&row.occurrence)),
                })
            };
            let shown: Vec<serde_json::Value> = rows.into_iter().map(row_json).collect();
            let later: Vec<serde_json::Value> = later.into_iter().map(row_json).collect();
            Some(json!({"role": role, "members": members, "rows": shown, "later": later}))
        })
        .collect()
}

fn recent(viewer: &Viewer, view: &CampaignPageView) -> (String, Vec<serde_json::Value>) {
    if let (true, Some(lines)) = (viewer.may_history, &view.recent) {
        return (
            "Who did what lately".to_string(),
            lines.iter().map(history_line).collect(),
        );
    }
    // Without the audit trail: the tasks done lately, from the board.
    use battleplan_core::task::RowStatus;
    let zone: chrono_tz::Tz = view.board.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
    let mut done: Vec<(&chrono::DateTime<chrono::Utc>, &str, &str)> = view
        .board
        .rows
        .iter()
        .filter_map(|row| match &row.status {
            RowStatus::Done { by, at, .. } => Some((at, by.as_str(), row.title.as_str())),
            _ => None,
        })
        .collect();
    done.sort_by(|a, b| b.0.cmp(a.0));
    (
        "Tasks done lately".to_string(),
        done.into_iter()
            .take(crate::app::dashboard::RECENT)
            .map(|(at, by, title)| {
                json!({
                    "at": battleplan_core::campaign::timeline::local(zone, *at),
                    "actor": by,
                    "summary": format!("marked done: {title}"),
                })
            })
            .collect(),
    )
}

fn history_line(line: &HistoryEvent) -> serde_json::Value {
    json!({
        "at": local(&line.recorded_at),
        "position": line.position,
        "actor": line.actor,
        "summary": line.summary,
        "reason": line.reason,
    })
}

/// The common part of a campaign's page and its big screen.
fn page(viewer: &Viewer, view: &CampaignPageView) -> serde_json::Map<String, serde_json::Value> {
    let status = &view.status;
    let (next_text, next_ms, next_in) = next(view);
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(status.campaign));
    out.insert("url".into(), json!(campaign_url(&status.campaign)));
    out.insert("name".into(), json!(status.name));
    out.insert("description".into(), json!(status.description));
    out.insert("state_class".into(), json!(state_class(status)));
    out.insert("version".into(), json!(status.plan_version));
    out.insert("zone".into(), json!(status.time_zone));
    out.insert("now".into(), json!(local(&view.now)));
    out.insert("next".into(), json!(next_text));
    out.insert("next_ms".into(), json!(next_ms));
    out.insert("next_in".into(), json!(next_in));
    out.insert("timeline_svg".into(), json!(timeline_svg(view)));
    // The targets' actuals are the shop's and the campaign's numbers: only for the roles that
    // may read them (the API's funnel and targets).
    if viewer.may_numbers {
        out.insert("targets".into(), json!(targets(view)));
    }
    out.insert(
        "channels".into(),
        json!(status
            .channels
            .iter()
            .flatten()
            .map(|channel| {
                let state = serde_json::to_value(channel.state)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_string))
                    .unwrap_or_default();
                json!({"id": channel.id, "via": channel.via, "state": state.replace('_', " "),
                    "class": state, "sent": grouped(channel.sent), "bounced": grouped(channel.bounced)})
            })
            .collect::<Vec<_>>()),
    );
    if viewer.may_numbers {
        numbers(view, &mut out);
    }
    out
}

/// A campaign's page.
pub fn campaign(viewer: &Viewer, view: &CampaignPageView) -> String {
    let mut p = page(viewer, view);
    let counts = &view.board.counts;
    p.insert(
        "counts".into(),
        json!(format!(
            "{} open, {} overdue, {} escalated, {} done, {} skipped",
            counts.open, counts.overdue, counts.escalated, counts.done, counts.skipped
        )),
    );
    p.insert("board".into(), json!(board(viewer, view)));
    let (title, lines) = recent(viewer, view);
    p.insert("recent_title".into(), json!(title));
    p.insert("recent".into(), json!(lines));
    render(
        "campaign.html",
        context! { title => view.status.name.clone(), body_class => "campaign-body",
        position => view.position, now_ms => view.now_ms, live => true, viewer => viewer,
        p => Value::from_serialize(&p) },
    )
}

/// The big screen: the day's figures large, the targets' progress, the funnel, what sells.
pub fn screen(viewer: &Viewer, view: &CampaignPageView) -> String {
    let mut p = page(viewer, view);
    let currency = view.currency.as_str();
    let mut kpis = Vec::new();
    if let Some(metrics) = &view.metrics {
        let figures = &metrics.overall.figures;
        // The shop's figure when it was recorded, else what the campaign measured itself (its
        // stages' actuals of the metric, summed: stages do not overlap).
        let measured = |metric: &str| -> Option<(TargetAmount, &'static str)> {
            let rows: Vec<&crate::app::campaigns::TargetRow> = view
                .status
                .targets
                .iter()
                .flatten()
                .filter(|row| row.metric == metric && row.source.as_deref() == Some("campaign"))
                .collect();
            if rows.is_empty() {
                return None;
            }
            if rows.iter().all(|row| row.actual.is_none()) {
                return None;
            }
            let mut total = TargetAmount::Count(0);
            for row in rows {
                total = match (total, row.actual) {
                    (TargetAmount::Count(0), Some(TargetAmount::Money(money))) => {
                        TargetAmount::Money(money)
                    }
                    (TargetAmount::Money(sum), Some(TargetAmount::Money(money))) => {
                        TargetAmount::Money(battleplan_core::plan::values::Money::from_minor(
                            sum.minor().saturating_add(money.minor()),
                        ))
                    }
                    (TargetAmount::Count(sum), Some(TargetAmount::Count(count))) => {
                        TargetAmount::Count(sum.saturating_add(count))
                    }
                    (total, _) => total,
                };
            }
            Some((total, "from the campaign's reaches"))
        };
        let either = |shop: Option<TargetAmount>, metric: &str| match shop {
            Some(value) => Some((value, "shop's numbers")),
            None => measured(metric),
        };
        let kpi = |key: &str, label: &str, found: Option<(TargetAmount, &str)>| {
            let value = found.map(|(value, _)| value);
            json!({"key": key, "label": label, "value": raw(value),
                "written": amount_text(value, currency).replace(&format!(" {currency}"), ""),
                "sub": found.map_or("not measured", |(_, source)| source)})
        };
        kpis.push(kpi(
            "gmv",
            &format!("GMV collected ({currency})"),
            either(figures.gmv.map(TargetAmount::Money), "gmv"),
        ));
        kpis.push(kpi(
            "orders",
            "Orders paid",
            either(figures.paid_orders.map(TargetAmount::Count), "orders"),
        ));
        kpis.push(kpi(
            "inquiries",
            "Inquiries",
            either(figures.inquiries.map(TargetAmount::Count), "inquiries"),
        ));
        kpis.push(kpi(
            "fans",
            "New fans",
            either(figures.new_fans.map(TargetAmount::Count), "fans"),
        ));
    }
    if let Some(funnel) = &view.funnel {
        if let Some(reached) = funnel.overall.get(1) {
            kpis.push(json!({"key": "reached", "label": "Customers reached",
                "value": reached.customers.to_string(), "written": grouped(reached.customers),
                "sub": "by the campaign"}));
        }
    }
    p.insert("kpis".into(), json!(kpis));
    if let Some(serde_json::Value::Array(list)) = p.get_mut("hot_products") {
        list.truncate(5);
    }
    if let Some(serde_json::Value::Array(list)) = p.get_mut("hot_keywords") {
        list.truncate(5);
    }
    render(
        "screen.html",
        context! { title => format!("{} · big screen", view.status.name), body_class => "screen-body",
        position => view.position, now_ms => view.now_ms, live => true, viewer => viewer,
        p => Value::from_serialize(&p) },
    )
}

/// A customer's page: why they were reached or not (explain, in words) and the campaign's
/// history as of an instant.
#[allow(clippy::too_many_arguments, reason = "one page, each part named")]
pub fn customer(
    viewer: &Viewer,
    campaign: &str,
    customer: &str,
    as_of: &str,
    explain: Option<&crate::app::explain::ExplainView>,
    history: Option<&[HistoryEvent]>,
    error: Option<&str>,
    position: u64,
) -> String {
    render(
        "customer.html",
        context! { title => format!("{customer} · {campaign}"), body_class => "customer-body",
        position => position, now_ms => 0, live => false, viewer => viewer,
        campaign => campaign, campaign_url => campaign_url(campaign), customer => customer,
        as_of => as_of, error => error,
        explain => explain.map(crate::present::explain::text),
        history => history.map(|lines| lines.iter().map(history_line).collect::<Vec<_>>()) },
    )
}

/// The ISO weeks before and after `week` (`2026-W36`).
fn weeks_around(week: &str) -> (Option<String>, Option<String>) {
    let Ok(monday) = chrono::NaiveDate::parse_from_str(&format!("{week}-1"), "%G-W%V-%u") else {
        return (None, None);
    };
    let name = |date: chrono::NaiveDate| date.format("%G-W%V").to_string();
    (
        monday.checked_sub_days(chrono::Days::new(7)).map(name),
        monday.checked_add_days(chrono::Days::new(7)).map(name),
    )
}

/// The weekly report's page: the report's own HTML (`present::report::html_main`) with links to
/// the weeks around it; or what was wrong with the week asked.
pub fn report(
    viewer: &Viewer,
    campaign: &str,
    week: &str,
    report: Option<&crate::app::report::WeeklyView>,
    error: Option<&str>,
    position: u64,
) -> String {
    let (previous, next) = weeks_around(week);
    render(
        "report.html",
        context! { title => format!("{campaign} · weekly report {week}"), body_class => "report-body",
        position => position, now_ms => 0, live => report.is_some(), viewer => viewer,
        campaign => campaign, campaign_url => campaign_url(campaign),
        campaign_url_id => encode(campaign), week => week, previous => previous, next => next,
        error => error,
        report => report.map(|view| crate::present::report::html_main(&view.report)).unwrap_or_default() },
    )
}
