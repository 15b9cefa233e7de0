//! The tail: every event appended since the last checkpoint, held in memory beside the
//! write-ahead log that makes it durable. Readers merge it with what sled holds; a checkpoint
//! writes it into sled and starts a new, empty one.
//!
//! Readers always look at the tail first and at sled after: sled holds everything before the
//! tail's first position at any moment they look (a checkpoint applies its batch to sled before
//! it empties the tail), so nothing falls between the two.

use std::sync::Arc;

use battleplan_core::event::{AppendOutcome, CommandId, StreamId, StreamVersion};
use rustc_hash::FxHashMap;

/// A record held in a tail, with its position.
pub type Held = (u64, Arc<[u8]>);

/// One stream's events in the tail: the version of the first and the position of each.
#[derive(Debug, Clone)]
pub struct TailStream {
    pub first_version: u64,
    pub positions: Vec<u64>,
}

impl TailStream {
    pub fn last_version(&self) -> StreamVersion {
        StreamVersion(self.first_version + self.positions.len() as u64 - 1)
    }
}

#[derive(Debug)]
pub struct Tail {
    /// The position of `records[0]`: one past the last checkpoint.
    pub first: u64,
    pub records: Vec<Arc<[u8]>>,
    pub streams: FxHashMap<StreamId, TailStream>,
    pub commands: FxHashMap<CommandId, AppendOutcome>,
    /// The records' bytes.
    pub bytes: usize,
}

impl Tail {
    pub fn starting_at(first: u64) -> Tail {
        Tail {
            first,
            records: Vec::new(),
            streams: FxHashMap::default(),
            commands: FxHashMap::default(),
            bytes: 0,
        }
    }

    /// One past the last position held.
    pub fn end(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    /// Adds an append laid out right after the tail's last event.
    pub fn push(
        &mut self,
        stream: &StreamId,
        command: CommandId,
        outcome: AppendOutcome,
        records: impl IntoIterator<Item = Arc<[u8]>>,
    ) {
        let mut positions = Vec::new();
        for record in records {
            positions.push(self.end());
            self.bytes += record.len();
            self.records.push(record);
        }
        match self.streams.get_mut(stream) {
            Some(known) => known.positions.extend(positions),
            None => {
                self.streams.insert(
                    stream.clone(),
                    TailStream {
                        first_version: outcome.first_version.0,
                        positions,
                    },
                );
            }
        }
        self.commands.insert(command, outcome);
    }

    /// The record at `position`, if the tail holds it.
    pub fn record(&self, position: u64) -> Option<&Arc<[u8]>> {
        let offset = position.checked_sub(self.first)?;
        self.records.get(usize::try_from(offset).ok()?)
    }

    /// The records from `from` through `until`, at most `limit` of them, with their positions.
    pub fn range(&self, from: u64, until: u64, limit: usize) -> Vec<Held> {
        let start = from.max(self.first);
        let mut out = Vec::new();
        let mut position = start;
        while position <= until && out.len() < limit {
            let Some(record) = self.record(position) else {
                break;
            };
            out.push((position, record.clone()));
            position += 1;
        }
        out
    }
}

/// What the store holds beyond sled: the tail being written, and the one before it while a
/// checkpoint writes it into sled (`frozen`). sled holds every event before the first of them
/// (a checkpoint installs its batch in sled, and its commands in the index, before it lets its
/// frozen tail go), so a reader that looks here first and in sled after misses nothing.
#[derive(Debug)]
pub struct Tails {
    pub current: Tail,
    pub frozen: Option<Arc<Tail>>,
    /// How many times a tail was frozen: while it is unchanged, every command recorded since a
    /// look at the tails is in `current`.
    pub epoch: u64,
}

impl Tails {
    /// The tails of a store just opened: what recovery found, nothing frozen.
    pub fn new(current: Tail) -> Tails {
        Tails {
            current,
            frozen: None,
            epoch: 0,
        }
    }

    /// The first position held here: sled holds every one before it.
    pub fn first(&self) -> u64 {
        self.frozen
            .as_ref()
            .map_or(self.current.first, |frozen| frozen.first)
    }

    fn both(&self) -> impl Iterator<Item = &Tail> {
        self.frozen.as_deref().into_iter().chain([&self.current])
    }

    pub fn command(&self, command: &CommandId) -> Option<AppendOutcome> {
        self.current
            .commands
            .get(command)
            .or_else(|| self.frozen.as_ref()?.commands.get(command))
            .copied()
    }

    /// The stream's version if it has events here.
    pub fn last_version(&self, stream: &StreamId) -> Option<StreamVersion> {
        self.current
            .streams
            .get(stream)
            .or_else(|| self.frozen.as_ref()?.streams.get(stream))
            .map(TailStream::last_version)
    }

    /// The records from `from` through `until`, at most `limit` of them, with their positions.
    pub fn range(&self, from: u64, until: u64, limit: usize) -> Vec<Held> {
        let mut out = Vec::new();
        for tail in self.both() {
            if out.len() >= limit {
                break;
            }
            let from = out.last().map_or(from, |(position, _)| position + 1);
            out.extend(tail.range(from, until, limit - out.len()));
        }
        out
    }

    /// The stream's events held here from version `from`, at most `limit`, with their
    /// positions; and the first version held here (`u64::MAX` if none): sled holds the
    /// versions before it.
    pub fn stream_records(&self, stream: &StreamId, from: u64, limit: usize) -> (u64, Vec<Held>) {
        let mut first_here = u64::MAX;
        let mut out = Vec::new();
        for tail in self.both() {
            let Some(entry) = tail.streams.get(stream) else {
                continue;
            };
            first_here = first_here.min(entry.first_version);
            let skip = from.saturating_sub(entry.first_version) as usize;
            for position in entry.positions.iter().skip(skip) {
                if out.len() >= limit {
                    break;
                }
                if let Some(record) = tail.record(*position) {
                    out.push((*position, record.clone()));
                }
            }
        }
        (first_here, out)
    }
}
