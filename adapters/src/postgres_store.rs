//! The event log on PostgreSQL: for a platform that runs battleplan for many merchants, or a
//! merchant who runs several nodes on one database (docs/scale-out.md).
//!
//! One database holds many tenants (merchants); a store is opened for one, and each tenant has
//! its own positions, its own hash chain and its own projections. The records are the canonical
//! bytes the sled store keeps (`core::event::record`), laid out by the same pure preparation
//! (`core::event::append`), so `audit verify` and `export` give the same answers on both.
//!
//! How an append is made, and why positions are gapless and in commit order: every append's
//! transaction first locks its tenant's row of `bp_tenants`, which holds the log's head (last
//! position and hash). Positions are taken from that row, never from a sequence, and the lock is
//! held until the transaction commits, so the next append sees this one's head only once this
//! one is committed: the committed positions are always `1..=head`, and a reader that reads
//! `position > p` can never miss an event that commits late (the trap of sequences, which are
//! allocated in one order and committed in another). The command id, the expected version and
//! a lease's epoch (the fencing token) are checked under that lock, in the same transaction.
//!
//! Appends of one process are written together: a writer task takes every append waiting and
//! writes them in one transaction (group commit), each checked on its own (a conflict answers
//! only its own append). An append is acknowledged once its transaction has committed
//! (`synchronous_commit` as the server has it: on by default, so on disk).
//!
//! Nodes wake on new events through `LISTEN` / `NOTIFY` (`pg_notify` in the append's
//! transaction, delivered at commit). A notification is only a wake-up: `wait_beyond` always
//! reads the head from the table, and reads it again every second whatever it hears, so a lost
//! notification (a dropped connection, a restarted server) costs at most a second.

mod restore;
pub mod schema;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use battleplan_core::event::append::{prepare, LogHead};
use battleplan_core::event::port::{EventAppender, EventReader};
use battleplan_core::event::record::{self, ChainHash, GENESIS_HASH};
use battleplan_core::event::verify::Verifier;
use battleplan_core::event::{
    Append, AppendOutcome, Checkpoints, Position, RecordedEvent, StoreError, StoreResult, StreamId,
    StreamVersion,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::NoTls;
use uuid::Uuid;

pub use restore::PgRestore;

use crate::sled_store::VerifyReport;

/// The channel `NOTIFY` speaks on; the payload is the tenant.
const CHANNEL: &str = "battleplan_events";
/// How many waiting appends one transaction takes at most.
const MAX_BATCH: usize = 256;
/// How often `wait_beyond` reads the head whatever it hears.
const POLL: Duration = Duration::from_secs(1);
/// Rows read per query when walking the log.
const PAGE: i64 = 10_000;
/// How long the server lets a transaction sit idle (a stopped writer) before ending it.
const IDLE_IN_TRANSACTION_MS: u64 = 10_000;
/// How long a statement waits for a lock before failing (an error, not a hang).
const LOCK_TIMEOUT_MS: u64 = 15_000;
/// How long a caller waits for a connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// The tenant a URL without `tenant=` names.
pub const DEFAULT_TENANT: &str = "default";

/// Where the store is: a PostgreSQL database and a tenant in it. Parsed from a URL
/// (`postgres://USER@HOST:PORT/DATABASE?tenant=NAME`); the password never comes in the URL.
#[derive(Clone)]
pub struct PgLocation {
    config: tokio_postgres::Config,
    tenant: String,
    shown: String,
}

impl fmt::Debug for PgLocation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.shown)
    }
}

impl fmt::Display for PgLocation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.shown)
    }
}

