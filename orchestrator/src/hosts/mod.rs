//! The processes that own a kernel over time: the daemon (`daemon`, its channels chosen by
//! `channels`), the scenario runner (`scenario`), and a command run without a daemon (`local`:
//! asks the daemon, or opens the store for one request), and the store they open (`store`: the
//! sled store in the data directory, or a PostgreSQL tenant).

pub mod channels;
pub mod daemon;
pub mod local;
pub mod scenario;
pub mod store;
