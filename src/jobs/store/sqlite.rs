//! The embedded durable store (the default): SQLite in WAL mode. One
//! connection writes, and only the committer thread calls it, one
//! transaction a commit group; readers take connections of their own from a
//! small pool (WAL readers never wait for the writer).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::blob;
use super::{
    CachedPage, Counts, HistoryQuery, Outcomes, StoreError, StoreFigures, TaskStore, Write, Written, TOP_ERRORS,
};
use crate::jobs::lifecycle::TaskRecord;
use crate::jobs::spec::TaskSpec;
use crate::jobs::task::{from_millis, to_millis, ItemCounts, Progress, TaskError, TaskId, TaskState};
use crate::pool::Priority;

/// `PRAGMA application_id`: "plns". A file with another id is not ours.
const APPLICATION_ID: i64 = 0x706c_6e73;

/// The schema, one migration a version: `user_version` says how many ran.
/// Append only; a released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: tasks, their inputs and results; batch items' outcomes. Inputs and
    // results have tables of their own: SQLite rewrites a whole row (its
    // overflow pages included) on any update, and a task's small state
    // changes must not rewrite its 55 KB input each time.
    "CREATE TABLE tasks (
        id BLOB PRIMARY KEY,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL,
        state INTEGER NOT NULL,
        version INTEGER NOT NULL,
        idempotency_key TEXT UNIQUE,
        fingerprint BLOB,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        completed_at INTEGER,
        progress_percent INTEGER NOT NULL,
        progress_stage TEXT NOT NULL,
        items_done INTEGER,
        items_failed INTEGER,
        items_total INTEGER,
        attempts INTEGER NOT NULL,
        timeout_ms INTEGER,
        callback_url TEXT,
        callback_pending INTEGER NOT NULL,
        error TEXT
    );
    CREATE TABLE inputs (
        task BLOB PRIMARY KEY,
        spec TEXT NOT NULL,
        input BLOB NOT NULL
    );
    CREATE TABLE results (
        task BLOB PRIMARY KEY,
        result BLOB NOT NULL
    );
    CREATE INDEX tasks_by_state ON tasks (state, priority);
    CREATE INDEX tasks_by_end ON tasks (completed_at) WHERE completed_at IS NOT NULL;
    CREATE INDEX tasks_owing_callbacks ON tasks (callback_pending) WHERE callback_pending = 1;
    CREATE TABLE batch_items (
        task BLOB NOT NULL,
        item INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (task, item)
    );",
    // 2: the history, newest first.
    "CREATE INDEX tasks_by_creation ON tasks (created_at, id);",
    // 3: the API key that submitted a task.
    "ALTER TABLE tasks ADD COLUMN owner TEXT;",
    // 4: the result cache's analyses, oldest renewal first out.
    "CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        analysis BLOB NOT NULL,
        fresh_at INTEGER NOT NULL,
        etag TEXT,
        last_modified TEXT,
        bytes INTEGER NOT NULL
    );
    CREATE INDEX cache_by_age ON cache (fresh_at, key);",
    // 5: each large value's codec (`blob::RAW` or `blob::LZ4`); rows
    // written before are raw.
    "ALTER TABLE inputs ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE results ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batch_items ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cache ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;",
];

/// SQLite's page size (the default: 16 KiB pages measured no faster).
const PAGE_SIZE: i64 = 4096;
/// Pages the WAL may hold before a checkpoint (64 MiB).
const WAL_PAGES: i64 = (64 << 20) / PAGE_SIZE;

/// The writer's page cache: negative is KiB (16 MiB).
const WRITER_CACHE_KIB: i64 = -16_384;

/// Tasks forgotten per sweep at most, so one commit group stays short.
const SWEEP_LIMIT: usize = 2000;

/// What a commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A crash of the process (WAL, `synchronous=NORMAL`: no fsync a commit;
    /// a power loss can take the last commits).
    Process,
    /// A power loss (`synchronous=FULL`: an fsync every commit group).
    Power,
}

