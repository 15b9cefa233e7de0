//! A catch-up subscription: replays the log from a checkpoint, then follows new appends. It only
//! ever reads by position from the durable log, so there is no switch-over between a "replay" and
//! a "live" source at which an event could be missed or seen twice.

use std::collections::VecDeque;

use super::envelope::RecordedEvent;
use super::ids::Position;
use super::port::{EventReader, StoreError, StoreResult};

pub struct CatchUp<'a, R: EventReader + ?Sized> {
    reader: &'a R,
    after: Position,
    batch: usize,
    buffer: VecDeque<RecordedEvent>,
}

impl<'a, R: EventReader + ?Sized> CatchUp<'a, R> {
    /// Starts after `checkpoint`: the first event delivered is at `checkpoint + 1`.
    pub fn new(reader: &'a R, checkpoint: Position, batch: usize) -> Self {
        CatchUp {
            reader,
            after: checkpoint,
            batch: batch.max(1),
            buffer: VecDeque::new(),
        }
    }

    /// The position of the last event delivered.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next event, waiting for one to be appended if the log has no more.
    pub async fn next(&mut self) -> StoreResult<RecordedEvent> {
        loop {
            if let Some(event) = self.try_next().await? {
                return Ok(event);
            }
            self.reader.wait_beyond(self.after).await?;
        }
    }

    /// The next event if the log has one now, without waiting.
    pub async fn try_next(&mut self) -> StoreResult<Option<RecordedEvent>> {
        if self.buffer.is_empty() {
            let batch = self.reader.read_all(self.after, self.batch).await?;
            self.buffer.extend(batch);
        }
        let Some(event) = self.buffer.pop_front() else {
            return Ok(None);
        };
        if event.position != self.after.next() {
            return Err(StoreError::Corrupt {
                position: self.after.next(),
                detail: format!("the log skips from {} to {}", self.after, event.position),
            });
        }
        self.after = event.position;
        Ok(Some(event))
    }
}
