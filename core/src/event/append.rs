//! The part of an append every store shares, pure: check the expected version, place each event
//! at its position and version, and chain it to the one before. Stores supply what they hold
//! (the stream's version, the log's head) and write what this returns, all or nothing.

use super::envelope::RecordedEvent;
use super::ids::{Position, StreamVersion};
use super::port::{Append, AppendOutcome, ExpectedVersion, StoreError};
use super::record::{encode, ChainHash, Placement};

/// The end of the log an append continues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub position: Position,
    pub hash: ChainHash,
}

/// An append laid out: the records to write (position, bytes, the event they decode to) and the
/// outcome to return once they are durable.
#[derive(Debug)]
pub struct Prepared {
    pub records: Vec<(Position, Vec<u8>, RecordedEvent)>,
    pub outcome: AppendOutcome,
    pub new_head: LogHead,
    pub new_version: StreamVersion,
}

/// Fails with a typed conflict when the stream is not where the append expects it.
pub fn check_expected(append: &Append, actual: StreamVersion) -> Result<(), StoreError> {
    let matches = match append.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == StreamVersion::NONE,
        ExpectedVersion::Exact(expected) => actual == expected,
    };
    if matches {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            stream: append.stream.clone(),
            expected: append.expected,
            actual,
        })
    }
}

/// Lays out an append after `head`, on a stream at `current`. `max_record_bytes` bounds each
/// record so that one append can never be too large to store.
pub fn prepare(
    append: Append,
    head: LogHead,
    current: StreamVersion,
    max_record_bytes: usize,
) -> Result<Prepared, StoreError> {
    if append.events.is_empty() {
        return Err(StoreError::Invalid(
            "an append needs at least one event".into(),
        ));
    }
    check_expected(&append, current)?;
    let mut records = Vec::with_capacity(append.events.len());
    let mut position = head.position;
    let mut version = current;
    let mut previous_hash = head.hash;
    for event in append.events {
        position = position.next();
        version = version.next();
        let (bytes, recorded) = encode(
            event,
            Placement {
                position,
                stream: &append.stream,
                version,
                recorded_at: append.recorded_at,
                metadata: &append.metadata,
                previous_hash,
            },
        );
        if bytes.len() > max_record_bytes {
            return Err(StoreError::Invalid(format!(
                "a {} event of {} bytes is larger than the store's limit of {max_record_bytes} bytes",
                recorded.event_type,
                bytes.len()
            )));
        }
        previous_hash = recorded.hash;
        records.push((position, bytes, recorded));
    }
    Ok(Prepared {
        outcome: AppendOutcome {
            first_position: head.position.next(),
            last_position: position,
            first_version: current.next(),
            last_version: version,
            deduplicated: false,
        },
        new_head: LogHead {
            position,
            hash: previous_hash,
        },
        new_version: version,
        records,
    })
}

/// An outcome as stored in a command-id index: 32 bytes, big-endian.
pub fn outcome_to_bytes(outcome: &AppendOutcome) -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[..8].copy_from_slice(&outcome.first_position.0.to_be_bytes());
    bytes[8..16].copy_from_slice(&outcome.last_position.0.to_be_bytes());
    bytes[16..24].copy_from_slice(&outcome.first_version.0.to_be_bytes());
    bytes[24..].copy_from_slice(&outcome.last_version.0.to_be_bytes());
    bytes
}

/// Reads an outcome stored by [`outcome_to_bytes`], marked as a deduplicated answer.
pub fn outcome_from_bytes(bytes: &[u8]) -> Option<AppendOutcome> {
    let field = |index: usize| -> Option<u64> {
        let slice = bytes.get(index * 8..index * 8 + 8)?;
        let mut array = [0; 8];
        array.copy_from_slice(slice);
        Some(u64::from_be_bytes(array))
    };
    if bytes.len() != 32 {
        return None;
    }
    Some(AppendOutcome {
        first_position: Position(field(0)?),
        last_position: Position(field(1)?),
        first_version: StreamVersion(field(2)?),
        last_version: StreamVersion(field(3)?),
        deduplicated: true,
    })
}
