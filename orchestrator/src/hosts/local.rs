//! A command run without a daemon: asks the daemon when one runs (it holds the store), or opens
//! the store for this one request, answers it with `app`, and closes the store once the answer
//! has been said. The fronts never open a store; they come here.
//!
//! What this host says itself (no store in the data directory, a store that cannot be opened, a
//! daemon that stopped while answering) is a [`Refusal`]: its words name the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use battleplan_adapters::sled_store::ReadOnlyCopy;
use battleplan_adapters::system::{RandomIds, SystemClock};
use battleplan_core::context::{Clock, ManualClock};
use battleplan_core::event::StoreError;
use chrono::{DateTime, Utc};

use crate::app::archive::{self, ExportView, Untrailered};
use crate::app::import::{self, ImportRequest};
use crate::app::{self, Ctx, Outcome, Request, Response};
use crate::fronts::control;
use crate::hosts::daemon::{self, Opened, OpenedCopy, Refusal};
use crate::kernel::runtime::Runtime;

/// A command's answer: a use case's outcome (for `present::render`), or this host's refusal to
/// run it. What is left once it is said (closing the store, settling a rehearsal's mark) is
/// done when the answer is dropped, after the front has printed it: the words come before the
/// store closes, whatever closing it takes.
pub struct Answer {
    pub outcome: Result<Outcome, Refusal>,
    #[allow(dead_code, reason = "held for what dropping it does")]
    closing: Option<Closing>,
}

impl Answer {
    fn said(outcome: Outcome) -> Answer {
        Answer {
            outcome: Ok(outcome),
            closing: None,
        }
    }

    fn refused(refusal: Refusal) -> Answer {
        Answer {
            outcome: Err(refusal),
            closing: None,
        }
    }

    fn user(message: impl std::fmt::Display) -> Answer {
        Answer::refused(Refusal::user(message.to_string()))
    }
}

/// A store opened for one request, closed in this order: the runtime (and the store), a
/// read-only copy's files, the rehearsal's mark (taken back when the command failed with
/// nothing recorded), the async runtime.
struct Closing {
    runtime: Option<Runtime>,
    copy: Option<ReadOnlyCopy>,
    mark: Option<Settle>,
    tokio: Option<tokio::runtime::Runtime>,
}

struct Settle {
    mark: Mark,
    succeeded: bool,
    events: Option<u64>,
}

impl Drop for Closing {
    fn drop(&mut self) {
        drop(self.runtime.take());
        drop(self.copy.take());
        if let Some(settle) = self.mark.take() {
            settle.mark.settle(settle.succeeded, settle.events);
        }
        drop(self.tokio.take());
    }
}

fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Whether a command did what it was asked, as its exit code tells (a file refused whole did
/// not); asked only of a command that left a rehearsal's mark.
fn succeeded(mark: &Mark, outcome: &Outcome) -> bool {
    mark.0.is_none() || crate::present::render(outcome, false).code == 0
}

/// How to try a command again safely, for a message about a daemon that did not answer.
fn again(remote: &Request) -> String {
    match remote.command_id() {
        Some(id) => format!(
            "run the command again with --command-id {id}: it is recorded once whether or not the daemon recorded it"
        ),
        None => "try again".to_string(),
    }
}

/// A rehearsal must not spoil a real store (docs/store.md): a command that records under a
/// rehearsal clock is refused on a store that was not started as a rehearsal. One that starts
/// a new store gets the path of the mark to leave in it ([`Mark`]). The system clock may write
/// anywhere.
fn rehearsal_rule(data: &Path, rehearsal: bool) -> Result<Option<PathBuf>, String> {
    if !rehearsal {
        return Ok(None);
    }
    let mark = data.join(daemon::REHEARSAL_MARK);
    if data.join("db").is_file() {
        if mark.is_file() {
            return Ok(None);
        }
        return Err(format!(
            "{} holds real history (its store was not started under --clock-at or run --simulate): a rehearsal there would mix simulated events and sends into the real record; rehearse in a data directory of its own, e.g. --data ./rehearsal",
            data.display()
        ));
    }
    Ok(Some(mark))
}

/// `battleplan run` under a rehearsal clock (`rehearsal`): refused on a store that holds real
/// history; a store that exists gets its mark before the daemon records (`run` does not create
/// a store itself). `Err` in words.
pub fn before_run(data: &Path, rehearsal: bool) -> Result<(), String> {
    let mark = rehearsal_rule(data, rehearsal)?;
    Mark(mark).leave(data);
    Ok(())
}

/// The rehearsal mark of a store a rehearsal command is creating: written as soon as the store
/// exists, before anything is recorded (a command cut short after recording leaves a rehearsal's
/// store, which the same command may then finish), and taken back when the command failed with
/// nothing recorded, so that a failed rehearsal cannot open to rehearsals the store a real
/// command later fills.
struct Mark(Option<PathBuf>);

impl Mark {
    /// Leaves the mark, once the store has been created.
    fn leave(&self, data: &Path) {
        let Some(mark) = &self.0 else {
            return;
        };
        if !data.join("db").is_file() {
            return;
        }
        if let Err(error) = std::fs::write(
            mark,
            "started under a rehearsal clock (--clock-at, run --simulate)\n",
        ) {
            eprintln!(
                "battleplan: warning: cannot mark {} as a rehearsal ({error}); rehearsal clocks will be refused on it",
                data.display()
            );
        }
    }

    /// Takes the mark back when the command failed and the store holds no event.
    fn settle(self, succeeded: bool, events: Option<u64>) {
        if let (Some(mark), false, Some(0)) = (self.0, succeeded, events) {
            let _ = std::fs::remove_file(mark);
        }
    }
}

/// Whether a command records something (and so falls under [`rehearsal_rule`]).
fn records(remote: &Request) -> bool {
    matches!(
        remote,
        Request::Act { .. }
            | Request::ApplyPlan { .. }
            | Request::Import(_)
            | Request::ImportMetrics(_)
            | Request::TaskDone(_)
            | Request::ChannelResume { .. }
    )
}

fn clock(clock_at: Option<DateTime<Utc>>) -> Arc<dyn Clock> {
    match clock_at {
        Some(at) => Arc::new(ManualClock::new(at)),
        None => Arc::new(SystemClock),
    }
}

/// What a daemon that answered on a second try said, or why it did not.
fn ask_daemon(data: &Path, remote: &Request, again: &str) -> Answer {
    match control::call(data, remote) {
        Ok(Some(outcome)) => Answer::said(outcome),
        Ok(None) => Answer::user(format_args!(
            "the daemon on {} stopped while answering; {again}",
            data.display()
        )),
        Err(message) => Answer::user(format_args!("{message}; {again}")),
    }
}

/// Asks the running daemon, or, when none runs, opens the store and answers here.
pub fn remote_or_local(
    data: &Path,
    clock_at: Option<DateTime<Utc>>,
    remote: Request,
) -> anyhow::Result<Answer> {
    match control::call(data, &remote) {
        Ok(Some(outcome)) => return Ok(Answer::said(outcome)),
        Ok(None) => {}
        Err(message) => return Ok(Answer::user(format_args!("{message}; {}", again(&remote)))),
    }
    let mark = if records(&remote) {
        match rehearsal_rule(data, clock_at.is_some()) {
            Ok(mark) => mark,
            Err(message) => return Ok(Answer::user(message)),
        }
    } else {
        None
    };
    let creates = matches!(remote, Request::ApplyPlan { .. });
    if !creates && !data.join("db").is_file() {
        return Ok(Answer::user(format_args!(
            "there is no battleplan store in {} (set --data or BATTLEPLAN_DATA to the data directory, or apply a plan first)",
            data.display()
        )));
    }
    if creates {
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating the data directory {}", data.display()))?;
    }
    let store = match daemon::open_store(data) {
        Opened::Store(store) => store,
        Opened::Daemon => return Ok(ask_daemon(data, &remote, &again(&remote))),
        Opened::Refused(refusal) => return Ok(Answer::refused(refusal)),
    };
    let mark = Mark(mark);
    mark.leave(data);
    let runtime = Runtime::new(Arc::new(store), clock(clock_at), Arc::new(RandomIds));
    // `channel test` without the daemon: the plan's real channels, made in this process, held
    // while the request runs.
    let routes: Arc<dyn crate::kernel::runtime::ChannelTest> = Arc::new(
        crate::hosts::channels::Routes::for_tests(runtime.clone(), None),
    );
    let _ = runtime.channels.set(Arc::downgrade(&routes));
    let tokio = tokio()?;
    let outcome = tokio.block_on(app::execute(&runtime, remote));
    drop(routes);
    let events = tokio.block_on(runtime.store.head()).ok().map(|head| head.0);
    let succeeded = succeeded(&mark, &outcome);
    Ok(Answer {
        closing: Some(Closing {
            runtime: Some(runtime),
            copy: None,
            mark: Some(Settle {
                mark,
                succeeded,
                events,
            }),
            tokio: Some(tokio),
        }),
        outcome: Ok(outcome),
    })
}

/// `customers import` / `outcomes import`. A running daemon imports the file itself (it holds
/// the store). Without one, the file is checked before the store is touched, so a rejected file
/// leaves no trace (not even a data directory); then it is recorded here, with a progress bar
/// when standard error is a terminal.
pub fn import(
    data: &Path,
    clock_at: Option<DateTime<Utc>>,
    request: ImportRequest,
) -> anyhow::Result<Answer> {
    // A regular file within the size an import reads; the daemon checks again.
    if let Err(error) = import::admissible(&request) {
        return Ok(Answer::said(Err(error)));
    }
    let remote = Request::Import(request.clone());
    match control::call(data, &remote) {
        Ok(Some(outcome)) => return Ok(Answer::said(outcome)),
        Ok(None) => {}
        Err(message) => return Ok(Answer::user(message)),
    }
    let size = std::fs::metadata(&request.path).map_or(0, |metadata| metadata.len());
    let bar = progress_bar(size, "checking");
    let clear = || {
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
    };
    let tick = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.set_position(bytes);
        }
    };
    let checked = match import::check(&request, &tick) {
        Ok(checked) => checked,
        Err(stopped) => {
            clear();
            return Ok(Answer::said(stopped.into_result().map(Response::Import)));
        }
    };
    let mark = match rehearsal_rule(data, clock_at.is_some()) {
        Ok(mark) => mark,
        Err(message) => {
            clear();
            return Ok(Answer::user(message));
        }
    };
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let store = match daemon::open_store_with(data, import::store_options()) {
        Opened::Store(store) => store,
        // A daemon started meanwhile: it imports (and checks again).
        Opened::Daemon => {
            clear();
            return Ok(match control::call(data, &remote) {
                Ok(Some(outcome)) => Answer::said(outcome),
                Ok(None) => Answer::user(format_args!(
                    "the daemon on {} stopped while answering; try again",
                    data.display()
                )),
                Err(message) => Answer::user(message),
            });
        }
        Opened::Refused(refusal) => return Ok(Answer::refused(refusal)),
    };
    let mark = Mark(mark);
    mark.leave(data);
    let runtime = Runtime::new(Arc::new(store), clock(clock_at), Arc::new(RandomIds));
    let tokio = tokio()?;
    let outcome = tokio
        .block_on(import::record(&Ctx::new(&runtime), &request, checked, bar))
        .map(Response::Import);
    let events = tokio.block_on(runtime.store.head()).ok().map(|head| head.0);
    let succeeded = succeeded(&mark, &outcome);
    Ok(Answer {
        closing: Some(Closing {
            runtime: Some(runtime),
            copy: None,
            mark: Some(Settle {
                mark,
                succeeded,
                events,
            }),
            tokio: Some(tokio),
        }),
        outcome: Ok(outcome),
    })
}

