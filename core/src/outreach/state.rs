//! The outbox as its events made it: every decided send and what became of it, the quota ledger
//! (a projection of the planned sends: each reserves its day until it is sent there, moved to
//! another day or given up), the follow-ups coming due, the
//! bounce guard's counts and pauses, and the staff messages waiting to go. Rebuilt from the log
//! alone; the dispatcher decides from it.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Duration, Utc};

use super::events::{MessageSent, NotSentReason, OutreachEvent, ReachOutPlanned, SendPlanned};
use crate::customer::book::CustomerBook;
use crate::customer::events::{OutcomeKind, OutcomeRecorded};
use crate::customer::quota::Ledger;
use crate::event::{Position, RecordedEvent};
use crate::feed::{Decoded, Place};
use crate::plan::model::ChannelKind;

/// What became of a planned send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendStatus {
    Pending,
    Sent { at: DateTime<Utc> },
    NotSent(NotSentReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    pub planned: SendPlanned,
    pub status: SendStatus,
    /// How many times the receiving side deferred it (`DeliveryDeferred`).
    pub deferred: u32,
}

/// A campaign's messages sent on one local day through one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySent {
    pub date: chrono::NaiveDate,
    pub channel: String,
    pub sent: u64,
    /// Of them, those planned as paid (beyond the day's free volume).
    pub paid: u64,
}

/// The bounce guard's view of one campaign's channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub paused: bool,
    /// Why, when a failure of the channel paused it rather than the bounce guard.
    pub failure: Option<String>,
    pub sent: u64,
    pub bounced: u64,
    /// The counts when the channel last resumed: the guard judges what came after. A bounce
    /// that arrives after the resume for a message sent before it counts in the base too: it
    /// says nothing about the list as cleaned.
    pub base_sent: u64,
    pub base_bounced: u64,
    pub resumed_at: Option<DateTime<Utc>>,
    /// Pending sends the receiving side deferred at least once (waiting for their retry).
    pub retrying: u64,
    /// Since when some send has been waiting for a retry (since `retrying` last left 0).
    pub retrying_since: Option<DateTime<Utc>>,
    /// The receiving side's last deferral: when, and what it said.
    pub last_deferral: Option<(DateTime<Utc>, String)>,
}

impl Guard {
    pub fn since_resume(&self) -> (u64, u64) {
        (
            self.sent.saturating_sub(self.base_sent),
            self.bounced.saturating_sub(self.base_bounced),
        )
    }
}

/// A message to staff (a task reminder, a notice) waiting to go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMessage {
    pub key: String,
    pub campaign: String,
    pub role: String,
    pub members: Vec<String>,
    pub subject: String,
    pub body: String,
    pub at: DateTime<Utc>,
    /// The Markdown and HTML of a message that has them (a weekly report).
    pub document: Option<super::port::Document>,
}

/// A follow-up coming due: after the message `after_key` was sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FollowUpDue {
    pub at: DateTime<Utc>,
    pub after_key: String,
}

