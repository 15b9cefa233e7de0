//! The projections the dispatcher and the people's commands share, besides the customer book and
//! the outbox: each campaign's task board, the funnel, the shop's own numbers, and the orders
//! that named an offer. Caught up from the log in the same
//! pass as the book (`dispatcher::catch_up`).

use std::collections::BTreeMap;

use battleplan_core::campaign::timeline::local;
use battleplan_core::campaign::{CampaignEvent, EventMeta};
use battleplan_core::customer::events::CustomerEvent;
use battleplan_core::event::upcast::PayloadError;
use battleplan_core::event::{Position, RecordedEvent};
use battleplan_core::feed::{Decoded, Place};
use battleplan_core::funnel::Funnel;
use battleplan_core::metrics::{MetricsEvent, ShopMetrics};
use battleplan_core::outreach::state::StaffMessage;
use battleplan_core::outreach::{Outreach, OutreachEvent};
use battleplan_core::report::schedule::{ReportEvent, ReportPlanned, ReportsDecided};
use battleplan_core::report::OfferOrders;
use battleplan_core::task::{ReminderKind, ReminderPlanned, TaskBoard, TaskEvent};
use chrono::{DateTime, Utc};

/// A snapshot holds all of it (`kernel::snapshot`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Boards {
    pub position: Position,
    pub boards: BTreeMap<String, TaskBoard>,
    pub funnel: Funnel,
    /// The shop's own numbers (`metrics import`).
    pub shop: ShopMetrics,
    /// The orders that named an offer, for the weekly report's uptake of each offer.
    pub offers: OfferOrders,
    /// The weekly reports decided (`[reports.weekly]`), per campaign.
    pub reports: ReportsDecided,
    /// Each campaign's zone, from its plan events: reminders name instants in it.
    pub zones: BTreeMap<String, chrono_tz::Tz>,
}

/// Feeds one event to the book, the outbox and the boards, decoded once for the three (most
/// events are customer or outbox events); events at or before a projection's position are
/// ignored by it.
pub fn feed(
    book: &mut battleplan_core::customer::book::CustomerBook,
    outreach: &mut Outreach,
    boards: &mut Boards,
    event: &RecordedEvent,
) -> Result<(), PayloadError> {
    let decoded = Decoded::of(event)?;
    let place = Place::of(event);
    book.apply_decoded(place, &decoded);
    outreach.apply_fed(place, &decoded, book);
    boards.apply_decoded(event, &decoded, outreach)
}

impl Boards {
    pub fn board(&self, campaign: &str) -> TaskBoard {
        self.boards
            .get(campaign)
            .cloned()
            .unwrap_or_else(|| TaskBoard::new(campaign))
    }

    /// Applies one event; reminders also wait in the outbox until sent.
    pub fn apply_recorded(
        &mut self,
        event: &RecordedEvent,
        outreach: &mut Outreach,
    ) -> Result<(), PayloadError> {
        if event.position <= self.position {
            return Ok(());
        }
        self.apply_decoded(event, &Decoded::of(event)?, outreach)
    }

    /// [`Boards::apply_recorded`] with the event's customer or outbox payload decoded once for
    /// the book, the outbox and the boards.
    pub fn apply_decoded(
        &mut self,
        event: &RecordedEvent,
        decoded: &Decoded,
        outreach: &mut Outreach,
    ) -> Result<(), PayloadError> {
        if event.position <= self.position {
            return Ok(());
        }
        if !matches!(decoded, Decoded::Other) {
            self.apply_fed(Place::of(event), decoded);
            return Ok(());
        }
        self.position = event.position;
        let kind = event.event_type.as_str();
        if CampaignEvent::holds(kind) {
            if let Some(campaign) = battleplan_core::campaign::campaign_of(&event.stream) {
                let timeline = match CampaignEvent::decode(event)? {
                    Some(CampaignEvent::PlanApplied(applied)) => Some(applied.timeline),
                    Some(CampaignEvent::PlanRevised(revised)) => Some(revised.timeline),
                    _ => None,
                };
                if let Some(timeline) = timeline {
                    self.zones.insert(campaign.to_string(), timeline.zone());
                }
            }
        } else if TaskEvent::holds(kind) {
            if let Some(decoded) = TaskEvent::decode(event)? {
                if let TaskEvent::ReminderPlanned(reminder) = &decoded {
                    let zone = self
                        .zones
                        .get(&reminder.campaign)
                        .copied()
                        .unwrap_or(chrono_tz::Tz::UTC);
                    outreach.staff_planned(staff_message(reminder, event, zone));
                }
                let campaign = decoded.campaign().to_string();
                self.boards
                    .entry(campaign.clone())
                    .or_insert_with(|| TaskBoard::new(&campaign))
                    .apply(&decoded, &EventMeta::of(event));
            }
        } else if ReportEvent::holds(kind) {
            if let Some(decoded) = ReportEvent::decode(event)? {
                let ReportEvent::ReportPlanned(planned) = &decoded;
                for message in report_messages(planned, event) {
                    outreach.staff_planned(message);
                }
                self.reports.apply(&decoded);
            }
        } else if MetricsEvent::holds(kind) {
            if let Some(MetricsEvent::MetricsRecorded(recorded)) = MetricsEvent::decode(event)? {
                self.shop.apply(&recorded, event.recorded_at);
            }
        }
        Ok(())
    }
}