impl PgLocation {
    /// Reads a store URL. A password in it is refused (it would be on a command line, in a
    /// shell's history, in `ps`): give it with [`PgLocation::with_password`]. The error never
    /// repeats the URL.
    pub fn parse(url: &str) -> Result<PgLocation, String> {
        const FORM: &str = "postgres://USER@HOST:PORT/DATABASE?tenant=NAME";
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!("a PostgreSQL store is named by a URL {FORM}"));
        }
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut tenant = DEFAULT_TENANT.to_string();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("tenant", value)) => tenant = value.to_string(),
                Some(("password", _)) => {
                    return Err(password_refused());
                }
                _ => kept.push(pair),
            }
        }
        check_tenant(&tenant)?;
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: tokio_postgres::Config = rebuilt
            .parse()
            .map_err(|error| format!("the store URL is not a PostgreSQL URL ({FORM}): {error}"))?;
        if config.get_password().is_some() {
            return Err(password_refused());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("battleplan");
        // A process stopped or cut off in the middle of an append holds its tenant's head (and
        // a lease row): the server ends such a transaction after a while, so the tenant and a
        // takeover wait for it a bounded time; no wait for a lock is endless either; and a
        // peer that vanished is noticed by TCP keepalives rather than never.
        let ours = format!(
            "-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
        );
        let options = match config.get_options() {
            Some(given) if !given.is_empty() => format!("{ours} {given}"),
            _ => ours,
        };
        config.options(&options);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        let shown = shown(&config, &tenant);
        Ok(PgLocation {
            config,
            tenant,
            shown,
        })
    }

    /// The same location, logging in with `password` (from the environment or a file).
    pub fn with_password(mut self, password: &str) -> PgLocation {
        self.config.password(password);
        self
    }

    /// The same database, another tenant.
    pub fn with_tenant(mut self, tenant: &str) -> Result<PgLocation, String> {
        check_tenant(tenant)?;
        self.tenant = tenant.to_string();
        self.shown = shown(&self.config, tenant);
        Ok(self)
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

fn password_refused() -> String {
    "the store URL holds a password: give it in BATTLEPLAN_STORE_PASSWORD or a file named by BATTLEPLAN_STORE_PASSWORD_FILE, never on the command line".to_string()
}

fn check_tenant(tenant: &str) -> Result<(), String> {
    let fine = !tenant.is_empty()
        && tenant.len() <= 63
        && tenant.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        });
    if fine {
        Ok(())
    } else {
        Err("a tenant is 1 to 63 of a-z, 0-9, - and _".to_string())
    }
}

/// The location in words, without a password: `postgres://user@host:port/db (tenant t)`.
fn shown(config: &tokio_postgres::Config, tenant: &str) -> String {
    let user = config.get_user().unwrap_or("");
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{database} (tenant {tenant})")
}

/// How the store is run.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections in the pool (readers and the writer).
    pub pool_size: usize,
    pub max_record_bytes: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 8,
            max_record_bytes: crate::sled_store::DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// A lease's epoch that an owner's append must still hold: the fencing token. A store refuses
/// the append (`StoreError::Fenced`) once another node has taken the lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub scope: String,
    pub epoch: u64,
}

struct Job {
    append: Append,
    fence: Option<Fence>,
    reply: oneshot::Sender<StoreResult<AppendOutcome>>,
}

/// A point the writer stops at before committing, for the test of late commits: the batch's
/// positions are taken and its rows written, the transaction open.
#[derive(Default)]
struct Gate {
    armed: std::sync::Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

struct Inner {
    location: PgLocation,
    options: PgOptions,
    pool: Pool,
    jobs: mpsc::Sender<Job>,
    /// Moves whenever a notification comes or this process commits an append.
    woken: watch::Sender<u64>,
    gate: Gate,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.pool.close();
    }
}

/// The event log of one tenant in a PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct PgEventLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for PgEventLog {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PgEventLog")
            .field("location", &self.inner.location)
            .finish()
    }
}

pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    // The server's own words where it gave some (never the connection's settings).
    let detail = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            // "error connecting to server: Connection refused": the cause says what to do.
            let mut words = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(inner) = cause {
                words.push_str(": ");
                words.push_str(&inner.to_string());
                cause = inner.source();
            }
            words
        }
    };
    StoreError::Io(format!("PostgreSQL: {detail}"))
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => pg_error(error),
        other => StoreError::Io(format!("PostgreSQL: {other}")),
    }
}

