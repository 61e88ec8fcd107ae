//! What a store charges a task, apart from everything else a task costs,
//! beside the least the kernel charges to keep its bytes.
//!
//! Each task makes the writes of `loadtest/compare-stores.sh`'s flow (an
//! insert with its input, started, finished with its result), in commit
//! groups of nine tasks, as under that load; a group holds one batch's
//! inserts, the previous batch's starts and the one before's ends. Costs
//! are the process's CPU time (every thread: SQLite's checkpointer too) a
//! task, median of `ROUNDS` rounds, the variants alternating.
//! `taskset -c 0 cargo bench --bench store` (the page: the Python docs page
//! of compare-stores.sh from `../shared`, or `PAGELENS_PAGE`; says so and
//! exits when absent).
//!
//! Bare SQLite makes the same writes on the least schema (a state, an input
//! and a result table keyed by integer, no other index, the same WAL
//! settings): what any SQLite store must spend on these bytes, raw or
//! compressed. The floors write a task's bytes to a file with one `pwrite`
//! each, over pages already in the page cache (as a reused WAL is), never
//! synced: the least a store that keeps them across a process crash can
//! spend, raw, or after LZ4 as pagelens stores them.
//! `MEMORY_TASKS_PER_S` (the memory store's figure from compare-stores.sh)
//! turns the costs into the best ratio to the memory store each allows.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use pagelens::jobs::lifecycle::{apply, Event, TaskRecord};
use pagelens::jobs::store::{Durability, MemoryStore, SqliteStore, TaskStore, Write};
use pagelens::jobs::{TaskId, TaskOptions, TaskSpec};
use pagelens::seo::{analyze, Options};

const ROUNDS: usize = 5;
/// Tasks a commit group holds (compare-stores.sh: ~27 writes a group).
const GROUP: usize = 9;
/// Tasks a round: enough for several of SQLite's 64 MiB checkpoints (their
/// inputs, built before the clock starts, hold about 500 MB a round).
const TASKS: usize = GROUP * 1000;

