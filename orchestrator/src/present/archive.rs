//! Text for the views of `app::archive`.

use battleplan_core::text::printable;

use crate::app::archive::{ExportView, RestoreView};
use crate::present::Reply;

/// `exported N events, head hash H[; as of T, M later events left out]`: on standard output
/// after `wrote FILE: ` for an export to a file, alone on standard error for one to standard
/// output (which holds the export itself).
pub fn export(view: &ExportView) -> Reply {
    let mut words = format!(
        "exported {} events, head hash {}",
        view.events, view.head_hash
    );
    if let Some(as_of) = view.as_of {
        words.push_str(&format!(
            "; as of {}, {} later events left out",
            as_of.to_rfc3339(),
            view.left_out
        ));
    }
    match &view.file {
        Some(file) => Reply::ok(format!("wrote {}: {words}\n", printable(file))),
        None => Reply {
            code: 0,
            stdout: String::new(),
            stderr: format!("{words}\n"),
        },
    }
}

/// `battleplan import FILE`: what was restored, and what to run next; a warning when the file
/// had no trailer.
pub fn restored(view: &RestoreView) -> Reply {
    let stderr = if view.trailer_checked {
        String::new()
    } else {
        format!(
            "battleplan: warning: {} has no trailer: its {} events check out among themselves, but whether events were cut from its end cannot be told\n",
            view.file, view.events
        )
    };
    // A PostgreSQL tenant is shown as `postgres://USER@HOST:PORT/DB (tenant T)`, no URL to
    // give back as it is.
    let next = if view.data.starts_with("postgres://") {
        "battleplan audit verify, with the same --store".to_string()
    } else {
        format!("battleplan audit verify --data {}", view.data)
    };
    Reply {
        code: 0,
        stdout: format!(
            "imported {} events into {} ({} campaign{}), head hash {}\nnext: {next}\n",
            view.events,
            view.data,
            view.campaigns,
            if view.campaigns == 1 { "" } else { "s" },
            view.head_hash,
        ),
        stderr,
    }
}
