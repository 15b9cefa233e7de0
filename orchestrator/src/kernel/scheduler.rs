//! The scheduler: asks the campaigns projection for each campaign's next due instant, waits for
//! the earliest, and issues the command as `system:scheduler`. On start it first catches up
//! everything overdue, in order (by instant, then campaign), each event recording how late it
//! is. Command ids are derived from the decision itself, so a decision retried after a crash is
//! recognised by the store and recorded once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use battleplan_core::campaign::decide::step_key;
use battleplan_core::campaign::timeline::human_duration;
use battleplan_core::campaign::{next_due, CampaignEvent, Command, Due};
use battleplan_core::context::ManualClock;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use battleplan_core::outreach::port::Channel;

use crate::kernel::dispatcher::Dispatcher;
use crate::kernel::ownership::Ownership;
use crate::kernel::projection::Campaigns;
use crate::kernel::runtime::{derived_command_id, HandleError, Runtime, Who};

pub const ACTOR: &str = "system:scheduler";

/// The longest single wait: a wall-clock jump is noticed within this.
const MAX_WAIT: StdDuration = StdDuration::from_secs(60);

/// How time passes for the scheduler.
#[derive(Clone)]
pub enum Timing {
    /// The system clock; wait for real.
    Real,
    /// A manual clock that jumps straight to each due instant (`run --simulate`).
    Simulated(Arc<ManualClock>),
    /// A manual clock that stays where it is (`--clock-at`, for tests and rehearsals).
    Frozen,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub transitions: u64,
    pub caught_up: u64,
    /// Messages sent to customers, and to staff.
    pub sent: u64,
    pub staff: u64,
}

pub struct Scheduler {
    runtime: Runtime,
    timing: Timing,
    until: Option<DateTime<Utc>>,
    campaigns: Campaigns,
    dues: BTreeSet<(DateTime<Utc>, String)>,
    due_of: HashMap<String, DateTime<Utc>>,
    refused: HashSet<(String, DateTime<Utc>)>,
    summary: Summary,
    dispatcher: Option<Dispatcher>,
    /// Until the first step after `start`: what fires is caught up after downtime.
    starting: bool,
    /// On a store shared by several nodes: the campaigns this node acts on (all when `None`).
    ownership: Option<Arc<Ownership>>,
    /// Told when campaigns are taken or lost (subscribed once, so no change is missed between
    /// two waits).
    owned: Option<watch::Receiver<u64>>,
}

impl Scheduler {
    pub fn new(runtime: Runtime, timing: Timing, until: Option<DateTime<Utc>>) -> Scheduler {
        Scheduler {
            runtime,
            timing,
            until,
            campaigns: Campaigns::default(),
            dues: BTreeSet::new(),
            due_of: HashMap::new(),
            refused: HashSet::new(),
            summary: Summary::default(),
            dispatcher: None,
            starting: false,
            ownership: None,
            owned: None,
        }
    }

    /// Acts only on the campaigns whose lease this node holds (several nodes on one store),
    /// its own runtime's appends fenced; `answers` is the same runtime unfenced, for what the
    /// node's channel answered. Call after [`Scheduler::with_outbox`].
    pub fn with_ownership(mut self, ownership: Arc<Ownership>, answers: Runtime) -> Scheduler {
        if let Some(dispatcher) = self.dispatcher.as_mut() {
            dispatcher.ownership = Some(ownership.clone());
            dispatcher.answers = Some(answers);
        }
        self.owned = Some(ownership.subscribe());
        self.ownership = Some(ownership);
        self
    }

    fn owns(&self, campaign: &str) -> bool {
        self.ownership
            .as_ref()
            .is_none_or(|ownership| ownership.owns(campaign))
    }

    /// The first step due of a campaign this node acts on.
    fn first_due(&self) -> Option<(DateTime<Utc>, String)> {
        self.dues.iter().find(|(_, id)| self.owns(id)).cloned()
    }

