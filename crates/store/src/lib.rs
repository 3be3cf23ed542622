//! writeback's state store: one SQLite file (WAL) holding the cloud image, the Graph delta
//! links, the joins between cloud groups and AD groups, and the run history.
//!
//! Every state change of a cycle is one [`Store::commit`], one transaction: a cycle killed
//! at any instant leaves either the previous state or the new one, never a mix. Groups and
//! users are stored as one JSON row each, keyed by id, so a delta cycle writes only the
//! rows it changed; a big group's members sit in chunk rows of their own (`chunks.rs`), so
//! a change of one member rewrites one chunk.

mod chunks;
mod run;
mod schema;

pub use run::{ObjectError, RunRecord, RunStatus};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_model::{
    AdGroup, AdObjectRef, CloudDevice, CloudGroup, CloudSnapshot, CloudUser, DriftEvent,
    ForeignObject, GroupOutcome, Join, Joins, Lookup, ObjectId, Plan, PlanCounts, Resolutions,
};

/// Errors of the state store; each names the store file or the row and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open state store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {path} has schema version {found}, newer than this writeback understands ({supported}); upgrade writeback")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("state store: {operation} failed: {source}")]
    Sql {
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store: {what} is unreadable: {message}")]
    Corrupt { what: String, message: String },
    #[error("state store {path}: {operation}: {source}")]
    File {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn open_error(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// A connection to the store's file that waits for a writer rather than failing.
fn connect(path: &Path, flags: rusqlite::OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(open_error(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_error(path))?;
    Ok(conn)
}

fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { operation, source }
}

/// Everything a cycle needs from the previous ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub cloud: CloudSnapshot,
    pub group_delta_link: Option<String>,
    pub user_delta_link: Option<String>,
    #[serde(default)]
    pub device_delta_link: Option<String>,
    pub joins: Joins,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_full_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_config_refresh_at: Option<OffsetDateTime>,
    /// Fingerprint of the configuration and of the managed OUs after the last cycle that
    /// left nothing to retry (see the CLI's quiet cycles).
    pub quiet_fingerprint: Option<String>,
    /// What the stored AD image reflects (the CLI's own JSON: DC, USN, configuration); the
    /// image itself is read with [`Store::load_ad`].
    pub ad_image: Option<String>,
}

/// See [`Store::ad_interest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdInterest {
    /// objectGUIDs (lower-case) of the AD image's groups and of the joins.
    pub guids: std::collections::BTreeSet<String>,
    pub lookups: Vec<(Lookup, Option<AdObjectRef>)>,
}

impl SyncState {
    /// The links, times and fingerprints without the images (cheap to copy).
    pub fn clone_meta(&self) -> SyncState {
        SyncState {
            cloud: CloudSnapshot::default(),
            joins: Joins::new(),
            group_delta_link: self.group_delta_link.clone(),
            user_delta_link: self.user_delta_link.clone(),
            device_delta_link: self.device_delta_link.clone(),
            last_full_at: self.last_full_at,
            last_config_refresh_at: self.last_config_refresh_at,
            quiet_fingerprint: self.quiet_fingerprint.clone(),
            ad_image: self.ad_image.clone(),
        }
    }
}

/// The stored AD image: groups by objectGUID and the member-resolution cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdImageRows {
    pub groups: Vec<AdGroup>,
    /// Each lookup asked, with what it found.
    pub resolutions: Resolutions,
}

/// The state change of one cycle, written in one transaction together with its run record.
///
/// Order of application: `replace_cloud` (empties groups, users and devices), removals, upserts,
/// links and times, joins, run. A `None` link or time leaves the stored value unchanged.
#[derive(Debug, Clone, Serialize)]
pub struct Commit<'a> {
    /// Forget every stored group and user first (a full round replaces the image).
    pub replace_cloud: bool,
    pub upsert_groups: Vec<&'a CloudGroup>,
    pub remove_groups: Vec<ObjectId>,
    pub upsert_users: Vec<&'a CloudUser>,
    pub remove_users: Vec<ObjectId>,
    pub upsert_devices: Vec<&'a CloudDevice>,
    pub remove_devices: Vec<ObjectId>,
    pub group_delta_link: Option<String>,
    pub user_delta_link: Option<String>,
    pub device_delta_link: Option<String>,
    pub joins_upsert: Vec<Join>,
    pub joins_remove: Vec<ObjectId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub full_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub config_refresh_at: Option<OffsetDateTime>,
    /// `Some("")` clears the stored fingerprint; `None` leaves it.
    pub quiet_fingerprint: Option<String>,
    /// Forget the stored AD image (groups and lookups) first: it was read again in full.
    pub replace_ad: bool,
    pub ad_groups_upsert: Vec<&'a AdGroup>,
    pub ad_groups_remove: Vec<String>,
    pub ad_lookups_upsert: Vec<(&'a Lookup, Option<&'a AdObjectRef>)>,
    pub ad_lookups_remove: Vec<&'a Lookup>,
    /// What the AD image now reflects; `None` leaves it.
    pub ad_image: Option<String>,
    /// Drift this run found (and put back), recorded with the run's id and start time.
    pub drift: Vec<DriftEvent>,
    /// The groups' latest outcomes this cycle planned; `None` leaves them.
    pub outcomes: Option<OutcomesUpdate<'a>>,
    pub run: RunRecord,
}

/// A change of the stored outcomes (what `status`, the dashboard and the next quiet cycle
/// read): the groups a cycle planned, the groups gone, and the plan-wide parts.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomesUpdate<'a> {
    /// Forget every stored outcome first (the plan covered every group).
    pub replace: bool,
    /// Kept as given: slim them first (see [`GroupOutcome::slim`]).
    pub upsert: Vec<&'a GroupOutcome>,
    pub remove: Vec<ObjectId>,
    pub foreign: &'a [ForeignObject],
    pub notices: &'a [String],
}

