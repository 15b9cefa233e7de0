//! `battleplan run`: the daemon. It owns the data directory (the store), runs the scheduler,
//! serves the control socket for other terminals, logs one line per transition (tracing;
//! `RUST_LOG` is respected) and stops cleanly on Ctrl-C or SIGTERM, within a bounded time: the
//! step under way, then at most `control::SHUTDOWN_GRACE` for the requests under way, then the
//! store closed (its lock released) before the last line says "stopped".

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context as _;
use battleplan_adapters::outbox::FileOutbox;
use battleplan_adapters::system::{RandomIds, SystemClock};
use battleplan_adapters::{PgEventLog, PgOptions, SledEventLog, StoreOptions};
use battleplan_core::context::{Clock, ManualClock};
use battleplan_core::event::StoreError;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::app::Request;
use crate::fronts::{control, http};
use crate::hosts::store::{OpenStore, StoreChoice};
use crate::kernel::ownership::{FencedStore, Ownership};
use crate::kernel::runtime::Runtime;
use crate::kernel::scheduler::{Scheduler, Timing};
use crate::present::USER_ERROR;

/// How long a starting process waits for a short-lived command to release the store.
const LOCK_ATTEMPTS: u32 = 50;
const LOCK_PAUSE: StdDuration = StdDuration::from_millis(100);
/// How long a stopping daemon waits for its runtime's last tasks once the server and the
/// scheduler have returned.
const SHUTDOWN_WAIT: StdDuration = StdDuration::from_millis(500);

/// How long a daemon on PostgreSQL waits before starting its scheduler again after the database
/// failed.
const RESTART_PAUSE: StdDuration = StdDuration::from_secs(2);

/// The file that marks a data directory as a rehearsal's: its store was started under a
/// rehearsal clock (`--clock-at`, `run --simulate`, a scenario or the demo), so rehearsing
/// there again is allowed; a store without it holds real history (docs/store.md).
pub const REHEARSAL_MARK: &str = "rehearsal";

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub until: Option<DateTime<Utc>>,
    pub simulate: bool,
    /// A manual clock at this instant instead of the system clock.
    pub clock_at: Option<DateTime<Utc>>,
    /// Serve the HTTP API on this address too (`--http`).
    pub http: Option<std::net::SocketAddr>,
    /// The daemon's public address, for the links in the messages (`--public-url`).
    pub public_url: Option<String>,
    /// One of several nodes on a PostgreSQL store (`--node`, `--lease`).
    pub node: Option<NodeOptions>,
}

/// A node's name and its leases' length.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    pub lease: StdDuration,
}

/// Checks `--node` and `--lease`.
pub fn node_options(name: &str, lease: f64) -> Result<NodeOptions, String> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !fine {
        return Err(format!(
            "--node {}: a node's name is 1 to 63 of a-z, 0-9, - and _",
            battleplan_core::text::printable(name)
        ));
    }
    if !(0.3..=3600.0).contains(&lease) {
        return Err(format!(
            "--lease {lease}: a lease lasts from 0.3 to 3600 seconds"
        ));
    }
    Ok(NodeOptions {
        name: name.to_string(),
        lease: StdDuration::from_secs_f64(lease),
    })
}

fn user_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("battleplan: {message}");
    ExitCode::from(USER_ERROR)
}

/// What opening the store for a command came to.
pub enum Opened {
    Store(OpenStore),
    /// A daemon runs: talk to it.
    Daemon,
    /// Say this and exit with its code.
    Refused(Refusal),
}

/// A store that cannot be opened or read on, in words, with the exit code it earns: damage, a
/// newer format, a holder that does not answer or a wrong password are for the user to act on
/// (2); a failing disk or database server is the machine's (1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub code: u8,
}