fn no_store(data: &Path) -> Option<Answer> {
    (!data.join("db").is_file()).then(|| {
        Answer::user(format_args!(
            "there is no battleplan store in {} (set --data or BATTLEPLAN_DATA to the data directory)",
            data.display()
        ))
    })
}

/// `battleplan audit verify`: through the daemon when one runs (it holds the store), or here on
/// a read-only copy of the store's files, so that nothing of the store changes and a store on
/// read-only media is checked as well (`SledEventLog::open_read_only`).
pub fn audit_verify(data: &Path) -> anyhow::Result<Answer> {
    if let Some(answer) = no_store(data) {
        return Ok(answer);
    }
    let copy = match daemon::open_read_only(data) {
        OpenedCopy::Store(copy) => copy,
        OpenedCopy::Daemon => return Ok(ask_daemon(data, &Request::AuditVerify, "try again")),
        OpenedCopy::Refused(refusal) => return Ok(Answer::refused(refusal)),
    };
    let store = Arc::new(copy.store().clone());
    let runtime = Runtime::new(store.clone(), Arc::new(SystemClock), Arc::new(RandomIds))
        .checking_chain(store);
    let tokio = tokio()?;
    let outcome = tokio.block_on(app::execute(&runtime, Request::AuditVerify));
    Ok(Answer {
        outcome: Ok(outcome),
        closing: Some(Closing {
            runtime: Some(runtime),
            copy: Some(copy),
            mark: None,
            tokio: Some(tokio),
        }),
    })
}