/// One drift of the history: when, in which run, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRecord {
    pub run: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event: DriftEvent,
}

impl<'a> Commit<'a> {
    /// A commit that changes nothing but records `run`; fill in the fields that change.
    pub fn for_run(run: RunRecord) -> Self {
        Commit {
            replace_cloud: false,
            upsert_groups: Vec::new(),
            remove_groups: Vec::new(),
            upsert_users: Vec::new(),
            remove_users: Vec::new(),
            upsert_devices: Vec::new(),
            remove_devices: Vec::new(),
            group_delta_link: None,
            user_delta_link: None,
            device_delta_link: None,
            joins_upsert: Vec::new(),
            joins_remove: Vec::new(),
            full_at: None,
            config_refresh_at: None,
            quiet_fingerprint: None,
            replace_ad: false,
            ad_groups_upsert: Vec::new(),
            ad_groups_remove: Vec::new(),
            ad_lookups_upsert: Vec::new(),
            ad_lookups_remove: Vec::new(),
            ad_image: None,
            drift: Vec::new(),
            outcomes: None,
            run,
        }
    }
}

/// The state store (one SQLite file).
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const META_GROUP_DELTA_LINK: &str = "group_delta_link";
const META_USER_DELTA_LINK: &str = "user_delta_link";
const META_DEVICE_DELTA_LINK: &str = "device_delta_link";
const META_LAST_FULL_AT: &str = "last_full_at";
const META_LAST_CONFIG_REFRESH_AT: &str = "last_config_refresh_at";
const META_QUIET_FINGERPRINT: &str = "quiet_fingerprint";
const META_AD_IMAGE: &str = "ad_image";
/// Counts the commits (see [`Store::load_with_ad`]).
const META_GENERATION: &str = "generation";
/// JSON of the latest plan's foreign objects and notices; present once the outcomes table
/// is kept (before, the latest run's plan held the outcomes).
const META_PLAN_FOREIGN: &str = "plan_foreign";
const META_PLAN_NOTICES: &str = "plan_notices";

impl Store {
    /// Opens the store at `path`, creating it or migrating its schema as needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        restrict_to_owner(path)?;
        let mut conn = connect(path, rusqlite::OpenFlags::default())?;
        // WAL: readers (status, dashboard) never block the cycle's commit and vice versa.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(open_error(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error(path))?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole state.
    pub fn load(&self) -> Result<SyncState, StoreError> {
        let mut state = SyncState::default();

        state.cloud.groups = self.read_rows(&Table::CLOUD_GROUPS, "cloud group")?;
        let chunked = chunks::read_all(&self.conn, &chunks::ChunkTable::CLOUD_GROUPS)?;
        for (id, members) in chunked {
            if let Some(g) = state.cloud.groups.get_mut(&id) {
                // In order: the set is built in one go.
                let mut all: Vec<_> = std::mem::take(&mut g.members).into_iter().collect();
                all.extend(members);
                g.members = all.into_iter().collect();
            }
        }
        // One copy of each member id, as when the image was made (a row per group holds
        // its own copies).
        state.cloud.share_ids();
        state.cloud.users = self.read_rows(&Table::CLOUD_USERS, "cloud user")?.into();
        state.cloud.devices = self.read_rows(&Table::CLOUD_DEVICES, "cloud device")?;

        let mut stmt = self
            .conn
            .prepare("SELECT group_id, guid, sid, dn, adopted FROM joins")
            .map_err(sql("read joins"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Join {
                    group: r.get(0)?,
                    guid: r.get(1)?,
                    sid: r.get(2)?,
                    dn: r.get(3)?,
                    adopted: r.get::<_, i64>(4)? != 0,
                })
            })
            .map_err(sql("read joins"))?;
        for row in rows {
            let join = row.map_err(sql("read joins"))?;
            state.joins.insert(join.group.clone(), join);
        }