/// Tasks in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    durability: Durability,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Tells the checkpointer thread to stop.
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes of the result cache's analyses stored (as committed).
    cache_bytes: AtomicI64,
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{}: {e}", path.display()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A connection outlives a panic of its user: SQLite rolls back what it left open.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (or creates, with its folder) the database at `path`, checks
    /// it is a pagelens database of a schema this build knows, and brings
    /// its schema up to date.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("cannot create the data folder {}: {e}", dir.display())))?;
        }
        let writer = connect(path, durability)?;
        migrate(path, &writer)?;
        // A commit group of tens of tasks is megabytes of pages: at SQLite's
        // default cache (2 MB) it spilled mid-transaction and read back the
        // input pages it was freeing.
        writer.pragma_update(None, "cache_size", WRITER_CACHE_KIB).map_err(|e| err(path, e))?;
        // Checkpoints run on their own thread: on the writer they stalled a
        // commit group for each 64 MiB of WAL (commit p99 100 ms).
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| err(path, e))?;
        let cache_bytes: f64 =
            writer.query_row("SELECT total(bytes) FROM cache", [], |r| r.get(0)).map_err(|e| err(path, e))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpoints = connect(path, durability)?;
        let (thread_path, thread_stop) = (path.to_path_buf(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("pagelens-checkpoint".into())
            .spawn(move || checkpointer(&thread_path, &checkpoints, &thread_stop))
            .map_err(|e| err(path, format!("cannot start the checkpoint thread: {e}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            durability,
            writer: Mutex::new(writer),
            readers: Mutex::default(),
            stop,
            cache_bytes: AtomicI64::new(cache_bytes as i64),
        })
    }

    /// Runs `read` on a pooled reader connection.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path, self.durability)?,
        };
        let out = read(&conn).map_err(|e| err(&self.path, e));
        lock(&self.readers).push(conn);
        out
    }

    /// Batch item documents as unpacked; one damaged is an error for all.
    fn docs(&self, docs: Vec<Result<Vec<u8>, String>>) -> Result<Vec<Vec<u8>>, StoreError> {
        docs.into_iter().collect::<Result<_, _>>().map_err(|e| err(&self.path, format!("a damaged batch item: {e}")))
    }

    fn records(&self, sql: &str, bind: impl rusqlite::Params) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(bind, record_of)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().collect::<Result<Vec<_>, String>>().map_err(|e| err(&self.path, e))
    }
}

/// A connection with this process's settings (`synchronous` is per connection).
fn connect(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    // The first statement is where a file that is not a database shows.
    let app_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(|e| not_ours(path, e))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(not_ours(path, format!("its application_id is {app_id:#x}")));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| err(path, format!("cannot turn on WAL: {e}")))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(err(path, format!("the journal mode stayed {mode}, not WAL")));
    }
    let sync = match durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(|e| err(path, e))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| err(path, e))?;
    // The WAL is cut back to this size once checkpointed.
    conn.pragma_update(None, "journal_size_limit", WAL_PAGES * PAGE_SIZE).map_err(|e| err(path, e))?;
    Ok(conn)
}

fn not_ours(path: &Path, e: impl std::fmt::Display) -> StoreError {
    err(path, format!("not a pagelens database ({e}); give another --store path"))
}

/// Copies the WAL into the database whenever it holds more than
/// `WAL_PAGES`: a task's input is written, then freed when it ends and its
/// pages reused by the next, so the rarer the checkpoint, the more of those
/// rewrites it folds into one copy (at SQLite's default, 1,000 pages, the
/// checkpoint was the largest cost). A WAL only starts over when no reader
/// uses it, which under steady status reads a PASSIVE checkpoint alone never
/// sees (measured: the WAL grew past 1.5 GB), hence the RESTART after it.
fn checkpointer(path: &Path, conn: &Connection, stop: &std::sync::atomic::AtomicBool) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let bound = (WAL_PAGES * PAGE_SIZE) as u64;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size > bound {
            // (busy, frames in the WAL, frames copied)
            let checkpoint = |mode: &str| {
                conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
            };
            // The bulk without holding anyone up, then the few frames
            // written meanwhile with RESTART, which waits for the readers
            // so that the next commit starts the WAL over.
            let done = checkpoint("PASSIVE").and_then(|_| checkpoint("RESTART"));
            if let Err(e) = done {
                crate::error!("store: a checkpoint of {} failed: {e}", path.display());
            }
        }
        // How often the WAL's size is looked at: at 100 MB/s of writes it
        // overshoots the bound by a fifth at most.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Brings the schema to the latest version, one transaction a migration.
fn migrate(path: &Path, conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| err(path, e))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(err(
            path,
            format!("its schema is version {version}, newer than this pagelens knows ({known}); run a newer pagelens"),
        ));
    }
    let app_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(|e| err(path, e))?;
    if version == 0 {
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).map_err(|e| err(path, e))?;
        if tables > 0 && app_id != APPLICATION_ID {
            return Err(not_ours(path, "it holds other tables"));
        }
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let mut conn_tx = conn.unchecked_transaction().map_err(|e| err(path, e))?;
        conn_tx.set_drop_behavior(rusqlite::DropBehavior::Rollback);
        conn_tx.execute_batch(sql).map_err(|e| err(path, format!("migration {}: {e}", index + 1)))?;
        // Bumped inside the migration's transaction: a rollback undoes both.
        conn_tx.pragma_update(None, "user_version", index as i64 + 1).map_err(|e| err(path, e))?;
        conn_tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(|e| err(path, e))?;
        conn_tx.commit().map_err(|e| err(path, e))?;
    }
    Ok(())
}

const RECORD_COLUMNS: &str = "id, kind, priority, state, version, idempotency_key, created_at, started_at,
    completed_at, progress_percent, progress_stage, items_done, items_failed, items_total, attempts,
    callback_url, callback_pending, error, timeout_ms, fingerprint, owner";

/// A task's result and its codec, selected after `RECORD_COLUMNS` from
/// `tasks LEFT JOIN results ON task = id`.
const RESULT_COLUMNS: &str = "result, results.codec";