fn main() {
    let path = std::env::var("PAGELENS_PAGE")
        .unwrap_or_else(|_| "../shared/corpus/pages/py311__library__html.parser.html".into());
    let Ok(page) = std::fs::read(&path) else {
        println!("page not found at {path}; set PAGELENS_PAGE to an HTML file");
        return;
    };
    let options = Options { include_links: true, include_images: true, ..Options::default() };
    let analysis = analyze(&page, &options).expect("the page analyses");
    let result: Arc<[u8]> = Arc::from(serde_json::to_vec(&analysis).expect("an analysis serialises"));
    let dir = std::env::temp_dir().join(format!("pagelens-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    println!(
        "{} tasks a round in groups of {GROUP}, {ROUNDS} rounds; input {} bytes, result {} bytes",
        TASKS,
        page.len(),
        result.len()
    );

    // A new file each round, as compare-stores.sh starts each run on one.
    let sqlite = |payload: &Payload| {
        let path = dir.join(format!("{}.db", TaskId::random()));
        let cost = flow(&SqliteStore::open(&path, Durability::Process).expect("a SQLite store"), payload);
        forget(&path);
        cost
    };
    let (real, empty) = (Payload { input: page.clone(), result: Arc::clone(&result) }, Payload::default());
    let floor = dir.join("floor");
    let (packed_page, packed_result) =
        (lz4_flex::compress_prepend_size(&page), lz4_flex::compress_prepend_size(&result));
    let packed = packed_page.len() + packed_result.len();

    type Variant<'a> = (&'a str, Box<dyn FnMut() -> f64 + 'a>);
    let mut variants: Vec<Variant<'_>> = vec![
        ("memory store", Box::new(|| flow(&MemoryStore::new(1 << 30), &real))),
        ("sqlite store", Box::new(|| sqlite(&real))),
        ("sqlite store, empty input and result", Box::new(|| sqlite(&empty))),
        ("bare SQLite, raw bytes", Box::new(|| bare(&dir, &page, &result))),
        ("bare SQLite, LZ4 bytes (LZ4 not counted)", Box::new(|| bare(&dir, &packed_page, &packed_result))),
        ("LZ4 of input and result", Box::new(|| lz4(&page, &result))),
        ("floor: one pwrite of input and result", Box::new(|| pwrites(&floor, page.len() + result.len(), || 0))),
        (
            "floor: LZ4 of both, one pwrite",
            Box::new(|| {
                pwrites(&floor, packed, || {
                    lz4_flex::compress_prepend_size(&page).len() + lz4_flex::compress_prepend_size(&result).len()
                })
            }),
        ),
    ];
    let mut costs = vec![Vec::new(); variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            costs[i].push(run());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = costs.iter_mut().map(median).collect();
    for ((name, _), us) in variants.iter().zip(&medians) {
        println!("{name:<40} {us:>7.1} us a task");
    }
    let over = medians[1] - medians[0];
    // SQLite's least for these bytes: raw, or compressed plus compressing.
    let least = medians[3].min(medians[4] + medians[5]) - medians[0];
    println!("the SQLite store over the memory store: {over:+.1} us a task");
    println!("the least any SQLite schema adds for these bytes: {least:+.1} us a task");
    // The memory store's whole task (compare-stores.sh) gives the best
    // ratio each allows.
    if let Some(rate) = std::env::var("MEMORY_TASKS_PER_S").ok().and_then(|r| r.parse::<f64>().ok()) {
        let task = 1e6 / rate;
        println!(
            "with the memory store's whole task at {task:.0} us: this store allows {:.2}x, SQLite at best {:.2}x",
            task / (task + over),
            task / (task + least)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A task's bytes.
#[derive(Default)]
struct Payload {
    input: Vec<u8>,
    result: Arc<[u8]>,
}

/// CPU seconds this process has used, all threads.
fn cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU microseconds a task of TASKS through `store`, in pipelined groups.
fn flow(store: &dyn TaskStore, payload: &Payload) -> f64 {
    let now = SystemTime::now();
    let batches: Vec<Vec<(TaskRecord, Arc<TaskSpec>)>> = (0..TASKS / GROUP)
        .map(|_| {
            (0..GROUP)
                .map(|_| {
                    let spec = TaskSpec::one(
                        "analyze",
                        serde_json::json!({"include_links": true, "include_images": true}),
                        payload.input.clone(),
                        TaskOptions::default(),
                    );
                    let mut record = TaskRecord::new(TaskId::random(), &spec, now);
                    apply(&mut record, Event::Accepted, now).expect("a new task is accepted");
                    (record, Arc::new(spec))
                })
                .collect()
        })
        .collect();
    let began = cpu();
    let mut started: Vec<TaskRecord> = Vec::new();
    let mut running: Vec<TaskRecord> = Vec::new();
    for batch in batches.into_iter().map(Some).chain([None, None]) {
        let mut group = Vec::with_capacity(3 * GROUP);
        for mut record in running.drain(..) {
            let expected = record.version;
            apply(&mut record, Event::Finished(Arc::clone(&payload.result)), now).expect("a started task finishes");
            group.push(Write::Put { record: Box::new(record), expected });
        }
        for mut record in started.drain(..) {
            let expected = record.version;
            apply(&mut record, Event::Started, now).expect("a queued task starts");
            group.push(Write::Put { record: Box::new(record.clone()), expected });
            running.push(record);
        }
        for (record, spec) in batch.into_iter().flatten() {
            started.push(record.clone());
            group.push(Write::Insert(Box::new(record), spec));
        }
        if !group.is_empty() {
            store.commit(&mut group).expect("a commit");
        }
    }
    (cpu() - began) * 1e6 / TASKS as f64
}

/// CPU microseconds a task to compress its input and result.
fn lz4(input: &[u8], result: &[u8]) -> f64 {
    let began = cpu();
    for _ in 0..TASKS {
        std::hint::black_box(lz4_flex::compress_prepend_size(input));
        std::hint::black_box(lz4_flex::compress_prepend_size(result));
    }
    (cpu() - began) * 1e6 / TASKS as f64
}

/// CPU microseconds a task of `work` then one pwrite of `bytes`, cycling
/// over a 64 MiB file already in the page cache.
fn pwrites(path: &std::path::Path, bytes: usize, mut work: impl FnMut() -> usize) -> f64 {
    let span = 64 << 20;
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).expect("a file");
    let block = vec![0x5a_u8; bytes];
    if file.metadata().map_or(0, |m| m.len()) < span as u64 {
        for at in (0..span).step_by(1 << 20) {
            file.write_all_at(&vec![0; 1 << 20], at as u64).expect("a write");
        }
    }
    let began = cpu();
    let mut at = 0;
    for _ in 0..TASKS {
        std::hint::black_box(work());
        if at + bytes > span {
            at = 0;
        }
        file.write_all_at(&block, at as u64).expect("a write");
        at += bytes;
    }
    (cpu() - began) * 1e6 / TASKS as f64
}

/// CPU microseconds a task of the same three writes on the least schema:
/// a state, an input and a result table keyed by integer, no other index.
fn bare(dir: &std::path::Path, input: &[u8], result: &[u8]) -> f64 {
    let path = dir.join(format!("bare-{}.db", TaskId::random()));
    let conn = rusqlite::Connection::open(&path).expect("a file");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=16384;
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, state INTEGER NOT NULL);
         CREATE TABLE inputs (id INTEGER PRIMARY KEY, input BLOB NOT NULL);
         CREATE TABLE results (id INTEGER PRIMARY KEY, result BLOB NOT NULL);",
    )
    .expect("a schema");
    let began = cpu();
    let mut next = 0_i64;
    let batches = (TASKS / GROUP) as i64;
    for b in 0..batches + 2 {
        let tx = conn.unchecked_transaction().expect("a transaction");
        for id in (b - 2) * GROUP as i64..(b - 1) * GROUP as i64 {
            if id >= 0 {
                tx.execute("UPDATE tasks SET state = 2 WHERE id = ?1", [id]).expect("an update");
                tx.execute("DELETE FROM inputs WHERE id = ?1", [id]).expect("a delete");
                tx.execute("INSERT INTO results (id, result) VALUES (?1, ?2)", rusqlite::params![id, result])
                    .expect("an insert");
            }
        }
        for id in (b - 1) * GROUP as i64..b * GROUP as i64 {
            if id >= 0 && id < next {
                tx.execute("UPDATE tasks SET state = 1 WHERE id = ?1", [id]).expect("an update");
            }
        }
        if b < batches {
            for _ in 0..GROUP {
                tx.execute("INSERT INTO tasks (id, state) VALUES (?1, 0)", [next]).expect("an insert");
                tx.execute("INSERT INTO inputs (id, input) VALUES (?1, ?2)", rusqlite::params![next, input])
                    .expect("an insert");
                next += 1;
            }
        }
        tx.commit().expect("a commit");
    }
    let cost = (cpu() - began) * 1e6 / TASKS as f64;
    drop(conn);
    forget(&path);
    cost
}

/// Removes a round's database and its WAL: their dirty pages are dropped,
/// not written back while later rounds run (which made costs swing 2x).
fn forget(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}
