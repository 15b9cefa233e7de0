//! Identities of the log: newtypes so a position is never mistaken for a version.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Place in the whole log: 1, 2, 3 ... without gaps. `Position(0)` means "before the first
/// event", the checkpoint of a projection that has seen nothing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Position(pub u64);

impl Position {
    pub const START: Position = Position(0);

    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Place of an event in its stream: 1, 2, 3 ... `StreamVersion(0)` is a stream with no events.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct StreamVersion(pub u64);

impl StreamVersion {
    pub const NONE: StreamVersion = StreamVersion(0);

    pub fn next(self) -> StreamVersion {
        StreamVersion(self.0 + 1)
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A stream: all events of one campaign (`campaign-sept-festival-2026`), one customer
/// (`customer-c-000417`), ... At most 255 bytes of printable text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(String);

impl StreamId {
    pub const MAX_LEN: usize = 255;

    pub fn new(name: impl Into<String>) -> Result<StreamId, String> {
        let name = name.into();
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(format!(
                "a stream name has 1 to {} bytes; `{name}` has {}",
                Self::MAX_LEN,
                name.len()
            ));
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "stream name `{}` contains spaces or control characters",
                name.escape_debug()
            ));
        }
        Ok(StreamId(name))
    }

    /// `campaign-<slug>`.
    pub fn campaign(slug: &str) -> Result<StreamId, String> {
        StreamId::new(format!("campaign-{slug}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// An event's own id: a UUID v7 from the id source (time-ordered, seeded in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub Uuid);

impl fmt::Display for EventId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// The id of the command that produced events; appending again with the same id returns the
/// first result and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommandId(pub Uuid);

impl fmt::Display for CommandId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}
