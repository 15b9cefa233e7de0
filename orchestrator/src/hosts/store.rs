//! Which store holds the log, chosen once per command: the embedded sled store in the data
//! directory (the default), or a tenant of a PostgreSQL database (`--store postgres://...`,
//! docs/store.md, "The log on PostgreSQL"); and the store once opened ([`OpenStore`]), one type
//! for the runtime, the auditor and the copy whichever it is.
//!
//! The password of a PostgreSQL store never comes on the command line: a URL holding one is
//! refused (without repeating it), and it is read from `BATTLEPLAN_STORE_PASSWORD` or from the
//! file `BATTLEPLAN_STORE_PASSWORD_FILE` names. A location shows as
//! `postgres://USER@HOST:PORT/DATABASE (tenant T)` in every word said about it.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use battleplan_adapters::{PgEventLog, PgLocation, SledEventLog, VerifyReport};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, Position, RecordedEvent, StoreResult, StreamId,
    StreamVersion,
};

use crate::kernel::runtime::ChainCheck;

/// The password of the `--store` URL's user.
pub const PASSWORD_VARIABLE: &str = "BATTLEPLAN_STORE_PASSWORD";
/// A file holding that password (its trailing line break ignored), instead of the variable.
pub const PASSWORD_FILE_VARIABLE: &str = "BATTLEPLAN_STORE_PASSWORD_FILE";
/// The password of `store copy --to URL`'s user, when it is not the store's.
pub const TARGET_PASSWORD_VARIABLE: &str = "BATTLEPLAN_TARGET_PASSWORD";
/// A file holding the target's password.
pub const TARGET_PASSWORD_FILE_VARIABLE: &str = "BATTLEPLAN_TARGET_PASSWORD_FILE";

/// Where the log is.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// The embedded store in this directory (`--data`).
    Sled(PathBuf),
    /// A tenant of a PostgreSQL database, its password given.
    Postgres(Box<PgLocation>),
}

impl fmt::Display for StoreChoice {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreChoice::Sled(directory) => write!(formatter, "{}", directory.display()),
            StoreChoice::Postgres(location) => write!(formatter, "{location}"),
        }
    }
}

/// Whether `text` names a PostgreSQL store rather than a directory.
pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

impl StoreChoice {
    /// The store of a command: `--store` (or `BATTLEPLAN_STORE`) when given, else the sled
    /// store in `data`. `Err` in words for the user (exit 2); the words never repeat a secret
    /// the URL held.
    pub fn choose(data: &Path, store: Option<&str>) -> Result<StoreChoice, String> {
        match store.map(str::trim).filter(|store| !store.is_empty()) {
            None => Ok(StoreChoice::Sled(data.to_path_buf())),
            Some(url) => postgres(
                url,
                "--store",
                &[(PASSWORD_VARIABLE, PASSWORD_FILE_VARIABLE)],
            ),
        }
    }

    /// The target of `store copy --to TARGET`: a PostgreSQL URL (its password from
    /// `BATTLEPLAN_TARGET_PASSWORD` or `_FILE`, else the store's own variables), or a directory
    /// for a new sled store.
    pub fn target(target: &str) -> Result<StoreChoice, String> {
        let trimmed = target.trim();
        if trimmed.is_empty() {
            return Err("--to names the copy's target: a directory, or postgres://USER@HOST:PORT/DATABASE?tenant=NAME".into());
        }
        if is_url(trimmed) {
            return postgres(
                trimmed,
                "--to",
                &[
                    (TARGET_PASSWORD_VARIABLE, TARGET_PASSWORD_FILE_VARIABLE),
                    (PASSWORD_VARIABLE, PASSWORD_FILE_VARIABLE),
                ],
            );
        }
        Ok(StoreChoice::Sled(PathBuf::from(target)))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreChoice::Postgres(_))
    }
}

/// A PostgreSQL location from `url`, with the password of the first pair of variables set.
fn postgres(url: &str, option: &str, sources: &[(&str, &str)]) -> Result<StoreChoice, String> {
    // PgLocation's words never repeat the URL.
    let location = PgLocation::parse(url).map_err(|message| format!("{option}: {message}"))?;
    for (variable, file_variable) in sources {
        if let Some(password) = password(variable, file_variable)? {
            return Ok(StoreChoice::Postgres(Box::new(
                location.with_password(&password),
            )));
        }
    }
    // No password: the server may not ask for one (a local socket, `trust`); if it does,
    // opening says so.
    Ok(StoreChoice::Postgres(Box::new(location)))
}

