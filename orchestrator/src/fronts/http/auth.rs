//! Tokens and roles. `battleplan token create` makes a token and shows it once; the data
//! directory keeps only a keyed digest of it (blake3 keyed with `token.key`, random, 0600) in
//! `tokens.json` (0600), written whole or not at all. A running daemon reads the file again when
//! it changes, so a token created or revoked while it runs counts at once.
//!
//! What each role may do is one table, [`MATRIX`]: an operation (a route) and the roles
//! allowed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The tokens' digests and who they are.
pub const TOKENS_FILE: &str = "tokens.json";
/// The key of the digests.
pub const KEY_FILE: &str = "token.key";
/// Held while `tokens.json` is rewritten, so that two `token` commands do not lose a change.
const LOCK_FILE: &str = "tokens.lock";
/// How every token starts: a secret recognised as battleplan's in a log or a repository.
pub const TOKEN_PREFIX: &str = "bpt_";
/// The longest token name.
const MAX_NAME: usize = 64;

/// What a token's holder may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Manager,
    /// Reads campaigns and their tasks, marks tasks done, imports outcomes.
    Sales,
    /// Reads everything but the audit trail (history, explain, export, verify); changes
    /// nothing.
    Boss,
    /// Reads everything, the audit trail included; changes nothing.
    Auditor,
    /// Reads the campaigns' calendars and nothing else: the one token that may sit in a URL
    /// (`/api/v1/calendar/CAMPAIGN.ics?token=...`), since calendar apps cannot send a header.
    Calendar,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Manager,
        Role::Sales,
        Role::Boss,
        Role::Auditor,
        Role::Calendar,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Sales => "sales",
            Role::Boss => "boss",
            Role::Auditor => "auditor",
            Role::Calendar => "calendar",
        }
    }
}

/// What a request does, as the role matrix names it: one per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    ListCampaigns,
    Status,
    History,
    Funnel,
    Targets,
    Outbox,
    Tasks,
    Audience,
    Explain,
    ApplyPlan,
    Act,
    ChannelResume,
    TaskDone,
    ImportCustomers,
    ImportOutcomes,
    /// `POST /outcomes` and `POST /bounces`: answers a merchant's system sends by itself.
    ReportOutcomes,
    /// `POST /imports/metrics`: the shop's own numbers.
    ImportMetrics,
    /// `GET /campaigns/{id}/metrics`.
    Metrics,
    /// `GET /campaigns/{id}/reports/weekly`: the boss's weekly business report.
    WeeklyReport,
    Export,
    AuditVerify,
    /// `GET /calendar/CAMPAIGN.ics`: the only operation a token may do from the query string.
    Calendar,
}

use Role::{Auditor, Boss, Calendar, Manager, Sales};

/// Who may do what. Reading is for every role but sales, who read campaigns and their tasks;
/// the audit trail (history, explain, export, verify) is the manager's and the auditor's;
/// changing is the manager's, and sales mark tasks done and import outcomes. A calendar token
/// reads calendars and nothing else.
pub const MATRIX: &[(Operation, &[Role])] = &[
    (Operation::ListCampaigns, &[Manager, Sales, Boss, Auditor]),
    (Operation::Status, &[Manager, Sales, Boss, Auditor]),
    (Operation::Tasks, &[Manager, Sales, Boss, Auditor]),
    (Operation::Funnel, &[Manager, Boss, Auditor]),
    (Operation::Targets, &[Manager, Boss, Auditor]),
    (Operation::Metrics, &[Manager, Boss, Auditor]),
    (Operation::WeeklyReport, &[Manager, Boss, Auditor]),
    (Operation::Outbox, &[Manager, Boss, Auditor]),
    (Operation::Audience, &[Manager, Boss, Auditor]),
    (Operation::History, &[Manager, Auditor]),
    (Operation::Explain, &[Manager, Auditor]),
    (Operation::Export, &[Manager, Auditor]),
    (Operation::AuditVerify, &[Manager, Auditor]),
    (Operation::ApplyPlan, &[Manager]),
    (Operation::Act, &[Manager]),
    (Operation::ChannelResume, &[Manager]),
    (Operation::ImportCustomers, &[Manager]),
    (Operation::TaskDone, &[Manager, Sales]),
    (Operation::ImportOutcomes, &[Manager, Sales]),
    (Operation::ImportMetrics, &[Manager, Sales]),
    (Operation::ReportOutcomes, &[Manager, Sales]),
    (
        Operation::Calendar,
        &[Manager, Sales, Boss, Auditor, Calendar],
    ),
];

