//! The control endpoint: while `battleplan run` owns the data directory (sled locks its files),
//! other `battleplan` processes reach it over a Unix socket in the data directory,
//! `control.sock`, readable only by its owner. One JSON line asks ([`Request`]); the daemon
//! answers with empty lines while it works (one as soon as it has read the request, then one
//! every [`HEARTBEAT`]) and then one JSON line ([`Answer`]). A command finds the socket, asks,
//! and prints the answer; with no daemon answering it opens the store itself.
//!
//! Nothing waits forever, on either side:
//! - The client gives up connecting after [`CONNECT_TIMEOUT`] of a full queue, and gives up on
//!   a daemon that says nothing, not even an empty line, for [`SILENCE_TIMEOUT`]. A command
//!   may take as long as it needs (an import of millions of rows takes minutes): the timeout is
//!   about the daemon being alive and at work, not about how long the work takes.
//! - The daemon serves at most [`MAX_CONNECTIONS`] connections at once. A connection has
//!   [`REQUEST_TIMEOUT`] to send its request line; at the cap, the connection that has waited
//!   longest without sending one is closed to make room, and when every connection is at work
//!   the next waits for one to finish. An answer must be taken within [`WRITE_TIMEOUT`]. Failing
//!   to accept (out of descriptors: EMFILE, ENFILE) closes an idle connection and backs off,
//!   from [`ACCEPT_PAUSE_MIN`] doubling to [`ACCEPT_PAUSE_MAX`], instead of trying again at once.
//! - Stopping, the daemon stops accepting at once, closes the connections that have not sent a
//!   request, gives the requests under way [`SHUTDOWN_GRACE`] to finish and answer, and drops
//!   the rest (an append is recorded whole or not at all; an import is finished by running it
//!   again).
//!
//! A connection closed without an answer (the daemon stopped or was killed, or closed an idle
//! connection) is "no daemon answered": the command runs locally instead. That is safe for a
//! command that changes something only because the client chose its command id before asking
//! (`cli`), so the local run carries the same id and the store answers a command the daemon did
//! record with that first outcome instead of recording it again.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::app::{execute, AppError, Outcome, Request};
use crate::kernel::runtime::Runtime;

pub const SOCKET: &str = "control.sock";

/// The largest request accepted: a plan file (4 MiB at most) and its envelope.
const MAX_REQUEST_BYTES: u64 = 6 * 1024 * 1024;

/// A socket path must fit in `sockaddr_un`.
const MAX_SOCKET_PATH: usize = 100;

/// The most connections the daemon serves at once (each holds a descriptor and, at work, a
/// task); far below the usual descriptor limits, with room for the store's own files.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send its request line (a `battleplan` process sends it
/// as soon as it is connected).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon waits for a client to take its answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the daemon says it is still at work on a request.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// The first pause after failing to accept a connection; it doubles while failures go on.
pub const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(20);
/// The longest pause between two attempts to accept.
pub const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How long a stopping daemon lets the requests under way finish and answer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long a client keeps trying while the daemon's queue of connections is full.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a client waits for the daemon to send anything (an empty line or the answer).
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for the daemon to take its request.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A failpoint for the tests: with this variable set, the daemon aborts (as if killed) after
/// carrying out a request that changes something and before answering it: the moment a
/// stopping daemon leaves a client with a command recorded and no answer.
pub const ABORT_BEFORE_ANSWER: &str = "BATTLEPLAN_FAILPOINT_CONTROL_ABORT_BEFORE_ANSWER";

/// The version of what travels through the socket: a request line, then an [`Answer`] line.
pub const PROTOCOL: u32 = 1;

/// The daemon's answer line: the protocol it speaks and the request's outcome.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub protocol: u32,
    pub outcome: Outcome,
}

pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET)
}

/// Asks a running daemon. `Ok(None)` when none answers: no socket, a stale one left by a daemon
/// that was killed, or a connection closed before the answer (the daemon stopping); the caller
/// may then run the command itself, with the same command id. `Err` when a daemon is there but
/// could not be asked or did not answer in time. For synchronous callers (it runs a small
/// runtime of its own).
pub fn call(data: &Path, remote: &Request) -> Result<Option<Outcome>, String> {
    let path = socket_path(data);
    if !path.exists() {
        return Ok(None);
    }
    let mut line = serde_json::to_string(remote).map_err(|e| e.to_string())?;
    line.push('\n');
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime.block_on(ask(&path, line.as_bytes()))
}

/// The peer went away: no answer is coming.
fn gone(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
    )
}

async fn connect(path: &Path) -> Result<Option<UnixStream>, String> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::NotFound
                ) =>
            {
                return Ok(None)
            }
            // The daemon's queue of connections is full: it is busy, or stalled.
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "the daemon at {} accepts no connection (its queue stayed full for {} s); try again",
                        path.display(),
                        CONNECT_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(error) => {
                return Err(format!(
                    "cannot reach the daemon at {}: {error}",
                    path.display()
                ))
            }
        }
    }
}