impl Refusal {
    pub fn user(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            code: USER_ERROR,
        }
    }

    /// Prints the message and gives the exit code.
    pub fn exit(self) -> ExitCode {
        eprintln!("battleplan: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// What to tell about a store that failed.
pub fn refusal(store: &StoreChoice, error: &StoreError) -> Refusal {
    let location = match store {
        StoreChoice::Sled(data) => return sled_refusal(data, error),
        StoreChoice::Postgres(location) => location,
    };
    match error {
        StoreError::Corrupt { .. } => Refusal::user(format!(
            "the store {location} cannot be used: {error}. {DAMAGE_HINT}"
        )),
        StoreError::Io(detail) if login_refused(detail) => Refusal::user(format!(
            "cannot log in to the store {location}: {detail}. The password is read from {} or from the file {} names (docs/store.md)",
            crate::hosts::store::PASSWORD_VARIABLE,
            crate::hosts::store::PASSWORD_FILE_VARIABLE
        )),
        StoreError::Io(detail) => Refusal {
            message: format!(
                "the database server of the store {location} failed: {detail}. Everything acknowledged before is kept; once the server answers, run the command again"
            ),
            code: crate::present::INTERNAL_ERROR,
        },
        other => Refusal::user(format!("cannot open the store {location}: {other}")),
    }
}

/// Whether PostgreSQL's answer is about who logs in to what (a wrong or missing password, a
/// user or database that does not exist, no permission): the user's to put right, not a
/// failing server.
fn login_refused(detail: &str) -> bool {
    // SQLSTATE classes 28 (invalid authorization), 3D000 (no such database), 42501
    // (insufficient privilege); tokio-postgres's own words when the server asks for a password
    // it was not given ("invalid configuration", its cause "password missing" not always said).
    [
        "28P01",
        "28000",
        "3D000",
        "42501",
        "password missing",
        "invalid configuration",
    ]
    .iter()
    .any(|sign| detail.contains(sign))
}

/// What to tell about the sled store in `data` that failed.
fn sled_refusal(data: &Path, error: &StoreError) -> Refusal {
    match error {
        StoreError::Corrupt { .. } => Refusal::user(format!(
            "the store in {} cannot be used: {error}. {DAMAGE_HINT}",
            data.display()
        )),
        StoreError::Io(detail) => Refusal {
            message: format!(
                "the disk holding {} failed: {detail}. Everything acknowledged before is kept; free space or repair the disk, then run the command again",
                data.display()
            ),
            code: crate::present::INTERNAL_ERROR,
        },
        other => Refusal::user(format!(
            "cannot open the store in {}: {other}",
            data.display()
        )),
    }
}

/// Said after damage: what to do next.
pub const DAMAGE_HINT: &str = "Nothing was changed; `battleplan store check` tells what is intact, and docs/store.md how to recover";

/// Opens the store, waiting a moment for a short-lived command that holds a sled store.
/// `Daemon` when a running daemon answers on the control socket of `data` instead. A
/// PostgreSQL store is opened on `tokio`, which then drives it.
pub fn open_store(data: &Path, store: &StoreChoice, tokio: &tokio::runtime::Runtime) -> Opened {
    open_store_with(data, store, StoreOptions::default(), tokio)
}

/// The variable that sets the size of sled's page cache, in MiB (docs/store.md).
pub const STORE_CACHE_VARIABLE: &str = "BATTLEPLAN_STORE_CACHE_MIB";

/// The largest page cache the variable may ask for, in MiB.
const MAX_STORE_CACHE_MIB: u64 = 1024 * 1024;

/// A sled store's options: `options`, with the page cache `BATTLEPLAN_STORE_CACHE_MIB` asks
/// for when it is set.
pub fn sled_options(mut options: StoreOptions) -> Result<StoreOptions, Refusal> {
    let Some(value) = std::env::var_os(STORE_CACHE_VARIABLE) else {
        return Ok(options);
    };
    let mib = value
        .to_str()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|mib| (1..=MAX_STORE_CACHE_MIB).contains(mib))
        .ok_or_else(|| {
            Refusal::user(format!(
                "{STORE_CACHE_VARIABLE} is {value:?}: it should be the size of the store's page cache in MiB, a whole number from 1 to {MAX_STORE_CACHE_MIB} (the default is {})",
                battleplan_adapters::DEFAULT_CACHE_BYTES / (1024 * 1024)
            ))
        })?;
    options.cache_capacity_bytes = mib * 1024 * 1024;
    Ok(options)
}

/// [`open_store`] with options of its own for a sled store (an import, which only writes,
/// keeps sled's page cache small); `BATTLEPLAN_STORE_CACHE_MIB` has the last word on the cache.
pub fn open_store_with(
    data: &Path,
    store: &StoreChoice,
    options: StoreOptions,
    tokio: &tokio::runtime::Runtime,
) -> Opened {
    let options = match sled_options(options) {
        Ok(options) => options,
        Err(refusal) => return Opened::Refused(refusal),
    };
    let location = match store {
        StoreChoice::Sled(directory) => return open_sled(data, directory, options),
        StoreChoice::Postgres(location) => location,
    };
    if let Ok(Some(_)) = control::call(data, &Request::Ping) {
        return Opened::Daemon;
    }
    match tokio.block_on(PgEventLog::open((**location).clone(), PgOptions::default())) {
        Ok(opened) => Opened::Store(OpenStore::Postgres(opened)),
        Err(error) => Opened::Refused(refusal(store, &error)),
    }
}

fn open_sled(data: &Path, directory: &Path, options: StoreOptions) -> Opened {
    if let Some(refusal) = not_writable(directory) {
        return Opened::Refused(refusal);
    }
    for _ in 0..LOCK_ATTEMPTS {
        if let Ok(Some(_)) = control::call(data, &Request::Ping) {
            return Opened::Daemon;
        }
        match SledEventLog::open(directory, options.clone()) {
            Ok(store) => return Opened::Store(OpenStore::Sled(store)),
            Err(StoreError::Locked(_)) => std::thread::sleep(LOCK_PAUSE),
            Err(other) => return Opened::Refused(sled_refusal(directory, &other)),
        }
    }
    Opened::Refused(Refusal::user(format!(
        "the store in {} is held by another battleplan process that does not answer on {}; if a command is still running, let it finish and try again",
        directory.display(),
        control::socket_path(data).display()
    )))
}

/// Opening a store writes to it (sled, the checkpoint taken at opening): a data directory on a
/// read-only file system, or one this user may not write, is said to be so (exit 2), not taken
/// for a failing disk.
fn not_writable(data: &Path) -> Option<Refusal> {
    let error = rustix::fs::access(data, rustix::fs::Access::WRITE_OK).err()?;
    let why = if error == rustix::io::Errno::ROFS {
        "it is on a read-only file system"
    } else if error == rustix::io::Errno::ACCESS || error == rustix::io::Errno::PERM {
        "this user may not write to it"
    } else {
        // Absent, or another trouble: opening says what it is.
        return None;
    };
    Some(Refusal::user(format!(
        "the store in {} cannot be opened for writing: {why}. This command writes to the store; `audit verify`, `export` and `store check` read a store they may not write (docs/store.md)",
        data.display()
    )))
}

/// A store opened for reading only: a copy of a sled store's files (removed when dropped), or
/// a PostgreSQL store, which reading does not change.
pub enum ReadOnly {
    Copy(battleplan_adapters::sled_store::ReadOnlyCopy),
    Postgres(PgEventLog),
}

impl ReadOnly {
    /// The store to read (a handle: the copy's files stay until the `ReadOnly` is dropped).
    pub fn store(&self) -> OpenStore {
        match self {
            ReadOnly::Copy(copy) => OpenStore::Sled(copy.store().clone()),
            ReadOnly::Postgres(store) => OpenStore::Postgres(store.clone()),
        }
    }
}

/// What opening a store for reading only gave.
pub enum OpenedCopy {
    Store(ReadOnly),
    /// A daemon runs: ask it.
    Daemon,
    /// Say this and exit with its code.
    Refused(Refusal),
}

/// Opens the store for reading only. A sled store is read from a copy of its files in
/// `TMPDIR` (`SledEventLog::open_read_only`): nothing in its directory changes, and it may be
/// read-only; this waits a moment for a short-lived command that holds it, and gives `Daemon`
/// when a running daemon answers on the control socket of `data` instead. A PostgreSQL store
/// is opened as it is (on `tokio`), whoever else uses it: reading it changes nothing.
pub fn open_read_only(
    data: &Path,
    store: &StoreChoice,
    tokio: &tokio::runtime::Runtime,
) -> OpenedCopy {
    let directory = match store {
        StoreChoice::Sled(directory) => directory,
        StoreChoice::Postgres(location) => {
            return match tokio
                .block_on(PgEventLog::open((**location).clone(), PgOptions::default()))
            {
                Ok(opened) => OpenedCopy::Store(ReadOnly::Postgres(opened)),
                Err(error) => OpenedCopy::Refused(refusal(store, &error)),
            }
        }
    };
    let options = match sled_options(StoreOptions::default()) {
        Ok(options) => options,
        Err(refusal) => return OpenedCopy::Refused(refusal),
    };
    let scratch = std::env::temp_dir();
    for _ in 0..LOCK_ATTEMPTS {
        if let Ok(Some(_)) = control::call(data, &Request::Ping) {
            return OpenedCopy::Daemon;
        }
        match SledEventLog::open_read_only(directory, &scratch, options.clone()) {
            Ok(copy) => return OpenedCopy::Store(ReadOnly::Copy(copy)),
            Err(StoreError::Locked(_)) => std::thread::sleep(LOCK_PAUSE),
            Err(other) => return OpenedCopy::Refused(sled_refusal(directory, &other)),
        }
    }
    OpenedCopy::Refused(Refusal::user(format!(
        "the store in {} is held by another battleplan process that does not answer on {}; if a command is still running, let it finish and try again",
        directory.display(),
        control::socket_path(data).display()
    )))
}

/// The clock the daemon acts on, once chosen: its log lines are stamped with it, so that a
/// simulated run says when in the simulation each thing happened, not when the machine ran it.
static LOG_CLOCK: std::sync::OnceLock<Arc<dyn Clock>> = std::sync::OnceLock::new();

/// Stamps a log line with the daemon's clock (the system clock until the daemon has chosen
/// one).
struct DaemonTime;

impl tracing_subscriber::fmt::time::FormatTime for DaemonTime {
    fn format_time(
        &self,
        writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
    ) -> std::fmt::Result {
        let now = LOG_CLOCK.get().map_or_else(Utc::now, |clock| clock.now());
        write!(
            writer,
            "{}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    // PostgreSQL's notices (a table that already exists, at each opening) are not the daemon's
    // news: the client's own lines only from warnings up, unless RUST_LOG says otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_timer(DaemonTime)
        .try_init();
}

pub fn run(data: &Path, choice: &StoreChoice, options: RunOptions) -> anyhow::Result<ExitCode> {
    init_tracing();
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let store = match open_store(data, choice, &tokio) {
        Opened::Store(store) => store,
        Opened::Daemon => {
            let pid = control::call(data, &Request::Ping)
                .ok()
                .flatten()
                .and_then(|outcome| match outcome {
                    Ok(crate::app::Response::Pong(pong)) => Some(pong.pid.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            return Ok(user_error(format_args!(
                "battleplan run is already running on {} (pid {pid}); it keeps acting and this one stops",
                data.display()
            )));
        }
        Opened::Refused(refusal) => return Ok(refusal.exit()),
    };
    // A PostgreSQL tenant's rehearsal rule is its flag, read once the store is open (a sled
    // store's mark was settled before: `local::before_run`).
    if let OpenStore::Postgres(tenant) = &store {
        let rehearsal = options.simulate || options.clock_at.is_some();
        match tokio.block_on(crate::hosts::local::tenant_rehearsal(tenant, rehearsal)) {
            Ok(_) => {}
            Err(crate::hosts::local::Rule::Refused(message)) => return Ok(user_error(message)),
            Err(crate::hosts::local::Rule::Store(error)) => {
                return Ok(refusal(choice, &error).exit())
            }
        }
    }
    let (clock, timing, clock_words): (Arc<dyn Clock>, Timing, String) =
        match (options.clock_at, options.simulate) {
            (start, true) => {
                let clock = Arc::new(ManualClock::new(start.unwrap_or_else(Utc::now)));
                (clock.clone(), Timing::Simulated(clock), "simulated".into())
            }
            (Some(at), false) => (
                Arc::new(ManualClock::new(at)),
                Timing::Frozen,
                format!("fixed at {}", at.to_rfc3339()),
            ),
            (None, false) => (Arc::new(SystemClock), Timing::Real, "system".into()),
        };
    // One daemon per process: the first clock chosen is the one its lines are stamped with.
    let _ = LOG_CLOCK.set(clock.clone());
    let ownership = match (&options.node, &store) {
        (None, _) => None,
        (Some(node), OpenStore::Postgres(log)) => Some(Arc::new(Ownership::new(
            &node.name,
            log.clone(),
            node.lease,
        ))),
        (Some(_), OpenStore::Sled(_)) => {
            return Ok(user_error(
                "--node is for several nodes on one PostgreSQL store (--store postgres://...); a store in a data directory belongs to one process",
            ))
        }
    };
    if let Some(ownership) = &ownership {
        // One process per node name: a node started again waits for its old process's lease
        // on the name to run out; a second process given a running node's name is refused.
        let lease = ownership.renew_every() * 3;
        let claimed = tokio.block_on(async {
            let deadline = tokio::time::Instant::now() + lease * 2 + StdDuration::from_secs(1);
            loop {
                match ownership.claim_name().await {
                    Ok(true) => return Ok(true),
                    Ok(false) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(ownership.renew_every()).await;
                    }
                    Ok(false) => return Ok(false),
                    Err(error) => return Err(error),
                }
            }
        });
        match claimed {
            Ok(true) => {}
            Ok(false) => {
                return Ok(user_error(format_args!(
                    "a node named {} is running on this store (another process holds its name); give each node a --node name of its own",
                    ownership.node()
                )))
            }
            Err(error) => return Ok(refusal(choice, &error).exit()),
        }
    }
    let store = Arc::new(store);
    // The links messages carry are signed with the merchant's key, made on the first run.
    let link_key = match http::auth::link_key(data) {
        Ok(key) => key,
        Err(message) => anyhow::bail!("{message}"),
    };
    let runtime = Runtime::new(store.clone(), clock, Arc::new(RandomIds))
        .checking_chain(store.clone())
        .with_link_key(link_key)
        .with_snapshots(crate::kernel::snapshot::Policy::OWNER);
    let outcome = tokio.block_on(async {
        let listener = match control::bind(data) {
            Ok(listener) => listener,
            Err(message) => return Ok(Err(message)),
        };
        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let server = tokio::spawn(control::serve(listener, runtime.clone(), stopped.clone()));
        let http = match options.http {
            None => None,
            Some(address) => {
                let listener = match http::prepare_scratch(data) {
                    Ok(()) => http::bind(address).await,
                    Err(message) => Err(message),
                };
                let listener = match listener {
                    Ok(listener) => listener,
                    Err(message) => {
                        let _ = stop.send(true);
                        let _ = server.await;
                        return Ok(Err(message));
                    }
                };
                let bound = listener.local_addr().unwrap_or(address);
                if let Err(message) = http::announce(data, bound) {
                    let _ = stop.send(true);
                    let _ = server.await;
                    return Ok(Err(message));
                }
                let api = http::Api::new(runtime.clone(), data);
                Some(tokio::spawn(http::serve(listener, api, stopped.clone())))
            }
        };
        // Listening for the signals before saying the daemon runs: a SIGTERM sent as soon as
        // it says so stops it cleanly instead of killing it.
        let stopping = stop_signals();
        let signal_stop = stop.clone();
        let signals = tokio::spawn(async move {
            if wait_for_signal(stopping).await.is_ok() {
                tracing::info!("stopping: finishing the step under way");
                let _ = signal_stop.send(true);
            }
        });
        let log_words = match choice {
            StoreChoice::Sled(_) => String::new(),
            StoreChoice::Postgres(location) => format!(", the log in {location}"),
        };
        tracing::info!(
            "running on {}{log_words} (clock: {clock_words}); other terminals reach this daemon through {}",
            data.display(),
            control::socket_path(data).display()
        );
        let outbox = Arc::new(
            FileOutbox::new(data.join("outbox")).with_console(Box::new(std::io::stdout())),
        );
        // The plan's mail servers where it names them, the file outbox elsewhere.
        let outbox = Arc::new(crate::hosts::channels::Routes::new(
            runtime.clone(),
            outbox,
            options
                .public_url
                .as_deref()
                .map(|url| format!("{}/api/v1", url.trim_end_matches('/'))),
        ));
        let routes: Arc<dyn crate::kernel::runtime::ChannelTest> = outbox.clone();
        let _ = runtime.channels.set(Arc::downgrade(&routes));
        // A node of several acts only on the campaigns it holds, and its scheduler's and
        // dispatcher's appends carry their leases' fences (kernel::ownership).
        let mut acting = runtime.clone();
        let mut leases = None;
        if let (Some(ownership), OpenStore::Postgres(log)) = (&ownership, store.as_ref()) {
            acting.store = Arc::new(FencedStore::new(log.clone(), ownership.clone()));
            leases = Some(tokio::spawn(keep_leases(
                runtime.clone(),
                ownership.clone(),
                stopped.clone(),
            )));
            tracing::info!(
                "node {}: leases of {:.1} s, renewed every {:.1} s",
                ownership.node(),
                node_lease(&options),
                ownership.renew_every().as_secs_f64()
            );
        }
        let on_postgres = matches!(store.as_ref(), OpenStore::Postgres(_));
        let result = loop {
            let scheduler = Scheduler::new(acting.clone(), timing.clone(), options.until)
                .with_outbox(outbox.clone());
            let scheduler = match &ownership {
                Some(ownership) => scheduler.with_ownership(ownership.clone(), runtime.clone()),
                None => scheduler,
            };
            let result = scheduler.run(stopped.clone()).await;
            // A database that went away for a moment (a restart, a failover) is waited for:
            // the scheduler starts again from the log once it answers. A disk that fails under
            // the embedded store, or damage, stops the daemon as before.
            match result {
                Err(crate::kernel::runtime::HandleError::Store(StoreError::Io(detail)))
                    if on_postgres && !*stopped.borrow() =>
                {
                    tracing::warn!(
                        "the database failed ({detail}); starting again in {} s",
                        RESTART_PAUSE.as_secs()
                    );
                    let mut stopping = stopped.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(RESTART_PAUSE) => {}
                        _ = stopping.changed() => {}
                    }
                    if *stopped.borrow() {
                        break Ok(crate::kernel::scheduler::Summary::default());
                    }
                }
                other => break other,
            }
        };
        if let Some(leases) = leases {
            leases.abort();
        }
        if let Some(ownership) = &ownership {
            // Let the campaigns go at once: another node takes them without waiting for the
            // leases to run out.
            ownership.release_all().await;
        }
        let _ = stop.send(true);
        signals.abort();
        // Bounded: the server gives the requests under way `control::SHUTDOWN_GRACE`, then
        // drops them.
        let _ = server.await;
        // Bounded too: `http::SHUTDOWN_GRACE` for the requests under way.
        if let Some(http) = http {
            let _ = http.await;
        }
        // The next start reads the projections as they stand now, not the log again.
        if result.is_ok() {
            crate::kernel::dispatcher::save_snapshot_now(&runtime).await;
        }
        Ok::<_, anyhow::Error>(Ok(result))
    })?;
    // A blocking thread may still be reading a file for an import whose request was dropped: it
    // holds no store and stops at its next row; the runtime does not wait for it.
    tokio.shutdown_timeout(SHUTDOWN_WAIT);
    let _ = std::fs::remove_file(control::socket_path(data));
    // Every task is gone: this is the store's last handle. Dropping it checkpoints the tail and
    // releases sled's lock, before "stopped" says a command may open the store.
    // The runtime holds the store twice: as its store and as the chain `audit verify` walks.
    drop(store);
    drop(ownership);
    let own =
        1 + usize::from(runtime.chain.as_ref().is_some_and(|chain| {
            std::ptr::addr_eq(Arc::as_ptr(chain), Arc::as_ptr(&runtime.store))
        }));
    let holders = Arc::strong_count(&runtime.store);
    if holders > own {
        tracing::warn!(
            "stopping: {} handle(s) of the store still held elsewhere",
            holders - own
        );
    }
    drop(runtime);
    match outcome {
        Err(message) => Ok(user_error(message)),
        Ok(Ok(summary)) => {
            tracing::info!(
                "stopped: {} transition(s) recorded ({} caught up after downtime), {} message(s) sent to customers, {} to staff",
                summary.transitions,
                summary.caught_up,
                summary.sent,
                summary.staff
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(crate::kernel::runtime::HandleError::Store(error))) => {
            Ok(refusal(choice, &error).exit())
        }
        Ok(Err(error)) => Err(anyhow::anyhow!("the scheduler stopped: {error}")),
    }
}

fn node_lease(options: &RunOptions) -> f64 {
    options
        .node
        .as_ref()
        .map_or(0.0, |node| node.lease.as_secs_f64())
}

/// Renews this node's leases and takes those of campaigns no live node holds, every third of
/// a lease, until the daemon stops. A round that fails (the database out of reach) is tried
/// again at the next; meanwhile the node stops acting on a campaign once its lease may have
/// run out (`Ownership::fence`).
async fn keep_leases(
    runtime: Runtime,
    ownership: Arc<Ownership>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let campaigns: Vec<String> = match runtime.campaign_states().await {
            Ok(states) => states.states.keys().cloned().collect(),
            Err(error) => {
                tracing::warn!("leases: reading the campaigns failed: {error}");
                Vec::new()
            }
        };
        if let Err(error) = ownership.round(&campaigns).await {
            tracing::warn!("leases: renewing failed: {error}; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(ownership.renew_every()) => {}
            _ = stopped.changed() => return,
        }
    }
}

type Signals = std::io::Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

/// SIGINT (Ctrl-C) and SIGTERM, listened for from now on.
fn stop_signals() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    Ok((
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
    ))
}

async fn wait_for_signal(signals: Signals) -> std::io::Result<()> {
    let (mut interrupt, mut terminate) = signals?;
    tokio::select! {
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}
