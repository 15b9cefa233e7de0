//! The battleplan orchestrator, in layers (ARCHITECTURE.md has the rules):
//!
//! - `kernel`: runs the log forward. The command handler with optimistic concurrency
//!   (`runtime`), the projections and their catch-up (`projection`, `work`, `plans`), the
//!   scheduler and the dispatcher. It knows no front, no request and no text.
//! - `app`: the typed use cases, one request to `Result<Response, AppError>`; never text, exit
//!   codes, terminals or environment variables.
//! - `present`: pure renderers of a response: today's words, or the JSON of the view.
//! - `fronts`: the command line, the control socket and HTTP; they map the outside to a request
//!   and a response to bytes, and never decide.
//! - `hosts`: the processes that own a kernel over time: the daemon, the scenario runner, and a
//!   command run without a daemon.

pub mod app;
pub mod fronts;
pub mod hosts;
pub mod kernel;
pub mod present;