impl Boards {
    /// Folds a decoded customer or outbox event (the only kinds [`Decoded`] holds).
    pub fn apply_fed(&mut self, event: Place<'_>, decoded: &Decoded) {
        if event.position <= self.position {
            return;
        }
        self.position = event.position;
        match decoded {
            Decoded::Outreach(decoded) => {
                feed_outreach(&mut self.funnel, decoded, event.recorded_at)
            }
            Decoded::Customer(decoded) => {
                feed_customer(&mut self.funnel, decoded);
                if let CustomerEvent::OutcomeRecorded(outcome) = decoded {
                    self.offers.outcome(outcome);
                }
            }
            Decoded::Other => {}
        }
    }
}

/// What an outbox event tells the funnel: who was considered (a first attempt planned or not
/// sent, in its phase), who was reached (a message of a reach-out delivered).
pub fn feed_outreach(funnel: &mut Funnel, decoded: &OutreachEvent, recorded_at: DateTime<Utc>) {
    match decoded {
        OutreachEvent::SendPlanned(planned) if planned.attempt == 1 => {
            if let Some(phase) = planned.phase {
                funnel.considered(&planned.campaign, &planned.customer, phase);
            }
        }
        OutreachEvent::NotSent(not_sent) if not_sent.attempt == 1 => {
            if let Some(phase) = not_sent.phase {
                funnel.considered(&not_sent.campaign, &not_sent.customer, phase);
            }
        }
        OutreachEvent::MessageSent(sent) => {
            if let (Some(_), Some(phase)) = (&sent.reach_out, sent.phase) {
                funnel.reached(&sent.campaign, &sent.to, recorded_at, phase, sent.kind);
            }
        }
        _ => {}
    }
}

/// What a customer event tells the funnel: replies and orders, and the orders an import stated.
pub fn feed_customer(funnel: &mut Funnel, decoded: &CustomerEvent) {
    match decoded {
        CustomerEvent::OutcomeRecorded(outcome) => funnel.outcome(outcome),
        CustomerEvent::CustomerRecorded(customer) => {
            if let Some(orders) = customer.orders.filter(|orders| *orders > 0) {
                funnel.prior_orders(&customer.customer, orders);
            }
        }
        _ => {}
    }
}

/// A reminder as the staff outbox sends it, its due time in the campaign's zone.
fn staff_message(
    reminder: &ReminderPlanned,
    event: &RecordedEvent,
    zone: chrono_tz::Tz,
) -> StaffMessage {
    let due = local(zone, reminder.due);
    let subject = match reminder.kind {
        ReminderKind::Lead { .. } => format!("Reminder: {} (due {due})", reminder.title),
        ReminderKind::Due => format!("Due now: {}", reminder.title),
        ReminderKind::Escalation => format!(
            "Escalation: {} (task {}) is overdue since {due}",
            reminder.title, reminder.task
        ),
    };
    let body = format!(
        "{}\nTask {} of campaign {}, due {due}.\nWhen it is done: battleplan task done {} --campaign {} --actor YOU",
        reminder.title, reminder.occurrence, reminder.campaign, reminder.occurrence, reminder.campaign
    );
    StaffMessage {
        key: reminder.key.clone(),
        campaign: reminder.campaign.clone(),
        role: reminder.role.clone(),
        members: reminder.members.clone(),
        subject,
        body,
        at: event.recorded_at,
        document: None,
    }
}

/// A weekly report as the staff outbox sends it: one message per role (`{key}/{role}`), the
/// text as its body, the Markdown and HTML beside it for a robot and a mail.
fn report_messages(planned: &ReportPlanned, event: &RecordedEvent) -> Vec<StaffMessage> {
    let rendered = battleplan_core::report::render::Rendered::of(&planned.report);
    planned
        .to
        .iter()
        .map(|recipient| StaffMessage {
            key: format!("{}/{}", planned.key, recipient.role),
            campaign: planned.campaign.clone(),
            role: recipient.role.clone(),
            members: recipient.members.clone(),
            subject: rendered.subject.clone(),
            body: rendered.text.clone(),
            at: event.recorded_at,
            document: Some(battleplan_core::outreach::port::Document {
                markdown: rendered.markdown.clone(),
                html: rendered.html.clone(),
            }),
        })
        .collect()
}