        self.fill_meta(&mut state)?;
        Ok(state)
    }

    /// Every JSON row of `table`, decoded, by key.
    fn read_rows<T: serde::de::DeserializeOwned>(
        &self,
        table: &Table,
        what: &str,
    ) -> Result<std::collections::BTreeMap<String, T>, StoreError> {
        // The map built in one go.
        Ok(self.decoded_rows(table, what)?.into_iter().collect())
    }

    /// Every JSON row of `table` with its key, decoded from the row's own text (no copy of
    /// it), in the table's order; `what` names a row that cannot be read.
    fn decoded_rows<T: serde::de::DeserializeOwned>(
        &self,
        table: &Table,
        what: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let Table {
            name, key, read, ..
        } = table;
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {key}, json FROM {name}"))
            .map_err(sql(read))?;
        let mut rows = stmt.query([]).map_err(sql(read))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql(read))? {
            let k: String = row.get(0).map_err(sql(read))?;
            let json = text(row, 1).map_err(sql(read))?;
            let value = decode_with(|| format!("{what} {k}"), json)?;
            out.push((k, value));
        }
        Ok(out)
    }

    /// The links, times and fingerprints alone — no image is parsed (what a quiet cycle
    /// needs to decide it is quiet).
    pub fn load_meta(&self) -> Result<SyncState, StoreError> {
        let mut state = SyncState::default();
        self.fill_meta(&mut state)?;
        Ok(state)
    }

    fn fill_meta(&self, state: &mut SyncState) -> Result<(), StoreError> {
        state.group_delta_link = self.meta(META_GROUP_DELTA_LINK)?;
        state.user_delta_link = self.meta(META_USER_DELTA_LINK)?;
        state.device_delta_link = self.meta(META_DEVICE_DELTA_LINK)?;
        state.last_full_at = self.meta_time(META_LAST_FULL_AT)?;
        state.last_config_refresh_at = self.meta_time(META_LAST_CONFIG_REFRESH_AT)?;
        state.quiet_fingerprint = self.meta(META_QUIET_FINGERPRINT)?.filter(|f| !f.is_empty());
        state.ad_image = self.meta(META_AD_IMAGE)?.filter(|f| !f.is_empty());
        Ok(())
    }

    /// What a cycle that may be quiet needs to tell whether an AD change concerns it: the
    /// objectGUIDs of the groups in the AD image and of the joins, and the member-resolution
    /// cache (each lookup with the objectGUID it found) — without parsing the groups.
    pub fn ad_interest(&self) -> Result<AdInterest, StoreError> {
        let mut out = AdInterest::default();
        for (table, what) in [
            ("ad_groups", "read AD group ids"),
            ("joins", "read join ids"),
        ] {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT guid FROM {table}"))
                .map_err(sql(what))?;
            let it = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql(what))?;
            for g in it {
                out.guids.insert(g.map_err(sql(what))?.to_ascii_lowercase());
            }
        }
        out.lookups = self.load_lookups()?;
        Ok(out)
    }

    fn load_lookups(&self) -> Result<Vec<(Lookup, Option<AdObjectRef>)>, StoreError> {
        let mut out = Vec::new();
        self.each_lookup(|lookup, found| out.push((lookup, found)))?;
        Ok(out)
    }

    /// Each stored lookup with what it found, decoded from the rows' own text.
    fn each_lookup(
        &self,
        mut each: impl FnMut(Lookup, Option<AdObjectRef>),
    ) -> Result<(), StoreError> {
        let what = "read lookups";
        let mut stmt = self
            .conn
            .prepare("SELECT lookup, json FROM ad_lookups")
            .map_err(sql(what))?;
        let mut rows = stmt.query([]).map_err(sql(what))?;
        while let Some(row) = rows.next().map_err(sql(what))? {
            let key = text(row, 0).map_err(sql(what))?;
            let lookup: Lookup = decode("a lookup", key)?;
            let found = match text_or_null(row, 1).map_err(sql(what))? {
                Some(j) => Some(decode_with(|| format!("lookup {key}"), j)?),
                None => None,
            };
            each(lookup, found);
        }
        Ok(())
    }

    /// The stored AD image (see [`Commit::ad_groups_upsert`]).
    pub fn load_ad(&self) -> Result<AdImageRows, StoreError> {
        let mut groups: Vec<AdGroup> = self
            .decoded_rows(&Table::AD_GROUPS, "AD group")?
            .into_iter()
            .map(|(_, g)| g)
            .collect();
        let mut chunked = chunks::read_all(&self.conn, &chunks::ChunkTable::AD_GROUPS)?;
        if !chunked.is_empty() {
            for g in &mut groups {
                if let Some(members) = chunked.remove(&g.guid.to_ascii_lowercase()) {
                    g.members.extend(members);
                }
            }
        }
        wb_model::share_member_dns(&mut groups);
        let mut found = Vec::new();
        let mut asked = Vec::new();
        self.each_lookup(|lookup, object| {
            if let Some(o) = object {
                found.push((lookup.clone(), o));
            }
            asked.push(lookup);
        })?;
        // Built in one go (sorted, then laid out), not one insertion at a time.
        let rows = AdImageRows {
            groups,
            resolutions: Resolutions {
                found: found.into_iter().collect(),
                asked: asked.into_iter().collect(),
            },
        };
        Ok(rows)
    }

    /// Both images at once: the cloud state ([`Store::load`]) and the AD image
    /// ([`Store::load_ad`]) — at 250,000 members each takes half a second, so they are
    /// read side by side, the AD image on a second connection. Both reads see one state of
    /// the file: each runs in a read transaction, and when the two saw different
    /// generations (another process committed between their starts) the AD image is read
    /// again in the cloud state's transaction.
    pub fn load_with_ad(&self) -> Result<(SyncState, AdImageRows), StoreError> {
        self.load_with_ad_and(|| {})
    }

    /// [`Store::load_with_ad`], running `between` once the cloud state's read transaction has
    /// its snapshot and before the AD image's begins (a test makes a commit land there).
    #[doc(hidden)]
    pub fn load_with_ad_and(
        &self,
        between: impl FnOnce(),
    ) -> Result<(SyncState, AdImageRows), StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sql("begin read transaction"))?;
        let generation = self.generation()?;
        between();
        let path = self.path.clone();
        let (state, rows) = std::thread::scope(|scope| {
            let ad = scope.spawn(move || -> Result<(String, AdImageRows), StoreError> {
                let reader = Store::open_reader(&path)?;
                let tx = reader
                    .conn
                    .unchecked_transaction()
                    .map_err(sql("begin read transaction"))?;
                let generation = reader.generation()?;
                let rows = reader.load_ad()?;
                drop(tx);
                Ok((generation, rows))
            });
            let state = self.load()?;
            let rows = match ad.join() {
                Ok(Ok((seen, rows))) if seen == generation => rows,
                Ok(Ok(_)) => {
                    tracing::debug!("the store changed between the two reads: AD image read again");
                    self.load_ad()?
                }
                Ok(Err(e)) => return Err(e),
                Err(panic) => std::panic::resume_unwind(panic),
            };
            Ok((state, rows))
        })?;
        drop(tx);
        Ok((state, rows))
    }

    /// A second connection to the store's file, for reading only.
    fn open_reader(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Ok(Store {
            conn: connect(path, flags)?,
            path: path.to_path_buf(),
        })
    }

    /// How many commits the store has seen (see [`Store::load_with_ad`]).
    fn generation(&self) -> Result<String, StoreError> {
        Ok(self.meta(META_GENERATION)?.unwrap_or_default())
    }

    /// Applies the state change of one cycle and records its run, in one transaction.
    /// Returns the id of the recorded run. On error nothing of `c` is kept.
    pub fn commit(&mut self, c: &Commit) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("begin commit transaction"))?;
        apply_commit(&tx, c)?;
        let id = insert_run(&tx, &c.run)?;
        insert_drift(&tx, id, c.run.started_at, &c.drift)?;
        tx.commit().map_err(sql("commit transaction"))?;
        Ok(id)
    }

    /// The drift recorded since `since`, newest first.
    pub fn drift_since(&self, since: OffsetDateTime) -> Result<Vec<DriftRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, at, json FROM drift WHERE at_unix >= ?1 ORDER BY at_unix DESC, id",
            )
            .map_err(sql("read drift"))?;
        let rows = stmt
            .query_map([since.unix_timestamp()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql("read drift"))?;
        let mut out = Vec::new();
        for row in rows {
            let (run, at, json) = row.map_err(sql("read drift"))?;
            out.push(DriftRecord {
                run,
                at: parse_time(&format!("drift time of run {run}"), &at)?,
                event: decode(&format!("drift of run {run}"), &json)?,
            });
        }
        Ok(out)
    }

    /// Records that a cycle started: a `running` run owned by this process, which the
    /// cycle's [`Store::commit`] (with `run.id` set to the returned id) or
    /// [`Store::record_run`] replaces. If the process dies first, the run reads as
    /// `interrupted`. Runs left `running` by processes that are gone are marked so now.
    pub fn begin_run(&mut self, started_at: OffsetDateTime) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("begin run transaction"))?;
        let stale: Vec<(i64, Option<i64>)> = {
            let mut stmt = tx
                .prepare("SELECT id, pid FROM runs WHERE status = 'running'")
                .map_err(sql("read running runs"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql("read running runs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("read running runs"))?
        };
        for (id, pid) in stale {
            if !process_alive(pid) {
                tx.execute(
                    "UPDATE runs SET status = 'interrupted', message = ?2 WHERE id = ?1",
                    params![id, INTERRUPTED_MESSAGE],
                )
                .map_err(sql("mark interrupted run"))?;
            }
        }
        let start = format_time("run start", started_at)?;
        tx.execute(
            "INSERT INTO runs (started_at, finished_at, mode, status, staging, counts,
                 graph_requests, ldap_writes, errors, message, plan, pid)
             VALUES (?1, ?1, 'delta', 'running', 0, ?2, 0, 0, '[]', NULL, NULL, ?3)",
            params![
                start,
                encode("run counts", &PlanCounts::default())?,
                i64::from(std::process::id())
            ],
        )
        .map_err(sql("record run start"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql("commit run transaction"))?;
        Ok(id)
    }

    /// Records a run that changed no state (a failed cycle, a preflight, ...).
    pub fn record_run(&mut self, run: &RunRecord) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql("begin run transaction"))?;
        let id = insert_run(&tx, run)?;
        tx.commit().map_err(sql("commit run transaction"))?;
        Ok(id)
    }

    /// The latest `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare(&format!("{RUN_COLUMNS} ORDER BY id DESC LIMIT ?1"))
            .map_err(sql("read runs"))?;
        let rows = stmt
            .query_map([limit], RawRun::from_row)
            .map_err(sql("read runs"))?;
        let mut runs = Vec::new();
        for row in rows {
            runs.push(row.map_err(sql("read runs"))?.decode()?);
        }
        Ok(runs)
    }

    /// The latest `limit` runs, newest first, without their plans (`plan` is `None`): run
    /// lists (the dashboard) cost the same at any tenant size.
    pub fn run_summaries(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let columns = RUN_COLUMNS.replace(", plan, ", ", NULL, ");
        let mut stmt = self
            .conn
            .prepare(&format!("{columns} ORDER BY id DESC LIMIT ?1"))
            .map_err(sql("read runs"))?;
        let rows = stmt
            .query_map([limit], RawRun::from_row)
            .map_err(sql("read runs"))?;
        let mut runs = Vec::new();
        for row in rows {
            runs.push(row.map_err(sql("read runs"))?.decode()?);
        }
        Ok(runs)
    }

    /// When the latest run with one of `statuses` finished.
    pub fn last_finished(
        &self,
        statuses: &[RunStatus],
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let marks = vec!["?"; statuses.len()].join(", ");
        let at: Option<String> = self
            .conn
            .query_row(
                &format!(
                    "SELECT finished_at FROM runs WHERE status IN ({marks}) ORDER BY id DESC LIMIT 1"
                ),
                rusqlite::params_from_iter(statuses.iter().map(|s| s.as_str())),
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read runs"))?;
        at.map(|t| parse_time("run end", &t)).transpose()
    }

    /// One run by id.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let raw = self
            .conn
            .query_row(
                &format!("{RUN_COLUMNS} WHERE id = ?1"),
                [id],
                RawRun::from_row,
            )
            .optional()
            .map_err(sql("read run"))?;
        raw.map(RawRun::decode).transpose()
    }

    /// Whether any cycle has ever completed (success or completed-with-errors): until then a
    /// cycle is part of the *first* export (the create threshold does not apply to it),
    /// however many attempts it takes — a first export cut by a lost DC leaves joins but no
    /// completed run. Remembered in `meta` too, so pruning the run history never forgets it.
    pub fn has_completed_run(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE status IN (?1, ?2))
                     OR EXISTS (SELECT 1 FROM meta WHERE key = ?3)",
                params![
                    RunStatus::Success.as_str(),
                    RunStatus::CompletedWithErrors.as_str(),
                    META_FIRST_COMPLETED
                ],
                |r| r.get(0),
            )
            .map_err(sql("read runs"))
    }

    /// The plan of the latest run that recorded one (what `status` shows as outcomes).
    pub fn last_outcomes(&self) -> Result<Option<Plan>, StoreError> {
        let Some(foreign) = self.meta(META_PLAN_FOREIGN)? else {
            // A store from before the outcomes table: the latest run's plan has them.
            let row: Option<(i64, String)> = self
                .conn
                .query_row(
                    "SELECT id, plan FROM runs WHERE plan IS NOT NULL ORDER BY id DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql("read latest plan"))?;
            return row
                .map(|(id, json)| decode(&format!("plan of run {id}"), &json))
                .transpose();
        };
        let mut plan = Plan {
            foreign: decode("the plan's foreign objects", &foreign)?,
            notices: match self.meta(META_PLAN_NOTICES)? {
                Some(n) => decode("the plan's notices", &n)?,
                None => Vec::new(),
            },
            ..Plan::default()
        };
        plan.groups = self.read_outcomes(false)?;
        plan.groups
            .sort_by(|a, b| (a.name.as_str(), &a.id).cmp(&(b.name.as_str(), &b.id)));
        Ok(Some(plan))
    }

    /// Whether the store keeps each group's latest outcome (every commit with outcomes
    /// since schema 6 does).
    pub fn outcomes_kept(&self) -> Result<bool, StoreError> {
        Ok(self.meta(META_PLAN_FOREIGN)?.is_some())
    }

    /// The stored outcomes of the groups that have errors (none decoded but those).
    pub fn outcomes_with_errors(&self) -> Result<Vec<GroupOutcome>, StoreError> {
        if self.meta(META_PLAN_FOREIGN)?.is_none() {
            return Ok(self
                .last_outcomes()?
                .map(|p| {
                    p.groups
                        .into_iter()
                        .filter(|g| !g.errors.is_empty())
                        .collect()
                })
                .unwrap_or_default());
        }
        let mut groups = self.read_outcomes(true)?;
        groups.sort_by(|a, b| (a.name.as_str(), &a.id).cmp(&(b.name.as_str(), &b.id)));
        Ok(groups)
    }

    /// The stored outcomes of the groups `ids` (those it has), in the order of `ids`. A
    /// store from before the outcomes table has none.
    pub fn outcomes_of<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<Vec<GroupOutcome>, StoreError> {
        let what = "read group outcomes";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT json FROM outcomes WHERE group_id = ?1")
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for id in ids {
            let json: Option<String> = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(sql(what))?;
            if let Some(json) = json {
                out.push(decode(&format!("outcome of group {id}"), &json)?);
            }
        }
        Ok(out)
    }

    fn read_outcomes(&self, only_errors: bool) -> Result<Vec<GroupOutcome>, StoreError> {
        let what = "read group outcomes";
        let mut stmt = self
            .conn
            .prepare(if only_errors {
                "SELECT group_id, json FROM outcomes WHERE errors > 0"
            } else {
                "SELECT group_id, json FROM outcomes"
            })
            .map_err(sql(what))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(sql(what))?;
            out.push(decode(&format!("outcome of group {id}"), &json)?);
        }
        Ok(out)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql("read metadata"))
    }

    fn meta_time(&self, key: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.meta(key)?
            .map(|text| parse_time(key, &text))
            .transpose()
    }
}