async fn ask(path: &Path, request: &[u8]) -> Result<Option<Outcome>, String> {
    let Some(stream) = connect(path).await? else {
        return Ok(None);
    };
    let describe = |error: std::io::Error| {
        format!(
            "the daemon at {} stopped answering: {error}",
            path.display()
        )
    };
    let (reader, mut writer) = stream.into_split();
    match tokio::time::timeout(CLIENT_WRITE_TIMEOUT, writer.write_all(request)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) if gone(&error) => return Ok(None),
        Ok(Err(error)) => return Err(describe(error)),
        Err(_) => {
            return Err(format!(
                "the daemon at {} did not take the request within {} s; try again",
                path.display(),
                CLIENT_WRITE_TIMEOUT.as_secs()
            ))
        }
    }
    let mut reader = tokio::io::BufReader::new(reader);
    loop {
        let mut answer = String::new();
        match tokio::time::timeout(SILENCE_TIMEOUT, reader.read_line(&mut answer)).await {
            // Closed without answering: the daemon is stopping (or closed an idle connection).
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(error)) if gone(&error) => return Ok(None),
            Ok(Err(error)) => return Err(describe(error)),
            Err(_) => {
                return Err(format!(
                    "the daemon at {} said nothing for {} s; it may be stalled (its log says more)",
                    path.display(),
                    SILENCE_TIMEOUT.as_secs()
                ))
            }
        }
        // An empty line: received, or still at work.
        if answer.trim().is_empty() {
            continue;
        }
        let answer: Answer = serde_json::from_str(&answer)
            .map_err(|error| format!("the daemon answered something unreadable: {error}"))?;
        if answer.protocol != PROTOCOL {
            return Err(format!(
                "the daemon at {} speaks control protocol {}, this battleplan {PROTOCOL}: run the same version of battleplan as the daemon",
                path.display(),
                answer.protocol
            ));
        }
        return Ok(Some(answer.outcome));
    }
}

/// Binds the socket, replacing a stale one (the caller holds the store, so no other daemon can
/// be using it).
pub fn bind(data: &Path) -> Result<UnixListener, String> {
    let path = socket_path(data);
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(format!(
            "the data directory's path is too long for its control socket ({} bytes; at most {MAX_SOCKET_PATH}): use a shorter --data path",
            path.as_os_str().len()
        ));
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot remove {}: {error}", path.display())),
    }
    let listener = UnixListener::bind(&path)
        .map_err(|error| format!("cannot listen on {}: {error}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| format!("cannot protect {}: {error}", path.display()))?;
    }
    Ok(listener)
}

/// The connections that have not sent their request yet, oldest first: the ones to close when
/// room is needed.
#[derive(Default)]
struct Idle {
    waiting: Mutex<(u64, BTreeMap<u64, oneshot::Sender<()>>)>,
}

impl Idle {
    fn register(&self) -> (u64, oneshot::Receiver<()>) {
        let (close, closed) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let id = waiting.0;
        waiting.0 += 1;
        waiting.1.insert(id, close);
        (id, closed)
    }

    fn forget(&self, id: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.1.remove(&id);
    }

    /// Closes the connection that has waited longest for its request; `false` if none waits.
    fn close_oldest(&self) -> bool {
        let oldest = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            waiting.1.pop_first()
        };
        match oldest {
            Some((_, close)) => {
                let _ = close.send(());
                true
            }
            None => false,
        }
    }
}