fn position_of(value: i64) -> Position {
    Position(value.max(0) as u64)
}

fn hash_of(bytes: &[u8], position: Position) -> StoreResult<ChainHash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        position,
        detail: format!("the head's hash has {} bytes, not 32", bytes.len()),
    })
}

fn decoded(position: i64, bytes: &[u8]) -> StoreResult<RecordedEvent> {
    let event = record::decode(bytes).map_err(|error| StoreError::Corrupt {
        position: position_of(position),
        detail: error.to_string(),
    })?;
    if event.position != position_of(position) {
        return Err(StoreError::Corrupt {
            position: position_of(position),
            detail: format!("the record there says position {}", event.position),
        });
    }
    Ok(event)
}

impl PgEventLog {
    /// Connects, checks or migrates the schema (a newer one is refused), makes the tenant's row
    /// if it has none, and starts the writer and the listener. Must be called inside a tokio
    /// runtime, which then runs the store's tasks.
    pub async fn open(location: PgLocation, options: PgOptions) -> StoreResult<PgEventLog> {
        Self::open_at_schema(location, options, schema::SCHEMA_VERSION).await
    }

    /// [`PgEventLog::open`], migrating only up to `schema` (tests of migrations).
    #[doc(hidden)]
    pub async fn open_at_schema(
        location: PgLocation,
        options: PgOptions,
        schema: i32,
    ) -> StoreResult<PgEventLog> {
        let manager = Manager::from_config(
            location.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|error| StoreError::Io(format!("PostgreSQL: {error}")))?;
        {
            let mut client = pool.get().await.map_err(pool_error)?;
            let client: &mut tokio_postgres::Client = &mut client;
            schema::migrate(client, schema).await?;
            client
                .execute(
                    "INSERT INTO bp_tenants (tenant, head, head_hash) VALUES ($1, 0, $2)
                     ON CONFLICT (tenant) DO NOTHING",
                    &[&location.tenant, &GENESIS_HASH.as_slice()],
                )
                .await
                .map_err(pg_error)?;
        }
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        let (woken, _) = watch::channel(0u64);
        let mut inner = Inner {
            location,
            options,
            pool,
            jobs,
            woken,
            gate: Gate::default(),
            tasks: Vec::new(),
        };
        let listener = tokio::spawn(listen(inner.location.clone(), inner.woken.clone()));
        inner.tasks.push(listener);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let writer = tokio::spawn(write_loop(weak, receiver));
            inner.tasks.push(writer);
            inner
        });
        Ok(PgEventLog { inner })
    }

    pub fn location(&self) -> &PgLocation {
        &self.inner.location
    }

    pub fn tenant(&self) -> &str {
        &self.inner.location.tenant
    }

    /// Appends under a lease: refused with `StoreError::Fenced` once the lease's epoch has
    /// moved on (another node took it), checked inside the append's transaction.
    pub async fn append_fenced(
        &self,
        append: Append,
        fence: Option<Fence>,
    ) -> StoreResult<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .send(Job {
                append,
                fence,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Holds the next batch's transaction open before its commit until the returned sender is
    /// used or dropped; the first receiver resolves once the writer is holding. Tests only.
    #[doc(hidden)]
    pub fn hold_next_commit(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, reached_receiver) = oneshot::channel();
        let (release, release_receiver) = oneshot::channel();
        if let Ok(mut armed) = self.inner.gate.armed.lock() {
            *armed = Some((reached, release_receiver));
        }
        (reached_receiver, release)
    }

    /// Walks the tenant's whole log in position order and checks positions, the hash chain and
    /// stream versions (the core's verifier, as the sled store does); stops at the first
    /// problem. Reads a page at a time.
    pub async fn verify(&self) -> StoreResult<VerifyReport> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT position, record FROM bp_events WHERE tenant = $1 AND position > $2
                 ORDER BY position LIMIT $3",
            )
            .await
            .map_err(pg_error)?;
        let mut verifier = Verifier::new();
        let mut after = 0i64;
        let mut problem = None;
        'pages: loop {
            let rows = client
                .query(&statement, &[&self.inner.location.tenant, &after, &PAGE])
                .await
                .map_err(pg_error)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let position: i64 = row.get(0);
                let bytes: &[u8] = row.get(1);
                if let Err(found) = verifier.check(position_of(position), bytes) {
                    problem = Some(found);
                    break 'pages;
                }
                after = position;
            }
        }
        Ok(VerifyReport {
            checked: verifier.checked(),
            head_hash: verifier.head_hash_hex(),
            problem,
        })
    }

    /// Whether the tenant's log was started under a rehearsal clock (docs/store.md).
    pub async fn rehearsal(&self) -> StoreResult<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT rehearsal FROM bp_tenants WHERE tenant = $1",
                &[&self.inner.location.tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    /// Marks (or unmarks) the tenant's log as a rehearsal's.
    pub async fn set_rehearsal(&self, rehearsal: bool) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE bp_tenants SET rehearsal = $2 WHERE tenant = $1",
                &[&self.inner.location.tenant, &rehearsal],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Takes or renews the lease on `scope` for `holder`, for `seconds` from the database's own
    /// clock: granted when the scope is free, expired, or already the holder's (renewed, same
    /// epoch); a takeover bumps the epoch. `None` when another holder's lease runs.
    pub async fn acquire_lease(
        &self,
        scope: &str,
        holder: &str,
        seconds: f64,
    ) -> StoreResult<Option<Fence>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO bp_leases AS lease (tenant, scope, holder, epoch, expires_at)
                 VALUES ($1, $2, $3, 1, clock_timestamp() + make_interval(secs => $4))
                 ON CONFLICT (tenant, scope) DO UPDATE
                    SET holder = excluded.holder,
                        epoch = CASE WHEN lease.holder = excluded.holder
                                     THEN lease.epoch ELSE lease.epoch + 1 END,
                        expires_at = excluded.expires_at
                    WHERE lease.holder = excluded.holder OR lease.expires_at < clock_timestamp()
                 RETURNING epoch",
                &[&self.inner.location.tenant, &scope, &holder, &seconds],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|row| Fence {
            scope: scope.to_string(),
            epoch: row.get::<_, i64>(0).max(0) as u64,
        }))
    }

    /// Lets a lease go (a node stopping cleanly), if `holder` still holds it.
    pub async fn release_lease(&self, scope: &str, holder: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE bp_leases SET expires_at = clock_timestamp() - interval '1 second'
                 WHERE tenant = $1 AND scope = $2 AND holder = $3",
                &[&self.inner.location.tenant, &scope, &holder],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Every lease of the tenant: scope, holder, epoch, and whether it still runs.
    pub async fn leases(&self) -> StoreResult<Vec<(String, String, u64, bool)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT scope, holder, epoch, expires_at > clock_timestamp() FROM bp_leases
                 WHERE tenant = $1 ORDER BY scope",
                &[&self.inner.location.tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get(1),
                    row.get::<_, i64>(2).max(0) as u64,
                    row.get(3),
                )
            })
            .collect())
    }

    /// Starts restoring records laid out elsewhere into this tenant, which must be empty.
    pub async fn restore(&self) -> StoreResult<PgRestore> {
        PgRestore::start(self.clone()).await
    }
}