fn apply_commit(tx: &Transaction<'_>, c: &Commit) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, '1')
         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [META_GENERATION],
    )
    .map_err(sql("write metadata"))?;
    if c.replace_cloud {
        tx.execute("DELETE FROM cloud_groups", [])
            .map_err(sql("clear cloud groups"))?;
        tx.execute("DELETE FROM cloud_users", [])
            .map_err(sql("clear cloud users"))?;
        tx.execute("DELETE FROM cloud_devices", [])
            .map_err(sql("clear cloud devices"))?;
        tx.execute("DELETE FROM cloud_group_chunks", [])
            .map_err(sql("clear cloud groups"))?;
    }
    let rows = |id: &str, json: String| (id.to_string(), Some(json));
    sync_rows(
        tx,
        Table::CLOUD_DEVICES,
        &c.remove_devices,
        c.upsert_devices
            .iter()
            .map(|d| Ok(rows(&d.id, encode(&format!("cloud device {}", d.id), d)?))),
    )?;
    let cloud_chunks = &chunks::ChunkTable::CLOUD_GROUPS;
    for id in &c.remove_groups {
        chunks::remove(tx, cloud_chunks, id)?;
    }
    sync_rows(
        tx,
        Table::CLOUD_GROUPS,
        &c.remove_groups,
        c.upsert_groups.iter().map(|g| {
            let what = format!("cloud group {}", g.id);
            let json = if chunks::write(tx, cloud_chunks, &g.id, g.members.iter())? {
                encode(&what, &g.without_members())?
            } else {
                encode(&what, g)?
            };
            Ok(rows(&g.id, json))
        }),
    )?;
    sync_rows(
        tx,
        Table::CLOUD_USERS,
        &c.remove_users,
        c.upsert_users.iter().map(|u| {
            let json = encode(&format!("cloud user {}", u.id), &user_row(u))?;
            Ok(rows(&u.id, json))
        }),
    )?;

    let times = [
        (META_LAST_FULL_AT, c.full_at),
        (META_LAST_CONFIG_REFRESH_AT, c.config_refresh_at),
    ];
    let mut meta: Vec<(&str, String)> = Vec::new();
    if let Some(link) = &c.group_delta_link {
        meta.push((META_GROUP_DELTA_LINK, link.clone()));
    }
    if let Some(link) = &c.device_delta_link {
        meta.push((META_DEVICE_DELTA_LINK, link.clone()));
    }
    if let Some(link) = &c.user_delta_link {
        meta.push((META_USER_DELTA_LINK, link.clone()));
    }
    if let Some(f) = &c.quiet_fingerprint {
        meta.push((META_QUIET_FINGERPRINT, f.clone()));
    }
    if let Some(a) = &c.ad_image {
        meta.push((META_AD_IMAGE, a.clone()));
    }
    apply_ad_image(tx, c)?;
    if let Some(o) = &c.outcomes {
        apply_outcomes(tx, o)?;
        meta.push((
            META_PLAN_FOREIGN,
            encode("the plan's foreign objects", &o.foreign)?,
        ));
        meta.push((META_PLAN_NOTICES, encode("the plan's notices", &o.notices)?));
    }
    for (key, t) in times {
        if let Some(t) = t {
            meta.push((key, format_time(key, t)?));
        }
    }
    for (key, value) in meta {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
        .map_err(sql("write metadata"))?;
    }

    {
        let mut del = tx
            .prepare_cached("DELETE FROM joins WHERE group_id = ?1")
            .map_err(sql("remove join"))?;
        for id in &c.joins_remove {
            del.execute([id]).map_err(sql("remove join"))?;
        }
        // ON CONFLICT on the group only: a second cloud group claiming an AD object that is
        // already joined violates UNIQUE(guid) and fails the whole commit.
        let mut put = tx
            .prepare_cached(
                "INSERT INTO joins (group_id, guid, sid, dn, adopted) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(group_id) DO UPDATE SET guid = excluded.guid, sid = excluded.sid,
                 dn = excluded.dn, adopted = excluded.adopted",
            )
            .map_err(sql("write join"))?;
        for j in &c.joins_upsert {
            put.execute(params![j.group, j.guid, j.sid, j.dn, j.adopted as i64])
                .map_err(sql("write join"))?;
        }
    }
    Ok(())
}

