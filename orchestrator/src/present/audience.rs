//! Text for the views of `app::audience`.

use std::fmt::Write as _;

use battleplan_core::campaign::timeline::local;
use battleplan_core::customer::eligibility::Exclusion;
use battleplan_core::customer::quota::{DayLimit, Unplaced};
use battleplan_core::plan::values::grouped;
use chrono_tz::Tz;

use crate::app::audience::PreviewView;
use crate::present::Reply;

/// The preview for people (the members of `--customers` are for scripts: JSON only).
pub fn preview(view: &PreviewView) -> Reply {
    Reply::ok(render(view))
}

fn render(view: &PreviewView) -> String {
    let mut out = String::new();
    let zone: Tz = view.time_zone.parse().unwrap_or(Tz::UTC);
    let at = |instant: crate::app::local_time::LocalTime| local(zone, instant.instant());
    match &view.reach_out {
        Some(reach_out) => {
            let _ = writeln!(
                out,
                "Audience of reach-out {} (\"{}\"), campaign {}",
                reach_out.id, reach_out.name, view.campaign
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Audience of segment {} on channel {}, campaign {}",
                view.segment, view.channel, view.campaign
            );
        }
    }
    let _ = writeln!(
        out,
        "  segment {}, channel {} ({}), window {} to {}",
        view.segment,
        view.channel,
        view.channel_kind.as_str(),
        at(view.window.start),
        at(view.window.end)
    );
    let _ = writeln!(out, "  evaluated at {}", at(view.evaluated_at));
    let _ = writeln!(out);
    let width = 56;
    let line = |out: &mut String, label: &str, value: u64| {
        let _ = writeln!(out, "  {label:<width$}{:>12}", grouped(value));
    };
    line(
        &mut out,
        &format!("in segment {}", view.segment),
        view.segment_size,
    );
    let _ = writeln!(out, "  excluded, each counted once, in this order:");
    for exclusion in &view.exclusions {
        line(
            &mut out,
            &format!("  {}", exclusion_words(view, exclusion.reason)),
            exclusion.count,
        );
    }
    line(&mut out, "reachable", view.reachable);
    if view.after_fatigue > 0 {
        line(
            &mut out,
            "  of them fatigued now, planned once their fatigue ends",
            view.after_fatigue,
        );
    }
    line(&mut out, "planned to send", view.planned);
    for unplaced in &view.not_placed {
        line(
            &mut out,
            &format!("not placed: {}", unplaced_words(unplaced.reason)),
            unplaced.count,
        );
    }
    let _ = writeln!(out);

    let show_accounts = view.accounts.len() > 1;
    let mut header = format!(
        "  {:<12}{:>7}{:>10}{:>10}{:>10}{:>12}",
        "day", "opens", "sends", "free", "paid", "cost"
    );
    if show_accounts {
        for account in &view.accounts {
            let _ = write!(header, "{:>12}", truncate(account, 11));
        }
    }
    let _ = writeln!(out, "{}", header.trim_end());
    for day in &view.days {
        let opens = day
            .opens
            .map(|opens| {
                opens
                    .instant()
                    .with_timezone(&zone)
                    .format("%H:%M")
                    .to_string()
            })
            .unwrap_or_else(|| "-".to_string());
        let mut row = format!(
            "  {:<12}{:>7}{:>10}{:>10}{:>10}{:>12}",
            day.date.format("%Y-%m-%d"),
            opens,
            grouped(u64::from(day.sends)),
            grouped(u64::from(day.free)),
            grouped(u64::from(day.paid)),
            day.cost.to_string(),
        );
        if show_accounts {
            for account in &view.accounts {
                let count = day.by_account.get(account).copied().unwrap_or(0);
                let _ = write!(row, "{:>12}", grouped(u64::from(count)));
            }
        }
        let limit = limit_words(day.limited_by);
        if !limit.is_empty() {
            let _ = write!(row, "  {limit}");
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "  {:<12}{:>7}{:>10}{:>10}{:>10}{:>12}",
        "total",
        "",
        grouped(view.total.sends),
        grouped(view.total.free),
        grouped(view.total.paid),
        view.total.cost.to_string(),
    );
    let _ = writeln!(out, "  costs in {}", view.currency);
    out
}

fn exclusion_words(view: &PreviewView, exclusion: Exclusion) -> String {
    let channel = view.channel_kind.as_str();
    match exclusion {
        Exclusion::NoAddress => format!("no or invalid address for {channel}"),
        Exclusion::Unsubscribed => format!("unsubscribed from {channel}"),
        Exclusion::RecycleBin => "in the recycle bin".to_string(),
        Exclusion::ExcludedSegment => "in a segment the channel excludes".to_string(),
        Exclusion::Fatigue => "reached within the fatigue window".to_string(),
        Exclusion::AlreadyReached => "already reached by this reach-out".to_string(),
        Exclusion::QuietHours => "in quiet hours (the plan says skip)".to_string(),
    }
}

fn unplaced_words(reason: Unplaced) -> &'static str {
    match reason {
        Unplaced::WindowFull => "window full",
        Unplaced::QuotaUsed => "no quota left before this reach-out",
        Unplaced::NoAccount => "no sending account (sender = owner)",
        Unplaced::QuietUntilWindowEnd => "held by quiet hours past the window's end",
    }
}

fn limit_words(limit: Option<DayLimit>) -> &'static str {
    match limit {
        None => "",
        Some(DayLimit::DailyCap) => "daily cap reached",
        Some(DayLimit::AccountCaps) => "account caps reached",
        Some(DayLimit::DailyBudget) => "daily budget spent",
        Some(DayLimit::MonthlyBudget) => "monthly budget spent",
    }
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}
