//! Acting on the plan: reach-outs and follow-ups decided as events, each send with its
//! idempotency key and the quota day it reserved, then sent through the channel port by the
//! dispatcher and recorded; every customer considered and not reached gets a typed reason.
//!
//! - `events`: the outbox's events (stream `outreach-<campaign>`);
//! - `state`: the outbox as a projection, with the quota ledger of planned sends;
//! - `decide`: what to plan, send, give up or stop now;
//! - `render`: the template for a send and its rendering;
//! - `port`: the channel port and the message it takes;
//! - `links`: the signed links a message carries (the one-click unsubscribe).

pub mod decide;
pub mod events;
pub mod links;
pub mod port;
pub mod render;
pub mod state;

pub use events::{send_key, NotSentReason, OutreachEvent};
pub use state::Outreach;

#[cfg(test)]
mod tests;
