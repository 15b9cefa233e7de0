//! Reading customer and outcome files: CSV with a header, or JSON lines, streamed one row at a
//! time (memory stays bounded whatever the file's length) and hashed with blake3 as the bytes go
//! by, so the import is named by its content. What a row means is `core::customer::row`'s
//! business; this module finds the rows, their lines and columns, and what is wrong with their
//! bytes (bad UTF-8, broken JSON, a wrong count of fields).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use battleplan_core::customer::row::{Cell, FieldError, Row, RowColumns, Schema};
use battleplan_core::text::printable;
use serde::{Deserialize, Serialize};

/// A row (a CSV record or a JSON line) longer than this is a malformed row: it bounds the
/// memory a row takes and keeps every event far below the store's record limit.
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// The largest file an import reads: 4 GiB, some twenty million rows of customers (a million
/// take about 150 MB). A larger file is refused before its first byte is read; split it.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Bytes read from the file at a time.
const READ_BUFFER: usize = 64 * 1024;

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated, a header line first.
    Csv,
    /// One JSON object a line (`.jsonl`, `.ndjson`).
    Jsonl,
}

impl Format {
    /// The format a file's extension says: `.csv`, `.jsonl` or `.ndjson`, in any case.
    pub fn of_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            _ => Err(format!("`{text}` is not a format; use csv or jsonl")),
        }
    }
}

/// One thing wrong with a file, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The line in the file (from 1; a CSV row's first line when a quoted field spans several).
    pub line: u64,
    /// The column's name (CSV: from the header; JSON lines: the key), when the problem is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// CSV: the field's number in the row (from 1). JSON lines: the character in the line
    /// (from 1) where the JSON breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    pub reason: String,
}

impl Problem {
    fn new(line: u64, reason: impl Into<String>) -> Problem {
        Problem {
            line,
            column: None,
            position: None,
            reason: reason.into(),
        }
    }

    fn of_field(line: u64, format: Format, error: FieldError) -> Problem {
        Problem {
            line,
            column: Some(error.column),
            // A JSON object's keys have no useful number; a CSV column's number is what a
            // spreadsheet shows.
            position: match format {
                Format::Csv => error.index.map(|index| index as u64 + 1),
                Format::Jsonl => None,
            },
            reason: error.reason,
        }
    }
}

impl fmt::Display for Problem {
    /// `line 4, column 3 (active): ...`, `line 4, key "active": ...`, `line 4, column 17: ...`.
    /// A column's name and a reason quote the file, so their control characters are escaped: a
    /// cell cannot move the terminal's cursor or fake a line of output.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "line {}", self.line)?;
        match (&self.column, self.position) {
            (Some(column), Some(position)) => {
                write!(formatter, ", column {position} ({})", printable(column))?
            }
            (Some(column), None) => write!(formatter, ", {}", printable(column))?,
            (None, Some(position)) => write!(formatter, ", column {position}")?,
            (None, None) => {}
        }
        write!(formatter, ": {}", printable(&self.reason))
    }
}

/// What the reader hands over, row by row, in the file's order.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one item exists at a time, handed over by value; a box would cost an allocation per row"
)]
pub enum Item<R = Row> {
    /// A good row, and its size in the file (to cut appends by volume as well as by rows).
    Row { row: R, bytes: u64 },
    /// A malformed row: every problem found in it.
    Bad { line: u64, problems: Vec<Problem> },
}

/// A file read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    /// blake3 of every byte, hex (64 digits).
    pub digest: String,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file as a whole cannot be imported (empty, or a bad CSV header): no row can be
    /// read, so skipping bad rows cannot help. Fix the file.
    #[error("the file cannot be imported")]
    File(Vec<Problem>),
    /// Opening or reading failed: say so and stop.
    #[error("{0}")]
    Io(String),
    /// The caller asked to stop before the end.
    #[error("stopped before the end of the file")]
    Stopped,
}

/// A file read no further than its bound: one that grows while it is read fails instead of
/// going on for ever.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // At the bound: the end of the file, or more than an import reads.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "the file grew beyond the {MAX_FILE_BYTES} bytes an import reads while it was read"
                ))),
            };
        }
        let room = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let count = self.inner.read(&mut buffer[..room])?;
        self.left -= count as u64;
        Ok(count)
    }
}

/// Hashes and counts the bytes as they are read, and reports the count.
struct Hashing<'p, R> {
    inner: R,
    hasher: blake3::Hasher,
    bytes: u64,
    progress: &'p dyn Fn(u64),
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..count]);
        self.bytes += count as u64;
        (self.progress)(self.bytes);
        Ok(count)
    }
}

