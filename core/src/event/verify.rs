//! The auditor's first check: walk the log in order and find the first position whose record
//! cannot be read, is out of sequence, breaks the hash chain, or breaks its stream's versions.
//! Pure: the store feeds it the records it holds, keyed by the position they are stored under.

use std::collections::HashMap;
use std::fmt;

use super::envelope::RecordedEvent;
use super::ids::{Position, StreamId};
use super::record::{self, chain_hash, hex, ChainHash, DecodeError, GENESIS_HASH};

/// What is wrong at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Unreadable(DecodeError),
    /// The file holding the records from this position on does not give them back (a frame
    /// that does not match its checksum, a file cut short or missing): the store's words.
    StoredBadly(String),
    /// The store holds the record under one position, the record says another.
    Misplaced {
        stored_under: Position,
    },
    /// A position is missing or repeated.
    OutOfSequence {
        found: Position,
    },
    /// The record's previous hash is not the hash of the record before it.
    BrokenLink,
    /// The record's hash does not match its contents.
    HashMismatch,
    /// The stream's versions do not go 1, 2, 3 ...
    VersionOutOfSequence {
        stream: StreamId,
        expected: u64,
        found: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub position: Position,
    pub damage: Damage,
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = self.position;
        match &self.damage {
            Damage::Unreadable(error) => write!(formatter, "position {position}: the record cannot be read: {error}"),
            Damage::StoredBadly(detail) => write!(formatter, "position {position}: {detail}"),
            Damage::Misplaced { stored_under } => write!(
                formatter,
                "position {position}: the record is stored under position {stored_under}"
            ),
            Damage::OutOfSequence { found } => write!(
                formatter,
                "position {position}: expected the next event here, found position {found} (an event is missing or repeated)"
            ),
            Damage::BrokenLink => write!(
                formatter,
                "position {position}: the hash chain is broken (the previous event was changed, removed or reordered)"
            ),
            Damage::HashMismatch => write!(
                formatter,
                "position {position}: the record does not match its hash (its bytes were changed)"
            ),
            Damage::VersionOutOfSequence { stream, expected, found } => write!(
                formatter,
                "position {position}: stream {stream} should be at version {expected}, the record says {found}"
            ),
        }
    }
}

/// Walks records in stored order. Feed every record; stop at the first problem.
#[derive(Debug)]
pub struct Verifier {
    next: Position,
    previous_hash: ChainHash,
    versions: HashMap<StreamId, u64>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            next: Position(1),
            previous_hash: GENESIS_HASH,
            versions: HashMap::new(),
        }
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records have checked out.
    pub fn checked(&self) -> u64 {
        self.next.0 - 1
    }

    /// The hash of the last record checked: the head of the chain.
    pub fn head_hash(&self) -> ChainHash {
        self.previous_hash
    }

    pub fn head_hash_hex(&self) -> String {
        hex(&self.previous_hash)
    }

    /// Checks the record stored under `stored_under`.
    pub fn check(&mut self, stored_under: Position, bytes: &[u8]) -> Result<(), Problem> {
        self.check_decoded(stored_under, bytes).map(|_| ())
    }

    /// [`Verifier::check`], giving back the event the record holds (decoded once).
    pub fn check_decoded(
        &mut self,
        stored_under: Position,
        bytes: &[u8],
    ) -> Result<RecordedEvent, Problem> {
        let expected = self.next;
        let problem = |damage| Problem {
            position: expected,
            damage,
        };
        if stored_under != expected {
            return Err(problem(Damage::OutOfSequence {
                found: stored_under,
            }));
        }
        let raw = record::split(bytes).map_err(|e| problem(Damage::Unreadable(e)))?;
        if chain_hash(&raw.previous_hash, raw.body) != raw.hash {
            return Err(problem(Damage::HashMismatch));
        }
        if raw.previous_hash != self.previous_hash {
            return Err(problem(Damage::BrokenLink));
        }
        let event = record::decode(bytes).map_err(|e| problem(Damage::Unreadable(e)))?;
        if event.position != stored_under {
            return Err(problem(Damage::Misplaced { stored_under }));
        }
        // The stream's name copied only the first time it is seen.
        let version = self.versions.get(&event.stream).copied().unwrap_or(0);
        if event.version.0 != version + 1 {
            return Err(problem(Damage::VersionOutOfSequence {
                stream: event.stream,
                expected: version + 1,
                found: event.version.0,
            }));
        }
        match self.versions.get_mut(&event.stream) {
            Some(known) => *known += 1,
            None => {
                self.versions.insert(event.stream.clone(), 1);
            }
        }
        self.previous_hash = raw.hash;
        self.next = expected.next();
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::envelope::{Metadata, NewEvent};
    use crate::event::ids::{CommandId, EventId, StreamVersion};
    use crate::event::record::{encode, Placement};
    use chrono::DateTime;
    use uuid::Uuid;

    /// Five events over two streams, chained.
    fn chain() -> Vec<Vec<u8>> {
        let metadata = Metadata {
            actor: "system:test".into(),
            command_id: CommandId(Uuid::from_u128(1)),
            causation_id: None,
            correlation_id: None,
            reason: None,
        };
        let streams = [StreamId::new("a").unwrap(), StreamId::new("b").unwrap()];
        let mut versions = [0u64, 0];
        let mut previous = GENESIS_HASH;
        (1..=5u64)
            .map(|position| {
                let which = (position % 2) as usize;
                versions[which] += 1;
                let (bytes, recorded) = encode(
                    NewEvent {
                        event_id: EventId(Uuid::from_u128(position.into())),
                        event_type: "Tested".into(),
                        schema_version: 1,
                        payload: vec![position as u8],
                    },
                    Placement {
                        position: Position(position),
                        stream: &streams[which],
                        version: StreamVersion(versions[which]),
                        recorded_at: DateTime::from_timestamp(0, 0).unwrap(),
                        metadata: &metadata,
                        previous_hash: previous,
                    },
                );
                previous = recorded.hash;
                bytes
            })
            .collect()
    }

    fn first_problem(records: &[(u64, Vec<u8>)]) -> Option<Problem> {
        let mut verifier = Verifier::new();
        records
            .iter()
            .find_map(|(position, bytes)| verifier.check(Position(*position), bytes).err())
    }

    fn numbered(records: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
        records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r))
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = numbered(chain());
        assert_eq!(first_problem(&records), None);
    }

    #[test]
    fn a_flipped_byte_is_found_at_its_position() {
        for index in 0..chain()[2].len() {
            let mut records = numbered(chain());
            records[2].1[index] ^= 0x40;
            let problem = first_problem(&records).expect("damage found");
            assert_eq!(problem.position, Position(3), "byte {index}");
        }
    }

    #[test]
    fn deletion_and_reordering_are_found() {
        let mut deleted = numbered(chain());
        deleted.remove(1);
        assert_eq!(
            first_problem(&deleted).map(|p| p.position),
            Some(Position(2))
        );

        // Renumbered after the deletion, so positions look gapless: the chain still breaks.
        let renumbered = numbered(deleted.into_iter().map(|(_, r)| r).collect());
        let problem = first_problem(&renumbered).unwrap();
        assert_eq!(problem.position, Position(2));

        let mut swapped = numbered(chain());
        let (a, b) = (swapped[1].1.clone(), swapped[2].1.clone());
        swapped[1].1 = b;
        swapped[2].1 = a;
        assert_eq!(
            first_problem(&swapped).map(|p| p.position),
            Some(Position(2))
        );
    }
}
