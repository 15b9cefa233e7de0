//! `battleplan customers import FILE` and `battleplan outcomes import FILE`: a file of rows into
//! the log, all of it or (the user asking) all of its good rows, never half of it by accident.
//!
//! Two passes over the file, each streaming it with bounded memory:
//! 1. [`check`] reads every row and computes the file's digest, writing nothing. A malformed row
//!    rejects the whole import (every problem listed up to [`LISTED_PROBLEMS`]) unless
//!    `--skip-bad-rows` was given. When a customers file may repeat an id (two rows' id hashes
//!    are equal), a second look names each repeat exactly, with the line of the first.
//!    An outcomes file gets a second look once the store is open ([`record`], before its first
//!    event): each row must name a customer in the book, a campaign and a reach-out some
//!    version of its plan had, and an instant not after now. Rows a second look leaves out are
//!    bad rows like any other, kept as a bit per row so the recording pass skips them too.
//! 2. [`record`] reads the file again and appends its rows on the stream `import-<digest>`:
//!    `ImportStarted`, the rows in chunks of at most [`CHUNK_ROWS`] rows or [`CHUNK_BYTES`]
//!    of file, then `ImportFinished`. Each append expects the stream's exact version and has a
//!    command id derived from the digest and the chunk's first row, so a retry is recorded once.
//!
//! The same file again finds its stream finished and changes nothing. A stream started and not
//! finished is the one way a partial import exists (the process was killed, or the disk
//! failed, between two chunks); running the same command again resumes after the rows the
//! stream holds (its version says how many) and finishes it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use battleplan_adapters::import::{self as file, FileRead, Format, Item, Problem, ReadError};
use battleplan_core::campaign::timeline::local_rfc3339;
use battleplan_core::campaign::{self, CampaignEvent};
use battleplan_core::customer::events::{import_stream, MAX_LISTED_SKIPPED};
use battleplan_core::customer::row::{unknown_in_outcome, Known, OfferNames, Row};
use battleplan_core::customer::{
    CustomerEvent, ImportFinished, ImportKind, ImportStarted, SkippedRow,
};
use battleplan_core::event::{
    Append, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId,
    StreamVersion,
};
use battleplan_core::plan;
use battleplan_core::text::printable;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::{AppError, Ctx};
use crate::kernel::runtime::{derived_command_id, HandleError, Runtime};

/// The most problems a rejected import lists (the total is always given).
pub const LISTED_PROBLEMS: usize = 100;
/// Rows per append, at most. Small on purpose: an append's records stay below the sled store's
/// chunk size (96 KiB), so appends share chunks; an append larger than that becomes a chunk of
/// its own, and sled 0.34 keeps every such chunk it writes in memory, whatever its cache
/// setting (measured: a million rows in appends of 1,000 peaked at 177 MiB; in appends of 100,
/// with the cache below, at 60 MiB, as a hundred thousand rows do at 32 to 38 MiB).
pub const CHUNK_ROWS: usize = 100;
/// File bytes per append, at most: a chunk of long rows is cut sooner, for the same reason.
pub const CHUNK_BYTES: u64 = 32 * 1024;
/// sled's page cache for a process that only imports: it writes once and reads back only the
/// stream's head, so a small cache costs nothing and keeps its memory flat.
pub const STORE_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// The store's checkpoint threshold for such a process: its tails (two while a checkpoint
/// runs) and each checkpoint's batch stay a few MiB, where the default's would be tens.
pub const STORE_CHECKPOINT_EVENTS: usize = 5_000;

/// The store's options for a process that only imports (`STORE_CACHE_BYTES`,
/// `STORE_CHECKPOINT_EVENTS`).
pub fn store_options() -> battleplan_adapters::StoreOptions {
    battleplan_adapters::StoreOptions {
        cache_capacity_bytes: STORE_CACHE_BYTES,
        checkpoint_events: STORE_CHECKPOINT_EVENTS,
        ..battleplan_adapters::StoreOptions::default()
    }
}
/// Chunks read ahead of the appends.
const CHUNKS_AHEAD: usize = 2;
/// A failpoint for the crash tests: with this variable set to N, the process aborts (no
/// destructor, no flush, as if killed) right after the N-th chunk of rows is durable, leaving
/// the import cut short at a known point.
pub const ABORT_AFTER_CHUNKS: &str = "BATTLEPLAN_FAILPOINT_IMPORT_ABORT_AFTER_CHUNKS";

/// An import, as it travels to a daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    pub kind: ImportKind,
    /// Absolute, so that a daemon running elsewhere finds the file.
    pub path: PathBuf,
    /// The file's name as the user wrote it, for messages and the `ImportStarted` event.
    pub file_name: String,
    pub format: Format,
    pub skip_bad_rows: bool,
    pub actor: String,
}

/// What became of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// The whole file (or its good rows) recorded now.
    Imported,
    /// An import of the file cut short earlier, finished now.
    Resumed,
    /// The file was imported before: nothing changed.
    AlreadyImported,
    /// Refused whole: nothing was recorded.
    Rejected,
}

/// One problem with a file, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProblemLine {
    /// The column's name (CSV: from the header; JSON lines: the key), when the problem is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The line in the file (from 1).
    pub line: u64,
    /// CSV: the field's number in the row (from 1). JSON lines: the character in the line
    /// (from 1) where the JSON breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    pub reason: String,
}

