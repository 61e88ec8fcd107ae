//! The shared store (`--store redis://HOST:PORT/DB`): tasks kept in Redis,
//! so that every pagelens instance on it sees every task.
//!
//! Each task is a hash (`{p}task:ID`: its record as JSON, and apart the
//! fields a script needs without parsing it: version, state, priority,
//! callback owed), its input a hash of its own until it ends, its result a
//! string of its own once final. Sorted sets index it by creation (history), by end
//! (sweep, analytics) and while active; a hash counts tasks by state and
//! priority. Every change of a task runs as a Lua script, so that its
//! compare-and-set and its indexes change together, and a commit group is
//! one `MULTI`/`EXEC` pipeline: one round trip, applied whole.
//!
//! Connections are pooled per store, opened with timeouts, and dropped on
//! any error: the next use reconnects (redis-rs's sync connections never
//! do it themselves), and scripts are loaded on each new connection, so a
//! restarted Redis (which forgets them) is served again at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use redis::{Connection, Pipeline, Script, Value};
use serde::{Deserialize, Serialize};

use super::{
    CachedPage, Counts, HistoryQuery, Outcomes, Starting, StoreError, StoreFigures, TaskStore, Write, Written,
    TOP_ERRORS,
};
use crate::clock::{from_millis, to_millis};
use crate::jobs::lifecycle::TaskRecord;
use crate::jobs::queue::{Claim, TaskQueue};
use crate::jobs::spec::TaskSpec;
use crate::jobs::task::{ItemCounts, Progress, TaskError, TaskId, TaskState};
use crate::metrics::durations::Durations;
use crate::pool::Priority;

/// How long a connection may take to open, and a reply to come.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Ids read per round trip when walking an index.
const PAGE: isize = 256;
/// Tasks forgotten per sweep.
const SWEEP_LIMIT: isize = 1000;

/// Inserts a task unless its idempotency key is taken, and queues it on its
/// priority's stream unless it has ended. Its input (and a result it
/// already has) were written beside the script in the same transaction
/// with plain commands: a 55 KB argument costs a Lua script ~60 µs of
/// Redis CPU to take in, a plain `HSET` ~25 µs; the script drops them if
/// it refuses the task. KEYS: task, input, active, ended, counts, callbacks
/// (as for [`PUT`]), then created, idempotency key, stream, input bytes,
/// staged result, result. ARGV: the record's (see
/// [`RedisStore::record_call`]), then input bytes, has key, has result,
/// most unfinished tasks, most input bytes. Returns "" when inserted, "!"
/// when the cluster's queue is full, else the id holding the key.
const INSERT: &str = r"
if ARGV[11] == '1' then
  local holder = redis.call('GET', KEYS[8])
  if holder then
    redis.call('DEL', KEYS[2], KEYS[11])
    return holder
  end
end
if ARGV[8] ~= '1' then
  local bytes = tonumber(redis.call('GET', KEYS[10]) or '0')
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[13]) or (bytes > 0 and bytes + tonumber(ARGV[10]) > tonumber(ARGV[14])) then
    redis.call('DEL', KEYS[2], KEYS[11])
    return '!'
  end
end
if ARGV[11] == '1' then redis.call('SET', KEYS[8], ARGV[1]) end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'version', ARGV[3], 'state', ARGV[4], 'priority', ARGV[5],
  'callback', ARGV[9], 'idem', ARGV[11] == '1' and KEYS[8] or '')
if ARGV[12] == '1' then redis.call('RENAME', KEYS[11], KEYS[12]) end
redis.call('ZADD', KEYS[7], ARGV[6], ARGV[1])
if ARGV[8] == '1' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
else
  redis.call('INCRBY', KEYS[10], tonumber(ARGV[10]))
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
  redis.call('XADD', KEYS[9], '*', 'task', ARGV[1])
end
redis.call('HINCRBY', KEYS[5], ARGV[4] .. ':' .. ARGV[5], 1)
if ARGV[9] == '1' then redis.call('SADD', KEYS[6], ARGV[1]) end
return ''
";

/// Replaces a task's record if it is at the expected version; a final one's
/// input goes, and its bytes from the count, and its result (staged beside
/// the script with a plain `SET`, see [`INSERT`]) becomes the task's, or is
/// dropped on a conflict. KEYS: task, input, active, ended, counts,
/// callbacks, input bytes, staged result, result. ARGV: the record's (see
/// [`RedisStore::record_call`]), then expected version, has result.
/// Returns 1 when changed, 0 on a conflict.
const PUT: &str = r"
local held = redis.call('HMGET', KEYS[1], 'version', 'state', 'priority')
if held[1] ~= ARGV[10] then
  redis.call('DEL', KEYS[8])
  return 0
end
redis.call('HINCRBY', KEYS[5], held[2] .. ':' .. held[3], -1)
redis.call('HINCRBY', KEYS[5], ARGV[4] .. ':' .. ARGV[5], 1)
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'version', ARGV[3], 'state', ARGV[4], 'priority', ARGV[5],
  'callback', ARGV[9])
if ARGV[8] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
  local size = redis.call('HSTRLEN', KEYS[2], 'input')
  if size > 0 then redis.call('DECRBY', KEYS[7], size) end
  redis.call('DEL', KEYS[2])
  if ARGV[11] == '1' then redis.call('RENAME', KEYS[8], KEYS[9]) end
end
if ARGV[9] == '1' then redis.call('SADD', KEYS[6], ARGV[1]) else redis.call('SREM', KEYS[6], ARGV[1]) end
return 1
";

/// Keeps a batch item's document once. KEYS: docs, order. ARGV: item, doc.
const ITEM: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[1]) end
return 1
";