/// An export that failed reading the store: damage is refused as every command refuses it.
fn export_failed(data: &Path, error: anyhow::Error) -> anyhow::Result<Answer> {
    match error.downcast_ref::<StoreError>() {
        Some(store) => Ok(Answer::refused(daemon::refusal(data, store))),
        None => Err(error),
    }
}

/// `battleplan export`: to the file `out` (whole or not at all), or to `stdout` when none is
/// given. With a daemon running (which holds the store), the daemon writes the file (standard
/// output is refused: a log is not one reply line); else the export reads a read-only copy of
/// the store.
pub fn export(
    data: &Path,
    as_of: Option<DateTime<Utc>>,
    out: Option<&Path>,
    stdout: &mut dyn Write,
) -> anyhow::Result<Answer> {
    if let Some(answer) = no_store(data) {
        return Ok(answer);
    }
    // Checked before the store is opened, so that a bad --out leaves nothing behind.
    let directory = match out.map(archive::export_directory) {
        Some(Ok(directory)) => Some(directory),
        Some(Err(message)) => return Ok(Answer::user(message)),
        None => None,
    };
    // A running daemon writes the file itself.
    if let Some(out) = out {
        let absolute = std::path::absolute(out)
            .with_context(|| format!("finding the absolute path of {}", out.display()))?;
        let remote = Request::Export {
            out: absolute,
            file_name: out.display().to_string(),
            as_of,
        };
        match control::call(data, &remote) {
            Ok(Some(outcome)) => return Ok(Answer::said(outcome)),
            Ok(None) => {}
            Err(message) => return Ok(Answer::user(format_args!("{message}; try again"))),
        }
    }
    // A read-only copy: an export changes nothing in the store, which may be read-only.
    let copy = match daemon::open_read_only(data) {
        OpenedCopy::Store(copy) => copy,
        OpenedCopy::Daemon => {
            return Ok(Answer::user(format_args!(
                "a daemon (battleplan run) holds the store in {}; it writes an export to a file, not to standard output: give --out FILE",
                data.display()
            )))
        }
        OpenedCopy::Refused(refusal) => return Ok(Answer::refused(refusal)),
    };
    let store = copy.store();
    let tokio = tokio()?;
    let (file, written) = match (out, directory) {
        (Some(out), Some(directory)) => (
            Some(out.display().to_string()),
            tokio.block_on(archive::export_file(store, as_of, out, &directory)),
        ),
        _ => {
            let mut writer = std::io::BufWriter::new(stdout);
            let written = tokio.block_on(archive::export(store, as_of, &mut writer));
            (None, written)
        }
    };
    let summary = match written {
        Ok(summary) => summary,
        Err(error) => return export_failed(data, error),
    };
    let view = ExportView::of(&summary, file, as_of);
    Ok(Answer {
        outcome: Ok(Ok(Response::Export(view))),
        closing: Some(Closing {
            runtime: None,
            copy: Some(copy),
            mark: None,
            tokio: Some(tokio),
        }),
    })
}

