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

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use battleplan_adapters::postgres_store::PgRestore;
use battleplan_adapters::sled_store::RestoreError;
use battleplan_adapters::{PgEventLog, SledEventLog, StoreOptions};
use battleplan_core::event::port::EventReader;
use battleplan_core::event::record::{self, hex, ChainHash, Placement};
use battleplan_core::event::upcast;
use battleplan_core::event::{
    CommandId, EventId, Metadata, NewEvent, Position, RecordedEvent, StreamId, StreamVersion,
    GENESIS_HASH,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppError;
use crate::kernel::projection::Campaigns;

/// Events read from the store per step of an export.
const BATCH: usize = 10_000;

/// The longest line an import reads: a record is at most 8 MiB, and its line carries the
/// payload twice (readable and base64).
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// One line of an export, as written.
#[derive(Serialize)]
struct LineOut<'a> {
    position: u64,
    stream: &'a str,
    version: u64,
    event_id: Uuid,
    recorded_at: String,
    event_type: &'a str,
    schema_version: u16,
    payload: serde_json::Value,
    payload_msgpack: String,
    metadata: MetadataLine,
    previous_hash: String,
    hash: String,
}

/// One line of an export, as read: every field required, no other field accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    position: u64,
    stream: String,
    version: u64,
    event_id: Uuid,
    recorded_at: String,
    event_type: String,
    schema_version: u16,
    payload: serde_json::Value,
    payload_msgpack: String,
    metadata: MetadataLine,
    previous_hash: String,
    hash: String,
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataLine {
    actor: String,
    command_id: Uuid,
    causation_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    reason: Option<String>,
}