/// A record from a row of `RECORD_COLUMNS` (and `RESULT_COLUMNS` after
/// them, if selected); a damaged row is an error, never a panic.
fn record_of(row: &Row<'_>) -> rusqlite::Result<Result<TaskRecord, String>> {
    let id: Vec<u8> = row.get(0)?;
    let state: i64 = row.get(3)?;
    let priority: i64 = row.get(2)?;
    let error: Option<String> = row.get(17)?;
    let stored: Option<Vec<u8>> = if row.as_ref().column_count() > 21 { row.get(21)? } else { None };
    let result = match stored.map(|s| row.get(22).map(|codec| blob::unpack(codec, s))).transpose()? {
        Some(Err(e)) => return Ok(Err(format!("a damaged task result: {e}"))),
        Some(Ok(result)) => Some(result),
        None => None,
    };
    let items = match (row.get::<_, Option<i64>>(11)?, row.get::<_, Option<i64>>(12)?, row.get::<_, Option<i64>>(13)?) {
        (Some(done), Some(failed), Some(total)) => {
            Some(ItemCounts { done: done as usize, failed: failed as usize, total: total as usize })
        }
        _ => None,
    };
    let (Some(id), Some(state), Some(&priority)) = (
        TaskId::from_bytes(&id),
        u8::try_from(state).ok().and_then(TaskState::from_code),
        usize::try_from(priority).ok().and_then(|p| Priority::ALL.get(p)),
    ) else {
        return Ok(Err("a damaged task row (id, state or priority)".into()));
    };
    let error = match error.map(|e| serde_json::from_str::<TaskError>(&e)) {
        Some(Err(e)) => return Ok(Err(format!("a damaged task error: {e}"))),
        Some(Ok(e)) => Some(e),
        None => None,
    };
    Ok(Ok(TaskRecord {
        id,
        kind: row.get(1)?,
        priority,
        state,
        version: row.get::<_, i64>(4)? as u64,
        idempotency_key: row.get(5)?,
        created_at: from_millis(row.get(6)?),
        started_at: row.get::<_, Option<i64>>(7)?.map(from_millis),
        completed_at: row.get::<_, Option<i64>>(8)?.map(from_millis),
        progress: Progress { percent: row.get::<_, i64>(9)?.clamp(0, 100) as u8, stage: row.get(10)? },
        items,
        attempts: row.get::<_, i64>(14)?.clamp(0, i64::from(u32::MAX)) as u32,
        callback_url: row.get(15)?,
        callback_pending: row.get(16)?,
        timeout_ms: row.get::<_, Option<i64>>(18)?.map(|t| t.max(0) as u64),
        fingerprint: row.get::<_, Option<Vec<u8>>>(19)?.and_then(|f| f.try_into().ok()),
        owner: row.get(20)?,
        error,
        result: result.map(Arc::from),
    }))
}

/// The columns a put rewrites, in `put`'s order.
fn bind_record(r: &TaskRecord) -> [Box<dyn rusqlite::ToSql + '_>; 13] {
    let error = r.error.as_ref().map(|e| {
        // Plain fields: serialising cannot fail. The kind is stored too.
        serde_json::json!({"kind": e.kind, "status": e.status, "code": e.code, "detail": e.detail}).to_string()
    });
    [
        Box::new(i64::from(r.state.code())),
        Box::new(r.version as i64),
        Box::new(r.started_at.map(to_millis)),
        Box::new(r.completed_at.map(to_millis)),
        Box::new(i64::from(r.progress.percent)),
        Box::new(r.progress.stage.as_str()),
        Box::new(r.items.map(|i| i.done as i64)),
        Box::new(r.items.map(|i| i.failed as i64)),
        Box::new(r.items.map(|i| i.total as i64)),
        Box::new(i64::from(r.attempts)),
        Box::new(r.callback_pending),
        Box::new(error),
        Box::new(r.priority.index() as i64),
    ]
}

/// Stores a finished task's result (written once: only a final record has one).
fn write_result(tx: &rusqlite::Transaction<'_>, record: &TaskRecord) -> rusqlite::Result<()> {
    if let (Some(result), true) = (&record.result, record.state.is_final()) {
        let (codec, stored) = blob::pack(result);
        tx.prepare_cached("INSERT OR REPLACE INTO results (task, result, codec) VALUES (?1, ?2, ?3)")?
            .execute(params![record.id.to_bytes(), &stored[..], codec])?;
    }
    Ok(())
}