fn apply_ad_image(tx: &Transaction<'_>, c: &Commit) -> Result<(), StoreError> {
    if c.replace_ad {
        tx.execute("DELETE FROM ad_groups", [])
            .map_err(sql("clear AD groups"))?;
        tx.execute("DELETE FROM ad_lookups", [])
            .map_err(sql("clear lookups"))?;
        tx.execute("DELETE FROM ad_group_chunks", [])
            .map_err(sql("clear AD groups"))?;
    }
    let ad_chunks = &chunks::ChunkTable::AD_GROUPS;
    for guid in &c.ad_groups_remove {
        chunks::remove(tx, ad_chunks, &guid.to_ascii_lowercase())?;
    }
    sync_rows(
        tx,
        Table::AD_GROUPS,
        &c.ad_groups_remove,
        c.ad_groups_upsert.iter().map(|g| {
            let guid = g.guid.to_ascii_lowercase();
            let what = format!("AD group {guid}");
            let json = if chunks::write(tx, ad_chunks, &guid, g.members.iter())? {
                encode(&what, &g.without_members())?
            } else {
                encode(&what, g)?
            };
            Ok((guid, Some(json)))
        }),
    )?;
    let removed: Vec<String> = c
        .ad_lookups_remove
        .iter()
        .map(|l| encode("a lookup", l))
        .collect::<Result<_, _>>()?;
    sync_rows(
        tx,
        Table::AD_LOOKUPS,
        &removed,
        c.ad_lookups_upsert.iter().map(|(l, found)| {
            let json = match found {
                Some(f) => Some(encode("a lookup result", &object_row(f))?),
                None => None,
            };
            Ok((encode("a lookup", l)?, json))
        }),
    )?;
    Ok(())
}

