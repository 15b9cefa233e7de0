//! The command handler: load a campaign from its stream, decide, append with the expected
//! version, retry a bounded number of times when someone else appended first. The same command
//! id twice is answered with the first result (the store keeps the outcome by command id).

use std::sync::Arc;

use battleplan_core::campaign::{
    self, decide, evolve, CampaignEvent, CampaignState, Command, Context, EventMeta, Rejection,
};
use battleplan_core::context::{Clock, IdSource};
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, CommandId, EventLog, ExpectedVersion, Metadata, NewEvent,
    RecordedEvent, StoreError, StreamId, StreamVersion,
};
use battleplan_core::outreach::Outreach;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Everything the runtime needs from a store: the log and projection checkpoints.
pub trait Store: EventLog + Checkpoints {}

impl<T: EventLog + Checkpoints> Store for T {}

/// How many times a command is decided again after losing a race for its stream.
pub const MAX_ATTEMPTS: usize = 5;

/// Reads a stream in pieces of this many events.
const READ_BATCH: usize = 1_000;

/// The store, the clock and the id source: what every command needs.
#[derive(Clone)]
pub struct Runtime {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    /// The customer book, kept in memory and caught up from the log before each use.
    pub customers: Arc<tokio::sync::Mutex<CustomerBook>>,
    /// The outbox projection (sends, quota ledger, follow-ups, channel pauses), caught up with
    /// the book. Lock the book first when holding both.
    pub outreach: Arc<tokio::sync::Mutex<Outreach>>,
    /// Task boards and the funnel, caught up with the book (locked after the outbox).
    pub boards: Arc<tokio::sync::Mutex<crate::kernel::work::Boards>>,
    /// The instant of the log's last event (read from the store on first use), held while
    /// appending: a store's instants never go backwards (see [`Runtime::latest_instant`]).
    pub latest: Arc<tokio::sync::Mutex<Option<DateTime<Utc>>>>,
    /// Each campaign's plan in force, read from its stream and parsed once
    /// (`kernel::plans::plan_in_force`).
    pub plans: Arc<
        tokio::sync::Mutex<std::collections::BTreeMap<String, crate::kernel::plans::PlanCache>>,
    >,
    /// The same store's chain walk over its stored bytes, where it has one (`audit verify`).
    pub chain: Option<Arc<dyn ChainCheck>>,
    /// Every campaign's state caught up in memory, shared between questions until the log
    /// moves (see [`Runtime::campaign_states`]).
    pub states: Arc<tokio::sync::Mutex<Option<Arc<crate::kernel::projection::Campaigns>>>>,
    /// The log position the book, the outbox and the boards have all been caught up to by
    /// `kernel::dispatcher::catch_up`, the only one that moves them (never back).
    pub projected: Arc<std::sync::atomic::AtomicU64>,
    /// Events picked out of long streams and kept (`kernel::picked`).
    pub picked: Arc<tokio::sync::Mutex<crate::kernel::picked::Picks>>,
    /// The merchant's key for the links messages carry (`core::outreach::links`), when the
    /// process that owns the store has one (the daemon).
    pub link_key: Option<[u8; 32]>,
    /// The real channels of the process that owns the store, for `channel test` (set by the
    /// host once it has made them). Weak: the channels hold the runtime, and the host holds
    /// them, so the store is let go of when the host is done.
    pub channels: Arc<std::sync::OnceLock<std::sync::Weak<dyn ChannelTest>>>,
    /// Whether this process reads the projections' snapshot before its first catch-up and
    /// saves new ones (`kernel::snapshot`); neither by default.
    pub snapshots: crate::kernel::snapshot::Policy,
    /// The position of the last snapshot read or saved, and whether one was looked for.
    pub snapshot: Arc<SnapshotState>,
}

/// Where a runtime stands with its snapshots.
#[derive(Debug, Default)]
pub struct SnapshotState {
    pub looked: std::sync::atomic::AtomicBool,
    pub at: std::sync::atomic::AtomicU64,
}