/// Applies one write; `cache_bytes` is the cache's stored bytes, kept up to date.
fn write(tx: &rusqlite::Transaction<'_>, w: &mut Write, cache_bytes: &mut i64) -> rusqlite::Result<Written> {
    match w {
        Write::Insert(record, spec) => {
            if let Some(key) = &record.idempotency_key {
                let existing: Option<Vec<u8>> = tx
                    .prepare_cached("SELECT id FROM tasks WHERE idempotency_key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?;
                if let Some(id) = existing.as_deref().and_then(TaskId::from_bytes) {
                    return Ok(Written::Existing(id));
                }
            }
            tx.prepare_cached(
                "INSERT INTO tasks (id, kind, idempotency_key, created_at, callback_url, timeout_ms, fingerprint,
                     state, version, started_at, completed_at, progress_percent, progress_stage,
                     items_done, items_failed, items_total, attempts, callback_pending, error, priority, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
            )?
            .execute(rusqlite::params_from_iter(
                [
                    Box::new(record.id.to_bytes()) as Box<dyn rusqlite::ToSql>,
                    Box::new(record.kind.as_str()),
                    Box::new(record.idempotency_key.as_deref()),
                    Box::new(to_millis(record.created_at)),
                    Box::new(record.callback_url.as_deref()),
                    Box::new(record.timeout_ms.map(|t| t.min(i64::MAX as u64) as i64)),
                    Box::new(record.fingerprint.map(|f| f.to_vec())),
                ]
                .into_iter()
                .chain(bind_record(record))
                .chain([Box::new(record.owner.as_deref()) as Box<dyn rusqlite::ToSql>]),
            ))?;
            let (meta, input) = spec.encode();
            let (codec, input) = blob::pack(&input);
            tx.prepare_cached("INSERT INTO inputs (task, spec, input, codec) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![record.id.to_bytes(), meta, &input[..], codec])?;
            write_result(tx, record)?;
            Ok(Written::Done)
        }
        Write::Put { record, expected } => {
            let changed = tx
                .prepare_cached(
                    "UPDATE tasks SET state = ?1, version = ?2, started_at = ?3, completed_at = ?4,
                         progress_percent = ?5, progress_stage = ?6, items_done = ?7, items_failed = ?8,
                         items_total = ?9, attempts = ?10, callback_pending = ?11, error = ?12, priority = ?13
                     WHERE id = ?14 AND version = ?15",
                )?
                .execute(rusqlite::params_from_iter(bind_record(record).into_iter().chain([
                    Box::new(record.id.to_bytes()) as Box<dyn rusqlite::ToSql>,
                    Box::new(*expected as i64),
                ])))?;
            if changed == 0 {
                return Ok(Written::Conflict);
            }
            if record.state.is_final() {
                tx.prepare_cached("DELETE FROM inputs WHERE task = ?1")?.execute([record.id.to_bytes()])?;
            }
            write_result(tx, record)?;
            Ok(Written::Done)
        }
        Write::Item { task, item, failed, doc } => {
            let (codec, doc) = blob::pack(doc);
            tx.prepare_cached(
                "INSERT OR IGNORE INTO batch_items (task, item, failed, doc, codec) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![task.to_bytes(), *item as i64, *failed, &doc[..], codec])?;
            Ok(Written::Done)
        }
        Write::CallbackDone(id) => {
            tx.prepare_cached("UPDATE tasks SET callback_pending = 0 WHERE id = ?1")?.execute([id.to_bytes()])?;
            Ok(Written::Done)
        }
        Write::Cache { key, page, max_bytes } => {
            let key = key.as_str();
            let bytes = (page.bytes() + key.len()) as i64;
            let max = (*max_bytes).min(i64::MAX as usize) as i64;
            if bytes > max {
                return Ok(Written::Done);
            }
            let old: Option<i64> = tx
                .prepare_cached("SELECT bytes FROM cache WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?;
            let (codec, analysis) = blob::pack(&page.analysis);
            tx.prepare_cached(
                "INSERT OR REPLACE INTO cache (key, analysis, fresh_at, etag, last_modified, bytes, codec)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                key,
                &analysis[..],
                to_millis(page.fresh_at),
                page.etag,
                page.last_modified,
                bytes,
                codec
            ])?;
            *cache_bytes += bytes - old.unwrap_or(0);
            while *cache_bytes > max {
                let oldest: Vec<(String, i64)> = tx
                    .prepare_cached("SELECT key, bytes FROM cache ORDER BY fresh_at, key LIMIT 32")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                if oldest.is_empty() {
                    break;
                }
                for (gone, size) in oldest {
                    if *cache_bytes <= max {
                        break;
                    }
                    tx.prepare_cached("DELETE FROM cache WHERE key = ?1")?.execute([&gone])?;
                    *cache_bytes -= size;
                }
            }
            Ok(Written::Done)
        }
        Write::Sweep { ended_before } => {
            let cut = to_millis(*ended_before);
            // The same tasks each time: nothing else changes in the transaction.
            for table in ["batch_items", "results", "inputs"] {
                tx.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE task IN
                         (SELECT id FROM tasks WHERE completed_at < ?1 ORDER BY completed_at, id LIMIT ?2)"
                ))?
                .execute(params![cut, SWEEP_LIMIT as i64])?;
            }
            let swept = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id IN
                         (SELECT id FROM tasks WHERE completed_at < ?1 ORDER BY completed_at, id LIMIT ?2)",
                )?
                .execute(params![cut, SWEEP_LIMIT as i64])?;
            Ok(Written::Swept(swept))
        }
    }
}