impl From<&Problem> for ProblemLine {
    fn from(problem: &Problem) -> ProblemLine {
        ProblemLine {
            column: problem.column.clone(),
            line: problem.line,
            position: problem.position,
            reason: problem.reason.clone(),
        }
    }
}

/// A bad row left out by `--skip-bad-rows`: its first problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub line: u64,
    pub reason: String,
}

impl From<&SkippedRow> for SkippedLine {
    fn from(row: &SkippedRow) -> SkippedLine {
        SkippedLine {
            column: row.column.clone(),
            line: row.line,
            reason: row.reason.clone(),
        }
    }
}

/// Rows recorded: the whole file, its good rows, or the rest of an import cut short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Imported {
    /// Rows left out (`--skip-bad-rows`).
    pub bad_rows: u64,
    /// blake3 of the file's bytes, hex.
    pub digest: String,
    /// The file's name as the user wrote it.
    pub file: String,
    #[schema(value_type = String)]
    pub kind: ImportKind,
    /// Outcomes recorded, by kind (empty for customers).
    pub kinds: BTreeMap<String, u64>,
    /// `imported` or `resumed`.
    pub outcome: ImportOutcome,
    /// Rows the stream held before this run.
    pub recorded_earlier: u64,
    pub recorded_now: u64,
    /// Good rows in the file.
    pub rows: u64,
    /// The first bad rows left out, up to the number the `ImportStarted` event lists.
    pub skipped: Vec<SkippedLine>,
    /// The import's stream (`import-<digest>`).
    pub stream: String,
    /// The first and the last stream version this run recorded.
    pub stream_versions: Vec<u64>,
}

/// The file was imported before: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlreadyImported {
    pub bad_rows: u64,
    pub digest: String,
    pub file: String,
    /// When (RFC 3339, with the people's offset).
    pub imported_at: String,
    #[schema(value_type = String)]
    pub kind: ImportKind,
    /// `already_imported`.
    pub outcome: ImportOutcome,
    /// Always 0.
    pub recorded_now: u64,
    /// Rows the earlier import recorded.
    pub rows: u64,
    pub stream: String,
}

/// Bad rows, without `--skip-bad-rows`: the file refused whole, nothing recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejected {
    pub bad_rows: u64,
    pub digest: String,
    pub file: String,
    #[schema(value_type = String)]
    pub kind: ImportKind,
    /// The first problems, where they are (all of them are counted in `problems`).
    pub listed: Vec<ProblemLine>,
    /// `rejected`.
    pub outcome: ImportOutcome,
    /// Problems in all (a bad row may have several).
    pub problems: u64,
    /// Good rows.
    pub rows: u64,
}

/// A file that cannot be imported at all (a bad header, an empty file): nothing recorded.
/// (No other field: its schema then tells it from a `Rejected`, which has these and more.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unreadable {
    pub file: String,
    #[schema(value_type = String)]
    pub kind: ImportKind,
    pub listed: Vec<ProblemLine>,
    /// `rejected`.
    pub outcome: ImportOutcome,
    pub problems: u64,
}

/// What an import came to. Each shape's fields are in alphabetical order, and `outcome` says
/// which it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ImportView {
    Imported(Imported),
    AlreadyImported(AlreadyImported),
    Rejected(Rejected),
    Unreadable(Unreadable),
}

impl ImportView {
    /// The file was refused whole (nothing recorded).
    pub fn refused(&self) -> bool {
        matches!(self, ImportView::Rejected(_) | ImportView::Unreadable(_))
    }
}

/// Why an import stops short of recording: the file refused whole (its problems, as a view to
/// show), or a refusal of the request.
#[derive(Debug)]
pub enum Stopped {
    Refused(Box<ImportView>),
    Failed(AppError),
}

impl Stopped {
    /// The answer to give instead of importing.
    pub fn into_result(self) -> Result<ImportView, AppError> {
        match self {
            Stopped::Refused(view) => Ok(*view),
            Stopped::Failed(error) => Err(error),
        }
    }
}

impl From<AppError> for Stopped {
    fn from(error: AppError) -> Stopped {
        Stopped::Failed(error)
    }
}

impl From<Failure> for Stopped {
    fn from(failure: Failure) -> Stopped {
        Stopped::Failed(match failure {
            Failure::User(message) => AppError::invalid(message),
            Failure::Conflict(message) => AppError::Conflict { message },
            Failure::Internal(message) => AppError::internal(message),
            Failure::Store(error) => AppError::from(error),
        })
    }
}

impl From<StoreError> for Stopped {
    fn from(error: StoreError) -> Stopped {
        Failure::Store(error).into()
    }
}

impl From<battleplan_core::event::upcast::PayloadError> for Stopped {
    fn from(error: battleplan_core::event::upcast::PayloadError) -> Stopped {
        Failure::from(error).into()
    }
}

/// What the first pass found.
#[derive(Debug, Clone)]
pub struct Checked {
    pub read: FileRead,
    /// Good rows.
    pub rows: u64,
    pub bad_rows: u64,
    /// Problems in all (a bad row may have several).
    pub problems: u64,
    /// The first [`LISTED_PROBLEMS`] problems.
    pub listed: Vec<Problem>,
    /// The first [`MAX_LISTED_SKIPPED`] bad rows, one line each.
    pub skipped: Vec<SkippedRow>,
    /// Well-formed rows left out after all, by their index among the well-formed rows: a
    /// customer id the file repeats, an outcome naming what the store does not have.
    pub excluded: RowSet,
    /// Outcomes: how many of each kind will be recorded.
    pub kinds: BTreeMap<&'static str, u64>,
}