fn apply_outcomes(tx: &Transaction<'_>, o: &OutcomesUpdate) -> Result<(), StoreError> {
    if o.replace {
        tx.execute("DELETE FROM outcomes", [])
            .map_err(sql("clear group outcomes"))?;
    }
    let mut del = tx
        .prepare_cached("DELETE FROM outcomes WHERE group_id = ?1")
        .map_err(sql("remove group outcome"))?;
    for id in &o.remove {
        del.execute([id]).map_err(sql("remove group outcome"))?;
    }
    let mut put = tx
        .prepare_cached(
            "INSERT INTO outcomes (group_id, errors, json) VALUES (?1, ?2, ?3)
             ON CONFLICT(group_id) DO UPDATE SET errors = excluded.errors, json = excluded.json",
        )
        .map_err(sql("write group outcome"))?;
    for g in &o.upsert {
        let json = encode(&format!("outcome of group {}", g.id), g)?;
        put.execute(params![g.id, g.has_errors() as i64, json])
            .map_err(sql("write group outcome"))?;
    }
    Ok(())
}

/// A user's row: its fields as a JSON array, in the order `CloudUser` declares them —
/// serde reads a struct from an array by position as well as from an object by name (rows
/// written before schema 7 are objects). At 250,000 users the array halves the bytes read
/// and leaves no field names to match: the users are most of what a one-shot cycle loads.
fn user_row(u: &CloudUser) -> impl Serialize + '_ {
    let CloudUser {
        id,
        user_principal_name,
        display_name,
        on_premises_sync_enabled,
        on_premises_security_identifier,
        on_premises_immutable_id,
        on_premises_distinguished_name,
        on_premises_sam_account_name,
        on_premises_domain_name,
    } = u;
    (
        id,
        user_principal_name,
        display_name,
        on_premises_sync_enabled,
        on_premises_security_identifier,
        on_premises_immutable_id,
        on_premises_distinguished_name,
        on_premises_sam_account_name,
        on_premises_domain_name,
    )
}

