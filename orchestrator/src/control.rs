//! The control endpoint: while `battleplan run` owns the data directory (sled locks its files),
//! other `battleplan` processes reach it over a Unix socket in the data directory,
//! `control.sock`, readable only by its owner. One JSON line asks ([`Remote`]), one JSON line
//! answers ([`Reply`]). A command finds the socket, asks, and prints the answer; with no daemon
//! answering it opens the store itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::commands::{execute, Remote, Reply, INTERNAL_ERROR};
use crate::runtime::Runtime;

pub const SOCKET: &str = "control.sock";

/// The largest request accepted: a plan file (4 MiB at most) and its envelope.
const MAX_REQUEST_BYTES: u64 = 6 * 1024 * 1024;

/// A socket path must fit in `sockaddr_un`.
const MAX_SOCKET_PATH: usize = 100;

pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET)
}

/// Asks a running daemon. `Ok(None)` when none answers (no socket, or a stale one left by a
/// daemon that was killed).
pub fn call(data: &Path, remote: &Remote) -> Result<Option<Reply>, String> {
    let path = socket_path(data);
    if !path.exists() {
        return Ok(None);
    }
    let stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            return Ok(None)
        }
        Err(error) => {
            return Err(format!(
                "cannot reach the daemon at {}: {error}",
                path.display()
            ))
        }
    };
    let describe = |error: std::io::Error| {
        format!(
            "the daemon at {} stopped answering: {error}",
            path.display()
        )
    };
    let mut line = serde_json::to_string(remote).map_err(|e| e.to_string())?;
    line.push('\n');
    let mut writer = &stream;
    writer.write_all(line.as_bytes()).map_err(describe)?;
    writer.flush().map_err(describe)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(describe)?;
    if answer.is_empty() {
        // The daemon closed the connection without answering: it is shutting down.
        return Ok(None);
    }
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|error| format!("the daemon answered something unreadable: {error}"))
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

/// Serves requests until shut down. Each connection is handled on its own task.
pub async fn serve(listener: UnixListener, runtime: Runtime, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    let (reader, mut writer) = stream.into_split();
                    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(reader, MAX_REQUEST_BYTES));
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let reply = match serde_json::from_str::<Remote>(&line) {
                        Ok(remote) => execute(&runtime, remote).await,
                        Err(error) => Reply {
                            code: INTERNAL_ERROR,
                            stdout: String::new(),
                            stderr: format!("battleplan: the daemon could not read the request: {error}\n"),
                        },
                    };
                    if let Ok(mut answer) = serde_json::to_string(&reply) {
                        answer.push('\n');
                        let _ = writer.write_all(answer.as_bytes()).await;
                        let _ = writer.flush().await;
                    }
                });
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