impl<R: Read> Hashing<'_, R> {
    /// Reads whatever the parser left (nothing, normally) so the digest covers every byte.
    fn finish(mut self) -> io::Result<FileRead> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(FileRead {
            digest: self.hasher.finalize().to_hex().to_string(),
            bytes: self.bytes,
        })
    }
}

/// Whether `path` may be imported: a regular file (symbolic links followed) of at most
/// [`MAX_FILE_BYTES`]. Its size, or what is wrong, in words. The command line asks before
/// sending an import to a daemon, the daemon asks again before reading (a request may come from
/// anything that can write to its socket), and [`read`] checks the file it opened.
pub fn admissible(path: &Path) -> Result<u64, String> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    admissible_file(path, &metadata)
}

fn admissible_file(path: &Path, metadata: &std::fs::Metadata) -> Result<u64, String> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_fifo() {
        Some("a pipe")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(format!(
            "{} is {what}, not a file to import: give a regular file",
            path.display()
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} has {} bytes, more than the {MAX_FILE_BYTES} ({} GiB) an import reads: split it into smaller files",
            path.display(),
            metadata.len(),
            MAX_FILE_BYTES >> 30
        ));
    }
    Ok(metadata.len())
}

/// A good row of a file read with `S`.
pub type RowOf<S> = <<S as Schema>::Columns as RowColumns>::Row;

/// Reads `path` to its end, its rows understood by `schema` (an
/// [`ImportKind`](battleplan_core::customer::ImportKind), or another kind of file's), handing
/// each row to `visit` (which returns `false` to stop), and returns the file's digest. `progress` hears the count of bytes read so far. The file must be
/// [`admissible`], and is read no further than [`MAX_FILE_BYTES`] if it grows meanwhile.
pub fn read<S: Schema>(
    path: &Path,
    schema: S,
    format: Format,
    progress: &dyn Fn(u64),
    visit: &mut dyn FnMut(Item<RowOf<S>>) -> bool,
) -> Result<FileRead, ReadError> {
    let describe =
        |error: io::Error| ReadError::Io(format!("cannot read {}: {error}", path.display()));
    let file = File::open(path).map_err(describe)?;
    admissible_file(path, &file.metadata().map_err(describe)?).map_err(ReadError::Io)?;
    let hashing = Hashing {
        inner: Bounded {
            inner: file,
            left: MAX_FILE_BYTES,
        },
        hasher: blake3::Hasher::new(),
        bytes: 0,
        progress,
    };
    match format {
        Format::Csv => read_csv(hashing, schema, visit),
        Format::Jsonl => read_jsonl(hashing, schema, visit),
    }
    .map_err(|error| match error {
        ReadError::Io(detail) => ReadError::Io(format!("cannot read {}: {detail}", path.display())),
        other => other,
    })
}

fn utf8_problem(line: u64, column: Option<String>, position: Option<u64>, at: usize) -> Problem {
    Problem {
        line,
        column,
        position,
        reason: format!(
            "bytes that are not UTF-8 (at byte {} of the {}); save the file as UTF-8",
            at + 1,
            if position.is_some() { "field" } else { "line" }
        ),
    }
}

/// The most problems a bad header reports one by one (the total is always given): a header of
/// a thousand unknown columns says so in a hundred lines, not a thousand.
pub const MAX_HEADER_PROBLEMS: usize = 100;

/// One CSV record as [`CsvRecords`] read it: its fields are in the reader until the next one.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// The line of its first byte (from 1).
    line: u64,
    /// The line of its last byte: more than `line` when a quoted field holds line breaks.
    last_line: u64,
    /// Its length in the file, terminator left out.
    bytes: u64,
    /// Longer than [`MAX_ROW_BYTES`]: its fields were not kept.
    too_long: bool,
    /// Ended by the end of the file inside a quoted field: a double quote opened in it was never
    /// closed, and every line after it was read as part of it.
    unclosed_quote: bool,
}

/// CSV records read with csv-core, which leaves memory and line numbers to its caller: a record
/// keeps at most [`MAX_ROW_BYTES`] of fields (a longer one is measured and skipped, as an endless
/// JSON line is), and lines are counted here, where CR LF, LF and a lone CR each end one line,
/// so a record's line is right whatever the file's line ends (csv's own count is one low for CR
/// LF files and stays at 1 for CR files).
struct CsvRecords<R> {
    input: R,
    core: csv_core::Reader,
    /// The line of the next byte to read.
    line: u64,
    /// The last byte read was a CR: an LF right after it ends no further line.
    after_cr: bool,
    /// Bytes read so far.
    offset: u64,
    fields: Vec<u8>,
    ends: Vec<usize>,
    /// Fields in the last record.
    count: usize,
}

