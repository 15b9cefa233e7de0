//! Of a long stream, the few events of some types, read once and kept: the history's lines
//! among a campaign's many outbox and task events. Later questions read only what the stream
//! recorded since, so a page of a campaign's history does not read its every send again.

use std::collections::HashMap;

use battleplan_core::event::{RecordedEvent, StreamId, StreamVersion};

use crate::kernel::runtime::{HandleError, Runtime};

/// Events read from a stream at a time.
const BATCH: usize = 1_000;

/// What is kept of one stream for one purpose.
#[derive(Debug, Default)]
pub struct Picked {
    /// The stream's last version read.
    read_to: StreamVersion,
    /// Its events of the wanted types, in stream order.
    events: Vec<RecordedEvent>,
}

/// The kept picks, by stream and by the name of what they are for (one predicate each).
pub type Picks = HashMap<(StreamId, &'static str), Picked>;

/// The events of `stream` whose type `wanted` accepts, up to the log's head: kept under
/// `purpose`, which names one `wanted` (the same purpose always passes the same predicate).
pub async fn picked(
    runtime: &Runtime,
    stream: &StreamId,
    purpose: &'static str,
    wanted: fn(&str) -> bool,
) -> Result<Vec<RecordedEvent>, HandleError> {
    let mut picks = runtime.picked.lock().await;
    let kept = picks.entry((stream.clone(), purpose)).or_default();
    loop {
        let batch = runtime
            .store
            .read_stream(stream, kept.read_to.next(), BATCH)
            .await?;
        let Some(last) = batch.last() else { break };
        kept.read_to = last.version;
        let full = batch.len() == BATCH;
        kept.events
            .extend(batch.into_iter().filter(|event| wanted(&event.event_type)));
        if !full {
            break;
        }
    }
    Ok(kept.events.clone())
}