/// Marks a callback delivered. KEYS: task, callbacks. ARGV: id.
const CALLBACK_DONE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'callback', '0') end
redis.call('SREM', KEYS[2], ARGV[1])
return 1
";

/// Keeps a cached analysis, then forgets the least recently renewed past
/// the bound. KEYS: entry, ages, total. ARGV: key, analysis, fresh ms,
/// etag, last modified, bytes, max bytes, entry prefix.
const CACHE: &str = r"
local old = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
redis.call('HSET', KEYS[1], 'analysis', ARGV[2], 'fresh_at', ARGV[3], 'etag', ARGV[4], 'last_modified', ARGV[5],
  'bytes', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local total = redis.call('INCRBY', KEYS[3], tonumber(ARGV[6]) - old)
local max = tonumber(ARGV[7])
while total > max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 31)
  if #oldest == 0 then break end
  for _, key in ipairs(oldest) do
    if total <= max then break end
    local entry = ARGV[8] .. key
    local size = tonumber(redis.call('HGET', entry, 'bytes') or '0')
    redis.call('DEL', entry)
    redis.call('ZREM', KEYS[2], key)
    total = redis.call('INCRBY', KEYS[3], -size)
  end
end
return 1
";

/// A task's record as the store keeps it (the result apart).
#[derive(Debug, Serialize, Deserialize)]
struct Doc {
    kind: String,
    priority: Priority,
    state: TaskState,
    version: u64,
    percent: u8,
    stage: String,
    error: Option<TaskError>,
    created: i64,
    started: Option<i64>,
    completed: Option<i64>,
    idempotency_key: Option<String>,
    fingerprint: Option<[u8; 16]>,
    items: Option<(usize, usize, usize)>,
    attempts: u32,
    timeout_ms: Option<u64>,
    callback_url: Option<String>,
    owner: Option<String>,
}

impl Doc {
    fn of(r: &TaskRecord) -> Doc {
        Doc {
            kind: r.kind.clone(),
            priority: r.priority,
            state: r.state,
            version: r.version,
            percent: r.progress.percent,
            stage: r.progress.stage.clone(),
            error: r.error.clone(),
            created: to_millis(r.created_at),
            started: r.started_at.map(to_millis),
            completed: r.completed_at.map(to_millis),
            idempotency_key: r.idempotency_key.clone(),
            fingerprint: r.fingerprint,
            items: r.items.map(|i| (i.done, i.failed, i.total)),
            attempts: r.attempts,
            timeout_ms: r.timeout_ms,
            callback_url: r.callback_url.clone(),
            owner: r.owner.clone(),
        }
    }

    fn record(self, id: TaskId, callback_pending: bool, result: Option<Vec<u8>>) -> TaskRecord {
        TaskRecord {
            id,
            kind: self.kind,
            priority: self.priority,
            state: self.state,
            version: self.version,
            progress: Progress { percent: self.percent.min(100), stage: self.stage },
            result: result.map(Arc::from),
            error: self.error,
            created_at: from_millis(self.created),
            started_at: self.started.map(from_millis),
            completed_at: self.completed.map(from_millis),
            idempotency_key: self.idempotency_key,
            fingerprint: self.fingerprint,
            items: self.items.map(|(done, failed, total)| ItemCounts { done, failed, total }),
            attempts: self.attempts,
            timeout_ms: self.timeout_ms,
            callback_url: self.callback_url,
            callback_pending,
            owner: self.owner,
        }
    }
}

/// The consumer group every instance reads the queues in.
const GROUP: &str = "pagelens";

/// The store.
pub struct RedisStore {
    client: redis::Client,
    /// This instance's name among the queues' consumers.
    consumer: String,
    /// The address without its password, for messages and figures.
    shown: String,
    /// The prefix of every key.
    prefix: String,
    /// Most unfinished tasks, and bytes of their inputs, the cluster holds
    /// ([`RedisStore::limit`]).
    limits: (usize, usize),
    idle: Mutex<Vec<Connection>>,
    scripts: Scripts,
    /// How long each use of a connection took (one round trip; blocking
    /// reads, which wait on purpose, are not counted).
    round_trips: Durations,
}

