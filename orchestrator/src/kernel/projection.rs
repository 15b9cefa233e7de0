//! The campaigns projection: every campaign's state, kept in the store beside the log with the
//! position it reflects (changed together, atomically), so that `status` and the scheduler do
//! not replay the whole log each time. It can be dropped and rebuilt from the log at any time
//! and gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use battleplan_core::campaign::{self, evolve, CampaignEvent, CampaignState, EventMeta};
use battleplan_core::event::{Position, RecordedEvent};

use crate::kernel::runtime::{HandleError, Store};

pub const NAME: &str = "campaigns";

/// Events read per step of a catch-up.
const BATCH: usize = 10_000;

/// Every campaign's state, as of `checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct Campaigns {
    pub states: BTreeMap<String, CampaignState>,
    pub checkpoint: Position,
}

impl Campaigns {
    /// The projection as stored, without catching up.
    pub async fn load(store: &dyn Store) -> Result<Campaigns, HandleError> {
        let checkpoint = store.checkpoint(NAME).await?;
        let mut states = BTreeMap::new();
        for (key, value) in store.scan(NAME).await? {
            let id = String::from_utf8_lossy(&key).into_owned();
            match serde_json::from_slice::<CampaignState>(&value) {
                Ok(state) => {
                    states.insert(id, state);
                }
                Err(_) => {
                    // Written by another build: rebuild from the log rather than misread.
                    store.reset(NAME).await?;
                    return Ok(Campaigns::default());
                }
            }
        }
        Ok(Campaigns { states, checkpoint })
    }

    /// Folds one event of the log into the states (the projection's one rule, also used by
    /// `audit verify`'s replay). Returns the campaign it changed, if any.
    pub fn apply(
        &mut self,
        event: &RecordedEvent,
    ) -> Result<Option<String>, battleplan_core::event::upcast::PayloadError> {
        let Some(id) = campaign::campaign_of(&event.stream) else {
            return Ok(None);
        };
        let Some(decoded) = CampaignEvent::decode(event)? else {
            return Ok(None);
        };
        let state = self
            .states
            .remove(id)
            .unwrap_or_else(|| CampaignState::draft(id));
        self.states.insert(
            id.to_string(),
            evolve(state, &decoded, &EventMeta::of(event)),
        );
        Ok(Some(id.to_string()))
    }

    /// Stores every state, with `at` as the checkpoint: the projection folded from a log this
    /// process laid out itself (an import, [`Campaigns::apply`] on each of its events), not
    /// read back. Nothing for an empty log, as [`Campaigns::catch_up`] stores nothing.
    pub async fn store_whole(
        &mut self,
        store: &dyn Store,
        at: Position,
    ) -> Result<(), battleplan_core::event::StoreError> {
        if at == Position::START {
            return Ok(());
        }
        let mut changes = Vec::with_capacity(self.states.len());
        for (id, state) in &self.states {
            let bytes = serde_json::to_vec(state).map_err(|error| {
                battleplan_core::event::StoreError::Io(format!(
                    "cannot encode campaign {id}: {error}"
                ))
            })?;
            changes.push((id.as_bytes().to_vec(), Some(bytes)));
        }
        store.commit(NAME, at, changes).await?;
        self.checkpoint = at;
        Ok(())
    }

    /// Applies every durable event after the checkpoint and stores the result with the new
    /// checkpoint. Returns the campaigns that changed.
    pub async fn catch_up(&mut self, store: &dyn Store) -> Result<BTreeSet<String>, HandleError> {
        self.follow(store, true).await
    }

    /// Catches up without storing: for readers while the daemon's scheduler owns the stored
    /// projection (two writers would race on its checkpoint).
    pub async fn catch_up_in_memory(
        &mut self,
        store: &dyn Store,
    ) -> Result<BTreeSet<String>, HandleError> {
        self.follow(store, false).await
    }

    async fn follow(
        &mut self,
        store: &dyn Store,
        persist: bool,
    ) -> Result<BTreeSet<String>, HandleError> {
        let mut changed = BTreeSet::new();
        loop {
            let events = store.read_all(self.checkpoint, BATCH).await?;
            let Some(last) = events.last() else { break };
            let last_position = last.position;
            let mut touched = BTreeSet::new();
            for event in &events {
                if let Some(id) = self.apply(event)? {
                    touched.insert(id);
                }
            }
            let mut changes = Vec::with_capacity(touched.len());
            for id in touched.iter().filter(|_| persist) {
                if let Some(state) = self.states.get(id) {
                    let bytes = serde_json::to_vec(state).map_err(|error| {
                        battleplan_core::event::StoreError::Io(format!(
                            "cannot encode campaign {id}: {error}"
                        ))
                    })?;
                    changes.push((id.as_bytes().to_vec(), Some(bytes)));
                }
            }
            if persist {
                store.commit(NAME, last_position, changes).await?;
            }
            self.checkpoint = last_position;
            let full = events.len() == BATCH;
            changed.extend(touched);
            if !full {
                break;
            }
        }
        Ok(changed)
    }
}