/// Serves requests until shut down, each connection on its own task (see the module's
/// documentation for the limits). Returns once every connection is closed.
pub async fn serve(listener: UnixListener, runtime: Runtime, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let idle = Arc::new(Idle::default());
    let mut connections = JoinSet::new();
    let mut pause = ACCEPT_PAUSE_MIN;
    'serving: loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    pause = ACCEPT_PAUSE_MIN;
                    let permit = match permits.clone().try_acquire_owned() {
                        Ok(permit) => permit,
                        Err(_) => {
                            // At the cap: the connection idle longest makes room; with none idle,
                            // wait for a request under way to finish (the next connections wait
                            // in the socket's queue meanwhile).
                            idle.close_oldest();
                            tokio::select! {
                                permit = permits.clone().acquire_owned() => match permit {
                                    Ok(permit) => permit,
                                    Err(_) => break 'serving,
                                },
                                _ = shutdown.wait_for(|stop| *stop) => break 'serving,
                            }
                        }
                    };
                    let (id, closed) = idle.register();
                    connections.spawn(connection(
                        stream,
                        runtime.clone(),
                        permit,
                        idle.clone(),
                        id,
                        closed,
                        shutdown.clone(),
                    ));
                }
                Err(error) => {
                    // Out of descriptors (EMFILE, ENFILE) or another failure: trying again at
                    // once would spin. Free a descriptor held by an idle connection, and pause.
                    if pause == ACCEPT_PAUSE_MIN {
                        tracing::warn!(
                            "cannot accept a connection on the control socket: {error}; closing idle connections and trying again shortly"
                        );
                    }
                    idle.close_oldest();
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break 'serving,
                    }
                    pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    // Stop accepting: a command tried from now on finds no daemon and waits for the store.
    drop(listener);
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !finished {
        tracing::warn!(
            "stopping: {} request(s) still under way after {} s are dropped unanswered (an append is recorded whole or not at all; an import is finished by running it again)",
            connections.len(),
            SHUTDOWN_GRACE.as_secs()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Sends an empty line if the socket takes it now: it never waits (a client that does not
/// read misses a heartbeat, and its answer waits for it with [`WRITE_TIMEOUT`]). `false` once
/// the client is gone.
fn beat(writer: &OwnedWriteHalf) -> bool {
    match writer.try_write(b"\n") {
        Ok(_) => true,
        Err(error) => error.kind() == ErrorKind::WouldBlock,
    }
}

/// The request a line holds, or what is wrong with it, in words.
fn request_of(line: &[u8]) -> Result<Request, String> {
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err(format!(
            "it does not end with a new line within {MAX_REQUEST_BYTES} bytes (a request is one JSON line)"
        ));
    };
    if std::str::from_utf8(line).is_err() {
        return Err("it is not UTF-8 text (a request is one JSON line)".into());
    }
    serde_json::from_slice::<Request>(line).map_err(|error| {
        // serde quotes what it did not know (a command's name): keep control characters
        // off the terminal the answer is printed on.
        let words = error.to_string();
        format!(
            "it is not a battleplan request: {}",
            battleplan_core::text::printable(&words)
        )
    })
}

/// One connection: its request line (within [`REQUEST_TIMEOUT`], unless closed to make room or
/// by the daemon stopping), the command with a heartbeat, the answer.
async fn connection(
    stream: UnixStream,
    runtime: Runtime,
    _permit: OwnedSemaphorePermit,
    idle: Arc<Idle>,
    id: u64,
    closed: oneshot::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader.take(MAX_REQUEST_BYTES));
    // Bytes, not text: a request that is not UTF-8 is answered as malformed, like any other.
    let mut line = Vec::new();
    let read = tokio::select! {
        biased;
        read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)) => read.ok(),
        _ = closed => None,
        _ = shutdown.wait_for(|stop| *stop) => None,
    };
    idle.forget(id);
    // Nothing read (timed out, closed to make room, the daemon stopping, the client gone): close
    // without an answer; a client still there runs the command itself.
    let Some(Ok(length)) = read else { return };
    if length == 0 {
        return;
    }
    // Received: the client waits as long as the empty lines keep coming.
    let mut listening = beat(&writer);
    let reply = match request_of(&line) {
        Ok(remote) => {
            let abort = remote.changes() && std::env::var_os(ABORT_BEFORE_ANSWER).is_some();
            let work = execute(&runtime, remote);
            tokio::pin!(work);
            let mut heartbeat =
                tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
            let reply = loop {
                tokio::select! {
                    reply = &mut work => break reply,
                    _ = heartbeat.tick(), if listening => listening = beat(&writer),
                }
            };
            if abort {
                tracing::warn!("{ABORT_BEFORE_ANSWER}: aborting before answering");
                std::process::abort();
            }
            reply
        }
        // The sender's mistake, not the daemon's: exit 2, as for any bad input.
        Err(problem) => Err(AppError::invalid(format_args!(
            "the daemon could not read the request: {problem}"
        ))),
    };
    let answer = Answer {
        protocol: PROTOCOL,
        outcome: reply,
    };
    if let Ok(mut answer) = serde_json::to_string(&answer) {
        answer.push('\n');
        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
            writer.write_all(answer.as_bytes()).await?;
            writer.flush().await
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_malformed_request_is_described_never_executed() {
        assert!(matches!(
            request_of(b"{\"command\":\"ping\"}\n"),
            Ok(Request::Ping)
        ));
        let not_utf8 = request_of(b"{\"command\":\"\xff\"}\n").unwrap_err();
        assert!(not_utf8.contains("not UTF-8"), "{not_utf8}");
        let unknown = request_of(b"{\"command\":\"\x1b]0;x\"}\n").unwrap_err();
        assert!(unknown.contains("not a battleplan request"), "{unknown}");
        assert!(!unknown.contains('\x1b'), "{unknown}");
        let cut = request_of(b"{\"command\":").unwrap_err();
        assert!(cut.contains("does not end with a new line"), "{cut}");
    }
}
