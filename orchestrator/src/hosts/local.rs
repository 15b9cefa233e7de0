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
use battleplan_adapters::system::{RandomIds, SystemClock};
use battleplan_adapters::PgEventLog;
use battleplan_core::context::{Clock, ManualClock};
use battleplan_core::event::port::EventReader as _;
use battleplan_core::event::{Position, StoreError};
use chrono::{DateTime, Utc};

use crate::app::archive::{self, ExportView, Untrailered};
use crate::app::import::{self, ImportRequest};
use crate::app::{self, Ctx, Outcome, Request, Response};
use crate::fronts::control;
use crate::hosts::daemon::{self, Opened, OpenedCopy, ReadOnly, Refusal};
use crate::hosts::store::{OpenStore, StoreChoice};
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
    copy: Option<ReadOnly>,
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
            settle
                .mark
                .settle(settle.succeeded, settle.events, self.tokio.as_ref());
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
    mark.is_none() || crate::present::render(outcome, false).code == 0
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

/// `battleplan run` under a rehearsal clock (`rehearsal`): refused on a sled store that holds
/// real history; a store that exists gets its mark before the daemon records (`run` does not
/// create a store itself). A PostgreSQL tenant's flag is read by the daemon once it has opened
/// it ([`tenant_rehearsal`]). `Err` in words.
pub fn before_run(store: &StoreChoice, rehearsal: bool) -> Result<(), String> {
    let StoreChoice::Sled(data) = store else {
        return Ok(());
    };
    let mark = rehearsal_rule(data, rehearsal)?;
    Mark::File(mark).leave(data);
    Ok(())
}

/// The rehearsal mark of a store a rehearsal command is creating: written as soon as the store
/// exists, before anything is recorded (a command cut short after recording leaves a rehearsal's
/// store, which the same command may then finish), and taken back when the command failed with
/// nothing recorded, so that a failed rehearsal cannot open to rehearsals the store a real
/// command later fills. On a PostgreSQL tenant the mark is the tenant's flag.
enum Mark {
    /// The mark file of a sled store, when there is one to leave.
    File(Option<PathBuf>),
    /// A tenant this command flagged as a rehearsal's.
    Tenant(Option<PgEventLog>),
}

impl Mark {
    fn is_none(&self) -> bool {
        match self {
            Mark::File(mark) => mark.is_none(),
            Mark::Tenant(tenant) => tenant.is_none(),
        }
    }