/// Follows `NOTIFY` on its own connection, reconnecting after a pause when it drops; each
/// notification for any tenant moves `woken` (a wake-up only).
async fn listen(location: PgLocation, woken: watch::Sender<u64>) {
    use futures_util::StreamExt as _;
    loop {
        if let Ok((client, mut connection)) = location.config.connect(NoTls).await {
            let mut messages =
                futures_util::stream::poll_fn(move |context| connection.poll_message(context));
            let statement = format!("LISTEN {CHANNEL}");
            let listening = client.batch_execute(&statement);
            // The connection must be polled for the LISTEN to be answered.
            let mut listening = std::pin::pin!(listening);
            let mut started = false;
            loop {
                tokio::select! {
                    done = &mut listening, if !started => {
                        started = true;
                        if done.is_err() {
                            break;
                        }
                        // Anything committed before the LISTEN took effect: read again.
                        woken.send_modify(|count| *count += 1);
                    }
                    message = messages.next() => match message {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(note))) => {
                            if note.payload() == location.tenant {
                                woken.send_modify(|count| *count += 1);
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            }
        }
        woken.send_modify(|count| *count += 1);
        tokio::time::sleep(POLL).await;
    }
}

/// The writer: takes every append waiting and writes them in one transaction.
async fn write_loop(inner: std::sync::Weak<Inner>, mut receiver: mpsc::Receiver<Job>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let (answers, committed) = match write_batch(&inner, &mut batch).await {
            Ok(answers) => (answers, true),
            Err(error) => (batch.iter().map(|_| Err(error.clone())).collect(), false),
        };
        for (job, answer) in batch.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
        if committed {
            inner.woken.send_modify(|count| *count += 1);
        }
    }
}

/// One transaction for a batch of appends: the head locked, then each append checked and laid
/// out after the one before. The answers are given only once the transaction has committed.
async fn write_batch(
    inner: &Inner,
    batch: &mut [Job],
) -> StoreResult<Vec<StoreResult<AppendOutcome>>> {
    let tenant = &inner.location.tenant;
    let mut object = inner.pool.get().await.map_err(pool_error)?;
    let result = write_batch_on(inner, tenant, &mut object, batch).await;
    if result.is_err() {
        // A connection that failed mid-transaction is not given back to the pool.
        let _ = deadpool_postgres::Object::take(object);
    }
    result
}

/// The statements of an append, prepared once per connection (deadpool caches them), so that
/// each costs one round trip and those that do not depend on each other go together.
const LOCK_HEAD: &str = "SELECT head, head_hash FROM bp_tenants WHERE tenant = $1 FOR UPDATE";
const KNOWN_COMMANDS: &str =
    "SELECT command_id, first_position, last_position, first_version, last_version
     FROM bp_commands WHERE tenant = $1 AND command_id = ANY($2)";
// FOR SHARE: a takeover's update of the epoch waits for this append to commit, so an append
// checked against the old epoch is never committed after the new owner began.
const EPOCHS: &str = "SELECT scope, epoch FROM bp_leases WHERE tenant = $1 AND scope = ANY($2)
     FOR SHARE";
const VERSIONS: &str = "SELECT name, (SELECT version FROM bp_events
                       WHERE tenant = $1 AND stream = name
                       ORDER BY version DESC LIMIT 1)
     FROM unnest($2::text[]) AS name";