/// A set of row indexes, one bit each: a million rows take 125 KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowSet {
    words: Vec<u64>,
}

impl RowSet {
    pub fn insert(&mut self, index: u64) {
        let word = usize::try_from(index / 64).unwrap_or(usize::MAX);
        if word == usize::MAX {
            return;
        }
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (index % 64);
    }

    pub fn contains(&self, index: u64) -> bool {
        usize::try_from(index / 64)
            .ok()
            .and_then(|word| self.words.get(word))
            .is_some_and(|bits| bits & (1 << (index % 64)) != 0)
    }
}

impl Checked {
    /// Leaves out the well-formed row `index` (on `line`) for `problem`, and counts it bad.
    /// Rows are excluded in the file's order, after the first pass listed its own problems:
    /// the lists are merged by line and cut again at their caps by [`Checked::merge`].
    fn exclude(&mut self, index: u64, row: &Row, problem: Problem, found: &mut LookedAt) {
        self.excluded.insert(index);
        self.rows = self.rows.saturating_sub(1);
        self.bad_rows += 1;
        self.problems += 1;
        if let Row::Outcome(outcome) = row {
            if let Some(count) = self.kinds.get_mut(outcome.outcome.as_str()) {
                *count = count.saturating_sub(1);
            }
        }
        if found.skipped.len() < MAX_LISTED_SKIPPED {
            found
                .skipped
                .push(skipped_row(problem.line, std::slice::from_ref(&problem)));
        }
        if found.listed.len() < LISTED_PROBLEMS {
            found.listed.push(problem);
        }
    }

    /// Merges what a second look found into the lists, by line, each cut at its cap.
    fn merge(&mut self, found: LookedAt) {
        self.listed.extend(found.listed);
        self.listed.sort_by_key(|problem| problem.line);
        self.listed.truncate(LISTED_PROBLEMS);
        self.skipped.extend(found.skipped);
        self.skipped.sort_by_key(|row| row.line);
        self.skipped.truncate(MAX_LISTED_SKIPPED);
    }
}

/// What a second look at the file found, in the file's order.
#[derive(Default)]
struct LookedAt {
    listed: Vec<Problem>,
    skipped: Vec<SkippedRow>,
}

/// A bad row in one line: its first problem, and how many more it has.
fn skipped_row(line: u64, problems: &[Problem]) -> SkippedRow {
    let first = problems.first();
    let mut reason = first.map(|p| p.reason.clone()).unwrap_or_default();
    if problems.len() > 1 {
        let _ = write!(
            reason,
            " (and {} more problem{} in this row)",
            problems.len() - 1,
            if problems.len() == 2 { "" } else { "s" }
        );
    }
    SkippedRow {
        line,
        column: first.and_then(|p| p.column.clone()),
        reason,
    }
}

/// Pass 1: reads the whole file, writing nothing. `Err` is the answer to give instead of
/// importing: a file that cannot be read, or bad rows without `--skip-bad-rows`.
pub fn check(request: &ImportRequest, progress: &dyn Fn(u64)) -> Result<Checked, Stopped> {
    check_until(request, progress, &|| false)
}