    /// Leaves the mark file, once the sled store has been created.
    fn leave(&self, data: &Path) {
        let Mark::File(Some(mark)) = self else {
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
    fn settle(self, succeeded: bool, events: Option<u64>, tokio: Option<&tokio::runtime::Runtime>) {
        if succeeded || events != Some(0) {
            return;
        }
        match self {
            Mark::File(Some(mark)) => {
                let _ = std::fs::remove_file(mark);
            }
            Mark::Tenant(Some(tenant)) => {
                if let Some(tokio) = tokio {
                    let _ = tokio.block_on(tenant.set_rehearsal(false));
                }
            }
            Mark::File(None) | Mark::Tenant(None) => {}
        }
    }
}

/// Why the rehearsal rule stopped a command on a PostgreSQL tenant.
pub enum Rule {
    /// The tenant holds real history: these words, exit 2.
    Refused(String),
    /// The store failed while the rule read it.
    Store(StoreError),
}

/// The rehearsal rule on a PostgreSQL tenant (docs/store.md): under a rehearsal clock
/// (`rehearsal`), a tenant holding events is refused unless its log was started under one, and
/// an empty tenant is flagged as a rehearsal's before anything is recorded. `Ok(true)` when this
/// call flagged it.
pub async fn tenant_rehearsal(tenant: &PgEventLog, rehearsal: bool) -> Result<bool, Rule> {
    if !rehearsal || tenant.rehearsal().await.map_err(Rule::Store)? {
        return Ok(false);
    }
    if tenant.head().await.map_err(Rule::Store)? > Position::START {
        return Err(Rule::Refused(format!(
            "{} holds real history (its log was not started under --clock-at or run --simulate): a rehearsal there would mix simulated events and sends into the real record; rehearse in a tenant of its own, e.g. ?tenant=rehearsal",
            tenant.location()
        )));
    }
    tenant.set_rehearsal(true).await.map_err(Rule::Store)?;
    Ok(true)
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

/// The store opened for one command run here, the mark its rehearsal rule left, and the
/// async runtime it runs on.
struct Local {
    store: OpenStore,
    mark: Mark,
    tokio: tokio::runtime::Runtime,
}

/// What opening the store for one command came to (held a moment, on the stack).
#[allow(clippy::large_enum_variant, reason = "a moment's value, never stored")]
enum Opening {
    Open(Local),
    /// A daemon answers on the control socket (started meanwhile).
    Daemon,
    /// Refused before anything was recorded.
    Said(Answer),
}

/// Opens the store for one command: after its rehearsal rule (`rehearsing`: a command that
/// records under `--clock-at`), refused when there is no store and the command does not create
/// one (`creates`). A sled store's directory is created for a command that creates it.
fn open_local(
    data: &Path,
    choice: &StoreChoice,
    rehearsing: bool,
    creates: bool,
    options: battleplan_adapters::StoreOptions,
) -> anyhow::Result<Opening> {
    let mut mark = Mark::File(None);
    if let StoreChoice::Sled(directory) = choice {
        match rehearsal_rule(directory, rehearsing) {
            Ok(path) => mark = Mark::File(path),
            Err(message) => return Ok(Opening::Said(Answer::user(message))),
        }
        if !creates && !directory.join("db").is_file() {
            return Ok(Opening::Said(Answer::user(format_args!(
                "there is no battleplan store in {} (set --data or BATTLEPLAN_DATA to the data directory, or apply a plan first)",
                directory.display()
            ))));
        }
        if creates {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("creating the data directory {}", directory.display()))?;
        }
    }
    let tokio = tokio()?;
    let store = match daemon::open_store_with(data, choice, options, &tokio) {
        Opened::Store(store) => store,
        Opened::Daemon => return Ok(Opening::Daemon),
        Opened::Refused(refusal) => return Ok(Opening::Said(Answer::refused(refusal))),
    };
    match (&store, choice) {
        (OpenStore::Postgres(tenant), _) => {
            let refused = |error: StoreError| {
                Ok(Opening::Said(Answer::refused(daemon::refusal(
                    choice, &error,
                ))))
            };
            if !creates {
                match tokio.block_on(tenant.head()) {
                    Ok(Position::START) => {
                        return Ok(Opening::Said(Answer::user(no_log(tenant))));
                    }
                    Ok(_) => {}
                    Err(error) => return refused(error),
                }
            }
            match tokio.block_on(tenant_rehearsal(tenant, rehearsing)) {
                Ok(flagged) => mark = Mark::Tenant(flagged.then(|| tenant.clone())),
                Err(Rule::Refused(message)) => return Ok(Opening::Said(Answer::user(message))),
                Err(Rule::Store(error)) => return refused(error),
            }
        }
        (OpenStore::Sled(_), StoreChoice::Sled(directory)) => mark.leave(directory),
        (OpenStore::Sled(_), StoreChoice::Postgres(_)) => {}
    }
    Ok(Opening::Open(Local { store, mark, tokio }))
}

/// Said of a PostgreSQL tenant that holds no event, to a command that does not create a log.
fn no_log(tenant: &PgEventLog) -> String {
    format!(
        "there is no battleplan log in {}: the tenant holds no event (check --store and its ?tenant=, or apply a plan first)",
        tenant.location()
    )
}

/// Asks the running daemon, or, when none runs, opens the store and answers here.
pub fn remote_or_local(
    data: &Path,
    choice: &StoreChoice,
    clock_at: Option<DateTime<Utc>>,
    remote: Request,
) -> anyhow::Result<Answer> {
    match control::call(data, &remote) {
        Ok(Some(outcome)) => return Ok(Answer::said(outcome)),
        Ok(None) => {}
        Err(message) => return Ok(Answer::user(format_args!("{message}; {}", again(&remote)))),
    }
    let rehearsing = records(&remote) && clock_at.is_some();
    let creates = matches!(remote, Request::ApplyPlan { .. });
    let Local { store, mark, tokio } = match open_local(
        data,
        choice,
        rehearsing,
        creates,
        battleplan_adapters::StoreOptions::default(),
    )? {
        Opening::Open(local) => local,
        Opening::Daemon => return Ok(ask_daemon(data, &remote, &again(&remote))),
        Opening::Said(answer) => return Ok(answer),
    };
    let runtime = Runtime::new(Arc::new(store), clock(clock_at), Arc::new(RandomIds))
        .with_snapshots(crate::kernel::snapshot::Policy::OWNER);
    // `channel test` without the daemon: the plan's real channels, made in this process, held
    // while the request runs.
    let routes: Arc<dyn crate::kernel::runtime::ChannelTest> = Arc::new(
        crate::hosts::channels::Routes::for_tests(runtime.clone(), None),
    );
    let _ = runtime.channels.set(Arc::downgrade(&routes));
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
    choice: &StoreChoice,
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
    let opened = open_local(
        data,
        choice,
        clock_at.is_some(),
        true,
        import::store_options(),
    );
    let Local { store, mark, tokio } = match opened {
        Ok(Opening::Open(local)) => local,
        // A daemon started meanwhile: it imports (and checks again).
        Ok(Opening::Daemon) => {
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
        Ok(Opening::Said(answer)) => {
            clear();
            return Ok(answer);
        }
        Err(error) => {
            clear();
            return Err(error);
        }
    };
    let runtime = Runtime::new(Arc::new(store), clock(clock_at), Arc::new(RandomIds))
        .with_snapshots(crate::kernel::snapshot::Policy::OWNER);
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

/// What opening a store to read it only came to.
#[allow(clippy::large_enum_variant, reason = "a moment's value, never stored")]
enum Reading {
    Open(ReadOnly, tokio::runtime::Runtime),
    /// A daemon holds the sled store: ask it.
    Daemon,
    Said(Answer),
}

/// Opens the store to read it only (`daemon::open_read_only`): refused when there is none (no
/// sled store in its directory, a tenant with no event).
fn open_reading(data: &Path, choice: &StoreChoice) -> anyhow::Result<Reading> {
    if let StoreChoice::Sled(directory) = choice {
        if let Some(answer) = no_store(directory) {
            return Ok(Reading::Said(answer));
        }
    }
    let tokio = tokio()?;
    let opened = match daemon::open_read_only(data, choice, &tokio) {
        OpenedCopy::Store(opened) => opened,
        OpenedCopy::Daemon => return Ok(Reading::Daemon),
        OpenedCopy::Refused(refusal) => return Ok(Reading::Said(Answer::refused(refusal))),
    };
    if let ReadOnly::Postgres(tenant) = &opened {
        match tokio.block_on(tenant.head()) {
            Ok(Position::START) => return Ok(Reading::Said(Answer::user(no_log(tenant)))),
            Ok(_) => {}
            Err(error) => {
                return Ok(Reading::Said(Answer::refused(daemon::refusal(
                    choice, &error,
                ))))
            }
        }
    }
    Ok(Reading::Open(opened, tokio))
}

/// `battleplan audit verify`: through the daemon when one holds the sled store, or here on a
/// read-only copy of its files, so that nothing of the store changes and a store on read-only
/// media is checked as well (`SledEventLog::open_read_only`); a PostgreSQL store is read as it
/// is.
pub fn audit_verify(data: &Path, choice: &StoreChoice) -> anyhow::Result<Answer> {
    let (opened, tokio) = match open_reading(data, choice)? {
        Reading::Open(opened, tokio) => (opened, tokio),
        Reading::Daemon => return Ok(ask_daemon(data, &Request::AuditVerify, "try again")),
        Reading::Said(answer) => return Ok(answer),
    };
    let store = Arc::new(opened.store());
    let runtime = Runtime::new(store.clone(), Arc::new(SystemClock), Arc::new(RandomIds))
        .checking_chain(store);
    let outcome = tokio.block_on(app::execute(&runtime, Request::AuditVerify));
    Ok(Answer {
        outcome: Ok(outcome),
        closing: Some(Closing {
            runtime: Some(runtime),
            copy: Some(opened),
            mark: None,
            tokio: Some(tokio),
        }),
    })
}

/// An export that failed reading the store: damage is refused as every command refuses it.
fn export_failed(choice: &StoreChoice, error: anyhow::Error) -> anyhow::Result<Answer> {
    if let Some(not_written) = error.downcast_ref::<archive::ExportNotWritten>() {
        // As the daemon says it (`archive::export_for`).
        let disk = crate::app::AppError::Disk {
            detail: not_written.to_string(),
        };
        return Ok(Answer::refused(Refusal {
            message: disk.to_string(),
            code: crate::present::INTERNAL_ERROR,
        }));
    }
    match error.downcast_ref::<StoreError>() {
        Some(store) => Ok(Answer::refused(daemon::refusal(choice, store))),
        None => Err(error),
    }
}

/// `battleplan export`: to the file `out` (whole or not at all), or to `stdout` when none is
/// given. With a daemon running (which holds the store), the daemon writes the file (standard
/// output is refused: a log is not one reply line); else the export reads a read-only copy of
/// the sled store, or the PostgreSQL store as it is.
pub fn export(
    data: &Path,
    choice: &StoreChoice,
    as_of: Option<DateTime<Utc>>,
    out: Option<&Path>,
    stdout: &mut dyn Write,
) -> anyhow::Result<Answer> {
    if let StoreChoice::Sled(directory) = choice {
        if let Some(answer) = no_store(directory) {
            return Ok(answer);
        }
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
    let (opened, tokio) = match open_reading(data, choice)? {
        Reading::Open(opened, tokio) => (opened, tokio),
        Reading::Daemon => {
            return Ok(Answer::user(format_args!(
                "a daemon (battleplan run) holds the store in {}; it writes an export to a file, not to standard output: give --out FILE",
                data.display()
            )))
        }
        Reading::Said(answer) => return Ok(answer),
    };
    let store = opened.store();
    let (file, written) = match (out, directory) {
        (Some(out), Some(directory)) => (
            Some(out.display().to_string()),
            tokio.block_on(archive::export_file(&store, as_of, out, &directory)),
        ),
        _ => {
            let mut writer = std::io::BufWriter::new(stdout);
            let written = tokio.block_on(archive::export(&store, as_of, &mut writer));
            (None, written)
        }
    };
    drop(store);
    let summary = match written {
        Ok(summary) => summary,
        Err(error) => return export_failed(choice, error),
    };
    let view = ExportView::of(&summary, file, as_of);
    Ok(Answer {
        outcome: Ok(Ok(Response::Export(view))),
        closing: Some(Closing {
            runtime: None,
            copy: Some(opened),
            mark: None,
            tokio: Some(tokio),
        }),
    })
}

/// Opens a PostgreSQL store to write into it (an import, a copy's target), on `tokio`.
fn open_tenant(
    choice: &StoreChoice,
    location: &battleplan_adapters::PgLocation,
    tokio: &tokio::runtime::Runtime,
) -> Result<PgEventLog, Refusal> {
    tokio
        .block_on(PgEventLog::open(
            location.clone(),
            battleplan_adapters::PgOptions::default(),
        ))
        .map_err(|error| daemon::refusal(choice, &error))
}

/// `battleplan import FILE`: the export restored into a new store, all or nothing: a new sled
/// store in the data directory, or the PostgreSQL tenant `--store` names, which must hold no
/// event.
pub fn restore(
    choice: &StoreChoice,
    file: &Path,
    untrailered: Untrailered,
) -> anyhow::Result<Answer> {
    let tokio = tokio()?;
    let outcome = match choice {
        StoreChoice::Sled(data) => tokio.block_on(archive::restore(
            file,
            archive::RestoreInto::Sled(data),
            untrailered,
        )),
        StoreChoice::Postgres(location) => {
            let tenant = match open_tenant(choice, location, &tokio) {
                Ok(tenant) => tenant,
                Err(refusal) => return Ok(Answer::refused(refusal)),
            };
            tokio.block_on(archive::restore(
                file,
                archive::RestoreInto::Postgres(&tenant),
                untrailered,
            ))
        }
    };
    Ok(Answer {
        outcome: Ok(outcome.map(Response::Restored)),
        closing: Some(Closing {
            runtime: None,
            copy: None,
            mark: None,
            tokio: Some(tokio),
        }),
    })
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

/// What `store check` found: each write-ahead file read on its own (a sled store's; a
/// PostgreSQL store has none), then the store opened (a sled store from a read-only copy) and
/// its chain walked, or why it could not be opened (damage, in words).
pub struct StoreCheck {
    pub files: Vec<StoreFile>,
    pub opened: Result<battleplan_adapters::VerifyReport, Refusal>,
}

/// A refusal for a failure of this process (exit 1).
fn internal(message: impl std::fmt::Display) -> Refusal {
    Refusal {
        message: message.to_string(),
        code: crate::present::INTERNAL_ERROR,
    }
}

/// `battleplan store check`: the write-ahead files read on their own, then a read-only copy of
/// the store opened (which refuses damage, naming it) and its chain walked; on PostgreSQL, the
/// tenant's chain walked. `Err` when there is nothing to check: no store, a file that cannot be
/// read, a store another process holds, a database that does not answer.
pub fn store_check(data: &Path, choice: &StoreChoice) -> Result<StoreCheck, Refusal> {
    use battleplan_adapters::sled_store::wal;
    use battleplan_adapters::{SledEventLog, StoreOptions};
    let data = match choice {
        StoreChoice::Sled(directory) => directory.as_path(),
        StoreChoice::Postgres(_) => {
            let (opened, tokio) = match open_reading(data, choice) {
                Ok(Reading::Open(opened, tokio)) => (opened, tokio),
                Ok(Reading::Said(answer)) => {
                    return Err(answer
                        .outcome
                        .err()
                        .unwrap_or_else(|| internal("the store could not be opened")))
                }
                Ok(Reading::Daemon) => {
                    return Err(internal("a daemon answered for a PostgreSQL store"))
                }
                Err(error) => return Err(internal(format_args!("{error:#}"))),
            };
            let opened = tokio
                .block_on(opened.store().verify())
                .map_err(|error| daemon::refusal(choice, &error));
            return Ok(StoreCheck {
                files: Vec::new(),
                opened,
            });
        }
    };
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
                    choice,
                    &StoreError::Io(format!("reading {}: {error}", path.display())),
                ))
            }
        };
        files.push(file);
    }
    // From a read-only copy: a check changes nothing, and a damaged store stays as found.
    let options = daemon::sled_options(StoreOptions::default())?;
    let opened = match SledEventLog::open_read_only(data, &std::env::temp_dir(), options) {
        Ok(copy) => copy
            .verify()
            .map_err(|error| daemon::refusal(choice, &error)),
        // Not damage: the files are another process's for now.
        Err(StoreError::Locked(_)) => {
            return Err(Refusal::user(format!(
                "the store in {} is in use by another battleplan process (a running daemon?): stop it, then check",
                data.display()
            )))
        }
        Err(error) => Err(daemon::refusal(choice, &error)),
    };
    Ok(StoreCheck { files, opened })
}

/// What `store copy` did: the source's events up to its head when the copy began, written into
/// the target verbatim, and the target's chain walked afterwards.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreCopy {
    /// The source and the target, in words (a directory, or `postgres://USER@HOST:PORT/DB
    /// (tenant T)`).
    pub source: String,
    pub target: String,
    /// Events copied, and the hash of the last, as the source holds them.
    pub events: u64,
    pub source_head_hash: String,
    /// Events whose chain checks out in the target, and its head hash, walked after the copy.
    pub target_events: u64,
    pub target_head_hash: String,
    /// Whether the source was a rehearsal's store, and the target marked as one.
    pub rehearsal: bool,
}

