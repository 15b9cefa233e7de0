//! Several nodes on one PostgreSQL store (docs/scale-out.md): which campaigns this node acts
//! on, by a lease per campaign, and the fencing token its automated appends carry.
//!
//! A node acts on a campaign (the scheduler's transitions, the dispatcher's decisions and sends)
//! only while it holds the campaign's lease, which it renews every third of the lease's length.
//! A node that stops renewing (killed, paused, cut off) loses its campaigns once the lease runs
//! out, by the database's clock, and another node takes them with the next epoch. Every append
//! of this node's scheduler and dispatcher to a campaign's streams goes through
//! [`FencedStore`], which hands the store the epoch it holds: an old owner's append after a
//! takeover is refused inside its transaction (`StoreError::Fenced`), and the node drops the
//! campaign. People's commands need no lease (any node takes them; the expected version keeps
//! them safe), so they use the unfenced store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use battleplan_adapters::postgres_store::Fence;
use battleplan_adapters::PgEventLog;
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, Position, RecordedEvent, StoreError, StoreResult, StreamId,
    StreamVersion,
};
use tokio::sync::watch;

/// The campaign a stream belongs to, for the streams a campaign's owner writes.
pub fn campaign_of(stream: &StreamId) -> Option<&str> {
    ["campaign-", "outreach-", "tasks-", "reports-"]
        .iter()
        .find_map(|prefix| stream.as_str().strip_prefix(prefix))
}

/// The lease scope of a campaign.
pub fn scope_of(campaign: &str) -> String {
    format!("campaign:{campaign}")
}

/// The leases this node holds.
pub struct Ownership {
    node: String,
    /// What this process holds its leases as: the node's name, the process id and a random
    /// part, so that a node started again under its name is a new holder (its old leases run
    /// out first) and two processes given one name cannot both hold a campaign.
    holder: String,
    store: PgEventLog,
    lease: Duration,
    /// Each campaign held, its fence, and when the request that last granted it began: a
    /// node that cannot renew (the database out of reach) stops acting on its own once the
    /// lease may have run out, before another node can have taken it.
    held: RwLock<HashMap<String, (Fence, Instant)>>,
    /// Moves whenever a campaign is taken or lost, to wake the scheduler.
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Ownership")
            .field("node", &self.node)
            .field("lease", &self.lease)
            .finish()
    }
}

