//! Text for the views of `app::audit`.

use std::fmt::Write as _;

use crate::app::audit::VerifyView;
use crate::present::{json, Reply, USER_ERROR};

/// `audit verify`: words or JSON; exit 0 when everything checks out, 2 otherwise.
pub fn verify(view: &VerifyView, as_json: bool) -> Reply {
    Reply {
        code: if view.intact { 0 } else { USER_ERROR },
        stdout: if as_json { json(view) } else { words(view) },
        stderr: String::new(),
    }
}

fn words(view: &VerifyView) -> String {
    let mut out = String::new();
    let problem = view.problem.as_deref().unwrap_or_default();
    if !view.chain_intact {
        let _ = writeln!(out, "damaged: {problem}");
        let _ = writeln!(
            out,
            "the {} events before it check out (head hash {})",
            view.events, view.head_hash
        );
    } else if view.intact {
        let _ = writeln!(
            out,
            "intact: {} events, positions 1 to {} without gaps, every hash and stream version checks out; head hash {}",
            view.events, view.events, view.head_hash
        );
        if let Some(payloads) = view.payloads_read {
            let _ = writeln!(out, "every payload reads as its type ({payloads} events)");
        }
        if let Some(projection) = &view.projection {
            let _ = writeln!(
                out,
                "stored projection `{}` (checkpoint at position {}, {} campaign{}) is exactly what replaying the log gives",
                projection.name,
                projection.checkpoint,
                projection.campaigns,
                if projection.campaigns == 1 { "" } else { "s" }
            );
        }
        if let Some(snapshot) = &view.snapshot {
            match &snapshot.not_checked {
                None => {
                    let _ = writeln!(
                        out,
                        "the snapshot of the customer book, the outbox and the boards (position {}) is exactly what replaying the log up to it gives",
                        snapshot.position
                    );
                }
                Some(why) => {
                    let _ = writeln!(
                        out,
                        "the snapshot of the projections was not compared: {why}"
                    );
                }
            }
        }
    } else {
        let _ = writeln!(out, "damaged: {problem}");
        let _ = writeln!(
            out,
            "the chain checks out: {} events, head hash {}",
            view.events, view.head_hash
        );
    }
    out
}
