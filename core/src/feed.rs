//! One event of the log decoded once for every projection that folds it: the customer book,
//! the outbox and the boards all read customer and outbox events, and decoding a payload (its
//! texts, its instants) costs more than folding it.

use crate::customer::events::CustomerEvent;
use crate::event::upcast::PayloadError;
use chrono::{DateTime, Utc};

use crate::event::{Position, RecordedEvent, StreamId};
use crate::outreach::OutreachEvent;

/// A customer or outbox event decoded; anything else is left to the projections that want it.
#[derive(Debug)]
pub enum Decoded {
    Customer(CustomerEvent),
    Outreach(OutreachEvent),
    Other,
}

/// Where an event sits in the log: what a projection folding a decoded event needs of it besides
/// its payload.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
    pub stream: &'a StreamId,
}

impl<'a> Place<'a> {
    pub fn of(event: &'a RecordedEvent) -> Place<'a> {
        Place {
            position: event.position,
            recorded_at: event.recorded_at,
            stream: &event.stream,
        }
    }
}

impl Decoded {
    pub fn of(event: &RecordedEvent) -> Result<Decoded, PayloadError> {
        let kind = event.event_type.as_str();
        Ok(if CustomerEvent::holds(kind) {
            CustomerEvent::decode(event)?.map_or(Decoded::Other, Decoded::Customer)
        } else if OutreachEvent::holds(kind) {
            OutreachEvent::decode(event)?.map_or(Decoded::Other, Decoded::Outreach)
        } else {
            Decoded::Other
        })
    }
}