/// [`check`], stopping early once `stop` says so.
fn check_until(
    request: &ImportRequest,
    progress: &dyn Fn(u64),
    stop: &dyn Fn() -> bool,
) -> Result<Checked, Stopped> {
    let mut rows = 0u64;
    let mut bad_rows = 0u64;
    let mut problems = 0u64;
    let mut listed = Vec::new();
    let mut skipped = Vec::new();
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Customer ids seen, as hashes (8 bytes each, in a plain list: a hash table would take
    // three times that); a hash found twice once they are sorted marks an id that may be
    // repeated, which a second look settles exactly.
    let mut seen: Vec<u64> = Vec::new();
    let result = file::read(
        &request.path,
        request.kind,
        request.format,
        progress,
        &mut |item| {
            match item {
                Item::Row { row, .. } => {
                    rows += 1;
                    match &row {
                        Row::Customer(customer) => seen.push(id_hash(&customer.customer)),
                        Row::Outcome(outcome) => {
                            *kinds.entry(outcome.outcome.as_str()).or_default() += 1;
                        }
                    }
                }
                Item::Bad {
                    line,
                    problems: found,
                } => {
                    bad_rows += 1;
                    problems += found.len() as u64;
                    if skipped.len() < MAX_LISTED_SKIPPED {
                        skipped.push(skipped_row(line, &found));
                    }
                    let room = LISTED_PROBLEMS.saturating_sub(listed.len());
                    listed.extend(found.into_iter().take(room));
                }
            }
            !stop()
        },
    );
    let read = match result {
        Ok(read) => read,
        Err(error) => return Err(unreadable(request, error)),
    };
    seen.sort_unstable();
    let repeated: HashSet<u64> = seen
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    drop(seen);
    let mut checked = Checked {
        read,
        rows,
        bad_rows,
        problems,
        listed,
        skipped,
        excluded: RowSet::default(),
        kinds,
    };
    if !repeated.is_empty() {
        // The second look: the first line of each id whose hash came twice, and every later
        // row with the same id left out, naming both lines.
        let mut first: HashMap<String, u64> = HashMap::new();
        second_look(request, &mut checked, stop, &mut |row| {
            let Row::Customer(customer) = row else {
                return None;
            };
            if !repeated.contains(&id_hash(&customer.customer)) {
                return None;
            }
            match first.get(&customer.customer) {
                Some(line) => Some(Problem {
                    line: customer.line,
                    column: Some("id".to_string()),
                    position: None,
                    reason: format!(
                        "the customer `{}` is on line {line} too: each customer is one row of a file; merge the two rows, or import the later one in a file of its own",
                        customer.customer
                    ),
                }),
                None => {
                    first.insert(customer.customer.clone(), customer.line);
                    None
                }
            }
        })?;
    }
    if checked.bad_rows > 0 && !request.skip_bad_rows {
        return Err(Stopped::Refused(Box::new(rejected(request, &checked))));
    }
    Ok(checked)
}

/// A customer id's hash, the same in every process (std's SipHash with its fixed keys).
fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// Reads the file again and leaves out each well-formed row (not left out already) that
/// `verdict` finds a problem with. The file must read as it did in the first pass.
fn second_look(
    request: &ImportRequest,
    checked: &mut Checked,
    stop: &dyn Fn() -> bool,
    verdict: &mut dyn FnMut(&Row) -> Option<Problem>,
) -> Result<(), Stopped> {
    let mut found = LookedAt::default();
    let mut index = 0u64;
    let mut excluded = checked.excluded.clone();
    let mut outcome = Ok(());
    let result = file::read(
        &request.path,
        request.kind,
        request.format,
        &|_| {},
        &mut |item| {
            if let Item::Row { row, .. } = item {
                let at = index;
                index += 1;
                if !excluded.contains(at) {
                    if let Some(problem) = verdict(&row) {
                        excluded.insert(at);
                        checked.exclude(at, &row, problem, &mut found);
                    }
                }
            }
            !stop()
        },
    );
    match result {
        Ok(read) if read.digest == checked.read.digest => {}
        Ok(_) | Err(ReadError::File(_)) => {
            outcome = Err(Stopped::Failed(AppError::invalid(format_args!(
                "{} changed while it was being checked; run the command again",
                printable(&request.file_name)
            ))))
        }
        Err(error) => outcome = Err(unreadable(request, error)),
    }
    checked.merge(found);
    outcome
}

fn unreadable(request: &ImportRequest, error: ReadError) -> Stopped {
    let problems = match error {
        ReadError::File(problems) => problems,
        ReadError::Io(message) => return Stopped::Failed(AppError::invalid(message)),
        ReadError::Stopped => {
            return Stopped::Failed(AppError::internal("the file's reader stopped early"))
        }
    };
    Stopped::Refused(Box::new(ImportView::Unreadable(Unreadable {
        file: request.file_name.clone(),
        kind: request.kind,
        listed: problems.iter().map(ProblemLine::from).collect(),
        outcome: ImportOutcome::Rejected,
        problems: problems.len() as u64,
    })))
}

fn rejected(request: &ImportRequest, checked: &Checked) -> ImportView {
    ImportView::Rejected(Rejected {
        bad_rows: checked.bad_rows,
        digest: checked.read.digest.clone(),
        file: request.file_name.clone(),
        kind: request.kind,
        listed: checked.listed.iter().map(ProblemLine::from).collect(),
        outcome: ImportOutcome::Rejected,
        problems: checked.problems,
        rows: checked.rows,
    })
}

/// Whether the file named may be imported (a regular file within
/// [`file::MAX_FILE_BYTES`]): the command line asks before sending a request, a daemon before
/// reading what a request names.
pub fn admissible(request: &ImportRequest) -> Result<u64, AppError> {
    file::admissible(&request.path).map_err(AppError::invalid)
}

/// Sets its flag when dropped: a request the daemon drops (it is stopping) stops the reader of
/// its file at the next row instead of leaving it to read on.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Both passes, for a daemon: the file is checked as the command line checks it (a request
/// may come from anything that can write to the socket), then read on a blocking thread.
pub async fn run(ctx: &Ctx<'_>, request: ImportRequest) -> Result<ImportView, AppError> {
    admissible(&request)?;
    let checking = request.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let stopped = move || stop.load(std::sync::atomic::Ordering::Relaxed);
    let checked = match tokio::task::spawn_blocking(move || {
        check_until(&checking, &|_| {}, &stopped)
    })
    .await
    {
        Ok(Ok(checked)) => checked,
        Ok(Err(stopped)) => return stopped.into_result(),
        Err(error) => {
            return Err(AppError::internal(format_args!(
                "checking the file failed: {error}"
            )))
        }
    };
    record(ctx, &request, checked, None).await
}

/// Outcomes: leaves out (or, without `--skip-bad-rows`, rejects the file for) each row naming a
/// customer the book lacks, a campaign or reach-out no plan had, or an instant after now. The
/// answer to give instead of importing, if any.
async fn screen_outcomes(
    runtime: &Runtime,
    request: &ImportRequest,
    checked: &mut Checked,
) -> Result<Option<Stopped>, Failure> {
    let (reach_outs, offers) = known_reach_outs(runtime).await?;
    let now = runtime.clock.now();
    let zone = crate::app::campaigns::people_zone(runtime)
        .await
        .map_err(handle_failure)?;
    // The book stays locked while the file is read: a daemon's other readers of the book wait
    // for this look, which is one streaming pass over an outcomes file.
    let mut book = runtime.customers.clone().lock_owned().await;
    crate::kernel::plans::catch_up_book(runtime.store.as_ref(), &mut book)
        .await
        .map_err(handle_failure)?;
    let reading = request.clone();
    let mut screened = checked.clone();
    let result = tokio::task::spawn_blocking(move || {
        let known = Known {
            book: &book,
            reach_outs: &reach_outs,
            offers: &offers,
            now,
            zone,
        };
        let looked = second_look(&reading, &mut screened, &|| false, &mut |row| {
            let Row::Outcome(outcome) = row else {
                return None;
            };
            let mut errors = unknown_in_outcome(outcome, &known).into_iter();
            let first = errors.next()?;
            let more = errors.count();
            let mut reason = first.reason;
            if more > 0 {
                let _ = write!(
                    reason,
                    " (and {more} more problem{} in this row)",
                    if more == 1 { "" } else { "s" }
                );
            }
            Some(Problem {
                line: outcome.line,
                column: Some(first.column),
                position: None,
                reason,
            })
        });
        drop(book);
        looked.map(|()| screened)
    })
    .await
    .map_err(|error| Failure::Internal(format!("checking the outcomes failed: {error}")))?;
    match result {
        Ok(screened) => {
            *checked = screened;
            if checked.bad_rows > 0 && !request.skip_bad_rows {
                return Ok(Some(Stopped::Refused(Box::new(rejected(request, checked)))));
            }
            Ok(None)
        }
        Err(stopped) => Ok(Some(stopped)),
    }
}

fn handle_failure(error: crate::kernel::runtime::HandleError) -> Failure {
    match error {
        crate::kernel::runtime::HandleError::Store(error) => Failure::Store(error),
        other => Failure::Internal(other.to_string()),
    }
}

/// Every campaign's reach-outs and the names of its offers, from every version of its plan: an
/// outcome may come back for a reach-out (or an order use an offer) a later revision removed.
async fn known_reach_outs(
    runtime: &Runtime,
) -> Result<
    (
        BTreeMap<String, BTreeSet<String>>,
        BTreeMap<String, OfferNames>,
    ),
    Failure,
> {
    let mut campaigns = crate::kernel::projection::Campaigns::load(runtime.store.as_ref())
        .await
        .map_err(handle_failure)?;
    campaigns
        .catch_up_in_memory(runtime.store.as_ref())
        .await
        .map_err(handle_failure)?;
    let mut known = BTreeMap::new();
    let mut offers = BTreeMap::new();
    for id in campaigns.states.keys() {
        let stream =
            campaign::stream_of(id).map_err(|error| Failure::Internal(error.to_string()))?;
        let mut reach_outs = BTreeSet::new();
        let mut names = OfferNames::default();
        let mut applied = false;
        let mut version = StreamVersion::NONE;
        loop {
            let events = runtime
                .store
                .read_stream(&stream, version.next(), 1_000)
                .await?;
            let Some(last) = events.last() else { break };
            version = last.version;
            for event in &events {
                let source = match CampaignEvent::decode(event)? {
                    Some(CampaignEvent::PlanApplied(applied)) => applied.source,
                    Some(CampaignEvent::PlanRevised(revised)) => revised.source,
                    _ => continue,
                };
                applied = true;
                if let Some(plan) = plan::check(source.as_bytes()).plan {
                    names.add(&plan.offers);
                    reach_outs.extend(plan.reach_outs.into_iter().map(|reach_out| reach_out.id));
                }
            }
        }
        if applied {
            known.insert(id.clone(), reach_outs);
            offers.insert(id.clone(), names);
        }
    }
    Ok((known, offers))
}

/// The names each campaign's orders may give its offers by, from every version of its plan
/// (see [`known_reach_outs`]): what `POST /api/v1/outcomes` checks an order's offer against.
pub(crate) async fn known_offers(
    runtime: &Runtime,
) -> Result<BTreeMap<String, OfferNames>, AppError> {
    match known_reach_outs(runtime).await {
        Ok((_, offers)) => Ok(offers),
        Err(Failure::Store(error)) => Err(AppError::from(error)),
        Err(Failure::User(message) | Failure::Conflict(message) | Failure::Internal(message)) => {
            Err(AppError::internal(message))
        }
    }
}

/// Why recording stopped.
enum Failure {
    /// The user's to fix.
    User(String),
    /// Another import of the same file under way.
    Conflict(String),
    /// Ours.
    Internal(String),
    /// The store's: damaged, or its disk failing.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Store(error)
    }
}