/// A test message through a plan channel's real channel (`battleplan channel test`).
#[async_trait::async_trait]
pub trait ChannelTest: Send + Sync {
    /// Where the channel sends (`SMTP host:port`, `webhook URL`) and what it answered; an error
    /// when the plan's channel has no real channel (it writes to the file outbox) or it cannot
    /// be made (a secret missing).
    async fn test(
        &self,
        message: battleplan_core::outreach::port::Message,
    ) -> Result<(String, battleplan_core::outreach::port::Delivery), String>;
}

impl Runtime {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdSource>) -> Runtime {
        Runtime {
            store,
            clock,
            ids,
            customers: Arc::default(),
            outreach: Arc::default(),
            boards: Arc::default(),
            latest: Arc::default(),
            plans: Arc::default(),
            chain: None,
            states: Arc::default(),
            projected: Arc::default(),
            picked: Arc::default(),
            link_key: None,
            channels: Arc::default(),
            snapshots: crate::kernel::snapshot::Policy::default(),
            snapshot: Arc::default(),
        }
    }

    /// The same runtime, reading and saving snapshots as `policy` says.
    pub fn with_snapshots(mut self, policy: crate::kernel::snapshot::Policy) -> Runtime {
        self.snapshots = policy;
        self
    }

    /// The same runtime, signing and checking the links of messages with `key`.
    pub fn with_link_key(mut self, key: [u8; 32]) -> Runtime {
        self.link_key = Some(key);
        self
    }

    /// Every campaign's state, caught up with the log in memory (the daemon's scheduler is the
    /// one that stores the projection): loaded once, then only the events recorded since are
    /// applied, and the same states are shared while the log has not moved.
    pub async fn campaign_states(
        &self,
    ) -> Result<Arc<crate::kernel::projection::Campaigns>, HandleError> {
        let store = self.store.as_ref();
        let mut kept = self.states.lock().await;
        let states = match kept.take() {
            Some(states) => states,
            None => Arc::new(crate::kernel::projection::Campaigns::load(store).await?),
        };
        let states = if store.head().await? > states.checkpoint {
            let mut states = Arc::unwrap_or_clone(states);
            states.catch_up_in_memory(store).await?;
            Arc::new(states)
        } else {
            states
        };
        *kept = Some(states.clone());
        Ok(states)
    }

    /// The same runtime, whose store can also walk its chain over the bytes it stores
    /// (`audit verify`): the daemon's, and a process's own.
    pub fn checking_chain(mut self, chain: Arc<dyn ChainCheck>) -> Runtime {
        self.chain = Some(chain);
        self
    }
}

/// Who asks and why, and the command's id (its idempotency key).
#[derive(Debug, Clone)]
pub struct Who {
    pub actor: String,
    pub reason: Option<String>,
    pub command_id: Option<Uuid>,
    /// The event or command this one follows from.
    pub causation: Option<Uuid>,
    /// A digest of the request that carried the command (HTTP: method, path and body), recorded
    /// as the events' `correlation_id`: the same command id sent again with another request is
    /// refused ([`HandleError::Reused`]) instead of answered with the first one's outcome.
    pub fingerprint: Option<Uuid>,
}

impl Who {
    pub fn by(actor: &str) -> Who {
        Who {
            actor: actor.to_string(),
            reason: None,
            command_id: None,
            causation: None,
            fingerprint: None,
        }
    }
}

tokio::task_local! {
    /// The fingerprint of the request being answered (see [`Who::fingerprint`]), for the
    /// commands recorded through [`Runtime::record`] and the retries found by
    /// [`Runtime::recorded_by`]; set by `app::execute_with`, absent elsewhere.
    static FINGERPRINT: Option<Uuid>;
}

/// Runs `work` as the answer to a request whose fingerprint is `fingerprint`.
pub async fn with_fingerprint<F: std::future::Future>(
    fingerprint: Option<Uuid>,
    work: F,
) -> F::Output {
    FINGERPRINT.scope(fingerprint, work).await
}

