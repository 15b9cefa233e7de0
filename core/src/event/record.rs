//! The stored form of an event and its hash chain.
//!
//! A record is `previous hash (32) | hash (32) | body`, where `body` is the event's canonical
//! bytes and `hash = blake3(previous hash | body)`. The body is a fixed, versioned binary layout
//! rather than a serde encoding: the same event always gives the same bytes (so the hash is
//! stable), decoding is a few bounds-checked reads (replay speed), and every field's place is
//! written down here once. Payloads inside it are opaque bytes with their own schema version.
//!
//! Body, format 1, integers big-endian:
//!
//! ```text
//! u8  format (1)        u64 position         u64 stream version     i64 recorded at (µs, UTC)
//! [16] event id         u16 schema version   [16] command id        u8 flags
//! [16] causation id     (flag 1)             [16] correlation id    (flag 2)
//! str stream            str event type       str actor              str reason (flag 4)
//! bytes payload
//! ```
//! where `str` and `bytes` are a u32 length followed by that many bytes.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::envelope::{Metadata, NewEvent, RecordedEvent};
use super::ids::{CommandId, EventId, Position, StreamId, StreamVersion};

pub type ChainHash = [u8; 32];

/// The previous hash of the first event.
pub const GENESIS_HASH: ChainHash = [0; 32];

/// The record layout this build writes.
pub const RECORD_FORMAT: u8 = 1;

const HASHES_LEN: usize = 64;
const FLAG_CAUSATION: u8 = 1;
const FLAG_CORRELATION: u8 = 2;
const FLAG_REASON: u8 = 4;

/// Why a stored record could not be read. Never a panic: a damaged store is reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the record is cut short: {0}")]
    Truncated(&'static str),
    #[error("record format {0} is newer than this build reads ({RECORD_FORMAT})")]
    NewerFormat(u8),
    #[error("a text field is not UTF-8: {0}")]
    NotText(&'static str),
    #[error("the recorded instant is out of range")]
    BadInstant,
    #[error("the stream name is invalid: {0}")]
    BadStream(String),
    #[error("{0} bytes follow the last field")]
    TrailingBytes(usize),
}

/// Everything needed to lay out an event at its place in the log.
pub struct Placement<'a> {
    pub position: Position,
    pub stream: &'a StreamId,
    pub version: StreamVersion,
    pub recorded_at: DateTime<Utc>,
    pub metadata: &'a Metadata,
    pub previous_hash: ChainHash,
}

/// The canonical bytes of an event at its place.
pub fn canonical_body(event: &NewEvent, placement: &Placement<'_>) -> Vec<u8> {
    let metadata = placement.metadata;
    let mut body = Vec::with_capacity(
        96 + placement.stream.as_str().len()
            + event.event_type.len()
            + metadata.actor.len()
            + metadata.reason.as_ref().map_or(0, String::len)
            + event.payload.len(),
    );
    body.push(RECORD_FORMAT);
    body.extend_from_slice(&placement.position.0.to_be_bytes());
    body.extend_from_slice(&placement.version.0.to_be_bytes());
    body.extend_from_slice(&placement.recorded_at.timestamp_micros().to_be_bytes());
    body.extend_from_slice(event.event_id.0.as_bytes());
    body.extend_from_slice(&event.schema_version.to_be_bytes());
    body.extend_from_slice(metadata.command_id.0.as_bytes());
    let mut flags = 0;
    if metadata.causation_id.is_some() {
        flags |= FLAG_CAUSATION;
    }
    if metadata.correlation_id.is_some() {
        flags |= FLAG_CORRELATION;
    }
    if metadata.reason.is_some() {
        flags |= FLAG_REASON;
    }
    body.push(flags);
    if let Some(causation) = metadata.causation_id {
        body.extend_from_slice(causation.as_bytes());
    }
    if let Some(correlation) = metadata.correlation_id {
        body.extend_from_slice(correlation.as_bytes());
    }
    put_bytes(&mut body, placement.stream.as_str().as_bytes());
    put_bytes(&mut body, event.event_type.as_bytes());
    put_bytes(&mut body, metadata.actor.as_bytes());
    if let Some(reason) = &metadata.reason {
        put_bytes(&mut body, reason.as_bytes());
    }
    put_bytes(&mut body, &event.payload);
    body
}

fn put_bytes(body: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths are bounded well below 4 GiB by the stores' record size limit.
    body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    body.extend_from_slice(bytes);
}

/// The chain link: blake3 over the previous hash and the body.
pub fn chain_hash(previous: &ChainHash, body: &[u8]) -> ChainHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

/// Lays out an event: its stored record bytes and the recorded event they decode to.
pub fn encode(event: NewEvent, placement: Placement<'_>) -> (Vec<u8>, RecordedEvent) {
    let body = canonical_body(&event, &placement);
    let hash = chain_hash(&placement.previous_hash, &body);
    let mut record = Vec::with_capacity(HASHES_LEN + body.len());
    record.extend_from_slice(&placement.previous_hash);
    record.extend_from_slice(&hash);
    record.extend_from_slice(&body);
    let recorded = RecordedEvent {
        position: placement.position,
        stream: placement.stream.clone(),
        version: placement.version,
        event_id: event.event_id,
        // Stored with microsecond precision: the recorded event says what a read will say.
        recorded_at: DateTime::from_timestamp_micros(placement.recorded_at.timestamp_micros())
            .unwrap_or(placement.recorded_at),
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: event.payload,
        metadata: placement.metadata.clone(),
        previous_hash: placement.previous_hash,
        hash,
    };
    (record, recorded)
}