/// Whether `role` may do `operation`.
pub fn allowed(role: Role, operation: Operation) -> bool {
    MATRIX
        .iter()
        .any(|(listed, roles)| *listed == operation && roles.contains(&role))
}

/// One token, as kept: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub revoked: Option<DateTime<Utc>>,
    /// blake3 keyed with `token.key`, of the token, in hex.
    pub digest: String,
}

/// `tokens.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    pub tokens: Vec<Entry>,
}

/// Whose token a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

fn tokens_path(data: &Path) -> PathBuf {
    data.join(TOKENS_FILE)
}

/// Reads `tokens.json` (empty when absent).
pub fn read_tokens(data: &Path) -> Result<TokenFile, String> {
    let path = tokens_path(data);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| format!("{} cannot be read: {error}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Writes `tokens.json` whole or not at all (a temporary file, synced, renamed into place).
fn write_tokens(data: &Path, tokens: &TokenFile) -> Result<(), String> {
    let path = tokens_path(data);
    let text = serde_json::to_string_pretty(tokens).map_err(|error| error.to_string())?;
    let describe = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    let mut temporary = tempfile::Builder::new()
        .prefix(".tokens-")
        .tempfile_in(data)
        .map_err(describe)?;
    // tempfile creates the file 0600.
    temporary.write_all(text.as_bytes()).map_err(describe)?;
    temporary.write_all(b"\n").map_err(describe)?;
    temporary.as_file().sync_all().map_err(describe)?;
    temporary
        .persist(&path)
        .map_err(|error| describe(error.error))?;
    std::fs::File::open(data)
        .and_then(|directory| directory.sync_all())
        .map_err(describe)
}

/// Reads the digests' key, making it (32 random bytes, 0600) the first time.
fn key(data: &Path, create: bool) -> Result<Option<[u8; 32]>, String> {
    secret_key(
        data,
        KEY_FILE,
        "remove it and tokens.json, then create the tokens again",
        create,
    )
}

/// The links' key (`core::outreach::links`): made the first time the daemon runs, kept in
/// `DATA/link.key` (0600) and backed up with the data; losing it breaks the links of the
/// messages already sent, which then say so.
pub fn link_key(data: &Path) -> Result<[u8; 32], String> {
    secret_key(
        data,
        LINK_KEY_FILE,
        "restore it from a backup (the links already sent are signed with it)",
        true,
    )?
    .ok_or_else(|| format!("cannot make {}", data.join(LINK_KEY_FILE).display()))
}

/// The file of the links' key.
pub const LINK_KEY_FILE: &str = "link.key";

/// Reads a 32-byte key from `DATA/FILE`, making it (random, 0600, never replacing one another
/// process made meanwhile) the first time when `create`.
fn secret_key(
    data: &Path,
    file: &str,
    when_damaged: &str,
    create: bool,
) -> Result<Option<[u8; 32]>, String> {
    let path = data.join(file);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                format!(
                    "{} is damaged (it should hold 32 bytes); {when_damaged}",
                    path.display()
                )
            })?;
            Ok(Some(key))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Ok(None);
            }
            let key = random_bytes()?;
            let describe =
                |error: std::io::Error| format!("cannot write {}: {error}", path.display());
            let mut temporary = tempfile::Builder::new()
                .prefix(".key-")
                .tempfile_in(data)
                .map_err(describe)?;
            temporary.write_all(&key).map_err(describe)?;
            temporary.as_file().sync_all().map_err(describe)?;
            // Never replace a key another process wrote meanwhile: its digests use it.
            temporary
                .persist_noclobber(&path)
                .map_err(|error| describe(error.error))?;
            Ok(Some(key))
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

