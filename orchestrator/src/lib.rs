//! The battleplan runtime: the command handler with optimistic concurrency (`runtime`), the
//! campaigns projection (`projection`), the scheduler of due instants (`scheduler`), the daemon
//! (`daemon`) and its control socket (`control`), and the commands shared by the command line
//! and the daemon (`commands`). The `battleplan` binary (`main.rs`, `cli.rs`) sits on top.

pub mod commands;
pub mod control;
pub mod daemon;
pub mod projection;
pub mod runtime;
pub mod scheduler;
