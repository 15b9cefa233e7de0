//! The outbox dispatcher, run by the scheduler at each instant something is due: it plans the
//! reach-outs whose window opened, decides the follow-ups due, checks the bounce guard, then
//! sends what is due through the channel port. Every step is first recorded as events (a planned
//! send with its idempotency key, or the typed reason a customer is not sent), then performed,
//! then its outcome recorded (`MessageSent`). A crash at any point leaves either a decision not
//! yet performed (performed after restart; the channel recognises a key it already has) or
//! nothing at all. A channel that fails (the file outbox on a full disk) took none of the batch:
//! nothing is recorded as sent, and the same sends are handed over again 30 s later.

use std::collections::HashMap;
use std::sync::Arc;

use battleplan_core::campaign::{CampaignState, Status};
use battleplan_core::customer::events::{CustomerEvent, OutcomeKind, OutcomeRecorded};
use battleplan_core::event::EventId;
use battleplan_core::outreach::decide::{self, Dispatch};
use battleplan_core::outreach::events::{
    stream_of, DeliveryDeferred, HandedOver, MessageSent, NotSent, NotSentReason, OutreachEvent,
    SendPlanned,
};
use battleplan_core::outreach::port::{retry_delay_ms, Channel, Delivery, Message, Refusal};
use battleplan_core::outreach::render::Renderer;
use battleplan_core::plan::model::{ChannelKind, PhaseKind, UnknownOutcome};
use battleplan_core::plan::template::on_deep_stack;
use battleplan_core::plan::Plan;
use battleplan_core::report::schedule as report_schedule;
use battleplan_core::task::{due_reminders, next_reminder_at, TaskEvent};
use chrono::{DateTime, Duration, Utc};

use crate::kernel::projection::Campaigns;
use crate::kernel::runtime::{derived_command_id, HandleError, Runtime};
use crate::kernel::work::Boards;
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::event::Position;
use battleplan_core::outreach::Outreach;

pub const ACTOR: &str = "system:dispatcher";

/// Sends decided and handed to the channel at a time.
pub const DISPATCH_BATCH: usize = 500;

/// Events in one append: small enough to stay one chunk of the store.
const APPEND_EVENTS: usize = 200;

/// How long to wait before trying a channel that failed again.
const RETRY_AFTER_SECONDS: i64 = 30;

/// What a step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub planned: u64,
    pub not_sent: u64,
    pub sent: u64,
    pub follow_ups: u64,
    pub staff: u64,
}

impl Activity {
    pub fn is_empty(&self) -> bool {
        *self == Activity::default()
    }
}

/// A failpoint for the crash tests: with this variable set, the dispatcher stops for good right
/// after a channel took a batch and before it records `MessageSent`, so that a SIGKILL lands in
/// the one window where a message is out but the log does not say so.
pub const HOLD_AFTER_DELIVERY: &str = "BATTLEPLAN_FAILPOINT_HOLD_AFTER_DELIVERY";

pub struct Dispatcher {
    runtime: Runtime,
    channel: Arc<dyn Channel>,
    plans: HashMap<String, (String, usize, Arc<Plan>)>,
    retry_at: Option<DateTime<Utc>>,
    pub total: Activity,
    /// On a store shared by several nodes: the campaigns this node acts on (all when `None`).
    pub ownership: Option<Arc<crate::kernel::ownership::Ownership>>,
    /// On a store shared by several nodes: the runtime whose appends carry no fence, for what
    /// this node's channel answered (a fact, recorded even after the campaign passed to
    /// another node; see `HandedOver`).
    pub answers: Option<Runtime>,
}

impl Dispatcher {
    pub fn new(runtime: Runtime, channel: Arc<dyn Channel>) -> Dispatcher {
        Dispatcher {
            runtime,
            channel,
            plans: HashMap::new(),
            retry_at: None,
            total: Activity::default(),
            ownership: None,
            answers: None,
        }
    }

    /// The plan in force for a campaign, with its shifting pauses applied.
    async fn plan_of(
        &mut self,
        id: &str,
        state: &CampaignState,
    ) -> Result<Option<Arc<Plan>>, HandleError> {
        if state.plan_version == 0 {
            return Ok(None);
        }
        if let Some((digest, shifts, plan)) = self.plans.get(id) {
            if *digest == state.plan_digest && *shifts == state.shifts.len() {
                return Ok(Some(plan.clone()));
            }
        }
        let Some(plan) = crate::kernel::plans::plan_in_force(&self.runtime, id).await? else {
            return Ok(None);
        };
        // In force: shifted by the campaign's shifting pauses already.
        self.plans.insert(
            id.to_string(),
            (state.plan_digest.clone(), state.shifts.len(), plan.clone()),
        );
        Ok(Some(plan))
    }

    /// Does everything due at `now` for every campaign.
    pub async fn step(
        &mut self,
        campaigns: &Campaigns,
        now: DateTime<Utc>,
    ) -> Result<Activity, HandleError> {
        if self.retry_at.is_some_and(|at| now < at) {
            return Ok(Activity::default());
        }
        self.retry_at = None;
        // The campaigns held before catching up: the log then holds everything their previous
        // owner recorded (a takeover commits only after the old owner's last append), so a
        // campaign taken in the middle of this step waits for the next.
        let held: std::collections::HashSet<String> = campaigns
            .states
            .keys()
            .filter(|id| self.owns(id))
            .cloned()
            .collect();
        catch_up(&self.runtime).await?;
        let mut activity = Activity::default();
        for (id, state) in &campaigns.states {
            if !held.contains(id) || !self.owns(id) {
                if self.ownership.is_some() {
                    self.settle(id, state, now, &mut activity).await?;
                }
                continue;
            }
            let Some(plan) = self.plan_of(id, state).await? else {
                continue;
            };
            match self.campaign_step(&plan, state, now, &mut activity).await {
                Err(HandleError::Store(battleplan_core::event::StoreError::Fenced { .. })) => {
                    // Another node took the campaign (`FencedStore` has let it go): it acts.
                }
                other => other?,
            }
        }
        self.staff_step(now, &mut activity).await?;
        self.total.planned += activity.planned;
        self.total.not_sent += activity.not_sent;
        self.total.sent += activity.sent;
        self.total.follow_ups += activity.follow_ups;
        self.total.staff += activity.staff;
        Ok(activity)
    }