const INSERT_EVENTS: &str = "INSERT INTO bp_events (tenant, position, stream, version, record)
     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bytea[])";
const INSERT_COMMANDS: &str = "INSERT INTO bp_commands
        (tenant, command_id, first_position, last_position, first_version, last_version)
     SELECT $1, * FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])";
const MOVE_HEAD: &str = "UPDATE bp_tenants SET head = $2, head_hash = $3 WHERE tenant = $1";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

async fn write_batch_on(
    inner: &Inner,
    tenant: &String,
    object: &mut deadpool_postgres::Object,
    batch: &mut [Job],
) -> StoreResult<Vec<StoreResult<AppendOutcome>>> {
    let mut statements = Vec::new();
    for sql in [
        LOCK_HEAD,
        KNOWN_COMMANDS,
        VERSIONS,
        INSERT_EVENTS,
        INSERT_COMMANDS,
        MOVE_HEAD,
        NOTIFY,
    ] {
        statements.push(object.prepare_cached(sql).await.map_err(pg_error)?);
    }
    let [lock_head, known_commands, versions_of, insert_events, insert_commands, move_head, notify] =
        <[tokio_postgres::Statement; 7]>::try_from(statements)
            .map_err(|_| StoreError::Io("PostgreSQL: statements not prepared".into()))?;
    // Only fenced appends read the leases (a store opened at an older schema has none).
    let fenced = batch.iter().any(|job| job.fence.is_some());
    let epochs_of = match fenced {
        true => Some(object.prepare_cached(EPOCHS).await.map_err(pg_error)?),
        false => None,
    };
    let transaction = object.transaction().await.map_err(pg_error)?;

    let command_ids: Vec<Uuid> = batch
        .iter()
        .map(|job| job.append.metadata.command_id.0)
        .collect();
    let mut scopes: Vec<&str> = batch
        .iter()
        .filter_map(|job| job.fence.as_ref().map(|fence| fence.scope.as_str()))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let mut streams: Vec<&str> = batch.iter().map(|job| job.append.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    // Sent together, run in order: the head is locked before anything is looked up.
    let (head_row, command_rows, epoch_rows, version_rows) = futures_util::future::try_join4(
        transaction.query_one(&lock_head, &[tenant]),
        transaction.query(&known_commands, &[tenant, &command_ids]),
        async {
            match &epochs_of {
                Some(statement) => transaction.query(statement, &[tenant, &scopes]).await,
                None => Ok(Vec::new()),
            }
        },
        transaction.query(&versions_of, &[tenant, &streams]),
    )
    .await
    .map_err(pg_error)?;
    let head_position = position_of(head_row.get(0));
    let mut head = LogHead {
        position: head_position,
        hash: hash_of(head_row.get(1), head_position)?,
    };
    let mut known: HashMap<Uuid, AppendOutcome> = HashMap::new();
    for row in command_rows {
        known.insert(
            row.get(0),
            AppendOutcome {
                first_position: position_of(row.get(1)),
                last_position: position_of(row.get(2)),
                first_version: StreamVersion(row.get::<_, i64>(3).max(0) as u64),
                last_version: StreamVersion(row.get::<_, i64>(4).max(0) as u64),
                deduplicated: true,
            },
        );
    }
    let mut epochs: HashMap<String, u64> = HashMap::new();
    for row in epoch_rows {
        epochs.insert(row.get(0), row.get::<_, i64>(1).max(0) as u64);
    }
    let mut versions: HashMap<String, StreamVersion> = HashMap::new();
    for row in version_rows {
        let version: Option<i64> = row.get(1);
        versions.insert(
            row.get(0),
            StreamVersion(version.unwrap_or(0).max(0) as u64),
        );
    }

    let mut answers = Vec::with_capacity(batch.len());
    let mut positions: Vec<i64> = Vec::new();
    let mut stream_names: Vec<String> = Vec::new();
    let mut stream_versions: Vec<i64> = Vec::new();
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut commands: (Vec<Uuid>, [Vec<i64>; 4]) = (Vec::new(), Default::default());
    for job in batch.iter() {
        let command = job.append.metadata.command_id.0;
        if let Some(outcome) = known.get(&command) {
            answers.push(Ok(AppendOutcome {
                deduplicated: true,
                ..*outcome
            }));
            continue;
        }
        if let Some(fence) = &job.fence {
            let current = epochs.get(&fence.scope).copied();
            if current != Some(fence.epoch) {
                answers.push(Err(StoreError::Fenced {
                    scope: fence.scope.clone(),
                    held: fence.epoch,
                    current: current.unwrap_or(0),
                }));
                continue;
            }
        }
        let current = versions
            .get(job.append.stream.as_str())
            .copied()
            .unwrap_or(StreamVersion::NONE);
        let prepared = match prepare(
            job.append.clone(),
            head,
            current,
            inner.options.max_record_bytes,
        ) {
            Ok(prepared) => prepared,
            Err(error) => {
                answers.push(Err(error));
                continue;
            }
        };
        for (position, bytes, recorded) in prepared.records {
            positions.push(position.0 as i64);
            stream_names.push(recorded.stream.as_str().to_string());
            stream_versions.push(recorded.version.0 as i64);
            records.push(bytes);
        }
        head = prepared.new_head;
        versions.insert(job.append.stream.as_str().to_string(), prepared.new_version);
        let outcome = prepared.outcome;
        commands.0.push(command);
        commands.1[0].push(outcome.first_position.0 as i64);
        commands.1[1].push(outcome.last_position.0 as i64);
        commands.1[2].push(outcome.first_version.0 as i64);
        commands.1[3].push(outcome.last_version.0 as i64);
        known.insert(command, outcome);
        answers.push(Ok(outcome));
    }

    if !positions.is_empty() {
        let head_position = head.position.0 as i64;
        futures_util::future::try_join4(
            transaction.execute(
                &insert_events,
                &[
                    tenant,
                    &positions,
                    &stream_names,
                    &stream_versions,
                    &records,
                ],
            ),
            transaction.execute(
                &insert_commands,
                &[
                    tenant,
                    &commands.0,
                    &commands.1[0],
                    &commands.1[1],
                    &commands.1[2],
                    &commands.1[3],
                ],
            ),
            transaction.execute(&move_head, &[tenant, &head_position, &head.hash.as_slice()]),
            transaction.execute(&notify, &[&CHANNEL, tenant]),
        )
        .await
        .map_err(pg_error)?;
        let armed = inner
            .gate
            .armed
            .lock()
            .ok()
            .and_then(|mut armed| armed.take());
        if let Some((reached, release)) = armed {
            let _ = reached.send(());
            let _ = release.await;
        }
    }
    transaction.commit().await.map_err(pg_error)?;
    Ok(answers)
}

#[async_trait]
impl EventAppender for PgEventLog {
    async fn append(&self, append: Append) -> StoreResult<AppendOutcome> {
        self.append_fenced(append, None).await
    }
}

#[async_trait]
impl EventReader for PgEventLog {
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT position, record FROM bp_events
                 WHERE tenant = $1 AND stream = $2 AND version >= $3
                 ORDER BY version LIMIT $4",
            )
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &statement,
                &[
                    &self.inner.location.tenant,
                    &stream.as_str(),
                    &(from.0.min(i64::MAX as u64) as i64),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| decoded(row.get(0), row.get(1)))
            .collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT position, record FROM bp_events WHERE tenant = $1 AND position > $2
                 ORDER BY position LIMIT $3",
            )
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &statement,
                &[
                    &self.inner.location.tenant,
                    &(after.0.min(i64::MAX as u64) as i64),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| decoded(row.get(0), row.get(1)))
            .collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<StreamVersion> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT version FROM bp_events WHERE tenant = $1 AND stream = $2
                 ORDER BY version DESC LIMIT 1",
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(&statement, &[&self.inner.location.tenant, &stream.as_str()])
            .await
            .map_err(pg_error)?;
        Ok(StreamVersion(
            row.map_or(0, |row| row.get::<_, i64>(0)).max(0) as u64,
        ))
    }

    async fn head(&self) -> StoreResult<Position> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT head FROM bp_tenants WHERE tenant = $1")
            .await
            .map_err(pg_error)?;
        let row = client
            .query_one(&statement, &[&self.inner.location.tenant])
            .await
            .map_err(pg_error)?;
        Ok(position_of(row.get(0)))
    }

    async fn wait_beyond(&self, position: Position) -> StoreResult<()> {
        let mut woken = self.inner.woken.subscribe();
        loop {
            woken.borrow_and_update();
            if self.head().await? > position {
                return Ok(());
            }
            // A wake-up or a second, whichever comes first; the head is read again either way.
            let _ = tokio::time::timeout(POLL, woken.changed()).await;
        }
    }
}