/// A snapshot holds all of it but `here`, which is the host's to set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outreach {
    pub position: Position,
    pub ledger: Ledger,
    /// Every planned send, by key: its place in `records`.
    #[serde(deserialize_with = "crate::presized::hash_map")]
    sends: FxHashMap<Box<str>, u32>,
    #[serde(deserialize_with = "crate::presized::vec")]
    records: Vec<Send>,
    /// Keys decided `NotSent` at planning (no send was planned for them): those of a reach-out
    /// still being planned (a planning cut short goes on where it stopped) and those of
    /// follow-ups. Once `ReachOutPlanned` closes a reach-out's planning, its first attempts
    /// leave this map for `decided_slots` when the projection is fed with the customer book
    /// ([`Outreach::apply_fed`]): the log keeps the keys and their reasons (`outbox
    /// --customers` reads them from there), the projection their counts.
    #[serde(deserialize_with = "crate::presized::hash_map")]
    not_planned: FxHashMap<Box<str>, NotSentReason>,
    /// Per planned reach-out (campaign, reach-out), the customers (one bit per book slot) whose
    /// first attempt it decided not to send: with the planned sends, whom it decided.
    decided_slots: BTreeMap<(String, String), Vec<u64>>,
    /// Per campaign and reach-out, the keys decided `NotSent` at planning, by reason.
    not_planned_counts: BTreeMap<(String, String), BTreeMap<NotSentReason, u64>>,
    /// Planned sends not yet sent or given up, by (instant, key).
    pending: BTreeSet<(DateTime<Utc>, String)>,
    planned_reach_outs: BTreeMap<(String, String), ReachOutPlanned>,
    follow_ups: BTreeSet<(DateTime<Utc>, String)>,
    /// The due instant of each entry of `follow_ups`, by key: a thread is closed without a scan.
    follow_up_due: FxHashMap<String, DateTime<Utc>>,
    guards: BTreeMap<(String, String), Guard>,
    staff_pending: BTreeMap<String, StaffMessage>,
    staff_sent: FxHashMap<String, DateTime<Utc>>,
    /// Each customer's pending sends (instant, kind), for fatigue across reach-outs planned
    /// before either was sent.
    #[serde(deserialize_with = "crate::presized::hash_map")]
    pending_by_customer: FxHashMap<Box<str>, Vec<(DateTime<Utc>, ChannelKind)>>,
    /// Messages a node handed to its channel with no answer recorded yet, and the node
    /// (`HandedOver`; several nodes on one store only).
    handed: FxHashMap<String, Box<str>>,
    /// The node this projection decides for, when several share the store: messages another
    /// node handed over and has not answered for are not this node's to send.
    #[serde(skip)]
    pub here: Option<Box<str>>,
}

impl Outreach {
    /// Applies a recorded event (outreach events and outcomes); the position moves either way.
    /// Events at or before the position are ignored.
    pub fn apply_recorded(
        &mut self,
        event: &RecordedEvent,
    ) -> Result<(), crate::event::upcast::PayloadError> {
        if event.position <= self.position {
            return Ok(());
        }
        let kind = event.event_type.as_str();
        let decoded = if OutreachEvent::holds(kind) {
            OutreachEvent::decode(event)?.map_or(Decoded::Other, Decoded::Outreach)
        } else if kind == <OutcomeRecorded as crate::event::upcast::EventPayload>::EVENT_TYPE {
            crate::customer::events::CustomerEvent::decode(event)?
                .map_or(Decoded::Other, Decoded::Customer)
        } else {
            Decoded::Other
        };
        self.apply_decoded(Place::of(event), &decoded);
        Ok(())
    }

    /// [`Outreach::apply_decoded`] by a feeder that holds the customer book, caught up to this
    /// event: a planning closed by `ReachOutPlanned` moves its first attempts' keys decided not
    /// sent out of memory, keeping whom they name as book slots (see `not_planned`).
    pub fn apply_fed(&mut self, event: Place<'_>, decoded: &Decoded, book: &CustomerBook) {
        if event.position <= self.position {
            return;
        }
        self.apply_decoded(event, decoded);
        if let Decoded::Outreach(OutreachEvent::ReachOutPlanned(done)) = decoded {
            self.close_planning(&done.campaign, &done.reach_out, book);
        }
    }