    async fn campaign_step(
        &mut self,
        plan: &Arc<Plan>,
        state: &CampaignState,
        now: DateTime<Utc>,
        activity: &mut Activity,
    ) -> Result<(), HandleError> {
        let campaign = plan.campaign.id.clone();
        // 0. Task reminders and escalations due (not while paused, not after the end).
        if matches!(state.status, Status::Scheduled | Status::Running { .. }) {
            let reminders = {
                let boards = self.runtime.boards.lock().await;
                due_reminders(plan, &boards.board(&campaign), &state.skipped, now)
            };
            if !reminders.is_empty() {
                self.record_tasks(&campaign, reminders, now).await?;
            }
        }
        // 0b. The weekly report due (`[reports.weekly]`): decided once, the report in the
        //     decision, and sent by the staff step. Not after a cancel; through a pause (the
        //     boss still reads the week), and once after the end for the last week.
        if plan.weekly_report.is_some() && !matches!(state.status, Status::Cancelled { .. }) {
            let planned = {
                let outreach = self.runtime.outreach.lock().await;
                let boards = self.runtime.boards.lock().await;
                report_schedule::due_report(plan, &boards.reports, now).map(|(slot, superseded)| {
                    let board = boards.board(&campaign);
                    let report =
                        battleplan_core::report::weekly(&battleplan_core::report::Inputs {
                            plan,
                            week: slot.week,
                            now,
                            position: boards.position.0,
                            funnel: &boards.funnel,
                            shop: &boards.shop,
                            outreach: &outreach,
                            board: &board,
                            skipped: &state.skipped,
                            offers: &boards.offers,
                        });
                    report_schedule::decide(plan, slot, superseded, report, now)
                })
            };
            if let Some(planned) = planned {
                self.record_report(planned, now).await?;
            }
        }
        // 1. Reach-outs whose window opened.
        let due: Vec<String> = {
            let outreach = self.runtime.outreach.lock().await;
            decide::reach_outs_due(plan, state, &outreach, now)
                .into_iter()
                .map(|reach_out| reach_out.id.clone())
                .collect()
        };
        for reach_out in due {
            let planning = {
                let book = self.runtime.customers.lock().await;
                let outreach = self.runtime.outreach.lock().await;
                decide::prepare_reach_out(plan, state, &book, &outreach, &reach_out, now)
            };
            let planning = match planning {
                Ok(planning) => planning,
                Err(message) => {
                    tracing::warn!(
                        "{campaign}: reach-out {reach_out} cannot be planned: {message}"
                    );
                    continue;
                }
            };
            // The events made and recorded a chunk at a time: a million members are never a
            // million events in memory. Chunks are whole appends, so the appends (and their
            // command ids) are those of one recording of every event.
            // The book is held from the first chunk to the last: every event's words are made
            // from the book as it was when the audience was decided (an import waits).
            let (mut planned, mut not_sent) = (0, 0);
            let mut start = 0;
            let stream = stream_of(&campaign).map_err(battleplan_core::campaign::Rejection)?;
            let mut book = self.runtime.customers.lock().await;
            while start < planning.len() {
                let end = (start + PLANNING_CHUNK).min(planning.len());
                let events = planning.events(plan, &book, start..end);
                let events = decide::skip_if_advanced_past(plan, state, &reach_out, events);
                let counted = count(&events);
                planned += counted.0;
                not_sent += counted.1;
                let mut events = events.into_iter().map(Recorded::from).peekable();
                while events.peek().is_some() {
                    let chunk: Vec<Recorded> = events.by_ref().take(APPEND_EVENTS).collect();
                    self.append_own(&self.runtime, &stream, &campaign, chunk, now, &mut book)
                        .await?;
                }
                start = end;
            }
            drop(book);
            catch_up(&self.runtime).await?;
            tracing::info!(
                "{campaign}: reach-out {reach_out} planned: {planned} send(s), {not_sent} not sent"
            );
            activity.planned += planned;
            activity.not_sent += not_sent;
        }
        // 2. Follow-ups due.
        let events = {
            let book = self.runtime.customers.lock().await;
            let outreach = self.runtime.outreach.lock().await;
            decide::follow_ups_due(plan, state, &book, &outreach, now)
        };
        if !events.is_empty() {
            let (planned, not_sent) = count(&events);
            activity.follow_ups += planned;
            activity.not_sent += not_sent;
            tracing::info!(
                "{campaign}: follow-ups: {planned} planned, {} decided otherwise",
                events.len() as u64 - planned
            );
            self.record(&campaign, events, now).await?;
        }
        // 3. The bounce guard, then what is due, a batch at a time (the guard looked at again
        //    after each, so a bad list is stopped mid-way).
        loop {
            self.guard(plan, now).await?;
            let dispatch = self.due(plan, state, now).await;
            let Some(dispatch) = dispatch else {
                // The rendering thread could not start or failed: nothing was decided, the
                // sends stay pending and are looked at again shortly.
                tracing::error!(
                    "{campaign}: the sends due could not be rendered; trying again in {RETRY_AFTER_SECONDS} s"
                );
                self.retry_at = Some(now + Duration::seconds(RETRY_AFTER_SECONDS));
                return Ok(());
            };
            if dispatch.moved.is_empty()
                && dispatch.not_sent.is_empty()
                && dispatch.messages.is_empty()
            {
                return Ok(());
            }
            if !dispatch.moved.is_empty() {
                tracing::info!(
                    "{campaign}: {} send(s) held past their day moved to days with quota left",
                    dispatch.moved.len()
                );
            }
            activity.not_sent += dispatch.not_sent.len() as u64;
            match self.send(Some(plan), &campaign, dispatch, now).await? {
                Some(sent) => {
                    activity.sent += sent;
                    tracing::info!("{campaign}: sent a batch of {sent} message(s)");
                }
                None => return Ok(()),
            }
        }
    }