impl Ownership {
    pub fn new(node: &str, store: PgEventLog, lease: Duration) -> Ownership {
        Ownership {
            node: node.to_string(),
            holder: format!(
                "{node}#{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            store,
            lease,
            held: RwLock::default(),
            changed: watch::channel(0).0,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// How often leases are renewed: a third of their length.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Whether this node acts on `campaign` now.
    pub fn owns(&self, campaign: &str) -> bool {
        self.fence(campaign).is_some()
    }

    /// The fence an append to `campaign`'s streams carries, if this node holds it and its lease
    /// has surely not run out (nine tenths of it since it was last granted).
    pub fn fence(&self, campaign: &str) -> Option<Fence> {
        let held = self.held.read().ok()?;
        let (fence, granted) = held.get(campaign)?;
        (granted.elapsed() < self.lease.mul_f64(0.9)).then(|| fence.clone())
    }

    /// Wakes when campaigns are taken or lost.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The campaign is no longer this node's (its append was fenced off, or renewing failed).
    pub fn lost(&self, campaign: &str) {
        let removed = self
            .held
            .write()
            .map(|mut held| held.remove(campaign).is_some())
            .unwrap_or(false);
        if removed {
            tracing::warn!(
                "{campaign}: the lease passed to another node; node {} stops acting on it",
                self.node
            );
            self.changed.send_modify(|count| *count += 1);
        }
    }

    /// Takes or renews the lease on this node's name (`node:NAME`): `false` while another
    /// process holds it (a node of that name runs, or died less than a lease ago).
    pub async fn claim_name(&self) -> StoreResult<bool> {
        Ok(self
            .store
            .acquire_lease(
                &format!("node:{}", self.node),
                &self.holder,
                self.lease.as_secs_f64(),
            )
            .await?
            .is_some())
    }

    /// One round: renews the leases held, takes those of `campaigns` that are free or ran
    /// out. Returns whether anything changed.
    pub async fn round(&self, campaigns: &[String]) -> StoreResult<bool> {
        let seconds = self.lease.as_secs_f64();
        let mut changed = false;
        if !self.claim_name().await? {
            // Another process runs under this node's name: neither may act as it.
            tracing::error!(
                "node {}: another process holds this node's name; this one stops acting on its campaigns",
                self.node
            );
            let campaigns: Vec<String> = self
                .held
                .read()
                .map(|held| held.keys().cloned().collect())
                .unwrap_or_default();
            for campaign in campaigns {
                self.lost(&campaign);
            }
            return Ok(true);
        }
        for campaign in campaigns {
            let asked = Instant::now();
            let granted = self
                .store
                .acquire_lease(&scope_of(campaign), &self.holder, seconds)
                .await?;
            // What this node held, run out or not: a lease that passed on is said to have.
            let before = self
                .held
                .read()
                .ok()
                .and_then(|held| held.get(campaign).map(|(fence, _)| fence.clone()));
            match (granted, before) {
                (Some(fence), Some(held)) if fence == held => {
                    if let Ok(mut held) = self.held.write() {
                        held.insert(campaign.clone(), (fence, asked));
                    }
                }
                (Some(fence), _) => {
                    tracing::info!(
                        "{campaign}: node {} holds the lease (epoch {})",
                        self.node,
                        fence.epoch
                    );
                    if let Ok(mut held) = self.held.write() {
                        held.insert(campaign.clone(), (fence, asked));
                    }
                    changed = true;
                }
                (None, Some(_)) => {
                    self.lost(campaign);
                    changed = true;
                }
                (None, None) => {}
            }
        }
        if changed {
            self.changed.send_modify(|count| *count += 1);
        }
        Ok(changed)
    }

    /// Lets every lease go (a clean stop), so another node takes over at once.
    pub async fn release_all(&self) {
        let campaigns: Vec<String> = self
            .held
            .read()
            .map(|held| held.keys().cloned().collect())
            .unwrap_or_default();
        for campaign in campaigns {
            let _ = self
                .store
                .release_lease(&scope_of(&campaign), &self.holder)
                .await;
        }
        let _ = self
            .store
            .release_lease(&format!("node:{}", self.node), &self.holder)
            .await;
    }
}

/// The store as this node's scheduler and dispatcher see it: appends to a campaign's streams
/// carry the fence of its lease (refused when this node does not hold it), and the stored
/// projections are this node's own (`NAME@node`), since each node keeps its own.
pub struct FencedStore {
    store: PgEventLog,
    ownership: Arc<Ownership>,
}

impl FencedStore {
    pub fn new(store: PgEventLog, ownership: Arc<Ownership>) -> FencedStore {
        FencedStore { store, ownership }
    }

    fn projection(&self, name: &str) -> String {
        format!("{name}@{}", self.ownership.node)
    }
}

#[async_trait]
impl EventAppender for FencedStore {
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome> {
        let Some(campaign) = campaign_of(&append.stream).map(str::to_string) else {
            return self.store.append(append).await;
        };
        let Some(fence) = self.ownership.fence(&campaign) else {
            return Err(StoreError::Fenced {
                scope: scope_of(&campaign),
                held: 0,
                current: 0,
            });
        };
        let result = self.store.append_fenced(append, Some(fence)).await;
        if let Err(StoreError::Fenced { held, current, .. }) = &result {
            tracing::warn!(
                "{campaign}: an append under the lease's epoch {held} was refused by the store: the lease is at epoch {current}"
            );
            self.ownership.lost(&campaign);
        }
        result
    }
}

#[async_trait]
impl EventReader for FencedStore {
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        self.store.read_stream(stream, from, limit).await
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        self.store.read_all(after, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        self.store.stream_version(stream).await
    }

    async fn head(&self) -> StoreResult<Position> {
        self.store.head().await
    }

    async fn wait_beyond(&self, position: Position) -> StoreResult<()> {
        self.store.wait_beyond(position).await
    }
}

#[async_trait]
impl Checkpoints for FencedStore {
    async fn checkpoint(&self, projection: &str) -> StoreResult<Position> {
        self.store.checkpoint(&self.projection(projection)).await
    }

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.store.get(&self.projection(projection), key).await
    }

    async fn commit(
        &self,
        projection: &str,
        checkpoint: Position,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> StoreResult<()> {
        self.store
            .commit(&self.projection(projection), checkpoint, changes)
            .await
    }

    async fn scan(&self, projection: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store.scan(&self.projection(projection)).await
    }

    async fn reset(&self, projection: &str) -> StoreResult<()> {
        self.store.reset(&self.projection(projection)).await
    }

    async fn sync(&self) -> StoreResult<()> {
        self.store.sync().await
    }
}