/// `battleplan store copy --to TARGET`: the whole log of `source` written verbatim (positions,
/// ids, instants, hashes) into `target`, a new sled store (a directory absent or empty) or a
/// PostgreSQL tenant holding no event, then the target's chain walked and compared with the
/// source's: the same number of events and the same head hash, or refused (exit 2) with the
/// target as it was (a sled target removed; a tenant's restore is one transaction, which
/// commits only when the records taken end in the source's head hash).
pub fn store_copy(
    data: &Path,
    source: &StoreChoice,
    target: &StoreChoice,
) -> Result<StoreCopy, Refusal> {
    let (opened, tokio) = match open_reading(data, source) {
        Ok(Reading::Open(opened, tokio)) => (opened, tokio),
        Ok(Reading::Daemon) => {
            return Err(Refusal::user(format!(
                "a daemon (battleplan run) holds the store in {}: stop it, then copy (a copy is of a store nothing writes to)",
                data.display()
            )))
        }
        Ok(Reading::Said(answer)) => {
            return Err(answer
                .outcome
                .err()
                .unwrap_or_else(|| internal("the store could not be opened")))
        }
        Err(error) => return Err(internal(format_args!("{error:#}"))),
    };
    let store = opened.store();
    let refused_source = |error: StoreError| daemon::refusal(source, &error);
    let head = tokio.block_on(store.head()).map_err(refused_source)?;
    let rehearsal = match (source, &store) {
        (StoreChoice::Sled(directory), _) => directory.join(daemon::REHEARSAL_MARK).is_file(),
        (StoreChoice::Postgres(_), OpenStore::Postgres(tenant)) => {
            tokio.block_on(tenant.rehearsal()).map_err(refused_source)?
        }
        (StoreChoice::Postgres(_), OpenStore::Sled(_)) => false,
    };
    let hint = "copy only into an empty or new directory, or a PostgreSQL tenant that holds no event (--to)";
    let tenant = match target {
        StoreChoice::Sled(_) => None,
        StoreChoice::Postgres(location) => Some(open_tenant(target, location, &tokio).map_err(
            |mut refusal| {
                if refusal.message.starts_with("cannot log in") {
                    refusal.message.push_str(&format!(
                        "; a copy's target takes {} or the file {} names first",
                        crate::hosts::store::TARGET_PASSWORD_VARIABLE,
                        crate::hosts::store::TARGET_PASSWORD_FILE_VARIABLE
                    ));
                }
                refusal
            },
        )?),
    };
    let into = match (target, &tenant) {
        (_, Some(tenant)) => archive::RestoreInto::Postgres(tenant),
        (StoreChoice::Sled(directory), None) => archive::RestoreInto::Sled(directory),
        (StoreChoice::Postgres(_), None) => return Err(internal("the target is not open")),
    };
    let import_refusal = |error: archive::ImportError| match error {
        archive::ImportError::Refused(message) => Refusal::user(message),
        archive::ImportError::Internal(error) => match error.downcast_ref::<StoreError>() {
            Some(store_error) => refused_source(store_error.clone()),
            None => internal(format_args!("{error:#}")),
        },
    };
    let mut restoring = tokio
        .block_on(archive::Restoring::start(into, hint))
        .map_err(import_refusal)?;
    let copied = tokio
        .block_on(archive::copy(&store, head, &mut restoring))
        .map_err(import_refusal)?;
    // Before anything is in place: the records taken must be the source's whole log.
    if restoring.records() != head.0 || restoring.head_hash_hex() != copied.head_hash {
        return Err(Refusal::user(format!(
            "the copy took {} events ending in hash {}, the source holds {} ending in hash {}: nothing was written to {target}",
            restoring.records(),
            restoring.head_hash_hex(),
            head.0,
            copied.head_hash
        )));
    }
    let (restored, _) = tokio
        .block_on(restoring.finish(&source.to_string()))
        .map_err(import_refusal)?;
    drop(store);
    drop(opened);
    // The target read back, as any command will read it.
    let (verified, target_store) = match &restored {
        archive::Restored::Sled(directory) => {
            match battleplan_adapters::SledEventLog::open(
                directory,
                battleplan_adapters::StoreOptions::default(),
            ) {
                Ok(opened) => (
                    tokio.block_on(OpenStore::Sled(opened.clone()).verify()),
                    Some(OpenStore::Sled(opened)),
                ),
                Err(error) => (Err(error), None),
            }
        }
        archive::Restored::Postgres(tenant) => (
            tokio.block_on(tenant.verify()),
            Some(OpenStore::Postgres(tenant.clone())),
        ),
    };
    let same = matches!(&verified, Ok(report) if report.problem.is_none()
        && report.checked == copied.events
        && report.head_hash == copied.head_hash);
    if !same {
        drop(target_store);
        let found = match &verified {
            Ok(report) => format!(
                "{} events whose chain checks out, head hash {}{}",
                report.checked,
                report.head_hash,
                report
                    .problem
                    .as_ref()
                    .map(|problem| format!(", then {problem}"))
                    .unwrap_or_default()
            ),
            Err(error) => format!("a store that cannot be read: {error}"),
        };
        let undone = match &restored {
            archive::Restored::Sled(directory) => {
                let _ = std::fs::remove_dir_all(directory);
                format!("{} was removed", directory.display())
            }
            archive::Restored::Postgres(tenant) => format!(
                "{} holds the copy as it is: empty its tenant before trying again",
                tenant.location()
            ),
        };
        return Err(Refusal::user(format!(
            "the copy does not verify: the source holds {} events ending in hash {}, the target reads back as {found}; {undone}",
            copied.events, copied.head_hash
        )));
    }
    if rehearsal {
        match &restored {
            archive::Restored::Sled(directory) => {
                Mark::File(Some(directory.join(daemon::REHEARSAL_MARK))).leave(directory)
            }
            archive::Restored::Postgres(tenant) => {
                if let Err(error) = tokio.block_on(tenant.set_rehearsal(true)) {
                    eprintln!(
                        "battleplan: warning: cannot mark {} as a rehearsal's ({error}); rehearsal clocks will be refused on it",
                        tenant.location()
                    );
                }
            }
        }
    }
    let (target_events, target_head_hash) = match verified {
        Ok(report) => (report.checked, report.head_hash),
        Err(_) => (0, String::new()),
    };
    drop(target_store);
    drop(restored);
    drop(tokio);
    Ok(StoreCopy {
        source: source.to_string(),
        target: target.to_string(),
        events: copied.events,
        source_head_hash: copied.head_hash,
        target_events,
        target_head_hash,
        rehearsal,
    })
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