    fn close_planning(&mut self, campaign: &str, reach_out: &str, book: &CustomerBook) {
        let prefix = format!("{campaign}/{reach_out}/");
        let bits = self
            .decided_slots
            .entry((campaign.to_string(), reach_out.to_string()))
            .or_default();
        self.not_planned.retain(|key, _| {
            let Some((customer, "1")) = key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.rsplit_once('/'))
            else {
                return true;
            };
            let Some(slot) = book.slot(customer) else {
                return true;
            };
            let (word, bit) = (slot as usize / 64, slot % 64);
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            bits[word] |= 1 << bit;
            false
        });
    }

    /// Whether a planned reach-out's planning decided this customer (book slot) not to send.
    fn decided_at_planning(&self, campaign: &str, reach_out: &str, slot: u32) -> bool {
        if self.decided_slots.is_empty() {
            return false;
        }
        self.decided_slots
            .get(&(campaign.to_string(), reach_out.to_string()))
            .and_then(|bits| bits.get(slot as usize / 64))
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    /// [`Outreach::apply_recorded`] for an event decoded once for several projections.
    pub fn apply_decoded(&mut self, event: Place<'_>, decoded: &Decoded) {
        if event.position <= self.position {
            return;
        }
        match decoded {
            Decoded::Outreach(decoded) => self.apply(decoded, event.recorded_at),
            Decoded::Customer(crate::customer::events::CustomerEvent::OutcomeRecorded(outcome)) => {
                self.outcome(outcome)
            }
            _ => {}
        }
        self.position = event.position;
    }

    pub fn apply(&mut self, event: &OutreachEvent, at: DateTime<Utc>) {
        if !self.handed.is_empty() {
            // An answer settles a message handed over: any owner may act on it from now on.
            match event {
                OutreachEvent::MessageSent(sent) => {
                    self.handed.remove(&sent.key);
                }
                OutreachEvent::NotSent(not_sent) => {
                    self.handed.remove(&not_sent.key);
                }
                OutreachEvent::DeliveryDeferred(deferred) => {
                    self.handed.remove(&deferred.key);
                }
                _ => {}
            }
        }
        match event {
            OutreachEvent::SendPlanned(planned) => {
                // A key is decided once; a second planning of it (recorded by an earlier
                // version, which could plan one customer's follow-up twice when two of their
                // threads came due together) changes nothing.
                if self.sends.contains_key(planned.key.as_str()) {
                    return;
                }
                self.ledger.record(
                    &planned.channel,
                    planned.day,
                    &planned.account,
                    planned.paid,
                );
                self.pending.insert((planned.at, planned.key.clone()));
                self.pending_by_customer
                    .entry(planned.customer.as_str().into())
                    .or_default()
                    .push((planned.at, planned.kind));
                if planned.attempt > 1 {
                    self.close_follow_up_of(planned);
                }
                let mut planned = planned.clone();
                // Why it went on this day is the log's to tell (`explain`); no decision reads it.
                planned.detail = None;
                self.sends
                    .insert(planned.key.as_str().into(), self.records.len() as u32);
                self.records.push(Send {
                    planned,
                    status: SendStatus::Pending,
                    deferred: 0,
                });
            }
            OutreachEvent::SendMoved(moved) => {
                let Some(send) = send_mut(&self.sends, &mut self.records, &moved.key) else {
                    return;
                };
                if send.status != SendStatus::Pending {
                    return;
                }
                self.ledger
                    .release(&send.planned.channel, moved.from_day, &moved.account);
                self.ledger
                    .record(&send.planned.channel, moved.day, &moved.account, moved.paid);
                // The projection holds the decision in force: the day, instant and volume it
                // goes with now (the log keeps both).
                send.planned.day = moved.day;
                send.planned.paid = moved.paid;
                self.move_pending(&moved.key, moved.at);
            }
            OutreachEvent::NotSent(not_sent) => {
                if let Some(send) = send_mut(&self.sends, &mut self.records, &not_sent.key) {
                    if send.status == SendStatus::Pending {
                        self.pending
                            .remove(&(send.planned.at, not_sent.key.clone()));
                        unpend(&mut self.pending_by_customer, &send.planned);
                        // Given up: the quota it reserved is free for others that day.
                        self.ledger.release(
                            &send.planned.channel,
                            send.planned.day,
                            &send.planned.account,
                        );
                        if send.deferred > 0 {
                            retry_settled(&mut self.guards, &send.planned);
                        }
                    }
                    send.status = SendStatus::NotSent(not_sent.reason);
                } else {
                    let before = self
                        .not_planned
                        .insert(not_sent.key.as_str().into(), not_sent.reason);
                    // A key counts once, by its last reason.
                    let counts = self
                        .not_planned_counts
                        .entry((not_sent.campaign.clone(), not_sent.reach_out.clone()))
                        .or_default();
                    if let Some(before) = before {
                        if let Some(count) = counts.get_mut(&before) {
                            *count = count.saturating_sub(1);
                        }
                    }
                    *counts.entry(not_sent.reason).or_default() += 1;
                    if not_sent.attempt > 1 {
                        // A follow-up that could not be planned ends the thread.
                        let previous = previous_key(&not_sent.key, not_sent.attempt);
                        self.drop_follow_up(&previous);
                    }
                }
            }
            OutreachEvent::ReachOutPlanned(done) => {
                self.planned_reach_outs.insert(
                    (done.campaign.clone(), done.reach_out.clone()),
                    done.clone(),
                );
            }
            OutreachEvent::MessageSent(sent) => self.sent(sent, at),
            OutreachEvent::FollowUpStopped(stopped) => self.drop_follow_up(&stopped.after_key),
            OutreachEvent::ChannelPaused(paused) => {
                let guard = self
                    .guards
                    .entry((paused.campaign.clone(), paused.channel.clone()))
                    .or_default();
                guard.paused = true;
                guard.failure = paused.failure.clone();
            }
            OutreachEvent::ChannelResumed(resumed) => {
                let guard = self
                    .guards
                    .entry((resumed.campaign.clone(), resumed.channel.clone()))
                    .or_default();
                guard.paused = false;
                guard.failure = None;
                guard.base_sent = guard.sent;
                guard.base_bounced = guard.bounced;
                guard.resumed_at = Some(at);
            }
            OutreachEvent::DeliveryDeferred(deferred) => {
                let Some(send) = send_mut(&self.sends, &mut self.records, &deferred.key) else {
                    return;
                };
                if send.status != SendStatus::Pending {
                    return;
                }
                // Handed over again at `retry_at`, on the day whose quota it holds (a retry
                // that lands on a later day is moved there with that day's quota, as any send
                // held past its day).
                let first = send.deferred == 0;
                send.deferred = send.deferred.max(deferred.tries);
                let guard = self
                    .guards
                    .entry((deferred.campaign.clone(), deferred.channel.clone()))
                    .or_default();
                if first {
                    if guard.retrying == 0 {
                        guard.retrying_since = Some(at);
                    }
                    guard.retrying += 1;
                }
                guard.last_deferral = Some((at, deferred.detail.clone()));
                self.move_pending(&deferred.key, deferred.retry_at);
            }
            OutreachEvent::HandedOver(handed) => {
                for key in &handed.keys {
                    let answered = self
                        .send(key)
                        .is_some_and(|send| send.status != SendStatus::Pending)
                        || self.staff_sent.contains_key(key);
                    if !answered {
                        self.handed.insert(key.clone(), handed.node.as_str().into());
                    }
                }
            }
            OutreachEvent::NoticePlanned(notice) => self.staff_planned(StaffMessage {
                key: notice.key.clone(),
                campaign: notice.campaign.clone(),
                role: notice.role.clone(),
                members: notice.members.clone(),
                subject: notice.subject.clone(),
                body: notice.body.clone(),
                at,
                document: None,
            }),
        }
    }

    fn close_follow_up_of(&mut self, planned: &SendPlanned) {
        let previous = previous_key(&planned.key, planned.attempt);
        self.drop_follow_up(&previous);
    }

    fn drop_follow_up(&mut self, key: &str) {
        if let Some(due) = self.follow_up_due.remove(key) {
            self.follow_ups.remove(&(due, key.to_string()));
        }
    }

    /// Moves a pending send to another instant: its place among the pending and in its
    /// customer's list.
    fn move_pending(&mut self, key: &str, to: DateTime<Utc>) {
        let Some(send) = send_mut(&self.sends, &mut self.records, key) else {
            return;
        };
        self.pending.remove(&(send.planned.at, key.to_string()));
        self.pending.insert((to, key.to_string()));
        if let Some(list) = self
            .pending_by_customer
            .get_mut(send.planned.customer.as_str())
        {
            if let Some(entry) = list
                .iter_mut()
                .find(|(at, kind)| *at == send.planned.at && *kind == send.planned.kind)
            {
                entry.0 = to;
            }
        }
        send.planned.at = to;
    }

    fn sent(&mut self, sent: &MessageSent, at: DateTime<Utc>) {
        if let Some(message) = self.staff_pending.remove(&sent.key) {
            self.staff_sent.insert(message.key, at);
            return;
        }
        if sent.reach_out.is_none() {
            self.staff_sent.insert(sent.key.clone(), at);
            return;
        }
        let Some(send) = send_mut(&self.sends, &mut self.records, &sent.key) else {
            return;
        };
        if send.status != SendStatus::Pending {
            return;
        }
        self.pending.remove(&(send.planned.at, sent.key.clone()));
        unpend(&mut self.pending_by_customer, &send.planned);
        send.status = SendStatus::Sent { at };
        if send.deferred > 0 {
            retry_settled(&mut self.guards, &send.planned);
        }
        self.guards
            .entry((send.planned.campaign.clone(), send.planned.channel.clone()))
            .or_default()
            .sent += 1;
        if let Some(terms) = &send.planned.follow_up {
            let due = at
                .checked_add_signed(Duration::milliseconds(terms.after_ms))
                .unwrap_or(at);
            self.drop_follow_up(&sent.key);
            self.follow_ups.insert((due, sent.key.clone()));
            self.follow_up_due.insert(sent.key.clone(), due);
        }
    }

    /// A bounce counts against the channel of the message it names (by key), or of the
    /// reach-out's first message to the customer.
    pub fn outcome(&mut self, outcome: &OutcomeRecorded) {
        if outcome.outcome != OutcomeKind::Bounced {
            return;
        }
        let send = outcome
            .message
            .as_ref()
            .and_then(|key| self.send(key))
            .or_else(|| match (&outcome.campaign, &outcome.reach_out) {
                (Some(campaign), Some(reach_out)) => self.send(&super::events::send_key(
                    campaign,
                    reach_out,
                    &outcome.customer,
                    1,
                )),
                _ => None,
            });
        let Some(send) = send else { return };
        if outcome
            .channel
            .is_some_and(|kind| kind != send.planned.kind)
        {
            return;
        }
        let key = (send.planned.campaign.clone(), send.planned.channel.clone());
        let status = send.status;
        let guard = self.guards.entry(key).or_default();
        guard.bounced += 1;
        if let (SendStatus::Sent { at }, Some(resumed)) = (status, guard.resumed_at) {
            if at < resumed {
                guard.base_bounced += 1;
            }
        }
    }

    /// A message to staff decided elsewhere (a task reminder) waits here until it is sent.
    pub fn staff_planned(&mut self, message: StaffMessage) {
        if !self.staff_sent.contains_key(&message.key) {
            self.staff_pending.insert(message.key.clone(), message);
        }
    }

    /// What the outbox holds for a customer about to be planned on a channel of `kind` from
    /// `at`: decided already for `key`, or a send pending within `fatigue_ms` of `at` (any
    /// channel, or this kind only).
    /// The customer is given by book slot and id.
    #[allow(clippy::too_many_arguments)]
    pub fn prior(
        &self,
        campaign: &str,
        reach_out: &str,
        (slot, customer): (u32, &str),
        kind: ChannelKind,
        any_channel: bool,
        at: DateTime<Utc>,
        fatigue_ms: i64,
    ) -> crate::customer::preview::Prior {
        use crate::customer::preview::Prior;
        if self.decided(&super::events::send_key(campaign, reach_out, customer, 1))
            || self.decided_at_planning(campaign, reach_out, slot)
        {
            return Prior::Decided;
        }
        let near = self.pending_by_customer.get(customer).is_some_and(|list| {
            list.iter().any(|(planned, planned_kind)| {
                (any_channel || *planned_kind == kind)
                    && (*planned - at).num_milliseconds().abs() < fatigue_ms
            })
        });
        if near {
            Prior::PlannedNearby
        } else {
            Prior::Nothing
        }
    }

    pub fn send(&self, key: &str) -> Option<&Send> {
        self.sends
            .get(key)
            .and_then(|index| self.records.get(*index as usize))
    }

    /// Whether anything was decided for this key (a planned send, or a reason not to).
    pub fn decided(&self, key: &str) -> bool {
        self.sends.contains_key(key) || self.not_planned.contains_key(key)
    }

    /// Per reach-out of a campaign, how many keys were decided not sent at planning (no send
    /// planned for them), by reason. The keys themselves are in the log (`NotSent` events whose
    /// key no `SendPlanned` came before).
    pub fn not_planned_counts<'a>(
        &'a self,
        campaign: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a BTreeMap<NotSentReason, u64>)> + 'a {
        self.not_planned_counts
            .range((campaign.to_string(), String::new())..)
            .take_while(move |((of, _), _)| of == campaign)
            .map(|((_, reach_out), counts)| (reach_out.as_str(), counts))
    }

    /// Why a key was decided not sent at planning, while the projection holds it (see
    /// `not_planned`).
    pub fn not_planned(&self, key: &str) -> Option<NotSentReason> {
        self.not_planned.get(key).copied()
    }

    pub fn reach_out_planned(&self, campaign: &str, reach_out: &str) -> Option<&ReachOutPlanned> {
        self.planned_reach_outs
            .get(&(campaign.to_string(), reach_out.to_string()))
    }

    /// Pending sends in the order they are due.
    /// Planned sends not yet sent or given up, in the order of their instants; of them, only
    /// those this node may act on (not those another node handed over and has not answered
    /// for).
    pub fn pending(&self) -> impl Iterator<Item = &Send> + '_ {
        self.pending
            .iter()
            .filter(|(_, key)| self.mine(key))
            .filter_map(|(_, key)| self.send(key))
            .filter(|send| send.status == SendStatus::Pending)
    }

    /// Whether this node may hand the message over: nobody has, or this node did; a process
    /// that is not one of several nodes (`here` unset) acts on everything.
    pub fn mine(&self, key: &str) -> bool {
        match (self.handed.get(key), self.here.as_deref()) {
            (None, _) | (Some(_), None) => true,
            (Some(node), Some(here)) => here == node.as_ref(),
        }
    }

    /// The node that handed the message over and has not answered for it yet.
    pub fn handed_over_by(&self, key: &str) -> Option<&str> {
        self.handed.get(key).map(|node| node.as_ref())
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Follow-ups in the order they come due.
    pub fn follow_ups(&self) -> impl Iterator<Item = FollowUpDue> + '_ {
        self.follow_ups.iter().map(|(at, key)| FollowUpDue {
            at: *at,
            after_key: key.clone(),
        })
    }

    pub fn guard(&self, campaign: &str, channel: &str) -> Option<&Guard> {
        self.guards
            .get(&(campaign.to_string(), channel.to_string()))
    }

    pub fn channel_paused(&self, campaign: &str, channel: &str) -> bool {
        self.guard(campaign, channel)
            .is_some_and(|guard| guard.paused)
    }

    /// Whether the bounce guard holds any of the campaign's channels.
    pub fn any_channel_paused(&self, campaign: &str) -> bool {
        self.guards
            .iter()
            .any(|((of, _), guard)| of == campaign && guard.paused)
    }

    /// Messages to staff waiting to go that this node may hand over (see [`Outreach::mine`]).
    pub fn staff_pending(&self) -> impl Iterator<Item = &StaffMessage> + '_ {
        self.staff_pending
            .values()
            .filter(|message| self.mine(&message.key))
    }

    pub fn staff_sent(&self, key: &str) -> bool {
        self.staff_sent.contains_key(key)
    }

    /// Every send of a campaign, in no particular order.
    pub fn sends_of<'a>(&'a self, campaign: &'a str) -> impl Iterator<Item = &'a Send> + 'a {
        self.records
            .iter()
            .filter(move |send| send.planned.campaign == campaign)
    }

    /// A campaign's messages sent in `[from, to)`, per local day of sending (in `zone`) and
    /// channel: how many, and how many of them were paid (beyond the day's free volume, as each
    /// was planned). In order of day, then channel.
    pub fn sent_per_day(
        &self,
        campaign: &str,
        zone: chrono_tz::Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DaySent> {
        let mut days: BTreeMap<(chrono::NaiveDate, String), (u64, u64)> = BTreeMap::new();
        for send in self.sends_of(campaign) {
            if let SendStatus::Sent { at } = send.status {
                if at < from || at >= to {
                    continue;
                }
                let date = at.with_timezone(&zone).date_naive();
                let entry = days
                    .entry((date, send.planned.channel.clone()))
                    .or_default();
                entry.0 += 1;
                entry.1 += u64::from(send.planned.paid);
            }
        }
        days.into_iter()
            .map(|((date, channel), (sent, paid))| DaySent {
                date,
                channel,
                sent,
                paid,
            })
            .collect()
    }

    /// Sent and pending counts of a campaign's channel kind, for status.
    pub fn counts(&self, campaign: &str) -> BTreeMap<String, (u64, u64, u64)> {
        let mut counts: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for send in self.sends_of(campaign) {
            let entry = counts.entry(send.planned.channel.clone()).or_default();
            match send.status {
                SendStatus::Pending => entry.0 += 1,
                SendStatus::Sent { .. } => entry.1 += 1,
                SendStatus::NotSent(_) => entry.2 += 1,
            }
        }
        counts
    }

    pub fn kind_of(&self, key: &str) -> Option<ChannelKind> {
        self.send(key).map(|send| send.planned.kind)
    }
}