pub fn random_bytes() -> Result<[u8; 32], String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|error| format!("cannot read /dev/urandom: {error}"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn digest(key: &[u8; 32], token: &str) -> String {
    blake3::keyed_hash(key, token.as_bytes())
        .to_hex()
        .to_string()
}

/// Holds `tokens.lock` while a change is made.
struct Locked(std::fs::File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

fn lock(data: &Path) -> Result<Locked, String> {
    let path = data.join(LOCK_FILE);
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
    }
    .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|error| format!("cannot lock {}: {error}", path.display()))?;
    Ok(Locked(file))
}

/// A name is what the log records as the actor: a few plain characters.
fn check_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(plain) {
        return Err(format!(
            "a token's name is 1 to {MAX_NAME} letters, digits, `.`, `_`, `-` or `@` (it is recorded as the actor of what the token does)"
        ));
    }
    Ok(())
}

fn whole_seconds(instant: DateTime<Utc>) -> DateTime<Utc> {
    chrono::DurationRound::duration_trunc(instant, chrono::TimeDelta::seconds(1)).unwrap_or(instant)
}

/// `token create`: a new token for `name`, returned once; its digest is kept.
pub fn create(data: &Path, name: &str, role: Role, now: DateTime<Utc>) -> Result<String, String> {
    check_name(name)?;
    std::fs::create_dir_all(data)
        .map_err(|error| format!("cannot create {}: {error}", data.display()))?;
    let _locked = lock(data)?;
    let mut tokens = read_tokens(data)?;
    if tokens
        .tokens
        .iter()
        .any(|entry| entry.name == name && entry.revoked.is_none())
    {
        return Err(format!(
            "a token named {name} exists; revoke it first (`battleplan token revoke {name}`) or choose another name"
        ));
    }
    let Some(key) = key(data, true)? else {
        return Err("the token key could not be made".into());
    };
    let token = format!("{TOKEN_PREFIX}{}", hex(&random_bytes()?));
    tokens.tokens.push(Entry {
        name: name.to_string(),
        role,
        created: whole_seconds(now),
        revoked: None,
        digest: digest(&key, &token),
    });
    write_tokens(data, &tokens)?;
    Ok(token)
}

/// `token revoke`: the token named stops working at once.
pub fn revoke(data: &Path, name: &str, now: DateTime<Utc>) -> Result<(), String> {
    let _locked = lock(data)?;
    let mut tokens = read_tokens(data)?;
    let mut found = false;
    for entry in tokens.tokens.iter_mut() {
        if entry.name == name && entry.revoked.is_none() {
            entry.revoked = Some(whole_seconds(now));
            found = true;
        }
    }
    if !found {
        return Err(format!(
            "there is no token named {name} in use (`battleplan token list` shows them)"
        ));
    }
    write_tokens(data, &tokens)
}

/// What the daemon knows of the tokens: `tokens.json` as last read, read again when it changes.
pub struct Tokens {
    data: PathBuf,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// What identified the file when it was read (inode, length, modification time).
    stamp: Option<(u64, u64, Option<std::time::SystemTime>)>,
    key: Option<[u8; 32]>,
    /// Digest -> name and role, of the tokens not revoked; the names revoked, kept apart.
    active: BTreeMap<String, Caller>,
    revoked: BTreeMap<String, String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Unknown,
    Revoked(String),
    Unreadable(String),
}

impl Tokens {
    pub fn new(data: &Path) -> Tokens {
        Tokens {
            data: data.to_path_buf(),
            known: Mutex::new(Known::default()),
        }
    }

    /// Whose token `authorization` (the header's value) carries.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, Refused> {
        let Some(value) = authorization else {
            return Err(Refused::Missing);
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(Refused::Missing)?;
        self.caller_of(token)
    }