impl TaskStore for SqliteStore {
    fn commit(&self, group: &mut [Write]) -> Result<Vec<Written>, StoreError> {
        let mut conn = lock(&self.writer);
        let mut run = |conn: &mut Connection| -> rusqlite::Result<Vec<Written>> {
            // IMMEDIATE: the write lock is taken at BEGIN, never upgraded later.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut cache_bytes = self.cache_bytes.load(Ordering::Acquire);
            let out =
                group.iter_mut().map(|w| write(&tx, w, &mut cache_bytes)).collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            // Only a committed group changes the count.
            self.cache_bytes.store(cache_bytes, Ordering::Release);
            Ok(out)
        };
        run(&mut conn).map_err(|e| err(&self.path, e))
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, {RESULT_COLUMNS} FROM tasks LEFT JOIN results ON task = id WHERE id = ?1"
        );
        Ok(self.records(&sql, [id.to_bytes()])?.pop())
    }

    fn cached(&self, key: &str) -> Result<Option<CachedPage>, StoreError> {
        let row = self.read(|conn| {
            conn.prepare_cached("SELECT analysis, codec, fresh_at, etag, last_modified FROM cache WHERE key = ?1")?
                .query_row([key], |r| {
                    Ok((blob::unpack(r.get(1)?, r.get(0)?), from_millis(r.get(2)?), r.get(3)?, r.get(4)?))
                })
                .optional()
        })?;
        let Some((analysis, fresh_at, etag, last_modified)) = row else { return Ok(None) };
        let analysis = analysis.map_err(|e| err(&self.path, format!("a damaged cached analysis: {e}")))?;
        Ok(Some(CachedPage { analysis: Arc::from(analysis), fresh_at, etag, last_modified }))
    }

    fn spec(&self, id: TaskId) -> Result<Option<TaskSpec>, StoreError> {
        let row = self.read(|conn| {
            conn.prepare_cached("SELECT spec, input, codec FROM inputs WHERE task = ?1")?
                .query_row([id.to_bytes()], |r| Ok((r.get::<_, String>(0)?, blob::unpack(r.get(2)?, r.get(1)?))))
                .optional()
        })?;
        row.map(|(meta, input)| input.and_then(|input| TaskSpec::decode(&meta, &input)).map_err(|e| err(&self.path, e)))
            .transpose()
    }

    fn items(&self, id: TaskId, limit: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT doc, codec FROM batch_items WHERE task = ?1 ORDER BY rowid LIMIT ?2")?;
            // A negative LIMIT is no limit.
            let limit = limit.map_or(-1, |n| n.min(i64::MAX as usize) as i64);
            let rows = stmt.query_map(params![id.to_bytes(), limit], |r| Ok(blob::unpack(r.get(1)?, r.get(0)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .and_then(|docs| self.docs(docs))
    }

    fn items_from(&self, id: TaskId, skip: usize, most: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|conn| {
            // Skipped rows are stepped over, their documents never read; a
            // negative LIMIT is no limit.
            let mut stmt = conn.prepare_cached(
                "SELECT doc, codec FROM batch_items WHERE task = ?1 ORDER BY rowid LIMIT ?3 OFFSET ?2",
            )?;
            let skip = skip.min(i64::MAX as usize) as i64;
            let most = most.map_or(-1, |n| n.min(i64::MAX as usize) as i64);
            let rows =
                stmt.query_map(params![id.to_bytes(), skip, most], |r| Ok(blob::unpack(r.get(1)?, r.get(0)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .and_then(|docs| self.docs(docs))
    }

    fn items_done(&self, id: TaskId) -> Result<Vec<(usize, bool)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT item, failed FROM batch_items WHERE task = ?1")?;
            let rows = stmt.query_map([id.to_bytes()], |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn active(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM tasks WHERE state <= 1 ORDER BY created_at LIMIT ?1");
        self.records(&sql, [limit.min(i64::MAX as usize) as i64])
    }

    fn outcomes(&self, since: std::time::SystemTime, bucket_ms: i64) -> Result<Outcomes, StoreError> {
        let (since, bucket) = (to_millis(since), bucket_ms.max(1));
        let (counts, errors) = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT (completed_at / ?2) * ?2, state, count(*) FROM tasks
                 WHERE completed_at >= ?1 GROUP BY 1, 2",
            )?;
            let rows = stmt
                .query_map([since, bucket], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            let counts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT json_extract(error, '$.code'), count(*) FROM tasks
                 WHERE completed_at >= ?1 AND error IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?2",
            )?;
            let rows = stmt
                .query_map([since, TOP_ERRORS as i64], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)))?;
            Ok((counts, rows.collect::<rusqlite::Result<Vec<_>>>()?))
        })?;
        let mut outcomes = Outcomes::default();
        for (bucket, state, n) in counts {
            if let Some(state) = u8::try_from(state).ok().and_then(TaskState::from_code) {
                *outcomes.buckets.entry(bucket).or_default().entry(state).or_default() += n as u64;
            }
        }
        outcomes.errors = errors.into_iter().map(|(code, n)| (code.unwrap_or_default(), n as u64)).collect();
        Ok(outcomes)
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<TaskRecord>, StoreError> {
        use rusqlite::types::Value;
        let mut clauses = Vec::new();
        let mut bind: Vec<Value> = Vec::new();
        let mut clause = |sql: &str, values: Vec<Value>| {
            bind.extend(values);
            clauses.push(sql.replace('?', &format!("?{}", bind.len())));
        };
        if let Some(state) = query.state {
            clause("state = ?", vec![Value::Integer(i64::from(state.code()))]);
        }
        if let Some(kind) = &query.kind {
            clause("kind = ?", vec![Value::Text(kind.clone())]);
        }
        if let Some(priority) = query.priority {
            clause("priority = ?", vec![Value::Integer(priority.index() as i64)]);
        }
        if let Some(owner) = &query.owner {
            clause("owner = ?", vec![Value::Text(owner.clone())]);
        }
        if let Some(since) = query.since {
            clause("created_at >= ?", vec![Value::Integer(to_millis(since))]);
        }
        if let Some(until) = query.until {
            clause("created_at < ?", vec![Value::Integer(to_millis(until))]);
        }
        if let Some((ms, id)) = query.before {
            // Row values: (created_at, id) < (ms, id), in index order.
            bind.push(Value::Integer(ms));
            bind.push(Value::Blob(id.to_bytes().to_vec()));
            clauses.push(format!("(created_at, id) < (?{}, ?{})", bind.len() - 1, bind.len()));
        }
        bind.push(Value::Integer(query.limit.min(i64::MAX as usize) as i64));
        let limit = bind.len();
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let (result, join) = if query.with_results {
            (format!(", {RESULT_COLUMNS}"), "LEFT JOIN results ON task = id")
        } else {
            (String::new(), "")
        };
        let sql = format!(
            "SELECT {RECORD_COLUMNS}{result} FROM tasks {join} {filter} ORDER BY created_at DESC, id DESC LIMIT ?{limit}"
        );
        self.records(&sql, rusqlite::params_from_iter(bind))
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let rows = self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT state, priority, count(*) FROM tasks GROUP BY state, priority")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut counts = Counts::new();
        for (state, priority, n) in rows {
            let state = u8::try_from(state).ok().and_then(TaskState::from_code);
            let priority = usize::try_from(priority).ok().and_then(|p| Priority::ALL.get(p));
            if let (Some(state), Some(priority)) = (state, priority) {
                *counts.entry(state).or_default().entry(*priority).or_default() += n as usize;
            }
        }
        Ok(counts)
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.active(usize::MAX)
    }

    fn callbacks_owed(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, {RESULT_COLUMNS} FROM tasks LEFT JOIN results ON task = id
             WHERE callback_pending = 1"
        );
        self.records(&sql, [])
    }

    fn figures(&self) -> StoreFigures {
        let size = |suffix: &str| {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            std::fs::metadata(path).map_or(0, |m| m.len())
        };
        StoreFigures {
            backend: "sqlite",
            path: Some(self.path.display().to_string()),
            bytes: size("") + size("-wal") + size("-shm"),
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // Fold the WAL into the database so a stopped server leaves one file.
        let _ = lock(&self.writer).pragma_update(None, "wal_checkpoint", "TRUNCATE");
    }
}

/// When `SystemTime` goes through a store: whole milliseconds.
#[cfg(test)]
fn millis(t: std::time::SystemTime) -> std::time::SystemTime {
    from_millis(to_millis(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::lifecycle::{apply, Event};
    use crate::jobs::spec::{Payload, TaskInput, TaskOptions};
    use std::time::SystemTime;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pagelens-sqlite-{}", TaskId::random()));
        dir.join("tasks.db")
    }

    fn spec(key: Option<&str>) -> TaskSpec {
        let options = TaskOptions {
            idempotency_key: key.map(str::to_string),
            callback_url: Some("https://example.com/cb".into()),
            ..TaskOptions::default()
        };
        TaskSpec::one("analyze", serde_json::json!({"page_url": "https://a/"}), b"<p>\xfe".to_vec(), options)
    }

    fn accepted(spec: &TaskSpec) -> TaskRecord {
        let mut r = TaskRecord::new(TaskId::random(), spec, millis(SystemTime::now()));
        apply(&mut r, Event::Accepted, millis(SystemTime::now())).unwrap();
        r
    }

    #[test]
    fn records_specs_and_lines_round_trip() {
        let path = temp();
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        let spec = spec(Some("k"));
        let mut record = accepted(&spec);
        let id = record.id;
        let out = store.commit(&mut [Write::Insert(Box::new(record.clone()), Arc::new(spec.clone()))]).unwrap();
        assert_eq!(out, vec![Written::Done]);
        assert_eq!(store.get(id).unwrap().as_ref(), Some(&record));
        assert_eq!(store.spec(id).unwrap().as_ref(), Some(&spec));
        let again = accepted(&spec);
        let out = store.commit(&mut [Write::Insert(Box::new(again), Arc::new(spec.clone()))]).unwrap();
        assert_eq!(out, vec![Written::Existing(id)]);

        let expected = record.version;
        apply(&mut record, Event::Started, millis(SystemTime::now())).unwrap();
        apply(&mut record, Event::Finished(Arc::from(&b"{\"score\":90}"[..])), millis(SystemTime::now())).unwrap();
        let mut group = [
            Write::Put { record: Box::new(record.clone()), expected },
            Write::Put { record: Box::new(record.clone()), expected },
        ];
        assert_eq!(store.commit(&mut group).unwrap(), vec![Written::Done, Written::Conflict]);
        assert_eq!(store.get(id).unwrap().as_ref(), Some(&record));
        assert!(store.spec(id).unwrap().is_none(), "the input is freed once the task ends");
        assert_eq!(store.callbacks_owed().unwrap().len(), 1);
        store.commit(&mut [Write::CallbackDone(id)]).unwrap();
        assert!(store.callbacks_owed().unwrap().is_empty());
        record.callback_pending = false;

        let batch = TaskSpec {
            kind: "bulk".into(),
            input: TaskInput::Batch(vec![Payload::default(), Payload::default()]),
            options: TaskOptions::default(),
        };
        let b = accepted(&batch);
        let line = |item, text: &str| Write::Item { task: b.id, item, failed: item == 1, doc: text.into() };
        store.commit(&mut [Write::Insert(Box::new(b.clone()), Arc::new(batch))]).unwrap();
        store.commit(&mut [line(1, "one"), line(0, "zero"), line(1, "again")]).unwrap();
        assert_eq!(store.items(b.id, None).unwrap(), vec![b"one".to_vec(), b"zero".to_vec()]);
        assert_eq!(store.items(b.id, Some(1)).unwrap(), vec![b"one".to_vec()]);
        assert_eq!(store.items_from(b.id, 1, None).unwrap(), vec![b"zero".to_vec()]);
        assert_eq!(store.items_from(b.id, 0, Some(1)).unwrap(), vec![b"one".to_vec()]);
        assert!(store.items_from(b.id, 5, None).unwrap().is_empty());
        let mut done = store.items_done(b.id).unwrap();
        done.sort();
        assert_eq!(done, vec![(0, false), (1, true)]);
        assert_eq!(store.unfinished().unwrap().len(), 1);
        drop(store);

        // Reopened: everything is still there.
        let store = SqliteStore::open(&path, Durability::Power).unwrap();
        assert_eq!(store.get(id).unwrap().as_ref(), Some(&record));
        let swept = store.commit(&mut [Write::Sweep { ended_before: SystemTime::now() + Duration::from_secs(1) }]);
        assert_eq!(swept.unwrap(), vec![Written::Swept(1)]);
        assert!(store.get(id).unwrap().is_none());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn cached_pages_are_replaced_counted_once_and_bounded_across_reopens() {
        let path = temp();
        let page = |n: usize, at: u64| CachedPage {
            analysis: vec![b'x'; n].into(),
            fresh_at: std::time::UNIX_EPOCH + Duration::from_secs(at),
            etag: Some("\"v1\"".into()),
            last_modified: None,
        };
        let put = |key: &str, page: CachedPage| Write::Cache { key: key.into(), page, max_bytes: 3_000 };
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        store.commit(&mut [put("a", page(1_000, 1)), put("a", page(1_000, 2))]).unwrap();
        assert_eq!(store.cache_bytes.load(Ordering::Acquire), 1_000 + 96 + 4 + 1, "a replaced page counts once");
        assert_eq!(store.cached("a").unwrap(), Some(page(1_000, 2)));
        assert_eq!(store.cached("b").unwrap(), None);
        drop(store);
        // Reopened, the count is read back, and the bound still holds.
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        store.commit(&mut [put("b", page(1_000, 3)), put("c", page(1_000, 4))]).unwrap();
        assert_eq!(store.cached("a").unwrap(), None, "the least recently renewed went first");
        assert!(store.cached("b").unwrap().is_some() && store.cached("c").unwrap().is_some());
        // Larger than the whole bound: not kept, nothing else lost.
        store.commit(&mut [put("d", page(5_000, 5))]).unwrap();
        assert_eq!(store.cached("d").unwrap(), None);
        assert!(store.cached("c").unwrap().is_some());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// What `kill -9` in the middle of a commit leaves: a WAL whose last
    /// transaction is torn. SQLite drops that transaction (its frames fail
    /// their checksums) and keeps every one before it.
    #[test]
    fn a_torn_last_transaction_is_dropped_and_the_rest_kept() {
        let path = temp();
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        let (first, second) = (spec(None), spec(None));
        let (a, b) = (accepted(&first), accepted(&second));
        store.commit(&mut [Write::Insert(Box::new(a.clone()), Arc::new(first))]).unwrap();
        store.commit(&mut [Write::Insert(Box::new(b.clone()), Arc::new(second))]).unwrap();
        // Copied while the store is open: both transactions are in the WAL only.
        let copy = path.with_file_name("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let wal = std::fs::read(path.with_file_name("tasks.db-wal")).unwrap();
        assert!(wal.len() > 4096, "the transactions are in the WAL");
        std::fs::write(copy.with_file_name("copy.db-wal"), &wal[..wal.len() - 100]).unwrap();
        let torn = SqliteStore::open(&copy, Durability::Process).unwrap();
        assert_eq!(torn.get(a.id).unwrap().as_ref(), Some(&a));
        assert!(torn.get(b.id).unwrap().is_none(), "the torn transaction is gone");
        drop((store, torn));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn large_values_are_stored_compressed_and_rows_written_before_read_as_they_were() {
        let path = temp();
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        let page = "<p>a paragraph much like the one before it</p>\n".repeat(500).into_bytes();
        let spec = TaskSpec::one("analyze", serde_json::json!({}), page.clone(), TaskOptions::default());
        let mut task = accepted(&spec);
        let (running, ended) = (accepted(&spec), task.id);
        let analysis: Arc<[u8]> = Arc::from(format!("{{\"links\":[{}]}}", "\"https://a/\",".repeat(300)).as_bytes());
        let (inserted, expected) = (task.clone(), task.version);
        apply(&mut task, Event::Started, millis(SystemTime::now())).unwrap();
        apply(&mut task, Event::Finished(Arc::clone(&analysis)), millis(SystemTime::now())).unwrap();
        let batch = TaskSpec { input: TaskInput::Batch(vec![Payload::default()]), ..spec.clone() };
        let b = accepted(&batch);
        let cached = CachedPage {
            analysis: Arc::clone(&analysis),
            fresh_at: millis(SystemTime::now()),
            etag: None,
            last_modified: None,
        };
        store
            .commit(&mut [
                Write::Insert(Box::new(inserted), Arc::new(spec.clone())),
                Write::Insert(Box::new(running.clone()), Arc::new(spec.clone())),
                Write::Insert(Box::new(b.clone()), Arc::new(batch)),
            ])
            .unwrap();
        store
            .commit(&mut [
                Write::Put { record: Box::new(task.clone()), expected },
                Write::Item { task: b.id, item: 0, failed: false, doc: analysis.to_vec() },
                Write::Cache { key: "k".into(), page: cached.clone(), max_bytes: 1 << 20 },
            ])
            .unwrap();
        let check = |store: &SqliteStore| {
            assert_eq!(store.get(ended).unwrap().and_then(|r| r.result).as_deref(), Some(&analysis[..]));
            assert_eq!(store.spec(running.id).unwrap().as_ref(), Some(&spec));
            assert_eq!(store.items(b.id, None).unwrap(), vec![analysis.to_vec()]);
            assert_eq!(store.cached("k").unwrap().as_ref(), Some(&cached));
        };
        check(&store);
        drop(store);

        // Each large value went in compressed, a fraction of its size.
        let raw = Connection::open(&path).unwrap();
        for (table, column, size) in [
            ("inputs", "input", page.len()),
            ("results", "result", analysis.len()),
            ("batch_items", "doc", analysis.len()),
        ] {
            let (codec, stored): (i64, i64) = raw
                .query_row(&format!("SELECT codec, max(length({column})) FROM {table}"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!(codec, blob::LZ4, "{table}");
            assert!((stored as usize) < size / 4, "{table}: {stored} bytes stored for {size}");
        }

        // A file from before compression (schema 4: raw values, no codec
        // columns) is brought up to date and reads as it was.
        for (table, column, key) in [
            ("inputs", "input", "task"),
            ("results", "result", "task"),
            ("batch_items", "doc", "task"),
            ("cache", "analysis", "key"),
        ] {
            let rows: Vec<(rusqlite::types::Value, Vec<u8>, i64)> = raw
                .prepare(&format!("SELECT {key}, {column}, codec FROM {table}"))
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            for (id, stored, codec) in rows {
                raw.execute(
                    &format!("UPDATE {table} SET {column} = ?1 WHERE {key} = ?2"),
                    params![blob::unpack(codec, stored).unwrap(), id],
                )
                .unwrap();
            }
            raw.execute_batch(&format!("ALTER TABLE {table} DROP COLUMN codec")).unwrap();
        }
        raw.pragma_update(None, "user_version", 4).unwrap();
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        check(&store);
        drop(store);

        // Damaged values are errors, never a panic or a wrong answer.
        raw.execute("UPDATE results SET result = x'ffffff7f0102', codec = 1", []).unwrap();
        raw.execute("UPDATE inputs SET codec = 9", []).unwrap();
        raw.execute("UPDATE batch_items SET doc = x'0500000050', codec = 1", []).unwrap();
        raw.execute("UPDATE cache SET codec = 2", []).unwrap();
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        assert!(store.get(ended).unwrap_err().0.contains("damaged task result"));
        assert!(store.spec(running.id).unwrap_err().0.contains("codec 9"));
        assert!(store.items(b.id, None).unwrap_err().0.contains("damaged batch item"));
        assert!(store.cached("k").unwrap_err().0.contains("damaged cached analysis"));
        drop((store, raw));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn files_that_are_not_ours_are_refused_clearly() {
        let path = temp();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "this is a text file, not a database, long enough to be read as a header").unwrap();
        let e = SqliteStore::open(&path, Durability::Process).unwrap_err();
        assert!(e.0.contains("not a pagelens database"), "{e}");

        let other = path.with_file_name("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE people (name TEXT)").unwrap();
        let e = SqliteStore::open(&other, Durability::Process).unwrap_err();
        assert!(e.0.contains("not a pagelens database"), "{e}");

        let newer = path.with_file_name("newer.db");
        drop(SqliteStore::open(&newer, Durability::Process).unwrap());
        Connection::open(&newer).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let e = SqliteStore::open(&newer, Durability::Process).unwrap_err();
        assert!(e.0.contains("schema is version 99, newer"), "{e}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
