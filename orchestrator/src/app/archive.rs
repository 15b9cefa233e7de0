//! `battleplan export` and `battleplan import`: the log as JSON lines, one event a line in
//! position order, and back (docs/export.md describes each field).
//!
//! An export carries each payload twice: readable (`payload`, the MessagePack decoded to JSON)
//! and as stored (`payload_msgpack`, base64), because re-encoding JSON to MessagePack cannot
//! promise the same bytes (integer widths, field order), and the hash chain covers the bytes.
//! An import checks that the two agree, rebuilds each record's canonical bytes from the line,
//! recomputes its hash, checks the chain, positions and stream versions, and writes the records
//! verbatim into a new store built in a temporary directory beside the target, which is moved
//! into place only once whole: a refused file leaves nothing behind.
//!
//! The last line is the trailer ([`Trailer`]): how many events the export holds and the hash
//! of the last. Every line checks out against the one before it, so only the trailer tells a
//! whole export from one cut after a whole line (or an empty file); `import` requires it.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use battleplan_adapters::postgres_store::PgRestore;
use battleplan_adapters::sled_store::RestoreError;
use battleplan_adapters::{PgEventLog, SledEventLog, StoreOptions};
use battleplan_core::event::port::EventReader;
use battleplan_core::event::record::{self, hex, ChainHash, Placement};
use battleplan_core::event::{
    CommandId, EventId, Metadata, NewEvent, Position, RecordedEvent, StreamId, StreamVersion,
    GENESIS_HASH,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::app::AppError;
use crate::kernel::projection::Campaigns;

/// Standard base64 with padding (RFC 4648, section 4), for payloads carried as they are.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Events read from the store per step of a copy.
const BATCH: usize = 10_000;

/// Events read from the store per step of an export: its lines, about 4 MiB, are what the
/// export holds per step in flight (being made, waiting for the writer, being written).
const EXPORT_BATCH: usize = 4_096;

/// The longest line an import reads: a record is at most 8 MiB, and its line carries the
/// payload twice (readable and base64).
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// One line of an export, as read: every field required but `payload_msgpack`, no other
/// field accepted. Texts are borrowed from the line where they need no unescaping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    position: u64,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    version: u64,
    event_id: Uuid,
    #[serde(borrow)]
    recorded_at: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u16,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default, borrow)]
    payload_msgpack: Option<Cow<'a, str>>,
    #[serde(borrow)]
    metadata: MetadataLine<'a>,
    #[serde(borrow)]
    previous_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

/// The last line of an export: what a whole export holds. Written as
/// `{"trailer":"battleplan-export","events":N,"head_hash":"...","as_of":null}`; the first key
/// marks it, so an importer tells it from an event line by its first bytes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    /// Always [`TRAILER_MARK`].
    trailer: String,
    /// How many event lines come before it.
    events: u64,
    /// The `hash` of the last event line (all zeros when there is none).
    head_hash: String,
    /// The `--as-of` instant the export was cut at, if any (RFC 3339); for the reader only.
    as_of: Option<String>,
}

/// The value of the trailer's `trailer` field.
pub const TRAILER_MARK: &str = "battleplan-export";

/// How a trailer line starts, as `export` writes it.
const TRAILER_START: &[u8] = b"{\"trailer\"";

/// Whether an import insists on the trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrailered {
    /// A file without a trailer is refused: it may have been cut after a whole line.
    Refuse,
    /// A file without a trailer is imported (an export written before exports had one); what
    /// that cannot check is said in the summary.
    Accept,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataLine<'a> {
    #[serde(borrow)]
    actor: Cow<'a, str>,
    command_id: Uuid,
    causation_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

/// The line of one recorded event (without its `\n`).
pub fn export_line(event: &RecordedEvent) -> String {
    let mut line = Vec::new();
    LineWriter::default().write(event, &mut line);
    // Every piece written is UTF-8 (JSON from serde_json, ASCII digits).
    String::from_utf8_lossy(&line).into_owned()
}

/// Writes export lines, with the buffers a payload's JSON is made in kept from line to line.
#[derive(Default)]
struct LineWriter {
    readable: Readable,
    base64: String,
}

impl LineWriter {
    /// Appends the line of `event` to `out` (without its `\n`).
    fn write(&mut self, event: &RecordedEvent, out: &mut Vec<u8>) {
        let stands = self.readable.show(&event.payload);
        out.extend_from_slice(b"{\"position\":");
        push_number(out, event.position.0);
        out.extend_from_slice(b",\"stream\":");
        push_text(out, event.stream.as_str());
        out.extend_from_slice(b",\"version\":");
        push_number(out, event.version.0);
        out.extend_from_slice(b",\"event_id\":");
        push_uuid(out, &event.event_id.0);
        out.extend_from_slice(b",\"recorded_at\":\"");
        push_instant(out, &event.recorded_at);
        out.extend_from_slice(b"\",\"event_type\":");
        push_text(out, &event.event_type);
        out.extend_from_slice(b",\"schema_version\":");
        push_number(out, u64::from(event.schema_version));
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(&self.readable.json);
        if !stands {
            // The readable payload does not give these bytes back: they travel as they are.
            out.extend_from_slice(b",\"payload_msgpack\":\"");
            self.base64.clear();
            BASE64.encode_string(&event.payload, &mut self.base64);
            out.extend_from_slice(self.base64.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"metadata\":{\"actor\":");
        push_text(out, &event.metadata.actor);
        out.extend_from_slice(b",\"command_id\":");
        push_uuid(out, &event.metadata.command_id.0);
        out.extend_from_slice(b",\"causation_id\":");
        push_optional_uuid(out, event.metadata.causation_id.as_ref());
        out.extend_from_slice(b",\"correlation_id\":");
        push_optional_uuid(out, event.metadata.correlation_id.as_ref());
        out.extend_from_slice(b",\"reason\":");
        match &event.metadata.reason {
            Some(reason) => push_text(out, reason),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"},\"previous_hash\":\"");
        push_hex(out, &event.previous_hash);
        out.extend_from_slice(b"\",\"hash\":\"");
        push_hex(out, &event.hash);
        out.extend_from_slice(b"\"}");
    }
}

/// A payload shown as JSON, with the buffer it is made in.
#[derive(Default)]
struct Readable {
    /// The payload as JSON text, its maps' keys in the order stored (`null` when it cannot be
    /// shown as JSON).
    json: Vec<u8>,
}

impl Readable {
    /// Shows `payload` (stored MessagePack) as JSON in `self.json`; true when that JSON turned
    /// back into MessagePack ([`msgpack_of_json`]) gives exactly these bytes, so that the
    /// readable payload alone stands for what the hash covers. One pass over the bytes: each
    /// item is shown and checked to be in the one form [`msgpack_of_json`] gives it.
    fn show(&mut self, payload: &[u8]) -> bool {
        self.json.clear();
        let mut input = payload;
        match show_item(&mut input, &mut self.json, 0) {
            Ok(canonical) if input.is_empty() => canonical,
            // Bytes after the payload, or an item JSON cannot show.
            _ => {
                self.json.clear();
                self.json.extend_from_slice(b"null");
                false
            }
        }
    }
}

/// How deep a payload's arrays and maps may nest to be shown (serde_json reads 128 levels).
const MAX_DEPTH: usize = 100;

/// Takes `n` bytes from the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], ()> {
    if input.len() < n {
        return Err(());
    }
    let (front, rest) = input.split_at(n);
    *input = rest;
    Ok(front)
}

/// A big-endian unsigned integer of `n` bytes (1, 2, 4 or 8) from the front of `input`.
fn take_uint(input: &mut &[u8], n: usize) -> Result<u64, ()> {
    Ok(take(input, n)?
        .iter()
        .fold(0u64, |value, &byte| (value << 8) | u64::from(byte)))
}

/// Shows the MessagePack item at the front of `input` as JSON into `out`, taking its bytes.
/// `Ok(true)` when the item is in the form [`msgpack_of_json`] gives its JSON (integers
/// shortest, non-negative ones unsigned, floats 64-bit and finite, texts as valid `str`,
/// lengths shortest, map keys texts); `Err` when JSON cannot show it (an extension type, a
/// key that is neither a text nor an integer, bytes cut short, nesting too deep).
fn show_item(input: &mut &[u8], out: &mut Vec<u8>, depth: usize) -> Result<bool, ()> {
    let marker = take(input, 1)?[0];
    match marker {
        0x00..=0x7f => {
            push_number(out, u64::from(marker));
            Ok(true)
        }
        0xe0..=0xff => {
            push_signed(out, i64::from(marker as i8));
            Ok(true)
        }
        0xc0 => {
            out.extend_from_slice(b"null");
            Ok(true)
        }
        0xc2 => {
            out.extend_from_slice(b"false");
            Ok(true)
        }
        0xc3 => {
            out.extend_from_slice(b"true");
            Ok(true)
        }
        0xcc..=0xcf => {
            let width = 1usize << (marker - 0xcc);
            let value = take_uint(input, width)?;
            push_number(out, value);
            Ok(width == uint_width(value))
        }
        0xd0..=0xd3 => {
            let width = 1usize << (marker - 0xd0);
            let raw = take_uint(input, width)?;
            let shift = 64 - 8 * width as u32;
            // Sign-extended from its width.
            let value = ((raw << shift) as i64) >> shift;
            push_signed(out, value);
            Ok(value < 0 && width == sint_width(value))
        }
        0xca => {
            let bits = take_uint(input, 4)? as u32;
            let _ = serde_json::to_writer(&mut *out, &f32::from_bits(bits));
            Ok(false)
        }
        0xcb => {
            let value = f64::from_bits(take_uint(input, 8)?);
            // Not finite: serde_json writes `null`.
            let _ = serde_json::to_writer(&mut *out, &value);
            Ok(value.is_finite())
        }
        0xa0..=0xbf => show_text(input, out, usize::from(marker & 0x1f), true),
        0xd9..=0xdb => {
            let width = 1usize << (marker - 0xd9);
            let length = take_uint(input, width)? as usize;
            show_text(input, out, length, width == str_width(length))
        }
        0xc4..=0xc6 => {
            // Bytes: shown as an array of numbers, which reads back as an array.
            let width = 1usize << (marker - 0xc4);
            let length = take_uint(input, width)? as usize;
            let bytes = take(input, length)?;
            out.push(b'[');
            for (index, byte) in bytes.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                push_number(out, u64::from(*byte));
            }
            out.push(b']');
            Ok(false)
        }
        0x90..=0x9f => show_array(input, out, usize::from(marker & 0x0f), true, depth),
        0xdc | 0xdd => {
            let width = if marker == 0xdc { 2 } else { 4 };
            let length = take_uint(input, width)? as usize;
            show_array(input, out, length, width == collection_width(length), depth)
        }
        0x80..=0x8f => show_map(input, out, usize::from(marker & 0x0f), true, depth),
        0xde | 0xdf => {
            let width = if marker == 0xde { 2 } else { 4 };
            let length = take_uint(input, width)? as usize;
            show_map(input, out, length, width == collection_width(length), depth)
        }
        // Extension types and the unused marker.
        _ => Err(()),
    }
}