/// The line of one recorded event.
pub fn export_line(event: &RecordedEvent) -> Result<String, serde_json::Error> {
    let mut line = Vec::new();
    write_line(event, &mut line)?;
    String::from_utf8(line).map_err(|error| {
        serde_json::Error::io(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    })
}

/// [`export_line`] written straight to `out`, without a string of its own.
fn write_line<W: Write + ?Sized>(
    event: &RecordedEvent,
    out: &mut W,
) -> Result<(), serde_json::Error> {
    let line = LineOut {
        position: event.position.0,
        stream: event.stream.as_str(),
        version: event.version.0,
        event_id: event.event_id.0,
        recorded_at: event
            .recorded_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        event_type: &event.event_type,
        schema_version: event.schema_version,
        // A payload JSON cannot show (not MessagePack, or keys that are not text) is `null`;
        // its bytes are still carried, and `audit verify` reports it.
        payload: upcast::to_json(event).unwrap_or(serde_json::Value::Null),
        payload_msgpack: base64::encode(&event.payload),
        metadata: MetadataLine {
            actor: event.metadata.actor.clone(),
            command_id: event.metadata.command_id.0,
            causation_id: event.metadata.causation_id,
            correlation_id: event.metadata.correlation_id,
            reason: event.metadata.reason.clone(),
        },
        previous_hash: hex(&event.previous_hash),
        hash: hex(&event.hash),
    };
    serde_json::to_writer(out, &line)
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
    let head = store.head().await?;
    let mut after = Position::START;
    let mut last_hash = GENESIS_HASH;
    let mut events = 0u64;
    'read: loop {
        let batch = store.read_all(after, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for event in &batch {
            if as_of.is_some_and(|as_of| event.recorded_at > as_of) {
                break 'read;
            }
            write_line(event, out)?;
            out.write_all(b"\n")?;
            last_hash = event.hash;
            after = event.position;
            events += 1;
        }
        if after >= head {
            break;
        }
    }
    let trailer = Trailer {
        trailer: TRAILER_MARK.to_string(),
        events,
        head_hash: hex(&last_hash),
        as_of: as_of.map(|as_of| as_of.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    };
    out.write_all(serde_json::to_string(&trailer)?.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(ExportSummary {
        events,
        head_hash: hex(&last_hash),
        left_out: head.0.saturating_sub(events),
    })
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
    let mut writer = std::io::BufWriter::new(temporary);
    // On an error the temporary file goes with `writer`: nothing half-written is left.
    let summary = export(store, as_of, &mut writer).await?;
    let temporary = writer
        .into_inner()
        .map_err(|error| error.into_error())
        .context("writing the export")?;
    temporary
        .as_file()
        .sync_all()
        .context("writing the export")?;
    temporary
        .persist(out)
        .map_err(|error| error.error)
        .with_context(|| format!("writing {}", out.display()))?;
    std::fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("syncing {}", directory.display()))?;
    Ok(summary)
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
            match error.downcast_ref::<battleplan_core::event::StoreError>() {
                Some(store) => AppError::from(store.clone()),
                None => AppError::internal(format_args!("{error:#}")),
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
        /// The campaigns replayed as the records come, so that a log whose campaigns cannot be
        /// rebuilt is refused before the transaction commits.
        campaigns: Box<Campaigns>,
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
                    sink: Sink::Postgres {
                        restore,
                        campaigns: Box::default(),
                    },
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

    /// Takes the next record (its stored bytes): at the next position, continuing the chain.
    pub async fn push(&mut self, bytes: Vec<u8>) -> Result<(), RestoreError> {
        match &mut self.sink {
            Sink::Sled { restore, .. } => restore.push(bytes),
            Sink::Postgres { restore, campaigns } => {
                let position = Position(restore.records() + 1);
                let event = record::decode(&bytes).map_err(|error| RestoreError::Refused {
                    position,
                    detail: error.to_string(),
                })?;
                restore.push(bytes).await?;
                campaigns
                    .apply(&event)
                    .map_err(|error| RestoreError::Refused {
                        position,
                        detail: format!("the campaigns cannot be rebuilt from the log: {error}"),
                    })?;
                Ok(())
            }
        }
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
                let mut campaigns = Campaigns::default();
                campaigns.catch_up(&store).await.map_err(|error| {
                    ImportError::Refused(format!(
                        "{name}: the campaigns cannot be rebuilt from the log: {error}"
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
            Sink::Postgres { restore, campaigns } => {
                let count = campaigns.states.len();
                let store = restore.finish().await.map_err(|error| match error {
                    RestoreError::Store(error) => {
                        ImportError::Internal(anyhow::anyhow!("finishing the store: {error}"))
                    }
                    other => ImportError::Refused(format!("{name}: {other}")),
                })?;
                // The log is committed; its stored projection is built from it (rebuilt by
                // the next command if this fails).
                let mut stored = Campaigns::default();
                stored.catch_up(&store).await.map_err(|error| {
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
    let mut reader = BufReader::new(source);
    let mut previous = GENESIS_HASH;
    let mut buffer = Vec::new();
    let mut number = 0u64;
    let mut trailer: Option<(u64, Trailer)> = None;
    loop {
        buffer.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|error| ImportError::Refused(format!("cannot read {name}: {error}")))?;
        if read == 0 {
            break;
        }
        number += 1;
        let at = |message: String| ImportError::Refused(format!("{name}:{number}: {message}"));
        if buffer.len() > MAX_LINE_BYTES {
            return Err(at(format!(
                "the line is longer than {MAX_LINE_BYTES} bytes; this is not a battleplan export"
            )));
        }
        if buffer.last() == Some(&b'\n') {
            buffer.pop();
        }
        if let Some((at_line, _)) = &trailer {
            return Err(at(format!(
                "a line after the trailer on line {at_line}; the trailer is an export's last line"
            )));
        }
        if buffer.starts_with(TRAILER_START) {
            let read: Trailer = serde_json::from_slice(&buffer)
                .map_err(|error| at(format!("not an export's trailer: {error}")))?;
            if read.trailer != TRAILER_MARK {
                return Err(at(format!(
                    "not an export's trailer: `trailer` is `{}`, not `{TRAILER_MARK}`",
                    read.trailer.escape_debug()
                )));
            }
            hash_of(&read.head_hash)
                .map_err(|error| at(format!("the trailer's `head_hash` {error}")))?;
            trailer = Some((number, read));
            continue;
        }
        let (bytes, hash) = record_of_line(&buffer, previous, restore.records() + 1).map_err(at)?;
        restore.push(bytes).await.map_err(|error| match error {
            RestoreError::Damaged(problem) => at(problem.to_string()),
            RestoreError::Refused { detail, .. } => at(detail),
            RestoreError::Store(error) => {
                ImportError::Internal(anyhow::anyhow!("writing the store: {error}"))
            }
        })?;
        previous = hash;
    }
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
            into.push(bytes).await.map_err(|error| match error {
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
/// hash they have. `expected` is the position the line must hold.
fn record_of_line(
    line: &[u8],
    previous: ChainHash,
    expected: u64,
) -> Result<(Vec<u8>, ChainHash), String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("an empty line; an export has one event on every line".into());
    }
    let line: LineIn =
        serde_json::from_slice(line).map_err(|error| format!("not an export line: {error}"))?;
    if line.position != expected {
        return Err(format!(
            "position {}, expected {expected} (an event is missing, repeated or moved)",
            line.position
        ));
    }
    let stream = StreamId::new(line.stream).map_err(|error| format!("`stream`: {error}"))?;
    let recorded_at = DateTime::parse_from_rfc3339(&line.recorded_at)
        .map_err(|error| format!("`recorded_at` is not an RFC 3339 instant: {error}"))?
        .with_timezone(&Utc);
    if !recorded_at.timestamp_subsec_nanos().is_multiple_of(1_000) {
        return Err("`recorded_at` is finer than a microsecond, which no store records".into());
    }
    let previous_hash = hash_of(&line.previous_hash).map_err(|e| format!("`previous_hash` {e}"))?;
    let hash = hash_of(&line.hash).map_err(|e| format!("`hash` {e}"))?;
    if previous_hash != previous {
        return Err(format!(
            "`previous_hash` is not the hash of the event before it ({}): the chain is broken (an event was changed, removed or reordered)",
            if expected == 1 { "none: it must be all zeros".to_string() } else { hex(&previous) }
        ));
    }
    let payload = base64::decode(&line.payload_msgpack)
        .map_err(|error| format!("`payload_msgpack` is not base64: {error}"))?;
    let metadata = Metadata {
        actor: line.metadata.actor,
        command_id: CommandId(line.metadata.command_id),
        causation_id: line.metadata.causation_id,
        correlation_id: line.metadata.correlation_id,
        reason: line.metadata.reason,
    };
    let (bytes, recorded) = record::encode(
        NewEvent {
            event_id: EventId(line.event_id),
            event_type: line.event_type,
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
        return Err(
            "`hash` does not match the event: a field was changed since it was recorded".into(),
        );
    }
    let shown = upcast::to_json(&recorded).unwrap_or(serde_json::Value::Null);
    if !same_json(&shown, &line.payload) {
        return Err(
            "`payload` does not match `payload_msgpack`, the bytes the hash covers: the readable payload was edited"
                .into(),
        );
    }
    Ok((bytes, hash))
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

/// Standard base64 with padding (RFC 4648, section 4).
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for group in bytes.chunks(3) {
            let b = [
                group[0],
                group.get(1).copied().unwrap_or(0),
                group.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for index in 0..4 {
                if index <= group.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * index) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return Err(format!(
                "its length, {}, is not a multiple of 4",
                bytes.len()
            ));
        }
        let value = |byte: u8, at: usize| -> Result<u32, String> {
            ALPHABET
                .iter()
                .position(|&c| c == byte)
                .map(|v| v as u32)
                .ok_or_else(|| format!("`{}` at character {} is not base64", byte as char, at + 1))
        };
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let groups = bytes.len() / 4;
        for (group_index, group) in bytes.chunks(4).enumerate() {
            let last = group_index + 1 == groups;
            let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
            if padding > 2 || (padding > 0 && !last) {
                return Err("misplaced `=` padding".into());
            }
            let mut n = 0u32;
            for (index, &byte) in group.iter().enumerate() {
                let digit = if index >= 4 - padding {
                    0
                } else {
                    value(byte, group_index * 4 + index)?
                };
                n = (n << 6) | digit;
            }
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let keep = 3 - padding;
            // A canonical encoding has zero bits under the padding.
            if decoded[keep..].iter().any(|&b| b != 0) {
                return Err("bits under the `=` padding are not zero".into());
            }
            out.extend_from_slice(&decoded[..keep]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        for length in 0..40usize {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64::encode(&bytes);
            assert_eq!(base64::decode(&text).unwrap(), bytes, "length {length}");
        }
        assert_eq!(base64::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64::encode(b"fo"), "Zm8=");
        assert!(base64::decode("Zm8").is_err());
        assert!(base64::decode("Zm9=").is_err());
        assert!(base64::decode("Z=8=").is_err());
        assert!(base64::decode("Zm!=").is_err());
    }

    #[test]
    fn hashes_read_as_hex() {
        let hash = [0xab; 32];
        assert_eq!(hash_of(&hex(&hash)).unwrap(), hash);
        assert!(hash_of("ab").is_err());
        assert!(hash_of(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_line_rebuilds_the_record_it_was_exported_from() {
        let metadata = Metadata {
            actor: "alice".into(),
            command_id: CommandId(Uuid::from_u128(7)),
            causation_id: Some(Uuid::from_u128(8)),
            correlation_id: None,
            reason: Some("why".into()),
        };
        let stream = StreamId::new("campaign-x").unwrap();
        let payload = serde_json::json!({"b": 1, "a": [1.5, "x", null], "c": {"d": true}});
        let (bytes, recorded) = record::encode(
            NewEvent {
                event_id: EventId(Uuid::from_u128(1)),
                event_type: "Tested".into(),
                schema_version: 1,
                payload: rmp_payload(&payload),
            },
            Placement {
                position: Position(1),
                stream: &stream,
                version: StreamVersion(1),
                recorded_at: DateTime::from_timestamp(1_788_000_000, 123_456_000).unwrap(),
                metadata: &metadata,
                previous_hash: GENESIS_HASH,
            },
        );
        let line = export_line(&recorded).unwrap();
        let (rebuilt, hash) = record_of_line(line.as_bytes(), GENESIS_HASH, 1).unwrap();
        assert_eq!(rebuilt, bytes);
        assert_eq!(hash, recorded.hash);
        let edited = line.replace("\"why\"", "\"because\"");
        assert!(record_of_line(edited.as_bytes(), GENESIS_HASH, 1)
            .unwrap_err()
            .contains("`hash` does not match"));
        let edited = line.replace("\"x\"", "\"y\"");
        assert!(record_of_line(edited.as_bytes(), GENESIS_HASH, 1)
            .unwrap_err()
            .contains("`payload` does not match"));
        assert!(record_of_line(line.as_bytes(), [1; 32], 1)
            .unwrap_err()
            .contains("chain is broken"));
        assert!(record_of_line(line.as_bytes(), GENESIS_HASH, 2)
            .unwrap_err()
            .contains("expected 2"));
    }

    /// A payload as the stores hold it, through the core's own encoder.
    fn rmp_payload(value: &serde_json::Value) -> Vec<u8> {
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
