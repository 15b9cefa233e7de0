//! What the daemon's `/readyz` and `/metrics` report: the log's head, how far the stored
//! campaigns projection is behind it, and the sends the kept outbox holds. Read as they are,
//! never caught up, so that a scrape stays cheap however often it comes.

use serde::{Deserialize, Serialize};

use crate::app::AppError;
use crate::kernel::projection::{self, Campaigns};
use crate::kernel::runtime::Runtime;

/// The log's head and the stored campaigns projection's lag behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    pub head: u64,
    /// Events of the log the stored campaigns projection has not applied yet.
    pub lag: u64,
}

/// One campaign's customer messages on one channel, by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendCounts {
    pub campaign: String,
    pub channel: String,
    pub pending: u64,
    pub sent: u64,
    pub not_sent: u64,
}

/// The name of the projection whose lag [`Positions`] gives.
pub const PROJECTION: &str = projection::NAME;

pub async fn positions(runtime: &Runtime) -> Result<Positions, AppError> {
    let store = runtime.store.as_ref();
    let head = store.head().await?;
    let checkpoint = store.checkpoint(projection::NAME).await?;
    Ok(Positions {
        head: head.0,
        lag: head.0.saturating_sub(checkpoint.0),
    })
}

/// The sends as the outbox projection holds them now (caught up by the requests and the
/// scheduler, not here).
pub async fn sends(runtime: &Runtime) -> Result<Vec<SendCounts>, AppError> {
    let campaigns = Campaigns::load(runtime.store.as_ref()).await?;
    let outreach = runtime.outreach.lock().await;
    let mut counts = Vec::new();
    for campaign in campaigns.states.keys() {
        for (channel, (pending, sent, not_sent)) in outreach.counts(campaign) {
            counts.push(SendCounts {
                campaign: campaign.clone(),
                channel,
                pending,
                sent,
                not_sent,
            });
        }
    }
    Ok(counts)
}