fn show_text(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    length: usize,
    shortest: bool,
) -> Result<bool, ()> {
    let bytes = take(input, length)?;
    // Plain ASCII (most of a payload's texts: ids, codes, numbers as text) is valid UTF-8 and
    // needs no escape: one pass over it. Any other text is checked as UTF-8 first.
    if plain_ascii(bytes) {
        push_quoted(out, bytes);
    } else {
        push_text(out, std::str::from_utf8(bytes).map_err(|_| ())?);
    }
    Ok(shortest)
}

fn show_array(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    length: usize,
    shortest: bool,
    depth: usize,
) -> Result<bool, ()> {
    if depth >= MAX_DEPTH {
        return Err(());
    }
    let mut canonical = shortest;
    out.push(b'[');
    for index in 0..length {
        if index > 0 {
            out.push(b',');
        }
        canonical &= show_item(input, out, depth + 1)?;
    }
    out.push(b']');
    Ok(canonical)
}

fn show_map(
    input: &mut &[u8],
    out: &mut Vec<u8>,
    length: usize,
    shortest: bool,
    depth: usize,
) -> Result<bool, ()> {
    if depth >= MAX_DEPTH {
        return Err(());
    }
    let mut canonical = shortest;
    out.push(b'{');
    for index in 0..length {
        if index > 0 {
            out.push(b',');
        }
        let marker = *input.first().ok_or(())?;
        match marker {
            0xa0..=0xbf | 0xd9..=0xdb => canonical &= show_item(input, out, depth + 1)?,
            // An integer key is shown as its digits, as serde_json writes it, which read back
            // as a text.
            0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xcf | 0xd0..=0xd3 => {
                out.push(b'"');
                show_item(input, out, depth + 1)?;
                out.push(b'"');
                canonical = false;
            }
            _ => return Err(()),
        }
        out.push(b':');
        canonical &= show_item(input, out, depth + 1)?;
    }
    out.push(b'}');
    Ok(canonical)
}

/// The bytes after the marker that the shortest unsigned form of `value` takes (0: a fixint).
fn uint_width(value: u64) -> usize {
    match value {
        0..=0x7f => 0,
        0x80..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// The same for a negative `value`.
fn sint_width(value: i64) -> usize {
    match value {
        -32..=-1 => 0,
        -128..=-33 => 1,
        -32_768..=-129 => 2,
        -2_147_483_648..=-32_769 => 4,
        _ => 8,
    }
}

/// The length bytes of a text of `length` bytes after `str8`/`str16`/`str32` (0: a fixstr).
fn str_width(length: usize) -> usize {
    match length {
        0..=31 => 0,
        32..=0xff => 1,
        0x100..=0xffff => 2,
        _ => 4,
    }
}

/// The same for an array or a map of `length` items (0: fixarray or fixmap).
fn collection_width(length: usize) -> usize {
    match length {
        0..=15 => 0,
        16..=0xffff => 2,
        _ => 4,
    }
}

/// The MessagePack a JSON text stands for in an export: maps with their keys in the order
/// written, texts as `str`, integers in their shortest form, other numbers as 64-bit floats,
/// `null` as nil; the shape the stores' payloads have (MessagePack with field names).
fn msgpack_of_json(json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut from = serde_json::Deserializer::from_slice(json);
    let mut to = rmp_serde::Serializer::new(&mut *out);
    serde_transcode::transcode(&mut from, &mut to).map_err(|error| error.to_string())?;
    from.end().map_err(|error| error.to_string())
}

/// `number` in decimal, as `Display` writes it (without `fmt`'s machinery: an export writes
/// tens of millions of numbers).
fn push_number(out: &mut Vec<u8>, number: u64) {
    out.extend_from_slice(battleplan_core::text::Decimal::of(number).as_bytes());
}

/// `number` in decimal, a minus sign before a negative one.
fn push_signed(out: &mut Vec<u8>, number: i64) {
    if number < 0 {
        out.push(b'-');
    }
    push_number(out, number.unsigned_abs());
}

/// `text` as a JSON string, as serde_json writes it: only `"`, `\\` and control characters
/// escaped.
fn push_text(out: &mut Vec<u8>, text: &str) {
    // Most texts need no escape: checked a block at a time, copied whole.
    if !needs_escape(text.as_bytes()) {
        push_quoted(out, text.as_bytes());
    } else {
        // Writing to a vector does not fail, and a `str` always serializes.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// `bytes` between quotes, as they are.
fn push_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

/// Whether `bytes` are plain ASCII that a JSON string holds as it is: no byte of 0x80 or
/// above, none below 0x20, no `"` and no `\\`. Sixteen bytes a step, without branches inside a
/// step (the compiler makes each step a few vector instructions).
fn plain_ascii(bytes: &[u8]) -> bool {
    let special = |byte: u8| !(0x20..0x80).contains(&byte) | (byte == b'"') | (byte == b'\\');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let mut any = false;
        for &byte in block {
            any |= special(byte);
        }
        if any {
            return false;
        }
    }
    !blocks.remainder().iter().any(|&byte| special(byte))
}

/// Whether `bytes` hold a `"`, a `\\` or a control character (below 0x20): the bytes a JSON
/// string escapes. Eight bytes a step, with the word tricks for a byte below or equal to a
/// value (exact for values up to 0x80).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |word: u64, value: u8| word.wrapping_sub(ONES * u64::from(value)) & !word & HIGHS;
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        if below(word, 0x20)
            | zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

fn push_uuid(out: &mut Vec<u8>, uuid: &Uuid) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(uuid.hyphenated().encode_lower(&mut text).as_bytes());
    out.push(b'"');
}

fn push_optional_uuid(out: &mut Vec<u8>, uuid: Option<&Uuid>) {
    match uuid {
        Some(uuid) => push_uuid(out, uuid),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_hex(out: &mut Vec<u8>, hash: &ChainHash) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, byte) in text.chunks_exact_mut(2).zip(hash) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out.extend_from_slice(&text);
}

/// `at` as RFC 3339 in UTC with microseconds and `Z` (`SecondsFormat::Micros`), as chrono
/// writes it, without its formatting machinery; chrono writes the years outside 0 to 9999.
fn push_instant(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    use chrono::{Datelike as _, Timelike as _};
    let year = at.year();
    if !(0..=9999).contains(&year) || at.nanosecond() >= 1_000_000_000 {
        // Years outside four digits, and a leap second: as chrono writes them.
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |from: usize, width: usize, mut value: u32| {
        for at in (from..from + width).rev() {
            text[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, at.month());
    put(8, 2, at.day());
    put(11, 2, at.hour());
    put(14, 2, at.minute());
    put(17, 2, at.second());
    put(20, 6, at.nanosecond() / 1_000);
    out.extend_from_slice(&text);
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub events: u64,
    /// The hash of the last event written (all zeros for an empty export).
    pub head_hash: String,
    /// Events left out by `--as-of` (recorded after it, or after one that was).
    pub left_out: u64,
}

/// Writes the log to `out`, one line an event, in position order. With `as_of`, the longest
/// prefix whose events were all recorded at or before it: an export is always a whole chain.
pub async fn export<W: Write + ?Sized>(
    store: &dyn EventReader,
    as_of: Option<DateTime<Utc>>,
    out: &mut W,
) -> anyhow::Result<ExportSummary> {
    let mut sink = Written(out);
    let summary = export_to(store, as_of, &mut sink).await?;
    sink.0.flush()?;
    Ok(summary)
}

/// Where an export's lines go, a batch at a time.
trait LineSink {
    /// Takes the bytes of `lines`; leaves `lines` empty (its room kept, or another buffer's).
    fn put(&mut self, lines: &mut Vec<u8>) -> std::io::Result<()>;
}

/// Lines written where they are made, on the thread that reads the log: standard output.
struct Written<'a, W: Write + ?Sized>(&'a mut W);

impl<W: Write + ?Sized> LineSink for Written<'_, W> {
    fn put(&mut self, lines: &mut Vec<u8>) -> std::io::Result<()> {
        self.0.write_all(lines)?;
        lines.clear();
        Ok(())
    }
}

/// Lines written to a file by a thread of its own. An export of a large log writes gigabytes,
/// and writing a file that large waits on the disk (the kernel holds back a writer that is
/// ahead of it): on the thread that reads the log, that wait stopped reading and making lines
/// alike. Two batches' lines may wait for the writer; the buffers it is done with come back.
struct Background {
    lines: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    writer: Option<std::thread::JoinHandle<std::io::Result<Flushing>>>,
    /// The error the writer ended with, once [`LineSink::put`] met it: [`Background::finish`]
    /// says it again.
    failure: Option<(std::io::ErrorKind, String)>,
}

impl Background {
    fn start(mut file: Flushing) -> std::io::Result<Background> {
        let (lines, batches) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (back, spare) = std::sync::mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("export-write".into())
            .spawn(move || {
                for mut batch in batches {
                    file.write_all(&batch)?;
                    batch.clear();
                    // The reader may be gone (it failed): the buffer is then only dropped.
                    let _ = back.send(batch);
                }
                file.flush()?;
                Ok(file)
            })?;
        Ok(Background {
            lines: Some(lines),
            spare,
            writer: Some(writer),
            failure: None,
        })
    }

    /// Waits for the writer to finish what it was given: the file, or the error it met.
    fn finish(mut self) -> std::io::Result<Flushing> {
        self.join()
    }

    /// Closes the writer's channel and waits for it to end.
    fn join(&mut self) -> std::io::Result<Flushing> {
        self.lines = None;
        match self.writer.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(error))) => {
                self.failure = Some((error.kind(), error.to_string()));
                Err(error)
            }
            Some(Ok(written)) => written,
            None => Err(match &self.failure {
                Some((kind, message)) => std::io::Error::new(*kind, message.clone()),
                None => std::io::Error::other("the export's writer failed"),
            }),
            Some(Err(_)) => Err(std::io::Error::other("the export's writer failed")),
        }
    }
}