/// The stored bytes of an event as read back: the same bytes its store holds (the record is
/// canonical), so a log can be copied from one store into another verbatim, its hashes intact.
pub fn encode_recorded(event: &RecordedEvent) -> Vec<u8> {
    let (bytes, _) = encode(
        NewEvent {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
        },
        Placement {
            position: event.position,
            stream: &event.stream,
            version: event.version,
            recorded_at: event.recorded_at,
            metadata: &event.metadata,
            previous_hash: event.previous_hash,
        },
    );
    bytes
}

/// The parts of a record, before the body is decoded.
pub struct RawRecord<'a> {
    pub previous_hash: ChainHash,
    pub hash: ChainHash,
    pub body: &'a [u8],
}

pub fn split(record: &[u8]) -> Result<RawRecord<'_>, DecodeError> {
    if record.len() < HASHES_LEN + 1 {
        return Err(DecodeError::Truncated("hashes"));
    }
    let mut previous_hash = [0; 32];
    let mut hash = [0; 32];
    previous_hash.copy_from_slice(&record[..32]);
    hash.copy_from_slice(&record[32..64]);
    Ok(RawRecord {
        previous_hash,
        hash,
        body: &record[64..],
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < length {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let length = u32::from_be_bytes(self.array(what)?) as usize;
        self.take(length, what)
    }

    fn text(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| DecodeError::NotText(what))
    }
}

/// Decodes a stored record. It does not check the hash; `verify` does.
pub fn decode(record: &[u8]) -> Result<RecordedEvent, DecodeError> {
    let raw = split(record)?;
    let mut reader = Reader { bytes: raw.body };
    let format = reader.array::<1>("format")?[0];
    if format != RECORD_FORMAT {
        return Err(DecodeError::NewerFormat(format));
    }
    let position = Position(reader.u64("position")?);
    let version = StreamVersion(reader.u64("stream version")?);
    let micros = i64::from_be_bytes(reader.array("recorded at")?);
    let recorded_at = DateTime::from_timestamp_micros(micros).ok_or(DecodeError::BadInstant)?;
    let event_id = EventId(Uuid::from_bytes(reader.array("event id")?));
    let schema_version = u16::from_be_bytes(reader.array("schema version")?);
    let command_id = CommandId(Uuid::from_bytes(reader.array("command id")?));
    let flags = reader.array::<1>("flags")?[0];
    let causation_id = if flags & FLAG_CAUSATION != 0 {
        Some(Uuid::from_bytes(reader.array("causation id")?))
    } else {
        None
    };
    let correlation_id = if flags & FLAG_CORRELATION != 0 {
        Some(Uuid::from_bytes(reader.array("correlation id")?))
    } else {
        None
    };
    let stream = StreamId::new(reader.text("stream")?).map_err(DecodeError::BadStream)?;
    let event_type = reader.text("event type")?;
    let actor = reader.text("actor")?;
    let reason = if flags & FLAG_REASON != 0 {
        Some(reader.text("reason")?)
    } else {
        None
    };
    let payload = reader.bytes("payload")?.to_vec();
    if !reader.bytes.is_empty() {
        return Err(DecodeError::TrailingBytes(reader.bytes.len()));
    }
    Ok(RecordedEvent {
        position,
        stream,
        version,
        event_id,
        recorded_at,
        event_type,
        schema_version,
        payload,
        metadata: Metadata {
            actor,
            command_id,
            causation_id,
            correlation_id,
            reason,
        },
        previous_hash: raw.previous_hash,
        hash: raw.hash,
    })
}

/// Hex form of a hash, for people.
pub fn hex(hash: &ChainHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(hash.len() * 2);
    for byte in hash {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_shown_as_lowercase_hex_two_digits_a_byte() {
        let mut hash = [0u8; 32];
        for (index, byte) in hash.iter_mut().enumerate() {
            *byte = (index as u8).wrapping_mul(37).wrapping_add(9);
        }
        let expected: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex(&hash), expected);
        assert_eq!(&hex(&[0xab; 32])[..4], "abab");
    }

    fn sample(reason: Option<&str>) -> (Vec<u8>, RecordedEvent) {
        let metadata = Metadata {
            actor: "alice".into(),
            command_id: CommandId(Uuid::from_u128(7)),
            causation_id: Some(Uuid::from_u128(8)),
            correlation_id: None,
            reason: reason.map(str::to_string),
        };
        let stream = StreamId::new("campaign-x").unwrap();
        encode(
            NewEvent {
                event_id: EventId(Uuid::from_u128(1)),
                event_type: "CampaignPaused".into(),
                schema_version: 2,
                payload: vec![1, 2, 3],
            },
            Placement {
                position: Position(5),
                stream: &stream,
                version: StreamVersion(3),
                recorded_at: DateTime::from_timestamp(1_788_000_000, 123_456_789).unwrap(),
                metadata: &metadata,
                previous_hash: [9; 32],
            },
        )
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        for reason in [None, Some("stock problem")] {
            let (bytes, recorded) = sample(reason);
            assert_eq!(decode(&bytes).unwrap(), recorded);
            assert_eq!(recorded.recorded_at.timestamp_subsec_nanos(), 123_456_000);
            assert_eq!(recorded.hash, chain_hash(&[9; 32], &bytes[64..]));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error_not_a_panic() {
        let (bytes, _) = sample(Some("why"));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn a_newer_format_is_refused() {
        let (mut bytes, _) = sample(None);
        bytes[64] = RECORD_FORMAT + 1;
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::NewerFormat(RECORD_FORMAT + 1))
        );
    }
}