struct Scripts {
    insert: Script,
    put: Script,
    item: Script,
    callback_done: Script,
    cache: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("at", &self.shown).field("prefix", &self.prefix).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A list of idle connections stays consistent whatever panicked.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[:PASSWORD@]HOST:PORT/DB`,
    /// or `rediss://` for TLS through rustls, checked against `ca` (PEM) if
    /// given, else the public roots; `password`, if given, is used when the
    /// URL has none), its keys under `prefix`. Connects once to say at
    /// start whether Redis answers.
    pub fn open(
        url: &str,
        password: Option<&str>,
        prefix: &str,
        ca: Option<Vec<u8>>,
    ) -> Result<RedisStore, StoreError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| StoreError(format!("--store {url:?}: {e}")))?;
        let scheme = url.split("://").next().unwrap_or("redis");
        let shown = format!("{scheme}://{}/{}", info.addr(), info.redis_settings().db());
        if info.redis_settings().password().is_none() {
            if let Some(password) = password {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
        }
        let client = match ca {
            Some(root) => {
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root) };
                redis::Client::build_with_tls(info, certificates)
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| StoreError(format!("{shown}: {e}")))?;
        let consumer = format!("{}-{}", std::process::id(), TaskId::random());
        let store = RedisStore {
            client,
            consumer,
            shown,
            prefix: prefix.to_string(),
            limits: (usize::MAX, usize::MAX),
            idle: Mutex::new(Vec::new()),
            round_trips: Durations::default(),
            scripts: Scripts {
                insert: Script::new(INSERT),
                put: Script::new(PUT),
                item: Script::new(ITEM),
                callback_done: Script::new(CALLBACK_DONE),
                cache: Script::new(CACHE),
            },
        };
        // The queues' group, made once for all instances (from the start
        // of each stream, so that nothing queued before it is missed).
        store.with(|conn| {
            for priority in Priority::ALL {
                let made: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(store.stream(priority))
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query(conn);
                match made {
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    other => other?,
                }
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// Bounds what every instance together holds unfinished: `tasks`, and
    /// `bytes` of their inputs; an insert past them is [`Written::Full`].
    pub fn limit(mut self, tasks: usize, bytes: usize) -> Self {
        self.limits = (tasks, bytes);
        self
    }

    /// The stream tasks of `priority` wait in.
    fn stream(&self, priority: Priority) -> String {
        self.key("queue", priority.name())
    }

    /// Claims of stream entries read from `priority`'s queue.
    /// Claims of stream entries handed out for the first time.
    fn claims(priority: Priority, entries: Vec<redis::streams::StreamId>) -> Vec<Claim> {
        entries
            .into_iter()
            .filter_map(|entry| {
                let task = entry.get::<String>("task")?.parse().ok()?;
                Some(Claim { task, priority, entry: entry.id, delivered: 1 })
            })
            .collect()
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("{}: {e}", self.shown))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let mut conn = self.client.get_connection_with_timeout(TIMEOUT).map_err(|e| self.err(e))?;
        conn.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.err(e))?;
        conn.set_write_timeout(Some(TIMEOUT)).map_err(|e| self.err(e))?;
        let mut load = redis::pipe();
        let s = &self.scripts;
        for script in [&s.insert, &s.put, &s.item, &s.callback_done, &s.cache] {
            load.load_script(script);
        }
        load.query::<Vec<String>>(&mut conn).map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Runs `work` on a pooled connection (one round trip, recorded); a
    /// connection that failed is dropped, not pooled again.
    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        self.use_connection(true, work)
    }

    fn use_connection<T>(
        &self,
        timed: bool,
        work: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = lock(&self.idle).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let began = std::time::Instant::now();
        let out = work(&mut conn).map_err(|e| self.err(e));
        if timed {
            self.round_trips.record("redis", began.elapsed());
        }
        if out.is_ok() {
            lock(&self.idle).push(conn);
        }
        out
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn index(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Batch `id`'s item documents from position `first` to `last` (`-1`:
    /// the end) in the order stored, their failure flags taken off.
    fn item_docs(&self, id: TaskId, first: isize, last: isize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|conn| {
            let order: Vec<String> =
                redis::cmd("LRANGE").arg(self.key("item-order", id)).arg(first).arg(last).query(conn)?;
            if order.is_empty() {
                return Ok(Vec::new());
            }
            let docs: Vec<Option<Vec<u8>>> = redis::cmd("HMGET").arg(self.key("items", id)).arg(&order).query(conn)?;
            Ok(docs.into_iter().flatten().map(|mut d| d.split_off(1.min(d.len()))).collect())
        })
    }

    /// Records of `ids` (those still there), with their results if asked.
    fn records(&self, conn: &mut Connection, ids: &[String], results: bool) -> redis::RedisResult<Vec<TaskRecord>> {
        if ids.is_empty() {
            // An empty pipeline is refused by the client.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            // A result is a key of its own (older records kept it in the hash).
            let fields: &[&str] = if results { &["doc", "callback", "result"] } else { &["doc", "callback"] };
            pipe.cmd("HMGET").arg(self.key("task", id)).arg(fields);
            if results {
                pipe.get(self.key("result", id));
            }
        }
        let replies: Vec<Value> = pipe.query(conn)?;
        let mut replies = replies.into_iter();
        let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::with_capacity(ids.len());
        while let Some(row) = replies.next() {
            let mut row: Vec<Option<Vec<u8>>> = redis::from_redis_value(row)?;
            if results {
                let own: Option<Vec<u8>> = replies.next().map(redis::from_redis_value).transpose()?.flatten();
                if let (Some(own), Some(slot)) = (own, row.get_mut(2)) {
                    *slot = Some(own);
                }
            }
            rows.push(row);
        }
        let mut out = Vec::with_capacity(rows.len());
        for (id, mut row) in ids.iter().zip(rows) {
            let (Some(id), Some(Some(doc))) = (id.parse::<TaskId>().ok(), row.first().cloned()) else { continue };
            let doc: Doc = serde_json::from_slice(&doc).map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Parse, "a damaged task record", format!("{id}: {e}")))
            })?;
            let callback = row.get(1).cloned().flatten().is_some_and(|c| c == b"1");
            let result = if results { row.get_mut(2).and_then(Option::take) } else { None };
            out.push(doc.record(id, callback, result));
        }
        Ok(out)
    }

    /// A call of `script` (insert or put) with the keys and arguments of
    /// `record` they share: KEYS task, input, active, ended, counts,
    /// callbacks; ARGV id, doc, version, state, priority, created ms,
    /// completed ms, final, callback owed.
    fn record_call<'s>(&self, script: &'s Script, record: &TaskRecord) -> redis::ScriptInvocation<'s> {
        let id = record.id.to_string();
        // Plain fields: serialising a Doc cannot fail.
        let doc = serde_json::to_vec(&Doc::of(record)).unwrap_or_default();
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut call = script.prepare_invoke();
        call.key(self.key("task", &id))
            .key(self.key("input", &id))
            .key(self.index("active"))
            .key(self.index("ended"))
            .key(self.index("counts"))
            .key(self.index("callbacks"));
        call.arg(&id)
            .arg(doc)
            .arg(record.version)
            .arg(record.state.code())
            .arg(record.priority.index())
            .arg(to_millis(record.created_at))
            .arg(record.completed_at.map_or(0, to_millis))
            .arg(flag(record.state.is_final()))
            .arg(flag(record.callback_pending));
        call
    }

    /// Writes a final record's result to a key of its own for the script to
    /// take (a `RENAME`, no copy through Lua) or drop; returns that key.
    fn stage_result(&self, pipe: &mut Pipeline, record: &TaskRecord) -> Option<String> {
        let result = record.result.as_deref().filter(|_| record.state.is_final())?;
        let staged = self.key("result-staged", format_args!("{}:{}", record.id, record.version));
        pipe.set(&staged, result).ignore();
        Some(staged)
    }

    /// Adds one write to the commit group's pipeline.
    fn queue(&self, pipe: &mut Pipeline, write: &Write) {
        let bool_arg = |b: bool| if b { "1" } else { "0" };
        match write {
            Write::Insert(record, spec) => {
                let id = record.id.to_string();
                let (meta, input) = spec.encode();
                // The big values go as plain commands, the script decides (see INSERT).
                let input_bytes = input.len();
                if !record.state.is_final() {
                    pipe.hset_multiple(
                        self.key("input", &id),
                        &[("spec", meta.into_bytes()), ("input", input.into_owned())],
                    )
                    .ignore();
                }
                let staged = self.stage_result(pipe, record);
                let has_result = staged.is_some();
                let idem = record.idempotency_key.as_deref().map(|k| self.key("idem", k));
                let mut call = self.record_call(&self.scripts.insert, record);
                call.key(self.index("created"))
                    .key(idem.clone().unwrap_or_else(|| self.index("no-key")))
                    .key(self.stream(record.priority))
                    .key(self.index("input-bytes"))
                    .key(staged.unwrap_or_else(|| self.index("no-result")))
                    .key(self.key("result", &id));
                call.arg(input_bytes)
                    .arg(bool_arg(idem.is_some()))
                    .arg(bool_arg(has_result))
                    .arg(self.limits.0)
                    .arg(self.limits.1);
                pipe.invoke_script(&call);
            }
            Write::Put { record, expected } => {
                let staged = self.stage_result(pipe, record).filter(|_| record.state.is_final());
                let mut call = self.record_call(&self.scripts.put, record);
                call.key(self.index("input-bytes"))
                    .key(staged.clone().unwrap_or_else(|| self.index("no-result")))
                    .key(self.key("result", record.id));
                call.arg(expected.to_string()).arg(bool_arg(staged.is_some()));
                pipe.invoke_script(&call);
            }
            Write::Item { task, item, failed, doc } => {
                let mut stored = Vec::with_capacity(doc.len() + 1);
                stored.push(if *failed { b'1' } else { b'0' });
                stored.extend_from_slice(doc);
                let mut call = self.scripts.item.prepare_invoke();
                call.key(self.key("items", task)).key(self.key("item-order", task)).arg(*item).arg(stored);
                pipe.invoke_script(&call);
            }
            Write::CallbackDone(id) => {
                let mut call = self.scripts.callback_done.prepare_invoke();
                call.key(self.key("task", id)).key(self.index("callbacks")).arg(id.to_string());
                pipe.invoke_script(&call);
            }
            Write::Cache { key, page, max_bytes } => {
                let bytes = page.bytes() + key.len();
                let mut call = self.scripts.cache.prepare_invoke();
                call.key(self.key("cache", key)).key(self.index("cache-ages")).key(self.index("cache-bytes"));
                call.arg(key)
                    .arg(&page.analysis[..])
                    .arg(to_millis(page.fresh_at))
                    .arg(page.etag.as_deref().unwrap_or_default())
                    .arg(page.last_modified.as_deref().unwrap_or_default())
                    .arg(bytes)
                    .arg(*max_bytes)
                    .arg(self.key("cache", ""));
                if bytes <= *max_bytes {
                    pipe.invoke_script(&call);
                } else {
                    // Larger than the bound: not kept; a reply all the same.
                    pipe.cmd("PING");
                }
            }
            // Swept apart (see `sweep`): a placeholder keeps replies in order.
            Write::Sweep { .. } => {
                pipe.cmd("PING");
            }
        }
    }

    /// Forgets up to `SWEEP_LIMIT` tasks that ended before `ended_before`.
    fn sweep(&self, conn: &mut Connection, ended_before: SystemTime) -> redis::RedisResult<usize> {
        let cut = to_millis(ended_before);
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.index("ended"))
            .arg("-inf")
            .arg(format!("({cut}"))
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_LIMIT)
            .query(conn)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut held = redis::pipe();
        for id in &ids {
            held.cmd("HMGET").arg(self.key("task", id)).arg(&["idem", "state", "priority"]);
        }
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = held.query(conn)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, (idem, state, priority)) in ids.iter().zip(rows) {
            let task = [
                self.key("task", id),
                self.key("input", id),
                self.key("result", id),
                self.key("items", id),
                self.key("item-order", id),
            ];
            pipe.del(&task[..]).ignore();
            if let Some(idem) = idem.filter(|k| !k.is_empty()) {
                pipe.del(idem).ignore();
            }
            for index in ["created", "ended", "active"] {
                pipe.zrem(self.index(index), id).ignore();
            }
            pipe.srem(self.index("callbacks"), id).ignore();
            if let (Some(state), Some(priority)) = (state, priority) {
                pipe.hincr(self.index("counts"), format!("{state}:{priority}"), -1).ignore();
            }
        }
        pipe.query::<()>(conn)?;
        Ok(ids.len())
    }
}

