//! The tables, and how a database gets them: a list of migrations, each applied once, in order,
//! in one transaction with the version it reaches, under an advisory lock so that nodes starting
//! together do not race. A database whose schema is newer than this battleplan's is refused.

use battleplan_core::event::StoreError;
use tokio_postgres::Client;

use super::pg_error;

/// The schema this battleplan writes.
pub const SCHEMA_VERSION: i32 = 3;

/// The advisory lock taken while the schema is checked or migrated ("battlepl" in ASCII).
const MIGRATION_LOCK: i64 = 0x6261_7474_6c65_706c;

/// Each migration takes the schema from its index to its index + 1.
pub const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: the log. One row per tenant holds its head (position and hash): every append locks it,
    // which is what makes positions gapless and in commit order. Records are the canonical bytes
    // of `core::event::record`, the same the sled store keeps, so the chain is the same.
    "CREATE TABLE bp_tenants (
         tenant text PRIMARY KEY,
         head bigint NOT NULL,
         head_hash bytea NOT NULL,
         rehearsal boolean NOT NULL DEFAULT false,
         created_at timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE bp_events (
         tenant text NOT NULL REFERENCES bp_tenants (tenant),
         position bigint NOT NULL,
         stream text NOT NULL,
         version bigint NOT NULL,
         record bytea NOT NULL,
         PRIMARY KEY (tenant, position),
         UNIQUE (tenant, stream, version)
     );
     CREATE TABLE bp_commands (
         tenant text NOT NULL REFERENCES bp_tenants (tenant),
         command_id uuid NOT NULL,
         first_position bigint NOT NULL,
         last_position bigint NOT NULL,
         first_version bigint NOT NULL,
         last_version bigint NOT NULL,
         PRIMARY KEY (tenant, command_id)
     );",
    // 2: projections' state and checkpoints, changed together in one transaction.
    "CREATE TABLE bp_checkpoints (
         tenant text NOT NULL REFERENCES bp_tenants (tenant),
         projection text NOT NULL,
         position bigint NOT NULL,
         PRIMARY KEY (tenant, projection)
     );
     CREATE TABLE bp_projections (
         tenant text NOT NULL REFERENCES bp_tenants (tenant),
         projection text NOT NULL,
         key bytea NOT NULL,
         value bytea NOT NULL,
         PRIMARY KEY (tenant, projection, key)
     );",
    // 3: leases: which node owns what, and the epoch (fencing token) an owner's appends carry.
    "CREATE TABLE bp_leases (
         tenant text NOT NULL REFERENCES bp_tenants (tenant),
         scope text NOT NULL,
         holder text NOT NULL,
         epoch bigint NOT NULL,
         expires_at timestamptz NOT NULL,
         PRIMARY KEY (tenant, scope)
     );",
];

/// Brings the database's schema to [`SCHEMA_VERSION`] (or to `target`, for tests of
/// migrations), in one transaction; refuses a newer one. Returns the version found.
pub async fn migrate(client: &mut Client, target: i32) -> Result<i32, StoreError> {
    let transaction = client.transaction().await.map_err(pg_error)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS battleplan_schema (
                 only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                 version integer NOT NULL
             )",
        )
        .await
        .map_err(pg_error)?;
    let found: i32 = transaction
        .query_opt("SELECT version FROM battleplan_schema", &[])
        .await
        .map_err(pg_error)?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerFormat {
            found: found as u32,
            supported: SCHEMA_VERSION as u32,
        });
    }
    for migration in MIGRATIONS
        .iter()
        .take(target.clamp(0, SCHEMA_VERSION) as usize)
        .skip(found as usize)
    {
        transaction
            .batch_execute(migration)
            .await
            .map_err(pg_error)?;
    }
    if target > found {
        transaction
            .execute(
                "INSERT INTO battleplan_schema (only_row, version) VALUES (true, $1)
                 ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                &[&target.min(SCHEMA_VERSION)],
            )
            .await
            .map_err(pg_error)?;
    }
    transaction.commit().await.map_err(pg_error)?;
    Ok(found)
}