    /// The next batch of sends due, decided and rendered (`decide::dispatch`, on a deep stack
    /// for the templates); `None` when the rendering thread could not start or failed.
    async fn due(
        &self,
        plan: &Arc<Plan>,
        state: &CampaignState,
        now: DateTime<Utc>,
    ) -> Option<Dispatch> {
        let book = self.runtime.customers.lock().await;
        let outreach = self.runtime.outreach.lock().await;
        let plan = plan.as_ref();
        let book = &*book;
        let outreach = &*outreach;
        on_deep_stack(move || {
            let renderer = Renderer::new(plan);
            decide::dispatch(plan, state, book, outreach, &renderer, now, DISPATCH_BATCH)
        })
    }

    /// A campaign this node does not hold (any more): the messages it handed to its channel
    /// and has not answered for are still its own to settle. Handed over again to its channel
    /// (which recognises the keys it took, as after a restart), and their answers recorded:
    /// then the campaign's owner may act on what did not go.
    async fn settle(
        &mut self,
        id: &str,
        state: &CampaignState,
        now: DateTime<Utc>,
        activity: &mut Activity,
    ) -> Result<(), HandleError> {
        let Some(node) = self.ownership.as_ref().map(|o| o.node().to_string()) else {
            return Ok(());
        };
        let mine = |outreach: &battleplan_core::outreach::Outreach, key: &str| {
            outreach.handed_over_by(key) == Some(node.as_str())
        };
        let any = {
            let outreach = self.runtime.outreach.lock().await;
            let any = outreach
                .pending()
                .any(|send| send.planned.campaign == id && mine(&outreach, &send.planned.key));
            any
        };
        if !any {
            return Ok(());
        }
        let Some(plan) = self.plan_of(id, state).await? else {
            return Ok(());
        };
        loop {
            let dispatch = self.due(&plan, state, now).await;
            let Some(dispatch) = dispatch else {
                return Ok(());
            };
            let keyed = |event: &OutreachEvent| match event {
                OutreachEvent::SendMoved(moved) => Some(moved.key.clone()),
                OutreachEvent::NotSent(not_sent) => Some(not_sent.key.clone()),
                _ => None,
            };
            let (decided, messages, phases) = {
                let outreach = self.runtime.outreach.lock().await;
                // What the rules say of this node's messages now (moved to another day, given
                // up: a window closed, a campaign ended) is settled as it says.
                let decided: Vec<OutreachEvent> = dispatch
                    .moved
                    .into_iter()
                    .chain(dispatch.not_sent)
                    .filter(|event| keyed(event).is_some_and(|key| mine(&outreach, &key)))
                    .collect();
                let (messages, phases): (Vec<Message>, Vec<Placed>) = dispatch
                    .messages
                    .into_iter()
                    .zip(dispatch.phases)
                    .filter(|(message, _)| mine(&outreach, &message.key))
                    .unzip();
                (decided, messages, phases)
            };
            if decided.is_empty() && messages.is_empty() {
                return Ok(());
            }
            tracing::info!(
                "{id}: settling {} message(s) this node handed over before the campaign passed to another node",
                decided.len() + messages.len()
            );
            if !decided.is_empty() {
                self.record_answers(id, decided, now).await?;
            }
            if messages.is_empty() {
                continue;
            }
            let settled = Dispatch {
                moved: Vec::new(),
                not_sent: Vec::new(),
                messages,
                phases,
            };
            match self.send(Some(&plan), id, settled, now).await {
                Ok(Some(sent)) => activity.sent += sent,
                Ok(None) => return Ok(()),
                // A failure that would pause the channel is the owner's to record: tried again.
                Err(HandleError::Store(battleplan_core::event::StoreError::Fenced { .. })) => {
                    self.retry_at = Some(now + Duration::seconds(RETRY_AFTER_SECONDS));
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn guard(&mut self, plan: &Plan, now: DateTime<Utc>) -> Result<(), HandleError> {
        let events = {
            let outreach = self.runtime.outreach.lock().await;
            decide::bounce_guard(plan, &outreach)
        };
        if events.is_empty() {
            return Ok(());
        }
        for event in &events {
            if let OutreachEvent::ChannelPaused(paused) = event {
                tracing::warn!(
                    "{}: channel {} paused by the bounce guard: {} of {} bounced (over {})",
                    paused.campaign,
                    paused.channel,
                    paused.bounced,
                    paused.sent,
                    paused.threshold
                );
            }
        }
        self.record(&plan.campaign.id, events, now).await
    }

    /// Records the sends given up, hands the messages to the channel, records what became of
    /// each (sent; deferred, to be handed over again later; refused for good, a hard bounce
    /// with it when the address was refused; handed over without an answer, as the plan's
    /// channel says). `None` when the channel failed as a whole (tried again later, or paused
    /// with ops told when the failure needs a person). `plan` is the campaign's, `None` for
    /// messages to staff.
    async fn send(
        &mut self,
        plan: Option<&Plan>,
        campaign: &str,
        dispatch: Dispatch,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, HandleError> {
        let Dispatch {
            moved,
            mut not_sent,
            messages,
            phases,
        } = dispatch;
        if !moved.is_empty() || !not_sent.is_empty() {
            let mut decided = moved;
            decided.append(&mut not_sent);
            self.record(campaign, decided, now).await?;
        }
        if messages.is_empty() {
            return Ok(Some(0));
        }
        // Each plan channel's messages apart, in the order they came: each channel has its
        // own route and its own failures (a mail server that refuses connections pauses mail,
        // not the in-site messages of the same batch).
        let mut groups: Vec<(String, Vec<Message>, Vec<Placed>)> = Vec::new();
        for (message, phase) in messages.into_iter().zip(phases) {
            match groups
                .iter_mut()
                .find(|(channel, _, _)| *channel == message.channel)
            {
                Some((_, group, group_phases)) => {
                    group.push(message);
                    group_phases.push(phase);
                }
                None => groups.push((message.channel.clone(), vec![message], vec![phase])),
            }
        }
        let mut sent = 0;
        for (_, messages, phases) in groups {
            match self
                .deliver_group(plan, campaign, messages, phases, now)
                .await?
            {
                Some(count) => sent += count,
                // Tried again shortly, with the rest of what is due.
                None if self.retry_at.is_some() => return Ok(None),
                None => {}
            }
        }
        Ok(Some(sent))
    }

    /// One plan channel's messages of a batch handed over, and what became of each recorded
    /// (see [`Dispatcher::send`]).
    async fn deliver_group(
        &mut self,
        plan: Option<&Plan>,
        campaign: &str,
        messages: Vec<Message>,
        phases: Vec<Placed>,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, HandleError> {
        // Several nodes: a message another node has handed over since it was decided is that
        // node's; the rest are this node's to settle from now on, until answered
        // (`HandedOver`, fenced: refused once another node holds the campaign).
        let (messages, phases) = match &self.ownership {
            None => (messages, phases),
            Some(_) => {
                let outreach = self.runtime.outreach.lock().await;
                messages
                    .into_iter()
                    .zip(phases)
                    .filter(|(message, _)| outreach.mine(&message.key))
                    .unzip::<_, _, Vec<Message>, Vec<Placed>>()
            }
        };
        if messages.is_empty() {
            return Ok(Some(0));
        }
        if let Some(node) = self.ownership.as_ref().map(|o| o.node().to_string()) {
            let fresh: Vec<String> = {
                let outreach = self.runtime.outreach.lock().await;
                messages
                    .iter()
                    .filter(|message| outreach.handed_over_by(&message.key).is_none())
                    .map(|message| message.key.clone())
                    .collect()
            };
            if !fresh.is_empty() {
                let handed = OutreachEvent::HandedOver(HandedOver {
                    campaign: campaign.to_string(),
                    node,
                    keys: fresh,
                });
                self.record(campaign, vec![handed], now).await?;
            }
        }
        // On an error the channel took none of the batch (it undid what it wrote, or will know
        // it by key): nothing is recorded as sent, and the whole batch is handed over again.
        let deliveries = match self.channel.deliver(&messages).await {
            Ok(deliveries) if deliveries.len() == messages.len() => deliveries,
            Ok(deliveries) => {
                tracing::error!(
                    "{campaign}: the channel answered {} of {} message(s); nothing recorded as sent, trying again in {RETRY_AFTER_SECONDS} s",
                    deliveries.len(),
                    messages.len()
                );
                self.retry_at = Some(now + Duration::seconds(RETRY_AFTER_SECONDS));
                return Ok(None);
            }
            Err(error) if error.pause && plan.is_some() => {
                tracing::error!("{campaign}: {error}; the channel is paused and ops are told");
                let events = {
                    let outreach = self.runtime.outreach.lock().await;
                    let mut channels: Vec<&str> = messages
                        .iter()
                        .map(|message| message.channel.as_str())
                        .collect();
                    channels.sort_unstable();
                    channels.dedup();
                    channels
                        .into_iter()
                        .flat_map(|channel| {
                            plan.map(|plan| {
                                decide::pause_after_failure(
                                    plan,
                                    &outreach,
                                    channel,
                                    &error.detail,
                                    now,
                                )
                            })
                            .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                };
                self.record(campaign, events, now).await?;
                return Ok(None);
            }
            Err(error) => {
                tracing::warn!("{campaign}: {error}; trying again in {RETRY_AFTER_SECONDS} s");
                self.retry_at = Some(now + Duration::seconds(RETRY_AFTER_SECONDS));
                return Ok(None);
            }
        };
        if std::env::var_os(HOLD_AFTER_DELIVERY).is_some() {
            // The crash test's window: handed to the channel, not yet recorded as sent.
            tracing::warn!(
                "{campaign}: failpoint: {} message(s) delivered and not yet recorded; holding until killed",
                messages.len()
            );
            std::future::pending::<()>().await;
        }
        let Some(plan) = plan else {
            return self.staff_sent(campaign, &messages, deliveries, now).await;
        };
        // What the projection knows of each send: its planning and how often it was deferred.
        let known: HashMap<String, (SendPlanned, u32)> = {
            let outreach = self.runtime.outreach.lock().await;
            messages
                .iter()
                .filter_map(|message| {
                    let send = outreach.send(&message.key)?;
                    Some((message.key.clone(), (send.planned.clone(), send.deferred)))
                })
                .collect()
        };
        let mut sent = 0;
        let mut events: Vec<Recorded> = Vec::with_capacity(messages.len());
        for ((message, delivery), (phase, stage)) in messages.iter().zip(deliveries).zip(phases) {
            let message_sent = |duplicate: bool, unconfirmed: bool| {
                Recorded::Outreach(OutreachEvent::MessageSent(MessageSent {
                    key: message.key.clone(),
                    campaign: message.campaign.clone(),
                    channel: message.channel.clone(),
                    kind: message.kind,
                    reach_out: message.reach_out.clone(),
                    to: message.to.clone(),
                    template: message.template.clone(),
                    template_version: message.template_version,
                    phase,
                    stage: stage.clone(),
                    duplicate,
                    unconfirmed,
                }))
            };
            let deferred = |detail: String, asked: Option<u64>| {
                let tries = known.get(&message.key).map_or(0, |(_, tries)| *tries) + 1;
                // The last attempt the plan allows: given up, with what the receiver said.
                if let (Some(attempts), Some((planned, _))) = (
                    plan.channel(&message.channel)
                        .and_then(|channel| channel.attempts()),
                    known.get(&message.key),
                ) {
                    if tries >= attempts {
                        return Recorded::Outreach(OutreachEvent::NotSent(NotSent {
                            key: message.key.clone(),
                            campaign: message.campaign.clone(),
                            reach_out: planned.reach_out.clone(),
                            customer: planned.customer.clone(),
                            attempt: planned.attempt,
                            channel: message.channel.clone(),
                            reason: NotSentReason::Undelivered,
                            detail: Some(format!("after {tries} attempt(s): {detail}")),
                            phase,
                        }));
                    }
                }
                let delay = retry_delay_ms(tries, &message.key, asked);
                Recorded::Outreach(OutreachEvent::DeliveryDeferred(DeliveryDeferred {
                    key: message.key.clone(),
                    campaign: message.campaign.clone(),
                    reach_out: message.reach_out.clone().unwrap_or_default(),
                    channel: message.channel.clone(),
                    customer: message.to.clone(),
                    tries,
                    retry_at: now
                        .checked_add_signed(Duration::milliseconds(delay))
                        .unwrap_or(now),
                    detail,
                }))
            };
            match delivery {
                Delivery::Sent | Delivery::AlreadySent => {
                    sent += 1;
                    events.push(message_sent(delivery == Delivery::AlreadySent, false));
                }
                Delivery::Deferred {
                    detail,
                    retry_after_ms,
                } => {
                    tracing::info!("{campaign}: {} deferred: {detail}", message.key);
                    events.push(deferred(detail, retry_after_ms));
                }
                Delivery::Unknown { detail } => {
                    let resend = plan
                        .channel(&message.channel)
                        .is_some_and(|channel| channel.unknown_outcome == UnknownOutcome::Resend);
                    tracing::warn!(
                        "{campaign}: {} handed over without an answer ({detail}); {}",
                        message.key,
                        if resend {
                            "handed over again later with the same key"
                        } else {
                            "counted as sent, unconfirmed"
                        }
                    );
                    if resend {
                        events.push(deferred(format!("no answer: {detail}"), None));
                    } else {
                        sent += 1;
                        events.push(message_sent(false, true));
                    }
                }
                Delivery::Refused { refusal, detail } => {
                    tracing::info!(
                        "{campaign}: {} refused ({}): {detail}",
                        message.key,
                        refusal.key()
                    );
                    let Some((planned, _)) = known.get(&message.key) else {
                        continue;
                    };
                    events.push(Recorded::Outreach(OutreachEvent::NotSent(NotSent {
                        key: message.key.clone(),
                        campaign: message.campaign.clone(),
                        reach_out: planned.reach_out.clone(),
                        customer: planned.customer.clone(),
                        attempt: planned.attempt,
                        channel: message.channel.clone(),
                        reason: NotSentReason::Refused,
                        detail: Some(format!("{}: {detail}", refusal.key())),
                        phase,
                    })));
                    // The address itself refused: a hard bounce, for the customer's book (no
                    // later mail to it) and the bounce guard.
                    if refusal == Refusal::Recipient && message.kind == ChannelKind::Mail {
                        events.push(Recorded::Outcome(OutcomeRecorded {
                            customer: planned.customer.clone(),
                            line: 0,
                            outcome: OutcomeKind::Bounced,
                            at: now,
                            campaign: Some(message.campaign.clone()),
                            reach_out: Some(planned.reach_out.clone()),
                            channel: Some(ChannelKind::Mail),
                            amount: None,
                            message: Some(message.key.clone()),
                            offer: None,
                        }));
                    }
                }
            }
        }
        self.record_answers(campaign, events, now).await?;
        Ok(Some(sent))
    }

    /// What went of the messages to staff: each one taken is recorded as sent; one that was
    /// not is handed over again with the rest shortly (a reminder has no window to miss).
    async fn staff_sent(
        &mut self,
        campaign: &str,
        messages: &[Message],
        deliveries: Vec<Delivery>,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, HandleError> {
        let mut events = Vec::with_capacity(messages.len());
        for (message, delivery) in messages.iter().zip(deliveries) {
            match delivery {
                Delivery::Sent | Delivery::AlreadySent => {
                    events.push(OutreachEvent::MessageSent(MessageSent {
                        key: message.key.clone(),
                        campaign: message.campaign.clone(),
                        channel: message.channel.clone(),
                        kind: message.kind,
                        reach_out: None,
                        to: message.to.clone(),
                        template: None,
                        template_version: None,
                        phase: None,
                        stage: None,
                        duplicate: delivery == Delivery::AlreadySent,
                        unconfirmed: false,
                    }));
                }
                other => {
                    tracing::warn!(
                        "{campaign}: the message to {} ({}) did not go: {other:?}; trying again in {RETRY_AFTER_SECONDS} s",
                        message.to,
                        message.key
                    );
                    self.retry_at = Some(now + Duration::seconds(RETRY_AFTER_SECONDS));
                }
            }
        }
        let sent = events.len() as u64;
        self.record_answers(campaign, events, now).await?;
        Ok(Some(sent))
    }

    /// Whether this node acts on `campaign` (always, on a store of its own).
    fn owns(&self, campaign: &str) -> bool {
        self.ownership
            .as_ref()
            .is_none_or(|ownership| ownership.owns(campaign))
    }

    /// Messages to staff (task reminders, notices) due now.
    async fn staff_step(
        &mut self,
        now: DateTime<Utc>,
        activity: &mut Activity,
    ) -> Result<(), HandleError> {
        let messages: Vec<Message> = {
            let outreach = self.runtime.outreach.lock().await;
            outreach
                .staff_pending()
                .filter(|message| {
                    message.at <= now
                        && (self.owns(&message.campaign)
                            || self.ownership.as_ref().is_some_and(|o| {
                                outreach.handed_over_by(&message.key) == Some(o.node())
                            }))
                })
                .map(|message| Message {
                    key: message.key.clone(),
                    campaign: message.campaign.clone(),
                    channel: "staff".to_string(),
                    kind: ChannelKind::Console,
                    to: message.role.clone(),
                    address: message.members.clone(),
                    from: None,
                    subject: Some(message.subject.clone()),
                    body: message.body.clone(),
                    template: None,
                    template_version: None,
                    reach_out: None,
                    attempt: None,
                    at: now,
                    document: message.document.clone(),
                })
                .collect()
        };
        for message in &messages {
            tracing::info!(
                "{}: to {} ({}): {}",
                message.campaign,
                message.to,
                message.address.join(", "),
                message.subject.as_deref().unwrap_or("")
            );
        }
        let mut by_campaign: std::collections::BTreeMap<String, Vec<Message>> =
            std::collections::BTreeMap::new();
        for message in messages {
            by_campaign
                .entry(message.campaign.clone())
                .or_default()
                .push(message);
        }
        for (campaign, messages) in by_campaign {
            let count = messages.len();
            let dispatch = Dispatch {
                moved: Vec::new(),
                not_sent: Vec::new(),
                phases: vec![(None, None); count],
                messages,
            };
            match self.send(None, &campaign, dispatch, now).await {
                Ok(Some(sent)) => activity.staff += sent,
                Ok(None) => {}
                Err(HandleError::Store(battleplan_core::event::StoreError::Fenced { .. })) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// The next instant something is due for the outbox, after `now`.
    pub async fn next_due(
        &mut self,
        campaigns: &Campaigns,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, HandleError> {
        let mut best: Option<DateTime<Utc>> = self.retry_at;
        let mut consider = |at: DateTime<Utc>| best = Some(best.map_or(at, |b| b.min(at)));
        for (id, state) in &campaigns.states {
            if matches!(state.status, Status::Draft) || !self.owns(id) {
                continue;
            }
            let Some(plan) = self.plan_of(id, state).await? else {
                continue;
            };
            {
                let outreach = self.runtime.outreach.lock().await;
                if let Some(at) = decide::next_due(&plan, state, &outreach, now) {
                    consider(at);
                }
            }
            if matches!(state.status, Status::Scheduled | Status::Running { .. }) {
                let boards = self.runtime.boards.lock().await;
                if let Some(at) = next_reminder_at(&plan, &boards.board(id), &state.skipped, now) {
                    consider(at);
                }
            }
            if !matches!(state.status, Status::Cancelled { .. }) {
                let boards = self.runtime.boards.lock().await;
                if let Some(at) = report_schedule::next_report_at(&plan, &boards.reports, now) {
                    consider(at);
                }
            }
        }
        {
            let outreach = self.runtime.outreach.lock().await;
            if let Some(at) = outreach
                .staff_pending()
                .filter(|m| self.owns(&m.campaign))
                .map(|m| m.at)
                .min()
            {
                consider(at);
            }
        }
        // Whatever could not be done now is looked at again a moment later, never in a loop.
        Ok(best.map(|at| {
            if at <= now {
                now + Duration::seconds(1)
            } else {
                at
            }
        }))
    }

    /// Records reminders on the campaign's task stream (sent by the staff step).
    async fn record_tasks(
        &self,
        campaign: &str,
        reminders: Vec<battleplan_core::task::ReminderPlanned>,
        now: DateTime<Utc>,
    ) -> Result<(), HandleError> {
        let stream = battleplan_core::task::stream_of(campaign)
            .map_err(battleplan_core::campaign::Rejection)?;
        for chunk in reminders.chunks(APPEND_EVENTS) {
            let mut encoded = Vec::with_capacity(chunk.len());
            for reminder in chunk {
                tracing::info!(
                    "{campaign}: reminder {} to {}{}",
                    reminder.key,
                    reminder.role,
                    if reminder.late_by_ms > 60_000 {
                        format!(
                            ", {} late",
                            battleplan_core::campaign::timeline::human_duration(
                                reminder.late_by_ms
                            )
                        )
                    } else {
                        String::new()
                    }
                );
                encoded.push(
                    TaskEvent::ReminderPlanned(reminder.clone())
                        .encode(EventId(self.runtime.ids.next_id(now)))?,
                );
            }
            let words = format!(
                "reminders|{campaign}|{}|{}|{}",
                chunk[0].key,
                chunk[chunk.len() - 1].key,
                chunk.len()
            );
            self.runtime
                .record(
                    stream.clone(),
                    encoded,
                    crate::kernel::scheduler::ACTOR,
                    None,
                    derived_command_id(&words),
                    now,
                )
                .await?;
        }
        catch_up(&self.runtime).await
    }

    /// Records a weekly report's decision on the campaign's `reports-` stream (its messages go by
    /// the staff step), under a command id derived from its key: decided once.
    async fn record_report(
        &self,
        planned: report_schedule::ReportPlanned,
        now: DateTime<Utc>,
    ) -> Result<(), HandleError> {
        let campaign = planned.campaign.clone();
        let stream =
            report_schedule::stream_of(&campaign).map_err(battleplan_core::campaign::Rejection)?;
        let roles: Vec<&str> = planned.to.iter().map(|to| to.role.as_str()).collect();
        tracing::info!(
            "{campaign}: weekly report {} to {}{}",
            planned.week,
            roles.join(", "),
            if planned.late_by_ms > 60_000 {
                format!(
                    ", {} late",
                    battleplan_core::campaign::timeline::human_duration(planned.late_by_ms)
                )
            } else {
                String::new()
            }
        );
        let command_id = derived_command_id(&format!("report|{}", planned.key));
        let encoded = report_schedule::ReportEvent::ReportPlanned(planned)
            .encode(EventId(self.runtime.ids.next_id(now)))?;
        self.runtime
            .record(
                stream,
                vec![encoded],
                crate::kernel::scheduler::ACTOR,
                None,
                command_id,
                now,
            )
            .await?;
        catch_up(&self.runtime).await
    }

    /// What the channel answered, recorded: with no fence when several nodes share the store
    /// (a node reports what its channel did even after the campaign passed to another).
    async fn record_answers<E: Into<Recorded>>(
        &self,
        campaign: &str,
        events: Vec<E>,
        now: DateTime<Utc>,
    ) -> Result<(), HandleError> {
        let runtime = self.answers.as_ref().unwrap_or(&self.runtime);
        self.record_on(runtime, campaign, events, now).await
    }

    /// Appends events to the campaign's outreach stream, a chunk at a time, and catches the
    /// projections up. Each chunk's command id is derived from its content, so a chunk retried
    /// after an uncertain failure is recorded once.
    async fn record<E: Into<Recorded>>(
        &self,
        campaign: &str,
        events: Vec<E>,
        now: DateTime<Utc>,
    ) -> Result<(), HandleError> {
        self.record_on(&self.runtime, campaign, events, now).await
    }

    async fn record_on<E: Into<Recorded>>(
        &self,
        runtime: &Runtime,
        campaign: &str,
        events: Vec<E>,
        now: DateTime<Utc>,
    ) -> Result<(), HandleError> {
        let stream = stream_of(campaign).map_err(battleplan_core::campaign::Rejection)?;
        let mut events = events.into_iter().map(Into::into).peekable();
        while events.peek().is_some() {
            let chunk: Vec<Recorded> = events.by_ref().take(APPEND_EVENTS).collect();
            let mut book = self.runtime.customers.lock().await;
            self.append_own(runtime, &stream, campaign, chunk, now, &mut book)
                .await?;
        }
        catch_up(&self.runtime).await
    }

    /// Records one append of the dispatcher's events and folds them into the projections
    /// ([`fold_own`]), the customer book held by the caller (locked first, as everywhere).
    async fn append_own(
        &self,
        runtime: &Runtime,
        stream: &battleplan_core::event::StreamId,
        campaign: &str,
        chunk: Vec<Recorded>,
        now: DateTime<Utc>,
        book: &mut battleplan_core::customer::book::CustomerBook,
    ) -> Result<(), HandleError> {
        {
            let mut encoded = Vec::with_capacity(chunk.len());
            for event in &chunk {
                let id = EventId(self.runtime.ids.next_id(now));
                encoded.push(match event {
                    Recorded::Outreach(event) => event.encode(id)?,
                    Recorded::Outcome(outcome) => {
                        CustomerEvent::OutcomeRecorded(outcome.clone()).encode(id)?
                    }
                });
            }
            let words = format!(
                "outreach|{campaign}|{}|{}|{}|{}",
                label(&chunk[0]),
                label(&chunk[chunk.len() - 1]),
                chunk.len(),
                now.timestamp_millis()
            );
            let (outcome, at) = runtime
                .record_at(
                    stream.clone(),
                    encoded,
                    ACTOR,
                    None,
                    derived_command_id(&words),
                    now,
                )
                .await?;
            if !outcome.deduplicated {
                fold_own(
                    &self.runtime,
                    book,
                    stream,
                    chunk,
                    outcome.first_position,
                    at,
                )
                .await;
            }
        }
        Ok(())
    }
}

/// Events of a reach-out's planning made and recorded at a time: a whole number of appends.
const PLANNING_CHUNK: usize = 50 * APPEND_EVENTS;

/// The phase and stage a message goes in.
type Placed = (Option<PhaseKind>, Option<String>);

/// What the dispatcher records in a campaign's outreach stream: its own events, and the
/// outcomes a channel reported for a customer (a hard bounce), in the same append as the
/// refusal that brought them.
enum Recorded {
    Outreach(OutreachEvent),
    Outcome(OutcomeRecorded),
}

impl From<OutreachEvent> for Recorded {
    fn from(event: OutreachEvent) -> Recorded {
        Recorded::Outreach(event)
    }
}

fn label(event: &Recorded) -> String {
    let event = match event {
        Recorded::Outreach(event) => event,
        Recorded::Outcome(outcome) => {
            return format!(
                "outcome:{}:{}:{}",
                outcome.customer,
                outcome.outcome.as_str(),
                outcome.message.as_deref().unwrap_or("")
            )
        }
    };
    match event {
        OutreachEvent::SendPlanned(e) => format!("planned:{}", e.key),
        OutreachEvent::SendMoved(e) => format!("moved:{}:{}", e.key, e.day),
        OutreachEvent::NotSent(e) => format!("not-sent:{}", e.key),
        OutreachEvent::ReachOutPlanned(e) => format!("reach-out:{}", e.reach_out),
        OutreachEvent::MessageSent(e) => format!("sent:{}", e.key),
        OutreachEvent::FollowUpStopped(e) => format!("stopped:{}", e.after_key),
        OutreachEvent::ChannelPaused(e) => format!("paused:{}:{}", e.channel, e.sent),
        OutreachEvent::ChannelResumed(e) => format!("resumed:{}", e.channel),
        OutreachEvent::NoticePlanned(e) => format!("notice:{}", e.key),
        OutreachEvent::DeliveryDeferred(e) => format!("deferred:{}:{}", e.key, e.tries),
        OutreachEvent::HandedOver(e) => format!(
            "handed:{}:{}:{}",
            e.node,
            e.keys.first().map_or("", String::as_str),
            e.keys.len()
        ),
    }
}

fn count(events: &[OutreachEvent]) -> (u64, u64) {
    let planned = events
        .iter()
        .filter(|e| matches!(e, OutreachEvent::SendPlanned(_)))
        .count() as u64;
    let not_sent = events
        .iter()
        .filter(|e| matches!(e, OutreachEvent::NotSent(_)))
        .count() as u64;
    (planned, not_sent)
}

/// Brings the customer book and the outbox up to the log's durable head, in one pass.
/// Folds events the dispatcher just recorded into the book, the outbox and the boards as they are,
/// rather than reading them back from the log and decoding them: only when every projection
/// stands just before them (nothing else was recorded in between, or not yet read), so the
/// projections see the log in its order either way. Otherwise `catch_up` reads them.
async fn fold_own(
    runtime: &Runtime,
    book: &mut battleplan_core::customer::book::CustomerBook,
    stream: &battleplan_core::event::StreamId,
    events: Vec<Recorded>,
    first: battleplan_core::event::Position,
    at: DateTime<Utc>,
) {
    use std::sync::atomic::Ordering;
    let Some(before) = first.0.checked_sub(1) else {
        return;
    };
    // The instant as the log keeps it (microseconds), so the projections hold what a reading
    // of the log gives.
    let Some(at) = DateTime::from_timestamp_micros(at.timestamp_micros()) else {
        return;
    };
    let mut outreach = runtime.outreach.lock().await;
    let mut boards = runtime.boards.lock().await;
    if [book.position, outreach.position, boards.position]
        .iter()
        .any(|position| position.0 != before)
    {
        return;
    }
    let mut position = first;
    for event in events {
        let decoded = match event {
            Recorded::Outreach(event) => battleplan_core::feed::Decoded::Outreach(event),
            Recorded::Outcome(outcome) => {
                battleplan_core::feed::Decoded::Customer(CustomerEvent::OutcomeRecorded(outcome))
            }
        };
        let place = battleplan_core::feed::Place {
            position,
            recorded_at: at,
            stream,
        };
        book.apply_decoded(place, &decoded);
        outreach.apply_fed(place, &decoded, book);
        boards.apply_fed(place, &decoded);
        position = battleplan_core::event::Position(position.0 + 1);
    }
    runtime
        .projected
        .fetch_max(position.0.saturating_sub(1), Ordering::AcqRel);
}

pub async fn catch_up(runtime: &Runtime) -> Result<(), HandleError> {
    use std::sync::atomic::Ordering;
    // Nothing recorded since the last catch-up: no lock to take (questions come often).
    if runtime.store.head().await?.0 <= runtime.projected.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut book = runtime.customers.lock().await;
    let mut outreach = runtime.outreach.lock().await;
    let mut boards = runtime.boards.lock().await;
    if runtime.snapshots.load && !runtime.snapshot.looked.swap(true, Ordering::AcqRel) {
        load_snapshot(runtime, &mut book, &mut outreach, &mut boards).await;
    }
    let mut from = book.position.min(outreach.position).min(boards.position);
    loop {
        let events = runtime.store.read_all(from, 10_000).await?;
        let Some(last) = events.last() else {
            runtime.projected.fetch_max(from.0, Ordering::AcqRel);
            let encoded = if runtime.snapshots.save
                && super::snapshot::due(runtime.snapshot.at.load(Ordering::Acquire), from.0)
            {
                Some(super::snapshot::encode(
                    &book,
                    &outreach,
                    &boards,
                    runtime.store.files_directory().as_deref(),
                ))
            } else {
                None
            };
            // Saved with the projections free again: the commit is the store's work.
            drop((book, outreach, boards));
            if let Some(encoded) = encoded {
                save_snapshot(runtime, encoded).await;
            }
            return Ok(());
        };
        from = last.position;
        for event in &events {
            super::work::feed(&mut book, &mut outreach, &mut boards, event)?;
        }
    }
}

/// Reads the stored snapshot into the projections, which stand at the log's start; an unusable
/// snapshot is said and left (the log is replayed instead).
async fn load_snapshot(
    runtime: &Runtime,
    book: &mut CustomerBook,
    outreach: &mut Outreach,
    boards: &mut Boards,
) {
    use std::sync::atomic::Ordering;
    if book.position != Position::START
        || outreach.position != Position::START
        || boards.position != Position::START
    {
        return;
    }
    match super::snapshot::load(runtime.store.as_ref()).await {
        Ok(Some(loaded)) => {
            let position = loaded.book.position;
            let here = outreach.here.take();
            *book = loaded.book;
            *outreach = loaded.outreach;
            outreach.here = here;
            *boards = loaded.boards;
            runtime.snapshot.at.fetch_max(position.0, Ordering::AcqRel);
            tracing::debug!(
                position = position.0,
                "projections read from their snapshot"
            );
        }
        Ok(None) => {}
        Err(unusable) => {
            tracing::warn!("{unusable}; the projections are rebuilt from the log");
        }
    }
}

/// Saves a snapshot made by [`catch_up`]; a failure is said, not fatal (the log has it all).
pub async fn save_snapshot(runtime: &Runtime, encoded: Result<super::snapshot::Encoded, String>) {
    use std::sync::atomic::Ordering;
    let encoded = match encoded {
        Ok(encoded) => encoded,
        Err(why) => {
            tracing::warn!("no snapshot of the projections: {why}");
            return;
        }
    };
    let (position, bytes) = (encoded.position(), encoded.bytes());
    let saved = super::snapshot::save(runtime.store.as_ref(), encoded).await;
    // Saved or not, the next try waits for another tenth of the log: a store that refuses
    // (a full disk) is not asked again at every catch-up.
    runtime.snapshot.at.fetch_max(position.0, Ordering::AcqRel);
    match saved {
        Ok(true) => tracing::info!(
            position = position.0,
            bytes,
            "snapshot of the projections saved"
        ),
        Ok(false) => {}
        Err(error) => tracing::warn!("the snapshot of the projections was not saved: {error}"),
    }
}

/// Saves a snapshot of the projections caught up with the log, unless the last snapshot stands
/// where they do (a stopping daemon: its next start replays nothing).
pub async fn save_snapshot_now(runtime: &Runtime) {
    use std::sync::atomic::Ordering;
    if !runtime.snapshots.save {
        return;
    }
    if let Err(error) = catch_up(runtime).await {
        tracing::warn!("no snapshot of the projections: {error}");
        return;
    }
    let book = runtime.customers.lock().await;
    let outreach = runtime.outreach.lock().await;
    let boards = runtime.boards.lock().await;
    if book.position.0 <= runtime.snapshot.at.load(Ordering::Acquire) {
        return;
    }
    let encoded = super::snapshot::encode(
        &book,
        &outreach,
        &boards,
        runtime.store.files_directory().as_deref(),
    );
    drop((book, outreach, boards));
    save_snapshot(runtime, encoded).await;
}