/// What a script's reply says of a write.
fn written(write: &Write, reply: &Value) -> Result<Written, String> {
    match (write, reply) {
        (Write::Insert(..), Value::BulkString(full)) if full == b"!" => Ok(Written::Full),
        (Write::Insert(..), Value::BulkString(id)) if !id.is_empty() => std::str::from_utf8(id)
            .ok()
            .and_then(|id| id.parse().ok())
            .map(Written::Existing)
            .ok_or_else(|| "a damaged idempotency key".to_string()),
        (Write::Put { .. }, Value::Int(0)) => Ok(Written::Conflict),
        (Write::Sweep { .. }, _) => Ok(Written::Swept(0)),
        (_, Value::ServerError(e)) => Err(format!("{e:?}")),
        _ => Ok(Written::Done),
    }
}

impl TaskStore for RedisStore {
    fn commit(&self, group: &mut [Write]) -> Result<Vec<Written>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for write in group.iter() {
            self.queue(&mut pipe, write);
        }
        let replies: Vec<Value> = self.with(|conn| pipe.query(conn))?;
        let mut out = group
            .iter()
            .zip(&replies)
            .map(|(w, r)| written(w, r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        // A sweep reads before it deletes: it runs after the group, alone.
        for (write, outcome) in group.iter().zip(out.iter_mut()) {
            if let Write::Sweep { ended_before } = write {
                *outcome = Written::Swept(self.with(|conn| self.sweep(conn, *ended_before))?);
            }
        }
        Ok(out)
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.with(|conn| self.records(conn, &[id.to_string()], true))?.pop())
    }

