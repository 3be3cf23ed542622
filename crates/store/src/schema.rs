//! The store's SQL schema and its migrations, versioned with `PRAGMA user_version`:
//! each step moves the file one version up, inside a transaction.

use crate::StoreError;
use rusqlite::Connection;
use std::path::Path;

/// Migrations in order; `MIGRATIONS[n]` takes a file from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: cloud image, delta links and times, joins, runs.
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
     CREATE TABLE cloud_groups (id TEXT PRIMARY KEY NOT NULL, json TEXT NOT NULL);
     CREATE TABLE cloud_users (id TEXT PRIMARY KEY NOT NULL, json TEXT NOT NULL);
     CREATE TABLE joins (
         group_id TEXT PRIMARY KEY NOT NULL,
         guid TEXT NOT NULL UNIQUE,
         sid TEXT,
         dn TEXT NOT NULL
     );
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         started_at TEXT NOT NULL,
         finished_at TEXT NOT NULL,
         mode TEXT NOT NULL CHECK (mode IN ('delta', 'full')),
         status TEXT NOT NULL,
         staging INTEGER NOT NULL,
         counts TEXT NOT NULL,
         graph_requests INTEGER NOT NULL,
         ldap_writes INTEGER NOT NULL,
         errors TEXT NOT NULL,
         message TEXT,
         plan TEXT
     );",
    // 2: the process that runs a cycle, so a run left `running` by a killed process is
    // told from one still in progress.
    "ALTER TABLE runs ADD COLUMN pid INTEGER;",
    // 3: the AD image (groups of the managed OUs and joined ones, by objectGUID) and the
    // member-resolution cache (lookup → object, NULL = asked and not found), kept between
    // cycles so a cycle reads only what changed in AD (by USN).
    "CREATE TABLE ad_groups (guid TEXT PRIMARY KEY NOT NULL, json TEXT NOT NULL);
     CREATE TABLE ad_lookups (lookup TEXT PRIMARY KEY NOT NULL, json TEXT);",
    // 4: drift found and put back, one row per change, kept as long as its run (the runs'
    // plans are pruned much sooner).
    "CREATE TABLE drift (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         run_id INTEGER NOT NULL,
         at TEXT NOT NULL,
         at_unix INTEGER NOT NULL,
         group_id TEXT NOT NULL,
         json TEXT NOT NULL
     );
     CREATE INDEX drift_at ON drift (at_unix);",
    // 5: devices of the cloud image (members written as their computer accounts), and
    // joins of AD groups adopted in place (existed before writeback: never deleted).
    "CREATE TABLE cloud_devices (id TEXT PRIMARY KEY NOT NULL, json TEXT NOT NULL);
     ALTER TABLE joins ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;",
    // 6: the latest outcome of each group, one row per group (a cycle writes the rows of
    // the groups it planned; a run keeps only its own operations). `errors` (0 or 1) tells
    // the rows with errors (GroupOutcome::has_errors) without decoding them.
    "CREATE TABLE outcomes (
         group_id TEXT PRIMARY KEY NOT NULL,
         errors INTEGER NOT NULL,
         json TEXT NOT NULL
     );",
    // 7: the member lists of big groups in chunk rows (see `chunks.rs`): a change of one
    // member rewrites one chunk, not the group's whole row. Rows written before keep their
    // members inline until the group is written again.
    "CREATE TABLE cloud_group_chunks (
         id TEXT NOT NULL,
         chunk INTEGER NOT NULL,
         fp INTEGER NOT NULL,
         json TEXT NOT NULL,
         PRIMARY KEY (id, chunk)
     ) WITHOUT ROWID;
     CREATE TABLE ad_group_chunks (
         guid TEXT NOT NULL,
         chunk INTEGER NOT NULL,
         fp INTEGER NOT NULL,
         json TEXT NOT NULL,
         PRIMARY KEY (guid, chunk)
     ) WITHOUT ROWID;",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |operation| move |source| StoreError::Sql { operation, source };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("read schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, step) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction().map_err(sql("begin migration"))?;
        tx.execute_batch(step).map_err(sql("migrate schema"))?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(sql("set schema version"))?;
        tx.commit().map_err(sql("commit migration"))?;
    }
    Ok(())
}