    /// Whose token this is (a calendar's, from its URL's query string).
    pub fn caller_of(&self, token: &str) -> Result<Caller, Refused> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refresh(&mut known).map_err(Refused::Unreadable)?;
        let Some(key) = known.key else {
            return Err(Refused::Unknown);
        };
        let digest = digest(&key, token);
        if let Some(caller) = known.active.get(&digest) {
            return Ok(caller.clone());
        }
        match known.revoked.get(&digest) {
            Some(name) => Err(Refused::Revoked(name.clone())),
            None => Err(Refused::Unknown),
        }
    }

    /// Whose token this is, and its digest: a dashboard session keeps the digest, never the
    /// token, and asks with it again at every request ([`Tokens::caller_by_digest`]), so that a
    /// token revoked ends its sessions at once.
    pub fn digest_of(&self, token: &str) -> Result<(Caller, String), Refused> {
        let caller = self.caller_of(token)?;
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = known.key.ok_or(Refused::Unknown)?;
        Ok((caller, digest(&key, token)))
    }

    /// Whose the digest is, while its token is in use.
    pub fn caller_by_digest(&self, digest: &str) -> Result<Caller, Refused> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refresh(&mut known).map_err(Refused::Unreadable)?;
        if let Some(caller) = known.active.get(digest) {
            return Ok(caller.clone());
        }
        match known.revoked.get(digest) {
            Some(name) => Err(Refused::Revoked(name.clone())),
            None => Err(Refused::Unknown),
        }
    }

    /// Reads `tokens.json` again if it changed since it was read.
    fn refresh(&self, known: &mut Known) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let stamp = match std::fs::metadata(tokens_path(&self.data)) {
            Ok(metadata) => Some((metadata.ino(), metadata.len(), metadata.modified().ok())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(format!("cannot read the tokens: {error}")),
        };
        if stamp == known.stamp && (known.key.is_some() || stamp.is_none()) {
            return Ok(());
        }
        let tokens = read_tokens(&self.data)?;
        known.key = key(&self.data, false)?;
        known.active.clear();
        known.revoked.clear();
        for entry in tokens.tokens {
            if entry.revoked.is_some() {
                known.revoked.insert(entry.digest, entry.name);
            } else {
                known.active.insert(
                    entry.digest,
                    Caller {
                        name: entry.name,
                        role: entry.role,
                    },
                );
            }
        }
        known.stamp = stamp;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_operation_is_in_the_matrix_once_and_only_the_manager_does_everything() {
        let operations = [
            Operation::ListCampaigns,
            Operation::Status,
            Operation::History,
            Operation::Funnel,
            Operation::Targets,
            Operation::Outbox,
            Operation::Tasks,
            Operation::Audience,
            Operation::Explain,
            Operation::ApplyPlan,
            Operation::Act,
            Operation::ChannelResume,
            Operation::TaskDone,
            Operation::ImportCustomers,
            Operation::ImportOutcomes,
            Operation::ReportOutcomes,
            Operation::ImportMetrics,
            Operation::Metrics,
            Operation::WeeklyReport,
            Operation::Export,
            Operation::AuditVerify,
            Operation::Calendar,
        ];
        assert_eq!(MATRIX.len(), operations.len());
        for operation in operations {
            assert_eq!(
                MATRIX
                    .iter()
                    .filter(|(listed, _)| *listed == operation)
                    .count(),
                1,
                "{operation:?}"
            );
            assert!(allowed(Role::Manager, operation));
        }
    }

    #[test]
    fn a_calendar_token_reads_calendars_and_nothing_else() {
        for (operation, roles) in MATRIX {
            assert_eq!(
                roles.contains(&Role::Calendar),
                *operation == Operation::Calendar,
                "{operation:?}"
            );
        }
        // Every role reads the calendar with its header.
        for role in Role::ALL {
            assert!(allowed(role, Operation::Calendar), "{role:?}");
        }
    }

    #[test]
    fn a_token_is_known_by_its_digest_until_revoked() {
        let data = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let token = create(data.path(), "alice", Role::Sales, now).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        let kept = std::fs::read_to_string(data.path().join(TOKENS_FILE)).unwrap();
        assert!(!kept.contains(&token[TOKEN_PREFIX.len()..]));
        let tokens = Tokens::new(data.path());
        let caller = tokens.caller(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller.name, "alice");
        assert_eq!(caller.role, Role::Sales);
        assert_eq!(tokens.caller(Some("Bearer bpt_00")), Err(Refused::Unknown));
        assert_eq!(tokens.caller(None), Err(Refused::Missing));
        assert!(create(data.path(), "alice", Role::Boss, now).is_err());
        revoke(data.path(), "alice", now).unwrap();
        assert_eq!(
            tokens.caller(Some(&format!("Bearer {token}"))),
            Err(Refused::Revoked("alice".into()))
        );
        assert!(revoke(data.path(), "alice", now).is_err());
        assert!(create(data.path(), "bad name", Role::Boss, now).is_err());
    }
}