/// What a lookup found, as a JSON array in the order `AdObjectRef` declares its fields (see
/// [`user_row`]).
fn object_row(o: &AdObjectRef) -> impl Serialize + '_ {
    let AdObjectRef {
        dn,
        guid,
        group_type,
        class,
    } = o;
    (dn, guid, group_type, class)
}

/// A table of JSON rows by key, and the words its errors use.
struct Table {
    name: &'static str,
    key: &'static str,
    read: &'static str,
    remove: &'static str,
    write: &'static str,
}

impl Table {
    const CLOUD_GROUPS: Table = Table {
        name: "cloud_groups",
        read: "read cloud groups",
        key: "id",
        remove: "remove cloud group",
        write: "write cloud group",
    };
    const CLOUD_USERS: Table = Table {
        name: "cloud_users",
        read: "read cloud users",
        key: "id",
        remove: "remove cloud user",
        write: "write cloud user",
    };
    const CLOUD_DEVICES: Table = Table {
        name: "cloud_devices",
        read: "read cloud devices",
        key: "id",
        remove: "remove cloud device",
        write: "write cloud device",
    };
    const AD_GROUPS: Table = Table {
        name: "ad_groups",
        read: "read AD groups",
        key: "guid",
        remove: "remove AD group",
        write: "write AD group",
    };
    const AD_LOOKUPS: Table = Table {
        name: "ad_lookups",
        read: "read lookups",
        key: "lookup",
        remove: "remove lookup",
        write: "write lookup",
    };
}

/// Removes the rows `remove` names and inserts or replaces the `upsert` rows (key, JSON).
fn sync_rows(
    tx: &Transaction<'_>,
    table: Table,
    remove: &[String],
    upsert: impl Iterator<Item = Result<(String, Option<String>), StoreError>>,
) -> Result<(), StoreError> {
    let Table {
        name,
        key,
        remove: removing,
        write,
        ..
    } = table;
    let mut del = tx
        .prepare_cached(&format!("DELETE FROM {name} WHERE {key} = ?1"))
        .map_err(sql(removing))?;
    for k in remove {
        del.execute([k]).map_err(sql(removing))?;
    }
    let mut put = tx
        .prepare_cached(&format!(
            "INSERT INTO {name} ({key}, json) VALUES (?1, ?2)
             ON CONFLICT({key}) DO UPDATE SET json = excluded.json"
        ))
        .map_err(sql(write))?;
    for row in upsert {
        let (k, json) = row?;
        put.execute(params![k, json]).map_err(sql(write))?;
    }
    Ok(())
}

const RUN_COLUMNS: &str = "SELECT id, started_at, finished_at, mode, status, staging, counts, \
     graph_requests, ldap_writes, errors, message, plan, pid FROM runs";

const INTERRUPTED_MESSAGE: &str = "interrupted: the process ended before the cycle finished \
     (killed, crashed or stopped); nothing of it was committed except what AD acknowledged, \
     and the next cycle resumes from there";

/// The state holds the tenant's group and user image and the run history: readable by the
/// service user only. A new file is created 0600 (SQLite gives its WAL and shared-memory
/// files the database file's mode); an existing looser file — or WAL/SHM — is tightened,
/// with a warning.
fn restrict_to_owner(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file_err = |operation| {
        move |source| StoreError::File {
            path: path.to_path_buf(),
            operation,
            source,
        }
    };
    if !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(file_err("create")(e)),
        }
    }
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        files.push(PathBuf::from(p));
    }
    for file in files.iter().filter(|f| f.exists()) {
        let mode = std::fs::metadata(file)
            .map_err(file_err("read permissions"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                mode = format!("{:o}", mode & 0o777),
                "the state file was readable by other users: tightened to 0600"
            );
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                .map_err(file_err("restrict permissions"))?;
        }
    }
    Ok(())
}

/// Whether the process `pid` still runs (Linux: /proc). Unknown → assume it does not.
fn process_alive(pid: Option<i64>) -> bool {
    pid.is_some_and(|p| p > 0 && Path::new(&format!("/proc/{p}")).exists())
}

/// Plans kept in the run history (older runs keep their counts and errors, not their plan).
pub const PLANS_KEPT: usize = 50;
/// Runs kept in the history.
pub const RUNS_KEPT: usize = 20_000;
const META_LAST_NOOP_PLAN: &str = "last_noop_plan_hash";
/// When the first cycle completed (kept when the run history is pruned).
const META_FIRST_COMPLETED: &str = "first_completed_run_at";

/// A daemon repeats the same no-change plan every cycle: store such a plan only when it
/// differs from the last one stored, so the history does not grow by a full tenant image
/// every `interval`. Plans with operations are always stored.
fn plan_to_store(tx: &Transaction<'_>, run: &RunRecord) -> Result<Option<String>, StoreError> {
    use std::hash::{Hash, Hasher};
    let Some(plan) = run.plan.as_ref() else {
        return Ok(None);
    };
    let json = encode("plan of the run", plan)?;
    if !plan.operations.is_empty() {
        return Ok(Some(json));
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    let hash = format!("{:016x}", h.finish());
    let last: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [META_LAST_NOOP_PLAN],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("read metadata"))?;
    let has_plans: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE plan IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read runs"))?;
    if has_plans && last.as_deref() == Some(hash.as_str()) {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![META_LAST_NOOP_PLAN, hash],
    )
    .map_err(sql("write metadata"))?;
    Ok(Some(json))
}