impl<R: BufRead> CsvRecords<R> {
    fn new(input: R) -> CsvRecords<R> {
        CsvRecords {
            input,
            core: csv_core::Reader::new(),
            line: 1,
            after_cr: false,
            offset: 0,
            fields: vec![0; 1024],
            ends: vec![0; 64],
            count: 0,
        }
    }

    /// The next record, or `None` at the end of the file. Blank lines are skipped.
    fn next(&mut self) -> io::Result<Option<Record>> {
        use csv_core::ReadRecordResult;
        // (line, offset) of the record's first and last bytes.
        let mut first: Option<(u64, u64)> = None;
        let mut last = (0u64, 0u64);
        let mut quotes = 0u64;
        let mut too_long = false;
        let (mut output, mut ends) = (0usize, 0usize);
        loop {
            let input = self.input.fill_buf()?;
            let at_end = input.is_empty();
            let (result, read, written, ended) =
                self.core
                    .read_record(input, &mut self.fields[output..], &mut self.ends[ends..]);
            for &byte in &input[..read] {
                match byte {
                    b'\r' => {
                        self.line += 1;
                        self.after_cr = true;
                    }
                    b'\n' => {
                        if !self.after_cr {
                            self.line += 1;
                        }
                        self.after_cr = false;
                    }
                    other => {
                        self.after_cr = false;
                        if first.is_none() {
                            first = Some((self.line, self.offset));
                        }
                        last = (self.line, self.offset);
                        quotes += u64::from(other == b'"');
                    }
                }
                self.offset += 1;
            }
            self.input.consume(read);
            output += written;
            ends += ended;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.fields.len() < MAX_ROW_BYTES {
                        let size = (self.fields.len() * 2).min(MAX_ROW_BYTES);
                        self.fields.resize(size, 0);
                    } else {
                        // Longer than a row may be: measured to its end, not kept.
                        too_long = true;
                        output = 0;
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() <= MAX_ROW_BYTES {
                        let size = (self.ends.len() * 2).min(MAX_ROW_BYTES + 1);
                        self.ends.resize(size, 0);
                    } else {
                        too_long = true;
                        ends = 0;
                    }
                }
                ReadRecordResult::Record => {
                    let (line, start) = first.unwrap_or((self.line, self.offset));
                    let bytes = if first.is_some() {
                        last.1 - start + 1
                    } else {
                        0
                    };
                    let too_long = too_long || bytes > MAX_ROW_BYTES as u64;
                    self.count = if too_long { 0 } else { ends };
                    return Ok(Some(Record {
                        line,
                        last_line: last.0.max(line),
                        bytes,
                        too_long,
                        unclosed_quote: at_end && quotes % 2 == 1 && last.0 > line,
                    }));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    /// The last record's field `index` (from 0).
    fn field(&self, index: usize) -> &[u8] {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        &self.fields[start..self.ends[index]]
    }

    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).map(|index| self.field(index))
    }

    fn into_inner(self) -> R {
        self.input
    }
}

/// What is wrong with a record longer than a row may be, or ended by an unclosed quote.
fn record_problem(record: &Record, what: &str) -> Option<Problem> {
    let unclosed = || {
        format!(
            "a double quote opened in this {what} is never closed, so lines {} to {} (the end of the file) were read as one {what}; close the quote, or double it (\"\") inside a quoted field",
            record.line, record.last_line
        )
    };
    if record.too_long {
        let mut reason = format!(
            "the {what} has {} bytes, more than the {MAX_ROW_BYTES} a row may have",
            record.bytes
        );
        if record.unclosed_quote {
            reason = format!("{reason}: {}", unclosed());
        }
        return Some(Problem::new(record.line, reason));
    }
    record
        .unclosed_quote
        .then(|| Problem::new(record.line, unclosed()))
}

fn read_csv<R: Read, S: Schema>(
    source: Hashing<'_, R>,
    schema: S,
    visit: &mut dyn FnMut(Item<RowOf<S>>) -> bool,
) -> Result<FileRead, ReadError> {
    let io_error = |error: io::Error| ReadError::Io(error.to_string());
    let mut reader = CsvRecords::new(BufReader::with_capacity(READ_BUFFER, source));
    let Some(header) = reader.next().map_err(io_error)? else {
        let read = reader
            .into_inner()
            .into_inner()
            .finish()
            .map_err(io_error)?;
        let reason = if read.bytes == 0 {
            "the file is empty; a CSV file starts with its header line, e.g. `id,name,email`"
        } else {
            "the file has no header line; a CSV file starts with one, e.g. `id,name,email`"
        };
        return Err(ReadError::File(vec![Problem::new(1, reason)]));
    };
    let header_line = header.line;
    if let Some(problem) = record_problem(&header, "header") {
        return Err(ReadError::File(vec![problem]));
    }
    let mut names = Vec::with_capacity(reader.len());
    let mut problems = Vec::new();
    for (index, field) in reader.fields().enumerate() {
        match std::str::from_utf8(field) {
            Ok(name) => names.push(name.to_string()),
            Err(error) => {
                problems.push(utf8_problem(
                    header_line,
                    None,
                    Some(index as u64 + 1),
                    error.valid_up_to(),
                ));
                names.push(String::new());
            }
        }
    }
    if !problems.is_empty() {
        return Err(ReadError::File(capped(problems)));
    }
    let columns = match schema.columns(names.iter().map(String::as_str)) {
        Ok(columns) => columns,
        Err(errors) => {
            return Err(ReadError::File(capped(
                errors
                    .into_iter()
                    .map(|error| Problem::of_field(header_line, Format::Csv, error))
                    .collect(),
            )))
        }
    };
    let missing = columns.missing_required();
    if !missing.is_empty() {
        return Err(ReadError::File(
            missing
                .into_iter()
                .map(|error| Problem::of_field(header_line, Format::Csv, error))
                .collect(),
        ));
    }
    while let Some(record) = reader.next().map_err(io_error)? {
        let item = csv_row(&columns, &record, &reader);
        if !visit(item) {
            return Err(ReadError::Stopped);
        }
    }
    reader.into_inner().into_inner().finish().map_err(io_error)
}

/// The first [`MAX_HEADER_PROBLEMS`] of a header's problems, and a last one that counts the rest.
fn capped(mut problems: Vec<Problem>) -> Vec<Problem> {
    if problems.len() > MAX_HEADER_PROBLEMS {
        let more = problems.len() - MAX_HEADER_PROBLEMS;
        let line = problems[0].line;
        problems.truncate(MAX_HEADER_PROBLEMS);
        problems.push(Problem::new(
            line,
            format!("and {more} more problems in the header, not listed"),
        ));
    }
    problems
}

fn csv_row<R: BufRead, C: RowColumns>(
    columns: &C,
    record: &Record,
    fields: &CsvRecords<R>,
) -> Item<C::Row> {
    let line = record.line;
    let bad = |problems: Vec<Problem>| Item::Bad { line, problems };
    if let Some(problem) = record_problem(record, "row") {
        return bad(vec![problem]);
    }
    let size = record.bytes;
    if fields.len() != columns.len() {
        let (column, position) = if fields.len() < columns.len() {
            (
                columns.name(fields.len()).map(str::to_string),
                fields.len() as u64 + 1,
            )
        } else {
            (None, columns.len() as u64 + 1)
        };
        return bad(vec![Problem {
            line,
            column,
            position: Some(position),
            reason: format!(
                "wrong number of fields: the header has {} columns, this row has {} (a missing comma, or a comma inside a field without double quotes around it)",
                columns.len(),
                fields.len()
            ),
        }]);
    }
    let mut cells = Vec::with_capacity(fields.len());
    let mut problems = Vec::new();
    for (index, field) in fields.fields().enumerate() {
        match std::str::from_utf8(field) {
            Ok(text) => cells.push(Cell::Text(text)),
            Err(error) => {
                problems.push(utf8_problem(
                    line,
                    columns.name(index).map(str::to_string),
                    Some(index as u64 + 1),
                    error.valid_up_to(),
                ));
                cells.push(Cell::Text(""));
            }
        }
    }
    if !problems.is_empty() {
        return bad(problems);
    }
    match columns.parse(line, &cells) {
        Ok(row) => Item::Row { row, bytes: size },
        Err(errors) => bad(errors
            .into_iter()
            .map(|error| Problem::of_field(line, Format::Csv, error))
            .collect()),
    }
}

/// A JSON object's entries in the file's order, repeated keys kept (so they can be refused).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Entries, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// What a JSON value is, in words.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads one line into `buffer` (without its end), keeping at most `limit + 1` bytes of it
/// and skipping the rest, so one endless line cannot take the memory. Returns the line's whole
/// length, or `None` at the end of the file.
fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    buffer.clear();
    let mut length = 0usize;
    let mut any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (piece, found_end) = match available.iter().position(|byte| *byte == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        let room = (limit + 1).saturating_sub(buffer.len());
        buffer.extend_from_slice(&piece[..piece.len().min(room)]);
        length += piece.len();
        let consumed = piece.len() + usize::from(found_end);
        reader.consume(consumed);
        if found_end {
            return Ok(Some(length));
        }
    }
}

