//! The processes that own a kernel over time: the daemon (`daemon`), the scenario runner
//! (`scenario`).

pub mod daemon;
pub mod scenario;