#[async_trait]
impl Checkpoints for PgEventLog {
    async fn checkpoint(&self, projection: &str) -> StoreResult<Position> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT position FROM bp_checkpoints WHERE tenant = $1 AND projection = $2",
                &[&self.inner.location.tenant, &projection],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map_or(Position::START, |row| position_of(row.get(0))))
    }

    async fn get(&self, projection: &str, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM bp_projections WHERE tenant = $1 AND projection = $2 AND key = $3",
                &[&self.inner.location.tenant, &projection, &key],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn commit(
        &self,
        projection: &str,
        checkpoint: Position,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> StoreResult<()> {
        let tenant = &self.inner.location.tenant;
        let mut object = self.client().await?;
        let transaction = object.transaction().await.map_err(pg_error)?;
        transaction
            .execute(
                "INSERT INTO bp_checkpoints (tenant, projection, position) VALUES ($1, $2, 0)
                 ON CONFLICT (tenant, projection) DO NOTHING",
                &[tenant, &projection],
            )
            .await
            .map_err(pg_error)?;
        let current = position_of(
            transaction
                .query_one(
                    "SELECT position FROM bp_checkpoints WHERE tenant = $1 AND projection = $2
                     FOR UPDATE",
                    &[tenant, &projection],
                )
                .await
                .map_err(pg_error)?
                .get(0),
        );
        if checkpoint < current {
            return Err(StoreError::Invalid(format!(
                "projection {projection} is at {current}; its checkpoint cannot move back to {checkpoint}"
            )));
        }
        // The last change of a key wins, as when they are applied one by one.
        let mut last: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        for (key, value) in changes {
            last.insert(key, value);
        }
        let (mut put_keys, mut put_values, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in last {
            match value {
                Some(value) => {
                    put_keys.push(key);
                    put_values.push(value);
                }
                None => deleted.push(key),
            }
        }
        if !deleted.is_empty() {
            transaction
                .execute(
                    "DELETE FROM bp_projections
                     WHERE tenant = $1 AND projection = $2 AND key = ANY($3)",
                    &[tenant, &projection, &deleted],
                )
                .await
                .map_err(pg_error)?;
        }
        if !put_keys.is_empty() {
            transaction
                .execute(
                    "INSERT INTO bp_projections (tenant, projection, key, value)
                     SELECT $1, $2, * FROM unnest($3::bytea[], $4::bytea[])
                     ON CONFLICT (tenant, projection, key) DO UPDATE SET value = excluded.value",
                    &[tenant, &projection, &put_keys, &put_values],
                )
                .await
                .map_err(pg_error)?;
        }
        transaction
            .execute(
                "UPDATE bp_checkpoints SET position = $3 WHERE tenant = $1 AND projection = $2",
                &[
                    tenant,
                    &projection,
                    &(checkpoint.0.min(i64::MAX as u64) as i64),
                ],
            )
            .await
            .map_err(pg_error)?;
        transaction.commit().await.map_err(pg_error)
    }

    async fn scan(&self, projection: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, value FROM bp_projections WHERE tenant = $1 AND projection = $2
                 ORDER BY key",
                &[&self.inner.location.tenant, &projection],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    async fn reset(&self, projection: &str) -> StoreResult<()> {
        let tenant = &self.inner.location.tenant;
        let mut object = self.client().await?;
        let transaction = object.transaction().await.map_err(pg_error)?;
        transaction
            .execute(
                "DELETE FROM bp_projections WHERE tenant = $1 AND projection = $2",
                &[tenant, &projection],
            )
            .await
            .map_err(pg_error)?;
        transaction
            .execute(
                "DELETE FROM bp_checkpoints WHERE tenant = $1 AND projection = $2",
                &[tenant, &projection],
            )
            .await
            .map_err(pg_error)?;
        transaction.commit().await.map_err(pg_error)
    }
}
