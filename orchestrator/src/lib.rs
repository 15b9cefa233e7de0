//! The battleplan runtime: the command handler with optimistic concurrency (`runtime`), the
//! campaigns projection (`projection`), the scheduler of due instants (`scheduler`), the daemon
//! (`daemon`) and its control socket (`control`), and the commands shared by the command line
//! and the daemon (`commands`), among them the imports of customer and outcome files
//! (`import`); the auditor's tools: the log exported and imported (`archive`) and the checks
//! `audit verify` runs after the hash chain (`audit`). The `battleplan` binary (`main.rs`,
//! `cli.rs`) sits on top.

pub mod archive;
pub mod audience;
pub mod audit;
pub mod commands;
pub mod control;
pub mod daemon;
pub mod dispatcher;
pub mod explain;
pub mod import;
pub mod outreach;
pub mod projection;
pub mod runtime;
pub mod scenario;
pub mod scheduler;
pub mod tasks;
pub mod work;
