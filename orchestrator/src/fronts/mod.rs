//! The ways in: the command line (`cli`), the control socket (`control`) and HTTP. Each maps
//! the outside to an `app::Request` and the answer to bytes; none decides anything.

pub mod cli;
pub mod control;
pub mod http;