/// The fingerprint of the request being answered, if one was given.
pub fn current_fingerprint() -> Option<Uuid> {
    FINGERPRINT
        .try_with(|fingerprint| *fingerprint)
        .ok()
        .flatten()
}

/// Refuses a command id recorded before by another request: events that a fingerprinted
/// request finds under its command id must carry its own fingerprint.
fn same_request(events: &[RecordedEvent], fingerprint: Option<Uuid>) -> Result<(), HandleError> {
    let Some(fingerprint) = fingerprint else {
        return Ok(());
    };
    match events.first() {
        Some(first) if first.metadata.correlation_id != Some(fingerprint) => {
            Err(HandleError::Reused {
                command_id: first.metadata.command_id.0,
            })
        }
        _ => Ok(()),
    }
}

/// What became of a command.
#[derive(Debug)]
pub struct Handled {
    /// The events it recorded (or, for a repeated command id, the ones the first one recorded).
    pub events: Vec<RecordedEvent>,
    /// The campaign after them.
    pub state: CampaignState,
    /// The command id had been handled before: nothing new was written.
    pub repeated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Payload(#[from] battleplan_core::event::upcast::PayloadError),
    #[error("campaign {campaign}: {attempts} attempts lost the race for its stream to other writers; try again")]
    Contended { campaign: String, attempts: usize },
    /// A command id (an HTTP `Idempotency-Key`) used before by a different request.
    #[error("the command id {command_id} (an Idempotency-Key) was used before for a different request; nothing was recorded. Use a new key for a new request")]
    Reused { command_id: Uuid },
}

impl Runtime {
    /// A campaign as its stream says, with the stream's version.
    pub async fn load(
        &self,
        campaign: &str,
    ) -> Result<(CampaignState, StreamVersion), HandleError> {
        let stream = campaign::stream_of(campaign).map_err(Rejection)?;
        let mut state = CampaignState::draft(campaign);
        let mut version = StreamVersion::NONE;
        loop {
            let events = self
                .store
                .read_stream(&stream, version.next(), READ_BATCH)
                .await?;
            let Some(last) = events.last() else { break };
            version = last.version;
            let full = events.len() == READ_BATCH;
            for event in &events {
                if let Some(decoded) = CampaignEvent::decode(event)? {
                    state = evolve(state, &decoded, &EventMeta::of(event));
                }
            }
            if !full {
                break;
            }
        }
        Ok((state, version))
    }