fn read_jsonl<R: Read, S: Schema>(
    source: Hashing<'_, R>,
    schema: S,
    visit: &mut dyn FnMut(Item<RowOf<S>>) -> bool,
) -> Result<FileRead, ReadError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, source);
    let mut buffer = Vec::new();
    let mut line = 0u64;
    let mut rows = 0u64;
    while let Some(length) = read_line_bounded(&mut reader, &mut buffer, MAX_ROW_BYTES)
        .map_err(|error| ReadError::Io(error.to_string()))?
    {
        line += 1;
        let item = jsonl_row(schema, line, &buffer, length);
        let Some(item) = item else { continue };
        rows += 1;
        if !visit(item) {
            return Err(ReadError::Stopped);
        }
    }
    let read = reader
        .into_inner()
        .finish()
        .map_err(|error| ReadError::Io(error.to_string()))?;
    if rows == 0 {
        let reason = if read.bytes == 0 {
            "the file is empty; a JSON lines file has one object a line, e.g. {\"id\": \"c-000001\"}"
        } else {
            "the file has only blank lines; a JSON lines file has one object a line"
        };
        return Err(ReadError::File(vec![Problem::new(1, reason)]));
    }
    Ok(read)
}

/// One JSON line to an item; `None` for a blank line.
fn jsonl_row<S: Schema>(
    schema: S,
    line: u64,
    bytes: &[u8],
    length: usize,
) -> Option<Item<RowOf<S>>> {
    let bad = |problems: Vec<Problem>| Some(Item::Bad { line, problems });
    if length > MAX_ROW_BYTES {
        return bad(vec![Problem::new(
            line,
            format!("the line has {length} bytes, more than the {MAX_ROW_BYTES} a row may have"),
        )]);
    }
    let mut bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if line == 1 {
        bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let column = String::from_utf8_lossy(&bytes[..error.valid_up_to()])
                .chars()
                .count();
            return bad(vec![Problem {
                line,
                column: None,
                position: Some(column as u64 + 1),
                reason: "bytes that are not UTF-8; save the file as UTF-8".to_string(),
            }]);
        }
    };
    if text.trim().is_empty() {
        return None;
    }
    let entries = match serde_json::from_str::<Entries>(text) {
        Ok(Entries(entries)) => entries,
        Err(error) if error.is_data() => {
            let found = serde_json::from_str::<serde_json::Value>(text)
                .map(|value| json_kind(&value))
                .unwrap_or("something else");
            return bad(vec![Problem::new(
                line,
                format!(
                    "not an object: each line holds one JSON object, like {{\"id\": \"c-000001\"}}; this line holds {found}"
                ),
            )]);
        }
        Err(error) => {
            return bad(vec![Problem {
                line,
                column: None,
                position: Some(character_column(text, error.column())),
                reason: format!("invalid JSON: {}", json_reason(&error)),
            }]);
        }
    };
    let columns = match schema.columns(entries.iter().map(|(key, _)| key.as_str())) {
        Ok(columns) => columns,
        Err(errors) => {
            return bad(errors
                .into_iter()
                .map(|error| Problem::of_field(line, Format::Jsonl, error))
                .collect())
        }
    };
    let cells: Vec<Cell<'_>> = entries.iter().map(|(_, value)| Cell::Json(value)).collect();
    match columns.parse(line, &cells) {
        Ok(row) => Some(Item::Row {
            row,
            bytes: length as u64,
        }),
        Err(errors) => bad(errors
            .into_iter()
            .map(|error| Problem::of_field(line, Format::Jsonl, error))
            .collect()),
    }
}

