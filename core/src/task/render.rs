//! The board as text for a terminal and as JSON for programs.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::board::{Row, RowStatus};
use crate::campaign::timeline::{human_duration, local};
use crate::text::printable;

/// How many rows are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub open: usize,
    pub overdue: usize,
    pub escalated: usize,
    /// Cut short by an advance.
    pub skipped: usize,
    pub done: usize,
}

impl Counts {
    pub fn of(rows: &[Row]) -> Counts {
        let mut counts = Counts::default();
        for row in rows {
            match row.status {
                RowStatus::Open => counts.open += 1,
                RowStatus::Overdue => counts.overdue += 1,
                RowStatus::Escalated => counts.escalated += 1,
                RowStatus::Skipped { .. } => counts.skipped += 1,
                RowStatus::Done { .. } => counts.done += 1,
            }
        }
        counts
    }
}

fn status_text(row: &Row, now: DateTime<Utc>) -> String {
    let late = || human_duration((now - row.due).num_milliseconds().max(0));
    match &row.status {
        RowStatus::Open => "open".to_string(),
        RowStatus::Overdue => format!("overdue {}", late()),
        RowStatus::Escalated => format!("escalated, {} late", late()),
        RowStatus::Skipped { by, .. } => format!("skipped (advanced by {})", printable(by)),
        RowStatus::Done { by, .. } => format!("done by {}", printable(by)),
    }
}

/// The rows as a table in their order (due instant, then id): due (local time), status,
/// reminders sent so far, role, occurrence, title, with notes of done rows under them, then a
/// line of counts. Who marked a task done and their note are escaped: people typed them.
pub fn render_board(rows: &[Row], zone: Tz, now: DateTime<Utc>) -> String {
    let mut out = format!("Tasks at {}\n", local(zone, now));
    if rows.is_empty() {
        out.push_str("no tasks match\n");
        return out;
    }
    let header = ["DUE", "STATUS", "REMINDERS", "ROLE", "OCCURRENCE", "TITLE"];
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                local(zone, row.due),
                status_text(row, now),
                row.reminders_sent.to_string(),
                printable(&row.role).into_owned(),
                printable(&row.occurrence).into_owned(),
                printable(&row.title).into_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let write_line = |out: &mut String, cells: [&str; 6]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    write_line(&mut out, header);
    for (row, line) in rows.iter().zip(&lines) {
        write_line(
            &mut out,
            [&line[0], &line[1], &line[2], &line[3], &line[4], &line[5]],
        );
        if let RowStatus::Done {
            note: Some(note), ..
        } = &row.status
        {
            let indent = widths[0] + 2;
            out.push_str(&format!("{:indent$}note: {}\n", "", printable(note)));
        }
    }
    let counts = Counts::of(rows);
    let skipped = if counts.skipped > 0 {
        format!(", {} skipped", counts.skipped)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{} {}: {} open, {} overdue, {} escalated{skipped}, {} done\n",
        rows.len(),
        if rows.len() == 1 { "task" } else { "tasks" },
        counts.open,
        counts.overdue,
        counts.escalated,
        counts.done
    ));
    out
}

/// The rows and their counts as JSON: `{"counts": {...}, "rows": [...]}`.
pub fn board_json(rows: &[Row]) -> serde_json::Value {
    serde_json::json!({
        "counts": Counts::of(rows),
        "rows": rows,
    })
}