    /// Acts on the plans too: reach-outs, follow-ups and staff messages through `channel`.
    pub fn with_outbox(mut self, channel: Arc<dyn Channel>) -> Scheduler {
        self.dispatcher = Some(Dispatcher::new(self.runtime.clone(), channel));
        self
    }

    /// Runs the dispatcher for `now`; returns the next instant it has something due.
    async fn dispatch(&mut self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, HandleError> {
        let Some(dispatcher) = self.dispatcher.as_mut() else {
            return Ok(None);
        };
        let activity = dispatcher.step(&self.campaigns, now).await?;
        if !activity.is_empty() {
            self.summary.sent += activity.sent;
            self.summary.staff += activity.staff;
        }
        dispatcher.next_due(&self.campaigns, now).await
    }

    fn update(&mut self, id: &str) {
        if let Some(at) = self.due_of.remove(id) {
            self.dues.remove(&(at, id.to_string()));
        }
        if let Some(due) = self.campaigns.states.get(id).and_then(next_due) {
            if !self.refused.contains(&(id.to_string(), due.at)) {
                self.dues.insert((due.at, id.to_string()));
                self.due_of.insert(id.to_string(), due.at);
            }
        }
    }

    async fn catch_up(&mut self) -> Result<(), HandleError> {
        let changed = self.campaigns.catch_up(self.runtime.store.as_ref()).await?;
        for id in changed {
            self.update(&id);
        }
        Ok(())
    }

    /// The next instant something is due, if any.
    pub fn next_instant(&self) -> Option<DateTime<Utc>> {
        self.first_due().map(|(at, _)| at)
    }

    async fn fire(&mut self, id: &str) -> Result<(), HandleError> {
        let Some(state) = self.campaigns.states.get(id) else {
            return Ok(());
        };
        let Some(Due { at, command }) = next_due(state) else {
            return Ok(());
        };
        let what = match &command {
            Command::Enter { step, .. } => format!("enter {}", step_key(step)),
            _ => "complete".to_string(),
        };
        let words = format!("{id}|{what}|{}|v{}", at.to_rfc3339(), state.plan_version);
        let request = Who {
            actor: ACTOR.to_string(),
            reason: None,
            command_id: Some(derived_command_id(&words)),
            causation: None,
            fingerprint: None,
        };
        let zone = state.zone();
        match self.runtime.handle(id, &command, &request).await {
            Ok(handled) => {
                for event in &handled.events {
                    if let Ok(Some(decoded)) = CampaignEvent::decode(event) {
                        tracing::info!(
                            "{id}: {} (position {})",
                            decoded.summary(zone),
                            event.position
                        );
                    }
                }
                if !handled.repeated {
                    self.summary.transitions += 1;
                }
            }
            Err(HandleError::Rejected(rejection)) => {
                // Someone acted first (a pause, a revision): the next catch-up shows it.
                tracing::warn!("{id}: the scheduler's step was refused: {rejection}");
                self.refused.insert((id.to_string(), at));
            }
            Err(HandleError::Store(battleplan_core::event::StoreError::Fenced { .. })) => {
                // Another node holds the campaign now (`FencedStore` has let it go): it acts.
                if let Some(ownership) = &self.ownership {
                    ownership.lost(id);
                }
            }
            Err(other) => return Err(other),
        }
        self.catch_up().await?;
        self.update(id);
        Ok(())
    }

    /// Runs until shut down, until `until` passes, or (simulated) until nothing is left to do.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Summary, HandleError> {
        self.start().await?;
        self.steps(&mut shutdown).await
    }

    /// What a daemon does when it starts: the stored campaigns projection, caught up with the
    /// log. The first step after it catches up every overdue step.
    pub async fn start(&mut self) -> Result<(), HandleError> {
        if let Some(ownership) = &self.ownership {
            // Before anything is decided: the messages this node handed over are its own.
            self.runtime.outreach.lock().await.here = Some(ownership.node().into());
        }
        self.campaigns = Campaigns::load(self.runtime.store.as_ref()).await?;
        let ids: Vec<String> = self.campaigns.states.keys().cloned().collect();
        for id in ids {
            self.update(&id);
        }
        self.catch_up().await?;
        self.starting = true;
        Ok(())
    }