/// The variable `variable`'s value, or the contents of the file `file_variable` names (its
/// trailing line break dropped); `None` when neither is set.
fn password(variable: &str, file_variable: &str) -> Result<Option<String>, String> {
    let direct = std::env::var_os(variable).filter(|value| !value.is_empty());
    let file = std::env::var_os(file_variable).filter(|value| !value.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(format!(
            "both {variable} and {file_variable} are set: set one of them"
        )),
        (Some(value), None) => value
            .into_string()
            .map(Some)
            .map_err(|_| format!("{variable} is not UTF-8 text")),
        (None, Some(path)) => read_password_file(Path::new(&path), file_variable).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_password_file(path: &Path, variable: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|error| {
        format!(
            "cannot read the password file {} ({variable}): {error}",
            path.display()
        )
    })?;
    private_or_warn(path);
    let text = String::from_utf8(bytes).map_err(|_| {
        format!(
            "the password file {} ({variable}) is not UTF-8 text",
            path.display()
        )
    })?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(format!(
            "the password file {} ({variable}) is empty",
            path.display()
        ));
    }
    Ok(password.to_string())
}

/// A password file other users may read is said to be so (it is read all the same).
fn private_or_warn(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "battleplan: warning: the password file {} is open to other users (mode {mode:04o}); make it the user's alone: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}

/// Passes a call on to the store it is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            OpenStore::Sled($store) => $call,
            OpenStore::Postgres($store) => $call,
        }
    };
}

/// The store once opened: the ports and the chain walk, passed on to the store it is.
#[derive(Clone)]
pub enum OpenStore {
    Sled(SledEventLog),
    Postgres(PgEventLog),
}

impl OpenStore {
    /// Walks the whole chain (`SledEventLog::verify`, `PgEventLog::verify`). Inside a tokio
    /// runtime; the sled store's walk, which blocks, runs on a blocking thread.
    pub async fn verify(&self) -> StoreResult<VerifyReport> {
        each!(self, store => store.verify_chain().await)
    }
}

#[async_trait]
impl EventReader for OpenStore {
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        each!(self, store => store.read_stream(stream, from, limit).await)
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        each!(self, store => store.read_all(after, limit).await)
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        each!(self, store => store.stream_version(stream).await)
    }

    async fn head(&self) -> StoreResult<Position> {
        each!(self, store => store.head().await)
    }

    async fn wait_beyond(&self, position: Position) -> StoreResult<()> {
        each!(self, store => store.wait_beyond(position).await)
    }
}

#[async_trait]
impl EventAppender for OpenStore {
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome> {
        each!(self, store => store.append(append).await)
    }
}

#[async_trait]
impl Checkpoints for OpenStore {
    async fn checkpoint(&self, projection: &str) -> StoreResult<Position> {
        each!(self, store => store.checkpoint(projection).await)
    }

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        each!(self, store => store.get(projection, key).await)
    }

    async fn commit(
        &self,
        projection: &str,
        checkpoint: Position,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> StoreResult<()> {
        each!(self, store => store.commit(projection, checkpoint, changes).await)
    }

    async fn scan(&self, projection: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        each!(self, store => store.scan(projection).await)
    }

    async fn reset(&self, projection: &str) -> StoreResult<()> {
        each!(self, store => store.reset(projection).await)
    }

    fn files_directory(&self) -> Option<PathBuf> {
        each!(self, store => store.files_directory())
    }

    async fn sync(&self) -> StoreResult<()> {
        each!(self, store => store.sync().await)
    }
}

#[async_trait]
impl ChainCheck for OpenStore {
    async fn verify_chain(&self) -> StoreResult<VerifyReport> {
        self.verify().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_url_with_a_password_is_refused_without_repeating_it() {
        let refused =
            StoreChoice::choose(Path::new("data"), Some("postgres://bp:s3cret@db:5432/shop"))
                .unwrap_err();
        assert!(!refused.contains("s3cret"), "{refused}");
        assert!(refused.contains("BATTLEPLAN_STORE_PASSWORD"), "{refused}");
        let refused = StoreChoice::target("postgres://bp:s3cret@db/shop?tenant=a").unwrap_err();
        assert!(!refused.contains("s3cret"), "{refused}");
    }

    #[test]
    fn no_store_is_the_sled_store_in_the_data_directory() {
        let chosen = StoreChoice::choose(Path::new("here"), None).unwrap();
        assert!(matches!(chosen, StoreChoice::Sled(ref dir) if dir == Path::new("here")));
        let target = StoreChoice::target("./copy").unwrap();
        assert!(matches!(target, StoreChoice::Sled(ref dir) if dir == Path::new("./copy")));
        let shown = StoreChoice::choose(
            Path::new("d"),
            Some("postgres://bp@db:5433/shop?tenant=acme"),
        )
        .unwrap()
        .to_string();
        assert_eq!(shown, "postgres://bp@db:5433/shop (tenant acme)");
    }

    #[test]
    fn a_password_file_loses_its_line_break_only() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("password");
        std::fs::write(&path, "pa ss\n").unwrap();
        assert_eq!(read_password_file(&path, "X").unwrap(), "pa ss");
        std::fs::write(&path, "pass\r\n").unwrap();
        assert_eq!(read_password_file(&path, "X").unwrap(), "pass");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password_file(&path, "X")
            .unwrap_err()
            .contains("empty"));
    }
}
