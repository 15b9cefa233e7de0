//! Text for the views of `app::import`.

use std::fmt::Write as _;

use battleplan_core::customer::events::MAX_LISTED_SKIPPED;
use battleplan_core::customer::{ImportKind, OutcomeKind};
use battleplan_core::text::printable;

use crate::app::import::{
    AlreadyImported, ImportOutcome, ImportView, Imported, ProblemLine, Rejected, Unreadable,
};
use crate::present::{json, Reply, USER_ERROR};

/// The most skipped rows the text lists (the event and `--json` list up to
/// [`MAX_LISTED_SKIPPED`]).
const LISTED_SKIPPED_TEXT: usize = 100;

/// An import's answer: words, or its JSON. A file refused whole exits 2 either way (its
/// problems on standard error as words, on standard output as JSON).
pub fn import(view: &ImportView, as_json: bool) -> Reply {
    let code = if view.refused() { USER_ERROR } else { 0 };
    if as_json {
        return Reply {
            code,
            stdout: json(view),
            stderr: String::new(),
        };
    }
    match view {
        ImportView::Imported(view) => Reply::ok(imported(view)),
        ImportView::AlreadyImported(view) => Reply::ok(already(view)),
        ImportView::Rejected(view) => Reply {
            code,
            stdout: String::new(),
            stderr: rejected(view),
        },
        ImportView::Unreadable(view) => Reply {
            code,
            stdout: String::new(),
            stderr: unreadable(view),
        },
    }
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

fn row_word(kind: ImportKind, count: u64) -> String {
    let word = match kind {
        ImportKind::Customers => "customer",
        ImportKind::Outcomes => "outcome",
    };
    plural(count, word)
}

/// `: 3 delivered, 1 ordered`, the outcomes recorded by kind; nothing for customers.
fn kinds_in_words(kinds: &std::collections::BTreeMap<String, u64>) -> String {
    let words: Vec<String> = OutcomeKind::ALL
        .iter()
        .filter_map(|kind| {
            let count = kinds.get(kind.as_str()).copied().unwrap_or(0);
            (count > 0).then(|| format!("{count} {}", kind.as_str()))
        })
        .collect();
    if words.is_empty() {
        String::new()
    } else {
        format!(": {}", words.join(", "))
    }
}

/// The problem where it is: `line 4, column 3 (active): ...`, as the file's reader words it.
pub(crate) fn located(problem: &ProblemLine) -> String {
    battleplan_adapters::import::Problem {
        line: problem.line,
        column: problem.column.clone(),
        position: problem.position,
        reason: problem.reason.clone(),
    }
    .to_string()
}

fn unreadable(view: &Unreadable) -> String {
    let name = printable(&view.file);
    let mut stderr = String::new();
    for problem in &view.listed {
        let _ = writeln!(stderr, "{name}: {}", located(problem));
    }
    let _ = writeln!(
        stderr,
        "{name}: the file cannot be imported; nothing was imported (--skip-bad-rows skips bad rows, not a bad header or an empty file)"
    );
    stderr
}

fn rejected(view: &Rejected) -> String {
    let name = printable(&view.file);
    let mut stderr = String::new();
    for problem in &view.listed {
        let _ = writeln!(stderr, "{name}: {}", located(problem));
    }
    let listed = view.listed.len() as u64;
    if view.problems > listed {
        let _ = writeln!(
            stderr,
            "{name}: ... and {} more problems not listed",
            view.problems - listed
        );
    }
    let _ = writeln!(
        stderr,
        "{name}: {} ({}) of {}; nothing was imported. Fix them, or import the good rows with --skip-bad-rows.",
        plural(view.bad_rows, "bad row"),
        plural(view.problems, "problem"),
        plural(view.rows + view.bad_rows, "row")
    );
    stderr
}

fn already(view: &AlreadyImported) -> String {
    // `local` words: the instant with the people's offset, to the minute.
    let when = chrono::DateTime::parse_from_rfc3339(&view.imported_at).map_or_else(
        |_| view.imported_at.clone(),
        |at| at.format("%Y-%m-%d %H:%M %:z").to_string(),
    );
    format!(
        "{}: already imported on {when}: {} rows; nothing changed ({})\n",
        printable(&view.file),
        view.rows,
        view.stream
    )
}

fn imported(view: &Imported) -> String {
    let name = printable(&view.file);
    let (first, last) = match view.stream_versions.as_slice() {
        [first, last] => (*first, *last),
        _ => (0, 0),
    };
    let mut out = String::new();
    if view.outcome == ImportOutcome::Resumed {
        let _ = writeln!(
            out,
            "{name}: resumed an import cut short: {} recorded earlier, {} now ({}, versions {first} to {last})",
            plural(view.recorded_earlier, "row"),
            row_word(view.kind, view.recorded_now),
            view.stream
        );
    } else {
        let _ = writeln!(
            out,
            "{name}: imported {}{} ({}, versions 1 to {last})",
            row_word(view.kind, view.rows),
            kinds_in_words(&view.kinds),
            view.stream
        );
    }
    if view.bad_rows > 0 {
        let _ = writeln!(
            out,
            "skipped {} (--skip-bad-rows):",
            plural(view.bad_rows, "bad row")
        );
        for row in view.skipped.iter().take(LISTED_SKIPPED_TEXT) {
            // The column and the reason quote the file: escaped for the terminal.
            match &row.column {
                Some(column) => {
                    let _ = writeln!(
                        out,
                        "  line {}, {}: {}",
                        row.line,
                        printable(column),
                        printable(&row.reason)
                    );
                }
                None => {
                    let _ = writeln!(out, "  line {}: {}", row.line, printable(&row.reason));
                }
            }
        }
        let listed = view.skipped.len().min(LISTED_SKIPPED_TEXT) as u64;
        if view.bad_rows > listed {
            let _ = writeln!(
                out,
                "  ... and {} more (the ImportStarted event lists up to {MAX_LISTED_SKIPPED})",
                view.bad_rows - listed
            );
        }
    }
    out
}