impl From<battleplan_core::event::upcast::PayloadError> for Failure {
    fn from(error: battleplan_core::event::upcast::PayloadError) -> Failure {
        Failure::Internal(error.to_string())
    }
}

/// What the stream held before this run.
enum Found {
    Nothing,
    Unfinished {
        started: ImportStarted,
        event: EventId,
        version: StreamVersion,
    },
    Finished {
        rows: u64,
        at: DateTime<Utc>,
    },
}

/// One append's worth of rows.
struct Chunk {
    /// The index (from 0, among the good rows) of its first row.
    first: u64,
    rows: Vec<Row>,
}

/// What the second pass's reader saw.
struct Reread {
    read: FileRead,
    rows: u64,
    bad_rows: u64,
}

/// Pass 2: records the checked file, or finishes an import of it cut short, or finds it done.
/// `progress`, when given, is moved along the file's bytes.
pub async fn record(
    ctx: &Ctx<'_>,
    request: &ImportRequest,
    mut checked: Checked,
    progress: Option<indicatif::ProgressBar>,
) -> Result<ImportView, AppError> {
    if let Some(bar) = &progress {
        bar.set_position(0);
        bar.set_message("recording");
    }
    match recording(ctx.runtime, request, &mut checked, progress).await {
        Ok(view) => Ok(view),
        Err(stopped) => stopped.into_result(),
    }
}