/// serde_json counts columns in bytes; people (and editors) count characters.
fn character_column(text: &str, byte_column: usize) -> u64 {
    let bytes = byte_column.saturating_sub(1).min(text.len());
    String::from_utf8_lossy(&text.as_bytes()[..bytes])
        .chars()
        .count() as u64
        + 1
}

/// serde_json's message without its own "at line 1 column 17" (the problem says where).
fn json_reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests {
    use super::*;
    use battleplan_core::customer::row::Row;
    use battleplan_core::customer::ImportKind;

    fn read_text(
        kind: ImportKind,
        format: Format,
        bytes: &[u8],
    ) -> (Result<FileRead, ReadError>, Vec<Item>) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file");
        std::fs::write(&path, bytes).unwrap();
        let mut items = Vec::new();
        let result = read(&path, kind, format, &|_| {}, &mut |item| {
            items.push(item);
            true
        });
        (result, items)
    }

    fn problems(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Bad { problems, .. } => Some(problems.iter().map(ToString::to_string)),
                Item::Row { .. } => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn csv_rows_and_their_problems_with_lines_and_columns() {
        let file = b"id,name,active\nc-1,Li,2026-08-01T00:00:00Z\nc-2,\"Wang\nWei\",\nc-3,x\nc-4,\xff,\nc-5,a,2026-08-01\n";
        let (result, items) = read_text(ImportKind::Customers, Format::Csv, file);
        let read = result.unwrap();
        assert_eq!(read.digest, blake3::hash(file).to_hex().to_string());
        assert_eq!(read.bytes, file.len() as u64);
        let lines: Vec<u64> = items
            .iter()
            .map(|item| match item {
                Item::Row { row, .. } => row.line(),
                Item::Bad { line, .. } => *line,
            })
            .collect();
        assert_eq!(lines, [2, 3, 5, 6, 7]);
        let found = problems(&items);
        assert_eq!(found.len(), 4, "{found:?}");
        // A name goes into mail headers: a quoted line break in it is refused, escaped.
        assert!(
            found[0].starts_with(
                "line 3, column 2 (name): the name holds a line break or a control character at character 5: Wang\\nWei"
            ),
            "{}",
            found[0]
        );
        assert!(found[1].starts_with("line 5, column 3 (active): wrong number of fields: the header has 3 columns, this row has 2"), "{}", found[1]);
        assert!(
            found[2].starts_with("line 6, column 2 (name): bytes that are not UTF-8"),
            "{}",
            found[2]
        );
        assert!(
            found[3].starts_with("line 7, column 3 (active): bad instant"),
            "{}",
            found[3]
        );
    }

    #[test]
    fn a_bad_header_or_an_empty_file_rejects_the_file() {
        let (result, _) = read_text(ImportKind::Customers, Format::Csv, b"");
        let Err(ReadError::File(found)) = result else {
            panic!()
        };
        assert!(found[0].reason.contains("empty"));
        let (result, items) = read_text(
            ImportKind::Customers,
            Format::Csv,
            b"id,name,emial,name\nc,a,b,c\n",
        );
        let Err(ReadError::File(found)) = result else {
            panic!()
        };
        assert!(items.is_empty());
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(
            found[0].starts_with(
                "line 1, column 3 (emial): unknown column `emial`; did you mean `email`?"
            ),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("line 1, column 4 (name): the column `name` appears twice"),
            "{}",
            found[1]
        );
        let (result, _) = read_text(ImportKind::Customers, Format::Csv, b"name\n");
        let Err(ReadError::File(found)) = result else {
            panic!()
        };
        assert_eq!(found[0].column.as_deref(), Some("id"));
        let (result, items) = read_text(ImportKind::Customers, Format::Csv, b"id,name\n");
        assert!(result.is_ok() && items.is_empty());
    }

    #[test]
    fn json_lines_and_their_problems() {
        let file = "{\"id\":\"c-1\",\"tags\":[\"a\"]}\n\n{\"id\":\"c-2\",\n[1,2]\n{\"id\":\"c-3\",\"tags\":5}\n{\"id\":\"c-4\",\"colour\":\"red\"}\n{\"id\":\"c-5\",\"id\":\"c-6\"}\n\"x\"\r\n";
        let (result, items) = read_text(ImportKind::Customers, Format::Jsonl, file.as_bytes());
        result.unwrap();
        let found = problems(&items);
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(
            found[0].starts_with("line 3, column 12: invalid JSON: EOF while parsing"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("line 4: not an object") && found[1].ends_with("an array"),
            "{}",
            found[1]
        );
        assert!(
            found[2].starts_with("line 5, tags: wrong JSON type"),
            "{}",
            found[2]
        );
        assert!(
            found[3].starts_with("line 6, colour: unknown column"),
            "{}",
            found[3]
        );
        assert!(
            found[4].starts_with("line 7, id: the column `id` appears twice"),
            "{}",
            found[4]
        );
        assert!(
            found[5].starts_with("line 8: not an object") && found[5].ends_with("a string"),
            "{}",
            found[5]
        );
        let (_, items) = read_text(
            ImportKind::Customers,
            Format::Jsonl,
            b"{\"id\":\"c\xff\"}\n",
        );
        assert!(
            problems(&items)[0].starts_with("line 1, column 9: bytes that are not UTF-8"),
            "{:?}",
            problems(&items)
        );
        let (result, _) = read_text(ImportKind::Customers, Format::Jsonl, b"");
        assert!(matches!(result, Err(ReadError::File(_))));
        // Columns count characters, not bytes.
        let (_, items) = read_text(
            ImportKind::Customers,
            Format::Jsonl,
            "{\"name\":\"王芳\" \"id\":\"c\"}\n".as_bytes(),
        );
        let found = problems(&items);
        assert!(
            found[0].starts_with("line 1, column 14: invalid JSON"),
            "{found:?}"
        );
    }

    #[test]
    fn an_endless_line_is_cut_not_kept() {
        let mut file = b"{\"id\":\"c-1\",\"name\":\"".to_vec();
        file.extend(std::iter::repeat_n(b'x', MAX_ROW_BYTES * 3));
        file.extend_from_slice(b"\"}\n{\"id\":\"c-2\"}\n");
        let (result, items) = read_text(ImportKind::Customers, Format::Jsonl, &file);
        assert_eq!(result.unwrap().bytes, file.len() as u64);
        assert!(problems(&items)[0].contains("more than the 65536"));
        assert!(matches!(&items[1], Item::Row { row, .. } if row.line() == 2));
    }

    fn lines_of(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|item| match item {
                Item::Row { row, .. } => row.line(),
                Item::Bad { line, .. } => *line,
            })
            .collect()
    }

    #[test]
    fn csv_lines_are_right_with_every_line_end_a_bom_and_quoted_line_breaks() {
        // Rows on lines 2, 3, 5 (after a quoted line break), 7 (after a blank line) and 8.
        let rows = [
            "c-1,a,",
            "c-2,x,bad",
            "c-3,\"two{END}lines\",bad",
            "",
            "c-4,b,",
            "c-5,c,bad",
        ];
        for end in ["\n", "\r\n", "\r"] {
            for bom in ["", "\u{feff}"] {
                let mut file = format!("{bom}id,attr.note,active{end}");
                for row in rows {
                    file.push_str(&row.replace("{END}", end));
                    file.push_str(end);
                }
                let (result, items) =
                    read_text(ImportKind::Customers, Format::Csv, file.as_bytes());
                result.unwrap();
                let what = format!("line end {end:?}, bom {bom:?}");
                assert_eq!(lines_of(&items), [2, 3, 4, 7, 8], "{what}");
                let found = problems(&items);
                assert!(
                    found[0].starts_with("line 3, column 3 (active)"),
                    "{what}: {found:?}"
                );
                assert!(
                    found[1].starts_with("line 4, column 3 (active)"),
                    "{what}: {found:?}"
                );
                assert!(
                    found[2].starts_with("line 8, column 3 (active)"),
                    "{what}: {found:?}"
                );
            }
        }
        // The quoted line break is kept as written.
        let (_, items) = read_text(
            ImportKind::Customers,
            Format::Csv,
            b"id,attr.note\r\nc-1,\"two\r\nlines\"\r\nc-2,x\r\n",
        );
        assert_eq!(lines_of(&items), [2, 4]);
        let Item::Row {
            row: Row::Customer(quoted),
            ..
        } = &items[0]
        else {
            panic!("{items:?}")
        };
        assert_eq!(quoted.attributes[0].1, "two\r\nlines");
    }

    #[test]
    fn json_lines_count_lines_with_every_line_end_and_a_bom() {
        for (bom, end) in [("", "\n"), ("\u{feff}", "\r\n")] {
            let file = format!(
                "{bom}{{\"id\":\"c-1\"}}{end}{end}{{\"id\":\"c-2\",\"active\":\"x\"}}{end}{{\"id\":\"c-3\"}}{end}"
            );
            let (result, items) = read_text(ImportKind::Customers, Format::Jsonl, file.as_bytes());
            result.unwrap();
            assert_eq!(lines_of(&items), [1, 3, 4], "{end:?}");
            assert!(problems(&items)[0].starts_with("line 3, active: bad instant"));
        }
    }

    /// `head`, then `length` bytes of `fill`, then `tail`, made as they are read: a file of any
    /// size without writing it.
    struct Generated {
        head: Vec<u8>,
        fill: u8,
        length: u64,
        tail: Vec<u8>,
        at: u64,
    }

    impl Read for Generated {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            let head = self.head.len() as u64;
            let total = head + self.length + self.tail.len() as u64;
            let mut count = 0;
            while count < buffer.len() && self.at < total {
                buffer[count] = if self.at < head {
                    self.head[self.at as usize]
                } else if self.at < head + self.length {
                    self.fill
                } else {
                    self.tail[(self.at - head - self.length) as usize]
                };
                count += 1;
                self.at += 1;
            }
            Ok(count)
        }
    }

    fn generated(head: &[u8], fill: u8, length: u64, tail: &[u8]) -> Generated {
        Generated {
            head: head.to_vec(),
            fill,
            length,
            tail: tail.to_vec(),
            at: 0,
        }
    }

    #[test]
    fn an_endless_csv_row_is_measured_not_kept() {
        let length = 16 * 1024 * 1024;
        let source = generated(b"id,name\nc-1,", b'x', length, b"\nc-2,Li\n");
        let mut reader = CsvRecords::new(BufReader::new(source));
        reader.next().unwrap().unwrap();
        let long = reader.next().unwrap().unwrap();
        assert!(long.too_long);
        assert_eq!((long.line, long.bytes), (2, length + 4));
        assert!(
            reader.fields.len() <= MAX_ROW_BYTES && reader.ends.len() <= MAX_ROW_BYTES + 1,
            "a row keeps at most {MAX_ROW_BYTES} bytes, this one kept {}",
            reader.fields.len()
        );
        let next = reader.next().unwrap().unwrap();
        assert_eq!((next.line, reader.len()), (3, 2));
        assert_eq!(reader.field(1), b"Li");

        // Through the whole reader: a located refusal, and the next row read.
        let hashing = Hashing {
            inner: generated(b"id,name\nc-1,", b'x', length, b"\nc-2,Li\n"),
            hasher: blake3::Hasher::new(),
            bytes: 0,
            progress: &|_| {},
        };
        let mut items = Vec::new();
        read_csv(hashing, ImportKind::Customers, &mut |item| {
            items.push(item);
            true
        })
        .unwrap();
        let found = problems(&items);
        assert_eq!(
            found,
            [format!(
                "line 2: the row has {} bytes, more than the 65536 a row may have",
                length + 4
            )]
        );
        assert_eq!(lines_of(&items), [2, 3]);
    }

    #[test]
    fn an_unclosed_quote_is_named_where_it_opens() {
        let (result, items) = read_text(
            ImportKind::Customers,
            Format::Csv,
            b"id,name\nc-1,\"Li\nc-2,Wang\nc-3,Zhang\n",
        );
        result.unwrap();
        let found = problems(&items);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("line 2: a double quote opened in this row is never closed, so lines 2 to 4 (the end of the file) were read as one row"),
            "{found:?}"
        );
        // A long file: the row is too long as well, and says why.
        let source = generated(b"id,name\nc-1,\"Li\n", b'\n', 200_000, b"c-2,x");
        let hashing = Hashing {
            inner: source,
            hasher: blake3::Hasher::new(),
            bytes: 0,
            progress: &|_| {},
        };
        let mut items = Vec::new();
        read_csv(hashing, ImportKind::Customers, &mut |item| {
            items.push(item);
            true
        })
        .unwrap();
        let found = problems(&items);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("line 2: the row has 200013 bytes, more than the 65536 a row may have: a double quote opened in this row is never closed, so lines 2 to 200003"),
            "{found:?}"
        );
    }

    #[test]
    fn a_huge_header_is_refused_and_header_problems_are_capped() {
        // A million unknown columns: more than a row may hold, refused in one problem.
        let mut head = b"id".to_vec();
        head.extend_from_slice(b",x");
        let source = generated(&head, b'y', 2_000_000, b"\nc-1\n");
        let hashing = Hashing {
            inner: source,
            hasher: blake3::Hasher::new(),
            bytes: 0,
            progress: &|_| {},
        };
        let Err(ReadError::File(found)) = read_csv(hashing, ImportKind::Customers, &mut |_| true)
        else {
            panic!("a huge header is refused")
        };
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "line 1: the header has 2000004 bytes, more than the 65536 a row may have"
        );
        // Five thousand unknown columns fit in a row: the first hundred are listed, the rest
        // counted.
        let mut header = String::from("id");
        for n in 0..5_000 {
            header.push_str(&format!(",u{n}"));
        }
        header.push('\n');
        let (result, _) = read_text(ImportKind::Customers, Format::Csv, header.as_bytes());
        let Err(ReadError::File(found)) = result else {
            panic!("unknown columns are refused")
        };
        assert_eq!(found.len(), MAX_HEADER_PROBLEMS + 1);
        assert_eq!(
            found[MAX_HEADER_PROBLEMS].to_string(),
            "line 1: and 4900 more problems in the header, not listed"
        );
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(Format::of_path(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(Format::of_path(Path::new("b.ndjson")), Some(Format::Jsonl));
        assert_eq!(Format::of_path(Path::new("b.txt")), None);
    }
}