    /// A started, simulated scheduler moved on to `until`: every step and send due up to and
    /// including it, in order, the clock jumping from one to the next (the scenario runner's
    /// discrete-event loop). Returns what the run has done so far.
    pub async fn advance_to(&mut self, until: DateTime<Utc>) -> Result<Summary, HandleError> {
        self.until = Some(until);
        let (_keep, mut shutdown) = watch::channel(false);
        self.steps(&mut shutdown).await
    }

    async fn steps(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Summary, HandleError> {
        loop {
            let now = self.runtime.clock.now();
            while let Some((at, id)) = self.first_due() {
                if at > now || *shutdown.borrow() {
                    break;
                }
                let late = (now - at).num_milliseconds();
                self.fire(&id).await?;
                if self.starting {
                    self.summary.caught_up += 1;
                    tracing::debug!("{id}: caught up a step {} late", human_duration(late));
                }
            }
            let work_due = self.dispatch(now).await?;
            if self.starting {
                tracing::info!(
                    "caught up: {} overdue step(s) recorded; {} campaign(s) watched",
                    self.summary.caught_up,
                    self.campaigns.states.len()
                );
                self.starting = false;
            }
            if *shutdown.borrow() {
                return Ok(self.summary);
            }
            if self.until.is_some_and(|until| now >= until) {
                return Ok(self.summary);
            }
            let next = match (self.next_instant(), work_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match &self.timing {
                Timing::Simulated(clock) => {
                    let target = match (next, self.until) {
                        (Some(next), Some(until)) => Some(next.min(until)),
                        (Some(next), None) => Some(next),
                        (None, Some(until)) => Some(until),
                        (None, None) => None,
                    };
                    match target {
                        Some(target) if target > now => clock.set(target),
                        Some(_) => {}
                        None => return Ok(self.summary),
                    }
                    // Let control requests and new events in between steps.
                    tokio::task::yield_now().await;
                    self.catch_up().await?;
                }
                Timing::Real | Timing::Frozen => {
                    let wake = match (next, self.until) {
                        (Some(next), Some(until)) => Some(next.min(until)),
                        (next, until) => next.or(until),
                    };
                    let wait = match (&self.timing, wake) {
                        (Timing::Real, Some(wake)) => (wake - now)
                            .to_std()
                            .unwrap_or(StdDuration::ZERO)
                            .min(MAX_WAIT),
                        (Timing::Real, None) => MAX_WAIT,
                        _ => StdDuration::MAX,
                    };
                    let head = self.campaigns.checkpoint;
                    let store = self.runtime.store.clone();
                    let mut owned = self.owned.take();
                    let woke = {
                        let ownership_changed = async {
                            match owned.as_mut() {
                                Some(owned) => {
                                    let _ = owned.changed().await;
                                }
                                None => std::future::pending::<()>().await,
                            }
                        };
                        tokio::select! {
                            _ = ownership_changed => Woke::Other,
                            _ = sleep(wait) => Woke::Other,
                            waited = store.wait_beyond(head) => Woke::Log(waited),
                            changed = shutdown.changed() => Woke::Shutdown(changed.is_err()),
                        }
                    };
                    self.owned = owned;
                    match woke {
                        Woke::Log(waited) => {
                            waited?;
                            self.catch_up().await?;
                        }
                        Woke::Shutdown(true) => return Ok(self.summary),
                        Woke::Shutdown(false) | Woke::Other => {}
                    }
                }
            }
        }
    }
}

/// What ended a wait.
enum Woke {
    /// The log moved.
    Log(Result<(), battleplan_core::event::StoreError>),
    /// The shutdown signal changed (`true`: its sender is gone).
    Shutdown(bool),
    /// Time passed, or this node took or lost a campaign.
    Other,
}

async fn sleep(duration: StdDuration) {
    if duration == StdDuration::MAX {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(duration).await;
    }
}