/// `battleplan import FILE`: the export restored into a new store in `data`, all or nothing.
pub fn restore(data: &Path, file: &Path, untrailered: Untrailered) -> anyhow::Result<Answer> {
    let tokio = tokio()?;
    let outcome = tokio
        .block_on(archive::restore(file, data, untrailered))
        .map(Response::Restored);
    Ok(Answer::said(outcome))
}

/// One write-ahead file of the store, as `store check` found it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreFile {
    pub name: &'static str,
    /// Absent when the file is missing.
    pub bytes: Option<u64>,
    pub generation: Option<u64>,
    pub records: usize,
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
    /// `missing`, `zeros` (nothing after the records), `left over` (what a write cut short by
    /// a crash, never acknowledged, or an earlier generation of the file left) or `damaged`.
    pub ending: &'static str,
    pub damage: Option<String>,
}

/// What `store check` found: each write-ahead file read on its own, then the store opened from
/// a read-only copy and its chain walked, or why it could not be opened (damage, in words).
pub struct StoreCheck {
    pub files: Vec<StoreFile>,
    pub opened: Result<battleplan_adapters::VerifyReport, Refusal>,
}

/// `battleplan store check`: the write-ahead files read on their own, then a read-only copy of
/// the store opened (which refuses damage, naming it) and its chain walked. `Err` when there is
/// nothing to check: no store, a file that cannot be read, a store another process holds.
pub fn store_check(data: &Path) -> Result<StoreCheck, Refusal> {
    use battleplan_adapters::sled_store::wal;
    use battleplan_adapters::{SledEventLog, StoreOptions};
    if !data.join("db").is_file() {
        return Err(Refusal::user(format!(
            "there is no battleplan store in {} (set --data or BATTLEPLAN_DATA to the data directory)",
            data.display()
        )));
    }
    let mut files = Vec::new();
    for name in wal::FILES {
        let path = data.join(name);
        let file = match std::fs::read(&path) {
            Ok(contents) => {
                let state = wal::describe(&contents);
                StoreFile {
                    name,
                    bytes: Some(contents.len() as u64),
                    generation: state.generation,
                    records: state.records,
                    first_position: state.positions.map(|(first, _)| first),
                    last_position: state.positions.map(|(_, last)| last),
                    ending: match (&state.damage, state.torn) {
                        (Some(_), _) => "damaged",
                        (None, true) => "left over",
                        (None, false) => "zeros",
                    },
                    damage: state
                        .damage
                        .map(|damage| format!("damaged at byte {}: {}", damage.at, damage.detail)),
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => StoreFile {
                name,
                bytes: None,
                generation: None,
                records: 0,
                first_position: None,
                last_position: None,
                ending: "missing",
                damage: None,
            },
            Err(error) => {
                return Err(daemon::refusal(
                    data,
                    &StoreError::Io(format!("reading {}: {error}", path.display())),
                ))
            }
        };
        files.push(file);
    }
    // From a read-only copy: a check changes nothing, and a damaged store stays as found.
    let opened = match SledEventLog::open_read_only(
        data,
        &std::env::temp_dir(),
        StoreOptions::default(),
    ) {
        Ok(copy) => copy
            .verify()
            .map_err(|error| daemon::refusal(data, &error)),
        // Not damage: the files are another process's for now.
        Err(StoreError::Locked(_)) => {
            return Err(Refusal::user(format!(
                "the store in {} is in use by another battleplan process (a running daemon?): stop it, then check",
                data.display()
            )))
        }
        Err(error) => Err(daemon::refusal(data, &error)),
    };
    Ok(StoreCheck { files, opened })
}

/// A progress bar on standard error for a file of `bytes`, when standard error is a terminal
/// (never in a pipe, a log or a test).
pub fn progress_bar(bytes: u64, message: &'static str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(bytes);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>9} [{bar:40}] {bytes}/{total_bytes} ({eta} left)",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    Some(bar)
}
