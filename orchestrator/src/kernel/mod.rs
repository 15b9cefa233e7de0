//! Runs the log forward: commands handled against the store, projections caught up, the
//! scheduler and the dispatcher. Knows no front, no request and no text.

pub mod dispatcher;
pub mod failpoint;
pub mod ownership;
pub mod picked;
pub mod plans;
pub mod projection;
pub mod runtime;
pub mod scheduler;
pub mod snapshot;
pub mod work;