async fn recording(
    runtime: &Runtime,
    request: &ImportRequest,
    checked: &mut Checked,
    progress: Option<indicatif::ProgressBar>,
) -> Result<ImportView, Stopped> {
    let digest = checked.read.digest.clone();
    let stream = import_stream(&digest).map_err(Failure::Internal)?;
    let found = find(runtime, &stream).await?;
    if let Found::Finished { rows, at } = found {
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        let zone =
            crate::app::campaigns::people_zone(runtime)
                .await
                .map_err(|error| match error {
                    crate::kernel::runtime::HandleError::Store(error) => Failure::Store(error),
                    other => Failure::Internal(other.to_string()),
                })?;
        return Ok(already(request, checked, &stream, rows, at, zone));
    }
    if request.kind == ImportKind::Outcomes {
        if let Some(rejection) = screen_outcomes(runtime, request, checked).await? {
            if let Some(bar) = &progress {
                bar.finish_and_clear();
            }
            return Err(rejection);
        }
    }
    let checked = &*checked;
    let (started, started_event, mut version, resumed) = match found {
        Found::Finished { .. } => {
            return Err(Stopped::from(Failure::Internal(
                "the import was found finished".to_string(),
            )))
        }
        Found::Unfinished {
            started,
            event,
            version,
        } => {
            if started.kind != request.kind {
                return Err(Stopped::from(Failure::User(format!(
                    "{} was started as an import of {}; import it with `battleplan {} import`",
                    printable(&request.file_name),
                    started.kind.as_str(),
                    started.kind.as_str()
                ))));
            }
            if started.rows != checked.rows {
                return Err(Stopped::from(Failure::User(format!(
                    "the import of this file begun earlier counted {} rows to record, now {}: the customers or campaigns its outcomes name changed since, or this battleplan reads the file differently; it cannot be resumed",
                    started.rows, checked.rows
                ))));
            }
            (started, event, version, true)
        }
        Found::Nothing => {
            let started = ImportStarted {
                kind: request.kind,
                file: request.file_name.clone(),
                digest: digest.clone(),
                rows: checked.rows,
                skipped: checked.skipped.clone(),
                skipped_total: checked.bad_rows,
            };
            let now = runtime.clock.now();
            let event = EventId(runtime.ids.next_id(now));
            let new = CustomerEvent::ImportStarted(started.clone()).encode(event)?;
            let words = format!("import {digest} start");
            let version = append(
                runtime,
                request,
                &stream,
                StreamVersion::NONE,
                vec![new],
                &words,
                None,
            )
            .await?;
            // A repeated command id answers with the first start's event: chain to that one.
            let first = runtime
                .store
                .read_stream(&stream, StreamVersion(1), 1)
                .await?
                .into_iter()
                .next()
                .map_or(event, |recorded| recorded.event_id);
            (started, first, version, false)
        }
    };
    let already_recorded = version.0.saturating_sub(1);
    let first_new = version.next();

    // The reader runs on a blocking thread and hands over chunks through a short queue, so at
    // most a few chunks are in memory whatever the file's length.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Chunk>(CHUNKS_AHEAD);
    let reading = request.clone();
    let bar = progress.clone();
    let excluded = checked.excluded.clone();
    let reader = tokio::task::spawn_blocking(move || {
        reread(&reading, &excluded, already_recorded, sender, bar)
    });
    let abort_after = crate::kernel::failpoint::number(ABORT_AFTER_CHUNKS);
    let mut appended = 0u64;
    let mut failure = None;
    while let Some(chunk) = receiver.recv().await {
        let count = chunk.rows.len();
        let now = runtime.clock.now();
        let mut events = Vec::with_capacity(count);
        for row in chunk.rows {
            let event = EventId(runtime.ids.next_id(now));
            match row.into_event().encode(event) {
                Ok(new) => events.push(new),
                Err(error) => {
                    failure = Some(Failure::from(error));
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
        let words = format!("import {digest} chunk {}", chunk.first);
        match append(
            runtime,
            request,
            &stream,
            version,
            events,
            &words,
            Some(started_event),
        )
        .await
        {
            Ok(last) => {
                version = last;
                appended += 1;
                if abort_after == Some(appended) {
                    std::process::abort();
                }
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    // Stops the reader if it is still going.
    drop(receiver);
    let reread = reader.await;
    if let Some(failure) = failure {
        return Err(failure.into());
    }
    let reread = match reread {
        Ok(Ok(reread)) => reread,
        Ok(Err(ReadError::Io(message))) => return Err(Stopped::from(Failure::User(message))),
        Ok(Err(_)) => return Err(Stopped::from(Failure::User(changed(request, &stream)))),
        Err(error) => {
            return Err(Stopped::from(Failure::Internal(format!(
                "reading the file failed: {error}"
            ))))
        }
    };
    if reread.read.digest != digest
        || reread.rows != checked.rows
        || reread.bad_rows != checked.bad_rows
    {
        return Err(Stopped::from(Failure::User(changed(request, &stream))));
    }
    let recorded = version.0.saturating_sub(1);
    if recorded != started.rows {
        return Err(Stopped::from(Failure::Internal(format!(
            "the stream {stream} holds {recorded} rows after the import, the file has {}",
            started.rows
        ))));
    }
    let finished = ImportFinished {
        kind: request.kind,
        digest: digest.clone(),
        rows: started.rows,
        skipped: checked.bad_rows,
    };
    let now = runtime.clock.now();
    let new = CustomerEvent::ImportFinished(finished).encode(EventId(runtime.ids.next_id(now)))?;
    let words = format!("import {digest} finish");
    let last = append(
        runtime,
        request,
        &stream,
        version,
        vec![new],
        &words,
        Some(started_event),
    )
    .await?;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    Ok(imported(
        request,
        checked,
        &stream,
        Recorded {
            resumed,
            earlier: already_recorded,
            first_new,
            last,
        },
    ))
}

fn changed(request: &ImportRequest, stream: &StreamId) -> String {
    format!(
        "{} changed while it was being imported; the import {stream} is left unfinished. Put the file back as it was and run the same command to finish it, or import the new file",
        printable(&request.file_name)
    )
}

/// The stream's first and last events say whether the file was imported, in part or whole.
async fn find(runtime: &Runtime, stream: &StreamId) -> Result<Found, Failure> {
    let version = runtime.store.stream_version(stream).await?;
    if version == StreamVersion::NONE {
        return Ok(Found::Nothing);
    }
    let first = runtime
        .store
        .read_stream(stream, StreamVersion(1), 1)
        .await?;
    let last = runtime.store.read_stream(stream, version, 1).await?;
    let (Some(first), Some(last)) = (first.first(), last.first()) else {
        return Err(Failure::Internal(format!(
            "the stream {stream} is at version {version} but its events cannot be read"
        )));
    };
    let Some(CustomerEvent::ImportStarted(started)) = CustomerEvent::decode(first)? else {
        return Err(Failure::Internal(format!(
            "the stream {stream} does not begin with ImportStarted"
        )));
    };
    if let Some(CustomerEvent::ImportFinished(finished)) = CustomerEvent::decode(last)? {
        return Ok(Found::Finished {
            rows: finished.rows,
            at: last.recorded_at,
        });
    }
    Ok(Found::Unfinished {
        started,
        event: first.event_id,
        version,
    })
}

/// Appends one command's events at exactly `after`, with the command id derived from `words`;
/// returns the stream's version after them. A repeated command id must have recorded exactly
/// these positions, or the stream is not what this import expects.
async fn append(
    runtime: &Runtime,
    request: &ImportRequest,
    stream: &StreamId,
    after: StreamVersion,
    events: Vec<NewEvent>,
    words: &str,
    causation: Option<EventId>,
) -> Result<StreamVersion, Failure> {
    let count = events.len() as u64;
    let expected = if after == StreamVersion::NONE {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(after)
    };
    let append = Append {
        stream: stream.clone(),
        expected,
        events,
        metadata: Metadata {
            actor: request.actor.clone(),
            command_id: CommandId(derived_command_id(words)),
            causation_id: causation.map(|event| event.0),
            correlation_id: None,
            reason: None,
        },
        recorded_at: runtime.clock.now(),
    };
    match runtime.append_in_order(append).await {
        Ok(outcome) => {
            if outcome.first_version != after.next()
                || outcome.last_version != StreamVersion(after.0 + count)
            {
                return Err(Failure::Internal(format!(
                    "the stream {stream} recorded `{words}` earlier at versions {} to {}, not after {after}",
                    outcome.first_version, outcome.last_version
                )));
            }
            Ok(outcome.last_version)
        }
        Err(HandleError::Store(StoreError::Conflict { actual, .. })) => Err(Failure::Conflict(format!(
            "another import of {} is under way (its stream {stream} moved to version {actual}); let it finish, then run this command again to check",
            printable(&request.file_name)
        ))),
        Err(HandleError::Store(other)) => Err(other.into()),
        Err(HandleError::Rejected(rejection)) => Err(Failure::User(rejection.0)),
        Err(other) => Err(Failure::Internal(other.to_string())),
    }
}

/// The second pass's reader: sends the good rows after the first `skip` in chunks; cuts chunks
/// at the same rows whether or not it skips, so a resumed import appends what the first run
/// would have.
fn reread(
    request: &ImportRequest,
    excluded: &RowSet,
    skip: u64,
    sender: tokio::sync::mpsc::Sender<Chunk>,
    progress: Option<indicatif::ProgressBar>,
) -> Result<Reread, ReadError> {
    let mut rows = 0u64;
    let mut well_formed = 0u64;
    let mut bad_rows = 0u64;
    let mut chunk = Chunk {
        first: 0,
        rows: Vec::new(),
    };
    let mut chunk_rows = 0usize;
    let mut chunk_bytes = 0u64;
    let tick = |bytes: u64| {
        if let Some(bar) = &progress {
            bar.set_position(bytes);
        }
    };
    let read = file::read(
        &request.path,
        request.kind,
        request.format,
        &tick,
        &mut |item| {
            let (row, bytes) = match item {
                Item::Row { row, bytes } => (row, bytes),
                Item::Bad { .. } => {
                    bad_rows += 1;
                    return true;
                }
            };
            well_formed += 1;
            if excluded.contains(well_formed - 1) {
                bad_rows += 1;
                return true;
            }
            let index = rows;
            rows += 1;
            chunk_rows += 1;
            chunk_bytes += bytes;
            if index >= skip {
                if chunk.rows.is_empty() {
                    chunk.first = index;
                }
                chunk.rows.push(row);
            }
            if chunk_rows >= CHUNK_ROWS || chunk_bytes >= CHUNK_BYTES {
                chunk_rows = 0;
                chunk_bytes = 0;
                if !chunk.rows.is_empty() {
                    let full = std::mem::replace(
                        &mut chunk,
                        Chunk {
                            first: 0,
                            rows: Vec::new(),
                        },
                    );
                    // The appends stopped: stop reading.
                    if sender.blocking_send(full).is_err() {
                        return false;
                    }
                }
            }
            true
        },
    )?;
    if !chunk.rows.is_empty() && sender.blocking_send(chunk).is_err() {
        return Err(ReadError::Stopped);
    }
    Ok(Reread {
        read,
        rows,
        bad_rows,
    })
}

fn already(
    request: &ImportRequest,
    checked: &Checked,
    stream: &StreamId,
    rows: u64,
    at: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> ImportView {
    ImportView::AlreadyImported(AlreadyImported {
        bad_rows: checked.bad_rows,
        digest: checked.read.digest.clone(),
        file: request.file_name.clone(),
        imported_at: local_rfc3339(zone, at),
        kind: request.kind,
        outcome: ImportOutcome::AlreadyImported,
        recorded_now: 0,
        rows,
        stream: stream.as_str().to_string(),
    })
}

struct Recorded {
    resumed: bool,
    /// Rows the stream held before this run.
    earlier: u64,
    first_new: StreamVersion,
    last: StreamVersion,
}

fn imported(
    request: &ImportRequest,
    checked: &Checked,
    stream: &StreamId,
    done: Recorded,
) -> ImportView {
    ImportView::Imported(Imported {
        bad_rows: checked.bad_rows,
        digest: checked.read.digest.clone(),
        file: request.file_name.clone(),
        kind: request.kind,
        kinds: checked
            .kinds
            .iter()
            .map(|(kind, count)| ((*kind).to_string(), *count))
            .collect(),
        outcome: if done.resumed {
            ImportOutcome::Resumed
        } else {
            ImportOutcome::Imported
        },
        recorded_earlier: done.earlier,
        recorded_now: checked.rows - done.earlier.min(checked.rows),
        rows: checked.rows,
        skipped: checked.skipped.iter().map(SkippedLine::from).collect(),
        stream: stream.as_str().to_string(),
        stream_versions: vec![done.first_new.0, done.last.0],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The socket carries a view as JSON: each shape must come back as itself (the enum is
    /// untagged, so a shape read as another would lose fields silently).
    #[test]
    fn every_import_view_comes_back_from_json_as_itself() {
        let problem = ProblemLine {
            column: Some("id".into()),
            line: 3,
            position: None,
            reason: "empty".into(),
        };
        let views = [
            ImportView::Imported(Imported {
                bad_rows: 1,
                digest: "d".into(),
                file: "f.csv".into(),
                kind: ImportKind::Outcomes,
                kinds: BTreeMap::from([("delivered".to_string(), 2)]),
                outcome: ImportOutcome::Resumed,
                recorded_earlier: 1,
                recorded_now: 1,
                rows: 2,
                skipped: vec![SkippedLine {
                    column: None,
                    line: 4,
                    reason: "bad".into(),
                }],
                stream: "import-d".into(),
                stream_versions: vec![3, 4],
            }),
            ImportView::AlreadyImported(AlreadyImported {
                bad_rows: 0,
                digest: "d".into(),
                file: "f.csv".into(),
                imported_at: "2026-09-01T08:00:00+08:00".into(),
                kind: ImportKind::Customers,
                outcome: ImportOutcome::AlreadyImported,
                recorded_now: 0,
                rows: 2,
                stream: "import-d".into(),
            }),
            ImportView::Rejected(Rejected {
                bad_rows: 1,
                digest: "d".into(),
                file: "f.csv".into(),
                kind: ImportKind::Customers,
                listed: vec![problem.clone()],
                outcome: ImportOutcome::Rejected,
                problems: 1,
                rows: 1,
            }),
            ImportView::Unreadable(Unreadable {
                file: "f.csv".into(),
                kind: ImportKind::Customers,
                listed: vec![problem],
                outcome: ImportOutcome::Rejected,
                problems: 1,
            }),
        ];
        for view in views {
            let text = serde_json::to_string(&crate::app::Response::Import(view.clone())).unwrap();
            let back: crate::app::Response = serde_json::from_str(&text).unwrap();
            match back {
                crate::app::Response::Import(back) => assert_eq!(back, view, "{text}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