    fn starting(&self, ids: &[TaskId]) -> Result<Vec<Starting>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET").arg(self.key("task", id)).arg(&["doc", "callback"]);
            pipe.cmd("HMGET").arg(self.key("input", id)).arg(&["spec", "input"]);
        }
        let rows: Vec<Vec<Option<Vec<u8>>>> = self.with(|conn| pipe.query(conn))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, pair) in ids.iter().zip(rows.chunks(2)) {
            let [task, input] = pair else { break };
            let field = |row: &[Option<Vec<u8>>], i: usize| row.get(i).cloned().flatten();
            let record = match field(task, 0) {
                Some(doc) => {
                    let doc: Doc = serde_json::from_slice(&doc).map_err(|e| self.err(format!("task {id}: {e}")))?;
                    Some(doc.record(*id, field(task, 1).as_deref() == Some(b"1"), None))
                }
                None => None,
            };
            let spec = match (field(input, 0).map(String::from_utf8), field(input, 1)) {
                (Some(Ok(meta)), Some(bytes)) => Some(TaskSpec::decode(&meta, &bytes).map_err(|e| self.err(e))?),
                (Some(Err(e)), _) => return Err(self.err(format!("task {id}: a damaged input: {e}"))),
                _ => None,
            };
            out.push((record, spec));
        }
        Ok(out)
    }

    fn spec(&self, id: TaskId) -> Result<Option<TaskSpec>, StoreError> {
        let (meta, input): (Option<String>, Option<Vec<u8>>) =
            self.with(|conn| redis::cmd("HMGET").arg(self.key("input", id)).arg(&["spec", "input"]).query(conn))?;
        match (meta, input) {
            (Some(meta), Some(input)) => TaskSpec::decode(&meta, &input).map(Some).map_err(|e| self.err(e)),
            _ => Ok(None),
        }
    }

    fn items(&self, id: TaskId, limit: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        let last = limit.map_or(-1, |n| isize::try_from(n).unwrap_or(isize::MAX) - 1);
        if last < -1 {
            return Ok(Vec::new());
        }
        self.item_docs(id, 0, last)
    }

    fn items_from(&self, id: TaskId, skip: usize, most: Option<usize>) -> Result<Vec<Vec<u8>>, StoreError> {
        let start = isize::try_from(skip).unwrap_or(isize::MAX);
        // LRANGE's stop is inclusive; -1 is the end.
        let stop =
            most.map_or(-1, |n| start.saturating_add(isize::try_from(n).unwrap_or(isize::MAX)).saturating_sub(1));
        if stop < start && stop != -1 {
            return Ok(Vec::new());
        }
        self.item_docs(id, start, stop)
    }

    fn records_of(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let names: Vec<String> = ids.iter().map(TaskId::to_string).collect();
        let mut found: HashMap<TaskId, TaskRecord> =
            self.with(|conn| self.records(conn, &names, false))?.into_iter().map(|r| (r.id, r)).collect();
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }

    fn items_done(&self, id: TaskId) -> Result<Vec<(usize, bool)>, StoreError> {
        let all: HashMap<String, Vec<u8>> =
            self.with(|conn| redis::cmd("HGETALL").arg(self.key("items", id)).query(conn))?;
        Ok(all.into_iter().filter_map(|(item, doc)| Some((item.parse().ok()?, doc.first() == Some(&b'1')))).collect())
    }

    fn active(&self, limit: usize) -> Result<Vec<TaskRecord>, StoreError> {
        let last = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.with(|conn| {
            let ids: Vec<String> = redis::cmd("ZRANGE").arg(self.index("active")).arg(0).arg(last).query(conn)?;
            self.records(conn, &ids, false)
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let all: HashMap<String, i64> =
            self.with(|conn| redis::cmd("HGETALL").arg(self.index("counts")).query(conn))?;
        let mut counts = Counts::new();
        for (field, n) in all.into_iter().filter(|(_, n)| *n > 0) {
            let Some((state, priority)) = field.split_once(':') else { continue };
            let state = state.parse::<u8>().ok().and_then(TaskState::from_code);
            let priority = priority.parse::<usize>().ok().and_then(|p| Priority::ALL.get(p).copied());
            if let (Some(state), Some(priority)) = (state, priority) {
                *counts.entry(state).or_default().entry(priority).or_default() += n as usize;
            }
        }
        Ok(counts)
    }

    fn outcomes(&self, since: SystemTime, bucket_ms: i64) -> Result<Outcomes, StoreError> {
        let bucket = bucket_ms.max(1);
        let mut outcomes = Outcomes::default();
        let mut errors: HashMap<String, u64> = HashMap::new();
        self.with(|conn| {
            let mut offset = 0;
            loop {
                let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(self.index("ended"))
                    .arg(to_millis(since))
                    .arg("+inf")
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(PAGE)
                    .query(conn)?;
                for record in self.records(conn, &ids, false)? {
                    let Some(ended) = record.completed_at.map(to_millis) else { continue };
                    let start = ended.div_euclid(bucket) * bucket;
                    *outcomes.buckets.entry(start).or_default().entry(record.state).or_default() += 1;
                    if let Some(e) = record.error {
                        *errors.entry(e.code).or_default() += 1;
                    }
                }
                if (ids.len() as isize) < PAGE {
                    return Ok(());
                }
                offset += PAGE;
            }
        })?;
        let mut errors: Vec<(String, u64)> = errors.into_iter().collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        errors.truncate(TOP_ERRORS);
        outcomes.errors = errors;
        Ok(outcomes)
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<TaskRecord>, StoreError> {
        // Newest first from the cursor (or `until`), filtered as the other stores do.
        let max = match (query.before, query.until) {
            (Some((ms, _)), _) => ms.to_string(),
            (None, Some(until)) => format!("({}", to_millis(until)),
            (None, None) => "+inf".to_string(),
        };
        let min = query.since.map_or("-inf".to_string(), |t| to_millis(t).to_string());
        let mut found = Vec::new();
        self.with(|conn| {
            let mut offset = 0;
            while found.len() < query.limit {
                let ids: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                    .arg(self.index("created"))
                    .arg(&max)
                    .arg(&min)
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(PAGE)
                    .query(conn)?;
                let records = self.records(conn, &ids, query.with_results)?;
                found.extend(records.into_iter().filter(|r| query.matches(r)).take(query.limit - found.len()));
                if (ids.len() as isize) < PAGE {
                    break;
                }
                offset += PAGE;
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.active(usize::MAX)
    }

    fn callbacks_owed(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.with(|conn| {
            let ids: Vec<String> = redis::cmd("SMEMBERS").arg(self.index("callbacks")).query(conn)?;
            self.records(conn, &ids, true)
        })
    }

    fn cached(&self, key: &str) -> Result<Option<CachedPage>, StoreError> {
        type Row = (Option<Vec<u8>>, Option<i64>, Option<String>, Option<String>);
        let (analysis, fresh_at, etag, last_modified): Row = self.with(|conn| {
            redis::cmd("HMGET")
                .arg(self.key("cache", key))
                .arg(&["analysis", "fresh_at", "etag", "last_modified"])
                .query(conn)
        })?;
        let (Some(analysis), Some(fresh_at)) = (analysis, fresh_at) else { return Ok(None) };
        Ok(Some(CachedPage {
            analysis: Arc::from(analysis),
            fresh_at: from_millis(fresh_at),
            etag: etag.filter(|e| !e.is_empty()),
            last_modified: last_modified.filter(|l| !l.is_empty()),
        }))
    }

    fn figures(&self) -> StoreFigures {
        // The server's memory: Redis has no cheap size of a key prefix.
        let used = self
            .with(|conn| redis::cmd("INFO").arg("memory").query::<String>(conn))
            .ok()
            .and_then(|info| info.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()));
        StoreFigures { backend: "redis", path: Some(self.shown.clone()), bytes: used.unwrap_or(0) }
    }
}

impl TaskQueue for RedisStore {
    fn take(&self, n: usize, wait: Duration) -> Result<Vec<Claim>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        // One read of all three queues (up to `n` from each: at most 3n, a
        // bounded excess the local pool orders by priority), then, when
        // all were empty, one that waits for the first task of any.
        let streams: Vec<String> = Priority::ALL.iter().map(|p| self.stream(*p)).collect();
        let read = |count: usize, block: Option<u64>| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(GROUP).arg(&self.consumer).arg("COUNT").arg(count);
            if let Some(ms) = block {
                cmd.arg("BLOCK").arg(ms);
            }
            cmd.arg("STREAMS").arg(&streams).arg(&[">"; 3][..]);
            cmd
        };
        let claims_of = |reply: Option<redis::streams::StreamReadReply>| {
            let mut claims = Vec::new();
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                let Some(&priority) = Priority::ALL.iter().find(|p| self.stream(**p) == key.key) else { continue };
                claims.extend(Self::claims(priority, key.ids));
            }
            claims
        };
        let claims = claims_of(self.with(|conn| read(n, None).query(conn))?);
        if !claims.is_empty() || wait.is_zero() {
            return Ok(claims);
        }
        let ms = wait.as_millis().max(1) as u64;
        Ok(claims_of(self.use_connection(false, |conn| read(1, Some(ms)).query(conn))?))
    }

    fn reclaim(&self, idle: Duration, n: usize) -> Result<Vec<Claim>, StoreError> {
        let mut claims = Vec::new();
        self.with(|conn| {
            for priority in Priority::ALL {
                let left = n - claims.len();
                if left == 0 {
                    break;
                }
                let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(self.stream(priority))
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(left)
                    .query(conn)?;
                claims.extend(Self::claims(priority, reply.claimed));
            }
            if claims.is_empty() {
                return Ok(());
            }
            // Each one's delivery count, which XAUTOCLAIM has just raised
            // (XPENDING over the entry alone: [[id, consumer, idle, count]]).
            let mut pipe = redis::pipe();
            for claim in &claims {
                pipe.cmd("XPENDING")
                    .arg(self.stream(claim.priority))
                    .arg(GROUP)
                    .arg(&claim.entry)
                    .arg(&claim.entry)
                    .arg(1);
            }
            let counts: Vec<Vec<(String, String, u64, u64)>> = pipe.query(conn)?;
            for (claim, pending) in claims.iter_mut().zip(counts) {
                // An entry acknowledged meanwhile has no count: as taken over once.
                claim.delivered = pending.first().map_or(2, |(_, _, _, count)| *count);
            }
            Ok(())
        })?;
        Ok(claims)
    }

    fn touch(&self, claims: &[Claim]) -> Result<(), StoreError> {
        if claims.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for claim in claims {
            // Claimed again by its holder: its idle time starts over.
            pipe.cmd("XCLAIM")
                .arg(self.stream(claim.priority))
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(0)
                .arg(&claim.entry)
                .arg("JUSTID")
                .ignore();
        }
        self.with(|conn| pipe.query::<()>(conn))
    }

    fn ack(&self, claims: &[Claim]) -> Result<(), StoreError> {
        if claims.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for claim in claims {
            let stream = self.stream(claim.priority);
            pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(&claim.entry).ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&claim.entry).ignore();
        }
        self.with(|conn| pipe.query::<()>(conn))
    }

    fn announce_cancel(&self, id: TaskId) -> Result<(), StoreError> {
        self.with(|conn| redis::cmd("PUBLISH").arg(self.index("cancel")).arg(id.to_string()).query::<i64>(conn))?;
        Ok(())
    }

    fn hear_cancels(&self, on: &mut dyn FnMut(TaskId), stop: &AtomicBool) -> Result<(), StoreError> {
        // A connection of its own: a subscribed connection does nothing else.
        let mut conn = self.client.get_connection_with_timeout(TIMEOUT).map_err(|e| self.err(e))?;
        conn.set_read_timeout(Some(Duration::from_millis(500))).map_err(|e| self.err(e))?;
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(self.index("cancel")).map_err(|e| self.err(e))?;
        while !stop.load(Ordering::Acquire) {
            match pubsub.get_message() {
                Ok(message) => {
                    if let Some(id) = message.get_payload::<String>().ok().and_then(|p| p.parse().ok()) {
                        on(id);
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(())
    }

    fn round_trips(&self) -> &Durations {
        &self.round_trips
    }
}

/// A `redis-server` of the tests' own: a free loopback port, no
/// persistence, stopped when dropped.
#[cfg(test)]
pub(crate) struct TestRedis {
    child: std::process::Child,
    port: u16,
}

#[cfg(test)]
impl TestRedis {
    pub(crate) fn start() -> TestRedis {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server runs (.ci/install-test-tools installs it)");
            let mut redis = TestRedis { child, port };
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if redis.child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return redis;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = redis.child.kill();
        }
        panic!("redis-server did not start");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

#[cfg(test)]
impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::lifecycle::{apply, Event};
    use crate::jobs::spec::TaskOptions;

    /// Now, to the millisecond the store keeps.
    fn now() -> SystemTime {
        from_millis(to_millis(SystemTime::now()))
    }

    fn task(key: Option<&str>) -> (TaskRecord, TaskSpec) {
        let options = TaskOptions { idempotency_key: key.map(str::to_string), ..TaskOptions::default() };
        let spec = TaskSpec::one("analyze", serde_json::json!({"a": 1}), b"<p>hi</p>".to_vec(), options);
        let mut record = TaskRecord::new(TaskId::random(), &spec, now());
        apply(&mut record, Event::Accepted, now()).unwrap();
        (record, spec)
    }

    #[test]
    fn records_inputs_results_items_and_keys_round_trip() {
        let redis = TestRedis::start();
        let store = RedisStore::open(&redis.url(), None, "t:", None).unwrap();
        let (mut record, spec) = task(Some("key-1"));
        let id = record.id;
        let insert = |r: &TaskRecord, s: &TaskSpec| Write::Insert(Box::new(r.clone()), Arc::new(s.clone()));
        assert_eq!(store.commit(&mut [insert(&record, &spec)]).unwrap(), [Written::Done]);
        assert_eq!(store.get(id).unwrap().unwrap(), record);
        assert_eq!(store.spec(id).unwrap().unwrap(), spec);
        // The same idempotency key again: the task that holds it.
        let (other, other_spec) = task(Some("key-1"));
        assert_eq!(store.commit(&mut [insert(&other, &other_spec)]).unwrap(), [Written::Existing(id)]);
        assert!(store.get(other.id).unwrap().is_none());
        assert_eq!(store.active(10).unwrap().len(), 1);

        // Compare-and-set: a put from a stale version changes nothing.
        let expected = record.version;
        apply(&mut record, Event::Started, now()).unwrap();
        let started = record.clone();
        apply(&mut record, Event::Finished(Arc::from(&b"{\"ok\":true}"[..])), now()).unwrap();
        record.callback_pending = true;
        let stale = Write::Put { record: Box::new(record.clone()), expected: expected + 7 };
        assert_eq!(store.commit(&mut [stale]).unwrap(), [Written::Conflict]);
        assert!(store.get(id).unwrap().unwrap().result.is_none());
        assert_eq!(keys(&store, "t:result*"), Vec::<String>::new(), "a refused result is not left staged");
        assert_eq!(keys(&store, "t:input:*").len(), 1, "the refused duplicate's input is gone");
        let mut puts = [
            Write::Put { record: Box::new(started.clone()), expected },
            Write::Put { record: Box::new(record.clone()), expected: started.version },
        ];
        assert_eq!(store.commit(&mut puts).unwrap(), [Written::Done, Written::Done]);
        let stored = store.get(id).unwrap().unwrap();
        assert_eq!(stored.result.as_deref(), Some(&b"{\"ok\":true}"[..]));
        assert_eq!(keys(&store, "t:result*"), [format!("t:result:{id}")], "the result is the task's, not staged");
        assert_eq!(stored, record);
        assert!(store.spec(id).unwrap().is_none(), "a final task's input is gone");
        let held: i64 = store.with(|c| redis::cmd("GET").arg("t:input-bytes").query(c)).unwrap();
        assert_eq!(held, 0, "its bytes left the cluster's count");
        assert!(store.active(10).unwrap().is_empty());
        assert_eq!(store.counts().unwrap()[&TaskState::Completed][&Priority::Normal], 1);
        assert_eq!(store.callbacks_owed().unwrap().len(), 1);
        store.commit(&mut [Write::CallbackDone(id)]).unwrap();
        assert!(store.callbacks_owed().unwrap().is_empty());
        assert!(!store.get(id).unwrap().unwrap().callback_pending);

        // Items: kept once each, in the order stored.
        let item =
            |n: usize, failed: bool| Write::Item { task: id, item: n, failed, doc: format!("{{\"n\":{n}}}").into() };
        store.commit(&mut [item(2, false), item(0, true), item(2, true)]).unwrap();
        assert_eq!(store.items(id, None).unwrap(), [b"{\"n\":2}".to_vec(), b"{\"n\":0}".to_vec()]);
        assert_eq!(store.items(id, Some(1)).unwrap().len(), 1);
        assert_eq!(store.items_from(id, 1, None).unwrap(), [b"{\"n\":0}".to_vec()]);
        assert_eq!(store.items_from(id, 0, Some(1)).unwrap(), [b"{\"n\":2}".to_vec()]);
        assert!(store.items_from(id, 5, None).unwrap().is_empty());
        let other = TaskId::random();
        let brief = store.records_of(&[other, id]).unwrap();
        assert!(brief[0].is_none());
        let expected = TaskRecord { result: None, callback_pending: false, ..record.clone() };
        assert_eq!(brief[1], Some(expected), "without its result");
        let mut done = store.items_done(id).unwrap();
        done.sort();
        assert_eq!(done, [(0, true), (2, false)]);

        // A sweep forgets it, its key and its items.
        let sweep = Write::Sweep { ended_before: SystemTime::now() + Duration::from_secs(1) };
        assert_eq!(store.commit(&mut [sweep]).unwrap(), [Written::Swept(1)]);
        assert!(store.get(id).unwrap().is_none() && store.items(id, None).unwrap().is_empty());
        assert!(store.counts().unwrap().is_empty());
        assert!(keys(&store, "t:result*").is_empty() && keys(&store, "t:input:*").is_empty());
        let (again, again_spec) = task(Some("key-1"));
        assert_eq!(store.commit(&mut [insert(&again, &again_spec)]).unwrap(), [Written::Done], "the key is free");
    }

    #[test]
    fn inserts_past_the_clusters_bound_are_refused() {
        let redis = TestRedis::start();
        let store = RedisStore::open(&redis.url(), None, "t:", None).unwrap().limit(2, 1 << 20);
        let insert = || {
            let (record, spec) = task(None);
            store.commit(&mut [Write::Insert(Box::new(record), Arc::new(spec))]).unwrap().remove(0)
        };
        assert_eq!([insert(), insert(), insert()], [Written::Done, Written::Done, Written::Full]);
        // Bytes too: one input alone may pass the bound, not a second.
        let store = RedisStore::open(&redis.url(), None, "u:", None).unwrap().limit(100, 10);
        let insert = || {
            let (record, spec) = task(None);
            store.commit(&mut [Write::Insert(Box::new(record), Arc::new(spec))]).unwrap().remove(0)
        };
        assert_eq!([insert(), insert()], [Written::Done, Written::Full]);
        assert_eq!(keys(&store, "u:input:*").len(), 1, "a refused task leaves no input behind");
    }

    /// The keys matching `pattern`, sorted.
    fn keys(store: &RedisStore, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = store.with(|c| redis::cmd("KEYS").arg(pattern).query(c)).unwrap();
        keys.sort();
        keys
    }

    #[test]
    fn cached_pages_are_bounded_and_a_lost_server_is_an_error_then_reconnected() {
        let redis = TestRedis::start();
        let url = redis.url();
        let store = RedisStore::open(&url, None, "t:", None).unwrap();
        let page = |n: usize, at: u64| CachedPage {
            analysis: vec![b'x'; n].into(),
            fresh_at: std::time::UNIX_EPOCH + Duration::from_secs(at),
            etag: Some("\"v\"".into()),
            last_modified: None,
        };
        let put = |key: &str, page: CachedPage| Write::Cache { key: key.into(), page, max_bytes: 3_000 };
        store.commit(&mut [put("a", page(1_000, 1)), put("a", page(1_000, 2)), put("b", page(1_000, 3))]).unwrap();
        assert_eq!(store.cached("a").unwrap(), Some(page(1_000, 2)));
        store.commit(&mut [put("c", page(1_000, 4))]).unwrap();
        assert_eq!(store.cached("a").unwrap(), None, "the least recently renewed went first");
        assert!(store.cached("b").unwrap().is_some() && store.cached("c").unwrap().is_some());
        store.commit(&mut [put("d", page(5_000, 5))]).unwrap();
        assert_eq!(store.cached("d").unwrap(), None, "larger than the bound: not kept");

        // Redis gone: errors, not panics; back on the same port: served again.
        let port = redis.port;
        drop(redis);
        assert!(store.get(TaskId::random()).is_err());
        let restarted = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let back = TestRedis { child: restarted, port };
        let started = std::time::Instant::now();
        while store.get(TaskId::random()).is_err() {
            assert!(started.elapsed() < Duration::from_secs(5), "never reconnected");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (record, spec) = task(None);
        assert_eq!(store.commit(&mut [Write::Insert(Box::new(record), Arc::new(spec))]).unwrap(), [Written::Done]);
        drop(back);
    }
}