fn insert_drift(
    tx: &Transaction<'_>,
    run: i64,
    at: OffsetDateTime,
    events: &[DriftEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let text = format_time("drift time", at)?;
    let mut put = tx
        .prepare_cached(
            "INSERT INTO drift (run_id, at, at_unix, group_id, json) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql("record drift"))?;
    for e in events {
        put.execute(params![
            run,
            text,
            at.unix_timestamp(),
            e.group,
            encode("drift", e)?
        ])
        .map_err(sql("record drift"))?;
    }
    Ok(())
}

fn prune_history(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE runs SET plan = NULL WHERE plan IS NOT NULL AND id NOT IN
             (SELECT id FROM runs WHERE plan IS NOT NULL ORDER BY id DESC LIMIT ?1)",
        params![PLANS_KEPT as i64],
    )
    .map_err(sql("prune run plans"))?;
    tx.execute(
        "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?1)",
        params![RUNS_KEPT as i64],
    )
    .map_err(sql("prune runs"))?;
    tx.execute(
        "DELETE FROM drift WHERE run_id NOT IN (SELECT id FROM runs)",
        [],
    )
    .map_err(sql("prune drift"))?;
    Ok(())
}

/// Records `run`: a new row, or — when `run.id` names the row [`Store::begin_run`] made —
/// that row, replaced.
fn insert_run(tx: &Transaction<'_>, run: &RunRecord) -> Result<i64, StoreError> {
    let plan = plan_to_store(tx, run)?;
    let id = (run.id > 0).then_some(run.id);
    tx.execute(
        "INSERT OR REPLACE INTO runs (id, started_at, finished_at, mode, status, staging, counts,
             graph_requests, ldap_writes, errors, message, plan, pid)
         VALUES (?12, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL)",
        params![
            format_time("run start", run.started_at)?,
            format_time("run end", run.finished_at)?,
            run.mode,
            run.status.as_str(),
            run.staging,
            encode("run counts", &run.counts)?,
            i64::try_from(run.graph_requests).unwrap_or(i64::MAX),
            i64::try_from(run.ldap_writes).unwrap_or(i64::MAX),
            encode("run errors", &run.errors)?,
            run.message,
            plan,
            id,
        ],
    )
    .map_err(sql("record run"))?;
    let id = tx.last_insert_rowid();
    if matches!(
        run.status,
        RunStatus::Success | RunStatus::CompletedWithErrors
    ) {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            params![
                META_FIRST_COMPLETED,
                format_time("run end", run.finished_at)?
            ],
        )
        .map_err(sql("write metadata"))?;
    }
    prune_history(tx)?;
    Ok(id)
}

/// A runs row as SQLite gives it, before the JSON and text columns are decoded.
struct RawRun {
    id: i64,
    started_at: String,
    finished_at: String,
    mode: String,
    status: String,
    staging: bool,
    counts: String,
    graph_requests: i64,
    ldap_writes: i64,
    errors: String,
    message: Option<String>,
    plan: Option<String>,
    pid: Option<i64>,
}

impl RawRun {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRun {
            id: r.get(0)?,
            started_at: r.get(1)?,
            finished_at: r.get(2)?,
            mode: r.get(3)?,
            status: r.get(4)?,
            staging: r.get(5)?,
            counts: r.get(6)?,
            graph_requests: r.get(7)?,
            ldap_writes: r.get(8)?,
            errors: r.get(9)?,
            message: r.get(10)?,
            plan: r.get(11)?,
            pid: r.get(12)?,
        })
    }

    fn decode(self) -> Result<RunRecord, StoreError> {
        let what = |field: &str| format!("{field} of run {}", self.id);
        let mut status = RunStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            what: what("status"),
            message: format!("unknown status {:?}", self.status),
        })?;
        let mut message = self.message;
        if status == RunStatus::Running && !process_alive(self.pid) {
            status = RunStatus::Interrupted;
            message = Some(INTERRUPTED_MESSAGE.to_string());
        }
        let counts: PlanCounts = decode(&what("counts"), &self.counts)?;
        let errors: Vec<ObjectError> = decode(&what("errors"), &self.errors)?;
        let plan = match &self.plan {
            Some(json) => Some(decode(&what("plan"), json)?),
            None => None,
        };
        Ok(RunRecord {
            id: self.id,
            started_at: parse_time(&what("start"), &self.started_at)?,
            finished_at: parse_time(&what("end"), &self.finished_at)?,
            mode: self.mode,
            status,
            staging: self.staging,
            counts,
            graph_requests: u64::try_from(self.graph_requests).unwrap_or(0),
            ldap_writes: u64::try_from(self.ldap_writes).unwrap_or(0),
            errors,
            message,
            plan,
        })
    }
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, StoreError> {
    decode_with(|| what.to_string(), json)
}

/// [`decode`], naming the value only when it is unreadable (rows are read by the 100,000).
fn decode_with<T: serde::de::DeserializeOwned>(
    what: impl FnOnce() -> String,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: what(),
        message: e.to_string(),
    })
}

/// Column `i` of a row as text, borrowed from the row.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    Ok(row.get_ref(i)?.as_str()?)
}

/// [`text`] of a column that may be NULL.
fn text_or_null<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    Ok(row.get_ref(i)?.as_str_or_null()?)
}

fn format_time(what: &str, t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&Rfc3339).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn parse_time(what: &str, text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        message: format!("{text:?}: {e}"),
    })
}