    /// Decides `command` for `campaign` and records its events, durably, all or none.
    pub async fn handle(
        &self,
        campaign: &str,
        command: &Command,
        request: &Who,
    ) -> Result<Handled, HandleError> {
        let stream = campaign::stream_of(campaign).map_err(Rejection)?;
        let command_id = CommandId(
            request
                .command_id
                .unwrap_or_else(|| self.ids.next_id(self.clock.now())),
        );
        for _ in 0..MAX_ATTEMPTS {
            let mut latest = self.latest.lock().await;
            let (state, version) = self.load(campaign).await?;
            let now = self.clock.now();
            let floor = self.latest_instant(&mut latest).await?;
            if floor.is_some_and(|floor| now < floor) {
                // A command retried under its id is answered with what it recorded.
                if let Some(first) = self.first_result(campaign, command_id, version).await? {
                    return Ok(first);
                }
                return Err(back_in_time(now, floor).into());
            }
            let context = Context {
                now,
                actor: request.actor.clone(),
                reason: request.reason.clone(),
            };
            let decided = match decide(&state, command, &context) {
                Ok(decided) => decided,
                Err(rejection) => {
                    // A retried command whose first attempt was recorded is refused by the
                    // state it produced; answer it with what it recorded instead.
                    if let Some(first) = self.first_result(campaign, command_id, version).await? {
                        return Ok(first);
                    }
                    return Err(rejection.into());
                }
            };
            if decided.is_empty() {
                // Nothing to do now may be because this very command did it before.
                if let Some(first) = self.first_result(campaign, command_id, version).await? {
                    return Ok(first);
                }
                return Ok(Handled {
                    events: Vec::new(),
                    state,
                    repeated: false,
                });
            }
            let mut events = Vec::with_capacity(decided.len());
            for event in &decided {
                events.push(event.encode(battleplan_core::event::EventId(self.ids.next_id(now)))?);
            }
            let append = Append {
                stream: stream.clone(),
                expected: if version == StreamVersion::NONE {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                },
                events,
                metadata: Metadata {
                    actor: request.actor.clone(),
                    command_id,
                    causation_id: request.causation,
                    correlation_id: request.fingerprint.or_else(current_fingerprint),
                    reason: request.reason.clone(),
                },
                recorded_at: now,
            };
            let appended = self.store.append(append).await;
            if appended.is_ok() {
                *latest = Some(floor.map_or(now, |floor| floor.max(now)));
            }
            drop(latest);
            match appended {
                Ok(outcome) => {
                    let recorded = self
                        .store
                        .read_stream(
                            &stream,
                            outcome.first_version,
                            (outcome.last_version.0 - outcome.first_version.0 + 1) as usize,
                        )
                        .await?;
                    if outcome.deduplicated {
                        same_request(&recorded, request.fingerprint.or_else(current_fingerprint))?;
                    }
                    let (state, _) = self.load(campaign).await?;
                    return Ok(Handled {
                        events: recorded,
                        state,
                        repeated: outcome.deduplicated,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(HandleError::Contended {
            campaign: campaign.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The events a command id recorded on this campaign's stream, if it did.
    async fn first_result(
        &self,
        campaign: &str,
        command_id: CommandId,
        version: StreamVersion,
    ) -> Result<Option<Handled>, HandleError> {
        let stream = campaign::stream_of(campaign).map_err(Rejection)?;
        let mine = self.recorded_by(&stream, command_id, version).await?;
        if mine.is_empty() {
            return Ok(None);
        }
        let (state, _) = self.load(campaign).await?;
        Ok(Some(Handled {
            events: mine,
            state,
            repeated: true,
        }))
    }
}

impl Runtime {
    /// The events `command_id` recorded on `stream` among its last [`READ_BATCH`] events up to
    /// `version`: a command retried (a client whose daemon stopped before answering runs it
    /// again with the same id) finds what its first try did. People's commands on a stream are
    /// few and a retry follows its first try closely, so looking back that far is enough.
    pub async fn recorded_by(
        &self,
        stream: &StreamId,
        command_id: CommandId,
        version: StreamVersion,
    ) -> Result<Vec<RecordedEvent>, HandleError> {
        if version == StreamVersion::NONE {
            return Ok(Vec::new());
        }
        let from = StreamVersion(version.0.saturating_sub(READ_BATCH as u64 - 1).max(1));
        let events = self.store.read_stream(stream, from, READ_BATCH).await?;
        let mine: Vec<RecordedEvent> = events
            .into_iter()
            .filter(|event| event.metadata.command_id == command_id)
            .collect();
        same_request(&mine, current_fingerprint())?;
        Ok(mine)
    }

    /// [`Runtime::recorded_by`] up to the stream's end, for a command given an id; nothing for
    /// one without.
    pub async fn recorded_before(
        &self,
        stream: &StreamId,
        command_id: Option<Uuid>,
    ) -> Result<Vec<RecordedEvent>, HandleError> {
        let Some(command_id) = command_id else {
            return Ok(Vec::new());
        };
        let version = self.store.stream_version(stream).await?;
        self.recorded_by(stream, CommandId(command_id), version)
            .await
    }

    /// Appends events to a stream whatever its version: the outbox's and the task streams'
    /// facts, which no decision on the stream's own state guards (one dispatcher decides them,
    /// and people's commands check the projections first).
    pub async fn record(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
        actor: &str,
        reason: Option<String>,
        command_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AppendOutcome, HandleError> {
        self.record_at(stream, events, actor, reason, command_id, now)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Runtime::record`], also telling the instant the events were recorded at (`now`, or the
    /// log's last instant if that is later).
    pub async fn record_at(
        &self,
        stream: StreamId,
        events: Vec<NewEvent>,
        actor: &str,
        reason: Option<String>,
        command_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(AppendOutcome, DateTime<Utc>), HandleError> {
        let fingerprint = current_fingerprint();
        let (outcome, at) = self
            .append_in_order_at(Append {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                events,
                metadata: Metadata {
                    actor: actor.to_string(),
                    command_id: CommandId(command_id),
                    causation_id: None,
                    correlation_id: fingerprint,
                    reason,
                },
                recorded_at: now,
            })
            .await?;
        if outcome.deduplicated && fingerprint.is_some() {
            let first = self
                .store
                .read_stream(&stream, outcome.first_version, 1)
                .await?;
            same_request(&first, fingerprint)?;
        }
        Ok((outcome, at))
    }

    /// Appends, keeping the log's instants in order. Refused when the clock itself is behind
    /// the log's last event (a `--clock-at` before what the store already holds); an instant
    /// that is only a little stale (a step decided at its start while another writer appended)
    /// is recorded at the last event's instant instead.
    pub async fn append_in_order(&self, append: Append) -> Result<AppendOutcome, HandleError> {
        self.append_in_order_at(append)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Runtime::append_in_order`], also telling the instant the events were recorded at.
    async fn append_in_order_at(
        &self,
        mut append: Append,
    ) -> Result<(AppendOutcome, DateTime<Utc>), HandleError> {
        let mut latest = self.latest.lock().await;
        let floor = self.latest_instant(&mut latest).await?;
        if let Some(floor) = floor {
            let now = self.clock.now();
            if now < floor {
                return Err(back_in_time(now, Some(floor)).into());
            }
            append.recorded_at = append.recorded_at.max(floor);
        }
        let at = append.recorded_at;
        let outcome = self.store.append(append).await?;
        *latest = Some(at);
        Ok((outcome, at))
    }

    /// The instant of the log's last event, read once and then kept by every append.
    async fn latest_instant(
        &self,
        latest: &mut Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, HandleError> {
        if latest.is_none() {
            let head = self.store.head().await?;
            if head.0 > 0 {
                let before = battleplan_core::event::Position(head.0 - 1);
                *latest = self
                    .store
                    .read_all(before, 1)
                    .await?
                    .first()
                    .map(|event| event.recorded_at);
            }
        }
        Ok(*latest)
    }
}

/// The refusal of an instant before the log's last: what `--clock-at` may not do.
fn back_in_time(now: DateTime<Utc>, floor: Option<DateTime<Utc>>) -> Rejection {
    Rejection(format!(
        "the clock says {} but the log's last event was recorded at {}: a store's record never goes back in time; rehearse at an earlier instant in a data directory of its own (--data DIR)",
        now.to_rfc3339(),
        floor.map(|floor| floor.to_rfc3339()).unwrap_or_default()
    ))
}

/// A command id that is the same every time for the same automated decision, so a retry after
/// a crash is recognised by the store: blake3 of the words, as a UUID (version 8, custom).
pub fn derived_command_id(words: &str) -> Uuid {
    let hash = blake3::hash(words.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

/// What a store can check that the ports cannot: the chain over the bytes it stores. A walk of
/// the whole log: the sled store's blocks, so it runs on a blocking thread.
#[async_trait::async_trait]
pub trait ChainCheck: Send + Sync {
    async fn verify_chain(&self) -> Result<battleplan_adapters::VerifyReport, StoreError>;
}

#[async_trait::async_trait]
impl ChainCheck for battleplan_adapters::SledEventLog {
    async fn verify_chain(&self) -> Result<battleplan_adapters::VerifyReport, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.verify())
            .await
            .map_err(|error| StoreError::Io(format!("the chain walk stopped: {error}")))?
    }
}

#[async_trait::async_trait]
impl ChainCheck for battleplan_adapters::PgEventLog {
    async fn verify_chain(&self) -> Result<battleplan_adapters::VerifyReport, StoreError> {
        self.verify().await
    }
}
