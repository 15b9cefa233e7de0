//! Restoring records laid out elsewhere (an export, another store's log) into an empty tenant,
//! verbatim: positions, ids, instants and hashes as given, each checked by the core's verifier as
//! it comes. The whole restore is one transaction on a connection of its own, holding the
//! tenant's head locked: a restore cut short (an error, a crash, a dropped connection) leaves
//! the tenant as it was, empty, and no append can slip in meanwhile.

use std::collections::HashSet;

use battleplan_core::event::record;
use battleplan_core::event::verify::Verifier;
use battleplan_core::event::{CommandId, Position, StoreError, StoreResult};
use uuid::Uuid;

use super::{pg_error, pool_error, PgEventLog};
use crate::sled_store::RestoreError;

/// Rows sent to the server at a time.
const FLUSH_ROWS: usize = 2_000;

/// One append being gathered: consecutive records of one command id on one stream.
struct Gathered {
    command: CommandId,
    stream: String,
    first_position: i64,
    first_version: i64,
    count: i64,
}

/// A restore under way. Feed every record in order with [`PgRestore::push`], then
/// [`PgRestore::finish`]; dropped before, nothing of it stays.
pub struct PgRestore {
    store: PgEventLog,
    client: Option<deadpool_postgres::Object>,
    verifier: Verifier,
    gathered: Option<Gathered>,
    seen: HashSet<CommandId>,
    events: (Vec<i64>, Vec<String>, Vec<i64>, Vec<Vec<u8>>),
    commands: (Vec<Uuid>, [Vec<i64>; 4]),
}

impl std::fmt::Debug for PgRestore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PgRestore")
            .field("store", &self.store)
            .field("records", &self.verifier.checked())
            .finish()
    }
}

impl Drop for PgRestore {
    fn drop(&mut self) {
        // A connection left inside the transaction is closed, never given back: the server
        // rolls the restore back.
        if let Some(client) = self.client.take() {
            let _ = deadpool_postgres::Object::take(client);
        }
    }
}

impl PgRestore {
    pub(super) async fn start(store: PgEventLog) -> StoreResult<PgRestore> {
        let client = store.inner.pool.get().await.map_err(pool_error)?;
        // A restore reads its source between writes for as long as it takes, under the head's
        // lock by design: the session's idle limit does not apply to it.
        client
            .batch_execute("SET idle_in_transaction_session_timeout = 0; BEGIN")
            .await
            .map_err(pg_error)?;
        let restore = PgRestore {
            store,
            client: Some(client),
            verifier: Verifier::new(),
            gathered: None,
            seen: HashSet::new(),
            events: Default::default(),
            commands: Default::default(),
        };
        let tenant = restore.store.inner.location.tenant.clone();
        let head: i64 = restore
            .client()?
            .query_one(
                "SELECT head FROM bp_tenants WHERE tenant = $1 FOR UPDATE",
                &[&tenant],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if head != 0 {
            return Err(StoreError::Invalid(format!(
                "a log is restored into an empty tenant; {} holds {head} events",
                restore.store.inner.location
            )));
        }
        Ok(restore)
    }

    fn client(&self) -> StoreResult<&deadpool_postgres::Object> {
        self.client.as_ref().ok_or(StoreError::Closed)
    }

    /// How many records have been taken.
    pub fn records(&self) -> u64 {
        self.verifier.checked()
    }

    /// The hash of the last record taken: the head of the chain.
    pub fn head_hash_hex(&self) -> String {
        self.verifier.head_hash_hex()
    }

    /// Takes the next record (its stored bytes). It must be at the next position and continue
    /// the chain.
    pub async fn push(&mut self, bytes: Vec<u8>) -> Result<(), RestoreError> {
        let limit = self.store.inner.options.max_record_bytes;
        let position = Position(self.verifier.checked() + 1);
        if bytes.len() > limit {
            return Err(RestoreError::Refused {
                position,
                detail: format!(
                    "a record of {} bytes is larger than the store's limit of {limit} bytes",
                    bytes.len()
                ),
            });
        }
        self.verifier
            .check(position, &bytes)
            .map_err(RestoreError::Damaged)?;
        let event = record::decode(&bytes).map_err(|error| RestoreError::Refused {
            position,
            detail: error.to_string(),
        })?;
        let command = event.metadata.command_id;
        let continues = self.gathered.as_ref().is_some_and(|gathered| {
            gathered.command == command && gathered.stream == event.stream.as_str()
        });
        if continues {
            if let Some(gathered) = &mut self.gathered {
                gathered.count += 1;
            }
        } else {
            self.close_gathered();
            if !self.seen.insert(command) {
                return Err(RestoreError::Refused {
                    position,
                    detail: format!(
                        "command {command} already recorded an earlier append; a command is recorded once"
                    ),
                });
            }
            self.gathered = Some(Gathered {
                command,
                stream: event.stream.as_str().to_string(),
                first_position: position.0 as i64,
                first_version: event.version.0 as i64,
                count: 1,
            });
        }
        self.events.0.push(position.0 as i64);
        self.events.1.push(event.stream.as_str().to_string());
        self.events.2.push(event.version.0 as i64);
        self.events.3.push(bytes);
        if self.events.0.len() >= FLUSH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    fn close_gathered(&mut self) {
        if let Some(gathered) = self.gathered.take() {
            self.commands.0.push(gathered.command.0);
            self.commands.1[0].push(gathered.first_position);
            self.commands.1[1].push(gathered.first_position + gathered.count - 1);
            self.commands.1[2].push(gathered.first_version);
            self.commands.1[3].push(gathered.first_version + gathered.count - 1);
        }
    }

    async fn flush(&mut self) -> Result<(), RestoreError> {
        let tenant = self.store.inner.location.tenant.clone();
        let events = std::mem::take(&mut self.events);
        let commands = std::mem::take(&mut self.commands);
        let client = self.client()?;
        if !events.0.is_empty() {
            client
                .execute(
                    "INSERT INTO bp_events (tenant, position, stream, version, record)
                     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bytea[])",
                    &[&tenant, &events.0, &events.1, &events.2, &events.3],
                )
                .await
                .map_err(pg_error)?;
        }
        if !commands.0.is_empty() {
            client
                .execute(
                    "INSERT INTO bp_commands (tenant, command_id, first_position, last_position,
                                              first_version, last_version)
                     SELECT $1, * FROM unnest($2::uuid[], $3::bigint[], $4::bigint[],
                                              $5::bigint[], $6::bigint[])",
                    &[
                        &tenant,
                        &commands.0,
                        &commands.1[0],
                        &commands.1[1],
                        &commands.1[2],
                        &commands.1[3],
                    ],
                )
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Stores what is left, moves the head and commits: the restored log appears whole, at
    /// once. Returns the store.
    pub async fn finish(mut self) -> Result<PgEventLog, RestoreError> {
        self.close_gathered();
        self.flush().await?;
        let tenant = self.store.inner.location.tenant.clone();
        let head = self.verifier.checked() as i64;
        let hash = self.verifier.head_hash();
        let client = self.client()?;
        client
            .execute(
                "UPDATE bp_tenants SET head = $2, head_hash = $3 WHERE tenant = $1",
                &[&tenant, &head, &hash.as_slice()],
            )
            .await
            .map_err(pg_error)?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&super::CHANNEL, &tenant])
            .await
            .map_err(pg_error)?;
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        Ok(self.store.clone())
    }
}