impl LineSink for Background {
    fn put(&mut self, lines: &mut Vec<u8>) -> std::io::Result<()> {
        let batch = std::mem::replace(lines, self.spare.try_recv().unwrap_or_default());
        let sent = match &self.lines {
            Some(sender) => sender.send(batch).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped early: its error.
        match self.join() {
            Err(error) => Err(error),
            Ok(_) => Err(std::io::Error::other("the export's writer stopped")),
        }
    }
}

/// [`export`]'s work, its lines put into `sink`.
async fn export_to<S: LineSink>(
    store: &dyn EventReader,
    as_of: Option<DateTime<Utc>>,
    out: &mut S,
) -> anyhow::Result<ExportSummary> {
    let head = store.head().await?;
    let mut after = Position::START;
    let mut last_hash = GENESIS_HASH;
    let mut events = 0u64;
    // A batch's lines are made on two threads of their own (the machine's two cores) while
    // the next batch is read, and written by the sink (on a thread of its own for a file).
    let makers = Makers::start()?;
    let mut buffers: [Vec<u8>; 2] = Default::default();
    let mut making = false;
    loop {
        let mut batch = store.read_all(after, EXPORT_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let mut cut = false;
        if let Some(late) =
            as_of.and_then(|as_of| batch.iter().position(|event| event.recorded_at > as_of))
        {
            batch.truncate(late);
            cut = true;
        }
        if let Some(last) = batch.last() {
            last_hash = last.hash;
            after = last.position;
        }
        events += batch.len() as u64;
        if making {
            buffers = makers.made()?;
            for lines in &mut buffers {
                out.put(lines)?;
            }
        }
        makers.make(batch, std::mem::take(&mut buffers))?;
        making = true;
        if cut || after >= head {
            break;
        }
    }
    if making {
        for lines in &mut makers.made()? {
            out.put(lines)?;
        }
    }
    let trailer = Trailer {
        trailer: TRAILER_MARK.to_string(),
        events,
        head_hash: hex(&last_hash),
        as_of: as_of.map(|as_of| as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    };
    let mut line = serde_json::to_vec(&trailer)?;
    line.push(b'\n');
    out.put(&mut line)?;
    Ok(ExportSummary {
        events,
        head_hash: hex(&last_hash),
        left_out: head.0.saturating_sub(events),
    })
}

/// Two threads that make lines, each from half of a batch; they last as long as the export.
/// (A thread a batch made the allocator keep a heap for each thread it had seen.)
struct Makers {
    workers: Vec<Maker>,
}

struct Maker {
    /// A half batch, and the buffer its lines go in.
    give: Option<std::sync::mpsc::SyncSender<(Vec<RecordedEvent>, Vec<u8>)>>,
    made: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Makers {
    fn start() -> std::io::Result<Makers> {
        let mut workers = Vec::with_capacity(2);
        for _ in 0..2 {
            let (give, given) = std::sync::mpsc::sync_channel::<(Vec<RecordedEvent>, Vec<u8>)>(1);
            let (done, made) = std::sync::mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name("export-lines".into())
                .spawn(move || {
                    let mut writer = LineWriter::default();
                    for (events, mut lines) in given {
                        lines.clear();
                        write_lines(&mut writer, &events, &mut lines);
                        drop(events);
                        if done.send(lines).is_err() {
                            return;
                        }
                    }
                })?;
            workers.push(Maker {
                give: Some(give),
                made,
                thread: Some(thread),
            });
        }
        Ok(Makers { workers })
    }

    /// Hands `batch` to the two threads, half each, with a buffer each for the lines.
    fn make(&self, mut batch: Vec<RecordedEvent>, buffers: [Vec<u8>; 2]) -> anyhow::Result<()> {
        let second = batch.split_off(batch.len() / 2);
        for ((maker, events), lines) in self.workers.iter().zip([batch, second]).zip(buffers) {
            let given = maker
                .give
                .as_ref()
                .is_some_and(|give| give.send((events, lines)).is_ok());
            if !given {
                anyhow::bail!("making the export's lines failed");
            }
        }
        Ok(())
    }

    /// The lines of the batch last handed over, the first half's first.
    fn made(&self) -> anyhow::Result<[Vec<u8>; 2]> {
        let mut made: [Vec<u8>; 2] = Default::default();
        for (maker, lines) in self.workers.iter().zip(&mut made) {
            *lines = maker
                .made
                .recv()
                .map_err(|_| anyhow::anyhow!("making the export's lines failed"))?;
        }
        Ok(made)
    }
}

impl Drop for Makers {
    fn drop(&mut self) {
        for maker in &mut self.workers {
            // Its channel closed, the thread ends once its half batch is made.
            maker.give = None;
            while maker.made.recv().is_ok() {}
            if let Some(thread) = maker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn write_lines(writer: &mut LineWriter, events: &[RecordedEvent], lines: &mut Vec<u8>) {
    for event in events {
        writer.write(event, lines);
        lines.push(b'\n');
    }
}

/// The directory an export file `out` goes into, once checked: `out` is not a directory and
/// its directory exists. `Err` in words (the user's mistake).
pub fn export_directory(out: &Path) -> Result<PathBuf, String> {
    if out.is_dir() {
        return Err(format!(
            "{} is a directory; give the export file's path",
            out.display()
        ));
    }
    let directory = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        return Err(format!(
            "cannot write {}: the directory {} does not exist",
            out.display(),
            directory.display()
        ));
    }
    Ok(directory)
}

/// Writes the export to the file `out` in `directory` (see [`export_directory`]), whole or not
/// at all: a temporary file beside it, synced, renamed into place, the directory synced. A
/// failure reading the store is an `Err` holding the [`battleplan_core::event::StoreError`].
pub async fn export_file(
    store: &dyn EventReader,
    as_of: Option<DateTime<Utc>>,
    out: &Path,
    directory: &Path,
) -> anyhow::Result<ExportSummary> {
    use anyhow::Context as _;
    let temporary = tempfile::Builder::new()
        .prefix(".battleplan-export-")
        .tempfile_in(directory)
        .with_context(|| format!("creating a temporary file in {}", directory.display()))?;
    let mut writer = Background::start(Flushing {
        file: temporary,
        written: 0,
        since: 0,
    })
    .context("starting the export's writer")?;
    // On an error the temporary file goes with the writer: nothing half-written is left.
    let exported = export_to(store, as_of, &mut writer).await;
    let written = writer.finish();
    let failed = |source: std::io::Error| {
        anyhow::Error::new(ExportNotWritten {
            file: out.to_path_buf(),
            source,
        })
    };
    // The writer's own failure first: reading stops because of it.
    let (summary, temporary) = match (exported, written) {
        (_, Err(error)) => return Err(failed(error)),
        (Err(error), Ok(_)) => return Err(error),
        (Ok(summary), Ok(written)) => (summary, written.file),
    };
    temporary.as_file().sync_all().map_err(failed)?;
    temporary
        .persist(out)
        .map_err(|error| failed(error.error))?;
    std::fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(failed)?;
    Ok(summary)
}

/// An export file that could not be written (a full disk, a failing device): the temporary file
/// it was being written to is removed, so nothing of it is left.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the export {}: {source}; nothing of it was left", file.display())]
pub struct ExportNotWritten {
    pub file: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// How much an export writes between two nudges to the kernel to write it out.
const FLUSH_EVERY: u64 = 64 * 1024 * 1024;

/// An export file, written through ([`export`] writes a batch of lines at a time), whose pages
/// the kernel is asked to start writing out every [`FLUSH_EVERY`] bytes, without waiting for it
/// (`posix_fadvise(DONTNEED)`: the written range is queued for writing, and pages already
/// written are let go of): the disk works while the next lines are made, the last sync has
/// little left to write, and a file of gigabytes does not fill the page cache. A sync on a
/// thread of its own did not overlap: writes to a file wait while it is synced.
struct Flushing {
    file: tempfile::NamedTempFile,
    written: u64,
    since: u64,
}

impl Write for Flushing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(bytes)?;
        self.written += written as u64;
        self.since += written as u64;
        if self.since >= FLUSH_EVERY {
            self.since = 0;
            // From the window before this one (written out by now, so dropped) to the end
            // (queued). Only advice: the sync at the end is what makes the file durable.
            let from = self.written.saturating_sub(2 * FLUSH_EVERY);
            let _ = rustix::fs::fadvise(
                self.file.as_file(),
                from,
                None,
                rustix::fs::Advice::DontNeed,
            );
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// `export --out FILE` run by a daemon for another terminal: the daemon writes the file (by
/// its absolute path), so that an export needs no stop. `file_name` is the path as the user
/// gave it.
pub async fn export_for(
    ctx: &crate::app::Ctx<'_>,
    out: &Path,
    file_name: &str,
    as_of: Option<DateTime<Utc>>,
) -> Result<ExportView, AppError> {
    let directory = export_directory(out).map_err(AppError::invalid)?;
    match export_file(ctx.runtime.store.as_ref(), as_of, out, &directory).await {
        Ok(summary) => Ok(ExportView::of(&summary, Some(file_name.to_string()), as_of)),
        Err(error) => Err(
            match (
                error.downcast_ref::<battleplan_core::event::StoreError>(),
                error.downcast_ref::<ExportNotWritten>(),
            ) {
                (Some(store), _) => AppError::from(store.clone()),
                (None, Some(not_written)) => AppError::Disk {
                    detail: not_written.to_string(),
                },
                (None, None) => AppError::internal(format_args!("{error:#}")),
            },
        ),
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportView {
    /// The `--as-of` instant the export was cut at, if any.
    pub as_of: Option<DateTime<Utc>>,
    /// Events written.
    pub events: u64,
    /// The file written, as the user named it; none when the export went to standard output.
    pub file: Option<String>,
    /// The hash of the last event written (all zeros for an empty export).
    pub head_hash: String,
    /// Events left out by `as_of` (recorded after it, or after one that was).
    pub left_out: u64,
}

impl ExportView {
    pub fn of(
        summary: &ExportSummary,
        file: Option<String>,
        as_of: Option<DateTime<Utc>>,
    ) -> ExportView {
        ExportView {
            as_of,
            events: summary.events,
            file,
            head_hash: summary.head_hash.clone(),
            left_out: summary.left_out,
        }
    }
}

/// What `battleplan import FILE` restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreView {
    /// Campaigns rebuilt from the imported log.
    pub campaigns: usize,
    /// The data directory the store was restored into, or the PostgreSQL tenant
    /// (`postgres://USER@HOST:PORT/DATABASE (tenant T)`).
    pub data: String,
    /// Events imported.
    pub events: u64,
    /// The export file, as the user named it.
    pub file: String,
    /// The hash of the last event imported.
    pub head_hash: String,
    /// Whether the file ended with its trailer (so that a cut file would have been refused).
    pub trailer_checked: bool,
}

/// `battleplan import FILE`: the export `file` restored into a new store (see [`import`]):
/// a new sled store in a directory, or an empty PostgreSQL tenant. Creates the store, so no
/// process holds one: a command-line process calls it itself.
pub async fn restore(
    file: &Path,
    into: RestoreInto<'_>,
    untrailered: Untrailered,
) -> Result<RestoreView, AppError> {
    let data = match into {
        RestoreInto::Sled(data) => data.display().to_string(),
        RestoreInto::Postgres(store) => store.location().to_string(),
    };
    match import(file, into, untrailered).await {
        Ok(summary) => Ok(RestoreView {
            campaigns: summary.campaigns,
            data,
            events: summary.events,
            file: file.display().to_string(),
            head_hash: summary.head_hash,
            trailer_checked: summary.trailer_checked,
        }),
        Err(ImportError::Refused(message)) => Err(AppError::invalid(message)),
        Err(ImportError::Internal(error)) => Err(AppError::internal(format_args!("{error:#}"))),
    }
}

/// Why an import stopped: the user's file or target, or a failure of ours.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What an import recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub events: u64,
    pub head_hash: String,
    pub campaigns: usize,
    /// Whether the file ended with its trailer (always, unless [`Untrailered::Accept`]).
    pub trailer_checked: bool,
}

/// Where a restored log goes.
#[derive(Debug, Clone, Copy)]
pub enum RestoreInto<'a> {
    /// A new sled store in this directory, which must be absent or empty.
    Sled(&'a Path),
    /// This PostgreSQL tenant, which must hold no event.
    Postgres(&'a PgEventLog),
}

/// A restored log, whole and in place.
#[derive(Debug)]
pub enum Restored {
    /// The sled store in this directory (closed).
    Sled(PathBuf),
    /// The PostgreSQL tenant, open.
    Postgres(PgEventLog),
}

/// A restore under way: records laid out elsewhere written verbatim into a new store, each
/// checked against the chain as it comes. Dropped before [`Restoring::finish`], nothing of it
/// stays: a sled store is built in a temporary directory beside its target (removed), a
/// PostgreSQL tenant's restore is one transaction (rolled back).
pub struct Restoring {
    sink: Sink,
    /// The campaigns replayed as the records come: a log whose campaigns cannot be rebuilt is
    /// refused before anything is in place, and the stored projection is written from them
    /// without reading the new log back.
    campaigns: Box<Campaigns>,
}

enum Sink {
    Sled {
        restore: battleplan_adapters::sled_store::Restore,
        temporary: tempfile::TempDir,
        data: PathBuf,
        parent: PathBuf,
    },
    Postgres {
        restore: PgRestore,
    },
}

impl Restoring {
    /// Starts a restore into `into`; `hint` says, after a target that is not empty, what may
    /// be restored into (`import only into an empty or new directory (--data)`).
    pub async fn start(into: RestoreInto<'_>, hint: &str) -> Result<Restoring, ImportError> {
        match into {
            RestoreInto::Sled(data) => Restoring::sled(data, hint),
            RestoreInto::Postgres(store) => {
                let restore = store.restore().await.map_err(|error| match error {
                    battleplan_core::event::StoreError::Invalid(message) => {
                        ImportError::Refused(format!("{message}; {hint}"))
                    }
                    other => ImportError::Internal(anyhow::anyhow!("starting the store: {other}")),
                })?;
                Ok(Restoring {
                    sink: Sink::Postgres { restore },
                    campaigns: Box::default(),
                })
            }
        }
    }

    fn sled(data: &Path, hint: &str) -> Result<Restoring, ImportError> {
        check_target(data, hint)?;
        let parent = match data.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|error| {
            ImportError::Refused(format!("cannot create {}: {error}", parent.display()))
        })?;
        // Beside the target, so that the last step is a rename on one file system.
        let temporary = battleplan_adapters::fault::check("store.create")
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(".battleplan-import-")
                    .tempdir_in(&parent)
            })
            .map_err(|error| {
                let message = format!(
                    "cannot create a temporary directory in {}: {error}",
                    parent.display()
                );
                if error.kind() == std::io::ErrorKind::StorageFull {
                    ImportError::Internal(anyhow::anyhow!(message))
                } else {
                    ImportError::Refused(message)
                }
            })?;
        let restore = SledEventLog::restore(temporary.path(), StoreOptions::default())
            .map_err(|error| anyhow::anyhow!("starting the store: {error}"))?;
        Ok(Restoring {
            sink: Sink::Sled {
                restore,
                temporary,
                data: data.to_path_buf(),
                parent,
            },
            campaigns: Box::default(),
        })
    }

    /// How many records have been taken.
    pub fn records(&self) -> u64 {
        match &self.sink {
            Sink::Sled { restore, .. } => restore.records(),
            Sink::Postgres { restore, .. } => restore.records(),
        }
    }

    /// The hash of the last record taken.
    pub fn head_hash_hex(&self) -> String {
        match &self.sink {
            Sink::Sled { restore, .. } => restore.head_hash_hex(),
            Sink::Postgres { restore, .. } => restore.head_hash_hex(),
        }
    }

    /// Takes the next record: its stored bytes, at the next position, continuing the chain,
    /// and `event`, what they hold (the caller laid the bytes out from it, [`record_of`]).
    pub async fn push(
        &mut self,
        bytes: Vec<u8>,
        event: &RecordedEvent,
    ) -> Result<(), RestoreError> {
        let position = Position(self.records() + 1);
        if event.position != position {
            return Err(RestoreError::Refused {
                position,
                detail: format!("the record is at position {}", event.position),
            });
        }
        match &mut self.sink {
            Sink::Sled { restore, .. } => restore.push(bytes)?,
            Sink::Postgres { restore } => restore.push(bytes).await?,
        }
        self.campaigns
            .apply(event)
            .map_err(|error| RestoreError::Refused {
                position,
                detail: format!("the campaigns cannot be rebuilt from the log: {error}"),
            })?;
        Ok(())
    }

    /// Makes the restored log whole and puts it in place, with its stored campaigns projection;
    /// `name` names the source in words. Returns the store and its campaigns.
    pub async fn finish(self, name: &str) -> Result<(Restored, usize), ImportError> {
        match self.sink {
            Sink::Sled {
                restore,
                temporary,
                data,
                parent,
            } => {
                let store = restore.finish().map_err(|error| match error {
                    RestoreError::Store(error) => {
                        ImportError::Internal(anyhow::anyhow!("finishing the store: {error}"))
                    }
                    other => ImportError::Refused(format!("{name}: {other}")),
                })?;
                let mut campaigns = self.campaigns;
                let head = store.head().await.map_err(|error| {
                    ImportError::Internal(anyhow::anyhow!("finishing the store: {error}"))
                })?;
                campaigns.store_whole(&store, head).await.map_err(|error| {
                    ImportError::Internal(anyhow::anyhow!(
                        "storing the campaigns projection: {error}"
                    ))
                })?;
                // Closing checkpoints the store and empties its write-ahead log.
                drop(store);
                battleplan_adapters::fault::check("store.rename")
                    .and_then(|()| std::fs::rename(temporary.path(), &data))
                    .map_err(|error| {
                        let message = format!(
                            "cannot move the restored store into {}: {error}",
                            data.display()
                        );
                        match error.kind() {
                            // The disk's failure, not a directory in the way.
                            std::io::ErrorKind::StorageFull => {
                                ImportError::Internal(anyhow::anyhow!(message))
                            }
                            _ => ImportError::Refused(format!("{message} (is it still empty?)")),
                        }
                    })?;
                // The directory is in place: nothing to remove any more.
                let _ = temporary.keep();
                std::fs::File::open(&parent)
                    .and_then(|directory| directory.sync_all())
                    .map_err(|error| anyhow::anyhow!("syncing {}: {error}", parent.display()))?;
                Ok((Restored::Sled(data), campaigns.states.len()))
            }
            Sink::Postgres { restore } => {
                let mut campaigns = self.campaigns;
                let count = campaigns.states.len();
                let store = restore.finish().await.map_err(|error| match error {
                    RestoreError::Store(error) => {
                        ImportError::Internal(anyhow::anyhow!("finishing the store: {error}"))
                    }
                    other => ImportError::Refused(format!("{name}: {other}")),
                })?;
                // The log is committed; its stored projection is written (rebuilt from the log
                // by the next command if this fails).
                let head = store.head().await.map_err(|error| {
                    ImportError::Internal(anyhow::anyhow!(
                        "storing the campaigns projection: {error}"
                    ))
                })?;
                campaigns.store_whole(&store, head).await.map_err(|error| {
                    ImportError::Internal(anyhow::anyhow!(
                        "storing the campaigns projection: {error}"
                    ))
                })?;
                Ok((Restored::Postgres(store), count))
            }
        }
    }
}

/// The directory a sled store is restored into must be absent or empty; `hint` says so.
fn check_target(data: &Path, hint: &str) -> Result<(), ImportError> {
    match std::fs::read_dir(data) {
        Ok(mut entries) => {
            if entries.next().is_none() {
                Ok(())
            } else if data.join("db").is_file() {
                Err(ImportError::Refused(format!(
                    "{} already holds a battleplan store; {hint}",
                    data.display()
                )))
            } else {
                Err(ImportError::Refused(format!(
                    "{} is not empty; {hint}",
                    data.display()
                )))
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            Err(ImportError::Refused(format!(
                "{} is a file, not a data directory",
                data.display()
            )))
        }
        Err(error) => Err(ImportError::Refused(format!(
            "cannot read {}: {error}",
            data.display()
        ))),
    }
}

/// Imports the export `file` into a new store (a sled directory absent or empty, or a
/// PostgreSQL tenant holding no event), then builds the stored campaigns projection.
/// Everything is checked before the target changes: on any problem it is as it was (a sled
/// store's temporary directory removed, a tenant's transaction rolled back). Blocking inside:
/// run it from a command-line process or a blocking task.
pub async fn import(
    file: &Path,
    into: RestoreInto<'_>,
    untrailered: Untrailered,
) -> Result<ImportSummary, ImportError> {
    let name = file.display().to_string();
    let hint = match into {
        RestoreInto::Sled(_) => "import only into an empty or new directory (--data)",
        RestoreInto::Postgres(_) => {
            "import only into a tenant that holds no event (--store URL?tenant=NAME)"
        }
    };
    if let RestoreInto::Sled(data) = into {
        check_target(data, hint)?;
    }
    let source = std::fs::File::open(file)
        .map_err(|error| ImportError::Refused(format!("cannot read {name}: {error}")))?;
    if source.metadata().is_ok_and(|metadata| metadata.is_dir()) {
        return Err(ImportError::Refused(format!(
            "{name} is a directory, not an export file"
        )));
    }
    let mut restore = Restoring::start(into, hint).await?;
    // The lines are read on a thread of their own, their records rebuilt on two more, a block
    // each in turn, while the records before are stored; the chain is followed here, where
    // the records come back in order.
    let (spare_blocks, spare) = std::sync::mpsc::channel();
    let mut to_rebuild = Vec::with_capacity(REBUILDERS);
    let mut rebuilt = Vec::with_capacity(REBUILDERS);
    for _ in 0..REBUILDERS {
        let (lines, from) = std::sync::mpsc::sync_channel(2);
        let (to, records) = std::sync::mpsc::sync_channel(2);
        let spare_blocks = spare_blocks.clone();
        std::thread::Builder::new()
            .name("import-records".into())
            .spawn(move || rebuild_lines(&from, &to, &spare_blocks))
            .map_err(|error| anyhow::anyhow!("starting to read {name}: {error}"))?;
        to_rebuild.push(lines);
        rebuilt.push(records);
    }
    drop(spare_blocks);
    let reader_name = name.clone();
    std::thread::Builder::new()
        .name("import-lines".into())
        .spawn(move || read_lines(BufReader::new(source), &reader_name, &to_rebuild, &spare))
        .map_err(|error| anyhow::anyhow!("starting to read {name}: {error}"))?;
    let mut previous = GENESIS_HASH;
    let mut turn = 0usize;
    let (number, trailer) = loop {
        let next = rebuilt[turn % REBUILDERS].recv();
        turn += 1;
        match next {
            Ok(Rebuilt::Records(records, stopped)) => {
                for (number, bytes, event) in records {
                    let at = |message: String| {
                        ImportError::Refused(format!("{name}:{number}: {message}"))
                    };
                    LineRefused::link(event.previous_hash, previous, event.position.0)
                        .map_err(at)?;
                    previous = event.hash;
                    restore
                        .push(bytes, &event)
                        .await
                        .map_err(|error| match error {
                            RestoreError::Damaged(problem) => at(problem.to_string()),
                            RestoreError::Refused { detail, .. } => at(detail),
                            RestoreError::Store(error) => {
                                ImportError::Internal(anyhow::anyhow!("writing the store: {error}"))
                            }
                        })?;
                }
                if let Some((number, expected, refused)) = stopped {
                    return Err(ImportError::Refused(format!(
                        "{name}:{number}: {}",
                        refused.linked(previous, expected)
                    )));
                }
            }
            Ok(Rebuilt::End { lines, trailer }) => break (lines, trailer),
            Ok(Rebuilt::Refused(error)) => return Err(error),
            Err(_) => {
                return Err(ImportError::Internal(anyhow::anyhow!(
                    "reading {name} stopped short"
                )))
            }
        }
    };
    let events = restore.records();
    let head_hash = restore.head_hash_hex();
    match (&trailer, untrailered) {
        (Some((line, trailer)), _) => {
            if trailer.events != events || trailer.head_hash != head_hash {
                return Err(ImportError::Refused(format!(
                    "{name}:{line}: the trailer says {} events ending in hash {}, the file holds {events} ending in hash {head_hash}: the export was cut or edited",
                    trailer.events, trailer.head_hash
                )));
            }
        }
        (None, _) if number == 0 => {
            return Err(ImportError::Refused(format!(
                "{name} is empty: an export has at least its trailer line"
            )));
        }
        (None, Untrailered::Refuse) => {
            return Err(ImportError::Refused(format!(
                "{name} ends after line {number} without the trailer an export ends with: it may have been cut short, and nothing can tell how many events are missing. Import the whole export; a file written by a battleplan that wrote no trailer is imported with --accept-untrailered, which cannot tell a cut file from a whole one"
            )));
        }
        (None, Untrailered::Accept) => {}
    }
    let (_, campaigns) = restore.finish(&name).await?;
    Ok(ImportSummary {
        events,
        head_hash,
        campaigns,
        trailer_checked: trailer.is_some(),
    })
}

/// What the thread reading an export hands on, in order, through the threads that rebuild
/// the records.
enum Lines {
    /// Consecutive event lines, as read (see [`Block`]).
    Block(Block),
    /// The file is read: how many lines it has, and its trailer with its line number.
    End {
        lines: u64,
        trailer: Option<(u64, Trailer)>,
    },
    /// A line that is not what an export holds (nothing is handed on after it).
    Refused(ImportError),
}

/// Consecutive event lines: their bytes one after the other, and for each its line number,
/// the position its event must hold and where its bytes end.
#[derive(Default)]
struct Block {
    bytes: Vec<u8>,
    lines: Vec<(u64, u64, usize)>,
}

/// What a thread that rebuilds records hands on for a [`Lines`], in the same order.
enum Rebuilt {
    /// The block's records, each checked against itself (not yet against the line before):
    /// each line's number and the record's stored bytes; and the line that stopped the block
    /// (its number, position and why), when one did.
    Records(
        Vec<(u64, Vec<u8>, RecordedEvent)>,
        Option<(u64, u64, LineRefused)>,
    ),
    End {
        lines: u64,
        trailer: Option<(u64, Trailer)>,
    },
    Refused(ImportError),
}

/// Event lines handed on at a time by [`read_lines`].
const LINES_AT_A_TIME: usize = 1_024;

/// The threads that rebuild records from lines, side by side (the machine's two cores: the
/// store's own work, on the thread that imports, takes about half as long).
const REBUILDERS: usize = 2;

/// Reads an export's lines from `reader` and hands them on, a block at a time, to the
/// rebuilders in turn (the first block to the first, the next to the next...), until the file
/// ends, a line is refused, or nobody takes them any more. Only what needs the lines in order
/// is checked here: a line's length, the trailer and what follows it.
fn read_lines(
    mut reader: impl BufRead,
    name: &str,
    to: &[std::sync::mpsc::SyncSender<Lines>],
    spare: &std::sync::mpsc::Receiver<Block>,
) {
    let turn = std::cell::Cell::new(0usize);
    let send = |lines: Lines| {
        let sent = to[turn.get() % to.len()].send(lines).is_ok();
        turn.set(turn.get() + 1);
        sent
    };
    let mut number = 0u64;
    let mut records_read = 0u64;
    let mut trailer: Option<(u64, Trailer)> = None;
    let mut block = Block::default();
    let refused = |error: ImportError, block: Block| {
        // What came before the refused line is stored first (so that an error in it is seen).
        if send(Lines::Block(block)) {
            send(Lines::Refused(error));
        }
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = match (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(read) => read,
            Err(error) => {
                return refused(
                    ImportError::Refused(format!("cannot read {name}: {error}")),
                    block,
                )
            }
        };
        if read == 0 {
            break;
        }
        number += 1;
        let at = |message: String| ImportError::Refused(format!("{name}:{number}: {message}"));
        if line.len() > MAX_LINE_BYTES {
            return refused(
                at(format!(
                    "the line is longer than {MAX_LINE_BYTES} bytes; this is not a battleplan export"
                )),
                block,
            );
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some((at_line, _)) = &trailer {
            return refused(
                at(format!(
                    "a line after the trailer on line {at_line}; the trailer is an export's last line"
                )),
                block,
            );
        }
        if line.starts_with(TRAILER_START) {
            match read_trailer(&line) {
                Ok(read) => trailer = Some((number, read)),
                Err(message) => return refused(at(message), block),
            }
            continue;
        }
        records_read += 1;
        block.bytes.extend_from_slice(&line);
        block.lines.push((number, records_read, block.bytes.len()));
        if block.lines.len() == LINES_AT_A_TIME {
            let mut next = spare.try_recv().unwrap_or_default();
            next.bytes.clear();
            next.lines.clear();
            if !send(Lines::Block(std::mem::replace(&mut block, next))) {
                return;
            }
        }
    }
    if send(Lines::Block(block)) {
        send(Lines::End {
            lines: number,
            trailer,
        });
    }
}

/// Rebuilds the records of the lines `from` hands on, each line checked against itself, and
/// hands them on to `to` in the same order; the blocks it is done with go back to `spare`.
fn rebuild_lines(
    from: &std::sync::mpsc::Receiver<Lines>,
    to: &std::sync::mpsc::SyncSender<Rebuilt>,
    spare: &std::sync::mpsc::Sender<Block>,
) {
    let mut scratch = Readable::default();
    for lines in from {
        let rebuilt = match lines {
            Lines::Block(block) => {
                let mut records = Vec::with_capacity(block.lines.len());
                let mut stopped = None;
                let mut start = 0;
                for &(number, expected, end) in &block.lines {
                    match record_of_line_alone(&block.bytes[start..end], expected, &mut scratch) {
                        Ok((bytes, event)) => records.push((number, bytes, event)),
                        Err(refused) => {
                            stopped = Some((number, expected, refused));
                            break;
                        }
                    }
                    start = end;
                }
                let _ = spare.send(block);
                Rebuilt::Records(records, stopped)
            }
            Lines::End { lines, trailer } => Rebuilt::End { lines, trailer },
            Lines::Refused(error) => Rebuilt::Refused(error),
        };
        if to.send(rebuilt).is_err() {
            return;
        }
    }
}

/// The trailer line, checked; `Err` says what is wrong with it.
fn read_trailer(line: &[u8]) -> Result<Trailer, String> {
    let read: Trailer = serde_json::from_slice(line)
        .map_err(|error| format!("not an export's trailer: {error}"))?;
    if read.trailer != TRAILER_MARK {
        return Err(format!(
            "not an export's trailer: `trailer` is `{}`, not `{TRAILER_MARK}`",
            read.trailer.escape_debug()
        ));
    }
    hash_of(&read.head_hash).map_err(|error| format!("the trailer's `head_hash` {error}"))?;
    Ok(read)
}

/// What [`copy`] took from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySummary {
    pub events: u64,
    /// The hash of the last event copied (all zeros for none).
    pub head_hash: String,
}

/// Copies the source's log up to `head` (its head when the copy began) into `into`, record by
/// record: each event's stored bytes laid out again from what the source reads
/// ([`record_of`]), and checked against the chain as the restore takes it. Events the source
/// records meanwhile are left out. `Refused` when the source does not read as an intact log.
pub async fn copy(
    source: &dyn EventReader,
    head: Position,
    into: &mut Restoring,
) -> Result<CopySummary, ImportError> {
    let mut after = Position::START;
    let mut last_hash = GENESIS_HASH;
    while after < head {
        let limit = (head.0 - after.0).min(BATCH as u64) as usize;
        let batch = source
            .read_all(after, limit)
            .await
            .map_err(|error| anyhow::Error::new(error).context("reading the source"))?;
        if batch.is_empty() {
            return Err(ImportError::Refused(format!(
                "the source ends at position {after}, before its head {head}"
            )));
        }
        for event in batch.iter().filter(|event| event.position <= head) {
            let at = |detail: String| {
                ImportError::Refused(format!(
                    "the source at position {}: {detail}",
                    event.position
                ))
            };
            let bytes = record_of(event).map_err(at)?;
            into.push(bytes, event).await.map_err(|error| match error {
                RestoreError::Damaged(problem) => {
                    ImportError::Refused(format!("the source is damaged: {problem}"))
                }
                RestoreError::Refused { detail, .. } => at(detail),
                RestoreError::Store(error) => {
                    ImportError::Internal(anyhow::anyhow!("writing the target: {error}"))
                }
            })?;
            last_hash = event.hash;
            after = event.position;
        }
    }
    Ok(CopySummary {
        events: into.records(),
        head_hash: hex(&last_hash),
    })
}

/// The stored bytes of a recorded event (`core::event::record::encode_recorded`): the same
/// bytes its store holds, since the layout is canonical; `Err` when they do not give back the
/// hash the event was recorded with.
pub fn record_of(event: &RecordedEvent) -> Result<Vec<u8>, String> {
    let bytes = record::encode_recorded(event);
    let hash = record::split(&bytes)
        .map(|raw| raw.hash)
        .map_err(|error| error.to_string())?;
    if hash != event.hash {
        return Err(
            "the event laid out again does not give the hash it was recorded with: it was changed since"
                .into(),
        );
    }
    Ok(bytes)
}

/// Checks one line against the chain so far and rebuilds its record: the stored bytes and the
/// hash they have. `expected` is the position the line must hold; `scratch` holds the buffers
/// a payload is turned in, from line to line. What [`import`] does with each line, in one
/// place (the import checks a line alone on one thread and its link on another).
#[cfg(test)]
fn record_of_line(
    line: &[u8],
    previous: ChainHash,
    expected: u64,
    scratch: &mut Readable,
) -> Result<(Vec<u8>, RecordedEvent), String> {
    let (bytes, recorded) = record_of_line_alone(line, expected, scratch)
        .map_err(|refused| refused.linked(previous, expected))?;
    LineRefused::link(recorded.previous_hash, previous, expected)?;
    Ok((bytes, recorded))
}

/// Why a line was refused, as far as it was read alone: the words, and the `previous_hash` it
/// names once that was read (so that its link to the line before is checked first, as
/// [`record_of_line`] checks it).
#[derive(Debug)]
struct LineRefused {
    message: String,
    previous_hash: Option<ChainHash>,
}

impl From<&str> for LineRefused {
    fn from(message: &str) -> LineRefused {
        LineRefused::from(message.to_string())
    }
}

impl From<String> for LineRefused {
    fn from(message: String) -> LineRefused {
        LineRefused {
            message,
            previous_hash: None,
        }
    }
}

impl LineRefused {
    /// The words for the line at `expected`, `previous` being the hash of the event before it:
    /// a broken link before anything found after the link was read.
    fn linked(self, previous: ChainHash, expected: u64) -> String {
        match self.previous_hash {
            Some(previous_hash) => match LineRefused::link(previous_hash, previous, expected) {
                Err(broken) => broken,
                Ok(()) => self.message,
            },
            None => self.message,
        }
    }

    /// Whether a line naming `previous_hash` continues a chain whose last hash is `previous`.
    fn link(previous_hash: ChainHash, previous: ChainHash, expected: u64) -> Result<(), String> {
        if previous_hash == previous {
            return Ok(());
        }
        Err(format!(
            "`previous_hash` is not the hash of the event before it ({}): the chain is broken (an event was changed, removed or reordered)",
            if expected == 1 { "none: it must be all zeros".to_string() } else { hex(&previous) }
        ))
    }
}

/// [`record_of_line`] without the link to the line before: what a line says checked against
/// itself (its position is `expected`, its hash is its event's).
fn record_of_line_alone(
    line: &[u8],
    expected: u64,
    scratch: &mut Readable,
) -> Result<(Vec<u8>, RecordedEvent), LineRefused> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("an empty line; an export has one event on every line".into());
    }
    let line: LineIn =
        serde_json::from_slice(line).map_err(|error| format!("not an export line: {error}"))?;
    if line.position != expected {
        return Err(LineRefused::from(format!(
            "position {}, expected {expected} (an event is missing, repeated or moved)",
            line.position
        )));
    }
    let stream =
        StreamId::new(line.stream.into_owned()).map_err(|error| format!("`stream`: {error}"))?;
    let recorded_at = DateTime::parse_from_rfc3339(&line.recorded_at)
        .map_err(|error| format!("`recorded_at` is not an RFC 3339 instant: {error}"))?
        .with_timezone(&Utc);
    if !recorded_at.timestamp_subsec_nanos().is_multiple_of(1_000) {
        return Err("`recorded_at` is finer than a microsecond, which no store records".into());
    }
    let previous_hash = hash_of(&line.previous_hash).map_err(|e| format!("`previous_hash` {e}"))?;
    let hash = hash_of(&line.hash).map_err(|e| format!("`hash` {e}"))?;
    // From here on, a refusal names the link: the line before decides whether it is broken.
    let refused = |message: String| LineRefused {
        message,
        previous_hash: Some(previous_hash),
    };
    let payload = match &line.payload_msgpack {
        Some(text) => BASE64
            .decode(text.as_bytes())
            .map_err(|error| refused(format!("`payload_msgpack` is not base64: {error}")))?,
        // The readable payload is the bytes (see docs/export.md): the hash below tells
        // whether it was changed.
        None => {
            let mut bytes = Vec::with_capacity(line.payload.get().len());
            msgpack_of_json(line.payload.get().as_bytes(), &mut bytes).map_err(|error| {
                refused(format!(
                    "`payload` cannot be laid out as MessagePack: {error}"
                ))
            })?;
            bytes
        }
    };
    let metadata = Metadata {
        actor: line.metadata.actor.into_owned(),
        command_id: CommandId(line.metadata.command_id),
        causation_id: line.metadata.causation_id,
        correlation_id: line.metadata.correlation_id,
        reason: line.metadata.reason.map(Cow::into_owned),
    };
    let (bytes, recorded) = record::encode(
        NewEvent {
            event_id: EventId(line.event_id),
            event_type: line.event_type.into_owned(),
            schema_version: line.schema_version,
            payload,
        },
        Placement {
            position: Position(line.position),
            stream: &stream,
            version: StreamVersion(line.version),
            recorded_at,
            metadata: &metadata,
            previous_hash,
        },
    );
    if recorded.hash != hash {
        return Err(refused(
            "`hash` does not match the event: a field was changed since it was recorded".into(),
        ));
    }
    if line.payload_msgpack.is_some() {
        // Both were written: the readable one must show the bytes.
        scratch.show(&recorded.payload);
        let shown: serde_json::Value =
            serde_json::from_slice(&scratch.json).unwrap_or(serde_json::Value::Null);
        let read: serde_json::Value =
            serde_json::from_str(line.payload.get()).unwrap_or(serde_json::Value::Null);
        if !same_json(&shown, &read) {
            return Err(refused(
                "`payload` does not match `payload_msgpack`, the bytes the hash covers: the readable payload was edited"
                    .into(),
            ));
        }
    }
    Ok((bytes, recorded))
}

fn hash_of(text: &str) -> Result<ChainHash, String> {
    let mut hash = [0u8; 32];
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(format!(
            "is not 64 hexadecimal digits: `{}`",
            text.escape_debug()
        ));
    }
    for (index, pair) in bytes.chunks(2).enumerate() {
        let digit = |byte: u8| (byte as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => hash[index] = (high * 16 + low) as u8,
            _ => {
                return Err(format!(
                    "is not 64 hexadecimal digits: `{}`",
                    text.escape_debug()
                ))
            }
        }
    }
    Ok(hash)
}

/// JSON equality, with floating-point numbers equal within a few units in the last place:
/// serde_json reads decimal text back to the nearest float only approximately, and the
/// readable payload is a view of bytes the hash already covers.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                    (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| same_json(value, other)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    proptest::proptest! {
        #[test]
        fn instants_are_written_as_chrono_writes_them(
            seconds in -62_167_219_200i64..253_402_300_800i64,
            nanos in 0u32..1_000_000_000,
        ) {
            let at = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
            let mut out = Vec::new();
            push_instant(&mut out, &at);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                at.to_rfc3339_opts(SecondsFormat::Micros, true)
            );
        }

        #[test]
        fn numbers_are_written_as_display_writes_them(number: i64, unsigned: u64) {
            let mut out = Vec::new();
            push_signed(&mut out, number);
            out.push(b' ');
            push_number(&mut out, unsigned);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{number} {unsigned}")
            );
        }

        #[test]
        fn texts_are_quoted_as_serde_json_quotes_them(
            bytes in proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
                // Escapes, a control character, DEL, and 中 as UTF-8, around plain ASCII.
                proptest::collection::vec(
                    proptest::sample::select(vec![b'a', b'7', b'"', b'\\', 0x01, 0x1f, 0x7f, 0xe4, 0xb8, 0xad]),
                    0..80,
                ),
                proptest::strategy::Strategy::prop_map(proptest::prelude::any::<String>(), String::into_bytes),
            ]
        ) {
            // A text of any bytes, as a payload holds it: shown as serde_json shows the same
            // text, or refused when it is not UTF-8.
            let mut payload = if bytes.len() < 32 {
                vec![0xa0 | bytes.len() as u8]
            } else {
                vec![0xd9, bytes.len() as u8]
            };
            payload.extend_from_slice(&bytes);
            let mut out = Vec::new();
            let shown = show_item(&mut payload.as_slice(), &mut out, 0);
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    proptest::prop_assert!(shown.is_ok());
                    proptest::prop_assert_eq!(out, serde_json::to_vec(text).unwrap());
                }
                Err(_) => proptest::prop_assert!(shown.is_err()),
            }
        }
    }

    #[test]
    fn a_leap_second_and_far_years_are_written_as_chrono_writes_them() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        let far = chrono::NaiveDate::from_ymd_opt(12_345, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap()
            .and_utc();
        for at in [leap, far] {
            let mut out = Vec::new();
            push_instant(&mut out, &at);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                at.to_rfc3339_opts(SecondsFormat::Micros, true)
            );
        }
    }

    #[test]
    fn hashes_read_as_hex() {
        let hash = [0xab; 32];
        assert_eq!(hash_of(&hex(&hash)).unwrap(), hash);
        assert!(hash_of("ab").is_err());
        assert!(hash_of(&"zz".repeat(32)).is_err());
    }

    /// A recorded event with `payload` (stored bytes) and `metadata`, first in its log.
    fn recorded_with(payload: Vec<u8>) -> (Vec<u8>, RecordedEvent) {
        let metadata = Metadata {
            actor: "alice".into(),
            command_id: CommandId(Uuid::from_u128(7)),
            causation_id: Some(Uuid::from_u128(8)),
            correlation_id: None,
            reason: Some("why".into()),
        };
        let stream = StreamId::new("campaign-x").unwrap();
        record::encode(
            NewEvent {
                event_id: EventId(Uuid::from_u128(1)),
                event_type: "Tested".into(),
                schema_version: 1,
                payload,
            },
            Placement {
                position: Position(1),
                stream: &stream,
                version: StreamVersion(1),
                recorded_at: DateTime::from_timestamp(1_788_000_000, 123_456_000).unwrap(),
                metadata: &metadata,
                previous_hash: GENESIS_HASH,
            },
        )
    }

    fn rebuild(
        line: &str,
        previous: ChainHash,
        expected: u64,
    ) -> Result<(Vec<u8>, ChainHash), String> {
        record_of_line(
            line.as_bytes(),
            previous,
            expected,
            &mut Readable::default(),
        )
        .map(|(bytes, event)| (bytes, event.hash))
    }

    #[test]
    fn a_line_rebuilds_the_record_it_was_exported_from() {
        // Keys out of alphabetical order, nested, negative and wide numbers, a float, a text
        // that needs escaping: the readable payload alone stands for the bytes.
        #[derive(serde::Serialize)]
        struct Inner {
            d: bool,
            c: Option<u8>,
        }
        #[derive(serde::Serialize)]
        struct Payload {
            zulu: i64,
            alpha: Vec<serde_json::Value>,
            mike: Inner,
            wide: u64,
            text: &'static str,
        }
        let payload = rmp_serde::to_vec_named(&Payload {
            zulu: -40_000,
            alpha: vec![1.5.into(), "x".into(), serde_json::Value::Null, 300.into()],
            mike: Inner { d: true, c: None },
            wide: u64::MAX,
            text: "\"quoted\" \u{7} 双十一",
        })
        .unwrap();
        let (bytes, recorded) = recorded_with(payload);
        let line = export_line(&recorded);
        assert!(!line.contains("payload_msgpack"), "{line}");
        assert!(
            line.contains(r#""payload":{"zulu":-40000,"alpha":[1.5,"x",null,300],"mike":{"d":true,"c":null},"wide":18446744073709551615,"#),
            "{line}"
        );
        let (rebuilt, hash) = rebuild(&line, GENESIS_HASH, 1).unwrap();
        assert_eq!(rebuilt, bytes);
        assert_eq!(hash, recorded.hash);
        for (from, to) in [
            ("\"why\"", "\"because\""),
            ("\"x\"", "\"y\""),
            ("\"d\":true,\"c\":null", "\"c\":null,\"d\":true"),
        ] {
            let edited = line.replace(from, to);
            assert_ne!(edited, line);
            assert!(
                rebuild(&edited, GENESIS_HASH, 1)
                    .unwrap_err()
                    .contains("`hash` does not match"),
                "{to}"
            );
        }
        assert!(rebuild(&line, [1; 32], 1)
            .unwrap_err()
            .contains("chain is broken"));
        assert!(rebuild(&line, GENESIS_HASH, 2)
            .unwrap_err()
            .contains("expected 2"));
    }

    #[test]
    fn a_payload_json_cannot_give_back_travels_as_its_bytes() {
        // A 32-bit float, bytes, a map keyed by numbers, a long form of a small integer, bytes
        // after the payload: JSON shows each (or cannot), but not as these bytes.
        #[derive(serde::Serialize)]
        struct Small {
            ratio: f32,
        }
        #[derive(serde::Serialize)]
        struct Bytes {
            #[serde(with = "serde_bytes_like")]
            raw: Vec<u8>,
        }
        mod serde_bytes_like {
            pub fn serialize<S: serde::Serializer>(bytes: &[u8], to: S) -> Result<S::Ok, S::Error> {
                to.serialize_bytes(bytes)
            }
        }
        let keyed: std::collections::BTreeMap<u32, &str> = [(1, "one")].into_iter().collect();
        // {"n": 5} with 5 as a 32-bit unsigned integer (0xce) instead of a fixint.
        let long = vec![0x81, 0xa1, b'n', 0xce, 0, 0, 0, 5];
        let mut trailing = rmp_serde::to_vec_named(&Small { ratio: 0.5 }).unwrap();
        trailing.push(0xc0);
        for (what, payload, shown) in [
            (
                "f32",
                rmp_serde::to_vec_named(&Small { ratio: 0.1 }).unwrap(),
                r#"{"ratio":0.1}"#,
            ),
            (
                "bytes",
                rmp_serde::to_vec_named(&Bytes { raw: vec![1, 2] }).unwrap(),
                r#"{"raw":[1,2]}"#,
            ),
            (
                "number keys",
                rmp_serde::to_vec_named(&keyed).unwrap(),
                r#"{"1":"one"}"#,
            ),
            ("long integer", long, r#"{"n":5}"#),
            ("trailing bytes", trailing, "null"),
        ] {
            let (bytes, recorded) = recorded_with(payload);
            let line = export_line(&recorded);
            assert!(line.contains("\"payload_msgpack\":\""), "{what}: {line}");
            assert!(
                line.contains(&format!("\"payload\":{shown},")),
                "{what}: {line}"
            );
            let (rebuilt, hash) = rebuild(&line, GENESIS_HASH, 1).unwrap();
            assert_eq!(rebuilt, bytes, "{what}");
            assert_eq!(hash, recorded.hash, "{what}");
            if shown != "null" {
                let edited = line.replacen(shown, "{\"edited\":true}", 1);
                assert!(
                    rebuild(&edited, GENESIS_HASH, 1)
                        .unwrap_err()
                        .contains("`payload` does not match `payload_msgpack`"),
                    "{what}"
                );
            }
            let dropped = line.replacen("\"payload_msgpack\":\"", "\"x\":\"", 1);
            assert!(rebuild(&dropped, GENESIS_HASH, 1).is_err(), "{what}");
        }
    }

    #[test]
    fn a_line_written_with_both_payloads_still_imports() {
        // Exports before 2026-12 carried `payload_msgpack` on every line.
        let (bytes, recorded) =
            recorded_with(rmp_payload(&serde_json::json!({"b": 1, "a": [1.5]})));
        let line = export_line(&recorded);
        assert!(!line.contains("payload_msgpack"), "{line}");
        let both = line.replacen(
            ",\"metadata\":",
            &format!(
                ",\"payload_msgpack\":\"{}\",\"metadata\":",
                BASE64.encode(&recorded.payload)
            ),
            1,
        );
        let (rebuilt, hash) = rebuild(&both, GENESIS_HASH, 1).unwrap();
        assert_eq!((rebuilt, hash), (bytes, recorded.hash));
        let garbled = both.replacen("\"payload_msgpack\":\"", "\"payload_msgpack\":\"!", 1);
        assert!(rebuild(&garbled, GENESIS_HASH, 1)
            .unwrap_err()
            .contains("`payload_msgpack` is not base64"));
    }

    /// A MessagePack item, with the width each of its lengths and integers is written in
    /// (0 its shortest; a width too narrow for the value is widened).
    #[derive(Debug, Clone)]
    enum Item {
        Nil,
        Bool(bool),
        Uint(u64, usize),
        Sint(i64, usize),
        F32(f32),
        F64(f64),
        Text(String, usize),
        Bytes(Vec<u8>),
        Ext,
        Array(Vec<Item>, usize),
        Map(Vec<(Item, Item)>, usize),
    }

    fn encode(item: &Item, out: &mut Vec<u8>) {
        fn be(out: &mut Vec<u8>, value: u64, width: usize) {
            out.extend_from_slice(&value.to_be_bytes()[8 - width..]);
        }
        fn widest(chosen: usize, least: usize) -> usize {
            [0, 1, 2, 4, 8][chosen % 5].max(least)
        }
        match item {
            Item::Nil => out.push(0xc0),
            Item::Bool(value) => out.push(if *value { 0xc3 } else { 0xc2 }),
            Item::Uint(value, width) => match widest(*width, uint_width(*value)) {
                0 => out.push(*value as u8),
                width => {
                    out.push(0xcc + width.trailing_zeros() as u8);
                    be(out, *value, width);
                }
            },
            Item::Sint(value, width) => {
                let least = if *value < 0 {
                    sint_width(*value)
                } else {
                    uint_width(*value as u64)
                };
                match widest(*width, least) {
                    0 => out.push(*value as u8),
                    width => {
                        out.push(0xd0 + width.trailing_zeros() as u8);
                        be(out, *value as u64, width);
                    }
                }
            }
            Item::F32(value) => {
                out.push(0xca);
                out.extend_from_slice(&value.to_bits().to_be_bytes());
            }
            Item::F64(value) => {
                out.push(0xcb);
                out.extend_from_slice(&value.to_bits().to_be_bytes());
            }
            Item::Text(text, width) => {
                let length = text.len();
                match widest(*width, str_width(length)).min(4) {
                    0 => out.push(0xa0 | length as u8),
                    width => {
                        out.push(0xd9 + width.trailing_zeros() as u8);
                        be(out, length as u64, width);
                    }
                }
                out.extend_from_slice(text.as_bytes());
            }
            Item::Bytes(bytes) => {
                out.push(0xc4);
                out.push(bytes.len() as u8);
                out.extend_from_slice(bytes);
            }
            Item::Ext => out.extend_from_slice(&[0xd4, 1, 2]),
            Item::Array(items, width) => {
                match widest(*width, collection_width(items.len())).min(4) {
                    0 => out.push(0x90 | items.len() as u8),
                    1 | 2 => {
                        out.push(0xdc);
                        be(out, items.len() as u64, 2);
                    }
                    _ => {
                        out.push(0xdd);
                        be(out, items.len() as u64, 4);
                    }
                }
                items.iter().for_each(|item| encode(item, out));
            }
            Item::Map(pairs, width) => {
                match widest(*width, collection_width(pairs.len())).min(4) {
                    0 => out.push(0x80 | pairs.len() as u8),
                    1 | 2 => {
                        out.push(0xde);
                        be(out, pairs.len() as u64, 2);
                    }
                    _ => {
                        out.push(0xdf);
                        be(out, pairs.len() as u64, 4);
                    }
                }
                for (key, value) in pairs {
                    encode(key, out);
                    encode(value, out);
                }
            }
        }
    }

    fn items() -> impl proptest::strategy::Strategy<Value = Item> {
        use proptest::prelude::*;
        // Mostly shortest forms, as the stores write them; now and then a longer one.
        let width = prop_oneof![8 => Just(0usize), 1 => 1usize..5];
        let leaf = prop_oneof![
            Just(Item::Nil),
            any::<bool>().prop_map(Item::Bool),
            (any::<u64>(), width.clone()).prop_map(|(v, w)| Item::Uint(v, w)),
            (0u64..300, width.clone()).prop_map(|(v, w)| Item::Uint(v, w)),
            (any::<i64>(), width.clone()).prop_map(|(v, w)| Item::Sint(v, w)),
            (-200i64..200, width.clone()).prop_map(|(v, w)| Item::Sint(v, w)),
            any::<f32>().prop_map(Item::F32),
            prop_oneof![
                any::<f64>(),
                Just(-0.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(1e300),
                Just(0.1),
                Just(5e-324)
            ]
            .prop_map(Item::F64),
            ("\\PC{0,40}", width.clone()).prop_map(|(t, w)| Item::Text(t, w)),
            ("[a-z]{30,40}", width.clone()).prop_map(|(t, w)| Item::Text(t, w)),
            ("[\\x00-\\x1f\"\\\\a\\x7f]{0,6}", Just(0usize)).prop_map(|(t, w)| Item::Text(t, w)),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Item::Bytes),
            prop_oneof![20 => Just(Item::Nil), 1 => Just(Item::Ext)],
        ];
        leaf.prop_recursive(4, 64, 18, move |inner| {
            let key = prop_oneof![
                8 => ("[a-z_]{0,12}", Just(0usize)).prop_map(|(t, w)| Item::Text(t, w)),
                1 => (0u64..100, Just(0usize)).prop_map(|(v, w)| Item::Uint(v, w)),
                1 => Just(Item::Nil),
            ];
            prop_oneof![
                (
                    proptest::collection::vec(inner.clone(), 0..18),
                    width.clone()
                )
                    .prop_map(|(items, w)| Item::Array(items, w)),
                (
                    proptest::collection::vec((key, inner), 0..18),
                    width.clone()
                )
                    .prop_map(|(pairs, w)| Item::Map(pairs, w)),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// The word-at-a-time check finds exactly the bytes a JSON string escapes.
        #[test]
        fn a_text_needs_an_escape_exactly_when_it_holds_a_byte_json_escapes(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => 0x20u8..=0xff,
                    1 => proptest::prelude::any::<u8>(),
                ],
                0..40,
            ),
        ) {
            let naive = bytes.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\');
            proptest::prop_assert_eq!(needs_escape(&bytes), naive);
        }

        /// What `show` calls standing for the bytes is exactly what reads back as them: an
        /// export leaves `payload_msgpack` out only when the import rebuilds the same bytes,
        /// and the readable text is serde_json's own.
        #[test]
        fn a_payload_is_shown_and_stands_for_its_bytes_exactly_when_it_reads_back(
            item in items(),
            trailing in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            encode(&item, &mut bytes);
            if trailing {
                bytes.push(0xc0);
            }
            let mut readable = Readable::default();
            let stands = readable.show(&bytes);
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&readable.json);
            proptest::prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&readable.json));
            let mut back = Vec::new();
            let reads_back = msgpack_of_json(&readable.json, &mut back).is_ok() && back == bytes;
            proptest::prop_assert_eq!(stands, reads_back, "{}", String::from_utf8_lossy(&readable.json));
            if stands {
                let mut reader = &bytes[..];
                let mut from = rmp_serde::Deserializer::new(&mut reader);
                let mut theirs = Vec::new();
                let mut to = serde_json::Serializer::new(&mut theirs);
                serde_transcode::transcode(&mut from, &mut to).unwrap();
                proptest::prop_assert_eq!(&readable.json, &theirs);
            }
        }
    }

    /// A payload as the stores hold it, through the core's own encoder.
    fn rmp_payload(value: &serde_json::Value) -> Vec<u8> {
        use battleplan_core::event::upcast;
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Any(serde_json::Value);
        impl upcast::EventPayload for Any {
            const EVENT_TYPE: &'static str = "Tested";
            const SCHEMA_VERSION: u16 = 1;
        }
        upcast::encode(EventId(Uuid::from_u128(1)), &Any(value.clone()))
            .unwrap()
            .payload
    }
}