fn send_mut<'a>(
    sends: &FxHashMap<Box<str>, u32>,
    records: &'a mut [Send],
    key: &str,
) -> Option<&'a mut Send> {
    let index = *sends.get(key)?;
    records.get_mut(index as usize)
}

fn unpend(
    pending: &mut FxHashMap<Box<str>, Vec<(DateTime<Utc>, ChannelKind)>>,
    planned: &SendPlanned,
) {
    if let Some(list) = pending.get_mut(planned.customer.as_str()) {
        if let Some(index) = list
            .iter()
            .position(|(at, kind)| *at == planned.at && *kind == planned.kind)
        {
            list.swap_remove(index);
        }
        if list.is_empty() {
            pending.remove(planned.customer.as_str());
        }
    }
}

/// The key of the attempt before `attempt` (same campaign, reach-out and customer).
/// A send that was waiting for a retry went or was given up: one fewer retrying on its channel.
fn retry_settled(guards: &mut BTreeMap<(String, String), Guard>, planned: &SendPlanned) {
    if let Some(guard) = guards.get_mut(&(planned.campaign.clone(), planned.channel.clone())) {
        guard.retrying = guard.retrying.saturating_sub(1);
        if guard.retrying == 0 {
            guard.retrying_since = None;
        }
    }
}

pub fn previous_key(key: &str, attempt: u32) -> String {
    match key.rsplit_once('/') {
        Some((stem, _)) => format!("{stem}/{}", attempt.saturating_sub(1)),
        None => key.to_string(),
    }
}
