//! Renderers: a response made into what a terminal shows (today's words) or into its JSON (the
//! serde form of the same view). Pure: they never read the store, and they decide nothing.

use serde::{Deserialize, Serialize};

use crate::app::{AppError, ErrorKind, Outcome, Response};

/// Exit code for a user error: a bad plan, bad input, a rejected command.
pub const USER_ERROR: u8 = 2;
/// Exit code for an internal failure.
pub const INTERNAL_ERROR: u8 = 1;

/// What to print, and how to exit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reply {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn ok(stdout: String) -> Reply {
        Reply {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    pub fn user_error(message: impl std::fmt::Display) -> Reply {
        Reply {
            code: USER_ERROR,
            stdout: String::new(),
            stderr: format!("battleplan: {message}\n"),
        }
    }

    /// A store that failed under a command: damage and a newer format are refused the same way
    /// by every command (exit 2); a failing disk is exit 1, said as such.
    pub fn store_failure(error: &battleplan_core::event::StoreError) -> Reply {
        error_reply(&AppError::from(error.clone()))
    }
}

/// A view's JSON, as `--json` prints it and HTTP sends it: pretty, with a final line break.
pub fn json<V: Serialize + ?Sized>(view: &V) -> String {
    match serde_json::to_string_pretty(view) {
        Ok(text) => format!("{text}\n"),
        Err(error) => {
            format!("{{\"error\": \"the answer could not be written as JSON: {error}\"}}\n")
        }
    }
}

fn shape<V: Serialize>(view: &V, as_json: bool, text: fn(&V) -> Reply) -> Reply {
    if as_json {
        return Reply::ok(json(view));
    }
    text(view)
}

/// The JSON of a response's view: what `--json` prints, and HTTP's body.
pub fn view_json(response: &Response) -> String {
    match response {
        Response::Pong(view) => json(view),
        Response::Status(view) => json(&view.body),
        Response::History(view) => json(&view.body),
        Response::Acted(view) => json(&view.body),
        Response::PlanApplied(view) => json(&view.body),
        Response::Explain(view) => json(view),
        Response::AudiencePreview(view) => json(view),
        Response::Import(view) => json(view),
        Response::MetricsImported(view) => json(view),
        Response::Metrics(view) => json(view),
        Response::Outbox(view) => json(view),
        Response::ChannelResumed(view) => json(view),
        Response::Unsubscribed(view) => json(view),
        Response::Answers(view) => json(view),
        Response::ChannelTested(view) => json(view),
        Response::Clicked(view) => json(view),
        Response::Tasks(view) => json(view),
        Response::TaskDone(view) => json(view),
        Response::Funnel(view) => json(view),
        Response::Targets(view) => json(&view.body),
        Response::Calendar(view) => json(view),
        Response::WeeklyReport(view) => json(&view.report),
        Response::AuditVerify(view) => json(view),
        Response::Export(view) => json(view),
        Response::Restored(view) => json(view),
    }
}

/// A response for a terminal: its words, or its JSON when asked for.
pub fn render(outcome: &Outcome, as_json: bool) -> Reply {
    let response = match outcome {
        Ok(response) => response,
        Err(error) => return error_reply(error),
    };
    match response {
        Response::Pong(view) => Reply::ok(format!("{}\n", view.pid)),
        Response::Status(view) => campaigns::shown(&view.body, as_json, || campaigns::status(view)),
        Response::History(view) => {
            campaigns::shown(&view.body, as_json, || campaigns::history(view))
        }
        Response::Acted(view) => campaigns::shown(&view.body, as_json, || campaigns::acted(view)),
        Response::PlanApplied(view) => {
            campaigns::shown(&view.body, as_json, || campaigns::plan_applied(view))
        }
        Response::Explain(view) => shape(view, as_json, explain::explain),
        Response::AudiencePreview(view) => shape(view, as_json, audience::preview),
        Response::Import(view) => import::import(view, as_json),
        Response::MetricsImported(view) => metrics::imported(view, as_json),
        Response::Metrics(view) => shape(view, as_json, metrics::shown),
        Response::Outbox(view) => shape(view, as_json, outreach::outbox),
        Response::ChannelResumed(view) => shape(view, as_json, outreach::channel_resumed),
        Response::Unsubscribed(view) => shape(view, as_json, outreach::unsubscribed),
        Response::Answers(view) => shape(view, as_json, outreach::answers),
        Response::Clicked(view) => shape(view, as_json, |view| {
            Reply::ok(format!(
                "{}\n",
                battleplan_core::text::printable(&view.target)
            ))
        }),
        Response::ChannelTested(view) => {
            let mut reply = shape(view, as_json, outreach::channel_tested);
            // Not taken: the test failed.
            if view.answer != "sent" {
                reply.code = 1;
            }
            reply
        }
        Response::Tasks(view) => shape(view, as_json, tasks::tasks),
        Response::TaskDone(view) => shape(view, as_json, tasks::task_done),
        Response::Funnel(view) => shape(view, as_json, tasks::funnel),
        Response::Targets(view) => {
            campaigns::shown(&view.body, as_json, || campaigns::targets(view))
        }
        // The iCalendar text itself, CRLF line ends and all.
        Response::Calendar(view) => shape(view, as_json, |view| Reply::ok(view.ics.clone())),
        Response::WeeklyReport(view) => report::shown(view, as_json),
        Response::AuditVerify(view) => audit::verify(view, as_json),
        Response::Export(view) => shape(view, as_json, archive::export),
        Response::Restored(view) => shape(view, as_json, archive::restored),
    }
}

/// A refusal for a terminal: `battleplan: ` and its message on standard error (a plan's
/// diagnostics as their own lines); exit 2 for the user's, 1 for the program's.
pub fn error_reply(error: &AppError) -> Reply {
    let stderr = match error {
        // A plan's diagnostics are lines of their own (`FILE:LINE:COLUMN: error[CODE] ...`),
        // as `validate` prints them.
        AppError::InvalidPlan { diagnostics } => {
            diagnostics.iter().map(|line| format!("{line}\n")).collect()
        }
        _ => format!("battleplan: {error}\n"),
    };
    Reply {
        code: match error.kind() {
            ErrorKind::User => USER_ERROR,
            ErrorKind::Internal => INTERNAL_ERROR,
        },
        stdout: String::new(),
        stderr,
    }
}

pub mod archive;
pub mod audience;
pub mod audit;
pub mod campaigns;
pub mod dashboard;
pub mod explain;
pub mod import;
pub mod metrics;
pub mod outreach;
pub mod report;
pub mod tasks;
